/* delivery: the send loop. Streams the list, merges and builds each
 * message, paces it through the rate limiter, hands it to the transport
 * (SMTP, or a directory for --dry-run) and records the outcome: journal
 * for accepted, bounce log for refused, retry queue for deferred.
 *
 * Nothing is printed here: warnings (bad rows) and progress go to the
 * callbacks; the summary is returned in struct delivery_stats. The return
 * value is a sysexits.h code for main.c to exit with. */
#ifndef HERALD_DELIVERY_H
#define HERALD_DELIVERY_H
#include <stddef.h>
#include "input/config.h"
#include "compose/post.h"
#include "deliver/smtp.h"

struct transport;

struct delivery_opts {
	const char *subscribers;   /* list path (config's unless --subscribers) */
	const char *dry_run_dir;   /* non-NULL: write files, no network */
	const char *const *test_to;/* non-empty: --test mode */
	size_t n_test;
	struct rate_conf rate;
	long limit;                /* at most this many messages; 0 = all */
	int force;                 /* ignore the journal */
	int until_quota;           /* stop (75) instead of waiting for a quota */
	int retry_uncertain;       /* send again to readers whose message
				      may have arrived (journal "uncertain") */
	/* --where COL=VALUE...: only the rows every rule holds for (with
	 * the post's audience:, segment.h). A run with --where never marks
	 * the post fully sent: the rest of the list has not had it. */
	const char *const *where;
	size_t n_where;
	/* --shard I/N: only the rows whose address subs_shard() puts in
	 * shard I of N (1-based; nshards 0: the whole list). A sharded run
	 * marks its shard done (journal_shard_mark), never the post. */
	unsigned shard, nshards;
	/* -v: the SMTP transcript, credentials redacted (see smtp.h) */
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	/* Polled by the loop (main thread): non-zero once SIGTERM/SIGINT
	 * came. The run then takes no new reader, waits for the replies of
	 * messages in flight, records them and returns EX_TEMPFAIL. */
	int (*interrupted)(void *arg);
	void *interrupt_arg;
	/* Test seam: NULL in production (each relay gets an SMTP pool,
	 * transport_smtp). Otherwise called instead of transport_smtp, with
	 * the same arguments, for each relay in the config's order (a dry
	 * run does not ask): tests/unit/test_delivery.c hands the send loop
	 * a scripted transport (transport_new) this way. Returns 0, or -1
	 * with err. */
	int (*transport_make)(void *arg, struct transport **out, const struct smtp_opts *so,
			      int connections, int depth, char *err, size_t errlen);
	void *transport_arg;
};

/* What one relay did (smtp = ( ... ) gives several). */
struct delivery_relay {
	char name[72];
	long sent, bounced, deferred, uncertain;
	int out;           /* taken out of the run (or the last, ending it) */
	char why[400];     /* why, when out */
	char pipelining_off[200]; /* why it went one command at a time
				     (replies out of turn), or "" */
};

struct delivery_stats {
	long sent, bounced, deferred;
	long uncertain;    /* final dot sent, no reply: maybe delivered */
	long not_attempted;/* readers this run stopped before trying */
	long skipped;      /* bad rows */
	long inactive;     /* status not subscribed */
	long already;      /* in the journal from an earlier run */
	long suppressed;   /* bounced or complained before */
	long excluded;     /* subscribed, but not in the segment */
	long other_shards; /* rows (subscribed or not) of the other shards */
	long unsubscribed; /* subscribed in the list, unsubscribed in list.log
			      (herald serve): before or during this run */
	long attempted;    /* messages handed to the transport */
	long retried;      /* of which retries */
	long total;        /* subscribed readers in the list */
	long pending;      /* readers still to try this run (for an ETA) */
	int connections;
	double elapsed;    /* seconds */
	double waiting;    /* seconds spent waiting for the rate limit */
	const char *limit_window; /* the rate window holding us back now */
	int quota_stop;    /* --until-quota stopped the run */
	int interrupted;   /* a signal stopped the run */
	int reconnecting;  /* the server is unreachable; attempt n of m: */
	int attempt, attempts;
	int locked;        /* another herald holds state_dir's lock */
	int started;       /* set-up went through and sending began */
	int done;
	/* Per relay, in the config's order, at the end of the run. */
	struct delivery_relay relay[CONFIG_RELAYS_MAX];
	int nrelays;
};

struct delivery_cb {
	void (*warn)(void *arg, const char *msg);
	void (*progress)(void *arg, const struct delivery_stats *st);
	void *arg;
};

int delivery_run(const struct config *cfg, const struct post *post,
		 const struct delivery_opts *o, const struct delivery_cb *cb,
		 struct delivery_stats *st, char *err, size_t errlen);
#endif
