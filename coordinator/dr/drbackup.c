/*
 * The DR copy of one backup, and the loop over the copies that are due: a
 * physical backup's WAL, then its data, manifest.json and attestation,
 * each proven in DR; then the outcome recorded with its audit row.
 *
 * Why in that order: the attestation is what rebuild-catalog trusts a
 * backup by, so it goes last and marks a complete copy; a physical backup
 * is restorable only with the WAL from its start to its stop, so that goes
 * first.
 *
 * What it promises: a copy is 'verified' only once every object has been
 * read back, in one transaction with its dr.copy_verified audit row; a
 * failure is recorded and audited (dr.copy_failed) and retried after a
 * minute, doubling up to [dr] retry_max, except a backup gone from or
 * damaged in the primary, which no retry can copy; and a copy cut short
 * by the coordinator stopping stays due, not failed.
 */
#include "coordinator/dr/drcopy_internal.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/stream/digest.h"
#include "coordinator/wal/walprune.h"
#include "coordinator/wal/walwatch.h"

#define ACTOR "coordinator"

/*
 * A physical backup is restorable only with the WAL from its start to its
 * stop: those segments go to DR with it, locked alike, each checked against
 * the digest wal-push reported and read back. A segment the catalog does
 * not know yet (its wal.archived event still on its way) fails the copy,
 * which is retried.
 */
static int
copy_wal(coord_drcopy *d, coord_catalog *cat, copy_job *j, coffer_err *err)
{
	int64_t per = 0;
	int rv = coord_walwatch_per_log(cat, j->service, &per, err);
	if (rv != 0) {
		return (rv);
	}
	int64_t from = coord_walprune_lsn_segno(j->start_lsn, per);
	int64_t to = coord_walprune_lsn_segno(j->stop_lsn, per);
	uint64_t sysid = strtoull(j->sysid, NULL, 10);
	if (from < 0 || to < from || j->timeline <= 0 || sysid == 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "backup %s has no usable system "
		    "identifier, timeline and start/stop LSNs ('%s', %d, %s..%s)",
		    j->id, j->sysid, j->timeline, j->start_lsn, j->stop_lsn));
	}
	for (int64_t n = from; n <= to && rv == 0; n++) {
		char seg[32], tl[COFFER_FMT_INT_SIZE], src[COFFER_REPO_KEY_MAX],
		    dst[COFFER_REPO_KEY_MAX + 8];
		snprintf(seg, sizeof(seg), "%08X%08X%08X", (unsigned)j->timeline,
		    (unsigned)(n / per), (unsigned)(n % per));
		coffer_fmt_i64(tl, j->timeline);
		const char *v[] = { j->service, tl, seg, j->sysid };
		PGresult *res = coord_catalog_query(cat,
		    "SELECT encode(stored_sha256, 'hex'), stored_bytes, COALESCE(object_name, segment) "
		    "FROM wal_segments "
		    "WHERE service = $1 AND system_identifier = $4::numeric "
		    "AND timeline = $2::integer AND segment = $3",
		    4, v, "reading a WAL segment's record", &rv, err);
		if (res == NULL) {
			return (rv);
		}
		if (PQntuples(res) == 0) {
			PQclear(res);
			coffer_err_set(err, COFFER_EUNAVAIL,
			    "WAL segment %s, needed by physical backup "
			    "%s, is not recorded as archived yet",
			    seg, j->id);
			return (coffer_err_hint(err,
			    "the copy is retried; if it persists, look for "
			    "wal_gap or wal_archive_failing alerts"));
		}
		char want[65], object[128];
		snprintf(want, sizeof(want), "%s", PQgetvalue(res, 0, 0));
		int64_t bytes = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		snprintf(object, sizeof(object), "%s", PQgetvalue(res, 0, 2));
		PQclear(res);
		if ((rv = coffer_repo_wal_key(src, sizeof(src), j->service, sysid,
		         (uint32_t)j->timeline, object, err)) != 0) {
			return (rv);
		}
		if ((size_t)snprintf(dst, sizeof(dst), "%s%s", d->dr_prefix, src) >= sizeof(dst)) {
			return (
			    coffer_err_set(err, COFFER_EINVAL, "DR key for %s is too long", src));
		}
		char got[65], version[COFFER_S3_VERSION_ID_MAX] = "";
		bool exists = false;
		rv = drcopy_stream_object(d, j, src, dst, want, bytes, &exists, got, version, err);
		if (rv == 0) {
			rv = drcopy_verify_key(d, j, dst, want, version, err);
		}
		if (rv == 0) {
			j->wal_segments++;
			rv = drcopy_wal_copied(cat, j->service, j->sysid, j->timeline, seg, err);
		}
	}
	return (rv);
}

