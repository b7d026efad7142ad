/*
 * WAL watch; see coordinator/wal/walwatch.h.
 *
 * Design notes.
 * The gap search is one window-function statement per service over the
 * live rows of wal_segments, so its cost is an index range scan, and only
 * the first gap and the count come back. The heartbeat is the agent's
 * latest (agents.heartbeat, jsonb as intake stored it); with several
 * agents for one service the worst one counts.
 */
#include "coordinator/wal/walwatch.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "coordinator/watch/alerts.h"

#define DEFAULT_PER_LOG 256

int64_t
coord_walwatch_segno(const char *name, int64_t per_log)
{
	if (name == NULL || strlen(name) < 24) {
		return (-1);
	}
	uint64_t part[2] = { 0, 0 };
	for (int k = 0; k < 2; k++) {
		for (int i = 8 + 8 * k; i < 16 + 8 * k; i++) {
			char c = name[i];
			int v = c >= '0' && c <= '9' ? c - '0'
			    : c >= 'A' && c <= 'F'   ? c - 'A' + 10
			                             : -1;
			if (v < 0) {
				return (-1);
			}
			part[k] = part[k] * 16 + (uint64_t)v;
		}
	}
	if (part[0] > INT64_MAX / (uint64_t)per_log) {
		return (-1);
	}
	return ((int64_t)(part[0] * (uint64_t)per_log + part[1]));
}

static PGresult *
query(coord_catalog *cat, const char *what, const char *sql, int n, const char *const *vals,
    int *rv, coffer_err *err)
{
	return (coord_catalog_query(cat, sql, n, vals, what, rv, err));
}

int
coord_walwatch_per_log(coord_catalog *cat, const char *service, int64_t *out, coffer_err *err)
{
	const char *vals[] = { service };
	int rv;
	PGresult *r = query(cat, "reading the WAL segment size",
	    "SELECT (heartbeat->>'wal_segment_size')::bigint FROM agents "
	    "WHERE service = $1 AND heartbeat ? 'wal_segment_size' "
	    "ORDER BY heartbeat_at DESC NULLS LAST LIMIT 1",
	    1, vals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	int64_t per = DEFAULT_PER_LOG;
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
		int64_t size = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		/* PostgreSQL allows powers of two from 1 MiB to 1 GiB. */
		if (size >= (1 << 20) && size <= (1 << 30) && (size & (size - 1)) == 0) {
			per = ((int64_t)1 << 32) / size;
		}
	}
	PQclear(r);
	*out = per;
	return (0);
}

static int
set(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg, const char *service,
    const char *check, bool active, const char *summary, cJSON *details, int64_t now_ms,
    coord_walwatch_stats *st, coffer_err *err)
{
	char *dtext = details != NULL ? cJSON_PrintUnformatted(details) : NULL;
	bool changed = false;
	int rv = coord_alerts_set(cat, key, cfg, service, check, active, "critical", summary, dtext,
	    now_ms, &changed, err);
	cJSON_free(dtext);
	if (rv == 0 && changed) {
		st->changed++;
		coffer_log(active ? COFFER_LOG_ERROR : COFFER_LOG_INFO,
		    active ? "wal alert triggered" : "wal alert resolved", "service=%s check=%s",
		    service, check);
	}
	return (rv);
}

