#include "message.h"
#include "subscribers.h"
#include <ctype.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const msg_builtin_fields[MF_NBUILTIN] = {
	"email", "name", "subject", "preheader", "date", "unsubscribe_url",
	"token", "list_name", "from_name", "from_email", "verp",
};

int msg_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *e = p + len;
	while (p < e) {
		unsigned c = *p++;
		int n;
		unsigned min;
		if (c < 0x80)
			continue;
		if ((c & 0xE0) == 0xC0) { n = 1; min = 0x80; c &= 0x1F; }
		else if ((c & 0xF0) == 0xE0) { n = 2; min = 0x800; c &= 0x0F; }
		else if ((c & 0xF8) == 0xF0) { n = 3; min = 0x10000; c &= 0x07; }
		else
			return 0;
		if (e - p < n)
			return 0;
		for (int i = 0; i < n; i++) {
			if ((p[i] & 0xC0) != 0x80)
				return 0;
			c = (c << 6) | (p[i] & 0x3F);
		}
		/* Overlong forms, surrogates and values past U+10FFFF are
		 * how filters get fooled: refuse them. */
		if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
			return 0;
		p += n;
	}
	return 1;
}

int msg_header_safe(const char *s)
{
	return !strpbrk(s, "\r\n") && msg_utf8_valid(s, strlen(s));
}

static int is_ascii_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7E)
			return 0;
	return 1;
}

static const char hex[] = "0123456789ABCDEF";

/* Q-encodes [p, end) as encoded-words of at most 75 characters. */
static int encode_run(struct buf *out, const unsigned char *p,
		      const unsigned char *end)
{
	const char *open = "=?UTF-8?Q?";
	const size_t maxw = 75 - 2; /* room left for the closing "?=" */
	size_t wlen = 0;
	while (p < end) {
		/* One code point at a time, so a word never splits one. */
		size_t n = 1;
		if (*p >= 0xC0)
			while (n < 4 && (p[n] & 0xC0) == 0x80)
				n++;
		char enc[16];
		size_t el = 0;
		for (size_t i = 0; i < n; i++) {
			unsigned char c = p[i];
			if (c == ' ')
				enc[el++] = '_';
			else if (isalnum(c) || strchr("!*+-/", c))
				enc[el++] = (char)c;
			else {
				enc[el++] = '=';
				enc[el++] = hex[c >> 4];
				enc[el++] = hex[c & 15];
			}
		}
		if (wlen && wlen + el > maxw) {
			if (buf_adds(out, "?= ") < 0)
				return -1;
			wlen = 0;
		}
		if (!wlen) {
			if (buf_adds(out, open) < 0)
				return -1;
			wlen = strlen(open);
		}
		if (buf_add(out, enc, el) < 0)
			return -1;
		wlen += el;
		p += n;
	}
	return wlen ? buf_adds(out, "?=") : 0;
}

/* 1 if [p, e) can go into a subject as it is. */
static int is_ascii_word(const unsigned char *p, const unsigned char *e)
{
	/* A plain word that looks like an encoded-word would be decoded by
	 * the reader: it is encoded, and joins the run of its neighbours so
	 * the blanks between them survive. */
	if (e - p >= 2 && p[0] == '=' && p[1] == '?')
		return 0;
	for (; p < e; p++)
		if (*p < 0x21 || *p > 0x7E)
			return 0;
	return 1;
}

int msg_encode_words(struct buf *out, const char *s, int phrase)
{
	/* Plain ASCII goes as it is, unless it holds something a reader
	 * would decode as an encoded-word. */
	if (is_ascii_printable(s) && !strstr(s, "=?"))
		return buf_adds(out, s);
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + strlen(s);
	/* A display name is encoded whole: a plain part could need quotes,
	 * and quoted text is never decoded (RFC 2047 section 5). */
	if (phrase)
		return encode_run(out, p, end);
	/* In a subject only the words that need it are encoded; a run of
	 * such words becomes one run, so the spaces between them survive
	 * (white space between encoded-words is dropped by readers). */
	while (p < end) {
		const unsigned char *w = p;
		while (w < end && *w != ' ')
			w++;
		if (is_ascii_word(p, w)) {
			if (buf_add(out, p, (size_t)(w - p)) < 0)
				return -1;
		} else {
			const unsigned char *r = w;
			for (;;) {
				const unsigned char *nx = r;
				while (nx < end && *nx == ' ')
					nx++;
				const unsigned char *ne = nx;
				while (ne < end && *ne != ' ')
					ne++;
				if (nx == end || nx == ne || is_ascii_word(nx, ne))
					break;
				r = ne;
			}
			if (encode_run(out, p, r) < 0)
				return -1;
			w = r;
		}
		p = w;
		while (p < end && *p == ' ') {
			if (buf_addc(out, ' ') < 0)
				return -1;
			p++;
		}
	}
	return 0;
}

