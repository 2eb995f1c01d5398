#include "util/passcmd.h"
#include "util/buf.h"
#include "util/child.h"
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Reads the command's output into pw (size pwlen), what does not fit
 * read and dropped, so the command never blocks on a full pipe: one fixed
 * buffer, wiped after use, since a growing one would leave copies of the
 * password in freed memory. *n: bytes kept; 1 if more came; CHILD_* for
 * a timeout or a read error. */
static int read_output(struct child *ch, char *pw, size_t pwlen, size_t *n)
{
	char scratch[256];
	int over = 0, rc = 0;
	*n = 0;
	for (;;) {
		char *dst = *n < pwlen - 1 ? pw + *n : scratch;
		size_t room = *n < pwlen - 1 ? pwlen - 1 - *n : sizeof scratch;
		ssize_t r = child_read(ch, dst, room);
		if (r < 0)
			rc = (int)r;
		if (r <= 0)
			break;
		if (dst == scratch)
			over = 1;
		else
			*n += (size_t)r;
	}
	explicit_bzero(scratch, sizeof scratch);
	pw[*n] = '\0';
	return rc < 0 ? rc : over;
}

int passcmd_run(const char *command, const char *what, const char *const *strip,
		size_t nstrip, int timeout, char **out, char *err, size_t errlen)
{
	*out = NULL;
	const char *argv[] = {"sh", "-c", command, NULL};
	struct child_spec spec = {.path = "/bin/sh", .argv = argv, .strip = strip, .nstrip = nstrip,
				  .out = CHILD_OUT_PIPE, .timeout = timeout};
	struct child ch;
	char why[256];
	if (child_start(&spec, &ch, why, sizeof why) < 0)
		return set_err(err, errlen, PASSCMD_FAILED, "%s: %s", what, why);
	char pw[1024];
	size_t n;
	int got = read_output(&ch, pw, sizeof pw, &n);
	int st;
	/* Output closed: the command has exited or is about to; it still
	 * gets what is left of its time. A timeout while reading kills it
	 * at once (child_wait finds the deadline passed). */
	int w = child_wait(&ch, &st);
	int rc = 0;
	size_t len = strcspn(pw, "\r\n");
	if (got == CHILD_TIMEDOUT || w == CHILD_TIMEDOUT)
		rc = set_err(err, errlen, PASSCMD_TIMEDOUT,
			     "%s did not finish within %d s and was killed (it must not wait for input: "
			     "run it by hand to see what it asks)", what, timeout);
	else if (got < 0 || w < 0 || st != 0 || !len)
		rc = set_err(err, errlen, PASSCMD_FAILED, "%s failed (exit status %d) or printed nothing",
			     what, w == 0 && WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	else if (got == 1 || (len == n && n == sizeof pw - 1))
		rc = set_err(err, errlen, PASSCMD_FAILED, "%s printed a first line longer than %zu bytes",
			     what, sizeof pw - 2);
	else if (!(*out = strndup(pw, len)))
		rc = set_err(err, errlen, PASSCMD_FAILED, "out of memory");
	explicit_bzero(pw, sizeof pw);
	return rc;
}
