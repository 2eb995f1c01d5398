/* Signup with double opt-in (web.h): GET/POST /subscribe, GET/POST
 * /confirm?e=EMAIL&n=NAME&t=TOKEN.
 *
 * POST /subscribe mails a confirmation link and answers "check your
 * inbox"; the reader is not on the list until the link is confirmed. The
 * answer is the same whether a mail went or not (a subscribed address
 * gets none, an address mailed within the hour gets none, a filled
 * honeypot field gets none), so the form says nothing about who is
 * subscribed. The link carries a token bound to the address and name
 * with an expiry (util/token.h), and GET /confirm only shows a button:
 * link scanners and mail filters fetch every link in a message, and a
 * GET that subscribed would confirm signups nobody made. The POST is
 * appended to list.log (synced) and then applied to the list, like an
 * unsubscribe. */
#include "web/web.h"
#include "web/page.h"
#include "compose/confirm.h"
#include "compose/encode.h"
#include "compose/template.h"
#include "deliver/notify.h"
#include "input/subscribers.h"
#include "mailbox/unsubscribe.h"
#include "input/subs_edit.h"
#include "util/addr.h"
#include "util/token.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CONFIRM_HOURS 48
#define PER_IP_PER_HOUR 10
/* The limit tables (util/recent.h) hold this many clients and addresses
 * of the last hour; past it the oldest client goes, and no address is
 * mailed until the oldest one's hour is over. */
#define LIMIT_ENTRIES 100000
/* unsub_at holds times less this (addrset values stop at INT32_MAX). */
#define SIGNUP_EPOCH 1577836800L  /* 2020-01-01 */

static const char form_html[] =
	"<form method=\"post\" action=\"subscribe\">\n"
	"<label for=\"email\">Email address</label>\n"
	"<input type=\"email\" id=\"email\" name=\"email\" required maxlength=\"254\" autocomplete=\"email\">\n"
	"<label for=\"name\">Name (optional)</label>\n"
	"<input type=\"text\" id=\"name\" name=\"name\" maxlength=\"100\" autocomplete=\"name\">\n"
	/* The honeypot: hidden from people (and screen readers), filled in
	 * by form-filling bots. */
	"<div class=\"hp\" aria-hidden=\"true\"><label for=\"website\">Leave this empty</label>\n"
	"<input type=\"text\" id=\"website\" name=\"website\" tabindex=\"-1\" autocomplete=\"off\"></div>\n"
	"<button type=\"submit\">Subscribe</button>\n</form>\n";

static void show_form(const struct web_server *s, struct web_resp *p, int status, const char *note)
{
	struct buf b = {0};
	int rc = 0;
	if (note) {
		rc |= buf_adds(&b, "<p><strong>");
		rc |= page_esc(&b, note);
		rc |= buf_adds(&b, "</strong></p>\n");
	}
	rc |= buf_adds(&b, "<p>Get each issue by mail. We send you one mail to confirm first.</p>\n");
	rc |= buf_adds(&b, form_html);
	web_page(s, p, status, "Subscribe", rc ? NULL : buf_cstr(&b));
	buf_free(&b);
}

/* Is email a subscribed row of the list already? */
static int subscribed(const struct web_server *s, const char *email)
{
	struct subs_reader *r;
	struct subs_row row;
	char why[512];
	if (subs_open(&r, s->cfg->subscribers, s->cfg->subs_delim, why, sizeof why))
		return 0;
	int k, found = 0;
	while (!found && (k = subs_next(r, &row, why, sizeof why)) != SUBS_END &&
	       k != SUBS_FATAL && k != SUBS_NOFILE)
		found = k == SUBS_ROW && !strcasecmp(row.email, email);
	subs_close(r);
	return found;
}

/* The per-client key: an IPv6 client counts by its /64 (one host gets a
 * whole /64 and picks any address in it), an IPv4-mapped one as IPv4. */
static void client_key(const char *client, char *out, size_t outlen)
{
	struct in6_addr a;
	char text[INET6_ADDRSTRLEN];
	if (!strchr(client, ':') || inet_pton(AF_INET6, client, &a) != 1) {
		snprintf(out, outlen, "%s", client);
	} else if (IN6_IS_ADDR_V4MAPPED(&a)) {
		snprintf(out, outlen, "%s", inet_ntop(AF_INET, a.s6_addr + 12, text, sizeof text)
					    ? text : client);
	} else {
		memset(a.s6_addr + 8, 0, 8);
		snprintf(out, outlen, "%s/64", inet_ntop(AF_INET6, &a, text, sizeof text) ? text : client);
	}
}

