/* recent: a bounded table of keys (addresses, client networks), each with
 * a time and a count, that forgets its oldest entries first.
 *
 * The signup limits (web/signup.c) need a table an attacker cannot flush:
 * clearing it wholesale when it grows forgets the victim along with the
 * noise. Here an entry older than the table's ttl goes first; past that,
 * with evict_live the oldest live ones go (per client: losing one costs
 * only that client's count), and without it nothing is added until an
 * entry ages out (per address: a victim stays limited; the table says
 * "full" and the caller sends nothing).
 *
 * Entries sit in one array in the order they were set (oldest first),
 * indexed by an addrset (key -> position + 1); a key set again gets a new
 * entry and its old one is skipped. When the array is full it is
 * compacted: each key's newest entry younger than ttl is kept, oldest
 * dropped first as evict_live allows; each compaction costs O(max) and
 * frees a quarter of the table at least, so a set costs O(1) amortized.
 * Hand-written because addrset (and hsearch) cannot delete, and ordering
 * by age is the point.
 *
 * Ownership: the table owns its memory; recent_free. Not thread-safe (the
 * caller's lock). */
#ifndef HERALD_RECENT_H
#define HERALD_RECENT_H
#include <stddef.h>
#include <time.h>
#include "util/addrset.h"
#include "util/buf.h"

struct recent_entry {
	time_t when;
	long count;
	size_t key;            /* offset in keys */
};

struct recent {
	size_t max;            /* live keys kept at most */
	time_t ttl;            /* an entry older than this is gone */
	int evict_live;        /* full: drop the oldest (1) or add nothing (0) */
	struct recent_entry *v;
	size_t n, cap;
	struct addrset idx;
	struct buf keys;
	time_t full_until;     /* full of live keys (no evict_live): no compaction before */
};

void recent_init(struct recent *r, size_t max, time_t ttl, int evict_live);
/* key's entry, younger than ttl at now: 1 (when, count filled), or 0. */
int recent_get(const struct recent *r, const char *key, time_t now, time_t *when, long *count);
/* Sets key's entry: 0; 1 the table is full of live keys and evict_live is
 * off (nothing set); -1 out of memory. */
int recent_set(struct recent *r, const char *key, time_t now, time_t when, long count);
/* Live keys (entries younger than ttl) at now. */
size_t recent_live(const struct recent *r, time_t now);
void recent_free(struct recent *r);
#endif
