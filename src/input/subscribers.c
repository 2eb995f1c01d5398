/* subscribers: streaming RFC 4180 reader (libcsv), address validation,
 * dedupe and status filtering.
 *
 * The file is read in 64 KiB chunks, and each chunk is handed to libcsv in
 * pieces that end at a CR or LF. libcsv only ends a record on a CR or LF,
 * so at most one record completes per piece: subs_next() feeds pieces
 * until one does, returns it, and resumes from the same place next time.
 * The "queue" of complete records is therefore a single slot, and memory
 * holds one chunk and one record, whatever the length of the list.
 *
 * Line numbers: libcsv reports none, so we count the '\n' we feed. A piece
 * never spans a '\n' except as its last byte, so the whole piece sits on
 * one line. Between records libcsv skips spaces, tabs, CRs and LFs; the
 * first piece holding any other byte while the parser is between records
 * is where the next record starts, whatever lines its quoted fields span.
 *
 * Malformed quoting is SUBS_FATAL, not a skipped row: once quotes are
 * unbalanced we no longer know where records end (a stray quote can turn
 * the following lines, other subscribers' rows, into one field), so
 * resynchronising at the next newline would be a guess that can silently
 * drop or merge rows. The user is better served by "fix line N and rerun".
 * CSV_STRICT_FINI makes a quote left open at the end of the file an error
 * too, instead of a field that silently swallowed the rest of the file.
 */
#include "input/subscribers.h"
#include "util/addr.h"
#include "util/addrset.h"
#include "util/buf.h"

#include <arpa/inet.h>
#include <csv.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <libetpan/libetpan.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>

#define CHUNK_SIZE (64 * 1024)
#define MSG_SIZE 1024

/* The record being assembled: field bytes, each NUL-terminated. Offsets,
 * not pointers, because data.p moves as it grows. */
struct record {
	struct buf data;
	size_t *off, *len;
	size_t n, cap;
	long line;
	int done;
};

struct subs_reader {
	char *path;
	FILE *f;
	char sep;	/* the field delimiter (subscribers_delimiter) */
	struct csv_parser csv;
	unsigned char *chunk;
	size_t clen, cpos;
	int started, eof, ended;
	long line;	/* line of the next byte fed to libcsv */
	int idle;	/* libcsv is between records */
	int oom;	/* a callback failed to allocate */
	struct record rec;

	char **cols;
	size_t ncols;
	int email_col, name_col, status_col;
	const char **fieldv;

	struct addrset seen;	/* address -> line first seen on */
	/* Read again after subs_rewind: seen already holds every address
	 * with the line it was first on, so a row is a duplicate when that
	 * line is not its own (and the set is not built a second time). */
	int again;
	int fatal;
	char msg[MSG_SIZE];	/* the fatal message, repeated on every call */
};

/* ---- record assembly (libcsv callbacks) ---------------------------------- */

static void record_reset(struct record *rec)
{
	buf_reset(&rec->data);
	rec->n = 0;
	rec->done = 0;
}

static int record_grow(struct record *rec)
{
	size_t cap = rec->cap ? rec->cap * 2 : 16;
	size_t *off = realloc(rec->off, cap * sizeof(*off));

	if (!off)
		return -1;
	rec->off = off;
	size_t *len = realloc(rec->len, cap * sizeof(*len));

	if (!len)
		return -1;
	rec->len = len;
	rec->cap = cap;
	return 0;
}

static void on_field(void *s, size_t len, void *data)
{
	struct subs_reader *r = data;
	struct record *rec = &r->rec;
	size_t at = rec->data.len;

	if (r->oom)
		return;
	if ((rec->n == rec->cap && record_grow(rec) < 0) ||
	    buf_add(&rec->data, s, len) < 0 || buf_addc(&rec->data, '\0') < 0) {
		r->oom = 1;
		return;
	}
	rec->off[rec->n] = at;
	rec->len[rec->n] = len;
	rec->n++;
}

static void on_row(int c, void *data)
{
	struct subs_reader *r = data;

	(void)c;
	r->rec.done = 1;
	r->idle = 1;
}

/* ---- reading ------------------------------------------------------------- */

