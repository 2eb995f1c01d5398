/* text: plain-text renderer over the cmark-gfm AST.
 *
 * Every block renders into its own buffer of complete LF-terminated lines
 * as if it stood at column 0 with the width left to it; containers (list
 * items, block quotes, headings) then prefix those lines. So a prefix
 * always counts toward the width and nesting composes without any block
 * knowing where it sits. A final pass strips trailing blanks from every
 * line (prefixes such as "> " leave some on empty lines) and makes the
 * text end in exactly one LF.
 *
 * Inline content is first flattened into one string in which ' ' is a
 * place the line may break, NBSP_MARK a space it must not break at and
 * '\n' a hard line break; wrap() then fills lines greedily. Control
 * characters from the source are dropped, so the marks cannot collide
 * with content.
 *
 * Layout, chosen to read well in a mail client that shows the text part
 * in a proportional or monospace font alike:
 *   - heading 1: text, then a line of '=' as wide as the text;
 *     heading 2: the same with '-'; heading 3-6: "### Text" (as many '#'
 *     as the level), continuation lines aligned under the text;
 *   - "  * item" / "  3. item", numbers right-aligned so item texts line
 *     up; nested lists indent by the parent's text column plus two;
 *   - "> " per quote level; code blocks indented by four spaces, never
 *     wrapped; a thematic break is "* * *" centred in the width;
 *   - links "text [N]" with "[N] URL" lines at the end; a link whose text
 *     already is its target (autolinks, "mailto:" + address, the
 *     "http://" + text of GFM's www. autolinks) prints just that text;
 *   - tables: cells padded to the column's width (honouring right and
 *     centre alignment), separated by " | ", the header underlined with
 *     dashes that meet the separators as "-|-". Tables are never wrapped.
 *
 * A width <= 0 means "do not wrap". */
#include "compose/text.h"
#include "compose/figure.h"
#include "util/buf.h"
#include <cmark-gfm-core-extensions.h>
#include <unistr.h>
#include <uniwidth.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NBSP_MARK '\x01'
#define UNLIMITED (INT_MAX / 2)
#define REF_MAX_DIGITS 24

/* Inline flattening flags. */
enum {
	FL_REFS = 1,	/* number link targets ("text [N]") */
	FL_BREAKS = 2,	/* keep hard line breaks (else they become spaces) */
};

/* Containers (quotes, lists) and inlines (emphasis, links) nested deeper
 * than this are rendered flat, without recursion: see flat(). */
#define MAX_DEPTH 32
#define MAX_INLINE_DEPTH 128

struct ctx {
	const char **urls;	/* distinct link targets, owned by the AST */
	size_t nurls, urlcap;
	int failed;		/* sticky: an allocation failed somewhere */
	int depth, idepth;	/* container and inline nesting so far */
};

/* ---- display width ---------------------------------------------------- */

/* Columns of one code point, from libunistring's Unicode tables (East
 * Asian Width, combining marks, format characters): 0 for controls,
 * which the wrapped text never shows. */
static int cp_width(ucs4_t cp)
{
	int w = uc_width(cp, "UTF-8");
	return w < 0 ? 0 : w;
}

/* One code point of s: the bytes it takes (>= 1) and *cp, or UINT32_MAX
 * for a byte that does not start a well-formed sequence (overlong forms
 * and surrogates included), so it counts alone. */
static size_t utf8_next(const unsigned char *s, size_t len, uint32_t *cp)
{
	ucs4_t uc;
	int n = u8_mbtoucr(&uc, s, len);
	if (n <= 0) {
		*cp = UINT32_MAX;
		return 1;
	}
	*cp = uc;
	return (size_t)n;
}

/* The width of flattened text, where the no-break mark is a space. */
static size_t span_width(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t w = 0;

	for (size_t i = 0; i < len;) {
		uint32_t cp;

		i += utf8_next(p + i, len - i, &cp);
		if (cp == UINT32_MAX || cp == (unsigned char)NBSP_MARK)
			w++;
		else
			w += (size_t)cp_width(cp);
	}
	return w;
}

size_t text_width(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t w = 0;

	for (size_t i = 0; i < len;) {
		uint32_t cp;

		i += utf8_next(p + i, len - i, &cp);
		w += cp == UINT32_MAX ? 1 : (size_t)cp_width(cp);
	}
	return w;
}

/* ---- output helpers ----------------------------------------------------- */

