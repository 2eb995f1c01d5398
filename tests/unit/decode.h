/* What the unit tests of compose/ share, included by one test file each:
 * the kept strings a teardown frees, and decoders of RFC 2047 and
 * quoted-printable written here, independent of the code under test
 * (test_encode.c checks the encoders with them, test_message.c whole
 * messages). Every function is static: each test binary has its own. */
#ifndef HERALD_TEST_DECODE_H
#define HERALD_TEST_DECODE_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "util/buf.h"

/* Every string a helper hands out is kept here and freed by the
 * teardown, so a failed assertion (a longjmp out of the test) leaks
 * nothing and the sanitizer run stays clean. Tests never free them. */
static void *kept[512];
static size_t nkept;

static void *keep(void *p)
{
	assert_non_null(p);
	if (nkept == sizeof kept / sizeof *kept) {
		free(p);
		fail_msg("too many kept allocations");
	}
	kept[nkept++] = p;
	return p;
}

static int gc(void **state)
{
	(void)state;
	while (nkept)
		free(kept[--nkept]);
	return 0;
}

/* Why the last decode failed (the decoders free what they built and
 * return NULL, so failing leaks nothing). */
static char why[512];

/* ---- independent decoders and checks ----------------------------------- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* lower-case hex is not what an encoder should emit */
}

/* Complete, well-formed UTF-8 sequences only (shape, not ranges). */
static int utf8_complete(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		size_t n;

		if (c < 0x80)
			n = 0;
		else if ((c & 0xE0) == 0xC0)
			n = 1;
		else if ((c & 0xF0) == 0xE0)
			n = 2;
		else if ((c & 0xF8) == 0xF0)
			n = 3;
		else
			return 0;
		for (size_t k = 1; k <= n; k++)
			if (i + k >= len || (p[i + k] & 0xC0) != 0x80)
				return 0;
		i += n + 1;
	}
	return 1;
}

/* Decodes the text of a B encoded-word, strictly (padding included). */
static int decode_b(const char *t, size_t n, struct buf *one)
{
	static const char b64[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

	if (n % 4)
		return -1;
	for (size_t i = 0; i < n; i += 4) {
		unsigned v = 0;
		int pad = 0;

		for (int k = 0; k < 4; k++) {
			const char *c = t[i + k] == '=' ? NULL : strchr(b64, t[i + k]);

			if (t[i + k] == '=' && i + 4 == n && k >= 2)
				pad++;
			else if (!c || !t[i + k] || pad)
				return -1;
			v = v << 6 | (c ? (unsigned)(c - b64) : 0);
		}
		assert_int_equal(buf_addc(one, (char)(v >> 16)), 0);
		if (pad < 2)
			assert_int_equal(buf_addc(one, (char)(v >> 8 & 255)), 0);
		if (pad < 1)
			assert_int_equal(buf_addc(one, (char)(v & 255)), 0);
	}
	return 0;
}

/* Decodes one Q or B encoded-word "=?UTF-8?Q?...?=" (whole token),
 * appending to out. -1 (reason in why) on anything malformed, a word over
 * 75 characters, or one that does not hold complete UTF-8 sequences. */
static int decode_word(const char *w, size_t len, struct buf *out)
{
	const char *pre = "=?UTF-8?Q?";
	size_t pl = strlen(pre);
	struct buf one = { 0 };

	if (len > 75 || len < pl + 2 || (memcmp(w, pre, pl) && memcmp(w, "=?UTF-8?B?", pl)) ||
	    memcmp(w + len - 2, "?=", 2)) {
		snprintf(why, sizeof why, "bad encoded-word (%zu chars): %.*s",
			 len, (int)len, w);
		return -1;
	}
	if (w[8] == 'B') {
		if (decode_b(w + pl, len - pl - 2, &one) < 0) {
			snprintf(why, sizeof why, "bad Base64 in %.*s", (int)len, w);
			goto fail;
		}
		goto whole;
	}
	for (size_t i = pl; i < len - 2; i++) {
		char c = w[i];

		if (c == '_') {
			assert_int_equal(buf_addc(&one, ' '), 0);
		} else if (c == '=') {
			int hi = i + 2 < len - 2 ? hexval(w[i + 1]) : -1;
			int lo = i + 2 < len - 2 ? hexval(w[i + 2]) : -1;

			if (hi < 0 || lo < 0) {
				snprintf(why, sizeof why, "bad =XX in %.*s",
					 (int)len, w);
				goto fail;
			}
			assert_int_equal(buf_addc(&one, (char)(hi * 16 + lo)), 0);
			i += 2;
		} else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			   (c >= '0' && c <= '9') || strchr("!*+-/", c)) {
			/* Q-encoding in a phrase allows only these. */
			assert_int_equal(buf_addc(&one, c), 0);
		} else {
			snprintf(why, sizeof why, "'%c' unencoded in %.*s", c,
				 (int)len, w);
			goto fail;
		}
	}
whole:
	if (!utf8_complete((const unsigned char *)one.p, one.len)) {
		snprintf(why, sizeof why, "word splits a UTF-8 sequence: %.*s",
			 (int)len, w);
		goto fail;
	}
	assert_int_equal(buf_add(out, one.p, one.len), 0);
	buf_free(&one);
	return 0;
fail:
	buf_free(&one);
	return -1;
}

