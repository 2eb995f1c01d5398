#include "compose/post.h"
#include "util/buf.h"
#include "compose/text.h"
#include "input/segment.h"
#include "compose/template.h"
#include "compose/figure.h"
#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

/* Merge fields must reach the template module exactly as written, but
 * cmark would percent-encode "{{" in a link target and split "|" in a
 * table cell. So each "{{" the template scanner finds (a field, an escape,
 * a broken one) is swapped for an alphanumeric token that every renderer
 * passes through untouched, and swapped back after rendering: as written
 * where it is to merge, escaped where it is text (in code, or broken). */
#define TOKEN_PREFIX "HrLdMf"

struct field {
	char *expr;         /* "{{...}}", "\{{" or "{{", as written */
	int line;
	enum tmpl_kind kind;
	int in_code;        /* inside a code span or block */
};

struct fields {
	struct field *f;
	size_t n, cap;
};

static void fields_free(struct fields *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->f[i].expr);
	free(f->f);
}

BUF_MUST static int protect_fields(const char *md, int line0, struct fields *f, struct buf *out)
{
	struct tmpl_scan s;
	struct tmpl_field tf;
	size_t last = 0, len = strlen(md);
	tmpl_scan_init(&s, md, len, line0);
	while (tmpl_scan_next(&s, &tf)) {
		if (array_grow(&f->f, &f->cap, f->n, sizeof *f->f, 16) < 0)
			return -1;
		struct field *x = &f->f[f->n];
		*x = (struct field){xstrndup(md + tf.off, tf.len), tf.line, tf.kind, 0};
		if (!x->expr || buf_add(out, md + last, tf.off - last) < 0 ||
		    buf_printf(out, TOKEN_PREFIX "%zuX", f->n) < 0) {
			free(x->expr);
			return -1;
		}
		f->n++;
		last = tf.off + tf.len;
	}
	return buf_add(out, md + last, len - last);
}

/* The token at t, or -1. */
static long token_at(const char *t, const struct fields *f, const char **end)
{
	if (strncmp(t, TOKEN_PREFIX, strlen(TOKEN_PREFIX)))
		return -1;
	char *e;
	unsigned long i = strtoul(t + strlen(TOKEN_PREFIX), &e, 10);
	if (e == t + strlen(TOKEN_PREFIX) || *e != 'X' || i >= f->n)
		return -1;
	*end = e + 1;
	return (long)i;
}

