/*
 * zstd filters. See common/stream/compress.h for the promises.
 *
 * Both directions push output to next one ZSTD_*StreamOutSize() buffer at a
 * time, so a filter holds zstd's own state plus one output buffer. For the
 * compressor that state is the level's window and, with workers, a few
 * job buffers per worker: bounded by level and workers.
 */
#include "common/stream/compress.h"

#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include <zstd.h>
#include <zstd_errors.h>

#define ZSTD_AUTO_WORKERS_MAX 8

struct zstd_filter {
	coffer_filter base; /* first: the chain sees only this */
	ZSTD_CCtx *cctx;    /* exactly one of cctx, dctx */
	ZSTD_DCtx *dctx;
	uint8_t *out;
	size_t out_size;
	uint64_t bytes_in;
	uint64_t bytes_out;
	bool frame_done; /* decompressor: the one frame ended */
	bool finished;
};

static const coffer_filter_ops zstd_compress_ops;
static const coffer_filter_ops zstd_decompress_ops;

static int
zstd_push(struct zstd_filter *z, size_t len, coffer_err *err)
{
	if (len == 0) {
		return (0);
	}
	z->bytes_out += len;
	return (coffer_filter_write(z->base.next, z->out, len, err));
}

static int
compress_error(coffer_err *err, size_t ret, const char *when)
{
	int code = ZSTD_getErrorCode(ret) == ZSTD_error_memory_allocation ? COFFER_ENOMEM
	                                                                  : COFFER_EINTERNAL;
	coffer_err_set(
	    err, code, "zstd compression failed while %s: %s", when, ZSTD_getErrorName(ret));
	if (code == COFFER_ENOMEM) {
		coffer_err_hint(err, "lower the compression level or the number of workers");
	}
	return (code);
}

static int
compress_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct zstd_filter *z = (struct zstd_filter *)f;
	if (z->finished) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "zstd compressor written to after it was finished"));
	}
	ZSTD_inBuffer in = { buf, len, 0 };
	/* With workers, zstd may return before taking all input (its job
	 * buffers are full); it blocks inside the call when it cannot make
	 * progress, so this loop does not spin. */
	while (in.pos < in.size) {
		ZSTD_outBuffer out = { z->out, z->out_size, 0 };
		size_t ret = ZSTD_compressStream2(z->cctx, &out, &in, ZSTD_e_continue);
		if (ZSTD_isError(ret)) {
			return (compress_error(err, ret, "compressing"));
		}
		int rv = zstd_push(z, out.pos, err);
		if (rv != 0) {
			return (rv);
		}
	}
	z->bytes_in += len;
	return (0);
}

static int
compress_finish(coffer_filter *f, coffer_err *err)
{
	struct zstd_filter *z = (struct zstd_filter *)f;
	if (z->finished) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "zstd compressor finished twice"));
	}
	ZSTD_inBuffer in = { NULL, 0, 0 };
	size_t remaining;
	do {
		ZSTD_outBuffer out = { z->out, z->out_size, 0 };
		remaining = ZSTD_compressStream2(z->cctx, &out, &in, ZSTD_e_end);
		if (ZSTD_isError(remaining)) {
			return (compress_error(err, remaining, "ending the frame"));
		}
		int rv = zstd_push(z, out.pos, err);
		if (rv != 0) {
			return (rv);
		}
	} while (remaining != 0);
	z->finished = true;
	return (0);
}

static void
zstd_destroy(coffer_filter *f)
{
	struct zstd_filter *z = (struct zstd_filter *)f;
	ZSTD_freeCCtx(z->cctx);
	ZSTD_freeDCtx(z->dctx);
	free(z->out);
	free(z);
}

static const coffer_filter_ops zstd_compress_ops = {
	.name = "zstd-compress",
	.write = compress_write,
	.finish = compress_finish,
	.destroy = zstd_destroy,
};

static int
auto_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1) {
		return (1);
	}
	return (n > ZSTD_AUTO_WORKERS_MAX ? ZSTD_AUTO_WORKERS_MAX : (int)n);
}

static int
set_cparam(struct zstd_filter *z, ZSTD_cParameter p, int value, const char *what, coffer_err *err)
{
	size_t ret = ZSTD_CCtx_setParameter(z->cctx, p, value);
	if (ZSTD_isError(ret)) {
		coffer_err_set(err, COFFER_EINVAL, "zstd refused %s %d: %s", what, value,
		    ZSTD_getErrorName(ret));
		if (p == ZSTD_c_nbWorkers) {
			coffer_err_hint(err, "this libzstd may lack thread support; use 0 workers");
		}
		return (COFFER_EINVAL);
	}
	return (0);
}

