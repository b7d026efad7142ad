/*
 * What is due for DR, decided on the maintenance tick from the catalog
 * alone: which backups each service's dr.copy wants (retention's tier
 * holders, or all), each copy's lock and retain-until, and the two alerts
 * that say when copies fail or fall behind.
 *
 * Why on the tick and apart from the copying: planning must never wait on
 * a repository, so it costs a few queries and a slow DR bucket cannot
 * delay it; the copier then works only from the rows written here, and is
 * woken when there may be some.
 *
 * What it promises: a copy's lock mode and retain-until are fixed once,
 * when the copy first becomes due, so a later policy change never shortens
 * a lock already asked for; a lock that would be over within a minute
 * protects nothing and is not planned; and the alerts read the catalog
 * only. A copy that failed, or is late, keeps its page open even after
 * retention deleted its backup (nothing was copied), until DR holds a
 * verified copy of a newer backup of the service.
 */
#include "coordinator/dr/drcopy_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/base/utf8.h"
#include "coordinator/policy/prune.h"
#include "coordinator/watch/alerts.h"

#define DAY_MS (24LL * 3600 * 1000)
/* A `forever` tier locks for this long: S3 needs a date. */
#define FOREVER_MS (100LL * 366 * DAY_MS)

const char *
drcopy_mode(const coord_config *cfg, const char *service)
{
	char sec[96];
	snprintf(sec, sizeof(sec), "service.%s", service);
	return (coffer_config_str(cfg->ini, sec, "dr.copy"));
}

bool
drcopy_copies(const coord_config *cfg, const char *service)
{
	return (strcmp(drcopy_mode(cfg, service), "none") != 0);
}

/* ---- planning (the tick) ---- */

/* Tier names from short to long, as retention names its reasons. */
static const char *const tier_words[] = { "daily", "weekly", "monthly", "yearly" };

static int
tier_rank(const char *word)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(word, tier_words[i]) == 0) {
			return (i);
		}
	}
	return (-1);
}

/* Whether the plan's entry b is wanted under mode, and its retain-until. */
static bool
wanted(const coord_service_policy *p, const coord_config *cfg, const char *mode, const cJSON *b,
    int64_t now_ms, int64_t *until_ms)
{
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(b, "status");
	if (!cJSON_IsString(status) || strcmp(status->valuestring, "completed") != 0) {
		return (false);
	}
	/* Only what the coordinator verified is copied: a claim, or a
	 * rejected backup, must not take a place in DR. */
	const cJSON *verify = cJSON_GetObjectItemCaseSensitive(b, "verify_state");
	if (!cJSON_IsString(verify) || strcmp(verify->valuestring, "verified") != 0) {
		return (false);
	}
	int min_rank = tier_rank(mode);
	bool holds = min_rank < 0; /* "all" */
	const cJSON *r;
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(b, "reasons"))
	{
		if (cJSON_IsString(r) && min_rank >= 0 && tier_rank(r->valuestring) >= min_rank) {
			holds = true;
		}
	}
	if (!holds) {
		return (false);
	}
	int64_t settled = 0, expires = 0;
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(b, "settled_at");
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(b, "expires_at");
	if (!cJSON_IsString(s) || coffer_time_parse(s->valuestring, &settled) != 0) {
		return (false);
	}
	char sec[96];
	snprintf(sec, sizeof(sec), "service.%s", p->name);
	if (coffer_config_has(cfg->ini, sec, "dr.retention")) {
		*until_ms = settled + coffer_config_duration_ms(cfg->ini, sec, "dr.retention");
	} else if (cJSON_IsString(e) && strcmp(e->valuestring, "never") == 0) {
		*until_ms = settled + FOREVER_MS;
	} else if (cJSON_IsString(e) && coffer_time_parse(e->valuestring, &expires) == 0) {
		*until_ms = expires;
	} else {
		*until_ms = now_ms + p->retention.grace_ms;
	}
	/* A lock that would already be over protects nothing. */
	return (*until_ms > now_ms + MINUTE_MS);
}

