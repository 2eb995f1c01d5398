/* relays.log: its one writer and its one reader (relaylog.h). */
#include "state/relaylog.h"
#include "util/buf.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A window is at most a day long. */
#define RELAYLOG_HORIZON 86400

struct scan {
	const char *path, *relay;
	const struct statefile_warn *w;
	struct state_times *st;
	long old, recent;      /* lines past the horizon, and within it */
	time_t cutoff;
	FILE *keep;            /* compaction: where recent lines go */
};

/* "TIME\tNAME": the time, and *name pointed at the name. */
static time_t parse(char *text, char **name)
{
	char *tab = strchr(text, '\t');
	if (!tab || !tab[1] || strchr(tab + 1, '\t'))
		return (time_t)-1;
	*name = tab + 1;
	return state_parse_time(text);
}

static int scan_line(void *arg, char *text, long no)
{
	struct scan *s = arg;
	char *name;
	time_t t = text ? parse(text, &name) : (time_t)-1;
	if (t == (time_t)-1) {
		statefile_warnf(s->w, "%s:%ld: not a relays.log line (TIME TAB RELAY); skipped", s->path,
				no);
		return 0;
	}
	if (t < s->cutoff) {
		s->old++;
		return 0;
	}
	s->recent++;
	if (s->keep && fprintf(s->keep, "%s\n", text) < 0)
		return -1;
	if (s->st && !strcmp(name, s->relay) && state_times_add(s->st, t) < 0)
		return -1;
	return 0;
}

static int scan_file(const char *path, struct scan *s, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	s->path = path;
	int rc = statefile_each_line(f, scan_line, s);
	fclose(f);
	return rc < 0 ? set_err(err, errlen, -1, "%s: out of memory or cannot write", path) : 0;
}

/* Rewrites the file with its recent lines only, through a temporary file
 * and rename(2), so a crash leaves the old file or the new one. */
static int compact(const char *path, const struct statefile_warn *w, char *err, size_t errlen)
{
	char *tmp;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return set_err(err, errlen, -1, "out of memory");
	struct scan s = {.w = w, .cutoff = time(NULL) - RELAYLOG_HORIZON};
	s.keep = fopen(tmp, "we");
	int rc = s.keep ? scan_file(path, &s, err, errlen) : set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno));
	if (s.keep && (fflush(s.keep) || fdatasync(fileno(s.keep)) < 0) && !rc)
		rc = set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno));
	if (s.keep && fclose(s.keep) && !rc)
		rc = set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno));
	if (!rc && rename(tmp, path) < 0)
		rc = set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}

int relaylog_open(struct relaylog *l, const char *state_dir, const struct statefile_warn *w,
		  char *err, size_t errlen)
{
	l->fd = -1;
	if (state_mkdir(state_dir, err, errlen) < 0)
		return -1;
	if (asprintf(&l->path, "%s/" RELAYLOG_FILE, state_dir) < 0) {
		l->path = NULL;
		return set_err(err, errlen, -1, "out of memory");
	}
	/* Repaired first, so the count below reads whole lines only. */
	l->fd = statefile_open(l->path, STATEFILE_CUT, 0, w, err, errlen);
	/* Counted without warnings: the seeding reads it again and says. */
	static const struct statefile_warn quiet;
	struct scan s = {.w = &quiet, .cutoff = time(NULL) - RELAYLOG_HORIZON};
	if (l->fd < 0 || scan_file(l->path, &s, err, errlen) < 0)
		goto fail;
	if (s.old > 1000 && s.old > s.recent) {
		close(l->fd);
		l->fd = -1;
		if (compact(l->path, w, err, errlen) < 0 ||
		    (l->fd = statefile_open(l->path, STATEFILE_CUT, 0, w, err, errlen)) < 0)
			goto fail;
	}
	return 0;
fail:
	relaylog_close(l);
	return -1;
}

int relaylog_add(struct relaylog *l, time_t when, const char *relay, char *err, size_t errlen)
{
	char t[32], name[128], line[200];
	state_time(when, t);
	state_clean(name, sizeof name, relay);
	int n = snprintf(line, sizeof line, "%s\t%s\n", t, name);
	/* Only the send loop's thread appends (one writer per state dir). */
	return statefile_append(l->fd, l->path, STATEFILE_CUT, line, (size_t)n, 0, NULL, err,
				errlen);
}

void relaylog_close(struct relaylog *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	l->fd = -1;
	l->path = NULL;
}

int relaylog_recent_times(const char *state_dir, const char *relay, struct state_times *st,
			  const struct statefile_warn *w, char *err, size_t errlen)
{
	char *path;
	if (asprintf(&path, "%s/" RELAYLOG_FILE, state_dir) < 0)
		return set_err(err, errlen, -1, "out of memory");
	struct scan s = {.relay = relay, .w = w, .st = st, .cutoff = st->since};
	int rc = scan_file(path, &s, err, errlen);
	free(path);
	return rc;
}
