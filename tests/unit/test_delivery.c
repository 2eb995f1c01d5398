/* Unit tests for the send policy (deliver/outcome.c through delivery_run)
 * with a scripted transport instead of SMTP servers: delivery_opts.
 * transport_make hands each relay a fake whose every transaction answers
 * what the test scripted for that address (OK, a 4xx, a 5xx, a lost
 * connection, no reply to the dot, a refusal of the sender) and whose
 * probe answers what the test scripted for the relay. The fake runs on
 * the send loop's thread: no threads, no sleeps (retry delays are 0).
 *
 * The config, the post and the list are real files in a mkdtemp
 * directory, read by the real loaders; what the run wrote (the journal,
 * bounces.log) is read back from the state directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "compose/post.h"
#include "deliver/delivery.h"
#include "deliver/transport.h"
#include "input/config.h"
#include "state/listlog.h"

#define MAXA 64     /* addresses a test scripts or sees */
#define MAXR 8      /* results scripted per address */
#define MAXP 8      /* probe answers per relay */

/* What one answer of the fake is. */
enum act {
	A_OK, A_TEMP, A_TEMP_SENDER, A_PERM, A_PERM_SENDER, A_CONN, A_CONN_CONNECT,
	A_UNCERTAIN, A_FATAL, A_LEAVE
};

struct script {
	char addr[64];
	enum act act[MAXR];
	int n;
};

struct world;

/* One relay's fake: the transactions handed over and not yet collected. */
struct fake {
	struct world *w;
	int idx;
	struct smtp_opts so;   /* accept and admit hooks, as the pool has */
	int cap;               /* connections * depth */
	void *tag[128];
	char rcpt[128][64];
	int n;
	int halted;
};

struct world {
	char dir[64];
	char state[128];
	char list[160];
	char conf[160];
	char post[160];
	struct script s[MAXA];
	int ns;
	enum act relay_default[MAXR];   /* per relay: what unscripted get */
	enum act probe[MAXR][MAXP];     /* per relay: probe answers, then OK */
	int nprobe[MAXR], probed[MAXR];
	/* What the fake saw: per relay and address, transactions tried. */
	char seen[MAXA][64];
	int tries[MAXR][MAXA];
	int nseen;
	int made;
	struct config cfg;
	struct post p;
	int have_cfg, have_post;
	struct delivery_opts o;
	struct delivery_stats st;
	char err[2048];
};

static int seen_ix(struct world *w, const char *a)
{
	for (int i = 0; i < w->nseen; i++)
		if (!strcmp(w->seen[i], a))
			return i;
	assert_true(w->nseen < MAXA);
	snprintf(w->seen[w->nseen], sizeof w->seen[0], "%s", a);
	return w->nseen++;
}

/* Transactions relay k tried for address a (k -1: all relays). */
static int tries(struct world *w, int k, const char *a)
{
	int i = seen_ix(w, a), n = 0;
	for (int r = 0; r < MAXR; r++)
		if (k < 0 || k == r)
			n += w->tries[r][i];
	return n;
}

static int total_tries(struct world *w)
{
	int n = 0;
	for (int r = 0; r < MAXR; r++)
		for (int i = 0; i < w->nseen; i++)
			n += w->tries[r][i];
	return n;
}

static void script(struct world *w, const char *addr, int n, ...)
{
	struct script *s = &w->s[w->ns++];
	va_list ap;
	snprintf(s->addr, sizeof s->addr, "%s", addr);
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		s->act[i] = va_arg(ap, enum act);
	va_end(ap);
	s->n = n;
}

/* The next scripted answer for addr at relay k: its script's next, once
 * spent the relay's default. */
static enum act next_act(struct world *w, int k, const char *addr, int attempt)
{
	for (int i = 0; i < w->ns; i++)
		if (!strcmp(w->s[i].addr, addr))
			return attempt < w->s[i].n ? w->s[i].act[attempt] : w->s[i].act[w->s[i].n - 1];
	return w->relay_default[k];
}

