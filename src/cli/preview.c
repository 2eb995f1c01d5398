#include "cli/preview.h"
#include "util/buf.h"
#include "util/child.h"
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BROWSER_SECONDS 60

int preview_find_browser(char *out, size_t len)
{
	const char *env = getenv("HERALD_CHROMIUM");
	if (env) {
		if (!*env || access(env, X_OK) < 0)
			return 0;
		snprintf(out, len, "%s", env);
		return 1;
	}
	static const char *const names[] = {"chromium", "chromium-browser", "google-chrome"};
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
		for (const char *p = path; *p;) {
			size_t dl = strcspn(p, ":");
			if (dl && (size_t)snprintf(out, len, "%.*s/%s", (int)dl, p, names[i]) < len &&
			    access(out, X_OK) == 0)
				return 1;
			p += dl;
			if (*p == ':')
				p++;
		}
	}
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* file:// URL of an absolute path, with bytes outside the unreserved set
 * and '/' percent-encoded (a space in a directory name must not end it). */
BUF_MUST static int file_url(const char *abs, struct buf *out)
{
	if (buf_adds(out, "file://") < 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)abs; *p; p++) {
		int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || strchr("/-._~", *p);
		if ((keep ? buf_addc(out, (char)*p) : buf_printf(out, "%%%02X", *p)) < 0)
			return -1;
	}
	buf_cstr(out);
	return 0;
}

/* Runs the browser with the network off and a throw-away profile, plus
 * extra (NULL-terminated, at most 6); its stdout goes to out_path when
 * given. Through util/child.c, as a password_command: none of herald's
 * secrets in its environment, its own process group, killed with its
 * renderer and GPU helpers after BROWSER_SECONDS or once it exits. */
static int run_browser(const struct preview_browser *b, const char *profile,
		       const char *const *extra, const char *out_path, char *err, size_t errlen)
{
	struct buf a_prof = {0};
	if (buf_printf(&a_prof, "--user-data-dir=%s", profile) < 0)
		return set_err(err, errlen, PREVIEW_FAIL, "out of memory");
	/* --no-sandbox: the sandbox cannot start as root or in most
	 * containers; the page is the author's own message, with the network
	 * off. (Scripts stay on: with blink's scriptEnabled=false, headless
	 * Chromium 156 writes no screenshot; a post cannot carry scripts, raw
	 * HTML being dropped.) */
	const char *argv[32] = {
		b->path, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--no-default-browser-check", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--disable-extensions",
		"--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
		"--force-device-scale-factor=1",
		"--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
		a_prof.p};
	size_t n = 18;
	for (size_t i = 0; extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	struct child_spec spec = {.path = b->path, .argv = argv, .strip = b->strip,
				  .nstrip = b->nstrip, .out = out_path ? CHILD_OUT_FILE : CHILD_OUT_NULL,
				  .out_path = out_path, .quiet = 1, .reap_group = 1,
				  .timeout = BROWSER_SECONDS};
	struct child ch;
	int st = 0, rc = PREVIEW_OK;
	char why[512];
	if (child_start(&spec, &ch, why, sizeof why) < 0) {
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s", why);
		goto out;
	}
	int w = child_wait(&ch, &st);
	if (w == CHILD_TIMEDOUT)
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s took over %d s; killed", b->path,
			     BROWSER_SECONDS);
	else if (w < 0)
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s: cannot wait for it", b->path);
	else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s failed (%s %d)", b->path,
			     WIFEXITED(st) ? "exit status" : "signal",
			     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
out:
	buf_free(&a_prof);
	return rc;
}

/* Headless Chromium's --screenshot is the window, never the whole page,
 * and it has no switch to measure one. So a first run lays the page out
 * in a window of the same width and lets a script write the height into
 * the DOM, which --dump-dom prints; the screenshot's window is then that
 * tall. The script goes into a copy beside the HTML (relative references
 * resolve the same), never into the preview file; onload, so what loads
 * late (fonts, failed images) is laid out. Images are not fetched in
 * either run, so both lay out alike. */
static const char MEASURE_JS[] =
	"<script>onload=function(){var d=document.documentElement,b=document.body;"
	"d.setAttribute('data-herald-height',Math.ceil(Math.max(d.scrollHeight,"
	"b?b.scrollHeight:0,d.getBoundingClientRect().height)))}</script>\n";

