/* config_relays: the smtp group, or the list of relay groups (smtp = ( {...}, ... )),
 * each read into a struct smtp_conf with FILE:LINE errors as smtp[N].KEY. */
#include "input/config_int.h"
#include "util/buf.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

int cfg_relay_defaults(struct smtp_conf *r)
{
	memset(r, 0, sizeof *r);
	r->starttls = STARTTLS_REQUIRED;
	r->timeout = 30;
	r->connections = 1;
	r->weight = 1;
	r->pipelining = 1;
	r->rate.burst = 1;
	return (r->password_env = strdup("HERALD_SMTP_PASSWORD")) ? 0 : -1;
}

void cfg_relay_free(struct smtp_conf *r)
{
	char *strs[] = {r->name, r->url, r->username, r->password_env, r->password_command,
			r->ca_file, r->helo, r->where};
	for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
		free(strs[i]);
	secret_free(&r->password);
}

/* host:port of an smtp:// or smtps:// url (the port its scheme implies
 * when it names none): what a relay is called unless it has a name. */
static char *relay_default_name(const char *url)
{
	int tls = !strncmp(url, "smtps://", 8);
	const char *h = url + (tls ? 8 : 7);
	size_t n = strcspn(h, "/?#");
	const char *at = memchr(h, '@', n);
	if (at) {
		n -= (size_t)(at + 1 - h);
		h = at + 1;
	}
	const char *close = memchr(h, ']', n);
	const char *colon = memchr(close ? close : h, ':', n - (size_t)((close ? close : h) - h));
	char *out = NULL;
	if (asprintf(&out, "%.*s%s", (int)n, h, colon ? "" : tls ? ":465" : ":25") < 0)
		return NULL;
	return out;
}

/* A name goes into messages, the JSON summary and relays.log. */
static int relay_name_ok(const char *n)
{
	size_t len = strlen(n);
	if (!len || len > 64)
		return 0;
	for (const char *p = n; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("._-:[]@", *p))
			return 0;
	return 1;
}

/* One relay from its group g (NULL: smtp is not set, the defaults).
 * label names it in messages: "smtp" for the group form, "smtp[2]" for
 * the second entry of a list. */
static int relay_at(struct cfg_ctx *x, config_setting_t *g, const char *label, int listed,
		    struct smtp_conf *r)
{
	static const char *const strs[] = {"url", "username", "password_env", "password_command",
					   "password", "ca_file", "helo", "name"};
	char **fields[] = {&r->url, &r->username, &r->password_env, &r->password_command,
			   &r->password, &r->ca_file, &r->helo, &r->name};
	char key[64];
	int rc = 0;
#define AT(k) (snprintf(key, sizeof key, "%s.%s", label, k), g ? config_setting_lookup(g, k) : NULL)
	for (size_t i = 0; !rc && i < sizeof strs / sizeof *strs; i++)
		rc = cfg_str_at(x, AT(strs[i]), key, fields[i]);
	if (rc || (rc = cfg_starttls_at(x, AT("starttls"), key, &r->starttls)) ||
	    (rc = cfg_long_at(x, AT("timeout"), key, &r->timeout, 1, 3600)) ||
	    (rc = cfg_int_at(x, AT("connections"), key, &r->connections, 1, 64)) ||
	    (rc = cfg_int_at(x, AT("weight"), key, &r->weight, 1, 1000)) ||
	    (rc = cfg_bool_at(x, AT("pipelining"), key, &r->pipelining)) ||
	    (rc = cfg_num_at(x, AT("per_second"), key, &r->rate.per_second, 0, 1e6)) ||
	    (rc = cfg_long_at(x, AT("per_minute"), key, &r->rate.per_minute, 0, 100000000)) ||
	    (rc = cfg_long_at(x, AT("per_hour"), key, &r->rate.per_hour, 0, 100000000)) ||
	    (rc = cfg_long_at(x, AT("per_day"), key, &r->rate.per_day, 0, 100000000)) ||
	    (rc = cfg_int_at(x, AT("burst"), key, &r->rate.burst, 1, 100000)))
		return rc;
	config_setting_t *u = AT("url");
	if (listed && !r->url)
		return cfg_bad(x, g, "%s: a relay in a list needs its url, e.g. url = \"smtp://mail.example.org:587\";",
			   label);
	if (!r->url && !(r->url = strdup("smtp://127.0.0.1:25")))
		return cfg_bad(x, g, "out of memory");
	if (strncmp(r->url, "smtp://", 7) && strncmp(r->url, "smtps://", 8))
		return cfg_bad(x, u, "%s.url: expected smtp://host[:port] or smtps://host[:port], found \"%s\"",
			   label, r->url);
	if ((rc = cfg_private_at(x, AT("password"), key, r->password)) || (rc = cfg_resolve(x, &r->ca_file)))
		return rc;
	config_setting_t *ns = AT("name");
	if (!r->name && !(r->name = relay_default_name(r->url)))
		return cfg_bad(x, g, "out of memory");
	if (!relay_name_ok(r->name))
		return cfg_bad(x, ns ? ns : u, ns ? "%s.name: \"%s\": use 1 to 64 letters, digits and . _ - : [ ] @"
				     : "%s: the name made from its url, \"%s\", is not one herald can use: give the relay a name = \"...\"; (letters, digits and . _ - :)",
			   label, r->name);
#undef AT
	char full[4096];
	int line = g ? config_setting_source_line(g) : 0;
	if (line ? asprintf(&r->where, "%s:%d", cfg_source_of(x, g, full, sizeof full), line) < 0
		 : !(r->where = strdup(x->file)))
		return cfg_bad(x, g, "out of memory");
	return 0;
}

