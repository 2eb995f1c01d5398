#include "deliver/relays.h"
#include "util/buf.h"
#include <string.h>
#include <time.h>

int relays_add(struct relays *rs, const struct smtp_conf *conf, const char *url,
	       const struct rate_conf *rate, struct transport *tx, double now, char *err,
	       size_t errlen)
{
	static const struct rate_conf none;
	if (rs->n == CONFIG_RELAYS_MAX) {
		transport_close(tx);
		return set_err(err, errlen, -1, "more than %d relays", CONFIG_RELAYS_MAX);
	}
	struct relay *r = &rs->r[rs->n];
	memset(r, 0, sizeof *r);
	if (!rate)
		rate = &none;
	if (rl_init(&r->rl, rate, now) < 0) {
		transport_close(tx);
		return set_err(err, errlen, -1, "out of memory");
	}
	r->conf = conf;
	r->name = conf ? conf->name : "dry-run";
	r->url = conf ? conf->url : url;
	r->tx = tx;
	r->weight = conf ? conf->weight : 1;
	r->windows = rate->per_minute || rate->per_hour || rate->per_day;
	rs->n++;
	return 0;
}

size_t relays_in(const struct relays *rs)
{
	size_t n = 0;
	for (size_t i = 0; i < rs->n; i++)
		n += !rs->r[i].out;
	return n;
}

int relays_idle(const struct relays *rs)
{
	int n = 0;
	for (size_t i = 0; i < rs->n; i++)
		if (!rs->r[i].out && !rs->r[i].trouble)
			n += transport_idle(rs->r[i].tx);
	return n;
}

int relays_busy(const struct relays *rs)
{
	int n = 0;
	for (size_t i = 0; i < rs->n; i++)
		n += transport_busy(rs->r[i].tx);
	return n;
}

int relays_pick(struct relays *rs, double now, int avoid, double *wait, const char **which)
{
	int can[CONFIG_RELAYS_MAX], ncan = 0, others = 0;
	*wait = 0;
	*which = NULL;
	for (size_t i = 0; i < rs->n; i++) {
		struct relay *r = &rs->r[i];
		if (r->out || r->trouble || transport_idle(r->tx) <= 0)
			continue;
		const char *w;
		double d = rl_delay(&r->rl, now, &w);
		if (d > 0) {
			if (!*which || d < *wait) {
				*wait = d;
				*which = w;
			}
			continue;
		}
		can[ncan++] = (int)i;
		others += (int)i != avoid;
	}
	if (ncan && *which) {
		*wait = 0;   /* a relay that can take it: nothing to wait for */
		*which = NULL;
	}
	int best = -1, total = 0;
	for (int k = 0; k < ncan; k++) {
		struct relay *r = &rs->r[can[k]];
		if (can[k] == avoid && others)
			continue;
		r->credit += r->weight;
		total += r->weight;
		if (best < 0 || r->credit > rs->r[best].credit)
			best = can[k];
	}
	if (best >= 0) {
		rs->r[best].credit -= total;
		rl_take(&rs->r[best].rl, now);
	}
	return best;
}

/* With one relay its transport waits for the time given, as it did
 * before there were several; with more, each is asked without waiting,
 * then the busy ones in turn for a short slice each, until one reports
 * or the time is up. */
int relays_collect(struct relays *rs, double timeout, transport_done_fn done, void *arg)
{
	if (rs->n == 1)
		return transport_collect(rs->r[0].tx, timeout, done, arg);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	double until = (double)ts.tv_sec + ts.tv_nsec / 1e9 + timeout;
	for (int pass = 0;; pass++) {
		int got = 0, busy = 0;
		for (size_t i = 0; i < rs->n; i++) {
			if (!transport_busy(rs->r[i].tx))
				continue;
			busy++;
			got += transport_collect(rs->r[i].tx, pass ? 0.002 : 0, done, arg);
		}
		clock_gettime(CLOCK_MONOTONIC, &ts);
		if (got || !busy || (double)ts.tv_sec + ts.tv_nsec / 1e9 >= until)
			return got;
	}
}

void relays_halt(struct relays *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		transport_halt(rs->r[i].tx);
}

void relays_close(struct relays *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		transport_close(rs->r[i].tx);
		rl_free(&rs->r[i].rl);
	}
	rs->n = 0;
}
