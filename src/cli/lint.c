#include "cli/lint.h"
#include "util/buf.h"
#include "compose/template.h"
#include "compose/figure.h"
#include <cmark-gfm.h>
#include <cmark-gfm-core-extensions.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

__attribute__((format(printf, 5, 6)))
static int add(struct lint *l, enum lint_level lv, enum lint_area area,
	       const char *where, const char *fmt, ...)
{
	if (l->n == l->cap) {
		size_t nc = l->cap ? l->cap * 2 : 16;
		struct lint_item *ni = realloc(l->items, nc * sizeof *ni);
		if (!ni)
			return -1;
		l->items = ni;
		l->cap = nc;
	}
	char *msg;
	va_list ap;
	va_start(ap, fmt);
	int k = vasprintf(&msg, fmt, ap);
	va_end(ap);
	char *w = xstrdup(where);
	if (k < 0 || !w) {
		if (k >= 0)
			free(msg);
		free(w);
		return -1;
	}
	l->items[l->n++] = (struct lint_item){lv, area, w, msg};
	if (lv == LINT_ERROR)
		l->errors++;
	else
		l->warnings++;
	return 0;
}

static void at_line(char *out, size_t len, const char *file, int line)
{
	if (line > 0)
		snprintf(out, len, "%s:%d", file, line);
	else
		snprintf(out, len, "%s", file);
}

/* ---- merge fields -------------------------------------------------------- */

struct field_visit {
	struct lint *l;
	enum lint_area area;
	const char *file;
	int *uses_unsub;
};

static int visit_field(void *arg, const struct tmpl_field *f, const char *problem)
{
	struct field_visit *v = arg;
	if (!problem) {
		if (v->uses_unsub && f->kind == TMPL_FIELD && f->nlen == 15 &&
		    !strncasecmp(f->name, "unsubscribe_url", 15))
			*v->uses_unsub = 1;
		return 0;
	}
	char where[600];
	at_line(where, sizeof where, v->file, f->line);
	v->l->field_errors++;
	return add(v->l, LINT_ERROR, v->area, where, "%s", problem);
}

/* Every merge field in src, lines counted from line0 (0: no line), read
 * by template.c's scanner and judged in its words, so check says what
 * send and preview say; *uses_unsub set when {{unsubscribe_url}} is
 * among them. allow_body: {{body}} is known (a layout template). */
static int scan_fields(struct lint *l, enum lint_area area, const char *file,
		       int line0, const char *src, const char *const *fields,
		       size_t nfields, int allow_body, int *uses_unsub)
{
	const char **names = malloc((nfields + 1) * sizeof *names);
	if (!names)
		return -1;
	memcpy(names, fields, nfields * sizeof *names);
	names[nfields] = "body";
	struct tmpl_names tn = {names, nfields + (allow_body ? 1 : 0)};
	struct field_visit v = {l, area, file, uses_unsub};
	int rc = tmpl_check(src, strlen(src), line0, &tn, visit_field, &v);
	free(names);
	return rc < 0 ? -1 : 0;
}

/* ---- links and images ---------------------------------------------------- */

int lint_vague_link_text(const char *text)
{
	static const char *const vague[] = {
		"click here", "click", "here", "this", "link", "this link",
		"click this link", "click on this link", "click on this", "go here",
		"read here", "more", "read more", "more here", "learn more", NULL};
	char norm[64];
	size_t n = 0;
	int space = 0;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (isalnum(*p)) {
			if (space && n)
				norm[n++] = ' ';
			space = 0;
			norm[n++] = (char)tolower(*p);
		} else if (*p >= 0x80) {
			return 0; /* not one of the English stock phrases */
		} else
			space = 1;
		if (n >= sizeof norm - 2)
			return 0;
	}
	norm[n] = '\0';
	for (const char *const *v = vague; *v; v++)
		if (!strcmp(norm, *v))
			return 1;
	return 0;
}

