/* dsn: what one message in a bounce mailbox says about our readers.
 *
 * dsn_parse reads a whole RFC 5322 message (CRLF or LF) and reports:
 *  - RFC 3464 delivery status notifications (multipart/report;
 *    report-type=delivery-status, and RFC 6533's global-delivery-status):
 *    one entry per recipient block with Action failed (or no Action);
 *    Action delayed is reported as DSN_DELAYED, not as a bounce; delivered,
 *    relayed and expanded are dropped;
 *  - RFC 5965 ARF feedback reports (report-type=feedback-report) as
 *    complaints, except Feedback-Type not-spam and auth-failure;
 *  - failing that, the text bounces of Postfix, Exim, Sendmail, qmail,
 *    Exchange and Gmail (and X-Failed-Recipients), read heuristically;
 *  - in every case the reader encoded in a VERP return path (the bounce
 *    comes back to bounces+joy=example.net@example.org; it also stands in
 *    for a Final-Recipient that names no address), and the
 *    Message-ID of the returned message, so the caller can tie the bounce
 *    to the reader and post even when the report itself is useless.
 * Kinds follow RFC 3463: status class 5 is hard, 4 soft; without a status
 * the SMTP code decides, then the wording ("permanent", "user unknown").
 *
 * Nothing here touches files or the network: the scanner resolves the
 * Message-ID against the journals. Hostile input is expected: every copy
 * is bounded (mailparse.h), and so is the MIME walk.
 *
 * Ownership: struct dsn_report owns its recipient array; dsn_free. */
#ifndef HERALD_DSN_H
#define HERALD_DSN_H
#include <stddef.h>
#include <time.h>

enum dsn_kind { DSN_HARD, DSN_SOFT, DSN_COMPLAINT, DSN_DELAYED };

/* What kind of message it was, as a whole. */
enum dsn_format {
	DSN_NOT_BOUNCE = 0, /* nothing we recognise: leave it to a human */
	DSN_RFC3464,
	DSN_ARF,
	DSN_TEXT,           /* a non-standard text bounce, read heuristically */
};

struct dsn_rcpt {
	char addr[320];      /* Final-Recipient (else Original-Recipient), lower-case */
	enum dsn_kind kind;
	char status[16];     /* RFC 3463 "5.1.1", or "" */
	int code;            /* SMTP reply code from the diagnostic, or 0 */
	char text[400];      /* diagnostic, one line, control characters removed */
};

struct dsn_report {
	enum dsn_format format;
	char family[16];     /* "rfc3464", "arf", "postfix", "exim", "sendmail",
				"qmail", "exchange", "gmail", "verp", "" */
	char orig_msgid[160];/* Message-ID of the returned message, with <> */
	char verp_addr[320]; /* the reader a VERP return path names, or "" */
	time_t date;         /* the report's Date: (else Arrival-Date), or 0 */
	char report_id[200]; /* what names this report: its own Message-ID
				"<...>", else "sha256:" and the digest of its
				bytes; a rescan gives the same */
	size_t unnamed;      /* failed recipient blocks naming no address
				(and no VERP address to stand in) */
	struct dsn_rcpt *rcpt;
	size_t nrcpt;
};

/* Parses msg. return_path is bounce.return_path (NULL or without
 * {{verp}}: no VERP decoding). Returns 0 (r filled, r->format says
 * whether it was a bounce at all) or -1 on allocation failure. */
int dsn_parse(const char *msg, size_t len, const char *return_path,
	      struct dsn_report *r, char *err, size_t errlen);
void dsn_free(struct dsn_report *r);

/* The reader a VERP address encodes: with return_path
 * "bounces+{{verp}}@example.org", "bounces+joy=example.net@example.org"
 * gives "joy@example.net" (the last '=' is the '@'; case-insensitive on
 * the fixed parts). Returns 0 with out filled, -1 if addr does not match
 * or decodes to something that is not an address. */
int dsn_verp_decode(const char *return_path, const char *addr, char *out,
		    size_t outlen);
/* "5.1.1" -> 1 if s starts with a valid RFC 3463 status (class 2, 4 or 5,
 * subject and detail of 1 to 3 digits); the status is copied to out. */
int dsn_status_parse(const char *s, char out[16]);
const char *dsn_kind_name(enum dsn_kind k);
#endif
