#include "input/subs_edit.h"
#include "util/buf.h"
#include <csv.h>
#include <dirent.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libetpan/libetpan.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sysexits.h>

struct rewrite {
	const char *in;
	size_t len, pos;       /* pos: the byte being fed to libcsv */
	struct buf out;
	size_t copied;         /* input bytes already in out */
	size_t rec_start, field_start;
	size_t nfield;
	long row;              /* 0: the header */
	int email_col, status_col, ncols;
	size_t status_start, status_end; /* raw span of the status field */
	struct buf email, status;
	int at_eof;
	chash *want;           /* lower-cased address -> index + 1 */
	char sep;              /* the list's delimiter: a new status column uses it */
	enum subs_edit_result *result;
	int changed, oom;
	/* SUBS_EDIT_SUBSCRIBE: rows found get "subscribed", the others are
	 * appended with names[i]; SUBS_EDIT_REMOVE: rows found are left out.
	 * Neither adds a status column. */
	enum subs_edit_op op;
	int skip;              /* this row is left out (SUBS_EDIT_REMOVE) */
	const char *const *addrs, *const *names;
	size_t n;
	int name_col;
};

static void trim_copy(struct buf *b, const char *s, size_t n)
{
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	buf_reset(b);
	if (buf_add(b, s, n) < 0)
		buf_reset(b);
}

static void on_field(void *s, size_t n, void *arg)
{
	struct rewrite *w = arg;
	size_t end = w->at_eof ? w->len : w->pos;
	const char *v = s ? s : "";
	if (w->row == 0) {
		char name[64];
		size_t k = 0;
		if (w->nfield == 0 && n >= 3 && !memcmp(v, "\xEF\xBB\xBF", 3)) {
			v += 3;
			n -= 3;
		}
		while (n && (*v == ' ' || *v == '\t'))
			v++, n--;
		for (; k < n && k < sizeof name - 1; k++)
			name[k] = (char)tolower((unsigned char)v[k]);
		while (k && (name[k - 1] == ' ' || name[k - 1] == '\t'))
			k--;
		name[k] = '\0';
		if (!strcmp(name, "email") && w->email_col < 0)
			w->email_col = (int)w->nfield;
		if (!strcmp(name, "status") && w->status_col < 0)
			w->status_col = (int)w->nfield;
		if (!strcmp(name, "name") && w->name_col < 0)
			w->name_col = (int)w->nfield;
	} else if ((int)w->nfield == w->email_col) {
		trim_copy(&w->email, v, n);
	} else if ((int)w->nfield == w->status_col) {
		trim_copy(&w->status, v, n);
		w->status_start = w->field_start;
		w->status_end = end;
	}
	w->nfield++;
	w->field_start = end + 1;
}

static void emit(struct rewrite *w, size_t upto, const char *add)
{
	if (buf_add(&w->out, w->in + w->copied, upto - w->copied) < 0 || buf_adds(&w->out, add) < 0)
		w->oom = 1;
	w->copied = upto;
}

/* The index in want of this row's address, or -1. */
static int wanted(struct rewrite *w)
{
	int idx = -1;
	char *lower = (int)w->nfield > w->email_col ? str_lower(w->email.p ? w->email.p : "") : NULL;
	chashdatum k, v;
	if (lower) {
		k.data = lower;
		k.len = (unsigned)strlen(lower);
		if (chash_get(w->want, &k, &v) == 0)
			idx = (int)(uintptr_t)v.data - 1;
	}
	free(lower);
	return idx;
}

/* An empty status is subscribed already; another one becomes so. */
static void subscribe_row(struct rewrite *w)
{
	int idx = wanted(w);
	if (idx < 0)
		return;
	if (w->status_col < 0 || (int)w->nfield <= w->status_col || !w->status.p ||
	    !*w->status.p || !strcasecmp(w->status.p, "subscribed")) {
		if (w->result[idx] != SUBS_EDIT_CHANGED)
			w->result[idx] = SUBS_EDIT_ALREADY;
		return;
	}
	emit(w, w->status_start, "subscribed");
	w->copied = w->status_end;
	w->result[idx] = SUBS_EDIT_CHANGED;
	w->changed = 1;
}

/* SUBS_EDIT_REMOVE: a row of a wanted address goes, with its line
 * break(s); every other byte stays. */
static void remove_row(struct rewrite *w)
{
	int idx = wanted(w);
	if (idx < 0)
		return;
	emit(w, w->rec_start, "");
	w->skip = 1;
	w->result[idx] = SUBS_EDIT_CHANGED;
	w->changed = 1;
}

