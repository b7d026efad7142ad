/*
 * One S3 request: the HTTP exchange on libcurl, the retries with backoff
 * around it, and what a failed answer means (coffer_s3_error_set).
 *
 * Every request is built from scratch per attempt (fresh x-amz-date, fresh
 * signature, fresh curl handle), so a retry never replays a stale signature
 * and a client needs no lock. Request bodies are always in memory (a part,
 * or a small XML document), which is what lets us sign the payload hash:
 * the hash we sign is the SHA-256 we also send, base64, as
 * x-amz-checksum-sha256, so a store that checks either catches corruption.
 *
 * Response bodies are captured only up to S3_BODY_MAX (4 MiB: a
 * ListObjectsV2 page of 1000 maximal keys fits) for the XML answers we
 * read, and S3_ERR_BODY_MAX (64 KiB) for every other body (error
 * documents); a longer body stops the transfer at the cap, so memory stays
 * bounded whatever the endpoint sends. A successful GET streams into the
 * caller's filter chain instead. A captured answer that declares a DTD is
 * refused before it is parsed (s3_xml.c never reads one either). A GET that loses its connection mid-body
 * resumes with "Range: bytes=<n>-" and "If-Match: <etag>", so the bytes
 * already pushed into the chain are never sent twice and never mixed with
 * another version of the object.
 *
 * CompleteMultipartUpload (and, per the S3 docs, CopyObject and
 * UploadPartCopy) may answer 200 and then report failure in the body; such
 * requests are marked REQ_ERROR_IN_200 and their body is checked.
 *
 * What it promises: s3_do returns 0 only for a 2xx answer that is not an
 * error in disguise; it retries only what may succeed next time (lost
 * connections, 5xx, 429, SlowDown and its kin), max_attempts times at most,
 * with full jitter so throttled clients spread out; and every failure is a
 * COFFER_E* code whose message names the operation, the key and the store's
 * error code, with a hint saying what to do, and never the credentials.
 */
#include "common/repo/s3_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/base/log.h"

#define S3_BODY_MAX       (4u * 1024 * 1024)
#define S3_ERR_BODY_MAX   65536
#define S3_BACKOFF_CAP_MS 5000

/* ---- errors ---- */

