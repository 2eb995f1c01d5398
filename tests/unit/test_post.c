/* Unit tests for post.c: front matter, slugs, dates, and the two
 * renderings of the body (merge fields must come through intact). Every
 * error message is compared whole, since main.c prints them as they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "compose/post.h"

struct fixture {
	struct post p;
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

/* Runs even when an assertion failed; post_free is safe on a post that
 * post_parse left half filled. */
static int teardown(void **state)
{
	struct fixture *fx = *state;

	post_free(&fx->p);
	free(fx);
	return 0;
}

/* Dates are local time: pin the zone so the epoch values are exact. */
static int group_setup(void **state)
{
	(void)state;
	setenv("TZ", "UTC", 1);
	tzset();
	return 0;
}

static int parse(struct fixture *fx, const char *name, const char *src)
{
	post_free(&fx->p);
	fx->err[0] = '\0';
	return post_parse(&fx->p, name, src, strlen(src), 72, fx->err,
			  sizeof fx->err);
}

static void parse_ok(struct fixture *fx, const char *name, const char *src)
{
	int rc = parse(fx, name, src);

	if (rc != POST_OK)
		fail_msg("post_parse: %d %s", rc, fx->err);
	assert_string_equal(fx->err, "");
}

static void parse_bad(struct fixture *fx, const char *name, const char *src,
		      const char *want)
{
	assert_int_equal(parse(fx, name, src), POST_BAD);
	assert_string_equal(fx->err, want);
}

static void test_front_matter(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "posts/issue.md",
		 "---\n"
		 "# a comment\n"
		 "\n"
		 "subject: \"Leaf mulch: part 2\"\n"
		 "   \n"
		 "  # an indented comment\n"
		 "date: 2026-11-30 08:00\n"
		 "preheader: 'Forty-one bags'\n"
		 "Slug:   autumn-2026  \n"
		 "---\n"
		 "Hello.\n");
	assert_string_equal(fx->p.path, "posts/issue.md");
	/* Only the outer quotes go; the colon in the value stays. */
	assert_string_equal(fx->p.subject, "Leaf mulch: part 2");
	assert_string_equal(fx->p.date, "2026-11-30 08:00");
	assert_int_equal(fx->p.when, 1796025600);
	assert_string_equal(fx->p.preheader, "Forty-one bags");
	/* Keys are case-insensitive; values trimmed. */
	assert_string_equal(fx->p.slug, "autumn-2026");
	assert_string_equal(fx->p.markdown, "Hello.\n");
	assert_int_equal(fx->p.body_line, 11);
	assert_string_equal(fx->p.html, "<p>Hello.</p>\n");
	assert_string_equal(fx->p.text, "Hello.\n");
}

static void test_front_matter_minimal(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "a.md", "---\nsubject: Hi\n---\n");
	assert_string_equal(fx->p.subject, "Hi");
	/* Absent fields are "" and 0, never NULL. */
	assert_string_equal(fx->p.date, "");
	assert_int_equal(fx->p.when, 0);
	assert_string_equal(fx->p.preheader, "");
	assert_string_equal(fx->p.slug, "a");
	assert_string_equal(fx->p.markdown, "");
	assert_int_equal(fx->p.body_line, 4);
	assert_non_null(fx->p.html);
	assert_non_null(fx->p.text);

	/* Unbalanced quotes are kept as they are. */
	parse_ok(fx, "a.md", "---\nsubject: \"Hi'\n---\n");
	assert_string_equal(fx->p.subject, "\"Hi'");
	/* A later key wins. */
	parse_ok(fx, "a.md", "---\nsubject: one\nsubject: two\n---\n");
	assert_string_equal(fx->p.subject, "two");
}

static void test_front_matter_bom_crlf(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "w.md",
		 "\xEF\xBB\xBF---\r\nsubject: Caf\xC3\xA9\r\n"
		 "preheader: \"x\"\r\n---\r\nBody\r\n");
	assert_string_equal(fx->p.subject, "Caf\xC3\xA9");
	assert_string_equal(fx->p.preheader, "x");
	assert_int_equal(fx->p.body_line, 5);
	assert_string_equal(fx->p.html, "<p>Body</p>\n");
	assert_string_equal(fx->p.text, "Body\n");
}

