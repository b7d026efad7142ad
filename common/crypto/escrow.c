/*
 * Key escrow objects (common/crypto/escrow.h): X25519 + HKDF-SHA-256 +
 * AES-256-GCM, all OpenSSL EVP; no primitive of our own.
 *
 * Why a fresh ephemeral key per object and no stored nonce reuse question:
 * the AES key is derived from a shared secret no other object shares, so
 * even a constant nonce would be safe; the nonce is random all the same.
 * The HKDF salt binds both public keys, so a key derived for one recipient
 * is never the one derived for another.
 */
#include "common/crypto/escrow.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "common/base/durable.h"
#include "common/base/hex.h"

#define ESCROW_DOMAIN    "coffer-escrow-v1"
#define ESCROW_FORMAT    1
#define ESCROW_FILE_MAX  4096
#define ESCROW_NONCE_LEN 12
#define ESCROW_TAG_LEN   16

struct coffer_escrow_key {
	EVP_PKEY *pkey;
	uint8_t pub[COFFER_ESCROW_PUB_BYTES];
};

struct coffer_escrow_pub {
	EVP_PKEY *pkey;
	uint8_t raw[COFFER_ESCROW_PUB_BYTES];
};

static void
fingerprint_raw(const uint8_t raw[COFFER_ESCROW_PUB_BYTES], char out[COFFER_ESCROW_FINGERPRINT_HEX])
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(raw, COFFER_ESCROW_PUB_BYTES, md, &n, EVP_sha256(), NULL) != 1) {
		memset(md, 0, sizeof(md));
		ERR_clear_error();
	}
	coffer_hex_encode(md, 16, out);
}

void
coffer_escrow_pub_fingerprint(const coffer_escrow_pub *pub, char out[COFFER_ESCROW_FINGERPRINT_HEX])
{
	fingerprint_raw(pub->raw, out);
}

void
coffer_escrow_key_fingerprint(const coffer_escrow_key *key, char out[COFFER_ESCROW_FINGERPRINT_HEX])
{
	fingerprint_raw(key->pub, out);
}

void
coffer_escrow_key_free(coffer_escrow_key *key)
{
	if (key != NULL) {
		EVP_PKEY_free(key->pkey);
		free(key);
	}
}

void
coffer_escrow_pub_free(coffer_escrow_pub *pub)
{
	if (pub != NULL) {
		EVP_PKEY_free(pub->pkey);
		free(pub);
	}
}

/* A whole small file into buf (NUL-terminated); never through stdio, whose
 * buffers would keep a copy of a private key. */
static int
read_small(const char *path, const char *what, char *buf, size_t size, size_t *len, struct stat *st,
    coffer_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		int rv = coffer_err_errno(err, e, "open", path);
		if (e == ENOENT) {
			coffer_err_hint(err, "check the path of the %s", what);
		}
		return (rv);
	}
	if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return (
		    coffer_err_set(err, COFFER_EINVAL, "%s %s is not a regular file", what, path));
	}
	size_t got = 0;
	for (;;) {
		ssize_t r = read(fd, buf + got, size - 1 - got);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
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
			return (coffer_err_set(err, COFFER_EINVAL,
			    "%s %s is larger than %zu bytes, so it is not a key", what, path,
			    size - 2));
		}
	}
	close(fd);
	buf[got] = '\0';
	*len = got;
	return (0);
}

int
coffer_escrow_keygen(const char *path, char pub_hex[COFFER_ESCROW_PUB_HEX], coffer_err *err)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *pkey = NULL;
	BIO *bio = NULL;
	int rv = 0;
	if (ctx == NULL || EVP_PKEY_keygen_init(ctx) != 1 || EVP_PKEY_keygen(ctx, &pkey) != 1) {
		rv = coffer_err_openssl(err, COFFER_EINTERNAL, "cannot generate an x25519 key");
		goto out;
	}
	uint8_t raw[COFFER_ESCROW_PUB_BYTES];
	size_t n = sizeof(raw);
	if (EVP_PKEY_get_raw_public_key(pkey, raw, &n) != 1 || n != sizeof(raw)) {
		rv = coffer_err_openssl(err, COFFER_EINTERNAL, "cannot read the escrow public key");
		goto out;
	}
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
		rv = coffer_err_openssl(err, COFFER_EINTERNAL, "cannot encode the escrow key");
		goto out;
	}
	char *pem = NULL;
	long pem_len = BIO_get_mem_data(bio, &pem);
	coffer_durable_opts opts = { .mode = 0600, .no_replace = true };
	rv = coffer_durable_replace(path, pem, (size_t)pem_len, &opts, err);
	if (rv == COFFER_EEXIST) {
		coffer_err_set(err, COFFER_EEXIST, "escrow key %s already exists", path);
		coffer_err_hint(err,
		    "an escrow key is made once for the platform; keep it, or choose "
		    "another --out");
	}
	if (rv == 0) {
		coffer_hex_encode(raw, sizeof(raw), pub_hex);
	}
