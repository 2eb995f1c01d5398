/* Unit tests for message.c: RFC 2047 words, quoted-printable, tokens,
 * header safety, and whole messages built from a hand-made config, a
 * parsed post and the layout templates in fixtures/templates. The
 * encoders are checked by exact strings and by decoding their output
 * again with decoders written here, independent of the code under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/buf.h"
#include "input/config.h"
#include "compose/message.h"
#include "compose/encode.h"
#include "compose/skeleton.h"
#include "util/token.h"
#include "mailbox/unsubscribe.h"
#include "compose/post.h"

#define SECRET "test-secret"
/* HMAC-SHA256("test-secret", address), computed with Python's hmac. */
#define TOKEN_ANN "e379fa2d57822a4d25337d2e41067ba4840b7d97be4305e664adb6f2b6a9076d"
#define TOKEN_BOB "b245ee92ca2fdbc12c6998c4cf82d1b7f8cb9867b7f699fc024e7436b65ccf12"
#define TOKEN_ANNX "5732474aa585436e46307af612838fc1072e2bff41e91f7b0792cb5ba8fb2a10"
/* 2026-11-30 08:00:00 UTC */
#define NOW ((time_t)1796025600)

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

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* ---- enc_words --------------------------------------------------------- */

static char *encode(const char *s, int phrase)
{
	struct buf b = { 0 };

	assert_int_equal(enc_words(&b, s, phrase), 0);
	buf_cstr(&b);
	return keep(buf_detach(&b));
}

static void check_encode(const char *s, int phrase, const char *want)
{
	char *got = encode(s, phrase);

	assert_string_equal(got, want);
}

/* Encodes s, checks every word, and checks that it decodes back to s. */
static void check_roundtrip(const char *s, int phrase)
{
	char *got = encode(s, phrase);
	const char *back = decoded(got);

	assert_string_equal(back, s);
}

static void test_encode_ascii(void **state)
{
	(void)state;
	check_encode("Hello", 0, "Hello");
	check_encode("Hello", 1, "Hello");
	check_encode("Leaf mulch, sharp tools - and the potluck", 0,
		     "Leaf mulch, sharp tools - and the potluck");
	check_encode("", 0, "");
	check_encode("", 1, "");
}

static void test_encode_cafe(void **state)
{
	(void)state;
	check_encode("Caf\xC3\xA9", 0, "=?UTF-8?Q?Caf=C3=A9?=");
	check_encode("Caf\xC3\xA9", 1, "=?UTF-8?Q?Caf=C3=A9?=");
}

static void test_encode_phrase_whole(void **state)
{
	(void)state;
	char *got = encode("Ferreira, Tom\xC3\xA1s", 1);

	/* Encoded whole: no bare comma splits the mailbox. */
	assert_string_equal(got, "=?UTF-8?Q?Ferreira=2C_Tom=C3=A1s?=");
	assert_null(strchr(got, ','));
	/* An atom stays as it is; the words that are not atoms join the
	 * encoded run beside them (a quoted-string could not stand there). */
	check_encode("O'Brien \"Tom\xC3\xA1s\" (x) <y>", 1,
		     "O'Brien =?UTF-8?Q?=22Tom=C3=A1s=22_=28x=29_=3Cy=3E?=");
	check_roundtrip("Ferreira, Tom\xC3\xA1s", 1);
	/* ASCII words stay atoms; a run of the others is one encoded-word
	 * when it fits 75 characters, even where it cannot share the line
	 * with "From: " (libetpan folds before it). */
	check_encode("Jos\xC3\xA9 Luis Garc\xC3\xAD" "a", 1,
		     "=?UTF-8?Q?Jos=C3=A9?= Luis =?UTF-8?Q?Garc=C3=ADa?=");
	check_encode("J\xC3\xBCrgen Schmidt", 1, "=?UTF-8?Q?J=C3=BCrgen?= Schmidt");
	/* "Иван Петрович Сидоров": 40 bytes, 56 characters of Base64 */
	check_encode("\xD0\x98\xD0\xB2\xD0\xB0\xD0\xBD \xD0\x9F\xD0\xB5\xD1\x82\xD1\x80\xD0\xBE\xD0\xB2"
		     "\xD0\xB8\xD1\x87 \xD0\xA1\xD0\xB8\xD0\xB4\xD0\xBE\xD1\x80\xD0\xBE\xD0\xB2", 1,
		     "=?UTF-8?B?0JjQstCw0L0g0J/QtdGC0YDQvtCy0LjRhyDQodC40LTQvtGA0L7Qsg==?=");
	check_roundtrip("Jos\xC3\xA9 Luis Garc\xC3\xAD" "a", 1);
}

static void test_encode_subject_words(void **state)
{
	(void)state;
	check_encode("Leaf mulch \xE2\x80\x94 and more", 0,
		     "Leaf mulch =?UTF-8?Q?=E2=80=94?= and more");
	/* Adjacent words that need encoding form one run, so the space
	 * between them is kept (as "_"). */
	check_encode("Tom\xC3\xA1s In\xC3\xAAs ok", 0,
		     "=?UTF-8?Q?Tom=C3=A1s_In=C3=AAs?= ok");
	check_encode("Caf\xC3\xA9, 2 \xE2\x82\xAC", 0,
		     "=?UTF-8?Q?Caf=C3=A9=2C?= 2 =?UTF-8?Q?=E2=82=AC?=");
	check_roundtrip("Leaf mulch \xE2\x80\x94 and more", 0);
	check_roundtrip("Tom\xC3\xA1s  and   In\xC3\xAAs", 0);
	check_roundtrip("\xC3\xA9 \xC3\xA9  a \xC3\xA9", 0);
	check_roundtrip("Caf\xC3\xA9? 50% off_now =?not?= \xF0\x9F\x98\x80", 0);
}

/* A plain word that looks like an encoded-word is encoded, or a reader
 * would decode it. */
static void test_encode_lookalike(void **state)
{
	(void)state;
	char *got = encode("\xC3\xA9 =?UTF-8?Q?x?= y", 0);

	assert_null(strstr(got, " =?UTF-8?Q?x?= "));
	check_roundtrip("\xC3\xA9 =?UTF-8?Q?x?= y", 0);
}

