/*
 * Metrics: Prometheus text exposition from the catalog. See metrics.h.
 *
 * Design notes.
 * Each family is one GROUP BY (or DISTINCT ON) statement, so the work and
 * the output grow with the number of services, agents and reasons, not
 * with the number of backups or events, and a scrape every 15 seconds
 * costs a few index scans. All statements run in one REPEATABLE READ
 * snapshot: a scrape that raced a backup completion would otherwise show
 * the new backup counted by outcome but not yet as the last success.
 *
 * A family's HELP and TYPE come out even when it has no samples: a strict
 * parser (and a person reading the page) then sees every metric the
 * coordinator can export, and a dashboard's query does not silently break
 * because a service has no backups yet.
 *
 * The families are one table (families[]) rendered by one loop: adding a
 * metric is adding a row with its name, type, help, labels and statement,
 * and a row in docs/METRICS.md (tests/lint/monitoring.sh compares them).
 *
 * What the coordinator knows without the catalog (live_families[]) is
 * rendered apart from the catalog's families, by compose(), so that a
 * catalog outage costs the page its freshness, never its answer: the
 * caller keeps the last catalog part that rendered and hands it back with
 * its read time. Serving old numbers under an age gauge rather than
 * dropping them keeps a dashboard's panels and an alert's "for:" intact
 * through a short outage, and the age says exactly how much to trust them.
 */
#include "coordinator/serve/metrics.h"

#include "common/base/fmt.h"
#include "common/base/strbuf.h"
#include "common/conf/config.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/version.h"

size_t
coord_metrics_escape_label(char *out, size_t size, const char *value)
{
	size_t o = 0;
	for (const char *p = value; *p != '\0'; p++) {
		const char *rep = NULL;
		char one[2] = { *p, '\0' };
		if (*p == '\\') {
			rep = "\\\\";
		} else if (*p == '"') {
			rep = "\\\"";
		} else if (*p == '\n') {
			rep = "\\n";
		} else {
			rep = one;
		}
		for (const char *r = rep; *r != '\0'; r++) {
			if (o + 1 < size) {
				out[o] = *r;
			}
			o++;
		}
	}
	if (size > 0) {
		out[o < size ? o : size - 1] = '\0';
	}
	return (o);
}

/* A label value: the catalog's names are short (checked at 64 or 128
 * bytes), so a fixed buffer is enough and longer text is cut. */
typedef struct lbl {
	char v[520];
} lbl;

static const char *
esc(lbl *l, const char *value)
{
	if (coord_metrics_escape_label(l->v, sizeof(l->v), value) >= sizeof(l->v)) {
		/* Do not leave a dangling backslash from a cut escape. */
		size_t n = strlen(l->v);
		size_t bs = 0;
		while (bs < n && l->v[n - 1 - bs] == '\\') {
			bs++;
		}
		if (bs % 2 == 1) {
			l->v[n - 1] = '\0';
		}
	}
	return (l->v);
}

static void
family(coffer_strbuf *b, const char *name, const char *type, const char *help)
{
	coffer_strbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static PGresult *
q(coord_catalog *cat, const char *what, const char *sql, int n, const char *const *vals, int *rv,
    coffer_err *err)
{
	PGresult *res = PQexecParams(coord_catalog_conn(cat), sql, n, NULL, vals, NULL, NULL, 0);
	if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
		*rv = 0;
		return (res);
	}
	*rv = coord_catalog_pg_error(cat, res, what, err);
	return (NULL);
}

/* A family: its name, type and help, the names of its labels, and the
 * statement that yields its samples. */
typedef struct metric_family {
	const char *name;
	const char *type;
	const char *help;
	const char *const *labels;
	const char *sql;
	int nlabels;
	bool needs_now;
} metric_family;

