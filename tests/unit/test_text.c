/* Unit tests for text.c: Markdown in, exact plain text out (width 72). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>

#include "compose/text.h"
#include "util/buf.h"

static cmark_node *parse(const char *md)
{
	static const char *const exts[] = { "table", "strikethrough",
					    "autolink" };
	cmark_parser *p;
	cmark_node *doc;

	cmark_gfm_core_extensions_ensure_registered();
	p = cmark_parser_new(CMARK_OPT_DEFAULT);
	assert_non_null(p);
	for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
		cmark_syntax_extension *e = cmark_find_syntax_extension(exts[i]);

		assert_non_null(e);
		assert_true(cmark_parser_attach_syntax_extension(p, e));
	}
	cmark_parser_feed(p, md, strlen(md));
	doc = cmark_parser_finish(p);
	cmark_parser_free(p);
	assert_non_null(doc);
	return doc;
}

/* Renders at width 72 and checks the invariants every output must keep:
 * LF only, no trailing blanks, exactly one final LF. */
static char *render(const char *md)
{
	cmark_node *doc = parse(md);
	char err[256] = "", *out = NULL;
	size_t len;

	assert_int_equal(text_render(doc, 72, &out, err, sizeof err), 0);
	cmark_node_free(doc);
	assert_non_null(out);
	len = strlen(out);
	assert_true(len > 0);
	assert_true(out[len - 1] == '\n');
	assert_true(len == 1 || out[len - 2] != '\n');
	assert_null(strchr(out, '\r'));
	assert_null(strstr(out, " \n"));
	assert_null(strstr(out, "\t\n"));
	return out;
}

static void check(const char *md, const char *want)
{
	char *got = render(md);

	assert_string_equal(got, want);
	free(got);
}

/* Longest line of s in display columns. */
static size_t max_line_width(const char *s)
{
	size_t max = 0;

	while (*s) {
		size_t len = strcspn(s, "\n");
		size_t w = text_width(s, len);

		if (w > max)
			max = w;
		s += len + (s[len] == '\n');
	}
	return max;
}

static void test_wrap_72(void **state)
{
	(void)state;
	const char *md =
		"The quick brown fox jumps over the lazy dog while the "
		"newsletter goes out to every subscriber on the list, "
		"one message at a time, politely rate limited.\n";
	char *got = render(md);

	assert_string_equal(got,
		"The quick brown fox jumps over the lazy dog while the newsletter goes\n"
		"out to every subscriber on the list, one message at a time, politely\n"
		"rate limited.\n");
	assert_true(max_line_width(got) <= 72);
	free(got);
}

static void test_wrap_exact_fit_and_softbreak(void **state)
{
	(void)state;
	/* Exactly 72 columns fit; the next word goes below. The soft
	 * break in the source is only a space. */
	check("aaaaaaaaa bbbbbbbb cccccccc dddddddd\n"
	      "eeeeeeee ffffffff gggggggg hhhhhhhh iiiiiiii\n",
	      "aaaaaaaaa bbbbbbbb cccccccc dddddddd eeeeeeee ffffffff gggggggg hhhhhhhh\n"
	      "iiiiiiii\n");
}

static void test_long_word_unbroken(void **state)
{
	(void)state;
	char md[200], want[200];
	char word[101];

	memset(word, 'x', 100);
	word[100] = '\0';
	snprintf(md, sizeof md, "short %s tail\n", word);
	snprintf(want, sizeof want, "short\n%s\ntail\n", word);
	check(md, want);
}

static void test_utf8_wrap(void **state)
{
	(void)state;
	/* 13 words of five "é" (2 bytes each): 12 words take 71 columns
	 * (131 bytes); wrapping by bytes would break much earlier. */
	char md[512] = "", want[512] = "";
	const char *w = "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9";
	char *got;

	for (int i = 0; i < 13; i++) {
		strcat(md, w);
		strcat(md, i < 12 ? " " : "\n");
		strcat(want, w);
		strcat(want, i < 11 ? " " : "\n");
	}
	got = render(md);
	assert_string_equal(got, want);
	assert_true(max_line_width(got) == 71);
	free(got);
}

static void test_text_width(void **state)
{
	(void)state;
	assert_int_equal(text_width("abc", 3), 3);
	assert_int_equal(text_width("\xc3\xa9t\xc3\xa9", 5), 3);
	/* e + combining acute: one column */
	assert_int_equal(text_width("e\xcc\x81", 3), 1);
	/* CJK is two columns a character */
	assert_int_equal(text_width("\xe6\x97\xa5\xe6\x9c\xac", 6), 4);
	/* invalid bytes count one each; a truncated sequence too */
	assert_int_equal(text_width("\xff\xfe", 2), 2);
	assert_int_equal(text_width("a\xe2\x82", 3), 3);
	assert_int_equal(text_width("", 0), 0);
}

