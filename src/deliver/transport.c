#include "deliver/transport.h"
#include "util/buf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

struct transport {
	const struct transport_ops *ops;
	void *impl;
};

int transport_new(struct transport **out, const struct transport_ops *ops, void *impl,
		  char *err, size_t errlen)
{
	struct transport *t = calloc(1, sizeof *t);
	if (!t) {
		ops->close(impl);
		return set_err(err, errlen, -1, "out of memory");
	}
	t->ops = ops;
	t->impl = impl;
	*out = t;
	return 0;
}

/* ---- SMTP: impl is the smtp_pool ----------------------------------------- */

static int smtp_idle(void *p) { return smtp_pool_idle(p); }
static int smtp_busy(void *p) { return smtp_pool_busy(p); }

static int smtp_submit(void *p, const char *from, const char *rcpt, const char *data, size_t len,
		       void *tag, char *err, size_t errlen)
{
	/* Over the relay's SIZE every reader would get a 552 for what is the
	 * sender's message: stop before the first, blaming nobody. */
	long max = smtp_pool_size_max(p);
	if (max > 0 && len > (size_t)max)
		return set_err(err, errlen, EX_DATAERR, "the message to %s is %zu bytes, and the relay "
			       "takes at most %ld (its EHLO SIZE): make it smaller (fewer or smaller "
			       "attachments and images), or raise the relay's limit (Postfix: "
			       "message_size_limit)", rcpt, len, max);
	if (smtp_pool_start(p, from, rcpt, data, len, tag) < 0)
		return set_err(err, errlen, EX_SOFTWARE, "libcurl refused a transfer");
	return 0;
}

static int smtp_collect(void *p, double timeout, transport_done_fn done, void *arg)
{
	return smtp_pool_run(p, timeout, done, arg);
}

static int smtp_probe(void *p, struct smtp_result *r) { return smtp_pool_probe(p, r); }
static void smtp_halt(void *p) { smtp_pool_halt(p); }
static void smtp_close(void *p) { smtp_pool_free(p); }

static const struct transport_ops smtp_ops = {smtp_idle, smtp_busy, smtp_submit, smtp_collect,
					      smtp_probe, smtp_halt, smtp_close};

int transport_smtp(struct transport **out, const struct smtp_opts *o, int connections,
		   int depth, char *err, size_t errlen)
{
	struct smtp_pool *pool;
	if (smtp_pool_new(&pool, o, connections, depth, err, errlen) < 0)
		return -1;
	return transport_new(out, &smtp_ops, pool, err, errlen);
}

/* ---- dry run ------------------------------------------------------------- */

/* A dry run writes a message the moment it is handed over; its result
 * (the tag) waits here for the next collect, as an SMTP result would. */
struct dir {
	char *dir;
	long seq;
	void **done;
	size_t ndone, capdone;
};

static int dir_idle(void *impl) { (void)impl; return 1; }
static int dir_busy(void *impl) { return (int)((struct dir *)impl)->ndone; }

static int dir_submit(void *impl, const char *from, const char *rcpt, const char *data,
		      size_t len, void *tag, char *err, size_t errlen)
{
	struct dir *t = impl;
	(void)from;
	char name[400];
	char safe[330];
	size_t k = 0;
	/* The address as a file name: no directory separators, no control
	 * characters. */
	for (const char *p = rcpt; *p && k + 1 < sizeof safe; p++)
		safe[k++] = (*p == '/' || (unsigned char)*p < 0x21 || *p == 0x7f) ? '_' : *p;
	safe[k] = '\0';
	snprintf(name, sizeof name, "%s/%06ld-%s.eml", t->dir, ++t->seq, safe);
	int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return set_err(err, errlen, EX_CANTCREAT, "%s: %s", name, strerror(errno));
	ssize_t w = write(fd, data, len);
	int saved = errno;
	if (close(fd) < 0 || w != (ssize_t)len)
		return set_err(err, errlen, EX_CANTCREAT, "%s: %s", name,
			       strerror(w < 0 ? saved : EIO));
	if (t->ndone == t->capdone) {
		size_t nc = t->capdone ? t->capdone * 2 : 8;
		void **nd = realloc(t->done, nc * sizeof *nd);
		if (!nd)
			return set_err(err, errlen, EX_SOFTWARE, "out of memory");
		t->done = nd;
		t->capdone = nc;
	}
	t->done[t->ndone++] = tag;
	return 0;
}

static int dir_collect(void *impl, double timeout, transport_done_fn done, void *arg)
{
	struct dir *t = impl;
	(void)timeout;
	size_t n = t->ndone;
	struct smtp_result res = {.cls = SMTP_OK, .code = 250};
	snprintf(res.text, sizeof res.text, "dry run");
	/* done() may submit again: take the batch first. */
	t->ndone = 0;
	for (size_t i = 0; i < n; i++)
		done(arg, t->done[i], &res);
	return (int)n;
}

static int dir_probe(void *impl, struct smtp_result *r)
{
	(void)impl;
	(void)r;
	return 0;
}

static void dir_halt(void *impl) { (void)impl; }

static void dir_close(void *impl)
{
	struct dir *t = impl;
	free(t->dir);
	free(t->done);
	free(t);
}

static const struct transport_ops dir_ops = {dir_idle, dir_busy, dir_submit, dir_collect,
					     dir_probe, dir_halt, dir_close};

int transport_dir(struct transport **out, const char *dir, char *err, size_t errlen)
{
	struct dir *t = calloc(1, sizeof *t);
	if (!t || !(t->dir = strdup(dir))) {
		free(t);
		return set_err(err, errlen, -1, "out of memory");
	}
	return transport_new(out, &dir_ops, t, err, errlen);
}

/* ---- the interface ------------------------------------------------------- */

int transport_idle(struct transport *t) { return t->ops->idle(t->impl); }
int transport_busy(struct transport *t) { return t->ops->busy(t->impl); }

int transport_submit(struct transport *t, const char *mail_from, const char *rcpt,
		     const char *data, size_t len, void *tag, char *err, size_t errlen)
{
	return t->ops->submit(t->impl, mail_from, rcpt, data, len, tag, err, errlen);
}

int transport_collect(struct transport *t, double timeout, transport_done_fn done, void *arg)
{
	return t->ops->collect(t->impl, timeout, done, arg);
}

int transport_probe(struct transport *t, struct smtp_result *r)
{
	return t->ops->probe(t->impl, r);
}

void transport_halt(struct transport *t) { t->ops->halt(t->impl); }

void transport_close(struct transport *t)
{
	if (!t)
		return;
	t->ops->close(t->impl);
	free(t);
}
