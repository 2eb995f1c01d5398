/* Connection admission and request deadlines for herald serve (guard.h). */
#include "web/guard.h"
#include <arpa/inet.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* One client: its open connections, and when its last line about a
 * dropped connection went (ms + 1, 0: never) with the drops since. An
 * entry with nothing open is kept until its line is a minute old, so a
 * client that keeps reconnecting still gets one line a minute. */
struct guard_client {
	unsigned open;
	long long logged;
	unsigned long dropped;
};

long long guard_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int guard_client_key(const struct sockaddr *sa, char *out, size_t len)
{
	if (!sa || len < GUARD_KEY_MAX)
		return -1;
	if (sa->sa_family == AF_INET)
		return inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out,
				 (socklen_t)len) ? 0 : -1;
	if (sa->sa_family != AF_INET6)
		return -1;
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
	if (IN6_IS_ADDR_V4MAPPED(a6))
		return inet_ntop(AF_INET, a6->s6_addr + 12, out, (socklen_t)len) ? 0 : -1;
	struct in6_addr net = {0};
	memcpy(net.s6_addr, a6->s6_addr, 8);
	char txt[INET6_ADDRSTRLEN];
	if (!inet_ntop(AF_INET6, &net, txt, sizeof txt))
		return -1;
	snprintf(out, len, "%s/64", txt);
	return 0;
}

int guard_init(struct guard *g, unsigned limit, unsigned per_client, unsigned seconds,
	       void (*warn)(void *arg, const char *msg), void *arg)
{
	memset(g, 0, sizeof *g);
	g->limit = limit ? limit : 1;
	g->per_client = per_client ? per_client : 1;
	g->seconds = seconds;
	g->warn = warn;
	g->arg = arg;
	g->clients = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
	if (!g->clients)
		return -1;
	pthread_mutex_init(&g->mu, NULL);
	return 0;
}

void guard_free(struct guard *g)
{
	if (!g->clients)
		return;
	g_hash_table_destroy(g->clients);
	g->clients = NULL;
	pthread_mutex_destroy(&g->mu);
}

/* The client's entry, made when absent (g_new0 aborts rather than fail:
 * glib's way; the table is bounded by the connections of a minute). */
static struct guard_client *client(struct guard *g, const char *key, int make)
{
	struct guard_client *c = g_hash_table_lookup(g->clients, key);
	if (!c && make) {
		c = g_new0(struct guard_client, 1);
		g_hash_table_insert(g->clients, g_strdup(key), c);
	}
	return c;
}

/* Why a connection was dropped: the start of its line. */
enum why { FULL, CAPPED, SLOW_REQUEST, SLOW_ANSWER };

static void say(struct guard *g, enum why why, const char *key, unsigned long more)
{
	if (!g->warn)
		return;
	char head[300], tail[120] = "", msg[480];
	if (why == FULL)
		snprintf(head, sizeof head, "%s: connection refused: all %u connections "
			 "(web.connections) are in use", key, g->limit);
	else if (why == CAPPED)
		snprintf(head, sizeof head, "%s has %u connections open "
			 "(web.connections_per_client): a further one is refused", key, g->per_client);
	else
		snprintf(head, sizeof head, "%s %s within %u s: connection closed", key,
			 why == SLOW_REQUEST ? "sent no whole request" : "did not take its answer",
			 g->seconds);
	if (more)
		snprintf(tail, sizeof tail, " (and %lu more since the last line)", more);
	snprintf(msg, sizeof msg, "serve: %s%s; said at most once a minute %s", head, tail,
		 why == FULL ? "in all" : "per client");
	g->warn(g->arg, msg);
}

/* A dropped connection: its line, if the last one for the same client
 * (*logged, ms + 1) is a minute old; otherwise counted in *count. */
static void dropped(struct guard *g, long long *logged, unsigned long *count, enum why why,
		    const char *key, long long now)
{
	if (*logged && now - (*logged - 1) < GUARD_LOG_EVERY_MS) {
		(*count)++;
		return;
	}
	unsigned long more = *count;
	*logged = now + 1;
	*count = 0;
	say(g, why, key, more);
}