coffer_filter *
coffer_zstd_compress_new(coffer_filter *next, int level, int workers, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
		coffer_err_set(
		    err, COFFER_EINVAL, "zstd compression level %d is out of range", level);
		coffer_err_hint(
		    err, "use a level from 1 (fastest) to %d (smallest)", ZSTD_maxCLevel());
		coffer_filter_free_chain(next);
		return (NULL);
	}
	ZSTD_bounds wb = ZSTD_cParam_getBounds(ZSTD_c_nbWorkers);
	if (workers == COFFER_ZSTD_WORKERS_AUTO) {
		workers = auto_workers();
	}
	if (workers < 0 || (!ZSTD_isError(wb.error) && workers > wb.upperBound)) {
		coffer_err_set(err, COFFER_EINVAL, "zstd worker count %d is out of range", workers);
		coffer_err_hint(err, "use 0 (no threads) up to %d, about one per CPU",
		    ZSTD_isError(wb.error) ? 0 : wb.upperBound);
		coffer_filter_free_chain(next);
		return (NULL);
	}
	struct zstd_filter *z = calloc(1, sizeof(*z));
	if (z == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a zstd compressor");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	z->base.ops = &zstd_compress_ops;
	z->base.next = next;
	z->out_size = ZSTD_CStreamOutSize();
	z->cctx = ZSTD_createCCtx();
	z->out = malloc(z->out_size);
	if (z->cctx == NULL || z->out == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a zstd compressor");
		goto fail;
	}
	if (set_cparam(z, ZSTD_c_compressionLevel, level, "compression level", err) != 0 ||
	    set_cparam(z, ZSTD_c_checksumFlag, 1, "checksum flag", err) != 0 ||
	    set_cparam(z, ZSTD_c_nbWorkers, workers, "worker count", err) != 0) {
		goto fail;
	}
	/* Multithreaded zstd buffers a few jobs per worker, in and out; left to
	 * itself it sizes jobs from the window (8 MiB and up), which puts the
	 * pipeline near 100 MiB. Small jobs keep memory bounded by this
	 * constant at a cost in ratio measured in docs/PERFORMANCE.md. */
	if (workers > 0 &&
	    set_cparam(z, ZSTD_c_jobSize, COFFER_ZSTD_JOB_SIZE, "job size", err) != 0) {
		goto fail;
	}
	return (&z->base);
fail:
	coffer_filter_free_chain(&z->base);
	return (NULL);
}

static int
decompress_error(coffer_err *err, size_t ret)
{
	switch (ZSTD_getErrorCode(ret)) {
	case ZSTD_error_frameParameter_windowTooLarge:
		coffer_err_set(err, COFFER_ETOOBIG,
		    "zstd frame needs a window larger than the %u MiB limit",
		    (1u << COFFER_ZSTD_WINDOW_LOG_MAX) >> 20);
		coffer_err_hint(err,
		    "the data was not written by coffer or is damaged; "
		    "check where it came from");
		return (COFFER_ETOOBIG);
	case ZSTD_error_memory_allocation:
		coffer_err_set(err, COFFER_ENOMEM, "zstd decompression ran out of memory");
		coffer_err_hint(err, "free memory on this host and retry");
		return (COFFER_ENOMEM);
	case ZSTD_error_prefix_unknown:
		coffer_err_set(err, COFFER_ECORRUPT, "data is not a zstd frame (bad magic number)");
		coffer_err_hint(err,
		    "check that this object is a coffer compressed stream and "
		    "that it was decrypted first");
		return (COFFER_ECORRUPT);
	case ZSTD_error_checksum_wrong:
		coffer_err_set(
		    err, COFFER_ECORRUPT, "zstd frame checksum does not match its contents");
		coffer_err_hint(err, "the stored data is damaged; restore from another copy");
		return (COFFER_ECORRUPT);
	default:
		coffer_err_set(
		    err, COFFER_ECORRUPT, "zstd frame is corrupt: %s", ZSTD_getErrorName(ret));
		coffer_err_hint(err, "the stored data is damaged; restore from another copy");
		return (COFFER_ECORRUPT);
	}
}