int
coffer_s3_error_set(coffer_err *err, const char *op, const char *key, long status, const char *code,
    const char *message)
{
	struct map {
		const char *code;
		int rc;
		const char *hint;
	};
	static const struct map m[] = {
		{ "AccessDenied", COFFER_EPERM,
		    "check that access_key and secret_key belong to a "
		    "user that the bucket policy allows this operation" },
		{ "AllAccessDisabled", COFFER_EPERM,
		    "access to this bucket is disabled; ask its "
		    "owner" },
		{ "NoSuchBucket", COFFER_EINVAL,
		    "create the bucket, or fix bucket = (and "
		    "endpoint, region) in the repository's configuration" },
		{ "NoSuchKey", COFFER_ENOENT,
		    "check the key: the object does not exist (or "
		    "retention deleted it)" },
		{ "NoSuchVersion", COFFER_ENOENT,
		    "check the versionId: that version does not "
		    "exist" },
		{ "NoSuchUpload", COFFER_EIO,
		    "the multipart upload was aborted or expired; write "
		    "the object again" },
		{ "SignatureDoesNotMatch", COFFER_EAUTH,
		    "check secret_key (or "
		    "AWS_SECRET_ACCESS_KEY), and that this host's clock is right: SigV4 "
		    "signatures include the time" },
		{ "InvalidAccessKeyId", COFFER_EAUTH,
		    "check access_key (or AWS_ACCESS_KEY_ID): "
		    "the store knows no such key" },
		{ "RequestTimeTooSkewed", COFFER_EAUTH,
		    "fix this host's clock (run NTP): it "
		    "differs too much from the store's" },
		{ "ExpiredToken", COFFER_EAUTH,
		    "the session token expired; refresh "
		    "session_token (or AWS_SESSION_TOKEN)" },
		{ "InvalidToken", COFFER_EAUTH, "check session_token (or AWS_SESSION_TOKEN)" },
		{ "BadDigest", COFFER_EIO,
		    "the data changed in transit; retry, and check "
		    "proxies and memory if it persists" },
		{ "XAmzContentSHA256Mismatch", COFFER_EIO,
		    "the data changed in transit; retry, "
		    "and check proxies and memory if it persists" },
		{ "InvalidDigest", COFFER_EIO, "the data changed in transit; retry" },
		{ "PreconditionFailed", COFFER_EEXIST,
		    "an object with this key exists; "
		    "repository objects are never replaced" },
		{ "BucketAlreadyExists", COFFER_EEXIST, "bucket names are global; choose another" },
		{ "BucketAlreadyOwnedByYou", COFFER_EEXIST, "the bucket exists already" },
		{ "InvalidBucketName", COFFER_EINVAL, "fix bucket = in the configuration" },
		{ "SlowDown", COFFER_EUNAVAIL,
		    "the store is throttling requests; lower the "
		    "number of concurrent jobs or retry later" },
		{ "InternalError", COFFER_EUNAVAIL,
		    "the store failed; retry later and check its "
		    "health" },
		{ "ServiceUnavailable", COFFER_EUNAVAIL, "the store is unavailable; retry later" },
		{ "RequestTimeout", COFFER_EUNAVAIL,
		    "the connection to the store was too slow; "
		    "check the network" },
		{ "NotImplemented", COFFER_EINVAL,
		    "this store does not support the request; "
		    "use an S3 store with full API support" },
		{ "InvalidRequest", COFFER_EINVAL,
		    "see the store's message; check the "
		    "repository's configuration" },
		{ "EntityTooSmall", COFFER_EINTERNAL,
		    "a multipart part was below the store's "
		    "minimum; this is a bug: report it" },
		{ "InvalidPart", COFFER_EIO,
		    "a part went missing on the store; write the object "
		    "again" },
		{ "AuthorizationHeaderMalformed", COFFER_EINVAL,
		    "check region = in the "
		    "configuration: the bucket may live in another region" },
		{ "PermanentRedirect", COFFER_EINVAL,
		    "the bucket lives elsewhere; fix endpoint "
		    "and region" },
	};
	const char *c = code != NULL && code[0] != '\0' ? code : NULL;
	int rc = COFFER_EIO;
	const char *hint = NULL;
	for (size_t i = 0; c != NULL && i < sizeof(m) / sizeof(m[0]); i++) {
		if (strcmp(m[i].code, c) == 0) {
			rc = m[i].rc;
			hint = m[i].hint;
		}
	}
	if (hint == NULL) {
		if (status == 404) {
			rc = COFFER_ENOENT;
			hint = "check the key and bucket: there is no such object";
		} else if (status == 403) {
			rc = COFFER_EPERM;
			hint = "check the credentials and the bucket policy";
		} else if (status == 412) {
			rc = COFFER_EEXIST;
			hint =
			    "an object with this key exists; repository objects are never replaced";
		} else if (status >= 500 || status == 429) {
			rc = COFFER_EUNAVAIL;
			hint = "the store failed; retry later and check its health";
		} else {
			hint = "see the store's message";
		}
	}
	coffer_err_set(err, rc, "s3 %s %.300s: %s%s%.200s (HTTP %ld)", op,
	    key != NULL && key[0] != '\0' ? key : "(bucket)", c != NULL ? c : "error",
	    message != NULL && message[0] != '\0' ? ": " : "", message != NULL ? message : "",
	    status);
	coffer_err_hint(err, "%s", hint);
	return (rc);
}

/* ---- requests ---- */

void
s3_req_header(struct s3_req *r, const char *name, const char *value)
{
	if (r->nheaders < S3_MAX_HEADERS) {
		r->headers[r->nheaders].name = name;
		r->headers[r->nheaders].value = value;
		r->nheaders++;
	}
}

void
s3_req_query(struct s3_req *r, const char *name, const char *value)
{
	if (r->nquery < S3_MAX_QUERY) {
		r->query[r->nquery].name = name;
		r->query[r->nquery].value = value;
		r->nquery++;
	}
}

