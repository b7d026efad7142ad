/* Attestations (coordinator/dr/attest.h): what rebuild-catalog trusts when the
 * catalog is gone. Round trip, and every way one must be refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/crypto/attestation.h"
#include "coordinator/dr/attest.h"

static void
sample(coord_attestation *a, coord_audit_key *k)
{
	memset(a, 0, sizeof(*a));
	snprintf(a->backup_id, sizeof(a->backup_id), "20260101T020000Z-l-0a1b2c");
	snprintf(a->service, sizeof(a->service), "billing");
	snprintf(a->agent, sizeof(a->agent), "billing-db-1");
	for (int i = 0; i < 32; i++) {
		a->agent_pubkey[i] = (uint8_t)(i * 7 + 1);
		k->bytes[i] = (uint8_t)(255 - i);
	}
	snprintf(a->kind, sizeof(a->kind), "logical");
	memset(a->manifest_sha256, 'a', 64);
	memset(a->stored_sha256, '0', 64);
	a->stored_bytes = 123456789012ULL;
}

static void
roundtrip(void **state)
{
	(void)state;
	coord_attestation a, b;
	coord_audit_key k;
	sample(&a, &k);
	char *json = NULL;
	size_t len = 0;
	coffer_err err = { 0 };
	assert_int_equal(coord_attest_render(&a, &k, &json, &len, &err), 0);
	assert_int_equal(json[len - 1], '\n');
	assert_int_equal(coord_attest_parse(json, len, &k, &b, &err), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	/* The same backup renders the same bytes: a retried copy finds an
	 * identical object. */
	char *again = NULL;
	assert_int_equal(coord_attest_render(&a, &k, &again, NULL, &err), 0);
	assert_string_equal(json, again);
	free(again);
	free(json);
}

static void
refused(const char *json, const coord_audit_key *k, int code, const char *words)
{
	coord_attestation out;
	coffer_err err = { 0 };
	int rv = coord_attest_parse(json, strlen(json), k, &out, &err);
	if (rv != code || strstr(err.msg, words) == NULL) {
		fail_msg(
		    "got %d \"%s\", want %d naming \"%s\" for %s", rv, err.msg, code, words, json);
	}
}

static void
tampered(void **state)
{
	(void)state;
	coord_attestation a;
	coord_audit_key k, other;
	sample(&a, &k);
	memset(other.bytes, 0x42, sizeof(other.bytes));
	char *json = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coord_attest_render(&a, &k, &json, NULL, &err), 0);
	/* Another audit key. */
	refused(json, &other, COFFER_EAUTH, "does not verify");
	/* The service changed inside the MACed body. */
	char *p = strstr(json, "billing\\\"");
	assert_non_null(p);
	memcpy(p, "ledgers", 7);
	refused(json, &k, COFFER_EAUTH, "does not verify");
	free(json);
}

static void
malformed(void **state)
{
	(void)state;
	coord_attestation a;
	coord_audit_key k;
	sample(&a, &k);
	refused("", &k, COFFER_ECORRUPT, "not a JSON object");
	refused("[1]", &k, COFFER_ECORRUPT, "not a JSON object");
	refused("{\"mac\":\"00\"}", &k, COFFER_ECORRUPT, "no \"attestation\"");
	refused("{\"attestation\":\"{}\",\"mac\":\"xyz\"}", &k, COFFER_ECORRUPT, "mac");
	char big[COORD_ATTEST_MAX + 2];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	refused(big, &k, COFFER_ETOOBIG, "attestation is");
}

/* A revocation: round trip; an attestation's MAC does not make one (the
 * domains differ), nor does another key or an altered agent. */