/* 0, or -1 out of memory. */
BUF_MUST static int csv_field(struct buf *b, const char *v, char sep)
{
	char specials[] = {sep, '"', '\r', '\n', '\0'};
	if (!strpbrk(v, specials) && *v != ' ' && !(*v && v[strlen(v) - 1] == ' '))
		return buf_adds(b, v);
	int rc = buf_addc(b, '"');
	for (; *v && !rc; v++)
		rc = *v == '"' ? buf_adds(b, "\"\"") : buf_addc(b, *v);
	return rc ? rc : buf_addc(b, '"');
}

/* A name from the web, as OWASP's CSV-injection advice has it: one that
 * starts with = + - @ TAB or CR is what a spreadsheet opening the list
 * runs as a formula, so it is written after a single quote ("'=SUM(..)"),
 * which spreadsheets show as text. herald reads the quote back as part
 * of the name. 0, or -1 out of memory. */
BUF_MUST static int name_field(struct buf *b, const char *v, char sep)
{
	if (!v || !*v || !strchr("=+-@\t\r", *v))
		return csv_field(b, v ? v : "", sep);
	char *q = NULL;
	if (asprintf(&q, "'%s", v) < 0)
		return -1;
	int rc = csv_field(b, q, sep);
	free(q);
	return rc;
}

/* Readers not in the list: one row each at the end, in the list's own
 * line ending, every column but email, name and status empty. */
static void append_rows(struct rewrite *w)
{
	const char *eol = memmem(w->in, w->len, "\r\n", 2) ? "\r\n" : "\n";
	for (size_t i = 0; i < w->n; i++) {
		if (w->result[i] != SUBS_EDIT_NOT_LISTED)
			continue;
		int dup = 0;
		for (size_t k = 0; k < i; k++)
			dup |= w->result[k] == SUBS_EDIT_CHANGED && !strcasecmp(w->addrs[k], w->addrs[i]);
		if (dup) {
			w->result[i] = SUBS_EDIT_ALREADY;
			continue;
		}
		int rc = 0;
		if (w->out.len && w->out.p[w->out.len - 1] != '\n')
			rc |= buf_adds(&w->out, eol);
		for (int c = 0; c < w->ncols && !rc; c++) {
			if (c)
				rc |= buf_addc(&w->out, w->sep);
			rc |= c == w->name_col ? name_field(&w->out, w->names[i], w->sep)
			      : csv_field(&w->out, c == w->email_col ? w->addrs[i]
					  : c == w->status_col ? "subscribed" : "", w->sep);
		}
		if (rc || buf_adds(&w->out, eol) < 0)
			w->oom = 1;
		w->result[i] = SUBS_EDIT_CHANGED;
		w->changed = 1;
	}
}

static void on_row(int c, void *arg)
{
	struct rewrite *w = arg;
	size_t end = w->at_eof ? w->len : w->pos;
	if (w->row == 0) {
		w->ncols = (int)w->nfield;
		char add[] = {w->sep, 's', 't', 'a', 't', 'u', 's', '\0'};
		if (w->email_col >= 0 && w->status_col < 0 && w->op == SUBS_EDIT_UNSUBSCRIBE)
			emit(w, end, add);
	} else if (w->email_col >= 0 && w->op == SUBS_EDIT_SUBSCRIBE) {
		subscribe_row(w);
	} else if (w->email_col >= 0 && w->op == SUBS_EDIT_REMOVE) {
		remove_row(w);
	} else if (w->email_col >= 0) {
		int idx = wanted(w);
		if (w->status_col < 0) {
			char add[16];
			snprintf(add, sizeof add, "%c%s", w->sep, idx >= 0 ? "unsubscribed" : "");
			emit(w, end, add);
			if (idx >= 0) {
				w->result[idx] = SUBS_EDIT_CHANGED;
				w->changed = 1;
			}
		} else if (idx >= 0 && (int)w->nfield > w->status_col) {
			if (w->status.p && !strcasecmp(w->status.p, "unsubscribed")) {
				if (w->result[idx] != SUBS_EDIT_CHANGED)
					w->result[idx] = SUBS_EDIT_ALREADY;
			} else {
				emit(w, w->status_start, "unsubscribed");
				w->copied = w->status_end;
				w->result[idx] = SUBS_EDIT_CHANGED;
				w->changed = 1;
			}
		}
	}
	(void)c;
	w->row++;
	w->nfield = 0;
	buf_reset(&w->email);
	buf_reset(&w->status);
	/* The next record starts after this one's line break(s). */
	size_t s = end;
	while (s < w->len && (w->in[s] == '\r' || w->in[s] == '\n'))
		s++;
	if (w->skip) {
		w->copied = s;   /* the row and its line break(s) left out */
		w->skip = 0;
	}
	w->rec_start = w->field_start = s;
}

