#include "mailbox/scan.h"
#include "state/bounces.h"
#include "util/buf.h"
#include "mailbox/dsn.h"
#include "state/journal.h"
#include "state/statefile.h"
#include "mailbox/unsubscribe.h"
#include "input/subs_edit.h"
#include <errno.h>
#include <fcntl.h>
#include <libetpan/libetpan.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
#include <sysexits.h>

/* Messages per batch: bounded memory, and a failure half-way through a
 * big mailbox keeps what the earlier batches did. */
#define BATCH 200

/* One line for the note callback: the same formatting as a state-file
 * warning, so one function does it (a macro: varargs cannot be passed on). */
#define note(cb, ...) \
	statefile_warnf(&(struct statefile_warn){(cb) ? (cb)->note : NULL, (cb) ? (cb)->arg : NULL}, \
			__VA_ARGS__)

static int map_mailbox_rc(int rc)
{
	return rc == MAILBOX_USAGE ? SCAN_USAGE : rc == MAILBOX_NOFILE ? SCAN_NOFILE : SCAN_MAILBOX;
}

/* ---- bounces ------------------------------------------------------------ */

struct item {
	size_t idx;
	struct dsn_report r;
	char addr[320];      /* from the journal, by Message-ID */
	char slug[128];
	time_t delivered;
};

struct latest {
	char slug[128];
	time_t when;
};

struct resolve {
	struct item *items;
	size_t n;
	chash *msgids;       /* Message-ID -> item index + 1 */
	chash *addrs;        /* lower-cased address -> latest index + 1 */
	struct latest *lat;
	size_t nlat, caplat;
	int oom;
};

static void want_addr(struct resolve *rs, const char *addr)
{
	char *lower = str_lower(addr);
	if (!lower) {
		rs->oom = 1;
		return;
	}
	chashdatum k = {lower, (unsigned)strlen(lower)}, v;
	if (chash_get(rs->addrs, &k, &v) != 0) {
		if (rs->nlat == rs->caplat) {
			size_t nc = rs->caplat ? rs->caplat * 2 : 64;
			struct latest *nl = realloc(rs->lat, nc * sizeof *nl);
			if (!nl) {
				rs->oom = 1;
				free(lower);
				return;
			}
			rs->lat = nl;
			rs->caplat = nc;
		}
		memset(&rs->lat[rs->nlat], 0, sizeof rs->lat[rs->nlat]);
		rs->lat[rs->nlat].when = -1;
		v.data = (void *)(uintptr_t)(++rs->nlat);
		v.len = 0;
		if (chash_set(rs->addrs, &k, &v, NULL) < 0)
			rs->oom = 1;
	}
	free(lower);
}

static struct latest *latest_of(const struct resolve *rs, const char *addr)
{
	char *lower = str_lower(addr);
	chashdatum k = {lower, lower ? (unsigned)strlen(lower) : 0}, v;
	struct latest *l = NULL;
	if (lower && chash_get(rs->addrs, &k, &v) == 0)
		l = &rs->lat[(uintptr_t)v.data - 1];
	free(lower);
	return l;
}

static int on_delivery(void *arg, const char *slug, const struct journal_line *jl)
{
	struct resolve *rs = arg;
	chashdatum k = {(void *)jl->msgid, (unsigned)strlen(jl->msgid)}, v;
	if (*jl->msgid && chash_get(rs->msgids, &k, &v) == 0) {
		struct item *it = &rs->items[(uintptr_t)v.data - 1];
		snprintf(it->addr, sizeof it->addr, "%s", jl->addr);
		snprintf(it->slug, sizeof it->slug, "%s", slug);
		it->delivered = jl->when;
	}
	struct latest *l = latest_of(rs, jl->addr);
	if (l && jl->when > l->when) {
		l->when = jl->when;
		snprintf(l->slug, sizeof l->slug, "%s", slug);
	}
	return 0;
}

static enum bounce_kind bkind(enum dsn_kind k)
{
	return k == DSN_HARD ? BOUNCE_HARD : k == DSN_SOFT ? BOUNCE_SOFT : BOUNCE_COMPLAINT;
}

/* Which bucket of the summary one message goes in (scan_stats). */
static void count(struct scan_stats *st, const struct dsn_report *r, int added, int dups,
		  int delays)
{
	if (added & (1 << DSN_COMPLAINT))
		st->complaints++;
	else if (added & (1 << DSN_HARD))
		st->hard++;
	else if (added & (1 << DSN_SOFT))
		st->soft++;
	else if (dups)
		st->duplicates++;
	else if (delays)
		st->delayed++;
	else if (r->format == DSN_TEXT || r->unnamed)
		st->unresolved++;
	else
		st->no_failure++;
}

