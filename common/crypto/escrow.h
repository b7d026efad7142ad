/*
 * Key escrow: a key ring's keys sealed, one object per key, to the
 * platform's escrow public key, so that a service's backups can be
 * decrypted after every copy of its key ring is lost with its host
 * (docs/FORMAT.md, "Key escrow object"; docs/OPERATIONS.md, "An agent host
 * is gone").
 *
 * The escrow key pair is X25519. Its private half is a PKCS#8 PEM file
 * (mode 0600, made once by `coffer-agent escrow-keygen` and kept offline);
 * its public half is 64 hex digits on one line, the file agents name in
 * [keys] escrow_public_key. Sealing is ECIES on OpenSSL's primitives: a
 * fresh ephemeral X25519 key per object, HKDF-SHA-256 of the shared
 * secret, AES-256-GCM over the key with the object's service, key id and
 * creation time as associated data, so an escrow object opened under
 * another name is refused rather than trusted.
 *
 * Objects are immutable, small (COFFER_ESCROW_OBJECT_MAX) and carry no
 * secret in the clear: anyone may read the header (coffer_escrow_describe),
 * only the escrow private key opens the key.
 *
 * Memory: keys are opaque, immutable after load and shareable by threads;
 * coffer_escrow_entry holds a KEK, and its user wipes it with
 * OPENSSL_cleanse when done.
 */
#ifndef COFFER_COMMON_CRYPTO_ESCROW_H
#define COFFER_COMMON_CRYPTO_ESCROW_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/keyring.h"

#define COFFER_ESCROW_PUB_BYTES       32
#define COFFER_ESCROW_PUB_HEX         65
#define COFFER_ESCROW_FINGERPRINT_HEX 33
#define COFFER_ESCROW_OBJECT_MAX      4096
#define COFFER_ESCROW_SERVICE_MAX     128

typedef struct coffer_escrow_key coffer_escrow_key; /* private: opens objects */
typedef struct coffer_escrow_pub coffer_escrow_pub; /* public: seals objects */

typedef struct coffer_escrow_entry {
	char service[COFFER_ESCROW_SERVICE_MAX];
	char key_id[COFFER_KEYRING_ID_MAX + 1];
	int64_t created_ms;                            /* the key's creation time in its ring */
	char recipient[COFFER_ESCROW_FINGERPRINT_HEX]; /* the escrow key it is sealed to */
	uint8_t kek[COFFER_KEYRING_KEY_LEN];           /* only after coffer_escrow_open */
} coffer_escrow_entry;

/* Creates the private key file at path (mode 0600, COFFER_EEXIST if it
 * exists) and writes the public key as 64 hex digits into pub_hex. */
int coffer_escrow_keygen(const char *path, char pub_hex[COFFER_ESCROW_PUB_HEX], coffer_err *err);

/* Loads the private key: COFFER_EPERM if group or others may access the
 * file, COFFER_EINVAL if it is not an X25519 private key. */
int coffer_escrow_key_load(const char *path, coffer_escrow_key **out, coffer_err *err);
/* Loads a public key file: one line of 64 hex digits. */
int coffer_escrow_pub_load(const char *path, coffer_escrow_pub **out, coffer_err *err);
int coffer_escrow_pub_parse(const char *text, size_t len, coffer_escrow_pub **out, coffer_err *err);
/* The first 16 bytes of the SHA-256 of the raw public key, in hex. */
void coffer_escrow_pub_fingerprint(
    const coffer_escrow_pub *pub, char out[COFFER_ESCROW_FINGERPRINT_HEX]);
void coffer_escrow_key_fingerprint(
    const coffer_escrow_key *key, char out[COFFER_ESCROW_FINGERPRINT_HEX]);
void coffer_escrow_key_free(coffer_escrow_key *key);
void coffer_escrow_pub_free(coffer_escrow_pub *pub);

/* Seals e->kek for pub under e's service, key_id and created_ms (e's
 * recipient is ignored). *json is malloc'd, NUL-terminated, newline-ended;
 * the caller frees it. */
int coffer_escrow_seal(const coffer_escrow_pub *pub, const coffer_escrow_entry *e, char **json,
    size_t *len, coffer_err *err);

/* Parses an object's header (everything but the key, which stays zero):
 * COFFER_ETOOBIG, COFFER_ECORRUPT naming the field, COFFER_EVERSION. */
int coffer_escrow_describe(const char *json, size_t len, coffer_escrow_entry *out, coffer_err *err);

/* The header and the key: also COFFER_EAUTH when the object was sealed to
 * another escrow key, or altered. */
int coffer_escrow_open(const coffer_escrow_key *key, const char *json, size_t len,
    coffer_escrow_entry *out, coffer_err *err);

#endif
