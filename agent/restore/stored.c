#include "agent/restore/stored.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/crypto/attestation.h"
#include "common/crypto/seal.h"
#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/hop.h"
#include "common/stream/sink.h"

/* Between reading and the caller's chain: 2 MiB in flight. */
#define HOP_SLOTS     8
#define HOP_SLOT_SIZE (256 * 1024)

typedef struct id_walk {
	const char *prefix;
	size_t prefix_len;
	agent_stored_id_cb cb;
	void *arg;
} id_walk;

static int
on_key(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	id_walk *w = arg;
	/* <prefix><id>/manifest.json: the manifest is the completion marker. */
	const char *rest = key + w->prefix_len;
	const char *slash = strchr(rest, '/');
	if (slash == NULL || strcmp(slash, "/manifest.json") != 0) {
		return (0);
	}
	char id[COFFER_MANIFEST_ID_SIZE];
	size_t n = (size_t)(slash - rest);
	if (n >= sizeof(id)) {
		return (0);
	}
	memcpy(id, rest, n);
	id[n] = '\0';
	if (coffer_manifest_id_check(id, NULL, NULL) != 0) {
		return (0);
	}
	return (w->cb(id, w->arg));
}

int
agent_stored_ids(agent_ctx *ctx, agent_stored_id_cb cb, void *arg, coffer_err *err)
{
	char prefix[COFFER_REPO_KEY_MAX];
	int rc = coffer_repo_backups_prefix(prefix, sizeof(prefix), ctx->cfg->service, err);
	if (rc != 0) {
		return (rc);
	}
	id_walk w = { prefix, strlen(prefix), cb, arg };
	/* Keys come in bytewise order and ids sort by time: oldest first. */
	return (coffer_repo_list(ctx->repo, prefix, on_key, &w, err));
}

/* ---- "latest" ----
 *
 * A backup id starts with the agent's clock, so the last id is the newest
 * only while every agent's clock was right: a backup taken thirty days
 * ahead would stay "latest" for thirty days. The database's own clock does
 * not skew: each manifest records the LSN the backup is consistent at
 * (logical: lsn_start, the snapshot's; physical: lsn_stop), and within one
 * cluster (one system_identifier) a later backup never has a smaller one.
 *
 * So: the newest id says which cluster is current (LSNs of two clusters
 * say nothing about each other; a service moved to a new cluster is the
 * only case where the id's time still decides), and among that cluster's
 * backups the greatest LSN wins, ties to the greater id (two backups at one
 * LSN hold the same data). When one of that cluster's backups has no LSN
 * (taken without the privilege to read it), LSNs cannot order them all and
 * the newest id wins, as before. Every candidate's manifest is read and
 * verified: one GET per retained backup. */

typedef struct id_list {
	agent_stored_keep_cb keep;
	void *keep_arg;
	char (*ids)[COFFER_MANIFEST_ID_SIZE];
	size_t n, cap;
} id_list;

static int
collect_id(const char *id, void *arg)
{
	id_list *l = arg;
	if (l->keep != NULL && !l->keep(id, l->keep_arg)) {
		return (0);
	}
	if (l->n == l->cap) {
		size_t cap = l->cap != 0 ? l->cap * 2 : 64;
		void *ids = realloc(l->ids, cap * sizeof(*l->ids));
		if (ids == NULL) {
			return (COFFER_ENOMEM);
		}
		l->ids = ids;
		l->cap = cap;
	}
	snprintf(l->ids[l->n++], COFFER_MANIFEST_ID_SIZE, "%s", id);
	return (0);
}

/* "X/Y" (hex, as PostgreSQL prints an LSN) to a number; false when it is
 * not one. */
static bool
lsn_parse(const char *text, uint64_t *out)
{
	const char *slash = strchr(text, '/');
	if (slash == NULL || slash == text || slash[1] == '\0' || slash - text > 8 ||
	    strlen(slash + 1) > 8) {
		return (false);
	}
	uint64_t hi = 0, lo = 0;
	for (const char *c = text; c < slash; c++) {
		if (!isxdigit((unsigned char)*c)) {
			return (false);
		}
		hi = hi * 16 +
		    (uint64_t)(isdigit((unsigned char)*c) ? *c - '0' : (tolower(*c) - 'a' + 10));
	}
	for (const char *c = slash + 1; *c != '\0'; c++) {
		if (!isxdigit((unsigned char)*c)) {
			return (false);
		}
		lo = lo * 16 +
		    (uint64_t)(isdigit((unsigned char)*c) ? *c - '0' : (tolower(*c) - 'a' + 10));
	}
	*out = hi << 32 | lo;
	return (true);
}

