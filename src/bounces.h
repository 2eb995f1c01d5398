/* bounces: state_dir/bounces.log and the suppression list derived from it.
 *
 * One tab-separated line per rejection: time, address, hard|soft|complaint,
 * enhanced status, SMTP code, source (smtp|dsn), post slug, server text.
 * The log is only ever appended to. An address is suppressed by a hard
 * bounce or a complaint, or by soft_limit soft bounces.
 *
 * Ownership: struct bounces owns its sets; bounces_close. */
#ifndef HERALD_BOUNCES_H
#define HERALD_BOUNCES_H
#include <stddef.h>
#include <time.h>
#include "journal.h"

enum bounce_kind { BOUNCE_HARD, BOUNCE_SOFT, BOUNCE_COMPLAINT };

struct bounce_entry {
	char when[32];
	char addr[320];
	char kind[16];
	char status[16];
	int code;
	char source[8];
	char slug[128];
	char text[512];
};

struct bounces {
	char *path;
	int soft_limit;
	struct addrset suppressed;
	/* soft bounce counts: address -> count, parallel arrays */
	char **soft_addr;
	int *soft_n;
	size_t nsoft, capsoft;
};

/* Reads state_dir/bounces.log if it exists. */
int bounces_open(struct bounces *b, const char *state_dir, int soft_limit,
		 char *err, size_t errlen);
int bounces_suppressed(const struct bounces *b, const char *addr);
int bounces_add(struct bounces *b, time_t when, const char *addr,
		enum bounce_kind kind, const char *status, int code,
		const char *source, const char *slug, const char *text,
		char *err, size_t errlen);
/* Calls fn for each suppressed address with the entry that suppressed it. */
int bounces_each_suppressed(const char *state_dir, int soft_limit,
			    void (*fn)(void *arg, const struct bounce_entry *e),
			    void *arg, char *err, size_t errlen);
void bounces_close(struct bounces *b);
#endif
