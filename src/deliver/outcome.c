/* outcome: what each smtp_result means for the reader, the relay and the
 * run. Sent (journal), uncertain (journal, never again this run), a hard
 * bounce (bounces.log), a 4xx (the retry queue, then deferred and maybe
 * a soft bounce), a connection that failed (the relay's trouble, not the
 * reader's), and the streaks that take a relay out or stop the run:
 * connection failures, unanswered dots, refusals about the sender.
 * delivery.c's loop hands every result here (outcome_done) and asks here
 * whether a relay that failed is back (reconnect). */
#include "deliver/run.h"
#include "deliver/transport.h"
#include "util/buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

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
	run_warn(r, "%s: refused: %s", j->email, res->text);
	if (r->have_bounces &&
	    bounces_add(&r->bounces, time(NULL), j->email, BOUNCE_HARD, res->status, res->code,
			"smtp", r->post->slug, res->text, r->err, r->errlen) < 0)
		run_fail(r, STOP_STATE, EX_CANTCREAT);
	run_job_free(j);
}

/* ---- the sender-side judgement --------------------------------------------
 * Is a refusal about this reader, or about us (the relay will not take
 * herald: its host, its sender, its auth)? smtp.c reads each reply and
 * says what the wording means (smtp_sender_side(): smtp_result.sender_side,
 * and a permanent refusal about the sender comes back as SMTP_FATAL).
 * What that means for the run is decided here, and only here:
 *   - SMTP_FATAL (sender_refused) stops the relay for every reader:
 *     nobody is blamed, nothing is bounced (sender_stop);
 *   - a refusal the wording rules did not see as the sender's may still
 *     be: a relay's permanent refusals are held until its first
 *     acceptance (refused), and SENDER_STREAK of them in a row with the
 *     same code and status, nothing accepted, are the relay's (the run
 *     or the relay stops, none is logged as a bounce);
 *   - a 4xx about the sending side defers the reader without a soft
 *     bounce (soft_bounce): it says nothing about the address.
 * A list whose first five readers are all truly gone (the same 5.1.1 five
 * times) is stopped too: the message names them, so the author can check. */

/* smtp.c's verdict: this refusal is about the sending side, for good. */
static int sender_refused(const struct smtp_result *res)
{
	return res->cls == SMTP_FATAL;
}

/* A 4xx that counts against the address: about this recipient, not the
 * sending side (a dead connection says nothing about it either). */
static int soft_bounce(const struct smtp_result *res)
{
	return res->cls == SMTP_TEMP && !res->sender_side;
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
			run_job_free(r->held[k][i].job);
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
	if (run_enqueue(r, j) < 0) {
		set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
		run_fail(r, STOP_STATE, EX_SOFTWARE);
		run_job_free(j);
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
		run_warn(r, "relay %s taken out of this run: %s; its readers go to the other relays",
		     rel->name, msg);
		for (int i = 0; i < r->nheld[k]; i++)
			if (!move_job(r, r->held[k][i].job))
				run_job_free(r->held[k][i].job);
		r->nheld[k] = 0;
		return;
	}
	rel->out = 1;
	set_err(r->err, r->errlen, rc, "%s", msg);
	run_fail(r, why, rc);
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
		run_job_free(j); /* the relay's problem: not blamed now */
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
		run_fail(r, STOP_STATE, EX_CANTCREAT);
	run_job_free(j);
}