/* Code shows "{{" as it is (unless merge_code): its tokens are marked. */
static void mark_code(cmark_node *doc, struct fields *f)
{
	cmark_iter *it = cmark_iter_new(doc);
	cmark_event_type ev;
	while (it && (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		cmark_node *n = cmark_iter_get_node(it);
		cmark_node_type t = cmark_node_get_type(n);
		const char *lit = cmark_node_get_literal(n), *end;
		if (ev != CMARK_EVENT_ENTER || !lit || (t != CMARK_NODE_CODE && t != CMARK_NODE_CODE_BLOCK))
			continue;
		for (const char *p = strstr(lit, TOKEN_PREFIX); p; p = strstr(p + 1, TOKEN_PREFIX)) {
			long i = token_at(p, f, &end);
			if (i >= 0)
				f->f[i].in_code = 1;
		}
	}
	if (it)
		cmark_iter_free(it);
}

/* Where a field merges: outside code, or anywhere with merge_code. */
static int merges(const struct field *x, int flags)
{
	return !x->in_code || (flags & POST_MERGE_CODE);
}

/* s with every "{{" as the template's escape, "\{{". */
BUF_MUST static int add_escaped(struct buf *b, const char *s, size_t n)
{
	size_t run = 0;
	for (size_t i = 0; i + 1 < n; i++)
		if (s[i] == '{' && s[i + 1] == '{') {
			if (buf_add(b, s + run, i - run) < 0 || buf_adds(b, "\\{{") < 0)
				return -1;
			i++;
			run = i + 1;
		}
	return buf_add(b, s + run, n - run);
}

/* The rendering with its tokens swapped back. A "{{" that is no token came
 * from rendering (`\{\{`, "&#123;"): text, so escaped too. */
static char *restore_fields(const char *s, const struct fields *f, int flags)
{
	struct buf b = {0};
	const char *p = s, *end;
	for (const char *t = s; *t; t++) {
		long i = *t == *TOKEN_PREFIX ? token_at(t, f, &end) : -1;
		int raw = t[0] == '{' && t[1] == '{';
		if (i < 0 && !raw)
			continue;
		if (buf_add(&b, p, (size_t)(t - p)) < 0)
			goto oom;
		if (raw) {
			if (buf_adds(&b, "\\{{") < 0)
				goto oom;
			p = t + 2;
			t++;
			continue;
		}
		const struct field *x = &f->f[i];
		int as_written = merges(x, flags) && (x->kind == TMPL_FIELD || x->kind == TMPL_ESCAPE);
		if ((as_written ? buf_adds(&b, x->expr) : add_escaped(&b, x->expr, strlen(x->expr))) < 0)
			goto oom;
		p = end;
		t = end - 1;
	}
	if (buf_adds(&b, p) < 0)
		goto oom;
	return buf_detach(&b);
oom:
	buf_free(&b);
	return NULL;
}

/* What the template will read as a field (or fail on): kept with its line
 * so send, preview and check name the line of the post. */
static int keep_fields(struct post *p, const struct fields *f, int flags)
{
	for (size_t i = 0; i < f->n; i++) {
		const struct field *x = &f->f[i];
		if (!merges(x, flags) || x->kind == TMPL_ESCAPE)
			continue;
		if (array_grow(&p->fields, &p->fields_cap, p->nfields, sizeof *p->fields, 8) < 0 ||
		    !(p->fields[p->nfields].text = xstrdup(x->expr)))
			return -1;
		p->fields[p->nfields++].line = x->line;
	}
	return 0;
}

static int two_digits(const char *s, int *v)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	*v = (s[0] - '0') * 10 + (s[1] - '0');
	return 0;
}

/* "Z", "+HH:MM", "-HH:MM" or "+HHMM" after the time: *secs east of UTC. */
static int utc_offset(const char *r, long *secs)
{
	size_t n = strlen(r);
	int oh, om;
	if (n == 1 && (*r == 'Z' || *r == 'z')) {
		*secs = 0;
		return 0;
	}
	const char *mm = n == 6 && r[3] == ':' ? r + 4 : n == 5 ? r + 3 : NULL;
	if ((*r != '+' && *r != '-') || !mm || two_digits(r + 1, &oh) < 0 ||
	    two_digits(mm, &om) < 0 || oh > 23 || om > 59)
		return -1;
	*secs = (*r == '-' ? -1L : 1L) * (oh * 3600L + om * 60L);
	return 0;
}

int post_parse_date(const char *s, time_t *out)
{
	struct tm tm = {0};
	int n = 0, y, mo, d, h = 0, mi = 0, sec = 0, zoned = 0;
	long off = 0;
	char sep;
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
		return -1;
	const char *r = s + n;
	if (*r) {
		int m = 0;
		if (sscanf(r, "%c%2d:%2d%n", &sep, &h, &mi, &m) != 3 ||
		    (sep != ' ' && sep != 'T'))
			return -1;
		r += m;
		if (*r == ':') {
			if (sscanf(r, ":%2d%n", &sec, &m) != 1)
				return -1;
			r += m;
		}
		if (*r == ' ')
			r++;
		if (*r && utc_offset(r, &off) < 0)
			return -1;
		zoned = *r != '\0';
	}
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    sec > 60 || h < 0 || mi < 0 || sec < 0)
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	tm.tm_isdst = -1;
	/* Without an offset the date is the machine's local time (TZ), as
	 * cron reads its own times. */
	time_t t = zoned ? timegm(&tm) : mktime(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d)
		return -1;
	*out = t - off;
	return 0;
}

