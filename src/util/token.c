/* Reader tokens (see token.h). The HMAC is GnuTLS's. */
#include "util/token.h"
#include <ctype.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct token_key {
	/* Has taken in the key and never a message: each token starts from
	 * a copy (gnutls_hmac_copy, GnuTLS 3.6.9). NULL when this GnuTLS
	 * backend cannot copy a MAC; then each token keys from secret. */
	gnutls_hmac_hd_t keyed;
	char *secret;
};

/* A MAC keyed with secret: NULL when the HMAC failed. */
static gnutls_hmac_hd_t secret_mac(const char *secret)
{
	gnutls_hmac_hd_t h = NULL;
	return gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, secret, strlen(secret)) < 0 ? NULL : h;
}

struct token_key *token_key_new(const char *secret)
{
	struct token_key *k = calloc(1, sizeof *k);
	if (!k || !(k->secret = strdup(secret))) {
		free(k);
		return NULL;
	}
	if (!(k->keyed = secret_mac(secret))) {
		token_key_free(k);
		return NULL;
	}
	/* Whether copying works is a property of the backend: asked once. */
	gnutls_hmac_hd_t probe = gnutls_hmac_copy(k->keyed);
	if (probe)
		gnutls_hmac_deinit(probe, NULL);
	else {
		gnutls_hmac_deinit(k->keyed, NULL);
		k->keyed = NULL;
	}
	return k;
}

void token_key_free(struct token_key *k)
{
	if (!k)
		return;
	if (k->keyed)
		gnutls_hmac_deinit(k->keyed, NULL);
	if (k->secret) {
		gnutls_memset(k->secret, 0, strlen(k->secret));
		free(k->secret);
	}
	free(k);
}

/* One ready for the message, from the key: NULL when the HMAC failed. */
static gnutls_hmac_hd_t keyed_mac(const struct token_key *k)
{
	return k->keyed ? gnutls_hmac_copy(k->keyed) : secret_mac(k->secret);
}

/* s lower-cased (ASCII, as str_lower does) into the MAC, through a small
 * buffer: no copy of the address is allocated per token. */
static int mac_lower(gnutls_hmac_hd_t h, const char *s)
{
	char chunk[64];
	size_t n = 0;
	for (; *s; s++) {
		chunk[n++] = *s >= 'A' && *s <= 'Z' ? (char)(*s - 'A' + 'a') : *s;
		if (n == sizeof chunk) {
			if (gnutls_hmac(h, chunk, n) < 0)
				return -1;
			n = 0;
		}
	}
	return n ? gnutls_hmac(h, chunk, n) : 0;
}

/* The MAC's value in hex; h is freed either way. rc: what feeding it gave. */
static int mac_hex(gnutls_hmac_hd_t h, int rc, char out[TOKEN_LEN + 1])
{
	unsigned char mac[TOKEN_LEN / 2];
	gnutls_hmac_deinit(h, mac);
	if (rc < 0)
		return -1;
	/* Per reader, every run: 32 snprintf calls were a third of this
	 * function's cost (callgrind), a table lookup is a few instructions. */
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < TOKEN_LEN / 2; i++) {
		out[2 * i] = hex[mac[i] >> 4];
		out[2 * i + 1] = hex[mac[i] & 15];
	}
	out[TOKEN_LEN] = '\0';
	return 0;
}

/* TOKEN_LEN hex digits against want, either case. No early exit: how
 * long this takes must not say how much matched. */
static int hex_equal(const char *token, const char *want)
{
	unsigned char d = 0;
	for (size_t i = 0; i < TOKEN_LEN; i++)
		d |= (unsigned char)(tolower((unsigned char)token[i]) ^ (unsigned char)want[i]);
	return d == 0;
}

/* The token of email from h (freed): 0, or -1. */
static int make_from(gnutls_hmac_hd_t h, const char *email, char out[TOKEN_LEN + 1])
{
	return h ? mac_hex(h, mac_lower(h, email), out) : -1;
}

/* Whether token is email's from h (freed): 1, 0, or -1. */
static int check_from(gnutls_hmac_hd_t h, const char *email, const char *token)
{
	char want[TOKEN_LEN + 1];
	if (strlen(token) != TOKEN_LEN) {
		if (h)
			gnutls_hmac_deinit(h, NULL);
		return 0;
	}
	if (make_from(h, email, want) < 0)
		return -1;
	return hex_equal(token, want);
}

int token_key_make(const struct token_key *k, const char *email, char out[TOKEN_LEN + 1])
{
	return make_from(keyed_mac(k), email, out);
}

int token_key_check(const struct token_key *k, const char *email, const char *token)
{
	return check_from(keyed_mac(k), email, token);
}

int token_make(const char *secret, const char *email, char out[TOKEN_LEN + 1])
{
	return make_from(secret_mac(secret), email, out);
}

int token_check(const char *secret, const char *email, const char *token)
{
	return check_from(secret_mac(secret), email, token);
}

/* HMAC of "confirm\n" lower-case email "\n" name "\n" EXPIRES. */
static int confirm_mac(const char *secret, const char *email, const char *name, long expires,
		       char hex[TOKEN_LEN + 1])
{
	char num[24];
	snprintf(num, sizeof num, "%ld", expires);
	gnutls_hmac_hd_t h = secret_mac(secret);
	if (!h)
		return -1;
	/* The pieces of the message; the address (NULL) goes in lower-cased. */
	const char *piece[] = {"confirm\n", NULL, "\n", name, "\n", num};
	int rc = 0;
	for (size_t i = 0; rc >= 0 && i < sizeof piece / sizeof *piece; i++)
		rc = piece[i] ? gnutls_hmac(h, piece[i], strlen(piece[i])) : mac_lower(h, email);
	return mac_hex(h, rc, hex);
}

int token_confirm_make(const char *secret, const char *email, const char *name, long expires,
		       char out[TOKEN_CONFIRM_MAX])
{
	char hex[TOKEN_LEN + 1];
	if (confirm_mac(secret, email, name, expires, hex) < 0)
		return -1;
	snprintf(out, TOKEN_CONFIRM_MAX, "%ld.%s", expires, hex);
	return 0;
}

long token_confirm_expires(const char *token)
{
	char *end;
	long expires = strtol(token, &end, 10);
	return end == token || *end != '.' || expires <= 0 ? -1 : expires;
}

int token_confirm_check(const char *secret, const char *email, const char *name,
			const char *token, long now)
{
	char *end;
	long expires = strtol(token, &end, 10);
	char want[TOKEN_LEN + 1];
	if (end == token || *end != '.' || strlen(end + 1) != TOKEN_LEN || expires <= 0)
		return 0;
	if (confirm_mac(secret, email, name, expires, want) < 0)
		return -1;
	if (!hex_equal(end + 1, want))
		return 0;
	return now > expires ? 2 : 1;
}
