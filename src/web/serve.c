/* herald serve: the daemon, one request's life, shutdown (serve.h). */
#include "web/serve.h"
#include "web/web.h"
#include "web/archive.h"
#include "web/guard.h"
#include "web/page.h"
#include "mailbox/unsubscribe.h"
#include "input/subs_edit.h"
#include "state/state.h"
#include "util/addrset.h"
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* A request target is at most this long (414 beyond): a query string
 * of FORM_MAX_TEXT and a path. */
#define TARGET_MAX (FORM_MAX_TEXT + 256)

/* One request, from its request line (uri_cb) to its answer (done_cb);
 * only its own connection's thread touches it. */
struct req {
	char target[TARGET_MAX + 1];
	int target_too_long;
	int started;
	struct buf body;
	int body_too_big;
	struct timespec t0;
	int status;
	char method[8];
	char path[128];
	char who[80];
	char client[INET6_ADDRSTRLEN];
};

static double since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void warnf(const struct web_server *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void warnf(const struct web_server *s, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (s->o->warn)
		s->o->warn(s->o->arg, msg);
}

/* libmicrohttpd's own messages name no client ("Connection was closed
 * by remote side with incomplete request."), and a flood of slow clients
 * makes one per connection: each text is said at most once a minute,
 * with how often it came since. */
static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
	struct web_server *s = cls;
	char msg[512], line[600];
	vsnprintf(msg, sizeof msg, fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	long long now = guard_now();
	pthread_mutex_lock(&s->said_mu);
	struct web_said *w = NULL, *oldest = &s->said[0];
	for (size_t i = 0; !w && i < WEB_SAID; i++) {
		if (!strcmp(s->said[i].text, msg))
			w = &s->said[i];
		else if (s->said[i].at < oldest->at)
			oldest = &s->said[i];
	}
	int quiet = w && w->at && now - (w->at - 1) < GUARD_LOG_EVERY_MS;
	if (quiet)
		w->more++;
	else {
		if (!w) {
			w = oldest;
			snprintf(w->text, sizeof w->text, "%s", msg);
			w->more = 0;
		}
		if (w->more)
			snprintf(line, sizeof line, "serve: %s (%lu more like it in the last minute)", msg, w->more);
		else
			snprintf(line, sizeof line, "serve: %s", msg);
		w->at = now + 1;
		w->more = 0;
	}
	pthread_mutex_unlock(&s->said_mu);
	if (!quiet)
		warnf(s, "%s", line);
}

/* The connection's entry in the guard (guard.h), or NULL. */
static struct guard_conn *conn_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return ci ? ci->socket_context : NULL;
}

static void *uri_cb(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct web_server *s = cls;
	struct req *r = calloc(1, sizeof *r);
	pthread_mutex_lock(&s->mu);
	s->inflight++;
	pthread_mutex_unlock(&s->mu);
	if (!r)
		return NULL;
	clock_gettime(CLOCK_MONOTONIC, &r->t0);
	guard_phase(&s->guard, conn_of(c), GUARD_READING, guard_now());
	size_t n = strlen(uri);
	r->target_too_long = n > TARGET_MAX;
	snprintf(r->target, sizeof r->target, "%s", r->target_too_long ? "/" : uri);
	return r;
}

/* The log line: never the query (it holds the address and the token). */
static void done_cb(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode why)
{
	struct web_server *s = cls;
	struct req *r = *con_cls;
	struct guard_conn *gc = conn_of(c);
	/* A request line: for a request whose headers came (one that never
	 * got that far is no request, and a client opening connections
	 * that send half a request would fill the log), and not for a
	 * connection closed at its deadline, told once a minute (guard.c). */
	if (r && r->started && !guard_was_reaped(&s->guard, gc)) {
		char when[32], line[512];
		state_time(time(NULL), when);
		snprintf(line, sizeof line, "%s %s %s %s %d %.1fms%s%s%s", when,
			 r->client[0] ? r->client : "-", r->method[0] ? r->method : "-",
			 r->path[0] ? r->path : "-", r->status, since(&r->t0), r->who[0] ? " " : "",
			 r->who, why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection lost)");
		if (s->o->log)
			s->o->log(s->o->arg, line);
	}
	guard_phase(&s->guard, gc, GUARD_IDLE, guard_now());
	if (r) {
		buf_free(&r->body);
		free(r);
		*con_cls = NULL;
	}
	pthread_mutex_lock(&s->mu);
	if (--s->inflight == 0)
		pthread_cond_broadcast(&s->idle);
	pthread_mutex_unlock(&s->mu);
}