/* Appends unless an earlier append failed; the flag is checked once at the
 * end, which keeps the renderers free of error plumbing. */
static void put(struct ctx *c, struct buf *b, const char *s, size_t n)
{
	if (!c->failed && buf_add(b, s, n) < 0)
		c->failed = 1;
}

static void put_str(struct ctx *c, struct buf *b, const char *s)
{
	put(c, b, s, strlen(s));
}

static void put_ch(struct ctx *c, struct buf *b, char ch)
{
	put(c, b, &ch, 1);
}

static void put_rep(struct ctx *c, struct buf *b, char ch, size_t n)
{
	while (n--)
		put_ch(c, b, ch);
}

/* Source text minus control characters; tabs and line ends become `sp`
 * like spaces do, unless keep_tabs (code blocks). */
static void put_clean(struct ctx *c, struct buf *b, const char *s, size_t n,
		      char sp, int keep_tabs)
{
	size_t run = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch != 0x7f && ch != ' ')
			continue;
		put(c, b, s + run, i - run);
		run = i + 1;
		if (ch == '\t' && keep_tabs)
			put_ch(c, b, '\t');
		else if (ch == ' ' || ch == '\t' || ch == '\n')
			put_ch(c, b, sp);
		/* '\r' and other controls have no place in mail text */
	}
	put(c, b, s + run, n - run);
}

/* Copies each line of src, which holds complete lines, behind a prefix. */
static void prefix_lines(struct ctx *c, const struct buf *src,
			 const char *first, const char *rest, struct buf *out)
{
	const char *p = src->p, *end;

	if (!src->len)
		return;
	end = src->p + src->len;

	for (int n = 0; p < end; n++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);

		put_str(c, out, n ? rest : first);
		put(c, out, p, len);
		p += len;
	}
}

static int narrow(int width, int by)
{
	return width - by > 1 ? width - by : 1;
}

/* ---- links ------------------------------------------------------------ */

/* The 1-based number of url, assigned on first sight; 0 on OOM. */
static size_t ref_number(struct ctx *c, const char *url)
{
	for (size_t i = 0; i < c->nurls; i++)
		if (!strcmp(c->urls[i], url))
			return i + 1;
	if (c->nurls == c->urlcap) {
		size_t cap = c->urlcap ? c->urlcap * 2 : 8;
		const char **u = realloc(c->urls, cap * sizeof *u);

		if (!u) {
			c->failed = 1;
			return 0;
		}
		c->urls = u;
		c->urlcap = cap;
	}
	c->urls[c->nurls++] = url;
	return c->nurls;
}

static int has_prefix_then(const char *url, const char *prefix,
			   const char *text, size_t len)
{
	size_t plen = strlen(prefix);

	return !strncmp(url, prefix, plen) && strlen(url + plen) == len &&
	       !memcmp(url + plen, text, len);
}

/* Whether a reader already sees where the link goes from its text. */
static int text_is_target(const char *text, size_t len, const char *url)
{
	return has_prefix_then(url, "", text, len) ||
	       has_prefix_then(url, "mailto:", text, len) ||
	       has_prefix_then(url, "http://", text, len) ||
	       has_prefix_then(url, "https://", text, len);
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\n' || ch == NBSP_MARK;
}

/* ---- inline flattening ------------------------------------------------ */

static void flatten(struct ctx *c, cmark_node *n, int width, int flags,
		    struct buf *out);

static void flat(struct ctx *c, cmark_node *root, int width, int blocks,
		 struct buf *out);

static void flatten_children(struct ctx *c, cmark_node *n, int width,
			     int flags, struct buf *out)
{
	if (c->idepth >= MAX_INLINE_DEPTH) {
		for (cmark_node *ch = cmark_node_first_child(n); ch;
		     ch = cmark_node_next(ch))
			flat(c, ch, width, 0, out);
		return;
	}
	c->idepth++;
	for (cmark_node *ch = cmark_node_first_child(n); ch;
	     ch = cmark_node_next(ch))
		flatten(c, ch, width, flags, out);
	c->idepth--;
}

/* The children of n flattened into *t, with [*start, *end) the part
 * left once blanks at both ends are set aside. */
