#include "deliver/smtp.h"
#include "util/addr.h"
#include "util/buf.h"
#include <ctype.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One connection: an easy handle (which keeps its connection open from one
 * transfer to the next) driven by its own thread. libcurl's SMTP code
 * blocks in its "done" step until the server answers the final dot, even
 * under the multi interface, so only a thread per connection lets N
 * connections wait for their replies at the same time. The main thread
 * builds messages, paces them and records results; workers only talk SMTP.
 * Each connection takes up to `depth` transactions, so with depth 2 it
 * starts the next message the moment the last one is answered. */
struct txn {
	char from[600], to[600];
	const char *data;
	size_t len;
	void *tag;
	struct smtp_result result;
};

#define DEPTH_MAX 2

struct slot {
	struct smtp_pool *pool;
	CURL *curl;
	pthread_t thread;
	int started;
	/* Guarded by pool->mu: */
	pthread_cond_t work;          /* this worker's wake-up, so handing one
					 connection a message wakes one thread */
	struct txn queue[DEPTH_MAX];  /* handed over, not yet started */
	int qhead, qlen;
	struct txn done[DEPTH_MAX];   /* finished, not yet collected */
	int ndone;
	/* Main thread only: transactions handed over and not collected. */
	int inflight;
	/* Worker thread only: */
	struct txn cur;
	char errbuf[CURL_ERROR_SIZE];
	/* The last complete server reply, kept by the debug callback:
	 * libcurl exposes the code but not the text. */
	struct buf reply, curline;
	char last_cmd[16];
	char reply_cmd[16];
	char stage_cmd[16]; /* the last command but QUIT, RSET and NOOP, which
			       curl sends after a failure: where it ended */
	int data_started;
	int body_done;  /* read_cb handed over the last byte: curl sends it
			   and the final dot next */
	int caps_auth;  /* the latest EHLO reply offered AUTH */
	long caps_size; /* ... and its SIZE limit (RFC 1870), 0 if none */
	int in_ehlo;
	struct curl_slist *rcpt;
	size_t off;
	int reconnect;
	int in_auth;    /* between AUTH and its final reply */
	int id;         /* 1-based, for the transcript */
};

struct smtp_pool {
	struct slot *slots;
	int n, depth, busy;     /* busy: transactions in flight, main only */
	char *url;
	char *password;
	struct curl_slist *pin;  /* CURLOPT_RESOLVE: the judged addresses */
	int loopback, implicit;
	enum starttls_mode starttls;
	char *username, *ca_file;
	long timeout;
	int (*accept)(void *arg, void *tag, const struct smtp_result *r);
	void *accept_arg;
	int (*admit)(void *arg, void *tag);
	void *admit_arg;
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	pthread_mutex_t mu;
	pthread_cond_t done;
	struct slot probe;      /* main thread only (smtp_pool_probe) */
	long size_max;          /* the probe's EHLO SIZE, 0 if none: main
				   thread only */
	int quit;
	int halted;   /* guarded by mu: start nothing more */
};

static size_t read_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct slot *c = ud;
	size_t n = size * nmemb;
	if (n > c->cur.len - c->off)
		n = c->cur.len - c->off;
	memcpy(ptr, c->cur.data + c->off, n);
	c->off += n;
	/* With the size known, curl asks no more once it has every byte. */
	if (c->off == c->cur.len)
		c->body_done = 1;
	return n;
}

/* -v: one transcript line per SMTP line, "> " out and "< " in, with
 * the connection's number. Nothing of an AUTH exchange but its verb and
 * mechanism is shown: the lines after it carry the credentials. */
