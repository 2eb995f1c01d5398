/* Unit tests for the reply classification in smtp.c (smtp_sender_side:
 * whose problem a refusal is) and the loopback judgement in addr.c. The
 * replies are the words real servers use: Postfix, Exim, Sendmail, qmail,
 * Gmail, Microsoft. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "util/addr.h"
#include "deliver/smtp.h"

struct reply {
	int code;
	const char *status, *text;
	int sender;          /* 1: the sending side's problem */
	const char *hint;    /* a word the hint must hold, or NULL */
};

static const struct reply replies[] = {
	/* Postfix */
	{554, "5.7.1", "554 5.7.1 <ana@example.com>: Relay access denied", 1, "smtp.username"},
	{554, "5.7.1", "554 5.7.1 <localhost[127.0.0.1]>: Client host rejected: Access denied", 1,
	 "client restrictions"},
	{553, "5.7.1", "553 5.7.1 <joy@example.org>: Sender address rejected: not owned by user", 1,
	 "from"},
	{530, "5.7.0", "530 5.7.0 Must issue a STARTTLS command first", 1, "starttls"},
	{554, "5.7.1", "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
	 1, "client"},
	{550, "5.1.1", "550 5.1.1 <ana@example.com>: Recipient address rejected: User unknown in local recipient table",
	 0, NULL},
	{550, "5.7.1", "550 5.7.1 <ana@example.com>: Recipient address rejected: Access denied", 0, NULL},
	{553, "5.7.27", "553 5.7.27 <joy@example.org>: Sender address rejected: Domain example.org does not accept mail (nullMX)",
	 1, "from"},
	/* a reader whose own address holds a telling word decides nothing */
	{550, "5.1.1", "550 5.1.1 <relay@example.com>: Recipient address rejected: User unknown", 0, NULL},
	{550, "", "550 <relay-client-host@example.com>: mailbox unavailable", 0, NULL},
	/* Exim */
	{550, "", "550 relay not permitted", 1, "relay"},
	{530, "", "530 Authentication required", 1, "smtp.username"},
	{550, "", "550 Unrouteable address", 0, NULL},
	/* Sendmail, qmail */
	{550, "5.7.1", "550 5.7.1 <ana@example.com>... Relaying denied", 1, "relay"},
	{553, "", "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)", 1, "relay"},
	/* Gmail */
	{550, "5.1.1", "550 5.1.1 The email account that you tried to reach does not exist.", 0, NULL},
	{550, "5.2.1", "550 5.2.1 The email account that you tried to reach is disabled.", 0, NULL},
	{552, "5.2.2", "552 5.2.2 The email account that you tried to reach is over quota.", 0, NULL},
	{550, "5.7.26", "550 5.7.26 This mail is unauthenticated, which poses a security risk", 1, "SPF"},
	{550, "5.7.25", "550 5.7.25 The IP address sending this message does not have a PTR record", 1, NULL},
	{550, "5.7.1", "550 5.7.1 Our system has detected an unusual rate of unsolicited mail originating from your IP address",
	 1, "client"},
	{421, "4.7.28", "421 4.7.28 Gmail has detected an unusual rate of mail originating from your IP",
	 1, NULL},
	{552, "5.3.4", "552 5.3.4 Your message exceeded Google's message size limits", 1, "larger"},
	/* Microsoft */
	{550, "5.7.54", "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain", 1, "relay"},
	{530, "5.7.57", "530 5.7.57 Client not authenticated to send mail", 1, "smtp.username"},
	{550, "5.7.708", "550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP",
	 1, "client"},
	{550, "5.4.1", "550 5.4.1 Recipient address rejected: Access denied", 0, NULL},
	/* greylisting is about this reader and sender pair: a soft bounce */
	{450, "4.2.0", "450 4.2.0 <ana@example.com>: Recipient address rejected: Greylisted", 0, NULL},
	{450, "4.7.1", "450 4.7.1 Client host rejected: cannot find your hostname", 1, "client"},
};

/* The reply reader as the connections use it (smtp_replies_scan). */
struct got { struct smtp_result r[8]; int n; };

static void keep(void *arg, const struct smtp_result *r)
{
	struct got *g = arg;
	if (g->n < 8)
		g->r[g->n++] = *r;
}

