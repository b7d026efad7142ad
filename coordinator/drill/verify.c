/*
 * Backup verification: a completed backup counts (freshness, retention
 * tiers, status, drills, the DR copy) only after the coordinator has read
 * its manifest from the repository itself, checked the signature against
 * the enrolled key of the agent that reported it, matched the manifest's
 * digest and names against the catalog row, and matched the data object's
 * stored size. Until then it is 'unverified'; a backup that fails is
 * 'rejected', audited ("backup.rejected") and pages backup_unverifiable
 * (coordinator/watch/alerts.c).
 *
 * Design notes.
 * The agent's completed event is a claim: a compromised agent, or anyone
 * who can write the repository, could otherwise report a backup that does
 * not exist, or replace what was stored. The intake stays fast (no
 * repository read on the ack path); this pass runs on a thread and catalog
 * connection of its own (a coord_worker, like the integrity sweep) and
 * takes a bounded batch per run, oldest first.
 *
 * The manifest's digest, signature and names are checked in full; the data
 * object only by its size (a stat, not a read): its SHA-256 is in the
 * signed manifest and compared with the row, and reading every byte is the
 * integrity sweep's job. Storage checksums are not consulted: the repository
 * interface reports only a size (S3 already checked the upload's
 * x-amz-checksum-sha256 when it was written).
 *
 * An answer that says nothing about the backup (the repository cannot be
 * opened or read for a transient reason) leaves it unverified and it is
 * tried again next run; backup_unverifiable pages once a backup stays
 * unverified past [alerts] completion_window, so an outage is visible.
 */
#include "coordinator/drill/drill_internal.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/fmt.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"
#include "common/repo/repo.h"
#include "common/stream/digest.h"
#include "common/stream/filter.h"
#include "common/stream/sink.h"
#include "coordinator/catalog/worker.h"

/* Backups verified per run; a full batch asks for another run at once. */
#define VERIFY_BATCH 16

typedef struct claim {
	char id[160];
	char service[72];
	char agent[72];
	char kind[16];
	char repo[72];
	char stored_sha[65];
	char plain_sha[65];
	char manifest_sha[65];
	char pubkey[65];
	int64_t stored_bytes;
	/* The versions the coordinator recorded when the backup completed
	 * (coordinator/drill/integrity.c; "" when none is recorded yet, or the
	 * store keeps none): verification reads what the agent wrote, and a
	 * newer version over it is the sweep's repository_object_replaced. */
	char manifest_version[COFFER_REPO_VERSION_MAX];
	char data_version[COFFER_REPO_VERSION_MAX];
	int64_t data_version_size;
} claim;

static coffer_repo *
verify_repo_of(coord_drills *d, const char *name)
{
	int which = strcmp(name, "dr") == 0 ? 1 : 0;
	if (d->vrepo[which] != NULL) {
		return (d->vrepo[which]);
	}
	coffer_repo_config rc;
	coffer_err e;
	coffer_err_clear(&e);
	if (coord_config_repo(d->cfg, which == 1 ? "dr" : "primary", &rc, &e) != 0 ||
	    coffer_repo_open(&rc, COFFER_REPO_READ, &d->vrepo[which], &e) != 0) {
		coffer_log_error("backup verification cannot open a repository",
		    "repository=%s error=%s", name, e.msg);
		d->vrepo[which] = NULL;
	}
	return (d->vrepo[which]);
}

/* A read error that says something about the object, not the storage. */
static bool
definitive(int rv)
{
	return (rv == COFFER_ENOENT || rv == COFFER_ECORRUPT || rv == COFFER_ETOOBIG ||
	    rv == COFFER_EPERM);
}

/*
 * Checks one claim. Returns 0 with *verdict 1 (verified) or -1 (rejected,
 * why filled), or 0 with *verdict 0 when the check could not run (why says
 * what stopped it), or COFFER_ECANCELED when stopping.
 */
