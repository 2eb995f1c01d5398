/* smtp: the SMTP transport. A pool of N connections, each on its own
 * thread, kept open from one message to the next; one recipient per
 * transaction, so every reader gets their own reply code and text.
 * libcurl opens each connection (connect, TLS, STARTTLS, certificate
 * checks, AUTH: CURLOPT_CONNECT_ONLY); the transactions are driven here
 * over curl_easy_send/recv: pipelined (RFC 2920: MAIL, RCPT, DATA as one
 * group, each final dot with the next envelope, one round trip a
 * message) when the server offers PIPELINING, as BDAT LAST (RFC 3030)
 * when it offers CHUNKING, one command per reply otherwise. The calls
 * below are made from one thread (the send loop's), except where one
 * says otherwise (smtp_pool_halt).
 *
 * Loopback (where AUTH may go without TLS) is decided from the addresses
 * the host resolves to, and the connections are pinned to exactly those
 * addresses (addr.h).
 *
 * Ownership: smtp_pool_new copies what it needs from opts (the password is
 * copied and wiped on smtp_pool_free). Message data passed to
 * smtp_pool_start is borrowed until its completion is reported. */
#ifndef HERALD_SMTP_H
#define HERALD_SMTP_H
#include <stddef.h>
#include "input/config.h"

struct smtp_result;

struct smtp_opts {
	const char *url;
	enum starttls_mode starttls;
	const char *username, *password;
	const char *ca_file;
	const char *helo;        /* EHLO name; the From domain by default */
	long timeout;            /* seconds, per connect and per reply */
	int no_pipelining;       /* smtp.pipelining = false: one command per
				    reply even when the server offers
				    PIPELINING (CHUNKING's BDAT still used) */
	/* -v: called with each SMTP line (credentials redacted), from the
	 * connections' threads; NULL for none. */
	void (*trace)(void *arg, const char *line);
	void *trace_arg;
	/* Runs on the connection's thread for each 2xx to the final dot,
	 * before that connection sends another message (the next envelope
	 * may be on the wire, its content is not): the place to make the
	 * acceptance durable, so a crash costs at most one message per
	 * connection whose acceptance was not recorded. Thread-safe; tag is smtp_pool_start's.
	 * A non-zero return halts the pool (smtp_pool_halt): the journal
	 * could not be written, so no connection may carry another message.
	 * Passed at creation, so no thread can run before it is set. */
	int (*accept)(void *arg, void *tag, const struct smtp_result *r);
	void *accept_arg;
	/* Runs on the connection's thread right before a transaction's first
	 * command: 0 withdraws it (SMTP_WITHDRAWN: the reader unsubscribed
	 * since it was handed over). Thread-safe; NULL admits all. */
	int (*admit)(void *arg, void *tag);
	void *admit_arg;
};

enum smtp_class {
	SMTP_OK,    /* 2xx after DATA: the server took responsibility */
	SMTP_TEMP,  /* 4xx: try again later */
	SMTP_PERM,  /* 5xx for this recipient: bounce, never retry */
	SMTP_CONN,  /* connection lost, timeout, 421: retry on a new one */
	SMTP_FATAL, /* cannot work for any message: TLS, auth, a refusal that
		       is about the sender (see smtp_sender_side); halts
		       the pool at once (smtp_pool_halt) */
	SMTP_UNCERTAIN, /* the final dot went out and no reply came, or
			   replies came out of turn (one that cannot answer
			   its command): the server may have the message
			   (RFC 5321 4.1.1.4, RFC 1047), so it is never sent
			   again on its own */
	SMTP_NOT_TRIED, /* handed over, never started: the pool was halted */
	SMTP_WITHDRAWN, /* handed over, never started: admit() said no */
};

/* Where in the session a transaction ended. */
enum smtp_stage {
	SMTP_STAGE_CONNECT, /* connect, greeting, EHLO, STARTTLS, AUTH */
	SMTP_STAGE_MAIL,
	SMTP_STAGE_RCPT,
	SMTP_STAGE_DATA,    /* the DATA command */
	SMTP_STAGE_BODY,    /* after 354: the message and its final dot */
};

struct smtp_result {
	enum smtp_class cls;
	enum smtp_stage stage;
	int code;              /* SMTP reply code, 0 if none */
	char status[16];       /* enhanced status code, "" if none */
	char text[512];        /* the server's reply, or what went wrong */
	char hint[256];        /* for SMTP_FATAL and connection failures: the
				  likely fix, naming the config key; or "" */
	int sender_side;       /* a 4xx/5xx about the sending side, not the
				  reader: never a bounce of the reader */
	/* Non-empty on the first result after this pool stopped pipelining
	 * for the rest of the run (a reply out of turn on a pipelined
	 * connection): why. Once per pool. */
	char pipelining_off[200];
	int out_of_turn;       /* SMTP_UNCERTAIN or SMTP_CONN because a reply
				  could not answer its command */
};

struct smtp_pool;

/* depth: transactions a connection may hold (1, or 2 to start the next the
 * moment the last is answered; a pipelining server's connections hold
 * one more, whose envelope goes with the last one's content; at most 64
 * connections). */
int smtp_pool_new(struct smtp_pool **out, const struct smtp_opts *o,
		  int connections, int depth, char *err, size_t errlen);
/* One connection set up the way the pool's are (connect, greeting, EHLO,
 * STARTTLS, AUTH) and closed again, before any message is handed over,
 * so a server that is down, a certificate that fails or a login the
 * server cannot take is found once instead of once per reader. Also
 * refuses a server that offers no AUTH when smtp.username is set (libcurl
 * would silently send unauthenticated). 0 when it went through; else -1
 * with r filled (cls SMTP_CONN: worth retrying later; SMTP_FATAL: not). */
int smtp_pool_probe(struct smtp_pool *p, struct smtp_result *r);
/* The largest message the server said (EHLO SIZE, RFC 1870) it takes, as
 * the last successful probe saw it; 0 when it named no limit. */
long smtp_pool_size_max(const struct smtp_pool *p);
/* Stops the pool taking work: transactions not yet started come back as
 * SMTP_NOT_TRIED; those on the wire finish (bounded by the timeout).
 * Safe from any thread. */
void smtp_pool_halt(struct smtp_pool *p);
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
/* The reply reader on bytes in memory, as a connection reads them: each
 * whole reply (multi-line ones joined) parsed and classified as a reply
 * at `stage` would be, and handed to each(). Returns how many, or -1 at
 * bytes that are no SMTP reply (a line that is not "DDD", "DDD text" or
 * "DDD-text", a 1xx, a multi-line reply whose lines' codes differ) or at
 * a reply that cannot answer a command at `stage` (a 3xx but DATA's 354;
 * a 2xx to DATA). For the fuzzer and the unit test. */
int smtp_replies_scan(const char *data, size_t len, enum smtp_stage stage,
		      void (*each)(void *arg, const struct smtp_result *r), void *arg);
/* Is a refusal about the sending side (relay access, login, client
 * host, sender address, authentication of the domain, message size)
 * rather than about this reader? Fills hint with the likely fix. The
 * rule, from RFC 3463/5248 and how Postfix, Exim, Gmail and Microsoft
 * word these replies, is in the comment above its definition. */
int smtp_sender_side(int code, const char *status, const char *text, char *hint,
		     size_t hintlen);
#endif
