#include "util/addr.h"
#include "util/buf.h"
#include <arpa/inet.h>
#include <libetpan/libetpan.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int addr_sockaddr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return 0;
}

int addr_ip_is_loopback(const char *ip)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	if (inet_pton(AF_INET, ip, &v4.sin_addr) == 1)
		return addr_sockaddr_is_loopback((struct sockaddr *)&v4);
	if (inet_pton(AF_INET6, ip, &v6.sin6_addr) == 1)
		return addr_sockaddr_is_loopback((struct sockaddr *)&v6);
	return 0;
}

int addr_host_is_loopback(const char *host, int port, char *pin, size_t pinlen,
			  char *err, size_t errlen)
{
	char h[256];
	size_t n = strlen(host);
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']')
		snprintf(h, sizeof h, "%.*s", (int)(n - 2), host + 1);
	else
		snprintf(h, sizeof h, "%s", host);
	if (pin && pinlen)
		pin[0] = '\0';
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	int numeric = 0;
	struct in6_addr tmp;
	if (inet_pton(AF_INET, h, &tmp) == 1 || inet_pton(AF_INET6, h, &tmp) == 1)
		numeric = 1;
	int g = getaddrinfo(h, NULL, &hints, &res);
	if (g)
		return set_err(err, errlen, -1, "cannot resolve %s: %s", h, gai_strerror(g));
	int all = res != NULL;
	size_t off = 0;
	if (pin && pinlen && !numeric)
		off = (size_t)snprintf(pin, pinlen, "%s:%d:", h, port);
	int first = 1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (!addr_sockaddr_is_loopback(ai->ai_addr))
			all = 0;
		char ip[INET6_ADDRSTRLEN];
		const void *a = ai->ai_family == AF_INET
			? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
			: (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		if (!pin || !pinlen || numeric || off >= pinlen ||
		    !inet_ntop(ai->ai_family, a, ip, sizeof ip))
			continue;
		int w = snprintf(pin + off, pinlen - off, ai->ai_family == AF_INET6 ? "%s[%s]" : "%s%s",
				 first ? "" : ",", ip);
		if (w > 0 && (size_t)w < pinlen - off) {
			off += (size_t)w;
			first = 0;
		} else
			pin[off] = '\0';
	}
	freeaddrinfo(res);
	return all;
}

/* ---- address validation -------------------------------------------------- */

static int why_char(char *why, size_t whylen, unsigned char c,
		    const char *where)
{
	if (c > ' ' && c < 127)
		return set_err(why, whylen, -1, "invalid character '%c' in %s",
			       c, where);
	if (c == ' ')
		return set_err(why, whylen, -1, "space in %s", where);
	return set_err(why, whylen, -1, "control character 0x%02x in %s", c,
		       where);
}

static int is_atext(unsigned char c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c && strchr("!#$%&'*+-/=?^_`{|}~", c);
}

static int check_dot_atom(const char *s, size_t n, char *why, size_t whylen)
{
	if (!n)
		return set_err(why, whylen, -1, "empty local part");
	if (s[0] == '.')
		return set_err(why, whylen, -1, "local part starts with a dot");
	if (s[n - 1] == '.')
		return set_err(why, whylen, -1, "local part ends with a dot");
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.' && s[i + 1] == '.')
			return set_err(why, whylen, -1,
				       "consecutive dots in local part");
		if (s[i] != '.' && !is_atext((unsigned char)s[i]))
			return why_char(why, whylen, (unsigned char)s[i],
					"local part");
	}
	return 0;
}

/* Returns the length of the quoted string at s (quotes included), or -1.
 * Whitespace is refused although RFC 5321 allows it: libetpan drops it
 * when it parses or writes the address, so the mail would go elsewhere. */
static long scan_quoted(const char *s, char *why, size_t whylen)
{
	size_t i = 1;

	for (; s[i] && s[i] != '"'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\\') {
			unsigned char e = (unsigned char)s[++i];

			if (e < ' ' || e > '~')
				return set_err(why, whylen, -1,
					       "bad escape in quoted local part");
			continue;
		}
		if (c == '\r' || c == '\n')
			return set_err(why, whylen, -1,
				       "line break in quoted local part");
		if (c <= ' ' || c == 127)
			return why_char(why, whylen, c, "quoted local part");
	}
	if (!s[i])
		return set_err(why, whylen, -1, "unterminated quoted local part");
	if (i == 1)
		return set_err(why, whylen, -1, "empty local part");
	return (long)i + 1;
}

static int check_literal(const char *d, size_t n, char *why, size_t whylen)
{
	char ip[256];
	struct in6_addr a6;
	struct in_addr a4;

	if (n < 2 || d[n - 1] != ']' || n - 2 >= sizeof(ip))
		return set_err(why, whylen, -1, "unterminated address literal");
	memcpy(ip, d + 1, n - 2);
	ip[n - 2] = '\0';
	if (!strncasecmp(ip, "IPv6:", 5)) {
		if (inet_pton(AF_INET6, ip + 5, &a6) != 1)
			return set_err(why, whylen, -1, "invalid IPv6 literal");
		return 0;
	}
	if (inet_pton(AF_INET, ip, &a4) != 1)
		return set_err(why, whylen, -1, "invalid IPv4 literal");
	return 0;
}