/* One family's HELP, TYPE and samples. */
static int
emit(coord_catalog *cat, coffer_strbuf *b, const metric_family *f, const char *const *vals,
    coffer_err *err)
{
	int rv;
	PGresult *res = q(cat, f->name, f->sql, vals != NULL ? 1 : 0, vals, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	family(b, f->name, f->type, f->help);
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, f->nlabels)) {
			continue;
		}
		coffer_strbuf_put(b, f->name);
		for (int k = 0; k < f->nlabels; k++) {
			lbl l;
			coffer_strbuf_printf(b, "%s%s=\"%s\"", k == 0 ? "{" : ",", f->labels[k],
			    esc(&l, PQgetvalue(res, i, k)));
		}
		coffer_strbuf_printf(
		    b, "%s %s\n", f->nlabels > 0 ? "}" : "", PQgetvalue(res, i, f->nlabels));
	}
	PQclear(res);
	return (0);
}

static const char *const L_SERVICE[] = { "service" };
static const char *const L_SERVICE_STATUS[] = { "service", "status" };
static const char *const L_SERVICE_STATE[] = { "service", "state" };
static const char *const L_SERVICE_CHECK[] = { "service", "check" };
static const char *const L_SERVICE_AGENT[] = { "service", "agent" };
static const char *const L_REASON[] = { "reason" };
static const char *const L_STATE[] = { "state" };
static const char *const L_SERVICE_RESULT[] = { "service", "result" };

/* When the coordinator learnt a backup's outcome (see coordinator/watch/alerts.c). */
#define SETTLED "COALESCE(settled_at, received_at)"

/* The families, in the order they are rendered. Every statement returns the
 * label values in order, then the sample value (NULL: no sample); with
 * needs_now, $1 is the scrape time in Unix milliseconds. */
