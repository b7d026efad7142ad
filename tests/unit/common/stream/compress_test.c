/* zstd filters: round trips of random and repetitive data at sizes 0, 1,
 * 64 KiB + 1 and several MiB, single- and multi-threaded, written in odd
 * pieces; frames cut at every kind of place (ETRUNC), damaged (ECORRUPT),
 * followed by garbage or a second frame (ECORRUPT), or asking for a window
 * over the limit (ETOOBIG); interoperation with the real zstd program in
 * both directions; bad arguments; a failing sink downstream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"
#include "tests/harness/tmpdir.h"

#define MiB (1024 * 1024)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t
rng_next(void)
{
	/* xorshift64*: deterministic, so a failure reproduces. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * 0x2545f4914f6cdd1dull);
}

static uint8_t *
random_bytes(size_t n)
{
	uint8_t *p = malloc(n + 1);
	assert_non_null(p);
	for (size_t i = 0; i < n; i++) {
		p[i] = (uint8_t)(rng_next() >> 56);
	}
	return (p);
}

/* Text that compresses well, like a dump: numbered rows of a few words. */
static uint8_t *
text_bytes(size_t n)
{
	static const char *const words[] = { "alpha", "bravo", "charlie", "delta", "echo" };
	uint8_t *p = malloc(n + 64);
	assert_non_null(p);
	size_t off = 0;
	for (uint64_t row = 0; off < n; row++) {
		off += (size_t)snprintf((char *)p + off, 64, "%llu\t%s\t%llu\n",
		    (unsigned long long)row, words[rng_next() % 5],
		    (unsigned long long)(rng_next() % 100000));
	}
	return (p);
}

/* Pushes data through f in pieces whose sizes vary from 1 byte to ~70 KiB,
 * so buffer boundaries fall everywhere. Returns the first error. */
static int
write_pieces(coffer_filter *f, const uint8_t *data, size_t len, coffer_err *err)
{
	size_t off = 0;
	while (off < len) {
		size_t n = 1 + (size_t)(rng_next() % 70000);
		if (rng_next() % 4 == 0) {
			n = 1 + (size_t)(rng_next() % 7);
		}
		if (n > len - off) {
			n = len - off;
		}
		int rv = coffer_filter_write(f, data + off, n, err);
		if (rv != 0) {
			return (rv);
		}
		off += n;
	}
	return (0);
}

/* Compresses data into a newly allocated frame. */
static uint8_t *
compress_all(const uint8_t *data, size_t len, int level, int workers, size_t *out_len)
{
	coffer_err err = { 0 };
	coffer_filter *buf = coffer_buffer_sink_new(len + len / 8 + 1024, &err);
	coffer_filter *z = coffer_zstd_compress_new(buf, level, workers, &err);
	assert_non_null(z);
	coffer_filter *chain = z;
	assert_int_equal(write_pieces(chain, data, len, &err), 0);
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	assert_int_equal(coffer_zstd_bytes_in(z), len);
	size_t n = 0;
	const uint8_t *p = coffer_buffer_sink_data(buf, &n);
	assert_int_equal(coffer_zstd_bytes_out(z), n);
	uint8_t *copy = malloc(n + 1);
	assert_non_null(copy);
	memcpy(copy, p, n);
	*out_len = n;
	coffer_filter_free_chain(chain);
	return (copy);
}

/* Decompresses frame in pieces; returns the error code, and on success
 * checks the output equals want. */
static int
decompress_check(
    const uint8_t *frame, size_t len, const uint8_t *want, size_t want_len, coffer_err *err)
{
	coffer_filter *buf = coffer_buffer_sink_new(want_len + 1, err);
	coffer_filter *d = coffer_zstd_decompress_new(buf, err);
	assert_non_null(d);
	coffer_filter *chain = d;
	int rv = write_pieces(chain, frame, len, err);
	if (rv == 0) {
		rv = coffer_filter_finish(chain, err);
	}
	if (rv == 0 && want != NULL) {
		size_t n = 0;
		const uint8_t *p = coffer_buffer_sink_data(buf, &n);
		assert_int_equal(n, want_len);
		assert_memory_equal(p, want, want_len);
		assert_int_equal(coffer_zstd_bytes_out(d), want_len);
		assert_int_equal(coffer_zstd_bytes_in(d), len);
	}
	coffer_filter_free_chain(chain);
	return (rv);
}

