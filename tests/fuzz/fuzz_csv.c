/* libFuzzer target: the streaming CSV subscriber reader (libcsv callbacks,
 * record assembly, line counting, header checks, dedupe, address
 * validation). The input is the whole file; it is streamed from a memfd
 * through subs_open/subs_next exactly as a list on disk would be. */
#include "fuzz_file.h"
#include "input/subscribers.h"
#include "util/addr.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A first byte 1 to 4 picks the delimiter (subscribers_delimiter)
	 * and is not part of the file; any other input is a ',' list, so
	 * the seeds written before delimiters existed still mean the same. */
	static const char seps[] = ",;\t|";
	char sep = ',';
	if (size && data[0] >= 1 && data[0] <= 4) {
		sep = seps[data[0] - 1];
		data++;
		size--;
	}
	const char *path = fuzz_file(data, size);
	struct subs_reader *r;
	char err[1024];
	if (subs_open(&r, path, sep, err, sizeof err) != 0)
		return 0;
	size_t ncols = subs_ncols(r);
	const char *const *cols = subs_colnames(r);
	for (size_t i = 0; i < ncols; i++)
		if (subs_col(r, cols[i]) < 0)
			abort();
	struct subs_row row;
	long last = 0;
	int k;
	while ((k = subs_next(r, &row, err, sizeof err)) != SUBS_END) {
		if (k == SUBS_FATAL)
			break;
		if (k == SUBS_ROW || k == SUBS_INACTIVE) {
			/* A row handed out is safe to put in a header. */
			if (row.nfields != ncols || strpbrk(row.email, "\r\n") ||
			    strpbrk(row.name, "\r\n"))
				abort();
			if (k == SUBS_ROW && addr_valid(row.email, NULL, 0) < 0)
				abort();
		}
		/* Lines never go backwards. */
		if (row.line && row.line < last)
			abort();
		if (row.line)
			last = row.line;
	}
	subs_close(r);
	return 0;
}
