/* Feeds arbitrary bytes to the zstd decompressor, as a restore or verify
 * reads from a repository it does not trust: it must return an error or the
 * data, never crash, and never allocate past the window limit (libFuzzer's
 * -rss_limit_mb catches the latter). The input is written in two pieces cut
 * where its first byte says, so frame boundaries fall inside writes too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t cut = size > 0 ? (size_t)data[0] % (size + 1) : 0;
	/* The output is discarded, so only the decompressor's own memory
	 * counts. */
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(NULL), NULL);
	coffer_filter *z = coffer_zstd_decompress_new(cnt, NULL);
	if (z == NULL) {
		abort();
	}
	coffer_filter *chain = z;
	int rv = coffer_filter_write(chain, data, cut, NULL);
	if (rv == 0) {
		rv = coffer_filter_write(chain, data + cut, size - cut, NULL);
	}
	if (rv == 0) {
		rv = coffer_filter_finish(chain, NULL);
	}
	if (rv == 0 && coffer_zstd_bytes_out(z) != coffer_count_filter_bytes(cnt)) {
		abort(); /* the accounting must agree with what was delivered */
	}
	coffer_filter_free_chain(chain);
	return (0);
}
