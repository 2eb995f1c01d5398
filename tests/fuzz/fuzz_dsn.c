/* libFuzzer target: the bounce parser (RFC 3464, ARF, text bounces, VERP)
 * and the unsubscribe-request reader, on arbitrary messages. */
#include "mailbox/dsn.h"
#include "mailbox/unsubscribe.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dsn_report r;
	char err[256], addr[320], why[256];
	if (dsn_parse((const char *)data, size, "bounces+{{verp}}@example.org", &r, err, sizeof err) == 0)
		dsn_free(&r);
	unsub_parse_request((const char *)data, size, "fuzz-secret-123", addr, sizeof addr, why, sizeof why);
	return 0;
}
