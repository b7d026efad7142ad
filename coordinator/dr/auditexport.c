/*
 * Audit head export (coordinator/dr/auditexport.h).
 */
#include "coordinator/dr/auditexport.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/stream/digest.h"
#include "common/stream/sink.h"

#define HEAD_DOMAIN    "coffer-audit-head-v1"
#define HEAD_MAX       4096
#define RESUMED_ACTION "audit.export_resumed"

static int
head_sig(const coord_audit_key *key, const coord_audit_head *h, char out[65], coffer_err *err)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s%c%" PRId64 "%c%s%c%s", HEAD_DOMAIN, 0, h->chain_seq,
	    0, h->mac_hex, 0, h->at);
	if (n < 0 || (size_t)n >= sizeof(msg)) {
		return (coffer_err_set(err, COFFER_EINVAL, "audit head too long to sign"));
	}
	uint8_t mac[32];
	size_t len = 0;
	if (EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key->bytes, COORD_AUDIT_KEY_LEN,
	        (const uint8_t *)msg, (size_t)n, mac, sizeof(mac), &len) == NULL ||
	    len != sizeof(mac)) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "cannot sign the audit head"));
	}
	coffer_hex_encode(mac, sizeof(mac), out);
	return (0);
}

int
coord_audit_export(coord_catalog *cat, const coord_audit_key *key, coffer_s3 *dr,
    const char *prefix, int64_t now_ms, int64_t retention_ms, coord_audit_head *last,
    bool *exported, coffer_err *err)
{
	*exported = false;
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT h.chain_seq, encode(h.mac, 'hex'), COALESCE(a.at::text, ''), "
	    "COALESCE((SELECT left(encode(mac, 'hex'), 16) FROM audit WHERE chain_seq = 1), '') "
	    "FROM audit_head h LEFT JOIN audit a ON a.chain_seq = h.chain_seq WHERE h.id = 1",
	    0, NULL, "reading the audit head", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	coord_audit_head h;
	memset(&h, 0, sizeof(h));
	if (PQntuples(res) == 1) {
		h.chain_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		snprintf(h.mac_hex, sizeof(h.mac_hex), "%s", PQgetvalue(res, 0, 1));
		snprintf(h.at, sizeof(h.at), "%s", PQgetvalue(res, 0, 2));
		snprintf(h.chain_id, sizeof(h.chain_id), "%s", PQgetvalue(res, 0, 3));
	}
	PQclear(res);
	if (h.chain_seq == 0 || h.chain_seq <= last->chain_seq) {
		return (0);
	}
	if (last->chain_seq > 0) {
		char seq_text[24];
		snprintf(seq_text, sizeof(seq_text), "%" PRId64, last->chain_seq);
		const char *v[] = { seq_text };
		res = coord_catalog_query(cat,
		    "SELECT encode(mac, 'hex') FROM audit WHERE chain_seq = $1::bigint", 1, v,
		    "reading the last exported audit row", &rv, err);
		if (res == NULL) {
			return (rv);
		}
		bool present = PQntuples(res) == 1;
		bool same = present && strcmp(PQgetvalue(res, 0, 0), last->mac_hex) == 0;
		PQclear(res);
		if (!same) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "the audit chain was rewritten: row %" PRId64
			    ", exported to the DR repository as %s, is %s now",
			    last->chain_seq, last->key, present ? "different" : "gone");
			return (coffer_err_hint(err,
			    "no newer head is exported until an operator has "
			    "looked: compare coffer audit list with the exported "
			    "heads, then restart the coordinator"));
		}
	}
	char sig[65], seq[24];
	if ((rv = head_sig(key, &h, sig, err)) != 0) {
		return (rv);
	}
	snprintf(seq, sizeof(seq), "%" PRId64, h.chain_seq);
	time_t t = (time_t)(now_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	char day[16];
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	snprintf(h.key, sizeof(h.key), "%saudit/%s/%s/head-%020" PRId64 ".json", prefix, h.chain_id,
	    day, h.chain_seq);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "format", 1);
	cJSON_AddStringToObject(o, "chain_seq", seq);
	cJSON_AddStringToObject(o, "mac", h.mac_hex);
	cJSON_AddStringToObject(o, "at", h.at);
	cJSON_AddStringToObject(o, "sig", sig);
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the audit head"));
	}
	coffer_s3_put_opts opts = { .lock_mode = "COMPLIANCE",
		.lock_until_ms = now_ms + retention_ms };
	coffer_s3_upload *up = NULL;
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	rv = coffer_s3_upload_begin(dr, h.key, &opts, &up, err);
	if (rv == 0) {
		rv = coffer_s3_upload_write(up, (const uint8_t *)text, strlen(text), err);
	}
	if (rv == 0) {
		rv = coffer_s3_upload_commit(up, &info, err);
	}
	coffer_s3_upload_free(up);
	cJSON_free(text);
	if (rv == COFFER_EEXIST) {
		rv = 0; /* the same head, exported before a restart */
	}
	if (rv != 0) {
		return (coffer_err_wrap(err, "exporting the audit head to the DR repository"));
	}
	cJSON *d = cJSON_CreateObject();
	cJSON_AddNumberToObject(d, "chain_seq", (double)h.chain_seq);
	cJSON_AddStringToObject(d, "mac", h.mac_hex);
	cJSON_AddStringToObject(d, "key", h.key);
	cJSON_AddStringToObject(d, "version_id", info.version_id);
	char *dtext = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	rv = dtext == NULL ? coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row")
	                   : coord_audit_append(cat, key, "coordinator", "audit.head_exported",
	                         "dr", dtext, NULL, err);
	cJSON_free(dtext);
	if (rv == 0) {
		*last = h;
		*exported = true;
	}
	return (rv);
}

