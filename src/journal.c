#include "journal.h"
#include "buf.h"
#include "statefile.h"
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

void journal_time(time_t t, char out[32])
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void journal_clean(char *out, size_t outlen, const char *s)
{
	size_t i = 0;
	for (; s && *s && i + 1 < outlen; s++)
		out[i++] = ((unsigned char)*s < 0x20 || *s == 0x7f) ? ' ' : *s;
	if (outlen)
		out[i] = '\0';
}

int journal_mkdir(const char *dir, char *err, size_t errlen)
{
	char *p = strdup(dir);
	if (!p)
		return set_err(err, errlen, -1, "out of memory");
	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, 0700) < 0 && errno != EEXIST) {
				set_err(err, errlen, -1, "%s: cannot create state directory: %s", p, strerror(errno));
				free(p);
				return -1;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	free(p);
	return 0;
}

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

/* One line of a journal: adds its reader to the right set. Returns 0, 1
 * when the line names nobody (damaged), -1 when out of memory. */
static int load_line(struct journal *j, char *line)
{
	char *addr = strchr(line, '\t');
	if (!addr)
		return 1;
	addr++;
	char *f3 = strchr(addr, '\t');
	/* Without the tab after it the address may be cut short. */
	if (!f3)
		return 1;
	*f3++ = '\0';
	/* A fifth field "uncertain": no reply came to the final dot. */
	char *f5 = f3;
	for (int k = 0; f5 && k < 2; k++)
		if ((f5 = strchr(f5, '\t')))
			f5++;
	int unsure = f5 && !strncmp(f5, "uncertain", 9) && (f5[9] == '\0' || f5[9] == '\t');
	if (!*addr)
		return 1;
	return addrset_add(unsure ? &j->uncertain : &j->sent, addr) < 0 ? -1 : 0;
}

static int load(struct journal *j, const struct statefile_warn *w, char *err, size_t errlen)
{
	FILE *f = fdopen(dup(j->fd), "r");
	if (!f)
		return set_err(err, errlen, -1, "%s: %s", j->path, strerror(errno));
	/* The dup shares the offset, which the repair may have moved. */
	rewind(f);
	char *line = NULL, *text;
	size_t cap = 0;
	ssize_t n;
	long no = 0;
	int rc = 0;
	while ((n = getline(&line, &cap, f)) > 0) {
		no++;
		int k = statefile_line(line, n, &text);
		if (k == 0)
			break;
		k = k < 0 ? 1 : load_line(j, text);
		if (k < 0) {
			rc = set_err(err, errlen, -1, "out of memory");
			break;
		}
		if (k == 1)
			statefile_warnf(w, "%s:%ld: not a journal line, ignored (whoever it was may be "
					"mailed again)", j->path, no);
	}
	free(line);
	fclose(f);
	return rc;
}