int guard_admit(struct guard *g, const struct sockaddr *sa, int exempt, long long now)
{
	char key[GUARD_KEY_MAX];
	if (guard_client_key(sa, key, sizeof key) < 0)
		return 1; /* not IP (libmicrohttpd listens on IP only) */
	int ok = 1;
	pthread_mutex_lock(&g->mu);
	struct guard_client *c = client(g, key, 0);
	if (g->open >= g->limit) {
		ok = 0;
		dropped(g, &g->full_logged, &g->full_dropped, FULL, key, now);
	} else if (!exempt && c && c->open >= g->per_client) {
		ok = 0;
		dropped(g, &c->logged, &c->dropped, CAPPED, key, now);
	}
	pthread_mutex_unlock(&g->mu);
	return ok;
}

struct guard_conn *guard_open(struct guard *g, const struct sockaddr *sa, int fd, int exempt,
			      long long now)
{
	struct guard_conn *k = calloc(1, sizeof *k);
	if (!k)
		return NULL;
	k->fd = fd;
	k->exempt = exempt;
	k->phase = GUARD_READING;
	k->deadline = now + (long long)g->seconds * 1000;
	if (guard_client_key(sa, k->key, sizeof k->key) < 0)
		snprintf(k->key, sizeof k->key, "-");
	pthread_mutex_lock(&g->mu);
	client(g, k->key, 1)->open++;
	g->open++;
	k->next = g->head;
	if (g->head)
		g->head->prev = k;
	g->head = k;
	pthread_mutex_unlock(&g->mu);
	return k;
}

void guard_close(struct guard *g, struct guard_conn *k)
{
	if (!k)
		return;
	pthread_mutex_lock(&g->mu);
	struct guard_client *c = client(g, k->key, 0);
	if (c && c->open)
		c->open--;
	if (c && !c->open && !c->logged)
		g_hash_table_remove(g->clients, k->key);
	g->open--;
	if (k->prev)
		k->prev->next = k->next;
	else
		g->head = k->next;
	if (k->next)
		k->next->prev = k->prev;
	pthread_mutex_unlock(&g->mu);
	free(k);
}

void guard_phase(struct guard *g, struct guard_conn *k, enum guard_phase ph, long long now)
{
	if (!k)
		return;
	pthread_mutex_lock(&g->mu);
	/* The request line came (uri_cb): still the deadline the connection
	 * or its last answer started, or a trickling client would get 10 s
	 * for its request line and 10 more for its headers. */
	if (!(ph == GUARD_READING && (k->phase == GUARD_IDLE || k->phase == GUARD_READING)))
		k->deadline = now + (long long)g->seconds * 1000;
	k->phase = ph;
	pthread_mutex_unlock(&g->mu);
}

int guard_was_reaped(struct guard *g, const struct guard_conn *k)
{
	if (!k)
		return 0;
	pthread_mutex_lock(&g->mu);
	int r = k->reaped;
	pthread_mutex_unlock(&g->mu);
	return r;
}

static gboolean idle_client(gpointer key, gpointer value, gpointer now)
{
	const struct guard_client *c = value;
	return !c->open && (!c->logged || *(long long *)now - (c->logged - 1) >= GUARD_LOG_EVERY_MS);
}

unsigned guard_reap(struct guard *g, long long now)
{
	unsigned n = 0;
	pthread_mutex_lock(&g->mu);
	for (struct guard_conn *k = g->head; k; k = k->next) {
		if (k->reaped || k->phase == GUARD_WORKING || now < k->deadline)
			continue;
		/* The fd is open: guard_close has not run for it (guard.h). */
		shutdown(k->fd, SHUT_RDWR);
		k->reaped = 1;
		n++;
		if (k->phase == GUARD_IDLE)
			continue;
		struct guard_client *c = client(g, k->key, 1);
		dropped(g, &c->logged, &c->dropped, k->phase == GUARD_READING ? SLOW_REQUEST : SLOW_ANSWER,
			k->key, now);
	}
	if (now - g->pruned >= GUARD_LOG_EVERY_MS) {
		g->pruned = now;
		g_hash_table_foreach_remove(g->clients, idle_client, &now);
	}
	pthread_mutex_unlock(&g->mu);
	return n;
}

unsigned guard_open_of(struct guard *g, const struct sockaddr *sa)
{
	char key[GUARD_KEY_MAX];
	if (guard_client_key(sa, key, sizeof key) < 0)
		return 0;
	pthread_mutex_lock(&g->mu);
	struct guard_client *c = client(g, key, 0);
	unsigned n = c ? c->open : 0;
	pthread_mutex_unlock(&g->mu);
	return n;
}
