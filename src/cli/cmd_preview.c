/* herald preview: the HTML, text and .eml one reader gets, and
 * screenshots when a Chromium is there. */
#include "cli/cli.h"
#include "cli/lint.h"
#include "cli/preview.h"
#include "compose/media.h"
#include "compose/message.h"
#include "compose/post.h"
#include "input/config.h"
#include "util/buf.h"
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>

enum { OPT_AS = 256, OPT_NOSHOTS };

/* The HTML file shows embedded images from their files: a browser has
 * no message for cid: to point into. out stays empty without images. */
BUF_MUST static int local_images(struct buf *out, const struct buf *html, const struct post *p,
			const struct msg_parts *parts)
{
	if (!p->nimages)
		return 0;
	char **urls = calloc(p->nimages, sizeof *urls);
	int rc = urls ? 0 : -1;
	for (size_t k = 0; !rc && k < p->nimages; k++) {
		char *abs = realpath(parts->media[k].path, NULL);
		if (asprintf(&urls[k], "file://%s", abs ? abs : parts->media[k].path) < 0) {
			urls[k] = NULL;
			rc = -1;
		}
		free(abs);
	}
	if (!rc)
		rc = post_relink_images(p, html->p, (const char *const *)urls, out);
	for (size_t k = 0; urls && k < p->nimages; k++)
		free(urls[k]);
	free(urls);
	return rc;
}

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
static int screenshots(struct ui *u, const struct config *cfg, const char *dir, const char *slug,
		       char *err, size_t errlen)
{
	char path[4096];
	if (!preview_find_browser(path, sizeof path)) {
		if (!u->quiet)
			printf("screenshots skipped: no chromium found (apt-get install chromium, or set $HERALD_CHROMIUM)\n");
		return 0;
	}
	const char *strip[CONFIG_SECRET_VARS_MAX];
	struct preview_browser browser = {path, strip, config_secret_vars(cfg, strip)};
	static const struct { const char *name; int w; } shots[] = {{"desktop", 1200}, {"mobile", 390}};
	char html[4096];
	snprintf(html, sizeof html, "%s/%s.html", dir, slug);
	for (size_t i = 0; i < sizeof shots / sizeof *shots; i++) {
		char png[4096];
		int w, h, page;
		snprintf(png, sizeof png, "%s/%s-%s.png", dir, slug, shots[i].name);
		if (preview_screenshot(&browser, html, png, shots[i].w, &page, err, errlen) < 0)
			return EX_UNAVAILABLE;
		if (!u->quiet && preview_png_size(png, &w, &h) == 0)
			printf("%-44s %5d x %d px, %s, %s, images not loaded (network off)\n", png, w, h,
			       shots[i].name, page < PREVIEW_MAX_HEIGHT ? "the whole message" :
			       "its first 16384 px");
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
		if (c == 'o') {
			path_trim_slashes(optarg);
			dir = optarg;
		}
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
	/* Gmail clips the message text; attachments do not count. */
	size_t clipped = eml.len - parts.media_wire;
	snprintf(what[2], sizeof what[2], "whole message to %s: %.0f%% of Gmail's 102 KB clip size%s",
		 addr, cli_clip_percent(clipped),
		 parts.nattach || parts.nimages ? " (attached and embedded files aside)" : "");
	struct buf html = {0};
	if (!rc && local_images(&html, parts.html, &post, &parts) < 0)
		rc = set_err(err, sizeof err, EX_OSERR, "out of memory");
	const struct { const char *ext; const struct buf *b; } outs[] = {
		{"html", html.p ? &html : parts.html}, {"txt", parts.text}, {"eml", &eml}};
	for (size_t i = 0; !rc && i < 3; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.%s", dir, post.slug, outs[i].ext);
		if (write_whole(path, outs[i].b->p ? outs[i].b->p : "", outs[i].b->len, err, sizeof err) < 0)
			rc = EX_CANTCREAT;
		else if (!u->quiet)
			printf("%-44s %8zu bytes  %s\n", path, outs[i].b->len, what[i]);
	}
	if (!rc && clipped > LINT_CLIP_BYTES)
		fprintf(stderr, "herald: warning: the message is over 102 KB: Gmail will clip it (see herald check)\n");
	if (!rc && shots)
		rc = screenshots(u, &cfg, dir, post.slug, err, sizeof err);
	if (rc && *err)
		cli_err(err);
	buf_free(&eml);
	buf_free(&html);
	msg_free(m);
	post_free(&post);
	config_free(&cfg);
	return rc;
}
