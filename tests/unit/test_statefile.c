/* Unit tests for statefile.c: the tail repair of an append-only line file
 * (torn last line, NUL block, both; cut or kept), the FILE:LINE warning,
 * statefile_line, and statefile_append's repair before each line. Each test works in its own temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "state/statefile.h"

struct world {
	char dir[64];
	char path[128];
	char warning[1024];
	int nwarn;
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof *w);
	if (!w)
		return -1;
	snprintf(w->dir, sizeof w->dir, "/tmp/herald-statefile-XXXXXX");
	if (!mkdtemp(w->dir))
		return -1;
	snprintf(w->path, sizeof w->path, "%s/log", w->dir);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	unlink(w->path);
	rmdir(w->dir);
	free(w);
	return 0;
}

static void on_warn(void *arg, const char *msg)
{
	struct world *w = arg;
	snprintf(w->warning, sizeof w->warning, "%s", msg);
	w->nwarn++;
}

static void put(const struct world *w, const char *data, size_t len)
{
	FILE *f = fopen(w->path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* Repairs, appends one line as herald would, and returns the file. */
static char *repair_and_append(struct world *w, enum statefile_torn torn, size_t *len)
{
	char err[256] = "";
	struct statefile_warn sw = {on_warn, w};
	int fd = statefile_open(w->path, torn, 0, &sw, err, sizeof err);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "next\n", 5), 5);
	close(fd);
	char *data;
	assert_int_equal(read_file(w->path, &data, len), 0);
	return data;
}

/* One damaged (or whole) file: what it holds, what the repair and one
 * appended line leave, and what the warning says. */
struct tail_case {
	const char *name;
	const char *head;     /* the text before the NULs */
	size_t nuls;
	enum statefile_torn torn;
	const char *want;     /* the file after repair + "next\n" */
	const char *warning;  /* in the warning, "" for none */
};

static const struct tail_case cases[] = {
	{"whole", "a\nb\n", 0, STATEFILE_CUT, "a\nb\nnext\n", ""},
	{"torn, cut", "a\nb\nhalf a li", 0, STATEFILE_CUT, "a\nb\nnext\n", ":3: "},
	{"torn, kept", "a\nhalf", 0, STATEFILE_KEEP, "a\nhalf\nnext\n", ":2: "},
	{"NULs after a whole line", "a\nb\n", 4096, STATEFILE_KEEP, "a\nb\nnext\n", "4096 NUL bytes"},
	/* more NULs than one read chunk */
	{"torn, then NULs", "a\nhal", 70000, STATEFILE_CUT, "a\nnext\n", ":2: "},
	{"only NULs", "", 100, STATEFILE_KEEP, "next\n", "100 NUL bytes"},
};

static void test_tails(void **state)
{
	struct world *w = *state;
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		const struct tail_case *c = &cases[i];
		size_t hl = strlen(c->head), len;
		char *data = calloc(1, hl + c->nuls + 1);
		assert_non_null(data);
		memcpy(data, c->head, hl);
		put(w, data, hl + c->nuls);
		free(data);
		w->nwarn = 0;
		w->warning[0] = '\0';
		char *d = repair_and_append(w, c->torn, &len);
		print_message("%s\n", c->name);
		assert_int_equal(len, strlen(c->want));
		assert_memory_equal(d, c->want, len);
		assert_int_equal(w->nwarn, c->warning[0] != '\0');
		if (c->warning[0]) {
			assert_non_null(strstr(w->warning, c->warning));
			assert_memory_equal(w->warning, w->path, strlen(w->path));
		}
		free(d);
	}
}

static char *slurp(const struct world *w, size_t *len)
{
	FILE *f = fopen(w->path, "rb");
	assert_non_null(f);
	static char b[4096];
	*len = fread(b, 1, sizeof b - 1, f);
	b[*len] = '\0';
	fclose(f);
	return b;
}

/* A fragment left behind (an append whose cut-back failed, another
 * process's crash) is dealt with before the next line, on a descriptor
 * opened long before it appeared: the line is never glued to it. */
static void test_append_repairs(void **state)
{
	struct world *w = *state;
	char err[256];
	size_t len;
	for (int keep = 0; keep < 2; keep++) {
		put(w, "one\n", 4);
		int fd = statefile_open(w->path, keep ? STATEFILE_KEEP : STATEFILE_CUT, 0, NULL, err,
					sizeof err);
		assert_true(fd >= 0);
		assert_int_equal(statefile_append(fd, w->path, STATEFILE_CUT, "two\n", 4, 1, NULL, err,
						  sizeof err), 0);
		int o = open(w->path, O_WRONLY | O_APPEND);
		assert_int_equal(write(o, "frag", 4), 4);
		assert_int_equal(write(o, "\0\0", 2), 2);
		close(o);
		assert_int_equal(statefile_append(fd, w->path, keep ? STATEFILE_KEEP : STATEFILE_CUT,
						  "three\n", 6, keep, NULL, err, sizeof err), 0);
		assert_string_equal(slurp(w, &len), keep ? "one\ntwo\nfrag\nthree\n" : "one\ntwo\nthree\n");
		close(fd);
	}
	/* A write that fails (a read-only descriptor: EBADF) leaves the file
	 * as it was, and says so. */
	put(w, "one\n", 4);
	int ro = open(w->path, O_RDONLY);
	int e = 0;
	assert_int_equal(statefile_append(ro, w->path, STATEFILE_CUT, "two\n", 4, 1, &e, err,
					  sizeof err), -1);
	assert_int_equal(e, EBADF);
	assert_non_null(strstr(err, w->path));
	assert_string_equal(slurp(w, &len), "one\n");
	close(ro);
}

static void test_line(void **state)
{
	(void)state;
	char a[] = "\0\0\0time\taddr\n", b[] = "x\0y\n", c[] = "no newline";
	char *text;
	assert_int_equal(statefile_line(a, (ssize_t)sizeof a - 1, &text), 1);
	assert_string_equal(text, "time\taddr");
	assert_int_equal(statefile_line(b, 4, &text), -1);
	assert_null(text);
	assert_int_equal(statefile_line(c, (ssize_t)strlen(c), &text), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_tails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_repairs, setup, teardown),
		cmocka_unit_test(test_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
