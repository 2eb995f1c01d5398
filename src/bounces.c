#include "bounces.h"
#include "buf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse_line(char *line, struct bounce_entry *e)
{
	char *f[8];
	int n = 0;
	char *save = NULL;
	line[strcspn(line, "\n")] = '\0';
	for (char *p = line; n < 8; n++) {
		f[n] = p;
		char *t = (n < 7) ? strchr(p, '\t') : NULL;
		if (!t) {
			n++;
			break;
		}
		*t = '\0';
		p = t + 1;
	}
	(void)save;
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
	return 0;
}

static int soft_count(struct bounces *b, const char *addr, int add)
{
	for (size_t i = 0; i < b->nsoft; i++)
		if (!strcasecmp(b->soft_addr[i], addr))
			return b->soft_n[i] += add;
	if (!add)
		return 0;
	if (b->nsoft == b->capsoft) {
		size_t nc = b->capsoft ? b->capsoft * 2 : 16;
		char **na = realloc(b->soft_addr, nc * sizeof *na);
		if (!na)
			return -1;
		b->soft_addr = na;
		int *nn = realloc(b->soft_n, nc * sizeof *nn);
		if (!nn)
			return -1;
		b->soft_n = nn;
		b->capsoft = nc;
	}
	if (!(b->soft_addr[b->nsoft] = strdup(addr)))
		return -1;
	b->soft_n[b->nsoft] = add;
	return b->soft_n[b->nsoft++];
}

/* Applies one entry; returns 1 when it (newly) suppresses the address. */
static int apply(struct bounces *b, const struct bounce_entry *e)
{
	int suppress = !strcmp(e->kind, "hard") || !strcmp(e->kind, "complaint");
	if (!strcmp(e->kind, "soft")) {
		int n = soft_count(b, e->addr, 1);
		if (n < 0)
			return -1;
		suppress = n >= b->soft_limit;
	}
	return suppress ? addrset_add(&b->suppressed, e->addr) : 0;
}

static int load(struct bounces *b, void (*fn)(void *, const struct bounce_entry *),
		void *arg, char *err, size_t errlen)
{
	FILE *f = fopen(b->path, "r");
	if (!f)
		return errno == ENOENT ? 0 : set_err(err, errlen, -1, "%s: %s", b->path, strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int rc = 0;
	struct bounce_entry e;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n' || parse_line(line, &e) < 0)
			continue;
		int r = apply(b, &e);
		if (r < 0) {
			rc = set_err(err, errlen, -1, "out of memory");
			break;
		}
		if (r == 1 && fn)
			fn(arg, &e);
	}
	free(line);
	fclose(f);
	return rc;
}

int bounces_open(struct bounces *b, const char *state_dir, int soft_limit,
		 char *err, size_t errlen)
{
	memset(b, 0, sizeof *b);
	b->soft_limit = soft_limit > 0 ? soft_limit : 1;
	if (asprintf(&b->path, "%s/bounces.log", state_dir) < 0) {
		b->path = NULL;
		return set_err(err, errlen, -1, "out of memory");
	}
	return load(b, NULL, NULL, err, errlen);
}

int bounces_suppressed(const struct bounces *b, const char *addr)
{
	return addrset_has(&b->suppressed, addr);
}

int bounces_add(struct bounces *b, time_t when, const char *addr,
		enum bounce_kind kind, const char *status, int code,
		const char *source, const char *slug, const char *text,
		char *err, size_t errlen)
{
	struct bounce_entry e;
	memset(&e, 0, sizeof e);
	journal_time(when, e.when);
	journal_clean(e.addr, sizeof e.addr, addr);
	snprintf(e.kind, sizeof e.kind, "%s",
		 kind == BOUNCE_HARD ? "hard" : kind == BOUNCE_SOFT ? "soft" : "complaint");
	journal_clean(e.status, sizeof e.status, status && *status ? status : "-");
	e.code = code;
	snprintf(e.source, sizeof e.source, "%s", source);
	journal_clean(e.slug, sizeof e.slug, slug);
	journal_clean(e.text, sizeof e.text, text);
	char *line;
	int len = asprintf(&line, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.when, e.addr,
			   e.kind, e.status, e.code, e.source, e.slug, e.text);
	if (len < 0)
		return set_err(err, errlen, -1, "out of memory");
	/* O_APPEND keeps concurrent writers (a scan and a send) from
	 * overwriting each other's lines. */
	int fd = open(b->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	ssize_t w = fd >= 0 ? write(fd, line, (size_t)len) : -1;
	int sync = fd >= 0 ? fdatasync(fd) : -1;
	int saved = errno;
	if (fd >= 0)
		close(fd);
	free(line);
	if (w != len || sync < 0)
		return set_err(err, errlen, -1, "%s: cannot record a bounce: %s", b->path,
			       strerror(saved ? saved : EIO));
	return apply(b, &e) < 0 ? set_err(err, errlen, -1, "out of memory") : 0;
}

int bounces_each_suppressed(const char *state_dir, int soft_limit,
			    void (*fn)(void *arg, const struct bounce_entry *e),
			    void *arg, char *err, size_t errlen)
{
	struct bounces b;
	memset(&b, 0, sizeof b);
	b.soft_limit = soft_limit > 0 ? soft_limit : 1;
	if (asprintf(&b.path, "%s/bounces.log", state_dir) < 0)
		return set_err(err, errlen, -1, "out of memory");
	int rc = load(&b, fn, arg, err, errlen);
	bounces_close(&b);
	return rc;
}

void bounces_close(struct bounces *b)
{
	free(b->path);
	addrset_free(&b->suppressed);
	for (size_t i = 0; i < b->nsoft; i++)
		free(b->soft_addr[i]);
	free(b->soft_addr);
	free(b->soft_n);
	memset(b, 0, sizeof *b);
}
