/*
 * Attestations (coordinator/attest.h): render and authenticate.
 */
#include "coordinator/attest.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/digest.h"

#define ATTEST_DOMAIN "coffer-attestation-v1"
#define ATTEST_FORMAT 1

static int
attest_mac(const coord_audit_key *key, const char *body, uint8_t out[32], coffer_err *err)
{
	size_t blen = strlen(body);
	size_t n = sizeof(ATTEST_DOMAIN) + blen;
	uint8_t *msg = malloc(n);
	if (msg == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation"));
	}
	memcpy(msg, ATTEST_DOMAIN, sizeof(ATTEST_DOMAIN)); /* with its NUL */
	memcpy(msg + sizeof(ATTEST_DOMAIN), body, blen);
	size_t outlen = 0;
	uint8_t *r = EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->bytes,
	    COORD_AUDIT_KEY_LEN, msg, n, out, 32, &outlen);
	free(msg);
	if (r == NULL || outlen != 32) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "cannot compute an attestation hmac"));
	}
	return (0);
}

int
coord_attest_render(const coord_attestation *a, const coord_audit_key *key, char **json,
    size_t *len, coffer_err *err)
{
	*json = NULL;
	char pub[COFFER_SIGN_PUBKEY_HEX], bytes[24];
	coffer_hex_encode(a->agent_pubkey, sizeof(a->agent_pubkey), pub);
	snprintf(bytes, sizeof(bytes), "%" PRIu64, a->stored_bytes);
	cJSON *b = cJSON_CreateObject();
	cJSON *o = cJSON_CreateObject();
	char *body = NULL, *text = NULL;
	int rv = COFFER_ENOMEM;
	if (b == NULL || o == NULL || cJSON_AddNumberToObject(b, "format", ATTEST_FORMAT) == NULL ||
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
	uint8_t mac[32];
	char mhex[65];
	if ((rv = attest_mac(key, body, mac, err)) != 0) {
		goto out;
	}
	coffer_hex_encode(mac, sizeof(mac), mhex);
	rv = COFFER_ENOMEM;
	if (cJSON_AddStringToObject(o, "attestation", body) == NULL ||
	    cJSON_AddStringToObject(o, "mac", mhex) == NULL ||
	    (text = cJSON_PrintUnformatted(o)) == NULL) {
		goto out;
	}
	size_t n = strlen(text);
	char *res = malloc(n + 2);
	if (res == NULL) {
		goto out;
	}
	memcpy(res, text, n);
	res[n] = '\n';
	res[n + 1] = '\0';
	*json = res;
	if (len != NULL) {
		*len = n + 1;
	}
	rv = 0;
out:
	if (rv == COFFER_ENOMEM) {
		coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation");
	}
	cJSON_free(body);
	cJSON_free(text);
	cJSON_Delete(b);
	cJSON_Delete(o);
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
	if (strlen(out) != 64 || strspn(out, "0123456789abcdef") != 64) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "attestation field %s is not 64 lower-case hex digits", name));
	}
	return (0);
}

int
coord_attest_parse(const char *json, size_t len, const coord_audit_key *key,
    coord_attestation *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > COORD_ATTEST_MAX) {
		coffer_err_set(err, COFFER_ETOOBIG, "attestation is %zu bytes, over the %d allowed",
		    len, COORD_ATTEST_MAX);
		return (coffer_err_hint(err, "it was not written by a coordinator: remove it, or "
					     "rebuild without this backup"));
	}
	cJSON *o = cJSON_ParseWithLength(json, len);
	cJSON *b = NULL;
	int rv;
	if (!cJSON_IsObject(o)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "attestation is not a JSON object");
		goto out;
	}
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(o, "attestation");
	char mhex[65];
	if (!cJSON_IsString(body)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "attestation has no \"attestation\" string");
		goto out;
	}
	if ((rv = sha_field(o, "mac", mhex, err)) != 0) {
		goto out;
	}
	uint8_t want[32], got[32];
	if ((rv = coffer_hex_decode(mhex, want, sizeof(want), err)) != 0 ||
	    (rv = attest_mac(key, body->valuestring, got, err)) != 0) {
		goto out;
	}
	if (CRYPTO_memcmp(want, got, sizeof(got)) != 0) {
		rv = coffer_err_set(err, COFFER_EAUTH,
		    "attestation's hmac does not verify under the audit key");
		coffer_err_hint(err, "it was altered, or written by a coordinator with another "
				     "audit_key; configure the audit key that was in use when the "
				     "backup was made");
		goto out;
	}
	b = cJSON_Parse(body->valuestring);
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(b, "format");
	if (!cJSON_IsObject(b) || !cJSON_IsNumber(fmt)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "attestation body has no format");
		goto out;
	}
	if (fmt->valuedouble != ATTEST_FORMAT) {
		rv = coffer_err_set(err, COFFER_EVERSION, "attestation format %g is not known here "
		    "(this build reads %d)", fmt->valuedouble, ATTEST_FORMAT);
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
	if ((rv = coffer_hex_decode(pub, out->agent_pubkey, sizeof(out->agent_pubkey), err)) !=
	    0) {
		goto out;
	}
	char *end = NULL;
	if (strspn(bytes, "0123456789") != strlen(bytes)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "attestation stored_bytes is not a count");
		goto out;
	}
	out->stored_bytes = strtoull(bytes, &end, 10);
	rv = 0;
out:
	if (rv != 0 && rv != COFFER_EAUTH && rv != COFFER_ENOMEM && rv != COFFER_EINTERNAL &&
	    err->hint[0] == '\0') {
		coffer_err_hint(err, "the attestation is damaged; the backup cannot be trusted "
				     "without one written by the coordinator");
	}
	cJSON_Delete(o);
	cJSON_Delete(b);
	return (rv);
}
