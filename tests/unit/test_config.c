/* Unit tests for config.c: each test writes a config file (mkstemp) into
 * its own temporary directory, loads it, and compares values and error
 * messages whole, since main.c prints them as they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "input/config.h"
#include "util/addr.h"

struct fixture {
	char dir[64];   /* a fresh mkdtemp directory */
	char path[128]; /* the config file in it */
	char cwd[4096]; /* restored by the teardown */
	struct config c;
	int loaded;
	char err[1024];
	char want[1024];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof *fx);

	if (!fx)
		return -1;
	strcpy(fx->dir, "/tmp/herald-cfg-XXXXXX");
	if (!mkdtemp(fx->dir) || !getcwd(fx->cwd, sizeof fx->cwd)) {
		free(fx);
		return -1;
	}
	*state = fx;
	/* Each test sets the variables it needs. */
	unsetenv("HERALD_CONFIG");
	unsetenv("HERALD_SECRET");
	unsetenv("HERALD_SMTP_PASSWORD");
	unsetenv("GARDEN_PW");
	return 0;
}

/* Runs even when an assertion failed: nothing outlives the test. */
static int teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx->loaded)
		config_free(&fx->c);
	if (chdir(fx->cwd) != 0)
		return -1;
	if (fx->path[0])
		unlink(fx->path);
	rmdir(fx->dir);
	free(fx);
	return 0;
}

