/* herald send: options, the --due walk over a directory, progress,
 * the summary (line, table or JSON), the stop signals. */
#include "cli/cli.h"
#include "compose/post.h"
#include "deliver/delivery.h"
#include "deliver/ratelimit.h"
#include "input/segment.h"
#include "input/config.h"
#include "state/journal.h"
#include "util/addr.h"
#include "util/buf.h"
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>

enum { OPT_DRY = 256, OPT_TEST, OPT_SUBS, OPT_RATE, OPT_LIMIT, OPT_DUE, OPT_FORCE,
       OPT_QUOTA, OPT_JSON, OPT_RETRY_UNCERTAIN, OPT_WHERE, OPT_SHARD };

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fmt_dur(double s, char *out, size_t len)
{
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(out, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else
		snprintf(out, len, "%ld:%02ld", t / 60, t % 60);
}

/* Messages a second, or 0 (then no rate and no ETA is shown) while
 * nothing was sent: a server that is down, or refuses every reader,
 * would show a rate of failures and an ETA of never. */
static double send_rate(const struct delivery_stats *st)
{
	return st->elapsed > 0 && st->sent ? st->attempted / st->elapsed : 0;
}

static void on_progress(void *arg, const struct delivery_stats *st)
{
	struct ui *u = arg;
	if (!u->tty || u->quiet)
		return;
	double t = mono();
	if (t - u->last_progress < 0.1 && !st->done)
		return;
	u->last_progress = t;
	double rate = send_rate(st);
	long done = st->sent + st->bounced + st->deferred + st->already + st->suppressed +
		    st->uncertain + st->unsubscribed;
	long total = st->total > done ? st->total : done;
	int width = 24, fill = total ? (int)(width * done / total) : width;
	char bar[32], eta[32] = "";
	for (int i = 0; i < width; i++)
		bar[i] = i < fill ? '=' : ' ';
	bar[width] = '\0';
	if (rate > 0 && st->pending && !st->done) {
		char d[24];
		fmt_dur(st->pending / rate, d, sizeof d);
		snprintf(eta, sizeof eta, "  ETA %s", d);
	}
	char speed[32] = "", server[64] = "";
	if (rate > 0)
		snprintf(speed, sizeof speed, "  %.1f msg/s", rate);
	if (st->reconnecting)
		snprintf(server, sizeof server, "  waiting for the server (attempt %d/%d)", st->attempt,
			 st->attempts);
	fprintf(stderr, "\r\033[K[%s] %ld/%ld%s%s%s%s%s%s", bar, done, total, speed, eta,
		st->limit_window ? "  waiting for rate." : "",
		st->limit_window ? st->limit_window : "", server,
		st->bounced || st->deferred ? "  (some refused)" : "");
	u->progress_shown = 1;
}

/* With several relays, a line each: what it did, and what took it out.
 * In the one-line form each line starts with the post's slug, as the
 * summary does, so a log grep for the slug finds them. */
static void relay_lines(const struct ui *u, const char *slug, const struct delivery_stats *st,
			FILE *f)
{
	/* With one relay too: replies out of turn are worth knowing. */
	for (int i = 0; i < st->nrelays; i++)
		if (st->relay[i].pipelining_off[0])
			fprintf(f, "%s%s pipelining off for %s: %s\n", u->tty ? " " : slug,
				u->tty ? "" : ":", st->relay[i].name, st->relay[i].pipelining_off);
	if (st->nrelays < 2)
		return;
	for (int i = 0; i < st->nrelays; i++) {
		const struct delivery_relay *d = &st->relay[i];
		if (u->tty)
			fprintf(f, "  relay %-9s %8ld sent, %ld bounced, %ld deferred", d->name, d->sent,
				d->bounced, d->deferred);
		else
			fprintf(f, "%s: relay %s: sent %ld, bounced %ld, deferred %ld", slug, d->name,
				d->sent, d->bounced, d->deferred);
		if (d->uncertain)
			fprintf(f, ", %ld uncertain", d->uncertain);
		if (d->out)
			fprintf(f, "; taken out: %s", d->why);
		fputc('\n', f);
	}
}

/* One line for logs and cron mail; a table on a terminal. */
static void summary(const struct ui *u, const char *slug, const struct delivery_stats *st,
		    const char *what, const char *state_dir, FILE *f)
{
	double rate = send_rate(st);
	if (!u->tty) {
		fprintf(f, "%s: %s %ld, bounced %ld, deferred %ld, skipped %ld bad row%s",
			slug, what, st->sent, st->bounced, st->deferred, st->skipped,
			st->skipped == 1 ? "" : "s");
		if (st->uncertain)
			fprintf(f, ", %ld uncertain", st->uncertain);
		if (st->not_attempted)
			fprintf(f, ", %ld not attempted", st->not_attempted);
		if (st->inactive)
			fprintf(f, ", %ld not subscribed", st->inactive);
		if (st->already)
			fprintf(f, ", %ld already sent", st->already);
		if (st->suppressed)
			fprintf(f, ", %ld suppressed", st->suppressed);
		if (st->excluded)
			fprintf(f, ", %ld not in the segment", st->excluded);
		if (st->other_shards)
			fprintf(f, ", %ld in other shards", st->other_shards);
		if (st->unsubscribed)
			fprintf(f, ", %ld unsubscribed on the web", st->unsubscribed);
		if (rate > 0)
			fprintf(f, "; %.1f s, %.1f msg/s\n", st->elapsed, rate);
		else
			fprintf(f, "; %.1f s\n", st->elapsed);
		relay_lines(u, slug, st, f);
		return;
	}
	fprintf(f, "%s\n", slug);
	fprintf(f, "  %-15s %8ld\n", what, st->sent);
	fprintf(f, "  %-15s %8ld%s%s%s\n", "bounced", st->bounced, st->bounced ? "  see " : "",
		st->bounced ? state_dir : "", st->bounced ? "/bounces.log" : "");
	fprintf(f, "  %-15s %8ld%s\n", "deferred", st->deferred, st->deferred ? "  run again to retry" : "");
	fprintf(f, "  %-15s %8ld%s\n", "skipped", st->skipped, st->skipped ? "  bad rows, see above" : "");
	if (st->uncertain)
		fprintf(f, "  %-15s %8ld  no reply to the final dot (or one out of turn): maybe delivered, not sent again\n",
			"uncertain", st->uncertain);
	if (st->not_attempted)
		fprintf(f, "  %-15s %8ld  run again to send them\n", "not attempted", st->not_attempted);
	if (st->inactive)
		fprintf(f, "  %-15s %8ld\n", "not subscribed", st->inactive);
	if (st->already)
		fprintf(f, "  %-15s %8ld  in the journal from earlier runs\n", "already sent", st->already);
	if (st->suppressed)
		fprintf(f, "  %-15s %8ld  bounced or complained before\n", "suppressed", st->suppressed);
	if (st->excluded)
		fprintf(f, "  %-15s %8ld  subscribed, outside --where / audience\n", "not in segment",
			st->excluded);
	if (st->other_shards)
		fprintf(f, "  %-15s %8ld  rows of the other shards (--shard)\n", "other shards",
			st->other_shards);
	if (st->unsubscribed)
		fprintf(f, "  %-15s %8ld  on the web (list.log), not mailed\n", "unsubscribed", st->unsubscribed);
	if (st->retried)
		fprintf(f, "  %-15s %8ld\n", "retries", st->retried);
	if (rate > 0)
		fprintf(f, "  %-15s %8.1f s  %.1f msg/s over %d connection%s", "time", st->elapsed, rate,
			st->connections, st->connections == 1 ? "" : "s");
	else
		fprintf(f, "  %-15s %8.1f s", "time", st->elapsed);
	if (st->waiting > 0.05)
		fprintf(f, ", %.1f s waiting for the rate limit", st->waiting);
	fputc('\n', f);
	relay_lines(u, slug, st, f);
}

/* "relays": [{name, sent, bounced, deferred, uncertain, out, why}], with
 * several relays only (one relay's JSON stays as it always was). */
static json_t *relays_json(const struct delivery_stats *st)
{
	json_t *a = json_array();
	for (int i = 0; a && i < st->nrelays; i++) {
		const struct delivery_relay *d = &st->relay[i];
		json_array_append_new(a, json_pack("{s:s, s:I, s:I, s:I, s:I, s:b, s:s?}",
						   "name", d->name, "sent", (json_int_t)d->sent,
						   "bounced", (json_int_t)d->bounced,
						   "deferred", (json_int_t)d->deferred,
						   "uncertain", (json_int_t)d->uncertain,
						   "out", d->out, "why", d->out ? d->why : NULL));
	}
	return a;
}

static json_t *stats_json(const char *slug, const struct delivery_stats *st, int rc,
			  const struct delivery_opts *o)
{
	json_t *j = json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b, s:b, s:I}",
			 "post", slug, "exit", rc, "sent", (json_int_t)st->sent,
			 "uncertain", (json_int_t)st->uncertain,
			 "not_attempted", (json_int_t)st->not_attempted,
			 "bounced", (json_int_t)st->bounced, "deferred", (json_int_t)st->deferred,
			 "skipped", (json_int_t)st->skipped, "inactive", (json_int_t)st->inactive,
			 "already_sent", (json_int_t)st->already,
			 "suppressed", (json_int_t)st->suppressed,
			 "excluded", (json_int_t)st->excluded,
			 "attempted", (json_int_t)st->attempted, "retried", (json_int_t)st->retried,
			 "seconds", st->elapsed,
			 "rate", send_rate(st),
			 "quota_reached", st->quota_stop, "interrupted", st->interrupted,
			 "unsubscribed", (json_int_t)st->unsubscribed);
	if (j)
		json_object_set_new(j, "other_shards", json_integer(st->other_shards));
	if (j && o->nshards > 1) {
		char sh[32];
		snprintf(sh, sizeof sh, "%u/%u", o->shard, o->nshards);
		json_object_set_new(j, "shard", json_string(sh));
	}
	if (j && st->nrelays > 1)
		json_object_set_new(j, "relays", relays_json(st));
	/* {"relay name": "why", ...}: the relays that went one command at a
	 * time after replies out of turn; {} when none did. */
	json_t *off = j ? json_object() : NULL;
	for (int i = 0; off && i < st->nrelays; i++)
		if (st->relay[i].pipelining_off[0])
			json_object_set_new(off, st->relay[i].name,
					    json_string(st->relay[i].pipelining_off));
	if (off)
		json_object_set_new(j, "pipelining_off", off);
	return j;
}