/* The abuse limits: -1 this client has signed up too often this hour, 0
 * no mail to this address now, 1 mail it (and it is counted). */
static int allowed(struct web_server *s, const char *client, const char *email)
{
	time_t now = time(NULL), when;
	long count;
	char key[INET6_ADDRSTRLEN + 8];
	client_key(client, key, sizeof key);
	pthread_mutex_lock(&s->sig_mu);
	int known = recent_get(&s->per_ip, key, now, &when, &count);
	int rc = known && count >= PER_IP_PER_HOUR ? -1 : 1;
	/* Out of memory: no mail (the limit must hold). */
	if (rc > 0 && recent_set(&s->per_ip, key, now, known ? when : now, known ? count + 1 : 1))
		rc = 0;
	if (rc > 0 && recent_get(&s->per_addr, email, now, &when, &count))
		rc = 0;
	int full = rc > 0 ? recent_set(&s->per_addr, email, now, now, 1) : 0;
	pthread_mutex_unlock(&s->sig_mu);
	char why[160];
	snprintf(why, sizeof why, full > 0
		 ? "signup: %d addresses were mailed a confirmation this hour; none more until the oldest is an hour old"
		 : "signup: out of memory; no confirmation mail sent", LIMIT_ENTRIES);
	if (full && s->o->warn)
		s->o->warn(s->o->arg, why);
	return full ? 0 : rc;
}

/* May ask again at once (its mail did not go). */
static void forget_addr(struct web_server *s, const char *email)
{
	time_t now = time(NULL);
	pthread_mutex_lock(&s->sig_mu);
	(void)recent_set(&s->per_addr, email, now, now - 3600, 0);
	pthread_mutex_unlock(&s->sig_mu);
}

static int seed_addr(void *arg, time_t when, const char *addr)
{
	struct web_server *s = arg;
	return recent_set(&s->per_addr, addr, time(NULL), when, 1) < 0 ? -1 : 0;
}

int signup_open(struct web_server *s, const struct statefile_warn *w, char *err, size_t errlen)
{
	recent_init(&s->per_ip, LIMIT_ENTRIES, 3600, 1);
	recent_init(&s->per_addr, LIMIT_ENTRIES, 3600, 0);
	memset(&s->unsub_at, 0, sizeof s->unsub_at);
	s->slog.fd = -1;
	s->slog.path = NULL;
	if (listlog_follow_init(&s->left, s->cfg->state_dir, err, errlen) < 0)
		return -1;
	if (!s->cfg->web.signup)
		return 0;
	return signuplog_open(&s->slog, s->cfg->state_dir, time(NULL) - 3600, seed_addr, s, w, err,
			      errlen);
}

void signup_close(struct web_server *s)
{
	recent_free(&s->per_ip);
	recent_free(&s->per_addr);
	addrset_free(&s->unsub_at);
	listlog_follow_free(&s->left);
	if (s->slog.fd >= 0 || s->slog.path)
		signuplog_close(&s->slog);
}

struct left_scan {
	struct web_server *s;
	int oom;
};

static void on_listlog(void *arg, const struct listlog_entry *e)
{
	struct left_scan *ls = arg;
	long v = (long)e->time - SIGNUP_EPOCH;
	/* The last unsubscribe; a signup after it does not make links made
	 * before it good again. */
	if (e->action == LISTLOG_UNSUBSCRIBE &&
	    addrset_set(&ls->s->unsub_at, e->addr, v > 0 ? v : 1) < 0)
		ls->oom = 1;
}

static void on_state_warn(void *arg, const char *msg)
{
	const struct web_server *s = arg;
	if (s->o->warn)
		s->o->warn(s->o->arg, msg);
}

/* Did email unsubscribe at or after `issued` (list.log)? 1, 0, or -1 when
 * list.log cannot be read. */
