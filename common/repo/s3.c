/*
 * S3 client: its lifecycle (configuration, credentials, the endpoint) and
 * the calls on objects and buckets. See common/repo/s3.h for the promises.
 * The rest of the client is split by job and shares only
 * common/repo/s3_internal.h: s3_escape.c encodes for URIs and XML, s3_sign.c signs
 * (SigV4), s3_xml.c reads the store's XML answers, s3_request.c sends one
 * request with its retries, s3_upload.c streams uploads.
 *
 * What this file promises: a coffer_s3 does not change once coffer_s3_new
 * has returned it, which is what lets several threads share one client
 * without a lock; the credentials it holds are wiped when it is freed, and
 * a half-given configuration (a key id without its secret) fails rather
 * than borrow the rest from the environment. Each call here only describes
 * its request and hands it to s3_do, so signing, retries and error mapping
 * are the same for every call.
 */
#include "common/repo/s3.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "common/repo/s3_internal.h"

/* ---- client ---- */

static pthread_once_t s3_init_once = PTHREAD_ONCE_INIT;
static int s3_init_rc;

static void
s3_global_init(void)
{
	s3_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
	xmlInitParser();
}

static char *
dup_or_env(const char *v, const char *env)
{
	if (v != NULL && v[0] != '\0') {
		return (strdup(v));
	}
	const char *e = getenv(env);
	return (e != NULL && e[0] != '\0' ? strdup(e) : NULL);
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

void
coffer_s3_free(coffer_s3 *s3)
{
	if (s3 == NULL) {
		return;
	}
	free(s3->scheme);
	free(s3->host);
	free(s3->bucket);
	free(s3->region);
	free_secret(s3->access_key);
	free_secret(s3->secret_key);
	free_secret(s3->token);
	free(s3);
}

static bool
bucket_name_ok(const char *b)
{
	size_t n = strlen(b);
	if (n < 3 || n > 63) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char c = b[i];
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-' ||
		        c == '.' || c == '_')) {
			return (false);
		}
	}
	return (true);
}

/* Whether the host of an http[s]://host[:port] endpoint is this machine:
 * 127.0.0.0/8, ::1 or localhost (which curl resolves to loopback itself,
 * never through DNS). Nobody on a network path sits between us and it. */