static const metric_family families[] = {
	{
	    .name = "coffer_backup_last_success_timestamp_seconds",
	    .type = "gauge",
	    .help = "When the coordinator learnt of the newest verified backup, per service "
	            "(Unix seconds, the coordinator's clock, never in the future).",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    /* The coordinator's time, not the agent's finished_at: an agent
	     * thirty days ahead would otherwise push this into the future and
	     * silence every staleness alert built on it. Capped at the scrape
	     * time against a catalog clock ahead of ours. */
	    .sql =
	        "SELECT DISTINCT ON (service) service, "
	        "round(LEAST(extract(epoch FROM " SETTLED
	        "), $1::bigint / 1000.0)::numeric, 3)::text "
	        "FROM backups WHERE status IN ('completed', 'pending_delete', 'deleted') "
	        "AND failure_reason IS NULL AND finished_at IS NOT NULL AND verify_state = 'verified' "
	        "ORDER BY service, " SETTLED " DESC, id DESC",
	    .needs_now = true,
	},
	{
	    .name = "coffer_backup_last_duration_seconds",
	    .type = "gauge",
	    .help = "Duration of the newest completed backup, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql =
	        "SELECT DISTINCT ON (service) service, "
	        "round(extract(epoch FROM finished_at - started_at)::numeric, 3)::text FROM backups "
	        "WHERE status IN ('completed', 'pending_delete', 'deleted') "
	        "AND failure_reason IS NULL AND finished_at IS NOT NULL AND verify_state = 'verified' "
	        "ORDER BY service, " SETTLED " DESC, id DESC",
	},
	{
	    .name = "coffer_backup_last_size_bytes",
	    .type = "gauge",
	    .help =
	        "Stored (compressed, encrypted) size of the newest completed backup, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql =
	        "SELECT DISTINCT ON (service) service, stored_bytes::text FROM backups "
	        "WHERE status IN ('completed', 'pending_delete', 'deleted') "
	        "AND failure_reason IS NULL AND finished_at IS NOT NULL AND verify_state = 'verified' "
	        "ORDER BY service, " SETTLED " DESC, id DESC",
	},
	{
	    .name = "coffer_backups",
	    .type = "gauge",
	    .help = "Backups in the catalog by service and status.",
	    .labels = L_SERVICE_STATUS,
	    .nlabels = 2,
	    .sql = "SELECT service, status, count(*)::text FROM backups GROUP BY service, status "
	           "ORDER BY service, status",
	},
	{
	    .name = "coffer_backups_verify",
	    .type = "gauge",
	    .help = "Completed backups not deleted, by service and the coordinator's verification "
	            "(unverified, verified, rejected).",
	    .labels = L_SERVICE_STATE,
	    .nlabels = 2,
	    .sql = "SELECT service, verify_state, count(*)::text FROM backups "
	           "WHERE status IN ('completed', 'pending_delete') AND failure_reason IS NULL "
	           "GROUP BY service, verify_state ORDER BY service, verify_state",
	},
	{
	    .name = "coffer_orphans_reclaimed_total",
	    .type = "counter",
	    .help = "Orphan backup directories (never published, owned by no live backup) that "
	            "retention removed, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT service, backups::text FROM reclaim_totals ORDER BY service",
	},
	{
	    .name = "coffer_orphan_reclaimed_bytes_total",
	    .type = "counter",
	    .help = "Bytes of the orphan objects retention removed, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT service, bytes::text FROM reclaim_totals ORDER BY service",
	},
	{
	    .name = "coffer_keys_escrowed",
	    .type = "gauge",
	    .help = "Keys of a service's key ring whose escrow copy is in the DR repository, "
	            "per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT service, count(*)::text FROM key_escrows GROUP BY service "
	           "ORDER BY service",
	},
	{
	    .name = "coffer_alerts_open",
	    .type = "gauge",
	    .help = "Alert conditions currently triggered, by service and check.",
	    .labels = L_SERVICE_CHECK,
	    .nlabels = 2,
	    .sql =
	        "SELECT COALESCE(service, '_coordinator'), check_name, count(*)::text FROM alerts "
	        "WHERE state = 'triggered' GROUP BY 1, 2 ORDER BY 1, 2",
	},
	{
	    .name = "coffer_agent_last_contact_timestamp_seconds",
	    .type = "gauge",
	    .help = "Last time an enrolled agent was heard from (Unix seconds).",
	    .labels = L_SERVICE_AGENT,
	    .nlabels = 2,
	    .sql = "SELECT COALESCE(service, '_drill_runner'), name, "
	           "round(extract(epoch FROM GREATEST(last_contact_at, heartbeat_at, hello_at))"
	           "::numeric, 3)::text FROM agents WHERE revoked_at IS NULL ORDER BY 1, name",
	},
	{
	    .name = "coffer_agent_state_free_bytes",
	    .type = "gauge",
	    .help = "Free bytes in the agent's state directory, as its newest heartbeat reported "
	            "them (agents that report them).",
	    .labels = L_SERVICE_AGENT,
	    .nlabels = 2,
	    .sql = "SELECT COALESCE(service, '_drill_runner'), name, state_free_bytes::text "
	           "FROM agents WHERE revoked_at IS NULL AND state_free_bytes IS NOT NULL "
	           "ORDER BY 1, name",
	},
	{
	    .name = "coffer_agent_clock_skew_seconds",
	    .type = "gauge",
	    .help = "An enrolled agent's clock minus the coordinator's, as measured from its "
	            "requests (positive: ahead; coordinator/intake/skew.c).",
	    .labels = L_SERVICE_AGENT,
	    .nlabels = 2,
	    .sql = "SELECT COALESCE(service, '_drill_runner'), name, "
	           "round(clock_skew_ms / 1000.0, 3)::text FROM agents "
	           "WHERE revoked_at IS NULL AND clock_skew_ms IS NOT NULL ORDER BY 1, name",
	},
	{
	    .name = "coffer_events_applied_total",
	    .type = "counter",
	    .help =
	        "Agent events applied to the catalog, per service (drill runners: _drill_runner).",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    /* An agent's high-water mark counts its durable events, every
		 * one recorded (seq starts at 1 and has no holes): a scrape
		 * reads the agents, never the whole event history. */
	    .sql = "SELECT COALESCE(service, '_drill_runner'), sum(last_seq)::text FROM agents "
	           "GROUP BY 1 ORDER BY 1",
	},
	{
	    .name = "coffer_requests_refused_total",
	    .type = "counter",
	    .help = "Requests refused (bad signature, not enrolled, not the owner, replay...), by "
	            "reason.",
	    .labels = L_REASON,
	    .nlabels = 1,
	    .sql = "SELECT reason, sum(count)::text FROM refusals GROUP BY reason ORDER BY reason",
	},
	{
	    .name = "coffer_alert_outbox_rows",
	    .type = "gauge",
	    .help = "Alert notifications in the outbox, by delivery state.",
	    .labels = L_STATE,
	    .nlabels = 1,
	    .sql = "SELECT s, (SELECT count(*) FROM alert_outbox WHERE state = s)::text "
	           "FROM unnest(ARRAY['pending', 'delivered', 'failed']) AS s",
	},
	{
	    .name = "coffer_alert_outbox_oldest_pending_age_seconds",
	    .type = "gauge",
	    .help = "Age of the oldest undelivered alert notification (0 when none).",
	    .sql = "SELECT COALESCE(GREATEST(0, round((($1::bigint / 1000.0) - "
	           "extract(epoch FROM min(created_at)))::numeric, 3)), 0)::text "
	           "FROM alert_outbox WHERE state = 'pending'",
	    .needs_now = true,
	},
	{
	    .name = "coffer_drills_total",
	    .type = "counter",
	    .help = "Restore drills finished, by service and result (passed, failed).",
	    .labels = L_SERVICE_RESULT,
	    .nlabels = 2,
	    .sql = "SELECT service, status, count(*)::text FROM drills WHERE status <> 'running' "
	           "GROUP BY service, status ORDER BY service, status",
	},
	{
	    .name = "coffer_drill_restore_seconds",
	    .type = "gauge",
	    .help =
	        "Restore time measured by the newest finished drill that restored, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT DISTINCT ON (service) service, round(restore_ms / 1000.0, 3)::text "
	           "FROM drills WHERE status <> 'running' AND restore_ms IS NOT NULL "
	           "ORDER BY service, finished_at DESC, id DESC",
	},
	{
	    .name = "coffer_drill_last_success_timestamp_seconds",
	    .type = "gauge",
	    .help = "Finish time of the newest passed restore drill, per service (Unix seconds).",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT service, "
	           "round(extract(epoch FROM max(finished_at))::numeric, 3)::text "
	           "FROM drills WHERE status = 'passed' "
	           "GROUP BY service ORDER BY service",
	},
	{
	    .name = "coffer_integrity_checks_total",
	    .type = "counter",
	    .help = "Stored objects checked by the integrity sweep, by service and result.",
	    .labels = L_SERVICE_RESULT,
	    .nlabels = 2,
	    .sql = "SELECT service, result, count::text FROM integrity_totals ORDER BY 1, 2",
	},
	{
	    .name = "coffer_repository_objects_replaced",
	    .type = "gauge",
	    .help =
	        "Stored objects of kept backups whose current version in the primary repository "
	        "is not the one recorded when the backup completed, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql =
	        "SELECT service, count(*)::text FROM (SELECT DISTINCT ON (c.backup_id, c.object) "
	        "c.service, c.replaced_by FROM integrity_checks c JOIN backups b ON b.id = "
	        "c.backup_id WHERE c.repo = 'primary' AND b.status IN ('completed', "
	        "'pending_delete') ORDER BY c.backup_id, c.object, c.checked_at DESC, c.id DESC) l "
	        "WHERE replaced_by IS NOT NULL GROUP BY service ORDER BY service",
	},
	{
	    .name = "coffer_wal_segments",
	    .type = "gauge",
	    .help = "Archived WAL segments kept in the repository, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT service, count(*)::text FROM wal_segments WHERE deleted_at IS NULL "
	           "GROUP BY service ORDER BY service",
	},
	{
	    .name = "coffer_wal_last_archived_timestamp_seconds",
	    .type = "gauge",
	    .help = "Archive time of the newest WAL segment, per service (Unix seconds).",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql =
	        "SELECT service, "
	        "round(extract(epoch FROM max(archived_at))::numeric, 3)::text FROM wal_segments "
	        "GROUP BY service ORDER BY service",
	},
	{
	    .name = "coffer_wal_ready_segments",
	    .type = "gauge",
	    .help = "WAL segments waiting to be archived, as the agent's last heartbeat saw "
	            "pg_wal/archive_status.",
	    .labels = L_SERVICE_AGENT,
	    .nlabels = 2,
	    .sql = "SELECT service, name, (heartbeat->>'wal_ready_count') FROM agents "
	           "WHERE revoked_at IS NULL AND heartbeat ? 'current_wal' ORDER BY service, name",
	},
	{
	    .name = "coffer_wal_archive_failures_total",
	    .type = "counter",
	    .help = "pg_stat_archiver.failed_count, as the agent's last heartbeat saw it (resets "
	            "with the database's statistics).",
	    .labels = L_SERVICE_AGENT,
	    .nlabels = 2,
	    .sql = "SELECT service, name, (heartbeat->>'archive_failed_count') FROM agents "
	           "WHERE revoked_at IS NULL AND heartbeat ? 'current_wal' ORDER BY service, name",
	},
	{
	    .name = "coffer_dr_copies",
	    .type = "gauge",
	    .help = "DR copies by service and status (copying, verified, failed).",
	    .labels = L_SERVICE_STATUS,
	    .nlabels = 2,
	    .sql = "SELECT b.service, c.status, count(*)::text FROM backup_copies c "
	           "JOIN backups b ON b.id = c.backup_id WHERE c.repo = 'dr' GROUP BY 1, 2 "
	           "ORDER BY 1, 2",
	},
	{
	    .name = "coffer_dr_copy_failures_total",
	    .type = "counter",
	    .help = "Failed DR copy attempts, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT b.service, sum(c.attempts - 1)::text FROM backup_copies c "
	           "JOIN backups b ON b.id = c.backup_id WHERE c.repo = 'dr' GROUP BY 1 ORDER BY 1",
	},
	{
	    .name = "coffer_dr_copied_bytes_total",
	    .type = "counter",
	    .help = "Bytes of backups verified in the DR repository, per service.",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT b.service, COALESCE(sum(c.stored_bytes), 0)::text FROM backup_copies c "
	           "JOIN backups b ON b.id = c.backup_id WHERE c.repo = 'dr' "
	           "AND c.status = 'verified' GROUP BY 1 ORDER BY 1",
	},
	{
	    .name = "coffer_dr_copy_lag_seconds",
	    .type = "gauge",
	    .help =
	        "How long the oldest due DR copy has waited to be verified, per service (0: none "
	        "waiting).",
	    .labels = L_SERVICE,
	    .nlabels = 1,
	    .sql = "SELECT b.service, COALESCE(GREATEST(0, round((($1::bigint / 1000.0) - "
	           "extract(epoch FROM min(c.started_at) FILTER (WHERE c.status <> 'verified')))"
	           "::numeric, 3)), 0)::text FROM backup_copies c JOIN backups b ON b.id = "
	           "c.backup_id WHERE c.repo = 'dr' GROUP BY 1 ORDER BY 1",
	    .needs_now = true,
	},
};

