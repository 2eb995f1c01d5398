/* herald preview: the HTML, text and .eml one reader gets, and
 * screenshots when a Chromium is there. */
#include "cli/cli.h"
#include "cli/lint.h"
#include "cli/preview.h"
#include "compose/message.h"
#include "compose/post.h"
#include "input/config.h"
#include "util/buf.h"
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

enum { OPT_AS = 256, OPT_NOSHOTS };

static int write_whole(const char *path, const char *data, size_t len, char *err, size_t errlen)
{
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len) {
		set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (fclose(f) != 0)
		return set_err(err, errlen, -1, "%s: %s", path, strerror(errno));
	return 0;
}

/* Desktop and phone pictures of the HTML part, when a Chromium is there;
 * its absence is said, not an error. */
static int screenshots(struct ui *u, const char *dir, const char *slug, char *err, size_t errlen)
{
	char browser[4096];
	if (!preview_find_browser(browser, sizeof browser)) {
		if (!u->quiet)
			printf("screenshots skipped: no chromium found (apt-get install chromium, or set $HERALD_CHROMIUM)\n");
		return 0;
	}
	static const struct { const char *name; int w, h; } shots[] = {
		{"desktop", 1200, 2000}, {"mobile", 390, 2000}};
	char html[4096];
	snprintf(html, sizeof html, "%s/%s.html", dir, slug);
	for (size_t i = 0; i < sizeof shots / sizeof *shots; i++) {
		char png[4096];
		int w, h;
		snprintf(png, sizeof png, "%s/%s-%s.png", dir, slug, shots[i].name);
		if (preview_screenshot(browser, html, png, shots[i].w, shots[i].h, err, errlen) < 0)
			return EX_UNAVAILABLE;
		if (!u->quiet && preview_png_size(png, &w, &h) == 0)
			printf("%-44s %5d x %d px, %s, images not loaded (network off)\n", png, w, h,
			       shots[i].name);
	}
	return 0;
}

int cmd_preview(struct ui *u, const char *cfgpath, int argc, char **argv)
{
	static const struct option lo[] = {{"as", required_argument, 0, OPT_AS},
		{"no-screenshots", no_argument, 0, OPT_NOSHOTS}, {0, 0, 0, 0}};
	const char *dir = ".", *as = NULL;
	int c, shots = 1;
	optind = 0; /* 0: glibc re-reads the optstring, so options may follow operands */
	while ((c = getopt_long(argc, argv, "o:", lo, NULL)) != -1) {
		if (c == 'o')
			dir = optarg;
		else if (c == OPT_AS)
			as = optarg;
		else if (c == OPT_NOSHOTS)
			shots = 0;
		else
			return cli_usage("%s", "preview: unknown option");
	}
	if (optind != argc - 1)
		return cli_usage("%s", "preview: expected one POST.md");
	struct config cfg;
	struct post post = {0};
	struct msg_ctx *m = NULL;
	struct buf eml = {0};
	char err[1024] = "", addr[512] = "";
	int rc = cli_load_config(cfgpath, &cfg);
	if (!rc)
		rc = cli_load_post(&cfg, argv[optind], &post);
	if (!rc)
		rc = cli_need_list(&cfg, cfg.subscribers);
	if (!rc)
		rc = cli_build_one(&cfg, &post, as, &m, &eml, addr, sizeof addr, err, sizeof err);
	if (!rc && mkdir(dir, 0755) < 0 && errno != EEXIST)
		rc = set_err(err, sizeof err, EX_CANTCREAT, "%s: %s", dir, strerror(errno));
	struct msg_parts parts = {0};
	if (!rc)
		msg_last_parts(m, &parts);
	/* What each file is, with the size it has on the wire. */
	char what[3][700];
	snprintf(what[0], sizeof what[0], "HTML part, %zu quoted-printable",
		 parts.qp_html ? parts.qp_html->len : 0);
	snprintf(what[1], sizeof what[1], "text part, %zu quoted-printable",
		 parts.qp_text ? parts.qp_text->len : 0);
	snprintf(what[2], sizeof what[2], "whole message to %s: %.0f%% of Gmail's 102 KB clip size",
		 addr, cli_clip_percent(eml.len));
	const struct { const char *ext; const struct buf *b; } outs[] = {
		{"html", parts.html}, {"txt", parts.text}, {"eml", &eml}};
	for (size_t i = 0; !rc && i < 3; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.%s", dir, post.slug, outs[i].ext);
		if (write_whole(path, outs[i].b->p ? outs[i].b->p : "", outs[i].b->len, err, sizeof err) < 0)
			rc = EX_CANTCREAT;
		else if (!u->quiet)
			printf("%-44s %8zu bytes  %s\n", path, outs[i].b->len, what[i]);
	}
	if (!rc && eml.len > LINT_CLIP_BYTES)
		fprintf(stderr, "herald: warning: the message is over 102 KB: Gmail will clip it (see herald check)\n");
	if (!rc && shots)
		rc = screenshots(u, dir, post.slug, err, sizeof err);
	if (rc && *err)
		cli_err(err);
	buf_free(&eml);
	msg_free(m);
	post_free(&post);
	config_free(&cfg);
	return rc;
}
