/*
 * The whole data path on 200 MiB of mixed data, as a backup writes it and a
 * restore reads it: sha256 -> zstd (2 workers) -> seal -> sha256 -> posix
 * repository, then repository -> sha256 -> unseal -> zstd -d -> sha256. The
 * input alternates text-like and random blocks so both zstd paths are hit;
 * it is generated on the fly, so the test itself holds no more than a block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"
#include "common/repo/repo.h"
#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"
#include "tests/harness/tmpdir.h"

#define BLOCK        (1024 * 1024)
#define TOTAL_BLOCKS 200

static char dir[4096];

static uint64_t
xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return (*s);
}

static void
fill_block(uint8_t *buf, size_t i, uint64_t *rng)
{
	if (i % 3 == 2) {
		for (size_t k = 0; k < BLOCK; k += 8) {
			uint64_t v = xorshift(rng);
			memcpy(buf + k, &v, 8);
		}
		return;
	}
	size_t n = 0;
	while (n < BLOCK) {
		char line[128];
		int len = snprintf(line, sizeof(line),
		    "%zu\tcustomer-%llu\t2026-11-%02llu\t%llu.%02llu\n", i * 100000 + n,
		    (unsigned long long)(xorshift(rng) % 5000),
		    (unsigned long long)(1 + xorshift(rng) % 28),
		    (unsigned long long)(xorshift(rng) % 1000),
		    (unsigned long long)(xorshift(rng) % 100));
		size_t take = (size_t)len < BLOCK - n ? (size_t)len : BLOCK - n;
		memcpy(buf + n, line, take);
		n += take;
	}
}

static void
test_200mib_round_trip(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	char ring_path[4200];
	snprintf(ring_path, sizeof(ring_path), "%s/ring", dir);
	char id[80];
	assert_int_equal(coffer_keyring_generate(ring_path, "k1", id, sizeof(id), &err), 0);
	coffer_keyring *ring = NULL;
	assert_int_equal(coffer_keyring_load(ring_path, &ring, &err), 0);
	char repo_path[4200];
	snprintf(repo_path, sizeof(repo_path), "%s/repo", dir);
	assert_int_equal(mkdir(repo_path, 0700), 0);
	coffer_repo_config rc = { .type = "posix", .path = repo_path };
	coffer_repo *repo = NULL;
	assert_int_equal(
	    coffer_repo_open(&rc, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err), 0);

	coffer_filter *sink = NULL;
	assert_int_equal(
	    coffer_repo_write_begin(repo, "services/s/backups/x/data", &sink, &err), 0);
	coffer_filter *stored_sha = coffer_sha256_filter_new(sink, &err);
	coffer_filter *plain_sha = coffer_sha256_filter_new(
	    coffer_zstd_compress_new(
	        coffer_seal_filter_new(stored_sha, ring, NULL, 1024 * 1024, &err), 3, 2, &err),
	    &err);
	assert_non_null(plain_sha);
	coffer_filter *chain = plain_sha;
	uint8_t *buf = malloc(BLOCK);
	assert_non_null(buf);
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < TOTAL_BLOCKS; i++) {
		fill_block(buf, i, &rng);
		assert_int_equal(coffer_filter_write(chain, buf, BLOCK, &err), 0);
	}
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	assert_int_equal(coffer_repo_write_commit(sink, &err), 0);
	uint8_t want_plain[32], want_stored[32];
	coffer_sha256_filter_digest(plain_sha, want_plain);
	coffer_sha256_filter_digest(stored_sha, want_stored);
	coffer_filter_free_chain(chain);

	coffer_repo_info info;
	assert_int_equal(coffer_repo_stat(repo, "services/s/backups/x/data", &info, &err), 0);
	/* Two thirds text, one third random: the output is well under the input. */
	assert_true(info.size < (uint64_t)TOTAL_BLOCKS * BLOCK * 6 / 10);
	assert_true(info.size > (uint64_t)TOTAL_BLOCKS * BLOCK / 3);

	coffer_filter *count = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
	coffer_filter *r_plain = coffer_sha256_filter_new(count, &err);
	coffer_filter *r_stored = coffer_sha256_filter_new(
	    coffer_unseal_filter_new(coffer_zstd_decompress_new(r_plain, &err), ring, &err), &err);
	assert_non_null(r_stored);
	coffer_filter *back = r_stored;
	assert_int_equal(coffer_repo_read(repo, "services/s/backups/x/data", back, &err), 0);
	uint8_t got[32];
	coffer_sha256_filter_digest(r_stored, got);
	assert_memory_equal(got, want_stored, 32);
	coffer_sha256_filter_digest(r_plain, got);
	assert_memory_equal(got, want_plain, 32);
	assert_int_equal(coffer_count_filter_bytes(count), (uint64_t)TOTAL_BLOCKS * BLOCK);
	coffer_filter_free_chain(back);

	free(buf);
	coffer_repo_close(repo);
	coffer_keyring_free(ring);
}

static int
setup(void **state)
{
	(void)state;
	return (harness_tmpdir_make("stream", dir, sizeof(dir)));
}

static int
teardown(void **state)
{
	(void)state;
	return (harness_tmpdir_remove(dir));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_200mib_round_trip, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