static void check_long(const char *s)
{
	for (int phrase = 0; phrase <= 1; phrase++) {
		char *got = encode(s, phrase);
		size_t words = 0;

		/* Every token is an encoded-word of at most 75 characters
		 * holding whole UTF-8 sequences (decode_word checks). */
		for (const char *p = got; *p;) {
			size_t tl = strcspn(p, " ");
			struct buf tmp = { 0 };
			int rc = tl ? decode_word(p, tl, &tmp) : 0;

			buf_free(&tmp);
			if (rc < 0)
				fail_msg("%s", why);
			words += tl > 0;
			p += tl;
			p += strspn(p, " ");
		}
		assert_true(words > 3);
		const char *back = decoded(got);

		assert_string_equal(back, s);
	}
}

/* Words split only after a space where one fits (the space stays at the
 * end of the word before, so RFC 2047 readers get it back), else after a
 * hyphen, never inside a word that fits an encoded-word: lenient readers
 * (Python's policy.default, Thunderbird) show a split word as two. */
static void test_encode_word_boundaries(void **state)
{
	(void)state;
	/* "Константин Константинович Петрович-Водкин" */
	const char *name = "\xD0\x9A\xD0\xBE\xD0\xBD\xD1\x81\xD1\x82\xD0\xB0\xD0\xBD\xD1\x82\xD0\xB8\xD0\xBD "
		"\xD0\x9A\xD0\xBE\xD0\xBD\xD1\x81\xD1\x82\xD0\xB0\xD0\xBD\xD1\x82\xD0\xB8\xD0\xBD\xD0\xBE\xD0\xB2\xD0\xB8\xD1\x87 "
		"\xD0\x9F\xD0\xB5\xD1\x82\xD1\x80\xD0\xBE\xD0\xB2\xD0\xB8\xD1\x87-\xD0\x92\xD0\xBE\xD0\xB4\xD0\xBA\xD0\xB8\xD0\xBD";

	for (int phrase = 0; phrase < 2; phrase++) {
		char *got = encode(name, phrase);
		struct buf one = { 0 };
		size_t words = 0;

		/* Each word decodes to whole words of the name: a prefix
		 * ending in a space, or the end. */
		for (const char *p = got, *at = name; *p; words++) {
			size_t tl = strcspn(p, " ");

			buf_reset(&one);
			assert_int_equal(decode_word(p, tl, &one), 0);
			assert_memory_equal(one.p, at, one.len);
			at += one.len;
			if (*at)
				assert_int_equal(at[-1], ' ');
			p += tl;
			p += strspn(p, " ");
		}
		buf_free(&one);
		assert_int_equal(words, 3);
		assert_string_equal(decoded(got), name);
	}
	/* Without spaces, a hyphen is the boundary. */
	char hy[512] = "";

	for (int i = 0; i < 3; i++)
		strcat(hy, i ? "-\xD0\x92\xD0\xBE\xD0\xB4\xD0\xBA\xD0\xB8\xD0\xBD\xD0\xBE\xD0\xB2\xD0\xB8\xD1\x87"
			  : "\xD0\x92\xD0\xBE\xD0\xB4\xD0\xBA\xD0\xB8\xD0\xBD\xD0\xBE\xD0\xB2\xD0\xB8\xD1\x87");
	char *got = encode(hy, 1);

	assert_non_null(strstr(got, "?= =?"));
	for (const char *p = got; (p = strstr(p, "?= =?")); p++) {
		struct buf one = { 0 };
		const char *w = p;

		while (w > got && w[-1] != ' ')
			w--;
		assert_int_equal(decode_word(w, (size_t)(p + 2 - w), &one), 0);
		assert_int_equal(one.p[one.len - 1], '-');
		buf_free(&one);
	}
	assert_string_equal(decoded(got), hy);
	/* A name that fits one Base64 word is not split at all. */
	check_encode("\xD0\x9F\xD0\xB5\xD1\x82\xD1\x80\xD0\xBE\xD0\xB2\xD0\xB8\xD1\x87-\xD0\x92\xD0\xBE\xD0\xB4\xD0\xBA\xD0\xB8\xD0\xBD", 1,
		     "=?UTF-8?B?0J/QtdGC0YDQvtCy0LjRhy3QktC+0LTQutC40L0=?=");
}

static void test_encode_long(void **state)
{
	(void)state;
	char s[1024];

	/* 200 characters, all 2-byte. */
	s[0] = '\0';
	for (int i = 0; i < 200; i++)
		strcat(s, "\xC3\xA9");
	check_long(s);
	/* 200 characters of 1-, 2-, 3- and 4-byte sequences, no spaces. */
	s[0] = '\0';
	for (int i = 0; i < 50; i++)
		strcat(s, "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80");
	check_long(s);
	/* 200 characters with spaces, so a subject is one long run. */
	s[0] = '\0';
	for (int i = 0; i < 50; i++)
		strcat(s, "\xE2\x80\x94\xC3\xA9\xC3\xA9 ");
	strcat(s, "\xC3\xA9");
	check_long(s);
}

/* ---- enc_qp ------------------------------------------------------------ */

static char *qp(const char *s, size_t len)
{
	struct buf b = { 0 };

	assert_int_equal(enc_qp(&b, s, len), 0);
	buf_cstr(&b);
	return keep(buf_detach(&b));
}

static void check_qp(const char *s, const char *want)
{
	char *got = qp(s, strlen(s));
	char *back = qp_decode(got, strlen(got));

	assert_string_equal(got, want);
	assert_string_equal(back, s);
}

static void test_qp_basics(void **state)
{
	(void)state;
	check_qp("", "");
	check_qp("plain text\n", "plain text\r\n");
	check_qp("a=b\n", "a=3Db\r\n");
	check_qp("a\nb\n\nc", "a\r\nb\r\n\r\nc");
	/* Blanks are literal inside a line, encoded at its end. */
	check_qp("a b\tc\n", "a b\tc\r\n");
	check_qp("trail \n", "trail=20\r\n");
	check_qp("trail\t\n", "trail=09\r\n");
	check_qp("two  \n", "two =20\r\n");
	check_qp("end ", "end=20");
	/* 8-bit and control bytes. */
	check_qp("Caf\xC3\xA9\n", "Caf=C3=A9\r\n");
	check_qp("\x01\x7F\xFF", "=01=7F=FF");
	/* A CR in the text is data, never a line break. */
	check_qp("a\rb\n", "a=0Db\r\n");
}

