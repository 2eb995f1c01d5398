/* mailparse: reading RFC 5322 / MIME messages that arrive in a mailbox
 * (bounces, unsubscribe requests), with no idea of what they mean.
 *
 * Header blocks are read by hand, leniently, because the blocks that
 * matter most are not message headers libetpan would accept: the field
 * lists of a message/delivery-status or message/feedback-report body, and
 * the broken headers real MTAs write. MIME structure, transfer encodings,
 * RFC 2047 words and dates are libetpan's.
 *
 * Hostile input is expected: every copy is bounded (the limits below),
 * and the MIME walk is limited in depth and parts. Nothing here touches
 * files or the network. */
#ifndef HERALD_MAILPARSE_H
#define HERALD_MAILPARSE_H
#include "util/buf.h"
#include <stddef.h>
#include <time.h>

/* A message needing more than this to say what it is about is not one
 * we can act on anyway. */
#define MAILPARSE_MAX       (4u << 20)  /* bytes of a message handed to libetpan */
#define MAILPARSE_PART_MAX  (256u << 10)/* bytes kept of any one decoded part */
#define MAILPARSE_VALUE_MAX 4096        /* bytes kept of one header field */

/* ---- strings ---- */

/* n in h[0..hl), ignoring ASCII case; NULL if absent or n is empty. */
const char *mailparse_memcasemem(const char *h, size_t hl, const char *n);
/* Copies s into out as one line: control characters and runs of blanks
 * become one space, leading and trailing blanks go. */
void mailparse_one_line(char *out, size_t outlen, const char *s, size_t len);

/* ---- header blocks (RFC 5322 headers, DSN and ARF field lists) ---- */

/* Length of the header block at the start of s: up to the first empty
 * line (or everything). */
size_t mailparse_header_len(const char *s, size_t len);
/* One field of the block [*p, end). Returns 1 with name (NUL-terminated,
 * shorter than nlen) and val (unfolded, capped at MAILPARSE_VALUE_MAX),
 * 0 at the blank line (*blank = 1) or the end, -1 out of memory. *p
 * advances past the field. Lines that are not fields are skipped, as real MTAs write them. */
int mailparse_next_field(const char **p, const char *end, char *name, size_t nlen,
			 struct buf *val, int *blank);
/* Every value of field `name` in the block, as one line, via fn. */
void mailparse_each_field(const char *blk, size_t len, const char *name,
			  void (*fn)(void *arg, const char *v), void *arg);
/* The first value of field `name` as one line, kept in out (cleared
 * first); "" when absent. Not RFC 2047 decoded. */
const char *mailparse_field(const char *blk, size_t len, const char *name, struct buf *out);
/* The same, copied to out[outlen]; tmp is scratch. */
void mailparse_field_line(const char *blk, size_t len, const char *name, struct buf *tmp,
			  char *out, size_t outlen);
/* The "<...>" of a Message-ID value into out (left as it is if none). */
void mailparse_msgid(const char *v, char *out, size_t outlen);
/* An RFC 5322 date as UTC seconds; 0 when v is empty or not a date. */
time_t mailparse_date(const char *v);

/* ---- the MIME walk ---- */

/* What the MIME walk keeps of a message: the first part of each kind,
 * decoded. The parts of a returned message (message/rfc822 and its kin)
 * are not looked into: they are someone else's text. */
struct mailparse_parts {
	struct buf status;     /* message/(global-)delivery-status */
	struct buf feedback;   /* message/feedback-report */
	struct buf returned;   /* header block of the returned message */
	struct buf text;       /* first text/plain outside returned messages */
	char report_type[40];  /* of the first multipart/report, lower-case */
	int nparts;
};
/* Walks msg (at most MAILPARSE_MAX bytes) into x, which it clears first;
 * a message libetpan cannot parse leaves x empty. -1: no memory (x may
 * hold part of the result). Either way mailparse_parts_free(x). */
int mailparse_parts(const char *msg, size_t len, struct mailparse_parts *x);
void mailparse_parts_free(struct mailparse_parts *x);
/* Appends msg's body as it stands (what follows the header block), at
 * most MAILPARSE_PART_MAX bytes. -1: no memory. */
int mailparse_body(const char *msg, size_t len, struct buf *out);

/* ---- whole messages ---- */

/* The first value of header `name` in msg's header block, unfolded, on
 * one line, RFC 2047 words decoded to UTF-8; "" when absent. */
void mailparse_header(const char *msg, size_t len, const char *name, char *out,
		      size_t outlen);
/* Appends msg's first text/plain part (outside attached messages),
 * decoded, or the body of a message that is not MIME. -1: no memory. */
int mailparse_text(const char *msg, size_t len, struct buf *out);
#endif
