/* post: a Markdown post with `key: value` front matter between `---`
 * fences, parsed once per run with cmark-gfm (tables, strikethrough,
 * autolinks, tagfilter) and rendered once to an HTML fragment and a plain
 * text body. Merge fields ({{...}}) survive both renderings unchanged, so
 * the template module can compile them afterwards; every other "{{" (in
 * code, `\{{` as written in code, one that rendering made) comes out as
 * the template's escape `\{{`, so it reaches the reader as it is. Code
 * spans and blocks are not merged unless POST_MERGE_CODE.
 *
 * Ownership: every string in struct post is owned by it; post_free. A
 * post_parse or post_load that fails leaves it empty. */
#ifndef HERALD_POST_H
#define HERALD_POST_H
#include <stddef.h>
#include <time.h>

/* A merge field of the body (or a broken "{{") as the template will read
 * it, with the line of the post it is on. */
struct post_field {
	char *text;
	int line;
};

struct buf;

struct post {
	char *path;      /* as given */
	char *slug;      /* front matter `slug`, else the file name sans .md */
	char *subject;
	char *date;      /* as written, "" if none */
	int date_line;   /* its line in the file */
	time_t when;     /* parsed date, 0 if none: local time (TZ) unless it
			  * ends in an offset, "+01:00", "-05:00" or "Z" */
	int subject_line;   /* its line in the file */
	char *preheader; /* "" if none */
	int preheader_line;
	char *audience;  /* front matter `audience` (segment.h rules), or NULL */
	int audience_line;
	char *attachments; /* front matter `attachments`: comma-separated
			      paths relative to the post, or NULL */
	int attachments_line;
	int no_archive;  /* front matter `archive: false` */
	char *markdown;  /* body source after the front matter */
	int body_line;   /* line of the file the body starts on */
	char *html;      /* rendered HTML fragment, merge fields intact */
	char *text;      /* rendered plain text (LF), merge fields intact */
	struct post_field *fields; /* those html and text hold, in order */
	size_t nfields, fields_cap;
	int text_width;  /* the column text is wrapped at (the footer's too) */
	/* Images written with a local path: the HTML refers to each as
	 * cid:<cid>, message.c embeds the file (skeleton.c: multipart/related). */
	struct post_image { char *src, *cid; int line; } *images;
	size_t nimages;
};

enum { POST_OK = 0, POST_NOFILE = -1, POST_BAD = -2 };
/* The sysexits code for a post_load result: 0, 66 missing, 65 unusable. */
int post_exitcode(int rc);

/* Adds the post's `audience:` rules to sg (none: 0), each named
 * "post.md:LINE: audience" for errors. */
struct segment;
int post_segment(const struct post *p, struct segment *sg, char *err, size_t errlen);
/* A file the post names (an image, an attachment): n bytes of rel, taken
 * relative to the post's directory unless absolute. NULL: no memory. */
char *post_file(const struct post *p, const char *rel, size_t n);
/* html with each "cid:" link to image k of the post replaced by urls[k]
 * (HTML-escaped): where a browser, not a mail client, shows the post. */
int post_relink_images(const struct post *p, const char *html, const char *const *urls,
		       struct buf *out);

/* flags for the _opts variants. */
enum {
	/* Raw HTML in the Markdown reaches the HTML part (config
	 * unsafe_html = true); GFM's tagfilter still disarms <script>,
	 * <iframe>, <style> and the like. Without it raw HTML is dropped. */
	POST_UNSAFE_HTML = 1,
	/* Front matter only (slug, subject, date): html and text stay
	 * NULL. For looking over a directory of posts cheaply. */
	POST_NO_RENDER = 2,
	/* Merge fields in code spans and blocks too (config merge_code =
	 * true); without it code shows "{{name}}" as written. */
	POST_MERGE_CODE = 4,
};

/* text_width: wrap column of the plain-text part (72). */
int post_load(struct post *p, const char *path, int text_width, char *err,
	      size_t errlen);
int post_parse(struct post *p, const char *name, const char *src,
	       size_t len, int text_width, char *err, size_t errlen);
int post_load_opts(struct post *p, const char *path, int text_width,
		   int flags, char *err, size_t errlen);
int post_parse_opts(struct post *p, const char *name, const char *src,
		    size_t len, int text_width, int flags, char *err,
		    size_t errlen);
void post_free(struct post *p);
/* Parses "YYYY-MM-DD[ HH:MM[:SS]]" (or with a T) as local time, or
 * with " +HH:MM", "-HH:MM", "+HHMM" or "Z" after it (a space before the
 * offset optional) as that offset from UTC. */
int post_parse_date(const char *s, time_t *out);
#endif
