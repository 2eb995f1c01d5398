#include "dsn.h"
#include "addr.h"
#include "buf.h"
#include "subscribers.h"
#include <ctype.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Bounds for hostile input. A report that needs more than this to say
 * who bounced is not one we can act on anyway. */
#define PARSE_MAX    (4u << 20)  /* bytes of the message handed to libetpan */
#define PART_MAX     (256u << 10)/* bytes kept of any one decoded part */
#define VALUE_MAX    4096        /* bytes kept of one header field */
#define DEPTH_MAX    8
#define PARTS_MAX    200
#define RCPT_MAX     100

/* ---- small text helpers ------------------------------------------------ */

static const char *memcasemem(const char *h, size_t hl, const char *n)
{
	size_t nl = strlen(n);
	if (!nl || nl > hl)
		return NULL;
	for (size_t i = 0; i + nl <= hl; i++)
		if (!strncasecmp(h + i, n, nl))
			return h + i;
	return NULL;
}

/* Copies s into out as one line: control characters and runs of blanks
 * become one space, leading and trailing blanks go. */
static void one_line(char *out, size_t outlen, const char *s, size_t len)
{
	size_t k = 0;
	int space = 0;
	for (size_t i = 0; i < len && k + 1 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == ' ') {
			space = k > 0;
			continue;
		}
		if (space && k + 2 < outlen)
			out[k++] = ' ';
		space = 0;
		out[k++] = (char)c;
	}
	if (outlen)
		out[k] = '\0';
}

static int addr_char(unsigned char c)
{
	return isalnum(c) || c >= 0x80 || strchr("!#$%&'*+-/=?^_`{|}~.", c);
}

/* Finds the first address-looking token in s[0..len) at or after *pos;
 * copies it (without angle brackets) into out. Returns its start, or
 * NULL. Only dot-atom local parts: quoted ones are not worth the risk. */
static const char *find_addr(const char *s, size_t len, size_t from, char *out,
			     size_t outlen, size_t *end)
{
	for (size_t i = from; i < len; i++) {
		if (s[i] != '@' || i == 0)
			continue;
		size_t a = i, b = i + 1;
		while (a > from && addr_char((unsigned char)s[a - 1]))
			a--;
		while (b < len && (isalnum((unsigned char)s[b]) || s[b] == '-' || s[b] == '.' ||
				   (unsigned char)s[b] >= 0x80))
			b++;
		while (b > i + 1 && s[b - 1] == '.')
			b--; /* a sentence's full stop */
		while (a < i && s[a] == '.')
			a++;
		if (a == i || b == i + 1 || b - a >= outlen)
			continue;
		memcpy(out, s + a, b - a);
		out[b - a] = '\0';
		if (addr_valid(out, NULL, 0) < 0)
			continue;
		if (end)
			*end = b;
		return s + a;
	}
	return NULL;
}

int dsn_status_parse(const char *s, char out[16])
{
	const char *p = s;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '2' && *p != '4' && *p != '5')
		return 0;
	const char *q = p + 1;
	for (int part = 0; part < 2; part++) {
		if (*q != '.')
			return 0;
		q++;
		int n = 0;
		while (isdigit((unsigned char)*q) && n < 4) {
			q++;
			n++;
		}
		if (n < 1 || n > 3)
			return 0;
	}
	if (isdigit((unsigned char)*q) || (*q == '.' && isdigit((unsigned char)q[1])))
		return 0;
	snprintf(out, 16, "%.*s", (int)(q - p), p);
	return 1;
}

/* An RFC 3463 status anywhere in s[0..len) that is not part of a longer
 * dotted number (an IP address, a version). */
static int find_status(const char *s, size_t len, char out[16], size_t *at)
{
	for (size_t i = 0; i + 5 <= len; i++) {
		if ((s[i] != '4' && s[i] != '5') || s[i + 1] != '.')
			continue;
		if (i > 0 && (isalnum((unsigned char)s[i - 1]) || s[i - 1] == '.'))
			continue;
		char tmp[24];
		size_t n = len - i < sizeof tmp - 1 ? len - i : sizeof tmp - 1;
		memcpy(tmp, s + i, n);
		tmp[n] = '\0';
		if (dsn_status_parse(tmp, out)) {
			if (at)
				*at = i;
			return 1;
		}
	}
	return 0;
}

/* An SMTP reply code in s: three digits, 4xx or 5xx, followed by a blank
 * or '-', and either followed by a status of the same class or preceded
 * by what MTAs put before one ("said: ", '#', "smtp;", line start). */
static int find_code(const char *s, size_t len)
{
	for (size_t i = 0; i + 4 <= len; i++) {
		char c = s[i];
		if ((c != '4' && c != '5') || !isdigit((unsigned char)s[i + 1]) ||
		    !isdigit((unsigned char)s[i + 2]) || (s[i + 3] != ' ' && s[i + 3] != '-'))
			continue;
		if (i > 0 && (isalnum((unsigned char)s[i - 1]) || strchr(".:-/", s[i - 1])))
			continue;
		size_t j = i + 4;
		while (j < len && s[j] == ' ')
			j++;
		char st[16];
		char tmp[24];
		size_t n = len - j < sizeof tmp - 1 ? len - j : sizeof tmp - 1;
		memcpy(tmp, s + j, n);
		tmp[n] = '\0';
		if (dsn_status_parse(tmp, st) && st[0] == c)
			return atoi((char[4]){s[i], s[i + 1], s[i + 2], 0});
		size_t k = i;
		while (k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))
			k--;
		int lead = k == 0 || s[k - 1] == '\n' || s[k - 1] == '#' || s[k - 1] == ';' ||
			   s[k - 1] == '\'' || s[k - 1] == '(' || s[k - 1] == '"' ||
			   (k >= 1 && s[k - 1] == ':' && k < i);
		if (lead)
			return atoi((char[4]){s[i], s[i + 1], s[i + 2], 0});
	}
	return 0;
}

/* ---- header blocks ----------------------------------------------------- */

/* One field of an RFC 5322-style block (headers, DSN and ARF fields).
 * Returns 1 with name and value (unfolded, capped), 0 at the blank line
 * or the end. *p advances past the field. Lines that are not fields are
 * skipped, as real MTAs write them. */