/* The whole copy of one backup: publish, then prove. */
static int
copy_backup(coord_drcopy *d, coord_catalog *cat, copy_job *j, coffer_err *err)
{
	char sha[3][65];
	bool exists[3] = { false, false, false };
	/* Nothing of a backup whose objects were replaced goes to DR. */
	int rv = drcopy_check_replaced(d, j, err);
	/* WAL first: the attestation, last, marks a complete copy. */
	if (rv == 0 && strcmp(j->kind, "physical") == 0) {
		rv = copy_wal(d, cat, j, err);
	}
	if (rv == 0) {
		rv = drcopy_copy_object(
		    d, j, 0, j->stored_sha, j->stored_bytes, &exists[0], sha[0], err);
	}
	if (rv == 0) {
		rv = drcopy_copy_object(d, j, 1, j->manifest_sha, -1, &exists[1], sha[1], err);
	}
	if (rv != 0) {
		return (rv);
	}
	/* An object already in DR was not streamed: its expected digest comes
	 * from the catalog (data) or the primary (manifest). */
	if (exists[0]) {
		snprintf(sha[0], sizeof(sha[0]), "%s", j->stored_sha);
	}
	if (exists[1] || j->manifest_sha[0] == '\0') {
		char key[COFFER_REPO_KEY_MAX];
		if ((rv = coffer_repo_backup_key(
		         key, sizeof(key), j->service, j->id, "manifest.json", err)) == 0) {
			rv = drcopy_digest_primary_version(d, key, j->recorded[1], sha[1], err);
		}
		if (rv != 0) {
			return (rv);
		}
		if (j->manifest_sha[0] != '\0' && strcmp(sha[1], j->manifest_sha) != 0) {
			return (coffer_err_set(err, COFFER_ECORRUPT,
			    "manifest.json of %s in the "
			    "primary repository does not match the catalog's manifest_sha256",
			    j->id));
		}
	}
	char *att = NULL;
	size_t alen = 0;
	if ((rv = drcopy_attestation_of(d, j, sha[1], &att, &alen, err)) != 0) {
		return (rv);
	}
	uint8_t md[COFFER_SHA256_LEN];
	SHA256((const unsigned char *)att, alen, md);
	coffer_hex_encode(md, sizeof(md), sha[2]);
	rv = drcopy_put_small(d, j, 2, att, alen, &exists[2], err);
	free(att);
	for (int i = 0; i < 3 && rv == 0; i++) {
		rv = drcopy_verify_object(d, j, i, sha[i], err);
	}
	return (rv);
}

