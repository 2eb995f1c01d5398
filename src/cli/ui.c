/* What every command shares: printing errors and warnings, usage
 * errors, loading the config and the post. */
#include "cli/cli.h"
#include "compose/post.h"
#include "input/config.h"
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sysexits.h>

void cli_err(const char *msg)
{
	fprintf(stderr, "herald: %s\n", msg);
}

int cli_usage(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "herald: ");
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'herald --help'.\n");
	return EX_USAGE;
}

void cli_clear_progress(struct ui *u)
{
	if (u->progress_shown) {
		fputs("\r\033[K", stderr);
		u->progress_shown = 0;
	}
}

void cli_on_warn(void *arg, const char *msg)
{
	struct ui *u = arg;
	cli_clear_progress(u);
	cli_err(msg);
}

int cli_load_config(const char *path, struct config *cfg)
{
	char err[512];
	int rc = config_load(cfg, path, err, sizeof err);
	if (rc) {
		cli_err(err);
		/* No config file at all is a missing file (66), as README's
		 * table says; one that is there but wrong is 78. */
		return rc == CONFIG_NOFILE ? EX_NOINPUT : EX_CONFIG;
	}
	return 0;
}

int cli_load_post(const struct config *cfg, const char *path, struct post *p)
{
	char err[512];
	int flags = (cfg->unsafe_html ? POST_UNSAFE_HTML : 0) | (cfg->merge_code ? POST_MERGE_CODE : 0);
	int rc = post_load_opts(p, path, TEXT_WIDTH, flags, err, sizeof err);
	if (rc) {
		cli_err(err);
		return post_exitcode(rc);
	}
	return 0;
}

int cli_need_list(const struct config *cfg, const char *path)
{
	char err[8192];
	int rc = path == cfg->subscribers ? config_readable(cfg, "subscribers", err, sizeof err) : 0;
	if (rc)
		cli_err(err);
	return config_exitcode(rc);
}

/* SIGTERM (systemd stop, timeout) or SIGINT (Ctrl-C): send and serve
 * finish what is under way and stop. The one piece of global mutable
 * state in herald, because a signal handler can reach nothing else:
 * written once by the handler (any thread), read through
 * cli_stop_signal(). SA_RESETHAND gives the signal its default action
 * back, so a second one ends herald at once, wherever it is waiting. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

void cli_catch_stop_signals(void)
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

int cli_stop_signal(void)
{
	return stop_signal;
}