static int
render(coord_catalog *cat, int64_t now_ms, coffer_strbuf *b, coffer_err *err)
{
	char now[COFFER_FMT_INT_SIZE];
	const char *vnow[] = { coffer_fmt_i64(now, now_ms) };
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		int rv = emit(cat, b, &families[i], families[i].needs_now ? vnow : NULL, err);
		if (rv != 0) {
			return (rv);
		}
	}
	return (0);
}

int
coord_metrics_render(coord_catalog *cat, int64_t now_ms, char **text, size_t *len, coffer_err *err)
{
	*text = NULL;
	*len = 0;
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	int rv = coord_catalog_exec(cat, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    "starting the metrics snapshot", err);
	if (rv == 0) {
		rv = render(cat, now_ms, &b, err);
		if (rv == 0) {
			rv = coord_catalog_commit(cat, err);
		} else {
			coord_catalog_rollback(cat);
		}
	}
	if (rv == 0 && b.failed) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "rendering metrics: out of memory");
	}
	if (rv != 0) {
		coffer_strbuf_free(&b);
		return (rv);
	}
	*len = b.len;
	*text = coffer_strbuf_take(&b);
	return (0);
}

/* The coordinator's own families, rendered from memory by compose() in
 * this order (the LIVE_ indices name the rows). */
