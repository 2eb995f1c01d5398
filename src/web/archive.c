/* The web archive (archive.h). */
#include "web/archive.h"
#include "compose/message.h"
#include "compose/post.h"
#include "compose/template.h"
#include "input/subscribers.h"
#include "state/journal.h"
#include "web/page.h"
#include "web/web.h"
#include "compose/media.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

static int newest_first(const void *x, const void *y)
{
	const struct archive_issue *a = x, *b = y;
	return a->when < b->when ? 1 : a->when > b->when ? -1 : strcmp(a->slug, b->slug);
}

static void issue_free(struct archive_issue *it)
{
	free(it->path);
	free(it->slug);
	free(it->subject);
	free(it->date);
}

int archive_load(struct archive *a, const struct config *cfg, char *err, size_t errlen)
{
	memset(a, 0, sizeof *a);
	DIR *d = opendir(cfg->web.posts);
	if (!d)
		return set_err(err, errlen, errno == ENOENT ? ARCHIVE_NOFILE : ARCHIVE_FAIL,
			       "%s: %s (web.posts: the directory of posts the archive lists)",
			       cfg->web.posts, strerror(errno));
	struct dirent *e;
	int rc = ARCHIVE_OK;
	while (!rc && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] == '.' || l < 4 || strcmp(e->d_name + l - 3, ".md"))
			continue;
		char *path;
		if (asprintf(&path, "%s/%s", cfg->web.posts, e->d_name) < 0) {
			rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
			break;
		}
		struct post p = {0};
		char why[512];
		int ok = post_load_opts(&p, path, 72, POST_NO_RENDER, why, sizeof why) == POST_OK &&
			 !p.no_archive && journal_started(cfg->state_dir, p.slug);
		struct archive_issue *nv = ok ? realloc(a->v, (a->n + 1) * sizeof *nv) : NULL;
		if (ok && !nv)
			rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
		if (nv) {
			a->v = nv;
			struct archive_issue *it = &nv[a->n++];
			it->path = path;
			path = NULL;
			it->slug = p.slug, p.slug = NULL;
			it->subject = p.subject, p.subject = NULL;
			it->date = p.date, p.date = NULL;
			it->when = p.when;
		}
		free(path);
		post_free(&p);
	}
	closedir(d);
	if (a->n)
		qsort(a->v, a->n, sizeof *a->v, newest_first);
	return rc;
}

void archive_free(struct archive *a)
{
	for (size_t i = 0; i < a->n; i++)
		issue_free(&a->v[i]);
	free(a->v);
	memset(a, 0, sizeof *a);
}

const struct archive_issue *archive_find(const struct archive *a, const char *slug)
{
	for (size_t i = 0; i < a->n; i++)
		if (!strcmp(a->v[i].slug, slug))
			return &a->v[i];
	return NULL;
}

int archive_index(const struct config *cfg, const struct archive *a, const char *link_pre,
		  const char *link_post, struct buf *out)
{
	struct buf body = {0};
	int rc = 0;
	if (!a->n)
		rc |= buf_adds(&body, "<p>No issue has gone out yet.</p>\n");
	else
		rc |= buf_adds(&body, "<ul>\n");
	for (size_t i = 0; i < a->n; i++) {
		rc |= buf_adds(&body, "<li><a href=\"");
		rc |= page_esc(&body, link_pre);
		rc |= page_esc(&body, a->v[i].slug);
		rc |= page_esc(&body, link_post);
		rc |= buf_adds(&body, "\">");
		rc |= page_esc(&body, a->v[i].subject);
		rc |= buf_adds(&body, "</a> <small>");
		rc |= page_esc(&body, a->v[i].date);
		rc |= buf_adds(&body, "</small></li>\n");
	}
	if (a->n)
		rc |= buf_adds(&body, "</ul>\n");
	char title[600];
	snprintf(title, sizeof title, "%s: the archive", cfg->list_name ? cfg->list_name : "Newsletter");
	if (!rc)
		rc = page_render(out, title, cfg->list_name ? cfg->list_name : "", buf_cstr(&body));
	buf_free(&body);
	return rc ? -1 : 0;
}

