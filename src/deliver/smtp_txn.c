/* smtp_txn: one transaction on an open connection, in one of three ways:
 * one command per reply (lockstep), MAIL, RCPT and DATA as one group
 * with each final dot sent with the next envelope (pipeline, RFC 2920),
 * or the envelope and BDAT LAST with the message in one write (chunked,
 * RFC 3030). Each reply is checked against the command it answers
 * (reply_fits), and a group with a reply out of turn ends pipelining for
 * the pool. */
#include "deliver/smtp_int.h"
#include "util/buf.h"
#include <stdio.h>
#include <string.h>

/* An RSET first when the last transaction left a MAIL open (t->rset
 * says so); 1 if there is one. */
static int add_rset(struct slot *c, struct txn *t)
{
	if ((t->rset = c->need_rset))
		conn_add_cmd(c, "RSET");
	c->need_rset = 0;
	return t->rset;
}

/* The SIZE parameter (RFC 1870) lets a server refuse a message too big
 * before it is sent. */
static void add_mail(struct slot *c, const struct txn *t)
{
	if (c->caps_size)
		conn_add_cmd(c, "MAIL FROM:%s SIZE=%zu", t->from, t->len);
	else
		conn_add_cmd(c, "MAIL FROM:%s", t->from);
}

/* The envelope of a group: (RSET,) MAIL, RCPT. */
static void add_envelope(struct slot *c, struct txn *t)
{
	add_rset(c, t);
	add_mail(c, t);
	conn_add_cmd(c, "RCPT TO:%s", t->to);
}

/* The message as DATA content, dot-stuffed (RFC 5321 4.5.2) and ended by
 * the dot, or after BDAT LAST as it is. herald's messages have no line
 * that starts with a dot (quoted-printable writes it as =2E, message.c):
 * the stuffing is a scan that finds nothing, kept for a message that
 * has one after all. */
static void add_content(struct slot *c, const struct txn *t, int bdat)
{
	const char *d = t->data, *end = t->data + t->len;
	int crlf = t->len >= 2 && end[-2] == '\r' && end[-1] == '\n';
	if (bdat) {
		conn_add_cmd(c, "BDAT %zu LAST", t->len + (crlf ? 0 : 2));
		conn_out_add(c, d, t->len);
	} else {
		if (d < end && *d == '.')
			conn_out_add(c, ".", 1);
		/* memchr for the line ends: vectorised, unlike memmem. */
		const char *q, *from = d;
		while ((q = memchr(from, '\n', (size_t)(end - from)))) {
			from = q + 1;
			if (from < end && *from == '.' && q > t->data && q[-1] == '\r') {
				conn_out_add(c, d, (size_t)(from - d));
				conn_out_add(c, ".", 1);
				d = from;
			}
		}
		conn_out_add(c, d, (size_t)(end - d));
	}
	if (!crlf)
		conn_out_add(c, "\r\n", 2);
	if (!bdat) {
		conn_out_add(c, ".\r\n", 3);
		c->owed++;
	}
}

static const char *const stage_name[] = {
	[SMTP_STAGE_CONNECT] = "the greeting", [SMTP_STAGE_MAIL] = "MAIL",
	[SMTP_STAGE_RCPT] = "RCPT", [SMTP_STAGE_DATA] = "DATA",
	[SMTP_STAGE_BODY] = "the final dot",
};

/* The server refused t at this stage (the reply in c->reply). */
static void txn_refused(struct slot *c, struct txn *t, enum smtp_stage st)
{
	reply_result(c, &t->result, st, 0);
	t->failed = 1;
}

/* The connection failed before t's reply at this stage came. After the
 * final dot, a timeout leaves the message maybe delivered (RFC 5321
 * 4.1.1.4, RFC 1047: a slow content filter), and so does a reply out of
 * turn (IO_PROTO: whatever the server said about the message is not
 * known to be its own): it is never sent again on its own. A connection
 * the server closed without a reply never took responsibility for it,
 * so it is retried. */
