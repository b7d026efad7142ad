/* Sealed streams: round trips at every size that matters, and each way a
 * stream can be damaged (flipped bits anywhere, truncation at every byte,
 * reordered, spliced, dropped and appended chunks, wrong key rings, unknown
 * versions) refused with its own error, with no byte of an unauthenticated
 * chunk reaching the next filter. Real key ring files, real filters. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
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
#include "common/stream/sink.h"
#include "tests/harness/tmpdir.h"

#define C       64           /* small chunks so tests cross many boundaries */
#define FRAME   (4 + C + 16) /* one full sealed chunk */
#define ID      "svc-key.1"
#define HDR     (78 + sizeof(ID) - 1)
#define MAX_OUT ((size_t)64 << 20)

struct fixture {
	char dir[512];
	char ring_path[600];
	char other_path[600]; /* a ring with a different key under the same id */
	char empty_path[600]; /* a ring without ID */
	coffer_keyring *ring;
	coffer_keyring *other;
	coffer_keyring *empty;
};

static coffer_keyring *
make_ring(const char *path, const char *id)
{
	char got[COFFER_KEYRING_ID_MAX + 1];
	coffer_err err = { 0 };
	if (coffer_keyring_generate(path, id, got, sizeof(got), &err) != 0) {
		return (NULL);
	}
	coffer_keyring *ring = NULL;
	coffer_keyring_load(path, &ring, &err);
	return (ring);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("seal-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->ring_path, sizeof(f->ring_path), "%s/ring", f->dir);
	snprintf(f->other_path, sizeof(f->other_path), "%s/other", f->dir);
	snprintf(f->empty_path, sizeof(f->empty_path), "%s/empty", f->dir);
	f->ring = make_ring(f->ring_path, ID);
	f->other = make_ring(f->other_path, ID);
	f->empty = make_ring(f->empty_path, "unrelated");
	if (f->ring == NULL || f->other == NULL || f->empty == NULL) {
		return (-1);
	}
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	coffer_keyring_free(f->ring);
	coffer_keyring_free(f->other);
	coffer_keyring_free(f->empty);
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static void
fill(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		buf[i] = (uint8_t)x;
	}
}

/* Seals pt in uneven pieces (1, 2, 3, ... bytes, then the rest) so the
 * filter's buffering is exercised. Returns a malloc'ed copy of the output. */
static uint8_t *
seal_bytes(const coffer_keyring *ring, const char *key_id, size_t chunk, const uint8_t *pt,
    size_t len, size_t *out_len)
{
	coffer_err err = { 0 };
	coffer_filter *sink = coffer_buffer_sink_new(MAX_OUT, &err);
	coffer_filter *chain = coffer_seal_filter_new(sink, ring, key_id, chunk, &err);
	assert_non_null(chain);
	size_t off = 0;
	for (size_t piece = 1; off < len; piece++) {
		size_t n = piece > 40 ? len - off : piece;
		if (n > len - off) {
			n = len - off;
		}
		assert_int_equal(coffer_filter_write(chain, pt + off, n, &err), 0);
		off += n;
	}
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	size_t n = 0;
	const uint8_t *data = coffer_buffer_sink_data(sink, &n);
	uint8_t *copy = malloc(n + 1);
	memcpy(copy, data, n);
	*out_len = n;
	coffer_filter_free_chain(chain);
	return (copy);
}

struct unsealed {
	int rv;
	coffer_err err;
	uint8_t *out;
	size_t out_len;
	char key_id[COFFER_KEYRING_ID_MAX + 1];
};

/* Unseals in pieces of `piece` bytes (0: all at once). */
static void
unseal_bytes(
    const coffer_keyring *ring, const uint8_t *in, size_t len, size_t piece, struct unsealed *u)
{
	memset(u, 0, sizeof(*u));
	coffer_filter *sink = coffer_buffer_sink_new(MAX_OUT, &u->err);
	coffer_filter *chain = coffer_unseal_filter_new(sink, ring, &u->err);
	assert_non_null(chain);
	if (piece == 0) {
		piece = len > 0 ? len : 1;
	}
	for (size_t off = 0; off < len && u->rv == 0; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		u->rv = coffer_filter_write(chain, in + off, n, &u->err);
	}
	if (u->rv == 0) {
		u->rv = coffer_filter_finish(chain, &u->err);
	}
	size_t n = 0;
	const uint8_t *data = coffer_buffer_sink_data(sink, &n);
	u->out = malloc(n + 1);
	memcpy(u->out, data, n);
	u->out_len = n;
	const char *kid = coffer_unseal_filter_key_id(chain);
	if (kid != NULL) {
		snprintf(u->key_id, sizeof(u->key_id), "%s", kid);
	}
	coffer_filter_free_chain(chain);
}

/* The damage must be refused with code (any of the three if code is 0),
 * msg_part in the message, a hint, and the output must be whole authentic
 * chunks of pt only. */
static void
expect_refused(const coffer_keyring *ring, const uint8_t *in, size_t len, const uint8_t *pt,
    size_t pt_len, int code, const char *msg_part, const char *what)
{
	struct unsealed u;
	unseal_bytes(ring, in, len, 0, &u);
	int ok = u.rv != 0 && u.err.code == u.rv && u.err.hint[0] != '\0';
	if (code != 0) {
		ok = ok && u.rv == code;
	} else {
		ok = ok &&
		    (u.rv == COFFER_EAUTH || u.rv == COFFER_ECORRUPT || u.rv == COFFER_ETRUNC);
	}
	if (msg_part != NULL) {
		ok = ok && strstr(u.err.msg, msg_part) != NULL;
	}
	ok = ok && (u.out_len % C == 0 || u.out_len == pt_len) && u.out_len <= pt_len &&
	    (u.out_len == 0 || memcmp(u.out, pt, u.out_len) == 0);
	if (!ok) {
		print_error("%s: got rv %d (%s) with %zu bytes out; want %d with \"%s\"\n", what,
		    u.rv, u.err.msg, u.out_len, code, msg_part != NULL ? msg_part : "");
		free(u.out);
		fail();
	}
	free(u.out);
}

static void
test_round_trips(void **state)
{
	struct fixture *f = *state;
	static const size_t sizes[] = { 0, 1, C - 1, C, C + 1, 2 * C, 10 * C + 17, 100 * C };
	uint8_t *pt = malloc(100 * C);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i];
		fill(pt, len, (uint32_t)i);
		size_t slen = 0;
		uint8_t *sealed = seal_bytes(f->ring, NULL, C, pt, len, &slen);
		/* k full chunks, the last one final; empty input: one empty final chunk. */
		size_t chunks = len == 0 ? 1 : (len + C - 1) / C;
		assert_int_equal(slen, HDR + chunks * (4 + 16) + len);
		static const size_t pieces[] = { 0, 1, 7, C + 20, FRAME };
		for (size_t p = 0; p < sizeof(pieces) / sizeof(pieces[0]); p++) {
			struct unsealed u;
			unseal_bytes(f->ring, sealed, slen, pieces[p], &u);
			if (u.rv != 0) {
				print_error("size %zu piece %zu: %s\n", len, pieces[p], u.err.msg);
			}
			assert_int_equal(u.rv, 0);
			assert_int_equal(u.out_len, len);
			assert_memory_equal(u.out, pt, len);
			assert_string_equal(u.key_id, ID);
			free(u.out);
		}
		/* Two seals of the same data differ: fresh data key and nonces. */
		size_t slen2 = 0;
		uint8_t *sealed2 = seal_bytes(f->ring, NULL, C, pt, len, &slen2);
		assert_int_equal(slen2, slen);
		assert_memory_not_equal(sealed2 + HDR - 64, sealed + HDR - 64, 64);
		free(sealed2);
		free(sealed);
	}
	free(pt);

	/* The default chunk size and a larger object. */
	size_t big = 3 * COFFER_SEAL_CHUNK_DEFAULT + 12345;
	uint8_t *bp = malloc(big);
	fill(bp, big, 99);
	memset(bp + 1000, 'a', 100000);
	size_t slen = 0;
	uint8_t *sealed = seal_bytes(f->ring, ID, 0, bp, big, &slen);
	struct unsealed u;
	unseal_bytes(f->ring, sealed, slen, 4096, &u);
	assert_int_equal(u.rv, 0);
	assert_int_equal(u.out_len, big);
	assert_memory_equal(u.out, bp, big);
	free(u.out);
	free(sealed);
	free(bp);
}

