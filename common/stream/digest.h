/*
 * Digests and counters as filters.
 *
 * The SHA-256 and count filters are pass-throughs: every byte written to
 * them is hashed or counted and then pushed unchanged to next; to hash and
 * drop, end the chain in a discard sink. Results are read after
 * coffer_filter_finish; the filters hold no buffer, so their memory is
 * constant. Constructors follow the ownership rule in common/stream/filter.h.
 *
 * Accessors check the filter's type: passing another kind of filter is a
 * bug and is reported as COFFER_EINTERNAL (or a zero count), never a crash.
 */
#ifndef COFFER_COMMON_STREAM_DIGEST_H
#define COFFER_COMMON_STREAM_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/base/hex.h" /* digests travel as hex text */
#include "common/stream/filter.h"

#define COFFER_SHA256_LEN     32
#define COFFER_SHA256_HEX_LEN 64

/* A SHA-256 pass-through in front of next. Returns NULL (and fills err) on
 * failure. */
coffer_filter *coffer_sha256_filter_new(coffer_filter *next, coffer_err *err);

/* Copies the digest of everything written. Valid only after the filter was
 * finished successfully; before that returns COFFER_EINTERNAL. */
int coffer_sha256_filter_digest(const coffer_filter *f, uint8_t out[COFFER_SHA256_LEN]);

/* A byte-counting pass-through in front of next. Returns NULL (and fills
 * err) on failure. */
coffer_filter *coffer_count_filter_new(coffer_filter *next, coffer_err *err);

/* Bytes written so far (readable at any time); 0 for another filter type. */
uint64_t coffer_count_filter_bytes(const coffer_filter *f);

#endif
