/* state: the state directory itself, shared by every state file.
 *
 * What lives in it (docs/ARCHITECTURE.md has the table): SLUG.journal,
 * SLUG.done and SLUG.shards (journal.c reads and writes them),
 * bounces.log (bounces.c), list.log (listlog.c), relays.log
 * (relaylog.c), mailbox.seen (mailbox.c), herald.lock, scan.lock and a
 * merge's .merge-plan (here). Each file
 * format has one reader and one writer, in the module named; this one
 * holds what they share: the directory, its locks, the time format, the
 * cleaning of a field, walking the files of one kind, and the list of
 * recent send times the rate windows are seeded from. */
#ifndef HERALD_STATE_H
#define HERALD_STATE_H
#include <stddef.h>
#include <time.h>

/* mkdir -p with mode 0700: state files name readers. */
int state_mkdir(const char *dir, char *err, size_t errlen);
/* The same for another directory herald writes (what: "dry-run
 * directory"), named so in the error. */
int state_mkdir_as(const char *dir, const char *what, char *err, size_t errlen);

/* One sender per state directory (herald.lock), one scan (scan.lock):
 * a scan and a send may run beside each other, two of a kind may not. */
enum state_lock { STATE_LOCK_SEND, STATE_LOCK_SCAN };
/* The lock's fd, -1 when another holds it (err says so), -2 on error. */
int state_lock(const char *state_dir, enum state_lock which, char *err, size_t errlen);
/* The same for a directory herald may not write (another host's copy,
 * read by state merge): the lock file is opened, not created; -3 when
 * there is none (no herald ever sent or scanned from it). */
int state_lock_existing(const char *state_dir, enum state_lock which, char *err,
			size_t errlen);
void state_unlock(int fd);

/* state merge writes every file it changes as DIR/.merge.NAME, then
 * commits with one rename: DIR/.merge-plan, the NAMEs one a line (its
 * temporary file, fsync'd, renamed into place, the directory fsync'd).
 * state_merge_finish renames each .merge.NAME over NAME (one already
 * renamed is skipped), fsyncs the directory and removes the plan; the
 * merge calls it, and so does every state_lock, so a merge killed after
 * its commit is completed before anyone reads the directory under a
 * lock, and one killed before it left the directory as it was. Both
 * return 0, or -1 with err. */
int state_merge_commit(const char *dir, const char *const *names, size_t n, char *err,
		       size_t errlen);
int state_merge_finish(const char *dir, char *err, size_t errlen);

/* The time format of every state file: "2026-11-30T08:00:00Z", UTC. */
void state_time(time_t t, char out[32]);
/* Reads back what state_time wrote, up to a tab or newline; -1 if not. */
time_t state_parse_time(const char *s);
/* A field as it may be written: control characters (tabs, newlines) as
 * spaces, cut to outlen - 1 bytes. */
void state_clean(char *out, size_t outlen, const char *s);

/* Calls fn(arg, path, stem) for each STATE_DIR/STEM.SUFFIX (no dot
 * files), until fn returns non-zero, which is returned. A missing
 * directory holds nothing. -1 with err set on other errors. */
int state_each_file(const char *state_dir, const char *suffix,
		    int (*fn)(void *arg, const char *path, const char *stem),
		    void *arg, char *err, size_t errlen);

/* Send times (wall clock seconds) for the rate windows, from journals
 * and bounces.log alike. */
struct state_times {
	double *v;
	size_t n, cap;
	time_t since, now;
};
/* Adds t when it is not before since; a time after now (written before
 * the clock was stepped back) counts as now, or it would hold its place
 * in every window for that much longer. -1 when out of memory. */
int state_times_add(struct state_times *st, time_t t);
void state_times_sort(struct state_times *st);
void state_times_free(struct state_times *st);
#endif