static void test_headings(void **state)
{
	(void)state;
	check("# Big *news*\n\n## Smaller\n\n### Third\n\n#### Fourth\n\nBody.\n",
	      "Big news\n"
	      "========\n"
	      "\n"
	      "Smaller\n"
	      "-------\n"
	      "\n"
	      "### Third\n"
	      "\n"
	      "#### Fourth\n"
	      "\n"
	      "Body.\n");
}

static void test_heading_utf8_underline(void **state)
{
	(void)state;
	/* underline as wide as the text in columns, not bytes */
	check("# Caf\xc3\xa9\n", "Caf\xc3\xa9\n====\n");
}

static void test_bullet_list_wrapped(void **state)
{
	(void)state;
	check("- first\n"
	      "- second item, which is long enough that it has to wrap onto a continuation line\n"
	      "- third\n",
	      "  * first\n"
	      "  * second item, which is long enough that it has to wrap onto a\n"
	      "    continuation line\n"
	      "  * third\n");
}

static void test_nested_and_ordered_lists(void **state)
{
	(void)state;
	check("3. three\n"
	      "4. four\n"
	      "   - nested a\n"
	      "   - nested b\n"
	      "5. five\n",
	      "  3. three\n"
	      "  4. four\n"
	      "       * nested a\n"
	      "       * nested b\n"
	      "  5. five\n");
}

static void test_ordered_numbers_aligned(void **state)
{
	(void)state;
	check("9. nine\n10. ten\n", "   9. nine\n  10. ten\n");
}

static void test_loose_list(void **state)
{
	(void)state;
	check("- one\n\n- two\n\n  second paragraph\n",
	      "  * one\n"
	      "\n"
	      "  * two\n"
	      "\n"
	      "    second paragraph\n");
}

static void test_block_quote_wrapped(void **state)
{
	(void)state;
	check("> A quoted paragraph that is long enough to wrap, because the prefix counts toward the width.\n"
	      ">\n"
	      "> > Nested.\n",
	      "> A quoted paragraph that is long enough to wrap, because the prefix\n"
	      "> counts toward the width.\n"
	      ">\n"
	      "> > Nested.\n");
}

static void test_links_numbered_and_reused(void **state)
{
	(void)state;
	check("Read [the post](https://example.com/post), see "
	      "[the docs](https://example.com/docs) and [again the post]"
	      "(https://example.com/post).\n\n"
	      "Later: [docs](https://example.com/docs).\n",
	      "Read the post [1], see the docs [2] and again the post [1].\n"
	      "\n"
	      "Later: docs [2].\n"
	      "\n"
	      "[1] https://example.com/post\n"
	      "[2] https://example.com/docs\n");
}

static void test_link_ref_not_split(void **state)
{
	(void)state;
	/* "here [1]" moves to the next line as a unit */
	check("xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxx "
	      "[here](https://example.com/).\n",
	      "xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxxxx xxxxxxx\n"
	      "here [1].\n"
	      "\n"
	      "[1] https://example.com/\n");
}

static void test_autolinks_bare(void **state)
{
	(void)state;
	check("See <https://example.org/a>, www.example.net, "
	      "<me@example.com> and https://example.org/b.\n",
	      "See https://example.org/a, www.example.net, me@example.com and\n"
	      "https://example.org/b.\n");
}

static void test_link_text_is_url(void **state)
{
	(void)state;
	check("[https://example.org/](https://example.org/) and "
	      "[](https://empty.example/)\n",
	      "https://example.org/ and https://empty.example/\n");
}

static void test_image_alt(void **state)
{
	(void)state;
	check("![A *red* kite](kite.png \"ignored title\")\n\n"
	      "*The kite, in flight.*\n\n"
	      "![](blank.png)\n",
	      "[image: A red kite]\n"
	      "\n"
	      "The kite, in flight.\n"
	      "\n"
	      "[image]\n");
}

/* The emphasised line right under an image is its caption: a line of
 * its own, as in the HTML part; in a list item too, wrapped there. Any
 * other line under an image is text, joined as a paragraph joins. */
static void test_caption_own_line(void **state)
{
	(void)state;
	check("![A red kite](https://e.org/k.jpg)\n*Photo: Priya Raman.*\n",
	      "[image: A red kite]\nPhoto: Priya Raman.\n");
	check("- ![Kite](https://e.org/k.jpg)\n  *The kite over the allotments "
	      "on Saturday morning, seen from the shed roof.*\n",
	      "  * [image: Kite]\n    The kite over the allotments on Saturday morning, seen "
	      "from the shed\n    roof.\n");
	check("![Kite](https://e.org/k.jpg)\nPhoto: Priya.\n",
	      "[image: Kite] Photo: Priya.\n");
}

