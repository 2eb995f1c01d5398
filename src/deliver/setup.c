/* setup: a send run set up and torn down. The lock first, then the
 * journal, bounces, list.log (followed for the whole run), the segment
 * and a first pass over the list, the message context, the rate limiter
 * seeded from earlier runs, and one transport per relay (or the dry-run
 * directory). The hooks the connections' threads call (on_accept,
 * on_admit) live here beside what they touch. */
#include "deliver/run.h"
#include "deliver/transport.h"
#include "util/buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

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
	if (listlog_fold_add(&r->gone, e) < 0)
		r->left_oom = 1;
}

/* Has email unsubscribed on the web? Reads what list.log gained since
 * the last look (one stat(2) when nothing did). Any thread. A list.log
 * that cannot be read stops nothing here: setup read it once already. */
int run_has_left(struct run *r, const char *email)
{
	if (!r->have_left)
		return 0;
	pthread_mutex_lock(&r->left_mu);
	char err[256];
	listlog_follow_poll(&r->left, left_entry, r, &r->state_warn, err, sizeof err);
	const struct listlog_fold_row *last = listlog_fold_get(&r->gone, email);
	int gone = last && last->action == LISTLOG_UNSUBSCRIBE;
	pthread_mutex_unlock(&r->left_mu);
	return gone;
}

static int on_admit(void *arg, void *tag)
{
	const struct job *j = tag;
	return !run_has_left(arg, j->email);
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
			run_fail(r, STOP_STATE, EX_DATAERR);
			goto out;
		}
		if (k == SUBS_BAD)
			continue;
		if (!first && k == SUBS_ROW &&
		    !(first = run_job_new(s.fields, s.nfields, s.email, s.name, s.line)))
			goto oom;
		for (size_t i = 0; i < o->n_test; i++)
			if (!match[i] && !strcasecmp(o->test_to[i], s.email) &&
			    !(match[i] = run_job_new(s.fields, s.nfields, s.email, s.name, s.line)))
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
			j = run_job_new(f, ncols, o->test_to[i], first ? first->name : "",
				    first ? first->line : 0);
			free(f);
			if (!j)
				goto oom;
		}
		j->ready = 0;
		if (run_enqueue(r, j) < 0) {
			run_job_free(j);
			goto oom;
		}
	}
	r->eof = 1;
	goto out;
oom:
	set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	run_fail(r, STOP_STATE, EX_SOFTWARE);
out:
	run_job_free(first);
	for (size_t i = 0; match && i < o->n_test; i++)
		run_job_free(match[i]);
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
	double mono = run_now();
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
		int depth = limited ? 1 : 2;
		int prc = o->transport_make
				  ? o->transport_make(o->transport_arg, &tx, &so, sc->connections,
						      depth, r->err, r->errlen)
				  : transport_smtp(&tx, &so, sc->connections, depth, r->err, r->errlen);
		/* libcurl holds the password now; our copy goes at once. */
		secret_free(&r->password);
		if (prc < 0)
			return EX_CONFIG;
		if (relays_add(&r->rs, sc, NULL, own, tx, run_now(), r->err, r->errlen) < 0)
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

/* list.log as it is now, then followed by run_has_left(). */
static int follow_left(struct run *r)
{
	if (listlog_follow_init(&r->left, r->cfg->state_dir, r->err, r->errlen) < 0)
		return EX_SOFTWARE;
	pthread_mutex_init(&r->left_mu, NULL);
	listlog_fold_init(&r->gone, 0);
	r->have_left = 1;
	if (listlog_follow_poll(&r->left, left_entry, r, &r->state_warn, r->err, r->errlen) < 0)
		return EX_IOERR;
	if (r->left_oom)
		return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	return 0;
}

int run_setup(struct run *r)
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
	if (rl_init(&r->rl, o->dry_run_dir ? &none : &o->rate, run_now()) < 0)
		return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	if (!o->dry_run_dir && !o->n_test && (rc = seed_quota(r)))
		return rc;
	if (o->dry_run_dir) {
		if (state_mkdir_as(o->dry_run_dir, "dry-run directory", r->err, r->errlen) < 0)
			return EX_CANTCREAT;
		struct transport *tx;
		if (transport_dir(&tx, o->dry_run_dir, r->err, r->errlen) < 0 ||
		    relays_add(&r->rs, NULL, o->dry_run_dir, NULL, tx, run_now(), r->err,
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

void run_teardown(struct run *r)
{
	run_job_free(r->built);
	for (size_t i = 0; i < r->nqueue; i++)
		run_job_free(r->queue[i]);
	free(r->queue);
	relay_stats(r);
	relays_close(&r->rs);
	if (r->have_rlog)
		relaylog_close(&r->rlog);
	secret_free(&r->password);
	rl_free(&r->rl);
	segment_free(&r->seg);
	msg_free(r->msg);
	if (r->have_journal)
		journal_close(&r->journal);
	if (r->have_bounces)
		bounces_close(&r->bounces);
	state_unlock(r->lock);
	subs_close(r->sr);
	if (r->have_left) {
		listlog_follow_free(&r->left);
		listlog_fold_free(&r->gone);
		pthread_mutex_destroy(&r->left_mu);
	}
}
