/* web: what the web layer's modules share inside it (not for cli): the
 * server every request thread reads, and one request and its answer. */
#ifndef HERALD_WEB_H
#define HERALD_WEB_H
#include <pthread.h>
#include "input/config.h"
#include "state/listlog.h"
#include "state/signuplog.h"
#include "util/recent.h"
#include "util/addrset.h"
#include "util/buf.h"
#include <time.h>
#include "web/form.h"
#include "web/guard.h"
#include "web/serve.h"

#define WEB_SAID 8

struct web_server {
	const struct config *cfg;      /* read only */
	const struct web_opts *o;
	const char *secret;            /* read only */
	struct listlog log;            /* append from any thread (listlog.h) */
	char csp[400];                 /* read only */
	const char *prefix;            /* base_url's path ("" or "/news"), read only */
	pthread_mutex_t mu;            /* guards inflight, pending, queued, applied */
	pthread_cond_t idle;           /* inflight reached 0 */
	int inflight;
	/* Group commit of list changes to the CSV: each request queues its
	 * address (pending, numbered by queued); whoever holds list_mu
	 * applies everything queued so far in one subs_edit_unsubscribe and sets
	 * applied, so 50 requests at once cost a few rewrites of the list,
	 * not 50 threads fighting over its flock. */
	pthread_mutex_t list_mu;
	char **pending;
	size_t npending, cappending;
	unsigned long queued, applied;
	/* Signup (web/signup.c): the relay's password (read once at start,
	 * read only after); under sig_mu, the abuse limits (util/recent.h:
	 * per client, an IPv6 client by its /64, the start of its hour and
	 * its signups in it, oldest evicted first; per address, when its
	 * last confirmation mail went, never evicted while under the hour,
	 * seeded at start from signups.log, which slog appends to), and
	 * what list.log says about unsubscribes (left follows it; unsub_at:
	 * address -> time of its last unsubscribe - SIGNUP_EPOCH), which a
	 * confirmation link older than that may not undo. */
	char *password;
	pthread_mutex_t sig_mu;
	struct recent per_ip, per_addr;
	struct signuplog slog;         /* fd < 0: signup off */
	struct listlog_follow left;
	struct addrset unsub_at;
	/* Which connections are taken and their deadlines (guard.h: its
	 * own lock). */
	struct guard guard;
	/* libmicrohttpd's messages, each text at most once a minute
	 * (serve.c's mhd_logger), under said_mu: any connection thread. */
	pthread_mutex_t said_mu;
	struct web_said { char text[512]; long long at; unsigned long more; } said[WEB_SAID];
	/* What list.log's last line for each address says (1 unsubscribe,
	 * 2 subscribe, 3 unsubscribe found at start), and the reader that
	 * keeps its place in it, under follow_mu (web/unsub.c): a one-click
	 * for an address whose last line is an unsubscribe (1) is answered
	 * without another line or a pass over the list. Read up to date
	 * before each such check, so a line another process appended counts
	 * too. A line found at start may be one a killed serve never
	 * answered: its reader's retry is the first answer, and takes the
	 * whole way (line, list) as before. */
	pthread_mutex_t follow_mu;
	struct listlog_follow follow;
	struct addrset last;
	int last_bad;                  /* a line was not noted: last is not used */
};

/* web/signup.c: the signup state, before the daemon starts (seeds the
 * per-address limit from signups.log when web.signup is on); 0, or -1
 * with err. signup_close frees it (after a failed signup_open too). */
int signup_open(struct web_server *s, const struct statefile_warn *w, char *err, size_t errlen);
void signup_close(struct web_server *s);

/* web/unsub.c: the request's address, into the list (group commit). */
void webunsub_apply(struct web_server *s, const char *email);
/* web/unsub.c: a list.log line read (replayed: at start; then those the
 * one-click's check reads): 0, or -1 out of memory. Under follow_mu, or
 * before the daemon starts. */
int webunsub_note(struct web_server *s, const struct listlog_entry *e, int replayed);

struct web_req {
	const char *method;            /* "GET", "HEAD", "POST" */
	const char *path;              /* without the prefix */
	struct form query;
	const char *body;              /* POST only; body_len bytes */
	size_t body_len;
	const char *content_type;      /* or NULL */
	const char *client;            /* the client's IP, as believed */
};

struct web_resp {
	int status;
	struct buf body;
	const char *allow;             /* for a 405 */
	const char *type;              /* Content-Type, NULL: an HTML page */
	char type_buf[64];             /* where type may point */
	int images;                    /* may show https images (archive) */
	char who[80];                  /* for the log: "@domain" of the reader, or "" */
};

/* A page answer: status, title, body markup (escaped already); a NULL
 * body (a page that could not be put together) answers 500. */
void web_page(const struct web_server *s, struct web_resp *p, int status, const char *title,
	      const char *body_html);

/* web/signup.c: GET/POST /subscribe, GET/POST /confirm */
void signup_route(struct web_server *s, const struct web_req *q, struct web_resp *p);

/* web/archive.c's pages: /archive/, /archive/SLUG, /archive/feed.xml */
void archive_route(struct web_server *s, const struct web_req *q, struct web_resp *p);

/* web/unsub.c: GET and POST /unsubscribe */
void webunsub_route(struct web_server *s, const struct web_req *q, struct web_resp *p);
#endif
