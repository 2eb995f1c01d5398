#include "input/config.h"
#include "input/config_int.h"
#include "util/addr.h"
#include "util/buf.h"
#include <ctype.h>
#include <errno.h>
#include <sysexits.h>
#include <stdlib.h>
#include <string.h>


/* The file a setting came from: the config, or the @include'd file, whose
 * name libconfig keeps as written (relative to the include directory,
 * which is the config's). */
const char *cfg_source_of(const struct cfg_ctx *x, const config_setting_t *s, char *buf,
			     size_t len)
{
	const char *file = s ? config_setting_source_file(s) : NULL;
	if (!file)
		return x->file;
	if (file[0] == '/' || !x->dir)
		return file;
	snprintf(buf, len, "%s/%s", x->dir, file);
	return buf;
}

__attribute__((format(printf, 3, 4)))
int cfg_bad(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int line = s ? config_setting_source_line(s) : 0;
	char full[4096];
	const char *file = cfg_source_of(x, s, full, sizeof full);
	if (line)
		set_err(x->err, x->errlen, CONFIG_BAD, "%s:%d: %s", file, line, msg);
	else
		set_err(x->err, x->errlen, CONFIG_BAD, "%s: %s", x->file, msg);
	return CONFIG_BAD;
}

/* The getters take the setting (NULL: absent, the default stays) and the
 * name to give it in messages: its path, or smtp[2].url in a list. */

/* Reads a string setting; *out keeps its default when absent. */
int cfg_str_at(struct cfg_ctx *x, config_setting_t *s, const char *key, char **out)
{
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return cfg_bad(x, s, "%s: expected a string in double quotes", key);
	const char *v = config_setting_get_string(s);
	if (strpbrk(v, "\r\n"))
		return cfg_bad(x, s, "%s: line breaks are not allowed", key);
	free(*out);
	*out = strdup(v);
	return *out ? 0 : cfg_bad(x, s, "%s: out of memory", key);
}

int cfg_get_str(struct cfg_ctx *x, const char *key, char **out)
{
	return cfg_str_at(x, config_lookup(&x->cf, key), key, out);
}

