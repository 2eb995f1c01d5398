/* herald serve [--port-file FILE]: the web side (web/serve.h). */
#include "cli/cli.h"
#include "input/config.h"
#include "web/serve.h"
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

struct serve_ui {
	struct ui *u;
	const char *port_file;
	int port_file_failed;
};

static int serve_stop(void *arg)
{
	struct serve_ui *s = arg;
	struct ui *u = s->u;
	if (u->stopping || !cli_stop_signal())
		return u->stopping != 0;
	u->stopping = cli_stop_signal();
	fprintf(stderr, "herald: serve: %s: answering the requests under way, then stopping\n",
		u->stopping == SIGINT ? "interrupted" : "terminated");
	return 1;
}

/* The port, once listening: on stderr, and in --port-file (written to a
 * temporary name and renamed, so whoever waits for it never reads half
 * a number). web.listen port 0 picks a free one, for tests. */
static void serve_ready(void *arg, int port)
{
	struct serve_ui *s = arg;
	if (!s->u->quiet)
		fprintf(stderr, "herald: serve: listening on port %d\n", port);
	if (!s->port_file)
		return;
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", s->port_file);
	FILE *f = fopen(tmp, "w");
	if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, s->port_file) < 0) {
		fprintf(stderr, "herald: %s: %s\n", s->port_file, strerror(errno));
		s->port_file_failed = 1;
		/* Nobody would learn the port: stop. */
		raise(SIGTERM);
	}
}

/* One line per request on stdout (systemd's journal takes it). */
static void serve_log(void *arg, const char *line)
{
	struct serve_ui *s = arg;
	if (!s->u->quiet) {
		printf("%s\n", line);
		fflush(stdout);
	}
}

static void serve_warn(void *arg, const char *msg)
{
	(void)arg;
	cli_err(msg);
}

int cmd_serve(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	static const struct option lo[] = {{"port-file", required_argument, 0, 'p'}, {0, 0, 0, 0}};
	struct serve_ui s = {.u = u};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		if (c == 'p')
			s.port_file = optarg;
		else
			return cli_usage("%s", "serve: expected [--port-file FILE]");
	}
	if (optind < argc)
		return cli_usage("serve: unexpected argument \"%s\"", argv[optind]);
	struct config cfg;
	int rc = cli_load_config(cfgpath, &cfg);
	if (!rc) {
		cli_catch_stop_signals();
		struct web_opts o = {serve_stop, serve_ready, serve_log, serve_warn, &s};
		char err[1024];
		int k = web_serve(&cfg, &o, err, sizeof err);
		if (k) {
			cli_err(err);
			rc = web_exitcode(k);
		} else if (s.port_file_failed) {
			rc = EX_CANTCREAT;
		}
	}
	config_free(&cfg);
	return rc;
}
