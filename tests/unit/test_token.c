/* util/token.c: the tokens in links already sent must keep matching, so
 * the values are fixed here. They were computed apart from herald, with
 * Python's hmac module:
 *   hmac.new(secret, msg, hashlib.sha256).hexdigest()
 * msg the lower-case address, or "confirm\n" address "\n" name "\n" EXPIRES
 * for a confirmation token. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include "util/token.h"

#define CONFIRM_HEX "7b27b020ee752cff8413b375bf332909924a2208a5ca6506f031be3a64490ad3"

struct vector {
	const char *secret, *email, *hex;
};

static const struct vector vectors[] = {
	{"same-output-secret",
	 "Joy@Example.ORG",
	 "d9ddb1b3c19356eae39b02b17a420318c649b67cb76ba93d6fce10c60f7d858d"},
	{"same-output-secret",
	 "priya.raman@example.com",
	 "49bad677217b9ca6966bf6d3d15b7c85ea53e30d34424da46c0a9e8f9f59e3f1"},
	/* only ASCII is lower-cased */
	{"same-output-secret",
	 "Zo\xc3\xab.\xc3\x85ngstr\xc3\xb6m@EXAMPLE.net",
	 "1f4d8c08f9774aeb2a85d98bcaef75ea2d574dfecb0cbd23d161ee5508e6fdf3"},
	/* 64, 65 and 132 bytes: around token.c's 64-byte chunks */
	{"same-output-secret",
	 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" "aaaaaaaaaaaaaaaaaaaa@example.org",
	 "478f1654c97bdcf365b2111f8084a1531c5f2e1eb8f9694e5a824c0962a5248e"},
	{"same-output-secret",
	 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" "bbbbbbbbbbbbbbbbbbbbb@example.org",
	 "fada4b8132004ecde943f9fbcfbe2954b968445c763c94057f5200fc0e8ea707"},
	{"same-output-secret",
	 "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	 "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC@Example.org",
	 "f9e0bcb7a407fb3b357a6aad5122dda650859a53742c9b678c786cd1e14584a8"},
	/* a key of one SHA-256 block, and one longer (HMAC hashes it) */
	{"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
	 "Joy@Example.ORG",
	 "3c299263d3ff8e34677fb53c30827977fce5b1500409015bd8c1541d7031f7de"},
	{"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
	 "priya.raman@example.com",
	 "725faf8abea8d9beb43003a3e2fea86f0a9d3b97257a9ecd2c259c05a5e18839"},
	{"a longer secret than one SHA-256 block, so HMAC hashes it first: 0123456789abcdef",
	 "Joy@Example.ORG",
	 "0039843de72f12541f96a29775fc185f554b44979902c4525f0204d4c4896824"},
	{"a longer secret than one SHA-256 block, so HMAC hashes it first: 0123456789abcdef",
	 "priya.raman@example.com",
	 "2c0f1ff626a56b314f577fe7eb0d8edbf72166416cb074c65363b29ee66471c7"},
};

static void test_make_matches_vectors(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
		const struct vector *v = &vectors[i];
		char tok[TOKEN_LEN + 1];
		assert_int_equal(token_make(v->secret, v->email, tok), 0);
		assert_string_equal(tok, v->hex);
		struct token_key *k = token_key_new(v->secret);
		assert_non_null(k);
		memset(tok, 'x', sizeof tok);
		assert_int_equal(token_key_make(k, v->email, tok), 0);
		assert_string_equal(tok, v->hex);
		token_key_free(k);
	}
}

/* One key, many tokens: a copy of the keyed state must not carry what
 * an earlier token fed into it. */
static void test_key_reused(void **state)
{
	(void)state;
	struct token_key *k = token_key_new(vectors[0].secret);
	assert_non_null(k);
	for (int round = 0; round < 3; round++)
		for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
			if (strcmp(vectors[i].secret, vectors[0].secret))
				continue;
			char tok[TOKEN_LEN + 1];
			assert_int_equal(token_key_make(k, vectors[i].email, tok), 0);
			assert_string_equal(tok, vectors[i].hex);
			assert_int_equal(token_key_check(k, vectors[i].email, vectors[i].hex), 1);
		}
	token_key_free(k);
}

static void test_check(void **state)
{
	(void)state;
	const struct vector *v = &vectors[0];
	struct token_key *k = token_key_new(v->secret);
	char upper[TOKEN_LEN + 1], wrong[TOKEN_LEN + 1];
	for (size_t i = 0; i <= TOKEN_LEN; i++)
		upper[i] = (char)(v->hex[i] >= 'a' && v->hex[i] <= 'f' ? v->hex[i] - 32 : v->hex[i]);
	memcpy(wrong, v->hex, sizeof wrong);
	wrong[TOKEN_LEN - 1] = wrong[TOKEN_LEN - 1] == '0' ? '1' : '0';
	assert_int_equal(token_key_check(k, v->email, v->hex), 1);
	assert_int_equal(token_key_check(k, v->email, upper), 1);
	assert_int_equal(token_key_check(k, v->email, wrong), 0);
	assert_int_equal(token_key_check(k, "someone.else@example.org", v->hex), 0);
	assert_int_equal(token_key_check(k, v->email, "abc"), 0);
	assert_int_equal(token_check(v->secret, v->email, upper), 1);
	assert_int_equal(token_check(v->secret, v->email, wrong), 0);
	assert_int_equal(token_check("another secret", v->email, v->hex), 0);
	token_key_free(k);
	token_key_free(NULL);
}

static void test_confirm(void **state)
{
	(void)state;
	char tok[TOKEN_CONFIRM_MAX];
	assert_int_equal(token_confirm_make("signup-secret", "Jane.Doe@Example.ORG", "Jane Doe",
					    1893456000L, tok), 0);
	assert_string_equal(tok, "1893456000." CONFIRM_HEX);
	assert_int_equal(token_confirm_check("signup-secret", "jane.doe@example.org", "Jane Doe", tok,
					     1893455999L), 1);
	assert_int_equal(token_confirm_check("signup-secret", "jane.doe@example.org", "Jane Doe", tok,
					     1893456001L), 2);
	assert_int_equal(token_confirm_check("signup-secret", "jane.doe@example.org", "Jane", tok,
					     1893455999L), 0);
	assert_int_equal(token_confirm_check("other", "jane.doe@example.org", "Jane Doe", tok,
					     1893455999L), 0);
	assert_int_equal(token_confirm_check("signup-secret", "jane.doe@example.org", "Jane Doe",
					     "1893456000.zz", 1L), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_make_matches_vectors),
		cmocka_unit_test(test_key_reused),
		cmocka_unit_test(test_check),
		cmocka_unit_test(test_confirm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