int cfg_num_at(struct cfg_ctx *x, config_setting_t *s, const char *key, double *out,
		  double min, double max)
{
	if (!s)
		return 0;
	int t = config_setting_type(s);
	double v;
	if (t == CONFIG_TYPE_INT)
		v = config_setting_get_int(s);
	else if (t == CONFIG_TYPE_INT64)
		v = (double)config_setting_get_int64(s);
	else if (t == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else
		return cfg_bad(x, s, "%s: expected a number", key);
	if (v < min || v > max) {
		char range[64];
		snprintf(range, sizeof range, " (from %g to %g)", min, max);
		return cfg_bad(x, s, "%s: out of range%s", key, range);
	}
	*out = v;
	return 0;
}

static int get_num(struct cfg_ctx *x, const char *key, double *out, double min,
		   double max)
{
	return cfg_num_at(x, config_lookup(&x->cf, key), key, out, min, max);
}

int cfg_long_at(struct cfg_ctx *x, config_setting_t *s, const char *key, long *out,
		   long min, long max)
{
	double d = (double)*out;
	int rc = cfg_num_at(x, s, key, &d, (double)min, (double)max);
	if (rc == 0) {
		if (s && config_setting_type(s) == CONFIG_TYPE_FLOAT &&
		    d != (double)(long)d)
			return cfg_bad(x, s, "%s: expected a whole number", key);
		*out = (long)d;
	}
	return rc;
}

static int get_long(struct cfg_ctx *x, const char *key, long *out, long min,
		    long max)
{
	return cfg_long_at(x, config_lookup(&x->cf, key), key, out, min, max);
}

int cfg_int_at(struct cfg_ctx *x, config_setting_t *s, const char *key, int *out, int min,
		  int max)
{
	long l = *out;
	int rc = cfg_long_at(x, s, key, &l, min, max);
	*out = (int)l;
	return rc;
}

int cfg_bool_at(struct cfg_ctx *x, config_setting_t *s, const char *key, int *out)
{
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return cfg_bad(x, s, "%s: expected true or false", key);
	*out = config_setting_get_bool(s);
	return 0;
}

int cfg_get_int(struct cfg_ctx *x, const char *key, int *out, int min, int max)
{
	return cfg_int_at(x, config_lookup(&x->cf, key), key, out, min, max);
}

/* Keys the file may hold: a typo like `subcribers` is an error, not a
 * silent default. */
static const char *const known[] = {
	"from", "reply_to", "list_id", "subscribers", "templates", "template",
	"state_dir", "unsubscribe", "unsubscribe.url", "unsubscribe.mailto",
	"unsubscribe.secret_env", "smtp", "smtp.url", "smtp.starttls",
	"smtp.username", "smtp.password_env", "smtp.password_command",
	"smtp.password", "smtp.ca_file", "smtp.timeout", "smtp.connections",
	"smtp.helo", "smtp.weight", "smtp.name", "smtp.pipelining", "smtp.per_second", "smtp.per_minute",
	"smtp.per_hour", "smtp.per_day", "smtp.burst", "rate", "rate.per_second", "rate.per_minute",
	"rate.per_hour", "rate.per_day", "rate.burst", "retry",
	"retry.attempts", "retry.initial_delay", "retry.max_delay", "bounce",
	"bounce.soft_limit", "bounce.return_path", "test", "test.to", "dkim",
	"dkim.domain", "dkim.selector", "dkim.key_file", "unsafe_html",
	"headers", "postal_address",
	"merge_code",
	"subscribers_delimiter", "language",
#define MAILBOX_KEYS(g) g ".mailbox", g ".mailbox.url", g ".mailbox.username", \
	g ".mailbox.password_env", g ".mailbox.password_command", g ".mailbox.password", \
	g ".mailbox.ca_file", g ".mailbox.move_to", g ".mailbox.starttls", g ".mailbox.timeout"
	MAILBOX_KEYS("bounce"), MAILBOX_KEYS("unsubscribe"),
	"web", "web.listen", "web.base_url", "web.signup", "web.archive", "web.trusted_proxies", "web.posts",
	"web.connections", "web.connections_per_client",
	NULL};
#undef MAILBOX_KEYS

static int check_keys(struct cfg_ctx *x, config_setting_t *grp, const char *prefix)
{
	int n = config_setting_length(grp);
	for (int i = 0; i < n; i++) {
		config_setting_t *s = config_setting_get_elem(grp, (unsigned)i);
		const char *name = config_setting_name(s);
		if (!name)
			continue;
		char full[128];
		snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", name);
		int ok = 0;
		for (const char *const *k = known; *k; k++)
			ok |= !strcmp(*k, full);
		if (!ok)
			return cfg_bad(x, s, "unknown setting \"%s\" (see config.example)", full);
		if (config_setting_type(s) == CONFIG_TYPE_GROUP &&
		    check_keys(x, s, full) < 0)
			return CONFIG_BAD;
		/* smtp = ( { ... }, ... ): each entry takes the group's keys. */
		int len = config_setting_type(s) == CONFIG_TYPE_LIST ? config_setting_length(s) : 0;
		for (int k = 0; k < len; k++) {
			config_setting_t *e = config_setting_get_elem(s, (unsigned)k);
			if (config_setting_type(e) == CONFIG_TYPE_GROUP && check_keys(x, e, full) < 0)
				return CONFIG_BAD;
		}
	}
	return 0;
}

static int from_addresses(struct cfg_ctx *x, struct config *c)
{
	config_setting_t *s = config_lookup(&x->cf, "from");
	if (!c->from)
		return cfg_bad(x, NULL, "from is required, e.g. from = \"Joy <joy@example.org>\";");
	if (addr_parse_mailbox(c->from, &c->from_name, &c->from_addr) < 0)
		return cfg_bad(x, s, "from: expected \"Name <address>\" with a valid address, found \"%s\"", c->from);
	if (c->reply_to) {
		char *n, *a;
		if (addr_parse_mailbox(c->reply_to, &n, &a) < 0)
			return cfg_bad(x, config_lookup(&x->cf, "reply_to"),
				   "reply_to: expected an address, found \"%s\"", c->reply_to);
		free(n);
		free(a);
	}
	if (c->list_id) {
		/* "Name <id>" or a bare "<id>" / "id": RFC 2919 wants a
		 * dot-atom id; the display name becomes {{list_name}}. */
		const char *lt = strchr(c->list_id, '<');
		const char *id = lt ? lt + 1 : c->list_id;
		size_t idl = lt ? strcspn(id, ">") : strlen(id);
		if (lt && id[idl] != '>')
			return cfg_bad(x, config_lookup(&x->cf, "list_id"), "list_id: missing \">\" in \"%s\"", c->list_id);
		for (size_t i = 0; i < idl; i++)
			if (!(id[i] == '.' || id[i] == '-' || id[i] == '_' ||
			      (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
			      (id[i] >= '0' && id[i] <= '9')) || !memchr(id, '.', idl))
				return cfg_bad(x, config_lookup(&x->cf, "list_id"),
					   "list_id: the id in \"%s\" must look like name.example.org", c->list_id);
		size_t nl = lt ? (size_t)(lt - c->list_id) : 0;
		while (nl && c->list_id[nl - 1] == ' ')
			nl--;
		const char *nm = c->list_id;
		if (nl >= 2 && nm[0] == '"' && nm[nl - 1] == '"') {
			nm++;
			nl -= 2;
		}
		c->list_name = nl ? xstrndup(nm, nl) : xstrdup(c->from_name);
	} else {
		c->list_name = xstrdup(*c->from_name ? c->from_name : c->from_addr);
	}
	return c->list_name ? 0 : cfg_bad(x, NULL, "out of memory");
}

int cfg_starttls_at(struct cfg_ctx *x, config_setting_t *s, const char *key,
		       enum starttls_mode *out)
{
	char *tls = NULL;
	int rc = cfg_str_at(x, s, key, &tls);
	if (rc || !tls)
		return rc;
	if (!strcmp(tls, "required"))
		*out = STARTTLS_REQUIRED;
	else if (!strcmp(tls, "try"))
		*out = STARTTLS_TRY;
	else if (!strcmp(tls, "never"))
		*out = STARTTLS_NEVER;
	else
		rc = cfg_bad(x, s, "%s: expected \"required\", \"try\" or \"never\", found \"%s\"", key, tls);
	free(tls);
	return rc;
}

static int starttls_setting(struct cfg_ctx *x, const char *key, enum starttls_mode *out)
{
	return cfg_starttls_at(x, config_lookup(&x->cf, key), key, out);
}

/* group "bounce.mailbox" or "unsubscribe.mailbox". */
static int mailbox_settings(struct cfg_ctx *x, const char *group, struct mailbox_conf *m)
{
	static const char *const names[] = {"url", "username", "password_env",
		"password_command", "password", "ca_file", "move_to"};
	char **fields[] = {&m->url, &m->username, &m->password_env, &m->password_command,
			   &m->password, &m->ca_file, &m->move_to};
	char key[64];
	int rc = 0;
	for (size_t i = 0; !rc && i < sizeof names / sizeof *names; i++) {
		snprintf(key, sizeof key, "%s.%s", group, names[i]);
		rc = cfg_get_str(x, key, fields[i]);
	}
	snprintf(key, sizeof key, "%s.starttls", group);
	if (!rc)
		rc = starttls_setting(x, key, &m->starttls);
	snprintf(key, sizeof key, "%s.timeout", group);
	if (!rc)
		rc = get_long(x, key, &m->timeout, 1, 3600);
	snprintf(key, sizeof key, "%s.password", group);
	if (!rc)
		rc = cfg_private_password(x, key, m->password);
	if (!rc)
		rc = cfg_resolve(x, &m->ca_file);
	/* maildir:PATH and mbox:PATH are relative to the config too. */
	static const char *const local[] = {"maildir:", "mbox:"};
	for (int i = 0; !rc && m->url && i < 2; i++) {
		size_t pl = strlen(local[i]);
		if (strncmp(m->url, local[i], pl))
			continue;
		char *p = strdup(m->url + pl), *url = NULL;
		rc = p ? cfg_resolve(x, &p) : cfg_bad(x, NULL, "out of memory");
		if (!rc && asprintf(&url, "%s%s", local[i], p) < 0)
			rc = cfg_bad(x, NULL, "out of memory");
		if (!rc) {
			free(m->url);
			m->url = url;
		}
		free(p);
	}
	return rc;
}

/* A setting that may be one string or a list of them: *n of them (0 when
 * it is absent), or CONFIG_BAD saying what was expected. */
int cfg_string_list(struct cfg_ctx *x, const char *key, const char *expected,
		       config_setting_t **out, int *n)
{
	config_setting_t *s = *out = config_lookup(&x->cf, key);
	*n = 0;
	if (!s)
		return 0;
	int single = config_setting_type(s) == CONFIG_TYPE_STRING;
	if (!single && !config_setting_is_aggregate(s))
		return cfg_bad(x, s, "%s: expected %s", key, expected);
	*n = single ? 1 : config_setting_length(s);
	return 0;
}

/* Element i of a cfg_string_list (NULL when it is not a string); *e: the
 * element's setting, for its line. */
const char *cfg_string_elem(config_setting_t *s, int i, config_setting_t **e)
{
	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		*e = s;
		return config_setting_get_string(s);
	}
	*e = config_setting_get_elem(s, (unsigned)i);
	if (!*e)
		*e = s;
	return config_setting_get_string_elem(s, i);
}

static int test_addresses(struct cfg_ctx *x, struct config *c)
{
	config_setting_t *s, *e;
	int n, rc = cfg_string_list(x, "test.to", "a list of addresses", &s, &n);
	if (rc || !n)
		return rc;
	c->test_to = calloc((size_t)n + 1, sizeof *c->test_to);
	if (!c->test_to)
		return cfg_bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = cfg_string_elem(s, i, &e);
		char why[100];
		if (!v || addr_valid(v, why, sizeof why) < 0)
			return cfg_bad(x, s, "test.to: \"%s\" is not a valid address", v ? v : "(not a string)");
		c->test_to[c->n_test_to++] = strdup(v);
	}
	return 0;
}