/* Parses the list and builds the new text in w->out. */
static int rewrite(struct rewrite *w, const char *path, char *err, size_t errlen)
{
	struct csv_parser p;
	if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0)
		return set_err(err, errlen, SUBS_EDIT_ERR_LIST, "out of memory");
	csv_set_delim(&p, (unsigned char)w->sep);
	w->email_col = w->status_col = w->name_col = -1;
	int rc = 0;
	/* Byte by byte, so each callback knows the offset where its field
	 * or record ends: the rewrite copies everything else verbatim. */
	for (w->pos = 0; w->pos < w->len && !w->oom; w->pos++) {
		if (csv_parse(&p, w->in + w->pos, 1, on_field, on_row, w) != 1) {
			rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: CSV error near byte %zu: %s", path,
				     w->pos, csv_strerror(csv_error(&p)));
			break;
		}
		if (w->row == 1 && w->email_col < 0) {
			rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: no \"email\" column in the header row", path);
			break;
		}
	}
	if (!rc && !w->oom) {
		w->at_eof = 1;
		if (csv_fini(&p, on_field, on_row, w) != 0)
			rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: CSV error at the end: %s", path,
				     csv_strerror(csv_error(&p)));
		else if (w->email_col < 0)
			rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: no \"email\" column in the header row", path);
	}
	csv_free(&p);
	if (!rc && !w->oom)
		emit(w, w->len, "");
	if (!rc && !w->oom && w->op == SUBS_EDIT_SUBSCRIBE)
		append_rows(w);
	if (!rc && w->oom)
		rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "out of memory");
	return rc;
}

/* Removes what an earlier rewrite killed before its rename left behind:
 * .LIST.herald-XXXXXX beside the list. Called under the list's lock, so
 * no live rewrite owns one. */
static void remove_stale(const char *path)
{
	char *dup1 = strdup(path), *dup2 = strdup(path), *prefix = NULL;
	if (!dup1 || !dup2 || asprintf(&prefix, ".%s.herald-", basename(dup2)) < 0) {
		prefix = NULL;
		goto out;
	}
	const char *dir = dirname(dup1);
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t pl = strlen(prefix);
	while (d && (e = readdir(d))) {
		/* mkstemp's six characters, nothing else */
		if (strncmp(e->d_name, prefix, pl) || strlen(e->d_name + pl) != 6)
			continue;
		char *p;
		if (asprintf(&p, "%s/%s", dir, e->d_name) >= 0) {
			unlink(p);
			free(p);
		}
	}
	if (d)
		closedir(d);
out:
	free(prefix);
	free(dup1);
	free(dup2);
}

