#include "util/child.h"
#include "util/buf.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
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

double child_left(const struct child *c)
{
	return c->deadline - mono();
}

/* The file actions: stdin /dev/null, stdout as asked, stderr herald's or
 * /dev/null, and nothing else of herald's open in the child. */
static int file_actions(posix_spawn_file_actions_t *fa, const struct child_spec *s, int wr)
{
	int e = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
	if (!e && s->out == CHILD_OUT_PIPE)
		e = posix_spawn_file_actions_adddup2(fa, wr, 1);
	else if (!e && s->out == CHILD_OUT_FILE)
		e = posix_spawn_file_actions_addopen(fa, 1, s->out_path, O_WRONLY | O_CREAT | O_TRUNC,
						     0600);
	else if (!e)
		e = posix_spawn_file_actions_addopen(fa, 1, "/dev/null", O_WRONLY, 0);
	if (!e && s->quiet)
		e = posix_spawn_file_actions_addopen(fa, 2, "/dev/null", O_WRONLY, 0);
	if (!e)
		e = posix_spawn_file_actions_addclosefrom_np(fa, 3);
	return e;
}

static int spawn(const struct child_spec *s, pid_t *pid, int wr, char **env)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	int e = posix_spawn_file_actions_init(&fa);
	if (e)
		return e;
	if ((e = posix_spawnattr_init(&at))) {
		posix_spawn_file_actions_destroy(&fa);
		return e;
	}
	sigset_t all, none;
	sigfillset(&all);
	sigemptyset(&none);
	e = file_actions(&fa, s, wr);
	if (!e)
		e = posix_spawnattr_setsigdefault(&at, &all);
	if (!e)
		e = posix_spawnattr_setsigmask(&at, &none);
	if (!e)
		e = posix_spawnattr_setpgroup(&at, 0);
	if (!e)
		e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
					      POSIX_SPAWN_SETSIGMASK);
	if (!e)
		e = posix_spawn(pid, s->path, &fa, &at, (char *const *)(void *)s->argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return e;
}

int child_start(const struct child_spec *s, struct child *c, char *err, size_t errlen)
{
	*c = (struct child){.pid = -1, .out = -1, .reap_group = s->reap_group};
	c->deadline = mono() + s->timeout;
	size_t nenv = 0;
	while (environ[nenv])
		nenv++;
	/* Pointers into environ: the values are not copied anywhere. */
	char **env = calloc(nenv + 1, sizeof *env);
	if (!env)
		return set_err(err, errlen, CHILD_FAILED, "out of memory");
	for (size_t i = 0, k = 0; i < nenv; i++)
		if (!stripped(environ[i], s->strip, s->nstrip))
			env[k++] = environ[i];
	int fds[2] = {-1, -1};
	if (s->out == CHILD_OUT_PIPE && pipe2(fds, O_CLOEXEC) < 0) {
		free(env);
		return set_err(err, errlen, CHILD_FAILED, "pipe: %s", strerror(errno));
	}
	int e = spawn(s, &c->pid, fds[1], env);
	free(env);
	if (fds[1] >= 0)
		close(fds[1]);
	if (e) {
		if (fds[0] >= 0)
			close(fds[0]);
		c->pid = -1;
		return set_err(err, errlen, CHILD_FAILED, "cannot run %s: %s", s->path, strerror(e));
	}
	c->out = fds[0];
	return CHILD_OK;
}

/* Milliseconds to the deadline for poll, rounded up; 0 past it. */
static int left_ms(const struct child *c)
{
	double left = child_left(c);
	return left <= 0 ? 0 : (int)(left * 1000) + 1;
}

ssize_t child_read(struct child *c, void *buf, size_t len)
{
	for (;;) {
		int ms = left_ms(c);
		if (ms == 0)
			return CHILD_TIMEDOUT;
		struct pollfd p = {c->out, POLLIN, 0};
		int k = poll(&p, 1, ms);
		if (k < 0 && errno != EINTR)
			return CHILD_FAILED;
		if (k <= 0)
			continue; /* EINTR, or the deadline, which the next turn sees */
		ssize_t r = read(c->out, buf, len);
		if (r < 0 && errno == EINTR)
			continue;
		return r < 0 ? CHILD_FAILED : r;
	}
}

/* The child's exit, waiting until the deadline: 1 reaped, 0 still
 * running at the deadline, -1 a waitpid error. A look every 10 ms: a
 * pidfd would wait without them, but valgrind (3.19) does not know
 * pidfd_open, and a SIGCHLD handler would be process-wide state for one
 * caller. The wait is short after the output ended (a password_command)
 * and a browser runs for seconds. */
static int reap_by_deadline(struct child *c, int *status)
{
	for (;;) {
		pid_t w = waitpid(c->pid, status, WNOHANG);
		if (w == c->pid)
			return 1;
		if (w < 0 && errno != EINTR)
			return -1;
		if (left_ms(c) == 0)
			return 0;
		struct timespec tick = {0, 10 * 1000 * 1000};
		nanosleep(&tick, NULL);
	}
}

int child_wait(struct child *c, int *status)
{
	*status = -1;
	if (c->out >= 0) {
		close(c->out);
		c->out = -1;
	}
	if (c->pid < 0)
		return CHILD_FAILED;
	int r = reap_by_deadline(c, status);
	int rc = r == 1 ? CHILD_OK : r == 0 ? CHILD_TIMEDOUT : CHILD_FAILED;
	if (r != 1) {
		/* The whole group: what it started in the background too. */
		kill(-c->pid, SIGKILL);
		while (waitpid(c->pid, r == 0 ? status : NULL, 0) < 0 && errno == EINTR)
			;
	} else if (c->reap_group)
		kill(-c->pid, SIGKILL); /* helpers that outlived it (a browser's renderers) */
	c->pid = -1;
	return rc;
}