/* Writes text to a new file in the test's directory, with mode. */
static void write_conf_mode(struct fixture *fx, const char *text, mode_t mode)
{
	if (fx->path[0])
		unlink(fx->path);
	snprintf(fx->path, sizeof fx->path, "%s/herald-XXXXXX", fx->dir);
	int fd = mkstemp(fx->path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static void write_conf(struct fixture *fx, const char *text)
{
	write_conf_mode(fx, text, 0600);
}

static int load(struct fixture *fx, const char *path)
{
	if (fx->loaded)
		config_free(&fx->c);
	fx->err[0] = '\0';
	int rc = config_load(&fx->c, path, fx->err, sizeof fx->err);

	fx->loaded = 1; /* config_free is safe after a failed load too */
	return rc;
}

static void load_ok(struct fixture *fx, const char *text)
{
	write_conf(fx, text);
	if (load(fx, fx->path) != CONFIG_OK)
		fail_msg("config_load: %s", fx->err);
	assert_string_equal(fx->err, "");
}

/* Loads text and expects CONFIG_BAD with err == "PATH" + suffix. */
static void load_bad(struct fixture *fx, const char *text, const char *suffix)
{
	write_conf(fx, text);
	assert_int_equal(load(fx, fx->path), CONFIG_BAD);
	snprintf(fx->want, sizeof fx->want, "%s%s", fx->path, suffix);
	assert_string_equal(fx->err, fx->want);
}

/* "DIR/rel" for the test's directory. */
static const char *in_dir(struct fixture *fx, const char *rel)
{
	static char buf[256];

	snprintf(buf, sizeof buf, "%s/%s", fx->dir, rel);
	return buf;
}

#define FROM "from = \"Joy <joy@example.org>\";\n"

static void test_defaults(void **state)
{
	struct fixture *fx = *state;
	const struct config *c = &fx->c;

	load_ok(fx, FROM);
	assert_string_equal(c->path, fx->path);
	assert_string_equal(c->from, "Joy <joy@example.org>");
	assert_string_equal(c->from_name, "Joy");
	assert_string_equal(c->from_addr, "joy@example.org");
	assert_null(c->reply_to);
	assert_null(c->list_id);
	assert_string_equal(c->list_name, "Joy");
	assert_string_equal(c->subscribers, in_dir(fx, "subscribers.csv"));
	/* No templates/ beside the config: the installed ones. */
	char installed[4200];
	snprintf(installed, sizeof installed, "%s/templates", config_datadir());
	assert_string_equal(c->templates, installed);
	assert_string_equal(c->template_name, "default");
	assert_string_equal(c->state_dir, in_dir(fx, "state"));
	assert_null(c->unsub.url);
	assert_null(c->unsub.mailto);
	assert_string_equal(c->unsub.secret_env, "HERALD_SECRET");
	assert_string_equal(c->smtp.url, "smtp://127.0.0.1:25");
	assert_int_equal(c->smtp.starttls, STARTTLS_REQUIRED);
	assert_null(c->smtp.username);
	assert_string_equal(c->smtp.password_env, "HERALD_SMTP_PASSWORD");
	assert_null(c->smtp.password_command);
	assert_null(c->smtp.password);
	assert_null(c->smtp.ca_file);
	assert_int_equal(c->smtp.timeout, 30);
	assert_int_equal(c->smtp.connections, 1);
	assert_null(c->smtp.helo);
	assert_true(c->rate.per_second == 0);
	assert_int_equal(c->rate.per_minute, 0);
	assert_int_equal(c->rate.per_hour, 0);
	assert_int_equal(c->rate.per_day, 0);
	assert_int_equal(c->rate.burst, 1);
	assert_int_equal(c->retry.attempts, 4);
	assert_true(c->retry.initial_delay == 30);
	assert_true(c->retry.max_delay == 900);
	assert_int_equal(c->bounce.soft_limit, 3);
	assert_null(c->bounce.return_path);
	assert_null(c->test_to);
	assert_int_equal(c->n_test_to, 0);
	assert_null(c->dkim.domain);
	assert_null(c->dkim.selector);
	assert_null(c->dkim.key_file);
}

static const char full[] =
	"# every setting\n"
	"from = \"Garden News <news@example.org>\";\n"
	"reply_to = \"Marta <marta@example.org>\";\n"
	"list_id = \"Garden List <garden.example.org>\";\n"
	"subscribers = \"lists/subs.csv\";\n"
	"templates = \"/srv/herald/templates\";\n"
	"template = \"fancy\";\n"
	"state_dir = \"../state\";\n"
	"unsubscribe = {\n"
	"  url = \"https://example.org/u?e={{email}}&t={{token}}\";\n"
	"  mailto = \"unsub@example.org\";\n"
	"  secret_env = \"GARDEN_SECRET\";\n"
	"};\n"
	"smtp = {\n"
	"  url = \"smtps://mail.example.org:465\";\n"
	"  starttls = \"never\";\n"
	"  username = \"news\";\n"
	"  password_env = \"GARDEN_PW\";\n"
	"  password_command = \"pass show smtp\";\n"
	"  ca_file = \"ca.pem\";\n"
	"  timeout = 120;\n"
	"  connections = 4;\n"
	"  helo = \"news.example.org\";\n"
	"};\n"
	"rate = { per_second = 2.5; per_minute = 100; per_hour = 2000;\n"
	"         per_day = 10000; burst = 5; };\n"
	"retry = { attempts = 6; initial_delay = 10.5; max_delay = 600; };\n"
	"bounce = { soft_limit = 5; return_path = \"b+{{verp}}@example.org\"; };\n"
	"test = { to = [\"a@example.org\", \"b@example.net\"]; };\n"
	"dkim = { domain = \"example.org\"; selector = \"news-2026\";\n"
	"         key_file = \"keys/dkim.pem\"; };\n";

static void test_full_file(void **state)
{
	struct fixture *fx = *state;
	const struct config *c = &fx->c;

	load_ok(fx, full);
	assert_string_equal(c->from, "Garden News <news@example.org>");
	assert_string_equal(c->from_name, "Garden News");
	assert_string_equal(c->from_addr, "news@example.org");
	assert_string_equal(c->reply_to, "Marta <marta@example.org>");
	assert_string_equal(c->list_id, "Garden List <garden.example.org>");
	assert_string_equal(c->list_name, "Garden List");
	assert_string_equal(c->subscribers, in_dir(fx, "lists/subs.csv"));
	assert_string_equal(c->templates, "/srv/herald/templates");
	assert_string_equal(c->template_name, "fancy");
	assert_string_equal(c->state_dir, in_dir(fx, "../state"));
	assert_string_equal(c->unsub.url,
			    "https://example.org/u?e={{email}}&t={{token}}");
	assert_string_equal(c->unsub.mailto, "unsub@example.org");
	assert_string_equal(c->unsub.secret_env, "GARDEN_SECRET");
	assert_string_equal(c->smtp.url, "smtps://mail.example.org:465");
	assert_int_equal(c->smtp.starttls, STARTTLS_NEVER);
	assert_string_equal(c->smtp.username, "news");
	assert_string_equal(c->smtp.password_env, "GARDEN_PW");
	assert_string_equal(c->smtp.password_command, "pass show smtp");
	assert_null(c->smtp.password);
	assert_string_equal(c->smtp.ca_file, in_dir(fx, "ca.pem"));
	assert_int_equal(c->smtp.timeout, 120);
	assert_int_equal(c->smtp.connections, 4);
	assert_string_equal(c->smtp.helo, "news.example.org");
	assert_true(c->rate.per_second == 2.5);
	assert_int_equal(c->rate.per_minute, 100);
	assert_int_equal(c->rate.per_hour, 2000);
	assert_int_equal(c->rate.per_day, 10000);
	assert_int_equal(c->rate.burst, 5);
	assert_int_equal(c->retry.attempts, 6);
	assert_true(c->retry.initial_delay == 10.5);
	assert_true(c->retry.max_delay == 600);
	assert_int_equal(c->bounce.soft_limit, 5);
	assert_string_equal(c->bounce.return_path, "b+{{verp}}@example.org");
	assert_int_equal(c->n_test_to, 2);
	assert_string_equal(c->test_to[0], "a@example.org");
	assert_string_equal(c->test_to[1], "b@example.net");
	assert_null(c->test_to[2]);
	assert_string_equal(c->dkim.domain, "example.org");
	assert_string_equal(c->dkim.selector, "news-2026");
	assert_string_equal(c->dkim.key_file, in_dir(fx, "keys/dkim.pem"));
}

/* dkim takes all three keys or none, and DNS names. */
static void test_dkim_errors(void **state)
{
	struct fixture *fx = *state;

	load_bad(fx, FROM "dkim = {\n  domain = \"example.org\";\n"
		 "  key_file = \"k.pem\";\n};\n",
		 ":2: dkim.selector is missing: dkim needs domain, selector "
		 "and key_file");
	load_bad(fx, FROM "dkim = { selector = \"s\"; };\n",
		 ":2: dkim.domain is missing: dkim needs domain, selector and "
		 "key_file");
	load_bad(fx, FROM "dkim = { domain = \"example.org\"; selector = \"s\";"
		 "\n  key_file = \"\"; };\n",
		 ":2: dkim.key_file is missing: dkim needs domain, selector "
		 "and key_file");
	load_bad(fx, FROM "dkim = {\n  domain = \"exa mple.org\";\n"
		 "  selector = \"s\"; key_file = \"k.pem\"; };\n",
		 ":3: dkim.domain: \"exa mple.org\" is not a DNS name");
	load_bad(fx, FROM "dkim = { domain = \"example..org\"; selector = \"s\";"
		 " key_file = \"k.pem\"; };\n",
		 ":2: dkim.domain: \"example..org\" is not a DNS name");
	load_bad(fx, FROM "dkim = { domain = \"example.org\";\n"
		 "  selector = \"s/../x\"; key_file = \"k.pem\"; };\n",
		 ":3: dkim.selector: \"s/../x\" is not a DNS name");
	load_bad(fx, FROM "dkim = { domain = \"example.org\"; selector = \".s\";"
		 " key_file = \"k.pem\"; };\n",
		 ":2: dkim.selector: \".s\" is not a DNS name");
}

static void test_starttls_values(void **state)
{
	struct fixture *fx = *state;

	load_ok(fx, FROM "smtp = { starttls = \"try\"; };\n");
	assert_int_equal(fx->c.smtp.starttls, STARTTLS_TRY);
	load_ok(fx, FROM "smtp = { starttls = \"required\"; };\n");
	assert_int_equal(fx->c.smtp.starttls, STARTTLS_REQUIRED);
	load_bad(fx, FROM "smtp = {\n  url = \"smtp://h\";\n"
		 "  starttls = \"maybe\";\n};\n",
		 ":4: smtp.starttls: expected \"required\", \"try\" or "
		 "\"never\", found \"maybe\"");
	load_bad(fx, FROM "smtp = { starttls = true; };\n",
		 ":2: smtp.starttls: expected a string in double quotes");
}

/* http:// base_url only where its host's addresses are loopback, judged
 * by address (util/addr.c), not by how the host is spelt. */
static void test_base_url_loopback(void **state)
{
	struct fixture *fx = *state;

	load_ok(fx, FROM "web = { base_url = \"http://127.0.0.1:8025\"; };\n");
	load_ok(fx, FROM "web = { base_url = \"http://localhost/news\"; };\n");
	load_ok(fx, FROM "web = { base_url = \"http://[::1]:8025\"; };\n");
	load_ok(fx, FROM "web = { base_url = \"http://127.3.4.5\"; };\n");
	const char *remote[] = {"http://127.0.0.1.example.net", "http://localhost.example.net:80",
				"http://[::1].example.net", "http://[::1", "http://192.0.2.1"};
	for (size_t i = 0; i < sizeof remote / sizeof *remote; i++) {
		char text[256];
		snprintf(text, sizeof text, FROM "web = { base_url = \"%s\"; };\n", remote[i]);
		write_conf(fx, text);
		assert_int_equal(load(fx, fx->path), CONFIG_BAD);
		assert_non_null(strstr(fx->err, "is http://"));
	}
}

/* Relative paths are resolved against the config file's directory, also
 * when the file is named relative to the working directory. */
static void test_relative_paths(void **state)
{
	struct fixture *fx = *state;

	load_ok(fx, FROM "subscribers = \"a/b.csv\";\n"
		"templates = \"/abs/t\";\nstate_dir = \"./s\";\n"
		"smtp = { ca_file = \"../ca.pem\"; };\n");
	assert_string_equal(fx->c.subscribers, in_dir(fx, "a/b.csv"));
	assert_string_equal(fx->c.templates, "/abs/t");
	assert_string_equal(fx->c.state_dir, in_dir(fx, "./s"));
	assert_string_equal(fx->c.smtp.ca_file, in_dir(fx, "../ca.pem"));

	/* From inside the directory, by its bare name. */
	assert_int_equal(chdir(fx->dir), 0);
	const char *base = strrchr(fx->path, '/') + 1;

	assert_int_equal(load(fx, base), CONFIG_OK);
	assert_string_equal(fx->c.path, base);
	assert_string_equal(fx->c.subscribers, "./a/b.csv");
	assert_string_equal(fx->c.templates, "/abs/t");
}

/* With no path, $HERALD_CONFIG names the file. */
static void test_env_path(void **state)
{
	struct fixture *fx = *state;

	write_conf(fx, FROM "template = \"env\";\n");
	setenv("HERALD_CONFIG", fx->path, 1);
	int rc = load(fx, NULL);

	unsetenv("HERALD_CONFIG");
	assert_int_equal(rc, CONFIG_OK);
	assert_string_equal(fx->c.path, fx->path);
	assert_string_equal(fx->c.template_name, "env");
}

static void test_missing_file(void **state)
{
	struct fixture *fx = *state;

	assert_int_equal(load(fx, in_dir(fx, "nope.conf")), CONFIG_NOFILE);
	snprintf(fx->want, sizeof fx->want,
		 "%s/nope.conf: No such file or directory (use -c FILE, or "
		 "start a newsletter here with: herald init)", fx->dir);
	assert_string_equal(fx->err, fx->want);
}

/* templates: the key, else templates/ beside the config, else the data
 * directory; each path key's origin says which, for the messages. */
static void test_templates_origin(void **state)
{
	struct fixture *fx = *state;
	char want[4400];

	load_ok(fx, FROM "template = \"plain\";\n");
	snprintf(want, sizeof want, "templates is not set in %s and no templates/ directory is "
		 "beside it: the default is herald's own, in %s/templates", fx->path, config_datadir());
	assert_string_equal(config_origin(&fx->c, "templates"), want);
	snprintf(want, sizeof want, "template = \"plain\" in %s:2", fx->path);
	assert_string_equal(config_origin(&fx->c, "template"), want);
	snprintf(want, sizeof want, "subscribers is not set in %s: the default is subscribers.csv "
		 "beside it", fx->path);
	assert_string_equal(config_origin(&fx->c, "subscribers"), want);
	snprintf(want, sizeof want, "state_dir is not set in %s: the default is state/ beside it",
		 fx->path);
	assert_string_equal(config_origin(&fx->c, "state_dir"), want);
	strcpy(fx->err, "x: cannot create");
	config_name_setting(&fx->c, "state_dir", fx->err, sizeof fx->err);
	snprintf(want, sizeof want, "x: cannot create (state_dir is not set in %s: the default is "
		 "state/ beside it)", fx->path);
	assert_string_equal(fx->err, want);
	assert_null(config_origin(&fx->c, "smtp.url"));
	/* config_readable names the key and says how to fix it. */
	assert_int_equal(config_readable(&fx->c, "subscribers", fx->err, sizeof fx->err), CONFIG_NOFILE);
	snprintf(want, sizeof want, "%s/subscribers.csv: No such file or directory (subscribers is "
		 "not set in %s: the default is subscribers.csv beside it; create the list, a CSV "
		 "file with a header row such as \"email,name\", or set subscribers to the one you "
		 "have)", fx->dir, fx->path);
	assert_string_equal(fx->err, want);

	assert_int_equal(mkdir(in_dir(fx, "templates"), 0700), 0);
	load_ok(fx, FROM "subscribers = \"list.csv\";\n");
	assert_string_equal(fx->c.templates, in_dir(fx, "templates"));
	snprintf(want, sizeof want, "templates is not set in %s: the default is the templates/ "
		 "directory beside it", fx->path);
	assert_string_equal(config_origin(&fx->c, "templates"), want);
	assert_int_equal(config_readable(&fx->c, "subscribers", fx->err, sizeof fx->err), CONFIG_NOFILE);
	snprintf(want, sizeof want, "%s/list.csv: No such file or directory (subscribers = "
		 "\"list.csv\" in %s:2; create the list, a CSV file with a header row such as "
		 "\"email,name\", or set subscribers to the one you have)", fx->dir, fx->path);
	assert_string_equal(fx->err, want);

	load_ok(fx, FROM "templates = \"/srv/t\";\n");
	assert_string_equal(fx->c.templates, "/srv/t");
	snprintf(want, sizeof want, "templates = \"/srv/t\" in %s:2", fx->path);
	assert_string_equal(config_origin(&fx->c, "templates"), want);
	rmdir(in_dir(fx, "templates"));
}

static void test_missing_from(void **state)
{
	struct fixture *fx = *state;

	load_bad(fx, "template = \"x\";\n",
		 ": from is required, e.g. from = \"Joy <joy@example.org>\";");
	load_bad(fx, "",
		 ": from is required, e.g. from = \"Joy <joy@example.org>\";");
}

static void test_unknown_key(void **state)
{
	struct fixture *fx = *state;

	load_bad(fx, FROM "\nsubcribers = \"list.csv\";\n",
		 ":3: unknown setting \"subcribers\" (see config.example)");
	load_bad(fx, FROM "smtp = {\n  url = \"smtp://h\";\n  port = 25;\n};\n",
		 ":4: unknown setting \"smtp.port\" (see config.example)");
	load_bad(fx, FROM "rate = { per_week = 5; };\n",
		 ":2: unknown setting \"rate.per_week\" (see config.example)");
}

static void test_syntax_error(void **state)
{
	struct fixture *fx = *state;

	/* (Not `key "string";`: libconfig 1.5 itself leaks a string token
	 * on that error, which the sanitizer run would report.) */
	load_bad(fx, FROM "subscribers = ;\n", ":2: syntax error");
	load_bad(fx, FROM "template = \"x\";\n}\n", ":3: syntax error");
	load_bad(fx, FROM "\n\nsmtp = { url = ; };\n", ":4: syntax error");
}

static void test_bad_values(void **state)
{
	struct fixture *fx = *state;

	load_bad(fx, "from = \"not an address\";\n",
		 ":1: from: expected \"Name <address>\" with a valid address, "
		 "found \"not an address\"");
	load_bad(fx, "from = 42;\n",
		 ":1: from: expected a string in double quotes");
	load_bad(fx, "from = \"Joy <joy@example.org>\nBcc: x@example.org\";\n",
		 ":1: from: line breaks are not allowed");
	load_bad(fx, "from = \"Joy\\r <joy@example.org>\";\n",
		 ":1: from: line breaks are not allowed");
	load_bad(fx, FROM "reply_to = \"nobody\";\n",
		 ":2: reply_to: expected an address, found \"nobody\"");
	load_bad(fx, FROM "list_id = \"news\";\n",
		 ":2: list_id: the id in \"news\" must look like "
		 "name.example.org");
	load_bad(fx, FROM "list_id = \"News <news.example.org\";\n",
		 ":2: list_id: missing \">\" in \"News <news.example.org\"");
	load_bad(fx, FROM "smtp = { url = \"http://mail\"; };\n",
		 ":2: smtp.url: expected smtp://host[:port] or "
		 "smtps://host[:port], found \"http://mail\"");
	load_bad(fx, FROM "smtp = { timeout = 0; };\n",
		 ":2: smtp.timeout: out of range (from 1 to 3600)");
	load_bad(fx, FROM "smtp = { connections = 1.5; };\n",
		 ":2: smtp.connections: expected a whole number");
	load_bad(fx, FROM "retry = { attempts = \"4\"; };\n",
		 ":2: retry.attempts: expected a number");
	load_bad(fx, FROM "unsubscribe = { url = \"ftp://x\"; };\n",
		 ":2: unsubscribe.url: expected an https:// URL, found "
		 "\"ftp://x\"");
	load_bad(fx, FROM "test = { to = [\"a@example.org\", \"nope\"]; };\n",
		 ":2: test.to: \"nope\" is not a valid address");
}

/* subscribers_delimiter and language: defaults, values, FILE:LINE. */
static void test_relays(void **state)
{
	struct fixture *fx = *state;
	const struct config *c = &fx->c;

	/* One group: one relay, called by its host and port. */
	load_ok(fx, FROM "smtp = { url = \"smtps://mail.example.org\"; };\n");
	assert_int_equal(config_nrelays(c), 1);
	assert_ptr_equal(config_relay(c, 0), &c->smtp);
	assert_string_equal(c->smtp.name, "mail.example.org:465");
	assert_int_equal(c->smtp.weight, 1);
	assert_int_equal(c->smtp.pipelining, 1);
	config_free(&fx->c);
	fx->loaded = 0;
	load_ok(fx, FROM "smtp = (\n"
		"  { url = \"smtp://a.example.org:587/helo\"; weight = 3; connections = 8;\n"
		"    per_day = 50000; per_second = 2.5; burst = 4; username = \"joy\";\n"
		"    password_env = \"A_PW\"; },\n"
		"  { url = \"smtp://b.example.org\"; name = \"backup\"; timeout = 5; pipelining = false; }\n"
		");\n");
	assert_int_equal(config_nrelays(c), 2);
	const struct smtp_conf *a = config_relay(c, 0), *b = config_relay(c, 1);
	assert_ptr_equal(a, &c->smtp);
	assert_string_equal(a->name, "a.example.org:587");
	assert_int_equal(a->weight, 3);
	assert_int_equal(a->connections, 8);
	assert_int_equal(a->rate.per_day, 50000);
	assert_true(a->rate.per_second == 2.5);
	assert_int_equal(a->rate.burst, 4);
	assert_string_equal(a->username, "joy");
	assert_string_equal(a->password_env, "A_PW");
	assert_string_equal(b->name, "backup");
	assert_string_equal(b->url, "smtp://b.example.org");
	assert_int_equal(b->timeout, 5);
	assert_int_equal(a->pipelining, 1);
	assert_int_equal(b->pipelining, 0);
	assert_int_equal(b->weight, 1);
	assert_int_equal(b->connections, 1);
	assert_int_equal(b->rate.per_day, 0);
	assert_string_equal(b->password_env, "HERALD_SMTP_PASSWORD");
	assert_null(b->username);
	snprintf(fx->want, sizeof fx->want, "%s:6", fx->path);
	assert_string_equal(b->where, fx->want);
	/* The top-level rate is untouched by the relays' own. */
	assert_int_equal(c->rate.per_day, 0);
	/* Each relay's own password. */
	char *pw = NULL;
	setenv("A_PW", "secret-a", 1);
	assert_int_equal(config_relay_password(c, a, &pw, fx->err, sizeof fx->err), 0);
	assert_string_equal(pw, "secret-a");
	free(pw);
	assert_int_equal(config_relay_password(c, b, &pw, fx->err, sizeof fx->err), 0);
	assert_null(pw);
	unsetenv("A_PW");
}

static void test_relay_errors(void **state)
{
	struct fixture *fx = *state;

	load_bad(fx, FROM "smtp = ( );\n",
		 ":2: smtp: the list of relays is empty: give at least one, "
		 "smtp = ( { url = \"smtp://mail.example.org:587\"; } );");
	load_bad(fx, FROM "smtp = (\n { url = \"smtp://a:25\"; },\n { url = \"smtp://b:25\"; weight = 0; }\n);\n",
		 ":4: smtp[2].weight: out of range (from 1 to 1000)");
	write_conf(fx, FROM "smtp = (\n { url = \"smtp://a:25\"; },\n { url = \"smtp://a:25\"; }\n);\n");
	assert_int_equal(load(fx, fx->path), CONFIG_BAD);
	snprintf(fx->want, sizeof fx->want, "%s:4: smtp[2]: another relay is called \"a:25\" too "
		 "(%s:3): give one of them a name = \"...\"; of its own", fx->path, fx->path);
	assert_string_equal(fx->err, fx->want);
	load_bad(fx, FROM "smtp = ( { weight = 2; } );\n",
		 ":2: smtp[1]: a relay in a list needs its url, e.g. url = \"smtp://mail.example.org:587\";");
	load_bad(fx, FROM "smtp = ( { url = \"http://a\"; } );\n",
		 ":2: smtp[1].url: expected smtp://host[:port] or smtps://host[:port], found \"http://a\"");
	load_bad(fx, FROM "smtp = ( { url = \"smtp://a\"; per_minute = 1.5; } );\n",
		 ":2: smtp[1].per_minute: expected a whole number");
	load_bad(fx, FROM "smtp = ( { url = \"smtp://a\"; name = \"a/b\"; } );\n",
		 ":2: smtp[1].name: \"a/b\": use 1 to 64 letters, digits and . _ - : [ ] @");
	load_bad(fx, FROM "smtp = (\n { url = \"smtp://a\";\n   pipelining = \"no\"; }\n);\n",
		 ":4: smtp[1].pipelining: expected true or false");
	load_bad(fx, FROM "smtp = { url = \"smtp://a\"; pipelining = 1; };\n",
		 ":2: smtp.pipelining: expected true or false");
	load_bad(fx, FROM "smtp = ( { url = \"smtp://a\"; colour = 1; } );\n",
		 ":2: unknown setting \"smtp.colour\" (see config.example)");
	load_bad(fx, FROM "smtp = \"smtp://a\";\n",
		 ":2: smtp: expected a group, smtp = { url = \"...\"; }; or a list of them, "
		 "smtp = ( { url = \"...\"; }, { url = \"...\"; } );");
}

static void test_list_settings(void **state)
{
	struct fixture *fx = *state;

	load_ok(fx, FROM);
	assert_int_equal(fx->c.subs_delim, ',');
	assert_string_equal(fx->c.language, "en");
	load_ok(fx, FROM "subscribers_delimiter = \";\";\nlanguage = \"fr\";\n");
	assert_int_equal(fx->c.subs_delim, ';');
	assert_string_equal(fx->c.language, "fr");
	load_ok(fx, FROM "subscribers_delimiter = \"\\t\";\nlanguage = \"pt-BR\";\n");
	assert_int_equal(fx->c.subs_delim, '\t');
	assert_string_equal(fx->c.language, "pt-BR");
	load_bad(fx, FROM "subscribers_delimiter = \";;\";\n",
		 ":2: subscribers_delimiter: expected \",\", \";\", \"\\t\" (tab) or \"|\", found \";;\"");
	load_bad(fx, FROM "subscribers_delimiter = \"\\\"\";\n",
		 ":2: subscribers_delimiter: expected \",\", \";\", \"\\t\" (tab) or \"|\", found \"\"\"");
	static const char *const bad_tags[] = {"f", "fr-", "fr--ca", "\\\" onload=\\\"x", "toolongtag", "fr_CA"};
	for (size_t i = 0; i < sizeof bad_tags / sizeof *bad_tags; i++) {
		char text[200];
		snprintf(text, sizeof text, FROM "\nlanguage = \"%s\";\n", bad_tags[i]);
		write_conf(fx, text);
		assert_int_equal(load(fx, fx->path), CONFIG_BAD);
		assert_non_null(strstr(fx->err, ":3: language: expected a language tag such as \"fr\" or "
					"\"pt-BR\", found \""));
	}
}

static void test_list_id_forms(void **state)
{
	struct fixture *fx = *state;

	load_ok(fx, FROM "list_id = \"\\\"Garden, News\\\" <g.example.org>\";\n");
	assert_string_equal(fx->c.list_name, "Garden, News");
	load_ok(fx, FROM "list_id = \"<g.example.org>\";\n");
	assert_string_equal(fx->c.list_name, "Joy");
	load_ok(fx, FROM "list_id = \"g.example.org\";\n");
	assert_string_equal(fx->c.list_name, "Joy");
	/* No display name in from: the address names the list. */
	load_ok(fx, "from = \"joy@example.org\";\n");
	assert_string_equal(fx->c.from_name, "");
	assert_string_equal(fx->c.list_name, "joy@example.org");
	/* A single test address may be a plain string. */
	load_ok(fx, FROM "test = { to = \"t@example.org\"; };\n");
	assert_int_equal(fx->c.n_test_to, 1);
	assert_string_equal(fx->c.test_to[0], "t@example.org");
}

static void test_password_mode(void **state)
{
	struct fixture *fx = *state;
	const char *text = FROM "smtp = {\n  username = \"news\";\n"
			   "  password = \"hunter2\";\n};\n";

	write_conf_mode(fx, text, 0644);
	assert_int_equal(load(fx, fx->path), CONFIG_BAD);
	snprintf(fx->want, sizeof fx->want,
		 "%s:4: smtp.password is set but %s is readable by others; "
		 "run: chmod 600 %s", fx->path, fx->path, fx->path);
	assert_string_equal(fx->err, fx->want);
	assert_non_null(strstr(fx->err, "chmod 600"));

	write_conf_mode(fx, text, 0640);
	assert_int_equal(load(fx, fx->path), CONFIG_BAD);
	assert_non_null(strstr(fx->err, "chmod 600"));

	write_conf_mode(fx, text, 0600);
	assert_int_equal(load(fx, fx->path), CONFIG_OK);
	assert_string_equal(fx->c.smtp.password, "hunter2");

	char *pw = NULL;

	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 0);
	assert_string_equal(pw, "hunter2");
	free(pw);
}

static void test_password_sources(void **state)
{
	struct fixture *fx = *state;
	char *pw = (char *)"unset";

	/* No username: no password wanted. */
	load_ok(fx, FROM);
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 0);
	assert_null(pw);

	/* From the default environment variable. */
	load_ok(fx, FROM "smtp = { username = \"news\"; };\n");
	setenv("HERALD_SMTP_PASSWORD", "from-env", 1);
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 0);
	unsetenv("HERALD_SMTP_PASSWORD");
	assert_string_equal(pw, "from-env");
	free(pw);

	/* From a named one. */
	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_env = \"GARDEN_PW\"; };\n");
	setenv("GARDEN_PW", "garden-pw", 1);
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 0);
	unsetenv("GARDEN_PW");
	assert_string_equal(pw, "garden-pw");
	free(pw);

	/* From a command; it wins over the environment. */
	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_command = \"printf s3cret\"; };\n");
	setenv("HERALD_SMTP_PASSWORD", "from-env", 1);
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 0);
	unsetenv("HERALD_SMTP_PASSWORD");
	assert_string_equal(pw, "s3cret");
	free(pw);

	/* Its final newline is not part of the password. */
	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_command = \"echo s3cret\"; };\n");
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 0);
	assert_string_equal(pw, "s3cret");
	free(pw);
}

