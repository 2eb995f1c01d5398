/* Unit tests for the subscriber list reader: fixtures are written to
 * temporary files, read back through subs_open/subs_next, and every error
 * message is compared whole, since main.c prints them as they are. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/addr.h"
#include "input/subscribers.h"

struct fixture {
	char path[64];
	struct subs_reader *r;
	char err[1024];
	char want[1200];
};

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	*state = fx;
	return 0;
}

/* Runs even when an assertion failed, so no fixture outlives its test. */
static int teardown(void **state)
{
	struct fixture *fx = *state;

	subs_close(fx->r);
	if (fx->path[0])
		unlink(fx->path);
	free(fx);
	return 0;
}

static void write_fixture_n(struct fixture *fx, const char *data, size_t len)
{
	strcpy(fx->path, "/tmp/herald-subs-XXXXXX");
	int fd = mkstemp(fx->path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void write_fixture(struct fixture *fx, const char *data)
{
	write_fixture_n(fx, data, strlen(data));
}

static void open_ok(struct fixture *fx, const char *data)
{
	write_fixture(fx, data);
	assert_int_equal(subs_open(&fx->r, fx->path, 0, fx->err, sizeof(fx->err)),
			 0);
}

static void expect_row(struct fixture *fx, const char *email, const char *name,
		       long line)
{
	struct subs_row row;

	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_ROW);
	assert_string_equal(row.email, email);
	assert_string_equal(row.name, name);
	assert_int_equal(row.line, line);
	assert_int_equal(row.nfields, subs_ncols(fx->r));
}

/* want is a format for the message after "PATH:". */
static void expect_status(struct fixture *fx, int status, const char *want)
{
	struct subs_row row;

	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 status);
	snprintf(fx->want, sizeof(fx->want), "%s:%s", fx->path, want);
	assert_string_equal(fx->err, fx->want);
}

static void expect_end(struct fixture *fx)
{
	struct subs_row row;

	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_END);
	/* The end is sticky. */
	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_END);
}

static void expect_open_fails_n(struct fixture *fx, const char *data, size_t len,
				char sep, int status, const char *want)
{
	write_fixture_n(fx, data, len);
	assert_int_equal(subs_open(&fx->r, fx->path, sep, fx->err, sizeof(fx->err)),
			 status);
	assert_null(fx->r);
	/* want: the message with %1$s for the path (it may name it twice) */
	size_t o = 0;
	for (const char *p = want; *p && o + 1 < sizeof(fx->want);) {
		if (!strncmp(p, "%1$s", 4)) {
			o += (size_t)snprintf(fx->want + o, sizeof(fx->want) - o, "%s", fx->path);
			p += 4;
		} else
			fx->want[o++] = *p++;
	}
	fx->want[o] = '\0';
	assert_string_equal(fx->err, fx->want);
}

static void expect_open_fails(struct fixture *fx, const char *data,
			      int status, const char *want)
{
	write_fixture(fx, data);
	assert_int_equal(subs_open(&fx->r, fx->path, 0, fx->err, sizeof(fx->err)),
			 status);
	assert_null(fx->r);
	snprintf(fx->want, sizeof(fx->want), "%s:%s", fx->path, want);
	assert_string_equal(fx->err, fx->want);
}

static void test_bom_crlf(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "\xef\xbb\xbf" " Email ,NAME\r\n"
		    "joy@example.net,Joy\r\n"
		    "ann@example.org, Ann Lee \r\n");
	assert_int_equal(subs_ncols(fx->r), 2);
	assert_string_equal(subs_colnames(fx->r)[0], "email");
	assert_string_equal(subs_colnames(fx->r)[1], "name");
	assert_int_equal(subs_col(fx->r, "email"), 0);
	assert_int_equal(subs_col(fx->r, "name"), 1);
	assert_int_equal(subs_col(fx->r, "status"), -1);
	expect_row(fx, "joy@example.net", "Joy", 2);
	expect_row(fx, "ann@example.org", "Ann Lee", 3);
	expect_end(fx);
}