static void fill_result(struct smtp_result *r, enum act a)
{
	memset(r, 0, sizeof *r);
	switch (a) {
	case A_OK:
		*r = (struct smtp_result){.cls = SMTP_OK, .stage = SMTP_STAGE_BODY, .code = 250};
		snprintf(r->text, sizeof r->text, "250 2.0.0 queued");
		break;
	case A_TEMP:
	case A_TEMP_SENDER:
		*r = (struct smtp_result){.cls = SMTP_TEMP, .stage = SMTP_STAGE_RCPT, .code = 450,
					  .sender_side = a == A_TEMP_SENDER};
		snprintf(r->status, sizeof r->status, "4.2.0");
		snprintf(r->text, sizeof r->text, "450 4.2.0 try later");
		break;
	case A_PERM:
		*r = (struct smtp_result){.cls = SMTP_PERM, .stage = SMTP_STAGE_RCPT, .code = 550};
		snprintf(r->status, sizeof r->status, "5.1.1");
		snprintf(r->text, sizeof r->text, "550 5.1.1 no such user");
		break;
	case A_PERM_SENDER:
		/* A refusal whose wording smtp.c did not see as the sender's. */
		*r = (struct smtp_result){.cls = SMTP_PERM, .stage = SMTP_STAGE_RCPT, .code = 554};
		snprintf(r->status, sizeof r->status, "5.7.1");
		snprintf(r->text, sizeof r->text, "554 5.7.1 go away");
		break;
	case A_CONN:
	case A_CONN_CONNECT:
		*r = (struct smtp_result){.cls = SMTP_CONN,
					  .stage = a == A_CONN ? SMTP_STAGE_MAIL : SMTP_STAGE_CONNECT};
		snprintf(r->text, sizeof r->text, "connection lost");
		break;
	case A_UNCERTAIN:
		*r = (struct smtp_result){.cls = SMTP_UNCERTAIN, .stage = SMTP_STAGE_BODY};
		snprintf(r->text, sizeof r->text, "no reply to the final dot");
		break;
	case A_FATAL:
		*r = (struct smtp_result){.cls = SMTP_FATAL, .stage = SMTP_STAGE_MAIL, .code = 550,
					  .sender_side = 1};
		snprintf(r->status, sizeof r->status, "5.7.1");
		snprintf(r->text, sizeof r->text, "550 5.7.1 sender rejected");
		break;
	case A_LEAVE:
		break;
	}
}

/* ---- the fake transport -------------------------------------------------- */

static int fake_idle(void *impl)
{
	struct fake *f = impl;
	return f->cap - f->n;
}

static int fake_busy(void *impl) { return ((struct fake *)impl)->n; }

static int fake_submit(void *impl, const char *from, const char *rcpt, const char *data,
		       size_t len, void *tag, char *err, size_t errlen)
{
	struct fake *f = impl;
	(void)from, (void)data, (void)len, (void)err, (void)errlen;
	assert_true(f->n < f->cap);
	f->tag[f->n] = tag;
	snprintf(f->rcpt[f->n], sizeof f->rcpt[0], "%s", rcpt);
	f->n++;
	return 0;
}

/* A reader who unsubscribes on the web right before their transaction:
 * the line lands in list.log as herald serve writes it. */
static void leave_now(struct world *w, const char *addr)
{
	struct listlog l;
	char err[256];
	assert_int_equal(listlog_open(&l, w->state, NULL, err, sizeof err), 0);
	assert_int_equal(listlog_append(&l, time(NULL), LISTLOG_UNSUBSCRIBE, addr, "", "web", err,
					sizeof err), 0);
	listlog_close(&l);
}

/* Each transaction handed over, answered in order, as a pool whose
 * connections all finished would report them. */
