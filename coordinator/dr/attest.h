/*
 * Attestations: the coordinator's word, stored beside a backup, that the
 * agent who signed the backup's manifest was enrolled for the backup's
 * service with a given public key.
 *
 * A manifest is signed by its agent, but the agent's public key lives in
 * the catalog. With the catalog gone, a signature alone proves nothing: a
 * forger signs with a key of their own. rebuild-catalog therefore trusts a
 * manifest only through an attestation whose HMAC verifies under the audit
 * key, which the platform team keeps apart from every repository
 * credential. The DR copy writes one with every copied backup (object
 * locked like the copy), and the copier writes one into the primary
 * repository for every completed backup.
 *
 * Object: services/<service>/backups/<id>/attestation.json, one JSON object
 *   {"attestation": "<body>", "mac": "<64 hex>"}
 * where body is a JSON text (kept as the exact string that was MACed, so
 * no canonical form is needed):
 *   {"format":1,"backup_id":..,"service":..,"agent":..,
 *    "agent_public_key":"<64 hex>","kind":"logical"|"physical",
 *    "manifest_sha256":"<64 hex>","stored_sha256":"<64 hex>",
 *    "stored_bytes":"<decimal>"}
 * and mac = HMAC-SHA-256(audit key, "coffer-attestation-v1" NUL body);
 * with [dr] attestation_key also "signature": the Ed25519 signature of
 * the same bytes by that key, which a restore host checks with the
 * coordinator's public key alone (common/crypto/attestation.h).
 * The content is a pure function of the backup, so writing it twice gives
 * the same bytes (a retried copy finds an identical object).
 */
#ifndef COFFER_COORDINATOR_DR_ATTEST_H
#define COFFER_COORDINATOR_DR_ATTEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"
#include "coordinator/catalog/audit.h"

#define COORD_ATTEST_OBJECT "attestation.json"
/* Larger objects are refused before parsing. */
#define COORD_ATTEST_MAX 8192

typedef struct coord_attestation {
	char backup_id[COFFER_MANIFEST_ID_SIZE];
	char service[COFFER_MANIFEST_NAME_MAX];
	char agent[COFFER_MANIFEST_NAME_MAX];
	uint8_t agent_pubkey[COFFER_SIGN_PUBKEY_BYTES];
	char kind[16];
	char manifest_sha256[65]; /* lower-case hex */
	char stored_sha256[65];
	uint64_t stored_bytes;
} coord_attestation;

/* The object's bytes (malloc'd, NUL-terminated, newline-ended) in *json. */
int coord_attest_render(const coord_attestation *a, const coord_audit_key *key, char **json,
    size_t *len, coffer_err *err);

/* The same, also signed with sign (NULL: no signature). */
int coord_attest_render_signed(const coord_attestation *a, const coord_audit_key *key,
    const coffer_sign_key *sign, char **json, size_t *len, coffer_err *err);

/* Parses and authenticates an attestation object. COFFER_ETOOBIG over
 * COORD_ATTEST_MAX, COFFER_ECORRUPT for a bad shape (naming the field),
 * COFFER_EVERSION for an unknown format, COFFER_EAUTH when the MAC does not
 * verify (another audit key, or altered). */
int coord_attest_parse(const char *json, size_t len, const coord_audit_key *key,
    coord_attestation *out, coffer_err *err);

/*
 * Revocations: the coordinator's word that an agent's key was revoked, so
 * that a catalog rebuilt from a repository (rebuild-catalog) does not bring
 * back as active an agent that an operator had revoked. The DR copier
 * writes one per revoked agent into the primary repository and, object
 * locked, into the DR repository.
 *
 * Object: agents/<agent>/revoked-<first 16 hex digits of the key>.json,
 *   {"revocation": "<body>", "mac": "<64 hex>"}, body
 *   {"format":1,"agent":..,"agent_public_key":"<64 hex>",
 *    "revoked_at_ms":"<decimal>","revoked_by":..}
 * and mac = HMAC-SHA-256(audit key, "coffer-revocation-v1" NUL body).
 */
#define COORD_REVOCATIONS_PREFIX "agents/"

typedef struct coord_revocation {
	char agent[COFFER_MANIFEST_NAME_MAX];
	uint8_t agent_pubkey[COFFER_SIGN_PUBKEY_BYTES];
	int64_t revoked_at_ms;
	char revoked_by[COFFER_MANIFEST_NAME_MAX];
} coord_revocation;

/* prefix: the repository's key prefix ("" for a coffer_repo, which adds
 * its own). */
int coord_revocation_key(char *buf, size_t size, const char *prefix, const char *agent,
    const uint8_t pubkey[COFFER_SIGN_PUBKEY_BYTES], coffer_err *err);
int coord_revocation_render(const coord_revocation *r, const coord_audit_key *key, char **json,
    size_t *len, coffer_err *err);
/* As coord_attest_parse, for a revocation. */
int coord_revocation_parse(const char *json, size_t len, const coord_audit_key *key,
    coord_revocation *out, coffer_err *err);

#endif
