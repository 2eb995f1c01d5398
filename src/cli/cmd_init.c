/* herald init [DIR]: a ready-to-edit newsletter directory (input/skel.c
 * writes it) and the commands that come next. */
#include "cli/cli.h"
#include "input/skel.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

/* The name that runs this binary again from another directory: "herald"
 * when that is what PATH finds, else the binary's absolute path, so the
 * printed commands work when pasted even from build/herald. */
static void self_name(char *out, size_t len)
{
	char self[PATH_MAX], cand[PATH_MAX], real[PATH_MAX];
	snprintf(out, len, "herald");
	if (!realpath("/proc/self/exe", self))
		return;
	const char *path = getenv("PATH");
	for (const char *p = path ? path : ""; *p;) {
		size_t n = strcspn(p, ":");
		if (n && snprintf(cand, sizeof cand, "%.*s/herald", (int)n, p) < (int)sizeof cand &&
		    realpath(cand, real) && !strcmp(real, self))
			return;    /* the first herald on PATH is this one */
		if (n && access(cand, X_OK) == 0)
			break;     /* another herald comes first */
		p += n + (p[n] == ':');
	}
	snprintf(out, len, "%s", self);
}

/* s as one shell word. */
static void sh_word(char *out, size_t len, const char *s)
{
	if (s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+:@%,")] == '\0' && *s) {
		snprintf(out, len, "%s", s);
		return;
	}
	size_t o = 0;
	if (o + 1 < len)
		out[o++] = '\'';
	for (; *s && o + 5 < len; s++) {
		if (*s == '\'') {
			memcpy(out + o, "'\\''", 4);
			o += 4;
		} else {
			out[o++] = *s;
		}
	}
	if (o + 1 < len)
		out[o++] = '\'';
	out[o] = '\0';
}

static void next_steps(const char *dir, const char *post)
{
	char self[PATH_MAX], qdir[2 * PATH_MAX], qpost[256];
	self_name(self, sizeof self);
	sh_word(qdir, sizeof qdir, dir);
	sh_word(qpost, sizeof qpost, post);
	int here = !strcmp(dir, ".");
	printf("herald: started a newsletter in %s/: herald.conf, %s, subscribers.csv, state/\n",
	       dir, post);
	printf("Next:\n"
	       "  1. edit %s%sherald.conf where it says TO EDIT (from, list_id, unsubscribe, smtp.url,\n"
	       "     test.to), and put your readers in subscribers.csv\n"
	       "  2. export HERALD_SECRET=$(openssl rand -hex 32)   # once, and keep it: it signs the unsubscribe links\n",
	       here ? "" : dir, here ? "" : "/");
	printf("  3. %s%s%s%s check %s && %s send --test %s\n", here ? "" : "cd ", here ? "" : qdir,
	       here ? "" : " && ", self, qpost, self, qpost);
}

int cmd_init(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (cfgpath)
		return cli_usage("%s", "init writes DIR/herald.conf; -c does not apply to it");
	if (argc > 2)
		return cli_usage("%s", "init: expected at most one DIR");
	if (argc == 2 && argv[1][0] == '-')
		return cli_usage("init: unknown option \"%s\" (expected: init [DIR])", argv[1]);
	char dir[PATH_MAX];
	snprintf(dir, sizeof dir, "%s", argc == 2 && *argv[1] ? argv[1] : ".");
	for (size_t l = strlen(dir); l > 1 && dir[l - 1] == '/';)
		dir[--l] = '\0';
	char date[16], post[96], err[2048];
	time_t now = time(NULL);
	strftime(date, sizeof date, "%Y-%m-%d", localtime(&now));
	int rc = skel_write(dir, date, post, sizeof post, err, sizeof err);
	if (rc) {
		cli_err(err);
		return skel_exitcode(rc);
	}
	if (!u->quiet)
		next_steps(dir, post);
	return 0;
}