static bool
endpoint_loopback(const char *rest)
{
	char host[256];
	size_t n = strcspn(rest, "/");
	if (n >= sizeof(host)) {
		return (false);
	}
	memcpy(host, rest, n);
	host[n] = '\0';
	if (host[0] == '[') {
		char *close = strchr(host, ']');
		if (close == NULL) {
			return (false);
		}
		*close = '\0';
		struct in6_addr a6;
		return (inet_pton(AF_INET6, host + 1, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
	}
	char *colon = strchr(host, ':');
	if (colon != NULL) {
		*colon = '\0';
	}
	struct in_addr a4;
	if (inet_pton(AF_INET, host, &a4) == 1) {
		return ((ntohl(a4.s_addr) >> 24) == 127);
	}
	return (strcasecmp(host, "localhost") == 0);
}

bool
coffer_s3_endpoint_insecure(const char *endpoint)
{
	return (endpoint != NULL && strncmp(endpoint, "http://", 7) == 0 &&
	    !endpoint_loopback(endpoint + 7));
}

int
coffer_s3_endpoint_check(const char *endpoint, int insecure_http, coffer_err *err)
{
	if (!coffer_s3_endpoint_insecure(endpoint) || insecure_http) {
		return (0);
	}
	coffer_err_set(err, COFFER_EINVAL,
	    "s3 endpoint %.200s is plain http to another host, refused without "
	    "insecure_http = true: anyone on the path could read the requests and forge "
	    "the answers (object lock included)",
	    endpoint);
	return (coffer_err_hint(err,
	    "use https://, or, on a network you trust, add insecure_http = true to the "
	    "repository's section (object lock is then never trusted)"));
}

bool
coffer_s3_insecure(const coffer_s3 *s3)
{
	return (s3->insecure);
}

int
coffer_s3_new(const coffer_s3_config *cfg, coffer_s3 **out, coffer_err *err)
{
	*out = NULL;
	pthread_once(&s3_init_once, s3_global_init);
	if (s3_init_rc != 0) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "libcurl failed to initialise"));
	}
	if (cfg->bucket == NULL || !bucket_name_ok(cfg->bucket)) {
		coffer_err_set(err, COFFER_EINVAL, "s3 bucket name \"%s\" is not valid",
		    cfg->bucket != NULL ? cfg->bucket : "");
		coffer_err_hint(
		    err, "set bucket = to 3..63 lower-case letters, digits, '-' or '.'");
		return (COFFER_EINVAL);
	}
	size_t part = cfg->part_size != 0 ? cfg->part_size : COFFER_S3_PART_DEFAULT;
	if (part < COFFER_S3_PART_MIN || part > COFFER_S3_PART_MAX) {
		coffer_err_set(
		    err, COFFER_EINVAL, "s3 part size %zu is outside 5 MiB..512 MiB", part);
		coffer_err_hint(err, "S3 refuses parts under 5 MiB; pick a size between the two");
		return (COFFER_EINVAL);
	}
	coffer_s3 *s3 = calloc(1, sizeof(*s3));
	if (s3 == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory opening s3"));
	}
	s3->region =
	    strdup(cfg->region != NULL && cfg->region[0] != '\0' ? cfg->region : "us-east-1");
	s3->bucket = strdup(cfg->bucket);
	s3->path_style = cfg->path_style;
	s3->part_size = part;
	s3->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : COFFER_S3_ATTEMPTS_DEFAULT;
	s3->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 100;
	s3->clock = cfg->clock;
	s3->access_key = dup_or_env(cfg->access_key, "AWS_ACCESS_KEY_ID");
	/* Never mix a configured key id with a secret from the environment: a
	 * half-configured repository should fail, not borrow someone's secret. */
	bool from_cfg = cfg->access_key != NULL && cfg->access_key[0] != '\0';
	s3->secret_key = from_cfg
	    ? (cfg->secret_key != NULL && cfg->secret_key[0] != '\0' ? strdup(cfg->secret_key)
	                                                             : NULL)
	    : dup_or_env(NULL, "AWS_SECRET_ACCESS_KEY");
	s3->token = from_cfg ? (cfg->session_token != NULL && cfg->session_token[0] != '\0'
	                               ? strdup(cfg->session_token)
	                               : NULL)
	                     : dup_or_env(NULL, "AWS_SESSION_TOKEN");
	if (s3->region == NULL || s3->bucket == NULL) {
		coffer_s3_free(s3);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory opening s3"));
	}
	if (s3->access_key == NULL || s3->secret_key == NULL) {
		coffer_s3_free(s3);
		coffer_err_set(err, COFFER_EINVAL, "no s3 credentials for bucket %s", cfg->bucket);
		coffer_err_hint(err,
		    "set access_key and secret_key in the repository's section, "
		    "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment");
		return (COFFER_EINVAL);
	}
	const char *ep = cfg->endpoint;
	char def[128];
	if (ep == NULL || ep[0] == '\0') {
		snprintf(def, sizeof(def), "https://s3.%s.amazonaws.com", s3->region);
		ep = def;
	}
	const char *rest = NULL;
	if (strncmp(ep, "https://", 8) == 0) {
		s3->scheme = strdup("https");
		rest = ep + 8;
	} else if (strncmp(ep, "http://", 7) == 0) {
		s3->scheme = strdup("http");
		rest = ep + 7;
	}
	size_t hl = rest != NULL ? strcspn(rest, "/") : 0;
	bool tail_ok = rest != NULL && (rest[hl] == '\0' || strcmp(rest + hl, "/") == 0);
	if (rest == NULL || hl == 0 || !tail_ok || strpbrk(rest, "@?# ") != NULL) {
		coffer_s3_free(s3);
		coffer_err_set(err, COFFER_EINVAL,
		    "s3 endpoint \"%.200s\" is not a URL of the form "
		    "http[s]://host[:port]",
		    ep);
		coffer_err_hint(err,
		    "set endpoint = https://s3.<region>.amazonaws.com or your "
		    "store's base URL, without a path");
		return (COFFER_EINVAL);
	}
	if (coffer_s3_endpoint_check(ep, cfg->insecure_http, err) != 0) {
		coffer_s3_free(s3);
		return (COFFER_EINVAL);
	}
	s3->insecure = coffer_s3_endpoint_insecure(ep);
	s3->host = strndup(rest, hl);
	if (s3->scheme == NULL || s3->host == NULL) {
		coffer_s3_free(s3);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory opening s3"));
	}
	/* A default port in the Host header would change what we sign. */
	size_t n = strlen(s3->host);
	if ((strcmp(s3->scheme, "https") == 0 && n > 4 && strcmp(s3->host + n - 4, ":443") == 0) ||
	    (strcmp(s3->scheme, "http") == 0 && n > 3 && strcmp(s3->host + n - 3, ":80") == 0)) {
		s3->host[strrchr(s3->host, ':') - s3->host] = '\0';
	}
	if (!s3->path_style && strchr(s3->bucket, '.') != NULL &&
	    strcmp(s3->scheme, "https") == 0) {
		coffer_s3_free(s3);
		coffer_err_set(err, COFFER_EINVAL,
		    "s3 bucket %s has a '.', which breaks TLS "
		    "certificate checks with virtual-hosted addressing",
		    cfg->bucket);
		coffer_err_hint(err, "set path_style = true for this repository");
		return (COFFER_EINVAL);
	}
	*out = s3;
	return (0);
}

