/*
 * The s3 repository driver. See common/repo/repo_s3.h.
 *
 * Design notes.
 * This file only maps the driver table onto common/repo/s3.h and the repository
 * prefix onto object keys; everything about HTTP, signing and retries lives
 * in s3.c. List hides objects whose names are not valid repository keys
 * (someone else's files in a shared bucket), as posix hides temporaries.
 */
#include "common/repo/repo_s3.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/log.h"
#include "common/repo/s3.h"

struct s3_repo {
	coffer_s3 *s3;
	char *prefix; /* "" or "<prefix>/" */
};

static int
rs3_open(const coffer_repo_config *cfg, unsigned caps, void **state, coffer_err *err)
{
	(void)caps;
	*state = NULL;
	const char *p = cfg->prefix != NULL ? cfg->prefix : "";
	while (*p == '/') {
		p++;
	}
	size_t n = strlen(p);
	while (n > 0 && p[n - 1] == '/') {
		n--;
	}
	char pfx[COFFER_REPO_KEY_MAX + 1];
	if (n > 512) {
		coffer_err_set(err, COFFER_EINVAL, "s3 repository prefix is longer than 512 bytes");
		coffer_err_hint(err, "use a shorter prefix =");
		return (COFFER_EINVAL);
	}
	memcpy(pfx, p, n);
	pfx[n] = '\0';
	if (n > 0) {
		int rc = coffer_repo_key_check(pfx, err);
		if (rc != 0) {
			coffer_err_wrap(err, "s3 repository prefix");
			return (rc);
		}
	}
	struct s3_repo *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->prefix = malloc(n + 2)) == NULL) {
		free(r);
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "out of memory opening an s3 repository"));
	}
	memcpy(r->prefix, pfx, n);
	if (n > 0) {
		r->prefix[n++] = '/';
	}
	r->prefix[n] = '\0';
	coffer_s3_config sc = {
		.endpoint = cfg->endpoint,
		.region = cfg->region,
		.bucket = cfg->bucket,
		.access_key = cfg->access_key,
		.secret_key = cfg->secret_key,
		.session_token = cfg->session_token,
		.path_style = cfg->path_style,
		.insecure_http = cfg->insecure_http,
	};
	int rc = coffer_s3_new(&sc, &r->s3, err);
	if (rc != 0) {
		free(r->prefix);
		free(r);
		return (rc);
	}
	*state = r;
	return (0);
}

static void
rs3_close(void *state)
{
	struct s3_repo *r = state;
	coffer_s3_free(r->s3);
	free(r->prefix);
	free(r);
}

static int
rs3_key(const struct s3_repo *r, const char *key, char *buf, size_t size, coffer_err *err)
{
	int n = snprintf(buf, size, "%s%s", r->prefix, key);
	if (n < 0 || (size_t)n >= size) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "s3 key for %.200s is too long with the "
		    "repository prefix",
		    key));
	}
	return (0);
}

#define RS3_KEY_MAX (COFFER_REPO_KEY_MAX + 520)

static int
rs3_write_open(void *state, const char *key, unsigned flags, void **w, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, key, full, sizeof(full), err);
	if (rc != 0) {
		return (rc);
	}
	coffer_s3_put_opts opts = { .overwrite = (flags & COFFER_REPO_OVERWRITE) != 0 };
	return (coffer_s3_upload_begin(r->s3, full, &opts, (coffer_s3_upload **)w, err));
}

static int
rs3_write(void *w, const uint8_t *buf, size_t len, coffer_err *err)
{
	return (coffer_s3_upload_write(w, buf, len, err));
}

static int
rs3_write_commit(void *w, coffer_err *err)
{
	return (coffer_s3_upload_commit(w, NULL, err));
}

static void
rs3_write_abort(void *w)
{
	coffer_s3_upload_abort(w);
}

static void
rs3_write_free(void *w)
{
	coffer_s3_upload_free(w);
}

static int
rs3_seen(const char *key, uint64_t size, int64_t mtime_ms, void *arg)
{
	(void)size;
	(void)mtime_ms;
	bool *seen = ((void **)arg)[1];
	*seen = strcmp(key, ((void **)arg)[0]) == 0;
	return (1);
}

