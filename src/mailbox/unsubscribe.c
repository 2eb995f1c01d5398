#include "mailbox/unsubscribe.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/token.h"
#include "mailbox/mailparse.h"
#include "input/subscribers.h"
#include <csv.h>
#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libetpan/libetpan.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sysexits.h>

/* ---- requests ---------------------------------------------------------- */

/* "Re: Fwd: unsubscribe ..." -> "unsubscribe ...", or NULL. */
static const char *command(const char *s)
{
	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!strncasecmp(s, "re:", 3))
			s += 3;
		else if (!strncasecmp(s, "fwd:", 4))
			s += 4;
		else if (!strncasecmp(s, "fw:", 3))
			s += 3;
		else
			break;
	}
	if (strncasecmp(s, "unsubscribe", 11) || (s[11] && !isspace((unsigned char)s[11])))
		return NULL;
	return s + 11;
}

static int is_token(const char *w, size_t n)
{
	if (n != TOKEN_LEN)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)w[i]))
			return 0;
	return 1;
}

/* Compares in time that does not depend on where they differ. */
int unsub_parse_request(const char *msg, size_t len, const char *secret,
			char *addr, size_t addrlen, char *why, size_t whylen)
{
	char from[400], subject[400], autosub[64], from_addr[400] = "";
	addr[0] = '\0';
	mailparse_header(msg, len, "From", from, sizeof from);
	mailparse_header(msg, len, "Subject", subject, sizeof subject);
	mailparse_header(msg, len, "Auto-Submitted", autosub, sizeof autosub);
	/* The From address: the last <...>, else the whole value. */
	const char *lt = strrchr(from, '<');
	if (lt) {
		snprintf(from_addr, sizeof from_addr, "%.300s", lt + 1);
		from_addr[strcspn(from_addr, ">")] = '\0';
	} else
		snprintf(from_addr, sizeof from_addr, "%.300s", from);
	char *t = from_addr;
	while (*t == ' ')
		t++;
	memmove(from_addr, t, strlen(t) + 1);
	from_addr[strcspn(from_addr, " \t")] = '\0';
	if ((autosub[0] && strncasecmp(autosub, "no", 2)) || !strncasecmp(from_addr, "mailer-daemon@", 14) ||
	    !strncasecmp(from_addr, "postmaster@", 11))
		return set_err(why, whylen, UNSUB_NONE, "an automatic message, not a request");

	const char *args = command(subject);
	struct buf body = {0};
	char line[400];
	if (!args) {
		if (mailparse_text(msg, len, &body) < 0) {
			buf_free(&body);
			return set_err(why, whylen, UNSUB_FAIL, "out of memory");
		}
		/* The first non-empty line of the body. */
		const char *p = body.p ? body.p : "", *end = p + body.len;
		while (p < end) {
			const char *e = memchr(p, '\n', (size_t)(end - p));
			size_t l = e ? (size_t)(e - p) : (size_t)(end - p);
			size_t k = 0;
			while (k < l && isspace((unsigned char)p[k]))
				k++;
			if (k < l) {
				snprintf(line, sizeof line, "%.*s", (int)(l - k < sizeof line - 1 ? l - k : sizeof line - 1), p + k);
				line[strcspn(line, "\r")] = '\0';
				args = command(line);
				break;
			}
			p = e ? e + 1 : end;
		}
	}
	buf_free(&body);
	if (!args)
		return set_err(why, whylen, UNSUB_NONE, "no \"unsubscribe\" in the subject or first line");

	/* Words after the command: an address and/or a token. */
	char named[320] = "", token[TOKEN_LEN + 1] = "";
	const char *w = args;
	while (*w) {
		while (*w && (isspace((unsigned char)*w) || *w == '<' || *w == '>' || *w == ','))
			w++;
		size_t n = 0;
		while (w[n] && !isspace((unsigned char)w[n]) && w[n] != '<' && w[n] != '>' && w[n] != ',')
			n++;
		if (!n)
			break;
		if (memchr(w, '@', n) && n < sizeof named && !named[0])
			snprintf(named, sizeof named, "%.*s", (int)n, w);
		else if (is_token(w, n) && !token[0])
			snprintf(token, sizeof token, "%.*s", (int)n, w);
		w += n;
	}
	const char *who = named[0] ? named : from_addr;
	char reason[100];
	if (addr_valid(who, reason, sizeof reason) < 0)
		return set_err(why, whylen, UNSUB_REFUSED, "\"%s\" is not an address (%s)", who, reason);
	if (token[0]) {
		if (!secret)
			return set_err(why, whylen, UNSUB_REFUSED,
				       "request for %s carries a token but no secret is set to check it", who);
		int same = token_check(secret, who, token);
		if (same < 0)
			return set_err(why, whylen, UNSUB_FAIL, "HMAC failed");
		if (!same)
			return set_err(why, whylen, UNSUB_REFUSED, "request for %s: the token is not %s's",
				       who, who);
	} else if (named[0] && strcasecmp(named, from_addr)) {
		return set_err(why, whylen, UNSUB_REFUSED,
			       "%s asks to unsubscribe %s without that reader's token", from_addr, named);
	}
	snprintf(addr, addrlen, "%s", who);
	return UNSUB_REQUEST;
}
