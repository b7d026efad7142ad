/* S3 client: SigV4 against the AWS documentation's published examples,
 * canonical requests, XML parsing of list and error bodies, error mapping,
 * configuration errors, and, against a small fault-injecting HTTP server on
 * loopback (a real socket, scripted answers for what radosgw never does):
 * retries on 503 SlowDown, a 200 CompleteMultipartUpload whose body is an
 * <Error>, a connection dropped mid-part, a part refused with BadDigest,
 * session tokens, a GET that loses its connection mid-body and resumes, bounded
 * memory and per-part checksums of multipart uploads, and an endpoint that
 * refuses connections. The real-server tests are tests/integration/s3.sh. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <cmocka.h>

#include "common/repo/s3.h"
#include "common/stream/digest.h"
#include "tests/harness/s3_server_short.h"

#define EMPTY_SHA  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define DOC_AKID   "AKIAIOSFODNN7EXAMPLE"
#define DOC_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

/* ---- SigV4: the examples of "Signature Calculations for the Authorization
 * Header: Transferring Payload in a Single Chunk (AWS Signature Version 4)",
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
 * (bucket examplebucket, us-east-1, 20130524T000000Z). ---- */

static void
test_sigv4_get_object(void **state)
{
	(void)state;
	coffer_s3_kv h[] = {
		{ "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", EMPTY_SHA },
		{ "x-amz-date", "20130524T000000Z" },
	};
	coffer_s3_sign_input in = {
		.method = "GET",
		.host = "examplebucket.s3.amazonaws.com",
		.path = "/test.txt",
		.headers = h,
		.nheaders = 3,
		.payload_hash = EMPTY_SHA,
		.amz_date = "20130524T000000Z",
		.region = "us-east-1",
		.access_key = DOC_AKID,
		.secret_key = DOC_SECRET,
	};
	char cr[1024];
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_canonical_request(&in, cr, sizeof(cr), &err), 0);
	assert_string_equal(cr,
	    "GET\n/test.txt\n\n"
	    "host:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
	    "x-amz-content-sha256:" EMPTY_SHA "\nx-amz-date:20130524T000000Z\n\n"
	    "host;range;x-amz-content-sha256;x-amz-date\n" EMPTY_SHA);
	uint8_t d[32];
	char hex[65];
	unsigned n = 32;
	EVP_Digest(cr, strlen(cr), d, &n, EVP_sha256(), NULL);
	coffer_hex_encode(d, 32, hex);
	assert_string_equal(
	    hex, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	char auth[512], sig[65];
	assert_int_equal(coffer_s3_sign(&in, auth, sizeof(auth), sig, &err), 0);
	assert_string_equal(
	    sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	assert_string_equal(auth,
	    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/"
	    "us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
	    "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	/* A wrong secret must give another signature. */
	in.secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEZ";
	assert_int_equal(coffer_s3_sign(&in, auth, sizeof(auth), sig, &err), 0);
	assert_string_not_equal(
	    sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void
test_sigv4_list_objects(void **state)
{
	/* Same page, "GET Bucket (List Objects)": query parameters given out of
	 * order are sorted in the canonical request. */
	(void)state;
	coffer_s3_kv q[] = { { "prefix", "J" }, { "max-keys", "2" } };
	coffer_s3_kv h[] = {
		{ "x-amz-content-sha256", EMPTY_SHA },
		{ "x-amz-date", "20130524T000000Z" },
	};
	coffer_s3_sign_input in = {
		.method = "GET",
		.host = "examplebucket.s3.amazonaws.com",
		.path = "/",
		.query = q,
		.nquery = 2,
		.headers = h,
		.nheaders = 2,
		.payload_hash = EMPTY_SHA,
		.amz_date = "20130524T000000Z",
		.region = "us-east-1",
		.access_key = DOC_AKID,
		.secret_key = DOC_SECRET,
	};
	char cr[1024], auth[512], sig[65];
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_canonical_request(&in, cr, sizeof(cr), &err), 0);
	assert_non_null(strstr(cr, "GET\n/\nmax-keys=2&prefix=J\n"));
	assert_int_equal(coffer_s3_sign(&in, auth, sizeof(auth), sig, &err), 0);
	assert_string_equal(
	    sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void
test_sigv4_get_lifecycle(void **state)
{
	/* Same page, "GET Bucket Lifecycle": a value-less subresource is "k=". */
	(void)state;
	coffer_s3_kv q[] = { { "lifecycle", "" } };
	coffer_s3_kv h[] = {
		{ "x-amz-content-sha256", EMPTY_SHA },
		{ "x-amz-date", "20130524T000000Z" },
	};
	coffer_s3_sign_input in = {
		.method = "GET",
		.host = "examplebucket.s3.amazonaws.com",
		.path = "/",
		.query = q,
		.nquery = 1,
		.headers = h,
		.nheaders = 2,
		.payload_hash = EMPTY_SHA,
		.amz_date = "20130524T000000Z",
		.region = "us-east-1",
		.access_key = DOC_AKID,
		.secret_key = DOC_SECRET,
	};
	char auth[512], sig[65];
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_sign(&in, auth, sizeof(auth), sig, &err), 0);
	assert_string_equal(
	    sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void
test_sigv4_put_object(void **state)
{
	/* Same page, "PUT Object": '$' in the key is encoded, a Date header is
	 * signed alongside the x-amz-* ones. */
	(void)state;
	const char *body_sha = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
	coffer_s3_kv h[] = {
		{ "Date", "Fri, 24 May 2013 00:00:00 GMT" },
		{ "x-amz-date", "20130524T000000Z" },
		{ "x-amz-storage-class", "REDUCED_REDUNDANCY" },
		{ "x-amz-content-sha256", body_sha },
	};
	coffer_s3_sign_input in = {
		.method = "PUT",
		.host = "examplebucket.s3.amazonaws.com",
		.path = "/test$file.text",
		.headers = h,
		.nheaders = 4,
		.payload_hash = body_sha,
		.amz_date = "20130524T000000Z",
		.region = "us-east-1",
		.access_key = DOC_AKID,
		.secret_key = DOC_SECRET,
	};
	char cr[1024], auth[512], sig[65];
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_canonical_request(&in, cr, sizeof(cr), &err), 0);
	assert_non_null(strstr(cr, "PUT\n/test%24file.text\n\n"));
	assert_int_equal(coffer_s3_sign(&in, auth, sizeof(auth), sig, &err), 0);
	assert_string_equal(
	    sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void
test_canonical_details(void **state)
{
	(void)state;
	coffer_s3_kv q[] = { { "uploadId", "a b+c/d" }, { "partNumber", "10" } };
	coffer_s3_kv h[] = {
		{ "X-Amz-Meta-Note", "  two   spaces\tand tab  " },
		{ "x-amz-date", "20260101T000000Z" },
	};
	coffer_s3_sign_input in = {
		.method = "PUT",
		.host = "127.0.0.1:7480",
		.path = "/bucket/a dir/ü~x",
		.query = q,
		.nquery = 2,
		.headers = h,
		.nheaders = 2,
		.payload_hash = "UNSIGNED-PAYLOAD",
		.amz_date = "20260101T000000Z",
		.region = "eu-west-1",
		.access_key = "AK",
		.secret_key = "SK",
	};
	char cr[1024];
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_canonical_request(&in, cr, sizeof(cr), &err), 0);
	assert_string_equal(cr,
	    "PUT\n/bucket/a%20dir/%C3%BC~x\n"
	    "partNumber=10&uploadId=a%20b%2Bc%2Fd\n"
	    "host:127.0.0.1:7480\nx-amz-date:20260101T000000Z\nx-amz-meta-note:two spaces and tab\n\n"
	    "host;x-amz-date;x-amz-meta-note\nUNSIGNED-PAYLOAD");
	char tiny[16];
	assert_int_equal(
	    coffer_s3_canonical_request(&in, tiny, sizeof(tiny), &err), COFFER_ETOOBIG);
	char auth[512];
	in.amz_date = "2026";
	assert_int_equal(coffer_s3_sign(&in, auth, sizeof(auth), NULL, &err), COFFER_EINTERNAL);
}

/* ---- XML ---- */

static void
test_error_parse(void **state)
{
	(void)state;
	char code[64], msg[256];
	const char *aws = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied"
	                  "</Code><Message>Access Denied</Message><RequestId>1</RequestId></Error>";
	assert_int_equal(
	    coffer_s3_error_parse(aws, strlen(aws), code, sizeof(code), msg, sizeof(msg)), 1);
	assert_string_equal(code, "AccessDenied");
	assert_string_equal(msg, "Access Denied");
	/* The 200-with-<Error> body of CompleteMultipartUpload, namespaced. */
	const char *ns =
	    "<Error xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n  <Code>"
	    "InternalError</Code>\n  <Message>We encountered an internal error. Please try "
	    "again.</Message>\n</Error>";
	assert_int_equal(
	    coffer_s3_error_parse(ns, strlen(ns), code, sizeof(code), msg, sizeof(msg)), 1);
	assert_string_equal(code, "InternalError");
	const char *ok = "<CompleteMultipartUploadResult><ETag>\"x-2\"</ETag>"
	                 "</CompleteMultipartUploadResult>";
	assert_int_equal(
	    coffer_s3_error_parse(ok, strlen(ok), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_int_equal(coffer_s3_error_parse("<Err", 4, code, sizeof(code), msg, sizeof(msg)), 0);
	assert_int_equal(coffer_s3_error_parse(NULL, 0, code, sizeof(code), msg, sizeof(msg)), 0);
	assert_string_equal(code, "");
	/* An external entity is never fetched or expanded. */
	const char *xxe = "<?xml version=\"1.0\"?><!DOCTYPE e [<!ENTITY x SYSTEM "
	                  "\"file:///etc/passwd\">]><Error><Code>&x;</Code></Error>";
	coffer_s3_error_parse(xxe, strlen(xxe), code, sizeof(code), msg, sizeof(msg));
	assert_null(strstr(code, "root:"));
}

struct seen {
	char keys[8][64];
	uint64_t sizes[8];
	int64_t mtimes[8];
	int n;
	int stop_at;
};

static int
seen_cb(const char *key, uint64_t size, int64_t mtime_ms, void *arg)
{
	struct seen *s = arg;
	if (s->n < 8) {
		snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
		s->sizes[s->n] = size;
		s->mtimes[s->n] = mtime_ms;
	}
	s->n++;
	return (s->stop_at != 0 && s->n == s->stop_at ? 1 : 0);
}

static void
test_list_parse(void **state)
{
	(void)state;
	const char *page =
	    "<?xml version=\"1.0\"?><ListBucketResult xmlns=\"http://s3.amazonaws"
	    ".com/doc/2006-03-01/\"><Name>b</Name><Prefix>p/</Prefix><KeyCount>2</KeyCount>"
	    "<MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>"
	    "<Contents><Key>p/a&amp;b</Key><LastModified>2026-11-24T10:00:00.000Z</LastModified>"
	    "<ETag>\"1\"</ETag><Size>3</Size></Contents>"
	    "<Contents><Key>p/c</Key><LastModified>2026-11-24T10:00:01.500Z</LastModified>"
	    "<Size>18446744073709551615</Size></Contents>"
	    "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
	    "</ListBucketResult>";
	struct seen s = { 0 };
	int truncated = 0;
	char token[128];
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_list_parse(page, strlen(page), seen_cb, &s, &truncated, token,
	                     sizeof(token), &err),
	    0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.keys[0], "p/a&b");
	assert_int_equal(s.sizes[0], 3);
	assert_int_equal(s.mtimes[1], 1795514401500LL);
	assert_true(s.sizes[1] == UINT64_MAX);
	assert_int_equal(truncated, 1);
	assert_string_equal(token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");

	/* A callback that stops early. */
	struct seen s2 = { .stop_at = 1 };
	assert_int_equal(coffer_s3_list_parse(page, strlen(page), seen_cb, &s2, &truncated, token,
	                     sizeof(token), &err),
	    1);
	assert_int_equal(s2.n, 1);

	/* A token that does not fit is refused, not cut. */
	char small[8];
	struct seen s3 = { 0 };
	assert_int_equal(coffer_s3_list_parse(page, strlen(page), seen_cb, &s3, &truncated, small,
	                     sizeof(small), &err),
	    COFFER_EPROTO);

	const char *no_token = "<ListBucketResult><IsTruncated>true</IsTruncated>"
	                       "</ListBucketResult>";
	assert_int_equal(coffer_s3_list_parse(no_token, strlen(no_token), seen_cb, &s3, &truncated,
	                     token, sizeof(token), &err),
	    COFFER_EPROTO);
	assert_non_null(strstr(err.msg, "NextContinuationToken"));

	const char *bad_size = "<ListBucketResult><Contents><Key>k</Key><Size>-1x</Size>"
	                       "</Contents></ListBucketResult>";
	assert_int_equal(coffer_s3_list_parse(bad_size, strlen(bad_size), seen_cb, &s3, &truncated,
	                     token, sizeof(token), &err),
	    COFFER_EPROTO);
	const char *no_key = "<ListBucketResult><Contents><Size>1</Size></Contents>"
	                     "</ListBucketResult>";
	assert_int_equal(coffer_s3_list_parse(no_key, strlen(no_key), seen_cb, &s3, &truncated,
	                     token, sizeof(token), &err),
	    COFFER_EPROTO);
	const char *html = "<html><body>proxy login</body></html>";
	assert_int_equal(coffer_s3_list_parse(html, strlen(html), seen_cb, &s3, &truncated, token,
	                     sizeof(token), &err),
	    COFFER_EPROTO);
	assert_non_null(strstr(err.hint, "endpoint"));
	assert_int_equal(
	    coffer_s3_list_parse("", 0, seen_cb, &s3, &truncated, token, sizeof(token), &err),
	    COFFER_EPROTO);

	/* encoding-type=url: keys come back encoded, '+' standing for a space. */
	const char *enc = "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false"
	                  "</IsTruncated><Contents><Key>p/a%2Bb+c%0A</Key><Size>1</Size></Contents>"
	                  "</ListBucketResult>";
	struct seen s5 = { 0 };
	assert_int_equal(coffer_s3_list_parse(enc, strlen(enc), seen_cb, &s5, &truncated, token,
	                     sizeof(token), &err),
	    0);
	assert_string_equal(s5.keys[0], "p/a+b c\n");
	const char *bad_enc = "<ListBucketResult><EncodingType>url</EncodingType><Contents>"
	                      "<Key>p/%zz</Key><Size>1</Size></Contents></ListBucketResult>";
	assert_int_equal(coffer_s3_list_parse(bad_enc, strlen(bad_enc), seen_cb, &s5, &truncated,
	                     token, sizeof(token), &err),
	    COFFER_EPROTO);
	const char *nul_enc = "<ListBucketResult><EncodingType>url</EncodingType><Contents>"
	                      "<Key>p/%00</Key><Size>1</Size></Contents></ListBucketResult>";
	assert_int_equal(coffer_s3_list_parse(nul_enc, strlen(nul_enc), seen_cb, &s5, &truncated,
	                     token, sizeof(token), &err),
	    COFFER_EPROTO);

	/* A key longer than any S3 key is refused, never cut short. */
	char *huge = malloc(8000);
	int hn = snprintf(huge, 8000, "<ListBucketResult><Contents><Key>");
	memset(huge + hn, 'k', 4000);
	snprintf(huge + hn + 4000, 8000 - (size_t)hn - 4000,
	    "</Key><Size>1</Size></Contents>"
	    "</ListBucketResult>");
	struct seen s6 = { 0 };
	assert_int_equal(coffer_s3_list_parse(huge, strlen(huge), seen_cb, &s6, &truncated, token,
	                     sizeof(token), &err),
	    COFFER_EPROTO);
	assert_int_equal(s6.n, 0);
	free(huge);

	const char *last = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
	struct seen s4 = { 0 };
	assert_int_equal(coffer_s3_list_parse(last, strlen(last), seen_cb, &s4, &truncated, token,
	                     sizeof(token), &err),
	    0);
	assert_int_equal(truncated, 0);
	assert_int_equal(s4.n, 0);
}

static void
test_error_mapping(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	assert_int_equal(
	    coffer_s3_error_set(&err, "PUT", "k", 403, "AccessDenied", "Access Denied"),
	    COFFER_EPERM);
	assert_non_null(strstr(err.msg, "AccessDenied: Access Denied"));
	assert_non_null(strstr(err.hint, "bucket policy"));
	assert_int_equal(
	    coffer_s3_error_set(&err, "PUT", "k", 403, "SignatureDoesNotMatch", ""), COFFER_EAUTH);
	assert_non_null(strstr(err.hint, "clock"));
	assert_non_null(strstr(err.hint, "secret_key"));
	assert_int_equal(
	    coffer_s3_error_set(&err, "GET", NULL, 404, "NoSuchBucket", "x"), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "(bucket)"));
	assert_int_equal(
	    coffer_s3_error_set(&err, "GET", "k", 404, "NoSuchKey", NULL), COFFER_ENOENT);
	assert_int_equal(coffer_s3_error_set(&err, "HEAD", "k", 404, "", NULL), COFFER_ENOENT);
	assert_int_equal(coffer_s3_error_set(&err, "HEAD", "k", 403, NULL, NULL), COFFER_EPERM);
	assert_int_equal(
	    coffer_s3_error_set(&err, "PUT", "k", 503, "SlowDown", "Reduce"), COFFER_EUNAVAIL);
	assert_int_equal(
	    coffer_s3_error_set(&err, "PUT", "k", 500, "Weird", NULL), COFFER_EUNAVAIL);
	assert_int_equal(coffer_s3_error_set(&err, "PUT", "k", 412, NULL, NULL), COFFER_EEXIST);
	assert_int_equal(coffer_s3_error_set(&err, "PUT", "k", 400, "BadDigest", NULL), COFFER_EIO);
	assert_int_equal(
	    coffer_s3_error_set(&err, "PUT", "k", 400, "RequestTimeTooSkewed", NULL), COFFER_EAUTH);
	assert_non_null(strstr(err.hint, "NTP"));
}

static void
test_config_errors(void **state)
{
	(void)state;
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	coffer_s3_config cfg = {
		.endpoint = "http://127.0.0.1:1", .bucket = "backups", .path_style = 1
	};
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.hint, "AWS_ACCESS_KEY_ID"));
	assert_null(s3);
	/* The environment supplies credentials... */
	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	coffer_s3_free(s3);
	/* ...but a configured key id never borrows the environment's secret. */
	cfg.access_key = "AKCFG";
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
	cfg.secret_key = "SKCFG";
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");

	const char *bad_eps[] = { "ftp://x", "http://", "http://h/path", "h:80", "http://user@h",
		"http://h?x" };
	for (size_t i = 0; i < sizeof(bad_eps) / sizeof(bad_eps[0]); i++) {
		cfg.endpoint = bad_eps[i];
		assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "endpoint"));
	}
	cfg.endpoint = "https://s3.example.com/";
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	coffer_s3_free(s3);
	cfg.endpoint = NULL; /* AWS default for the region */
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	coffer_s3_free(s3);

	cfg.bucket = "B";
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
	cfg.bucket = "my.bucket";
	cfg.path_style = 0;
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.hint, "path_style"));
	cfg.path_style = 1;
	cfg.part_size = 1024;
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "part size"));
}

