/* statefile: what every append-only line file in state_dir shares (the
 * journals, bounces.log, mailbox.seen, list.log, relays.log, .shards,
 * signups.log).
 *
 * Each of them is appended to one write(2) per line on O_APPEND. A crash,
 * a full disk or a power cut can leave the last line without its newline,
 * or a block of NUL bytes at the end (the file grew on disk, its data
 * never landed). Appending after that glues the next line onto the
 * fragment, and that line is never read back: a delivery or a bounce
 * silently lost. statefile_open repairs the tail before anything is
 * appended: the NUL bytes at the end are cut off, and a fragment is cut
 * off or ended with a newline (see enum statefile_torn), so the next line
 * starts a line of its own. The repair is reported once, as FILE:LINE:
 * after it the file is whole.
 *
 * Readers take each line through statefile_line, which drops the NUL
 * bytes a power cut left at its start and says when what remains is not
 * text; a line that does not parse is the reader's to report as
 * FILE:LINE, through a statefile_warn.
 *
 * Ownership: nothing is kept; the fd is the caller's. */
#ifndef HERALD_STATEFILE_H
#define HERALD_STATEFILE_H
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

/* Where a module sends a warning (never printed by the module itself). */
struct statefile_warn {
	void (*fn)(void *arg, const char *msg);
	void *arg;
};
void statefile_warnf(const struct statefile_warn *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* What statefile_repair found. */
struct statefile_tail {
	long line;       /* 1-based number of the line that had no newline, or 0 */
	size_t nuls;     /* NUL bytes cut off the end */
};

/* What to do with a last line that has no newline. */
enum statefile_torn {
	/* Cut it off: its writer saw the write fail and will do it again
	 * (a bounce not logged is rescanned; a mark not remembered is
	 * made again). */
	STATEFILE_CUT,
	/* End it with a newline and keep it: its writer's work is done
	 * and cannot be redone (a journal line: the relay took the
	 * message), so its reader takes what the fragment still says. */
	STATEFILE_KEEP,
};

/* Repairs the tail of the file open on fd (read and write; O_APPEND is
 * fine): NUL bytes at the end are cut off, then a fragment is cut or
 * ended as `torn` says. The caller holds whatever lock keeps other
 * writers out. The common case, a file that ends with a newline, costs
 * one pread. Returns 0, or -1 with err. */
int statefile_repair(int fd, const char *path, enum statefile_torn torn,
		     struct statefile_tail *t, char *err, size_t errlen);
/* open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600), flock
 * LOCK_EX, statefile_repair, and one warning to w naming FILE:LINE when
 * something was repaired. With keep_lock the fd is returned still locked
 * (a writer that shares the file with another process appends under the
 * lock: bounces.log has two, a send and a scan), else unlocked. Returns
 * the fd, or -1 with err. */
int statefile_open(const char *path, enum statefile_torn torn, int keep_lock,
		   const struct statefile_warn *w, char *err, size_t errlen);

/* Appends data (len bytes: whole lines) to the file open on fd with one
 * write(2), and leaves the file ending in a whole line whatever happens.
 * The tail is repaired first as `torn` says (a fragment an earlier
 * append left when even its own cut-back failed, or another process's
 * crash), so the line never lands glued to a fragment. A short or failed
 * write is cut back to the size before it (STATEFILE_CUT), or the
 * fragment ended with a newline (STATEFILE_KEEP: what it says is kept,
 * as at open). With sync the line is fdatasync'd; when that fails it is
 * cut off again and the cut fsync'd: the caller reports a failure (a
 * 503), and a line it reported as failed must not take effect later, at
 * a restart or a replay. A reader that saw the line between the write
 * and the cut may have acted on it (listlog_follow notices the cut and
 * reads again; see listlog.h for the bound).
 *
 * The caller serializes the appends to one file: the cut-back is to the
 * size before this write, and a line another writer appended meanwhile
 * would go with it (a mutex in the process; across processes the flock
 * statefile_open keeps with keep_lock). Returns 0, or -1 with err (errno
 * of the failure in *errnum when errnum is not NULL). */
int statefile_append(int fd, const char *path, enum statefile_torn torn, const char *data,
		     size_t len, int sync, int *errnum, char *err, size_t errlen);

/* One line as getline(3) returned it (n bytes): strips the newline and the
 * NUL bytes before the text, and points *text at what is left. Returns 1;
 * 0 when the line has no newline (the end of a file another process is
 * writing: not a line yet); -1 when it still holds a NUL byte (damage,
 * not text: the caller reports it). */
int statefile_line(char *line, ssize_t n, char **text);

/* Reads f to its end through statefile_line: fn(arg, text, no) for each
 * whole line (no counts from 1; text NULL when the line is damage, for
 * the reader to report), until fn returns non-zero, which is returned.
 * A last line without its newline ends the reading: it is another
 * writer's line in progress, or torn, and the next append repairs it. */
int statefile_each_line(FILE *f, int (*fn)(void *arg, char *text, long no), void *arg);
/* The same for a file no writer is appending to (another host's copy,
 * read by state merge under its locks), which is not repaired but read
 * as statefile_repair would leave it: NUL bytes at the end are no line;
 * a last line without its newline (torn) is passed to fn with
 * STATEFILE_KEEP and left out with STATEFILE_CUT, and its number goes to
 * *torn_no (0: none) for the caller's FILE:LINE warning. */
int statefile_each_line_torn(FILE *f, enum statefile_torn torn, long *torn_no,
			     int (*fn)(void *arg, char *text, long no), void *arg);

/* Merging copies of one line file (state merge: the same file from the
 * state dirs of several hosts). Each format's module reads its lines and
 * says what each is: */
struct statefile_mline {
	time_t when;     /* orders the merged file; -1 (damaged): first */
	char *line;      /* the line with its newline (malloc; NULL: as read) */
	char *key;       /* two lines with one key are one (malloc; NULL: the line) */
};
/* Reads one line (a copy of it, to split in place) into *out: 0, 1 when
 * it names nothing (damaged: reported and left out), -1 out of memory. */
typedef int (*statefile_mline_fn)(char *text, struct statefile_mline *out);
/* What statefile_merge did. */
struct statefile_merged {
	long lines;      /* in the merged file */
	long added;      /* of which not in paths[0] (the target's own) */
};
/* Reads paths[0..n-1] (missing ones hold nothing) through fn, each
 * torn as `torn` says, keeps the first line of each key, orders them by
 * time (a stable sort: lines of one second keep their order, paths[0]
 * first) and, when some were added, writes them to out_path (created or
 * truncated, 0600, fsync'd) for the caller to rename. Damage is reported
 * to w as FILE:LINE, with `what` ("journal line"). Nothing is locked
 * here: the caller holds the locks. Returns 0, or -1 with err. */
int statefile_merge(const char *const *paths, size_t n, enum statefile_torn torn,
		    statefile_mline_fn fn, const char *what, const char *out_path,
		    struct statefile_merged *m, const struct statefile_warn *w,
		    char *err, size_t errlen);
#endif