static size_t
on_header(char *buf, size_t size, size_t nitems, void *arg)
{
	struct s3_resp *rs = arg;
	size_t len = size * nitems;
	char line[512];
	size_t n = len < sizeof(line) - 1 ? len : sizeof(line) - 1;
	memcpy(line, buf, n);
	line[n] = '\0';
	while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == '\n')) {
		line[--n] = '\0';
	}
	if (strncmp(line, "HTTP/", 5) == 0) {
		/* A new response (after a 100 Continue): forget the interim one. */
		rs->have_len = false;
		memset(&rs->info, 0, sizeof(rs->info));
		return (len);
	}
	char *colon = strchr(line, ':');
	if (colon == NULL) {
		return (len);
	}
	*colon = '\0';
	char *v = colon + 1;
	while (*v == ' ' || *v == '\t') {
		v++;
	}
	if (strcasecmp(line, "etag") == 0) {
		snprintf(rs->info.etag, sizeof(rs->info.etag), "%s", v);
	} else if (strcasecmp(line, "x-amz-version-id") == 0) {
		snprintf(rs->info.version_id, sizeof(rs->info.version_id), "%s", v);
	} else if (strcasecmp(line, "content-length") == 0) {
		rs->content_length = strtoull(v, NULL, 10);
		rs->have_len = true;
	} else if (strcasecmp(line, "last-modified") == 0) {
		time_t t = curl_getdate(v, NULL);
		rs->info.mtime_ms = t > 0 ? (int64_t)t * 1000 : 0;
	} else if (strcasecmp(line, "x-amz-object-lock-mode") == 0) {
		snprintf(rs->info.lock_mode, sizeof(rs->info.lock_mode), "%s", v);
	} else if (strcasecmp(line, "x-amz-object-lock-retain-until-date") == 0) {
		rs->info.lock_until_ms = s3_iso_ms(v);
	}
	return (len);
}

static size_t
on_body(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct s3_resp *rs = arg;
	size_t len = size * nmemb;
	long status = 0;
	curl_easy_getinfo(rs->curl, CURLINFO_RESPONSE_CODE, &status);
	if ((rs->req->flags & REQ_STREAM) != 0 && (status == 200 || status == 206)) {
		int rc = coffer_filter_write(rs->req->chain, buf, len, &rs->chain_err);
		if (rc != 0) {
			rs->chain_rc = rc;
			return (0); /* makes curl stop with CURLE_WRITE_ERROR */
		}
		rs->delivered += len;
		return (len);
	}
	/* An error document is short whatever the request: only a success
	 * body of a request that captures XML may reach S3_BODY_MAX. */
	size_t max = status >= 200 && status < 300 ? rs->body_max : S3_ERR_BODY_MAX;
	if (max > rs->body_max) {
		max = rs->body_max;
	}
	if (rs->body.len + len > max) {
		/* Keep what fits and stop the transfer here: an endless or
		 * gigabyte body from a hostile or broken endpoint costs
		 * body_max bytes of memory and no more time than that. */
		rs->body_over = true;
		size_t room = max - rs->body.len;
		coffer_strbuf_putn(&rs->body, buf, room);
		return (0); /* makes curl stop with CURLE_WRITE_ERROR */
	}
	coffer_strbuf_putn(&rs->body, buf, len);
	return (rs->body.failed ? 0 : len);
}

static size_t
on_read(char *buf, size_t size, size_t nitems, void *arg)
{
	struct s3_resp *rs = arg;
	size_t room = size * nitems;
	size_t left = rs->req->body_len - rs->sent;
	size_t n = left < room ? left : room;
	if (n > 0) {
		memcpy(buf, rs->req->body + rs->sent, n);
		rs->sent += n;
	}
	return (n);
}

static int
on_seek(void *arg, curl_off_t offset, int origin)
{
	struct s3_resp *rs = arg;
	if (origin != SEEK_SET || offset < 0 || (size_t)offset > rs->req->body_len) {
		return (CURL_SEEKFUNC_FAIL);
	}
	rs->sent = (size_t)offset;
	return (CURL_SEEKFUNC_OK);
}

