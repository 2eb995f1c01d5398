/* libFuzzer target: a whole post file: front matter (fences, keys, quotes,
 * dates, slugs), the merge-field protection around cmark-gfm, the HTML
 * fragment with figures, and the plain-text renderer. */
#include "compose/post.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct post p;
	char err[256];
	if (post_parse(&p, "fuzz.md", (const char *)data, size, 72, err, sizeof err) == POST_OK) {
		if (!p.html || !p.text || !p.slug || !p.subject)
			abort();
		post_free(&p);
	} else if (p.html || p.text || p.slug) {
		abort(); /* a failed post is left empty */
	}
	return 0;
}
