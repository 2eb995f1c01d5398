/* ratelimit: how long to wait before the next message may go out.
 *
 * per_second is a token bucket (rate r, capacity `burst`), so a steady
 * stream is paced evenly; a message that goes out late (by less than one
 * interval) lets the next go that much sooner, so the long-run rate is
 * the configured one, and no more than `burst` ever go at once. per_minute, per_hour and per_day are exact
 * sliding windows: at most N messages in any window of that length, which
 * is what a relay's quota means. A message goes out only when every
 * configured limit allows it.
 *
 * No clock is read here: callers pass `now` (seconds, monotonic), so tests
 * run without sleeping. Ownership: rl_init allocates the window rings;
 * rl_free releases them. */
#ifndef HERALD_RATELIMIT_H
#define HERALD_RATELIMIT_H
#include <stddef.h>
#include "input/config.h"

struct rl_window {
	double period;   /* seconds */
	long limit;      /* messages per period */
	double *ring;    /* send times of the last `limit` messages */
	long head, count;
};

struct ratelimit {
	double rate, capacity, tokens, last; /* per-second bucket; rate 0 = off */
	struct rl_window win[3];
	int nwin;
};

/* Parses "10/s", "300/min", "2000/h", "10000/day", "burst=5",
 * comma-separated, into *out (fields not named keep their value). */
int rl_parse(const char *spec, struct rate_conf *out, char *err, size_t errlen);
int rl_init(struct ratelimit *rl, const struct rate_conf *c, double now);
/* Seconds to wait until every limit allows one more message (0 = now).
 * *which, if non-NULL, names the limit that holds it back. */
double rl_delay(const struct ratelimit *rl, double now, const char **which);
/* Counts one message sent at `now`. */
void rl_take(struct ratelimit *rl, double now);
/* Counts messages sent by earlier runs (times on the same clock as `now`,
 * oldest first) in the minute, hour and day windows, so a quota holds
 * across cron runs. The per-second bucket is not affected. */
void rl_seed(struct ratelimit *rl, const double *times, size_t n);
/* 1 when `which` (from rl_delay) is a window quota rather than pacing. */
int rl_is_quota(const char *which);
void rl_free(struct ratelimit *rl);
#endif
