/*
 * WAL into DR as it is archived, so that point-in-time recovery works from
 * DR alone, and the catalog's record of each segment's DR copy (also used
 * for the WAL that goes with a physical backup, drbackup.c).
 *
 * What it promises: a segment is recorded as copied only once it reads
 * back from DR with the digest wal-push reported, and its lock lasts as
 * long as the segment stays inside the PITR window; segments go oldest
 * first, so what DR holds is a prefix and never a scatter with holes; a
 * failure stops the service's pass (DR is likely down) and what is left
 * is retried, paging dr_copy_lag (drplan.c) once older than [dr] copy_lag.
 */
#include "coordinator/dr/drcopy_internal.h"

#include <ctype.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/fmt.h"
#include "common/base/log.h"

int
drcopy_wal_copied(coord_catalog *cat, const char *service, const char *sysid, int timeline,
    const char *segment, coffer_err *err)
{
	char tl[COFFER_FMT_INT_SIZE];
	coffer_fmt_i64(tl, timeline);
	const char *v[] = { service, tl, segment, sysid };
	return (coord_catalog_query_exec(cat,
	    "UPDATE wal_segments SET dr_copied_at = now() WHERE service = $1 "
	    "AND system_identifier = $4::numeric AND timeline = $2::integer AND segment = $3 "
	    "AND dr_copied_at IS NULL",
	    4, v, "recording a WAL segment's DR copy", err));
}

/*
 * Point-in-time recovery from DR alone needs the WAL too: for a service
 * that copies to DR and has a PITR window, every archived segment inside
 * the window goes to DR, oldest first, locked (dr.lock) until it leaves
 * the window, checked against the digest wal-push reported and read back.
 * A failure stops the service's pass (DR is likely down); what is left is
 * retried next pass and, once older than [dr] copy_lag, pages dr_copy_lag.
 */
int
drcopy_copy_wal_stream(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	int rv = 0;
	for (size_t i = 0; i < d->cfg->n_services && rv == 0 && !atomic_load(&d->stop); i++) {
		const coord_service_policy *p = &d->cfg->services[i];
		if (!drcopy_copies(d->cfg, p->name) || p->pitr_window_ms <= 0) {
			continue;
		}
		char n[32], w[32], lim[COFFER_FMT_INT_SIZE], sec[96];
		coffer_fmt_i64(n, now_ms);
		coffer_fmt_i64(w, p->pitr_window_ms);
		coffer_fmt_i64(lim, WAL_PER_PASS);
		snprintf(sec, sizeof(sec), "service.%s", p->name);
		const char *v[] = { p->name, n, w, lim };
		PGresult *res = coord_catalog_query(cat,
		    "SELECT timeline, segment, encode(stored_sha256, 'hex'), stored_bytes, floor(extract(epoch FROM archived_at) * 1000)::bigint, system_identifier::text, COALESCE(object_name, segment) "
		    "FROM wal_segments WHERE service = $1 AND dr_copied_at IS NULL "
		    "AND deleted_at IS NULL AND archived_at > to_timestamp($2::bigint / 1000.0) - $3::bigint * "
		    "interval '1 millisecond' ORDER BY archived_at, segment LIMIT $4::integer",
		    4, v, "reading WAL to copy to DR", &rv, err);
		if (res == NULL) {
			break;
		}
		copy_job j;
		memset(&j, 0, sizeof(j));
		snprintf(j.service, sizeof(j.service), "%s", p->name);
		snprintf(
		    j.lock, sizeof(j.lock), "%s", coffer_config_str(d->cfg->ini, sec, "dr.lock"));
		for (char *c = j.lock; *c != '\0'; c++) {
			*c = (char)toupper((unsigned char)*c);
		}
		for (int r = 0; r < PQntuples(res) && rv == 0 && !atomic_load(&d->stop); r++) {
			int tl = atoi(PQgetvalue(res, r, 0));
			const char *seg = PQgetvalue(res, r, 1);
			const char *want = PQgetvalue(res, r, 2);
			int64_t bytes = strtoll(PQgetvalue(res, r, 3), NULL, 10);
			const char *sysid = PQgetvalue(res, r, 5);
			j.until_ms = strtoll(PQgetvalue(res, r, 4), NULL, 10) + p->pitr_window_ms;
			char src[COFFER_REPO_KEY_MAX], dst[COFFER_REPO_KEY_MAX + 8], got[65];
			char version[COFFER_S3_VERSION_ID_MAX] = "";
			bool exists = false;
			coffer_err e;
			coffer_err_clear(&e);
			int cr = coffer_repo_wal_key(src, sizeof(src), p->name,
			    strtoull(sysid, NULL, 10), (uint32_t)tl, PQgetvalue(res, r, 6), &e);
			if (cr == 0 &&
			    (size_t)snprintf(dst, sizeof(dst), "%s%s", d->dr_prefix, src) >=
			        sizeof(dst)) {
				cr = coffer_err_set(
				    &e, COFFER_EINVAL, "DR key for %s is too long", src);
			}
			if (cr == 0) {
				cr = drcopy_stream_object(
				    d, &j, src, dst, want, bytes, &exists, got, version, &e);
			}
			if (cr == 0) {
				cr = drcopy_verify_key(d, &j, dst, want, version, &e);
			}
			if (cr != 0) {
				coffer_log_warn("WAL not copied to DR",
				    "service=%s segment=%s error=%s", p->name, seg, e.msg);
				break;
			}
			rv = drcopy_wal_copied(cat, p->name, sysid, tl, seg, err);
			if (rv == 0) {
				st->wal_copied++;
			}
		}
		PQclear(res);
	}
	return (rv);
}
