/*
 * Sealed stream filters. See common/crypto/seal.h for the promises and
 * docs/FORMAT.md ("Sealed stream") for the bytes.
 *
 * Why each piece of the format is there:
 * - The data key is fresh per object, so a chunk spliced in from another
 *   object, even one sealed under the same key-encryption key, fails its tag.
 * - The chunk index is in the nonce, so reordered or dropped middle chunks
 *   fail their tag.
 * - The final flag and the plaintext length are a frame word in clear before
 *   each chunk, and that word is in the chunk's associated data: the reader
 *   knows where a chunk ends before it arrives (so a cut inside a chunk is
 *   told apart from a damaged chunk), and flipping the flag to drop or add an
 *   end fails the tag.
 * - The header's SHA-256 is in every chunk's associated data and the header
 *   itself is the associated data of the wrapped key, so no header byte can
 *   change unnoticed.
 *
 * The seal filter holds back a full chunk until more input or finish shows
 * whether it is the last, so a plaintext of exactly k chunks gives k chunks,
 * the last one final; an empty plaintext gives one empty final chunk.
 */
#include "common/crypto/seal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define SEAL_MAGIC \
	"\x89"     \
	"CFSEAL\n"
#define SEAL_MAGIC_LEN  8
#define SEAL_FIXED_LEN  10 /* magic, version, key id length */
#define SEAL_PREFIX_LEN 4
#define SEAL_NONCE_LEN  12
#define SEAL_KEY_LEN    32
#define SEAL_HASH_LEN   32
/* After the key id: chunk size, nonce prefix, wrap nonce, wrapped key, tag. */
#define SEAL_TAIL_LEN  (4 + SEAL_PREFIX_LEN + SEAL_NONCE_LEN + SEAL_KEY_LEN + COFFER_SEAL_TAG_LEN)
#define SEAL_HDR_MAX   (SEAL_FIXED_LEN + COFFER_KEYRING_ID_MAX + SEAL_TAIL_LEN)
#define SEAL_FINAL_BIT 0x80000000u

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t
get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
}

static void
chunk_nonce(uint8_t nonce[SEAL_NONCE_LEN], const uint8_t prefix[SEAL_PREFIX_LEN], uint64_t index)
{
	memcpy(nonce, prefix, SEAL_PREFIX_LEN);
	for (int i = 0; i < 8; i++) {
		nonce[SEAL_PREFIX_LEN + i] = (uint8_t)(index >> (56 - 8 * i));
	}
}

/* One AES-256-GCM operation. key NULL reuses the key already set in ctx.
 * For decryption tag is read, for encryption written. Returns 1 on success,
 * 0 on failure (for decryption: the tag did not verify). */
static int
gcm_run(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *key, const uint8_t nonce[SEAL_NONCE_LEN],
    const uint8_t *ad, size_t ad_len, const uint8_t *in, size_t len, uint8_t *out,
    uint8_t tag[COFFER_SEAL_TAG_LEN])
{
	int outl = 0;
	if (EVP_CipherInit_ex(ctx, key != NULL ? EVP_aes_256_gcm() : NULL, NULL, key, nonce, enc) !=
	    1) {
		return (0);
	}
	if (EVP_CipherUpdate(ctx, NULL, &outl, ad, (int)ad_len) != 1) {
		return (0);
	}
	if (len > 0 && EVP_CipherUpdate(ctx, out, &outl, in, (int)len) != 1) {
		return (0);
	}
	if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, COFFER_SEAL_TAG_LEN, tag) != 1) {
		return (0);
	}
	if (EVP_CipherFinal_ex(ctx, out + len, &outl) != 1) {
		return (0);
	}
	if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, COFFER_SEAL_TAG_LEN, tag) != 1) {
		return (0);
	}
	return (1);
}

/* ---- seal ---- */

