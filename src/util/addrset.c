#include "util/addrset.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* 12 bytes a slot: at a load of at most 1/2 that is 24 bytes an address,
 * plus the key itself. */
struct addrset_slot {
	uint32_t hash;
	uint32_t off;   /* of the key in the arena (arena < 4 GiB) */
	int32_t value;  /* 0: the slot is free */
};

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

static uint32_t hash_addr(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a over the lower-cased bytes */
	for (; *s; s++) {
		h ^= lower((unsigned char)*s);
		h *= 16777619u;
	}
	return h;
}

static struct addrset_slot *find(const struct addrset *s, const char *key, uint32_t h)
{
	size_t mask = s->cap - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
		struct addrset_slot *e = &s->slot[i];
		if (!e->value || (e->hash == h && !strcasecmp(s->keys.p + e->off, key)))
			return e;
	}
}

static int grow(struct addrset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 1024;
	if (cap < s->cap)
		return -1;
	struct addrset_slot *slot = calloc(cap, sizeof *slot);
	if (!slot)
		return -1;
	for (size_t i = 0; i < s->cap; i++) {
		if (!s->slot[i].value)
			continue;
		size_t j = (size_t)s->slot[i].hash & (cap - 1);
		while (slot[j].value)
			j = (j + 1) & (cap - 1);
		slot[j] = s->slot[i];
	}
	free(s->slot);
	s->slot = slot;
	s->cap = cap;
	return 0;
}

long addrset_get(const struct addrset *s, const char *addr)
{
	return s->cap ? find(s, addr, hash_addr(addr))->value : 0;
}

int addrset_set(struct addrset *s, const char *addr, long value)
{
	if (s->cap) {
		struct addrset_slot *sl = find(s, addr, hash_addr(addr));
		if (sl->value) {
			sl->value = (int32_t)value;
			return 0;
		}
	}
	return addrset_put(s, addr, value) < 0 ? -1 : 0;
}

int addrset_put(struct addrset *s, const char *addr, long value)
{
	/* The load stays under 1/2 so probe runs stay short. */
	if ((s->used + 1) * 2 > s->cap && grow(s) < 0)
		return -1;
	uint32_t h = hash_addr(addr);
	struct addrset_slot *e = find(s, addr, h);
	if (e->value)
		return 0;
	size_t off = s->keys.len, len = strlen(addr);
	if (off + len + 1 > UINT32_MAX || buf_reserve(&s->keys, len + 1) < 0)
		return -1;
	for (size_t i = 0; i < len; i++)
		s->keys.p[off + i] = (char)lower((unsigned char)addr[i]);
	s->keys.p[off + len] = '\0';
	s->keys.len += len + 1;
	e->hash = h;
	e->off = (uint32_t)off;
	e->value = value <= 0 ? 1 : value > INT32_MAX ? INT32_MAX : (int32_t)value;
	s->used++;
	return 1;
}

int addrset_has(const struct addrset *s, const char *addr)
{
	return addrset_get(s, addr) != 0;
}

int addrset_add(struct addrset *s, const char *addr)
{
	return addrset_put(s, addr, 1);
}

void addrset_free(struct addrset *s)
{
	free(s->slot);
	buf_free(&s->keys);
	memset(s, 0, sizeof *s);
}
