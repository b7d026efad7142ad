/*
 * S3 client: the subset of the S3 API that Coffer's repositories and its DR
 * copy need, on libcurl (blocking easy interface), OpenSSL (SigV4, SHA-256)
 * and libxml2 (response bodies). Works against AWS and S3-compatible stores
 * (Ceph radosgw is what the tests run).
 *
 * What it promises:
 * - Every request is signed with SigV4; bodies are hashed and the hash is
 *   both signed (x-amz-content-sha256) and sent as x-amz-checksum-sha256, so
 *   a corrupted upload is refused by the server.
 * - Uploads stream with bounded memory: one buffer of part_size bytes per
 *   upload. An object that fits in one part is one PUT; a larger one is a
 *   multipart upload that becomes visible only at
 *   coffer_s3_upload_commit (CompleteMultipartUpload); a failed or
 *   abandoned upload is aborted, so nothing partial is ever listed.
 * - Transient failures (5xx, SlowDown, connection errors) are retried with
 *   exponential backoff and full jitter, max_attempts times at most. A 200
 *   response whose body is an <Error> is the error it carries.
 * - Errors name the S3 error code and message and say what to do.
 * - Credentials are copied at coffer_s3_new, wiped at coffer_s3_free, and
 *   never logged or put in an error message.
 *
 * Threads: a client may be used from several threads at once (each request
 * uses its own curl handle); an upload by one thread at a time. Every call
 * blocks on the network: run it off the event loop.
 */
#ifndef COFFER_COMMON_REPO_S3_H
#define COFFER_COMMON_REPO_S3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/clock.h"
#include "common/base/error.h"
#include "common/stream/filter.h"

#define COFFER_S3_PART_MIN         (5u * 1024 * 1024)
#define COFFER_S3_PART_DEFAULT     (8u * 1024 * 1024)
#define COFFER_S3_PART_MAX         (512u * 1024 * 1024)
#define COFFER_S3_MAX_PARTS        10000
#define COFFER_S3_ATTEMPTS_DEFAULT 5
#define COFFER_S3_VERSION_ID_MAX   256
#define COFFER_S3_ETAG_MAX         128

/* Strings are borrowed for the duration of coffer_s3_new only. */
typedef struct coffer_s3_config {
	/* "https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:7480"; NULL or
	 * "" means https://s3.<region>.amazonaws.com. */
	const char *endpoint;
	const char *region; /* NULL or "" means us-east-1 */
	const char *bucket;
	/* NULL or "" means the environment: AWS_ACCESS_KEY_ID,
	 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN. */
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* optional (STS credentials) */
	int path_style;            /* 1: /<bucket>/<key>; 0: <bucket>.<host>/<key> */
	size_t part_size;          /* 0: COFFER_S3_PART_DEFAULT */
	int max_attempts;          /* 0: COFFER_S3_ATTEMPTS_DEFAULT; 1: no retry */
	int backoff_base_ms;       /* 0: 100 ms, doubled per attempt, capped at 5 s */
	const coffer_clock *clock; /* for x-amz-date; NULL: the system clock */
	/* 1: allow http:// to a host that is not loopback (the operator's
	 * explicit insecure_http = true); object lock is then never trusted. */
	int insecure_http;
} coffer_s3_config;

typedef struct coffer_s3 coffer_s3;

/* Whether endpoint is plain http:// to a host other than loopback
 * (127.0.0.0/8, ::1, localhost): a path someone else may sit on. */
bool coffer_s3_endpoint_insecure(const char *endpoint);

/* The plain-http rule, for config readers and coffer_s3_new alike: an
 * insecure endpoint (above) is COFFER_EINVAL, with a hint naming
 * insecure_http, unless insecure_http is set. */
int coffer_s3_endpoint_check(const char *endpoint, int insecure_http, coffer_err *err);

/* COFFER_EINVAL for a bad configuration (no bucket, a bad endpoint, plain
 * http to another host without insecure_http, no
 * credentials in the config or the environment, a part size outside
 * 5 MiB..512 MiB). */
int coffer_s3_new(const coffer_s3_config *cfg, coffer_s3 **out, coffer_err *err);
void coffer_s3_free(coffer_s3 *s3);

typedef struct coffer_s3_object_info {
	uint64_t size;
	int64_t mtime_ms;                          /* Unix ms, from Last-Modified */
	char etag[COFFER_S3_ETAG_MAX];             /* with its quotes, as sent */
	char version_id[COFFER_S3_VERSION_ID_MAX]; /* "" when unversioned */
	char lock_mode[16];                        /* "" or GOVERNANCE / COMPLIANCE */
	int64_t lock_until_ms;                     /* 0 when none */
} coffer_s3_object_info;

