/*
 * WAL retention; see coordinator/wal/walprune.h.
 *
 * Design notes.
 * The keep set is computed in C from a service's kept physical backups
 * (few rows), then the candidates are read in batches of segment names
 * ordered by number: the oldest segments go first, so an interrupted pass
 * never leaves a hole in the middle of what is kept. Each segment's row is
 * marked deleted in its own short statement right after its object is
 * removed: a crash between the two leaves a live row whose object is gone,
 * which the next pass deletes again ("gone") and marks.
 * Each cluster of a service (system identifier) is its own line of WAL,
 * kept by its own backups: segment numbers of a rebuilt cluster start again
 * and say nothing about the old one's.
 */
#include "coordinator/wal/walprune.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/log.h"
#include "coordinator/policy/prune.h"
#include "coordinator/wal/walwatch.h"

int64_t
coord_walprune_lsn_segno(const char *lsn, int64_t per_log)
{
	char *end;
	if (lsn == NULL || per_log <= 0) {
		return (-1);
	}
	unsigned long long hi = strtoull(lsn, &end, 16);
	if (end == lsn || *end != '/' || hi > 0xFFFFFFFFull) {
		return (-1);
	}
	const char *lo_text = end + 1;
	unsigned long long lo = strtoull(lo_text, &end, 16);
	if (end == lo_text || *end != '\0' || lo > 0xFFFFFFFFull) {
		return (-1);
	}
	uint64_t seg_size = ((uint64_t)1 << 32) / (uint64_t)per_log;
	return ((int64_t)(hi * (uint64_t)per_log + lo / seg_size));
}

/* A range of segment numbers that must stay, [from, to]; to = -1: open. */
typedef struct keep_range {
	int64_t from, to;
} keep_range;

typedef struct keep_set {
	keep_range *r;
	size_t n;
	int64_t anchor_from; /* everything from here on stays */
	char anchor_id[160];
} keep_set;

static bool
kept(const keep_set *k, int64_t n)
{
	if (n >= k->anchor_from) {
		return (true);
	}
	for (size_t i = 0; i < k->n; i++) {
		if (n >= k->r[i].from && n <= k->r[i].to) {
			return (true);
		}
	}
	return (false);
}

/* The keep set of one cluster of service; *none when nothing of it may be
 * deleted: it never had a completed physical backup (the first one may be on
 * its way). A cluster whose backups have all been deleted keeps nothing
 * (anchor_from past every segment): its WAL has nothing left to replay onto
 * and only the PITR window holds it. */
static int
keep_set_load(coord_catalog *cat, const char *service, const char *sysid, int64_t per,
    int64_t window_ms, int64_t now_ms, keep_set *k, bool *none, coffer_err *err)
{
	memset(k, 0, sizeof(*k));
	*none = true;
	const char *vals[] = { service, sysid };
	int rv;
	PGresult *r = coord_catalog_query(cat,
	    "SELECT id, start_lsn::text, stop_lsn::text, "
	    "  (extract(epoch FROM finished_at) * 1000)::bigint, status FROM backups "
	    "WHERE service = $1 AND kind = 'physical' AND system_identifier = $2::numeric "
	    "  AND status IN ('completed', 'pending_delete', 'deleted') "
	    "  AND start_lsn IS NOT NULL AND stop_lsn IS NOT NULL "
	    "ORDER BY status = 'deleted' DESC, finished_at, id",
	    2, vals, "reading the cluster's physical backups", &rv, err);
	if (r == NULL) {
		return (rv);
	}
	/* Deleted backups sort first: the live ones are the tail. */
	int all = PQntuples(r), skip = 0;
	while (skip < all && strcmp(PQgetvalue(r, skip, 4), "deleted") == 0) {
		skip++;
	}
	int n = all - skip;
	if (n <= 0) {
		PQclear(r);
		if (skip > 0) {
			k->anchor_from = INT64_MAX;
			snprintf(k->anchor_id, sizeof(k->anchor_id), "none");
			*none = false;
		}
		return (0);
	}
	k->r = calloc((size_t)n, sizeof(*k->r));
	if (k->r == NULL) {
		PQclear(r);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for WAL retention"));
	}
	/* The anchor: the newest that finished before the window opened, else
	 * the oldest. */
	int anchor = 0;
	for (int i = 0; i < n; i++) {
		if (strtoll(PQgetvalue(r, skip + i, 3), NULL, 10) <= now_ms - window_ms) {
			anchor = i;
		}
	}
	for (int i = 0; i < n; i++) {
		int64_t from = coord_walprune_lsn_segno(PQgetvalue(r, skip + i, 1), per);
		int64_t to = coord_walprune_lsn_segno(PQgetvalue(r, skip + i, 2), per);
		if (from < 0 || to < from) {
			rv = coffer_err_set(err, COFFER_ECORRUPT,
			    "backup %s has start/stop LSNs %s..%s that do not parse",
			    PQgetvalue(r, skip + i, 0), PQgetvalue(r, skip + i, 1),
			    PQgetvalue(r, skip + i, 2));
			PQclear(r);
			free(k->r);
			k->r = NULL;
			return (rv);
		}
		if (i == anchor) {
			k->anchor_from = from;
			snprintf(
			    k->anchor_id, sizeof(k->anchor_id), "%s", PQgetvalue(r, skip + i, 0));
		} else if (i < anchor) {
			k->r[k->n++] = (keep_range) { from, to };
		}
	}
	/* A backup newer than the anchor starts after it: already kept. */
	PQclear(r);
	*none = false;
	return (0);
}