/* ---- object calls ---- */

int
coffer_s3_head(coffer_s3 *s3, const char *key, const char *version_id, coffer_s3_object_info *info,
    coffer_err *err)
{
	struct s3_req r = { .op = "HEAD", .method = "HEAD", .key = key };
	if (version_id != NULL && version_id[0] != '\0') {
		s3_req_query(&r, "versionId", version_id);
	}
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	if (rc == 0 && info != NULL) {
		*info = rs.info;
		info->size = rs.content_length;
	}
	s3_resp_fini(&rs);
	return (rc);
}

int
coffer_s3_get(coffer_s3 *s3, const char *key, const char *version_id, coffer_filter *chain,
    coffer_s3_object_info *info, coffer_err *err)
{
	struct s3_req r = {
		.op = "GET", .method = "GET", .key = key, .flags = REQ_STREAM, .chain = chain
	};
	if (version_id != NULL && version_id[0] != '\0') {
		s3_req_query(&r, "versionId", version_id);
	}
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	if (rc == 0) {
		rc = coffer_filter_finish(chain, err);
	}
	if (rc == 0 && info != NULL) {
		*info = rs.info;
		info->size = rs.delivered;
	}
	s3_resp_fini(&rs);
	return (rc);
}

int
coffer_s3_delete(coffer_s3 *s3, const char *key, const char *version_id, coffer_err *err)
{
	struct s3_req r = { .op = "DELETE", .method = "DELETE", .key = key };
	if (version_id != NULL && version_id[0] != '\0') {
		s3_req_query(&r, "versionId", version_id);
	}
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	s3_resp_fini(&rs);
	return (rc);
}

int
coffer_s3_list(coffer_s3 *s3, const char *prefix, unsigned page_size, coffer_s3_list_cb cb,
    void *arg, coffer_err *err)
{
	char token[2048] = "";
	char next[2048];
	char max[16];
	snprintf(max, sizeof(max), "%u", page_size == 0 || page_size > 1000 ? 1000 : page_size);
	for (;;) {
		struct s3_req r = { .op = "ListObjectsV2", .method = "GET", .flags = REQ_CAPTURE };
		s3_req_query(&r, "list-type", "2");
		/* Keys with bytes XML cannot carry come back %-encoded, not as a
		 * page that fails to parse. */
		s3_req_query(&r, "encoding-type", "url");
		s3_req_query(&r, "max-keys", max);
		if (prefix != NULL && prefix[0] != '\0') {
			s3_req_query(&r, "prefix", prefix);
		}
		if (token[0] != '\0') {
			s3_req_query(&r, "continuation-token", token);
		}
		struct s3_resp rs;
		s3_resp_init(&rs, &r);
		int rc = s3_do(s3, &r, &rs, err);
		int truncated = 0;
		if (rc == 0) {
			rc = coffer_s3_list_parse(
			    rs.body.buf, rs.body.len, cb, arg, &truncated, next, sizeof(next), err);
		}
		s3_resp_fini(&rs);
		if (rc > 0) {
			return (0);
		}
		if (rc < 0 || !truncated) {
			return (rc);
		}
		if (strcmp(next, token) == 0) {
			return (coffer_err_set(err, COFFER_EPROTO,
			    "s3 listing returned the same "
			    "continuation token twice"));
		}
		memcpy(token, next, sizeof(token));
	}
}

