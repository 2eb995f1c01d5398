#include "state/bounces.h"
#include "util/buf.h"
#include "state/journal.h"
#include "state/statefile.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libetpan/libetpan.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* What the log says about one address. Times order everything (see the
 * header); -1 means never. */
struct bounce_addr {
	char *addr;
	time_t forget;     /* latest forget */
	time_t hard;       /* latest hard bounce or complaint */
	char *hard_line;
	time_t *soft;      /* every soft bounce */
	size_t nsoft, capsoft;
	time_t soft_last;
	char *soft_line;
	time_t delivered;  /* latest journal delivery (read only when it matters) */
	int suppressed;
};

/* The fields of one line (its newline already gone): 8, or 9 with the
 * report key; the text is whatever lies between the 7th tab and the 8th
 * (older lines have no 8th, so a key never leaks into their text). */
static int parse_line(char *line, struct bounce_entry *e)
{
	char *f[9];
	int n = 0;
	for (char *p = line; n < 9; n++) {
		f[n] = p;
		char *t = (n < 8) ? strchr(p, '\t') : NULL;
		if (!t) {
			n++;
			break;
		}
		*t = '\0';
		p = t + 1;
	}
	if (n < 7)
		return -1;
	memset(e, 0, sizeof *e);
	snprintf(e->when, sizeof e->when, "%s", f[0]);
	snprintf(e->addr, sizeof e->addr, "%s", f[1]);
	snprintf(e->kind, sizeof e->kind, "%s", f[2]);
	snprintf(e->status, sizeof e->status, "%s", f[3]);
	e->code = atoi(f[4]);
	snprintf(e->source, sizeof e->source, "%s", f[5]);
	snprintf(e->slug, sizeof e->slug, "%s", f[6]);
	snprintf(e->text, sizeof e->text, "%s", n > 7 ? f[7] : "");
	snprintf(e->report, sizeof e->report, "%s", n > 8 ? f[8] : "");
	return 0;
}

static char *entry_line(const struct bounce_entry *e)
{
	char *line;
	if (asprintf(&line, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s%s%s\n", e->when, e->addr, e->kind,
		     e->status, e->code, e->source, e->slug, e->text, e->report[0] ? "\t" : "",
		     e->report) < 0)
		return NULL;
	return line;
}

/* ---- the per-address table ---------------------------------------------- */

static struct bounce_addr *lookup(struct bounces *b, const char *addr, int create)
{
	char *lower = str_lower(addr);
	if (!lower)
		return NULL;
	chashdatum key = {lower, (unsigned int)strlen(lower)}, val;
	struct bounce_addr *a = NULL;
	if (b->index && chash_get(b->index, &key, &val) == 0) {
		a = &b->addrs[(uintptr_t)val.data - 1];
	} else if (create) {
		if (b->naddrs == b->capaddrs) {
			size_t nc = b->capaddrs ? b->capaddrs * 2 : 64;
			struct bounce_addr *na = realloc(b->addrs, nc * sizeof *na);
			if (!na)
				goto out;
			b->addrs = na;
			b->capaddrs = nc;
		}
		a = &b->addrs[b->naddrs];
		memset(a, 0, sizeof *a);
		a->forget = a->hard = a->soft_last = a->delivered = -1;
		if (!(a->addr = strdup(addr))) {
			a = NULL;
			goto out;
		}
		val.data = (void *)(uintptr_t)(b->naddrs + 1);
		val.len = 0;
		if (chash_set(b->index, &key, &val, NULL) < 0) {
			free(a->addr);
			a = NULL;
			goto out;
		}
		b->naddrs++;
	}
out:
	free(lower);
	return a;
}

/* Soft bounces since the later of the last forget and the last delivery. */
static int soft_run(const struct bounce_addr *a)
{
	time_t base = a->forget > a->delivered ? a->forget : a->delivered;
	int n = 0;
	for (size_t i = 0; i < a->nsoft; i++)
		n += a->soft[i] > base;
	return n;
}

static void evaluate(const struct bounces *b, struct bounce_addr *a)
{
	a->suppressed = a->hard > a->forget || soft_run(a) >= b->soft_limit;
}

static int replace(char **dst, const struct bounce_entry *e)
{
	char *l = entry_line(e);
	if (!l)
		return -1;
	free(*dst);
	*dst = l;
	return 0;
}

