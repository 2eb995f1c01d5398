/* smtp: the SMTP transport's pool (smtp.h): one worker thread per
 * connection, each with its queue; what they hand back; halting. The
 * connection, the replies and the transactions are smtp_conn.c,
 * smtp_reply.c and smtp_txn.c (smtp_int.h). */
#include "deliver/smtp_int.h"
#include "util/addr.h"
#include "util/buf.h"
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A reply out of turn on a pipelined connection: this server's replies
 * cannot be matched to commands sent ahead of them, so every connection
 * of the pool goes one command at a time for the rest of the run. */
void pool_pipelining_off(struct slot *c)
{
	struct smtp_pool *p = c->pool;
	pthread_mutex_lock(&p->mu);
	if (!p->nopipe)
		snprintf(p->nopipe_why, sizeof p->nopipe_why, "%s", c->proto_why);
	p->nopipe = 1;
	pthread_mutex_unlock(&p->mu);
}

int pool_pipelining_on(struct smtp_pool *p)
{
	pthread_mutex_lock(&p->mu);
	int on = !p->nopipe;
	pthread_mutex_unlock(&p->mu);
	return on;
}

/* The outcome of t goes to the main thread: recorded (the journal line,
 * smtp_opts.accept) before this connection sends another message. */
void pool_finish(struct slot *c, struct txn *t)
{
	struct smtp_pool *p = c->pool;
	int halt = (t->result.cls == SMTP_OK || t->result.cls == SMTP_UNCERTAIN) && p->accept &&
		   p->accept(p->accept_arg, t->tag, &t->result) != 0;
	/* A refusal of the sender or the session holds for every message:
	 * the next one is not sent on this connection or any other while
	 * the main thread is still to hear of it (the connection is kept,
	 * and with PIPELINING the next envelope would go at once). */
	halt |= t->result.cls == SMTP_FATAL;
	pthread_mutex_lock(&p->mu);
	if (halt)
		p->halted = 1;
	/* The first result after pipelining went off tells the main thread. */
	if (p->nopipe && !p->nopipe_told) {
		snprintf(t->result.pipelining_off, sizeof t->result.pipelining_off, "%s",
			 p->nopipe_why);
		p->nopipe_told = 1;
	}
	c->done[c->ndone++] = *t;
	pthread_cond_signal(&p->done);
	pthread_mutex_unlock(&p->mu);
}

static void finish_as(struct slot *c, struct txn *t, enum smtp_class cls, const char *text)
{
	memset(&t->result, 0, sizeof t->result);
	t->result.cls = cls;
	snprintf(t->result.text, sizeof t->result.text, "%s", text);
	pool_finish(c, t);
}

/* The next transaction for this connection, into `into`: NULL when there
 * is none (and wait is 0) or the pool is closing. A halted pool's queue
 * comes back not tried; a reader admit() refuses comes back withdrawn:
 * nothing of either is on the wire. */
struct txn *pool_take(struct slot *c, int wait, struct txn *into)
{
	struct smtp_pool *p = c->pool;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (wait && !c->qlen && !p->quit)
			pthread_cond_wait(&c->work, &p->mu);
		if (p->quit || !c->qlen) {
			pthread_mutex_unlock(&p->mu);
			return NULL;
		}
		*into = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % DEPTH_MAX;
		c->qlen--;
		into->failed = into->mail_ok = into->rset = 0;
		int halted = p->halted;
		pthread_mutex_unlock(&p->mu);
		if (halted)
			finish_as(c, into, SMTP_NOT_TRIED, "not started");
		else if (p->admit && !p->admit(p->admit_arg, into->tag))
			finish_as(c, into, SMTP_WITHDRAWN, "not started: unsubscribed");
		else
			return into;
		pthread_mutex_lock(&p->mu);
	}
}

/* t once more, as pool_take() would hand it over: back not tried when the
 * pool has halted or is closing since, withdrawn when admit() says no;
 * else t, cleared for its new start. */
static struct txn *retake(struct slot *c, struct txn *t)
{
	struct smtp_pool *p = c->pool;
	t->failed = t->mail_ok = t->rset = 0;
	memset(&t->result, 0, sizeof t->result);
	pthread_mutex_lock(&p->mu);
	int stop = p->halted || p->quit;
	pthread_mutex_unlock(&p->mu);
	if (stop)
		finish_as(c, t, SMTP_NOT_TRIED, "not started");
	else if (p->admit && !p->admit(p->admit_arg, t->tag))
		finish_as(c, t, SMTP_WITHDRAWN, "not started: unsubscribed");
	else
		return t;
	return NULL;
}