/* Object lock and other options for one upload. */
typedef struct coffer_s3_put_opts {
	const char *lock_mode; /* NULL, "GOVERNANCE" or "COMPLIANCE" */
	int64_t lock_until_ms; /* required with lock_mode: retain-until, Unix ms */
	int legal_hold;        /* 1: x-amz-object-lock-legal-hold: ON */
	int overwrite;         /* 0: fail with COFFER_EEXIST if the key exists */
} coffer_s3_put_opts;

typedef struct coffer_s3_upload coffer_s3_upload;

/* Starts an upload to key (the full object key in the bucket). opts may be
 * NULL. Without opts->overwrite, an existing object makes it fail with
 * COFFER_EEXIST (checked here when the credentials may read, and again at
 * commit). Nothing is sent until the first part is full. */
int coffer_s3_upload_begin(coffer_s3 *s3, const char *key, const coffer_s3_put_opts *opts,
    coffer_s3_upload **out, coffer_err *err);

/* Buffers bytes; each full part is uploaded before this returns. */
int coffer_s3_upload_write(coffer_s3_upload *up, const uint8_t *buf, size_t len, coffer_err *err);

/* Uploads what is buffered and publishes the object. On failure the
 * multipart upload is aborted and nothing is published. info (may be NULL)
 * gets the new object's ETag and versionId. */
int coffer_s3_upload_commit(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err);

/* Aborts an uncommitted upload (AbortMultipartUpload, best effort). Harmless
 * after commit or a second time. */
void coffer_s3_upload_abort(coffer_s3_upload *up);

/* Frees the upload, aborting it first if it was not committed. */
void coffer_s3_upload_free(coffer_s3_upload *up);

/* Parts uploaded so far, and the bytes this upload holds in memory (its
 * part buffer: never more than part_size). */
unsigned coffer_s3_upload_parts(const coffer_s3_upload *up);
size_t coffer_s3_upload_memory(const coffer_s3_upload *up);

/* Streams the object (a given version when version_id is not NULL or "")
 * through chain, then finishes the chain. A connection lost mid-body resumes
 * from the byte reached with a Range request pinned to the same ETag. info
 * (may be NULL) gets the object's metadata. COFFER_ENOENT if there is no
 * such object or version. */
int coffer_s3_get(coffer_s3 *s3, const char *key, const char *version_id, coffer_filter *chain,
    coffer_s3_object_info *info, coffer_err *err);

/* HEAD. COFFER_ENOENT if there is no such object or version. */
int coffer_s3_head(coffer_s3 *s3, const char *key, const char *version_id,
    coffer_s3_object_info *info, coffer_err *err);

/* Called per object in key order (ListObjectsV2 order: bytewise). Return
 * 0 to go on, > 0 to stop (list returns 0), < 0 to stop and fail with it. */
typedef int (*coffer_s3_list_cb)(const char *key, uint64_t size, int64_t mtime_ms, void *arg);

/* Lists every key starting with prefix, following continuation tokens.
 * page_size 0 means 1000 (the S3 maximum). */
int coffer_s3_list(coffer_s3 *s3, const char *prefix, unsigned page_size, coffer_s3_list_cb cb,
    void *arg, coffer_err *err);

/* DELETE. Without version_id this removes the object of an unversioned
 * bucket, or adds a delete marker in a versioned one; with it, it removes
 * that version (refused by object lock). */
int coffer_s3_delete(coffer_s3 *s3, const char *key, const char *version_id, coffer_err *err);

/* Creates the bucket (object_lock: with object lock, hence versioning).
 * COFFER_EEXIST if it exists. For tests and operators' setup tools. */
int coffer_s3_bucket_create(coffer_s3 *s3, int object_lock, coffer_err *err);

/* Replaces the bucket policy (PUT ?policy) with the JSON document given.
 * For setup tools and tests that give a credential write-only rights. */
int coffer_s3_bucket_policy_put(coffer_s3 *s3, const char *json, coffer_err *err);

/* Sets PUT ?retention on an existing object version (COMPLIANCE can only be
 * extended). Used after multipart uploads, whose lock headers some stores
 * ignore. */
int coffer_s3_put_retention(coffer_s3 *s3, const char *key, const char *version_id,
    const char *mode, int64_t until_ms, coffer_err *err);

