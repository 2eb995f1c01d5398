/* transport: where the send loop hands its messages, behind one interface
 * (listmonk's Messenger is the model), so delivery.c knows nothing of how
 * a message leaves: SMTP through the libcurl pool (smtp.c), or a directory
 * of .eml files for --dry-run. A dry run is just another transport.
 *
 * The outcome of a message is a struct smtp_result in both: the dry-run
 * transport answers every message with SMTP_OK "dry run".
 *
 * All calls are made from the send loop's thread; the SMTP transport's
 * accept hook (smtp_opts.accept) runs on its connections' threads.
 *
 * Ownership: transport_close frees the transport. Message bytes given to
 * transport_submit are borrowed until collect reports that message. */
#ifndef HERALD_TRANSPORT_H
#define HERALD_TRANSPORT_H
#include <stddef.h>
#include "deliver/smtp.h"

struct transport;

typedef void (*transport_done_fn)(void *arg, void *tag, const struct smtp_result *r);

/* One kind of transport: what each call below does for it, on its own
 * state `impl` (transport_new's). The calls mean what the transport_
 * ones of the same name say. close frees impl. transport_smtp and
 * transport_dir are made this way; so is the scripted fake of
 * tests/unit/test_delivery.c. */
struct transport_ops {
	int (*idle)(void *impl);
	int (*busy)(void *impl);
	int (*submit)(void *impl, const char *mail_from, const char *rcpt, const char *data,
		      size_t len, void *tag, char *err, size_t errlen);
	int (*collect)(void *impl, double timeout, transport_done_fn done, void *arg);
	int (*probe)(void *impl, struct smtp_result *r);
	void (*halt)(void *impl);
	void (*close)(void *impl);
};

/* A transport of kind ops over impl (ops is borrowed, impl owned from
 * here: on failure it is closed). 0, or -1 with err (out of memory). */
int transport_new(struct transport **out, const struct transport_ops *ops, void *impl,
		  char *err, size_t errlen);

/* SMTP: a pool of `connections` connections, each holding up to `depth`
 * transactions (smtp_pool_new). */
int transport_smtp(struct transport **out, const struct smtp_opts *o, int connections,
		   int depth, char *err, size_t errlen);
/* --dry-run DIR: each message written to DIR/NNNNNN-<address>.eml; the
 * directory must exist. */
int transport_dir(struct transport **out, const char *dir, char *err, size_t errlen);

/* Room for this many more messages now. */
int transport_idle(struct transport *t);
/* Messages handed over and not yet reported. */
int transport_busy(struct transport *t);
/* Hands one message over; tag comes back with its result. 0, or a
 * sysexits code with err (the dry-run directory cannot be written;
 * libcurl refused the transfer). */
int transport_submit(struct transport *t, const char *mail_from, const char *rcpt,
		     const char *data, size_t len, void *tag, char *err, size_t errlen);
/* Waits at most timeout seconds, reporting each finished message
 * through done(); returns how many. */
int transport_collect(struct transport *t, double timeout, transport_done_fn done, void *arg);
/* Is the far end there and will it take us (smtp_pool_probe)? 0 yes. */
int transport_probe(struct transport *t, struct smtp_result *r);
/* Start nothing more (smtp_pool_halt). */
void transport_halt(struct transport *t);
void transport_close(struct transport *t);
#endif
