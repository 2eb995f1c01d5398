#include "state/merge.h"
#include "state/bounces.h"
#include "state/journal.h"
#include "state/state.h"
#include "state/statefile.h"
#include "util/buf.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

struct names {
	char **v;
	size_t n, cap;
};

struct merge {
	const char *into;
	const char **dirs;       /* the inputs: the target and repeats left out */
	size_t n;
	int *locks;              /* one per input, then the target's two */
	int *logs;               /* bounces.log fds held: the target's, then the inputs' */
	struct statefile_warn w;
	const struct state_merge_cb *cb;
	struct names slugs, plan, dones;
	int committed;           /* the plan is in place: its files must stay */
	char *err;
	size_t errlen;
};

static int names_add(struct names *s, const char *name, int unique)
{
	for (size_t i = 0; unique && i < s->n; i++)
		if (!strcmp(s->v[i], name))
			return 0;
	if (array_grow(&s->v, &s->cap, s->n, sizeof *s->v, 16) < 0 || !(s->v[s->n] = strdup(name)))
		return -1;
	s->n++;
	return 0;
}

static void names_free(struct names *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
}

/* The inputs, each once, without the target itself. */
static int inputs(struct merge *m, const char *const *dirs, size_t n)
{
	struct stat t, *seen = calloc(n ? n : 1, sizeof *seen);
	int have_t = stat(m->into, &t) == 0;
	if (!seen || !(m->dirs = calloc(n ? n : 1, sizeof *m->dirs))) {
		free(seen);
		return set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		if (stat(dirs[i], &st) < 0 || !S_ISDIR(st.st_mode)) {
			free(seen);
			return set_err(m->err, m->errlen, EX_NOINPUT, "%s: %s", dirs[i],
				       errno == ENOENT ? "no such state directory"
				       : !S_ISDIR(st.st_mode) ? "not a directory" : strerror(errno));
		}
		int dup = have_t && st.st_dev == t.st_dev && st.st_ino == t.st_ino;
		for (size_t j = 0; !dup && j < m->n; j++)
			dup = st.st_dev == seen[j].st_dev && st.st_ino == seen[j].st_ino;
		if (dup)
			continue;
		seen[m->n] = st;
		m->dirs[m->n++] = dirs[i];
	}
	free(seen);
	if (!m->n)
		return set_err(m->err, m->errlen, EX_USAGE,
			       "nothing to merge: every directory named is %s itself", m->into);
	return 0;
}

static int lock_code(struct merge *m, int fd, const char *dir)
{
	if (fd == -1) {
		size_t l = strlen(m->err);
		snprintf(m->err + l, m->errlen - l, "; merge %s once it has ended", dir);
		return EX_TEMPFAIL;
	}
	return fd == -2 ? EX_CANTCREAT : 0;
}

/* Keeps every sender out of every directory, and scans out of the
 * target (whose bounces.log is replaced). A directory some herald is
 * sending from is refused: its journal is still growing. */
static int lock_all(struct merge *m)
{
	int rc = 0;
	if (!(m->locks = malloc((m->n + 2) * sizeof *m->locks)) ||
	    !(m->logs = malloc((m->n + 1) * sizeof *m->logs)))
		return set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	for (size_t i = 0; i < m->n + 2; i++)
		m->locks[i] = -1;
	for (size_t i = 0; i < m->n + 1; i++)
		m->logs[i] = -1;
	/* The inputs first: one that is busy is refused before anything
	 * of the target is made. */
	for (size_t i = 0; i < m->n; i++) {
		m->locks[i] = state_lock_existing(m->dirs[i], STATE_LOCK_SEND, m->err, m->errlen);
		if ((rc = lock_code(m, m->locks[i], m->dirs[i])))
			return rc;
	}
	if (state_mkdir(m->into, m->err, m->errlen) < 0)
		return EX_CANTCREAT;
	m->locks[m->n] = state_lock(m->into, STATE_LOCK_SEND, m->err, m->errlen);
	if ((rc = lock_code(m, m->locks[m->n], m->into)))
		return rc;
	m->locks[m->n + 1] = state_lock(m->into, STATE_LOCK_SCAN, m->err, m->errlen);
	return lock_code(m, m->locks[m->n + 1], m->into);
}

/* bounces.log has writers that take no directory lock (bounces forget):
 * the target's is held from before it is read until the merged one is
 * in its place (an appender waiting for it then opens the new one,
 * statefile_open), the inputs' while they are read. */
