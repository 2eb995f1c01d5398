/* encode: the encodings a message's header and parts go through, with no
 * idea of what the message is: RFC 2047 encoded-words, quoted-printable
 * (RFC 2045), RFC 2231 parameter values, and libetpan's header folds
 * after a colon joined. message.c, skeleton.c and confirm.c use them. */
#ifndef HERALD_ENCODE_H
#define HERALD_ENCODE_H
#include <stddef.h>
#include "util/buf.h"

/* 1 if s is valid UTF-8 without CR, LF or NUL: what may go into a header
 * (encoded where it is not ASCII). */
int enc_header_safe(const char *s);

/* RFC 2047 encoding of UTF-8 text into encoded-words of <= 75 chars (Q,
 * or Base64 where that needs fewer words); ASCII-only input is copied
 * unchanged. Only the words that need it are encoded, a run of them
 * together (one encoded-word when it fits). phrase: a display name, whose
 * words that are not atoms join the run too, and whose first word may
 * take a line of its own; else a subject, whose first word is kept short
 * enough to share its line with "Subject: ". */
BUF_MUST int enc_words(struct buf *out, const char *s, int phrase);

/* RFC 2045 quoted-printable of LF-terminated text: CRLF lines of at most
 * 76 characters, only '=', control and 8-bit bytes, trailing blanks and a
 * line-opening "From " or "." encoded. */
BUF_MUST int enc_qp(struct buf *out, const char *s, size_t len);

/* Header lines [s, s + len) as libetpan wrote them, appended to out with
 * its folds right after a colon joined (a blank some parsers keep), but
 * for a display name's encoded-word, which keeps its own line (the blank
 * there is folding white space; joined, the line could pass 78). */
BUF_MUST int enc_add_unfolded(struct buf *out, const char *s, size_t len);

/* MIME parameter values (a file name). enc_param_plain: 1 if s can go in
 * a quoted-string as it is (printable ASCII, no quote or backslash).
 * Else enc_rfc2231 gives the RFC 2231 extended value (UTF-8''%XX..., for
 * a NAME* parameter) and enc_param_words the encoded-words older clients
 * (and Outlook) read inside quotes. */
int enc_param_plain(const char *s);
BUF_MUST int enc_rfc2231(struct buf *out, const char *s);
BUF_MUST int enc_param_words(struct buf *out, const char *s);
/* libetpan quotes every parameter value, extended ones too: those quotes
 * taken out of the MIME text b (in place). */
void enc_unquote_ext_values(struct buf *b);
#endif
