/* Request targets and urlencoded forms (form.h). */
#include "web/form.h"
#include "util/buf.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes s[0..n) into out (room for n + 1); returns the length, or -1. */
static long decode(const char *s, size_t n, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			out[o++] = ' ';
		} else if (s[i] == '%') {
			int hi = i + 1 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
			if (hi < 0 || lo < 0)
				return -1;
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	if (memchr(out, '\0', o) || !utf8_valid(out, o))
		return -1;
	return (long)o;
}

const char *form_get(const struct form *f, const char *key)
{
	for (size_t i = 0; i < f->n; i++)
		if (!strcmp(f->key[i], key))
			return f->val[i];
	return NULL;
}

int form_parse(struct form *f, const char *s, size_t len, char *why, size_t whylen)
{
	f->n = 0;
	if (len > FORM_MAX_TEXT)
		return set_err(why, whylen, FORM_TOO_BIG, "more than %d bytes of form data", FORM_MAX_TEXT);
	char *out = f->text;
	size_t i = 0;
	while (i < len) {
		size_t end = i;
		while (end < len && s[end] != '&')
			end++;
		if (end > i) {
			const char *eq = memchr(s + i, '=', end - i);
			size_t kl = eq ? (size_t)(eq - (s + i)) : end - i;
			if (f->n == FORM_MAX_FIELDS)
				return set_err(why, whylen, FORM_TOO_BIG, "more than %d form fields", FORM_MAX_FIELDS);
			long k = decode(s + i, kl, out);
			if (k < 0)
				return set_err(why, whylen, FORM_BAD, "a form field name is not valid UTF-8 text");
			f->key[f->n] = out;
			out += k + 1;
			long v = eq ? decode(eq + 1, (size_t)(s + end - eq - 1), out) : (*out = '\0', 0);
			if (v < 0)
				return set_err(why, whylen, FORM_BAD, "a form field value is not valid UTF-8 text");
			f->val[f->n] = out;
			out += v + 1;
			if (form_get(f, f->key[f->n]))
				return set_err(why, whylen, FORM_BAD, "a form field is given twice");
			f->n++;
		}
		i = end + 1;
	}
	return FORM_OK;
}

/* Adds one field whose key and value are raw bytes (multipart). */
static int add_raw(struct form *f, char **out, const char *k, size_t kl, const char *v, size_t vl,
		   char *why, size_t whylen)
{
	if (f->n == FORM_MAX_FIELDS)
		return set_err(why, whylen, FORM_TOO_BIG, "more than %d form fields", FORM_MAX_FIELDS);
	if (memchr(k, '\0', kl) || memchr(v, '\0', vl) || !utf8_valid(k, kl) || !utf8_valid(v, vl))
		return set_err(why, whylen, FORM_BAD, "a form field is not valid UTF-8 text");
	char *o = *out;
	memcpy(o, k, kl);
	o[kl] = '\0';
	memcpy(o + kl + 1, v, vl);
	o[kl + 1 + vl] = '\0';
	if (form_get(f, o))
		return set_err(why, whylen, FORM_BAD, "a form field is given twice");
	f->key[f->n] = o;
	f->val[f->n++] = o + kl + 1;
	*out = o + kl + vl + 2;
	return FORM_OK;
}

/* The boundary parameter of a multipart Content-Type, into b. */
static int boundary_of(const char *ct, char *b, size_t blen)
{
	const char *p = strcasestr(ct, "boundary=");
	if (!p)
		return -1;
	p += 9;
	int quoted = *p == '"';
	p += quoted;
	size_t n = quoted ? strcspn(p, "\"") : strcspn(p, "; \t");
	if (n == 0 || n > 70 || n >= blen || (quoted && p[n] != '"'))
		return -1;
	memcpy(b, p, n);
	b[n] = '\0';
	return 0;
}