enum {
	LIVE_CATALOG_UP,
	LIVE_RENDERED,
	LIVE_CATALOG_AGE,
	LIVE_BUILD_INFO,
	LIVE_START_TIME,
	LIVE_SERVICES,
	LIVE_BACKUP_MAX_AGE,
	LIVE_DRILL_MAX_AGE,
	LIVE_ALERT_BOUND,
	LIVE_OUTAGES,
	LIVE_OUTAGE_SECONDS,
	LIVE_INTAKE,
	LIVE_N
};

static const metric_family live_families[LIVE_N] = {
	[LIVE_CATALOG_UP] = {
	    .name = "coffer_catalog_up",
	    .type = "gauge",
	    .help = "Whether the coordinator reaches its catalog (1) or not (0).",
	},
	[LIVE_RENDERED] = {
	    .name = "coffer_metrics_rendered_timestamp_seconds",
	    .type = "gauge",
	    .help = "When this answer was rendered (answers are cached for [coordinator] "
	            "metrics_cache).",
	},
	[LIVE_CATALOG_AGE] = {
	    .name = "coffer_metrics_catalog_age_seconds",
	    .type = "gauge",
	    .help = "How old the catalog's families on this page are: 0 when read for it, more "
	            "while the catalog cannot be read (no sample before the first read).",
	},
	[LIVE_BUILD_INFO] = {
	    .name = "coffer_build_info",
	    .type = "gauge",
	    .help = "Always 1; the labels say which version and commit the coordinator was "
	            "built from.",
	},
	[LIVE_START_TIME] = {
	    .name = "coffer_coordinator_start_time_seconds",
	    .type = "gauge",
	    .help = "When this coordinator process started (Unix seconds).",
	},
	[LIVE_SERVICES] = {
	    .name = "coffer_services_configured",
	    .type = "gauge",
	    .help = "Services in the coordinator's configuration.",
	},
	[LIVE_BACKUP_MAX_AGE] = {
	    .name = "coffer_backup_max_age_seconds",
	    .type = "gauge",
	    .help = "How old a service's newest verified backup may be before it is late: the "
	            "longest gap between its scheduled runs plus [alerts] completion_window.",
	},
	[LIVE_DRILL_MAX_AGE] = {
	    .name = "coffer_drill_max_age_seconds",
	    .type = "gauge",
	    .help = "How old a drilled service's newest passed drill may be before it is late: "
	            "the longest gap in drill.schedule plus drill.rto and drill.overdue_after.",
	},
	[LIVE_ALERT_BOUND] = {
	    .name = "coffer_alert_bound_seconds",
	    .type = "gauge",
	    .help = "The coordinator's configured alert bounds, by name: agent_quiet, "
	            "agent_clock_skew_max, completion_window ([alerts]) and dr_copy_lag ([dr] "
	            "copy_lag).",
	},
	[LIVE_OUTAGES] = {
	    .name = "coffer_catalog_outages_total",
	    .type = "counter",
	    .help = "Catalog outages (first lane down to last lane back) since the coordinator "
	            "started.",
	},
	[LIVE_OUTAGE_SECONDS] = {
	    .name = "coffer_catalog_outage_seconds",
	    .type = "gauge",
	    .help = "How long the current catalog outage has lasted (0: none).",
	},
	[LIVE_INTAKE] = {
	    .name = "coffer_intake_requests_total",
	    .type = "counter",
	    .help = "Agents' requests since the coordinator started, by result (ok, refused, "
	            "unavailable, dropped).",
	},
};

