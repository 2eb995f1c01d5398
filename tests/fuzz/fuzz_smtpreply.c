/* libFuzzer target: deliver/smtp.c's reply reader, what herald parses of
 * what a relay says in the transaction phase (replies to pipelined
 * groups, multi-line replies, garbage; what it takes must be a reply
 * that can answer a command at that stage). Input: one byte choosing the
 * stage the replies answer, then the bytes as they came off the wire. */
#include "deliver/smtp.h"
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(void *arg, const struct smtp_result *r)
{
	const enum smtp_stage *st = arg;
	/* No 1xx; a 3xx only as DATA's 354; DATA takes no 2xx. */
	if (r->code < 200 || r->code > 599)
		abort();
	if (r->code >= 300 && r->code < 400 && (*st != SMTP_STAGE_DATA || r->code != 354))
		abort();
	if (*st == SMTP_STAGE_DATA && r->code < 300)
		abort();
	if (r->cls < SMTP_OK || r->cls > SMTP_WITHDRAWN)
		abort();
	/* A refusal is a bounce, a deferral, the connection's trouble or a
	 * stop; never an acceptance. */
	if (r->code >= 400 && r->cls == SMTP_OK)
		abort();
	if (!memchr(r->text, '\0', sizeof r->text) || !memchr(r->status, '\0', sizeof r->status))
		abort();
	for (const char *s = r->text; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
	for (const char *s = r->status; *s; s++)
		if (!isdigit((unsigned char)*s) && *s != '.')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 1 << 18)
		return 0;
	enum smtp_stage st = (enum smtp_stage)(data[0] % (SMTP_STAGE_BODY + 1));
	smtp_replies_scan((const char *)data + 1, size - 1, st, check, &st);
	return 0;
}
