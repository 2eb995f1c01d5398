/* Unit tests for state/relaylog.c (relays.log): lines written and read
 * back per relay, the horizon, a bad line reported as FILE:LINE, and the
 * compaction that drops day-old lines once they are most of the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state/relaylog.h"

static void on_warn(void *arg, const char *msg)
{
	snprintf(arg, 512, "%s", msg);
}

static long lines_of(const char *path)
{
	FILE *f = fopen(path, "r");
	long n = 0;
	int c;
	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static void test_add_and_read(void **state)
{
	(void)state;
	char dir[] = "/tmp/herald-relaylog-XXXXXX", err[256], warning[512] = "", path[128];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/relays.log", dir);
	struct statefile_warn w = {on_warn, warning};
	struct relaylog l;
	time_t now = time(NULL);
	assert_int_equal(relaylog_open(&l, dir, &w, err, sizeof err), 0);
	assert_int_equal(relaylog_add(&l, now - 7200, "esp", err, sizeof err), 0);
	assert_int_equal(relaylog_add(&l, now - 30, "esp", err, sizeof err), 0);
	assert_int_equal(relaylog_add(&l, now - 20, "own:25", err, sizeof err), 0);
	relaylog_close(&l);
	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs("not a line\n", f);
	fclose(f);
	struct state_times st = {.since = now - 3600, .now = now};
	assert_int_equal(relaylog_recent_times("/nonexistent", "esp", &st, &w, err, sizeof err), 0);
	assert_int_equal(st.n, 0);
	assert_int_equal(relaylog_recent_times(dir, "esp", &st, &w, err, sizeof err), 0);
	assert_int_equal(st.n, 1);   /* the one two hours ago is past the hour */
	assert_true(st.v[0] == (double)(now - 30));
	char want[256];
	snprintf(want, sizeof want, "%s:4: not a relays.log line (TIME TAB RELAY); skipped", path);
	assert_string_equal(warning, want);
	state_times_free(&st);
	unlink(path);
	rmdir(dir);
}

static void test_compaction(void **state)
{
	(void)state;
	char dir[] = "/tmp/herald-relaylog-XXXXXX", err[256], warning[512] = "", path[128];
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/relays.log", dir);
	struct statefile_warn w = {on_warn, warning};
	struct relaylog l;
	time_t now = time(NULL);
	assert_int_equal(relaylog_open(&l, dir, &w, err, sizeof err), 0);
	for (int i = 0; i < 1200; i++)
		assert_int_equal(relaylog_add(&l, now - 90000 - i, "esp", err, sizeof err), 0);
	for (int i = 0; i < 10; i++)
		assert_int_equal(relaylog_add(&l, now - i, "esp", err, sizeof err), 0);
	relaylog_close(&l);
	assert_int_equal(lines_of(path), 1210);
	/* Reopened: the day-old lines are most of it, so they go. */
	assert_int_equal(relaylog_open(&l, dir, &w, err, sizeof err), 0);
	assert_int_equal(lines_of(path), 10);
	assert_int_equal(relaylog_add(&l, now, "esp", err, sizeof err), 0);
	relaylog_close(&l);
	struct state_times st = {.since = now - 86400, .now = now};
	assert_int_equal(relaylog_recent_times(dir, "esp", &st, &w, err, sizeof err), 0);
	assert_int_equal(st.n, 11);
	state_times_free(&st);
	assert_string_equal(warning, "");
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_and_read),
		cmocka_unit_test(test_compaction),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