static void record_uncertain(struct run *r, struct relay *rel, struct job *j,
			     const struct smtp_result *res)
{
	r->st->uncertain++;
	rel->uncertain++;
	run_warn(r, "%s: %s; recorded as uncertain and not sent again (send --retry-uncertain sends it again)",
	     j->email, res->text);
	if (r->have_journal && journal_error(&r->journal, r->err, r->errlen) < 0)
		run_fail(r, STOP_STATE, EX_CANTCREAT);
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
	run_job_free(j);
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
		return move_job(r, j) || (run_job_free(j), 1);
	}
	if (res->stage != SMTP_STAGE_CONNECT || r->stop != GO)
		return 0;
	/* The server, not this reader: the reader waits, the connection
	 * is what gets retried (reconnect()). */
	if (!rel->trouble)
		rel->trouble_res = *res;
	rel->trouble = 1;
	j->ready = 0;
	if (run_enqueue(r, j) == 0)
		return 1;
	set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
	run_fail(r, STOP_STATE, EX_SOFTWARE);
	run_job_free(j);
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
		j->ready = run_now() + run_backoff(c, j->attempts);
		if (run_enqueue(r, j) == 0)
			return;
		set_err(r->err, r->errlen, EX_SOFTWARE, "out of memory");
		run_fail(r, STOP_STATE, EX_SOFTWARE);
	}
	if (r->stop == STOP_SIGNAL || r->stop == STOP_STATE || r->stop == STOP_FATAL) {
		run_job_free(j); /* stopping: tried again by the next run */
		return;
	}
	r->st->deferred++;
	rel->deferred++;
	run_warn(r, "%s: deferred after %d attempt%s: %s", j->email, j->attempts,
	     j->attempts == 1 ? "" : "s", res->text);
	if (soft_bounce(res) && r->have_bounces &&
	    bounces_add(&r->bounces, time(NULL), j->email, BOUNCE_SOFT, res->status, res->code,
			"smtp", r->post->slug, res->text, r->err, r->errlen) < 0)
		run_fail(r, STOP_STATE, EX_CANTCREAT);
	run_job_free(j);
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
		run_fail(r, STOP_STATE, EX_CANTCREAT);
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
		run_warn(r, "pipelining off for %s: %s; its messages go one command at a time for the rest of this run",
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
			run_job_free(j);
		return;
	case SMTP_WITHDRAWN:
		r->st->unsubscribed++;
		run_job_free(j);
		return;
	case SMTP_PERM:
		refused(r, j, res);
		return;
	case SMTP_FATAL:
		sender_stop(r, rel, res, 0);
		if (!move_job(r, j))
			run_job_free(j); /* not tried: stays unsent for the next run */
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

void outcome_done(void *arg, void *tag, const struct smtp_result *res)
{
	record(arg, tag, res);
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
	if (sender_refused(res)) {
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
			double d = run_backoff(c, n - 1);
			char ds[32];
			fmt_secs(d, ds, sizeof ds);
			run_warn(r, "%s: %s; retrying in %s (attempt %d/%d)", rel->url, res.text, ds,
			     n, attempts);
			r->st->reconnecting = 1;
			r->st->attempt = n;
			r->st->attempts = attempts;
			run_progress(r);
			double t0 = run_now();
			int stopped = run_nap(r, d) < 0;
			spent += run_now() - t0;
			if (stopped) {
				r->st->reconnecting = 0;
				return -1;
			}
		}
		if (transport_probe(rel->tx, &res) == 0) {
			r->st->reconnecting = 0;
			return 0;
		}
		if (sender_refused(&res))
			break;
	}
	r->st->reconnecting = 0;
	if (sender_refused(&res)) {
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
int outcome_check_troubled(struct run *r)
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

/* Before the first reader: is each server there, and will it take us?
 * One that is not is taken out while another is in; the last is waited
 * for as the only relay always was. */
int outcome_first_contact(struct run *r)
{
	for (size_t i = 0; i < r->rs.n && r->stop == GO; i++) {
		struct relay *rel = &r->rs.r[i];
		struct smtp_result res;
		if (transport_probe(rel->tx, &res) == 0)
			continue;
		if (sender_refused(&res))
			sender_stop(r, rel, &res, 0);
		else
			reconnect(r, rel, res, 1, 1);
	}
	return r->stop == GO ? 0 : -1;
}

void outcome_settle(struct run *r)
{
	/* Refusals held back for the first acceptance that never came are
	 * bounces after all, unless the relay was to blame. */
	if (r->stop == STOP_FATAL)
		drop_held(r);
	else
		for (size_t i = 0; i < r->rs.n; i++)
			flush_held(r, i);
}
