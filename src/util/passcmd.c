#include "util/passcmd.h"
#include "util/buf.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int stripped(const char *var, const char *const *strip, size_t nstrip)
{
	if (!strncmp(var, "HERALD", 6))
		return 1;
	size_t n = strcspn(var, "=");
	for (size_t i = 0; i < nstrip; i++)
		if (strip[i] && strlen(strip[i]) == n && !strncmp(var, strip[i], n))
			return 1;
	return 0;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Kills the command's whole group (what it started in the background
 * too) and reaps it. */
static void kill_group(pid_t pid)
{
	kill(-pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int passcmd_run(const char *command, const char *what, const char *const *strip,
		size_t nstrip, int timeout, char **out, char *err, size_t errlen)
{
	*out = NULL;
	size_t nenv = 0;
	while (environ[nenv])
		nenv++;
	char **env = calloc(nenv + 1, sizeof *env);
	if (!env)
		return set_err(err, errlen, PASSCMD_FAILED, "out of memory");
	for (size_t i = 0, k = 0; i < nenv; i++)
		if (!stripped(environ[i], strip, nstrip))
			env[k++] = environ[i];
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		free(env);
		return set_err(err, errlen, PASSCMD_FAILED, "%s: %s", what, strerror(errno));
	}
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawnattr_init(&at);
	/* Its own group, so a timeout can kill everything it started; the
	 * default signal dispositions, whatever herald set for itself. */
	sigset_t all;
	sigfillset(&all);
	posix_spawnattr_setsigdefault(&at, &all);
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setpgroup(&at, 0);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
				      POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	char *argv[] = {"sh", "-c", (char *)command, NULL};
	int e = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	free(env);
	close(fds[1]);
	if (e) {
		close(fds[0]);
		return set_err(err, errlen, PASSCMD_FAILED, "%s: cannot run /bin/sh: %s", what,
			       strerror(e));
	}
	/* One fixed buffer, wiped after use: a growing one would leave
	 * copies of the password in freed memory. What does not fit is
	 * read and dropped, so the command never blocks on a full pipe. */
	char pw[1024], scratch[256];
	size_t n = 0, over = 0;
	double deadline = mono() + timeout;
	int timed_out = 0;
	for (;;) {
		double left = deadline - mono();
		if (left <= 0) {
			timed_out = 1;
			break;
		}
		struct pollfd p = {fds[0], POLLIN, 0};
		int k = poll(&p, 1, (int)(left * 1000) + 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			continue; /* the deadline check ends it */
		char *dst = n < sizeof pw - 1 ? pw + n : scratch;
		size_t room = n < sizeof pw - 1 ? sizeof pw - 1 - n : sizeof scratch;
		ssize_t r = read(fds[0], dst, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (dst == pw + n)
			n += (size_t)r;
		else
			over += (size_t)r;
	}
	close(fds[0]);
	explicit_bzero(scratch, sizeof scratch);
	pw[n] = '\0';
	int st = 0;
	/* Output closed: the command has exited or is about to; it still
	 * gets what is left of its time. */
	while (!timed_out) {
		pid_t w = waitpid(pid, &st, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			st = -1;
			break;
		}
		if (mono() >= deadline)
			timed_out = 1;
		else
			usleep(10000);
	}
	int rc = 0;
	size_t len = strcspn(pw, "\r\n");
	if (timed_out) {
		kill_group(pid);
		rc = set_err(err, errlen, PASSCMD_TIMEDOUT,
			     "%s did not finish within %d s and was killed (it must not wait for input: "
			     "run it by hand to see what it asks)", what, timeout);
	} else if (st != 0 || !len)
		rc = set_err(err, errlen, PASSCMD_FAILED, "%s failed (exit status %d) or printed nothing",
			     what, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	else if (over || (len == n && n == sizeof pw - 1))
		rc = set_err(err, errlen, PASSCMD_FAILED, "%s printed a first line longer than %zu bytes",
			     what, sizeof pw - 2);
	else if (!(*out = strndup(pw, len)))
		rc = set_err(err, errlen, PASSCMD_FAILED, "out of memory");
	explicit_bzero(pw, sizeof pw);
	return rc;
}
