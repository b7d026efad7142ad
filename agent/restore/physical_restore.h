/*
 * Physical restore: a base backup laid out into an empty data directory,
 * every file checked against the manifest's SHA-256 as it is written, the
 * recovery settings written (restore_command = this binary's wal-fetch,
 * recovery_target_time, recovery_target_action = 'promote', and
 * recovery.signal), and with start, PostgreSQL started as the owner of the
 * directory and watched until recovery ends, reporting what it reached.
 *
 * The restored cluster gets archive_mode = off: it has the source's system
 * identifier and would otherwise archive a new timeline into the source's
 * WAL; turn archiving back on once it is meant to replace the source.
 */
#ifndef COFFER_AGENT_RESTORE_PHYSICAL_RESTORE_H
#define COFFER_AGENT_RESTORE_PHYSICAL_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/context/context.h"
#include "agent/pg/child.h"
#include "agent/restore/target.h"
#include "agent/restore/window.h"
#include "common/base/cli.h"
#include "common/crypto/manifest.h"

typedef struct agent_physical_restore_request {
	const char *backup; /* id or "latest" (NULL: chosen by the target) */
	/* Where recovery stops (kind NONE: the end of the archived WAL) and
	 * what the server does there (agent/restore/target.h). */
	agent_target target;
	const char *pgdata;      /* empty; as root: must exist, owned by the database user */
	const char *config_path; /* this agent's config, for restore_command */
	const char *port;        /* NULL: as the backup's configuration says */
	/* "OLD=NEW" or "OID=NEW": the tablespace that was at OLD (or has
	 * that oid) is restored to NEW (absolute; made if missing); the others
	 * go where they were, which must be an empty directory owned by the
	 * data directory's owner. */
	const char *const *tablespace_map;
	size_t n_tablespace_map;
	bool start;
	bool dry_run;         /* choose and plan only: nothing is written */
	bool progress;        /* a progress filter on the plaintext (common/stream/progress.h) */
	agent_cancel *cancel; /* may be NULL */
} agent_physical_restore_request;

typedef struct agent_physical_restore_result {
	char backup_id[COFFER_MANIFEST_ID_SIZE];
	uint64_t files;
	uint64_t bytes;
	bool started;
	char reached_lsn[32];  /* pg_current_wal_lsn() once promoted, the replay LSN paused */
	char reached_time[64]; /* pg_last_xact_replay_timestamp(); "" if none */
	/* With start: whether the target was reached (from the server log's
	 * "recovery stopping ..." line, or the end of WAL without a target),
	 * that line, and the server's state: "promoted", "paused", "stopped". */
	bool reached;
	char stop_line[256];
	const char *state;
	int64_t duration_ms;
	/* The plan (always filled once a backup is chosen). */
	uint64_t stored_bytes; /* the backup object */
	agent_wal_plan wal;
	bool wal_known; /* wal was planned */
	uint64_t seg_size;
	bool seg_size_derived;
	int64_t backup_ms; /* how long the backup took to write: the estimate's basis */
	char note[256];    /* for xid and name targets: PostgreSQL decides */
} agent_physical_restore_result;

/* ctx needs AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO. */
int agent_physical_restore(agent_ctx *ctx, const agent_physical_restore_request *req,
    agent_physical_restore_result *res, coffer_err *err);

/* The unpacking filter alone (tests): writes the archive's entries beneath
 * root_fd (agent/restore/confined.h: no link followed, no existing entry
 * reused), checking each file against m->files in order, as the calling
 * process's user. finish fails unless the end entry came and every
 * manifest file was written. */
coffer_filter *agent_physical_restore_unpack_new(int root_fd, const coffer_manifest *m,
    const char *const *tablespace_map, size_t n_tablespace_map, coffer_err *err);

/* coffer-agent restore --physical ...: called by agent/cmd/cmd_restore.c. */
typedef struct agent_physical_restore_cmd {
	const char *config, *repo, *backup, *pgdata, *port;
	const char *const *tablespace_map;
	size_t n_tablespace_map;
	bool start, dry_run, json;
	agent_target_args target;
} agent_physical_restore_cmd;
int agent_cmd_restore_physical(const agent_physical_restore_cmd *c);

#endif