int cfg_relays_settings(struct cfg_ctx *x, struct config *c)
{
	config_setting_t *s = config_lookup(&x->cf, "smtp");
	if (!s || config_setting_type(s) == CONFIG_TYPE_GROUP)
		return relay_at(x, s, "smtp", 0, &c->smtp);
	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return cfg_bad(x, s, "smtp: expected a group, smtp = { url = \"...\"; }; or a list of them, smtp = ( { url = \"...\"; }, { url = \"...\"; } );");
	int n = config_setting_length(s);
	if (n == 0)
		return cfg_bad(x, s, "smtp: the list of relays is empty: give at least one, smtp = ( { url = \"smtp://mail.example.org:587\"; } );");
	if (n > CONFIG_RELAYS_MAX)
		return cfg_bad(x, s, "smtp: %d relays; herald takes at most %d", n, CONFIG_RELAYS_MAX);
	if (n > 1 && !(c->more_relays = calloc((size_t)n - 1, sizeof *c->more_relays)))
		return cfg_bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		struct smtp_conf *r = i ? &c->more_relays[i - 1] : &c->smtp;
		if (i) {
			if (cfg_relay_defaults(r) < 0)
				return cfg_bad(x, s, "out of memory");
			c->n_more_relays++;
		}
		char label[32];
		snprintf(label, sizeof label, "smtp[%d]", i + 1);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP)
			return cfg_bad(x, g, "%s: each relay in the list is a group: { url = \"smtp://...\"; weight = 1; }",
				   label);
		int rc = relay_at(x, g, label, 1, r);
		if (rc)
			return rc;
		for (int k = 0; k < i; k++) {
			const struct smtp_conf *o = config_relay(c, (size_t)k);
			if (!strcmp(o->name, r->name))
				return cfg_bad(x, g, "%s: another relay is called \"%s\" too (%s): give one of them a name = \"...\"; of its own",
					   label, r->name, o->where);
		}
	}
	return 0;
}

size_t config_nrelays(const struct config *c)
{
	return 1 + c->n_more_relays;
}

const struct smtp_conf *config_relay(const struct config *c, size_t i)
{
	return i ? &c->more_relays[i - 1] : &c->smtp;
}