static const char *const intake_results[COORD_METRICS_INTAKE_N] = {
	[COORD_METRICS_INTAKE_OK] = "ok",
	[COORD_METRICS_INTAKE_REFUSED] = "refused",
	[COORD_METRICS_INTAKE_UNAVAILABLE] = "unavailable",
	[COORD_METRICS_INTAKE_DROPPED] = "dropped",
};

/* Unix milliseconds as seconds with three decimals. */
static void
put_seconds(coffer_strbuf *b, int64_t ms)
{
	if (ms < 0) {
		coffer_strbuf_put(b, "-");
		ms = -ms;
	}
	coffer_strbuf_printf(b, "%" PRId64 ".%03" PRId64 "\n", ms / 1000, ms % 1000);
}

static void
live_family(coffer_strbuf *b, int which)
{
	family(b, live_families[which].name, live_families[which].type, live_families[which].help);
}

static void
render_live(const coord_metrics_live *live, coffer_strbuf *b)
{
	live_family(b, LIVE_CATALOG_UP);
	coffer_strbuf_printf(b, "coffer_catalog_up %d\n", live->catalog_up ? 1 : 0);
	live_family(b, LIVE_RENDERED);
	coffer_strbuf_put(b, "coffer_metrics_rendered_timestamp_seconds ");
	put_seconds(b, live->now_ms);
	live_family(b, LIVE_CATALOG_AGE);
	if (live->catalog_read_ms > 0) {
		coffer_strbuf_put(b, "coffer_metrics_catalog_age_seconds ");
		put_seconds(b,
		    live->now_ms > live->catalog_read_ms ? live->now_ms - live->catalog_read_ms
		                                         : 0);
	}
	live_family(b, LIVE_BUILD_INFO);
	lbl v;
	lbl c;
	/* The revision is git describe at build time; empty outside git. */
	coffer_strbuf_printf(b, "coffer_build_info{version=\"%s\",commit=\"%s\"} 1\n",
	    esc(&v, COFFER_VERSION_NUMBER),
	    esc(&c, COFFER_REVISION[0] != '\0' ? COFFER_REVISION : "unknown"));
	live_family(b, LIVE_START_TIME);
	coffer_strbuf_put(b, "coffer_coordinator_start_time_seconds ");
	put_seconds(b, live->started_ms);
	live_family(b, LIVE_SERVICES);
	coffer_strbuf_printf(b, "coffer_services_configured %zu\n", live->services_configured);
	lbl svc;
	live_family(b, LIVE_BACKUP_MAX_AGE);
	for (size_t i = 0; live->bounds != NULL && i < live->services_configured; i++) {
		if (live->bounds[i].backup_max_age_ms > 0) {
			coffer_strbuf_printf(b, "coffer_backup_max_age_seconds{service=\"%s\"} ",
			    esc(&svc, live->bounds[i].service));
			put_seconds(b, live->bounds[i].backup_max_age_ms);
		}
	}
	live_family(b, LIVE_DRILL_MAX_AGE);
	for (size_t i = 0; live->bounds != NULL && i < live->services_configured; i++) {
		if (live->bounds[i].drill_max_age_ms > 0) {
			coffer_strbuf_printf(b, "coffer_drill_max_age_seconds{service=\"%s\"} ",
			    esc(&svc, live->bounds[i].service));
			put_seconds(b, live->bounds[i].drill_max_age_ms);
		}
	}
	live_family(b, LIVE_ALERT_BOUND);
	for (int i = 0; i < COORD_METRICS_ALERT_BOUNDS; i++) {
		if (live->alert_bounds[i].name != NULL) {
			coffer_strbuf_printf(b, "coffer_alert_bound_seconds{bound=\"%s\"} ",
			    esc(&svc, live->alert_bounds[i].name));
			put_seconds(b, live->alert_bounds[i].ms);
		}
	}
	live_family(b, LIVE_OUTAGES);
	coffer_strbuf_printf(
	    b, "coffer_catalog_outages_total %" PRIu64 "\n", live->catalog_outages);
	live_family(b, LIVE_OUTAGE_SECONDS);
	coffer_strbuf_put(b, "coffer_catalog_outage_seconds ");
	put_seconds(b,
	    live->outage_since_ms > 0 && live->now_ms > live->outage_since_ms
	        ? live->now_ms - live->outage_since_ms
	        : 0);
	live_family(b, LIVE_INTAKE);
	for (int r = 0; r < COORD_METRICS_INTAKE_N; r++) {
		coffer_strbuf_printf(b, "coffer_intake_requests_total{result=\"%s\"} %" PRIu64 "\n",
		    intake_results[r], live->intake[r]);
	}
}