static void flatten_trimmed(struct ctx *c, cmark_node *n, int width, int flags,
			    struct buf *t, size_t *start, size_t *end)
{
	flatten_children(c, n, width, flags, t);
	*start = 0;
	*end = t->len;
	while (*start < *end && is_blank(t->p[*start]))
		(*start)++;
	while (*end > *start && is_blank(t->p[*end - 1]))
		(*end)--;
}

static void flatten_link(struct ctx *c, cmark_node *n, int width, int flags,
			 struct buf *out)
{
	const char *url = cmark_node_get_url(n);
	struct buf t = { 0 };
	size_t start, end;

	if (!url)
		url = "";
	flatten_trimmed(c, n, width, flags, &t, &start, &end);

	if (start == end) {
		/* nothing to click on in text: the target is the text */
		put_clean(c, out, url, strlen(url), NBSP_MARK, 0);
	} else if (!*url || !(flags & FL_REFS) ||
		   text_is_target(t.p + start, end - start, url)) {
		put(c, out, t.p, t.len);
	} else {
		char ref[REF_MAX_DIGITS + 4];
		size_t num = ref_number(c, url);

		put(c, out, t.p, end);
		snprintf(ref, sizeof ref, "%c[%zu]", NBSP_MARK, num);
		put_str(c, out, ref);
		put(c, out, t.p + end, t.len - end);
	}
	buf_free(&t);
}

static void flatten_image(struct ctx *c, cmark_node *n, int width,
			  struct buf *out)
{
	struct buf t = { 0 };
	size_t start, end;

	/* alt text is a description: no references, no line breaks */
	flatten_trimmed(c, n, width, 0, &t, &start, &end);
	if (start == end) {
		put_str(c, out, "[image]");
	} else {
		put_str(c, out, "[image:");
		put_ch(c, out, NBSP_MARK);
		put(c, out, t.p + start, end - start);
		put_ch(c, out, ']');
	}
	buf_free(&t);
}

/* "<br>" is the one piece of inline HTML that carries meaning in text. */
static int is_br(const char *s)
{
	if (!s || strncasecmp(s, "<br", 3))
		return 0;
	s += 3;
	while (*s == ' ' || *s == '\t' || *s == '\n')
		s++;
	if (*s == '/')
		s++;
	return !strcmp(s, ">");
}

static void flatten(struct ctx *c, cmark_node *n, int width, int flags,
		    struct buf *out)
{
	const char *lit = cmark_node_get_literal(n);
	char hard = (flags & FL_BREAKS) ? '\n' : ' ';

	switch (cmark_node_get_type(n)) {
	case CMARK_NODE_TEXT:
		if (lit)
			put_clean(c, out, lit, strlen(lit), ' ', 0);
		break;
	case CMARK_NODE_CODE:
		/* Keep a code span on one line so it stays copyable, unless
		 * it could never fit anyway. */
		if (lit) {
			size_t len = strlen(lit);
			int fits = text_width(lit, len) <= (size_t)width;

			put_clean(c, out, lit, len, fits ? NBSP_MARK : ' ', 0);
		}
		break;
	case CMARK_NODE_SOFTBREAK:
		put_ch(c, out, ' ');
		break;
	case CMARK_NODE_LINEBREAK:
		put_ch(c, out, hard);
		break;
	case CMARK_NODE_HTML_INLINE:
		if (is_br(lit))
			put_ch(c, out, hard);
		break;
	case CMARK_NODE_LINK:
		flatten_link(c, n, width, flags, out);
		break;
	case CMARK_NODE_IMAGE:
		flatten_image(c, n, width, out);
		break;
	default:
		/* Struck text keeps its tildes: without them "moves to the
		 * library" and its correction would both read as current. */
		if (!strcmp(cmark_node_get_type_string(n), "strikethrough")) {
			put_str(c, out, "~~");
			flatten_children(c, n, width, flags, out);
			put_str(c, out, "~~");
			break;
		}
		/* emphasis, strong, other extensions: text only */
		flatten_children(c, n, width, flags, out);
		break;
	}
}

/* ---- wrapping ----------------------------------------------------------- */

/* Fills one hard-break-free stretch into lines of at most width columns;
 * a word wider than that gets a line of its own. */
static void wrap_segment(struct ctx *c, const char *s, size_t n, int width,
			 struct buf *out, size_t *maxw)
{
	size_t linew = 0, i = 0;
	int started = 0;

