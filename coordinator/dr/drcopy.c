/*
 * The DR copy (coordinator/dr/drcopy.h).
 */
#include "coordinator/dr/drcopy.h"

#include <ctype.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/repo/repo.h"
#include "common/repo/s3.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"
#include "coordinator/catalog/worker.h"
#include "coordinator/dr/attest.h"
#include "coordinator/dr/auditexport.h"
#include "coordinator/policy/prune.h"
#include "coordinator/wal/walprune.h"
#include "coordinator/wal/walwatch.h"
#include "coordinator/watch/alerts.h"

#define ACTOR      "coordinator"
#define TS(n)      "to_timestamp($" #n "::bigint / 1000.0)"
#define MS(x)      "floor(extract(epoch FROM " x ") * 1000)::bigint"
#define RFC3339(x) "to_char(" x " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

#define MINUTE_MS (60LL * 1000)
#define DAY_MS    (24LL * 3600 * 1000)
/* A `forever` tier locks for this long: S3 needs a date. */
#define FOREVER_MS (100LL * 366 * DAY_MS)
/* Attestations written into the primary repository per pass. */
#define ATTEST_PER_PASS 50

struct coord_drcopy {
	const coord_config *cfg;
	const coord_audit_key *key;
	coffer_repo *primary;                    /* read (backups), write (attestations) */
	coffer_s3 *dr;                           /* NULL without [repository.dr] */
	char dr_prefix[COFFER_REPO_KEY_MAX + 2]; /* "" or "<prefix>/" */
	atomic_bool stop;
	coord_worker *worker; /* the copier thread; NULL: passes run on the caller's */
	/* The audit head last exported (copier thread), and when
	 * (monotonic); seeded from DR's newest at the first export. */
	coord_audit_head exported;
	bool exported_seeded;
	int64_t exported_ms;
	/* Set, for good, when the chain no longer holds an exported head:
	 * read by the maintenance tick for the audit_chain_broken alert. */
	pthread_mutex_t audit_mu;
	char audit_problem[256]; /* "" while none */
};

/* ---- small helpers ---- */

static const char *
dr_copy_mode(const coord_config *cfg, const char *service)
{
	char sec[96];
	snprintf(sec, sizeof(sec), "service.%s", service);
	return (coffer_config_str(cfg->ini, sec, "dr.copy"));
}

static bool
copies(const coord_config *cfg, const char *service)
{
	return (strcmp(dr_copy_mode(cfg, service), "none") != 0);
}

static void
fmt_i64(char *buf, size_t size, int64_t v)
{
	snprintf(buf, size, "%" PRId64, v);
}