out:
	BIO_free(bio);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	return (rv);
}

int
coffer_escrow_key_load(const char *path, coffer_escrow_key **out, coffer_err *err)
{
	*out = NULL;
	char buf[ESCROW_FILE_MAX];
	size_t len = 0;
	struct stat st;
	int rv = read_small(path, "escrow key", buf, sizeof(buf), &len, &st, err);
	if (rv == 0 && (st.st_mode & 077) != 0) {
		rv = coffer_err_set(err, COFFER_EPERM,
		    "escrow key %s has mode %03o: group or others may access it", path,
		    (unsigned)(st.st_mode & 0777));
		coffer_err_hint(err, "chmod 600 %s (and consider it exposed)", path);
	}
	EVP_PKEY *pkey = NULL;
	if (rv == 0) {
		BIO *bio = BIO_new_mem_buf(buf, (int)len);
		pkey = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
		BIO_free(bio);
		if (pkey == NULL || EVP_PKEY_get_id(pkey) != EVP_PKEY_X25519) {
			ERR_clear_error();
			rv = coffer_err_set(
			    err, COFFER_EINVAL, "%s is not an x25519 private key in PEM", path);
			coffer_err_hint(err,
			    "pass the private half made by `coffer-agent escrow-keygen` "
			    "(not the .pub file)");
		}
	}
	coffer_escrow_key *key = NULL;
	if (rv == 0 && (key = calloc(1, sizeof(*key))) == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "out of memory for an escrow key");
	}
	size_t n = COFFER_ESCROW_PUB_BYTES;
	if (rv == 0 &&
	    (EVP_PKEY_get_raw_public_key(pkey, key->pub, &n) != 1 ||
	        n != COFFER_ESCROW_PUB_BYTES)) {
		rv = coffer_err_openssl(err, COFFER_EINVAL, "cannot read the escrow public key");
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	if (rv != 0) {
		free(key);
		EVP_PKEY_free(pkey);
		return (rv);
	}
	key->pkey = pkey;
	*out = key;
	return (0);
}

int
coffer_escrow_pub_parse(const char *text, size_t len, coffer_escrow_pub **out, coffer_err *err)
{
	*out = NULL;
	size_t a = 0, b = len;
	while (a < b && (text[a] == ' ' || text[a] == '\t' || text[a] == '\n' || text[a] == '\r')) {
		a++;
	}
	while (b > a &&
	    (text[b - 1] == ' ' || text[b - 1] == '\t' || text[b - 1] == '\n' ||
	        text[b - 1] == '\r')) {
		b--;
	}
	uint8_t raw[COFFER_ESCROW_PUB_BYTES];
	char hex[COFFER_ESCROW_PUB_HEX];
	if (b - a != 2 * COFFER_ESCROW_PUB_BYTES) {
		coffer_err_set(err, COFFER_EINVAL,
		    "an escrow public key is 64 hex digits on one line; found %zu characters",
		    b - a);
		return (
		    coffer_err_hint(err, "use the .pub file `coffer-agent escrow-keygen` wrote"));
	}
	memcpy(hex, text + a, b - a);
	hex[b - a] = '\0';
	if (coffer_hex_decode(hex, raw, sizeof(raw), err) != 0) {
		return (
		    coffer_err_hint(err, "use the .pub file `coffer-agent escrow-keygen` wrote"));
	}
	coffer_escrow_pub *pub = calloc(1, sizeof(*pub));
	if (pub == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory for an escrow key"));
	}
	memcpy(pub->raw, raw, sizeof(raw));
	pub->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, raw, sizeof(raw));
	if (pub->pkey == NULL) {
		free(pub);
		return (coffer_err_openssl(err, COFFER_EINVAL, "not an x25519 public key"));
	}
	*out = pub;
	return (0);
}

int
coffer_escrow_pub_load(const char *path, coffer_escrow_pub **out, coffer_err *err)
{
	*out = NULL;
	char buf[ESCROW_FILE_MAX];
	size_t len = 0;
	struct stat st;
	int rv = read_small(path, "escrow public key", buf, sizeof(buf), &len, &st, err);
	if (rv == 0 && (rv = coffer_escrow_pub_parse(buf, len, out, err)) != 0) {
		coffer_err_wrap(err, "escrow public key %s", path);
	}
	return (rv);
}