static void *worker(void *arg)
{
	struct slot *c = arg;
	struct txn *t;
	while ((t = pool_take(c, 1, &c->wire[0]))) {
		while (t) {
			if (c->curl && conn_stale(c))
				conn_close(c, 0);
			if (!c->curl && conn_open(c, &t->result) < 0) {
				pool_finish(c, t);
				break;
			}
			struct txn *redo = NULL;
			int pipe = c->caps_pipe && pool_pipelining_on(c->pool);
			int alive = !pipe ? txn_lockstep(c, t)
				  : c->caps_chunk ? txn_chunked(c, t) : txn_pipeline(c, t, &redo);
			if (!pipe || c->caps_chunk)
				pool_finish(c, t);
			if (!alive)
				conn_close(c, 0);
			/* An envelope a reply out of turn left without content
			 * goes again, on a new connection, one command at a time:
			 * a new start, so asked again as pool_take() asks. */
			t = redo ? retake(c, redo) : NULL;
		}
	}
	conn_close(c, 1);
	return NULL;
}

/* Host and port of the URL (curl's parser, so they are read the way the
 * transfer will read them). */
static int url_host_port(const char *url, char *host, size_t hostlen, int *port)
{
	CURLU *u = curl_url();
	char *h = NULL, *pt = NULL;
	int ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
		 curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK &&
		 curl_url_get(u, CURLUPART_PORT, &pt, CURLU_DEFAULT_PORT) == CURLUE_OK;
	if (ok) {
		snprintf(host, hostlen, "%s", h);
		*port = atoi(pt);
	}
	curl_free(h);
	curl_free(pt);
	curl_url_cleanup(u);
	return ok ? 0 : -1;
}

int smtp_pool_new(struct smtp_pool **out, const struct smtp_opts *o,
		  int connections, int depth, char *err, size_t errlen)
{
	char host[256], pin[1024] = "";
	int port = 0;
	if (url_host_port(o->url, host, sizeof host, &port) < 0)
		return set_err(err, errlen, -1, "smtp.url = \"%s\": not a URL curl can read", o->url);
	/* A name that does not resolve is not loopback; the connection
	 * then reports the lookup failure itself. */
	int loop = addr_host_is_loopback(host, port, pin, sizeof pin, NULL, 0) == 1;
	int implicit = !strncmp(o->url, "smtps://", 8);
	if (o->username && !implicit && !loop && o->starttls != STARTTLS_REQUIRED)
		return set_err(err, errlen, -1,
			       "smtp.username is set for a remote server: set smtp.starttls = \"required\" (or use smtps://), AUTH is never sent in clear");
	if (connections < 1)
		connections = 1;
	struct smtp_pool *p = calloc(1, sizeof *p);
	if (!p)
		return set_err(err, errlen, -1, "out of memory");
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->done, &ca);
	pthread_condattr_destroy(&ca);
	p->n = connections;
	p->depth = depth < 1 ? 1 : depth > DEPTH_MAX - 1 ? DEPTH_MAX - 1 : depth;
	p->loopback = loop;
	p->implicit = implicit;
	p->starttls = o->starttls;
	p->timeout = o->timeout;
	p->accept = o->accept;
	p->accept_arg = o->accept_arg;
	p->admit = o->admit;
	p->admit_arg = o->admit_arg;
	/* smtp.pipelining = false: nothing to tell, the author asked. */
	p->nopipe = p->nopipe_told = o->no_pipelining;
	p->slots = calloc((size_t)connections, sizeof *p->slots);
	/* The EHLO name rides in the URL path (smtp://host:port/name). */
	const char *path = strchr(strstr(o->url, "://") + 3, '/');
	if (path || !o->helo)
		p->url = strdup(o->url);
	else if (asprintf(&p->url, "%s/%s", o->url, o->helo) < 0)
		p->url = NULL;
	int oom = !p->slots || !p->url ||
		  (o->password && !(p->password = strdup(o->password))) ||
		  (o->username && !(p->username = strdup(o->username))) ||
		  (o->ca_file && !(p->ca_file = strdup(o->ca_file))) ||
		  (*pin && !(p->pin = curl_slist_append(NULL, pin)));
	if (oom) {
		smtp_pool_free(p);
		return set_err(err, errlen, -1, "out of memory");
	}
	p->trace = o->trace;
	p->trace_arg = o->trace_arg;
	/* The probe's template handle holds the password for later probes
	 * (libcurl's own copy, as the connections' handles do). */
	if (conn_slot_init(p, &p->probe) < 0) {
		smtp_pool_free(p);
		return set_err(err, errlen, -1, "cannot start libcurl");
	}
	for (int i = 0; i < connections; i++) {
		struct slot *c = &p->slots[i];
		c->id = i + 1;
		pthread_cond_init(&c->work, NULL);
		if (conn_slot_init(p, c) < 0) {
			smtp_pool_free(p);
			return set_err(err, errlen, -1, "cannot start libcurl");
		}
		if (pthread_create(&c->thread, NULL, worker, c) != 0) {
			smtp_pool_free(p);
			return set_err(err, errlen, -1, "cannot start a connection thread");
		}
		c->started = 1;
	}
	/* libcurl keeps its own copy: ours need not outlive the setup. */
	secret_free(&p->password);
	*out = p;
	return 0;
}

