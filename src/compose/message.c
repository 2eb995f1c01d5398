#include "compose/message.h"
#include "util/token.h"
#include "util/addr.h"
#include "compose/dkim.h"
#include "compose/encode.h"
#include "compose/media.h"
#include "compose/skeleton.h"
#include "compose/template.h"
#include "compose/text.h"
#include <errno.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

struct qp_layout;

struct msg_ctx {
	const struct config *cfg;
	const struct post *post;
	struct tmpl *subject, *html, *text, *unsub, *return_path;
	char **names;          /* field table: built-ins, then list columns */
	size_t nnames, ncols;
	struct token_key *key; /* the unsubscribe-token secret, keyed once per
				  run; NULL without one */
	char date_long[64];    /* "30 November 2026" */
	char web_url[600];     /* {{web_url}} */
	unsigned long seq;
	unsigned flags;        /* MSG_TEST, MSG_KEEP_PARTS */
	int wrap_footer;       /* the text footer merges values: wrap_qp_footer() */
	size_t footer_piece;   /* the text template's piece with its last "-- " line, */
	size_t footer_off;     /* and where in it the line starts */
	const char **vals;     /* scratch, nnames entries */
	struct buf tmp_url, tmp_mailto, tmp_subj, tmp_text, tmp_html, tmp_rp, qp_text, qp_html;
	struct buf tmp_msg;    /* the unsigned message, when signing */
	struct skel skel;      /* the body, once per run; its id is the
				  run's random part of Message-IDs */
	MMAPString *tmp_mm;    /* libetpan's output of one reader's header */
	char *reply_name, *reply_addr; /* reply_to, parsed once */
	struct qp_layout *qp_text_l, *qp_html_l; /* layouts pre-encoded */
	struct buf tmp_line, tmp_val;
	/* Header lines the same for every reader, as libetpan wrote them:
	 * From and Reply-To, List-Id, List-Unsubscribe-Post; and the Date
	 * line, the same for a second (date_at). */
	struct buf hdr_from, hdr_list_id, hdr_post, hdr_date;
	time_t date_at;
	struct dkimsig *dkim;  /* NULL: no dkim group in the config */
	struct media *media;   /* attachments, read and encoded once */
	size_t nmedia;
	struct tmpl **hdr;     /* the config's headers, cfg->n_headers of them */
	struct buf *tmp_hdr;   /* ... merged for this reader, encoded */
};

static int oom(char *err, size_t errlen)
{
	return set_err(err, errlen, MSG_FAIL, "out of memory building the message");
}

static int make_skeleton(struct msg_ctx *m, char *err, size_t errlen);

const char *const msg_builtin_fields[MF_NBUILTIN] = {
	"email", "name", "subject", "preheader", "date", "unsubscribe_url",
	"token", "list_name", "from_name", "from_email", "verp", "slug", "postal_address",
	"language", "web_url",
};

/* Whether the text template's footer (after its last "-- " line) merges
 * a value: only then can a line of it outgrow the width per reader.
 * *piece, *off: the piece that holds that line and where it starts. */