static int
decompress_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct zstd_filter *z = (struct zstd_filter *)f;
	if (z->finished) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "zstd decompressor written to after it was finished"));
	}
	ZSTD_inBuffer in = { buf, len, 0 };
	while (in.pos < in.size) {
		if (z->frame_done) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "%zu unexpected bytes after the end of the zstd frame",
			    in.size - in.pos);
			coffer_err_hint(err,
			    "the stored object has trailing garbage; "
			    "check it against its manifest digest");
			return (COFFER_ECORRUPT);
		}
		ZSTD_outBuffer out = { z->out, z->out_size, 0 };
		size_t ret = ZSTD_decompressStream(z->dctx, &out, &in);
		if (ZSTD_isError(ret)) {
			return (decompress_error(err, ret));
		}
		int rv = zstd_push(z, out.pos, err);
		if (rv != 0) {
			return (rv);
		}
		/* zstd stops consuming at the end of a frame, so anything left in
		 * `in` after this is not part of it. */
		if (ret == 0) {
			z->frame_done = true;
		}
	}
	z->bytes_in += len;
	return (0);
}

static int
decompress_finish(coffer_filter *f, coffer_err *err)
{
	struct zstd_filter *z = (struct zstd_filter *)f;
	if (z->finished) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "zstd decompressor finished twice"));
	}
	/* The last write may have left decoded bytes inside zstd because the
	 * output buffer was full; drain them. No progress means the input
	 * ended inside the frame. */
	while (!z->frame_done) {
		ZSTD_inBuffer in = { NULL, 0, 0 };
		ZSTD_outBuffer out = { z->out, z->out_size, 0 };
		size_t ret = ZSTD_decompressStream(z->dctx, &out, &in);
		if (ZSTD_isError(ret)) {
			return (decompress_error(err, ret));
		}
		int rv = zstd_push(z, out.pos, err);
		if (rv != 0) {
			return (rv);
		}
		if (ret == 0) {
			z->frame_done = true;
		} else if (out.pos == 0) {
			coffer_err_set(err, COFFER_ETRUNC, "zstd stream ended %s after %llu bytes",
			    z->bytes_in == 0 ? "before its first frame" : "inside its frame",
			    (unsigned long long)z->bytes_in);
			coffer_err_hint(err,
			    "the object is incomplete; it may still be uploading "
			    "or was cut short, restore from another copy");
			return (COFFER_ETRUNC);
		}
	}
	z->finished = true;
	return (0);
}

static const coffer_filter_ops zstd_decompress_ops = {
	.name = "zstd-decompress",
	.write = decompress_write,
	.finish = decompress_finish,
	.destroy = zstd_destroy,
};

coffer_filter *
coffer_zstd_decompress_new(coffer_filter *next, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	struct zstd_filter *z = calloc(1, sizeof(*z));
	if (z == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a zstd decompressor");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	z->base.ops = &zstd_decompress_ops;
	z->base.next = next;
	z->out_size = ZSTD_DStreamOutSize();
	z->dctx = ZSTD_createDCtx();
	z->out = malloc(z->out_size);
	if (z->dctx == NULL || z->out == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "cannot allocate a zstd decompressor");
		goto fail;
	}
	size_t ret =
	    ZSTD_DCtx_setParameter(z->dctx, ZSTD_d_windowLogMax, COFFER_ZSTD_WINDOW_LOG_MAX);
	if (ZSTD_isError(ret)) {
		coffer_err_set(err, COFFER_EINTERNAL, "zstd refused the window limit: %s",
		    ZSTD_getErrorName(ret));
		goto fail;
	}
	return (&z->base);
fail:
	coffer_filter_free_chain(&z->base);
	return (NULL);
}

static const struct zstd_filter *
as_zstd(const coffer_filter *f)
{
	if (f == NULL || (f->ops != &zstd_compress_ops && f->ops != &zstd_decompress_ops)) {
		return (NULL);
	}
	return ((const struct zstd_filter *)f);
}

uint64_t
coffer_zstd_bytes_in(const coffer_filter *f)
{
	const struct zstd_filter *z = as_zstd(f);
	return (z != NULL ? z->bytes_in : 0);
}

uint64_t
coffer_zstd_bytes_out(const coffer_filter *f)
{
	const struct zstd_filter *z = as_zstd(f);
	return (z != NULL ? z->bytes_out : 0);
}
