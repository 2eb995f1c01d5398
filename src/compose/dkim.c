#include "compose/dkim.h"
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <opendkim/dkim.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct dkimsig {
	DKIM_LIB *lib;
	unsigned char *key;
	size_t keylen;
	char *domain, *selector;
	unsigned long seq;
	/* sign_hdrs (and oversign_hdrs) with the config's header names
	 * after them, NULL-terminated; libopendkim keeps the pointers. */
	const char **sign, **oversign;
	char **names;
	size_t nnames;
};

/* What the signature covers: every header herald writes that a reader or
 * a filter acts on. MIME-Version and Content-Type keep the body's meaning
 * from being changed under a valid body hash. Cc and Sender are never
 * written: signed as absent (below), so one added later breaks the
 * signature instead of showing the reader another sender or recipient. */
static const char *const sign_hdrs[] = {
	"from", "reply-to", "to", "cc", "sender", "subject", "date", "message-id",
	"mime-version", "content-type", "list-id", "list-unsubscribe",
	"list-unsubscribe-post", NULL};
/* Over-signed: one more instance than present is signed (for an absent
 * header, its absence), so a header of these names added in transit, on
 * top or below, breaks the signature instead of being shown to the
 * reader, sorted on by a filter (List-Id) or trusted by the unsubscribe
 * button. That is every header herald signs. */
static const char *const oversign_hdrs[] = {
	"from", "reply-to", "to", "cc", "sender", "subject", "date", "message-id",
	"mime-version", "content-type", "list-id", "list-unsubscribe",
	"list-unsubscribe-post", NULL};

static int fail(struct dkimsig *s, DKIM *d, DKIM_STAT st, const char *what,
		char *err, size_t errlen)
{
	const char *why = d ? dkim_geterror(d) : NULL;
	set_err(err, errlen, DKIMSIG_FAIL, "DKIM %s for %s (selector %s): %s", what,
		s->domain, s->selector, why && *why ? why : dkim_getresultstr(st));
	return DKIMSIG_FAIL;
}

int dkimsig_sign(struct dkimsig *s, const char *msg, size_t len, struct buf *out,
		 char *err, size_t errlen)
{
	char id[32];
	snprintf(id, sizeof id, "herald.%lu", ++s->seq);
	DKIM_STAT st;
	DKIM *d = dkim_sign(s->lib, (const unsigned char *)id, NULL, s->key,
			    (const unsigned char *)s->selector, (const unsigned char *)s->domain,
			    DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, DKIM_SIGN_RSASHA256, -1, &st);
	if (!d)
		return fail(s, NULL, st, "signing could not start", err, errlen);
	/* libopendkim's chunk API wants writable bytes but does not write
	 * through them. */
	unsigned char *p = (unsigned char *)(uintptr_t)msg;
	int rc = DKIMSIG_OK;
	if ((st = dkim_chunk(d, p, len)) != DKIM_STAT_OK ||
	    (st = dkim_chunk(d, NULL, 0)) != DKIM_STAT_OK ||
	    (st = dkim_eom(d, NULL)) != DKIM_STAT_OK) {
		rc = fail(s, d, st, "signing failed", err, errlen);
	} else {
		static const char name[] = "DKIM-Signature: ";
		unsigned char *hv = NULL;
		size_t hl = 0;
		if ((st = dkim_getsighdr_d(d, strlen(name), &hv, &hl)) != DKIM_STAT_OK)
			rc = fail(s, d, st, "signature header", err, errlen);
		else if (buf_adds(out, name) < 0)
			rc = set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
		else {
			/* The library folds with bare LF; the wire wants CRLF. */
			for (size_t i = 0; i < hl && rc == DKIMSIG_OK; i++) {
				if (hv[i] == '\r')
					continue;
				if ((hv[i] == '\n' ? buf_add(out, "\r\n", 2) : buf_addc(out, (char)hv[i])) < 0)
					rc = set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
			}
			if (rc == DKIMSIG_OK && buf_add(out, "\r\n", 2) < 0)
				rc = set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
		}
	}
	dkim_free(d);
	return rc;
}

/* An RSA private key in PEM (PKCS#1 or PKCS#8) of at least 1024 bits,
 * the least RFC 8301 lets verifiers accept. */
