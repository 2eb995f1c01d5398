/* addr: facts about network addresses that more than one module needs.
 *
 * "Loopback" is decided from addresses, never from how a host name is
 * spelt: `127.mail.example.com` is a remote host, and a password must not
 * go to it in clear. */
#ifndef HERALD_ADDR_H
#define HERALD_ADDR_H
#include <stddef.h>
#include <sys/socket.h>

/* 1 for 127.0.0.0/8, ::1 and ::ffff:127.x.y.z. */
int addr_sockaddr_is_loopback(const struct sockaddr *sa);
/* The same for a numeric address string (CURLINFO_PRIMARY_IP). */
int addr_ip_is_loopback(const char *ip);
/* Resolves host (an IPv6 literal may keep its brackets) and tells whether
 * every address it has is loopback: 1 yes, 0 no, -1 it does not resolve
 * (err says why). When pin is non-NULL it receives the addresses as
 * libcurl's CURLOPT_RESOLVE entry "host:port:addr,addr", so the
 * connection goes to exactly the addresses that were judged (no second
 * lookup that could answer differently); "" for a numeric host. */
int addr_host_is_loopback(const char *host, int port, char *pin, size_t pinlen,
			  char *err, size_t errlen);
#endif
