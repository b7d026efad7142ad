/* S3 client: error mapping, configuration errors, and, against a small
 * fault-injecting HTTP server on loopback (a real socket, scripted answers
 * for what radosgw never does): retries on 503 SlowDown, a 200
 * CompleteMultipartUpload whose body is an <Error>, a connection dropped
 * mid-part, a part refused with BadDigest, session tokens, a GET that loses
 * its connection mid-body and resumes, bounded memory and per-part
 * checksums of multipart uploads, and an endpoint that refuses connections.
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

/* ---- a fault-injecting HTTP server on loopback ---- */

enum script {
	SC_SLOWDOWN,
	SC_COMPLETE_ERROR,
	SC_RESUME,
	SC_MULTIPART
};

#define OBJ_SIZE 100000

struct server {
	int fd;
	int port;
	pthread_t thread;
	enum script script;
	int requests;
	int slowdowns_left;
	char log[64][200]; /* "METHOD /path?query" */
	int nlog;
	int bad_checksums;
	int part_puts;
	size_t max_part;
	char range[64];
	char if_match[64];
	int drop_parts;     /* part PUTs to answer by hanging up */
	int baddigest_part; /* part number to refuse with BadDigest */
	int saw_token;      /* x-amz-security-token present and signed */
	uint8_t obj[OBJ_SIZE];
	volatile int stop;
};

static void
send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0) {
			return;
		}
		p += n;
		len -= (size_t)n;
	}
}

static void
respond(int fd, int status, const char *extra, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s"
	    "Connection: close\r\n\r\n",
	    status, len, extra != NULL ? extra : "");
	send_all(fd, head, (size_t)n);
	if (len > 0) {
		send_all(fd, body, len);
	}
}

static char *
header_value(char *head, const char *name)
{
	static char v[256];
	v[0] = '\0';
	size_t nl = strlen(name);
	for (char *p = head; (p = strstr(p, "\r\n")) != NULL; p += 2) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *s = p + 3 + nl;
			while (*s == ' ') {
				s++;
			}
			size_t l = strcspn(s, "\r");
			snprintf(v, sizeof(v), "%.*s", (int)l, s);
			break;
		}
	}
	return (v);
}

