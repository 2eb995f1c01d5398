/* herald state merge DIR... [--into DIR]: the hosts' state directories
 * of a sharded send folded into one (state/merge.c does the work). */
#include "cli/cli.h"
#include "input/config.h"
#include "state/merge.h"
#include "util/buf.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static void on_file(void *arg, const char *name, long lines, long added)
{
	struct ui *u = arg;
	if (!u->quiet)
		printf("%s: %ld line%s, %ld from the other directories%s\n", name, lines,
		       lines == 1 ? "" : "s", added, added ? "" : " (unchanged)");
}

static void on_done(void *arg, const char *slug, int done, const char *why)
{
	struct ui *u = arg;
	if (u->quiet)
		return;
	if (done)
		printf("%s: sent to the whole list (%s.done)\n", slug, slug);
	else
		printf("%s: shards %s; not marked done\n", slug, why);
}

static int state_merge_cmd(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	static const struct option lo[] = {{"into", required_argument, 0, 'i'}, {0, 0, 0, 0}};
	const char *into = NULL;
	int c;
	optind = 0; /* options may follow the directories */
	while ((c = getopt_long(argc, argv, ":", lo, NULL)) != -1) {
		if (c == 'i')
			into = optarg;
		else if (c == ':')
			return cli_usage("%s", "state merge: --into needs a directory");
		else
			return cli_usage("state merge: unknown option %s", argv[optind - 1]);
	}
	if (optind >= argc)
		return cli_usage("%s", "state merge: expected DIR... (the state directories of the "
				 "other hosts)");
	struct config cfg;
	int loaded = 0, rc = 0;
	if (!into) {
		if ((rc = cli_load_config(cfgpath, &cfg))) {
			config_free(&cfg);
			return rc;
		}
		loaded = 1;
		into = cfg.state_dir;
	}
	char err[1024] = "";
	struct state_merge_cb cb = {cli_on_warn, on_file, on_done, u};
	rc = state_merge(into, (const char *const *)argv + optind, (size_t)(argc - optind), &cb, err,
			 sizeof err);
	if (rc == EX_USAGE)
		rc = cli_usage("state merge: %s", err);
	else if (rc)
		cli_err(err);
	else if (!u->quiet)
		printf("merged into %s\n", into);
	if (loaded)
		config_free(&cfg);
	return rc;
}

int cmd_state(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "merge"))
		return state_merge_cmd(u, cfgpath, argc - 1, argv + 1);
	return cli_usage("%s", argc < 2 ? "state: expected a subcommand: merge"
			 : "state: unknown subcommand (expected: merge)");
}
