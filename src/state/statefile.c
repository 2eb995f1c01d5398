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

/* Back to size (a line that did not make it whole, or was not synced):
 * the next line starts a line of its own. When even this fails the next
 * append's repair cuts it. */
static void cut_back(int fd, off_t size)
{
	if (ftruncate(fd, size) == 0)
		(void)fsync(fd);
}

int statefile_append(int fd, const char *path, enum statefile_torn torn, const char *data,
		     size_t len, int sync, int *errnum, char *err, size_t errlen)
{
	struct statefile_tail t;
	struct stat st;
	int e = 0;
	if (errnum)
		*errnum = 0;
	/* Cheap when the file ends in a newline: one fstat, one pread. */
	if (statefile_repair(fd, path, torn, &t, err, errlen) < 0)
		e = errno ? errno : EIO;
	else if (fstat(fd, &st) < 0)
		e = errno;
	if (e) {
		if (errnum)
			*errnum = e;
		return set_err(err, errlen, -1, "%s: %s", path, strerror(e));
	}
	ssize_t w = write(fd, data, len);
	e = w < 0 ? errno : ENOSPC;  /* a short write: the disk filled up */
	if (w == (ssize_t)len) {
		if (!sync || fdatasync(fd) == 0)
			return 0;
		e = errno;
		cut_back(fd, st.st_size);
	} else if (w > 0 && torn == STATEFILE_KEEP) {
		/* O_APPEND: the newline lands at the end. If it does not,
		 * the next append's repair ends the fragment. */
		if (write(fd, "\n", 1) != 1)
			errno = 0;
	} else if (w > 0) {
		cut_back(fd, st.st_size);
	}
	if (errnum)
		*errnum = e;
	return set_err(err, errlen, -1, "%s: %s%s", path, strerror(e),
		       w == (ssize_t)len ? " (fdatasync; the line was taken back)" : "");
}

/* Opens path and takes its flock; when the name was given to another
 * file meanwhile (state merge renames the merged file over it while
 * holding the old one's lock), the new one: a line appended to the old
 * file would be lost with it. */