static void
revocation(void **state)
{
	(void)state;
	coord_attestation a;
	coord_audit_key k, other;
	sample(&a, &k);
	memset(other.bytes, 0x42, sizeof(other.bytes));
	coord_revocation r, back;
	memset(&r, 0, sizeof(r));
	snprintf(r.agent, sizeof(r.agent), "billing-db-1");
	memcpy(r.agent_pubkey, a.agent_pubkey, sizeof(r.agent_pubkey));
	r.revoked_at_ms = 1795000000123;
	snprintf(r.revoked_by, sizeof(r.revoked_by), "alice");
	char *json = NULL, *att = NULL;
	size_t len = 0, alen = 0;
	coffer_err err = { 0 };
	assert_int_equal(coord_revocation_render(&r, &k, &json, &len, &err), 0);
	assert_int_equal(coord_revocation_parse(json, len, &k, &back, &err), 0);
	assert_memory_equal(&r, &back, sizeof(r));
	char key[256];
	assert_int_equal(
	    coord_revocation_key(key, sizeof(key), "fleet/", r.agent, r.agent_pubkey, &err), 0);
	assert_string_equal(key, "fleet/agents/billing-db-1/revoked-01080f161d242b32.json");
	assert_int_equal(
	    coord_revocation_key(key, sizeof(key), "", "a/b", r.agent_pubkey, &err), COFFER_EINVAL);

	assert_int_equal(coord_revocation_parse(json, len, &other, &back, &err), COFFER_EAUTH);
	char *p = strstr(json, "billing-db-1");
	assert_non_null(p);
	p[11] = '2';
	assert_int_equal(coord_revocation_parse(json, len, &k, &back, &err), COFFER_EAUTH);

	/* An attestation's body under "revocation", with its own MAC. */
	assert_int_equal(coord_attest_render(&a, &k, &att, &alen, &err), 0);
	const char *head = "{\"attestation\":";
	assert_memory_equal(att, head, strlen(head));
	char swapped[COORD_ATTEST_MAX];
	int n = snprintf(swapped, sizeof(swapped), "{\"revocation\":%s", att + strlen(head));
	assert_true(n > 0 && (size_t)n < sizeof(swapped));
	assert_int_equal(coord_revocation_parse(swapped, (size_t)n, &k, &back, &err), COFFER_EAUTH);
	free(att);
	free(json);
}

/* Signed with the coordinator's attestation key: the HMAC still verifies
 * for rebuild-catalog, and a restore host checks the signature with the
 * public key alone; altered, another key's, or unsigned: refused. */
static void
signed_for_restore_hosts(void **state)
{
	(void)state;
	coord_attestation a, b;
	coord_audit_key k;
	sample(&a, &k);
	coffer_sign_key *sk = NULL, *other = NULL;
	coffer_sign_pubkey *pk = NULL, *opk = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_sign_key_generate(&sk, &err), 0);
	assert_int_equal(coffer_sign_key_public(sk, &pk, &err), 0);
	assert_int_equal(coffer_sign_key_generate(&other, &err), 0);
	assert_int_equal(coffer_sign_key_public(other, &opk, &err), 0);
	char *json = NULL, *again = NULL, *plain = NULL;
	size_t len = 0;
	assert_int_equal(coord_attest_render_signed(&a, &k, sk, &json, &len, &err), 0);
	assert_int_equal(coord_attest_render_signed(&a, &k, sk, &again, NULL, &err), 0);
	assert_string_equal(json, again); /* Ed25519 is deterministic */
	assert_int_equal(coord_attest_parse(json, len, &k, &b, &err), 0);
	assert_memory_equal(&a, &b, sizeof(a));
	coffer_attestation v;
	assert_int_equal(coffer_attestation_verify(json, len, pk, &v, &err), 0);
	assert_string_equal(v.backup_id, a.backup_id);
	assert_string_equal(v.service, "billing");
	assert_string_equal(v.agent, "billing-db-1");
	assert_memory_equal(v.agent_pubkey, a.agent_pubkey, 32);
	assert_string_equal(v.manifest_sha256, a.manifest_sha256);
	assert_int_equal(coffer_attestation_verify(json, len, opk, &v, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "coordinator_public_key"));
	char *p = strstr(json, "billing-db-1");
	assert_non_null(p);
	p[11] = '2'; /* another agent named, outside the signature's bytes */
	assert_int_equal(coffer_attestation_verify(json, len, pk, &v, &err), COFFER_EAUTH);
	assert_int_equal(coord_attest_render(&a, &k, &plain, &len, &err), 0);
	assert_int_equal(coffer_attestation_verify(plain, len, pk, &v, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "no coordinator signature"));
	free(json);
	free(again);
	free(plain);
	coffer_sign_pubkey_free(pk);
	coffer_sign_pubkey_free(opk);
	coffer_sign_key_free(sk);
	coffer_sign_key_free(other);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(roundtrip),
		cmocka_unit_test(signed_for_restore_hosts),
		cmocka_unit_test(tampered),
		cmocka_unit_test(malformed),
		cmocka_unit_test(revocation),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
