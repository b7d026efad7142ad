/*
 * Rebuild: the catalog's backups recovered from a repository alone (the DR
 * repository when production is gone), trusting nothing the repository
 * says without proof.
 *
 * For every services/<service>/backups/<id>/manifest.json it finds, a
 * backup is recorded only if all of this holds, in order:
 * - <id>/attestation.json exists and its HMAC verifies under the audit key
 *   (coordinator/dr/attest.h), for this service and this id;
 * - manifest.json hashes to the attested manifest_sha256, and its Ed25519
 *   signature verifies with the attested agent key; its service, id and
 *   agent are the attested ones;
 * - data streams to the manifest's stored_sha256 and stored_bytes.
 * Anything else is refused: named on the report with the reason, audited
 * (catalog.rebuild_refused), and not recorded. A backup already in the
 * catalog is left alone, so a rebuild can run again.
 *
 * Recorded: the service (from the configuration, through policy sync), the
 * agent (its attested key, if the catalog does not know it), the backup as
 * completed in the repository it was found in (so retention never deletes
 * it through the other one) and, from DR, a verified DR copy row; each with
 * a backup.rebuilt audit row, and one catalog.rebuilt row for the run.
 *
 * Memory: one manifest at a time (at most its format's 64 MiB) and the
 * listing's page; data is streamed. Blocking; run from the command line.
 */
#ifndef COFFER_COORDINATOR_DR_REBUILD_H
#define COFFER_COORDINATOR_DR_REBUILD_H

#include <stdio.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

typedef struct coord_rebuild_stats {
	int recovered; /* recorded by this run */
	int present;   /* already in the catalog */
	int refused;
	int revoked; /* agents revoked again from a revocation record */
} coord_rebuild_stats;

/* Rebuilds from [repository.<repo>] ("primary" or "dr"). report (may be
 * NULL) gets one JSON object per backup found: {"backup_id", "service",
 * "result": "recovered"|"present"|"refused", "problem"}. Returns 0 when
 * the run completed (refusals included: see st), or the error that
 * stopped it (catalog, repository unreachable). */
int coord_rebuild(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *repo, cJSON *report, coord_rebuild_stats *st, coffer_err *err);

#endif
