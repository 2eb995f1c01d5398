#include "compose/encode.h"
#include <ctype.h>
#include <string.h>
#include <strings.h>
#include <unistr.h>

int enc_header_safe(const char *s)
{
	return !strpbrk(s, "\r\n") && utf8_valid(s, strlen(s));
}

static int is_ascii_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7E)
			return 0;
	return 1;
}

static const char hex[] = "0123456789ABCDEF";

/* An encoded-word is at most 75 characters (RFC 2047 section 2):
 * "=?UTF-8?Q?" and "?=" leave 63 for the text. One that opens a subject
 * shares its line with the header name: libetpan folds before a word
 * that would pass column 71, and a fold right after the colon is one
 * some readers keep as a leading blank there. The longest name such a
 * value follows is "Reply-To: ", so an opening word gets 71 - 10 - 12.
 * (A display name's first word gets the whole 63: libetpan may fold
 * before it, and before a phrase the blank is not text.) */
#define EW_TEXT 63
#define EW_FIRST_TEXT 49

static int q_literal(unsigned char c)
{
	return isalnum(c) || strchr("!*+-/", c);
}

/* Characters [p, e) take Q-encoded. */
static size_t q_len(const unsigned char *p, const unsigned char *e)
{
	size_t n = 0;
	for (; p < e; p++)
		n += *p == ' ' || q_literal(*p) ? 1 : 3;
	return n;
}

static size_t b_len(size_t bytes)
{
	return (bytes + 2) / 3 * 4;
}

/* One encoded-word for [p, e): Q, which a person can still read in the
 * raw header, when it fits; else Base64, a third denser for Cyrillic,
 * Greek or CJK text, so a name needs fewer words. */
BUF_MUST static int encode_word(struct buf *out, const unsigned char *p, const unsigned char *e,
		       size_t room)
{
	if (q_len(p, e) <= room) {
		if (buf_adds(out, "=?UTF-8?Q?") < 0)
			return -1;
		for (; p < e; p++) {
			char enc[3] = {(char)*p, 0, 0};
			size_t el = 1;
			if (*p == ' ')
				enc[0] = '_';
			else if (!q_literal(*p)) {
				enc[0] = '=';
				enc[1] = hex[*p >> 4];
				enc[2] = hex[*p & 15];
				el = 3;
			}
			if (buf_add(out, enc, el) < 0)
				return -1;
		}
		return buf_adds(out, "?=");
	}
	if (buf_adds(out, "=?UTF-8?B?") < 0 || buf_add_base64(out, p, (size_t)(e - p), 0) < 0)
		return -1;
	return buf_adds(out, "?=");
}

/* Encodes [p, end) as encoded-words separated by a space, which readers
 * drop (RFC 2047 section 6.2). A word boundary keeps its space at the end
 * of the word before it ("Ivan_"), so the text comes back whole. Words
 * split only where one fits: after the last space that fits, else after
 * the last hyphen, else (one word longer than an encoded-word) between two
 * characters. Splitting inside a word is what made Python's parser and
 * Thunderbird show "Петров ич": they keep the blank between two
 * encoded-words, against section 6.2. */
BUF_MUST static int encode_run(struct buf *out, const unsigned char *p, const unsigned char *end,
		      int opens)
{
	while (p < end) {
		const unsigned char *q = p, *space = NULL, *hyphen = NULL, *any = NULL;
		size_t ql = 0, room = opens ? EW_FIRST_TEXT : EW_TEXT;
		opens = 0;
		while (q < end) {
			/* One code point at a time, so no word splits one; a
			 * byte that starts none (a file name not in UTF-8) is
			 * one on its own. */
			int cl = u8_mblen(q, (size_t)(end - q));
			size_t n = cl > 0 ? (size_t)cl : 1;
			ql += q_len(q, q + n);
			if (ql > room && b_len((size_t)(q + n - p)) > room)
				break;
			q += n;
			any = q;
			if (q[-1] == ' ')
				space = q;
			else if (q[-1] == '-')
				hyphen = q;
		}
		const unsigned char *cut = q == end ? end : space ? space : hyphen ? hyphen : any;
		if (!cut) /* no character fits: cannot happen with 4-byte code points */
			cut = q + 1;
		if (encode_word(out, p, cut, room) < 0)
			return -1;
		if (cut < end && buf_addc(out, ' ') < 0)
			return -1;
		p = cut;
	}
	return 0;
}

