/* Unit tests for ratelimit.c: spec parsing (every error message compared
 * whole) and the limiter driven by an injected clock: `now` is a plain
 * double, so nothing sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "input/config.h"
#include "deliver/ratelimit.h"

/* Every test gets a zeroed limiter, freed even when an assertion fails. */
static int setup(void **state)
{
	struct ratelimit *rl = calloc(1, sizeof *rl);

	if (!rl)
		return -1;
	*state = rl;
	return 0;
}

static int teardown(void **state)
{
	struct ratelimit *rl = *state;

	rl_free(rl);
	free(rl);
	return 0;
}

#define EPS 1e-9

/* ---- rl_parse ------------------------------------------------------------ */

static void parse_ok(const char *spec, struct rate_conf *c)
{
	char err[256] = "";

	if (rl_parse(spec, c, err, sizeof err) != 0)
		fail_msg("rl_parse(\"%s\"): %s", spec, err);
	assert_string_equal(err, "");
}

static void parse_bad(const char *spec, const char *want)
{
	struct rate_conf c = { 7, 8, 9, 10, 11 };
	char err[256] = "";

	assert_int_equal(rl_parse(spec, &c, err, sizeof err), -1);
	assert_string_equal(err, want);
}

static void test_parse_each_unit(void **state)
{
	(void)state;
	struct rate_conf c = { 0 };

	parse_ok("10/s", &c);
	assert_true(c.per_second == 10);
	assert_int_equal(c.per_minute, 0);
	assert_int_equal(c.per_hour, 0);
	assert_int_equal(c.per_day, 0);
	assert_int_equal(c.burst, 0);

	memset(&c, 0, sizeof c);
	parse_ok("300/min,2000/h", &c);
	assert_true(c.per_second == 0);
	assert_int_equal(c.per_minute, 300);
	assert_int_equal(c.per_hour, 2000);
	assert_int_equal(c.per_day, 0);

	memset(&c, 0, sizeof c);
	parse_ok("10000/day", &c);
	assert_int_equal(c.per_day, 10000);
	assert_int_equal(c.per_minute, 0);

	memset(&c, 0, sizeof c);
	parse_ok("burst=5", &c);
	assert_int_equal(c.burst, 5);
	assert_true(c.per_second == 0);

	memset(&c, 0, sizeof c);
	parse_ok("1.5/s", &c);
	assert_true(c.per_second == 1.5);

	/* Long unit names, any case, blanks after commas. */
	memset(&c, 0, sizeof c);
	parse_ok("2/second, 3/MINUTE, 4/hour, 5/d, burst=2", &c);
	assert_true(c.per_second == 2);
	assert_int_equal(c.per_minute, 3);
	assert_int_equal(c.per_hour, 4);
	assert_int_equal(c.per_day, 5);
	assert_int_equal(c.burst, 2);
}

/* Fields the spec does not name keep their value. */
static void test_parse_keeps_others(void **state)
{
	(void)state;
	struct rate_conf c = { 3, 100, 1000, 5000, 4 };

	parse_ok("20/min", &c);
	assert_true(c.per_second == 3);
	assert_int_equal(c.per_minute, 20);
	assert_int_equal(c.per_hour, 1000);
	assert_int_equal(c.per_day, 5000);
	assert_int_equal(c.burst, 4);
}

static void test_parse_errors(void **state)
{
	(void)state;
	parse_bad("10/fortnight",
		  "--rate: \"10/fortnight\": unknown unit (use s, min, h or "
		  "day)");
	parse_bad("abc",
		  "--rate: \"abc\": expected N/s, N/min, N/h, N/day or burst=N");
	parse_bad("0/s",
		  "--rate: \"0/s\": expected N/s, N/min, N/h, N/day or burst=N");
	parse_bad("-5/s",
		  "--rate: \"-5/s\": expected N/s, N/min, N/h, N/day or "
		  "burst=N");
	parse_bad("10",
		  "--rate: \"10\": expected N/s, N/min, N/h, N/day or burst=N");
	parse_bad("10/",
		  "--rate: \"10/\": unknown unit (use s, min, h or day)");
	parse_bad("1.5/min",
		  "--rate: \"1.5/min\": per-minute, per-hour and per-day "
		  "limits take whole numbers");
	parse_bad("burst=0",
		  "--rate: \"burst=0\": burst must be a whole number from 1 to "
		  "100000");
	parse_bad("burst=x",
		  "--rate: \"burst=x\": burst must be a whole number from 1 to "
		  "100000");
	parse_bad("burst=2.5",
		  "--rate: \"burst=2.5\": burst must be a whole number from 1 "
		  "to 100000");
	/* The first bad item is reported, after good ones. */
	parse_bad("10/s,5/fortnight,abc",
		  "--rate: \"5/fortnight\": unknown unit (use s, min, h or "
		  "day)");
}