static const char *
quoted(char *buf, size_t size, const char *text)
{
	return (coffer_log_quote(buf, size, text));
}

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
		if (copies(cfg, cfg->services[i].name)) {
			needs = cfg->services[i].name;
		}
	}
	bool have_dr = coffer_config_has_section(cfg->ini, "repository.dr");
	if (needs != NULL && !have_dr) {
		coffer_err_set(err, COFFER_EINVAL,
		    "service %s sets dr.copy = %s, but there is no "
		    "[repository.dr] to copy to",
		    needs, dr_copy_mode(cfg, needs));
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
	if (rv != 0) {
		coord_drcopy_free(d);
		return (rv);
	}
	*out = d;
	return (0);
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
	    "AND NOT EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup_id = b.id "
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
	const char *mode = dr_copy_mode(cfg, p->name);
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
		fmt_i64(u, sizeof(u), until);
		fmt_i64(n, sizeof(n), now_ms);
		const char *iv[] = { id->valuestring, u, lock, n };
		res = coord_catalog_query(cat,
		    "INSERT INTO backup_copies (backup_id, repo, status, retain_until, lock_mode, "
		    "started_at) VALUES ($1, 'dr', 'copying', " TS(2) ", $3, " TS(
		        4) ") "
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
set_alert(coord_drcopy *d, coord_catalog *cat, const char *service, const char *check, bool active,
    const char *summary, cJSON *details, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	char *text = details != NULL ? cJSON_PrintUnformatted(details) : NULL;
	cJSON_Delete(details);
	bool changed = false;
	int rv = coord_alerts_set(cat, d->key, d->cfg, service, check, active, "error", summary,
	    text, now_ms, &changed, err);
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

static int
eval_alerts(coord_drcopy *d, coord_catalog *cat, const char *service, int64_t now_ms,
    coord_drcopy_stats *st, coffer_err *err)
{
	char n[32], lag[32];
	int64_t lag_ms = coffer_config_duration_ms(d->cfg->ini, "dr", "copy_lag");
	fmt_i64(n, sizeof(n), now_ms);
	fmt_i64(lag, sizeof(lag), lag_ms);
	const coord_service_policy *p = coord_config_service(d->cfg, service);
	char win[32];
	fmt_i64(win, sizeof(win), p != NULL ? p->pitr_window_ms : 0);
	const char *v[] = { service, n, lag, p != NULL && p->pitr_window_ms > 0 ? "t" : "f", win };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT (SELECT count(*) FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "  WHERE b.service = $1 AND c.repo = 'dr' AND c.status = 'failed' "
	    "  AND b.status <> 'deleted'), "
	    "(SELECT c.backup_id || ': ' || c.failure_reason || ' (attempt ' || "
	    "  (c.attempts - 1) || ')' FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "  WHERE b.service = $1 AND c.repo = 'dr' AND c.status = 'failed' "
	    "  AND b.status <> 'deleted' "
	    "  ORDER BY c.started_at LIMIT 1), "
	    "(SELECT count(*) FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	    "  WHERE b.service = $1 AND c.repo = 'dr' AND c.status IN ('copying', 'failed') "
	    "  AND b.status <> 'deleted' "
	    "  AND c.started_at < " TS(
	        2) " - $3::bigint * interval '1 millisecond'), "
	           "(SELECT " MS(
	               "min(c.started_at)") " FROM backup_copies c "
	                                    "  JOIN backups b ON b.id = c.backup_id WHERE b.service = $1 AND c.repo = 'dr' "
	                                    "  AND c.status IN ('copying', 'failed')), "
	                                    "(SELECT count(*) FROM wal_segments w WHERE w.service = $1 AND $4::boolean "
	                                    "  AND w.dr_copied_at IS NULL AND w.deleted_at IS NULL "
	                                    "  AND w.archived_at < " TS(
	                                        2) " - $3::bigint * interval '1 millisecond' "
	                                           "  AND w.archived_at > " TS(
	                                               2) " - $5::bigint * interval '1 millisecond')",
	    5, v, "reading DR copy state", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	long failed = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long late = strtol(PQgetvalue(res, 0, 2), NULL, 10);
	char first[600], summary[900] = "", at[40], iv[32];
	snprintf(first, sizeof(first), "%.590s", PQgetvalue(res, 0, 1));
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
	rv = set_alert(
	    d, cat, service, COORD_ALERT_DR_COPY_FAILED, failed > 0, summary, det, now_ms, st, err);
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
	return (set_alert(d, cat, service, COORD_ALERT_DR_COPY_LAG, late > 0 || wal_late > 0,
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
		if (!copies(d->cfg, p->name) || d->dr == NULL) {
			continue;
		}
		coffer_err e;
		coffer_err_clear(&e);
		int rv = plan_service(cat, d->cfg, p, now_ms, st, &e);
		if (rv == 0) {
			rv = eval_alerts(d, cat, p->name, now_ms, st, &e);
		}
		if (rv != 0) {
			char q[COFFER_ERR_MSG_MAX + 8];
			coffer_log_error("DR copy planning failed", "service=%s error=%s", p->name,
			    quoted(q, sizeof(q), e.msg));
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

/* ---- copying ---- */

/* The tail of a chain that feeds an S3 upload. */
typedef struct upload_sink {
	coffer_filter base;
	coffer_s3_upload *up;
} upload_sink;

static int
upload_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	return (coffer_s3_upload_write(((upload_sink *)f)->up, buf, len, err));
}

static int
upload_finish(coffer_filter *f, coffer_err *err)
{
	(void)f;
	(void)err;
	return (0);
}

static void
upload_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops upload_ops = { "dr-upload", upload_write, upload_finish,
	upload_destroy };

/* A copy's working state. */
typedef struct copy_job {
	char id[160];
	char service[72];
	char agent[COFFER_MANIFEST_NAME_MAX];
	char kind[16];
	char stored_sha[65];
	int64_t stored_bytes;
	char manifest_sha[65]; /* "" when the catalog has none */
	int64_t until_ms;
	char lock[16]; /* GOVERNANCE / COMPLIANCE */
	char pubkey_hex[65];
	int attempts;
	/* physical: the WAL from start to stop goes with it */
	int timeline;
	char sysid[24]; /* the cluster's system identifier, decimal; "" if unknown */
	char start_lsn[32], stop_lsn[32];
	int wal_segments;
	/* results */
	char versions[3][COFFER_S3_VERSION_ID_MAX];
	uint64_t copied_bytes;
	char detail[1024];
} copy_job;

static const char *const object_names[3] = { "data", "manifest.json", COORD_ATTEST_OBJECT };

static int
dr_key(const coord_drcopy *d, const copy_job *j, const char *name, char *out, size_t size,
    coffer_err *err)
{
	char key[COFFER_REPO_KEY_MAX];
	int rv = coffer_repo_backup_key(key, sizeof(key), j->service, j->id, name, err);
	if (rv != 0) {
		return (rv);
	}
	if ((size_t)snprintf(out, size, "%s%s", d->dr_prefix, key) >= size) {
		return (coffer_err_set(err, COFFER_EINVAL, "DR key for %s is too long", key));
	}
	return (0);
}

/*
 * Streams the primary's object name into a locked DR upload. expect_sha
 * ("" for none) and expect_bytes (< 0 for none) are checked before the
 * upload is published. *exists is set when DR already has the key.
 */
static int stream_object(coord_drcopy *d, copy_job *j, const char *src, const char *dst,
    const char *expect_sha, int64_t expect_bytes, bool *exists, char sha_out[65],
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err);

static int
copy_object(coord_drcopy *d, copy_job *j, int which, const char *expect_sha, int64_t expect_bytes,
    bool *exists, char sha_out[65], coffer_err *err)
{
	*exists = false;
	char src[COFFER_REPO_KEY_MAX], dst[COFFER_REPO_KEY_MAX + 8];
	int rv =
	    coffer_repo_backup_key(src, sizeof(src), j->service, j->id, object_names[which], err);
	if (rv == 0) {
		rv = dr_key(d, j, object_names[which], dst, sizeof(dst), err);
	}
	if (rv != 0) {
		return (rv);
	}
	return (stream_object(
	    d, j, src, dst, expect_sha, expect_bytes, exists, sha_out, j->versions[which], err));
}

/* Streams the primary's object src into a locked DR upload at dst. */
static int
stream_object(coord_drcopy *d, copy_job *j, const char *src, const char *dst,
    const char *expect_sha, int64_t expect_bytes, bool *exists, char sha_out[65],
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err)
{
	*exists = false;
	int rv;
	coffer_s3_put_opts opts = { .lock_mode = j->lock, .lock_until_ms = j->until_ms };
	coffer_s3_upload *up = NULL;
	rv = coffer_s3_upload_begin(d->dr, dst, &opts, &up, err);
	if (rv == COFFER_EEXIST) {
		*exists = true;
		return (0);
	}
	if (rv != 0) {
		return (rv);
	}
	/* The stop filter ends a long copy when the coordinator is stopping. */
	upload_sink *sink = calloc(1, sizeof(*sink));
	coffer_filter *stop =
	    sink != NULL ? coffer_stop_filter_new(&d->stop, "the DR copy", err) : NULL;
	coffer_filter *sha = stop != NULL ? coffer_sha256_filter_new(err) : NULL;
	coffer_filter *cnt = sha != NULL ? coffer_count_filter_new(err) : NULL;
	if (cnt == NULL) {
		free(sink);
		coffer_filter_free(stop);
		coffer_filter_free(sha);
		coffer_s3_upload_free(up);
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	sink->base.ops = &upload_ops;
	sink->up = up;
	coffer_filter *chain = coffer_filter_link(stop, sha, cnt, &sink->base, NULL);
	rv = coffer_repo_read(d->primary, src, chain, err);
	uint8_t md[COFFER_SHA256_LEN];
	coffer_sha256_filter_digest(sha, md);
	coffer_hex_encode(md, sizeof(md), sha_out);
	uint64_t bytes = coffer_count_filter_bytes(cnt);
	coffer_filter_free_chain(chain);
	if (rv == COFFER_ENOENT) {
		coffer_err_set(
		    err, COFFER_ENOENT, "%s is missing from the primary repository", src);
		coffer_err_hint(err,
		    "the backup cannot be copied; run `coffer-agent verify` on it "
		    "and take a new backup");
	} else if (rv == 0 && expect_bytes >= 0 && (int64_t)bytes != expect_bytes) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "%s in the primary repository has %" PRIu64
		    " bytes, the catalog recorded %" PRId64 "; nothing was published in DR",
		    src, bytes, expect_bytes);
	} else if (rv == 0 && expect_sha[0] != '\0' && strcmp(sha_out, expect_sha) != 0) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "%s in the primary repository has sha256 "
		    "%.16s..., the catalog recorded %.16s...; nothing was published in DR",
		    src, sha_out, expect_sha);
	}
	if (rv == COFFER_ECORRUPT) {
		coffer_err_hint(err,
		    "the primary copy is damaged: the integrity sweep will page "
		    "for it; take a new backup");
	}
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	if (rv == 0) {
		rv = coffer_s3_upload_commit(up, &info, err);
	}
	coffer_s3_upload_free(up); /* aborts an uncommitted upload */
	if (rv == 0) {
		snprintf(version, COFFER_S3_VERSION_ID_MAX, "%s", info.version_id);
		j->copied_bytes += bytes;
	}
	return (rv);
}

/* Uploads bytes we hold (the attestation) with the copy's lock. */
static int
put_small(coord_drcopy *d, copy_job *j, int which, const char *data, size_t len, bool *exists,
    coffer_err *err)
{
	*exists = false;
	char dst[COFFER_REPO_KEY_MAX + 8];
	int rv = dr_key(d, j, object_names[which], dst, sizeof(dst), err);
	if (rv != 0) {
		return (rv);
	}
	coffer_s3_put_opts opts = { .lock_mode = j->lock, .lock_until_ms = j->until_ms };
	coffer_s3_upload *up = NULL;
	rv = coffer_s3_upload_begin(d->dr, dst, &opts, &up, err);
	if (rv == COFFER_EEXIST) {
		*exists = true;
		return (0);
	}
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	if (rv == 0) {
		rv = coffer_s3_upload_write(up, (const uint8_t *)data, len, err);
	}
	if (rv == 0) {
		rv = coffer_s3_upload_commit(up, &info, err);
	}
	coffer_s3_upload_free(up);
	if (rv == 0) {
		snprintf(j->versions[which], sizeof(j->versions[which]), "%s", info.version_id);
		j->copied_bytes += len;
	}
	return (rv);
}

/* Reads the DR object back (the version written, when known), and checks
 * its digest and its lock. */
static int verify_key(coord_drcopy *d, copy_job *j, const char *dst, const char *want_sha,
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err);

static int
verify_object(coord_drcopy *d, copy_job *j, int which, const char *want_sha, coffer_err *err)
{
	char dst[COFFER_REPO_KEY_MAX + 8];
	int rv = dr_key(d, j, object_names[which], dst, sizeof(dst), err);
	if (rv != 0) {
		return (rv);
	}
	return (verify_key(d, j, dst, want_sha, j->versions[which], err));
}

static int
verify_key(coord_drcopy *d, copy_job *j, const char *dst, const char *want_sha,
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err)
{
	int rv;
	coffer_filter *sha = coffer_sha256_filter_new(err);
	coffer_filter *sink = sha != NULL ? coffer_discard_sink_new(err) : NULL;
	if (sink == NULL) {
		coffer_filter_free(sha);
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	coffer_filter *chain = coffer_filter_link(sha, sink, NULL);
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	rv = coffer_s3_get(d->dr, dst, version[0] != '\0' ? version : NULL, chain, &info, err);
	uint8_t md[COFFER_SHA256_LEN];
	char got[65];
	coffer_sha256_filter_digest(sha, md);
	coffer_hex_encode(md, sizeof(md), got);
	coffer_filter_free_chain(chain);
	if (rv != 0) {
		return (coffer_err_wrap(err, "reading the DR copy back"));
	}
	if (version[0] == '\0') {
		snprintf(version, COFFER_S3_VERSION_ID_MAX, "%s", info.version_id);
	}
	if (strcmp(got, want_sha) != 0) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "DR object %s reads back with sha256 %.16s..., "
		    "expected %.16s...",
		    dst, got, want_sha);
		return (coffer_err_hint(err,
		    "an object of other content holds the key in the DR "
		    "bucket (it is locked and stays); inspect it with the DR "
		    "account"));
	}
	if (strcasecmp(info.lock_mode, j->lock) != 0 || info.lock_until_ms + 1000 < j->until_ms) {
		char want[40], have[40];
		coffer_err_set(err, COFFER_EREFUSED,
		    "DR object %s is locked %s until %s, expected "
		    "%s until %s",
		    dst, info.lock_mode[0] != '\0' ? info.lock_mode : "(no lock)",
		    info.lock_until_ms > 0
		        ? coffer_time_format(have, sizeof(have), info.lock_until_ms)
		        : "-",
		    j->lock, coffer_time_format(want, sizeof(want), j->until_ms));
		return (coffer_err_hint(err,
		    "the DR bucket or its store ignored the object lock "
		    "headers; check that object lock is enabled and "
		    "supported"));
	}
	return (0);
}

/* The SHA-256 of an object in the primary repository, streamed. */
static int
digest_primary(coord_drcopy *d, const char *key, char sha_out[65], coffer_err *err)
{
	coffer_filter *sha = coffer_sha256_filter_new(err);
	coffer_filter *sink = sha != NULL ? coffer_discard_sink_new(err) : NULL;
	if (sink == NULL) {
		coffer_filter_free(sha);
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	coffer_filter *chain = coffer_filter_link(sha, sink, NULL);
	int rv = coffer_repo_read(d->primary, key, chain, err);
	if (rv == 0) {
		uint8_t md[COFFER_SHA256_LEN];
		coffer_sha256_filter_digest(sha, md);
		coffer_hex_encode(md, sizeof(md), sha_out);
	}
	coffer_filter_free_chain(chain);
	return (rv);
}

static int
attestation_of(coord_drcopy *d, const copy_job *j, const char *manifest_sha, char **json,
    size_t *len, coffer_err *err)
{
	coord_attestation a;
	memset(&a, 0, sizeof(a));
	if (strlen(j->id) >= sizeof(a.backup_id)) {
		return (coffer_err_set(
		    err, COFFER_EINVAL, "backup id %s is not a manifest's id", j->id));
	}
	memcpy(a.backup_id, j->id, strlen(j->id) + 1);
	snprintf(a.service, sizeof(a.service), "%s", j->service);
	snprintf(a.agent, sizeof(a.agent), "%s", j->agent);
	snprintf(a.kind, sizeof(a.kind), "%s", j->kind);
	snprintf(a.manifest_sha256, sizeof(a.manifest_sha256), "%s", manifest_sha);
	snprintf(a.stored_sha256, sizeof(a.stored_sha256), "%s", j->stored_sha);
	a.stored_bytes = (uint64_t)j->stored_bytes;
	if (strlen(j->pubkey_hex) != 64 ||
	    coffer_hex_decode(j->pubkey_hex, a.agent_pubkey, sizeof(a.agent_pubkey), err) != 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "backup %s has no enrolled agent key in the "
		    "catalog to attest",
		    j->id);
		return (coffer_err_hint(err, "the backup cannot be attested; take a new backup"));
	}
	return (coord_attest_render(&a, d->key, json, len, err));
}

static int
wal_copied(coord_catalog *cat, const char *service, const char *sysid, int timeline,
    const char *segment, coffer_err *err)
{
	char tl[16];
	snprintf(tl, sizeof(tl), "%d", timeline);
	const char *v[] = { service, tl, segment, sysid };
	return (coord_catalog_query_exec(cat,
	    "UPDATE wal_segments SET dr_copied_at = now() WHERE service = $1 "
	    "AND system_identifier = $4::numeric AND timeline = $2::integer AND segment = $3 "
	    "AND dr_copied_at IS NULL",
	    4, v, "recording a WAL segment's DR copy", err));
}

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
		char seg[32], tl[16], src[COFFER_REPO_KEY_MAX], dst[COFFER_REPO_KEY_MAX + 8];
		snprintf(seg, sizeof(seg), "%08X%08X%08X", (unsigned)j->timeline,
		    (unsigned)(n / per), (unsigned)(n % per));
		snprintf(tl, sizeof(tl), "%d", j->timeline);
		const char *v[] = { j->service, tl, seg, j->sysid };
		PGresult *res = coord_catalog_query(cat,
		    "SELECT encode(stored_sha256, 'hex'), stored_bytes FROM wal_segments "
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
		char want[65];
		snprintf(want, sizeof(want), "%s", PQgetvalue(res, 0, 0));
		int64_t bytes = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		PQclear(res);
		if ((rv = coffer_repo_wal_key(src, sizeof(src), j->service, sysid,
		         (uint32_t)j->timeline, seg, err)) != 0) {
			return (rv);
		}
		if ((size_t)snprintf(dst, sizeof(dst), "%s%s", d->dr_prefix, src) >= sizeof(dst)) {
			return (
			    coffer_err_set(err, COFFER_EINVAL, "DR key for %s is too long", src));
		}
		char got[65], version[COFFER_S3_VERSION_ID_MAX] = "";
		bool exists = false;
		rv = stream_object(d, j, src, dst, want, bytes, &exists, got, version, err);
		if (rv == 0) {
			rv = verify_key(d, j, dst, want, version, err);
		}
		if (rv == 0) {
			j->wal_segments++;
			rv = wal_copied(cat, j->service, j->sysid, j->timeline, seg, err);
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
	/* WAL first: the attestation, last, marks a complete copy. */
	int rv = strcmp(j->kind, "physical") == 0 ? copy_wal(d, cat, j, err) : 0;
	if (rv == 0) {
		rv = copy_object(d, j, 0, j->stored_sha, j->stored_bytes, &exists[0], sha[0], err);
	}
	if (rv == 0) {
		rv = copy_object(d, j, 1, j->manifest_sha, -1, &exists[1], sha[1], err);
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
			rv = digest_primary(d, key, sha[1], err);
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
	if ((rv = attestation_of(d, j, sha[1], &att, &alen, err)) != 0) {
		return (rv);
	}
	uint8_t md[COFFER_SHA256_LEN];
	SHA256((const unsigned char *)att, alen, md);
	coffer_hex_encode(md, sizeof(md), sha[2]);
	rv = put_small(d, j, 2, att, alen, &exists[2], err);
	free(att);
	for (int i = 0; i < 3 && rv == 0; i++) {
		rv = verify_object(d, j, i, sha[i], err);
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
		cJSON_AddStringToObject(ver, object_names[i], j->versions[i]);
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
		fmt_i64(n, sizeof(n), now_ms);
		fmt_i64(b, sizeof(b), j->stored_bytes);
		/* 1 minute (or retry_max if shorter), doubled per failure,
		 * capped at retry_max. */
		int64_t cap = coffer_config_duration_ms(d->cfg->ini, "dr", "retry_max");
		int64_t wait = MINUTE_MS < cap ? MINUTE_MS : cap;
		for (int i = 1; i < j->attempts && wait < cap; i++) {
			wait *= 2;
		}
		fmt_i64(backoff, sizeof(backoff), wait < cap ? wait : cap);
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
			    "'hex'), stored_bytes = $3::bigint, versions = $4::jsonb, finished_at = " TS(
			        5) ", failure_reason = NULL, next_attempt_at = NULL "
			           "WHERE backup_id = $1 AND repo = 'dr'",
			    5, v, "recording a verified DR copy", err);
		} else {
			/* A backup gone from the primary cannot be copied later. */
			const char *vv[] = { j->id, n, reason, backoff,
				result == COFFER_ENOENT || result == COFFER_ECORRUPT ? "t" : "f" };
			rv = coord_catalog_query_exec(cat,
			    "UPDATE backup_copies SET status = 'failed', attempts = attempts + 1, "
			    "failure_reason = $3, next_attempt_at = CASE WHEN $5::boolean "
			    "THEN 'infinity'::timestamptz ELSE " TS(
			        2) " + $4::bigint * "
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

static int
copy_due(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	char n[32], lim[16];
	fmt_i64(n, sizeof(n), now_ms);
	snprintf(lim, sizeof(lim), "%lld",
	    (long long)coffer_config_int(d->cfg->ini, "dr", "copies_per_pass"));
	const char *v[] = { n, lim };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT c.backup_id, b.service, COALESCE(b.agent, ''), b.kind, "
	    "encode(b.stored_sha256, 'hex'), b.stored_bytes, "
	    "COALESCE(b.manifest->>'manifest_sha256', ''), " MS(
	        "c.retain_until") ", "
	                          "upper(c.lock_mode), c.attempts, COALESCE(encode(a.pubkey, 'hex'), ''), b.status, "
	                          "COALESCE(b.timeline, 0), COALESCE(b.start_lsn::text, ''), "
	                          "COALESCE(b.stop_lsn::text, ''), COALESCE(b.system_identifier::text, '') "
	                          "FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	                          "LEFT JOIN agents a ON a.name = b.agent "
	                          "WHERE c.repo = 'dr' AND c.status IN ('copying', 'failed') "
	                          "AND (c.next_attempt_at IS NULL OR c.next_attempt_at <= " TS(
	                              1) ") "
	                                 "ORDER BY c.next_attempt_at NULLS FIRST, c.started_at LIMIT $2::integer",
	    2, v, "reading due DR copies", &rv, err);
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
		char q[COFFER_ERR_MSG_MAX + 8];
		if (cr == 0) {
			st->verified++;
			coffer_log_info("DR copy verified",
			    "service=%s backup=%s bytes=%" PRId64 " ms=%lld", j->service, j->id,
			    j->stored_bytes, (long long)(coffer_clock_monotonic_ms() - t0));
		} else {
			st->failed++;
			coffer_log_error("DR copy failed",
			    "service=%s backup=%s attempt=%d error=%s", j->service, j->id,
			    j->attempts, quoted(q, sizeof(q), e.msg));
		}
		rv = record(d, cat, j, cr, &e, t0,
		    coffer_clock_now(NULL) > now_ms ? coffer_clock_now(NULL) : now_ms, err);
	}
	free(gone);
	free(jobs);
	return (rv);
}

/* A small object written whole into the primary repository; COFFER_EEXIST
 * when it is there already. */
static int
put_primary(coord_drcopy *d, const char *key, const char *data, size_t len, coffer_err *err)
{
	coffer_filter *sink = NULL;
	int rv = coffer_repo_write_begin(d->primary, key, &sink, err);
	if (rv != 0) {
		return (rv);
	}
	rv = coffer_filter_write(sink, data, len, err);
	if (rv == 0) {
		rv = coffer_filter_finish(sink, err);
	}
	if (rv == 0) {
		rv = coffer_repo_write_commit(sink, err);
	}
	coffer_filter_free(sink);
	return (rv);
}

/* Attestations into the primary repository for completed backups. */
static int
attest_primary(coord_drcopy *d, coord_catalog *cat, coord_drcopy_stats *st, coffer_err *err)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", ATTEST_PER_PASS);
	const char *v[] = { lim };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT b.id, b.service, b.agent, b.kind, encode(b.stored_sha256, 'hex'), "
	    "b.stored_bytes, COALESCE(b.manifest->>'manifest_sha256', ''), encode(a.pubkey, 'hex') "
	    "FROM backups b JOIN agents a ON a.name = b.agent "
	    "WHERE b.status = 'completed' AND b.attested_at IS NULL AND b.repo = 'primary' "
	    "ORDER BY b.finished_at LIMIT $1::integer",
	    1, v, "reading backups to attest", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int i = 0; i < PQntuples(res) && rv == 0 && !atomic_load(&d->stop); i++) {
		copy_job j;
		memset(&j, 0, sizeof(j));
		snprintf(j.id, sizeof(j.id), "%s", PQgetvalue(res, i, 0));
		snprintf(j.service, sizeof(j.service), "%s", PQgetvalue(res, i, 1));
		snprintf(j.agent, sizeof(j.agent), "%s", PQgetvalue(res, i, 2));
		snprintf(j.kind, sizeof(j.kind), "%s", PQgetvalue(res, i, 3));
		snprintf(j.stored_sha, sizeof(j.stored_sha), "%s", PQgetvalue(res, i, 4));
		j.stored_bytes = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		snprintf(j.manifest_sha, sizeof(j.manifest_sha), "%s", PQgetvalue(res, i, 6));
		snprintf(j.pubkey_hex, sizeof(j.pubkey_hex), "%s", PQgetvalue(res, i, 7));
		coffer_err e;
		coffer_err_clear(&e);
		char key[COFFER_REPO_KEY_MAX], msha[65], *att = NULL;
		size_t alen = 0;
		int ar =
		    coffer_repo_backup_key(key, sizeof(key), j.service, j.id, "manifest.json", &e);
		if (ar == 0 && (ar = digest_primary(d, key, msha, &e)) == 0) {
			if (j.manifest_sha[0] != '\0' && strcmp(msha, j.manifest_sha) != 0) {
				ar = coffer_err_set(&e, COFFER_ECORRUPT,
				    "manifest.json of %s does not "
				    "match the catalog's manifest_sha256",
				    j.id);
			}
		}
		if (ar == 0) {
			ar = attestation_of(d, &j, msha, &att, &alen, &e);
		}
		if (ar == 0) {
			ar = coffer_repo_backup_key(
			    key, sizeof(key), j.service, j.id, COORD_ATTEST_OBJECT, &e);
		}
		if (ar == 0) {
			ar = put_primary(d, key, att, alen, &e);
		}
		free(att);
		if (ar == COFFER_EEXIST) {
			ar = 0; /* written by an earlier pass that could not record it */
		}
		if (ar != 0) {
			/* Logged, not fatal: the sweep and drills speak for a
			 * damaged backup; the next pass tries again. */
			char q[COFFER_ERR_MSG_MAX + 8];
			coffer_log_warn("attestation not written", "backup=%s error=%s", j.id,
			    quoted(q, sizeof(q), e.msg));
			if (ar == COFFER_EUNAVAIL || ar == COFFER_ECANCELED) {
				break;
			}
			continue;
		}
		const char *iv[] = { j.id };
		rv = coord_catalog_query_exec(cat,
		    "UPDATE backups SET attested_at = now() WHERE id = $1", 1, iv,
		    "recording an attestation", err);
		if (rv == 0) {
			st->attested++;
		}
	}
	PQclear(res);
	return (rv);
}

/* Revocations written per pass, at most. */
#define REVOKE_PER_PASS 64

/* One revocation into the primary repository and, object locked like the
 * audit heads, into DR. An object already there (a pass that could not
 * record it) is the same bytes. */
static int
write_revocation(coord_drcopy *d, const coord_revocation *rev, int64_t now_ms, coffer_err *err)
{
	char *json = NULL, key[COFFER_REPO_KEY_MAX];
	size_t len = 0;
	int rv = coord_revocation_render(rev, d->key, &json, &len, err);
	if (rv == 0) {
		rv = coord_revocation_key(key, sizeof(key), "", rev->agent, rev->agent_pubkey, err);
	}
	if (rv == 0) {
		rv = put_primary(d, key, json, len, err);
	}
	if (rv == COFFER_EEXIST) {
		coffer_err_clear(err);
		rv = 0;
	}
	if (rv == 0 && d->dr != NULL &&
	    (rv = coord_revocation_key(
	         key, sizeof(key), d->dr_prefix, rev->agent, rev->agent_pubkey, err)) == 0) {
		coffer_s3_put_opts opts = { .lock_mode = "COMPLIANCE",
			.lock_until_ms = now_ms +
			    coffer_config_duration_ms(d->cfg->ini, "dr", "audit_retention") };
		coffer_s3_upload *up = NULL;
		coffer_s3_object_info info;
		rv = coffer_s3_upload_begin(d->dr, key, &opts, &up, err);
		if (rv == 0) {
			rv = coffer_s3_upload_write(up, (const uint8_t *)json, len, err);
		}
		if (rv == 0) {
			rv = coffer_s3_upload_commit(up, &info, err);
		}
		coffer_s3_upload_free(up);
		if (rv == COFFER_EEXIST) {
			coffer_err_clear(err);
			rv = 0;
		}
	}
	free(json);
	return (rv);
}

/* Agents revoked in the catalog whose revocation is not yet in the
 * repositories: without it, rebuild-catalog would bring them back active
 * from their backups' attestations. */
static int
export_revocations(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", REVOKE_PER_PASS);
	const char *v[] = { lim };
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT name, encode(pubkey, 'hex'), "
	    "  (extract(epoch FROM revoked_at) * 1000)::bigint, revoked_by "
	    "FROM agents WHERE revoked_at IS NOT NULL AND revocation_exported_at IS NULL "
	    "ORDER BY revoked_at LIMIT $1::integer",
	    1, v, "reading revocations to export", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int i = 0; i < PQntuples(res) && rv == 0 && !atomic_load(&d->stop); i++) {
		coord_revocation rev;
		memset(&rev, 0, sizeof(rev));
		snprintf(rev.agent, sizeof(rev.agent), "%s", PQgetvalue(res, i, 0));
		rev.revoked_at_ms = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		snprintf(rev.revoked_by, sizeof(rev.revoked_by), "%s", PQgetvalue(res, i, 3));
		coffer_err e;
		coffer_err_clear(&e);
		int wr = coffer_hex_decode(
		    PQgetvalue(res, i, 1), rev.agent_pubkey, sizeof(rev.agent_pubkey), &e);
		if (wr == 0) {
			wr = write_revocation(d, &rev, now_ms, &e);
		}
		if (wr != 0) {
			/* Logged, not fatal: the next pass tries again. */
			char q[COFFER_ERR_MSG_MAX + 8];
			coffer_log_warn("revocation not exported", "agent=%s error=%s", rev.agent,
			    quoted(q, sizeof(q), e.msg));
			if (wr == COFFER_EUNAVAIL || wr == COFFER_ECANCELED) {
				break;
			}
			continue;
		}
		const char *av[] = { rev.agent };
		char details[64];
		snprintf(details, sizeof(details), "{\"dr\":%s}", d->dr != NULL ? "true" : "false");
		rv = coord_catalog_begin(cat, err);
		if (rv == 0) {
			rv = coord_catalog_query_exec(cat,
			    "UPDATE agents SET revocation_exported_at = now() WHERE name = $1", 1,
			    av, "recording an exported revocation", err);
		}
		if (rv == 0) {
			rv = coord_audit_append(cat, d->key, "coordinator",
			    "agent.revocation_exported", rev.agent, details, NULL, err);
		}
		if (rv == 0) {
			rv = coord_catalog_commit(cat, err);
		} else {
			coord_catalog_rollback(cat);
		}
		if (rv == 0) {
			st->revocations++;
		}
	}
	PQclear(res);
	return (rv);
}

/* WAL segments copied per service and pass, at most. */
#define WAL_PER_PASS 64

/*
 * Point-in-time recovery from DR alone needs the WAL too: for a service
 * that copies to DR and has a PITR window, every archived segment inside
 * the window goes to DR, oldest first, locked (dr.lock) until it leaves
 * the window, checked against the digest wal-push reported and read back.
 * A failure stops the service's pass (DR is likely down); what is left is
 * retried next pass and, once older than [dr] copy_lag, pages dr_copy_lag.
 */
static int
copy_wal_stream(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	int rv = 0;
	for (size_t i = 0; i < d->cfg->n_services && rv == 0 && !atomic_load(&d->stop); i++) {
		const coord_service_policy *p = &d->cfg->services[i];
		if (!copies(d->cfg, p->name) || p->pitr_window_ms <= 0) {
			continue;
		}
		char n[32], w[32], lim[16], sec[96];
		fmt_i64(n, sizeof(n), now_ms);
		fmt_i64(w, sizeof(w), p->pitr_window_ms);
		snprintf(lim, sizeof(lim), "%d", WAL_PER_PASS);
		snprintf(sec, sizeof(sec), "service.%s", p->name);
		const char *v[] = { p->name, n, w, lim };
		PGresult *res = coord_catalog_query(cat,
		    "SELECT timeline, segment, encode(stored_sha256, 'hex'), stored_bytes, " MS(
		        "archived_at") ", system_identifier::text "
		                       "FROM wal_segments WHERE service = $1 AND dr_copied_at IS NULL "
		                       "AND deleted_at IS NULL AND archived_at > " TS(
		                           2) " - $3::bigint * "
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
			    strtoull(sysid, NULL, 10), (uint32_t)tl, seg, &e);
			if (cr == 0 &&
			    (size_t)snprintf(dst, sizeof(dst), "%s%s", d->dr_prefix, src) >=
			        sizeof(dst)) {
				cr = coffer_err_set(
				    &e, COFFER_EINVAL, "DR key for %s is too long", src);
			}
			if (cr == 0) {
				cr = stream_object(
				    d, &j, src, dst, want, bytes, &exists, got, version, &e);
			}
			if (cr == 0) {
				cr = verify_key(d, &j, dst, want, version, &e);
			}
			if (cr != 0) {
				char q[COFFER_ERR_MSG_MAX + 8];
				coffer_log_warn("WAL not copied to DR",
				    "service=%s segment=%s error=%s", p->name, seg,
				    quoted(q, sizeof(q), e.msg));
				break;
			}
			rv = wal_copied(cat, p->name, sysid, tl, seg, err);
			if (rv == 0) {
				st->wal_copied++;
			}
		}
		PQclear(res);
	}
	return (rv);
}

/* Records, once, that the chain no longer holds a head exported to DR:
 * logged, audited, and from the next tick paged as audit_chain_broken;
 * no newer head is exported meanwhile. */
static void
audit_broken(coord_drcopy *d, coord_catalog *cat, const coffer_err *why)
{
	pthread_mutex_lock(&d->audit_mu);
	bool first = d->audit_problem[0] == '\0';
	snprintf(d->audit_problem, sizeof(d->audit_problem), "%.255s", why->msg);
	pthread_mutex_unlock(&d->audit_mu);
	if (!first) {
		return;
	}
	char q[COFFER_ERR_MSG_MAX + 8];
	coffer_log_error("audit head export stopped", "error=%s", quoted(q, sizeof(q), why->msg));
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "problem", why->msg);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	coffer_err e;
	coffer_err_clear(&e);
	if (text == NULL ||
	    coord_audit_append(
	        cat, d->key, "coordinator", "audit.export_refused", "dr", text, NULL, &e) != 0) {
		coffer_log_error("audit row not written", "action=audit.export_refused error=%s",
		    quoted(q, sizeof(q), e.msg));
	}
	cJSON_free(text);
}

