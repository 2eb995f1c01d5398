#include "state/statefile.h"
#include "util/buf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK 65536

void statefile_warnf(const struct statefile_warn *w, const char *fmt, ...)
{
	if (!w || !w->fn)
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	w->fn(w->arg, msg);
}

/* The offset just past the last byte before `end` that is not NUL. */
static off_t data_end(int fd, off_t end)
{
	char b[CHUNK];
	while (end > 0) {
		size_t want = end > CHUNK ? CHUNK : (size_t)end;
		ssize_t n = pread(fd, b, want, end - (off_t)want);
		if (n != (ssize_t)want)
			return -1;
		for (size_t i = want; i > 0; i--)
			if (b[i - 1] != '\0')
				return end - (off_t)want + (off_t)i;
		end -= (off_t)want;
	}
	return 0;
}

/* Where the last line starts (just past the last newline before end), and
 * how many newlines come before it: its line number less one. */
static int last_line(int fd, off_t end, off_t *start, long *lines)
{
	char b[CHUNK];
	*start = 0;
	*lines = 0;
	for (off_t off = 0; off < end;) {
		size_t want = end - off > CHUNK ? CHUNK : (size_t)(end - off);
		ssize_t n = pread(fd, b, want, off);
		if (n <= 0)
			return -1;
		for (ssize_t i = 0; i < n; i++)
			if (b[i] == '\n') {
				(*lines)++;
				*start = off + i + 1;
			}
		off += n;
	}
	return 0;
}

int statefile_repair(int fd, const char *path, enum statefile_torn torn,
		     struct statefile_tail *t, char *err, size_t errlen)
{
	memset(t, 0, sizeof *t);
	struct stat st;
	char last;
	if (fstat(fd, &st) < 0)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	if (st.st_size == 0)
		return 0;
	if (pread(fd, &last, 1, st.st_size - 1) != 1)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno ? errno : EIO));
	if (last == '\n')
		return 0;
	off_t end = last ? st.st_size : data_end(fd, st.st_size);
	if (end < 0)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno ? errno : EIO));
	t->nuls = (size_t)(st.st_size - end);
	off_t start = end;
	long lines = 0;
	if (end > 0 && pread(fd, &last, 1, end - 1) == 1 && last != '\n') {
		if (last_line(fd, end, &start, &lines) < 0)
			return set_err(err, errlen, -1, "%s: %s", path, strerror(errno ? errno : EIO));
		t->line = lines + 1;
	}
	off_t keep = t->line && torn == STATEFILE_CUT ? start : end;
	if (keep < st.st_size && ftruncate(fd, keep) < 0)
		return set_err(err, errlen, -1, "%s: cannot repair its end: %s", path, strerror(errno));
	/* O_APPEND or not, the newline lands at the (new) end. */
	if (t->line && torn == STATEFILE_KEEP &&
	    (lseek(fd, 0, SEEK_END) < 0 || write(fd, "\n", 1) != 1))
		return set_err(err, errlen, -1, "%s: cannot repair its end: %s", path,
			       strerror(errno ? errno : EIO));
	if (fdatasync(fd) < 0)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	return 0;
}

int statefile_open(const char *path, enum statefile_torn torn, int keep_lock,
		   const struct statefile_warn *w, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	struct statefile_tail t;
	if (flock(fd, LOCK_EX) < 0) {
		set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (statefile_repair(fd, path, torn, &t, err, errlen) < 0) {
		close(fd);
		return -1;
	}
	if (!keep_lock)
		flock(fd, LOCK_UN);
	if (t.line)
		statefile_warnf(w, "%s:%ld: the last line was cut short (a crash or a full disk)%s; %s",
				path, t.line, t.nuls ? " and followed by NUL bytes" : "",
				torn == STATEFILE_CUT ? "removed it (its work is done again)"
				: "ended it there and kept what it says");
	else if (t.nuls)
		statefile_warnf(w, "%s: %zu NUL bytes at the end (a power cut) removed", path, t.nuls);
	return fd;
}

int statefile_line(char *line, ssize_t n, char **text)
{
	*text = NULL;
	if (n <= 0 || line[n - 1] != '\n')
		return 0;
	line[--n] = '\0';
	char *s = line;
	while (s < line + n && *s == '\0')
		s++;
	if (memchr(s, '\0', (size_t)(line + n - s)))
		return -1;
	*text = s;
	return 1;
}

int statefile_each_line(FILE *f, int (*fn)(void *arg, char *text, long no), void *arg)
{
	char *line = NULL, *text;
	size_t cap = 0;
	ssize_t n;
	long no = 0;
	int rc = 0;
	while (!rc && (n = getline(&line, &cap, f)) > 0) {
		int k = statefile_line(line, n, &text);
		if (k == 0)
			break;
		rc = fn(arg, text, ++no);
	}
	free(line);
	return rc;
}
