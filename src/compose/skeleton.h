/* skeleton: a message's MIME body the same for every reader, written by
 * libetpan once per run (skel_make): the multipart tree (body_tree() in
 * skeleton.c, the one place a multipart/related or /mixed wrapper goes),
 * its boundaries ("=_" + a letter per level + the run's random id), the
 * parts' content headers and the media parts, from MIME-Version on. The
 * bodies are not in it: a marker stood where each goes and was cut out,
 * leaving a slot (text/plain's, text/html's, then each medium's), which
 * skel_fill fills per reader.
 *
 * The message is multipart/alternative (text/plain, then text/html, both
 * UTF-8 quoted-printable); with images the HTML part is inside
 * multipart/related with them (Content-ID, inline), with attachments the
 * whole is inside multipart/mixed with them.
 *
 * Ownership: struct skel owns its text, slots and markers (skel_free); it
 * borrows the post and the media, which must outlive it. */
#ifndef HERALD_SKELETON_H
#define HERALD_SKELETON_H
#include <stddef.h>
#include "util/buf.h"
#include "compose/media.h"
#include "compose/post.h"

struct skel {
	char id[40];           /* the run's random id: the boundaries', and
				  message.c's Message-IDs start with it */
	struct buf text;       /* the skeleton, bodies cut out */
	size_t *slot;          /* where in text each body goes */
	char (*marker)[40];    /* media[k]'s marker: libetpan keeps the
				  pointer while it writes the tree */
	const struct post *post;   /* the images' Content-IDs */
	const struct media *media; /* the post's images first, then its attachments */
	size_t nmedia, nimages;
};

/* Draws the run's id and writes the skeleton (s zeroed before). -1 with
 * err filled when out of memory or out of random bytes, or when no draw
 * gave boundaries the parts' own header lines do not hold. */
int skel_make(struct skel *s, const struct post *post, const struct media *media, size_t nmedia,
	      char *err, size_t errlen);
/* The skeleton appended to out with the encoded text and HTML parts and
 * the media's bodies in their slots. */
BUF_MUST int skel_fill(struct buf *out, const struct skel *s, const struct buf *text,
		       const struct buf *html);
void skel_free(struct skel *s);

/* 1 if every occurrence of boundary in [s, s + len) is a delimiter line
 * ("--B" CRLF, "--B--") or the boundary parameter's value; 0 if anything
 * else holds it (a part's header, a file name), which would cut the part
 * there. */
int skel_boundary_clear(const char *s, size_t len, const char *boundary);
#endif
