/* subs_edit: the one writer of the subscriber list (the CSV). Every
 * change a reader or the author asks for goes through here: unsubscribe
 * (status "unsubscribed"), subscribe (a confirmed signup: status back to
 * "subscribed", or a new row), remove (the row goes).
 *
 * Each call is one locked, atomic rewrite: the file is locked (flock on
 * the list itself, re-checked after the lock in case it was replaced),
 * read whole, and only what the change needs is touched (a status field,
 * an appended row, a row left out); every other byte is kept. A list
 * without a status column gets one for an unsubscribe (appended to every
 * record). The new text goes to a temporary file in the same directory,
 * is fsync'd, gets the old file's mode and owner, and is renamed over the
 * list; the directory is fsync'd. A crash at any point leaves the old
 * list or the new one, whole; a temporary file a killed run left is
 * removed, under the lock, by the next.
 *
 * A name from the web that starts with = + - @ TAB or CR is written after
 * a single quote (OWASP's CSV-injection advice): a spreadsheet opening the
 * list shows it as text instead of running it.
 *
 * Ownership: nothing is kept between calls. */
#ifndef HERALD_SUBS_EDIT_H
#define HERALD_SUBS_EDIT_H
#include <stddef.h>

enum subs_edit_op { SUBS_EDIT_UNSUBSCRIBE, SUBS_EDIT_SUBSCRIBE, SUBS_EDIT_REMOVE };

/* What happened to each address given. */
enum subs_edit_result { SUBS_EDIT_NOT_LISTED = 0, SUBS_EDIT_CHANGED = 1, SUBS_EDIT_ALREADY = 2 };

enum { SUBS_EDIT_OK = 0, SUBS_EDIT_ERR_LIST = -1, SUBS_EDIT_ERR_WRITE = -2, SUBS_EDIT_ERR_NOFILE = -3 };
/* The sysexits code for a result: 66 no list, 65 a list that cannot be
 * parsed, 73 the rewrite failed. */
int subs_edit_exitcode(int rc);

/* The rows of addrs (case-insensitive) get status "unsubscribed" in the
 * list at path, whose fields are separated by sep (0: ','; the config's
 * subscribers_delimiter). result[i] says what happened to addrs[i].
 * SUBS_EDIT_ERR_LIST: the list cannot be parsed (no email column, CSV
 * syntax); SUBS_EDIT_ERR_WRITE: the new file could not be written (the
 * old one is untouched). */
int subs_edit_unsubscribe(const char *path, char sep, const char *const *addrs, size_t n,
			  enum subs_edit_result *result, char *err, size_t errlen);
/* Confirmed signups: a row of addrs[i] whose status is not empty or
 * "subscribed" gets "subscribed" (SUBS_EDIT_CHANGED); one that is keeps
 * it (SUBS_EDIT_ALREADY); an address not in the list is appended as a new
 * row with names[i] in the name column, if there is one (CHANGED). */
int subs_edit_subscribe(const char *path, char sep, const char *const *addrs,
			const char *const *names, size_t n, enum subs_edit_result *result, char *err,
			size_t errlen);
/* Every row of addrs[i] is left out (SUBS_EDIT_CHANGED); an address with
 * no row is SUBS_EDIT_NOT_LISTED. */
int subs_edit_remove(const char *path, char sep, const char *const *addrs, size_t n,
		     enum subs_edit_result *result, char *err, size_t errlen);
#endif