static int open_locked(const char *path, char *err, size_t errlen)
{
	for (;;) {
		int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
		if (fd < 0)
			return set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
		struct stat a, b;
		if (flock(fd, LOCK_EX) < 0 || fstat(fd, &a) < 0) {
			set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return fd;
		close(fd);
	}
}

int statefile_open(const char *path, enum statefile_torn torn, int keep_lock,
		   const struct statefile_warn *w, char *err, size_t errlen)
{
	int fd = open_locked(path, err, errlen);
	if (fd < 0)
		return -1;
	struct statefile_tail t;
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

/* The line loop of both readers below: repair -1 ends at a last line
 * without its newline (another writer's, in progress); otherwise that
 * line is the torn one statefile_repair would deal with (enum
 * statefile_torn). */
static int each_line(FILE *f, int repair, long *torn_no,
		     int (*fn)(void *arg, char *text, long no), void *arg)
{
	char *line = NULL, *text;
	size_t cap = 0;
	ssize_t n;
	long no = 0;
	int rc = 0;
	while (!rc && (n = getline(&line, &cap, f)) > 0) {
		if (repair >= 0 && line[n - 1] != '\n') {
			/* NULs at the end go (only NULs: no line at all), then
			 * the fragment is ended or cut. getline left room for
			 * the newline. */
			while (n > 0 && line[n - 1] == '\0')
				n--;
			ssize_t lead = 0;
			while (lead < n && line[lead] == '\0')
				lead++;
			if (lead == n)
				break;
			*torn_no = no + 1;
			if (repair == STATEFILE_CUT)
				break;
			line[n++] = '\n';
		}
		if (statefile_line(line, n, &text) == 0)
			break;
		rc = fn(arg, text, ++no);
	}
	free(line);
	return rc;
}

int statefile_each_line(FILE *f, int (*fn)(void *arg, char *text, long no), void *arg)
{
	return each_line(f, -1, NULL, fn, arg);
}

int statefile_each_line_torn(FILE *f, enum statefile_torn torn, long *torn_no,
			     int (*fn)(void *arg, char *text, long no), void *arg)
{
	*torn_no = 0;
	return each_line(f, (int)torn, torn_no, fn, arg);
}

/* ---- merging copies of one file ------------------------------------------ */

struct mentry {
	time_t when;
	size_t seq;      /* order read: paths[0] first */
	char *line, *key;
	int own;         /* read from paths[0] */
};

struct mread {
	struct mentry *v;
	size_t n, cap;
	statefile_mline_fn fn;
	const char *path, *what;
	const struct statefile_warn *w;
	int own;
};

static const char *mkey(const struct mentry *e)
{
	return e->key ? e->key : e->line;
}

static int by_key(const void *a, const void *b)
{
	const struct mentry *x = a, *y = b;
	int c = strcmp(mkey(x), mkey(y));
	return c ? c : x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int by_time(const void *a, const void *b)
{
	const struct mentry *x = a, *y = b;
	if (x->when != y->when)
		return x->when < y->when ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int mread_one(void *arg, char *text, long no)
{
	struct mread *m = arg;
	struct statefile_mline l = {0};
	char *copy = text ? strdup(text) : NULL;
	if (text && !copy)
		return -1;
	int k = text ? m->fn(copy, &l) : 1;
	free(copy);
	/* Kept as its writer wrote it. */
	if (!k && !l.line && asprintf(&l.line, "%s\n", text) < 0)
		k = -1;
	if (k) {
		free(l.line);
		free(l.key);
	}
	if (k < 0)
		return -1;
	if (k) {
		statefile_warnf(m->w, "%s:%ld: not a %s, left out of the merge", m->path, no, m->what);
		return 0;
	}
	if (array_grow(&m->v, &m->cap, m->n, sizeof *m->v, 1024) < 0) {
		free(l.line);
		free(l.key);
		return -1;
	}
	m->v[m->n] = (struct mentry){l.when, m->n, l.line, l.key, m->own};
	m->n++;
	return 0;
}

static int mread_file(struct mread *m, const char *path, enum statefile_torn torn,
		      char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	long torn_no;
	m->path = path;
	int rc = statefile_each_line_torn(f, torn, &torn_no, mread_one, m);
	int bad = ferror(f);
	fclose(f);
	if (rc < 0)
		return set_err(err, errlen, -1, "out of memory");
	if (bad)
		return set_err(err, errlen, -1, "%s: read error", path);
	if (torn_no)
		statefile_warnf(m->w, "%s:%ld: the last line was cut short (a crash or a full disk); %s",
				path, torn_no, torn == STATEFILE_CUT
				? "left it out (its work is done again)" : "merged what it says");
	return 0;
}

static int mwrite(const char *out_path, const struct mentry *v, size_t n, char *err,
		  size_t errlen)
{
	int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return set_err(err, errlen, -1, "%s: %s", out_path, strerror(errno));
	FILE *f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return set_err(err, errlen, -1, "%s: %s", out_path, strerror(errno));
	}
	for (size_t i = 0; i < n; i++)
		fputs(v[i].line, f);
	int rc = fflush(f) == 0 && fsync(fd) == 0 ? 0 : -1;
	int e = errno;
	if (fclose(f) != 0 && !rc)
		rc = -1, e = errno;
	return rc ? set_err(err, errlen, -1, "%s: %s", out_path, strerror(e)) : 0;
}

int statefile_merge(const char *const *paths, size_t n, enum statefile_torn torn,
		    statefile_mline_fn fn, const char *what, const char *out_path,
		    struct statefile_merged *res, const struct statefile_warn *w,
		    char *err, size_t errlen)
{
	struct mread m = {.fn = fn, .what = what, .w = w};
	int rc = 0;
	memset(res, 0, sizeof *res);
	for (size_t i = 0; !rc && i < n; i++) {
		m.own = i == 0;
		rc = mread_file(&m, paths[i], torn, err, errlen);
	}
	if (!rc && m.n) {
		/* The first of each key stays: the target's own line when it
		 * has one. */
		qsort(m.v, m.n, sizeof *m.v, by_key);
		size_t k = 0;
		for (size_t i = 0; i < m.n; i++) {
			if (k && !strcmp(mkey(&m.v[k - 1]), mkey(&m.v[i]))) {
				free(m.v[i].line);
				free(m.v[i].key);
				continue;
			}
			m.v[k++] = m.v[i];
		}
		m.n = k;
		qsort(m.v, m.n, sizeof *m.v, by_time);
	}
	for (size_t i = 0; i < m.n; i++)
		res->added += !m.v[i].own;
	res->lines = (long)m.n;
	if (!rc && res->added)
		rc = mwrite(out_path, m.v, m.n, err, errlen);
	for (size_t i = 0; i < m.n; i++) {
		free(m.v[i].line);
		free(m.v[i].key);
	}
	free(m.v);
	return rc;
}
