/* herald: command line, printing and exit codes. The only file that
 * writes to the terminal or exits. */
#include "bounces.h"
#include "addr.h"
#include "buf.h"
#include "config.h"
#include "delivery.h"
#include "message.h"
#include "lint.h"
#include "post.h"
#include "preview.h"
#include "ratelimit.h"
#include "scan.h"
#include "subscribers.h"
#include "unsubscribe.h"
#include "journal.h"
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#ifndef HERALD_VERSION
#define HERALD_VERSION "dev"
#endif
#define TEXT_WIDTH 72

static const char usage[] =
	"usage: herald [-c FILE] [-q|-v] COMMAND ...\n"
	"\n"
	"  send POST.md [--dry-run DIR] [--test[=ADDR]]... [--subscribers FILE]\n"
	"               [--rate SPEC] [--limit N] [--until-quota] [--force] [--json]\n"
	"               [--retry-uncertain]\n"
	"  send --due POST.md|DIR\n"
	"      Send the post to every subscriber not yet in its journal.\n"
	"      --dry-run DIR   write each message to DIR/NNNNNN-<address>.eml; no network\n"
	"      --test[=ADDR]   send only to ADDR (repeatable; default: config test.to),\n"
	"                      subject prefixed [TEST], nothing recorded\n"
	"      --subscribers F use list F instead of the config's\n"
	"      --rate SPEC     e.g. 10/s, 300/min, 2000/h, 10000/day, burst=5 (comma-separated)\n"
	"      --limit N       send at most N messages this run (exit 75 if more remain)\n"
	"      --due           for cron: send the post(s) whose date has come and that are\n"
	"                      not fully sent; otherwise exit 0 silently\n"
	"      --until-quota   stop (exit 75) when a rate window is used up, instead of waiting\n"
	"      --json          print the summary as one JSON object on stdout\n"
	"      --force         send again to readers already in the journal\n"
	"      --retry-uncertain  send again to readers whose message got no reply to its\n"
	"                      final dot (journal \"uncertain\": they may have it already)\n"
	"  preview POST.md [-o DIR] [--as EMAIL] [--no-screenshots]\n"
	"      Write DIR/<slug>.html, .txt and .eml as EMAIL (default: first reader) gets them,\n"
	"      and <slug>-desktop.png, <slug>-mobile.png when Chromium is installed.\n"
	"  check POST.md\n"
	"      Lint config, post, templates and list together (size, links, alt text,\n"
	"      merge fields, unsubscribe, DKIM); exit 65 or 78 on errors; send nothing.\n"
	"  subscribers check [FILE]\n"
	"      Report bad rows of the list (FILE:LINE: reason).\n"
	"  subscribers unsubscribe [SOURCE] [--delete] | --address ADDR...\n"
	"      Apply the unsubscribe requests in SOURCE (default unsubscribe.mailbox.url),\n"
	"      or unsubscribe ADDR: status \"unsubscribed\" in the list, rewritten atomically.\n"
	"  bounces scan [SOURCE] [--delete]\n"
	"      Read the DSNs and complaints in SOURCE (default bounce.mailbox.url) into\n"
	"      bounces.log; mark them read (or --delete them). SOURCE: maildir:PATH,\n"
	"      mbox:PATH, imap[s]://[USER@]HOST[:PORT][/FOLDER], pop3[s]://[USER@]HOST[:PORT]\n"
	"  bounces list\n"
	"      Show suppressed addresses with reason and date.\n"
	"  bounces forget ADDR...\n"
	"      Lift the suppression of ADDR (a line in bounces.log; nothing is erased).\n"
	"\n"
	"  -c FILE     config file (default: $HERALD_CONFIG, else ./herald.conf)\n"
	"  -q          print only failures\n"
	"  -v          print the summary even without a terminal, and the SMTP\n"
	"              transcript on stderr (AUTH credentials redacted)\n"
	"  -h, --help  this text                --version\n"
	"\n"
	"Exit codes: 0 done; 64 usage; 65 unusable post or list; 66 file missing;\n"
	"69 server unavailable; 73 cannot write state; 75 deferred, run again; 78 bad config;\n"
	"70 internal error, 71 out of memory or system error, 74 read error (report a bug).\n"
	"See herald(1) and config.example.\n";

struct ui {
	int quiet, verbose, tty;
	int progress_shown;
	double last_progress;
	int stopping;         /* the signal that asked send to stop, or 0 */
};

static void say_err(const char *msg)
{
	fprintf(stderr, "herald: %s\n", msg);
}

__attribute__((format(printf, 1, 2)))
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "herald: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'herald --help'.\n");
	return EX_USAGE;
}

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void clear_progress(struct ui *u)
{
	if (u->progress_shown) {
		fputs("\r\033[K", stderr);
		u->progress_shown = 0;
	}
}

static void on_warn(void *arg, const char *msg)
{
	struct ui *u = arg;
	clear_progress(u);
	say_err(msg);
}