const char *lint_url_problem(const char *url, int image)
{
	while (isspace((unsigned char)*url))
		url++;
	if (!strncmp(url, "{{", 2))
		return NULL; /* a merge field: its value is checked elsewhere */
	if (!*url)
		return "empty URL";
	size_t i = 0;
	if (isalpha((unsigned char)url[0]))
		while (isalnum((unsigned char)url[i]) || (url[i] && strchr("+-.", url[i])))
			i++;
	if (i == 0 || url[i] != ':')
		return "relative URL: a mail client has no page to resolve it against; write https://...";
	if (!strncasecmp(url, "https://", 8))
		return url[8] && url[8] != '/' ? NULL : "https URL without a host";
	if (!strncasecmp(url, "http:", 5))
		return image ? "http: image: mail clients block or warn on insecure images; use https://"
			     : "http: link: use https:// (filters and readers distrust plain http)";
	if (!image && (!strncasecmp(url, "mailto:", 7) || !strncasecmp(url, "tel:", 4)))
		return NULL;
	return image ? "image source is not https://: most mail clients will not load it"
		     : "link is not https://, mailto: or tel:";
}

/* The plain text under n (a link's words, an image's alt). */
BUF_MUST static int inline_text(cmark_node *n, struct buf *out)
{
	cmark_iter *it = cmark_iter_new(n);
	if (!it)
		return -1;
	cmark_event_type ev;
	int rc = 0;
	while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		cmark_node *c = cmark_iter_get_node(it);
		cmark_node_type t = cmark_node_get_type(c);
		if (ev == CMARK_EVENT_ENTER && (t == CMARK_NODE_TEXT || t == CMARK_NODE_CODE) &&
		    buf_adds(out, cmark_node_get_literal(c)) < 0)
			rc = -1;
		else if (ev == CMARK_EVENT_ENTER && (t == CMARK_NODE_SOFTBREAK || t == CMARK_NODE_LINEBREAK) &&
			 buf_addc(out, ' ') < 0)
			rc = -1;
	}
	cmark_iter_free(it);
	return rc;
}

/* Inline nodes may lack a position; their block has one. */
static int node_line(cmark_node *n)
{
	for (; n; n = cmark_node_parent(n))
		if (cmark_node_get_start_line(n) > 0)
			return cmark_node_get_start_line(n);
	return 0;
}

static int blank(const char *s)
{
	for (; *s; s++)
		if (!isspace((unsigned char)*s))
			return 0;
	return 1;
}

static int check_node(struct lint *l, const struct post *p, cmark_node *n)
{
	cmark_node_type t = cmark_node_get_type(n);
	int image = t == CMARK_NODE_IMAGE;
	char where[600];
	at_line(where, sizeof where, p->path, p->body_line + node_line(n) - 1);
	const char *url = cmark_node_get_url(n);
	const char *why = lint_url_problem(url ? url : "", image);
	if (why && add(l, LINT_ERROR, LINT_POST, where, "%s (%s \"%s\")", why,
		       image ? "image" : "link", url ? url : "") < 0)
		return -1;
	struct buf text = {0};
	if (inline_text(n, &text) < 0) {
		buf_free(&text);
		return -1;
	}
	const char *s = buf_cstr(&text);
	int rc = 0;
	if (image && blank(s))
		rc = add(l, LINT_ERROR, LINT_POST, where,
			 "image without alt text: write ![what the picture shows](%s); "
			 "many readers see the text before (or instead of) the image", url ? url : "");
	else if (!image && lint_vague_link_text(s))
		rc = add(l, LINT_ERROR, LINT_POST, where,
			 "the link text \"%s\" says nothing of where it goes: link the words that name it", s);
	buf_free(&text);
	return rc;
}

/* The line under an image that figure.c cannot take for a caption nor
 * for text apart from it: the reader would see it joined to the image. */
