/* Unit tests for web/form.c: urlencoded decoding and its refusals
 * (repeated key, bad escape, NUL, bad UTF-8, caps), multipart bodies as
 * RFC 8058 senders write them, and request targets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "web/form.h"

static struct form f; /* 4 KiB: off the stack */

static int parse(const char *s)
{
	char why[128];
	return form_parse(&f, s, strlen(s), why, sizeof why);
}

static void test_urlencoded(void **state)
{
	assert_int_equal(parse("e=joy%40example.net&t=ab+cd&&flag&n=Zo%C3%AB"), FORM_OK);
	assert_int_equal(f.n, 4);
	assert_string_equal(form_get(&f, "e"), "joy@example.net");
	assert_string_equal(form_get(&f, "t"), "ab cd");
	assert_string_equal(form_get(&f, "flag"), "");
	assert_string_equal(form_get(&f, "n"), "Zoë");
	assert_null(form_get(&f, "x"));
	assert_int_equal(parse(""), FORM_OK);
	assert_int_equal(f.n, 0);
}

static void test_refusals(void **state)
{
	char why[128];
	assert_int_equal(parse("e=a&e=b"), FORM_BAD);        /* which e? */
	assert_int_equal(parse("e=%zz"), FORM_BAD);
	assert_int_equal(parse("e=%4"), FORM_BAD);            /* cut short */
	assert_int_equal(parse("e=a%00b"), FORM_BAD);
	assert_int_equal(parse("e=%C3%28"), FORM_BAD);        /* bad UTF-8 */
	assert_int_equal(parse("e=%ED%A0%80"), FORM_BAD);     /* a surrogate */
	char many[256] = "";
	for (int i = 0; i < FORM_MAX_FIELDS + 1; i++)
		snprintf(many + strlen(many), sizeof many - strlen(many), "k%d=1&", i);
	assert_int_equal(parse(many), FORM_TOO_BIG);
	static char big[FORM_MAX_TEXT + 2];
	memset(big, 'a', sizeof big - 1);
	assert_int_equal(form_parse(&f, big, sizeof big - 1, why, sizeof why), FORM_TOO_BIG);
	assert_string_equal(why, "more than 4096 bytes of form data");
	assert_int_equal(form_parse_body(&f, "text/plain", "a=1", 3, why, sizeof why), FORM_BAD);
}

static void test_multipart(void **state)
{
	char why[128];
	const char *body = "------x1\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
			   "One-Click\r\n------x1--\r\n";
	assert_int_equal(form_parse_body(&f, "multipart/form-data; boundary=----x1", body, strlen(body),
					 why, sizeof why), FORM_OK);
	assert_int_equal(f.n, 1);
	assert_string_equal(form_get(&f, "List-Unsubscribe"), "One-Click");
	const char *two = "--b\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\njoy@example.net\r\n"
			  "--b\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nA, \"B\"\r\n--b--";
	assert_int_equal(form_parse_body(&f, "multipart/form-data; boundary=\"b\"", two, strlen(two),
					 why, sizeof why), FORM_OK);
	assert_string_equal(form_get(&f, "name"), "A, \"B\"");
	const char *file = "--b\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x\"\r\n\r\nx\r\n--b--";
	assert_int_equal(form_parse_body(&f, "multipart/form-data; boundary=b", file, strlen(file),
					 why, sizeof why), FORM_BAD);
	assert_string_equal(why, "a file was uploaded");
	const char *open_part = "--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nx";
	assert_int_equal(form_parse_body(&f, "multipart/form-data; boundary=b", open_part,
					 strlen(open_part), why, sizeof why), FORM_BAD);
	assert_int_equal(form_parse_body(&f, "multipart/form-data", two, strlen(two), why, sizeof why),
			 FORM_BAD);
}

static void test_target(void **state)
{
	char path[32];
	const char *q;
	assert_int_equal(form_target("/unsubscribe?e=a&t=b", path, sizeof path, &q), FORM_OK);
	assert_string_equal(path, "/unsubscribe");
	assert_string_equal(q, "e=a&t=b");
	assert_int_equal(form_target("/archive/", path, sizeof path, &q), FORM_OK);
	assert_string_equal(q, "");
	assert_int_equal(form_target("http://evil/x", path, sizeof path, &q), FORM_BAD);
	assert_int_equal(form_target("/a#b", path, sizeof path, &q), FORM_BAD);
	assert_int_equal(form_target("/a b", path, sizeof path, &q), FORM_BAD);
	assert_int_equal(form_target("/0123456789012345678901234567890123456789", path, sizeof path, &q),
			 FORM_TOO_BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_urlencoded),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_multipart),
		cmocka_unit_test(test_target),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
