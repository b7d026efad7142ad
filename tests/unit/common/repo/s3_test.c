/* S3 client: error mapping, configuration errors, and, against a small
 * fault-injecting HTTP server on loopback (a real socket, scripted answers
 * for what radosgw never does): retries on 503 SlowDown, a 200
 * CompleteMultipartUpload whose body is an <Error>, a connection dropped
 * mid-part, a part refused with BadDigest, session tokens, a GET that loses
 * its connection mid-body and resumes, bounded memory and per-part
 * checksums of multipart uploads, an endpoint that refuses connections, the
 * plain-http rule, and a hostile endpoint (DTDs, endless bodies).
 * SigV4 is s3_sign_test.c, XML parsing s3_xml_test.c; the real-server tests
 * are tests/integration/s3.sh. */
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
#include "common/stream/sink.h"
#include "tests/harness/s3_server.h"

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
client_for(const struct harness_s3_server *sv, int attempts, size_t part)
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
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_SLOWDOWN);
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
	harness_s3_server_stop(sv);
}

static void
test_complete_error_in_200(void **state)
{
	(void)state;
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_COMPLETE_ERROR);
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
	harness_s3_server_stop(sv);
}

static void
test_multipart_bounded(void **state)
{
	(void)state;
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_MULTIPART);
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
	harness_s3_server_stop(sv);
}

static void
test_part_faults(void **state)
{
	(void)state;
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_MULTIPART);
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
	harness_s3_server_stop(sv);
}

static void
test_session_token(void **state)
{
	(void)state;
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_SLOWDOWN);
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
	harness_s3_server_stop(sv);
}

static void
test_get_resumes(void **state)
{
	(void)state;
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_RESUME);
	coffer_s3 *s3 = client_for(sv, 3, 0);
	coffer_err err = { 0 };
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	coffer_s3_object_info info;
	assert_int_equal(coffer_s3_get(s3, "k/data", NULL, sha, &info, &err), 0);
	uint8_t got[32], want[32];
	assert_int_equal(coffer_sha256_filter_digest(sha, got), 0);
	unsigned n = 32;
	EVP_Digest(sv->obj, HARNESS_S3_OBJ_SIZE, want, &n, EVP_sha256(), NULL);
	assert_memory_equal(got, want, 32);
	assert_int_equal(info.size, HARNESS_S3_OBJ_SIZE);
	assert_int_equal(sv->requests, 2);
	assert_string_equal(sv->range, "bytes=50000-");
	assert_string_equal(sv->if_match, "\"v1\"");
	coffer_filter_free_chain(sha);

	/* Without retries the cut is an error, not a short object. */
	coffer_s3 *once = client_for(sv, 1, 0);
	sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_s3_get(once, "k/data", NULL, sha, NULL, &err), COFFER_EUNAVAIL);
	coffer_filter_free_chain(sha);
	coffer_s3_free(once);
	coffer_s3_free(s3);
	harness_s3_server_stop(sv);
}

static void
test_plain_http_rule(void **state)
{
	(void)state;
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	coffer_s3_config cfg = {
		.bucket = "backups", .access_key = "AK", .secret_key = "SK", .path_style = 1
	};
	const char *local[] = { "http://127.0.0.1:7480", "http://127.9.8.7", "http://[::1]:9000",
		"http://localhost:7480", "http://LOCALHOST", "https://s3.example.com" };
	for (size_t i = 0; i < sizeof(local) / sizeof(local[0]); i++) {
		cfg.endpoint = local[i];
		assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
		assert_false(coffer_s3_insecure(s3));
		coffer_s3_free(s3);
	}
	const char *remote[] = { "http://example.com", "http://10.0.0.1:7480", "http://[::2]",
		"http://128.0.0.1", "http://localhost.example.com", "http://127.0.0.1.nip.io" };
	for (size_t i = 0; i < sizeof(remote) / sizeof(remote[0]); i++) {
		cfg.endpoint = remote[i];
		assert_int_equal(coffer_s3_new(&cfg, &s3, &err), COFFER_EINVAL);
		assert_null(s3);
		assert_non_null(strstr(err.msg, "plain http"));
		assert_non_null(strstr(err.hint, "insecure_http = true"));
	}
	/* The operator's explicit choice: allowed, but object lock is never
	 * believed, and not even asked (192.0.2.1 is TEST-NET: no request
	 * could succeed, so a refusal here is the client's own). */
	cfg.endpoint = "http://192.0.2.1:1";
	cfg.insecure_http = 1;
	assert_int_equal(coffer_s3_new(&cfg, &s3, &err), 0);
	assert_true(coffer_s3_insecure(s3));
	coffer_s3_lock_config lc = { .enabled = 1 };
	assert_int_equal(coffer_s3_object_lock_get(s3, &lc, &err), COFFER_EREFUSED);
	assert_false(lc.enabled);
	assert_non_null(strstr(err.msg, "object lock cannot be verified over plain http"));
	assert_non_null(strstr(err.hint, "https://"));
	coffer_s3_free(s3);
}