static void test_replies(void **state)
{
	(void)state;
	struct got g = {.n = 0};
	/* A pipelined group's replies in one read, one of them multi-line. */
	const char *group = "250 2.1.0 Ok\r\n550-5.1.1 <bob@example.net>: no such user\r\n"
			    "550 5.1.1 try another\r\n554 5.5.1 Error: no valid recipients\r\n";
	assert_int_equal(smtp_replies_scan(group, strlen(group), SMTP_STAGE_RCPT, keep, &g), 3);
	assert_int_equal(g.r[0].cls, SMTP_OK);
	assert_int_equal(g.r[1].code, 550);
	assert_string_equal(g.r[1].status, "5.1.1");
	assert_string_equal(g.r[1].text, "550 5.1.1 <bob@example.net>: no such user 5.1.1 try another");
	assert_int_equal(g.r[1].cls, SMTP_PERM);
	assert_int_equal(g.r[1].sender_side, 0);
	/* The same refusal of MAIL concerns the sender: it stops the run. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("550 5.7.1 sender rejected\r\n", 27, SMTP_STAGE_MAIL,
					   keep, &g), 1);
	assert_int_equal(g.r[0].cls, SMTP_FATAL);
	/* 421 closes: the connection's trouble, not the reader's. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("421 4.3.2 bye\r\n", 15, SMTP_STAGE_BODY, keep, &g), 1);
	assert_int_equal(g.r[0].cls, SMTP_CONN);
	/* A reply cut in the middle waits for the rest; a bare LF ends a
	 * line too; no code is no reply. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("250 ok\n250-half", 15, SMTP_STAGE_RCPT, keep, &g), 1);
	assert_int_equal(smtp_replies_scan("hello\r\n", 7, SMTP_STAGE_RCPT, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("099 x\r\n", 7, SMTP_STAGE_RCPT, keep, &g), -1);
	/* Control characters never reach the text. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("452 4.2.2 full\x1b[2J\r\n", 20, SMTP_STAGE_RCPT, keep, &g), 1);
	assert_null(strchr(g.r[0].text, '\x1b'));
	assert_int_equal(g.r[0].cls, SMTP_TEMP);
}

/* RFC 5321 4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
 * Reply-code [ SP textstring ] CRLF. Anything else is no reply, and so
 * is a 1xx (SMTP has none) or a 3xx where no command can take one. */
static void test_reply_syntax(void **state)
{
	(void)state;
	struct got g = {.n = 0};
	/* The 4th character is a space, a hyphen or the line's end. */
	assert_int_equal(smtp_replies_scan("250Xfoo\r\n", 9, SMTP_STAGE_RCPT, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("2500 ok\r\n", 9, SMTP_STAGE_RCPT, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("25\r\n", 4, SMTP_STAGE_RCPT, keep, &g), -1);
	assert_int_equal(g.n, 0);
	/* A bare code is a whole reply. */
	assert_int_equal(smtp_replies_scan("250\r\n", 5, SMTP_STAGE_RCPT, keep, &g), 1);
	assert_int_equal(g.r[0].code, 250);
	assert_int_equal(g.r[0].cls, SMTP_OK);
	g.n = 0;
	assert_int_equal(smtp_replies_scan("550\r\n", 5, SMTP_STAGE_RCPT, keep, &g), 1);
	assert_int_equal(g.r[0].cls, SMTP_PERM);
	g.n = 0;
	assert_int_equal(smtp_replies_scan("250-\r\n250 \r\n", 13, SMTP_STAGE_RCPT, keep, &g), 1);
	assert_int_equal(g.r[0].code, 250);
	/* No 1xx, wherever it comes. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("123 x\r\n", 7, SMTP_STAGE_RCPT, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("150 wait\r\n250 ok\r\n", 18, SMTP_STAGE_BODY, keep, &g),
			 -1);
	assert_int_equal(smtp_replies_scan("250 ok\r\n150 wait\r\n", 18, SMTP_STAGE_BODY, keep, &g),
			 -1);
	assert_int_equal(g.n, 1); /* the 250 before it was a reply */
	/* The lines of one reply share its code. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("250-2.0.0 one\r\n550 5.0.0 two\r\n", 30, SMTP_STAGE_BODY,
					   keep, &g), -1);
	assert_int_equal(smtp_replies_scan("550-5.1.1 one\r\n551 5.1.1 two\r\n", 30, SMTP_STAGE_RCPT,
					   keep, &g), -1);
	assert_int_equal(g.n, 0);
	assert_int_equal(smtp_replies_scan("550-5.1.1 one\r\n550 5.1.1 two\r\n", 30, SMTP_STAGE_RCPT,
					   keep, &g), 1);
	assert_string_equal(g.r[0].text, "550 5.1.1 one 5.1.1 two");
	/* 354 answers DATA and nothing else; DATA takes no 2xx. */
	g.n = 0;
	assert_int_equal(smtp_replies_scan("354 go ahead\r\n", 14, SMTP_STAGE_RCPT, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("354 go ahead\r\n", 14, SMTP_STAGE_BODY, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("334 VXNlcg==\r\n", 14, SMTP_STAGE_MAIL, keep, &g), -1);
	assert_int_equal(smtp_replies_scan("250 ok\r\n", 8, SMTP_STAGE_DATA, keep, &g), -1);
	assert_int_equal(g.n, 0);
	assert_int_equal(smtp_replies_scan("354 go ahead\r\n", 14, SMTP_STAGE_DATA, keep, &g), 1);
	assert_int_equal(smtp_replies_scan("554 5.5.1 no valid recipients\r\n", 31, SMTP_STAGE_DATA,
					   keep, &g), 1);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.r[1].code, 554);
	/* Codes past 5xx are no reply either. */
	assert_int_equal(smtp_replies_scan("650 x\r\n", 7, SMTP_STAGE_RCPT, keep, &g), -1);
}

static void test_sender_side(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof replies / sizeof *replies; i++) {
		const struct reply *r = &replies[i];
		char hint[256] = "";
		int got = smtp_sender_side(r->code, r->status, r->text, hint, sizeof hint);
		if (got != r->sender)
			fail_msg("\"%s\": sender side %d, want %d", r->text, got, r->sender);
		if (got)
			assert_true(hint[0] != '\0');
		if (r->hint && !strcasestr(hint, r->hint))
			fail_msg("\"%s\": hint \"%s\" does not say \"%s\"", r->text, hint, r->hint);
	}
}

static void test_ip_loopback(void **state)
{
	(void)state;
	assert_int_equal(addr_ip_is_loopback("127.0.0.1"), 1);
	assert_int_equal(addr_ip_is_loopback("127.45.6.7"), 1);
	assert_int_equal(addr_ip_is_loopback("::1"), 1);
	assert_int_equal(addr_ip_is_loopback("::ffff:127.0.0.1"), 1);
	assert_int_equal(addr_ip_is_loopback("128.0.0.1"), 0);
	assert_int_equal(addr_ip_is_loopback("10.0.0.1"), 0);
	assert_int_equal(addr_ip_is_loopback("::ffff:192.0.2.1"), 0);
	assert_int_equal(addr_ip_is_loopback("2001:db8::1"), 0);
	assert_int_equal(addr_ip_is_loopback("127.mail.example.com"), 0);
	assert_int_equal(addr_ip_is_loopback(""), 0);
}

static void test_host_loopback(void **state)
{
	(void)state;
	char pin[256], err[256];
	assert_int_equal(addr_host_is_loopback("127.0.0.1", 25, pin, sizeof pin, err, sizeof err), 1);
	assert_string_equal(pin, "");   /* numeric: nothing to pin */
	assert_int_equal(addr_host_is_loopback("[::1]", 25, pin, sizeof pin, err, sizeof err), 1);
	assert_int_equal(addr_host_is_loopback("192.0.2.7", 25, pin, sizeof pin, err, sizeof err), 0);
	/* localhost resolves (from /etc/hosts) to loopback only, and is pinned
	 * to what it resolved to */
	assert_int_equal(addr_host_is_loopback("localhost", 2525, pin, sizeof pin, err, sizeof err), 1);
	assert_true(!strncmp(pin, "localhost:2525:", 15));
	/* a name that merely starts like a loopback address */
	assert_int_equal(addr_host_is_loopback("127.mail.example.invalid", 25, pin, sizeof pin, err,
					       sizeof err), -1);
	assert_non_null(strstr(err, "127.mail.example.invalid"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replies),
		cmocka_unit_test(test_reply_syntax),
		cmocka_unit_test(test_sender_side),
		cmocka_unit_test(test_ip_loopback),
		cmocka_unit_test(test_host_loopback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
