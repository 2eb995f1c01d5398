/* Unit tests for segment.c: rule syntax (errors compared whole), binding
 * to columns, matching. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "input/segment.h"

static const char *const cols[] = {"email", "name", "lang", "plan"};

static int match(const char *spec, const char *lang, const char *plan)
{
	struct segment sg = {0};
	char err[300] = "";
	const char *row[] = {"a@example.net", "A", lang, plan};

	if (segment_add(&sg, spec, "--where", err, sizeof err) < 0 ||
	    segment_bind(&sg, cols, 4, "subs.csv", err, sizeof err) < 0)
		fail_msg("%s: %s", spec, err);
	int m = segment_match(&sg, row);

	segment_free(&sg);
	return m;
}

static void test_match(void **state)
{
	(void)state;
	assert_true(match("lang=fr", "fr", "pro"));
	assert_true(match("lang=fr", " FR ", "pro"));
	assert_false(match("lang=fr", "de", "pro"));
	assert_false(match("lang=fr", NULL, "pro"));
	assert_true(match("lang=", NULL, "pro"));
	assert_true(match("lang=", "", "pro"));
	assert_true(match("lang!=fr", "de", "pro"));
	assert_true(match("lang!=fr", NULL, "pro"));
	assert_false(match("lang!=fr", "Fr", "pro"));
	assert_true(match("lang=fr|de", "de", "x"));
	assert_false(match("lang!=fr|de", "de", "x"));
	assert_true(match("lang!=fr|de", "en", "x"));
	/* Commas join rules, all of which must hold. */
	assert_true(match(" Lang = fr , plan != free ", "fr", "pro"));
	assert_false(match("lang=fr, plan!=free", "fr", "free"));
	assert_false(match("lang=fr, plan!=free", "de", "pro"));
}

static void test_errors(void **state)
{
	(void)state;
	static const struct { const char *spec, *want; } cases[] = {
		{"lang", "--where: \"lang\": expected COLUMN=VALUE, COLUMN!=VALUE or COLUMN=A|B"},
		{"=fr", "--where: \"=fr\": no column before the '='"},
		{"lang=fr,plan", "--where: \"plan\": expected COLUMN=VALUE, COLUMN!=VALUE or COLUMN=A|B"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		struct segment sg = {0};
		char err[300] = "";

		assert_int_equal(segment_add(&sg, cases[i].spec, "--where", err, sizeof err), -1);
		assert_string_equal(err, cases[i].want);
		segment_free(&sg);
	}
	struct segment sg = {0};
	char err[300] = "";

	assert_int_equal(segment_add(&sg, "country=fr", "post.md:2: audience", err, sizeof err), 0);
	assert_int_equal(segment_bind(&sg, cols, 4, "subs.csv", err, sizeof err), -1);
	assert_string_equal(err, "post.md:2: audience: subs.csv has no column \"country\" "
			    "(its columns: email, name, lang, plan)");
	segment_free(&sg);
}

static void test_describe_and_empty(void **state)
{
	(void)state;
	struct segment sg = {0};
	char out[100], err[100];
	const char *row[] = {"a@example.net", "A", "fr", "pro"};

	/* An empty segment holds every row. */
	assert_true(segment_match(&sg, row));
	segment_describe(&sg, out, sizeof out);
	assert_string_equal(out, "");
	assert_int_equal(segment_add(&sg, "LANG=fr|de", "--where", err, sizeof err), 0);
	assert_int_equal(segment_add(&sg, "plan!=free", "--where", err, sizeof err), 0);
	segment_describe(&sg, out, sizeof out);
	assert_string_equal(out, "lang=fr|de, plan!=free");
	/* Truncated, never overrun. */
	segment_describe(&sg, out, 8);
	assert_string_equal(out, "lang=fr");
	segment_free(&sg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_match),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_describe_and_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