static void test_quoted_fields(void **state)
{
	struct fixture *fx = *state;
	struct subs_row row;

	open_ok(fx, "email,name,note\n"
		    "\" joy@example.net \",\"Smith, Joy\",\"say \"\"hi\"\"\n"
		    "second line\r\nthird line\"\n"
		    "ann@example.org,Ann,\"a,b\"\n"
		    "\"bo@example.org\",\"\",\"\"\"\"\n");
	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_ROW);
	assert_string_equal(row.email, "joy@example.net");
	assert_string_equal(row.name, "Smith, Joy");
	assert_string_equal(row.fields[2],
			    "say \"hi\"\nsecond line\r\nthird line");
	assert_string_equal(row.fields[0], row.email);
	assert_int_equal(row.line, 2);
	/* The multi-line field must not throw off the next record's line. */
	expect_row(fx, "ann@example.org", "Ann", 5);
	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_ROW);
	assert_string_equal(row.fields[2], "\"");
	assert_int_equal(row.line, 6);
	expect_end(fx);
}

static void test_blank_lines_and_no_final_newline(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "\n  \nemail\n\n   \n\r\njoy@example.net\n\nann@example.org");
	expect_row(fx, "joy@example.net", "", 7);
	expect_row(fx, "ann@example.org", "", 9);
	expect_end(fx);
}

static void test_ragged_rows(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "email,name,city\n"
		    "joy@example.net,Joy,Oslo\n"
		    "ann@example.org,Ann\n"
		    "bo@example.org,Bo,Rome,extra\n"
		    "cy@example.org,Cy,Lima\n");
	expect_row(fx, "joy@example.net", "Joy", 2);
	expect_status(fx, SUBS_BAD, "3: expected 3 fields, found 2");
	expect_status(fx, SUBS_BAD, "4: expected 3 fields, found 4");
	expect_row(fx, "cy@example.org", "Cy", 5);
	expect_end(fx);
}

static const struct {
	const char *addr;
	const char *why; /* NULL: valid */
} addresses[] = {
	{ "joy@example.net", NULL },
	{ "Joy.Lee+news@mail.Example.NET", NULL },
	{ "o'brien@example.ie", NULL },
	{ "a!#$%&'*+-/=?^_`{|}~@example.net", NULL },
	{ "joy@[127.0.0.1]", NULL },
	{ "joy@[IPv6:2001:db8::1]", NULL },
	{ "\"quoted\"@example.net", NULL },
	{ "\"a@b\"@example.net", NULL },
	{ "\"a\\\"b\"@example.net", NULL },
	{ "joy@xn--bcher-kva.example", NULL },
	{ "", "empty address" },
	{ "joy", "missing @" },
	{ "joy@@x", "more than one @" },
	{ "joy@example.net@example.org", "more than one @" },
	{ "@example.net", "empty local part" },
	{ "joy@", "empty domain" },
	{ "a b@example.net", "space in local part" },
	{ "joy.@example.net", "local part ends with a dot" },
	{ ".joy@example.net", "local part starts with a dot" },
	{ "jo..y@example.net", "consecutive dots in local part" },
	{ "jo(y)@example.net", "invalid character '(' in local part" },
	{ "Joy <joy@example.net>", "space in local part" },
	{ "joy@example", "domain has no dot: a bare host name only reaches a machine on the local network" },
	{ "joy@localhost", "localhost is the machine herald runs on, not a reader's mail domain" },
	{ "joy@LocalHost", "localhost is the machine herald runs on, not a reader's mail domain" },
	{ "joy@app.localhost", "localhost is the machine herald runs on, not a reader's mail domain" },
	{ "joy@example..net", "empty label in domain" },
	{ "joy@example.net.", "empty label in domain" },
	{ "joy@-example.net", "domain label starts or ends with a hyphen" },
	{ "joy@exa_mple.net", "invalid character '_' in domain" },
	{ "joy@1.2.3.4", "numeric top-level domain" },
	{ "joy@[127.0.0.256]", "invalid IPv4 literal" },
	{ "joy@[IPv6:zz::1]", "invalid IPv6 literal" },
	{ "joy@[127.0.0.1", "unterminated address literal" },
	{ "\"a b\"@example.net", "space in quoted local part" },
	{ "\"\"@example.net", "empty local part" },
	/* Legal in RFC 5321, but libetpan (which writes our headers) refuses. */
	{ "\"a,b\"@example.net", "not a plain RFC 5322 address" },
	{ "\"joy@example.net", "unterminated quoted local part" },
	{ "\"joy\"x@example.net", "text after quoted local part" },
	{ "\"jo\ry\"@example.net", "line break in quoted local part" },
	{ "jörg@example.net", "non-ASCII address (SMTPUTF8 is not supported)" },
	{ "joy@bücher.example", "non-ASCII address (SMTPUTF8 is not supported)" },
	{ "joy\t@example.net", "control character 0x09 in local part" },
};

