/*
 * S3 client: SigV4 signing, requests with retries, XML responses, streaming
 * multipart uploads. See common/repo/s3.h for the promises.
 *
 * Design notes.
 * Every request is built from scratch per attempt (fresh x-amz-date, fresh
 * signature, fresh curl handle), so a retry never replays a stale signature
 * and a client needs no lock. Request bodies are always in memory (a part,
 * or a small XML document), which is what lets us sign the payload hash:
 * the hash we sign is the SHA-256 we also send, base64, as
 * x-amz-checksum-sha256, so a store that checks either catches corruption.
 *
 * Response bodies are captured only up to S3_BODY_MAX (a ListObjectsV2 page
 * of 1000 maximal keys fits), except a successful GET, which streams into
 * the caller's filter chain. A GET that loses its connection mid-body
 * resumes with "Range: bytes=<n>-" and "If-Match: <etag>", so the bytes
 * already pushed into the chain are never sent twice and never mixed with
 * another version of the object.
 *
 * CompleteMultipartUpload (and, per the S3 docs, CopyObject and
 * UploadPartCopy) may answer 200 and then report failure in the body; such
 * requests are marked REQ_ERROR_IN_200 and their body is checked.
 *
 * Existence checks for "no overwrite": a single PUT carries
 * "If-None-Match: *", so the store refuses it atomically; for a multipart
 * upload we HEAD the key before CompleteMultipartUpload (stores differ on
 * conditional completes), which leaves a window between HEAD and complete
 * that only two writers of the same key could hit; Coffer's keys carry
 * unique backup ids, so that never happens by design. A 403 on such a HEAD
 * means write-only credentials: the check is then skipped, not failed.
 */
#include "common/repo/s3.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "common/base/log.h"

#define S3_BODY_MAX       (4u * 1024 * 1024)
#define S3_ERR_BODY_MAX   65536
#define S3_BACKOFF_CAP_MS 5000
#define S3_MAX_QUERY      6
#define S3_MAX_HEADERS    16
#define S3_EMPTY_SHA256   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct coffer_s3 {
	char *scheme; /* "http" or "https" */
	char *host;   /* endpoint host[:port], as in the Host header */
	char *bucket;
	char *region;
	char *access_key;
	char *secret_key;
	char *token; /* NULL without a session token */
	int path_style;
	size_t part_size;
	int max_attempts;
	int backoff_base_ms;
	const coffer_clock *clock;
};

/* ---- growing strings (bounded by their inputs, which are bounded) ---- */

struct sb {
	char *p;
	size_t len;
	size_t cap;
	bool oom;
};

static void
sb_putn(struct sb *b, const char *s, size_t n)
{
	if (b->oom) {
		return;
	}
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap != 0 ? b->cap : 256;
		while (cap < b->len + n + 1) {
			cap *= 2;
		}
		char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_put(struct sb *b, const char *s)
{
	sb_putn(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
sb_printf(struct sb *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		b->oom = true;
		return;
	}
	sb_putn(b, tmp, (size_t)n);
}

static void
sb_free(struct sb *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* RFC 3986 encoding as SigV4 wants it: unreserved kept, '/' kept only when
 * asked (paths), everything else %XX with upper-case hex. */
static void
sb_uri_encode(struct sb *b, const char *s, bool keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
		    (keep_slash && *p == '/')) {
			sb_putn(b, (const char *)p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			sb_putn(b, e, 3);
		}
	}
}

static void
sb_xml_escape(struct sb *b, const char *s)
{
	for (; *s != '\0'; s++) {
		switch (*s) {
		case '&':
			sb_put(b, "&amp;");
			break;
		case '<':
			sb_put(b, "&lt;");
			break;
		case '>':
			sb_put(b, "&gt;");
			break;
		case '"':
			sb_put(b, "&quot;");
			break;
		default:
			sb_putn(b, s, 1);
			break;
		}
	}
}

/* ---- hashing ---- */

static void
sha256(const void *data, size_t len, uint8_t out[32])
{
	unsigned int n = 32;
	EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

static void
hex32(const uint8_t in[32], char out[65])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < 32; i++) {
		out[2 * i] = hex[in[i] >> 4];
		out[2 * i + 1] = hex[in[i] & 15];
	}
	out[64] = '\0';
}

static void
hmac256(const void *key, size_t key_len, const char *data, uint8_t out[32])
{
	unsigned int n = 32;
	HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, strlen(data), out, &n);
}

static void
base64(const uint8_t *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* ---- SigV4 ---- */

struct hdr_ref {
	char name[64];
	const char *value;
};

static int
hdr_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct hdr_ref *)a)->name, ((const struct hdr_ref *)b)->name));
}

struct q_enc {
	char *name;
	char *value;
};

static int
q_cmp(const void *a, const void *b)
{
	const struct q_enc *x = a;
	const struct q_enc *y = b;
	int c = strcmp(x->name, y->name);
	return (c != 0 ? c : strcmp(x->value, y->value));
}

static void
sb_header_value(struct sb *b, const char *v)
{
	/* Trim, and collapse runs of spaces, as SigV4 asks. */
	while (*v == ' ' || *v == '\t') {
		v++;
	}
	size_t n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
		n--;
	}
	bool space = false;
	for (size_t i = 0; i < n; i++) {
		if (v[i] == ' ' || v[i] == '\t') {
			space = true;
			continue;
		}
		if (space) {
			sb_putn(b, " ", 1);
			space = false;
		}
		sb_putn(b, v + i, 1);
	}
}