static int fake_collect(void *impl, double timeout, transport_done_fn done, void *arg)
{
	struct fake *f = impl;
	struct world *w = f->w;
	(void)timeout;
	int n = f->n;
	void *tag[128];
	char rcpt[128][64];
	memcpy(tag, f->tag, sizeof tag);
	memcpy(rcpt, f->rcpt, sizeof rcpt);
	f->n = 0; /* done() may submit again */
	for (int i = 0; i < n; i++) {
		struct smtp_result r;
		int ix = seen_ix(w, rcpt[i]);
		enum act a = next_act(w, f->idx, rcpt[i], tries(w, -1, rcpt[i]));
		if (a == A_LEAVE)
			leave_now(w, rcpt[i]);
		if (f->halted) {
			memset(&r, 0, sizeof r);
			r.cls = SMTP_NOT_TRIED;
		} else if (f->so.admit && !f->so.admit(f->so.admit_arg, tag[i])) {
			memset(&r, 0, sizeof r);
			r.cls = SMTP_WITHDRAWN;
		} else {
			w->tries[f->idx][ix]++;
			fill_result(&r, a == A_LEAVE ? A_OK : a);
			if ((r.cls == SMTP_OK || r.cls == SMTP_UNCERTAIN) && f->so.accept &&
			    f->so.accept(f->so.accept_arg, tag[i], &r))
				f->halted = 1;
			if (r.cls == SMTP_FATAL)
				f->halted = 1; /* as smtp_pool_halt */
		}
		done(arg, tag[i], &r);
	}
	return n;
}

static int fake_probe(void *impl, struct smtp_result *r)
{
	struct fake *f = impl;
	struct world *w = f->w;
	int k = f->idx;
	if (w->probed[k] >= w->nprobe[k])
		return 0;
	enum act a = w->probe[k][w->probed[k]++];
	if (a == A_OK)
		return 0;
	fill_result(r, a);
	return -1;
}

static void fake_halt(void *impl) { ((struct fake *)impl)->halted = 1; }
static void fake_close(void *impl) { free(impl); }

static const struct transport_ops fake_ops = {fake_idle, fake_busy, fake_submit, fake_collect,
					      fake_probe, fake_halt, fake_close};

static int fake_make(void *arg, struct transport **out, const struct smtp_opts *so,
		     int connections, int depth, char *err, size_t errlen)
{
	struct world *w = arg;
	struct fake *f = calloc(1, sizeof *f);
	if (!f)
		return -1;
	f->w = w;
	f->idx = w->made++;
	f->so = *so;
	f->cap = connections * depth;
	return transport_new(out, &fake_ops, f, err, errlen);
}

/* ---- the files ----------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int setup(void **state)
{
	struct world *w = calloc(1, sizeof *w);
	if (!w)
		return -1;
	strcpy(w->dir, "/tmp/herald-deliv-XXXXXX");
	if (!mkdtemp(w->dir)) {
		free(w);
		return -1;
	}
	snprintf(w->state, sizeof w->state, "%s/state", w->dir);
	snprintf(w->list, sizeof w->list, "%s/list.csv", w->dir);
	snprintf(w->conf, sizeof w->conf, "%s/herald.conf", w->dir);
	snprintf(w->post, sizeof w->post, "%s/2026-01-05-issue.md", w->dir);
	setenv("HERALD_SECRET", "unit-test-secret", 1);
	*state = w;
	return 0;
}

static int teardown(void **state)
{
	struct world *w = *state;
	char cmd[200];
	if (w->have_post)
		post_free(&w->p);
	if (w->have_cfg)
		config_free(&w->cfg);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
	if (system(cmd) != 0)
		return -1;
	free(w);
	return 0;
}

/* The repository's templates, absolute (the config's paths are relative
 * to the config file): the test runs in tests/unit or the top. */
static const char *templates_dir(void)
{
	static char dir[1024];
	char cwd[900];
	assert_non_null(getcwd(cwd, sizeof cwd));
	snprintf(dir, sizeof dir, "%s/%s", cwd,
		 access("../../templates/default.html", R_OK) == 0 ? "../../templates" : "templates");
	return dir;
}

/* n readers r1@example.org ... rn@example.org; relays: the smtp setting
 * (one group, or a list). */