/* What libetpan writes into a display name as it is (its is_atext):
 * anything else makes it quote the whole name, and quoted text is never
 * decoded (RFC 2047 section 5). */
static int name_atext(unsigned char c)
{
	return isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c);
}

/* 1 if [p, e) can go into the header as it is: printable ASCII that no
 * reader would take for an encoded-word (one that looks like one is
 * encoded, and joins the run of its neighbours so the blanks between them
 * survive), and, in a display name, an atom. */
static int is_plain_word(const unsigned char *p, const unsigned char *e, int phrase)
{
	for (const unsigned char *q = p; q + 1 < e; q++)
		if (q[0] == '=' && q[1] == '?')
			return 0;
	for (; p < e; p++)
		if (*p < 0x21 || *p > 0x7E || (phrase && !name_atext(*p)))
			return 0;
	return 1;
}

/* The end of the run of words that need encoding starting at [p, w):
 * the words after it, with the blanks between, while they need it too. */
static const unsigned char *run_end(const unsigned char *w, const unsigned char *end, int phrase)
{
	const unsigned char *r = w;
	for (;;) {
		const unsigned char *nx = r;
		while (nx < end && *nx == ' ')
			nx++;
		const unsigned char *ne = nx;
		while (ne < end && *ne != ' ')
			ne++;
		if (nx == end || nx == ne || is_plain_word(nx, ne, phrase))
			return r;
		r = ne;
	}
}

int enc_words(struct buf *out, const char *s, int phrase)
{
	/* Plain ASCII goes as it is (libetpan quotes a display name that
	 * needs it), unless it holds something a reader would decode as an
	 * encoded-word. */
	if (is_ascii_printable(s) && !strstr(s, "=?"))
		return buf_adds(out, s);
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + strlen(s);
	/* Only the words that need it are encoded; a run of such words
	 * becomes one run, so the spaces between them survive (white space
	 * between encoded-words is dropped by readers), and one encoded-word
	 * when it fits. A display name's words stay atoms where they are
	 * atoms; one that is not (a comma, a quote) is encoded with its
	 * neighbours, since a quoted-string could not stand beside
	 * encoded-words in what libetpan writes. A subject's opening word
	 * shares its line with "Subject: " (a fold after the colon would be a
	 * leading blank in its text); a display name's may have a line of its
	 * own, libetpan folding before it: there the blank is not text. */
	while (p < end) {
		const unsigned char *w = p;
		while (w < end && *w != ' ')
			w++;
		if (is_plain_word(p, w, phrase)) {
			if (buf_add(out, p, (size_t)(w - p)) < 0)
				return -1;
		} else {
			const unsigned char *r = run_end(w, end, phrase);
			if (encode_run(out, p, r, !phrase && p == (const unsigned char *)s) < 0)
				return -1;
			w = r;
		}
		p = w;
		while (p < end && *p == ' ') {
			if (buf_addc(out, ' ') < 0)
				return -1;
			p++;
		}
	}
	return 0;
}