static void test_qp_from(void **state)
{
	(void)state;
	check_qp("From here\n", "=46rom here\r\n");
	check_qp("x\nFrom here\n", "x\r\n=46rom here\r\n");
	check_qp("Fromage\n", "Fromage\r\n");
	check_qp("a From b\n", "a From b\r\n");
	check_qp("From", "From");
}

/* No output line may open with "From ": mbox readers would turn it into
 * ">From ", which survives decoding. That includes lines that start after
 * a soft break. */
static void test_qp_from_after_soft_break(void **state)
{
	(void)state;
	char in[128];

	memset(in, 'a', 75);
	strcpy(in + 75, "From here\n");
	char *got = qp(in, strlen(in));
	char *back = qp_decode(got, strlen(got));

	assert_string_equal(back, in);
	for (const char *l = got; l; l = strstr(l, "\r\n"), l = l ? l + 2 : l)
		if (!strncmp(l, "From ", 5))
			fail_msg("an output line opens with \"From \": %s", got);
}

/* No output line opens with ".": SMTP would have to double it (RFC 5321
 * 4.5.2), and a lone "." line would end the message. Lines that start
 * after a soft break included. */
static void test_qp_no_leading_dot(void **state)
{
	(void)state;
	check_qp(".\n", "=2E\r\n");
	check_qp("..hidden\n.\nx.y\n", "=2E.hidden\r\n=2E\r\nx.y\r\n");
	char in[128];

	memset(in, 'a', 75);
	strcpy(in + 75, ".end\n");
	char *got = qp(in, strlen(in));

	assert_string_equal(qp_decode(got, strlen(got)), in);
	for (const char *l = got; l; l = strstr(l, "\r\n"), l = l ? l + 2 : l)
		if (*l == '.')
			fail_msg("an output line opens with \".\": %s", got);
}

static void test_qp_line_length(void **state)
{
	(void)state;
	char in[400], want[600];

	/* 76 characters fit on one line; 77 need a soft break. */
	memset(in, 'a', 76);
	strcpy(in + 76, "\n");
	memset(want, 'a', 76);
	strcpy(want + 76, "\r\n");
	check_qp(in, want);

	memset(in, 'a', 77);
	strcpy(in + 77, "\n");
	memset(want, 'a', 75);
	strcpy(want + 75, "=\r\naa\r\n");
	check_qp(in, want);

	/* 300 characters: four lines of 75 plus "=", then the rest. */
	memset(in, 'x', 300);
	strcpy(in + 300, "\n");
	char *w = want;

	for (int i = 0; i < 3; i++) {
		memset(w, 'x', 75);
		memcpy(w + 75, "=\r\n", 3);
		w += 78;
	}
	memset(w, 'x', 75);
	strcpy(w + 75, "\r\n");
	check_qp(in, want);

	/* An escape is never split by a soft break. */
	memset(in, 'a', 74);
	strcpy(in + 74, "\xC3\xA9\xC3\xA9\n");
	memset(want, 'a', 74);
	strcpy(want + 74, "=\r\n=C3=A9=C3=A9\r\n");
	check_qp(in, want);
}

static void test_qp_random_roundtrip(void **state)
{
	(void)state;
	static const char alphabet[] = "abc =\t\n.F\xC3\xA9\x01~";
	uint32_t x = 12345;
	char *in = keep(malloc(20000));

	for (int round = 0; round < 20; round++) {
		size_t len = 1000 * (size_t)(round + 1) - (size_t)round * 37;

		for (size_t i = 0; i < len; i++) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			/* Long runs of one byte make long lines. */
			in[i] = (x & 0x300) ? 'q' :
				alphabet[x % (sizeof alphabet - 1)];
			if (i >= 5 && x % 97 == 0)
				memcpy(in + i - 5, "From ", 5);
		}
		char *got = qp(in, len);
		char *back = qp_decode(got, strlen(got));

		assert_crlf_lines(got, strlen(got), 76);
		assert_int_equal(strlen(back), len);
		assert_memory_equal(back, in, len);
	}
}

/* ---- token_make -------------------------------------------------------- */

static void test_token(void **state)
{
	(void)state;
	char tok[65], tok2[65], want[65];
	unsigned char mac[32];

	assert_int_equal(token_make(SECRET, "Ann@Example.net", tok), 0);
	assert_string_equal(tok, TOKEN_ANN);
	/* Same value computed here with gnutls, on the lower-cased address. */
	assert_int_equal(gnutls_hmac_fast(GNUTLS_MAC_SHA256, SECRET,
					  strlen(SECRET), "ann@example.net",
					  strlen("ann@example.net"), mac), 0);
	for (int i = 0; i < 32; i++)
		snprintf(want + 2 * i, 3, "%02x", mac[i]);
	assert_string_equal(tok, want);
	assert_int_equal(strlen(tok), 64);
	assert_int_equal(strspn(tok, "0123456789abcdef"), 64);

	assert_int_equal(token_make(SECRET, "ann@example.net", tok2), 0);
	assert_string_equal(tok2, tok);
	assert_int_equal(token_make(SECRET, "bob@example.net", tok2), 0);
	assert_string_equal(tok2, TOKEN_BOB);
	assert_string_not_equal(tok2, tok);
	/* A different secret gives a different token. */
	assert_int_equal(token_make("other-secret", "ann@example.net", tok2), 0);
	assert_string_not_equal(tok2, tok);
}

/* ---- enc_header_safe / utf8_valid -------------------------------------- */