static void world_files(struct world *w, int n, const char *smtp, const char *extra)
{
	char text[8192], *p = text;
	p += sprintf(p, "email,name\n");
	for (int i = 1; i <= n; i++)
		p += sprintf(p, "r%d@example.org,Reader %d\n", i, i);
	write_file(w->list, text);
	write_file(w->post, "---\nsubject: Issue\ndate: 2026-01-05 08:00\n---\nHello {{name}}.\n");
	snprintf(text, sizeof text,
		 "from = \"Joy <joy@example.org>\";\n"
		 "list_id = \"Weekly <weekly.example.org>\";\n"
		 "subscribers = \"%s\";\n"
		 "templates = \"%s\";\n"
		 "state_dir = \"%s\";\n"
		 "unsubscribe = { url = \"https://example.org/u?e={{email}}&t={{token}}\";\n"
		 "  secret_env = \"HERALD_SECRET\"; };\n"
		 "retry = { attempts = 3; initial_delay = 0; max_delay = 0; };\n"
		 "smtp = %s;\n%s",
		 w->list, templates_dir(), w->state, smtp, extra ? extra : "");
	write_file(w->conf, text);
}

static const char *ONE = "{ url = \"smtp://127.0.0.1:9\"; starttls = \"never\"; connections = 1; }";
static const char *TWO =
	"( { url = \"smtp://127.0.0.1:9\"; name = \"a\"; starttls = \"never\"; connections = 1; },"
	"  { url = \"smtp://127.0.0.1:10\"; name = \"b\"; starttls = \"never\"; connections = 1; } )";

static int run(struct world *w)
{
	assert_int_equal(config_load(&w->cfg, w->conf, w->err, sizeof w->err), 0);
	w->have_cfg = 1;
	assert_int_equal(post_load(&w->p, w->post, 72, w->err, sizeof w->err), 0);
	w->have_post = 1;
	w->o.subscribers = w->list;
	w->o.rate = w->cfg.rate;
	w->o.transport_make = fake_make;
	w->o.transport_arg = w;
	int rc = delivery_run(&w->cfg, &w->p, &w->o, NULL, &w->st, w->err, sizeof w->err);
	if (rc)
		print_message("# exit %d: %s\n", rc, w->err);
	return rc;
}

/* Lines of state_dir/name holding every one of the words. */
static int lines_with(struct world *w, const char *name, const char *a, const char *b)
{
	char path[256], line[2048];
	snprintf(path, sizeof path, "%s/%s", w->state, name);
	FILE *f = fopen(path, "r");
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		n += strstr(line, a) && (!b || strstr(line, b));
	fclose(f);
	return n;
}

#define JOURNAL "2026-01-05-issue.journal"

/* ---- the tests ----------------------------------------------------------- */

/* A 550 after the relay took someone is the reader's: bounces.log, once,
 * and no second try. */
static void hard_bounce_logged_not_retried(void **state)
{
	struct world *w = *state;
	world_files(w, 3, ONE, NULL);
	script(w, "r2@example.org", 1, A_PERM);
	assert_int_equal(run(w), 0);
	assert_int_equal(w->st.sent, 2);
	assert_int_equal(w->st.bounced, 1);
	assert_int_equal(tries(w, -1, "r2@example.org"), 1);
	assert_int_equal(lines_with(w, "bounces.log", "r2@example.org", "hard"), 1);
	assert_int_equal(lines_with(w, JOURNAL, "r1@example.org", NULL), 1);
	assert_int_equal(lines_with(w, JOURNAL, "r2@example.org", NULL), 0);
}

/* A 4xx: tried retry.attempts times, then deferred (75) and a soft
 * bounce; one about the sending side defers without a soft bounce. */