static int next_field(const char **p, const char *end, char *name, size_t nlen,
		      struct buf *val, int *blank)
{
	const char *s = *p;
	*blank = 0;
	for (;;) {
		if (s >= end)
			return 0;
		const char *eol = memchr(s, '\n', (size_t)(end - s));
		const char *le = eol ? eol : end;
		size_t ll = (size_t)(le - s);
		if (ll && s[ll - 1] == '\r')
			ll--;
		const char *next = eol ? eol + 1 : end;
		int empty = 1;
		for (size_t i = 0; i < ll; i++)
			empty &= s[i] == ' ' || s[i] == '\t';
		if (empty) {
			*p = next;
			*blank = 1;
			return 0;
		}
		const char *colon = memchr(s, ':', ll);
		size_t k = colon ? (size_t)(colon - s) : 0;
		int ok = colon && k > 0 && k < nlen && s[0] != ' ' && s[0] != '\t';
		for (size_t i = 0; ok && i < k; i++)
			ok = s[i] > 0x20 && s[i] < 0x7f;
		if (!ok) {
			s = next; /* continuation of a field we skipped, or junk */
			continue;
		}
		memcpy(name, s, k);
		name[k] = '\0';
		buf_reset(val);
		const char *v = colon + 1;
		size_t vl = ll - k - 1;
		buf_add(val, v, vl < VALUE_MAX ? vl : VALUE_MAX);
		s = next;
		while (s < end && (*s == ' ' || *s == '\t')) {
			eol = memchr(s, '\n', (size_t)(end - s));
			le = eol ? eol : end;
			ll = (size_t)(le - s);
			if (ll && s[ll - 1] == '\r')
				ll--;
			if (val->len < VALUE_MAX) {
				buf_addc(val, ' ');
				buf_add(val, s, ll < VALUE_MAX - val->len ? ll : VALUE_MAX - val->len);
			}
			s = eol ? eol + 1 : end;
		}
		*p = s;
		return 1;
	}
}

/* Every value of field `name` in the header block, trimmed, via fn. */
static void each_header(const char *blk, size_t len, const char *name,
			void (*fn)(void *arg, const char *v), void *arg)
{
	const char *p = blk, *end = blk + len;
	char fname[80];
	struct buf v = {0};
	int blank;
	while (next_field(&p, end, fname, sizeof fname, &v, &blank))
		if (!strcasecmp(fname, name)) {
			char tmp[VALUE_MAX + 1];
			one_line(tmp, sizeof tmp, v.p ? v.p : "", v.len);
			fn(arg, tmp);
		}
	buf_free(&v);
}

static void first_value(void *arg, const char *v)
{
	struct buf *b = arg;
	if (!b->len)
		buf_adds(b, *v ? v : " ");
}

/* The first value of a header field, or "" (out is cleared first). */
static const char *header(const char *blk, size_t len, const char *name, struct buf *out)
{
	buf_reset(out);
	each_header(blk, len, name, first_value, out);
	return out->len ? buf_cstr(out) : "";
}

/* The first value of a header field as one line in out (""). */
static void header_line(const char *blk, size_t len, const char *name, struct buf *tmp,
			char *out, size_t outlen)
{
	const char *v = header(blk, len, name, tmp);
	one_line(out, outlen, v, strlen(v));
}

/* Length of the header block at the start of s: up to the first empty
 * line (or everything). */
static size_t header_len(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n' && (i + 1 == len || s[i + 1] == '\n' ||
				     (s[i + 1] == '\r' && i + 2 < len && s[i + 2] == '\n')))
			return i + 1;
	return len;
}

/* ---- VERP -------------------------------------------------------------- */

/* Splits the return path template around {{verp}} (spaces allowed inside
 * the braces). Returns 0 with the fixed parts, -1 without VERP. */
static int verp_split(const char *tmpl, const char **pre, size_t *prelen,
		      const char **suf)
{
	if (!tmpl)
		return -1;
	const char *o = strstr(tmpl, "{{");
	if (!o)
		return -1;
	const char *n = o + 2;
	while (*n == ' ')
		n++;
	if (strncmp(n, "verp", 4))
		return -1;
	n += 4;
	while (*n == ' ')
		n++;
	if (strncmp(n, "}}", 2) || strstr(n + 2, "{{"))
		return -1;
	*pre = tmpl;
	*prelen = (size_t)(o - tmpl);
	*suf = n + 2;
	return 0;
}

int dsn_verp_decode(const char *return_path, const char *addr, char *out,
		    size_t outlen)
{
	const char *pre, *suf;
	size_t prelen;
	if (verp_split(return_path, &pre, &prelen, &suf) < 0)
		return -1;
	size_t al = strlen(addr), sl = strlen(suf);
	if (al < prelen + sl + 3 || strncasecmp(addr, pre, prelen) ||
	    strcasecmp(addr + al - sl, suf))
		return -1;
	const char *mid = addr + prelen;
	size_t ml = al - prelen - sl;
	const char *eq = NULL;
	for (size_t i = 0; i < ml; i++)
		if (mid[i] == '=')
			eq = mid + i;
	if (!eq || eq == mid || ml >= outlen)
		return -1;
	snprintf(out, outlen, "%.*s@%.*s", (int)(eq - mid), mid, (int)(ml - (size_t)(eq - mid) - 1), eq + 1);
	return addr_valid(out, NULL, 0) < 0 ? -1 : 0;
}

struct verp_ctx {
	const char *tmpl;
	char *out;
};

static void verp_try(void *arg, const char *v)
{
	struct verp_ctx *x = arg;
	char a[320];
	size_t pos = 0, end;
	if (*x->out)
		return;
	while (find_addr(v, strlen(v), pos, a, sizeof a, &end)) {
		if (dsn_verp_decode(x->tmpl, a, x->out, 320) == 0)
			return;
		x->out[0] = '\0';
		pos = end;
	}
}

/* ---- the MIME walk ----------------------------------------------------- */

struct parts {
	struct buf status;     /* message/delivery-status, decoded */
	struct buf feedback;   /* message/feedback-report */
	struct buf returned;   /* header block of the returned message */
	struct buf text;       /* first text/plain outside returned messages */
	char report_type[40];
	int nparts;
};