/* Worse outcomes win: a failure beats "run again", which beats success. */
static int worse(int a, int b)
{
	if (!a || b == EX_TEMPFAIL)
		return a ? a : b;
	return a == EX_TEMPFAIL && b ? b : a;
}

struct send_args {
	struct delivery_opts o;
	int due, json, test, locked;
	int in_dir;            /* --due DIR: slugs checked over the directory */
	const char *rate;
	const char **tests;
	const char **wheres;   /* in the same allocation as tests */
	/* --due: what it found, for the "nothing due" line */
	int attempted, not_yet, done;
	time_t next_when;
	char next[512];
};

/* "44 days", "5 hours", "20 minutes": how far off a post's date is. */
static void fmt_until(time_t secs, char *out, size_t len)
{
	long m = (long)(secs + 30) / 60, h = (long)(secs + 1800) / 3600, d = (long)(secs + 43200) / 86400;
	if (secs < 60)
		snprintf(out, len, "less than a minute");
	else if (m < 90)
		snprintf(out, len, "%ld minute%s", m, m == 1 ? "" : "s");
	else if (h < 48)
		snprintf(out, len, "%ld hour%s", h, h == 1 ? "" : "s");
	else
		snprintf(out, len, "%ld days", d);
}

/* --due: 1 when post is not due or fully sent (with -v, says which). */
static int due_skip(struct ui *u, struct config *cfg, const char *path, const struct post *post,
		    struct send_args *a)
{
	time_t now = time(NULL);
	char in[32];
	FILE *f = u->tty ? stdout : stderr;
	int show = u->verbose && !u->quiet && !a->json;
	if (post->when > now) {
		fmt_until(post->when - now, in, sizeof in);
		if (show)
			fprintf(f, "%s: due in %s (date: %s), skipped\n", path, in, post->date);
		if (!a->not_yet++ || post->when < a->next_when) {
			a->next_when = post->when;
			snprintf(a->next, sizeof a->next, "%s", path);
		}
		return 1;
	}
	if (journal_is_done(cfg->state_dir, post->slug) ||
	    (a->o.nshards > 1 && journal_shard_is_done(cfg->state_dir, post->slug, a->o.shard,
						       a->o.nshards))) {
		if (show)
			fprintf(f, "%s: sent to the whole %s already, skipped\n", path,
				journal_is_done(cfg->state_dir, post->slug) ? "list" : "shard");
		a->done++;
		return 1;
	}
	a->attempted++;
	return 0;
}