/* Headers herald writes itself, or that would change who a message is
 * from or to, or how it is read: an extra line may not add a second one. */
static const char *const own_headers[] = {
	"from", "to", "cc", "bcc", "sender", "reply-to", "subject", "date", "message-id",
	"mime-version", "content-type", "content-transfer-encoding", "content-disposition",
	"list-id", "list-unsubscribe", "list-unsubscribe-post", "dkim-signature",
	"return-path", "received", "resent-from", "resent-to", "resent-sender", NULL};

/* One "Name: value" of headers: the name in RFC 5322 field-name syntax
 * (printable ASCII but ':'), not one of own_headers, and a value. */
static int header_line(struct cfg_ctx *x, const config_setting_t *s, const char *v,
		       struct config_header *h)
{
	const char *colon = v ? strchr(v, ':') : NULL;
	if (!colon || colon == v)
		return cfg_bad(x, s, "headers: expected \"Name: value\", found \"%s\"", v ? v : "(not a string)");
	size_t nl = (size_t)(colon - v);
	for (size_t i = 0; i < nl; i++)
		if (v[i] < 33 || v[i] > 126)
			return cfg_bad(x, s, "headers: \"%.*s\" is not a header name (letters, digits and "
				   "hyphens, no blanks, before the colon)", (int)nl, v);
	if (nl > 76)
		return cfg_bad(x, s, "headers: the name \"%.*s...\" is over 76 characters", 20, v);
	for (size_t k = 0; own_headers[k]; k++)
		if (strlen(own_headers[k]) == nl && !strncasecmp(v, own_headers[k], nl))
			return cfg_bad(x, s, "headers: herald writes %.*s itself (or it would change who the "
				   "message is from or to); use another header name", (int)nl, v);
	const char *val = colon + 1;
	while (*val == ' ' || *val == '\t')
		val++;
	if (!*val)
		return cfg_bad(x, s, "headers: %.*s has no value", (int)nl, v);
	if (strpbrk(val, "\r\n"))
		return cfg_bad(x, s, "headers: line breaks are not allowed in %.*s", (int)nl, v);
	char where[4096 + 16], full[4096];
	snprintf(where, sizeof where, "%s:%d", cfg_source_of(x, s, full, sizeof full),
		 config_setting_source_line(s));
	h->name = strndup(v, nl);
	h->value = strdup(val);
	h->where = strdup(where);
	if (!h->name || !h->value || !h->where)
		return cfg_bad(x, s, "out of memory");
	return 0;
}