static bool
consistent_lsn(const coffer_manifest *m, uint64_t *out)
{
	const char *text = m->kind == COFFER_MANIFEST_PHYSICAL && m->lsn_stop[0] != '\0'
	    ? m->lsn_stop
	    : m->lsn_start;
	return (lsn_parse(text, out));
}

/* Chooses among l's ids (oldest id first) by the rule above. */
static int
choose_latest(agent_ctx *ctx, const id_list *l, char *id, coffer_err *err)
{
	const char *newest_id = l->ids[l->n - 1];
	snprintf(id, COFFER_MANIFEST_ID_SIZE, "%s", newest_id);
	if (l->n == 1) {
		return (0);
	}
	coffer_manifest *m = NULL;
	int rc = agent_stored_manifest(ctx, newest_id, &m, err);
	if (rc != 0 || m == NULL) {
		return (rc != 0 ? rc : COFFER_EINTERNAL);
	}
	uint64_t system = m->system_identifier, best = 0;
	bool ordered = consistent_lsn(m, &best);
	coffer_manifest_free(m);
	const char *best_id = newest_id;
	for (size_t i = l->n - 1; ordered && i-- > 0;) {
		rc = agent_stored_manifest(ctx, l->ids[i], &m, err);
		if (rc == COFFER_ENOENT) {
			/* Retention deleted it since the listing. */
			coffer_err_clear(err);
			continue;
		}
		if (rc != 0 || m == NULL) {
			return (rc != 0 ? rc : COFFER_EINTERNAL);
		}
		uint64_t lsn = 0;
		if (m->system_identifier == system) {
			ordered = consistent_lsn(m, &lsn);
			if (ordered && lsn > best) {
				best = lsn;
				best_id = l->ids[i];
			}
		}
		coffer_manifest_free(m);
	}
	if (ordered && best_id != newest_id) {
		snprintf(id, COFFER_MANIFEST_ID_SIZE, "%s", best_id);
		coffer_log(COFFER_LOG_WARN, "latest backup chosen by lsn, not by id",
		    "service=%s chosen=%s newest_id=%s hint=%s", ctx->cfg->service, best_id,
		    newest_id, "an agent's clock was ahead when it named the newer id");
	}
	return (0);
}

/* Reads the coordinator's attestation of backup id and checks it with
 * [keys] coordinator_public_key: it must name this service and backup and
 * the manifest's exact bytes. */
static int
attested_signer(agent_ctx *ctx, const char *id, const uint8_t *manifest, size_t len,
    coffer_attestation *att, coffer_err *err)
{
	char key[COFFER_REPO_KEY_MAX];
	int rc = coffer_repo_backup_key(
	    key, sizeof(key), ctx->cfg->service, id, COFFER_ATTESTATION_OBJECT, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *buf = coffer_buffer_sink_new(COFFER_ATTESTATION_MAX + 1, err);
	if (buf == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	rc = coffer_repo_read(ctx->repo, key, buf, err);
	if (rc == COFFER_ENOENT) {
		coffer_err_set(err, COFFER_EAUTH,
		    "backup %s is signed by a key this host does not hold, and repository %s has "
		    "no attestation of it",
		    id, ctx->repo_name);
		coffer_err_hint(err,
		    "the coordinator attests each backup soon after it completes, and every DR "
		    "copy; try --repo dr, or wait for the attestation");
	}
	if (rc == 0) {
		size_t alen = 0;
		const uint8_t *a = coffer_buffer_sink_data(buf, &alen);
		rc = coffer_attestation_verify((const char *)a, alen, ctx->coord_pub, att, err);
	}
	coffer_filter_free(buf);
	if (rc != 0) {
		return (rc);
	}
	uint8_t d[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	char got[COFFER_SHA256_LEN * 2 + 1];
	if (EVP_Digest(manifest, len, d, &dlen, EVP_sha256(), NULL) != 1 ||
	    dlen != COFFER_SHA256_LEN) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "sha-256 failed"));
	}
	coffer_hex_encode(d, COFFER_SHA256_LEN, got);
	if (strcmp(att->service, ctx->cfg->service) != 0 || strcmp(att->backup_id, id) != 0 ||
	    strcmp(att->manifest_sha256, got) != 0) {
		coffer_err_set(err, COFFER_EAUTH,
		    "the coordinator's attestation at %s does not vouch for this manifest "
		    "(it names backup %s of service %s, manifest %.16s...)",
		    key, att->backup_id, att->service, att->manifest_sha256);
		return (coffer_err_hint(
		    err, "the repository was tampered with or mixed up; do not restore it"));
	}
	return (0);
}

