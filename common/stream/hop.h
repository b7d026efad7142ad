/*
 * Hop: a filter that hands the rest of its chain to a thread of its own, so
 * a streaming pass uses two cores instead of one. What comes before the hop
 * (reading, decrypting, decompressing) runs on the caller's thread; what
 * comes after (writing files, hashing them) runs on the hop's worker, with a
 * bounded queue of buffers between them.
 *
 * Promises:
 * - Bytes reach the next filter in order, unchanged.
 * - Memory: slots * slot_size bytes, allocated once.
 * - An error downstream comes back from the next write or from finish, with
 *   the downstream filter's own message; after it the hop refuses writes.
 * - finish returns only when every byte has been written downstream, so the
 *   caller's coffer_filter_finish then finishes the filters after the hop on
 *   the caller's thread, with the worker idle: no filter is ever used by two
 *   threads at once.
 * - destroy stops and joins the worker (after it has finished the write in
 *   hand) before returning; it never frees the filters after it, so
 *   coffer_filter_free_chain, which frees front to back, joins the worker
 *   before anything it writes into is freed.
 */
#ifndef COFFER_COMMON_STREAM_HOP_H
#define COFFER_COMMON_STREAM_HOP_H

#include <stddef.h>

#include "common/base/error.h"
#include "common/stream/filter.h"

/* A hop in front of next; next and the filters after it run on the hop's
 * worker. slots: 2..64; slot_size: 4 KiB..16 MiB. NULL and err on failure
 * (with next freed, as filter.h's ownership rule says). */
coffer_filter *coffer_hop_filter_new(
    coffer_filter *next, size_t slots, size_t slot_size, coffer_err *err);

#endif