int msg_qp_encode(struct buf *out, const char *s, size_t len)
{
	/* Worst case: every byte "=XX", plus a soft break per 25 bytes and
	 * CRLF per line; reserved once, then written through a pointer (this
	 * runs over every byte of every message). */
	if (buf_reserve(out, len * 3 + (len / 25 + 2) * 3) < 0)
		return -1;
	char *o = out->p + out->len;
	size_t col = 0;
	const unsigned char *p = (const unsigned char *)s, *e = p + len;
	while (p < e) {
		unsigned char c = *p;
		if (c == '\n') {
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
			p++;
			continue;
		}
		int at_eol = p + 1 == e || p[1] == '\n';
		/* Literal: printable ASCII but '=', and blanks not ending a
		 * line (trailing white space may be stripped in transit).
		 * "From " opening a line is encoded for mbox readers. */
		int lit = ((c >= 33 && c <= 126 && c != '=') ||
			   ((c == ' ' || c == '\t') && !at_eol));
		int from = c == 'F' && e - p >= 5 && !memcmp(p, "From ", 5);
		if (col == 0 && from)
			lit = 0;
		size_t need = lit ? 1 : 3;
		/* Soft break so no line passes 76 characters, counting "=";
		 * the last character of a line may use the 76th column. */
		size_t limit = at_eol ? 76 : 75;
		if (col + need > limit) {
			*o++ = '=';
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
			/* The break may have put "From " at a line start. */
			if (from && lit) {
				lit = 0;
				need = 3;
			}
		}
		if (lit) {
			*o++ = (char)c;
		} else {
			*o++ = '=';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
		col += need;
		p++;
	}
	out->len = (size_t)(o - out->p);
	out->p[out->len] = '\0';
	return 0;
}

int msg_token(const char *secret, const char *email, char out[65])
{
	unsigned char mac[32];
	char *lower = str_lower(email);
	if (!lower)
		return -1;
	int rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret),
				  lower, strlen(lower), mac);
	free(lower);
	if (rc < 0)
		return -1;
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", mac[i]);
	return 0;
}

/* Reads templates/<name>.<ext> and swaps {{body}} for the rendered post
 * before compiling, so the body is laid out once per run, not per reader. */
static int layout(struct msg_ctx *m, const char *ext, const char *body,
		  struct tmpl **out, char *err, size_t errlen)
{
	char *path, *src;
	size_t len;
	const struct config *c = m->cfg;
	if (asprintf(&path, "%s/%s.%s", c->templates, c->template_name, ext) < 0)
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	if (read_file(path, &src, &len) < 0) {
		set_err(err, errlen, MSG_NOFILE, "%s: %s (template = \"%s\" in %s)",
			path, strerror(errno), c->template_name, c->path);
		free(path);
		return MSG_NOFILE;
	}
	struct buf b = {0};
	const char *p = src, *hit;
	int found = 0;
	while ((hit = strstr(p, "{{body}}"))) {
		buf_add(&b, p, (size_t)(hit - p));
		buf_adds(&b, body);
		p = hit + 8;
		found = 1;
	}
	buf_adds(&b, p);
	struct tmpl_names tn = {(const char *const *)m->names, m->nnames};
	int rc = MSG_OK;
	if (!found)
		rc = set_err(err, errlen, MSG_FAIL, "%s: no {{body}} in the template", path);
	else if (!b.p)
		rc = set_err(err, errlen, MSG_FAIL, "out of memory");
	else if (tmpl_compile(out, b.p, b.len, &tn, path, 1, err, errlen) < 0) {
		/* Line numbers past the body would be off: check the
		 * template alone, where {{body}} is a known name, for a
		 * precise line. If it compiles, the fault is in the post. */
		struct tmpl *t = NULL;
		const char **with_body = malloc((m->nnames + 1) * sizeof *with_body);
		if (with_body) {
			memcpy(with_body, m->names, m->nnames * sizeof *with_body);
			with_body[m->nnames] = "body";
			struct tmpl_names tb = {with_body, m->nnames + 1};
			if (tmpl_compile(&t, src, len, &tb, path, 1, err, errlen) == 0)
				set_err(err, errlen, MSG_FAIL,
					"%s: a merge field in the post body is unknown or malformed",
					m->post->path);
			tmpl_free(t);
			free(with_body);
		}
		rc = MSG_FAIL;
	}
	buf_free(&b);
	free(src);
	free(path);
	return rc;
}

static int compile_str(struct msg_ctx *m, const char *s, const char *what,
		       struct tmpl **out, char *err, size_t errlen)
{
	struct tmpl_names tn = {(const char *const *)m->names, m->nnames};
	return tmpl_compile(out, s, strlen(s), &tn, what, 1, err, errlen) < 0 ? MSG_FAIL : MSG_OK;
}

