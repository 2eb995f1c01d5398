/* Unit tests for dsn.c: every bounce fixture (tests/fixtures/bounces/)
 * parsed and compared whole, hostile input, VERP and status parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "mailbox/dsn.h"

#define RP "bounces+{{verp}}@example.org"
#define FIX "../fixtures/bounces/"

struct want {
	const char *file;
	enum dsn_format format;
	const char *family, *msgid, *verp;
	long date;
	size_t n;
	struct { const char *addr; enum dsn_kind kind; const char *status; int code; const char *text; } r[2];
};

static const struct want fixtures[] = {
	{"postfix-dsn.eml", DSN_RFC3464, "rfc3464", "<abc123.1@example.org>", "gone@example.net", 1764065702, 1,
	 {{"gone@example.net", DSN_HARD, "5.1.1", 550,
	   "550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown in virtual mailbox table"}}},
	{"postfix-delayed.eml", DSN_RFC3464, "rfc3464", "<abc123.2@example.org>", "slow@example.net", 1764140400, 1,
	 {{"slow@example.net", DSN_DELAYED, "4.4.1", 0,
	   "connect to mail.example.net[192.0.2.26]:25: Connection timed out"}}},
	{"soft-full.eml", DSN_RFC3464, "rfc3464", "<abc123.3@example.org>", "full@example.net", 1764144000, 1,
	 {{"full@example.net", DSN_SOFT, "4.2.2", 452, "452 4.2.2 Mailbox full"}}},
	{"exim-text.eml", DSN_TEXT, "exim", "<abc123.4@example.org>", "old@example.com", 1764068405, 1,
	 {{"old@example.com", DSN_HARD, "5.2.1", 550,
	   "host mx.example.com [192.0.2.30] SMTP error from remote mail server after RCPT "
	   "TO:<old@example.com>: 550 5.2.1 The email account that you tried to reach is disabled"}}},
	{"exim-delay.eml", DSN_TEXT, "exim", "", "later@example.com", 1764154805, 1,
	 {{"later@example.com", DSN_DELAYED, "", 0, "host mx.example.com [192.0.2.31]: Connection timed out"}}},
	{"sendmail-text.eml", DSN_TEXT, "sendmail", "<abc123.5@example.org>", "prof@example.edu", 1764090000, 1,
	 {{"prof@example.edu", DSN_HARD, "5.1.1", 550, "<<< 550 5.1.1 <prof@example.edu>... User unknown"}}},
	{"qmail-text.eml", DSN_TEXT, "qmail", "<abc123.6@example.org>", "ghost@example.net", 1764075600, 1,
	 {{"ghost@example.net", DSN_HARD, "5.1.1", 0, "Sorry, no mailbox here by that name. (#5.1.1)"}}},
	{"exchange-text.eml", DSN_TEXT, "exchange", "", "left@corp.example.com", 1764079200, 1,
	 {{"left@corp.example.com", DSN_HARD, "5.1.1", 550,
	   "Remote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'"}}},
	{"gmail-text.eml", DSN_TEXT, "gmail", "<abc123.7@example.org>", "nobody@gmail.example", 1764111600, 1,
	 {{"nobody@gmail.example", DSN_HARD, "5.1.1", 550,
	   "550-5.1.1 The email account that you tried to reach does not exist. Please try"}}},
	{"arf-abuse.eml", DSN_ARF, "arf", "<abc123.8@example.org>", "angry@isp.example", 1764147600, 1,
	 {{"angry@isp.example", DSN_COMPLAINT, "", 0, "feedback-type abuse from SomeGenerator/1.0"}}},
	{"arf-redacted.eml", DSN_ARF, "arf", "", "hidden@bigmail.example", 1764149400, 1,
	 {{"redacted@bigmail.example", DSN_COMPLAINT, "", 0, "feedback-type abuse from BigMail-FBL/2.0"}}},
	{"arf-not-spam.eml", DSN_ARF, "arf", "", "", 1764149700, 0, {{0}}},
	{"vacation.eml", DSN_NOT_BOUNCE, "", "", "pat@example.net", 1764151200, 0, {{0}}},
	{"broken-mime-verp.eml", DSN_TEXT, "verp", "", "lost@odd.example", 1764153000, 1,
	 {{"lost@odd.example", DSN_SOFT, "", 0, "Undelivered Mail Returned to Sender"}}},
	{"multi-rcpt.eml", DSN_RFC3464, "rfc3464", "", "", 1764154800, 2,
	 {{"bad@example.net", DSN_HARD, "5.7.1", 554, "554 5.7.1 <bad@example.net>: Relay access denied"},
	  {"worse@example.net", DSN_HARD, "5.1.2", 550, "550 5.1.2 Host unknown"}}},
};

static void parse_file(const char *name, struct dsn_report *r)
{
	char path[256], err[256] = "";
	char *data;
	size_t len;
	snprintf(path, sizeof path, FIX "%s", name);
	assert_int_equal(read_file(path, &data, &len), 0);
	assert_int_equal(dsn_parse(data, len, RP, r, err, sizeof err), 0);
	free(data);
}

static void test_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof fixtures / sizeof *fixtures; i++) {
		const struct want *w = &fixtures[i];
		struct dsn_report r;
		print_message("# %s\n", w->file);
		parse_file(w->file, &r);
		assert_int_equal(r.format, w->format);
		assert_string_equal(r.family, w->family);
		assert_string_equal(r.orig_msgid, w->msgid);
		assert_string_equal(r.verp_addr, w->verp);
		assert_int_equal((long)r.date, w->date);
		assert_int_equal(r.nrcpt, w->n);
		for (size_t k = 0; k < w->n; k++) {
			assert_string_equal(r.rcpt[k].addr, w->r[k].addr);
			assert_int_equal(r.rcpt[k].kind, w->r[k].kind);
			assert_string_equal(r.rcpt[k].status, w->r[k].status);
			assert_int_equal(r.rcpt[k].code, w->r[k].code);
			assert_string_equal(r.rcpt[k].text, w->r[k].text);
		}
		dsn_free(&r);
	}
}

/* The same fixtures with CRLF line ends read the same. */
static void test_crlf(void **state)
{
	(void)state;
	char *data, err[256];
	size_t len;
	assert_int_equal(read_file(FIX "postfix-dsn.eml", &data, &len), 0);
	struct buf b = {0};
	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n')
			assert_int_equal(buf_addc(&b, '\r'), 0);
		assert_int_equal(buf_addc(&b, data[i]), 0);
	}
	struct dsn_report r;
	assert_int_equal(dsn_parse(b.p, b.len, RP, &r, err, sizeof err), 0);
	assert_int_equal(r.format, DSN_RFC3464);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpt[0].addr, "gone@example.net");
	assert_string_equal(r.rcpt[0].status, "5.1.1");
	assert_string_equal(r.orig_msgid, "<abc123.1@example.org>");
	assert_string_equal(r.verp_addr, "gone@example.net");
	dsn_free(&r);
	buf_free(&b);
	free(data);
}

