/* tests/unit/tmpdir.h: a test's own temporary directory (cmocka setup
 * and teardown) and small files in it, for the unit tests of modules
 * that read and write files. Include after cmocka.h. */
#ifndef HERALD_TEST_TMPDIR_H
#define HERALD_TEST_TMPDIR_H
#include <stdio.h>
#include <stdlib.h>

struct world {
	char dir[64];
	char err[512];
};

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof *w);
	if (!w)
		return -1;
	snprintf(w->dir, sizeof w->dir, "/tmp/herald-state-XXXXXX");
	if (!mkdtemp(w->dir))
		return -1;
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
	int rc = system(cmd);
	free(w);
	return rc;
}

static void put(const struct world *w, const char *name, const char *text)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", w->dir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static char *get(const struct world *w, const char *name)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", w->dir, name);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}
#endif