/* Builds the canonical request into cr and the signed header list into sh. */
static int
canonical_build(const coffer_s3_sign_input *in, struct sb *cr, struct sb *sh, coffer_err *err)
{
	if (in->nheaders + 1 > S3_MAX_HEADERS + 8 || in->nquery > S3_MAX_QUERY + 4) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "s3 request with too many headers "
		    "or query parameters"));
	}
	struct hdr_ref h[S3_MAX_HEADERS + 9];
	size_t nh = 0;
	snprintf(h[nh].name, sizeof(h[nh].name), "host");
	h[nh++].value = in->host;
	for (size_t i = 0; i < in->nheaders; i++) {
		size_t n = strlen(in->headers[i].name);
		if (n == 0 || n >= sizeof(h[nh].name)) {
			return (coffer_err_set(
			    err, COFFER_EINTERNAL, "s3 header name of %zu bytes", n));
		}
		for (size_t j = 0; j <= n; j++) {
			h[nh].name[j] = (char)tolower((unsigned char)in->headers[i].name[j]);
		}
		h[nh++].value = in->headers[i].value;
	}
	qsort(h, nh, sizeof(h[0]), hdr_cmp);

	struct q_enc q[S3_MAX_QUERY + 4];
	size_t nq = 0;
	int rc = 0;
	for (size_t i = 0; i < in->nquery; i++) {
		struct sb n = { 0 };
		struct sb v = { 0 };
		sb_put(&n, "");
		sb_put(&v, "");
		sb_uri_encode(&n, in->query[i].name, false);
		sb_uri_encode(&v, in->query[i].value != NULL ? in->query[i].value : "", false);
		q[nq].name = n.p;
		q[nq].value = v.p;
		nq++;
		if (n.oom || v.oom) {
			rc = COFFER_ENOMEM;
		}
	}
	if (rc == 0) {
		qsort(q, nq, sizeof(q[0]), q_cmp);
		sb_put(cr, in->method);
		sb_put(cr, "\n");
		sb_uri_encode(cr, in->path, true);
		sb_put(cr, "\n");
		for (size_t i = 0; i < nq; i++) {
			if (i > 0) {
				sb_put(cr, "&");
			}
			sb_put(cr, q[i].name);
			sb_put(cr, "=");
			sb_put(cr, q[i].value);
		}
		sb_put(cr, "\n");
		for (size_t i = 0; i < nh; i++) {
			sb_put(cr, h[i].name);
			sb_put(cr, ":");
			sb_header_value(cr, h[i].value);
			sb_put(cr, "\n");
			if (i > 0) {
				sb_put(sh, ";");
			}
			sb_put(sh, h[i].name);
		}
		sb_put(cr, "\n");
		sb_put(cr, sh->p);
		sb_put(cr, "\n");
		sb_put(cr, in->payload_hash);
		if (cr->oom || sh->oom) {
			rc = COFFER_ENOMEM;
		}
	}
	for (size_t i = 0; i < nq; i++) {
		free(q[i].name);
		free(q[i].value);
	}
	if (rc != 0) {
		return (coffer_err_set(err, rc, "out of memory signing an s3 request"));
	}
	return (0);
}

int
coffer_s3_canonical_request(const coffer_s3_sign_input *in, char *buf, size_t size, coffer_err *err)
{
	struct sb cr = { 0 };
	struct sb sh = { 0 };
	int rc = canonical_build(in, &cr, &sh, err);
	if (rc == 0 && cr.len + 1 > size) {
		rc = coffer_err_set(err, COFFER_ETOOBIG,
		    "s3 canonical request of %zu bytes does "
		    "not fit in %zu",
		    cr.len, size);
	}
	if (rc == 0) {
		memcpy(buf, cr.p, cr.len + 1);
	}
	sb_free(&cr);
	sb_free(&sh);
	return (rc);
}

int
coffer_s3_sign(
    const coffer_s3_sign_input *in, char *auth, size_t size, char sig[65], coffer_err *err)
{
	if (in->amz_date == NULL || strlen(in->amz_date) != 16) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "s3 signing without an x-amz-date"));
	}
	struct sb cr = { 0 };
	struct sb sh = { 0 };
	int rc = canonical_build(in, &cr, &sh, err);
	if (rc != 0) {
		sb_free(&cr);
		sb_free(&sh);
		return (rc);
	}
	char date[9];
	memcpy(date, in->amz_date, 8);
	date[8] = '\0';
	uint8_t d[32];
	char cr_hex[65];
	sha256(cr.p, cr.len, d);
	hex32(d, cr_hex);

	char scope[128];
	snprintf(scope, sizeof(scope), "%s/%s/s3/aws4_request", date, in->region);
	char sts[256];
	snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s\n%s", in->amz_date, scope, cr_hex);

	/* kSecret = "AWS4" + secret; the chain of HMACs narrows the key to one
	 * day, region and service, so a leaked signing key is worth little. */
	size_t slen = strlen(in->secret_key);
	char *k0 = malloc(slen + 5);
	if (k0 == NULL) {
		sb_free(&cr);
		sb_free(&sh);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory signing an s3 request"));
	}
	memcpy(k0, "AWS4", 4);
	memcpy(k0 + 4, in->secret_key, slen + 1);
	uint8_t k[32];
	hmac256(k0, slen + 4, date, k);
	OPENSSL_cleanse(k0, slen + 4);
	free(k0);
	hmac256(k, 32, in->region, k);
	hmac256(k, 32, "s3", k);
	hmac256(k, 32, "aws4_request", k);
	uint8_t s[32];
	hmac256(k, 32, sts, s);
	OPENSSL_cleanse(k, sizeof(k));
	char s_hex[65];
	hex32(s, s_hex);
	if (sig != NULL) {
		memcpy(sig, s_hex, 65);
	}
	int n = snprintf(auth, size,
	    "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
	    "Signature=%s",
	    in->access_key, scope, sh.p, s_hex);
	sb_free(&cr);
	sb_free(&sh);
	if (n < 0 || (size_t)n >= size) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		    "s3 authorization header does not fit "
		    "in %zu bytes",
		    size));
	}
	return (0);
}

