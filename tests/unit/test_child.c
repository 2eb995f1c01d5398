/* util/child.c: what a child sees (environment, stdin, descriptors, its
 * own process group) and that the deadline kills its whole group. The
 * children are /bin/sh scripts that report through their stdout. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "util/child.h"

/* Runs script through /bin/sh with stdout into a pipe; its output. */
static int run(const char *script, const char *const *strip, size_t nstrip, int timeout,
	       char *out, size_t len, int *status)
{
	const char *argv[] = {"sh", "-c", script, NULL};
	struct child_spec s = {.path = "/bin/sh", .argv = argv, .strip = strip, .nstrip = nstrip,
			       .out = CHILD_OUT_PIPE, .timeout = timeout};
	struct child c;
	char err[256];
	assert_int_equal(child_start(&s, &c, err, sizeof err), CHILD_OK);
	size_t n = 0;
	ssize_t r;
	while (n < len - 1 && (r = child_read(&c, out + n, len - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	return child_wait(&c, status);
}

static void test_environment(void **state)
{
	(void)state;
	setenv("HERALD_SECRET", "s3cret-token", 1);
	setenv("HERALDRY", "also-gone", 1);
	setenv("NEWS_KEY", "k3y", 1);
	setenv("KEEP_ME", "kept", 1);
	const char *strip[] = {"NEWS_KEY", NULL, "NEWS"};
	char out[8192];
	int st;
	assert_int_equal(run("env", strip, 3, 10, out, sizeof out, &st), CHILD_OK);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_null(strstr(out, "HERALD"));
	assert_null(strstr(out, "s3cret-token"));
	assert_null(strstr(out, "NEWS_KEY"));
	assert_non_null(strstr(out, "KEEP_ME=kept"));
	assert_non_null(strstr(out, "PATH="));
}

/* stdin is /dev/null; nothing of ours past 2 is open in the child, not
 * even a descriptor without O_CLOEXEC; the child leads its own group. */
static void test_stdin_fds_group(void **state)
{
	(void)state;
	int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC */
	assert_true(fd > 2);
	char script[256], out[512];
	snprintf(script, sizeof script,
		 "cat; echo \"[$(readlink /proc/self/fd/0)]\"; "
		 "[ -e /proc/$$/fd/%d ] && echo leaked; "
		 "echo \"pgid $(cut -d' ' -f5 /proc/$$/stat) pid $$\"", fd);
	int st;
	assert_int_equal(run(script, NULL, 0, 10, out, sizeof out, &st), CHILD_OK);
	close(fd);
	assert_non_null(strstr(out, "[/dev/null]"));
	assert_null(strstr(out, "leaked"));
	int pgid = 0, pid = -1;
	const char *at = strstr(out, "pgid ");
	assert_non_null(at);
	assert_int_equal(sscanf(at, "pgid %d pid %d", &pgid, &pid), 2);
	assert_int_equal(pgid, pid);
}

/* Past the deadline the child and what it started in the background are
 * killed, and the call says so. */
static void test_timeout_kills_group(void **state)
{
	(void)state;
	char out[64];
	int st;
	/* The background sleep keeps stdout open: child_read itself meets
	 * the deadline. */
	assert_int_equal(run("sleep 1000 & echo $!; wait", NULL, 0, 1, out, sizeof out, &st),
			 CHILD_TIMEDOUT);
	pid_t bg = (pid_t)atoi(out);
	assert_true(bg > 0);
	int gone = 0;
	for (int i = 0; i < 200 && !gone; i++) {
		gone = kill(bg, 0) < 0 && errno == ESRCH;
		if (!gone) {
			struct timespec tick = {0, 10 * 1000 * 1000};
			nanosleep(&tick, NULL);
		}
	}
	assert_true(gone);
}

/* stdout into a file, created 0600; a program that does not exist is an
 * error from child_start, with its name. */
static void test_out_file_and_missing(void **state)
{
	(void)state;
	char path[] = "/tmp/herald-test-child-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	unlink(path);
	const char *argv[] = {"sh", "-c", "echo hello", NULL};
	struct child_spec s = {.path = "/bin/sh", .argv = argv, .out = CHILD_OUT_FILE,
			       .out_path = path, .quiet = 1, .timeout = 10};
	struct child c;
	char err[256] = "", buf[64] = "";
	int st;
	assert_int_equal(child_start(&s, &c, err, sizeof err), CHILD_OK);
	assert_int_equal(child_wait(&c, &st), CHILD_OK);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	unlink(path);
	assert_string_equal(buf, "hello\n");
	const char *argv2[] = {"nope", NULL};
	struct child_spec s2 = {.path = "/nonexistent/nope", .argv = argv2, .timeout = 10};
	assert_int_equal(child_start(&s2, &c, err, sizeof err), CHILD_FAILED);
	assert_non_null(strstr(err, "/nonexistent/nope"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_environment),
		cmocka_unit_test(test_stdin_fds_group),
		cmocka_unit_test(test_timeout_kills_group),
		cmocka_unit_test(test_out_file_and_missing),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
