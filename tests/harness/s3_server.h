/*
 * A scripted S3 server on loopback: a real socket and real HTTP/1.1, with
 * the answers a test asks for, including what a real store (radosgw) never
 * does on demand: 503 SlowDown, a 200 CompleteMultipartUpload whose body is
 * an <Error>, a connection dropped in the middle of a part PUT, a part
 * refused with BadDigest, a GET that hangs up halfway through the body.
 *
 * Fakes: just enough of the S3 REST API for the client in common/repo/s3.c,
 * per script:
 *   HARNESS_S3_SLOWDOWN        answers slowdowns_left requests with 503
 *                              SlowDown, then every request with a one-key
 *                              ListBucketResult;
 *   HARNESS_S3_RESUME          a GET without Range announces the whole
 *                              object (obj, HARNESS_S3_OBJ_SIZE bytes, ETag
 *                              "v1"), sends half and hangs up; with Range
 *                              "bytes=N-" it sends 206 with the rest;
 *   HARNESS_S3_MULTIPART       HEAD 404, initiate (UploadId UP-1), part PUTs
 *                              (the first drop_parts hung up on, part number
 *                              baddigest_part refused with BadDigest),
 *                              complete (ETag "all-3", version V3), DELETE 204;
 *   HARNESS_S3_COMPLETE_ERROR  as MULTIPART, but complete answers 200 with an
 *                              InternalError body;
 *   HARNESS_S3_HOSTILE         every request gets the answer named by
 *                              hostile: a "billion laughs" DTD, a DOCTYPE
 *                              with an external entity (file:///etc/passwd),
 *                              or a 200 or a 500 announcing HARNESS_S3_HUGE
 *                              bytes and streaming them from one 64 KiB
 *                              buffer until the client hangs up (huge_sent
 *                              counts what went out).
 *
 * Promises: one request per connection (Connection: close); every request
 * counted in requests and, up to 64, logged as "METHOD target" in log; each
 * PUT body checked against its x-amz-checksum-sha256 (bad_checksums counts
 * mismatches); the Range and If-Match of the last ranged GET kept; a request
 * carrying x-amz-security-token TOKEN-1 and signing it counted in saw_token.
 * The counters are plain fields: the test reads and sets them between
 * client calls, while the server thread waits in accept().
 *
 * Limits: no signature checking, no TLS, no keep-alive, one connection at a
 * time, headers up to 16 KiB, bodies held in memory. Starting aborts the
 * process if loopback cannot be bound, which only a broken host does.
 */
#ifndef COFFER_TESTS_HARNESS_S3_SERVER_H
#define COFFER_TESTS_HARNESS_S3_SERVER_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

enum harness_s3_script {
	HARNESS_S3_SLOWDOWN,
	HARNESS_S3_COMPLETE_ERROR,
	HARNESS_S3_RESUME,
	HARNESS_S3_MULTIPART,
	HARNESS_S3_HOSTILE
};

enum harness_s3_hostile {
	HARNESS_S3_LAUGHS,     /* 200, a ListBucketResult behind an entity bomb */
	HARNESS_S3_XXE,        /* 200, a ListBucketResult with an external entity */
	HARNESS_S3_HUGE_200,   /* 200 with a multi-GB body */
	HARNESS_S3_HUGE_ERROR, /* 500 with a multi-GB body */
	HARNESS_S3_LOCK_ON     /* 200, an ObjectLockConfiguration: Enabled */
};

#define HARNESS_S3_HUGE (3ull * 1024 * 1024 * 1024)

#define HARNESS_S3_OBJ_SIZE 100000

struct harness_s3_server {
	int fd;
	int port;
	pthread_t thread;
	enum harness_s3_script script;
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
	enum harness_s3_hostile hostile;
	uint64_t huge_sent; /* bytes of huge bodies sent before the client hung up */
	uint8_t obj[HARNESS_S3_OBJ_SIZE];
	char head[16384]; /* the request being read */
	volatile int stop;
};

/* Listens on an ephemeral loopback port (in port) and serves script from a
 * thread until harness_s3_server_stop. */
struct harness_s3_server *harness_s3_server_start(enum harness_s3_script script);

/* Stops the thread, closes the socket and frees the server. */
void harness_s3_server_stop(struct harness_s3_server *sv);

#endif