/* The body merged for nobody in particular: the list's columns are
 * known (so the post's fields compile as they did for the send), every
 * reader value is empty, and the reader's address and token are not
 * there at all. */
BUF_MUST static int anonymous_body(const struct config *cfg, const struct post *p, struct buf *out,
			  char *err, size_t errlen)
{
	struct subs_reader *sr = NULL;
	char why[512];
	int have = subs_open(&sr, cfg->subscribers, cfg->subs_delim, why, sizeof why) == 0;
	size_t ncols = have ? subs_ncols(sr) : 0, n = MF_NBUILTIN + ncols;
	const char **names = calloc(n, sizeof *names), **vals = calloc(n, sizeof *vals);
	int rc = names && vals ? 0 : set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	char date[64], web_url[600];
	msg_long_date(p, date, sizeof date);
	msg_web_url(cfg, p, web_url, sizeof web_url);
	for (size_t i = 0; !rc && i < n; i++)
		names[i] = i < MF_NBUILTIN ? msg_builtin_fields[i] : subs_colnames(sr)[i - MF_NBUILTIN];
	if (!rc) {
		vals[MF_SUBJECT] = p->subject;
		vals[MF_PREHEADER] = p->preheader;
		vals[MF_DATE] = date;
		vals[MF_LIST_NAME] = cfg->list_name;
		vals[MF_FROM_NAME] = cfg->from_name;
		vals[MF_FROM_EMAIL] = cfg->from_addr;
		vals[MF_SLUG] = p->slug;
		vals[MF_POSTAL_ADDRESS] = cfg->postal_address;
		vals[MF_LANGUAGE] = cfg->language;
		vals[MF_WEB_URL] = web_url;
	}
	struct tmpl *t = NULL;
	struct tmpl_names tn = {names, n};
	if (!rc && tmpl_compile(&t, p->html, strlen(p->html), &tn, p->path, 0, err, errlen) < 0)
		rc = ARCHIVE_BAD;
	if (!rc && tmpl_render(t, vals, TMPL_HTML, out) < 0)
		rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	tmpl_free(t);
	free(names);
	free(vals);
	if (sr)
		subs_close(sr);
	return rc;
}

void archive_image_name(const struct post_image *img, size_t k, char *out, size_t len)
{
	const char *slash = strrchr(img->src, '/');
	snprintf(out, len, "%zu-%s", k + 1, slash ? slash + 1 : img->src);
}

/* The post's cid: links become its files' web addresses: files_url and
 * each image's archive_image_name. */
BUF_MUST static int files_linked(const struct post *p, const char *files_url, struct buf *html)
{
	if (!p->nimages)
		return 0;
	char **urls = calloc(p->nimages, sizeof *urls);
	struct buf out = {0};
	int rc = urls ? 0 : -1;
	for (size_t k = 0; !rc && k < p->nimages; k++) {
		char name[600];
		archive_image_name(&p->images[k], k, name, sizeof name);
		if (asprintf(&urls[k], "%s%s", files_url, name) < 0) {
			urls[k] = NULL;
			rc = -1;
		}
	}
	if (!rc && (rc = post_relink_images(p, html->p, (const char *const *)urls, &out)) == 0) {
		buf_free(html);
		*html = out;
	} else
		buf_free(&out);
	for (size_t k = 0; urls && k < p->nimages; k++)
		free(urls[k]);
	free(urls);
	return rc;
}

/* The file of the post's image called name (archive_image_name), or
 * NULL (no such image, or no memory: *oom says which). */
static char *image_path(const struct post *p, const char *name, int *oom)
{
	*oom = 0;
	for (size_t k = 0; k < p->nimages; k++) {
		char n[600];
		archive_image_name(&p->images[k], k, n, sizeof n);
		if (strcmp(n, name))
			continue;
		char *path = post_file(p, p->images[k].src, strlen(p->images[k].src));
		*oom = !path;
		return path;
	}
	return NULL;
}