static int left_since(struct web_server *s, const char *email, long issued, char *err,
		      size_t errlen)
{
	struct statefile_warn w = {on_state_warn, s};
	struct left_scan ls = {s, 0};
	pthread_mutex_lock(&s->sig_mu);
	unsigned long resets = s->left.resets;
	int rc = listlog_follow_poll(&s->left, on_listlog, &ls, &w, err, errlen);
	if (rc >= 0 && s->left.resets != resets) {
		/* A line was taken back (listlog.h): unsub_at may hold its
		 * time. Built again from what the file says now. */
		addrset_free(&s->unsub_at);
		s->left.off = 0, s->left.lastlen = 0, s->left.lineno = 0;
		rc = listlog_follow_poll(&s->left, on_listlog, &ls, &w, err, errlen);
	}
	long at = addrset_get(&s->unsub_at, email);
	/* A line not stored is an unsubscribe not known: this request is
	 * refused, and the next reads the file again from its start. */
	if (ls.oom)
		s->left.off = 0, s->left.lastlen = 0;
	pthread_mutex_unlock(&s->sig_mu);
	if (rc < 0 || ls.oom)
		return rc < 0 ? -1 : set_err(err, errlen, -1, "out of memory");
	return at && at + SIGNUP_EPOCH >= issued;
}

static int mail_link(struct web_server *s, const char *email, const char *name, char *err,
		     size_t errlen)
{
	char tok[TOKEN_CONFIRM_MAX];
	time_t now = time(NULL);
	if (token_confirm_make(s->secret, email, name, (long)now + CONFIRM_HOURS * 3600, tok) < 0)
		return set_err(err, errlen, -1, "cannot make a token (GnuTLS)");
	struct buf link = {0}, msg = {0};
	int rc = 0;
	rc |= buf_printf(&link, "%s/confirm?e=", s->cfg->web.base_url);
	rc |= tmpl_escape(&link, email, strlen(email), TMPL_URL);
	rc |= buf_adds(&link, "&n=");
	rc |= tmpl_escape(&link, name, strlen(name), TMPL_URL);
	rc |= buf_printf(&link, "&t=%s", tok);
	/* A link cut short would confirm nobody: no mail rather than that. */
	if (rc)
		rc = set_err(err, errlen, -1, "out of memory");
	else
		rc = confirm_build(s->cfg, email, name, buf_cstr(&link), CONFIRM_HOURS, now, &msg, err, errlen);
	if (rc == 0)
		rc = notify_send(s->cfg, s->password, email, msg.p, msg.len, err, errlen);
	buf_free(&link);
	buf_free(&msg);
	return rc;
}

static void subscribe_post(struct web_server *s, const struct web_req *q, struct web_resp *p)
{
	struct form f;
	char why[128];
	if (form_parse_body(&f, q->content_type, q->body, q->body_len, why, sizeof why)) {
		show_form(s, p, 400, "The form could not be read; please try again.");
		return;
	}
	const char *email = form_get(&f, "email"), *name = form_get(&f, "name");
	const char *hp = form_get(&f, "website");
	if (!name)
		name = "";
	if (!email || strlen(email) > 254 || addr_valid(email, why, sizeof why) < 0) {
		show_form(s, p, 400, "That does not look like an email address.");
		return;
	}
	/* An address literal aims the confirmation at a host the form's
	 * user picks; a leading = + - is what a spreadsheet opening the
	 * list takes for a formula (the name is defused in the CSV instead:
	 * an address changed would be another address). */
	if (addr_is_literal(email) || strchr("=+-", email[0])) {
		show_form(s, p, 400, "Please use an address at a domain name, such as you@example.org.");
		return;
	}
	if (strlen(name) > 100 || !enc_header_safe(name) || utf8_unsafe_char(name, 1)) {
		show_form(s, p, 400, "The name is too long or holds characters we cannot use.");
		return;
	}
	snprintf(p->who, sizeof p->who, "%.70s", strrchr(email, '@'));
	int ok = hp && *hp ? 0 : allowed(s, q->client, email);
	if (ok < 0) {
		web_page(s, p, 429, "Too many signups",
				"<p>Too many signups from your network this hour. Please try again later.</p>\n");
		return;
	}
	char err[1024];
	/* Recorded before the mail goes, so a restart keeps the limit; when
	 * it cannot be, no mail. */
	if (ok > 0 && !subscribed(s, email) &&
	    (signuplog_append(&s->slog, time(NULL), email, err, sizeof err) < 0 ||
	     mail_link(s, email, name, err, sizeof err) < 0)) {
		if (s->o->warn)
			s->o->warn(s->o->arg, err);
		forget_addr(s, email);
		web_page(s, p, 503, "Try again later",
				"<p>The confirmation mail could not be sent just now. Please try again later.</p>\n");
		return;
	}
	web_page(s, p, 200, "Check your inbox",
		 "<p>If that address is not subscribed yet, a mail with a confirmation link is on its way. "
		 "Open it and press the button to start getting the newsletter.</p>\n");
}