static int
plan_service(coord_catalog *cat, const coord_config *cfg, const coord_service_policy *p,
    int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	const char *v[] = { p->name };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT count(*) FROM backups b WHERE b.service = $1 AND b.status = 'completed' "
	    "AND b.verify_state = 'verified' AND NOT EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup_id = b.id "
	    "AND c.repo = 'dr')",
	    1, v, "counting backups without a DR copy", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	long uncopied = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (uncopied == 0) {
		return (0);
	}
	cJSON *plan = NULL;
	if ((rv = coord_retention_plan(cat, cfg, p->name, now_ms, &plan, err)) != 0) {
		return (rv);
	}
	const char *mode = drcopy_mode(cfg, p->name);
	char sec[96];
	snprintf(sec, sizeof(sec), "service.%s", p->name);
	const char *lock = coffer_config_str(cfg->ini, sec, "dr.lock");
	const cJSON *b;
	cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(plan, "backups"))
	{
		int64_t until = 0;
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(b, "id");
		if (!cJSON_IsString(id) || !wanted(p, cfg, mode, b, now_ms, &until)) {
			continue;
		}
		char u[32], n[32];
		coffer_fmt_i64(u, until);
		coffer_fmt_i64(n, now_ms);
		const char *iv[] = { id->valuestring, u, lock, n };
		res = coord_catalog_query(cat,
		    "INSERT INTO backup_copies (backup_id, repo, status, retain_until, lock_mode, "
		    "started_at) VALUES ($1, 'dr', 'copying', to_timestamp($2::bigint / 1000.0), $3, to_timestamp($4::bigint / 1000.0)) "
		    "ON CONFLICT (backup_id, repo) DO NOTHING",
		    4, iv, "planning a DR copy", &rv, err);
		if (res == NULL) {
			break;
		}
		if (strcmp(PQcmdTuples(res), "1") == 0) {
			st->planned++;
		}
		PQclear(res);
	}
	cJSON_Delete(plan);
	return (rv);
}

/* ---- alerts ---- */

static int
set_alert(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *check, bool active, const char *summary, cJSON *details,
    int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	char *text = details != NULL ? cJSON_PrintUnformatted(details) : NULL;
	cJSON_Delete(details);
	bool changed = false;
	int rv = coord_alerts_set(
	    cat, key, cfg, service, check, active, "error", summary, text, now_ms, &changed, err);
	cJSON_free(text);
	if (rv == 0 && changed) {
		if (active) {
			st->triggered++;
		} else {
			st->resolved++;
		}
	}
	return (rv);
}

/*
 * A copy of a backup that retention has since deleted can never be made any
 * more, and deleting the backup repairs nothing: the copy still counts (as
 * failed, or as late) until DR holds a verified copy of a newer backup of
 * the service, which is what the page asks for. The same text for both
 * checks, after "c" (the copy) and "b" (its backup).
 */
#define COPY_STILL_COUNTS                                                                 \
	"(b.status <> 'deleted' OR NOT EXISTS (SELECT 1 FROM backup_copies v "            \
	"JOIN backups vb ON vb.id = v.backup_id WHERE vb.service = $1 AND v.repo = 'dr' " \
	"AND v.status = 'verified' AND vb.finished_at > b.finished_at))"