static void
handle(struct server *sv, int fd)
{
	static char head[16384];
	size_t used = 0;
	char *end = NULL;
	while (used < sizeof(head) - 1) {
		ssize_t n = recv(fd, head + used, sizeof(head) - 1 - used, 0);
		if (n <= 0) {
			return;
		}
		used += (size_t)n;
		head[used] = '\0';
		if ((end = strstr(head, "\r\n\r\n")) != NULL) {
			break;
		}
	}
	if (end == NULL) {
		return;
	}
	size_t hlen = (size_t)(end + 4 - head);
	size_t clen = strtoul(header_value(head, "Content-Length"), NULL, 10);
	uint8_t *body = malloc(clen + 1);
	size_t have = used - hlen;
	memcpy(body, head + hlen, have < clen ? have : clen);
	while (have < clen) {
		ssize_t n = recv(fd, body + have, clen - have, 0);
		if (n <= 0) {
			break;
		}
		have += (size_t)n;
	}
	*end = '\0';
	char method[16], target[1024];
	sscanf(head, "%15s %1023s", method, target);
	sv->requests++;
	if (sv->nlog < 64) {
		snprintf(sv->log[sv->nlog++], sizeof(sv->log[0]), "%s %.150s", method, target);
	}
	char sum[64];
	snprintf(sum, sizeof(sum), "%s", header_value(head, "x-amz-checksum-sha256"));
	if (strcmp(method, "PUT") == 0 && clen > 0) {
		uint8_t d[32];
		unsigned dn = 32;
		char b64[48];
		EVP_Digest(body, clen, d, &dn, EVP_sha256(), NULL);
		EVP_EncodeBlock((unsigned char *)b64, d, 32);
		if (strcmp(b64, sum) != 0) {
			sv->bad_checksums++;
		}
	}
	if (strcmp(header_value(head, "x-amz-security-token"), "TOKEN-1") == 0 &&
	    strstr(header_value(head, "Authorization"), "x-amz-security-token") != NULL) {
		sv->saw_token++;
	}
	snprintf(sv->range, sizeof(sv->range), "%s", header_value(head, "Range"));
	if (sv->range[0] != '\0') {
		snprintf(sv->if_match, sizeof(sv->if_match), "%s", header_value(head, "If-Match"));
	}

	static const char slow[] = "<Error><Code>SlowDown</Code><Message>Please reduce your "
	                           "request rate.</Message></Error>";
	if (sv->script == SC_SLOWDOWN) {
		if (sv->slowdowns_left-- > 0) {
			respond(fd, 503, NULL, slow, strlen(slow));
		} else {
			static const char list[] =
			    "<ListBucketResult><IsTruncated>false</IsTruncated>"
			    "<Contents><Key>k</Key><Size>1</Size></Contents></ListBucketResult>";
			respond(fd, 200, NULL, list, strlen(list));
		}
	} else if (sv->script == SC_RESUME) {
		if (sv->range[0] == '\0') {
			/* Announce the whole object, send half, hang up. */
			char h[256];
			int n = snprintf(h, sizeof(h),
			    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
			    "ETag: \"v1\"\r\nConnection: close\r\n\r\n",
			    OBJ_SIZE);
			send_all(fd, h, (size_t)n);
			send_all(fd, sv->obj, OBJ_SIZE / 2);
		} else {
			size_t from = strtoul(sv->range + 6, NULL, 10);
			char extra[128];
			snprintf(extra, sizeof(extra),
			    "ETag: \"v1\"\r\nContent-Range: bytes %zu-%d/%d\r\n", from,
			    OBJ_SIZE - 1, OBJ_SIZE);
			respond(fd, from <= OBJ_SIZE ? 206 : 416, extra,
			    (const char *)sv->obj + from, OBJ_SIZE - from);
		}
	} else {
		/* Multipart: initiate, parts, complete; HEAD says "no such key". */
		if (strcmp(method, "HEAD") == 0) {
			respond(fd, 404, NULL, NULL, 0);
		} else if (strcmp(method, "POST") == 0 && strstr(target, "?uploads") != NULL) {
			static const char init[] = "<InitiateMultipartUploadResult><UploadId>UP-1"
			                           "</UploadId></InitiateMultipartUploadResult>";
			respond(fd, 200, NULL, init, strlen(init));
		} else if (strcmp(method, "PUT") == 0 && strstr(target, "partNumber=") != NULL &&
		    sv->drop_parts > 0) {
			sv->drop_parts--; /* connection dropped mid-part: no answer at all */
		} else if (strcmp(method, "PUT") == 0 && sv->baddigest_part > 0 &&
		    atoi(strstr(target, "partNumber=") + 11) == sv->baddigest_part) {
			static const char bd[] =
			    "<Error><Code>BadDigest</Code><Message>The "
			    "Content-MD5 or checksum value that you specified did not match what "
			    "the server received.</Message></Error>";
			respond(fd, 400, NULL, bd, strlen(bd));
		} else if (strcmp(method, "PUT") == 0 && strstr(target, "partNumber=") != NULL) {
			sv->part_puts++;
			sv->max_part = clen > sv->max_part ? clen : sv->max_part;
			respond(fd, 200, "ETag: \"part\"\r\n", NULL, 0);
		} else if (strcmp(method, "POST") == 0 && strstr(target, "uploadId=") != NULL) {
			if (sv->script == SC_COMPLETE_ERROR) {
				static const char e[] =
				    "<?xml version=\"1.0\"?>\n<Error><Code>InternalError"
				    "</Code><Message>We encountered an internal error.</Message></Error>";
				respond(fd, 200, NULL, e, strlen(e));
			} else {
				static const char ok[] =
				    "<CompleteMultipartUploadResult><ETag>\"all-3\""
				    "</ETag></CompleteMultipartUploadResult>";
				respond(fd, 200, "x-amz-version-id: V3\r\n", ok, strlen(ok));
			}
		} else if (strcmp(method, "DELETE") == 0) {
			respond(fd, 204, NULL, NULL, 0);
		} else {
			respond(fd, 400, NULL, NULL, 0);
		}
	}
	free(body);
}

static void *
serve(void *arg)
{
	struct server *sv = arg;
	while (!sv->stop) {
		int c = accept(sv->fd, NULL, NULL);
		if (c < 0) {
			continue;
		}
		if (!sv->stop) {
			handle(sv, c);
		}
		close(c);
	}
	return (NULL);
}

static struct server *
server_start(enum script script)
{
	struct server *sv = calloc(1, sizeof(*sv));
	sv->script = script;
	for (int i = 0; i < OBJ_SIZE; i++) {
		sv->obj[i] = (uint8_t)(i * 7 + (i >> 8));
	}
	sv->fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	assert_int_equal(bind(sv->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(sv->fd, 16), 0);
	socklen_t al = sizeof(a);
	getsockname(sv->fd, (struct sockaddr *)&a, &al);
	sv->port = ntohs(a.sin_port);
	pthread_create(&sv->thread, NULL, serve, sv);
	return (sv);
}

static void
server_stop(struct server *sv)
{
	sv->stop = 1;
	/* Wake accept() with one last connection. */
	int c = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET,
		.sin_port = htons((uint16_t)sv->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	connect(c, (struct sockaddr *)&a, sizeof(a));
	close(c);
	pthread_join(sv->thread, NULL);
	close(sv->fd);
	free(sv);
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
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
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
	coffer_filter_free_chain(sha);

	/* Without retries the cut is an error, not a short object. */
	coffer_s3 *once = client_for(sv, 1, 0);
	sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_s3_get(once, "k/data", NULL, sha, NULL, &err), COFFER_EUNAVAIL);
	coffer_filter_free_chain(sha);
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
