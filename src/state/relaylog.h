/* relaylog: relays.log, what each relay with its own rate windows was
 * given, so that its per_minute / per_hour / per_day windows hold across
 * runs the way the top-level rate does (which is seeded from the
 * journals and bounces.log, files that do not say which relay a message
 * went through).
 *
 * A line: time TAB relay-name; one for each message the relay answered
 * (accepted, refused, deferred or left unanswered after its final dot).
 * Written by the send loop's thread, one write(2) a line, not synced: a
 * crash loses at most the lines of its last moments, which errs towards
 * sending a little more than the window allows, never towards a reader
 * not mailed. Lines older than a day are of no window's concern:
 * relaylog_open drops them when they are most of the file.
 *
 * Ownership: struct relaylog owns its fd and path; relaylog_close. */
#ifndef HERALD_RELAYLOG_H
#define HERALD_RELAYLOG_H
#include <stddef.h>
#include <time.h>
#include "state/state.h"
#include "state/statefile.h"

#define RELAYLOG_FILE "relays.log"

struct relaylog {
	int fd;
	char *path;
};

/* STATE_DIR/relays.log, its tail repaired (a torn line is cut: a window
 * counts one message less), opened for appending. The caller holds the
 * send lock. 0, or -1 with err. */
int relaylog_open(struct relaylog *l, const char *state_dir, const struct statefile_warn *w,
		  char *err, size_t errlen);
/* One line. 0, or -1 with err. */
int relaylog_add(struct relaylog *l, time_t when, const char *relay, char *err, size_t errlen);
void relaylog_close(struct relaylog *l);
/* Adds to st the times of relay's lines (state_times_add keeps those not
 * before st->since). A missing file holds nothing; a line that does not
 * parse is reported to w as FILE:LINE and skipped. 0, or -1 with err. */
int relaylog_recent_times(const char *state_dir, const char *relay, struct state_times *st,
			  const struct statefile_warn *w, char *err, size_t errlen);
#endif