typedef struct seal_filter {
	coffer_filter base; /* first: the filter API hands us this pointer */
	EVP_CIPHER_CTX *ctx;
	uint8_t dek[SEAL_KEY_LEN];
	uint8_t prefix[SEAL_PREFIX_LEN];
	uint8_t hash[SEAL_HASH_LEN];
	uint8_t hdr[SEAL_HDR_MAX];
	size_t hdr_len;
	char key_id[COFFER_KEYRING_ID_MAX + 1];
	uint32_t chunk;
	uint64_t index;
	uint8_t *pt; /* chunk bytes of plaintext */
	size_t pt_len;
	uint8_t *out; /* frame + chunk + tag */
	bool header_sent;
} seal_filter;

static int
seal_emit_header(seal_filter *s, coffer_err *err)
{
	if (s->header_sent) {
		return (0);
	}
	if (s->base.next == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "seal filter has no next filter"));
	}
	s->header_sent = true;
	return (coffer_filter_write(s->base.next, s->hdr, s->hdr_len, err));
}

static int
seal_emit_chunk(seal_filter *s, bool final, coffer_err *err)
{
	if (s->index == UINT64_MAX) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "sealed stream has too many chunks"));
	}
	uint32_t word = (uint32_t)s->pt_len | (final ? SEAL_FINAL_BIT : 0);
	uint8_t ad[SEAL_HASH_LEN + COFFER_SEAL_FRAME_LEN];
	memcpy(ad, s->hash, SEAL_HASH_LEN);
	put_be32(ad + SEAL_HASH_LEN, word);
	put_be32(s->out, word);
	uint8_t nonce[SEAL_NONCE_LEN];
	chunk_nonce(nonce, s->prefix, s->index);
	uint8_t *ct = s->out + COFFER_SEAL_FRAME_LEN;
	if (!gcm_run(
	        s->ctx, 1, NULL, nonce, ad, sizeof(ad), s->pt, s->pt_len, ct, ct + s->pt_len)) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot seal a chunk"));
	}
	s->index++;
	size_t n = COFFER_SEAL_FRAME_LEN + s->pt_len + COFFER_SEAL_TAG_LEN;
	s->pt_len = 0;
	return (coffer_filter_write(s->base.next, s->out, n, err));
}

static int
seal_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	seal_filter *s = (seal_filter *)f;
	int rv = seal_emit_header(s, err);
	while (rv == 0 && len > 0) {
		/* A full chunk goes out only once more input proves it is not the last. */
		if (s->pt_len == s->chunk) {
			rv = seal_emit_chunk(s, false, err);
			continue;
		}
		size_t take = s->chunk - s->pt_len;
		if (take > len) {
			take = len;
		}
		memcpy(s->pt + s->pt_len, buf, take);
		s->pt_len += take;
		buf += take;
		len -= take;
	}
	return (rv);
}

static int
seal_finish(coffer_filter *f, coffer_err *err)
{
	seal_filter *s = (seal_filter *)f;
	int rv = seal_emit_header(s, err);
	if (rv == 0) {
		rv = seal_emit_chunk(s, true, err);
	}
	return (rv);
}

