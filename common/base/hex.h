/*
 * Hex text for bytes (digests, keys, signatures, nonces): lower-case out,
 * either case in, and exactly as many digits as the bytes asked for, so a
 * truncated or padded value is refused rather than half-read.
 */
#ifndef COFFER_COMMON_BASE_HEX_H
#define COFFER_COMMON_BASE_HEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

/* Writes 2 * len lower-case digits and a NUL to out (2 * len + 1 bytes). */
void coffer_hex_encode(const uint8_t *in, size_t len, char *out);

/* The value of one hex digit (either case), or -1. */
int coffer_hex_digit(char c);

/* Exactly 2 * n digits (hexlen of them, not NUL-terminated necessarily)
 * into n bytes; false on any other length or a non-digit. out may be
 * partly written on failure. */
bool coffer_hex_to_bytes(const char *hex, size_t hexlen, uint8_t *out, size_t n);

/* True when s starts with exactly n lower-case hex digits (the canonical
 * form of a digest or signature in a manifest). */
bool coffer_hex_is_lower(const char *s, size_t n);

/* The NUL-terminated hex into exactly outlen bytes, with an error that
 * names the problem (how many digits, which character) and the fix.
 * Reads at most 2 * outlen + 1 bytes of hex. Returns 0 or COFFER_EINVAL. */
int coffer_hex_decode(const char *hex, uint8_t *out, size_t outlen, coffer_err *err);

#endif