static void
amz_date_now(const coffer_s3 *s3, char out[17])
{
	int64_t ms = coffer_clock_now(s3->clock);
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* The path as signed (unencoded) and the Host header. */
static int
req_target(const coffer_s3 *s3, const struct s3_req *r, coffer_strbuf *path, coffer_strbuf *host)
{
	coffer_strbuf_put(path, "/");
	if (s3->path_style) {
		coffer_strbuf_put(path, s3->bucket);
		if (r->key != NULL) {
			coffer_strbuf_put(path, "/");
		}
		coffer_strbuf_put(host, s3->host);
	} else {
		coffer_strbuf_put(host, s3->bucket);
		coffer_strbuf_put(host, ".");
		coffer_strbuf_put(host, s3->host);
	}
	if (r->key != NULL) {
		coffer_strbuf_put(path, r->key);
	}
	return (path->failed || host->failed ? COFFER_ENOMEM : 0);
}

/* One attempt. Returns 0 when an HTTP response arrived (any status), or a
 * curl error code (> 0) with a message in err; < 0 for local failures. */
static int
s3_once(coffer_s3 *s3, const struct s3_req *r, struct s3_resp *rs, const char *range,
    const char *if_match, coffer_err *err)
{
	coffer_strbuf path = { 0 };
	coffer_strbuf host = { 0 };
	coffer_strbuf url = { 0 };
	struct curl_slist *hl = NULL;
	CURL *c = NULL;
	int rc = req_target(s3, r, &path, &host);
	if (rc != 0) {
		coffer_strbuf_free(&path);
		coffer_strbuf_free(&host);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory building an s3 request"));
	}

	char payload_hex[65];
	char sum_b64[48];
	uint8_t d[32];
	if (r->body_sha256 != NULL) {
		memcpy(d, r->body_sha256, sizeof(d));
	} else {
		s3_sha256(r->body != NULL ? (const void *)r->body : "", r->body_len, d);
	}
	coffer_hex_encode(d, 32, payload_hex);
	s3_base64(d, 32, sum_b64);
	char date[17];
	amz_date_now(s3, date);

	coffer_s3_kv h[S3_MAX_HEADERS + 8];
	size_t nh = 0;
	for (size_t i = 0; i < r->nheaders; i++) {
		h[nh++] = r->headers[i];
	}
	h[nh++] = (coffer_s3_kv) { "x-amz-date", date };
	h[nh++] = (coffer_s3_kv) { "x-amz-content-sha256", payload_hex };
	if ((r->flags & REQ_CHECKSUM) != 0) {
		/* Integrity the store checks even where payload signing is not.
		 * Only on object data: on CompleteMultipartUpload the same header
		 * would claim a checksum for the whole object. */
		h[nh++] = (coffer_s3_kv) { "x-amz-checksum-sha256", sum_b64 };
	}
	if (s3->token != NULL) {
		h[nh++] = (coffer_s3_kv) { "x-amz-security-token", s3->token };
	}
	if (range != NULL) {
		h[nh++] = (coffer_s3_kv) { "range", range };
	}
	if (if_match != NULL) {
		h[nh++] = (coffer_s3_kv) { "if-match", if_match };
	}
	coffer_s3_sign_input in = {
		.method = r->method,
		.host = host.buf,
		.path = path.buf,
		.query = r->query,
		.nquery = r->nquery,
		.headers = h,
		.nheaders = nh,
		.payload_hash = payload_hex,
		.amz_date = date,
		.region = s3->region,
		.access_key = s3->access_key,
		.secret_key = s3->secret_key,
	};
	char auth[1024];
	rc = coffer_s3_sign(&in, auth, sizeof(auth), NULL, err);
	if (rc != 0) {
		goto done;
	}

	coffer_strbuf_put(&url, s3->scheme);
	coffer_strbuf_put(&url, "://");
	coffer_strbuf_put(&url, host.buf);
	s3_uri_encode(&url, path.buf, true);
	/* The order of the query does not matter on the wire; the signature
	 * covers the sorted form. */
	for (size_t i = 0; i < r->nquery; i++) {
		coffer_strbuf_put(&url, i == 0 ? "?" : "&");
		s3_uri_encode(&url, r->query[i].name, false);
		coffer_strbuf_put(&url, "=");
		s3_uri_encode(&url, r->query[i].value != NULL ? r->query[i].value : "", false);
	}
	coffer_strbuf line = { 0 };
	coffer_strbuf_printf(&line, "Host: %s", host.buf);
	hl = curl_slist_append(hl, line.buf != NULL ? line.buf : "");
	for (size_t i = 0; i < nh; i++) {
		line.len = 0;
		coffer_strbuf_put(&line, h[i].name);
		coffer_strbuf_put(&line, ": ");
		coffer_strbuf_put(&line, h[i].value);
		hl = curl_slist_append(hl, line.buf != NULL ? line.buf : "");
	}
	line.len = 0;
	coffer_strbuf_put(&line, "Authorization: ");
	coffer_strbuf_put(&line, auth);
	hl = curl_slist_append(hl, line.buf != NULL ? line.buf : "");
	if (line.buf != NULL) {
		OPENSSL_cleanse(line.buf, line.cap);
	}
	coffer_strbuf_free(&line);
	/* No "Expect: 100-continue" round trip, no default Content-Type or
	 * Accept: nothing unsigned that a proxy could trip over. */
	hl = curl_slist_append(hl, "Expect:");
	hl = curl_slist_append(hl, "Accept:");
	if (r->body_len > 0 || strcmp(r->method, "POST") == 0) {
		hl = curl_slist_append(hl, "Content-Type:");
	}
	if (url.failed || hl == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory building an s3 request");
		goto done;
	}

	c = curl_easy_init();
	if (c == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "libcurl could not make a handle");
		goto done;
	}
	rs->curl = c;
	rs->req = r;
	rs->sent = 0;
	char ebuf[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(c, CURLOPT_URL, url.buf);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
	/* A stalled transfer (under 1 byte/s for 60 s) is a network error, and
	 * retried; a slow but moving one is left alone. */
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, rs);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, rs);
	if (strcmp(r->method, "PUT") == 0) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, rs);
		curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
		curl_easy_setopt(c, CURLOPT_SEEKDATA, rs);
		curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(
		    c, CURLOPT_POSTFIELDS, r->body != NULL ? (const char *)r->body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "HEAD") == 0) {
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
	}
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &rs->status);
	if (cc == CURLE_WRITE_ERROR && rs->body_over) {
		/* An answer arrived; s3_do judges its status and its cut body. */
		rc = 0;
	} else if (cc != CURLE_OK) {
		if (rs->chain_rc != 0) {
			rc = rs->chain_rc;
			if (err != NULL) {
				*err = rs->chain_err;
			}
		} else {
			coffer_err_set(err, COFFER_EUNAVAIL, "s3 %s %.300s: %s", r->op,
			    r->key != NULL ? r->key : "(bucket)",
			    ebuf[0] != '\0' ? ebuf : curl_easy_strerror(cc));
			coffer_err_hint(err, "check that endpoint (%s://%s) is right and reachable",
			    s3->scheme, s3->host);
			rc = (int)cc;
		}
	}
