/*
 * WAL watch: continuity and archiving health of every service's WAL, the
 * half of point-in-time recovery that fails silently when nobody looks.
 *
 * What it promises, on each maintenance tick, per configured service:
 * - wal_gap (critical): a segment missing between two archived segments of
 *   one timeline in `wal_segments`: no row at all (segments WAL retention
 *   removed keep their rows, marked deleted, and are not gaps).
 *   Recovery cannot cross a gap, so every point after it is lost until the
 *   next base backup. The summary names the timeline, the last segment
 *   before the gap, the first after it and how many are missing.
 * - wal_archive_failing (critical): the agent's newest heartbeat says
 *   PostgreSQL's archiver failed more recently than it succeeded
 *   (pg_stat_archiver, agent/report/archiver.h): archive_command is failing and
 *   pg_wal is growing.
 * - wal_archive_lag (critical): segments waiting to be archived
 *   (the .ready files in archive_status, or the distance from the last archived segment
 *   to the one being written) reach [alerts] wal_lag_segments (default 16).
 * Each is raised and resolved through coord_alerts_set, so it pages once,
 * resolves once, and is audited like every alert. A heartbeat older than
 * [alerts] agent_quiet is not trusted either way: it raises neither
 * archiver page, and while any reporting agent's heartbeat is that old
 * neither is resolved (agent_quiet pages for the silence); they resolve on
 * fresh heartbeats that say the archiver works and keeps up.
 *
 * Numbering segments: a segment name is timeline, "log" and segment within
 * the log; how many segments make a log (4 GiB) depends on the cluster's
 * wal_segment_size, which the agent reports in its heartbeat (16 MiB, 256
 * per log, PostgreSQL's default, until one has).
 *
 * Blocking (libpq); runs on the coordinator's lane 0 (maintenance tick).
 */
#ifndef COFFER_COORDINATOR_WAL_WALWATCH_H
#define COFFER_COORDINATOR_WAL_WALWATCH_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_ALERT_WAL_GAP "wal_gap"
/* An agent reported a WAL file whose key was taken by an object that is not
 * its cluster's authentic file, within [alerts] refusal_window. */
#define COORD_ALERT_WAL_CONFLICT "wal_object_conflict"
#define COORD_ALERT_WAL_FAILING  "wal_archive_failing"
#define COORD_ALERT_WAL_LAG      "wal_archive_lag"

typedef struct coord_walwatch_stats {
	int services;  /* evaluated */
	int gaps;      /* services with a gap */
	int failing;   /* services whose archiver fails */
	int lagging;   /* services over the lag bound */
	int conflicts; /* services with a recent WAL object conflict */
	int changed;   /* alert transitions made */
	int errors;    /* services that could not be evaluated */
} coord_walwatch_stats;

/* Evaluates every configured service at now_ms. Returns 0, or the last
 * error met (the other services are still evaluated), or at once
 * COFFER_EUNAVAIL when the catalog is lost. stats may be NULL. */
int coord_walwatch_tick(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    int64_t now_ms, coord_walwatch_stats *stats, coffer_err *err);

/* Segments per log for service, from its agents' newest heartbeat that
 * reports wal_segment_size (256, 16 MiB segments, until one does). */
int coord_walwatch_per_log(
    coord_catalog *cat, const char *service, int64_t *per_log, coffer_err *err);

/* The recoverable windows of service from the catalog, appended to arr:
 * per cluster and timeline, each unbroken run of live wal_segments that
 * holds a kept physical backup from its start to its stop LSN gives one
 * window, from the earliest such backup's end to the end of the run's last
 * segment (archived at its archived_at); the logical backups are points.
 * The same fields as `coffer-agent list --output json` (docs/PITR.md). */
int coord_walwatch_windows(coord_catalog *cat, const char *service, cJSON *arr, coffer_err *err);

/* Segment number of a 24-hex-digit segment name (timeline ignored) with
 * per_log segments per log; -1 if name is not a segment name. */
int64_t coord_walwatch_segno(const char *name, int64_t per_log);

#endif