/* ---- XML ---- */

static bool
xml_is(const xmlNode *n, const char *name)
{
	/* Local names only: radosgw omits the S3 namespace that AWS sends. */
	return (n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0);
}

static void
xml_text(const xmlNode *n, char *out, size_t size)
{
	xmlChar *t = xmlNodeGetContent(n);
	snprintf(out, size, "%s", t != NULL ? (const char *)t : "");
	xmlFree(t);
}

static xmlDoc *
xml_read(const char *body, size_t len)
{
	if (body == NULL || len == 0 || len > INT32_MAX) {
		return (NULL);
	}
	/* NONET and no NOENT: never fetch or expand external entities. */
	return (xmlReadMemory(body, (int)len, "s3.xml", NULL,
	    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
}

int
coffer_s3_error_parse(
    const char *body, size_t len, char *code, size_t code_size, char *message, size_t message_size)
{
	if (code_size > 0) {
		code[0] = '\0';
	}
	if (message_size > 0) {
		message[0] = '\0';
	}
	xmlDoc *doc = xml_read(body, len);
	if (doc == NULL) {
		return (0);
	}
	xmlNode *root = xmlDocGetRootElement(doc);
	int found = 0;
	if (root != NULL && xml_is(root, "Error")) {
		found = 1;
		for (xmlNode *c = root->children; c != NULL; c = c->next) {
			if (xml_is(c, "Code")) {
				xml_text(c, code, code_size);
			} else if (xml_is(c, "Message")) {
				xml_text(c, message, message_size);
			}
		}
	}
	xmlFreeDoc(doc);
	return (found);
}

static int64_t
iso_ms(const char *text)
{
	int64_t ms = 0;
	return (coffer_time_parse(text, &ms) == 0 ? ms : 0);
}

/* Undoes encoding-type=url in place: %XX, and '+' for a space (S3 encodes
 * list keys as form data). Returns false on a malformed escape or a NUL. */
static bool
url_decode(char *s)
{
	char *w = s;
	for (const char *r = s; *r != '\0'; r++) {
		if (*r == '+') {
			*w++ = ' ';
		} else if (*r == '%') {
			if (!isxdigit((unsigned char)r[1]) || !isxdigit((unsigned char)r[2])) {
				return (false);
			}
			char hx[3] = { r[1], r[2], '\0' };
			char c = (char)strtol(hx, NULL, 16);
			if (c == '\0') {
				return (false);
			}
			*w++ = c;
			r += 2;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
	return (true);
}

int
coffer_s3_list_parse(const char *body, size_t len, coffer_s3_list_cb cb, void *arg, int *truncated,
    char *token, size_t token_size, coffer_err *err)
{
	*truncated = 0;
	if (token_size > 0) {
		token[0] = '\0';
	}
	xmlDoc *doc = xml_read(body, len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !xml_is(root, "ListBucketResult")) {
		xmlFreeDoc(doc);
		coffer_err_set(err, COFFER_EPROTO,
		    "s3 list response is not a ListBucketResult "
		    "document");
		coffer_err_hint(err,
		    "check that endpoint points at an S3 API, not a web site or "
		    "proxy page");
		return (COFFER_EPROTO);
	}
	int rc = 0;
	/* S3 keys are at most 1024 bytes; url-encoded, three times that. */
	char key[3 * 1024 + 8];
	char num[32];
	char when[64];
	/* The token and flag come after the keys in the document; read them
	 * first so a callback that stops early still leaves them set. */
	bool url = false;
	for (xmlNode *c = root->children; c != NULL; c = c->next) {
		if (xml_is(c, "EncodingType")) {
			xml_text(c, num, sizeof(num));
			url = strcmp(num, "url") == 0;
		} else if (xml_is(c, "IsTruncated")) {
			xml_text(c, num, sizeof(num));
			*truncated = strcmp(num, "true") == 0;
		} else if (xml_is(c, "NextContinuationToken")) {
			xmlChar *t = xmlNodeGetContent(c);
			size_t n = t != NULL ? strlen((const char *)t) : 0;
			if (n >= token_size) {
				rc = coffer_err_set(err, COFFER_EPROTO,
				    "s3 continuation token of %zu "
				    "bytes is longer than %zu",
				    n, token_size - 1);
			} else {
				snprintf(token, token_size, "%s", t != NULL ? (const char *)t : "");
			}
			xmlFree(t);
		}
	}
	for (xmlNode *c = root->children; c != NULL && rc == 0; c = c->next) {
		if (!xml_is(c, "Contents")) {
			continue;
		}
		key[0] = '\0';
		num[0] = '\0';
		when[0] = '\0';
		bool have_key = false;
		for (xmlNode *f = c->children; f != NULL; f = f->next) {
			if (xml_is(f, "Key")) {
				xmlChar *t = xmlNodeGetContent(f);
				size_t n = t != NULL ? strlen((const char *)t) : 0;
				if (n < sizeof(key)) {
					memcpy(key, t != NULL ? (const char *)t : "", n + 1);
					have_key = true;
				} else {
					rc = coffer_err_set(err, COFFER_EPROTO,
					    "s3 list response has a key "
					    "of %zu bytes",
					    n);
				}
				xmlFree(t);
			} else if (xml_is(f, "Size")) {
				xml_text(f, num, sizeof(num));
			} else if (xml_is(f, "LastModified")) {
				xml_text(f, when, sizeof(when));
			}
		}
		if (rc != 0) {
			break;
		}
		if (url && have_key && !url_decode(key)) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 list response has a badly "
			    "url-encoded key \"%.200s\"",
			    key);
			break;
		}
		if (!have_key || key[0] == '\0') {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 list response has an entry "
			    "without a key");
			break;
		}
		char *end = NULL;
		errno = 0;
		unsigned long long size = strtoull(num, &end, 10);
		if (num[0] == '\0' || *end != '\0' || errno != 0) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 list response gives object "
			    "%.200s the size \"%.30s\"",
			    key, num);
			break;
		}
		rc = cb(key, (uint64_t)size, iso_ms(when), arg);
	}
	if (rc == 0 && *truncated && (token_size == 0 || token[0] == '\0')) {
		rc = coffer_err_set(err, COFFER_EPROTO,
		    "s3 list response is truncated but has "
		    "no NextContinuationToken");
	}
	xmlFreeDoc(doc);
	return (rc);
}

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