static void long_date(const struct post *p, char *out, size_t len)
{
	static const char *const mon[] = {"January", "February", "March", "April",
		"May", "June", "July", "August", "September", "October", "November", "December"};
	struct tm tm;
	if (p->when && localtime_r(&p->when, &tm))
		snprintf(out, len, "%d %s %d", tm.tm_mday, mon[tm.tm_mon], tm.tm_year + 1900);
	else
		snprintf(out, len, "%s", p->date);
}

/* Text parts go out with CRLF: bare CR or CRLF from a list field or a
 * template saved on another system must not reach the wire unpaired. The
 * parts are LF-only here (the encoder makes CRLF), compacted in place. */
static void normalize_eol(struct buf *b)
{
	char *r = b->p ? memchr(b->p, '\r', b->len) : NULL;
	if (!r)
		return;
	char *w = r, *end = b->p + b->len;
	for (; r < end; r++) {
		if (*r == '\r') {
			if (r + 1 < end && r[1] == '\n')
				r++;
			*w++ = '\n';
		} else
			*w++ = *r;
	}
	b->len = (size_t)(w - b->p);
	b->p[b->len] = '\0';
}

/* A layout prepared for rendering straight to quoted-printable. QP lines
 * are independent of each other, so the complete lines inside a literal
 * piece (after its first LF, through its last LF) are encoded once per
 * run; per reader only the lines that hold merged values are encoded.
 * The result is byte for byte what encoding the rendered part would give
 * (the unit tests compare the two). */
struct qp_lit {
	char *norm;     /* the literal with CRLF and CR made LF */
	size_t len;
	size_t head;    /* bytes before the first LF (all, if none) */
	size_t tail;    /* offset of the text after the last LF */
	int has_nl;
	/* As written, before CRs became LFs: a CR that ends the previous
	 * value pairs only with a real LF, and a CR ending this literal
	 * pairs with an LF that starts the next value. */
	int starts_lf, ends_cr;
	struct buf mid; /* the complete lines in between, encoded */
};

struct qp_layout {
	const struct tmpl *t;
	struct qp_lit *lits;
	size_t n;
};

static void qp_layout_free(struct qp_layout *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n; i++) {
		free(q->lits[i].norm);
		buf_free(&q->lits[i].mid);
	}
	free(q->lits);
	free(q);
}

static struct qp_layout *qp_layout_new(const struct tmpl *t)
{
	struct qp_layout *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->t = t;
	q->n = tmpl_npieces(t);
	q->lits = calloc(q->n ? q->n : 1, sizeof *q->lits);
	if (!q->lits)
		goto fail;
	for (size_t i = 0; i < q->n; i++) {
		struct tmpl_piece p;
		tmpl_get_piece(t, i, &p);
		if (p.field >= 0)
			continue;
		struct qp_lit *l = &q->lits[i];
		l->starts_lf = p.len && p.text[0] == '\n';
		l->ends_cr = p.len && p.text[p.len - 1] == '\r';
		struct buf b = {0};
		if (buf_add(&b, p.text, p.len) < 0)
			goto fail;
		normalize_eol(&b);
		l->len = b.len;
		l->norm = buf_detach(&b);
		if (!l->norm)
			goto fail;
		const char *first = memchr(l->norm, '\n', l->len);
		const char *last = memrchr(l->norm, '\n', l->len);
		l->has_nl = first != NULL;
		l->head = first ? (size_t)(first - l->norm) : l->len;
		l->tail = last ? (size_t)(last - l->norm) + 1 : l->len;
		if (first && first < last &&
		    msg_qp_encode(&l->mid, first + 1, (size_t)(last - first)) < 0)
			goto fail;
	}
	return q;
fail:
	qp_layout_free(q);
	return NULL;
}

struct qp_state {
	struct buf *out, *line;
	int pending_cr; /* the last byte fed was a CR: a following LF pairs with it */
};

static int qp_flush(struct qp_state *st, int newline)
{
	if (msg_qp_encode(st->out, st->line->p ? st->line->p : "", st->line->len) < 0 ||
	    (newline && buf_add(st->out, "\r\n", 2) < 0))
		return -1;
	buf_reset(st->line);
	return 0;
}

/* Raw text onto the current line; every CR, LF or CRLF ends it. */
static int qp_feed(struct qp_state *st, const char *s, size_t len)
{
	if (len && st->pending_cr && *s == '\n') {
		s++;
		len--;
	}
	st->pending_cr = 0;
	while (len) {
		size_t k = 0;
		while (k < len && s[k] != '\n' && s[k] != '\r')
			k++;
		if (buf_add(st->line, s, k) < 0)
			return -1;
		if (k == len)
			return 0;
		if (qp_flush(st, 1) < 0)
			return -1;
		size_t skip = 1;
		if (s[k] == '\r') {
			if (k + 1 < len && s[k + 1] == '\n')
				skip = 2;
			else if (k + 1 == len)
				st->pending_cr = 1;
		}
		s += k + skip;
		len -= k + skip;
	}
	return 0;
}