static void test_valid_address(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(addresses) / sizeof(addresses[0]); i++) {
		char why[128] = "";
		int rc = addr_valid(addresses[i].addr, why, sizeof(why));

		if (rc != (addresses[i].why ? -1 : 0) ||
		    (addresses[i].why && strcmp(why, addresses[i].why)))
			fail_msg("%s: got %d \"%s\", want \"%s\"",
				 addresses[i].addr, rc, why,
				 addresses[i].why ? addresses[i].why : "ok");
	}
}

/* Appends n copies of c to s. */
static void pad(char *s, char c, size_t n)
{
	size_t len = strlen(s);

	memset(s + len, c, n);
	s[len + n] = '\0';
}

static void test_lengths(void **state)
{
	char addr[512] = "";
	char why[128];

	(void)state;
	pad(addr, 'a', 64);
	strcat(addr, "@example.net");
	assert_int_equal(addr_valid(addr, why, sizeof(why)), 0);
	addr[0] = '\0';
	pad(addr, 'a', 65);
	strcat(addr, "@example.net");
	assert_int_equal(addr_valid(addr, why, sizeof(why)), -1);
	assert_string_equal(why, "local part longer than 64 octets");

	strcpy(addr, "joy@");
	pad(addr, 'b', 63);
	strcat(addr, ".net");
	assert_int_equal(addr_valid(addr, why, sizeof(why)), 0);
	strcpy(addr, "joy@");
	pad(addr, 'b', 64);
	strcat(addr, ".net");
	assert_int_equal(addr_valid(addr, why, sizeof(why)), -1);
	assert_string_equal(why, "domain label longer than 63 octets");

	/* 60 + 1 + 4 * 51 + 3 = 268 octets, each part within its limit. */
	addr[0] = '\0';
	pad(addr, 'a', 60);
	strcat(addr, "@");
	for (int i = 0; i < 4; i++) {
		pad(addr, 'c', 50);
		strcat(addr, ".");
	}
	strcat(addr, "net");
	assert_int_equal(addr_valid(addr, why, sizeof(why)), -1);
	assert_string_equal(why, "address longer than 254 octets");

	strcpy(addr, "joy@");
	for (int i = 0; i < 5; i++) {
		pad(addr, 'c', 50);
		strcat(addr, ".");
	}
	strcat(addr, "net");
	assert_int_equal(addr_valid(addr, why, sizeof(why)), -1);
	assert_string_equal(why, "domain longer than 255 octets");
}

static void test_invalid_address_rows(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "name,email\n"
		    "Joy,joy@@x\n"
		    "Ann,jörg@example.net\n"
		    "Bo,  \n"
		    "Cy,cy@example.org\n");
	expect_status(fx, SUBS_BAD, "2: invalid address \"joy@@x\": more than one @");
	expect_status(fx, SUBS_BAD, "3: invalid address \"jörg@example.net\": "
				    "non-ASCII address (SMTPUTF8 is not supported)");
	expect_status(fx, SUBS_BAD, "4: invalid address \"\": empty address");
	expect_row(fx, "cy@example.org", "Cy", 5);
	expect_end(fx);
}

/* A hostile address is shown escaped and cut short in the message, so
 * the reason stays readable and no escape reaches the terminal. */
static void test_address_shown_safely(void **state)
{
	struct fixture *fx = *state;
	char *data = malloc(200000);

	assert_non_null(data);
	strcpy(data, "email\n\x1b[2Jjoy@example.net\n");
	size_t o = strlen(data);
	memset(data + o, 'x', 4000);
	strcpy(data + o + 4000, "@example.net\n");
	open_ok(fx, data);
	expect_status(fx, SUBS_BAD, "2: invalid address \"\\x1b[2Jjoy@example.net\": "
				    "control character 0x1b in local part");
	struct subs_row row;

	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)), SUBS_BAD);
	assert_non_null(strstr(fx->err, ":3: invalid address \"xxxxxxxx"));
	assert_non_null(strstr(fx->err, "...\": local part longer than 64 octets"));
	assert_true(strlen(fx->err) < 200);
	expect_end(fx);
	free(data);
}