/* The head, after checking that what was exported before still holds. The
 * first export of a process reads DR's newest head (one listing) to know
 * what was exported before it started. */
static int
export_audit_head(coord_drcopy *d, coord_catalog *cat, int64_t now_ms, int64_t mono,
    coord_drcopy_stats *st, coffer_err *err)
{
	char problem[sizeof(d->audit_problem)];
	bool stopped = coord_drcopy_audit_problem(d, problem, sizeof(problem));
	if (stopped) {
		/* Look again, once an interval: an operator may have resumed
		 * the export past the head that no longer holds. */
		d->exported_seeded = false;
	}
	int rv = 0;
	if (!d->exported_seeded) {
		coffer_repo_config rc;
		coffer_repo *dr = NULL;
		bool found = false;
		rv = coord_config_repo(d->cfg, "dr", &rc, err);
		if (rv == 0) {
			rv = coffer_repo_open(&rc, COFFER_REPO_READ, &dr, err);
		}
		if (rv == 0) {
			rv = coord_audit_export_check(cat, d->key, dr, &d->exported, &found, err);
		}
		coffer_repo_close(dr);
		if (rv == 0) {
			d->exported_seeded = true;
			if (d->exported.resumed_by > 0) {
				char q[COFFER_ERR_MSG_MAX + 8];
				coffer_log_warn("audit head export resumed",
				    "head=%s resumed_by=%" PRId64 " problem=%s", d->exported.key,
				    d->exported.resumed_by, quoted(q, sizeof(q), problem));
			}
			if (!found || d->exported.resumed_by > 0) {
				memset(&d->exported, 0, sizeof(d->exported));
			}
			pthread_mutex_lock(&d->audit_mu);
			d->audit_problem[0] = '\0';
			pthread_mutex_unlock(&d->audit_mu);
		}
	}
	bool done = false;
	if (rv == 0) {
		rv = coord_audit_export(cat, d->key, d->dr, d->dr_prefix, now_ms,
		    coffer_config_duration_ms(d->cfg->ini, "dr", "audit_retention"), &d->exported,
		    &done, err);
	}
	if (rv == COFFER_ECORRUPT || rv == COFFER_EAUTH) {
		audit_broken(d, cat, err);
		coffer_err_clear(err);
		d->exported_ms = mono;
		return (0);
	}
	if (rv == 0) {
		d->exported_ms = mono;
		st->audit_exported = done;
	}
	return (rv);
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
	int rv = attest_primary(d, cat, st, err);
	if (rv == 0) {
		rv = export_revocations(d, cat, now_ms, st, err);
	}
	if (rv == 0 && d->dr != NULL) {
		rv = copy_due(d, cat, now_ms, st, err);
	}
	if (rv == 0 && d->dr != NULL) {
		rv = copy_wal_stream(d, cat, now_ms, st, err);
	}
	int64_t mono = coffer_clock_monotonic_ms();
	if (rv == 0 && d->dr != NULL &&
	    (d->exported_ms == 0 ||
	        mono - d->exported_ms >=
	            coffer_config_duration_ms(d->cfg->ini, "dr", "audit_export_interval"))) {
		rv = export_audit_head(d, cat, now_ms, mono, st, err);
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
	pthread_mutex_destroy(&d->audit_mu);
	free(d);
}

bool
coord_drcopy_audit_problem(coord_drcopy *d, char *buf, size_t size)
{
	pthread_mutex_lock(&d->audit_mu);
	bool broken = d->audit_problem[0] != '\0';
	size_t n = strlen(d->audit_problem);
	if (size > 0) {
		n = n < size ? n : size - 1;
		memcpy(buf, d->audit_problem, n);
		buf[n] = '\0';
	}
	pthread_mutex_unlock(&d->audit_mu);
	return (broken);
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
	    "count(*) FILTER (WHERE c.status = 'failed'), " RFC3339("max(c.finished_at) FILTER (WHERE c.status = 'verified')") ", " RFC3339(
	        "min(c.started_at) FILTER (WHERE c.status IN ('copying', 'failed'))") ", "
	                                                                              "(SELECT c2.failure_reason FROM backup_copies c2 JOIN backups b2 ON b2.id = "
	                                                                              "c2.backup_id WHERE b2.service = $1 AND c2.repo = 'dr' AND c2.status = 'failed' "
	                                                                              "ORDER BY c2.started_at LIMIT 1) "
	                                                                              "FROM backup_copies c JOIN backups b ON b.id = c.backup_id "
	                                                                              "WHERE b.service = $1 AND c.repo = 'dr'",
	    1, v, "reading DR copy status", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *o = cJSON_AddObjectToObject(svc, "dr");
	if (o != NULL) {
		cJSON_AddStringToObject(o, "copy", p != NULL ? dr_copy_mode(cfg, service) : "none");
		cJSON_AddNumberToObject(o, "verified", strtod(PQgetvalue(res, 0, 0), NULL));
		cJSON_AddNumberToObject(o, "pending", strtod(PQgetvalue(res, 0, 1), NULL));
		cJSON_AddNumberToObject(o, "failed", strtod(PQgetvalue(res, 0, 2), NULL));
		const char *names[] = { "last_verified_at", "oldest_pending_since",
			"last_failure" };
		for (int i = 0; i < 3; i++) {
			if (PQgetisnull(res, 0, 3 + i)) {
				cJSON_AddNullToObject(o, names[i]);
			} else {
				cJSON_AddStringToObject(o, names[i], PQgetvalue(res, 0, 3 + i));
			}
		}
	}
	PQclear(res);
	return (0);
}