static void
seal_destroy(coffer_filter *f)
{
	seal_filter *s = (seal_filter *)f;
	EVP_CIPHER_CTX_free(s->ctx);
	if (s->pt != NULL) {
		OPENSSL_cleanse(s->pt, s->chunk);
		free(s->pt);
	}
	free(s->out);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

static const coffer_filter_ops seal_ops = {
	.name = "seal",
	.write = seal_write,
	.finish = seal_finish,
	.destroy = seal_destroy,
};

coffer_filter *
coffer_seal_filter_new(coffer_filter *next, const coffer_keyring *ring, const char *key_id,
    size_t chunk_size, coffer_err *err)
{
	return (coffer_seal_filter_new_bound(next, ring, key_id, chunk_size, NULL, 0, err));
}

/* The header's hash H, with the binding after the header when there is one:
 * every chunk's tag then depends on the name the object was sealed for. */
static void
header_hash(const uint8_t *hdr, size_t hdr_len, const uint8_t *binding, size_t binding_len,
    uint8_t out[SEAL_HASH_LEN])
{
	uint8_t buf[SEAL_HDR_MAX + COFFER_SEAL_BINDING_MAX];
	memcpy(buf, hdr, hdr_len);
	if (binding_len > 0) {
		memcpy(buf + hdr_len, binding, binding_len);
	}
	SHA256(buf, hdr_len + binding_len, out);
}

/* AES-GCM's associated data for the wrapped key: the header before it, and
 * the binding (version 2). */
static int
wrap_ad(uint8_t *buf, size_t size, const uint8_t *hdr, size_t hdr_len, const uint8_t *binding,
    size_t binding_len, size_t *len)
{
	if (hdr_len + binding_len > size) {
		return (0);
	}
	memcpy(buf, hdr, hdr_len);
	if (binding_len > 0) {
		memcpy(buf + hdr_len, binding, binding_len);
	}
	*len = hdr_len + binding_len;
	return (1);
}

coffer_filter *
coffer_seal_filter_new_bound(coffer_filter *next, const coffer_keyring *ring, const char *key_id,
    size_t chunk_size, const uint8_t *binding, size_t binding_len, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	if (binding_len > COFFER_SEAL_BINDING_MAX || (binding_len > 0 && binding == NULL)) {
		coffer_err_set(err, COFFER_EINVAL, "seal binding of %zu bytes is over %d",
		    binding_len, COFFER_SEAL_BINDING_MAX);
		coffer_filter_free_chain(next);
		return (NULL);
	}
	if (key_id == NULL) {
		key_id = coffer_keyring_newest_id(ring);
	}
	if (chunk_size == 0) {
		chunk_size = COFFER_SEAL_CHUNK_DEFAULT;
	}
	if (chunk_size < COFFER_SEAL_CHUNK_MIN || chunk_size > COFFER_SEAL_CHUNK_MAX) {
		coffer_err_set(err, COFFER_EINVAL, "chunk size %zu is outside %zu..%zu bytes",
		    chunk_size, COFFER_SEAL_CHUNK_MIN, COFFER_SEAL_CHUNK_MAX);
		coffer_err_hint(err, "leave it out to use %zu", COFFER_SEAL_CHUNK_DEFAULT);
		coffer_filter_free_chain(next);
		return (NULL);
	}
	const uint8_t *kek = coffer_keyring_find(ring, key_id);
	if (kek == NULL) {
		coffer_err_set(err, COFFER_ENOENT, "key ring %s has no key named %s",
		    coffer_keyring_path(ring), key_id);
		coffer_err_hint(err,
		    "pick an id listed in %s, or create the key with coffer-agent "
		    "keygen --out %s --id %s",
		    coffer_keyring_path(ring), coffer_keyring_path(ring), key_id);
		coffer_filter_free_chain(next);
		return (NULL);
	}
	seal_filter *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "no memory for a seal filter");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	s->base.ops = &seal_ops;
	s->base.next = next;
	s->chunk = (uint32_t)chunk_size;
	snprintf(s->key_id, sizeof(s->key_id), "%s", key_id);
	s->ctx = EVP_CIPHER_CTX_new();
	s->pt = malloc(chunk_size);
	s->out = malloc(COFFER_SEAL_FRAME_LEN + chunk_size + COFFER_SEAL_TAG_LEN);
	if (s->ctx == NULL || s->pt == NULL || s->out == NULL) {
		coffer_err_set(
		    err, COFFER_ENOMEM, "no memory for a %zu-byte seal chunk", chunk_size);
		goto fail;
	}
	uint8_t wrap_nonce[SEAL_NONCE_LEN];
	if (RAND_bytes(s->dek, sizeof(s->dek)) != 1 ||
	    RAND_bytes(s->prefix, sizeof(s->prefix)) != 1 ||
	    RAND_bytes(wrap_nonce, sizeof(wrap_nonce)) != 1) {
		coffer_err_openssl(
		    err, COFFER_EINTERNAL, "cannot draw random bytes for a data key");
		goto fail;
	}
	size_t idlen = strlen(key_id);
	uint8_t *p = s->hdr;
	memcpy(p, SEAL_MAGIC, SEAL_MAGIC_LEN);
	p += SEAL_MAGIC_LEN;
	*p++ = binding_len > 0 ? COFFER_SEAL_VERSION_BOUND : COFFER_SEAL_VERSION;
	*p++ = (uint8_t)idlen;
	memcpy(p, key_id, idlen);
	p += idlen;
	put_be32(p, s->chunk);
	p += 4;
	memcpy(p, s->prefix, SEAL_PREFIX_LEN);
	p += SEAL_PREFIX_LEN;
	memcpy(p, wrap_nonce, SEAL_NONCE_LEN);
	p += SEAL_NONCE_LEN;
	size_t hdr_ad_len = (size_t)(p - s->hdr);
	uint8_t ad[SEAL_HDR_MAX + COFFER_SEAL_BINDING_MAX];
	size_t ad_len = 0;
	if (!wrap_ad(ad, sizeof(ad), s->hdr, hdr_ad_len, binding, binding_len, &ad_len) ||
	    !gcm_run(s->ctx, 1, kek, wrap_nonce, ad, ad_len, s->dek, SEAL_KEY_LEN, p,
	        p + SEAL_KEY_LEN)) {
		coffer_err_openssl(err, COFFER_EINTERNAL, "cannot wrap the data key");
		goto fail;
	}
	s->hdr_len = hdr_ad_len + SEAL_KEY_LEN + COFFER_SEAL_TAG_LEN;
	header_hash(s->hdr, s->hdr_len, binding, binding_len, s->hash);
	/* The context now holds the data key for the chunks. */
	if (EVP_CipherInit_ex(s->ctx, EVP_aes_256_gcm(), NULL, s->dek, NULL, 1) != 1) {
		coffer_err_openssl(err, COFFER_EINTERNAL, "cannot set the data key");
		goto fail;
	}
	return (&s->base);
fail:
	coffer_filter_free_chain(&s->base);
	return (NULL);
}