static int qp_render(const struct qp_layout *q, const char *const *vals,
		     enum tmpl_esc esc, struct buf *line, struct buf *val,
		     struct buf *out)
{
	struct qp_state st = {out, line, 0};
	buf_reset(line);
	for (size_t i = 0; i < q->n; i++) {
		struct tmpl_piece p;
		tmpl_get_piece(q->t, i, &p);
		if (p.field >= 0) {
			const char *v = vals[p.field];
			const char *src = v && *v ? v : p.has_fallback ? p.text : NULL;
			size_t sl = v && *v ? strlen(v) : p.len;
			if (!src)
				continue;
			buf_reset(val);
			if (tmpl_escape(val, src, sl, esc) < 0 ||
			    qp_feed(&st, val->p ? val->p : "", val->len) < 0)
				return -1;
			continue;
		}
		const struct qp_lit *l = &q->lits[i];
		if (!l->has_nl) {
			if (qp_feed(&st, l->norm, l->len) < 0)
				return -1;
			continue;
		}
		/* A CR that ended the previous value already ended the line
		 * this literal's first LF would end. */
		int paired = st.pending_cr && l->starts_lf;
		if (qp_feed(&st, l->norm, l->head) < 0 || (!paired && qp_flush(&st, 1) < 0) ||
		    buf_add(out, l->mid.p ? l->mid.p : "", l->mid.len) < 0)
			return -1;
		st.pending_cr = 0;
		if (qp_feed(&st, l->norm + l->tail, l->len - l->tail) < 0)
			return -1;
		st.pending_cr = l->ends_cr;
	}
	return qp_flush(&st, 0);
}

int msg_init(struct msg_ctx *m, const struct config *cfg,
	     const struct post *post, const char *const *cols, size_t ncols,
	     const char *secret, int test_mode, char *err, size_t errlen)
{
	memset(m, 0, sizeof *m);
	m->cfg = cfg;
	m->post = post;
	m->secret = secret;
	m->test_mode = test_mode;
	m->ncols = ncols;
	m->nnames = MF_NBUILTIN + ncols;
	m->names = calloc(m->nnames, sizeof *m->names);
	m->vals = calloc(m->nnames, sizeof *m->vals);
	if (!m->names || !m->vals)
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	for (size_t i = 0; i < MF_NBUILTIN; i++)
		m->names[i] = (char *)msg_builtin_fields[i];
	for (size_t i = 0; i < ncols; i++)
		m->names[MF_NBUILTIN + i] = (char *)cols[i];
	long_date(post, m->date_long, sizeof m->date_long);
	if (cfg->reply_to && config_parse_mailbox(cfg->reply_to, &m->reply_name, &m->reply_addr) < 0)
		return set_err(err, errlen, MSG_FAIL, "reply_to: \"%s\" is not an address", cfg->reply_to);

	unsigned char rnd[8];
	if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0)
		return set_err(err, errlen, MSG_FAIL, "no random bytes for Message-IDs");
	size_t o = (size_t)snprintf(m->id_prefix, sizeof m->id_prefix, "%lx.", (unsigned long)time(NULL));
	for (size_t i = 0; i < sizeof rnd; i++)
		o += (size_t)snprintf(m->id_prefix + o, sizeof m->id_prefix - o, "%02x", rnd[i]);

	char what[512];
	snprintf(what, sizeof what, "%s: subject", post->path);
	int rc;
	if ((rc = compile_str(m, post->subject, what, &m->subject, err, errlen)) ||
	    (rc = layout(m, "html", post->html, &m->html, err, errlen)) ||
	    (rc = layout(m, "txt", post->text, &m->text, err, errlen)))
		return rc;
	if (!(m->qp_text_l = qp_layout_new(m->text)) || !(m->qp_html_l = qp_layout_new(m->html)))
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	if (cfg->unsub.url &&
	    compile_str(m, cfg->unsub.url, "unsubscribe.url", &m->unsub, err, errlen))
		return MSG_FAIL;
	if (cfg->bounce.return_path &&
	    compile_str(m, cfg->bounce.return_path, "bounce.return_path", &m->return_path, err, errlen))
		return MSG_FAIL;
	if (m->unsub && tmpl_uses(m->unsub, MF_TOKEN) && !secret)
		return set_err(err, errlen, MSG_FAIL, "unsubscribe.url uses {{token}} but no secret is set");
	/* {{subject}} inside the subject itself would have no value yet. */
	if (tmpl_uses(m->subject, MF_SUBJECT))
		return set_err(err, errlen, MSG_FAIL, "%s: the subject cannot contain {{subject}}", post->path);
	if (cfg->dkim.domain) {
		rc = dkimsig_open(&m->dkim, cfg->dkim.domain, cfg->dkim.selector,
				  cfg->dkim.key_file, err, errlen);
		if (rc < 0)
			return rc == DKIMSIG_NOFILE ? MSG_NOFILE : MSG_FAIL;
	}
	return MSG_OK;
}