/* Fields have a size cap (the name a smaller one: it is a header), and
 * text that is not UTF-8 is refused by the reader, so check and send
 * give one verdict. */
static void test_field_caps_and_utf8(void **state)
{
	struct fixture *fx = *state;
	size_t big = 1024 * 1024 + 1;
	char *data = malloc(big + 1000);

	assert_non_null(data);
	strcpy(data, "email,name,city\nann@example.net,");
	size_t o = strlen(data);
	memset(data + o, 'n', 300);
	o += 300;
	strcpy(data + o, ",Oslo\nbob@example.net,Bob,");
	o += strlen(data + o);
	memset(data + o, 'c', big);
	o += big;
	strcpy(data + o, "\ncat@example.net,Fran\xe7oise,Paris\ndan@example.net,Dan,Lima\n");
	open_ok(fx, data);
	expect_status(fx, SUBS_BAD, "2: the name field is 300 bytes; at most 256 (it goes into the To header)");
	expect_status(fx, SUBS_BAD, "3: the city field is 1048577 bytes; at most 1048576");
	expect_status(fx, SUBS_BAD, "4: the name field is not UTF-8 (save the list as UTF-8, "
				    "e.g. iconv -f WINDOWS-1252 -t UTF-8)");
	struct subs_row row;
	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)), SUBS_ROW);
	assert_string_equal(row.email, "dan@example.net");
	expect_end(fx);
	free(data);
}

static void test_control_in_column_name(void **state)
{
	struct fixture *fx = *state;

	expect_open_fails(fx, "email,na\x1bme\njoy@example.net,Joy\n", SUBS_FATAL,
			  "1: control character 0x1b in the name of column 2");
}

static void test_duplicates(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "email\n"
		    "Joy@Example.net\n"
		    "ann@example.org\n"
		    "joy@example.NET\n"
		    "\"JOY@EXAMPLE.NET \"\n"
		    "bo@example.org\n");
	expect_row(fx, "Joy@Example.net", "", 2);
	expect_row(fx, "ann@example.org", "", 3);
	expect_status(fx, SUBS_BAD,
		      "4: duplicate address joy@example.NET (first on line 2)");
	expect_status(fx, SUBS_BAD,
		      "5: duplicate address JOY@EXAMPLE.NET (first on line 2)");
	expect_row(fx, "bo@example.org", "", 6);
	expect_end(fx);
}

static void test_status(void **state)
{
	struct fixture *fx = *state;
	struct subs_row row;

	open_ok(fx, "email,name,status\n"
		    "a@example.net,A,subscribed\n"
		    "b@example.net,B,Subscribed\n"
		    "c@example.net,C,\n"
		    "d@example.net,D,unsubscribed\n"
		    "e@example.net,E, SUBSCRIBED \n"
		    "not an address,F,bounced\n"
		    "D@example.net,D again,subscribed\n");
	expect_row(fx, "a@example.net", "A", 2);
	expect_row(fx, "b@example.net", "B", 3);
	expect_row(fx, "c@example.net", "C", 4);
	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_INACTIVE);
	assert_string_equal(row.email, "d@example.net");
	assert_string_equal(row.name, "D");
	assert_string_equal(row.fields[2], "unsubscribed");
	assert_int_equal(row.line, 5);
	expect_row(fx, "e@example.net", "E", 6);
	/* Inactive rows are skipped quietly, even with a bad address... */
	assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
			 SUBS_INACTIVE);
	assert_int_equal(row.line, 7);
	/* ...but an unsubscribe is not undone by a later row. */
	expect_status(fx, SUBS_BAD,
		      "8: duplicate address D@example.net (first on line 5)");
	expect_end(fx);
}

static void test_no_email_column(void **state)
{
	struct fixture *fx = *state;

	expect_open_fails(fx, " Name ,E-Mail,status\njoy@example.net,Joy,\n",
			  SUBS_FATAL,
			  "1: no \"email\" column (columns: name, e-mail, status)");
}

static void test_empty_file(void **state)
{
	struct fixture *fx = *state;

	expect_open_fails(fx, "", SUBS_FATAL,
			  "1: no \"email\" column (the file is empty)");
}

