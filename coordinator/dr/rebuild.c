/*
 * Rebuild the catalog from a repository (coordinator/dr/rebuild.h).
 */
#include "coordinator/dr/rebuild.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/sha.h>

#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"
#include "common/repo/repo.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"
#include "coordinator/dr/attest.h"
#include "coordinator/policy/prune.h"

#define ACTOR "rebuild-catalog"

typedef struct rebuild {
	coord_catalog *cat;
	const coord_audit_key *key;
	const coord_config *cfg;
	const char *repo_name;
	coffer_repo *repo;
	cJSON *report;
	coord_rebuild_stats *st;
	int fatal;       /* a catalog or repository error that stops the run */
	coffer_err *err; /* for fatal */
} rebuild;

/* Reads a whole object (at most max bytes) into a buffer sink; *sink is
 * the caller's to free. */
static int
read_whole(coffer_repo *repo, const char *key, size_t max, coffer_filter **sink, coffer_err *err)
{
	*sink = coffer_buffer_sink_new(max, err);
	if (*sink == NULL) {
		return (err->code);
	}
	return (coffer_repo_read(repo, key, *sink, err));
}

/* Streams data and compares it with the manifest's digest and size. */
static int
check_data(coffer_repo *repo, const char *key, const coffer_manifest *m, coffer_err *err)
{
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(err), err);
	coffer_filter *sha = coffer_sha256_filter_new(cnt, err);
	if (sha == NULL) {
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	int rv = coffer_repo_read(repo, key, sha, err);
	uint8_t md[COFFER_SHA256_LEN];
	char got[65];
	coffer_sha256_filter_digest(sha, md);
	coffer_hex_encode(md, sizeof(md), got);
	uint64_t bytes = coffer_count_filter_bytes(cnt);
	coffer_filter_free_chain(sha);
	if (rv == COFFER_ENOENT) {
		return (coffer_err_set(err, COFFER_ENOENT, "the data object is missing"));
	}
	if (rv != 0) {
		return (rv);
	}
	if (bytes != m->stored_bytes || strcmp(got, m->stored_sha256) != 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "the data object (%" PRIu64 " bytes, "
		    "sha256 %.16s...) does not match its manifest (%" PRIu64 " bytes, sha256 "
		    "%.16s...)",
		    bytes, got, m->stored_bytes, m->stored_sha256));
	}
	return (0);
}

/* Proves one backup; *m gets its manifest. 0, or the reason it is refused
 * (a COFFER_EUNAVAIL or COFFER_ENOMEM stops the run). */
static int
prove(rebuild *r, const char *service, const char *id, coord_attestation *att, coffer_manifest **m,
    char manifest_sha[65], coffer_err *err)
{
	*m = NULL;
	char key[COFFER_REPO_KEY_MAX];
	coffer_filter *buf = NULL;
	int rv = coffer_repo_backup_key(key, sizeof(key), service, id, COORD_ATTEST_OBJECT, err);
	if (rv == 0) {
		rv = read_whole(r->repo, key, COORD_ATTEST_MAX, &buf, err);
		if (rv == COFFER_ENOENT) {
			coffer_err_set(err, COFFER_EAUTH,
			    "no attestation: nothing proves which agent "
			    "key may sign this manifest");
			coffer_err_hint(err,
			    "a backup the coordinator never attested cannot be "
			    "trusted; restore it by hand with `coffer-agent restore "
			    "--backup %s` if you know it is genuine",
			    id);
		} else if (rv == COFFER_ETOOBIG) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "the attestation is larger than %d bytes", COORD_ATTEST_MAX);
		}
	}
	if (rv == 0) {
		size_t len = 0;
		const uint8_t *text = coffer_buffer_sink_data(buf, &len);
		rv = coord_attest_parse((const char *)text, len, r->key, att, err);
	}
	coffer_filter_free(buf);
	buf = NULL;
	if (rv != 0) {
		return (rv);
	}
	if (strcmp(att->service, service) != 0 || strcmp(att->backup_id, id) != 0) {
		return (coffer_err_set(err, COFFER_EAUTH,
		    "the attestation is for backup %s of "
		    "service %s, not for this one",
		    att->backup_id, att->service));
	}
	if ((rv = coffer_repo_backup_key(key, sizeof(key), service, id, "manifest.json", err)) !=
	    0) {
		return (rv);
	}
	rv = read_whole(r->repo, key, COFFER_MANIFEST_MAX_BYTES, &buf, err);
	coffer_sign_pubkey *pub = NULL;
	if (rv == 0) {
		size_t len = 0;
		const uint8_t *text = coffer_buffer_sink_data(buf, &len);
		uint8_t md[COFFER_SHA256_LEN];
		SHA256(text, len, md);
		coffer_hex_encode(md, sizeof(md), manifest_sha);
		if (strcmp(manifest_sha, att->manifest_sha256) != 0) {
			rv = coffer_err_set(err, COFFER_ECORRUPT,
			    "manifest.json (sha256 %.16s...) is "
			    "not the attested one (%.16s...)",
			    manifest_sha, att->manifest_sha256);
		}
		if (rv == 0) {
			rv = coffer_sign_pubkey_from_raw(att->agent_pubkey, &pub, err);
		}
		if (rv == 0) {
			rv = coffer_manifest_parse((const char *)text, len, pub, m, err);
		}
	}
	coffer_filter_free(buf);
	coffer_sign_pubkey_free(pub);
	if (rv != 0) {
		return (rv);
	}
	const coffer_manifest *mf = *m;
	if (strcmp(mf->service, service) != 0 || strcmp(mf->backup_id, id) != 0 ||
	    strcmp(mf->agent, att->agent) != 0 ||
	    strcmp(mf->stored_sha256, att->stored_sha256) != 0 ||
	    mf->stored_bytes != att->stored_bytes) {
		return (coffer_err_set(err, COFFER_EAUTH,
		    "the manifest (service %s, id %s, agent %s) "
		    "does not match its attestation and its place in the repository",
		    mf->service, mf->backup_id, mf->agent));
	}
	if ((rv = coffer_repo_backup_key(key, sizeof(key), service, id, "data", err)) != 0) {
		return (rv);
	}
	return (check_data(r->repo, key, mf, err));
}

