/* dkim: DKIM signatures (RFC 6376) with libopendkim: rsa-sha256,
 * relaxed/relaxed, over the headers mailbox providers look at, including
 * List-Unsubscribe and List-Unsubscribe-Post as RFC 8058 section 4 asks
 * (a one-click unsubscribe header is only honoured when it is signed).
 * Identity headers are over-signed (named once more than they occur in
 * h=) so nobody on the way can add a second From or Subject and keep a
 * valid signature.
 *
 * The prefix is dkimsig_, not dkim_: libopendkim owns the dkim_ names.
 *
 * Ownership: dkimsig_open allocates the signer (library handle and the key
 * read from key_file); dkimsig_close frees both and wipes the key. */
#ifndef HERALD_DKIM_H
#define HERALD_DKIM_H
#include <stddef.h>
#include "util/buf.h"

struct dkimsig;

enum { DKIMSIG_OK = 0, DKIMSIG_FAIL = -1, DKIMSIG_NOFILE = -2 };

/* Reads the key and signs a small test message with it, so a key that
 * libopendkim cannot use fails here, before anything is sent. */
/* extra: the names of the config's own header lines (headers = [...]),
 * signed and over-signed like herald's (copied). */
int dkimsig_open(struct dkimsig **out, const char *domain, const char *selector,
		 const char *key_file, const char *const *extra, size_t nextra,
		 char *err, size_t errlen);
/* msg: a whole message, CRLF line ends. Appends one folded header line,
 * "DKIM-Signature: ...\r\n", to out; put it before the message's first
 * header. */
int dkimsig_sign(struct dkimsig *s, const char *msg, size_t len, struct buf *out,
		 char *err, size_t errlen);
void dkimsig_close(struct dkimsig *s);
#endif