static void test_duplicate_column(void **state)
{
	struct fixture *fx = *state;

	expect_open_fails(fx, "email,name,city,NAME \n", SUBS_FATAL,
			  "1: duplicate column \"name\" (columns 2 and 4)");
}

static void test_missing_file(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(subs_open(&fx->r, "/nonexistent/herald/subs.csv", 0,
				   fx->err, sizeof(fx->err)),
			 SUBS_NOFILE);
	assert_null(fx->r);
	assert_string_equal(fx->err, "/nonexistent/herald/subs.csv: "
				     "No such file or directory");
}

static void test_line_breaks_and_nul(void **state)
{
	struct fixture *fx = *state;
	static const char csv[] =
		"email,name,note\n"
		"joy@example.net,\"Joy\nLee\",x\n"
		"ann@example.org,\"Ann\rLee\",x\n"
		"\"bo@example.org\r\nBcc: eve@example.com\",Bo,x\n"
		"cy@example.org,Cy,a\0b\n"
		"di@example.org,Di,\"multi\nline notes are fine\"\n";

	write_fixture_n(fx, csv, sizeof(csv) - 1);
	assert_int_equal(subs_open(&fx->r, fx->path, 0, fx->err, sizeof(fx->err)),
			 0);
	expect_status(fx, SUBS_BAD, "2: line break in the name field");
	expect_status(fx, SUBS_BAD, "4: line break in the name field");
	expect_status(fx, SUBS_BAD, "5: line break in the email field");
	expect_status(fx, SUBS_BAD, "7: NUL byte in the note field");
	expect_row(fx, "di@example.org", "Di", 8);
	expect_end(fx);
}

static void test_syntax_error_is_fatal(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "email,name\n"
		    "joy@example.net,Joy\n"
		    "ann@example.org,Ann \"The Ace\" Lee\n"
		    "bo@example.org,Bo\n");
	expect_row(fx, "joy@example.net", "Joy", 2);
	expect_status(fx, SUBS_FATAL,
		      "3: CSV syntax error: quote inside an unquoted field");
	/* Fatal is sticky: nothing after it can be trusted. */
	expect_status(fx, SUBS_FATAL,
		      "3: CSV syntax error: quote inside an unquoted field");
}

static void test_syntax_error_in_multiline_record(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "email,name\n"
		    "joy@example.net,\"Joy\n"
		    "\"The Ace\" Lee\"\n");
	expect_status(fx, SUBS_FATAL,
		      "3: CSV syntax error: text after a closing quote (quotes "
		      "inside a quoted field must be doubled) (record starts "
		      "on line 2)");
}

static void test_unclosed_quote_at_eof(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "email,name\n"
		    "joy@example.net,Joy\n"
		    "ann@example.org,\"Ann\n"
		    "bo@example.org,Bo\n");
	expect_row(fx, "joy@example.net", "Joy", 2);
	expect_status(fx, SUBS_FATAL,
		      "3: CSV syntax error: quoted field not closed before the "
		      "end of the file");
}

/* Enough rows to cross several 64 KiB chunks, with multi-line fields and
 * CRLF every so often so that chunk edges land inside them. */
static void test_large_file(void **state)
{
	struct fixture *fx = *state;
	struct buf b = {0};
	struct subs_row row;
	enum { N = 10000 };
	long line = 2;

	assert_int_equal(buf_adds(&b, "\xef\xbb\xbf" "email,name,note\r\n"), 0);
	for (int i = 0; i < N; i++) {
		if (i % 7 == 0)
			assert_int_equal(buf_printf(&b, "user%d@example.net,User %d,\"a\nb, "
				   "\"\"c\"\"\r\nd\"\r\n", i, i), 0);
		else
			assert_int_equal(buf_printf(&b, "User%d@Example.NET,\"User %d\",plain\n",
				   i, i), 0);
		if (i % 1000 == 999)
			assert_int_equal(buf_adds(&b, "\n"), 0);
	}
	write_fixture_n(fx, b.p, b.len);
	assert_true(b.len > 4 * 64 * 1024);
	buf_free(&b);
	assert_int_equal(subs_open(&fx->r, fx->path, 0, fx->err, sizeof(fx->err)),
			 0);
	for (int i = 0; i < N; i++) {
		char email[64], name[64];

		assert_int_equal(subs_next(fx->r, &row, fx->err,
					   sizeof(fx->err)), SUBS_ROW);
		snprintf(email, sizeof(email), i % 7 ? "User%d@Example.NET" :
			 "user%d@example.net", i);
		snprintf(name, sizeof(name), "User %d", i);
		assert_string_equal(row.email, email);
		assert_string_equal(row.name, name);
		assert_int_equal(row.line, line);
		if (i % 7 == 0)
			assert_string_equal(row.fields[2], "a\nb, \"c\"\r\nd");
		line += i % 7 == 0 ? 3 : 1;
		if (i % 1000 == 999)
			line++;
	}
	expect_end(fx);
}