const char *
coffer_seal_filter_key_id(const coffer_filter *f)
{
	if (f == NULL || f->ops != &seal_ops) {
		return (NULL);
	}
	return (((const seal_filter *)f)->key_id);
}

/* ---- unseal ---- */

enum unseal_state {
	UNSEAL_FIXED, /* reading magic, version, key id length */
	UNSEAL_REST,  /* reading the rest of the header */
	UNSEAL_FRAME, /* reading a chunk's frame word */
	UNSEAL_BODY,  /* reading a chunk's ciphertext and tag */
	UNSEAL_DONE,  /* the final chunk was read; nothing may follow */
};

typedef struct unseal_filter {
	coffer_filter base;
	const coffer_keyring *ring;
	enum unseal_state state;
	EVP_CIPHER_CTX *ctx;
	uint8_t hdr[SEAL_HDR_MAX];
	size_t hdr_len;  /* bytes of header received */
	size_t hdr_need; /* total header length once known */
	uint8_t hash[SEAL_HASH_LEN];
	uint8_t prefix[SEAL_PREFIX_LEN];
	char key_id[COFFER_KEYRING_ID_MAX + 1];
	bool key_ok;
	uint32_t chunk;
	uint64_t index;
	uint8_t *in; /* frame + chunk + tag of the chunk being received */
	size_t in_len;
	size_t in_need;
	uint32_t word;
	uint8_t *pt;
	uint8_t binding[COFFER_SEAL_BINDING_MAX];
	size_t binding_len;
	bool expect_binding;
	bool allow_unbound;
	bool bound; /* the stream is version 2, opened with the binding */
} unseal_filter;

