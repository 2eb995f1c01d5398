/* serve: herald serve, the HTTP side of the newsletter (libmicrohttpd),
 * meant to sit behind a TLS reverse proxy.
 *
 * Routes go by path only, relative to web.base_url's path when the
 * proxy passes that on: GET and POST /unsubscribe (web/unsub.c); with
 * web.signup, /subscribe and /confirm (web/signup.c). A
 * request that changes the list is appended to state_dir/list.log and
 * synced before it is answered (state/listlog.h), then applied to the
 * CSV with subs_edit_unsubscribe; at start every line of list.log is applied again,
 * so a kill between the two loses nothing (subs_edit_unsubscribe is idempotent).
 *
 * Threads: libmicrohttpd's thread per connection (MHD_USE_THREAD_PER_
 * CONNECTION): a request may wait on the disk (fdatasync) or the list's
 * lock (flock in subs_edit_unsubscribe) without holding up any other. Each thread
 * shares with the others only struct web_server (web.h): the config and
 * secret (read only), list.log's fd (one write(2) per line on O_APPEND),
 * and the in-flight count (its mutex). Which connections are taken, and
 * how long each may take over a request, is web/guard.h's: a thread per
 * connection stays affordable because a client holds at most
 * web.connections_per_client of them, for 10 s each when it is slow.
 * The calling thread polls stop() (closing the connections past their
 * deadline meanwhile) and, when it says so, closes the listening socket
 * (MHD_quiesce_daemon), waits up to WEB_DRAIN_SECONDS for the requests
 * under way to be answered, and stops the daemon.
 *
 * Nothing is printed here: one line per request goes to log(), never with
 * a token or a whole address (the reader's domain only). */
#ifndef HERALD_SERVE_H
#define HERALD_SERVE_H
#include <stddef.h>
#include "input/config.h"

#define WEB_DRAIN_SECONDS 10
/* A connection's time to send a whole request, and to take its answer
 * (web/guard.h). */
#define WEB_REQUEST_SECONDS 10

struct web_opts {
	int (*stop)(void *arg);                 /* polled by the calling thread */
	void (*ready)(void *arg, int port);     /* listening on port */
	void (*log)(void *arg, const char *line);   /* from any thread */
	void (*warn)(void *arg, const char *msg);   /* from any thread */
	void *arg;
};

enum { WEB_OK = 0, WEB_CONFIG = -1, WEB_LISTEN = -2, WEB_STATE = -3, WEB_FAIL = -4 };
/* 0, 78 config (secret), 69 cannot listen, 73 state_dir, 71 system. */
int web_exitcode(int rc);

/* Runs until o->stop() says to stop; WEB_OK then. */
int web_serve(const struct config *cfg, const struct web_opts *o, char *err, size_t errlen);
#endif
