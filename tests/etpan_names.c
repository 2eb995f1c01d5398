/* The From and To mailboxes of a message as libetpan reads them, one
 * "NAME <ADDR>" line each (From first): the header parsed by
 * mailimf_envelope_and_optional_fields_parse, the display name decoded
 * with mailmime_encoded_phrase_parse, as a libetpan-based client would.
 * Built by tests/integration_quality.py: cc etpan_names.c $(pkg-config
 * --cflags --libs libetpan). Usage: etpan_names FILE.eml */
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void show(const struct mailimf_mailbox *mb)
{
	char *dec = NULL;
	size_t idx = 0;
	const char *dn = mb->mb_display_name;
	if (dn && mailmime_encoded_phrase_parse("utf-8", dn, strlen(dn), &idx, "utf-8", &dec) !=
		      MAILIMF_NO_ERROR)
		dec = NULL;
	printf("%s <%s>\n", dec ? dec : dn ? dn : "", mb->mb_addr_spec);
	free(dec);
}

int main(int argc, char **argv)
{
	static char buf[1 << 20];
	FILE *f = argc == 2 ? fopen(argv[1], "rb") : NULL;
	if (!f)
		return 2;
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	size_t idx = 0;
	struct mailimf_fields *fs = NULL;
	if (mailimf_envelope_and_optional_fields_parse(buf, n, &idx, &fs) != MAILIMF_NO_ERROR)
		return 1;
	struct mailimf_mailbox_list *from = NULL;
	struct mailimf_address_list *to = NULL;
	for (clistiter *it = clist_begin(fs->fld_list); it; it = clist_next(it)) {
		struct mailimf_field *fl = clist_content(it);
		if (fl->fld_type == MAILIMF_FIELD_FROM)
			from = fl->fld_data.fld_from->frm_mb_list;
		else if (fl->fld_type == MAILIMF_FIELD_TO)
			to = fl->fld_data.fld_to->to_addr_list;
	}
	for (clistiter *it = from ? clist_begin(from->mb_list) : NULL; it; it = clist_next(it))
		show(clist_content(it));
	for (clistiter *it = to ? clist_begin(to->ad_list) : NULL; it; it = clist_next(it)) {
		struct mailimf_address *a = clist_content(it);
		if (a->ad_type == MAILIMF_ADDRESS_MAILBOX)
			show(a->ad_data.ad_mailbox);
	}
	mailimf_fields_free(fs);
	return 0;
}