static struct mailimf_mailbox_list *mailbox_list(const char *name, const char *addr)
{
	struct mailimf_mailbox_list *l = mailimf_mailbox_list_new_empty();
	char *dn = NULL, *a = strdup(addr);
	if (name && *name) {
		struct buf b = {0};
		if (msg_encode_words(&b, name, 1) == 0)
			dn = buf_detach(&b);
		buf_free(&b);
	}
	struct mailimf_mailbox *mb = a ? mailimf_mailbox_new(dn, a) : NULL;
	if (!l || !mb || mailimf_mailbox_list_add(l, mb) != MAILIMF_NO_ERROR) {
		if (mb)
			mailimf_mailbox_free(mb);
		else {
			free(dn);
			free(a);
		}
		if (l)
			mailimf_mailbox_list_free(l);
		return NULL;
	}
	return l;
}

static struct mailimf_address_list *address_list(const char *name, const char *addr)
{
	struct mailimf_mailbox_list *ml = mailbox_list(name, addr);
	if (!ml)
		return NULL;
	struct mailimf_address_list *al = mailimf_address_list_new_empty();
	struct mailimf_mailbox *mb = clist_content(clist_begin(ml->mb_list));
	clist_delete(ml->mb_list, clist_begin(ml->mb_list));
	mailimf_mailbox_list_free(ml);
	struct mailimf_address *ad = mailimf_address_new(MAILIMF_ADDRESS_MAILBOX, mb, NULL);
	if (!al || !ad || clist_append(al->ad_list, ad) < 0) {
		if (ad)
			mailimf_address_free(ad);
		else
			mailimf_mailbox_free(mb);
		if (al)
			mailimf_address_list_free(al);
		return NULL;
	}
	return al;
}

static int add_field(struct mailimf_fields *f, const char *name, const char *value)
{
	char *n = strdup(name), *v = strdup(value);
	struct mailimf_field *fld = (n && v) ? mailimf_field_new_custom(n, v) : NULL;
	if (!fld) {
		free(n);
		free(v);
		return -1;
	}
	if (mailimf_fields_add(f, fld) != MAILIMF_NO_ERROR) {
		mailimf_field_free(fld);
		return -1;
	}
	return 0;
}

/* The parts' bodies are not handed to libetpan: it writes body bytes one
 * at a time, which cost more than the rest of the message. It gets a
 * marker instead, and msg_build splices the encoded body in its place. */
static const char text_marker[] = "\x01herald:text/plain\x01";
static const char html_marker[] = "\x01herald:text/html\x01";

/* marker must outlive the part. */
static struct mailmime *text_part(const char *type, const char *marker)
{
	struct mailmime_fields *mf = mailmime_fields_new_encoding(MAILMIME_MECHANISM_QUOTED_PRINTABLE);
	struct mailmime_content *ct = mailmime_content_new_with_str(type);
	char *pn = strdup("charset"), *pv = strdup("utf-8");
	struct mailmime_parameter *prm = (pn && pv) ? mailmime_parameter_new(pn, pv) : NULL;
	if (!mf || !ct || !prm || clist_append(ct->ct_parameters, prm) < 0) {
		if (prm)
			mailmime_parameter_free(prm);
		else {
			free(pn);
			free(pv);
		}
		if (mf)
			mailmime_fields_free(mf);
		if (ct)
			mailmime_content_free(ct);
		return NULL;
	}
	struct mailmime *part = mailmime_new_empty(ct, mf);
	if (!part) {
		mailmime_fields_free(mf);
		mailmime_content_free(ct);
		return NULL;
	}
	struct mailmime_data *d = mailmime_data_new(MAILMIME_DATA_TEXT,
		MAILMIME_MECHANISM_QUOTED_PRINTABLE, 1, marker, strlen(marker), NULL);
	if (!d) {
		mailmime_free(part);
		return NULL;
	}
	part->mm_data.mm_single = d;
	return part;
}

/* The boundary holds "=_", which quoted-printable output can never
 * contain, so it cannot collide with the body; it is derived from the
 * Message-ID so a dry run and a real send differ only where they must. */
