#include "deliver/smtp.h"
#include "util/addr.h"
#include "util/buf.h"
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One connection: a thread with its own easy handle. libcurl does what it
 * does well, and what must not be got wrong: connect, TLS, STARTTLS, the
 * certificate check, AUTH (CURLOPT_CONNECT_ONLY stops it after AUTH).
 * The transaction phase is driven here, over curl_easy_send/recv on that
 * connection: libcurl 7.88 sends each SMTP command only after the reply
 * to the last, four round trips a message, and scans the body byte by
 * byte for dots to escape. Here, when the server offers PIPELINING (RFC
 * 2920), MAIL, RCPT and DATA go as one group and the final dot goes with
 * the next message's envelope: one round trip a message. With CHUNKING
 * (RFC 3030) the message goes as BDAT LAST, without a dot. Without
 * PIPELINING every command waits for its reply, as before.
 *
 * At most one message per connection has its content out and no reply
 * recorded: the next message's envelope may be on the wire, but its
 * content goes only after the acceptance of the last one is durable
 * (smtp_opts.accept). The main thread builds messages, paces them and
 * records results; workers only talk SMTP. */
struct txn {
	char from[600], to[600];
	const char *data;
	size_t len;
	void *tag;
	struct smtp_result result;
	/* Worker thread only: */
	int failed;    /* result is final (a refusal, a lost connection) */
	int mail_ok;   /* the server holds our MAIL: RSET before the next */
	int rset;      /* its envelope begins with an RSET */
};

/* Transactions a connection holds: one on the wire with its content out,
 * one with its envelope out, and the next ready to go with that one's
 * content (smtp_pool_idle). */
#define DEPTH_MAX 4

struct slot {
	struct smtp_pool *pool;
	CURL *tpl;           /* the configured handle, never connected:
				each connection is a duplicate of it */
	CURL *curl;          /* the connection, NULL when there is none */
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
	/* Worker thread only (and the probe's, on the main thread): */
	struct txn wire[2];  /* taken from the queue, on the wire */
	curl_socket_t sock;
	struct buf in, out;  /* received and not yet parsed; to send */
	/* An append to out failed: out holds part of what was meant, so
	 * flush_out sends none of it (a DATA body cut short by a failed
	 * allocation would otherwise be accepted, and journaled, as whole). */
	int out_oom;
	/* An append to reply or curline failed: the reply text is partial
	 * (the code is still read from the wire), said so in messages. */
	int reply_oom;
	size_t inpos;
	int owed;            /* commands written whose replies are unread */
	int proto;           /* a reply out of turn since the last write */
	char proto_why[200]; /* ... what was wrong with it */
	int need_rset;       /* the last transaction left a MAIL open */
	char errbuf[CURL_ERROR_SIZE];
	/* The last complete server reply, kept by the debug callback (libcurl
	 * exposes the code but not the text) and by read_reply. */
	struct buf reply, curline;
	char last_cmd[16];
	char reply_cmd[16];
	char stage_cmd[16]; /* the last command but QUIT, RSET and NOOP, which
			       curl sends after a failure: where it ended */
	int caps_auth;  /* the latest EHLO reply offered AUTH */
	long caps_size; /* ... and its SIZE limit (RFC 1870), 0 if none */
	int caps_pipe;  /* ... PIPELINING (RFC 2920) */
	int caps_chunk; /* ... CHUNKING (RFC 3030) */
	int in_ehlo;
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
	int pipelining;         /* the probe saw PIPELINING (and nopipe is 0):
				   main thread only */
	int quit;
	int halted;   /* guarded by mu: start nothing more */
	/* Guarded by mu: no more pipelining to this server in this run
	 * (smtp.pipelining = false, or a reply out of turn on a pipelined
	 * connection, nopipe_why saying which); nopipe_told once a result
	 * carried it to the main thread (smtp_result.pipelining_off). */
	int nopipe, nopipe_told;
	char nopipe_why[200];
};

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

/* One line of a reply, which may come in several: "250-..." continues,
 * "250 ..." ends it. The lines join into one ("550-5.2.1 x" and "550 y"
 * become "550 5.2.1 x y") in c->curline; returns 1 when the reply is
 * complete. */
