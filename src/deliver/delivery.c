/* delivery: the send loop. Takes readers from the list (or the retry
 * queue), builds their messages, paces them, hands them to the relays'
 * transports and passes each result to outcome.c. Set-up and tear-down
 * are setup.c's; the run's state is run.h's. */
#include "deliver/run.h"
#include "deliver/transport.h"
#include "util/buf.h"
#include <errno.h>
#include <gnutls/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

double run_now(void)
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
void run_warn(struct run *r, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (r->cb && r->cb->warn)
		r->cb->warn(r->cb->arg, msg);
}

void run_progress(struct run *r)
{
	struct delivery_stats *st = r->st;
	st->elapsed = run_now() - r->start;
	long handled = st->sent + st->bounced + st->deferred + st->already +
		       st->suppressed + st->uncertain + st->unsubscribed;
	st->pending = st->total > handled ? st->total - handled : 0;
	if (r->cb && r->cb->progress)
		r->cb->progress(r->cb->arg, st);
}

/* Ends the run with an exit code; the first reason wins. */
void run_fail(struct run *r, enum stop why, int rc)
{
	if (r->stop == GO || r->stop == STOP_QUOTA) {
		r->stop = why;
		r->rc = rc;
	}
	/* Messages already queued on a connection must not start either. */
	relays_halt(&r->rs);
}

void run_job_free(struct job *j)
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

struct job *run_job_new(const char *const *fields, size_t n, const char *email,
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
		run_job_free(j);
		return NULL;
	}
	return j;
}

/* Backoff doubles from initial_delay up to max_delay, with +-20% jitter so
 * a crowd of deferred messages does not come back in lockstep. */
double run_backoff(const struct config *c, int attempts)
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

int run_enqueue(struct run *r, struct job *j)
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
size_t run_soonest(const struct run *r)
{
	size_t best = 0;
	for (size_t i = 1; i < r->nqueue; i++)
		if (r->queue[i]->ready < r->queue[best]->ready)
			best = i;
	return best;
}

/* Waits until every journal line written is on disk (end of the run). */
void run_sync_journal(struct run *r)
{
	if (r->have_journal && journal_sync(&r->journal, r->err, r->errlen) < 0)
		run_fail(r, STOP_STATE, EX_CANTCREAT);
}

enum verdict { TAKE, INACTIVE, OUTSIDE, ALREADY, SUPPRESSED, LEFT, OTHER_SHARD, NOMEM };

/* Whether a subscribed row is to be mailed this run. It changes no count
 * and no verdict of another row, so both the loop and the end-of-run
 * look-ahead can ask; its one effect is run_has_left()'s poll of list.log,
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
	if (run_has_left((struct run *)r, s->email))
		return LEFT;
	return TAKE;
}

/* The next reader to try: a deferred one whose time has come, else the
 * next row of the list. NULL when there is none right now. */
static struct job *next_job(struct run *r)
{
	if (r->nqueue) {
		size_t i = run_soonest(r);
		if (r->queue[i]->ready <= run_now()) {
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
			run_warn(r, "%s; skipped", why);
			r->st->skipped++;
			continue;
		}
		if (k == SUBS_FATAL || k == SUBS_NOFILE) {
			set_err(r->err, r->errlen, EX_DATAERR, "%s", why);
			run_fail(r, STOP_STATE, EX_DATAERR);
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
				: run_job_new(s.fields, s.nfields, s.email, s.name, s.line);
		if (!j) {
			set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
			run_fail(r, STOP_STATE, EX_SOFTWARE);
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
		run_warn(r, "%s:%ld: %s; skipped", r->o->subscribers, j->line, why);
		r->st->skipped++;
		r->build_skipped++;
		return -1;
	}
	if (rc) {
		set_err(r->err, r->errlen, EX_SOFTWARE, "%s", why);
		run_fail(r, STOP_STATE, EX_SOFTWARE);
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
	double d = rl_delay(&r->rl, run_now(), &which);
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
			run_job_free(j);
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
		if (run_has_left(r, j->email)) {
			/* Since it was built: not sent (a dry run has no
			 * connection thread to ask). */
			r->st->unsubscribed++;
			run_job_free(j);
			continue;
		}
		/* Every relay's own windows full, or its connections busy:
		 * the message waits, built, for the first that frees. */
		const char *which;
		double now = run_now();
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
			run_fail(r, STOP_STATE, rc);
			run_job_free(j);
			return 0;
		}
		idle--;
	}
	/* While every connection is busy, build the next message, so the
	 * first one to free up starts again at once. */
	if (!idle && r->stop == GO)
		r->built = take_built(r);
	if (r->nqueue && r->stop == GO) {
		double d = r->queue[run_soonest(r)]->ready - run_now();
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
		run_fail(r, STOP_SIGNAL, EX_TEMPFAIL);
	}
	return 1;
}

/* Sleeps s seconds unless a signal comes first (then returns -1). */
int run_nap(struct run *r, double s)
{
	double until = run_now() + s;
	for (double left = s; left > 0; left = until - run_now()) {
		if (interrupted(r))
			return -1;
		sleep_for(left > 0.2 ? 0.2 : left);
	}
	return interrupted(r) ? -1 : 0;
}

static void loop(struct run *r)
{
	double last_progress = 0;
	for (;;) {
		interrupted(r);
		int troubled = outcome_check_troubled(r);
		int idle = relays_idle(&r->rs);
		double wait = fill(r, idle);
		int busy = relays_busy(&r->rs);
		if (!busy && !more_work(r) && !troubled)
			break;
		double t = run_now();
		if (t - last_progress > 0.1) {
			run_progress(r);
			last_progress = t;
		}
		if (busy) {
			relays_collect(&r->rs, wait > 0 && wait < 0.5 ? wait : 0.5, outcome_done, r);
		} else if (wait > 0) {
			double rest = wait > 0.5 ? 0.5 : wait;
			run_progress(r);
			if (r->st->limit_window)
				r->st->waiting += rest;
			sleep_for(rest);
		}
	}
	run_sync_journal(r);
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


int delivery_run(const struct config *cfg, const struct post *post,
		 const struct delivery_opts *o, const struct delivery_cb *cb,
		 struct delivery_stats *st, char *err, size_t errlen)
{
	struct run r = {.cfg = cfg, .post = post, .o = o, .cb = cb, .st = st,
			.err = err, .errlen = errlen, .lock = -1,
			.state_warn = {cb ? cb->warn : NULL, cb ? cb->arg : NULL}};
	memset(st, 0, sizeof *st);
	st->connections = 1;
	r.start = run_now();
	int rc = run_setup(&r);
	if (rc == 0) {
		st->started = 1;
		if (o->n_test)
			st->total = (long)r.nqueue;
		if (outcome_first_contact(&r) == 0)
			loop(&r);
		else
			run_sync_journal(&r);
		outcome_settle(&r);
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
	run_progress(&r);
	run_teardown(&r);
	return rc;
}
