/* template: `{{field}}` and `{{field|fallback}}` templates, compiled once
 * and rendered per subscriber.
 *
 * Field names are resolved at compile time against a field table (index ->
 * name), so rendering is array look-ups; an unknown name is a compile error
 * naming the source and line. Names are matched case-insensitively, and
 * may have spaces around them: `{{ name | reader }}`. The fallback is used
 * when the value is empty or missing (NULL); it is literal text.
 *
 * Ownership: tmpl_compile allocates *out; tmpl_free releases it. The
 * template keeps no pointer into src or names. */
#ifndef HERALD_TEMPLATE_H
#define HERALD_TEMPLATE_H
#include <stddef.h>
#include "util/buf.h"

enum tmpl_esc {
	TMPL_RAW,  /* values as they are (text part, headers) */
	TMPL_HTML, /* & < > " ' escaped (HTML part, attributes included) */
	TMPL_URL,  /* percent-encoded, RFC 3986 unreserved kept */
};

struct tmpl_names {
	const char *const *names;
	size_t n;
};

struct tmpl;

int tmpl_compile(struct tmpl **out, const char *src, size_t len,
		 const struct tmpl_names *names, const char *srcname,
		 int first_line, char *err, size_t errlen);
/* values[i] is the value of names[i] (NULL = empty). */
int tmpl_render(const struct tmpl *t, const char *const *values,
		enum tmpl_esc esc, struct buf *out);
/* The compiled pieces, for renderers that post-process the output as it
 * is produced (message.c encodes straight to quoted-printable). */
struct tmpl_piece {
	const char *text;   /* literal text, or the fallback */
	size_t len;
	long field;         /* -1 for literal text */
	int has_fallback;
};
/* The same from byte `skip` of literal piece `first` on (message.c
 * renders a footer again). */
int tmpl_render_from(const struct tmpl *t, size_t first, size_t skip,
		     const char *const *values, enum tmpl_esc esc, struct buf *out);
size_t tmpl_npieces(const struct tmpl *t);
void tmpl_get_piece(const struct tmpl *t, size_t i, struct tmpl_piece *out);

/* 1 if the template refers to field idx. */
int tmpl_uses(const struct tmpl *t, size_t idx);
void tmpl_free(struct tmpl *t);

/* Appends s escaped as esc asks (shared with the renderers). */
int tmpl_escape(struct buf *out, const char *s, size_t len,
		enum tmpl_esc esc);
#endif
