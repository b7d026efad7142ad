/*
 * One object into the DR bucket, and the proof that it is there: streamed
 * from the primary (or written from memory, for the attestation) into an
 * upload that carries its object lock, then read back and checked.
 *
 * Why read back: an upload the store acknowledged proves only that it was
 * accepted; a store that ignored the lock headers, or a key already held by
 * other bytes, shows only when the object is fetched again.
 *
 * What it promises: nothing unproven is published -- the size and digest
 * the catalog recorded are checked while the bytes stream, and a mismatch
 * aborts the upload instead of committing it; an object already at its key
 * (a retry after a crash) is never overwritten, only verified; a copy
 * counts as made only when the version written reads back with the
 * expected digest and a lock of the asked mode, to the second no shorter.
 * The coordinator moves ciphertext only and never holds a service key.
 * Memory: one upload part and the filter buffers per object.
 */
#include "coordinator/dr/drcopy_internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/clock.h"
#include "common/base/hex.h"
#include "common/stream/digest.h"
#include "common/stream/filter.h"
#include "common/stream/sink.h"

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

/* up stays the caller's: committing or aborting it is not the chain's job. */
static coffer_filter *
upload_sink_new(coffer_s3_upload *up, coffer_err *err)
{
	upload_sink *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory for a DR upload");
		return (NULL);
	}
	s->base.ops = &upload_ops;
	s->up = up;
	return (&s->base);
}

const char *const drcopy_object_names[3] = { "data", "manifest.json", COORD_ATTEST_OBJECT };

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

int
drcopy_copy_object(coord_drcopy *d, copy_job *j, int which, const char *expect_sha,
    int64_t expect_bytes, bool *exists, char sha_out[65], coffer_err *err)
{
	*exists = false;
	char src[COFFER_REPO_KEY_MAX], dst[COFFER_REPO_KEY_MAX + 8];
	int rv = coffer_repo_backup_key(
	    src, sizeof(src), j->service, j->id, drcopy_object_names[which], err);
	if (rv == 0) {
		rv = dr_key(d, j, drcopy_object_names[which], dst, sizeof(dst), err);
	}
	if (rv != 0) {
		return (rv);
	}
	/* data and manifest.json: the version recorded at completion. */
	j->src_version = which < 2 ? j->recorded[which] : NULL;
	rv = drcopy_stream_object(
	    d, j, src, dst, expect_sha, expect_bytes, exists, sha_out, j->versions[which], err);
	j->src_version = NULL;
	return (rv);
}

int
drcopy_check_replaced(coord_drcopy *d, const copy_job *j, coffer_err *err)
{
	for (int i = 0; i < 2; i++) {
		if (j->recorded[i][0] == '\0') {
			continue; /* nothing recorded: a store without versions */
		}
		char src[COFFER_REPO_KEY_MAX];
		int rv = coffer_repo_backup_key(
		    src, sizeof(src), j->service, j->id, drcopy_object_names[i], err);
		if (rv != 0) {
			return (rv);
		}
		coffer_repo_info cur;
		memset(&cur, 0, sizeof(cur));
		rv = coffer_repo_stat(d->primary, src, &cur, err);
		if (rv != 0 && rv != COFFER_ENOENT) {
			return (rv);
		}
		if (rv == 0 && strcmp(cur.version_id, j->recorded[i]) == 0) {
			continue;
		}
		coffer_err_clear(err);
		coffer_err_set(err, COFFER_EREFUSED,
		    "%s of backup %s was replaced in the primary repository: its current version is "
		    "%.80s, the version recorded when the backup completed is %.80s; not copied to DR",
		    drcopy_object_names[i], j->id,
		    rv == COFFER_ENOENT             ? "(a delete marker)"
		        : cur.version_id[0] != '\0' ? cur.version_id
		                                    : "(unversioned)",
		    j->recorded[i]);
		return (coffer_err_hint(err,
		    "someone with write access to the primary bucket wrote over it "
		    "(repository_object_replaced pages too); find who in the bucket's access log, "
		    "then remove the newer version as the bucket's owner (the copy is retried)"));
	}
	return (0);
}

