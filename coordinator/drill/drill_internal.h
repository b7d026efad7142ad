/*
 * What the files of the drill folder share (drills.c: scheduling, results,
 * alerts and the tick; integrity.c: the integrity sweep): the scheduler's
 * state and the helpers both call. Included by coordinator/drill/ only;
 * everyone else uses coordinator/drill/drills.h.
 */
#ifndef COFFER_COORDINATOR_DRILL_DRILL_INTERNAL_H
#define COFFER_COORDINATOR_DRILL_DRILL_INTERNAL_H

#include "coordinator/drill/drills.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/repo/repo.h"
#include "coordinator/catalog/worker.h"

struct coord_drills {
	const coord_config *cfg;
	coffer_repo *repo[2]; /* primary, dr: opened on first use (the sweeping thread) */
	bool tried[2];
	atomic_bool stop; /* ends a sweep between reads of a chunk */
	/* Background sweeps (coord_drills_background): their own thread and
	 * catalog connection, so reading a large object never holds up the
	 * catalog thread and with it every agent's request. */
	const coord_audit_key *key;
	coord_worker *worker; /* NULL: the tick sweeps on its own thread */
	/* Backup verification (verify.c): repository handles of its own (it
	 * runs on its own thread) and its worker; NULL: the tick verifies. */
	coffer_repo *vrepo[2];
	coord_worker *vworker;
};

/* Sets or clears one alert from a tick (details: consumed), counting a
 * change in st. */
int drill_set_alert(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *check, bool active, const char *severity, const char *summary,
    cJSON *details, int64_t now_ms, coord_drills_stats *st, coffer_err *err);

/* integrity.c, for the tick: whether a sweep is due, and the sweep's
 * alerts (integrity_failed per service, integrity_overdue and the clean
 * sweep's change event coordinator-wide). */
int integrity_sweep_due(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, bool *due, coffer_err *err);
int integrity_eval_failed(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_service_policy *p, int64_t now_ms, coord_drills_stats *st, coffer_err *err);
int integrity_eval_replaced(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_service_policy *p, int64_t now_ms, coord_drills_stats *st, coffer_err *err);
/* Records the primary repository's version of each object of completed
 * backups not recorded yet (a bounded batch per call). */
int integrity_record_versions(coord_drills *d, coord_catalog *cat, const coord_audit_key *key,
    int64_t now_ms, coffer_err *err);
int integrity_eval_sweep(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    int64_t now_ms, bool can_sweep, coord_drills_stats *st, coffer_err *err);

/* verify.c: starts the verification worker (coord_drills_background). */
int drill_verify_start(coord_drills *d, coffer_err *err);

#endif