static void
test_round_trips(void **state)
{
	(void)state;
	static const size_t sizes[] = { 0, 1, 64 * 1024 + 1, 5 * MiB + 3 };
	static const int workers[] = { 0, 1, 2 };
	static const int levels[] = { 1, 3 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int kind = 0; kind < 2; kind++) {
			uint8_t *data = kind == 0 ? random_bytes(sizes[s]) : text_bytes(sizes[s]);
			for (size_t w = 0; w < 3; w++) {
				for (size_t l = 0; l < 2; l++) {
					size_t flen = 0;
					uint8_t *frame = compress_all(
					    data, sizes[s], levels[l], workers[w], &flen);
					if (kind == 1 && sizes[s] > MiB) {
						assert_true(flen < sizes[s] / 2);
					}
					coffer_err err = { 0 };
					assert_int_equal(
					    decompress_check(frame, flen, data, sizes[s], &err), 0);
					free(frame);
				}
			}
			free(data);
		}
	}
}

static void
test_streaming_chain_digests(void **state)
{
	(void)state;
	/* plain -> sha -> zstd(2 workers) -> zstd-d -> sha -> discard: the
	 * digests on both sides of the round trip must agree. */
	size_t len = 3 * MiB + 17;
	uint8_t *data = text_bytes(len);
	coffer_err err = { 0 };
	coffer_filter *sha_out = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	coffer_filter *d = coffer_zstd_decompress_new(sha_out, &err);
	coffer_filter *sha_in =
	    coffer_sha256_filter_new(coffer_zstd_compress_new(d, 3, 2, &err), &err);
	assert_non_null(sha_in);
	coffer_filter *chain = sha_in;
	assert_int_equal(write_pieces(chain, data, len, &err), 0);
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	uint8_t a[32], b[32];
	assert_int_equal(coffer_sha256_filter_digest(sha_in, a), 0);
	assert_int_equal(coffer_sha256_filter_digest(sha_out, b), 0);
	assert_memory_equal(a, b, 32);
	assert_int_equal(coffer_zstd_bytes_out(d), len);
	coffer_filter_free_chain(chain);
	free(data);
}

static void
test_truncated(void **state)
{
	(void)state;
	size_t len = 200 * 1024;
	uint8_t *data = text_bytes(len);
	size_t flen = 0;
	uint8_t *frame = compress_all(data, len, 3, 0, &flen);
	assert_true(flen > 100);
	/* Empty input, inside the header, inside blocks, inside the checksum. */
	size_t cuts[] = { 0, 1, 3, 4, 5, 8, flen / 3, flen / 2, flen - 5, flen - 4, flen - 1 };
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		coffer_err err = { 0 };
		assert_int_equal(decompress_check(frame, cuts[i], NULL, len, &err), COFFER_ETRUNC);
		assert_int_equal(err.code, COFFER_ETRUNC);
		assert_non_null(strstr(err.msg, "zstd stream ended"));
		assert_true(err.hint[0] != '\0');
	}
	/* A small frame, cut at every byte. */
	size_t slen = 0;
	uint8_t *small = compress_all((const uint8_t *)"hello, coffer", 13, 1, 0, &slen);
	for (size_t cut = 0; cut < slen; cut++) {
		coffer_err err = { 0 };
		assert_int_equal(decompress_check(small, cut, NULL, 13, &err), COFFER_ETRUNC);
	}
	coffer_err err = { 0 };
	assert_int_equal(
	    decompress_check(small, slen, (const uint8_t *)"hello, coffer", 13, &err), 0);
	free(small);
	free(frame);
	free(data);
}

static void
test_corrupt(void **state)
{
	(void)state;
	size_t len = 300 * 1024;
	uint8_t *data = random_bytes(len / 2);
	uint8_t *text = text_bytes(len);
	memcpy(text, data, len / 2); /* half incompressible, half text */
	size_t flen = 0;
	uint8_t *frame = compress_all(text, len, 3, 0, &flen);
	coffer_err err = { 0 };

	frame[0] ^= 0x01; /* magic */
	assert_int_equal(decompress_check(frame, flen, NULL, len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "not a zstd frame"));
	assert_true(err.hint[0] != '\0');
	frame[0] ^= 0x01;

	frame[flen - 1] ^= 0x80; /* content checksum */
	assert_int_equal(decompress_check(frame, flen, NULL, len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "checksum"));
	frame[flen - 1] ^= 0x80;

	/* A byte flipped anywhere else: detected by the block structure or,
	 * failing that, by the checksum; never accepted, never a crash. */
	for (int i = 0; i < 64; i++) {
		size_t at = 4 + (size_t)(rng_next() % (flen - 4));
		uint8_t bit = (uint8_t)(1u << (rng_next() % 8));
		frame[at] ^= bit;
		int rv = decompress_check(frame, flen, NULL, len, &err);
		assert_true(rv == COFFER_ECORRUPT || rv == COFFER_ETRUNC || rv == COFFER_ETOOBIG);
		frame[at] ^= bit;
	}
	assert_int_equal(decompress_check(frame, flen, text, len, &err), 0);

	static const uint8_t not_zstd[] = "PGDMP\x01\x0e\x00 this is a pg_dump, not zstd";
	assert_int_equal(
	    decompress_check(not_zstd, sizeof(not_zstd), NULL, 0, &err), COFFER_ECORRUPT);
	free(frame);
	free(text);
	free(data);
}