static void temp_retried_then_deferred(void **state)
{
	struct world *w = *state;
	world_files(w, 3, ONE, NULL);
	script(w, "r2@example.org", 1, A_TEMP);
	script(w, "r3@example.org", 1, A_TEMP_SENDER);
	assert_int_equal(run(w), EX_TEMPFAIL);
	assert_int_equal(tries(w, -1, "r2@example.org"), 3);
	assert_int_equal(tries(w, -1, "r3@example.org"), 3);
	assert_int_equal(w->st.deferred, 2);
	assert_int_equal(w->st.retried, 4);
	assert_int_equal(w->st.sent, 1);
	assert_int_equal(lines_with(w, "bounces.log", "r2@example.org", "soft"), 1);
	assert_int_equal(lines_with(w, "bounces.log", "r3@example.org", NULL), 0);
}

/* Connections lost one after another: after 3 * connections +
 * retry.attempts of them the relay is down (69), the rest not tried. */
static void conn_streak_takes_relay_down(void **state)
{
	struct world *w = *state;
	world_files(w, 20, ONE, NULL);
	w->relay_default[0] = A_CONN;
	assert_int_equal(run(w), EX_UNAVAILABLE);
	assert_int_equal(w->st.sent, 0);
	/* conn_limit: 3 * 1 + 3 failures; the one more on the connection
	 * (depth 2) comes back not tried. */
	assert_int_equal(total_tries(w), 6);
	assert_true(w->st.not_attempted >= 17);
	assert_int_equal(lines_with(w, "bounces.log", "@", NULL), 0);
	assert_non_null(strstr(w->err, "connection lost"));
}

/* Two relays, one whose connections all fail: it is taken out, its
 * readers go to the other as they were (no deferral, no retry). */
static void down_relay_readers_move(void **state)
{
	struct world *w = *state;
	world_files(w, 10, TWO, NULL);
	w->relay_default[0] = A_CONN;
	w->relay_default[1] = A_OK;
	assert_int_equal(run(w), 0);
	assert_int_equal(w->st.sent, 10);
	assert_int_equal(w->st.deferred, 0);
	assert_int_equal(w->st.retried, 0);
	for (int i = 1; i <= 10; i++) {
		char a[64];
		snprintf(a, sizeof a, "r%d@example.org", i);
		assert_int_equal(tries(w, 1, a), 1);
		assert_int_equal(lines_with(w, JOURNAL, a, NULL), 1);
	}
	assert_int_equal(w->st.nrelays, 2);
	assert_int_equal(w->st.relay[0].out, 1);
	assert_int_equal(w->st.relay[1].sent, 10);
}

/* No reply to the dot: journaled uncertain, never tried again. */
static void uncertain_not_retried(void **state)
{
	struct world *w = *state;
	world_files(w, 3, ONE, NULL);
	script(w, "r2@example.org", 1, A_UNCERTAIN);
	assert_int_equal(run(w), 0);
	assert_int_equal(w->st.uncertain, 1);
	assert_int_equal(w->st.sent, 2);
	assert_int_equal(tries(w, -1, "r2@example.org"), 1);
	assert_int_equal(lines_with(w, JOURNAL, "r2@example.org", "uncertain"), 1);
	assert_int_equal(lines_with(w, "bounces.log", "@", NULL), 0);
}

/* Refusals before the first acceptance are held; once one reader is
 * taken they are the readers' after all, one bounce each. */
static void held_refusals_counted_after_acceptance(void **state)
{
	struct world *w = *state;
	world_files(w, 4, ONE, NULL);
	script(w, "r1@example.org", 1, A_PERM_SENDER);
	script(w, "r2@example.org", 1, A_PERM_SENDER);
	assert_int_equal(run(w), 0);
	assert_int_equal(w->st.bounced, 2);
	assert_int_equal(w->st.sent, 2);
	assert_int_equal(lines_with(w, "bounces.log", "r1@example.org", "hard"), 1);
	assert_int_equal(lines_with(w, "bounces.log", "r2@example.org", "hard"), 1);
	assert_int_equal(tries(w, -1, "r1@example.org"), 1);
}

/* Five of the same refusal and nothing accepted: the relay refusing
 * herald (69), nobody marked as bounced, the rest not tried. */
