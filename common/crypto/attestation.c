/*
 * Attestations checked with the coordinator's public key
 * (common/crypto/attestation.h).
 */
#include "common/crypto/attestation.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/hex.h"

#define ATTEST_FORMAT 1

/* domain NUL body, in a buffer the caller frees. */
static uint8_t *
signed_bytes(const char *body, size_t *n)
{
	size_t dlen = strlen(COFFER_ATTESTATION_DOMAIN) + 1;
	size_t blen = strlen(body);
	uint8_t *msg = malloc(dlen + blen);
	if (msg != NULL) {
		memcpy(msg, COFFER_ATTESTATION_DOMAIN, dlen);
		memcpy(msg + dlen, body, blen);
		*n = dlen + blen;
	}
	return (msg);
}

int
coffer_attestation_sign(
    const coffer_sign_key *key, const char *body, uint8_t sig[COFFER_SIGN_BYTES], coffer_err *err)
{
	size_t n = 0;
	uint8_t *msg = signed_bytes(body, &n);
	if (msg == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation"));
	}
	int rv = coffer_sign(key, msg, n, sig, err);
	free(msg);
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
hex_field(const cJSON *o, const char *name, uint8_t *out, size_t n, coffer_err *err)
{
	char buf[2 * COFFER_SIGN_BYTES + 1];
	int rv = str_field(o, name, buf, sizeof(buf), err);
	if (rv == 0 && (strlen(buf) != 2 * n || coffer_hex_decode(buf, out, n, NULL) != 0)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "attestation field %s is not %zu hex digits", name, 2 * n);
	}
	return (rv);
}

static int
body_fields(const char *text, coffer_attestation *out, coffer_err *err)
{
	cJSON *b = cJSON_Parse(text);
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(b, "format");
	int rv = 0;
	if (!cJSON_IsObject(b) || !cJSON_IsNumber(fmt)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT, "attestation body has no format");
	} else if (fmt->valuedouble != ATTEST_FORMAT) {
		rv = coffer_err_set(err, COFFER_EVERSION,
		    "attestation format %g is not known here (this build reads %d)",
		    fmt->valuedouble, ATTEST_FORMAT);
	} else if ((rv = str_field(b, "backup_id", out->backup_id, sizeof(out->backup_id), err)) !=
	        0 ||
	    (rv = str_field(b, "service", out->service, sizeof(out->service), err)) != 0 ||
	    (rv = str_field(b, "agent", out->agent, sizeof(out->agent), err)) != 0 ||
	    (rv = hex_field(
	         b, "agent_public_key", out->agent_pubkey, sizeof(out->agent_pubkey), err)) != 0 ||
	    (rv = str_field(b, "manifest_sha256", out->manifest_sha256,
	         sizeof(out->manifest_sha256), err)) != 0) {
		(void)0;
	} else if (strlen(out->manifest_sha256) != 64 ||
	    !coffer_hex_is_lower(out->manifest_sha256, 64)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "attestation manifest_sha256 is not 64 lower-case hex digits");
	}
	cJSON_Delete(b);
	return (rv);
}

int
coffer_attestation_verify(const char *json, size_t len, const coffer_sign_pubkey *coordinator,
    coffer_attestation *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > COFFER_ATTESTATION_MAX) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		    "attestation is %zu bytes, over the %d allowed", len, COFFER_ATTESTATION_MAX));
	}
	cJSON *o = cJSON_ParseWithLength(json, len);
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(o, "attestation");
	int rv = 0;
	uint8_t sig[COFFER_SIGN_BYTES];
	if (!cJSON_IsObject(o) || !cJSON_IsString(body)) {
		rv = coffer_err_set(
		    err, COFFER_ECORRUPT, "attestation has no \"attestation\" string");
	} else if (cJSON_GetObjectItemCaseSensitive(o, "signature") == NULL) {
		rv = coffer_err_set(
		    err, COFFER_EAUTH, "the attestation carries no coordinator signature");
		coffer_err_hint(err,
		    "it was written before the coordinator had [dr] attestation_key; the DR "
		    "copy of a backup carries a signed one");
	} else if ((rv = hex_field(o, "signature", sig, sizeof(sig), err)) == 0) {
		size_t n = 0;
		uint8_t *msg = signed_bytes(body->valuestring, &n);
		if (msg == NULL) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for an attestation");
		} else if ((rv = coffer_sign_verify(coordinator, msg, n, sig, err)) != 0) {
			coffer_err_set(err, COFFER_EAUTH,
			    "the attestation is not signed by the coordinator key in "
			    "[keys] coordinator_public_key");
			coffer_err_hint(err,
			    "it was altered or forged, or the coordinator's attestation key "
			    "changed: do not trust this backup until that is explained");
		}
		free(msg);
	}
	if (rv == 0) {
		rv = body_fields(body->valuestring, out, err);
	}
	cJSON_Delete(o);
	return (rv);
}
