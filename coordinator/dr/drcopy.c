/*
 * The DR copier's life (coordinator/dr/drcopy.h): opening the primary and
 * the DR bucket, refusing a DR target that cannot keep a copy, one pass in
 * order, the copier thread, and what `coffer status` shows of it.
 *
 * Why it refuses at start: a DR copy is only worth making into a bucket
 * that nobody holding production credentials can empty, so a coordinator
 * whose [repository.dr] is not an object-locked S3 bucket (or whose lock
 * configuration it may not read) does not run at all, rather than copying
 * into something that would fail the operator on the day it is needed.
 *
 * What it promises: the copier works on a thread and catalog connection of
 * its own, so a long copy never stalls the catalog lanes or the tick; the
 * primary's attestations and revocations are written even without a DR
 * repository; a pass that filled its quota goes on at once instead of
 * waiting for the next tick, so a backlog drains at the copier's pace; and
 * stopping ends a copy between reads with its upload aborted, never
 * published in part.
 */
#include "coordinator/dr/drcopy_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/clock.h"

/* ---- opening and refusing ---- */

/* "" or "<prefix>/", as the s3 repository driver places keys. */
static int
set_prefix(coord_drcopy *d, const char *prefix, coffer_err *err)
{
	const char *p = prefix != NULL ? prefix : "";
	while (*p == '/') {
		p++;
	}
	size_t n = strlen(p);
	while (n > 0 && p[n - 1] == '/') {
		n--;
	}
	if (n > 512) {
		coffer_err_set(
		    err, COFFER_EINVAL, "[repository.dr] prefix is longer than 512 bytes");
		return (coffer_err_hint(err, "use a shorter prefix"));
	}
	memcpy(d->dr_prefix, p, n);
	d->dr_prefix[n] = '\0';
	if (n > 0) {
		int rc = coffer_repo_key_check(d->dr_prefix, err);
		if (rc != 0) {
			return (coffer_err_wrap(err, "[repository.dr] prefix"));
		}
		d->dr_prefix[n] = '/';
		d->dr_prefix[n + 1] = '\0';
	}
	return (0);
}

static int
open_dr(coord_drcopy *d, coffer_err *err)
{
	coffer_repo_config rc;
	if (coord_config_repo(d->cfg, "dr", &rc, err) != 0) {
		return (err->code);
	}
	if (rc.type == NULL || strcmp(rc.type, "s3") != 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "[repository.dr] is type = %s: a DR repository "
		    "must be an object-locked S3 bucket (rule: DR copies cannot be deleted by "
		    "anyone who holds production credentials, and a directory cannot lock)",
		    rc.type != NULL ? rc.type : "posix");
		return (coffer_err_hint(err,
		    "point [repository.dr] at an S3 bucket created with "
		    "object lock in another account (docs/S3.md, \"DR "
		    "repository\")"));
	}
	int rv = set_prefix(d, rc.prefix, err);
	if (rv != 0) {
		return (rv);
	}
	coffer_s3_config sc = {
		.endpoint = rc.endpoint,
		.region = rc.region,
		.bucket = rc.bucket,
		.access_key = rc.access_key,
		.secret_key = rc.secret_key,
		.session_token = rc.session_token,
		.path_style = rc.path_style,
		.insecure_http = rc.insecure_http,
	};
	if (coffer_s3_new(&sc, &d->dr, err) != 0) {
		return (coffer_err_wrap(err, "[repository.dr]"));
	}
	coffer_s3_lock_config lc;
	memset(&lc, 0, sizeof(lc));
	rv = coffer_s3_object_lock_get(d->dr, &lc, err);
	if (rv == COFFER_EPERM) {
		coffer_err_set(err, COFFER_EPERM,
		    "the DR credentials may not read bucket %s's object "
		    "lock configuration, so the coordinator cannot confirm the copies will be locked",
		    rc.bucket);
		return (coffer_err_hint(err,
		    "allow s3:GetBucketObjectLockConfiguration on the DR "
		    "bucket for the coordinator's DR user (docs/S3.md)"));
	}
	if (rv != 0) {
		return (coffer_err_wrap(err, "checking the DR bucket's object lock"));
	}
	if (!lc.enabled) {
		coffer_err_set(err, COFFER_EREFUSED,
		    "DR bucket %s does not have object lock enabled "
		    "(rule: DR copies must be immutable until they expire)",
		    rc.bucket);
		return (coffer_err_hint(err,
		    "create the DR bucket with object lock (aws s3api "
		    "create-bucket --object-lock-enabled-for-bucket), or "
		    "point [repository.dr] at one that has it"));
	}
	return (0);
}

