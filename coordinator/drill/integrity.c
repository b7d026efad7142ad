/*
 * The integrity sweep: every stored object of a kept backup read back from
 * the primary and DR repositories and its digest compared with the
 * catalog's, on a thread and a catalog connection of its own
 * (coord_drills_background), with the alerts that watch it. See
 * coordinator/drill/drills.h for what is promised.
 *
 * Design notes.
 * The sweep reads objects outside any transaction (a read may take
 * minutes) and records each check in a short transaction with its audit
 * row. It samples, per service and repository, the objects whose last
 * check failed first (so a corrupt object keeps failing until someone acts,
 * instead of resolving because the sample moved on), then never-checked
 * ones, then at random.
 *
 * The repositories are opened read only: the sweep can never repair or
 * remove what it finds, only report it (integrity_failed), and a sweep that
 * stops finishing makes integrity_overdue page rather than go quiet.
 */
#include "coordinator/drill/drill_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/base/utf8.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"
#include "common/repo/repo.h"
#include "common/stream/digest.h"
#include "common/stream/filter.h"
#include "common/stream/sink.h"
#include "coordinator/catalog/worker.h"
#include "coordinator/watch/alerts.h"

#define ACTOR "coordinator"

/* The repositories a sweep reads, by index in coord_drills.repo. */
static const char *const repo_names[2] = { "primary", "dr" };

typedef struct sample_row {
	char id[160];
	char service[72];
	char stored_sha[65];
	int64_t stored_bytes;
	char manifest_sha[65];
	/* primary: the versions recorded when the backup was first seen ("":
	 * none recorded, or the store is not versioned) */
	char data_version[COFFER_REPO_VERSION_MAX];
	char manifest_version[COFFER_REPO_VERSION_MAX];
} sample_row;

/* Rows deleted per statement, and statements per sweep, when pruning. */
#define PRUNE_BATCH   5000
#define PRUNE_BATCHES 40

