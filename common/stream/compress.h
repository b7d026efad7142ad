/*
 * zstd compression and decompression as filters.
 *
 * The compressor writes exactly one zstd frame with a content checksum; with
 * workers > 0 zstd compresses on that many threads of its own (the filter's
 * caller still sees a blocking write). The decompressor accepts exactly one
 * frame: a stream that ends inside the frame is COFFER_ETRUNC, bytes that
 * are not zstd, fail the checksum, or follow the frame are COFFER_ECORRUPT.
 *
 * Memory is bounded by the arguments, never by the data: output goes to
 * f->next in pieces of at most ZSTD_CStreamOutSize()/ZSTD_DStreamOutSize()
 * bytes, and the decompressor refuses frames whose window is larger than
 * 2^COFFER_ZSTD_WINDOW_LOG_MAX (COFFER_ETOOBIG), so a hostile frame cannot
 * make it allocate more than about that much. This is also zstd's own default
 * decoder limit, which no compression level exceeds (level 22 uses exactly
 * 2^27), so every frame the compressor writes stays decodable.
 *
 * Both push their output into next, which they own (see the ownership rule
 * in common/stream/filter.h); to measure without keeping the output, put a
 * discard sink behind them.
 */
#ifndef COFFER_COMMON_STREAM_COMPRESS_H
#define COFFER_COMMON_STREAM_COMPRESS_H

#include <stdint.h>

#include "common/base/error.h"
#include "common/stream/filter.h"

/* 128 MiB: zstd's level 22 at most; levels 1-19 use 8 MiB windows or less. */
#define COFFER_ZSTD_WINDOW_LOG_MAX 27

/* Pass as workers to use one worker per online CPU (at most 8). */
#define COFFER_ZSTD_WORKERS_AUTO (-1)

/* Bytes per multithreaded compression job (zstd's minimum is 512 KiB). */
#define COFFER_ZSTD_JOB_SIZE (1024 * 1024)

/* A compressor in front of next. level: zstd's levels, 1 (fast) to 22
 * (small), or 0 for zstd's default (3); negative "fast" levels are accepted
 * too. workers: 0 compresses on the caller's thread, N > 0 on N zstd
 * threads, COFFER_ZSTD_WORKERS_AUTO picks. Returns NULL (and fills err:
 * COFFER_EINVAL for a bad level or worker count) on failure. */
coffer_filter *coffer_zstd_compress_new(
    coffer_filter *next, int level, int workers, coffer_err *err);

/* A single-frame decompressor in front of next; see above for its errors. */
coffer_filter *coffer_zstd_decompress_new(coffer_filter *next, coffer_err *err);

/* Bytes written into the filter so far, and bytes it pushed to next; 0 for
 * another filter type. */
uint64_t coffer_zstd_bytes_in(const coffer_filter *f);
uint64_t coffer_zstd_bytes_out(const coffer_filter *f);

#endif