static struct dsn_report parse_str(const char *s, size_t len)
{
	struct dsn_report r;
	char err[256];
	assert_int_equal(dsn_parse(s, len, RP, &r, err, sizeof err), 0);
	return r;
}

/* Hostile input: nothing crashes, nothing is invented. */
static void test_hostile(void **state)
{
	(void)state;
	struct dsn_report r = parse_str("", 0);
	assert_int_equal(r.format, DSN_NOT_BOUNCE);
	dsn_free(&r);

	/* A header of 2 MB on one line, then a DSN. */
	struct buf b = {0};
	assert_int_equal(buf_adds(&b, "Subject: "), 0);
	for (int i = 0; i < 2 * 1024 * 1024; i++)
		assert_int_equal(buf_addc(&b, 'x'), 0);
	assert_int_equal(buf_adds(&b, "\nFrom: MAILER-DAEMON@x.example\nTo: bounces+huge=example.net@example.org\n"
		     "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
		     "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
		     "Final-Recipient: rfc822; huge@example.net\nAction: failed\nStatus: 5.1.1\n\n--B--\n"), 0);
	r = parse_str(b.p, b.len);
	assert_int_equal(r.format, DSN_RFC3464);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpt[0].addr, "huge@example.net");
	assert_string_equal(r.rcpt[0].text, "Action: failed; Status: 5.1.1");
	assert_string_equal(r.verp_addr, "huge@example.net");
	dsn_free(&r);

	/* Multiparts nested 200 deep, never closed. */
	buf_reset(&b);
	for (int i = 0; i < 200; i++)
		assert_int_equal(buf_printf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i), 0);
	r = parse_str(b.p, b.len);
	assert_int_equal(r.format, DSN_NOT_BOUNCE);
	dsn_free(&r);

	/* Binary and non-UTF-8 junk with bounce words in it. */
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, "From: MAILER-DAEMON@x.example\nSubject: Undeliverable \xff\xfe\n\n"), 0);
	for (int i = 0; i < 5000; i++)
		assert_int_equal(buf_addc(&b, (char)(i * 37 % 256)), 0);
	assert_int_equal(buf_adds(&b, "\n<\xc3\x28@example.net>: 550 5.1.1 nope\n"), 0);
	r = parse_str(b.p, b.len);
	for (size_t i = 0; i < r.nrcpt; i++)
		assert_non_null(strchr(r.rcpt[i].addr, '@'));
	dsn_free(&r);

	/* Missing fields: a recipient with neither Action nor Status nor a
	 * diagnostic is not a bounce; one with only a 4xx diagnostic is soft. */
	const char *missing =
		"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
		"--B\nContent-Type: message/delivery-status\n\n"
		"Final-Recipient: rfc822; vague@example.net\n\n"
		"Final-Recipient: rfc822; later@example.net\nDiagnostic-Code: smtp; 421 try later\n\n"
		"Final-Recipient: x400; c=us;a=;p=x\nAction: failed\nStatus: 5.0.0\n--B--\n";
	r = parse_str(missing, strlen(missing));
	assert_int_equal(r.format, DSN_RFC3464);
	assert_int_equal(r.nrcpt, 1);
	assert_string_equal(r.rcpt[0].addr, "later@example.net");
	assert_int_equal(r.rcpt[0].kind, DSN_SOFT);
	assert_int_equal(r.rcpt[0].code, 421);
	dsn_free(&r);

	/* A thousand recipients: capped, not unbounded. */
	buf_reset(&b);
	assert_int_equal(buf_adds(&b, "Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
		     "--B\nContent-Type: message/delivery-status\n\n"), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(buf_printf(&b, "Final-Recipient: rfc822; r%d@example.net\nAction: failed\nStatus: 5.1.1\n\n", i), 0);
	assert_int_equal(buf_adds(&b, "--B--\n"), 0);
	r = parse_str(b.p, b.len);
	assert_int_equal(r.nrcpt, 100);
	dsn_free(&r);
	buf_free(&b);
}

