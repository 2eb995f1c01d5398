/* Unit tests for lint.c: each check has a case that trips it and one that
 * does not, and findings carry the file and line an author needs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/lint.h"
#include "compose/message.h"

struct fixture {
	struct post p;
	struct lint l;
	char err[512];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	if (!fx)
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	post_free(&fx->p);
	lint_free(&fx->l);
	free(fx);
	return 0;
}

/* Built-ins plus a list with a "city" column. */
static const char *fields[MF_NBUILTIN + 1];

static int group_setup(void **state)
{
	(void)state;
	for (size_t i = 0; i < MF_NBUILTIN; i++)
		fields[i] = msg_builtin_fields[i];
	fields[MF_NBUILTIN] = "city";
	return 0;
}

#define NFIELDS (MF_NBUILTIN + 1)

/* Lints a post made of a fixed front matter (5 lines) and body. */
static void lint_body(struct fixture *fx, const char *body)
{
	char src[4096];

	snprintf(src, sizeof src,
		 "---\nsubject: Hello\ndate: 2026-11-30 08:00\npreheader: One line\n---\n%s", body);
	post_free(&fx->p);
	lint_free(&fx->l);
	assert_int_equal(post_parse(&fx->p, "p.md", src, strlen(src), 72, fx->err, sizeof fx->err), 0);
	assert_int_equal(lint_post(&fx->l, &fx->p, fields, NFIELDS), 0);
}

static void assert_finding(const struct lint *l, size_t i, enum lint_level lv,
			   const char *where, const char *msg_part)
{
	assert_true(i < l->n);
	assert_int_equal(l->items[i].level, lv);
	assert_string_equal(l->items[i].where, where);
	if (!strstr(l->items[i].msg, msg_part))
		fail_msg("\"%s\" does not say \"%s\"", l->items[i].msg, msg_part);
}

static void test_clean_post(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "Hi {{name|there}} in {{ City }},\n\n"
		  "![The beds under leaves](https://example.org/a.jpg)\n\n"
		  "See [the harvest log](https://example.org/log), write to "
		  "[Marta](mailto:m@example.org), [leave]({{unsubscribe_url}}).\n");
	assert_int_equal(fx->l.n, 0);
}

static void test_alt_text(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "Intro.\n\n![](https://example.org/a.jpg)\n");
	assert_int_equal(fx->l.errors, 1);
	assert_finding(&fx->l, 0, LINT_ERROR, "p.md:8", "image without alt text");
	lint_body(fx, "Intro.\n\n![ ](https://example.org/a.jpg)\n");
	assert_int_equal(fx->l.errors, 1);
	lint_body(fx, "Intro.\n\n![Beds](https://example.org/a.jpg)\n");
	assert_int_equal(fx->l.errors, 0);
}

static void test_links(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "A [log](/log), a [log](http://example.org/log),\n"
		  "an ![img](http://example.org/a.jpg), www.example.org.\n");
	assert_int_equal(fx->l.errors, 4);
	assert_finding(&fx->l, 0, LINT_ERROR, "p.md:6", "relative URL");
	assert_finding(&fx->l, 1, LINT_ERROR, "p.md:6", "http: link");
	assert_finding(&fx->l, 2, LINT_ERROR, "p.md:7", "http: image");
	/* autolink makes www.example.org an http link */
	assert_finding(&fx->l, 3, LINT_ERROR, "p.md:7", "http: link");
}

static void test_click_here(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "The log: [Click here!](https://example.org/log)\n");
	assert_int_equal(fx->l.errors, 1);
	assert_finding(&fx->l, 0, LINT_ERROR, "p.md:6", "\"Click here!\" says nothing");
	lint_body(fx, "[Click here for the harvest log](https://example.org/log)\n");
	assert_int_equal(fx->l.errors, 0);
}

static void test_vague_text(void **state)
{
	(void)state;
	assert_true(lint_vague_link_text("click here"));
	assert_true(lint_vague_link_text("  Here. "));
	assert_true(lint_vague_link_text("Read more \xE2\x86\x92") == 0); /* not ASCII: not judged */
	assert_true(lint_vague_link_text("READ MORE"));
	assert_false(lint_vague_link_text("the harvest log"));
	assert_false(lint_vague_link_text(""));
}