static int reply_line(struct slot *c, const char *data, size_t size)
{
	while (size && (data[size - 1] == '\n' || data[size - 1] == '\r'))
		size--;
	int more = size >= 4 && data[3] == '-';
	int rc = 0;
	if (c->curline.len)
		rc |= buf_adds(&c->curline, " ");
	if (c->curline.len && size > 4)
		rc |= buf_add(&c->curline, data + 4, size - 4); /* continuation: drop "250-" */
	else if (more) {
		rc |= buf_add(&c->curline, data, 3);
		rc |= buf_addc(&c->curline, ' ');
		rc |= buf_add(&c->curline, data + 4, size - 4);
	} else
		rc |= buf_add(&c->curline, data, size);
	if (rc)
		c->reply_oom = 1;
	return !more;
}

/* An EHLO keyword on its own, or followed by parameters. */
static int ehlo_has(const char *data, size_t size, const char *kw)
{
	size_t k = strlen(kw);
	return size >= 4 + k && !strncmp(data, "250", 3) && !strncasecmp(data + 4, kw, k) &&
	       (size == 4 + k || data[4 + k] == ' ' || data[4 + k] == '=' ||
		data[4 + k] == '\r' || data[4 + k] == '\n');
}

/* libcurl's side of the session: connect, EHLO, STARTTLS, AUTH, and the
 * QUIT when a connection is closed. */
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
		/* Each EHLO (again after STARTTLS) states the capabilities
		 * anew. */
		if ((c->in_ehlo = !strcasecmp(c->last_cmd, "EHLO")))
			c->caps_auth = 0, c->caps_size = 0, c->caps_pipe = 0, c->caps_chunk = 0;
		return 0;
	}
	if (type != CURLINFO_HEADER_IN)
		return 0;
	trace(c, '<', data, size);
	if (c->in_ehlo) {
		c->caps_auth |= ehlo_has(data, size, "AUTH") && (data[8] == ' ' || data[8] == '=');
		c->caps_pipe |= ehlo_has(data, size, "PIPELINING");
		c->caps_chunk |= ehlo_has(data, size, "CHUNKING");
		if (ehlo_has(data, size, "SIZE") && size > 9)
			c->caps_size = strtol(data + 9, NULL, 10);
	}
	if (reply_line(c, data, size)) {
		if (c->in_auth && strncmp(data, "334", 3))
			c->in_auth = 0;
		/* At a close curl says QUIT; its "221 Bye" must not hide the
		 * reply that failed. */
		if (!strcasecmp(c->last_cmd, "QUIT") && c->reply.len) {
			buf_reset(&c->curline);
			return 0;
		}
		buf_reset(&c->reply);
		if (buf_add(&c->reply, c->curline.p ? c->curline.p : "", c->curline.len) < 0)
			c->reply_oom = 1;
		buf_reset(&c->curline);
		snprintf(c->reply_cmd, sizeof c->reply_cmd, "%s", c->last_cmd);
	}
	return 0;
}