int
agent_stored_latest(
    agent_ctx *ctx, agent_stored_keep_cb keep, void *keep_arg, char *id, coffer_err *err)
{
	id[0] = '\0';
	id_list l = { .keep = keep, .keep_arg = keep_arg };
	int rc = agent_stored_ids(ctx, collect_id, &l, err);
	if (rc == COFFER_ENOMEM && err != NULL && err->code == 0) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory listing backups");
	}
	if (rc == 0 && l.n > 0) {
		rc = choose_latest(ctx, &l, id, err);
	}
	free(l.ids);
	return (rc);
}

/*
 * Which key may sign a manifest (docs/ARCHITECTURE.md, "Trust in a
 * manifest"): this host's own signing key, or the agent key the
 * coordinator's signed attestation names for exactly these bytes. A
 * manifest is never parsed without a key: parse skips the check for NULL.
 */
static int
verified_manifest(agent_ctx *ctx, const char *id, const uint8_t *data, size_t len,
    coffer_manifest **m, coffer_err *err)
{
	int rc = COFFER_EAUTH;
	if (ctx->sign_pub != NULL) {
		rc = coffer_manifest_parse((const char *)data, len, ctx->sign_pub, m, err);
		if (rc != COFFER_EAUTH) {
			return (rc);
		}
	}
	if (ctx->coord_pub == NULL) {
		if (ctx->sign_pub == NULL) {
			coffer_err_set(
			    err, COFFER_EAUTH, "no key to check backup %s's manifest with", id);
		}
		coffer_err_hint(err,
		    "a backup signed by another agent key (a rotated one, or the key of a lost "
		    "host) is checked through the coordinator's attestation: set [keys] "
		    "coordinator_public_key");
		return (COFFER_EAUTH);
	}
	coffer_err_clear(err);
	coffer_attestation att;
	rc = attested_signer(ctx, id, data, len, &att, err);
	coffer_sign_pubkey *signer = NULL;
	if (rc == 0) {
		rc = coffer_sign_pubkey_from_raw(att.agent_pubkey, &signer, err);
	}
	if (rc == 0) {
		rc = coffer_manifest_parse((const char *)data, len, signer, m, err);
	}
	coffer_sign_pubkey_free(signer);
	if (rc == 0 && strcmp((*m)->agent, att.agent) != 0) {
		rc = coffer_err_set(err, COFFER_EAUTH,
		    "manifest of %s names agent %s, its attestation agent %s", id, (*m)->agent,
		    att.agent);
		coffer_manifest_free(*m);
		*m = NULL;
	}
	return (rc);
}

/* Versions of one object looked at, at most (the S3 driver's bound). */
#define VERSIONS_MAX 64

/*
 * The version of a backup object to read. The agent wrote it once, with
 * If-None-Match, at a fresh key: its version is the oldest the key has, and
 * anything newer was put over it by someone else (docs/S3.md, "No silent
 * replacement"). So the oldest is read, with a warning naming the newer
 * one; the signed manifest still checks every byte. "" (the current one)
 * where the store keeps no versions or the key has one; also, with a
 * warning, where the credentials may not list versions.
 */