/* --due with nothing to send: one line on a terminal or with -v (cron,
 * without -v, hears nothing). */
static void say_nothing_due(struct ui *u, const char *target, const struct send_args *a)
{
	if (!a->due || a->attempted || u->quiet || a->json || !(u->tty || u->verbose))
		return;
	FILE *f = u->tty ? stdout : stderr;
	char in[32] = "";
	if (a->not_yet)
		fmt_until(a->next_when - time(NULL), in, sizeof in);
	if (!a->in_dir && a->not_yet)
		fprintf(f, "nothing due: %s is due in %s\n", target, in);
	else if (!a->in_dir)
		fprintf(f, "nothing due: %s was sent to the whole list already\n", target);
	else if (a->not_yet)
		fprintf(f, "nothing due in %s: %d post%s not due yet (next: %s, in %s), %d already sent\n",
			target, a->not_yet, a->not_yet == 1 ? "" : "s", a->next, in, a->done);
	else
		fprintf(f, "nothing due in %s: %d post%s, all sent already\n", target, a->done,
			a->done == 1 ? "" : "s");
}

static int send_one(struct ui *u, struct config *cfg, const char *path,
		    struct send_args *a, json_t *posts)
{
	struct post post = {0};
	int rc = cli_load_post(cfg, path, &post);
	if (rc) {
		post_free(&post);
		return rc;
	}
	/* Cron: nothing to do is not news. Not yet due, or fully sent. */
	if (a->due && due_skip(u, cfg, path, &post, a)) {
		post_free(&post);
		return 0;
	}
	if (!a->in_dir && (rc = cli_check_slug(path, post.slug))) {
		post_free(&post);
		return rc;
	}
	char err[1024] = "";
	struct delivery_cb cb = {cli_on_warn, on_progress, u};
	struct delivery_stats st;
	rc = delivery_run(cfg, &post, &a->o, &cb, &st, err, sizeof err);
	cli_clear_progress(u);
	if (rc && *err)
		cli_err(err);
	/* Locked out: the one line above says all; later posts wait too. */
	a->locked = st.locked;
	int show = !u->quiet && !a->json && st.started && (u->tty || u->verbose || rc);
	if (show)
		summary(u, post.slug, &st, a->o.dry_run_dir ? "written" : "sent", cfg->state_dir,
			u->tty ? stdout : stderr);
	if (a->o.dry_run_dir && show && !rc)
		fprintf(u->tty ? stdout : stderr, "messages are in %s/\n", a->o.dry_run_dir);
	if (posts)
		json_array_append_new(posts, stats_json(post.slug, &st, rc, &a->o));
	post_free(&post);
	return rc;
}