typedef struct coffer_s3_lock_config {
	int enabled;   /* ObjectLockEnabled = Enabled */
	char mode[16]; /* default retention mode, "" if none */
	unsigned days; /* default retention, 0 if none or given in years */
	unsigned years;
} coffer_s3_lock_config;

/* Whether this client talks plain http to a host other than loopback. */
bool coffer_s3_insecure(const coffer_s3 *s3);

/* GET /?object-lock. COFFER_EREFUSED without asking when the client is
 * insecure (plain http to another host): its answer could be forged. A
 * bucket without object lock gives 0 with
 * enabled = 0. COFFER_EPERM when the credentials may not read the
 * configuration (a write-only DR credential): the state is unknown. */
int coffer_s3_object_lock_get(coffer_s3 *s3, coffer_s3_lock_config *out, coffer_err *err);

/* A bucket's versioning: never enabled, enabled, or suspended (new
 * objects overwrite the "null" version again; older versions stay). */
typedef enum coffer_s3_versioning {
	COFFER_S3_VERSIONING_OFF = 0,
	COFFER_S3_VERSIONING_ENABLED,
	COFFER_S3_VERSIONING_SUSPENDED,
} coffer_s3_versioning;

/* GET /?versioning. COFFER_EREFUSED without asking when the client is
 * insecure (a forged "Enabled" would be believed); COFFER_EPERM when the
 * credentials may not read it (s3:GetBucketVersioning). */
int coffer_s3_versioning_get(coffer_s3 *s3, coffer_s3_versioning *out, coffer_err *err);

/* One version of a key (ListObjectVersions), newest first as S3 lists
 * them. Delete markers are reported with delete_marker = 1. */
typedef struct coffer_s3_version {
	char version_id[COFFER_S3_VERSION_ID_MAX];
	int64_t mtime_ms;
	uint64_t size;
	int is_latest;
	int delete_marker;
} coffer_s3_version;

/* The versions of exactly key (not of keys it prefixes), newest first, at
 * most max into out; *n gets how many there are (may exceed max: the
 * oldest are then not in out). */
int coffer_s3_key_versions(
    coffer_s3 *s3, const char *key, coffer_s3_version *out, size_t max, size_t *n, coffer_err *err);

/* ---- pieces exposed for unit tests ---- */

typedef struct coffer_s3_kv {
	const char *name;
	const char *value;
} coffer_s3_kv;

typedef struct coffer_s3_sign_input {
	const char *method;
	const char *host;          /* the Host header, with :port if not the default */
	const char *path;          /* the unencoded path, starting with '/' */
	const coffer_s3_kv *query; /* unencoded names and values, any order */
	size_t nquery;
	const coffer_s3_kv *headers; /* besides host; names in any case */
	size_t nheaders;
	const char *payload_hash; /* lowercase hex SHA-256, or UNSIGNED-PAYLOAD */
	const char *amz_date;     /* YYYYMMDD'T'HHMMSS'Z' */
	const char *region;
	const char *access_key;
	const char *secret_key;
} coffer_s3_sign_input;

/* The canonical request (step 1 of SigV4) into buf. COFFER_ETOOBIG if it
 * does not fit. */
int coffer_s3_canonical_request(
    const coffer_s3_sign_input *in, char *buf, size_t size, coffer_err *err);

/* The Authorization header's value into buf; sig (65 bytes, may be NULL)
 * gets the hex signature alone. */
int coffer_s3_sign(
    const coffer_s3_sign_input *in, char *auth, size_t size, char sig[65], coffer_err *err);

/* If body is an S3 <Error> document, fills code and message (truncated to
 * the sizes) and returns 1; else 0. Namespace-agnostic. */
int coffer_s3_error_parse(
    const char *body, size_t len, char *code, size_t code_size, char *message, size_t message_size);

/* Parses one ListObjectsV2 page: cb per <Contents>; *truncated and token
 * (NextContinuationToken) for the next page. COFFER_EPROTO on a body that
 * is not a ListBucketResult. A cb return value != 0 stops and is returned. */
int coffer_s3_list_parse(const char *body, size_t len, coffer_s3_list_cb cb, void *arg,
    int *truncated, char *token, size_t token_size, coffer_err *err);

/* Sets err from an S3 error code, message and HTTP status, with the hint
 * that code calls for. Returns the COFFER_E* code. */
int coffer_s3_error_set(coffer_err *err, const char *op, const char *key, long status,
    const char *code, const char *message);

#endif
