/* message: one subscriber's RFC 5322 + MIME message, built with libetpan.
 *
 * msg_init compiles everything that is the same for every subscriber (the
 * layout templates with the post body inlined, the subject, the unsubscribe
 * URL); msg_build then only merges fields and assembles MIME:
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
 * Ownership: struct msg_ctx owns its templates and field table; msg_free.
 * It borrows cfg and post, which must outlive it. */
#ifndef HERALD_MESSAGE_H
#define HERALD_MESSAGE_H
#include <stddef.h>
#include <time.h>
#include "buf.h"
#include "config.h"
#include "dkim.h"
#include "post.h"
#include "template.h"

/* Built-in fields, in the order of the field table; list columns follow. */
enum msg_field {
	MF_EMAIL, MF_NAME, MF_SUBJECT, MF_PREHEADER, MF_DATE,
	MF_UNSUBSCRIBE_URL, MF_TOKEN, MF_LIST_NAME, MF_FROM_NAME,
	MF_FROM_EMAIL, MF_VERP, MF_NBUILTIN
};

/* Their names, as templates and posts write them. */
extern const char *const msg_builtin_fields[MF_NBUILTIN];

struct qp_layout;
struct mailimf_date_time;

struct msg_ctx {
	const struct config *cfg;
	const struct post *post;
	struct tmpl *subject, *html, *text, *unsub, *return_path;
	char **names;          /* field table: built-ins, then list columns */
	size_t nnames, ncols;
	const char *secret;    /* unsubscribe-token key (borrowed) */
	char date_long[64];    /* "30 November 2026" */
	char id_prefix[40];    /* per-run random part of Message-IDs */
	unsigned long seq;
	int test_mode;         /* "[TEST] " subject prefix */
	const char **vals;     /* scratch, nnames entries */
	struct buf tmp_url, tmp_subj, tmp_text, tmp_html, tmp_rp, qp_text, qp_html;
	struct buf tmp_msg;    /* the unsigned message, when signing */
	struct buf tmp_skel;   /* libetpan's output, bodies still markers */
	char *reply_name, *reply_addr; /* reply_to, parsed once */
	struct qp_layout *qp_text_l, *qp_html_l; /* layouts pre-encoded */
	struct buf tmp_line, tmp_val;
	int want_parts;        /* also keep tmp_text/tmp_html (preview) */
	struct mailimf_date_time *date_cache;
	time_t date_at;
	struct dkimsig *dkim;  /* NULL: no dkim group in the config */
};

struct msg_out {
	char message_id[160];  /* with angle brackets */
	char mail_from[512];   /* envelope sender (VERP when configured) */
};

enum { MSG_OK = 0, MSG_BADROW = -1, MSG_FAIL = -2, MSG_NOFILE = -3 };

/* cols: the list's column names (lower-case), ncols of them. secret may be
 * NULL when no unsubscribe URL uses {{token}}. */
int msg_init(struct msg_ctx *m, const struct config *cfg,
	     const struct post *post, const char *const *cols, size_t ncols,
	     const char *secret, int test_mode, char *err, size_t errlen);
/* fields: the subscriber's row, ncols values. Appends the message (CRLF,
 * ready for the wire) to out. On MSG_BADROW err says why, without file or
 * line (the caller knows them). */
int msg_build(struct msg_ctx *m, const char *const *fields, const char *email,
	      const char *name, time_t now, struct buf *out,
	      struct msg_out *info, char *err, size_t errlen);
void msg_free(struct msg_ctx *m);

/* Helpers exposed for the unit tests. */
/* RFC 2047 Q-encoding of UTF-8 text into encoded-words of <= 75 chars;
 * ASCII-only input is copied unchanged. phrase: a display name (encoded
 * whole); else a subject (only the words that need it). */
int msg_encode_words(struct buf *out, const char *s, int phrase);
/* RFC 2045 quoted-printable of LF-terminated text: CRLF lines of at most
 * 76 characters, only '=', control and 8-bit bytes, trailing blanks and a
 * line-opening "From " encoded. */
int msg_qp_encode(struct buf *out, const char *s, size_t len);
/* hex HMAC-SHA256(secret, lower-case address): 64 hex digits + NUL. */
int msg_token(const char *secret, const char *email, char out[65]);
/* 1 if s is valid UTF-8 without CR, LF or NUL. */
int msg_header_safe(const char *s);
int msg_utf8_valid(const char *s, size_t len);
#endif
