#include "mailbox/dsn.h"
#include "util/addr.h"
#include "util/buf.h"
#include "mailbox/mailparse.h"
#include <ctype.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A report naming more recipients than this is not one we can act on. */
#define RCPT_MAX     100

/* ---- small text helpers ------------------------------------------------ */

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

/* ---- one message being read -------------------------------------------- */

/* What every strategy may look at, read once: the message, what the MIME
 * walk kept of it, and its top-level headers. */
struct ctx {
	const char *msg;
	size_t len, hl;          /* capped at MAILPARSE_MAX; the header block */
	const char *return_path;
	struct dsn_report *r;
	struct mailparse_parts x;
	struct buf tmp;          /* scratch for header values */
	char subject[300], from[300];
	const char *why;         /* the error, when a step fails */
};

/* One way a report can be written, tried in order by dsn_parse. Returns
 * 1 when the message is of this kind (r is final, even if it names
 * nobody), 0 when it is not (r untouched but for r->unnamed), -1 when
 * memory ran out. */
typedef int strategy(struct ctx *c);

/* ---- RFC 3464 ---------------------------------------------------------- */

struct rblock {
	char final[320], orig[320], action[24], status[16];
	char diag[MAILPARSE_VALUE_MAX + 1];
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
		mailparse_one_line(x->text, sizeof x->text, diag, strlen(diag));
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
		int got = mailparse_next_field(&p, end, name, sizeof name, &v, &blank);
		if (got < 0) {
			rc = -1;
			break;
		}
		if (!got) {
			if (flush_block(r, &b) < 0)
				rc = -1;
			memset(&b, 0, sizeof b);
			if (!blank || rc)
				break;
			continue;
		}
		char val[MAILPARSE_VALUE_MAX + 1];
		mailparse_one_line(val, sizeof val, v.p ? v.p : "", v.len);
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
			*arrival = mailparse_date(val);
		}
	}
	buf_free(&v);
	return rc;
}

/* Labelled or not, the fields are the same report: one result. */
static int as_rfc3464(struct dsn_report *r, time_t arrival)
{
	r->format = DSN_RFC3464;
	snprintf(r->family, sizeof r->family, "rfc3464");
	if (!r->date)
		r->date = arrival;
	return 1;
}

static int try_rfc3464(struct ctx *c)
{
	time_t arrival = 0;
	if (!c->x.status.len)
		return 0;
	if (parse_status(c->r, c->x.status.p, c->x.status.len, &arrival) < 0)
		return -1;
	return as_rfc3464(c->r, arrival);
}

/* A delivery-status body that lost its MIME labels (broken boundaries,
 * text/plain): the fields are still there. Only a block that names a
 * recipient makes it one; otherwise the text strategies get their turn. */