static void fmt_dur(double s, char *out, size_t len)
{
	long t = (long)(s + 0.5);
	if (t >= 3600)
		snprintf(out, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
	else
		snprintf(out, len, "%ld:%02ld", t / 60, t % 60);
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
	long answered = st->sent + st->bounced + st->uncertain;
	/* No rate or ETA until something was answered: a server that is
	 * down would show 0.0 msg/s and an ETA of never. */
	double rate = st->elapsed > 0 && answered ? st->attempted / st->elapsed : 0;
	long done = st->sent + st->bounced + st->deferred + st->already + st->suppressed +
		    st->uncertain;
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

/* One line for logs and cron mail; a table on a terminal. */
static void summary(const struct ui *u, const char *slug, const struct delivery_stats *st,
		    const char *what, const char *state_dir, FILE *f)
{
	double rate = st->elapsed > 0 ? st->attempted / st->elapsed : 0;
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
		if (st->sent + st->bounced)
			fprintf(f, "; %.1f s, %.1f msg/s\n", st->elapsed, rate);
		else
			fprintf(f, "; %.1f s\n", st->elapsed);
		return;
	}
	fprintf(f, "%s\n", slug);
	fprintf(f, "  %-15s %8ld\n", what, st->sent);
	fprintf(f, "  %-15s %8ld%s%s%s\n", "bounced", st->bounced, st->bounced ? "  see " : "",
		st->bounced ? state_dir : "", st->bounced ? "/bounces.log" : "");
	fprintf(f, "  %-15s %8ld%s\n", "deferred", st->deferred, st->deferred ? "  run again to retry" : "");
	fprintf(f, "  %-15s %8ld%s\n", "skipped", st->skipped, st->skipped ? "  bad rows, see above" : "");
	if (st->uncertain)
		fprintf(f, "  %-15s %8ld  no reply to the final dot: maybe delivered, not sent again\n",
			"uncertain", st->uncertain);
	if (st->not_attempted)
		fprintf(f, "  %-15s %8ld  run again to send them\n", "not attempted", st->not_attempted);
	if (st->inactive)
		fprintf(f, "  %-15s %8ld\n", "not subscribed", st->inactive);
	if (st->already)
		fprintf(f, "  %-15s %8ld  in the journal from earlier runs\n", "already sent", st->already);
	if (st->suppressed)
		fprintf(f, "  %-15s %8ld  bounced or complained before\n", "suppressed", st->suppressed);
	if (st->retried)
		fprintf(f, "  %-15s %8ld\n", "retries", st->retried);
	if (st->sent + st->bounced)
		fprintf(f, "  %-15s %8.1f s  %.1f msg/s over %d connection%s", "time", st->elapsed, rate,
			st->connections, st->connections == 1 ? "" : "s");
	else
		fprintf(f, "  %-15s %8.1f s", "time", st->elapsed);
	if (st->waiting > 0.05)
		fprintf(f, ", %.1f s waiting for the rate limit", st->waiting);
	fputc('\n', f);
}

static json_t *stats_json(const char *slug, const struct delivery_stats *st, int rc)
{
	return json_pack("{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:b, s:b}",
			 "post", slug, "exit", rc, "sent", (json_int_t)st->sent,
			 "uncertain", (json_int_t)st->uncertain,
			 "not_attempted", (json_int_t)st->not_attempted,
			 "bounced", (json_int_t)st->bounced, "deferred", (json_int_t)st->deferred,
			 "skipped", (json_int_t)st->skipped, "inactive", (json_int_t)st->inactive,
			 "already_sent", (json_int_t)st->already,
			 "suppressed", (json_int_t)st->suppressed,
			 "attempted", (json_int_t)st->attempted, "retried", (json_int_t)st->retried,
			 "seconds", st->elapsed,
			 "rate", st->elapsed > 0 ? st->attempted / st->elapsed : 0.0,
			 "quota_reached", st->quota_stop, "interrupted", st->interrupted);
}

static int load_config(const char *path, struct config *cfg)
{
	char err[512];
	int rc = config_load(cfg, path, err, sizeof err);
	if (rc) {
		say_err(err);
		return EX_CONFIG;
	}
	return 0;
}

static int load_post(const struct config *cfg, const char *path, struct post *p)
{
	char err[512];
	int rc = post_load_opts(p, path, TEXT_WIDTH, cfg->unsafe_html ? POST_UNSAFE_HTML : 0,
				err, sizeof err);
	if (rc) {
		say_err(err);
		return rc == POST_NOFILE ? EX_NOINPUT : EX_DATAERR;
	}
	return 0;
}

enum { OPT_DRY = 256, OPT_TEST, OPT_SUBS, OPT_RATE, OPT_LIMIT, OPT_DUE, OPT_FORCE, OPT_AS,
       OPT_QUOTA, OPT_JSON, OPT_NOSHOTS, OPT_RETRY_UNCERTAIN };

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --due DIR: the .md files of DIR, by name (dated names sort by date). */
static int list_posts(const char *dir, char ***out, size_t *n)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	struct dirent *e;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] == '.' || l < 4 || strcmp(e->d_name + l - 3, ".md"))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			char **no = realloc(*out, cap * sizeof *no);
			if (!no)
				break;
			*out = no;
		}
		if (asprintf(&(*out)[*n], "%s/%s", dir, e->d_name) < 0)
			break;
		(*n)++;
	}
	closedir(d);
	if (*n)
		qsort(*out, *n, sizeof **out, by_name);
	return 0;
}

/* The slug of the post at path, or NULL when it does not parse (its
 * own run reports that). */
static char *slug_of(const char *path)
{
	struct post p = {0};
	char err[512];
	char *slug = NULL;
	if (post_load_opts(&p, path, TEXT_WIDTH, POST_NO_RENDER, err, sizeof err) == POST_OK)
		slug = p.slug ? strdup(p.slug) : NULL;
	post_free(&p);
	return slug;
}

/* The .md files of dir, by name, and their slugs (NULL where a post does
 * not parse: its own run reports that). */
static int dir_slugs(const char *dir, char ***files, char ***slugs, size_t *n)
{
	*slugs = NULL;
	if (list_posts(dir, files, n) < 0)
		return -1;
	if (*n && !(*slugs = calloc(*n, sizeof **slugs)))
		return -1;
	for (size_t i = 0; i < *n; i++)
		(*slugs)[i] = slug_of((*files)[i]);
	return 0;
}

