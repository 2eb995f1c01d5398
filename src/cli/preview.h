/* preview: pictures of a message's HTML part, taken by headless Chromium,
 * so an author sees the issue as a reader's screen shows it.
 *
 * The browser runs through util/child.c, with none of herald's secrets
 * in its environment, with the network off (every host name resolves to
 * nothing and every connection goes to a proxy on a closed loopback port),
 * a throw-away profile, and is killed
 * with all its helpers if it takes longer than a minute. Remote images
 * therefore show as their alt text, as in a client that blocks them.
 *
 * No state is kept between calls; nothing here prints. */
#ifndef HERALD_PREVIEW_H
#define HERALD_PREVIEW_H
#include <stddef.h>

enum { PREVIEW_OK = 0, PREVIEW_FAIL = -1 };

/* The browser to use: $HERALD_CHROMIUM when set (empty: none), else the
 * first of chromium, chromium-browser, google-chrome on $PATH. 1 and
 * out filled when found, else 0. */
int preview_find_browser(char *out, size_t len);
/* The browser and the variables it must not see (the config's secret
 * names: config_secret_vars; util/child.c drops HERALD* itself). */
struct preview_browser {
	const char *path;
	const char *const *strip;
	size_t nstrip;
};
/* Renders the whole of html_path, laid out width wide, into png_path;
 * *height: the page's height (at most PREVIEW_MAX_HEIGHT, past which
 * the picture stops). Two browser runs: one measures, one shoots. */
#define PREVIEW_MAX_HEIGHT 16384
int preview_screenshot(const struct preview_browser *browser, const char *html_path, const char *png_path,
		       int width, int *height, char *err, size_t errlen);
/* Width and height from a PNG's header; -1 if the file is no PNG. */
int preview_png_size(const char *path, int *width, int *height);
#endif