static void trace(struct slot *c, char dir, const char *data, size_t size)
{
	const struct smtp_pool *p = c->pool;
	if (!p->trace)
		return;
	char line[600];
	while (size && (data[size - 1] == '\n' || data[size - 1] == '\r'))
		size--;
	if (dir == '>' && c->in_auth && strncasecmp(data, "AUTH", 4))
		snprintf(line, sizeof line, "%d > [redacted]", c->id);
	else if (dir == '>' && !strncasecmp(data, "AUTH ", 5)) {
		size_t mech = strcspn(data + 5, " \r\n");
		snprintf(line, sizeof line, "%d > AUTH %.*s [redacted]", c->id,
			 (int)(mech > 40 ? 40 : mech), data + 5);
	} else {
		size_t k = size > 500 ? 500 : size;
		int n = snprintf(line, sizeof line, "%d %c ", c->id, dir);
		for (size_t i = 0; i < k && n < (int)sizeof line - 1; i++)
			line[n++] = (unsigned char)data[i] < 0x20 ? '?' : data[i];
		line[n] = '\0';
	}
	p->trace(p->trace_arg, line);
}

static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *ud)
{
	struct slot *c = ud;
	if (type == CURLINFO_HEADER_OUT) {
		trace(c, '>', data, size);
		if (!strncasecmp(data, "AUTH", 4) && (size == 4 || data[4] == ' ' || data[4] == '\r'))
			c->in_auth = 1;
		/* Remember the verb only, and nothing while the AUTH exchange
		 * sends base64 credentials. */
		if (c->in_auth && strncasecmp(data, "AUTH", 4))
			return 0;
		size_t n = 0;
		while (n < size && n < sizeof c->last_cmd - 1 && isalpha((unsigned char)data[n]))
			n++;
		memcpy(c->last_cmd, data, n);
		c->last_cmd[n] = '\0';
		if (strcasecmp(c->last_cmd, "QUIT") && strcasecmp(c->last_cmd, "RSET") &&
		    strcasecmp(c->last_cmd, "NOOP"))
			memcpy(c->stage_cmd, c->last_cmd, n + 1);
		if (!strcasecmp(c->last_cmd, "DATA"))
			c->data_started = 1;
		/* Each EHLO (again after STARTTLS) states the capabilities
		 * anew. */
		if ((c->in_ehlo = !strcasecmp(c->last_cmd, "EHLO")))
			c->caps_auth = 0, c->caps_size = 0;
		return 0;
	}
	if (type != CURLINFO_HEADER_IN)
		return 0;
	trace(c, '<', data, size);
	if (c->in_ehlo && size > 8 && !strncmp(data, "250", 3) &&
	    !strncasecmp(data + 4, "AUTH", 4) && (data[8] == ' ' || data[8] == '='))
		c->caps_auth = 1;
	if (c->in_ehlo && size > 9 && !strncmp(data, "250", 3) && !strncasecmp(data + 4, "SIZE ", 5))
		c->caps_size = strtol(data + 9, NULL, 10);
	/* Lines arrive one per call: "250-..." continues, "250 ..." ends. */
	while (size && (data[size - 1] == '\n' || data[size - 1] == '\r'))
		size--;
	int more = size >= 4 && data[3] == '-';
	if (c->curline.len)
		buf_adds(&c->curline, " ");
	if (c->curline.len && size > 4)
		buf_add(&c->curline, data + 4, size - 4); /* continuation: drop "250-" */
	else if (more) {
		/* the first line of several: "550-5.2.1 x" is kept as "550 5.2.1 x" */
		buf_add(&c->curline, data, 3);
		buf_addc(&c->curline, ' ');
		buf_add(&c->curline, data + 4, size - 4);
	} else
		buf_add(&c->curline, data, size);
	if (!more) {
		if (c->in_auth && strncmp(data, "334", 3))
			c->in_auth = 0;
		/* After a failure curl says QUIT; its "221 Bye" must not
		 * hide the reply that failed. */
		if (!strcasecmp(c->last_cmd, "QUIT") && c->reply.len) {
			buf_reset(&c->curline);
			return 0;
		}
		buf_reset(&c->reply);
		buf_add(&c->reply, c->curline.p ? c->curline.p : "", c->curline.len);
		buf_reset(&c->curline);
		snprintf(c->reply_cmd, sizeof c->reply_cmd, "%s", c->last_cmd);
	}
	return 0;
}