/* SIGTERM (systemd stop, timeout) or SIGINT (Ctrl-C) while sending: the
 * run takes no new reader, finishes what is on the wire and records it
 * (the flag: cli_catch_stop_signals in ui.c). */
static int stop_requested(void *arg)
{
	struct ui *u = arg;
	if (u->stopping || !cli_stop_signal())
		return u->stopping != 0;
	u->stopping = cli_stop_signal();
	cli_clear_progress(u);
	fprintf(stderr, "herald: %s: finishing the messages in flight (a second signal stops at once)\n",
		u->stopping == SIGINT ? "interrupted" : "terminated");
	return 1;
}

/* -v: the SMTP transcript on stderr, from the connections' threads (one
 * fprintf a line, so lines never mix). */
static void on_trace(void *arg, const char *line)
{
	(void)arg;
	fprintf(stderr, "smtp %s\n", line);
}

/* The posts' "relays" added up by relay name (--due sends several). */
static json_t *relays_total(json_t *posts)
{
	static const char *const keys[] = {"sent", "bounced", "deferred", "uncertain"};
	json_t *all = NULL, *p, *r;
	size_t i, k;
	json_array_foreach(posts, i, p) {
		json_array_foreach(json_object_get(p, "relays"), k, r) {
			const char *name = json_string_value(json_object_get(r, "name"));
			json_t *t = NULL, *x;
			size_t m;
			if (!all)
				all = json_array();
			json_array_foreach(all, m, x)
				if (!strcmp(json_string_value(json_object_get(x, "name")), name))
					t = x;
			if (!t) {
				json_array_append_new(all, t = json_deep_copy(r));
				continue;
			}
			for (size_t n = 0; n < sizeof keys / sizeof *keys; n++)
				json_object_set_new(t, keys[n], json_integer(
					json_integer_value(json_object_get(t, keys[n])) +
					json_integer_value(json_object_get(r, keys[n]))));
			if (json_is_true(json_object_get(r, "out"))) {
				json_object_set(t, "out", json_object_get(r, "out"));
				json_object_set(t, "why", json_object_get(r, "why"));
			}
		}
	}
	return all;
}

