/* herald: global options and the command table. The commands are in
 * cmd_*.c; only the cli layer prints or exits. */
#include "cli/cli.h"
#include <curl/curl.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sysexits.h>
#include <unistd.h>

#ifndef HERALD_VERSION
#define HERALD_VERSION "dev"
#endif

static const char usage[] =
	"usage: herald [-c FILE] [-q|-v] COMMAND ...\n"
	"\n"
	"  init [DIR]\n"
	"      Start a newsletter in DIR (default: here): herald.conf (every key explained,\n"
	"      the ones to change marked TO EDIT), posts/<today>-first-issue.md,\n"
	"      subscribers.csv, state/. Writes over nothing (exit 73 if one is there).\n"
	"  send POST.md [--dry-run DIR] [--test[=ADDR]]... [--subscribers FILE]\n"
	"               [--rate SPEC] [--limit N] [--until-quota] [--force] [--json]\n"
	"               [--retry-uncertain] [--where COL=VALUE]... [--shard I/N]\n"
	"  send --due POST.md|DIR\n"
	"      Send the post to every subscriber not yet in its journal.\n"
	"      --dry-run DIR   write each message to DIR/NNNNNN-<address>.eml; no network\n"
	"      --test[=ADDR]   send only to ADDR (repeatable; default: config test.to),\n"
	"                      subject prefixed [TEST], nothing recorded\n"
	"      --subscribers F use list F instead of the config's\n"
	"      --rate SPEC     e.g. 10/s, 300/min, 2000/h, 10000/day, burst=5 (comma-separated)\n"
	"      --limit N       send at most N messages this run (exit 75 if more remain)\n"
	"      --due           for cron: send the post(s) whose date has come and that are\n"
	"                      not fully sent; otherwise exit 0 silently (one line on a\n"
	"                      terminal; -v also names each post skipped, and why)\n"
	"      --until-quota   stop (exit 75) when a rate window is used up, instead of waiting\n"
	"      --json          print the summary as one JSON object on stdout\n"
	"      --force         send again to readers already in the journal\n"
	"      --retry-uncertain  send again to readers whose message got no reply to its\n"
	"                      final dot (journal \"uncertain\": they may have it already)\n"
	"      --where RULE    only the rows where COL=VALUE, COL!=VALUE or COL=A|B holds\n"
	"                      (repeatable: all must hold; with the post's audience:)\n"
	"      --shard I/N     only the readers of shard I of N (1 <= I <= N <= 1000): the\n"
	"                      first 8 bytes of SHA-256 of the lower-cased address, big-\n"
	"                      endian, mod N, plus 1; one host a shard, each its state_dir\n";
/* In two: ISO C promises string literals of 4095 bytes, no more. */
static const char usage_more[] =
	"  preview POST.md [-o DIR] [--as EMAIL] [--no-screenshots]\n"
	"      Write DIR/<slug>.html, .txt and .eml as EMAIL (default: first reader) gets them,\n"
	"      and <slug>-desktop.png, <slug>-mobile.png when Chromium is installed.\n"
	"  check POST.md\n"
	"      Lint config, post, templates and list together (size, links, alt text,\n"
	"      merge fields, unsubscribe, DKIM); exit 65 or 78 on errors; send nothing.\n"
	"  subscribers check [FILE]\n"
	"      Report bad rows of the list (FILE:LINE: reason), as send would.\n"
	"  subscribers unsubscribe [SOURCE] [--delete] | --address ADDR...\n"
	"      Apply the unsubscribe requests in SOURCE (default unsubscribe.mailbox.url),\n"
	"      or unsubscribe ADDR: status \"unsubscribed\" in the list, rewritten atomically.\n"
	"  bounces scan [SOURCE] [--delete]\n"
	"      Read the DSNs and complaints in SOURCE (default bounce.mailbox.url) into\n"
	"      bounces.log; mark them read (or --delete them). SOURCE: maildir:PATH,\n"
	"      mbox:PATH, imap[s]://[USER@]HOST[:PORT][/FOLDER], pop3[s]://[USER@]HOST[:PORT]\n"
	"  serve [--port-file FILE]\n"
	"      Answer the links in the mail over HTTP (config web.*), behind a TLS proxy:\n"
	"      GET/POST /unsubscribe?e=EMAIL&t=TOKEN (RFC 8058 one-click); with web.signup,\n"
	"      /subscribe and /confirm (double opt-in); one log line per request on\n"
	"      stdout; SIGTERM answers what is under way, then stops.\n"
	"      --port-file F   write the port listened on to F (web.listen port 0: any)\n"
	"      With web.archive: /archive/ (the issues sent), /archive/SLUG, /archive/feed.xml.\n"
	"  archive OUTDIR\n"
	"      Write the same archive as static files: OUTDIR/index.html, OUTDIR/SLUG/index.html,\n"
	"      OUTDIR/feed.xml (Atom). An issue is in it once its sending has begun.\n"
	"  bounces list\n"
	"      Show suppressed addresses with reason and date (TSV; says so if none).\n"
	"  bounces forget ADDR...\n"
	"      Lift the suppression of ADDR (a line in bounces.log; nothing is erased).\n"
	"  state merge DIR... [--into DIR]\n"
	"      Fold the state directories of the hosts of a sharded send into one (default:\n"
	"      the config's state_dir): journals, bounces.log, and <slug>.done once every\n"
	"      shard is done. Exit 75 if a herald is sending from one of them.\n"
	"\n"
	"  -c FILE     config file (default: $HERALD_CONFIG, else ./herald.conf)\n"
	"  -q          print only failures\n"
	"  -v          print the summary even without a terminal, and the SMTP\n"
	"              transcript on stderr (AUTH credentials redacted)\n"
	"  -h, --help  this text                --version\n"
	"\n";