static int
record(rebuild *r, const coord_attestation *att, const coffer_manifest *m, const char *manifest_sha,
    bool *present, coffer_err *err)
{
	*present = false;
	char pub[COFFER_SIGN_PUBKEY_HEX];
	coffer_hex_encode(att->agent_pubkey, sizeof(att->agent_pubkey), pub);
	int rv = coord_catalog_begin(r->cat, err);
	if (rv != 0) {
		return (rv);
	}
	const char *iv[] = { m->backup_id };
	PGresult *res =
	    coord_catalog_query(r->cat, "SELECT 1 FROM backups WHERE id = $1 FOR UPDATE", 1, iv,
	        "looking up a backup", &rv, err);
	if (res != NULL) {
		*present = PQntuples(res) > 0;
		PQclear(res);
	}
	const char *av[] = { m->agent };
	if (rv == 0 && !*present) {
		res = coord_catalog_query(r->cat, "SELECT service FROM agents WHERE name = $1", 1,
		    av, "looking up an agent", &rv, err);
		if (res != NULL) {
			if (PQntuples(res) > 0 &&
			    (PQgetisnull(res, 0, 0) ||
			        strcmp(PQgetvalue(res, 0, 0), m->service) != 0)) {
				rv = coffer_err_set(err, COFFER_EREFUSED,
				    "agent %s is enrolled in the "
				    "catalog for %s, not for %s",
				    m->agent,
				    PQgetisnull(res, 0, 0) ? "drills" : PQgetvalue(res, 0, 0),
				    m->service);
			}
			PQclear(res);
		}
	}
	if (rv == 0 && !*present) {
		/* The attestation is the coordinator's own record of the
		 * enrollment; an agent it names comes back as it was. */
		const char *v[] = { m->agent, m->service, pub };
		res = coord_catalog_query(r->cat,
		    "INSERT INTO agents (name, service, pubkey, enrolled_by) VALUES ($1, $2, "
		    "decode($3, 'hex'), '" ACTOR "') ON CONFLICT DO NOTHING RETURNING name",
		    3, v, "recording an attested agent", &rv, err);
		bool enrolled = res != NULL && PQntuples(res) == 1;
		PQclear(res);
		if (enrolled) {
			/* The agents row is derived from the audit log: audit
			 * verify checks every key against an agent.enroll row. */
			uint8_t md[SHA256_DIGEST_LENGTH];
			char fp[COFFER_SIGN_FINGERPRINT_HEX];
			SHA256(att->agent_pubkey, sizeof(att->agent_pubkey), md);
			coffer_hex_encode(md, 16, fp); /* coffer_sign_fingerprint's rule */
			cJSON *d = cJSON_CreateObject();
			cJSON_AddStringToObject(d, "agent", m->agent);
			cJSON_AddStringToObject(d, "service", m->service);
			cJSON_AddStringToObject(d, "fingerprint", fp);
			cJSON_AddStringToObject(d, "source", "rebuild-catalog");
			char *text = cJSON_PrintUnformatted(d);
			cJSON_Delete(d);
			rv = text == NULL
			    ? coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row")
			    : coord_audit_append(
			          r->cat, r->key, ACTOR, "agent.enroll", m->agent, text, NULL, err);
			cJSON_free(text);
		}
	}
	char a[6][32];
	snprintf(a[0], sizeof(a[0]), "%" PRId64, m->started_at);
	snprintf(a[1], sizeof(a[1]), "%" PRId64, m->finished_at);
	snprintf(a[2], sizeof(a[2]), "%" PRIu64, m->plaintext_bytes);
	snprintf(a[3], sizeof(a[3]), "%" PRIu64, m->stored_bytes);
	snprintf(a[4], sizeof(a[4]), "%" PRIu32, m->timeline);
	snprintf(a[5], sizeof(a[5]), "%" PRIu64, m->system_identifier);
	char pgv[16], summary[128];
	snprintf(pgv, sizeof(pgv), "%d", m->pg_version);
	snprintf(summary, sizeof(summary),
	    "{\"manifest_sha256\":\"%s\",\"source\":\"rebuild-catalog\"}", manifest_sha);
	if (rv == 0 && !*present) {
		const char *v[] = { m->backup_id, m->service, m->agent,
			m->kind == COFFER_MANIFEST_PHYSICAL ? "physical" : "logical", r->repo_name,
			a[0], a[1], a[2], a[3], m->plaintext_sha256, m->stored_sha256, m->key_id,
			pgv, a[5], m->timeline > 0 ? a[4] : NULL,
			m->lsn_start[0] != '\0' ? m->lsn_start : NULL,
			m->lsn_stop[0] != '\0' ? m->lsn_stop : NULL, summary,
			strcmp(r->repo_name, "primary") == 0 ? "t" : "f" };
		rv = coord_catalog_query_exec(r->cat,
		    "INSERT INTO backups (id, service, agent, kind, status, repo, started_at, "
		    "finished_at, plain_bytes, stored_bytes, plain_sha256, stored_sha256, key_id, "
		    "pg_version, system_identifier, timeline, start_lsn, stop_lsn, manifest, "
		    "attested_at) VALUES ($1, $2, $3, $4, 'completed', $5, to_timestamp($6::bigint / 1000.0), to_timestamp($7::bigint / 1000.0), "
		    "$8::bigint, $9::bigint, decode($10, 'hex'), decode($11, 'hex'), $12, "
		    "$13::integer, $14::numeric, $15::integer, $16::pg_lsn, $17::pg_lsn, $18::jsonb, "
		    "CASE WHEN $19::boolean THEN now() END)",
		    19, v, "recording a rebuilt backup", err);
	}
	if (rv == 0 && !*present && strcmp(r->repo_name, "dr") == 0) {
		const char *v[] = { m->backup_id, m->stored_sha256, a[3] };
		rv = coord_catalog_query_exec(r->cat,
		    "INSERT INTO backup_copies (backup_id, repo, status, stored_sha256, stored_bytes, "
		    "finished_at) VALUES ($1, 'dr', 'verified', decode($2, 'hex'), $3::bigint, now()) "
		    "ON CONFLICT DO NOTHING",
		    3, v, "recording a rebuilt DR copy", err);
	}
	if (rv == 0 && !*present) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "service", m->service);
		cJSON_AddStringToObject(d, "agent", m->agent);
		cJSON_AddStringToObject(d, "repository", r->repo_name);
		cJSON_AddStringToObject(d, "manifest_sha256", manifest_sha);
		cJSON_AddStringToObject(d, "stored_sha256", m->stored_sha256);
		cJSON_AddNumberToObject(d, "stored_bytes", (double)m->stored_bytes);
		char *text = cJSON_PrintUnformatted(d);
		cJSON_Delete(d);
		rv = text == NULL ? coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row")
		                  : coord_audit_append(r->cat, r->key, ACTOR, "backup.rebuilt",
		                        m->backup_id, text, NULL, err);
		cJSON_free(text);
	}
	if (rv == 0) {
		return (coord_catalog_commit(r->cat, err));
	}
	coord_catalog_rollback(r->cat);
	return (rv);
}

