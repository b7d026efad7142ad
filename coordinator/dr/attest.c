/*
 * Attestations (coordinator/dr/attest.h): render and authenticate.
 */
#include "coordinator/dr/attest.h"

#include "common/base/hex.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/crypto/attestation.h"
#include "common/stream/digest.h"

#define ATTEST_DOMAIN "coffer-attestation-v1"
#define ATTEST_FORMAT 1
#define REVOKE_DOMAIN "coffer-revocation-v1"

static int
attest_mac(const coord_audit_key *key, const char *domain, const char *body, uint8_t out[32],
    coffer_err *err)
{
	size_t dlen = strlen(domain) + 1; /* with its NUL */
	size_t blen = strlen(body);
	size_t n = dlen + blen;
	uint8_t *msg = malloc(n);
	if (msg == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation"));
	}
	memcpy(msg, domain, dlen);
	memcpy(msg + dlen, body, blen);
	size_t outlen = 0;
	uint8_t *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->bytes, COORD_AUDIT_KEY_LEN,
	    msg, n, out, 32, &outlen);
	free(msg);
	if (r == NULL || outlen != 32) {
		return (
		    coffer_err_set(err, COFFER_EINTERNAL, "cannot compute an attestation hmac"));
	}
	return (0);
}

/* The object around a MACed body: {"<field>": "<body>", "mac": "<hex>"}
 * and a newline, in *json (malloc'd, NUL-terminated). */
static int
seal(const coord_audit_key *key, const coffer_sign_key *sign, const char *domain, const char *field,
    const char *body, char **json, size_t *len, coffer_err *err)
{
	uint8_t mac[32], sig[COFFER_SIGN_BYTES];
	char mhex[65], shex[2 * COFFER_SIGN_BYTES + 1];
	int rv = attest_mac(key, domain, body, mac, err);
	if (rv == 0 && sign != NULL) {
		rv = coffer_attestation_sign(sign, body, sig, err);
	}
	if (rv != 0) {
		return (rv);
	}
	coffer_hex_encode(mac, sizeof(mac), mhex);
	coffer_hex_encode(sig, sizeof(sig), shex);
	cJSON *o = cJSON_CreateObject();
	char *text = NULL;
	if (o == NULL || cJSON_AddStringToObject(o, field, body) == NULL ||
	    cJSON_AddStringToObject(o, "mac", mhex) == NULL ||
	    (sign != NULL && cJSON_AddStringToObject(o, "signature", shex) == NULL) ||
	    (text = cJSON_PrintUnformatted(o)) == NULL) {
		cJSON_Delete(o);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation"));
	}
	cJSON_Delete(o);
	size_t n = strlen(text);
	char *res = malloc(n + 2);
	if (res == NULL) {
		cJSON_free(text);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation"));
	}
	memcpy(res, text, n);
	cJSON_free(text);
	res[n] = '\n';
	res[n + 1] = '\0';
	*json = res;
	if (len != NULL) {
		*len = n + 1;
	}
	return (0);
}

int
coord_attest_render(const coord_attestation *a, const coord_audit_key *key, char **json,
    size_t *len, coffer_err *err)
{
	return (coord_attest_render_signed(a, key, NULL, json, len, err));
}

int
coord_attest_render_signed(const coord_attestation *a, const coord_audit_key *key,
    const coffer_sign_key *sign, char **json, size_t *len, coffer_err *err)
{
	*json = NULL;
	char pub[COFFER_SIGN_PUBKEY_HEX], bytes[24];
	coffer_hex_encode(a->agent_pubkey, sizeof(a->agent_pubkey), pub);
	snprintf(bytes, sizeof(bytes), "%" PRIu64, a->stored_bytes);
	cJSON *b = cJSON_CreateObject();
	char *body = NULL;
	int rv = COFFER_ENOMEM;
	if (b == NULL || cJSON_AddNumberToObject(b, "format", ATTEST_FORMAT) == NULL ||
	    cJSON_AddStringToObject(b, "backup_id", a->backup_id) == NULL ||
	    cJSON_AddStringToObject(b, "service", a->service) == NULL ||
	    cJSON_AddStringToObject(b, "agent", a->agent) == NULL ||
	    cJSON_AddStringToObject(b, "agent_public_key", pub) == NULL ||
	    cJSON_AddStringToObject(b, "kind", a->kind) == NULL ||
	    cJSON_AddStringToObject(b, "manifest_sha256", a->manifest_sha256) == NULL ||
	    cJSON_AddStringToObject(b, "stored_sha256", a->stored_sha256) == NULL ||
	    cJSON_AddStringToObject(b, "stored_bytes", bytes) == NULL ||
	    (body = cJSON_PrintUnformatted(b)) == NULL) {
		goto out;
	}
	rv = seal(key, sign, ATTEST_DOMAIN, "attestation", body, json, len, err);
out:
	if (rv == COFFER_ENOMEM) {
		coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation");
	}
	cJSON_free(body);
	cJSON_Delete(b);
	return (rv);
}