/* The AES key of one object: HKDF-SHA-256(ikm = X25519(priv, peer),
 * salt = ephemeral public || recipient public, info = the domain). */
static int
derive(EVP_PKEY *priv, EVP_PKEY *peer, const uint8_t eph[COFFER_ESCROW_PUB_BYTES],
    const uint8_t recipient[COFFER_ESCROW_PUB_BYTES], uint8_t out[32], coffer_err *err)
{
	uint8_t shared[32];
	size_t slen = sizeof(shared);
	EVP_PKEY_CTX *dctx = EVP_PKEY_CTX_new(priv, NULL);
	/* OpenSSL refuses an all-zero result (a small-order peer key). */
	int ok = dctx != NULL && EVP_PKEY_derive_init(dctx) == 1 &&
	    EVP_PKEY_derive_set_peer(dctx, peer) == 1 &&
	    EVP_PKEY_derive(dctx, shared, &slen) == 1 && slen == sizeof(shared);
	EVP_PKEY_CTX_free(dctx);
	if (!ok) {
		OPENSSL_cleanse(shared, sizeof(shared));
		return (coffer_err_openssl(err, COFFER_EAUTH, "x25519 key agreement failed"));
	}
	uint8_t salt[2 * COFFER_ESCROW_PUB_BYTES];
	memcpy(salt, eph, COFFER_ESCROW_PUB_BYTES);
	memcpy(salt + COFFER_ESCROW_PUB_BYTES, recipient, COFFER_ESCROW_PUB_BYTES);
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *kctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	EVP_KDF_free(kdf);
	OSSL_PARAM params[] = {
		OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, shared, sizeof(shared)),
		OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt, sizeof(salt)),
		OSSL_PARAM_construct_octet_string(
		    OSSL_KDF_PARAM_INFO, (char *)ESCROW_DOMAIN, strlen(ESCROW_DOMAIN)),
		OSSL_PARAM_construct_end(),
	};
	ok = kctx != NULL && EVP_KDF_derive(kctx, out, 32, params) == 1;
	EVP_KDF_CTX_free(kctx);
	OPENSSL_cleanse(shared, sizeof(shared));
	if (!ok) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "hkdf failed"));
	}
	return (0);
}

/* domain NUL service NUL key_id NUL created_ms (decimal). */
static size_t
aad_of(const coffer_escrow_entry *e, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s%c%s%c%s%c%" PRId64, ESCROW_DOMAIN, '\0', e->service, '\0',
	    e->key_id, '\0', e->created_ms);
	return (n < 0 || (size_t)n >= size ? 0 : (size_t)n);
}

/* AES-256-GCM one shot; enc 1 seals, 0 opens (tag checked). */
static int
gcm(int enc, const uint8_t key[32], const uint8_t nonce[ESCROW_NONCE_LEN], const char *aad,
    size_t aad_len, const uint8_t *in, uint8_t *out, uint8_t tag[ESCROW_TAG_LEN], coffer_err *err)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int n = 0, fin = 0;
	int ok = c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) == 1 &&
	    EVP_CipherUpdate(c, NULL, &n, (const uint8_t *)aad, (int)aad_len) == 1 &&
	    EVP_CipherUpdate(c, out, &n, in, COFFER_KEYRING_KEY_LEN) == 1;
	if (ok && !enc) {
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, ESCROW_TAG_LEN, tag) == 1;
	}
	ok = ok && EVP_CipherFinal_ex(c, out + n, &fin) == 1;
	if (ok && enc) {
		ok = EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, ESCROW_TAG_LEN, tag) == 1;
	}
	EVP_CIPHER_CTX_free(c);
	ERR_clear_error();
	if (!ok) {
		OPENSSL_cleanse(out, COFFER_KEYRING_KEY_LEN);
		if (!enc) {
			return (coffer_err_set(err, COFFER_EAUTH,
			    "escrow object does not open: sealed to another escrow key, or "
			    "altered"));
		}
		return (coffer_err_set(err, COFFER_EINTERNAL, "aes-256-gcm failed"));
	}
	return (0);
}

/* code: COFFER_EINVAL for what we are asked to seal, COFFER_ECORRUPT for
 * what we read. */
static int
check_entry(const coffer_escrow_entry *e, int code, coffer_err *err)
{
	if (e->service[0] == '\0' ||
	    strnlen(e->service, COFFER_ESCROW_SERVICE_MAX) >= COFFER_ESCROW_SERVICE_MAX ||
	    strchr(e->service, '/') != NULL) {
		return (coffer_err_set(err, code, "escrow service name is not a name"));
	}
	if (coffer_keyring_id_check(e->key_id, err) != 0) {
		if (err != NULL) {
			err->code = code;
		}
		return (code);
	}
	if (e->created_ms < 0) {
		return (coffer_err_set(err, code, "escrow created_at_ms is negative"));
	}
	return (0);
}

