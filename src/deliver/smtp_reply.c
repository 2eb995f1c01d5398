/* smtp_reply: SMTP replies, read and judged. One reader for both sides of
 * a session: the lines libcurl reads while it connects (its debug
 * callback hands them over, reply_curl_line) and the bytes herald reads
 * itself afterwards (reply_take, reply_read); then what a reply means for
 * the reader it was for (reply_result, classify_refusal, smtp_sender_side)
 * and what a failed connect means (reply_classify_connect). */
#include "deliver/smtp_int.h"
#include "util/buf.h"
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void clean_text(char *s);
static void classify_refusal(struct smtp_result *r);

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

/* Is this line of a reply (n bytes, its line end cut off) one RFC 5321
 * 4.2 allows: a code of three digits, the first 2 to 5 (SMTP has no
 * 1xx), then a space, a hyphen (more lines follow) or the line's end (a
 * bare code is legal), and in a multi-line reply the code of its first
 * line? `first` is that line's code, or NULL for the first line.
 * Hand-written: libcurl's reader is not exposed, and libetpan's has no
 * bytes-in-memory entry point. NULL if so; else what is wrong. */
static const char *line_why(const char *l, size_t n, const char *first)
{
	if (n < 3 || !isdigit((unsigned char)l[0]) || !isdigit((unsigned char)l[1]) ||
	    !isdigit((unsigned char)l[2]) || (n > 3 && l[3] != ' ' && l[3] != '-'))
		return "not an SMTP reply";
	if (l[0] < '2' || l[0] > '5')
		return l[0] == '1' ? "a 1xx reply, which SMTP does not have" : "not an SMTP reply";
	if (first && memcmp(l, first, 3))
		return "a multi-line reply whose lines have different codes";
	return NULL;
}

/* line_why on a line as read: 0 if it is one; else -1 with c->errbuf
 * saying what is wrong. */
static int line_ok(struct slot *c, const char *l, size_t n, const char *first)
{
	while (n && (l[n - 1] == '\n' || l[n - 1] == '\r'))
		n--;
	const char *why = line_why(l, n, first);
	if (!why)
		return 0;
	snprintf(c->errbuf, sizeof c->errbuf, "%s: %.*s", why, (int)(n > 60 ? 60 : n), l);
	clean_text(c->errbuf);
	return -1;
}

/* An EHLO keyword at the start of a line's text (after "250-"), on its
 * own or followed by parameters. */
static int ehlo_has(const char *text, size_t n, const char *kw)
{
	size_t k = strlen(kw);
	return n >= k && !strncasecmp(text, kw, k) &&
	       (n == k || text[k] == ' ' || text[k] == '=' || text[k] == '\r' || text[k] == '\n');
}

/* A line of libcurl's EHLO reply: the capability it names. The EHLO is
 * libcurl's (it must know STARTTLS and AUTH before herald has the
 * connection), and herald reads its reply here, through line_why like
 * every other reply, rather than send a second EHLO of its own once
 * connected: that would cost every connection (and every reconnect) one
 * more round trip, measured on loopback against tests/smtpd.py at
 * 0.16 ms beside 1.0 ms for connect, greeting and EHLO together, and a
 * remote relay's whole round trip (20 to 100 ms) elsewhere, for
 * capabilities libcurl's EHLO already stated; and it would change what
 * every server sees of herald. A line that is no reply line names
 * nothing, however libcurl took it. */
static void ehlo_line(struct slot *c, const char *data, size_t size)
{
	size_t n = size;
	while (n && (data[n - 1] == '\n' || data[n - 1] == '\r'))
		n--;
	if (n < 4 || line_why(data, n, c->curline.len >= 3 ? c->curline.p : NULL) ||
	    strncmp(data, "250", 3))
		return;
	const char *kw = data + 4;
	size_t k = size - 4;
	c->caps_auth |= ehlo_has(kw, k, "AUTH") && k > 4 && (kw[4] == ' ' || kw[4] == '=');
	c->caps_pipe |= ehlo_has(kw, k, "PIPELINING");
	c->caps_chunk |= ehlo_has(kw, k, "CHUNKING");
	if (ehlo_has(kw, k, "SIZE") && k > 5)
		c->caps_size = strtol(kw + 5, NULL, 10);
}