static void test_utf8_valid(void **state)
{
	(void)state;
	static const char *const good[] = {
		"", "abc", "Caf\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
		"\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xEF\xBF\xBD",
		"\xED\x9F\xBF", "\xEE\x80\x80", "\xF4\x8F\xBF\xBF",
	};
	static const char *const bad[] = {
		"\xC0\xAF",             /* overlong '/' */
		"\xC1\xBF",             /* overlong */
		"\xE0\x80\xAF",         /* overlong, 3 bytes */
		"\xE0\x9F\xBF",         /* overlong U+07FF */
		"\xF0\x80\x80\xAF",     /* overlong, 4 bytes */
		"\xF0\x8F\xBF\xBF",     /* overlong U+FFFF */
		"\xED\xA0\x80",         /* surrogate U+D800 */
		"\xED\xBF\xBF",         /* surrogate U+DFFF */
		"\xF4\x90\x80\x80",     /* past U+10FFFF */
		"\xF8\x88\x80\x80\x80", /* 5-byte form */
		"\xFF", "\xFE", "\x80", "a\xBF" "b",
		"\xC3",                 /* truncated */
		"\xE2\x82",             /* truncated */
		"\xF0\x9F\x98",         /* truncated */
		"\xC3" "a", "\xE2\x82" "a", "Caf\xC3\xA9\xC3",
	};

	for (size_t i = 0; i < sizeof good / sizeof *good; i++)
		if (!utf8_valid(good[i], strlen(good[i])))
			fail_msg("refused good[%zu]", i);
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		if (utf8_valid(bad[i], strlen(bad[i])))
			fail_msg("accepted bad[%zu]", i);
	/* len is honoured both ways. */
	assert_false(utf8_valid("Caf\xC3\xA9", 4));
	assert_true(utf8_valid("abc\xFF", 3));
}

/* The skeleton's boundary check: the parameter and the delimiter lines
 * are where a boundary belongs; anywhere else (a file name in a part's
 * header) it would end the part there. */
static void test_boundary_clear(void **state)
{
	(void)state;
	const char *b = "=_Rab.12";
	const char *ok = "MIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=\"=_Rab.12\"\r\n"
			 "\r\n--=_Rab.12\r\nContent-Type: text/html\r\n\r\nx\r\n--=_Rab.12--\r\n";
	assert_true(skel_boundary_clear(ok, strlen(ok), b));
	assert_true(skel_boundary_clear(ok, strlen(ok), "=_Mab.12")); /* not there at all */
	const char *named = "Content-Type: multipart/mixed; boundary=\"=_Rab.12\"\r\n\r\n"
			    "--=_Rab.12\r\nContent-Disposition: attachment; filename=\"--=_Rab.12\"\r\n"
			    "\r\nx\r\n--=_Rab.12--\r\n";
	assert_false(skel_boundary_clear(named, strlen(named), b));
	const char *inline_text = "\r\n--=_Rab.12\r\n\r\nsee =_Rab.12 here\r\n--=_Rab.12--\r\n";
	assert_false(skel_boundary_clear(inline_text, strlen(inline_text), b));
	/* a longer boundary that begins with this one is not its line */
	const char *longer = "\r\n--=_Rab.123\r\n";
	assert_false(skel_boundary_clear(longer, strlen(longer), b));
	/* at the very end, with nothing after it */
	const char *tail = "x\r\n--=_Rab.12";
	assert_false(skel_boundary_clear(tail, strlen(tail), b));
}

static void test_header_safe(void **state)
{
	(void)state;
	assert_true(enc_header_safe(""));
	assert_true(enc_header_safe("Ann Ng"));
	assert_true(enc_header_safe("Tom\xC3\xA1s \xF0\x9F\x98\x80"));
	assert_false(enc_header_safe("a\rb"));
	assert_false(enc_header_safe("a\nb"));
	assert_false(enc_header_safe("Eve\r\nBcc: victim@example.com"));
	assert_false(enc_header_safe("trailing\n"));
	assert_false(enc_header_safe("\xC0\xAF"));
	assert_false(enc_header_safe("\xED\xA0\x80"));
	assert_false(enc_header_safe("x\xE2\x82"));
}

/* ---- msg_init + msg_build ---------------------------------------------- */

static const char *const cols[] = { "email", "name", "city" };

struct fixture {
	struct config cfg;
	struct post post;
	struct msg_ctx *m;
	struct buf out;
	struct msg_out info;
	char err[512];
};

static void config_defaults(struct config *c)
{
	memset(c, 0, sizeof *c);
	c->path = "test.conf";
	c->from = "Joy <joy@example.org>";
	c->from_name = "Joy";
	c->from_addr = "joy@example.org";
	c->list_id = "Garden News <news.example.org>";
	c->list_name = "Garden News";
	c->templates = "fixtures/templates";
	c->template_name = "default";
	c->unsub.url = "https://example.org/u?e={{email}}&t={{token}}";
	c->unsub.mailto = "unsub@example.org";
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	if (!fx)
		return -1;
	config_defaults(&fx->cfg);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	msg_free(fx->m);
	post_free(&fx->post);
	buf_free(&fx->out);
	free(fx);
	return gc(NULL);
}

static int group_setup(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	return 0;
}

static void load_post(struct fixture *fx, const char *src)
{
	post_free(&fx->post);
	if (post_parse(&fx->post, "x.md", src, strlen(src), 72, fx->err,
		       sizeof fx->err) != POST_OK)
		fail_msg("post_parse: %s", fx->err);
}

static int init(struct fixture *fx, const char *const *c, size_t nc,
		const char *secret, int test_mode)
{
	msg_free(fx->m);
	fx->err[0] = '\0';
	return msg_new(&fx->m, &fx->cfg, &fx->post, c, nc, secret,
		       test_mode ? MSG_TEST : 0, fx->err, sizeof fx->err);
}

static void init_ok(struct fixture *fx, const char *post_src, int test_mode)
{
	load_post(fx, post_src);
	if (init(fx, cols, 3, SECRET, test_mode) != MSG_OK)
		fail_msg("msg_init: %s", fx->err);
}

static int build(struct fixture *fx, const char *email, const char *name,
		 const char *city)
{
	const char *row[3] = { email, name, city };

	fx->err[0] = '\0';
	return msg_build(fx->m, row, email, name, NOW, &fx->out, &fx->info,
			 fx->err, sizeof fx->err);
}

/* The header block of a message, unfolded: a malloc'd string of
 * "Name: value\n" lines. */
static char *headers_of(const char *msg)
{
	const char *end = strstr(msg, "\r\n\r\n");
	struct buf b = { 0 };

	assert_non_null(end);
	for (const char *p = msg; p < end + 2; p++) {
		if (p[0] == '\r' && p[1] == '\n') {
			if (p + 2 < end + 2 && (p[2] == ' ' || p[2] == '\t')) {
				p++; /* fold: drop CRLF, keep the blank */
				continue;
			}
			assert_int_equal(buf_addc(&b, '\n'), 0);
			p++;
			continue;
		}
		assert_int_equal(buf_addc(&b, *p), 0);
	}
	buf_cstr(&b);
	return keep(buf_detach(&b));
}

