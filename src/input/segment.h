#ifndef HERALD_SEGMENT_H
#define HERALD_SEGMENT_H
/* segment: which rows of the list a send is for. Rules come from
 * `send --where` (repeatable) and a post's `audience:` front matter, and
 * all must hold:
 *   COL=VALUE    the column's value is VALUE
 *   COL!=VALUE   it is not
 *   COL=A|B      it is one of A, B (COL!=A|B: none of them)
 * Values compare case-insensitively after trimming blanks, as people
 * type "fr" for "FR". A row whose column is empty matches COL= only.
 *
 * Ownership: a segment owns its rules; segment_free releases them. */
#include <stddef.h>

struct segment_rule {
	char *col;       /* lower-case column name */
	int negate;      /* != */
	char **vals;
	size_t nvals;
	long idx;        /* column index, once bound; -1 before */
	char *what;      /* where it came from, for errors */
};

struct segment {
	struct segment_rule *rules;
	size_t n;
};

/* Adds the rules of spec: one rule, or several separated by commas (the
 * front-matter form, "lang=fr, plan!=free"). what names the source for
 * errors ("--where", "post.md:3: audience"). 0, or -1 with err. */
int segment_add(struct segment *sg, const char *spec, const char *what, char *err, size_t errlen);
/* Finds each rule's column among the list's (lower-case) column names;
 * -1 with err naming the missing column and the list's columns. */
int segment_bind(struct segment *sg, const char *const *cols, size_t ncols, const char *list,
		 char *err, size_t errlen);
/* 1 when a row (fields in column order, NULL for empty) is in the
 * segment; an empty segment holds every row. */
int segment_match(const struct segment *sg, const char *const *fields);
/* "lang=fr, plan!=free", for messages; "" when empty. */
void segment_describe(const struct segment *sg, char *out, size_t len);
void segment_free(struct segment *sg);
#endif