static void test_missing_subject(void **state)
{
	struct fixture *fx = *state;

	parse_bad(fx, "x.md", "---\ndate: 2026-11-30\n---\nBody\n",
		  "x.md: the front matter has no \"subject:\"");
	parse_bad(fx, "x.md", "---\nsubject:\n---\nBody\n",
		  "x.md: the front matter has no \"subject:\"");
	parse_bad(fx, "x.md", "---\nsubject: \"\"\n---\nBody\n",
		  "x.md: the front matter has no \"subject:\"");
}

static void test_unknown_key(void **state)
{
	struct fixture *fx = *state;

	parse_bad(fx, "x.md",
		  "---\nsubject: Hi\n\nAuthor: Marta\n---\nBody\n",
		  "x.md:4: unknown front matter key \"author\" (expected "
		  "subject, date, preheader, slug, audience, attachments, archive)");
	parse_bad(fx, "x.md", "---\nsubject: Hi\njust text\n---\n",
		  "x.md:3: expected \"key: value\" in the front matter");
}

static void test_unclosed_front_matter(void **state)
{
	struct fixture *fx = *state;

	parse_bad(fx, "x.md", "---\nsubject: Hi\nBody text\n",
		  "x.md:3: expected \"key: value\" in the front matter");
	parse_bad(fx, "x.md", "---\nsubject: Hi\n",
		  "x.md:2: front matter is not closed by a \"---\" line");
	parse_bad(fx, "x.md", "---\nsubject: Hi\n--\n",
		  "x.md:3: expected \"key: value\" in the front matter");
	parse_bad(fx, "x.md", "---\n",
		  "x.md:1: front matter is not closed by a \"---\" line");
	/* A lone CR after the fence, and no LF anywhere. */
	parse_bad(fx, "x.md", "---\r",
		  "x.md:1: front matter is not closed by a \"---\" line");
	/* "----" is not the closing fence. */
	parse_bad(fx, "x.md", "---\nsubject: Hi\n----\n",
		  "x.md:3: expected \"key: value\" in the front matter");
}

static void test_no_front_matter(void **state)
{
	struct fixture *fx = *state;
	const char *want = "x.md:1: expected front matter: a \"---\" line, "
			   "then \"subject: ...\", then \"---\"";

	parse_bad(fx, "x.md", "# Hello\n\nsubject: Hi\n", want);
	parse_bad(fx, "x.md", "", want);
	parse_bad(fx, "x.md", "--", want);
	parse_bad(fx, "x.md", "----\nsubject: Hi\n---\n", want);
	parse_bad(fx, "x.md", " ---\nsubject: Hi\n---\n", want);
}

/* post_parse takes (src, len): it must not read past len, even when the
 * bytes end right after the opening fence. */
static void test_exact_length_buffer(void **state)
{
	struct fixture *fx = *state;
	char *src = malloc(3);

	assert_non_null(src);
	memcpy(src, "---", 3);
	post_free(&fx->p);
	assert_int_equal(post_parse(&fx->p, "x.md", src, 3, 72, fx->err,
				    sizeof fx->err), POST_BAD);
	free(src);
	assert_string_equal(fx->err,
			    "x.md:1: expected front matter: a \"---\" line, "
			    "then \"subject: ...\", then \"---\"");
}

static void test_nul_byte(void **state)
{
	struct fixture *fx = *state;
	const char src[] = "---\nsubject: a\0b\n---\n";

	post_free(&fx->p);
	assert_int_equal(post_parse(&fx->p, "x.md", src, sizeof src - 1, 72,
				    fx->err, sizeof fx->err), POST_BAD);
	assert_string_equal(fx->err,
			    "x.md: contains a NUL byte; expected UTF-8 text");
}

static void test_slug(void **state)
{
	struct fixture *fx = *state;
	const char *body = "---\nsubject: Hi\n---\nx\n";

	parse_ok(fx, "dir/2026-11-30-weekly.md", body);
	assert_string_equal(fx->p.slug, "2026-11-30-weekly");
	parse_ok(fx, "/a/b/c/issue_7.markdown", body);
	assert_string_equal(fx->p.slug, "issue_7");
	parse_ok(fx, "notes.v2.txt", body);
	assert_string_equal(fx->p.slug, "notes.v2.txt");
	/* Front matter wins over the file name. */
	parse_ok(fx, "dir/2026-11-30-weekly.md",
		 "---\nsubject: Hi\nslug: weekly-48\n---\n");
	assert_string_equal(fx->p.slug, "weekly-48");
}

