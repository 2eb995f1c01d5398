/* child: the one way herald runs another program (a password_command's
 * /bin/sh, preview's Chromium).
 *
 * Herald holds secrets (the token secret, relay and mailbox passwords)
 * in its environment and memory; what it runs must see none of them and
 * must not hold the run. So every child gets:
 *  - an environment without herald's secrets: every variable whose name
 *    starts with HERALD, and the names the caller passes (the config's
 *    *_env settings); the rest (PATH, HOME, LANG, GNUPGHOME, ...) stays,
 *    since pass, gpg and a browser need it;
 *  - stdin from /dev/null, so nothing waits on a prompt nobody answers;
 *  - no file descriptor of herald's past 2 (a journal, a socket);
 *  - a process group of its own and the default signal dispositions, so
 *    a timeout can kill it with everything it started;
 *  - a deadline for the whole run, past which that group is killed.
 *
 * No state between calls; nothing here prints. */
#ifndef HERALD_CHILD_H
#define HERALD_CHILD_H
#include <stddef.h>
#include <sys/types.h>

enum { CHILD_OK = 0, CHILD_FAILED = -1, CHILD_TIMEDOUT = -2 };

/* Where the child's stdout goes. */
enum child_out { CHILD_OUT_NULL, CHILD_OUT_FILE, CHILD_OUT_PIPE };

struct child_spec {
	const char *path;          /* the program, run as given (no $PATH search) */
	const char *const *argv;   /* NULL-terminated; argv[0] included */
	const char *const *strip;  /* nstrip more variable names to leave out (NULL entries skipped) */
	size_t nstrip;
	enum child_out out;
	const char *out_path;      /* CHILD_OUT_FILE: created 0600 or truncated */
	int quiet;                 /* 1: stderr to /dev/null; 0: herald's own */
	int reap_group;            /* 1: child_wait kills what is left of the group after an exit */
	int timeout;               /* seconds, from child_start to the end of child_wait */
};

struct child {
	pid_t pid;
	int out;                   /* CHILD_OUT_PIPE: the read end; else -1 */
	double deadline;           /* CLOCK_MONOTONIC seconds */
	int reap_group;
};

/* Starts the child. CHILD_FAILED with err filled when it cannot. */
int child_start(const struct child_spec *s, struct child *c, char *err, size_t errlen);
/* CHILD_OUT_PIPE: reads what the child writes: > 0 bytes, 0 at the end
 * of its output, CHILD_TIMEDOUT past the deadline, CHILD_FAILED on a read
 * error. */
ssize_t child_read(struct child *c, void *buf, size_t len);
/* Waits for the child's exit until the deadline (*status: waitpid's);
 * past it kills the child's group and returns CHILD_TIMEDOUT. Closes the
 * pipe. Always call it once after a child_start that succeeded. */
int child_wait(struct child *c, int *status);
/* Seconds left before the deadline (<= 0: past it). */
double child_left(const struct child *c);
#endif