static int
str_field(const cJSON *o, const char *name, char *out, size_t size, coffer_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsString(v) || v->valuestring[0] == '\0' || strlen(v->valuestring) >= size) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "attestation field %s is missing, not a string, empty or too long", name));
	}
	memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
	return (0);
}

static int
sha_field(const cJSON *o, const char *name, char out[65], coffer_err *err)
{
	int rv = str_field(o, name, out, 65, err);
	if (rv != 0) {
		return (rv);
	}
	if (strlen(out) != 64 || !coffer_hex_is_lower(out, 64)) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "attestation field %s is not 64 lower-case hex digits", name));
	}
	return (0);
}

/* Authenticates a sealed object and parses its body (*body, the caller's
 * to cJSON_Delete); what names the kind of object in errors. */
static int
unseal(const char *json, size_t len, const coord_audit_key *key, const char *domain,
    const char *field, cJSON **body, coffer_err *err)
{
	*body = NULL;
	if (len > COORD_ATTEST_MAX) {
		coffer_err_set(err, COFFER_ETOOBIG, "%s is %zu bytes, over the %d allowed", field,
		    len, COORD_ATTEST_MAX);
		return (coffer_err_hint(err,
		    "it was not written by a coordinator: remove it, or "
		    "rebuild without it"));
	}
	cJSON *o = cJSON_ParseWithLength(json, len);
	int rv;
	if (!cJSON_IsObject(o)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "%s is not a JSON object", field);
		goto out;
	}
	const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, field);
	char mhex[65];
	if (!cJSON_IsString(text)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "%s has no \"%s\" string", field, field);
		goto out;
	}
	if ((rv = sha_field(o, "mac", mhex, err)) != 0) {
		goto out;
	}
	uint8_t want[32], got[32];
	if ((rv = coffer_hex_decode(mhex, want, sizeof(want), err)) != 0 ||
	    (rv = attest_mac(key, domain, text->valuestring, got, err)) != 0) {
		goto out;
	}
	if (CRYPTO_memcmp(want, got, sizeof(got)) != 0) {
		rv = coffer_err_set(
		    err, COFFER_EAUTH, "%s's hmac does not verify under the audit key", field);
		coffer_err_hint(err,
		    "it was altered, or written by a coordinator with another "
		    "audit_key; configure the audit key that was in use when it "
		    "was written");
		goto out;
	}
	cJSON *b = cJSON_Parse(text->valuestring);
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(b, "format");
	if (!cJSON_IsObject(b) || !cJSON_IsNumber(fmt)) {
		cJSON_Delete(b);
		rv = coffer_err_set(err, COFFER_ECORRUPT, "%s body has no format", field);
		goto out;
	}
	if (fmt->valuedouble != ATTEST_FORMAT) {
		cJSON_Delete(b);
		rv = coffer_err_set(err, COFFER_EVERSION,
		    "%s format %g is not known here "
		    "(this build reads %d)",
		    field, fmt->valuedouble, ATTEST_FORMAT);
		goto out;
	}
	*body = b;
	rv = 0;
out:
	cJSON_Delete(o);
	return (rv);
}