/* Logs what one message says. Returns 1 if it was acted on (so may be
 * deleted or moved), 0 if it is left for a human, -1 on a state error. */
static int log_item(struct bounces *b, const struct resolve *rs, struct item *it,
		    const struct scan_cb *cb, struct scan_stats *st, char *err, size_t errlen)
{
	struct dsn_report *r = &it->r;
	if (r->format == DSN_NOT_BOUNCE) {
		st->ignored++;
		return 0;
	}
	/* The reader we sent to, when our own records say: the journal by
	 * Message-ID, else the VERP address. Forwarding makes the report's
	 * recipient someone else; the reader is who we suppress. */
	const char *tied = it->addr[0] ? it->addr : r->verp_addr[0] ? r->verp_addr : NULL;
	time_t now = time(NULL);
	time_t when = r->date > 0 && r->date <= now ? r->date : now;
	if (it->addr[0] && when < it->delivered)
		when = it->delivered;
	int added = 0, dups = 0, delays = 0, any = 0;
	for (size_t i = 0; i < r->nrcpt; i++) {
		struct dsn_rcpt *x = &r->rcpt[i];
		if (x->kind == DSN_DELAYED) {
			delays++;
			note(cb, "%s: delayed, not a bounce (%s)", x->addr, x->text);
			continue;
		}
		if (tied) {
			/* One message to one reader: one line, for the matching
			 * recipient if the report has it, else the first. */
			size_t pick = i;
			for (size_t j = 0; j < r->nrcpt; j++)
				if (r->rcpt[j].kind != DSN_DELAYED && !strcasecmp(r->rcpt[j].addr, tied))
					pick = j;
			if (any)
				break;
			x = &r->rcpt[pick];
		}
		any = 1;
		const char *who = tied ? tied : x->addr;
		char text[800];
		if (strcasecmp(who, x->addr))
			snprintf(text, sizeof text, "final recipient %s: %s", x->addr, x->text);
		else
			snprintf(text, sizeof text, "%s", x->text);
		const struct latest *l = it->addr[0] ? NULL : latest_of(rs, who);
		const char *slug = it->addr[0] ? it->slug : l && l->when >= 0 ? l->slug : "-";
		/* Keyed by the report, not by the time: a report without a
		 * Date gets the scan's time, which a rescan after a crash
		 * between the log and the mark would not repeat. */
		int rc = bounces_add_once(b, when, who, bkind(x->kind), x->status, x->code, "dsn", slug,
					  text, r->report_id, err, errlen);
		if (rc < 0)
			return -1;
		if (rc == 1) {
			dups++;
			note(cb, "%s: %s %s already in the log", who, dsn_kind_name(x->kind), x->status);
			continue;
		}
		added |= 1 << x->kind;
		st->lines++;
		note(cb, "%s: %s %s (%s, post %s): %s", who, dsn_kind_name(x->kind),
		     x->status[0] ? x->status : "-", r->family, slug, text);
	}
	count(st, r, added, dups, delays);
	if (!added && !dups && !delays && (r->format == DSN_TEXT || r->unnamed)) {
		note(cb, "a %s bounce that names no reader we can use", r->family);
		return 0;
	}
	/* A report with nothing failed (delivered, relayed; a not-spam
	 * feedback report) is understood too: nothing to do. */
	return 1;
}

static void items_free(struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		dsn_free(&items[i].r);
}

