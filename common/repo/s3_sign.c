/*
 * SigV4 for the S3 client: the canonical request, the string to sign and
 * the signing key derived from the secret; and the SHA-256, hex and base64
 * helpers the rest of the client hashes with.
 *
 * What it promises: a signature depends on its input alone (no clock, no
 * client state), which is what lets the unit tests hold it to the AWS
 * documentation's published examples and lets every retry sign afresh. The
 * secret, and each key derived from it, is wiped from memory as soon as the
 * signature is made. A request with more headers or query parameters than
 * the fixed tables hold is refused, never signed in part.
 */
#include "common/repo/s3_internal.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- hashing ---- */

void
s3_sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 32;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static void
hmac256(const void *key, size_t key_len, const char *data, uint8_t out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, strlen(data), out, &n);
}

void
s3_base64(const uint8_t *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* ---- SigV4 ---- */

struct hdr_ref {
	char name[64];
	const char *value;
};

static int
hdr_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct hdr_ref *)a)->name, ((const struct hdr_ref *)b)->name));
}

struct q_enc {
	char *name;
	char *value;
};

static int
q_cmp(const void *a, const void *b)
{
	const struct q_enc *x = a;
	const struct q_enc *y = b;
	int c = strcmp(x->name, y->name);
	return (c != 0 ? c : strcmp(x->value, y->value));
}

static void
sb_header_value(coffer_strbuf *b, const char *v)
{
	/* Trim, and collapse runs of spaces, as SigV4 asks. */
	while (*v == ' ' || *v == '\t') {
		v++;
	}
	size_t n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
		n--;
	}
	bool space = false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == ' ' || v[i] == '\t') {
			space = true;
			continue;
		}
		if (space) {
			coffer_strbuf_putn(b, " ", 1);
			space = false;
		}
		coffer_strbuf_putn(b, v + i, 1);
	}
}

/* Builds the canonical request into cr and the signed header list into sh. */
static int
canonical_build(
    const coffer_s3_sign_input *in, coffer_strbuf *cr, coffer_strbuf *sh, coffer_err *err)
{
	if (in->nheaders + 1 > S3_MAX_HEADERS + 8 || in->nquery > S3_MAX_QUERY + 4) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "s3 request with too many headers "
		    "or query parameters"));
	}
	struct hdr_ref h[S3_MAX_HEADERS + 9];
	size_t nh = 0;
	snprintf(h[nh].name, sizeof(h[nh].name), "host");
	h[nh++].value = in->host;
	for (size_t i = 0; i < in->nheaders; i++) {
		size_t n = strlen(in->headers[i].name);
		if (n == 0 || n >= sizeof(h[nh].name)) {
			return (coffer_err_set(
			    err, COFFER_EINTERNAL, "s3 header name of %zu bytes", n));
		}
		for (size_t j = 0; j <= n; j++) {
			h[nh].name[j] = (char)tolower((unsigned char)in->headers[i].name[j]);
		}
		h[nh++].value = in->headers[i].value;
	}
	qsort(h, nh, sizeof(h[0]), hdr_cmp);

	struct q_enc q[S3_MAX_QUERY + 4];
	size_t nq = 0;
	int rc = 0;
	for (size_t i = 0; i < in->nquery; i++) {
		coffer_strbuf n = { 0 };
		coffer_strbuf v = { 0 };
		coffer_strbuf_put(&n, "");
		coffer_strbuf_put(&v, "");
		s3_uri_encode(&n, in->query[i].name, false);
		s3_uri_encode(&v, in->query[i].value != NULL ? in->query[i].value : "", false);
		q[nq].name = n.buf;
		q[nq].value = v.buf;
		nq++;
		if (n.failed || v.failed) {
			rc = COFFER_ENOMEM;
		}
	}
	if (rc == 0) {
		qsort(q, nq, sizeof(q[0]), q_cmp);
		coffer_strbuf_put(cr, in->method);
		coffer_strbuf_put(cr, "\n");
		s3_uri_encode(cr, in->path, true);
		coffer_strbuf_put(cr, "\n");
		for (size_t i = 0; i < nq; i++) {
			if (i > 0) {
				coffer_strbuf_put(cr, "&");
			}
			coffer_strbuf_put(cr, q[i].name);
			coffer_strbuf_put(cr, "=");
			coffer_strbuf_put(cr, q[i].value);
		}
		coffer_strbuf_put(cr, "\n");
		for (size_t i = 0; i < nh; i++) {
			coffer_strbuf_put(cr, h[i].name);
			coffer_strbuf_put(cr, ":");
			sb_header_value(cr, h[i].value);
			coffer_strbuf_put(cr, "\n");
			if (i > 0) {
				coffer_strbuf_put(sh, ";");
			}
			coffer_strbuf_put(sh, h[i].name);
		}
		coffer_strbuf_put(cr, "\n");
		coffer_strbuf_put(cr, sh->buf);
		coffer_strbuf_put(cr, "\n");
		coffer_strbuf_put(cr, in->payload_hash);
		if (cr->failed || sh->failed) {
			rc = COFFER_ENOMEM;
		}
	}
	for (size_t i = 0; i < nq; i++) {
		free(q[i].name);
		free(q[i].value);
	}
	if (rc != 0) {
		return (coffer_err_set(err, rc, "out of memory signing an s3 request"));
	}
	return (0);
}

