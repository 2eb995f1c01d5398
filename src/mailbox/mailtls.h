/* mailtls: TCP connections for the mailbox protocols, and TLS on them as
 * a libetpan stream (GnuTLS). libetpan's own TLS streams do not verify the
 * server's certificate; these do, always: the chain against the system
 * trust store (or ca_file alone when it is set) and the host name (or IP
 * address) the user wrote.
 *
 * Ownership: a stream from mailtls_stream owns the fd and the TLS session;
 * mailstream_close frees all of it. */
#ifndef HERALD_MAILTLS_H
#define HERALD_MAILTLS_H
#include <stddef.h>
#include <libetpan/libetpan.h>

/* Connects to host:port within timeout seconds. Returns the fd, or -1
 * with err. *loopback: 1 when the peer is 127.0.0.0/8 or ::1. */
int mailtls_connect(const char *host, int port, long timeout, int *loopback,
		    char *err, size_t errlen);
/* A libetpan low-level stream that speaks TLS over fd (handshake done and
 * verified). On failure fd is left open for the caller, NULL is returned. */
mailstream_low *mailtls_low(int fd, const char *host, const char *ca_file,
			    long timeout, char *err, size_t errlen);
#endif