static void
test_trailing_garbage(void **state)
{
	(void)state;
	size_t len = 2 * MiB;
	uint8_t *data = text_bytes(len);
	size_t flen = 0;
	uint8_t *frame = compress_all(data, len, 1, 0, &flen);
	uint8_t *more = malloc(2 * flen);
	assert_non_null(more);
	memcpy(more, frame, flen);
	memcpy(more + flen, "x", 1);
	coffer_err err = { 0 };
	/* In pieces (the garbage may or may not share a write with the end of
	 * the frame) and in one write. */
	assert_int_equal(decompress_check(more, flen + 1, NULL, len, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "after the end of the zstd frame"));
	coffer_filter *d = coffer_zstd_decompress_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_filter_write(d, more, flen + 1, &err), COFFER_ECORRUPT);
	coffer_filter_free_chain(d);
	d = coffer_zstd_decompress_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_filter_write(d, more, flen, &err), 0);
	assert_int_equal(coffer_filter_write(d, "\0", 1, &err), COFFER_ECORRUPT);
	coffer_filter_free_chain(d);
	/* A second, valid frame is garbage too: an object is one frame. */
	memcpy(more + flen, frame, flen);
	assert_int_equal(decompress_check(more, 2 * flen, NULL, len, &err), COFFER_ECORRUPT);
	free(more);
	free(frame);
	free(data);
}

static void
test_window_limit(void **state)
{
	(void)state;
	/* Hand-made frames: magic, descriptor 0 (no size, no checksum), a
	 * window descriptor, and one last raw block holding 'Z'. Only the
	 * window differs: 2^(10 + (wd >> 3)). */
	uint8_t frame[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x00, 0x09, 0x00, 0x00, 'Z' };
	coffer_err err = { 0 };
	frame[5] = (20 - 10) << 3; /* 1 MiB: fine */
	assert_int_equal(decompress_check(frame, sizeof(frame), (const uint8_t *)"Z", 1, &err), 0);
	frame[5] = (COFFER_ZSTD_WINDOW_LOG_MAX - 10) << 3; /* at the limit: fine */
	assert_int_equal(decompress_check(frame, sizeof(frame), (const uint8_t *)"Z", 1, &err), 0);
	frame[5] = (COFFER_ZSTD_WINDOW_LOG_MAX + 1 - 10) << 3;
	assert_int_equal(decompress_check(frame, sizeof(frame), NULL, 1, &err), COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "window"));
	assert_true(err.hint[0] != '\0');
	frame[5] = (31 - 10) << 3; /* 2 GiB */
	assert_int_equal(decompress_check(frame, sizeof(frame), NULL, 1, &err), COFFER_ETOOBIG);
}