int journal_open(struct journal *j, const char *state_dir, const char *slug,
		 const struct statefile_warn *w, char *err, size_t errlen)
{
	memset(j, 0, sizeof *j);
	j->fd = -1;
	pthread_mutex_init(&j->mu, NULL);
	pthread_cond_init(&j->cv, NULL);
	int rc = journal_mkdir(state_dir, err, errlen);
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
	journal_time(when, ts);
	journal_clean(rep, sizeof rep, reply);
	const char *tail = mark == JOURNAL_UNCERTAIN ? "\tuncertain\n" : "\n";
	int len = snprintf(line, sizeof line, "%s\t%s\t%s\t%s", ts, addr, msgid, rep);
	if (len > (int)sizeof line - 16)
		len = (int)sizeof line - 16;
	len += snprintf(line + len, sizeof line - (size_t)len, "%s", tail);
	/* One write(2) per line on an O_APPEND descriptor: lines from
	 * several threads never interleave. */
	ssize_t w = write(j->fd, line, (size_t)len);
	int e = w == len ? 0 : w < 0 ? errno : EIO;
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

int journal_is_done(const char *state_dir, const char *slug)
{
	char *path;
	if (asprintf(&path, "%s/%s.done", state_dir, slug) < 0)
		return 0;
	int done = access(path, F_OK) == 0;
	free(path);
	return done;
}

time_t journal_parse_time(const char *s)
{
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	const char *e = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (!e || (*e && *e != '\t' && *e != '\n'))
		return -1;
	return timegm(&tm);
}

/* 1 when the 6th tab-separated field of a bounces.log line is "smtp": only
 * rejections at send time were messages handed to the relay; DSN and
 * forget lines were not. */
static int smtp_line(const char *line)
{
	const char *p = line;
	for (int i = 0; i < 5 && p; i++)
		if ((p = strchr(p, '\t')))
			p++;
	return p && !strncmp(p, "smtp\t", 5);
}

static int times_from(const char *path, time_t since, time_t now, double **out, size_t *n,
		      size_t *cap, int bounce_log)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -1;
	char *line = NULL, *text;
	size_t lcap = 0;
	ssize_t len;
	int rc = 0;
	while ((len = getline(&line, &lcap, f)) > 0) {
		if (statefile_line(line, len, &text) <= 0)
			continue;
		time_t tt = journal_parse_time(text);
		if (tt < 0 || tt < since || (bounce_log && !smtp_line(text)))
			continue;
		/* A time ahead of the clock (written before the clock was
		 * stepped back) would hold its place in every window for
		 * that much longer: it counts as sent now. */
		if (tt > now)
			tt = now;
		if (*n == *cap) {
			size_t nc = *cap ? *cap * 2 : 1024;
			double *no = realloc(*out, nc * sizeof *no);
			if (!no) {
				rc = -1;
				break;
			}
			*out = no;
			*cap = nc;
		}
		(*out)[(*n)++] = (double)tt;
	}
	free(line);
	fclose(f);
	return rc;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int journal_recent_times(const char *state_dir, time_t since, double **out,
			 size_t *n, char *err, size_t errlen)
{
	*out = NULL;
	*n = 0;
	size_t cap = 0;
	DIR *d = opendir(state_dir);
	if (!d)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", state_dir, strerror(errno));
	struct dirent *e;
	int rc = 0;
	time_t now = time(NULL);
	while ((e = readdir(d)) && !rc) {
		size_t l = strlen(e->d_name);
		int journal = l > 8 && !strcmp(e->d_name + l - 8, ".journal");
		if (!journal && strcmp(e->d_name, "bounces.log"))
			continue;
		char *path;
		if (asprintf(&path, "%s/%s", state_dir, e->d_name) < 0) {
			rc = -1;
			break;
		}
		struct stat st;
		/* Files untouched since `since` hold nothing recent. */
		if (stat(path, &st) == 0 && st.st_mtime >= since)
			rc = times_from(path, since, now, out, n, &cap, !journal);
		if (rc)
			set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
		free(path);
	}
	closedir(d);
	if (!rc && *n)
		qsort(*out, *n, sizeof **out, cmp_double);
	return rc;
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
	pthread_cond_destroy(&j->cv);
	if (j->fd >= 0)
		close(j->fd);
	free(j->path);
	addrset_free(&j->sent);
	addrset_free(&j->uncertain);
	memset(j, 0, sizeof *j);
	j->fd = -1;
}

int journal_lock(const char *state_dir, char *err, size_t errlen)
{
	char *path;
	if (journal_mkdir(state_dir, err, errlen) < 0)
		return -2;
	if (asprintf(&path, "%s/herald.lock", state_dir) < 0)
		return set_err(err, errlen, -2, "out of memory");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		set_err(err, errlen, -2, "%s: %s", path, strerror(errno));
		free(path);
		return -2;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int busy = errno == EWOULDBLOCK;
		set_err(err, errlen, busy ? -1 : -2, "%s: %s", path,
			busy ? "another herald is sending from this state directory" : strerror(errno));
		free(path);
		close(fd);
		return busy ? -1 : -2;
	}
	free(path);
	return fd;
}

void journal_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}
