/* notify: one message to one address through the configured relay, for
 * mail that is not an issue (herald serve's signup confirmation). It is
 * the send loop's own transport (smtp.c: one connection, the same TLS,
 * AUTH and reply classification), without a journal: a confirmation that
 * fails is asked for again by the reader.
 *
 * Ownership: nothing is kept; password is borrowed. */
#ifndef HERALD_NOTIFY_H
#define HERALD_NOTIFY_H
#include <stddef.h>
#include "input/config.h"

enum { NOTIFY_OK = 0, NOTIFY_TEMP = -1, NOTIFY_PERM = -2 };
/* Envelope sender: from. NOTIFY_TEMP: the relay is down or said 4xx;
 * NOTIFY_PERM: it refused (5xx). err holds the relay's words. */
int notify_send(const struct config *cfg, const char *password, const char *to,
		const char *msg, size_t len, char *err, size_t errlen);
#endif
