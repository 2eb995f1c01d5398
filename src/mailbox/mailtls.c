#include "mailbox/mailtls.h"
#include "util/addr.h"
#include "util/buf.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return 0;
	return addr_sockaddr_is_loopback((struct sockaddr *)&ss);
}

int mailtls_connect(const char *host, int port, long timeout, int *loopback,
		    char *err, size_t errlen)
{
	char ports[16];
	snprintf(ports, sizeof ports, "%d", port);
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_family = AF_UNSPEC;
	int g = getaddrinfo(host, ports, &hints, &res);
	if (g)
		return set_err(err, errlen, -1, "%s: %s", host, gai_strerror(g));
	int fd = -1, saved = 0;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		/* Non-blocking connect, so the timeout covers it too. */
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
		int c = connect(fd, ai->ai_addr, ai->ai_addrlen);
		if (c < 0 && errno == EINPROGRESS) {
			struct pollfd p = {fd, POLLOUT, 0};
			int n = poll(&p, 1, (int)(timeout * 1000));
			int so = 0;
			socklen_t sl = sizeof so;
			if (n == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
				c = 0;
			else
				errno = n == 0 ? ETIMEDOUT : so ? so : errno;
		}
		if (c < 0) {
			saved = errno;
			close(fd);
			fd = -1;
			continue;
		}
		fcntl(fd, F_SETFL, fl);
		struct timeval tv = {timeout, 0};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	}
	freeaddrinfo(res);
	if (fd < 0)
		return set_err(err, errlen, -1, "cannot connect to %s port %d: %s", host, port,
			       strerror(saved ? saved : ECONNREFUSED));
	*loopback = is_loopback(fd);
	return fd;
}

struct tls {
	gnutls_session_t s;
	gnutls_certificate_credentials_t cred;
	int fd;
};

static ssize_t tls_read(mailstream_low *l, void *buf, size_t n)
{
	struct tls *t = l->data;
	for (;;) {
		ssize_t r = gnutls_record_recv(t->s, buf, n);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			continue;
		/* A peer that closes without close_notify ends the stream
		 * like EOF: the protocol layer knows if that was early. */
		if (r == GNUTLS_E_PREMATURE_TERMINATION)
			return 0;
		return r < 0 ? -1 : r;
	}
}

static ssize_t tls_write(mailstream_low *l, const void *buf, size_t n)
{
	struct tls *t = l->data;
	for (;;) {
		ssize_t r = gnutls_record_send(t->s, buf, n);
		if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
			continue;
		return r < 0 ? -1 : r;
	}
}

static int tls_close(mailstream_low *l)
{
	struct tls *t = l->data;
	if (t->fd >= 0) {
		gnutls_bye(t->s, GNUTLS_SHUT_WR);
		close(t->fd);
		t->fd = -1;
	}
	return 0;
}

static int tls_get_fd(mailstream_low *l)
{
	return ((struct tls *)l->data)->fd;
}

static void tls_free(mailstream_low *l)
{
	struct tls *t = l->data;
	if (t) {
		if (t->fd >= 0)
			close(t->fd);
		gnutls_deinit(t->s);
		gnutls_certificate_free_credentials(t->cred);
		free(t);
	}
	free(l);
}

static void tls_cancel(mailstream_low *l)
{
	(void)l;
}

static struct mailstream_cancel *tls_get_cancel(mailstream_low *l)
{
	(void)l;
	return NULL;
}

static carray *tls_chain(mailstream_low *l)
{
	(void)l;
	return NULL;
}

static int tls_no_idle(mailstream_low *l)
{
	(void)l;
	return -1;
}

static mailstream_low_driver tls_driver = {
	tls_read, tls_write, tls_close, tls_get_fd, tls_free, tls_cancel,
	tls_get_cancel, tls_chain, tls_no_idle, tls_no_idle, tls_no_idle,
};

mailstream_low *mailtls_low(int fd, const char *host, const char *ca_file,
			    long timeout, char *err, size_t errlen)
{
	struct tls *t = calloc(1, sizeof *t);
	if (!t) {
		set_err(err, errlen, -1, "out of memory");
		return NULL;
	}
	t->fd = -1;
	int r = gnutls_certificate_allocate_credentials(&t->cred);
	if (r < 0)
		goto fail;
	if (ca_file && *ca_file) {
		r = gnutls_certificate_set_x509_trust_file(t->cred, ca_file, GNUTLS_X509_FMT_PEM);
		if (r <= 0) {
			set_err(err, errlen, -1, "%s: no usable CA certificate (%s)", ca_file,
				r < 0 ? gnutls_strerror(r) : "none found");
			goto out;
		}
	} else if ((r = gnutls_certificate_set_x509_system_trust(t->cred)) < 0)
		goto fail;
	if ((r = gnutls_init(&t->s, GNUTLS_CLIENT)) < 0 ||
	    (r = gnutls_set_default_priority(t->s)) < 0 ||
	    (r = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE, t->cred)) < 0)
		goto fail;
	struct in6_addr a6;
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
		gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, host, strlen(host));
	gnutls_session_set_verify_cert(t->s, host, 0);
	gnutls_transport_set_int(t->s, fd);
	gnutls_handshake_set_timeout(t->s, (unsigned)(timeout * 1000));
	gnutls_record_set_timeout(t->s, (unsigned)(timeout * 1000));
	do
		r = gnutls_handshake(t->s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		unsigned st = gnutls_session_get_verify_cert_status(t->s);
		gnutls_datum_t out = {0};
		gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0);
		set_err(err, errlen, -1, "%s: TLS certificate not trusted: %s%s", host,
			out.data ? (char *)out.data : "verification failed",
			ca_file && *ca_file ? "" : " (set ca_file for a private CA)");
		gnutls_free(out.data);
		goto out;
	}
	if (r < 0)
		goto fail;
	mailstream_low *l = mailstream_low_new(t, &tls_driver);
	if (!l) {
		set_err(err, errlen, -1, "out of memory");
		goto out;
	}
	t->fd = fd;
	return l;
fail:
	set_err(err, errlen, -1, "%s: TLS: %s", host, gnutls_strerror(r));
out:
	if (t->s)
		gnutls_deinit(t->s);
	if (t->cred)
		gnutls_certificate_free_credentials(t->cred);
	free(t);
	return NULL;
}