static void
test_header_damage(void **state)
{
	struct fixture *f = *state;
	uint8_t pt[3 * C + 5];
	fill(pt, sizeof(pt), 7);
	size_t slen = 0;
	uint8_t *sealed = seal_bytes(f->ring, NULL, C, pt, sizeof(pt), &slen);
	uint8_t *bad = malloc(slen);
	char what[64];
	/* Every bit of the header: refused, and nothing comes out. */
	for (size_t i = 0; i < HDR; i++) {
		for (int b = 0; b < 8; b++) {
			memcpy(bad, sealed, slen);
			bad[i] ^= (uint8_t)(1 << b);
			snprintf(what, sizeof(what), "header byte %zu bit %d", i, b);
			struct unsealed u;
			unseal_bytes(f->ring, bad, slen, 0, &u);
			if (u.rv == 0 || u.out_len != 0) {
				print_error("%s: rv %d, %zu bytes out\n", what, u.rv, u.out_len);
				fail();
			}
			free(u.out);
		}
	}
	/* And each field with its own error. */
	struct {
		size_t off;
		uint8_t mask;
		int code;
		const char *msg;
	} cases[] = {
		{ 0, 0x01, COFFER_ECORRUPT, "not a sealed stream" },
		{ 7, 0x20, COFFER_ECORRUPT, "not a sealed stream" },
		{ 8, 0x02, COFFER_EVERSION, "format version 3" },
		{ 9, 0xff, COFFER_ECORRUPT, "key id length 246" },
		{ 10, 0x80, COFFER_ECORRUPT, "key id has bytes" },
		{ 11, 0x01, COFFER_ENOENT, "sealed with key swc-key.1, which key ring" },
		{ 10 + 9 + 3, 0x01, COFFER_EAUTH, "cannot unwrap the data key" }, /* chunk size */
		{ 10 + 9, 0x80, COFFER_ECORRUPT, "chunk size" },
		{ 10 + 9 + 4, 0x10, COFFER_EAUTH, "cannot unwrap" },  /* nonce prefix */
		{ 10 + 9 + 8, 0x10, COFFER_EAUTH, "cannot unwrap" },  /* wrap nonce */
		{ 10 + 9 + 20, 0x04, COFFER_EAUTH, "cannot unwrap" }, /* wrapped key */
		{ HDR - 1, 0x40, COFFER_EAUTH, "cannot unwrap" },     /* wrap tag */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(bad, sealed, slen);
		bad[cases[i].off] ^= cases[i].mask;
		snprintf(what, sizeof(what), "header case %zu", i);
		expect_refused(
		    f->ring, bad, slen, pt, sizeof(pt), cases[i].code, cases[i].msg, what);
	}
	/* Unknown version, written as a newer release would. */
	memcpy(bad, sealed, slen);
	bad[8] = 3;
	expect_refused(
	    f->ring, bad, slen, pt, sizeof(pt), COFFER_EVERSION, "version 3", "version 3");
	/* Version 2 is bound to a name, which a plain reader does not know. */
	bad[8] = 2;
	expect_refused(f->ring, bad, slen, pt, sizeof(pt), COFFER_EAUTH, "bound to the name",
	    "version 2 without a binding");
	/* Not a sealed stream at all, however short. */
	const char *text = "pg_dump output, not sealed";
	expect_refused(f->ring, (const uint8_t *)text, strlen(text), pt, sizeof(pt),
	    COFFER_ECORRUPT, "not a sealed stream", "plain text");
	expect_refused(f->ring, (const uint8_t *)"P", 1, pt, sizeof(pt), COFFER_ECORRUPT,
	    "not a sealed stream", "one byte");
	free(bad);
	free(sealed);
}

