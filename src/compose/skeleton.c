#include "compose/skeleton.h"
#include "compose/encode.h"
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The parts' bodies are not handed to libetpan: it writes body bytes one
 * at a time, which cost more than the rest of the message. It gets a
 * marker instead, cut out of the skeleton it writes (skel_make); the
 * encoded body goes where the marker stood. */
static const char text_marker[] = "\x01herald:text/plain\x01";
static const char html_marker[] = "\x01herald:text/html\x01";

static int oom(char *err, size_t errlen)
{
	return set_err(err, errlen, -1, "out of memory building the message");
}

/* "\x01herald:media:K\x01": where media K's encoded body goes. */
static void media_marker(size_t k, char *out, size_t len)
{
	snprintf(out, len, "\x01herald:media:%zu\x01", k);
}

/* marker must outlive the part. */
static struct mailmime *text_part(const char *type, const char *marker)
{
	struct mailmime_fields *mf = mailmime_fields_new_encoding(MAILMIME_MECHANISM_QUOTED_PRINTABLE);
	struct mailmime_content *ct = mailmime_content_new_with_str(type);
	char *pn = strdup("charset"), *pv = strdup("utf-8");
	struct mailmime_parameter *prm = (pn && pv) ? mailmime_parameter_new(pn, pv) : NULL;
	if (!mf || !ct || !prm || clist_append(ct->ct_parameters, prm) < 0) {
		if (prm)
			mailmime_parameter_free(prm);
		else {
			free(pn);
			free(pv);
		}
		if (mf)
			mailmime_fields_free(mf);
		if (ct)
			mailmime_content_free(ct);
		return NULL;
	}
	struct mailmime *part = mailmime_new_empty(ct, mf);
	if (!part) {
		mailmime_fields_free(mf);
		mailmime_content_free(ct);
		return NULL;
	}
	struct mailmime_data *d = mailmime_data_new(MAILMIME_DATA_TEXT,
		MAILMIME_MECHANISM_QUOTED_PRINTABLE, 1, marker, strlen(marker), NULL);
	if (!d) {
		mailmime_free(part);
		return NULL;
	}
	part->mm_data.mm_single = d;
	return part;
}

/* The boundary holds "=_", which neither quoted-printable nor Base64
 * output can contain, so it cannot collide with a body; after it, a
 * letter per level and the run's random Message-ID prefix. One run, one
 * set of boundaries: RFC 2046 (5.1.1) asks only that a boundary not
 * occur inside the parts it encloses, which the bodies cannot break and
 * skel_make checks for the rest (the parts' own header lines). */
static struct mailmime *multipart(const char *type, const char *level, const char *run_id)
{
	struct mailmime_content *ct = mailmime_content_new_with_str(type);
	struct mailmime_fields *mf = mailmime_fields_new_empty();
	struct mailmime *mm = (ct && mf) ? mailmime_new_empty(ct, mf) : NULL;
	if (!mm) {
		if (ct)
			mailmime_content_free(ct);
		if (mf)
			mailmime_fields_free(mf);
		return NULL;
	}
	/* libetpan made up a boundary parameter; put ours in its place. */
	for (clistiter *it = clist_begin(ct->ct_parameters); it; it = clist_next(it)) {
		struct mailmime_parameter *prm = clist_content(it);
		if (strcasecmp(prm->pa_name, "boundary"))
			continue;
		char *bv;
		if (asprintf(&bv, "=_%s%s", level, run_id) < 0) {
			mailmime_free(mm);
			return NULL;
		}
		free(prm->pa_value);
		prm->pa_value = bv;
		break;
	}
	return mm;
}

/* The body: multipart/alternative, text first. A multipart/related
 * around the HTML part, or a /mixed around the whole, goes here. */
static struct mailmime *alternative_tree(const struct skel *s);

/* A file name for Content-Disposition: as it is when it is plain ASCII
 * without quotes or backslashes, else in RFC 2231 form (filename*=UTF-8''
 * with percent-encoding), which every current client reads. */
