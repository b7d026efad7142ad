/*
 * Prune: the catalog side of retention. coordinator/policy/retention.h decides;
 * this module records what it decided and carries it out, safely:
 *
 * - coord_policy_sync keeps `services` in step with the [service.*]
 *   sections, auditing every policy change with the old and new digest, so
 *   each later decision can be traced to the exact policy that made it.
 * - coord_retention_pass evaluates each configured service from the catalog
 *   and moves backups through pending_delete (audited with the policy
 *   version and the reasons) to deleted (repository objects removed, the
 *   row kept as a tombstone, audited again). A pending backup that the
 *   policy keeps again returns to its earlier status, audited.
 * - coord_retention_plan shows what the pass would do, changing nothing.
 * - coord_hold_add/remove/list manage legal holds, which override
 *   everything.
 *
 * Promises:
 * - Nothing is deleted because a service left the configuration: its
 *   backups stay, and the removal is audited once.
 * - Before each deletion, inside the transaction that tombstones it and
 *   with the backup's row locked (SELECT ... FOR UPDATE), the pass checks
 *   again that the backup is still pending with its grace over, holds no
 *   active hold, and is not the newest restorable backup of its service
 *   (a newer restorable completed backup must exist). A catalog that says
 *   otherwise is refused, audited, and counted, never obeyed. A backup
 *   whose DR copy is still due (coordinator/dr/drcopy.h) waits, unaudited,
 *   until the copy is verified or fails for good: the copy reads from it.
 * - manifest.json goes first, so an interrupted deletion never leaves
 *   something that looks like a complete backup; then the remaining
 *   objects. Outcomes are distinct: "deleted"; "gone" (nothing was there:
 *   tombstoned all the same); "denied" (permission refused), "locked"
 *   (object lock) and "error" (anything else) stay pending, are audited
 *   and counted, and are retried by the next pass.
 * - Times written to the catalog (pending_since, delete_after, deleted_at)
 *   come from now_ms, the caller's clock; backups are bucketed by the
 *   coordinator-stamped settled_at (when the coordinator recorded the
 *   outcome), never by agent clocks.
 *
 * Thread: blocking (libpq, repository I/O). Run on the catalog worker, one
 * thread per coord_catalog. Memory: one service's live backups at a time
 * (at most COORD_PRUNE_MAX_BACKUPS rows, refused beyond).
 */
#ifndef COFFER_COORDINATOR_POLICY_PRUNE_H
#define COFFER_COORDINATOR_POLICY_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/base/error.h"
#include "common/repo/repo.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

/* The most live (not deleted) backups one service may have for a pass;
 * beyond it the service is refused rather than evaluated on a partial view. */
#define COORD_PRUNE_MAX_BACKUPS 200000

/* The longest hold reason, in bytes. */
#define COORD_HOLD_REASON_MAX 1024

/* The actor named in audit rows written by the pass itself. */
#define COORD_PRUNE_ACTOR "coordinator"

typedef struct coord_prune_stats {
	size_t services;       /* services evaluated */
	size_t backups;        /* live backups evaluated */
	size_t kept;           /* kept by the rule (including cancelled) */
	size_t marked;         /* became pending this pass */
	size_t cancelled;      /* were pending, kept again: back to their status */
	size_t pending;        /* pending, grace not over */
	size_t deleted;        /* objects removed, tombstoned */
	size_t gone;           /* no object was left: tombstoned as gone */
	size_t failed;         /* deletions that did not happen: the sum of the next four */
	size_t denied;         /* permission refused */
	size_t locked;         /* object lock */
	size_t errors;         /* other repository errors */
	size_t refused;        /* the re-check refused (held, newest restorable, ...) */
	size_t service_errors; /* services that could not be evaluated */
	size_t orphans;        /* orphan backup directories reclaimed */
	size_t orphan_objects; /* their objects removed */
	uint64_t orphan_bytes; /* their bytes */
} coord_prune_stats;

typedef enum coord_prune_outcome {
	COORD_PRUNE_DELETED = 0,
	COORD_PRUNE_GONE = 1,
	COORD_PRUNE_DENIED = 2,
	COORD_PRUNE_LOCKED = 3,
	COORD_PRUNE_ERROR = 4,
} coord_prune_outcome;

