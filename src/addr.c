#include "addr.h"
#include "buf.h"
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

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