int archive_image(const struct config *cfg, const struct archive_issue *it, const char *name,
		  char **path, char *err, size_t errlen)
{
	struct post p = {0};
	int oom = 0;
	int rc = post_load_opts(&p, it->path, 72, 0, err, errlen);
	if (rc)
		rc = rc == POST_NOFILE ? ARCHIVE_NOFILE : ARCHIVE_BAD;
	else if (!(*path = image_path(&p, name, &oom)))
		rc = oom ? set_err(err, errlen, ARCHIVE_FAIL, "out of memory") : ARCHIVE_NOFILE;
	(void)cfg;
	post_free(&p);
	return rc;
}

/* The page of a loaded post. */
static int render_issue(const struct config *cfg, const struct post *p, const char *files_url,
			struct buf *out, char *err, size_t errlen)
{
	struct buf body = {0};
	int rc = anonymous_body(cfg, p, &body, err, errlen);
	if (!rc && files_linked(p, files_url, &body) < 0)
		rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	if (!rc && page_render(out, p->subject, cfg->list_name ? cfg->list_name : "", buf_cstr(&body)) < 0)
		rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	buf_free(&body);
	return rc;
}

static int load_issue(const struct config *cfg, const struct archive_issue *it, struct post *p,
		      char *err, size_t errlen)
{
	int rc = post_load_opts(p, it->path, 72, cfg->unsafe_html ? POST_UNSAFE_HTML : 0, err, errlen);
	return rc == POST_OK ? 0 : rc == POST_NOFILE ? ARCHIVE_NOFILE : ARCHIVE_BAD;
}

int archive_page(const struct config *cfg, const struct archive_issue *it, const char *files_url,
		 struct buf *out, char *err, size_t errlen)
{
	struct post p = {0};
	int rc = load_issue(cfg, it, &p, err, errlen);
	if (!rc)
		rc = render_issue(cfg, &p, files_url, out, err, errlen);
	post_free(&p);
	return rc;
}

