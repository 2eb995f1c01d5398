/* config: the libconfig file -> a typed struct with defaults.
 *
 * Errors name the file and line (config_setting_source_line). Relative
 * paths are resolved against the directory of the config file, so cron
 * jobs behave the same whatever their working directory. Secrets are not
 * read here: config_password() and config_secret() fetch them on demand.
 *
 * Ownership: every string in struct config is owned by it; config_free. */
#ifndef HERALD_CONFIG_H
#define HERALD_CONFIG_H
#include <stddef.h>

enum starttls_mode { STARTTLS_REQUIRED, STARTTLS_TRY, STARTTLS_NEVER };

/* A mailbox herald reads: bounce.mailbox, unsubscribe.mailbox. */
struct mailbox_conf {
	char *url;             /* the SOURCE when the command line gives none */
	char *username;        /* when the URL names no user */
	char *password_env;
	char *password_command;
	char *password;
	char *ca_file;
	char *move_to;         /* folder for processed messages (imap, maildir) */
	enum starttls_mode starttls;
	long timeout;
};

struct rate_conf {
	double per_second;
	long per_minute, per_hour, per_day;
	int burst;
};

/* At most this many relays in smtp = ( ... ). */
#define CONFIG_RELAYS_MAX 16

/* One relay: smtp = { ... } (today's form), or one entry of a list of
 * them, smtp = ( { ... }, { ... } ). */
struct smtp_conf {
	char *name;            /* `name`, else host:port from the url */
	char *url;
	enum starttls_mode starttls;
	char *username;
	char *password_env;
	char *password_command;
	char *password;
	char *ca_file;
	long timeout;
	int connections;
	char *helo;
	int weight;            /* its share of the readers (1 to 1000) */
	int pipelining;        /* 0: never pipeline to it, even when it
				  offers PIPELINING (default 1) */
	/* Its own windows (per_second ... burst in the entry); all 0: none.
	 * The top-level rate stays a cap over all relays together. */
	struct rate_conf rate;
	char *where;           /* "FILE:LINE" of the entry, for messages */
};

struct config {
	char *path;
	char *from;            /* "Name <addr>" as written */
	char *from_name;       /* parsed display name, "" if none */
	char *from_addr;       /* parsed addr-spec */
	char *reply_to;
	char *list_id;         /* "Name <id>" */
	char *list_name;       /* display part of list_id, else from_name */
	char *subscribers;
	char *templates;
	char *template_name;
	char *state_dir;
	struct {
		char *url;
		char *mailto;
		char *secret_env;
		struct mailbox_conf mailbox;
	} unsub;
	struct smtp_conf smtp;  /* the relay, or the first of a list */
	/* smtp = ( {...}, {...} ): the relays after the first (config_relay) */
	struct smtp_conf *more_relays;
	size_t n_more_relays;
	struct rate_conf rate;
	struct {
		int attempts;
		double initial_delay, max_delay;
	} retry;
	struct {
		int soft_limit;
		char *return_path;
		struct mailbox_conf mailbox;
	} bounce;
	struct {               /* all three set, or none: no signing */
		char *domain;  /* d=, e.g. the From domain */
		char *selector;/* s=: the key is at <selector>._domainkey.<domain> */
		char *key_file;/* PEM RSA private key, resolved like other paths */
	} dkim;
	char **test_to;
	size_t n_test_to;
	int unsafe_html;       /* keep raw HTML of posts (tagfilter still on) */
	/* headers = [ "Name: value", ... ]: extra header lines. The name is
	 * checked here; the value is a template whose fields message.c
	 * checks once it knows the list's columns; where is "FILE:LINE". */
	struct config_header { char *name, *value, *where; } *headers;
	size_t n_headers;
	char *postal_address;  /* for the template footers (CAN-SPAM) */
	int merge_code;        /* merge {{fields}} in code spans and blocks too */
	/* Lists as spreadsheets export them: subscribers_delimiter is one of
	 * , ; TAB | (default ','); language is the BCP 47 tag templates get
	 * as {{language}} (default "en"). */
	char subs_delim;
	char *language;
	/* How subscribers, templates, template and state_dir got their
	 * values, for the message a missing file gets: config_origin(). */
	char *origin[4];
	/* herald serve (web.*): see config.example */
	struct {
		char *listen;          /* "HOST:PORT", an IP literal ([v6]); port 0: any */
		char *host;            /* parsed from listen, without brackets */
		int port;
		char *base_url;        /* "https://host[/path]", no trailing slash, or NULL */
		int signup, archive;
		char *posts;           /* the posts directory the archive lists */
		char **trusted_proxies;/* IP literals whose X-Forwarded-For is believed */
		size_t n_trusted_proxies;
		int connections;       /* open at once, in all (1024) */
		int connections_per_client; /* per IPv4 address or IPv6 /64, trusted proxies aside (16) */
	} web;
};

