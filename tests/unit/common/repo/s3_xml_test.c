/* S3 client, XML answers: <Error> documents (namespaced or not, never
 * expanding external entities), ListObjectsV2 pages (continuation,
 * url-encoded keys, and the pages that must be refused), and the answers
 * uploads and the object lock check read (s3_internal.h). Split from
 * s3_test.c along common/repo/s3_xml.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/repo/s3.h"
#include "common/repo/s3_internal.h"

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
	/* Any DOCTYPE at all: the document is not read. */
	assert_int_equal(
	    coffer_s3_error_parse(xxe, strlen(xxe), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_null(strstr(code, "root:"));
	assert_true(s3_xml_doctype(xxe, strlen(xxe)));
	const char *bare = "<!DOCTYPE Error><Error><Code>X</Code></Error>";
	assert_int_equal(
	    coffer_s3_error_parse(bare, strlen(bare), code, sizeof(code), msg, sizeof(msg)), 0);
	assert_true(s3_xml_doctype(bare, strlen(bare)));
	assert_false(s3_xml_doctype(aws, strlen(aws)));
	assert_false(s3_xml_doctype("<Err", 4));
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

/* The answers up_create, up_complete and coffer_s3_object_lock_get read:
 * what each takes from the body, and what it leaves alone when the body
 * does not say. */
static void
test_upload_and_lock_answers(void **state)
{
	(void)state;
	char id[64];
	const char *init = "<InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/"
	                   "2006-03-01/\"><Bucket>b</Bucket><Key>k</Key><UploadId>2~xyz"
	                   "</UploadId></InitiateMultipartUploadResult>";
	s3_initiate_parse(init, strlen(init), id, sizeof(id));
	assert_string_equal(id, "2~xyz");
	s3_initiate_parse("<Error/>", 8, id, sizeof(id));
	assert_string_equal(id, "");
	s3_initiate_parse(NULL, 0, id, sizeof(id));
	assert_string_equal(id, "");

	/* The body's ETag replaces the header's; without one the header's stays. */
	char etag[COFFER_S3_ETAG_MAX] = "\"from-header\"";
	const char *done = "<CompleteMultipartUploadResult><Key>k</Key><ETag>\"e-2\"</ETag>"
	                   "</CompleteMultipartUploadResult>";
	assert_true(s3_complete_parse(done, strlen(done), etag, sizeof(etag)));
	assert_string_equal(etag, "\"e-2\"");
	snprintf(etag, sizeof(etag), "\"from-header\"");
	const char *bare = "<CompleteMultipartUploadResult/>";
	assert_true(s3_complete_parse(bare, strlen(bare), etag, sizeof(etag)));
	assert_string_equal(etag, "\"from-header\"");
	const char *err = "<Error><Code>InternalError</Code></Error>";
	assert_false(s3_complete_parse(err, strlen(err), etag, sizeof(etag)));
	assert_false(s3_complete_parse("", 0, etag, sizeof(etag)));

	coffer_s3_lock_config lock;
	memset(&lock, 0, sizeof(lock));
	const char *on = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
	                 "<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>7</Days>"
	                 "</DefaultRetention></Rule></ObjectLockConfiguration>";
	assert_true(s3_lock_config_parse(on, strlen(on), &lock));
	assert_int_equal(lock.enabled, 1);
	assert_string_equal(lock.mode, "GOVERNANCE");
	assert_int_equal(lock.days, 7);
	assert_int_equal(lock.years, 0);
	memset(&lock, 0, sizeof(lock));
	const char *years =
	    "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled>"
	    "<Rule><DefaultRetention><Mode>COMPLIANCE-AND-MUCH-MORE</Mode>"
	    "<Years>2</Years></DefaultRetention></Rule></ObjectLockConfiguration>";
	assert_true(s3_lock_config_parse(years, strlen(years), &lock));
	assert_string_equal(lock.mode, "COMPLIANCE-AND-"); /* cut to the field, terminated */
	assert_int_equal(lock.years, 2);
	memset(&lock, 0, sizeof(lock));
	const char *off = "<ObjectLockConfiguration/>";
	assert_true(s3_lock_config_parse(off, strlen(off), &lock));
	assert_int_equal(lock.enabled, 0);
	assert_false(s3_lock_config_parse(err, strlen(err), &lock));
}

/* GET ?versioning and ListObjectVersions: the states, exactly our key
 * (not the keys it prefixes), delete markers, paging, and a DTD refused. */
static void
test_versioning_answers(void **state)
{
	(void)state;
	coffer_s3_versioning v = COFFER_S3_VERSIONING_ENABLED;
	const char *never =
	    "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"/>";
	assert_true(s3_versioning_parse(never, strlen(never), &v));
	assert_int_equal(v, COFFER_S3_VERSIONING_OFF);
	const char *on =
	    "<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>";
	assert_true(s3_versioning_parse(on, strlen(on), &v));
	assert_int_equal(v, COFFER_S3_VERSIONING_ENABLED);
	const char *sus =
	    "<VersioningConfiguration><Status>Suspended</Status></VersioningConfiguration>";
	assert_true(s3_versioning_parse(sus, strlen(sus), &v));
	assert_int_equal(v, COFFER_S3_VERSIONING_SUSPENDED);
	const char *dtd = "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e \"Enabled\">]>"
	                  "<VersioningConfiguration><Status>&e;</Status></VersioningConfiguration>";
	assert_false(s3_versioning_parse(dtd, strlen(dtd), &v));
	assert_int_equal(v, COFFER_S3_VERSIONING_OFF);
	assert_false(s3_versioning_parse("<Error/>", 8, &v));

	const char *page =
	    "<ListVersionsResult><IsTruncated>true</IsTruncated>"
	    "<NextKeyMarker>p/b/data</NextKeyMarker><NextVersionIdMarker>v1</NextVersionIdMarker>"
	    "<DeleteMarker><Key>p/b/data</Key><VersionId>dm</VersionId><IsLatest>true</IsLatest>"
	    "<LastModified>2026-01-02T00:00:00.000Z</LastModified></DeleteMarker>"
	    "<Version><Key>p/b/data</Key><VersionId>v2</VersionId><IsLatest>false</IsLatest>"
	    "<Size>7</Size></Version>"
	    "<Version><Key>p/b/data2</Key><VersionId>x</VersionId></Version>"
	    "<Version><Key>p/b/%64ata</Key><VersionId>v1</VersionId><Size>5</Size></Version>"
	    "</ListVersionsResult>";
	coffer_s3_version out[2];
	size_t n = 0;
	int truncated = 0;
	char nk[64], nv[64];
	assert_true(s3_versions_parse(page, strlen(page), "p/b/data", out, 2, &n, &truncated, nk,
	    sizeof(nk), nv, sizeof(nv)));
	assert_int_equal(n, 3); /* counted past max; data2 is not ours */
	assert_true(out[0].delete_marker && out[0].is_latest);
	assert_string_equal(out[1].version_id, "v2");
	assert_int_equal(out[1].size, 7);
	assert_true(truncated);
	assert_string_equal(nk, "p/b/data");
	assert_string_equal(nv, "v1");
	const char *bad =
	    "<ListVersionsResult><Version><Key>%zz</Key></Version></ListVersionsResult>";
	n = 0;
	assert_false(s3_versions_parse(
	    bad, strlen(bad), "k", out, 2, &n, &truncated, nk, sizeof(nk), nv, sizeof(nv)));
	n = 0;
	assert_false(s3_versions_parse(
	    dtd, strlen(dtd), "k", out, 2, &n, &truncated, nk, sizeof(nk), nv, sizeof(nv)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_error_parse),
		cmocka_unit_test(test_list_parse),
		cmocka_unit_test(test_upload_and_lock_answers),
		cmocka_unit_test(test_versioning_answers),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