/* Temporary file beside the list, fsync'd, then renamed over it. */
BUF_MUST static int replace_file(const char *path, const struct stat *st, const struct buf *b,
			char *err, size_t errlen)
{
	char *dup1 = strdup(path), *dup2 = strdup(path), *tmp = NULL;
	int rc = 0, fd = -1;
	if (!dup1 || !dup2 || asprintf(&tmp, "%s/.%s.herald-XXXXXX", dirname(dup1), basename(dup2)) < 0) {
		tmp = NULL;
		rc = set_err(err, errlen, SUBS_EDIT_ERR_WRITE, "out of memory");
		goto out;
	}
	fd = mkstemp(tmp);
	if (fd < 0) {
		rc = set_err(err, errlen, SUBS_EDIT_ERR_WRITE, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	size_t off = 0;
	while (off < b->len) {
		ssize_t n = write(fd, b->p + off, b->len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = set_err(err, errlen, SUBS_EDIT_ERR_WRITE, "%s: %s", tmp, strerror(n < 0 ? errno : EIO));
			goto out;
		}
		off += (size_t)n;
	}
	/* The list keeps its owner and mode (mkstemp made it 0600, ours). */
	if (fchmod(fd, st->st_mode & 07777) < 0 ||
	    (fchown(fd, st->st_uid, st->st_gid) < 0 && errno != EPERM) || fsync(fd) < 0) {
		rc = set_err(err, errlen, SUBS_EDIT_ERR_WRITE, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = set_err(err, errlen, SUBS_EDIT_ERR_WRITE, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		rc = set_err(err, errlen, SUBS_EDIT_ERR_WRITE, "%s: %s", path, strerror(errno));
		goto out;
	}
	free(tmp);
	tmp = NULL;
	/* The rename itself is durable once the directory is. */
	free(dup1);
	dup1 = strdup(path);
	int dfd = dup1 ? open(dirname(dup1), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (dfd >= 0) {
		fsync(dfd);
		close(dfd);
	}
out:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(dup1);
	free(dup2);
	return rc;
}

static int apply_to(const char *path, char sep, enum subs_edit_op op, const char *const *addrs,
		    const char *const *names, size_t n, enum subs_edit_result *result, char *err,
		    size_t errlen)
{
	for (size_t i = 0; i < n; i++)
		result[i] = SUBS_EDIT_NOT_LISTED;
	int fd = -1;
	struct stat st;
	/* Lock the list, then make sure the file locked is still the one at
	 * path: another herald may have renamed a new list over it while we
	 * waited. */
	for (int tries = 0;; tries++) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return set_err(err, errlen, errno == ENOENT ? SUBS_EDIT_ERR_NOFILE : SUBS_EDIT_ERR_LIST,
				       "%s: %s", path, strerror(errno));
		struct stat now;
		if (flock(fd, LOCK_EX) < 0 || fstat(fd, &st) < 0) {
			int e = errno;
			close(fd);
			return set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: %s", path, strerror(e));
		}
		if (stat(path, &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev) {
			remove_stale(path);
			break;
		}
		close(fd);
		if (tries > 100)
			return set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: keeps being replaced", path);
	}
	struct rewrite w;
	memset(&w, 0, sizeof w);
	w.result = result;
	w.sep = sep ? sep : ',';
	w.op = op;
	w.addrs = addrs;
	w.names = names;
	w.n = n;
	int rc = 0;
	char *data = NULL;
	size_t len = 0;
	w.want = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	if (!w.want)
		rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "out of memory");
	for (size_t i = 0; !rc && i < n; i++) {
		char *lower = str_lower(addrs[i]);
		chashdatum k = {lower, lower ? (unsigned)strlen(lower) : 0}, v = {(void *)(uintptr_t)(i + 1), 0};
		if (!lower || chash_set(w.want, &k, &v, NULL) < 0)
			rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "out of memory");
		free(lower);
	}
	if (!rc && read_file(path, &data, &len) < 0)
		rc = set_err(err, errlen, SUBS_EDIT_ERR_LIST, "%s: %s", path, strerror(errno));
	if (!rc) {
		w.in = data;
		w.len = len;
		rc = rewrite(&w, path, err, errlen);
	}
	if (!rc && w.changed)
		rc = replace_file(path, &st, &w.out, err, errlen);
	if (rc)
		for (size_t i = 0; i < n; i++)
			result[i] = SUBS_EDIT_NOT_LISTED;
	free(data);
	buf_free(&w.out);
	buf_free(&w.email);
	buf_free(&w.status);
	if (w.want)
		chash_free(w.want);
	close(fd); /* and so the lock */
	return rc;
}

int subs_edit_unsubscribe(const char *path, char sep, const char *const *addrs, size_t n,
			  enum subs_edit_result *result, char *err, size_t errlen)
{
	return apply_to(path, sep, SUBS_EDIT_UNSUBSCRIBE, addrs, NULL, n, result, err, errlen);
}

int subs_edit_subscribe(const char *path, char sep, const char *const *addrs,
			const char *const *names, size_t n, enum subs_edit_result *result, char *err,
			size_t errlen)
{
	return apply_to(path, sep, SUBS_EDIT_SUBSCRIBE, addrs, names, n, result, err, errlen);
}

int subs_edit_remove(const char *path, char sep, const char *const *addrs, size_t n,
		     enum subs_edit_result *result, char *err, size_t errlen)
{
	return apply_to(path, sep, SUBS_EDIT_REMOVE, addrs, NULL, n, result, err, errlen);
}

int subs_edit_exitcode(int rc)
{
	return rc == SUBS_EDIT_OK ? EX_OK : rc == SUBS_EDIT_ERR_NOFILE ? EX_NOINPUT
	     : rc == SUBS_EDIT_ERR_LIST ? EX_DATAERR : EX_CANTCREAT;
}