static int
unseal_header_fixed(unseal_filter *u, coffer_err *err)
{
	if (memcmp(u->hdr, SEAL_MAGIC, SEAL_MAGIC_LEN) != 0) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "not a sealed stream: the first bytes are not "
		    "coffer's seal magic");
		return (coffer_err_hint(err,
		    "give the unseal command an object written by "
		    "coffer-agent seal or a coffer backup's data file"));
	}
	uint8_t version = u->hdr[SEAL_MAGIC_LEN];
	if (version != COFFER_SEAL_VERSION && version != COFFER_SEAL_VERSION_BOUND) {
		coffer_err_set(err, COFFER_EVERSION,
		    "sealed stream is format version %u; this "
		    "build reads versions %d and %d",
		    version, COFFER_SEAL_VERSION, COFFER_SEAL_VERSION_BOUND);
		return (coffer_err_hint(err,
		    "unseal it with the coffer release that wrote it, or "
		    "a newer one"));
	}
	if (version == COFFER_SEAL_VERSION_BOUND && !u->expect_binding) {
		coffer_err_set(err, COFFER_EAUTH,
		    "sealed stream is bound to the name it was stored under (format %d), and this "
		    "reader was not told that name",
		    COFFER_SEAL_VERSION_BOUND);
		return (coffer_err_hint(
		    err, "read WAL objects with coffer-agent wal-fetch, which checks the binding"));
	}
	if (version == COFFER_SEAL_VERSION && u->expect_binding && !u->allow_unbound) {
		coffer_err_set(err, COFFER_EAUTH,
		    "sealed stream carries no name binding (format %d), and this object must be "
		    "bound to its name",
		    COFFER_SEAL_VERSION);
		return (coffer_err_hint(err,
		    "it was written by an older agent or planted by someone else; see "
		    "docs/FORMAT.md, \"WAL objects\""));
	}
	size_t idlen = u->hdr[SEAL_MAGIC_LEN + 1];
	if (idlen == 0 || idlen > COFFER_KEYRING_ID_MAX) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "sealed stream header is damaged: key id "
		    "length %zu is outside 1..%d",
		    idlen, COFFER_KEYRING_ID_MAX);
		return (coffer_err_hint(err, "restore the object from another copy"));
	}
	u->hdr_need = SEAL_FIXED_LEN + idlen + SEAL_TAIL_LEN;
	u->state = UNSEAL_REST;
	return (0);
}

static int
unseal_header_rest(unseal_filter *u, coffer_err *err)
{
	size_t idlen = u->hdr[SEAL_MAGIC_LEN + 1];
	char id[COFFER_KEYRING_ID_MAX + 1];
	memcpy(id, u->hdr + SEAL_FIXED_LEN, idlen);
	id[idlen] = '\0';
	if (strlen(id) != idlen || coffer_keyring_id_check(id, NULL) != 0) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "sealed stream header is damaged: the key id "
		    "has bytes outside [A-Za-z0-9._-]");
		return (coffer_err_hint(err, "restore the object from another copy"));
	}
	const uint8_t *p = u->hdr + SEAL_FIXED_LEN + idlen;
	uint32_t chunk = get_be32(p);
	if (chunk < COFFER_SEAL_CHUNK_MIN || chunk > COFFER_SEAL_CHUNK_MAX) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "sealed stream header is damaged: chunk size "
		    "%u is outside %zu..%zu",
		    chunk, COFFER_SEAL_CHUNK_MIN, COFFER_SEAL_CHUNK_MAX);
		return (coffer_err_hint(err, "restore the object from another copy"));
	}
	p += 4;
	memcpy(u->prefix, p, SEAL_PREFIX_LEN);
	p += SEAL_PREFIX_LEN;
	const uint8_t *wrap_nonce = p;
	p += SEAL_NONCE_LEN;
	const uint8_t *kek = coffer_keyring_find(u->ring, id);
	if (kek == NULL) {
		coffer_err_set(err, COFFER_ENOENT,
		    "sealed with key %s, which key ring %s does not "
		    "hold",
		    id, coffer_keyring_path(u->ring));
		return (coffer_err_hint(err,
		    "unseal with the key ring that holds key %s (an older "
		    "copy of the ring, or another service's)",
		    id));
	}
	uint8_t dek[SEAL_KEY_LEN];
	uint8_t tag[COFFER_SEAL_TAG_LEN];
	memcpy(tag, p + SEAL_KEY_LEN, sizeof(tag));
	bool bound = u->hdr[SEAL_MAGIC_LEN] == COFFER_SEAL_VERSION_BOUND;
	size_t binding_len = bound ? u->binding_len : 0;
	uint8_t ad[SEAL_HDR_MAX + COFFER_SEAL_BINDING_MAX];
	size_t ad_len = 0;
	int ok =
	    wrap_ad(ad, sizeof(ad), u->hdr, (size_t)(p - u->hdr), u->binding, binding_len, &ad_len);
	if (ok) {
		ok = gcm_run(u->ctx, 0, kek, wrap_nonce, ad, ad_len, p, SEAL_KEY_LEN, dek, tag);
	}
	if (ok) {
		ok = EVP_CipherInit_ex(u->ctx, EVP_aes_256_gcm(), NULL, dek, NULL, 0);
	}
	OPENSSL_cleanse(dek, sizeof(dek));
	if (!ok) {
		ERR_clear_error();
		coffer_err_set(err, COFFER_EAUTH,
		    "cannot unwrap the data key with key %s of key "
		    "ring %s: it is not the key this object was sealed with, or the header was "
		    "altered%s",
		    id, coffer_keyring_path(u->ring),
		    bound ? ", or the object was sealed for another name (moved or copied)" : "");
		return (coffer_err_hint(err,
		    "check that %s is the key ring the object was sealed "
		    "with; if it is, restore the object from another copy",
		    coffer_keyring_path(u->ring)));
	}
	u->in = malloc(COFFER_SEAL_FRAME_LEN + (size_t)chunk + COFFER_SEAL_TAG_LEN);
	u->pt = malloc(chunk);
	if (u->in == NULL || u->pt == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a %u-byte chunk", chunk));
	}
	memcpy(u->key_id, id, idlen + 1);
	u->key_ok = true;
	u->chunk = chunk;
	u->bound = bound;
	header_hash(u->hdr, u->hdr_need, u->binding, binding_len, u->hash);
	u->state = UNSEAL_FRAME;
	u->in_len = 0;
	u->in_need = COFFER_SEAL_FRAME_LEN;
	return (0);
}

