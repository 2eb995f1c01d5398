/* The signup confirmation mail (confirm.h). */
#include "compose/confirm.h"
#include "compose/dkim.h"
#include "compose/encode.h"
#include <gnutls/crypto.h>
#include <libetpan/libetpan.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An encoded-word copy of s (phrase: a display name), or NULL. */
static char *encoded(const char *s, int phrase)
{
	struct buf b = {0};
	if (enc_words(&b, s, phrase) < 0) {
		buf_free(&b);
		return NULL;
	}
	buf_cstr(&b);
	return buf_detach(&b);
}

static struct mailimf_fields *fields(const struct config *cfg, const char *to, const char *name,
				     time_t now)
{
	unsigned char rnd[12];
	char *mid = NULL, *subject = NULL, *subj = NULL;
	if (gnutls_rnd(GNUTLS_RND_NONCE, rnd, sizeof rnd) < 0 ||
	    asprintf(&mid, "confirm.%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x%02x@%s", rnd[0], rnd[1],
		     rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7], rnd[8], rnd[9], rnd[10], rnd[11],
		     strrchr(cfg->from_addr, '@') + 1) < 0)
		return NULL;
	if (asprintf(&subject, "Confirm your subscription to %s", cfg->list_name) >= 0)
		subj = encoded(subject, 0);
	free(subject);
	struct mailimf_mailbox_list *from = mailimf_mailbox_list_new_empty();
	struct mailimf_address_list *rcpt = mailimf_address_list_new_empty();
	char *fn = *cfg->from_name ? encoded(cfg->from_name, 1) : NULL;
	char *tn = name && *name ? encoded(name, 1) : NULL;
	struct mailimf_date_time *date = mailimf_get_date(now);
	int ok = subj && from && rcpt && date && (fn || !*cfg->from_name) && (tn || !name || !*name) &&
		 mailimf_mailbox_list_add_mb(from, fn, strdup(cfg->from_addr)) == MAILIMF_NO_ERROR;
	if (ok)
		fn = NULL; /* the list owns it now */
	ok = ok && mailimf_address_list_add_mb(rcpt, tn, strdup(to)) == MAILIMF_NO_ERROR;
	if (ok)
		tn = NULL;
	struct mailimf_fields *f = ok ? mailimf_fields_new_with_data_all(date, from, NULL, NULL, rcpt,
									 NULL, NULL, mid, NULL, NULL, subj)
				      : NULL;
	if (!f) {
		if (from) mailimf_mailbox_list_free(from);
		if (rcpt) mailimf_address_list_free(rcpt);
		if (date) mailimf_date_time_free(date);
		free(mid);
		free(subj);
	}
	free(fn);
	free(tn);
	return f;
}

static struct mailmime *text_body(const char *qp, size_t len)
{
	struct mailmime_fields *mf = mailmime_fields_new_encoding(MAILMIME_MECHANISM_QUOTED_PRINTABLE);
	struct mailmime_content *ct = mailmime_content_new_with_str("text/plain");
	char *pn = strdup("charset"), *pv = strdup("utf-8");
	struct mailmime_parameter *prm = pn && pv ? mailmime_parameter_new(pn, pv) : NULL;
	struct mailmime *part = NULL;
	if (mf && ct && prm && clist_append(ct->ct_parameters, prm) == 0) {
		prm = NULL;
		part = mailmime_new_empty(ct, mf);
	}
	struct mailmime_data *d = part ? mailmime_data_new(MAILMIME_DATA_TEXT,
		MAILMIME_MECHANISM_QUOTED_PRINTABLE, 1, qp, len, NULL) : NULL;
	if (!d) {
		if (part)
			mailmime_free(part);
		else {
			if (mf) mailmime_fields_free(mf);
			if (ct) mailmime_content_free(ct);
		}
		if (prm)
			mailmime_parameter_free(prm);
		else if (!part) {
			free(pn);
			free(pv);
		}
		return NULL;
	}
	part->mm_data.mm_single = d;
	return part;
}

BUF_MUST static int sign(const struct config *cfg, struct buf *msg, struct buf *out, char *err, size_t errlen)
{
	if (!cfg->dkim.domain || !*cfg->dkim.domain)
		return buf_add(out, msg->p, msg->len) < 0 ? set_err(err, errlen, -1, "out of memory") : 0;
	struct dkimsig *d;
	if (dkimsig_open(&d, cfg->dkim.domain, cfg->dkim.selector, cfg->dkim.key_file, NULL, 0, err,
			 errlen) < 0)
		return -1;
	int rc = dkimsig_sign(d, msg->p, msg->len, out, err, errlen);
	dkimsig_close(d);
	if (rc == 0 && buf_add(out, msg->p, msg->len) < 0)
		rc = set_err(err, errlen, -1, "out of memory");
	return rc < 0 ? -1 : 0;
}

int confirm_build(const struct config *cfg, const char *to, const char *name, const char *link,
		  int hours, time_t now, struct buf *out, char *err, size_t errlen)
{
	struct buf text = {0}, qp = {0}, raw = {0};
	int rc = buf_printf(&text, "Someone, we hope you, asked to subscribe %s to %s.\n\n"
			    "To confirm, open this link and press the button on the page:\n\n%s\n\n"
			    "The link works for %d hours. If you did not ask, ignore this mail:\n"
			    "nothing happens until the button is pressed.\n", to, cfg->list_name, link, hours);
	if (rc == 0)
		rc = enc_qp(&qp, text.p, text.len);
	struct mailimf_fields *f = rc == 0 ? fields(cfg, to, name, now) : NULL;
	struct mailmime *msg = f ? mailmime_new_message_data(NULL) : NULL;
	struct mailmime *body = msg ? text_body(qp.p, qp.len) : NULL;
	rc = -1;
	if (body) {
		mailmime_set_imf_fields(msg, f);
		f = NULL;
		if (mailmime_smart_add_part(msg, body) == MAILIMF_NO_ERROR) {
			body = NULL;
			MMAPString *s = mmap_string_new("");
			int col = 0;
			/* The header lines as an issue's are (enc_add_unfolded),
			 * so a reader's name is written the same in both. */
			const char *end = s && mailmime_write_mem(s, &col, msg) == MAILIMF_NO_ERROR ?
						  memmem(s->str, s->len, "\r\n\r\n", 4) : NULL;
			size_t hl = end ? (size_t)(end - s->str) + 2 : 0;
			if (end && enc_add_unfolded(&raw, s->str, hl) == 0 &&
			    buf_add(&raw, s->str + hl, s->len - hl) == 0)
				rc = 0;
			if (s)
				mmap_string_free(s);
		}
	}
	if (body)
		mailmime_free(body);
	if (msg)
		mailmime_free(msg);
	if (f)
		mailimf_fields_free(f);
	if (rc < 0)
		set_err(err, errlen, -1, "out of memory building the confirmation mail");
	else
		rc = sign(cfg, &raw, out, err, errlen);
	buf_free(&text);
	buf_free(&qp);
	buf_free(&raw);
	return rc;
}