static void free_dir_slugs(char **files, char **slugs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(files[i]);
		if (slugs)
			free(slugs[i]);
	}
	free(files);
	free(slugs);
}

/* Two posts with one slug share a journal: the second would find every
 * reader "already sent" and send nothing, without a word. The first of
 * the n posts other than skip (-1: none) whose slug is slug, or -1. */
static long slug_twin(const char *slug, char **slugs, size_t n, long skip)
{
	for (size_t i = 0; slug && i < n; i++)
		if ((long)i != skip && slugs[i] && !strcmp(slugs[i], slug))
			return (long)i;
	return -1;
}

static int say_slug_twin(const char *a, const char *b, const char *slug)
{
	fprintf(stderr, "herald: %s and %s have the same slug \"%s\": they would share one journal, "
		"and the second would be sent to nobody; give one of them its own `slug:` in "
		"the front matter, or rename it\n", a, b, slug);
	return EX_DATAERR;
}

/* For one post: a twin in its own directory. */
static int check_slug(const char *path, const char *slug)
{
	const char *sl = strrchr(path, '/');
	char *dir = sl ? strndup(path, (size_t)(sl - path) + (sl == path)) : strdup(".");
	char **files = NULL, **slugs = NULL;
	size_t n = 0;
	int rc = 0;
	if (dir && dir_slugs(dir, &files, &slugs, &n) == 0) {
		/* The post itself is in the list, under whatever name. */
		struct stat me, it;
		long self = -1;
		int known = stat(path, &me) == 0;
		for (size_t i = 0; known && self < 0 && i < n; i++)
			if (stat(files[i], &it) == 0 && it.st_ino == me.st_ino && it.st_dev == me.st_dev)
				self = (long)i;
		long twin = slug_twin(slug, slugs, n, self);
		if (twin >= 0)
			rc = say_slug_twin(path, files[twin], slug);
	}
	free_dir_slugs(files, slugs, n);
	free(dir);
	return rc;
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
};

static int send_one(struct ui *u, struct config *cfg, const char *path,
		    struct send_args *a, json_t *posts)
{
	struct post post = {0};
	int rc = load_post(cfg, path, &post);
	if (rc) {
		post_free(&post);
		return rc;
	}
	/* Cron: nothing to do is not news. Not yet due, or fully sent. */
	if (a->due && (post.when > time(NULL) || journal_is_done(cfg->state_dir, post.slug))) {
		post_free(&post);
		return 0;
	}
	if (!a->in_dir && (rc = check_slug(path, post.slug))) {
		post_free(&post);
		return rc;
	}
	char err[1024] = "";
	struct delivery_cb cb = {on_warn, on_progress, u};
	struct delivery_stats st;
	rc = delivery_run(cfg, &post, &a->o, &cb, &st, err, sizeof err);
	clear_progress(u);
	if (rc && *err)
		say_err(err);
	/* Locked out: the one line above says all; later posts wait too. */
	a->locked = st.locked;
	int show = !u->quiet && !a->json && st.started && (u->tty || u->verbose || rc);
	if (show)
		summary(u, post.slug, &st, a->o.dry_run_dir ? "written" : "sent", cfg->state_dir,
			u->tty ? stdout : stderr);
	if (a->o.dry_run_dir && show && !rc)
		fprintf(u->tty ? stdout : stderr, "messages are in %s/\n", a->o.dry_run_dir);
	if (posts)
		json_array_append_new(posts, stats_json(post.slug, &st, rc));
	post_free(&post);
	return rc;
}

/* SIGTERM (systemd stop, timeout) or SIGINT (Ctrl-C) while sending: the
 * run takes no new reader, finishes what is on the wire and records it.
 * The one piece of global mutable state in herald, because a signal
 * handler can reach nothing else: written once by the handler (any
 * thread), read by the send loop through stop_requested(). SA_RESETHAND
 * gives the signal its default action back, so a second one ends herald
 * at once, wherever it is waiting. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

static void catch_stop_signals(void)
{
	for (int k = 0; k < 2; k++) {
		int which = k ? SIGTERM : SIGINT;
		struct sigaction old, sa = {0};
		/* One that was ignored (nohup, a background job) stays so. */
		if (sigaction(which, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
			continue;
		sa.sa_handler = on_stop_signal;
		sa.sa_flags = SA_RESETHAND | SA_RESTART;
		sigemptyset(&sa.sa_mask);
		sigaction(which, &sa, NULL);
	}
}

