/*
 * Key rings from escrow (agent/restore/recover.h).
 */
#include "agent/restore/recover.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/base/log.h"
#include "common/repo/repo.h"
#include "common/stream/sink.h"

typedef struct recover_walk {
	agent_ctx *ctx;
	const coffer_escrow_key *key;
	size_t prefix_len;
	coffer_keyring_entry *entries;
	size_t n, cap;
	agent_recover_result *res;
	coffer_err *err;
	int rv;
} recover_walk;

static int
read_object(agent_ctx *ctx, const char *key, char **out, size_t *len, coffer_err *err)
{
	coffer_filter *buf = coffer_buffer_sink_new(COFFER_ESCROW_OBJECT_MAX + 1, err);
	if (buf == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	int rv = coffer_repo_read(ctx->repo, key, buf, err);
	if (rv == 0) {
		const uint8_t *d = coffer_buffer_sink_data(buf, len);
		*out = malloc(*len + 1);
		if (*out == NULL) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		} else {
			memcpy(*out, d, *len);
			(*out)[*len] = '\0';
		}
	}
	coffer_filter_free(buf);
	return (rv);
}

static int
on_object(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	recover_walk *w = arg;
	const char *name = key + w->prefix_len;
	size_t nlen = strlen(name), slen = strlen(COFFER_REPO_ESCROW_SUFFIX);
	if (nlen <= slen || strcmp(name + nlen - slen, COFFER_REPO_ESCROW_SUFFIX) != 0 ||
	    strchr(name, '/') != NULL) {
		return (0);
	}
	char id[COFFER_KEYRING_ID_MAX + 1];
	if (nlen - slen >= sizeof(id)) {
		return (0);
	}
	memcpy(id, name, nlen - slen);
	id[nlen - slen] = '\0';
	char *json = NULL;
	size_t len = 0;
	coffer_escrow_entry e;
	memset(&e, 0, sizeof(e));
	int rv = read_object(w->ctx, key, &json, &len, w->err);
	if (rv == 0) {
		rv = coffer_escrow_describe(json, len, &e, w->err);
	}
	char fp[COFFER_ESCROW_FINGERPRINT_HEX];
	coffer_escrow_key_fingerprint(w->key, fp);
	if (rv == 0 && strcmp(e.recipient, fp) != 0) {
		coffer_log_warn("escrow object sealed to another escrow key; skipped",
		    "object=%s recipient=%s escrow_key=%s", key, e.recipient, fp);
		w->res->other_key++;
		free(json);
		return (0);
	}
	if (rv == 0) {
		rv = coffer_escrow_open(w->key, json, len, &e, w->err);
	}
	free(json);
	if (rv == 0 &&
	    (strcmp(e.service, w->ctx->cfg->service) != 0 || strcmp(e.key_id, id) != 0)) {
		rv = coffer_err_set(w->err, COFFER_ECORRUPT,
		    "escrow object %s holds key %s of service %s", key, e.key_id, e.service);
		coffer_err_hint(w->err, "the repository was tampered with; recover no key from it");
	}
	if (rv == 0 && w->n == w->cap) {
		size_t ncap = w->cap == 0 ? 8 : 2 * w->cap;
		coffer_keyring_entry *ne = calloc(ncap, sizeof(*ne));
		if (ne == NULL) {
			rv = coffer_err_set(w->err, COFFER_ENOMEM, "out of memory");
		} else {
			if (w->n > 0) {
				memcpy(ne, w->entries, w->n * sizeof(*ne));
				OPENSSL_cleanse(w->entries, w->cap * sizeof(*ne));
			}
			free(w->entries);
			w->entries = ne;
			w->cap = ncap;
		}
	}
	if (rv == 0) {
		coffer_keyring_entry *k = &w->entries[w->n++];
		snprintf(k->id, sizeof(k->id), "%s", e.key_id);
		k->created_ms = e.created_ms;
		memcpy(k->key, e.kek, sizeof(k->key));
	}
	OPENSSL_cleanse(e.kek, sizeof(e.kek));
	if (rv != 0) {
		coffer_err_wrap(w->err, "escrow object %s", key);
		w->rv = rv;
		return (1);
	}
	return (0);
}

/* Oldest first; ids break ties so the order never depends on listing. */
static int
by_created(const void *a, const void *b)
{
	const coffer_keyring_entry *x = a, *y = b;
	if (x->created_ms != y->created_ms) {
		return (x->created_ms < y->created_ms ? -1 : 1);
	}
	return (strcmp(x->id, y->id));
}

int
agent_recover_ring(
    agent_ctx *ctx, const coffer_escrow_key *key, agent_recover_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	char prefix[COFFER_REPO_KEY_MAX];
	int rv = coffer_repo_escrow_prefix(prefix, sizeof(prefix), ctx->cfg->service, err);
	if (rv != 0) {
		return (rv);
	}
	recover_walk w = {
		.ctx = ctx, .key = key, .prefix_len = strlen(prefix), .res = res, .err = err
	};
	rv = coffer_repo_list(ctx->repo, prefix, on_object, &w, err);
	if (rv == 0) {
		rv = w.rv;
	}
	if (rv == 0 && w.n == 0) {
		char fp[COFFER_ESCROW_FINGERPRINT_HEX];
		coffer_escrow_key_fingerprint(key, fp);
		rv = coffer_err_set(err, COFFER_ENOENT,
		    "no key of service %s escrowed to escrow key %s in repository %s (%zu sealed "
		    "to another escrow key)",
		    ctx->cfg->service, fp, ctx->repo_name, res->other_key);
		coffer_err_hint(err,
		    "check [agent] service and the repository; escrow objects are "
		    "services/%s/keys/*.escrow.json",
		    ctx->cfg->service);
	}
	if (rv == 0) {
		qsort(w.entries, w.n, sizeof(*w.entries), by_created);
		rv = coffer_keyring_create(ctx->cfg->key_ring, w.entries, w.n, err);
	}
	if (rv == 0) {
		res->keys = w.n;
		snprintf(res->newest, sizeof(res->newest), "%s", w.entries[w.n - 1].id);
	}
	if (w.entries != NULL) {
		OPENSSL_cleanse(w.entries, w.cap * sizeof(*w.entries));
		free(w.entries);
	}
	return (rv);
}