static void
report(rebuild *r, const char *service, const char *id, const char *result, const char *problem)
{
	if (r->report == NULL) {
		return;
	}
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "backup_id", id);
	cJSON_AddStringToObject(o, "service", service);
	cJSON_AddStringToObject(o, "result", result);
	if (problem != NULL) {
		cJSON_AddStringToObject(o, "problem", problem);
	} else {
		cJSON_AddNullToObject(o, "problem");
	}
	cJSON_AddItemToArray(r->report, o);
}

static int
refuse(rebuild *r, const char *service, const char *id, const coffer_err *why)
{
	char problem[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 16];
	if (why->hint[0] != '\0') {
		snprintf(problem, sizeof(problem), "%s (hint: %s)", why->msg, why->hint);
	} else {
		snprintf(problem, sizeof(problem), "%s", why->msg);
	}
	r->st->refused++;
	report(r, service, id, "refused", problem);
	coffer_log_error("backup refused", "service=%s backup=%s problem=%s", service, id, problem);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "service", service);
	cJSON_AddStringToObject(d, "repository", r->repo_name);
	cJSON_AddStringToObject(d, "problem", problem);
	char *text = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	int rv = text == NULL ? coffer_err_set(r->err, COFFER_ENOMEM, "no memory for an audit row")
	                      : coord_audit_append(r->cat, r->key, ACTOR, "catalog.rebuild_refused",
	                            id, text, NULL, r->err);
	cJSON_free(text);
	return (rv);
}

