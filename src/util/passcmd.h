/* passcmd: runs a password_command and reads its first line.
 *
 * Through /bin/sh -c, like msmtp's passwordeval (users write "pass show
 * smtp"), but hardened for cron through util/child.c: a process group of
 * its own, stdin from /dev/null, an environment without herald's secrets
 * (every HERALD* variable and the ones named in strip), and the group's
 * timeout (smtp.timeout, *.mailbox.timeout); then its whole group is
 * killed and the call fails with PASSCMD_TIMEDOUT, so a hung gpg or a
 * prompt nobody answers cannot hold the run (and, through the lock, the
 * next one). What is left here: the shell, the first line, and a buffer
 * that is wiped. */
#ifndef HERALD_PASSCMD_H
#define HERALD_PASSCMD_H
#include <stddef.h>

enum { PASSCMD_OK = 0, PASSCMD_FAILED = -1, PASSCMD_TIMEDOUT = -2 };

/* *out: the first line (malloc'd; free it with secret_free). what names
 * the key in messages ("smtp.password_command"). strip: nstrip names of
 * variables the command must not see (NULL entries are skipped). timeout
 * in seconds. */
int passcmd_run(const char *command, const char *what, const char *const *strip,
		size_t nstrip, int timeout, char **out, char *err, size_t errlen);
#endif