static int stop_requested(void *arg)
{
	struct ui *u = arg;
	if (u->stopping || !stop_signal)
		return u->stopping != 0;
	u->stopping = stop_signal;
	clear_progress(u);
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

static int print_json(json_t *posts, int rc)
{
	static const char *const keys[] = {"sent", "bounced", "deferred", "skipped",
		"inactive", "already_sent", "suppressed", "attempted", "retried", "uncertain",
		"not_attempted"};
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
	json_object_set(o, "posts", posts);
	char *text = json_dumps(o, JSON_COMPACT);
	if (text)
		puts(text);
	free(text);
	json_decref(o);
	return rc;
}

static int cmd_send(struct ui *u, const char *cfgpath, int argc, char **argv)
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
		{0, 0, 0, 0}};
	struct send_args a = {0};
	int c;
	a.tests = calloc((size_t)argc + 1, sizeof *a.tests);
	if (!a.tests)
		return EX_OSERR;
	optind = 0; /* 0: glibc re-reads the optstring, so options may follow operands */
	int rc = 0;
	while (!rc && (c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (c) {
		case OPT_DRY: a.o.dry_run_dir = optarg; break;
		case OPT_TEST:
			a.test = 1;
			if (optarg) {
				char why[100];
				if (addr_valid(optarg, why, sizeof why) < 0)
					rc = usage_error("--test: not a valid address: %s", optarg);
				a.tests[a.o.n_test++] = optarg;
			}
			break;
		case OPT_SUBS: a.o.subscribers = optarg; break;
		case OPT_RATE: a.rate = optarg; break;
		case OPT_LIMIT: {
			char *end;
			a.o.limit = strtol(optarg, &end, 10);
			if (*end || a.o.limit < 1)
				rc = usage_error("--limit: expected a positive number, found \"%s\"", optarg);
			break;
		}
		case OPT_DUE: a.due = 1; break;
		case OPT_FORCE: a.o.force = 1; break;
		case OPT_QUOTA: a.o.until_quota = 1; break;
		case OPT_JSON: a.json = 1; break;
		case OPT_RETRY_UNCERTAIN: a.o.retry_uncertain = 1; break;
		default: rc = usage_error("%s", "send: unknown option");
		}
	}
	if (!rc && optind != argc - 1)
		rc = usage_error("%s", "send: expected one POST.md (or, with --due, a directory of posts)");
	if (!rc && a.o.dry_run_dir && a.test)
		rc = usage_error("%s", "send: --dry-run and --test do not go together");
	if (rc) {
		free(a.tests);
		return rc;
	}
	const char *target = argv[optind];
	struct stat sb;
	int isdir = stat(target, &sb) == 0 && S_ISDIR(sb.st_mode);
	if (isdir && !a.due) {
		free(a.tests);
		return usage_error("send: %s is a directory: name one post, or add --due", target);
	}
	struct config cfg;
	if ((rc = load_config(cfgpath, &cfg))) {
		free(a.tests);
		config_free(&cfg);
		return rc;
	}
	char err[1024] = "";
	a.o.rate = cfg.rate;
	if (a.rate && rl_parse(a.rate, &a.o.rate, err, sizeof err) < 0)
		rc = usage_error("%s", err);
	if (!rc && a.test && !a.o.n_test) {
		for (size_t i = 0; i < cfg.n_test_to; i++)
			a.tests[a.o.n_test++] = cfg.test_to[i];
		if (!a.o.n_test)
			rc = usage_error("%s", "--test without an address needs test.to in the config");
	}
	a.o.test_to = a.tests;
	if (u->verbose)
		a.o.trace = on_trace;
	catch_stop_signals();
	a.o.interrupted = stop_requested;
	a.o.interrupt_arg = u;
	if (!a.o.subscribers)
		a.o.subscribers = cfg.subscribers;
	json_t *posts = a.json ? json_array() : NULL;
	if (!rc && isdir) {
		char **files = NULL, **slugs = NULL;
		size_t n = 0;
		if (dir_slugs(target, &files, &slugs, &n) < 0) {
			say_err(strerror(errno));
			rc = EX_NOINPUT;
		}
		a.in_dir = 1;
		/* A collision refuses both posts; the others still go. */
		int collided = 0;
		for (size_t i = 0; slugs && i < n; i++) {
			long twin = slug_twin(slugs[i], slugs, n, (long)i);
			if (twin > (long)i)
				collided = say_slug_twin(files[i], files[twin], slugs[i]);
			int go = (rc == EX_TEMPFAIL || !rc) && !a.locked && !u->stopping && twin < 0;
			int r1 = go ? send_one(u, &cfg, files[i], &a, posts) : 0;
			rc = worse(rc, r1);
		}
		rc = worse(rc, collided);
		free_dir_slugs(files, slugs, n);
	} else if (!rc) {
		rc = send_one(u, &cfg, target, &a, posts);
	}
	if (posts) {
		print_json(posts, rc);
		json_decref(posts);
	}
	free(a.tests);
	config_free(&cfg);
	return rc;
}

static int write_whole(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len) {
		set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (fclose(f) != 0)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	return 0;
}

/* Finds the row for `as` (or the first subscribed row) and builds the
 * message for it; *mp keeps its rendered parts (msg_last_parts), addr
 * the reader's address. */
static int build_one(const struct config *cfg, const struct post *post, const char *as,
		     struct msg_ctx **mp, struct buf *eml, char *addr, size_t addrlen,
		     char *err, size_t errlen)
{
	struct subs_reader *sr = NULL;
	struct msg_ctx *m = NULL;
	int k = subs_open(&sr, cfg->subscribers, err, errlen);
	if (k)
		return k == SUBS_NOFILE ? EX_NOINPUT : EX_DATAERR;
	const char *secret = NULL;
	int rc = 0;
	if (msg_secret(cfg, &secret, err, errlen) < 0) {
		subs_close(sr);
		return EX_CONFIG;
	}
	/* preview and check look at the parts themselves */
	k = msg_new(&m, cfg, post, subs_colnames(sr), subs_ncols(sr), secret, MSG_KEEP_PARTS,
		    err, errlen);
	if (k < 0) {
		subs_close(sr);
		return k == MSG_NOFILE ? EX_NOINPUT : EX_DATAERR;
	}
	*mp = m;
	struct subs_row row;
	char why[512];
	int found = 0;
	while ((k = subs_next(sr, &row, why, sizeof why)) != SUBS_END) {
		if (k == SUBS_FATAL) {
			set_err(err, errlen, EX_DATAERR, "%s", why);
			rc = EX_DATAERR;
			break;
		}
		if (k == SUBS_BAD)
			continue;
		if ((as && !strcasecmp(row.email, as)) || (!as && k == SUBS_ROW)) {
			found = 1;
			snprintf(addr, addrlen, "%s", row.email);
			struct msg_out info;
			if (msg_build(m, row.fields, row.email, row.name, time(NULL), eml, &info,
				      why, sizeof why) != MSG_OK) {
				rc = set_err(err, errlen, EX_DATAERR, "%s:%ld: %s", cfg->subscribers, row.line, why);
			}
			break;
		}
	}
	if (!rc && !found)
		rc = set_err(err, errlen, EX_DATAERR, "%s: %s", cfg->subscribers,
			     as ? "no row with that address (--as)" : "no subscribed reader");
	subs_close(sr);
	return rc;
}