static int
on_key(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	rebuild *r = arg;
	/* services/<service>/backups/<id>/manifest.json */
	char service[COFFER_REPO_SEGMENT_MAX + 1], id[COFFER_REPO_SEGMENT_MAX + 1];
	const char *p = key + strlen("services/");
	const char *s1 = strchr(p, '/');
	if (s1 == NULL || (size_t)(s1 - p) > COFFER_REPO_SEGMENT_MAX ||
	    strncmp(s1, "/backups/", 9) != 0) {
		return (0);
	}
	const char *q = s1 + 9;
	const char *s2 = strchr(q, '/');
	if (s2 == NULL || strcmp(s2, "/manifest.json") != 0 ||
	    (size_t)(s2 - q) > COFFER_REPO_SEGMENT_MAX) {
		return (0);
	}
	memcpy(service, p, (size_t)(s1 - p));
	service[s1 - p] = '\0';
	memcpy(id, q, (size_t)(s2 - q));
	id[s2 - q] = '\0';

	coffer_err e;
	coffer_err_clear(&e);
	if (coord_config_service(r->cfg, service) == NULL) {
		coffer_err_set(
		    &e, COFFER_EREFUSED, "service %s is not in the configuration", service);
		coffer_err_hint(&e, "add [service.%s] with its policy and rebuild again", service);
		return ((r->fatal = refuse(r, service, id, &e)) != 0 ? -1 : 0);
	}
	coord_attestation att;
	coffer_manifest *m = NULL;
	char msha[65] = "";
	int rv = prove(r, service, id, &att, &m, msha, &e);
	bool present = false;
	if (rv == 0) {
		rv = record(r, &att, m, msha, &present, &e);
	}
	coffer_manifest_free(m);
	if (rv == COFFER_EUNAVAIL || rv == COFFER_ENOMEM || rv == COFFER_EPG) {
		*r->err = e;
		r->fatal = rv;
		return (-1);
	}
	if (rv != 0) {
		return ((r->fatal = refuse(r, service, id, &e)) != 0 ? -1 : 0);
	}
	if (present) {
		r->st->present++;
		report(r, service, id, "present", NULL);
	} else {
		r->st->recovered++;
		report(r, service, id, "recovered", NULL);
		coffer_log_info("backup recovered", "service=%s backup=%s", service, id);
	}
	return (0);
}

/* agents/<agent>/revoked-<key>.json: the agent, if a backup's attestation
 * brought it back, is revoked again (only with the key that was revoked). A
 * revocation that does not authenticate is refused like a backup. */
