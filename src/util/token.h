#ifndef HERALD_TOKEN_H
#define HERALD_TOKEN_H
/* Reader tokens: the HMAC that shows a link or a request was made by
 * herald for one address (unsubscribe links, the mailto subject). Its own
 * module because composing (message.c) makes them and reading requests
 * (unsubscribe.c, later the web side) checks them, and neither layer may
 * call the other. */

#define TOKEN_LEN 64

/* hex HMAC-SHA256(secret, lower-case address): TOKEN_LEN hex digits + NUL.
 * 0, or -1 when the HMAC or memory failed. */
int token_make(const char *secret, const char *email, char out[TOKEN_LEN + 1]);

/* 1 when token (TOKEN_LEN hex digits, either case) is email's under
 * secret, 0 when it is not, -1 when the HMAC failed. The comparison takes
 * the same time wherever the first difference is. */
int token_check(const char *secret, const char *email, const char *token);

#endif