static int
newest_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	const char *base = strrchr(key, '/');
	if (base != NULL && strncmp(base, "/head-", 6) == 0) {
		snprintf(arg, COFFER_REPO_KEY_MAX, "%s", key); /* keys come in order */
	}
	return (0);
}

static int
str_of(const cJSON *o, const char *name, char *out, size_t size, coffer_err *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!cJSON_IsString(v) || strlen(v->valuestring) >= size) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "exported audit head field %s is "
		    "missing or too long",
		    name));
	}
	memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
	return (0);
}

static int
check_newest(coord_catalog *cat, const coord_audit_key *key, coffer_repo *dr, coord_audit_head *h,
    bool *found, coffer_err *err)
{
	*found = false;
	memset(h, 0, sizeof(*h));
	int rv;
	PGresult *res = coord_catalog_query(cat,
	    "SELECT COALESCE((SELECT left(encode(mac, 'hex'), 16) FROM audit WHERE chain_seq = 1), "
	    "'')",
	    0, NULL, "reading the audit chain's first row", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	snprintf(h->chain_id, sizeof(h->chain_id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (h->chain_id[0] == '\0') {
		return (0); /* an empty chain has exported nothing */
	}
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "audit/%s/", h->chain_id);
	rv = coffer_repo_list(dr, prefix, newest_cb, h->key, err);
	if (rv != 0 || h->key[0] == '\0') {
		return (rv);
	}
	*found = true;
	coffer_filter *buf = coffer_buffer_sink_new(HEAD_MAX, err);
	if (buf == NULL) {
		return (err->code);
	}
	if ((rv = coffer_repo_read(dr, h->key, buf, err)) != 0) {
		coffer_filter_free(buf);
		return (coffer_err_wrap(err, "reading the exported audit head %s", h->key));
	}
	size_t len = 0;
	const uint8_t *text = coffer_buffer_sink_data(buf, &len);
	cJSON *o = cJSON_ParseWithLength((const char *)text, len);
	coffer_filter_free(buf);
	char seq[24], sig[65], want[65];
	if (!cJSON_IsObject(o)) {
		rv = coffer_err_set(
		    err, COFFER_ECORRUPT, "exported audit head %s is not JSON", h->key);
	} else if ((rv = str_of(o, "chain_seq", seq, sizeof(seq), err)) == 0 &&
	    (rv = str_of(o, "mac", h->mac_hex, sizeof(h->mac_hex), err)) == 0 &&
	    (rv = str_of(o, "at", h->at, sizeof(h->at), err)) == 0 &&
	    (rv = str_of(o, "sig", sig, sizeof(sig), err)) == 0) {
		h->chain_seq = strtoll(seq, NULL, 10);
		rv = head_sig(key, h, want, err);
		if (rv == 0 && CRYPTO_memcmp(want, sig, 64) != 0) {
			rv = coffer_err_set(err, COFFER_EAUTH,
			    "exported audit head %s is not signed "
			    "with this audit key: it is forged, or the key changed",
			    h->key);
			coffer_err_hint(err,
			    "the DR account can list who wrote it; the chain itself "
			    "was checked without it");
		}
	}
	cJSON_Delete(o);
	if (rv != 0) {
		return (rv);
	}
	const char *v[] = { seq };
	res = coord_catalog_query(cat,
	    "SELECT encode(mac, 'hex'), (SELECT chain_seq FROM audit_head WHERE id = 1) "
	    "FROM audit WHERE chain_seq = $1::bigint",
	    1, v, "looking up the exported audit head", &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 0) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "the audit chain has no row %" PRId64 ", but "
		    "the DR repository holds it as an exported head (%s, written at %s): rows were "
		    "removed from the end of the chain",
		    h->chain_seq, h->key, h->at);
	} else if (strcmp(PQgetvalue(res, 0, 0), h->mac_hex) != 0) {
		rv = coffer_err_set(err, COFFER_ECORRUPT,
		    "audit row %" PRId64 " has mac %.16s..., "
		    "the head exported to the DR repository (%s) has %.16s...: the chain was "
		    "rewritten",
		    h->chain_seq, PQgetvalue(res, 0, 0), h->key, h->mac_hex);
	}
	if (rv != 0) {
		coffer_err_hint(err,
		    "restore the catalog from a backup taken before the tampering "
		    "and find who had superuser access to it");
	}
	PQclear(res);
	return (rv);
}