void web_page(const struct web_server *s, struct web_resp *p, int status, const char *title,
	      const char *body_html)
{
	p->status = status;
	if (!body_html) {
		p->status = 500;
		title = "Server error";
		body_html = "<p>The server is short of memory just now. Please try again in a minute.</p>\n";
	}
	buf_reset(&p->body);
	if (page_render(&p->body, title, s->cfg->list_name, body_html) < 0)
		p->status = 500;
}

static int is_trusted(const struct web_server *s, const char *ip)
{
	for (size_t i = 0; i < s->cfg->web.n_trusted_proxies; i++)
		if (!strcmp(s->cfg->web.trusted_proxies[i], ip))
			return 1;
	return 0;
}

static void peer_ip(const struct sockaddr *sa, char *out, size_t len)
{
	snprintf(out, len, "-");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)len);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)len);
}

/* A trusted proxy's connections carry every reader: not capped per
 * client (the proxy's own limits apply there), only in all. */
static int peer_trusted(const struct web_server *s, const struct sockaddr *sa)
{
	char ip[INET6_ADDRSTRLEN];
	peer_ip(sa, ip, sizeof ip);
	return is_trusted(s, ip);
}

static enum MHD_Result accept_cb(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct web_server *s = cls;
	return guard_admit(&s->guard, sa, peer_trusted(s, sa), guard_now()) ? MHD_YES : MHD_NO;
}

static void conn_cb(void *cls, struct MHD_Connection *c, void **ctx,
		    enum MHD_ConnectionNotificationCode code)
{
	struct web_server *s = cls;
	if (code != MHD_CONNECTION_NOTIFY_STARTED) {
		guard_close(&s->guard, *ctx);
		*ctx = NULL;
		return;
	}
	const union MHD_ConnectionInfo *ai = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const union MHD_ConnectionInfo *fi = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	const struct sockaddr *sa = ai ? ai->client_addr : NULL;
	*ctx = guard_open(&s->guard, sa, fi ? fi->connect_fd : -1, peer_trusted(s, sa), guard_now());
	if (!*ctx && fi) /* out of memory: not counted, so not kept */
		shutdown(fi->connect_fd, SHUT_RDWR);
}

/* The client: the peer, unless the peer is a trusted proxy; then the
 * rightmost X-Forwarded-For entry that is not one (entries further left
 * are whatever the client chose to send). */
static void client_of(const struct web_server *s, struct MHD_Connection *c, char *out, size_t len)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	peer_ip(ci ? ci->client_addr : NULL, out, len);
	const char *xff = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For");
	if (!xff || !is_trusted(s, out))
		return;
	char list[1024];
	snprintf(list, sizeof list, "%s", xff);
	for (;;) {
		char *comma = strrchr(list, ',');
		char *ip = comma ? comma + 1 : list;
		while (*ip == ' ')
			ip++;
		ip[strcspn(ip, " ")] = '\0';
		unsigned char bin[16];
		if (inet_pton(strchr(ip, ':') ? AF_INET6 : AF_INET, ip, bin) != 1)
			return; /* not an address: keep the last one believed */
		if (strlen(ip) >= len)
			return;
		memcpy(out, ip, strlen(ip) + 1);
		if (!comma || !is_trusted(s, ip))
			return;
		*comma = '\0';
	}
}

static enum MHD_Result answer(struct web_server *s, struct MHD_Connection *c, struct req *r,
			      struct web_resp *p)
{
	r->status = p->status;
	snprintf(r->who, sizeof r->who, "%s", p->who);
	struct MHD_Response *resp = MHD_create_response_from_buffer(p->body.len, p->body.p,
								    MHD_RESPMEM_MUST_COPY);
	buf_free(&p->body);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", p->type ? p->type : "text/html; charset=utf-8");
	char csp[sizeof s->csp + 40];
	snprintf(csp, sizeof csp, "%s%s", s->csp, p->images ? "; " ARCHIVE_IMG_SRC : "");
	MHD_add_response_header(resp, "Content-Security-Policy", csp);
	MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(resp, "X-Frame-Options", "DENY");
	/* The URL holds the reader's address and token: no Referer, no cache. */
	MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (p->allow)
		MHD_add_response_header(resp, "Allow", p->allow);
	enum MHD_Result ok = MHD_queue_response(c, (unsigned)p->status, resp);
	MHD_destroy_response(resp);
	return ok;
}