/* The longest gap between consecutive runs of schedule in zone over the
 * coming year (at most BOUND_SLOTS runs: a schedule that fires more often
 * repeats its gaps within them). 0 with ENOENT: it never fires. */
#define BOUND_SLOTS   1200
#define BOUND_HORIZON (366 * 86400LL)

static int
longest_gap_ms(
    const char *schedule, const char *zone, int64_t now_ms, int64_t *gap_ms, coffer_err *err)
{
	*gap_ms = 0;
	coffer_cron *cron = coffer_cron_parse(schedule, err);
	if (cron == NULL) {
		return (err->code);
	}
	coffer_tz *tz = coffer_tz_load(zone != NULL ? zone : "UTC", err);
	if (tz == NULL) {
		coffer_cron_free(cron);
		return (err->code);
	}
	int64_t start_s = now_ms / 1000;
	int64_t at = 0;
	int rv = coffer_cron_next(cron, tz, start_s, &at, err);
	int64_t longest = 0;
	for (int i = 0; rv == 0 && i < BOUND_SLOTS && at - start_s < BOUND_HORIZON; i++) {
		int64_t next = 0;
		rv = coffer_cron_next(cron, tz, at, &next, err);
		if (rv == 0 && next - at > longest) {
			longest = next - at;
		}
		at = next;
	}
	coffer_cron_free(cron);
	coffer_tz_free(tz);
	if (rv == COFFER_ENOENT) {
		coffer_err_clear(err);
		rv = 0;
	}
	*gap_ms = longest * 1000;
	return (rv);
}