static int
check_claim(coord_drills *d, const claim *c, int *verdict, char *why, size_t size)
{
	*verdict = 0;
	coffer_repo *repo = verify_repo_of(d, c->repo);
	if (repo == NULL) {
		snprintf(why, size, "the %s repository cannot be opened", c->repo);
		return (0);
	}
	if (c->pubkey[0] == '\0') {
		*verdict = -1;
		snprintf(why, size, "no enrolled key for agent %s, which reported it", c->agent);
		return (0);
	}
	char key[COFFER_REPO_KEY_MAX];
	coffer_err e;
	coffer_err_clear(&e);
	if (coffer_repo_backup_key(key, sizeof(key), c->service, c->id, "manifest.json", &e) != 0) {
		*verdict = -1;
		snprintf(why, size, "no repository key for it: %s", e.msg);
		return (0);
	}
	coffer_filter *buf = coffer_buffer_sink_new(COFFER_MANIFEST_MAX_BYTES, &e);
	coffer_filter *sha = coffer_sha256_filter_new(buf, &e);
	coffer_filter *chain = coffer_stop_filter_new(sha, &d->stop, "backup verification", &e);
	if (chain == NULL) {
		snprintf(why, size, "no memory to read the manifest");
		return (0);
	}
	int rv = c->manifest_version[0] != '\0'
	    ? coffer_repo_read_version(repo, key, c->manifest_version, chain, &e)
	    : coffer_repo_read(repo, key, chain, &e);
	if (rv == COFFER_ECANCELED) {
		coffer_filter_free_chain(chain);
		return (rv);
	}
	if (rv != 0) {
		coffer_filter_free_chain(chain);
		if (rv == COFFER_ENOENT) {
			*verdict = -1;
			snprintf(
			    why, size, "%.300s is missing from the %s repository", key, c->repo);
		} else {
			*verdict = definitive(rv) ? -1 : 0;
			snprintf(why, size,
			    "%.300s could not be read from the %s repository: %.300s", key, c->repo,
			    e.msg);
		}
		return (0);
	}
	uint8_t md[COFFER_SHA256_LEN];
	char actual[65];
	coffer_sha256_filter_digest(sha, md);
	coffer_hex_encode(md, sizeof(md), actual);
	size_t len = 0;
	const char *json = (const char *)coffer_buffer_sink_data(buf, &len);
	*verdict = -1;
	uint8_t raw[COFFER_SIGN_PUBKEY_BYTES];
	coffer_sign_pubkey *pub = NULL;
	coffer_manifest *m = NULL;
	if (c->manifest_sha[0] != '\0' && strcmp(actual, c->manifest_sha) != 0) {
		snprintf(why, size,
		    "manifest.json has sha256 %.16s..., the agent reported %.16s...: it was "
		    "changed after the backup completed",
		    actual, c->manifest_sha);
	} else if (coffer_hex_decode(c->pubkey, raw, sizeof(raw), &e) != 0 ||
	    coffer_sign_pubkey_from_raw(raw, &pub, &e) != 0) {
		snprintf(
		    why, size, "agent %s's enrolled key cannot be used: %.300s", c->agent, e.msg);
	} else if ((rv = coffer_manifest_parse(json, len, pub, &m, &e)) != 0) {
		if (rv == COFFER_EAUTH) {
			snprintf(why, size,
			    "manifest.json's signature does not verify with the enrolled key of "
			    "agent %s",
			    c->agent);
		} else {
			snprintf(why, size, "manifest.json is not a valid manifest: %.400s", e.msg);
			*verdict = rv == COFFER_ENOMEM ? 0 : -1;
		}
	} else if (strcmp(m->backup_id, c->id) != 0 || strcmp(m->service, c->service) != 0 ||
	    strcmp(m->agent, c->agent) != 0) {
		snprintf(why, size,
		    "manifest.json names backup %.40s of service %.72s by agent %.72s, not what "
		    "was reported",
		    m->backup_id, m->service, m->agent);
	} else if (strcmp(coffer_manifest_kind_name(m->kind), c->kind) != 0) {
		snprintf(why, size, "manifest.json says the backup is %s, the agent reported %s",
		    coffer_manifest_kind_name(m->kind), c->kind);
	} else if ((int64_t)m->stored_bytes != c->stored_bytes ||
	    strcmp(m->stored_sha256, c->stored_sha) != 0 ||
	    (c->plain_sha[0] != '\0' && strcmp(m->plaintext_sha256, c->plain_sha) != 0)) {
		snprintf(why, size,
		    "manifest.json records %" PRIu64
		    " stored bytes with sha256 %.16s..., the agent reported %" PRId64
		    " bytes with sha256 %.16s...",
		    m->stored_bytes, m->stored_sha256, c->stored_bytes, c->stored_sha);
	} else {
		*verdict = 1;
	}
	coffer_manifest_free(m);
	coffer_sign_pubkey_free(pub);
	coffer_filter_free_chain(chain);
	if (*verdict != 1) {
		return (0);
	}
	coffer_repo_info info;
	coffer_err_clear(&e);
	if (coffer_repo_backup_key(key, sizeof(key), c->service, c->id, "data", &e) != 0) {
		*verdict = -1;
		snprintf(why, size, "no repository key for its data: %s", e.msg);
		return (0);
	}
	if (c->data_version[0] != '\0') {
		/* Its size as recorded by HEAD of that version. */
		memset(&info, 0, sizeof(info));
		info.size = (uint64_t)c->data_version_size;
		rv = 0;
	} else {
		rv = coffer_repo_stat(repo, key, &info, &e);
	}
	if (rv == COFFER_ENOENT) {
		*verdict = -1;
		snprintf(why, size, "%.300s is missing from the %s repository", key, c->repo);
	} else if (rv != 0) {
		*verdict = definitive(rv) ? -1 : 0;
		snprintf(why, size, "%.300s could not be examined in the %s repository: %.300s",
		    key, c->repo, e.msg);
	} else if ((int64_t)info.size != c->stored_bytes) {
		*verdict = -1;
		snprintf(why, size,
		    "%.300s in the %s repository has %" PRIu64 " bytes, the signed manifest "
		    "records %" PRId64,
		    key, c->repo, info.size, c->stored_bytes);
	}
	return (0);
}

