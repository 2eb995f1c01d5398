/* libFuzzer target: web/form.c, everything herald serve reads from a
 * request before it looks at what it means: the request target
 * (path and query split), urlencoded query strings and bodies, and
 * multipart/form-data bodies (RFC 8058 one-click senders use either).
 * Input: one selector byte ('t' target, 'q' query, anything else a body),
 * for a body a Content-Type line ending in '\n', then the text. */
#include "web/form.h"
#include "util/buf.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_form(const struct form *f)
{
	if (f->n > FORM_MAX_FIELDS)
		abort();
	for (size_t i = 0; i < f->n; i++) {
		/* Every field lies inside the form's own text, is text, and
		 * its name is given once. */
		const char *lo = f->text, *hi = f->text + sizeof f->text;
		if (f->key[i] < lo || f->key[i] >= hi || f->val[i] < lo || f->val[i] >= hi)
			abort();
		if (!memchr(f->key[i], '\0', (size_t)(hi - f->key[i])) ||
		    !memchr(f->val[i], '\0', (size_t)(hi - f->val[i])))
			abort();
		if (!utf8_valid(f->key[i], strlen(f->key[i])) || !utf8_valid(f->val[i], strlen(f->val[i])))
			abort();
		if (form_get(f, f->key[i]) != f->val[i])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 3 * FORM_MAX_TEXT)
		return 0;
	char *s = malloc(size);
	if (!s)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	static struct form f; /* 4 KiB: off the fuzzer's stack */
	char why[128];
	if (data[0] == 't') {
		char path[128];
		const char *query;
		if (form_target(s, path, sizeof path, &query) == FORM_OK) {
			if (path[0] != '/' || strchr(path, '?') ||
			    (*query && (query <= s || query > s + strlen(s))))
				abort();
			if (form_parse(&f, query, strlen(query), why, sizeof why) == FORM_OK)
				check_form(&f);
		}
	} else if (data[0] == 'q') {
		if (form_parse(&f, s, size - 1, why, sizeof why) == FORM_OK)
			check_form(&f);
	} else {
		char *nl = memchr(s, '\n', size - 1);
		const char *ct = nl ? s : NULL, *body = nl ? nl + 1 : s;
		if (nl)
			*nl = '\0';
		size_t blen = size - 1 - (size_t)(body - s);
		int rc = form_parse_body(&f, ct, body, blen, why, sizeof why);
		if (rc == FORM_OK)
			check_form(&f);
		else if (!*why)
			abort(); /* every refusal says why */
	}
	free(s);
	return 0;
}
