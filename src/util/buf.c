#include "util/buf.h"
#include <errno.h>
#include <limits.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

int buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1) {
		if (cap > ((size_t)-1) / 2)
			return -1;
		cap *= 2;
	}
	char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int buf_add(struct buf *b, const void *data, size_t len)
{
	if (buf_reserve(b, len) < 0)
		return -1;
	if (len)
		memcpy(b->p + b->len, data, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

int buf_adds(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

int buf_addc(struct buf *b, char c)
{
	return buf_add(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

const char *buf_cstr(struct buf *b)
{
	if (!b->p && buf_reserve(b, 0) < 0)
		return "";
	b->p[b->len] = '\0';
	return b->p;
}

char *buf_detach(struct buf *b)
{
	buf_cstr(b);
	char *p = b->p;
	b->p = NULL;
	b->len = b->cap = 0;
	return p;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->p)
		b->p[0] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

void secret_free(char **s)
{
	if (!*s)
		return;
	explicit_bzero(*s, strlen(*s));
	free(*s);
	*s = NULL;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = malloc(n + 1);
	if (!p)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

int set_err(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	struct buf b = {0};
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (buf_add(&b, chunk, n) < 0) {
			fclose(f);
			buf_free(&b);
			errno = ENOMEM;
			return -1;
		}
	}
	int bad = ferror(f);
	fclose(f);
	if (bad) {
		buf_free(&b);
		errno = EIO;
		return -1;
	}
	if (len)
		*len = b.len;
	*out = buf_detach(&b);
	return *out ? 0 : -1;
}

char *str_lower(const char *s)
{
	char *p = strdup(s);
	if (!p)
		return NULL;
	for (char *q = p; *q; q++)
		if (*q >= 'A' && *q <= 'Z')
			*q = (char)(*q - 'A' + 'a');
	return p;
}

int buf_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char d[32];
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, d) < 0)
		return -1;
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
	return 0;
}

int array_grow(void *arr, size_t *cap, size_t n, size_t size, size_t first)
{
	if (n < *cap)
		return 0;
	size_t nc = *cap ? *cap * 2 : first;
	void **p = arr;
	void *na = realloc(*p, nc * size);
	if (!na)
		return -1;
	*p = na;
	*cap = nc;
	return 0;
}

/* libunistring's u8_check refuses overlong forms, surrogates and values
 * past U+10FFFF: how filters get fooled. */
size_t utf8_valid_prefix(const char *s, size_t len, int *multibyte)
{
	const uint8_t *b = (const uint8_t *)s, *bad = u8_check(b, len);
	size_t n = bad ? (size_t)(bad - b) : len;
	if (multibyte) {
		*multibyte = 0;
		for (size_t i = 0; i < n && !*multibyte; i++)
			*multibyte = b[i] >= 0x80;
	}
	return n;
}

int utf8_valid(const char *s, size_t len)
{
	return utf8_valid_prefix(s, len, NULL) == len;
}

long utf8_unsafe_char(const char *s, int bidi)
{
	const uint8_t *p = (const uint8_t *)s, *end = p + strlen(s);
	while (p < end) {
		ucs4_t c;
		int n = u8_mbtoucr(&c, p, (size_t)(end - p));
		if (n <= 0)
			return 0xFFFD; /* not UTF-8: the caller's own check says so */
		if (c < 0x20 || (c >= 0x7F && c < 0xA0) || c == 0x2028 || c == 0x2029 ||
		    (bidi && ((c >= 0x202A && c <= 0x202E) || (c >= 0x2066 && c <= 0x2069))))
			return (long)c;
		p += n;
	}
	return 0;
}

void path_trim_slashes(char *path)
{
	size_t n = path ? strlen(path) : 0;
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
}

/* GnuTLS (linked already for TLS and the HMAC) encodes; herald only
 * breaks the run into MIME's lines. */
int buf_add_base64(struct buf *b, const void *data, size_t len, size_t line)
{
	if (!len)
		return 0;
	gnutls_datum_t in = {(unsigned char *)data, (unsigned)len}, enc = {NULL, 0};
	if (len > (size_t)UINT_MAX / 2 || gnutls_base64_encode2(&in, &enc) < 0)
		return -1;
	int rc = 0;
	if (!line)
		rc = buf_add(b, enc.data, enc.size);
	else if ((rc = buf_reserve(b, enc.size + (enc.size / line + 1) * 2)) == 0)
		for (size_t at = 0; at < enc.size && !rc; at += line) {
			size_t n = enc.size - at < line ? enc.size - at : line;
			rc = buf_add(b, enc.data + at, n) < 0 || buf_add(b, "\r\n", 2) < 0 ? -1 : 0;
		}
	gnutls_free(enc.data);
	return rc;
}
