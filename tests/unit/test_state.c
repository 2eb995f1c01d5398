/* Unit tests for the state directory and the formats in it: state.c
 * (time format, locks, the rate-window times), journal.c (its one line
 * reader against its writer, uncertain lines, torn tails), bounces.c
 * (suppression order: hard, forget, soft runs broken by a delivery),
 * addrset.c. Each test works in its
 * own temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/addrset.h"
#include "state/bounces.h"
#include "util/buf.h"
#include "state/journal.h"
#include "state/state.h"

#define T0 1796025600 /* 2026-11-30T08:00:00Z */

#include "tmpdir.h"

/* ---- state.c ------------------------------------------------------------- */

static void test_time_round_trip(void **state)
{
	(void)state;
	char s[32];
	state_time(T0, s);
	assert_string_equal(s, "2026-11-30T08:00:00Z");
	assert_int_equal(state_parse_time(s), T0);
	assert_int_equal(state_parse_time("2026-11-30T08:00:00Z\trest"), T0);
	assert_int_equal(state_parse_time("2026-11-30T08:00:00Zx"), -1);
	assert_int_equal(state_parse_time("2026-11-30 08:00:00"), -1);
	assert_int_equal(state_parse_time(""), -1);
	char c[8];
	state_clean(c, sizeof c, "a\tb\nc\x7f" "defgh");
	assert_string_equal(c, "a b c d");
}

static void test_locks(void **state)
{
	struct world *w = *state;
	char sub[128];
	snprintf(sub, sizeof sub, "%s/a/b", w->dir);
	int send = state_lock(sub, STATE_LOCK_SEND, w->err, sizeof w->err);
	assert_true(send >= 0); /* and made the directories */
	assert_int_equal(state_lock(sub, STATE_LOCK_SEND, w->err, sizeof w->err), -1);
	assert_non_null(strstr(w->err, "another herald is sending"));
	/* A scan may run beside a send, not beside another scan. */
	int scan = state_lock(sub, STATE_LOCK_SCAN, w->err, sizeof w->err);
	assert_true(scan >= 0);
	assert_int_equal(state_lock(sub, STATE_LOCK_SCAN, w->err, sizeof w->err), -1);
	assert_non_null(strstr(w->err, "another scan is running"));
	state_unlock(send);
	send = state_lock(sub, STATE_LOCK_SEND, w->err, sizeof w->err);
	assert_true(send >= 0);
	state_unlock(send);
	state_unlock(scan);
	put(w, "file", "x");
	snprintf(sub, sizeof sub, "%s/file/x", w->dir);
	assert_int_equal(state_lock(sub, STATE_LOCK_SEND, w->err, sizeof w->err), -2);
}

static void test_times(void **state)
{
	(void)state;
	struct state_times st = {.since = T0 - 3600, .now = T0};
	assert_int_equal(state_times_add(&st, T0 - 10), 0);
	assert_int_equal(state_times_add(&st, T0 - 7200), 0); /* too old */
	assert_int_equal(state_times_add(&st, -1), 0);        /* damaged */
	assert_int_equal(state_times_add(&st, T0 + 3600), 0); /* clock stepped back */
	assert_int_equal(state_times_add(&st, T0 - 3600), 0);
	state_times_sort(&st);
	assert_int_equal(st.n, 3);
	assert_true(st.v[0] == T0 - 3600 && st.v[1] == T0 - 10 && st.v[2] == T0);
	state_times_free(&st);
}

/* ---- journal.c ------------------------------------------------------------ */