static int lock_logs(struct merge *m)
{
	for (size_t i = 0; i <= m->n; i++) {
		char *path;
		const char *dir = i ? m->dirs[i - 1] : m->into;
		if (asprintf(&path, "%s/bounces.log", dir) < 0)
			return set_err(m->err, m->errlen, EX_OSERR, "out of memory");
		/* Not created when missing: a merge killed before its commit
		 * leaves the target as it was. */
		int fd = open(path, (i ? O_RDONLY : O_RDWR | O_APPEND) | O_CLOEXEC);
		int e = errno;
		if (fd >= 0 && flock(fd, i ? LOCK_SH : LOCK_EX) < 0)
			e = errno, close(fd), fd = -1;
		if (fd < 0 && e != ENOENT) {
			set_err(m->err, m->errlen, -1, "%s: %s", path, strerror(e));
			free(path);
			return i ? EX_IOERR : EX_CANTCREAT;
		}
		free(path);
		m->logs[i] = fd;
	}
	return 0;
}

/* Temporary files of a merge killed before its commit. */
static int clean_temps(struct merge *m)
{
	DIR *d = opendir(m->into);
	if (!d)
		return set_err(m->err, m->errlen, EX_CANTCREAT, "%s: %s", m->into, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, ".merge.", 7) || !strcmp(de->d_name, ".merge-plan.tmp"))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	return 0;
}

static int add_slug(void *arg, const char *path, const char *stem)
{
	(void)path;
	return names_add(arg, stem, 1) < 0 ? -1 : 0;
}

static int collect_slugs(struct merge *m)
{
	static const char *const kinds[] = {".journal", ".shards", ".done"};
	for (size_t i = 0; i <= m->n; i++)
		for (size_t k = 0; k < 3; k++)
			if (state_each_file(i ? m->dirs[i - 1] : m->into, kinds[k], add_slug, &m->slugs,
					    m->err, m->errlen) < 0)
				return EX_IOERR;
	return 0;
}

typedef int (*merge_fn)(const char *const *paths, size_t n, const char *out_path,
			struct statefile_merged *res, const struct statefile_warn *w, char *err,
			size_t errlen);

/* One file: NAME from the target and every input into .merge.NAME, which
 * goes into the plan when the inputs added lines. */
static int merge_file(struct merge *m, const char *name, merge_fn fn)
{
	const char **paths = calloc(m->n + 1, sizeof *paths);
	char *out = NULL;
	int rc = paths && asprintf(&out, "%s/.merge.%s", m->into, name) >= 0 ? 0 : -1;
	for (size_t i = 0; !rc && i <= m->n; i++)
		if (asprintf((char **)&paths[i], "%s/%s", i ? m->dirs[i - 1] : m->into, name) < 0)
			rc = -1;
	struct statefile_merged res;
	if (rc)
		rc = set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	else if (fn(paths, m->n + 1, out, &res, &m->w, m->err, m->errlen) < 0)
		rc = EX_CANTCREAT;
	else if (res.added && names_add(&m->plan, name, 0) < 0)
		rc = set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	else if (res.lines && m->cb && m->cb->file)
		m->cb->file(m->cb->arg, name, res.lines, res.added);
	for (size_t i = 0; paths && i <= m->n; i++)
		free((char *)paths[i]);
	free(paths);
	free(out);
	return rc;
}

static int note_shard(void *arg, const struct journal_shard_line *l)
{
	unsigned char *bits = arg;
	/* bits: for each n, n bits (at most JOURNAL_SHARDS_MAX). */
	if (l->done) {
		size_t base = (size_t)l->n * (l->n - 1) / 2 + (l->i - 1);
		bits[base / 8] |= (unsigned char)(1u << (base % 8));
	}
	return 0;
}

/* 1 when the shards done in path, from every host, are 1/N..N/N for
 * some N; why says which are missing otherwise. */
static int shards_complete(const char *path, char *why, size_t whylen)
{
	size_t nbits = (size_t)JOURNAL_SHARDS_MAX * (JOURNAL_SHARDS_MAX + 1) / 2;
	unsigned char *bits = calloc(nbits / 8 + 1, 1);
	if (!bits)
		return -1;
	journal_each_shard(path, note_shard, bits);
	int complete = 0;
	*why = '\0';
	for (unsigned n = 2; !complete && n <= JOURNAL_SHARDS_MAX; n++) {
		unsigned have = 0;
		size_t base = (size_t)n * (n - 1) / 2;
		for (unsigned i = 0; i < n; i++)
			have += !!(bits[(base + i) / 8] & (1u << ((base + i) % 8)));
		if (have == n)
			complete = 1;
		else if (have && !*why) {
			size_t l = (size_t)snprintf(why, whylen, "not done yet:");
			for (unsigned i = 0; i < n && l < whylen; i++)
				if (!(bits[(base + i) / 8] & (1u << ((base + i) % 8))))
					l += (size_t)snprintf(why + l, whylen - l, " %u/%u", i + 1, n);
		}
	}
	free(bits);
	return complete;
}