static int
record(coord_drcopy *d, coord_catalog *cat, const copy_job *j, int result, const coffer_err *e,
    int64_t started_ms, int64_t now_ms, coffer_err *err)
{
	bool ok = result == 0;
	cJSON *a = cJSON_CreateObject();
	cJSON *ver = cJSON_CreateObject();
	char until[40];
	cJSON_AddStringToObject(a, "service", j->service);
	cJSON_AddStringToObject(a, "backup_id", j->id);
	cJSON_AddStringToObject(a, "lock_mode", j->lock);
	cJSON_AddStringToObject(
	    a, "retain_until", coffer_time_format(until, sizeof(until), j->until_ms));
	cJSON_AddNumberToObject(a, "attempt", j->attempts);
	for (int i = 0; i < 3; i++) {
		cJSON_AddStringToObject(ver, drcopy_object_names[i], j->versions[i]);
	}
	if (ok) {
		cJSON_AddNumberToObject(a, "bytes", (double)j->stored_bytes);
		cJSON_AddStringToObject(a, "stored_sha256", j->stored_sha);
		cJSON_AddNumberToObject(
		    a, "seconds", (double)(coffer_clock_monotonic_ms() - started_ms) / 1000.0);
		cJSON_AddItemToObject(a, "versions", cJSON_Duplicate(ver, true));
		if (j->wal_segments > 0) {
			cJSON_AddNumberToObject(a, "wal_segments", j->wal_segments);
		}
	} else {
		cJSON_AddStringToObject(a, "problem", e->msg);
	}
	char *text = cJSON_PrintUnformatted(a);
	char *vtext = cJSON_PrintUnformatted(ver);
	cJSON_Delete(a);
	cJSON_Delete(ver);
	int rv = text == NULL || vtext == NULL
	    ? coffer_err_set(err, COFFER_ENOMEM, "no memory for a DR copy record")
	    : coord_catalog_begin(cat, err);
	if (rv == 0) {
		char n[32], b[32], backoff[32];
		coffer_fmt_i64(n, now_ms);
		coffer_fmt_i64(b, j->stored_bytes);
		/* 1 minute (or retry_max if shorter), doubled per failure,
		 * capped at retry_max. */
		int64_t cap = coffer_config_duration_ms(d->cfg->ini, "dr", "retry_max");
		int64_t wait = MINUTE_MS < cap ? MINUTE_MS : cap;
		for (int i = 1; i < j->attempts && wait < cap; i++) {
			wait *= 2;
		}
		coffer_fmt_i64(backoff, wait < cap ? wait : cap);
		char reason[1024];
		if (e->hint[0] != '\0') {
			snprintf(reason, sizeof(reason), "%s (hint: %s)", e->msg, e->hint);
		} else {
			snprintf(reason, sizeof(reason), "%s", e->msg);
		}
		const char *v[] = { j->id, j->stored_sha, b, vtext, n, reason, backoff };
		if (ok) {
			rv = coord_catalog_query_exec(cat,
			    "UPDATE backup_copies SET status = 'verified', stored_sha256 = decode($2, "
			    "'hex'), stored_bytes = $3::bigint, versions = $4::jsonb, finished_at = to_timestamp($5::bigint / 1000.0), failure_reason = NULL, next_attempt_at = NULL "
			    "WHERE backup_id = $1 AND repo = 'dr'",
			    5, v, "recording a verified DR copy", err);
		} else {
			/* A backup gone from the primary cannot be copied later. */
			const char *vv[] = { j->id, n, reason, backoff,
				result == COFFER_ENOENT || result == COFFER_ECORRUPT ? "t" : "f" };
			rv = coord_catalog_query_exec(cat,
			    "UPDATE backup_copies SET status = 'failed', attempts = attempts + 1, "
			    "failure_reason = $3, next_attempt_at = CASE WHEN $5::boolean "
			    "THEN 'infinity'::timestamptz ELSE to_timestamp($2::bigint / 1000.0) + $4::bigint * "
			    "interval '1 millisecond' END WHERE backup_id = $1 AND repo = 'dr'",
			    5, vv, "recording a failed DR copy", err);
		}
	}
	if (rv == 0) {
		rv = coord_audit_append(cat, d->key, ACTOR,
		    ok ? "dr.copy_verified" : "dr.copy_failed", j->id, text, NULL, err);
	}
	if (rv == 0) {
		rv = coord_catalog_commit(cat, err);
	} else if (text != NULL && vtext != NULL) {
		coord_catalog_rollback(cat);
	}
	cJSON_free(text);
	cJSON_free(vtext);
	return (rv);
}