/* ---- requests ---- */

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
	struct sb body;
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

static void
req_header(struct s3_req *r, const char *name, const char *value)
{
	if (r->nheaders < S3_MAX_HEADERS) {
		r->headers[r->nheaders].name = name;
		r->headers[r->nheaders].value = value;
		r->nheaders++;
	}
}

static void
req_query(struct s3_req *r, const char *name, const char *value)
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
		rs->info.lock_until_ms = iso_ms(v);
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
	if (rs->body.len + len > rs->body_max) {
		/* Keep what fits; an over-long success body is reported later,
		 * an over-long error body is only ever shown truncated. */
		rs->body_over = true;
		size_t room = rs->body_max - rs->body.len;
		sb_putn(&rs->body, buf, room);
		return (len);
	}
	sb_putn(&rs->body, buf, len);
	return (rs->body.oom ? 0 : len);
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
req_target(const coffer_s3 *s3, const struct s3_req *r, struct sb *path, struct sb *host)
{
	sb_put(path, "/");
	if (s3->path_style) {
		sb_put(path, s3->bucket);
		if (r->key != NULL) {
			sb_put(path, "/");
		}
		sb_put(host, s3->host);
	} else {
		sb_put(host, s3->bucket);
		sb_put(host, ".");
		sb_put(host, s3->host);
	}
	if (r->key != NULL) {
		sb_put(path, r->key);
	}
	return (path->oom || host->oom ? COFFER_ENOMEM : 0);
}

/* One attempt. Returns 0 when an HTTP response arrived (any status), or a
 * curl error code (> 0) with a message in err; < 0 for local failures. */
