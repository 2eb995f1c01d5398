/* merge: herald state merge, the state directories of several sending
 * hosts (send --shard) folded into one, so that suppression, resume and
 * --due work from it as if one host had sent.
 *
 * What is merged, each file by its own module's reader and writer
 * (statefile_merge): every <slug>.journal (every line once, in time
 * order: a reader sent on one host and uncertain on another is sent),
 * every <slug>.shards, bounces.log (every line once, a DSN once per
 * report); <slug>.done is made when any directory has it or when the
 * merged .shards say shards 1/N..N/N are all done. list.log,
 * mailbox.seen and the locks stay each host's own.
 *
 * Locks: the target's send and scan locks and every input's send lock
 * are held throughout; one a running herald holds is refused (75).
 * Crash safety: every changed file is written beside its name and the
 * lot committed with one rename (state_merge_commit): a merge killed
 * before that leaves the target as it was, one killed after is finished
 * by the next herald that locks the target (state_lock). */
#ifndef HERALD_MERGE_H
#define HERALD_MERGE_H
#include <stddef.h>

struct state_merge_cb {
	void (*warn)(void *arg, const char *msg);   /* damage, as FILE:LINE */
	/* A file of the target with lines from the merge: lines in it now,
	 * added of which came from the inputs (0: left as it was). */
	void (*file)(void *arg, const char *name, long lines, long added);
	/* A post the target now holds as done, or (done 0) one whose shards
	 * do not cover the list yet: why names the missing ones. */
	void (*done)(void *arg, const char *slug, int done, const char *why);
	void *arg;
};

/* Folds dirs into into (created if need be; a dir that is into itself,
 * or named twice, is left out). Returns a sysexits code: 0 merged; 64
 * nothing to merge; 66 a dir is missing or no directory; 75 a herald is
 * sending from one of them, or scanning into the target (run again once
 * it has ended); 73 the target cannot be written; 74 an input cannot be
 * read; 71 out of memory. err says why. */
int state_merge(const char *into, const char *const *dirs, size_t n,
		const struct state_merge_cb *cb, char *err, size_t errlen);
#endif