static void test_journal_line(void **state)
{
	(void)state;
	struct journal_line l;
	char a[] = "2026-11-30T08:00:00Z\tann@example.net\t<1@x>\t250 ok";
	assert_int_equal(journal_parse_line(a, &l), 0);
	assert_int_equal(l.when, T0);
	assert_string_equal(l.addr, "ann@example.net");
	assert_string_equal(l.msgid, "<1@x>");
	assert_string_equal(l.reply, "250 ok");
	assert_false(l.uncertain);
	char b[] = "2026-11-30T08:00:00Z\tbob@example.net\t<2@x>\t-\tuncertain";
	assert_int_equal(journal_parse_line(b, &l), 0);
	assert_true(l.uncertain);
	char c[] = "garbage\tcat@example.net\t<3@x>";
	assert_int_equal(journal_parse_line(c, &l), 0);
	assert_int_equal(l.when, -1); /* still a reader who was sent to */
	char d[] = "2026-11-30T08:00:00Z\tdan@exa"; /* cut inside the address */
	assert_int_equal(journal_parse_line(d, &l), 1);
	char e[] = "2026-11-30T08:00:00Z\t\t<5@x>";
	assert_int_equal(journal_parse_line(e, &l), 1);
}

static int count_line(void *arg, const char *slug, const struct journal_line *l)
{
	int *n = arg;
	assert_string_equal(slug, "issue-1");
	(*n)++;
	return 0;
}

static void test_journal_write_read(void **state)
{
	struct world *w = *state;
	struct journal j;
	assert_int_equal(journal_open(&j, w->dir, "issue-1", NULL, w->err, sizeof w->err), 0);
	assert_int_equal(journal_write(&j, T0, "ann@example.net", "<1@x>", "250 2.0.0 ok\tqueued", JOURNAL_SENT), 0);
	assert_int_equal(journal_write(&j, T0, "bob@example.net", "<2@x>", "-", JOURNAL_UNCERTAIN), 0);
	assert_int_equal(journal_sync(&j, w->err, sizeof w->err), 0);
	journal_close(&j);
	/* The writer cleaned the tab out of the reply: one line each. */
	assert_string_equal(get(w, "issue-1.journal"),
			    "2026-11-30T08:00:00Z\tann@example.net\t<1@x>\t250 2.0.0 ok queued\n"
			    "2026-11-30T08:00:00Z\tbob@example.net\t<2@x>\t-\tuncertain\n");
	assert_int_equal(journal_open(&j, w->dir, "issue-1", NULL, w->err, sizeof w->err), 0);
	assert_true(journal_has(&j, "ANN@example.net"));
	assert_false(journal_is_uncertain(&j, "ann@example.net"));
	assert_true(journal_has(&j, "bob@example.net"));
	assert_true(journal_is_uncertain(&j, "bob@example.net"));
	assert_false(journal_has(&j, "cat@example.net"));
	journal_close(&j);
	int n = 0;
	assert_int_equal(journal_each_delivery(w->dir, count_line, &n, w->err, sizeof w->err), 0);
	assert_int_equal(n, 2);
	struct state_times st = {.since = T0 - 60, .now = T0 + 60};
	assert_int_equal(journal_recent_times(w->dir, &st, w->err, sizeof w->err), 0);
	assert_int_equal(st.n, 2);
	state_times_free(&st);
}

static void test_journal_torn_tail(void **state)
{
	struct world *w = *state;
	/* A full line, then one torn after its address's tab: kept, ended. */
	put(w, "p.journal", "2026-11-30T08:00:00Z\tann@example.net\t<1@x>\t250\n"
			     "2026-11-30T08:00:01Z\tbob@example.net\t<2");
	struct journal j;
	assert_int_equal(journal_open(&j, w->dir, "p", NULL, w->err, sizeof w->err), 0);
	assert_true(journal_has(&j, "bob@example.net"));
	assert_int_equal(journal_write(&j, T0, "cat@example.net", "<3@x>", "250", JOURNAL_SENT), 0);
	journal_close(&j);
	assert_int_equal(journal_open(&j, w->dir, "p", NULL, w->err, sizeof w->err), 0);
	assert_true(journal_has(&j, "ann@example.net"));
	assert_true(journal_has(&j, "bob@example.net"));
	assert_true(journal_has(&j, "cat@example.net")); /* not glued onto bob's */
	journal_close(&j);
}

/* ---- bounces.c ------------------------------------------------------------ */

