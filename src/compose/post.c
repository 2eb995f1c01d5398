#include "compose/post.h"
#include "util/buf.h"
#include "compose/text.h"
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
 * table cell. So each field is swapped for an alphanumeric token that every
 * renderer passes through untouched, and swapped back after rendering. */
#define TOKEN_PREFIX "HrLdMf"

struct fields {
	char **expr; /* "{{...}}" as written */
	size_t n, cap;
};

static void fields_free(struct fields *f)
{
	for (size_t i = 0; i < f->n; i++)
		free(f->expr[i]);
	free(f->expr);
}

static int protect_fields(const char *md, struct fields *f, struct buf *out)
{
	const char *p = md;
	for (;;) {
		const char *o = strstr(p, "{{");
		const char *c = o ? strstr(o + 2, "}}") : NULL;
		const char *nl = o ? memchr(o, '\n', c ? (size_t)(c - o) : 0) : NULL;
		if (!o || !c || nl) {
			/* An unclosed or multi-line "{{" is left as text; the
			 * template compiler reports it with its line. */
			if (!o)
				return buf_adds(out, p);
			if (buf_add(out, p, (size_t)(o - p) + 2) < 0)
				return -1;
			p = o + 2;
			continue;
		}
		if (f->n == f->cap) {
			size_t nc = f->cap ? f->cap * 2 : 16;
			char **ne = realloc(f->expr, nc * sizeof *ne);
			if (!ne)
				return -1;
			f->expr = ne;
			f->cap = nc;
		}
		f->expr[f->n] = xstrndup(o, (size_t)(c + 2 - o));
		if (!f->expr[f->n])
			return -1;
		if (buf_add(out, p, (size_t)(o - p)) < 0 ||
		    buf_printf(out, TOKEN_PREFIX "%zuX", f->n) < 0)
			return -1;
		f->n++;
		p = c + 2;
	}
}

static char *restore_fields(const char *s, const struct fields *f)
{
	struct buf b = {0};
	const char *p = s;
	const char *t;
	while ((t = strstr(p, TOKEN_PREFIX))) {
		char *end;
		unsigned long i = strtoul(t + strlen(TOKEN_PREFIX), &end, 10);
		if (end == t + strlen(TOKEN_PREFIX) || *end != 'X' || i >= f->n) {
			if (buf_add(&b, p, (size_t)(t - p) + 1) < 0)
				goto oom;
			p = t + 1;
			continue;
		}
		if (buf_add(&b, p, (size_t)(t - p)) < 0 ||
		    buf_adds(&b, f->expr[i]) < 0)
			goto oom;
		p = end + 1;
	}
	if (buf_adds(&b, p) < 0)
		goto oom;
	return buf_detach(&b);
oom:
	buf_free(&b);
	return NULL;
}

int post_parse_date(const char *s, time_t *out)
{
	struct tm tm = {0};
	int n = 0, y, mo, d, h = 0, mi = 0, sec = 0;
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
		if (*r)
			return -1;
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
	time_t t = mktime(&tm);
	if (t == (time_t)-1 || tm.tm_mday != d)
		return -1;
	*out = t;
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
	if (!slot)
		return -1;
	free(*slot);
	*slot = val;
	return 0;
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
		if (set_key(p, key, strlen(key), val) < 0) {
			set_err(err, errlen, POST_BAD,
				"%s:%d: unknown front matter key \"%s\" (expected subject, date, preheader, slug)",
				name, line, key);
			free(key);
			free(val);
			return POST_BAD;
		}
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
 * under it, its caption: the paragraph that follows when it is all
 * emphasis (the usual "*Photo: ...*" line), else the image's title. The
 * cells carry class="figure" / class="caption" for the template to style.
 * Custom blocks print their markup even with raw HTML off; the caption's
 * text stays a child node, so it is escaped as usual. */
static const char fig_open[] =
	"<table role=\"presentation\" class=\"figure\" width=\"100%\" cellpadding=\"0\" "
	"cellspacing=\"0\" border=\"0\" style=\"width:100%; margin:0 0 20px;\">\n"
	"<tr><td class=\"figure-image\" align=\"center\">";
static const char cap_open[] =
	"<tr><td class=\"caption\" align=\"center\" style=\"padding:8px 8px 0; "
	"text-align:center;\">";

static int only_child_is(cmark_node *n, cmark_node_type t)
{
	cmark_node *c = cmark_node_first_child(n);
	return c && !cmark_node_next(c) && cmark_node_get_type(c) == t;
}

/* Turns para (a lone image) into a figure; *last: the last block it put
 * in the document, to go on from. */
static int figure(cmark_node *para, cmark_node **last)
{
	cmark_node *img = cmark_node_first_child(para);
	cmark_node *next = cmark_node_next(para);
	cmark_node *cap = NULL;
	const char *title = cmark_node_get_title(img);
	if (next && cmark_node_get_type(next) == CMARK_NODE_PARAGRAPH &&
	    only_child_is(next, CMARK_NODE_EMPH)) {
		cap = cmark_node_first_child(next);
	} else {
		next = NULL;
		if (title && *title &&
		    (!(cap = cmark_node_new(CMARK_NODE_TEXT)) || !cmark_node_set_literal(cap, title))) {
			if (cap)
				cmark_node_free(cap);
			return -1;
		}
	}
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
		if (cap && !next)
			cmark_node_free(cap); /* a title node of our own */
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
	cmark_node_free(para);
	if (next)
		cmark_node_free(next);
	return 0;
}

/* Top-level lone images only: inside a list or a quote a table would
 * break the flow. */
static int figures(cmark_node *doc)
{
	for (cmark_node *n = cmark_node_first_child(doc); n; n = cmark_node_next(n)) {
		if (cmark_node_get_type(n) == CMARK_NODE_PARAGRAPH &&
		    only_child_is(n, CMARK_NODE_IMAGE) && figure(n, &n) < 0)
			return -1;
	}
	return 0;
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

	if (protect_fields(p->markdown, &f, &md) < 0)
		goto oom;
	if (!(ps = new_parser()))
		goto oom;
	cmark_parser_feed(ps, buf_cstr(&md), md.len);
	if (!(doc = cmark_parser_finish(ps)))
		goto oom;
	/* Text first: figures() reshapes the tree for the HTML only. */
	if (text_render(doc, width, &text, err, errlen) < 0)
		goto out;
	p->text_width = width;
	if (figures(doc) < 0)
		goto oom;
	/* With unsafe_html the raw HTML is kept, but the tagfilter extension
	 * attached above still escapes <script>, <iframe>, <style>, ... */
	html = cmark_render_html(doc, CMARK_OPT_DEFAULT | CMARK_OPT_SMART |
				 (flags & POST_UNSAFE_HTML ? CMARK_OPT_UNSAFE : 0),
				 cmark_parser_get_syntax_extensions(ps));
	if (!html)
		goto oom;
	if (!(p->html = restore_fields(html, &f)) ||
	    !(p->text = restore_fields(text, &f)))
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
			       "%s: date \"%s\" is not YYYY-MM-DD HH:MM", name,
			       p->date);
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
	free(p->markdown);
	free(p->html);
	free(p->text);
	memset(p, 0, sizeof *p);
}

int post_exitcode(int rc)
{
	return rc == POST_OK ? EX_OK : rc == POST_NOFILE ? EX_NOINPUT : EX_DATAERR;
}
