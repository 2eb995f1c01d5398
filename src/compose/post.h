/* post: a Markdown post with `key: value` front matter between `---`
 * fences, parsed once per run with cmark-gfm (tables, strikethrough,
 * autolinks, tagfilter) and rendered once to an HTML fragment and a plain
 * text body. Merge fields ({{...}}) survive both renderings unchanged, so
 * the template module can compile them afterwards.
 *
 * Ownership: every string in struct post is owned by it; post_free. A
 * post_parse or post_load that fails leaves it empty. */
#ifndef HERALD_POST_H
#define HERALD_POST_H
#include <stddef.h>
#include <time.h>

struct post {
	char *path;      /* as given */
	char *slug;      /* front matter `slug`, else the file name sans .md */
	char *subject;
	char *date;      /* as written, "" if none */
	time_t when;     /* parsed date (local time), 0 if none */
	char *preheader; /* "" if none */
	char *markdown;  /* body source after the front matter */
	int body_line;   /* line of the file the body starts on */
	char *html;      /* rendered HTML fragment, merge fields intact */
	char *text;      /* rendered plain text (LF), merge fields intact */
	int text_width;  /* the column text is wrapped at (the footer's too) */
};

enum { POST_OK = 0, POST_NOFILE = -1, POST_BAD = -2 };
/* The sysexits code for a post_load result: 0, 66 missing, 65 unusable. */
int post_exitcode(int rc);

/* flags for the _opts variants. */
enum {
	/* Raw HTML in the Markdown reaches the HTML part (config
	 * unsafe_html = true); GFM's tagfilter still disarms <script>,
	 * <iframe>, <style> and the like. Without it raw HTML is dropped. */
	POST_UNSAFE_HTML = 1,
	/* Front matter only (slug, subject, date): html and text stay
	 * NULL. For looking over a directory of posts cheaply. */
	POST_NO_RENDER = 2,
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
/* Parses "YYYY-MM-DD[ HH:MM[:SS]]" (or with a T) as local time. */
int post_parse_date(const char *s, time_t *out);
#endif