/* Records one verdict with its audit row, in one transaction. */
static int
record(coord_catalog *cat, const coord_audit_key *key, const claim *c, bool ok, const char *why,
    coffer_err *err)
{
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	const char *v[] = { c->id, ok ? "verified" : "rejected", ok ? NULL : why };
	PGresult *res = coord_catalog_adhoc(cat, "recording a backup's verification",
	    "UPDATE backups SET verify_state = $2, verified_at = now(), verify_reason = $3, "
	    "updated_at = now() WHERE id = $1 AND verify_state = 'unverified' RETURNING id",
	    3, v, &rv, err);
	if (res == NULL) {
		coord_catalog_rollback(cat);
		return (rv);
	}
	bool changed = PQntuples(res) == 1;
	PQclear(res);
	if (!changed) {
		coord_catalog_rollback(cat);
		return (0);
	}
	cJSON *a = cJSON_CreateObject();
	cJSON_AddStringToObject(a, "service", c->service);
	cJSON_AddStringToObject(a, "agent", c->agent);
	cJSON_AddStringToObject(a, "repository", c->repo);
	cJSON_AddNumberToObject(a, "stored_bytes", (double)c->stored_bytes);
	if (!ok) {
		cJSON_AddStringToObject(a, "problem", why);
	}
	char *text = cJSON_PrintUnformatted(a);
	cJSON_Delete(a);
	rv = text == NULL ? coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row")
	                  : coord_audit_append(cat, key, "coordinator",
	                        ok ? "backup.verified" : "backup.rejected", c->id, text, NULL, err);
	cJSON_free(text);
	if (rv == 0) {
		rv = coord_catalog_commit(cat, err);
	} else {
		coord_catalog_rollback(cat);
	}
	if (rv == 0 && ok) {
		coffer_log_info("backup verified", "backup=%s service=%s", c->id, c->service);
	} else if (rv == 0) {
		coffer_log_error(
		    "backup rejected", "backup=%s service=%s problem=%s", c->id, c->service, why);
	}
	return (rv);
}

