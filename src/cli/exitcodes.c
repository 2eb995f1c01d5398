/* herald's exit codes and what each means: the one place they are
 * written. --help prints this table; tests/integration_install.py holds
 * herald(1)'s EXIT STATUS section to the same codes and words, so the
 * two cannot drift apart. The values are sysexits.h's, as scripts and
 * cron mails already rely on them. A meaning may hold "\n": where --help
 * breaks the line (the man page joins them). */
#include "cli/cli.h"
#include <stdio.h>
#include <sysexits.h>

static const struct {
	int code;
	const char *meaning;
} exit_codes[] = {
	{EX_OK, "done: every reader delivered or permanently bounced (and logged);\n"
		"skipped bad rows are warnings; send --due with nothing due"},
	{EX_USAGE, "usage error"},
	{EX_DATAERR, "a post or list that cannot be used at all (broken front matter, no\n"
		     "email column, unknown merge field), or an error found by check"},
	{EX_NOINPUT, "a file is missing (the config, post, list, template, attachment,\n"
		     "image)"},
	{EX_UNAVAILABLE, "the server is unavailable (after the retries; the readers not tried\n"
			 "are counted \"not attempted\"), or it refuses TLS, AUTH or the sender:\n"
			 "nobody is marked as bounced"},
	{EX_SOFTWARE, "internal error: worth a bug report with the message"},
	{EX_OSERR, "out of memory, or a failed system call such as fork: worth a bug\n"
		   "report"},
	{EX_CANTCREAT, "state cannot be written (journal, bounce log, list, dry-run\n"
		       "directory: no further message is handed to a connection), or init\n"
		       "found a file in the way"},
	{EX_IOERR, "a read error on state or input: worth a bug report"},
	{EX_TEMPFAIL, "run again: some messages deferred, another herald holds the lock\n"
		      "(state merge: of any directory named), --limit or --until-quota\n"
		      "left readers, a signal stopped the send after the messages in\n"
		      "flight, or a password_command did not finish within its timeout"},
	{EX_CONFIG, "bad configuration (FILE:LINE: what was expected)"},
};

void cli_print_exit_codes(FILE *out)
{
	fputs("Exit status:\n", out);
	for (size_t i = 0; i < sizeof exit_codes / sizeof *exit_codes; i++) {
		fprintf(out, "  %-3d ", exit_codes[i].code);
		for (const char *p = exit_codes[i].meaning; *p; p++) {
			fputc(*p, out);
			if (*p == '\n')
				fputs("      ", out);
		}
		fputc('\n', out);
	}
}
