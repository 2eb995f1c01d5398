/* message: one subscriber's RFC 5322 + MIME message, built with libetpan.
 *
 * msg_new compiles everything that is the same for every subscriber (the
 * layout templates with the post body inlined, the subject, the unsubscribe
 * URL, the token key) and has skeleton.c write the MIME skeleton once: the
 * multipart structure, its boundaries (random per run), the parts' content
 * headers and the media, with a slot for each reader's text and HTML part.
 * msg_build then only merges fields, writes the reader's header fields
 * (libetpan; the encoders are encode.c's) and fills the slots. The message is:
 * multipart/alternative, text/plain first, text/html second, UTF-8,
 * quoted-printable, CRLF, RFC 2047 headers, List-Id, List-Unsubscribe
 * (+ List-Unsubscribe-Post for https URLs), a Message-ID on the From domain.
 *
 * With dkim configured, every message is DKIM-signed here (dkim.c), so
 * send, --test, --dry-run and preview all hand out the signed bytes.
 *
 * A value bound for a header (the name, the address, any field the subject
 * uses) that holds CR, LF or NUL, or is not UTF-8, makes msg_build refuse
 * that subscriber (MSG_BADROW) instead of emitting a header from it.
 *
 * List-Unsubscribe carries the https URL (with List-Unsubscribe-Post for
 * RFC 8058 one-click) and/or mailto:ADDR?subject=unsubscribe EMAIL TOKEN:
 * the address and token let a request be matched to its reader whatever
 * address it is sent from (a reader subscribed as jane+news@ who writes
 * from jane@), which unsub_parse_request checks.
 *
 * msg_build runs in stages, each its own function: merge the reader's
 * fields, render the parts, the envelope, the header fields, the header
 * written and the skeleton filled, then DKIM. The skeleton's tree is
 * skeleton.c's body_tree(): the one place a multipart/related or /mixed
 * wrapper goes.
 *
 * Ownership: struct msg_ctx owns its templates and field table; msg_free.
 * It borrows cfg and post, which must outlive it. */
#ifndef HERALD_MESSAGE_H
#define HERALD_MESSAGE_H
#include <stddef.h>
#include <time.h>
#include "util/buf.h"
#include "input/config.h"
#include "compose/post.h"

/* Built-in fields, in the order of the field table; list columns follow. */
enum msg_field {
	MF_EMAIL, MF_NAME, MF_SUBJECT, MF_PREHEADER, MF_DATE,
	MF_UNSUBSCRIBE_URL, MF_TOKEN, MF_LIST_NAME, MF_FROM_NAME,
	MF_FROM_EMAIL, MF_VERP, MF_SLUG, MF_POSTAL_ADDRESS, MF_LANGUAGE, MF_WEB_URL, MF_NBUILTIN
};

/* Their names, as templates and posts write them. */
extern const char *const msg_builtin_fields[MF_NBUILTIN];

/* Opaque: what callers may look at goes through msg_last_parts(). */
struct msg_ctx;
struct media;

/* msg_new flags. */
enum {
	MSG_TEST = 1,       /* "[TEST] " subject prefix */
	MSG_KEEP_PARTS = 2, /* keep each build's plain parts (preview, check) */
};

/* The parts of the last message msg_build made, valid until the next
 * msg_build or msg_free. html and text are the parts as a reader sees
 * them, before transfer encoding, and only kept with MSG_KEEP_PARTS. */
struct msg_parts {
	const char *subject;          /* merged, before RFC 2047 */
	const struct buf *html, *text;
	const struct buf *qp_html, *qp_text; /* as they go on the wire */
	/* Attachments and embedded images: how many and their size; and
	 * the encoded bytes of both in the message (Gmail's clip counts the
	 * message without them). media: all of them, images first. */
	size_t nattach, attach_bytes, nimages, image_bytes, media_wire;
	const struct media *media;
};

struct msg_out {
	char message_id[160];  /* with angle brackets */
	char mail_from[512];   /* envelope sender (VERP when configured) */
};

enum { MSG_OK = 0, MSG_BADROW = -1, MSG_FAIL = -2, MSG_NOFILE = -3 };
/* The narrowest content column of the default templates (600 px less
 * their padding): embedded images wider than this are given this width. */
#define MSG_CONTENT_WIDTH 520
/* The sysexits code for a msg_new result: 66 a template is missing, 65
 * otherwise. */
int msg_exitcode(int rc);

/* cols: the list's column names (lower-case), ncols of them. secret may be
 * NULL when no unsubscribe URL uses {{token}} (then the mailto subject
 * carries the address alone); msg_secret() fetches it as the config asks.
 * On failure *out is NULL and nothing needs freeing. */
int msg_new(struct msg_ctx **out, const struct config *cfg,
	    const struct post *post, const char *const *cols, size_t ncols,
	    const char *secret, unsigned flags, char *err, size_t errlen);
/* fields: the subscriber's row, ncols values. Appends the message (CRLF,
 * ready for the wire) to out. On MSG_BADROW err says why, without file or
 * line (the caller knows them). */
int msg_build(struct msg_ctx *m, const char *const *fields, const char *email,
	      const char *name, time_t now, struct buf *out,
	      struct msg_out *info, char *err, size_t errlen);
void msg_last_parts(const struct msg_ctx *m, struct msg_parts *p);
void msg_free(struct msg_ctx *m); /* NULL is fine */

/* The post's date as {{date}} shows it ("30 November 2026"). */
void msg_long_date(const struct post *p, char *out, size_t len);
/* The archive page, {{web_url}}: web.base_url/archive/SLUG, or ""
 * without a base_url. */
void msg_web_url(const struct config *cfg, const struct post *p, char *out, size_t len);

/* The unsubscribe-token secret, when the config's messages use one: an
 * unsubscribe.url with {{token}} needs it (-1, err says how to set it);
 * a mailto address uses it when it is there (*secret NULL otherwise). */
int msg_secret(const struct config *cfg, const char **secret, char *err, size_t errlen);
#endif