static void confirm(struct web_server *s, const struct web_req *q, struct web_resp *p)
{
	const char *e = form_get(&q->query, "e"), *n = form_get(&q->query, "n");
	const char *t = form_get(&q->query, "t");
	char why[100];
	if (!e || !t || !n || addr_valid(e, why, sizeof why) < 0 || !enc_header_safe(n) || utf8_unsafe_char(n, 1)) {
		web_page(s, p, 400, "Incomplete link",
				"<p>This confirmation link is incomplete. Copy the whole link from the mail.</p>\n");
		return;
	}
	snprintf(p->who, sizeof p->who, "%.70s", strrchr(e, '@'));
	int ok = token_confirm_check(s->secret, e, n, t, (long)time(NULL));
	if (ok == 2) {
		web_page(s, p, 410, "Link expired",
				"<p>This confirmation link has expired. Sign up again to get a new one.</p>\n");
		return;
	}
	if (ok != 1) {
		web_page(s, p, ok < 0 ? 500 : 403, "Link not valid",
				"<p>This confirmation link is not valid. Use the link in the mail you received.</p>\n");
		return;
	}
	/* A link mailed before the address's last unsubscribe must not undo
	 * it. Tokens carry their expiry, made CONFIRM_HOURS after they were,
	 * so this holds for links mailed before this check existed too. */
	char err[512];
	int gone = left_since(s, e, token_confirm_expires(t) - CONFIRM_HOURS * 3600L, err, sizeof err);
	if (gone < 0 && s->o->warn)
		s->o->warn(s->o->arg, err);
	if (gone < 0) {
		web_page(s, p, 503, "Try again",
			 "<p>The confirmation could not be checked just now. Please try again in a few minutes.</p>\n");
		return;
	}
	if (gone) {
		show_form(s, p, 410, "This confirmation link was mailed before the address was "
			  "unsubscribed, so it no longer works. To subscribe again, sign up below.");
		return;
	}
	struct buf b = {0};
	int oom = 0;
	if (strcmp(q->method, "POST")) {
		oom |= buf_adds(&b, "<p>Subscribe <strong>");
		oom |= page_esc(&b, e);
		oom |= buf_adds(&b, "</strong>?</p>\n<form method=\"post\">\n"
				    "<button type=\"submit\" name=\"confirm\" value=\"yes\">Confirm</button>\n</form>\n");
		web_page(s, p, 200, "Confirm your subscription", oom ? NULL : buf_cstr(&b));
		buf_free(&b);
		return;
	}
	if (listlog_append(&s->log, time(NULL), LISTLOG_SUBSCRIBE, e, n, "web", err, sizeof err) < 0) {
		if (s->o->warn)
			s->o->warn(s->o->arg, err);
		web_page(s, p, 503, "Try again",
				"<p>The confirmation could not be recorded just now. Please try again in a few minutes.</p>\n");
		return;
	}
	const char *addrs[] = {e}, *names[] = {n};
	enum subs_edit_result res;
	pthread_mutex_lock(&s->list_mu);
	if (subs_edit_subscribe(s->cfg->subscribers, s->cfg->subs_delim, addrs, names, 1, &res, err, sizeof err) < 0 && s->o->warn)
		s->o->warn(s->o->arg, err);
	pthread_mutex_unlock(&s->list_mu);
	oom |= buf_adds(&b, "<p><strong>");
	oom |= page_esc(&b, e);
	oom |= buf_adds(&b, "</strong> is subscribed. The next issue comes to this address.</p>\n");
	/* The subscription stands (list.log has it) even when the page
	 * cannot be written. */
	web_page(s, p, 200, "Subscribed", oom ? "<p>You are subscribed.</p>\n" : buf_cstr(&b));
	buf_free(&b);
}

void signup_route(struct web_server *s, const struct web_req *q, struct web_resp *p)
{
	if (!strcmp(q->path, "/confirm")) {
		confirm(s, q, p);
		return;
	}
	if (strcmp(q->method, "POST")) {
		show_form(s, p, 200, NULL);
		return;
	}
	subscribe_post(s, q, p);
}