int
coord_drcopy_alerts(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	coord_drcopy_stats local;
	if (st == NULL) {
		memset(&local, 0, sizeof(local));
		st = &local;
	}
	char n[32], lag[32];
	int64_t lag_ms = coffer_config_duration_ms(cfg->ini, "dr", "copy_lag");
	coffer_fmt_i64(n, now_ms);
	coffer_fmt_i64(lag, lag_ms);
	const coord_service_policy *p = coord_config_service(cfg, service);
	char win[32];
	coffer_fmt_i64(win, p != NULL ? p->pitr_window_ms : 0);
	const char *v[] = { service, n, lag, p != NULL && p->pitr_window_ms > 0 ? "t" : "f", win };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT (SELECT count(*) FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "  WHERE b.service = $1 AND c.repo = 'dr' AND c.status = 'failed' "
	    "  AND " COPY_STILL_COUNTS "), "
	    "(SELECT c.backup_id || ': ' || c.failure_reason || ' (attempt ' || "
	    "  (c.attempts - 1) || ')' FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "  WHERE b.service = $1 AND c.repo = 'dr' AND c.status = 'failed' "
	    "  AND " COPY_STILL_COUNTS " "
	    "  ORDER BY c.started_at LIMIT 1), "
	    "(SELECT count(*) FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "  WHERE b.service = $1 AND c.repo = 'dr' AND c.status IN ('copying', 'failed') "
	    "  AND " COPY_STILL_COUNTS " "
	    "  AND c.started_at < to_timestamp($2::bigint / 1000.0) - $3::bigint * interval '1 millisecond'), "
	    "(SELECT floor(extract(epoch FROM min(c.started_at)) * 1000)::bigint FROM backup_copies c "
	    "  JOIN backups b ON b.id = c.backup_id WHERE b.service = $1 AND c.repo = 'dr' "
	    "  AND c.status IN ('copying', 'failed')), "
	    "(SELECT count(*) FROM wal_segments w WHERE w.service = $1 AND $4::boolean "
	    "  AND w.dr_copied_at IS NULL AND w.deleted_at IS NULL "
	    "  AND w.archived_at < to_timestamp($2::bigint / 1000.0) - $3::bigint * interval '1 millisecond' "
	    "  AND w.archived_at > to_timestamp($2::bigint / 1000.0) - $5::bigint * interval '1 millisecond')",
	    5, v, "reading DR copy state", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	long failed = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long late = strtol(PQgetvalue(res, 0, 2), NULL, 10);
	char first[600], summary[900] = "", at[40], iv[32];
	/* Whole characters only: the catalog's jsonb refuses half of one. */
	snprintf(first, sizeof(first), "%s", PQgetvalue(res, 0, 1));
	coffer_utf8_cut(first, 590);
	int64_t oldest = PQgetisnull(res, 0, 3) ? 0 : strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	long wal_late = strtol(PQgetvalue(res, 0, 4), NULL, 10);
	PQclear(res);
	cJSON *det = cJSON_CreateObject();
	if (failed > 0) {
		snprintf(summary, sizeof(summary), "%ld DR cop%s of service %s failed; first: %s",
		    failed, failed == 1 ? "y" : "ies", service, first);
		cJSON_AddNumberToObject(det, "failed", (double)failed);
		cJSON_AddStringToObject(det, "first", first);
	}
	rv = set_alert(cat, key, cfg, service, COORD_ALERT_DR_COPY_FAILED, failed > 0, summary, det,
	    now_ms, st, err);
	if (rv != 0) {
		return (rv);
	}
	summary[0] = '\0';
	det = cJSON_CreateObject();
	if (late > 0) {
		snprintf(summary, sizeof(summary),
		    "%ld DR cop%s of service %s not verified within "
		    "[dr] copy_lag = %s; the oldest has been due since %s",
		    late, late == 1 ? "y" : "ies", service,
		    coffer_duration_format(iv, sizeof(iv), lag_ms),
		    coffer_time_format(at, sizeof(at), oldest));
		cJSON_AddNumberToObject(det, "late", (double)late);
		cJSON_AddStringToObject(det, "oldest_due_since", at);
	} else if (wal_late > 0) {
		snprintf(summary, sizeof(summary),
		    "%ld WAL segment%s of service %s not copied to DR "
		    "within [dr] copy_lag = %s: point-in-time recovery from DR stops before them",
		    wal_late, wal_late == 1 ? "" : "s", service,
		    coffer_duration_format(iv, sizeof(iv), lag_ms));
	}
	if (wal_late > 0) {
		cJSON_AddNumberToObject(det, "wal_segments_late", (double)wal_late);
	}
	return (set_alert(cat, key, cfg, service, COORD_ALERT_DR_COPY_LAG, late > 0 || wal_late > 0,
	    summary, det, now_ms, st, err));
}

static void
wake(coord_drcopy *d)
{
	if (d->worker != NULL) {
		coord_worker_kick(d->worker, coffer_clock_now(NULL));
	}
}

int
coord_drcopy_tick(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	coord_drcopy_stats local;
	if (st == NULL) {
		st = &local;
	}
	memset(st, 0, sizeof(*st));
	int last = 0;
	for (size_t i = 0; i < d->cfg->n_services; i++) {
		const coord_service_policy *p = &d->cfg->services[i];
		if (!drcopy_copies(d->cfg, p->name) || d->dr == NULL) {
			continue;
		}
		coffer_err e;
		coffer_err_clear(&e);
		int rv = plan_service(cat, d->cfg, p, now_ms, st, &e);
		if (rv == 0) {
			rv = coord_drcopy_alerts(cat, d->key, d->cfg, p->name, now_ms, st, &e);
		}
		if (rv != 0) {
			coffer_log_error(
			    "DR copy planning failed", "service=%s error=%s", p->name, e.msg);
			last = rv;
			*err = e;
			if (rv == COFFER_EUNAVAIL) {
				return (rv);
			}
		}
	}
	wake(d);
	return (last);
}