static struct mailmime *alternative(const char *msgid_local)
{
	struct mailmime_content *ct = mailmime_content_new_with_str("multipart/alternative");
	struct mailmime_fields *mf = mailmime_fields_new_empty();
	struct mailmime *mm = (ct && mf) ? mailmime_new_empty(ct, mf) : NULL;
	if (!mm) {
		if (ct)
			mailmime_content_free(ct);
		if (mf)
			mailmime_fields_free(mf);
		return NULL;
	}
	/* libetpan made up a boundary parameter; put ours in its place. */
	for (clistiter *it = clist_begin(ct->ct_parameters); it; it = clist_next(it)) {
		struct mailmime_parameter *prm = clist_content(it);
		if (strcasecmp(prm->pa_name, "boundary"))
			continue;
		char *bv;
		if (asprintf(&bv, "=_%s", msgid_local) < 0) {
			mailmime_free(mm);
			return NULL;
		}
		free(prm->pa_value);
		prm->pa_value = bv;
		break;
	}
	return mm;
}

static int set_values(struct msg_ctx *m, const char *const *fields,
		      const char *email, const char *name, char *token,
		      char *verp, size_t verplen, char *err, size_t errlen)
{
	const struct config *c = m->cfg;
	const char **v = m->vals;
	v[MF_EMAIL] = email;
	v[MF_NAME] = name;
	v[MF_SUBJECT] = NULL;
	v[MF_PREHEADER] = m->post->preheader;
	v[MF_DATE] = m->date_long;
	v[MF_LIST_NAME] = c->list_name;
	v[MF_FROM_NAME] = c->from_name;
	v[MF_FROM_EMAIL] = c->from_addr;
	for (size_t i = 0; i < m->ncols; i++)
		v[MF_NBUILTIN + i] = fields ? fields[i] : NULL;
	snprintf(verp, verplen, "%s", email);
	char *at = strrchr(verp, '@');
	if (at)
		*at = '=';
	v[MF_VERP] = verp;
	token[0] = '\0';
	if (m->secret && msg_token(m->secret, email, token) < 0)
		return set_err(err, errlen, MSG_FAIL, "HMAC failed");
	v[MF_TOKEN] = token;
	/* Every value must be UTF-8; a NUL can only come from a list that
	 * the reader already refused. */
	for (size_t i = 0; i < m->nnames; i++)
		if (v[i] && !msg_utf8_valid(v[i], strlen(v[i])))
			return set_err(err, errlen, MSG_BADROW, "field \"%s\" is not valid UTF-8", m->names[i]);
	return MSG_OK;
}

/* libetpan folds a long header right after its colon ("Name: CRLF SP
 * value"); legal, but some parsers then keep a leading blank in the value
 * (a URL in List-Unsubscribe no longer parses). Join those lines: every
 * token is far below the 998-octet limit. */
static int add_unfolded_after_colon(struct buf *out, const char *s, size_t len)
{
	const char *end = memmem(s, len, "\r\n\r\n", 4);
	size_t hlen = end ? (size_t)(end - s) : len;
	size_t i = 0, run = 0;
	while (i + 4 <= hlen) {
		if (!memcmp(s + i, ": \r\n ", 5)) {
			if (buf_add(out, s + run, i + 2 - run) < 0)
				return -1;
			i += 5;
			run = i;
			continue;
		}
		i++;
	}
	return buf_add(out, s + run, len - run);
}

/* Copies the skeleton into out with the encoded bodies where the markers
 * stand (text/plain's comes first: the parts are in that order). */
static int splice_bodies(struct buf *out, const struct buf *skel,
			 const struct buf *text, const struct buf *html)
{
	const char *t = memmem(skel->p, skel->len, text_marker, sizeof text_marker - 1);
	const char *h = t ? memmem(t, skel->len - (size_t)(t - skel->p), html_marker,
				   sizeof html_marker - 1) : NULL;
	if (!t || !h)
		return -1;
	const char *end = skel->p + skel->len;
	const char *after_t = t + sizeof text_marker - 1, *after_h = h + sizeof html_marker - 1;
	if (buf_reserve(out, skel->len + text->len + html->len) < 0 ||
	    buf_add(out, skel->p, (size_t)(t - skel->p)) < 0 ||
	    buf_add(out, text->p ? text->p : "", text->len) < 0 ||
	    buf_add(out, after_t, (size_t)(h - after_t)) < 0 ||
	    buf_add(out, html->p ? html->p : "", html->len) < 0 ||
	    buf_add(out, after_h, (size_t)(end - after_h)) < 0)
		return -1;
	return 0;
}

int msg_build(struct msg_ctx *m, const char *const *fields, const char *email,
	      const char *name, time_t now, struct buf *out,
	      struct msg_out *info, char *err, size_t errlen)
{
	const struct config *c = m->cfg;
	char token[65], verp[300];
	int rc = set_values(m, fields, email, name, token, verp, sizeof verp, err, errlen);
	if (rc)
		return rc;
	if (!msg_header_safe(email) || !msg_header_safe(name))
		return set_err(err, errlen, MSG_BADROW, "line break in the %s",
			       msg_header_safe(email) ? "name" : "address");

