/*
 * SHA-256 and byte-count pass-through filters. See
 * common/stream/digest.h for the promises.
 *
 * SHA-256 goes through OpenSSL's EVP interface, which picks the SHA-NI or
 * AVX2 code path at run time; the digest is on the data path of every
 * backup, so it must not be a portable C loop.
 */
#include "common/stream/digest.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct sha256_filter {
	coffer_filter base; /* first: the chain sees only this */
	EVP_MD_CTX *md;
	uint8_t digest[COFFER_SHA256_LEN];
	bool finished;
};

struct count_filter {
	coffer_filter base;
	uint64_t bytes;
};

static int
sha256_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct sha256_filter *s = (struct sha256_filter *)f;
	if (s->finished) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "sha256 filter written to after it was finished"));
	}
	if (EVP_DigestUpdate(s->md, buf, len) != 1) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "sha256 update"));
	}
	return (coffer_filter_write(f->next, buf, len, err));
}

static int
sha256_finish(coffer_filter *f, coffer_err *err)
{
	struct sha256_filter *s = (struct sha256_filter *)f;
	if (s->finished) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "sha256 filter finished twice"));
	}
	unsigned int n = 0;
	if (EVP_DigestFinal_ex(s->md, s->digest, &n) != 1 || n != COFFER_SHA256_LEN) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "sha256 final"));
	}
	s->finished = true;
	return (0);
}

static void
sha256_destroy(coffer_filter *f)
{
	struct sha256_filter *s = (struct sha256_filter *)f;
	EVP_MD_CTX_free(s->md);
	free(s);
}

static const coffer_filter_ops sha256_ops = {
	.name = "sha256",
	.write = sha256_write,
	.finish = sha256_finish,
	.destroy = sha256_destroy,
};

coffer_filter *
coffer_sha256_filter_new(coffer_filter *next, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	struct sha256_filter *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a sha256 filter");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	s->base.ops = &sha256_ops;
	s->base.next = next;
	s->md = EVP_MD_CTX_new();
	if (s->md == NULL || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
		coffer_err_openssl(err, COFFER_EINTERNAL, "cannot start sha256");
		coffer_err_hint(err, "check that the OpenSSL default provider is available");
		coffer_filter_free_chain(&s->base);
		return (NULL);
	}
	return (&s->base);
}

int
coffer_sha256_filter_digest(const coffer_filter *f, uint8_t out[COFFER_SHA256_LEN])
{
	if (f == NULL || f->ops != &sha256_ops) {
		return (COFFER_EINTERNAL);
	}
	const struct sha256_filter *s = (const struct sha256_filter *)f;
	if (!s->finished) {
		return (COFFER_EINTERNAL);
	}
	memcpy(out, s->digest, COFFER_SHA256_LEN);
	return (0);
}

static int
count_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct count_filter *c = (struct count_filter *)f;
	c->bytes += len;
	return (coffer_filter_write(f->next, buf, len, err));
}

static int
count_finish(coffer_filter *f, coffer_err *err)
{
	(void)f;
	(void)err;
	return (0);
}

static void
count_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops count_ops = {
	.name = "count",
	.write = count_write,
	.finish = count_finish,
	.destroy = count_destroy,
};

coffer_filter *
coffer_count_filter_new(coffer_filter *next, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	struct count_filter *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a count filter");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	c->base.ops = &count_ops;
	c->base.next = next;
	return (&c->base);
}

uint64_t
coffer_count_filter_bytes(const coffer_filter *f)
{
	if (f == NULL || f->ops != &count_ops) {
		return (0);
	}
	return (((const struct count_filter *)f)->bytes);
}
