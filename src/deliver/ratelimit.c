#include "deliver/ratelimit.h"
#include "util/buf.h"
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *unit;
	double seconds;
} units[] = {
	{"s", 1}, {"sec", 1}, {"second", 1},
	{"m", 60}, {"min", 60}, {"minute", 60},
	{"h", 3600}, {"hour", 3600},
	{"d", 86400}, {"day", 86400},
};

int rl_parse(const char *spec, struct rate_conf *out, char *err, size_t errlen)
{
	char *copy = strdup(spec), *save = NULL;
	if (!copy)
		return set_err(err, errlen, -1, "out of memory");
	int rc = 0;
	for (char *tok = strtok_r(copy, ",", &save); tok && !rc;
	     tok = strtok_r(NULL, ",", &save)) {
		while (isspace((unsigned char)*tok))
			tok++;
		char *end;
		errno = 0;
		if (!strncasecmp(tok, "burst=", 6)) {
			long b = strtol(tok + 6, &end, 10);
			if (end == tok + 6 || *end || b < 1 || b > 100000)
				rc = set_err(err, errlen, -1, "--rate: \"%s\": burst must be a whole number from 1 to 100000", tok);
			else
				out->burst = (int)b;
			continue;
		}
		double n = strtod(tok, &end);
		if (end == tok || *end != '/' || errno || !(n > 0) || n > 1e8) {
			rc = set_err(err, errlen, -1, "--rate: \"%s\": expected N/s, N/min, N/h, N/day or burst=N", tok);
			continue;
		}
		const char *u = end + 1;
		size_t ul = strcspn(u, " \t");
		double secs = 0;
		for (size_t i = 0; i < sizeof units / sizeof *units; i++)
			if (strlen(units[i].unit) == ul && !strncasecmp(units[i].unit, u, ul))
				secs = units[i].seconds;
		if (!secs) {
			rc = set_err(err, errlen, -1, "--rate: \"%s\": unknown unit (use s, min, h or day)", tok);
			continue;
		}
		if (secs == 1)
			out->per_second = n;
		else if (n != (double)(long)n)
			rc = set_err(err, errlen, -1, "--rate: \"%s\": per-minute, per-hour and per-day limits take whole numbers", tok);
		else if (secs == 60)
			out->per_minute = (long)n;
		else if (secs == 3600)
			out->per_hour = (long)n;
		else
			out->per_day = (long)n;
	}
	free(copy);
	return rc;
}

int rl_init(struct ratelimit *rl, const struct rate_conf *c, double now)
{
	memset(rl, 0, sizeof *rl);
	rl->rate = c->per_second;
	rl->capacity = c->burst > 0 ? c->burst : 1;
	rl->tokens = rl->capacity;
	rl->last = now;
	const long lim[3] = {c->per_minute, c->per_hour, c->per_day};
	const double per[3] = {60, 3600, 86400};
	for (int i = 0; i < 3; i++) {
		if (lim[i] <= 0)
			continue;
		struct rl_window *w = &rl->win[rl->nwin];
		w->period = per[i];
		w->limit = lim[i];
		w->ring = malloc((size_t)lim[i] * sizeof *w->ring);
		if (!w->ring) {
			rl_free(rl);
			return -1;
		}
		rl->nwin++;
	}
	return 0;
}

static const char *window_name(double period)
{
	return period == 60 ? "per_minute" : period == 3600 ? "per_hour" : "per_day";
}

double rl_delay(const struct ratelimit *rl, double now, const char **which)
{
	double wait = 0;
	const char *why = NULL;
	if (rl->rate > 0) {
		double tokens = rl->tokens + (now - rl->last) * rl->rate;
		if (tokens > rl->capacity)
			tokens = rl->capacity;
		if (tokens < 1) {
			wait = (1 - tokens) / rl->rate;
			why = "per_second";
		}
	}
	for (int i = 0; i < rl->nwin; i++) {
		const struct rl_window *w = &rl->win[i];
		if (w->count < w->limit)
			continue;
		/* Full: the oldest of the last `limit` sends must leave the
		 * window before another may go. */
		double oldest = w->ring[w->head];
		double d = oldest + w->period - now;
		if (d > wait) {
			wait = d;
			why = window_name(w->period);
		}
	}
	if (which)
		*which = why;
	return wait > 0 ? wait : 0;
}

/* Records a send at t; ring[head] is the oldest entry once full. */
static void ring_push(struct rl_window *w, double t)
{
	if (w->count < w->limit) {
		w->ring[(w->head + w->count) % w->limit] = t;
		w->count++;
	} else {
		w->ring[w->head] = t;
		w->head = (w->head + 1) % w->limit;
	}
}

void rl_take(struct ratelimit *rl, double now)
{
	if (rl->rate > 0) {
		double t = rl->tokens + (now - rl->last) * rl->rate;
		/* Filling past the capacity means this message went late:
		 * the loop woke, or built the message, after it was due. Up
		 * to one interval of that is kept as credit, so late
		 * wake-ups do not lower the long-run rate (plain clipping
		 * gave 48.9/s for 50/s); more than an interval was idle
		 * time, which only the burst may spend. The bucket never
		 * holds more than its capacity, so no more than `burst`
		 * messages ever go at once. */
		double over = t - rl->capacity;
		if (over > 0)
			t = rl->capacity + (over < 1 ? over : 0);
		rl->tokens = t - 1;
		rl->last = now;
	}
	for (int i = 0; i < rl->nwin; i++)
		ring_push(&rl->win[i], now);
}

void rl_seed(struct ratelimit *rl, const double *times, size_t n)
{
	for (size_t k = 0; k < n; k++)
		for (int i = 0; i < rl->nwin; i++)
			ring_push(&rl->win[i], times[k]);
}

int rl_is_quota(const char *which)
{
	return which && strcmp(which, "per_second") != 0;
}

void rl_free(struct ratelimit *rl)
{
	for (int i = 0; i < 3; i++)
		free(rl->win[i].ring);
	memset(rl, 0, sizeof *rl);
}