static double clip_percent(size_t bytes)
{
	return 100.0 * (double)bytes / LINT_CLIP_BYTES;
}

/* Desktop and phone pictures of the HTML part, when a Chromium is there;
 * its absence is said, not an error. */
static int screenshots(struct ui *u, const char *dir, const char *slug, char *err, size_t errlen)
{
	char browser[4096];
	if (!preview_find_browser(browser, sizeof browser)) {
		if (!u->quiet)
			printf("screenshots skipped: no chromium found (apt-get install chromium, or set $HERALD_CHROMIUM)\n");
		return 0;
	}
	static const struct { const char *name; int w, h; } shots[] = {
		{"desktop", 1200, 2000}, {"mobile", 390, 2000}};
	char html[4096];
	snprintf(html, sizeof html, "%s/%s.html", dir, slug);
	for (size_t i = 0; i < sizeof shots / sizeof *shots; i++) {
		char png[4096];
		int w, h;
		snprintf(png, sizeof png, "%s/%s-%s.png", dir, slug, shots[i].name);
		if (preview_screenshot(browser, html, png, shots[i].w, shots[i].h, err, errlen) < 0)
			return EX_UNAVAILABLE;
		if (!u->quiet && preview_png_size(png, &w, &h) == 0)
			printf("%-44s %5d x %d px, %s, images not loaded (network off)\n", png, w, h,
			       shots[i].name);
	}
	return 0;
}

static int cmd_preview(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	static const struct option lo[] = {{"as", required_argument, 0, OPT_AS},
		{"no-screenshots", no_argument, 0, OPT_NOSHOTS}, {0, 0, 0, 0}};
	const char *dir = ".", *as = NULL;
	int c, shots = 1;
	optind = 0; /* 0: glibc re-reads the optstring, so options may follow operands */
	while ((c = getopt_long(argc, argv, "o:", lo, NULL)) != -1) {
		if (c == 'o')
			dir = optarg;
		else if (c == OPT_AS)
			as = optarg;
		else if (c == OPT_NOSHOTS)
			shots = 0;
		else
			return usage_error("%s", "preview: unknown option");
	}
	if (optind != argc - 1)
		return usage_error("%s", "preview: expected one POST.md");
	struct config cfg;
	struct post post = {0};
	struct msg_ctx *m = NULL;
	struct buf eml = {0};
	char err[1024] = "", addr[512] = "";
	int rc = load_config(cfgpath, &cfg);
	if (!rc)
		rc = load_post(&cfg, argv[optind], &post);
	if (!rc)
		rc = build_one(&cfg, &post, as, &m, &eml, addr, sizeof addr, err, sizeof err);
	if (!rc && mkdir(dir, 0755) < 0 && errno != EEXIST)
		rc = set_err(err, sizeof err, EX_CANTCREAT, "%s: %s", dir, strerror(errno));
	struct msg_parts parts = {0};
	if (!rc)
		msg_last_parts(m, &parts);
	/* What each file is, with the size it has on the wire. */
	char what[3][700];
	snprintf(what[0], sizeof what[0], "HTML part, %zu quoted-printable",
		 parts.qp_html ? parts.qp_html->len : 0);
	snprintf(what[1], sizeof what[1], "text part, %zu quoted-printable",
		 parts.qp_text ? parts.qp_text->len : 0);
	snprintf(what[2], sizeof what[2], "whole message to %s: %.0f%% of Gmail's 102 KB clip size",
		 addr, clip_percent(eml.len));
	const struct { const char *ext; const struct buf *b; } outs[] = {
		{"html", parts.html}, {"txt", parts.text}, {"eml", &eml}};
	for (size_t i = 0; !rc && i < 3; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.%s", dir, post.slug, outs[i].ext);
		if (write_whole(path, outs[i].b->p ? outs[i].b->p : "", outs[i].b->len, err, sizeof err) < 0)
			rc = EX_CANTCREAT;
		else if (!u->quiet)
			printf("%-44s %8zu bytes  %s\n", path, outs[i].b->len, what[i]);
	}
	if (!rc && eml.len > LINT_CLIP_BYTES)
		fprintf(stderr, "herald: warning: the message is over 102 KB: Gmail will clip it (see herald check)\n");
	if (!rc && shots)
		rc = screenshots(u, dir, post.slug, err, sizeof err);
	if (rc && *err)
		say_err(err);
	buf_free(&eml);
	msg_free(m);
	post_free(&post);
	config_free(&cfg);
	return rc;
}

static int check_list(struct ui *u, const char *path, long *good)
{
	struct subs_reader *sr;
	char err[1024];
	int k = subs_open(&sr, path, err, sizeof err);
	if (k) {
		say_err(err);
		return k == SUBS_NOFILE ? EX_NOINPUT : EX_DATAERR;
	}
	long ok = 0, bad = 0, inactive = 0;
	struct subs_row row;
	int rc = 0;
	while ((k = subs_next(sr, &row, err, sizeof err)) != SUBS_END) {
		if (k == SUBS_ROW)
			ok++;
		else if (k == SUBS_INACTIVE)
			inactive++;
		else if (k == SUBS_BAD) {
			say_err(err);
			bad++;
		} else {
			say_err(err);
			rc = EX_DATAERR;
			break;
		}
	}
	subs_close(sr);
	if (!u->quiet)
		printf("%s: %ld subscribed, %ld not subscribed, %ld bad row%s\n", path, ok, inactive,
		       bad, bad == 1 ? "" : "s");
	if (good)
		*good = ok;
	return rc;
}