static int check_label(const char *l, size_t n, char *why, size_t whylen)
{
	if (!n)
		return set_err(why, whylen, -1, "empty label in domain");
	if (n > 63)
		return set_err(why, whylen, -1,
			       "domain label longer than 63 octets");
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)l[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return why_char(why, whylen, c, "domain");
	}
	if (l[0] == '-' || l[n - 1] == '-')
		return set_err(why, whylen, -1,
			       "domain label starts or ends with a hyphen");
	return 0;
}

static int check_domain(const char *d, char *why, size_t whylen)
{
	size_t n = strlen(d), start = 0, tld = 0;

	if (!n)
		return set_err(why, whylen, -1, "empty domain");
	if (n > 255)
		return set_err(why, whylen, -1, "domain longer than 255 octets");
	if (d[0] == '[')
		return check_literal(d, n, why, whylen);
	for (size_t i = 0; i <= n; i++) {
		if (i < n && d[i] != '.')
			continue;
		if (check_label(d + start, i - start, why, whylen) < 0)
			return -1;
		tld = start;
		start = i + 1;
	}
	/* RFC 5321 allows a bare host name, but a newsletter reader's mail
	 * never lives on one: "localhost" is whichever machine sends, and a
	 * single label only resolves inside one network (a test list, or a
	 * typo for name@example.com). Address literals stay accepted: they
	 * name one host on purpose. */
	if (!strcasecmp(d + tld, "localhost"))
		return set_err(why, whylen, -1,
			       "localhost is the machine herald runs on, not a reader's mail domain");
	if (!tld)
		return set_err(why, whylen, -1,
			       "domain has no dot: a bare host name only reaches a machine on the "
			       "local network");
	if (strspn(d + tld, "0123456789") == n - tld)
		return set_err(why, whylen, -1, "numeric top-level domain");
	return 0;
}

static int check_strict(const char *addr, char *why, size_t whylen)
{
	size_t loclen;

	for (const char *p = addr; *p; p++)
		if ((unsigned char)*p >= 0x80)
			return set_err(why, whylen, -1,
				       "non-ASCII address (SMTPUTF8 is not supported)");
	if (addr[0] == '"') {
		long q = scan_quoted(addr, why, whylen);

		if (q < 0)
			return -1;
		loclen = (size_t)q;
		if (!addr[loclen])
			return set_err(why, whylen, -1, "missing @");
		if (addr[loclen] != '@')
			return set_err(why, whylen, -1,
				       "text after quoted local part");
	} else {
		const char *at = strchr(addr, '@');

		if (!at)
			return set_err(why, whylen, -1, "missing @");
		loclen = (size_t)(at - addr);
		if (check_dot_atom(addr, loclen, why, whylen) < 0)
			return -1;
	}
	const char *domain = addr + loclen + 1;

	if (strchr(domain, '@'))
		return set_err(why, whylen, -1, "more than one @");
	if (loclen > 64)
		return set_err(why, whylen, -1,
			       "local part longer than 64 octets");
	if (check_domain(domain, why, whylen) < 0)
		return -1;
	/* RFC 5321's path limit, 256 octets with the angle brackets. */
	if (strlen(addr) > 254)
		return set_err(why, whylen, -1, "address longer than 254 octets");
	return 0;
}

/* libetpan is lenient (it accepts "joy@@x", drops spaces, takes a display
 * name), so it only counts as agreeing if it consumed everything and gave
 * back exactly the bytes it was given. */
static int etpan_agrees(const char *addr)
{
	struct mailimf_mailbox *mb = NULL;
	size_t len = strlen(addr), idx = 0;

	if (mailimf_mailbox_parse(addr, len, &idx, &mb) != MAILIMF_NO_ERROR)
		return 0;
	int ok = idx == len && !mb->mb_display_name &&
		 !strcmp(mb->mb_addr_spec, addr);

	mailimf_mailbox_free(mb);
	return ok;
}

int addr_valid(const char *addr, char *why, size_t whylen)
{
	if (!addr || !*addr)
		return set_err(why, whylen, -1, "empty address");
	/* Both must accept. The strict check goes first only because its
	 * reasons are specific; libetpan's verdict is just yes or no. */
	if (check_strict(addr, why, whylen) < 0)
		return -1;

	/* libetpan stops at the ':' of "[IPv6:...]", so an address literal
	 * (already checked by inet_pton) is replaced by a stand-in domain
	 * and only the local part goes through libetpan. */
	const char *at = strrchr(addr, '@');
	char tmp[64 + sizeof("@example.invalid")];

	if (at[1] == '[') {
		snprintf(tmp, sizeof(tmp), "%.*s@example.invalid",
			 (int)(at - addr), addr);
		addr = tmp;
	}
	if (!etpan_agrees(addr))
		return set_err(why, whylen, -1,
			       "not a plain RFC 5322 address");
	return 0;
}

int addr_is_literal(const char *addr)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;
	return at && at[1] == '[';
}

int addr_parse_mailbox(const char *s, char **name, char **addr)
{
	size_t idx = 0;
	struct mailimf_mailbox *mb = NULL;
	*name = *addr = NULL;
	if (mailimf_mailbox_parse(s, strlen(s), &idx, &mb) != MAILIMF_NO_ERROR)
		return -1;
	int rc = -1;
	if (idx == strlen(s) && addr_valid(mb->mb_addr_spec, NULL, 0) == 0) {
		*name = strdup(mb->mb_display_name ? mb->mb_display_name : "");
		*addr = strdup(mb->mb_addr_spec);
		rc = (*name && *addr) ? 0 : -1;
	}
	mailimf_mailbox_free(mb);
	if (rc < 0) {
		free(*name);
		free(*addr);
		*name = *addr = NULL;
	}
	return rc;
}
