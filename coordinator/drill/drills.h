/*
 * Drills: the coordinator's side of restore drills and integrity sweeps.
 *
 * A drill restores one backup into a drill runner's sandbox and checks it
 * (agent/restore/drill.c does the work). Here: when a service's drill is due, which
 * backup and repository it uses, the RunDrill command that carries it to
 * the runner, the intake of the runner's DrillResult, the alerts
 * (drill_failed, drill_overdue) and change events it causes, and the
 * operator's view (drill.run, drill.list, the last drill in status).
 *
 * The integrity sweep checks, without restoring, that a sample of each
 * service's stored backups still has the bytes the catalog recorded: every
 * sampled data object is streamed and its SHA-256 and size compared with
 * stored_sha256 / stored_bytes, and manifest.json with manifest_sha256, in
 * the primary repository and, for backups with a verified DR copy, in DR.
 *
 * What it promises:
 * - One drill at a time per service; a drill row, its command and its
 *   audit row ("backup.drill_started") commit together, and so do a result,
 *   its drill row and its audit row ("backup.drill_completed", with every
 *   check's outcome and the measured times).
 * - Ownership: a drill runner may report only drill results and command
 *   completions, only for services it is enrolled to drill, and only for
 *   drills handed to it; a service agent may not report drill results.
 *   Each is a STATUS_NOT_OWNER refusal, counted and audited by the intake.
 * - Alerts (coordinator/watch/alerts.h): coffer/<service>/drill_failed while the
 *   last finished drill failed; coffer/<service>/drill_overdue while a
 *   drill runs longer than drill.rto + drill.overdue_after without a result
 *   or a due drill has not started within drill.overdue_after, and once
 *   open until that drill has a result or a drill has started since the
 *   due time (a changed schedule or RTO is no recovery);
 *   coffer/<service>/integrity_failed while an object's latest check failed
 *   (its backup pending deletion or not; once retention deleted it, until a
 *   newer backup is checked clean in that repository);
 *   coffer/_coordinator/integrity_overdue when no sweep finished within
 *   twice [integrity] sweep_interval. A passed drill or a clean sweep
 *   enqueues one PagerDuty change event.
 * - Memory: the sweep streams objects through a digest chain (bounded by
 *   the filter buffers), samples at most [integrity] sample backups per
 *   service and repository; listings are bounded by their limit.
 * - Blocking (libpq): the catalog worker thread. Repository reads happen on
 *   the sweeper thread (coord_drills_background) with its own connection;
 *   its audit rows serialise with the catalog thread's on the audit head.
 */
#ifndef COFFER_COORDINATOR_DRILL_DRILLS_H
#define COFFER_COORDINATOR_DRILL_DRILLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "common/wire/wire.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_ALERT_DRILL_FAILED      "drill_failed"
#define COORD_ALERT_DRILL_OVERDUE     "drill_overdue"
#define COORD_ALERT_INTEGRITY_FAILED  "integrity_failed"
#define COORD_ALERT_INTEGRITY_OVERDUE "integrity_overdue"
#define COORD_ALERT_OBJECT_REPLACED   "repository_object_replaced"

/* RunDrill commands handed to one runner in one reply, at most. */
#define COORD_DRILLS_MAX_COMMANDS 4

/* ---- the maintenance tick ---- */

typedef struct coord_drills coord_drills;

/* Tick state: the repositories the sweep reads, opened on first use with
 * the read capability only. cfg is borrowed and must outlive it. Without
 * coord_drills_background, the tick sweeps on the calling thread. */
int coord_drills_new(const coord_config *cfg, coord_drills **out, coffer_err *err);

/* From now on the tick hands sweeps to a thread of their own with its own
 * catalog connection (opened from cfg->catalog on first use), so reading
 * large objects never holds up the caller's thread. key is borrowed. */
int coord_drills_background(coord_drills *d, const coord_audit_key *key, coffer_err *err);

/* A backup completed: asks the background worker to record its object
 * versions now rather than at the next tick (a no-op while the worker runs:
 * a sweep records them between services). Any thread. */
void coord_drills_record_soon(coord_drills *d, int64_t now_ms);

/* Stops a running sweep (between chunks; it stays unfinished) and frees. */
void coord_drills_free(coord_drills *d);

typedef struct coord_drills_stats {
	int started;     /* drills started by their schedule */
	int not_started; /* due, but refused (no backup, no runner) */
	int triggered;   /* alert transitions */
	int resolved;
	int changes;       /* change events enqueued */
	int objects;       /* objects checked by a sweep */
	int corrupt;       /* of which failed */
	int checks_pruned; /* old integrity checks deleted after a sweep */
} coord_drills_stats;