static void route(struct web_server *s, struct MHD_Connection *c, struct req *r, struct web_resp *p)
{
	struct web_req q = {.method = r->method, .client = r->client};
	const char *query;
	char why[128];
	int k = r->target_too_long ? FORM_TOO_BIG : form_target(r->target, r->path, sizeof r->path, &query);
	if (k == FORM_TOO_BIG) {
		web_page(s, p, 414, "Address too long", "<p>This address is too long to be a link herald made.</p>\n");
		return;
	}
	if (k == FORM_OK && (k = form_parse(&q.query, query, strlen(query), why, sizeof why)) == FORM_TOO_BIG) {
		web_page(s, p, 414, "Address too long", "<p>This address is too long to be a link herald made.</p>\n");
		return;
	}
	if (k) {
		web_page(s, p, 400, "Bad request", "<p>This address is malformed. Copy the whole link from the mail and try again.</p>\n");
		return;
	}
	size_t pl = strlen(s->prefix);
	q.path = pl && !strncmp(r->path, s->prefix, pl) && r->path[pl] == '/' ? r->path + pl : r->path;
	if (strcmp(r->method, "GET") && strcmp(r->method, "HEAD") && strcmp(r->method, "POST")) {
		p->allow = "GET, HEAD, POST";
		web_page(s, p, 405, "Method not allowed", "<p>Only GET and POST are answered here.</p>\n");
		return;
	}
	if (r->body_too_big) {
		web_page(s, p, 413, "Too much data", "<p>That is more than a form here sends.</p>\n");
		return;
	}
	q.body = r->body.p ? r->body.p : "";
	q.body_len = r->body.len;
	q.content_type = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
	if (!strcmp(q.path, "/unsubscribe")) {
		webunsub_route(s, &q, p);
		return;
	}
	if (s->cfg->web.signup && (!strcmp(q.path, "/subscribe") || !strcmp(q.path, "/confirm"))) {
		signup_route(s, &q, p);
		return;
	}
	if (s->cfg->web.archive && (!strcmp(q.path, "/archive") || !strncmp(q.path, "/archive/", 9))) {
		archive_route(s, &q, p);
		return;
	}
	web_page(s, p, 404, "Not found", "<p>There is no page at this address.</p>\n");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct web_server *s = cls;
	struct req *r = *con_cls;
	if (!r)
		return MHD_NO; /* out of memory in uri_cb: drop the connection */
	if (!r->started) {
		r->started = 1;
		snprintf(r->method, sizeof r->method, "%s", strlen(method) < sizeof r->method ? method : "OTHER");
		client_of(s, c, r->client, sizeof r->client);
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->body_too_big && r->body.len + *upload_size > FORM_MAX_TEXT)
			r->body_too_big = 1;
		if (!r->body_too_big && buf_add(&r->body, upload, *upload_size) < 0)
			return MHD_NO;
		*upload_size = 0;
		return MHD_YES;
	}
	struct guard_conn *gc = conn_of(c);
	guard_phase(&s->guard, gc, GUARD_WORKING, guard_now());
	struct web_resp p = {0};
	route(s, c, r, &p);
	enum MHD_Result ok = answer(s, c, r, &p);
	guard_phase(&s->guard, gc, GUARD_WRITING, guard_now());
	return ok;
}

/* Applies what list.log holds to the list, the last line for an address
 * winning (listlog_fold): what a kill between the log line and the list
 * rewrite left undone. */
struct replay {
	struct web_server *s;
	struct listlog_fold fold;
	int oom;
};

static void replay_entry(void *arg, const struct listlog_entry *e)
{
	struct replay *rp = arg;
	if (webunsub_note(rp->s, e, 1) < 0 || listlog_fold_add(&rp->fold, e) < 0)
		rp->oom = 1;
}

static void on_state_warn(void *arg, const char *msg)
{
	warnf(arg, "%s", msg);
}

