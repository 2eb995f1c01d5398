/* skel: the starter newsletter directory `herald init` writes.
 *
 *   DIR/herald.conf                    config.example: every key
 *                                      documented, the ones to change
 *                                      marked TO EDIT
 *   DIR/posts/<date>-first-issue.md    skel/first-issue.md, dated <date>
 *   DIR/subscribers.csv                skel/subscribers.csv
 *   DIR/state/                         mode 0700, as state_dir wants
 *
 * The texts are those repo files compiled into the binary, so init works
 * from build/herald as well as from an install, and the files have one
 * source each. Nothing is ever written over: every target is looked at
 * before the first one is created, and a failure half-way removes what
 * this call made. */
#ifndef HERALD_SKEL_H
#define HERALD_SKEL_H
#include <stddef.h>

enum {
	SKEL_OK = 0,
	SKEL_EXISTS = -1,   /* a file or directory init would write is there */
	SKEL_CANTCREAT = -2,/* mkdir or a write failed (nothing is left behind) */
	SKEL_NOMEM = -3,
};
/* The sysexits code: 0; 73 (EX_CANTCREAT) for SKEL_EXISTS and
 * SKEL_CANTCREAT; 71 out of memory. */
int skel_exitcode(int rc);

/* date: YYYY-MM-DD, for the post's file name and front matter. *post
 * gets that file's name relative to DIR (posts/<date>-first-issue.md)
 * whatever the outcome; on SKEL_EXISTS err names every path in the way. */
int skel_write(const char *dir, const char *date, char *post, size_t postlen, char *err,
	       size_t errlen);
#endif