int
coffer_s3_canonical_request(const coffer_s3_sign_input *in, char *buf, size_t size, coffer_err *err)
{
	coffer_strbuf cr = { 0 };
	coffer_strbuf sh = { 0 };
	int rc = canonical_build(in, &cr, &sh, err);
	if (rc == 0 && cr.len + 1 > size) {
		rc = coffer_err_set(err, COFFER_ETOOBIG,
		    "s3 canonical request of %zu bytes does "
		    "not fit in %zu",
		    cr.len, size);
	}
	if (rc == 0) {
		memcpy(buf, cr.buf, cr.len + 1);
	}
	coffer_strbuf_free(&cr);
	coffer_strbuf_free(&sh);
	return (rc);
}

int
coffer_s3_sign(
    const coffer_s3_sign_input *in, char *auth, size_t size, char sig[65], coffer_err *err)
{
	if (in->amz_date == NULL || strlen(in->amz_date) != 16) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "s3 signing without an x-amz-date"));
	}
	coffer_strbuf cr = { 0 };
	coffer_strbuf sh = { 0 };
	int rc = canonical_build(in, &cr, &sh, err);
	if (rc != 0) {
		coffer_strbuf_free(&cr);
		coffer_strbuf_free(&sh);
		return (rc);
	}
	char date[9];
	memcpy(date, in->amz_date, 8);
	date[8] = '\0';
	uint8_t d[32];
	char cr_hex[65];
	s3_sha256(cr.buf, cr.len, d);
	coffer_hex_encode(d, 32, cr_hex);

	char scope[128];
	snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date, in->region);
	char sts[256];
	snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", in->amz_date, scope, cr_hex);

	/* kSecret = "AWS4" + secret; the chain of HMACs narrows the key to one
	 * day, region and service, so a leaked signing key is worth little. */
	size_t slen = strlen(in->secret_key);
	char *k0 = malloc(slen + 5);
	if (k0 == NULL) {
		coffer_strbuf_free(&cr);
		coffer_strbuf_free(&sh);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory signing an s3 request"));
	}
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, in->secret_key, slen + 1);
	uint8_t k[32];
	hmac256(k0, slen + 4, date, k);
	OPENSSL_cleanse(k0, slen + 4);
	free(k0);
	hmac256(k, 32, in->region, k);
	hmac256(k, 32, "s3", k);
	hmac256(k, 32, "aws4_request", k);
	uint8_t s[32];
	hmac256(k, 32, sts, s);
	OPENSSL_cleanse(k, sizeof(k));
	char s_hex[65];
	coffer_hex_encode(s, 32, s_hex);
	if (sig != NULL) {
		memcpy(sig, s_hex, 65);
	}
	int n = snprintf(auth, size,
	    "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
	    "Signature=%s",
	    in->access_key, scope, sh.buf, s_hex);
	coffer_strbuf_free(&cr);
	coffer_strbuf_free(&sh);
	if (n < 0 || (size_t)n >= size) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		    "s3 authorization header does not fit "
		    "in %zu bytes",
		    size));
	}
	return (0);
}
