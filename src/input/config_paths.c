/* config_paths: paths in the config, resolved against the config's directory;
 * the data directory built in (HERALD_DATADIR); how each path setting got its
 * value (config_origin), for the messages about a missing file. */
#include "input/config_int.h"
#include "util/buf.h"
#include <errno.h>
#include <libetpan/libetpan.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Against the config's directory; no "dir//file" in what is printed,
 * whether the config sits in / or a setting ends in a slash. */
int cfg_resolve(struct cfg_ctx *x, char **path)
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
int cfg_templates_default(struct cfg_ctx *x, struct config *c, const char **what)
{
	struct stat st;
	*what = "the templates/ directory beside it";
	if (config_lookup(&x->cf, "templates") || (stat(c->templates, &st) == 0 && S_ISDIR(st.st_mode)))
		return 0;
	*what = NULL;
	free(c->templates);
	if (asprintf(&c->templates, "%s/templates", config_datadir()) < 0) {
		c->templates = NULL;
		return cfg_bad(x, NULL, "out of memory");
	}
	return 0;
}

int cfg_origins(struct cfg_ctx *x, struct config *c, const char *templates_what)
{
	char dflt[4200];
	for (size_t i = 0; i < sizeof tracked / sizeof *tracked; i++) {
		config_setting_t *s = config_lookup(&x->cf, tracked[i]);
		char full[4096];
		int n;
		if (s) {
			n = asprintf(&c->origin[i], "%s = \"%s\" in %s:%d", tracked[i],
				     config_setting_get_string(s), cfg_source_of(x, s, full, sizeof full),
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
			return cfg_bad(x, NULL, "out of memory");
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
