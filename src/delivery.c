#include "delivery.h"
#include "bounces.h"
#include "buf.h"
#include "journal.h"
#include "message.h"
#include "ratelimit.h"
#include "smtp.h"
#include "subscribers.h"
#include <errno.h>
#include <fcntl.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* A reader's row, copied out of the stream (retry queue, --test). */
struct row {
	char **fields;
	size_t n;
	char *email, *name;
	long line;
	int attempts;
	double ready;      /* monotonic time it may be tried again */
};

struct run {
	const struct config *cfg;
	const struct post *post;
	const struct delivery_opts *o;
	const struct delivery_cb *cb;
	struct delivery_stats *st;
	struct msg_ctx msg;
	struct ratelimit rl;
	struct journal journal;
	struct bounces bounces;
	int have_journal, have_bounces, lock;
	struct smtp_conn *smtp;
	char *password;
	struct buf wire;
	struct row *queue;     /* deferred, retried when ready */
	size_t nqueue, capqueue;
	long seq;              /* dry-run file number */
	int conn_failures;     /* consecutive, with nothing delivered */
	int fatal;
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

static void warn(struct run *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
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
	r->st->elapsed = now_mono() - r->start;
	if (r->cb && r->cb->progress)
		r->cb->progress(r->cb->arg, r->st);
}

static void row_free(struct row *w)
{
	for (size_t i = 0; i < w->n; i++)
		free(w->fields[i]);
	free(w->fields);
	free(w->email);
	free(w->name);
	memset(w, 0, sizeof *w);
}

static int row_copy(struct row *w, const struct subs_row *s)
{
	memset(w, 0, sizeof *w);
	w->fields = calloc(s->nfields ? s->nfields : 1, sizeof *w->fields);
	if (!w->fields)
		return -1;
	w->n = s->nfields;
	for (size_t i = 0; i < s->nfields; i++)
		if (!(w->fields[i] = strdup(s->fields[i])))
			goto fail;
	w->email = strdup(s->email);
	w->name = strdup(s->name);
	w->line = s->line;
	if (w->email && w->name)
		return 0;
fail:
	row_free(w);
	return -1;
}

/* Backoff doubles from initial_delay up to max_delay, with +-20% jitter so
 * a crowd of deferred messages does not return in lockstep. */
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

static int enqueue(struct run *r, struct row *w)
{
	if (r->nqueue == r->capqueue) {
		size_t nc = r->capqueue ? r->capqueue * 2 : 16;
		struct row *nq = realloc(r->queue, nc * sizeof *nq);
		if (!nq)
			return -1;
		r->queue = nq;
		r->capqueue = nc;
	}
	r->queue[r->nqueue++] = *w;
	memset(w, 0, sizeof *w);
	return 0;
}

/* Index of the queued row that is ready soonest. */
static size_t soonest(const struct run *r)
{
	size_t best = 0;
	for (size_t i = 1; i < r->nqueue; i++)
		if (r->queue[i].ready < r->queue[best].ready)
			best = i;
	return best;
}

static int write_dry(struct run *r, const char *email, const char *data, size_t len)
{
	char name[400];
	char safe[330];
	size_t k = 0;
	for (const char *p = email; *p && k + 1 < sizeof safe; p++)
		safe[k++] = (*p == '/' || (unsigned char)*p < 0x21 || *p == 0x7f) ? '_' : *p;
	safe[k] = '\0';
	snprintf(name, sizeof name, "%s/%06ld-%s.eml", r->o->dry_run_dir, ++r->seq, safe);
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return set_err(r->err, r->errlen, EX_CANTCREAT, "%s: %s", name, strerror(errno));
	ssize_t w = write(fd, data, len);
	int saved = errno;
	if (close(fd) < 0 || w != (ssize_t)len)
		return set_err(r->err, r->errlen, EX_CANTCREAT, "%s: %s", name,
			       strerror(w < 0 ? saved : EIO));
	return 0;
}

static int transport(struct run *r, struct row *w, struct msg_out *info,
		     struct smtp_result *res)
{
	if (r->o->dry_run_dir) {
		memset(res, 0, sizeof *res);
		int rc = write_dry(r, w->email, r->wire.p, r->wire.len);
		if (rc)
			return rc;
		res->cls = SMTP_OK;
		res->code = 250;
		snprintf(res->text, sizeof res->text, "dry run");
		return 0;
	}
	if (!r->smtp) {
		const struct config *c = r->cfg;
		struct smtp_opts so = {
			.url = c->smtp.url, .starttls = c->smtp.starttls,
			.username = c->smtp.username, .password = r->password,
			.ca_file = c->smtp.ca_file, .timeout = c->smtp.timeout,
			.helo = c->smtp.helo ? c->smtp.helo : strrchr(c->from_addr, '@') + 1,
		};
		if (smtp_new(&r->smtp, &so, r->err, r->errlen) < 0)
			return EX_CONFIG;
	}
	smtp_send(r->smtp, info->mail_from, w->email, r->wire.p, r->wire.len, res);
	return 0;
}

static int record(struct run *r, struct row *w, const struct msg_out *info,
		  const struct smtp_result *res)
{
	struct delivery_stats *st = r->st;
	const struct config *c = r->cfg;
	time_t now = time(NULL);
	char reply[600];
	snprintf(reply, sizeof reply, "%s", res->text);
	switch (res->cls) {
	case SMTP_OK:
		st->sent++;
		r->conn_failures = 0;
		if (r->have_journal &&
		    journal_add(&r->journal, now, w->email, info->message_id, reply, r->err, r->errlen) < 0)
			return EX_CANTCREAT;
		return 0;
	case SMTP_PERM:
		st->bounced++;
		r->conn_failures = 0;
		warn(r, "%s: refused: %s", w->email, reply);
		if (r->have_bounces &&
		    bounces_add(&r->bounces, now, w->email, BOUNCE_HARD, res->status, res->code,
				"smtp", r->post->slug, reply, r->err, r->errlen) < 0)
			return EX_CANTCREAT;
		return 0;
	case SMTP_FATAL:
		r->fatal = 1;
		return set_err(r->err, r->errlen, EX_UNAVAILABLE, "%s: %s", c->smtp.url, reply);
	case SMTP_TEMP:
	case SMTP_CONN:
		break;
	}
	if (res->cls == SMTP_CONN)
		r->conn_failures++;
	w->attempts++;
	if (w->attempts < c->retry.attempts && !r->o->dry_run_dir) {
		w->ready = now_mono() + backoff(c, w->attempts);
		if (enqueue(r, w) < 0)
			return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
		return 0;
	}
	st->deferred++;
	warn(r, "%s: deferred after %d attempt%s: %s", w->email, w->attempts,
	     w->attempts == 1 ? "" : "s", reply);
	/* Only a 4xx about this recipient is a soft bounce; a dead
	 * connection says nothing about the address. */
	if (res->cls == SMTP_TEMP && r->have_bounces &&
	    bounces_add(&r->bounces, now, w->email, BOUNCE_SOFT, res->status, res->code,
			"smtp", r->post->slug, reply, r->err, r->errlen) < 0)
		return EX_CANTCREAT;
	return 0;
}

/* Builds, paces, sends and records one message. Returns 0 or an exit
 * code that ends the run. */
static int deliver(struct run *r, struct row *w)
{
	char why[256];
	struct msg_out info;
	buf_reset(&r->wire);
	int rc = msg_build(&r->msg, (const char *const *)w->fields, w->email, w->name,
			   time(NULL), &r->wire, &info, why, sizeof why);
	if (rc == MSG_BADROW) {
		warn(r, "%s:%ld: %s; skipped", r->o->subscribers, w->line, why);
		r->st->skipped++;
		return 0;
	}
	if (rc)
		return set_err(r->err, r->errlen, EX_SOFTWARE, "%s", why);
	const char *which = NULL;
	double d;
	while ((d = rl_delay(&r->rl, now_mono(), &which)) > 0) {
		r->st->limit_window = which;
		progress(r);
		double chunk = d > 0.5 ? 0.5 : d;
		sleep_for(chunk);
		r->st->waiting += chunk;
	}
	r->st->limit_window = NULL;
	rl_take(&r->rl, now_mono());
	struct smtp_result res;
	r->st->attempted++;
	if ((rc = transport(r, w, &info, &res)))
		return rc;
	rc = record(r, w, &info, &res);
	progress(r);
	return rc;
}

/* Reading the list: returns 1 with *w filled, 0 at the end, or an exit
 * code (negated) when the list breaks down mid-way. */
static int next_row(struct run *r, struct subs_reader *sr, struct row *w)
{
	struct subs_row s;
	char why[512];
	for (;;) {
		int k = subs_next(sr, &s, why, sizeof why);
		if (k == SUBS_END)
			return 0;
		if (k == SUBS_BAD) {
			warn(r, "%s; skipped", why);
			r->st->skipped++;
			continue;
		}
		if (k == SUBS_FATAL || k == SUBS_NOFILE) {
			set_err(r->err, r->errlen, EX_DATAERR, "%s", why);
			return -EX_DATAERR;
		}
		if (k == SUBS_INACTIVE) {
			r->st->inactive++;
			continue;
		}
		if (r->have_journal && !r->o->force && journal_has(&r->journal, s.email)) {
			r->st->already++;
			continue;
		}
		if (r->have_bounces && bounces_suppressed(&r->bounces, s.email)) {
			r->st->suppressed++;
			continue;
		}
		if (row_copy(w, &s) < 0) {
			set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
			return -EX_SOFTWARE;
		}
		return 1;
	}
}

static int main_loop(struct run *r, struct subs_reader *sr)
{
	int eof = 0;
	long taken = 0;
	for (;;) {
		struct row w;
		/* Stop taking new readers when the server is plainly gone;
		 * what is not tried stays unsent for the next run. */
		if (r->conn_failures >= 3 + r->cfg->retry.attempts)
			eof = 1;
		if (r->nqueue && (eof || r->queue[soonest(r)].ready <= now_mono())) {
			size_t i = soonest(r);
			sleep_for(r->queue[i].ready - now_mono());
			w = r->queue[i];
			r->queue[i] = r->queue[--r->nqueue];
		} else if (!eof && (!r->o->limit || taken < r->o->limit)) {
			int k = next_row(r, sr, &w);
			if (k < 0)
				return -k;
			if (k == 0) {
				eof = 1;
				continue;
			}
			taken++;
		} else if (!r->nqueue) {
			return 0;
		} else {
			eof = 1;
			continue;
		}
		int rc = deliver(r, &w);
		row_free(&w);
		if (rc)
			return rc;
	}
}

/* --test: the addresses given, merged with their own row when the list
 * has one, else with the first reader's fields. */
static int test_loop(struct run *r, struct subs_reader *sr)
{
	const struct delivery_opts *o = r->o;
	struct row first = {0}, *match = calloc(o->n_test, sizeof *match);
	struct subs_row s;
	char why[512];
	int k, rc = 0;
	if (!match)
		return set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	while ((k = subs_next(sr, &s, why, sizeof why)) != SUBS_END) {
		if (k == SUBS_FATAL || k == SUBS_NOFILE) {
			rc = set_err(r->err, r->errlen, EX_DATAERR, "%s", why);
			goto out;
		}
		if (k == SUBS_BAD)
			continue;
		if (!first.email && k == SUBS_ROW && row_copy(&first, &s) < 0)
			goto oom;
		for (size_t i = 0; i < o->n_test; i++)
			if (!match[i].email && !strcasecmp(o->test_to[i], s.email) &&
			    row_copy(&match[i], &s) < 0)
				goto oom;
	}
	for (size_t i = 0; i < o->n_test && !rc; i++) {
		struct row w;
		if (match[i].email) {
			w = match[i];
			memset(&match[i], 0, sizeof match[i]);
		} else {
			struct subs_row fake = {
				.fields = (const char *const *)first.fields,
				.nfields = first.n, .email = o->test_to[i],
				.name = first.email ? first.name : "", .line = first.line,
			};
			const char **empty = NULL;
			if (!first.email) {
				fake.nfields = subs_ncols(sr);
				empty = calloc(fake.nfields ? fake.nfields : 1, sizeof *empty);
				if (!empty)
					goto oom;
				for (size_t j = 0; j < fake.nfields; j++)
					empty[j] = "";
				fake.fields = empty;
			}
			int e = subs_col(sr, "email");
			/* The list's own email column must say the test
			 * address, or {{email}} in a column-driven field would
			 * leak the real reader's address. */
			const char *saved = NULL;
			if (e >= 0) {
				saved = fake.fields[e];
				((const char **)fake.fields)[e] = o->test_to[i];
			}
			int cp = row_copy(&w, &fake);
			if (e >= 0)
				((const char **)fake.fields)[e] = saved;
			free(empty);
			if (cp < 0)
				goto oom;
		}
		rc = deliver(r, &w);
		row_free(&w);
	}
	goto out;
oom:
	rc = set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
out:
	row_free(&first);
	for (size_t i = 0; i < o->n_test; i++)
		row_free(&match[i]);
	free(match);
	return rc;
}

static int mkdir_p(const char *dir, char *err, size_t errlen)
{
	return journal_mkdir(dir, err, errlen) < 0 ? EX_CANTCREAT : 0;
}

int delivery_run(const struct config *cfg, const struct post *post,
		 const struct delivery_opts *o, const struct delivery_cb *cb,
		 struct delivery_stats *st, char *err, size_t errlen)
{
	struct run r = {.cfg = cfg, .post = post, .o = o, .cb = cb, .st = st,
			.err = err, .errlen = errlen, .lock = -1};
	struct subs_reader *sr = NULL;
	const char *secret = NULL;
	int rc = 0;
	memset(st, 0, sizeof *st);
	r.start = now_mono();