static int
on_revocation(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	rebuild *r = arg;
	const char *base = strrchr(key, '/');
	if (base == NULL || strncmp(base, "/revoked-", 9) != 0) {
		return (0);
	}
	coffer_err e;
	coffer_err_clear(&e);
	coffer_filter *sink = NULL;
	coord_revocation rev;
	int rv = read_whole(r->repo, key, COORD_ATTEST_MAX + 1, &sink, &e);
	if (rv == 0) {
		size_t len = 0;
		const uint8_t *b = coffer_buffer_sink_data(sink, &len);
		rv = coord_revocation_parse((const char *)b, len, r->key, &rev, &e);
	}
	coffer_filter_free(sink);
	if (rv == COFFER_EUNAVAIL || rv == COFFER_ENOMEM) {
		*r->err = e;
		r->fatal = rv;
		return (-1);
	}
	if (rv != 0) {
		return ((r->fatal = refuse(r, "-", key, &e)) != 0 ? -1 : 0);
	}
	char pub[COFFER_SIGN_PUBKEY_HEX], at[24];
	coffer_hex_encode(rev.agent_pubkey, sizeof(rev.agent_pubkey), pub);
	snprintf(at, sizeof(at), "%" PRId64, rev.revoked_at_ms);
	const char *v[] = { rev.agent, pub, at, rev.revoked_by };
	/* A rebuilt agent was enrolled just now: its revocation cannot be
	 * dated before that (a CHECK); the original time goes to the audit. */
	PGresult *res = coord_catalog_query(r->cat,
	    "UPDATE agents SET revoked_at = GREATEST(to_timestamp($3::bigint / 1000.0), enrolled_at), revoked_by = $4 "
	    "WHERE name = $1 AND pubkey = decode($2, 'hex') AND revoked_at IS NULL RETURNING name",
	    4, v, "recording a revocation", &rv, &e);
	if (res == NULL) {
		*r->err = e;
		r->fatal = rv;
		return (-1);
	}
	bool changed = PQntuples(res) == 1;
	PQclear(res);
	if (!changed) {
		return (0);
	}
	r->st->revoked++;
	coffer_log_info("agent revoked again", "agent=%s revoked_by=%s", rev.agent, rev.revoked_by);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "repository", r->repo_name);
	cJSON_AddStringToObject(d, "revoked_by", rev.revoked_by);
	cJSON_AddStringToObject(d, "revoked_at_ms", at);
	char *text = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	rv = text == NULL ? coffer_err_set(r->err, COFFER_ENOMEM, "no memory for an audit row")
	                  : coord_audit_append(r->cat, r->key, ACTOR, "agent.revoke_rebuilt",
	                        rev.agent, text, NULL, r->err);
	cJSON_free(text);
	return ((r->fatal = rv) != 0 ? -1 : 0);
}

int
coord_rebuild(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *repo, cJSON *report_arr, coord_rebuild_stats *st, coffer_err *err)
{
	memset(st, 0, sizeof(*st));
	if (strcmp(repo, "primary") != 0 && strcmp(repo, "dr") != 0) {
		coffer_err_set(err, COFFER_EINVAL, "--repo %s is not a repository name", repo);
		return (coffer_err_hint(err, "use --repo primary or --repo dr"));
	}
	coffer_repo_config rc;
	int rv = coord_config_repo(cfg, repo, &rc, err);
	coffer_repo *r = NULL;
	if (rv == 0 && (rv = coffer_repo_open(&rc, COFFER_REPO_READ, &r, err)) != 0) {
		coffer_err_wrap(err, "[repository.%s]", repo);
	}
	/* Services come from the configuration, audited like every policy load. */
	if (rv == 0) {
		rv = coord_policy_sync(cat, key, ACTOR, cfg, err);
	}
	if (rv != 0) {
		coffer_repo_close(r);
		return (rv);
	}
	rebuild rb = { .cat = cat,
		.key = key,
		.cfg = cfg,
		.repo_name = repo,
		.repo = r,
		.report = report_arr,
		.st = st,
		.err = err };
	rv = coffer_repo_list(r, "services/", on_key, &rb, err);
	/* After the backups, whose attestations bring their agents back. */
	if (rv == 0 && rb.fatal == 0) {
		rv = coffer_repo_list(r, COORD_REVOCATIONS_PREFIX, on_revocation, &rb, err);
	}
	if (rb.fatal != 0) {
		rv = rb.fatal;
	}
	coffer_repo_close(r);
	if (rv != 0) {
		return (rv);
	}
	char text[256];
	snprintf(text, sizeof(text),
	    "{\"repository\":\"%s\",\"recovered\":%d,\"present\":%d,\"refused\":%d,"
	    "\"revoked\":%d}",
	    repo, st->recovered, st->present, st->refused, st->revoked);
	return (coord_audit_append(cat, key, ACTOR, "catalog.rebuilt", repo, text, NULL, err));
}