static int
run(const char *cmd)
{
	int st = system(cmd);
	return (WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void
test_zstd_program_interop(void **state)
{
	(void)state;
	if (run("command -v zstd >/dev/null 2>&1") != 0) {
		skip();
	}
	char dir[512], path[600], cmd[2048];
	assert_int_equal(harness_tmpdir_make("compress-test", dir, sizeof(dir)), 0);

	size_t len = MiB + 5;
	uint8_t *data = text_bytes(len);
	size_t flen = 0;
	uint8_t *frame = compress_all(data, len, 3, 2, &flen);
	snprintf(path, sizeof(path), "%s/ours.zst", dir);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(frame, 1, flen, fp), flen);
	fclose(fp);
	/* Our frame, checked and decoded by the reference implementation. */
	snprintf(cmd, sizeof(cmd), "zstd -q -t %s", path);
	assert_int_equal(run(cmd), 0);
	snprintf(cmd, sizeof(cmd), "zstd -q -d -c %s > %s/ours.out", path, dir);
	assert_int_equal(run(cmd), 0);
	snprintf(path, sizeof(path), "%s/ours.out", dir);
	fp = fopen(path, "rb");
	assert_non_null(fp);
	uint8_t *back = malloc(len + 1);
	assert_int_equal(fread(back, 1, len + 1, fp), len);
	fclose(fp);
	assert_memory_equal(back, data, len);

	/* The reference implementation's frame, decoded by ours. */
	snprintf(cmd, sizeof(cmd), "zstd -q -19 -c %s > %s/theirs.zst", path, dir);
	assert_int_equal(run(cmd), 0);
	snprintf(path, sizeof(path), "%s/theirs.zst", dir);
	fp = fopen(path, "rb");
	assert_non_null(fp);
	uint8_t *theirs = malloc(len);
	size_t tlen = fread(theirs, 1, len, fp);
	fclose(fp);
	assert_true(tlen > 0 && tlen < len);
	coffer_err err = { 0 };
	assert_int_equal(decompress_check(theirs, tlen, data, len, &err), 0);

	assert_int_equal(harness_tmpdir_remove(dir), 0);
	free(theirs);
	free(back);
	free(frame);
	free(data);
}

static void
test_bad_arguments(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	/* Each refusal frees the sink it was handed (the leak checker says
	 * so). */
	assert_null(coffer_zstd_compress_new(coffer_discard_sink_new(&err), 23, 0, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "level 23"));
	assert_true(err.hint[0] != '\0');
	assert_null(coffer_zstd_compress_new(coffer_discard_sink_new(&err), 3, -5, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "worker count -5"));
	assert_null(coffer_zstd_compress_new(coffer_discard_sink_new(&err), 3, 100000, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_null(coffer_zstd_compress_new(coffer_discard_sink_new(NULL), 99, 0, NULL));
	coffer_filter *z = coffer_zstd_compress_new(
	    coffer_discard_sink_new(&err), 0, COFFER_ZSTD_WORKERS_AUTO, &err);
	assert_non_null(z);
	coffer_filter_free_chain(z);
	/* zstd's "fast" levels */
	z = coffer_zstd_compress_new(coffer_discard_sink_new(&err), -5, 0, &err);
	assert_non_null(z);
	coffer_filter_free_chain(z);

	/* Accessors on a filter of another type. */
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_zstd_bytes_in(cnt), 0);
	assert_int_equal(coffer_zstd_bytes_out(NULL), 0);
	coffer_filter_free_chain(cnt);

	/* Use after finish is refused. */
	z = coffer_zstd_compress_new(coffer_discard_sink_new(&err), 1, 0, &err);
	assert_int_equal(coffer_filter_finish(z, &err), 0);
	assert_int_equal(coffer_filter_write(z, "a", 1, &err), COFFER_EINTERNAL);
	coffer_filter_free_chain(z);
}

static void
test_downstream_failure(void **state)
{
	(void)state;
	size_t len = MiB;
	uint8_t *data = random_bytes(len);
	coffer_err err = { 0 };
	for (int workers = 0; workers <= 2; workers++) {
		/* Compressor output bigger than the sink allows. */
		coffer_filter *chain = coffer_zstd_compress_new(
		    coffer_buffer_sink_new(len / 2, &err), 1, workers, &err);
		assert_non_null(chain);
		int rv = write_pieces(chain, data, len, &err);
		if (rv == 0) {
			rv = coffer_filter_finish(chain, &err);
		}
		assert_int_equal(rv, COFFER_ETOOBIG);
		assert_int_equal(coffer_filter_finish(chain, &err), COFFER_EINTERNAL);
		coffer_filter_free_chain(chain);
	}
	/* Decompressor output bigger than the sink allows. */
	size_t flen = 0;
	uint8_t *frame = compress_all(data, len, 1, 0, &flen);
	coffer_filter *chain =
	    coffer_zstd_decompress_new(coffer_buffer_sink_new(len - 1, &err), &err);
	assert_non_null(chain);
	int rv = write_pieces(chain, frame, flen, &err);
	if (rv == 0) {
		rv = coffer_filter_finish(chain, &err);
	}
	assert_int_equal(rv, COFFER_ETOOBIG);
	coffer_filter_free_chain(chain);
	free(frame);
	free(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_streaming_chain_digests),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_trailing_garbage),
		cmocka_unit_test(test_window_limit),
		cmocka_unit_test(test_zstd_program_interop),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_downstream_failure),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