static int
s3_once(coffer_s3 *s3, const struct s3_req *r, struct s3_resp *rs, const char *range,
    const char *if_match, coffer_err *err)
{
	struct sb path = { 0 };
	struct sb host = { 0 };
	struct sb url = { 0 };
	struct curl_slist *hl = NULL;
	CURL *c = NULL;
	int rc = req_target(s3, r, &path, &host);
	if (rc != 0) {
		sb_free(&path);
		sb_free(&host);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory building an s3 request"));
	}

	char payload_hex[65];
	char sum_b64[48];
	uint8_t d[32];
	if (r->body_sha256 != NULL) {
		memcpy(d, r->body_sha256, sizeof(d));
	} else {
		sha256(r->body != NULL ? (const void *)r->body : "", r->body_len, d);
	}
	hex32(d, payload_hex);
	base64(d, 32, sum_b64);
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
		.host = host.p,
		.path = path.p,
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

	sb_put(&url, s3->scheme);
	sb_put(&url, "://");
	sb_put(&url, host.p);
	sb_uri_encode(&url, path.p, true);
	/* The order of the query does not matter on the wire; the signature
	 * covers the sorted form. */
	for (size_t i = 0; i < r->nquery; i++) {
		sb_put(&url, i == 0 ? "?" : "&");
		sb_uri_encode(&url, r->query[i].name, false);
		sb_put(&url, "=");
		sb_uri_encode(&url, r->query[i].value != NULL ? r->query[i].value : "", false);
	}
	struct sb line = { 0 };
	sb_printf(&line, "Host: %s", host.p);
	hl = curl_slist_append(hl, line.p != NULL ? line.p : "");
	for (size_t i = 0; i < nh; i++) {
		line.len = 0;
		sb_put(&line, h[i].name);
		sb_put(&line, ": ");
		sb_put(&line, h[i].value);
		hl = curl_slist_append(hl, line.p != NULL ? line.p : "");
	}
	line.len = 0;
	sb_put(&line, "Authorization: ");
	sb_put(&line, auth);
	hl = curl_slist_append(hl, line.p != NULL ? line.p : "");
	if (line.p != NULL) {
		OPENSSL_cleanse(line.p, line.cap);
	}
	sb_free(&line);
	/* No "Expect: 100-continue" round trip, no default Content-Type or
	 * Accept: nothing unsigned that a proxy could trip over. */
	hl = curl_slist_append(hl, "Expect:");
	hl = curl_slist_append(hl, "Accept:");
	if (r->body_len > 0 || strcmp(r->method, "POST") == 0) {
		hl = curl_slist_append(hl, "Content-Type:");
	}
	if (url.oom || hl == NULL) {
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
	curl_easy_setopt(c, CURLOPT_URL, url.p);
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
	if (cc != CURLE_OK) {
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
	sb_free(&url);
	sb_free(&path);
	sb_free(&host);
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

static void
resp_init(struct s3_resp *rs, const struct s3_req *r)
{
	memset(rs, 0, sizeof(*rs));
	rs->req = r;
	rs->body_max =
	    (r->flags & (REQ_CAPTURE | REQ_ERROR_IN_200)) != 0 ? S3_BODY_MAX : S3_ERR_BODY_MAX;
}

static void
resp_fini(struct s3_resp *rs)
{
	sb_free(&rs->body);
}

/* Runs a request with retries. 0 with rs->status 2xx, or an error in err.
 * A streamed GET that breaks after delivering bytes resumes from there. */
static int
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
		sb_free(&rs->body);
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
		if (ok && (r->flags & REQ_ERROR_IN_200) != 0 &&
		    coffer_s3_error_parse(
		        rs->body.p, rs->body.len, code, sizeof(code), msg, sizeof(msg)) == 1) {
			ok = false;
		} else if (!ok) {
			coffer_s3_error_parse(
			    rs->body.p, rs->body.len, code, sizeof(code), msg, sizeof(msg));
		}
		if (ok) {
			if (rs->body_over) {
				return (coffer_err_set(err, COFFER_ETOOBIG,
				    "s3 %s response is over %u "
				    "bytes",
				    r->op, S3_BODY_MAX));
			}
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

/* ---- object calls ---- */

int
coffer_s3_head(coffer_s3 *s3, const char *key, const char *version_id, coffer_s3_object_info *info,
    coffer_err *err)
{
	struct s3_req r = { .op = "HEAD", .method = "HEAD", .key = key };
	if (version_id != NULL && version_id[0] != '\0') {
		req_query(&r, "versionId", version_id);
	}
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	if (rc == 0 && info != NULL) {
		*info = rs.info;
		info->size = rs.content_length;
	}
	resp_fini(&rs);
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
		req_query(&r, "versionId", version_id);
	}
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	if (rc == 0) {
		rc = coffer_filter_finish(chain, err);
	}
	if (rc == 0 && info != NULL) {
		*info = rs.info;
		info->size = rs.delivered;
	}
	resp_fini(&rs);
	return (rc);
}

int
coffer_s3_delete(coffer_s3 *s3, const char *key, const char *version_id, coffer_err *err)
{
	struct s3_req r = { .op = "DELETE", .method = "DELETE", .key = key };
	if (version_id != NULL && version_id[0] != '\0') {
		req_query(&r, "versionId", version_id);
	}
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	resp_fini(&rs);
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
		req_query(&r, "list-type", "2");
		/* Keys with bytes XML cannot carry come back %-encoded, not as a
		 * page that fails to parse. */
		req_query(&r, "encoding-type", "url");
		req_query(&r, "max-keys", max);
		if (prefix != NULL && prefix[0] != '\0') {
			req_query(&r, "prefix", prefix);
		}
		if (token[0] != '\0') {
			req_query(&r, "continuation-token", token);
		}
		struct s3_resp rs;
		resp_init(&rs, &r);
		int rc = s3_do(s3, &r, &rs, err);
		int truncated = 0;
		if (rc == 0) {
			rc = coffer_s3_list_parse(
			    rs.body.p, rs.body.len, cb, arg, &truncated, next, sizeof(next), err);
		}
		resp_fini(&rs);
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
	struct sb body = { 0 };
	if (strcmp(s3->region, "us-east-1") != 0) {
		sb_printf(&body,
		    "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
		    "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
		    "</CreateBucketConfiguration>",
		    s3->region);
		r.body = (const uint8_t *)body.p;
		r.body_len = body.len;
	}
	if (object_lock) {
		req_header(&r, "x-amz-bucket-object-lock-enabled", "true");
	}
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	resp_fini(&rs);
	sb_free(&body);
	return (rc);
}

int
coffer_s3_bucket_policy_put(coffer_s3 *s3, const char *json, coffer_err *err)
{
	struct s3_req r = { .op = "PutBucketPolicy",
		.method = "PUT",
		.body = (const uint8_t *)json,
		.body_len = strlen(json) };
	req_query(&r, "policy", "");
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(s3, &r, &rs, err);
	resp_fini(&rs);
	return (rc);
}

static void
iso_format(int64_t ms, char out[32])
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
	base64(d, 16, out);
}

static int
lock_mode_check(const char *mode, coffer_err *err)
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
	int rc = lock_mode_check(mode, err);
	if (rc != 0) {
		return (rc);
	}
	char until[32];
	iso_format(until_ms, until);
	struct sb body = { 0 };
	sb_printf(&body,
	    "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
	    "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
	    mode, until);
	if (body.oom) {
		sb_free(&body);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	struct s3_req r = { .op = "PutObjectRetention",
		.method = "PUT",
		.key = key,
		.body = (const uint8_t *)body.p,
		.body_len = body.len };
	req_query(&r, "retention", "");
	if (version_id != NULL && version_id[0] != '\0') {
		req_query(&r, "versionId", version_id);
	}
	/* Object lock calls need Content-MD5 (or a checksum) on AWS. */
	char md5[32];
	content_md5(body.p, body.len, md5);
	req_header(&r, "content-md5", md5);
	struct s3_resp rs;
	resp_init(&rs, &r);
	rc = s3_do(s3, &r, &rs, err);
	resp_fini(&rs);
	sb_free(&body);
	return (rc);
}

int
coffer_s3_object_lock_get(coffer_s3 *s3, coffer_s3_lock_config *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	struct s3_req r = {
		.op = "GetObjectLockConfiguration", .method = "GET", .flags = REQ_CAPTURE
	};
	req_query(&r, "object-lock", "");
	struct s3_resp rs;
	resp_init(&rs, &r);
	coffer_err e = { 0 };
	int rc = s3_do(s3, &r, &rs, &e);
	if (rc == COFFER_ENOENT ||
	    (rc != 0 && strstr(e.msg, "ObjectLockConfigurationNotFound") != NULL)) {
		resp_fini(&rs);
		return (0); /* no configuration: object lock is off */
	}
	if (rc != 0) {
		resp_fini(&rs);
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
	xmlDoc *doc = xml_read(rs.body.p, rs.body.len);
	xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
	if (root == NULL || !xml_is(root, "ObjectLockConfiguration")) {
		xmlFreeDoc(doc);
		resp_fini(&rs);
		return (coffer_err_set(err, COFFER_EPROTO,
		    "s3 object lock configuration of bucket "
		    "%s is not an ObjectLockConfiguration document",
		    s3->bucket));
	}
	char t[32];
	for (xmlNode *c = root->children; c != NULL; c = c->next) {
		if (xml_is(c, "ObjectLockEnabled")) {
			xml_text(c, t, sizeof(t));
			out->enabled = strcmp(t, "Enabled") == 0;
		} else if (xml_is(c, "Rule")) {
			for (xmlNode *dr = c->children; dr != NULL; dr = dr->next) {
				if (!xml_is(dr, "DefaultRetention")) {
					continue;
				}
				for (xmlNode *f = dr->children; f != NULL; f = f->next) {
					xml_text(f, t, sizeof(t));
					if (xml_is(f, "Mode")) {
						snprintf(out->mode, sizeof(out->mode), "%.15s", t);
					} else if (xml_is(f, "Days")) {
						out->days = (unsigned)strtoul(t, NULL, 10);
					} else if (xml_is(f, "Years")) {
						out->years = (unsigned)strtoul(t, NULL, 10);
					}
				}
			}
		}
	}
	xmlFreeDoc(doc);
	resp_fini(&rs);
	return (0);
}

/* ---- uploads ---- */

enum up_state {
	UP_OPEN,
	UP_COMMITTED,
	UP_ABORTED
};

struct up_part {
	char etag[COFFER_S3_ETAG_MAX];
	char sum[48];
};

struct coffer_s3_upload {
	coffer_s3 *s3;
	char *key;
	char lock_mode[16];
	int64_t lock_until_ms;
	int legal_hold;
	int overwrite;
	uint8_t *buf;
	size_t used;
	char *upload_id;
	struct up_part *parts;
	unsigned nparts;
	unsigned cap;
	enum up_state state;
	bool failed;
};

/* Headers every new object carries: its lock, and ownership for the
 * bucket's owner. S3 makes the writer the owner of an object; an agent (or
 * the coordinator's DR user) writes into a bucket another account owns, and
 * without bucket-owner-full-control that owner -- the coordinator's
 * retention, the DR account -- could not read or manage it. */
static void
up_lock_headers(const coffer_s3_upload *up, struct s3_req *r, char until[32])
{
	req_header(r, "x-amz-acl", "bucket-owner-full-control");
	if (up->lock_mode[0] != '\0') {
		iso_format(up->lock_until_ms, until);
		req_header(r, "x-amz-object-lock-mode", up->lock_mode);
		req_header(r, "x-amz-object-lock-retain-until-date", until);
	}
	if (up->legal_hold) {
		req_header(r, "x-amz-object-lock-legal-hold", "ON");
	}
}

/* HEAD before publishing: 1 if the key exists, 0 if not or if these
 * credentials may not look (write-only), < 0 on other errors. */
static int
up_exists(coffer_s3_upload *up, coffer_err *err)
{
	coffer_err e = { 0 };
	int rc = coffer_s3_head(up->s3, up->key, NULL, NULL, &e);
	if (rc == 0) {
		coffer_err_set(err, COFFER_EEXIST, "s3 object %.300s exists already", up->key);
		coffer_err_hint(err, "repository objects are never replaced; pick a new key");
		return (1);
	}
	if (rc == COFFER_ENOENT || rc == COFFER_EPERM) {
		return (0);
	}
	if (err != NULL) {
		*err = e;
	}
	return (rc);
}

int
coffer_s3_upload_begin(coffer_s3 *s3, const char *key, const coffer_s3_put_opts *opts,
    coffer_s3_upload **out, coffer_err *err)
{
	*out = NULL;
	if (key == NULL || key[0] == '\0' || strlen(key) > 1024) {
		return (coffer_err_set(err, COFFER_EINVAL, "s3 object key must be 1..1024 bytes"));
	}
	if (opts != NULL && opts->lock_mode != NULL) {
		int rc = lock_mode_check(opts->lock_mode, err);
		if (rc != 0) {
			return (rc);
		}
		if (opts->lock_until_ms <= 0) {
			coffer_err_set(err, COFFER_EINVAL,
			    "object lock mode %s without a retain-until "
			    "date",
			    opts->lock_mode);
			coffer_err_hint(err, "give both, or neither");
			return (COFFER_EINVAL);
		}
	}
	coffer_s3_upload *up = calloc(1, sizeof(*up));
	if (up == NULL || (up->key = strdup(key)) == NULL) {
		free(up);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory writing %s", key));
	}
	up->s3 = s3;
	if (opts != NULL) {
		if (opts->lock_mode != NULL) {
			snprintf(up->lock_mode, sizeof(up->lock_mode), "%s", opts->lock_mode);
			up->lock_until_ms = opts->lock_until_ms;
		}
		up->legal_hold = opts->legal_hold;
		up->overwrite = opts->overwrite;
	}
	up->state = UP_OPEN;
	if (!up->overwrite) {
		int rc = up_exists(up, err);
		if (rc != 0) {
			coffer_s3_upload_free(up);
			return (rc > 0 ? COFFER_EEXIST : rc);
		}
	}
	*out = up;
	return (0);
}

static int
up_create(coffer_s3_upload *up, coffer_err *err)
{
	struct s3_req r = { .op = "CreateMultipartUpload",
		.method = "POST",
		.key = up->key,
		.flags = REQ_CAPTURE };
	req_query(&r, "uploads", "");
	req_header(&r, "x-amz-checksum-algorithm", "SHA256");
	char until[32];
	up_lock_headers(up, &r, until);
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == 0) {
		xmlDoc *doc = xml_read(rs.body.p, rs.body.len);
		xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
		char id[1024] = "";
		for (xmlNode *c = root != NULL ? root->children : NULL; c != NULL; c = c->next) {
			if (xml_is(c, "UploadId")) {
				xml_text(c, id, sizeof(id));
			}
		}
		xmlFreeDoc(doc);
		if (id[0] == '\0') {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 CreateMultipartUpload %.300s: the "
			    "response has no UploadId",
			    up->key);
		} else if ((up->upload_id = strdup(id)) == NULL) {
			rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		}
	}
	resp_fini(&rs);
	return (rc);
}

static int
up_part(coffer_s3_upload *up, coffer_err *err)
{
	if (up->upload_id == NULL) {
		int rc = up_create(up, err);
		if (rc != 0) {
			return (rc);
		}
	}
	if (up->nparts >= COFFER_S3_MAX_PARTS) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "s3 object %.300s needs more than %d parts of "
		    "%zu bytes",
		    up->key, COFFER_S3_MAX_PARTS, up->s3->part_size);
		coffer_err_hint(err, "raise the repository's part size");
		return (COFFER_ETOOBIG);
	}
	if (up->nparts == up->cap) {
		unsigned cap = up->cap == 0 ? 16 : up->cap * 2;
		struct up_part *p = realloc(up->parts, cap * sizeof(*p));
		if (p == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
		}
		up->parts = p;
		up->cap = cap;
	}
	char num[16];
	snprintf(num, sizeof(num), "%u", up->nparts + 1);
	uint8_t d[32];
	sha256(up->buf, up->used, d);
	struct s3_req r = { .op = "UploadPart",
		.method = "PUT",
		.key = up->key,
		.body = up->buf,
		.body_len = up->used,
		.body_sha256 = d,
		.flags = REQ_CHECKSUM };
	req_query(&r, "partNumber", num);
	req_query(&r, "uploadId", up->upload_id);
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == 0 && rs.info.etag[0] == '\0') {
		rc = coffer_err_set(err, COFFER_EPROTO,
		    "s3 UploadPart %.300s: no ETag in the "
		    "response",
		    up->key);
	}
	if (rc == 0) {
		struct up_part *p = &up->parts[up->nparts++];
		snprintf(p->etag, sizeof(p->etag), "%s", rs.info.etag);
		base64(d, 32, p->sum);
		up->used = 0;
	}
	resp_fini(&rs);
	return (rc);
}

