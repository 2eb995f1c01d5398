/* smtp: the libcurl transport. One easy handle per connection, reused for
 * many messages (curl keeps the connection open between transfers); one
 * recipient per transaction, so every reader gets their own reply code.
 *
 * Ownership: smtp_new copies what it needs from opts except password,
 * which it copies and wipes on smtp_free. */
#ifndef HERALD_SMTP_H
#define HERALD_SMTP_H
#include <stddef.h>
#include "config.h"

struct smtp_opts {
	const char *url;
	enum starttls_mode starttls;
	const char *username, *password;
	const char *ca_file;
	const char *helo;        /* EHLO name; the From domain by default */
	long timeout;            /* seconds, per connect and per reply */
};

enum smtp_class {
	SMTP_OK,    /* 2xx after DATA: the server took responsibility */
	SMTP_TEMP,  /* 4xx: try again later */
	SMTP_PERM,  /* 5xx for this recipient: bounce, never retry */
	SMTP_CONN,  /* connection lost, timeout, 421: retry on a new one */
	SMTP_FATAL, /* cannot work for any message: TLS, auth, sender refused */
};

struct smtp_result {
	enum smtp_class cls;
	int code;              /* SMTP reply code, 0 if none */
	char status[16];       /* enhanced status code, "" if none */
	char text[512];        /* the server's reply, or curl's error */
	int data_sent;         /* the message body went out (the server may
				  have it even when the reply was lost) */
};

struct smtp_conn;

int smtp_new(struct smtp_conn **out, const struct smtp_opts *o, char *err,
	     size_t errlen);
void smtp_send(struct smtp_conn *c, const char *mail_from, const char *rcpt,
	       const char *data, size_t len, struct smtp_result *r);
void smtp_free(struct smtp_conn *c);
/* 1 when host of an smtp[s]:// URL is loopback (AUTH may go in clear). */
int smtp_url_is_loopback(const char *url);
#endif
