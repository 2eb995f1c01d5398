/* guard: which connections herald serve takes, and how long each may
 * take over its request (serve.c wires it into libmicrohttpd: the accept
 * policy callback, the connection notifications, the main thread's poll).
 *
 * A client is an IPv4 address, or an IPv6 /64 (guard_client_key): one
 * home line or one host gets a /64 and picks addresses in it at will. A
 * client may hold at most per_client connections at once, everyone
 * together at most limit; a peer the caller calls exempt (a trusted
 * proxy: every reader comes through it) is held to the limit only.
 *
 * A connection has `seconds` to send a whole request (headers and body)
 * from when it was opened or its previous answer went, and as long again
 * to take its answer; while herald works on the request (fdatasync, the
 * list rewrite, a confirmation mail) there is no deadline. libmicrohttpd's
 * own timeout is an idle one, which a client sending one byte every few
 * seconds never reaches: hence this, by hand. guard_reap shuts down the
 * socket of a connection past its deadline, and libmicrohttpd's thread
 * for it then sees the connection end and closes it.
 *
 * Dropped connections (refused, or closed at their deadline) are told
 * to warn() at most once a minute per client, with the number dropped
 * since its last line; refusals at the limit once a minute in all.
 *
 * Threads: every function takes g->mu. guard_admit and guard_open run in
 * libmicrohttpd's listening thread, guard_phase in a connection's thread,
 * guard_close in the listening thread (or the one stopping the daemon),
 * guard_reap in serve's main thread. A connection's fd stays open until
 * guard_close has returned (libmicrohttpd closes it after the CLOSED
 * notification), so guard_reap never shuts down a reused descriptor. */
#ifndef HERALD_GUARD_H
#define HERALD_GUARD_H
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/socket.h>

/* "ffff:ffff:ffff:ffff::/64" and its NUL fit. */
#define GUARD_KEY_MAX 48
/* Lines about one client's dropped connections: one per this many ms. */
#define GUARD_LOG_EVERY_MS 60000

/* The client a peer counts as: "192.0.2.7" (an IPv4-mapped IPv6 peer
 * too), "2001:db8:1:2::/64". 0, or -1 for a peer that is not IP. */
int guard_client_key(const struct sockaddr *sa, char *out, size_t len);

/* READING: a request is owed (a new connection); WORKING: herald has
 * it; WRITING: its answer is going out; IDLE: kept alive after an
 * answer, closed at the deadline like READING but without a line (a
 * browser keeping its connection is no abuse). */
enum guard_phase { GUARD_READING, GUARD_WORKING, GUARD_WRITING, GUARD_IDLE };

struct guard_conn {
	struct guard_conn *prev, *next;
	int fd;
	int exempt;
	int reaped;                 /* its deadline passed: guard_reap shut it down */
	enum guard_phase phase;
	long long deadline;         /* ms, when phase is not GUARD_WORKING */
	char key[GUARD_KEY_MAX];
};

struct guard {
	pthread_mutex_t mu;
	void *clients;              /* GHashTable: key -> struct guard_client */
	struct guard_conn *head;    /* the open connections */
	unsigned open, limit, per_client, seconds;
	long long full_logged;      /* last line about the limit, ms + 1 */
	unsigned long full_dropped; /* refused at the limit since then */
	long long pruned;           /* last pass over the idle clients, ms */
	void (*warn)(void *arg, const char *msg);
	void *arg;
};

/* 0, or -1 out of memory. limit and per_client are at least 1. */
int guard_init(struct guard *g, unsigned limit, unsigned per_client, unsigned seconds,
	       void (*warn)(void *arg, const char *msg), void *arg);
void guard_free(struct guard *g);

/* Before a connection is taken: 1 take it, 0 refuse it (told, maybe). */
int guard_admit(struct guard *g, const struct sockaddr *sa, int exempt, long long now);
/* A connection taken (counted until guard_close); NULL out of memory
 * (the caller closes it). Its phase is GUARD_READING. */
struct guard_conn *guard_open(struct guard *g, const struct sockaddr *sa, int fd, int exempt,
			      long long now);
void guard_close(struct guard *g, struct guard_conn *c);
/* Every phase but GUARD_WORKING starts the `seconds` from now; READING
 * after IDLE or READING (a request line came) keeps the deadline. */
void guard_phase(struct guard *g, struct guard_conn *c, enum guard_phase ph, long long now);
int guard_was_reaped(struct guard *g, const struct guard_conn *c);
/* Shuts down the connections past their deadline; how many. */
unsigned guard_reap(struct guard *g, long long now);
/* Open connections of the client sa counts as (for tests). */
unsigned guard_open_of(struct guard *g, const struct sockaddr *sa);
/* CLOCK_MONOTONIC in ms. */
long long guard_now(void);
#endif