static int slot_init(struct smtp_pool *p, struct slot *c)
{
	c->pool = p;
	if (!(c->curl = curl_easy_init()))
		return -1;
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_URL, p->url);
	if (p->pin)
		curl_easy_setopt(h, CURLOPT_RESOLVE, p->pin);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h, CURLOPT_READDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, p->timeout);
	curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT, p->timeout);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, p->timeout);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (p->ca_file && *p->ca_file) {
		/* Added to the system anchors, not instead of them. */
		curl_easy_setopt(h, CURLOPT_CAINFO, p->ca_file);
		curl_easy_setopt(h, CURLOPT_CAPATH, "/etc/ssl/certs");
	}
	if (!p->implicit) {
		long use = p->starttls == STARTTLS_REQUIRED ? CURLUSESSL_ALL
			 : p->starttls == STARTTLS_TRY ? CURLUSESSL_TRY : CURLUSESSL_NONE;
		/* With credentials, "try" must not fall back to clear text
		 * unless every address of the server is on this machine. */
		if (p->username && !p->loopback)
			use = CURLUSESSL_ALL;
		curl_easy_setopt(h, CURLOPT_USE_SSL, use);
	}
	if (p->username) {
		curl_easy_setopt(h, CURLOPT_USERNAME, p->username);
		curl_easy_setopt(h, CURLOPT_PASSWORD, p->password ? p->password : "");
	}
	return 0;
}

static void classify(struct slot *c, CURLcode cc, struct smtp_result *r);

/* One transaction on this thread's connection. */
static void transact(struct slot *c)
{
	struct txn *t = &c->cur;
	CURL *h = c->curl;
	c->rcpt = curl_slist_append(NULL, t->to);
	c->off = 0;
	c->data_started = 0;
	c->body_done = 0;
	c->errbuf[0] = '\0';
	buf_reset(&c->reply);
	buf_reset(&c->curline);
	c->reply_cmd[0] = c->last_cmd[0] = c->stage_cmd[0] = '\0';
	curl_easy_setopt(h, CURLOPT_MAIL_FROM, t->from);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, c->rcpt);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)t->len);
	/* After a failed transaction the server may still hold our MAIL
	 * state, or the connection may be gone: start on a new one. */
	curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, c->reconnect ? 1L : 0L);
	CURLcode cc = c->rcpt ? curl_easy_perform(h) : CURLE_OUT_OF_MEMORY;
	classify(c, cc, &t->result);
	curl_slist_free_all(c->rcpt);
	c->rcpt = NULL;
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, NULL);
}