static int check_caption(struct lint *l, const struct post *p, cmark_node *para)
{
	cmark_node *cap;
	if (figure_of(para, &cap) != FIGURE_UNCLEAR)
		return 0;
	cmark_node *img = cmark_node_first_child(para);
	const char *url = cmark_node_get_url(img);
	char where[600];
	at_line(where, sizeof where, p->path, p->body_line + node_line(para) - 1);
	return add(l, LINT_WARNING, LINT_POST, where,
		   "cannot tell whether this line is the caption of the image above it (%s): "
		   "write a caption as one emphasised line, *Photo: ...*, or leave a blank line "
		   "between the image and the text", url ? url : "");
}

static int lint_links(struct lint *l, const struct post *p)
{
	cmark_gfm_core_extensions_ensure_registered();
	cmark_parser *ps = cmark_parser_new(CMARK_OPT_DEFAULT);
	if (!ps)
		return -1;
	/* The extensions that make links: autolink turns www.x and bare
	 * addresses into links the reader will get. */
	static const char *const exts[] = {"autolink", "table", "strikethrough"};
	for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
		cmark_syntax_extension *e = cmark_find_syntax_extension(exts[i]);
		if (e)
			cmark_parser_attach_syntax_extension(ps, e);
	}
	cmark_parser_feed(ps, p->markdown, strlen(p->markdown));
	cmark_node *doc = cmark_parser_finish(ps);
	cmark_parser_free(ps);
	if (!doc)
		return -1;
	cmark_iter *it = cmark_iter_new(doc);
	int rc = it ? 0 : -1;
	cmark_event_type ev;
	while (it && !rc && (ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
		cmark_node *n = cmark_iter_get_node(it);
		cmark_node_type t = cmark_node_get_type(n);
		if (ev == CMARK_EVENT_ENTER && (t == CMARK_NODE_LINK || t == CMARK_NODE_IMAGE))
			rc = check_node(l, p, n);
		else if (ev == CMARK_EVENT_ENTER && t == CMARK_NODE_PARAGRAPH)
			rc = check_caption(l, p, n);
	}
	if (it)
		cmark_iter_free(it);
	cmark_node_free(doc);
	return rc;
}

static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* A control character in a front matter value: the mail carries it, but
 * the archive's pages and feed drop it (XML cannot hold one), so what the
 * author wrote is not what the web shows. */
static int front_controls(struct lint *l, const struct post *p, const char *key,
			  const char *v, int line)
{
	unsigned c = 0;
	for (const unsigned char *q = (const unsigned char *)(v ? v : ""); *q && !c; q++)
		if ((*q < 0x20 && *q != '\t') || *q == 0x7F)
			c = *q;
	if (!c)
		return 0;
	char where[600];
	at_line(where, sizeof where, p->path, line);
	return add(l, LINT_WARNING, LINT_POST, where,
		   "%s: holds the control character U+%04X; the archive's pages and Atom feed "
		   "leave it out (XML has no way to write it): delete it", key, c);
}

int lint_post(struct lint *l, const struct post *p, const char *const *fields,
	      size_t nfields)
{
	if (front_controls(l, p, "subject", p->subject, p->subject_line) < 0 ||
	    front_controls(l, p, "preheader", p->preheader, p->preheader_line) < 0 ||
	    front_controls(l, p, "date", p->date, p->date_line) < 0)
		return -1;
	char where[600];
	snprintf(where, sizeof where, "%s: subject", p->path);
	if (scan_fields(l, LINT_POST, where, 0, p->subject, fields, nfields, 0, NULL) < 0)
		return -1;
	snprintf(where, sizeof where, "%s: preheader", p->path);
	if (scan_fields(l, LINT_POST, where, 0, p->preheader, fields, nfields, 0, NULL) < 0)
		return -1;
	/* The fields the post's renderer kept (not those in code), at their
	 * lines: what send and preview check too. */
	for (size_t i = 0; i < p->nfields; i++)
		if (scan_fields(l, LINT_POST, p->path, p->fields[i].line, p->fields[i].text, fields,
				nfields, 0, NULL) < 0)
			return -1;
	if (!*p->preheader &&
	    add(l, LINT_WARNING, LINT_POST, p->path,
		"no preheader: inboxes will show the post's first words next to the subject "
		"(add \"preheader: ...\" to the front matter)") < 0)
		return -1;
	return lint_links(l, p);
}

