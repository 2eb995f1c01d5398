/* journal: the per-post delivery journal and the state-dir lock.
 *
 * state_dir/<slug>.journal holds one tab-separated line per message the
 * server accepted: time, address, Message-ID, server reply; and, with a
 * fifth field "uncertain", per message whose final dot went out with no
 * reply (the server may have it: such a reader is not mailed again unless
 * asked, with send --retry-uncertain). Each line is written (write(2))
 * before that connection starts its next message, so a crash or kill -9
 * loses at most the message in flight per connection; the flusher thread
 * fdatasyncs behind the writes (journal_append below), and journal_sync
 * waits for it, so a power cut loses at most the lines of the last 10 ms.
 * A rerun skips every address already in the journal.
 *
 * Ownership: struct journal owns its file and address set; journal_close. */
#ifndef HERALD_JOURNAL_H
#define HERALD_JOURNAL_H
#include <stddef.h>
#include <pthread.h>
#include <time.h>
#include "util/addrset.h"
#include "state/state.h"
#include "state/statefile.h"

struct journal {
	char *path;
	int fd;
	struct addrset sent; /* lower-cased addresses */
	struct addrset uncertain; /* sent, no reply to the final dot */
	/* The flusher thread: fdatasync runs beside the sending, so a
	 * connection never waits for the disk between two messages. */
	pthread_t flusher;
	int flushing;
	pthread_mutex_t mu;
	pthread_mutex_t wmu;   /* one append at a time (statefile_append) */
	pthread_cond_t cv;
	unsigned long written, synced; /* lines; guarded by mu */
	int sync_errno, quit, hurry;
};

/* Creates state_dir if needed, repairs the journal's tail (statefile.h: a
 * last line cut short by a crash or a full disk is ended there and still
 * counts when it names the reader) and loads what the journal holds. A
 * line that names nobody is reported to w as FILE:LINE. On failure
 * nothing is left to free. */
int journal_open(struct journal *j, const char *state_dir, const char *slug,
		 const struct statefile_warn *w, char *err, size_t errlen);
/* Was addr delivered (or maybe delivered) by an earlier run, the journal
 * as opened? */
int journal_has(const struct journal *j, const char *addr);
/* Only maybe: every line for addr is marked uncertain. */
int journal_is_uncertain(const struct journal *j, const char *addr);
/* Appends a line with write(2) before returning, so the delivery survives
 * a crash or kill -9 of herald at any later moment; a flusher thread
 * fdatasyncs behind it, at most every 10 ms (one fdatasync covers every
 * line written since the last), so it also survives a power cut once that
 * lands; journal_sync waits for that. Any thread may call it (connection
 * threads record their own acceptances). The address is not added to the
 * in-memory set: a list holds each reader once, so nobody sent in this run
 * is looked up again, and the set stays the size of what earlier runs
 * sent. A write or sync error shows in journal_error. */
enum journal_mark { JOURNAL_SENT, JOURNAL_UNCERTAIN };
/* Returns -1 when the line could not be written (the error also stays
 * for journal_error). */
int journal_write(struct journal *j, time_t when, const char *addr,
		  const char *msgid, const char *reply, enum journal_mark mark);
int journal_error(struct journal *j, char *err, size_t errlen);
int journal_sync(struct journal *j, char *err, size_t errlen);
/* Marks the post fully sent (state_dir/<slug>.done), or tells if it is. */
int journal_mark_done(const char *state_dir, const char *slug, char *err,
		      size_t errlen);
/* 1 when the post's sending has begun: its journal holds a line, or it
 * is done. */
int journal_started(const char *state_dir, const char *slug);
int journal_is_done(const char *state_dir, const char *slug);
/* Adds to st the time of every journal line since st->since, across all
 * posts (bounces_recent_times adds the refusals): for quotas that span
 * runs. */
int journal_recent_times(const char *state_dir, struct state_times *st, char *err,
			 size_t errlen);

/* A journal line, split in place: TIME TAB ADDR TAB MSGID TAB REPLY
 * [TAB "uncertain"]. when is -1 when the time is damaged. Returns 1 when
 * the line names nobody (damaged), else 0. The one reader of the format;
 * journal_write is its one writer. */
struct journal_line {
	time_t when;
	const char *addr, *msgid, *reply;
	int uncertain;
};
int journal_parse_line(char *text, struct journal_line *l);
/* Calls fn for every line with a time in every state_dir/SLUG.journal
 * until fn returns non-zero. -1 with err on a read error. */
int journal_each_delivery(const char *state_dir,
			  int (*fn)(void *arg, const char *slug, const struct journal_line *l),
			  void *arg, char *err, size_t errlen);
void journal_close(struct journal *j);

/* Merges copies of one journal (state merge): every line of each, once,
 * in time order (statefile_merge); a torn last line is kept as
 * journal_open keeps it. */
int journal_merge(const char *const *paths, size_t n, const char *out_path,
		  struct statefile_merged *m, const struct statefile_warn *w, char *err,
		  size_t errlen);

/* send --shard I/N: state_dir/<slug>.shards says which shards of the list
 * this state dir's journal covers. One tab-separated line per event,
 * TIME TAB I/N TAB begun|done: "begun" when a sharded run starts, "done"
 * when it ended with its whole shard sent (where a run without --shard
 * makes <slug>.done). state merge makes <slug>.done once the shards
 * done, from every host, are 1/N to N/N. */
#define JOURNAL_SHARDS_MAX 1000
enum journal_shard_state { JOURNAL_SHARD_BEGUN, JOURNAL_SHARD_DONE };
int journal_shard_mark(const char *state_dir, const char *slug, unsigned i, unsigned n,
		       enum journal_shard_state what, char *err, size_t errlen);
/* 1 when state_dir holds "done" for shard I/N of slug. */
int journal_shard_is_done(const char *state_dir, const char *slug, unsigned i, unsigned n);
struct journal_shard_line {
	time_t when;
	unsigned i, n;
	int done;
};
/* The one reader of a .shards line, split in place: 0, or 1 damaged. */
int journal_parse_shard_line(char *text, struct journal_shard_line *l);
/* fn for each line of the .shards file at path until it returns non-zero
 * (returned); a missing file holds none; -1 on a read error. */
int journal_each_shard(const char *path,
		       int (*fn)(void *arg, const struct journal_shard_line *l), void *arg);
/* Merges copies of a .shards file: one line per shard and state. */
int journal_merge_shards(const char *const *paths, size_t n, const char *out_path,
			 struct statefile_merged *m, const struct statefile_warn *w, char *err,
			 size_t errlen);
#endif
