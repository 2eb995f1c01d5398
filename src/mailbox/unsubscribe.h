/* unsubscribe: unsubscribe requests, and marking readers unsubscribed in
 * the CSV list.
 *
 * A request is a mail to unsubscribe.mailto whose Subject, or first
 * non-empty body line, starts with "unsubscribe" (after any Re:/Fwd:),
 * optionally followed by an address and the reader's token (the 64 hex
 * digits of {{token}}):  "unsubscribe", "unsubscribe <token>",
 * "unsubscribe joy@example.net <token>". The reader is the address named,
 * else the From address. A token that is present must be the reader's
 * (HMAC-SHA256 under the secret); asking for another address than From
 * needs one. Bounces and auto-replies are not requests.
 *
 * unsub_apply rewrites the list atomically: the file is locked (flock on
 * the list itself, re-checked after the lock in case it was replaced),
 * read whole, and only the status field of the matching rows changes to
 * "unsubscribed" (a list without a status column gets one, appended to
 * every record); every other byte is kept. The new text goes to a
 * temporary file in the same directory, is fsync'd, gets the old file's
 * mode and owner, and is renamed over the list; the directory is fsync'd.
 * A crash at any point leaves the old list or the new one, whole; a
 * temporary file a killed run left is removed, under the lock, by the
 * next.
 *
 * Ownership: nothing is kept between calls. */
#ifndef HERALD_UNSUBSCRIBE_H
#define HERALD_UNSUBSCRIBE_H
#include <stddef.h>

enum unsub_req {
	UNSUB_REQUEST = 0,  /* addr holds the reader */
	UNSUB_NONE = 1,     /* not a request (a bounce, an auto-reply, chatter) */
	UNSUB_REFUSED = 2,  /* a request we will not act on; why says why */
	UNSUB_FAIL = -1,    /* out of memory */
};

/* secret may be NULL (then a request with a token is refused: it cannot
 * be checked). */
int unsub_parse_request(const char *msg, size_t len, const char *secret,
			char *addr, size_t addrlen, char *why, size_t whylen);

/* What happened to each address given to unsub_apply. */
enum unsub_result { UNSUB_NOT_LISTED = 0, UNSUB_CHANGED = 1, UNSUB_ALREADY = 2 };

enum { UNSUB_OK = 0, UNSUB_ERR_LIST = -1, UNSUB_ERR_WRITE = -2, UNSUB_ERR_NOFILE = -3 };
/* The sysexits code for an unsub_apply result: 66 no list, 65 a list
 * that cannot be parsed, 73 the rewrite failed. */
int unsub_exitcode(int rc);

/* Marks the rows of addrs (case-insensitive) unsubscribed in the list at
 * path, whose fields are separated by sep (0: ','; subscribers_delimiter). result[i] says what happened to addrs[i]. UNSUB_ERR_LIST: the
 * list cannot be parsed (no email column, CSV syntax); UNSUB_ERR_WRITE:
 * the new file could not be written (the old one is untouched). */
int unsub_apply(const char *path, char sep, const char *const *addrs, size_t n,
		enum unsub_result *result, char *err, size_t errlen);
/* The other way, for confirmed signups (herald serve), under the same
 * lock and rewrite: a row of addrs[i] whose status is not empty or
 * "subscribed" gets "subscribed" (UNSUB_CHANGED); one that is keeps it
 * (UNSUB_ALREADY); an address not in the list is appended as a new row
 * with names[i] in the name column, if there is one (UNSUB_CHANGED). */
int unsub_subscribe(const char *path, char sep, const char *const *addrs, const char *const *names, size_t n,
		    enum unsub_result *result, char *err, size_t errlen);
#endif