static void test_url_problem(void **state)
{
	(void)state;
	assert_null(lint_url_problem("https://example.org/x", 0));
	assert_null(lint_url_problem("HTTPS://example.org/x", 1));
	assert_null(lint_url_problem("mailto:a@example.org", 0));
	assert_null(lint_url_problem("tel:+44113", 0));
	assert_null(lint_url_problem("{{unsubscribe_url}}", 0));
	assert_non_null(lint_url_problem("mailto:a@example.org", 1));
	assert_non_null(lint_url_problem("http://example.org", 0));
	assert_non_null(lint_url_problem("#top", 0));
	assert_non_null(lint_url_problem("page.html", 0));
	assert_non_null(lint_url_problem("//example.org/x", 0));
	assert_non_null(lint_url_problem("https:///x", 0));
	assert_non_null(lint_url_problem("", 0));
	assert_non_null(lint_url_problem("data:image/png;base64,AAAA", 1));
}

static void test_fields(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "Hi {{name}},\n\nfrom {{ctiy|afar}} and {{ | x}}, {{first name}}.\n{{oops\n");
	assert_int_equal(fx->l.field_errors, 4);
	assert_finding(&fx->l, 0, LINT_ERROR, "p.md:8", "unknown merge field \"ctiy\"");
	assert_finding(&fx->l, 0, LINT_ERROR, "p.md:8", "did you mean \"city\"");
	assert_finding(&fx->l, 1, LINT_ERROR, "p.md:8", "malformed merge field \"{{ | x}}\"");
	assert_finding(&fx->l, 2, LINT_ERROR, "p.md:8", "unknown merge field \"first name\"");
	assert_finding(&fx->l, 3, LINT_ERROR, "p.md:9", "\"{{\" without \"}}\"");
	/* {{body}} is a template's, not a post's */
	lint_body(fx, "{{body}}\n");
	assert_int_equal(fx->l.field_errors, 1);
}

/* A line under an image that is neither all emphasis (its caption) nor
 * set apart by a blank line: a warning, at the image's line. */
static void test_unclear_caption(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "Intro.\n\n![Crew](https://example.org/a.jpg)\nPhoto: Priya.\n");
	assert_int_equal(fx->l.errors, 0);
	assert_int_equal(fx->l.warnings, 1);
	assert_string_equal(fx->l.items[0].where, "p.md:8");
	assert_string_equal(fx->l.items[0].msg,
			    "cannot tell whether this line is the caption of the image above it "
			    "(https://example.org/a.jpg): write a caption as one emphasised line, "
			    "*Photo: ...*, or leave a blank line between the image and the text");
	lint_body(fx, "![Crew](https://example.org/a.jpg)\n*Photo:* Priya.\n");
	assert_int_equal(fx->l.warnings, 1);
	/* A caption right below, one after a blank line, none at all: clear. */
	lint_body(fx, "![Crew](https://example.org/a.jpg)\n*Photo: Priya.*\n\n"
		  "![Crew](https://example.org/b.jpg)\n\n*Photo: Priya.*\n\n"
		  "![Crew](https://example.org/c.jpg)\n\nText.\n");
	assert_int_equal(fx->l.n, 0);
}

/* Fields in code are shown, not merged: nothing to check there. */
static void test_fields_in_code(void **state)
{
	struct fixture *fx = *state;

	lint_body(fx, "Write `{{nmae}}` or \\{{x}}:\n\n```\n{{ {{{ }} {{oops\n```\n");
	assert_int_equal(fx->l.n, 0);
}

static void test_subject_fields(void **state)
{
	struct fixture *fx = *state;
	const char *src = "---\nsubject: News for {{town}}\n---\nHi\n";

	assert_int_equal(post_parse(&fx->p, "p.md", src, strlen(src), 72, fx->err, sizeof fx->err), 0);
	assert_int_equal(lint_post(&fx->l, &fx->p, fields, NFIELDS), 0);
	assert_finding(&fx->l, 0, LINT_ERROR, "p.md: subject", "unknown merge field \"town\"");
	assert_finding(&fx->l, 1, LINT_WARNING, "p.md", "no preheader");
}