void reply_curl_line(struct slot *c, const char *data, size_t size)
{
	if (c->in_ehlo)
		ehlo_line(c, data, size);
	if (!reply_line(c, data, size))
		return;
	if (c->in_auth && strncmp(data, "334", 3))
		c->in_auth = 0;
	/* At a close curl says QUIT; its "221 Bye" must not hide the reply
	 * that failed. */
	if (!strcasecmp(c->last_cmd, "QUIT") && c->reply.len) {
		buf_reset(&c->curline);
		return;
	}
	buf_reset(&c->reply);
	if (buf_add(&c->reply, c->curline.p ? c->curline.p : "", c->curline.len) < 0)
		c->reply_oom = 1;
	buf_reset(&c->curline);
	snprintf(c->reply_cmd, sizeof c->reply_cmd, "%s", c->last_cmd);
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
		conn_trace(c, '<', base, n);
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
int reply_read(struct slot *c, enum io *e)
{
	double deadline = conn_deadline(c);
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
		enum io got = conn_recv(c, deadline);
		if (got != IO_OK) {
			*e = got;
			return 0;
		}
	}
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
int reply_fits(int code, int want, int refused)
{
	if (code >= 400 && code < 600)
		return 1;
	if (refused)
		return 0;
	return want == 354 ? code == 354 : code >= 200 && code < 300;
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

void reply_set_text(struct smtp_result *r, const char *fmt, ...)
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
		reply_set_text(r, "connection refused");
		snprintf(r->hint, sizeof r->hint, "is the server running, and is the port in smtp.url right?");
	} else if (cc == CURLE_COULDNT_CONNECT || (cc == CURLE_OPERATION_TIMEDOUT && !c->reply.len &&
		   !c->last_cmd[0] && os)) {
		char eb[128]; /* strerror_r: this runs on a connection's thread */
		reply_set_text(r, "cannot connect: %s", os ? strerror_r((int)os, eb, sizeof eb) : why);
		snprintf(r->hint, sizeof r->hint, "check the host and port in smtp.url, and that nothing between blocks them");
	} else if (cc == CURLE_OPERATION_TIMEDOUT && !c->last_cmd[0] && !c->reply.len) {
		reply_set_text(r, "timed out waiting %ld s for the greeting", p->timeout);
		if (!p->implicit)
			snprintf(r->hint, sizeof r->hint, "a port that speaks TLS from the first byte (465) needs smtps:// in smtp.url");
	} else if (!c->last_cmd[0] && !c->reply.len) {
		reply_set_text(r, "the connection closed before the greeting (%s)", why);
		if (!p->implicit)
			snprintf(r->hint, sizeof r->hint, "a port that speaks TLS from the first byte (465) needs smtps:// in smtp.url");
	} else if (cc == CURLE_OPERATION_TIMEDOUT) {
		reply_set_text(r, "timed out waiting %ld s for the reply to %s", p->timeout,
			 c->stage_cmd[0] ? c->stage_cmd : "the greeting");
	} else {
		const char *reply = c->reply.len ? buf_cstr(&c->reply) : "";
		if (*reply && r->code >= 400)
			reply_set_text(r, "%s", reply);
		else
			reply_set_text(r, "%s", why);
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
		reply_set_text(r, "login refused: %s", buf_cstr(&c->reply));
	else
		reply_set_text(r, "%s", why);
	snprintf(r->hint, sizeof r->hint, "%s", hint);
	return 1;
}

/* The connect phase as libcurl ran it (CONNECT_ONLY): greeting, EHLO,
 * STARTTLS, AUTH. */
void reply_classify_connect(struct slot *c, CURLcode cc, struct smtp_result *r)
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
		reply_set_text(r, "TLS handshake failed after STARTTLS: %s",
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

void reply_result(struct slot *c, struct smtp_result *r, enum smtp_stage st, int ok)
{
	memset(r, 0, sizeof *r);
	const char *reply = buf_cstr(&c->reply);
	parse_reply(r, reply);
	r->stage = st;
	reply_set_text(r, "%s", reply);
	if (ok)
		r->cls = SMTP_OK;
	else
		classify_refusal(r);
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
		struct smtp_result r;
		/* As a transaction takes it: a positive reply as the final
		 * dot's acceptance, a refusal at `stage`. */
		reply_result(&c, &r, code < 400 ? SMTP_STAGE_BODY : stage, code < 400);
		each(arg, &r);
		n++;
	}
	buf_free(&c.in);
	buf_free(&c.reply);
	buf_free(&c.curline);
	return code < 0 ? -1 : n;
}
