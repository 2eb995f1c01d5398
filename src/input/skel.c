#include "input/skel.h"
#include "util/buf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

/* The starter files, NUL-terminated, assembled into .rodata from the
 * repo's own files (the Makefile makes skel.o depend on them). .incbin
 * rather than a generated C array: no generator to keep, no second copy
 * of the text in the tree, and gcc and clang (the fuzz build) both take
 * it. The path is relative to the top of the tree, where make runs. */
#define SKEL_TEXT(sym, file) \
	__asm__(".pushsection .rodata\n.globl " #sym "\n.hidden " #sym "\n" #sym ":\n" \
		".incbin \"" file "\"\n.byte 0\n.popsection\n"); \
	extern const char sym[]
SKEL_TEXT(skel_conf, "config.example");
SKEL_TEXT(skel_post, "skel/first-issue.md");
SKEL_TEXT(skel_subs, "skel/subscribers.csv");

int skel_exitcode(int rc)
{
	return rc == SKEL_OK ? EX_OK : rc == SKEL_NOMEM ? EX_OSERR : EX_CANTCREAT;
}

/* One thing init makes: a file with its text, or a directory. */
struct item {
	char *path;
	const char *text;   /* NULL: a directory */
	mode_t mode;
	int may_exist;      /* a directory that is fine to find (DIR, posts/) */
	int made;           /* this call created it: undone on failure */
};

/* The post with every @DATE@ replaced. */
static char *dated(const char *text, const char *date)
{
	struct buf b = {0};
	const char *p = text, *hit;
	int rc = 0;
	while (!rc && (hit = strstr(p, "@DATE@"))) {
		rc = buf_add(&b, p, (size_t)(hit - p)) | buf_adds(&b, date);
		p = hit + 6;
	}
	if (rc || buf_adds(&b, p) < 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_detach(&b);
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* O_EXCL: a file that appeared since the look is still not written over. */
static int make(struct item *it, char *err, size_t errlen)
{
	if (!it->text) {
		if (mkdir(it->path, it->mode) == 0)
			it->made = 1;
		else if (!(it->may_exist && errno == EEXIST))
			return set_err(err, errlen, SKEL_CANTCREAT, "%s: cannot create the directory: %s "
				       "(init left nothing behind)", it->path, strerror(errno));
		return SKEL_OK;
	}
	int fd = open(it->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, it->mode);
	if (fd < 0)
		return set_err(err, errlen, SKEL_CANTCREAT, "%s: cannot create: %s (init left nothing "
			       "behind)", it->path, strerror(errno));
	it->made = 1;
	int bad = write_all(fd, it->text, strlen(it->text)) < 0;
	int saved = errno;
	if (close(fd) < 0 && !bad) {
		bad = 1;
		saved = errno;
	}
	return bad ? set_err(err, errlen, SKEL_CANTCREAT, "%s: cannot write: %s (init left nothing "
			     "behind)", it->path, strerror(saved))
		   : SKEL_OK;
}

/* Every path in the way, named in err: nothing is created when one is. */
static int in_the_way(struct item *items, size_t n, char *err, size_t errlen)
{
	struct buf names = {0};
	size_t found = 0;
	struct stat st;
	for (size_t i = 0; i < n; i++) {
		if (lstat(items[i].path, &st) < 0)
			continue;    /* nothing there */
		/* A directory init may find there may be a symlink to one. */
		if (items[i].may_exist && stat(items[i].path, &st) == 0 && S_ISDIR(st.st_mode))
			continue;
		if (buf_printf(&names, "%s%s", found ? ", " : "", items[i].path) < 0) {
			buf_free(&names);
			return set_err(err, errlen, SKEL_NOMEM, "out of memory");
		}
		found++;
	}
	int rc = SKEL_OK;
	if (found)
		rc = set_err(err, errlen, SKEL_EXISTS,
			     "%s already %s: init writes over nothing, so it wrote nothing (move %s "
			     "away, or give init another directory)",
			     names.p, found > 1 ? "exist" : "exists", found > 1 ? "them" : "it");
	buf_free(&names);
	return rc;
}

int skel_write(const char *dir, const char *date, char *post, size_t postlen, char *err,
	       size_t errlen)
{
	snprintf(post, postlen, "posts/%s-first-issue.md", date);
	char *post_text = dated(skel_post, date);
	struct item items[] = {
		{NULL, NULL, 0755, 1, 0},
		{NULL, skel_conf, 0600, 0, 0},   /* 0600: it may come to hold a password */
		{NULL, NULL, 0755, 1, 0},
		{NULL, post_text, 0644, 0, 0},
		{NULL, skel_subs, 0600, 0, 0},   /* people's addresses */
		{NULL, NULL, 0700, 0, 0},
	};
	const char *rel[] = {"", "herald.conf", "posts", post, "subscribers.csv", "state"};
	size_t n = sizeof items / sizeof *items;
	int rc = post_text ? SKEL_OK : SKEL_NOMEM;
	/* In DIR ".", the names alone: they are what the person types next. */
	int here = !strcmp(dir, ".");
	for (size_t i = 0; !rc && i < n; i++)
		if (asprintf(&items[i].path, "%s%s%s", here && *rel[i] ? "" : dir,
			     *rel[i] && !here ? "/" : "", rel[i]) < 0) {
			items[i].path = NULL;
			rc = SKEL_NOMEM;
		}
	if (rc == SKEL_NOMEM)
		set_err(err, errlen, rc, "out of memory");
	if (!rc)
		rc = in_the_way(items, n, err, errlen);
	for (size_t i = 0; !rc && i < n; i++)
		rc = make(&items[i], err, errlen);
	/* Undo in reverse, so directories are empty when their turn comes. */
	for (size_t i = n; rc && i-- > 0;)
		if (items[i].made)
			(void)(items[i].text ? unlink(items[i].path) : rmdir(items[i].path));
	for (size_t i = 0; i < n; i++)
		free(items[i].path);
	free(post_text);
	return rc;
}
