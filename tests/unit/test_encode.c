/* Unit tests for compose/encode.c: RFC 2047 words, quoted-printable and
 * header safety, checked by exact strings and by decoding the output
 * again with the independent decoders of decode.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "compose/encode.h"
#include "decode.h"

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

/* ---- enc_header_safe --------------------------------------------------- */

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_encode_ascii, gc),
		cmocka_unit_test_teardown(test_encode_cafe, gc),
		cmocka_unit_test_teardown(test_encode_phrase_whole, gc),
		cmocka_unit_test_teardown(test_encode_subject_words, gc),
		cmocka_unit_test_teardown(test_encode_word_boundaries, gc),
		cmocka_unit_test_teardown(test_encode_long, gc),
		cmocka_unit_test_teardown(test_encode_lookalike, gc),
		cmocka_unit_test_teardown(test_qp_basics, gc),
		cmocka_unit_test_teardown(test_qp_from, gc),
		cmocka_unit_test_teardown(test_qp_from_after_soft_break, gc),
		cmocka_unit_test_teardown(test_qp_no_leading_dot, gc),
		cmocka_unit_test_teardown(test_qp_line_length, gc),
		cmocka_unit_test_teardown(test_qp_random_roundtrip, gc),
		cmocka_unit_test_teardown(test_header_safe, gc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
