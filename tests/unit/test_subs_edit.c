/* Unit tests for input/subs_edit.c, the one writer of the subscriber
 * list: unsubscribe, subscribe and remove, each an atomic rewrite that
 * keeps every other byte. Each test works in its own temporary
 * directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "input/subs_edit.h"
#include "util/buf.h"

#include "tmpdir.h"

static void test_unsubscribe(void **state)
{
	struct world *w = *state;
	put(w, "l.csv", "\xef\xbb\xbf" "email,name,status\r\nann@example.net,\"Ann, A\",\r\n"
			"BOB@example.net,Bob,unsubscribed\r\ncat@example.net,Cat,subscribed");
	char path[256];
	snprintf(path, sizeof path, "%s/l.csv", w->dir);
	const char *addrs[] = {"Ann@Example.net", "bob@example.net", "zed@example.net",
			       "cat@example.net"};
	enum subs_edit_result res[4];
	assert_int_equal(subs_edit_unsubscribe(path, 0, addrs, 4, res, w->err, sizeof w->err), SUBS_EDIT_OK);
	assert_int_equal(res[0], SUBS_EDIT_CHANGED);
	assert_int_equal(res[1], SUBS_EDIT_ALREADY);
	assert_int_equal(res[2], SUBS_EDIT_NOT_LISTED);
	assert_int_equal(res[3], SUBS_EDIT_CHANGED);
	/* Every other byte kept: BOM, quoting, CRLF, no final newline. */
	assert_string_equal(get(w, "l.csv"),
			    "\xef\xbb\xbf" "email,name,status\r\nann@example.net,\"Ann, A\",unsubscribed\r\n"
			    "BOB@example.net,Bob,unsubscribed\r\ncat@example.net,Cat,unsubscribed");
	put(w, "n.csv", "name\nAnn\n");
	snprintf(path, sizeof path, "%s/n.csv", w->dir);
	assert_int_equal(subs_edit_unsubscribe(path, 0, addrs, 1, res, w->err, sizeof w->err), SUBS_EDIT_ERR_LIST);
	snprintf(path, sizeof path, "%s/missing.csv", w->dir);
	assert_int_equal(subs_edit_unsubscribe(path, 0, addrs, 1, res, w->err, sizeof w->err), SUBS_EDIT_ERR_NOFILE);
}

/* A ';' list (subscribers_delimiter) keeps its delimiter: the status
 * column added and the values in it are separated by ';', and a ','
 * inside a field is not a separator. */
static void test_unsubscribe_semicolon(void **state)
{
	struct world *w = *state;
	put(w, "s.csv", "email;name\r\nann@example.net;Ann, A\r\nbob@example.net;\"Bob; B\"\r\n");
	char path[256];
	snprintf(path, sizeof path, "%s/s.csv", w->dir);
	const char *addrs[] = {"bob@example.net"};
	enum subs_edit_result res[1];
	assert_int_equal(subs_edit_unsubscribe(path, ';', addrs, 1, res, w->err, sizeof w->err), SUBS_EDIT_OK);
	assert_int_equal(res[0], SUBS_EDIT_CHANGED);
	assert_string_equal(get(w, "s.csv"), "email;name;status\r\nann@example.net;Ann, A;\r\n"
			    "bob@example.net;\"Bob; B\";unsubscribed\r\n");
	/* The same list read as ',': no email column, nothing changed. */
	assert_int_equal(subs_edit_unsubscribe(path, ',', addrs, 1, res, w->err, sizeof w->err), SUBS_EDIT_ERR_LIST);
}

/* subscribe: a row not subscribed gets "subscribed", a subscribed one
 * stays, a new address is appended with its name (a formula-like name
 * behind a quote); remove: every row of the address goes with its line
 * break, the rest byte for byte. */
static void test_subscribe_and_remove(void **state)
{
	struct world *w = *state;
	put(w, "l.csv", "email,name,status\r\nann@example.net,Ann,unsubscribed\r\n"
			"bob@example.net,Bob,\r\ncat@example.net,Cat,subscribed\r\n");
	char path[256];
	snprintf(path, sizeof path, "%s/l.csv", w->dir);
	const char *addrs[] = {"ANN@example.net", "bob@example.net", "dee@example.net"};
	const char *names[] = {"Ann", "Bob", "=SUM(A1)"};
	enum subs_edit_result res[3];
	assert_int_equal(subs_edit_subscribe(path, 0, addrs, names, 3, res, w->err, sizeof w->err), SUBS_EDIT_OK);
	assert_int_equal(res[0], SUBS_EDIT_CHANGED);
	assert_int_equal(res[1], SUBS_EDIT_ALREADY);
	assert_int_equal(res[2], SUBS_EDIT_CHANGED);
	assert_string_equal(get(w, "l.csv"), "email,name,status\r\nann@example.net,Ann,subscribed\r\n"
			    "bob@example.net,Bob,\r\ncat@example.net,Cat,subscribed\r\n"
			    "dee@example.net,'=SUM(A1),subscribed\r\n");
	const char *gone[] = {"bob@example.net", "Dee@Example.net", "zed@example.net"};
	assert_int_equal(subs_edit_remove(path, 0, gone, 3, res, w->err, sizeof w->err), SUBS_EDIT_OK);
	assert_int_equal(res[0], SUBS_EDIT_CHANGED);
	assert_int_equal(res[1], SUBS_EDIT_CHANGED);
	assert_int_equal(res[2], SUBS_EDIT_NOT_LISTED);
	assert_string_equal(get(w, "l.csv"), "email,name,status\r\nann@example.net,Ann,subscribed\r\n"
			    "cat@example.net,Cat,subscribed\r\n");
	/* The last row without a line break, and a row twice: both go. */
	put(w, "m.csv", "email\nann@example.net\nbob@example.net\nann@example.net");
	snprintf(path, sizeof path, "%s/m.csv", w->dir);
	assert_int_equal(subs_edit_remove(path, 0, addrs, 1, res, w->err, sizeof w->err), SUBS_EDIT_OK);
	assert_int_equal(res[0], SUBS_EDIT_CHANGED);
	assert_string_equal(get(w, "m.csv"), "email\nbob@example.net\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unsubscribe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsubscribe_semicolon, setup, teardown),
		cmocka_unit_test_setup_teardown(test_subscribe_and_remove, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