/* Every command holds secrets in memory: the environment it was started
 * with (HERALD_SECRET, HERALD_SMTP_PASSWORD: there from exec on, whether
 * or not the command reads them), a password_command's output, the DKIM
 * key, a mailbox password. The earlier RLIMIT_CORE in config.c came only
 * once a password was fetched, so serve, and send without smtp.username,
 * still dumped them. A crash must not write them into a core file,
 * wherever core_pattern points (a file in the working directory, a crash
 * collector), so core dumps are off before anything is read: RLIMIT_CORE 0 for this process (a
 * later setrlimit by herald itself could raise it again; nothing does),
 * and PR_SET_DUMPABLE 0, which a pipe core_pattern (systemd-coredump,
 * apport) would ignore RLIMIT_CORE for. Non-dumpable also means: no
 * ptrace attach by the same uid (root, or a tracer that started herald,
 * as strace -f and valgrind do, still can), and /proc/PID/ files owned
 * by root. Children start dumpable again (exec resets it). Both are
 * best effort: a failure leaves what the system allows. */
static void no_core_dumps(void)
{
	struct rlimit none = {0, 0};
	(void)setrlimit(RLIMIT_CORE, &none);
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

static void print_usage(void)
{
	fputs(usage, stdout);
	fputs(usage_more, stdout);
	cli_print_exit_codes(stdout);
	fputs("\nSee herald(1) for each command, herald.conf(5) for the config file.\n", stdout);
}

int main(int argc, char **argv)
{
	no_core_dumps();
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
		case 'h': print_usage(); return 0;
		case 'V': printf("herald %s\n", HERALD_VERSION); return 0;
		default: fputs("Try 'herald --help'.\n", stderr); return EX_USAGE;
		}
	}
	if (optind >= argc)
		return cli_usage("%s", "no command given");
	u.tty = isatty(STDERR_FILENO) && !u.quiet;
	char **av = argv + optind;
	int ac = argc - optind;
	const char *cmd = av[0];
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		cli_err("cannot initialise libcurl");
		return EX_SOFTWARE;
	}
	static const struct { const char *name; int (*run)(struct ui *, const char *, int, char **); } cmds[] = {
		{"send", cmd_send}, {"preview", cmd_preview}, {"check", cmd_check},
		{"bounces", cmd_bounces}, {"subscribers", cmd_subscribers},
		{"init", cmd_init},
		{"serve", cmd_serve}, {"archive", cmd_archive}, {"state", cmd_state}};
	int rc = -1;
	for (size_t i = 0; rc < 0 && i < sizeof cmds / sizeof *cmds; i++)
		if (!strcmp(cmd, cmds[i].name))
			rc = cmds[i].run(&u, cfgpath, ac, av);
	if (rc < 0 && !strcmp(cmd, "help"))
		rc = (print_usage(), 0);
	else if (rc < 0)
		rc = cli_usage("unknown command \"%s\"", cmd);
	curl_global_cleanup();
	return rc;
}