/* ---- lists as spreadsheets export them ---------------------------------- */

#define UTF16_FIX "the list is UTF-16 (Excel's \"Unicode Text\"), herald reads UTF-8: " \
	"export it as \"CSV UTF-8\", or convert it: iconv -f %s -t UTF-8 %%1$s > utf8.csv"

static void test_utf16_refused(void **state)
{
	struct fixture *fx = *state;
	/* Excel's "Unicode Text": UTF-16LE, BOM, tabs, CRLF */
	static const char le_bom[] = "\xff\xfe" "e\0m\0a\0i\0l\0\t\0n\0a\0m\0e\0\r\0\n\0"
				     "j\0o\0y\0@\0x\0.\0n\0e\0t\0\t\0J\0o\0y\0\r\0\n\0";
	char want[600];

	snprintf(want, sizeof want, "%%1$s:1: " UTF16_FIX " (its fields are separated by tabs: "
		 "also set subscribers_delimiter = \"\\t\")", "UTF-16");
	expect_open_fails_n(fx, le_bom, sizeof le_bom - 1, 0, SUBS_FATAL, want);
}

static void test_utf16_without_bom(void **state)
{
	struct fixture *fx = *state;
	static const char le[] = "e\0m\0a\0i\0l\0,\0n\0a\0m\0e\0\n\0";
	static const char be[] = "\0e\0m\0a\0i\0l\0\t\0n\0a\0m\0e\0\n";
	char want[600];

	/* With the tab delimiter set already, no hint to set it. */
	snprintf(want, sizeof want, "%%1$s:1: " UTF16_FIX, "UTF-16BE");
	expect_open_fails_n(fx, be, sizeof be - 1, '\t', SUBS_FATAL, want);
	unlink(fx->path);
	snprintf(want, sizeof want, "%%1$s:1: " UTF16_FIX, "UTF-16LE");
	expect_open_fails_n(fx, le, sizeof le - 1, 0, SUBS_FATAL, want);
}

#define CP_FIX "the list is not UTF-8 (byte 0x%s); it looks like Windows-1252 or Latin-1: " \
	"export it as \"CSV UTF-8\" (LibreOffice: character set \"Unicode (UTF-8)\"), or " \
	"convert it: iconv -f WINDOWS-1252 -t UTF-8 %%1$s > utf8.csv"

static void test_codepage_refused(void **state)
{
	struct fixture *fx = *state;
	/* Excel's "CSV (Comma delimited)" on Windows: cp1252, CRLF; 0x80 is the euro sign */
	static const char cp[] = "email,name,note\r\njoy@example.net,Joy,ok\r\n"
				 "fran@example.net,Fran\xe7oise,\x80 5\r\n";
	char want[600];

	snprintf(want, sizeof want, "%%1$s:3: " CP_FIX, "E7");
	expect_open_fails_n(fx, cp, sizeof cp - 1, 0, SUBS_FATAL, want);
	unlink(fx->path);
	/* In the header row too. */
	snprintf(want, sizeof want, "%%1$s:1: " CP_FIX, "E9");
	expect_open_fails_n(fx, "email,pr\xe9nom\njoy@example.net,Joy\n", 33, 0, SUBS_FATAL, want);
}

/* Past the first 64 KiB chunk, which is what is looked at. */
static void test_codepage_refused_large(void **state)
{
	struct fixture *fx = *state;
	size_t size = 200 * 1024, o;
	char *data = malloc(size + 100), want[600];

	assert_non_null(data);
	strcpy(data, "email,name\njoy@example.net,Ren\xe9\n");
	for (o = strlen(data); o < size; o += 21)
		memcpy(data + o, "\"x@example.net\",Xavi\n", 21);
	data[o] = '\0';
	snprintf(want, sizeof want, "%%1$s:2: " CP_FIX, "E9");
	expect_open_fails_n(fx, data, o, 0, SUBS_FATAL, want);
	free(data);
}