static void ctype_of(const struct mailmime *m, char *out, size_t outlen)
{
	const struct mailmime_content *ct = m->mm_content_type;
	const char *t = "text", *sub = ct && ct->ct_subtype ? ct->ct_subtype : "plain";
	if (ct && ct->ct_type) {
		const struct mailmime_type *ty = ct->ct_type;
		if (ty->tp_type == MAILMIME_TYPE_DISCRETE_TYPE && ty->tp_data.tp_discrete_type) {
			static const char *const d[] = {"error", "text", "image", "audio", "video", "application"};
			int k = ty->tp_data.tp_discrete_type->dt_type;
			t = k == MAILMIME_DISCRETE_TYPE_EXTENSION ? ty->tp_data.tp_discrete_type->dt_extension
				: (k >= 0 && k <= MAILMIME_DISCRETE_TYPE_APPLICATION) ? d[k] : "error";
		} else if (ty->tp_type == MAILMIME_TYPE_COMPOSITE_TYPE && ty->tp_data.tp_composite_type) {
			int k = ty->tp_data.tp_composite_type->ct_type;
			t = k == MAILMIME_COMPOSITE_TYPE_MESSAGE ? "message"
				: k == MAILMIME_COMPOSITE_TYPE_MULTIPART ? "multipart"
				: ty->tp_data.tp_composite_type->ct_token;
		}
	}
	snprintf(out, outlen, "%s/%s", t ? t : "x", sub);
	for (char *c = out; *c; c++)
		*c = (char)tolower((unsigned char)*c);
}

static const char *param(const struct mailmime *m, const char *name)
{
	if (!m->mm_content_type || !m->mm_content_type->ct_parameters)
		return NULL;
	for (clistiter *it = clist_begin(m->mm_content_type->ct_parameters); it; it = clist_next(it)) {
		const struct mailmime_parameter *p = clist_content(it);
		if (p && p->pa_name && !strcasecmp(p->pa_name, name))
			return p->pa_value;
	}
	return NULL;
}

/* The decoded body of a leaf (or of a message/rfc822 part: the whole
 * embedded message), at most PART_MAX bytes, appended to out. */
static int body_of(const struct mailmime *m, struct buf *out)
{
	const struct mailmime_data *d = m->mm_body ? m->mm_body :
		m->mm_type == MAILMIME_SINGLE ? m->mm_data.mm_single : NULL;
	if (!d || d->dt_type != MAILMIME_DATA_TEXT || !d->dt_data.dt_text.dt_data)
		return 0;
	const char *s = d->dt_data.dt_text.dt_data;
	size_t len = d->dt_data.dt_text.dt_length;
	int enc = d->dt_encoding;
	if (d->dt_encoded && (enc == MAILMIME_MECHANISM_BASE64 || enc == MAILMIME_MECHANISM_QUOTED_PRINTABLE)) {
		size_t idx = 0, rl = 0;
		char *res = NULL;
		if (mailmime_part_parse(s, len, &idx, enc, &res, &rl) == MAILIMF_NO_ERROR && res) {
			int rc = buf_add(out, res, rl < PART_MAX ? rl : PART_MAX);
			mmap_string_unref(res);
			return rc;
		}
	}
	return buf_add(out, s, len < PART_MAX ? len : PART_MAX);
}

static int walk(const struct mailmime *m, int depth, int inside_returned, struct parts *x)
{
	if (!m || depth > DEPTH_MAX || ++x->nparts > PARTS_MAX)
		return 0;
	char ct[128];
	ctype_of(m, ct, sizeof ct);
	if (m->mm_type == MAILMIME_MULTIPLE) {
		if (!strcmp(ct, "multipart/report") && !x->report_type[0]) {
			const char *rt = param(m, "report-type");
			snprintf(x->report_type, sizeof x->report_type, "%s", rt ? rt : "");
			for (char *c = x->report_type; *c; c++)
				*c = (char)tolower((unsigned char)*c);
		}
		if (!m->mm_data.mm_multipart.mm_mp_list)
			return 0;
		for (clistiter *it = clist_begin(m->mm_data.mm_multipart.mm_mp_list); it; it = clist_next(it))
			if (walk(clist_content(it), depth + 1, inside_returned, x) < 0)
				return -1;
		return 0;
	}
	if (inside_returned)
		return 0;
	/* The message itself (depth 0) is not a returned message. */
	if (depth == 0 && m->mm_type == MAILMIME_MESSAGE)
		return walk(m->mm_data.mm_message.mm_msg_mime, depth + 1, 0, x);
	int rc = 0;
	if (!strcmp(ct, "message/delivery-status") || !strcmp(ct, "message/global-delivery-status")) {
		if (!x->status.len)
			rc = body_of(m, &x->status);
	} else if (!strcmp(ct, "message/feedback-report")) {
		if (!x->feedback.len)
			rc = body_of(m, &x->feedback);
	} else if (!strcmp(ct, "text/rfc822-headers") || !strcmp(ct, "message/rfc822") ||
		   !strcmp(ct, "message/global") || !strcmp(ct, "message/global-headers")) {
		if (!x->returned.len) {
			struct buf b = {0};
			rc = body_of(m, &b);
			if (!rc && b.len)
				rc = buf_add(&x->returned, b.p, header_len(b.p, b.len));
			buf_free(&b);
		}
		/* A returned message's own parts are the newsletter, not the
		 * report: do not look for explanations in there. */
		return rc;
	} else if (!strcmp(ct, "text/plain") && !x->text.len) {
		rc = body_of(m, &x->text);
	}
	if (!rc && m->mm_type == MAILMIME_MESSAGE)
		rc = walk(m->mm_data.mm_message.mm_msg_mime, depth + 1, inside_returned, x);
	return rc;
}

/* ---- results ----------------------------------------------------------- */

static struct dsn_rcpt *add_rcpt(struct dsn_report *r)
{
	if (r->nrcpt >= RCPT_MAX)
		return NULL;
	struct dsn_rcpt *n = realloc(r->rcpt, (r->nrcpt + 1) * sizeof *n);
	if (!n)
		return NULL;
	r->rcpt = n;
	struct dsn_rcpt *x = &r->rcpt[r->nrcpt++];
	memset(x, 0, sizeof *x);
	return x;
}

static int has_rcpt(const struct dsn_report *r, const char *addr)
{
	for (size_t i = 0; i < r->nrcpt; i++)
		if (!strcasecmp(r->rcpt[i].addr, addr))
			return 1;
	return 0;
}

const char *dsn_kind_name(enum dsn_kind k)
{
	return k == DSN_HARD ? "hard" : k == DSN_SOFT ? "soft" : k == DSN_COMPLAINT ? "complaint" : "delayed";
}

/* "rfc822; <Joy@Example.net>" -> "Joy@Example.net"; other address types
 * (x400, unknown) give "". */
static void dsn_address(const char *v, char *out, size_t outlen)
{
	out[0] = '\0';
	const char *semi = strchr(v, ';');
	if (!semi)
		return;
	size_t tl = (size_t)(semi - v);
	while (tl && v[tl - 1] == ' ')
		tl--;
	if (!((tl == 6 && !strncasecmp(v, "rfc822", 6)) || (tl == 5 && !strncasecmp(v, "utf-8", 5))))
		return;
	const char *a = semi + 1;
	size_t end;
	char tmp[320];
	if (find_addr(a, strlen(a), 0, tmp, sizeof tmp, &end))
		snprintf(out, outlen, "%s", tmp);
}

