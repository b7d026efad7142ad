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
 * metric is adding a row with its name, type, help, labels and statement.
 */
#include "coordinator/serve/metrics.h"

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/strbuf.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	    .name = "coffer_orphan_bytes_reclaimed_total",
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
	    .name = "coffer_drill_last_success_timestamp",
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
	    .name = "coffer_wal_archive_failures",
	    .type = "counter",
	    .help = "pg_stat_archiver.failed_count, as the agent's last heartbeat saw it.",
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
render(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, coffer_strbuf *b, coffer_err *err)
{
	char now[COFFER_FMT_INT_SIZE];
	const char *vnow[] = { coffer_fmt_i64(now, now_ms) };
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		int rv = emit(cat, b, &families[i], families[i].needs_now ? vnow : NULL, err);
		if (rv != 0) {
			return (rv);
		}
	}
	family(b, "coffer_services_configured", "gauge",
	    "Services in the coordinator's configuration.");
	coffer_strbuf_printf(b, "coffer_services_configured %zu\n", cfg->n_services);
	return (0);
}

int
coord_metrics_render(coord_catalog *cat, const coord_config *cfg, int64_t now_ms, char **text,
    size_t *len, coffer_err *err)
{
	*text = NULL;
	*len = 0;
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	int rv = coord_catalog_exec(cat, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    "starting the metrics snapshot", err);
	if (rv == 0) {
		rv = render(cat, cfg, now_ms, &b, err);
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

int
coord_metrics_prepend_catalog_up(bool up, char **text, size_t *len)
{
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	/* The render time says how old a cached answer is
	 * ([coordinator] metrics_cache). */
	int64_t now = coffer_clock_now(NULL);
	coffer_strbuf_printf(&b,
	    "# HELP coffer_catalog_up Whether the coordinator reaches its catalog (1) or not (0).\n"
	    "# TYPE coffer_catalog_up gauge\n"
	    "coffer_catalog_up %d\n"
	    "# HELP coffer_metrics_rendered_timestamp_seconds When this answer was rendered "
	    "(answers are cached for [coordinator] metrics_cache).\n"
	    "# TYPE coffer_metrics_rendered_timestamp_seconds gauge\n"
	    "coffer_metrics_rendered_timestamp_seconds %" PRId64 ".%03" PRId64 "\n",
	    up ? 1 : 0, now / 1000, now % 1000);
	if (*text != NULL) {
		coffer_strbuf_putn(&b, *text, *len);
	}
	free(*text);
	*len = b.len;
	*text = coffer_strbuf_take(&b);
	if (*text == NULL) {
		*len = 0;
		return (COFFER_ENOMEM);
	}
	return (0);
}