static int print_json(json_t *posts, int rc)
{
	static const char *const keys[] = {"sent", "bounced", "deferred", "skipped",
		"inactive", "already_sent", "suppressed", "excluded", "attempted", "retried", "uncertain",
		"not_attempted", "unsubscribed", "other_shards"};
	json_t *o = json_object();
	json_object_set_new(o, "exit", json_integer(rc));
	for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
		json_int_t sum = 0;
		size_t i;
		json_t *p;
		json_array_foreach(posts, i, p)
			sum += json_integer_value(json_object_get(p, keys[k]));
		json_object_set_new(o, keys[k], json_integer(sum));
	}
	json_t *relays = relays_total(posts);
	if (relays)
		json_object_set_new(o, "relays", relays);
	/* The posts' pipelining_off together: a relay's first reason. */
	json_t *off = json_object(), *p;
	size_t i;
	json_array_foreach(posts, i, p)
		if (off)
			json_object_update_missing(off, json_object_get(p, "pipelining_off"));
	if (off)
		json_object_set_new(o, "pipelining_off", off);
	json_object_set(o, "posts", posts);
	char *text = json_dumps(o, JSON_COMPACT);
	if (text)
		puts(text);
	free(text);
	json_decref(o);
	return rc;
}

/* --shard I/N: 1 <= I <= N <= JOURNAL_SHARDS_MAX, decimal digits only;
 * 1/1 is the whole list. */
