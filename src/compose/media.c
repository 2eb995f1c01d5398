/* Embedded images and attachments (see media.h). */
#include "compose/media.h"
#include <errno.h>
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int image_type(struct media *m, const char *what, char *err, size_t errlen)
{
	int w = 0, h = 0;
	GdkPixbufFormat *f = gdk_pixbuf_get_file_info(m->path, &w, &h);
	gchar **types = f ? gdk_pixbuf_format_get_mime_types(f) : NULL;
	const char *t = types && types[0] ? types[0] : NULL;
	int ok = t && (!strcmp(t, "image/png") || !strcmp(t, "image/jpeg") || !strcmp(t, "image/gif"));
	if (ok && w > 0 && h > 0) {
		m->type = strdup(t);
		m->width = w;
		m->height = h;
	}
	g_strfreev(types);
	if (!ok || w <= 0 || h <= 0)
		return set_err(err, errlen, MEDIA_BAD, "%s %s: not a " MEDIA_IMAGE_TYPES " image%s%s%s "
			       "(mail clients show only these inline; convert it, or link to it with "
			       "an https:// URL)", what, m->path, t ? " (it is " : "", t ? t : "",
			       t ? ")" : "");
	return m->type ? MEDIA_OK : set_err(err, errlen, MEDIA_BAD, "out of memory");
}

static int attachment_type(struct media *m, const char *data, size_t len, char *err,
			   size_t errlen)
{
	magic_t mg = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR);
	const char *t = NULL;
	if (mg && magic_load(mg, NULL) == 0)
		t = magic_buffer(mg, data, len);
	/* A type libmagic cannot tell is still a file a reader can save. */
	m->type = strdup(t ? t : "application/octet-stream");
	if (mg)
		magic_close(mg);
	return m->type ? MEDIA_OK : set_err(err, errlen, MEDIA_BAD, "out of memory");
}

int media_read(struct media *m, enum media_kind kind, const char *path, const char *what,
	       char **data, size_t *len, char *err, size_t errlen)
{
	memset(m, 0, sizeof *m);
	*data = NULL;
	m->kind = kind;
	const char *slash = strrchr(path, '/');
	m->path = strdup(path);
	m->name = strdup(slash ? slash + 1 : path);
	if (!m->path || !m->name)
		return set_err(err, errlen, MEDIA_BAD, "out of memory");
	char eb[128]; /* strerror_r: serve's connection threads read images */
	if (read_file(path, data, len) < 0)
		return set_err(err, errlen, errno == ENOENT ? MEDIA_NOFILE : MEDIA_BAD, "%s %s: %s",
			       what, path, strerror_r(errno, eb, sizeof eb));
	m->size = *len;
	int rc = kind == MEDIA_IMAGE ? image_type(m, what, err, errlen)
				     : attachment_type(m, *data, *len, err, errlen);
	if (rc) {
		free(*data);
		*data = NULL;
	}
	return rc;
}

int media_load(struct media *m, enum media_kind kind, const char *path, const char *what,
	       char *err, size_t errlen)
{
	char *data;
	size_t len;
	int rc = media_read(m, kind, path, what, &data, &len, err, errlen);
	if (rc == MEDIA_OK && buf_add_base64(&m->body, data, len, 76) < 0)
		rc = set_err(err, errlen, MEDIA_BAD, "out of memory");
	free(data);
	return rc;
}

void media_free(struct media *m)
{
	free(m->path);
	free(m->name);
	free(m->type);
	buf_free(&m->body);
	memset(m, 0, sizeof *m);
}