static void test_password_errors(void **state)
{
	struct fixture *fx = *state;
	char *pw = NULL;

	load_ok(fx, FROM "smtp = { username = \"news\"; };\n");
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 CONFIG_BAD);
	assert_null(pw);
	assert_string_equal(fx->err,
			    "smtp.username is set but no password: set "
			    "$HERALD_SMTP_PASSWORD, or smtp.password_command");
	/* An empty variable is no password either. */
	setenv("HERALD_SMTP_PASSWORD", "", 1);
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 CONFIG_BAD);
	unsetenv("HERALD_SMTP_PASSWORD");
	assert_null(pw);

	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_command = \"exit 3\"; };\n");
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 CONFIG_BAD);
	assert_null(pw);
	assert_string_equal(fx->err, "smtp.password_command failed (exit "
			    "status 3) or printed nothing");

	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_command = \"true\"; };\n");
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 CONFIG_BAD);
	assert_null(pw);
	assert_string_equal(fx->err, "smtp.password_command failed (exit "
			    "status 0) or printed nothing");
}

/* The first line of the command's output, read through one fixed buffer;
 * a first line that does not fit is an error, not a truncated password. */
static void test_password_command_long(void **state)
{
	struct fixture *fx = *state;
	char *pw = NULL;

	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_command = \"printf 'pw1\\\\nsecond line'\"; };\n");
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err), 0);
	assert_string_equal(pw, "pw1");
	free(pw);
	pw = NULL;
	load_ok(fx, FROM "smtp = { username = \"news\"; "
		"password_command = \"head -c 5000 /dev/zero | tr '\\\\0' x\"; };\n");
	assert_int_equal(config_password(&fx->c, &pw, fx->err, sizeof fx->err),
			 CONFIG_BAD);
	assert_null(pw);
	assert_string_equal(fx->err, "smtp.password_command printed a first line "
			    "longer than 1022 bytes");
}