static int footer_merges(const struct tmpl *t, size_t *piece, size_t *off)
{
	size_t n = tmpl_npieces(t), sig = n;
	struct tmpl_piece pc;
	for (size_t i = 0; i < n; i++) {
		tmpl_get_piece(t, i, &pc);
		for (size_t k = 0; pc.field < 0 && k + 4 <= pc.len; k++)
			if (!memcmp(pc.text + k, "-- \n", 4) && (!k || pc.text[k - 1] == '\n')) {
				sig = i;
				*off = k;
			}
	}
	*piece = sig;
	for (size_t i = sig + 1; i < n; i++) {
		tmpl_get_piece(t, i, &pc);
		if (pc.field >= 0)
			return 1;
	}
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
	int found = 0, oom = 0;
	while ((hit = strstr(p, "{{body}}"))) {
		oom |= buf_add(&b, p, (size_t)(hit - p)) < 0 || buf_adds(&b, body) < 0;
		p = hit + 8;
		found = 1;
	}
	oom |= buf_adds(&b, p) < 0;
	struct tmpl_names tn = {(const char *const *)m->names, m->nnames};
	int rc = MSG_OK;
	if (!found)
		rc = set_err(err, errlen, MSG_FAIL, "%s: no {{body}} in the template", path);
	else if (oom || !b.p)
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

/* The post's merge fields, judged by template.c in the words check uses,
 * at their lines of the post: the body is compiled inside the layout,
 * where its lines are not the post's. */
struct body_check {
	char first[600];
	int problems;
};

static int first_problem(void *arg, const struct tmpl_field *f, const char *problem)
{
	struct body_check *bc = arg;
	if (problem && !bc->problems++)
		snprintf(bc->first, sizeof bc->first, "%d: %s", f->line, problem);
	return 0;
}

static int check_body_fields(struct msg_ctx *m, char *err, size_t errlen)
{
	const struct post *p = m->post;
	struct tmpl_names tn = {(const char *const *)m->names, m->nnames};
	struct body_check bc = {"", 0};
	for (size_t i = 0; i < p->nfields; i++)
		tmpl_check(p->fields[i].text, strlen(p->fields[i].text), p->fields[i].line, &tn,
			   first_problem, &bc);
	if (bc.problems == 1)
		return set_err(err, errlen, MSG_FAIL, "%s:%s", p->path, bc.first);
	if (bc.problems)
		return set_err(err, errlen, MSG_FAIL, "%s:%s; and %d more (herald check lists each)",
			       p->path, bc.first, bc.problems - 1);
	return MSG_OK;
}

static int compile_str(struct msg_ctx *m, const char *s, const char *what,
		       struct tmpl **out, char *err, size_t errlen)
{
	struct tmpl_names tn = {(const char *const *)m->names, m->nnames};
	return tmpl_compile(out, s, strlen(s), &tn, what, 0, err, errlen) < 0 ? MSG_FAIL : MSG_OK;
}

void msg_web_url(const struct config *cfg, const struct post *p, char *out, size_t len)
{
	if (cfg->web.base_url && p->slug)
		snprintf(out, len, "%s/archive/%s", cfg->web.base_url, p->slug);
	else if (len)
		out[0] = '\0';
}

void msg_long_date(const struct post *p, char *out, size_t len)
{
	static const char *const mon[] = {"January", "February", "March", "April",
		"May", "June", "July", "August", "September", "October", "November", "December"};
	int y, mo, d;
	/* The day as written: with an offset the machine's own zone may be
	 * on another day. */
	if (p->when && sscanf(p->date, "%4d-%2d-%2d", &y, &mo, &d) == 3 && mo >= 1 && mo <= 12)
		snprintf(out, len, "%d %s %d", d, mon[mo - 1], y);
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
		    enc_qp(&l->mid, first + 1, (size_t)(last - first)) < 0)
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
	if (enc_qp(st->out, st->line->p ? st->line->p : "", st->line->len) < 0 ||
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

/* One more medium: media[nmedia]. */
static int add_media(struct msg_ctx *m, enum media_kind kind, const char *path, const char *what,
		     char *err, size_t errlen)
{
	struct media *nm = realloc(m->media, (m->nmedia + 1) * sizeof *nm);
	if (!nm)
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	m->media = nm;
	int rc = media_load(&nm[m->nmedia], kind, path, what, err, errlen);
	m->nmedia++; /* freed whole or half by msg_free */
	return rc ? (rc == MEDIA_NOFILE ? MSG_NOFILE : MSG_FAIL) : MSG_OK;
}

/* The post's local images, embedded: read and encoded once here, and
 * every <img> of one given its size in the HTML (*html, a copy of the
 * post's, NULL when it has none): width and height attributes scaled to
 * the content width, and max-width:100%, because clients that drop
 * <style> (and Outlook) otherwise show a photo at its full 1600 px. */
static int load_images(struct msg_ctx *m, char **html, char *err, size_t errlen)
{
	const struct post *p = m->post;
	*html = NULL;
	if (!p->nimages)
		return MSG_OK;
	struct buf out = {0};
	const char *src = p->html;
	for (size_t k = 0; k < p->nimages; k++) {
		char what[4200];
		snprintf(what, sizeof what, "%s:%d: image", p->path, p->images[k].line);
		char *path = post_file(p, p->images[k].src, strlen(p->images[k].src));
		int rc = path ? add_media(m, MEDIA_IMAGE, path, what, err, errlen)
			      : set_err(err, errlen, MSG_FAIL, "out of memory");
		free(path);
		if (rc)
			return rc;
	}
	for (const char *at = src;;) {
		const char *hit = strstr(at, "src=\"cid:");
		if (!hit) {
			if (buf_adds(&out, at) < 0) {
				buf_free(&out);
				return oom(err, errlen);
			}
			*html = buf_detach(&out);
			return MSG_OK;
		}
		const char *q = hit + strlen("src=\"cid:"), *qe = strchr(q, '"');
		if (!qe)
			qe = q + strlen(q);
		const struct media *md = NULL;
		for (size_t k = 0; !md && k < p->nimages; k++)
			if (strlen(p->images[k].cid) == (size_t)(qe - q) && !memcmp(q, p->images[k].cid, qe - q))
				md = &m->media[k];
		int w = md ? md->width : 0, h = md ? md->height : 0;
		if (w > MSG_CONTENT_WIDTH) {
			h = (int)((long)h * MSG_CONTENT_WIDTH / w);
			w = MSG_CONTENT_WIDTH;
		}
		if (buf_add(&out, at, (size_t)(qe + (*qe == '"') - at)) < 0 ||
		    (md && buf_printf(&out, " width=\"%d\" height=\"%d\" style=\"max-width:100%%; "
				      "height:auto;\"", w, h > 0 ? h : 1) < 0)) {
			buf_free(&out);
			return oom(err, errlen);
		}
		at = qe + (*qe == '"');
	}
}

/* The post's attachments: comma-separated paths, relative to the post's
 * directory; each read, typed and encoded here, once per run. */
static int load_attachments(struct msg_ctx *m, char *err, size_t errlen)
{
	const struct post *p = m->post;
	char what[4200];
	snprintf(what, sizeof what, "%s:%d: attachment", p->path, p->attachments_line);
	for (const char *s = p->attachments;; s++) {
		size_t n = strcspn(s, ",");
		const char *b = s, *e = s + n;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > b) {
			char *path = post_file(p, b, (size_t)(e - b));
			int rc = path ? add_media(m, MEDIA_ATTACHMENT, path, what, err, errlen)
				      : set_err(err, errlen, MSG_FAIL, "out of memory");
			free(path);
			if (rc)
				return rc;
		}
		s += n;
		if (!*s)
			break;
	}
	return MSG_OK;
}

static int init(struct msg_ctx *m, const struct config *cfg,
		const struct post *post, const char *const *cols, size_t ncols,
		const char *secret, unsigned flags, char *err, size_t errlen)
{
	m->cfg = cfg;
	m->post = post;
	if (secret && !(m->key = token_key_new(secret)))
		return set_err(err, errlen, MSG_FAIL, "HMAC failed keying the unsubscribe-token secret");
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
	msg_long_date(post, m->date_long, sizeof m->date_long);
	msg_web_url(cfg, post, m->web_url, sizeof m->web_url);
	if (cfg->reply_to && addr_parse_mailbox(cfg->reply_to, &m->reply_name, &m->reply_addr) < 0)
		return set_err(err, errlen, MSG_FAIL, "reply_to: \"%s\" is not an address", cfg->reply_to);

	char what[512];
	snprintf(what, sizeof what, "%s: subject", post->path);
	int rc;
	char *html = NULL;
	if ((rc = compile_str(m, post->subject, what, &m->subject, err, errlen)) ||
	    (rc = check_body_fields(m, err, errlen)) ||
	    (rc = load_images(m, &html, err, errlen)) ||
	    (rc = layout(m, "html", html ? html : post->html, &m->html, err, errlen)) ||
	    (rc = layout(m, "txt", post->text, &m->text, err, errlen))) {
		free(html);
		return rc;
	}
	free(html);
	if (!(m->qp_text_l = qp_layout_new(m->text)) || !(m->qp_html_l = qp_layout_new(m->html)))
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	m->wrap_footer = footer_merges(m->text, &m->footer_piece, &m->footer_off);
	if (cfg->unsub.url &&
	    compile_str(m, cfg->unsub.url, "unsubscribe.url", &m->unsub, err, errlen))
		return MSG_FAIL;
	if (cfg->bounce.return_path &&
	    compile_str(m, cfg->bounce.return_path, "bounce.return_path", &m->return_path, err, errlen))
		return MSG_FAIL;
	if (cfg->n_headers && (!(m->hdr = calloc(cfg->n_headers, sizeof *m->hdr)) ||
			       !(m->tmp_hdr = calloc(cfg->n_headers, sizeof *m->tmp_hdr))))
		return set_err(err, errlen, MSG_FAIL, "out of memory");
	for (size_t i = 0; i < cfg->n_headers; i++) {
		char hwhat[4200];
		snprintf(hwhat, sizeof hwhat, "%s: headers: %s", cfg->headers[i].where, cfg->headers[i].name);
		if (compile_str(m, cfg->headers[i].value, hwhat, &m->hdr[i], err, errlen))
			return MSG_FAIL;
	}
	if (post->attachments && (rc = load_attachments(m, err, errlen)))
		return rc;
	if (m->unsub && tmpl_uses(m->unsub, MF_TOKEN) && !secret)
		return set_err(err, errlen, MSG_FAIL, "unsubscribe.url uses {{token}} but no secret is set");
	/* {{subject}} inside the subject itself would have no value yet. */
	if (tmpl_uses(m->subject, MF_SUBJECT))
		return set_err(err, errlen, MSG_FAIL, "%s: the subject cannot contain {{subject}}", post->path);
	if (cfg->dkim.domain) {
		const char **extra = calloc(cfg->n_headers + 1, sizeof *extra);
		if (!extra)
			return set_err(err, errlen, MSG_FAIL, "out of memory");
		for (size_t i = 0; i < cfg->n_headers; i++)
			extra[i] = cfg->headers[i].name;
		rc = dkimsig_open(&m->dkim, cfg->dkim.domain, cfg->dkim.selector,
				  cfg->dkim.key_file, extra, cfg->n_headers, err, errlen);
		free(extra);
		if (rc < 0)
			return rc == DKIMSIG_NOFILE ? MSG_NOFILE : MSG_FAIL;
	}
	return make_skeleton(m, err, errlen);
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
		if (enc_words(&b, name, 1) == 0)
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
	v[MF_SLUG] = m->post->slug;
	v[MF_WEB_URL] = m->web_url;
	v[MF_POSTAL_ADDRESS] = c->postal_address;
	v[MF_LANGUAGE] = c->language; /* the templates' lang attribute */
	for (size_t i = 0; i < m->ncols; i++)
		v[MF_NBUILTIN + i] = fields ? fields[i] : NULL;
	snprintf(verp, verplen, "%s", email);
	char *at = strrchr(verp, '@');
	if (at)
		*at = '=';
	v[MF_VERP] = verp;
	token[0] = '\0';
	if (m->key && token_key_make(m->key, email, token) < 0)
		return set_err(err, errlen, MSG_FAIL, "HMAC failed");
	v[MF_TOKEN] = token;
	/* Every value must be UTF-8; a NUL can only come from a list that
	 * the reader already refused. */
	for (size_t i = 0; i < m->nnames; i++)
		if (v[i] && !utf8_valid(v[i], strlen(v[i])))
			return set_err(err, errlen, MSG_BADROW, "field \"%s\" is not valid UTF-8", m->names[i]);
	return MSG_OK;
}

/* One reader's build: what the stages hand each other. */
struct build {
	const char *email, *name, *subject;
	char token[TOKEN_LEN + 1], verp[300];
	char local[80];         /* Message-ID left of the @ */
	const char *domain;     /* and right of it: the From domain */
};

/* The mailto: in List-Unsubscribe, per reader: RFC 6068 with the subject
 * percent-encoded ("+" too, which some clients read as a space). */
static int mailto_url(struct msg_ctx *m, const struct build *b)
{
	struct buf *u = &m->tmp_mailto;
	buf_reset(u);
	if (buf_adds(u, "mailto:") < 0 || buf_adds(u, m->cfg->unsub.mailto) < 0 ||
	    buf_adds(u, "?subject=unsubscribe%20") < 0 ||
	    tmpl_escape(u, b->email, strlen(b->email), TMPL_URL) < 0)
		return -1;
	if (b->token[0] && (buf_adds(u, "%20") < 0 || buf_adds(u, b->token) < 0))
		return -1;
	return 0;
}

/* Stage 1: the reader's values, the unsubscribe links and the subject. */
/* The config's extra header lines for this reader: merged, then refused
 * (the reader skipped) if a value would put a line break or a control
 * character into the header, RFC 2047 encoded where it is not ASCII. */
static int extra_headers(struct msg_ctx *m, char *err, size_t errlen)
{
	const struct config *c = m->cfg;
	for (size_t i = 0; i < c->n_headers; i++) {
		buf_reset(&m->tmp_val);
		buf_reset(&m->tmp_hdr[i]);
		if (tmpl_render(m->hdr[i], m->vals, TMPL_RAW, &m->tmp_val) < 0)
			return oom(err, errlen);
		const char *v = buf_cstr(&m->tmp_val);
		for (const unsigned char *p = (const unsigned char *)v; *p; p++)
			if (*p < 0x20 || *p == 0x7F)
				return set_err(err, errlen, MSG_BADROW, "the %s header (%s) would hold a "
					       "line break or control character from a merged field",
					       c->headers[i].name, c->headers[i].where);
		if (!*v)
			return set_err(err, errlen, MSG_BADROW, "the %s header (%s) would be empty",
				       c->headers[i].name, c->headers[i].where);
		if (strlen(v) > 900)
			return set_err(err, errlen, MSG_BADROW, "the merged %s header is over 900 bytes",
				       c->headers[i].name);
		if (enc_words(&m->tmp_hdr[i], v, 0) < 0)
			return oom(err, errlen);
	}
	return MSG_OK;
}

static int merge(struct msg_ctx *m, const char *const *fields, struct build *b,
		 char *err, size_t errlen)
{
	const struct config *c = m->cfg;
	int rc = set_values(m, fields, b->email, b->name, b->token, b->verp, sizeof b->verp,
			    err, errlen);
	if (rc)
		return rc;
	if (!enc_header_safe(b->email) || !enc_header_safe(b->name))
		return set_err(err, errlen, MSG_BADROW, "line break in the %s",
			       enc_header_safe(b->email) ? "name" : "address");

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
	if (!enc_header_safe(subject)) {
		for (size_t i = 0; i < m->nnames; i++)
			if (tmpl_uses(m->subject, i) && m->vals[i] && strpbrk(m->vals[i], "\r\n"))
				return set_err(err, errlen, MSG_BADROW,
					       "line break in field \"%s\", which the subject uses", m->names[i]);
		return set_err(err, errlen, MSG_BADROW, "the subject would hold a line break");
	}
	if (strlen(subject) > 900)
		return set_err(err, errlen, MSG_BADROW, "the merged subject is over 900 bytes");
	m->vals[MF_SUBJECT] = b->subject = subject;
	return extra_headers(m, err, errlen);
}

/* The text part through a buffer, its footer wrapped at the body's
 * width for this reader (preview and check keep the plain part). */
static int render_text(struct msg_ctx *m)
{
	buf_reset(&m->tmp_text);
	if (tmpl_render(m->text, m->vals, TMPL_RAW, &m->tmp_text) < 0)
		return -1;
	normalize_eol(&m->tmp_text);
	if (text_wrap_footer(&m->tmp_text, m->post->text_width) < 0)
		return -1;
	return enc_qp(&m->qp_text, m->tmp_text.p ? m->tmp_text.p : "", m->tmp_text.len);
}

/* The fast path's footer: rendered again from the template's last "-- "
 * line (m->footer_piece, m->footer_off), it is what the encoded part
 * ends with; that tail is replaced by the footer wrapped
 * (text_wrap_footer: the values merged into it are only known now) and
 * encoded. A few hundred bytes, where rendering the whole part through a
 * buffer would cost every message its precomputed layout. The tail is
 * compared, not assumed: if it is not there (a value holding a line
 * break the encoder treats otherwise), the part is rendered whole. */
static int wrap_qp_footer(struct msg_ctx *m)
{
	struct buf *q = &m->qp_text, *enc = &m->tmp_val;
	buf_reset(&m->tmp_text);
	buf_reset(enc);
	if (tmpl_render_from(m->text, m->footer_piece, m->footer_off, m->vals, TMPL_RAW,
			     &m->tmp_text) < 0)
		return -1;
	normalize_eol(&m->tmp_text);
	if (enc_qp(enc, m->tmp_text.p ? m->tmp_text.p : "", m->tmp_text.len) < 0)
		return -1;
	if (enc->len > q->len || memcmp(q->p + q->len - enc->len, enc->p, enc->len)) {
		buf_reset(q);
		return render_text(m);
	}
	q->len -= enc->len;
	if (text_wrap_footer(&m->tmp_text, m->post->text_width) < 0)
		return -1;
	return enc_qp(q, m->tmp_text.p ? m->tmp_text.p : "", m->tmp_text.len);
}

/* Stage 2: the text and HTML parts, quoted-printable. */
static int render_parts(struct msg_ctx *m, char *err, size_t errlen)
{
	buf_reset(&m->qp_text);
	buf_reset(&m->qp_html);
	if (m->flags & MSG_KEEP_PARTS) {
		/* preview: the parts as readers see them, then encoded */
		buf_reset(&m->tmp_html);
		if (render_text(m) < 0 || tmpl_render(m->html, m->vals, TMPL_HTML, &m->tmp_html) < 0)
			return oom(err, errlen);
		normalize_eol(&m->tmp_html);
		if (enc_qp(&m->qp_html, m->tmp_html.p ? m->tmp_html.p : "", m->tmp_html.len) < 0)
			return oom(err, errlen);
	} else if (qp_render(m->qp_text_l, m->vals, TMPL_RAW, &m->tmp_line, &m->tmp_val, &m->qp_text) < 0 ||
		   qp_render(m->qp_html_l, m->vals, TMPL_HTML, &m->tmp_line, &m->tmp_val, &m->qp_html) < 0 ||
		   (m->wrap_footer && wrap_qp_footer(m) < 0)) {
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
	snprintf(b->local, sizeof b->local, "%s.%lu", m->skel.id, ++m->seq);
	snprintf(info->message_id, sizeof info->message_id, "<%s@%s>", b->local, b->domain);
	return MSG_OK;
}

/* Header fields f (taken over) as libetpan writes them, appended to out. */
BUF_MUST static int write_fields(struct buf *out, struct mailimf_fields *f)
{
	MMAPString *s = f ? mmap_string_new("") : NULL;
	int col = 0;
	int wr = s ? mailimf_fields_write_mem(s, &col, f) : -1;
	if (wr == MAILIMF_NO_ERROR)
		wr = buf_add(out, s->str, s->len);
	if (s)
		mmap_string_free(s);
	if (f)
		mailimf_fields_free(f);
	return wr == 0 ? 0 : -1;
}

/* One custom field, written: "Name: value" CRLF, folded by libetpan. */
BUF_MUST static int write_custom(struct buf *out, const char *name, const char *value)
{
	struct mailimf_fields *f = mailimf_fields_new_empty();
	if (f && add_field(f, name, value) < 0) {
		mailimf_fields_free(f);
		return -1;
	}
	return write_fields(out, f);
}

/* The header lines that are the same for every reader, once per run. */
static int constant_headers(struct msg_ctx *m)
{
	const struct config *c = m->cfg;
	struct mailimf_mailbox_list *from = mailbox_list(c->from_name, c->from_addr);
	struct mailimf_address_list *reply = m->reply_addr ? address_list(m->reply_name, m->reply_addr) : NULL;
	struct mailimf_fields *f = from && (reply || !m->reply_addr)
		? mailimf_fields_new_with_data_all(NULL, from, NULL, reply, NULL, NULL, NULL, NULL,
						   NULL, NULL, NULL) : NULL;
	if (!f) {
		if (from)
			mailimf_mailbox_list_free(from);
		if (reply)
			mailimf_address_list_free(reply);
		return -1;
	}
	if (write_fields(&m->hdr_from, f) < 0)
		return -1;
	if (c->list_id) {
		struct buf h = {0};
		int rc = strchr(c->list_id, '<') ? buf_adds(&h, c->list_id)
						 : buf_printf(&h, "<%s>", c->list_id);
		if (!rc)
			rc = write_custom(&m->hdr_list_id, "List-Id", buf_cstr(&h));
		buf_free(&h);
		if (rc < 0)
			return -1;
	}
	/* RFC 8058 one-click, for an https link (list_fields decides). */
	return write_custom(&m->hdr_post, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
}

/* The Date line: libetpan's mailimf_get_date() converts the time zone on
 * every call, and the line is the same for a second of sending. */
static const struct buf *date_line(struct msg_ctx *m, time_t now)
{
	if (now == m->date_at && m->hdr_date.len)
		return &m->hdr_date;
	buf_reset(&m->hdr_date);
	struct mailimf_date_time *d = mailimf_get_date(now);
	struct mailimf_fields *f = d ? mailimf_fields_new_with_data_all(d, NULL, NULL, NULL, NULL,
		NULL, NULL, NULL, NULL, NULL, NULL) : NULL;
	if (!f && d)
		mailimf_date_time_free(d);
	if (write_fields(&m->hdr_date, f) < 0) {
		buf_reset(&m->hdr_date);
		return NULL;
	}
	m->date_at = now;
	return &m->hdr_date;
}

/* List-Unsubscribe and the config's headers, after this reader's To,
 * Message-ID and Subject. *unsub: whether List-Unsubscribe is there. */
static int list_fields(struct msg_ctx *m, struct mailimf_fields *f, int *unsub)
{
	const struct config *c = m->cfg;
	struct buf *h = &m->tmp_line; /* scratch: the parts are rendered by now */
	int rc = 0;
	buf_reset(h);
	if (m->unsub && m->tmp_url.len)
		rc = buf_adds(h, "<") < 0 || buf_add(h, m->tmp_url.p, m->tmp_url.len) < 0 ||
		     buf_adds(h, ">") < 0 ? -1 : 0;
	if (!rc && m->tmp_mailto.len)
		rc = buf_adds(h, h->len ? ", <" : "<") < 0 ||
		     buf_add(h, m->tmp_mailto.p, m->tmp_mailto.len) < 0 || buf_adds(h, ">") < 0 ? -1 : 0;
	*unsub = h->len > 0;
	if (!rc && h->len)
		rc = add_field(f, "List-Unsubscribe", buf_cstr(h));
	for (size_t i = 0; !rc && i < c->n_headers; i++)
		rc = add_field(f, c->headers[i].name, buf_cstr(&m->tmp_hdr[i]));
	return rc < 0 ? -1 : 0;
}

/* Stage 4: this reader's header fields (To, Message-ID, Subject,
 * List-Unsubscribe, the config's headers). NULL when out of memory. */
static struct mailimf_fields *headers(struct msg_ctx *m, const struct build *b, int *unsub)
{
	struct mailimf_address_list *to = address_list(b->name, b->email);
	struct buf enc = {0};
	char *subj = enc_words(&enc, b->subject, 0) == 0 ? buf_detach(&enc) : NULL;
	buf_free(&enc);
	char *mid = NULL;
	if (asprintf(&mid, "%s@%s", b->local, b->domain) < 0)
		mid = NULL;
	struct mailimf_fields *f = NULL;
	if (to && subj && mid)
		f = mailimf_fields_new_with_data_all(NULL, NULL, NULL, NULL, to, NULL,
						     NULL, mid, NULL, NULL, subj);
	if (!f) {
		if (to) mailimf_address_list_free(to);
		free(subj);
		free(mid);
		return NULL;
	}
	if (list_fields(m, f, unsub) < 0) {
		mailimf_fields_free(f);
		return NULL;
	}
	return f;
}

/* The header lines the same for every reader, and the body skeleton
 * (skeleton.c), once per run. */
static int make_skeleton(struct msg_ctx *m, char *err, size_t errlen)
{
	if (!(m->tmp_mm = mmap_string_new("")) || constant_headers(m) < 0)
		return oom(err, errlen);
	return skel_make(&m->skel, m->post, m->media, m->nmedia, err, errlen) < 0 ? MSG_FAIL : MSG_OK;
}

/* Stage 5: the header, the run's lines and this reader's fields f (taken
 * over, written by libetpan) in the order readers have always had them
 * (Date, From, Reply-To, To, Message-ID, Subject, List-Id,
 * List-Unsubscribe, List-Unsubscribe-Post, the config's headers), then
 * the skeleton with this reader's parts. */
static int assemble(struct msg_ctx *m, struct mailimf_fields *f, int unsub, time_t now,
		    struct buf *dst)
{
	const struct buf *date = date_line(m, now);
	MMAPString *s = mmap_string_truncate(m->tmp_mm, 0);
	int col = 0, wr = date && s ? MAILIMF_NO_ERROR : -1;
	if (wr == MAILIMF_NO_ERROR && (!mmap_string_append_len(s, date->p, date->len) ||
				       !mmap_string_append_len(s, m->hdr_from.p, m->hdr_from.len)))
		wr = -1;
	/* One-click only makes sense for an https endpoint. */
	int post = unsub && m->unsub && !strncmp(buf_cstr(&m->tmp_url), "https://", 8);
	size_t i = 0;
	for (clistiter *it = clist_begin(f->fld_list); wr == MAILIMF_NO_ERROR && it; it = clist_next(it), i++) {
		wr = mailimf_field_write_mem(s, &col, clist_content(it));
		/* after the Subject (the third), and after List-Unsubscribe */
		const struct buf *after = i == 2 ? &m->hdr_list_id : i == 3 && post ? &m->hdr_post : NULL;
		if (wr == MAILIMF_NO_ERROR && after && after->len &&
		    !mmap_string_append_len(s, after->p, after->len))
			wr = -1;
	}
	mailimf_fields_free(f);
	if (wr != MAILIMF_NO_ERROR || enc_add_unfolded(dst, s->str, s->len) < 0)
		return -1;
	return skel_fill(dst, &m->skel, &m->qp_text, &m->qp_html);
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
	int unsub = 0;
	struct mailimf_fields *f = headers(m, &b, &unsub);
	if (!f)
		return oom(err, errlen);
	/* Stage 6, signed: the message is assembled aside, as the signature
	 * header comes first and covers the finished bytes. */
	buf_reset(&m->tmp_msg);
	if (assemble(m, f, unsub, now, m->dkim ? &m->tmp_msg : out) < 0)
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
	p->nattach = p->attach_bytes = p->nimages = p->image_bytes = p->media_wire = 0;
	p->media = m->media;
	for (size_t k = 0; k < m->nmedia; k++) {
		int img = m->media[k].kind == MEDIA_IMAGE;
		*(img ? &p->nimages : &p->nattach) += 1;
		*(img ? &p->image_bytes : &p->attach_bytes) += m->media[k].size;
		p->media_wire += m->media[k].body.len;
	}
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
	for (size_t i = 0; m->hdr && i < m->cfg->n_headers; i++)
		tmpl_free(m->hdr[i]);
	for (size_t i = 0; m->tmp_hdr && i < m->cfg->n_headers; i++)
		buf_free(&m->tmp_hdr[i]);
	free(m->hdr);
	free(m->tmp_hdr);
	for (size_t i = 0; i < m->nmedia; i++)
		media_free(&m->media[i]);
	free(m->media);
	free(m->names);
	free(m->vals);
	struct buf *bufs[] = {&m->tmp_url, &m->tmp_mailto, &m->tmp_subj, &m->tmp_text,
			      &m->tmp_html, &m->tmp_rp, &m->qp_text, &m->qp_html, &m->tmp_msg,
			      &m->tmp_line, &m->tmp_val, &m->hdr_from, &m->hdr_list_id,
			      &m->hdr_post, &m->hdr_date};
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		buf_free(bufs[i]);
	qp_layout_free(m->qp_text_l);
	qp_layout_free(m->qp_html_l);
	free(m->reply_name);
	free(m->reply_addr);
	dkimsig_close(m->dkim);
	token_key_free(m->key);
	skel_free(&m->skel);
	if (m->tmp_mm)
		mmap_string_free(m->tmp_mm);
	free(m);
}

int msg_exitcode(int rc)
{
	return rc == MSG_OK ? EX_OK : rc == MSG_NOFILE ? EX_NOINPUT : EX_DATAERR;
}