static struct mailmime_disposition *disposition(int type, const char *name)
{
	struct mailmime_disposition_type *dt = mailmime_disposition_type_new(type, NULL);
	clist *parms = clist_new();
	struct mailmime_disposition *d = dt && parms ? mailmime_disposition_new(dt, parms) : NULL;
	if (!d) {
		if (dt)
			mailmime_disposition_type_free(dt);
		if (parms)
			clist_free(parms);
		return NULL;
	}
	int plain = enc_param_plain(name);
	struct buf v = {0};
	char *pn = strdup(plain ? "filename" : "filename*");
	char *pv = plain ? strdup(name) : enc_rfc2231(&v, name) == 0 ? buf_detach(&v) : NULL;
	buf_free(&v);
	struct mailmime_parameter *prm = pn && pv ? mailmime_parameter_new(pn, pv) : NULL;
	struct mailmime_disposition_parm *dp = prm ? mailmime_disposition_parm_new(
		MAILMIME_DISPOSITION_PARM_PARAMETER, NULL, NULL, NULL, NULL, 0, prm) : NULL;
	if (!dp || clist_append(parms, dp) < 0) {
		if (dp)
			mailmime_disposition_parm_free(dp);
		else if (prm)
			mailmime_parameter_free(prm);
		else {
			free(pn);
			free(pv);
		}
		mailmime_disposition_free(d);
		return NULL;
	}
	return d;
}

/* Content-Type's name= too: older clients (and Outlook) show that one.
 * Not ASCII, it is an encoded-word in quotes, as those clients write it. */
static int content_name(struct mailmime_content *ct, const char *name)
{
	struct buf v = {0};
	if (!enc_param_plain(name) && enc_param_words(&v, name) < 0) {
		buf_free(&v);
		return -1;
	}
	char *pn = strdup("name"), *pv = v.len ? buf_detach(&v) : strdup(name);
	buf_free(&v);
	struct mailmime_parameter *prm = pn && pv ? mailmime_parameter_new(pn, pv) : NULL;
	if (!prm || clist_append(ct->ct_parameters, prm) < 0) {
		if (prm)
			mailmime_parameter_free(prm);
		else {
			free(pn);
			free(pv);
		}
		return -1;
	}
	return 0;
}

/* One file's part: its type, Base64, its disposition, an image's
 * Content-ID; the body is a marker, the slot the encoding made once goes
 * into. */
static struct mailmime *media_part(const struct media *md, const char *marker, const char *cid)
{
	struct mailmime_mechanism *enc = mailmime_mechanism_new(MAILMIME_MECHANISM_BASE64, NULL);
	struct mailmime_disposition *dsp = disposition(
		md->kind == MEDIA_IMAGE ? MAILMIME_DISPOSITION_TYPE_INLINE
					: MAILMIME_DISPOSITION_TYPE_ATTACHMENT, md->name);
	char *id = cid ? strdup(cid) : NULL;
	struct mailmime_fields *mf = enc && dsp && (id || !cid)
		? mailmime_fields_new_with_data(enc, id, NULL, dsp, NULL) : NULL;
	if (!mf)
		free(id);
	struct mailmime_content *ct = mf ? mailmime_content_new_with_str(md->type) : NULL;
	if (ct && content_name(ct, md->name) < 0) {
		mailmime_content_free(ct);
		ct = NULL;
	}
	struct mailmime *part = ct ? mailmime_new_empty(ct, mf) : NULL;
	if (!part) {
		if (ct)
			mailmime_content_free(ct);
		if (mf)
			mailmime_fields_free(mf);
		else {
			if (enc)
				mailmime_mechanism_free(enc);
			if (dsp)
				mailmime_disposition_free(dsp);
		}
		return NULL;
	}
	struct mailmime_data *d = mailmime_data_new(MAILMIME_DATA_TEXT, MAILMIME_MECHANISM_BASE64,
						    1, marker, strlen(marker), NULL);
	if (!d) {
		mailmime_free(part);
		return NULL;
	}
	part->mm_data.mm_single = d;
	return part;
}

/* first inside a new multipart (type; level tells its boundary apart),
 * followed by media [from, to): images (with their Content-ID) for
 * related, attachments for mixed. Frees first when it fails. */
