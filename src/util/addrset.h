/* addrset: a set of e-mail addresses, compared case-insensitively (ASCII),
 * each with a non-zero value the caller chooses (a line number, a count).
 * Open addressing over one arena of lower-cased keys, so an address costs
 * its bytes plus two 12-byte slots: 100,000 readers take about 6 MiB.
 * Values are kept up to INT32_MAX.
 *
 * Ownership: the set owns its memory; addrset_free. A zeroed struct is an
 * empty set. Not thread-safe. */
#ifndef HERALD_ADDRSET_H
#define HERALD_ADDRSET_H
#include <stddef.h>
#include "util/buf.h"

struct addrset_slot;

struct addrset {
	struct addrset_slot *slot;
	size_t cap, used;       /* cap is 0 or a power of two */
	struct buf keys;
};

/* The value stored with addr, or 0 when addr is not in the set. */
long addrset_get(const struct addrset *s, const char *addr);
/* Adds addr with value (non-zero) unless present: 1 added, 0 already
 * there (its value is kept), -1 out of memory. */
int addrset_put(struct addrset *s, const char *addr, long value);
/* Adds addr, or changes its value when present: 0, or -1 out of memory. */
int addrset_set(struct addrset *s, const char *addr, long value);
int addrset_has(const struct addrset *s, const char *addr);
int addrset_add(struct addrset *s, const char *addr);
void addrset_free(struct addrset *s);
#endif
