/* form: what a request says, read strictly: the request target split
 * into path and query, and application/x-www-form-urlencoded text (a
 * query string or a POST body) decoded into fields.
 *
 * Hand-written rather than libmicrohttpd's own argument parsing and
 * MHD_PostProcessor: those accept a repeated key (which "e" is checked,
 * which one applied?), pass NUL bytes and bad UTF-8 through, and need a
 * live connection, so they cannot be fuzzed on their own. Here a repeated
 * key, a bad %-escape, a NUL, invalid UTF-8, too many fields or too much
 * text is an error, and everything is bounded: FORM_MAX_TEXT bytes in,
 * FORM_MAX_FIELDS fields out, nothing allocated.
 *
 * Ownership: struct form holds its decoded text itself; nothing to free. */
#ifndef HERALD_FORM_H
#define HERALD_FORM_H
#include <stddef.h>

#define FORM_MAX_TEXT 4096   /* a query string or a body, in bytes */
#define FORM_MAX_FIELDS 16

struct form {
	size_t n;
	const char *key[FORM_MAX_FIELDS], *val[FORM_MAX_FIELDS];
	char text[FORM_MAX_TEXT + 2 * FORM_MAX_FIELDS + 2];
};

enum { FORM_OK = 0, FORM_BAD = -1, FORM_TOO_BIG = -2 };

/* Decodes s[0..len) ("a=1&b=x+y%21"): '+' is a space, %XX a byte; a pair
 * without '=' has the value ""; empty pairs are skipped. FORM_BAD or
 * FORM_TOO_BIG with why (a short phrase for the error page). */
int form_parse(struct form *f, const char *s, size_t len, char *why, size_t whylen);
/* The value of key, or NULL. */
const char *form_get(const struct form *f, const char *key);

/* A POST body by its Content-Type: application/x-www-form-urlencoded
 * (also when content_type is NULL) through form_parse, or
 * multipart/form-data (RFC 7578; RFC 8058 one-click senders may use
 * either): each part's name from its Content-Disposition, its content
 * taken as it is (no transfer encodings); a part with a filename is
 * refused. Anything else is FORM_BAD. */
int form_parse_body(struct form *f, const char *content_type, const char *s, size_t len,
		    char *why, size_t whylen);

/* Splits a request target ("/unsubscribe?e=...") at the '?': path is
 * copied (at most pathlen - 1 bytes, else FORM_TOO_BIG), *query points
 * at what follows the '?' in target ("" when there is none). An origin
 * form target only: it must start with '/', and holds no '#', control
 * character or byte over 0x7e (FORM_BAD). */
int form_target(const char *target, char *path, size_t pathlen, const char **query);
#endif