/* ---- the limiter --------------------------------------------------------- */

static void init(struct ratelimit *rl, const struct rate_conf *c, double now)
{
	assert_int_equal(rl_init(rl, c, now), 0);
}

static void test_no_limits(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { 0 };
	const char *which = "unset";

	init(rl, &c, 0);
	for (int i = 0; i < 1000; i++)
		rl_take(rl, 0);
	assert_true(rl_delay(rl, 0, &which) == 0);
	assert_null(which);
}

static void test_bucket_10_per_s(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 10, .burst = 1 };
	const char *which = "unset";

	init(rl, &c, 0);
	/* The first message goes at once. */
	assert_true(rl_delay(rl, 0, &which) == 0);
	assert_null(which);
	rl_take(rl, 0);
	/* The next one needs 0.1 s. */
	assert_true(fabs(rl_delay(rl, 0, &which) - 0.1) < EPS);
	assert_string_equal(which, "per_second");
	assert_true(fabs(rl_delay(rl, 0.04, NULL) - 0.06) < EPS);
	assert_true(rl_delay(rl, 0.1, &which) < EPS);
	rl_take(rl, 0.1);
	assert_true(fabs(rl_delay(rl, 0.1, NULL) - 0.1) < EPS);
	/* A long pause does not save up more than the burst. */
	assert_true(rl_delay(rl, 60, NULL) == 0);
	rl_take(rl, 60);
	assert_true(fabs(rl_delay(rl, 60, NULL) - 0.1) < EPS);
}

static void test_bucket_burst(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 2, .burst = 5 };

	init(rl, &c, 100);
	/* Five go at once... */
	for (int i = 0; i < 5; i++) {
		assert_true(rl_delay(rl, 100, NULL) == 0);
		rl_take(rl, 100);
	}
	/* ...then they are paced at 2/s. */
	assert_true(fabs(rl_delay(rl, 100, NULL) - 0.5) < EPS);
	rl_take(rl, 100.5);
	assert_true(fabs(rl_delay(rl, 100.5, NULL) - 0.5) < EPS);
	/* After 2.5 s idle, five tokens again, not more. */
	rl_take(rl, 101);
	double t = 103.5;

	for (int i = 0; i < 5; i++) {
		assert_true(rl_delay(rl, t, NULL) < EPS);
		rl_take(rl, t);
	}
	assert_true(fabs(rl_delay(rl, t, NULL) - 0.5) < EPS);
}

static void test_window_3_per_min(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_minute = 3 };
	const char *which = NULL;

	init(rl, &c, 0);
	for (int i = 0; i < 3; i++) {
		assert_true(rl_delay(rl, i, &which) == 0);
		assert_null(which);
		rl_take(rl, i);
	}
	/* The oldest (t=0) leaves the window at t=60. */
	assert_true(fabs(rl_delay(rl, 2, &which) - 58) < EPS);
	assert_string_equal(which, "per_minute");
	assert_true(fabs(rl_delay(rl, 30, NULL) - 30) < EPS);
	assert_true(rl_delay(rl, 60, NULL) == 0);
	rl_take(rl, 60);
	/* Now t=1 is the oldest of the last three. */
	assert_true(fabs(rl_delay(rl, 60, &which) - 1) < EPS);
	assert_string_equal(which, "per_minute");
	rl_take(rl, 61);
	rl_take(rl, 62);
	assert_true(fabs(rl_delay(rl, 62, NULL) - 58) < EPS);
}

/* Sliding, not fixed, windows: at most N in any 60 s span. */
static void test_window_is_sliding(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_minute = 2 };

	init(rl, &c, 0);
	rl_take(rl, 59);
	rl_take(rl, 59.5);
	/* A fixed window would reset at t=60; t=59 leaves at t=119. */
	assert_true(fabs(rl_delay(rl, 60, NULL) - 59) < EPS);
	assert_true(fabs(rl_delay(rl, 119, NULL) - 0) < EPS);
	rl_take(rl, 119);
	assert_true(fabs(rl_delay(rl, 119, NULL) - 0.5) < EPS);
}