int
coffer_s3_bucket_create(coffer_s3 *s3, int object_lock, coffer_err *err)
{
	struct s3_req r = { .op = "CreateBucket", .method = "PUT" };
	coffer_strbuf body = { 0 };
	if (strcmp(s3->region, "us-east-1") != 0) {
		coffer_strbuf_printf(&body,
		    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
		    "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
		    "</CreateBucketConfiguration>",
		    s3->region);
		r.body = (const uint8_t *)body.buf;
		r.body_len = body.len;
	}
	if (object_lock) {
		s3_req_header(&r, "x-amz-bucket-object-lock-enabled", "true");
	}
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	s3_resp_fini(&rs);
	coffer_strbuf_free(&body);
	return (rc);
}

int
coffer_s3_bucket_policy_put(coffer_s3 *s3, const char *json, coffer_err *err)
{
	struct s3_req r = { .op = "PutBucketPolicy",
		.method = "PUT",
		.body = (const uint8_t *)json,
		.body_len = strlen(json) };
	s3_req_query(&r, "policy", "");
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	s3_resp_fini(&rs);
	return (rc);
}

void
s3_iso_format(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
content_md5(const void *body, size_t len, char out[32])
{
	uint8_t d[16];
	unsigned int n = 16;
	EVP_Digest(body, len, d, &n, EVP_md5(), NULL);
	s3_base64(d, 16, out);
}

int
s3_lock_mode_check(const char *mode, coffer_err *err)
{
	if (mode == NULL || (strcmp(mode, "GOVERNANCE") != 0 && strcmp(mode, "COMPLIANCE") != 0)) {
		coffer_err_set(err, COFFER_EINVAL,
		    "object lock mode \"%s\" is not GOVERNANCE or "
		    "COMPLIANCE",
		    mode != NULL ? mode : "");
		coffer_err_hint(err, "use governance or compliance");
		return (COFFER_EINVAL);
	}
	return (0);
}

int
coffer_s3_put_retention(coffer_s3 *s3, const char *key, const char *version_id, const char *mode,
    int64_t until_ms, coffer_err *err)
{
	int rc = s3_lock_mode_check(mode, err);
	if (rc != 0) {
		return (rc);
	}
	char until[32];
	s3_iso_format(until_ms, until);
	coffer_strbuf body = { 0 };
	coffer_strbuf_printf(&body,
	    "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	    "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
	    mode, until);
	if (body.failed) {
		coffer_strbuf_free(&body);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	struct s3_req r = { .op = "PutObjectRetention",
		.method = "PUT",
		.key = key,
		.body = (const uint8_t *)body.buf,
		.body_len = body.len };
	s3_req_query(&r, "retention", "");
	if (version_id != NULL && version_id[0] != '\0') {
		s3_req_query(&r, "versionId", version_id);
	}
	/* Object lock calls need Content-MD5 (or a checksum) on AWS. */
	char md5[32];
	content_md5(body.buf, body.len, md5);
	s3_req_header(&r, "content-md5", md5);
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	rc = s3_do(s3, &r, &rs, err);
	s3_resp_fini(&rs);
	coffer_strbuf_free(&body);
	return (rc);
}

int
coffer_s3_object_lock_get(coffer_s3 *s3, coffer_s3_lock_config *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	if (s3->insecure) {
		/* Whoever sits on a plain http path could answer "Enabled" for a
		 * bucket that locks nothing; a lock we cannot verify is no lock. */
		coffer_err_set(err, COFFER_EREFUSED,
		    "s3 bucket %s: object lock cannot be verified over plain http to %s "
		    "(insecure_http = true)",
		    s3->bucket, s3->host);
		return (coffer_err_hint(err,
		    "use an https:// endpoint for any repository whose object lock "
		    "matters (the DR repository)"));
	}
	struct s3_req r = {
		.op = "GetObjectLockConfiguration", .method = "GET", .flags = REQ_CAPTURE
	};
	s3_req_query(&r, "object-lock", "");
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	coffer_err e = { 0 };
	int rc = s3_do(s3, &r, &rs, &e);
	if (rc == COFFER_ENOENT ||
	    (rc != 0 && strstr(e.msg, "ObjectLockConfigurationNotFound") != NULL)) {
		s3_resp_fini(&rs);
		return (0); /* no configuration: object lock is off */
	}
	if (rc != 0) {
		s3_resp_fini(&rs);
		if (err != NULL) {
			*err = e;
		}
		if (rc == COFFER_EPERM) {
			coffer_err_hint(err,
			    "these credentials may not read the bucket's object lock "
			    "configuration, so it cannot be verified; allow "
			    "s3:GetBucketObjectLockConfiguration");
		}
		return (rc);
	}
	bool ok = s3_lock_config_parse(rs.body.buf, rs.body.len, out);
	s3_resp_fini(&rs);
	if (!ok) {
		return (coffer_err_set(err, COFFER_EPROTO,
		    "s3 object lock configuration of bucket "
		    "%s is not an ObjectLockConfiguration document",
		    s3->bucket));
	}
	return (0);
}

int
coffer_s3_versioning_get(coffer_s3 *s3, coffer_s3_versioning *out, coffer_err *err)
{
	*out = COFFER_S3_VERSIONING_OFF;
	if (s3->insecure) {
		/* As for object lock: a forged "Enabled" would be believed. */
		coffer_err_set(err, COFFER_EREFUSED,
		    "s3 bucket %s: versioning cannot be verified over plain http to %s "
		    "(insecure_http = true)",
		    s3->bucket, s3->host);
		return (coffer_err_hint(err,
		    "use an https:// endpoint for the primary repository, or set "
		    "unversioned_ok = true in [repository.primary] to run without the check"));
	}
	struct s3_req r = { .op = "GetBucketVersioning", .method = "GET", .flags = REQ_CAPTURE };
	s3_req_query(&r, "versioning", "");
	struct s3_resp rs;
	s3_resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	if (rc != 0) {
		s3_resp_fini(&rs);
		if (rc == COFFER_EPERM) {
			coffer_err_hint(err,
			    "these credentials may not read the bucket's versioning; allow "
			    "s3:GetBucketVersioning (coffer-coordinator s3-policy prints it)");
		}
		return (rc);
	}
	bool ok = s3_versioning_parse(rs.body.buf, rs.body.len, out);
	s3_resp_fini(&rs);
	if (!ok) {
		return (coffer_err_set(err, COFFER_EPROTO,
		    "s3 versioning of bucket %s is not a VersioningConfiguration document",
		    s3->bucket));
	}
	return (0);
}

int
coffer_s3_key_versions(
    coffer_s3 *s3, const char *key, coffer_s3_version *out, size_t max, size_t *n, coffer_err *err)
{
	*n = 0;
	char key_marker[2048] = "", version_marker[COFFER_S3_VERSION_ID_MAX] = "";
	/* A key has few versions; a bound keeps a hostile endpoint from
	 * keeping us paging for ever. */
	for (int page = 0; page < 64; page++) {
		struct s3_req r = {
			.op = "ListObjectVersions", .method = "GET", .flags = REQ_CAPTURE
		};
		s3_req_query(&r, "versions", "");
		s3_req_query(&r, "encoding-type", "url");
		s3_req_query(&r, "prefix", key);
		if (key_marker[0] != '\0') {
			s3_req_query(&r, "key-marker", key_marker);
		}
		if (version_marker[0] != '\0') {
			s3_req_query(&r, "version-id-marker", version_marker);
		}
		struct s3_resp rs;
		s3_resp_init(&rs, &r);
		int rc = s3_do(s3, &r, &rs, err);
		int truncated = 0;
		char nk[2048], nv[COFFER_S3_VERSION_ID_MAX];
		if (rc == 0 &&
		    !s3_versions_parse(rs.body.buf, rs.body.len, key, out, max, n, &truncated, nk,
		        sizeof(nk), nv, sizeof(nv))) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 version listing of %s is not a ListVersionsResult document", key);
		}
		s3_resp_fini(&rs);
		if (rc != 0 || !truncated) {
			return (rc);
		}
		/* Past our key: later keys only start with it. */
		if (nk[0] == '\0' || strcmp(nk, key) != 0 ||
		    (strcmp(nk, key_marker) == 0 && strcmp(nv, version_marker) == 0)) {
			return (0);
		}
		snprintf(key_marker, sizeof(key_marker), "%s", nk);
		snprintf(version_marker, sizeof(version_marker), "%s", nv);
	}
	return (coffer_err_set(
	    err, COFFER_EPROTO, "s3 version listing of %s did not end after 64 pages", key));
}