int
coffer_escrow_seal(const coffer_escrow_pub *pub, const coffer_escrow_entry *e, char **json,
    size_t *len, coffer_err *err)
{
	*json = NULL;
	int rv = check_entry(e, COFFER_EINVAL, err);
	if (rv != 0) {
		return (rv);
	}
	EVP_PKEY_CTX *kctx = EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, NULL);
	EVP_PKEY *eph = NULL;
	cJSON *o = NULL;
	char *text = NULL;
	uint8_t aes[32], ct[COFFER_KEYRING_KEY_LEN + ESCROW_TAG_LEN], nonce[ESCROW_NONCE_LEN];
	uint8_t eph_raw[COFFER_ESCROW_PUB_BYTES];
	size_t n = sizeof(eph_raw);
	if (kctx == NULL || EVP_PKEY_keygen_init(kctx) != 1 || EVP_PKEY_keygen(kctx, &eph) != 1 ||
	    EVP_PKEY_get_raw_public_key(eph, eph_raw, &n) != 1 ||
	    RAND_bytes(nonce, sizeof(nonce)) != 1) {
		rv = coffer_err_openssl(err, COFFER_EINTERNAL, "cannot make an ephemeral key");
		goto out;
	}
	if ((rv = derive(eph, pub->pkey, eph_raw, pub->raw, aes, err)) != 0) {
		goto out;
	}
	char aad[512];
	size_t aad_len = aad_of(e, aad, sizeof(aad));
	if (aad_len == 0) {
		rv = coffer_err_set(err, COFFER_EINVAL, "escrow names too long");
		goto out;
	}
	rv = gcm(1, aes, nonce, aad, aad_len, e->kek, ct, ct + COFFER_KEYRING_KEY_LEN, err);
	if (rv != 0) {
		goto out;
	}
	char eph_hex[COFFER_ESCROW_PUB_HEX], nonce_hex[2 * ESCROW_NONCE_LEN + 1];
	char ct_hex[2 * sizeof(ct) + 1], fp[COFFER_ESCROW_FINGERPRINT_HEX], created[24];
	coffer_hex_encode(eph_raw, sizeof(eph_raw), eph_hex);
	coffer_hex_encode(nonce, sizeof(nonce), nonce_hex);
	coffer_hex_encode(ct, sizeof(ct), ct_hex);
	fingerprint_raw(pub->raw, fp);
	snprintf(created, sizeof(created), "%" PRId64, e->created_ms);
	o = cJSON_CreateObject();
	if (o == NULL || cJSON_AddNumberToObject(o, "format", ESCROW_FORMAT) == NULL ||
	    cJSON_AddStringToObject(o, "service", e->service) == NULL ||
	    cJSON_AddStringToObject(o, "key_id", e->key_id) == NULL ||
	    cJSON_AddStringToObject(o, "created_at_ms", created) == NULL ||
	    cJSON_AddStringToObject(o, "recipient", fp) == NULL ||
	    cJSON_AddStringToObject(o, "ephemeral_public_key", eph_hex) == NULL ||
	    cJSON_AddStringToObject(o, "nonce", nonce_hex) == NULL ||
	    cJSON_AddStringToObject(o, "sealed_key", ct_hex) == NULL ||
	    (text = cJSON_PrintUnformatted(o)) == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for an escrow object");
		goto out;
	}
	size_t tl = strlen(text);
	char *res = malloc(tl + 2);
	if (res == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for an escrow object");
		goto out;
	}
	memcpy(res, text, tl);
	res[tl] = '\n';
	res[tl + 1] = '\0';
	*json = res;
	if (len != NULL) {
		*len = tl + 1;
	}
out:
	OPENSSL_cleanse(aes, sizeof(aes));
	cJSON_free(text);
	cJSON_Delete(o);
	EVP_PKEY_free(eph);
	EVP_PKEY_CTX_free(kctx);
	return (rv);
}

static int
str_field(const cJSON *o, const char *name, char *out, size_t size, coffer_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) >= size) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "escrow object field %s is missing, not a string, empty or too long", name));
	}
	memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
	return (0);
}

static int
hex_field(const cJSON *o, const char *name, uint8_t *out, size_t n, coffer_err *err)
{
	char buf[256];
	int rv = str_field(o, name, buf, sizeof(buf), err);
	if (rv == 0 && (strlen(buf) != 2 * n || coffer_hex_decode(buf, out, n, NULL) != 0)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "escrow object field %s is not %zu hex digits", name, 2 * n);
	}
	return (rv);
}