static int
unseal_frame(unseal_filter *u, coffer_err *err)
{
	u->word = get_be32(u->in);
	uint32_t n = u->word & ~SEAL_FINAL_BIT;
	bool final = (u->word & SEAL_FINAL_BIT) != 0;
	if (n > u->chunk || (!final && n != u->chunk)) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "sealed stream chunk %llu is damaged: its frame "
		    "says %s chunk of %u bytes, the chunk size is %u",
		    (unsigned long long)u->index, final ? "a final" : "a non-final", n, u->chunk);
		return (coffer_err_hint(err, "restore the object from another copy"));
	}
	u->state = UNSEAL_BODY;
	u->in_need = COFFER_SEAL_FRAME_LEN + n + COFFER_SEAL_TAG_LEN;
	return (0);
}

static int
unseal_body(unseal_filter *u, coffer_err *err)
{
	size_t n = u->word & ~SEAL_FINAL_BIT;
	bool final = (u->word & SEAL_FINAL_BIT) != 0;
	uint8_t ad[SEAL_HASH_LEN + COFFER_SEAL_FRAME_LEN];
	memcpy(ad, u->hash, SEAL_HASH_LEN);
	memcpy(ad + SEAL_HASH_LEN, u->in, COFFER_SEAL_FRAME_LEN);
	uint8_t nonce[SEAL_NONCE_LEN];
	chunk_nonce(nonce, u->prefix, u->index);
	const uint8_t *ct = u->in + COFFER_SEAL_FRAME_LEN;
	uint8_t tag[COFFER_SEAL_TAG_LEN];
	memcpy(tag, ct + n, sizeof(tag));
	if (!gcm_run(u->ctx, 0, NULL, nonce, ad, sizeof(ad), ct, n, u->pt, tag)) {
		/* The unverified plaintext must not linger, let alone move on. */
		OPENSSL_cleanse(u->pt, n);
		ERR_clear_error();
		coffer_err_set(err, COFFER_EAUTH,
		    "sealed stream chunk %llu%s failed "
		    "authentication: it was altered, moved or taken from another object",
		    (unsigned long long)u->index, final ? " (final)" : "");
		return (coffer_err_hint(err, "restore the object from another copy"));
	}
	u->index++;
	u->in_len = 0;
	u->in_need = COFFER_SEAL_FRAME_LEN;
	u->state = final ? UNSEAL_DONE : UNSEAL_FRAME;
	if (!final && u->index == UINT64_MAX) {
		return (coffer_err_set(err, COFFER_ECORRUPT, "sealed stream has too many chunks"));
	}
	return (coffer_filter_write(u->base.next, u->pt, n, err));
}

