/* Unit tests for relays.c: the choice of relay, over dry-run transports
 * (always a connection free), with an injected clock for the windows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deliver/relays.h"

struct fx {
	struct relays rs;
	struct smtp_conf conf[3];
	char dir[64];
};

static int setup(void **state)
{
	struct fx *fx = calloc(1, sizeof *fx);
	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof fx->dir, "/tmp/herald-relays-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fx *fx = *state;
	relays_close(&fx->rs);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* Relay i named "r<i>" with weight w and windows rate (NULL: none). */
static void add(struct fx *fx, int i, int w, const struct rate_conf *rate)
{
	static char names[3][4] = {"r0", "r1", "r2"};
	struct transport *tx;
	char err[256];
	fx->conf[i].name = names[i];
	fx->conf[i].url = "smtp://127.0.0.1:25";
	fx->conf[i].weight = w;
	assert_int_equal(transport_dir(&tx, fx->dir, err, sizeof err), 0);
	assert_int_equal(relays_add(&fx->rs, &fx->conf[i], NULL, rate, tx, 0, err, sizeof err), 0);
}

static void picks(struct fx *fx, int n, double now, int avoid, const char *want)
{
	char got[64] = "";
	double wait;
	const char *which;
	for (int k = 0; k < n; k++) {
		int i = relays_pick(&fx->rs, now, avoid, &wait, &which);
		got[k] = i < 0 ? '-' : (char)('A' + i);
	}
	assert_string_equal(got, want);
}

static void test_weights(void **state)
{
	struct fx *fx = *state;
	add(fx, 0, 3, NULL);
	add(fx, 1, 1, NULL);
	/* Smooth: the weight-1 relay is not left to the end of each round. */
	picks(fx, 12, 0, -1, "AABAAABAAABA");
}

static void test_out_and_trouble(void **state)
{
	struct fx *fx = *state;
	add(fx, 0, 1, NULL);
	add(fx, 1, 1, NULL);
	add(fx, 2, 2, NULL);
	fx->rs.r[2].out = 1;
	picks(fx, 4, 0, -1, "ABAB");
	fx->rs.r[1].trouble = 1;
	picks(fx, 3, 0, -1, "AAA");
	assert_int_equal(relays_in(&fx->rs), 2);
	fx->rs.r[0].out = 1;
	picks(fx, 1, 0, -1, "-");
}

static void test_avoid(void **state)
{
	struct fx *fx = *state;
	add(fx, 0, 5, NULL);
	add(fx, 1, 1, NULL);
	/* A message a relay's connection failed goes elsewhere while it can. */
	picks(fx, 3, 0, 0, "BBB");
	fx->rs.r[1].out = 1;
	picks(fx, 2, 0, 0, "AA");
}

static void test_window_full(void **state)
{
	struct fx *fx = *state;
	struct rate_conf two = {.per_minute = 2, .burst = 1};
	add(fx, 0, 3, &two);
	add(fx, 1, 1, &two);
	/* Each takes two in its minute, then nobody can: wait for the
	 * first window to let one go, named. */
	picks(fx, 5, 0, -1, "AABB-");
	double wait;
	const char *which;
	assert_int_equal(relays_pick(&fx->rs, 10, -1, &wait, &which), -1);
	assert_true(wait > 49.9 && wait < 50.1);
	assert_string_equal(which, "per_minute");
	/* A minute on, both windows are open again; the credits go on. */
	picks(fx, 3, 60, -1, "BAA");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_weights),
		T(test_out_and_trouble),
		T(test_avoid),
		T(test_window_full),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