/* A UTF-8 list with bad rows is read row by row: one with a valid
 * sequence elsewhere and a pasted Latin-1 name, and one with damaged
 * UTF-8 only (an overlong form: lead and continuation bytes), which is
 * not what a code page looks like. */
static void test_utf8_list_with_bad_rows(void **state)
{
	struct fixture *fx = *state;
	static const char *const lists[] = {
		"email,name\nzoe@example.net,Zo\xc3\xab\nfran@example.net,Fran\xe7oise\n"
		"dan@example.net,Dan\n",
		"email,name\nzoe@example.net,Zoe\nbad@example.net,Bob\xe0\x80\xaf\n"
		"dan@example.net,Dan\n"};
	static const char *const zoe[] = {"Zo\xc3\xab", "Zoe"};

	for (size_t i = 0; i < 2; i++) {
		subs_close(fx->r);
		unlink(fx->path);
		open_ok(fx, lists[i]);
		expect_row(fx, "zoe@example.net", zoe[i], 2);
		expect_status(fx, SUBS_BAD, "3: the name field is not UTF-8 (save the list as UTF-8, "
					    "e.g. iconv -f WINDOWS-1252 -t UTF-8)");
		expect_row(fx, "dan@example.net", "Dan", 4);
		expect_end(fx);
	}
	subs_close(fx->r);
	fx->r = NULL;
}

/* The first chunk may end inside a UTF-8 sequence: not a code page. */
static void test_sequence_across_chunks(void **state)
{
	struct fixture *fx = *state;
	size_t chunk = 64 * 1024;
	char *data = malloc(chunk + 100);

	assert_non_null(data);
	strcpy(data, "email,note\njoy@example.net,");
	size_t o = strlen(data);
	memset(data + o, 'x', chunk - 1 - o);
	o = chunk - 1;
	strcpy(data + o, "\xc3\xa9\ndan@example.net,Dan\n");
	write_fixture(fx, data);
	assert_int_equal(subs_open(&fx->r, fx->path, 0, fx->err, sizeof(fx->err)), 0);
	expect_row(fx, "joy@example.net", "", 2);
	expect_row(fx, "dan@example.net", "", 3);
	expect_end(fx);
	free(data);
}

#define SEP_FIX "%%1$s:1: no \"email\" column, but the header looks separated by %s, not %s: " \
	"set subscribers_delimiter = %s in the config (or export the list with %s)"

static void test_delimiter_hint(void **state)
{
	struct fixture *fx = *state;
	char want[600];

	/* LibreOffice and Excel in a locale with a decimal comma */
	snprintf(want, sizeof want, SEP_FIX, "\";\"", "\",\"", "\";\"", "commas");
	expect_open_fails_n(fx, "\xef\xbb\xbf" "Email;Name\r\njoy@example.net;Joy\r\n", 36, 0, SUBS_FATAL,
			    want);
	unlink(fx->path);
	snprintf(want, sizeof want, SEP_FIX, "\"\\t\"", "\",\"", "\"\\t\"", "commas");
	expect_open_fails_n(fx, "name\temail\nJoy\tjoy@example.net\n", 31, 0, SUBS_FATAL, want);
	unlink(fx->path);
	/* The other way round: ";" configured, the file has commas. */
	snprintf(want, sizeof want, SEP_FIX, "\",\"", "\";\"", "\",\"", "\";\"");
	expect_open_fails_n(fx, "email,name\n", 11, ';', SUBS_FATAL, want);
}

static void open_sep(struct fixture *fx, const char *data, char sep)
{
	write_fixture(fx, data);
	assert_int_equal(subs_open(&fx->r, fx->path, sep, fx->err, sizeof(fx->err)), 0);
}