/*
 * S3 answers a GET or HEAD of a missing key with 404 only to a caller who
 * may list the whole bucket; an agent whose listing is limited to its own
 * prefix (an s3:prefix condition, docs/S3.md) gets 403 instead. Whether a
 * key it may read exists is then the listing's to say: when the listing of
 * that very key is allowed and does not show it, the 403 was "no such key"
 * (so wal-fetch still ends recovery, and wal-push still sees a fresh
 * segment). Any other 403 stands.
 */
static int
rs3_absent(struct s3_repo *r, const char *full, int rc, coffer_err *err)
{
	if (rc != COFFER_EPERM) {
		return (rc);
	}
	bool seen = false;
	void *arg[2] = { (void *)full, &seen };
	coffer_err lerr;
	coffer_err_clear(&lerr);
	if (coffer_s3_list(r->s3, full, 1, rs3_seen, arg, &lerr) != 0 || seen) {
		return (rc);
	}
	if (err != NULL) {
		coffer_err_clear(err);
	}
	return (coffer_err_set(err, COFFER_ENOENT, "s3 object %.300s does not exist", full));
}

static int
rs3_read(void *state, const char *key, coffer_filter *chain, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, key, full, sizeof(full), err);
	if (rc != 0) {
		return (rc);
	}
	rc = coffer_s3_get(r->s3, full, NULL, chain, NULL, err);
	return (rs3_absent(r, full, rc, err));
}

static int
rs3_read_version(
    void *state, const char *key, const char *version_id, coffer_filter *chain, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, key, full, sizeof(full), err);
	return (rc != 0 ? rc : coffer_s3_get(r->s3, full, version_id, chain, NULL, err));
}

static int
rs3_versioning(void *state, coffer_repo_versioning *out, coffer_err *err)
{
	struct s3_repo *r = state;
	coffer_s3_versioning v = COFFER_S3_VERSIONING_OFF;
	int rc = coffer_s3_versioning_get(r->s3, &v, err);
	*out = v == COFFER_S3_VERSIONING_ENABLED  ? COFFER_REPO_VERSIONING_ENABLED
	    : v == COFFER_S3_VERSIONING_SUSPENDED ? COFFER_REPO_VERSIONING_SUSPENDED
	                                          : COFFER_REPO_VERSIONING_OFF;
	return (rc);
}

/* Versions listed in one go, at most: a key with more is not ours alone. */
#define RS3_VERSIONS_MAX 64

static int
rs3_versions(
    void *state, const char *key, coffer_repo_version *out, size_t max, size_t *n, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, key, full, sizeof(full), err);
	if (rc != 0) {
		return (rc);
	}
	coffer_s3_version v[RS3_VERSIONS_MAX];
	rc = coffer_s3_key_versions(r->s3, full, v, RS3_VERSIONS_MAX, n, err);
	for (size_t i = 0; rc == 0 && i < *n && i < max && i < RS3_VERSIONS_MAX; i++) {
		/* Same size both sides (a copy, not a format: gcc -O2 cannot
		 * bound the index and warns about snprintf). */
		_Static_assert(sizeof(out[i].version_id) == sizeof(v[i].version_id),
		    "version id buffers differ");
		memcpy(out[i].version_id, v[i].version_id, sizeof(out[i].version_id));
		out[i].version_id[sizeof(out[i].version_id) - 1] = '\0';
		out[i].mtime_ms = v[i].mtime_ms;
		out[i].delete_marker = v[i].delete_marker;
	}
	if (rc == 0 && *n > RS3_VERSIONS_MAX) {
		/* The oldest would be beyond what we hold. */
		rc = coffer_err_set(err, COFFER_ETOOBIG,
		    "%s has %zu versions, more than the %d a backup object ever needs", full, *n,
		    RS3_VERSIONS_MAX);
		coffer_err_hint(
		    err, "inspect the key's history with the bucket owner's credentials");
	}
	return (rc);
}

