/* Unit tests for state/listlog.c (list.log: append, parse, the follower
 * that reads only what is new, a torn tail, a replaced file) and the
 * confirmation token of util/token.c that signup lines come from. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/listlog.h"
#include "util/token.h"

struct seen {
	char addr[8][64], name[8][64];
	enum listlog_action act[8];
	int n;
};

static void on_entry(void *arg, const struct listlog_entry *e)
{
	struct seen *s = arg;
	if (s->n < 8) {
		snprintf(s->addr[s->n], sizeof s->addr[0], "%s", e->addr);
		snprintf(s->name[s->n], sizeof s->name[0], "%s", e->name);
		s->act[s->n++] = e->action;
	}
}

static void on_warn(void *arg, const char *msg)
{
	snprintf(arg, 512, "%s", msg);
}

static void append_raw(const char *path, const char *s)
{
	FILE *f = fopen(path, "a");
	assert_non_null(f);
	fputs(s, f);
	fclose(f);
}

static void test_append_follow(void **state)
{
	char dir[] = "/tmp/herald-listlog-XXXXXX", err[256], warning[512] = "";
	assert_non_null(mkdtemp(dir));
	struct statefile_warn w = {on_warn, warning};
	struct listlog l;
	struct listlog_follow f;
	struct seen s = {0};
	assert_int_equal(listlog_follow_init(&f, dir, err, sizeof err), 0);
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 0); /* no file */
	assert_int_equal(listlog_open(&l, dir, &w, err, sizeof err), 0);
	assert_int_equal(listlog_append(&l, 1764756000, LISTLOG_UNSUBSCRIBE, "joy@example.net", NULL,
					"web", err, sizeof err), 0);
	assert_int_equal(listlog_append(&l, 1764756001, LISTLOG_SUBSCRIBE, "zoe@example.net", "Zoë\tZ",
					"web", err, sizeof err), 0);
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 2);
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 0); /* nothing new */
	assert_int_equal(s.act[0], LISTLOG_UNSUBSCRIBE);
	assert_string_equal(s.addr[0], "joy@example.net");
	assert_int_equal(s.act[1], LISTLOG_SUBSCRIBE);
	assert_string_equal(s.name[1], "Zoë Z"); /* the tab cleaned out */
	/* A line being written is not read until it is whole; a bad line is
	 * reported as FILE:LINE and skipped. */
	append_raw(l.path, "2026-12-03T10:00:00Z\tunsubscribe\tbob@exa");
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 0);
	append_raw(l.path, "mple.net\tweb\nnonsense\n");
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 1);
	assert_string_equal(s.addr[2], "bob@example.net");
	char want[256];
	snprintf(want, sizeof want, "%s/list.log:4: not a list.log line", dir);
	assert_true(strstr(warning, want) != NULL);
	listlog_close(&l);
	/* A torn tail is cut off when the writer opens the file again. */
	append_raw(f.path, "2026-12-03T10:00:01Z\tunsub");
	assert_int_equal(listlog_open(&l, dir, &w, err, sizeof err), 0);
	snprintf(want, sizeof want, "%s/list.log:5: the last line was cut short", dir);
	assert_true(strstr(warning, want) != NULL);
	listlog_close(&l);
	/* A replaced file is read from its start. */
	char *p = strdup(f.path);
	unlink(p);
	append_raw(p, "2026-12-03T10:00:02Z\tunsubscribe\tann@example.net\tweb\n");
	s.n = 0;
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 1);
	assert_string_equal(s.addr[0], "ann@example.net");
	unlink(p);
	free(p);
	listlog_follow_free(&f);
	rmdir(dir);
}

/* A line taken back (its fdatasync failed: statefile_append cuts it) and
 * another of the same length written in its place, at once: the size is
 * what the follower saw, yet it reads the new line. */
static void test_taken_back(void **state)
{
	(void)state;
	char dir[] = "/tmp/herald-listlog-XXXXXX", err[256], warning[512] = "";
	assert_non_null(mkdtemp(dir));
	struct statefile_warn w = {on_warn, warning};
	struct listlog_follow f;
	struct seen s = {0};
	assert_int_equal(listlog_follow_init(&f, dir, err, sizeof err), 0);
	append_raw(f.path, "2026-12-03T10:00:00Z\tunsubscribe\tjoy@example.net\tweb\n");
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 1);
	const char *a = "2026-12-03T10:00:01Z\tunsubscribe\taaa@example.net\tweb\n";
	append_raw(f.path, a);
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 1);
	assert_string_equal(s.addr[1], "aaa@example.net");
	struct stat st;
	assert_int_equal(stat(f.path, &st), 0);
	assert_int_equal(truncate(f.path, st.st_size - (off_t)strlen(a)), 0);
	append_raw(f.path, "2026-12-03T10:00:01Z\tunsubscribe\tbbb@example.net\tweb\n");
	s.n = 0;
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 2);
	assert_string_equal(s.addr[0], "joy@example.net");
	assert_string_equal(s.addr[1], "bbb@example.net");
	assert_int_equal(f.resets, 1);   /* for consumers to rebuild what they kept */
	assert_int_equal(listlog_follow_poll(&f, on_entry, &s, &w, err, sizeof err), 0);
	assert_string_equal(warning, "");
	unlink(f.path);
	listlog_follow_free(&f);
	rmdir(dir);
}

