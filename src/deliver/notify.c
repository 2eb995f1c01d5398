/* One message through smtp.c (notify.h). */
#include "deliver/notify.h"
#include "deliver/smtp.h"
#include "util/buf.h"
#include <stdio.h>
#include <string.h>

struct one {
	struct smtp_result res;
	int done;
};

static void on_done(void *arg, void *tag, const struct smtp_result *r)
{
	struct one *o = arg;
	o->res = *r;
	o->done = 1;
}

int notify_send(const struct config *cfg, const char *password, const char *to,
		const char *msg, size_t len, char *err, size_t errlen)
{
	struct smtp_opts so = {
		.url = cfg->smtp.url, .starttls = cfg->smtp.starttls,
		.username = cfg->smtp.username, .password = password,
		.ca_file = cfg->smtp.ca_file, .timeout = cfg->smtp.timeout,
		.helo = cfg->smtp.helo ? cfg->smtp.helo : strrchr(cfg->from_addr, '@') + 1,
	};
	struct smtp_pool *p;
	if (smtp_pool_new(&p, &so, 1, 1, err, errlen) < 0)
		return NOTIFY_PERM;
	struct one o = {0};
	int rc = NOTIFY_OK;
	if (smtp_pool_start(p, cfg->from_addr, to, msg, len, NULL) < 0) {
		rc = set_err(err, errlen, NOTIFY_TEMP, "libcurl refused a transfer");
	} else {
		/* Bounded by smtp.timeout per step inside smtp.c. */
		while (!o.done)
			smtp_pool_run(p, 1.0, on_done, &o);
		if (o.res.cls == SMTP_PERM || o.res.cls == SMTP_FATAL)
			rc = set_err(err, errlen, NOTIFY_PERM, "%s: %s", cfg->smtp.url, o.res.text);
		else if (o.res.cls != SMTP_OK)
			rc = set_err(err, errlen, NOTIFY_TEMP, "%s: %s", cfg->smtp.url, o.res.text);
	}
	smtp_pool_free(p);
	return rc;
}
