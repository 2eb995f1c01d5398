/* page: the HTML pages herald serve answers with. One layout for all of
 * them: no script, no image, no font, nothing from another origin; the
 * one inline style sheet is allowed by its hash in the
 * Content-Security-Policy (page_csp), so the policy can forbid every
 * other style and all scripts. The layout follows the mail templates'
 * rules: readable at 390 px, a dark scheme from prefers-color-scheme.
 *
 * Every value a request or the config supplies goes through page_esc.
 *
 * Ownership: the caller owns the struct buf it passes. */
#ifndef HERALD_PAGE_H
#define HERALD_PAGE_H
#include "util/buf.h"

/* The Content-Security-Policy header value for every page, into csp
 * (400 bytes are plenty). 0, or -1 when the hash failed. */
#include <stddef.h>
int page_csp(char *csp, size_t len);
/* Appends s, HTML-escaped (text and attribute values alike). */
BUF_MUST int page_esc(struct buf *b, const char *s);
/* A whole page: title and heading (escaped here), then body_html (the
 * caller's markup, values in it already escaped), list_name in the
 * footer (escaped). 0, or -1 when out of memory. */
BUF_MUST int page_render(struct buf *out, const char *title, const char *list_name,
		const char *body_html);
#endif
