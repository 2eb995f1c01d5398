/* mailbox: the messages of a bounce or unsubscribe mailbox, through
 * libetpan, and the mark that keeps a second scan from reading them again.
 *
 * SOURCE is one of
 *   maildir:PATH        libetpan's maildir; processed messages go to cur/
 *                       with the S (seen) flag, and messages already seen
 *                       are skipped
 *   mbox:PATH           libetpan's mailmbox (dot + fcntl locking); the mbox
 *                       is only rewritten with --delete, so processed
 *                       messages are remembered in the seen file instead
 *   imap://[USER@]HOST[:PORT][/FOLDER]   and imaps://  (folder: INBOX)
 *                       processed messages get the keyword $HeraldDone
 *                       (\Seen where the server allows no keywords), and
 *                       UID SEARCH UNKEYWORD skips them
 *   pop3://[USER@]HOST[:PORT]            and pop3s://
 *                       POP3 has no flags: UIDLs go to the seen file
 * With delete, every message the caller recognised is deleted instead
 * (IMAP \Deleted + EXPUNGE at close, POP3 DELE, maildir unlink, mbox
 * expunge); with move_to (IMAP, maildir) it is moved to that folder. A
 * message the caller did not recognise is only marked: a human may want it.
 *
 * TLS (imaps, pop3s, STARTTLS) is GnuTLS under a libetpan stream: the
 * certificate chain and the host name are verified against the system
 * trust store, or against ca_file alone when it is set; there is no way to
 * turn that off. A password is never sent in clear except to loopback.
 *
 * Ownership: struct mailbox owns its connection; mailbox_close frees it.
 * Fetched message bytes belong to the caller (free()). */
#ifndef HERALD_MAILBOX_H
#define HERALD_MAILBOX_H
#include <stddef.h>
#include "input/config.h"
#include "state/statefile.h"

struct mailbox_opts {
	const char *source;
	const char *username;      /* when the URL names none */
	const char *password;      /* NULL: no login (maildir, mbox) */
	const char *ca_file;
	enum starttls_mode starttls; /* imap:// and pop3:// */
	long timeout;              /* seconds, network */
	const char *move_to;       /* NULL, or a folder (imap, maildir) */
	int delete;
	const char *seen_path;     /* file remembering processed mbox/POP3 messages */
	const struct statefile_warn *warn; /* damage found in the seen file */
};

struct mailbox;

enum { MAILBOX_OK = 0, MAILBOX_USAGE = -1, MAILBOX_FAIL = -2, MAILBOX_NOFILE = -3 };

/* Connects, logs in, selects, and lists the messages not yet processed.
 * MAILBOX_USAGE: SOURCE or an option is wrong; MAILBOX_NOFILE: a local
 * mailbox is missing; MAILBOX_FAIL: the server or the file failed. */
int mailbox_open(struct mailbox **out, const struct mailbox_opts *o,
		 char *err, size_t errlen);
/* Messages listed by mailbox_open (not yet processed). */
size_t mailbox_count(const struct mailbox *mb);
/* Message i (0-based) as the server has it. */
int mailbox_fetch(struct mailbox *mb, size_t i, char **data, size_t *len,
		  char *err, size_t errlen);
/* Marks message i processed: deleted or moved when recognised and so
 * configured, else flagged or remembered. Call it only after what the
 * message caused is durable. */
int mailbox_done(struct mailbox *mb, size_t i, int recognised, char *err,
		 size_t errlen);
/* What mailbox_done does to a recognised message, for the summary:
 * "flagged $HeraldDone", "deleted", "moved to Processed"... */
const char *mailbox_action(const struct mailbox *mb);
/* Expunges (IMAP, mbox), QUITs (POP3: deletions take effect), frees.
 * Returns MAILBOX_FAIL if that final step failed. mb may be NULL. */
int mailbox_close(struct mailbox *mb, char *err, size_t errlen);
#endif
