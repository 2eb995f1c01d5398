#include "compose/template.h"
#include <ctype.h>
#include <stdio.h>
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

static void trim(const char **s, size_t *len)
{
	while (*len && isspace((unsigned char)**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && isspace((unsigned char)(*s)[*len - 1]))
		(*len)--;
}

void tmpl_scan_init(struct tmpl_scan *s, const char *src, size_t len, int first_line)
{
	*s = (struct tmpl_scan){src, len, 0, first_line};
}

/* The one reader of "{{": the compiler, check's lint and the post's
 * renderer all go through here, so they agree on what is a field, on its
 * line and on what is wrong with it. A field closes on its own line. */
int tmpl_scan_next(struct tmpl_scan *s, struct tmpl_field *f)
{
	const char *src = s->src;
	for (; s->pos < s->len; s->pos++) {
		size_t i = s->pos;
		if (src[i] == '\n') {
			s->line++;
			continue;
		}
		int esc = src[i] == '\\' && i + 2 < s->len && src[i + 1] == '{' && src[i + 2] == '{';
		if (!esc && !(src[i] == '{' && i + 1 < s->len && src[i + 1] == '{'))
			continue;
		/* In a run of braces the last two open the field, so "{" that
		 * rendering puts before one ("{*{{name}}*" in the text part)
		 * stays text. */
		if (!esc && i + 2 < s->len && src[i + 2] == '{')
			continue;
		memset(f, 0, sizeof *f);
		f->off = i;
		f->line = s->line;
		if (esc) {
			f->kind = TMPL_ESCAPE;
			f->len = 3;
			s->pos = i + 3;
			return 1;
		}
		const char *eol = memchr(src + i, '\n', s->len - i);
		size_t lim = eol ? (size_t)(eol - src) : s->len;
		const char *close = memmem(src + i + 2, lim - i - 2, "}}", 2);
		if (!close) {
			f->kind = TMPL_UNCLOSED;
			f->len = 2;
			s->pos = i + 2;
			return 1;
		}
		const char *expr = src + i + 2;
		size_t elen = (size_t)(close - expr);
		const char *bar = memchr(expr, '|', elen);
		f->name = expr;
		f->nlen = bar ? (size_t)(bar - expr) : elen;
		trim(&f->name, &f->nlen);
		if (bar) {
			f->fallback = bar + 1;
			f->fblen = (size_t)(expr + elen - f->fallback);
			trim(&f->fallback, &f->fblen);
			f->has_fallback = 1;
		}
		/* Any name but an empty one or one with "{" (a column may be
		 * called "first name"). */
		f->kind = f->nlen && !memchr(f->name, '{', f->nlen) ? TMPL_FIELD : TMPL_MALFORMED;
		f->len = (size_t)(close + 2 - (src + i));
		s->pos = i + f->len;
		return 1;
	}
	return 0;
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

/* Edit distance of two short names (case-insensitive), capped at 9. */
static int distance(const char *a, size_t al, const char *b)
{
	size_t bl = strlen(b);
	int row[34];
	if (al > 32 || bl > 32)
		return 9;
	for (size_t j = 0; j <= bl; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= al; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= bl; j++) {
			int up = row[j];
			int sub = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
			int best = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
			row[j] = sub < best ? sub : best;
			diag = up;
		}
	}
	return row[bl] > 9 ? 9 : row[bl];
}

/* The known name closest to a misspelt one, if any is close. */
static const char *closest(const struct tmpl_names *names, const char *name, size_t n)
{
	const char *best = NULL;
	int bd = 3;
	for (size_t i = 0; i < names->n; i++) {
		int d = distance(name, n, names->names[i]);
		if (d < bd) {
			bd = d;
			best = names->names[i];
		}
	}
	return best;
}

int tmpl_field_problem(const struct tmpl_field *f, const char *src,
		       const struct tmpl_names *names, long *index,
		       char *msg, size_t len)
{
	*index = -1;
	if (f->kind == TMPL_ESCAPE)
		return 0;
	if (f->kind == TMPL_UNCLOSED) {
		snprintf(msg, len, "\"{{\" without \"}}\" on the same line "
			 "(for a literal \"{{\", write \\{{)");
		return 1;
	}
	if (f->kind == TMPL_MALFORMED) {
		snprintf(msg, len, "malformed merge field \"%.*s\": expected {{name}} or "
			 "{{name|fallback}} (for a literal \"{{\", write \\{{)",
			 (int)(f->len > 64 ? 64 : f->len), src + f->off);
		return 1;
	}
	if ((*index = find_field(names, f->name, f->nlen)) >= 0)
		return 0;
	const char *near = closest(names, f->name, f->nlen);
	snprintf(msg, len, "unknown merge field \"%.*s\": no list column nor built-in field "
		 "has that name%s%s%s", (int)(f->nlen > 60 ? 60 : f->nlen), f->name,
		 near ? " (did you mean \"" : "", near ? near : "", near ? "\"?)" : "");
	return 1;
}

int tmpl_check(const char *src, size_t len, int first_line,
	       const struct tmpl_names *names, tmpl_visit_fn visit, void *arg)
{
	struct tmpl_scan s;
	struct tmpl_field f;
	char msg[400];
	int problems = 0;
	tmpl_scan_init(&s, src, len, first_line);
	while (tmpl_scan_next(&s, &f)) {
		long idx;
		int bad = tmpl_field_problem(&f, src, names, &idx, msg, sizeof msg);
		problems += bad;
		if (visit && visit(arg, &f, bad ? msg : NULL) < 0)
			return -1;
	}
	return problems;
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

	struct tmpl_scan s;
	struct tmpl_field f;
	size_t lit = 0;
	tmpl_scan_init(&s, src, len, first_line);
	while (tmpl_scan_next(&s, &f)) {
		long idx;
		char msg[400];
		if (tmpl_field_problem(&f, src, names, &idx, msg, sizeof msg)) {
			if (first_line > 0)
				set_err(err, errlen, -1, "%s:%d: %s", srcname, f.line, msg);
			else /* a one-line setting: its name says where */
				set_err(err, errlen, -1, "%s: %s", srcname, msg);
			goto fail;
		}
		if (f.off > lit &&
		    add_piece(t, &cap, (struct piece){lit, f.off - lit, -1, 0}) < 0)
			goto oom;
		struct piece p = {f.off + 1, 2, -1, 0}; /* an escape: its "{{" as text */
		if (f.kind == TMPL_FIELD) {
			p = (struct piece){0, 0, idx, f.has_fallback};
			if (f.has_fallback) {
				p.off = (size_t)(f.fallback - src);
				p.len = f.fblen;
			}
			t->used[idx] = 1;
		}
		if (add_piece(t, &cap, p) < 0)
			goto oom;
		lit = f.off + f.len;
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
			/* C0 controls but TAB, LF and CR, and DEL: XML 1.0 has
			 * no way to write them (the Atom feed would not parse)
			 * and HTML calls them errors. Dropped, here for every
			 * page, feed and HTML part. */
			default:
				if ((ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r') || ch == 0x7F)
					rep = "";
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
