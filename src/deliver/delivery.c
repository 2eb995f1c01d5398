#include "deliver/delivery.h"
#include "state/bounces.h"
#include "util/buf.h"
#include "state/journal.h"
#include "state/listlog.h"
#include "state/relaylog.h"
#include "util/addrset.h"
#include "compose/message.h"
#include "deliver/ratelimit.h"
#include "deliver/relays.h"
#include "deliver/smtp.h"
#include "deliver/transport.h"
#include "input/subscribers.h"
#include "input/segment.h"
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

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

/* A refusal the rules in smtp.c do not see as the sender's may still be:
 * a relay whose wording no one foresaw. So the permanent refusals of a
 * run are held back until its first acceptance; this many in a row with
 * the same code and status, and nothing accepted, stop the run as the
 * relay's problem, and none of them is logged as a bounce. A list whose
 * first five readers are all truly gone (the same 5.1.1 five times) is
 * stopped too: the message names them, so the author can check. */
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
	struct journal journal;
	struct bounces bounces;
	struct statefile_warn state_warn; /* damage in the state files */
	int have_journal, have_bounces, lock;
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
	struct addrset gone;
	int have_left, left_oom;
	enum stop stop;
	int rc;                /* first error that ends the run */
	double start;
	char *err;
	size_t errlen;
};

static double now_mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_for(double s)
{
	if (s <= 0)
		return;
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

__attribute__((format(printf, 2, 3)))
static void warn(struct run *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->cb && r->cb->warn)
		r->cb->warn(r->cb->arg, msg);
}

static void progress(struct run *r)
{
	struct delivery_stats *st = r->st;
	st->elapsed = now_mono() - r->start;
	long handled = st->sent + st->bounced + st->deferred + st->already +
		       st->suppressed + st->uncertain + st->unsubscribed;
	st->pending = st->total > handled ? st->total - handled : 0;
	if (r->cb && r->cb->progress)
		r->cb->progress(r->cb->arg, st);
}

/* Ends the run with an exit code; the first reason wins. */
static void fail(struct run *r, enum stop why, int rc)
{
	if (r->stop == GO || r->stop == STOP_QUOTA) {
		r->stop = why;
		r->rc = rc;
	}
	/* Messages already queued on a connection must not start either. */
	relays_halt(&r->rs);
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->n; i++)
		free(j->fields[i]);
	free(j->fields);
	free(j->email);
	free(j->name);
	buf_free(&j->wire);
	free(j);
}

static struct job *job_new(const char *const *fields, size_t n, const char *email,
			   const char *name, long line)
{
	struct job *j = calloc(1, sizeof *j);
	if (!j)
		return NULL;
	j->fields = calloc(n ? n : 1, sizeof *j->fields);
	j->n = n;
	j->email = strdup(email);
	j->name = strdup(name);
	j->line = line;
	j->avoid = -1;
	int ok = j->fields && j->email && j->name;
	for (size_t i = 0; ok && i < n; i++)
		ok = (j->fields[i] = strdup(fields[i])) != NULL;
	if (!ok) {
		job_free(j);
		return NULL;
	}
	return j;
}

/* Backoff doubles from initial_delay up to max_delay, with +-20% jitter so
 * a crowd of deferred messages does not come back in lockstep. */
static double backoff(const struct config *c, int attempts)
{
	double d = c->retry.initial_delay;
	for (int i = 1; i < attempts && d < c->retry.max_delay; i++)
		d *= 2;
	if (d > c->retry.max_delay)
		d = c->retry.max_delay;
	unsigned short j = 0;
	gnutls_rnd(GNUTLS_RND_NONCE, &j, sizeof j);
	return d * (0.8 + 0.4 * (j / 65535.0));
}

static int enqueue(struct run *r, struct job *j)
{
	if (r->nqueue == r->capqueue) {
		size_t nc = r->capqueue ? r->capqueue * 2 : 16;
		struct job **nq = realloc(r->queue, nc * sizeof *nq);
		if (!nq)
			return -1;
		r->queue = nq;
		r->capqueue = nc;
	}
	r->queue[r->nqueue++] = j;
	return 0;
}

/* Index of the queued job that is ready soonest; nqueue must be > 0. */
static size_t soonest(const struct run *r)
{
	size_t best = 0;
	for (size_t i = 1; i < r->nqueue; i++)
		if (r->queue[i]->ready < r->queue[best]->ready)
			best = i;
	return best;
}

