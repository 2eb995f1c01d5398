/* Unit tests for util/recent.c: the bounded table that forgets its oldest
 * first. What the signup limits rely on: a flood of new keys never
 * forgets a live key of a table without evict_live, and evicts the oldest
 * of one with it; entries age out after ttl; a key set again keeps one
 * live entry. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "util/recent.h"

static void test_ages_out(void **state)
{
	(void)state;
	struct recent r;
	time_t when;
	long count;
	recent_init(&r, 10, 3600, 0);
	assert_int_equal(recent_set(&r, "a@example.net", 1000, 1000, 1), 0);
	assert_int_equal(recent_get(&r, "A@example.net", 4599, &when, &count), 1);
	assert_int_equal(when, 1000);
	assert_int_equal(recent_get(&r, "a@example.net", 4600, &when, &count), 0);
	assert_int_equal(recent_set(&r, "a@example.net", 1000, 1000, 2), 0);
	assert_int_equal(recent_set(&r, "a@example.net", 1000, 1000, 3), 0);
	assert_int_equal(recent_live(&r, 1000), 1);
	assert_int_equal(recent_get(&r, "a@example.net", 1000, &when, &count), 1);
	assert_int_equal(count, 3);
	recent_free(&r);
}

/* The per-address table: full of live keys, it takes no new one, keeps
 * the victim, and takes new ones again once the oldest aged out. */
static void test_never_flushed(void **state)
{
	(void)state;
	struct recent r;
	char key[64];
	time_t when;
	long count;
	recent_init(&r, 1000, 3600, 0);
	assert_int_equal(recent_set(&r, "victim@example.net", 0, 0, 1), 0);
	int refused = 0;
	for (int i = 0; i < 100000; i++) {
		snprintf(key, sizeof key, "n%d@example.net", i);
		int k = recent_set(&r, key, 10 + i / 100, 10 + i / 100, 1);
		assert_true(k == 0 || k == 1);
		refused += k;
	}
	assert_int_equal(refused, 100000 - 999);
	assert_int_equal(recent_get(&r, "victim@example.net", 1000, &when, &count), 1);
	/* The victim's hour is over: its place goes to a new key. */
	assert_int_equal(recent_set(&r, "late@example.net", 3600, 3600, 1), 0);
	assert_int_equal(recent_get(&r, "victim@example.net", 3600, &when, &count), 0);
	recent_free(&r);
}

/* The per-client table: a flood evicts the oldest first, the newest stay. */
static void test_evicts_oldest(void **state)
{
	(void)state;
	struct recent r;
	char key[64];
	time_t when;
	long count;
	recent_init(&r, 1000, 3600, 1);
	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof key, "10.0.%d.%d", i / 256, i % 256);
		assert_int_equal(recent_set(&r, key, 100, 100, 1), 0);
	}
	assert_true(recent_live(&r, 100) <= 1000);
	assert_int_equal(recent_get(&r, "10.0.0.0", 100, &when, &count), 0);
	snprintf(key, sizeof key, "10.0.%d.%d", 4999 / 256, 4999 % 256);
	assert_int_equal(recent_get(&r, key, 100, &when, &count), 1);
	recent_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ages_out),
		cmocka_unit_test(test_never_flushed),
		cmocka_unit_test(test_evicts_oldest),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