	while (i < n) {
		size_t j, w;

		while (i < n && s[i] == ' ')
			i++;
		if (i == n)
			break;
		for (j = i; j < n && s[j] != ' '; j++)
			;
		w = span_width(s + i, j - i);
		if (started && linew + 1 + w > (size_t)width) {
			put_ch(c, out, '\n');
			if (linew > *maxw)
				*maxw = linew;
			linew = 0;
			started = 0;
		}
		if (started) {
			put_ch(c, out, ' ');
			linew++;
		}
		for (size_t k = i; k < j; k++)
			put_ch(c, out, s[k] == NBSP_MARK ? ' ' : s[k]);
		linew += w;
		started = 1;
		i = j;
	}
	put_ch(c, out, '\n');
	if (linew > *maxw)
		*maxw = linew;
}

/* Wraps flattened inline text; returns the widest line's width. Text that
 * is blank throughout produces no lines at all. */
static size_t wrap(struct ctx *c, const char *s, size_t n, int width,
		   struct buf *out)
{
	size_t maxw = 0;

	while (n && is_blank(*s))
		s++, n--;
	while (n && is_blank(s[n - 1]))
		n--;
	while (n) {
		const char *nl = memchr(s, '\n', n);
		size_t len = nl ? (size_t)(nl - s) : n;

		wrap_segment(c, s, len, width, out, &maxw);
		if (!nl)
			break;
		s += len + 1;
		n -= len + 1;
	}
	return maxw;
}

int text_wrap_footer(struct buf *b, int width)
{
	const char *p = b->p ? b->p : "", *sig = NULL;
	if (width <= 0)
		return 0;
	for (const char *q = p; (q = strstr(q, "-- \n")); q++)
		if (q == p || q[-1] == '\n')
			sig = q;
	if (!sig)
		return 0;
	struct ctx c = {0};
	struct buf out = {0};
	size_t maxw = 0, start = (size_t)(sig - p) + 4;
	put(&c, &out, p, start);
	for (size_t i = start; i < b->len;) {
		const char *nl = memchr(p + i, '\n', b->len - i);
		size_t len = nl ? (size_t)(nl - (p + i)) : b->len - i;
		if (span_width(p + i, len) > (size_t)width)
			wrap_segment(&c, p + i, len, width, &out, &maxw);
		else {
			put(&c, &out, p + i, len);
			if (nl)
				put_ch(&c, &out, '\n');
		}
		i += len + (nl ? 1 : 0);
	}
	if (c.failed) {
		buf_free(&out);
		return -1;
	}
	buf_free(b);
	*b = out;
	return 0;
}

/* ---- blocks ------------------------------------------------------------- */

static void render_block(struct ctx *c, cmark_node *n, int width,
			 struct buf *out);

/* Past MAX_DEPTH nested containers (or MAX_INLINE_DEPTH inlines) the
 * subtree is rendered in one pass of cmark's iterator, without recursion
 * and without further prefixes: its text, one wrapped paragraph per leaf
 * block (blocks != 0), links numbered as usual. A hostile post of 10,000
 * nested quotes or list items then costs linear time and constant stack
 * instead of a stack overflow or cubic copying; no human nests that deep. */
static void flat(struct ctx *c, cmark_node *root, int width, int blocks,
		 struct buf *out)
{
	cmark_iter *it = cmark_iter_new(root);
	struct buf para = { 0 };
	struct buf *t = blocks ? &para : out;
	int any = 0;
	cmark_event_type ev;

	if (!it) {
		c->failed = 1;
		return;
	}
	while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		cmark_node *n = cmark_iter_get_node(it);
		cmark_node_type type = cmark_node_get_type(n);
		const char *lit = cmark_node_get_literal(n);
		int leaf = type == CMARK_NODE_CODE_BLOCK ||
			   type == CMARK_NODE_HTML_BLOCK ||
			   type == CMARK_NODE_THEMATIC_BREAK;

