/*
 * The drill runner: one restore drill of another service's logical backup
 * into a sandbox PostgreSQL server, with its checks (docs/DRILLS.md).
 *
 * Order, each a named check:
 * - verify: the manifest's signature (with [drill.<service>] verify_key,
 *   the service agent's public key), then, while the dump is materialised,
 *   every chunk's authentication and the digests (agent/restore/stored.h);
 * - restore: a fresh database coffer_drill_<service>_<drill id> created on
 *   the sandbox server and pg_restore'd into;
 * - row_counts: every table's rows equal the manifest's;
 * - schema_version: when the service's agent has [backup] schema_query,
 *   that query run on the sandbox returns what the manifest recorded;
 * - freshness: the policy's query returns the newest row's time, which
 *   must be at most freshness_max_lag before the backup finished;
 * - assertion:<n>: each query returns true;
 * - rto: the restore (fetch, verify, pg_restore, counts) took no longer
 *   than the objective.
 * A check that fails stops the ones after it (reported as not run), except
 * that the SQL checks and rto all run once the restore succeeded.
 *
 * Refused before anything is created ("restore" fails, nothing touched):
 * a sandbox server whose system identifier is any production cluster's
 * (production_system_ids, and the backup's own cluster); a sandbox database
 * that already exists. The sandbox is dropped after a pass, and after a
 * failure unless !drop_on_failure; a kept one is dropped by the sweep once
 * [drill] keep_sandbox_for has passed (its expiry is a COMMENT on the
 * database, so it survives the runner).
 *
 * Least privilege: the runner's [drill] sandbox role (CREATEDB and
 * CREATEROLE) only creates, marks and drops. The service's own role,
 * coffer_drill_<service> (no superuser, CREATEDB, CREATEROLE, replication
 * or BYPASSRLS, a member of no role), owns the sandbox database, which no
 * other role may connect to; pg_restore and the row counts run as it, and
 * so do the service-supplied queries (schema, freshness, assertions): each
 * one statement (extended protocol) in its own BEGIN READ ONLY ... ROLLBACK
 * on a session whose transactions default to read only. A query that
 * writes fails its check with "tried to write" and PostgreSQL's message.
 * The role logs in with a random password held only in memory (a passfile
 * for pg_restore) and is set NOLOGIN PASSWORD NULL after the drill. A
 * separate login rather than SET ROLE on the admin's session: one
 * statement "RESET ROLE" would give the admin's rights back to the rest of
 * the drill's queries.
 *
 * Blocking (libpq, child processes, repository reads): run it off the
 * event loop. Memory: the restore's (agent/restore/restore.h), plus the checks'
 * texts.
 */
#ifndef COFFER_AGENT_RESTORE_DRILL_H
#define COFFER_AGENT_RESTORE_DRILL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/context/agent_config.h"
#include "agent/pg/child.h"
#include "common/base/error.h"

#define AGENT_DRILL_MAX_CHECKS  16
#define AGENT_DRILL_MAX_ASSERTS 9
#define AGENT_DRILL_DETAIL_MAX  512

/* coffer_drill_<service>: the role a service's drills run as. */
#define AGENT_DRILL_ROLE_PREFIX "coffer_drill_"

/* A new sandbox's first expiry is at least this far off, so a sweep by
 * another drill never drops one that is still being restored or checked. */
#define AGENT_DRILL_KEEP_FLOOR_MS (24LL * 60 * 60 * 1000)

typedef struct agent_drill_request {
	uint64_t drill_id;
	const char *service;
	const char *backup;          /* id or "latest" */
	const char *repository;      /* "primary" or "dr" */
	int64_t rto_ms;              /* 0: no rto check */
	const char *freshness_query; /* NULL or "": none */
	int64_t freshness_max_lag_ms;
	const char *asserts[AGENT_DRILL_MAX_ASSERTS];
	size_t n_asserts;
	bool drop_on_failure;
	const char *const *production_system_ids;
	size_t n_production;
	agent_cancel *cancel; /* may be NULL */
} agent_drill_request;

typedef struct agent_drill_check {
	char name[32];
	bool ok;
	char detail[AGENT_DRILL_DETAIL_MAX];
} agent_drill_check;

typedef struct agent_drill_result {
	bool ok;
	char backup_id[32];
	char sandbox[128]; /* the database, "" if none was created */
	bool sandbox_kept;
	int64_t restore_ms;
	int64_t total_ms;
	int64_t backup_finished_at_ms;
	agent_drill_check checks[AGENT_DRILL_MAX_CHECKS];
	size_t n_checks;
	char failure[AGENT_DRILL_DETAIL_MAX]; /* the first failed check and why */
} agent_drill_result;

/*
 * Runs one drill with a drill runner's configuration. Returns 0 when the
 * drill ran to a verdict (res->ok says which); an error only when it could
 * not be judged at all (COFFER_EINVAL: the runner is not configured for
 * the service, with the fix; COFFER_ECANCELED). Either way res says what
 * happened as far as it got.
 */
int agent_drill_run(const agent_config *cfg, const agent_drill_request *req,
    agent_drill_result *res, coffer_err *err);

/*
 * Drops every sandbox database (coffer_drill_*) on the sandbox server whose
 * recorded expiry has passed, and gives one without an expiry (kept before
 * expiries were recorded) keep_sandbox_for from now. Run at the start of
 * every drill and when the runner daemon starts. *dropped (may be NULL)
 * counts the drops; an error only when the server cannot be asked.
 */
int agent_drill_sweep(const agent_config *cfg, size_t *dropped, coffer_err *err);

#endif
