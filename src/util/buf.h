/* buf: a growable byte buffer. The buffer owns p; buf_free releases it.
 * Appends never fail silently: they return -1 on allocation failure and
 * leave the buffer as it was. */
#ifndef HERALD_BUF_H
#define HERALD_BUF_H
#include <stddef.h>
#include <stdarg.h>

struct buf {
	char *p;
	size_t len, cap;
};

/* A failed append must never go unnoticed (a message body cut short by
 * an allocation failure would be sent, and journaled, as if whole), so
 * the compiler refuses to let a caller drop the result. */
#define BUF_MUST __attribute__((warn_unused_result))
BUF_MUST int buf_reserve(struct buf *b, size_t extra);
BUF_MUST int buf_add(struct buf *b, const void *data, size_t len);
BUF_MUST int buf_adds(struct buf *b, const char *s);
BUF_MUST int buf_addc(struct buf *b, char c);
BUF_MUST int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* NUL-terminates without counting the NUL in len. */
const char *buf_cstr(struct buf *b);
/* Hands the bytes to the caller (free() them) and empties the buffer. */
char *buf_detach(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* Makes room for one more element in the array *arr of *n, doubling
 * *cap (from first): 0, or -1 when out of memory (*arr left as it was). */
BUF_MUST int array_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first);

/* 1 if s[0..len) is valid UTF-8: no overlong forms, surrogates or values
 * past U+10FFFF (how filters get fooled). */
int utf8_valid(const char *s, size_t len);
/* How many leading bytes of s are valid UTF-8; *multibyte (may be NULL)
 * says whether they hold a sequence past ASCII. */
size_t utf8_valid_prefix(const char *s, size_t len, int *multibyte);
/* The first character of s (UTF-8; U+FFFD for bytes that are not) that has no place in a name
 * or a title people read: a C0 control (TAB too), DEL, a C1 control,
 * U+2028/U+2029, and with bidi the overrides, embeddings and isolates
 * (U+202A..U+202E, U+2066..U+2069: they reorder what follows, so
 * "gpj.exe" shows as "exe.jpg"). Its code point, or 0 when none. */
long utf8_unsafe_char(const char *s, int bidi);
/* "out/" -> "out", so joined paths never print "out//x"; "/" stays. */
void path_trim_slashes(char *path);

/* Small string helpers shared by several modules. */
char *xstrdup(const char *s);           /* NULL-safe strdup */
char *xstrndup(const char *s, size_t n);
/* Wipes a secret (a password) before freeing it, and sets *s to NULL;
 * NULL-safe. */
void secret_free(char **s);
/* snprintf into err if err is non-NULL; always returns rc, so callers can
 * write `return set_err(err, errlen, rc, "...")`. */
int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Read a whole file; *out is NUL-terminated and owned by the caller. */
int read_file(const char *path, char **out, size_t *len);
/* SHA-256 of data as 64 lower-case hex digits (a content key for what has
 * no stable name). Returns 0, or -1. */
/* Appends data in Base64 (RFC 4648); line > 0 breaks it into lines of at
 * most `line` characters (a multiple of 4), each ended by CRLF, as MIME
 * bodies want; 0 writes one run. */
BUF_MUST int buf_add_base64(struct buf *b, const void *data, size_t len, size_t line);
int buf_sha256_hex(const void *data, size_t len, char out[65]);
/* ASCII lower-case copy (addresses compare case-insensitively). */
char *str_lower(const char *s);
#endif