/* The value of header `name` (exactly one such header), malloc'd. */
static char *header(const char *hdrs, const char *name)
{
	char key[64];
	const char *hit = NULL;
	size_t n = 0;

	snprintf(key, sizeof key, "\n%s: ", name);
	if (!strncmp(hdrs, key + 1, strlen(key + 1))) {
		hit = hdrs + strlen(key + 1);
		n++;
	}
	for (const char *p = hdrs; (p = strstr(p, key)); p++) {
		if (!hit)
			hit = p + strlen(key);
		n++;
	}
	if (n != 1)
		fail_msg("%zu \"%s\" headers in:\n%s", n, name, hdrs);
	return keep(strndup(hit, strcspn(hit, "\n")));
}

static void check_header(const char *hdrs, const char *name, const char *want)
{
	char *v = header(hdrs, name);

	assert_string_equal(v, want);
}

static int has_header(const char *hdrs, const char *name)
{
	char key[64];

	snprintf(key, sizeof key, "\n%s:", name);
	return !strncmp(hdrs, key + 1, strlen(key + 1)) || strstr(hdrs, key);
}

/* The decoded body of the part with this Content-Type (malloc'd). */
static char *part_body(const char *msg, const char *ctype)
{
	char key[128];

	snprintf(key, sizeof key, "Content-Type: %s; charset=\"utf-8\"\r\n"
		 "Content-Transfer-Encoding: quoted-printable\r\n\r\n", ctype);
	const char *p = strstr(msg, key);

	assert_non_null(p);
	p += strlen(key);
	const char *e = strstr(p, "\r\n--=_");

	assert_non_null(e);
	/* The CRLF before the delimiter belongs to the delimiter. */
	return qp_decode(p, (size_t)(e - p));
}

static const char *const post_src =
	"---\nsubject: Hello {{city}}\ndate: 2026-11-30 08:00\n"
	"preheader: Three things\n---\n"
	"Hi {{name|reader}}, [unsubscribe]({{unsubscribe_url}}).\n";

#define UNSUB_URL "https://example.org/u?e=ann%2Bx%40example.net&t=" TOKEN_ANNX

static void test_build_message(void **state)
{
	struct fixture *fx = *state;

	init_ok(fx, post_src, 0);
	assert_int_equal(build(fx, "ann+x@example.net", "Ann Ng", "Oslo"),
			 MSG_OK);
	assert_string_equal(fx->err, "");
	const char *msg = buf_cstr(&fx->out);

	assert_int_equal(strlen(msg), fx->out.len);
	assert_crlf_lines(msg, fx->out.len, 998);

	char *h = headers_of(msg);

	check_header(h, "From", "Joy <joy@example.org>");
	check_header(h, "To", "Ann Ng <ann+x@example.net>");
	check_header(h, "Subject", "Hello Oslo");
	check_header(h, "Date", "Mon, 30 Nov 2026 08:00:00 +0000");
	check_header(h, "MIME-Version", "1.0");
	check_header(h, "List-Id", "Garden News <news.example.org>");
	check_header(h, "List-Unsubscribe",
		     "<" UNSUB_URL ">, "
		     "<mailto:unsub@example.org?subject=unsubscribe%20"
		     "ann%2Bx%40example.net%20" TOKEN_ANNX ">");
	check_header(h, "List-Unsubscribe-Post",
		     "List-Unsubscribe=One-Click");
	assert_false(has_header(h, "Reply-To"));
	assert_false(has_header(h, "Bcc"));

	/* Message-ID on the From domain, as reported in info. */
	char *mid = header(h, "Message-ID");

	assert_string_equal(mid, fx->info.message_id);
	assert_int_equal(mid[0], '<');
	assert_non_null(strstr(mid, "@example.org>"));
	assert_int_equal(mid[strlen(mid) - 1], '>');
	assert_string_equal(fx->info.mail_from, "joy@example.org");

	/* multipart/alternative, its boundary used as the delimiter. */
	char *ct = header(h, "Content-Type");
	const char *bp = strstr(ct, "boundary=\"");

	assert_int_equal(strncmp(ct, "multipart/alternative;", 22), 0);
	assert_non_null(bp);
	bp += strlen("boundary=\"");
	char *boundary = keep(strndup(bp, strcspn(bp, "\"")));
	char delim[200], close[200];

	assert_true(strlen(boundary) > 0);
	snprintf(delim, sizeof delim, "\r\n--%s\r\n", boundary);
	snprintf(close, sizeof close, "\r\n--%s--\r\n", boundary);
	assert_int_equal(count(msg, delim), 2);
	assert_int_equal(count(msg, close), 1);
	assert_string_equal(msg + fx->out.len - strlen(close), close);

	/* text/plain first, then text/html. */
	const char *tp = strstr(msg, "Content-Type: text/plain");
	const char *hp = strstr(msg, "Content-Type: text/html");

	assert_non_null(tp);
	assert_non_null(hp);
	assert_true(tp < hp);
	assert_true(strstr(msg, delim) < tp);

	char *text = part_body(msg, "text/plain");
	char *html = part_body(msg, "text/html");

	assert_string_equal(text,
			    "Hi Ann Ng, unsubscribe [1].\n\n[1] " UNSUB_URL
			    "\n\n-- \n" UNSUB_URL "\n");
	assert_string_equal(html,
			    "<p><p>Hi Ann Ng, <a href=\"https://example.org/u?"
			    "e=ann%2Bx%40example.net&amp;t=" TOKEN_ANNX
			    "\">unsubscribe</a>.</p>\n</p><a href=\"https://"
			    "example.org/u?e=ann%2Bx%40example.net&amp;t="
			    TOKEN_ANNX "\">u</a>\n");
}

static void test_build_twice(void **state)
{
	struct fixture *fx = *state;
	char first[160];

	init_ok(fx, post_src, 0);
	assert_int_equal(build(fx, "ann@example.net", "", "Oslo"), MSG_OK);
	size_t len1 = fx->out.len;

	snprintf(first, sizeof first, "%s", fx->info.message_id);
	/* Appends: the second message follows the first. */
	assert_int_equal(build(fx, "bob@example.net", "Bob", "Bergen"),
			 MSG_OK);
	assert_true(fx->out.len > len1);
	assert_string_not_equal(fx->info.message_id, first);

	char *h = headers_of(fx->out.p + len1);

	check_header(h, "To", "Bob <bob@example.net>");
	check_header(h, "Subject", "Hello Bergen");
	char *lu = header(h, "List-Unsubscribe");

	assert_non_null(strstr(lu, "t=" TOKEN_BOB ">"));
	/* The first had no name: a bare address, and the fallback. */
	fx->out.p[len1] = '\0';
	h = headers_of(fx->out.p);
	check_header(h, "To", "ann@example.net");
	char *text = part_body(fx->out.p, "text/plain");

	assert_true(!strncmp(text, "Hi reader, unsubscribe [1].", 27));
}

