#include "state/state.h"
#include "util/buf.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int state_mkdir_as(const char *dir, const char *what, char *err, size_t errlen)
{
	char *p = strdup(dir);
	if (!p)
		return set_err(err, errlen, -1, "out of memory");
	path_trim_slashes(p);
	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST) {
				set_err(err, errlen, -1, "%s: cannot create %s: %s", p, what, strerror(errno));
				free(p);
				return -1;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	/* EEXIST above may be a file: say so here, not at the first write. */
	struct stat st;
	int rc = 0;
	int e = stat(p, &st) < 0 ? errno : 0;
	if (e || !S_ISDIR(st.st_mode))
		rc = set_err(err, errlen, -1, "%s: cannot create %s: %s", p, what,
			     e ? strerror(e) : "a file of that name is in the way");
	free(p);
	return rc;
}

int state_mkdir(const char *dir, char *err, size_t errlen)
{
	return state_mkdir_as(dir, "state directory", err, errlen);
}

/* -3: create is 0 and there is no lock file (nobody ever locked it). */
static int lock_at(const char *state_dir, enum state_lock which, int create, char *err,
		   size_t errlen)
{
	static const struct { const char *name, *busy; } locks[] = {
		[STATE_LOCK_SEND] = {"herald.lock", "another herald is sending from this state directory"},
		[STATE_LOCK_SCAN] = {"scan.lock", "another scan is running"},
	};
	if (create && state_mkdir(state_dir, err, errlen) < 0)
		return -2;
	char *path;
	if (asprintf(&path, "%s/%s", state_dir, locks[which].name) < 0)
		return set_err(err, errlen, -2, "out of memory");
	int fd = create ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)
			: open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int rc = !create && errno == ENOENT ? -3 : -2;
		if (rc == -2)
			set_err(err, errlen, -2, "%s: %s", path, strerror(errno));
		free(path);
		return rc;
	}
	/* flock, not fcntl: it belongs to the open file, so a connection
	 * thread's close of another descriptor cannot drop it. */
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int busy = errno == EWOULDBLOCK;
		set_err(err, errlen, busy ? -1 : -2, "%s: %s", path,
			busy ? locks[which].busy : strerror(errno));
		free(path);
		close(fd);
		return busy ? -1 : -2;
	}
	free(path);
	/* A merge killed after its commit is finished before anything
	 * reads the directory under this lock. */
	if (state_merge_finish(state_dir, err, errlen) < 0) {
		close(fd);
		return -2;
	}
	return fd;
}

int state_lock(const char *state_dir, enum state_lock which, char *err, size_t errlen)
{
	return lock_at(state_dir, which, 1, err, errlen);
}

int state_lock_existing(const char *state_dir, enum state_lock which, char *err,
			size_t errlen)
{
	return lock_at(state_dir, which, 0, err, errlen);
}

void state_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

void state_time(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

time_t state_parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *e = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!e || (*e && *e != '\t' && *e != '\n'))
		return -1;
	return timegm(&tm);
}

void state_clean(char *out, size_t outlen, const char *s)
{
	size_t i = 0;
	for (; s && *s && i + 1 < outlen; s++)
		out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
	if (outlen)
		out[i] = '\0';
}

int state_each_file(const char *state_dir, const char *suffix,
		    int (*fn)(void *arg, const char *path, const char *stem),
		    void *arg, char *err, size_t errlen)
{
	DIR *d = opendir(state_dir);
	if (!d)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", state_dir, strerror(errno));
	size_t sl = strlen(suffix);
	struct dirent *de;
	int rc = 0;
	while (!rc && (de = readdir(d))) {
		size_t nl = strlen(de->d_name);
		if (nl <= sl || strcmp(de->d_name + nl - sl, suffix) || de->d_name[0] == '.')
			continue;
		char stem[256], *path;
		snprintf(stem, sizeof stem, "%.*s", (int)(nl - sl), de->d_name);
		if (asprintf(&path, "%s/%s", state_dir, de->d_name) < 0)
			return closedir(d), set_err(err, errlen, -1, "out of memory");
		rc = fn(arg, path, stem);
		if (rc < 0)
			set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
		free(path);
	}
	closedir(d);
	return rc;
}