static int slot_init(struct smtp_pool *p, struct slot *c)
{
	c->pool = p;
	c->sock = CURL_SOCKET_BAD;
	if (!(c->tpl = curl_easy_init()))
		return -1;
	CURL *h = c->tpl;
	curl_easy_setopt(h, CURLOPT_URL, p->url);
	if (p->pin)
		curl_easy_setopt(h, CURLOPT_RESOLVE, p->pin);
	/* Greeting, EHLO, STARTTLS and AUTH, then the connection is ours. */
	curl_easy_setopt(h, CURLOPT_CONNECT_ONLY, 1L);
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
static void classify_refusal(struct smtp_result *r);
static void parse_reply(struct smtp_result *r, const char *reply);
static void set_text(struct smtp_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- the connection ------------------------------------------------------ */

/* IO_PROTO: a reply that cannot answer the command it is read for (out
 * of turn, malformed, one too many): what was read is no longer known to
 * be any command's own. */
enum io { IO_OK, IO_TIMEOUT, IO_CLOSED, IO_ERROR, IO_PROTO };

static enum io flush_out(struct slot *c);
static int read_reply(struct slot *c, enum io *e);
static void add_cmd(struct slot *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void clean_text(char *s);

/* A healthy connection ends with QUIT (libcurl sends none for a
 * CONNECT_ONLY connection); one in trouble (a timeout, a reply out of
 * turn, a reset) is cut, so nothing waits for a reply that will not
 * come. */
static void conn_close(struct slot *c, int healthy)
{
	if (!c->curl)
		return;
	enum io e;
	if (healthy && c->sock != CURL_SOCKET_BAD) {
		buf_reset(&c->out);
		add_cmd(c, "QUIT");
		if (flush_out(c) == IO_OK)
			read_reply(c, &e);
	}
	if (c->sock != CURL_SOCKET_BAD)
		shutdown(c->sock, SHUT_RDWR);
	curl_easy_cleanup(c->curl);
	c->curl = NULL;
	c->sock = CURL_SOCKET_BAD;
	buf_reset(&c->in);
	buf_reset(&c->out);
	c->out_oom = c->reply_oom = 0;
	c->inpos = 0;
	c->owed = 0;
	c->need_rset = 0;
}

static void result_fatal(struct smtp_result *r, const char *text, const char *hint)
{
	memset(r, 0, sizeof *r);
	r->cls = SMTP_FATAL;
	snprintf(r->text, sizeof r->text, "%s", text);
	snprintf(r->hint, sizeof r->hint, "%s", hint ? hint : "");
}

/* libcurl connects: greeting, EHLO, STARTTLS, AUTH. 0, or -1 with r
 * filled and no connection. */
static int conn_open(struct slot *c, struct smtp_result *r)
{
	const struct smtp_pool *p = c->pool;
	CURL *h = curl_easy_duphandle(c->tpl);
	if (!h) {
		result_fatal(r, "out of memory", NULL);
		return -1;
	}
	c->curl = h;
	c->owed = 0;
	c->errbuf[0] = '\0';
	c->caps_auth = c->caps_pipe = c->caps_chunk = c->in_ehlo = c->in_auth = 0;
	c->caps_size = 0;
	buf_reset(&c->reply);
	buf_reset(&c->curline);
	c->reply_cmd[0] = c->last_cmd[0] = c->stage_cmd[0] = '\0';
	CURLcode cc = curl_easy_perform(h);
	c->in_ehlo = 0;
	classify(c, cc, r);
	char *ip = NULL;
	curl_socket_t s = CURL_SOCKET_BAD;
	if (cc != CURLE_OK) {
	} else if (p->username && !c->caps_auth) {
		result_fatal(r, "smtp.username is set, but the server offers no AUTH (its EHLO reply has no AUTH line); herald will not send without the login",
			     "unset smtp.username for a relay that needs no login, or enable AUTH on the relay (Postfix: smtpd_sasl_auth_enable = yes)");
	} else if (p->loopback && curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK &&
		   ip && !addr_ip_is_loopback(ip)) {
		/* Cannot happen with the addresses pinned; checked because a
		 * password may ride on this judgement. */
		result_fatal(r, "connected to a server that is not loopback", NULL);
		snprintf(r->text, sizeof r->text, "connected to %s, which is not loopback", ip);
	} else if (curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &s) != CURLE_OK ||
		   s == CURL_SOCKET_BAD) {
		result_fatal(r, "libcurl kept no connection to send on", NULL);
	} else {
		c->sock = s;
		return 0;
	}
	conn_close(c, 0);
	return -1;
}

/* ---- bytes on the connection --------------------------------------------- */

static double mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* 1 when the socket is ready for ev, 0 at the deadline, -1 on error. */
static int wait_sock(struct slot *c, short ev, double deadline)
{
	for (;;) {
		double left = deadline - mono_now();
		if (left <= 0)
			return 0;
		struct pollfd pf = {.fd = c->sock, .events = ev};
		int k = poll(&pf, 1, (int)(left * 1000) + 1);
		if (k > 0)
			return 1;
		if (k < 0 && errno != EINTR)
			return -1;
	}
}

/* Sends c->out whole. The timeout runs from the last progress, as
 * libcurl's own low-speed limit did. */
static enum io flush_out(struct slot *c)
{
	if (c->out_oom) {
		c->out_oom = 0;
		buf_reset(&c->out);
		snprintf(c->errbuf, sizeof c->errbuf, "out of memory assembling what to send");
		return IO_ERROR;
	}
	size_t off = 0;
	while (off < c->out.len) {
		size_t n = 0;
		CURLcode cc = curl_easy_send(c->curl, c->out.p + off, c->out.len - off, &n);
		if (cc == CURLE_AGAIN) {
			int w = wait_sock(c, POLLOUT, mono_now() + (double)c->pool->timeout);
			if (w <= 0) {
				snprintf(c->errbuf, sizeof c->errbuf, "%s", w ? strerror(errno) : "send timed out");
				return w ? IO_ERROR : IO_TIMEOUT;
			}
			continue;
		}
		if (cc != CURLE_OK) {
			snprintf(c->errbuf, sizeof c->errbuf, "%s", curl_easy_strerror(cc));
			return IO_CLOSED;
		}
		off += n;
	}
	buf_reset(&c->out);
	return IO_OK;
}

/* Is this line of a reply one RFC 5321 4.2 allows: a code of three
 * digits, the first 2 to 5 (SMTP has no 1xx), then a space, a hyphen
 * (more lines follow) or the line's end (a bare code is legal), and in a
 * multi-line reply the code of its first line? `first` is that line's
 * code, or NULL for the first line. Hand-written: libcurl's reader is
 * not exposed, and libetpan's has no bytes-in-memory entry point. 0 if
 * so; else -1 with c->errbuf saying what is wrong. */
static int line_ok(struct slot *c, const char *l, size_t n, const char *first)
{
	while (n && (l[n - 1] == '\n' || l[n - 1] == '\r'))
		n--;
	const char *why = NULL;
	if (n < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) ||
	    !isdigit((unsigned char)l[2]) || (n > 3 && l[3] != ' ' && l[3] != '-'))
		why = "not an SMTP reply";
	else if (l[0] < '2' || l[0] > '5')
		why = l[0] == '1' ? "a 1xx reply, which SMTP does not have" : "not an SMTP reply";
	else if (first && memcmp(l, first, 3))
		why = "a multi-line reply whose lines have different codes";
	if (!why)
		return 0;
	snprintf(c->errbuf, sizeof c->errbuf, "%s: %.*s", why, (int)(n > 60 ? 60 : n), l);
	clean_text(c->errbuf);
	return -1;
}

/* One whole reply out of c->in, joined into c->reply (its lines to the
 * transcript): its code; 0 when more bytes are needed; -1 when what came
 * is no SMTP reply (line_ok), or a reply over 64 KB (a hostile server's
 * way to fill memory), with c->errbuf saying which. */
static int reply_take(struct slot *c)
{
	for (;;) {
		char *base = c->in.p ? c->in.p + c->inpos : NULL;
		size_t avail = c->in.len - c->inpos;
		char *nl = avail ? memchr(base, '\n', avail) : NULL;
		if (!nl && avail <= 65536)
			return 0;
		if (!nl || c->curline.len > 65536) {
			snprintf(c->errbuf, sizeof c->errbuf, "a reply of over 64 KB");
			return -1;
		}
		size_t n = (size_t)(nl - base) + 1;
		c->inpos += n;
		trace(c, '<', base, n);
		if (line_ok(c, base, n, c->curline.len >= 3 ? c->curline.p : NULL) < 0)
			return -1;
		if (!reply_line(c, base, n))
			continue;
		buf_reset(&c->reply);
		int oom = c->reply_oom || buf_add(&c->reply, c->curline.p, c->curline.len) < 0;
		buf_reset(&c->curline);
		c->reply_oom = 0;
		/* Out of memory for the text: the code still stands on the
		 * reply's last line (line_ok checked it), and a dot's reply
		 * must be counted, not lost (a lost 250 would send the
		 * message again). */
		if (oom)
			buf_reset(&c->reply);
		const char *t = oom ? base : buf_cstr(&c->reply);
		if (c->owed > 0)
			c->owed--;
		return (t[0] - '0') * 100 + (t[1] - '0') * 10 + (t[2] - '0');
	}
}

/* The next reply off the connection; its code, or 0 with *e saying why
 * there is none. */
static int read_reply(struct slot *c, enum io *e)
{
	double deadline = mono_now() + (double)c->pool->timeout;
	buf_reset(&c->curline);
	for (;;) {
		int code = reply_take(c);
		/* Every command has its reply and more came: the count does
		 * not add up. But a 421 is the server closing (RFC 5321 3.8),
		 * which it may say at any time: the replies stand, and the
		 * connection is not used again (conn_stale). */
		if (code > 0 && !c->owed && c->inpos < c->in.len &&
		    (c->in.len - c->inpos < 3 || memcmp(c->in.p + c->inpos, "421", 3))) {
			const char *more = c->in.p + c->inpos;
			size_t k = 0;
			while (k < c->in.len - c->inpos && k < 60 && more[k] != '\r' && more[k] != '\n')
				k++;
			snprintf(c->errbuf, sizeof c->errbuf, "more replies than commands: %.*s", (int)k,
				 more);
			clean_text(c->errbuf);
			code = -1;
		}
		if (code) {
			if (code < 0)
				*e = IO_PROTO;
			return code < 0 ? 0 : code;
		}
		char *base = c->in.p ? c->in.p + c->inpos : NULL;
		size_t avail = c->in.len - c->inpos;
		if (avail && c->inpos) {
			memmove(c->in.p, base, avail);
		}
		c->in.len = avail;
		c->inpos = 0;
		if (buf_reserve(&c->in, 4096) < 0) {
			snprintf(c->errbuf, sizeof c->errbuf, "out of memory");
			*e = IO_ERROR;
			return 0;
		}
		size_t got = 0;
		CURLcode cc = curl_easy_recv(c->curl, c->in.p + c->in.len, 4096, &got);
		if (cc == CURLE_AGAIN) {
			int w = wait_sock(c, POLLIN, deadline);
			if (w <= 0) {
				*e = w ? IO_ERROR : IO_TIMEOUT;
				return 0;
			}
			continue;
		}
		if (cc != CURLE_OK || !got) {
			snprintf(c->errbuf, sizeof c->errbuf, "%s",
				 cc != CURLE_OK ? curl_easy_strerror(cc) : "the server closed the connection");
			*e = IO_CLOSED;
			return 0;
		}
		c->in.len += got;
	}
}

/* ---- one transaction's pieces ---------------------------------------------- */

/* Appends to what goes out next; a failure poisons the whole of it
 * (out_oom), so flush_out never sends a part. */
static void out_add(struct slot *c, const void *data, size_t len)
{
	if (!c->out_oom && buf_add(&c->out, data, len) < 0)
		c->out_oom = 1;
}

static void add_cmd(struct slot *c, const char *fmt, ...)
{
	size_t at = c->out.len;
	va_list ap;
	va_start(ap, fmt);
	char line[1300];
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line)
		n = 0;
	out_add(c, line, (size_t)n);
	out_add(c, "\r\n", 2);
	if (!c->out_oom)
		trace(c, '>', c->out.p + at, (size_t)n);
	snprintf(c->last_cmd, sizeof c->last_cmd, "%.*s", (int)strcspn(line, " "), line);
	c->owed++;
}

