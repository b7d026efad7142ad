/*
 * Sinks: the last filter of a chain, where bytes leave it. And the pump that
 * feeds a chain from a file descriptor.
 *
 * A sink ignores f->next. Sinks never publish anything (no rename, no
 * completion marker): that is the repository's job, see common/repo/repo.h.
 */
#ifndef COFFER_COMMON_STREAM_SINK_H
#define COFFER_COMMON_STREAM_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/stream/filter.h"

/* Writes everything to fd, retrying short writes and EINTR and waiting on a
 * non-blocking fd. The fd stays the caller's: the sink never closes it.
 * Errors: a reader that went away (EPIPE) is COFFER_EIO with a message that
 * says so (the caller must ignore SIGPIPE to get it rather than die); a full
 * disk is COFFER_ENOSPC. */
coffer_filter *coffer_fd_sink_new(int fd, coffer_err *err);

/* Names the destination in error messages ("writing <name>: ..."); the
 * default is "file descriptor N". name is copied (and may be cut short). */
void coffer_fd_sink_set_name(coffer_filter *f, const char *name);

/* With on, finish calls fsync(2) and reports its failure. A destination
 * that cannot be synced because it is not a regular file or directory (a
 * pipe, a socket, a terminal) is accepted silently. Default off. */
void coffer_fd_sink_set_fsync(coffer_filter *f, bool on);

/* Bytes written to fd so far; 0 for another filter type. */
uint64_t coffer_fd_sink_bytes(const coffer_filter *f);

/* Collects everything in memory, up to max bytes: writing more fails with
 * COFFER_ETOOBIG. Memory grows with the data, up to max. For tests and small
 * objects (manifests), never for backup data. */
coffer_filter *coffer_buffer_sink_new(size_t max, coffer_err *err);

/* The bytes collected so far and their count. The data is followed by a NUL
 * byte (not counted), so text can be parsed in place; the pointer is valid
 * until the next write or free. Returns NULL for another filter type. */
const uint8_t *coffer_buffer_sink_data(const coffer_filter *f, size_t *len);

/* Accepts and drops everything. */
coffer_filter *coffer_discard_sink_new(coffer_err *err);

/* Reads fd to its end, writes what it reads into chain, then finishes the
 * chain. bufsize is the read size (0: 128 KiB), allocated once. The fd
 * stays the caller's. Returns 0 or the first error (of reading, of the
 * chain, or of finishing it); the chain is not freed either way. */
int coffer_filter_pump_fd(int fd, coffer_filter *chain, size_t bufsize, coffer_err *err);

#endif
