/* Feeds arbitrary bytes to the sealed stream reader with a fixed test key
 * ring (key id "fuzz", the key the seeds in seeds/unseal_fuzz were sealed
 * with). Each input is read twice, in one write and in small uneven
 * writes: both must end with the same result and the same plaintext, and
 * every refusal must carry a message and a hint. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/crypto/keyring.h"
#include "common/crypto/seal.h"
#include "common/stream/sink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ring_text[] =
    "coffer-keyring v1\n"
    "fuzz 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff "
    "2026-11-24T00:00:00Z\n";

static coffer_keyring *
fuzz_ring(void)
{
	static coffer_keyring *ring;
	if (ring != NULL) {
		return (ring);
	}
	char path[] = "/tmp/unseal-fuzz-ring-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0 || fchmod(fd, 0600) != 0 ||
	    write(fd, ring_text, sizeof(ring_text) - 1) != (ssize_t)(sizeof(ring_text) - 1)) {
		abort();
	}
	close(fd);
	coffer_err err = { 0 };
	int rv = coffer_keyring_load(path, &ring, &err);
	unlink(path);
	if (rv != 0) {
		fprintf(stderr, "unseal_fuzz: %s\n", err.msg);
		abort();
	}
	return (ring);
}

/* Returns the result; the plaintext is copied into out (size 1 MiB). */
static int
run(const uint8_t *data, size_t size, size_t piece, uint8_t *out, size_t *out_len)
{
	coffer_err err = { 0 };
	coffer_filter *sink = coffer_buffer_sink_new((size_t)1 << 20, &err);
	coffer_filter *chain = coffer_unseal_filter_new(sink, fuzz_ring(), &err);
	if (chain == NULL) {
		abort();
	}
	int rv = 0;
	size_t step = 1;
	for (size_t off = 0; off < size && rv == 0;) {
		size_t n = piece != 0 ? step : size;
		step = step % 7 + 1;
		if (n > size - off) {
			n = size - off;
		}
		rv = coffer_filter_write(chain, data + off, n, &err);
		off += n;
	}
	if (rv == 0) {
		rv = coffer_filter_finish(chain, &err);
	}
	if (rv != 0 && (err.code != rv || err.msg[0] == '\0' || err.hint[0] == '\0')) {
		abort(); /* every refusal says what is wrong and what to do */
	}
	size_t n = 0;
	const uint8_t *got = coffer_buffer_sink_data(sink, &n);
	memcpy(out, got, n);
	*out_len = n;
	coffer_filter_free_chain(chain);
	return (rv);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t a[(size_t)1 << 20];
	static uint8_t b[(size_t)1 << 20];
	if (size > ((size_t)1 << 20)) {
		return (0);
	}
	size_t alen = 0;
	size_t blen = 0;
	int ra = run(data, size, 0, a, &alen);
	int rb = run(data, size, 1, b, &blen);
	if (ra != rb || alen != blen || memcmp(a, b, alen) != 0) {
		abort();
	}
	/* Plaintext never outgrows its ciphertext. */
	if (alen > size) {
		abort();
	}
	return (0);
}
