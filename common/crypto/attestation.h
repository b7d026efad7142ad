/*
 * The coordinator's attestation of a backup as a restore host reads it:
 * services/<service>/backups/<id>/attestation.json, written by the
 * coordinator only (coordinator/dr/attest.h renders it), carries beside the
 * audit-key HMAC that rebuild-catalog checks an Ed25519 "signature" by the
 * coordinator's attestation key over the same bytes. Anyone holding the
 * coordinator's public key, and no secret, can check it; so a host that
 * holds no agent's signing key (a new host after a disaster, or any host
 * after a signing key was rotated) trusts a manifest through it:
 * the attestation names the manifest's SHA-256 and the agent key that
 * signed it (docs/ARCHITECTURE.md, "Trust in a manifest").
 *
 * Object (docs/FORMAT.md, "Attestation"):
 *   {"attestation":"<body>","mac":"<64 hex>","signature":"<128 hex>"}
 *   signature = Ed25519(coordinator key, "coffer-attestation-v1" NUL body)
 */
#ifndef COFFER_COMMON_CRYPTO_ATTESTATION_H
#define COFFER_COMMON_CRYPTO_ATTESTATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"

#define COFFER_ATTESTATION_DOMAIN "coffer-attestation-v1"
#define COFFER_ATTESTATION_OBJECT "attestation.json"
#define COFFER_ATTESTATION_MAX    8192

typedef struct coffer_attestation {
	char backup_id[COFFER_MANIFEST_ID_SIZE];
	char service[COFFER_MANIFEST_NAME_MAX];
	char agent[COFFER_MANIFEST_NAME_MAX];
	uint8_t agent_pubkey[COFFER_SIGN_PUBKEY_BYTES];
	char manifest_sha256[COFFER_MANIFEST_SHA256_HEX];
} coffer_attestation;

/* The signature of body (NUL-terminated) under the attestation domain. */
int coffer_attestation_sign(
    const coffer_sign_key *key, const char *body, uint8_t sig[COFFER_SIGN_BYTES], coffer_err *err);

/* Checks the object's signature with the coordinator's public key, then
 * parses the fields a restore host needs. COFFER_ETOOBIG,
 * COFFER_ECORRUPT (naming the field), COFFER_EVERSION, COFFER_EAUTH when
 * there is no signature or it is not the coordinator's. */
int coffer_attestation_verify(const char *json, size_t len, const coffer_sign_pubkey *coordinator,
    coffer_attestation *out, coffer_err *err);

#endif
