/* template: `{{field}}` and `{{field|fallback}}` templates, compiled once
 * and rendered per subscriber.
 *
 * Field names are resolved at compile time against a field table (index ->
 * name), so rendering is array look-ups; an unknown name is a compile error
 * naming the source and line. Names are matched case-insensitively, and
 * may have spaces around them: `{{ name | reader }}`. The fallback is used
 * when the value is empty or missing (NULL); it is literal text. A field
 * opens and closes on one line. `\{{` is a literal "{{" (the one escape:
 * nothing else is special, so `\\{{` is a backslash and a literal "{{").
 * In a run of braces the last two open: `{{{name}}}` is "{", the field,
 * "}".
 *
 * Ownership: tmpl_compile allocates *out; tmpl_free releases it. The
 * template keeps no pointer into src or names. */
#ifndef HERALD_TEMPLATE_H
#define HERALD_TEMPLATE_H
#include <stddef.h>
#include "util/buf.h"

enum tmpl_esc {
	TMPL_RAW,  /* values as they are (text part, headers) */
	TMPL_HTML, /* & < > " ' escaped (HTML part, attributes included);
		    * C0 controls but TAB, LF, CR, and DEL dropped (XML has none) */
	TMPL_URL,  /* percent-encoded, RFC 3986 unreserved kept */
};

struct tmpl_names {
	const char *const *names;
	size_t n;
};

struct tmpl;

/* What the scanner finds: every "{{" and "\{{" in a source, in order. */
enum tmpl_kind {
	TMPL_FIELD,     /* {{name}} or {{name|fallback}}, known or not */
	TMPL_ESCAPE,    /* \{{, a literal "{{" */
	TMPL_UNCLOSED,  /* "{{" with no "}}" on its line (len 2) */
	TMPL_MALFORMED, /* an empty name, or one holding "{" */
};
struct tmpl_field {
	enum tmpl_kind kind;
	size_t off, len;       /* all of it, in the source */
	int line;
	const char *name;      /* trimmed, into the source (FIELD, MALFORMED) */
	size_t nlen;
	const char *fallback;  /* trimmed, when has_fallback */
	size_t fblen;
	int has_fallback;
};
struct tmpl_scan {
	const char *src;
	size_t len, pos;
	int line;
};
void tmpl_scan_init(struct tmpl_scan *s, const char *src, size_t len,
		    int first_line);
/* 1 and *f filled, or 0 at the end. */
int tmpl_scan_next(struct tmpl_scan *s, struct tmpl_field *f);
/* 0 when f merges (a known field, *index its entry; or an escape, *index
 * -1); else 1 with what is wrong in msg, the words every command prints
 * after "FILE:LINE: " (with a "did you mean" for a near name). src: the
 * source the scan ran over. */
int tmpl_field_problem(const struct tmpl_field *f, const char *src,
		       const struct tmpl_names *names, long *index,
		       char *msg, size_t len);
/* Visits every field of src (problem NULL when it merges); returns how
 * many have a problem, or -1 when visit did. */
typedef int (*tmpl_visit_fn)(void *arg, const struct tmpl_field *f,
			     const char *problem);
int tmpl_check(const char *src, size_t len, int first_line,
	       const struct tmpl_names *names, tmpl_visit_fn visit, void *arg);

/* Compiles src; the first problem tmpl_field_problem finds is the error,
 * as "SRCNAME:LINE: what" (first_line 0: "SRCNAME: what"). */
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
BUF_MUST int tmpl_escape(struct buf *out, const char *s, size_t len,
		enum tmpl_esc esc);
#endif