static int add(struct world *w, struct bounces *b, time_t t, const char *addr,
	       enum bounce_kind k)
{
	return bounces_add(b, t, addr, k, k == BOUNCE_HARD ? "5.1.1" : "4.2.2",
			   k == BOUNCE_HARD ? 550 : 452, "dsn", "issue-1", "text", w->err,
			   sizeof w->err);
}

static void test_suppression_order(void **state)
{
	struct world *w = *state;
	struct bounces b;
	assert_int_equal(bounces_open(&b, w->dir, 2, NULL, w->err, sizeof w->err), 0);
	assert_int_equal(add(w, &b, T0, "hard@example.net", BOUNCE_HARD), 0);
	assert_int_equal(add(w, &b, T0, "soft@example.net", BOUNCE_SOFT), 0);
	assert_true(bounces_suppressed(&b, "HARD@example.net"));
	assert_false(bounces_suppressed(&b, "soft@example.net")); /* one of two */
	int was = 0;
	assert_int_equal(bounces_forget(&b, "hard@example.net", &was, w->err, sizeof w->err), 0);
	assert_true(was);
	assert_false(bounces_suppressed(&b, "hard@example.net"));
	bounces_close(&b);

	/* Reopened: the order of the lines decides, not their kinds. A
	 * second soft bounce makes two in a row; a later delivery in a
	 * journal breaks the run. */
	put(w, "bounces.log", "");
	assert_int_equal(bounces_open(&b, w->dir, 2, NULL, w->err, sizeof w->err), 0);
	assert_int_equal(add(w, &b, T0 - 100, "soft@example.net", BOUNCE_SOFT), 0);
	assert_int_equal(add(w, &b, T0 - 50, "soft@example.net", BOUNCE_SOFT), 0);
	assert_int_equal(add(w, &b, T0 - 100, "run@example.net", BOUNCE_SOFT), 0);
	assert_int_equal(add(w, &b, T0 - 50, "run@example.net", BOUNCE_SOFT), 0);
	assert_int_equal(add(w, &b, T0 - 10, "late@example.net", BOUNCE_HARD), 0);
	bounces_close(&b);
	put(w, "issue-1.journal", "2026-11-30T07:59:30Z\trun@example.net\t<1@x>\t250\n"
				   "2026-11-30T07:59:00Z\tlate@example.net\t<2@x>\t250\n");
	assert_int_equal(bounces_open(&b, w->dir, 2, NULL, w->err, sizeof w->err), 0);
	assert_true(bounces_suppressed(&b, "soft@example.net"));
	assert_false(bounces_suppressed(&b, "run@example.net"));
	assert_true(bounces_suppressed(&b, "late@example.net")); /* hard after the delivery */
	bounces_close(&b);
}

/* ---- addrset.c ------------------------------------------------------------ */

static void test_addrset(void **state)
{
	(void)state;
	struct addrset s = {0};
	char a[40];
	for (int i = 0; i < 5000; i++) {
		snprintf(a, sizeof a, "Reader%d@Example.net", i);
		assert_int_equal(addrset_add(&s, a), 1);
	}
	assert_int_equal(addrset_add(&s, "reader17@example.NET"), 0);
	for (int i = 0; i < 5000; i++) {
		snprintf(a, sizeof a, "reader%d@example.net", i);
		assert_true(addrset_has(&s, a));
	}
	assert_false(addrset_has(&s, "reader5000@example.net"));
	assert_false(addrset_has(&s, ""));
	assert_int_equal(addrset_put(&s, "v@example.net", 42), 1);
	assert_int_equal(addrset_get(&s, "V@example.net"), 42);
	assert_int_equal(addrset_get(&s, "w@example.net"), 0);
	addrset_free(&s);
	assert_false(addrset_has(&s, "reader1@example.net"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_round_trip),
		cmocka_unit_test_setup_teardown(test_locks, setup, teardown),
		cmocka_unit_test(test_times),
		cmocka_unit_test(test_journal_line),
		cmocka_unit_test_setup_teardown(test_journal_write_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_journal_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_suppression_order, setup, teardown),
		cmocka_unit_test(test_addrset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
