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
 */
#include "coordinator/serve/metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct sb {
	char *buf;
	size_t len, cap;
	bool oom;
} sb;

static void sb_printf(sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(sb *b, const char *fmt, ...)
{
	if (b->oom) {
		return;
	}
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < b->cap - b->len) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap * 2 + (size_t)n + 1;
		char *p = realloc(b->buf, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->buf = p;
		b->cap = cap;
	}
}

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
family(sb *b, const char *name, const char *type, const char *help)
{
	sb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
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

/* One family whose rows are (label values..., value); the labels' names
 * are given in order. */
static int
emit(coord_catalog *cat, sb *b, const char *name, const char *type, const char *help,
    const char *const *labels, int nlabels, const char *sql, int np, const char *const *vals,
    coffer_err *err)
{
	int rv;
	PGresult *res = q(cat, name, sql, np, vals, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	family(b, name, type, help);
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetisnull(res, i, nlabels)) {
			continue;
		}
		sb_printf(b, "%s", name);
		for (int k = 0; k < nlabels; k++) {
			lbl l;
			sb_printf(b, "%s%s=\"%s\"", k == 0 ? "{" : ",", labels[k],
			    esc(&l, PQgetvalue(res, i, k)));
		}
		sb_printf(b, "%s %s\n", nlabels > 0 ? "}" : "", PQgetvalue(res, i, nlabels));
	}
	PQclear(res);
	return (0);
}

static const char *const L_SERVICE[] = { "service" };
static const char *const L_SERVICE_STATUS[] = { "service", "status" };
static const char *const L_SERVICE_CHECK[] = { "service", "check" };
static const char *const L_SERVICE_AGENT[] = { "service", "agent" };
static const char *const L_REASON[] = { "reason" };
static const char *const L_STATE[] = { "state" };
static const char *const L_SERVICE_RESULT[] = { "service", "result" };

/* Seconds as text with millisecond precision, from a timestamptz. */
#define EPOCH(x) "round(extract(epoch FROM " x ")::numeric, 3)::text"

