/* A bounded table that forgets its oldest first (recent.h). */
#include "util/recent.h"
#include <stdlib.h>
#include <string.h>

void recent_init(struct recent *r, size_t max, time_t ttl, int evict_live)
{
	memset(r, 0, sizeof *r);
	r->max = max ? max : 1;
	r->ttl = ttl;
	r->evict_live = evict_live;
}

static const char *key_of(const struct recent *r, const struct recent_entry *e)
{
	return r->keys.p + e->key;
}

/* The newest entry of its key, and younger than ttl? */
static int live(const struct recent *r, size_t i, time_t now)
{
	const struct recent_entry *e = &r->v[i];
	return addrset_get(&r->idx, key_of(r, e)) == (long)i + 1 && now - e->when < r->ttl;
}

int recent_get(const struct recent *r, const char *key, time_t now, time_t *when, long *count)
{
	long at = addrset_get(&r->idx, key);
	if (!at || !live(r, (size_t)at - 1, now))
		return 0;
	*when = r->v[at - 1].when;
	*count = r->v[at - 1].count;
	return 1;
}

size_t recent_live(const struct recent *r, time_t now)
{
	size_t k = 0;
	for (size_t i = 0; i < r->n; i++)
		k += (size_t)live(r, i, now);
	return k;
}

static int append(struct recent *r, const char *key, time_t when, long count)
{
	size_t off = r->keys.len;
	if (array_grow(&r->v, &r->cap, r->n, sizeof *r->v, 64) < 0 ||
	    buf_add(&r->keys, key, strlen(key) + 1) < 0 ||
	    addrset_set(&r->idx, key, (long)r->n + 1) < 0)
		return -1;
	r->v[r->n++] = (struct recent_entry){when, count, off};
	return 0;
}

/* Rebuilds the table from its live entries, dropping the oldest of them
 * (evict_live) down to 3/4 of max. */
static int compact(struct recent *r, time_t now)
{
	struct recent old = *r;
	size_t nlive = recent_live(&old, now), drop = 0;
	if (old.evict_live && nlive > old.max * 3 / 4)
		drop = nlive - old.max * 3 / 4;
	recent_init(r, old.max, old.ttl, old.evict_live);
	int rc = 0;
	for (size_t i = 0; !rc && i < old.n; i++) {
		if (!live(&old, i, now))
			continue;
		if (drop) {
			drop--;
			continue;
		}
		rc = append(r, key_of(&old, &old.v[i]), old.v[i].when, old.v[i].count);
	}
	recent_free(&old);
	return rc;
}

int recent_set(struct recent *r, const char *key, time_t now, time_t when, long count)
{
	/* The array holds stale entries too (aged out, or a key set again):
	 * twice max before a compaction looks. */
	time_t w;
	long c;
	int known = recent_get(r, key, now, &w, &c);
	/* A key already in keeps its place: no live key more. */
	if (r->n >= 4 * r->max || (!known && (r->n >= 2 * r->max || r->idx.used >= r->max))) {
		/* Full of live keys: nothing ages out before the oldest
		 * does, so no compaction (O(max)) per request till then. */
		if (!known && now < r->full_until)
			return 1;
		if (compact(r, now) < 0)
			return -1;
		/* After a compaction every entry is a live key. */
		if (!known && r->n >= r->max) {
			r->full_until = r->n ? r->v[0].when + r->ttl : now;
			return 1;
		}
	}
	return append(r, key, when, count);
}

void recent_free(struct recent *r)
{
	free(r->v);
	addrset_free(&r->idx);
	buf_free(&r->keys);
	r->v = NULL;
	r->n = r->cap = 0;
}
