/* libFuzzer target: the {{field}} template compiler and renderer, in all
 * three escaping modes, and the field scanner check and send share. */
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
	int problems = tmpl_check((const char *)data, size, 1, &tn, NULL, NULL);
	int compiled = tmpl_compile(&t, (const char *)data, size, &tn, "fuzz", 1, err, sizeof err) == 0;
	/* One scanner: the compiler fails exactly where check finds a problem. */
	if ((problems == 0) != compiled)
		abort();
	if (t) {
		tmpl_free(t);
		t = NULL;
	}
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
