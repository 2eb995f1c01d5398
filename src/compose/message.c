#include "compose/message.h"
#include "util/token.h"
#include "util/addr.h"
#include "compose/dkim.h"
#include "compose/template.h"
#include <ctype.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

struct qp_layout;

struct msg_ctx {
	const struct config *cfg;
	const struct post *post;
	struct tmpl *subject, *html, *text, *unsub, *return_path;
	char **names;          /* field table: built-ins, then list columns */
	size_t nnames, ncols;
	const char *secret;    /* unsubscribe-token key (borrowed) */
	char date_long[64];    /* "30 November 2026" */
	char id_prefix[40];    /* per-run random part of Message-IDs */
	unsigned long seq;
	unsigned flags;        /* MSG_TEST, MSG_KEEP_PARTS */
	const char **vals;     /* scratch, nnames entries */
	struct buf tmp_url, tmp_mailto, tmp_subj, tmp_text, tmp_html, tmp_rp, qp_text, qp_html;
	struct buf tmp_msg;    /* the unsigned message, when signing */
	struct buf tmp_skel;   /* libetpan's output, bodies still markers */
	char *reply_name, *reply_addr; /* reply_to, parsed once */
	struct qp_layout *qp_text_l, *qp_html_l; /* layouts pre-encoded */
	struct buf tmp_line, tmp_val;
	struct mailimf_date_time *date_cache;
	time_t date_at;
	struct dkimsig *dkim;  /* NULL: no dkim group in the config */
};

const char *const msg_builtin_fields[MF_NBUILTIN] = {
	"email", "name", "subject", "preheader", "date", "unsubscribe_url",
	"token", "list_name", "from_name", "from_email", "verp",
};

