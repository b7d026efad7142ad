/*
 * Filter chain: the one streaming pass every backup, restore, WAL segment and
 * copy goes through (pgBackRest's IoFilter idea in plain C).
 *
 * A source pushes bytes into the first filter with coffer_filter_write; each
 * filter transforms them and pushes its output into f->next; the last filter
 * is a sink (a file, a repository object, a pipe). coffer_filter_finish
 * flushes every filter in order, so end-of-stream work (the zstd epilogue,
 * the final sealed chunk, a digest) happens exactly once. Each filter holds a
 * fixed-size buffer at most, so memory is bounded by configuration, never by
 * the size of the data.
 *
 * Results (digests, byte counts) are read from the filter object after
 * finish, through the filter's own accessor.
 *
 * Building: a chain is built back to front. A sink's constructor takes no
 * successor; every other constructor takes the filter it passes bytes to as
 * its first argument. Nested calls therefore read in pipeline order:
 *
 *     coffer_filter *head = coffer_sha256_filter_new(
 *         coffer_zstd_compress_new(coffer_fd_sink_new(fd, err), 3, 0, err), err);
 *
 * hashes, then compresses, then writes to fd.
 *
 * Ownership, so that such an expression needs one NULL check and no
 * unwinding:
 * - On success a constructor owns next: the filter it returns heads a chain
 *   that coffer_filter_free_chain frees whole.
 * - On failure a constructor frees next and everything after it, fills err
 *   and returns NULL: nothing built so far is left to the caller.
 * - Given a NULL next (an inner constructor failed), a constructor returns
 *   NULL at once and leaves err alone, so the caller sees the inner error.
 * - A pointer kept to an inner filter (to read a digest or a count after
 *   finish) is borrowed: valid until the chain is freed, and already freed
 *   if an outer constructor returned NULL.
 * - A function lent a chain (not owning it) builds in front of a borrow of
 *   it, coffer_borrow_filter_new, never in front of the chain itself.
 * Filters defined outside this folder follow the same rule.
 * coffer_filter_free frees one filter (one not in a chain, or whose chain
 * is freed otherwise). A failed write or finish leaves the chain unusable
 * except for freeing; sinks never publish anything on free (see
 * common/repo/repo.h for publishing).
 */
#ifndef COFFER_COMMON_STREAM_FILTER_H
#define COFFER_COMMON_STREAM_FILTER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef struct coffer_filter coffer_filter;

typedef struct coffer_filter_ops {
	const char *name;
	/* Consumes len bytes, pushing any output to f->next. */
	int (*write)(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err);
	/* Flushes everything buffered into f->next. Does not finish f->next. */
	int (*finish)(coffer_filter *f, coffer_err *err);
	/* Releases the filter's resources and the filter itself. */
	void (*destroy)(coffer_filter *f);
} coffer_filter_ops;

struct coffer_filter {
	const coffer_filter_ops *ops;
	coffer_filter *next;
	int failed; /* set after a failed write/finish: later calls are refused */
};

/* Pushes bytes into f (and through the rest of its chain). */
int coffer_filter_write(coffer_filter *f, const void *buf, size_t len, coffer_err *err);

/* Flushes f, then each filter after it, in order. */
int coffer_filter_finish(coffer_filter *f, coffer_err *err);

/* A pass-through in front of next that fails with COFFER_ECANCELED ("<what>
 * was stopped") once *stop is set, so a long stream (a sweep, a DR copy)
 * ends between buffers when its owner is shutting down. stop is borrowed. */
coffer_filter *coffer_stop_filter_new(
    coffer_filter *next, const atomic_bool *stop, const char *what, coffer_err *err);

/* The last filter of a chain a function builds in front of a chain it was
 * lent: bytes and finish go on into chain, but freeing the borrow leaves
 * chain alone, so failing to build, or freeing, the new filters never frees
 * the lender's. chain is borrowed and must outlive the borrow; NULL is
 * COFFER_EINTERNAL. */
coffer_filter *coffer_borrow_filter_new(coffer_filter *chain, coffer_err *err);

void coffer_filter_free(coffer_filter *f);
void coffer_filter_free_chain(coffer_filter *head);

#endif