int
integrity_eval_failed(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_service_policy *p, int64_t now_ms, coord_drills_stats *st, coffer_err *err)
{
	int rv;
	const char *v[] = { p->name };
	/*
	 * The latest check of each object, whatever retention did to its
	 * backup since. Pending deletion still stores the object (and may be
	 * cancelled), so its failure counts. Deleting a corrupt backup repairs
	 * nothing either: its failure counts until a newer backup of the
	 * service has been checked clean in that repository since, which shows
	 * a sound restore point there. Otherwise retention would clear the page
	 * with the corruption never explained.
	 */
	PGresult *res = coord_catalog_adhoc(cat, "reading integrity checks",
	    "SELECT count(*), min(backup_id || ' ' || object || ' in ' || repo || ': ' || "
	    "COALESCE(detail, '')) FROM (SELECT DISTINCT ON (c.backup_id, c.repo, c.object) "
	    "c.backup_id, c.repo, c.object, c.ok, c.detail, c.checked_at, b.status, b.finished_at "
	    "FROM integrity_checks c JOIN backups b ON b.id = c.backup_id WHERE c.service = $1 "
	    "AND b.status IN ('completed', 'pending_delete', 'deleted') "
	    "ORDER BY c.backup_id, c.repo, c.object, c.checked_at DESC, c.id DESC) l "
	    "WHERE NOT ok AND (l.status <> 'deleted' OR NOT EXISTS (SELECT 1 FROM backups n "
	    "WHERE n.service = $1 AND n.finished_at > l.finished_at AND n.failure_reason IS NULL "
	    "AND n.status IN ('completed', 'pending_delete', 'deleted') "
	    "AND EXISTS (SELECT 1 FROM integrity_checks p WHERE p.backup_id = n.id "
	    "AND p.repo = l.repo AND p.object = 'data' AND p.ok AND p.checked_at > l.checked_at) "
	    "AND NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT ON (q.object) q.ok "
	    "FROM integrity_checks q WHERE q.backup_id = n.id AND q.repo = l.repo "
	    "ORDER BY q.object, q.checked_at DESC, q.id DESC) z WHERE NOT z.ok)))",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	long bad = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	char summary[1100] = "";
	cJSON *d = cJSON_CreateObject();
	if (bad > 0) {
		snprintf(summary, sizeof(summary),
		    "%s: %ld stored object%s failed the integrity check; first: %s", p->name, bad,
		    bad == 1 ? "" : "s", PQgetvalue(res, 0, 1));
		cJSON_AddNumberToObject(d, "objects_failed", (double)bad);
		cJSON_AddStringToObject(d, "first", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return (drill_set_alert(cat, key, cfg, p->name, COORD_ALERT_INTEGRITY_FAILED, bad > 0,
	    "critical", summary, d, now_ms, st, err));
}

int
integrity_eval_replaced(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_service_policy *p, int64_t now_ms, coord_drills_stats *st, coffer_err *err)
{
	int rv;
	const char *v[] = { p->name };
	/* The latest primary check of each object of a backup still kept:
	 * replaced until a check finds the recorded version current again
	 * (an operator restored it) or retention removed the backup. */
	PGresult *res = coord_catalog_adhoc(cat, "reading replaced objects",
	    "SELECT count(*), min(backup_id || ' ' || object || ': ' || COALESCE(detail, '')) "
	    "FROM (SELECT DISTINCT ON (c.backup_id, c.object) c.backup_id, c.object, "
	    "c.replaced_by, c.detail FROM integrity_checks c JOIN backups b ON b.id = c.backup_id "
	    "WHERE c.service = $1 AND c.repo = 'primary' "
	    "AND b.status IN ('completed', 'pending_delete') "
	    "ORDER BY c.backup_id, c.object, c.checked_at DESC, c.id DESC) l "
	    "WHERE replaced_by IS NOT NULL",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	long bad = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	char summary[1100] = "";
	cJSON *d = cJSON_CreateObject();
	if (bad > 0) {
		snprintf(summary, sizeof(summary),
		    "%s: %ld stored object%s replaced in the primary repository since the backup "
		    "completed; first: %s",
		    p->name, bad, bad == 1 ? "" : "s", PQgetvalue(res, 0, 1));
		cJSON_AddNumberToObject(d, "objects_replaced", (double)bad);
		cJSON_AddStringToObject(d, "first", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	return (drill_set_alert(cat, key, cfg, p->name, COORD_ALERT_OBJECT_REPLACED, bad > 0,
	    "critical", summary, d, now_ms, st, err));
}

int
integrity_eval_sweep(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    int64_t now_ms, bool can_sweep, coord_drills_stats *st, coffer_err *err)
{
	int64_t interval = coffer_config_duration_ms(cfg->ini, "integrity", "sweep_interval");
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading the last sweep",
	    "SELECT floor(extract(epoch FROM max(finished_at)) * 1000)::bigint FROM integrity_sweeps",
	    0, NULL, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool never = PQgetisnull(res, 0, 0);
	int64_t last = never ? 0 : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	/* Before the first sweep there is nothing to be late for; a
	 * repository that stopped opening (credentials, outage) makes the
	 * sweep late, not silent. */
	bool active = can_sweep && !never && last + 2 * interval < now_ms;
	char summary[400] = "", at[40], iv[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		snprintf(summary, sizeof(summary),
		    "the integrity sweep last finished at %s, more than twice [integrity] "
		    "sweep_interval = %s ago",
		    coffer_time_format(at, sizeof(at), last),
		    coffer_duration_format(iv, sizeof(iv), interval));
		cJSON_AddStringToObject(d, "last_finished_at", at);
	}
	if ((rv = drill_set_alert(cat, key, cfg, NULL, COORD_ALERT_INTEGRITY_OVERDUE, active,
	         "error", summary, d, now_ms, st, err)) != 0) {
		return (rv);
	}
	/* A clean sweep is news once. */
	if ((rv = coord_catalog_begin(cat, err)) != 0) {
		return (rv);
	}
	res = coord_catalog_adhoc(cat, "reading clean sweeps",
	    "SELECT id, checked, floor(extract(epoch FROM finished_at) * 1000)::bigint FROM integrity_sweeps WHERE finished_at "
	    "IS NOT NULL AND failed = 0 AND checked > 0 AND announced_at IS NULL ORDER BY id "
	    "LIMIT 5 FOR UPDATE SKIP LOCKED",
	    0, NULL, &rv, err);
	for (int i = 0; res != NULL && rv == 0 && i < PQntuples(res); i++) {
		char summary2[300];
		snprintf(summary2, sizeof(summary2),
		    "integrity sweep %s passed: %s stored objects match the catalog's digests",
		    PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		cJSON *cd = cJSON_CreateObject();
		cJSON_AddNumberToObject(cd, "sweep_id", strtod(PQgetvalue(res, i, 0), NULL));
		cJSON_AddNumberToObject(cd, "objects", strtod(PQgetvalue(res, i, 1), NULL));
		rv = coord_alerts_change(cat, cfg, NULL, "integrity_passed", summary2, cd,
		    strtoll(PQgetvalue(res, i, 2), NULL, 10), now_ms, err);
		if (rv == 0) {
			const char *v[] = { PQgetvalue(res, i, 0) };
			rv = coord_catalog_adhoc_exec(cat, "marking the sweep announced",
			    "UPDATE integrity_sweeps SET announced_at = now() WHERE id = $1::bigint",
			    1, v, err);
		}
		if (rv == 0) {
			st->changes++;
		}
	}
	PQclear(res);
	if (rv == 0) {
		return (coord_catalog_commit(cat, err));
	}
	coord_catalog_rollback(cat);
	return (rv);
}

static coffer_repo *
repo_of(coord_drills *d, int which)
{
	if (d->repo[which] != NULL || d->tried[which]) {
		return (d->repo[which]);
	}
	d->tried[which] = true;
	coffer_repo_config rc;
	coffer_err e;
	coffer_err_clear(&e);
	if (coord_config_repo(d->cfg, repo_names[which], &rc, &e) != 0) {
		return (NULL);
	}
	/* Read only: the sweep must never be able to repair or remove. */
	if (coffer_repo_open(&rc, COFFER_REPO_READ, &d->repo[which], &e) != 0) {
		coffer_log_error("integrity sweep cannot open a repository",
		    "repository=%s error=%s", repo_names[which], e.msg);
		d->repo[which] = NULL;
		d->tried[which] = false; /* try again next sweep */
	}
	return (d->repo[which]);
}

/* Backups whose versions are recorded per run, at most. */
#define RECORD_BATCH 32

/* Records one backup's object versions with an audit row. */
static int
record_backup(coord_drills *d, coord_catalog *cat, const coord_audit_key *key, const char *id,
    const char *service, int64_t now_ms, coffer_err *err)
{
	static const char *const objects[2] = { "data", "manifest.json" };
	coffer_repo_info info[2];
	for (int i = 0; i < 2; i++) {
		char okey[COFFER_REPO_KEY_MAX];
		coffer_err e;
		coffer_err_clear(&e);
		int rv = coffer_repo_backup_key(okey, sizeof(okey), service, id, objects[i], &e);
		if (rv == 0) {
			rv = coffer_repo_stat(d->repo[0], okey, &info[i], &e);
		}
		if (rv == COFFER_ENOENT) {
			/* Missing as the backup completes: recorded without a
			 * version (the sweep pages for it, and the DR copy fails
			 * for good instead of waiting for a version). */
			memset(&info[i], 0, sizeof(info[i]));
			coffer_log_warn("object missing when its version was to be recorded",
			    "backup=%s object=%s", id, objects[i]);
			continue;
		}
		if (rv != 0) {
			/* Missing or unreadable: the sweep reports it; record later. */
			coffer_log_warn("object version not recorded",
			    "backup=%s object=%s error=%s", id, objects[i], e.msg);
			return (0);
		}
	}
	if (info[0].version_id[0] == '\0' || info[1].version_id[0] == '\0') {
		coffer_log_warn("the primary repository keeps no object versions: a replaced "
		                "object cannot be told from the original (enable versioning on the "
		                "bucket, docs/S3.md)",
		    "backup=%s", id);
	}
	char now[32], sz[2][32];
	coffer_fmt_i64(now, now_ms);
	int rv = coord_catalog_begin(cat, err);
	for (int i = 0; rv == 0 && i < 2; i++) {
		snprintf(sz[i], sizeof(sz[i]), "%" PRIu64, info[i].size);
		const char *v[] = { id, objects[i],
			info[i].version_id[0] != '\0' ? info[i].version_id : NULL, sz[i], now };
		rv = coord_catalog_adhoc_exec(cat, "recording an object version",
		    "INSERT INTO backup_objects (backup_id, object, version_id, size, recorded_at) "
		    "VALUES ($1, $2, $3, $4::bigint, to_timestamp($5::bigint / 1000.0)) "
		    "ON CONFLICT DO NOTHING",
		    5, v, err);
	}
	if (rv == 0) {
		cJSON *a = cJSON_CreateObject();
		cJSON *vs = cJSON_AddObjectToObject(a, "versions");
		cJSON_AddStringToObject(a, "service", service);
		for (int i = 0; vs != NULL && i < 2; i++) {
			cJSON_AddStringToObject(vs, objects[i], info[i].version_id);
		}
		char *text = cJSON_PrintUnformatted(a);
		cJSON_Delete(a);
		rv = text == NULL ? coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row")
		                  : coord_audit_append(cat, key, ACTOR, "backup.versions_recorded",
		                        id, text, NULL, err);
		cJSON_free(text);
	}
	if (rv == 0) {
		return (coord_catalog_commit(cat, err));
	}
	coord_catalog_rollback(cat);
	return (rv);
}

/*
 * The versions of completed backups' objects in the primary repository,
 * recorded the first time the coordinator looks after the agent reported
 * the backup complete (every tick, not every sweep). The coordinator asks
 * the store itself rather than believing a version id the agent reports.
 */
int
integrity_record_versions(coord_drills *d, coord_catalog *cat, const coord_audit_key *key,
    int64_t now_ms, coffer_err *err)
{
	if (repo_of(d, 0) == NULL || strcmp(coffer_repo_type(d->repo[0]), "s3") != 0) {
		return (0);
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", RECORD_BATCH);
	const char *v[] = { lim };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "finding backups without recorded versions",
	    "SELECT b.id, b.service FROM backups b WHERE b.status = 'completed' "
	    "AND b.stored_sha256 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM backup_objects o "
	    "WHERE o.backup_id = b.id) ORDER BY b.finished_at LIMIT $1::integer",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int i = 0; rv == 0 && i < PQntuples(res) && !atomic_load(&d->stop); i++) {
		rv = record_backup(
		    d, cat, key, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), now_ms, err);
	}
	PQclear(res);
	return (rv);
}

/* Streams key (version_id, or the current one when "") through sha256 and
 * a byte count into nothing. */
static int
digest_object(coord_drills *d, coffer_repo *repo, const char *key, const char *version_id,
    char sha_hex[65], uint64_t *bytes, coffer_err *err)
{
	/* Fails once the coordinator is stopping: a sweep in the middle of a
	 * large object does not hold up shutdown. */
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(err), err);
	coffer_filter *sha = coffer_sha256_filter_new(cnt, err);
	coffer_filter *chain = coffer_stop_filter_new(sha, &d->stop, "the integrity sweep", err);
	if (chain == NULL) {
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	int rv = coffer_repo_read_version(repo, key, version_id, chain, err);
	if (rv == 0) {
		uint8_t md[COFFER_SHA256_LEN];
		coffer_sha256_filter_digest(sha, md);
		coffer_hex_encode(md, sizeof(md), sha_hex);
		*bytes = coffer_count_filter_bytes(cnt);
	}
	coffer_filter_free_chain(chain);
	return (rv);
}

/* Checks one object and records the outcome with its audit row. */
static int
check_object(coord_drills *d, coord_catalog *cat, const coord_audit_key *key, int which,
    const char *sweep_id, const sample_row *b, const char *object, int64_t now_ms,
    coord_drills_stats *st, coffer_err *err)
{
	coffer_repo *repo = d->repo[which];
	char okey[COFFER_REPO_KEY_MAX], actual[65] = "", detail[800] = "";
	char replaced_by[COFFER_REPO_VERSION_MAX] = "";
	uint64_t bytes = 0;
	bool is_data = strcmp(object, "data") == 0;
	const char *expect_sha = is_data ? b->stored_sha : b->manifest_sha;
	/* The version recorded when the backup completed is the one of record:
	 * read it, and compare the current one with it. */
	const char *version = which != 0 ? "" : is_data ? b->data_version : b->manifest_version;
	coffer_err e;
	coffer_err_clear(&e);
	int rv = coffer_repo_backup_key(okey, sizeof(okey), b->service, b->id, object, &e);
	if (rv == 0 && version[0] != '\0') {
		coffer_repo_info cur;
		int srv = coffer_repo_stat(repo, okey, &cur, &e);
		if (srv == COFFER_ENOENT) {
			snprintf(replaced_by, sizeof(replaced_by), "(a delete marker)");
		} else if (srv == 0 && strcmp(cur.version_id, version) != 0) {
			snprintf(replaced_by, sizeof(replaced_by), "%s",
			    cur.version_id[0] != '\0' ? cur.version_id : "(unversioned)");
		}
		coffer_err_clear(&e);
	}
	if (rv == 0) {
		rv = digest_object(d, repo, okey, version, actual, &bytes, &e);
	}
	bool ok = false;
	if (rv == COFFER_ENOENT) {
		snprintf(detail, sizeof(detail), "%.300s is missing from the %s repository", okey,
		    repo_names[which]);
	} else if (rv != 0) {
		snprintf(detail, sizeof(detail),
		    "%.300s could not be read from the %s repository: %.200s", okey,
		    repo_names[which], e.msg);
	} else if (is_data && (int64_t)bytes != b->stored_bytes) {
		snprintf(detail, sizeof(detail),
		    "%.300s in the %s repository has %" PRIu64
		    " bytes, the catalog recorded %" PRId64,
		    okey, repo_names[which], bytes, b->stored_bytes);
	} else if (expect_sha[0] != '\0' && strcmp(actual, expect_sha) != 0) {
		snprintf(detail, sizeof(detail),
		    "%.300s in the %s repository has sha256 %.16s..., the catalog recorded %.16s...",
		    okey, repo_names[which], actual, expect_sha);
	} else {
		ok = true;
	}
	if (rv == COFFER_ECANCELED) {
		return (rv);
	}
	if (replaced_by[0] != '\0') {
		size_t used = strlen(detail);
		snprintf(detail + used, sizeof(detail) - used,
		    "%s%.300s in the primary repository was replaced: its current version is %.80s, "
		    "the catalog recorded %.80s when the backup completed (restores, the DR copy "
		    "and this sweep read the recorded one)",
		    used > 0 ? "; " : "", okey, replaced_by, version);
	}
	if (rv == COFFER_EUNAVAIL ||
	    (rv != 0 && rv != COFFER_ENOENT && rv != COFFER_ECORRUPT && rv != COFFER_EIO &&
	        rv != COFFER_EPERM)) {
		/* A storage outage is not corruption: skip, and let the sweep's
		 * overdue alert speak if it lasts. */
		coffer_log_warn("integrity check skipped", "object=%s repository=%s error=%s", okey,
		    repo_names[which], e.msg);
		return (0);
	}
	char now[32], sb[32], ab[32];
	coffer_fmt_i64(now, now_ms);
	coffer_fmt_i64(sb, b->stored_bytes);
	snprintf(ab, sizeof(ab), "%" PRIu64, bytes);
	const bool replaced = replaced_by[0] != '\0';
	const char *v[] = { sweep_id, b->id, b->service, repo_names[which], object, ok ? "t" : "f",
		expect_sha[0] != '\0' ? expect_sha : NULL, actual[0] != '\0' ? actual : NULL,
		is_data ? sb : NULL, rv == 0 ? ab : NULL, ok && !replaced ? NULL : detail, now,
		replaced ? replaced_by : NULL };
	if ((rv = coord_catalog_begin(cat, err)) != 0) {
		return (rv);
	}
	rv = coord_catalog_adhoc_exec(cat, "recording an integrity check",
	    "INSERT INTO integrity_checks (sweep_id, backup_id, service, repo, object, ok, "
	    "expected_sha256, actual_sha256, expected_bytes, actual_bytes, detail, checked_at, "
	    "replaced_by) "
	    "VALUES ($1::bigint, $2, $3, $4, $5, $6::boolean, decode($7, 'hex'), decode($8, 'hex'), "
	    "$9::bigint, $10::bigint, $11, to_timestamp($12::bigint / 1000.0), $13)",
	    13, v, err);
	if (rv == 0) {
		const char *sv[] = { sweep_id, ok ? "0" : "1" };
		rv = coord_catalog_adhoc_exec(cat, "counting an integrity check",
		    "UPDATE integrity_sweeps SET checked = checked + 1, failed = failed + $2::integer "
		    "WHERE id = $1::bigint",
		    2, sv, err);
	}
	if (rv == 0) {
		const char *tv[] = { b->service, ok ? "passed" : "failed" };
		rv = coord_catalog_adhoc_exec(cat, "counting an integrity check",
		    "INSERT INTO integrity_totals (service, result, count) VALUES ($1, $2, 1) "
		    "ON CONFLICT (service, result) DO UPDATE SET count = integrity_totals.count + 1",
		    2, tv, err);
	}
	if (rv == 0) {
		cJSON *a = cJSON_CreateObject();
		cJSON_AddStringToObject(a, "service", b->service);
		cJSON_AddStringToObject(a, "backup_id", b->id);
		cJSON_AddStringToObject(a, "repository", repo_names[which]);
		cJSON_AddStringToObject(a, "object", okey);
		cJSON_AddNumberToObject(a, "sweep_id", strtod(sweep_id, NULL));
		if (expect_sha[0] != '\0') {
			cJSON_AddStringToObject(a, "expected_sha256", expect_sha);
		}
		if (actual[0] != '\0') {
			cJSON_AddStringToObject(a, "actual_sha256", actual);
			cJSON_AddNumberToObject(a, "bytes", (double)bytes);
		}
		if (!ok || replaced) {
			cJSON_AddStringToObject(a, "problem", detail);
		}
		if (replaced) {
			cJSON_AddStringToObject(a, "recorded_version", version);
			cJSON_AddStringToObject(a, "current_version", replaced_by);
		}
		char *text = cJSON_PrintUnformatted(a);
		cJSON_Delete(a);
		if (text != NULL && replaced) {
			rv = coord_audit_append(
			    cat, key, ACTOR, "backup.object_replaced", b->id, text, NULL, err);
		}
		rv = text == NULL ? coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row")
		    : rv != 0
		    ? rv
		    : coord_audit_append(cat, key, ACTOR,
		          ok ? "backup.integrity_check_passed" : "backup.integrity_check_failed",
		          b->id, text, NULL, err);
		cJSON_free(text);
	}
	if (rv == 0) {
		rv = coord_catalog_commit(cat, err);
	} else {
		coord_catalog_rollback(cat);
	}
	if (rv == 0) {
		st->objects++;
		if (replaced) {
			coffer_log_error(
			    "stored object replaced", "backup=%s problem=\"%s\"", b->id, detail);
		}
		if (!ok) {
			st->corrupt++;
			coffer_log_error("integrity check failed",
			    "backup=%s repository=%s problem=\"%s\"", b->id, repo_names[which],
			    detail);
		}
	}
	return (rv);
}

static int
sweep_service(coord_drills *d, coord_catalog *cat, const coord_audit_key *key, int which,
    const char *sweep_id, const char *service, int64_t now_ms, coord_drills_stats *st,
    coffer_err *err)
{
	char sample[16], *end = NULL;
	snprintf(sample, sizeof(sample), "%lld",
	    (long long)coffer_config_int(d->cfg->ini, "integrity", "sample"));
	const char *v[] = { service, repo_names[which], sample };
	int rv;
	/* Failed last time first, then never checked, then at random. */
	PGresult *res = coord_catalog_adhoc(cat, "sampling backups to check",
	    "SELECT b.id, encode(CASE WHEN $2 = 'dr' THEN COALESCE(c.stored_sha256, "
	    "b.stored_sha256) ELSE b.stored_sha256 END, 'hex'), "
	    "b.stored_bytes, COALESCE(b.manifest->>'manifest_sha256', ''), "
	    "COALESCE((SELECT o.version_id FROM backup_objects o WHERE o.backup_id = b.id "
	    "AND o.object = 'data' AND $2 = 'primary'), ''), "
	    "COALESCE((SELECT o.version_id FROM backup_objects o WHERE o.backup_id = b.id "
	    "AND o.object = 'manifest.json' AND $2 = 'primary'), '') FROM backups b "
	    "LEFT JOIN backup_copies c ON c.backup_id = b.id AND c.repo = 'dr' "
	    "AND c.status = 'verified' "
	    "LEFT JOIN LATERAL (SELECT bool_and(x.ok AND x.replaced_by IS NULL) AS ok FROM "
	    "(SELECT DISTINCT ON (i.object) i.ok, i.replaced_by FROM integrity_checks i WHERE i.backup_id = b.id AND i.repo = $2 "
	    "ORDER BY i.object, i.checked_at DESC, i.id DESC) x) l ON true "
	    "WHERE b.service = $1 AND b.status = 'completed' AND b.stored_sha256 IS NOT NULL "
	    "AND ($2 = 'primary' OR c.backup_id IS NOT NULL) "
	    "ORDER BY (l.ok IS FALSE) DESC, (l.ok IS NULL) DESC, random() LIMIT $3::integer",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int n = PQntuples(res);
	sample_row *rows = calloc((size_t)(n > 0 ? n : 1), sizeof(*rows));
	if (rows == NULL) {
		PQclear(res);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the sweep's sample"));
	}
	for (int i = 0; i < n; i++) {
		snprintf(rows[i].id, sizeof(rows[i].id), "%s", PQgetvalue(res, i, 0));
		snprintf(rows[i].service, sizeof(rows[i].service), "%s", service);
		snprintf(
		    rows[i].stored_sha, sizeof(rows[i].stored_sha), "%s", PQgetvalue(res, i, 1));
		rows[i].stored_bytes = strtoll(PQgetvalue(res, i, 2), &end, 10);
		snprintf(rows[i].manifest_sha, sizeof(rows[i].manifest_sha), "%s",
		    PQgetvalue(res, i, 3));
		snprintf(rows[i].data_version, sizeof(rows[i].data_version), "%s",
		    PQgetvalue(res, i, 4));
		snprintf(rows[i].manifest_version, sizeof(rows[i].manifest_version), "%s",
		    PQgetvalue(res, i, 5));
	}
	PQclear(res);
	for (int i = 0; rv == 0 && i < n && !atomic_load(&d->stop); i++) {
		rv = check_object(d, cat, key, which, sweep_id, &rows[i], "data", now_ms, st, err);
		if (rv == 0) {
			rv = check_object(d, cat, key, which, sweep_id, &rows[i], "manifest.json",
			    now_ms, st, err);
		}
	}
	free(rows);
	return (rv);
}

/*
 * After a finished sweep: checks older than [integrity] keep_checks whose
 * object has a newer check. The newest check of every object stays (the
 * sampling and integrity_failed read it), each check is also an audit row,
 * and integrity_totals keeps the counts: what goes is history the audit log
 * already holds. One audit row for the rows deleted.
 */
static int
prune_checks(coord_drills *d, coord_catalog *cat, const coord_audit_key *key, int64_t now_ms,
    coord_drills_stats *st, coffer_err *err)
{
	char before[32], lim[16];
	coffer_fmt_i64(
	    before, now_ms - coffer_config_duration_ms(d->cfg->ini, "integrity", "keep_checks"));
	snprintf(lim, sizeof(lim), "%d", PRUNE_BATCH);
	const char *v[] = { before, lim };
	int rv = 0;
	long total = 0;
	for (int batch = 0; batch < PRUNE_BATCHES && rv == 0 && !atomic_load(&d->stop); batch++) {
		PGresult *res = coord_catalog_adhoc(cat, "pruning integrity checks",
		    "DELETE FROM integrity_checks WHERE id IN (SELECT c.id FROM integrity_checks c "
		    "WHERE c.checked_at < to_timestamp($1::bigint / 1000.0) AND EXISTS (SELECT 1 FROM integrity_checks n "
		    "WHERE n.backup_id = c.backup_id AND n.repo = c.repo AND n.object = c.object "
		    "AND (n.checked_at, n.id) > (c.checked_at, c.id)) LIMIT $2::integer)",
		    2, v, &rv, err);
		if (res == NULL) {
			break;
		}
		long n = strtol(PQcmdTuples(res), NULL, 10);
		PQclear(res);
		total += n;
		if (n < PRUNE_BATCH) {
			break;
		}
	}
	if (total == 0) {
		return (rv);
	}
	st->checks_pruned += (int)total;
	coffer_log_info("integrity checks pruned", "deleted=%ld", total);
	char details[96];
	snprintf(
	    details, sizeof(details), "{\"deleted\":%ld,\"checked_before_ms\":%s}", total, before);
	coffer_err e;
	coffer_err_clear(&e);
	int arv = coord_audit_append(
	    cat, key, "coordinator", "integrity.checks_pruned", "integrity", details, NULL, &e);
	if (rv == 0 && arv != 0) {
		*err = e;
		rv = arv;
	}
	return (rv);
}

int
coord_drills_sweep(coord_drills *d, coord_catalog *cat, const coord_audit_key *key, int64_t now_ms,
    coord_drills_stats *st, coffer_err *err)
{
	coord_drills_stats local;
	if (st == NULL) {
		memset(&local, 0, sizeof(local));
		st = &local;
	}
	if (repo_of(d, 0) == NULL) {
		return (0);
	}
	int rv = integrity_record_versions(d, cat, key, now_ms, err);
	if (rv != 0) {
		return (rv);
	}
	char now[32];
	coffer_fmt_i64(now, now_ms);
	const char *v[] = { now };
	PGresult *res = coord_catalog_adhoc(cat, "starting a sweep",
	    "INSERT INTO integrity_sweeps (started_at) VALUES (to_timestamp($1::bigint / 1000.0)) RETURNING id",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	char sweep_id[32];
	snprintf(sweep_id, sizeof(sweep_id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	int o0 = st->objects, c0 = st->corrupt;
	for (size_t i = 0; rv == 0 && i < d->cfg->n_services; i++) {
		/* A long sweep does not hold up the versions of backups that
		 * completed meanwhile: recorded between services. */
		if (i > 0) {
			rv = integrity_record_versions(d, cat, key, now_ms, err);
		}
		for (int which = 0; rv == 0 && which < 2; which++) {
			if (repo_of(d, which) == NULL) {
				continue;
			}
			rv = sweep_service(d, cat, key, which, sweep_id, d->cfg->services[i].name,
			    now_ms, st, err);
		}
	}
	if (rv != 0 || atomic_load(&d->stop)) {
		/* Unfinished (stopped, or a catalog error): the next one is due
		 * an interval after this one started, and sweeps that never
		 * finish make integrity_overdue page. */
		return (rv);
	}
	const char *fv[] = { sweep_id, now };
	rv = coord_catalog_adhoc_exec(cat, "finishing the sweep",
	    "UPDATE integrity_sweeps SET finished_at = GREATEST(to_timestamp($2::bigint / 1000.0), started_at) "
	    "WHERE id = $1::bigint",
	    2, fv, err);
	if (rv == 0) {
		coffer_log_info("integrity sweep", "sweep=%s objects=%d failed=%d", sweep_id,
		    st->objects - o0, st->corrupt - c0);
		rv = prune_checks(d, cat, key, now_ms, st, err);
	}
	return (rv);
}

int
integrity_sweep_due(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, bool *due, coffer_err *err)
{
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading the last sweep",
	    "SELECT floor(extract(epoch FROM max(started_at)) * 1000)::bigint FROM integrity_sweeps",
	    0, NULL, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int64_t interval = coffer_config_duration_ms(cfg->ini, "integrity", "sweep_interval");
	*due =
	    PQgetisnull(res, 0, 0) || strtoll(PQgetvalue(res, 0, 0), NULL, 10) + interval <= now_ms;
	PQclear(res);
	return (0);
}

/* The sweep's times are the tick's that asked for it: a sweep of an hour
 * is recorded as the sweep of that tick. */
static int
sweep_run(void *arg, coord_catalog *cat, int64_t now_ms, bool *again, coffer_err *err)
{
	coord_drills *d = arg;
	coord_drills_stats st;
	memset(&st, 0, sizeof(st));
	*again = false;
	/* Kicked every tick: versions are recorded soon after a backup
	 * completes; the sweep itself runs when it is due. */
	bool due = false;
	int rv = integrity_record_versions(d, cat, d->key, now_ms, err);
	if (rv == 0) {
		rv = integrity_sweep_due(cat, d->cfg, now_ms, &due, err);
	}
	if (rv != 0 || !due) {
		return (rv);
	}
	return (coord_drills_sweep(d, cat, d->key, now_ms, &st, err));
}

int
coord_drills_background(coord_drills *d, const coord_audit_key *key, coffer_err *err)
{
	d->key = key;
	int rv =
	    coord_worker_start("integrity sweep", d->cfg->catalog, sweep_run, d, &d->worker, err);
	if (rv == 0) {
		rv = drill_verify_start(d, err);
	}
	return (rv);
}