static void test_bad_slug(void **state)
{
	struct fixture *fx = *state;

	parse_bad(fx, "x.md", "---\nsubject: Hi\nslug: ../etc/passwd\n---\n",
		  "x.md: slug \"../etc/passwd\" may only hold letters, "
		  "digits, '-', '_' and '.'");
	parse_bad(fx, "x.md", "---\nsubject: Hi\nslug: .hidden\n---\n",
		  "x.md: slug \".hidden\" may only hold letters, digits, "
		  "'-', '_' and '.'");
	parse_bad(fx, "posts/my post.md", "---\nsubject: Hi\n---\n",
		  "posts/my post.md: slug \"my post\" may only hold letters, "
		  "digits, '-', '_' and '.'");
	parse_bad(fx, "posts/.md", "---\nsubject: Hi\n---\n",
		  "posts/.md: slug \".md\" may only hold letters, digits, "
		  "'-', '_' and '.'");
	parse_bad(fx, "x.md", "---\nsubject: Hi\nslug: caf\xC3\xA9\n---\n",
		  "x.md: slug \"caf\xC3\xA9\" may only hold letters, digits, "
		  "'-', '_' and '.'");
}

static void test_parse_date(void **state)
{
	(void)state;
	time_t t = 42;

	assert_int_equal(post_parse_date("2026-11-30", &t), 0);
	assert_int_equal(t, 1795996800);
	assert_int_equal(post_parse_date("2026-11-30 08:00", &t), 0);
	assert_int_equal(t, 1796025600);
	assert_int_equal(post_parse_date("2026-11-30T08:00:05", &t), 0);
	assert_int_equal(t, 1796025605);
	assert_int_equal(post_parse_date("2028-02-29", &t), 0);
	assert_int_equal(t, 1835395200);

	/* An offset from UTC, whatever TZ says. */
	assert_int_equal(post_parse_date("2026-11-30 08:00 +01:00", &t), 0);
	assert_int_equal(t, 1796025600 - 3600);
	assert_int_equal(post_parse_date("2026-11-30T08:00-05:00", &t), 0);
	assert_int_equal(t, 1796025600 + 5 * 3600);
	assert_int_equal(post_parse_date("2026-11-30 08:00:05Z", &t), 0);
	assert_int_equal(t, 1796025605);
	assert_int_equal(post_parse_date("2026-11-30 08:00 +0530", &t), 0);
	assert_int_equal(t, 1796025600 - 5 * 3600 - 30 * 60);
	setenv("TZ", "America/New_York", 1);
	tzset();
	assert_int_equal(post_parse_date("2026-11-30 08:00", &t), 0);
	assert_int_equal(t, 1796025600 + 5 * 3600); /* EST: local time */
	assert_int_equal(post_parse_date("2026-11-30 08:00 +01:00", &t), 0);
	assert_int_equal(t, 1796025600 - 3600);
	setenv("TZ", "UTC", 1);
	tzset();

	static const char *const bad[] = {
		"2026-11-30 08:00 +1:00", "2026-11-30 08:00 +01:0", "2026-11-30 08:00 +24:00",
		"2026-11-30 08:00 +01:60", "2026-11-30 +01:00", "2026-11-30 08:00 UTC",
		"2026-11-30 08:00  +01:00", "2026-11-30 08:00 +01:00x", "2026-11-30 08:00 Zulu",
		"2026-13-01", "2026-02-30", "30/11/2026", "2026-11-30 8",
		"2026-00-10", "2026-11-00", "2026-11-31", "2026-02-29",
		"2026-11-30 24:00", "2026-11-30 08:60", "2026-11-30 08:00:",
		"2026-11-30 08:00x", "2026-11-30x", "2026-11-30 08", "",
		"yesterday", "2026-11-30_08:00",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		t = 42;
		if (post_parse_date(bad[i], &t) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		/* *out is left alone on failure. */
		assert_int_equal(t, 42);
	}
}

static void test_bad_date_in_front_matter(void **state)
{
	struct fixture *fx = *state;

	parse_bad(fx, "x.md", "---\nsubject: Hi\ndate: 2026-02-30\n---\n",
		  "x.md:3: date \"2026-02-30\" is not YYYY-MM-DD HH:MM (local time) "
		  "nor YYYY-MM-DD HH:MM +01:00 (that offset from UTC; Z for UTC)");
}

static void test_merge_field_in_link(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "x.md",
		 "---\nsubject: Hi\n---\n[Unsubscribe]({{unsubscribe_url}})\n");
	assert_string_equal(fx->p.html,
			    "<p><a href=\"{{unsubscribe_url}}\">Unsubscribe"
			    "</a></p>\n");
	assert_string_equal(fx->p.text,
			    "Unsubscribe [1]\n\n[1] {{unsubscribe_url}}\n");
}

