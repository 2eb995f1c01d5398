/* libFuzzer target: config_load's own validation on arbitrary files:
 * libconfig syntax, unknown keys, types and ranges, addresses (from,
 * reply_to, test.to, unsubscribe.mailto), list_id, dkim names, mailbox
 * groups, path resolution. The input is written to a memfd and loaded by
 * its /proc path. Nothing is run: config_password (password_command) is
 * deliberately not called. */
#include "input/config.h"
#include "fuzz_file.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* libconfig 1.5's scanner leaks the string literal it is building when a
 * syntax error cuts it short (adjacent literals "a" "b", or an empty ""
 * then garbage): its leak, not herald's (herald exits after a config
 * error). Only those two allocation sites inside libconfig are
 * suppressed. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* @include could name any file (a FIFO, /dev/zero): that is libconfig
	 * reading what the user told it to, not herald's validation. */
	if (memmem(data, size, "@include", 8))
		return 0;
	setenv("HERALD_SECRET", "fuzz-secret-123", 1);
	const char *path = fuzz_file(data, size);
	struct config c;
	char err[512];
	int rc = config_load(&c, path, err, sizeof err);
	if (rc == CONFIG_OK) {
		/* What the rest of herald relies on after a successful load. */
		if (!c.from_addr || !c.from_name || !c.list_name || !c.smtp.url ||
		    !c.state_dir || !c.subscribers || !strchr(c.from_addr, '@'))
			abort();
		if (c.smtp.timeout < 1 || c.smtp.connections < 1 || c.retry.attempts < 1)
			abort();
		const char *secret;
		config_secret(&c, &secret, err, sizeof err);
	} else if (!memchr(err, '\0', sizeof err) || !*err) {
		abort(); /* every failure says why */
	}
	config_free(&c);
	return 0;
}