static int
mark_deleted(coord_catalog *cat, const char *service, const char *sysid, const char *tl,
    const char *segment, coffer_err *err)
{
	const char *vals[] = { service, tl, segment, sysid };
	int rv;
	PGresult *r = coord_catalog_query(cat,
	    "UPDATE wal_segments SET deleted_at = now() "
	    "WHERE service = $1 AND system_identifier = $4::numeric AND timeline = $2::integer "
	    "AND segment = $3 AND deleted_at IS NULL",
	    4, vals, "marking a WAL segment deleted", &rv, err);
	PQclear(r);
	return (rv);
}

static int
prune_cluster(coord_catalog *cat, const coord_audit_key *key, const coord_service_policy *p,
    const char *sysid, int64_t per, coffer_repo *repo, int64_t now_ms, coord_walprune_stats *st,
    coffer_err *err)
{
	keep_set k;
	bool none;
	int rv = keep_set_load(cat, p->name, sysid, per, p->pitr_window_ms, now_ms, &k, &none, err);
	if (rv != 0 || none) {
		return (rv);
	}
	uint64_t sysid_n = strtoull(sysid, NULL, 10);
	char per_text[24], before[24];
	snprintf(per_text, sizeof(per_text), "%" PRId64, per);
	snprintf(before, sizeof(before), "%" PRId64, now_ms - p->pitr_window_ms);
	int64_t deleted = 0, failed = 0;
	char first[40] = "", last[40] = "";
	/* The candidates: below the anchor and older than the window; kept
	 * ranges are skipped here (few backups), so a batch may come back
	 * with nothing to do and the pass moves past it by number. */
	int64_t after = -1;
	for (;;) {
		char after_text[24];
		snprintf(after_text, sizeof(after_text), "%" PRId64, after);
		char anchor_text[24];
		snprintf(anchor_text, sizeof(anchor_text), "%" PRId64, k.anchor_from);
		const char *vals[] = { p->name, per_text, anchor_text, before, after_text, sysid };
		PGresult *r = coord_catalog_query(cat,
		    "SELECT timeline::text, segment, n, object FROM (SELECT timeline, segment, "
		    "  COALESCE(object_name, segment) AS object, "
		    "  ('x' || substr(segment, 9, 8))::bit(32)::bigint * $2::bigint "
		    "  + ('x' || substr(segment, 17, 8))::bit(32)::bigint AS n "
		    "  FROM wal_segments WHERE service = $1 AND system_identifier = $6::numeric "
		    "  AND deleted_at IS NULL AND archived_at < to_timestamp($4::bigint / 1000.0)) s "
		    "WHERE n < $3::bigint AND n > $5::bigint ORDER BY n, timeline, segment LIMIT 1000",
		    6, vals, "listing WAL segments past retention", &rv, err);
		if (r == NULL) {
			break;
		}
		int rows = PQntuples(r);
		for (int i = 0; i < rows && rv == 0; i++) {
			int64_t n = strtoll(PQgetvalue(r, i, 2), NULL, 10);
			after = n;
			if (kept(&k, n)) {
				continue;
			}
			const char *tl = PQgetvalue(r, i, 0), *seg = PQgetvalue(r, i, 1);
			char okey[COFFER_REPO_KEY_MAX];
			coffer_err e = { 0 };
			int drc = coffer_repo_wal_key(okey, sizeof(okey), p->name, sysid_n,
			    (uint32_t)strtoul(tl, NULL, 10), PQgetvalue(r, i, 3), &e);
			if (drc == 0) {
				drc = coffer_repo_delete(repo, okey, &e);
			}
			coord_prune_outcome o = coord_prune_classify(drc, &e);
			if (o == COORD_PRUNE_DELETED || o == COORD_PRUNE_GONE) {
				if ((rv = mark_deleted(cat, p->name, sysid, tl, seg, err)) != 0) {
					break;
				}
				deleted++;
				if (first[0] == '\0') {
					snprintf(first, sizeof(first), "%s", seg);
				}
				snprintf(last, sizeof(last), "%s", seg);
			} else {
				failed++;
				coffer_log_warn("WAL segment not deleted",
				    "service=%s system_identifier=%s "
				    "segment=%s outcome=%s error=%s",
				    p->name, sysid, seg, coord_prune_outcome_name(o), e.msg);
			}
		}
		PQclear(r);
		if (rv != 0 || rows < COORD_WALPRUNE_BATCH) {
			break;
		}
	}
	free(k.r);
	st->deleted += deleted;
	st->failed += failed;
	if (rv != 0 || (deleted == 0 && failed == 0)) {
		return (rv);
	}
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "system_identifier", sysid);
	cJSON_AddNumberToObject(d, "deleted", (double)deleted);
	cJSON_AddNumberToObject(d, "failed", (double)failed);
	cJSON_AddStringToObject(d, "first", first);
	cJSON_AddStringToObject(d, "last", last);
	cJSON_AddStringToObject(d, "anchor_backup", k.anchor_id);
	cJSON_AddNumberToObject(d, "pitr_window_s", (double)(p->pitr_window_ms / 1000));
	char *text = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	rv = coord_audit_append(cat, key, "coordinator", "wal.pruned", p->name, text, NULL, err);
	cJSON_free(text);
	if (rv == 0) {
		coffer_log_info("WAL pruned",
		    "service=%s system_identifier=%s deleted=%" PRId64 " failed=%" PRId64
		    " first=%s last=%s anchor=%s",
		    p->name, sysid, deleted, failed, first, last, k.anchor_id);
	}
	return (rv);
}

