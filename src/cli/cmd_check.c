/* herald check (the lint over config, post, templates and list) and
 * the list report that `subscribers check` shares. */
#include "cli/cli.h"
#include "cli/lint.h"
#include "compose/message.h"
#include "compose/post.h"
#include "input/config.h"
#include "input/subscribers.h"
#include "util/buf.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

int cli_check_list(struct ui *u, const char *path, char sep, long *good)
{
	struct subs_reader *sr;
	char err[1024];
	int k = subs_open(&sr, path, sep, err, sizeof err);
	if (k) {
		cli_err(err);
		return subs_exitcode(k);
	}
	long ok = 0, bad = 0, inactive = 0;
	struct subs_row row;
	int rc = 0;
	while ((k = subs_next(sr, &row, err, sizeof err)) != SUBS_END) {
		if (k == SUBS_ROW)
			ok++;
		else if (k == SUBS_INACTIVE)
			inactive++;
		else if (k == SUBS_BAD) {
			cli_err(err);
			bad++;
		} else {
			cli_err(err);
			rc = EX_DATAERR;
			break;
		}
	}
	subs_close(sr);
	if (!u->quiet)
		printf("%s: %ld subscribed, %ld not subscribed, %ld bad row%s\n", path, ok, inactive,
		       bad, bad == 1 ? "" : "s");
	if (good)
		*good = ok;
	return rc;
}

/* Built-in field names, then the list's columns (copied: the reader
 * that owns them is closed here). */
static int field_names(const char *list, char sep, char ***out, size_t *n)
{
	struct subs_reader *sr;
	char err[512];
	*out = NULL;
	*n = 0;
	if (subs_open(&sr, list, sep, err, sizeof err))
		return -1;
	size_t nc = subs_ncols(sr);
	char **v = calloc(MF_NBUILTIN + nc, sizeof *v);
	int rc = v ? 0 : -1;
	for (size_t i = 0; v && i < MF_NBUILTIN + nc; i++) {
		v[i] = xstrdup(i < MF_NBUILTIN ? msg_builtin_fields[i] : subs_colnames(sr)[i - MF_NBUILTIN]);
		rc |= v[i] ? 0 : -1;
	}
	subs_close(sr);
	*out = v;
	*n = v ? MF_NBUILTIN + nc : 0;
	return rc;
}

static void free_names(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Lints both layout templates; one that cannot be read is left to the
 * message build, which reports it with exit 66. */
static int lint_templates(struct lint *l, const struct config *cfg, char **names, size_t nn)
{
	static const char *const exts[] = {"html", "txt"};
	for (size_t i = 0; i < 2; i++) {
		char *path, *src;
		size_t len;
		if (asprintf(&path, "%s/%s.%s", cfg->templates, cfg->template_name, exts[i]) < 0)
			return -1;
		int rc = 0;
		if (read_file(path, &src, &len) == 0) {
			rc = lint_template(l, path, src, i == 0, (const char *const *)names, nn);
			free(src);
		}
		free(path);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int cmd_check(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	if (argc != 2)
		return cli_usage("%s", "check: expected one POST.md");
	struct config cfg;
	struct post post = {0};
	struct msg_ctx *m = NULL;
	struct buf eml = {0};
	struct lint l = {0};
	char **names = NULL;
	size_t nn = 0;
	char err[1024] = "", addr[512] = "";
	long good = 0;
	size_t clip_exempt = 0; /* attachments: Gmail clips the text only */
	int rc = cli_load_config(cfgpath, &cfg);
	if (!rc)
		rc = cli_load_post(&cfg, argv[1], &post);
	if (!rc)
		rc = cli_check_slug(argv[1], post.slug);
	if (!rc)
		rc = cli_need_list(&cfg, cfg.subscribers);
	if (!rc)
		rc = cli_check_list(u, cfg.subscribers, cfg.subs_delim, &good);
	if (rc)
		goto out;
	if (field_names(cfg.subscribers, cfg.subs_delim, &names, &nn) < 0 || lint_config(&l, &cfg) < 0 ||
	    lint_post(&l, &post, (const char *const *)names, nn) < 0 ||
	    lint_templates(&l, &cfg, names, nn) < 0) {
		cli_err("out of memory");
		rc = EX_OSERR;
		goto out;
	}
	/* With unknown fields the build would only repeat them, less precisely. */
	if (good && !l.field_errors) {
		rc = cli_build_one(&cfg, &post, NULL, &m, &eml, addr, sizeof addr, err, sizeof err);
		if (rc && *err)
			cli_err(err);
		char what[1024];
		snprintf(what, sizeof what, "%s (message to %s)", post.path, addr);
		struct msg_parts parts;
		if (!rc)
			msg_last_parts(m, &parts);
		/* Gmail clips the message text; attachments do not count. */
		clip_exempt = rc ? 0 : parts.media_wire;
		if (!rc && (lint_message(&l, what, eml.len - clip_exempt, parts.subject) < 0 ||
			    lint_media(&l, what, "attachment", parts.nattach, parts.attach_bytes) < 0 ||
			    lint_media(&l, what, "embedded image", parts.nimages, parts.image_bytes) < 0))
			rc = EX_OSERR;
	}
	int config_errors = 0;
	for (size_t i = 0; i < l.n; i++) {
		const struct lint_item *it = &l.items[i];
		config_errors |= it->level == LINT_ERROR && it->area == LINT_CONFIG;
		if (it->level == LINT_ERROR || !u->quiet)
			fprintf(stderr, "herald: %s: %s: %s\n", it->where,
				it->level == LINT_ERROR ? "error" : "warning", it->msg);
	}
	if (!rc && l.errors)
		rc = config_errors ? EX_CONFIG : EX_DATAERR;
	if (!u->quiet && (!rc || l.errors)) {
		printf("%s: %zu error%s, %zu warning%s", argv[1], l.errors, l.errors == 1 ? "" : "s",
		       l.warnings, l.warnings == 1 ? "" : "s");
		if (eml.len)
			printf("; %zu bytes for %s (%.0f%% of Gmail's 102 KB clip size)", eml.len, addr,
			       cli_clip_percent(eml.len - clip_exempt));
		printf("\n");
	}
out:
	free_names(names, nn);
	lint_free(&l);
	buf_free(&eml);
	msg_free(m);
	post_free(&post);
	config_free(&cfg);
	return rc;
}
