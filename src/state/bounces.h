/* bounces: state_dir/bounces.log and the suppression list derived from it.
 *
 * One tab-separated line per event: time, address, hard|soft|complaint|
 * forget, enhanced status, SMTP code, source (smtp|dsn|cli), post slug,
 * text, and for dsn lines a 9th field naming the report ("<Message-ID>"
 * or "sha256:HEX"; older lines have 8 fields and read as before). The log is only ever appended to; `forget` lines (herald bounces
 * forget) lift what came before them.
 *
 * An address is suppressed by a hard bounce or a complaint, or by
 * soft_limit soft bounces in a row: a delivery recorded in any journal
 * (state_dir/ *.journal) after a soft bounce starts the count again.
 * Everything is ordered by the time field, not by position in the file,
 * because a DSN carries the time it was written (its Date:) and can be
 * scanned long after later sends were logged.
 *
 * Ownership: struct bounces owns its tables; bounces_close. */
#ifndef HERALD_BOUNCES_H
#define HERALD_BOUNCES_H
#include <stddef.h>
#include <time.h>
#include "state/state.h"
#include "state/statefile.h"

enum bounce_kind { BOUNCE_HARD, BOUNCE_SOFT, BOUNCE_COMPLAINT };

struct bounce_entry {
	int count;        /* bounces_each_suppressed: soft bounces in a row */
	char when[32];
	char addr[320];
	char kind[16];
	char status[16];
	int code;
	char source[8];
	char slug[128];
	char text[512];
	char report[200]; /* dsn lines: what names the report, or "" */
};

struct bounce_addr; /* per-address history, private to bounces.c */

struct bounces {
	char *path;
	char *state_dir;
	int soft_limit;
	struct bounce_addr *addrs; /* in order of first appearance */
	size_t naddrs, capaddrs;
	struct chash *index;       /* lower-cased address -> addrs index */
	struct chash *seen;        /* dsn line keys, for bounces_add_once */
	struct statefile_warn warn;
};

/* Reads state_dir/bounces.log if it exists. Lines that do not parse are
 * reported to w (NULL: not reported) as FILE:LINE, and so is the repair
 * of a torn tail before an append (statefile.h). On failure nothing is
 * left to free. */
int bounces_open(struct bounces *b, const char *state_dir, int soft_limit,
		 const struct statefile_warn *w, char *err, size_t errlen);
int bounces_suppressed(const struct bounces *b, const char *addr);
int bounces_add(struct bounces *b, time_t when, const char *addr,
		enum bounce_kind kind, const char *status, int code,
		const char *source, const char *slug, const char *text,
		char *err, size_t errlen);
/* Like bounces_add, but does nothing (returns 1) when the log already
 * holds this bounce: a rescan of a report whose mailbox mark was lost
 * (crash between the log and the mark) adds nothing. report names the
 * report (its Message-ID, else a digest of its bytes; written as a 9th
 * field): the log holds the bounce when a line has the same report,
 * address and status, or (lines of earlier versions, without the field)
 * the same time, address, kind, status, code, source and slug. */
int bounces_add_once(struct bounces *b, time_t when, const char *addr,
		     enum bounce_kind kind, const char *status, int code,
		     const char *source, const char *slug, const char *text,
		     const char *report, char *err, size_t errlen);
/* Appends a forget line for addr. *was: 1 if it was suppressed. */
int bounces_forget(struct bounces *b, const char *addr, int *was, char *err,
		   size_t errlen);
/* Calls fn for each suppressed address, in log order, with the entry
 * that suppressed it (for soft bounces: the last, with count set). */
int bounces_each_suppressed(const char *state_dir, int soft_limit,
			    void (*fn)(void *arg, const struct bounce_entry *e),
			    void *arg, char *err, size_t errlen);
/* Every delivery in state_dir/ *.journal: fn(arg, slug, time, address,
 * Message-ID). fn returns non-zero to stop. Torn lines are skipped. */
/* Adds to st the times of the refusals at send time (source smtp) since
 * st->since: the relay answered those messages, so they count against
 * the rate windows as journal lines do. */
int bounces_recent_times(const char *state_dir, struct state_times *st, char *err,
			 size_t errlen);
void bounces_close(struct bounces *b);
/* Merges copies of bounces.log (state merge): every line once (a DSN
 * line once per report, address and status, as bounces_add_once), in
 * time order, a torn last line left out as an append would cut it. */
int bounces_merge(const char *const *paths, size_t n, const char *out_path,
		  struct statefile_merged *m, const struct statefile_warn *w, char *err,
		  size_t errlen);
#endif
