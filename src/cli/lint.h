/* lint: what `herald check` finds wrong with a post, its templates, the
 * config and the message they make, before any reader sees it.
 *
 * Each lint_* call appends findings (error or warning, FILE[:LINE], text)
 * to a struct lint; nothing is printed here. Errors are what gets mail
 * clipped, filtered or unreadable: a message over Gmail's clipping size,
 * images without alt text, links and images that are relative or plain
 * http, links whose whole text is "click here", merge fields nobody
 * provides, no way to unsubscribe. Warnings are advice: a long subject,
 * no preheader, no DKIM signature or one not aligned with From.
 *
 * Ownership: struct lint owns its items and their strings; lint_free. */
#ifndef HERALD_LINT_H
#define HERALD_LINT_H
#include <stddef.h>
#include "input/config.h"
#include "compose/post.h"

/* Gmail shows "[Message clipped]" and hides the rest (the unsubscribe
 * link with it) past this many bytes. */
#define LINT_CLIP_BYTES (102 * 1024)
/* RFC 5322's recommended line length; inboxes cut subjects well before. */
#define LINT_SUBJECT_CHARS 78

enum lint_level { LINT_WARNING, LINT_ERROR };
enum lint_area { LINT_CONFIG, LINT_POST, LINT_TEMPLATE, LINT_MESSAGE };

struct lint_item {
	enum lint_level level;
	enum lint_area area;
	char *where; /* "FILE" or "FILE:LINE" */
	char *msg;
};

struct lint {
	struct lint_item *items;
	size_t n, cap;
	size_t errors, warnings;
	size_t field_errors; /* unknown or malformed merge fields */
};

/* fields: every merge-field name the message can fill (built-ins and the
 * list's columns), matched case-insensitively. All return 0, or -1 when
 * out of memory. */
int lint_config(struct lint *l, const struct config *c);
/* The post's front matter and Markdown: fields, links, images, alt text,
 * link wording, subject length, preheader. */
int lint_post(struct lint *l, const struct post *p, const char *const *fields,
	      size_t nfields);
/* One layout template (path for the messages, src its text); html: the
 * .html one, whose href/src attributes are checked too. {{body}} is known
 * here. */
int lint_template(struct lint *l, const char *path, const char *src, int html,
		  const char *const *fields, size_t nfields);
/* The built message: bytes against Gmail's clipping size, the merged
 * subject's length. what names it ("POST.md, message to ADDR"). */
int lint_message(struct lint *l, const char *what, size_t bytes, const char *subject);
/* Attachments or embedded images (what: "attachment", "embedded image")
 * over LINT_MEDIA_BYTES in all: a warning with the figure (every reader
 * downloads them; many relays cap a message at 10-25 MB). */
#define LINT_MEDIA_BYTES (1024 * 1024)
int lint_media(struct lint *l, const char *where, const char *what, size_t n, size_t bytes);
void lint_free(struct lint *l);

/* Helpers exposed for the unit tests. */
/* 1 when the whole visible text of a link says nothing of where it goes
 * ("click here", "here", "this link", ...). */
int lint_vague_link_text(const char *text);
/* NULL if url is fine for a link (image: for an image source) in mail,
 * else why not. A merge field ("{{...") is taken as fine. */
const char *lint_url_problem(const char *url, int image);
#endif
