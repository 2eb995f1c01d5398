#include "smtp.h"
#include "buf.h"
#include <ctype.h>
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
	int data_started;
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
	smtp_accept_fn accept;
	void *accept_arg;
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	pthread_mutex_t mu;
	pthread_cond_t done;
	int quit;
};

int smtp_url_is_loopback(const char *url)
{
	const char *h = strstr(url, "://");
	if (!h)
		return 0;
	h += 3;
	if (!strncmp(h, "127.", 4) || !strncmp(h, "[::1]", 5))
		return 1;
	return !strncasecmp(h, "localhost", 9) &&
	       (h[9] == '\0' || h[9] == ':' || h[9] == '/');
}

static size_t read_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct slot *c = ud;
	size_t n = size * nmemb;
	if (n > c->cur.len - c->off)
		n = c->cur.len - c->off;
	memcpy(ptr, c->cur.data + c->off, n);
	c->off += n;
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
		if (!strcasecmp(c->last_cmd, "DATA"))
			c->data_started = 1;
		return 0;
	}
	if (type != CURLINFO_HEADER_IN)
		return 0;
	trace(c, '<', data, size);
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

static int slot_init(struct smtp_pool *p, struct slot *c, const struct smtp_opts *o)
{
	int loop = smtp_url_is_loopback(o->url);
	int implicit = !strncmp(o->url, "smtps://", 8);
	c->pool = p;
	if (!(c->curl = curl_easy_init()))
		return -1;
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_URL, p->url);
	curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h, CURLOPT_READDATA, c);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
	curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, debug_cb);
	curl_easy_setopt(h, CURLOPT_DEBUGDATA, c);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, o->timeout);
	curl_easy_setopt(h, CURLOPT_SERVER_RESPONSE_TIMEOUT, o->timeout);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, o->timeout);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->ca_file && *o->ca_file) {
		/* Added to the system anchors, not instead of them. */
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
		curl_easy_setopt(h, CURLOPT_CAPATH, "/etc/ssl/certs");
	}
	if (!implicit) {
		long use = o->starttls == STARTTLS_REQUIRED ? CURLUSESSL_ALL
			 : o->starttls == STARTTLS_TRY ? CURLUSESSL_TRY : CURLUSESSL_NONE;
		/* With credentials, "try" must not fall back to clear text
		 * unless the server is on this machine. */
		if (o->username && !loop)
			use = CURLUSESSL_ALL;
		curl_easy_setopt(h, CURLOPT_USE_SSL, use);
	}
	if (o->username) {
		curl_easy_setopt(h, CURLOPT_USERNAME, o->username);
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
	c->errbuf[0] = '\0';
	buf_reset(&c->reply);
	buf_reset(&c->curline);
	c->reply_cmd[0] = c->last_cmd[0] = '\0';
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
		pthread_mutex_unlock(&p->mu);
		transact(c);
		/* The caller records an acceptance (the journal line) before
		 * this connection carries anything else: a crash then can
		 * cost at most the one message in flight per connection. */
		if (c->cur.result.cls == SMTP_OK && p->accept)
			p->accept(p->accept_arg, c->cur.tag, &c->cur.result);
		pthread_mutex_lock(&p->mu);
		c->done[c->ndone++] = c->cur;
		pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int smtp_pool_new(struct smtp_pool **out, const struct smtp_opts *o,
		  int connections, int depth, char *err, size_t errlen)
{
	int loop = smtp_url_is_loopback(o->url);
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
	p->slots = calloc((size_t)connections, sizeof *p->slots);
	/* The EHLO name rides in the URL path (smtp://host:port/name). */
	const char *path = strchr(strstr(o->url, "://") + 3, '/');
	if (path || !o->helo)
		p->url = strdup(o->url);
	else if (asprintf(&p->url, "%s/%s", o->url, o->helo) < 0)
		p->url = NULL;
	if (!p->slots || !p->url || (o->password && !(p->password = strdup(o->password)))) {
		smtp_pool_free(p);
		return set_err(err, errlen, -1, "out of memory");
	}
	p->trace = o->trace;
	p->trace_arg = o->trace_arg;
	for (int i = 0; i < connections; i++) {
		struct slot *c = &p->slots[i];
		c->id = i + 1;
		pthread_cond_init(&c->work, NULL);
		if (slot_init(p, c, o) < 0) {
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

void smtp_pool_on_accept(struct smtp_pool *p, smtp_accept_fn fn, void *arg)
{
	p->accept = fn;
	p->accept_arg = arg;
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

static void classify(struct slot *c, CURLcode cc, struct smtp_result *r)
{
	long code = 0;
	memset(r, 0, sizeof *r);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
	const char *reply = c->reply.len ? buf_cstr(&c->reply) : "";
	parse_reply(r, reply);
	if (!r->code)
		r->code = (int)code;
	r->data_sent = c->data_started;
	snprintf(r->text, sizeof r->text, "%s",
		 *reply ? reply : (c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc)));
	clean_text(r->text);
	c->reconnect = cc != CURLE_OK;
	if (cc == CURLE_OK) {
		r->cls = SMTP_OK;
		return;
	}
	switch (cc) {
	case CURLE_LOGIN_DENIED:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_USE_SSL_FAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
	case CURLE_COULDNT_RESOLVE_HOST:
		r->cls = SMTP_FATAL;
		if (c->errbuf[0])
			snprintf(r->text, sizeof r->text, "%s", c->errbuf);
		clean_text(r->text);
		return;
	default:
		break;
	}
	/* The server said go ahead with TLS and the handshake failed: no
	 * message will do better. */
	if (!strcasecmp(c->reply_cmd, "STARTTLS") && r->code >= 200 && r->code < 300) {
		r->cls = SMTP_FATAL;
		r->code = 0;
		r->status[0] = '\0';
		snprintf(r->text, sizeof r->text, "TLS handshake failed after STARTTLS: %s",
			 c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc));
		clean_text(r->text);
		return;
	}
	/* A transfer that died after the server's last reply (a timeout or a
	 * reset) carries a stale 2xx/3xx code: it is the connection that
	 * failed. */
	if (r->code < 400 || r->code == 421 ||
	    cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_COULDNT_CONNECT) {
		r->cls = SMTP_CONN;
		if (c->errbuf[0] && (r->code < 400 || cc == CURLE_OPERATION_TIMEDOUT)) {
			snprintf(r->text, sizeof r->text, "%s", c->errbuf);
			clean_text(r->text);
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
	int session = !strcasecmp(c->reply_cmd, "MAIL") || !strcasecmp(c->reply_cmd, "AUTH") ||
		      !strcasecmp(c->reply_cmd, "EHLO") || !strcasecmp(c->reply_cmd, "HELO") ||
		      !strcasecmp(c->reply_cmd, "STARTTLS");
	if (perm && session) {
		r->cls = SMTP_FATAL;
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
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->done);
	secret_free(&p->password);
	free(p->slots);
	free(p->url);
	free(p);
}
