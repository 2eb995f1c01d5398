/* smtp_conn: one SMTP connection. libcurl opens it (connect, TLS,
 * STARTTLS, the certificate check, AUTH; CURLOPT_CONNECT_ONLY stops it
 * there), its debug callback shows herald libcurl's side of the session,
 * and from then on the bytes go through curl_easy_send/recv here. */
#include "deliver/smtp_int.h"
#include "util/addr.h"
#include "util/buf.h"
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

/* -v: one transcript line per SMTP line, "> " out and "< " in, with
 * the connection's number. Nothing of an AUTH exchange but its verb and
 * mechanism is shown: the lines after it carry the credentials. */
void conn_trace(struct slot *c, char dir, const char *data, size_t size)
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

/* libcurl's side of the session: connect, EHLO, STARTTLS, AUTH, and the
 * QUIT it sends after a failure there. What it sends says where the
 * session is; what it reads goes to herald's reply reader
 * (reply_curl_line). Once CONNECT_ONLY is done (c->curl_done) the session
 * is herald's, and its replies are read by reply_read alone. */
static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *ud)
{
	struct slot *c = ud;
	if (c->curl_done)
		return 0;
	if (type == CURLINFO_HEADER_OUT) {
		conn_trace(c, '>', data, size);
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
	conn_trace(c, '<', data, size);
	reply_curl_line(c, data, size);
	return 0;
}

int conn_slot_init(struct smtp_pool *p, struct slot *c)
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

/* A healthy connection ends with QUIT (libcurl sends none for a
 * CONNECT_ONLY connection); one in trouble (a timeout, a reply out of
 * turn, a reset) is cut, so nothing waits for a reply that will not
 * come. */
void conn_close(struct slot *c, int healthy)
{
	if (!c->curl)
		return;
	enum io e;
	if (healthy && c->sock != CURL_SOCKET_BAD) {
		buf_reset(&c->out);
		conn_add_cmd(c, "QUIT");
		if (conn_flush(c) == IO_OK)
			reply_read(c, &e);
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
int conn_open(struct slot *c, struct smtp_result *r)
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
	c->curl_done = 0;
	CURLcode cc = curl_easy_perform(h);
	c->in_ehlo = 0;
	reply_classify_connect(c, cc, r);
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
		c->curl_done = 1;
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

double conn_deadline(const struct slot *c)
{
	return mono_now() + (double)c->pool->timeout;
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
enum io conn_flush(struct slot *c)
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
			int w = wait_sock(c, POLLOUT, conn_deadline(c));
			if (w <= 0) {
				/* strerror_r: this runs on a connection's thread. */
				char eb[128];
				snprintf(c->errbuf, sizeof c->errbuf, "%s",
					 w ? strerror_r(errno, eb, sizeof eb) : "send timed out");
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

/* What c->in holds unread moves to its start, and what the connection
 * has (up to 4 KB) is added; IO_OK also when the socket only became
 * readable by the deadline (the caller reads again). */
enum io conn_recv(struct slot *c, double deadline)
{
	char *base = c->in.p ? c->in.p + c->inpos : NULL;
	size_t avail = c->in.len - c->inpos;
	if (avail && c->inpos) {
		memmove(c->in.p, base, avail);
	}
	c->in.len = avail;
	c->inpos = 0;
	if (buf_reserve(&c->in, 4096) < 0) {
		snprintf(c->errbuf, sizeof c->errbuf, "out of memory");
		return IO_ERROR;
	}
	size_t got = 0;
	CURLcode cc = curl_easy_recv(c->curl, c->in.p + c->in.len, 4096, &got);
	if (cc == CURLE_AGAIN) {
		int w = wait_sock(c, POLLIN, deadline);
		return w > 0 ? IO_OK : w ? IO_ERROR : IO_TIMEOUT;
	}
	if (cc != CURLE_OK || !got) {
		snprintf(c->errbuf, sizeof c->errbuf, "%s",
			 cc != CURLE_OK ? curl_easy_strerror(cc) : "the server closed the connection");
		return IO_CLOSED;
	}
	c->in.len += got;
	return IO_OK;
}

/* Appends to what goes out next; a failure poisons the whole of it
 * (out_oom), so conn_flush never sends a part. */
void conn_out_add(struct slot *c, const void *data, size_t len)
{
	if (!c->out_oom && buf_add(&c->out, data, len) < 0)
		c->out_oom = 1;
}

void conn_add_cmd(struct slot *c, const char *fmt, ...)
{
	size_t at = c->out.len;
	va_list ap;
	va_start(ap, fmt);
	char line[1300];
	int n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line)
		n = 0;
	conn_out_add(c, line, (size_t)n);
	conn_out_add(c, "\r\n", 2);
	if (!c->out_oom)
		conn_trace(c, '>', c->out.p + at, (size_t)n);
	snprintf(c->last_cmd, sizeof c->last_cmd, "%.*s", (int)strcspn(line, " "), line);
	c->owed++;
}

/* Between transactions a server has nothing to say: a reply now is a 421
 * at its idle timeout, an end of file a connection it closed. Either way
 * the connection is not used for the next message (libcurl made the same
 * check when it reused one). A TLS record without data (a TLS 1.3
 * session ticket) is no reason to drop it. */
int conn_stale(struct slot *c)
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
		conn_trace(c, '<', b, got);
	return 1;
}

void conn_slot_free(struct slot *c)
{
	conn_close(c, 1);
	if (c->tpl)
		curl_easy_cleanup(c->tpl);
	buf_free(&c->reply);
	buf_free(&c->curline);
	buf_free(&c->in);
	buf_free(&c->out);
}