static struct mailmime *with_media(const struct skel *s, const char *type, const char *level, struct mailmime *first,
				   size_t from, size_t to)
{
	struct mailmime *mp = multipart(type, level, s->id);
	if (!mp || mailmime_smart_add_part(mp, first) != MAILIMF_NO_ERROR) {
		mailmime_free(first);
		if (mp)
			mailmime_free(mp);
		return NULL;
	}
	for (size_t k = from; k < to; k++) {
		const char *cid = s->media[k].kind == MEDIA_IMAGE ? s->post->images[k].cid : NULL;
		struct mailmime *part = media_part(&s->media[k], s->marker[k], cid);
		if (!part || mailmime_smart_add_part(mp, part) != MAILIMF_NO_ERROR) {
			if (part)
				mailmime_free(part);
			mailmime_free(mp);
			return NULL;
		}
	}
	return mp;
}

/* multipart/alternative (text, HTML), inside multipart/mixed with the
 * attachments when there are some. The media are the post's images
 * first, then its attachments. */
static struct mailmime *body_tree(const struct skel *s)
{
	struct mailmime *alt = alternative_tree(s);
	if (!alt || s->nmedia == s->nimages)
		return alt;
	return with_media(s, "multipart/mixed", "M", alt, s->nimages, s->nmedia);
}

/* The HTML part, inside multipart/related with the images it shows when
 * there are some. */
static struct mailmime *html_tree(const struct skel *s)
{
	struct mailmime *hp = text_part("text/html", html_marker);
	if (!hp || !s->nimages)
		return hp;
	return with_media(s, "multipart/related", "R", hp, 0, s->nimages);
}

static struct mailmime *alternative_tree(const struct skel *s)
{
	struct mailmime *alt = multipart("multipart/alternative", "", s->id);
	struct mailmime *tp = text_part("text/plain", text_marker);
	struct mailmime *hp = html_tree(s);
	if (!alt || !tp || !hp || mailmime_smart_add_part(alt, tp) != MAILIMF_NO_ERROR) {
		if (alt) mailmime_free(alt);
		if (tp) mailmime_free(tp);
		if (hp) mailmime_free(hp);
		return NULL;
	}
	if (mailmime_smart_add_part(alt, hp) != MAILIMF_NO_ERROR) {
		mailmime_free(alt);
		mailmime_free(hp);
		return NULL;
	}
	return alt;
}

int skel_boundary_clear(const char *s, size_t len, const char *boundary)
{
	size_t bl = strlen(boundary), pl = strlen("boundary=\"");
	for (const char *at = s, *end = s + len, *hit;
	     (hit = memmem(at, (size_t)(end - at), boundary, bl)); at = hit + bl) {
		const char *after = hit + bl;
		/* A delimiter line, "--B" CRLF or the last one, "--B--". */
		int line = (hit == s + 2 || (hit - s >= 4 && !memcmp(hit - 4, "\r\n", 2))) &&
			   !memcmp(hit - 2, "--", 2) && end - after >= 2 &&
			   (!memcmp(after, "\r\n", 2) || !memcmp(after, "--", 2));
		int param = (size_t)(hit - s) >= pl && !memcmp(hit - pl, "boundary=\"", pl) &&
			    after < end && *after == '"';
		if (!line && !param)
			return 0;
	}
	return 1;
}

/* Where the body skeleton's boundaries stand: "=_" + level + run id. */
static int skeleton_clear(const struct skel *s)
{
	static const char *const level[] = {"", "R", "M"};
	for (size_t i = 0; i < sizeof level / sizeof *level; i++) {
		char bnd[sizeof s->id + 4];
		snprintf(bnd, sizeof bnd, "=_%s%s", level[i], s->id);
		if (!skel_boundary_clear(s->text.p, s->text.len, bnd))
			return 0;
	}
	return 1;
}

/* The body skeleton, once per run: libetpan writes the MIME tree (every
 * multipart, boundary and content header, the media parts) with markers
 * for bodies, from MIME-Version on; the markers are cut out and where
 * they stood kept in s->slot. Per reader only the header fields are
 * written and the parts filled in (skel_fill): the tree is the same for
 * every reader, and building, writing and freeing it was a third of a
 * message's instructions. */
