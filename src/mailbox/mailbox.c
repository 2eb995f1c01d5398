#include "mailbox/mailbox.h"
#include "util/buf.h"
#include "mailbox/mailtls.h"
#include "state/statefile.h"
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libetpan/libetpan.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYWORD "$HeraldDone"

enum kind { MB_MAILDIR, MB_MBOX, MB_IMAP, MB_POP3 };

struct mailbox {
	enum kind kind;
	const struct mailbox_opts *o;
	char *where;            /* SOURCE without credentials, for messages and the seen file */
	char **ids;             /* per listed message: maildir uid, mbox uid, IMAP UID, POP3 index */
	char **keys;            /* seen-file keys (mbox digest, POP3 UIDL) */
	size_t n, cap;
	char action[160];
	struct maildir *md;
	struct mailmbox_folder *mbox;
	mailimap *imap;
	mailpop3 *pop3;
	int keywords;           /* IMAP: the server lets us create $HeraldDone */
	int moved_or_deleted;   /* IMAP/mbox: expunge at close */
	chash *seen;            /* seen-file keys already there */
	int seen_fd;
};

/* ---- helpers ---------------------------------------------------------- */

static int add_item(struct mailbox *mb, const char *id, const char *key)
{
	if (mb->n == mb->cap) {
		size_t nc = mb->cap ? mb->cap * 2 : 32;
		char **ni = realloc(mb->ids, nc * sizeof *ni);
		if (!ni)
			return -1;
		mb->ids = ni;
		char **nk = realloc(mb->keys, nc * sizeof *nk);
		if (!nk)
			return -1;
		mb->keys = nk;
		mb->cap = nc;
	}
	mb->ids[mb->n] = strdup(id);
	mb->keys[mb->n] = key ? strdup(key) : NULL;
	if (!mb->ids[mb->n] || (key && !mb->keys[mb->n])) {
		free(mb->ids[mb->n]);
		free(mb->keys[mb->n]);
		return -1;
	}
	mb->n++;
	return 0;
}

/* ---- the seen file ------------------------------------------------------ */

struct seen_load {
	struct mailbox *mb;
	const char *path;
	char *err;
	size_t errlen;
};

static int seen_line(void *arg, char *text, long no)
{
	struct seen_load *sl = arg;
	struct mailbox *mb = sl->mb;
	size_t wl = strlen(mb->where);
	if (!text || !strchr(text, '\t')) {
		statefile_warnf(mb->o->warn, "%s:%ld: not a mailbox.seen line, ignored", sl->path, no);
		return 0;
	}
	if (strlen(text) <= wl + 1 || strncmp(text, mb->where, wl) || text[wl] != '\t')
		return 0;
	chashdatum key = {text + wl + 1, (unsigned)strlen(text + wl + 1)}, v = {NULL, 0};
	if (chash_set(mb->seen, &key, &v, NULL) < 0)
		return set_err(sl->err, sl->errlen, MAILBOX_FAIL, "out of memory");
	return 0;
}

static int seen_load(struct mailbox *mb, char *err, size_t errlen)
{
	mb->seen_fd = -1;
	mb->seen = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	if (!mb->seen)
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	const char *path = mb->o->seen_path;
	if (!path)
		return set_err(err, errlen, MAILBOX_USAGE, "no place to remember processed messages");
	/* Repaired before the first mark is appended (statefile.h): a mark
	 * torn by a crash is cut off, and its message read again (the
	 * bounce log's keys keep that from adding anything). */
	mb->seen_fd = statefile_open(path, STATEFILE_CUT, 0, mb->o->warn, err, errlen);
	if (mb->seen_fd < 0)
		return MAILBOX_FAIL;
	FILE *f = fdopen(dup(mb->seen_fd), "r");
	if (!f)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: %s", path, strerror(errno));
	rewind(f); /* the dup shares the offset, which the repair may have moved */
	struct seen_load sl = {mb, path, err, errlen};
	int rc = statefile_each_line(f, seen_line, &sl);
	fclose(f);
	return rc;
}

static int seen_has(const struct mailbox *mb, const char *key)
{
	chashdatum k = {(void *)key, (unsigned)strlen(key)}, v;
	return chash_get(mb->seen, &k, &v) == 0;
}

static int seen_add(struct mailbox *mb, const char *key, char *err, size_t errlen)
{
	char *line;
	int len = asprintf(&line, "%s\t%s\n", mb->where, key);
	if (len < 0)
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	/* One scan per state dir (scan.lock), one thread: nothing else
	 * appends meanwhile. */
	int rc = statefile_append(mb->seen_fd, mb->o->seen_path, STATEFILE_CUT, line, (size_t)len,
				  1, NULL, err, errlen);
	free(line);
	return rc < 0 ? MAILBOX_FAIL : 0;
}

/* ---- maildir ----------------------------------------------------------- */

