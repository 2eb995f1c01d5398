/* config_secrets: where passwords and the token secret come from (an environment
 * variable, a command through util/child.c, a private file), the mode check of
 * every file that holds one, and wiping libconfig's copies. */
#include "input/config_int.h"
#include "util/passcmd.h"
#include "util/buf.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A password sitting in a file must not be readable by others: the file
 * that supplied it, which is not the main one when it was @include'd. */
int cfg_private_at(struct cfg_ctx *x, config_setting_t *s, const char *key, const char *password)
{
	struct stat st;
	char full[4096];
	const char *path = cfg_source_of(x, s, full, sizeof full);
	if (password && stat(path, &st) == 0 && (st.st_mode & 077))
		return cfg_bad(x, s, "%s is set but %s is readable by others; run: chmod 600 %s",
			   key, path, path);
	return 0;
}

int cfg_private_password(struct cfg_ctx *x, const char *key, const char *password)
{
	return cfg_private_at(x, config_lookup(&x->cf, key), key, password);
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

void cfg_wipe_secrets(struct cfg_ctx *x)
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