static void test_code_block_verbatim(void **state)
{
	(void)state;
	check("Before.\n\n"
	      "```sh\n"
	      "for f in *.md; do herald send \"$f\" --dry-run out --subscribers list.csv --limit 10; done\n"
	      "\n"
	      "  indented   spacing kept\n"
	      "```\n\n"
	      "After.\n",
	      "Before.\n"
	      "\n"
	      "    for f in *.md; do herald send \"$f\" --dry-run out --subscribers list.csv --limit 10; done\n"
	      "\n"
	      "      indented   spacing kept\n"
	      "\n"
	      "After.\n");
}

static void test_inline_markup_plain(void **state)
{
	(void)state;
	check("Some *em*, **strong**, ~~struck~~ and `a  code` span.\n",
	      "Some em, strong, ~~struck~~ and a  code span.\n");
}

static void test_hard_break(void **state)
{
	(void)state;
	check("Line one  \nLine two\\\nLine three\n",
	      "Line one\nLine two\nLine three\n");
}

static void test_thematic_break(void **state)
{
	(void)state;
	check("Above.\n\n---\n\nBelow.\n",
	      "Above.\n"
	      "\n"
	      "                                 * * *\n"
	      "\n"
	      "Below.\n");
}

static void test_table(void **state)
{
	(void)state;
	check("| Name | Age | Link |\n"
	      "|------|----:|------|\n"
	      "| Alice | 30 | [site](https://alice.example/) |\n"
	      "| Bob the builder | 4 | none |\n",
	      "Name            | Age | Link\n"
	      "----------------|-----|---------\n"
	      "Alice           |  30 | site [1]\n"
	      "Bob the builder |   4 | none\n"
	      "\n"
	      "[1] https://alice.example/\n");
}

static void test_raw_html_dropped(void **state)
{
	(void)state;
	check("Before.\n\n"
	      "<div class=\"promo\">\n<p>Buy now</p>\n</div>\n\n"
	      "Some <b>bold</b> words.<!-- note -->\n",
	      "Before.\n"
	      "\n"
	      "Some bold words.\n");
}

static void test_merge_fields_are_words(void **state)
{
	(void)state;
	check("Hello {{first_name}}, unsubscribe at {{unsubscribe_url}}.\n",
	      "Hello {{first_name}}, unsubscribe at {{unsubscribe_url}}.\n");
}

static void test_empty_document(void **state)
{
	(void)state;
	check("", "\n");
}

static void test_null_doc_is_error(void **state)
{
	(void)state;
	char err[64] = "", *out = NULL;

	assert_int_equal(text_render(NULL, 72, &out, err, sizeof err), -1);
	assert_null(out);
	assert_true(err[0] != '\0');
}

/* Past 32 nested containers the rest is rendered flat, without recursion:
 * 10,000 nested quotes neither overflow the stack nor take cubic time,
 * and their words are kept. */
static void test_deep_nesting_flat(void **state)
{
	(void)state;
	static const char *const unit[] = { "> ", "- ", "1. " };
	for (size_t k = 0; k < sizeof unit / sizeof *unit; k++) {
		size_t n = 10000, ul = strlen(unit[k]);
		char *md = malloc(n * ul + 64), *p = md;

		assert_non_null(md);
		for (size_t i = 0; i < n; i++, p += ul)
			memcpy(p, unit[k], ul);
		strcpy(p, "deep [words](https://e.org/)\n\nmore\n");
		char *got = render(md);

		/* 32 levels of prefix, then the text: nothing more deeply
		 * indented, and the words and the link reference are kept. */
		assert_non_null(strstr(got, "deep"));
		assert_non_null(strstr(got, "words"));
		assert_non_null(strstr(got, "more"));
		assert_non_null(strstr(got, "[1] https://e.org/"));
		assert_true(strlen(got) < 200000);
		free(got);
		free(md);
	}
}

/* The flat rendering of a deep subtree keeps paragraphs apart. */
static void test_deep_nesting_paragraphs(void **state)
{
	(void)state;
	char md[512] = "", *got;

	for (int i = 0; i < 40; i++)
		strcat(md, ">");
	strcat(md, " one\n");
	for (int i = 0; i < 40; i++)
		strcat(md, ">");
	strcat(md, "\n");
	for (int i = 0; i < 40; i++)
		strcat(md, ">");
	strcat(md, " two\n");
	got = render(md);
	/* ">" x 32 prefix (as "> > ..."), "one", a blank quoted line, "two" */
	char *one = strstr(got, "one\n"), *two = strstr(got, "two\n");

	assert_non_null(one);
	assert_non_null(two);
	assert_true(two > one);
	assert_non_null(strstr(one, "\n>"));
	free(got);
}

