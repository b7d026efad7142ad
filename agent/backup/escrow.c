/*
 * Key escrow objects written by the agent (agent/backup/escrow.h).
 */
#include "agent/backup/escrow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/base/log.h"
#include "common/repo/repo.h"
#include "common/stream/filter.h"

int
agent_escrow_key(agent_ctx *ctx, const coffer_escrow_pub *pub, const char *key_id, bool *written,
    coffer_err *err)
{
	if (written != NULL) {
		*written = false;
	}
	char key[COFFER_REPO_KEY_MAX];
	int rv = coffer_repo_escrow_key(key, sizeof(key), ctx->cfg->service, key_id, err);
	if (rv != 0) {
		return (rv);
	}
	coffer_repo_info info;
	rv = coffer_repo_stat(ctx->repo, key, &info, err);
	if (rv == 0) {
		return (0);
	}
	if (rv != COFFER_ENOENT) {
		return (coffer_err_wrap(err, "looking for the escrow copy of key %s", key_id));
	}
	coffer_err_clear(err);
	coffer_escrow_entry e;
	memset(&e, 0, sizeof(e));
	const uint8_t *kek = NULL;
	for (size_t i = 0; i < coffer_keyring_count(ctx->ring); i++) {
		const char *id = coffer_keyring_at(ctx->ring, i, &kek, &e.created_ms);
		if (strcmp(id, key_id) == 0) {
			memcpy(e.kek, kek, sizeof(e.kek));
			break;
		}
		kek = NULL;
	}
	if (kek == NULL) {
		return (coffer_err_set(err, COFFER_ENOENT, "key ring %s has no key %s",
		    coffer_keyring_path(ctx->ring), key_id));
	}
	snprintf(e.service, sizeof(e.service), "%s", ctx->cfg->service);
	snprintf(e.key_id, sizeof(e.key_id), "%s", key_id);
	char *json = NULL;
	size_t len = 0;
	rv = coffer_escrow_seal(pub, &e, &json, &len, err);
	OPENSSL_cleanse(e.kek, sizeof(e.kek));
	coffer_filter *sink = NULL;
	if (rv == 0) {
		rv = coffer_repo_write_begin(ctx->repo, key, &sink, err);
	}
	if (rv == 0 && (rv = coffer_filter_write(sink, json, len, err)) == 0 &&
	    (rv = coffer_filter_finish(sink, err)) == 0) {
		rv = coffer_repo_write_commit(sink, err);
	}
	coffer_filter_free(sink);
	free(json);
	if (rv == COFFER_EEXIST) {
		/* Another process escrowed it first: the same key, sealed again. */
		coffer_err_clear(err);
		return (0);
	}
	if (rv != 0) {
		return (coffer_err_wrap(err, "escrowing key %s", key_id));
	}
	if (written != NULL) {
		*written = true;
	}
	char fp[COFFER_ESCROW_FINGERPRINT_HEX];
	coffer_escrow_pub_fingerprint(pub, fp);
	coffer_log_info("key escrowed", "service=%s key_id=%s escrow_key=%s object=%s",
	    ctx->cfg->service, key_id, fp, key);
	return (0);
}

int
agent_escrow_ring(agent_ctx *ctx, const coffer_escrow_pub *pub, size_t *written, coffer_err *err)
{
	*written = 0;
	int first = 0;
	for (size_t i = 0; i < coffer_keyring_count(ctx->ring); i++) {
		const char *id = coffer_keyring_at(ctx->ring, i, NULL, NULL);
		bool w = false;
		coffer_err e = { 0 };
		int rv = agent_escrow_key(ctx, pub, id, &w, &e);
		if (rv != 0 && first == 0) {
			first = rv;
			if (err != NULL) {
				*err = e;
			}
		} else if (rv != 0) {
			coffer_log_warn("key not escrowed", "service=%s key_id=%s error=\"%s\"",
			    ctx->cfg->service, id, e.msg);
		}
		*written += w ? 1 : 0;
	}
	return (first);
}

void
agent_escrow_newest(agent_ctx *ctx)
{
	if (ctx->cfg->escrow_public_key == NULL || ctx->ring == NULL) {
		return;
	}
	coffer_err err = { 0 };
	coffer_escrow_pub *pub = NULL;
	int rv = coffer_escrow_pub_load(ctx->cfg->escrow_public_key, &pub, &err);
	if (rv == 0) {
		rv = agent_escrow_key(ctx, pub, coffer_keyring_newest_id(ctx->ring), NULL, &err);
	}
	coffer_escrow_pub_free(pub);
	if (rv != 0) {
		coffer_log_warn("the backup's key is not escrowed; going on",
		    "service=%s key_id=%s error=\"%s\" hint=\"%s\"", ctx->cfg->service,
		    coffer_keyring_newest_id(ctx->ring), err.msg, err.hint);
	}
}
