#include "input/config.h"
#include "util/passcmd.h"
#include "util/addr.h"
#include "util/buf.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <libconfig.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <sysexits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>

struct ctx {
	config_t cf;
	const char *file;
	char *dir;
	char *err;
	size_t errlen;
};

/* The file a setting came from: the config, or the @include'd file, whose
 * name libconfig keeps as written (relative to the include directory,
 * which is the config's). */
static const char *source_of(const struct ctx *x, const config_setting_t *s, char *buf,
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
static int bad(struct ctx *x, const config_setting_t *s, const char *fmt, ...)
{
	char msg[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	int line = s ? config_setting_source_line(s) : 0;
	char full[4096];
	const char *file = source_of(x, s, full, sizeof full);
	if (line)
		set_err(x->err, x->errlen, CONFIG_BAD, "%s:%d: %s", file, line, msg);
	else
		set_err(x->err, x->errlen, CONFIG_BAD, "%s: %s", x->file, msg);
	return CONFIG_BAD;
}

/* The getters take the setting (NULL: absent, the default stays) and the
 * name to give it in messages: its path, or smtp[2].url in a list. */

/* Reads a string setting; *out keeps its default when absent. */
static int str_at(struct ctx *x, config_setting_t *s, const char *key, char **out)
{
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING)
		return bad(x, s, "%s: expected a string in double quotes", key);
	const char *v = config_setting_get_string(s);
	if (strpbrk(v, "\r\n"))
		return bad(x, s, "%s: line breaks are not allowed", key);
	free(*out);
	*out = strdup(v);
	return *out ? 0 : bad(x, s, "%s: out of memory", key);
}

static int get_str(struct ctx *x, const char *key, char **out)
{
	return str_at(x, config_lookup(&x->cf, key), key, out);
}

static int num_at(struct ctx *x, config_setting_t *s, const char *key, double *out,
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
		return bad(x, s, "%s: expected a number", key);
	if (v < min || v > max) {
		char range[64];
		snprintf(range, sizeof range, " (from %g to %g)", min, max);
		return bad(x, s, "%s: out of range%s", key, range);
	}
	*out = v;
	return 0;
}

static int get_num(struct ctx *x, const char *key, double *out, double min,
		   double max)
{
	return num_at(x, config_lookup(&x->cf, key), key, out, min, max);
}

static int long_at(struct ctx *x, config_setting_t *s, const char *key, long *out,
		   long min, long max)
{
	double d = (double)*out;
	int rc = num_at(x, s, key, &d, (double)min, (double)max);
	if (rc == 0) {
		if (s && config_setting_type(s) == CONFIG_TYPE_FLOAT &&
		    d != (double)(long)d)
			return bad(x, s, "%s: expected a whole number", key);
		*out = (long)d;
	}
	return rc;
}

static int get_long(struct ctx *x, const char *key, long *out, long min,
		    long max)
{
	return long_at(x, config_lookup(&x->cf, key), key, out, min, max);
}

static int int_at(struct ctx *x, config_setting_t *s, const char *key, int *out, int min,
		  int max)
{
	long l = *out;
	int rc = long_at(x, s, key, &l, min, max);
	*out = (int)l;
	return rc;
}

static int bool_at(struct ctx *x, config_setting_t *s, const char *key, int *out)
{
	if (!s)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return bad(x, s, "%s: expected true or false", key);
	*out = config_setting_get_bool(s);
	return 0;
}

static int get_int(struct ctx *x, const char *key, int *out, int min, int max)
{
	return int_at(x, config_lookup(&x->cf, key), key, out, min, max);
}

/* Against the config's directory; no "dir//file" in what is printed,
 * whether the config sits in / or a setting ends in a slash. */
static int resolve(struct ctx *x, char **path)
{
	path_trim_slashes(*path);
	if (!*path || !**path || **path == '/')
		return 0;
	char *p;
	size_t dl = strlen(x->dir);
	if (asprintf(&p, "%s%s%s", x->dir, dl && x->dir[dl - 1] == '/' ? "" : "/", *path) < 0)
		return set_err(x->err, x->errlen, CONFIG_BAD, "out of memory");
	free(*path);
	*path = p;
	return 0;
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

static int check_keys(struct ctx *x, config_setting_t *grp, const char *prefix)
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
			return bad(x, s, "unknown setting \"%s\" (see config.example)", full);
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

static int from_addresses(struct ctx *x, struct config *c)
{
	config_setting_t *s = config_lookup(&x->cf, "from");
	if (!c->from)
		return bad(x, NULL, "from is required, e.g. from = \"Joy <joy@example.org>\";");
	if (addr_parse_mailbox(c->from, &c->from_name, &c->from_addr) < 0)
		return bad(x, s, "from: expected \"Name <address>\" with a valid address, found \"%s\"", c->from);
	if (c->reply_to) {
		char *n, *a;
		if (addr_parse_mailbox(c->reply_to, &n, &a) < 0)
			return bad(x, config_lookup(&x->cf, "reply_to"),
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
			return bad(x, config_lookup(&x->cf, "list_id"), "list_id: missing \">\" in \"%s\"", c->list_id);
		for (size_t i = 0; i < idl; i++)
			if (!(id[i] == '.' || id[i] == '-' || id[i] == '_' ||
			      (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
			      (id[i] >= '0' && id[i] <= '9')) || !memchr(id, '.', idl))
				return bad(x, config_lookup(&x->cf, "list_id"),
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
	return c->list_name ? 0 : bad(x, NULL, "out of memory");
}

static int starttls_at(struct ctx *x, config_setting_t *s, const char *key,
		       enum starttls_mode *out)
{
	char *tls = NULL;
	int rc = str_at(x, s, key, &tls);
	if (rc || !tls)
		return rc;
	if (!strcmp(tls, "required"))
		*out = STARTTLS_REQUIRED;
	else if (!strcmp(tls, "try"))
		*out = STARTTLS_TRY;
	else if (!strcmp(tls, "never"))
		*out = STARTTLS_NEVER;
	else
		rc = bad(x, s, "%s: expected \"required\", \"try\" or \"never\", found \"%s\"", key, tls);
	free(tls);
	return rc;
}

static int starttls_setting(struct ctx *x, const char *key, enum starttls_mode *out)
{
	return starttls_at(x, config_lookup(&x->cf, key), key, out);
}

/* A password sitting in a file must not be readable by others: the file
 * that supplied it, which is not the main one when it was @include'd. */
static int private_at(struct ctx *x, config_setting_t *s, const char *key, const char *password)
{
	struct stat st;
	char full[4096];
	const char *path = source_of(x, s, full, sizeof full);
	if (password && stat(path, &st) == 0 && (st.st_mode & 077))
		return bad(x, s, "%s is set but %s is readable by others; run: chmod 600 %s",
			   key, path, path);
	return 0;
}

static int private_password(struct ctx *x, const char *key, const char *password)
{
	return private_at(x, config_lookup(&x->cf, key), key, password);
}

/* group "bounce.mailbox" or "unsubscribe.mailbox". */
static int mailbox_settings(struct ctx *x, const char *group, struct mailbox_conf *m)
{
	static const char *const names[] = {"url", "username", "password_env",
		"password_command", "password", "ca_file", "move_to"};
	char **fields[] = {&m->url, &m->username, &m->password_env, &m->password_command,
			   &m->password, &m->ca_file, &m->move_to};
	char key[64];
	int rc = 0;
	for (size_t i = 0; !rc && i < sizeof names / sizeof *names; i++) {
		snprintf(key, sizeof key, "%s.%s", group, names[i]);
		rc = get_str(x, key, fields[i]);
	}
	snprintf(key, sizeof key, "%s.starttls", group);
	if (!rc)
		rc = starttls_setting(x, key, &m->starttls);
	snprintf(key, sizeof key, "%s.timeout", group);
	if (!rc)
		rc = get_long(x, key, &m->timeout, 1, 3600);
	snprintf(key, sizeof key, "%s.password", group);
	if (!rc)
		rc = private_password(x, key, m->password);
	if (!rc)
		rc = resolve(x, &m->ca_file);
	/* maildir:PATH and mbox:PATH are relative to the config too. */
	static const char *const local[] = {"maildir:", "mbox:"};
	for (int i = 0; !rc && m->url && i < 2; i++) {
		size_t pl = strlen(local[i]);
		if (strncmp(m->url, local[i], pl))
			continue;
		char *p = strdup(m->url + pl), *url = NULL;
		rc = p ? resolve(x, &p) : bad(x, NULL, "out of memory");
		if (!rc && asprintf(&url, "%s%s", local[i], p) < 0)
			rc = bad(x, NULL, "out of memory");
		if (!rc) {
			free(m->url);
			m->url = url;
		}
		free(p);
	}
	return rc;
}

/* ---- relays: smtp = { ... } or smtp = ( { ... }, ... ) ------------------- */

static int relay_defaults(struct smtp_conf *r)
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

static void relay_free(struct smtp_conf *r)
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
static int relay_at(struct ctx *x, config_setting_t *g, const char *label, int listed,
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
		rc = str_at(x, AT(strs[i]), key, fields[i]);
	if (rc || (rc = starttls_at(x, AT("starttls"), key, &r->starttls)) ||
	    (rc = long_at(x, AT("timeout"), key, &r->timeout, 1, 3600)) ||
	    (rc = int_at(x, AT("connections"), key, &r->connections, 1, 64)) ||
	    (rc = int_at(x, AT("weight"), key, &r->weight, 1, 1000)) ||
	    (rc = bool_at(x, AT("pipelining"), key, &r->pipelining)) ||
	    (rc = num_at(x, AT("per_second"), key, &r->rate.per_second, 0, 1e6)) ||
	    (rc = long_at(x, AT("per_minute"), key, &r->rate.per_minute, 0, 100000000)) ||
	    (rc = long_at(x, AT("per_hour"), key, &r->rate.per_hour, 0, 100000000)) ||
	    (rc = long_at(x, AT("per_day"), key, &r->rate.per_day, 0, 100000000)) ||
	    (rc = int_at(x, AT("burst"), key, &r->rate.burst, 1, 100000)))
		return rc;
	config_setting_t *u = AT("url");
	if (listed && !r->url)
		return bad(x, g, "%s: a relay in a list needs its url, e.g. url = \"smtp://mail.example.org:587\";",
			   label);
	if (!r->url && !(r->url = strdup("smtp://127.0.0.1:25")))
		return bad(x, g, "out of memory");
	if (strncmp(r->url, "smtp://", 7) && strncmp(r->url, "smtps://", 8))
		return bad(x, u, "%s.url: expected smtp://host[:port] or smtps://host[:port], found \"%s\"",
			   label, r->url);
	if ((rc = private_at(x, AT("password"), key, r->password)) || (rc = resolve(x, &r->ca_file)))
		return rc;
	config_setting_t *ns = AT("name");
	if (!r->name && !(r->name = relay_default_name(r->url)))
		return bad(x, g, "out of memory");
	if (!relay_name_ok(r->name))
		return bad(x, ns ? ns : u, ns ? "%s.name: \"%s\": use 1 to 64 letters, digits and . _ - : [ ] @"
				     : "%s: the name made from its url, \"%s\", is not one herald can use: give the relay a name = \"...\"; (letters, digits and . _ - :)",
			   label, r->name);
#undef AT
	char full[4096];
	int line = g ? config_setting_source_line(g) : 0;
	if (line ? asprintf(&r->where, "%s:%d", source_of(x, g, full, sizeof full), line) < 0
		 : !(r->where = strdup(x->file)))
		return bad(x, g, "out of memory");
	return 0;
}

static int relays_settings(struct ctx *x, struct config *c)
{
	config_setting_t *s = config_lookup(&x->cf, "smtp");
	if (!s || config_setting_type(s) == CONFIG_TYPE_GROUP)
		return relay_at(x, s, "smtp", 0, &c->smtp);
	if (config_setting_type(s) != CONFIG_TYPE_LIST)
		return bad(x, s, "smtp: expected a group, smtp = { url = \"...\"; }; or a list of them, smtp = ( { url = \"...\"; }, { url = \"...\"; } );");
	int n = config_setting_length(s);
	if (n == 0)
		return bad(x, s, "smtp: the list of relays is empty: give at least one, smtp = ( { url = \"smtp://mail.example.org:587\"; } );");
	if (n > CONFIG_RELAYS_MAX)
		return bad(x, s, "smtp: %d relays; herald takes at most %d", n, CONFIG_RELAYS_MAX);
	if (n > 1 && !(c->more_relays = calloc((size_t)n - 1, sizeof *c->more_relays)))
		return bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(s, (unsigned)i);
		struct smtp_conf *r = i ? &c->more_relays[i - 1] : &c->smtp;
		if (i) {
			if (relay_defaults(r) < 0)
				return bad(x, s, "out of memory");
			c->n_more_relays++;
		}
		char label[32];
		snprintf(label, sizeof label, "smtp[%d]", i + 1);
		if (config_setting_type(g) != CONFIG_TYPE_GROUP)
			return bad(x, g, "%s: each relay in the list is a group: { url = \"smtp://...\"; weight = 1; }",
				   label);
		int rc = relay_at(x, g, label, 1, r);
		if (rc)
			return rc;
		for (int k = 0; k < i; k++) {
			const struct smtp_conf *o = config_relay(c, (size_t)k);
			if (!strcmp(o->name, r->name))
				return bad(x, g, "%s: another relay is called \"%s\" too (%s): give one of them a name = \"...\"; of its own",
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

/* A setting that may be one string or a list of them: *n of them (0 when
 * it is absent), or CONFIG_BAD saying what was expected. */
static int string_list(struct ctx *x, const char *key, const char *expected,
		       config_setting_t **out, int *n)
{
	config_setting_t *s = *out = config_lookup(&x->cf, key);
	*n = 0;
	if (!s)
		return 0;
	int single = config_setting_type(s) == CONFIG_TYPE_STRING;
	if (!single && !config_setting_is_aggregate(s))
		return bad(x, s, "%s: expected %s", key, expected);
	*n = single ? 1 : config_setting_length(s);
	return 0;
}

/* Element i of a string_list (NULL when it is not a string); *e: the
 * element's setting, for its line. */
static const char *string_elem(config_setting_t *s, int i, config_setting_t **e)
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

static int test_addresses(struct ctx *x, struct config *c)
{
	config_setting_t *s, *e;
	int n, rc = string_list(x, "test.to", "a list of addresses", &s, &n);
	if (rc || !n)
		return rc;
	c->test_to = calloc((size_t)n + 1, sizeof *c->test_to);
	if (!c->test_to)
		return bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = string_elem(s, i, &e);
		char why[100];
		if (!v || addr_valid(v, why, sizeof why) < 0)
			return bad(x, s, "test.to: \"%s\" is not a valid address", v ? v : "(not a string)");
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
static int header_line(struct ctx *x, const config_setting_t *s, const char *v,
		       struct config_header *h)
{
	const char *colon = v ? strchr(v, ':') : NULL;
	if (!colon || colon == v)
		return bad(x, s, "headers: expected \"Name: value\", found \"%s\"", v ? v : "(not a string)");
	size_t nl = (size_t)(colon - v);
	for (size_t i = 0; i < nl; i++)
		if (v[i] < 33 || v[i] > 126)
			return bad(x, s, "headers: \"%.*s\" is not a header name (letters, digits and "
				   "hyphens, no blanks, before the colon)", (int)nl, v);
	if (nl > 76)
		return bad(x, s, "headers: the name \"%.*s...\" is over 76 characters", 20, v);
	for (size_t k = 0; own_headers[k]; k++)
		if (strlen(own_headers[k]) == nl && !strncasecmp(v, own_headers[k], nl))
			return bad(x, s, "headers: herald writes %.*s itself (or it would change who the "
				   "message is from or to); use another header name", (int)nl, v);
	const char *val = colon + 1;
	while (*val == ' ' || *val == '\t')
		val++;
	if (!*val)
		return bad(x, s, "headers: %.*s has no value", (int)nl, v);
	if (strpbrk(val, "\r\n"))
		return bad(x, s, "headers: line breaks are not allowed in %.*s", (int)nl, v);
	char where[4096 + 16], full[4096];
	snprintf(where, sizeof where, "%s:%d", source_of(x, s, full, sizeof full),
		 config_setting_source_line(s));
	h->name = strndup(v, nl);
	h->value = strdup(val);
	h->where = strdup(where);
	if (!h->name || !h->value || !h->where)
		return bad(x, s, "out of memory");
	return 0;
}

static int extra_headers(struct ctx *x, struct config *c)
{
	config_setting_t *s, *e;
	int n, rc = string_list(x, "headers", "a list of \"Name: value\" strings", &s, &n);
	if (rc || !n)
		return rc;
	c->headers = calloc((size_t)n + 1, sizeof *c->headers);
	if (!c->headers)
		return bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = string_elem(s, i, &e);
		rc = header_line(x, e, v, &c->headers[c->n_headers]);
		c->n_headers++; /* freed whole or half by config_free */
		if (rc)
			return rc;
		for (size_t k = 0; k + 1 < c->n_headers; k++)
			if (!strcasecmp(c->headers[k].name, c->headers[i].name))
				return bad(x, e, "headers: %s is given twice", c->headers[i].name);
	}
	return 0;
}

/* A signature needs all three keys; half a dkim group is a mistake that
 * would otherwise send unsigned mail without a word. The domain and
 * selector become DNS labels (<selector>._domainkey.<domain>). */
static int dkim_settings(struct ctx *x, struct config *c)
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
			return bad(x, g, "dkim.%s is missing: dkim needs domain, selector and key_file", keys[i]);
	for (int i = 0; i < 2; i++) {
		const char *v = vals[i];
		for (const char *p = v; *p; p++)
			if (!(*p == '.' || *p == '-' || *p == '_' || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
				return bad(x, config_lookup(&x->cf, i ? "dkim.selector" : "dkim.domain"),
					   "dkim.%s: \"%s\" is not a DNS name", keys[i], v);
		if (*v == '.' || v[strlen(v) - 1] == '.' || strstr(v, ".."))
			return bad(x, config_lookup(&x->cf, i ? "dkim.selector" : "dkim.domain"),
				   "dkim.%s: \"%s\" is not a DNS name", keys[i], v);
	}
	return 0;
}

static int get_bool(struct ctx *x, const char *key, int *out)
{
	return bool_at(x, config_lookup(&x->cf, key), key, out);
}

/* subscribers_delimiter and language: what a spreadsheet export and
 * the templates' lang attribute need. */
static int list_settings(struct ctx *x, struct config *c)
{
	char *d = NULL;
	int rc = get_str(x, "subscribers_delimiter", &d);
	if (!rc && d) {
		config_setting_t *s = config_lookup(&x->cf, "subscribers_delimiter");
		if (strlen(d) != 1 || !strchr(",;\t|", d[0]))
			rc = bad(x, s, "subscribers_delimiter: expected \",\", \";\", \"\\t\" (tab) or \"|\", "
				 "found \"%s\"", d);
		else
			c->subs_delim = d[0];
	}
	free(d);
	if (rc || (rc = get_str(x, "language", &c->language)))
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
		return bad(x, config_lookup(&x->cf, "language"),
			   "language: expected a language tag such as \"fr\" or \"pt-BR\", found \"%s\"",
			   c->language);
	return 0;
}

#ifndef HERALD_DATADIR
#define HERALD_DATADIR "/usr/local/share/herald"
#endif

const char *config_datadir(void)
{
	return HERALD_DATADIR;
}

/* The keys of config->origin, in order. */
static const char *const tracked[] = {"subscribers", "templates", "template", "state_dir"};
_Static_assert(sizeof tracked / sizeof *tracked == sizeof ((struct config *)0)->origin / sizeof(char *),
	       "one origin per tracked key");

const char *config_origin(const struct config *c, const char *key)
{
	for (size_t i = 0; i < sizeof tracked / sizeof *tracked; i++)
		if (!strcmp(key, tracked[i]))
			return c->origin[i];
	return NULL;
}

/* templates unset: the templates/ beside the config, if there is one,
 * so a layout of one's own wins; else the installed ones. */
static int templates_default(struct ctx *x, struct config *c, const char **what)
{
	struct stat st;
	*what = "the templates/ directory beside it";
	if (config_lookup(&x->cf, "templates") || (stat(c->templates, &st) == 0 && S_ISDIR(st.st_mode)))
		return 0;
	*what = NULL;
	free(c->templates);
	if (asprintf(&c->templates, "%s/templates", config_datadir()) < 0) {
		c->templates = NULL;
		return bad(x, NULL, "out of memory");
	}
	return 0;
}

static int origins(struct ctx *x, struct config *c, const char *templates_what)
{
	char dflt[4200];
	for (size_t i = 0; i < sizeof tracked / sizeof *tracked; i++) {
		config_setting_t *s = config_lookup(&x->cf, tracked[i]);
		char full[4096];
		int n;
		if (s) {
			n = asprintf(&c->origin[i], "%s = \"%s\" in %s:%d", tracked[i],
				     config_setting_get_string(s), source_of(x, s, full, sizeof full),
				     config_setting_source_line(s));
		} else {
			if (i == 1 && !templates_what)
				snprintf(dflt, sizeof dflt, " and no templates/ directory is beside it: the "
					 "default is herald's own, in %s", c->templates);
			else
				snprintf(dflt, sizeof dflt, ": the default is %s",
					 i == 0 ? "subscribers.csv beside it" : i == 1 ? templates_what
					 : i == 2 ? "\"default\"" : "state/ beside it");
			n = asprintf(&c->origin[i], "%s is not set in %s%s", tracked[i], x->file, dflt);
		}
		if (n < 0) {
			c->origin[i] = NULL;
			return bad(x, NULL, "out of memory");
		}
	}
	return 0;
}

void config_name_setting(const struct config *c, const char *key, char *err, size_t errlen)
{
	const char *origin = config_origin(c, key);
	size_t len = strlen(err);
	if (origin && len < errlen)
		snprintf(err + len, errlen - len, " (%s)", origin);
}

int config_readable(const struct config *c, const char *key, char *err, size_t errlen)
{
	const char *path = !strcmp(key, "subscribers") ? c->subscribers : NULL;
	const char *origin = config_origin(c, key);
	if (!path || access(path, R_OK) == 0)
		return 0;
	int e = errno;
	return set_err(err, errlen, e == ENOENT ? CONFIG_NOFILE : CONFIG_BAD,
		       "%s: %s (%s; %s)", path, strerror(e), origin ? origin : key,
		       e == ENOENT ? "create the list, a CSV file with a header row such as "
				     "\"email,name\", or set subscribers to the one you have"
				   : "make it readable, or set subscribers to another list");
}
/* ---- web: herald serve ---------------------------------------------------- */

/* listen = "HOST:PORT": an IP literal, because a name could resolve to
 * an address that is not this machine's, and "[v6]:PORT" for IPv6. */
static int web_listen(struct ctx *x, struct config *c)
{
	config_setting_t *s = config_lookup(&x->cf, "web.listen");
	const char *v = c->web.listen, *colon = strrchr(v, ':');
	const char *h = v;
	size_t hl = colon ? (size_t)(colon - v) : 0;
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	char host[64], *end;
	unsigned char bin[16];
	long port = colon ? strtol(colon + 1, &end, 10) : -1;
	if (!colon || hl == 0 || hl >= sizeof host || !colon[1] || *end || port < 0 || port > 65535)
		return bad(x, s, "web.listen: expected \"ADDRESS:PORT\" (e.g. \"127.0.0.1:8025\" or \"[::1]:8025\"), found \"%s\"", v);
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (inet_pton(strchr(host, ':') ? AF_INET6 : AF_INET, host, bin) != 1 ||
	    (strchr(host, ':') && h == v))
		return bad(x, s, "web.listen: \"%s\" is not an IP address (write \"127.0.0.1:8025\", or \"[::1]:8025\" for IPv6)", host);
	c->web.host = strdup(host);
	c->web.port = (int)port;
	return c->web.host ? 0 : bad(x, s, "out of memory");
}

/* The host of an http:// base_url (up to its port or path) is loopback
 * by its addresses (util/addr.c), not by its spelling: http://127.0.0.1.
 * example.net/ is somebody else's server. */
static int base_url_loopback(const char *hostport)
{
	char host[256], err[128];
	size_t n = hostport[0] == '[' ? strcspn(hostport, "]") + 1 : strcspn(hostport, ":/");
	if (n >= sizeof host || (hostport[0] == '[' && hostport[n - 1] != ']') ||
	    !strchr(":/", hostport[n]))
		return 0;
	memcpy(host, hostport, n);
	host[n] = '\0';
	return addr_host_is_loopback(host, 80, NULL, 0, err, sizeof err) == 1;
}

/* base_url: where the reverse proxy publishes herald serve; the links in
 * mail are built from it, so it must be absolute, and https unless it is
 * a loopback test. */
static int web_base_url(struct ctx *x, struct config *c)
{
	config_setting_t *s = config_lookup(&x->cf, "web.base_url");
	char *u = c->web.base_url;
	if (!u)
		return 0;
	size_t n = strlen(u);
	while (n && u[n - 1] == '/')
		u[--n] = '\0';
	int https = !strncmp(u, "https://", 8);
	const char *host = u + (https ? 8 : 7);
	if ((!https && strncmp(u, "http://", 7)) || !*host || *host == '/' || strpbrk(u, "?#\"<>\\ {}"))
		return bad(x, s, "web.base_url: expected an absolute https:// URL without query or fragment, e.g. \"https://news.example.org\", found \"%s\"", u);
	if (!https && !base_url_loopback(host))
		return bad(x, s, "web.base_url: \"%s\" is http://; readers reach herald serve through a TLS proxy, so write https:// (http:// is only for loopback tests)", u);
	if (!c->unsub.url && asprintf(&c->unsub.url, "%s/unsubscribe?e={{email}}&t={{token}}", u) < 0)
		return bad(x, s, "out of memory");
	return 0;
}

static int web_proxies(struct ctx *x, struct config *c)
{
	config_setting_t *s, *e;
	int n, rc = string_list(x, "web.trusted_proxies",
				"a list of IP addresses, e.g. [ \"127.0.0.1\" ]", &s, &n);
	if (rc || !n)
		return rc;
	c->web.trusted_proxies = calloc((size_t)n + 1, sizeof *c->web.trusted_proxies);
	if (!c->web.trusted_proxies)
		return bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = string_elem(s, i, &e);
		unsigned char bin[16];
		if (!v || inet_pton(v && strchr(v, ':') ? AF_INET6 : AF_INET, v, bin) != 1)
			return bad(x, s, "web.trusted_proxies: \"%s\" is not an IP address", v ? v : "(not a string)");
		if (!(c->web.trusted_proxies[c->web.n_trusted_proxies++] = strdup(v)))
			return bad(x, s, "out of memory");
	}
	return 0;
}

static int web_settings(struct ctx *x, struct config *c)
{
	int rc;
	if ((rc = get_str(x, "web.listen", &c->web.listen)) ||
	    (rc = get_str(x, "web.base_url", &c->web.base_url)) ||
	    (rc = get_bool(x, "web.signup", &c->web.signup)) ||
	    (rc = get_bool(x, "web.archive", &c->web.archive)) ||
	    (rc = get_str(x, "web.posts", &c->web.posts)) || (rc = resolve(x, &c->web.posts)) ||
	    (rc = get_int(x, "web.connections", &c->web.connections, 1, 100000)) ||
	    (rc = get_int(x, "web.connections_per_client", &c->web.connections_per_client, 1, 100000)))
		return rc;
	if ((rc = web_listen(x, c)) || (rc = web_base_url(x, c)) || (rc = web_proxies(x, c)))
		return rc;
	if (c->web.signup && !c->web.base_url)
		return bad(x, config_lookup(&x->cf, "web.signup"),
			   "web.signup needs web.base_url: the confirmation mail links there");
	return 0;
}

static void web_free(struct config *c)
{
	free(c->web.listen);
	free(c->web.host);
	free(c->web.base_url);
	free(c->web.posts);
	for (size_t i = 0; i < c->web.n_trusted_proxies; i++)
		free(c->web.trusted_proxies[i]);
	free(c->web.trusted_proxies);
}
/* ---- end web ----------------------------------------------------------- */

static int load(struct ctx *x, struct config *c)
{
	int rc = 0;
#define STR(k, f) if ((rc = get_str(x, k, &c->f))) return rc
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
	if ((rc = relays_settings(x, c)) ||
	    (rc = get_num(x, "rate.per_second", &c->rate.per_second, 0, 1e6)) ||
	    (rc = get_long(x, "rate.per_minute", &c->rate.per_minute, 0, 100000000)) ||
	    (rc = get_long(x, "rate.per_hour", &c->rate.per_hour, 0, 100000000)) ||
	    (rc = get_long(x, "rate.per_day", &c->rate.per_day, 0, 100000000)) ||
	    (rc = get_int(x, "rate.burst", &c->rate.burst, 1, 100000)) ||
	    (rc = get_int(x, "retry.attempts", &c->retry.attempts, 1, 100)) ||
	    (rc = get_num(x, "retry.initial_delay", &c->retry.initial_delay, 0, 86400)) ||
	    (rc = get_num(x, "retry.max_delay", &c->retry.max_delay, 0, 86400)) ||
	    (rc = get_int(x, "bounce.soft_limit", &c->bounce.soft_limit, 1, 1000)) ||
	    (rc = get_bool(x, "unsafe_html", &c->unsafe_html)) ||
	    (rc = get_bool(x, "merge_code", &c->merge_code)))
		return rc;
	if ((rc = list_settings(x, c)) || (rc = from_addresses(x, c)) ||
	    (rc = test_addresses(x, c)) || (rc = dkim_settings(x, c)) ||
	    (rc = extra_headers(x, c)) ||
	    (rc = mailbox_settings(x, "bounce.mailbox", &c->bounce.mailbox)) ||
	    (rc = mailbox_settings(x, "unsubscribe.mailbox", &c->unsub.mailbox)))
		return rc;
	if ((rc = web_settings(x, c)))
		return rc;
	if (c->unsub.mailto) {
		char why[100];
		if (addr_valid(c->unsub.mailto, why, sizeof why) < 0)
			return bad(x, config_lookup(&x->cf, "unsubscribe.mailto"),
				   "unsubscribe.mailto: \"%s\" is not an address (%s)", c->unsub.mailto, why);
	}
	if (c->unsub.url && strncmp(c->unsub.url, "https://", 8) &&
	    strncmp(c->unsub.url, "http://", 7))
		return bad(x, config_lookup(&x->cf, "unsubscribe.url"),
			   "unsubscribe.url: expected an https:// URL, found \"%s\"", c->unsub.url);
	if ((rc = resolve(x, &c->subscribers)) || (rc = resolve(x, &c->templates)) ||
	    (rc = resolve(x, &c->state_dir)) ||
	    (rc = resolve(x, &c->dkim.key_file)))
		return rc;
	const char *templates_what;
	if ((rc = templates_default(x, c, &templates_what)) || (rc = origins(x, c, templates_what)))
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
	if (relay_defaults(&c->smtp) < 0)
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

/* libconfig keeps its own copy of every string until config_destroy:
 * the passwords among them are wiped first. */
static void wipe_string(config_setting_t *s)
{
	if (s && config_setting_type(s) == CONFIG_TYPE_STRING) {
		char *v = (char *)config_setting_get_string(s);
		if (v)
			explicit_bzero(v, strlen(v));
	}
}

static void wipe_secrets(struct ctx *x)
{
	static const char *const keys[] = {"smtp.password", "bounce.mailbox.password",
					   "unsubscribe.mailbox.password"};
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
		wipe_string(config_lookup(&x->cf, keys[i]));
	config_setting_t *list = config_lookup(&x->cf, "smtp");
	int n = list && config_setting_type(list) == CONFIG_TYPE_LIST ? config_setting_length(list) : 0;
	for (int i = 0; i < n; i++) {
		config_setting_t *g = config_setting_get_elem(list, (unsigned)i);
		if (config_setting_type(g) == CONFIG_TYPE_GROUP)
			wipe_string(config_setting_lookup(g, "password"));
	}
}

int config_load(struct config *c, const char *path, char *err, size_t errlen)
{
	memset(c, 0, sizeof *c);
	if (!path)
		path = getenv("HERALD_CONFIG");
	if (!path || !*path)
		path = "herald.conf";
	struct ctx x = {.file = path, .err = err, .errlen = errlen};
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
		wipe_secrets(&x);
		config_destroy(&x.cf);
		free(x.dir);
		return CONFIG_BAD;
	}
	int rc = x.dir ? check_keys(&x, config_root_setting(&x.cf), "") : CONFIG_BAD;
	if (rc == 0)
		rc = load(&x, c);
	free(x.dir);
	wipe_secrets(&x);
	config_destroy(&x.cf);
	return rc;
}

/* what: "smtp" or "bounce.mailbox", for the messages. */
static int password_from(const char *what, const char *env_name, const char *command,
			 const char *literal, const char *const *strip, size_t nstrip,
			 long timeout, char **out, char *err, size_t errlen)
{
	*out = NULL;
	/* No core file can hold what this returns: main() turned core dumps
	 * off before any command ran. */
	if (command) {
		char key[64];
		snprintf(key, sizeof key, "%s.password_command", what);
		int k = passcmd_run(command, key, strip, nstrip, (int)timeout, out, err, errlen);
		return k == PASSCMD_OK ? 0 : k == PASSCMD_TIMEDOUT ? CONFIG_TEMP : CONFIG_BAD;
	}
	if (literal) {
		*out = strdup(literal);
		return *out ? 0 : set_err(err, errlen, CONFIG_BAD, "out of memory");
	}
	const char *env = env_name ? getenv(env_name) : NULL;
	if (!env || !*env)
		return set_err(err, errlen, CONFIG_BAD,
			       "%s: set $%s, or %s.password_command",
			       strcmp(what, "smtp") ? what : "smtp.username is set but no password",
			       env_name ? env_name : "(none)", what);
	*out = strdup(env);
	return *out ? 0 : set_err(err, errlen, CONFIG_BAD, "out of memory");
}

size_t config_secret_vars(const struct config *c, const char **out)
{
	size_t n = 0;
	out[n++] = c->unsub.secret_env;
	out[n++] = c->bounce.mailbox.password_env;
	out[n++] = c->unsub.mailbox.password_env;
	for (size_t i = 0; i < config_nrelays(c); i++)
		out[n++] = config_relay(c, i)->password_env;
	return n;
}

int config_relay_password(const struct config *c, const struct smtp_conf *r, char **out,
			  char *err, size_t errlen)
{
	*out = NULL;
	if (!r->username)
		return 0;
	const char *strip[CONFIG_SECRET_VARS_MAX];
	size_t n = config_secret_vars(c, strip);
	return password_from("smtp", r->password_env, r->password_command, r->password, strip, n,
			     r->timeout, out, err, errlen);
}

int config_password(const struct config *c, char **out, char *err, size_t errlen)
{
	return config_relay_password(c, &c->smtp, out, err, errlen);
}

int config_mailbox_password(const struct config *c, const struct mailbox_conf *m,
			    const char *what, char **out, char *err, size_t errlen)
{
	const char *strip[CONFIG_SECRET_VARS_MAX];
	size_t n = config_secret_vars(c, strip);
	return password_from(what, m->password_env, m->password_command, m->password, strip, n,
			     m->timeout, out, err, errlen);
}

int config_exitcode(int rc)
{
	return rc == CONFIG_OK ? EX_OK : rc == CONFIG_NOFILE ? EX_NOINPUT
	     : rc == CONFIG_TEMP ? EX_TEMPFAIL : EX_CONFIG;
}

int config_secret(const struct config *c, const char **out, char *err, size_t errlen)
{
	const char *v = c->unsub.secret_env ? getenv(c->unsub.secret_env) : NULL;
	if (!v || strlen(v) < 8)
		return set_err(err, errlen, CONFIG_BAD,
			       "$%s must hold the unsubscribe-token secret (8 characters or more), e.g. export %s=$(openssl rand -hex 32)",
			       c->unsub.secret_env, c->unsub.secret_env);
	*out = v;
	return 0;
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
		relay_free((struct smtp_conf *)config_relay(c, i));
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
	web_free(c);
	memset(c, 0, sizeof *c);
}