		if (ev == CMARK_EVENT_ENTER) {
			if ((type == CMARK_NODE_TEXT || type == CMARK_NODE_CODE ||
			     type == CMARK_NODE_CODE_BLOCK) && lit)
				put_clean(c, t, lit, strlen(lit), ' ', 0);
			else if (type == CMARK_NODE_SOFTBREAK ||
				 type == CMARK_NODE_LINEBREAK ||
				 (type == CMARK_NODE_HTML_INLINE && is_br(lit)))
				put_ch(c, t, ' ');
			else if (type == CMARK_NODE_IMAGE)
				put_str(c, t, "[image: ");
		} else if (type == CMARK_NODE_IMAGE) {
			put_ch(c, t, ']');
		} else if (type == CMARK_NODE_LINK) {
			const char *url = cmark_node_get_url(n);

			if (url && *url) {
				char ref[REF_MAX_DIGITS + 4];

				snprintf(ref, sizeof ref, "%c[%zu]", NBSP_MARK,
					 ref_number(c, url));
				put_str(c, t, ref);
			}
		}
		if (blocks && para.len &&
		    (cmark_node_get_type(n) & CMARK_NODE_TYPE_MASK) ==
			    CMARK_NODE_TYPE_BLOCK &&
		    (ev == CMARK_EVENT_EXIT || leaf)) {
			if (any)
				put_ch(c, out, '\n');
			wrap(c, para.p, para.len, width, out);
			buf_reset(&para);
			any = 1;
		}
	}
	cmark_iter_free(it);
	buf_free(&para);
}

/* Children of a container, one blank line between them unless tight.
 * Blocks that render to nothing (raw HTML) leave no gap behind. */
static void render_blocks(struct ctx *c, cmark_node *parent, int width,
			  int tight, struct buf *out)
{
	int first = 1;

	if (c->depth >= MAX_DEPTH) {
		flat(c, parent, width, 1, out);
		return;
	}
	c->depth++;
	for (cmark_node *ch = cmark_node_first_child(parent); ch;
	     ch = cmark_node_next(ch)) {
		struct buf t = { 0 };

		render_block(c, ch, width, &t);
		if (t.len) {
			if (!first && !tight)
				put_ch(c, out, '\n');
			put(c, out, t.p, t.len);
			first = 0;
		}
		buf_free(&t);
	}
	c->depth--;
}

static void render_paragraph(struct ctx *c, cmark_node *n, int width,
			     struct buf *out)
{
	struct buf t = { 0 };
	cmark_node *cap;

	if (figure_of(n, &cap) == FIGURE_BELOW) {
		/* The caption on a line of its own under the image, as the
		 * HTML part sets it (not run into the alt text). */
		flatten(c, cmark_node_first_child(n), width, FL_REFS | FL_BREAKS, &t);
		put_ch(c, &t, '\n');
		flatten(c, cap, width, FL_REFS | FL_BREAKS, &t);
	} else {
		flatten_children(c, n, width, FL_REFS | FL_BREAKS, &t);
	}
	wrap(c, t.p, t.len, width, out);
	buf_free(&t);
}

static void render_heading(struct ctx *c, cmark_node *n, int width,
			   struct buf *out)
{
	int level = cmark_node_get_heading_level(n);
	struct buf t = { 0 }, lines = { 0 };

	if (level < 1)
		level = 1;
	if (level > 6)
		level = 6;
	if (level <= 2) {
		size_t w;

		flatten_children(c, n, width, FL_REFS | FL_BREAKS, &t);
		w = wrap(c, t.p, t.len, width, out);
		if (w) {
			put_rep(c, out, level == 1 ? '=' : '-', w);
			put_ch(c, out, '\n');
		}
	} else {
		char first[8], rest[8];
		int sw = narrow(width, level + 1);

		memset(first, '#', (size_t)level);
		first[level] = ' ';
		first[level + 1] = '\0';
		memset(rest, ' ', (size_t)level + 1);
		rest[level + 1] = '\0';
		flatten_children(c, n, sw, FL_REFS | FL_BREAKS, &t);
		wrap(c, t.p, t.len, sw, &lines);
		prefix_lines(c, &lines, first, rest, out);
	}
	buf_free(&t);
	buf_free(&lines);
}

static void render_quote(struct ctx *c, cmark_node *n, int width,
			 struct buf *out)
{
	struct buf t = { 0 };

	render_blocks(c, n, narrow(width, 2), 0, &t);
	prefix_lines(c, &t, "> ", "> ", out);
	buf_free(&t);
}

static void render_list(struct ctx *c, cmark_node *n, int width,
			struct buf *out)
{
	int ordered = cmark_node_get_list_type(n) == CMARK_ORDERED_LIST;
	int paren = cmark_node_get_list_delim(n) == CMARK_PAREN_DELIM;
	int tight = cmark_node_get_list_tight(n);
	long long num = cmark_node_get_list_start(n);
	size_t items = 0, digits = 1, mw;
	char first[REF_MAX_DIGITS + 8], rest[REF_MAX_DIGITS + 8];