static int apply(struct bounces *b, const struct bounce_entry *e)
{
	time_t t = state_parse_time(e->when);
	if (t < 0)
		return 0; /* not ours to interpret */
	int hard = !strcmp(e->kind, "hard") || !strcmp(e->kind, "complaint");
	int soft = !strcmp(e->kind, "soft"), forget = !strcmp(e->kind, "forget");
	if (!hard && !soft && !forget)
		return 0;
	struct bounce_addr *a = lookup(b, e->addr, 1);
	if (!a)
		return -1;
	if (forget && t > a->forget)
		a->forget = t;
	if (hard && t >= a->hard) {
		a->hard = t;
		if (replace(&a->hard_line, e) < 0)
			return -1;
	}
	if (soft) {
		if (array_grow(&a->soft, &a->capsoft, a->nsoft, sizeof *a->soft, 4) < 0)
			return -1;
		a->soft[a->nsoft++] = t;
		if (t >= a->soft_last) {
			a->soft_last = t;
			if (replace(&a->soft_line, e) < 0)
				return -1;
		}
	}
	evaluate(b, a);
	return 0;
}

/* The key bounces_add_once compares. A line with a report key: that
 * key (what names the report: its Message-ID or a digest of its bytes),
 * the address and the status, so a rescan matches it whatever time it
 * gives the bounce (a report without a Date gets the scan's). An older
 * line without one: everything but the text, as before. */