	/* Unsubscribe URL: per reader, percent-encoded values. */
	buf_reset(&m->tmp_url);
	if (m->unsub) {
		if (tmpl_render(m->unsub, m->vals, TMPL_URL, &m->tmp_url) < 0)
			goto oom;
	} else if (c->unsub.mailto) {
		if (buf_printf(&m->tmp_url, "mailto:%s?subject=unsubscribe", c->unsub.mailto) < 0)
			goto oom;
	}
	m->vals[MF_UNSUBSCRIBE_URL] = buf_cstr(&m->tmp_url);

	buf_reset(&m->tmp_subj);
	if ((m->test_mode && buf_adds(&m->tmp_subj, "[TEST] ") < 0) ||
	    tmpl_render(m->subject, m->vals, TMPL_RAW, &m->tmp_subj) < 0)
		goto oom;
	const char *subject = buf_cstr(&m->tmp_subj);
	if (!msg_header_safe(subject)) {
		for (size_t i = 0; i < m->nnames; i++)
			if (tmpl_uses(m->subject, i) && m->vals[i] && strpbrk(m->vals[i], "\r\n"))
				return set_err(err, errlen, MSG_BADROW,
					       "line break in field \"%s\", which the subject uses", m->names[i]);
		return set_err(err, errlen, MSG_BADROW, "the subject would hold a line break");
	}
	if (strlen(subject) > 900)
		return set_err(err, errlen, MSG_BADROW, "the merged subject is over 900 bytes");
	m->vals[MF_SUBJECT] = subject;

	buf_reset(&m->qp_text);
	buf_reset(&m->qp_html);
	if (m->want_parts) {
		/* preview: the parts as readers see them, then encoded */
		buf_reset(&m->tmp_text);
		buf_reset(&m->tmp_html);
		if (tmpl_render(m->text, m->vals, TMPL_RAW, &m->tmp_text) < 0 ||
		    tmpl_render(m->html, m->vals, TMPL_HTML, &m->tmp_html) < 0)
			goto oom;
		normalize_eol(&m->tmp_text);
		normalize_eol(&m->tmp_html);
		if (msg_qp_encode(&m->qp_text, m->tmp_text.p ? m->tmp_text.p : "", m->tmp_text.len) < 0 ||
		    msg_qp_encode(&m->qp_html, m->tmp_html.p ? m->tmp_html.p : "", m->tmp_html.len) < 0)
			goto oom;
	} else if (qp_render(m->qp_text_l, m->vals, TMPL_RAW, &m->tmp_line, &m->tmp_val, &m->qp_text) < 0 ||
		   qp_render(m->qp_html_l, m->vals, TMPL_HTML, &m->tmp_line, &m->tmp_val, &m->qp_html) < 0) {
		goto oom;
	}

	/* Envelope sender: VERP return path, else the From address. */
	buf_reset(&m->tmp_rp);
	if (m->return_path) {
		if (tmpl_render(m->return_path, m->vals, TMPL_RAW, &m->tmp_rp) < 0)
			goto oom;
		if (subs_valid_address(buf_cstr(&m->tmp_rp), NULL, 0) < 0)
			return set_err(err, errlen, MSG_BADROW, "bounce.return_path gives \"%s\", not an address",
				       buf_cstr(&m->tmp_rp));
	} else if (buf_adds(&m->tmp_rp, c->from_addr) < 0)
		goto oom;
	snprintf(info->mail_from, sizeof info->mail_from, "%s", buf_cstr(&m->tmp_rp));

	const char *dom = strrchr(c->from_addr, '@') + 1;
	char local[80];
	snprintf(local, sizeof local, "%s.%lu", m->id_prefix, ++m->seq);
	snprintf(info->message_id, sizeof info->message_id, "<%s@%s>", local, dom);

	struct mailimf_mailbox_list *from = mailbox_list(c->from_name, c->from_addr);
	struct mailimf_address_list *to = address_list(name, email);
	struct mailimf_address_list *reply = NULL;
	if (m->reply_addr)
		reply = address_list(m->reply_name, m->reply_addr);
	struct buf enc = {0};
	msg_encode_words(&enc, subject, 0);
	char *subj = buf_detach(&enc);
	char *mid = xstrndup(local, strlen(local));
	char *midfull = NULL;
	if (mid && asprintf(&midfull, "%s@%s", local, dom) < 0)
		midfull = NULL;
	free(mid);
	/* libetpan's mailimf_get_date() converts the time zone on every
	 * call; one conversion per second of sending is enough. */
	if (now != m->date_at || !m->date_cache) {
		if (m->date_cache)
			mailimf_date_time_free(m->date_cache);
		m->date_cache = mailimf_get_date(now);
		m->date_at = now;
	}
	const struct mailimf_date_time *dc = m->date_cache;
	struct mailimf_date_time *date = dc ? mailimf_date_time_new(dc->dt_day, dc->dt_month,
		dc->dt_year, dc->dt_hour, dc->dt_min, dc->dt_sec, dc->dt_zone) : NULL;
	struct mailimf_fields *f = NULL;
	if (from && to && subj && midfull && date)
		f = mailimf_fields_new_with_data_all(date, from, NULL, reply, to, NULL,
						     NULL, midfull, NULL, NULL, subj);
	if (!f) {
		if (from) mailimf_mailbox_list_free(from);
		if (to) mailimf_address_list_free(to);
		if (reply) mailimf_address_list_free(reply);
		if (date) mailimf_date_time_free(date);
		free(subj);
		free(midfull);
		goto oom;
	}

