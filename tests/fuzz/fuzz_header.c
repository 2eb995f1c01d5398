/* libFuzzer target: the header and body encoders of compose/encode.c.
 *  - enc_words (phrase and subject modes): the result is printable
 *    ASCII, no CR/LF, encoded-words of at most 75 characters;
 *  - enc_qp: CRLF lines of at most 76 characters, nothing but
 *    printable ASCII, space and tab, and it decodes back to the input;
 *  - enc_header_safe / utf8_valid agree with each other. */
#include "util/buf.h"
#include "compose/encode.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_words(const struct buf *b, int lengths)
{
	const char *s = b->p ? b->p : "";
	for (size_t i = 0; i < b->len; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			abort();
	/* Each encoded-word "=?UTF-8?Q?...?=" is at most 75 characters. */
	if (!lengths)
		return;
	for (const char *w = strstr(s, "=?UTF-8?Q?"); w; w = strstr(w + 1, "=?UTF-8?Q?")) {
		const char *e = strstr(w + 10, "?=");
		if (!e || e + 2 - w > 75)
			abort();
	}
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static void check_qp(const struct buf *b, const char *in, size_t len)
{
	const char *s = b->p ? b->p : "";
	size_t col = 0, n = 0;
	char *dec = malloc(b->len + 1);
	if (!dec)
		abort();
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r') {
			if (i + 1 >= b->len || s[i + 1] != '\n')
				abort(); /* bare CR */
			dec[n++] = '\n';
			i++;
			col = 0;
			continue;
		}
		if (c == '\n')
			abort(); /* bare LF */
		if (c != ' ' && c != '\t' && (c < 0x21 || c > 0x7e))
			abort();
		if (c == '=') {
			if (i + 2 < b->len && s[i + 1] == '\r' && s[i + 2] == '\n') {
				if (col + 1 > 76)
					abort();
				i += 2;
				col = 0;
				continue;
			}
			if (i + 2 >= b->len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
				abort();
			dec[n++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
			i += 2;
			col += 3;
		} else {
			/* Blanks never end a line: they would be stripped. */
			if ((c == ' ' || c == '\t') &&
			    (i + 1 == b->len || s[i + 1] == '\r'))
				abort();
			dec[n++] = (char)c;
			col++;
		}
		if (col > 76)
			abort();
	}
	if (n != len || memcmp(dec, in, len))
		abort();
	free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	struct buf b = {0};
	int safe = enc_header_safe(s);
	if (safe != (!memchr(s, '\r', strlen(s)) && !memchr(s, '\n', strlen(s)) &&
		     utf8_valid(s, strlen(s))))
		abort();
	if (safe) {
		/* What msg_build lets through to a header. Text that already
		 * holds "=?" may be copied as it is when it is all printable
		 * ASCII, so word lengths are only checked for the others. */
		for (int phrase = 0; phrase <= 1; phrase++) {
			buf_reset(&b);
			if (enc_words(&b, s, phrase) == 0)
				check_words(&b, !strstr(s, "=?"));
		}
	}
	buf_reset(&b);
	if (enc_qp(&b, (const char *)data, size) == 0)
		check_qp(&b, (const char *)data, size);
	buf_free(&b);
	free(s);
	return 0;
}
