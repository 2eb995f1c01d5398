/* confirm: the mail that asks a reader who signed up on the web (herald
 * serve) to confirm: plain text, UTF-8, quoted-printable, built with
 * libetpan like every other message herald sends, and DKIM-signed when
 * the config signs.
 *
 * Ownership: the caller owns out. */
#ifndef HERALD_CONFIRM_H
#define HERALD_CONFIRM_H
#include <stddef.h>
#include <time.h>
#include "input/config.h"
#include "util/buf.h"

/* to and name must be header-safe (enc_header_safe); link is the
 * confirmation URL. Appends the whole message (CRLF) to out. 0, or -1
 * with err. */
int confirm_build(const struct config *cfg, const char *to, const char *name, const char *link,
		  int hours, time_t now, struct buf *out, char *err, size_t errlen);
#endif