static int bounce_batch(const struct config *cfg, struct mailbox *mb, struct bounces *b,
			size_t from, size_t to, const struct scan_cb *cb, struct scan_stats *st,
			char *err, size_t errlen)
{
	struct resolve rs;
	memset(&rs, 0, sizeof rs);
	rs.items = calloc(to - from, sizeof *rs.items);
	rs.msgids = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	rs.addrs = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	int rc = 0;
	if (!rs.items || !rs.msgids || !rs.addrs) {
		rc = set_err(err, errlen, SCAN_STATE, "out of memory");
		goto out;
	}
	for (size_t i = from; i < to; i++) {
		char *data;
		size_t len;
		if (mailbox_fetch(mb, i, &data, &len, err, errlen) < 0) {
			rc = SCAN_MAILBOX;
			goto out;
		}
		struct item *it = &rs.items[rs.n++];
		it->idx = i;
		int p = dsn_parse(data, len, cfg->bounce.return_path, &it->r, err, errlen);
		free(data);
		st->messages++;
		if (p < 0) {
			rc = SCAN_STATE;
			goto out;
		}
		if (it->r.orig_msgid[0]) {
			chashdatum k = {it->r.orig_msgid, (unsigned)strlen(it->r.orig_msgid)};
			chashdatum v = {(void *)(uintptr_t)rs.n, 0};
			if (chash_set(rs.msgids, &k, &v, NULL) < 0)
				rs.oom = 1;
		}
		if (it->r.verp_addr[0])
			want_addr(&rs, it->r.verp_addr);
		for (size_t j = 0; j < it->r.nrcpt; j++)
			want_addr(&rs, it->r.rcpt[j].addr);
	}
	if (rs.oom) {
		rc = set_err(err, errlen, SCAN_STATE, "out of memory");
		goto out;
	}
	if (journal_each_delivery(cfg->state_dir, on_delivery, &rs, err, errlen) < 0) {
		rc = SCAN_STATE;
		goto out;
	}
	for (size_t i = 0; i < rs.n; i++) {
		int acted = log_item(b, &rs, &rs.items[i], cb, st, err, errlen);
		if (acted < 0) {
			rc = SCAN_STATE;
			goto out;
		}
		/* Durable in the log: now the mark. */
		if (mailbox_done(mb, rs.items[i].idx, acted, err, errlen) < 0) {
			rc = SCAN_MAILBOX;
			goto out;
		}
	}
out:
	items_free(rs.items, rs.n);
	free(rs.items);
	free(rs.lat);
	if (rs.msgids)
		chash_free(rs.msgids);
	if (rs.addrs)
		chash_free(rs.addrs);
	return rc;
}

/* Opens the mailbox and hands its messages to batch, BATCH at a time. */
struct run {
	const struct config *cfg;
	struct bounces *b;
	const char *list, *secret;
	const struct scan_cb *cb;
	struct scan_stats *st;
};

static int bounce_run(struct run *r, struct mailbox *mb, size_t from, size_t to, char *err, size_t errlen)
{
	return bounce_batch(r->cfg, mb, r->b, from, to, r->cb, r->st, err, errlen);
}

static int run(struct run *r, const struct mailbox_opts *mo,
	       int (*batch)(struct run *, struct mailbox *, size_t, size_t, char *, size_t),
	       char *err, size_t errlen)
{
	struct mailbox *mb = NULL;
	struct statefile_warn w = {r->cb ? r->cb->warn : NULL, r->cb ? r->cb->arg : NULL};
	struct mailbox_opts o = *mo;
	o.warn = &w;
	int rc = mailbox_open(&mb, &o, err, errlen);
	if (rc)
		return map_mailbox_rc(rc);
	snprintf(r->st->action, sizeof r->st->action, "%s", mailbox_action(mb));
	size_t n = mailbox_count(mb);
	for (size_t from = 0; from < n && !rc; from += BATCH)
		rc = batch(r, mb, from, from + BATCH < n ? from + BATCH : n, err, errlen);
	char cerr[256] = "";
	if (mailbox_close(mb, cerr, sizeof cerr) < 0 && !rc)
		rc = set_err(err, errlen, SCAN_MAILBOX, "%s", cerr);
	return rc;
}

int scan_bounces(const struct config *cfg, const struct mailbox_opts *mo,
		 const struct scan_cb *cb, struct scan_stats *st, char *err,
		 size_t errlen)
{
	memset(st, 0, sizeof *st);
	int lock = state_lock(cfg->state_dir, STATE_LOCK_SCAN, err, errlen);
	if (lock == -2)
		config_name_setting(cfg, "state_dir", err, errlen);
	if (lock < 0)
		return SCAN_STATE;
	struct bounces b;
	int rc = SCAN_STATE;
	struct statefile_warn w = {cb ? cb->warn : NULL, cb ? cb->arg : NULL};
	if (bounces_open(&b, cfg->state_dir, cfg->bounce.soft_limit, &w, err, errlen) == 0) {
		struct run r = {cfg, &b, NULL, NULL, cb, st};
		rc = run(&r, mo, bounce_run, err, errlen);
		bounces_close(&b);
	}
	state_unlock(lock);
	return rc;
}

/* ---- unsubscribe requests ---------------------------------------------- */

