/* listlog: state_dir/list.log, the list changes readers asked for on the
 * web (herald serve), one tab-separated line each:
 *
 *     TIME <tab> ACTION <tab> ADDRESS <tab> SOURCE [<tab> NAME]
 *
 * ACTION is "unsubscribe", or "subscribe" (a confirmed signup, with the
 * NAME the reader gave, possibly empty); SOURCE says where it came from
 * ("web"). Lines are applied in order: the last one for an address
 * wins. A line is written
 * with one write(2) and fdatasync'd before the web answers the request,
 * so a request that got its answer is never lost, whatever happens to
 * herald serve afterwards; applying it to the CSV list comes after, and
 * a restart applies again what the list does not show yet (subs_edit_unsubscribe
 * is idempotent). A `send` running beside it follows the file
 * (listlog_follow) and mails nobody whose line it has seen.
 *
 * Tail repair (statefile.h): a torn last line is cut off (STATEFILE_CUT):
 * its request was never answered, so the reader's client sends it again.
 * A line earlier versions glued onto such a fragment (they left it after
 * a failed write) is read from its second time on, with a warning.
 *
 * Ownership: struct listlog owns its fd (listlog_close); struct
 * listlog_follow owns its path (listlog_follow_free). Neither is
 * thread-safe beyond what is said at each function. */
#ifndef HERALD_LISTLOG_H
#define HERALD_LISTLOG_H
#include <pthread.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include "state/statefile.h"
#include "util/addrset.h"

#define LISTLOG_FILE "list.log"

enum listlog_action { LISTLOG_UNSUBSCRIBE, LISTLOG_SUBSCRIBE };

struct listlog_entry {
	time_t time;
	enum listlog_action action;
	const char *addr;      /* points into the line being read */
	const char *source;
	const char *name;      /* subscribe: the reader's name, or "" */
};

struct listlog {
	char *path;
	int fd;
	pthread_mutex_t mu;    /* one append at a time, its fdatasync included */
};

/* Creates state_dir if needed, opens and repairs list.log. */
int listlog_open(struct listlog *l, const char *state_dir, const struct statefile_warn *w,
		 char *err, size_t errlen);
/* Appends one line and fdatasyncs it before returning (statefile_append).
 * Any thread may call it: appends take l->mu, write and sync included,
 * so a line whose sync failed can be cut off again without taking
 * another's with it. source is a short word without tabs. -1 with err
 * when the line is not on disk: then it is not in the file either (cut
 * back), and nothing acts on it later. */
int listlog_append(struct listlog *l, time_t t, enum listlog_action a, const char *addr,
		   const char *name, const char *source, char *err, size_t errlen);
void listlog_close(struct listlog *l);

/* Parses one line (as statefile_line gave it; fields point into it).
 * 0, or -1 when it is not a list.log line. */
int listlog_parse_line(char *text, struct listlog_entry *e);

/* A reader that keeps its place: each listlog_follow_poll reads only the
 * whole lines added since the last one. The common case, nothing new,
 * costs one stat(2) and one pread(2). A file replaced or cut shorter (a restore) is read
 * again from the start, and so is one where the last line read is no
 * longer where it was (one pread per look, on an fd the follower keeps): listlog_append took it back (its fdatasync
 * failed, the request was answered 503) and another line took its
 * place. The bound: a follower that read such a line before it was
 * taken back keeps what it did with it (a send skips that reader for the
 * rest of its run, as if the 503 request had worked); a replay (serve's
 * start) reads a file no request is being written to, so it never acts
 * on one. */
struct listlog_follow {
	char *path;
	off_t off;             /* bytes read and handled */
	dev_t dev;
	ino_t ino;
	int fd;                /* kept open for the check below, or -1 */
	long lineno;           /* lines read, for FILE:LINE */
	char last[1024];       /* the last line read (the end of it), ending at off */
	size_t lastlen;
	/* Times the file was read again from its start after lines had been
	 * read: a consumer whose state holds what a line said (a line taken
	 * back among them) sees it change and rebuilds, or stops trusting
	 * that state. */
	unsigned long resets;
};
int listlog_follow_init(struct listlog_follow *f, const char *state_dir, char *err,
			size_t errlen);
/* fn(arg, entry) for each new line; a line that does not parse goes to w
 * as FILE:LINE. A missing file holds nothing. Returns the number of new
 * entries, or -1 with err when the file cannot be read. */
int listlog_follow_poll(struct listlog_follow *f,
			void (*fn)(void *arg, const struct listlog_entry *e), void *arg,
			const struct statefile_warn *w, char *err, size_t errlen);
void listlog_follow_free(struct listlog_follow *f);

/* What list.log says of each address now: lines apply in order, and the
 * last one for an address wins (serve's replay into the list, the send
 * loop's "has this reader left?"). keep: the rows also hold the address
 * and name, for a caller that walks them (the replay); without it a row
 * costs its action and time. The set is case-insensitive (addrset).
 * Not thread-safe: the caller locks. */
struct listlog_fold_row {
	char *addr, *name;     /* keep only; name "" when the line had none */
	enum listlog_action action;
	time_t time;
};
struct listlog_fold {
	struct addrset at;     /* address -> row index + 1 */
	struct listlog_fold_row *row;
	size_t n, cap;
	int keep;
	int oom;               /* -1 once an add ran out of memory */
};
void listlog_fold_init(struct listlog_fold *f, int keep);
/* 0, or -1 out of memory (also kept in f->oom). */
int listlog_fold_add(struct listlog_fold *f, const struct listlog_entry *e);
/* addr's last line, or NULL when list.log has none for it. */
const struct listlog_fold_row *listlog_fold_get(const struct listlog_fold *f, const char *addr);
void listlog_fold_free(struct listlog_fold *f);
#endif
