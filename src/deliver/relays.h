/* relays: the relays one send uses (smtp = ( {...}, {...} ), or the one
 * of smtp = {...}), each a transport with its own rate windows, and the
 * choice of relay for the next message.
 *
 * The choice is a smooth weighted round-robin (the one nginx uses for
 * its upstreams) over the relays in the round: in the run, not waiting
 * for a reconnect, and their own windows open. Each adds its weight to
 * its credit; the one with the most credit that has a connection free
 * takes the message and pays the sum of the weights. So with weights 3
 * and 1 the messages go A A B A, A A B A, ... A relay whose window is
 * full, or that is out or reconnecting, is not in the round: the others
 * share its readers and nobody waits for it. A relay whose connections
 * are all busy is passed over too, but keeps gaining credit; once it is
 * owed more messages than its connections hold, the next message waits
 * for it. That keeps the split what the weights say (within that many
 * messages) when the relays cannot keep up, instead of following their
 * speed; the price is that a relay slower than its share paces the run.
 * Each message goes to one relay; the send policy (outcome.c) decides
 * what a failure means and when a relay is taken out.
 *
 * The dry run is one relay too, its transport the directory.
 *
 * All of it is the send loop's thread's: nothing here is shared with the
 * connections' threads. Ownership: relays_add takes the transport;
 * relays_close frees every one. */
#ifndef HERALD_RELAYS_H
#define HERALD_RELAYS_H
#include <stddef.h>
#include "deliver/ratelimit.h"
#include "deliver/transport.h"
#include "input/config.h"

struct relay {
	const struct smtp_conf *conf; /* NULL for the dry run */
	const char *name, *url;       /* conf's, or "dry-run" and the directory */
	struct transport *tx;
	struct ratelimit rl;          /* its own windows (none: no limit) */
	int windows;                  /* it has a per_minute/hour/day window */
	int weight, credit;
	/* The send policy's bookkeeping (outcome.c). */
	int out;                      /* taken out for the rest of the run */
	char why[400];                /* what took it out */
	int conn_failures;            /* in a row, nothing delivered between */
	int uncertain_row;            /* unanswered final dots in a row */
	int trouble;                  /* a connection failed before MAIL:
					 probe before handing it more */
	struct smtp_result trouble_res;
	int reconnects;               /* probe rounds with no reply since */
	char pipelining_off[200];     /* why its pool stopped pipelining
					 (replies out of turn), or "" */
	long sent, bounced, deferred, uncertain;
};

struct relays {
	struct relay r[CONFIG_RELAYS_MAX];
	size_t n;
};

/* Adds a relay (conf NULL: the dry run, whose url is then `url`) with
 * its own windows `rate` (NULL: none). Takes tx, also on failure. 0, or
 * -1 with err (out of memory, more than CONFIG_RELAYS_MAX). */
int relays_add(struct relays *rs, const struct smtp_conf *conf, const char *url,
	       const struct rate_conf *rate, struct transport *tx, double now, char *err,
	       size_t errlen);
/* Relays still in the run. */
size_t relays_in(const struct relays *rs);
/* Room for this many more messages now, over the relays that are in and
 * not waiting for a reconnect. */
int relays_idle(const struct relays *rs);
/* Messages handed over and not reported yet, over all relays. */
int relays_busy(const struct relays *rs);
/* The relay for the next message, by weight (see above), avoiding
 * `avoid` (an index, or -1) while another can take it. -1 when none can
 * now: *wait is then the seconds until a relay's window lets one go (0
 * when what holds them is busy connections), and *which that window. */
int relays_pick(struct relays *rs, double now, int avoid, double *wait, const char **which);
/* Waits at most timeout seconds for results from any relay, reporting
 * each through done(); returns how many. */
int relays_collect(struct relays *rs, double timeout, transport_done_fn done, void *arg);
/* Start nothing more on any relay. */
void relays_halt(struct relays *rs);
void relays_close(struct relays *rs);
#endif