/* One kind of the replayed lines into the list; how many changed it. */
static long replay_apply(struct web_server *s, struct replay *rp, enum listlog_action which,
			 const char *logpath)
{
	const struct listlog_fold *f = &rp->fold;
	const char **a = calloc(f->n + 1, sizeof *a), **nm = calloc(f->n + 1, sizeof *nm);
	enum subs_edit_result *res = calloc(f->n + 1, sizeof *res);
	size_t k = 0;
	long changed = 0;
	for (size_t i = 0; a && nm && i < f->n; i++)
		if (f->row[i].action == which) {
			a[k] = f->row[i].addr;
			nm[k++] = f->row[i].name;
		}
	char why[1024];
	int rc = !a || !nm || !res ? set_err(why, sizeof why, -1, "out of memory") : !k ? 0
	       : which == LISTLOG_UNSUBSCRIBE ? subs_edit_unsubscribe(s->cfg->subscribers, s->cfg->subs_delim, a, k, res, why, sizeof why)
	       : subs_edit_subscribe(s->cfg->subscribers, s->cfg->subs_delim, a, nm, k, res, why, sizeof why);
	if (rc < 0)
		warnf(s, "%s; what %s holds is applied when it can be (send honours it anyway)", why, logpath);
	for (size_t i = 0; rc == 0 && i < k; i++)
		changed += res[i] == SUBS_EDIT_CHANGED;
	free(a);
	free(nm);
	free(res);
	return changed;
}

static int replay(struct web_server *s, char *err, size_t errlen)
{
	/* s->follow stays for webunsub_gone: the lines after these. */
	struct listlog_follow *f = &s->follow;
	struct replay rp = {.s = s};
	listlog_fold_init(&rp.fold, 1);
	struct statefile_warn w = {on_state_warn, s};
	if (listlog_follow_init(f, s->cfg->state_dir, err, errlen) < 0)
		return WEB_FAIL;
	int rc = listlog_follow_poll(f, replay_entry, &rp, &w, err, errlen) < 0 ? WEB_STATE : WEB_OK;
	if (!rc && rp.oom)
		rc = set_err(err, errlen, WEB_FAIL, "out of memory");
	long un = rc ? 0 : replay_apply(s, &rp, LISTLOG_UNSUBSCRIBE, f->path);
	long sub = rc ? 0 : replay_apply(s, &rp, LISTLOG_SUBSCRIBE, f->path);
	if (un)
		warnf(s, "%s: %ld unsubscribe%s from %s applied (herald serve had stopped before)",
		      s->cfg->subscribers, un, un == 1 ? "" : "s", f->path);
	if (sub)
		warnf(s, "%s: %ld signup%s from %s applied (herald serve had stopped before)",
		      s->cfg->subscribers, sub, sub == 1 ? "" : "s", f->path);
	listlog_fold_free(&rp.fold);
	return rc;
}

static struct MHD_Daemon *start(struct web_server *s, char *err, size_t errlen)
{
	const struct config *cfg = s->cfg;
	struct sockaddr_storage ss = {0};
	int v6 = strchr(cfg->web.host, ':') != NULL;
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)cfg->web.port);
		inet_pton(AF_INET6, cfg->web.host, &a->sin6_addr);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)cfg->web.port);
		inet_pton(AF_INET, cfg->web.host, &a->sin_addr);
	}
	/* poll(), not select(): a descriptor past FD_SETSIZE (1024) is
	 * fine with web.connections above it. */
	unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
			 MHD_USE_POLL | MHD_USE_ITC | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
	struct MHD_Daemon *d = MHD_start_daemon(
		flags, (uint16_t)cfg->web.port, accept_cb, s, handler, s,
		MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, s, /* first, or MHD prints */
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_URI_LOG_CALLBACK, uri_cb, s,
		MHD_OPTION_NOTIFY_COMPLETED, done_cb, s,
		MHD_OPTION_NOTIFY_CONNECTION, conn_cb, s,
		/* The guard refuses at s->guard.limit (and says so once a
		 * minute); libmicrohttpd's own limit, which logs every
		 * refusal, is above it and never reached. */
		MHD_OPTION_CONNECTION_LIMIT, s->guard.limit + 64,
		/* Idle connections; the guard's deadline covers a client that
		 * is never idle for long but never done either. */
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_REQUEST_SECONDS,
		/* Room for a request line of TARGET_MAX split into its many
		 * arguments (MHD parses them whether we use them or not), so
		 * an overlong one gets our 414 rather than a dropped
		 * connection; a longer one gets MHD's 431. */
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
		MHD_OPTION_END);
	if (!d)
		set_err(err, errlen, WEB_LISTEN, "web.listen: cannot listen on %s (%s): in use, or not an address of this machine",
			cfg->web.listen, strerror(errno));
	return d;
}

/* Stop taking connections, let the requests under way be answered
 * (bounded), then stop. */
