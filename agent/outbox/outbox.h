/*
 * Outbox: the agent's durable queue of events for the coordinator. An event
 * is saved here before anything else happens to it, and leaves only when the
 * coordinator has acked it, so neither a crash of the agent nor an outage of
 * the coordinator loses one. The coordinator applies an event and advances
 * the agent's last seq in one transaction, so a resend is harmless.
 *
 * What it promises:
 * - agent_outbox_append returns success only after the record is on stable
 *   storage (written and fdatasync'd), and gives it a sequence number that
 *   is strictly greater than every number handed out before, by any process,
 *   across restarts and compaction. A number is reused only if its record
 *   was never reported saved and never read (a torn write; see below).
 * - Records are opaque bytes (normally a packed coffer.v1.Event). The seq is
 *   assigned under the lock, so the sender copies it into Event.seq when it
 *   builds a batch; the outbox itself knows nothing of protobuf.
 * - Events are never dropped silently: a full outbox refuses appends with
 *   COFFER_ENOSPC, an oversized one with COFFER_ETOOBIG, and damage anywhere
 *   but the very end of the log refuses to open with COFFER_ECORRUPT.
 *
 * Design notes.
 * Several processes append at once: the daemon, `coffer-agent backup`, and
 * any number of `wal-push` runs that PostgreSQL's archive_command starts in
 * parallel. Every operation therefore holds an exclusive flock(2) on
 * <dir>/lock and first re-reads the state file, the list of segments and the
 * tail of the last segment, so a handle always sees what other processes
 * appended, acked or compacted. flock locks belong to the open file, so two
 * handles in one process exclude each other too; a handle must not be used
 * across fork() (open a new one in the child).
 *
 * The log is a series of append-only segment files named after the seq they
 * start at; a segment is sealed once the next one exists. A new segment is
 * written under a temporary name, fsync'd and renamed, so it never appears
 * half-made. Because each append is fdatasync'd before the lock is released,
 * only the last record of the last segment can ever be incomplete: such a
 * torn tail is cut off at open (with a warning naming file and offset).
 * Anything else that fails its check -- a bad record with a good one after
 * it, a bad record in a sealed segment, a bad header -- is damage that
 * happened after the data was durable, and the outbox refuses to guess.
 * A reader that finds records another process wrote fdatasyncs them before
 * handing them out, so nothing the coordinator ever saw can vanish on power
 * loss and have its seq reused.
 *
 * Acks go to a small state file replaced atomically (tmp, fsync, rename,
 * fsync dir); it also records the next seq, and the newest segment is never
 * removed, so the high-water mark survives compaction. Compaction deletes
 * whole sealed segments whose records are all acked. The on-disk format is
 * in docs/FORMAT.md ("Agent outbox").
 *
 * Memory: a handle holds one record buffer (max_record), two 64 KiB I/O
 * buffers and one small entry per segment; never more, whatever the files
 * contain. Thread-safety: a handle is used by one thread at a time. Every
 * call blocks on file I/O and on the lock (held for at most one append or
 * one read batch by any process), so the daemon calls it off its loop.
 */
#ifndef COFFER_AGENT_OUTBOX_OUTBOX_H
#define COFFER_AGENT_OUTBOX_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

#define AGENT_OUTBOX_DEFAULT_MAX_RECORD    (256u * 1024)
#define AGENT_OUTBOX_DEFAULT_SEGMENT_BYTES (4u * 1024 * 1024)
#define AGENT_OUTBOX_DEFAULT_MAX_BYTES     (256ull * 1024 * 1024)
/* The format's own ceiling on one record; max_record may not exceed it. */
#define AGENT_OUTBOX_FORMAT_MAX_RECORD (64u * 1024 * 1024)
/* Bytes of framing per record and per segment (see docs/FORMAT.md). */
#define AGENT_OUTBOX_RECORD_HEADER  32u
#define AGENT_OUTBOX_SEGMENT_HEADER 32u

/* Zero in any field means its default. */
typedef struct agent_outbox_limits {
	size_t max_record;    /* largest payload accepted by append */
	size_t segment_bytes; /* a segment is sealed when the next record would pass this */
	uint64_t max_bytes;   /* segment bytes holding unacked records, at most */
} agent_outbox_limits;

typedef struct agent_outbox agent_outbox;

typedef struct agent_outbox_stats {
	uint64_t count;      /* unacked records */
	uint64_t bytes;      /* their payload bytes */
	uint64_t acked_seq;  /* everything <= this is acked (0: nothing yet) */
	uint64_t next_seq;   /* the seq the next append will get */
	uint64_t used_bytes; /* counted against max_bytes */
	size_t segments;     /* segment files on disk */
} agent_outbox_stats;

/* Called once per record, oldest first. data is valid only during the call.
 * Return 0 to go on, > 0 to stop after this record, < 0 (a COFFER_E* code)
 * to stop and make agent_outbox_foreach return that code. The outbox lock is
 * held during the call: do not block, and do not call into the outbox. */
typedef int (*agent_outbox_record_cb)(uint64_t seq, const uint8_t *data, size_t len, void *arg);

/* Opens (creating if needed) <state_dir>/outbox, checks every record, cuts
 * off a torn tail and removes fully acked segments. state_dir must exist.
 * limits may be NULL. On success *out is a new handle for agent_outbox_close.
 * COFFER_ECORRUPT / COFFER_EVERSION if the files are damaged or from a
 * newer agent; COFFER_EINVAL if limits are inconsistent. */
int agent_outbox_open(
    const char *state_dir, const agent_outbox_limits *limits, agent_outbox **out, coffer_err *err);

/* Appends one record durably and sets *seq_out (may be NULL) to its seq.
 * COFFER_ETOOBIG if len > max_record, COFFER_ENOSPC if the outbox is full;
 * nothing is written then. The payload is copied; the caller keeps it. */
int agent_outbox_append(
    agent_outbox *ob, const void *payload, size_t len, uint64_t *seq_out, coffer_err *err);

/* Calls cb for unacked records with seq > after_seq, oldest first, at most
 * max_count of them and at most max_bytes of payload (the first record is
 * always delivered, so a large one cannot block the queue). Pass after_seq 0
 * to start from the oldest unacked; pass the last seq sent to pipeline
 * batches without waiting for acks. *delivered (may be NULL) counts the
 * records passed to cb; 0 means nothing is pending. */
int agent_outbox_foreach(agent_outbox *ob, uint64_t after_seq, size_t max_count, size_t max_bytes,
    agent_outbox_record_cb cb, void *arg, size_t *delivered, coffer_err *err);

/* Records durably that every record with seq <= seq is acked, then deletes
 * segments that hold only acked records. Acking an already acked seq does
 * nothing (resent acks are normal); acking a seq never assigned is
 * COFFER_EINVAL. */
int agent_outbox_ack(agent_outbox *ob, uint64_t seq, coffer_err *err);

/* Current depth and counters, after catching up with other processes. */
int agent_outbox_depth(agent_outbox *ob, agent_outbox_stats *out, coffer_err *err);

/* Releases the handle; ob may be NULL. Everything appended is already
 * durable, so there is nothing to flush. */
void agent_outbox_close(agent_outbox *ob);

#endif
