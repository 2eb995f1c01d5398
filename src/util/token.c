/* Reader tokens (see token.h). The HMAC is GnuTLS's. */
#include "util/token.h"
#include "util/buf.h"
#include <ctype.h>
#include <gnutls/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* hex HMAC-SHA256(secret, msg). */
static int hmac_hex(const char *secret, const char *msg, char out[TOKEN_LEN + 1])
{
	unsigned char mac[TOKEN_LEN / 2];
	if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, secret, strlen(secret), msg, strlen(msg), mac) < 0)
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

int token_make(const char *secret, const char *email, char out[TOKEN_LEN + 1])
{
	char *lower = str_lower(email);
	int rc = lower ? hmac_hex(secret, lower, out) : -1;
	free(lower);
	return rc;
}

int token_check(const char *secret, const char *email, const char *token)
{
	char want[TOKEN_LEN + 1];
	if (strlen(token) != TOKEN_LEN)
		return 0;
	if (token_make(secret, email, want) < 0)
		return -1;
	return hex_equal(token, want);
}

static int confirm_mac(const char *secret, const char *email, const char *name, long expires,
		       char hex[TOKEN_LEN + 1])
{
	char *lower = str_lower(email), *msg = NULL;
	if (!lower || asprintf(&msg, "confirm\n%s\n%s\n%ld", lower, name, expires) < 0) {
		free(lower);
		return -1;
	}
	int rc = hmac_hex(secret, msg, hex);
	free(lower);
	free(msg);
	return rc;
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