	for (cmark_node *it = cmark_node_first_child(n); it;
	     it = cmark_node_next(it))
		items++;
	if (ordered) {
		/* right-align the numbers so that the item texts line up */
		for (long long last = num + (long long)items - 1; last >= 10;
		     last /= 10)
			digits++;
		mw = digits + 2;
	} else {
		mw = 2;
	}
	memset(rest, ' ', mw + 2);
	rest[mw + 2] = '\0';

	for (cmark_node *it = cmark_node_first_child(n); it;
	     it = cmark_node_next(it), num++) {
		struct buf t = { 0 };

		if (ordered)
			snprintf(first, sizeof first, "  %*lld%c ", (int)digits,
				 num, paren ? ')' : '.');
		else
			snprintf(first, sizeof first, "  * ");
		if (it != cmark_node_first_child(n) && !tight)
			put_ch(c, out, '\n');
		render_blocks(c, it, narrow(width, (int)mw + 2), tight, &t);
		if (t.len) {
			prefix_lines(c, &t, first, rest, out);
		} else {
			put_str(c, out, first);
			put_ch(c, out, '\n');
		}
		buf_free(&t);
	}
}

static void render_code(struct ctx *c, cmark_node *n, struct buf *out)
{
	const char *p = cmark_node_get_literal(n);
	size_t len = p ? strlen(p) : 0;

	/* trailing blank lines carry nothing and would double the gap */
	while (len && p[len - 1] == '\n')
		len--;
	while (len) {
		const char *nl = memchr(p, '\n', len);
		size_t l = nl ? (size_t)(nl - p) : len;

		put_str(c, out, "    ");
		put_clean(c, out, p, l, ' ', 1);
		put_ch(c, out, '\n');
		if (!nl)
			break;
		p += l + 1;
		len -= l + 1;
	}
}

static void render_hr(struct ctx *c, int width, struct buf *out)
{
	if (width > 5 && width < UNLIMITED / 2)
		put_rep(c, out, ' ', (size_t)(width - 5) / 2);
	put_str(c, out, "* * *\n");
}

/* ---- tables ------------------------------------------------------------- */

/* A cell's text on one line, trimmed; *w gets its width. */
static void cell_text(struct ctx *c, cmark_node *cell, struct buf *t,
		      size_t *w)
{
	size_t start = 0, end;

	buf_reset(t);
	flatten_children(c, cell, UNLIMITED, FL_REFS, t);
	for (size_t i = 0; i < t->len; i++)
		if (t->p[i] == NBSP_MARK)
			t->p[i] = ' ';
	end = t->len;
	while (start < end && t->p[start] == ' ')
		start++;
	while (end > start && t->p[end - 1] == ' ')
		end--;
	if (start)
		memmove(t->p, t->p + start, end - start);
	t->len = end - start;
	*w = text_width(t->p, t->len);
}

static void table_row(struct ctx *c, cmark_node *row, const size_t *widths,
		      size_t ncols, const uint8_t *align, struct buf *out)
{
	cmark_node *cell = cmark_node_first_child(row);
	struct buf t = { 0 };

	for (size_t k = 0; k < ncols; k++) {
		size_t w = 0, pad, left;

		if (cell) {
			cell_text(c, cell, &t, &w);
			cell = cmark_node_next(cell);
		} else {
			buf_reset(&t);
		}
		pad = widths[k] - w;
		left = 0;
		if (align && align[k] == 'r')
			left = pad;
		else if (align && align[k] == 'c')
			left = pad / 2;
		if (k)
			put_str(c, out, " | ");
		put_rep(c, out, ' ', left);
		put(c, out, t.p, t.len);
		put_rep(c, out, ' ', pad - left);
	}
	put_ch(c, out, '\n');
	buf_free(&t);
}

