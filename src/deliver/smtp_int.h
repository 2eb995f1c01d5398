/* smtp_int: what the SMTP transport's files share, and no one else sees.
 *
 *   smtp.c        the pool: its threads, the queue, halting, the public API
 *   smtp_conn.c   one connection: libcurl's connect (and its side of the
 *                 session, read through the debug callback), bytes in and
 *                 out, QUIT, the staleness check
 *   smtp_reply.c  reading replies (one reader for libcurl's lines and for
 *                 herald's bytes) and classifying them, smtp_sender_side
 *   smtp_txn.c    one transaction on a connection: lockstep, pipelined,
 *                 chunked
 *
 * Which thread owns what (docs/ARCHITECTURE.md, "Threads"): a struct txn
 * in a slot's queue or done array, and those arrays, belong to pool->mu;
 * a txn in wire[] and every field of a slot marked "worker thread only"
 * belong to that slot's worker (for the probe slot, the main thread);
 * inflight and the pool's busy, pipelining and size_max to the main
 * thread. The files below smtp.c run on the worker, except the probe's
 * conn_open and conn_close and smtp_replies_scan, which run on the caller's
 * thread with a slot of their own. */
#ifndef HERALD_SMTP_INT_H
#define HERALD_SMTP_INT_H
#include "deliver/smtp.h"
#include "util/buf.h"
#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>

/* One connection: a thread with its own easy handle. libcurl does what it
 * does well, and what must not be got wrong: connect, TLS, STARTTLS, the
 * certificate check, AUTH (CURLOPT_CONNECT_ONLY stops it after AUTH).
 * The transaction phase is driven here, over curl_easy_send/recv on that
 * connection: libcurl 7.88 sends each SMTP command only after the reply
 * to the last, four round trips a message, and scans the body byte by
 * byte for dots to escape. Here, when the server offers PIPELINING (RFC
 * 2920), MAIL, RCPT and DATA go as one group and the final dot goes with
 * the next message's envelope: one round trip a message. With CHUNKING
 * (RFC 3030) the message goes as BDAT LAST, without a dot. Without
 * PIPELINING every command waits for its reply, as before.
 *
 * At most one message per connection has its content out and no reply
 * recorded: the next message's envelope may be on the wire, but its
 * content goes only after the acceptance of the last one is durable
 * (smtp_opts.accept). The main thread builds messages, paces them and
 * records results; workers only talk SMTP. */
struct txn {
	char from[600], to[600];
	const char *data;
	size_t len;
	void *tag;
	struct smtp_result result;
	/* Worker thread only: */
	int failed;    /* result is final (a refusal, a lost connection) */
	int mail_ok;   /* the server holds our MAIL: RSET before the next */
	int rset;      /* its envelope begins with an RSET */
};

/* Transactions a connection holds: one on the wire with its content out,
 * one with its envelope out, and the next ready to go with that one's
 * content (smtp_pool_idle). */
#define DEPTH_MAX 4

struct slot {
	struct smtp_pool *pool;
	CURL *tpl;           /* the configured handle, never connected:
				each connection is a duplicate of it */
	CURL *curl;          /* the connection, NULL when there is none */
	pthread_t thread;
	int started;
	/* Guarded by pool->mu: */
	pthread_cond_t work;          /* this worker's wake-up, so handing one
					 connection a message wakes one thread */
	struct txn queue[DEPTH_MAX];  /* handed over, not yet started */
	int qhead, qlen;
	struct txn done[DEPTH_MAX];   /* finished, not yet collected */
	int ndone;
	/* Main thread only: transactions handed over and not collected. */
	int inflight;
	/* Worker thread only (and the probe's, on the main thread): */
	struct txn wire[2];  /* taken from the queue, on the wire */
	curl_socket_t sock;
	struct buf in, out;  /* received and not yet parsed; to send */
	/* An append to out failed: out holds part of what was meant, so
	 * conn_flush sends none of it (a DATA body cut short by a failed
	 * allocation would otherwise be accepted, and journaled, as whole). */
	int out_oom;
	/* An append to reply or curline failed: the reply text is partial
	 * (the code is still read from the wire), said so in messages. */
	int reply_oom;
	size_t inpos;
	int owed;            /* commands written whose replies are unread */
	int proto;           /* a reply out of turn since the last write */
	char proto_why[200]; /* ... what was wrong with it */
	int need_rset;       /* the last transaction left a MAIL open */
	char errbuf[CURL_ERROR_SIZE];
	/* The last complete server reply, kept by the debug callback (libcurl
	 * exposes the code but not the text) and by reply_read. */
	struct buf reply, curline;
	char last_cmd[16];
	char reply_cmd[16];
	char stage_cmd[16]; /* the last command but QUIT, RSET and NOOP, which
			       curl sends after a failure: where it ended */
	int caps_auth;  /* the latest EHLO reply offered AUTH */
	long caps_size; /* ... and its SIZE limit (RFC 1870), 0 if none */
	int caps_pipe;  /* ... PIPELINING (RFC 2920) */
	int caps_chunk; /* ... CHUNKING (RFC 3030) */
	int in_ehlo;
	int in_auth;    /* between AUTH and its final reply */
	int curl_done;  /* libcurl's part is over: its callback reads nothing */
	int id;         /* 1-based, for the transcript */
};