static char *slug_from_path(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	size_t n = strlen(base);
	if (n > 3 && strcmp(base + n - 3, ".md") == 0)
		n -= 3;
	else if (n > 9 && strcmp(base + n - 9, ".markdown") == 0)
		n -= 9;
	return xstrndup(base, n);
}

/* A slug names files in state_dir: keep it to a safe alphabet. */
static int slug_ok(const char *s)
{
	if (!*s || *s == '.')
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("-_.", *s))
			return 0;
	return 1;
}

static char *trimmed(const char *s, size_t len)
{
	while (len && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	return xstrndup(s, len);
}

static int set_key(struct post *p, const char *key, size_t klen, char *val)
{
	char **slot = NULL;
	if (klen == 7 && !strncmp(key, "subject", 7))
		slot = &p->subject;
	else if (klen == 4 && !strncmp(key, "date", 4))
		slot = &p->date;
	else if (klen == 9 && !strncmp(key, "preheader", 9))
		slot = &p->preheader;
	else if (klen == 4 && !strncmp(key, "slug", 4))
		slot = &p->slug;
	else if (klen == 8 && !strncmp(key, "audience", 8))
		slot = &p->audience;
	else if (klen == 11 && !strncmp(key, "attachments", 11))
		slot = &p->attachments;
	if (!slot)
		return -1;
	free(*slot);
	*slot = val;
	return 0;
}

int post_segment(const struct post *p, struct segment *sg, char *err, size_t errlen)
{
	if (!p->audience)
		return 0;
	char what[4200];
	snprintf(what, sizeof what, "%s:%d: audience", p->path, p->audience_line);
	return segment_add(sg, p->audience, what, err, errlen);
}

/* `audience:` is a segment (segment.h); its syntax is checked here, where
 * its line is known, and its columns when the list is read. */
static int audience_ok(struct post *p, int line, char *err, size_t errlen)
{
	struct segment sg = {0};
	p->audience_line = line;
	int rc = post_segment(p, &sg, err, errlen);
	segment_free(&sg);
	return rc;
}

/* Front matter: "---" on the first line, `key: value` lines, "---". */
static int front_matter(struct post *p, const char *name, const char *src,
			size_t len, size_t *body_off, char *err, size_t errlen)
{
	size_t i = 0;
	int line = 1;
	if (len >= 3 && !memcmp(src, "\xEF\xBB\xBF", 3))
		i = 3;
	if (len - i < 4 || memcmp(src + i, "---", 3) ||
	    (src[i + 3] != '\n' && src[i + 3] != '\r'))
		return set_err(err, errlen, POST_BAD,
			       "%s:1: expected front matter: a \"---\" line, then \"subject: ...\", then \"---\"",
			       name);
	const char *nl = memchr(src + i, '\n', len - i);
	if (!nl)
		return set_err(err, errlen, POST_BAD,
			       "%s:1: front matter is not closed by a \"---\" line", name);
	i = (size_t)(nl - src) + 1;
	for (;;) {
		line++;
		if (i >= len)
			return set_err(err, errlen, POST_BAD,
				       "%s:%d: front matter is not closed by a \"---\" line",
				       name, line - 1);
		const char *eol = memchr(src + i, '\n', len - i);
		size_t l = eol ? (size_t)(eol - (src + i)) : len - i;
		size_t next = eol ? i + l + 1 : len;
		const char *s = src + i;
		size_t sl = l;
		if (sl && s[sl - 1] == '\r')
			sl--;
		if (sl == 3 && !memcmp(s, "---", 3)) {
			*body_off = next;
			p->body_line = line + 1;
			return POST_OK;
		}
		size_t k = 0;
		while (k < sl && s[k] == ' ')
			k++;
		if (k == sl || s[k] == '#') { /* blank or comment */
			i = next;
			continue;
		}
		const char *colon = memchr(s, ':', sl);
		if (!colon)
			return set_err(err, errlen, POST_BAD,
				       "%s:%d: expected \"key: value\" in the front matter",
				       name, line);
		char *key = trimmed(s, (size_t)(colon - s));
		char *val = trimmed(colon + 1, sl - (size_t)(colon + 1 - s));
		if (!key || !val) {
			free(key);
			free(val);
			return set_err(err, errlen, POST_BAD, "out of memory");
		}
		/* Quotes are optional, as in YAML. */
		size_t vl = strlen(val);
		if (vl >= 2 && ((val[0] == '"' && val[vl - 1] == '"') ||
				(val[0] == '\'' && val[vl - 1] == '\''))) {
			memmove(val, val + 1, vl - 2);
			val[vl - 2] = '\0';
		}
		for (char *q = key; *q; q++)
			*q = (char)tolower((unsigned char)*q);
		if (!strcmp(key, "archive")) {
			int no = !strcasecmp(val, "false") || !strcasecmp(val, "no");
			if (!no && strcasecmp(val, "true") && strcasecmp(val, "yes")) {
				set_err(err, errlen, POST_BAD, "%s:%d: archive: expected true or false, "
					"found \"%s\"", name, line, val);
				free(key);
				free(val);
				return POST_BAD;
			}
			p->no_archive = no;
			free(val);
			free(key);
			i = next;
			continue;
		}
		if (set_key(p, key, strlen(key), val) < 0) {
			set_err(err, errlen, POST_BAD,
				"%s:%d: unknown front matter key \"%s\" (expected subject, date, preheader, "
				"slug, audience, attachments, archive)", name, line, key);
			free(key);
			free(val);
			return POST_BAD;
		}
		if (!strcmp(key, "attachments"))
			p->attachments_line = line;
		if (!strcmp(key, "audience") && audience_ok(p, line, err, errlen) < 0) {
			free(key);
			return POST_BAD;
		}
		if (!strcmp(key, "date"))
			p->date_line = line;
		if (!strcmp(key, "subject"))
			p->subject_line = line;
		if (!strcmp(key, "preheader"))
			p->preheader_line = line;
		free(key);
		i = next;
	}
}

static cmark_parser *new_parser(void)
{
	cmark_gfm_core_extensions_ensure_registered();
	/* CMARK_OPT_UNSAFE stays off unless the config says unsafe_html:
	 * raw HTML in a post is replaced by a comment, so a pasted <script>
	 * never reaches a reader. */
	cmark_parser *ps = cmark_parser_new(CMARK_OPT_DEFAULT | CMARK_OPT_SMART);
	if (!ps)
		return NULL;
	static const char *const exts[] = {"table", "strikethrough", "autolink",
					   "tagfilter"};
	for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
		cmark_syntax_extension *e = cmark_find_syntax_extension(exts[i]);
		if (e)
			cmark_parser_attach_syntax_extension(ps, e);
	}
	return ps;
}

