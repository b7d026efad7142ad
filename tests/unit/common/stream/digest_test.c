/* Digest filters: SHA-256 against the FIPS 180-2 vectors however the input
 * is split, bytes passed through unchanged, discard when there is no next,
 * misuse refused (early digest, write after finish, wrong filter type), and
 * downstream failures surfacing. Hex has its own test (common/base). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream/digest.h"
#include "common/stream/sink.h"

struct vector {
	const char *input;
	size_t repeat; /* input written this many times */
	const char *hex;
};

static const struct vector vectors[] = {
	{ "", 1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abc", 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 1,
	    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
	{ "a", 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0" },
};

/* Writes the vector's input in pieces of `piece` bytes (0: all at once). */
static void
hash_vector(const struct vector *v, size_t piece, char hex[COFFER_SHA256_HEX_LEN + 1])
{
	size_t one = strlen(v->input);
	size_t total = one * v->repeat;
	uint8_t *all = malloc(total + 1);
	assert_non_null(all);
	for (size_t i = 0; i < v->repeat; i++) {
		memcpy(all + i * one, v->input, one);
	}
	coffer_err err = { 0 };
	coffer_filter *f = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	assert_non_null(f);
	size_t step = piece == 0 ? (total == 0 ? 1 : total) : piece;
	for (size_t off = 0; off < total; off += step) {
		size_t n = total - off < step ? total - off : step;
		assert_int_equal(coffer_filter_write(f, all + off, n, &err), 0);
	}
	assert_int_equal(coffer_filter_finish(f, &err), 0);
	uint8_t md[COFFER_SHA256_LEN];
	assert_int_equal(coffer_sha256_filter_digest(f, md), 0);
	coffer_hex_encode(md, sizeof(md), hex);
	coffer_filter_free_chain(f);
	free(all);
}

static void
test_sha256_vectors(void **state)
{
	(void)state;
	static const size_t pieces[] = { 0, 1, 3, 63, 64, 65, 4096 };
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
			if (vectors[i].repeat > 1 && pieces[p] > 0 && pieces[p] < 64) {
				continue; /* a million 1-byte writes add nothing */
			}
			char hex[COFFER_SHA256_HEX_LEN + 1];
			hash_vector(&vectors[i], pieces[p], hex);
			assert_string_equal(hex, vectors[i].hex);
		}
	}
}

static void
test_sha256_passes_bytes_through(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_filter *buf = coffer_buffer_sink_new(1024, &err);
	coffer_filter *sha = coffer_sha256_filter_new(buf, &err);
	coffer_filter *cnt = coffer_count_filter_new(sha, &err);
	assert_non_null(cnt);
	coffer_filter *chain = cnt;
	uint8_t data[300];
	for (size_t i = 0; i < sizeof(data); i++) {
		data[i] = (uint8_t)(i * 7 + 1);
	}
	assert_int_equal(coffer_filter_write(chain, data, 100, &err), 0);
	assert_int_equal(coffer_filter_write(chain, data + 100, 0, &err), 0);
	assert_int_equal(coffer_filter_write(chain, data + 100, 200, &err), 0);
	assert_int_equal(coffer_count_filter_bytes(cnt), 300);
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	size_t len = 0;
	const uint8_t *out = coffer_buffer_sink_data(buf, &len);
	assert_int_equal(len, sizeof(data));
	assert_memory_equal(out, data, sizeof(data));

	/* The same bytes hashed in front of a discard sink agree. */
	coffer_filter *lone = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_filter_write(lone, data, sizeof(data), &err), 0);
	assert_int_equal(coffer_filter_finish(lone, &err), 0);
	uint8_t a[32], b[32];
	assert_int_equal(coffer_sha256_filter_digest(sha, a), 0);
	assert_int_equal(coffer_sha256_filter_digest(lone, b), 0);
	assert_memory_equal(a, b, 32);
	coffer_filter_free_chain(lone);
	coffer_filter_free_chain(chain);
}

static void
test_sha256_misuse(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
	uint8_t md[32];
	assert_int_equal(coffer_filter_write(sha, "x", 1, &err), 0);
	/* No digest before finish: a half-stream digest must never be
	 * mistaken for the digest of the object. */
	assert_int_equal(coffer_sha256_filter_digest(sha, md), COFFER_EINTERNAL);
	assert_int_equal(coffer_sha256_filter_digest(cnt, md), COFFER_EINTERNAL);
	assert_int_equal(coffer_sha256_filter_digest(NULL, md), COFFER_EINTERNAL);
	assert_int_equal(coffer_count_filter_bytes(sha), 0);
	assert_int_equal(coffer_count_filter_bytes(NULL), 0);
	assert_int_equal(coffer_filter_finish(sha, &err), 0);
	assert_int_equal(coffer_filter_write(sha, "y", 1, &err), COFFER_EINTERNAL);
	assert_non_null(strstr(err.msg, "after it was finished"));
	/* The failed write poisoned the filter: it is refused from now on. */
	assert_int_equal(coffer_filter_finish(sha, &err), COFFER_EINTERNAL);
	coffer_filter_free_chain(sha);
	coffer_filter_free_chain(cnt);
	coffer_filter_free(NULL);
}

static void
test_downstream_failure_surfaces(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_filter *chain = coffer_sha256_filter_new(
	    coffer_count_filter_new(coffer_buffer_sink_new(10, &err), &err), &err);
	assert_non_null(chain);
	assert_int_equal(coffer_filter_write(chain, "0123456789", 10, &err), 0);
	assert_int_equal(coffer_filter_write(chain, "a", 1, &err), COFFER_ETOOBIG);
	assert_int_equal(err.code, COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "10 bytes"));
	assert_true(err.hint[0] != '\0');
	assert_int_equal(coffer_filter_write(chain, "a", 1, &err), COFFER_EINTERNAL);
	assert_int_equal(coffer_filter_finish(chain, &err), COFFER_EINTERNAL);
	coffer_filter_free_chain(chain);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_sha256_passes_bytes_through),
		cmocka_unit_test(test_sha256_misuse),
		cmocka_unit_test(test_downstream_failure_surfaces),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