static void sender_streak_stops_run(void **state)
{
	struct world *w = *state;
	world_files(w, 12, ONE, NULL);
	w->relay_default[0] = A_PERM_SENDER;
	assert_int_equal(run(w), EX_UNAVAILABLE);
	assert_int_equal(w->st.bounced, 0);
	assert_int_equal(w->st.sent, 0);
	assert_int_equal(lines_with(w, "bounces.log", "@", NULL), 0);
	assert_true(total_tries(w) <= 6);
	assert_non_null(strstr(w->err, "nobody was marked as bounced"));
}

/* A refusal smtp.c saw as the sender's (SMTP_FATAL): the run stops
 * at once (69); the reader is not blamed and stays unsent. */
static void sender_refusal_stops_run(void **state)
{
	struct world *w = *state;
	world_files(w, 5, ONE, NULL);
	w->relay_default[0] = A_FATAL;
	assert_int_equal(run(w), EX_UNAVAILABLE);
	assert_int_equal(w->st.bounced, 0);
	assert_int_equal(w->st.sent, 0);
	assert_int_equal(total_tries(w), 1);
	assert_int_equal(lines_with(w, "bounces.log", "@", NULL), 0);
	assert_int_equal(lines_with(w, JOURNAL, "@", NULL), 0);
	assert_non_null(strstr(w->err, "sender rejected"));
}

/* The probe before the first reader says the relay refuses us: no
 * reader is tried. */
static void probe_refusal_stops_before_readers(void **state)
{
	struct world *w = *state;
	world_files(w, 5, ONE, NULL);
	w->probe[0][0] = A_FATAL;
	w->nprobe[0] = 1;
	assert_int_equal(run(w), EX_UNAVAILABLE);
	assert_int_equal(total_tries(w), 0);
	assert_int_equal(w->st.not_attempted, 5);
}

/* --limit 2: two sent, and 75 says the rest wait. */
static void limit_stops_after_n(void **state)
{
	struct world *w = *state;
	world_files(w, 5, ONE, NULL);
	w->o.limit = 2;
	assert_int_equal(run(w), EX_TEMPFAIL);
	assert_int_equal(w->st.sent, 2);
	assert_int_equal(total_tries(w), 2);
	assert_non_null(strstr(w->err, "--limit 2 reached"));
}

/* A reader who unsubscribes after their message was handed over and
 * before its transaction starts is withdrawn: never mailed, counted as
 * unsubscribed, not in the journal. */
static void left_between_fill_and_admit(void **state)
{
	struct world *w = *state;
	world_files(w, 3, ONE, NULL);
	script(w, "r2@example.org", 1, A_LEAVE);
	assert_int_equal(run(w), 0);
	assert_int_equal(w->st.sent, 2);
	assert_int_equal(w->st.unsubscribed, 1);
	assert_int_equal(tries(w, -1, "r2@example.org"), 0);
	assert_int_equal(lines_with(w, JOURNAL, "r2@example.org", NULL), 0);
	assert_int_equal(lines_with(w, "list.log", "r2@example.org", NULL), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(hard_bounce_logged_not_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(temp_retried_then_deferred, setup, teardown),
		cmocka_unit_test_setup_teardown(conn_streak_takes_relay_down, setup, teardown),
		cmocka_unit_test_setup_teardown(down_relay_readers_move, setup, teardown),
		cmocka_unit_test_setup_teardown(uncertain_not_retried, setup, teardown),
		cmocka_unit_test_setup_teardown(held_refusals_counted_after_acceptance, setup,
						teardown),
		cmocka_unit_test_setup_teardown(sender_streak_stops_run, setup, teardown),
		cmocka_unit_test_setup_teardown(sender_refusal_stops_run, setup, teardown),
		cmocka_unit_test_setup_teardown(probe_refusal_stops_before_readers, setup, teardown),
		cmocka_unit_test_setup_teardown(limit_stops_after_n, setup, teardown),
		cmocka_unit_test_setup_teardown(left_between_fill_and_admit, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