done:
	if (c != NULL) {
		curl_easy_cleanup(c);
	}
	rs->curl = NULL;
	curl_slist_free_all(hl);
	coffer_strbuf_free(&url);
	coffer_strbuf_free(&path);
	coffer_strbuf_free(&host);
	return (rc);
}

static bool
curl_retryable(int cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return (true);
	default:
		return (false);
	}
}

static bool
s3_retryable(long status, const char *code)
{
	if (status >= 500 || status == 429) {
		return (true);
	}
	return (strcmp(code, "SlowDown") == 0 || strcmp(code, "RequestTimeout") == 0 ||
	    strcmp(code, "InternalError") == 0 || strcmp(code, "ServiceUnavailable") == 0);
}

static void
backoff(const coffer_s3 *s3, int attempt)
{
	/* Full jitter (sleep a random time up to the exponential cap): many
	 * agents retrying against one throttled store spread out instead of
	 * coming back in waves. */
	int64_t cap = (int64_t)s3->backoff_base_ms << (attempt < 16 ? attempt - 1 : 15);
	if (cap > S3_BACKOFF_CAP_MS) {
		cap = S3_BACKOFF_CAP_MS;
	}
	uint32_t r = 0;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
		r = (uint32_t)time(NULL);
	}
	int64_t ms = (int64_t)(r % (uint32_t)(cap + 1));
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

void
s3_resp_init(struct s3_resp *rs, const struct s3_req *r)
{
	memset(rs, 0, sizeof(*rs));
	rs->req = r;
	rs->body_max =
	    (r->flags & (REQ_CAPTURE | REQ_ERROR_IN_200)) != 0 ? S3_BODY_MAX : S3_ERR_BODY_MAX;
}

void
s3_resp_fini(struct s3_resp *rs)
{
	coffer_strbuf_free(&rs->body);
}

/* Runs a request with retries. 0 with rs->status 2xx, or an error in err.
 * A streamed GET that breaks after delivering bytes resumes from there. */