static int is_ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* RFC 2047 decoding of a header value: encoded-words decoded, white
 * space between two adjacent encoded-words dropped, all else kept
 * (folding CRLFs removed). A kept string, or NULL with why set. */
static char *decode_2047(const char *s)
{
	struct buf out = { 0 }, ws = { 0 };
	int prev_enc = 0;
	const char *p = s;

	assert_int_equal(buf_adds(&out, ""), 0);
	while (*p) {
		buf_reset(&ws);
		while (*p && is_ws(*p)) {
			if (*p != '\r' && *p != '\n')
				assert_int_equal(buf_addc(&ws, *p), 0);
			p++;
		}
		if (!*p) {
			assert_int_equal(buf_add(&out, ws.p, ws.len), 0);
			break;
		}
		const char *t = p;

		while (*p && !is_ws(*p))
			p++;
		size_t tl = (size_t)(p - t);
		int enc = tl >= 2 && t[0] == '=' && t[1] == '?';

		if (!(enc && prev_enc))
			assert_int_equal(buf_add(&out, ws.p, ws.len), 0);
		if (enc && decode_word(t, tl, &out) < 0) {
			buf_free(&ws);
			buf_free(&out);
			return NULL;
		}
		if (!enc)
			assert_int_equal(buf_add(&out, t, tl), 0);
		prev_enc = enc;
	}
	buf_free(&ws);
	return keep(buf_detach(&out));
}

/* decode_2047 that must succeed. */
static const char *decoded(const char *s)
{
	char *d = decode_2047(s);

	if (!d)
		fail_msg("%s", why);
	return d;
}

/* Quoted-printable decoding: "=\r\n" soft breaks, =XX, CRLF -> LF.
 * Fails the test on a bare CR or LF, a line over 76 characters, an
 * unencoded control or 8-bit byte, or trailing white space on a line.
 * Returns a kept string. */
static char *qp_decode(const char *s, size_t len)
{
	struct buf out = { 0 };
	size_t col = 0;

	assert_int_equal(buf_adds(&out, ""), 0);
	why[0] = '\0';
	for (size_t i = 0; i < len && !why[0]; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\r') {
			if (i + 1 >= len || s[i + 1] != '\n')
				snprintf(why, sizeof why, "bare CR at %zu", i);
			else if (i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t'))
				snprintf(why, sizeof why,
					 "trailing blank at %zu", i);
			assert_int_equal(buf_addc(&out, '\n'), 0);
			i++;
			col = 0;
			continue;
		}
		if (c == '\n') {
			snprintf(why, sizeof why, "bare LF at %zu", i);
		} else if (c == '=' && i + 2 < len && s[i + 1] == '\r' &&
			   s[i + 2] == '\n') {
			i += 2; /* soft break; the '=' is the 76th at most */
			if (col + 1 > 76)
				snprintf(why, sizeof why, "long line at %zu", i);
			col = 0;
			continue;
		} else if (c == '=') {
			int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < len ? hexval(s[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				snprintf(why, sizeof why, "bad escape at %zu", i);
			else
				assert_int_equal(buf_addc(&out, (char)(hi * 16 + lo)), 0);
			i += 2;
			col += 3;
		} else if ((c >= 33 && c <= 126) || c == ' ' || c == '\t') {
			assert_int_equal(buf_addc(&out, (char)c), 0);
			col++;
		} else {
			snprintf(why, sizeof why, "raw byte 0x%02X at %zu", c, i);
		}
		if (col > 76 && !why[0])
			snprintf(why, sizeof why, "line over 76 at %zu", i);
	}
	if (!why[0] && len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		snprintf(why, sizeof why, "trailing blank at the end");
	if (why[0]) {
		buf_free(&out);
		fail_msg("quoted-printable: %s in:\n%.*s", why, (int)len, s);
	}
	return keep(buf_detach(&out));
}

/* CRLF only, and no line over max characters (CRLF excluded). */
static void assert_crlf_lines(const char *s, size_t len, size_t max)
{
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			if (i + 1 >= len || s[i + 1] != '\n')
				fail_msg("bare CR at offset %zu", i);
			i++;
			col = 0;
			continue;
		}
		if (s[i] == '\n')
			fail_msg("bare LF at offset %zu", i);
		if (++col > max)
			fail_msg("line over %zu characters at offset %zu", max,
				 i);
	}
}
#endif