static void test_semicolon_list(void **state)
{
	struct fixture *fx = *state;

	open_sep(fx, "\xef\xbb\xbf" "email;name;city\r\n"
		     "joy@example.net;\"Joy; the first\";Oslo\r\n"
		     "ann@example.org;Ann, Lee;Rome\r\n"
		     "JOY@example.net;Joy again;Oslo\r\n"
		     "bad;x\r\n", ';');
	assert_int_equal(subs_ncols(fx->r), 3);
	expect_row(fx, "joy@example.net", "Joy; the first", 2);
	expect_row(fx, "ann@example.org", "Ann, Lee", 3);
	expect_status(fx, SUBS_BAD, "4: duplicate address JOY@example.net (first on line 2)");
	expect_status(fx, SUBS_BAD, "5: expected 3 fields, found 2");
	expect_end(fx);
}

static void test_tab_list(void **state)
{
	struct fixture *fx = *state;

	/* Excel's "Unicode Text" after iconv: tabs, and empty fields */
	open_sep(fx, "email\tname\tcity\njoy@example.net\t\tOslo\n\tNo One\t\n"
		     "ann@example.org\tAnn\t\n", '\t');
	expect_row(fx, "joy@example.net", "", 2);
	expect_status(fx, SUBS_BAD, "3: invalid address \"\": empty address");
	expect_row(fx, "ann@example.org", "Ann", 4);
	expect_end(fx);
}

/* A second pass after subs_rewind gives every row the first pass's
 * verdict: a duplicate still names its first line, an unsubscribed row
 * still wins over the same address further down, and a BOM is skipped. */
static void test_rewind(void **state)
{
	struct fixture *fx = *state;

	open_ok(fx, "\xef\xbb\xbf" "email,name,status\n"
		"ann@example.org,Ann,\n"
		"Bob@example.org,Bob,unsubscribed\n"
		"ANN@example.org,Ann again,\n"
		"bob@example.org,Bob again,\n"
		"cy@example.org,Cy,\n");
	for (int pass = 0; pass < 2; pass++) {
		expect_row(fx, "ann@example.org", "Ann", 2);
		struct subs_row row;
		assert_int_equal(subs_next(fx->r, &row, fx->err, sizeof(fx->err)),
				 SUBS_INACTIVE);
		expect_status(fx, SUBS_BAD,
			      "4: duplicate address ANN@example.org (first on line 2)");
		expect_status(fx, SUBS_BAD,
			      "5: duplicate address bob@example.org (first on line 3)");
		expect_row(fx, "cy@example.org", "Cy", 6);
		expect_end(fx);
		assert_int_equal(subs_rewind(fx->r, fx->err, sizeof(fx->err)), 0);
	}
}

/* docs/scaling.md's formula, the values computed by Python's hashlib. */
static void test_shard(void **state)
{
	unsigned s;

	(void)state;
	assert_int_equal(subs_shard("reader1@example.net", 3, &s), 0);
	assert_int_equal(s, 3);
	assert_int_equal(subs_shard("Mixed.Case1@Example.NET", 3, &s), 0);
	assert_int_equal(s, 2);
	assert_int_equal(subs_shard("mixed.case1@example.net", 3, &s), 0);
	assert_int_equal(s, 2);
	assert_int_equal(subs_shard("a@b.co", 1000, &s), 0);
	assert_int_equal(s, 377);
	assert_int_equal(subs_shard("a@b.co", 1, &s), 0);
	assert_int_equal(s, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_address_shown_safely),
		T(test_field_caps_and_utf8),
		T(test_control_in_column_name),
		T(test_bom_crlf),
		T(test_quoted_fields),
		T(test_blank_lines_and_no_final_newline),
		T(test_ragged_rows),
		T(test_valid_address),
		T(test_lengths),
		T(test_invalid_address_rows),
		T(test_duplicates),
		T(test_rewind),
		T(test_shard),
		T(test_status),
		T(test_no_email_column),
		T(test_empty_file),
		T(test_duplicate_column),
		T(test_missing_file),
		T(test_line_breaks_and_nul),
		T(test_syntax_error_is_fatal),
		T(test_syntax_error_in_multiline_record),
		T(test_unclosed_quote_at_eof),
		T(test_large_file),
		T(test_utf16_refused),
		T(test_utf16_without_bom),
		T(test_codepage_refused),
		T(test_codepage_refused_large),
		T(test_utf8_list_with_bad_rows),
		T(test_sequence_across_chunks),
		T(test_delimiter_hint),
		T(test_semicolon_list),
		T(test_tab_list),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