static void test_build_encoded_headers(void **state)
{
	struct fixture *fx = *state;

	fx->cfg.from_name = "Garden \xC3\x86r\xC3\xB8, Ltd";
	init_ok(fx, "---\nsubject: Caf\xC3\xA9 in {{city}} \xE2\x80\x94 news\n"
		"---\nHi\n", 1);
	assert_int_equal(build(fx, "t@example.net", "Ferreira, Tom\xC3\xA1s",
			       "M\xC3\xA1laga"), MSG_OK);
	assert_crlf_lines(fx->out.p, fx->out.len, 998);
	char *h = headers_of(fx->out.p);

	check_header(h, "From",
		     "Garden =?UTF-8?Q?=C3=86r=C3=B8=2C?= Ltd <joy@example.org>");
	check_header(h, "To",
		     "=?UTF-8?Q?Ferreira=2C_Tom=C3=A1s?= <t@example.net>");
	/* test_mode adds the prefix; the subject decodes back exactly. */
	char *subj = header(h, "Subject");
	const char *dec = decoded(subj);

	assert_string_equal(dec, "[TEST] Caf\xC3\xA9 in M\xC3\xA1laga "
			    "\xE2\x80\x94 news");

	/* An ASCII name with a comma is quoted, not left bare. */
	buf_reset(&fx->out);
	assert_int_equal(build(fx, "a@example.net", "Ng, Ann", "Oslo"),
			 MSG_OK);
	h = headers_of(fx->out.p);
	check_header(h, "To", "\"Ng, Ann\" <a@example.net>");
}

static void test_build_long_subject(void **state)
{
	struct fixture *fx = *state;
	char src[1024] = "---\nsubject: {{city}} ", want[1024] = "Oslo ";

	for (int i = 0; i < 200; i++) {
		const char *w = i % 10 == 9 ? "\xC3\xA9 " : "\xC3\xA9";

		strcat(src, w);
		strcat(want, w);
	}
	strcat(src, "end\n---\nHi\n");
	strcat(want, "end");
	init_ok(fx, src, 0);
	assert_int_equal(build(fx, "a@example.net", "Ann", "Oslo"), MSG_OK);
	/* Folded: no line of the Subject header is longer than 78. */
	const char *sb = strstr(fx->out.p, "\r\nSubject: ");

	assert_non_null(sb);
	sb += 2;
	const char *se = sb;

	do
		se = strstr(se, "\r\n") + 2;
	while (*se == ' ' || *se == '\t');
	assert_true(se - sb > 300);
	assert_crlf_lines(sb, (size_t)(se - sb), 78);
	char *h = headers_of(fx->out.p);
	char *subj = header(h, "Subject");
	const char *dec = decoded(subj);

	assert_string_equal(dec, want);
}

static void test_build_unsub_variants(void **state)
{
	struct fixture *fx = *state;

	/* mailto only: no one-click header. */
	fx->cfg.unsub.url = NULL;
	init_ok(fx, post_src, 0);
	assert_int_equal(build(fx, "a@example.net", "Ann", "Oslo"), MSG_OK);
	char *h = headers_of(fx->out.p);

	char tok[65], mailto[300];
	assert_int_equal(token_make(SECRET, "a@example.net", tok), 0);
	snprintf(mailto, sizeof mailto,
		 "mailto:unsub@example.org?subject=unsubscribe%%20a%%40example.net%%20%s", tok);
	char want[400];
	snprintf(want, sizeof want, "<%s>", mailto);
	check_header(h, "List-Unsubscribe", want);
	assert_false(has_header(h, "List-Unsubscribe-Post"));
	char *text = part_body(fx->out.p, "text/plain");

	char want_text[1000];
	snprintf(want_text, sizeof want_text,
		 "Hi Ann, unsubscribe [1].\n\n[1] %s\n\n-- \n%s\n", mailto, mailto);
	assert_string_equal(text, want_text);

	/* No secret: the address alone (a request from it still works). */
	buf_reset(&fx->out);
	load_post(fx, post_src);
	assert_int_equal(init(fx, cols, 3, NULL, 0), MSG_OK);
	assert_int_equal(build(fx, "a@example.net", "Ann", "Oslo"), MSG_OK);
	h = headers_of(fx->out.p);
	check_header(h, "List-Unsubscribe",
		     "<mailto:unsub@example.org?subject=unsubscribe%20a%40example.net>");

	/* http (not https): no one-click header either. */
	fx->cfg.unsub.url = "http://example.org/u?e={{email}}";
	fx->cfg.unsub.mailto = NULL;
	buf_reset(&fx->out);
	init_ok(fx, post_src, 0);
	assert_int_equal(build(fx, "a@example.net", "Ann", "Oslo"), MSG_OK);
	h = headers_of(fx->out.p);
	check_header(h, "List-Unsubscribe",
		     "<http://example.org/u?e=a%40example.net>");
	assert_false(has_header(h, "List-Unsubscribe-Post"));
}

/* An unknown field in the post body is blamed on the post, at its line
 * there, in check's words (not on the layout template's own {{body}}). */
static void test_init_unknown_body_field(void **state)
{
	struct fixture *fx = *state;

	load_post(fx, "---\nsubject: Hi\n---\nHi {{nmae}}\n");
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_FAIL);
	assert_string_equal(fx->err, "x.md:4: unknown merge field \"nmae\": no list "
			    "column nor built-in field has that name (did you mean \"name\"?)");
	load_post(fx, "---\nsubject: Hi\n---\nHi\n\nBye {{ {{{ }} {{nmae}}\n");
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_FAIL);
	assert_string_equal(fx->err, "x.md:6: malformed merge field \"{{ {{{ }}\": expected "
			    "{{name}} or {{name|fallback}} (for a literal \"{{\", write \\{{); "
			    "and 1 more (herald check lists each)");
	/* In code a field is text, so nothing is wrong with it. */
	load_post(fx, "---\nsubject: Hi\n---\n`{{nmae}}` and\n\n    {{ {{{\n");
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_OK);
}