static void txn_lost(struct slot *c, struct txn *t, enum smtp_stage st, enum io e)
{
	if (t->failed && e != IO_PROTO)
		return;
	struct smtp_result *r = &t->result;
	memset(r, 0, sizeof *r);
	r->stage = st;
	r->cls = SMTP_CONN;
	r->out_of_turn = e == IO_PROTO;
	long tmo = c->pool->timeout;
	if (st == SMTP_STAGE_BODY && e == IO_TIMEOUT) {
		r->cls = SMTP_UNCERTAIN;
		reply_set_text(r, "no reply to the final dot within %ld s: the server may have the message", tmo);
	} else if (st == SMTP_STAGE_BODY && e == IO_PROTO) {
		r->cls = SMTP_UNCERTAIN;
		reply_set_text(r, "a reply out of turn after the message went out (%s): the server may have the message",
			 c->proto_why);
	} else if (e == IO_PROTO)
		reply_set_text(r, "a reply out of turn before the message went out (%s)", c->proto_why);
	else if (e == IO_TIMEOUT)
		reply_set_text(r, "timed out waiting %ld s for the reply to %s", tmo, stage_name[st]);
	else
		reply_set_text(r, "the connection was lost before the reply to %s (%s)", stage_name[st],
			 c->errbuf[0] ? c->errbuf : "no reason given");
	t->failed = 1;
}

/* The server took t (the reply in c->reply). */
static void txn_ok(struct slot *c, struct txn *t)
{
	reply_result(c, &t->result, SMTP_STAGE_BODY, 1);
}

/* Reads the reply to one command of t (`what`, for messages). 1 on a 2xx
 * (or `want`), 0 when refused (t->failed), -1 when the connection is gone
 * or must go (a 421, no reply, or a reply that cannot answer the command:
 * c->proto; t->failed, *e set). A transaction that failed already keeps
 * its first result, and later replies are only read. */
static int expect(struct slot *c, struct txn *t, enum smtp_stage st, int want, const char *what,
		  enum io *e)
{
	*e = IO_OK;
	int code = reply_read(c, e);
	if (code && !reply_fits(code, want, t->failed)) {
		snprintf(c->errbuf, sizeof c->errbuf, "%d as the reply to %s%s", code, what,
			 t->failed ? " after its transaction was refused" : ", which it cannot answer");
		*e = IO_PROTO;
		code = 0;
	}
	if (!code) {
		if (*e == IO_PROTO && !c->proto) {
			c->proto = 1;
			snprintf(c->proto_why, sizeof c->proto_why, "%.199s", c->errbuf);
		}
		txn_lost(c, t, st, *e);
		return -1;
	}
	if (want == 354 ? code == 354 : code >= 200 && code < 300)
		return 1;
	if (!t->failed)
		txn_refused(c, t, st);
	if (code == 421) {
		*e = IO_CLOSED;
		return -1;
	}
	return 0;
}

/* After the final dot or BDAT LAST: t's outcome. 1 if the connection
 * can carry another message. */
static int expect_end(struct slot *c, struct txn *t, const char *what)
{
	enum io e;
	int k = expect(c, t, SMTP_STAGE_BODY, 250, what, &e);
	if (k == 1 && !t->failed)
		txn_ok(c, t);
	return k >= 0;
}

/* The reply to an RSET before t. A refused RSET leaves the server in a
 * state herald does not know: that connection carries nothing more, and
 * t is tried again on another (the refusal is not about its reader). */
static int expect_rset(struct slot *c, struct txn *t)
{
	enum io e;
	int k = expect(c, t, SMTP_STAGE_MAIL, 250, "RSET", &e);
	if (k == 0) {
		snprintf(c->errbuf, sizeof c->errbuf, "RSET refused: %.200s", buf_cstr(&c->reply));
		t->failed = 0;
		txn_lost(c, t, SMTP_STAGE_MAIL, IO_ERROR);
	}
	return k == 1;
}

/* The replies to t's envelope: RSET (if it began with one), MAIL, RCPT.
 * 1 if the connection is still good (t may have failed), 0 if not. */
static int expect_envelope(struct slot *c, struct txn *t, enum io sent)
{
	enum io e = sent;
	if (sent != IO_OK) {
		txn_lost(c, t, SMTP_STAGE_MAIL, sent);
		return 0;
	}
	if (t->rset && !expect_rset(c, t))
		return 0;
	int k = expect(c, t, SMTP_STAGE_MAIL, 250, "MAIL", &e);
	if (k < 0)
		return 0;
	t->mail_ok = k == 1;
	return expect(c, t, SMTP_STAGE_RCPT, 250, "RCPT", &e) >= 0;
}

/* Lockstep: what c->out holds goes, and the one reply to it is read:
 * expect's answer, or -1 when it could not go (t lost at st). */
static int step(struct slot *c, struct txn *t, enum smtp_stage st, int want, const char *what)
{
	enum io e = conn_flush(c);
	if (e) {
		txn_lost(c, t, st, e);
		return -1;
	}
	return expect(c, t, st, want, what, &e);
}

/* Without PIPELINING: each command waits for its reply, and a refusal
 * ends the transaction there. 1 if the connection can go on. */