int
coord_audit_export_check(coord_catalog *cat, const coord_audit_key *key, coffer_repo *dr,
    coord_audit_head *h, bool *found, coffer_err *err)
{
	int rv = check_newest(cat, key, dr, h, found, err);
	if (rv != COFFER_ECORRUPT && rv != COFFER_EAUTH) {
		return (rv);
	}
	/* An operator who looked may have resumed the export past this head
	 * (coord_audit_export_resume): then it is history, not a problem. */
	coffer_err e;
	coffer_err_clear(&e);
	int frv = coord_audit_find(cat, key, RESUMED_ACTION, "from_key", h->key, "from_mac",
	    h->mac_hex, &h->resumed_by, &e);
	if (frv != 0) {
		*err = e;
		return (frv);
	}
	if (h->resumed_by == 0) {
		return (rv);
	}
	coffer_err_clear(err);
	return (0);
}

int
coord_audit_export_resume(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *actor, const char *reason, coord_audit_head *h, coffer_err *err)
{
	memset(h, 0, sizeof(*h));
	if (!coffer_config_has_section(cfg->ini, "repository.dr")) {
		coffer_err_set(err, COFFER_EREFUSED,
		    "there is no DR repository, so no audit head "
		    "export to resume");
		return (coffer_err_hint(err, "configure [repository.dr] first"));
	}
	if (reason == NULL || reason[0] == '\0' || strlen(reason) > 1000) {
		coffer_err_set(err, COFFER_EINVAL,
		    "resuming the audit head export needs a reason of "
		    "1 to 1000 bytes");
		return (coffer_err_hint(err,
		    "say what was found and who looked, e.g. --reason "
		    "\"INC-4711: rows cut by a restore from an old dump\""));
	}
	coffer_repo_config rc;
	coffer_repo *dr = NULL;
	bool found = false;
	int rv = coord_config_repo(cfg, "dr", &rc, err);
	if (rv == 0 && (rv = coffer_repo_open(&rc, COFFER_REPO_READ, &dr, err)) != 0) {
		coffer_err_wrap(err, "[repository.dr]");
	}
	coffer_err why;
	coffer_err_clear(&why);
	if (rv == 0) {
		rv = check_newest(cat, key, dr, h, &found, &why);
	}
	coffer_repo_close(dr);
	if (rv == 0) {
		coffer_err_set(err, COFFER_EREFUSED, "the audit head export is not stopped: %s",
		    found ? "the newest exported head still holds" : "nothing was exported yet");
		return (coffer_err_hint(err,
		    "there is nothing to resume; coffer audit verify "
		    "shows the chain and the exported head"));
	}
	if (rv != COFFER_ECORRUPT && rv != COFFER_EAUTH) {
		if (why.code != 0) {
			*err = why;
		}
		return (rv);
	}
	char seq[24];
	snprintf(seq, sizeof(seq), "%" PRId64, h->chain_seq);
	cJSON *d = cJSON_CreateObject();
	cJSON_AddStringToObject(d, "from_key", h->key);
	cJSON_AddStringToObject(d, "from_mac", h->mac_hex);
	cJSON_AddStringToObject(d, "from_seq", seq);
	cJSON_AddStringToObject(d, "problem", why.msg);
	cJSON_AddStringToObject(d, "reason", reason);
	char *text = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	rv = coord_audit_append(cat, key, actor, RESUMED_ACTION, "dr", text, &h->resumed_by, err);
	cJSON_free(text);
	return (rv);
}

int
coord_audit_verify_all(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    coord_audit_result *res, coord_audit_head *head, bool *exported, coffer_err *err)
{
	*exported = false;
	memset(head, 0, sizeof(*head));
	int rv = coord_audit_verify(cat, key, res, err);
	if (rv != 0 || !coffer_config_has_section(cfg->ini, "repository.dr")) {
		return (rv);
	}
	coffer_repo_config rc;
	coffer_repo *dr = NULL;
	rv = coord_config_repo(cfg, "dr", &rc, err);
	if (rv == 0 && (rv = coffer_repo_open(&rc, COFFER_REPO_READ, &dr, err)) != 0) {
		coffer_err_wrap(err, "[repository.dr]");
	}
	if (rv == 0) {
		rv = coord_audit_export_check(cat, key, dr, head, exported, err);
	}
	coffer_repo_close(dr);
	if (rv == COFFER_ECORRUPT || rv == COFFER_EAUTH) {
		res->intact = false;
		res->bad_seq = head->chain_seq;
		snprintf(res->problem, sizeof(res->problem), "%.255s", err->msg);
	}
	return (rv);
}