/*
 * The rows of pruned segments (deleted_at set) stay only while they can
 * matter: the gap check counts them between two live segments of a line of
 * WAL to tell pruned from lost. A row with no live segment below it in its
 * line can never be between two, so it goes: the catalog keeps what is in
 * the repository, and the audit log ("wal.pruned") what was removed.
 */
static int
purge_rows(coord_catalog *cat, const char *service, coord_walprune_stats *st, coffer_err *err)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", COORD_WALPRUNE_BATCH);
	const char *vals[] = { service, lim };
	int rv = 0;
	int64_t purged = 0;
	for (;;) {
		PGresult *r = coord_catalog_query(cat,
		    "DELETE FROM wal_segments WHERE (service, system_identifier, timeline, segment) IN "
		    "(SELECT t.service, t.system_identifier, t.timeline, t.segment FROM wal_segments t "
		    "WHERE t.service = $1 AND t.deleted_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
		    "wal_segments l WHERE l.service = t.service AND l.system_identifier = "
		    "t.system_identifier AND l.timeline = t.timeline AND l.deleted_at IS NULL "
		    "AND l.segment < t.segment) LIMIT $2::integer)",
		    2, vals, "dropping rows of pruned WAL", &rv, err);
		if (r == NULL) {
			break;
		}
		int64_t n = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		purged += n;
		if (n < COORD_WALPRUNE_BATCH) {
			break;
		}
	}
	st->purged += purged;
	if (purged > 0) {
		coffer_log_info(
		    "rows of pruned WAL dropped", "service=%s rows=%" PRId64, service, purged);
	}
	return (rv);
}

static int
prune_service(coord_catalog *cat, const coord_audit_key *key, const coord_service_policy *p,
    coffer_repo *repo, int64_t now_ms, coord_walprune_stats *st, coffer_err *err)
{
	int64_t per;
	int rv = coord_walwatch_per_log(cat, p->name, &per, err);
	if (rv != 0) {
		return (rv);
	}
	/* A service has one cluster, or a few once it was rebuilt: one row each. */
	const char *vals[] = { p->name };
	PGresult *r = coord_catalog_query(cat,
	    "SELECT DISTINCT system_identifier::text FROM wal_segments "
	    "WHERE service = $1 AND deleted_at IS NULL ORDER BY 1",
	    1, vals, "listing the service's clusters", &rv, err);
	if (r == NULL) {
		return (rv);
	}
	for (int i = 0; rv == 0 && i < PQntuples(r); i++) {
		rv = prune_cluster(cat, key, p, PQgetvalue(r, i, 0), per, repo, now_ms, st, err);
	}
	PQclear(r);
	return (rv != 0 ? rv : purge_rows(cat, p->name, st, err));
}

int
coord_walprune_pass(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    coffer_repo *repo, int64_t now_ms, coord_walprune_stats *stats, coffer_err *err)
{
	coord_walprune_stats local;
	coord_walprune_stats *st = stats != NULL ? stats : &local;
	memset(st, 0, sizeof(*st));
	int last = 0;
	for (size_t i = 0; i < cfg->n_services; i++) {
		coffer_err e = { 0 };
		int rv = prune_service(cat, key, &cfg->services[i], repo, now_ms, st, &e);
		if (rv == 0) {
			st->services++;
			continue;
		}
		st->errors++;
		last = rv;
		coffer_log_error(
		    "WAL retention failed", "service=%s error=%s", cfg->services[i].name, e.msg);
		*err = e;
		if (rv == COFFER_EUNAVAIL || !coord_catalog_ok(cat)) {
			return (rv);
		}
	}
	return (last);
}
