/* signups.log: its one writer and its one reader (signuplog.h). */
#include "state/signuplog.h"
#include "state/state.h"
#include "util/buf.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct scan {
	const char *path;
	const struct statefile_warn *w;
	time_t since;
	int (*fn)(void *arg, time_t when, const char *addr);
	void *arg;
	long old, recent;
	FILE *keep;            /* compaction: where recent lines go */
};

static int scan_line(void *arg, char *text, long no)
{
	struct scan *s = arg;
	char *tab = text ? strchr(text, '\t') : NULL;
	time_t t = (time_t)-1;
	if (tab && tab[1] && !strchr(tab + 1, '\t') && strchr(tab + 1, '@')) {
		*tab = '\0';
		t = state_parse_time(text);
	}
	if (t == (time_t)-1) {
		statefile_warnf(s->w, "%s:%ld: not a signups.log line (TIME TAB ADDRESS); skipped",
				s->path, no);
		return 0;
	}
	if (t < s->since) {
		s->old++;
		return 0;
	}
	s->recent++;
	if (s->keep)
		return fprintf(s->keep, "%s\t%s\n", text, tab + 1) < 0 ? -1 : 0;
	return s->fn ? s->fn(s->arg, t, tab + 1) : 0;
}

static int scan_file(struct scan *s, char *err, size_t errlen)
{
	FILE *f = fopen(s->path, "re");
	if (!f)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", s->path, strerror(errno));
	int rc = statefile_each_line(f, scan_line, s);
	fclose(f);
	return rc < 0 ? set_err(err, errlen, -1, "%s: out of memory or cannot write", s->path) : 0;
}

/* The recent lines only, through a temporary file and rename(2): a crash
 * leaves the old file or the new one. */
static int compact(const struct scan *from, char *err, size_t errlen)
{
	char *tmp;
	if (asprintf(&tmp, "%s.tmp", from->path) < 0)
		return set_err(err, errlen, -1, "out of memory");
	struct scan s = {.path = from->path, .since = from->since};
	s.keep = fopen(tmp, "we");
	int rc = s.keep ? scan_file(&s, err, errlen)
			: set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno));
	if (s.keep && (fflush(s.keep) || fdatasync(fileno(s.keep)) < 0) && !rc)
		rc = set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno));
	if (s.keep && fclose(s.keep) && !rc)
		rc = set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno));
	if (!rc && rename(tmp, from->path) < 0)
		rc = set_err(err, errlen, -1, "%s: %s", from->path, strerror(errno));
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}

int signuplog_open(struct signuplog *l, const char *state_dir, time_t since,
		   int (*fn)(void *arg, time_t when, const char *addr), void *arg,
		   const struct statefile_warn *w, char *err, size_t errlen)
{
	l->fd = -1;
	pthread_mutex_init(&l->mu, NULL);
	if (state_mkdir(state_dir, err, errlen) < 0)
		return -1;
	if (asprintf(&l->path, "%s/" SIGNUPLOG_FILE, state_dir) < 0) {
		l->path = NULL;
		return set_err(err, errlen, -1, "out of memory");
	}
	struct scan s = {.path = l->path, .w = w, .since = since, .fn = fn, .arg = arg};
	/* Opened (and its tail repaired) first: the scan reads whole lines. */
	if ((l->fd = statefile_open(l->path, STATEFILE_CUT, 0, w, err, errlen)) < 0 ||
	    scan_file(&s, err, errlen) < 0)
		goto fail;
	if (s.old > 1000 && s.old > s.recent) {
		close(l->fd);
		l->fd = -1;
		if (compact(&s, err, errlen) < 0 ||
		    (l->fd = statefile_open(l->path, STATEFILE_CUT, 0, w, err, errlen)) < 0)
			goto fail;
	}
	return 0;
fail:
	signuplog_close(l);
	return -1;
}

int signuplog_append(struct signuplog *l, time_t t, const char *addr, char *err, size_t errlen)
{
	char when[32], clean[400], line[450];
	state_time(t, when);
	state_clean(clean, sizeof clean, addr);
	int n = snprintf(line, sizeof line, "%s\t%s\n", when, clean);
	/* The mutex keeps this process's threads apart (a flock is the
	 * open file's, shared by them), the flock another herald serve on
	 * the same state dir. */
	pthread_mutex_lock(&l->mu);
	int rc = flock(l->fd, LOCK_EX) < 0
		? set_err(err, errlen, -1, "%s: %s", l->path, strerror(errno))
		: statefile_append(l->fd, l->path, STATEFILE_CUT, line, (size_t)n, 1, NULL, err, errlen);
	flock(l->fd, LOCK_UN);
	pthread_mutex_unlock(&l->mu);
	return rc;
}

void signuplog_close(struct signuplog *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	l->fd = -1;
	l->path = NULL;
	pthread_mutex_destroy(&l->mu);
}