/* href="..." and src="..." in a template, outside comments. */
static int lint_attrs(struct lint *l, const char *path, const char *src)
{
	int line = 1;
	for (const char *p = src; *p; p++) {
		if (*p == '\n') {
			line++;
			continue;
		}
		if (!strncmp(p, "<!--", 4)) {
			const char *e = strstr(p, "-->");
			for (const char *q = p; q < (e ? e : p + strlen(p)); q++)
				line += *q == '\n';
			if (!e)
				break;
			p = e + 2;
			continue;
		}
		if (!strncasecmp(p, "<img", 4) && (isspace((unsigned char)p[4]) || p[4] == '>' || p[4] == '/')) {
			const char *end = strchr(p, '>');
			size_t tl = end ? (size_t)(end - p) : strlen(p);
			int alt = 0;
			for (size_t i = 4; i + 4 <= tl && !alt; i++)
				alt = isspace((unsigned char)p[i - 1]) && !strncasecmp(p + i, "alt=", 4);
			char where[600];
			at_line(where, sizeof where, path, line);
			if (!alt && add(l, LINT_ERROR, LINT_TEMPLATE, where,
					"image without alt text: give the <img> an alt=\"...\" (alt=\"\" if it is decoration)") < 0)
				return -1;
		}
		int image = !strncasecmp(p, "src=", 4);
		size_t kl = image ? 4 : !strncasecmp(p, "href=", 5) ? 5 : 0;
		if (!kl || p == src || !isspace((unsigned char)p[-1]))
			continue;
		char q = p[kl];
		if (q != '"' && q != '\'')
			continue;
		const char *v = p + kl + 1, *ve = strchr(v, q);
		if (!ve)
			continue;
		char *url = xstrndup(v, (size_t)(ve - v));
		if (!url)
			return -1;
		const char *why = lint_url_problem(url, image);
		char where[600];
		at_line(where, sizeof where, path, line);
		int rc = why ? add(l, LINT_ERROR, LINT_TEMPLATE, where, "%s (\"%s\")", why, url) : 0;
		free(url);
		if (rc < 0)
			return -1;
		p = ve;
	}
	return 0;
}

int lint_template(struct lint *l, const char *path, const char *src, int html,
		  const char *const *fields, size_t nfields)
{
	int unsub = 0;
	if (scan_fields(l, LINT_TEMPLATE, path, 1, src, fields, nfields, 1, &unsub) < 0)
		return -1;
	if (!unsub && add(l, LINT_ERROR, LINT_TEMPLATE, path,
			  "no {{unsubscribe_url}}: every message must show its reader a way out "
			  "(Gmail and Yahoo require it of bulk senders)") < 0)
		return -1;
	return html ? lint_attrs(l, path, src) : 0;
}

static const char *domain_of(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : addr;
}