static int write_skeleton(struct skel *s)
{
	struct mailmime *msg = mailmime_new_message_data(NULL);
	struct mailmime *body = msg ? body_tree(s) : NULL;
	if (!body || mailmime_smart_add_part(msg, body) != MAILIMF_NO_ERROR) {
		if (body)
			mailmime_free(body);
		if (msg)
			mailmime_free(msg);
		return -1;
	}
	MMAPString *mm = mmap_string_new("");
	struct buf raw = {0};
	int col = 0;
	int wr = mm ? mailmime_write_mem(mm, &col, msg) : -1;
	if (wr == MAILIMF_NO_ERROR) {
		/* the message's own MIME header lines, up to the blank line */
		const char *blank = memmem(mm->str, mm->len, "\r\n\r\n", 4);
		size_t hl = blank ? (size_t)(blank - mm->str) : mm->len;
		wr = enc_add_unfolded(&raw, mm->str, hl) < 0 ||
		     buf_add(&raw, mm->str + hl, mm->len - hl) < 0 ? -1 : 0;
	}
	if (mm)
		mmap_string_free(mm);
	mailmime_free(msg);
	enc_unquote_ext_values(&raw);
	buf_reset(&s->text);
	const char *at = raw.p, *end = raw.p + raw.len;
	for (size_t k = 0; wr == 0 && k < 2 + s->nmedia; k++) {
		const char *mk = k == 0 ? text_marker : k == 1 ? html_marker : s->marker[k - 2];
		const char *hit = memmem(at, (size_t)(end - at), mk, strlen(mk));
		if (!hit || buf_add(&s->text, at, (size_t)(hit - at)) < 0)
			wr = -1;
		else {
			s->slot[k] = s->text.len;
			at = hit + strlen(mk);
		}
	}
	if (wr == 0)
		wr = buf_add(&s->text, at, (size_t)(end - at));
	buf_free(&raw);
	return wr == 0 ? 0 : -1;
}

/* The run's random id, and the skeleton with its boundaries; a new draw
 * in the (astronomically unlikely) case a part's header line, a file
 * name, holds one. */
int skel_make(struct skel *s, const struct post *post, const struct media *media, size_t nmedia,
	      char *err, size_t errlen)
{
	s->post = post;
	s->media = media;
	s->nmedia = nmedia;
	s->nimages = post->nimages;
	if (!(s->slot = calloc(2 + nmedia, sizeof *s->slot)) ||
	    !(s->marker = calloc(nmedia ? nmedia : 1, sizeof *s->marker)))
		return oom(err, errlen);
	for (size_t k = 0; k < nmedia; k++)
		media_marker(k, s->marker[k], sizeof *s->marker);
	for (int tries = 0; tries < 4; tries++) {
		unsigned char rnd[8];
		if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0)
			return set_err(err, errlen, -1, "no random bytes for Message-IDs");
		size_t o = (size_t)snprintf(s->id, sizeof s->id, "%lx.", (unsigned long)time(NULL));
		for (size_t i = 0; i < sizeof rnd; i++)
			o += (size_t)snprintf(s->id + o, sizeof s->id - o, "%02x", rnd[i]);
		if (write_skeleton(s) < 0)
			return oom(err, errlen);
		if (skeleton_clear(s))
			return 0;
	}
	return set_err(err, errlen, -1, "no MIME boundary found that the message does not hold");
}

/* The body of slot k: text/plain's, text/html's, then each medium's. */
static const struct buf *slot_body(const struct skel *s, const struct buf *text,
				   const struct buf *html, size_t k)
{
	return k == 0 ? text : k == 1 ? html : &s->media[k - 2].body;
}

int skel_fill(struct buf *out, const struct skel *s, const struct buf *text, const struct buf *html)
{
	size_t total = s->text.len;
	for (size_t k = 0; k < 2 + s->nmedia; k++)
		total += slot_body(s, text, html, k)->len;
	if (buf_reserve(out, out->len + total) < 0)
		return -1;
	size_t at = 0;
	for (size_t k = 0; k < 2 + s->nmedia; k++) {
		const struct buf *body = slot_body(s, text, html, k);
		if (buf_add(out, s->text.p + at, s->slot[k] - at) < 0 ||
		    buf_add(out, body->p ? body->p : "", body->len) < 0)
			return -1;
		at = s->slot[k];
	}
	return buf_add(out, s->text.p + at, s->text.len - at);
}

void skel_free(struct skel *s)
{
	buf_free(&s->text);
	free(s->slot);
	free(s->marker);
	s->slot = NULL;
	s->marker = NULL;
}