int
coord_metrics_bounds(
    const coord_config *cfg, int64_t now_ms, coord_metrics_bound **out, coffer_err *err)
{
	*out = calloc(cfg->n_services > 0 ? cfg->n_services : 1, sizeof(**out));
	if (*out == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the services' bounds"));
	}
	int64_t window = coffer_config_duration_ms(cfg->ini, "alerts", "completion_window");
	for (size_t i = 0; i < cfg->n_services; i++) {
		const coord_service_policy *p = &cfg->services[i];
		coord_metrics_bound *bd = &(*out)[i];
		bd->service = p->name;
		int64_t gap = 0;
		int rv = longest_gap_ms(p->schedule, p->timezone, now_ms, &gap, err);
		if (rv == 0 && gap > 0) {
			bd->backup_max_age_ms = gap + window;
		}
		if (rv == 0 && p->drill.schedule != NULL) {
			rv = longest_gap_ms(p->drill.schedule, p->timezone, now_ms, &gap, err);
			if (rv == 0 && gap > 0) {
				bd->drill_max_age_ms =
				    gap + p->drill.rto_ms + p->drill.overdue_after_ms;
			}
		}
		if (rv != 0) {
			free(*out);
			*out = NULL;
			return (coffer_err_wrap(err, "service %s: its freshness bound", p->name));
		}
	}
	return (0);
}

void
coord_metrics_alert_bounds(
    const coord_config *cfg, coord_metrics_alert_bound out[COORD_METRICS_ALERT_BOUNDS])
{
	static const struct {
		const char *name, *section, *key;
	} keys[COORD_METRICS_ALERT_BOUNDS] = {
		{ "agent_quiet", "alerts", "agent_quiet" },
		{ "agent_clock_skew_max", "alerts", "agent_clock_skew_max" },
		{ "completion_window", "alerts", "completion_window" },
		{ "dr_copy_lag", "dr", "copy_lag" },
	};
	for (int i = 0; i < COORD_METRICS_ALERT_BOUNDS; i++) {
		out[i].name = keys[i].name;
		out[i].ms = coffer_config_duration_ms(cfg->ini, keys[i].section, keys[i].key);
	}
}

int
coord_metrics_compose(const coord_metrics_live *live, const char *catalog_text, size_t catalog_len,
    char **text, size_t *len)
{
	*text = NULL;
	*len = 0;
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	render_live(live, &b);
	if (catalog_text != NULL) {
		coffer_strbuf_putn(&b, catalog_text, catalog_len);
	} else {
		/* Never read: the names without samples, so a dashboard sees
		 * "no data" rather than a metric that does not exist. */
		for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
			family(&b, families[i].name, families[i].type, families[i].help);
		}
	}
	if (b.failed) {
		coffer_strbuf_free(&b);
		return (COFFER_ENOMEM);
	}
	*len = b.len;
	*text = coffer_strbuf_take(&b);
	return (*text != NULL ? 0 : COFFER_ENOMEM);
}

const char *
coord_metrics_family_name(size_t i)
{
	if (i < LIVE_N) {
		return (live_families[i].name);
	}
	i -= LIVE_N;
	if (i < sizeof(families) / sizeof(families[0])) {
		return (families[i].name);
	}
	return (NULL);
}