/*
 * One tick at now_ms: starts due drills, runs the integrity sweep when
 * [integrity] sweep_interval has passed since the last one, then
 * evaluates the drill and integrity alerts and change events. A service
 * that fails is logged and skipped. Returns 0, or the last error (at once
 * COFFER_EUNAVAIL when the catalog is lost).
 */
int coord_drills_tick(coord_drills *d, coord_catalog *cat, const coord_audit_key *key,
    int64_t now_ms, coord_drills_stats *st, coffer_err *err);

/*
 * Backup verification (coordinator/drill/verify.c): up to a batch of
 * completed, unverified backups, oldest first, each checked against the
 * repository (manifest digest, signature with the reporting agent's
 * enrolled key, names, stored size) and marked verified or rejected with
 * its audit row ("backup.verified", "backup.rejected"). A backup that
 * cannot be checked now (repository unavailable) stays unverified. *more
 * is true when a full batch made progress. The tick runs it on the
 * verification worker after coord_drills_background, else inline.
 */
int coord_drills_verify(
    coord_drills *d, coord_catalog *cat, const coord_audit_key *key, bool *more, coffer_err *err);

/* The sweep alone, now, whatever the interval (tests, and the tick). */
int coord_drills_sweep(coord_drills *d, coord_catalog *cat, const coord_audit_key *key,
    int64_t now_ms, coord_drills_stats *st, coffer_err *err);

/* ---- starting a drill ---- */

/*
 * Starts a drill of service now: picks the repository and the backup
 * (drill.repository, drill.backup, drill.window), records the drill
 * 'running', queues its RunDrill for the service's drill.runner and
 * audits it, in one transaction. *drill_id gets the new id; info (may be
 * NULL) gets drill_id, service, backup_id, repository, runner.
 * Refusals: COFFER_ENOENT (no such service, no backup to drill, the runner
 * is not enrolled to drill it), COFFER_EINVAL (no drill.runner),
 * COFFER_EEXIST (a drill of the service is still running), each with a
 * hint; or a catalog error.
 */
int coord_drills_start(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *requested_by, int64_t now_ms, int64_t *drill_id, cJSON *info,
    coffer_err *err);

/* Which repository the next drill uses: primary or dr as configured;
 * alternate flips from last ("primary", "dr" or NULL for none yet). */
const char *coord_drills_pick_repo(const coord_drill_policy *p, const char *last);

/*
 * When the next drill is due: the first cron slot of schedule (in tz)
 * strictly after base_ms (the later of the last drill's start and the time
 * the schedule appeared). *due_ms gets it; COFFER_ENOENT if it never fires,
 * COFFER_EINVAL for a bad schedule or zone.
 */
int coord_drills_next_due(
    const char *schedule, const char *tz, int64_t base_ms, int64_t *due_ms, coffer_err *err);

/* ---- intake hooks (coordinator/intake/intake.c, inside the agent's transaction) ---- */

/*
 * Ownership of drill events in one batch from agent (runner: enrolled as a
 * drill runner). Only events with seq > mark are checked (older ones are
 * resends). Sets *status to STATUS_NOT_OWNER with why (one line) on a
 * refusal, else leaves it 0. Returns 0 or a catalog error.
 */
int coord_drills_check_events(coord_catalog *cat, const char *agent, bool runner,
    const Coffer__V1__EventBatch *b, int64_t mark, int *status, char *why, size_t size,
    coffer_err *err);

/* Applies a drill_result or command_done event from agent (checked by
 * coord_drills_check_events) to its drill row and audits it. Other events
 * are ignored. */
int coord_drills_apply(coord_catalog *cat, const coord_audit_key *key, const char *agent,
    const Coffer__V1__Event *ev, coffer_err *err);

/* RunDrill commands waiting for runner, built to ride on a Reply. */
typedef struct coord_drill_commands {
	size_t n;
	Coffer__V1__Command *cmds[COORD_DRILLS_MAX_COMMANDS]; /* heap, see _clear */
} coord_drill_commands;

/* Hands runner's undone drill commands to it (marks them delivered) into
 * out, which must be empty. */
int coord_drills_take_commands(
    coord_catalog *cat, const char *runner, coord_drill_commands *out, coffer_err *err);

/* Frees what take_commands built; out is empty afterwards. */
void coord_drills_commands_clear(coord_drill_commands *out);

/* ---- the operator's view ---- */

/* drill.list: newest first, at most limit (1..1000); service NULL for all.
 * *out (cJSON_Delete) is an array of { id, service, backup_id, repository,
 * status, runner, requested_by, started_at, finished_at, restore_ms,
 * total_ms, rto_ms, within_rto, sandbox, failure_reason, checks }. */
int coord_drills_list(
    coord_catalog *cat, const char *service, int limit, cJSON **out, coffer_err *err);

/* Adds "last_drill" (that object, or null) to status object o. */
int coord_drills_status(coord_catalog *cat, const char *service, cJSON *o, coffer_err *err);

#endif