int
coord_drills_verify(
    coord_drills *d, coord_catalog *cat, const coord_audit_key *key, bool *more, coffer_err *err)
{
	*more = false;
	if (!coffer_config_has_section(d->cfg->ini, "repository.primary")) {
		return (0);
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", VERIFY_BATCH);
	const char *v[] = { lim };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading unverified backups",
	    "SELECT b.id, b.service, COALESCE(b.agent, ''), b.kind, b.repo, "
	    "encode(b.stored_sha256, 'hex'), COALESCE(encode(b.plain_sha256, 'hex'), ''), "
	    "COALESCE(b.manifest->>'manifest_sha256', ''), "
	    "COALESCE(encode(a.pubkey, 'hex'), ''), b.stored_bytes, "
	    "COALESCE((SELECT o.version_id FROM backup_objects o WHERE o.backup_id = b.id "
	    "  AND o.object = 'manifest.json' AND b.repo = 'primary'), ''), "
	    "COALESCE((SELECT o.version_id FROM backup_objects o WHERE o.backup_id = b.id "
	    "  AND o.object = 'data' AND b.repo = 'primary'), ''), "
	    "COALESCE((SELECT o.size FROM backup_objects o WHERE o.backup_id = b.id "
	    "  AND o.object = 'data'), 0) FROM backups b "
	    "LEFT JOIN agents a ON a.name = b.agent "
	    "WHERE b.status = 'completed' AND b.verify_state = 'unverified' "
	    "ORDER BY b.received_at, b.id LIMIT $1::integer",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int n = PQntuples(res);
	claim *rows = calloc((size_t)(n > 0 ? n : 1), sizeof(*rows));
	if (rows == NULL) {
		PQclear(res);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for unverified backups"));
	}
	for (int i = 0; i < n; i++) {
		claim *c = &rows[i];
		snprintf(c->id, sizeof(c->id), "%s", PQgetvalue(res, i, 0));
		snprintf(c->service, sizeof(c->service), "%s", PQgetvalue(res, i, 1));
		snprintf(c->agent, sizeof(c->agent), "%s", PQgetvalue(res, i, 2));
		snprintf(c->kind, sizeof(c->kind), "%s", PQgetvalue(res, i, 3));
		snprintf(c->repo, sizeof(c->repo), "%s", PQgetvalue(res, i, 4));
		snprintf(c->stored_sha, sizeof(c->stored_sha), "%s", PQgetvalue(res, i, 5));
		snprintf(c->plain_sha, sizeof(c->plain_sha), "%s", PQgetvalue(res, i, 6));
		snprintf(c->manifest_sha, sizeof(c->manifest_sha), "%s", PQgetvalue(res, i, 7));
		snprintf(c->pubkey, sizeof(c->pubkey), "%s", PQgetvalue(res, i, 8));
		c->stored_bytes = strtoll(PQgetvalue(res, i, 9), NULL, 10);
		snprintf(
		    c->manifest_version, sizeof(c->manifest_version), "%s", PQgetvalue(res, i, 10));
		snprintf(c->data_version, sizeof(c->data_version), "%s", PQgetvalue(res, i, 11));
		c->data_version_size = strtoll(PQgetvalue(res, i, 12), NULL, 10);
	}
	PQclear(res);
	int checked = 0;
	for (int i = 0; rv == 0 && i < n && !atomic_load(&d->stop); i++) {
		int verdict = 0;
		char why[1024] = "";
		rv = check_claim(d, &rows[i], &verdict, why, sizeof(why));
		if (rv != 0) {
			break;
		}
		if (verdict == 0) {
			coffer_log_warn(
			    "backup verification skipped", "backup=%s problem=%s", rows[i].id, why);
			continue;
		}
		rv = record(cat, key, &rows[i], verdict > 0, why, err);
		checked++;
	}
	free(rows);
	/* Another run at once only when this one made progress: a batch of
	 * backups that cannot be checked now waits for the next tick. */
	*more = rv == 0 && n == VERIFY_BATCH && checked > 0;
	return (rv);
}

static int
verify_run(void *arg, coord_catalog *cat, int64_t now_ms, bool *again, coffer_err *err)
{
	(void)now_ms;
	coord_drills *d = arg;
	return (coord_drills_verify(d, cat, d->key, again, err));
}

int
drill_verify_start(coord_drills *d, coffer_err *err)
{
	return (coord_worker_start(
	    "backup verification", d->cfg->catalog, verify_run, d, &d->vworker, err));
}