	int k = subs_open(&sr, o->subscribers, err, errlen);
	if (k == SUBS_NOFILE)
		return EX_NOINPUT;
	if (k)
		return EX_DATAERR;
	if (cfg->unsub.url && strstr(cfg->unsub.url, "token") &&
	    config_secret(cfg, &secret, err, errlen) < 0) {
		rc = EX_CONFIG;
		goto out;
	}
	k = msg_init(&r.msg, cfg, post, subs_colnames(sr), subs_ncols(sr), secret,
		     o->n_test > 0, err, errlen);
	if (k < 0) {
		rc = k == MSG_NOFILE ? EX_NOINPUT : EX_DATAERR;
		goto out;
	}
	if (!o->dry_run_dir && config_password(cfg, &r.password, err, errlen) < 0) {
		rc = EX_CONFIG;
		goto out;
	}
	if (o->dry_run_dir && (rc = mkdir_p(o->dry_run_dir, err, errlen)))
		goto out;
	int real = !o->dry_run_dir && !o->n_test;
	if (real) {
		r.lock = journal_lock(cfg->state_dir, err, errlen);
		if (r.lock < 0) {
			rc = r.lock == -1 ? EX_TEMPFAIL : EX_CANTCREAT;
			goto out;
		}
		if (journal_open(&r.journal, cfg->state_dir, post->slug, err, errlen) < 0) {
			rc = EX_CANTCREAT;
			goto out;
		}
		r.have_journal = 1;
	}
	if (!o->n_test) {
		if (bounces_open(&r.bounces, cfg->state_dir, cfg->bounce.soft_limit, err, errlen) < 0) {
			rc = EX_CANTCREAT;
			goto out;
		}
		/* A dry run reads the suppression list but writes nothing. */
		r.have_bounces = 1;
	}
	if (rl_init(&r.rl, o->dry_run_dir ? &(struct rate_conf){0} : &o->rate, now_mono()) < 0) {
		rc = set_err(err, errlen, EX_SOFTWARE, "out of memory");
		goto out;
	}
	rc = o->n_test ? test_loop(&r, sr) : main_loop(&r, sr);
	if (rc == 0) {
		/* Nothing got through and the connection never worked:
		 * the server is unreachable, not the readers at fault. */
		if (st->deferred && !st->sent && !st->bounced && r.conn_failures) {
			rc = EX_UNAVAILABLE;
			set_err(err, errlen, rc, "%s: no message could be sent", cfg->smtp.url);
		} else if (st->deferred || r.nqueue)
			rc = EX_TEMPFAIL;
	} else if (rc == EX_UNAVAILABLE && st->sent)
		rc = EX_TEMPFAIL; /* partly done: a rerun finishes it */
	if (!rc && r.conn_failures && st->attempted > st->sent + st->bounced + st->deferred)
		rc = EX_TEMPFAIL;
out:
	st->done = 1;
	st->elapsed = now_mono() - r.start;
	if (sr && rc == 0 && o->limit && !o->n_test) {
		/* --limit left readers unsent: say so through the code. */
		struct row w;
		int more = next_row(&r, sr, &w);
		if (more == 1) {
			row_free(&w);
			rc = EX_TEMPFAIL;
			set_err(err, errlen, rc, "--limit %ld reached; run again to send the rest", o->limit);
		}
	}
	for (size_t i = 0; i < r.nqueue; i++)
		row_free(&r.queue[i]);
	free(r.queue);
	smtp_free(r.smtp);
	if (r.password) {
		explicit_bzero(r.password, strlen(r.password));
		free(r.password);
	}
	buf_free(&r.wire);
	rl_free(&r.rl);
	msg_free(&r.msg);
	if (r.have_journal)
		journal_close(&r.journal);
	if (r.have_bounces)
		bounces_close(&r.bounces);
	journal_unlock(r.lock);
	subs_close(sr);
	return rc;
}
