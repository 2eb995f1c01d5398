/* GET and POST /unsubscribe?e=EMAIL&t=TOKEN (web.h).
 *
 * GET shows one button and changes nothing: mail filters and link
 * scanners fetch every link in a message, and a GET that unsubscribed
 * would unsubscribe readers who never asked. POST is RFC 8058's one-click
 * request (body List-Unsubscribe=One-Click, which the page's button also
 * sends): recorded in list.log and synced, then applied to the list, then
 * answered. The token is the reader's HMAC (util/token.h), compared in
 * constant time; a bad one is 403 and changes nothing. */
#include "web/web.h"
#include "web/page.h"
#include "mailbox/unsubscribe.h"
#include "input/subs_edit.h"
#include "util/addr.h"
#include "util/token.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void say(const struct web_server *s, struct web_resp *p, int status, const char *title,
		const char *fmt_before, const char *value, const char *after)
{
	struct buf b = {0};
	int oom = buf_adds(&b, fmt_before);
	if (value)
		oom |= page_esc(&b, value);
	oom |= buf_adds(&b, after);
	web_page(s, p, status, title, oom ? NULL : buf_cstr(&b));
	buf_free(&b);
}

/* The request is in list.log already: a list that cannot be rewritten
 * now is rewritten by the next start (replay), and a send skips the
 * reader meanwhile. So the reader is told it worked either way. */
void webunsub_apply(struct web_server *s, const char *email)
{
	char *copy = strdup(email);
	pthread_mutex_lock(&s->mu);
	int queued = copy && array_grow(&s->pending, &s->cappending, s->npending,
					sizeof *s->pending, 16) == 0;
	if (queued)
		s->pending[s->npending++] = copy;
	unsigned long mine = ++s->queued;
	pthread_mutex_unlock(&s->mu);
	if (!queued) {
		free(copy);
		if (s->o->warn)
			s->o->warn(s->o->arg, "out of memory: the unsubscribe is in list.log and is applied at the next start");
		return;
	}
	pthread_mutex_lock(&s->list_mu);
	pthread_mutex_lock(&s->mu);
	char **batch = NULL;
	size_t n = 0;
	unsigned long upto = s->queued;
	if (s->applied < mine) {       /* not taken by another's batch yet */
		batch = s->pending;
		n = s->npending;
		s->pending = NULL;
		s->npending = s->cappending = 0;
	}
	pthread_mutex_unlock(&s->mu);
	enum subs_edit_result *res = n ? calloc(n, sizeof *res) : NULL;
	char err[1024];
	if (n && (!res || subs_edit_unsubscribe(s->cfg->subscribers, s->cfg->subs_delim, (const char *const *)batch, n, res, err,
				     sizeof err) < 0) && s->o->warn)
		s->o->warn(s->o->arg, res ? err : "out of memory: the unsubscribes are in list.log and are applied at the next start");
	if (n) {
		pthread_mutex_lock(&s->mu);
		s->applied = upto;
		pthread_mutex_unlock(&s->mu);
	}
	pthread_mutex_unlock(&s->list_mu);
	for (size_t i = 0; i < n; i++)
		free(batch[i]);
	free(batch);
	free(res);
}

int webunsub_note(struct web_server *s, const struct listlog_entry *e, int replayed)
{
	return addrset_set(&s->last, e->addr, e->action == LISTLOG_SUBSCRIBE ? 2 : replayed ? 3 : 1);
}

static void note_entry(void *arg, const struct listlog_entry *e)
{
	struct web_server *s = arg;
	if (webunsub_note(s, e, 0) < 0)
		s->last_bad = 1;
}

static void on_warn(void *arg, const char *msg)
{
	const struct web_server *s = arg;
	if (s->o->warn)
		s->o->warn(s->o->arg, msg);
}

/* 1 when list.log's last line for email is an unsubscribe, read up to
 * now (lines another process added too); 0 otherwise, or when that
 * cannot be told (then the request is recorded as a new one). */
static int gone(struct web_server *s, const char *email)
{
	char err[512];
	struct statefile_warn w = {on_warn, s};
	pthread_mutex_lock(&s->follow_mu);
	unsigned long resets = s->follow.resets;
	int k = s->last_bad ? -1 : listlog_follow_poll(&s->follow, note_entry, s, &w, err, sizeof err);
	/* Read again from the start: a line was taken back (its request
	 * answered 503, listlog.h), and last may still say what it said. */
	if (s->follow.resets != resets)
		s->last_bad = 1;
	/* A line that could not be noted (no memory) leaves the set behind
	 * list.log for good: from then on every request is a new one. */
	int rc = k >= 0 && !s->last_bad && addrset_get(&s->last, email) == 1;
	pthread_mutex_unlock(&s->follow_mu);
	return rc;
}

void webunsub_route(struct web_server *s, const struct web_req *q, struct web_resp *p)
{
	const char *e = form_get(&q->query, "e"), *t = form_get(&q->query, "t");
	char why[100];
	if (!e || !t || !*e || !*t || addr_valid(e, why, sizeof why) < 0) {
		web_page(s, p, 400, "Incomplete link",
				"<p>This unsubscribe link is incomplete. Copy the whole link from the mail, "
				"or reply to the mail and ask to be removed.</p>\n");
		return;
	}
	const char *at = strrchr(e, '@');
	snprintf(p->who, sizeof p->who, "%.70s", at);
	int ok = token_check(s->secret, e, t);
	if (ok != 1) {
		web_page(s, p, ok < 0 ? 500 : 403, "Link not valid",
				"<p>This unsubscribe link is not valid: it was changed, or it was made for "
				"another address. Use the link in the mail you received, or reply to the mail "
				"and ask to be removed.</p>\n");
		return;
	}
	if (strcmp(q->method, "POST")) {
		say(s, p, 200, "Unsubscribe", "<p>Stop sending mail to <strong>", e,
			   "</strong>?</p>\n<form method=\"post\">\n"
			   "<button type=\"submit\" name=\"List-Unsubscribe\" value=\"One-Click\">Unsubscribe</button>\n"
			   "</form>\n");
		return;
	}
	struct form body;
	const char *v;
	if (form_parse_body(&body, q->content_type, q->body, q->body_len, why, sizeof why) ||
	    !(v = form_get(&body, "List-Unsubscribe")) || strcmp(v, "One-Click")) {
		web_page(s, p, 400, "Bad request",
				"<p>An unsubscribe request says <code>List-Unsubscribe=One-Click</code> "
				"(RFC 8058). Open the link in a browser and press the button.</p>\n");
		return;
	}
	/* Again (a mail client retrying, a reader pressing twice): list.log
	 * says so already, and the list was rewritten for it or is at the
	 * next start; another line and a pass over 200,000 rows add nothing. */
	if (gone(s, e)) {
		say(s, p, 200, "Unsubscribed", "<p><strong>", e,
		    "</strong> is unsubscribed and gets no more of these mails.</p>\n");
		return;
	}
	char err[512];
	if (listlog_append(&s->log, time(NULL), LISTLOG_UNSUBSCRIBE, e, NULL, "web", err, sizeof err) < 0) {
		if (s->o->warn)
			s->o->warn(s->o->arg, err);
		web_page(s, p, 503, "Try again",
				"<p>The request could not be recorded just now, so nothing changed. "
				"Please try again in a few minutes.</p>\n");
		return;
	}
	webunsub_apply(s, e);
	say(s, p, 200, "Unsubscribed", "<p><strong>", e,
	    "</strong> is unsubscribed and gets no more of these mails.</p>\n");
}
