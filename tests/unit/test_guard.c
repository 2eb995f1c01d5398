/* Unit tests for web/guard.c: which client a peer counts as (an IPv6
 * /64: loopback has one address, so the integration tests cannot show
 * it), the per-client cap and the limit, trusted peers, the once a
 * minute lines, and the deadlines (on a socketpair). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "web/guard.h"

static char said[8][480];
static int nsaid;

static void warn(void *arg, const char *msg)
{
	if (nsaid < 8)
		snprintf(said[nsaid], sizeof said[nsaid], "%s", msg);
	nsaid++;
}

static struct sockaddr_storage ip(const char *txt)
{
	struct sockaddr_storage ss = {0};
	if (strchr(txt, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, txt, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, txt, &a->sin_addr), 1);
	}
	return ss;
}

static const char *key(const char *txt)
{
	static char out[GUARD_KEY_MAX];
	struct sockaddr_storage ss = ip(txt);
	assert_int_equal(guard_client_key((struct sockaddr *)&ss, out, sizeof out), 0);
	return out;
}

static void test_keys(void **state)
{
	assert_string_equal(key("192.0.2.7"), "192.0.2.7");
	assert_string_equal(key("::ffff:192.0.2.7"), "192.0.2.7");
	assert_string_equal(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
	assert_string_equal(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
	assert_string_equal(key("2001:db8:1:3::1"), "2001:db8:1:3::/64");
	assert_string_equal(key("::1"), "::/64");
	assert_string_equal(key("fe80::1:2:3:4"), "fe80::/64");
	struct sockaddr sa = {.sa_family = AF_UNIX};
	char out[GUARD_KEY_MAX];
	assert_int_equal(guard_client_key(&sa, out, sizeof out), -1);
	assert_int_equal(guard_client_key(NULL, out, sizeof out), -1);
}

/* Opens a connection from txt when admitted: 1, else 0. */
static int take(struct guard *g, const char *txt, int exempt, long long now, struct guard_conn **out)
{
	struct sockaddr_storage ss = ip(txt);
	if (!guard_admit(g, (struct sockaddr *)&ss, exempt, now))
		return 0;
	struct guard_conn *c = guard_open(g, (struct sockaddr *)&ss, -1, exempt, now);
	assert_non_null(c);
	if (out)
		*out = c;
	return 1;
}

static void test_per_64(void **state)
{
	struct guard g;
	nsaid = 0;
	assert_int_equal(guard_init(&g, 6, 2, 10, warn, NULL), 0);
	struct guard_conn *first = NULL;
	assert_int_equal(take(&g, "2001:db8:1:2::a", 0, 1000, &first), 1);
	assert_int_equal(take(&g, "2001:db8:1:2:ffff::b", 0, 1000, NULL), 1);
	/* a third address of the same /64 is the same client */
	assert_int_equal(take(&g, "2001:db8:1:2::c", 0, 1001, NULL), 0);
	assert_int_equal(nsaid, 1);
	assert_non_null(strstr(said[0], "serve: 2001:db8:1:2::/64 has 2 connections open"));
	/* again within the minute: counted, not said */
	assert_int_equal(take(&g, "2001:db8:1:2::d", 0, 30000, NULL), 0);
	assert_int_equal(nsaid, 1);
	/* the next /64 is another client */
	assert_int_equal(take(&g, "2001:db8:1:3::1", 0, 1002, NULL), 1);
	struct sockaddr_storage ss = ip("2001:db8:1:2::99");
	assert_int_equal(guard_open_of(&g, (struct sockaddr *)&ss), 2);
	/* one closed: room again */
	guard_close(&g, first);
	assert_int_equal(guard_open_of(&g, (struct sockaddr *)&ss), 1);
	assert_int_equal(take(&g, "2001:db8:1:2::e", 0, 40000, NULL), 1);
	assert_int_equal(take(&g, "2001:db8:1:2::f", 0, 61001, NULL), 0);
	assert_int_equal(nsaid, 2);
	assert_non_null(strstr(said[1], "(and 1 more since the last line)"));
	/* a trusted proxy: past the cap, up to the limit (6) */
	assert_int_equal(take(&g, "192.0.2.1", 1, 62000, NULL), 1);
	assert_int_equal(take(&g, "192.0.2.1", 1, 62000, NULL), 1);
	assert_int_equal(take(&g, "192.0.2.1", 1, 62000, NULL), 1);
	assert_int_equal(take(&g, "192.0.2.1", 1, 62000, NULL), 0);
	assert_int_equal(take(&g, "198.51.100.1", 0, 62000, NULL), 0);
	assert_int_equal(nsaid, 3);
	assert_non_null(strstr(said[2], "all 6 connections (web.connections) are in use"));
	while (g.head)
		guard_close(&g, g.head);
	assert_int_equal(g.open, 0);
	guard_free(&g);
}

static void test_deadlines(void **state)
{
	struct guard g;
	nsaid = 0;
	assert_int_equal(guard_init(&g, 10, 10, 10, warn, NULL), 0);
	int slow[2], busy[2], kept[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, slow), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, busy), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, kept), 0);
	struct sockaddr_storage ss = ip("192.0.2.9");
	struct guard_conn *a = guard_open(&g, (struct sockaddr *)&ss, slow[0], 0, 0);
	struct guard_conn *b = guard_open(&g, (struct sockaddr *)&ss, busy[0], 0, 0);
	struct guard_conn *c = guard_open(&g, (struct sockaddr *)&ss, kept[0], 0, 0);
	guard_phase(&g, a, GUARD_READING, 9000); /* its request line: no more time */
	guard_phase(&g, b, GUARD_WORKING, 5000);
	guard_phase(&g, c, GUARD_IDLE, 5000);
	guard_phase(&g, c, GUARD_READING, 9000); /* the next request: same deadline */
	assert_int_equal(guard_reap(&g, 9999), 0);
	assert_int_equal(guard_reap(&g, 10000), 1);
	assert_int_equal(guard_was_reaped(&g, a), 1);
	assert_int_equal(guard_was_reaped(&g, b), 0);
	char ch;
	assert_int_equal(read(slow[1], &ch, 1), 0); /* shut down: EOF */
	assert_int_equal(nsaid, 1);
	assert_non_null(strstr(said[0], "192.0.2.9 sent no whole request within 10 s"));
	/* c: its deadline is 15000 (from IDLE at 5000); counted, not said, within the minute */
	assert_int_equal(guard_reap(&g, 15000), 1);
	assert_int_equal(nsaid, 1);
	guard_phase(&g, b, GUARD_WRITING, 20000);
	assert_int_equal(guard_reap(&g, 29999), 0);
	assert_int_equal(guard_reap(&g, 30000), 1);
	assert_int_equal(nsaid, 1); /* within the minute of the first line */
	guard_close(&g, a);
	guard_close(&g, b);
	guard_close(&g, c);
	guard_free(&g);
	for (int i = 0; i < 2; i++) {
		close(slow[i]);
		close(busy[i]);
		close(kept[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_per_64),
		cmocka_unit_test(test_deadlines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