static void test_combined_longest_wait(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 1, .per_minute = 2,
			       .per_hour = 3, .burst = 1 };
	const char *which = NULL;

	init(rl, &c, 0);
	rl_take(rl, 0);
	/* Only the bucket holds it back: 1 s. */
	assert_true(fabs(rl_delay(rl, 0, &which) - 1) < EPS);
	assert_string_equal(which, "per_second");
	rl_take(rl, 1);
	/* The minute window (full at 2) needs 59 s; the bucket 1 s. */
	assert_true(fabs(rl_delay(rl, 1, &which) - 59) < EPS);
	assert_string_equal(which, "per_minute");
	rl_take(rl, 60);
	/* The hour window (full at 3) needs 3600 s from t=0. */
	assert_true(fabs(rl_delay(rl, 60, &which) - 3540) < EPS);
	assert_string_equal(which, "per_hour");
	assert_true(rl_delay(rl, 3600, &which) == 0);
	assert_null(which);
}

static void test_day_window(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_day = 2 };
	const char *which = NULL;

	init(rl, &c, 0);
	rl_take(rl, 10);
	rl_take(rl, 20);
	assert_true(fabs(rl_delay(rl, 20, &which) - 86390) < EPS);
	assert_string_equal(which, "per_day");
}

/* Drives the limiter as the sender does: wait, send, repeat. */
static void test_steady_rate_50(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 50, .burst = 1 };
	double now = 0, first = -1, last = 0;

	init(rl, &c, 0);
	for (int i = 0; i < 1000; i++) {
		double d = rl_delay(rl, now, NULL);

		assert_true(d >= 0);
		now += d;
		assert_true(rl_delay(rl, now, NULL) < 1e-6);
		rl_take(rl, now);
		if (first < 0)
			first = now;
		last = now;
	}
	/* 999 intervals between the first and the last send. */
	double rate = 999 / (last - first);

	if (fabs(rate - 50) > 0.5)
		fail_msg("rate %.4f/s, not 50/s", rate);
	/* Evenly paced: 20 ms apart, never closer. */
	assert_true(fabs(last - first - 19.98) < 1e-6);
}

/* The sender wakes late: every message goes 0 to 1.6 ms after it was
 * allowed (timer slack, building the message). The long-run rate stays
 * within 0.5 % of 50/s (clipping the bucket gave 48.9/s on a real send),
 * no two messages go at one instant, and no one-second window holds more
 * than rate + burst. */
static void test_late_wakeups_keep_rate(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 50, .burst = 1 };
	enum { N = 5000 };
	static double sent[N];
	double now = 0;
	unsigned seed = 12345;

	init(rl, &c, 0);
	for (int i = 0; i < N; i++) {
		now += rl_delay(rl, now, NULL);
		seed = seed * 1103515245u + 12345u;
		now += (seed >> 16) % 1600 / 1e6;
		rl_take(rl, now);
		sent[i] = now;
	}
	double rate = (N - 1) / (sent[N - 1] - sent[0]);

	if (fabs(rate - 50) / 50 > 0.005)
		fail_msg("rate %.3f/s, not within 0.5 %% of 50/s", rate);
	long most = 0;

	for (int i = 0, j = 0; i < N; i++) {
		if (i > 0 && sent[i] - sent[i - 1] < 1e-9)
			fail_msg("messages %d and %d went at one instant", i - 1, i);
		while (sent[i] - sent[j] >= 1)
			j++;
		if (i - j + 1 > most)
			most = i - j + 1;
	}
	if (most > 51)
		fail_msg("%ld messages in one second", most);
}

/* After an idle spell, credit for lateness is not saved up: one message
 * goes at once, the next an interval later. */
static void test_late_credit_is_not_idle_credit(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 10, .burst = 1 };

	init(rl, &c, 0);
	rl_take(rl, 0);
	/* Due at 0.1, went at 0.15: the next is due at 0.2, not 0.25. */
	rl_take(rl, 0.15);
	assert_true(fabs(rl_delay(rl, 0.15, NULL) - 0.05) < EPS);
	/* Went at 5: idle, not late. The next waits a whole interval. */
	rl_take(rl, 5);
	assert_true(fabs(rl_delay(rl, 5, NULL) - 0.1) < EPS);
}