/* A field of /proc/self/status in KiB ("VmHWM", "VmRSS"). */
static long
status_kib(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	assert_non_null(f);
	char line[256];
	long v = -1;
	size_t n = strlen(field);
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, field, n) == 0 && line[n] == ':') {
			v = strtol(line + n + 1, NULL, 10);
		}
	}
	fclose(f);
	assert_true(v >= 0);
	return (v);
}

/* Resets the peak RSS (VmHWM) to the current RSS, so the peak measured
 * after is this test's and not an earlier test's; returns the RSS. */
static long
peak_reset_kib(void)
{
	FILE *f = fopen("/proc/self/clear_refs", "w");
	assert_non_null(f);
	fputs("5", f);
	fclose(f);
	return (status_kib("VmRSS"));
}

/* A hostile endpoint (here on loopback, standing for whoever sits on a
 * plain http path): entity bombs, external entities and endless bodies are
 * refused with one error naming the endpoint, and the client's peak memory
 * barely moves. */
static void
test_hostile_endpoint(void **state)
{
	(void)state;
	struct harness_s3_server *sv = harness_s3_server_start(HARNESS_S3_HOSTILE);
	coffer_s3 *s3 = client_for(sv, 2, 0);
	char where[64];
	snprintf(where, sizeof(where), "http://127.0.0.1:%d", sv->port);
	long before = peak_reset_kib();
	coffer_err err = { 0 };
	int n = 0;

	sv->hostile = HARNESS_S3_LAUGHS;
	assert_int_equal(coffer_s3_list(s3, "", 0, count_cb, &n, &err), COFFER_EPROTO);
	assert_non_null(strstr(err.msg, "declares a DTD"));
	assert_non_null(strstr(err.msg, where));
	assert_int_equal(sv->requests, 1); /* refused, not retried */

	sv->hostile = HARNESS_S3_XXE;
	assert_int_equal(coffer_s3_list(s3, "", 0, count_cb, &n, &err), COFFER_EPROTO);
	assert_non_null(strstr(err.msg, "declares a DTD"));
	assert_null(strstr(err.msg, "root:"));
	assert_int_equal(n, 0);

	/* A 3 GiB answer: the transfer stops at the 4 MiB cap. */
	sv->hostile = HARNESS_S3_HUGE_200;
	sv->huge_sent = 0;
	assert_int_equal(coffer_s3_list(s3, "", 0, count_cb, &n, &err), COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "over 4194304 bytes"));
	assert_non_null(strstr(err.msg, where));
	assert_true(sv->huge_sent < 64ull * 1024 * 1024);

	/* A 3 GiB error page, twice (retried as a 500): 64 KiB kept each time. */
	sv->hostile = HARNESS_S3_HUGE_ERROR;
	sv->huge_sent = 0;
	sv->requests = 0;
	assert_int_equal(coffer_s3_list(s3, "", 0, count_cb, &n, &err), COFFER_EUNAVAIL);
	assert_non_null(strstr(err.msg, "HTTP 500"));
	assert_int_equal(sv->requests, 2);
	assert_true(sv->huge_sent < 64ull * 1024 * 1024);

	/* The loopback store's lock answer is believed: the rule is about the
	 * path, not about plain http on this machine. */
	sv->hostile = HARNESS_S3_LOCK_ON;
	coffer_s3_lock_config lc;
	assert_int_equal(coffer_s3_object_lock_get(s3, &lc, &err), 0);
	assert_true(lc.enabled);

	long growth_kib = status_kib("VmHWM") - before;
	print_message("hostile endpoint: peak RSS grew %ld KiB\n", growth_kib);
	assert_true(growth_kib < 64 * 1024);
	coffer_s3_free(s3);
	harness_s3_server_stop(sv);
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
		cmocka_unit_test(test_error_mapping),
		cmocka_unit_test(test_config_errors),
		cmocka_unit_test(test_retry_slowdown),
		cmocka_unit_test(test_complete_error_in_200),
		cmocka_unit_test(test_multipart_bounded),
		cmocka_unit_test(test_part_faults),
		cmocka_unit_test(test_session_token),
		cmocka_unit_test(test_get_resumes),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_plain_http_rule),
		cmocka_unit_test(test_hostile_endpoint),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
