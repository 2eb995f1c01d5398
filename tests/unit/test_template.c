/* Unit tests for template.c: compile against a field table, render with
 * each escaping mode, and compare the output (and every error) whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "compose/template.h"

/* The field table every test compiles against. */
enum { F_EMAIL, F_NAME, F_CITY, F_UNSUB, NF };
static const char *const names[NF] = { "email", "name", "city",
				       "unsubscribe_url" };
static const struct tmpl_names table = { names, NF };

/* Compiles src (must succeed), renders it with values and esc, and
 * returns the output (free()). */
static char *render(const char *src, const char *const *values,
		    enum tmpl_esc esc)
{
	struct tmpl *t = NULL;
	struct buf out = { 0 };
	char err[256] = "";

	assert_int_equal(tmpl_compile(&t, src, strlen(src), &table, "t.txt",
				      1, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_non_null(t);
	assert_int_equal(tmpl_render(t, values, esc, &out), 0);
	tmpl_free(t);
	return buf_detach(&out);
}

static void check(const char *src, const char *const *values,
		  enum tmpl_esc esc, const char *want)
{
	char *got = render(src, values, esc);

	assert_string_equal(got, want);
	free(got);
}

/* Compiles src (must fail) and compares the error message whole. */
static void check_error(const char *src, const char *srcname, int first_line,
			const char *want)
{
	struct tmpl *t = NULL;
	char err[256] = "";

	assert_int_equal(tmpl_compile(&t, src, strlen(src), &table, srcname,
				      first_line, err, sizeof err), -1);
	assert_null(t);
	assert_string_equal(err, want);
}

static void test_no_fields(void **state)
{
	(void)state;
	const char *v[NF] = { "a@example.net", "Ann", "Oslo", "u" };

	check("Plain text, no fields at all.\n", v, TMPL_HTML,
	      "Plain text, no fields at all.\n");
	/* Literal text is never escaped, only values are. */
	check("<p>a & b</p>", v, TMPL_HTML, "<p>a & b</p>");
	check("", v, TMPL_RAW, "");
	/* A lone brace or "}}" is just text. */
	check("{ x } }} {", v, TMPL_RAW, "{ x } }} {");
}

static void test_lookup_case_and_spaces(void **state)
{
	(void)state;
	const char *v[NF] = { "a@example.net", "Ann", "Oslo", "u" };

	check("Hi {{name}}!", v, TMPL_RAW, "Hi Ann!");
	check("Hi {{ Name }}!", v, TMPL_RAW, "Hi Ann!");
	check("Hi {{NAME}} from {{  City\t}}.", v, TMPL_RAW,
	      "Hi Ann from Oslo.");
	check("{{ name | reader }}", v, TMPL_RAW, "Ann");
	check("{{Unsubscribe_URL}}", v, TMPL_RAW, "u");
}

static void test_adjacent_fields(void **state)
{
	(void)state;
	const char *v[NF] = { "a@example.net", "Ann", "Oslo", "u" };

	check("{{name}}{{city}}", v, TMPL_RAW, "AnnOslo");
	check("{{name}}{{city}}{{email}}", v, TMPL_HTML,
	      "AnnOsloa@example.net");
	check("[{{name}}][{{city}}]", v, TMPL_RAW, "[Ann][Oslo]");
	/* A field that is the whole template. */
	check("{{city}}", v, TMPL_RAW, "Oslo");
}

static void test_fallback(void **state)
{
	(void)state;
	const char *empty[NF] = { "a@example.net", "", "Oslo", "u" };
	const char *null[NF] = { "a@example.net", NULL, "Oslo", "u" };
	const char *set[NF] = { "a@example.net", "Ann", "Oslo", "u" };

	check("Hi {{name|reader}},", empty, TMPL_RAW, "Hi reader,");
	check("Hi {{name|reader}},", null, TMPL_RAW, "Hi reader,");
	check("Hi {{name|reader}},", set, TMPL_RAW, "Hi Ann,");
	/* Spaces around the fallback are trimmed, inside kept. */
	check("Hi {{ name | dear reader }},", null, TMPL_RAW,
	      "Hi dear reader,");
	/* Without a fallback an empty value renders as nothing. */
	check("Hi {{name}},", empty, TMPL_RAW, "Hi ,");
	check("Hi {{name}},", null, TMPL_HTML, "Hi ,");
	/* An empty fallback is allowed. */
	check("Hi {{name|}},", null, TMPL_RAW, "Hi ,");
}

static void test_html_escaping(void **state)
{
	(void)state;
	const char *v[NF] = { "a@example.net", "Tom & \"Jerry\" <'x'>",
			      NULL, "u" };

	check("<b>{{name}}</b>", v, TMPL_HTML,
	      "<b>Tom &amp; &quot;Jerry&quot; &lt;&#39;x&#39;&gt;</b>");
	check("<a title=\"{{name}}\">", v, TMPL_HTML,
	      "<a title=\"Tom &amp; &quot;Jerry&quot; &lt;&#39;x&#39;&gt;\">");
	/* The fallback is escaped the same way. */
	check("{{city|Tom & Jerry's <\"place\">}}", v, TMPL_HTML,
	      "Tom &amp; Jerry&#39;s &lt;&quot;place&quot;&gt;");
	/* Non-ASCII passes through. */
	const char *u[NF] = { "a@example.net", "Tomás & Ines", NULL, "u" };

	check("{{name}}", u, TMPL_HTML, "Tomás &amp; Ines");
}

static void test_url_escaping(void **state)
{
	(void)state;
	const char *v[NF] = { "a+b@example.net", "Tomás Ng", "x/y?z=1&w#",
			      "u" };

	check("https://example.org/u?e={{email}}", v, TMPL_URL,
	      "https://example.org/u?e=a%2Bb%40example.net");
	check("{{name}}", v, TMPL_URL, "Tom%C3%A1s%20Ng");
	check("{{city}}", v, TMPL_URL, "x%2Fy%3Fz%3D1%26w%23");
	/* RFC 3986 unreserved characters are kept. */
	const char *w[NF] = { "AZaz09-._~", NULL, NULL, NULL };

	check("{{email}}", w, TMPL_URL, "AZaz09-._~");
	/* A fallback is percent-encoded too. */
	check("{{name|a b&c}}", w, TMPL_URL, "a%20b%26c");
}

static void test_raw(void **state)
{
	(void)state;
	const char *v[NF] = { "a+b@example.net", "Tom & \"Jerry\" <'x'>",
			      "x/y z%", "u" };

	check("{{name}} {{email}} {{city}}", v, TMPL_RAW,
	      "Tom & \"Jerry\" <'x'> a+b@example.net x/y z%");
	check("{{unsubscribe_url|<&>}}", (const char *[NF]){ 0 }, TMPL_RAW,
	      "<&>");
	/* A value that looks like a field is not expanded again. */
	const char *w[NF] = { "{{name}}", "Ann", NULL, NULL };

	check("{{email}}", w, TMPL_RAW, "{{name}}");
}

static void test_tmpl_escape(void **state)
{
	(void)state;
	struct buf b = { 0 };

	assert_int_equal(tmpl_escape(&b, "a<b>&\"'c", 9, TMPL_HTML), 0);
	assert_string_equal(buf_cstr(&b), "a&lt;b&gt;&amp;&quot;&#39;c");
	buf_reset(&b);
	/* len is honoured: the bytes after it are not read. */
	assert_int_equal(tmpl_escape(&b, "a b&c", 3, TMPL_URL), 0);
	assert_string_equal(buf_cstr(&b), "a%20b");
	buf_reset(&b);
	assert_int_equal(tmpl_escape(&b, "\xff\x01", 2, TMPL_URL), 0);
	assert_string_equal(buf_cstr(&b), "%FF%01");
	buf_reset(&b);
	assert_int_equal(tmpl_escape(&b, "<x>", 3, TMPL_RAW), 0);
	assert_string_equal(buf_cstr(&b), "<x>");
	buf_free(&b);
}

static void test_unknown_field_line(void **state)
{
	(void)state;
	check_error("{{nope}}", "t.html", 1,
		    "t.html:1: unknown merge field \"nope\": no list column "
		    "nor built-in field has that name (did you mean \"name\"?)");
	/* Third line of a source that starts on line 10 of its file. */
	check_error("Hello {{name}},\n\nwelcome to {{ cty }}.\n", "post.md",
		    10,
		    "post.md:12: unknown merge field \"cty\": no list column "
		    "nor built-in field has that name (did you mean \"city\"?)");
	/* A field is a whole name, not a prefix. */
	check_error("{{nam}}", "s", 1,
		    "s:1: unknown merge field \"nam\": no list column nor "
		    "built-in field has that name (did you mean \"name\"?)");
	check_error("{{names}}", "s", 1,
		    "s:1: unknown merge field \"names\": no list column nor "
		    "built-in field has that name (did you mean \"name\"?)");
}

static void test_unclosed(void **state)
{
	(void)state;
	check_error("a\nb {{name}}\nc {{name\nd\n", "t.txt", 1,
		    "t.txt:3: "
		    "\"{{\" without \"}}\" on the same line (for a literal \"{{\", "
		    "write \\{{)");
	check_error("x\n{{", "t.txt", 5,
		    "t.txt:6: "
		    "\"{{\" without \"}}\" on the same line (for a literal \"{{\", "
		    "write \\{{)");
	check_error("{{name}", "t.txt", 1,
		    "t.txt:1: "
		    "\"{{\" without \"}}\" on the same line (for a literal \"{{\", "
		    "write \\{{)");
}

static void test_malformed(void **state)
{
	(void)state;
	check_error("a {{}} b", "t", 1,
		    "t:1: malformed merge field \"{{}}\": expected {{name}} or "
		    "{{name|fallback}} (for a literal \"{{\", write \\{{)");
	check_error("\n{{ | x }}", "t", 1,
		    "t:2: malformed merge field \"{{ | x }}\": expected {{name}} "
		    "or {{name|fallback}} (for a literal \"{{\", write \\{{)");
}

/* "\{{" is a literal "{{", the one escape: nothing else is special. */
static void test_escape(void **state)
{
	(void)state;
	const char *v[NF] = { "a@example.net", "Ann", "Oslo", "u" };

	check("Write \\{{name}} to greet {{name}}.", v, TMPL_HTML,
	      "Write {{name}} to greet Ann.");
	/* A backslash before the escape is text: "\\{{" shows "\{{". */
	check("C:\\\\{{x}} \\{{ \\{", v, TMPL_RAW, "C:\\{{x}} {{ \\{");
	/* An escaped "{{" needs no "}}", and "}}" alone is text. */
	check("\\{{ open }} and {{city}}", v, TMPL_RAW, "{{ open }} and Oslo");
	/* In a run of braces the last two open the field. */
	check("{{{name}}} {{{{city}}", v, TMPL_RAW, "{Ann} {{Oslo");
}

struct seen {
	char log[512];
};

static int note(void *arg, const struct tmpl_field *f, const char *problem)
{
	struct seen *s = arg;
	size_t n = strlen(s->log);
	snprintf(s->log + n, sizeof s->log - n, "%d:%d:%s;", f->line, (int)f->kind,
		 problem ? problem : "ok");
	return 0;
}

/* tmpl_check visits each "{{" with its line and the words the compiler
 * would fail with (check's lint and send read fields through it). */
static void test_check_visits(void **state)
{
	(void)state;
	struct seen s = { "" };
	const char *src = "{{name}} \\{{x}}\n{{nmae}}\n\n{{ {{{ }} {{city\n";

	assert_int_equal(tmpl_check(src, strlen(src), 5, &table, note, &s), 3);
	assert_string_equal(s.log,
		"5:0:ok;5:1:ok;"
		"6:0:unknown merge field \"nmae\": no list column nor built-in field has that "
		"name (did you mean \"name\"?);"
		"8:3:malformed merge field \"{{ {{{ }}\": expected {{name}} or {{name|fallback}} "
		"(for a literal \"{{\", write \\{{);"
		"8:2:\"{{\" without \"}}\" on the same line (for a literal \"{{\", write \\{{);");
	/* A field spread over two lines is not one. */
	check_error("{{name|a\nb}}", "t", 1,
		    "t:1: \"{{\" without \"}}\" on the same line (for a literal \"{{\", "
		    "write \\{{)");
	/* A one-line setting (first_line 0) is named without a line. */
	check_error("{{nope}}", "unsubscribe.url", 0,
		    "unsubscribe.url: unknown merge field \"nope\": no list column nor "
		    "built-in field has that name (did you mean \"name\"?)");
}

static void test_uses(void **state)
{
	(void)state;
	struct tmpl *t = NULL;
	const char *src = "{{ CITY }} and {{name|x}}";
	char err[128] = "";

	assert_int_equal(tmpl_compile(&t, src, strlen(src), &table, "t", 1,
				      err, sizeof err), 0);
	assert_false(tmpl_uses(t, F_EMAIL));
	assert_true(tmpl_uses(t, F_NAME));
	assert_true(tmpl_uses(t, F_CITY));
	assert_false(tmpl_uses(t, F_UNSUB));
	/* Out of range is "no", not a crash. */
	assert_false(tmpl_uses(t, NF));
	assert_false(tmpl_uses(t, (size_t)-1));
	tmpl_free(t);

	t = NULL;
	assert_int_equal(tmpl_compile(&t, "none", 4, &table, "t", 1, err,
				      sizeof err), 0);
	for (size_t i = 0; i < NF; i++)
		assert_false(tmpl_uses(t, i));
	tmpl_free(t);
	tmpl_free(NULL);
}

/* The template keeps no pointer into src, and len bounds the source. */
static void test_copy_and_len(void **state)
{
	(void)state;
	const char *v[NF] = { "a@example.net", "Ann", "Oslo", "u" };
	char *src = strdup("Hi {{name}}! {{city}}");
	struct tmpl *t = NULL;
	struct buf out = { 0 };
	char err[128] = "";

	assert_non_null(src);
	/* Only "Hi {{name}}!" is the template. */
	assert_int_equal(tmpl_compile(&t, src, 12, &table, "t", 1, err,
				      sizeof err), 0);
	memset(src, 'Z', strlen(src));
	free(src);
	assert_int_equal(tmpl_render(t, v, TMPL_RAW, &out), 0);
	assert_string_equal(buf_cstr(&out), "Hi Ann!");
	/* Rendering appends and can be repeated. */
	assert_int_equal(tmpl_render(t, v, TMPL_RAW, &out), 0);
	assert_string_equal(buf_cstr(&out), "Hi Ann!Hi Ann!");
	buf_free(&out);
	tmpl_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_no_fields),
		cmocka_unit_test(test_lookup_case_and_spaces),
		cmocka_unit_test(test_adjacent_fields),
		cmocka_unit_test(test_fallback),
		cmocka_unit_test(test_html_escaping),
		cmocka_unit_test(test_url_escaping),
		cmocka_unit_test(test_raw),
		cmocka_unit_test(test_tmpl_escape),
		cmocka_unit_test(test_unknown_field_line),
		cmocka_unit_test(test_unclosed),
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_check_visits),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_uses),
		cmocka_unit_test(test_copy_and_len),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