static void test_merge_field_in_table(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "x.md",
		 "---\nsubject: Hi\n---\n"
		 "| a | b |\n|---|---|\n| {{name|x}} | b |\n");
	assert_string_equal(fx->p.html,
			    "<table>\n<thead>\n<tr>\n<th>a</th>\n<th>b</th>\n"
			    "</tr>\n</thead>\n<tbody>\n<tr>\n"
			    "<td>{{name|x}}</td>\n<td>b</td>\n"
			    "</tr>\n</tbody>\n</table>\n");
	/* The field is one cell, followed by the second: the '|' of the
	 * fallback did not split it. */
	const char *last = strrchr(fx->p.text, '\n');

	assert_non_null(last);
	assert_non_null(strstr(fx->p.text, "\n{{name|x}} | b\n"));
	assert_int_equal(last[1], '\0');
}

static void test_merge_fields_survive(void **state)
{
	struct fixture *fx = *state;

	/* Smart punctuation, emphasis and autolinks leave fields alone. */
	parse_ok(fx, "x.md",
		 "---\nsubject: Hi\n---\n"
		 "Hi {{ name | \"dear\" reader }}, *{{city}}* -- "
		 "https://example.org/?e={{email}}&t={{token}}\n");
	assert_string_equal(fx->p.html,
			    "<p>Hi {{ name | \"dear\" reader }}, "
			    "<em>{{city}}</em> \xE2\x80\x93 "
			    "<a href=\"https://example.org/?e={{email}}&amp;"
			    "t={{token}}\">https://example.org/?e={{email}}"
			    "&amp;t={{token}}</a></p>\n");
	assert_string_equal(fx->p.text,
			    "Hi {{ name | \"dear\" reader }}, {{city}} "
			    "\xE2\x80\x93 https://example.org/?e={{email}}&t="
			    "{{token}}\n");
	/* An unclosed "{{" goes out as text (the escape) and is kept, with
	 * its line, for the message build to refuse. */
	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\nA {{name\n");
	assert_string_equal(fx->p.html, "<p>A \\{{name</p>\n");
	assert_int_equal(fx->p.nfields, 1);
	assert_string_equal(fx->p.fields[0].text, "{{");
	assert_int_equal(fx->p.fields[0].line, 4);
}

static void test_raw_html_dropped(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "x.md",
		 "---\nsubject: Hi\n---\n"
		 "Text <b onclick=\"x()\">bold</b> here.\n\n"
		 "<script>alert(1)</script>\n\n"
		 "<div>block</div>\n\n"
		 "A [link](javascript:alert(2)) and <iframe src=x>.\n");
	assert_null(strstr(fx->p.html, "<script"));
	assert_null(strstr(fx->p.html, "alert(1)"));
	assert_null(strstr(fx->p.html, "onclick"));
	assert_null(strstr(fx->p.html, "<div"));
	assert_null(strstr(fx->p.html, "<iframe"));
	assert_null(strstr(fx->p.html, "javascript:"));
	assert_non_null(strstr(fx->p.html, "<p>Text "));
	/* The plain text holds no markup at all. */
	assert_null(strchr(fx->p.text, '<'));
	assert_null(strchr(fx->p.text, '>'));
	assert_non_null(strstr(fx->p.text, "Text bold here."));
}

/* unsafe_html: raw HTML is kept, GFM's tagfilter still disarms <script>
 * and <iframe>. */
static void test_unsafe_html_keeps_html(void **state)
{
	struct fixture *fx = *state;
	const char *src = "---\nsubject: Hi\n---\n"
			  "Text <b class=\"x\">bold</b> here.\n\n"
			  "<script>alert(1)</script>\n\n"
			  "<div>block</div>\n\n"
			  "An <iframe src=x>.\n";

	post_free(&fx->p);
	assert_int_equal(post_parse_opts(&fx->p, "x.md", src, strlen(src), 72,
					 POST_UNSAFE_HTML, fx->err, sizeof fx->err),
			 POST_OK);
	assert_non_null(strstr(fx->p.html, "<b class=\"x\">bold</b>"));
	assert_non_null(strstr(fx->p.html, "<div>block</div>"));
	assert_null(strstr(fx->p.html, "<script"));
	assert_null(strstr(fx->p.html, "<iframe"));
	assert_non_null(strstr(fx->p.html, "&lt;script>"));
	assert_non_null(strstr(fx->p.html, "&lt;iframe"));
	/* The text part is the same either way. */
	assert_null(strchr(fx->p.text, '<'));
}

static void test_text_has_no_tags(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "x.md",
		 "---\nsubject: Hi\n---\n"
		 "# Title\n\nSome **bold** and *em* and `code`.\n\n"
		 "- one\n- two\n\n> quoted\n\n"
		 "![alt text](https://example.org/i.png)\n");
	assert_null(strchr(fx->p.text, '<'));
	assert_null(strstr(fx->p.text, "</"));
	assert_null(strstr(fx->p.text, "<p>"));
	assert_null(strstr(fx->p.text, "**"));
	assert_non_null(strstr(fx->p.text, "Some bold and em and code."));
	assert_non_null(strstr(fx->p.text, "[image: alt text]"));
	assert_non_null(strstr(fx->p.html, "<h1>Title</h1>"));
	assert_non_null(strstr(fx->p.html, "<strong>bold</strong>"));
	assert_null(strchr(fx->p.text, '\r'));
}