static void
test_wrong_rings(void **state)
{
	struct fixture *f = *state;
	uint8_t pt[2 * C];
	fill(pt, sizeof(pt), 3);
	size_t slen = 0;
	uint8_t *sealed = seal_bytes(f->ring, NULL, C, pt, sizeof(pt), &slen);
	/* Same id, different key: the unwrap fails. */
	char msg[800];
	snprintf(msg, sizeof(msg), "cannot unwrap the data key with key %s of key ring %s", ID,
	    f->other_path);
	expect_refused(f->other, sealed, slen, pt, sizeof(pt), COFFER_EAUTH, msg, "other ring");
	/* No such id: named, with the ring. */
	snprintf(msg, sizeof(msg), "sealed with key %s, which key ring %s does not hold", ID,
	    f->empty_path);
	expect_refused(f->empty, sealed, slen, pt, sizeof(pt), COFFER_ENOENT, msg, "empty ring");
	struct unsealed u;
	unseal_bytes(f->empty, sealed, slen, 0, &u);
	assert_non_null(strstr(u.err.hint, ID));
	free(u.out);
	free(sealed);

	/* The seal side refuses an unknown id and bad chunk sizes (and frees
	 * the sink it was given: the leak checker would say otherwise). */
	coffer_err err = { 0 };
	assert_null(
	    coffer_seal_filter_new(coffer_discard_sink_new(&err), f->ring, "nope", C, &err));
	assert_int_equal(err.code, COFFER_ENOENT);
	assert_non_null(strstr(err.msg, "nope"));
	assert_null(coffer_seal_filter_new(
	    coffer_discard_sink_new(&err), f->ring, NULL, COFFER_SEAL_CHUNK_MIN - 1, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_null(coffer_seal_filter_new(
	    coffer_discard_sink_new(&err), f->ring, NULL, COFFER_SEAL_CHUNK_MAX + 1, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	/* Accessors refuse other filters. */
	coffer_filter *sink = coffer_discard_sink_new(&err);
	assert_null(coffer_unseal_filter_key_id(sink));
	assert_null(coffer_seal_filter_key_id(sink));
	coffer_filter_free(sink);
}

static void
test_chunk_damage(void **state)
{
	struct fixture *f = *state;
	uint8_t pt[3 * C + 10]; /* chunks 0..2 full, chunk 3 final with 10 bytes */
	fill(pt, sizeof(pt), 11);
	size_t slen = 0;
	uint8_t *sealed = seal_bytes(f->ring, NULL, C, pt, sizeof(pt), &slen);
	assert_int_equal(slen, HDR + 3 * FRAME + 4 + 10 + 16);
	uint8_t *bad = malloc(slen + 2 * FRAME);
	char what[96];
	char msg[96];
	for (size_t i = HDR; i < slen; i++) {
		size_t k = (i - HDR) / FRAME;
		size_t in_chunk = (i - HDR) % FRAME;
		for (int b = 0; b < 8; b++) {
			memcpy(bad, sealed, slen);
			bad[i] ^= (uint8_t)(1 << b);
			snprintf(what, sizeof(what), "chunk %zu byte %zu bit %d", k, in_chunk, b);
			if (in_chunk < 4) {
				/* The frame word: corrupt, truncated or unauthentic, never accepted. */
				expect_refused(f->ring, bad, slen, pt, sizeof(pt), 0, NULL, what);
			} else {
				/* Ciphertext and tag: the chunk is named. */
				snprintf(msg, sizeof(msg), "chunk %zu%s failed authentication", k,
				    k == 3 ? " (final)" : "");
				expect_refused(
				    f->ring, bad, slen, pt, sizeof(pt), COFFER_EAUTH, msg, what);
			}
		}
	}
	/* Clearing the final flag of a short final chunk is a malformed frame. */
	memcpy(bad, sealed, slen);
	bad[HDR + 3 * FRAME] &= 0x7f;
	expect_refused(f->ring, bad, slen, pt, sizeof(pt), COFFER_ECORRUPT,
	    "chunk 3 is damaged: its frame says a non-final chunk of 10 bytes", "final flag");
	/* Setting it on a full middle chunk must fail that chunk's tag. */
	memcpy(bad, sealed, slen);
	bad[HDR + FRAME] |= 0x80;
	expect_refused(f->ring, bad, slen, pt, sizeof(pt), COFFER_EAUTH,
	    "chunk 1 (final) failed authentication", "early final flag");

	/* Swap chunks 0 and 1: chunk 0 is refused and nothing comes out. */
	memcpy(bad, sealed, slen);
	memcpy(bad + HDR, sealed + HDR + FRAME, FRAME);
	memcpy(bad + HDR + FRAME, sealed + HDR, FRAME);
	expect_refused(f->ring, bad, slen, pt, sizeof(pt), COFFER_EAUTH,
	    "chunk 0 failed authentication", "swap");
	struct unsealed u;
	unseal_bytes(f->ring, bad, slen, 1, &u);
	assert_int_equal(u.rv, COFFER_EAUTH);
	assert_int_equal(u.out_len, 0);
	free(u.out);

	/* Splice chunk 1 from another object sealed with the same key. */
	uint8_t pt2[sizeof(pt)];
	fill(pt2, sizeof(pt2), 12);
	size_t slen2 = 0;
	uint8_t *other = seal_bytes(f->ring, NULL, C, pt2, sizeof(pt2), &slen2);
	memcpy(bad, sealed, slen);
	memcpy(bad + HDR + FRAME, other + HDR + FRAME, FRAME);
	expect_refused(f->ring, bad, slen, pt, sizeof(pt), COFFER_EAUTH,
	    "chunk 1 failed authentication", "splice");
	unseal_bytes(f->ring, bad, slen, 0, &u);
	assert_int_equal(u.out_len, C); /* chunk 0 only: authentic, released */
	free(u.out);
	/* A whole other header with this object's chunks. */
	memcpy(bad, other, HDR);
	memcpy(bad + HDR, sealed + HDR, slen - HDR);
	expect_refused(f->ring, bad, slen, pt, sizeof(pt), COFFER_EAUTH,
	    "chunk 0 failed authentication", "header swap");
	free(other);

	/* Drop the final chunk: truncation at a boundary. */
	expect_refused(f->ring, sealed, HDR + 3 * FRAME, pt, sizeof(pt), COFFER_ETRUNC,
	    "ends after chunk 2 without a final chunk", "drop final");
	/* Drop a middle chunk: chunk 1's slot now holds chunk 2. */
	memcpy(bad, sealed, HDR + FRAME);
	memcpy(bad + HDR + FRAME, sealed + HDR + 2 * FRAME, slen - HDR - 2 * FRAME);
	expect_refused(f->ring, bad, slen - FRAME, pt, sizeof(pt), COFFER_EAUTH,
	    "chunk 1 failed authentication", "drop middle");

	/* Data after the final chunk: one byte, or a whole second stream. */
	memcpy(bad, sealed, slen);
	bad[slen] = 0;
	expect_refused(f->ring, bad, slen + 1, pt, sizeof(pt), COFFER_ECORRUPT,
	    "data after its final chunk (chunk 3)", "append byte");
	unseal_bytes(f->ring, bad, slen + 1, 0, &u);
	assert_int_equal(u.out_len, sizeof(pt));
	free(u.out);
	free(bad);
	free(sealed);
}

static void
test_truncation(void **state)
{
	struct fixture *f = *state;
	uint8_t pt[2 * C + 3];
	fill(pt, sizeof(pt), 5);
	size_t slen = 0;
	uint8_t *sealed = seal_bytes(f->ring, NULL, C, pt, sizeof(pt), &slen);
	char what[64];
	for (size_t cut = 0; cut < slen; cut++) {
		snprintf(what, sizeof(what), "cut at %zu of %zu", cut, slen);
		const char *msg;
		if (cut == 0) {
			msg = "is empty";
		} else if (cut < HDR) {
			msg = "ends inside its header";
		} else if (cut == HDR) {
			msg = "before any chunk";
		} else if ((cut - HDR) % FRAME == 0) {
			msg = "without a final chunk";
		} else {
			msg = "ends inside chunk";
		}
		expect_refused(f->ring, sealed, cut, pt, sizeof(pt), COFFER_ETRUNC, msg, what);
	}
	/* Byte by byte, the same: the filter's own buffering must not matter. */
	struct unsealed u;
	unseal_bytes(f->ring, sealed, HDR + FRAME + 30, 1, &u);
	assert_int_equal(u.rv, COFFER_ETRUNC);
	assert_non_null(strstr(u.err.msg, "ends inside chunk 1, after 30 of its 84 bytes"));
	assert_int_equal(u.out_len, C);
	free(u.out);
	free(sealed);

	/* An empty plaintext's one empty final chunk cannot be dropped either. */
	sealed = seal_bytes(f->ring, NULL, C, pt, 0, &slen);
	assert_int_equal(slen, HDR + 20);
	expect_refused(f->ring, sealed, HDR, pt, 0, COFFER_ETRUNC, "before any chunk", "empty");
	free(sealed);
}

static void
test_key_rotation(void **state)
{
	struct fixture *f = *state;
	uint8_t pt[C + 1];
	fill(pt, sizeof(pt), 21);
	size_t slen = 0;
	uint8_t *old = seal_bytes(f->ring, NULL, C, pt, sizeof(pt), &slen);
	char id[COFFER_KEYRING_ID_MAX + 1];
	coffer_err err = { 0 };
	assert_int_equal(coffer_keyring_generate(f->ring_path, "rot-2", id, sizeof(id), &err), 0);
	assert_int_equal(coffer_keyring_generate(f->ring_path, "rot-3", id, sizeof(id), &err), 0);
	coffer_keyring *ring = NULL;
	assert_int_equal(coffer_keyring_load(f->ring_path, &ring, &err), 0);
	/* New objects use the newest key; the two-rotations-old object still opens. */
	coffer_filter *s =
	    coffer_seal_filter_new(coffer_discard_sink_new(&err), ring, NULL, C, &err);
	assert_string_equal(coffer_seal_filter_key_id(s), "rot-3");
	coffer_filter_free_chain(s);
	struct unsealed u;
	unseal_bytes(ring, old, slen, 0, &u);
	assert_int_equal(u.rv, 0);
	assert_string_equal(u.key_id, ID);
	assert_memory_equal(u.out, pt, sizeof(pt));
	free(u.out);
	size_t nlen = 0;
	uint8_t *fresh = seal_bytes(ring, NULL, C, pt, sizeof(pt), &nlen);
	unseal_bytes(ring, fresh, nlen, 0, &u);
	assert_int_equal(u.rv, 0);
	assert_string_equal(u.key_id, "rot-3");
	free(u.out);
	/* The old ring does not have the new key. */
	expect_refused(f->ring, fresh, nlen, pt, sizeof(pt), COFFER_ENOENT, "rot-3", "old ring");
	free(fresh);
	free(old);
	coffer_keyring_free(ring);
}

/* Seals pt bound to binding (NULL: format 1), all at once. */
static uint8_t *
seal_bound(
    const coffer_keyring *ring, const char *binding, const uint8_t *pt, size_t len, size_t *out_len)
{
	coffer_err err = { 0 };
	coffer_filter *sink = coffer_buffer_sink_new(MAX_OUT, &err);
	coffer_filter *chain = coffer_seal_filter_new_bound(sink, ring, NULL, C,
	    (const uint8_t *)binding, binding != NULL ? strlen(binding) : 0, &err);
	assert_non_null(chain);
	assert_int_equal(coffer_filter_write(chain, pt, len, &err), 0);
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	size_t n = 0;
	const uint8_t *data = coffer_buffer_sink_data(sink, &n);
	uint8_t *copy = malloc(n);
	memcpy(copy, data, n);
	*out_len = n;
	coffer_filter_free_chain(chain);
	return (copy);
}

/* Opens sealed with binding (NULL: none) and flags; returns the code, and
 * whether the stream was bound, and checks the plaintext on success. */
static int
open_bound(const coffer_keyring *ring, const char *binding, unsigned flags, const uint8_t *sealed,
    size_t len, const uint8_t *pt, size_t pt_len, bool *bound, coffer_err *err)
{
	coffer_filter *sink = coffer_buffer_sink_new(MAX_OUT, err);
	coffer_filter *chain = coffer_unseal_filter_new_bound(sink, ring, (const uint8_t *)binding,
	    binding != NULL ? strlen(binding) : 0, flags, err);
	assert_non_null(chain);
	int rv = coffer_filter_write(chain, sealed, len, err);
	if (rv == 0) {
		rv = coffer_filter_finish(chain, err);
	}
	*bound = coffer_unseal_filter_bound(chain);
	if (rv == 0) {
		size_t n = 0;
		const uint8_t *data = coffer_buffer_sink_data(sink, &n);
		assert_int_equal(n, pt_len);
		assert_memory_equal(data, pt, pt_len);
	}
	coffer_filter_free_chain(chain);
	return (rv);
}

/* Format 2: the binding opens the stream and nothing else does; a format 1
 * stream is refused where a binding is required unless the reader allows
 * it, and then it says it was unbound. The name tag is keyed: the same
 * binding under another key gives another tag. */
static void
test_binding(void **state)
{
	struct fixture *f = *state;
	uint8_t pt[1000];
	fill(pt, sizeof(pt), 7);
	const char *a = "coffer-wal-v1\nbilling\n42\n00000001\n000000010000000000000003";
	const char *b = "coffer-wal-v1\nbilling\n42\n00000001\n000000010000000000000004";
	size_t n = 0, n1 = 0;
	uint8_t *sealed = seal_bound(f->ring, a, pt, sizeof(pt), &n);
	uint8_t *legacy = seal_bound(f->ring, NULL, pt, sizeof(pt), &n1);
	assert_int_equal(sealed[8], COFFER_SEAL_VERSION_BOUND);
	assert_int_equal(legacy[8], COFFER_SEAL_VERSION);
	coffer_err err = { 0 };
	bool bound = false;
	assert_int_equal(open_bound(f->ring, a, 0, sealed, n, pt, sizeof(pt), &bound, &err), 0);
	assert_true(bound);
	/* Moved to another name: the data key does not unwrap. */
	assert_int_equal(
	    open_bound(f->ring, b, 0, sealed, n, pt, sizeof(pt), &bound, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "another name"));
	assert_int_equal(open_bound(f->ring, b, COFFER_UNSEAL_ALLOW_UNBOUND, sealed, n, pt,
	                     sizeof(pt), &bound, &err),
	    COFFER_EAUTH);
	/* A reader that knows no name cannot open a bound stream. */
	assert_int_equal(
	    open_bound(f->ring, NULL, 0, sealed, n, pt, sizeof(pt), &bound, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "bound to the name"));
	/* Format 1 where a binding is required. */
	assert_int_equal(
	    open_bound(f->ring, a, 0, legacy, n1, pt, sizeof(pt), &bound, &err), COFFER_EAUTH);
	assert_non_null(strstr(err.msg, "no name binding"));
	assert_int_equal(open_bound(f->ring, a, COFFER_UNSEAL_ALLOW_UNBOUND, legacy, n1, pt,
	                     sizeof(pt), &bound, &err),
	    0);
	assert_false(bound);
	assert_int_equal(open_bound(f->ring, NULL, 0, legacy, n1, pt, sizeof(pt), &bound, &err), 0);
	/* Every header byte of a bound stream is still authenticated. */
	for (size_t i = 9; i < HDR; i++) {
		sealed[i] ^= 1;
		assert_int_not_equal(
		    open_bound(f->ring, a, 0, sealed, n, pt, sizeof(pt), &bound, &err), 0);
		sealed[i] ^= 1;
	}
	char t1[COFFER_SEAL_NAME_TAG_LEN + 1], t2[COFFER_SEAL_NAME_TAG_LEN + 1],
	    t3[COFFER_SEAL_NAME_TAG_LEN + 1];
	assert_int_equal(
	    coffer_seal_name_tag(f->ring, ID, (const uint8_t *)a, strlen(a), t1, &err), 0);
	assert_int_equal(
	    coffer_seal_name_tag(f->other, ID, (const uint8_t *)a, strlen(a), t2, &err), 0);
	assert_int_equal(
	    coffer_seal_name_tag(f->ring, ID, (const uint8_t *)b, strlen(b), t3, &err), 0);
	assert_int_equal(strlen(t1), COFFER_SEAL_NAME_TAG_LEN);
	assert_string_not_equal(t1, t2);
	assert_string_not_equal(t1, t3);
	assert_int_equal(
	    coffer_seal_name_tag(f->empty, ID, (const uint8_t *)a, strlen(a), t1, &err),
	    COFFER_ENOENT);
	free(sealed);
	free(legacy);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trips, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_rings, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunk_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_binding, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