static int try_unlabelled(struct ctx *c)
{
	const struct mailparse_parts *x = &c->x;
	const char *body = c->msg + c->hl;
	size_t bodylen = c->len - c->hl;
	const char *fr = x->text.len ? mailparse_memcasemem(x->text.p, x->text.len, "\nFinal-Recipient:") : NULL;
	if (!fr)
		fr = mailparse_memcasemem(body, bodylen, "\nFinal-Recipient:");
	if (!fr)
		return 0;
	const char *base = x->text.len && fr >= x->text.p && fr < x->text.p + x->text.len ? x->text.p : body;
	size_t blen = base == x->text.p ? x->text.len : bodylen;
	const char *st = fr + 1;
	/* back to the start of the paragraph (Reporting-MTA etc.) */
	const char *para = mailparse_memcasemem(base, (size_t)(st - base), "Reporting-MTA:");
	if (para)
		st = para;
	time_t arrival = 0;
	if (parse_status(c->r, st, blen - (size_t)(st - base), &arrival) < 0)
		return -1;
	return c->r->nrcpt ? as_rfc3464(c->r, arrival) : 0;
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

/* A complaint about each reader the report names; not-spam and
 * auth-failure reports are ARF too, but accuse no one. */
static int try_arf(struct ctx *c)
{
	const struct mailparse_parts *x = &c->x;
	struct dsn_report *r = c->r;
	struct buf *tmp = &c->tmp;
	if (strcmp(x->report_type, "feedback-report") || !x->feedback.len)
		return 0;
	const char *fb = x->feedback.p;
	char type[64], ua[128], text[400];
	mailparse_field_line(fb, x->feedback.len, "Feedback-Type", tmp, type, sizeof type);
	for (char *p = type; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	mailparse_field_line(fb, x->feedback.len, "User-Agent", tmp, ua, sizeof ua);
	r->format = DSN_ARF;
	snprintf(r->family, sizeof r->family, "arf");
	if (!strcmp(type, "not-spam") || !strcmp(type, "auth-failure"))
		return 1;
	snprintf(text, sizeof text, "feedback-type %s%s%s", type[0] ? type : "unknown",
		 ua[0] ? " from " : "", ua);
	struct arf a = {r, text, 0};
	mailparse_each_field(fb, x->feedback.len, "Original-Rcpt-To", arf_rcpt, &a);
	if (!a.rc && !r->nrcpt && x->returned.len) {
		/* Only when the returned message names one reader: a To
		 * with several addresses would blame them all. */
		const char *to = mailparse_field(x->returned.p, x->returned.len, "To", tmp);
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
	return a.rc < 0 ? -1 : 1;
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
		if (mailparse_memcasemem(s, len, marks[i]))
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
	mailparse_one_line(x->text, sizeof x->text, cut, bl);
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
		const char *m = mailparse_memcasemem(s, len, returned_marks[i]);
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
					mailparse_one_line(x->text, sizeof x->text, s + bs, be - bs);
				}
			} else if (text_rcpt(t, a, s + bs, be - bs) < 0)
				return -1;
			pos = q;
			continue;
		}
		/* Gmail: "Your message wasn't delivered to joy@... because". */
		const char *g = mailparse_memcasemem(s + pos, le - pos, "delivered to ");
		if (g && hit && !delayed_only && !skip_addr(t, a) &&
		    hit == g + strlen("delivered to ") && mailparse_memcasemem(s + pos, le - pos, "because")) {
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
		const char *at = mailparse_memcasemem(f->t->text, f->t->len, a);
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

/* A Message-ID line inside a text bounce's copy of the headers. */
static void msgid_in_text(const char *s, size_t len, char *out, size_t outlen)
{
	for (size_t i = 0; i + 11 < len; i++) {
		if ((i == 0 || s[i - 1] == '\n') && !strncasecmp(s + i, "Message-ID:", 11)) {
			char v[200];
			const char *e = memchr(s + i, '\n', len - i);
			size_t vl = e ? (size_t)(e - s - i - 11) : len - i - 11;
			mailparse_one_line(v, sizeof v, s + i + 11, vl);
			mailparse_msgid(v, out, outlen);
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
		if (mailparse_memcasemem(subject, strlen(subject), subj[i]))
			return 1;
	return mailparse_memcasemem(from, strlen(from), "mailer-daemon") || mailparse_memcasemem(from, strlen(from), "postmaster");
}

/* Which MTA wrote a text bounce, by its wording; "" if none we know. */
static const char *text_family(const char *s, size_t len, const char *xfailed)
{
	for (size_t i = 0; i < sizeof family_marks / sizeof *family_marks; i++)
		if (mailparse_memcasemem(s, len, family_marks[i][0]))
			return family_marks[i][1];
	return xfailed[0] ? "exim" : "";
}

/* A warning that delivery is still being tried: DSN_DELAYED for each
 * address line, else for the VERP reader. */
static int text_delayed(struct text_ctx *t, const char *fam)
{
	struct dsn_report *r = t->r;
	if (text_bounce(t, 1) < 0)
		return -1;
	if (!r->nrcpt && r->verp_addr[0]) {
		struct dsn_rcpt *x = add_rcpt(r);
		if (!x)
			return -1;
		snprintf(x->addr, sizeof x->addr, "%s", r->verp_addr);
		x->kind = DSN_DELAYED;
		snprintf(x->text, sizeof x->text, "%s", t->subject);
	}
	r->format = r->nrcpt ? DSN_TEXT : DSN_NOT_BOUNCE;
	snprintf(r->family, sizeof r->family, "%s", *fam ? fam : "verp");
	return 1;
}

/* A failure: X-Failed-Recipients first (it names them for sure), then
 * the address lines of the text, then the VERP reader. */
static int text_failed(struct text_ctx *t, const char *fam, const char *xfailed)
{
	struct dsn_report *r = t->r;
	if (xfailed[0]) {
		struct failed_ctx f = {t, 0};
		failed_rcpt(&f, xfailed);
		if (f.rc < 0)
			return -1;
	}
	if (!r->nrcpt && text_bounce(t, 0) < 0)
		return -1;
	if (!r->nrcpt && r->verp_addr[0]) {
		/* Nothing names the reader, but the bounce came back to
		 * their VERP address: that is who bounced. */
		t->skip[0] = t->skip[1] = NULL;
		char blk[1] = "";
		if (text_rcpt(t, r->verp_addr, blk, 0) < 0)
			return -1;
		if (!*fam)
			fam = "verp";
	}
	if (r->nrcpt) {
		r->format = DSN_TEXT;
		snprintf(r->family, sizeof r->family, "%s", *fam ? fam : "text");
	}
	return 1;
}

/* The prose of an MTA (Postfix, Exim, Sendmail, qmail, Exchange, Gmail)
 * or anything that calls itself a bounce. Last: it reads the most into
 * the least. */
static int try_text(struct ctx *c)
{
	const char *s = c->x.text.p ? c->x.text.p : "";
	size_t len = c->x.text.len;
	char xfailed[MAILPARSE_VALUE_MAX + 1];
	mailparse_field_line(c->msg, c->hl, "X-Failed-Recipients", &c->tmp, xfailed, sizeof xfailed);
	const char *fam = text_family(s, len, xfailed);
	/* Vacation notices and other replies come to the return path too;
	 * they are no MTA's wording and do not call themselves bounces. */
	if (!*fam && !looks_like_bounce(c->subject, c->from))
		return 1;
	char from_addr[320] = "", to_addr[320] = "";
	find_addr(c->from, strlen(c->from), 0, from_addr, sizeof from_addr, NULL);
	const char *to = mailparse_field(c->msg, c->hl, "To", &c->tmp);
	find_addr(to, strlen(to), 0, to_addr, sizeof to_addr, NULL);
	struct text_ctx t = {c->r, s, len, {from_addr, to_addr, NULL}, c->return_path, c->subject};
	int delayed = any_mark(s, len, delay_marks, sizeof delay_marks / sizeof *delay_marks) ||
		      any_mark(c->subject, strlen(c->subject), delay_marks,
			       sizeof delay_marks / sizeof *delay_marks);
	int failed = any_mark(s, len, fail_marks, sizeof fail_marks / sizeof *fail_marks);
	return delayed && !failed ? text_delayed(&t, fam) : text_failed(&t, fam, xfailed);
}

/* ---- dsn_parse ---------------------------------------------------------- */

/* Most specific first: a labelled report is believed over the prose
 * around it. */
static strategy *const strategies[] = {try_arf, try_rfc3464, try_unlabelled, try_text};

/* What matters whatever the body is: the date, the name of the report,
 * the headers the text strategies judge by. */
static int read_headers(struct ctx *c)
{
	struct dsn_report *r = c->r;
	r->date = mailparse_date(mailparse_field(c->msg, c->hl, "Date", &c->tmp));
	mailparse_msgid(mailparse_field(c->msg, c->hl, "Message-ID", &c->tmp), r->report_id,
			sizeof r->report_id);
	if (!r->report_id[0]) {
		char hex[65];
		if (buf_sha256_hex(c->msg, c->len, hex) < 0) {
			c->why = "cannot hash a message";
			return -1;
		}
		snprintf(r->report_id, sizeof r->report_id, "sha256:%s", hex);
	}
	mailparse_field_line(c->msg, c->hl, "Subject", &c->tmp, c->subject, sizeof c->subject);
	mailparse_field_line(c->msg, c->hl, "From", &c->tmp, c->from, sizeof c->from);
	return 0;
}

/* The parts, and the Message-ID of the returned message in them. */
static int read_parts(struct ctx *c)
{
	struct mailparse_parts *x = &c->x;
	struct dsn_report *r = c->r;
	if (mailparse_parts(c->msg, c->len, x) < 0)
		return -1;
	/* Not MIME, or MIME we cannot use: the body is the text. */
	if (!x->text.len && !x->status.len && !x->feedback.len &&
	    mailparse_body(c->msg, c->len, &x->text) < 0)
		return -1;
	if (x->returned.len)
		mailparse_msgid(mailparse_field(x->returned.p, x->returned.len, "Message-ID", &c->tmp),
				r->orig_msgid, sizeof r->orig_msgid);
	if (!r->orig_msgid[0] && x->text.len)
		msgid_in_text(x->text.p, x->text.len, r->orig_msgid, sizeof r->orig_msgid);
	return 0;
}

/* A text bounce that quotes the headers inline: the VERP address is
 * somewhere after the return path's fixed prefix. */
static void verp_in_text(struct ctx *c, struct verp_ctx *v)
{
	const char *pre, *suf;
	size_t prelen;
	verp_split(c->return_path, &pre, &prelen, &suf);
	char prefix[128], line[MAILPARSE_VALUE_MAX + 1];
	snprintf(prefix, sizeof prefix, "%.*s", (int)(prelen < 127 ? prelen : 127), pre);
	const char *h = prelen ? mailparse_memcasemem(c->x.text.p, c->x.text.len, prefix) : NULL;
	if (h) {
		size_t start = (size_t)(h - c->x.text.p);
		size_t n = c->x.text.len - start < 400 ? c->x.text.len - start : 400;
		mailparse_one_line(line, sizeof line, h, n);
		verp_try(v, line);
	}
}

/* VERP: the envelope recipient of the bounce, as the delivering MTA
 * recorded it, then what the report and the returned copy say. */
static void read_verp(struct ctx *c)
{
	static const char *const outer[] = {"Delivered-To", "X-Original-To", "Envelope-To",
		"X-Envelope-To", "To", "Return-Path", "Original-Recipient"};
	const struct mailparse_parts *x = &c->x;
	char *out = c->r->verp_addr;
	struct verp_ctx v = {c->return_path, out};
	if (verp_split(c->return_path, &(const char *){0}, &(size_t){0}, &(const char *){0}) < 0)
		return;
	for (size_t i = 0; i < sizeof outer / sizeof *outer && !out[0]; i++)
		mailparse_each_field(c->msg, c->hl, outer[i], verp_try, &v);
	if (!out[0] && x->feedback.len)
		mailparse_each_field(x->feedback.p, x->feedback.len, "Original-Mail-From", verp_try, &v);
	if (!out[0] && x->returned.len)
		mailparse_each_field(x->returned.p, x->returned.len, "Return-Path", verp_try, &v);
	if (!out[0] && x->text.len)
		verp_in_text(c, &v);
}

int dsn_parse(const char *msg, size_t len, const char *return_path,
	      struct dsn_report *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	if (len > MAILPARSE_MAX)
		len = MAILPARSE_MAX;
	struct ctx c = {.msg = msg, .len = len, .hl = mailparse_header_len(msg, len),
			.return_path = return_path, .r = r, .why = "out of memory"};
	int rc = read_headers(&c);
	if (!rc)
		rc = read_parts(&c);
	if (!rc)
		read_verp(&c);
	for (size_t i = 0; !rc && i < sizeof strategies / sizeof *strategies; i++)
		rc = strategies[i](&c);
	buf_free(&c.tmp);
	mailparse_parts_free(&c.x);
	if (rc < 0) {
		dsn_free(r);
		return set_err(err, errlen, -1, "%s", c.why);
	}
	return 0;
}

void dsn_free(struct dsn_report *r)
{
	free(r->rcpt);
	r->rcpt = NULL;
	r->nrcpt = 0;
}
