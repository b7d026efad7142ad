/*
 * Escrowed keys into DR: each escrow object an agent wrote into the
 * primary repository (services/<service>/keys/<key id>.escrow.json, sealed
 * to the platform's escrow key, agent/backup/escrow.h) copied into the DR
 * repository COMPLIANCE-locked for [dr] audit_retention, read back and
 * checked, then recorded in key_escrows and audited (key.escrowed).
 *
 * Why the coordinator writes it: agents hold no DR credential (DR is the
 * copy a compromised production account cannot touch), and the
 * coordinator already copies everything else there. It never sees a key:
 * the object is ciphertext to an escrow key only the platform team holds.
 *
 * Why a key's lock is long: a key must outlive every backup it sealed, so
 * it takes the longest lock the copier knows, the audit records' (six
 * years by default), rather than one backup's.
 *
 * What it promises: an object whose header does not name the service and
 * key its place says is refused (logged) and never copied; an object
 * already in DR with the same bytes counts as copied; one failure is
 * logged and tried again next pass, never stopping the others.
 */
#include "coordinator/dr/drcopy_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/crypto/escrow.h"
#include "common/stream/sink.h"

typedef struct escrow_walk {
	coord_drcopy *d;
	coord_catalog *cat;
	const char *service;
	size_t prefix_len;
	PGresult *known; /* key ids already recorded for the service */
	int64_t now_ms;
	coord_drcopy_stats *st;
	int rv; /* a catalog error, which stops the pass */
} escrow_walk;

static bool
known(const escrow_walk *w, const char *key_id)
{
	for (int i = 0; i < PQntuples(w->known); i++) {
		if (strcmp(PQgetvalue(w->known, i, 0), key_id) == 0) {
			return (true);
		}
	}
	return (false);
}

/* The object from the primary, checked against its place, into DR. */
static int
copy_one(escrow_walk *w, const char *src, const char *key_id, coffer_escrow_entry *e, char sha[65],
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err)
{
	coord_drcopy *d = w->d;
	coffer_filter *buf = coffer_buffer_sink_new(COFFER_ESCROW_OBJECT_MAX + 1, err);
	if (buf == NULL) {
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	int rv = coffer_repo_read(d->primary, src, buf, err);
	size_t len = 0;
	const uint8_t *data = coffer_buffer_sink_data(buf, &len);
	if (rv == 0) {
		rv = coffer_escrow_describe((const char *)data, len, e, err);
	}
	if (rv == 0 && (strcmp(e->service, w->service) != 0 || strcmp(e->key_id, key_id) != 0)) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "escrow object %s names key %s of service %s", src, e->key_id, e->service);
	}
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (rv == 0 && EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1) {
		rv = coffer_err_set(err, COFFER_EINTERNAL, "sha-256 failed");
	}
	if (rv == 0) {
		coffer_hex_encode(md, 32, sha);
	}
	copy_job j;
	memset(&j, 0, sizeof(j));
	snprintf(j.lock, sizeof(j.lock), "COMPLIANCE");
	j.until_ms = w->now_ms + coffer_config_duration_ms(d->cfg->ini, "dr", "audit_retention");
	char dst[COFFER_REPO_KEY_MAX + COFFER_REPO_KEY_MAX];
	snprintf(dst, sizeof(dst), "%s%s", d->dr_prefix, src);
	if (rv == 0) {
		coffer_s3_put_opts opts = { .lock_mode = "COMPLIANCE",
			.lock_until_ms = j.until_ms };
		coffer_s3_upload *up = NULL;
		coffer_s3_object_info info;
		memset(&info, 0, sizeof(info));
		rv = coffer_s3_upload_begin(d->dr, dst, &opts, &up, err);
		if (rv == 0) {
			rv = coffer_s3_upload_write(up, data, len, err);
		}
		if (rv == 0) {
			rv = coffer_s3_upload_commit(up, &info, err);
		}
		coffer_s3_upload_free(up);
		version[0] = '\0';
		if (rv == 0) {
			snprintf(version, COFFER_S3_VERSION_ID_MAX, "%s", info.version_id);
		} else if (rv == COFFER_EEXIST) {
			/* A pass that wrote it but could not record it: the
			 * read-back below says whether it is ours. */
			coffer_err_clear(err);
			rv = 0;
			j.until_ms = 0;
		}
	}
	coffer_filter_free(buf);
	if (rv == 0) {
		rv = drcopy_verify_key(d, &j, dst, sha, version, err);
	}
	return (rv);
}

