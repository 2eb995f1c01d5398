/* Unit tests for message.c: tokens, UTF-8 checks, the skeleton's
 * boundary check, and whole messages built from a hand-made config, a
 * parsed post and the layout templates in fixtures/templates, their
 * parts decoded again with the independent decoders of decode.h (the
 * encoders' own tests are test_encode.c's). */
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

#include "decode.h"


static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
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

/* ---- utf8_valid, skel_boundary_clear ----------------------------------- */

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
		cmocka_unit_test_setup_teardown(test_mailto_request_round_trip, setup, teardown),
		cmocka_unit_test_teardown(test_token, gc),
		cmocka_unit_test_teardown(test_utf8_valid, gc),
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
	};

	return cmocka_run_group_tests(tests, group_setup, NULL);
}