/* ---- dates ------------------------------------------------------------- */

static time_t date_time(const struct mailimf_date_time *dt)
{
	if (dt->dt_year < 1970 || dt->dt_year > 9999 || dt->dt_month < 1 || dt->dt_month > 12 ||
	    dt->dt_day < 1 || dt->dt_day > 31 || dt->dt_hour < 0 || dt->dt_hour > 23 ||
	    dt->dt_min < 0 || dt->dt_min > 59 || dt->dt_sec < 0 || dt->dt_sec > 60)
		return 0;
	struct tm tm = {0};
	tm.tm_year = dt->dt_year - 1900;
	tm.tm_mon = dt->dt_month - 1;
	tm.tm_mday = dt->dt_day;
	tm.tm_hour = dt->dt_hour;
	tm.tm_min = dt->dt_min;
	tm.tm_sec = dt->dt_sec;
	time_t t = timegm(&tm);
	int z = dt->dt_zone, az = z < 0 ? -z : z;
	if (az > 2400)
		return 0;
	long off = (long)(az / 100) * 3600 + (long)(az % 100) * 60;
	return z < 0 ? t + off : t - off;
}

static time_t header_date(const char *v)
{
	size_t idx = 0;
	struct mailimf_date_time *dt = NULL;
	if (!*v || mailimf_date_time_parse(v, strlen(v), &idx, &dt) != MAILIMF_NO_ERROR)
		return 0;
	time_t t = date_time(dt);
	mailimf_date_time_free(dt);
	return t;
}

/* ---- RFC 3464 ---------------------------------------------------------- */

struct rblock {
	char final[320], orig[320], action[24], status[16];
	char diag[VALUE_MAX + 1];
	int any;
};

static int classify(struct dsn_rcpt *x, const char *action, const char *status, int code)
{
	if (status[0] == '5' || (!status[0] && code >= 500))
		x->kind = DSN_HARD;
	else if (status[0] == '4' || (!status[0] && code >= 400))
		x->kind = DSN_SOFT;
	else if (!strcmp(action, "failed"))
		x->kind = DSN_HARD;
	else
		return -1;
	return 0;
}

static int flush_block(struct dsn_report *r, struct rblock *b)
{
	if (!b->any)
		return 0;
	b->any = 0;
	const char *addr = b->final[0] ? b->final : b->orig;
	const char *act = b->action;
	if (!strcmp(act, "delivered") || !strcmp(act, "relayed") || !strcmp(act, "expanded"))
		return 0;
	/* A recipient the report cannot name (an x400 or empty
	 * Final-Recipient): the bounce came back to one reader's VERP
	 * address, so that is who it is about. */
	if (!addr[0])
		addr = r->verp_addr;
	if (!addr[0]) {
		r->unnamed++;
		return 0;
	}
	/* "smtp; 550 5.1.1 <joy@...>: Recipient address rejected" */
	const char *diag = b->diag;
	const char *semi = strchr(diag, ';');
	if (semi && (size_t)(semi - diag) < 16)
		diag = semi + 1;
	while (*diag == ' ')
		diag++;
	char st[16] = "";
	if (b->status[0])
		snprintf(st, sizeof st, "%s", b->status);
	else
		find_status(diag, strlen(diag), st, NULL);
	int code = find_code(diag, strlen(diag));
	if (!code && isdigit((unsigned char)diag[0]) && (diag[0] == '4' || diag[0] == '5') &&
	    isdigit((unsigned char)diag[1]) && isdigit((unsigned char)diag[2]) && !isdigit((unsigned char)diag[3]))
		code = atoi((char[4]){diag[0], diag[1], diag[2], 0});
	struct dsn_rcpt tmp = {0};
	if (!strcmp(act, "delayed"))
		tmp.kind = DSN_DELAYED;
	else if (classify(&tmp, act, st, code) < 0)
		return 0;
	if (has_rcpt(r, addr))
		return 0;
	struct dsn_rcpt *x = add_rcpt(r);
	if (!x)
		return r->nrcpt >= RCPT_MAX ? 0 : -1;
	*x = tmp;
	snprintf(x->addr, sizeof x->addr, "%s", addr);
	snprintf(x->status, sizeof x->status, "%s", st);
	x->code = code;
	if (*diag)
		one_line(x->text, sizeof x->text, diag, strlen(diag));
	else
		snprintf(x->text, sizeof x->text, "Action: %s; Status: %s", act[0] ? act : "-", st[0] ? st : "-");
	return 0;
}

/* The fields of a message/delivery-status body. Blank lines separate the
 * per-message block from the recipient blocks; a second Final-Recipient
 * in one block starts another recipient (some MTAs forget the blank). */
