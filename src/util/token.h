#ifndef HERALD_TOKEN_H
#define HERALD_TOKEN_H
/* Reader tokens: the HMAC that shows a link or a request was made by
 * herald for one address (unsubscribe links, the mailto subject). Its own
 * module because composing (message.c) makes them and reading requests
 * (unsubscribe.c, the web side) checks them, and neither layer may call
 * the other. */

#define TOKEN_LEN 64

/* The secret, keyed once: HMAC's key schedule (two SHA-256 blocks) is
 * done by token_key_new, and each token after it costs only the blocks
 * of its own message. A send keys once per run (message.c); after
 * token_key_new the key is only read, so threads may share it. */
struct token_key;
/* NULL when the HMAC or memory failed. */
struct token_key *token_key_new(const char *secret);
void token_key_free(struct token_key *k); /* NULL is fine */

/* hex HMAC-SHA256(secret, lower-case address): TOKEN_LEN hex digits + NUL.
 * 0, or -1 when the HMAC or memory failed. */
int token_key_make(const struct token_key *k, const char *email, char out[TOKEN_LEN + 1]);
/* 1 when token (TOKEN_LEN hex digits, either case) is email's under
 * the key, 0 when it is not, -1 when the HMAC failed. The comparison
 * takes the same time wherever the first difference is. */
int token_key_check(const struct token_key *k, const char *email, const char *token);

/* The same for one token: keyed for the call. For the callers that make
 * or check one token per request (unsubscribe.c, web/), where the key
 * schedule is nothing next to the request. */
int token_make(const char *secret, const char *email, char out[TOKEN_LEN + 1]);
int token_check(const char *secret, const char *email, const char *token);

/* Confirmation tokens (herald serve's signup): "EXPIRES.HEX", EXPIRES the
 * Unix time after which it is void, HEX the HMAC-SHA256 of
 * "confirm\n" lower-case address "\n" name "\n" EXPIRES: bound to the
 * address and the name the reader typed, and told apart from reader
 * tokens by its prefix. out holds TOKEN_CONFIRM_MAX bytes. 0, or -1. */
#define TOKEN_CONFIRM_MAX (TOKEN_LEN + 24)
int token_confirm_make(const char *secret, const char *email, const char *name, long expires,
		       char out[TOKEN_CONFIRM_MAX]);
/* The EXPIRES of a confirmation token (whether or not its HMAC is
 * right: check it first), or -1 when it has none. */
long token_confirm_expires(const char *token);
/* 1 valid, 0 forged or for another address or name, 2 expired (checked
 * after the HMAC, so an expired forgery is still 0), -1 HMAC failure.
 * Constant time in the HMAC comparison. */
int token_confirm_check(const char *secret, const char *email, const char *name,
			const char *token, long now);
#endif
