/* addr: e-mail and network addresses, the facts more than one module
 * needs: which mail addresses herald accepts, parsing "Name <addr>", and
 * whether a host is loopback. Addresses are compared lower-cased
 * (str_lower, buf.h) and kept as written.
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
/* Checks that addr is a bare RFC 5321 address we are willing to send to:
 * dot-atom local part (or a quoted string without CR/LF/NUL), one '@', a
 * domain of LDH labels with at least one dot, or an IP literal, and that
 * libetpan's RFC 5322 parser agrees. Returns 0, or -1 with a short reason
 * in why. */
int addr_valid(const char *addr, char *why, size_t whylen);
/* 1 when addr's domain is an address literal ("x@[192.0.2.1]",
 * "x@[IPv6:...]"): valid mail, but no one signs up with it except to
 * aim herald's mail at a host of their choosing. */
int addr_is_literal(const char *addr);
/* Splits "Name <addr>" or "addr" (libetpan's parser; the address must
 * pass addr_valid); strings malloc'd. 0, or -1. */
int addr_parse_mailbox(const char *s, char **name, char **addr);
#endif
