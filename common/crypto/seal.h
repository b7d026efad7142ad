/*
 * Sealed streams: authenticated encryption of one object (a backup, a WAL
 * segment) as a filter in the chain of common/stream/filter.h. The byte layout is
 * in docs/FORMAT.md ("Sealed stream").
 *
 * Envelope encryption: every object gets a fresh random 256-bit data key,
 * wrapped with AES-256-GCM under a key-encryption key from a key ring
 * (common/crypto/keyring.h) and stored in the header with the key's id. The payload
 * is cut into fixed-size chunks, each sealed with AES-256-GCM under a nonce
 * made of a random prefix and the chunk's index, with the header's SHA-256
 * and the chunk's final flag and length as associated data (the STREAM
 * construction of age and Tink). So truncation, reordering, splicing chunks
 * from another object, a wrong key and any flipped bit are each detected.
 *
 * The unseal filter buffers at most one chunk and pushes a chunk's plaintext
 * to the next filter only after that chunk's tag verified. Chunks before a
 * truncation point are authentic and are therefore released before the
 * truncation is noticed: a consumer may trust the output as a whole only
 * when coffer_filter_finish succeeds (publish on finish, never before).
 *
 * Errors from the unseal filter, each with its own code:
 *   COFFER_ECORRUPT  not a sealed stream (bad magic), a malformed header or
 *                    chunk frame, data after the final chunk
 *   COFFER_EVERSION  a format version this build does not know
 *   COFFER_ENOENT    the header names a key id the ring does not hold
 *   COFFER_EAUTH     the data key does not unwrap (wrong key, or the header
 *                    was altered), or a chunk fails authentication (the
 *                    message names the chunk index)
 *   COFFER_ETRUNC    the stream ends inside the header, inside a chunk, or
 *                    at a chunk boundary without a final chunk
 * Memory per filter: about two chunks (at most 2 x 16 MiB + 20 bytes).
 */
#ifndef COFFER_COMMON_CRYPTO_SEAL_H
#define COFFER_COMMON_CRYPTO_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/keyring.h"
#include "common/stream/filter.h"

#define COFFER_SEAL_VERSION       1
#define COFFER_SEAL_VERSION_BOUND 2 /* the same layout, bound to a name */
#define COFFER_SEAL_BINDING_MAX   1024
#define COFFER_SEAL_NAME_TAG_LEN  32 /* hex digits */
#define COFFER_SEAL_CHUNK_DEFAULT ((size_t)64 * 1024)
#define COFFER_SEAL_CHUNK_MIN     ((size_t)16)
#define COFFER_SEAL_CHUNK_MAX     ((size_t)16 * 1024 * 1024)
#define COFFER_SEAL_TAG_LEN       16
#define COFFER_SEAL_FRAME_LEN     4 /* the flag + length word before each chunk */

/* A filter that seals what is written into it and pushes the sealed stream
 * to next. key_id NULL uses the ring's newest key; chunk_size 0 uses
 * COFFER_SEAL_CHUNK_DEFAULT, else it must lie within [MIN, MAX]. The key is
 * used at creation only: the ring may be freed afterwards. Returns NULL and
 * fills err (COFFER_ENOENT for an unknown key id, COFFER_EINVAL for a bad
 * chunk size); next is owned as common/stream/filter.h says. */
coffer_filter *coffer_seal_filter_new(coffer_filter *next, const coffer_keyring *ring,
    const char *key_id, size_t chunk_size, coffer_err *err);

/* A filter that checks and opens a sealed stream written into it and pushes
 * the plaintext to next. ring is borrowed and must outlive the filter.
 * Returns NULL only when out of memory (or when next is NULL). */
coffer_filter *coffer_unseal_filter_new(
    coffer_filter *next, const coffer_keyring *ring, coffer_err *err);

/* Name binding (format version 2, docs/FORMAT.md): binding (1 ..
 * COFFER_SEAL_BINDING_MAX bytes, copied) is authenticated with the data key
 * and every chunk but never stored: a reader opens the stream only when it
 * supplies the same bytes, so an object moved or copied to another name
 * fails (COFFER_EAUTH). binding_len 0 writes format 1, as
 * coffer_seal_filter_new. */
coffer_filter *coffer_seal_filter_new_bound(coffer_filter *next, const coffer_keyring *ring,
    const char *key_id, size_t chunk_size, const uint8_t *binding, size_t binding_len,
    coffer_err *err);

/* Accept a format 1 (unbound) stream too; coffer_unseal_filter_bound then
 * says false and the caller must check the content some other way. */
#define COFFER_UNSEAL_ALLOW_UNBOUND 1u

/* An unseal filter that requires format 2 with this binding (unless flags
 * allow format 1). A plain coffer_unseal_filter_new refuses format 2
 * (COFFER_EAUTH: it cannot know the name). */
coffer_filter *coffer_unseal_filter_new_bound(coffer_filter *next, const coffer_keyring *ring,
    const uint8_t *binding, size_t binding_len, unsigned flags, coffer_err *err);

/* Whether the stream an unseal filter opened was bound (format 2). */
bool coffer_unseal_filter_bound(const coffer_filter *f);

/* A keyed tag of binding under key key_id of ring (HMAC-SHA-256 with a
 * subkey of the KEK), as COFFER_SEAL_NAME_TAG_LEN lower-case hex digits: a
 * name only holders of the key can compute, for objects that must not be
 * predictable by anyone who can write the repository. */
int coffer_seal_name_tag(const coffer_keyring *ring, const char *key_id, const uint8_t *binding,
    size_t binding_len, char out[COFFER_SEAL_NAME_TAG_LEN + 1], coffer_err *err);

/* The key id a seal filter uses, or that an unseal filter found in the
 * header (NULL until the header has been read and its data key unwrapped).
 * NULL for any other filter. The string belongs to the filter. */
const char *coffer_seal_filter_key_id(const coffer_filter *f);
const char *coffer_unseal_filter_key_id(const coffer_filter *f);

#endif