static void test_verp(void **state)
{
	(void)state;
	char out[320];
	assert_int_equal(dsn_verp_decode(RP, "bounces+joy=example.net@example.org", out, sizeof out), 0);
	assert_string_equal(out, "joy@example.net");
	assert_int_equal(dsn_verp_decode(RP, "BOUNCES+a=b=example.net@EXAMPLE.ORG", out, sizeof out), 0);
	assert_string_equal(out, "a=b@example.net");
	assert_int_equal(dsn_verp_decode("b-{{ verp }}@x.example", "b-x.y=z.example@x.example", out, sizeof out), 0);
	assert_string_equal(out, "x.y@z.example");
	assert_int_equal(dsn_verp_decode(RP, "bounces@example.org", out, sizeof out), -1);
	assert_int_equal(dsn_verp_decode(RP, "bounces+joy@example.org", out, sizeof out), -1);
	assert_int_equal(dsn_verp_decode(RP, "bounces+joy=nodot@example.org", out, sizeof out), -1);
	assert_int_equal(dsn_verp_decode(RP, "other+joy=example.net@example.org", out, sizeof out), -1);
	assert_int_equal(dsn_verp_decode("bounces@example.org", "bounces@example.org", out, sizeof out), -1);
	assert_int_equal(dsn_verp_decode(NULL, "bounces+joy=example.net@example.org", out, sizeof out), -1);
}

static void test_status(void **state)
{
	(void)state;
	char s[16];
	assert_int_equal(dsn_status_parse("5.1.1", s), 1);
	assert_string_equal(s, "5.1.1");
	assert_int_equal(dsn_status_parse(" 4.7.650 (greylisted)", s), 1);
	assert_string_equal(s, "4.7.650");
	assert_int_equal(dsn_status_parse("2.0.0", s), 1);
	assert_int_equal(dsn_status_parse("3.1.1", s), 0);
	assert_int_equal(dsn_status_parse("5.1", s), 0);
	assert_int_equal(dsn_status_parse("5.1.1234", s), 0);
	assert_int_equal(dsn_status_parse("5.1.1.4", s), 0);
	assert_int_equal(dsn_status_parse("5..1", s), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_verp),
		cmocka_unit_test(test_status),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