static int
check_gap(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, int64_t per, int64_t now_ms, coord_walwatch_stats *st, coffer_err *err)
{
	char per_text[24];
	snprintf(per_text, sizeof(per_text), "%" PRId64, per);
	const char *vals[] = { service, per_text };
	int rv;
	PGresult *r = query(cat, "looking for gaps in the archived WAL",
	    "WITH live AS (SELECT system_identifier, timeline, segment, "
	    "    ('x' || substr(segment, 9, 8))::bit(32)::bigint * $2::bigint "
	    "    + ('x' || substr(segment, 17, 8))::bit(32)::bigint AS n "
	    "  FROM wal_segments WHERE service = $1 AND deleted_at IS NULL "
	    "  AND length(segment) = 24), "
	    "g AS (SELECT system_identifier, timeline, segment, n, lag(n) OVER w AS pn, "
	    "  lag(segment) OVER w AS pseg "
	    "  FROM live WINDOW w AS (PARTITION BY system_identifier, timeline ORDER BY n)) "
	    "SELECT timeline, pseg, segment, n - pn - 1, count(*) OVER (), "
	    "  system_identifier::text "
	    "FROM g WHERE n - pn > 1 AND n - pn - 1 > (SELECT count(*) FROM wal_segments w "
	    "  WHERE w.service = $1 AND w.system_identifier = g.system_identifier "
	    "  AND w.timeline = g.timeline AND w.deleted_at IS NOT NULL "
	    "  AND length(w.segment) = 24 AND w.segment > g.pseg AND w.segment < g.segment) "
	    "ORDER BY system_identifier, timeline, n LIMIT 1",
	    2, vals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	bool gap = PQntuples(r) == 1;
	char summary[512] = "";
	cJSON *d = NULL;
	if (gap) {
		st->gaps++;
		snprintf(summary, sizeof(summary),
		    "service %s: archived WAL has %s gap(s); first on timeline %s of cluster %s: "
		    "%s segment(s) missing after %s (next archived: %s); point-in-time recovery "
		    "cannot cross it, take a base backup now",
		    service, PQgetvalue(r, 0, 4), PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 5),
		    PQgetvalue(r, 0, 3), PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2));
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "system_identifier", PQgetvalue(r, 0, 5));
		cJSON_AddStringToObject(d, "timeline", PQgetvalue(r, 0, 0));
		cJSON_AddStringToObject(d, "after", PQgetvalue(r, 0, 1));
		cJSON_AddStringToObject(d, "next", PQgetvalue(r, 0, 2));
		cJSON_AddStringToObject(d, "missing", PQgetvalue(r, 0, 3));
		cJSON_AddStringToObject(d, "gaps", PQgetvalue(r, 0, 4));
	}
	PQclear(r);
	rv = set(cat, key, cfg, service, COORD_ALERT_WAL_GAP, gap, summary, d, now_ms, st, err);
	cJSON_Delete(d);
	return (rv);
}

/* A planted or moved object at a WAL key: wal-push archived the file under
 * its alternate name and went on, so nothing else would ever say that
 * someone writes into this service's prefix. Pages while a conflict was
 * reported within [alerts] refusal_window; the summary names the newest. */
static int
check_conflict(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, int64_t now_ms, coord_walwatch_stats *st, coffer_err *err)
{
	int64_t window_ms = coffer_config_duration_ms(cfg->ini, "alerts", "refusal_window");
	char since[24];
	snprintf(since, sizeof(since), "%" PRId64, now_ms - window_ms);
	const char *vals[] = { service, since };
	int rv;
	PGresult *r = query(cat, "reading WAL object conflicts",
	    "SELECT name, object_name, reason, agent, system_identifier::text, "
	    "  count(*) OVER ()::text FROM wal_conflicts "
	    "WHERE service = $1 AND reported_at >= to_timestamp($2::bigint / 1000.0) "
	    "ORDER BY reported_at DESC, id DESC LIMIT 1",
	    2, vals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	bool active = PQntuples(r) == 1;
	char summary[1024] = "";
	cJSON *d = NULL;
	if (active) {
		st->conflicts++;
		snprintf(summary, sizeof(summary),
		    "service %s: %s WAL file(s) found their key taken by an object that is not the "
		    "cluster's authentic file, newest %s (agent %s): %s; archiving went on under "
		    "%s, but something else writes into this service's prefix",
		    service, PQgetvalue(r, 0, 5), PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 3),
		    PQgetvalue(r, 0, 2), PQgetvalue(r, 0, 1));
		d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "name", PQgetvalue(r, 0, 0));
		cJSON_AddStringToObject(d, "object_name", PQgetvalue(r, 0, 1));
		cJSON_AddStringToObject(d, "reason", PQgetvalue(r, 0, 2));
		cJSON_AddStringToObject(d, "agent", PQgetvalue(r, 0, 3));
		cJSON_AddStringToObject(d, "system_identifier", PQgetvalue(r, 0, 4));
		cJSON_AddStringToObject(d, "conflicts", PQgetvalue(r, 0, 5));
	}
	PQclear(r);
	rv = set(
	    cat, key, cfg, service, COORD_ALERT_WAL_CONFLICT, active, summary, d, now_ms, st, err);
	cJSON_Delete(d);
	return (rv);
}