/* Inline nesting past 128 levels (emphasis in emphasis...) is flattened
 * the same way. */
static void test_deep_inline_nesting(void **state)
{
	(void)state;
	size_t n = 3000;
	char *md = malloc(n * 6 + 16), *p = md;

	assert_non_null(md);
	for (size_t i = 0; i < n; i++, p += 3)
		memcpy(p, "*a ", 3);
	*p++ = 'x';
	for (size_t i = 0; i < n; i++, p += 3)
		memcpy(p, " b*", 3);
	strcpy(p, "\n");
	char *got = render(md);

	assert_non_null(strstr(got, "a a a"));
	assert_non_null(strstr(got, "x b b"));
	free(got);
	free(md);
}

/* The template's footer, merged per reader: lines after the last "-- "
 * that outgrow 72 columns are re-filled; the body above, a line that
 * fits and a word wider than the width (a URL) are kept as they are. */
static void test_wrap_footer(void **state)
{
	(void)state;
	struct buf b = {0};
	const char *body = "A body line that is long enough to exceed seventy-two columns when merged -- \n"
			   "-- \nnot the signature yet\n\n";
	assert_int_equal(buf_adds(&b, body), 0);
	assert_int_equal(buf_adds(&b, "-- \nThe Garden Lane Allotment Society Weekly Letter, from Joy <joy@example.org>\n"
		     "Unsubscribe: https://example.org/u?e=ann%40example.net&t=0123456789abcdef0123456789abcdef0123\n"
		     "Short line.\n"
		     "You are receiving this because ann.l\xc3\xa9vy@example.net subscribed to The Garden Lane "
		     "Allotment Society Weekly Letter.\n"), 0);
	assert_int_equal(text_wrap_footer(&b, 72), 0);
	assert_string_equal(buf_cstr(&b), "A body line that is long enough to exceed seventy-two columns when merged -- \n"
			    "-- \nnot the signature yet\n\n"
			    "-- \nThe Garden Lane Allotment Society Weekly Letter, from Joy\n<joy@example.org>\n"
			    "Unsubscribe:\nhttps://example.org/u?e=ann%40example.net&t=0123456789abcdef0123456789abcdef0123\n"
			    "Short line.\n"
			    "You are receiving this because ann.l\xc3\xa9vy@example.net subscribed to The\n"
			    "Garden Lane Allotment Society Weekly Letter.\n");
	/* No signature line: nothing changes. */
	static const char flat[] = "x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x x\n";
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, flat), 0);
	assert_int_equal(text_wrap_footer(&b, 72), 0);
	assert_string_equal(buf_cstr(&b), flat);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wrap_footer),
		cmocka_unit_test(test_wrap_72),
		cmocka_unit_test(test_wrap_exact_fit_and_softbreak),
		cmocka_unit_test(test_long_word_unbroken),
		cmocka_unit_test(test_utf8_wrap),
		cmocka_unit_test(test_text_width),
		cmocka_unit_test(test_headings),
		cmocka_unit_test(test_heading_utf8_underline),
		cmocka_unit_test(test_bullet_list_wrapped),
		cmocka_unit_test(test_nested_and_ordered_lists),
		cmocka_unit_test(test_ordered_numbers_aligned),
		cmocka_unit_test(test_loose_list),
		cmocka_unit_test(test_block_quote_wrapped),
		cmocka_unit_test(test_links_numbered_and_reused),
		cmocka_unit_test(test_link_ref_not_split),
		cmocka_unit_test(test_autolinks_bare),
		cmocka_unit_test(test_link_text_is_url),
		cmocka_unit_test(test_image_alt),
		cmocka_unit_test(test_caption_own_line),
		cmocka_unit_test(test_code_block_verbatim),
		cmocka_unit_test(test_inline_markup_plain),
		cmocka_unit_test(test_hard_break),
		cmocka_unit_test(test_thematic_break),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_raw_html_dropped),
		cmocka_unit_test(test_merge_fields_are_words),
		cmocka_unit_test(test_empty_document),
		cmocka_unit_test(test_null_doc_is_error),
		cmocka_unit_test(test_deep_nesting_flat),
		cmocka_unit_test(test_deep_nesting_paragraphs),
		cmocka_unit_test(test_deep_inline_nesting),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
