#include "deliver/transport.h"
#include "util/buf.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

struct ops {
	int (*idle)(struct transport *t);
	int (*busy)(struct transport *t);
	int (*submit)(struct transport *t, const char *from, const char *rcpt,
		      const char *data, size_t len, void *tag, char *err, size_t errlen);
	int (*collect)(struct transport *t, double timeout, transport_done_fn done, void *arg);
	int (*probe)(struct transport *t, struct smtp_result *r);
	void (*halt)(struct transport *t);
	void (*close)(struct transport *t);
};

/* A dry run writes a message the moment it is handed over; its result
 * waits here for the next collect, as an SMTP result would. */
struct dir_done {
	void *tag;
};

struct transport {
	const struct ops *ops;
	struct smtp_pool *pool;    /* smtp */
	char *dir;                 /* dry run */
	long seq;
	struct dir_done *done;
	size_t ndone, capdone;
};

/* ---- SMTP ---------------------------------------------------------------- */

static int smtp_idle(struct transport *t) { return smtp_pool_idle(t->pool); }
static int smtp_busy(struct transport *t) { return smtp_pool_busy(t->pool); }

static int smtp_submit(struct transport *t, const char *from, const char *rcpt,
		       const char *data, size_t len, void *tag, char *err, size_t errlen)
{
	/* Over the relay's SIZE every reader would get a 552 for what is the
	 * sender's message: stop before the first, blaming nobody. */
	long max = smtp_pool_size_max(t->pool);
	if (max > 0 && len > (size_t)max)
		return set_err(err, errlen, EX_DATAERR, "the message to %s is %zu bytes, and the relay "
			       "takes at most %ld (its EHLO SIZE): make it smaller (fewer or smaller "
			       "attachments and images), or raise the relay's limit (Postfix: "
			       "message_size_limit)", rcpt, len, max);
	if (smtp_pool_start(t->pool, from, rcpt, data, len, tag) < 0)
		return set_err(err, errlen, EX_SOFTWARE, "libcurl refused a transfer");
	return 0;
}

static int smtp_collect(struct transport *t, double timeout, transport_done_fn done, void *arg)
{
	return smtp_pool_run(t->pool, timeout, done, arg);
}

static int smtp_probe(struct transport *t, struct smtp_result *r)
{
	return smtp_pool_probe(t->pool, r);
}

static void smtp_halt(struct transport *t) { smtp_pool_halt(t->pool); }
static void smtp_close(struct transport *t) { smtp_pool_free(t->pool); }

static const struct ops smtp_ops = {smtp_idle, smtp_busy, smtp_submit, smtp_collect,
				    smtp_probe, smtp_halt, smtp_close};

int transport_smtp(struct transport **out, const struct smtp_opts *o, int connections,
		   int depth, char *err, size_t errlen)
{
	struct transport *t = calloc(1, sizeof *t);
	if (!t)
		return set_err(err, errlen, -1, "out of memory");
	if (smtp_pool_new(&t->pool, o, connections, depth, err, errlen) < 0) {
		free(t);
		return -1;
	}
	t->ops = &smtp_ops;
	*out = t;
	return 0;
}

/* ---- dry run ------------------------------------------------------------- */

static int dir_idle(struct transport *t) { (void)t; return 1; }
static int dir_busy(struct transport *t) { return (int)t->ndone; }

static int dir_submit(struct transport *t, const char *from, const char *rcpt,
		      const char *data, size_t len, void *tag, char *err, size_t errlen)
{
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
		struct dir_done *nd = realloc(t->done, nc * sizeof *nd);
		if (!nd)
			return set_err(err, errlen, EX_SOFTWARE, "out of memory");
		t->done = nd;
		t->capdone = nc;
	}
	t->done[t->ndone++].tag = tag;
	return 0;
}

static int dir_collect(struct transport *t, double timeout, transport_done_fn done, void *arg)
{
	(void)timeout;
	size_t n = t->ndone;
	struct smtp_result res = {.cls = SMTP_OK, .code = 250};
	snprintf(res.text, sizeof res.text, "dry run");
	/* done() may submit again: take the batch first. */
	t->ndone = 0;
	for (size_t i = 0; i < n; i++)
		done(arg, t->done[i].tag, &res);
	return (int)n;
}

static int dir_probe(struct transport *t, struct smtp_result *r)
{
	(void)t;
	(void)r;
	return 0;
}

static void dir_halt(struct transport *t) { (void)t; }
static void dir_close(struct transport *t) { free(t->dir); free(t->done); }

static const struct ops dir_ops = {dir_idle, dir_busy, dir_submit, dir_collect,
				   dir_probe, dir_halt, dir_close};

int transport_dir(struct transport **out, const char *dir, char *err, size_t errlen)
{
	struct transport *t = calloc(1, sizeof *t);
	if (!t || !(t->dir = strdup(dir))) {
		free(t);
		return set_err(err, errlen, -1, "out of memory");
	}
	t->ops = &dir_ops;
	*out = t;
	return 0;
}

/* ---- the interface ------------------------------------------------------- */

int transport_idle(struct transport *t) { return t->ops->idle(t); }
int transport_busy(struct transport *t) { return t->ops->busy(t); }

int transport_submit(struct transport *t, const char *mail_from, const char *rcpt,
		     const char *data, size_t len, void *tag, char *err, size_t errlen)
{
	return t->ops->submit(t, mail_from, rcpt, data, len, tag, err, errlen);
}

int transport_collect(struct transport *t, double timeout, transport_done_fn done, void *arg)
{
	return t->ops->collect(t, timeout, done, arg);
}

int transport_probe(struct transport *t, struct smtp_result *r)
{
	return t->ops->probe(t, r);
}

void transport_halt(struct transport *t) { t->ops->halt(t); }

void transport_close(struct transport *t)
{
	if (!t)
		return;
	t->ops->close(t);
	free(t);
}
