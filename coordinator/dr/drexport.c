/*
 * What the coordinator vouches for, written where a rebuild or an audit
 * check will look once the catalog is gone or cannot be trusted: an
 * attestation beside each completed backup in the primary repository,
 * each revoked agent's revocation in both repositories, and the audit
 * chain's head in DR every [dr] audit_export_interval.
 *
 * Why: rebuild-catalog trusts a backup by its attestation and would bring
 * a revoked agent back from its backups' attestations without the
 * revocation beside them; rows cut from the end of the audit chain verify
 * as a shorter chain unless a head kept out of reach says otherwise.
 *
 * What it promises: one backup or agent that cannot be written is logged
 * and tried again next pass, never stopping the others; an object already
 * in place (a pass that could not record it) holds the same bytes and
 * counts as written; in DR, revocations and heads are COMPLIANCE-locked;
 * and once the chain no longer holds a head exported before, no newer head
 * is exported over it, and the problem stays for audit_chain_broken until
 * an operator resumes the export (coordinator/dr/auditexport.h).
 */
#include "coordinator/dr/drcopy_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/fmt.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/base/utf8.h"

/* Attestations written into the primary repository per pass. */
#define ATTEST_PER_PASS 50

int
drcopy_attestation_of(coord_drcopy *d, const copy_job *j, const char *manifest_sha, char **json,
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
	if (coffer_hex_decode(j->pubkey_hex, a.agent_pubkey, sizeof(a.agent_pubkey), err) != 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "backup %s has no enrolled agent key in the "
		    "catalog to attest",
		    j->id);
		return (coffer_err_hint(err, "the backup cannot be attested; take a new backup"));
	}
	return (coord_attest_render_signed(&a, d->key, d->attest_key, json, len, err));
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
int
drcopy_attest_primary(coord_drcopy *d, coord_catalog *cat, coord_drcopy_stats *st, coffer_err *err)
{
	char lim[COFFER_FMT_INT_SIZE];
	coffer_fmt_i64(lim, ATTEST_PER_PASS);
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
		if (ar == 0 && (ar = drcopy_digest_primary(d, key, msha, &e)) == 0) {
			if (j.manifest_sha[0] != '\0' && strcmp(msha, j.manifest_sha) != 0) {
				ar = coffer_err_set(&e, COFFER_ECORRUPT,
				    "manifest.json of %s does not "
				    "match the catalog's manifest_sha256",
				    j.id);
			}
		}
		if (ar == 0) {
			ar = drcopy_attestation_of(d, &j, msha, &att, &alen, &e);
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
			coffer_log_warn(
			    "attestation not written", "backup=%s error=%s", j.id, e.msg);
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
int
drcopy_export_revocations(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	char lim[COFFER_FMT_INT_SIZE];
	coffer_fmt_i64(lim, REVOKE_PER_PASS);
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
			coffer_log_warn(
			    "revocation not exported", "agent=%s error=%s", rev.agent, e.msg);
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

/* Records, once, that the chain no longer holds a head exported to DR:
 * logged, audited, and from the next tick paged as audit_chain_broken;
 * no newer head is exported meanwhile. */
static void
audit_broken(coord_drcopy *d, coord_catalog *cat, const coffer_err *why)
{
	/* Whole characters only: the problem becomes an alert's summary. */
	char problem[COFFER_ERR_MSG_MAX];
	snprintf(problem, sizeof(problem), "%s", why->msg);
	coffer_utf8_cut(problem, sizeof(d->audit_problem) - 1);
	pthread_mutex_lock(&d->audit_mu);
	bool first = d->audit_problem[0] == '\0';
	memcpy(d->audit_problem, problem, strlen(problem) + 1);
	pthread_mutex_unlock(&d->audit_mu);
	atomic_store(&d->audit_checked, true);
	if (!first) {
		return;
	}
	coffer_log_error("audit head export stopped", "error=%s", why->msg);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "problem", why->msg);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	coffer_err e;
	coffer_err_clear(&e);
	if (text == NULL ||
	    coord_audit_append(
	        cat, d->key, "coordinator", "audit.export_refused", "dr", text, NULL, &e) != 0) {
		coffer_log_error(
		    "audit row not written", "action=audit.export_refused error=%s", e.msg);
	}
	cJSON_free(text);
}

/* The head, after checking that what was exported before still holds. The
 * first export of a process reads DR's newest head (one listing) to know
 * what was exported before it started. */
int
drcopy_export_audit_head(coord_drcopy *d, coord_catalog *cat, int64_t now_ms, int64_t mono,
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
				coffer_log_warn("audit head export resumed",
				    "head=%s resumed_by=%" PRId64 " problem=%s", d->exported.key,
				    d->exported.resumed_by, problem);
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
		/* The head in DR held, or there was none: the chain's end is
		 * where it was, as far as DR can tell. */
		atomic_store(&d->audit_checked, true);
		d->exported_ms = mono;
		st->audit_exported = done;
	}
	return (rv);
}

bool
coord_drcopy_audit_checked(coord_drcopy *d)
{
	return (d->dr == NULL || atomic_load(&d->audit_checked));
}

bool
coord_drcopy_audit_problem(coord_drcopy *d, char *buf, size_t size)
{
	char problem[sizeof(d->audit_problem)];
	pthread_mutex_lock(&d->audit_mu);
	memcpy(problem, d->audit_problem, sizeof(problem));
	pthread_mutex_unlock(&d->audit_mu);
	bool broken = problem[0] != '\0';
	if (size > 0) {
		/* A shorter buffer gets whole characters: it feeds an alert. */
		coffer_utf8_cut(problem, size - 1);
		memcpy(buf, problem, strlen(problem) + 1);
	}
	return (broken);
}
