/*
 * A logical backup, start to finish: snapshot, pg_dump streamed through
 * sha256 -> zstd -> AES-256-GCM -> sha256 into the repository, the signed
 * manifest published last, and an event in the outbox for every step that
 * matters. Blocking: run it on a worker thread (the daemon) or in the
 * foreground (`coffer-agent backup`).
 *
 * Failure is total or nothing: the data object is committed only after
 * pg_dump exited 0 and every filter finished, and the manifest -- the
 * completion marker -- only after that, so an aborted, timed-out or
 * cancelled backup leaves at most an unreferenced data object and never
 * something that looks complete.
 */
#ifndef COFFER_AGENT_BACKUP_BACKUP_H
#define COFFER_AGENT_BACKUP_BACKUP_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/backup/settle.h"
#include "agent/context/context.h"
#include "agent/pg/child.h"
#include "common/crypto/manifest.h"
#include "proto/coffer.pb-c.h"

typedef struct agent_backup_request {
	Coffer__V1__Trigger trigger;
	uint64_t command_id;  /* TRIGGER_COMMAND only */
	int64_t deadline_ms;  /* wall clock; 0: now + completion_window */
	agent_cancel *cancel; /* may be NULL */
	bool progress;        /* draw progress on a terminal */
} agent_backup_request;

typedef struct agent_backup_result {
	char backup_id[COFFER_MANIFEST_ID_SIZE];
	uint64_t plain_bytes;
	uint64_t stored_bytes;
	int64_t duration_ms;
	uint64_t event_seq; /* the completed or failed event */
} agent_backup_result;

/* The write side of the data path, shared by logical and physical backups:
 * sha256 -> count -> [progress] -> zstd -> seal -> sha256 -> count -> the
 * repository object at key. Results are read from the named filters after
 * the chain finishes. */
typedef struct agent_stream {
	coffer_filter *head;
	coffer_filter *plain_sha, *plain_count, *seal, *stored_sha, *stored_count;
	coffer_filter *sink; /* the repository writer, last in the chain */
} agent_stream;

/* progress: the label of a progress line on a terminal, or NULL for none;
 * expected: rough total for its ETA (0 if unknown). */
int agent_stream_open(agent_ctx *ctx, const char *key, const char *progress, uint64_t expected,
    agent_stream *s, coffer_err *err);

/* Aborts an uncommitted object (harmless after commit) and frees the chain. */
void agent_stream_close(agent_stream *s);

/* A finished sha256 filter's digest as lower-case hex. */
void agent_stream_hex(const coffer_filter *sha, char out[COFFER_MANIFEST_SHA256_HEX]);

/* Writes a manifest at key and publishes it; digest gets its SHA-256. */
int agent_backup_publish(agent_ctx *ctx, const char *key, const char *json, size_t len,
    uint8_t digest[32], coffer_err *err);

/* One backup at a time per service on this host, logical or physical,
 * whoever starts it; the lock dies with the process. */
int agent_backup_lock(const agent_config *cfg, int *fd_out, coffer_err *err);

/* Settles what interrupted backups left (agent/backup/settle.h), assigns
 * the backup its id (into id and res->backup_id), opens its journal entry
 * in j and records backup.started durably; a backup that cannot be
 * recorded is not started, so a later failure can never go unreported.
 * The caller holds the backup lock. */
int agent_backup_record_started(agent_ctx *ctx, const agent_backup_request *req,
    coffer_manifest_kind kind, int64_t started, char id[COFFER_MANIFEST_ID_SIZE],
    agent_backup_result *res, agent_journal *j, coffer_err *err);

/* Closes the journal entry j once the backup's final event (seq, 0 when it
 * was not saved) is in the outbox; with seq 0 the entry stays, and the
 * next start settles the backup. */
void agent_backup_record_end(agent_journal *j, uint64_t seq);

/* Records a failed backup as an event (and in the log); returns its seq. */
uint64_t agent_backup_record_failure(agent_ctx *ctx, const char *id, Coffer__V1__BackupKind kind,
    int64_t started, const char *stage, const coffer_err *why);

/* ctx needs AGENT_NEED_KEYRING | AGENT_NEED_SIGN | AGENT_NEED_REPO_WRITE |
 * AGENT_NEED_OUTBOX. Returns 0 with res filled, or the failure (already
 * recorded as a backup.failed event when a backup id had been assigned). */
int agent_backup_logical(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err);

#endif
