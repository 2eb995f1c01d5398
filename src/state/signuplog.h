/* signuplog: state_dir/signups.log, when herald serve mailed each
 * confirmation link, one tab-separated line each:
 *
 *     TIME <tab> ADDRESS
 *
 * It is what keeps the per-address signup limit (one confirmation mail an
 * hour) across a restart of serve: at start the lines of the last hour
 * seed the limit. A line is written (and fdatasync'd) before the mail
 * goes; when it cannot be, no mail goes. Lines older than the hour are of
 * no use: signuplog_open drops them when they are most of the file.
 *
 * Tail repair (statefile.h): a torn last line is cut (STATEFILE_CUT): no
 * mail went for it.
 *
 * Ownership: struct signuplog owns its fd and path; signuplog_close. */
#ifndef HERALD_SIGNUPLOG_H
#define HERALD_SIGNUPLOG_H
#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include "state/statefile.h"

#define SIGNUPLOG_FILE "signups.log"

struct signuplog {
	char *path;
	int fd;
	pthread_mutex_t mu;    /* one append at a time (statefile_append) */
};

/* Creates state_dir if needed, opens and repairs signups.log, and calls
 * fn(arg, when, addr) for each line since `since`, in file order; a line
 * that does not parse goes to w as FILE:LINE. 0, or -1 with err (fn
 * returning -1, out of memory, is one). */
int signuplog_open(struct signuplog *l, const char *state_dir, time_t since,
		   int (*fn)(void *arg, time_t when, const char *addr), void *arg,
		   const struct statefile_warn *w, char *err, size_t errlen);
/* One line, synced. Any thread. -1 with err: not in the file. */
int signuplog_append(struct signuplog *l, time_t t, const char *addr, char *err, size_t errlen);
void signuplog_close(struct signuplog *l);
#endif
