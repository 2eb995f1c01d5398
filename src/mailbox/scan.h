/* scan: reading a mailbox and acting on it.
 *
 * scan_bounces: every message not yet processed is parsed (dsn.c) and
 * tied to a reader and a post: by the Message-ID of the returned message
 * in the journals, else by the VERP address, else by the recipient the
 * report names (then the post is the last one sent to that address). Each
 * bounce becomes a bounces.log line with source "dsn" and the report's
 * own date as its time; Action: delayed is counted, not logged. Messages
 * are processed in batches: parse, resolve (one pass over the journals),
 * append to the log (fsync), and only then mark them in the mailbox. A
 * line that is already in the log is not added again, so even a crash
 * between the log and the mark leaves no duplicate.
 *
 * scan_unsubscribes: every request (unsubscribe.c) is applied to the list
 * in one atomic rewrite per batch, then the messages are marked.
 *
 * Nothing is printed: per-message notes go to the callback. Returns 0 or
 * one of the SCAN_* codes, with err filled. */
#ifndef HERALD_SCAN_H
#define HERALD_SCAN_H
#include <stddef.h>
#include "input/config.h"
#include "mailbox/mailbox.h"

/* scan_bounces puts every message it reads in exactly one of the buckets
 * hard, soft, complaints, duplicates, delayed, no_failure, ignored and
 * unresolved: they add up to `messages`. */
struct scan_stats {
	long messages;     /* messages read */
	long hard, soft, complaints; /* messages that added bounces.log lines:
				       a complaint, else a hard bounce, else soft */
	long lines;        /* bounces.log lines added (a report may name several) */
	long duplicates;   /* reports whose bounces were all in the log already */
	long delayed;      /* Action: delayed and warnings only: not bounces */
	long no_failure;   /* reports that nothing failed (delivered, not-spam) */
	long ignored;      /* not a bounce / not a request: left for a human */
	long unresolved;   /* a bounce that names no reader we can use */
	long unsubscribed, already, not_listed, refused; /* unsubscribe requests */
	char action[160];  /* what happened to recognised messages */
};

struct scan_cb {
	/* One line about one message or reader, for -v and for failures. */
	void (*note)(void *arg, const char *msg);
	/* Damage found in a state file (FILE:LINE): always shown. */
	void (*warn)(void *arg, const char *msg);
	void *arg;
};

enum { SCAN_OK = 0, SCAN_USAGE = -1, SCAN_CONFIG = -2, SCAN_NOFILE = -3,
       SCAN_MAILBOX = -4, SCAN_STATE = -5, SCAN_LIST = -6 };
/* The sysexits code for a scan result. */
int scan_exitcode(int rc);

int scan_bounces(const struct config *cfg, const struct mailbox_opts *mo,
		 const struct scan_cb *cb, struct scan_stats *st, char *err,
		 size_t errlen);
/* list: the CSV to rewrite (the config's, unless the caller says). */
int scan_unsubscribes(const struct config *cfg, const struct mailbox_opts *mo,
		      const char *list, const struct scan_cb *cb,
		      struct scan_stats *st, char *err, size_t errlen);
#endif