static int
version_of_record(agent_ctx *ctx, const char *id, const char *object, const char *key,
    char version[COFFER_REPO_VERSION_MAX], coffer_err *err)
{
	version[0] = '\0';
	coffer_repo_version *v = calloc(VERSIONS_MAX, sizeof(*v));
	if (v == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory listing versions"));
	}
	size_t n = 0;
	coffer_err e;
	coffer_err_clear(&e);
	int rc = coffer_repo_versions(ctx->repo, key, v, VERSIONS_MAX, &n, &e);
	if (rc == COFFER_EPERM) {
		coffer_log_warn("cannot list the versions of a backup object: reading the current "
		                "one (allow s3:ListBucketVersions on the service's prefix, "
		                "coffer-coordinator s3-policy)",
		    "backup=%s object=%s error=%s", id, object, e.msg);
		free(v);
		return (0);
	}
	if (rc != 0) {
		if (err != NULL) {
			*err = e;
		}
		free(v);
		return (coffer_err_wrap(err, "listing the versions of %s", key));
	}
	size_t oldest = n;
	for (size_t i = 0; i < n && i < VERSIONS_MAX; i++) {
		if (!v[i].delete_marker) {
			oldest = i; /* newest first: the last one wins */
		}
	}
	if (n > 1 && oldest < n) {
		snprintf(version, COFFER_REPO_VERSION_MAX, "%s", v[oldest].version_id);
		coffer_log_warn("a backup object was replaced in the repository: reading the "
		                "oldest version, the one the agent wrote",
		    "backup=%s object=%s version=%s newer=%s versions=%zu", id, object, version,
		    v[0].delete_marker ? "(a delete marker)" : v[0].version_id, n);
	}
	free(v);
	return (0);
}

int
agent_stored_manifest(
    agent_ctx *ctx, const char *id_or_latest, coffer_manifest **out, coffer_err *err)
{
	*out = NULL;
	char id[COFFER_MANIFEST_ID_SIZE] = "";
	int rc;
	if (strcmp(id_or_latest, "latest") == 0) {
		rc = agent_stored_latest(ctx, NULL, NULL, id, err);
		if (rc != 0) {
			return (rc);
		}
		if (id[0] == '\0') {
			return (coffer_err_set(err, COFFER_ENOENT,
			            "no published backup of service %s in repository %s",
			            ctx->cfg->service, ctx->repo_name),
			    coffer_err_hint(err, "take one with `coffer-agent backup`"));
		}
	} else {
		rc = coffer_manifest_id_check(id_or_latest, NULL, err);
		if (rc != 0) {
			return (coffer_err_hint(
			    err, "pass a backup id from `coffer-agent list`, or latest"));
		}
		snprintf(id, sizeof(id), "%s", id_or_latest);
	}
	char key[COFFER_REPO_KEY_MAX];
	rc = coffer_repo_backup_key(key, sizeof(key), ctx->cfg->service, id, "manifest.json", err);
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *buf = coffer_buffer_sink_new(COFFER_MANIFEST_MAX_BYTES, err);
	if (buf == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	char version[COFFER_REPO_VERSION_MAX];
	rc = version_of_record(ctx, id, "manifest.json", key, version, err);
	if (rc == 0) {
		rc = coffer_repo_read_version(ctx->repo, key, version, buf, err);
	}
	if (rc == COFFER_ENOENT) {
		coffer_err_set(err, COFFER_ENOENT,
		    "backup %s of service %s is not in repository %s", id, ctx->cfg->service,
		    ctx->repo_name),
		    coffer_err_hint(err, "list what is there with `coffer-agent list`");
	}
	coffer_manifest *m = NULL;
	if (rc == 0) {
		size_t len = 0;
		const uint8_t *data = coffer_buffer_sink_data(buf, &len);
		rc = verified_manifest(ctx, id, data, len, &m, err);
	}
	coffer_filter_free(buf);
	if (rc == 0 &&
	    (strcmp(m->service, ctx->cfg->service) != 0 || strcmp(m->backup_id, id) != 0)) {
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "manifest at %s describes backup %s of service %s", key, m->backup_id,
		    m->service);
		coffer_err_hint(
		    err, "the repository was tampered with or mixed up; do not restore it");
	}
	if (rc != 0) {
		coffer_manifest_free(m);
		return (rc);
	}
	*out = m;
	return (0);
}

