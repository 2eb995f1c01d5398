/* libFuzzer target: the {{field}} template compiler and renderer, in all
 * three escaping modes. */
#include "util/buf.h"
#include "compose/template.h"
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"email", "name", "city", "unsubscribe_url"};
	static const char *const vals[] = {"a+b@example.net", "<b>Tom & \"Jerry\"</b>", "", NULL};
	struct tmpl_names tn = {names, 4};
	struct tmpl *t = NULL;
	char err[256];
	if (tmpl_compile(&t, (const char *)data, size, &tn, "fuzz", 1, err, sizeof err) == 0) {
		struct buf b = {0};
		for (int e = TMPL_RAW; e <= TMPL_URL; e++) {
			buf_reset(&b);
			tmpl_render(t, vals, (enum tmpl_esc)e, &b);
		}
		for (size_t i = 0; i < 5; i++)
			tmpl_uses(t, i);
		buf_free(&b);
		tmpl_free(t);
	}
	return 0;
}