static int check_key(const struct dkimsig *s, const char *key_file, char *err, size_t errlen)
{
	gnutls_x509_privkey_t k;
	if (gnutls_x509_privkey_init(&k) < 0)
		return set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
	gnutls_datum_t d = {s->key, (unsigned)s->keylen};
	int rc = gnutls_x509_privkey_import2(k, &d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
	unsigned bits = 0;
	if (rc < 0)
		set_err(err, errlen, DKIMSIG_FAIL, "dkim.key_file %s: not a PEM private key (%s)",
			key_file, gnutls_strerror(rc));
	else if (gnutls_x509_privkey_get_pk_algorithm2(k, &bits) != GNUTLS_PK_RSA)
		rc = set_err(err, errlen, DKIMSIG_FAIL,
			     "dkim.key_file %s: not an RSA key (DKIM's rsa-sha256 needs one)", key_file);
	else if (bits < 1024)
		rc = set_err(err, errlen, DKIMSIG_FAIL,
			     "dkim.key_file %s: a %u-bit key; verifiers reject keys under 1024 bits "
			     "(make one: openssl genrsa -out %s 2048)", key_file, bits, key_file);
	gnutls_x509_privkey_deinit(k);
	return rc < 0 ? DKIMSIG_FAIL : 0;
}

/* The static lists followed by the config's header names (lower-cased
 * copies), so a custom line is signed, and one added in transit breaks the
 * signature. */
static int header_lists(struct dkimsig *s, const char *const *extra, size_t nextra)
{
	size_t ns = 0, no = 0;
	while (sign_hdrs[ns])
		ns++;
	while (oversign_hdrs[no])
		no++;
	s->names = calloc(nextra + 1, sizeof *s->names);
	s->sign = calloc(ns + nextra + 1, sizeof *s->sign);
	s->oversign = calloc(no + nextra + 1, sizeof *s->oversign);
	if (!s->names || !s->sign || !s->oversign)
		return -1;
	memcpy(s->sign, sign_hdrs, ns * sizeof *s->sign);
	memcpy(s->oversign, oversign_hdrs, no * sizeof *s->oversign);
	for (size_t i = 0; i < nextra; i++) {
		if (!(s->names[i] = str_lower(extra[i])))
			return -1;
		s->nnames++;
		s->sign[ns + i] = s->oversign[no + i] = s->names[i];
	}
	return 0;
}

int dkimsig_open(struct dkimsig **out, const char *domain, const char *selector,
		 const char *key_file, const char *const *extra, size_t nextra,
		 char *err, size_t errlen)
{
	*out = NULL;
	struct dkimsig *s = calloc(1, sizeof *s);
	char *key = NULL;
	size_t klen = 0;
	if (!s)
		return set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
	s->domain = xstrdup(domain);
	s->selector = xstrdup(selector);
	if (!s->domain || !s->selector) {
		dkimsig_close(s);
		return set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
	}
	if (read_file(key_file, &key, &klen) < 0) {
		int e = errno;
		dkimsig_close(s);
		return set_err(err, errlen, e == ENOENT ? DKIMSIG_NOFILE : DKIMSIG_FAIL,
			       "dkim.key_file %s: %s (make one: openssl genrsa -out %s 2048)",
			       key_file, strerror(e), key_file);
	}
	s->key = (unsigned char *)key;
	s->keylen = klen;
	/* libopendkim leaks on a key it cannot parse and says little about
	 * why: GnuTLS (already linked for HMAC) reads it first. */
	if (check_key(s, key_file, err, errlen) < 0) {
		dkimsig_close(s);
		return DKIMSIG_FAIL;
	}
	s->lib = dkim_init(NULL, NULL);
	if (!s->lib) {
		dkimsig_close(s);
		return set_err(err, errlen, DKIMSIG_FAIL, "libopendkim did not initialise");
	}
	if (header_lists(s, extra, nextra) < 0) {
		dkimsig_close(s);
		return set_err(err, errlen, DKIMSIG_FAIL, "out of memory");
	}
	/* The options take the list itself with the length of a pointer;
	 * the lists live as long as the signer, as the library keeps them. */
	if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, (void *)s->sign,
			 sizeof(char **)) != DKIM_STAT_OK ||
	    dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, (void *)s->oversign,
			 sizeof(char **)) != DKIM_STAT_OK) {
		dkimsig_close(s);
		return set_err(err, errlen, DKIMSIG_FAIL, "libopendkim refused the header lists");
	}
	/* A key that does not parse (or is too short to sign) shows up only
	 * when signing; find out now, with the file's name in the error. */
	static const char probe[] = "From: a@b.example\r\nSubject: probe\r\n\r\nprobe\r\n";
	struct buf b = {0};
	char why[256];
	int rc = dkimsig_sign(s, probe, sizeof probe - 1, &b, why, sizeof why);
	buf_free(&b);
	if (rc < 0) {
		dkimsig_close(s);
		return set_err(err, errlen, DKIMSIG_FAIL, "dkim.key_file %s: %s", key_file, why);
	}
	s->seq = 0;
	*out = s;
	return DKIMSIG_OK;
}

void dkimsig_close(struct dkimsig *s)
{
	if (!s)
		return;
	if (s->lib)
		dkim_close(s->lib);
	if (s->key) {
		explicit_bzero(s->key, s->keylen);
		free(s->key);
	}
	free(s->domain);
	free(s->selector);
	for (size_t i = 0; i < s->nnames; i++)
		free(s->names[i]);
	free(s->names);
	free(s->sign);
	free(s->oversign);
	free(s);
}
