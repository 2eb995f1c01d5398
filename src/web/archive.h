#ifndef HERALD_ARCHIVE_H
#define HERALD_ARCHIVE_H
/* archive: the issues that went out, as web pages and an Atom feed (RFC
 * 4287), for herald serve (/archive/, /archive/SLUG, /archive/feed.xml)
 * and `herald archive OUTDIR` alike: one renderer, two ways out.
 *
 * An issue is in the archive once its sending has begun (its journal
 * holds a line, or it is done: journal_started), so the {{web_url}} a
 * reader's message carries works from the first message on; a post with
 * `archive: false`, one that does not parse, and one not yet sent are not.
 * The posts are the .md files of web.posts.
 *
 * An issue page is the post's body merged for an anonymous reader: every
 * reader field empty (so fallbacks show), no address, no token.
 *
 * Ownership: archive_load fills struct archive; archive_free frees it. */
#include <stddef.h>
#include <time.h>
#include "input/config.h"
#include "util/buf.h"
#include "compose/post.h"

struct archive_issue {
	char *path, *slug, *subject, *date;
	time_t when;
};

struct archive {
	struct archive_issue *v;   /* newest first */
	size_t n;
};

/* FAIL: writing or memory; BAD: a post that cannot be shown. */
enum { ARCHIVE_OK = 0, ARCHIVE_FAIL = -1, ARCHIVE_NOFILE = -2, ARCHIVE_BAD = -3 };

int archive_load(struct archive *a, const struct config *cfg, char *err, size_t errlen);
void archive_free(struct archive *a);
const struct archive_issue *archive_find(const struct archive *a, const char *slug);
/* The index page; each issue's link is link_pre SLUG link_post. */
int archive_index(const struct config *cfg, const struct archive *a, const char *link_pre,
		  const char *link_post, struct buf *out);
/* One issue's page. Its embedded images are files beside it, named by
 * archive_image_name and linked as files_url NAME. */
int archive_page(const struct config *cfg, const struct archive_issue *it, const char *files_url,
		 struct buf *out, char *err, size_t errlen);
/* Image k (from 0) of the post: "K-basename" (the number keeps two
 * files of one name apart). */
void archive_image_name(const struct post_image *img, size_t k, char *out, size_t len);
/* The file of the issue's image called name, its path into *path (the
 * caller frees), or ARCHIVE_NOFILE. */
int archive_image(const struct config *cfg, const struct archive_issue *it, const char *name,
		  char **path, char *err, size_t errlen);
int archive_feed(const struct config *cfg, const struct archive *a, struct buf *out);
/* herald archive OUTDIR: OUTDIR/index.html, OUTDIR/SLUG/index.html,
 * OUTDIR/feed.xml, each written to a temporary name and renamed. *n: the
 * issues written. */
int archive_write(const struct config *cfg, const char *outdir, size_t *n, char *err,
		  size_t errlen);
/* The Content-Security-Policy of archive pages: the post's own https
 * images may show; still no script, no other style. */
#define ARCHIVE_IMG_SRC "img-src https: 'self'"
int archive_exitcode(int rc);
#endif
