/*
 * Settling interrupted backups: a small durable journal of the backups this
 * agent began, and the reconciliation that turns every entry its owner did
 * not finish into the event it never sent.
 *
 * The journal is one file per backup in <state_dir>/backups-begun/, written
 * before the backup.started event and before the first byte goes to the
 * repository, rewritten at each stage, and removed only once the backup's
 * final event (completed or failed) is durably in the outbox. So a kill -9
 * at any instant, of the daemon or of a manual `coffer-agent backup`, or an
 * outbox with no room for the final event, leaves an entry behind.
 *
 * agent_backup_settle runs with the service's backup lock held (at daemon
 * start and before every new backup), so no live backup's entry is ever
 * touched: the lock dies with its owner, and an entry whose owner holds the
 * lock cannot be seen by anyone who holds it too. For each entry:
 * - manifest.json is published, its signature verifies with this agent's
 *   key, and the data object's size and SHA-256 are the manifest's: the
 *   backup is good, and backup.completed is emitted from the manifest;
 * - anything else: backup.failed with the stage it reached and the reason,
 *   and the backup's temporaries are removed (its published but orphaned
 *   data object, if any, is the coordinator's retention's to reclaim: the
 *   agent has no delete right, docs/RETENTION.md).
 * Then the service's temporaries older than its completion window plus an
 * hour are removed (a live WAL push's temporary is seconds old; no backup
 * of this service runs while the lock is held).
 *
 * Blocking (fsync, repository reads, hashing a data object). Memory: one
 * manifest at a time.
 */
#ifndef COFFER_AGENT_BACKUP_SETTLE_H
#define COFFER_AGENT_BACKUP_SETTLE_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/context/context.h"
#include "common/crypto/manifest.h"

/* The journal's directory under state_dir. */
#define AGENT_JOURNAL_DIR "backups-begun"

/* How much older than its completion window a temporary must be before the
 * agent treats it as abandoned. */
#define AGENT_TEMP_STALE_EXTRA_MS (60LL * 60 * 1000)

typedef struct agent_journal {
	const agent_config *cfg;
	char id[COFFER_MANIFEST_ID_SIZE];
	coffer_manifest_kind kind;
	int64_t started_ms;
	char stage[16];
	bool open; /* an entry is on disk */
} agent_journal;

/* Records backup id as begun at stage, durably. The backup must not start
 * if this fails. */
int agent_journal_begin(agent_journal *j, const agent_config *cfg, const char *id,
    coffer_manifest_kind kind, int64_t started_ms, const char *stage, coffer_err *err);

/* Records the stage the backup reached (durably; a failure is logged, and
 * the entry keeps its last stage). Returns stage, so that a caller can
 * write `stage = agent_journal_stage(&j, "dump")`. */
const char *agent_journal_stage(agent_journal *j, const char *stage);

/* Removes the entry: call only once the final event is in the outbox. */
void agent_journal_end(agent_journal *j);

typedef struct agent_settle_stats {
	int completed;  /* entries settled as completed */
	int failed;     /* entries settled as failed */
	int unsettled;  /* entries kept (the event could not be saved) */
	uint64_t temps; /* temporaries removed */
	uint64_t bytes; /* their bytes */
} agent_settle_stats;

/* Settles every journal entry, then removes stale temporaries. The caller
 * holds the backup lock (agent_backup_lock). ctx needs AGENT_NEED_SIGN,
 * AGENT_NEED_REPO_WRITE and AGENT_NEED_OUTBOX. Returns 0 or the first
 * error (the other entries are still tried); st may be NULL. */
int agent_backup_settle(agent_ctx *ctx, agent_settle_stats *st, coffer_err *err);

/* Takes the backup lock, settles, releases it. Nothing to do (0) when
 * another backup of the service holds the lock: it settles before it
 * starts. */
int agent_backup_settle_now(agent_ctx *ctx, agent_settle_stats *st, coffer_err *err);

#endif
