/* herald bounces scan|list|forget, and the mailbox options that
 * `subscribers unsubscribe` shares. */
#include "cli/cli.h"
#include "input/config.h"
#include "mailbox/mailbox.h"
#include "mailbox/scan.h"
#include "state/bounces.h"
#include "state/state.h"
#include "util/addr.h"
#include "util/buf.h"
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

static void print_bounce(void *arg, const struct bounce_entry *e)
{
	(*(long *)arg)++;
	char why[64];
	if (e->count > 1)
		snprintf(why, sizeof why, "%d soft bounces, last", e->count);
	else
		snprintf(why, sizeof why, "%s", e->kind);
	printf("%s\t%s\t%s %s %d\t%s\t%s\n", e->addr, e->when, why, e->status, e->code,
	       e->slug, e->text);
}

void cli_on_note(void *arg, const char *msg)
{
	struct ui *u = arg;
	if (u->verbose)
		printf("%s\n", msg);
	else if (!strncmp(msg, "refused: ", 9))
		cli_err(msg);
}

/* Options shared by `bounces scan` and `subscribers unsubscribe`:
 * [SOURCE] [--delete]. Fills the mailbox options from the config group;
 * *password is the caller's to wipe and free. */
int cli_mailbox_args(const struct config *cfg, const struct mailbox_conf *mc, const char *what,
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
			return cli_usage("%s: unknown option", what);
		mo->delete = 1;
	}
	if (argc - optind > 1)
		return cli_usage("%s: expected one SOURCE", what);
	mo->source = optind < argc ? argv[optind] : mc->url;
	if (!mo->source)
		return cli_usage("%s: no SOURCE, and no %s.mailbox.url in the config", what,
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
			cli_err(err);
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
	int rc = cli_mailbox_args(cfg, &cfg->bounce.mailbox, "bounces scan", argc, argv, &mo, &password,
			      seen, sizeof seen);
	if (rc)
		return rc;
	struct scan_cb cb = {cli_on_note, cli_on_warn, u};
	struct scan_stats st;
	rc = scan_exitcode(scan_bounces(cfg, &mo, &cb, &st, err, sizeof err));
	secret_free(&password);
	if (rc)
		cli_err(err);
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
		return cli_usage("%s", "bounces forget: expected ADDR...");
	struct bounces b;
	char err[512];
	if (state_mkdir(cfg->state_dir, err, sizeof err) < 0 ||
	    bounces_open(&b, cfg->state_dir, cfg->bounce.soft_limit,
			 &(struct statefile_warn){cli_on_warn, u}, err, sizeof err) < 0) {
		cli_err(err);
		return EX_CANTCREAT;
	}
	int rc = 0;
	for (int i = 2; i < argc && !rc; i++) {
		char why[100];
		int was = 0;
		if (addr_valid(argv[i], why, sizeof why) < 0) {
			rc = cli_usage("bounces forget: not an address: %s (%s)", argv[i], why);
		} else if (bounces_forget(&b, argv[i], &was, err, sizeof err) < 0) {
			cli_err(err);
			rc = EX_CANTCREAT;
		} else if (!u->quiet) {
			printf("%s: %s\n", argv[i], was ? "no longer suppressed" : "was not suppressed (its history is cleared)");
		}
	}
	bounces_close(&b);
	return rc;
}

/* The list is TSV on stdout for scripts; that it is empty is said on
 * stderr, so a pipe reads nothing rather than a sentence. */
static int bounces_list(struct ui *u, const struct config *cfg)
{
	char err[512];
	long n = 0;
	if (bounces_each_suppressed(cfg->state_dir, cfg->bounce.soft_limit, print_bounce, &n,
				    err, sizeof err) < 0) {
		cli_err(err);
		return EX_IOERR;
	}
	if (!n && !u->quiet)
		fprintf(stderr, "nobody is suppressed: no hard bounce, complaint or %d soft bounce%s in "
			"a row in %s/bounces.log\n", cfg->bounce.soft_limit,
			cfg->bounce.soft_limit == 1 ? "" : "s", cfg->state_dir);
	return 0;
}

int cmd_bounces(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	const char *sub = argc >= 2 ? argv[1] : "";
	if (strcmp(sub, "list") && strcmp(sub, "scan") && strcmp(sub, "forget"))
		return cli_usage("%s", "bounces: expected \"scan\", \"list\" or \"forget\"");
	struct config cfg;
	int rc = cli_load_config(cfgpath, &cfg);
	if (rc) {
		config_free(&cfg); /* a config that failed half-way holds strings */
		return rc;
	}
	if (!strcmp(sub, "scan"))
		rc = bounces_scan(u, &cfg, argc - 1, argv + 1);
	else if (!strcmp(sub, "forget"))
		rc = bounces_forget_cmd(u, &cfg, argc, argv);
	else
		rc = bounces_list(u, &cfg);
	config_free(&cfg);
	return rc;
}