/* The name="..." of a part's headers h[0..hl), into name. */
static int part_name(const char *h, size_t hl, char *name, size_t namelen, char *why, size_t whylen)
{
	for (const char *line = h; line < h + hl;) {
		const char *eol = memmem(line, (size_t)(h + hl - line), "\r\n", 2);
		size_t ll = eol ? (size_t)(eol - line) : (size_t)(h + hl - line);
		if (ll > 20 && !strncasecmp(line, "Content-Disposition:", 20)) {
			char v[512];
			snprintf(v, sizeof v, "%.*s", (int)(ll - 20), line + 20);
			const char *fn = strcasestr(v, "filename");
			const char *nm = strcasestr(v, "name=\"");
			if (fn)
				return set_err(why, whylen, FORM_BAD, "a file was uploaded");
			if (!strcasestr(v, "form-data") || !nm)
				return set_err(why, whylen, FORM_BAD, "a form part has no name");
			nm += 6;
			size_t n = strcspn(nm, "\"");
			if (!nm[n] || n >= namelen)
				return set_err(why, whylen, FORM_BAD, "a form part's name is malformed");
			memcpy(name, nm, n);
			name[n] = '\0';
			return FORM_OK;
		}
		line += ll + 2;
	}
	return set_err(why, whylen, FORM_BAD, "a form part has no Content-Disposition");
}

static int parse_multipart(struct form *f, const char *ct, const char *s, size_t len, char *why,
			   size_t whylen)
{
	char b[80], delim[90];
	if (boundary_of(ct, b, sizeof b) < 0)
		return set_err(why, whylen, FORM_BAD, "multipart/form-data without a usable boundary");
	int dl = snprintf(delim, sizeof delim, "\r\n--%s", b);
	/* The first delimiter may open the body without its CRLF. */
	const char *p = s, *end = s + len;
	if (len >= (size_t)dl - 2 && !memcmp(s, delim + 2, (size_t)dl - 2))
		p = s + dl - 2;
	else if (!(p = memmem(s, len, delim, (size_t)dl)))
		return set_err(why, whylen, FORM_BAD, "multipart/form-data without its boundary");
	else
		p += dl;
	char *out = f->text;
	for (;;) {
		if (end - p >= 2 && !memcmp(p, "--", 2))
			return FORM_OK;              /* the close delimiter */
		if (end - p < 2 || memcmp(p, "\r\n", 2))
			return set_err(why, whylen, FORM_BAD, "multipart/form-data is malformed");
		p += 2;
		const char *hend = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		if (!hend)
			return set_err(why, whylen, FORM_BAD, "a form part has no end to its headers");
		char name[256];
		int rc = part_name(p, (size_t)(hend - p), name, sizeof name, why, whylen);
		if (rc)
			return rc;
		const char *v = hend + 4;
		const char *next = memmem(v, (size_t)(end - v), delim, (size_t)dl);
		if (!next)
			return set_err(why, whylen, FORM_BAD, "a form part is not closed");
		if ((rc = add_raw(f, &out, name, strlen(name), v, (size_t)(next - v), why, whylen)))
			return rc;
		p = next + dl;
	}
}

int form_parse_body(struct form *f, const char *content_type, const char *s, size_t len,
		    char *why, size_t whylen)
{
	f->n = 0;
	if (len > FORM_MAX_TEXT)
		return set_err(why, whylen, FORM_TOO_BIG, "more than %d bytes of form data", FORM_MAX_TEXT);
	if (!content_type || !strncasecmp(content_type, "application/x-www-form-urlencoded", 33))
		return form_parse(f, s, len, why, whylen);
	if (!strncasecmp(content_type, "multipart/form-data", 19))
		return parse_multipart(f, content_type, s, len, why, whylen);
	return set_err(why, whylen, FORM_BAD, "a form must be application/x-www-form-urlencoded or multipart/form-data");
}

int form_target(const char *target, char *path, size_t pathlen, const char **query)
{
	if (target[0] != '/')
		return FORM_BAD;
	size_t n = strcspn(target, "?");
	for (const char *p = target; *p; p++)
		if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e || *p == '#')
			return FORM_BAD;
	if (n >= pathlen)
		return FORM_TOO_BIG;
	memcpy(path, target, n);
	path[n] = '\0';
	*query = target[n] ? target + n + 1 : "";
	return FORM_OK;
}
