#include "compose/template.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A compiled template is a flat list of pieces: literal text or a field
 * reference (index + optional fallback), all pointing into one copy of the
 * source so rendering does no parsing and no allocation beyond the output. */
struct piece {
	size_t off, len;       /* literal text, or the fallback */
	long field;            /* -1 for literal text */
	int has_fallback;
};

struct tmpl {
	char *src;
	struct piece *pieces;
	size_t n;
	unsigned char *used;   /* one flag per field of the table */
	size_t nfields;
};

static int add_piece(struct tmpl *t, size_t *cap, struct piece p)
{
	if (t->n == *cap) {
		size_t nc = *cap ? *cap * 2 : 16;
		struct piece *np = realloc(t->pieces, nc * sizeof *np);
		if (!np)
			return -1;
		t->pieces = np;
		*cap = nc;
	}
	t->pieces[t->n++] = p;
	return 0;
}

static int line_of(const char *src, size_t off, int first_line)
{
	int line = first_line;
	for (size_t i = 0; i < off; i++)
		if (src[i] == '\n')
			line++;
	return line;
}

static void trim(const char **s, size_t *len)
{
	while (*len && isspace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

static long find_field(const struct tmpl_names *names, const char *s,
		       size_t len)
{
	for (size_t i = 0; i < names->n; i++)
		if (strlen(names->names[i]) == len &&
		    strncasecmp(names->names[i], s, len) == 0)
			return (long)i;
	return -1;
}

int tmpl_compile(struct tmpl **out, const char *src, size_t len,
		 const struct tmpl_names *names, const char *srcname,
		 int first_line, char *err, size_t errlen)
{
	struct tmpl *t = calloc(1, sizeof *t);
	size_t cap = 0;
	if (!t)
		return set_err(err, errlen, -1, "out of memory");
	t->src = xstrndup(src, len);
	t->nfields = names->n;
	t->used = calloc(names->n ? names->n : 1, 1);
	if (!t->src || !t->used)
		goto oom;

	size_t i = 0, lit = 0;
	while (i < len) {
		const char *open = memmem(src + i, len - i, "{{", 2);
		if (!open)
			break;
		size_t o = (size_t)(open - src);
		const char *close = memmem(src + o + 2, len - o - 2, "}}", 2);
		if (!close) {
			set_err(err, errlen, -1,
				"%s:%d: unclosed merge field (\"{{\" without \"}}\")",
				srcname, line_of(src, o, first_line));
			goto fail;
		}
		size_t c = (size_t)(close - src);
		const char *expr = src + o + 2;
		size_t elen = c - o - 2;
		const char *bar = memchr(expr, '|', elen);
		const char *name = expr;
		size_t nlen = bar ? (size_t)(bar - expr) : elen;
		trim(&name, &nlen);
		if (nlen == 0 || memchr(name, '\n', nlen) || memchr(name, '{', nlen)) {
			set_err(err, errlen, -1, "%s:%d: empty or malformed merge field \"{{%.*s}}\"",
				srcname, line_of(src, o, first_line),
				(int)(elen > 60 ? 60 : elen), expr);
			goto fail;
		}
		long f = find_field(names, name, nlen);
		if (f < 0) {
			set_err(err, errlen, -1,
				"%s:%d: unknown merge field \"%.*s\" (not a list column nor a built-in field)",
				srcname, line_of(src, o, first_line),
				(int)(nlen > 60 ? 60 : nlen), name);
			goto fail;
		}
		if (o > lit &&
		    add_piece(t, &cap, (struct piece){lit, o - lit, -1, 0}) < 0)
			goto oom;
		struct piece p = {0, 0, f, 0};
		if (bar) {
			const char *fb = bar + 1;
			size_t fblen = (size_t)(expr + elen - fb);
			trim(&fb, &fblen);
			p.off = (size_t)(fb - src);
			p.len = fblen;
			p.has_fallback = 1;
		}
		if (add_piece(t, &cap, p) < 0)
			goto oom;
		t->used[f] = 1;
		i = lit = c + 2;
	}
	if (lit < len &&
	    add_piece(t, &cap, (struct piece){lit, len - lit, -1, 0}) < 0)
		goto oom;
	*out = t;
	return 0;
oom:
	set_err(err, errlen, -1, "out of memory");
fail:
	tmpl_free(t);
	return -1;
}

static const char hexd[] = "0123456789ABCDEF";

int tmpl_escape(struct buf *out, const char *s, size_t len, enum tmpl_esc esc)
{
	if (esc == TMPL_RAW)
		return buf_add(out, s, len);
	if (buf_reserve(out, len) < 0)
		return -1;
	size_t run = 0; /* bytes copied as they are, flushed in one go */
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		const char *rep = NULL;
		char pct[4];
		if (esc == TMPL_HTML) {
			switch (ch) {
			case '&': rep = "&amp;"; break;
			case '<': rep = "&lt;"; break;
			case '>': rep = "&gt;"; break;
			case '"': rep = "&quot;"; break;
			case '\'': rep = "&#39;"; break;
			}
		} else if (!(isalnum(ch) || ch == '-' || ch == '.' || ch == '_' ||
			     ch == '~')) {
			pct[0] = '%';
			pct[1] = hexd[ch >> 4];
			pct[2] = hexd[ch & 15];
			pct[3] = '\0';
			rep = pct;
		}
		if (!rep)
			continue;
		if (buf_add(out, s + run, i - run) < 0 || buf_adds(out, rep) < 0)
			return -1;
		run = i + 1;
	}
	return buf_add(out, s + run, len - run);
}

int tmpl_render(const struct tmpl *t, const char *const *values,
		enum tmpl_esc esc, struct buf *out)
{
	return tmpl_render_from(t, 0, 0, values, esc, out);
}

int tmpl_render_from(const struct tmpl *t, size_t first, size_t skip,
		     const char *const *values, enum tmpl_esc esc, struct buf *out)
{
	for (size_t i = first; i < t->n; i++) {
		const struct piece *p = &t->pieces[i];
		if (p->field < 0) {
			size_t k = i == first && skip < p->len ? skip : 0;
			if (buf_add(out, t->src + p->off + k, p->len - k) < 0)
				return -1;
			continue;
		}
		const char *v = values[p->field];
		if (v && *v) {
			if (tmpl_escape(out, v, strlen(v), esc) < 0)
				return -1;
		} else if (p->has_fallback) {
			/* The fallback is author text, but it still goes through
			 * the same escaping so `{{x|Tom & Jerry}}` is valid HTML. */
			if (tmpl_escape(out, t->src + p->off, p->len, esc) < 0)
				return -1;
		}
	}
	return 0;
}

size_t tmpl_npieces(const struct tmpl *t)
{
	return t->n;
}

void tmpl_get_piece(const struct tmpl *t, size_t i, struct tmpl_piece *out)
{
	const struct piece *p = &t->pieces[i];
	out->text = t->src + p->off;
	out->len = p->len;
	out->field = p->field;
	out->has_fallback = p->has_fallback;
}

int tmpl_uses(const struct tmpl *t, size_t idx)
{
	return idx < t->nfields && t->used[idx];
}

void tmpl_free(struct tmpl *t)
{
	if (!t)
		return;
	free(t->src);
	free(t->pieces);
	free(t->used);
	free(t);
}