static coffer_s3 *
client_for(const struct server *sv, int attempts, size_t part)
{
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", sv->port);
	coffer_s3_config cfg = { .endpoint = ep,
		.bucket = "test-bucket",
		.access_key = "AK",
		.secret_key = "SK",
		.path_style = 1,
		.max_attempts = attempts,
		.backoff_base_ms = 1,
		.part_size = part };
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	return (s3);
}

static int
count_cb(const char *key, uint64_t size, int64_t mtime_ms, void *arg)
{
	(void)key;
	(void)size;
	(void)mtime_ms;
	(*(int *)arg)++;
	return (0);
}

static void
test_retry_slowdown(void **state)
{
	(void)state;
	struct server *sv = server_start(SC_SLOWDOWN);
	sv->slowdowns_left = 2;
	coffer_s3 *s3 = client_for(sv, 3, 0);
	coffer_err err = { 0 };
	int n = 0;
	assert_int_equal(coffer_s3_list(s3, "", 0, count_cb, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(sv->requests, 3);
	/* More throttling than attempts: the error names SlowDown. */
	sv->slowdowns_left = 10;
	sv->requests = 0;
	assert_int_equal(coffer_s3_list(s3, "", 0, count_cb, &n, &err), COFFER_EUNAVAIL);
	assert_int_equal(sv->requests, 3);
	assert_non_null(strstr(err.msg, "SlowDown"));
	assert_non_null(strstr(err.msg, "after 3 attempts"));
	assert_non_null(strstr(err.hint, "throttling"));
	coffer_s3_free(s3);
	server_stop(sv);
}

static void
test_complete_error_in_200(void **state)
{
	(void)state;
	struct server *sv = server_start(SC_COMPLETE_ERROR);
	coffer_s3 *s3 = client_for(sv, 2, COFFER_S3_PART_MIN);
	coffer_err err = { 0 };
	coffer_s3_upload *up = NULL;
	assert_int_equal(coffer_s3_upload_begin(s3, "k/data", NULL, &up, &err), 0);
	uint8_t *buf = calloc(1, COFFER_S3_PART_MIN + 10);
	assert_int_equal(coffer_s3_upload_write(up, buf, COFFER_S3_PART_MIN + 10, &err), 0);
	assert_int_equal(coffer_s3_upload_commit(up, NULL, &err), COFFER_EUNAVAIL);
	assert_non_null(strstr(err.msg, "InternalError"));
	/* The upload was aborted: the last request is its DELETE ?uploadId. */
	assert_non_null(strstr(sv->log[sv->nlog - 1], "DELETE"));
	assert_non_null(strstr(sv->log[sv->nlog - 1], "uploadId=UP-1"));
	int completes = 0;
	for (int i = 0; i < sv->nlog; i++) {
		completes +=
		    strncmp(sv->log[i], "POST", 4) == 0 && strstr(sv->log[i], "uploadId=") != NULL;
	}
	assert_int_equal(completes, 2); /* InternalError is retried */
	/* A second commit or abort does nothing more. */
	int before = sv->requests;
	assert_int_not_equal(coffer_s3_upload_commit(up, NULL, &err), 0);
	coffer_s3_upload_abort(up);
	assert_int_equal(sv->requests, before);
	assert_int_not_equal(coffer_s3_upload_write(up, buf, 1, &err), 0);
	coffer_s3_upload_free(up);
	free(buf);
	coffer_s3_free(s3);
	server_stop(sv);
}

static void
test_multipart_bounded(void **state)
{
	(void)state;
	struct server *sv = server_start(SC_MULTIPART);
	coffer_s3 *s3 = client_for(sv, 1, COFFER_S3_PART_MIN);
	coffer_err err = { 0 };
	coffer_s3_upload *up = NULL;
	assert_int_equal(coffer_s3_upload_begin(s3, "k/data", NULL, &up, &err), 0);
	assert_int_equal(coffer_s3_upload_memory(up), 0);
	size_t chunk = 777777;
	uint8_t *buf = malloc(chunk);
	for (size_t i = 0; i < chunk; i++) {
		buf[i] = (uint8_t)(i * 31);
	}
	size_t total = 0;
	while (total < 2 * COFFER_S3_PART_MIN + 12345) {
		assert_int_equal(coffer_s3_upload_write(up, buf, chunk, &err), 0);
		total += chunk;
		assert_true(coffer_s3_upload_memory(up) <= COFFER_S3_PART_MIN);
	}
	assert_int_equal(coffer_s3_upload_parts(up), 2);
	coffer_s3_object_info info;
	assert_int_equal(coffer_s3_upload_commit(up, &info, &err), 0);
	assert_int_equal(coffer_s3_upload_parts(up), 3);
	assert_int_equal(coffer_s3_upload_memory(up), 0);
	assert_int_equal(info.size, total);
	assert_string_equal(info.version_id, "V3");
	assert_string_equal(info.etag, "\"all-3\"");
	assert_int_equal(sv->part_puts, 3);
	assert_int_equal(sv->max_part, COFFER_S3_PART_MIN);
	assert_int_equal(sv->bad_checksums, 0);
	coffer_s3_upload_free(up);

	/* Lock options are checked before anything is sent. */
	coffer_s3_put_opts bad = { .lock_mode = "FOREVER", .lock_until_ms = 1 };
	assert_int_equal(coffer_s3_upload_begin(s3, "k/x", &bad, &up, &err), COFFER_EINVAL);
	coffer_s3_put_opts nodate = { .lock_mode = "COMPLIANCE" };
	assert_int_equal(coffer_s3_upload_begin(s3, "k/x", &nodate, &up, &err), COFFER_EINVAL);
	free(buf);
	coffer_s3_free(s3);
	server_stop(sv);
}

static void
test_part_faults(void **state)
{
	(void)state;
	struct server *sv = server_start(SC_MULTIPART);
	sv->drop_parts = 1;
	coffer_s3 *s3 = client_for(sv, 3, COFFER_S3_PART_MIN);
	coffer_err err = { 0 };
	uint8_t *buf = calloc(1, 2 * COFFER_S3_PART_MIN);
	/* A connection dropped during a part: retried, then published. */
	coffer_s3_upload *up = NULL;
	assert_int_equal(coffer_s3_upload_begin(s3, "k/data", NULL, &up, &err), 0);
	assert_int_equal(coffer_s3_upload_write(up, buf, 2 * COFFER_S3_PART_MIN, &err), 0);
	assert_int_equal(coffer_s3_upload_commit(up, NULL, &err), 0);
	assert_int_equal(sv->part_puts, 2);
	assert_int_equal(sv->drop_parts, 0);
	coffer_s3_upload_free(up);

	/* A checksum the store refuses: not retried, the upload fails and is
	 * aborted, and nothing is completed. */
	sv->baddigest_part = 2;
	sv->nlog = 0;
	assert_int_equal(coffer_s3_upload_begin(s3, "k/data2", NULL, &up, &err), 0);
	assert_int_equal(coffer_s3_upload_write(up, buf, 2 * COFFER_S3_PART_MIN, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "BadDigest"));
	assert_non_null(strstr(err.hint, "transit"));
	assert_int_equal(coffer_s3_upload_commit(up, NULL, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "not published"));
	int completes = 0, aborts = 0, bad_puts = 0;
	for (int i = 0; i < sv->nlog; i++) {
		completes +=
		    strncmp(sv->log[i], "POST", 4) == 0 && strstr(sv->log[i], "uploadId=") != NULL;
		aborts += strncmp(sv->log[i], "DELETE", 6) == 0;
		bad_puts += strstr(sv->log[i], "partNumber=2") != NULL;
	}
	assert_int_equal(completes, 0);
	assert_int_equal(aborts, 1);
	assert_int_equal(bad_puts, 1);
	coffer_s3_upload_free(up);
	free(buf);
	coffer_s3_free(s3);
	server_stop(sv);
}

static void
test_session_token(void **state)
{
	(void)state;
	struct server *sv = server_start(SC_SLOWDOWN);
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", sv->port);
	coffer_s3_config cfg = { .endpoint = ep,
		.bucket = "test-bucket",
		.access_key = "AK",
		.secret_key = "SK",
		.session_token = "TOKEN-1",
		.path_style = 1 };
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	int n = 0;
	assert_int_equal(coffer_s3_list(s3, "p/", 0, count_cb, &n, &err), 0);
	assert_int_equal(sv->saw_token, 1);
	coffer_s3_free(s3);
	/* From the environment too. */
	setenv("AWS_ACCESS_KEY_ID", "AKENV", 1);
	setenv("AWS_SECRET_ACCESS_KEY", "SKENV", 1);
	setenv("AWS_SESSION_TOKEN", "TOKEN-1", 1);
	cfg.access_key = NULL;
	cfg.secret_key = NULL;
	cfg.session_token = NULL;
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	assert_int_equal(coffer_s3_list(s3, "p/", 0, count_cb, &n, &err), 0);
	assert_int_equal(sv->saw_token, 2);
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	unsetenv("AWS_SESSION_TOKEN");
	coffer_s3_free(s3);
	server_stop(sv);
}

static void
test_get_resumes(void **state)
{
	(void)state;
	struct server *sv = server_start(SC_RESUME);
	coffer_s3 *s3 = client_for(sv, 3, 0);
	coffer_err err = { 0 };
	coffer_filter *sha = coffer_sha256_filter_new(&err);
	coffer_s3_object_info info;
	assert_int_equal(coffer_s3_get(s3, "k/data", NULL, sha, &info, &err), 0);
	uint8_t got[32], want[32];
	assert_int_equal(coffer_sha256_filter_digest(sha, got), 0);
	unsigned n = 32;
	EVP_Digest(sv->obj, OBJ_SIZE, want, &n, EVP_sha256(), NULL);
	assert_memory_equal(got, want, 32);
	assert_int_equal(info.size, OBJ_SIZE);
	assert_int_equal(sv->requests, 2);
	assert_string_equal(sv->range, "bytes=50000-");
	assert_string_equal(sv->if_match, "\"v1\"");
	coffer_filter_free(sha);

	/* Without retries the cut is an error, not a short object. */
	coffer_s3 *once = client_for(sv, 1, 0);
	sha = coffer_sha256_filter_new(&err);
	assert_int_equal(coffer_s3_get(once, "k/data", NULL, sha, NULL, &err), COFFER_EUNAVAIL);
	coffer_filter_free(sha);
	coffer_s3_free(once);
	coffer_s3_free(s3);
	server_stop(sv);
}

static void
test_unreachable(void **state)
{
	(void)state;
	/* A port nobody listens on: bind one, note it, close it. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	socklen_t al = sizeof(a);
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	char ep[64];
	snprintf(ep, sizeof(ep), "http://127.0.0.1:%d", ntohs(a.sin_port));
	coffer_s3_config cfg = { .endpoint = ep,
		.bucket = "test-bucket",
		.access_key = "AK",
		.secret_key = "SECRETVALUE",
		.path_style = 1,
		.max_attempts = 2,
		.backoff_base_ms = 1 };
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	coffer_s3_object_info info;
	assert_int_equal(coffer_s3_head(s3, "k", NULL, &info, &err), COFFER_EUNAVAIL);
	assert_non_null(strstr(err.msg, "after 2 attempts"));
	assert_non_null(strstr(err.hint, ep));
	assert_null(strstr(err.msg, "SECRETVALUE"));
	coffer_s3_free(s3);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigv4_get_object),
		cmocka_unit_test(test_sigv4_list_objects),
		cmocka_unit_test(test_sigv4_get_lifecycle),
		cmocka_unit_test(test_sigv4_put_object),
		cmocka_unit_test(test_canonical_details),
		cmocka_unit_test(test_error_parse),
		cmocka_unit_test(test_list_parse),
		cmocka_unit_test(test_error_mapping),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_retry_slowdown),
		cmocka_unit_test(test_complete_error_in_200),
		cmocka_unit_test(test_multipart_bounded),
		cmocka_unit_test(test_part_faults),
		cmocka_unit_test(test_session_token),
		cmocka_unit_test(test_get_resumes),
		cmocka_unit_test(test_unreachable),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