/* A paragraph that is a single image becomes a figure: a one-column
 * table (the layout every mail client keeps) with the image centred and,
 * under it, its caption (figure.c says which text that is: the
 * emphasised line right below the image, blank line between or not),
 * else the image's title. The cells carry class="figure" /
 * class="caption" for the template to style. Custom blocks print their
 * markup even with raw HTML off; the caption's text stays a child node,
 * so it is escaped as usual. */
static const char fig_open[] =
	"<table role=\"presentation\" class=\"figure\" width=\"100%\" cellpadding=\"0\" "
	"cellspacing=\"0\" border=\"0\" style=\"width:100%; margin:0 0 20px;\">\n"
	"<tr><td class=\"figure-image\" align=\"center\">";
static const char cap_open[] =
	"<tr><td class=\"caption\" align=\"center\" style=\"padding:8px 8px 0; "
	"text-align:center;\">";

/* Turns para (kind: FIGURE_ALONE, _NEXT or _BELOW) into a figure; *last:
 * the last block it put in the document, to go on from. */
static int figure(cmark_node *para, enum figure_kind kind, cmark_node *cap,
		  cmark_node **last)
{
	cmark_node *img = cmark_node_first_child(para);
	cmark_node *next = kind == FIGURE_NEXT ? cmark_node_next(para) : NULL;
	const char *title = cmark_node_get_title(img);
	if (!cap && title && *title &&
	    (!(cap = cmark_node_new(CMARK_NODE_TEXT)) || !cmark_node_set_literal(cap, title))) {
		if (cap)
			cmark_node_free(cap);
		return -1;
	}
	int own_cap = cap && kind == FIGURE_ALONE; /* a title node of our own */
	cmark_node *fig = cmark_node_new(CMARK_NODE_CUSTOM_BLOCK);
	cmark_node *cb = cap ? cmark_node_new(CMARK_NODE_CUSTOM_BLOCK) : NULL;
	if (!fig || (cap && !cb) || !cmark_node_set_on_enter(fig, fig_open) ||
	    !cmark_node_set_on_exit(fig, cap ? "</td></tr>" : "</td></tr>\n</table>") ||
	    (cb && (!cmark_node_set_on_enter(cb, cap_open) ||
		    !cmark_node_set_on_exit(cb, "</td></tr>\n</table>")))) {
		if (fig)
			cmark_node_free(fig);
		if (cb)
			cmark_node_free(cb);
		if (own_cap)
			cmark_node_free(cap);
		return -1;
	}
	cmark_node_insert_before(para, fig);
	cmark_node_append_child(fig, img);
	*last = fig;
	if (cb) {
		cmark_node_insert_before(para, cb);
		cmark_node_append_child(cb, cap);
		*last = cb;
	}
	cmark_node_free(para); /* with the line break of FIGURE_BELOW */
	if (next)
		cmark_node_free(next);
	return 0;
}

