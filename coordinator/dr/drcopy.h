/*
 * DR copy: the coordinator copies each service's chosen backups, exactly as
 * stored (ciphertext: it never holds a service key), into the DR
 * repository, an object-locked S3 bucket in another account, and proves
 * every copy by reading it back.
 *
 * Which backups (the service's dr.copy): `all` completed backups, or the
 * holders of a tier and of every longer tier (`weekly`: weekly, monthly and
 * yearly holders), as coordinator/policy/retention.h decides them. A copy becomes
 * due when the policy first wants it: a 'copying' row in backup_copies,
 * with its lock mode (dr.lock) and retain-until fixed then:
 * finished_at + dr.retention when set, otherwise the backup's tier expiry
 * (a `forever` tier: 100 years), otherwise (`all`, held by no tier) now +
 * retention.grace. A backup whose retain-until would already be past is
 * not copied.
 *
 * A copy, on the copier's own thread and catalog connection:
 * - data, then manifest.json, then the coordinator's attestation
 *   (coordinator/dr/attest.h), each streamed from the primary repository into
 *   an upload that carries the object lock (mode and retain-until);
 * - data's SHA-256 and size are checked against the catalog while it
 *   streams, and manifest.json's against manifest_sha256 when recorded; a
 *   mismatch aborts the upload, so nothing unproven is published;
 * - then each object is read back from DR, hashed, and its lock checked
 *   (mode, retain-until no earlier than asked); only then is the copy
 *   'verified', with the bytes and object versions, in one transaction
 *   with its audit row (dr.copy_verified);
 * - a failure is 'failed' with the reason, audited (dr.copy_failed), and
 *   retried after 1 minute, doubling up to [dr] retry_max; an object
 *   already in DR (a retry after a crash) is verified, not rewritten.
 * The same pass writes attestations into the primary repository for
 * completed backups that have none yet (backups.attested_at), so
 * rebuild-catalog can trust either repository, and, every [dr]
 * audit_export_interval, exports the audit chain's head to DR
 * (coordinator/dr/auditexport.h).
 *
 * Refused at start (coord_drcopy_new, so `run` does not start): a service
 * with dr.copy but no [repository.dr]; a [repository.dr] that is not s3
 * (a directory cannot lock); a DR bucket without object lock, or whose lock
 * configuration the credentials may not read.
 *
 * Alerts (coordinator/watch/alerts.h), per service: dr_copy_failed while a
 * backup has a failed copy; dr_copy_lag while a due copy of one is older
 * than [dr] copy_lag. Retention deleting the backup repairs nothing: a
 * page resolves once the copy is verified, or, for a backup retention has
 * since deleted, once DR holds a verified copy of a newer backup of the
 * service (coord_drcopy_alerts).
 *
 * Memory: one upload part (8 MiB) and the filter buffers per copy; at
 * most [dr] copies_per_pass rows per pass. Threads: coord_drcopy_tick on
 * the catalog thread (catalog only); copies on the copier thread.
 */
#ifndef COFFER_COORDINATOR_DR_DRCOPY_H
#define COFFER_COORDINATOR_DR_DRCOPY_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_ALERT_DR_COPY_FAILED "dr_copy_failed"
#define COORD_ALERT_DR_COPY_LAG    "dr_copy_lag"

typedef struct coord_drcopy coord_drcopy;

typedef struct coord_drcopy_stats {
	int planned;         /* copies that became due */
	int verified;        /* copies verified */
	int failed;          /* copy attempts that failed */
	int attested;        /* attestations written into the primary repository */
	int revocations;     /* revocations written into the repositories */
	int wal_copied;      /* WAL segments verified in DR (point-in-time recovery) */
	int escrowed;        /* escrowed keys copied into DR and recorded */
	bool audit_exported; /* the audit head went to DR */
	int triggered;       /* alert transitions */
	int resolved;
} coord_drcopy_stats;

/*
 * Opens what the copier needs and refuses a DR target it cannot trust
 * (above). *out stays NULL, and 0 is returned, when there is nothing to do
 * (no [repository.primary]). cfg and key are borrowed.
 */
int coord_drcopy_new(
    const coord_config *cfg, const coord_audit_key *key, coord_drcopy **out, coffer_err *err);

/* Starts the copier thread (its own catalog connection, from cfg). */
int coord_drcopy_background(coord_drcopy *d, coffer_err *err);

/* Stops the copier (a copy in flight is abandoned between reads, its
 * upload aborted) and frees. NULL is fine. */
/* At shutdown: stops the copier and exports the audit chain's head to DR
 * once more, on a connection of its own (catalog), so the outside anchor
 * is as new as the last row the coordinator wrote. 0 without DR. */
int coord_drcopy_export_final(coord_drcopy *d, const char *catalog, coffer_err *err);

void coord_drcopy_free(coord_drcopy *d);

/* Whether the copier found the audit chain rewritten below a head it had
 * exported (or DR's newest head not holding); buf gets the problem. It
 * stays set until the coordinator restarts, and no newer head is exported
 * meanwhile. Any thread. */
bool coord_drcopy_audit_problem(coord_drcopy *d, char *buf, size_t size);

/* Whether the copier can vouch for the chain's end: it has no DR repository
 * (nothing exported to check), or it has checked DR's newest exported head
 * since the process started. Until then a chain that verifies may still be
 * one cut short, and audit_chain_broken must not resolve on it. Any
 * thread. */
bool coord_drcopy_audit_checked(coord_drcopy *d);

/* The maintenance tick: plans due copies, evaluates the two alerts, and
 * wakes the copier. Catalog only. */
int coord_drcopy_tick(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/*
 * The two alerts of service at now_ms, from the catalog alone (the tick
 * evaluates them for every service that copies): dr_copy_failed while a
 * copy of one of its backups failed, dr_copy_lag while one is not verified
 * within [dr] copy_lag (or WAL inside the PITR window is not copied). A
 * copy whose backup retention has since deleted keeps counting until DR
 * holds a verified copy of a newer backup of the service: deleting what
 * could not be copied is no recovery. st (may be NULL) counts transitions.
 */
int coord_drcopy_alerts(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/* One pass of the copier now on the calling thread: attestations, then at
 * most [dr] copies_per_pass due copies. */
int coord_drcopy_pass(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err);

/* For `coffer status` and the status page: adds "dr" to svc (a service's
 * object): { "copy": dr.copy, "verified", "pending", "failed" (counts),
 *   "pending_bytes" (stored bytes of the copies not yet verified),
 *   "last_verified_at", "oldest_pending_since" (RFC 3339 or null),
 *   "last_failure" (text or null), "oldest_pending_backup" (id or null) }. */
int coord_drcopy_status(
    coord_catalog *cat, const coord_config *cfg, const char *service, cJSON *svc, coffer_err *err);

#endif