int enc_qp(struct buf *out, const char *s, size_t len)
{
	/* Worst case: every byte "=XX", plus a soft break per 25 bytes and
	 * CRLF per line; reserved once, then written through a pointer (this
	 * runs over every byte of every message). */
	if (buf_reserve(out, len * 3 + (len / 25 + 2) * 3) < 0)
		return -1;
	char *o = out->p + out->len;
	size_t col = 0;
	const unsigned char *p = (const unsigned char *)s, *e = p + len;
	while (p < e) {
		unsigned char c = *p;
		if (c == '\n') {
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
			p++;
			continue;
		}
		int at_eol = p + 1 == e || p[1] == '\n';
		/* Literal: printable ASCII but '=', and blanks not ending a
		 * line (trailing white space may be stripped in transit).
		 * "From " opening a line is encoded for mbox readers, and so
		 * is a "." (=2E): no line of a message herald writes starts
		 * with a dot, so SMTP's dot-stuffing (RFC 5321 4.5.2) never
		 * has anything to do and the transport need not scan for it. */
		int lit = ((c >= 33 && c <= 126 && c != '=') ||
			   ((c == ' ' || c == '\t') && !at_eol));
		int from = (c == 'F' && e - p >= 5 && !memcmp(p, "From ", 5)) || c == '.';
		if (col == 0 && from)
			lit = 0;
		size_t need = lit ? 1 : 3;
		/* Soft break so no line passes 76 characters, counting "=";
		 * the last character of a line may use the 76th column. */
		size_t limit = at_eol ? 76 : 75;
		if (col + need > limit) {
			*o++ = '=';
			*o++ = '\r';
			*o++ = '\n';
			col = 0;
			/* The break may have put "From " or "." at a line start. */
			if (from && lit) {
				lit = 0;
				need = 3;
			}
		}
		if (lit) {
			*o++ = (char)c;
		} else {
			*o++ = '=';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
		col += need;
		p++;
	}
	out->len = (size_t)(o - out->p);
	out->p[out->len] = '\0';
	return 0;
}

/* An address header's field name ends at colon, the line starting at or
 * after s. */
static int address_field(const char *s, const char *colon)
{
	const char *line = colon;
	while (line > s && line[-1] != '\n')
		line--;
	static const char *const names[] = {"From", "To", "Cc", "Reply-To", "Sender"};
	for (size_t i = 0; i < sizeof names / sizeof *names; i++)
		if ((size_t)(colon - line) == strlen(names[i]) &&
		    !strncasecmp(line, names[i], (size_t)(colon - line)))
			return 1;
	return 0;
}

/* libetpan folds a long header right after its colon ("Name: CRLF SP
 * value"); legal, but some parsers then keep a leading blank in the value
 * (a URL in List-Unsubscribe no longer parses; Python's policy.default
 * starts a subject with a blank). Join those lines: what is folded there
 * is one long token, far below the 998-octet limit (an encoded-word that
 * opens a subject is made short enough to stay on the first line). But
 * not a display name's encoded-word: joined, a 75-character one passes
 * 78 octets, and a blank before a phrase is folding white space every
 * parser drops (Python's both policies, mblaze, libetpan).
 * [s, s + len) is header lines only. Colons are few, so they are what
 * the scan looks for. */
int enc_add_unfolded(struct buf *out, const char *s, size_t len)
{
	const char *end = s + len, *run = s;
	for (const char *p = s; (p = memchr(p, ':', (size_t)(end - p))) && end - p >= 5; p++) {
		if (memcmp(p, ": \r\n ", 5))
			continue;
		/* Kept, the fold loses the blank libetpan left before it: a
		 * line ending in white space is one some relays trim. */
		int keep = end - p >= 7 && !memcmp(p + 5, "=?", 2) && address_field(s, p);
		if (buf_add(out, run, (size_t)(p + 1 - run)) < 0 ||
		    (keep ? buf_adds(out, "\r\n ") : buf_addc(out, ' ')) < 0)
			return -1;
		run = p + 5;
		p += 4;
	}
	return buf_add(out, run, (size_t)(end - run));
}

/* libetpan quotes every parameter value, but an RFC 2231 extended value
 * (filename*=UTF-8''...) is not a quoted-string and some readers keep the
 * quotes as part of the name. Ours hold only attribute characters and
 * %XX, so the quotes just go. */
void enc_unquote_ext_values(struct buf *b)
{
	char *p = b->p, *end = b->p + b->len;
	while (p && (p = memmem(p, (size_t)(end - p), "*=\"", 3))) {
		char *close = memchr(p + 3, '"', (size_t)(end - p - 3));
		if (!close)
			break;
		memmove(p + 2, p + 3, (size_t)(close - p - 3));
		memmove(close - 1, close + 1, (size_t)(end - close - 1));
		end -= 2;
		b->len -= 2;
		p = close - 1;
	}
	if (b->p)
		b->p[b->len] = '\0';
}

int enc_param_plain(const char *s)
{
	return is_ascii_printable(s) && !strpbrk(s, "\"\\");
}

int enc_param_words(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	return encode_run(out, p, p + strlen(s), 0);
}

int enc_rfc2231(struct buf *out, const char *s)
{
	if (buf_adds(out, "UTF-8''") < 0)
		return -1;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((isalnum(*p) || strchr("!#$&+-.^_`|~", *p)) ? buf_addc(out, (char)*p) < 0
			: buf_printf(out, "%%%02X", *p) < 0)
			return -1;
	return 0;
}