static void test_load(void **state)
{
	struct fixture *fx = *state;

	post_free(&fx->p);
	assert_int_equal(post_load(&fx->p, "../fixtures/issue-1.md", 72,
				   fx->err, sizeof fx->err), POST_OK);
	assert_string_equal(fx->p.path, "../fixtures/issue-1.md");
	assert_string_equal(fx->p.slug, "issue-1");
	assert_string_equal(fx->p.subject,
			    "Caf\xC3\xA9 notes \xE2\x80\x94 issue 3");
	assert_string_equal(fx->p.preheader,
			    "Three small things worth your Sunday morning");
	assert_int_equal(fx->p.body_line, 6);
	assert_non_null(strstr(fx->p.html, "Hi {{name|reader}},"));
	assert_non_null(strstr(fx->p.text, "Unsubscribe: {{unsubscribe_url}}"));

	post_free(&fx->p);
	assert_int_equal(post_load(&fx->p, "no/such/post.md", 72, fx->err,
				   sizeof fx->err), POST_NOFILE);
	assert_string_equal(fx->err,
			    "no/such/post.md: No such file or directory");
}

/* The caption is the emphasised line right after the image, blank line
 * between or not: both make the same figure, and in the text part the
 * caption has a line of its own (not run into the alt text). */
static const char figure_html[] =
	"<table role=\"presentation\" class=\"figure\" width=\"100%\" cellpadding=\"0\" "
	"cellspacing=\"0\" border=\"0\" style=\"width:100%; margin:0 0 20px;\">\n"
	"<tr><td class=\"figure-image\" align=\"center\">\n"
	"<img src=\"https://e.org/x.jpg\" alt=\"Crew\" />\n"
	"</td></tr>\n"
	"<tr><td class=\"caption\" align=\"center\" style=\"padding:8px 8px 0; "
	"text-align:center;\">\n"
	"<em>Photo: Priya.</em>\n"
	"</td></tr>\n"
	"</table>\n";

