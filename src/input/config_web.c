/* config_web: the web group (herald serve): listen address, base_url, trusted
 * proxies, the connection limits. */
#include "input/config_int.h"
#include "util/addr.h"
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>

/* listen = "HOST:PORT": an IP literal, because a name could resolve to
 * an address that is not this machine's, and "[v6]:PORT" for IPv6. */
static int web_listen(struct cfg_ctx *x, struct config *c)
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
		return cfg_bad(x, s, "web.listen: expected \"ADDRESS:PORT\" (e.g. \"127.0.0.1:8025\" or \"[::1]:8025\"), found \"%s\"", v);
	memcpy(host, h, hl);
	host[hl] = '\0';
	if (inet_pton(strchr(host, ':') ? AF_INET6 : AF_INET, host, bin) != 1 ||
	    (strchr(host, ':') && h == v))
		return cfg_bad(x, s, "web.listen: \"%s\" is not an IP address (write \"127.0.0.1:8025\", or \"[::1]:8025\" for IPv6)", host);
	c->web.host = strdup(host);
	c->web.port = (int)port;
	return c->web.host ? 0 : cfg_bad(x, s, "out of memory");
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
static int web_base_url(struct cfg_ctx *x, struct config *c)
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
		return cfg_bad(x, s, "web.base_url: expected an absolute https:// URL without query or fragment, e.g. \"https://news.example.org\", found \"%s\"", u);
	if (!https && !base_url_loopback(host))
		return cfg_bad(x, s, "web.base_url: \"%s\" is http://; readers reach herald serve through a TLS proxy, so write https:// (http:// is only for loopback tests)", u);
	if (!c->unsub.url && asprintf(&c->unsub.url, "%s/unsubscribe?e={{email}}&t={{token}}", u) < 0)
		return cfg_bad(x, s, "out of memory");
	return 0;
}

static int web_proxies(struct cfg_ctx *x, struct config *c)
{
	config_setting_t *s, *e;
	int n, rc = cfg_string_list(x, "web.trusted_proxies",
				"a list of IP addresses, e.g. [ \"127.0.0.1\" ]", &s, &n);
	if (rc || !n)
		return rc;
	c->web.trusted_proxies = calloc((size_t)n + 1, sizeof *c->web.trusted_proxies);
	if (!c->web.trusted_proxies)
		return cfg_bad(x, s, "out of memory");
	for (int i = 0; i < n; i++) {
		const char *v = cfg_string_elem(s, i, &e);
		unsigned char bin[16];
		if (!v || inet_pton(v && strchr(v, ':') ? AF_INET6 : AF_INET, v, bin) != 1)
			return cfg_bad(x, s, "web.trusted_proxies: \"%s\" is not an IP address", v ? v : "(not a string)");
		if (!(c->web.trusted_proxies[c->web.n_trusted_proxies++] = strdup(v)))
			return cfg_bad(x, s, "out of memory");
	}
	return 0;
}

int cfg_web_settings(struct cfg_ctx *x, struct config *c)
{
	int rc;
	if ((rc = cfg_get_str(x, "web.listen", &c->web.listen)) ||
	    (rc = cfg_get_str(x, "web.base_url", &c->web.base_url)) ||
	    (rc = cfg_get_bool(x, "web.signup", &c->web.signup)) ||
	    (rc = cfg_get_bool(x, "web.archive", &c->web.archive)) ||
	    (rc = cfg_get_str(x, "web.posts", &c->web.posts)) || (rc = cfg_resolve(x, &c->web.posts)) ||
	    (rc = cfg_get_int(x, "web.connections", &c->web.connections, 1, 100000)) ||
	    (rc = cfg_get_int(x, "web.connections_per_client", &c->web.connections_per_client, 1, 100000)))
		return rc;
	if ((rc = web_listen(x, c)) || (rc = web_base_url(x, c)) || (rc = web_proxies(x, c)))
		return rc;
	if (c->web.signup && !c->web.base_url)
		return cfg_bad(x, config_lookup(&x->cf, "web.signup"),
			   "web.signup needs web.base_url: the confirmation mail links there");
	return 0;
}

void cfg_web_free(struct config *c)
{
	free(c->web.listen);
	free(c->web.host);
	free(c->web.base_url);
	free(c->web.posts);
	for (size_t i = 0; i < c->web.n_trusted_proxies; i++)
		free(c->web.trusted_proxies[i]);
	free(c->web.trusted_proxies);
}