static int unsub_batch(const struct config *cfg, struct mailbox *mb, const char *list,
		       const char *secret, size_t from, size_t to, const struct scan_cb *cb,
		       struct scan_stats *st, char *err, size_t errlen)
{
	size_t n = to - from;
	char **addrs = calloc(n, sizeof *addrs);
	int *which = calloc(n, sizeof *which); /* message -> addrs index, or -1 */
	enum subs_edit_result *res = calloc(n, sizeof *res);
	size_t na = 0;
	int rc = 0;
	if (!addrs || !which || !res) {
		rc = set_err(err, errlen, SCAN_STATE, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		char *data, addr[320], why[300];
		size_t len;
		which[i] = -1;
		if (mailbox_fetch(mb, from + i, &data, &len, err, errlen) < 0) {
			rc = SCAN_MAILBOX;
			goto out;
		}
		st->messages++;
		int k = unsub_parse_request(data, len, secret, addr, sizeof addr, why, sizeof why);
		free(data);
		if (k == UNSUB_FAIL) {
			rc = set_err(err, errlen, SCAN_STATE, "%s", why);
			goto out;
		}
		if (k == UNSUB_NONE) {
			st->ignored++;
			continue;
		}
		if (k == UNSUB_REFUSED) {
			st->refused++;
			note(cb, "refused: %s", why);
			continue;
		}
		for (size_t j = 0; j < na && which[i] < 0; j++)
			if (!strcasecmp(addrs[j], addr))
				which[i] = (int)j;
		if (which[i] < 0) {
			if (!(addrs[na] = strdup(addr))) {
				rc = set_err(err, errlen, SCAN_STATE, "out of memory");
				goto out;
			}
			which[i] = (int)na++;
		}
	}
	if (na) {
		int k = subs_edit_unsubscribe(list, cfg->subs_delim, (const char *const *)addrs, na, res, err, errlen);
		if (k) {
			rc = k == SUBS_EDIT_ERR_NOFILE ? SCAN_NOFILE : k == SUBS_EDIT_ERR_LIST ? SCAN_LIST : SCAN_STATE;
			goto out;
		}
		for (size_t j = 0; j < na; j++) {
			if (res[j] == SUBS_EDIT_CHANGED)
				st->unsubscribed++;
			else if (res[j] == SUBS_EDIT_ALREADY)
				st->already++;
			else
				st->not_listed++;
			note(cb, "%s: %s", addrs[j], res[j] == SUBS_EDIT_CHANGED ? "unsubscribed"
			     : res[j] == SUBS_EDIT_ALREADY ? "was already unsubscribed" : "not in the list");
		}
	}
	/* The list is renamed into place: now the marks. */
	for (size_t i = 0; i < n; i++)
		if (mailbox_done(mb, from + i, which[i] >= 0, err, errlen) < 0) {
			rc = SCAN_MAILBOX;
			goto out;
		}
out:
	for (size_t j = 0; addrs && j < na; j++)
		free(addrs[j]);
	free(addrs);
	free(which);
	free(res);
	return rc;
}

static int unsub_run(struct run *r, struct mailbox *mb, size_t from, size_t to, char *err,
		     size_t errlen)
{
	return unsub_batch(r->cfg, mb, r->list, r->secret, from, to, r->cb, r->st, err, errlen);
}

int scan_unsubscribes(const struct config *cfg, const struct mailbox_opts *mo,
		      const char *list, const struct scan_cb *cb,
		      struct scan_stats *st, char *err, size_t errlen)
{
	memset(st, 0, sizeof *st);
	const char *secret = NULL;
	char serr[300];
	/* Without the secret, requests that carry a token cannot be checked
	 * (they are refused); plain requests from the reader still work. */
	if (config_secret(cfg, &secret, serr, sizeof serr) < 0)
		secret = NULL;
	int lock = state_lock(cfg->state_dir, STATE_LOCK_SCAN, err, errlen);
	if (lock == -2)
		config_name_setting(cfg, "state_dir", err, errlen);
	if (lock < 0)
		return SCAN_STATE;
	struct run r = {cfg, NULL, list, secret, cb, st};
	int rc = run(&r, mo, unsub_run, err, errlen);
	state_unlock(lock);
	return rc;
}

int scan_exitcode(int rc)
{
	switch (rc) {
	case SCAN_OK: return EX_OK;
	case SCAN_USAGE: return EX_USAGE;
	case SCAN_CONFIG: return EX_CONFIG;
	case SCAN_NOFILE: return EX_NOINPUT;
	case SCAN_MAILBOX: return EX_UNAVAILABLE;
	case SCAN_LIST: return EX_DATAERR;
	default: return EX_CANTCREAT;
	}
}