int
drcopy_copy_due(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	char n[32], lim[COFFER_FMT_INT_SIZE];
	coffer_fmt_i64(n, now_ms);
	coffer_fmt_i64(lim, coffer_config_int(d->cfg->ini, "dr", "copies_per_pass"));
	const char *v[] = { n, lim, strcmp(coffer_repo_type(d->primary), "s3") == 0 ? "t" : "f" };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT c.backup_id, b.service, COALESCE(b.agent, ''), b.kind, "
	    "encode(b.stored_sha256, 'hex'), b.stored_bytes, "
	    "COALESCE(b.manifest->>'manifest_sha256', ''), floor(extract(epoch FROM c.retain_until) * 1000)::bigint, "
	    "upper(c.lock_mode), c.attempts, COALESCE(encode(a.pubkey, 'hex'), ''), b.status, "
	    "COALESCE(b.timeline, 0), COALESCE(b.start_lsn::text, ''), "
	    "COALESCE(b.stop_lsn::text, ''), COALESCE(b.system_identifier::text, ''), "
	    "COALESCE((SELECT o.version_id FROM backup_objects o WHERE o.backup_id = b.id "
	    "AND o.object = 'data'), ''), "
	    "COALESCE((SELECT o.version_id FROM backup_objects o WHERE o.backup_id = b.id "
	    "AND o.object = 'manifest.json'), '') "
	    "FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "LEFT JOIN agents a ON a.name = b.agent "
	    "WHERE c.repo = 'dr' AND c.status IN ('copying', 'failed') "
	    "AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= to_timestamp($1::bigint / 1000.0)) "
	    /* A versioned primary: the versions of record first (the
	     * integrity worker records them as the backup completes). */
	    "AND (NOT $3::boolean OR b.status NOT IN ('completed', 'pending_delete') "
	    "OR EXISTS (SELECT 1 FROM backup_objects o WHERE o.backup_id = b.id)) "
	    "ORDER BY c.next_attempt_at NULLS FIRST, c.started_at LIMIT $2::integer",
	    3, v, "reading due DR copies", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int rows = PQntuples(res);
	copy_job *jobs = calloc((size_t)(rows > 0 ? rows : 1), sizeof(*jobs));
	if (jobs == NULL) {
		PQclear(res);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for DR copies"));
	}
	bool *gone = calloc((size_t)(rows > 0 ? rows : 1), sizeof(*gone));
	for (int i = 0; gone != NULL && i < rows; i++) {
		copy_job *j = &jobs[i];
		snprintf(j->id, sizeof(j->id), "%s", PQgetvalue(res, i, 0));
		snprintf(j->service, sizeof(j->service), "%s", PQgetvalue(res, i, 1));
		snprintf(j->agent, sizeof(j->agent), "%s", PQgetvalue(res, i, 2));
		snprintf(j->kind, sizeof(j->kind), "%s", PQgetvalue(res, i, 3));
		snprintf(j->stored_sha, sizeof(j->stored_sha), "%s", PQgetvalue(res, i, 4));
		j->stored_bytes =
		    PQgetisnull(res, i, 5) ? -1 : strtoll(PQgetvalue(res, i, 5), NULL, 10);
		snprintf(j->manifest_sha, sizeof(j->manifest_sha), "%s", PQgetvalue(res, i, 6));
		j->until_ms = strtoll(PQgetvalue(res, i, 7), NULL, 10);
		snprintf(j->lock, sizeof(j->lock), "%s", PQgetvalue(res, i, 8));
		j->attempts = atoi(PQgetvalue(res, i, 9));
		snprintf(j->pubkey_hex, sizeof(j->pubkey_hex), "%s", PQgetvalue(res, i, 10));
		j->timeline = atoi(PQgetvalue(res, i, 12));
		snprintf(j->start_lsn, sizeof(j->start_lsn), "%s", PQgetvalue(res, i, 13));
		snprintf(j->stop_lsn, sizeof(j->stop_lsn), "%s", PQgetvalue(res, i, 14));
		snprintf(j->sysid, sizeof(j->sysid), "%s", PQgetvalue(res, i, 15));
		snprintf(j->recorded[0], sizeof(j->recorded[0]), "%s", PQgetvalue(res, i, 16));
		snprintf(j->recorded[1], sizeof(j->recorded[1]), "%s", PQgetvalue(res, i, 17));
		const char *bs = PQgetvalue(res, i, 11);
		gone[i] = strcmp(bs, "completed") != 0 && strcmp(bs, "pending_delete") != 0;
	}
	PQclear(res);
	if (gone == NULL) {
		free(jobs);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for DR copies"));
	}
	rv = 0;
	for (int i = 0; i < rows && rv == 0 && !atomic_load(&d->stop); i++) {
		copy_job *j = &jobs[i];
		coffer_err e;
		coffer_err_clear(&e);
		int64_t t0 = coffer_clock_monotonic_ms();
		int cr;
		if (gone[i]) {
			cr = coffer_err_set(&e, COFFER_ENOENT,
			    "backup %s was deleted from the primary "
			    "repository before its DR copy was made",
			    j->id);
		} else {
			cr = copy_backup(d, cat, j, &e);
		}
		if (cr == COFFER_ECANCELED) {
			break; /* stopping: the row stays due */
		}
		if (cr == 0) {
			st->verified++;
			coffer_log_info("DR copy verified",
			    "service=%s backup=%s bytes=%" PRId64 " ms=%lld", j->service, j->id,
			    j->stored_bytes, (long long)(coffer_clock_monotonic_ms() - t0));
		} else {
			st->failed++;
			coffer_log_error("DR copy failed",
			    "service=%s backup=%s attempt=%d error=%s", j->service, j->id,
			    j->attempts, e.msg);
		}
		rv = record(d, cat, j, cr, &e, t0,
		    coffer_clock_now(NULL) > now_ms ? coffer_clock_now(NULL) : now_ms, err);
	}
	free(gone);
	free(jobs);
	return (rv);
}