static void test_template(void **state)
{
	struct fixture *fx = *state;
	const char *good = "<html><body>\n{{body}}\n<a href=\"{{unsubscribe_url}}\">Leave</a>\n"
			   "<!-- <a href=\"old.html\"> -->\n<img src=\"https://example.org/logo.png\" alt=\"Logo\">\n";
	const char *bad = "<html><body>\n{{body}}\n<img src=\"http://example.org/logo.png\">\n"
			  "<a href=\"archive.html\">archive</a> {{nope}}\n";

	assert_int_equal(lint_template(&fx->l, "t.html", good, 1, fields, NFIELDS), 0);
	assert_int_equal(fx->l.n, 0);
	assert_int_equal(lint_template(&fx->l, "t.html", bad, 1, fields, NFIELDS), 0);
	assert_int_equal(fx->l.errors, 5);
	assert_finding(&fx->l, 0, LINT_ERROR, "t.html:4", "unknown merge field \"nope\"");
	assert_finding(&fx->l, 1, LINT_ERROR, "t.html", "no {{unsubscribe_url}}");
	assert_finding(&fx->l, 2, LINT_ERROR, "t.html:3", "image without alt text");
	assert_finding(&fx->l, 3, LINT_ERROR, "t.html:3", "http: image");
	assert_finding(&fx->l, 4, LINT_ERROR, "t.html:4", "relative URL");
	lint_free(&fx->l);
	/* alt="" marks decoration: fine; "data-alt=" is not alt. */
	assert_int_equal(lint_template(&fx->l, "t.html", "{{body}}{{unsubscribe_url}}\n"
				       "<img alt=\"\" src=\"https://e.org/a.png\">"
				       "<IMG data-alt=\"x\" src=\"https://e.org/b.png\"/>\n", 1,
				       fields, NFIELDS), 0);
	assert_int_equal(fx->l.errors, 1);
	assert_finding(&fx->l, 0, LINT_ERROR, "t.html:2", "image without alt text");
	lint_free(&fx->l);
	/* A text template's URLs are not attributes: only fields count. */
	assert_int_equal(lint_template(&fx->l, "t.txt", "{{body}}\nhttp://x {{unsubscribe_url}}\n", 0,
				       fields, NFIELDS), 0);
	assert_int_equal(fx->l.n, 0);
}

static void test_config(void **state)
{
	struct fixture *fx = *state;
	struct config c = {0};
	char key[] = "/tmp/herald-test-lint-XXXXXX";
	int fd = mkstemp(key);

	assert_true(fd >= 0);
	close(fd);
	c.path = "h.conf";
	c.from_addr = "joy@news.example.org";
	assert_int_equal(lint_config(&fx->l, &c), 0);
	assert_int_equal(fx->l.errors, 1);
	assert_finding(&fx->l, 0, LINT_ERROR, "h.conf", "no unsubscribe.url nor unsubscribe.mailto");
	assert_finding(&fx->l, 1, LINT_WARNING, "h.conf", "no postal_address");
	assert_finding(&fx->l, 2, LINT_WARNING, "h.conf", "no DKIM for news.example.org");
	lint_free(&fx->l);

	c.postal_address = "1 Garden Lane, Springfield";

	c.unsub.url = "http://example.org/u?e={{email}}";
	c.dkim.domain = "example.org"; /* a parent of the From domain: aligned */
	c.dkim.selector = "s1";
	c.dkim.key_file = key;
	chmod(key, 0600);
	assert_int_equal(lint_config(&fx->l, &c), 0);
	assert_int_equal(fx->l.n, 1);
	assert_finding(&fx->l, 0, LINT_ERROR, "h.conf", "unsubscribe.url is not https://");
	lint_free(&fx->l);

	c.unsub.url = "https://example.org/u?e={{email}}";
	c.dkim.domain = "example.net";
	chmod(key, 0644);
	assert_int_equal(lint_config(&fx->l, &c), 0);
	assert_int_equal(fx->l.errors, 0);
	assert_int_equal(fx->l.warnings, 2);
	assert_finding(&fx->l, 0, LINT_WARNING, "h.conf", "not the From domain");
	assert_finding(&fx->l, 1, LINT_WARNING, "h.conf", "can be read by others");
	unlink(key);
}

static void test_message(void **state)
{
	struct fixture *fx = *state;
	char subj[200];

	assert_int_equal(lint_message(&fx->l, "m", LINT_CLIP_BYTES, "Short"), 0);
	assert_int_equal(fx->l.n, 0);
	assert_int_equal(lint_message(&fx->l, "m", LINT_CLIP_BYTES + 1, "Short"), 0);
	assert_finding(&fx->l, 0, LINT_ERROR, "m", "Gmail clips");
	lint_free(&fx->l);
	/* 78 characters, each two bytes: still fine; one more is not. */
	subj[0] = '\0';
	for (int i = 0; i < 78; i++)
		strcat(subj, "\xC3\xA9");
	assert_int_equal(lint_message(&fx->l, "m", 100, subj), 0);
	assert_int_equal(fx->l.n, 0);
	strcat(subj, "x");
	assert_int_equal(lint_message(&fx->l, "m", 100, subj), 0);
	assert_finding(&fx->l, 0, LINT_WARNING, "m", "79 characters");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_clean_post),
		T(test_alt_text),
		T(test_links),
		T(test_click_here),
		T(test_vague_text),
		T(test_url_problem),
		T(test_fields),
		T(test_subject_fields),
		T(test_unclear_caption),
		T(test_fields_in_code),
		T(test_template),
		T(test_config),
		T(test_message),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
