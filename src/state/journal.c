#include "state/journal.h"
#include "util/buf.h"
#include "state/state.h"
#include "state/statefile.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define FLUSH_MS 10

static void *flusher(void *arg)
{
	struct journal *j = arg;
	pthread_mutex_lock(&j->mu);
	for (;;) {
		while (j->synced == j->written && !j->quit)
			pthread_cond_wait(&j->cv, &j->mu);
		if (j->synced == j->written)
			break;
		unsigned long target = j->written;
		pthread_mutex_unlock(&j->mu);
		int rc = fdatasync(j->fd);
		int e = errno;
		pthread_mutex_lock(&j->mu);
		if (rc < 0 && !j->sync_errno)
			j->sync_errno = e;
		j->synced = target;
		pthread_cond_broadcast(&j->cv);
		/* At most one fdatasync per FLUSH_MS: at thousands of messages
		 * a second, syncing flat out costs more CPU in the kernel than
		 * the sending itself; a power cut costs that much at most. */
		if (!j->quit && !j->hurry) {
			pthread_mutex_unlock(&j->mu);
			struct timespec rest = {0, FLUSH_MS * 1000000L};
			nanosleep(&rest, NULL);
			pthread_mutex_lock(&j->mu);
		}
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

int journal_parse_line(char *text, struct journal_line *l)
{
	memset(l, 0, sizeof *l);
	char *f[5] = {text};
	int n = 1;
	for (char *p = text; n < 5 && (p = strchr(p, '\t')); n++) {
		*p++ = '\0';
		f[n] = p;
	}
	/* Without the tab after it the address may be cut short. */
	if (n < 3 || !*f[1])
		return 1;
	if (n == 5)
		f[4][strcspn(f[4], "\t")] = '\0';
	l->when = state_parse_time(f[0]);
	l->addr = f[1];
	l->msgid = f[2];
	l->reply = n > 3 ? f[3] : "";
	l->uncertain = n == 5 && !strcmp(f[4], "uncertain");
	return 0;
}

/* One line of a journal: adds its reader to the right set. Returns 0, 1
 * when the line names nobody (damaged), -1 when out of memory. A line
 * with a damaged time still counts: its reader was sent to. */
static int load_line(struct journal *j, char *line)
{
	struct journal_line l;
	if (journal_parse_line(line, &l))
		return 1;
	return addrset_add(l.uncertain ? &j->uncertain : &j->sent, l.addr) < 0 ? -1 : 0;
}

struct load {
	struct journal *j;
	const struct statefile_warn *w;
	char *err;
	size_t errlen;
};

static int load_one(void *arg, char *text, long no)
{
	struct load *ld = arg;
	int k = text ? load_line(ld->j, text) : 1;
	if (k < 0)
		return set_err(ld->err, ld->errlen, -1, "out of memory");
	if (k == 1)
		statefile_warnf(ld->w, "%s:%ld: not a journal line, ignored (whoever it was may be "
				"mailed again)", ld->j->path, no);
	return 0;
}

static int load(struct journal *j, const struct statefile_warn *w, char *err, size_t errlen)
{
	FILE *f = fdopen(dup(j->fd), "r");
	if (!f)
		return set_err(err, errlen, -1, "%s: %s", j->path, strerror(errno));
	/* The dup shares the offset, which the repair may have moved. */
	rewind(f);
	struct load ld = {j, w, err, errlen};
	int rc = statefile_each_line(f, load_one, &ld);
	fclose(f);
	return rc;
}

int journal_open(struct journal *j, const char *state_dir, const char *slug,
		 const struct statefile_warn *w, char *err, size_t errlen)
{
	memset(j, 0, sizeof *j);
	j->fd = -1;
	pthread_mutex_init(&j->mu, NULL);
	pthread_mutex_init(&j->wmu, NULL);
	pthread_cond_init(&j->cv, NULL);
	int rc = state_mkdir(state_dir, err, errlen);
	if (!rc && asprintf(&j->path, "%s/%s.journal", state_dir, slug) < 0) {
		j->path = NULL;
		rc = set_err(err, errlen, -1, "out of memory");
	}
	/* Repaired before the first append: a line torn by a crash or a
	 * full disk ends there, so the next delivery is a line of its own,
	 * not glued to the fragment (and lost). The fragment is kept: the
	 * relay took that message. */
	if (!rc && (j->fd = statefile_open(j->path, STATEFILE_KEEP, 0, w, err, errlen)) < 0)
		rc = -1;
	if (!rc)
		rc = load(j, w, err, errlen);
	if (!rc) {
		if (pthread_create(&j->flusher, NULL, flusher, j) == 0)
			j->flushing = 1;
		else
			rc = set_err(err, errlen, -1, "cannot start the journal flusher");
	}
	if (rc)
		journal_close(j);
	return rc;
}

int journal_has(const struct journal *j, const char *addr)
{
	return addrset_has(&j->sent, addr) || addrset_has(&j->uncertain, addr);
}

int journal_is_uncertain(const struct journal *j, const char *addr)
{
	return addrset_has(&j->uncertain, addr) && !addrset_has(&j->sent, addr);
}

int journal_write(struct journal *j, time_t when, const char *addr,
		  const char *msgid, const char *reply, enum journal_mark mark)
{
	char ts[32], rep[512], line[1400];
	state_time(when, ts);
	state_clean(rep, sizeof rep, reply);
	const char *tail = mark == JOURNAL_UNCERTAIN ? "\tuncertain\n" : "\n";
	int len = snprintf(line, sizeof line, "%s\t%s\t%s\t%s", ts, addr, msgid, rep);
	if (len > (int)sizeof line - 16)
		len = (int)sizeof line - 16;
	len += snprintf(line + len, sizeof line - (size_t)len, "%s", tail);
	/* One line at a time (wmu): a line the disk took only part of is
	 * ended there (STATEFILE_KEEP: the relay took that message), and
	 * the next one starts a line of its own. The fdatasync stays with
	 * the flusher. */
	int e;
	char why[256];
	pthread_mutex_lock(&j->wmu);
	statefile_append(j->fd, j->path, STATEFILE_KEEP, line, (size_t)len, 0, &e, why,
			 sizeof why);
	pthread_mutex_unlock(&j->wmu);
	pthread_mutex_lock(&j->mu);
	if (e && !j->sync_errno)
		j->sync_errno = e;
	/* Only an idle flusher waits for news; one resting between two
	 * syncs will see this line when it wakes. */
	if (j->written++ == j->synced)
		pthread_cond_broadcast(&j->cv);
	pthread_mutex_unlock(&j->mu);
	return e ? -1 : 0;
}

int journal_error(struct journal *j, char *err, size_t errlen)
{
	pthread_mutex_lock(&j->mu);
	int e = j->sync_errno;
	pthread_mutex_unlock(&j->mu);
	if (e)
		return set_err(err, errlen, -1, "%s: cannot record a delivery: %s", j->path,
			       strerror(e));
	return 0;
}

int journal_sync(struct journal *j, char *err, size_t errlen)
{
	pthread_mutex_lock(&j->mu);
	j->hurry = 1;
	pthread_cond_broadcast(&j->cv);
	while (j->flushing && j->synced != j->written)
		pthread_cond_wait(&j->cv, &j->mu);
	j->hurry = 0;
	int e = j->sync_errno;
	pthread_mutex_unlock(&j->mu);
	if (!e && !j->flushing && fdatasync(j->fd) < 0)
		e = errno;
	if (e)
		return set_err(err, errlen, -1, "%s: cannot record a delivery: %s", j->path,
			       strerror(e));
	return 0;
}

int journal_mark_done(const char *state_dir, const char *slug, char *err, size_t errlen)
{
	char *path;
	if (asprintf(&path, "%s/%s.done", state_dir, slug) < 0)
		return set_err(err, errlen, -1, "out of memory");
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	int rc = fd < 0 ? set_err(err, errlen, -1, "%s: %s", path, strerror(errno)) : 0;
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

int journal_started(const char *state_dir, const char *slug)
{
	char *path;
	if (asprintf(&path, "%s/%s.journal", state_dir, slug) < 0)
		return 0;
	struct stat st;
	int begun = stat(path, &st) == 0 && st.st_size > 0;
	free(path);
	return begun || journal_is_done(state_dir, slug);
}

int journal_is_done(const char *state_dir, const char *slug)
{
	char *path;
	if (asprintf(&path, "%s/%s.done", state_dir, slug) < 0)
		return 0;
	int done = access(path, F_OK) == 0;
	free(path);
	return done;
}

struct each_line {
	int (*fn)(void *arg, const struct journal_line *l);
	void *arg;
};

static int each_line_one(void *arg, char *text, long no)
{
	struct each_line *e = arg;
	struct journal_line l;
	/* damage is reported by journal_open, once */
	if (text && !journal_parse_line(text, &l) && l.when >= 0)
		return e->fn(e->arg, &l);
	return 0;
}

/* Calls fn for each line of one journal that names a reader with a time,
 * until fn returns non-zero. */
static int each_line(const char *path, int (*fn)(void *arg, const struct journal_line *l),
		     void *arg)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	struct each_line e = {fn, arg};
	int rc = statefile_each_line(f, each_line_one, &e);
	fclose(f);
	return rc;
}

struct each {
	int (*fn)(void *arg, const char *slug, const struct journal_line *l);
	void *arg;
	const char *slug;
};

static int each_fwd(void *arg, const struct journal_line *l)
{
	struct each *e = arg;
	return e->fn(e->arg, e->slug, l);
}

static int each_journal(void *arg, const char *path, const char *slug)
{
	struct each *e = arg;
	e->slug = slug;
	return each_line(path, each_fwd, e);
}

int journal_each_delivery(const char *state_dir,
			  int (*fn)(void *arg, const char *slug, const struct journal_line *l),
			  void *arg, char *err, size_t errlen)
{
	struct each e = {fn, arg, NULL};
	int rc = state_each_file(state_dir, ".journal", each_journal, &e, err, errlen);
	return rc < 0 ? -1 : 0;
}

static int add_time(void *arg, const struct journal_line *l)
{
	return state_times_add(arg, l->when) < 0 ? -1 : 0;
}

static int times_of(void *arg, const char *path, const char *slug)
{
	struct state_times *st = arg;
	struct stat sb;
	/* A journal untouched since `since` holds nothing recent. */
	if (stat(path, &sb) == 0 && sb.st_mtime < st->since)
		return 0;
	return each_line(path, add_time, st);
}

int journal_recent_times(const char *state_dir, struct state_times *st, char *err,
			 size_t errlen)
{
	return state_each_file(state_dir, ".journal", times_of, st, err, errlen) < 0 ? -1 : 0;
}

void journal_close(struct journal *j)
{
	if (j->flushing) {
		pthread_mutex_lock(&j->mu);
		j->quit = 1;
		pthread_cond_broadcast(&j->cv);
		pthread_mutex_unlock(&j->mu);
		pthread_join(j->flusher, NULL); /* it syncs what is left first */
	}
	pthread_mutex_destroy(&j->mu);
	pthread_mutex_destroy(&j->wmu);
	pthread_cond_destroy(&j->cv);
	if (j->fd >= 0)
		close(j->fd);
	free(j->path);
	addrset_free(&j->sent);
	addrset_free(&j->uncertain);
	memset(j, 0, sizeof *j);
	j->fd = -1;
}

/* ---- merging and shards -------------------------------------------------- */

/* Kept as written; a reader sent in one copy and uncertain in another
 * keeps both lines, and the journal's reader takes the sent one
 * (journal_is_uncertain). */
static int merge_line(char *text, struct statefile_mline *out)
{
	struct journal_line l;
	int bad = journal_parse_line(text, &l);
	out->when = l.when;
	return bad;
}

int journal_merge(const char *const *paths, size_t n, const char *out_path,
		  struct statefile_merged *m, const struct statefile_warn *w, char *err,
		  size_t errlen)
{
	return statefile_merge(paths, n, STATEFILE_KEEP, merge_line, "journal line", out_path, m,
			       w, err, errlen);
}

int journal_parse_shard_line(char *text, struct journal_shard_line *l)
{
	memset(l, 0, sizeof *l);
	char *f[3] = {text};
	int n = 1;
	for (char *p = text; n < 3 && (p = strchr(p, '\t')); n++) {
		*p++ = '\0';
		f[n] = p;
	}
	char *end;
	if (n < 3 || (l->when = state_parse_time(f[0])) < 0)
		return 1;
	unsigned long i = strtoul(f[1], &end, 10), k = 0;
	if (end == f[1] || *end != '/' || (k = strtoul(end + 1, &end, 10)) == 0 || *end ||
	    i < 1 || i > k || k > JOURNAL_SHARDS_MAX)
		return 1;
	l->i = (unsigned)i;
	l->n = (unsigned)k;
	if (!strcmp(f[2], "done"))
		l->done = 1;
	else if (strcmp(f[2], "begun"))
		return 1;
	return 0;
}

static char *shards_path(const char *state_dir, const char *slug)
{
	char *path;
	return asprintf(&path, "%s/%s.shards", state_dir, slug) < 0 ? NULL : path;
}

int journal_shard_mark(const char *state_dir, const char *slug, unsigned i, unsigned n,
		       enum journal_shard_state what, char *err, size_t errlen)
{
	char *path = shards_path(state_dir, slug), ts[32], line[128];
	if (!path)
		return set_err(err, errlen, -1, "out of memory");
	state_time(time(NULL), ts);
	int len = snprintf(line, sizeof line, "%s\t%u/%u\t%s\n", ts, i, n,
			   what == JOURNAL_SHARD_DONE ? "done" : "begun");
	/* A mark torn by a crash is cut: the next run makes it again. */
	int fd = statefile_open(path, STATEFILE_CUT, 1, NULL, err, errlen);
	int rc = fd < 0 ? -1 : statefile_append(fd, path, STATEFILE_CUT, line, (size_t)len, 1,
						NULL, err, errlen);
	if (fd >= 0)
		close(fd);
	free(path);
	return rc;
}

struct shard_find {
	int (*fn)(void *arg, const struct journal_shard_line *l);
	void *arg;
};

static int shard_one(void *arg, char *text, long no)
{
	struct shard_find *s = arg;
	struct journal_shard_line l;
	(void)no;
	return text && !journal_parse_shard_line(text, &l) ? s->fn(s->arg, &l) : 0;
}

int journal_each_shard(const char *path,
		       int (*fn)(void *arg, const struct journal_shard_line *l), void *arg)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	struct shard_find s = {fn, arg};
	int rc = statefile_each_line(f, shard_one, &s);
	fclose(f);
	return rc;
}

struct shard_want {
	unsigned i, n;
};

static int is_it(void *arg, const struct journal_shard_line *l)
{
	const struct shard_want *w = arg;
	return l->done && l->i == w->i && l->n == w->n;
}

int journal_shard_is_done(const char *state_dir, const char *slug, unsigned i, unsigned n)
{
	char *path = shards_path(state_dir, slug);
	struct shard_want w = {i, n};
	int done = path && journal_each_shard(path, is_it, &w) == 1;
	free(path);
	return done;
}

static int shard_merge_line(char *text, struct statefile_mline *out)
{
	struct journal_shard_line l;
	if (journal_parse_shard_line(text, &l))
		return 1;
	out->when = l.when;
	/* One line per shard and state, whichever host wrote it. */
	return asprintf(&out->key, "%u/%u %d", l.i, l.n, l.done) < 0 ? -1 : 0;
}

int journal_merge_shards(const char *const *paths, size_t n, const char *out_path,
			 struct statefile_merged *m, const struct statefile_warn *w, char *err,
			 size_t errlen)
{
	return statefile_merge(paths, n, STATEFILE_CUT, shard_merge_line, "shards line", out_path,
			       m, w, err, errlen);
}