static char *seen_key(const struct bounce_entry *e, int legacy)
{
	char *k;
	int rc = legacy || !e->report[0]
		? asprintf(&k, "t\t%s\t%s\t%s\t%s\t%d\t%s\t%s", e->when, e->addr, e->kind, e->status,
			   e->code, e->source, e->slug)
		: asprintf(&k, "r\t%s\t%s\t%s", e->report, e->addr, e->status);
	if (rc < 0)
		return NULL;
	for (char *c = k; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	return k;
}

static int remember(struct bounces *b, const struct bounce_entry *e)
{
	if (strcmp(e->source, "dsn"))
		return 0;
	char *k = seen_key(e, 0);
	if (!k)
		return -1;
	chashdatum key = {k, (unsigned int)strlen(k)}, val = {NULL, 0};
	int rc = chash_set(b->seen, &key, &val, NULL);
	free(k);
	return rc < 0 ? -1 : 0;
}

/* 1 when the log holds e already (by its key or, for the lines of
 * earlier versions, by the old one), 0 when not, -1 out of memory. */
static int seen_before(const struct bounces *b, const struct bounce_entry *e)
{
	for (int legacy = 0; legacy < 1 + !!e->report[0]; legacy++) {
		char *k = seen_key(e, legacy);
		if (!k)
			return -1;
		chashdatum key = {k, (unsigned int)strlen(k)}, val;
		int had = chash_get(b->seen, &key, &val) == 0;
		free(k);
		if (had)
			return 1;
	}
	return 0;
}

static int note_delivery(void *arg, const char *slug, const struct journal_line *l)
{
	struct bounces *b = arg;
	struct bounce_addr *a = lookup(b, l->addr, 0);
	if (a && l->when > a->delivered)
		a->delivered = l->when;
	return 0;
}

struct load {
	struct bounces *b;
	char *err;
	size_t errlen;
};

static int load_one(void *arg, char *text, long no)
{
	struct load *ld = arg;
	struct bounce_entry e;
	if (!text || parse_line(text, &e) < 0) {
		statefile_warnf(&ld->b->warn, "%s:%ld: not a bounces.log line, ignored", ld->b->path, no);
		return 0;
	}
	if (apply(ld->b, &e) < 0 || remember(ld->b, &e) < 0)
		return set_err(ld->err, ld->errlen, -1, "out of memory");
	return 0;
}

static int load(struct bounces *b, char *err, size_t errlen)
{
	FILE *f = fopen(b->path, "r");
	if (!f)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", b->path, strerror(errno));
	struct load ld = {b, err, errlen};
	int rc = statefile_each_line(f, load_one, &ld);
	fclose(f);
	if (rc)
		return rc;
	/* Deliveries only matter to addresses whose soft bounces would
	 * suppress them: read the journals only when there are some. */
	int need = 0;
	for (size_t i = 0; i < b->naddrs; i++)
		need |= b->addrs[i].hard <= b->addrs[i].forget && b->addrs[i].suppressed;
	if (need) {
		rc = journal_each_delivery(b->state_dir, note_delivery, b, err, errlen);
		for (size_t i = 0; i < b->naddrs; i++)
			evaluate(b, &b->addrs[i]);
	}
	return rc;
}

int bounces_open(struct bounces *b, const char *state_dir, int soft_limit,
		 const struct statefile_warn *w, char *err, size_t errlen)
{
	memset(b, 0, sizeof *b);
	if (w)
		b->warn = *w;
	b->soft_limit = soft_limit > 0 ? soft_limit : 1;
	b->index = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	b->seen = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	b->state_dir = strdup(state_dir);
	int rc = 0;
	if (!b->index || !b->seen || !b->state_dir ||
	    asprintf(&b->path, "%s/bounces.log", state_dir) < 0) {
		b->path = NULL;
		rc = set_err(err, errlen, -1, "out of memory");
	}
	if (!rc)
		rc = load(b, err, errlen);
	if (rc)
		bounces_close(b);
	return rc;
}

int bounces_suppressed(const struct bounces *b, const char *addr)
{
	/* lookup() only writes when asked to create. */
	const struct bounce_addr *a = lookup((struct bounces *)b, addr, 0);
	return a && a->suppressed;
}

static int append(struct bounces *b, const struct bounce_entry *e, char *err, size_t errlen)
{
	char *line = entry_line(e);
	if (!line)
		return set_err(err, errlen, -1, "out of memory");
	size_t len = strlen(line);
	/* O_APPEND keeps concurrent writers (a scan and a send) from
	 * overwriting each other's lines; the line is one write(), made
	 * under the file's lock after its tail is repaired, so it never
	 * lands on a fragment a crash left (the fragment goes: its bounce
	 * is logged again by whoever failed to). */
	int fd = statefile_open(b->path, STATEFILE_CUT, 1, &b->warn, err, errlen);
	if (fd < 0) {
		free(line);
		return -1;
	}
	int saved;
	char why[256];
	int rc = statefile_append(fd, b->path, STATEFILE_CUT, line, len, 1, &saved, why, sizeof why);
	close(fd);
	free(line);
	if (rc < 0)
		return set_err(err, errlen, -1, "%s: cannot record a bounce: %s", b->path,
			       strerror(saved ? saved : EIO));
	if (apply(b, e) < 0 || remember(b, e) < 0)
		return set_err(err, errlen, -1, "out of memory");
	return 0;
}

static void fill(struct bounce_entry *e, time_t when, const char *addr, const char *kind,
		 const char *status, int code, const char *source, const char *slug,
		 const char *text, const char *report)
{
	memset(e, 0, sizeof *e);
	state_time(when, e->when);
	state_clean(e->addr, sizeof e->addr, addr);
	snprintf(e->kind, sizeof e->kind, "%s", kind);
	state_clean(e->status, sizeof e->status, status && *status ? status : "-");
	e->code = code;
	snprintf(e->source, sizeof e->source, "%s", source);
	state_clean(e->slug, sizeof e->slug, slug && *slug ? slug : "-");
	state_clean(e->text, sizeof e->text, text ? text : "");
	state_clean(e->report, sizeof e->report, report ? report : "");
}

static const char *kind_name(enum bounce_kind k)
{
	return k == BOUNCE_HARD ? "hard" : k == BOUNCE_SOFT ? "soft" : "complaint";
}

static int add(struct bounces *b, int once, time_t when, const char *addr,
	       enum bounce_kind kind, const char *status, int code, const char *source,
	       const char *slug, const char *text, const char *report, char *err, size_t errlen)
{
	struct bounce_entry e;
	fill(&e, when, addr, kind_name(kind), status, code, source, slug, text, report);
	int had = once ? seen_before(b, &e) : 0;
	if (had < 0)
		return set_err(err, errlen, -1, "out of memory");
	if (had)
		return 1;
	return append(b, &e, err, errlen);
}

int bounces_add(struct bounces *b, time_t when, const char *addr,
		enum bounce_kind kind, const char *status, int code,
		const char *source, const char *slug, const char *text,
		char *err, size_t errlen)
{
	return add(b, 0, when, addr, kind, status, code, source, slug, text, NULL, err, errlen);
}

int bounces_add_once(struct bounces *b, time_t when, const char *addr,
		     enum bounce_kind kind, const char *status, int code,
		     const char *source, const char *slug, const char *text,
		     const char *report, char *err, size_t errlen)
{
	return add(b, 1, when, addr, kind, status, code, source, slug, text, report, err, errlen);
}

int bounces_forget(struct bounces *b, const char *addr, int *was, char *err,
		   size_t errlen)
{
	*was = bounces_suppressed(b, addr);
	struct bounce_entry e;
	/* One second on: a bounce logged in the same second as the forget
	 * (the one being forgiven) must not survive it. */
	time_t now = time(NULL);
	struct bounce_addr *a = lookup(b, addr, 0);
	if (a && a->hard >= now)
		now = a->hard + 1;
	if (a && a->soft_last >= now)
		now = a->soft_last + 1;
	fill(&e, now, addr, "forget", "-", 0, "cli", "-", "lifted by herald bounces forget", NULL);
	return append(b, &e, err, errlen);
}

int bounces_each_suppressed(const char *state_dir, int soft_limit,
			    void (*fn)(void *arg, const struct bounce_entry *e),
			    void *arg, char *err, size_t errlen)
{
	struct bounces b;
	int rc = bounces_open(&b, state_dir, soft_limit, NULL, err, errlen);
	for (size_t i = 0; !rc && i < b.naddrs; i++) {
		struct bounce_addr *a = &b.addrs[i];
		if (!a->suppressed)
			continue;
		int hard = a->hard > a->forget;
		char *line = strdup(hard ? a->hard_line : a->soft_line);
		struct bounce_entry e;
		if (!line) {
			rc = set_err(err, errlen, -1, "out of memory");
			break;
		}
		line[strcspn(line, "\n")] = '\0';
		if (parse_line(line, &e) == 0) {
			e.count = hard ? 1 : soft_run(a);
			fn(arg, &e);
		}
		free(line);
	}
	bounces_close(&b);
	return rc;
}

/* Only refusals at send time were messages handed to the relay; DSN and
 * forget lines were not. */
static int recent_one(void *arg, char *text, long no)
{
	struct bounce_entry e;
	if (text && parse_line(text, &e) == 0 && !strcmp(e.source, "smtp"))
		return state_times_add(arg, state_parse_time(e.when)) < 0 ? -1 : 0;
	return 0;
}

int bounces_recent_times(const char *state_dir, struct state_times *st, char *err,
			 size_t errlen)
{
	char *path;
	if (asprintf(&path, "%s/bounces.log", state_dir) < 0)
		return set_err(err, errlen, -1, "out of memory");
	struct stat sb;
	FILE *f = NULL;
	int rc = 0;
	/* Untouched since `since`: nothing recent in it. */
	if (stat(path, &sb) == 0 && sb.st_mtime >= st->since && !(f = fopen(path, "r")))
		rc = set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	if (f && statefile_each_line(f, recent_one, st) < 0)
		rc = set_err(err, errlen, -1, "out of memory");
	if (f)
		fclose(f);
	free(path);
	return rc;
}

static int merge_line(char *text, struct statefile_mline *out)
{
	struct bounce_entry e;
	if (parse_line(text, &e) < 0)
		return 1;
	out->when = state_parse_time(e.when);
	/* A report two hosts both scanned is one bounce, as for
	 * bounces_add_once; every other line is itself. */
	if (!strcmp(e.source, "dsn") && e.report[0] && !(out->key = seen_key(&e, 0)))
		return -1;
	return 0;
}

int bounces_merge(const char *const *paths, size_t n, const char *out_path,
		  struct statefile_merged *m, const struct statefile_warn *w, char *err,
		  size_t errlen)
{
	return statefile_merge(paths, n, STATEFILE_CUT, merge_line, "bounces.log line", out_path,
			       m, w, err, errlen);
}

void bounces_close(struct bounces *b)
{
	for (size_t i = 0; i < b->naddrs; i++) {
		free(b->addrs[i].addr);
		free(b->addrs[i].hard_line);
		free(b->addrs[i].soft_line);
		free(b->addrs[i].soft);
	}
	free(b->addrs);
	if (b->index)
		chash_free(b->index);
	if (b->seen)
		chash_free(b->seen);
	free(b->path);
	free(b->state_dir);
	memset(b, 0, sizeof *b);
}
