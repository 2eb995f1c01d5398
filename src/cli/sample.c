/* The message one reader gets, built for preview and check. */
#include "cli/cli.h"
#include "compose/message.h"
#include "cli/lint.h"
#include "input/config.h"
#include "input/subscribers.h"
#include "input/segment.h"
#include "util/buf.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

/* Finds the row for `as` (or the first subscribed row) and builds the
 * message for it; *mp keeps its rendered parts (msg_last_parts), addr
 * the reader's address. */
int cli_build_one(const struct config *cfg, const struct post *post, const char *as,
		     struct msg_ctx **mp, struct buf *eml, char *addr, size_t addrlen,
		     char *err, size_t errlen)
{
	struct subs_reader *sr = NULL;
	struct msg_ctx *m = NULL;
	int k = subs_open(&sr, cfg->subscribers, cfg->subs_delim, err, errlen);
	if (k)
		return subs_exitcode(k);
	const char *secret = NULL;
	int rc = 0;
	if (msg_secret(cfg, &secret, err, errlen) < 0) {
		subs_close(sr);
		return EX_CONFIG;
	}
	/* preview and check look at the parts themselves */
	k = msg_new(&m, cfg, post, subs_colnames(sr), subs_ncols(sr), secret, MSG_KEEP_PARTS,
		    err, errlen);
	if (k < 0) {
		subs_close(sr);
		return msg_exitcode(k);
	}
	*mp = m;
	/* The post's audience holds here as in send: the reader shown is
	 * one who would get this post. */
	struct segment sg = {0};
	char what[4200];
	if (post_segment(post, &sg, err, errlen) < 0 ||
	    segment_bind(&sg, subs_colnames(sr), subs_ncols(sr), cfg->subscribers, err, errlen) < 0) {
		segment_free(&sg);
		subs_close(sr);
		return EX_DATAERR;
	}
	struct subs_row row;
	char why[512];
	int found = 0;
	while ((k = subs_next(sr, &row, why, sizeof why)) != SUBS_END) {
		if (k == SUBS_FATAL) {
			set_err(err, errlen, EX_DATAERR, "%s", why);
			rc = EX_DATAERR;
			break;
		}
		if (k == SUBS_BAD)
			continue;
		int in = segment_match(&sg, (const char *const *)row.fields);
		if (as && !strcasecmp(row.email, as) && !in) {
			segment_describe(&sg, what, sizeof what);
			rc = set_err(err, errlen, EX_DATAERR, "%s:%ld: %s is not in the post's audience (%s)",
				     cfg->subscribers, row.line, row.email, what);
			break;
		}
		if ((as && !strcasecmp(row.email, as)) || (!as && k == SUBS_ROW && in)) {
			found = 1;
			snprintf(addr, addrlen, "%s", row.email);
			struct msg_out info;
			if (msg_build(m, row.fields, row.email, row.name, time(NULL), eml, &info,
				      why, sizeof why) != MSG_OK) {
				rc = set_err(err, errlen, EX_DATAERR, "%s:%ld: %s", cfg->subscribers, row.line, why);
			}
			break;
		}
	}
	if (!rc && !found)
		rc = set_err(err, errlen, EX_DATAERR, "%s: %s", cfg->subscribers,
			     as ? "no row with that address (--as)"
				: sg.n ? "no subscribed reader in the post's audience" : "no subscribed reader");
	segment_free(&sg);
	subs_close(sr);
	return rc;
}

double cli_clip_percent(size_t bytes)
{
	return 100.0 * (double)bytes / LINT_CLIP_BYTES;
}