int
coffer_s3_upload_write(coffer_s3_upload *up, const uint8_t *buf, size_t len, coffer_err *err)
{
	if (up->state != UP_OPEN || up->failed) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "write to s3 object %.300s after it "
		    "was %s",
		    up->key, up->failed ? "failed" : "closed"));
	}
	size_t part = up->s3->part_size;
	if (up->buf == NULL && len > 0) {
		up->buf = malloc(part);
		if (up->buf == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM,
			    "out of memory for an s3 part of "
			    "%zu bytes",
			    part));
		}
	}
	while (len > 0) {
		size_t n = part - up->used;
		n = n < len ? n : len;
		memcpy(up->buf + up->used, buf, n);
		up->used += n;
		buf += n;
		len -= n;
		if (up->used == part) {
			int rc = up_part(up, err);
			if (rc != 0) {
				up->failed = true;
				return (rc);
			}
		}
	}
	return (0);
}

static int
up_put_single(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err)
{
	struct s3_req r = { .op = "PUT",
		.method = "PUT",
		.key = up->key,
		.body = up->buf,
		.body_len = up->used,
		.flags = REQ_CHECKSUM };
	req_header(&r, "x-amz-sdk-checksum-algorithm", "SHA256");
	if (!up->overwrite) {
		req_header(&r, "if-none-match", "*");
	}
	char until[32];
	up_lock_headers(up, &r, until);
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == COFFER_EEXIST) {
		coffer_err_set(err, COFFER_EEXIST, "s3 object %.300s exists already", up->key);
		coffer_err_hint(err, "repository objects are never replaced; pick a new key");
	}
	if (rc == 0 && info != NULL) {
		*info = rs.info;
		info->size = up->used;
	}
	resp_fini(&rs);
	return (rc);
}