static double
num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (cJSON_IsNumber(v) ? v->valuedouble : 0);
}

static const char *
str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (cJSON_IsString(v) ? v->valuestring : "");
}

static int
check_archiver(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, int64_t per, int64_t now_ms, coord_walwatch_stats *st, coffer_err *err)
{
	int64_t quiet_ms = coffer_config_duration_ms(cfg->ini, "alerts", "agent_quiet");
	int64_t lag_max = coffer_config_int(cfg->ini, "alerts", "wal_lag_segments");
	char since[24];
	snprintf(since, sizeof(since), "%" PRId64, now_ms - quiet_ms);
	const char *vals[] = { service, since };
	int rv;
	/* Every agent that reports on its archiver, stale or not: a stale
	 * heartbeat cannot raise a page, and it cannot clear one either. */
	PGresult *r = query(cat, "reading the agents' archiver status",
	    "SELECT name, heartbeat::text, "
	    "heartbeat_at >= to_timestamp($2::bigint / 1000.0) IS TRUE FROM agents "
	    "WHERE service = $1 AND revoked_at IS NULL AND heartbeat ? 'current_wal' ORDER BY name",
	    2, vals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	bool failing = false, lagging = false;
	/* Whether every reporting agent said, recently, how its archiver is
	 * doing: only then can "not failing" clear a page. An agent that went
	 * quiet may be failing still (agent_quiet pages for the silence). */
	bool known = PQntuples(r) > 0;
	char fail_summary[512] = "", lag_summary[512] = "";
	cJSON *fd = NULL, *ld = NULL;
	for (int i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 2), "t") != 0) {
			known = false;
			continue;
		}
		cJSON *hb = cJSON_Parse(PQgetvalue(r, i, 1));
		if (hb == NULL) {
			continue;
		}
		const char *agent = PQgetvalue(r, i, 0);
		double failed_at = num(hb, "last_failed_at_ms");
		double archived_at = num(hb, "last_archived_at_ms");
		if (!failing && failed_at > 0 && failed_at > archived_at) {
			failing = true;
			snprintf(fail_summary, sizeof(fail_summary),
			    "service %s: archive_command is failing (agent %s: %.0f failures, last on "
			    "%s; last success %s); PostgreSQL keeps the WAL in pg_wal until it works",
			    service, agent, num(hb, "archive_failed_count"),
			    str(hb, "last_failed_wal"),
			    str(hb, "last_archived_wal")[0] != '\0' ? str(hb, "last_archived_wal")
			                                            : "never");
			fd = cJSON_CreateObject();
			cJSON_AddStringToObject(fd, "agent", agent);
			cJSON_AddStringToObject(fd, "last_failed_wal", str(hb, "last_failed_wal"));
			cJSON_AddNumberToObject(
			    fd, "failed_count", num(hb, "archive_failed_count"));
		}
		/* Waiting segments: the archiver's own count when the agent may
		 * list archive_status, else the distance between the segment
		 * being written and the last one archived. */
		int64_t waiting = (int64_t)num(hb, "wal_ready_count");
		int64_t cur = coord_walwatch_segno(str(hb, "current_wal"), per);
		int64_t last = coord_walwatch_segno(str(hb, "last_archived_wal"), per);
		if (cur >= 0 && last >= 0 && cur - last - 1 > waiting) {
			waiting = cur - last - 1;
		}
		if (!lagging && waiting >= lag_max) {
			lagging = true;
			snprintf(lag_summary, sizeof(lag_summary),
			    "service %s: %" PRId64 " WAL segments wait to be archived (agent %s, "
			    "writing %s, last archived %s; bound %" PRId64 ")",
			    service, waiting, agent, str(hb, "current_wal"),
			    str(hb, "last_archived_wal")[0] != '\0' ? str(hb, "last_archived_wal")
			                                            : "none",
			    lag_max);
			ld = cJSON_CreateObject();
			cJSON_AddStringToObject(ld, "agent", agent);
			cJSON_AddNumberToObject(ld, "waiting_segments", (double)waiting);
			cJSON_AddStringToObject(ld, "current_wal", str(hb, "current_wal"));
		}
		cJSON_Delete(hb);
	}
	PQclear(r);
	st->failing += failing;
	st->lagging += lagging;
	rv = 0;
	if (failing || known) {
		rv = set(cat, key, cfg, service, COORD_ALERT_WAL_FAILING, failing, fail_summary, fd,
		    now_ms, st, err);
	}
	if (rv == 0 && (lagging || known)) {
		rv = set(cat, key, cfg, service, COORD_ALERT_WAL_LAG, lagging, lag_summary, ld,
		    now_ms, st, err);
	}
	cJSON_Delete(fd);
	cJSON_Delete(ld);
	return (rv);
}