static int
on_object(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	escrow_walk *w = arg;
	const char *name = key + w->prefix_len;
	size_t nlen = strlen(name), slen = strlen(COFFER_REPO_ESCROW_SUFFIX);
	char key_id[COFFER_KEYRING_ID_MAX + 1];
	if (nlen <= slen || nlen - slen >= sizeof(key_id) || strchr(name, '/') != NULL ||
	    strcmp(name + nlen - slen, COFFER_REPO_ESCROW_SUFFIX) != 0) {
		return (0);
	}
	memcpy(key_id, name, nlen - slen);
	key_id[nlen - slen] = '\0';
	if (known(w, key_id) || atomic_load(&w->d->stop)) {
		return (atomic_load(&w->d->stop) ? 1 : 0);
	}
	coffer_err e;
	coffer_err_clear(&e);
	coffer_escrow_entry ent;
	char sha[65], version[COFFER_S3_VERSION_ID_MAX];
	int rv = copy_one(w, key, key_id, &ent, sha, version, &e);
	if (rv != 0) {
		coffer_log_warn("escrowed key not copied to DR", "service=%s key_id=%s error=%s",
		    w->service, key_id, e.msg);
		return (rv == COFFER_EUNAVAIL || rv == COFFER_ECANCELED ? 1 : 0);
	}
	char created[24], details[512];
	snprintf(created, sizeof(created), "%lld", (long long)ent.created_ms);
	snprintf(details, sizeof(details),
	    "{\"key_id\":\"%s\",\"recipient\":\"%s\",\"sha256\":\"%s\",\"object\":\"%s\"}", key_id,
	    ent.recipient, sha, key);
	const char *v[] = { w->service, key_id, ent.recipient, created, sha, version };
	coord_catalog *cat = w->cat;
	rv = coord_catalog_begin(cat, &e);
	if (rv == 0) {
		rv = coord_catalog_query_exec(cat,
		    "INSERT INTO key_escrows (service, key_id, recipient, key_created_at, sha256, "
		    "dr_version) VALUES ($1, $2, $3, to_timestamp($4::bigint / 1000.0), "
		    "decode($5, 'hex'), NULLIF($6, '')) ON CONFLICT DO NOTHING",
		    6, v, "recording an escrowed key", &e);
	}
	if (rv == 0) {
		rv = coord_audit_append(
		    cat, w->d->key, "coordinator", "key.escrowed", w->service, details, NULL, &e);
	}
	if (rv == 0) {
		rv = coord_catalog_commit(cat, &e);
	} else {
		coord_catalog_rollback(cat);
	}
	if (rv != 0) {
		w->rv = rv;
		return (1);
	}
	w->st->escrowed++;
	coffer_log_info("escrowed key copied to DR", "service=%s key_id=%s recipient=%s",
	    w->service, key_id, ent.recipient);
	return (0);
}

int
drcopy_export_escrows(
    coord_drcopy *d, coord_catalog *cat, int64_t now_ms, coord_drcopy_stats *st, coffer_err *err)
{
	int rv;
	PGresult *svc = coord_catalog_query(
	    cat, "SELECT name FROM services ORDER BY name", 0, NULL, "reading services", &rv, err);
	if (svc == NULL) {
		return (rv);
	}
	for (int i = 0; i < PQntuples(svc) && rv == 0 && !atomic_load(&d->stop); i++) {
		const char *service = PQgetvalue(svc, i, 0);
		char prefix[COFFER_REPO_KEY_MAX];
		coffer_err e;
		coffer_err_clear(&e);
		if (coffer_repo_escrow_prefix(prefix, sizeof(prefix), service, &e) != 0) {
			continue;
		}
		const char *v[] = { service };
		PGresult *kn =
		    coord_catalog_query(cat, "SELECT key_id FROM key_escrows WHERE service = $1", 1,
		        v, "reading escrowed keys", &rv, err);
		if (kn == NULL) {
			break;
		}
		escrow_walk w = { .d = d,
			.cat = cat,
			.service = service,
			.prefix_len = strlen(prefix),
			.known = kn,
			.now_ms = now_ms,
			.st = st };
		int lr = coffer_repo_list(d->primary, prefix, on_object, &w, &e);
		PQclear(kn);
		if (w.rv != 0) {
			rv = w.rv;
			*err = e;
		} else if (lr != 0) {
			coffer_log_warn(
			    "escrowed keys not listed", "service=%s error=%s", service, e.msg);
		}
	}
	PQclear(svc);
	return (rv);
}