int msg_header_safe(const char *s)
{
	return !strpbrk(s, "\r\n") && utf8_valid(s, strlen(s));
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
		/* Which setting picked the file and which the directory, so a
		 * person sees where herald looked and what to change. */
		int e = errno;
		const char *name = config_origin(c, "template"), *dir = config_origin(c, "templates");
		if (name && dir)
			set_err(err, errlen, MSG_NOFILE, "%s: %s (%s; %s; set templates to the "
				"directory that holds %s.html and %s.txt)", path, strerror(e),
				name, dir, c->template_name, c->template_name);
		else
			set_err(err, errlen, MSG_NOFILE, "%s: %s (template = \"%s\" in %s)",
				path, strerror(e), c->template_name, c->path);
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

static int init(struct msg_ctx *m, const struct config *cfg,
		const struct post *post, const char *const *cols, size_t ncols,
		const char *secret, unsigned flags, char *err, size_t errlen)
{
	m->cfg = cfg;
	m->post = post;
	m->secret = secret;
	m->flags = flags;
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
	if (cfg->reply_to && addr_parse_mailbox(cfg->reply_to, &m->reply_name, &m->reply_addr) < 0)
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

int msg_new(struct msg_ctx **out, const struct config *cfg,
	    const struct post *post, const char *const *cols, size_t ncols,
	    const char *secret, unsigned flags, char *err, size_t errlen)
{
	struct msg_ctx *m = calloc(1, sizeof *m);
	*out = NULL;
	if (!m)
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	int rc = init(m, cfg, post, cols, ncols, secret, flags, err, errlen);
	if (rc != MSG_OK) {
		msg_free(m);
		return rc;
	}
	*out = m;
	return MSG_OK;
}

int msg_secret(const struct config *cfg, const char **secret, char *err, size_t errlen)
{
	*secret = NULL;
	if (cfg->unsub.url && strstr(cfg->unsub.url, "token"))
		return config_secret(cfg, secret, err, errlen);
	/* Without it the mailto subject names the address alone, which
	 * still works for a reader who writes from that address; check
	 * says what is lost. */
	if (cfg->unsub.mailto && config_secret(cfg, secret, err, errlen) < 0) {
		*secret = NULL;
		if (errlen)
			err[0] = '\0';
	}
	return 0;
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
	if (m->secret && token_make(m->secret, email, token) < 0)
		return set_err(err, errlen, MSG_FAIL, "HMAC failed");
	v[MF_TOKEN] = token;
	/* Every value must be UTF-8; a NUL can only come from a list that
	 * the reader already refused. */
	for (size_t i = 0; i < m->nnames; i++)
		if (v[i] && !utf8_valid(v[i], strlen(v[i])))
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

/* One reader's build: what the stages hand each other. */
struct build {
	const char *email, *name, *subject;
	char token[TOKEN_LEN + 1], verp[300];
	char local[80];         /* Message-ID left of the @ */
	const char *domain;     /* and right of it: the From domain */
};

static int oom(char *err, size_t errlen)
{
	return set_err(err, errlen, MSG_FAIL, "out of memory building the message");
}

/* The mailto: in List-Unsubscribe, per reader: RFC 6068 with the subject
 * percent-encoded ("+" too, which some clients read as a space). */
static int mailto_url(struct msg_ctx *m, const struct build *b)
{
	struct buf *u = &m->tmp_mailto;
	buf_reset(u);
	if (buf_printf(u, "mailto:%s?subject=unsubscribe%%20", m->cfg->unsub.mailto) < 0 ||
	    tmpl_escape(u, b->email, strlen(b->email), TMPL_URL) < 0)
		return -1;
	if (b->token[0] && buf_printf(u, "%%20%s", b->token) < 0)
		return -1;
	return 0;
}

/* Stage 1: the reader's values, the unsubscribe links and the subject. */
static int merge(struct msg_ctx *m, const char *const *fields, struct build *b,
		 char *err, size_t errlen)
{
	const struct config *c = m->cfg;
	int rc = set_values(m, fields, b->email, b->name, b->token, b->verp, sizeof b->verp,
			    err, errlen);
	if (rc)
		return rc;
	if (!msg_header_safe(b->email) || !msg_header_safe(b->name))
		return set_err(err, errlen, MSG_BADROW, "line break in the %s",
			       msg_header_safe(b->email) ? "name" : "address");

	buf_reset(&m->tmp_url);
	buf_reset(&m->tmp_mailto);
	if (c->unsub.mailto && mailto_url(m, b) < 0)
		return oom(err, errlen);
	if (m->unsub) {
		if (tmpl_render(m->unsub, m->vals, TMPL_URL, &m->tmp_url) < 0)
			return oom(err, errlen);
	} else if (c->unsub.mailto && buf_add(&m->tmp_url, m->tmp_mailto.p, m->tmp_mailto.len) < 0)
		return oom(err, errlen);
	m->vals[MF_UNSUBSCRIBE_URL] = buf_cstr(&m->tmp_url);

	buf_reset(&m->tmp_subj);
	if (((m->flags & MSG_TEST) && buf_adds(&m->tmp_subj, "[TEST] ") < 0) ||
	    tmpl_render(m->subject, m->vals, TMPL_RAW, &m->tmp_subj) < 0)
		return oom(err, errlen);
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
	m->vals[MF_SUBJECT] = b->subject = subject;
	return MSG_OK;
}

/* Stage 2: the text and HTML parts, quoted-printable. */
static int render_parts(struct msg_ctx *m, char *err, size_t errlen)
{
	buf_reset(&m->qp_text);
	buf_reset(&m->qp_html);
	if (m->flags & MSG_KEEP_PARTS) {
		/* preview: the parts as readers see them, then encoded */
		buf_reset(&m->tmp_text);
		buf_reset(&m->tmp_html);
		if (tmpl_render(m->text, m->vals, TMPL_RAW, &m->tmp_text) < 0 ||
		    tmpl_render(m->html, m->vals, TMPL_HTML, &m->tmp_html) < 0)
			return oom(err, errlen);
		normalize_eol(&m->tmp_text);
		normalize_eol(&m->tmp_html);
		if (msg_qp_encode(&m->qp_text, m->tmp_text.p ? m->tmp_text.p : "", m->tmp_text.len) < 0 ||
		    msg_qp_encode(&m->qp_html, m->tmp_html.p ? m->tmp_html.p : "", m->tmp_html.len) < 0)
			return oom(err, errlen);
	} else if (qp_render(m->qp_text_l, m->vals, TMPL_RAW, &m->tmp_line, &m->tmp_val, &m->qp_text) < 0 ||
		   qp_render(m->qp_html_l, m->vals, TMPL_HTML, &m->tmp_line, &m->tmp_val, &m->qp_html) < 0) {
		return oom(err, errlen);
	}
	return MSG_OK;
}

/* Stage 3: the envelope sender (VERP return path, else From) and the
 * Message-ID. */
static int envelope(struct msg_ctx *m, struct build *b, struct msg_out *info,
		    char *err, size_t errlen)
{
	buf_reset(&m->tmp_rp);
	if (m->return_path) {
		if (tmpl_render(m->return_path, m->vals, TMPL_RAW, &m->tmp_rp) < 0)
			return oom(err, errlen);
		if (addr_valid(buf_cstr(&m->tmp_rp), NULL, 0) < 0)
			return set_err(err, errlen, MSG_BADROW, "bounce.return_path gives \"%s\", not an address",
				       buf_cstr(&m->tmp_rp));
	} else if (buf_adds(&m->tmp_rp, m->cfg->from_addr) < 0)
		return oom(err, errlen);
	snprintf(info->mail_from, sizeof info->mail_from, "%s", buf_cstr(&m->tmp_rp));

	b->domain = strrchr(m->cfg->from_addr, '@') + 1;
	snprintf(b->local, sizeof b->local, "%s.%lu", m->id_prefix, ++m->seq);
	snprintf(info->message_id, sizeof info->message_id, "<%s@%s>", b->local, b->domain);
	return MSG_OK;
}

/* libetpan's mailimf_get_date() converts the time zone on every call;
 * one conversion per second of sending is enough. */
static struct mailimf_date_time *date_of(struct msg_ctx *m, time_t now)
{
	if (now != m->date_at || !m->date_cache) {
		if (m->date_cache)
			mailimf_date_time_free(m->date_cache);
		m->date_cache = mailimf_get_date(now);
		m->date_at = now;
	}
	const struct mailimf_date_time *dc = m->date_cache;
	return dc ? mailimf_date_time_new(dc->dt_day, dc->dt_month, dc->dt_year, dc->dt_hour,
					  dc->dt_min, dc->dt_sec, dc->dt_zone) : NULL;
}

/* List-Id, List-Unsubscribe and, for an https link, RFC 8058's
 * List-Unsubscribe-Post. */
static int list_fields(struct msg_ctx *m, struct mailimf_fields *f)
{
	const struct config *c = m->cfg;
	struct buf h = {0};
	int rc = 0;
	if (c->list_id) {
		rc = strchr(c->list_id, '<') ? buf_adds(&h, c->list_id)
					     : buf_printf(&h, "<%s>", c->list_id);
		if (!rc)
			rc = add_field(f, "List-Id", buf_cstr(&h));
	}
	buf_reset(&h);
	if (!rc && m->unsub && m->tmp_url.len)
		rc = buf_printf(&h, "<%s>", m->tmp_url.p);
	if (!rc && m->tmp_mailto.len)
		rc = buf_printf(&h, "%s<%s>", h.len ? ", " : "", m->tmp_mailto.p);
	if (!rc && h.len)
		rc = add_field(f, "List-Unsubscribe", buf_cstr(&h));
	/* One-click only makes sense for an https endpoint. */
	if (!rc && m->unsub && !strncmp(buf_cstr(&m->tmp_url), "https://", 8))
		rc = add_field(f, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
	buf_free(&h);
	return rc < 0 ? -1 : 0;
}

/* Stage 4: the header fields. NULL when out of memory. */
static struct mailimf_fields *headers(struct msg_ctx *m, const struct build *b, time_t now)
{
	const struct config *c = m->cfg;
	struct mailimf_mailbox_list *from = mailbox_list(c->from_name, c->from_addr);
	struct mailimf_address_list *to = address_list(b->name, b->email);
	struct mailimf_address_list *reply = m->reply_addr ? address_list(m->reply_name, m->reply_addr) : NULL;
	struct buf enc = {0};
	char *subj = msg_encode_words(&enc, b->subject, 0) == 0 ? buf_detach(&enc) : NULL;
	buf_free(&enc);
	char *mid = NULL;
	if (asprintf(&mid, "%s@%s", b->local, b->domain) < 0)
		mid = NULL;
	struct mailimf_date_time *date = date_of(m, now);
	struct mailimf_fields *f = NULL;
	if (from && to && subj && mid && date && (reply || !m->reply_addr))
		f = mailimf_fields_new_with_data_all(date, from, NULL, reply, to, NULL,
						     NULL, mid, NULL, NULL, subj);
	if (!f) {
		if (from) mailimf_mailbox_list_free(from);
		if (to) mailimf_address_list_free(to);
		if (reply) mailimf_address_list_free(reply);
		if (date) mailimf_date_time_free(date);
		free(subj);
		free(mid);
		return NULL;
	}
	if (list_fields(m, f) < 0) {
		mailimf_fields_free(f);
		return NULL;
	}
	return f;
}

/* The body: multipart/alternative, text first. A multipart/related
 * around the HTML part, or a /mixed around the whole, goes here. */
static struct mailmime *body_tree(const struct build *b)
{
	struct mailmime *alt = alternative(b->local);
	struct mailmime *tp = text_part("text/plain", text_marker);
	struct mailmime *hp = text_part("text/html", html_marker);
	if (!alt || !tp || !hp || mailmime_smart_add_part(alt, tp) != MAILIMF_NO_ERROR) {
		if (alt) mailmime_free(alt);
		if (tp) mailmime_free(tp);
		if (hp) mailmime_free(hp);
		return NULL;
	}
	if (mailmime_smart_add_part(alt, hp) != MAILIMF_NO_ERROR) {
		mailmime_free(alt);
		mailmime_free(hp);
		return NULL;
	}
	return alt;
}

/* Stage 5: the MIME tree around f (taken over), written out with the
 * encoded bodies spliced in where libetpan wrote their markers. */
static int assemble(struct msg_ctx *m, const struct build *b, struct mailimf_fields *f,
		    struct buf *dst)
{
	struct mailmime *msg = mailmime_new_message_data(NULL);
	struct mailmime *body = msg ? body_tree(b) : NULL;
	if (!body) {
		mailimf_fields_free(f);
		if (msg)
			mailmime_free(msg);
		return -1;
	}
	mailmime_set_imf_fields(msg, f);
	if (mailmime_smart_add_part(msg, body) != MAILIMF_NO_ERROR) {
		mailmime_free(body);
		mailmime_free(msg);
		return -1;
	}
	MMAPString *s = mmap_string_new("");
	int col = 0;
	int wr = s ? mailmime_write_mem(s, &col, msg) : -1;
	buf_reset(&m->tmp_skel);
	if (wr == MAILIMF_NO_ERROR)
		wr = add_unfolded_after_colon(&m->tmp_skel, s->str, s->len);
	if (wr == 0)
		wr = splice_bodies(dst, &m->tmp_skel, &m->qp_text, &m->qp_html);
	if (s)
		mmap_string_free(s);
	mailmime_free(msg);
	return wr == 0 ? 0 : -1;
}

int msg_build(struct msg_ctx *m, const char *const *fields, const char *email,
	      const char *name, time_t now, struct buf *out,
	      struct msg_out *info, char *err, size_t errlen)
{
	struct build b = {.email = email, .name = name};
	int rc;
	if ((rc = merge(m, fields, &b, err, errlen)) || (rc = render_parts(m, err, errlen)) ||
	    (rc = envelope(m, &b, info, err, errlen)))
		return rc;
	struct mailimf_fields *f = headers(m, &b, now);
	if (!f)
		return oom(err, errlen);
	/* Stage 6, signed: the message is assembled aside, as the signature
	 * header comes first and covers the finished bytes. */
	buf_reset(&m->tmp_msg);
	if (assemble(m, &b, f, m->dkim ? &m->tmp_msg : out) < 0)
		return oom(err, errlen);
	if (m->dkim) {
		if (dkimsig_sign(m->dkim, m->tmp_msg.p, m->tmp_msg.len, out, err, errlen) < 0)
			return MSG_FAIL;
		if (buf_add(out, m->tmp_msg.p, m->tmp_msg.len) < 0)
			return oom(err, errlen);
	}
	return MSG_OK;
}

void msg_last_parts(const struct msg_ctx *m, struct msg_parts *p)
{
	p->subject = m->tmp_subj.p ? m->tmp_subj.p : ""; /* merge() ended it with a NUL */
	p->html = &m->tmp_html;
	p->text = &m->tmp_text;
	p->qp_html = &m->qp_html;
	p->qp_text = &m->qp_text;
}

void msg_free(struct msg_ctx *m)
{
	if (!m)
		return;
	tmpl_free(m->subject);
	tmpl_free(m->html);
	tmpl_free(m->text);
	tmpl_free(m->unsub);
	tmpl_free(m->return_path);
	free(m->names);
	free(m->vals);
	struct buf *bufs[] = {&m->tmp_url, &m->tmp_mailto, &m->tmp_subj, &m->tmp_text,
			      &m->tmp_html, &m->tmp_rp, &m->qp_text, &m->qp_html, &m->tmp_msg,
			      &m->tmp_skel, &m->tmp_line, &m->tmp_val};
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		buf_free(bufs[i]);
	qp_layout_free(m->qp_text_l);
	qp_layout_free(m->qp_html_l);
	if (m->date_cache)
		mailimf_date_time_free(m->date_cache);
	free(m->reply_name);
	free(m->reply_addr);
	dkimsig_close(m->dkim);
	free(m);
}

int msg_exitcode(int rc)
{
	return rc == MSG_OK ? EX_OK : rc == MSG_NOFILE ? EX_NOINPUT : EX_DATAERR;
}