/* An unknown field in the layout template is reported with its own line
 * (fixtures/templates/badfield.html: "{{nope}}" on line 2). */
static void test_init_unknown_template_field(void **state)
{
	struct fixture *fx = *state;

	fx->cfg.template_name = "badfield";
	load_post(fx, "---\nsubject: Hi\n---\nOne\n\nTwo\n");
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_FAIL);
	assert_string_equal(fx->err, "fixtures/templates/badfield.html:2: "
			    "unknown merge field \"nope\": no list column nor "
			    "built-in field has that name (did you mean \"name\"?)");
}

/* {{date}} is the day as written: with an offset the machine's zone may
 * already (or still) be on another day. */
static void test_date_field_as_written(void **state)
{
	struct fixture *fx = *state;

	setenv("TZ", "America/New_York", 1);
	tzset();
	init_ok(fx, "---\nsubject: Issue of {{date}}\ndate: 2026-11-30 00:30 +01:00\n---\nHi\n", 0);
	assert_int_equal(build(fx, "a@example.net", "Ann", "Oslo"), MSG_OK);
	assert_string_equal(header(headers_of(fx->out.p), "Subject"), "Issue of 30 November 2026");
	setenv("TZ", "UTC", 1);
	tzset();
}

static void test_init_errors(void **state)
{
	struct fixture *fx = *state;

	load_post(fx, "---\nsubject: Hi {{town}}\n---\nHi\n");
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_FAIL);
	assert_string_equal(fx->err, "x.md: subject: unknown merge field "
			    "\"town\": no list column nor built-in field has "
			    "that name (did you mean \"token\"?)");

	load_post(fx, "---\nsubject: Re: {{subject}}\n---\nHi\n");
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_FAIL);
	assert_string_equal(fx->err,
			    "x.md: the subject cannot contain {{subject}}");

	load_post(fx, post_src);
	assert_int_equal(init(fx, cols, 3, NULL, 0), MSG_FAIL);
	assert_string_equal(fx->err, "unsubscribe.url uses {{token}} but no "
			    "secret is set");

	fx->cfg.template_name = "missing";
	assert_int_equal(init(fx, cols, 3, SECRET, 0), MSG_NOFILE);
	assert_string_equal(fx->err,
			    "fixtures/templates/missing.html: No such file or "
			    "directory (template = \"missing\" in test.conf)");
}

/* ---- header injection -------------------------------------------------- */

static void expect_badrow(struct fixture *fx, const char *email,
			  const char *name, const char *city, const char *want)
{
	buf_reset(&fx->out);
	assert_int_equal(buf_adds(&fx->out, "sentinel"), 0);
	assert_int_equal(build(fx, email, name, city), MSG_BADROW);
	assert_string_equal(fx->err, want);
	/* Nothing was appended. */
	assert_int_equal(fx->out.len, 8);
	assert_string_equal(buf_cstr(&fx->out), "sentinel");
}

static void test_injection_name(void **state)
{
	struct fixture *fx = *state;

	init_ok(fx, post_src, 0);
	expect_badrow(fx, "eve@example.net", "Eve\r\nBcc: victim@example.com",
		      "Oslo", "line break in the name");
	expect_badrow(fx, "eve@example.net", "Eve\nBcc: victim@example.com",
		      "Oslo", "line break in the name");
	expect_badrow(fx, "eve@example.net", "Eve\r", "Oslo",
		      "line break in the name");
	expect_badrow(fx, "eve@example.net\r\nBcc: victim@example.com", "Eve",
		      "Oslo", "line break in the address");
	/* The context still works for the next good row. */
	buf_reset(&fx->out);
	assert_int_equal(build(fx, "ann@example.net", "Ann", "Oslo"), MSG_OK);
	assert_null(strstr(fx->out.p, "victim"));
}

static void test_injection_subject_field(void **state)
{
	struct fixture *fx = *state;

	init_ok(fx, post_src, 0);
	expect_badrow(fx, "a@example.net", "Ann",
		      "Oslo\nBcc: victim@example.com",
		      "line break in field \"city\", which the subject uses");
	expect_badrow(fx, "a@example.net", "Ann", "Oslo\r\n",
		      "line break in field \"city\", which the subject uses");
	expect_badrow(fx, "a@example.net", "Ann", "\rOslo",
		      "line break in field \"city\", which the subject uses");
}

static void test_invalid_utf8_field(void **state)
{
	struct fixture *fx = *state;

	init_ok(fx, post_src, 0);
	expect_badrow(fx, "a@example.net", "Ann", "Oslo\xFF",
		      "field \"city\" is not valid UTF-8");
	expect_badrow(fx, "a@example.net", "Ann", "\xC0\xAF",
		      "field \"city\" is not valid UTF-8");
	expect_badrow(fx, "a@example.net", "Ann\xED\xA0\x80", "Oslo",
		      "field \"name\" is not valid UTF-8");
}

/* A line break in a field the headers do not use is body text: allowed,
 * and it reaches the wire as CRLF. */
static void test_line_break_in_body_field(void **state)
{
	struct fixture *fx = *state;

	init_ok(fx, "---\nsubject: Hi\n---\nFrom {{city}}.\n", 0);
	assert_int_equal(build(fx, "a@example.net", "Ann",
			       "North\nSouth\r\nEast\rWest"), MSG_OK);
	assert_crlf_lines(fx->out.p, fx->out.len, 998);
	char *h = headers_of(fx->out.p);

	check_header(h, "Subject", "Hi");
	char *text = part_body(fx->out.p, "text/plain");

	assert_int_equal(strncmp(text, "From North\nSouth\nEast\nWest.\n",
				 28), 0);
	char *html = part_body(fx->out.p, "text/html");

	assert_int_equal(strncmp(html, "<p><p>From North\nSouth\nEast\nWest."
				 "</p>\n", 38), 0);
}


/* The mailto: a reader's client fills in names the reader by address
 * and token, so the request is theirs whatever address it comes from. */
