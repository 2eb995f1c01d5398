/* herald subscribers check|unsubscribe. */
#include "cli/cli.h"
#include "input/config.h"
#include "mailbox/mailbox.h"
#include "mailbox/scan.h"
#include "mailbox/unsubscribe.h"
#include "input/subs_edit.h"
#include "util/addr.h"
#include "util/buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

static int unsubscribe_addresses(struct ui *u, const char *list, char sep, int argc, char **argv)
{
	const char **addrs = calloc((size_t)argc, sizeof *addrs);
	enum subs_edit_result *res = calloc((size_t)argc, sizeof *res);
	size_t n = 0;
	int rc = 0;
	if (!addrs || !res)
		rc = EX_OSERR;
	for (int i = 0; !rc && i < argc; i++) {
		char why[100];
		if (!strcmp(argv[i], "--address"))
			continue;
		if (addr_valid(argv[i], why, sizeof why) < 0)
			rc = cli_usage("subscribers unsubscribe: not an address: %s (%s)", argv[i], why);
		addrs[n++] = argv[i];
	}
	char err[1024];
	int k = rc ? 0 : subs_edit_unsubscribe(list, sep, addrs, n, res, err, sizeof err);
	if (k) {
		cli_err(err);
		rc = subs_edit_exitcode(k);
	}
	for (size_t i = 0; !rc && i < n; i++) {
		if (res[i] == SUBS_EDIT_NOT_LISTED) {
			fprintf(stderr, "herald: %s: not in %s\n", addrs[i], list);
			rc = EX_DATAERR;
		} else if (!u->quiet)
			printf("%s: %s\n", addrs[i], res[i] == SUBS_EDIT_CHANGED ? "unsubscribed" : "was already unsubscribed");
	}
	free(addrs);
	free(res);
	return rc;
}

static int subscribers_unsubscribe(struct ui *u, const struct config *cfg, int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--address"))
			return i + 1 < argc ? unsubscribe_addresses(u, cfg->subscribers, cfg->subs_delim, argc - 1, argv + 1)
				: cli_usage("%s", "subscribers unsubscribe: --address needs ADDR");
	struct mailbox_opts mo;
	char *password = NULL, seen[4096], err[1024] = "";
	int rc = cli_mailbox_args(cfg, &cfg->unsub.mailbox, "subscribers unsubscribe", argc, argv, &mo,
			      &password, seen, sizeof seen);
	if (rc)
		return rc;
	struct scan_cb cb = {cli_on_note, cli_on_warn, u};
	struct scan_stats st;
	rc = scan_exitcode(scan_unsubscribes(cfg, &mo, cfg->subscribers, &cb, &st, err, sizeof err));
	secret_free(&password);
	if (rc)
		cli_err(err);
	if (!u->quiet && (st.messages || !rc))
		printf("%ld message%s: %ld unsubscribed, %ld already, %ld not in the list, %ld refused, "
		       "%ld not requests%s%s\n", st.messages, st.messages == 1 ? "" : "s", st.unsubscribed,
		       st.already, st.not_listed, st.refused, st.ignored,
		       st.messages ? "; processed: " : "", st.messages ? st.action : "");
	return rc;
}

int cmd_subscribers(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "unsubscribe")) {
		struct config cfg;
		int rc = cli_load_config(cfgpath, &cfg);
		if (!rc)
			rc = subscribers_unsubscribe(u, &cfg, argc - 1, argv + 1);
		config_free(&cfg);
		return rc;
	}
	if (argc < 2 || strcmp(argv[1], "check") || argc > 3)
		return cli_usage("%s", "subscribers: expected \"check [FILE]\" or \"unsubscribe\"");
	/* With FILE the config is optional, but when there is one its
	 * subscribers_delimiter holds: check and send must agree on rows. */
	struct config cfg;
	char err[1024];
	int k = config_load(&cfg, cfgpath, err, sizeof err);
	int rc = 0;
	if (k && !(argc == 3 && k == CONFIG_NOFILE && !cfgpath)) {
		cli_err(err);
		rc = k == CONFIG_NOFILE ? EX_NOINPUT : EX_CONFIG; /* as cli_load_config */
	} else if (argc == 3) {
		rc = cli_check_list(u, argv[2], k ? ',' : cfg.subs_delim, NULL);
	} else if (!(rc = cli_need_list(&cfg, cfg.subscribers))) {
		rc = cli_check_list(u, cfg.subscribers, cfg.subs_delim, NULL);
	}
	config_free(&cfg);
	return rc;
}