static int
render(coord_catalog *cat, const coord_config *cfg, int64_t now_ms, sb *b, coffer_err *err)
{
	char now[32];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	const char *vnow[] = { now };
	int rv = emit(cat, b, "coffer_backup_last_success_timestamp_seconds", "gauge",
	    "Finish time of the newest completed backup, per service (Unix seconds).", L_SERVICE, 1,
	    "SELECT DISTINCT ON (service) service, " EPOCH(
	        "finished_at") " FROM backups "
	                       "WHERE status IN ('completed', 'pending_delete', 'deleted') AND failure_reason IS NULL "
	                       "AND finished_at IS NOT NULL ORDER BY service, finished_at DESC",
	    0, NULL, err);
	if (rv == 0) {
		rv = emit(cat, b, "coffer_backup_last_duration_seconds", "gauge",
		    "Duration of the newest completed backup, per service.", L_SERVICE, 1,
		    "SELECT DISTINCT ON (service) service, " EPOCH(
		        "finished_at - started_at") " FROM backups "
		                                    "WHERE status IN ('completed', 'pending_delete', 'deleted') "
		                                    "AND failure_reason IS NULL AND finished_at IS NOT NULL "
		                                    "ORDER BY service, finished_at DESC",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_backup_last_size_bytes", "gauge",
		    "Stored (compressed, encrypted) size of the newest completed backup, per service.",
		    L_SERVICE, 1,
		    "SELECT DISTINCT ON (service) service, stored_bytes::text FROM backups "
		    "WHERE status IN ('completed', 'pending_delete', 'deleted') "
		    "AND failure_reason IS NULL AND finished_at IS NOT NULL "
		    "ORDER BY service, finished_at DESC",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_backups", "gauge",
		    "Backups in the catalog by service and status.", L_SERVICE_STATUS, 2,
		    "SELECT service, status, count(*)::text FROM backups GROUP BY service, status "
		    "ORDER BY service, status",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_alerts_open", "gauge",
		    "Alert conditions currently triggered, by service and check.", L_SERVICE_CHECK,
		    2,
		    "SELECT COALESCE(service, '_coordinator'), check_name, count(*)::text FROM alerts "
		    "WHERE state = 'triggered' GROUP BY 1, 2 ORDER BY 1, 2",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_agent_last_contact_timestamp_seconds", "gauge",
		    "Last time an enrolled agent was heard from (Unix seconds).", L_SERVICE_AGENT,
		    2,
		    "SELECT COALESCE(service, '_drill_runner'), name, " EPOCH(
		        "GREATEST(last_contact_at, heartbeat_at, hello_at)") " FROM agents WHERE revoked_at IS NULL ORDER BY 1, name",
		    0, NULL, err);
	}
	if (rv == 0) {
		/* An agent's high-water mark counts its durable events, every
		 * one recorded (seq starts at 1 and has no holes): a scrape
		 * reads the agents, never the whole event history. */
		rv = emit(cat, b, "coffer_events_applied_total", "counter",
		    "Agent events applied to the catalog, per service (drill runners: _drill_runner).",
		    L_SERVICE, 1,
		    "SELECT COALESCE(service, '_drill_runner'), sum(last_seq)::text FROM agents "
		    "GROUP BY 1 ORDER BY 1",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_requests_refused_total", "counter",
		    "Requests refused (bad signature, not enrolled, not the owner, replay...), by "
		    "reason.",
		    L_REASON, 1,
		    "SELECT reason, sum(count)::text FROM refusals GROUP BY reason ORDER BY reason",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_alert_outbox_rows", "gauge",
		    "Alert notifications in the outbox, by delivery state.", L_STATE, 1,
		    "SELECT s, (SELECT count(*) FROM alert_outbox WHERE state = s)::text "
		    "FROM unnest(ARRAY['pending', 'delivered', 'failed']) AS s",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_alert_outbox_oldest_pending_age_seconds", "gauge",
		    "Age of the oldest undelivered alert notification (0 when none).", NULL, 0,
		    "SELECT COALESCE(GREATEST(0, round((($1::bigint / 1000.0) - "
		    "extract(epoch FROM min(created_at)))::numeric, 3)), 0)::text "
		    "FROM alert_outbox WHERE state = 'pending'",
		    1, vnow, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_drills_total", "counter",
		    "Restore drills finished, by service and result (passed, failed).",
		    L_SERVICE_RESULT, 2,
		    "SELECT service, status, count(*)::text FROM drills WHERE status <> 'running' "
		    "GROUP BY service, status ORDER BY service, status",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_drill_restore_seconds", "gauge",
		    "Restore time measured by the newest finished drill that restored, per service.",
		    L_SERVICE, 1,
		    "SELECT DISTINCT ON (service) service, round(restore_ms / 1000.0, 3)::text "
		    "FROM drills WHERE status <> 'running' AND restore_ms IS NOT NULL "
		    "ORDER BY service, finished_at DESC, id DESC",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_drill_last_success_timestamp", "gauge",
		    "Finish time of the newest passed restore drill, per service (Unix seconds).",
		    L_SERVICE, 1,
		    "SELECT service, " EPOCH(
		        "max(finished_at)") " FROM drills WHERE status = 'passed' "
		                            "GROUP BY service ORDER BY service",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_integrity_checks_total", "counter",
		    "Stored objects checked by the integrity sweep, by service and result.",
		    L_SERVICE_RESULT, 2,
		    "SELECT service, result, count::text FROM integrity_totals ORDER BY 1, 2", 0,
		    NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_wal_segments", "gauge",
		    "Archived WAL segments kept in the repository, per service.", L_SERVICE, 1,
		    "SELECT service, count(*)::text FROM wal_segments WHERE deleted_at IS NULL "
		    "GROUP BY service ORDER BY service",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_wal_last_archived_timestamp_seconds", "gauge",
		    "Archive time of the newest WAL segment, per service (Unix seconds).",
		    L_SERVICE, 1,
		    "SELECT service, " EPOCH(
		        "max(archived_at)") " FROM wal_segments "
		                            "GROUP BY service ORDER BY service",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_wal_ready_segments", "gauge",
		    "WAL segments waiting to be archived, as the agent's last heartbeat saw "
		    "pg_wal/archive_status.",
		    L_SERVICE_AGENT, 2,
		    "SELECT service, name, (heartbeat->>'wal_ready_count') FROM agents "
		    "WHERE revoked_at IS NULL AND heartbeat ? 'current_wal' ORDER BY service, name",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_wal_archive_failures", "counter",
		    "pg_stat_archiver.failed_count, as the agent's last heartbeat saw it.",
		    L_SERVICE_AGENT, 2,
		    "SELECT service, name, (heartbeat->>'archive_failed_count') FROM agents "
		    "WHERE revoked_at IS NULL AND heartbeat ? 'current_wal' ORDER BY service, name",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_dr_copies", "gauge",
		    "DR copies by service and status (copying, verified, failed).",
		    L_SERVICE_STATUS, 2,
		    "SELECT b.service, c.status, count(*)::text FROM backup_copies c "
		    "JOIN backups b ON b.id = c.backup_id WHERE c.repo = 'dr' GROUP BY 1, 2 "
		    "ORDER BY 1, 2",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_dr_copy_failures_total", "counter",
		    "Failed DR copy attempts, per service.", L_SERVICE, 1,
		    "SELECT b.service, sum(c.attempts - 1)::text FROM backup_copies c "
		    "JOIN backups b ON b.id = c.backup_id WHERE c.repo = 'dr' GROUP BY 1 ORDER BY 1",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_dr_copied_bytes_total", "counter",
		    "Bytes of backups verified in the DR repository, per service.", L_SERVICE, 1,
		    "SELECT b.service, COALESCE(sum(c.stored_bytes), 0)::text FROM backup_copies c "
		    "JOIN backups b ON b.id = c.backup_id WHERE c.repo = 'dr' "
		    "AND c.status = 'verified' GROUP BY 1 ORDER BY 1",
		    0, NULL, err);
	}
	if (rv == 0) {
		rv = emit(cat, b, "coffer_dr_copy_lag_seconds", "gauge",
		    "How long the oldest due DR copy has waited to be verified, per service (0: none "
		    "waiting).",
		    L_SERVICE, 1,
		    "SELECT b.service, COALESCE(GREATEST(0, round((($1::bigint / 1000.0) - "
		    "extract(epoch FROM min(c.started_at) FILTER (WHERE c.status <> 'verified')))"
		    "::numeric, 3)), 0)::text FROM backup_copies c JOIN backups b ON b.id = "
		    "c.backup_id WHERE c.repo = 'dr' GROUP BY 1 ORDER BY 1",
		    1, vnow, err);
	}
	if (rv == 0) {
		family(b, "coffer_services_configured", "gauge",
		    "Services in the coordinator's configuration.");
		sb_printf(b, "coffer_services_configured %zu\n", cfg->n_services);
	}
	return (rv);
}

int
coord_metrics_render(coord_catalog *cat, const coord_config *cfg, int64_t now_ms, char **text,
    size_t *len, coffer_err *err)
{
	*text = NULL;
	*len = 0;
	sb b = { .cap = 8192 };
	b.buf = malloc(b.cap);
	if (b.buf == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "rendering metrics: out of memory"));
	}
	b.buf[0] = '\0';
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
	if (rv == 0 && b.oom) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "rendering metrics: out of memory");
	}
	if (rv != 0) {
		free(b.buf);
		return (rv);
	}
	*text = b.buf;
	*len = b.len;
	return (0);
}