int
coord_attest_parse(const char *json, size_t len, const coord_audit_key *key, coord_attestation *out,
    coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	cJSON *b = NULL;
	int rv = unseal(json, len, key, ATTEST_DOMAIN, "attestation", &b, err);
	if (rv != 0) {
		goto out;
	}
	char pub[COFFER_SIGN_PUBKEY_HEX], bytes[24];
	if ((rv = str_field(b, "backup_id", out->backup_id, sizeof(out->backup_id), err)) != 0 ||
	    (rv = str_field(b, "service", out->service, sizeof(out->service), err)) != 0 ||
	    (rv = str_field(b, "agent", out->agent, sizeof(out->agent), err)) != 0 ||
	    (rv = sha_field(b, "agent_public_key", pub, err)) != 0 ||
	    (rv = str_field(b, "kind", out->kind, sizeof(out->kind), err)) != 0 ||
	    (rv = sha_field(b, "manifest_sha256", out->manifest_sha256, err)) != 0 ||
	    (rv = sha_field(b, "stored_sha256", out->stored_sha256, err)) != 0 ||
	    (rv = str_field(b, "stored_bytes", bytes, sizeof(bytes), err)) != 0) {
		goto out;
	}
	if ((rv = coffer_hex_decode(pub, out->agent_pubkey, sizeof(out->agent_pubkey), err)) != 0) {
		goto out;
	}
	char *end = NULL;
	if (strspn(bytes, "0123456789") != strlen(bytes)) {
		rv =
		    coffer_err_set(err, COFFER_ECORRUPT, "attestation stored_bytes is not a count");
		goto out;
	}
	out->stored_bytes = strtoull(bytes, &end, 10);
	rv = 0;
out:
	if (rv != 0 && rv != COFFER_EAUTH && rv != COFFER_ENOMEM && rv != COFFER_EINTERNAL &&
	    err->hint[0] == '\0') {
		coffer_err_hint(err,
		    "the attestation is damaged; the backup cannot be trusted "
		    "without one written by the coordinator");
	}
	cJSON_Delete(b);
	return (rv);
}

/* ---- revocations ---- */

int
coord_revocation_key(char *buf, size_t size, const char *prefix, const char *agent,
    const uint8_t pubkey[COFFER_SIGN_PUBKEY_BYTES], coffer_err *err)
{
	char pub[COFFER_SIGN_PUBKEY_HEX];
	coffer_hex_encode(pubkey, COFFER_SIGN_PUBKEY_BYTES, pub);
	int n = snprintf(
	    buf, size, "%s" COORD_REVOCATIONS_PREFIX "%s/revoked-%.16s.json", prefix, agent, pub);
	if (n < 0 || (size_t)n >= size || strchr(agent, '/') != NULL || agent[0] == '\0') {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "agent name \"%.64s\" makes no "
		    "revocation key",
		    agent));
	}
	return (0);
}

int
coord_revocation_render(const coord_revocation *r, const coord_audit_key *key, char **json,
    size_t *len, coffer_err *err)
{
	*json = NULL;
	char pub[COFFER_SIGN_PUBKEY_HEX], at[24];
	coffer_hex_encode(r->agent_pubkey, sizeof(r->agent_pubkey), pub);
	snprintf(at, sizeof(at), "%" PRId64, r->revoked_at_ms);
	cJSON *b = cJSON_CreateObject();
	char *body = NULL;
	int rv = COFFER_ENOMEM;
	if (b != NULL && cJSON_AddNumberToObject(b, "format", ATTEST_FORMAT) != NULL &&
	    cJSON_AddStringToObject(b, "agent", r->agent) != NULL &&
	    cJSON_AddStringToObject(b, "agent_public_key", pub) != NULL &&
	    cJSON_AddStringToObject(b, "revoked_at_ms", at) != NULL &&
	    cJSON_AddStringToObject(b, "revoked_by", r->revoked_by) != NULL &&
	    (body = cJSON_PrintUnformatted(b)) != NULL) {
		rv = seal(key, NULL, REVOKE_DOMAIN, "revocation", body, json, len, err);
	} else {
		coffer_err_set(err, COFFER_ENOMEM, "no memory for a revocation");
	}
	cJSON_free(body);
	cJSON_Delete(b);
	return (rv);
}

int
coord_revocation_parse(const char *json, size_t len, const coord_audit_key *key,
    coord_revocation *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	cJSON *b = NULL;
	char pub[COFFER_SIGN_PUBKEY_HEX], at[24];
	int rv = unseal(json, len, key, REVOKE_DOMAIN, "revocation", &b, err);
	if (rv == 0 &&
	    ((rv = str_field(b, "agent", out->agent, sizeof(out->agent), err)) != 0 ||
	        (rv = sha_field(b, "agent_public_key", pub, err)) != 0 ||
	        (rv = str_field(b, "revoked_at_ms", at, sizeof(at), err)) != 0 ||
	        (rv = str_field(b, "revoked_by", out->revoked_by, sizeof(out->revoked_by), err)) !=
	            0 ||
	        (rv = coffer_hex_decode(pub, out->agent_pubkey, sizeof(out->agent_pubkey), err)) !=
	            0)) {
		cJSON_Delete(b);
		return (rv);
	}
	cJSON_Delete(b);
	if (rv == 0 && strspn(at, "0123456789") != strlen(at)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "revocation revoked_at_ms is not a time");
	}
	if (rv == 0) {
		out->revoked_at_ms = strtoll(at, NULL, 10);
	}
	return (rv);
}
