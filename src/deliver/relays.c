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
	/* In the round: relays in, not waiting for a reconnect, their
	 * windows open. They gain credit whether or not a connection is
	 * free, so a relay that was busy is owed its share. */
	int round[CONFIG_RELAYS_MAX], nround = 0, total = 0, others = 0;
	*wait = 0;
	*which = NULL;
	for (size_t i = 0; i < rs->n; i++) {
		struct relay *r = &rs->r[i];
		if (r->out || r->trouble)
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
		round[nround++] = (int)i;
		total += r->weight;
		others += (int)i != avoid && transport_idle(r->tx) > 0;
	}
	if (nround) {
		*wait = 0;   /* what holds them now is connections, not windows */
		*which = NULL;
	}
	int best = -1, owed = -1;
	for (int k = 0; k < nround; k++) {
		const struct relay *r = &rs->r[round[k]];
		int credit = r->credit + r->weight;
		int cap = transport_idle(r->tx) + transport_busy(r->tx);
		/* Busy and owed more messages than its connections hold: the
		 * next message waits for it, or the split would follow the
		 * relays' speed instead of their weights. */
		if (transport_idle(r->tx) <= 0) {
			if (credit > cap * total && (owed < 0 || credit > rs->r[owed].credit))
				owed = round[k];
			continue;
		}
		if (round[k] == avoid && others)
			continue;
		if (best < 0 || credit > rs->r[best].credit + rs->r[best].weight)
			best = round[k];
	}
	if (owed >= 0 && (best < 0 || rs->r[owed].credit + rs->r[owed].weight >
					  rs->r[best].credit + rs->r[best].weight))
		return -1;
	if (best < 0)
		return -1;
	for (int k = 0; k < nround; k++)
		rs->r[round[k]].credit += rs->r[round[k]].weight;
	rs->r[best].credit -= total;
	rl_take(&rs->r[best].rl, now);
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
