#include "deliver/delivery.h"
#include "state/bounces.h"
#include "util/buf.h"
#include "state/journal.h"
#include "state/listlog.h"
#include "util/addrset.h"
#include "compose/message.h"
#include "deliver/ratelimit.h"
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
	struct transport *tx;  /* SMTP, or the dry-run directory */
	char *password;
	struct job **queue;    /* deferred, retried when ready */
	size_t nqueue, capqueue;
	int eof;
	long taken;            /* rows taken from the stream */
	int conn_failures;     /* consecutive, with nothing delivered between */
	int uncertain_row;     /* consecutive unanswered final dots */
	struct held held[SENDER_STREAK]; /* refusals before the first
					    acceptance (SENDER_STREAK) */
	int nheld;
	int trouble;           /* a connection failed before MAIL: probe the
				  server before handing out more */
	struct smtp_result trouble_res;
	int reconnects;        /* probe rounds with no reply to a message
				  since */
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
	if (r->tx)
		transport_halt(r->tx);
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

static void bounce_hard(struct run *r, struct job *j, const struct smtp_result *res)
{
	r->st->bounced++;
	warn(r, "%s: refused: %s", j->email, res->text);
	if (r->have_bounces &&
	    bounces_add(&r->bounces, time(NULL), j->email, BOUNCE_HARD, res->status, res->code,
			"smtp", r->post->slug, res->text, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
	job_free(j);
}

/* The held refusals were the readers' after all: log them. */
static void flush_held(struct run *r)
{
	for (int i = 0; i < r->nheld; i++)
		bounce_hard(r, r->held[i].job, &r->held[i].res);
	r->nheld = 0;
}

/* The held refusals were the relay's: nobody is blamed, and they are
 * tried again by the next run. */
static void drop_held(struct run *r)
{
	for (int i = 0; i < r->nheld; i++)
		job_free(r->held[i].job);
	r->nheld = 0;
}

static void sender_stop(struct run *r, const struct smtp_result *res, int streak)
{
	const char *url = r->cfg->smtp.url;
	drop_held(r);
	if (r->stop == STOP_FATAL)
		return;
	if (streak)
		set_err(r->err, r->errlen, EX_UNAVAILABLE,
			"%s: the first %d readers were all refused with %d %s and none was accepted (last: %s): that is the relay refusing herald, not %d bad addresses; nobody was marked as bounced. Check the relay's restrictions for this host and sender (smtp.username, `from`); if these addresses really are gone, set their status in the list",
			url, SENDER_STREAK, res->code, res->status, res->text, SENDER_STREAK);
	else
		set_err(r->err, r->errlen, EX_UNAVAILABLE, "%s: %s%s%s%s", url, res->text,
			res->hint[0] ? " — " : "", res->hint,
			res->stage >= SMTP_STAGE_RCPT ? "; nobody was marked as bounced" : "");
	fail(r, STOP_FATAL, EX_UNAVAILABLE);
}

/* A permanent refusal: a bounce, or held back while the run has not
 * seen an acceptance yet. */
static void refused(struct run *r, struct job *j, const struct smtp_result *res)
{
	r->conn_failures = 0;
	if (r->stop == STOP_FATAL) {
		job_free(j); /* the relay's problem: not blamed now */
		return;
	}
	if (r->st->sent) {
		bounce_hard(r, j, res);
		return;
	}
	if (r->nheld && (r->held[0].res.code != res->code ||
			 strcmp(r->held[0].res.status, res->status)))
		flush_held(r);
	r->held[r->nheld].job = j;
	r->held[r->nheld].res = *res;
	if (++r->nheld == SENDER_STREAK && r->stop != STOP_FATAL)
		sender_stop(r, res, 1);
	else if (r->nheld == SENDER_STREAK)
		flush_held(r);
}

/* The outcome of one transaction: journal, bounce log or retry queue.
 * Takes ownership of the job. */
static void record(struct run *r, struct job *j, const struct smtp_result *res)
{
	struct delivery_stats *st = r->st;
	const struct config *c = r->cfg;
	time_t now = time(NULL);
	buf_free(&j->wire);
	if (res->cls != SMTP_NOT_TRIED && res->cls != SMTP_CONN)
		r->reconnects = 0;
	switch (res->cls) {
	case SMTP_OK:
		st->sent++;
		r->conn_failures = 0;
		r->uncertain_row = 0;
		flush_held(r);
		/* Over SMTP the connection's thread wrote the journal line
		 * already (on_accept); a dry run has no journal. */
		if (r->have_journal && journal_error(&r->journal, r->err, r->errlen) < 0)
			fail(r, STOP_STATE, EX_CANTCREAT);
		job_free(j);
		return;
	case SMTP_UNCERTAIN:
		st->uncertain++;
		warn(r, "%s: %s; recorded as uncertain and not sent again (send --retry-uncertain sends it again)",
		     j->email, res->text);
		if (r->have_journal && journal_error(&r->journal, r->err, r->errlen) < 0)
			fail(r, STOP_STATE, EX_CANTCREAT);
		/* A relay that takes every message and never answers its dot
		 * would otherwise mark the whole list uncertain. */
		if (++r->uncertain_row >= r->st->connections + 2 && r->stop == GO) {
			set_err(r->err, r->errlen, EX_UNAVAILABLE,
				"%s: %d messages in a row got no reply to their final dot within smtp.timeout (%ld s); stopped. If the relay is just slow (a content filter), raise smtp.timeout",
				c->smtp.url, r->uncertain_row, c->smtp.timeout);
			fail(r, STOP_UNREACHABLE, EX_UNAVAILABLE);
		}
		job_free(j);
		return;
	case SMTP_NOT_TRIED:
		job_free(j); /* never left: stays unsent for the next run */
		return;
	case SMTP_WITHDRAWN:
		st->unsubscribed++;
		job_free(j);
		return;
	case SMTP_PERM:
		refused(r, j, res);
		return;
	case SMTP_FATAL:
		sender_stop(r, res, 0);
		job_free(j); /* not tried: stays unsent for the next run */
		return;
	case SMTP_CONN:
		if (res->stage == SMTP_STAGE_CONNECT && r->stop == GO) {
			/* The server, not this reader: the reader waits, the
			 * connection is what gets retried (reconnect()). */
			if (!r->trouble)
				r->trouble_res = *res;
			r->trouble = 1;
			j->ready = 0;
			if (enqueue(r, j) == 0)
				return;
			set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
			fail(r, STOP_STATE, EX_SOFTWARE);
			job_free(j);
			return;
		}
		break;
	case SMTP_TEMP:
		break;
	}
	if (res->cls == SMTP_CONN)
		r->conn_failures++;
	j->attempts++;
	/* Stop taking new readers when the server is plainly gone; what is
	 * not tried stays unsent for the next run. */
	if (r->conn_failures >= 3 * r->st->connections + c->retry.attempts && r->stop == GO) {
		set_err(r->err, r->errlen, EX_UNAVAILABLE, "%s: %s", c->smtp.url, res->text);
		fail(r, STOP_UNREACHABLE, EX_UNAVAILABLE);
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
	st->deferred++;
	warn(r, "%s: deferred after %d attempt%s: %s", j->email, j->attempts,
	     j->attempts == 1 ? "" : "s", res->text);
	/* Only a 4xx about this recipient is a soft bounce; a dead
	 * connection, or a 4xx about the sending side, says nothing about
	 * the address. */
	if (res->cls == SMTP_TEMP && !res->sender_side && r->have_bounces &&
	    bounces_add(&r->bounces, now, j->email, BOUNCE_SOFT, res->status, res->code,
			"smtp", r->post->slug, res->text, r->err, r->errlen) < 0)
		fail(r, STOP_STATE, EX_CANTCREAT);
	job_free(j);
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

/* Whether a subscribed row is to be mailed this run. No side effects, so
 * both the loop and the end-of-run look-ahead can ask. The shard comes
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

/* Seconds until the rate limit lets the next message go, or 0. With
 * --until-quota an exhausted window ends the run instead. */
static double rate_wait(struct run *r)
{
	const char *which = NULL;
	double d = rl_delay(&r->rl, now_mono(), &which);
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
		rl_take(&r->rl, now_mono());
		r->st->attempted++;
		int rc = transport_submit(r->tx, j->info.mail_from, j->email, j->wire.p,
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

/* The server could not be reached (first: how the last connection
 * failed): retry the connection, not the readers, with the retry
 * group's delays, saying so once per attempt. `tried` attempts have
 * been made already. 0 once a probe goes through; otherwise the run is
 * stopped (69, or 75 for a signal). */
static int reconnect(struct run *r, struct smtp_result first, int tried)
{
	const struct config *c = r->cfg;
	struct smtp_result res = first;
	int attempts = c->retry.attempts < 1 ? 1 : c->retry.attempts;
	double spent = 0;
	for (int n = tried + 1; n <= attempts; n++) {
		if (n > 1) {
			double d = backoff(c, n - 1);
			char ds[32];
			fmt_secs(d, ds, sizeof ds);
			warn(r, "%s: %s; retrying in %s (attempt %d/%d)", c->smtp.url, res.text, ds,
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
		if (transport_probe(r->tx, &res) == 0) {
			r->st->reconnecting = 0;
			return 0;
		}
		if (res.cls == SMTP_FATAL)
			break;
	}
	r->st->reconnecting = 0;
	if (res.cls == SMTP_FATAL) {
		sender_stop(r, &res, 0);
		return -1;
	}
	char ds[32];
	fmt_secs(spent, ds, sizeof ds);
	set_err(r->err, r->errlen, EX_UNAVAILABLE, "%s: %s (%d attempt%s over %s)%s%s; %s", c->smtp.url,
		res.text, attempts, attempts == 1 ? "" : "s", ds, res.hint[0] ? " — " : "", res.hint,
		r->st->sent ? "the rest were not attempted: run again once it is back"
			    : "nothing was sent: run again once it is back");
	fail(r, STOP_UNREACHABLE, EX_UNAVAILABLE);
	return -1;
}

static void loop(struct run *r)
{
	double last_progress = 0;
	for (;;) {
		interrupted(r);
		/* Connections failed before MAIL: once none is busy, find out
		 * whether the server is back before handing out more. */
		if (r->trouble && r->stop == GO && !transport_busy(r->tx)) {
			r->trouble = 0;
			if (++r->reconnects > r->cfg->retry.attempts) {
				set_err(r->err, r->errlen, EX_UNAVAILABLE,
					"%s: %s; every new connection fails this way", r->cfg->smtp.url,
					r->trouble_res.text);
				fail(r, STOP_UNREACHABLE, EX_UNAVAILABLE);
			} else
				reconnect(r, r->trouble_res, 1);
		}
		int idle = transport_idle(r->tx);
		double wait = r->trouble ? 0 : fill(r, idle);
		int busy = transport_busy(r->tx);
		if (!busy && !more_work(r) && !r->trouble)
			break;
		double t = now_mono();
		if (t - last_progress > 0.1) {
			progress(r);
			last_progress = t;
		}
		if (busy) {
			transport_collect(r->tx, wait > 0 && wait < 0.5 ? wait : 0.5, on_done, r);
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

/* Seeds the hour and day windows with what earlier runs sent, so a
 * 500/day quota holds when cron starts herald every hour. */
static int seed_quota(struct run *r)
{
	const struct rate_conf *rc = &r->o->rate;
	double horizon = rc->per_day ? 86400 : rc->per_hour ? 3600 : rc->per_minute ? 60 : 0;
	if (!horizon)
		return 0;
	time_t wall = time(NULL);
	struct state_times st = {.since = wall - (time_t)horizon, .now = wall};
	if (journal_recent_times(r->cfg->state_dir, &st, r->err, r->errlen) < 0 ||
	    bounces_recent_times(r->cfg->state_dir, &st, r->err, r->errlen) < 0) {
		state_times_free(&st);
		return EX_IOERR;
	}
	state_times_sort(&st);
	double mono = now_mono();
	for (size_t i = 0; i < st.n; i++)
		st.v[i] = mono - ((double)wall - st.v[i]);
	rl_seed(&r->rl, st.v, st.n);
	state_times_free(&st);
	return 0;
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
		if (transport_dir(&r->tx, o->dry_run_dir, r->err, r->errlen) < 0)
			return EX_SOFTWARE;
	} else {
		if ((k = config_password(cfg, &r->password, r->err, r->errlen)) < 0)
			return config_exitcode(k);
		struct smtp_opts so = {
			.url = cfg->smtp.url, .starttls = cfg->smtp.starttls,
			.username = cfg->smtp.username, .password = r->password,
			.ca_file = cfg->smtp.ca_file, .timeout = cfg->smtp.timeout,
			.helo = cfg->smtp.helo ? cfg->smtp.helo : strrchr(cfg->from_addr, '@') + 1,
			.trace = o->trace, .trace_arg = o->trace_arg,
			.accept = on_accept, .accept_arg = r,
			.admit = on_admit, .admit_arg = r,
		};
		/* Unthrottled, each connection holds a second message to start
		 * the moment the first is answered; under a rate limit every
		 * message waits for its own turn. */
		const struct rate_conf *rc0 = &o->rate;
		int limited = rc0->per_second > 0 || rc0->per_minute || rc0->per_hour || rc0->per_day;
		int prc = transport_smtp(&r->tx, &so, cfg->smtp.connections, limited ? 1 : 2,
					 r->err, r->errlen);
		/* libcurl holds the password now; our copy goes at once. */
		secret_free(&r->password);
		if (prc < 0)
			return EX_CONFIG;
		r->st->connections = cfg->smtp.connections;
	}
	if (o->n_test)
		queue_tests(r);
	return r->rc;
}

/* Before the first reader: is the server there, and will it take us? */
static int first_contact(struct run *r)
{
	struct smtp_result res;
	if (transport_probe(r->tx, &res) == 0)
		return 0;
	if (res.cls == SMTP_FATAL)
		sender_stop(r, &res, 0);
	else
		reconnect(r, res, 1);
	return r->stop == GO ? 0 : -1;
}

static int outcome(struct run *r)
{
	struct delivery_stats *st = r->st;
	if (r->stop == STOP_FATAL || r->stop == STOP_UNREACHABLE)
		return EX_UNAVAILABLE;
	if (r->stop != GO)
		return r->rc;
	if (st->deferred && !st->sent && !st->bounced && r->conn_failures) {
		set_err(r->err, r->errlen, EX_UNAVAILABLE, "%s: no message could be sent",
			r->cfg->smtp.url);
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
			flush_held(&r);
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
	transport_close(r.tx);
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