/* Built-in field names, then the list's columns (copied: the reader
 * that owns them is closed here). */
static int field_names(const char *list, char ***out, size_t *n)
{
	struct subs_reader *sr;
	char err[512];
	*out = NULL;
	*n = 0;
	if (subs_open(&sr, list, err, sizeof err))
		return -1;
	size_t nc = subs_ncols(sr);
	char **v = calloc(MF_NBUILTIN + nc, sizeof *v);
	int rc = v ? 0 : -1;
	for (size_t i = 0; v && i < MF_NBUILTIN + nc; i++) {
		v[i] = xstrdup(i < MF_NBUILTIN ? msg_builtin_fields[i] : subs_colnames(sr)[i - MF_NBUILTIN]);
		rc |= v[i] ? 0 : -1;
	}
	subs_close(sr);
	*out = v;
	*n = v ? MF_NBUILTIN + nc : 0;
	return rc;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Lints both layout templates; one that cannot be read is left to the
 * message build, which reports it with exit 66. */
static int lint_templates(struct lint *l, const struct config *cfg, char **names, size_t nn)
{
	static const char *const exts[] = {"html", "txt"};
	for (size_t i = 0; i < 2; i++) {
		char *path, *src;
		size_t len;
		if (asprintf(&path, "%s/%s.%s", cfg->templates, cfg->template_name, exts[i]) < 0)
			return -1;
		int rc = 0;
		if (read_file(path, &src, &len) == 0) {
			rc = lint_template(l, path, src, i == 0, (const char *const *)names, nn);
			free(src);
		}
		free(path);
		if (rc < 0)
			return -1;
	}
	return 0;
}

static int cmd_check(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (argc != 2)
		return usage_error("%s", "check: expected one POST.md");
	struct config cfg;
	struct post post = {0};
	struct msg_ctx *m = NULL;
	struct buf eml = {0};
	struct lint l = {0};
	char **names = NULL;
	size_t nn = 0;
	char err[1024] = "", addr[512] = "";
	long good = 0;
	int rc = load_config(cfgpath, &cfg);
	if (!rc)
		rc = load_post(&cfg, argv[1], &post);
	if (!rc)
		rc = check_slug(argv[1], post.slug);
	if (!rc)
		rc = check_list(u, cfg.subscribers, &good);
	if (rc)
		goto out;
	if (field_names(cfg.subscribers, &names, &nn) < 0 || lint_config(&l, &cfg) < 0 ||
	    lint_post(&l, &post, (const char *const *)names, nn) < 0 ||
	    lint_templates(&l, &cfg, names, nn) < 0) {
		say_err("out of memory");
		rc = EX_OSERR;
		goto out;
	}
	/* With unknown fields the build would only repeat them, less precisely. */
	if (good && !l.field_errors) {
		rc = build_one(&cfg, &post, NULL, &m, &eml, addr, sizeof addr, err, sizeof err);
		if (rc && *err)
			say_err(err);
		char what[1024];
		snprintf(what, sizeof what, "%s (message to %s)", post.path, addr);
		struct msg_parts parts;
		if (!rc)
			msg_last_parts(m, &parts);
		if (!rc && lint_message(&l, what, eml.len, parts.subject) < 0)
			rc = EX_OSERR;
	}
	int config_errors = 0;
	for (size_t i = 0; i < l.n; i++) {
		const struct lint_item *it = &l.items[i];
		config_errors |= it->level == LINT_ERROR && it->area == LINT_CONFIG;
		if (it->level == LINT_ERROR || !u->quiet)
			fprintf(stderr, "herald: %s: %s: %s\n", it->where,
				it->level == LINT_ERROR ? "error" : "warning", it->msg);
	}
	if (!rc && l.errors)
		rc = config_errors ? EX_CONFIG : EX_DATAERR;
	if (!u->quiet && (!rc || l.errors)) {
		printf("%s: %zu error%s, %zu warning%s", argv[1], l.errors, l.errors == 1 ? "" : "s",
		       l.warnings, l.warnings == 1 ? "" : "s");
		if (eml.len)
			printf("; %zu bytes for %s (%.0f%% of Gmail's 102 KB clip size)", eml.len, addr,
			       clip_percent(eml.len));
		printf("\n");
	}
out:
	free_names(names, nn);
	lint_free(&l);
	buf_free(&eml);
	msg_free(m);
	post_free(&post);
	config_free(&cfg);
	return rc;
}

static void print_bounce(void *arg, const struct bounce_entry *e)
{
	(void)arg;
	char why[64];
	if (e->count > 1)
		snprintf(why, sizeof why, "%d soft bounces, last", e->count);
	else
		snprintf(why, sizeof why, "%s", e->kind);
	printf("%s\t%s\t%s %s %d\t%s\t%s\n", e->addr, e->when, why, e->status, e->code,
	       e->slug, e->text);
}

static void on_note(void *arg, const char *msg)
{
	struct ui *u = arg;
	if (u->verbose)
		printf("%s\n", msg);
	else if (!strncmp(msg, "refused: ", 9))
		say_err(msg);
}

static int scan_exit(int rc)
{
	switch (rc) {
	case SCAN_OK: return 0;
	case SCAN_USAGE: return EX_USAGE;
	case SCAN_CONFIG: return EX_CONFIG;
	case SCAN_NOFILE: return EX_NOINPUT;
	case SCAN_MAILBOX: return EX_UNAVAILABLE;
	case SCAN_LIST: return EX_DATAERR;
	default: return EX_CANTCREAT;
	}
}

/* Options shared by `bounces scan` and `subscribers unsubscribe`:
 * [SOURCE] [--delete]. Fills the mailbox options from the config group;
 * *password is the caller's to wipe and free. */
static int mailbox_args(const struct config *cfg, const struct mailbox_conf *mc, const char *what,
			int argc, char **argv, struct mailbox_opts *mo, char **password,
			char *seen, size_t seenlen)
{
	static const struct option lo[] = {{"delete", no_argument, 0, 'd'}, {0, 0, 0, 0}};
	int c;
	memset(mo, 0, sizeof *mo);
	*password = NULL;
	optind = 0;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c != 'd')
			return usage_error("%s: unknown option", what);
		mo->delete = 1;
	}
	if (argc - optind > 1)
		return usage_error("%s: expected one SOURCE", what);
	mo->source = optind < argc ? argv[optind] : mc->url;
	if (!mo->source)
		return usage_error("%s: no SOURCE, and no %s.mailbox.url in the config", what,
				   strcmp(what, "bounces scan") ? "unsubscribe" : "bounce");
	mo->username = mc->username;
	mo->ca_file = mc->ca_file;
	mo->starttls = mc->starttls;
	mo->timeout = mc->timeout;
	mo->move_to = mc->move_to;
	snprintf(seen, seenlen, "%s/mailbox.seen", cfg->state_dir);
	mo->seen_path = seen;
	if (!strncmp(mo->source, "imap", 4) || !strncmp(mo->source, "pop3", 4)) {
		char err[512];
		char group[40];
		snprintf(group, sizeof group, "%s.mailbox", strcmp(what, "bounces scan") ? "unsubscribe" : "bounce");
		int k = config_mailbox_password(cfg, mc, group, password, err, sizeof err);
		if (k < 0) {
			say_err(err);
			return config_exitcode(k);
		}
		mo->password = *password;
	}
	return 0;
}

