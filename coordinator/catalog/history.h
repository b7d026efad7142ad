/*
 * History: keeps the two tables that grow with every request bounded.
 * `events` (one row per durable event an agent reported) and `refusals`
 * (counters per reason and claimed name) are pruned on the maintenance
 * pass: rows older than [coordinator] events_keep (received_at) and
 * refusals_keep (last_at) go, in batches, at most COORD_HISTORY_MAX_BATCHES
 * batches a pass so a backlog never holds the maintenance lane for long;
 * the rest goes on the next passes. Schedule and reasons: docs/CATALOG.md,
 * "Pruning".
 *
 * What it promises: nothing any check or metric reads is pruned (they read
 * agents' high-water marks, `backups` and the audit log, never old events);
 * every pass that removed rows is ONE audit row ("catalog.pruned") with the
 * counts and cut-offs, in the transaction of its last batch.
 * Blocking (libpq); thread rules of coordinator/catalog/catalog.h.
 */
#ifndef COFFER_COORDINATOR_CATALOG_HISTORY_H
#define COFFER_COORDINATOR_CATALOG_HISTORY_H

#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"

#define COORD_HISTORY_BATCH       5000
#define COORD_HISTORY_MAX_BATCHES 20

typedef struct coord_history_stats {
	uint64_t events;   /* rows removed from events */
	uint64_t refusals; /* rows removed from refusals */
	bool more;         /* events older than the cut-off remain */
} coord_history_stats;

/* One pass at time now (Unix ms). */
int coord_history_prune(coord_catalog *cat, const coord_audit_key *key, int64_t events_keep_ms,
    int64_t refusals_keep_ms, int64_t now, coord_history_stats *st, coffer_err *err);

#endif
