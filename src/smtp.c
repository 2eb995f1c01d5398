#include "smtp.h"
#include "buf.h"
#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct smtp_conn {
	CURL *curl;
	char *url;
	char *password;
	char errbuf[CURL_ERROR_SIZE];
	/* The last complete server reply, kept by the debug callback:
	 * libcurl exposes the code but not the text. */
	struct buf reply, cur;
	char last_cmd[16];
	char reply_cmd[16];
	int data_started;
	/* read state */
	const char *data;
	size_t len, off;
	int reconnect;
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
	struct smtp_conn *c = ud;
	size_t n = size * nmemb;
	if (n > c->len - c->off)
		n = c->len - c->off;
	memcpy(ptr, c->data + c->off, n);
	c->off += n;
	return n;
}

static int debug_cb(CURL *h, curl_infotype type, char *data, size_t size, void *ud)
{
	struct smtp_conn *c = ud;
	if (type == CURLINFO_HEADER_OUT) {
		/* Remember the verb only: AUTH arguments never get stored. */
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
	/* Lines arrive one per call: "250-..." continues, "250 ..." ends. */
	while (size && (data[size - 1] == '\n' || data[size - 1] == '\r'))
		size--;
	if (c->cur.len)
		buf_adds(&c->cur, " ");
	buf_add(&c->cur, size > 4 && c->cur.len ? data + 4 : data, size > 4 && c->cur.len ? size - 4 : size);
	if (size < 4 || data[3] != '-') {
		/* After a failure curl says QUIT; its "221 Bye" must not
		 * hide the reply that failed. */
		if (!strcasecmp(c->last_cmd, "QUIT") && c->reply.len) {
			buf_reset(&c->cur);
			return 0;
		}
		buf_reset(&c->reply);
		buf_add(&c->reply, c->cur.p ? c->cur.p : "", c->cur.len);
		buf_reset(&c->cur);
		snprintf(c->reply_cmd, sizeof c->reply_cmd, "%s", c->last_cmd);
	}
	return 0;
}

int smtp_new(struct smtp_conn **out, const struct smtp_opts *o, char *err,
	     size_t errlen)
{
	int loop = smtp_url_is_loopback(o->url);
	int implicit = !strncmp(o->url, "smtps://", 8);
	if (o->username && !implicit && !loop && o->starttls != STARTTLS_REQUIRED)
		return set_err(err, errlen, -1,
			       "smtp.username is set for a remote server: set smtp.starttls = \"required\" (or use smtps://), AUTH is never sent in clear");
	struct smtp_conn *c = calloc(1, sizeof *c);
	if (!c || !(c->curl = curl_easy_init())) {
		free(c);
		return set_err(err, errlen, -1, "cannot start libcurl");
	}
	/* The EHLO name rides in the URL path (smtp://host:port/name). */
	const char *path = strchr(strstr(o->url, "://") + 3, '/');
	if (path || !o->helo)
		c->url = strdup(o->url);
	else if (asprintf(&c->url, "%s/%s", o->url, o->helo) < 0)
		c->url = NULL;
	if (!c->url || (o->password && !(c->password = strdup(o->password)))) {
		smtp_free(c);
		return set_err(err, errlen, -1, "out of memory");
	}
	CURL *h = c->curl;
	curl_easy_setopt(h, CURLOPT_URL, c->url);
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
		curl_easy_setopt(h, CURLOPT_PASSWORD, c->password ? c->password : "");
	}
	*out = c;
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

void smtp_send(struct smtp_conn *c, const char *mail_from, const char *rcpt,
	       const char *data, size_t len, struct smtp_result *r)
{
	CURL *h = c->curl;
	memset(r, 0, sizeof *r);
	c->data = data;
	c->len = len;
	c->off = 0;
	c->data_started = 0;
	c->errbuf[0] = '\0';
	buf_reset(&c->reply);
	buf_reset(&c->cur);
	c->reply_cmd[0] = '\0';

	char from[600];
	snprintf(from, sizeof from, "<%s>", mail_from);
	char to[600];
	snprintf(to, sizeof to, "<%s>", rcpt);
	struct curl_slist *rl = curl_slist_append(NULL, to);
	curl_easy_setopt(h, CURLOPT_MAIL_FROM, from);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rl);
	curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
	/* After a failed transaction the server may still hold our MAIL
	 * state; start the next one on a clean connection. */
	curl_easy_setopt(h, CURLOPT_FRESH_CONNECT, c->reconnect ? 1L : 0L);
	CURLcode cc = curl_easy_perform(h);
	curl_slist_free_all(rl);
	curl_easy_setopt(h, CURLOPT_MAIL_RCPT, NULL);

	long code = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	const char *reply = c->reply.len ? buf_cstr(&c->reply) : "";
	parse_reply(r, reply);
	if (!r->code)
		r->code = (int)code;
	r->data_sent = c->data_started;
	snprintf(r->text, sizeof r->text, "%s", *reply ? reply : (c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc)));
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
	if (r->code == 421 || r->code == 0) {
		r->cls = SMTP_CONN;
		if (!*reply && c->errbuf[0])
			snprintf(r->text, sizeof r->text, "%s", c->errbuf);
		return;
	}
	int perm = r->code >= 500 && r->code < 600;
	int temp = r->code >= 400 && r->code < 500;
	/* A refusal of our sender or of AUTH concerns every message, not
	 * this reader: stop rather than bounce the whole list. */
	if (perm && (!strcasecmp(c->reply_cmd, "MAIL") || !strcasecmp(c->reply_cmd, "AUTH") ||
		     !strcasecmp(c->reply_cmd, "EHLO") || !strcasecmp(c->reply_cmd, "HELO"))) {
		r->cls = SMTP_FATAL;
		return;
	}
	r->cls = perm ? SMTP_PERM : temp ? SMTP_TEMP : SMTP_CONN;
}

void smtp_free(struct smtp_conn *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	if (c->password) {
		explicit_bzero(c->password, strlen(c->password));
		free(c->password);
	}
	free(c->url);
	buf_free(&c->reply);
	buf_free(&c->cur);
	free(c);
}