static int measure(const struct preview_browser *browser, const char *profile, const char *abs, int width,
		   int *height, char *err, size_t errlen)
{
	char *html = NULL, *dom = NULL, copy[PATH_MAX], dump[PATH_MAX];
	size_t len = 0, dlen = 0;
	struct buf url = {0}, a_size = {0};
	int rc = PREVIEW_OK, fd = -1;
	snprintf(copy, sizeof copy, "%.*s.herald-measure-XXXXXX.html", PATH_MAX - 40, abs);
	snprintf(dump, sizeof dump, "%.*s/dom.html", PATH_MAX - 16, profile);
	if (read_file(abs, &html, &len) < 0 || (fd = mkstemps(copy, 5)) < 0 ||
	    write(fd, html, len) != (ssize_t)len ||
	    write(fd, MEASURE_JS, sizeof MEASURE_JS - 1) != (ssize_t)(sizeof MEASURE_JS - 1)) {
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s: %s", fd < 0 && html ? copy : abs,
			     strerror(errno));
		goto out;
	}
	if (file_url(copy, &url) < 0 || buf_printf(&a_size, "--window-size=%d,100", width) < 0) {
		rc = set_err(err, errlen, PREVIEW_FAIL, "out of memory");
		goto out;
	}
	const char *extra[] = {a_size.p, "--dump-dom", url.p, NULL};
	if ((rc = run_browser(browser, profile, extra, dump, err, errlen)) < 0)
		goto out;
	const char *at = read_file(dump, &dom, &dlen) == 0 ? strstr(dom, "data-herald-height=\"") : NULL;
	long h = at ? strtol(at + 20, NULL, 10) : 0;
	if (h <= 0)
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s could not measure %s", browser->path, abs);
	*height = h > PREVIEW_MAX_HEIGHT ? PREVIEW_MAX_HEIGHT : (int)h;
out:
	if (fd >= 0) {
		close(fd);
		unlink(copy);
	}
	free(html);
	free(dom);
	buf_free(&url);
	buf_free(&a_size);
	return rc;
}

int preview_screenshot(const struct preview_browser *browser, const char *html_path, const char *png_path,
		       int width, int *height, char *err, size_t errlen)
{
	char abs[PATH_MAX];
	if (!realpath(html_path, abs))
		return set_err(err, errlen, PREVIEW_FAIL, "%s: %s", html_path, strerror(errno));
	const char *tmp = getenv("TMPDIR");
	char profile[PATH_MAX];
	snprintf(profile, sizeof profile, "%s/herald-chromium-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(profile))
		return set_err(err, errlen, PREVIEW_FAIL, "%s: %s", profile, strerror(errno));
	struct buf url = {0}, a_shot = {0}, a_size = {0};
	int rc = measure(browser, profile, abs, width, height, err, errlen);
	if (rc < 0)
		goto out;
	if (file_url(abs, &url) < 0 || buf_printf(&a_shot, "--screenshot=%s", png_path) < 0 ||
	    buf_printf(&a_size, "--window-size=%d,%d", width, *height) < 0) {
		rc = set_err(err, errlen, PREVIEW_FAIL, "out of memory");
		goto out;
	}
	unlink(png_path);
	const char *extra[] = {a_size.p, a_shot.p, url.p, NULL};
	struct stat sb;
	rc = run_browser(browser, profile, extra, NULL, err, errlen);
	if (rc == 0 && (stat(png_path, &sb) < 0 || sb.st_size == 0))
		rc = set_err(err, errlen, PREVIEW_FAIL, "%s wrote no %s", browser->path, png_path);
out:
	nftw(profile, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	buf_free(&url);
	buf_free(&a_shot);
	buf_free(&a_size);
	return rc;
}

int preview_png_size(const char *path, int *width, int *height)
{
	unsigned char h[24];
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t n = fread(h, 1, sizeof h, f);
	fclose(f);
	if (n != sizeof h || memcmp(h, "\x89PNG\r\n\x1a\n", 8) || memcmp(h + 12, "IHDR", 4))
		return -1;
	*width = (int)((unsigned)h[16] << 24 | (unsigned)h[17] << 16 | (unsigned)h[18] << 8 | h[19]);
	*height = (int)((unsigned)h[20] << 24 | (unsigned)h[21] << 16 | (unsigned)h[22] << 8 | h[23]);
	return 0;
}