int
coord_drcopy_new(
    const coord_config *cfg, const coord_audit_key *key, coord_drcopy **out, coffer_err *err)
{
	*out = NULL;
	const char *needs = NULL;
	for (size_t i = 0; i < cfg->n_services && needs == NULL; i++) {
		if (drcopy_copies(cfg, cfg->services[i].name)) {
			needs = cfg->services[i].name;
		}
	}
	bool have_dr = coffer_config_has_section(cfg->ini, "repository.dr");
	if (needs != NULL && !have_dr) {
		coffer_err_set(err, COFFER_EINVAL,
		    "service %s sets dr.copy = %s, but there is no "
		    "[repository.dr] to copy to",
		    needs, drcopy_mode(cfg, needs));
		return (coffer_err_hint(err,
		    "add [repository.dr] (an object-locked S3 bucket, "
		    "docs/S3.md) or set dr.copy = none"));
	}
	if (!coffer_config_has_section(cfg->ini, "repository.primary")) {
		if (needs != NULL) {
			coffer_err_set(err, COFFER_EINVAL,
			    "service %s sets dr.copy, but there is no "
			    "[repository.primary] to copy from",
			    needs);
			return (coffer_err_hint(err,
			    "add [repository.primary] with the coordinator's "
			    "credentials"));
		}
		return (0);
	}
	coord_drcopy *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the DR copier"));
	}
	pthread_mutex_init(&d->audit_mu, NULL);
	d->cfg = cfg;
	d->key = key;
	coffer_repo_config rc;
	int rv = coord_config_repo(cfg, "primary", &rc, err);
	if (rv == 0 &&
	    (rv = coffer_repo_open(&rc, COFFER_REPO_READ | COFFER_REPO_WRITE, &d->primary, err)) !=
	        0) {
		coffer_err_wrap(err, "[repository.primary]");
	}
	if (rv == 0 && have_dr) {
		rv = open_dr(d, err);
	}
	if (rv == 0 && coffer_config_has(cfg->ini, "dr", "attestation_key") &&
	    (rv = coffer_sign_key_load(
	         coffer_config_str(cfg->ini, "dr", "attestation_key"), &d->attest_key, err)) != 0) {
		coffer_err_wrap(err, "[dr] attestation_key");
	}
	if (rv != 0) {
		coord_drcopy_free(d);
		return (rv);
	}
	*out = d;
	return (0);
}

int
coord_drcopy_pass(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	coord_drcopy_stats local;
	if (st == NULL) {
		st = &local;
	}
	memset(st, 0, sizeof(*st));
	int rv = drcopy_attest_primary(d, cat, st, err);
	if (rv == 0) {
		rv = drcopy_export_revocations(d, cat, now_ms, st, err);
	}
	if (rv == 0 && d->dr != NULL) {
		rv = drcopy_export_escrows(d, cat, now_ms, st, err);
	}
	if (rv == 0 && d->dr != NULL) {
		rv = drcopy_copy_due(d, cat, now_ms, st, err);
	}
	if (rv == 0 && d->dr != NULL) {
		rv = drcopy_copy_wal_stream(d, cat, now_ms, st, err);
	}
	int64_t mono = coffer_clock_monotonic_ms();
	if (rv == 0 && d->dr != NULL &&
	    (d->exported_ms == 0 ||
	        mono - d->exported_ms >=
	            coffer_config_duration_ms(d->cfg->ini, "dr", "audit_export_interval"))) {
		rv = drcopy_export_audit_head(d, cat, now_ms, mono, st, err);
	}
	return (rv);
}

/* ---- the copier thread ---- */

static int
copy_run(void *arg, coord_catalog *cat, int64_t now_ms, bool *again, coffer_err *err)
{
	coord_drcopy *d = arg;
	coord_drcopy_stats st;
	int rv = coord_drcopy_pass(d, cat, now_ms, &st, err);
	/* A full pass may have left more due: go on without a tick. */
	*again =
	    st.verified + st.failed >= coffer_config_int(d->cfg->ini, "dr", "copies_per_pass") ||
	    st.wal_copied >= WAL_PER_PASS;
	return (rv);
}

