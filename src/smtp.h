/* smtp: the libcurl transport. A pool of N connections, each an easy
 * handle on its own thread that keeps its connection open from one message
 * to the next; one recipient per transaction, so every reader gets their
 * own reply code and text. All calls below are made from one thread.
 *
 * Ownership: smtp_pool_new copies what it needs from opts (the password is
 * copied and wiped on smtp_pool_free). Message data passed to
 * smtp_pool_start is borrowed until its completion is reported. */
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
	/* -v: called with each SMTP line (credentials redacted), from the
	 * connections' threads; NULL for none. */
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
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

struct smtp_pool;

/* depth: transactions a connection may hold (1, or 2 to start the next the
 * moment the last is answered; at most 64 connections). */
int smtp_pool_new(struct smtp_pool **out, const struct smtp_opts *o,
		  int connections, int depth, char *err, size_t errlen);
/* fn runs on the connection's thread for each 2xx, before that connection
 * starts another transaction: the place to make the acceptance durable.
 * It must be thread-safe. */
typedef void (*smtp_accept_fn)(void *arg, void *tag, const struct smtp_result *r);
void smtp_pool_on_accept(struct smtp_pool *p, smtp_accept_fn fn, void *arg);
/* Room for new transactions. */
int smtp_pool_idle(const struct smtp_pool *p);
/* Transactions under way. */
int smtp_pool_busy(const struct smtp_pool *p);
/* Starts one transaction on a free slot; tag comes back with the result.
 * Returns 0, or -1 when no slot is free or libcurl refuses. */
int smtp_pool_start(struct smtp_pool *p, const char *mail_from,
		    const char *rcpt, const char *data, size_t len, void *tag);
/* Waits at most `timeout` seconds for transactions to finish and reports
 * each finished one through done(). Returns how many finished. */
typedef void (*smtp_done_fn)(void *arg, void *tag, const struct smtp_result *r);
int smtp_pool_run(struct smtp_pool *p, double timeout, smtp_done_fn done,
		  void *arg);
void smtp_pool_free(struct smtp_pool *p);
/* 1 when host of an smtp[s]:// URL is loopback (AUTH may go in clear). */
int smtp_url_is_loopback(const char *url);
#endif