static int extra_headers(struct cfg_ctx *x, struct config *c)
{
	config_setting_t *s, *e;
	int n, rc = cfg_string_list(x, "headers", "a list of \"Name: value\" strings", &s, &n);
	if (rc || !n)
		return rc;
	c->headers = calloc((size_t)n + 1, sizeof *c->headers);
	if (!c->headers)
		return cfg_bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = cfg_string_elem(s, i, &e);
		rc = header_line(x, e, v, &c->headers[c->n_headers]);
		c->n_headers++; /* freed whole or half by config_free */
		if (rc)
			return rc;
		for (size_t k = 0; k + 1 < c->n_headers; k++)
			if (!strcasecmp(c->headers[k].name, c->headers[i].name))
				return cfg_bad(x, e, "headers: %s is given twice", c->headers[i].name);
	}
	return 0;
}

/* A signature needs all three keys; half a dkim group is a mistake that
 * would otherwise send unsigned mail without a word. The domain and
 * selector become DNS labels (<selector>._domainkey.<domain>). */
static int dkim_settings(struct cfg_ctx *x, struct config *c)
{
	const char *keys[] = {"domain", "selector", "key_file"};
	char *vals[] = {c->dkim.domain, c->dkim.selector, c->dkim.key_file};
	int set = 0;
	for (int i = 0; i < 3; i++)
		set += vals[i] && *vals[i];
	if (!set)
		return 0;
	config_setting_t *g = config_lookup(&x->cf, "dkim");
	for (int i = 0; i < 3; i++)
		if (!vals[i] || !*vals[i])
			return cfg_bad(x, g, "dkim.%s is missing: dkim needs domain, selector and key_file", keys[i]);
	for (int i = 0; i < 2; i++) {
		const char *v = vals[i];
		for (const char *p = v; *p; p++)
			if (!(*p == '.' || *p == '-' || *p == '_' || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
				return cfg_bad(x, config_lookup(&x->cf, i ? "dkim.selector" : "dkim.domain"),
					   "dkim.%s: \"%s\" is not a DNS name", keys[i], v);
		if (*v == '.' || v[strlen(v) - 1] == '.' || strstr(v, ".."))
			return cfg_bad(x, config_lookup(&x->cf, i ? "dkim.selector" : "dkim.domain"),
				   "dkim.%s: \"%s\" is not a DNS name", keys[i], v);
	}
	return 0;
}

int cfg_get_bool(struct cfg_ctx *x, const char *key, int *out)
{
	return cfg_bool_at(x, config_lookup(&x->cf, key), key, out);
}

/* subscribers_delimiter and language: what a spreadsheet export and
 * the templates' lang attribute need. */
static int list_settings(struct cfg_ctx *x, struct config *c)
{
	char *d = NULL;
	int rc = cfg_get_str(x, "subscribers_delimiter", &d);
	if (!rc && d) {
		config_setting_t *s = config_lookup(&x->cf, "subscribers_delimiter");
		if (strlen(d) != 1 || !strchr(",;\t|", d[0]))
			rc = cfg_bad(x, s, "subscribers_delimiter: expected \",\", \";\", \"\\t\" (tab) or \"|\", "
				 "found \"%s\"", d);
		else
			c->subs_delim = d[0];
	}
	free(d);
	if (rc || (rc = cfg_get_str(x, "language", &c->language)))
		return rc;
	/* It goes into an HTML attribute: BCP 47's shape, subtags of 1 to 8
	 * letters or digits after a first one of 2 to 8 letters. */
	int ok = 1;
	size_t len = 0, nsub = 0;
	for (const char *p = c->language;; p++) {
		if (*p == '-' || !*p) {
			ok &= len >= (nsub ? 1u : 2u) && len <= 8;
			nsub++, len = 0;
			if (!*p)
				break;
			continue;
		}
		ok &= isalpha((unsigned char)*p) || (nsub && isdigit((unsigned char)*p));
		len++;
	}
	if (!ok)
		return cfg_bad(x, config_lookup(&x->cf, "language"),
			   "language: expected a language tag such as \"fr\" or \"pt-BR\", found \"%s\"",
			   c->language);
	return 0;
}

static int load(struct cfg_ctx *x, struct config *c)
{
	int rc = 0;
#define STR(k, f) if ((rc = cfg_get_str(x, k, &c->f))) return rc
	STR("from", from);
	STR("reply_to", reply_to);
	STR("list_id", list_id);
	STR("subscribers", subscribers);
	STR("templates", templates);
	STR("template", template_name);
	STR("state_dir", state_dir);
	STR("unsubscribe.url", unsub.url);
	STR("unsubscribe.mailto", unsub.mailto);
	STR("unsubscribe.secret_env", unsub.secret_env);
	STR("bounce.return_path", bounce.return_path);
	STR("dkim.domain", dkim.domain);
	STR("dkim.selector", dkim.selector);
	STR("dkim.key_file", dkim.key_file);
	STR("postal_address", postal_address);
#undef STR
	if ((rc = cfg_relays_settings(x, c)) ||
	    (rc = get_num(x, "rate.per_second", &c->rate.per_second, 0, 1e6)) ||
	    (rc = get_long(x, "rate.per_minute", &c->rate.per_minute, 0, 100000000)) ||
	    (rc = get_long(x, "rate.per_hour", &c->rate.per_hour, 0, 100000000)) ||
	    (rc = get_long(x, "rate.per_day", &c->rate.per_day, 0, 100000000)) ||
	    (rc = cfg_get_int(x, "rate.burst", &c->rate.burst, 1, 100000)) ||
	    (rc = cfg_get_int(x, "retry.attempts", &c->retry.attempts, 1, 100)) ||
	    (rc = get_num(x, "retry.initial_delay", &c->retry.initial_delay, 0, 86400)) ||
	    (rc = get_num(x, "retry.max_delay", &c->retry.max_delay, 0, 86400)) ||
	    (rc = cfg_get_int(x, "bounce.soft_limit", &c->bounce.soft_limit, 1, 1000)) ||
	    (rc = cfg_get_bool(x, "unsafe_html", &c->unsafe_html)) ||
	    (rc = cfg_get_bool(x, "merge_code", &c->merge_code)))
		return rc;
	if ((rc = list_settings(x, c)) || (rc = from_addresses(x, c)) ||
	    (rc = test_addresses(x, c)) || (rc = dkim_settings(x, c)) ||
	    (rc = extra_headers(x, c)) ||
	    (rc = mailbox_settings(x, "bounce.mailbox", &c->bounce.mailbox)) ||
	    (rc = mailbox_settings(x, "unsubscribe.mailbox", &c->unsub.mailbox)))
		return rc;
	if ((rc = cfg_web_settings(x, c)))
		return rc;
	if (c->unsub.mailto) {
		char why[100];
		if (addr_valid(c->unsub.mailto, why, sizeof why) < 0)
			return cfg_bad(x, config_lookup(&x->cf, "unsubscribe.mailto"),
				   "unsubscribe.mailto: \"%s\" is not an address (%s)", c->unsub.mailto, why);
	}
	if (c->unsub.url && strncmp(c->unsub.url, "https://", 8) &&
	    strncmp(c->unsub.url, "http://", 7))
		return cfg_bad(x, config_lookup(&x->cf, "unsubscribe.url"),
			   "unsubscribe.url: expected an https:// URL, found \"%s\"", c->unsub.url);
	if ((rc = cfg_resolve(x, &c->subscribers)) || (rc = cfg_resolve(x, &c->templates)) ||
	    (rc = cfg_resolve(x, &c->state_dir)) ||
	    (rc = cfg_resolve(x, &c->dkim.key_file)))
		return rc;
	const char *templates_what;
	if ((rc = cfg_templates_default(x, c, &templates_what)) || (rc = cfg_origins(x, c, templates_what)))
		return rc;
	return 0;
}

static int defaults(struct config *c)
{
	c->subscribers = strdup("subscribers.csv");
	c->templates = strdup("templates");
	c->template_name = strdup("default");
	c->state_dir = strdup("state");
	c->subs_delim = ',';
	c->language = strdup("en");
	c->unsub.secret_env = strdup("HERALD_SECRET");
	if (cfg_relay_defaults(&c->smtp) < 0)
		return -1;
	c->rate.burst = 1;
	c->retry.attempts = 4;
	c->retry.initial_delay = 30;
	c->retry.max_delay = 900;
	c->bounce.soft_limit = 3;
	c->web.connections = 1024;
	c->web.connections_per_client = 16;
	if (!(c->web.posts = strdup("posts")) || !(c->web.listen = strdup("127.0.0.1:8025")))
		return -1;
	struct mailbox_conf *mbs[] = {&c->bounce.mailbox, &c->unsub.mailbox};
	for (int i = 0; i < 2; i++) {
		mbs[i]->starttls = STARTTLS_REQUIRED;
		mbs[i]->timeout = 60;
		mbs[i]->password_env = strdup(i ? "HERALD_UNSUBSCRIBE_PASSWORD" : "HERALD_BOUNCE_PASSWORD");
		if (!mbs[i]->password_env)
			return -1;
	}
	return c->subscribers && c->templates && c->template_name &&
		       c->state_dir && c->language && c->unsub.secret_env ? 0 : -1;
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	if (!path)
		path = getenv("HERALD_CONFIG");
	if (!path || !*path)
		path = "herald.conf";
	struct cfg_ctx x = {.file = path, .err = err, .errlen = errlen};
	c->path = strdup(path);
	if (!c->path || defaults(c) < 0)
		return set_err(err, errlen, CONFIG_BAD, "out of memory");
	FILE *f = fopen(path, "r");
	if (!f)
		return set_err(err, errlen, errno == ENOENT ? CONFIG_NOFILE : CONFIG_BAD,
			       "%s: %s%s", path, strerror(errno),
			       errno == ENOENT ? " (use -c FILE, or start a newsletter here with: herald init)" : "");
	/* The file may hold a password: read it through a buffer of ours,
	 * wiped once the file is closed. */
	char iobuf[BUFSIZ];
	setvbuf(f, iobuf, _IOFBF, sizeof iobuf);
	config_init(&x.cf);
	/* @include "secrets.conf" is found beside the config, as every
	 * other path in it is, not in whatever directory cron started in. */
	const char *slash = strrchr(path, '/');
	x.dir = slash ? xstrndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
	config_set_include_dir(&x.cf, x.dir);
	int ok = config_read(&x.cf, f);
	fclose(f);
	explicit_bzero(iobuf, sizeof iobuf);
	if (!ok) {
		set_err(err, errlen, CONFIG_BAD, "%s:%d: %s",
			config_error_file(&x.cf) ? config_error_file(&x.cf) : path,
			config_error_line(&x.cf), config_error_text(&x.cf));
		cfg_wipe_secrets(&x);
		config_destroy(&x.cf);
		free(x.dir);
		return CONFIG_BAD;
	}
	int rc = x.dir ? check_keys(&x, config_root_setting(&x.cf), "") : CONFIG_BAD;
	if (rc == 0)
		rc = load(&x, c);
	free(x.dir);
	cfg_wipe_secrets(&x);
	config_destroy(&x.cf);
	return rc;
}

int config_exitcode(int rc)
{
	return rc == CONFIG_OK ? EX_OK : rc == CONFIG_NOFILE ? EX_NOINPUT
	     : rc == CONFIG_TEMP ? EX_TEMPFAIL : EX_CONFIG;
}

void config_free(struct config *c)
{
	char **strs[] = {&c->path, &c->from, &c->from_name, &c->from_addr,
			 &c->reply_to, &c->list_id, &c->list_name, &c->subscribers,
			 &c->templates, &c->template_name, &c->state_dir,
			 &c->unsub.url, &c->unsub.mailto, &c->unsub.secret_env,
			 &c->bounce.return_path, &c->dkim.domain, &c->dkim.selector,
			 &c->dkim.key_file, &c->postal_address, &c->language};
	for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
		free(*strs[i]);
	for (size_t i = 0; i < c->n_headers; i++) {
		free(c->headers[i].name);
		free(c->headers[i].value);
		free(c->headers[i].where);
	}
	free(c->headers);
	for (size_t i = 0; i < config_nrelays(c); i++)
		cfg_relay_free((struct smtp_conf *)config_relay(c, i));
	free(c->more_relays);
	struct mailbox_conf *mbs[] = {&c->bounce.mailbox, &c->unsub.mailbox};
	for (int i = 0; i < 2; i++) {
		char *ms[] = {mbs[i]->url, mbs[i]->username, mbs[i]->password_env,
			      mbs[i]->password_command, mbs[i]->ca_file, mbs[i]->move_to};
		for (size_t k = 0; k < sizeof ms / sizeof *ms; k++)
			free(ms[k]);
		secret_free(&mbs[i]->password);
	}
	for (size_t i = 0; i < sizeof c->origin / sizeof *c->origin; i++)
		free(c->origin[i]);
	for (size_t i = 0; i < c->n_test_to; i++)
		free(c->test_to[i]);
	free(c->test_to);
	cfg_web_free(c);
	memset(c, 0, sizeof *c);
}
