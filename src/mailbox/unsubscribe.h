/* unsubscribe: unsubscribe requests by mail: which mail is one, and for
 * whom.
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
 * Applying a request is input/subs_edit.c's (subs_edit_unsubscribe).
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

#endif
