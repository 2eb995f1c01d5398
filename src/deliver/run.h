/* run: private to deliver/ (delivery.c, setup.c, outcome.c). One send
 * run's state and the helpers the three files share:
 *   delivery.c  the loop (fill, collect, record) and delivery_run;
 *   setup.c     setting the run up (lock, journal, bounces, list.log, the
 *               list, the message context, rate limits, relays) and
 *               tearing it down;
 *   outcome.c   the policy: what each smtp_result means for the reader,
 *               the relay and the run (bounce, retry, defer, uncertain,
 *               held refusals, the sender-side judgement, relay down,
 *               reconnect).
 * Everything here runs on the main thread unless a field says otherwise
 * (the connections' threads reach the run only through on_accept and
 * on_admit, setup.c). */
#ifndef HERALD_DELIVER_RUN_H
#define HERALD_DELIVER_RUN_H
#include "deliver/delivery.h"
#include "deliver/ratelimit.h"
#include "deliver/relays.h"
#include "deliver/smtp.h"
#include "compose/message.h"
#include "input/segment.h"
#include "input/subscribers.h"
#include "state/bounces.h"
#include "state/journal.h"
#include "state/listlog.h"
#include "state/relaylog.h"
#include "state/statefile.h"
#include "util/addrset.h"
#include <pthread.h>
#include <stddef.h>

/* One reader's message: copied out of the stream so it can wait in the
 * retry queue or sit on a connection while the stream moves on. */
struct job {
	char **fields;
	size_t n;
	char *email, *name;
	long line;
	int attempts;
	double ready;          /* monotonic time it may be tried again */
	int relay;             /* the relay it went to last (relays.r[]) */
	int avoid;             /* a relay whose connection failed it, or -1 */
	int moves;             /* times it went back for another relay */
	struct buf wire;       /* the message while it is on a connection */
	struct msg_out info;
};

enum stop { GO, STOP_QUOTA, STOP_FATAL, STOP_UNREACHABLE, STOP_STATE, STOP_SIGNAL };

/* Refusals held before a relay's first acceptance: this many in a row
 * are the relay's (outcome.c, the sender-side judgement). */
#define SENDER_STREAK 5

struct held {
	struct job *job;
	struct smtp_result res;
};

struct run {
	const struct config *cfg;
	const struct post *post;
	const struct delivery_opts *o;
	const struct delivery_cb *cb;
	struct delivery_stats *st;
	struct subs_reader *sr;
	struct msg_ctx *msg;
	struct segment seg;    /* --where and the post's audience */
	struct ratelimit rl;
	/* The connections' threads write their acceptances (on_accept);
	 * the journal locks itself (journal.h: journal->mu). */
	struct journal journal;
	struct bounces bounces;
	/* damage in the state files; has_left() warns through it from the
	 * connections' threads too, under left_mu */
	struct statefile_warn state_warn;
	int have_journal, have_bounces, lock; /* set before any connection
						 thread starts, then read only */
	/* The relays (one SMTP transport each, or the dry-run directory),
	 * with what each has done and whether it is still in the run. */
	struct relays rs;
	struct relaylog rlog;  /* relays.log, for relays with own windows */
	int have_rlog;
	char *password;
	struct job **queue;    /* deferred, retried when ready */
	size_t nqueue, capqueue;
	int eof;
	long taken;            /* rows taken from the stream */
	/* Refusals from a relay before its first acceptance
	 * (SENDER_STREAK), per relay. */
	struct held held[CONFIG_RELAYS_MAX][SENDER_STREAK];
	int nheld[CONFIG_RELAYS_MAX];
	long build_skipped;    /* bad rows found while building */
	struct job *built;     /* the next message, built while the
				  connections are busy */
	int waited;            /* the last rate check made us wait */
	/* Readers who unsubscribed on the web (list.log, herald serve): read
	 * when the run starts, then followed, so nobody is mailed after
	 * their POST was answered. The connections' threads ask too (admit),
	 * so the follower and the set are under left_mu. */
	pthread_mutex_t left_mu;
	struct listlog_follow left;
	struct listlog_fold gone;  /* the last line per address */
	int have_left, left_oom;
	enum stop stop;
	int rc;                /* first error that ends the run */
	double start;
	char *err;
	size_t errlen;
};

/* ---- delivery.c ---------------------------------------------------------- */

double run_now(void);          /* monotonic seconds */
__attribute__((format(printf, 2, 3)))
void run_warn(struct run *r, const char *fmt, ...);
void run_progress(struct run *r);
/* Ends the run with an exit code; the first reason wins. */
void run_fail(struct run *r, enum stop why, int rc);
struct job *run_job_new(const char *const *fields, size_t n, const char *email,
			const char *name, long line);
void run_job_free(struct job *j);
double run_backoff(const struct config *c, int attempts);
/* j into the retry queue; -1 out of memory (j is still the caller's). */
int run_enqueue(struct run *r, struct job *j);
size_t run_soonest(const struct run *r);
void run_sync_journal(struct run *r);
/* Sleeps s seconds unless a signal comes first (then returns -1). */
int run_nap(struct run *r, double s);

/* ---- setup.c ------------------------------------------------------------- */

/* 0, or the sysexits code of what could not be set up (err filled). */
int run_setup(struct run *r);
/* Frees what run_setup and the loop left; r->st's relay rows filled. */
void run_teardown(struct run *r);
/* Has email unsubscribed on the web since the run began? Any thread. */
int run_has_left(struct run *r, const char *email);

/* ---- outcome.c ----------------------------------------------------------- */

/* The outcome of one transaction (transport_done_fn, arg the run, tag
 * the job): takes ownership of the job. */
void outcome_done(void *arg, void *tag, const struct smtp_result *res);
/* Before the first reader: is each relay there and will it take us? 0 go. */
int outcome_first_contact(struct run *r);
/* Relays whose connections failed before MAIL, probed once idle; 1 while
 * one is still busy. */
int outcome_check_troubled(struct run *r);
/* End of the run: refusals still held back for a first acceptance. */
void outcome_settle(struct run *r);
#endif