static int
unseal_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	unseal_filter *u = (unseal_filter *)f;
	if (u->base.next == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "unseal filter has no next filter"));
	}
	while (len > 0) {
		int rv = 0;
		size_t take;
		switch (u->state) {
		case UNSEAL_FIXED:
		case UNSEAL_REST: {
			size_t need = u->state == UNSEAL_FIXED ? SEAL_FIXED_LEN : u->hdr_need;
			take = need - u->hdr_len < len ? need - u->hdr_len : len;
			memcpy(u->hdr + u->hdr_len, buf, take);
			u->hdr_len += take;
			/* Say "not a sealed stream" at the first wrong byte, not at the 10th. */
			size_t m = u->hdr_len < SEAL_MAGIC_LEN ? u->hdr_len : SEAL_MAGIC_LEN;
			if (memcmp(u->hdr, SEAL_MAGIC, m) != 0) {
				rv = unseal_header_fixed(u, err);
			} else if (u->hdr_len == need) {
				rv = u->state == UNSEAL_FIXED ? unseal_header_fixed(u, err)
				                              : unseal_header_rest(u, err);
			}
			break;
		}
		case UNSEAL_FRAME:
		case UNSEAL_BODY:
			take = u->in_need - u->in_len < len ? u->in_need - u->in_len : len;
			memcpy(u->in + u->in_len, buf, take);
			u->in_len += take;
			if (u->in_len == u->in_need) {
				rv = u->state == UNSEAL_FRAME ? unseal_frame(u, err)
				                              : unseal_body(u, err);
			}
			break;
		case UNSEAL_DONE:
		default:
			coffer_err_set(err, COFFER_ECORRUPT,
			    "sealed stream has data after its final "
			    "chunk (chunk %llu)",
			    (unsigned long long)(u->index - 1));
			return (coffer_err_hint(err,
			    "the object was altered or two objects were "
			    "joined; restore it from another copy"));
		}
		if (rv != 0) {
			return (rv);
		}
		buf += take;
		len -= take;
	}
	return (0);
}

static int
unseal_finish(coffer_filter *f, coffer_err *err)
{
	unseal_filter *u = (unseal_filter *)f;
	switch (u->state) {
	case UNSEAL_DONE:
		return (0);
	case UNSEAL_FIXED:
	case UNSEAL_REST:
		if (u->hdr_len == 0) {
			coffer_err_set(err, COFFER_ETRUNC, "sealed stream is empty");
			return (
			    coffer_err_hint(err, "check that the object was copied completely"));
		}
		coffer_err_set(err, COFFER_ETRUNC,
		    "sealed stream ends inside its header, after "
		    "%zu bytes",
		    u->hdr_len);
		return (coffer_err_hint(err,
		    "the object was cut short; restore it from another "
		    "copy"));
	case UNSEAL_FRAME:
		if (u->in_len == 0) {
			if (u->index == 0) {
				coffer_err_set(err, COFFER_ETRUNC,
				    "sealed stream ends after its "
				    "header, before any chunk");
			} else {
				coffer_err_set(err, COFFER_ETRUNC,
				    "sealed stream ends after chunk "
				    "%llu without a final chunk",
				    (unsigned long long)(u->index - 1));
			}
			return (coffer_err_hint(err,
			    "the object was cut short; restore it from "
			    "another copy"));
		}
		/* fall through */
	case UNSEAL_BODY:
	default:
		coffer_err_set(err, COFFER_ETRUNC,
		    "sealed stream ends inside chunk %llu, after "
		    "%zu of its %zu bytes",
		    (unsigned long long)u->index, u->in_len,
		    u->state == UNSEAL_BODY ? u->in_need : (size_t)COFFER_SEAL_FRAME_LEN);
		return (coffer_err_hint(err,
		    "the object was cut short; restore it from another "
		    "copy"));
	}
}