/* Streams the primary's object src into a locked DR upload at dst. */
int
drcopy_stream_object(coord_drcopy *d, copy_job *j, const char *src, const char *dst,
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
	coffer_filter *cnt = coffer_count_filter_new(upload_sink_new(up, err), err);
	coffer_filter *sha = coffer_sha256_filter_new(cnt, err);
	/* The stop filter ends a long copy when the coordinator is stopping. */
	coffer_filter *chain = coffer_stop_filter_new(sha, &d->stop, "the DR copy", err);
	if (chain == NULL) {
		coffer_s3_upload_free(up);
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	rv = coffer_repo_read_version(d->primary, src, j->src_version, chain, err);
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
int
drcopy_put_small(coord_drcopy *d, copy_job *j, int which, const char *data, size_t len,
    bool *exists, coffer_err *err)
{
	*exists = false;
	char dst[COFFER_REPO_KEY_MAX + 8];
	int rv = dr_key(d, j, drcopy_object_names[which], dst, sizeof(dst), err);
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

int
drcopy_verify_object(coord_drcopy *d, copy_job *j, int which, const char *want_sha, coffer_err *err)
{
	char dst[COFFER_REPO_KEY_MAX + 8];
	int rv = dr_key(d, j, drcopy_object_names[which], dst, sizeof(dst), err);
	if (rv != 0) {
		return (rv);
	}
	return (drcopy_verify_key(d, j, dst, want_sha, j->versions[which], err));
}

int
drcopy_verify_key(coord_drcopy *d, copy_job *j, const char *dst, const char *want_sha,
    char version[COFFER_S3_VERSION_ID_MAX], coffer_err *err)
{
	int rv;
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(err), err);
	if (sha == NULL) {
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	rv = coffer_s3_get(d->dr, dst, version[0] != '\0' ? version : NULL, sha, &info, err);
	uint8_t md[COFFER_SHA256_LEN];
	char got[65];
	coffer_sha256_filter_digest(sha, md);
	coffer_hex_encode(md, sizeof(md), got);
	coffer_filter_free_chain(sha);
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
	if (strcasecmp(info.lock_mode, j->lock) == 0 && info.lock_until_ms > 0 &&
	    info.lock_until_ms + 1000 < j->until_ms) {
		/* Locked, but not for as long as this copy needs: a WAL segment
		 * streamed to DR before the backup that needs it was verified
		 * (and so before its tier said how long) was locked for the PITR
		 * window alone. A lock can always be lengthened, never shortened:
		 * lengthen it, and read the lock back below. */
		rv =
		    coffer_s3_put_retention(d->dr, dst, info.version_id, j->lock, j->until_ms, err);
		if (rv != 0) {
			return (coffer_err_wrap(err, "lengthening the DR lock of %s", dst));
		}
		char have[40], want[40];
		coffer_log_info("DR lock lengthened", "object=%s from=%s to=%s", dst,
		    coffer_time_format(have, sizeof(have), info.lock_until_ms),
		    coffer_time_format(want, sizeof(want), j->until_ms));
		memset(&info, 0, sizeof(info));
		rv = coffer_s3_head(d->dr, dst, version[0] != '\0' ? version : NULL, &info, err);
		if (rv != 0) {
			return (coffer_err_wrap(err, "reading the DR lock of %s back", dst));
		}
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
int
drcopy_digest_primary(coord_drcopy *d, const char *key, char sha_out[65], coffer_err *err)
{
	return (drcopy_digest_primary_version(d, key, NULL, sha_out, err));
}

int
drcopy_digest_primary_version(
    coord_drcopy *d, const char *key, const char *version, char sha_out[65], coffer_err *err)
{
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(err), err);
	if (sha == NULL) {
		return (err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	int rv = coffer_repo_read_version(d->primary, key, version, sha, err);
	if (rv == 0) {
		uint8_t md[COFFER_SHA256_LEN];
		coffer_sha256_filter_digest(sha, md);
		coffer_hex_encode(md, sizeof(md), sha_out);
	}
	coffer_filter_free_chain(sha);
	return (rv);
}