static void drain(struct web_server *s, struct MHD_Daemon *d)
{
	MHD_socket fd = MHD_quiesce_daemon(d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += WEB_DRAIN_SECONDS;
	pthread_mutex_lock(&s->mu);
	while (s->inflight > 0)
		if (pthread_cond_timedwait(&s->idle, &s->mu, &until) == ETIMEDOUT)
			break;
	int left = s->inflight;
	pthread_mutex_unlock(&s->mu);
	if (left)
		warnf(s, "serve: %d request%s still under way after %d s; stopping anyway", left,
		      left == 1 ? "" : "s", WEB_DRAIN_SECONDS);
	MHD_stop_daemon(d);
}

/* web.connections, as far as the descriptors allow: the soft limit is
 * raised towards the hard one, and what is left after a reserve for
 * list.log, the list, the archive's files and a relay is the bound. */
static unsigned connection_limit(const struct config *cfg)
{
	unsigned want = (unsigned)cfg->web.connections;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return want;
	rlim_t need = (rlim_t)want + 128;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		want = rl.rlim_cur > 192 ? (unsigned)(rl.rlim_cur - 128) : 64;
	return want;
}

static void serve_loop(struct web_server *s, struct MHD_Daemon *d)
{
	const struct web_opts *o = s->o;
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (o->ready)
		o->ready(o->arg, di ? di->port : s->cfg->web.port);
	while (!o->stop(o->arg)) {
		struct timespec t = {0, 100 * 1000 * 1000};
		nanosleep(&t, NULL);
		guard_reap(&s->guard, guard_now());
	}
	drain(s, d);
}

int web_serve(const struct config *cfg, const struct web_opts *o, char *err, size_t errlen)
{
	struct web_server s = {.cfg = cfg, .o = o, .prefix = ""};
	char secret_err[512];
	if (config_secret(cfg, &s.secret, secret_err, sizeof secret_err) < 0)
		return set_err(err, errlen, WEB_CONFIG, "%s", secret_err);
	if (page_csp(s.csp, sizeof s.csp) < 0)
		return set_err(err, errlen, WEB_FAIL, "cannot hash the page style (GnuTLS)");
	/* base_url's path: the proxy may pass requests on with it. */
	const char *bu = cfg->web.base_url;
	const char *slash = bu ? strchr(strstr(bu, "://") + 3, '/') : NULL;
	s.prefix = slash ? slash : "";
	int k = cfg->web.signup ? config_password(cfg, &s.password, err, errlen) : 0;
	if (k)
		return k == CONFIG_TEMP ? WEB_LISTEN : WEB_CONFIG;
	struct statefile_warn w = {on_state_warn, &s};
	if (listlog_open(&s.log, cfg->state_dir, &w, err, errlen) < 0) {
		secret_free(&s.password);
		return WEB_STATE;
	}
	if (signup_open(&s, &w, err, errlen) < 0) {
		signup_close(&s);
		listlog_close(&s.log);
		secret_free(&s.password);
		return WEB_STATE;
	}
	pthread_mutex_init(&s.mu, NULL);
	pthread_mutex_init(&s.list_mu, NULL);
	pthread_mutex_init(&s.sig_mu, NULL);
	pthread_cond_init(&s.idle, NULL);
	pthread_mutex_init(&s.said_mu, NULL);
	pthread_mutex_init(&s.follow_mu, NULL);
	int rc = guard_init(&s.guard, connection_limit(cfg), (unsigned)cfg->web.connections_per_client,
			    WEB_REQUEST_SECONDS, on_state_warn, &s) < 0
		 ? set_err(err, errlen, WEB_FAIL, "out of memory") : replay(&s, err, errlen);
	struct MHD_Daemon *d = rc ? NULL : start(&s, err, errlen);
	if (d)
		serve_loop(&s, d);
	else if (!rc)
		rc = WEB_LISTEN;
	guard_free(&s.guard);
	pthread_mutex_destroy(&s.said_mu);
	pthread_mutex_destroy(&s.follow_mu);
	listlog_follow_free(&s.follow);
	addrset_free(&s.last);
	pthread_cond_destroy(&s.idle);
	pthread_mutex_destroy(&s.list_mu);
	pthread_mutex_destroy(&s.sig_mu);
	signup_close(&s);
	secret_free(&s.password);
	pthread_mutex_destroy(&s.mu);
	for (size_t i = 0; i < s.npending; i++)
		free(s.pending[i]);
	free(s.pending);
	listlog_close(&s.log);
	return rc;
}

int web_exitcode(int rc)
{
	return rc == WEB_OK ? EX_OK : rc == WEB_CONFIG ? EX_CONFIG : rc == WEB_LISTEN ? EX_UNAVAILABLE
	     : rc == WEB_STATE ? EX_CANTCREAT : EX_OSERR;
}