static void test_parse(void **state)
{
	struct listlog_entry e;
	char a[] = "2026-12-03T10:00:00Z\tsubscribe\tjoy@example.net\tweb", /* no name field */
	     b[] = "2026-12-03T10:00:00Z\tunsubscribe\tjoy@example.net\tweb\tJoy",
	     c[] = "2026-12-03T10:00:00Z\tsubscribe\tjoy@example.net\tweb\t\tx",
	     d[] = "2026-12-03T10:00:00Z\tsubscribe\tjoy@example.net\tweb\t",
	     g[] = "yesterday\tunsubscribe\tjoy@example.net\tweb";
	assert_int_equal(listlog_parse_line(a, &e), -1);
	assert_int_equal(listlog_parse_line(b, &e), -1);
	assert_int_equal(listlog_parse_line(c, &e), -1);
	assert_int_equal(listlog_parse_line(d, &e), 0);
	assert_string_equal(e.name, "");
	assert_int_equal(listlog_parse_line(g, &e), -1);
}

/* The fold: the last line per address wins, case-insensitively; with
 * keep the rows hold address and name for a walk, without it they do not. */
static void test_fold(void **state)
{
	(void)state;
	struct listlog_entry e[] = {
		{100, LISTLOG_SUBSCRIBE, "ann@example.net", "web", "Ann"},
		{200, LISTLOG_UNSUBSCRIBE, "bob@example.net", "web", ""},
		{300, LISTLOG_UNSUBSCRIBE, "ANN@example.net", "web", ""},
		{400, LISTLOG_SUBSCRIBE, "bob@example.net", "web", "Bob B"},
	};
	for (int keep = 0; keep <= 1; keep++) {
		struct listlog_fold f;
		listlog_fold_init(&f, keep);
		for (size_t i = 0; i < sizeof e / sizeof *e; i++)
			assert_int_equal(listlog_fold_add(&f, &e[i]), 0);
		assert_int_equal(f.n, 2);
		const struct listlog_fold_row *r = listlog_fold_get(&f, "Ann@Example.NET");
		assert_non_null(r);
		assert_int_equal(r->action, LISTLOG_UNSUBSCRIBE);
		assert_int_equal(r->time, 300);
		r = listlog_fold_get(&f, "bob@example.net");
		assert_int_equal(r->action, LISTLOG_SUBSCRIBE);
		if (keep) {
			assert_string_equal(r->addr, "bob@example.net");
			assert_string_equal(r->name, "Bob B");
		} else
			assert_null(r->addr);
		assert_null(listlog_fold_get(&f, "cyd@example.net"));
		listlog_fold_free(&f);
	}
}

static void test_confirm_token(void **state)
{
	char tok[TOKEN_CONFIRM_MAX];
	assert_int_equal(token_confirm_make("secret-123", "Joy@Example.net", "Joy", 2000, tok), 0);
	assert_int_equal(token_confirm_check("secret-123", "joy@example.net", "Joy", tok, 1999), 1);
	assert_int_equal(token_confirm_check("secret-123", "joy@example.net", "Joy", tok, 2001), 2);
	assert_int_equal(token_confirm_check("secret-123", "joy@example.net", "Jo", tok, 1999), 0);
	assert_int_equal(token_confirm_check("secret-123", "bob@example.net", "Joy", tok, 1999), 0);
	assert_int_equal(token_confirm_check("secret-456", "joy@example.net", "Joy", tok, 1999), 0);
	tok[0] = '3'; /* a later expiry: the HMAC no longer matches */
	assert_int_equal(token_confirm_check("secret-123", "joy@example.net", "Joy", tok, 1999), 0);
	char reader[TOKEN_LEN + 1];
	assert_int_equal(token_make("secret-123", "joy@example.net", reader), 0);
	assert_int_equal(token_confirm_check("secret-123", "joy@example.net", "", reader, 1), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_follow),
		cmocka_unit_test(test_taken_back),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_fold),
		cmocka_unit_test(test_confirm_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