static void
unseal_destroy(coffer_filter *f)
{
	unseal_filter *u = (unseal_filter *)f;
	EVP_CIPHER_CTX_free(u->ctx);
	free(u->in);
	if (u->pt != NULL) {
		OPENSSL_cleanse(u->pt, u->chunk);
		free(u->pt);
	}
	OPENSSL_cleanse(u, sizeof(*u));
	free(u);
}

static const coffer_filter_ops unseal_ops = {
	.name = "unseal",
	.write = unseal_write,
	.finish = unseal_finish,
	.destroy = unseal_destroy,
};

coffer_filter *
coffer_unseal_filter_new(coffer_filter *next, const coffer_keyring *ring, coffer_err *err)
{
	return (coffer_unseal_filter_new_bound(next, ring, NULL, 0, 0, err));
}

coffer_filter *
coffer_unseal_filter_new_bound(coffer_filter *next, const coffer_keyring *ring,
    const uint8_t *binding, size_t binding_len, unsigned flags, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	if (binding_len > COFFER_SEAL_BINDING_MAX || (binding_len > 0 && binding == NULL)) {
		coffer_err_set(err, COFFER_EINVAL, "seal binding of %zu bytes is over %d",
		    binding_len, COFFER_SEAL_BINDING_MAX);
		coffer_filter_free_chain(next);
		return (NULL);
	}
	unseal_filter *u = calloc(1, sizeof(*u));
	if (u == NULL || (u->ctx = EVP_CIPHER_CTX_new()) == NULL) {
		free(u);
		coffer_err_set(err, COFFER_ENOMEM, "no memory for an unseal filter");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	u->base.ops = &unseal_ops;
	u->base.next = next;
	u->ring = ring;
	u->state = UNSEAL_FIXED;
	u->expect_binding = binding_len > 0;
	u->allow_unbound = (flags & COFFER_UNSEAL_ALLOW_UNBOUND) != 0;
	if (binding_len > 0) {
		memcpy(u->binding, binding, binding_len);
		u->binding_len = binding_len;
	}
	return (&u->base);
}

const char *
coffer_unseal_filter_key_id(const coffer_filter *f)
{
	if (f == NULL || f->ops != &unseal_ops) {
		return (NULL);
	}
	const unseal_filter *u = (const unseal_filter *)f;
	return (u->key_ok ? u->key_id : NULL);
}

bool
coffer_unseal_filter_bound(const coffer_filter *f)
{
	if (f == NULL || f->ops != &unseal_ops) {
		return (false);
	}
	return (((const unseal_filter *)f)->bound);
}

int
coffer_seal_name_tag(const coffer_keyring *ring, const char *key_id, const uint8_t *binding,
    size_t binding_len, char out[COFFER_SEAL_NAME_TAG_LEN + 1], coffer_err *err)
{
	const uint8_t *kek = coffer_keyring_find(ring, key_id);
	if (kek == NULL) {
		return (coffer_err_set(err, COFFER_ENOENT, "key ring %s has no key named %s",
		    coffer_keyring_path(ring), key_id));
	}
	/* A subkey of its own, so the KEK itself never keys anything but the wrap. */
	static const char label[] = "coffer-seal-name-tag-v1";
	uint8_t sub[SHA256_DIGEST_LENGTH], mac[SHA256_DIGEST_LENGTH];
	unsigned int len = 0;
	int ok = HMAC(EVP_sha256(), kek, SEAL_KEY_LEN, (const uint8_t *)label, sizeof(label) - 1,
	             sub, &len) != NULL &&
	    HMAC(EVP_sha256(), sub, sizeof(sub), binding, binding_len, mac, &len) != NULL;
	OPENSSL_cleanse(sub, sizeof(sub));
	if (!ok) {
		return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot compute a name tag"));
	}
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < COFFER_SEAL_NAME_TAG_LEN / 2; i++) {
		out[2 * i] = digits[mac[i] >> 4];
		out[2 * i + 1] = digits[mac[i] & 15];
	}
	out[COFFER_SEAL_NAME_TAG_LEN] = '\0';
	return (0);
}
