/* Segments (see segment.h). Hand-written: a rule is a column, an
 * operator and a few values, nothing a parsing library would help with. */
#include "input/segment.h"
#include "util/buf.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *trimmed(const char *s, size_t len)
{
	while (len && isspace((unsigned char)*s))
		s++, len--;
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	return xstrndup(s, len);
}

static void rule_free(struct segment_rule *r)
{
	free(r->col);
	free(r->what);
	for (size_t i = 0; i < r->nvals; i++)
		free(r->vals[i]);
	free(r->vals);
}

/* One "COL=V|W" or "COL!=V" into *r. */
static int parse_rule(struct segment_rule *r, const char *s, size_t len, const char *what,
		      char *err, size_t errlen)
{
	memset(r, 0, sizeof *r);
	r->idx = -1;
	if (!(r->what = xstrdup(what)))
		return set_err(err, errlen, -1, "out of memory");
	const char *eq = memchr(s, '=', len);
	if (!eq)
		return set_err(err, errlen, -1, "%s: \"%.*s\": expected COLUMN=VALUE, COLUMN!=VALUE "
			       "or COLUMN=A|B", what, (int)len, s);
	r->negate = eq > s && eq[-1] == '!';
	const char *ce = r->negate ? eq - 1 : eq;
	if (!(r->col = trimmed(s, (size_t)(ce - s))))
		return set_err(err, errlen, -1, "out of memory");
	for (char *c = r->col; *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (!*r->col)
		return set_err(err, errlen, -1, "%s: \"%.*s\": no column before the '='", what,
			       (int)len, s);
	const char *v = eq + 1, *end = s + len;
	for (;;) {
		const char *bar = memchr(v, '|', (size_t)(end - v));
		const char *ve = bar ? bar : end;
		char **nv = realloc(r->vals, (r->nvals + 1) * sizeof *nv);
		if (!nv)
			return set_err(err, errlen, -1, "out of memory");
		r->vals = nv;
		if (!(r->vals[r->nvals] = trimmed(v, (size_t)(ve - v))))
			return set_err(err, errlen, -1, "out of memory");
		r->nvals++;
		if (!bar)
			break;
		v = bar + 1;
	}
	return 0;
}

int segment_add(struct segment *sg, const char *spec, const char *what, char *err, size_t errlen)
{
	const char *p = spec;
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		struct segment_rule *nr = realloc(sg->rules, (sg->n + 1) * sizeof *nr);
		if (!nr)
			return set_err(err, errlen, -1, "out of memory");
		sg->rules = nr;
		if (parse_rule(&sg->rules[sg->n], p, len, what, err, errlen) < 0) {
			rule_free(&sg->rules[sg->n]);
			return -1;
		}
		sg->n++;
		if (!comma)
			return 0;
		p = comma + 1;
	}
}

int segment_bind(struct segment *sg, const char *const *cols, size_t ncols, const char *list,
		 char *err, size_t errlen)
{
	for (size_t i = 0; i < sg->n; i++) {
		struct segment_rule *r = &sg->rules[i];
		r->idx = -1;
		for (size_t k = 0; k < ncols; k++)
			if (!strcmp(cols[k], r->col))
				r->idx = (long)k;
		if (r->idx >= 0)
			continue;
		struct buf names = {0};
		int oom = 0;
		for (size_t k = 0; k < ncols && !oom; k++)
			oom = buf_printf(&names, "%s%s", k ? ", " : "", cols[k]) < 0;
		set_err(err, errlen, -1, "%s: %s has no column \"%s\" (its columns: %s)", r->what, list,
			r->col, oom ? "not listed: out of memory" : names.p ? names.p : "none");
		buf_free(&names);
		return -1;
	}
	return 0;
}

int segment_match(const struct segment *sg, const char *const *fields)
{
	for (size_t i = 0; i < sg->n; i++) {
		const struct segment_rule *r = &sg->rules[i];
		const char *v = r->idx >= 0 && fields[r->idx] ? fields[r->idx] : "";
		size_t vl = strlen(v);
		while (vl && isspace((unsigned char)v[vl - 1]))
			vl--;
		while (vl && isspace((unsigned char)*v))
			v++, vl--;
		int any = 0;
		for (size_t k = 0; !any && k < r->nvals; k++)
			any = strlen(r->vals[k]) == vl && !strncasecmp(r->vals[k], v, vl);
		if (any == r->negate)
			return 0;
	}
	return 1;
}

void segment_describe(const struct segment *sg, char *out, size_t len)
{
	size_t o = 0;
	out[0] = '\0';
	for (size_t i = 0; i < sg->n && o < len; i++) {
		const struct segment_rule *r = &sg->rules[i];
		o += (size_t)snprintf(out + o, len - o, "%s%s%s", i ? ", " : "", r->col,
				      r->negate ? "!=" : "=");
		for (size_t k = 0; k < r->nvals && o < len; k++)
			o += (size_t)snprintf(out + o, len - o, "%s%s", k ? "|" : "", r->vals[k]);
	}
}

void segment_free(struct segment *sg)
{
	for (size_t i = 0; i < sg->n; i++)
		rule_free(&sg->rules[i]);
	free(sg->rules);
	sg->rules = NULL;
	sg->n = 0;
}