static void render_table(struct ctx *c, cmark_node *n, struct buf *out)
{
	size_t ncols = cmark_gfm_extensions_get_table_columns(n);
	uint8_t *align = cmark_gfm_extensions_get_table_alignments(n);
	size_t *widths;
	struct buf t = { 0 };

	for (cmark_node *row = cmark_node_first_child(n); row;
	     row = cmark_node_next(row)) {
		size_t k = 0;

		for (cmark_node *cell = cmark_node_first_child(row); cell;
		     cell = cmark_node_next(cell))
			k++;
		if (k > ncols) {
			ncols = k;
			align = NULL;	/* only covers the declared columns */
		}
	}
	if (!ncols)
		return;
	widths = calloc(ncols, sizeof *widths);
	if (!widths) {
		c->failed = 1;
		return;
	}
	/* First pass measures; it also numbers the links in reading order,
	 * so the second pass finds the same numbers. */
	for (cmark_node *row = cmark_node_first_child(n); row;
	     row = cmark_node_next(row)) {
		size_t k = 0;

		for (cmark_node *cell = cmark_node_first_child(row); cell;
		     cell = cmark_node_next(cell), k++) {
			size_t w;

			cell_text(c, cell, &t, &w);
			if (w > widths[k])
				widths[k] = w;
		}
	}
	buf_free(&t);
	for (size_t k = 0; k < ncols; k++)
		if (!widths[k])
			widths[k] = 1;

	for (cmark_node *row = cmark_node_first_child(n); row;
	     row = cmark_node_next(row)) {
		table_row(c, row, widths, ncols, align, out);
		if (!cmark_gfm_extensions_get_table_row_is_header(row))
			continue;
		for (size_t k = 0; k < ncols; k++) {
			if (k)
				put_str(c, out, "-|-");
			put_rep(c, out, '-', widths[k]);
		}
		put_ch(c, out, '\n');
	}
	free(widths);
}

/* ---- dispatch ----------------------------------------------------------- */

static void render_block(struct ctx *c, cmark_node *n, int width,
			 struct buf *out)
{
	const char *type;

	switch (cmark_node_get_type(n)) {
	case CMARK_NODE_PARAGRAPH:
		render_paragraph(c, n, width, out);
		return;
	case CMARK_NODE_HEADING:
		render_heading(c, n, width, out);
		return;
	case CMARK_NODE_BLOCK_QUOTE:
		render_quote(c, n, width, out);
		return;
	case CMARK_NODE_LIST:
		render_list(c, n, width, out);
		return;
	case CMARK_NODE_CODE_BLOCK:
		render_code(c, n, out);
		return;
	case CMARK_NODE_THEMATIC_BREAK:
		render_hr(c, width, out);
		return;
	case CMARK_NODE_HTML_BLOCK:
		return;
	default:
		break;
	}
	type = cmark_node_get_type_string(n);
	if (type && !strcmp(type, "table"))
		render_table(c, n, out);
	else if (cmark_node_first_child(n))
		render_blocks(c, n, width, 0, out);
}

/* Trailing blanks off every line, no blank lines at the end, one LF. */
static void finish(struct ctx *c, const struct buf *in, struct buf *out)
{
	const char *p = in->p, *end = in->len ? in->p + in->len : p;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
		size_t keep = len;

		while (keep && (p[keep - 1] == ' ' || p[keep - 1] == '\t'))
			keep--;
		put(c, out, p, keep);
		put_ch(c, out, '\n');
		p += nl ? len + 1 : len;
	}
	while (out->len > 1 && out->p[out->len - 1] == '\n' &&
	       out->p[out->len - 2] == '\n')
		out->len--;
	if (!out->len)
		put_ch(c, out, '\n');
}

int text_render(cmark_node *doc, int width, char **out, char *err,
		size_t errlen)
{
	struct ctx c = { 0 };
	struct buf body = { 0 }, res = { 0 };

	if (!doc || !out)
		return set_err(err, errlen, -1, "text: nothing to render");
	*out = NULL;
	if (width <= 0 || width > UNLIMITED)
		width = UNLIMITED;

	render_block(&c, doc, width, &body);
	if (c.nurls) {
		put_ch(&c, &body, '\n');
		for (size_t i = 0; i < c.nurls; i++) {
			char num[REF_MAX_DIGITS + 4];

			snprintf(num, sizeof num, "[%zu] ", i + 1);
			put_str(&c, &body, num);
			put_clean(&c, &body, c.urls[i], strlen(c.urls[i]),
				  ' ', 0);
			put_ch(&c, &body, '\n');
		}
	}
	finish(&c, &body, &res);
	buf_free(&body);
	free(c.urls);
	if (!c.failed)
		*out = buf_detach(&res);
	if (c.failed || !*out) {
		buf_free(&res);
		return set_err(err, errlen, -1, "text: out of memory");
	}
	return 0;
}
