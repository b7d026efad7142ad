/* S3 client, SigV4: the canonical requests and signatures of the AWS
 * documentation's published examples, and the details those examples do not
 * show (query and path encoding, header case and spaces, refusals). Split
 * from s3_test.c along common/repo/s3_sign.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <cmocka.h>

#include "common/repo/s3.h"
#include "common/stream/digest.h"

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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sigv4_get_object),
		cmocka_unit_test(test_sigv4_list_objects),
		cmocka_unit_test(test_sigv4_get_lifecycle),
		cmocka_unit_test(test_sigv4_put_object),
		cmocka_unit_test(test_canonical_details),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
