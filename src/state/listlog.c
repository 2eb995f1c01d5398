/* list.log: its one writer and its one reader (listlog.h). */
#include "state/listlog.h"
#include "state/state.h"
#include "util/buf.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const action_names[] = {[LISTLOG_UNSUBSCRIBE] = "unsubscribe",
					   [LISTLOG_SUBSCRIBE] = "subscribe"};

int listlog_open(struct listlog *l, const char *state_dir, const struct statefile_warn *w,
		 char *err, size_t errlen)
{
	l->fd = -1;
	l->path = NULL;
	pthread_mutex_init(&l->mu, NULL);
	if (state_mkdir(state_dir, err, errlen) < 0)
		return -1;
	if (asprintf(&l->path, "%s/" LISTLOG_FILE, state_dir) < 0) {
		l->path = NULL;
		return set_err(err, errlen, -1, "out of memory");
	}
	l->fd = statefile_open(l->path, STATEFILE_CUT, 0, w, err, errlen);
	if (l->fd < 0) {
		free(l->path);
		l->path = NULL;
		return -1;
	}
	return 0;
}

int listlog_append(struct listlog *l, time_t t, enum listlog_action a, const char *addr,
		   const char *name, const char *source, char *err, size_t errlen)
{
	char when[32], clean[400], cname[400], *line;
	state_time(t, when);
	state_clean(clean, sizeof clean, addr);
	state_clean(cname, sizeof cname, name ? name : "");
	int n = a == LISTLOG_SUBSCRIBE
		? asprintf(&line, "%s\t%s\t%s\t%s\t%s\n", when, action_names[a], clean, source, cname)
		: asprintf(&line, "%s\t%s\t%s\t%s\n", when, action_names[a], clean, source);
	if (n < 0)
		return set_err(err, errlen, -1, "out of memory");
	/* The answer to the reader goes out after this: the line must
	 * survive a power cut by then, not only a crash of herald; and a
	 * line that cannot be synced is taken back, so a request answered
	 * 503 changes nothing later. The cut-back is to the size before
	 * this line, so appends are one at a time, sync included. */
	/* The mutex keeps this process's threads apart (a flock is the
	 * open file's, shared by them), the flock another herald serve on
	 * the same state dir. */
	pthread_mutex_lock(&l->mu);
	int rc = flock(l->fd, LOCK_EX) < 0
		? set_err(err, errlen, -1, "%s: %s", l->path, strerror(errno))
		: statefile_append(l->fd, l->path, STATEFILE_CUT, line, (size_t)n, 1, NULL, err, errlen);
	flock(l->fd, LOCK_UN);
	pthread_mutex_unlock(&l->mu);
	free(line);
	return rc;
}

void listlog_close(struct listlog *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	l->fd = -1;
	l->path = NULL;
	pthread_mutex_destroy(&l->mu);
}

int listlog_parse_line(char *text, struct listlog_entry *e)
{
	char *f[6];
	char *s = text;
	int n = 0;
	for (;;) {
		if (n == 5)
			return -1;  /* a sixth field */
		f[n++] = s;
		char *tab = strchr(s, '\t');
		if (!tab)
			break;
		*tab = '\0';
		s = tab + 1;
	}
	e->time = state_parse_time(f[0]);
	if (n < 4 || e->time == (time_t)-1 || !*f[2] || !strchr(f[2], '@'))
		return -1;
	if (!strcmp(f[1], action_names[LISTLOG_UNSUBSCRIBE]) && n == 4)
		e->action = LISTLOG_UNSUBSCRIBE;
	else if (!strcmp(f[1], action_names[LISTLOG_SUBSCRIBE]) && n == 5)
		e->action = LISTLOG_SUBSCRIBE;
	else
		return -1;
	e->addr = f[2];
	e->source = f[3];
	e->name = n == 5 ? f[4] : "";
	return 0;
}

int listlog_follow_init(struct listlog_follow *f, const char *state_dir, char *err,
			size_t errlen)
{
	memset(f, 0, sizeof *f);
	f->fd = -1;
	if (asprintf(&f->path, "%s/" LISTLOG_FILE, state_dir) < 0) {
		f->path = NULL;
		return set_err(err, errlen, -1, "out of memory");
	}
	return 0;
}

/* Earlier versions left a torn line's fragment in place after a failed
 * write, and the next request's line (answered 200) was glued onto it:
 * "FRAGMENT" "TIME\tACTION\t...". What follows the first later TIME and
 * tab is that line, read as a line of its own: 0 with *e, or -1. */
static int glued_line(char *text, struct listlog_entry *e)
{
	size_t n = strlen(text);
	for (size_t i = 1; i + 21 <= n; i++) {
		char *t = text + i;
		if (t[4] == '-' && t[10] == 'T' && t[19] == 'Z' && t[20] == '\t' &&
		    isdigit((unsigned char)t[0]))
			return listlog_parse_line(t, e);
	}
	return -1;
}

