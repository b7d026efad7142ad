/*
 * Ed25519 keys and signatures over OpenSSL 3's EVP interface. See
 * common/crypto/sign.h for the file formats. Key files are small, so they are read
 * whole into a bounded buffer; anything larger is not a key.
 */
#include "common/crypto/sign.h"

#include "common/base/durable.h"
#include "common/base/hex.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#define SIGN_FILE_MAX 16384

struct coffer_sign_key {
	EVP_PKEY *pkey;
};

struct coffer_sign_pubkey {
	EVP_PKEY *pkey;
	uint8_t raw[COFFER_SIGN_PUBKEY_BYTES];
};

/* Reads a whole small file into buf (NUL-terminated); *st gets its stat. */
static int
read_small(const char *path, const char *what, char *buf, size_t size, size_t *len, struct stat *st,
    coffer_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		int code = coffer_err_errno(err, e, "open", path);
		if (e == ENOENT) {
			coffer_err_hint(err, "check the path of the %s in the config", what);
		}
		return (code);
	}
	if (fstat(fd, st) != 0) {
		int e = errno;
		close(fd);
		return (coffer_err_errno(err, e, "stat", path));
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		coffer_err_set(err, COFFER_EINVAL, "%s %s is not a regular file", what, path);
		coffer_err_hint(err, "point the config at the %s file itself", what);
		return (COFFER_EINVAL);
	}
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fd, buf + got, size - 1 - got);
		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			int e = errno;
			close(fd);
			return (coffer_err_errno(err, e, "read", path));
		}
		if (r == 0) {
			break;
		}
		got += (size_t)r;
		if (got == size - 1) {
			close(fd);
			coffer_err_set(err, COFFER_EINVAL,
			    "%s %s is larger than %zu bytes, so it is "
			    "not a key",
			    what, path, size - 2);
			coffer_err_hint(err, "check that the config names the right file");
			return (COFFER_EINVAL);
		}
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return (0);
}

static int
pub_from_pkey(EVP_PKEY *pkey, coffer_sign_pubkey **out, coffer_err *err)
{
	coffer_sign_pubkey *pub = calloc(1, sizeof(*pub));
	if (pub == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for a public key"));
	}
	size_t n = sizeof(pub->raw);
	if (EVP_PKEY_get_raw_public_key(pkey, pub->raw, &n) != 1 || n != sizeof(pub->raw)) {
		free(pub);
		return (
		    coffer_err_openssl(err, COFFER_EINVAL, "cannot read an ed25519 public key"));
	}
	pub->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub->raw, n);
	if (pub->pkey == NULL) {
		free(pub);
		return (
		    coffer_err_openssl(err, COFFER_EINVAL, "cannot make an ed25519 public key"));
	}
	*out = pub;
	return (0);
}

static int
new_pkey(EVP_PKEY **out, coffer_err *err)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	EVP_PKEY *pkey = NULL;
	if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return (
		    coffer_err_openssl(err, COFFER_EINTERNAL, "cannot generate an ed25519 key"));
	}
	EVP_PKEY_CTX_free(ctx);
	*out = pkey;
	return (0);
}

int
coffer_sign_key_generate(coffer_sign_key **out, coffer_err *err)
{
	*out = NULL;
	coffer_sign_key *key = calloc(1, sizeof(*key));
	if (key == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for a signing key"));
	}
	int rc = new_pkey(&key->pkey, err);
	if (rc != 0) {
		free(key);
		return (rc);
	}
	*out = key;
	return (0);
}

int
coffer_sign_keygen(const char *path, char pub_hex[COFFER_SIGN_PUBKEY_HEX], coffer_err *err)
{
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	int rc = new_pkey(&pkey, err);
	if (rc != 0) {
		return (rc);
	}
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		rc = coffer_err_openssl(err, COFFER_EINTERNAL, "cannot encode the signing key");
		goto out;
	}
	char *pem = NULL;
	long pem_len = BIO_get_mem_data(bio, &pem);
	/* no_replace: never replace a key that may already be enrolled
	 * somewhere; the key is 0600 before it is written. */
	coffer_durable_opts opts = { .mode = 0600, .no_replace = true };
	rc = coffer_durable_replace(path, pem, (size_t)pem_len, &opts, err);
	if (rc == COFFER_EEXIST) {
		coffer_err_set(err, COFFER_EEXIST, "signing key %s already exists", path);
		coffer_err_hint(err,
		    "keep the existing key, or move it away first if you "
		    "really mean to replace it (its public key must then be re-enrolled)");
	}
	if (rc != 0) {
		goto out;
	}
	if (pub_hex != NULL) {
		uint8_t raw[COFFER_SIGN_PUBKEY_BYTES];
		size_t n = sizeof(raw);
		if (EVP_PKEY_get_raw_public_key(pkey, raw, &n) != 1) {
			rc =
			    coffer_err_openssl(err, COFFER_EINTERNAL, "cannot read the public key");
			goto out;
		}
		coffer_hex_encode(raw, sizeof(raw), pub_hex);
	}