int lint_config(struct lint *l, const struct config *c)
{
	const char *from_dom = domain_of(c->from_addr);
	if (!c->unsub.url && !c->unsub.mailto &&
	    add(l, LINT_ERROR, LINT_CONFIG, c->path,
		"no unsubscribe.url nor unsubscribe.mailto: readers need a way out, and "
		"List-Unsubscribe (RFC 2369, RFC 8058) is what mailbox providers look for") < 0)
		return -1;
	if (c->unsub.url && strncmp(c->unsub.url, "https://", 8) &&
	    add(l, LINT_ERROR, LINT_CONFIG, c->path,
		"unsubscribe.url is not https://: one-click unsubscribe (RFC 8058) needs https") < 0)
		return -1;
	const char *secret;
	char ignored[300];
	if (c->unsub.mailto && config_secret(c, &secret, ignored, sizeof ignored) < 0 &&
	    add(l, LINT_WARNING, LINT_CONFIG, c->path,
		"$%s is not set: the unsubscribe mailto names the reader's address without a token, so "
		"a reader who writes from another address than the one subscribed cannot unsubscribe by "
		"mail; export %s=$(openssl rand -hex 32) for send and subscribers unsubscribe alike",
		c->unsub.secret_env, c->unsub.secret_env) < 0)
		return -1;
	if (!c->postal_address &&
	    add(l, LINT_WARNING, LINT_CONFIG, c->path,
		"no postal_address: commercial mail must show a physical address (CAN-SPAM; many "
		"other laws and providers expect one); set postal_address = \"...\" and the default "
		"templates put it in the footer") < 0)
		return -1;
	if (!c->dkim.domain)
		return add(l, LINT_WARNING, LINT_CONFIG, c->path,
			   "no DKIM for %s: add dkim = { domain = \"%s\"; selector = \"...\"; key_file = \"...\"; } "
			   "(Gmail and Yahoo expect bulk mail to be signed)", from_dom, from_dom);
	size_t fl = strlen(from_dom), dl = strlen(c->dkim.domain);
	int aligned = !strcasecmp(from_dom, c->dkim.domain) ||
		      (fl > dl && from_dom[fl - dl - 1] == '.' && !strcasecmp(from_dom + fl - dl, c->dkim.domain));
	if (!aligned && add(l, LINT_WARNING, LINT_CONFIG, c->path,
			    "dkim.domain %s is not the From domain %s nor a parent of it: the signature "
			    "will not count for DMARC", c->dkim.domain, from_dom) < 0)
		return -1;
	struct stat st;
	if (stat(c->dkim.key_file, &st) == 0 && (st.st_mode & 077) &&
	    add(l, LINT_WARNING, LINT_CONFIG, c->path,
		"dkim.key_file %s can be read by others; run: chmod 600 %s",
		c->dkim.key_file, c->dkim.key_file) < 0)
		return -1;
	return 0;
}

int lint_message(struct lint *l, const char *what, size_t bytes, const char *subject)
{
	if (bytes > LINT_CLIP_BYTES &&
	    add(l, LINT_ERROR, LINT_MESSAGE, what,
		"the message is %zu bytes (%.1f KB); Gmail clips messages over 102 KB, "
		"hiding the rest and the unsubscribe link", bytes, bytes / 1024.0) < 0)
		return -1;
	size_t n = utf8_chars(subject);
	if (n > LINT_SUBJECT_CHARS &&
	    add(l, LINT_WARNING, LINT_MESSAGE, what,
		"the subject is %zu characters; inboxes show about 40 to 60, and over %d it "
		"has to be folded", n, LINT_SUBJECT_CHARS) < 0)
		return -1;
	return 0;
}

void lint_free(struct lint *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->items[i].where);
		free(l->items[i].msg);
	}
	free(l->items);
	memset(l, 0, sizeof *l);
}

int lint_media(struct lint *l, const char *where, const char *what, size_t n, size_t bytes)
{
	if (bytes <= LINT_MEDIA_BYTES)
		return 0;
	return add(l, LINT_WARNING, LINT_MESSAGE, where,
		   "%zu %s%s of %.1f MB in all go to every reader (%.1f MB on the wire in "
		   "Base64); consider %s", n, what, n == 1 ? "" : "s", bytes / 1048576.0,
		   bytes * 4.0 / 3 / 1048576.0,
		   strcmp(what, "attachment") ? "smaller images, or linking to them"
					      : n == 1 ? "linking to the file instead"
						       : "linking to the files instead");
}