static int bounces_scan(struct ui *u, const struct config *cfg, int argc, char **argv)
{
	struct mailbox_opts mo;
	char *password = NULL, seen[4096], err[1024] = "";
	int rc = mailbox_args(cfg, &cfg->bounce.mailbox, "bounces scan", argc, argv, &mo, &password,
			      seen, sizeof seen);
	if (rc)
		return rc;
	struct scan_cb cb = {on_note, on_warn, u};
	struct scan_stats st;
	rc = scan_exit(scan_bounces(cfg, &mo, &cb, &st, err, sizeof err));
	secret_free(&password);
	if (rc)
		say_err(err);
	if (!u->quiet && (st.messages || !rc))
		printf("%ld message%s: %ld hard, %ld soft, %ld complaint%s (%ld line%s logged); "
		       "%ld delayed, %ld already logged, %ld with nothing failed, %ld not bounces, "
		       "%ld unresolved%s%s\n",
		       st.messages, st.messages == 1 ? "" : "s", st.hard, st.soft, st.complaints,
		       st.complaints == 1 ? "" : "s", st.lines, st.lines == 1 ? "" : "s", st.delayed,
		       st.duplicates, st.no_failure, st.ignored, st.unresolved,
		       st.messages ? "; processed: " : "", st.messages ? st.action : "");
	return rc;
}

static int bounces_forget_cmd(struct ui *u, const struct config *cfg, int argc, char **argv)
{
	if (argc < 3)
		return usage_error("%s", "bounces forget: expected ADDR...");
	struct bounces b;
	char err[512];
	if (state_mkdir(cfg->state_dir, err, sizeof err) < 0 ||
	    bounces_open(&b, cfg->state_dir, cfg->bounce.soft_limit,
			 &(struct statefile_warn){on_warn, u}, err, sizeof err) < 0) {
		say_err(err);
		return EX_CANTCREAT;
	}
	int rc = 0;
	for (int i = 2; i < argc && !rc; i++) {
		char why[100];
		int was = 0;
		if (addr_valid(argv[i], why, sizeof why) < 0) {
			rc = usage_error("bounces forget: not an address: %s", argv[i]);
		} else if (bounces_forget(&b, argv[i], &was, err, sizeof err) < 0) {
			say_err(err);
			rc = EX_CANTCREAT;
		} else if (!u->quiet) {
			printf("%s: %s\n", argv[i], was ? "no longer suppressed" : "was not suppressed (its history is cleared)");
		}
	}
	bounces_close(&b);
	return rc;
}

static int cmd_bounces(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : "";
	if (strcmp(sub, "list") && strcmp(sub, "scan") && strcmp(sub, "forget"))
		return usage_error("%s", "bounces: expected \"scan\", \"list\" or \"forget\"");
	struct config cfg;
	int rc = load_config(cfgpath, &cfg);
	if (rc) {
		config_free(&cfg); /* a config that failed half-way holds strings */
		return rc;
	}
	char err[512];
	if (!strcmp(sub, "scan"))
		rc = bounces_scan(u, &cfg, argc - 1, argv + 1);
	else if (!strcmp(sub, "forget"))
		rc = bounces_forget_cmd(u, &cfg, argc, argv);
	else if (bounces_each_suppressed(cfg.state_dir, cfg.bounce.soft_limit, print_bounce, NULL,
					 err, sizeof err) < 0) {
		say_err(err);
		rc = EX_IOERR;
	}
	config_free(&cfg);
	return rc;
}