static int read_new(struct listlog_follow *f, FILE *in,
		    void (*fn)(void *arg, const struct listlog_entry *e), void *arg,
		    const struct statefile_warn *w)
{
	char *line = NULL, *text;
	size_t cap = 0;
	ssize_t n;
	int count = 0;
	/* Whole lines only: a last line without its newline is a write in
	 * progress (or torn); it is read once it is whole. */
	while ((n = getline(&line, &cap, in)) > 0 && line[n - 1] == '\n') {
		f->off += n;
		f->lineno++;
		f->lastlen = (size_t)n < sizeof f->last ? (size_t)n : sizeof f->last;
		memcpy(f->last, line + n - (ssize_t)f->lastlen, f->lastlen);
		struct listlog_entry e;
		int k = statefile_line(line, n, &text);
		/* parsing splits the line in place: a copy for the second try */
		char *copy = k > 0 ? strdup(text) : NULL;
		int ok = k > 0 && listlog_parse_line(text, &e) == 0;
		if (!ok && copy && glued_line(copy, &e) == 0) {
			ok = 1;
			statefile_warnf(w, "%s:%ld: a line glued onto a torn one (a full disk, before herald "
					"cut those back); read from its second time on", f->path, f->lineno);
		} else if (!ok) {
			statefile_warnf(w, "%s:%ld: not a list.log line (time, action, address, source); ignored",
					f->path, f->lineno);
		}
		if (!ok) {
			free(copy);
			continue;
		}
		fn(arg, &e);
		free(copy);
		count++;
	}
	free(line);
	return count;
}

/* Is the last line read still where it was (listlog.h: a line taken
 * back and another written in its place)? */
static int still_there(const struct listlog_follow *f, int fd)
{
	char b[sizeof f->last];
	if (!f->lastlen)
		return 1;
	return pread(fd, b, f->lastlen, f->off - (off_t)f->lastlen) == (ssize_t)f->lastlen &&
	       !memcmp(b, f->last, f->lastlen);
}

int listlog_follow_poll(struct listlog_follow *f,
			void (*fn)(void *arg, const struct listlog_entry *e), void *arg,
			const struct statefile_warn *w, char *err, size_t errlen)
{
	struct stat st;
	if (stat(f->path, &st) < 0)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", f->path, strerror(errno));
	/* The check that the last line read is still there needs the file
	 * open: one pread per look on the fd kept, reopened when the name
	 * is another file's. Equal sizes are no proof: a line taken back and
	 * another of its length written in its place leave the size (and,
	 * within a clock tick, the mtime) as they were. */
	if (f->fd >= 0 && (st.st_dev != f->dev || st.st_ino != f->ino)) {
		close(f->fd);
		f->fd = -1;
	}
	if (f->fd < 0)
		f->fd = open(f->path, O_RDONLY | O_CLOEXEC);
	if (st.st_dev == f->dev && st.st_ino == f->ino && st.st_size == f->off &&
	    (f->fd < 0 || still_there(f, f->fd)))
		return 0;
	FILE *in = fopen(f->path, "re");
	if (!in)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", f->path, strerror(errno));
	if (fstat(fileno(in), &st) < 0) {
		fclose(in);
		return set_err(err, errlen, -1, "%s: %s", f->path, strerror(errno));
	}
	if (st.st_dev != f->dev || st.st_ino != f->ino || st.st_size < f->off ||
	    !still_there(f, fileno(in))) {
		if (f->off > 0)
			f->resets++;
		f->dev = st.st_dev;
		f->ino = st.st_ino;
		f->off = 0;
		f->lineno = 0;
		f->lastlen = 0;
	}
	int count = 0;
	if (fseeko(in, f->off, SEEK_SET) < 0)
		count = set_err(err, errlen, -1, "%s: %s", f->path, strerror(errno));
	else
		count = read_new(f, in, fn, arg, w);
	fclose(in);
	return count;
}

void listlog_follow_free(struct listlog_follow *f)
{
	/* path: listlog_follow_init ran (a zeroed struct holds fd 0) */
	if (f->path && f->fd >= 0)
		close(f->fd);
	f->fd = -1;
	free(f->path);
	f->path = NULL;
}

/* ---- the fold: the last line per address ---------------------------------- */

void listlog_fold_init(struct listlog_fold *f, int keep)
{
	memset(f, 0, sizeof *f);
	f->keep = keep;
}

int listlog_fold_add(struct listlog_fold *f, const struct listlog_entry *e)
{
	long at = addrset_get(&f->at, e->addr);
	char *name = f->keep ? strdup(e->name ? e->name : "") : NULL;
	if (f->keep && !name)
		return f->oom = -1;
	if (!at) {
		if (array_grow(&f->row, &f->cap, f->n, sizeof *f->row, 64) < 0 ||
		    addrset_put(&f->at, e->addr, (long)f->n + 1) < 0) {
			free(name);
			return f->oom = -1;
		}
		struct listlog_fold_row *r = &f->row[f->n];
		memset(r, 0, sizeof *r);
		if (f->keep && !(r->addr = strdup(e->addr))) {
			free(name);
			return f->oom = -1;
		}
		at = (long)++f->n;
	}
	struct listlog_fold_row *r = &f->row[at - 1];
	free(r->name);
	r->name = name;
	r->action = e->action;
	r->time = e->time;
	return 0;
}

const struct listlog_fold_row *listlog_fold_get(const struct listlog_fold *f, const char *addr)
{
	long at = addrset_get(&f->at, addr);
	return at ? &f->row[at - 1] : NULL;
}

void listlog_fold_free(struct listlog_fold *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->row[i].addr);
		free(f->row[i].name);
	}
	free(f->row);
	addrset_free(&f->at);
	memset(f, 0, sizeof *f);
}