int smtp_pool_probe(struct smtp_pool *p, struct smtp_result *r)
{
	struct slot *c = &p->probe;
	if (conn_open(c, r) < 0) {
		p->size_max = 0;
		return -1;
	}
	p->size_max = c->caps_size;
	p->pipelining = c->caps_pipe && pool_pipelining_on(p);
	conn_close(c, 1);
	return 0;
}

long smtp_pool_size_max(const struct smtp_pool *p)
{
	return p->size_max;
}

void smtp_pool_halt(struct smtp_pool *p)
{
	pthread_mutex_lock(&p->mu);
	p->halted = 1;
	for (int i = 0; i < p->n; i++)
		pthread_cond_signal(&p->slots[i].work);
	pthread_mutex_unlock(&p->mu);
}

/* A pipelining connection holds one more: the message whose envelope
 * goes out with the last one's content. Under a rate limit (depth 1)
 * each message still waits for its own turn. */
static int depth_of(const struct smtp_pool *p)
{
	return p->depth + (p->depth > 1 && p->pipelining);
}

int smtp_pool_idle(const struct smtp_pool *p)
{
	/* Below 0 for a while when pipelining went off with the pool full. */
	int idle = p->n * depth_of(p) - p->busy;
	return idle > 0 ? idle : 0;
}

int smtp_pool_busy(const struct smtp_pool *p)
{
	return p->busy;
}

int smtp_pool_start(struct smtp_pool *p, const char *mail_from,
		    const char *rcpt, const char *data, size_t len, void *tag)
{
	/* The least loaded connection: an idle one before a busy one. */
	struct slot *c = NULL;
	for (int i = 0; i < p->n; i++)
		if (p->slots[i].inflight < depth_of(p) &&
		    (!c || p->slots[i].inflight < c->inflight))
			c = &p->slots[i];
	if (!c)
		return -1;
	pthread_mutex_lock(&p->mu);
	struct txn *t = &c->queue[(c->qhead + c->qlen) % DEPTH_MAX];
	snprintf(t->from, sizeof t->from, "<%s>", mail_from);
	snprintf(t->to, sizeof t->to, "<%s>", rcpt);
	t->data = data;
	t->len = len;
	t->tag = tag;
	c->qlen++;
	pthread_cond_signal(&c->work);
	pthread_mutex_unlock(&p->mu);
	c->inflight++;
	p->busy++;
	return 0;
}

int smtp_pool_run(struct smtp_pool *p, double timeout, smtp_done_fn done, void *arg)
{
	/* Nanosecond deadlines: the rate limiter's waits land on time. */
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	long long ns = until.tv_nsec + (long long)(timeout * 1e9);
	until.tv_sec += (time_t)(ns / 1000000000LL);
	until.tv_nsec = (long)(ns % 1000000000LL);
	struct txn got[64 * DEPTH_MAX];
	struct slot *from[64 * DEPTH_MAX];
	int n = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (int i = 0; i < p->n; i++) {
			struct slot *c = &p->slots[i];
			for (int k = 0; k < c->ndone && n < (int)(sizeof got / sizeof *got); k++) {
				from[n] = c;
				got[n++] = c->done[k];
			}
			c->ndone = 0;
		}
		/* A connection found replies out of turn: the others hold
		 * one message fewer from now on (depth_of). */
		if (p->nopipe)
			p->pipelining = 0;
		if (n || !p->busy)
			break;
		if (pthread_cond_timedwait(&p->done, &p->mu, &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&p->mu);
	/* Results are handed over outside the lock: done() may start the
	 * next transaction. */
	for (int i = 0; i < n; i++) {
		from[i]->inflight--;
		p->busy--;
		done(arg, got[i].tag, &got[i].result);
	}
	return n;
}

void smtp_pool_free(struct smtp_pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	p->quit = 1;
	for (int i = 0; p->slots && i < p->n; i++)
		pthread_cond_signal(&p->slots[i].work);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; p->slots && i < p->n; i++) {
		struct slot *c = &p->slots[i];
		/* A worker in the middle of a transfer finishes it first
		 * (bounded by the timeouts); its result is dropped, and the
		 * reader, not in the journal, is sent by the next run. */
		if (c->started)
			pthread_join(c->thread, NULL);
		conn_slot_free(c);
	}
	for (int i = 0; p->slots && i < p->n; i++)
		pthread_cond_destroy(&p->slots[i].work);
	conn_slot_free(&p->probe);
	curl_slist_free_all(p->pin);
	free(p->username);
	free(p->ca_file);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->done);
	secret_free(&p->password);
	free(p->slots);
	free(p->url);
	free(p);
}
