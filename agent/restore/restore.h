/*
 * Restoring a logical backup into a database: verify while materialising
 * the dump in a temporary file (only authenticated, digest-checked bytes
 * are ever handed to pg_restore), create the target, run pg_restore -j N,
 * then compare every table's row count with the manifest. A difference is a
 * failed restore, not a warning: a backup that does not restore to what was
 * backed up is a failure.
 */
#ifndef COFFER_AGENT_RESTORE_RESTORE_H
#define COFFER_AGENT_RESTORE_RESTORE_H

#include <stdbool.h>
#include <stdint.h>

#include "agent/context/context.h"
#include "agent/pg/child.h"

typedef struct agent_restore_request {
	const char *backup; /* id or "latest" */
	const char *target_db;
	const char *target_conninfo; /* server to restore to; NULL: the service's own */
	/* Who pg_restore and the row counts connect as (its database replaced by
	 * target_db); NULL: target_conninfo. A drill restores as the service's
	 * own unprivileged role while its admin role creates the database. */
	const char *restore_conninfo;
	/* Creates target_db when it does not exist, once the dump is verified
	 * (NULL: CREATE DATABASE on target_conninfo). */
	int (*create_target)(void *arg, coffer_err *err);
	void *create_target_arg;
	int jobs;   /* pg_restore -j */
	bool force; /* replace a target database that has tables */
	bool progress;
	agent_cancel *cancel;
} agent_restore_request;

/* How far a restore got: the step that failed, or AGENT_RESTORE_DONE. */
typedef enum agent_restore_stage {
	AGENT_RESTORE_MANIFEST = 0, /* finding and authenticating the manifest */
	AGENT_RESTORE_VERIFY,       /* reading and checking the stored data */
	AGENT_RESTORE_TARGET,       /* the target database */
	AGENT_RESTORE_PG_RESTORE,
	AGENT_RESTORE_ROW_COUNTS,
	AGENT_RESTORE_DONE,
} agent_restore_stage;

typedef struct agent_restore_result {
	agent_restore_stage stage;
	char backup_id[32];
	int64_t duration_ms;
	int64_t restore_ms; /* pg_restore alone */
	size_t tables;
	uint64_t rows;
} agent_restore_result;

/* ctx needs AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO, and
 * AGENT_NEED_OUTBOX to record the outcome as an event. */
int agent_restore_logical(
    agent_ctx *ctx, const agent_restore_request *req, agent_restore_result *res, coffer_err *err);

/* conninfo with its database replaced by dbname (a new string to free). */
char *agent_conninfo_with_db(const char *conninfo, const char *dbname, coffer_err *err);

#endif