int txn_lockstep(struct slot *c, struct txn *t)
{
	enum io e;
	if (add_rset(c, t)) {
		if ((e = conn_flush(c))) {
			txn_lost(c, t, SMTP_STAGE_MAIL, e);
			return 0;
		}
		if (!expect_rset(c, t))
			return 0;
	}
	add_mail(c, t);
	int k = step(c, t, SMTP_STAGE_MAIL, 250, "MAIL");
	if (k != 1)
		return k == 0;
	c->need_rset = 1;
	conn_add_cmd(c, "RCPT TO:%s", t->to);
	if ((k = step(c, t, SMTP_STAGE_RCPT, 250, "RCPT")) != 1)
		return k == 0;
	if (!c->caps_chunk) {
		conn_add_cmd(c, "DATA");
		if ((k = step(c, t, SMTP_STAGE_DATA, 354, "DATA")) != 1)
			return k == 0;
	}
	add_content(c, t, c->caps_chunk);
	if ((e = conn_flush(c))) {
		txn_lost(c, t, SMTP_STAGE_BODY, IO_CLOSED);
		return 0;
	}
	k = expect_end(c, t, c->caps_chunk ? "BDAT" : "the final dot");
	/* After the final dot the transaction is over whatever the reply;
	 * a refused BDAT LAST leaves it open (RFC 3030 4.2). */
	c->need_rset = c->caps_chunk && t->failed;
	return k;
}

/* t's content went out in a group with a reply out of turn: whatever
 * the server said about it may have been another command's reply. */
static void txn_untrusted(struct slot *c, struct txn *t)
{
	t->failed = 1;
	txn_lost(c, t, SMTP_STAGE_BODY, IO_PROTO);
}

/* PIPELINING with CHUNKING: MAIL, RCPT and BDAT LAST with the message in
 * one write, three replies. The next message goes only after this one's
 * outcome is recorded. */
int txn_chunked(struct slot *c, struct txn *t)
{
	add_envelope(c, t);
	add_content(c, t, 1);
	c->proto = 0;
	enum io e = conn_flush(c);
	int ok = expect_envelope(c, t, e) && expect_end(c, t, "BDAT");
	if (c->proto) {
		/* The message went out with its envelope. */
		pool_pipelining_off(c);
		txn_untrusted(c, t);
		return 0;
	}
	/* The BDAT that followed a refused RCPT is refused too, and the
	 * transaction stays open. */
	c->need_rset = t->failed && t->mail_ok;
	return ok;
}

/* PIPELINING without CHUNKING, from t on: each write carries one
 * message's content and final dot and the next one's envelope and DATA
 * (RFC 2920 allows both in one group), so a message costs one round
 * trip. The group's replies come as [dot, (RSET,) MAIL, RCPT, DATA], and
 * the message whose dot is in it is finished only once all of them are
 * read and each could answer its command: a refusal of the dot that the
 * server sends after the next envelope's 250, 250, 354 shows as a 354
 * where RCPT's reply is due, and then none of the group's replies is
 * known to be its own (the dot's "250" was MAIL's). That message is then
 * uncertain, the envelope behind it (no content sent) comes back in
 * *redo for a fresh connection, and the pool stops pipelining.
 * Returns when nothing is on the wire; 0 if the connection must go. */
int txn_pipeline(struct slot *c, struct txn *t, struct txn **redo)
{
	struct txn *content = NULL, *env = t;
	for (;;) {
		if (content)
			add_content(c, content, 0);
		if (env) {
			add_envelope(c, env);
			conn_add_cmd(c, "DATA");
		}
		c->proto = 0;
		enum io e = conn_flush(c);
		int alive = e == IO_OK;
		if (content) {
			if (alive)
				alive = expect_end(c, content, "the final dot");
			else
				txn_lost(c, content, SMTP_STAGE_BODY, IO_CLOSED);
		}
		if (env) {
			alive = alive && expect_envelope(c, env, e);
			int k = alive ? expect(c, env, SMTP_STAGE_DATA, 354, "DATA", &e) : -1;
			if (k < 0) {
				alive = 0;
				txn_lost(c, env, SMTP_STAGE_MAIL, e ? e : IO_CLOSED);
			}
			c->need_rset = env->failed && env->mail_ok;
		}
		if (c->proto) {
			alive = 0;
			pool_pipelining_off(c);
			if (content)
				txn_untrusted(c, content);
			*redo = env;
			env = NULL;
		}
		if (content)
			pool_finish(c, content);
		content = NULL;
		if (env && env->failed)
			pool_finish(c, env);
		else
			content = env;
		env = NULL;
		if (!alive || !content)
			return alive;
		env = pool_take(c, 0, content == &c->wire[0] ? &c->wire[1] : &c->wire[0]);
	}
}