static int shard_option(struct send_args *a, const char *v)
{
	unsigned long i = 0, n = 0;
	const char *p = v;
	int ok = *p >= '0' && *p <= '9';
	for (; ok && *p >= '0' && *p <= '9' && i <= JOURNAL_SHARDS_MAX; p++)
		i = i * 10 + (unsigned long)(*p - '0');
	ok = ok && *p++ == '/' && *p >= '0' && *p <= '9';
	for (; ok && *p >= '0' && *p <= '9' && n <= JOURNAL_SHARDS_MAX; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	if (!ok || *p || i < 1 || n < 1 || i > n || n > JOURNAL_SHARDS_MAX)
		return cli_usage("--shard: expected I/N, this host's shard I of N, with 1 <= I <= N <= %d "
				 "(e.g. --shard 2/3), found \"%s\"", JOURNAL_SHARDS_MAX, v);
	a->o.shard = n > 1 ? (unsigned)i : 0;
	a->o.nshards = n > 1 ? (unsigned)n : 0;
	return 0;
}

/* The options into *a; 0 or the usage error's exit code. */
static int send_options(struct send_args *a, int argc, char **argv)
{
	static const struct option lo[] = {
		{"dry-run", required_argument, 0, OPT_DRY},
		{"test", optional_argument, 0, OPT_TEST},
		{"subscribers", required_argument, 0, OPT_SUBS},
		{"rate", required_argument, 0, OPT_RATE},
		{"limit", required_argument, 0, OPT_LIMIT},
		{"due", no_argument, 0, OPT_DUE},
		{"force", no_argument, 0, OPT_FORCE},
		{"until-quota", no_argument, 0, OPT_QUOTA},
		{"json", no_argument, 0, OPT_JSON},
		{"retry-uncertain", no_argument, 0, OPT_RETRY_UNCERTAIN},
		{"where", required_argument, 0, OPT_WHERE},
		{"shard", required_argument, 0, OPT_SHARD},
		{0, 0, 0, 0}};
	int c, rc = 0;
	optind = 0; /* 0: glibc re-reads the optstring, so options may follow operands */
	while (!rc && (c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		switch (c) {
		case OPT_DRY:
			path_trim_slashes(optarg);
			a->o.dry_run_dir = optarg;
			break;
		case OPT_TEST:
			a->test = 1;
			if (optarg) {
				char why[100];
				if (addr_valid(optarg, why, sizeof why) < 0)
					rc = cli_usage("--test: not a valid address: %s (%s)", optarg, why);
				a->tests[a->o.n_test++] = optarg;
			}
			break;
		case OPT_SUBS: a->o.subscribers = optarg; break;
		case OPT_RATE: a->rate = optarg; break;
		case OPT_LIMIT: {
			char *end;
			a->o.limit = strtol(optarg, &end, 10);
			if (*end || a->o.limit < 1)
				rc = cli_usage("--limit: expected a positive number, found \"%s\"", optarg);
			break;
		}
		case OPT_DUE: a->due = 1; break;
		case OPT_FORCE: a->o.force = 1; break;
		case OPT_QUOTA: a->o.until_quota = 1; break;
		case OPT_JSON: a->json = 1; break;
		case OPT_RETRY_UNCERTAIN: a->o.retry_uncertain = 1; break;
		case OPT_WHERE: {
			struct segment sg = {0};
			char why[512];
			if (segment_add(&sg, optarg, "--where", why, sizeof why) < 0)
				rc = cli_usage("%s", why);
			segment_free(&sg);
			a->wheres[a->o.n_where++] = optarg;
			break;
		}
		case OPT_SHARD: rc = shard_option(a, optarg); break;
		/* getopt is silent (":" below): one message, ours. */
		case ':':
			rc = cli_usage("send: %s needs a value%s", argv[optind - 1],
				       optopt == OPT_DRY ? ": the directory the .eml files go to" : "");
			break;
		default: rc = cli_usage("send: unknown option %s", argv[optind - 1]);
		}
	}
	if (!rc && optind != argc - 1)
		rc = cli_usage("%s", "send: expected one POST.md (or, with --due, a directory of posts)");
	if (!rc && a->o.dry_run_dir && a->test)
		rc = cli_usage("%s", "send: --dry-run and --test do not go together");
	if (!rc && a->o.nshards && a->test)
		rc = cli_usage("%s", "send: --shard and --test do not go together (--test mails only "
			       "the test addresses)");
	return rc;
}

/* send --due DIR: each post in name order. A collision refuses both
 * posts; the others still go. */
static int send_dir(struct ui *u, struct config *cfg, const char *dir, struct send_args *a,
		    json_t *posts)
{
	char **files = NULL, **slugs = NULL;
	size_t n = 0;
	int rc = 0;
	if (cli_dir_slugs(dir, &files, &slugs, &n) < 0) {
		cli_err(strerror(errno));
		rc = EX_NOINPUT;
	}
	a->in_dir = 1;
	int collided = 0;
	for (size_t i = 0; slugs && i < n; i++) {
		long twin = cli_slug_twin(slugs[i], slugs, n, (long)i);
		if (twin > (long)i)
			collided = cli_say_slug_twin(files[i], files[twin], slugs[i]);
		int go = (rc == EX_TEMPFAIL || !rc) && !a->locked && !u->stopping && twin < 0;
		int r1 = go ? send_one(u, cfg, files[i], a, posts) : 0;
		rc = worse(rc, r1);
	}
	rc = worse(rc, collided);
	cli_free_dir_slugs(files, slugs, n);
	return rc;
}

int cmd_send(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	struct send_args a = {0};
	/* --test and --where values: at most argc of each. */
	a.tests = calloc(2 * ((size_t)argc + 1), sizeof *a.tests);
	if (!a.tests)
		return EX_OSERR;
	a.wheres = a.tests + argc + 1;
	int rc = send_options(&a, argc, argv);
	if (rc) {
		free(a.tests);
		return rc;
	}
	path_trim_slashes(argv[optind]); /* "posts/" would print "posts//x.md" */
	const char *target = argv[optind];
	struct stat sb;
	int isdir = stat(target, &sb) == 0 && S_ISDIR(sb.st_mode);
	if (isdir && !a.due) {
		free(a.tests);
		return cli_usage("send: %s is a directory: name one post, or add --due", target);
	}
	struct config cfg;
	if ((rc = cli_load_config(cfgpath, &cfg))) {
		free(a.tests);
		config_free(&cfg);
		return rc;
	}
	char err[1024] = "";
	a.o.rate = cfg.rate;
	if (a.rate && rl_parse(a.rate, &a.o.rate, err, sizeof err) < 0)
		rc = cli_usage("%s", err);
	if (!rc && a.test && !a.o.n_test) {
		for (size_t i = 0; i < cfg.n_test_to; i++)
			a.tests[a.o.n_test++] = cfg.test_to[i];
		if (!a.o.n_test)
			rc = cli_usage("%s", "--test without an address needs test.to in the config");
	}
	a.o.test_to = a.tests;
	a.o.where = a.wheres;
	if (u->verbose)
		a.o.trace = on_trace;
	cli_catch_stop_signals();
	a.o.interrupted = stop_requested;
	a.o.interrupt_arg = u;
	if (!a.o.subscribers)
		a.o.subscribers = cfg.subscribers;
	if (!rc)
		rc = cli_need_list(&cfg, a.o.subscribers);
	json_t *posts = a.json ? json_array() : NULL;
	if (!rc)
		rc = isdir ? send_dir(u, &cfg, target, &a, posts) : send_one(u, &cfg, target, &a, posts);
	if (!rc)
		say_nothing_due(u, target, &a);
	if (posts) {
		print_json(posts, rc);
		json_decref(posts);
	}
	free(a.tests);
	config_free(&cfg);
	return rc;
}
