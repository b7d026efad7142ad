/*
 * Numbers as text: integers for libpq parameters and log fields (one
 * buffer size that always fits), and byte counts for people ("1.5 GiB",
 * binary units, the way df -h and pg_size_pretty round).
 */
#ifndef COFFER_COMMON_BASE_FMT_H
#define COFFER_COMMON_BASE_FMT_H

#include <stdint.h>

/* "-9223372036854775808" and its NUL. */
#define COFFER_FMT_INT_SIZE 24
/* "1023.9 PiB" and more. */
#define COFFER_FMT_BYTES_SIZE 24

/* Writes v in decimal into buf; returns buf. */
const char *coffer_fmt_i64(char buf[COFFER_FMT_INT_SIZE], int64_t v);
const char *coffer_fmt_u64(char buf[COFFER_FMT_INT_SIZE], uint64_t v);

/* "512 B", "1.5 KiB" ... "2.0 PiB": whole bytes below 1 KiB, one decimal
 * above. Returns buf. */
const char *coffer_fmt_bytes(char buf[COFFER_FMT_BYTES_SIZE], double bytes);

#endif
