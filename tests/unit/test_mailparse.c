/* Unit tests for mailparse.c: the header and text readers that bounces
 * and unsubscribe requests share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "util/buf.h"
#include "mailbox/mailparse.h"

static void test_header_text(void **state)
{
	(void)state;
	const char *m = "Subject: =?UTF-8?Q?unsubscribe_caf=C3=A9?=\n  please\nFrom: a@b.example\n\nbody line\n";
	char out[100];
	mailparse_header(m, strlen(m), "subject", out, sizeof out);
	assert_string_equal(out, "unsubscribe caf\xc3\xa9 please");
	mailparse_header(m, strlen(m), "To", out, sizeof out);
	assert_string_equal(out, "");
	struct buf b = {0};
	assert_int_equal(mailparse_text(m, strlen(m), &b), 0);
	assert_string_equal(buf_cstr(&b), "body line\n");
	buf_free(&b);
}

/* DSN field lists: junk lines skipped, folding undone, the blank line
 * reported so a caller can split recipient blocks. */
static void test_fields(void **state)
{
	(void)state;
	const char *s = "Reporting-MTA: dns; mx.example\r\nnot a field\r\n\r\n"
			"Final-Recipient: rfc822;\r\n joy@example.net\r\n";
	const char *p = s, *end = s + strlen(s);
	char name[80];
	struct buf v = {0};
	int blank;
	assert_int_equal(mailparse_next_field(&p, end, name, sizeof name, &v, &blank), 1);
	assert_string_equal(name, "Reporting-MTA");
	assert_int_equal(mailparse_next_field(&p, end, name, sizeof name, &v, &blank), 0);
	assert_int_equal(blank, 1);
	assert_int_equal(mailparse_next_field(&p, end, name, sizeof name, &v, &blank), 1);
	assert_string_equal(name, "Final-Recipient");
	/* blanks are left for mailparse_one_line to collapse */
	assert_string_equal(buf_cstr(&v), " rfc822;  joy@example.net");
	assert_int_equal(mailparse_next_field(&p, end, name, sizeof name, &v, &blank), 0);
	assert_int_equal(blank, 0);
	buf_free(&v);
}

static void test_msgid_date(void **state)
{
	(void)state;
	char id[160] = "";
	mailparse_msgid("  <a.b@example.org> (comment)", id, sizeof id);
	assert_string_equal(id, "<a.b@example.org>");
	id[0] = '\0';
	mailparse_msgid("<no spaces@allowed>", id, sizeof id);
	assert_string_equal(id, "");
	assert_int_equal(mailparse_date("Thu, 01 Jan 1970 01:00:00 +0100"), 0);
	assert_int_equal(mailparse_date("Fri, 02 Jan 1970 00:00:00 -0000"), 86400);
	assert_int_equal(mailparse_date("not a date"), 0);
	assert_int_equal(mailparse_date(""), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_text),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_msgid_date),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