/* Top-level images only: inside a list or a quote a table would break
 * the flow. */
static int figures(cmark_node *doc)
{
	for (cmark_node *n = cmark_node_first_child(doc); n; n = cmark_node_next(n)) {
		cmark_node *cap;
		enum figure_kind k = figure_of(n, &cap);
		if ((k == FIGURE_ALONE || k == FIGURE_NEXT || k == FIGURE_BELOW) &&
		    figure(n, k, cap, &n) < 0)
			return -1;
	}
	return 0;
}

/* A link the reader's mail client can follow on its own (https:, mailto:,
 * a merge field that makes one per reader...) is left alone; anything else
 * is a path to a file beside the post, to embed. */
static int is_local(const char *url)
{
	return url && *url && !strstr(url, "://") && strncmp(url, "//", 2) &&
	       strncasecmp(url, "data:", 5) && strncasecmp(url, "cid:", 4) &&
	       strncasecmp(url, "mailto:", 7) && !strstr(url, TOKEN_PREFIX);
}

/* Points each local image at the Content-ID of its embedded part; one
 * part per file however often the post shows it. */
static int local_images(struct post *p, cmark_node *doc)
{
	cmark_iter *it = cmark_iter_new(doc);
	if (!it)
		return -1;
	int rc = 0;
	for (cmark_event_type ev; !rc && (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE;) {
		cmark_node *n = cmark_iter_get_node(it);
		const char *url = cmark_node_get_url(n);
		if (ev != CMARK_EVENT_ENTER || cmark_node_get_type(n) != CMARK_NODE_IMAGE ||
		    !is_local(url))
			continue;
		size_t k = 0;
		while (k < p->nimages && strcmp(p->images[k].src, url))
			k++;
		if (k == p->nimages) {
			struct post_image *ni = realloc(p->images, (k + 1) * sizeof *ni);
			if (!ni) {
				rc = -1;
				break;
			}
			p->images = ni;
			ni[k].src = strdup(url);
			ni[k].line = p->body_line + cmark_node_get_start_line(n) - 1;
			if (asprintf(&ni[k].cid, "img%zu.%s@herald", k + 1, p->slug) < 0)
				ni[k].cid = NULL;
			p->nimages++;
			if (!ni[k].src || !ni[k].cid) {
				rc = -1;
				break;
			}
		}
		char cid[600];
		snprintf(cid, sizeof cid, "cid:%s", p->images[k].cid);
		if (!cmark_node_set_url(n, cid))
			rc = -1;
	}
	cmark_iter_free(it);
	return rc;
}

static int render(struct post *p, const char *name, int width, int flags,
		  char *err, size_t errlen)
{
	struct fields f = {0};
	struct buf md = {0};
	int rc = POST_BAD;
	cmark_parser *ps = NULL;
	cmark_node *doc = NULL;
	char *html = NULL, *text = NULL;

	if (protect_fields(p->markdown, p->body_line, &f, &md) < 0)
		goto oom;
	if (!(ps = new_parser()))
		goto oom;
	cmark_parser_feed(ps, buf_cstr(&md), md.len);
	if (!(doc = cmark_parser_finish(ps)))
		goto oom;
	mark_code(doc, &f);
	/* Text first: figures() reshapes the tree for the HTML only. */
	if (text_render(doc, width, &text, err, errlen) < 0)
		goto out;
	p->text_width = width;
	if (figures(doc) < 0 || local_images(p, doc) < 0)
		goto oom;
	/* With unsafe_html the raw HTML is kept, but the tagfilter extension
	 * attached above still escapes <script>, <iframe>, <style>, ... */
	html = cmark_render_html(doc, CMARK_OPT_DEFAULT | CMARK_OPT_SMART |
				 (flags & POST_UNSAFE_HTML ? CMARK_OPT_UNSAFE : 0),
				 cmark_parser_get_syntax_extensions(ps));
	if (!html)
		goto oom;
	if (!(p->html = restore_fields(html, &f, flags)) ||
	    !(p->text = restore_fields(text, &f, flags)) || keep_fields(p, &f, flags) < 0)
		goto oom;
	rc = POST_OK;
	goto out;
oom:
	set_err(err, errlen, POST_BAD, "%s: out of memory", name);
out:
	free(html);
	free(text);
	if (doc)
		cmark_node_free(doc);
	if (ps)
		cmark_parser_free(ps);
	buf_free(&md);
	fields_free(&f);
	return rc;
}

static int parse(struct post *p, const char *name, const char *src, size_t len,
		 int width, int flags, char *err, size_t errlen)
{
	size_t body = 0;
	memset(p, 0, sizeof *p);
	if (!(p->path = xstrdup(name)))
		return set_err(err, errlen, POST_BAD, "out of memory");
	if (memchr(src, '\0', len))
		return set_err(err, errlen, POST_BAD,
			       "%s: contains a NUL byte; expected UTF-8 text", name);
	int rc = front_matter(p, name, src, len, &body, err, errlen);
	if (rc != POST_OK)
		return rc;
	if (!p->subject || !*p->subject)
		return set_err(err, errlen, POST_BAD,
			       "%s: the front matter has no \"subject:\"", name);
	if (!p->preheader)
		p->preheader = xstrdup("");
	if (!p->date)
		p->date = xstrdup("");
	if (*p->date && post_parse_date(p->date, &p->when) < 0)
		return set_err(err, errlen, POST_BAD,
			       "%s:%d: date \"%s\" is not YYYY-MM-DD HH:MM (local time) nor "
			       "YYYY-MM-DD HH:MM +01:00 (that offset from UTC; Z for UTC)",
			       name, p->date_line, p->date);
	if (!p->slug)
		p->slug = slug_from_path(name);
	if (!p->slug || !p->preheader || !p->date)
		return set_err(err, errlen, POST_BAD, "out of memory");
	if (!slug_ok(p->slug))
		return set_err(err, errlen, POST_BAD,
			       "%s: slug \"%s\" may only hold letters, digits, '-', '_' and '.'",
			       name, p->slug);
	if (!(p->markdown = xstrndup(src + body, len - body)))
		return set_err(err, errlen, POST_BAD, "out of memory");
	return (flags & POST_NO_RENDER) ? POST_OK : render(p, name, width, flags, err, errlen);
}

/* A post that failed is left empty, so a caller that returns at once on
 * an error (as every command does) leaks nothing; post_free stays safe. */
int post_parse_opts(struct post *p, const char *name, const char *src,
		    size_t len, int width, int flags, char *err, size_t errlen)
{
	int rc = parse(p, name, src, len, width, flags, err, errlen);
	if (rc != POST_OK)
		post_free(p);
	return rc;
}

int post_parse(struct post *p, const char *name, const char *src, size_t len,
	       int width, char *err, size_t errlen)
{
	return post_parse_opts(p, name, src, len, width, 0, err, errlen);
}

int post_load(struct post *p, const char *path, int width, char *err,
	      size_t errlen)
{
	return post_load_opts(p, path, width, 0, err, errlen);
}

int post_load_opts(struct post *p, const char *path, int width, int flags,
		   char *err, size_t errlen)
{
	char *src;
	size_t len;
	memset(p, 0, sizeof *p);
	if (read_file(path, &src, &len) < 0)
		return set_err(err, errlen, POST_NOFILE, "%s: %s", path,
			       strerror(errno));
	int rc = post_parse_opts(p, path, src, len, width, flags, err, errlen);
	free(src);
	return rc;
}

void post_free(struct post *p)
{
	free(p->path);
	free(p->slug);
	free(p->subject);
	free(p->date);
	free(p->preheader);
	free(p->audience);
	free(p->attachments);
	free(p->markdown);
	free(p->html);
	free(p->text);
	for (size_t i = 0; i < p->nfields; i++)
		free(p->fields[i].text);
	free(p->fields);
	for (size_t i = 0; i < p->nimages; i++) {
		free(p->images[i].src);
		free(p->images[i].cid);
	}
	free(p->images);
	memset(p, 0, sizeof *p);
}

int post_exitcode(int rc)
{
	return rc == POST_OK ? EX_OK : rc == POST_NOFILE ? EX_NOINPUT : EX_DATAERR;
}

char *post_file(const struct post *p, const char *rel, size_t n)
{
	const char *slash = strrchr(p->path, '/');
	int dirlen = slash ? (int)(slash - p->path) + 1 : 0;
	char *path;
	if ((*rel == '/' ? asprintf(&path, "%.*s", (int)n, rel)
			 : asprintf(&path, "%.*s%.*s", dirlen, p->path, (int)n, rel)) < 0)
		return NULL;
	return path;
}

int post_relink_images(const struct post *p, const char *html, const char *const *urls,
		       struct buf *out)
{
	const char *at = html ? html : "";
	for (const char *hit; (hit = strstr(at, "cid:"));) {
		size_t k = 0;
		while (k < p->nimages && strncmp(hit + 4, p->images[k].cid, strlen(p->images[k].cid)))
			k++;
		if (buf_add(out, at, (size_t)(hit - at)) < 0)
			return -1;
		if (k == p->nimages) { /* a cid: of someone else's: text */
			if (buf_add(out, hit, 4) < 0)
				return -1;
			at = hit + 4;
			continue;
		}
		if (tmpl_escape(out, urls[k], strlen(urls[k]), TMPL_HTML) < 0)
			return -1;
		at = hit + 4 + strlen(p->images[k].cid);
	}
	return buf_adds(out, at);
}