static void test_unsafe_html(void **state)
{
	struct fixture *fx = *state;

	load_ok(fx, FROM);
	assert_int_equal(fx->c.unsafe_html, 0);
	load_ok(fx, FROM "unsafe_html = true;\n");
	assert_int_equal(fx->c.unsafe_html, 1);
	load_bad(fx, FROM "unsafe_html = \"yes\";\n",
		 ":2: unsafe_html: expected true or false");
}

static void test_secret(void **state)
{
	struct fixture *fx = *state;
	const char *secret = NULL;
	const char *want = "$HERALD_SECRET must hold the unsubscribe-token "
			   "secret (8 characters or more), e.g. export "
			   "HERALD_SECRET=$(openssl rand -hex 32)";

	load_ok(fx, FROM);
	assert_int_equal(config_secret(&fx->c, &secret, fx->err,
				       sizeof fx->err), CONFIG_BAD);
	assert_string_equal(fx->err, want);
	assert_null(secret);

	setenv("HERALD_SECRET", "1234567", 1);
	fx->err[0] = '\0';
	assert_int_equal(config_secret(&fx->c, &secret, fx->err,
				       sizeof fx->err), CONFIG_BAD);
	assert_string_equal(fx->err, want);
	assert_null(secret);

	setenv("HERALD_SECRET", "12345678", 1);
	assert_int_equal(config_secret(&fx->c, &secret, fx->err,
				       sizeof fx->err), 0);
	assert_string_equal(secret, "12345678");
	unsetenv("HERALD_SECRET");

	/* A named variable. */
	load_ok(fx, FROM "unsubscribe = { secret_env = \"GARDEN_SECRET\"; };\n");
	setenv("GARDEN_SECRET", "a-long-enough-secret", 1);
	assert_int_equal(config_secret(&fx->c, &secret, fx->err,
				       sizeof fx->err), 0);
	assert_string_equal(secret, "a-long-enough-secret");
	setenv("GARDEN_SECRET", "short", 1);
	assert_int_equal(config_secret(&fx->c, &secret, fx->err,
				       sizeof fx->err), CONFIG_BAD);
	unsetenv("GARDEN_SECRET");
	assert_non_null(strstr(fx->err, "$GARDEN_SECRET must hold"));
}