static int parse_status(struct dsn_report *r, const char *s, size_t len, time_t *arrival)
{
	const char *p = s, *end = s + len;
	char name[80];
	struct buf v = {0};
	struct rblock b;
	memset(&b, 0, sizeof b);
	int rc = 0, blank;
	for (;;) {
		int got = next_field(&p, end, name, sizeof name, &v, &blank);
		if (!got) {
			if (flush_block(r, &b) < 0)
				rc = -1;
			memset(&b, 0, sizeof b);
			if (!blank || rc)
				break;
			continue;
		}
		char val[VALUE_MAX + 1];
		one_line(val, sizeof val, v.p ? v.p : "", v.len);
		if (!strcasecmp(name, "Final-Recipient") || !strcasecmp(name, "Original-Recipient")) {
			int fin = !strcasecmp(name, "Final-Recipient");
			if ((fin && b.final[0]) || (!fin && b.orig[0])) {
				if (flush_block(r, &b) < 0) {
					rc = -1;
					break;
				}
				memset(&b, 0, sizeof b);
			}
			dsn_address(val, fin ? b.final : b.orig, 320);
			b.any = 1;
		} else if (!strcasecmp(name, "Action")) {
			size_t k = strcspn(val, " ;(");
			snprintf(b.action, sizeof b.action, "%.*s", (int)(k < 23 ? k : 23), val);
			for (char *c = b.action; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			b.any = 1;
		} else if (!strcasecmp(name, "Status")) {
			dsn_status_parse(val, b.status);
			b.any = 1;
		} else if (!strcasecmp(name, "Diagnostic-Code")) {
			snprintf(b.diag, sizeof b.diag, "%s", val);
			b.any = 1;
		} else if (!strcasecmp(name, "Arrival-Date") && arrival && !*arrival) {
			size_t idx = 0;
			struct mailimf_date_time *dt = NULL;
			if (mailimf_date_time_parse(val, strlen(val), &idx, &dt) == MAILIMF_NO_ERROR) {
				*arrival = date_time(dt);
				mailimf_date_time_free(dt);
			}
		}
	}
	buf_free(&v);
	return rc;
}

/* ---- ARF --------------------------------------------------------------- */

struct arf {
	struct dsn_report *r;
	const char *text;
	int rc;
};

static void arf_rcpt(void *arg, const char *v)
{
	struct arf *a = arg;
	char addr[320];
	size_t end;
	if (a->rc || !find_addr(v, strlen(v), 0, addr, sizeof addr, &end) || has_rcpt(a->r, addr))
		return;
	struct dsn_rcpt *x = add_rcpt(a->r);
	if (!x) {
		a->rc = a->r->nrcpt >= RCPT_MAX ? 0 : -1;
		return;
	}
	snprintf(x->addr, sizeof x->addr, "%s", addr);
	x->kind = DSN_COMPLAINT;
	snprintf(x->text, sizeof x->text, "%s", a->text);
}

static int parse_arf(struct dsn_report *r, const struct parts *x, struct buf *tmp)
{
	const char *fb = x->feedback.p ? x->feedback.p : "";
	char type[64], ua[128], text[400];
	header_line(fb, x->feedback.len, "Feedback-Type", tmp, type, sizeof type);
	for (char *c = type; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	header_line(fb, x->feedback.len, "User-Agent", tmp, ua, sizeof ua);
	r->format = DSN_ARF;
	snprintf(r->family, sizeof r->family, "arf");
	if (!strcmp(type, "not-spam") || !strcmp(type, "auth-failure"))
		return 0;
	snprintf(text, sizeof text, "feedback-type %s%s%s", type[0] ? type : "unknown",
		 ua[0] ? " from " : "", ua);
	struct arf a = {r, text, 0};
	each_header(fb, x->feedback.len, "Original-Rcpt-To", arf_rcpt, &a);
	if (!a.rc && !r->nrcpt && x->returned.len) {
		/* Only when the returned message names one reader: a To
		 * with several addresses would blame them all. */
		const char *to = header(x->returned.p, x->returned.len, "To", tmp);
		char one[320], two[320];
		size_t end;
		if (find_addr(to, strlen(to), 0, one, sizeof one, &end) &&
		    !find_addr(to, strlen(to), end, two, sizeof two, NULL))
			arf_rcpt(&a, one);
	}
	/* The reader is redacted from the report (large mailbox providers
	 * do): the VERP address still says who complained. */
	if (!a.rc && !r->nrcpt && r->verp_addr[0])
		arf_rcpt(&a, r->verp_addr);
	return a.rc;
}

/* ---- text bounces ------------------------------------------------------ */

static const char *const family_marks[][2] = {
	{"this is the mail system at host", "postfix"},
	{"this message was created automatically by mail delivery software", "exim"},
	{"the following addresses had permanent fatal errors", "sendmail"},
	{"transcript of session follows", "sendmail"},
	{"this is the qmail-send program", "qmail"},
	{"i'm afraid i wasn't able to deliver", "qmail"},
	{"delivery has failed to these recipients", "exchange"},
	{"your message did not reach some or all of the intended recipients", "exchange"},
	{"diagnostic information for administrators", "exchange"},
	{"the following recipient(s) cannot be reached", "exchange"},
	{"google tried to deliver your message", "gmail"},
	{"delivery to the following recipient failed", "gmail"},
	{"your message wasn't delivered to", "gmail"},
	{"delivery to the following recipients failed", "gmail"},
};

static const char *const delay_marks[] = {
	"this is a warning message only", "this is a warning only",
	"has not yet been delivered", "has been delayed", "delivery delayed",
	"delivery status notification (delay)", "delayed mail (still being retried)",
	"will continue to try", "will keep trying", "will retry",
	"warning: message still undelivered", "not yet been delivered",
};

static const char *const fail_marks[] = {
	"failed permanently", "permanent error", "permanent failure",
	"could not be delivered", "permanent fatal errors", "wasn't able to deliver",
	"delivery has failed", "cannot be reached", "undeliverable",
	"wasn't delivered", "was not delivered", "delivery failed", "giving up",
	"i've given up", "returned to sender", "failed:",
};

static const char *const hard_words[] = {
	"user unknown", "unknown user", "no such user", "does not exist",
	"doesn't exist", "address not found", "couldn't be found",
	"could not be found", "mailbox unavailable", "no mailbox",
	"invalid recipient", "recipient rejected", "account has been disabled",
	"failed permanently", "permanent error", "permanent failure",
};

/* Where the returned copy of the message starts: nothing after it is
 * the MTA speaking. */
static const char *const returned_marks[] = {
	"------ this is a copy of the message", "----- original message -----",
	"--- below this line is a copy of the message", "original message headers:",
	"----- original message follows -----", "------- returned message --------",
	"--- below this line is the original message", "----- message header follows -----",
	"------ this is a copy of your message",
};

static int any_mark(const char *s, size_t len, const char *const *marks, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (memcasemem(s, len, marks[i]))
			return 1;
	return 0;
}

/* Header lines quoted in a text bounce ("To: ...", "From: ..."): their
 * addresses are not the failed recipients. */
static int quoted_header(const char *s, size_t len)
{
	static const char *const names[] = {"from:", "to:", "cc:", "reply-to:", "sender:",
		"return-path:", "delivered-to:", "received:", "message-id:", "date:",
		"x-original-to:", "envelope-to:", "list-unsubscribe:", "subject:", "by ",
		"for ", "with "};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		size_t nl = strlen(names[i]);
		if (len >= nl && !strncasecmp(s, names[i], nl))
			return 1;
	}
	return 0;
}

struct text_ctx {
	struct dsn_report *r;
	const char *text;
	size_t len;
	const char *skip[3]; /* addresses that are not recipients */
	const char *return_path;
	const char *subject; /* the text of last resort */
};

static int skip_addr(const struct text_ctx *t, const char *a)
{
	char dec[320];
	for (size_t i = 0; i < 3; i++)
		if (t->skip[i] && t->skip[i][0] && !strcasecmp(t->skip[i], a))
			return 1;
	return dsn_verp_decode(t->return_path, a, dec, sizeof dec) == 0;
}

/* Fills one recipient from the diagnostic block that follows its line. */
static int text_rcpt(struct text_ctx *t, const char *addr, const char *blk, size_t bl)
{
	/* Skip what separates the address from its reason: ">:", "...". */
	while (bl && (*blk == '>' || *blk == ':' || *blk == ' ' || *blk == '.' || *blk == '\r')) {
		blk++;
		bl--;
	}
	struct dsn_rcpt *x = NULL;
	for (size_t i = 0; i < t->r->nrcpt; i++)
		if (!strcasecmp(t->r->rcpt[i].addr, addr))
			x = &t->r->rcpt[i];
	if (x) {
		/* Named again further down (Exchange's "for administrators"
		 * part): only worth it if this block has the status. */
		char st[16];
		if (x->status[0] || !find_status(blk, bl, st, NULL))
			return 0;
		memset(x, 0, sizeof *x);
	} else if (!(x = add_rcpt(t->r))) {
		return t->r->nrcpt >= RCPT_MAX ? 0 : -1;
	}
	snprintf(x->addr, sizeof x->addr, "%s", addr);
	size_t at = 0;
	int have = find_status(blk, bl, x->status, &at);
	x->code = find_code(blk, bl);
	const char *cut = blk;
	if (!have && !x->code && t->r->nrcpt == 1) {
		/* One recipient and the block says nothing: the reason is
		 * elsewhere in the text (Gmail puts it paragraphs later). */
		have = find_status(t->text, t->len, x->status, &at);
		x->code = find_code(t->text, t->len);
		if (have) {
			const char *ls = t->text + at;
			while (ls > t->text && ls[-1] != '\n')
				ls--;
			const char *le = memchr(ls, '\n', t->len - (size_t)(ls - t->text));
			blk = ls;
			bl = le ? (size_t)(le - ls) : t->len - (size_t)(ls - t->text);
			cut = blk;
		}
	}
	one_line(x->text, sizeof x->text, cut, bl);
	if (!x->text[0])
		snprintf(x->text, sizeof x->text, "%s", t->subject);
	if (classify(x, "", x->status, x->code) < 0) {
		/* No status, no code: the words decide; in doubt soft, so an
		 * unclear message counts towards the limit instead of
		 * removing a reader at once. */
		if (any_mark(blk, bl, hard_words, sizeof hard_words / sizeof *hard_words) ||
		    any_mark(t->text, t->len, hard_words, sizeof hard_words / sizeof *hard_words))
			x->kind = DSN_HARD;
		else
			x->kind = DSN_SOFT;
	}
	return 0;
}

static int text_bounce(struct text_ctx *t, int delayed_only)
{
	const char *s = t->text;
	size_t len = t->len;
	/* Stop at the returned copy. */
	for (size_t i = 0; i < sizeof returned_marks / sizeof *returned_marks; i++) {
		const char *m = memcasemem(s, len, returned_marks[i]);
		if (m)
			len = (size_t)(m - s);
	}
	t->len = len;
	size_t pos = 0;
	while (pos < len) {
		const char *eol = memchr(s + pos, '\n', len - pos);
		size_t le = eol ? (size_t)(eol - s) : len;
		size_t ls = pos;
		while (ls < le && (s[ls] == ' ' || s[ls] == '\t' || s[ls] == '<'))
			ls++;
		char a[320];
		size_t end;
		const char *hit = NULL;
		if (!quoted_header(s + ls, le - ls))
			hit = find_addr(s, le, ls, a, sizeof a, &end);
		/* An address line: the address opens it, and what follows is
		 * nothing, '>', ':', " (", " on ", "...", "<mailto:". */
		int line_addr = hit && hit == s + ls;
		if (line_addr) {
			size_t k = end;
			if (k < le && s[k] == '>')
				k++;
			const char *rest = s + k;
			size_t rl = le - k;
			while (rl && (rest[rl - 1] == '\r' || rest[rl - 1] == ' '))
				rl--;
			line_addr = rl == 0 || rest[0] == ':' || !strncmp(rest, " (", 2) ||
				    !strncmp(rest, " on ", 4) || !strncmp(rest, "...", 3) ||
				    !strncmp(rest, "<mailto:", 8) || !strncmp(rest, " <mailto:", 9);
		}
		if (line_addr && !skip_addr(t, a)) {
			/* The block: the rest of this line and the lines after
			 * it up to a blank line or the next address line. */
			size_t bs = end, be = le;
			size_t q = eol ? le + 1 : len;
			while (q < len) {
				const char *e2 = memchr(s + q, '\n', len - q);
				size_t l2 = e2 ? (size_t)(e2 - s) : len;
				size_t f = q;
				while (f < l2 && (s[f] == ' ' || s[f] == '\t' || s[f] == '\r'))
					f++;
				if (f == l2)
					break;
				char a2[320];
				size_t end2;
				const char *h2 = find_addr(s, l2, f, a2, sizeof a2, &end2);
				if (h2 == s + f || (s[f] == '<' && h2 == s + f + 1))
					break;
				be = l2;
				q = e2 ? l2 + 1 : len;
			}
			if (delayed_only) {
				struct dsn_rcpt *x = has_rcpt(t->r, a) ? NULL : add_rcpt(t->r);
				if (x) {
					snprintf(x->addr, sizeof x->addr, "%s", a);
					x->kind = DSN_DELAYED;
					one_line(x->text, sizeof x->text, s + bs, be - bs);
				}
			} else if (text_rcpt(t, a, s + bs, be - bs) < 0)
				return -1;
			pos = q;
			continue;
		}
		/* Gmail: "Your message wasn't delivered to joy@... because". */
		const char *g = memcasemem(s + pos, le - pos, "delivered to ");
		if (g && hit && !delayed_only && !skip_addr(t, a) &&
		    hit == g + strlen("delivered to ") && memcasemem(s + pos, le - pos, "because")) {
			if (text_rcpt(t, a, s + end, le - end) < 0)
				return -1;
		}
		pos = eol ? le + 1 : len;
	}
	return 0;
}

struct failed_ctx {
	struct text_ctx *t;
	int rc;
};

static void failed_rcpt(void *arg, const char *v)
{
	struct failed_ctx *f = arg;
	char a[320];
	size_t pos = 0, end;
	while (!f->rc && find_addr(v, strlen(v), pos, a, sizeof a, &end)) {
		pos = end;
		/* X-Failed-Recipients: the text says why, find the line. */
		const char *at = memcasemem(f->t->text, f->t->len, a);
		size_t bl = 0;
		if (at) {
			const char *e = at;
			size_t left = f->t->len - (size_t)(at - f->t->text);
			/* the address line and the indented lines under it */
			const char *stop = at;
			while ((size_t)(stop - at) < left) {
				const char *nl = memchr(stop, '\n', left - (size_t)(stop - at));
				if (!nl)
					break;
				stop = nl + 1;
				if ((size_t)(stop - at) >= left || (*stop != ' ' && *stop != '\t'))
					break;
				const char *q = stop;
				while ((size_t)(q - at) < left && (*q == ' ' || *q == '\t'))
					q++;
				if (*q == '\n' || *q == '\r')
					break;
			}
			bl = (size_t)(stop - e);
		}
		/* The reason follows the address. */
		size_t skip = at ? strlen(a) : 0;
		if (text_rcpt(f->t, a, at ? at + skip : "", bl > skip ? bl - skip : 0) < 0)
			f->rc = -1;
	}
}

/* ---- the whole message -------------------------------------------------- */

static void msgid_from(const char *v, char *out, size_t outlen)
{
	const char *lt = strchr(v, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt && gt - lt > 2 && (size_t)(gt - lt) + 2 < outlen && !memchr(lt, ' ', (size_t)(gt - lt)))
		snprintf(out, outlen, "%.*s", (int)(gt - lt + 1), lt);
}

/* A Message-ID line inside a text bounce's copy of the headers. */
static void msgid_in_text(const char *s, size_t len, char *out, size_t outlen)
{
	for (size_t i = 0; i + 11 < len; i++) {
		if ((i == 0 || s[i - 1] == '\n') && !strncasecmp(s + i, "Message-ID:", 11)) {
			char v[200];
			const char *e = memchr(s + i, '\n', len - i);
			size_t vl = e ? (size_t)(e - s - i - 11) : len - i - 11;
			one_line(v, sizeof v, s + i + 11, vl);
			msgid_from(v, out, outlen);
			if (*out)
				return;
		}
	}
}

static int looks_like_bounce(const char *subject, const char *from)
{
	static const char *const subj[] = {"undeliver", "delivery status notification",
		"failure notice", "returned mail", "mail delivery failed", "delivery failure",
		"non-delivery", "not delivered", "delivery has failed", "rejected",
		"could not be delivered", "mail system error"};
	for (size_t i = 0; i < sizeof subj / sizeof *subj; i++)
		if (memcasemem(subject, strlen(subject), subj[i]))
			return 1;
	return memcasemem(from, strlen(from), "mailer-daemon") || memcasemem(from, strlen(from), "postmaster");
}

int dsn_parse(const char *msg, size_t len, const char *return_path,
	      struct dsn_report *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	if (len > PARSE_MAX)
		len = PARSE_MAX;
	struct parts x;
	memset(&x, 0, sizeof x);
	struct buf tmp = {0};
	int rc = 0;
	size_t hl = header_len(msg, len);

	/* Top-level facts first: they matter whatever the body is. */
	r->date = header_date(header(msg, hl, "Date", &tmp));
	msgid_from(header(msg, hl, "Message-ID", &tmp), r->report_id, sizeof r->report_id);
	if (!r->report_id[0]) {
		char hex[65];
		if (buf_sha256_hex(msg, len, hex) < 0) {
			buf_free(&tmp);
			return set_err(err, errlen, -1, "cannot hash a message");
		}
		snprintf(r->report_id, sizeof r->report_id, "sha256:%s", hex);
	}
	char subject[300], from[300];
	header_line(msg, hl, "Subject", &tmp, subject, sizeof subject);
	header_line(msg, hl, "From", &tmp, from, sizeof from);
	char auto_sub[64];
	header_line(msg, hl, "Auto-Submitted", &tmp, auto_sub, sizeof auto_sub);

	size_t idx = 0;
	struct mailmime *mime = NULL;
	if (mailmime_parse(msg, len, &idx, &mime) == MAILIMF_NO_ERROR && mime) {
		rc = walk(mime, 0, 0, &x);
		mailmime_free(mime);
	}
	if (rc)
		goto oom;
	if (!x.text.len && !x.status.len && !x.feedback.len && hl < len)
		rc = buf_add(&x.text, msg + hl, len - hl < PART_MAX ? len - hl : PART_MAX);
	if (rc)
		goto oom;

	if (x.returned.len)
		msgid_from(header(x.returned.p, x.returned.len, "Message-ID", &tmp), r->orig_msgid,
			   sizeof r->orig_msgid);
	if (!r->orig_msgid[0] && x.text.len)
		msgid_in_text(x.text.p, x.text.len, r->orig_msgid, sizeof r->orig_msgid);

	/* VERP: the envelope recipient of the bounce, as the delivering MTA
	 * recorded it, then what the report and the returned copy say. */
	if (verp_split(return_path, &(const char *){0}, &(size_t){0}, &(const char *){0}) == 0) {
		struct verp_ctx v = {return_path, r->verp_addr};
		static const char *const outer[] = {"Delivered-To", "X-Original-To", "Envelope-To",
			"X-Envelope-To", "To", "Return-Path", "Original-Recipient"};
		for (size_t i = 0; i < sizeof outer / sizeof *outer && !r->verp_addr[0]; i++)
			each_header(msg, hl, outer[i], verp_try, &v);
		if (!r->verp_addr[0] && x.feedback.len)
			each_header(x.feedback.p, x.feedback.len, "Original-Mail-From", verp_try, &v);
		if (!r->verp_addr[0] && x.returned.len)
			each_header(x.returned.p, x.returned.len, "Return-Path", verp_try, &v);
		if (!r->verp_addr[0] && x.text.len) {
			/* A text bounce that quotes the headers inline. */
			char line[VALUE_MAX + 1];
			const char *pre;
			size_t prelen;
			const char *suf;
			verp_split(return_path, &pre, &prelen, &suf);
			char prefix[128];
			snprintf(prefix, sizeof prefix, "%.*s", (int)(prelen < 127 ? prelen : 127), pre);
			const char *h = prelen ? memcasemem(x.text.p, x.text.len, prefix) : NULL;
			if (h) {
				size_t start = (size_t)(h - x.text.p);
				size_t n = x.text.len - start < 400 ? x.text.len - start : 400;
				one_line(line, sizeof line, h, n);
				verp_try(&v, line);
			}
		}
	}

	if (x.report_type[0] && !strcmp(x.report_type, "feedback-report") && x.feedback.len) {
		rc = parse_arf(r, &x, &tmp);
		if (rc)
			goto oom;
		goto done;
	}
	time_t arrival = 0;
	if (x.status.len) {
		r->format = DSN_RFC3464;
		snprintf(r->family, sizeof r->family, "rfc3464");
		if (parse_status(r, x.status.p, x.status.len, &arrival) < 0)
			goto oom;
		if (!r->date)
			r->date = arrival;
		goto done;
	}
	/* A delivery-status body that lost its MIME labels (broken
	 * boundaries, text/plain): the fields are still there. */
	const char *fr = x.text.len ? memcasemem(x.text.p, x.text.len, "\nFinal-Recipient:") : NULL;
	if (!fr)
		fr = memcasemem(msg + hl, len - hl, "\nFinal-Recipient:");
	if (fr) {
		const char *base = x.text.len && fr >= x.text.p && fr < x.text.p + x.text.len ? x.text.p : msg + hl;
		size_t blen = base == x.text.p ? x.text.len : len - hl;
		const char *st = fr + 1;
		/* back to the start of the paragraph (Reporting-MTA etc.) */
		const char *para = memcasemem(base, (size_t)(st - base), "Reporting-MTA:");
		if (para)
			st = para;
		if (parse_status(r, st, blen - (size_t)(st - base), &arrival) < 0)
			goto oom;
		if (r->nrcpt) {
			r->format = DSN_RFC3464;
			snprintf(r->family, sizeof r->family, "rfc3464");
			if (!r->date)
				r->date = arrival;
			goto done;
		}
	}

	/* Text bounces. */
	{
		const char *fam = "";
		const char *s = x.text.p ? x.text.p : "";
		for (size_t i = 0; i < sizeof family_marks / sizeof *family_marks; i++)
			if (memcasemem(s, x.text.len, family_marks[i][0])) {
				fam = family_marks[i][1];
				break;
			}
		char xfailed[VALUE_MAX + 1];
		header_line(msg, hl, "X-Failed-Recipients", &tmp, xfailed, sizeof xfailed);
		if (!*fam && xfailed[0])
			fam = "exim";
		int auto_reply = auto_sub[0] && strncasecmp(auto_sub, "no", 2) &&
				 !looks_like_bounce(subject, from) && !*fam;
		if (auto_reply)
			goto done; /* vacation notices come to the return path too */
		int delayed = any_mark(s, x.text.len, delay_marks, sizeof delay_marks / sizeof *delay_marks) ||
			      any_mark(subject, strlen(subject), delay_marks, sizeof delay_marks / sizeof *delay_marks);
		int failed = any_mark(s, x.text.len, fail_marks, sizeof fail_marks / sizeof *fail_marks);
		if (!*fam && !looks_like_bounce(subject, from))
			goto done;
		char from_addr[320] = "", to_addr[320] = "";
		find_addr(from, strlen(from), 0, from_addr, sizeof from_addr, NULL);
		const char *to = header(msg, hl, "To", &tmp);
		find_addr(to, strlen(to), 0, to_addr, sizeof to_addr, NULL);
		struct text_ctx t = {r, s, x.text.len, {from_addr, to_addr, NULL}, return_path, subject};
		if (delayed && !failed) {
			if (text_bounce(&t, 1) < 0)
				goto oom;
			if (!r->nrcpt && r->verp_addr[0]) {
				struct dsn_rcpt *c = add_rcpt(r);
				if (!c)
					goto oom;
				snprintf(c->addr, sizeof c->addr, "%s", r->verp_addr);
				c->kind = DSN_DELAYED;
				snprintf(c->text, sizeof c->text, "%s", subject);
			}
			r->format = r->nrcpt ? DSN_TEXT : DSN_NOT_BOUNCE;
			snprintf(r->family, sizeof r->family, "%s", *fam ? fam : "verp");
			goto done;
		}
		if (xfailed[0]) {
			struct failed_ctx f = {&t, 0};
			failed_rcpt(&f, xfailed);
			if (f.rc < 0)
				goto oom;
		}
		if (!r->nrcpt && text_bounce(&t, 0) < 0)
			goto oom;
		if (!r->nrcpt && r->verp_addr[0]) {
			/* Nothing names the reader, but the bounce came back to
			 * their VERP address: that is who bounced. */
			t.skip[0] = t.skip[1] = NULL;
			char blk[1] = "";
			if (text_rcpt(&t, r->verp_addr, blk, 0) < 0)
				goto oom;
			if (!*fam)
				fam = "verp";
		}
		if (r->nrcpt) {
			r->format = DSN_TEXT;
			snprintf(r->family, sizeof r->family, "%s", *fam ? fam : "text");
		}
	}
done:
	buf_free(&tmp);
	buf_free(&x.status);
	buf_free(&x.feedback);
	buf_free(&x.returned);
	buf_free(&x.text);
	return 0;
oom:
	buf_free(&tmp);
	buf_free(&x.status);
	buf_free(&x.feedback);
	buf_free(&x.returned);
	buf_free(&x.text);
	dsn_free(r);
	return set_err(err, errlen, -1, "out of memory");
}

void dsn_header(const char *msg, size_t len, const char *name, char *out, size_t outlen)
{
	struct buf v = {0};
	size_t hl = header_len(msg, len);
	const char *raw = header(msg, hl, name, &v);
	char *dec = NULL;
	size_t idx = 0;
	if (*raw && mailmime_encoded_phrase_parse("utf-8", raw, strlen(raw), &idx, "utf-8", &dec) ==
		    MAILIMF_NO_ERROR && dec)
		raw = dec;
	one_line(out, outlen, raw, strlen(raw));
	free(dec);
	buf_free(&v);
}

int dsn_text(const char *msg, size_t len, struct buf *out)
{
	if (len > PARSE_MAX)
		len = PARSE_MAX;
	struct parts x;
	memset(&x, 0, sizeof x);
	size_t idx = 0;
	struct mailmime *mime = NULL;
	int rc = 0;
	if (mailmime_parse(msg, len, &idx, &mime) == MAILIMF_NO_ERROR && mime) {
		rc = walk(mime, 0, 0, &x);
		mailmime_free(mime);
	}
	size_t hl = header_len(msg, len);
	if (!rc && x.text.len)
		rc = buf_add(out, x.text.p, x.text.len);
	else if (!rc && hl < len)
		rc = buf_add(out, msg + hl, len - hl < PART_MAX ? len - hl : PART_MAX);
	buf_free(&x.status);
	buf_free(&x.feedback);
	buf_free(&x.returned);
	buf_free(&x.text);
	return rc;
}

void dsn_free(struct dsn_report *r)
{
	free(r->rcpt);
	r->rcpt = NULL;
	r->nrcpt = 0;
}