static void test_mailto_request_round_trip(void **state)
{
	struct fixture *fx = *state;

	init_ok(fx, post_src, 0);
	assert_int_equal(build(fx, "jane+news@example.com", "Jane", "Oslo"), MSG_OK);
	char *h = headers_of(fx->out.p);
	char *lu = header(h, "List-Unsubscribe");
	const char *q = strstr(lu, "<mailto:unsub@example.org?subject=");
	assert_non_null(q);
	q += strlen("<mailto:unsub@example.org?subject=");
	char subject[400];
	size_t n = 0;
	for (; *q && *q != '>' && n + 1 < sizeof subject; q++) {
		unsigned v;
		if (*q == '%' && sscanf(q + 1, "%2x", &v) == 1) {
			subject[n++] = (char)v;
			q += 2;
		} else
			subject[n++] = *q;
	}
	subject[n] = '\0';
	char req[600], addr[320], reason[300];
	snprintf(req, sizeof req, "From: Jane <jane@example.com>\r\nSubject: %s\r\n\r\nplease\r\n",
		 subject);
	assert_int_equal(unsub_parse_request(req, strlen(req), SECRET, addr, sizeof addr, reason,
					     sizeof reason), UNSUB_REQUEST);
	assert_string_equal(addr, "jane+news@example.com");
	/* Another reader's token does not pass for hers. */
	char *t = strstr(req, "example.com ") + strlen("example.com ");
	t[0] = t[0] == 'a' ? 'b' : 'a';
	assert_int_not_equal(unsub_parse_request(req, strlen(req), SECRET, addr, sizeof addr, reason,
						 sizeof reason), UNSUB_REQUEST);
}

/* The quoted-printable fast path (layouts encoded once, merged lines per
 * reader) must give exactly what encoding the rendered parts gives. */
static void test_qp_fast_path_matches(void **state)
{
	struct fixture *fx = *state;
	static const char *const values[] = {
		"Ann", "", "Ann\r\nFrom here ", "Bob\r", "\rx", "trailing \n",
		"\n\nFrom x", "Zo\xc3\xab \xc3\x85ngstr\xc3\xb6m", "a=b<c>&\"d\"",
		"From ", " \t", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
	};
	size_t nv = sizeof values / sizeof *values;
	fx->cfg.template_name = "qp";
	init_ok(fx, "---\nsubject: Hi {{name|there}}\n---\nHello **{{name|you}}**,\n\nFrom the garden: {{city}}.\n", 0);
	/* The reference: a context that renders the parts, then encodes. */
	struct msg_ctx *keep = NULL;
	assert_int_equal(msg_new(&keep, &fx->cfg, &fx->post, cols, 3, SECRET, MSG_KEEP_PARTS,
				 fx->err, sizeof fx->err), MSG_OK);
	for (size_t i = 0; i < nv; i++) {
		for (size_t k = 0; k < nv; k++) {
			/* Names bound for headers must be one line; the
			 * body-only city takes every value. */
			const char *name = strpbrk(values[i], "\r\n") ? "Ann" : values[i];
			struct buf fast_t = {0}, fast_h = {0};
			struct msg_parts ref;
			buf_reset(&fx->out);
			assert_int_equal(build(fx, "ann@example.net", name, values[k]), MSG_OK);
			msg_last_parts(fx->m, &ref);
			assert_int_equal(buf_add(&fast_t, ref.qp_text->p, ref.qp_text->len), 0);
			assert_int_equal(buf_add(&fast_h, ref.qp_html->p, ref.qp_html->len), 0);
			const char *row[3] = {"ann@example.net", name, values[k]};
			struct buf out = {0};
			assert_int_equal(msg_build(keep, row, row[0], name, NOW, &out, &fx->info,
						   fx->err, sizeof fx->err), MSG_OK);
			buf_free(&out);
			msg_last_parts(keep, &ref);
			const struct buf *rt = ref.qp_text, *rh = ref.qp_html;
			if (fast_t.len != rt->len || memcmp(fast_t.p, rt->p, fast_t.len) ||
			    fast_h.len != rh->len || memcmp(fast_h.p, rh->p, fast_h.len))
				print_message("values %zu/%zu:\n--- fast text\n%s\n--- reference text\n%s\n--- fast html\n%s\n--- reference html\n%s\n",
					      i, k, buf_cstr(&fast_t), rt->p, buf_cstr(&fast_h), rh->p);
			assert_int_equal(fast_t.len, rt->len);
			assert_memory_equal(fast_t.p, rt->p, fast_t.len);
			assert_int_equal(fast_h.len, rh->len);
			assert_memory_equal(fast_h.p, rh->p, fast_h.len);
			buf_free(&fast_t);
			buf_free(&fast_h);
		}
	}
	msg_free(keep);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_encode_ascii, gc),
		cmocka_unit_test_setup_teardown(test_mailto_request_round_trip, setup, teardown),
		cmocka_unit_test_teardown(test_encode_cafe, gc),
		cmocka_unit_test_teardown(test_encode_phrase_whole, gc),
		cmocka_unit_test_teardown(test_encode_subject_words, gc),
		cmocka_unit_test_teardown(test_encode_word_boundaries, gc),
		cmocka_unit_test_teardown(test_encode_long, gc),
		cmocka_unit_test_teardown(test_qp_basics, gc),
		cmocka_unit_test_teardown(test_qp_from, gc),
		cmocka_unit_test_teardown(test_qp_no_leading_dot, gc),
		cmocka_unit_test_teardown(test_qp_line_length, gc),
		cmocka_unit_test_teardown(test_qp_random_roundtrip, gc),
		cmocka_unit_test_teardown(test_token, gc),
		cmocka_unit_test_teardown(test_utf8_valid, gc),
		cmocka_unit_test_teardown(test_header_safe, gc),
		cmocka_unit_test_teardown(test_boundary_clear, gc),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_qp_fast_path_matches),
		T(test_build_message),
		T(test_build_twice),
		T(test_build_encoded_headers),
		T(test_build_long_subject),
		T(test_build_unsub_variants),
		T(test_init_errors),
		T(test_date_field_as_written),
		T(test_injection_name),
		T(test_injection_subject_field),
		T(test_invalid_utf8_field),
		T(test_line_break_in_body_field),
		/* Regression tests for bugs found while writing these (fixed). */
		T(test_init_unknown_body_field),
		T(test_init_unknown_template_field),
#undef T
		cmocka_unit_test_teardown(test_qp_from_after_soft_break, gc),
		cmocka_unit_test_teardown(test_encode_lookalike, gc),
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