static void test_caption_below_image(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\n"
		 "![Crew](https://e.org/x.jpg)\n*Photo: Priya.*\n");
	assert_string_equal(fx->p.html, figure_html);
	assert_string_equal(fx->p.text, "[image: Crew]\nPhoto: Priya.\n");
	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\n"
		 "![Crew](https://e.org/x.jpg)\n\n*Photo: Priya.*\n");
	assert_string_equal(fx->p.html, figure_html);
	assert_string_equal(fx->p.text, "[image: Crew]\n\nPhoto: Priya.\n");
	/* Not a caption: plain text under the image stays a paragraph
	 * (check warns about it), so does text on the image's line. */
	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\n"
		 "![Crew](https://e.org/x.jpg)\nPhoto: Priya.\n");
	assert_string_equal(fx->p.html, "<p><img src=\"https://e.org/x.jpg\" alt=\"Crew\" />\n"
			    "Photo: Priya.</p>\n");
}

/* Code shows "{{" as written: its fields go out as the template's
 * escape and are not kept for merging; prose "\{{" is kept as the
 * escape; the fields that merge are kept with their lines. */
static void test_code_is_not_merged(void **state)
{
	struct fixture *fx = *state;

	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\n"
		 "Hi {{name}}, write `{{name}}` or \\{{name}}; `\\{{x}}`.\n\n"
		 "```\nDear {{ name }},\n{{ open\n```\n\nBye {{email}}\n");
	assert_string_equal(fx->p.html,
			    "<p>Hi {{name}}, write <code>\\{{name}}</code> or \\{{name}}; "
			    "<code>\\\\{{x}}</code>.</p>\n"
			    "<pre><code>Dear \\{{ name }},\n\\{{ open\n</code></pre>\n"
			    "<p>Bye {{email}}</p>\n");
	assert_string_equal(fx->p.text,
			    "Hi {{name}}, write \\{{name}} or \\{{name}}; \\\\{{x}}.\n\n"
			    "    Dear \\{{ name }},\n    \\{{ open\n\nBye {{email}}\n");
	assert_int_equal(fx->p.nfields, 2);
	assert_string_equal(fx->p.fields[0].text, "{{name}}");
	assert_int_equal(fx->p.fields[0].line, 4);
	assert_string_equal(fx->p.fields[1].text, "{{email}}");
	assert_int_equal(fx->p.fields[1].line, 11);
	/* A brace that rendering puts right before a field stays text. */
	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\n{*{{name}}*\n");
	assert_string_equal(fx->p.text, "{{{name}}\n");
	assert_int_equal(fx->p.nfields, 1);
	/* A "{{" that only rendering makes is text too. */
	parse_ok(fx, "x.md", "---\nsubject: Hi\n---\n\\{\\{name}} &#123;&#123;x}}\n");
	assert_string_equal(fx->p.html, "<p>\\{{name}} \\{{x}}</p>\n");
	assert_int_equal(fx->p.nfields, 0);
}

/* merge_code = true: code merges like prose. */
static void test_merge_code(void **state)
{
	struct fixture *fx = *state;
	const char src[] = "---\nsubject: Hi\n---\nHi `{{name}}` \\{{x\n";

	post_free(&fx->p);
	assert_int_equal(post_parse_opts(&fx->p, "x.md", src, strlen(src), 72, POST_MERGE_CODE,
					 fx->err, sizeof fx->err), POST_OK);
	assert_string_equal(fx->p.html, "<p>Hi <code>{{name}}</code> \\{{x</p>\n");
	assert_int_equal(fx->p.nfields, 1);
	assert_string_equal(fx->p.fields[0].text, "{{name}}");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_front_matter),
		T(test_front_matter_minimal),
		T(test_front_matter_bom_crlf),
		T(test_missing_subject),
		T(test_unknown_key),
		T(test_unclosed_front_matter),
		T(test_no_front_matter),
		T(test_nul_byte),
		T(test_slug),
		T(test_bad_slug),
		T(test_parse_date),
		T(test_bad_date_in_front_matter),
		T(test_merge_field_in_link),
		T(test_merge_field_in_table),
		T(test_unsafe_html_keeps_html),
		T(test_merge_fields_survive),
		T(test_raw_html_dropped),
		T(test_caption_below_image),
		T(test_code_is_not_merged),
		T(test_merge_code),
		T(test_text_has_no_tags),
		T(test_load),
		/* Last: under ASan a failure here aborts the run. */
		T(test_exact_length_buffer),
#undef T
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