/* The post is done in the target when any directory says so, or when
 * its merged shards cover the list. */
static int decide_done(struct merge *m, const char *slug)
{
	if (journal_is_done(m->into, slug))
		return 0;
	int done = 0;
	for (size_t i = 0; !done && i < m->n; i++)
		done = journal_is_done(m->dirs[i], slug);
	char why[256] = "", *path = NULL, *tmp = NULL;
	int rc = 0;
	if (asprintf(&path, "%s/%s.shards", m->into, slug) < 0 ||
	    asprintf(&tmp, "%s/.merge.%s.shards", m->into, slug) < 0)
		rc = set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	struct stat st;
	const char *shards = !rc && stat(tmp, &st) == 0 ? tmp : path;
	if (!rc && !done && (done = shards_complete(shards, why, sizeof why)) < 0)
		rc = set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	char name[300];
	snprintf(name, sizeof name, ".merge.%s", slug);
	if (!rc && done && journal_mark_done(m->into, name, m->err, m->errlen) < 0)
		rc = EX_CANTCREAT;
	snprintf(name, sizeof name, "%s.done", slug);
	if (!rc && done && names_add(&m->dones, name, 0) < 0)
		rc = set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	if (!rc && (done || *why) && m->cb && m->cb->done)
		m->cb->done(m->cb->arg, slug, done, why);
	free(path);
	free(tmp);
	return rc;
}

static int merge_all(struct merge *m)
{
	int rc = 0;
	char name[300];
	for (size_t i = 0; !rc && i < m->slugs.n; i++) {
		snprintf(name, sizeof name, "%s.journal", m->slugs.v[i]);
		rc = merge_file(m, name, journal_merge);
		snprintf(name, sizeof name, "%s.shards", m->slugs.v[i]);
		if (!rc)
			rc = merge_file(m, name, journal_merge_shards);
	}
	if (!rc)
		rc = merge_file(m, "bounces.log", bounces_merge);
	for (size_t i = 0; !rc && i < m->slugs.n; i++)
		rc = decide_done(m, m->slugs.v[i]);
	/* .done last: a reader that comes before the plan is finished
	 * (one that takes no lock) sees it only with the journals. */
	for (size_t i = 0; !rc && i < m->dones.n; i++)
		if (names_add(&m->plan, m->dones.v[i], 0) < 0)
			rc = set_err(m->err, m->errlen, EX_OSERR, "out of memory");
	if (!rc && m->plan.n) {
		if (state_merge_commit(m->into, (const char *const *)m->plan.v, m->plan.n, m->err,
				       m->errlen) < 0)
			return EX_CANTCREAT;
		m->committed = 1;
		if (state_merge_finish(m->into, m->err, m->errlen) < 0)
			rc = EX_CANTCREAT;
	}
	return rc;
}

int state_merge(const char *into, const char *const *dirs, size_t n,
		const struct state_merge_cb *cb, char *err, size_t errlen)
{
	struct merge m = {.into = into, .cb = cb, .err = err, .errlen = errlen};
	if (cb)
		m.w = (struct statefile_warn){cb->warn, cb->arg};
	int rc = inputs(&m, dirs, n);
	if (!rc)
		rc = lock_all(&m);
	if (!rc)
		rc = clean_temps(&m);
	if (!rc)
		rc = collect_slugs(&m);
	if (!rc)
		rc = lock_logs(&m);
	if (!rc)
		rc = merge_all(&m);
	/* Before the commit nothing of it counts; after, the next lock
	 * finishes it. */
	if (rc && !m.committed && m.locks && m.locks[m.n] >= 0 && m.locks[m.n + 1] >= 0)
		clean_temps(&m);
	for (size_t i = 0; m.logs && i <= m.n; i++)
		if (m.logs[i] >= 0)
			close(m.logs[i]);
	for (size_t i = 0; m.locks && i < m.n + 2; i++)
		state_unlock(m.locks[i]);
	free(m.logs);
	free(m.locks);
	free(m.dirs);
	names_free(&m.slugs);
	names_free(&m.plan);
	names_free(&m.dones);
	return rc;
}
