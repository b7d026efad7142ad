/*
 * What the files of the S3 client (common/repo/s3.c, s3_escape.c,
 * s3_sign.c, s3_xml.c, s3_request.c, s3_upload.c) share with one another:
 * the client's state, the request and response records s3_do works on, and
 * the helpers more than one of them calls.
 *
 * Everyone else uses common/repo/s3.h. Only the S3 client's own unit tests
 * and fuzzer may include this header, to reach the pieces they test; nothing
 * here is a promise to any other caller, and it may change with the files
 * that share it. Its functions are external symbols of the library all the
 * same, hence the s3_ prefix: it keeps them clear of every other name that
 * is linked into the same program.
 */
#ifndef COFFER_COMMON_REPO_S3_INTERNAL_H
#define COFFER_COMMON_REPO_S3_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include "common/base/error.h"
#include "common/base/hex.h"
#include "common/base/strbuf.h"
#include "common/repo/s3.h"
#include "common/stream/filter.h"

#define S3_MAX_QUERY   6
#define S3_MAX_HEADERS 16

struct coffer_s3 {
	char *scheme; /* "http" or "https" */
	char *host;   /* endpoint host[:port], as in the Host header */
	char *bucket;
	char *region;
	char *access_key;
	char *secret_key;
	char *token; /* NULL without a session token */
	int path_style;
	bool insecure; /* plain http to a host that is not loopback */
	size_t part_size;
	int max_attempts;
	int backoff_base_ms;
	const coffer_clock *clock;
};

/* ---- encodings S3 needs (s3_escape.c); strings grow in coffer_strbuf ---- */

void s3_uri_encode(coffer_strbuf *b, const char *s, bool keep_slash);
void s3_xml_escape(coffer_strbuf *b, const char *s);

/* ---- hashing (s3_sign.c) ---- */

void s3_sha256(const void *data, size_t len, uint8_t out[32]);
void s3_base64(const uint8_t *in, size_t len, char *out);

/* ---- XML (s3_xml.c) ---- */

int64_t s3_iso_ms(const char *text);

/* Whether body declares a DTD (<!DOCTYPE ...>). Every parser here refuses
 * such a document as if it were not XML; s3_do asks first so that the
 * refusal gets its own error naming the endpoint. */
bool s3_xml_doctype(const char *body, size_t len);

/* The UploadId of an InitiateMultipartUploadResult into id; "" when the
 * body has none, which the caller reports. */
void s3_initiate_parse(const char *body, size_t len, char *id, size_t id_size);

/* Whether body is a CompleteMultipartUploadResult. Its ETag, when it has
 * one, replaces etag: a multipart object's ETag is in the body, not in the
 * response headers. */
bool s3_complete_parse(const char *body, size_t len, char *etag, size_t etag_size);

/* Fills the fields of out that an ObjectLockConfiguration body gives (out
 * is zeroed by the caller); false if body is not one. */
bool s3_lock_config_parse(const char *body, size_t len, coffer_s3_lock_config *out);

/* The Status of a VersioningConfiguration body; false if body is not one. */
bool s3_versioning_parse(const char *body, size_t len, coffer_s3_versioning *out);

/* One page of a ListVersionsResult: the versions and delete markers of
 * exactly key appended to out (up to max; *n counts all), *truncated and
 * the next key and version markers. false if body is not one. */
bool s3_versions_parse(const char *body, size_t len, const char *key, coffer_s3_version *out,
    size_t max, size_t *n, int *truncated, char *next_key, size_t next_key_size, char *next_version,
    size_t next_version_size);

/* ---- requests (s3_request.c) ---- */

#define REQ_ERROR_IN_200 0x1u /* a 200 may carry an <Error> body */
#define REQ_STREAM       0x2u /* a successful body goes to req->chain */
#define REQ_CAPTURE      0x4u /* keep a successful body (XML) */
#define REQ_CHECKSUM     0x8u /* object data: send x-amz-checksum-sha256 */

struct s3_req {
	const char *op; /* for messages: "PUT", "CompleteMultipartUpload" */
	const char *method;
	const char *key; /* NULL for bucket requests */
	coffer_s3_kv query[S3_MAX_QUERY];
	size_t nquery;
	coffer_s3_kv headers[S3_MAX_HEADERS];
	size_t nheaders;
	const uint8_t *body;
	size_t body_len;
	/* The body's SHA-256 when the caller has it already (a part is hashed
	 * once, not once per attempt and again for its checksum); NULL: here. */
	const uint8_t *body_sha256;
	unsigned flags;
	coffer_filter *chain;
};

struct s3_resp {
	long status;
	coffer_strbuf body;
	bool body_over;
	size_t body_max;
	coffer_s3_object_info info;
	bool have_len;
	uint64_t content_length;
	/* streaming */
	const struct s3_req *req;
	uint64_t delivered;
	int chain_rc;
	coffer_err chain_err;
	CURL *curl;
	/* upload cursor */
	size_t sent;
};

void s3_req_header(struct s3_req *r, const char *name, const char *value);
void s3_req_query(struct s3_req *r, const char *name, const char *value);
void s3_resp_init(struct s3_resp *rs, const struct s3_req *r);
void s3_resp_fini(struct s3_resp *rs);
int s3_do(coffer_s3 *s3, const struct s3_req *r, struct s3_resp *rs, coffer_err *err);

/* ---- object calls (s3.c) ---- */

void s3_iso_format(int64_t ms, char out[32]);
int s3_lock_mode_check(const char *mode, coffer_err *err);

#endif