/* The envelope, and for BDAT the message too. The SIZE parameter (RFC
 * 1870) lets a server refuse a message too big before it is sent. */
static void add_envelope(struct slot *c, struct txn *t)
{
	if ((t->rset = c->need_rset))
		add_cmd(c, "RSET");
	c->need_rset = 0;
	if (c->caps_size)
		add_cmd(c, "MAIL FROM:%s SIZE=%zu", t->from, t->len);
	else
		add_cmd(c, "MAIL FROM:%s", t->from);
	add_cmd(c, "RCPT TO:%s", t->to);
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
		add_cmd(c, "BDAT %zu LAST", t->len + (crlf ? 0 : 2));
		out_add(c, d, t->len);
	} else {
		if (d < end && *d == '.')
			out_add(c, ".", 1);
		/* memchr for the line ends: vectorised, unlike memmem. */
		const char *q, *from = d;
		while ((q = memchr(from, '\n', (size_t)(end - from)))) {
			from = q + 1;
			if (from < end && *from == '.' && q > t->data && q[-1] == '\r') {
				out_add(c, d, (size_t)(from - d));
				out_add(c, ".", 1);
				d = from;
			}
		}
		out_add(c, d, (size_t)(end - d));
	}
	if (!crlf)
		out_add(c, "\r\n", 2);
	if (!bdat) {
		out_add(c, ".\r\n", 3);
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
	struct smtp_result *r = &t->result;
	memset(r, 0, sizeof *r);
	const char *reply = buf_cstr(&c->reply);
	parse_reply(r, reply);
	r->stage = st;
	set_text(r, "%s", reply);
	classify_refusal(r);
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
		set_text(r, "no reply to the final dot within %ld s: the server may have the message", tmo);
	} else if (st == SMTP_STAGE_BODY && e == IO_PROTO) {
		r->cls = SMTP_UNCERTAIN;
		set_text(r, "a reply out of turn after the message went out (%s): the server may have the message",
			 c->proto_why);
	} else if (e == IO_PROTO)
		set_text(r, "a reply out of turn before the message went out (%s)", c->proto_why);
	else if (e == IO_TIMEOUT)
		set_text(r, "timed out waiting %ld s for the reply to %s", tmo, stage_name[st]);
	else
		set_text(r, "the connection was lost before the reply to %s (%s)", stage_name[st],
			 c->errbuf[0] ? c->errbuf : "no reason given");
	t->failed = 1;
}