out:
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	return (rc);
}

int
coffer_sign_key_load(const char *path, coffer_sign_key **out, coffer_err *err)
{
	*out = NULL;
	char *buf = malloc(SIGN_FILE_MAX);
	if (buf == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory reading %s", path));
	}
	size_t len = 0;
	struct stat st;
	int rc = read_small(path, "signing key", buf, SIGN_FILE_MAX, &len, &st, err);
	if (rc != 0) {
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		rc = coffer_err_set(err, COFFER_EPERM,
		    "signing key %s has mode %03o: group or "
		    "others may access it",
		    path, (unsigned)(st.st_mode & 0777));
		coffer_err_hint(err,
		    "chmod 600 %s (and consider the key exposed if others "
		    "could read it)",
		    path);
		goto out;
	}
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (pkey == NULL || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		EVP_PKEY_free(pkey);
		ERR_clear_error();
		rc = coffer_err_set(
		    err, COFFER_EINVAL, "%s is not an ed25519 private key in PEM", path);
		coffer_err_hint(err, "create one with `coffer-agent init` (or `coffer init`)");
		goto out;
	}
	coffer_sign_key *key = calloc(1, sizeof(*key));
	if (key == NULL) {
		EVP_PKEY_free(pkey);
		rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory for a signing key");
		goto out;
	}
	key->pkey = pkey;
	*out = key;
out:
	OPENSSL_cleanse(buf, SIGN_FILE_MAX);
	free(buf);
	return (rc);
}

int
coffer_sign_pubkey_from_raw(
    const uint8_t raw[COFFER_SIGN_PUBKEY_BYTES], coffer_sign_pubkey **out, coffer_err *err)
{
	*out = NULL;
	coffer_sign_pubkey *pub = calloc(1, sizeof(*pub));
	if (pub == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for a public key"));
	}
	memcpy(pub->raw, raw, sizeof(pub->raw));
	pub->pkey =
	    EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, COFFER_SIGN_PUBKEY_BYTES);
	if (pub->pkey == NULL) {
		free(pub);
		return (coffer_err_openssl(err, COFFER_EINVAL, "not an ed25519 public key"));
	}
	*out = pub;
	return (0);
}

int
coffer_sign_pubkey_parse(const char *text, size_t len, coffer_sign_pubkey **out, coffer_err *err)
{
	*out = NULL;
	size_t a = 0;
	size_t b = len;
	while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\n' || text[a] == '\r')) {
		a++;
	}
	while (b > a &&
	    (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\n' ||
	        text[b - 1] == '\r')) {
		b--;
	}
	static const char pem_tag[] = "-----BEGIN PUBLIC KEY-----";
	if (b - a >= sizeof(pem_tag) - 1 && memcmp(text + a, pem_tag, sizeof(pem_tag) - 1) == 0) {
		if (b - a > SIGN_FILE_MAX) {
			return (coffer_err_set(err, COFFER_EINVAL, "public key PEM is too long"));
		}
		BIO *bio = BIO_new_mem_buf(text + a, (int)(b - a));
		EVP_PKEY *pkey = bio != NULL ? PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		if (pkey == NULL || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
			EVP_PKEY_free(pkey);
			ERR_clear_error();
			coffer_err_set(
			    err, COFFER_EINVAL, "the PEM public key is not an ed25519 key");
			coffer_err_hint(err, "use the key printed by `coffer-agent init`");
			return (COFFER_EINVAL);
		}
		int rc = pub_from_pkey(pkey, out, err);
		EVP_PKEY_free(pkey);
		return (rc);
	}
	if (b - a != 2 * COFFER_SIGN_PUBKEY_BYTES) {
		coffer_err_set(err, COFFER_EINVAL,
		    "a public key must be 64 hex digits or a PEM "
		    "block; found %zu characters",
		    b - a);
		coffer_err_hint(err, "use the key printed by `coffer-agent init`");
		return (COFFER_EINVAL);
	}
	uint8_t raw[COFFER_SIGN_PUBKEY_BYTES];
	for (size_t i = 0; i < sizeof(raw); i++) {
		int hi = coffer_hex_digit(text[a + 2 * i]);
		int lo = coffer_hex_digit(text[a + 2 * i + 1]);
		if (hi < 0 || lo < 0) {
			coffer_err_set(err, COFFER_EINVAL,
			    "a public key must be 64 hex digits; "
			    "character %zu is not one",
			    2 * i + (hi < 0 ? 1 : 2));
			coffer_err_hint(err, "use the key printed by `coffer-agent init`");
			return (COFFER_EINVAL);
		}
		raw[i] = (uint8_t)(hi << 4 | lo);
	}
	return (coffer_sign_pubkey_from_raw(raw, out, err));
}

