/* Feeds arbitrary bytes to the manifest parser, with and without a public
 * key. Whatever the bytes, parse must either refuse them with an error or
 * return a manifest that passes its own checks: such a manifest must sign,
 * and the signed JSON must parse back, verified, to the same canonical bytes
 * (so what one agent writes, every reader reads the same way). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static coffer_sign_key *fuzz_key;
static coffer_sign_pubkey *fuzz_pub;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	coffer_err err = { 0 };
	if (fuzz_key == NULL) {
		if (coffer_sign_key_generate(&fuzz_key, &err) != 0 ||
		    coffer_sign_key_public(fuzz_key, &fuzz_pub, &err) != 0) {
			abort();
		}
	}
	/* Not NUL-terminated on purpose: parse must honour len. */
	char *json = malloc(size > 0 ? size : 1);
	if (json == NULL) {
		abort();
	}
	memcpy(json, data, size);

	coffer_manifest *m = NULL;
	int rc = coffer_manifest_parse(json, size, fuzz_pub, &m, &err);
	if (rc == 0) {
		/* Only a real signature from fuzz_key could get here. */
		coffer_manifest_free(m);
		m = NULL;
	} else if (m != NULL || err.msg[0] == '\0') {
		abort();
	}
	rc = coffer_manifest_parse(json, size, NULL, &m, &err);
	free(json);
	if (rc != 0) {
		if (m != NULL || err.msg[0] == '\0') {
			abort();
		}
		return (0);
	}
	char *out = NULL;
	size_t len = 0;
	if (coffer_manifest_to_json(m, fuzz_key, &out, &len, &err) != 0) {
		abort();
	}
	coffer_manifest *back = NULL;
	if (coffer_manifest_parse(out, len, fuzz_pub, &back, &err) != 0) {
		abort();
	}
	char *again = NULL;
	size_t len2 = 0;
	if (coffer_manifest_to_json(back, fuzz_key, &again, &len2, &err) != 0 || len2 != len ||
	    memcmp(out, again, len) != 0) {
		abort();
	}
	free(again);
	free(out);
	coffer_manifest_free(back);
	coffer_manifest_free(m);
	return (0);
}
