/* subscribers: a streaming RFC 4180 CSV reader for the subscriber list.
 * Memory stays flat as the list grows, but for the set of addresses seen
 * (to report duplicates). The first record is the header row: column names
 * are trimmed and lower-cased; `email` is required, `name` and `status`
 * optional, every column is a merge field.
 *
 * Ownership: the reader owns everything; a row's strings stay valid until
 * the next subs_next() or subs_close(). */
#ifndef HERALD_SUBSCRIBERS_H
#define HERALD_SUBSCRIBERS_H
#include <stddef.h>

struct subs_reader;

struct subs_row {
	const char *const *fields; /* one per column, NUL-terminated */
	size_t nfields;            /* == subs_ncols() */
	const char *email;         /* trimmed address, as written */
	const char *name;          /* trimmed, "" without a name column */
	long line;                 /* line the record starts on (1-based) */
};

enum subs_status {
	SUBS_END = 0,       /* no more records */
	SUBS_ROW = 1,       /* a valid, subscribed row is in *row */
	SUBS_INACTIVE = 2,  /* status is not empty/"subscribed": skip quietly;
			       *row is filled (for --test lookups) */
	SUBS_BAD = -1,      /* bad row, skipped: err says "FILE:LINE: why" */
	SUBS_FATAL = -2,    /* the list cannot be used at all (no email column,
			       no header row, unreadable, CSV syntax error) */
	SUBS_NOFILE = -3,   /* the file does not exist / cannot be opened */
};

/* The sysexits code for a list that cannot be used (subs_open, or
 * SUBS_FATAL from subs_next): 66 missing, 65 otherwise; 0 for the rest. */
int subs_exitcode(int rc);

/* Opens the file, decides once whether it is a list herald can read
 * (UTF-16 and one-byte code pages are refused whole, with the fix; a
 * UTF-8 BOM is skipped) and reads the header row. sep: the field
 * delimiter (config subscribers_delimiter; 0 means ','). */
int subs_open(struct subs_reader **out, const char *path, char sep, char *err,
	      size_t errlen);
size_t subs_ncols(const struct subs_reader *r);
/* Lower-cased, trimmed column names, subs_ncols() of them. */
const char *const *subs_colnames(const struct subs_reader *r);
/* Index of a column by (lower-case) name, or -1. */
int subs_col(const struct subs_reader *r, const char *name);
int subs_next(struct subs_reader *r, struct subs_row *row, char *err,
	      size_t errlen);
/* Back to the first row, for a second pass over the same open file (the
 * one a send counts, then sends). The set of addresses seen stays: the
 * second pass gives every row the verdict the first gave it (a duplicate
 * is still one, naming the same first line) without building the set
 * again, so two passes hold one set. Returns 0 or SUBS_FATAL. */
int subs_rewind(struct subs_reader *r, char *err, size_t errlen);

/* send --shard I/N: the shard, 1..n, an address belongs to. The first 8
 * bytes of SHA-256 over the address (as the list writes it, trimmed)
 * with its ASCII letters lower-cased, read as a big-endian unsigned
 * 64-bit integer, mod n, plus 1; n 0 or 1 gives 1. The same on every
 * host (README shows it in Python). 0, or -1 out of memory. */
int subs_shard(const char *email, unsigned n, unsigned *shard);
void subs_close(struct subs_reader *r);

/* Size caps, checked by subs_next for check and send alike. A name goes
 * into the To header: RFC 5322 lines stop at 998 octets and RFC 2047
 * encoding can triple a name, so a 100 MB name would otherwise build a
 * 300 MB message. Other fields may be merged into the body at any size
 * up to SUBS_FIELD_MAX; one merged into the subject meets the subject's
 * own cap (message.c). */
#define SUBS_NAME_MAX 256
#define SUBS_FIELD_MAX (1024 * 1024)
#endif