struct smtp_pool {
	struct slot *slots;
	int n, depth, busy;     /* busy: transactions in flight, main only */
	/* Written by smtp_pool_new before any thread starts, then only
	 * read (the password is wiped once the handles hold it): */
	char *url;
	char *password;
	struct curl_slist *pin;  /* CURLOPT_RESOLVE: the judged addresses */
	int loopback, implicit;
	enum starttls_mode starttls;
	char *username, *ca_file;
	long timeout;
	int (*accept)(void *arg, void *tag, const struct smtp_result *r);
	void *accept_arg;
	int (*admit)(void *arg, void *tag);
	void *admit_arg;
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	pthread_mutex_t mu;
	pthread_cond_t done;
	struct slot probe;      /* main thread only (smtp_pool_probe) */
	long size_max;          /* the probe's EHLO SIZE, 0 if none: main
				   thread only */
	int pipelining;         /* the probe saw PIPELINING (and nopipe is 0):
				   main thread only */
	int quit;     /* guarded by mu: the pool is being freed */
	int halted;   /* guarded by mu: start nothing more */
	/* Guarded by mu: no more pipelining to this server in this run
	 * (smtp.pipelining = false, or a reply out of turn on a pipelined
	 * connection, nopipe_why saying which); nopipe_told once a result
	 * carried it to the main thread (smtp_result.pipelining_off). */
	int nopipe, nopipe_told;
	char nopipe_why[200];
};

/* IO_PROTO: a reply that cannot answer the command it is read for (out
 * of turn, malformed, one too many): what was read is no longer known to
 * be any command's own. */
enum io { IO_OK, IO_TIMEOUT, IO_CLOSED, IO_ERROR, IO_PROTO };

/* ---- smtp.c: the pool ---------------------------------------------------- */

/* t's outcome to the main thread (smtp_opts.accept first). */
void pool_finish(struct slot *c, struct txn *t);
/* The next transaction from c's queue into `into`, NULL when none (and
 * wait is 0) or the pool is closing. */
struct txn *pool_take(struct slot *c, int wait, struct txn *into);
/* Every connection of the pool stops pipelining (c->proto_why says why). */
void pool_pipelining_off(struct slot *c);
int pool_pipelining_on(struct smtp_pool *p);

/* ---- smtp_conn.c: the connection ------------------------------------------ */

int conn_slot_init(struct smtp_pool *p, struct slot *c);
void conn_slot_free(struct slot *c);
/* libcurl connects: greeting, EHLO, STARTTLS, AUTH. 0, or -1 with r
 * filled and no connection. */
int conn_open(struct slot *c, struct smtp_result *r);
/* QUIT when healthy, then the connection is cut. */
void conn_close(struct slot *c, int healthy);
/* A reply or an end of file between transactions: not to be used again. */
int conn_stale(struct slot *c);
/* -v: one SMTP line to the transcript ('>' out, '<' in). */
void conn_trace(struct slot *c, char dir, const char *data, size_t size);
/* Now plus smtp.timeout, on the monotonic clock. */
double conn_deadline(const struct slot *c);
/* Appends to c->out; a failure poisons all of it (out_oom). */
void conn_out_add(struct slot *c, const void *data, size_t len);
/* One command line into c->out, its reply owed. */
void conn_add_cmd(struct slot *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends c->out whole. */
enum io conn_flush(struct slot *c);
/* More bytes into c->in, waiting until deadline. */
enum io conn_recv(struct slot *c, double deadline);

/* ---- smtp_reply.c: replies ------------------------------------------------ */

/* The next reply off the connection: its code, or 0 with *e saying why. */
int reply_read(struct slot *c, enum io *e);
/* One line libcurl read (its debug callback): the reply and the EHLO
 * capabilities, through the same reader as reply_read's. */
void reply_curl_line(struct slot *c, const char *data, size_t size);
/* Can `code` answer a command that wants `want`? */
int reply_fits(int code, int want, int refused);
/* c->reply as r: accepted (ok) or a refusal classified, at stage st. */
void reply_result(struct slot *c, struct smtp_result *r, enum smtp_stage st, int ok);
/* The connect phase as libcurl ran it, into r. */
void reply_classify_connect(struct slot *c, CURLcode cc, struct smtp_result *r);
/* r->text from a format, control characters blanked. */
void reply_set_text(struct smtp_result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- smtp_txn.c: transactions --------------------------------------------- */

/* Each returns 1 if the connection can carry another message. */
int txn_lockstep(struct slot *c, struct txn *t);
int txn_chunked(struct slot *c, struct txn *t);
int txn_pipeline(struct slot *c, struct txn *t, struct txn **redo);
#endif