/* How a repository delete that returned rc (with e filled) ended: 0 is
 * DELETED, COFFER_ENOENT is GONE, COFFER_EPERM is LOCKED when the store's
 * message speaks of an object lock ("object lock", "locked", "WORM",
 * "protected": S3 answers AccessDenied for a locked version), else DENIED;
 * anything else is ERROR. */
coord_prune_outcome coord_prune_classify(int rc, const coffer_err *e);

/* "deleted", "gone", "denied", "locked", "error". */
const char *coord_prune_outcome_name(coord_prune_outcome o);

/*
 * For every [service.*] in cfg: creates or updates its `services` row
 * (owner, policy digest). When the stored digest differs from the
 * configuration's (or there was none), bumps services.policy_version (the
 * policy serial stored with each deletion decision) and appends
 * "policy.changed" (details: old and new digest, serial, canonical policy
 * text) in the same transaction. A service in the catalog that has a
 * policy but no longer a section is audited "policy.removed" once
 * (services.removed_at) and keeps its backups. actor names who caused the
 * sync in audit rows ("coordinator", or an operator). Returns 0 or the
 * first error (nothing of that service is committed).
 */
int coord_policy_sync(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const coord_config *cfg, coffer_err *err);

/*
 * One retention pass at now_ms over every configured service (after a
 * coord_policy_sync, so decisions never use a stale policy). repo is the
 * primary repository, opened with COFFER_REPO_DELETE; backups recorded in
 * another repository are never deleted through it (counted as errors).
 * out (may be NULL) is filled even on failure. A service that cannot be
 * evaluated (bad time zone, bad time in the catalog, too many backups) is
 * counted in service_errors and skipped; the others go on. Returns 0, or
 * the last error met (err filled), or at once COFFER_EUNAVAIL when the
 * catalog connection is lost. Deletion failures are not errors of the
 * pass: they are counted and audited.
 */
int coord_retention_pass(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    coffer_repo *repo, int64_t now_ms, coord_prune_stats *out, coffer_err *err);

/*
 * What the pass would do at now_ms for service, and why, without changing
 * anything. *out (the caller frees it with cJSON_Delete) is
 *   { "service", "now", "policy_version" (digest), "policy_serial",
 *     "policy_synced" (the catalog has this digest),
 *     "backups": [ { "id", "status", "settled_at", "held", "restorable",
 *                    "action", "reasons": [..], "expires_at" (time,
 *                    "never" or null), "delete_at" (time or null),
 *                    "pending_since" (time or null), "why" ("obsolete" or
 *                    "failed", for expire_now only) } ... ] }
 * newest first. action is coord_retention_action_name's word, or
 * "cancel_pending" for a pending backup the rule keeps again; reasons are
 * coord_retention_reason_name's words. COFFER_ENOENT when cfg has no such
 * service.
 */
int coord_retention_plan(coord_catalog *cat, const coord_config *cfg, const char *service,
    int64_t now_ms, cJSON **out, coffer_err *err);

/*
 * Places a legal hold on backup_id for reason (1..COORD_HOLD_REASON_MAX
 * bytes, not only blanks), audited "hold.added" in the same transaction.
 * COFFER_ENOENT: no such backup; COFFER_EREFUSED: it was already deleted;
 * COFFER_EEXIST: it already has an active hold; COFFER_EINVAL: bad reason.
 * The backup's row is locked while the hold is placed, so it can never
 * slip between a deletion's re-check and its tombstone.
 */
int coord_hold_add(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *backup_id, const char *reason, coffer_err *err);

/* Releases the active hold on backup_id, audited "hold.removed".
 * COFFER_ENOENT when there is no such backup or it has no active hold. The
 * backup then goes through pending again, a full grace period. */
int coord_hold_remove(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *backup_id, coffer_err *err);

/* The active holds, oldest first, of service (NULL: every service), at
 * most limit (1..10000) of them: *out is a JSON array of { "backup_id",
 * "service", "reason", "placed_by", "placed_at" } for cJSON_Delete. */
int coord_holds_list(
    coord_catalog *cat, const char *service, int limit, cJSON **out, coffer_err *err);

#endif