/* Parses the object; the sealed parts go to eph, nonce and ct. */
static int
parse(const char *json, size_t len, coffer_escrow_entry *out, uint8_t eph[COFFER_ESCROW_PUB_BYTES],
    uint8_t nonce[ESCROW_NONCE_LEN], uint8_t ct[COFFER_KEYRING_KEY_LEN + ESCROW_TAG_LEN],
    coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > COFFER_ESCROW_OBJECT_MAX) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		    "escrow object is %zu bytes, over the %d allowed", len,
		    COFFER_ESCROW_OBJECT_MAX));
	}
	cJSON *o = cJSON_ParseWithLength(json, len);
	int rv = 0;
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
	char created[24];
	if (!cJSON_IsObject(o) || !cJSON_IsNumber(fmt)) {
		rv = coffer_err_set(
		    err, COFFER_ECORRUPT, "escrow object is not a JSON object with a format");
	} else if (fmt->valuedouble != ESCROW_FORMAT) {
		rv = coffer_err_set(err, COFFER_EVERSION,
		    "escrow object format %g is not known here (this build reads %d)",
		    fmt->valuedouble, ESCROW_FORMAT);
	} else if ((rv = str_field(o, "service", out->service, sizeof(out->service), err)) != 0 ||
	    (rv = str_field(o, "key_id", out->key_id, sizeof(out->key_id), err)) != 0 ||
	    (rv = str_field(o, "created_at_ms", created, sizeof(created), err)) != 0 ||
	    (rv = str_field(o, "recipient", out->recipient, sizeof(out->recipient), err)) != 0 ||
	    (rv = hex_field(o, "ephemeral_public_key", eph, COFFER_ESCROW_PUB_BYTES, err)) != 0 ||
	    (rv = hex_field(o, "nonce", nonce, ESCROW_NONCE_LEN, err)) != 0 ||
	    (rv = hex_field(o, "sealed_key", ct, COFFER_KEYRING_KEY_LEN + ESCROW_TAG_LEN, err)) !=
	        0) {
		(void)0;
	} else if (strspn(created, "0123456789") != strlen(created) || strlen(created) > 18) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "escrow created_at_ms is not a time");
	} else {
		out->created_ms = strtoll(created, NULL, 10);
		rv = check_entry(out, COFFER_ECORRUPT, err);
	}
	cJSON_Delete(o);
	return (rv);
}

int
coffer_escrow_describe(const char *json, size_t len, coffer_escrow_entry *out, coffer_err *err)
{
	uint8_t eph[COFFER_ESCROW_PUB_BYTES], nonce[ESCROW_NONCE_LEN];
	uint8_t ct[COFFER_KEYRING_KEY_LEN + ESCROW_TAG_LEN];
	return (parse(json, len, out, eph, nonce, ct, err));
}

int
coffer_escrow_open(const coffer_escrow_key *key, const char *json, size_t len,
    coffer_escrow_entry *out, coffer_err *err)
{
	uint8_t eph[COFFER_ESCROW_PUB_BYTES], nonce[ESCROW_NONCE_LEN];
	uint8_t ct[COFFER_KEYRING_KEY_LEN + ESCROW_TAG_LEN], aes[32];
	int rv = parse(json, len, out, eph, nonce, ct, err);
	if (rv != 0) {
		return (rv);
	}
	char fp[COFFER_ESCROW_FINGERPRINT_HEX];
	fingerprint_raw(key->pub, fp);
	if (strcmp(fp, out->recipient) != 0) {
		coffer_err_set(err, COFFER_EAUTH,
		    "escrow object for key %s is sealed to escrow key %s, not to %s", out->key_id,
		    out->recipient, fp);
		return (
		    coffer_err_hint(err, "pass the escrow private key whose fingerprint it names"));
	}
	EVP_PKEY *peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, eph, sizeof(eph));
	if (peer == NULL) {
		return (coffer_err_openssl(
		    err, COFFER_ECORRUPT, "escrow ephemeral_public_key is not an x25519 key"));
	}
	rv = derive(key->pkey, peer, eph, key->pub, aes, err);
	EVP_PKEY_free(peer);
	char aad[512];
	size_t aad_len = aad_of(out, aad, sizeof(aad));
	if (rv == 0) {
		rv = gcm(
		    0, aes, nonce, aad, aad_len, ct, out->kek, ct + COFFER_KEYRING_KEY_LEN, err);
	}
	OPENSSL_cleanse(aes, sizeof(aes));
	return (rv);
}