/* libetpan marks a message seen with link(new/X, cur/X:2,S) and then
 * unlink(new/X): killed in between, the message is in both, and new/
 * would show it unread to every scan. Such a pair is one message already
 * marked (cur/ has its name and its inode): the mark is finished here. */
static int finish_marks(const char *path, char *err, size_t errlen)
{
	char *newd = NULL, *curd = NULL;
	if (asprintf(&newd, "%s/new", path) < 0 || asprintf(&curd, "%s/cur", path) < 0) {
		free(newd);
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	int rc = 0;
	chash *cur = chash_new(CHASH_DEFAULTSIZE, CHASH_COPYKEY);
	DIR *d = cur ? opendir(curd) : NULL;
	struct dirent *e;
	/* cur/: base name (up to the ':') -> inode */
	while (d && (e = readdir(d)) && !rc) {
		if (e->d_name[0] == '.')
			continue;
		chashdatum k = {e->d_name, (unsigned)strcspn(e->d_name, ":")};
		chashdatum v = {NULL, 0};
		v.data = (void *)(uintptr_t)e->d_ino;
		if (chash_set(cur, &k, &v, NULL) < 0)
			rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	if (d)
		closedir(d);
	d = cur && !rc ? opendir(newd) : NULL;
	while (d && (e = readdir(d)) && !rc) {
		chashdatum k = {e->d_name, (unsigned)strcspn(e->d_name, ":")}, v;
		if (e->d_name[0] == '.' || chash_get(cur, &k, &v) != 0 ||
		    (ino_t)(uintptr_t)v.data != e->d_ino)
			continue;
		char *p;
		if (asprintf(&p, "%s/%s", newd, e->d_name) < 0) {
			rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
			break;
		}
		if (unlink(p) < 0 && errno != ENOENT)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: %s", p, strerror(errno));
		free(p);
	}
	if (d)
		closedir(d);
	if (!cur && !rc)
		rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	if (cur)
		chash_free(cur);
	free(newd);
	free(curd);
	return rc;
}

static int maildir_open(struct mailbox *mb, const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *sub;
	if (asprintf(&sub, "%s/cur", path) < 0)
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	int missing = stat(path, &st) < 0 || stat(sub, &st) < 0;
	free(sub);
	if (missing)
		return set_err(err, errlen, MAILBOX_NOFILE, "%s: not a maildir (no cur/)", path);
	int rc = finish_marks(path, err, errlen);
	if (rc)
		return rc;
	mb->md = maildir_new(path);
	if (!mb->md || maildir_update(mb->md) != MAILDIR_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot read the maildir", path);
	carray *l = mb->md->mdir_msg_list;
	for (unsigned i = 0; i < carray_count(l); i++) {
		struct maildir_msg *m = carray_get(l, i);
		if (m->msg_flags & (MAILDIR_FLAG_SEEN | MAILDIR_FLAG_TRASHED))
			continue;
		if (add_item(mb, m->msg_uid, NULL) < 0)
			return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	if (mb->o->delete)
		snprintf(mb->action, sizeof mb->action, "deleted");
	else if (mb->o->move_to)
		snprintf(mb->action, sizeof mb->action, "moved to %s/.%s", path, mb->o->move_to);
	else
		snprintf(mb->action, sizeof mb->action, "marked seen (moved to cur/, flag S)");
	return 0;
}

static int maildir_fetch(struct mailbox *mb, size_t i, char **data, size_t *len,
			 char *err, size_t errlen)
{
	char *path = maildir_message_get(mb->md, mb->ids[i]);
	if (!path)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: message %s has gone", mb->where, mb->ids[i]);
	int rc = read_file(path, data, len);
	int e = errno;
	free(path);
	return rc < 0 ? set_err(err, errlen, MAILBOX_FAIL, "%s: %s", mb->where, strerror(e)) : 0;
}

/* maildir++: PATH/.FOLDER with its own tmp, new and cur. */
static int maildir_move(struct mailbox *mb, size_t i, char *err, size_t errlen)
{
	char *src = maildir_message_get(mb->md, mb->ids[i]);
	if (!src)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: message %s has gone", mb->where, mb->ids[i]);
	char *dir = NULL, *dst = NULL;
	int rc = 0;
	const char *subs[] = {"", "/tmp", "/new", "/cur"};
	for (int k = 0; k < 4 && !rc; k++) {
		free(dir);
		if (asprintf(&dir, "%s/.%s%s", mb->md->mdir_path, mb->o->move_to, subs[k]) < 0) {
			dir = NULL;
			rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
		} else if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: %s", dir, strerror(errno));
	}
	if (!rc) {
		const char *base = strrchr(src, '/') + 1;
		int bl = (int)strcspn(base, ":");
		if (asprintf(&dst, "%s/%.*s:2,S", dir, bl, base) < 0) {
			dst = NULL;
			rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
		} else if (rename(src, dst) < 0)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: %s", src, strerror(errno));
	}
	free(dir);
	free(dst);
	free(src);
	return rc;
}

static int maildir_done(struct mailbox *mb, size_t i, int recognised, char *err, size_t errlen)
{
	if (recognised && mb->o->delete)
		return maildir_message_remove(mb->md, mb->ids[i]) == MAILDIR_NO_ERROR ? 0
			: set_err(err, errlen, MAILBOX_FAIL, "%s: cannot delete message %s", mb->where, mb->ids[i]);
	if (recognised && mb->o->move_to)
		return maildir_move(mb, i, err, errlen);
	carray *l = mb->md->mdir_msg_list;
	int flags = 0;
	for (unsigned k = 0; k < carray_count(l); k++) {
		struct maildir_msg *m = carray_get(l, k);
		if (!strcmp(m->msg_uid, mb->ids[i]))
			flags = m->msg_flags;
	}
	flags = (flags & ~MAILDIR_FLAG_NEW) | MAILDIR_FLAG_SEEN;
	return maildir_message_change_flags(mb->md, mb->ids[i], flags) == MAILDIR_NO_ERROR ? 0
		: set_err(err, errlen, MAILBOX_FAIL, "%s: cannot mark message %s", mb->where, mb->ids[i]);
}

/* ---- mbox -------------------------------------------------------------- */

static int mbox_open(struct mailbox *mb, const char *path, char *err, size_t errlen)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return set_err(err, errlen, errno == ENOENT ? MAILBOX_NOFILE : MAILBOX_FAIL, "%s: %s",
			       path, strerror(errno));
	if (mb->o->move_to)
		return set_err(err, errlen, MAILBOX_USAGE, "move_to works with imap and maildir, not mbox");
	int rc = seen_load(mb, err, errlen);
	if (rc)
		return rc;
	/* Read-only unless deleting: the file is only rewritten to expunge.
	 * No UID headers: herald must not change messages it keeps. */
	if (mailmbox_init(path, !mb->o->delete, 1, 0, &mb->mbox) != MAILMBOX_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot read the mbox", path);
	carray *t = mb->mbox->mb_tab;
	for (unsigned i = 0; i < carray_count(t); i++) {
		struct mailmbox_msg_info *m = carray_get(t, i);
		if (!m || m->msg_deleted)
			continue;
		char id[24], key[65];
		snprintf(id, sizeof id, "%u", m->msg_uid);
		char *data;
		size_t len;
		if (mailmbox_fetch_msg(mb->mbox, m->msg_uid, &data, &len) != MAILMBOX_NO_ERROR)
			return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot read message %u", path, i + 1);
		int d = buf_sha256_hex(data, len, key);
		mailmbox_fetch_result_free(data);
		if (d < 0)
			return set_err(err, errlen, MAILBOX_FAIL, "cannot hash a message");
		if (seen_has(mb, key))
			continue;
		if (add_item(mb, id, key) < 0)
			return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	snprintf(mb->action, sizeof mb->action, "%s", mb->o->delete ? "deleted"
		 : "remembered in the seen file (the mbox is left as it is)");
	return 0;
}

static int mbox_fetch(struct mailbox *mb, size_t i, char **data, size_t *len, char *err, size_t errlen)
{
	char *d;
	size_t l;
	uint32_t uid = (uint32_t)strtoul(mb->ids[i], NULL, 10);
	if (mailmbox_fetch_msg(mb->mbox, uid, &d, &l) != MAILMBOX_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot read message %s", mb->where, mb->ids[i]);
	*data = xstrndup(d, l);
	*len = l;
	mailmbox_fetch_result_free(d);
	return *data ? 0 : set_err(err, errlen, MAILBOX_FAIL, "out of memory");
}

static int mbox_done(struct mailbox *mb, size_t i, int recognised, char *err, size_t errlen)
{
	if (recognised && mb->o->delete) {
		uint32_t uid = (uint32_t)strtoul(mb->ids[i], NULL, 10);
		if (mailmbox_delete_msg(mb->mbox, uid) != MAILMBOX_NO_ERROR)
			return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot delete message %s", mb->where, mb->ids[i]);
		mb->moved_or_deleted = 1;
		/* Remembered too: if the expunge fails, no rescan repeats it. */
	}
	return seen_add(mb, mb->keys[i], err, errlen);
}

/* ---- network sources ---------------------------------------------------- */

struct url {
	char *scheme, *host, *user, *path;
	int port;
};

static void url_free(struct url *u)
{
	curl_free(u->scheme);
	curl_free(u->host);
	curl_free(u->user);
	curl_free(u->path);
}

static int url_parse(const char *s, struct url *u, char *err, size_t errlen)
{
	memset(u, 0, sizeof *u);
	CURLU *h = curl_url();
	if (!h)
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	char *port = NULL;
	int rc = 0;
	if (curl_url_set(h, CURLUPART_URL, s, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_SCHEME, &u->scheme, 0) != CURLUE_OK ||
	    curl_url_get(h, CURLUPART_HOST, &u->host, 0) != CURLUE_OK) {
		rc = set_err(err, errlen, MAILBOX_USAGE, "%s: not a URL like imaps://user@host/INBOX", s);
		goto out;
	}
	curl_url_get(h, CURLUPART_USER, &u->user, CURLU_URLDECODE);
	curl_url_get(h, CURLUPART_PATH, &u->path, CURLU_URLDECODE);
	char *pw = NULL;
	if (curl_url_get(h, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK) {
		curl_free(pw);
		rc = set_err(err, errlen, MAILBOX_USAGE,
			     "%s: no passwords in the URL, please: use password_env or password_command", "SOURCE");
		goto out;
	}
	if (curl_url_get(h, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK && port)
		u->port = atoi(port);
	/* IPv6 literals come back bracketed; getaddrinfo wants them bare. */
	size_t hl = strlen(u->host);
	if (hl > 2 && u->host[0] == '[' && u->host[hl - 1] == ']') {
		memmove(u->host, u->host + 1, hl - 2);
		u->host[hl - 2] = '\0';
	}
out:
	curl_free(port);
	curl_url_cleanup(h);
	if (rc)
		url_free(u);
	return rc;
}

/* Connects: the plain stream, or TLS from the first byte (imaps,
 * pop3s). */
static mailstream *dial(const struct url *u, int implicit_tls, const struct mailbox_opts *o,
			int *loopback, char *err, size_t errlen)
{
	int fd = mailtls_connect(u->host, u->port, o->timeout, loopback, err, errlen);
	if (fd < 0)
		return NULL;
	if (!implicit_tls) {
		mailstream *s = mailstream_socket_open_timeout(fd, o->timeout);
		if (!s) {
			close(fd);
			set_err(err, errlen, MAILBOX_FAIL, "out of memory");
		}
		return s;
	}
	mailstream_low *low = mailtls_low(fd, u->host, o->ca_file, o->timeout, err, errlen);
	if (!low) {
		close(fd);
		return NULL;
	}
	mailstream *s = mailstream_new(low, 8192);
	if (!s) {
		mailstream_low_free(low);
		set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	return s;
}

/* After STARTTLS/STLS: the same socket under TLS. As libetpan's own
 * starttls does it: a dup of the fd for the new layer, the old layer
 * freed. */
static int upgrade(mailstream *s, const struct url *u, const struct mailbox_opts *o,
		   char *err, size_t errlen)
{
	mailstream_low *old = mailstream_get_low(s);
	int fd = dup(mailstream_low_get_fd(old));
	if (fd < 0)
		return set_err(err, errlen, MAILBOX_FAIL, "dup: %s", strerror(errno));
	mailstream_low *low = mailtls_low(fd, u->host, o->ca_file, o->timeout, err, errlen);
	if (!low) {
		close(fd);
		return MAILBOX_FAIL;
	}
	mailstream_low_free(old);
	mailstream_set_low(s, low);
	return 0;
}

static const char *login_name(const struct url *u, const struct mailbox_opts *o)
{
	return u->user && *u->user ? u->user : o->username;
}

/* The end of a STARTTLS/STLS attempt: the stream upgraded, or a
 * refusal that only matters when TLS is required. */
static int starttls_done(struct mailbox *mb, int ok, mailstream *s, const struct url *u, int *tls,
			const char *cmd, const char *said, char *err, size_t errlen)
{
	if (!ok)
		return mb->o->starttls != STARTTLS_REQUIRED ? 0
			: set_err(err, errlen, MAILBOX_FAIL,
				  "%s: the server refuses %s (starttls = \"required\"): %s", mb->where, cmd, said);
	if (upgrade(s, u, mb->o, err, errlen) < 0)
		return MAILBOX_FAIL;
	*tls = 1;
	return 0;
}

/* Before a password goes out: a user, a password, and TLS or loopback. */
static int login_allowed(struct mailbox *mb, const struct url *u, int tls, int loopback,
			 const char *proto, const char **user, char *err, size_t errlen)
{
	*user = login_name(u, mb->o);
	if (!*user || !mb->o->password)
		return set_err(err, errlen, MAILBOX_USAGE,
			       "%s: %s needs a user name (in the URL or mailbox.username) and a password",
			       mb->where, proto);
	if (!tls && !loopback)
		return set_err(err, errlen, MAILBOX_USAGE,
			       "%s: will not send a password in clear to a remote server; use %ss:// or STARTTLS",
			       mb->where, proto[0] == 'I' ? "imap" : "pop3");
	return 0;
}

/* ---- IMAP -------------------------------------------------------------- */

static const char *imap_said(mailimap *imap)
{
	return imap && imap->imap_response && *imap->imap_response ? imap->imap_response : "no reply";
}

static int imap_open(struct mailbox *mb, const struct url *u, int tls, char *err, size_t errlen)
{
	const struct mailbox_opts *o = mb->o;
	int loopback = 0;
	mailstream *s = dial(u, tls, o, &loopback, err, errlen);
	if (!s)
		return MAILBOX_FAIL;
	mb->imap = mailimap_new(0, NULL);
	if (!mb->imap) {
		mailstream_close(s);
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	mailimap_set_timeout(mb->imap, o->timeout);
	int r = mailimap_connect(mb->imap, s);
	if (r != MAILIMAP_NO_ERROR_AUTHENTICATED && r != MAILIMAP_NO_ERROR_NON_AUTHENTICATED)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: no IMAP greeting (%d)", mb->where, r);
	if (!tls && o->starttls != STARTTLS_NEVER) {
		struct mailimap_capability_data *cap = NULL;
		mailimap_capability(mb->imap, &cap);
		if (cap)
			mailimap_capability_data_free(cap);
		if (mailimap_has_extension(mb->imap, "STARTTLS") || o->starttls == STARTTLS_REQUIRED) {
			int ok = mailimap_starttls(mb->imap) == MAILIMAP_NO_ERROR;
			if (starttls_done(mb, ok, mb->imap->imap_stream, u, &tls, "STARTTLS",
					  imap_said(mb->imap), err, errlen) < 0)
				return MAILBOX_FAIL;
		}
	}
	const char *user;
	int rc = login_allowed(mb, u, tls, loopback, "IMAP", &user, err, errlen);
	if (rc)
		return rc;
	if (mailimap_login(mb->imap, user, o->password) != MAILIMAP_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: login refused: %s", mb->where, imap_said(mb->imap));
	const char *folder = u->path && u->path[0] == '/' && u->path[1] ? u->path + 1 : "INBOX";
	if (mailimap_select(mb->imap, folder) != MAILIMAP_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot select %s: %s", mb->where, folder,
			       imap_said(mb->imap));
	struct mailimap_selection_info *si = mb->imap->imap_selection_info;
	if (si && si->sel_perm_flags)
		for (clistiter *it = clist_begin(si->sel_perm_flags); it; it = clist_next(it)) {
			struct mailimap_flag_perm *p = clist_content(it);
			mb->keywords |= p->fl_type == MAILIMAP_FLAG_PERM_ALL ||
					(p->fl_type == MAILIMAP_FLAG_PERM_FLAG && p->fl_flag &&
					 p->fl_flag->fl_type == MAILIMAP_FLAG_KEYWORD &&
					 !strcasecmp(p->fl_flag->fl_data.fl_keyword, KEYWORD));
		}
	if (o->move_to) {
		/* Create it if missing; an error here usually means it exists. */
		mailimap_create(mb->imap, o->move_to);
	}
	/* UID SEARCH UNKEYWORD $HeraldDone (or UNSEEN without keywords). */
	struct mailimap_search_key *key = mb->keywords
		? mailimap_search_key_new_unkeyword(strdup(KEYWORD))
		: mailimap_search_key_new(MAILIMAP_SEARCH_KEY_UNSEEN, NULL, NULL, NULL, NULL, NULL,
					  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,
					  NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL);
	clist *res = NULL;
	if (!key)
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	r = mailimap_uid_search(mb->imap, NULL, key, &res);
	mailimap_search_key_free(key);
	if (r != MAILIMAP_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: search failed: %s", mb->where, imap_said(mb->imap));
	for (clistiter *it = clist_begin(res); it && !rc; it = clist_next(it)) {
		char id[16];
		snprintf(id, sizeof id, "%u", *(uint32_t *)clist_content(it));
		if (add_item(mb, id, NULL) < 0)
			rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	mailimap_search_result_free(res);
	if (o->delete)
		snprintf(mb->action, sizeof mb->action, "deleted");
	else if (o->move_to)
		snprintf(mb->action, sizeof mb->action, "moved to %s", o->move_to);
	else
		snprintf(mb->action, sizeof mb->action, "flagged %s", mb->keywords ? KEYWORD : "\\Seen");
	return rc;
}

static int imap_fetch(struct mailbox *mb, size_t i, char **data, size_t *len, char *err, size_t errlen)
{
	uint32_t uid = (uint32_t)strtoul(mb->ids[i], NULL, 10);
	struct mailimap_set *set = mailimap_set_new_single(uid);
	struct mailimap_section *sec = mailimap_section_new(NULL);
	struct mailimap_fetch_att *att = sec ? mailimap_fetch_att_new_body_peek_section(sec) : NULL;
	struct mailimap_fetch_type *ft = att ? mailimap_fetch_type_new_fetch_att(att) : NULL;
	if (!set || !ft) {
		if (set)
			mailimap_set_free(set);
		if (ft)
			mailimap_fetch_type_free(ft);
		else if (att)
			mailimap_fetch_att_free(att);
		else if (sec)
			mailimap_section_free(sec);
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	clist *res = NULL;
	int r = mailimap_uid_fetch(mb->imap, set, ft, &res);
	mailimap_set_free(set);
	mailimap_fetch_type_free(ft);
	if (r != MAILIMAP_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot fetch UID %u: %s", mb->where, uid,
			       imap_said(mb->imap));
	*data = NULL;
	for (clistiter *it = clist_begin(res); it && !*data; it = clist_next(it)) {
		struct mailimap_msg_att *ma = clist_content(it);
		for (clistiter *j = clist_begin(ma->att_list); j && !*data; j = clist_next(j)) {
			struct mailimap_msg_att_item *item = clist_content(j);
			if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC ||
			    item->att_data.att_static->att_type != MAILIMAP_MSG_ATT_BODY_SECTION)
				continue;
			struct mailimap_msg_att_body_section *b = item->att_data.att_static->att_data.att_body_section;
			if (b && b->sec_body_part) {
				*data = xstrndup(b->sec_body_part, b->sec_length);
				*len = b->sec_length;
			}
		}
	}
	mailimap_fetch_list_free(res);
	return *data ? 0 : set_err(err, errlen, MAILBOX_FAIL, "%s: UID %u has no body", mb->where, uid);
}

static int imap_flag(struct mailbox *mb, uint32_t uid, struct mailimap_flag *flag, char *err, size_t errlen)
{
	struct mailimap_flag_list *fl = mailimap_flag_list_new_empty();
	if (!flag || !fl || mailimap_flag_list_add(fl, flag) != MAILIMAP_NO_ERROR) {
		if (fl)
			mailimap_flag_list_free(fl);
		if (flag)
			mailimap_flag_free(flag);
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	struct mailimap_store_att_flags *sa = mailimap_store_att_flags_new_add_flags_silent(fl);
	struct mailimap_set *set = mailimap_set_new_single(uid);
	if (!sa || !set) {
		if (sa)
			mailimap_store_att_flags_free(sa);
		else
			mailimap_flag_list_free(fl);
		if (set)
			mailimap_set_free(set);
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	int r = mailimap_uid_store(mb->imap, set, sa);
	mailimap_set_free(set);
	mailimap_store_att_flags_free(sa);
	return r == MAILIMAP_NO_ERROR ? 0
		: set_err(err, errlen, MAILBOX_FAIL, "%s: cannot flag UID %u: %s", mb->where, uid,
			  imap_said(mb->imap));
}

static int imap_done(struct mailbox *mb, size_t i, int recognised, char *err, size_t errlen)
{
	uint32_t uid = (uint32_t)strtoul(mb->ids[i], NULL, 10);
	if (recognised && mb->o->move_to) {
		struct mailimap_set *set = mailimap_set_new_single(uid);
		if (!set)
			return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
		int r = mailimap_has_extension(mb->imap, "MOVE")
			? mailimap_uid_move(mb->imap, set, mb->o->move_to)
			: mailimap_uid_copy(mb->imap, set, mb->o->move_to);
		mailimap_set_free(set);
		if (r != MAILIMAP_NO_ERROR)
			return set_err(err, errlen, MAILBOX_FAIL, "%s: cannot move UID %u to %s: %s", mb->where,
				       uid, mb->o->move_to, imap_said(mb->imap));
		if (mailimap_has_extension(mb->imap, "MOVE"))
			return 0;
	}
	if (recognised && (mb->o->delete || mb->o->move_to)) {
		mb->moved_or_deleted = 1;
		return imap_flag(mb, uid, mailimap_flag_new_deleted(), err, errlen);
	}
	return imap_flag(mb, uid, mb->keywords ? mailimap_flag_new_flag_keyword(strdup(KEYWORD))
			 : mailimap_flag_new_seen(), err, errlen);
}

/* ---- POP3 -------------------------------------------------------------- */

static const char *pop3_said(mailpop3 *p)
{
	return p && p->pop3_response && *p->pop3_response ? p->pop3_response : "no reply";
}

static int pop3_open(struct mailbox *mb, const struct url *u, int tls, char *err, size_t errlen)
{
	const struct mailbox_opts *o = mb->o;
	if (o->move_to)
		return set_err(err, errlen, MAILBOX_USAGE, "move_to works with imap and maildir, not POP3");
	int rc = seen_load(mb, err, errlen);
	if (rc)
		return rc;
	int loopback = 0;
	mailstream *s = dial(u, tls, o, &loopback, err, errlen);
	if (!s)
		return MAILBOX_FAIL;
	mb->pop3 = mailpop3_new(0, NULL);
	if (!mb->pop3) {
		mailstream_close(s);
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	mailpop3_set_timeout(mb->pop3, o->timeout);
	if (mailpop3_connect(mb->pop3, s) != MAILPOP3_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: no POP3 greeting", mb->where);
	if (!tls && o->starttls != STARTTLS_NEVER) {
		int ok = mailpop3_stls(mb->pop3) == MAILPOP3_NO_ERROR;
		if (starttls_done(mb, ok, mb->pop3->pop3_stream, u, &tls, "STLS", pop3_said(mb->pop3),
				  err, errlen) < 0)
			return MAILBOX_FAIL;
	}
	const char *user;
	if ((rc = login_allowed(mb, u, tls, loopback, "POP3", &user, err, errlen)))
		return rc;
	if (mailpop3_user(mb->pop3, user) != MAILPOP3_NO_ERROR ||
	    mailpop3_pass(mb->pop3, o->password) != MAILPOP3_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: login refused: %s", mb->where, pop3_said(mb->pop3));
	carray *list = NULL;
	if (mailpop3_list(mb->pop3, &list) != MAILPOP3_NO_ERROR || !list)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: LIST failed: %s", mb->where, pop3_said(mb->pop3));
	for (unsigned i = 0; i < carray_count(list) && !rc; i++) {
		struct mailpop3_msg_info *m = carray_get(list, i);
		if (!m || m->msg_deleted)
			continue;
		char id[16], key[80];
		snprintf(id, sizeof id, "%u", m->msg_index);
		if (m->msg_uidl && *m->msg_uidl) {
			snprintf(key, sizeof key, "uidl:%.70s", m->msg_uidl);
		} else {
			/* No UIDL: the content names the message. */
			char *d;
			size_t l;
			char dig[65];
			if (mailpop3_retr(mb->pop3, m->msg_index, &d, &l) != MAILPOP3_NO_ERROR)
				return set_err(err, errlen, MAILBOX_FAIL, "%s: RETR %u failed", mb->where, m->msg_index);
			int dr = buf_sha256_hex(d, l, dig);
			mailpop3_retr_free(d);
			if (dr < 0)
				return set_err(err, errlen, MAILBOX_FAIL, "cannot hash a message");
			snprintf(key, sizeof key, "sha256:%s", dig);
		}
		if (seen_has(mb, key))
			continue;
		if (add_item(mb, id, key) < 0)
			rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	}
	snprintf(mb->action, sizeof mb->action, "%s", o->delete ? "deleted"
		 : "remembered in the seen file (left on the server)");
	return rc;
}

static int pop3_fetch(struct mailbox *mb, size_t i, char **data, size_t *len, char *err, size_t errlen)
{
	unsigned idx = (unsigned)strtoul(mb->ids[i], NULL, 10);
	char *d;
	size_t l;
	if (mailpop3_retr(mb->pop3, idx, &d, &l) != MAILPOP3_NO_ERROR)
		return set_err(err, errlen, MAILBOX_FAIL, "%s: RETR %u failed: %s", mb->where, idx,
			       pop3_said(mb->pop3));
	*data = xstrndup(d, l);
	*len = l;
	mailpop3_retr_free(d);
	return *data ? 0 : set_err(err, errlen, MAILBOX_FAIL, "out of memory");
}

static int pop3_done(struct mailbox *mb, size_t i, int recognised, char *err, size_t errlen)
{
	/* Remembered first: DELE only takes effect at QUIT, and a lost
	 * connection before it must not make the next scan repeat this. */
	int rc = seen_add(mb, mb->keys[i], err, errlen);
	if (!rc && recognised && mb->o->delete) {
		unsigned idx = (unsigned)strtoul(mb->ids[i], NULL, 10);
		if (mailpop3_dele(mb->pop3, idx) != MAILPOP3_NO_ERROR)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: DELE %u failed: %s", mb->where, idx,
				     pop3_said(mb->pop3));
	}
	return rc;
}

/* ---- the interface ------------------------------------------------------ */

int mailbox_open(struct mailbox **out, const struct mailbox_opts *o, char *err, size_t errlen)
{
	*out = NULL;
	struct mailbox *mb = calloc(1, sizeof *mb);
	if (!mb)
		return set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	mb->o = o;
	mb->seen_fd = -1;
	const char *s = o->source;
	int rc;
	if (o->move_to && (!*o->move_to || strpbrk(o->move_to, "/\r\n\"") || o->move_to[0] == '.')) {
		rc = set_err(err, errlen, MAILBOX_USAGE, "move_to: \"%s\" is not a folder name", o->move_to);
		goto out;
	}
	if (!strncmp(s, "maildir:", 8) || !strncmp(s, "mbox:", 5)) {
		int md = s[1] == 'a';
		const char *path = strchr(s, ':') + 1;
		if (!*path) {
			rc = set_err(err, errlen, MAILBOX_USAGE, "%s: no path", s);
			goto out;
		}
		mb->where = strdup(s);
		mb->kind = md ? MB_MAILDIR : MB_MBOX;
		rc = !mb->where ? set_err(err, errlen, MAILBOX_FAIL, "out of memory")
			: md ? maildir_open(mb, path, err, errlen) : mbox_open(mb, path, err, errlen);
		goto out;
	}
	struct url u;
	rc = url_parse(s, &u, err, errlen);
	if (rc)
		goto out;
	int tls = !strcasecmp(u.scheme, "imaps") || !strcasecmp(u.scheme, "pop3s");
	int imap = !strcasecmp(u.scheme, "imap") || !strcasecmp(u.scheme, "imaps");
	int pop3 = !strcasecmp(u.scheme, "pop3") || !strcasecmp(u.scheme, "pop3s");
	if (!imap && !pop3) {
		rc = set_err(err, errlen, MAILBOX_USAGE,
			     "%s: expected maildir:PATH, mbox:PATH, imap[s]://... or pop3[s]://...", s);
		url_free(&u);
		goto out;
	}
	if (!u.port)
		u.port = imap ? (tls ? 993 : 143) : (tls ? 995 : 110);
	const char *user = login_name(&u, o);
	if (asprintf(&mb->where, "%s://%s%s%s:%d%s", u.scheme, user ? user : "", user ? "@" : "",
		     u.host, u.port, imap && u.path && strcmp(u.path, "/") ? u.path : "") < 0) {
		mb->where = NULL;
		rc = set_err(err, errlen, MAILBOX_FAIL, "out of memory");
	} else if (imap) {
		mb->kind = MB_IMAP;
		rc = imap_open(mb, &u, tls, err, errlen);
	} else {
		mb->kind = MB_POP3;
		rc = pop3_open(mb, &u, tls, err, errlen);
	}
	url_free(&u);
out:
	if (rc) {
		mailbox_close(mb, NULL, 0);
		return rc;
	}
	*out = mb;
	return 0;
}

size_t mailbox_count(const struct mailbox *mb)
{
	return mb->n;
}

const char *mailbox_action(const struct mailbox *mb)
{
	return mb->action;
}

int mailbox_fetch(struct mailbox *mb, size_t i, char **data, size_t *len, char *err, size_t errlen)
{
	*data = NULL;
	*len = 0;
	switch (mb->kind) {
	case MB_MAILDIR: return maildir_fetch(mb, i, data, len, err, errlen);
	case MB_MBOX: return mbox_fetch(mb, i, data, len, err, errlen);
	case MB_IMAP: return imap_fetch(mb, i, data, len, err, errlen);
	case MB_POP3: return pop3_fetch(mb, i, data, len, err, errlen);
	}
	return MAILBOX_FAIL;
}

int mailbox_done(struct mailbox *mb, size_t i, int recognised, char *err, size_t errlen)
{
	switch (mb->kind) {
	case MB_MAILDIR: return maildir_done(mb, i, recognised, err, errlen);
	case MB_MBOX: return mbox_done(mb, i, recognised, err, errlen);
	case MB_IMAP: return imap_done(mb, i, recognised, err, errlen);
	case MB_POP3: return pop3_done(mb, i, recognised, err, errlen);
	}
	return MAILBOX_FAIL;
}

int mailbox_close(struct mailbox *mb, char *err, size_t errlen)
{
	if (!mb)
		return 0;
	int rc = 0;
	if (mb->md)
		maildir_free(mb->md);
	if (mb->mbox) {
		if (mb->moved_or_deleted && mailmbox_expunge(mb->mbox) != MAILMBOX_NO_ERROR)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: cannot expunge deleted messages", mb->where);
		mailmbox_done(mb->mbox);
	}
	if (mb->imap) {
		if (mb->moved_or_deleted && mailimap_expunge(mb->imap) != MAILIMAP_NO_ERROR)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: EXPUNGE failed: %s", mb->where,
				     imap_said(mb->imap));
		if (mb->imap->imap_stream)
			mailimap_logout(mb->imap);
		mailimap_free(mb->imap);
	}
	if (mb->pop3) {
		if (mb->pop3->pop3_stream && mailpop3_quit(mb->pop3) != MAILPOP3_NO_ERROR && mb->o->delete)
			rc = set_err(err, errlen, MAILBOX_FAIL, "%s: QUIT failed, deletions may not have happened",
				     mb->where);
		mailpop3_free(mb->pop3);
	}
	if (mb->seen)
		chash_free(mb->seen);
	if (mb->seen_fd >= 0)
		close(mb->seen_fd);
	for (size_t i = 0; i < mb->n; i++) {
		free(mb->ids[i]);
		free(mb->keys[i]);
	}
	free(mb->ids);
	free(mb->keys);
	free(mb->where);
	free(mb);
	return rc;
}
