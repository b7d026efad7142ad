/*
 * Key rings: a small text file of named 256-bit key-encryption keys (KEKs).
 * A sealed stream (common/crypto/seal.h) names the KEK that wraps its data key, so
 * a ring may hold old keys for decryption while new objects use the newest.
 * The byte layout is in docs/FORMAT.md ("Key ring").
 *
 * The file holds secrets, so loading refuses a ring that group or other may
 * read or write (mode must be 0600 or stricter), and generation creates it
 * 0600 with O_EXCL. Keys live in one heap block that coffer_keyring_free
 * wipes with OPENSSL_cleanse. A ring is immutable after load and may be
 * shared by threads for reading.
 */
#ifndef COFFER_COMMON_CRYPTO_KEYRING_H
#define COFFER_COMMON_CRYPTO_KEYRING_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define COFFER_KEYRING_KEY_LEN  32
#define COFFER_KEYRING_ID_MAX   64 /* characters, [A-Za-z0-9._-] */
#define COFFER_KEYRING_MAX_KEYS 1024

typedef struct coffer_keyring coffer_keyring;

/* Reads and checks the ring at path: header line, mode 0600 or stricter, a
 * regular file, every line well formed (the error names the line), no
 * duplicate ids, at least one key. On success *out is a new ring the caller
 * frees with coffer_keyring_free. */
int coffer_keyring_load(const char *path, coffer_keyring **out, coffer_err *err);

/* Wipes the keys and frees the ring. ring may be NULL. */
void coffer_keyring_free(coffer_keyring *ring);

/* The id of the newest key: the last one in the file (keygen appends). The
 * string belongs to the ring. */
const char *coffer_keyring_newest_id(const coffer_keyring *ring);

/* The 32-byte key named id, or NULL if the ring has no such key. The bytes
 * belong to the ring. */
const uint8_t *coffer_keyring_find(const coffer_keyring *ring, const char *id);

/* The id of the i-th key in file order (0 the oldest), NULL past the end. */
const char *coffer_keyring_id_at(const coffer_keyring *ring, size_t i);

/* The number of keys, and the path the ring was loaded from (for messages). */
size_t coffer_keyring_count(const coffer_keyring *ring);
const char *coffer_keyring_path(const coffer_keyring *ring);

/* The i-th key (0 = oldest, count - 1 = newest): its id and key belong to
 * the ring; *created_ms is its creation time. NULL past the end. */
const char *coffer_keyring_at(
    const coffer_keyring *ring, size_t i, const uint8_t **key, int64_t *created_ms);

/* One key of a ring being written by coffer_keyring_create. */
typedef struct coffer_keyring_entry {
	char id[COFFER_KEYRING_ID_MAX + 1];
	int64_t created_ms;
	uint8_t key[COFFER_KEYRING_KEY_LEN];
} coffer_keyring_entry;

/* Writes a new ring holding n keys in the order given (the last is the
 * newest), as generation does: mode 0600 under a temporary name, linked
 * into place, so COFFER_EEXIST if path exists (an existing ring is never
 * replaced). Ids are checked and must be unique. The caller wipes
 * entries. */
int coffer_keyring_create(
    const char *path, const coffer_keyring_entry *entries, size_t n, coffer_err *err);

/* Checks an id against [A-Za-z0-9._-]{1,64}. Returns 0 or COFFER_EINVAL. */
int coffer_keyring_id_check(const char *id, coffer_err *err);

/* Adds a fresh random key to the ring at path. A missing ring is created
 * mode 0600 under a temporary name (O_EXCL) and linked into place whole, so
 * no reader sees a ring without its key; an existing ring is checked as
 * coffer_keyring_load does, locked (flock) and appended to, refusing an id
 * already present. id NULL generates one from the current UTC time
 * ("k20261124T155603Z", "-2" etc. on a collision). The file and, for a new
 * file, its directory are fsynced before returning. The id used is copied
 * into id_out (size >= COFFER_KEYRING_ID_MAX + 1). */
int coffer_keyring_generate(
    const char *path, const char *id, char *id_out, size_t id_out_size, coffer_err *err);

#endif