	struct buf h = {0};
	int hok = 0;
	if (c->list_id) {
		const char *lt = strchr(c->list_id, '<');
		if (lt) {
			buf_adds(&h, c->list_id);
		} else
			buf_printf(&h, "<%s>", c->list_id);
		hok |= add_field(f, "List-Id", buf_cstr(&h));
	}
	buf_reset(&h);
	int https = c->unsub.url && !strncmp(m->tmp_url.p ? m->tmp_url.p : "", "https://", 8);
	if (m->unsub && m->tmp_url.len)
		buf_printf(&h, "<%s>", m->tmp_url.p);
	if (c->unsub.mailto)
		buf_printf(&h, "%s<mailto:%s?subject=unsubscribe>", h.len ? ", " : "", c->unsub.mailto);
	if (h.len)
		hok |= add_field(f, "List-Unsubscribe", buf_cstr(&h));
	/* RFC 8058 one-click only makes sense for an https endpoint. */
	if (https)
		hok |= add_field(f, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
	buf_free(&h);

	struct mailmime *msg = mailmime_new_message_data(NULL);
	struct mailmime *alt = alternative(local);
	struct mailmime *tp = text_part("text/plain", text_marker);
	struct mailmime *hp = text_part("text/html", html_marker);
	if (hok || !msg || !alt || !tp || !hp) {
		mailimf_fields_free(f);
		if (msg) mailmime_free(msg);
		if (alt) mailmime_free(alt);
		if (tp) mailmime_free(tp);
		if (hp) mailmime_free(hp);
		goto oom;
	}
	mailmime_set_imf_fields(msg, f);
	mailmime_smart_add_part(alt, tp);
	mailmime_smart_add_part(alt, hp);
	mailmime_smart_add_part(msg, alt);

	MMAPString *s = mmap_string_new("");
	int col = 0;
	/* Signed: the message is assembled aside, as the signature header
	 * must come first and covers the finished bytes. */
	struct buf *dst = m->dkim ? &m->tmp_msg : out;
	buf_reset(&m->tmp_msg);
	int wr = s ? mailmime_write_mem(s, &col, msg) : -1;
	buf_reset(&m->tmp_skel);
	if (wr == MAILIMF_NO_ERROR)
		wr = add_unfolded_after_colon(&m->tmp_skel, s->str, s->len);
	if (wr == 0)
		wr = splice_bodies(dst, &m->tmp_skel, &m->qp_text, &m->qp_html);
	if (s)
		mmap_string_free(s);
	mailmime_free(msg);
	if (wr != 0)
		goto oom;
	if (m->dkim) {
		if (dkimsig_sign(m->dkim, m->tmp_msg.p, m->tmp_msg.len, out, err, errlen) < 0)
			return MSG_FAIL;
		if (buf_add(out, m->tmp_msg.p, m->tmp_msg.len) < 0)
			goto oom;
	}
	return MSG_OK;
oom:
	return set_err(err, errlen, MSG_FAIL, "out of memory building the message");
}

void msg_free(struct msg_ctx *m)
{
	tmpl_free(m->subject);
	tmpl_free(m->html);
	tmpl_free(m->text);
	tmpl_free(m->unsub);
	tmpl_free(m->return_path);
	free(m->names);
	free(m->vals);
	buf_free(&m->tmp_url);
	buf_free(&m->tmp_subj);
	buf_free(&m->tmp_text);
	buf_free(&m->tmp_html);
	buf_free(&m->tmp_rp);
	buf_free(&m->qp_text);
	buf_free(&m->qp_html);
	buf_free(&m->tmp_msg);
	buf_free(&m->tmp_skel);
	buf_free(&m->tmp_line);
	buf_free(&m->tmp_val);
	qp_layout_free(m->qp_text_l);
	if (m->date_cache)
		mailimf_date_time_free(m->date_cache);
	qp_layout_free(m->qp_html_l);
	free(m->reply_name);
	free(m->reply_addr);
	dkimsig_close(m->dkim);
	memset(m, 0, sizeof *m);
}