static void test_parse_mailbox(void **state)
{
	(void)state;
	char *name = NULL, *addr = NULL;

	assert_int_equal(addr_parse_mailbox("Joy Ng <joy@example.org>", &name,
					      &addr), 0);
	assert_string_equal(name, "Joy Ng");
	assert_string_equal(addr, "joy@example.org");
	free(name);
	free(addr);
	assert_int_equal(addr_parse_mailbox("joy@example.org", &name, &addr),
			 0);
	assert_string_equal(name, "");
	assert_string_equal(addr, "joy@example.org");
	free(name);
	free(addr);
	assert_int_equal(addr_parse_mailbox("Joy <joy>", &name, &addr), -1);
	assert_null(name);
	assert_null(addr);
	assert_int_equal(addr_parse_mailbox("a@example.org, b@example.org",
					      &name, &addr), -1);
	assert_null(name);
	assert_null(addr);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_defaults),
		T(test_full_file),
		T(test_dkim_errors),
		T(test_starttls_values),
		T(test_base_url_loopback),
		T(test_relative_paths),
		T(test_env_path),
		T(test_missing_file),
		T(test_templates_origin),
		T(test_missing_from),
		T(test_unknown_key),
		T(test_syntax_error),
		T(test_bad_values),
		T(test_relays),
		T(test_relay_errors),
		T(test_list_settings),
		T(test_list_id_forms),
		T(test_password_mode),
		T(test_password_sources),
		T(test_password_errors),
		T(test_password_command_long),
		T(test_unsafe_html),
		T(test_secret),
#undef T
		cmocka_unit_test(test_parse_mailbox),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
