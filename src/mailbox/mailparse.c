#include "mailbox/mailparse.h"
#include <ctype.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEPTH_MAX    8
#define PARTS_MAX    200

/* ---- strings ------------------------------------------------------------ */

const char *mailparse_memcasemem(const char *h, size_t hl, const char *n)
{
	size_t nl = strlen(n);
	if (!nl || nl > hl)
		return NULL;
	for (size_t i = 0; i + nl <= hl; i++)
		if (!strncasecmp(h + i, n, nl))
			return h + i;
	return NULL;
}

void mailparse_one_line(char *out, size_t outlen, const char *s, size_t len)
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

/* ---- header blocks ----------------------------------------------------- */

int mailparse_next_field(const char **p, const char *end, char *name, size_t nlen,
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
		if (buf_add(val, v, vl < MAILPARSE_VALUE_MAX ? vl : MAILPARSE_VALUE_MAX) < 0)
			return -1;
		s = next;
		while (s < end && (*s == ' ' || *s == '\t')) {
			eol = memchr(s, '\n', (size_t)(end - s));
			le = eol ? eol : end;
			ll = (size_t)(le - s);
			if (ll && s[ll - 1] == '\r')
				ll--;
			if (val->len < MAILPARSE_VALUE_MAX &&
			    (buf_addc(val, ' ') < 0 ||
			     buf_add(val, s, ll < MAILPARSE_VALUE_MAX - val->len ? ll : MAILPARSE_VALUE_MAX - val->len) < 0))
				return -1;
			s = eol ? eol + 1 : end;
		}
		*p = s;
		return 1;
	}
}

void mailparse_each_field(const char *blk, size_t len, const char *name,
			  void (*fn)(void *arg, const char *v), void *arg)
{
	const char *p = blk, *end = blk + len;
	char fname[80];
	struct buf v = {0};
	int blank;
	while (mailparse_next_field(&p, end, fname, sizeof fname, &v, &blank) > 0)
		if (!strcasecmp(fname, name)) {
			char tmp[MAILPARSE_VALUE_MAX + 1];
			mailparse_one_line(tmp, sizeof tmp, v.p ? v.p : "", v.len);
			fn(arg, tmp);
		}
	buf_free(&v);
}

/* Out of memory, the field reads as absent: these values only name and
 * date what a bounce says, and no caller may act on a partial one. */
static void first_value(void *arg, const char *v)
{
	struct buf *b = arg;
	if (!b->len && buf_adds(b, *v ? v : " ") < 0)
		buf_reset(b);
}

const char *mailparse_field(const char *blk, size_t len, const char *name, struct buf *out)
{
	buf_reset(out);
	mailparse_each_field(blk, len, name, first_value, out);
	return out->len ? buf_cstr(out) : "";
}

void mailparse_field_line(const char *blk, size_t len, const char *name, struct buf *tmp,
			  char *out, size_t outlen)
{
	const char *v = mailparse_field(blk, len, name, tmp);
	mailparse_one_line(out, outlen, v, strlen(v));
}

size_t mailparse_header_len(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] == '\n' && (i + 1 == len || s[i + 1] == '\n' ||
				     (s[i + 1] == '\r' && i + 2 < len && s[i + 2] == '\n')))
			return i + 1;
	return len;
}

void mailparse_msgid(const char *v, char *out, size_t outlen)
{
	const char *lt = strchr(v, '<');
	const char *gt = lt ? strchr(lt, '>') : NULL;
	if (lt && gt && gt - lt > 2 && (size_t)(gt - lt) + 2 < outlen && !memchr(lt, ' ', (size_t)(gt - lt)))
		snprintf(out, outlen, "%.*s", (int)(gt - lt + 1), lt);
}

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

time_t mailparse_date(const char *v)
{
	size_t idx = 0;
	struct mailimf_date_time *dt = NULL;
	if (!*v || mailimf_date_time_parse(v, strlen(v), &idx, &dt) != MAILIMF_NO_ERROR)
		return 0;
	time_t t = date_time(dt);
	mailimf_date_time_free(dt);
	return t;
}

/* ---- the MIME walk ----------------------------------------------------- */

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
 * embedded message), at most MAILPARSE_PART_MAX bytes, appended to out. */
BUF_MUST static int body_of(const struct mailmime *m, struct buf *out)
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
			int rc = buf_add(out, res, rl < MAILPARSE_PART_MAX ? rl : MAILPARSE_PART_MAX);
			mmap_string_unref(res);
			return rc;
		}
	}
	return buf_add(out, s, len < MAILPARSE_PART_MAX ? len : MAILPARSE_PART_MAX);
}

static int walk(const struct mailmime *m, int depth, int inside_returned, struct mailparse_parts *x)
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
				rc = buf_add(&x->returned, b.p, mailparse_header_len(b.p, b.len));
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

void mailparse_header(const char *msg, size_t len, const char *name, char *out, size_t outlen)
{
	struct buf v = {0};
	size_t hl = mailparse_header_len(msg, len);
	const char *raw = mailparse_field(msg, hl, name, &v);
	char *dec = NULL;
	size_t idx = 0;
	if (*raw && mailmime_encoded_phrase_parse("utf-8", raw, strlen(raw), &idx, "utf-8", &dec) ==
		    MAILIMF_NO_ERROR && dec)
		raw = dec;
	mailparse_one_line(out, outlen, raw, strlen(raw));
	free(dec);
	buf_free(&v);
}

int mailparse_parts(const char *msg, size_t len, struct mailparse_parts *x)
{
	memset(x, 0, sizeof *x);
	if (len > MAILPARSE_MAX)
		len = MAILPARSE_MAX;
	size_t idx = 0;
	struct mailmime *mime = NULL;
	int rc = 0;
	if (mailmime_parse(msg, len, &idx, &mime) == MAILIMF_NO_ERROR && mime) {
		rc = walk(mime, 0, 0, x);
		mailmime_free(mime);
	}
	return rc;
}

void mailparse_parts_free(struct mailparse_parts *x)
{
	buf_free(&x->status);
	buf_free(&x->feedback);
	buf_free(&x->returned);
	buf_free(&x->text);
}

int mailparse_body(const char *msg, size_t len, struct buf *out)
{
	size_t hl = mailparse_header_len(msg, len);
	if (hl >= len)
		return 0;
	return buf_add(out, msg + hl, len - hl < MAILPARSE_PART_MAX ? len - hl : MAILPARSE_PART_MAX);
}

int mailparse_text(const char *msg, size_t len, struct buf *out)
{
	if (len > MAILPARSE_MAX)
		len = MAILPARSE_MAX;
	struct mailparse_parts x;
	int rc = mailparse_parts(msg, len, &x);
	if (!rc)
		rc = x.text.len ? buf_add(out, x.text.p, x.text.len) : mailparse_body(msg, len, out);
	mailparse_parts_free(&x);
	return rc;
}