static int
rs3_stat(void *state, const char *key, coffer_repo_info *info, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, key, full, sizeof(full), err);
	if (rc != 0) {
		return (rc);
	}
	coffer_s3_object_info oi;
	rc = coffer_s3_head(r->s3, full, NULL, &oi, err);
	if (rc == 0) {
		info->size = oi.size;
		info->mtime_ms = oi.mtime_ms;
		snprintf(info->version_id, sizeof(info->version_id), "%s",
		    strcmp(oi.version_id, "null") == 0 ? "" : oi.version_id);
	}
	return (rs3_absent(r, full, rc, err));
}

struct rs3_list {
	const struct s3_repo *r;
	coffer_repo_list_cb cb;
	void *arg;
	int user_rc; /* what the caller's cb returned, to tell it from ours */
};

static int
rs3_list_one(const char *key, uint64_t size, int64_t mtime_ms, void *arg)
{
	struct rs3_list *l = arg;
	size_t pl = strlen(l->r->prefix);
	if (strncmp(key, l->r->prefix, pl) != 0) {
		return (0);
	}
	const char *rel = key + pl;
	if (coffer_repo_key_check(rel, NULL) != 0) {
		return (0);
	}
	coffer_repo_info info = { .size = size, .mtime_ms = mtime_ms };
	l->user_rc = l->cb(rel, &info, l->arg);
	return (l->user_rc);
}

static int
rs3_list(void *state, const char *prefix, coffer_repo_list_cb cb, void *arg, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, prefix, full, sizeof(full), err);
	if (rc != 0) {
		return (rc);
	}
	struct rs3_list l = { .r = r, .cb = cb, .arg = arg };
	rc = coffer_s3_list(r->s3, full, 0, rs3_list_one, &l, err);
	if (rc < 0 && rc == l.user_rc && err != NULL && err->msg[0] == '\0') {
		coffer_err_set(
		    err, rc, "listing the s3 repository stopped: %s", coffer_strerror(rc));
	}
	return (rc);
}

static int
rs3_remove(void *state, const char *key, coffer_err *err)
{
	struct s3_repo *r = state;
	char full[RS3_KEY_MAX];
	int rc = rs3_key(r, key, full, sizeof(full), err);
	if (rc != 0) {
		return (rc);
	}
	/* S3 answers 204 for a key that does not exist; the repository contract
	 * says ENOENT, which retention relies on to notice drift. */
	rc = coffer_s3_head(r->s3, full, NULL, NULL, err);
	return (rc != 0 ? rc : coffer_s3_delete(r->s3, full, NULL, err));
}

const coffer_repo_driver coffer_repo_s3_driver = {
	.type = "s3",
	.features = 0,
	.open = rs3_open,
	.close = rs3_close,
	.write_open = rs3_write_open,
	.write = rs3_write,
	.write_commit = rs3_write_commit,
	.write_abort = rs3_write_abort,
	.write_free = rs3_write_free,
	.read = rs3_read,
	.read_version = rs3_read_version,
	.stat = rs3_stat,
	.versioning = rs3_versioning,
	.versions = rs3_versions,
	.list = rs3_list,
	.remove = rs3_remove,
};

int
coffer_repo_s3_section_check(const coffer_config *ini, const char *section, coffer_err *err)
{
	if (!coffer_config_has(ini, section, "endpoint")) {
		return (0);
	}
	const char *endpoint = coffer_config_str(ini, section, "endpoint");
	if (!coffer_s3_endpoint_insecure(endpoint)) {
		return (0);
	}
	if (!coffer_config_bool(ini, section, "insecure_http")) {
		coffer_config_err_at(ini, section, "endpoint", err,
		    "%.200s is plain http to a host that is not this one, refused without "
		    "insecure_http = true: anyone on the path could read the requests and "
		    "forge the answers, object lock included",
		    endpoint);
		return (coffer_err_hint(err,
		    "use https://, or, on a network you trust, add insecure_http = true "
		    "under [%s] (object lock is then never trusted)",
		    section));
	}
	coffer_log_warn("repository uses plain http to another host (insecure_http = true)",
	    "section=%s endpoint=%s", section, endpoint);
	return (0);
}