int
coord_drcopy_background(coord_drcopy *d, coffer_err *err)
{
	return (coord_worker_start("DR copy", d->cfg->catalog, copy_run, d, &d->worker, err));
}

int
coord_drcopy_export_final(coord_drcopy *d, const char *catalog, coffer_err *err)
{
	if (d == NULL || d->dr == NULL) {
		return (0);
	}
	/* The copier thread is stopped first: the export state is its own. */
	atomic_store(&d->stop, true);
	coord_worker_stop(d->worker);
	d->worker = NULL;
	coord_catalog *cat = coord_catalog_open(catalog, err);
	if (cat == NULL) {
		return (err->code);
	}
	coord_drcopy_stats st;
	memset(&st, 0, sizeof(st));
	int rv = drcopy_export_audit_head(
	    d, cat, coffer_clock_now(NULL), coffer_clock_monotonic_ms(), &st, err);
	coord_catalog_close(cat);
	return (rv);
}

void
coord_drcopy_free(coord_drcopy *d)
{
	if (d == NULL) {
		return;
	}
	atomic_store(&d->stop, true);
	coord_worker_stop(d->worker);
	coffer_repo_close(d->primary);
	coffer_s3_free(d->dr);
	coffer_sign_key_free(d->attest_key);
	pthread_mutex_destroy(&d->audit_mu);
	free(d);
}

/* ---- status ---- */

int
coord_drcopy_status(
    coord_catalog *cat, const coord_config *cfg, const char *service, cJSON *svc, coffer_err *err)
{
	const coord_service_policy *p = coord_config_service(cfg, service);
	const char *v[] = { service };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT count(*) FILTER (WHERE c.status = 'verified'), "
	    "count(*) FILTER (WHERE c.status = 'copying'), "
	    "count(*) FILTER (WHERE c.status = 'failed'), to_char(max(c.finished_at) FILTER (WHERE c.status = 'verified') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), to_char(min(c.started_at) FILTER (WHERE c.status IN ('copying', 'failed')) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
	    "(SELECT c2.failure_reason FROM backup_copies c2 JOIN backups b2 ON b2.id = "
	    "c2.backup_id WHERE b2.service = $1 AND c2.repo = 'dr' AND c2.status = 'failed' "
	    "ORDER BY c2.started_at LIMIT 1), "
	    "COALESCE(sum(b.stored_bytes) FILTER (WHERE c.status IN ('copying', 'failed')), 0), "
	    "(SELECT c3.backup_id FROM backup_copies c3 JOIN backups b3 ON b3.id = c3.backup_id "
	    "WHERE b3.service = $1 AND c3.repo = 'dr' AND c3.status IN ('copying', 'failed') "
	    "ORDER BY c3.started_at, c3.backup_id LIMIT 1) "
	    "FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "WHERE b.service = $1 AND c.repo = 'dr'",
	    1, v, "reading DR copy status", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *o = cJSON_AddObjectToObject(svc, "dr");
	if (o != NULL) {
		cJSON_AddStringToObject(o, "copy", p != NULL ? drcopy_mode(cfg, service) : "none");
		cJSON_AddNumberToObject(o, "verified", strtod(PQgetvalue(res, 0, 0), NULL));
		cJSON_AddNumberToObject(o, "pending", strtod(PQgetvalue(res, 0, 1), NULL));
		cJSON_AddNumberToObject(o, "failed", strtod(PQgetvalue(res, 0, 2), NULL));
		/* What a loss of the primary now would cost: the bytes not yet
		 * in DR and the oldest backup among them. */
		cJSON_AddNumberToObject(o, "pending_bytes", strtod(PQgetvalue(res, 0, 6), NULL));
		const char *names[] = { "last_verified_at", "oldest_pending_since", "last_failure",
			"oldest_pending_backup" };
		static const int cols[] = { 3, 4, 5, 7 };
		for (int i = 0; i < 4; i++) {
			if (PQgetisnull(res, 0, cols[i])) {
				cJSON_AddNullToObject(o, names[i]);
			} else {
				cJSON_AddStringToObject(o, names[i], PQgetvalue(res, 0, cols[i]));
			}
		}
	}
	PQclear(res);
	return (0);
}