/* CONFIG_TEMP: a password_command timed out (the next run may do better). */
enum { CONFIG_OK = 0, CONFIG_BAD = -1, CONFIG_NOFILE = -2, CONFIG_TEMP = -3 };
/* The sysexits.h code for a CONFIG_* result: 0, 66, 75 or 78. */
int config_exitcode(int rc);

/* path NULL: $HERALD_CONFIG, else ./herald.conf. */
int config_load(struct config *c, const char *path, char *err, size_t errlen);
void config_free(struct config *c);
/* The SMTP password of the (first) relay from password_env,
 * password_command or password; *out is NULL when no username is
 * configured. Caller wipes and frees. */
int config_password(const struct config *c, char **out, char *err,
		    size_t errlen);
/* How many relays, and relay i (0: c->smtp). */
size_t config_nrelays(const struct config *c);
const struct smtp_conf *config_relay(const struct config *c, size_t i);
/* config_password for one relay (its username and password settings). */
int config_relay_password(const struct config *c, const struct smtp_conf *r, char **out,
			  char *err, size_t errlen);
/* The names of the variables that hold herald's secrets (unsub.secret_env,
 * each relay's and mailbox's password_env; NULL where unset) into out,
 * which has room for CONFIG_SECRET_VARS_MAX: what a program herald runs
 * (util/child.c, which drops HERALD* itself) must not see. Returns how
 * many. */
#define CONFIG_SECRET_VARS_MAX (3 + CONFIG_RELAYS_MAX)
size_t config_secret_vars(const struct config *c, const char **out);
/* The password of a mailbox (what: "bounce.mailbox"), from password_env,
 * password_command or password. Caller wipes and frees. */
int config_mailbox_password(const struct config *c, const struct mailbox_conf *m, const char *what,
			    char **out, char *err, size_t errlen);
/* The data directory built in (HERALD_DATADIR): `templates` defaults to
 * the templates/ beside the config when there is one, else to
 * DATADIR/templates, the ones installed with herald. */
const char *config_datadir(void);
/* For messages about a path setting (key "subscribers", "templates",
 * "template" or "state_dir"): `subscribers = "x.csv" in FILE:LINE`, or
 * `subscribers is not set in FILE: the default is ...`; NULL for another
 * key or a struct config not made by config_load. */
const char *config_origin(const struct config *c, const char *key);
/* Appends " (ORIGIN)" to the message in err: an error about the path
 * `key` names, made by a module that knows no config. */
void config_name_setting(const struct config *c, const char *key, char *err, size_t errlen);
/* 0 if the file `key` names can be read; else CONFIG_NOFILE (missing) or
 * CONFIG_BAD, and err says "PATH: why (ORIGIN; how to fix it)". For
 * "subscribers", before the list is opened, so that a person learns
 * which setting to change. */
int config_readable(const struct config *c, const char *key, char *err, size_t errlen);
/* The unsubscribe-token secret from the environment variable secret_env. */
int config_secret(const struct config *c, const char **out, char *err,
		  size_t errlen);
#endif