static void txn_ok(struct slot *c, struct txn *t)
{
	struct smtp_result *r = &t->result;
	memset(r, 0, sizeof *r);
	const char *reply = buf_cstr(&c->reply);
	parse_reply(r, reply);
	r->cls = SMTP_OK;
	r->stage = SMTP_STAGE_BODY;
	set_text(r, "%s", reply);
}

/* Can `code` answer a command that wants `want` (250: RSET, MAIL, RCPT,
 * the final dot, BDAT; 354: DATA)? A 4xx or 5xx answers any of them; a
 * 2xx only those that want one, and 354 only DATA (SMTP has no other 3xx
 * in a transaction, and no 1xx at all: reply_take refuses those). After
 * a refusal in the same transaction (`refused`: its MAIL or its only
 * RCPT) nothing positive can follow: a server that refused the one
 * recipient cannot take the message, so a 2xx or 354 there is another
 * command's reply, out of turn. (RFC 2920 3.1 allows a 354 to DATA after
 * every RCPT was refused; herald takes it as out of turn too, because
 * with a dot and the next envelope in flight it is just what a refusal
 * of the dot delayed past the next RCPT's 250 looks like.) */
static int reply_fits(int code, int want, int refused)
{
	if (code >= 400 && code < 600)
		return 1;
	if (refused)
		return 0;
	return want == 354 ? code == 354 : code >= 200 && code < 300;
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
	int code = read_reply(c, e);
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

/* Without PIPELINING: each command waits for its reply, and a refusal
 * ends the transaction there. 1 if the connection can go on. */
static int lockstep(struct slot *c, struct txn *t)
{
	enum io e;
	if (c->need_rset) {
		add_cmd(c, "RSET");
		if ((e = flush_out(c))) {
			txn_lost(c, t, SMTP_STAGE_MAIL, e);
			return 0;
		}
		if (!expect_rset(c, t))
			return 0;
		c->need_rset = 0;
	}
	if (c->caps_size)
		add_cmd(c, "MAIL FROM:%s SIZE=%zu", t->from, t->len);
	else
		add_cmd(c, "MAIL FROM:%s", t->from);
	int k = (e = flush_out(c)) ? (txn_lost(c, t, SMTP_STAGE_MAIL, e), -1)
				   : expect(c, t, SMTP_STAGE_MAIL, 250, "MAIL", &e);
	if (k != 1)
		return k == 0;
	c->need_rset = 1;
	add_cmd(c, "RCPT TO:%s", t->to);
	k = (e = flush_out(c)) ? (txn_lost(c, t, SMTP_STAGE_RCPT, e), -1)
			       : expect(c, t, SMTP_STAGE_RCPT, 250, "RCPT", &e);
	if (k != 1)
		return k == 0;
	if (!c->caps_chunk) {
		add_cmd(c, "DATA");
		k = (e = flush_out(c)) ? (txn_lost(c, t, SMTP_STAGE_DATA, e), -1)
				       : expect(c, t, SMTP_STAGE_DATA, 354, "DATA", &e);
		if (k != 1)
			return k == 0;
	}
	add_content(c, t, c->caps_chunk);
	if ((e = flush_out(c))) {
		txn_lost(c, t, SMTP_STAGE_BODY, IO_CLOSED);
		return 0;
	}
	k = expect_end(c, t, c->caps_chunk ? "BDAT" : "the final dot");
	/* After the final dot the transaction is over whatever the reply;
	 * a refused BDAT LAST leaves it open (RFC 3030 4.2). */
	c->need_rset = c->caps_chunk && t->failed;
	return k;
}

/* A reply out of turn on a pipelined connection: this server's replies
 * cannot be matched to commands sent ahead of them, so every connection
 * of the pool goes one command at a time for the rest of the run. */
static void pipelining_off(struct slot *c)
{
	struct smtp_pool *p = c->pool;
	pthread_mutex_lock(&p->mu);
	if (!p->nopipe)
		snprintf(p->nopipe_why, sizeof p->nopipe_why, "%s", c->proto_why);
	p->nopipe = 1;
	pthread_mutex_unlock(&p->mu);
}

static int pipelining_on(struct smtp_pool *p)
{
	pthread_mutex_lock(&p->mu);
	int on = !p->nopipe;
	pthread_mutex_unlock(&p->mu);
	return on;
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
static int chunked(struct slot *c, struct txn *t)
{
	add_envelope(c, t);
	add_content(c, t, 1);
	c->proto = 0;
	enum io e = flush_out(c);
	int ok = expect_envelope(c, t, e) && expect_end(c, t, "BDAT");
	if (c->proto) {
		/* The message went out with its envelope. */
		pipelining_off(c);
		txn_untrusted(c, t);
		return 0;
	}
	/* The BDAT that followed a refused RCPT is refused too, and the
	 * transaction stays open. */
	c->need_rset = t->failed && t->mail_ok;
	return ok;
}

/* The outcome of t goes to the main thread: recorded (the journal line,
 * smtp_opts.accept) before this connection sends another message. */
static void finish(struct slot *c, struct txn *t)
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
	finish(c, t);
}

/* The next transaction for this connection, into `into`: NULL when there
 * is none (and wait is 0) or the pool is closing. A halted pool's queue
 * comes back not tried; a reader admit() refuses comes back withdrawn:
 * nothing of either is on the wire. */
static struct txn *take(struct slot *c, int wait, struct txn *into)
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

/* t once more, as take() would hand it over: back not tried when the
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
static int pipeline(struct slot *c, struct txn *t, struct txn **redo)
{
	struct txn *content = NULL, *env = t;
	for (;;) {
		if (content)
			add_content(c, content, 0);
		if (env) {
			add_envelope(c, env);
			add_cmd(c, "DATA");
		}
		c->proto = 0;
		enum io e = flush_out(c);
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
			pipelining_off(c);
			if (content)
				txn_untrusted(c, content);
			*redo = env;
			env = NULL;
		}
		if (content)
			finish(c, content);
		content = NULL;
		if (env && env->failed)
			finish(c, env);
		else
			content = env;
		env = NULL;
		if (!alive || !content)
			return alive;
		env = take(c, 0, content == &c->wire[0] ? &c->wire[1] : &c->wire[0]);
	}
}

/* Between transactions a server has nothing to say: a reply now is a 421
 * at its idle timeout, an end of file a connection it closed. Either way
 * the connection is not used for the next message (libcurl made the same
 * check when it reused one). A TLS record without data (a TLS 1.3
 * session ticket) is no reason to drop it. */
static int conn_stale(struct slot *c)
{
	if (c->in.len > c->inpos)
		return 1;
	struct pollfd pf = {.fd = c->sock, .events = POLLIN};
	if (poll(&pf, 1, 0) <= 0)
		return 0;
	char b[512];
	size_t got = 0;
	CURLcode cc = curl_easy_recv(c->curl, b, sizeof b, &got);
	if (cc == CURLE_AGAIN)
		return 0;
	if (cc == CURLE_OK && got)
		trace(c, '<', b, got);
	return 1;
}

static void *worker(void *arg)
{
	struct slot *c = arg;
	struct txn *t;
	while ((t = take(c, 1, &c->wire[0]))) {
		while (t) {
			if (c->curl && conn_stale(c))
				conn_close(c, 0);
			if (!c->curl && conn_open(c, &t->result) < 0) {
				finish(c, t);
				break;
			}
			struct txn *redo = NULL;
			int pipe = c->caps_pipe && pipelining_on(c->pool);
			int alive = !pipe ? lockstep(c, t) : c->caps_chunk ? chunked(c, t)
									 : pipeline(c, t, &redo);
			if (!pipe || c->caps_chunk)
				finish(c, t);
			if (!alive)
				conn_close(c, 0);
			/* An envelope a reply out of turn left without content
			 * goes again, on a new connection, one command at a time:
			 * a new start, so asked again as take() asks. */
			t = redo ? retake(c, redo) : NULL;
		}
	}
	conn_close(c, 1);
	return NULL;
}

int smtp_replies_scan(const char *data, size_t len, enum smtp_stage stage,
		      void (*each)(void *arg, const struct smtp_result *r), void *arg)
{
	struct smtp_pool p = {.timeout = 1};
	struct slot c = {.pool = &p, .sock = CURL_SOCKET_BAD, .owed = INT_MAX};
	int n = 0, code = buf_add(&c.in, data, len) < 0 ? -1 : 0;
	int want = stage == SMTP_STAGE_DATA ? 354 : 250;
	while (code >= 0 && (code = reply_take(&c)) > 0) {
		if (!reply_fits(code, want, 0)) {
			code = -1;
			break;
		}
		struct txn t = {.failed = 0};
		if (code < 400)
			txn_ok(&c, &t);
		else
			txn_refused(&c, &t, stage);
		each(arg, &t.result);
		n++;
	}
	buf_free(&c.in);
	buf_free(&c.reply);
	buf_free(&c.curline);
	return code < 0 ? -1 : n;
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
	if (conn_open(c, r) < 0) {
		p->size_max = 0;
		return -1;
	}
	p->size_max = c->caps_size;
	p->pipelining = c->caps_pipe && pipelining_on(p);
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

/* The connect phase as libcurl ran it (CONNECT_ONLY): greeting, EHLO,
 * STARTTLS, AUTH. */
static void classify(struct slot *c, CURLcode cc, struct smtp_result *r)
{
	long code = 0;
	memset(r, 0, sizeof *r);
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &code);
	const char *reply = c->reply.len ? buf_cstr(&c->reply) : "";
	parse_reply(r, reply);
	if (!r->code)
		r->code = (int)code;
	r->stage = SMTP_STAGE_CONNECT;
	snprintf(r->text, sizeof r->text, "%s",
		 *reply ? reply : (c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc)));
	clean_text(r->text);
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
	if (r->code < 400 || r->code == 421 || cc == CURLE_OPERATION_TIMEDOUT ||
	    cc == CURLE_COULDNT_CONNECT) {
		r->cls = SMTP_CONN;
		connect_failure(c, cc, r);
		return;
	}
	classify_refusal(r);
}

