/* herald archive OUTDIR: the web archive as static files, for authors who
 * publish a directory instead of running herald serve. */
#include "cli/cli.h"
#include "input/config.h"
#include "web/archive.h"
#include <stdio.h>
#include <sysexits.h>

int cmd_archive(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage("%s", "archive: expected OUTDIR");
	struct config cfg;
	int rc = cli_load_config(cfgpath, &cfg);
	char err[4200] = "";
	size_t n = 0;
	if (!rc && (rc = archive_exitcode(archive_write(&cfg, argv[1], &n, err, sizeof err))))
		cli_err(err);
	if (!rc && !u->quiet)
		printf("%s: %zu issue%s, index.html and feed.xml\n", argv[1], n, n == 1 ? "" : "s");
	config_free(&cfg);
	return rc;
}