int
s3_do(coffer_s3 *s3, const struct s3_req *r, struct s3_resp *rs, coffer_err *err)
{
	char etag[COFFER_S3_ETAG_MAX] = "";
	int rc = 0;
	for (int attempt = 1;; attempt++) {
		char range[64];
		bool resuming = (r->flags & REQ_STREAM) != 0 && rs->delivered > 0;
		if (resuming) {
			snprintf(range, sizeof(range), "bytes=%" PRIu64 "-", rs->delivered);
		}
		uint64_t delivered = rs->delivered;
		coffer_strbuf_free(&rs->body);
		rs->body_over = false;
		rs->status = 0;
		rc = s3_once(s3, r, rs, resuming ? range : NULL,
		    resuming && etag[0] != '\0' ? etag : NULL, err);
		if ((r->flags & REQ_STREAM) != 0 && etag[0] == '\0' && rs->info.etag[0] != '\0' &&
		    (rs->status == 200 || rs->status == 206)) {
			snprintf(etag, sizeof(etag), "%s", rs->info.etag);
		}
		if (rc < 0) {
			return (rc);
		}
		if (rc > 0) {
			if (!curl_retryable(rc) || attempt >= s3->max_attempts) {
				if (attempt > 1) {
					coffer_err_wrap(err, "after %d attempts", attempt);
				}
				return (COFFER_EUNAVAIL);
			}
			coffer_log_warn("s3 request failed, retrying", "op=%s attempt=%d curl=%d",
			    r->op, attempt, rc);
			backoff(s3, attempt);
			continue;
		}
		if (resuming && rs->status == 200) {
			/* The store ignored our Range: the bytes would repeat. */
			return (coffer_err_set(err, COFFER_EIO,
			    "s3 %s %.300s: resuming at byte %" PRIu64 " got the whole object again",
			    r->op, r->key, delivered));
		}
		if (resuming && rs->status == 412) {
			coffer_err_set(err, COFFER_EIO,
			    "s3 %s %.300s: the object changed while it "
			    "was being read",
			    r->op, r->key);
			coffer_err_hint(err, "read it again");
			return (COFFER_EIO);
		}
		char code[128] = "";
		char msg[512] = "";
		bool ok = rs->status >= 200 && rs->status < 300;
		if (ok && rs->body_over) {
			coffer_err_set(err, COFFER_ETOOBIG,
			    "s3 %s at %s://%s: the answer is over %zu bytes; reading stopped there",
			    r->op, s3->scheme, s3->host, rs->body_max);
			return (coffer_err_hint(err,
			    "check that endpoint points at an S3 store: no answer S3 gives "
			    "to this request is that long"));
		}
		if (ok && rs->body.len > 0 && s3_xml_doctype(rs->body.buf, rs->body.len)) {
			coffer_err_set(err, COFFER_EPROTO,
			    "s3 %s at %s://%s: the answer declares a DTD (<!DOCTYPE>), which S3 "
			    "never sends; refused unread",
			    r->op, s3->scheme, s3->host);
			return (coffer_err_hint(err,
			    "check that endpoint points at an S3 store and that nothing "
			    "on the path rewrites its answers (use https)"));
		}
		if (!ok && rs->body.len > 0 && s3_xml_doctype(rs->body.buf, rs->body.len)) {
			/* An error page with a DTD (a proxy's HTML page, or worse):
			 * the status alone decides, the body is not read. */
			snprintf(
			    msg, sizeof(msg), "the answer's body declares a DTD and was not read");
		} else if (ok && (r->flags & REQ_ERROR_IN_200) != 0 &&
		    coffer_s3_error_parse(
		        rs->body.buf, rs->body.len, code, sizeof(code), msg, sizeof(msg)) == 1) {
			ok = false;
		} else if (!ok) {
			coffer_s3_error_parse(
			    rs->body.buf, rs->body.len, code, sizeof(code), msg, sizeof(msg));
		}
		if (ok) {
			return (0);
		}
		if (s3_retryable(rs->status, code) && attempt < s3->max_attempts) {
			coffer_log_warn("s3 request failed, retrying",
			    "op=%s attempt=%d status=%ld "
			    "code=%s",
			    r->op, attempt, rs->status, code[0] != '\0' ? code : "none");
			backoff(s3, attempt);
			continue;
		}
		rc = coffer_s3_error_set(err, r->op, r->key, rs->status, code, msg);
		if (attempt > 1) {
			coffer_err_wrap(err, "after %d attempts", attempt);
		}
		return (rc);
	}
}