static int
compare_digest(const coffer_filter *sha, const char *want_hex, const char *what, const char *id,
    coffer_err *err)
{
	uint8_t d[COFFER_SHA256_LEN];
	char got[COFFER_SHA256_LEN * 2 + 1];
	coffer_sha256_filter_digest(sha, d);
	coffer_hex_encode(d, sizeof(d), got);
	if (strcmp(got, want_hex) == 0) {
		return (0);
	}
	coffer_err_set(err, COFFER_ECORRUPT, "backup %s: %s SHA-256 is %s, the manifest says %s",
	    id, what, got, want_hex);
	return (coffer_err_hint(err,
	    "the stored object is not the one that was backed up; "
	    "restore another backup and investigate the repository"));
}

int
agent_stored_read(agent_ctx *ctx, const coffer_manifest *m, coffer_filter *out, coffer_err *err)
{
	return (agent_stored_read_flags(ctx, m, out, 0, err));
}

int
agent_stored_read_flags(
    agent_ctx *ctx, const coffer_manifest *m, coffer_filter *out, unsigned flags, coffer_err *err)
{
	char key[COFFER_REPO_KEY_MAX];
	int rc = coffer_repo_backup_key(key, sizeof(key), m->service, m->backup_id, "data", err);
	if (rc != 0) {
		return (rc);
	}
	/* out stays the caller's: our filters end in a borrow of it. */
	coffer_filter *plain_count =
	    coffer_count_filter_new(coffer_borrow_filter_new(out, err), err);
	/* Without the plaintext digest its place in the chain is a second
	 * counter, so the chain keeps one shape. */
	bool plain_digest = (flags & AGENT_STORED_FILES_PROVE) == 0;
	coffer_filter *plain_sha = plain_digest ? coffer_sha256_filter_new(plain_count, err)
	                                        : coffer_count_filter_new(plain_count, err);
	/* The plaintext digest and the caller's chain (files written and
	 * hashed, a dump materialised) run on a thread of its own while this
	 * one reads, hashes the stored bytes, decrypts and decompresses: a
	 * restore uses two cores, with the two hashes on different ones. */
	coffer_filter *hop = coffer_hop_filter_new(plain_sha, HOP_SLOTS, HOP_SLOT_SIZE, err);
	coffer_filter *stored_count = coffer_count_filter_new(
	    coffer_unseal_filter_new(coffer_zstd_decompress_new(hop, err), ctx->ring, err), err);
	coffer_filter *stored_sha = coffer_sha256_filter_new(stored_count, err);
	if (stored_sha == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	char version[COFFER_REPO_VERSION_MAX];
	rc = version_of_record(ctx, m->backup_id, "data", key, version, err);
	if (rc == 0) {
		rc = coffer_repo_read_version(ctx->repo, key, version, stored_sha, err);
	}
	if (rc == COFFER_ENOENT) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "backup %s has a manifest but no data object at %s", m->backup_id, key),
		    coffer_err_hint(err, "the repository lost the object; restore another backup");
	} else if (rc != 0) {
		coffer_err_wrap(err, "reading backup %s", m->backup_id);
	}
	if (rc == 0 && coffer_count_filter_bytes(stored_count) != m->stored_bytes) {
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "backup %s: stored object is %llu bytes, the manifest says %llu", m->backup_id,
		    (unsigned long long)coffer_count_filter_bytes(stored_count),
		    (unsigned long long)m->stored_bytes);
	}
	if (rc == 0) {
		rc = compare_digest(stored_sha, m->stored_sha256, "stored", m->backup_id, err);
	}
	if (rc == 0 && coffer_count_filter_bytes(plain_count) != m->plaintext_bytes) {
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "backup %s: plaintext is %llu bytes, the manifest says %llu", m->backup_id,
		    (unsigned long long)coffer_count_filter_bytes(plain_count),
		    (unsigned long long)m->plaintext_bytes);
	}
	if (rc == 0 && plain_digest) {
		rc = compare_digest(plain_sha, m->plaintext_sha256, "plaintext", m->backup_id, err);
	}
	/* Front to back: freeing the hop joins its worker before the filters
	 * after it go; the borrow leaves the caller's chain alone. */
	coffer_filter_free_chain(stored_sha);
	return (rc);
}
