/*
 * WAL retention: removes archived WAL that no restore can use any more,
 * and nothing else.
 *
 * What a service's WAL must keep, from its kept physical backups (completed,
 * or pending deletion, which may still be cancelled; a legal hold keeps a
 * backup, so it keeps its WAL):
 * - the anchor: the newest kept physical backup that finished at or before
 *   now - pitr.window (the oldest kept one if none did): every segment from
 *   its start onwards, so that any moment of the window can be recovered;
 * - every older kept physical backup: the segments from its start to its
 *   stop, so that it can still be restored to its own end (consistency).
 * A segment outside all of these, and archived before now - pitr.window,
 * is deleted from the repository and its wal_segments row marked deleted;
 * a service without a completed physical backup keeps everything (its
 * first base backup may be running). Deletion outcomes are those of backup
 * retention (coord_prune_classify): what could not be deleted stays live
 * and is retried by the next pass. One audit row "wal.pruned" per service
 * and pass names the count, the first and last segment and the anchor.
 *
 * Segment numbers come from coord_walwatch's numbering, so an LSN maps to
 * the segment that holds it.
 *
 * Blocking (libpq, repository I/O); lane 0, after the backup retention
 * pass. Memory: one service's kept physical backups and one batch of
 * segment names (COORD_WALPRUNE_BATCH) at a time.
 */
#ifndef COFFER_COORDINATOR_WAL_WALPRUNE_H
#define COFFER_COORDINATOR_WAL_WALPRUNE_H

#include <stdint.h>

#include "common/base/error.h"
#include "common/repo/repo.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_WALPRUNE_BATCH 1000

typedef struct coord_walprune_stats {
	int services;    /* evaluated */
	int64_t deleted; /* segments removed (or found gone) and marked deleted */
	int64_t failed;  /* deletions refused or failed: retried next pass */
	int errors;      /* services that could not be evaluated */
	int64_t purged;  /* rows of pruned segments dropped from the catalog */
} coord_walprune_stats;

/* One pass over every configured service at now_ms, deleting through repo
 * (the primary repository, opened with delete rights). stats may be NULL.
 * Returns 0, the last error met, or at once COFFER_EUNAVAIL. */
int coord_walprune_pass(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    coffer_repo *repo, int64_t now_ms, coord_walprune_stats *stats, coffer_err *err);

/* The segment number of LSN text "X/Y" with per_log segments per 4 GiB
 * log; -1 if it does not parse. */
int64_t coord_walprune_lsn_segno(const char *lsn, int64_t per_log);

#endif