static void *worker(void *arg)
{
	struct slot *c = arg;
	struct smtp_pool *p = c->pool;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!c->qlen && !p->quit)
			pthread_cond_wait(&c->work, &p->mu);
		if (p->quit)
			break;
		c->cur = c->queue[c->qhead];
		c->qhead = (c->qhead + 1) % DEPTH_MAX;
		c->qlen--;
		if (p->halted) {
			memset(&c->cur.result, 0, sizeof c->cur.result);
			c->cur.result.cls = SMTP_NOT_TRIED;
			snprintf(c->cur.result.text, sizeof c->cur.result.text, "not started");
			c->done[c->ndone++] = c->cur;
			pthread_cond_signal(&p->done);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		/* The last moment a reader who left can still be spared the
		 * message: nothing of this transaction is on the wire yet. */
		if (p->admit && !p->admit(p->admit_arg, c->cur.tag)) {
			memset(&c->cur.result, 0, sizeof c->cur.result);
			c->cur.result.cls = SMTP_WITHDRAWN;
			snprintf(c->cur.result.text, sizeof c->cur.result.text, "not started: unsubscribed");
			pthread_mutex_lock(&p->mu);
			c->done[c->ndone++] = c->cur;
			pthread_cond_signal(&p->done);
			continue;
		}
		transact(c);
		/* The caller records an acceptance (the journal line) before
		 * this connection carries anything else: a crash then can
		 * cost at most the one message in flight per connection. When
		 * it cannot, nothing more starts anywhere. */
		int halt = (c->cur.result.cls == SMTP_OK || c->cur.result.cls == SMTP_UNCERTAIN) &&
			   p->accept &&
			   p->accept(p->accept_arg, c->cur.tag, &c->cur.result) != 0;
		pthread_mutex_lock(&p->mu);
		if (halt)
			p->halted = 1;
		c->done[c->ndone++] = c->cur;
		pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
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
	p->depth = depth < 1 ? 1 : depth > DEPTH_MAX ? DEPTH_MAX : depth;
	p->loopback = loop;
	p->implicit = implicit;
	p->starttls = o->starttls;
	p->timeout = o->timeout;
	p->accept = o->accept;
	p->accept_arg = o->accept_arg;
	p->admit = o->admit;
	p->admit_arg = o->admit_arg;
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
	if (slot_init(p, &p->probe) < 0) {
		smtp_pool_free(p);
		return set_err(err, errlen, -1, "cannot start libcurl");
	}
	for (int i = 0; i < connections; i++) {
		struct slot *c = &p->slots[i];
		c->id = i + 1;
		pthread_cond_init(&c->work, NULL);
		if (slot_init(p, c) < 0) {
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
	CURL *tpl = c->curl;
	CURL *h = curl_easy_duphandle(tpl);
	if (!h) {
		memset(r, 0, sizeof *r);
		r->cls = SMTP_FATAL;
		snprintf(r->text, sizeof r->text, "out of memory");
		return -1;
	}
	c->curl = h;
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	c->errbuf[0] = '\0';
	c->caps_auth = c->in_ehlo = c->in_auth = 0;
	c->data_started = c->body_done = 0;
	c->reconnect = 0;
	buf_reset(&c->reply);
	buf_reset(&c->curline);
	c->reply_cmd[0] = c->last_cmd[0] = c->stage_cmd[0] = '\0';
	CURLcode cc = curl_easy_perform(h);
	classify(c, cc, r);
	int rc = cc == CURLE_OK ? 0 : -1;
	char *ip = NULL;
	if (!rc && p->username && !c->caps_auth) {
		rc = -1;
		r->cls = SMTP_FATAL;
		r->code = 0;
		r->status[0] = '\0';
		snprintf(r->text, sizeof r->text,
			 "smtp.username is set, but the server offers no AUTH (its EHLO reply has no AUTH line); herald will not send without the login");
		snprintf(r->hint, sizeof r->hint,
			 "unset smtp.username for a relay that needs no login, or enable AUTH on the relay (Postfix: smtpd_sasl_auth_enable = yes)");
	} else if (!rc && p->loopback && curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK &&
		   ip && !addr_ip_is_loopback(ip)) {
		/* Cannot happen with the addresses pinned; checked because a
		 * password may ride on this judgement. */
		rc = -1;
		r->cls = SMTP_FATAL;
		snprintf(r->text, sizeof r->text, "connected to %s, which is not loopback", ip);
	}
	p->size_max = rc ? 0 : c->caps_size;
	curl_easy_cleanup(h);
	c->curl = tpl;
	return rc;
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

int smtp_pool_idle(const struct smtp_pool *p)
{
	return p->n * p->depth - p->busy;
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
		if (p->slots[i].inflight < p->depth &&
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

static void parse_reply(struct smtp_result *r, const char *reply)
{
	r->code = 0;
	r->status[0] = '\0';
	if (isdigit((unsigned char)reply[0]) && isdigit((unsigned char)reply[1]) &&
	    isdigit((unsigned char)reply[2]))
		r->code = (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
	const char *s = reply + (r->code ? 3 : 0);
	while (*s == ' ' || *s == '-')
		s++;
	/* RFC 3463: class.subject.detail, class 2, 4 or 5. */
	size_t n = 0;
	if ((*s == '2' || *s == '4' || *s == '5') && s[1] == '.') {
		n = 2;
		int dots = 1, digits = 0;
		while (s[n] && (isdigit((unsigned char)s[n]) || s[n] == '.') && n < sizeof r->status - 1) {
			if (s[n] == '.')
				dots++, digits = 0;
			else
				digits++;
			n++;
		}
		if (dots != 2 || !digits || (s[n] && s[n] != ' '))
			n = 0;
	}
	memcpy(r->status, s, n);
	r->status[n] = '\0';
}

static void clean_text(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

/* The rule for "this refusal is about the sender, not the reader".
 *
 * RFC 3463 puts the subject of a status in its middle digit: X.1 and X.2
 * are about the addressee (user unknown, mailbox full), X.7 is security
 * or policy and is often about the sending side. Servers use X.7.1 for
 * both kinds, so for it the text decides. In order:
 *  1. The status names the addressee: X.1.x and X.2.x (but X.1.7 and
 *     X.1.8, the sender's address) are the reader's, whatever the text.
 *  2. The code or status names the sender by definition: 530 (RFC 4954,
 *     authentication required), X.7.8 and X.7.9 (credentials, mechanism),
 *     X.7.10, X.7.11 (encryption needed), X.7.14 (trust relationship),
 *     X.7.23 to X.7.27 (SPF, reverse DNS, DMARC and the sender's null MX:
 *     RFC 7372, RFC 7505), X.7.57 and X.7.54 (Microsoft: client not
 *     authenticated, unable to relay), X.7.7xx (Microsoft tenant limits),
 *     X.1.7, X.1.8 (the sender's address) and X.3.4 (the message is too
 *     big: every reader gets the same message).
 *  3. The text, with every <address> in it blanked (a reader's own address
 *     must not decide), names the sending side in the words Postfix,
 *     Exim, Sendmail, qmail, Gmail and Microsoft use: "Relay access
 *     denied", "relay not permitted", "Client host rejected", "Sender
 *     address rejected", "Authentication required", "your IP", "blocked
 *     using", "rcpthosts", "Must issue a STARTTLS command first", ...
 * Anything else is the reader's. What no rule catches, the delivery loop
 * still catches: the same refusal to the first readers of a run with
 * nothing accepted (delivery.c, SENDER_STREAK). */
enum side { SIDE_READER, SIDE_AUTH, SIDE_RELAY, SIDE_CLIENT, SIDE_SENDER, SIDE_DOMAIN,
	    SIDE_TLS, SIDE_SIZE };

static enum side side_of(int code, const char *status, const char *text)
{
	int subj = -1, detail = -1;
	if (*status)
		sscanf(status, "%*d.%d.%d", &subj, &detail);
	if ((subj == 1 && detail != 7 && detail != 8) || subj == 2)
		return SIDE_READER;
	if (code == 530)
		return strcasestr(text, "starttls") || strcasestr(text, "tls") ? SIDE_TLS : SIDE_AUTH;
	if (subj == 7) {
		if (detail == 8 || detail == 9 || detail == 57)
			return SIDE_AUTH;
		if (detail == 10 || detail == 11)
			return SIDE_TLS;
		if (detail == 54)
			return SIDE_RELAY;
		if (detail == 14 || detail == 25 || (detail >= 700 && detail < 800))
			return SIDE_CLIENT;
		if (detail == 23 || detail == 24 || detail == 26)
			return SIDE_DOMAIN;
		if (detail == 27)
			return SIDE_SENDER;
	}
	if (subj == 1)
		return SIDE_SENDER;
	if (subj == 3 && detail == 4)
		return SIDE_SIZE;
	char t[512];
	size_t k = 0;
	for (int depth = 0; *text && k + 1 < sizeof t; text++) {
		if (*text == '<')
			depth++;
		t[k++] = depth ? ' ' : *text;
		if (*text == '>' && depth)
			depth--;
	}
	t[k] = '\0';
	static const struct { const char *words; enum side side; } say[] = {
		{"starttls", SIDE_TLS}, {"encryption required", SIDE_TLS},
		{"authenticat", SIDE_AUTH}, {"auth required", SIDE_AUTH},
		{"login required", SIDE_AUTH},
		{"relay", SIDE_RELAY}, {"rcpthosts", SIDE_RELAY},
		{"client host", SIDE_CLIENT}, {"your ip", SIDE_CLIENT},
		{"ip address", SIDE_CLIENT}, {"blocked using", SIDE_CLIENT},
		{"listed at", SIDE_CLIENT}, {"blocklist", SIDE_CLIENT},
		{"blacklist", SIDE_CLIENT}, {"helo command rejected", SIDE_CLIENT},
		{"not authorized to send", SIDE_CLIENT}, {"reverse dns", SIDE_CLIENT},
		{"sender address rejected", SIDE_SENDER}, {"sender domain", SIDE_SENDER},
		{"sender rejected", SIDE_SENDER}, {"spf", SIDE_DOMAIN},
		{"dmarc", SIDE_DOMAIN}, {"message too big", SIDE_SIZE},
		{"message too large", SIDE_SIZE}, {"message size exceeds", SIDE_SIZE},
	};
	for (size_t i = 0; i < sizeof say / sizeof *say; i++)
		if (strcasestr(t, say[i].words))
			return say[i].side;
	return SIDE_READER;
}

int smtp_sender_side(int code, const char *status, const char *text, char *hint,
		     size_t hintlen)
{
	static const char *const fix[] = {
		[SIDE_AUTH] = "the relay wants a login: set smtp.username and its password (smtp.password_env or smtp.password_command), or check them",
		[SIDE_RELAY] = "the relay will not relay for herald: set smtp.username (and a password) if it needs a login, or allow this host in its relay restrictions (Postfix: mynetworks, smtpd_relay_restrictions)",
		[SIDE_CLIENT] = "the relay refuses this sending host: check its client restrictions (Postfix: smtpd_client_restrictions, mynetworks), or the host's address and its reputation",
		[SIDE_SENDER] = "the relay refuses the sender: check `from` and bounce.return_path (an address the relay accepts mail from)",
		[SIDE_DOMAIN] = "mail from the From domain is refused as unauthenticated: publish SPF and DMARC for it and sign with DKIM (the dkim group)",
		[SIDE_TLS] = "the relay wants TLS first: set smtp.starttls = \"required\" (or use smtps://)",
		[SIDE_SIZE] = "the message is larger than the relay takes: shrink the post (images, attachments)",
	};
	enum side sd = side_of(code, status ? status : "", text ? text : "");
	if (sd == SIDE_READER)
		return 0;
	if (hint && hintlen)
		snprintf(hint, hintlen, "%s", fix[sd]);
	return 1;
}

static enum smtp_stage stage_of(const struct slot *c, int code)
{
	const char *cmd = c->stage_cmd;
	if (!strcasecmp(cmd, "MAIL"))
		return SMTP_STAGE_MAIL;
	if (!strcasecmp(cmd, "RCPT"))
		return SMTP_STAGE_RCPT;
	if (!strcasecmp(cmd, "DATA"))
		return code == 354 || c->body_done || (c->off && code >= 400) ? SMTP_STAGE_BODY
									: SMTP_STAGE_DATA;
	return SMTP_STAGE_CONNECT;
}

static void set_text(struct smtp_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void set_text(struct smtp_result *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->text, sizeof r->text, fmt, ap);
	va_end(ap);
	clean_text(r->text);
}

/* A connection that never got as far as MAIL: say what happened in the
 * words a person uses, and what to change. */
static void connect_failure(struct slot *c, CURLcode cc, struct smtp_result *r)
{
	const struct smtp_pool *p = c->pool;
	long os = 0;
	curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os);
	const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);
	r->code = 0;
	r->status[0] = '\0';
	if (cc == CURLE_COULDNT_CONNECT && os == ECONNREFUSED) {
		set_text(r, "connection refused");
		snprintf(r->hint, sizeof r->hint, "is the server running, and is the port in smtp.url right?");
	} else if (cc == CURLE_COULDNT_CONNECT || (cc == CURLE_OPERATION_TIMEDOUT && !c->reply.len &&
		   !c->last_cmd[0] && os)) {
		set_text(r, "cannot connect: %s", os ? strerror((int)os) : why);
		snprintf(r->hint, sizeof r->hint, "check the host and port in smtp.url, and that nothing between blocks them");
	} else if (cc == CURLE_OPERATION_TIMEDOUT && !c->last_cmd[0] && !c->reply.len) {
		set_text(r, "timed out waiting %ld s for the greeting", p->timeout);
		if (!p->implicit)
			snprintf(r->hint, sizeof r->hint, "a port that speaks TLS from the first byte (465) needs smtps:// in smtp.url");
	} else if (!c->last_cmd[0] && !c->reply.len) {
		set_text(r, "the connection closed before the greeting (%s)", why);
		if (!p->implicit)
			snprintf(r->hint, sizeof r->hint, "a port that speaks TLS from the first byte (465) needs smtps:// in smtp.url");
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		set_text(r, "timed out waiting %ld s for the reply to %s", p->timeout,
			 c->stage_cmd[0] ? c->stage_cmd : "the greeting");
	} else {
		const char *reply = c->reply.len ? buf_cstr(&c->reply) : "";
		if (*reply && r->code >= 400)
			set_text(r, "%s", reply);
		else
			set_text(r, "%s", why);
	}
}

/* libcurl's failures that no retry can mend, with the fix. */
static int fatal_curl(struct slot *c, CURLcode cc, struct smtp_result *r)
{
	const struct smtp_pool *p = c->pool;
	const char *why = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);
	const char *hint = NULL;
	switch (cc) {
	case CURLE_PEER_FAILED_VERIFICATION:
		hint = p->loopback
			? "the server's certificate is not trusted: set smtp.ca_file to the certificate (or CA) it uses, or for a test server on loopback starttls = \"never\""
			: "the server's certificate is not trusted or names another host: set smtp.ca_file to the CA that signed it, and name in smtp.url the host the certificate is for";
		break;
	case CURLE_USE_SSL_FAILED:
		hint = p->loopback
			? "the server offers no STARTTLS: for a test server on loopback set smtp.starttls = \"never\"; a port that speaks TLS from the first byte (465) needs smtps://"
			: "the server offers no STARTTLS: a port that speaks TLS from the first byte (465) needs smtps://; never send a login to it in clear";
		break;
	case CURLE_SSL_CONNECT_ERROR:
		hint = p->implicit
			? "the TLS handshake failed: if this port speaks plain SMTP first (25, 587), use smtp:// in smtp.url (STARTTLS is then negotiated)"
			: "the TLS handshake failed: check smtp.ca_file and the server's TLS set-up";
		break;
	case CURLE_LOGIN_DENIED:
		hint = "check smtp.username and its password (smtp.password_env, password_command or password)";
		break;
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		hint = "smtp.ca_file must name a readable PEM certificate";
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		hint = "check the host name in smtp.url";
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		hint = "smtp.url must look like smtp://host:port or smtps://host:port";
		break;
	default:
		return 0;
	}
	r->cls = SMTP_FATAL;
	r->code = 0;
	r->status[0] = '\0';
	if (cc == CURLE_LOGIN_DENIED && c->reply.len)
		set_text(r, "login refused: %s", buf_cstr(&c->reply));
	else
		set_text(r, "%s", why);
	snprintf(r->hint, sizeof r->hint, "%s", hint);
	return 1;
}

static void classify(struct slot *c, CURLcode cc, struct smtp_result *r)
{
	long code = 0;
	memset(r, 0, sizeof *r);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
	const char *reply = c->reply.len ? buf_cstr(&c->reply) : "";
	parse_reply(r, reply);
	if (!r->code)
		r->code = (int)code;
	r->stage = stage_of(c, r->code);
	snprintf(r->text, sizeof r->text, "%s",
		 *reply ? reply : (c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc)));
	clean_text(r->text);
	c->reconnect = cc != CURLE_OK;
	if (cc == CURLE_OK) {
		r->cls = SMTP_OK;
		return;
	}
	if (fatal_curl(c, cc, r))
		return;
	/* The server said go ahead with TLS and the handshake failed: no
	 * message will do better. */
	if (!strcasecmp(c->reply_cmd, "STARTTLS") && r->code >= 200 && r->code < 300) {
		r->cls = SMTP_FATAL;
		r->code = 0;
		r->status[0] = '\0';
		set_text(r, "TLS handshake failed after STARTTLS: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
		snprintf(r->hint, sizeof r->hint, "check smtp.ca_file and the server's TLS set-up; for a test server on loopback, starttls = \"never\"");
		return;
	}
	/* The whole message and its final dot went out, the connection is
	 * still there, and the reply to the dot never came: the server may
	 * be about to take it (a slow content filter), so it may arrive; a
	 * retry could make two (RFC 5321 4.1.1.4, RFC 1047). A connection
	 * the server closed without a reply is different: it never took
	 * responsibility for the message, so it is retried. */
	if (c->body_done && r->code == 354 && cc == CURLE_OPERATION_TIMEDOUT) {
		r->cls = SMTP_UNCERTAIN;
		r->stage = SMTP_STAGE_BODY;
		r->code = 0;
		r->status[0] = '\0';
		set_text(r, "no reply to the final dot within %ld s (%s): the server may have the message",
			 c->pool->timeout, c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
		return;
	}
	if (r->stage == SMTP_STAGE_CONNECT && (r->code < 400 || r->code == 421 ||
	    cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_COULDNT_CONNECT)) {
		r->cls = SMTP_CONN;
		connect_failure(c, cc, r);
		return;
	}
	/* A transfer that died after the server's last reply (a timeout or a
	 * reset) carries a stale 2xx/3xx code: it is the connection that
	 * failed. */
	if (r->code < 400 || r->code == 421 ||
	    cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_COULDNT_CONNECT) {
		r->cls = SMTP_CONN;
		if (c->errbuf[0] && (r->code < 400 || cc == CURLE_OPERATION_TIMEDOUT)) {
			set_text(r, "%s", c->errbuf);
			if (r->code < 400)
				r->code = 0, r->status[0] = '\0';
		}
		return;
	}
	int perm = r->code >= 500 && r->code < 600;
	int temp = r->code >= 400 && r->code < 500;
	/* A refusal of our sender, of AUTH or of the session concerns every
	 * message, not this reader: a 5xx stops the run rather than bounce
	 * the whole list, a 4xx is the connection's trouble, not a soft
	 * bounce of the reader. */
	int session = r->stage == SMTP_STAGE_CONNECT || r->stage == SMTP_STAGE_MAIL;
	r->sender_side = smtp_sender_side(r->code, r->status, r->text, r->hint, sizeof r->hint) ||
			 session;
	if (perm && r->sender_side) {
		r->cls = SMTP_FATAL;
		if (!r->hint[0] && r->stage == SMTP_STAGE_MAIL)
			snprintf(r->hint, sizeof r->hint, "the relay refuses the sender: check `from` and bounce.return_path");
		return;
	}
	if (temp && session) {
		r->cls = SMTP_CONN;
		return;
	}
	r->cls = perm ? SMTP_PERM : temp ? SMTP_TEMP : SMTP_CONN;
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
		if (c->curl)
			curl_easy_cleanup(c->curl);
		curl_slist_free_all(c->rcpt);
		buf_free(&c->reply);
		buf_free(&c->curline);
	}
	for (int i = 0; p->slots && i < p->n; i++)
		pthread_cond_destroy(&p->slots[i].work);
	if (p->probe.curl)
		curl_easy_cleanup(p->probe.curl);
	buf_free(&p->probe.reply);
	buf_free(&p->probe.curline);
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