static int unsubscribe_addresses(struct ui *u, const char *list, int argc, char **argv)
{
	const char **addrs = calloc((size_t)argc, sizeof *addrs);
	enum unsub_result *res = calloc((size_t)argc, sizeof *res);
	size_t n = 0;
	int rc = 0;
	if (!addrs || !res)
		rc = EX_OSERR;
	for (int i = 0; !rc && i < argc; i++) {
		char why[100];
		if (!strcmp(argv[i], "--address"))
			continue;
		if (addr_valid(argv[i], why, sizeof why) < 0)
			rc = usage_error("subscribers unsubscribe: not an address: %s (%s)", argv[i], why);
		addrs[n++] = argv[i];
	}
	char err[1024];
	int k = rc ? 0 : unsub_apply(list, addrs, n, res, err, sizeof err);
	if (k) {
		say_err(err);
		rc = k == UNSUB_ERR_NOFILE ? EX_NOINPUT : k == UNSUB_ERR_LIST ? EX_DATAERR : EX_CANTCREAT;
	}
	for (size_t i = 0; !rc && i < n; i++) {
		if (res[i] == UNSUB_NOT_LISTED) {
			fprintf(stderr, "herald: %s: not in %s\n", addrs[i], list);
			rc = EX_DATAERR;
		} else if (!u->quiet)
			printf("%s: %s\n", addrs[i], res[i] == UNSUB_CHANGED ? "unsubscribed" : "was already unsubscribed");
	}
	free(addrs);
	free(res);
	return rc;
}

static int subscribers_unsubscribe(struct ui *u, const struct config *cfg, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--address"))
			return i + 1 < argc ? unsubscribe_addresses(u, cfg->subscribers, argc - 1, argv + 1)
				: usage_error("%s", "subscribers unsubscribe: --address needs ADDR");
	struct mailbox_opts mo;
	char *password = NULL, seen[4096], err[1024] = "";
	int rc = mailbox_args(cfg, &cfg->unsub.mailbox, "subscribers unsubscribe", argc, argv, &mo,
			      &password, seen, sizeof seen);
	if (rc)
		return rc;
	struct scan_cb cb = {on_note, on_warn, u};
	struct scan_stats st;
	rc = scan_exit(scan_unsubscribes(cfg, &mo, cfg->subscribers, &cb, &st, err, sizeof err));
	secret_free(&password);
	if (rc)
		say_err(err);
	if (!u->quiet && (st.messages || !rc))
		printf("%ld message%s: %ld unsubscribed, %ld already, %ld not in the list, %ld refused, "
		       "%ld not requests%s%s\n", st.messages, st.messages == 1 ? "" : "s", st.unsubscribed,
		       st.already, st.not_listed, st.refused, st.ignored,
		       st.messages ? "; processed: " : "", st.messages ? st.action : "");
	return rc;
}

static int cmd_subscribers(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "unsubscribe")) {
		struct config cfg;
		int rc = load_config(cfgpath, &cfg);
		if (!rc)
			rc = subscribers_unsubscribe(u, &cfg, argc - 1, argv + 1);
		config_free(&cfg);
		return rc;
	}
	if (argc < 2 || strcmp(argv[1], "check") || argc > 3)
		return usage_error("%s", "subscribers: expected \"check [FILE]\" or \"unsubscribe\"");
	if (argc == 3)
		return check_list(u, argv[2], NULL);
	struct config cfg;
	int rc = load_config(cfgpath, &cfg);
	if (!rc)
		rc = check_list(u, cfg.subscribers, NULL);
	config_free(&cfg);
	return rc;
}

int main(int argc, char **argv)
{
	struct ui u = {0};
	const char *cfgpath = NULL;
	static const struct option lo[] = {
		{"help", no_argument, 0, 'h'}, {"version", no_argument, 0, 'V'},
		{"config", required_argument, 0, 'c'}, {"quiet", no_argument, 0, 'q'},
		{"verbose", no_argument, 0, 'v'}, {0, 0, 0, 0}};
	int c;
	/* "+": stop at the command; its own options are parsed after. */
	while ((c = getopt_long(argc, argv, "+c:qvh", lo, NULL)) != -1) {
		switch (c) {
		case 'c': cfgpath = optarg; break;
		case 'q': u.quiet = 1; break;
		case 'v': u.verbose = 1; break;
		case 'h': fputs(usage, stdout); return 0;
		case 'V': printf("herald %s\n", HERALD_VERSION); return 0;
		default: fputs("Try 'herald --help'.\n", stderr); return EX_USAGE;
		}
	}
	if (optind >= argc)
		return usage_error("%s", "no command given");
	u.tty = isatty(STDERR_FILENO) && !u.quiet;
	char **av = argv + optind;
	int ac = argc - optind;
	const char *cmd = av[0];
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		say_err("cannot initialise libcurl");
		return EX_SOFTWARE;
	}
	int rc;
	if (!strcmp(cmd, "send"))
		rc = cmd_send(&u, cfgpath, ac, av);
	else if (!strcmp(cmd, "preview"))
		rc = cmd_preview(&u, cfgpath, ac, av);
	else if (!strcmp(cmd, "check"))
		rc = cmd_check(&u, cfgpath, ac, av);
	else if (!strcmp(cmd, "bounces"))
		rc = cmd_bounces(&u, cfgpath, ac, av);
	else if (!strcmp(cmd, "subscribers"))
		rc = cmd_subscribers(&u, cfgpath, ac, av);
	else if (!strcmp(cmd, "help"))
		rc = (fputs(usage, stdout), 0);
	else
		rc = usage_error("unknown command \"%s\"", cmd);
	curl_global_cleanup();
	return rc;
}