static int fatal(struct subs_reader *r, char *err, size_t errlen,
		 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fatal(struct subs_reader *r, char *err, size_t errlen,
		 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	r->fatal = 1;
	return set_err(err, errlen, SUBS_FATAL, "%s", r->msg);
}

static int is_blank(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return 0;
	return 1;
}

static int syntax_error(struct subs_reader *r, unsigned char c, char *err,
			size_t errlen)
{
	const char *why = c == '"' && !r->csv.quoted ?
		"quote inside an unquoted field" :
		"text after a closing quote (quotes inside a quoted field must be doubled)";

	if (r->rec.line != r->line)
		return fatal(r, err, errlen,
			     "%s:%ld: CSV syntax error: %s (record starts on line %ld)",
			     r->path, r->line, why, r->rec.line);
	return fatal(r, err, errlen, "%s:%ld: CSV syntax error: %s", r->path,
		     r->line, why);
}

/* Feeds libcsv up to and including the next CR or LF of the chunk. */
static int feed_piece(struct subs_reader *r, char *err, size_t errlen)
{
	const unsigned char *p = r->chunk + r->cpos;
	size_t avail = r->clen - r->cpos, n = 0;

	while (n < avail && p[n] != '\n' && p[n] != '\r')
		n++;
	if (n < avail)
		n++;
	if (r->idle && !is_blank(p, n)) {
		r->rec.line = r->line;
		r->idle = 0;
	}
	size_t used = csv_parse(&r->csv, p, n, on_field, on_row, r);

	if (r->oom || (used < n && csv_error(&r->csv) != CSV_EPARSE))
		return fatal(r, err, errlen, "%s: out of memory", r->path);
	if (used < n)
		return syntax_error(r, p[used], err, errlen);
	r->cpos += n;
	if (p[n - 1] == '\n')
		r->line++;
	return 0;
}

static int refill(struct subs_reader *r, char *err, size_t errlen)
{
	errno = 0;
	size_t n = fread(r->chunk, 1, CHUNK_SIZE, r->f);

	if (n == 0) {
		if (ferror(r->f))
			return fatal(r, err, errlen, "%s: %s", r->path,
				     strerror(errno ? errno : EIO));
		r->eof = 1;
	}
	r->clen = n;
	r->cpos = 0;
	/* fread fills the buffer unless the file ends, so a BOM is whole. */
	if (!r->started && n >= 3 && !memcmp(r->chunk, "\xef\xbb\xbf", 3))
		r->cpos = 3;
	r->started = 1;
	return 0;
}

/* Returns 1 with a complete record in r->rec, 0 at the end, or SUBS_FATAL. */
static int read_record(struct subs_reader *r, char *err, size_t errlen)
{
	record_reset(&r->rec);
	while (!r->rec.done) {
		if (r->ended)
			return 0;
		if (r->cpos < r->clen) {
			if (feed_piece(r, err, errlen) < 0)
				return SUBS_FATAL;
			continue;
		}
		if (!r->eof) {
			if (refill(r, err, errlen) < 0)
				return SUBS_FATAL;
			continue;
		}
		/* The last record may lack a line ending. */
		r->ended = 1;
		if (csv_fini(&r->csv, on_field, on_row, r) < 0)
			return fatal(r, err, errlen,
				     "%s:%ld: CSV syntax error: quoted field not closed before the end of the file",
				     r->path, r->rec.line);
		if (r->oom)
			return fatal(r, err, errlen, "%s: out of memory",
				     r->path);
	}
	return 1;
}

static const char *rec_field(const struct subs_reader *r, size_t i)
{
	return r->rec.data.p + r->rec.off[i];
}

/* Space and tab only: a CR or LF inside a quoted email or name must reach
 * the line-break check rather than be trimmed away. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);

	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* ---- what the file is --------------------------------------------------- */

/* A delimiter as the config spells it. */
static const char *sep_shown(char c)
{
	return c == '\t' ? "\"\\t\"" : c == ';' ? "\";\"" : c == '|' ? "\"|\"" : "\",\"";
}

/* Excel's "Unicode Text" export: UTF-16 with a BOM and tabs. Without the
 * BOM, a NUL beside an ASCII byte at the very start gives it away (a
 * header row never starts with a NUL). */
static int sniff_utf16(struct subs_reader *r, const unsigned char *p, size_t n, char *err,
		       size_t errlen)
{
	int bom = n >= 2 && ((p[0] == 0xff && p[1] == 0xfe) || (p[0] == 0xfe && p[1] == 0xff));
	int le = n >= 2 && ((bom && p[0] == 0xff) || (p[0] && !p[1]));
	int be = n >= 2 && ((bom && p[0] == 0xfe) || (!p[0] && p[1]));
	if (!le && !be)
		return 0;
	/* The first line's ASCII characters, for the delimiter hint. */
	int tab = 0, comma = 0;
	for (size_t i = 0; i + 1 < n; i += 2) {
		unsigned c = le ? p[i] | (unsigned)p[i + 1] << 8 : (unsigned)p[i] << 8 | p[i + 1];
		if (c == '\n')
			break;
		tab |= c == '\t';
		comma |= c == (unsigned char)r->sep;
	}
	/* iconv's "UTF-16" reads the BOM; without one it would assume BE. */
	const char *code = bom ? "UTF-16" : le ? "UTF-16LE" : "UTF-16BE";
	return fatal(r, err, errlen,
		     "%s:1: the list is UTF-16 (Excel's \"Unicode Text\"), herald reads UTF-8: export "
		     "it as \"CSV UTF-8\", or convert it: iconv -f %s -t UTF-8 %s > utf8.csv%s",
		     r->path, code, r->path, tab && !comma ?
		     " (its fields are separated by tabs: also set subscribers_delimiter = \"\\t\")" : "");
}

/* Whether the bytes at p are shaped like a UTF-8 sequence (a lead byte
 * and its continuation bytes) that is still invalid: overlong, a
 * surrogate, past U+10FFFF. Damaged UTF-8 does that; a code page's
 * accented letter is followed by ASCII. */
static int utf8_shaped(const unsigned char *p, size_t n)
{
	size_t want = p[0] >= 0xf0 && p[0] <= 0xf7 ? 3 : p[0] >= 0xe0 ? 2 : p[0] >= 0xc0 ? 1 : 0;
	if (!want || n <= want || p[0] > 0xf7)
		return 0;
	for (size_t i = 1; i <= want; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return 1;
}

/* A file saved in a one-byte code page (Excel's "CSV (Comma delimited)",
 * LibreOffice's default on Windows) has bytes past 0x7f but no UTF-8
 * sequence at all. Read row by row, it would mail only the readers whose
 * fields happen to be ASCII, so it is refused whole, once. A UTF-8 list
 * with bad rows (a pasted name, damaged sequences) keeps the per-row
 * check instead. Only the first chunk is looked at: the verdict must
 * come before any row. */
static int sniff_codepage(struct subs_reader *r, const unsigned char *p, size_t n, int whole,
			  char *err, size_t errlen)
{
	int multibyte, any = 0;
	size_t first = n;
	for (size_t at = 0; at < n; at++) {
		at += utf8_valid_prefix((const char *)p + at, n - at, &multibyte);
		/* A chunk may end inside a sequence; the next one completes it. */
		if (multibyte || (at < n && (utf8_shaped(p + at, n - at) || (!whole && n - at < 4))))
			return 0;
		if (at < n && first == n)
			first = at;
		any |= at < n;
	}
	if (!any)
		return 0;
	long line = 1;
	for (size_t i = 0; i < first; i++)
		line += p[i] == '\n';
	return fatal(r, err, errlen,
		     "%s:%ld: the list is not UTF-8 (byte 0x%02X); it looks like Windows-1252 or "
		     "Latin-1: export it as \"CSV UTF-8\" (LibreOffice: character set \"Unicode "
		     "(UTF-8)\"), or convert it: iconv -f WINDOWS-1252 -t UTF-8 %s > utf8.csv",
		     r->path, line, p[first], r->path);
}

/* Reads the first chunk and decides, once, whether it is a list herald
 * can read at all. A UTF-8 BOM was skipped by refill(). */
static int sniff(struct subs_reader *r, char *err, size_t errlen)
{
	if (refill(r, err, errlen) < 0)
		return SUBS_FATAL;
	const unsigned char *p = r->chunk + r->cpos;
	size_t n = r->clen - r->cpos;
	if (sniff_utf16(r, p, n, err, errlen) < 0 ||
	    sniff_codepage(r, p, n, r->clen < CHUNK_SIZE, err, errlen) < 0)
		return SUBS_FATAL;
	return 0;
}

/* ---- header -------------------------------------------------------------- */

/* A header that is one column holding "email" and another delimiter:
 * the list is fine, the delimiter is not what the config says. */
static char other_sep(const struct subs_reader *r)
{
	for (const char *c = ",;\t|"; *c; c++)
		for (size_t i = 0; *c != r->sep && i < r->ncols; i++) {
			const char *p = r->cols[i];
			if (!p || !strchr(p, *c))
				continue;
			for (const char *e; p; p = e ? e + 1 : NULL) {
				e = strchr(p, *c);
				size_t n = e ? (size_t)(e - p) : strlen(p);
				while (n && (*p == ' ' || *p == '\t'))
					p++, n--;
				while (n && (p[n - 1] == ' ' || p[n - 1] == '\t'))
					n--;
				if (n == 5 && !memcmp(p, "email", 5))
					return *c;
			}
		}
	return 0;
}

static int no_email(struct subs_reader *r, char *err, size_t errlen)
{
	char sep = other_sep(r);
	if (sep)
		return fatal(r, err, errlen,
			     "%s:%ld: no \"email\" column, but the header looks separated by %s, not "
			     "%s: set subscribers_delimiter = %s in the config (or export the list with "
			     "%s)", r->path, r->rec.line, sep_shown(sep), sep_shown(r->sep),
			     sep_shown(sep), r->sep == ',' ? "commas" : sep_shown(r->sep));
	struct buf b = {0};
	int oom = 0;
	for (size_t i = 0; i < r->ncols && !oom; i++)
		oom = buf_printf(&b, "%s%s", i ? ", " : "", r->cols[i]) < 0;
	fatal(r, err, errlen, "%s:%ld: no \"email\" column (columns: %s)",
	      r->path, r->rec.line, oom ? "not listed: out of memory" : buf_cstr(&b));
	buf_free(&b);
	return SUBS_FATAL;
}

static int read_header(struct subs_reader *r, char *err, size_t errlen)
{
	int rc = read_record(r, err, errlen);

	if (rc < 0)
		return rc;
	if (rc == 0)
		return fatal(r, err, errlen,
			     "%s:1: no \"email\" column (the file is empty)",
			     r->path);
	if (r->again)
		return r->rec.n == r->ncols ? 0 : fatal(r, err, errlen,
			"%s:%ld: the header row changed while the list was read",
			r->path, r->rec.line);
	r->cols = calloc(r->rec.n, sizeof(*r->cols));
	r->fieldv = calloc(r->rec.n, sizeof(*r->fieldv));
	if (!r->cols || !r->fieldv)
		return fatal(r, err, errlen, "%s: out of memory", r->path);
	r->ncols = r->rec.n;
	for (size_t i = 0; i < r->ncols; i++) {
		if (memchr(rec_field(r, i), '\0', r->rec.len[i]))
			return fatal(r, err, errlen,
				     "%s:%ld: NUL byte in the name of column %zu",
				     r->path, r->rec.line, i + 1);
		r->cols[i] = str_lower(trim(r->rec.data.p + r->rec.off[i]));
		if (!r->cols[i])
			return fatal(r, err, errlen, "%s: out of memory",
				     r->path);
		/* Column names become merge-field names and appear in
		 * messages: no line breaks or terminal escapes in them. */
		for (const char *p = r->cols[i]; *p; p++)
			if (*p == '\t' && other_sep(r) == '\t')
				return no_email(r, err, errlen);
			else if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return fatal(r, err, errlen,
					     "%s:%ld: control character 0x%02x in the name of column %zu",
					     r->path, r->rec.line,
					     (unsigned char)*p, i + 1);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(r->cols[i], r->cols[j]))
				return fatal(r, err, errlen,
					     "%s:%ld: duplicate column \"%s\" (columns %zu and %zu)",
					     r->path, r->rec.line, r->cols[i],
					     j + 1, i + 1);
	}
	r->email_col = subs_col(r, "email");
	r->name_col = subs_col(r, "name");
	r->status_col = subs_col(r, "status");
	if (r->email_col < 0)
		return no_email(r, err, errlen);
	return 0;
}

/* ---- public -------------------------------------------------------------- */

int subs_open(struct subs_reader **out, const char *path, char sep, char *err,
	      size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");

	if (!f)
		return set_err(err, errlen, SUBS_NOFILE, "%s: %s", path,
			       strerror(errno));

	struct subs_reader *r = calloc(1, sizeof(*r));

	if (!r) {
		fclose(f);
		return set_err(err, errlen, SUBS_FATAL, "%s: out of memory",
			       path);
	}
	r->f = f;
	r->line = 1;
	r->idle = 1;
	csv_init(&r->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL);
	r->sep = sep ? sep : ',';
	csv_set_delim(&r->csv, (unsigned char)r->sep);
	r->path = xstrdup(path);
	r->chunk = malloc(CHUNK_SIZE);
	if (!r->path || !r->chunk) {
		subs_close(r);
		return set_err(err, errlen, SUBS_FATAL, "%s: out of memory",
			       path);
	}
	int rc = sniff(r, err, errlen);

	if (rc == 0)
		rc = read_header(r, err, errlen);
	if (rc < 0) {
		subs_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

int subs_rewind(struct subs_reader *r, char *err, size_t errlen)
{
	if (r->fatal)
		return set_err(err, errlen, SUBS_FATAL, "%s", r->msg);
	if (fseek(r->f, 0, SEEK_SET) < 0)
		return fatal(r, err, errlen, "%s: %s", r->path, strerror(errno));
	clearerr(r->f);
	csv_free(&r->csv);
	csv_init(&r->csv, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL);
	csv_set_delim(&r->csv, (unsigned char)r->sep);
	r->clen = r->cpos = 0;
	r->started = r->eof = r->ended = 0;
	r->line = 1;
	r->idle = 1;
	r->again = 1;
	record_reset(&r->rec);
	int rc = sniff(r, err, errlen);

	return rc ? rc : read_header(r, err, errlen);
}

int subs_shard(const char *email, unsigned n, unsigned *shard)
{
	unsigned char d[32];
	char *lower = str_lower(email);

	*shard = 1;
	if (!lower)
		return -1;
	int rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, lower, strlen(lower), d);

	free(lower);
	if (rc < 0)
		return -1;
	uint64_t h = 0;

	for (int i = 0; i < 8; i++)
		h = h << 8 | d[i];
	if (n > 1)
		*shard = (unsigned)(h % n) + 1;
	return 0;
}

size_t subs_ncols(const struct subs_reader *r)
{
	return r->ncols;
}

const char *const *subs_colnames(const struct subs_reader *r)
{
	return (const char *const *)r->cols;
}

int subs_col(const struct subs_reader *r, const char *name)
{
	for (size_t i = 0; i < r->ncols; i++)
		if (!strcmp(r->cols[i], name))
			return (int)i;
	return -1;
}

static int is_active(const char *status)
{
	return !*status || !strcasecmp(status, "subscribed");
}

/* Unsubscribed rows are not validated or reported (lists keep bounced and
 * cleaned addresses), but their address goes into the set: a later row for
 * the same address is then a duplicate, so an explicit unsubscribe wins
 * over the address being listed again further down. */
static int inactive_row(struct subs_reader *r, const char *lower,
			char *err, size_t errlen)
{
	if (!addrset_get(&r->seen, lower) &&
	    addrset_put(&r->seen, lower, r->rec.line) < 0)
		return fatal(r, err, errlen, "%s: out of memory", r->path);
	return SUBS_INACTIVE;
}

/* An address as a message shows it: control bytes and DEL as \xNN, so a
 * hostile field cannot drive the terminal that reads the warning, and at
 * most SHOWN_MAX bytes of it, so a 1 MB field cannot push the reason out
 * of the message. */
#define SHOWN_MAX 80

static const char *shown(char *out, size_t len, const char *s)
{
	size_t o = 0;

	for (; *s && o + 5 < len; s++) {
		unsigned char c = (unsigned char)*s;

		if (o >= SHOWN_MAX) {
			snprintf(out + o, len - o, "...");
			return out;
		}
		if (c < 0x20 || c == 0x7f)
			o += (size_t)snprintf(out + o, len - o, "\\x%02x", c);
		else
			out[o++] = (char)c;
	}
	out[o] = '\0';
	return out;
}

static int check_address(struct subs_reader *r, const struct subs_row *row,
			 const char *lower, char *err, size_t errlen)
{
	char why[128], show[SHOWN_MAX + 16];

	if (addr_valid(row->email, why, sizeof(why)) < 0)
		return set_err(err, errlen, SUBS_BAD,
			       "%s:%ld: invalid address \"%s\": %s", r->path,
			       row->line, shown(show, sizeof show, row->email),
			       why);
	long first = addrset_get(&r->seen, lower);

	if (r->again && first == row->line)
		return SUBS_ROW;
	if (first)
		return set_err(err, errlen, SUBS_BAD,
			       "%s:%ld: duplicate address %s (first on line %ld)",
			       r->path, row->line,
			       shown(show, sizeof show, row->email), first);
	if (addrset_put(&r->seen, lower, row->line) < 0)
		return fatal(r, err, errlen, "%s: out of memory", r->path);
	return SUBS_ROW;
}

/* Field count, NUL bytes and line breaks come before the status: inactive
 * rows are handed out too (for --test lookups) and must be safe to use. */
static int check_record(struct subs_reader *r, struct subs_row *row,
			char *err, size_t errlen)
{
	if (r->rec.n != r->ncols)
		return set_err(err, errlen, SUBS_BAD,
			       "%s:%ld: expected %zu fields, found %zu",
			       r->path, row->line, r->ncols, r->rec.n);
	for (size_t i = 0; i < r->ncols; i++) {
		if (memchr(rec_field(r, i), '\0', r->rec.len[i]))
			return set_err(err, errlen, SUBS_BAD,
				       "%s:%ld: NUL byte in the %s field",
				       r->path, row->line, r->cols[i]);
		/* Messages are UTF-8 throughout: a Latin-1 list would put
		 * mojibake in front of readers (save the file as UTF-8). */
		if (!utf8_valid(rec_field(r, i), r->rec.len[i]))
			return set_err(err, errlen, SUBS_BAD,
				       "%s:%ld: the %s field is not UTF-8 (save the list as UTF-8, e.g. "
				       "iconv -f WINDOWS-1252 -t UTF-8)", r->path, row->line, r->cols[i]);
		/* The address has its own limits (addr_valid), with a
		 * clearer message. */
		size_t cap = i == (size_t)r->name_col ? SUBS_NAME_MAX : SUBS_FIELD_MAX;
		if (i != (size_t)r->email_col && r->rec.len[i] > cap)
			return set_err(err, errlen, SUBS_BAD,
				       "%s:%ld: the %s field is %zu bytes; at most %zu%s",
				       r->path, row->line, r->cols[i], r->rec.len[i], cap,
				       cap == SUBS_NAME_MAX ? " (it goes into the To header)" : "");
		r->fieldv[i] = trim(r->rec.data.p + r->rec.off[i]);
	}
	row->fields = r->fieldv;
	row->nfields = r->ncols;
	row->email = r->fieldv[r->email_col];
	row->name = r->name_col >= 0 ? r->fieldv[r->name_col] : "";
	if (strpbrk(row->email, "\r\n"))
		return set_err(err, errlen, SUBS_BAD,
			       "%s:%ld: line break in the email field",
			       r->path, row->line);
	if (strpbrk(row->name, "\r\n"))
		return set_err(err, errlen, SUBS_BAD,
			       "%s:%ld: line break in the name field",
			       r->path, row->line);

	char *lower = str_lower(row->email);

	if (!lower)
		return fatal(r, err, errlen, "%s: out of memory", r->path);
	int rc;

	if (r->status_col >= 0 && !is_active(r->fieldv[r->status_col]))
		rc = inactive_row(r, lower, err, errlen);
	else
		rc = check_address(r, row, lower, err, errlen);
	free(lower);
	return rc;
}

int subs_next(struct subs_reader *r, struct subs_row *row, char *err,
	      size_t errlen)
{
	memset(row, 0, sizeof(*row));
	if (r->fatal)
		return set_err(err, errlen, SUBS_FATAL, "%s", r->msg);

	int rc = read_record(r, err, errlen);

	if (rc <= 0)
		return rc == 0 ? SUBS_END : SUBS_FATAL;
	row->line = r->rec.line;
	rc = check_record(r, row, err, errlen);
	if (rc != SUBS_ROW && rc != SUBS_INACTIVE) {
		long line = row->line;

		memset(row, 0, sizeof(*row));
		row->line = line;
	}
	return rc;
}

void subs_close(struct subs_reader *r)
{
	if (!r)
		return;
	if (r->f)
		fclose(r->f);
	csv_free(&r->csv);
	free(r->chunk);
	free(r->path);
	for (size_t i = 0; i < r->ncols; i++)
		free(r->cols[i]);
	free(r->cols);
	free(r->fieldv);
	buf_free(&r->rec.data);
	free(r->rec.off);
	free(r->rec.len);
	addrset_free(&r->seen);
	free(r);
}

int subs_exitcode(int rc)
{
	return rc == SUBS_NOFILE ? EX_NOINPUT : rc == SUBS_FATAL || rc == SUBS_BAD ? EX_DATAERR : EX_OK;
}
