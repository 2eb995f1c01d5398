/* The pages' layout and policy (page.h). */
#include "web/page.h"
#include "compose/template.h"
#include <gnutls/crypto.h>
#include <stdio.h>
#include <string.h>

/* Kept small and in one place: its SHA-256 goes into the CSP. */
static const char style[] =
	":root{color-scheme:light dark}"
	"body{margin:0;background:#f4f4f5;color:#1f2328;"
	"font:17px/1.5 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}"
	"main{box-sizing:border-box;max-width:560px;margin:40px auto;padding:28px 24px;"
	"background:#fff;border-radius:8px}"
	"h1{font-size:24px;line-height:1.25;margin:0 0 16px}"
	"p{margin:0 0 16px}img{max-width:100%;height:auto}"
	"button{font:inherit;font-weight:600;padding:12px 22px;border:0;border-radius:6px;"
	"background:#1f6feb;color:#fff;cursor:pointer}"
	"input[type=email],input[type=text]{box-sizing:border-box;width:100%;font:inherit;"
	"padding:10px;margin:4px 0 16px;border:1px solid #8c959f;border-radius:6px}"
	"label{display:block;font-weight:600}"
	".hp{position:absolute;left:-10000px;width:1px;height:1px;overflow:hidden}"
	"footer{max-width:560px;margin:0 auto 40px;padding:0 24px;color:#57606a;font-size:14px}"
	"@media (max-width:600px){main{margin:0;border-radius:0;padding:24px 16px}"
	"footer{padding:0 16px}}"
	"@media (prefers-color-scheme:dark){body{background:#0d1117;color:#e6edf3}"
	"main{background:#161b22}button{background:#388bfd;color:#0d1117}"
	"input[type=email],input[type=text]{background:#0d1117;color:#e6edf3;border-color:#6e7681}"
	"footer{color:#8b949e}}";

int page_csp(char *csp, size_t len)
{
	unsigned char d[32];
	gnutls_datum_t in = {d, sizeof d}, out = {NULL, 0};
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, style, strlen(style), d) < 0 ||
	    gnutls_base64_encode2(&in, &out) < 0)
		return -1;
	snprintf(csp, len,
		 "default-src 'none'; style-src 'sha256-%.*s'; form-action 'self'; "
		 "frame-ancestors 'none'; base-uri 'none'", (int)out.size, (const char *)out.data);
	gnutls_free(out.data);
	return 0;
}

int page_esc(struct buf *b, const char *s)
{
	return tmpl_escape(b, s, strlen(s), TMPL_HTML);
}

int page_render(struct buf *out, const char *title, const char *list_name,
		const char *body_html)
{
	int rc = buf_adds(out, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
			  "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
			  "<meta name=\"referrer\" content=\"no-referrer\">\n<title>");
	rc |= page_esc(out, title);
	rc |= buf_adds(out, "</title>\n<style>");
	rc |= buf_adds(out, style);
	rc |= buf_adds(out, "</style>\n</head>\n<body>\n<main>\n<h1>");
	rc |= page_esc(out, title);
	rc |= buf_adds(out, "</h1>\n");
	rc |= buf_adds(out, body_html);
	rc |= buf_adds(out, "</main>\n<footer>");
	rc |= page_esc(out, list_name);
	rc |= buf_adds(out, "</footer>\n</body>\n</html>\n");
	return rc ? -1 : 0;
}