/* Waits until every journal line written is on disk (end of the run). */
static void sync_journal(struct run *r)
{
	if (r->have_journal && journal_sync(&r->journal, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
}

static struct relay *relay_of(struct run *r, const struct job *j)
{
	return &r->rs.r[j->relay];
}

/* Connections of a relay: the streaks that take it out scale with them. */
static int relay_conns(const struct relay *rel)
{
	return rel->conf ? rel->conf->connections : 1;
}

static void bounce_hard(struct run *r, struct job *j, const struct smtp_result *res)
{
	r->st->bounced++;
	relay_of(r, j)->bounced++;
	warn(r, "%s: refused: %s", j->email, res->text);
	if (r->have_bounces &&
	    bounces_add(&r->bounces, time(NULL), j->email, BOUNCE_HARD, res->status, res->code,
			"smtp", r->post->slug, res->text, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
	job_free(j);
}

/* Relay k's held refusals were the readers' after all: log them. */
static void flush_held(struct run *r, size_t k)
{
	for (int i = 0; i < r->nheld[k]; i++)
		bounce_hard(r, r->held[k][i].job, &r->held[k][i].res);
	r->nheld[k] = 0;
}

/* The held refusals were the relay's: nobody is blamed, and they are
 * tried again by the next run. */
static void drop_held(struct run *r)
{
	for (size_t k = 0; k < r->rs.n; k++) {
		for (int i = 0; i < r->nheld[k]; i++)
			job_free(r->held[k][i].job);
		r->nheld[k] = 0;
	}
}

/* May j go to another relay instead of counting against its reader? */
static int can_move(struct run *r, const struct job *j)
{
	const struct relay *from = relay_of(r, j);
	size_t others = relays_in(&r->rs) - !from->out;
	/* The bound keeps a reader from going round relays that each fail
	 * in turn; past it, the failure counts as it does with one relay. */
	return others && r->stop == GO && j->moves < 2 * (int)r->rs.n;
}

/* j back in the queue for another relay, as it was: no attempt, no
 * retry counted. 0 when it may not (can_move); the job is the caller's
 * then. */
static int move_job(struct run *r, struct job *j)
{
	if (!can_move(r, j))
		return 0;
	j->moves++;
	j->avoid = j->relay;
	j->ready = 0;
	if (enqueue(r, j) < 0) {
		set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
		fail(r, STOP_STATE, EX_SOFTWARE);
		job_free(j);
	}
	return 1;
}

/* rel cannot be used again this run; msg says why, starting with its
 * url. While another relay is in, rel is taken out and its readers (and
 * the refusals it held) go to the others; the last one ends the run the
 * way the only relay always has: msg in err, stop `why`, exit rc. */
static void relay_down(struct run *r, struct relay *rel, enum stop why, int rc, const char *msg)
{
	size_t k = (size_t)(rel - r->rs.r);
	if (!rel->out)
		snprintf(rel->why, sizeof rel->why, "%s", msg);
	if (!rel->out && relays_in(&r->rs) > 1) {
		rel->out = 1;
		rel->trouble = 0;
		transport_halt(rel->tx);
		warn(r, "relay %s taken out of this run: %s; its readers go to the other relays",
		     rel->name, msg);
		for (int i = 0; i < r->nheld[k]; i++)
			if (!move_job(r, r->held[k][i].job))
				job_free(r->held[k][i].job);
		r->nheld[k] = 0;
		return;
	}
	rel->out = 1;
	set_err(r->err, r->errlen, rc, "%s", msg);
	fail(r, why, rc);
}

static void sender_stop(struct run *r, struct relay *rel, const struct smtp_result *res,
			int streak)
{
	char msg[2048];
	/* Taken out already: what else it answers changes nothing. */
	if (rel->out && relays_in(&r->rs))
		return;
	if (streak)
		snprintf(msg, sizeof msg,
			"%s: the first %d readers were all refused with %d %s and none was accepted (last: %s): that is the relay refusing herald, not %d bad addresses; nobody was marked as bounced. Check the relay's restrictions for this host and sender (smtp.username, `from`); if these addresses really are gone, set their status in the list",
			rel->url, SENDER_STREAK, res->code, res->status, res->text, SENDER_STREAK);
	else
		snprintf(msg, sizeof msg, "%s: %s%s%s%s", rel->url, res->text,
			res->hint[0] ? " — " : "", res->hint,
			res->stage >= SMTP_STAGE_RCPT ? "; nobody was marked as bounced" : "");
	if (relays_in(&r->rs) > 1) {
		relay_down(r, rel, STOP_FATAL, EX_UNAVAILABLE, msg);
		return;
	}
	drop_held(r);
	if (r->stop == STOP_FATAL)
		return;
	relay_down(r, rel, STOP_FATAL, EX_UNAVAILABLE, msg);
}

/* A permanent refusal: a bounce, or held back while its relay has not
 * accepted anything yet. */
static void refused(struct run *r, struct job *j, const struct smtp_result *res)
{
	struct relay *rel = relay_of(r, j);
	size_t k = (size_t)j->relay;
	rel->conn_failures = 0;
	if (r->stop == STOP_FATAL) {
		job_free(j); /* the relay's problem: not blamed now */
		return;
	}
	if (rel->sent) {
		bounce_hard(r, j, res);
		return;
	}
	/* From a relay taken out before it accepted anything: maybe the
	 * relay's refusal, so another relay has the word. */
	if (rel->out && move_job(r, j))
		return;
	if (r->nheld[k] && (r->held[k][0].res.code != res->code ||
			    strcmp(r->held[k][0].res.status, res->status)))
		flush_held(r, k);
	r->held[k][r->nheld[k]].job = j;
	r->held[k][r->nheld[k]].res = *res;
	if (++r->nheld[k] == SENDER_STREAK && r->stop != STOP_FATAL && !rel->out)
		sender_stop(r, rel, res, 1);
	if (r->nheld[k] == SENDER_STREAK)
		flush_held(r, k);
}

static void record_ok(struct run *r, struct relay *rel, struct job *j)
{
	r->st->sent++;
	rel->sent++;
	rel->conn_failures = 0;
	rel->uncertain_row = 0;
	flush_held(r, (size_t)j->relay);
	/* Over SMTP the connection's thread wrote the journal line already
	 * (on_accept); a dry run has no journal. */
	if (r->have_journal && journal_error(&r->journal, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
	job_free(j);
}

static void record_uncertain(struct run *r, struct relay *rel, struct job *j,
			     const struct smtp_result *res)
{
	r->st->uncertain++;
	rel->uncertain++;
	warn(r, "%s: %s; recorded as uncertain and not sent again (send --retry-uncertain sends it again)",
	     j->email, res->text);
	if (r->have_journal && journal_error(&r->journal, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
	/* A relay that takes every message and never answers its dot (or
	 * answers out of turn every time) would otherwise mark the whole
	 * list uncertain. */
	if (++rel->uncertain_row >= relay_conns(rel) + 2 && r->stop == GO && !rel->out) {
		char msg[1024];
		if (res->out_of_turn)
			snprintf(msg, sizeof msg,
				 "%s: %d messages in a row were answered out of turn after their content went out; stopped: the relay's replies cannot be matched to its messages (the last: %.300s)",
				 rel->url, rel->uncertain_row, res->text);
		else
			snprintf(msg, sizeof msg,
				 "%s: %d messages in a row got no reply to their final dot within smtp.timeout (%ld s); stopped. If the relay is just slow (a content filter), raise smtp.timeout",
				 rel->url, rel->uncertain_row, rel->conf ? rel->conf->timeout : 0L);
		relay_down(r, rel, STOP_UNREACHABLE, EX_UNAVAILABLE, msg);
	}
	job_free(j);
}

/* Gone in this many connection failures in a row. */
static int conn_limit(const struct run *r, const struct relay *rel)
{
	return 3 * relay_conns(rel) + r->cfg->retry.attempts;
}

/* SMTP_CONN: 1 when the job was taken care of here. With another relay
 * in, a failed connection is this relay's trouble, not the reader's: the
 * reader goes to another relay as it was. */
static int conn_failed(struct run *r, struct relay *rel, struct job *j,
		       const struct smtp_result *res)
{
	if (can_move(r, j)) {
		rel->conn_failures++;
		if (res->stage == SMTP_STAGE_CONNECT && !rel->out) {
			if (!rel->trouble)
				rel->trouble_res = *res;
			rel->trouble = 1;
		}
		if (rel->conn_failures >= conn_limit(r, rel) && !rel->out) {
			char msg[1024];
			snprintf(msg, sizeof msg, "%s: %s", rel->url, res->text);
			relay_down(r, rel, STOP_UNREACHABLE, EX_UNAVAILABLE, msg);
		}
		return move_job(r, j) || (job_free(j), 1);
	}
	if (res->stage != SMTP_STAGE_CONNECT || r->stop != GO)
		return 0;
	/* The server, not this reader: the reader waits, the connection
	 * is what gets retried (reconnect()). */
	if (!rel->trouble)
		rel->trouble_res = *res;
	rel->trouble = 1;
	j->ready = 0;
	if (enqueue(r, j) == 0)
		return 1;
	set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	fail(r, STOP_STATE, EX_SOFTWARE);
	job_free(j);
	return 1;
}

/* SMTP_TEMP, and SMTP_CONN that conn_failed left: the retry queue,
 * or deferred once the attempts are spent. */
static void retry_or_defer(struct run *r, struct relay *rel, struct job *j,
			   const struct smtp_result *res)
{
	const struct config *c = r->cfg;
	if (res->cls == SMTP_CONN)
		rel->conn_failures++;
	j->attempts++;
	/* Stop taking new readers when the server is plainly gone; what is
	 * not tried stays unsent for the next run. */
	if (rel->conn_failures >= conn_limit(r, rel) && r->stop == GO && !rel->out) {
		char msg[1024];
		snprintf(msg, sizeof msg, "%s: %s", rel->url, res->text);
		relay_down(r, rel, STOP_UNREACHABLE, EX_UNAVAILABLE, msg);
	}
	if (j->attempts < c->retry.attempts && r->stop == GO) {
		j->ready = now_mono() + backoff(c, j->attempts);
		if (enqueue(r, j) == 0)
			return;
		set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
		fail(r, STOP_STATE, EX_SOFTWARE);
	}
	if (r->stop == STOP_SIGNAL || r->stop == STOP_STATE || r->stop == STOP_FATAL) {
		job_free(j); /* stopping: tried again by the next run */
		return;
	}
	r->st->deferred++;
	rel->deferred++;
	warn(r, "%s: deferred after %d attempt%s: %s", j->email, j->attempts,
	     j->attempts == 1 ? "" : "s", res->text);
	/* Only a 4xx about this recipient is a soft bounce; a dead
	 * connection, or a 4xx about the sending side, says nothing about
	 * the address. */
	if (res->cls == SMTP_TEMP && !res->sender_side && r->have_bounces &&
	    bounces_add(&r->bounces, time(NULL), j->email, BOUNCE_SOFT, res->status, res->code,
			"smtp", r->post->slug, res->text, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
	job_free(j);
}

/* relays.log: a message a relay with its own windows answered counts
 * in them, for the next run too. */
static void note_relay(struct run *r, const struct relay *rel, const struct smtp_result *res)
{
	if (!r->have_rlog || !rel->windows)
		return;
	if (res->cls != SMTP_OK && res->cls != SMTP_UNCERTAIN && res->cls != SMTP_PERM &&
	    res->cls != SMTP_TEMP)
		return;
	if (relaylog_add(&r->rlog, time(NULL), rel->name, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
}

/* The outcome of one transaction: journal, bounce log, retry queue, or
 * another relay. Takes ownership of the job. */
static void record(struct run *r, struct job *j, const struct smtp_result *res)
{
	struct relay *rel = relay_of(r, j);
	buf_free(&j->wire);
	/* Once per relay (the pool says it once). */
	if (res->pipelining_off[0] && !rel->pipelining_off[0]) {
		snprintf(rel->pipelining_off, sizeof rel->pipelining_off, "%s", res->pipelining_off);
		warn(r, "pipelining off for %s: %s; its messages go one command at a time for the rest of this run",
		     rel->name, res->pipelining_off);
	}
	if (res->cls != SMTP_NOT_TRIED && res->cls != SMTP_CONN)
		rel->reconnects = 0;
	note_relay(r, rel, res);
	switch (res->cls) {
	case SMTP_OK:
		record_ok(r, rel, j);
		return;
	case SMTP_UNCERTAIN:
		record_uncertain(r, rel, j, res);
		return;
	case SMTP_NOT_TRIED:
		/* Its relay was taken out: another has it. Else the run is
		 * stopping, and it stays unsent for the next. */
		if (!rel->out || !move_job(r, j))
			job_free(j);
		return;
	case SMTP_WITHDRAWN:
		r->st->unsubscribed++;
		job_free(j);
		return;
	case SMTP_PERM:
		refused(r, j, res);
		return;
	case SMTP_FATAL:
		sender_stop(r, rel, res, 0);
		if (!move_job(r, j))
			job_free(j); /* not tried: stays unsent for the next run */
		return;
	case SMTP_CONN:
		if (conn_failed(r, rel, j, res))
			return;
		break;
	case SMTP_TEMP:
		break;
	}
	retry_or_defer(r, rel, j, res);
}

static void on_done(void *arg, void *tag, const struct smtp_result *res)
{
	record(arg, tag, res);
}

/* On a connection's thread, before it carries another message: the
 * journal line. Non-zero (it could not be written) halts every
 * connection, so at most the one message per connection that was
 * accepted and not recorded can be sent again by a later run. */
static int on_accept(void *arg, void *tag, const struct smtp_result *res)
{
	struct run *r = arg;
	const struct job *j = tag;
	if (!r->have_journal)
		return 0;
	return journal_write(&r->journal, time(NULL), j->email, j->info.message_id, res->text,
			     res->cls == SMTP_UNCERTAIN ? JOURNAL_UNCERTAIN : JOURNAL_SENT);
}

static void left_entry(void *arg, const struct listlog_entry *e)
{
	struct run *r = arg;
	/* The last line for an address wins: 1 left, 2 signed up again. */
	if (addrset_set(&r->gone, e->addr, e->action == LISTLOG_UNSUBSCRIBE ? 1 : 2) < 0)
		r->left_oom = 1;
}

/* Has email unsubscribed on the web? Reads what list.log gained since
 * the last look (one stat(2) when nothing did). Any thread. A list.log
 * that cannot be read stops nothing here: setup read it once already. */
static int has_left(struct run *r, const char *email)
{
	if (!r->have_left)
		return 0;
	pthread_mutex_lock(&r->left_mu);
	char err[256];
	listlog_follow_poll(&r->left, left_entry, r, &r->state_warn, err, sizeof err);
	int gone = addrset_get(&r->gone, email) == 1;
	pthread_mutex_unlock(&r->left_mu);
	return gone;
}

static int on_admit(void *arg, void *tag)
{
	const struct job *j = tag;
	return !has_left(arg, j->email);
}

enum verdict { TAKE, INACTIVE, OUTSIDE, ALREADY, SUPPRESSED, LEFT, OTHER_SHARD, NOMEM };

/* Whether a subscribed row is to be mailed this run. It changes no count
 * and no verdict of another row, so both the loop and the end-of-run
 * look-ahead can ask; its one effect is has_left()'s poll of list.log,
 * which only brings the unsubscribed set up to date. The shard comes
 * first: a row of another shard is that host's to count, whatever it is. */
static enum verdict verdict(const struct run *r, int kind, const struct subs_row *s)
{
	unsigned shard;
	if (r->o->nshards > 1 && subs_shard(s->email, r->o->nshards, &shard) < 0)
		return NOMEM;
	if (r->o->nshards > 1 && shard != r->o->shard)
		return OTHER_SHARD;
	if (kind == SUBS_INACTIVE)
		return INACTIVE;
	if (!segment_match(&r->seg, (const char *const *)s->fields))
		return OUTSIDE;
	if (r->have_journal && !r->o->force && journal_has(&r->journal, s->email) &&
	    !(r->o->retry_uncertain && journal_is_uncertain(&r->journal, s->email)))
		return ALREADY;
	if (r->have_bounces && bounces_suppressed(&r->bounces, s->email))
		return SUPPRESSED;
	if (has_left((struct run *)r, s->email))
		return LEFT;
	return TAKE;
}

/* The next reader to try: a deferred one whose time has come, else the
 * next row of the list. NULL when there is none right now. */
static struct job *next_job(struct run *r)
{
	if (r->nqueue) {
		size_t i = soonest(r);
		if (r->queue[i]->ready <= now_mono()) {
			struct job *j = r->queue[i];
			r->queue[i] = r->queue[--r->nqueue];
			if (j->attempts)
				r->st->retried++;
			return j;
		}
	}
	if (r->eof || r->stop != GO || (r->o->limit && r->taken >= r->o->limit))
		return NULL;
	struct subs_row s;
	char why[512];
	for (;;) {
		int k = subs_next(r->sr, &s, why, sizeof why);
		if (k == SUBS_END) {
			r->eof = 1;
			return NULL;
		}
		if (k == SUBS_BAD) {
			warn(r, "%s; skipped", why);
			r->st->skipped++;
			continue;
		}
		if (k == SUBS_FATAL || k == SUBS_NOFILE) {
			set_err(r->err, r->errlen, EX_DATAERR, "%s", why);
			fail(r, STOP_STATE, EX_DATAERR);
			r->eof = 1;
			return NULL;
		}
		enum verdict v = verdict(r, k, &s);
		switch (v) {
		case INACTIVE: r->st->inactive++; continue;
		case OUTSIDE: r->st->excluded++; continue;
		case ALREADY: r->st->already++; continue;
		case SUPPRESSED: r->st->suppressed++; continue;
		case LEFT: r->st->unsubscribed++; continue;
		case OTHER_SHARD: r->st->other_shards++; continue;
		case NOMEM: break;
		case TAKE: break;
		}
		struct job *j = v == NOMEM ? NULL
				: job_new(s.fields, s.nfields, s.email, s.name, s.line);
		if (!j) {
			set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
			fail(r, STOP_STATE, EX_SOFTWARE);
			return NULL;
		}
		r->taken++;
		return j;
	}
}

/* After --limit: is any reader left that a run without it would mail?
 * Reads on without counting or warning (rows past the limit were never
 * reached, so their faults are not this run's to report). */
static int readers_left(struct run *r)
{
	struct subs_row s;
	char why[512];
	int k;
	while (!r->eof && (k = subs_next(r->sr, &s, why, sizeof why)) != SUBS_END) {
		if (k == SUBS_FATAL || k == SUBS_NOFILE)
			return 0;
		if ((k == SUBS_ROW || k == SUBS_INACTIVE) && verdict(r, k, &s) == TAKE)
			return 1;
	}
	return 0;
}

static int build(struct run *r, struct job *j)
{
	char why[256];
	buf_reset(&j->wire);
	int rc = msg_build(r->msg, (const char *const *)j->fields, j->email, j->name,
			   time(NULL), &j->wire, &j->info, why, sizeof why);
	if (rc == MSG_BADROW) {
		warn(r, "%s:%ld: %s; skipped", r->o->subscribers, j->line, why);
		r->st->skipped++;
		r->build_skipped++;
		return -1;
	}
	if (rc) {
		set_err(r->err, r->errlen, EX_SOFTWARE, "%s", why);
		fail(r, STOP_STATE, EX_SOFTWARE);
		return -1;
	}
	return 0;
}

/* What a wait of d seconds for window `which` means: the window on show
 * while messages keep waiting for it (the first one that goes out
 * without waiting clears it), and with --until-quota the end of the run
 * when it is a quota. Returns d. */
static double rate_held(struct run *r, double d, const char *which)
{
	/* The window stays on show while messages keep waiting for it; the
	 * first one that goes out without waiting clears it. */
	if (d > 0)
		r->st->limit_window = which;
	else if (!r->waited)
		r->st->limit_window = NULL;
	r->waited = d > 0;
	if (d > 0 && r->o->until_quota && rl_is_quota(which) && r->stop == GO) {
		r->stop = STOP_QUOTA;
		r->st->quota_stop = 1;
		r->rc = EX_TEMPFAIL;
		set_err(r->err, r->errlen, EX_TEMPFAIL,
			"rate.%s quota reached; the next run goes on from here", which);
	}
	return d;
}

/* Seconds until the rate limit (the top-level rate, over all relays)
 * lets the next message go, or 0. */
static double rate_wait(struct run *r)
{
	const char *which = NULL;
	double d = rl_delay(&r->rl, now_mono(), &which);
	return rate_held(r, d, which);
}

/* The next reader's message, built: the one prepared in advance if there
 * is one. NULL when there is nothing to send right now. */
static struct job *take_built(struct run *r)
{
	struct job *j = r->built;
	r->built = NULL;
	while (!j && r->stop == GO) {
		if (!(j = next_job(r)))
			break;
		if (build(r, j) < 0) {
			job_free(j);
			j = NULL;
		}
	}
	return j;
}

/* Fills free connections. Returns how long to wait before trying again
 * (rate limit or retry timer), 0 if there is no reason to wait. */
static double fill(struct run *r, int idle)
{
	while (idle > 0 && r->stop == GO) {
		double d = rate_wait(r);
		if (d > 0)
			return d;
		struct job *j = take_built(r);
		if (!j)
			break;
		if (has_left(r, j->email)) {
			/* Since it was built: not sent (a dry run has no
			 * connection thread to ask). */
			r->st->unsubscribed++;
			job_free(j);
			continue;
		}
		/* Every relay's own windows full, or its connections busy:
		 * the message waits, built, for the first that frees. */
		const char *which;
		double now = now_mono();
		int k = relays_pick(&r->rs, now, j->avoid, &d, &which);
		if (k < 0) {
			r->built = j;
			return which ? rate_held(r, d, which) : 0;
		}
		j->relay = k;
		rl_take(&r->rl, now);
		r->st->attempted++;
		int rc = transport_submit(r->rs.r[k].tx, j->info.mail_from, j->email, j->wire.p,
					  j->wire.len, j, r->err, r->errlen);
		if (rc) {
			fail(r, STOP_STATE, rc);
			job_free(j);
			return 0;
		}
		idle--;
	}
	/* While every connection is busy, build the next message, so the
	 * first one to free up starts again at once. */
	if (!idle && r->stop == GO)
		r->built = take_built(r);
	if (r->nqueue && r->stop == GO) {
		double d = r->queue[soonest(r)]->ready - now_mono();
		return d > 0 ? d : 0;
	}
	return 0;
}

static int more_work(const struct run *r)
{
	if (r->stop != GO)
		return 0;
	return r->built || r->nqueue || (!r->eof && !(r->o->limit && r->taken >= r->o->limit));
}

static int interrupted(struct run *r)
{
	if (r->st->interrupted)
		return 1;
	if (!r->o->interrupted || !r->o->interrupted(r->o->interrupt_arg))
		return 0;
	r->st->interrupted = 1;
	if (r->stop == GO || r->stop == STOP_QUOTA) {
		set_err(r->err, r->errlen, EX_TEMPFAIL,
			"stopped by a signal: took no new reader and waited for the messages in flight; run again to send the rest");
		fail(r, STOP_SIGNAL, EX_TEMPFAIL);
	}
	return 1;
}

/* Sleeps s seconds unless a signal comes first (then returns -1). */
static int nap(struct run *r, double s)
{
	double until = now_mono() + s;
	for (double left = s; left > 0; left = until - now_mono()) {
		if (interrupted(r))
			return -1;
		sleep_for(left > 0.2 ? 0.2 : left);
	}
	return interrupted(r) ? -1 : 0;
}

static void fmt_secs(double s, char *out, size_t len)
{
	long t = (long)(s + 0.5);
	if (t >= 60)
		snprintf(out, len, "%ld min %ld s", t / 60, t % 60);
	else if (s < 9.95)
		snprintf(out, len, "%.1f s", s);
	else
		snprintf(out, len, "%ld s", t);
}

/* While another relay is in, a relay that cannot be reached is not
 * waited for: it is taken out at once, and the others carry its readers.
 * res: how its last connection or probe failed. */
static void relay_unreachable(struct run *r, struct relay *rel, const struct smtp_result *res)
{
	if (res->cls == SMTP_FATAL) {
		sender_stop(r, rel, res, 0);
		return;
	}
	char msg[1024];
	snprintf(msg, sizeof msg, "%s: %s%s%s", rel->url, res->text, res->hint[0] ? " — " : "",
		 res->hint);
	relay_down(r, rel, STOP_UNREACHABLE, EX_UNAVAILABLE, msg);
}

/* The server could not be reached (first: how the last connection
 * failed): retry the connection, not the readers, with the retry
 * group's delays, saying so once per attempt. `tried` attempts have
 * been made already. 0 once a probe goes through; otherwise the relay
 * is down: with another relay in, after one probe (none when `tried`
 * was a probe already, at first contact), it is taken out; the last one
 * stops the run (69, or 75 for a signal). */
static int reconnect(struct run *r, struct relay *rel, struct smtp_result first, int tried,
		     int probed)
{
	const struct config *c = r->cfg;
	struct smtp_result res = first;
	if (relays_in(&r->rs) > 1) {
		if (!probed && transport_probe(rel->tx, &res) == 0)
			return 0;
		relay_unreachable(r, rel, &res);
		return -1;
	}
	int attempts = c->retry.attempts < 1 ? 1 : c->retry.attempts;
	double spent = 0;
	for (int n = tried + 1; n <= attempts; n++) {
		if (n > 1) {
			double d = backoff(c, n - 1);
			char ds[32];
			fmt_secs(d, ds, sizeof ds);
			warn(r, "%s: %s; retrying in %s (attempt %d/%d)", rel->url, res.text, ds,
			     n, attempts);
			r->st->reconnecting = 1;
			r->st->attempt = n;
			r->st->attempts = attempts;
			progress(r);
			double t0 = now_mono();
			int stopped = nap(r, d) < 0;
			spent += now_mono() - t0;
			if (stopped) {
				r->st->reconnecting = 0;
				return -1;
			}
		}
		if (transport_probe(rel->tx, &res) == 0) {
			r->st->reconnecting = 0;
			return 0;
		}
		if (res.cls == SMTP_FATAL)
			break;
	}
	r->st->reconnecting = 0;
	if (res.cls == SMTP_FATAL) {
		sender_stop(r, rel, &res, 0);
		return -1;
	}
	char ds[32], msg[2048];
	fmt_secs(spent, ds, sizeof ds);
	snprintf(msg, sizeof msg, "%s: %s (%d attempt%s over %s)%s%s; %s", rel->url,
		res.text, attempts, attempts == 1 ? "" : "s", ds, res.hint[0] ? " — " : "", res.hint,
		r->st->sent ? "the rest were not attempted: run again once it is back"
			    : "nothing was sent: run again once it is back");
	relay_down(r, rel, STOP_UNREACHABLE, EX_UNAVAILABLE, msg);
	return -1;
}

/* Relays whose connections failed before MAIL: once none of that
 * relay's is busy, find out whether its server is back before handing
 * it more. 1 while one is still waiting for that. */
static int check_troubled(struct run *r)
{
	int waiting = 0;
	for (size_t i = 0; i < r->rs.n; i++) {
		struct relay *rel = &r->rs.r[i];
		if (!rel->trouble || rel->out || r->stop != GO)
			continue;
		if (transport_busy(rel->tx)) {
			waiting = 1;
			continue;
		}
		rel->trouble = 0;
		if (++rel->reconnects > r->cfg->retry.attempts) {
			char msg[1024];
			snprintf(msg, sizeof msg, "%s: %s; every new connection fails this way",
				 rel->url, rel->trouble_res.text);
			relay_down(r, rel, STOP_UNREACHABLE, EX_UNAVAILABLE, msg);
		} else
			reconnect(r, rel, rel->trouble_res, 1, 0);
	}
	return waiting;
}

static void loop(struct run *r)
{
	double last_progress = 0;
	for (;;) {
		interrupted(r);
		int troubled = check_troubled(r);
		int idle = relays_idle(&r->rs);
		double wait = fill(r, idle);
		int busy = relays_busy(&r->rs);
		if (!busy && !more_work(r) && !troubled)
			break;
		double t = now_mono();
		if (t - last_progress > 0.1) {
			progress(r);
			last_progress = t;
		}
		if (busy) {
			relays_collect(&r->rs, wait > 0 && wait < 0.5 ? wait : 0.5, on_done, r);
		} else if (wait > 0) {
			double rest = wait > 0.5 ? 0.5 : wait;
			progress(r);
			if (r->st->limit_window)
				r->st->waiting += rest;
			sleep_for(rest);
		}
	}
	sync_journal(r);
}

/* --test: the addresses given, merged with their own row when the list
 * has one, else with the first reader's fields (or empty ones). */
static void queue_tests(struct run *r)
{
	const struct delivery_opts *o = r->o;
	struct job *first = NULL, **match = calloc(o->n_test, sizeof *match);
	struct subs_row s;
	char why[512];
	int k;
	if (!match)
		goto oom;
	while ((k = subs_next(r->sr, &s, why, sizeof why)) != SUBS_END) {
		if (k == SUBS_FATAL || k == SUBS_NOFILE) {
			set_err(r->err, r->errlen, EX_DATAERR, "%s", why);
			fail(r, STOP_STATE, EX_DATAERR);
			goto out;
		}
		if (k == SUBS_BAD)
			continue;
		if (!first && k == SUBS_ROW &&
		    !(first = job_new(s.fields, s.nfields, s.email, s.name, s.line)))
			goto oom;
		for (size_t i = 0; i < o->n_test; i++)
			if (!match[i] && !strcasecmp(o->test_to[i], s.email) &&
			    !(match[i] = job_new(s.fields, s.nfields, s.email, s.name, s.line)))
				goto oom;
	}
	int ecol = subs_col(r->sr, "email");
	size_t ncols = subs_ncols(r->sr);
	for (size_t i = 0; i < o->n_test; i++) {
		struct job *j = match[i];
		match[i] = NULL;
		if (!j) {
			const char **f = calloc(ncols ? ncols : 1, sizeof *f);
			if (!f)
				goto oom;
			for (size_t c = 0; c < ncols; c++)
				f[c] = first ? first->fields[c] : "";
			/* The list's own email column must say the test
			 * address, or a field built from it would leak a real
			 * reader's address into the test. */
			if (ecol >= 0)
				f[ecol] = o->test_to[i];
			j = job_new(f, ncols, o->test_to[i], first ? first->name : "",
				    first ? first->line : 0);
			free(f);
			if (!j)
				goto oom;
		}
		j->ready = 0;
		if (enqueue(r, j) < 0) {
			job_free(j);
			goto oom;
		}
	}
	r->eof = 1;
	goto out;
oom:
	set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	fail(r, STOP_STATE, EX_SOFTWARE);
out:
	job_free(first);
	for (size_t i = 0; match && i < o->n_test; i++)
		job_free(match[i]);
	free(match);
}

/* A first pass over the list: counts the readers (for the progress ETA)
 * and refuses a list that breaks down half-way before anyone is mailed.
 * Then back to the first row: the send reads the same open file again,
 * with the address set this pass built (subs_rewind), so a send holds
 * one set, as subscribers check does. */
static int count_readers(struct run *r)
{
	struct subs_row s;
	char why[512];
	int k = subs_open(&r->sr, r->o->subscribers, r->cfg->subs_delim, r->err, r->errlen);
	if (k)
		return subs_exitcode(k);
	if (segment_bind(&r->seg, subs_colnames(r->sr), subs_ncols(r->sr), r->o->subscribers,
			 r->err, r->errlen) < 0)
		return EX_DATAERR;
	while ((k = subs_next(r->sr, &s, why, sizeof why)) != SUBS_END) {
		if (k == SUBS_FATAL || k == SUBS_NOFILE)
			return set_err(r->err, r->errlen, EX_DATAERR, "%s", why);
		if (k != SUBS_ROW)
			continue;
		unsigned shard = 1;
		if (r->o->nshards > 1 && subs_shard(s.email, r->o->nshards, &shard) < 0)
			return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
		if ((r->o->nshards < 2 || shard == r->o->shard) &&
		    segment_match(&r->seg, (const char *const *)s.fields))
			r->st->total++;
	}
	k = subs_rewind(r->sr, r->err, r->errlen);
	return k ? subs_exitcode(k) : 0;
}

/* The longest window of rc, in seconds; 0 when it has none. */
static double horizon_of(const struct rate_conf *rc)
{
	return rc->per_day ? 86400 : rc->per_hour ? 3600 : rc->per_minute ? 60 : 0;
}

/* st's wall-clock times into rl's windows, on the monotonic clock. */
static void seed_from(struct ratelimit *rl, struct state_times *st)
{
	state_times_sort(st);
	double mono = now_mono();
	for (size_t i = 0; i < st->n; i++)
		st->v[i] = mono - ((double)st->now - st->v[i]);
	rl_seed(rl, st->v, st->n);
	state_times_free(st);
}

/* Seeds the hour and day windows with what earlier runs sent, so a
 * 500/day quota holds when cron starts herald every hour. */
static int seed_quota(struct run *r)
{
	double horizon = horizon_of(&r->o->rate);
	if (!horizon)
		return 0;
	time_t wall = time(NULL);
	struct state_times st = {.since = wall - (time_t)horizon, .now = wall};
	if (journal_recent_times(r->cfg->state_dir, &st, r->err, r->errlen) < 0 ||
	    bounces_recent_times(r->cfg->state_dir, &st, r->err, r->errlen) < 0) {
		state_times_free(&st);
		return EX_IOERR;
	}
	seed_from(&r->rl, &st);
	return 0;
}

/* A relay's own windows the same way, from relays.log (the journals do
 * not say which relay took a message), which this run then adds to. */
static int seed_relays(struct run *r)
{
	int any = 0;
	for (size_t i = 0; i < r->rs.n; i++)
		any |= r->rs.r[i].windows;
	if (!any)
		return 0;
	if (relaylog_open(&r->rlog, r->cfg->state_dir, &r->state_warn, r->err, r->errlen) < 0)
		return EX_CANTCREAT;
	r->have_rlog = 1;
	for (size_t i = 0; i < r->rs.n; i++) {
		struct relay *rel = &r->rs.r[i];
		if (!rel->windows)
			continue;
		time_t wall = time(NULL);
		struct state_times st = {.since = wall - (time_t)horizon_of(&rel->conf->rate),
					 .now = wall};
		if (relaylog_recent_times(r->cfg->state_dir, rel->name, &st, &r->state_warn, r->err,
					  r->errlen) < 0) {
			state_times_free(&st);
			return EX_IOERR;
		}
		seed_from(&rel->rl, &st);
	}
	return 0;
}

/* One SMTP pool for each relay, each with its own password (which may
 * run a command) and windows. */
static int relays_setup(struct run *r)
{
	const struct config *cfg = r->cfg;
	const struct delivery_opts *o = r->o;
	int conns = 0;
	for (size_t i = 0; i < config_nrelays(cfg); i++) {
		const struct smtp_conf *sc = config_relay(cfg, i);
		int k = config_relay_password(cfg, sc, &r->password, r->err, r->errlen);
		if (k < 0)
			return config_exitcode(k);
		struct smtp_opts so = {
			.url = sc->url, .starttls = sc->starttls,
			.username = sc->username, .password = r->password,
			.ca_file = sc->ca_file, .timeout = sc->timeout,
			.no_pipelining = !sc->pipelining,
			.helo = sc->helo ? sc->helo : strrchr(cfg->from_addr, '@') + 1,
			.trace = o->trace, .trace_arg = o->trace_arg,
			.accept = on_accept, .accept_arg = r,
			.admit = on_admit, .admit_arg = r,
		};
		/* Unthrottled, each connection holds a second message to
		 * start the moment the first is answered; under a rate limit
		 * (the run's or the relay's) every message waits for its own
		 * turn. */
		const struct rate_conf *g = &o->rate, *own = &sc->rate;
		int limited = g->per_second > 0 || g->per_minute || g->per_hour || g->per_day ||
			      own->per_second > 0 || own->per_minute || own->per_hour || own->per_day;
		struct transport *tx;
		int prc = transport_smtp(&tx, &so, sc->connections, limited ? 1 : 2, r->err,
					 r->errlen);
		/* libcurl holds the password now; our copy goes at once. */
		secret_free(&r->password);
		if (prc < 0)
			return EX_CONFIG;
		if (relays_add(&r->rs, sc, NULL, own, tx, now_mono(), r->err, r->errlen) < 0)
			return EX_SOFTWARE;
		conns += sc->connections;
	}
	r->st->connections = conns;
	return o->n_test ? 0 : seed_relays(r);
}

/* The rules of --where and of the post's audience, all of which must
 * hold; their columns are found when the list is first read. */
static int segment_setup(struct run *r)
{
	for (size_t i = 0; i < r->o->n_where; i++)
		if (segment_add(&r->seg, r->o->where[i], "--where", r->err, r->errlen) < 0)
			return EX_USAGE;
	if (post_segment(r->post, &r->seg, r->err, r->errlen) < 0)
		return EX_DATAERR;
	return 0;
}

/* list.log as it is now, then followed by has_left(). */
static int follow_left(struct run *r)
{
	if (listlog_follow_init(&r->left, r->cfg->state_dir, r->err, r->errlen) < 0)
		return EX_SOFTWARE;
	pthread_mutex_init(&r->left_mu, NULL);
	r->have_left = 1;
	if (listlog_follow_poll(&r->left, left_entry, r, &r->state_warn, r->err, r->errlen) < 0)
		return EX_IOERR;
	if (r->left_oom)
		return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	return 0;
}

static int setup(struct run *r)
{
	const struct config *cfg = r->cfg;
	const struct delivery_opts *o = r->o;
	const char *secret = NULL;
	int rc;
	/* The lock first: nothing that can block (a password command, a
	 * server that does not answer) may run before it, or a hung run
	 * would let the next cron run start beside it. */
	if (!o->dry_run_dir && !o->n_test) {
		r->lock = state_lock(cfg->state_dir, STATE_LOCK_SEND, r->err, r->errlen);
		r->st->locked = r->lock == -1;
		if (r->lock == -2)
			config_name_setting(cfg, "state_dir", r->err, r->errlen);
		if (r->lock < 0)
			return r->lock == -1 ? EX_TEMPFAIL : EX_CANTCREAT;
		if (journal_open(&r->journal, cfg->state_dir, r->post->slug, &r->state_warn, r->err,
				 r->errlen) < 0)
			return EX_CANTCREAT;
		r->have_journal = 1;
		if (o->nshards > 1 && journal_shard_mark(cfg->state_dir, r->post->slug, o->shard,
							 o->nshards, JOURNAL_SHARD_BEGUN, r->err,
							 r->errlen) < 0)
			return EX_CANTCREAT;
	}
	if (!o->n_test) {
		/* A dry run reads the suppression list but writes nothing. */
		if (bounces_open(&r->bounces, cfg->state_dir, cfg->bounce.soft_limit, &r->state_warn,
				 r->err, r->errlen) < 0)
			return EX_CANTCREAT;
		r->have_bounces = 1;
	}
	if (!o->n_test && (rc = follow_left(r)))
		return rc;
	if (!o->n_test && ((rc = segment_setup(r)) || (rc = count_readers(r))))
		return rc;
	int k = r->sr ? 0 : subs_open(&r->sr, o->subscribers, cfg->subs_delim, r->err, r->errlen);
	if (k)
		return subs_exitcode(k);
	if (msg_secret(cfg, &secret, r->err, r->errlen) < 0)
		return EX_CONFIG;
	k = msg_new(&r->msg, cfg, r->post, subs_colnames(r->sr), subs_ncols(r->sr), secret,
		    o->n_test > 0 ? MSG_TEST : 0, r->err, r->errlen);
	if (k < 0)
		return msg_exitcode(k);
	static const struct rate_conf none;
	if (rl_init(&r->rl, o->dry_run_dir ? &none : &o->rate, now_mono()) < 0)
		return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	if (!o->dry_run_dir && !o->n_test && (rc = seed_quota(r)))
		return rc;
	if (o->dry_run_dir) {
		if (state_mkdir_as(o->dry_run_dir, "dry-run directory", r->err, r->errlen) < 0)
			return EX_CANTCREAT;
		struct transport *tx;
		if (transport_dir(&tx, o->dry_run_dir, r->err, r->errlen) < 0 ||
		    relays_add(&r->rs, NULL, o->dry_run_dir, NULL, tx, now_mono(), r->err,
			       r->errlen) < 0)
			return EX_SOFTWARE;
	} else {
		if ((rc = relays_setup(r)))
			return rc;
	}
	if (o->n_test)
		queue_tests(r);
	return r->rc;
}

/* Before the first reader: is each server there, and will it take us?
 * One that is not is taken out while another is in; the last is waited
 * for as the only relay always was. */
static int first_contact(struct run *r)
{
	for (size_t i = 0; i < r->rs.n && r->stop == GO; i++) {
		struct relay *rel = &r->rs.r[i];
		struct smtp_result res;
		if (transport_probe(rel->tx, &res) == 0)
			continue;
		if (res.cls == SMTP_FATAL)
			sender_stop(r, rel, &res, 0);
		else
			reconnect(r, rel, res, 1, 1);
	}
	return r->stop == GO ? 0 : -1;
}

static int outcome(struct run *r)
{
	struct delivery_stats *st = r->st;
	if (r->stop == STOP_FATAL || r->stop == STOP_UNREACHABLE)
		return EX_UNAVAILABLE;
	if (r->stop != GO)
		return r->rc;
	for (size_t i = 0; i < r->rs.n; i++)
		if (st->deferred && !st->sent && !st->bounced && r->rs.r[i].conn_failures) {
			set_err(r->err, r->errlen, EX_UNAVAILABLE, "%s: no message could be sent",
				r->rs.r[i].url);
			return EX_UNAVAILABLE;
		}
	if (st->deferred)
		return EX_TEMPFAIL;
	if (r->o->limit && !r->o->n_test && r->taken >= r->o->limit && readers_left(r)) {
		/* --limit left readers unsent: say so through the code. */
		set_err(r->err, r->errlen, EX_TEMPFAIL,
			"--limit %ld reached; run again to send the rest", r->o->limit);
		return EX_TEMPFAIL;
	}
	return 0;
}

static void relay_stats(struct run *r)
{
	struct delivery_stats *st = r->st;
	st->nrelays = (int)r->rs.n;
	for (size_t i = 0; i < r->rs.n; i++) {
		const struct relay *rel = &r->rs.r[i];
		struct delivery_relay *d = &st->relay[i];
		snprintf(d->name, sizeof d->name, "%s", rel->name);
		d->sent = rel->sent;
		d->bounced = rel->bounced;
		d->deferred = rel->deferred;
		d->uncertain = rel->uncertain;
		d->out = rel->out;
		snprintf(d->why, sizeof d->why, "%s", rel->out ? rel->why : "");
		snprintf(d->pipelining_off, sizeof d->pipelining_off, "%s", rel->pipelining_off);
	}
}

int delivery_run(const struct config *cfg, const struct post *post,
		 const struct delivery_opts *o, const struct delivery_cb *cb,
		 struct delivery_stats *st, char *err, size_t errlen)
{
	struct run r = {.cfg = cfg, .post = post, .o = o, .cb = cb, .st = st,
			.err = err, .errlen = errlen, .lock = -1,
			.state_warn = {cb ? cb->warn : NULL, cb ? cb->arg : NULL}};
	memset(st, 0, sizeof *st);
	st->connections = 1;
	r.start = now_mono();
	int rc = setup(&r);
	if (rc == 0) {
		st->started = 1;
		if (o->n_test)
			st->total = (long)r.nqueue;
		if (first_contact(&r) == 0)
			loop(&r);
		else
			sync_journal(&r);
		/* Refusals held back for the first acceptance that never came
		 * are bounces after all, unless the relay was to blame. */
		if (r.stop == STOP_FATAL)
			drop_held(&r);
		else
			for (size_t i = 0; i < r.rs.n; i++)
				flush_held(&r, i);
		rc = outcome(&r);
		/* A shard's run covers its shard only: the post is done once
		 * every shard is (state merge decides, from these lines). */
		if (rc == 0 && r.have_journal && !o->n_where &&
		    (o->nshards > 1 ? journal_shard_mark(cfg->state_dir, post->slug, o->shard,
							 o->nshards, JOURNAL_SHARD_DONE, err, errlen)
				    : journal_mark_done(cfg->state_dir, post->slug, err, errlen)) < 0)
			rc = EX_CANTCREAT;
	}
	st->done = 1;
	if (st->started) {
		long handled = st->sent + st->bounced + st->deferred + st->already +
			       st->suppressed + st->uncertain + st->unsubscribed + r.build_skipped;
		st->not_attempted = st->total > handled ? st->total - handled : 0;
	}
	progress(&r);
	job_free(r.built);
	for (size_t i = 0; i < r.nqueue; i++)
		job_free(r.queue[i]);
	free(r.queue);
	relay_stats(&r);
	relays_close(&r.rs);
	if (r.have_rlog)
		relaylog_close(&r.rlog);
	secret_free(&r.password);
	rl_free(&r.rl);
	segment_free(&r.seg);
	msg_free(r.msg);
	if (r.have_journal)
		journal_close(&r.journal);
	if (r.have_bounces)
		bounces_close(&r.bounces);
	state_unlock(r.lock);
	subs_close(r.sr);
	if (r.have_left) {
		listlog_follow_free(&r.left);
		addrset_free(&r.gone);
		pthread_mutex_destroy(&r.left_mu);
	}
	return rc;
}