int
coord_walwatch_tick(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    int64_t now_ms, coord_walwatch_stats *stats, coffer_err *err)
{
	coord_walwatch_stats local;
	coord_walwatch_stats *st = stats != NULL ? stats : &local;
	memset(st, 0, sizeof(*st));
	int last = 0;
	for (size_t i = 0; i < cfg->n_services; i++) {
		const char *service = cfg->services[i].name;
		int64_t per = DEFAULT_PER_LOG;
		coffer_err e = { 0 };
		int rv = coord_walwatch_per_log(cat, service, &per, &e);
		if (rv == 0) {
			rv = check_gap(cat, key, cfg, service, per, now_ms, st, &e);
		}
		if (rv == 0) {
			rv = check_archiver(cat, key, cfg, service, per, now_ms, st, &e);
		}
		if (rv == 0) {
			rv = check_conflict(cat, key, cfg, service, now_ms, st, &e);
		}
		if (rv == 0) {
			st->services++;
			continue;
		}
		st->errors++;
		last = rv;
		coffer_log_error("wal watch failed", "service=%s error=%s", service, e.msg);
		*err = e;
		if (rv == COFFER_EUNAVAIL || !coord_catalog_ok(cat)) {
			return (rv);
		}
	}
	return (last);
}

/* An LSN as PostgreSQL prints it. */
static void
lsn_text(uint64_t lsn, char out[20])
{
	snprintf(out, 20, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}

static void
add_ms(cJSON *o, const char *name, const char *ms)
{
	char buf[40];
	if (ms == NULL || ms[0] == '\0') {
		cJSON_AddNullToObject(o, name);
		return;
	}
	cJSON_AddStringToObject(
	    o, name, coffer_time_format(buf, sizeof(buf), strtoll(ms, NULL, 10)));
}

int
coord_walwatch_windows(coord_catalog *cat, const char *service, cJSON *arr, coffer_err *err)
{
	int64_t per = DEFAULT_PER_LOG;
	int rv = coord_walwatch_per_log(cat, service, &per, err);
	if (rv != 0) {
		return (rv);
	}
	int64_t seg_size = ((int64_t)1 << 32) / per;
	char per_text[24], size_text[24];
	snprintf(per_text, sizeof(per_text), "%" PRId64, per);
	snprintf(size_text, sizeof(size_text), "%" PRId64, seg_size);
	const char *vals[] = { service, per_text, size_text };
	/* Runs: n - row_number() is constant along consecutive segments. */
	PGresult *r = query(cat, "computing the recoverable windows",
	    "WITH live AS (SELECT system_identifier, timeline, segment, archived_at, "
	    "    ('x' || substr(segment, 9, 8))::bit(32)::bigint * $2::bigint "
	    "    + ('x' || substr(segment, 17, 8))::bit(32)::bigint AS n "
	    "  FROM wal_segments WHERE service = $1 AND deleted_at IS NULL "
	    "  AND length(segment) = 24), "
	    "runs AS (SELECT *, n - row_number() OVER (PARTITION BY system_identifier, timeline "
	    "  ORDER BY n) AS grp FROM live), "
	    "r AS (SELECT system_identifier, timeline, grp, min(n) AS first_n, max(n) AS last_n "
	    "  FROM runs GROUP BY 1, 2, 3), "
	    "b AS (SELECT id, system_identifier, timeline, finished_at, stop_lsn, "
	    "  floor((start_lsn - '0/0'::pg_lsn) / $3::bigint)::bigint AS s0, "
	    "  floor((stop_lsn - '0/1'::pg_lsn) / $3::bigint)::bigint AS s1 "
	    "  FROM backups WHERE service = $1 AND kind = 'physical' "
	    "  AND status IN ('completed', 'pending_delete') "
	    "  AND start_lsn IS NOT NULL AND stop_lsn > '0/0') "
	    "SELECT r.system_identifier::text, r.timeline, ob.id, "
	    "  (extract(epoch FROM ob.finished_at) * 1000)::bigint, ob.stop_lsn::text, "
	    "  ls.segment, r.last_n, (extract(epoch FROM ls.archived_at) * 1000)::bigint, "
	    "  ob.nb, r.last_n - ob.s0 + 1 "
	    "FROM r "
	    "JOIN LATERAL (SELECT segment, archived_at FROM runs WHERE "
	    "  runs.system_identifier = r.system_identifier AND runs.timeline = r.timeline "
	    "  AND runs.grp = r.grp ORDER BY n DESC LIMIT 1) ls ON true "
	    "JOIN LATERAL (SELECT b.id, b.finished_at, b.stop_lsn, b.s0, count(*) OVER () AS nb "
	    "  FROM b WHERE b.system_identifier = r.system_identifier AND b.timeline = r.timeline "
	    "  AND b.s0 >= r.first_n AND greatest(b.s1, b.s0) <= r.last_n "
	    "  ORDER BY b.stop_lsn LIMIT 1) ob ON true "
	    "ORDER BY 1, 2, r.first_n",
	    3, vals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	for (int i = 0; i < PQntuples(r); i++) {
		cJSON *o = cJSON_CreateObject();
		if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			break;
		}
		cJSON_AddStringToObject(o, "kind", "physical");
		cJSON_AddStringToObject(o, "system_identifier", PQgetvalue(r, i, 0));
		cJSON_AddNumberToObject(
		    o, "timeline", (double)strtol(PQgetvalue(r, i, 1), NULL, 10));
		cJSON *old = cJSON_AddObjectToObject(o, "oldest");
		cJSON_AddStringToObject(old, "backup_id", PQgetvalue(r, i, 2));
		add_ms(old, "time", PQgetvalue(r, i, 3));
		cJSON_AddStringToObject(old, "lsn", PQgetvalue(r, i, 4));
		cJSON *nw = cJSON_AddObjectToObject(o, "newest");
		cJSON_AddStringToObject(nw, "segment", PQgetvalue(r, i, 5));
		char lsn[20];
		lsn_text((strtoull(PQgetvalue(r, i, 6), NULL, 10) + 1) * (uint64_t)seg_size, lsn);
		cJSON_AddStringToObject(nw, "lsn", lsn);
		add_ms(nw, "archived_at", PQgetvalue(r, i, 7));
		cJSON_AddStringToObject(nw, "precision",
		    "up to the end of the segment; every commit in it happened at or before "
		    "archived_at");
		cJSON_AddNumberToObject(
		    o, "backups", (double)strtoll(PQgetvalue(r, i, 8), NULL, 10));
		cJSON_AddNumberToObject(
		    o, "segments", (double)strtoll(PQgetvalue(r, i, 9), NULL, 10));
		cJSON_AddNumberToObject(o, "segment_size", (double)seg_size);
	}
	PQclear(r);
	const char *lvals[] = { service };
	r = query(cat, "listing the logical backups",
	    "SELECT id, (extract(epoch FROM started_at) * 1000)::bigint, "
	    "(extract(epoch FROM finished_at) * 1000)::bigint FROM backups "
	    "WHERE service = $1 AND kind = 'logical' AND status IN ('completed', 'pending_delete') "
	    "ORDER BY finished_at",
	    1, lvals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	if (PQntuples(r) > 0) {
		cJSON *o = cJSON_CreateObject();
		if (o != NULL && cJSON_AddItemToArray(arr, o)) {
			cJSON_AddStringToObject(o, "kind", "logical");
			cJSON *points = cJSON_AddArrayToObject(o, "points");
			for (int i = 0; points != NULL && i < PQntuples(r); i++) {
				cJSON *p = cJSON_CreateObject();
				if (p == NULL || !cJSON_AddItemToArray(points, p)) {
					cJSON_Delete(p);
					break;
				}
				cJSON_AddStringToObject(p, "backup_id", PQgetvalue(r, i, 0));
				add_ms(p, "snapshot_at", PQgetvalue(r, i, 1));
				add_ms(p, "finished_at", PQgetvalue(r, i, 2));
			}
		} else {
			cJSON_Delete(o);
		}
	}
	PQclear(r);
	return (0);
}