static void rfc3339(time_t t, char *out, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Atom wants ids that never change: the issue's URL when there is a
 * base_url, else a tag: URI on the From domain (RFC 4151), dated by the
 * year of `when` (the issue's own date; for the feed, its oldest
 * issue's), a date the domain was the author's and that never moves. */
BUF_MUST static int entry_id(struct buf *b, const struct config *cfg, const char *slug, time_t when)
{
	const char *at = cfg->from_addr ? strrchr(cfg->from_addr, '@') : NULL;
	if (cfg->web.base_url)
		return buf_printf(b, "%s/archive/%s", cfg->web.base_url, slug ? slug : "");
	struct tm tm;
	time_t t = when > 0 ? when : time(NULL);
	int year = gmtime_r(&t, &tm) ? tm.tm_year + 1900 : 2026;
	return buf_printf(b, "tag:%s,%d:herald/%s", at ? at + 1 : "localhost", year, slug ? slug : "feed");
}

int archive_feed(const struct config *cfg, const struct archive *a, struct buf *out)
{
	char when[32];
	rfc3339(a->n ? a->v[0].when : 0, when, sizeof when);
	int rc = buf_adds(out, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
			  "<feed xmlns=\"http://www.w3.org/2005/Atom\">\n<title>");
	rc |= page_esc(out, cfg->list_name ? cfg->list_name : "Newsletter");
	rc |= buf_adds(out, "</title>\n<id>");
	struct buf id = {0};
	rc |= entry_id(&id, cfg, NULL, a->n ? a->v[a->n - 1].when : 0);
	rc |= page_esc(out, buf_cstr(&id));
	rc |= buf_printf(out, "</id>\n<updated>%s</updated>\n<author><name>", when);
	rc |= page_esc(out, cfg->from_name ? cfg->from_name : cfg->from_addr ? cfg->from_addr : "");
	rc |= buf_adds(out, "</name></author>\n");
	if (cfg->web.base_url) {
		rc |= buf_adds(out, "<link rel=\"self\" href=\"");
		rc |= page_esc(out, cfg->web.base_url);
		rc |= buf_adds(out, "/archive/feed.xml\"/>\n");
	}
	for (size_t i = 0; i < a->n; i++) {
		const struct archive_issue *it = &a->v[i];
		buf_reset(&id);
		rc |= entry_id(&id, cfg, it->slug, it->when);
		rfc3339(it->when, when, sizeof when);
		rc |= buf_adds(out, "<entry>\n<title>");
		rc |= page_esc(out, it->subject);
		rc |= buf_adds(out, "</title>\n<id>");
		rc |= page_esc(out, buf_cstr(&id));
		rc |= buf_printf(out, "</id>\n<updated>%s</updated>\n", when);
		if (cfg->web.base_url) {
			rc |= buf_adds(out, "<link rel=\"alternate\" type=\"text/html\" href=\"");
			rc |= page_esc(out, buf_cstr(&id));
			rc |= buf_adds(out, "\"/>\n");
		}
		rc |= buf_adds(out, "</entry>\n");
	}
	rc |= buf_adds(out, "</feed>\n");
	buf_free(&id);
	return rc ? -1 : 0;
}

BUF_MUST static int write_atomically(const char *path, const struct buf *b, char *err, size_t errlen)
{
	char *tmp;
	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	FILE *f = fopen(tmp, "wb");
	int ok = f && fwrite(b->p ? b->p : "", 1, b->len, f) == b->len;
	if (f && fclose(f) != 0)
		ok = 0;
	if (!ok || rename(tmp, path) < 0) {
		set_err(err, errlen, ARCHIVE_FAIL, "%s: %s", path, strerror(errno));
		unlink(tmp);
		free(tmp);
		return ARCHIVE_FAIL;
	}
	free(tmp);
	return 0;
}

/* The issue's embedded images, beside its page: OUTDIR/SLUG/NAME. */
static int copy_images(const struct post *p, const char *outdir, char *err, size_t errlen)
{
	int rc = 0;
	for (size_t k = 0; !rc && k < p->nimages; k++) {
		char name[600], dst[5000], *data;
		size_t len;
		archive_image_name(&p->images[k], k, name, sizeof name);
		char *src = post_file(p, p->images[k].src, strlen(p->images[k].src));
		if (!src)
			rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
		else if (read_file(src, &data, &len) < 0)
			rc = set_err(err, errlen, errno == ENOENT ? ARCHIVE_NOFILE : ARCHIVE_FAIL, "%s: %s",
				     src, strerror(errno));
		else {
			struct buf b = {data, len, len};
			snprintf(dst, sizeof dst, "%s/%s/%s", outdir, p->slug, name);
			rc = write_atomically(dst, &b, err, errlen);
			free(data);
		}
		free(src);
	}
	return rc;
}

int archive_write(const struct config *cfg, const char *outdir, size_t *n, char *err,
		  size_t errlen)
{
	struct archive a;
	*n = 0;
	int rc = archive_load(&a, cfg, err, errlen);
	if (!rc && mkdir(outdir, 0755) < 0 && errno != EEXIST)
		rc = set_err(err, errlen, ARCHIVE_FAIL, "%s: %s", outdir, strerror(errno));
	struct buf b = {0};
	char path[4200];
	for (size_t i = 0; !rc && i < a.n; i++) {
		buf_reset(&b);
		snprintf(path, sizeof path, "%s/%s", outdir, a.v[i].slug);
		if (mkdir(path, 0755) < 0 && errno != EEXIST)
			rc = set_err(err, errlen, ARCHIVE_FAIL, "%s: %s", path, strerror(errno));
		snprintf(path, sizeof path, "%s/%s/index.html", outdir, a.v[i].slug);
		struct post p = {0};
		if (!rc)
			rc = load_issue(cfg, &a.v[i], &p, err, errlen);
		if (!rc && !(rc = render_issue(cfg, &p, "", &b, err, errlen)))
			rc = write_atomically(path, &b, err, errlen);
		if (!rc)
			rc = copy_images(&p, outdir, err, errlen);
		post_free(&p);
		*n += !rc;
	}
	buf_reset(&b);
	snprintf(path, sizeof path, "%s/index.html", outdir);
	if (!rc && archive_index(cfg, &a, "", "/", &b) < 0)
		rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	if (!rc)
		rc = write_atomically(path, &b, err, errlen);
	buf_reset(&b);
	snprintf(path, sizeof path, "%s/feed.xml", outdir);
	if (!rc && archive_feed(cfg, &a, &b) < 0)
		rc = set_err(err, errlen, ARCHIVE_FAIL, "out of memory");
	if (!rc)
		rc = write_atomically(path, &b, err, errlen);
	buf_free(&b);
	archive_free(&a);
	return rc;
}

int archive_exitcode(int rc)
{
	return rc == ARCHIVE_OK ? EX_OK : rc == ARCHIVE_NOFILE ? EX_NOINPUT
	     : rc == ARCHIVE_BAD ? EX_DATAERR : EX_CANTCREAT;
}

/* ---- the archive's routes in herald serve (serve.c routes /archive here) ---- */

/* An embedded image of an archived issue: only a name the post shows
 * (archive_image), typed and checked as the send did (media_load). */
static void archive_file(struct web_server *s, const struct archive_issue *it, const char *name,
			 struct web_resp *p)
{
	char *path = NULL, err[1024];
	struct media md = {0};
	char *data = NULL;
	size_t len;
	int rc = archive_image(s->cfg, it, name, &path, err, sizeof err);
	if (!rc && media_read(&md, MEDIA_IMAGE, path, "archive image", &data, &len, err,
			      sizeof err) == MEDIA_OK) {
		p->status = 200;
		snprintf(p->type_buf, sizeof p->type_buf, "%s", md.type);
		p->type = p->type_buf;
		if (buf_add(&p->body, data, len) < 0) {
			p->type = NULL;
			web_page(s, p, 500, NULL, NULL);
		}
	} else
		rc = -1;
	free(data);
	if (rc)
		web_page(s, p, 404, "Not found", "<p>There is no file at this address.</p>\n");
	media_free(&md);
	free(path);
}

/* The archive, read afresh for each request: a send that starts makes
 * its issue appear without a restart, and nothing is shared between the
 * request threads. */
void archive_route(struct web_server *s, const struct web_req *q, struct web_resp *p)
{
	if (strcmp(q->method, "GET") && strcmp(q->method, "HEAD")) {
		p->allow = "GET, HEAD";
		web_page(s, p, 405, "Method not allowed", "<p>The archive is read only.</p>\n");
		return;
	}
	struct archive a;
	char err[1024];
	if (archive_load(&a, s->cfg, err, sizeof err) < 0) {
		if (s->o->warn)
			s->o->warn(s->o->arg, err);
		web_page(s, p, 500, "The archive is not available", "<p>Try again later.</p>\n");
		return;
	}
	const char *rest = q->path + strlen("/archive");
	p->status = 200;
	p->images = 1;
	if (!*rest || !strcmp(rest, "/")) {
		char pre[300];
		snprintf(pre, sizeof pre, "%s/archive/", s->prefix);
		if (archive_index(s->cfg, &a, pre, "", &p->body) < 0)
			p->status = 500;
	} else if (!strcmp(rest, "/feed.xml")) {
		p->type = "application/atom+xml; charset=utf-8";
		if (archive_feed(s->cfg, &a, &p->body) < 0)
			p->status = 500;
	} else {
		/* /archive/SLUG, or /archive/SLUG/NAME: one of its images */
		char slug[256];
		const char *file = strchr(rest + 1, '/');
		size_t sl = file ? (size_t)(file - rest - 1) : strlen(rest + 1);
		snprintf(slug, sizeof slug, "%.*s", (int)(sl < sizeof slug ? sl : 0), rest + 1);
		const struct archive_issue *it = archive_find(&a, slug);
		char files[600];
		snprintf(files, sizeof files, "%s/archive/%s/", s->prefix, slug);
		if (!it || (file && !file[1]))
			web_page(s, p, 404, "Not found", "<p>There is no issue at this address.</p>\n");
		else if (file)
			archive_file(s, it, file + 1, p);
		else if (archive_page(s->cfg, it, files, &p->body, err, sizeof err) < 0) {
			if (s->o->warn)
				s->o->warn(s->o->arg, err);
			web_page(s, p, 500, "The issue is not available", "<p>Try again later.</p>\n");
		}
	}
	archive_free(&a);
}