static int
up_complete(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err)
{
	struct sb body = { 0 };
	sb_put(
	    &body, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
	for (unsigned i = 0; i < up->nparts; i++) {
		sb_printf(&body, "<Part><PartNumber>%u</PartNumber><ETag>", i + 1);
		sb_xml_escape(&body, up->parts[i].etag);
		sb_put(&body, "</ETag><ChecksumSHA256>");
		sb_put(&body, up->parts[i].sum);
		sb_put(&body, "</ChecksumSHA256></Part>");
	}
	sb_put(&body, "</CompleteMultipartUpload>");
	if (body.oom) {
		sb_free(&body);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	struct s3_req r = { .op = "CompleteMultipartUpload",
		.method = "POST",
		.key = up->key,
		.body = (const uint8_t *)body.p,
		.body_len = body.len,
		.flags = REQ_ERROR_IN_200 };
	req_query(&r, "uploadId", up->upload_id);
	struct s3_resp rs;
	resp_init(&rs, &r);
	int rc = s3_do(up->s3, &r, &rs, err);
	if (rc == 0) {
		xmlDoc *doc = xml_read(rs.body.p, rs.body.len);
		xmlNode *root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
		if (root == NULL || !xml_is(root, "CompleteMultipartUploadResult")) {
			rc = coffer_err_set(err, COFFER_EPROTO,
			    "s3 CompleteMultipartUpload %.300s: "
			    "the response is not a CompleteMultipartUploadResult",
			    up->key);
		}
		for (xmlNode *c = root != NULL ? root->children : NULL; c != NULL; c = c->next) {
			if (xml_is(c, "ETag")) {
				xml_text(c, rs.info.etag, sizeof(rs.info.etag));
			}
		}
		xmlFreeDoc(doc);
	}
	if (rc == 0 && info != NULL) {
		*info = rs.info;
	}
	resp_fini(&rs);
	sb_free(&body);
	return (rc);
}

int
coffer_s3_upload_commit(coffer_s3_upload *up, coffer_s3_object_info *info, coffer_err *err)
{
	if (up->state != UP_OPEN) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "s3 object %.300s was already %s",
		    up->key, up->state == UP_COMMITTED ? "committed" : "aborted"));
	}
	if (up->failed) {
		coffer_s3_upload_abort(up);
		coffer_err_set(err, COFFER_EIO,
		    "s3 object %.300s is not published: an earlier "
		    "write to it failed",
		    up->key);
		coffer_err_hint(err, "see the earlier error; the write must start again");
		return (COFFER_EIO);
	}
	coffer_s3_object_info tmp;
	memset(&tmp, 0, sizeof(tmp));
	int rc;
	if (up->upload_id == NULL) {
		rc = up_put_single(up, &tmp, err);
	} else {
		uint64_t total = (uint64_t)up->nparts * up->s3->part_size + up->used;
		rc = up->used > 0 ? up_part(up, err) : 0;
		if (rc == 0 && !up->overwrite) {
			int ex = up_exists(up, err);
			rc = ex > 0 ? COFFER_EEXIST : ex;
		}
		if (rc == 0) {
			rc = up_complete(up, &tmp, err);
		}
		tmp.size = total;
		/* Some stores (radosgw before Squid) ignore lock headers on
		 * CreateMultipartUpload; setting the retention again is harmless
		 * where they were honoured. */
		if (rc == 0 && up->lock_mode[0] != '\0') {
			up->state = UP_COMMITTED;
			free(up->buf);
			up->buf = NULL;
			if (info != NULL) {
				*info = tmp;
			}
			rc = coffer_s3_put_retention(
			    up->s3, up->key, tmp.version_id, up->lock_mode, up->lock_until_ms, err);
			if (rc != 0) {
				coffer_err_wrap(
				    err, "s3 object %.300s is published but not locked", up->key);
			}
			return (rc);
		}
	}
	if (rc != 0) {
		up->failed = true;
		coffer_s3_upload_abort(up);
		return (rc);
	}
	up->state = UP_COMMITTED;
	free(up->buf);
	up->buf = NULL;
	if (info != NULL) {
		*info = tmp;
	}
	return (0);
}

