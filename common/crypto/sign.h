/*
 * Signatures: Ed25519 (OpenSSL EVP) for manifests and wire envelopes.
 *
 * Files:
 * - A private key is a PKCS#8 PEM file ("-----BEGIN PRIVATE KEY-----"),
 *   created by coffer_sign_keygen with mode 0600 and O_EXCL, so an existing
 *   key is never overwritten. coffer_sign_key_load refuses a key file that
 *   its group or others may read or write: a signing key that leaked is an
 *   identity that leaked.
 * - A public key is either a PEM file ("-----BEGIN PUBLIC KEY-----") or a
 *   file whose first line is the raw 32-byte key as 64 hex digits (what
 *   `coffer-agent init` prints; easy to paste into a ticket or a config).
 *   Surrounding blank space is ignored; anything else is refused.
 *
 * The fingerprint of a public key is the hex of the first 16 bytes of the
 * SHA-256 of the raw 32-byte key: short enough for logs, long enough that
 * two enrolled keys never share one by accident.
 *
 * Keys are immutable after load and may be shared between threads.
 */
#ifndef COFFER_COMMON_CRYPTO_SIGN_H
#define COFFER_COMMON_CRYPTO_SIGN_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define COFFER_SIGN_BYTES           64 /* an Ed25519 signature */
#define COFFER_SIGN_PUBKEY_BYTES    32 /* a raw Ed25519 public key */
#define COFFER_SIGN_PUBKEY_HEX      65 /* 64 hex digits and a NUL */
#define COFFER_SIGN_FINGERPRINT_HEX 33

typedef struct coffer_sign_key coffer_sign_key;       /* private (can sign) */
typedef struct coffer_sign_pubkey coffer_sign_pubkey; /* public (can verify) */

/* Creates a new private key file at path (mode 0600, refused with
 * COFFER_EEXIST if path exists), fsyncs it and its directory, and writes the
 * public key as 64 hex digits into pub_hex (may be NULL). */
int coffer_sign_keygen(const char *path, char pub_hex[COFFER_SIGN_PUBKEY_HEX], coffer_err *err);

/* A fresh private key in memory only (tests, ephemeral identities). */
int coffer_sign_key_generate(coffer_sign_key **out, coffer_err *err);

/* Loads a private key PEM. COFFER_EPERM if the file is group/other
 * accessible, COFFER_EINVAL if it is not an Ed25519 private key. */
int coffer_sign_key_load(const char *path, coffer_sign_key **out, coffer_err *err);

/* Loads a public key file: PEM, or one line of 64 hex digits. */
int coffer_sign_pubkey_load(const char *path, coffer_sign_pubkey **out, coffer_err *err);

/* The same from text in memory (len bytes, no NUL needed). */
int coffer_sign_pubkey_parse(
    const char *text, size_t len, coffer_sign_pubkey **out, coffer_err *err);

/* From the raw 32 bytes (as carried on the wire). */
int coffer_sign_pubkey_from_raw(
    const uint8_t raw[COFFER_SIGN_PUBKEY_BYTES], coffer_sign_pubkey **out, coffer_err *err);

/* The public half of a private key, as a new object. */
int coffer_sign_key_public(const coffer_sign_key *key, coffer_sign_pubkey **out, coffer_err *err);

void coffer_sign_pubkey_raw(const coffer_sign_pubkey *pub, uint8_t raw[COFFER_SIGN_PUBKEY_BYTES]);
void coffer_sign_pubkey_hex(const coffer_sign_pubkey *pub, char out[COFFER_SIGN_PUBKEY_HEX]);
void coffer_sign_fingerprint(const coffer_sign_pubkey *pub, char out[COFFER_SIGN_FINGERPRINT_HEX]);

/* Signs len bytes of data. */
int coffer_sign(const coffer_sign_key *key, const void *data, size_t len,
    uint8_t sig[COFFER_SIGN_BYTES], coffer_err *err);

/* 0 if sig is pub's signature over data, COFFER_EAUTH if not. */
int coffer_sign_verify(const coffer_sign_pubkey *pub, const void *data, size_t len,
    const uint8_t sig[COFFER_SIGN_BYTES], coffer_err *err);

void coffer_sign_key_free(coffer_sign_key *key);
void coffer_sign_pubkey_free(coffer_sign_pubkey *pub);

#endif
