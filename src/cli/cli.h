#ifndef HERALD_CLI_H
#define HERALD_CLI_H
/* The command layer: the only code that prints or exits. main.c parses
 * the global options and picks a command; each command is its own
 * cmd_*.c; what several commands share is declared here. Every function
 * that can fail returns a sysexits code (0 done) after saying why on
 * stderr, so a command returns it as it is. */
#include <stddef.h>
#include <stdio.h>

struct config;
struct post;
struct msg_ctx;
struct buf;
struct mailbox_conf;
struct mailbox_opts;

/* Text width of the plain-text part. */
#define TEXT_WIDTH 72

/* How to talk to the person at the terminal. One per run, owned by
 * main(); commands and their callbacks get a pointer. */
struct ui {
	int quiet, verbose, tty;
	int progress_shown;
	double last_progress;
	int stopping;         /* the signal that asked send to stop, or 0 */
};

/* ui.c */
void cli_err(const char *msg);                       /* "herald: msg" */
__attribute__((format(printf, 1, 2)))
int cli_usage(const char *fmt, ...);                 /* says it, returns 64 */
void cli_clear_progress(struct ui *u);
void cli_on_warn(void *arg, const char *msg);         /* arg: struct ui * */
int cli_load_config(const char *path, struct config *cfg);
int cli_load_post(const struct config *cfg, const char *path, struct post *p);
/* The list the config names (path == cfg->subscribers) can be read; else
 * says which setting names it and returns 66 (or 78). Another path: 0. */
int cli_need_list(const struct config *cfg, const char *path);
/* SIGTERM/SIGINT set a flag (the first only; a second one kills):
 * cli_stop_signal() is that signal, or 0. */
void cli_catch_stop_signals(void);
int cli_stop_signal(void);

/* slugs.c: posts by slug (two posts with one slug would share a journal) */
int cli_dir_slugs(const char *dir, char ***files, char ***slugs, size_t *n);
void cli_free_dir_slugs(char **files, char **slugs, size_t n);
long cli_slug_twin(const char *slug, char **slugs, size_t n, long skip);
int cli_say_slug_twin(const char *a, const char *b, const char *slug);
int cli_check_slug(const char *path, const char *slug);

/* sample.c: the message for `as` (or the first subscribed reader), for
 * preview and check; *mp keeps its parts (msg_last_parts). */
int cli_build_one(const struct config *cfg, const struct post *post, const char *as,
		  struct msg_ctx **mp, struct buf *eml, char *addr, size_t addrlen,
		  char *err, size_t errlen);
double cli_clip_percent(size_t bytes);               /* of Gmail's clip size */

/* cmd_check.c: reports the list's bad rows; *good: the subscribed rows */
int cli_check_list(struct ui *u, const char *path, char sep, long *good);

/* cmd_bounces.c: [SOURCE] [--delete] for the two mailbox scans; *password
 * is the caller's to wipe and free (secret_free). */
void cli_on_note(void *arg, const char *msg);
int cli_mailbox_args(const struct config *cfg, const struct mailbox_conf *mc, const char *what,
		     int argc, char **argv, struct mailbox_opts *mo, char **password,
		     char *seen, size_t seenlen);

/* exitcodes.c: the exit codes and their meanings, as --help shows them */
void cli_print_exit_codes(FILE *out);

/* The commands: argv[0] is the command's name. */
int cmd_send(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_preview(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_check(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_bounces(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_subscribers(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_init(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_serve(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_archive(struct ui *u, const char *cfgpath, int argc, char **argv);
int cmd_state(struct ui *u, const char *cfgpath, int argc, char **argv);

#endif