void
coffer_s3_upload_abort(coffer_s3_upload *up)
{
	if (up == NULL || up->state != UP_OPEN) {
		return;
	}
	up->state = UP_ABORTED;
	if (up->upload_id != NULL) {
		struct s3_req r = {
			.op = "AbortMultipartUpload", .method = "DELETE", .key = up->key
		};
		req_query(&r, "uploadId", up->upload_id);
		struct s3_resp rs;
		resp_init(&rs, &r);
		coffer_err e = { 0 };
		if (s3_do(up->s3, &r, &rs, &e) != 0 && rs.status != 404) {
			/* The parts stay billed until a lifecycle rule aborts them;
			 * they are never visible as an object. */
			coffer_log_warn("s3 multipart upload not aborted", "key=%s", up->key);
		}
		resp_fini(&rs);
	}
	free(up->buf);
	up->buf = NULL;
}

void
coffer_s3_upload_free(coffer_s3_upload *up)
{
	if (up == NULL) {
		return;
	}
	coffer_s3_upload_abort(up);
	free(up->buf);
	free(up->parts);
	free(up->upload_id);
	free(up->key);
	free(up);
}

unsigned
coffer_s3_upload_parts(const coffer_s3_upload *up)
{
	return (up->nparts);
}

size_t
coffer_s3_upload_memory(const coffer_s3_upload *up)
{
	return (up->buf != NULL ? up->s3->part_size : 0);
}
