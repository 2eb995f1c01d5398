/* Unit tests for statefile.c: the tail repair of an append-only line file
 * (torn last line, NUL block, both; cut or kept), the FILE:LINE warning,
 * and statefile_line. Each test works in its own temporary directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "statefile.h"

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

static void test_whole_file_untouched(void **state)
{
	struct world *w = *state;
	put(w, "a\nb\n", 4);
	size_t len;
	char *d = repair_and_append(w, STATEFILE_CUT, &len);
	assert_int_equal(len, 9);
	assert_memory_equal(d, "a\nb\nnext\n", 9);
	assert_int_equal(w->nwarn, 0);
	free(d);
}

static void test_torn_cut(void **state)
{
	struct world *w = *state;
	put(w, "a\nb\nhalf a li", 13);
	size_t len;
	char *d = repair_and_append(w, STATEFILE_CUT, &len);
	assert_int_equal(len, 9);
	assert_memory_equal(d, "a\nb\nnext\n", 9);
	assert_int_equal(w->nwarn, 1);
	char want[256];
	snprintf(want, sizeof want, "%s:3: ", w->path);
	assert_memory_equal(w->warning, want, strlen(want));
	assert_non_null(strstr(w->warning, "removed it"));
	free(d);
}

static void test_torn_kept(void **state)
{
	struct world *w = *state;
	put(w, "a\nhalf", 6);
	size_t len;
	char *d = repair_and_append(w, STATEFILE_KEEP, &len);
	assert_int_equal(len, 12);
	assert_memory_equal(d, "a\nhalf\nnext\n", 12);
	assert_non_null(strstr(w->warning, ":2: "));
	free(d);
}

static void test_nuls_after_whole_line(void **state)
{
	struct world *w = *state;
	char data[4 + 4096];
	memcpy(data, "a\nb\n", 4);
	memset(data + 4, 0, 4096);
	put(w, data, sizeof data);
	size_t len;
	char *d = repair_and_append(w, STATEFILE_KEEP, &len);
	assert_int_equal(len, 9);
	assert_memory_equal(d, "a\nb\nnext\n", 9);
	assert_int_equal(w->nwarn, 1);
	assert_non_null(strstr(w->warning, "4096 NUL bytes"));
	free(d);
}

static void test_torn_then_nuls(void **state)
{
	struct world *w = *state;
	/* More NULs than one read chunk, before them a torn line. */
	size_t n = 5 + 70000;
	char *data = calloc(1, n);
	assert_non_null(data);
	memcpy(data, "a\nhal", 5);
	put(w, data, n);
	free(data);
	size_t len;
	char *d = repair_and_append(w, STATEFILE_CUT, &len);
	assert_int_equal(len, 7);
	assert_memory_equal(d, "a\nnext\n", 7);
	assert_non_null(strstr(w->warning, ":2: "));
	free(d);
}

static void test_only_nuls(void **state)
{
	struct world *w = *state;
	char zeros[100] = {0};
	put(w, zeros, sizeof zeros);
	size_t len;
	char *d = repair_and_append(w, STATEFILE_KEEP, &len);
	assert_int_equal(len, 5);
	assert_memory_equal(d, "next\n", 5);
	free(d);
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
		cmocka_unit_test_setup_teardown(test_whole_file_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nuls_after_whole_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_then_nuls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_only_nuls, setup, teardown),
		cmocka_unit_test(test_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
