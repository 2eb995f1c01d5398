#ifndef HERALD_MEDIA_H
#define HERALD_MEDIA_H
/* media: the files a message carries besides its text: images embedded
 * in the HTML part (multipart/related, referred to by Content-ID) and
 * attachments (multipart/mixed). Each is read, typed and Base64-encoded
 * once per run; every reader's message splices the same encoded body.
 *
 * Types come from kept libraries: gdk-pixbuf reads an image's format and
 * pixel size from its header without decoding it, libmagic names an
 * attachment's MIME type.
 *
 * Ownership: media_load fills *m; media_free releases it. */
#include <stddef.h>
#include "util/buf.h"

enum media_kind { MEDIA_IMAGE, MEDIA_ATTACHMENT };
enum { MEDIA_OK = 0, MEDIA_BAD = -1, MEDIA_NOFILE = -2 };

struct media {
	enum media_kind kind;
	char *path;        /* the file read */
	char *name;        /* its base name (Content-Disposition filename) */
	char *type;        /* MIME type */
	int width, height; /* images: pixels */
	size_t size;       /* bytes of the file */
	struct buf body;   /* Base64, 76-column CRLF lines */
};

/* Images herald embeds: what every mail client shows inline. */
#define MEDIA_IMAGE_TYPES "PNG, JPEG or GIF"

/* what names the file's source for errors ("post.md:12: image"). */
int media_load(struct media *m, enum media_kind kind, const char *path, const char *what,
	       char *err, size_t errlen);
/* The same without the encoding: the file's bytes into *data (the
 * caller's to free), for a page that serves the file as it is. */
int media_read(struct media *m, enum media_kind kind, const char *path, const char *what,
	       char **data, size_t *len, char *err, size_t errlen);
void media_free(struct media *m);
#endif