int state_times_add(struct state_times *st, time_t t)
{
	if (t < 0 || t < st->since)
		return 0;
	if (t > st->now)
		t = st->now;
	if (array_grow(&st->v, &st->cap, st->n, sizeof *st->v, 1024) < 0)
		return -1;
	st->v[st->n++] = (double)t;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void state_times_sort(struct state_times *st)
{
	if (st->n)
		qsort(st->v, st->n, sizeof *st->v, cmp_double);
}

void state_times_free(struct state_times *st)
{
	free(st->v);
	st->v = NULL;
	st->n = st->cap = 0;
}

/* ---- state merge's commit ------------------------------------------------ */

#define PLAN ".merge-plan"

static int sync_dir(const char *dir, char *err, size_t errlen)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0) {
		set_err(err, errlen, -1, "%s: %s", dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int plan_name_ok(const char *name)
{
	return *name && *name != '.' && !strchr(name, '/');
}

int state_merge_commit(const char *dir, const char *const *names, size_t n, char *err,
		       size_t errlen)
{
	char *tmp, *plan;
	if (asprintf(&tmp, "%s/" PLAN ".tmp", dir) < 0)
		return set_err(err, errlen, -1, "out of memory");
	if (asprintf(&plan, "%s/" PLAN, dir) < 0) {
		free(tmp);
		return set_err(err, errlen, -1, "out of memory");
	}
	FILE *f = fopen(tmp, "we");
	int rc = f ? 0 : -1;
	for (size_t i = 0; !rc && i < n; i++)
		if (!plan_name_ok(names[i]) || fprintf(f, "%s\n", names[i]) < 0)
			rc = -1;
	if (!rc && (fflush(f) != 0 || fsync(fileno(f)) < 0))
		rc = -1;
	if (f && fclose(f) != 0)
		rc = -1;
	if (rc)
		set_err(err, errlen, -1, "%s: %s", tmp, strerror(errno ? errno : EINVAL));
	/* The commit: before this rename the directory is as it was (the
	 * temporary files are dot files, which nothing reads); after it,
	 * state_merge_finish completes the merge, here or in the next
	 * herald that locks the directory. */
	if (!rc && rename(tmp, plan) < 0)
		rc = set_err(err, errlen, -1, "%s: %s", plan, strerror(errno));
	if (!rc)
		rc = sync_dir(dir, err, errlen);
	if (rc)
		unlink(tmp);
	free(tmp);
	free(plan);
	return rc;
}

int state_merge_finish(const char *dir, char *err, size_t errlen)
{
	char *plan;
	if (asprintf(&plan, "%s/" PLAN, dir) < 0)
		return set_err(err, errlen, -1, "out of memory");
	FILE *f = fopen(plan, "re");
	if (!f) {
		int e = errno;
		free(plan);
		return e == ENOENT ? 0 : set_err(err, errlen, -1, "%s/" PLAN ": %s", dir, strerror(e));
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	while (!rc && (n = getline(&line, &cap, f)) > 0) {
		line[strcspn(line, "\n")] = '\0';
		char *from = NULL, *to = NULL;
		if (!plan_name_ok(line))
			continue;
		if (asprintf(&from, "%s/.merge.%s", dir, line) < 0 ||
		    asprintf(&to, "%s/%s", dir, line) < 0)
			rc = set_err(err, errlen, -1, "out of memory");
		/* Gone: renamed already, by a run this one interrupted. */
		else if (rename(from, to) < 0 && errno != ENOENT)
			rc = set_err(err, errlen, -1, "%s: cannot finish a merge: %s", to, strerror(errno));
		free(from);
		free(to);
	}
	free(line);
	fclose(f);
	if (!rc)
		rc = sync_dir(dir, err, errlen);
	if (!rc && unlink(plan) < 0 && errno != ENOENT)
		rc = set_err(err, errlen, -1, "%s: %s", plan, strerror(errno));
	if (!rc)
		rc = sync_dir(dir, err, errlen);
	free(plan);
	return rc;
}
