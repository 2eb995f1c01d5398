/* config_int: what the files of the config reader share (config.c and
 * config_relays.c, config_web.c, config_secrets.c, config_paths.c): the
 * reading context, FILE:LINE errors (cfg_bad), the typed getters, path
 * resolution. Private to src/input/config*.c; the rest of herald uses
 * config.h. */
#ifndef HERALD_CONFIG_INT_H
#define HERALD_CONFIG_INT_H
#include <libconfig.h>
#include <stddef.h>
#include "input/config.h"

/* One config_load: the parsed file, where it is, where errors go. */
struct cfg_ctx {
	config_t cf;
	const char *file;
	char *dir;
	char *err;
	size_t errlen;
};

__attribute__((format(printf, 3, 4))) int cfg_bad(struct cfg_ctx *x, const config_setting_t *s, const char *fmt, ...);
int cfg_bool_at(struct cfg_ctx *x, config_setting_t *s, const char *key, int *out);
int cfg_get_bool(struct cfg_ctx *x, const char *key, int *out);
int cfg_get_int(struct cfg_ctx *x, const char *key, int *out, int min, int max);
int cfg_get_str(struct cfg_ctx *x, const char *key, char **out);
int cfg_int_at(struct cfg_ctx *x, config_setting_t *s, const char *key, int *out, int min,
		  int max);
int cfg_long_at(struct cfg_ctx *x, config_setting_t *s, const char *key, long *out,
		   long min, long max);
int cfg_num_at(struct cfg_ctx *x, config_setting_t *s, const char *key, double *out,
		  double min, double max);
int cfg_origins(struct cfg_ctx *x, struct config *c, const char *templates_what);
int cfg_private_at(struct cfg_ctx *x, config_setting_t *s, const char *key, const char *password);
int cfg_private_password(struct cfg_ctx *x, const char *key, const char *password);
int cfg_relay_defaults(struct smtp_conf *r);
void cfg_relay_free(struct smtp_conf *r);
int cfg_relays_settings(struct cfg_ctx *x, struct config *c);
int cfg_resolve(struct cfg_ctx *x, char **path);
const char *cfg_source_of(const struct cfg_ctx *x, const config_setting_t *s, char *buf,
			     size_t len);
int cfg_starttls_at(struct cfg_ctx *x, config_setting_t *s, const char *key,
		       enum starttls_mode *out);
int cfg_str_at(struct cfg_ctx *x, config_setting_t *s, const char *key, char **out);
const char *cfg_string_elem(config_setting_t *s, int i, config_setting_t **e);
int cfg_string_list(struct cfg_ctx *x, const char *key, const char *expected,
		       config_setting_t **out, int *n);
int cfg_templates_default(struct cfg_ctx *x, struct config *c, const char **what);
void cfg_web_free(struct config *c);
int cfg_web_settings(struct cfg_ctx *x, struct config *c);
void cfg_wipe_secrets(struct cfg_ctx *x);
#endif
