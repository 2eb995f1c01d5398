/* text: the plain-text part, rendered from the cmark-gfm AST (never by
 * stripping HTML). Paragraphs are wrapped at `width` display columns
 * (UTF-8 aware: a code point counts as one column, combining marks as
 * zero), headings are set off, list items indented, block quotes prefixed
 * with "> ", links become "text [N]" with the numbered URLs listed at the
 * end, images "[image: alt]", code kept verbatim. Lines end in LF; the
 * MIME layer turns them into CRLF.
 *
 * *out is allocated and owned by the caller (free()). Returns 0, or -1
 * with a message in err. */
#ifndef HERALD_TEXT_H
#define HERALD_TEXT_H
#include <stddef.h>
#include <cmark-gfm.h>
#include "util/buf.h"

int text_render(cmark_node *doc, int width, char **out, char *err,
		size_t errlen);

/* Re-fills, at width columns, each line longer than that after the last
 * "-- " signature line of b (the template's footer, merged per reader:
 * an address or a list name only known then). Lines that fit, and text
 * without a signature line, are left alone. 0, or -1 out of memory. */
BUF_MUST int text_wrap_footer(struct buf *b, int width);

/* Display columns of a UTF-8 string of len bytes (invalid bytes count 1). */
size_t text_width(const char *s, size_t len);
#endif