int
coffer_sign_pubkey_load(const char *path, coffer_sign_pubkey **out, coffer_err *err)
{
	*out = NULL;
	char *buf = malloc(SIGN_FILE_MAX);
	if (buf == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory reading %s", path));
	}
	size_t len = 0;
	struct stat st;
	int rc = read_small(path, "public key", buf, SIGN_FILE_MAX, &len, &st, err);
	if (rc == 0) {
		rc = coffer_sign_pubkey_parse(buf, len, out, err);
		if (rc != 0) {
			coffer_err_wrap(err, "public key %s", path);
		}
	}
	free(buf);
	return (rc);
}

int
coffer_sign_key_public(const coffer_sign_key *key, coffer_sign_pubkey **out, coffer_err *err)
{
	*out = NULL;
	return (pub_from_pkey(key->pkey, out, err));
}

void
coffer_sign_pubkey_raw(const coffer_sign_pubkey *pub, uint8_t raw[COFFER_SIGN_PUBKEY_BYTES])
{
	memcpy(raw, pub->raw, COFFER_SIGN_PUBKEY_BYTES);
}

void
coffer_sign_pubkey_hex(const coffer_sign_pubkey *pub, char out[COFFER_SIGN_PUBKEY_HEX])
{
	coffer_hex_encode(pub->raw, COFFER_SIGN_PUBKEY_BYTES, out);
}

void
coffer_sign_fingerprint(const coffer_sign_pubkey *pub, char out[COFFER_SIGN_FINGERPRINT_HEX])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(pub->raw, sizeof(pub->raw), md, &n, EVP_sha256(), NULL) != 1) {
		/* SHA-256 of 32 bytes cannot fail short of a broken OpenSSL. */
		memset(md, 0, sizeof(md));
		ERR_clear_error();
	}
	coffer_hex_encode(md, 16, out);
}

int
coffer_sign(const coffer_sign_key *key, const void *data, size_t len,
    uint8_t sig[COFFER_SIGN_BYTES], coffer_err *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t n = COFFER_SIGN_BYTES;
	/* Ed25519 is "pure": no digest is named, the data is signed in one call. */
	if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) != 1 ||
	    EVP_DigestSign(ctx, sig, &n, data, len) != 1 || n != COFFER_SIGN_BYTES) {
		EVP_MD_CTX_free(ctx);
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot sign with ed25519"));
	}
	EVP_MD_CTX_free(ctx);
	return (0);
}

int
coffer_sign_verify(const coffer_sign_pubkey *pub, const void *data, size_t len,
    const uint8_t sig[COFFER_SIGN_BYTES], coffer_err *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (ctx == NULL || EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub->pkey) != 1) {
		EVP_MD_CTX_free(ctx);
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot verify with ed25519"));
	}
	int ok = EVP_DigestVerify(ctx, sig, COFFER_SIGN_BYTES, data, len);
	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	if (ok != 1) {
		char fp[COFFER_SIGN_FINGERPRINT_HEX];
		coffer_sign_fingerprint(pub, fp);
		return (coffer_err_set(
		    err, COFFER_EAUTH, "ed25519 signature does not match key %s", fp));
	}
	return (0);
}

void
coffer_sign_key_free(coffer_sign_key *key)
{
	if (key != NULL) {
		EVP_PKEY_free(key->pkey);
		free(key);
	}
}

void
coffer_sign_pubkey_free(coffer_sign_pubkey *pub)
{
	if (pub != NULL) {
		EVP_PKEY_free(pub->pkey);
		free(pub);
	}
}