/* The same, with a minute window tighter than the per-second rate: the
 * window decides, and no 60 s span ever holds more than its limit. */
static void test_steady_rate_window(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 50, .per_minute = 100, .burst = 10 };
	static double sent[1000];
	double now = 0;

	init(rl, &c, 0);
	for (int i = 0; i < 1000; i++) {
		now += rl_delay(rl, now, NULL);
		rl_take(rl, now);
		sent[i] = now;
	}
	for (int i = 100; i < 1000; i++)
		if (sent[i] - sent[i - 100] < 60 - 1e-9)
			fail_msg("101 sends within %.3f s", sent[i] - sent[i - 100]);
	/* The first 100: a burst of 10, then 50/s, so the 100th at 1.8 s;
	 * each later hundred repeats that a minute on. */
	assert_true(fabs(sent[9] - 0) < EPS);
	assert_true(fabs(sent[99] - 1.8) < 1e-6);
	assert_true(fabs(sent[100] - 60) < 1e-6);
	assert_true(fabs(sent[999] - 541.8) < 1e-6);
}

/* Sends of earlier runs count against the windows, not the bucket. */
static void test_seed(void **state)
{
	struct ratelimit *rl = *state;
	struct rate_conf c = { .per_second = 1, .per_minute = 3,
			       .per_hour = 5, .burst = 1 };
	const double earlier[] = { -3000, -2000, -50, -40, -30 };
	const char *which = NULL;

	init(rl, &c, 0);
	rl_seed(rl, earlier, 5);
	/* The minute window holds -50, -40, -30: -50 leaves at t=10; the
	 * hour window holds all five: -3000 leaves at t=600. */
	assert_true(fabs(rl_delay(rl, 0, &which) - 600) < EPS);
	assert_string_equal(which, "per_hour");
	assert_true(rl_is_quota(which));
	rl_free(rl);

	/* Without the hour limit the minute one decides; the bucket is
	 * full, so it never does. */
	c.per_hour = 0;
	init(rl, &c, 0);
	rl_seed(rl, earlier, 5);
	assert_true(fabs(rl_delay(rl, 0, &which) - 10) < EPS);
	assert_string_equal(which, "per_minute");
	assert_true(rl_delay(rl, 10, &which) == 0);
	assert_null(which);
	rl_take(rl, 10);
	/* Now -40, -30 and 10 are in the window: -40 leaves at t=20. */
	assert_true(fabs(rl_delay(rl, 10, &which) - 10) < EPS);
	assert_string_equal(which, "per_minute");
	rl_free(rl);

	/* The bucket alone: seeding does not drain it. */
	c.per_minute = 0;
	init(rl, &c, 0);
	rl_seed(rl, earlier + 2, 3);
	assert_true(rl_delay(rl, 0, &which) == 0);
	rl_take(rl, 0);
	assert_true(fabs(rl_delay(rl, 0, &which) - 1) < EPS);
	assert_string_equal(which, "per_second");
	assert_false(rl_is_quota(which));
	rl_free(rl);
	c.per_minute = 3;

	/* Old sends are no obstacle. */
	const double old[] = { -7200, -7100, -7000 };

	init(rl, &c, 0);
	rl_seed(rl, old, 3);
	assert_true(rl_delay(rl, 0, NULL) == 0);
	rl_seed(rl, NULL, 0);
	assert_true(rl_delay(rl, 0, NULL) == 0);
}

static void test_is_quota(void **state)
{
	(void)state;
	assert_false(rl_is_quota(NULL));
	assert_false(rl_is_quota("per_second"));
	assert_true(rl_is_quota("per_minute"));
	assert_true(rl_is_quota("per_hour"));
	assert_true(rl_is_quota("per_day"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_each_unit),
		cmocka_unit_test(test_parse_keeps_others),
		cmocka_unit_test(test_parse_errors),
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_no_limits),
		T(test_bucket_10_per_s),
		T(test_bucket_burst),
		T(test_window_3_per_min),
		T(test_window_is_sliding),
		T(test_combined_longest_wait),
		T(test_day_window),
		T(test_steady_rate_50),
		T(test_late_wakeups_keep_rate),
		T(test_late_credit_is_not_idle_credit),
		T(test_steady_rate_window),
		T(test_seed),
#undef T
		cmocka_unit_test(test_is_quota),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