/* A 4xx or 5xx reply (code, status, text and stage filled). A refusal of
 * our sender, of AUTH or of the session concerns every message, not this
 * reader: a 5xx stops the run rather than bounce the whole list, a 4xx is
 * the connection's trouble, not a soft bounce of the reader. A 421 is the
 * server closing the connection. */
static void classify_refusal(struct smtp_result *r)
{
	if (r->code < 400 || r->code >= 600 || r->code == 421) {
		r->cls = SMTP_CONN;
		return;
	}
	int perm = r->code >= 500;
	int session = r->stage == SMTP_STAGE_CONNECT || r->stage == SMTP_STAGE_MAIL;
	r->sender_side = smtp_sender_side(r->code, r->status, r->text, r->hint, sizeof r->hint) ||
			 session;
	if (perm && r->sender_side) {
		r->cls = SMTP_FATAL;
		if (!r->hint[0] && r->stage == SMTP_STAGE_MAIL)
			snprintf(r->hint, sizeof r->hint, "the relay refuses the sender: check `from` and bounce.return_path");
		return;
	}
	r->cls = !perm && session ? SMTP_CONN : perm ? SMTP_PERM : SMTP_TEMP;
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

static void slot_free(struct slot *c)
{
	conn_close(c, 1);
	if (c->tpl)
		curl_easy_cleanup(c->tpl);
	buf_free(&c->reply);
	buf_free(&c->curline);
	buf_free(&c->in);
	buf_free(&c->out);
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
		slot_free(c);
	}
	for (int i = 0; p->slots && i < p->n; i++)
		pthread_cond_destroy(&p->slots[i].work);
	slot_free(&p->probe);
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
