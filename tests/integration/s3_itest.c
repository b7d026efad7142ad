/* Driver for tests/integration/s3.sh: exercises the s3 repository driver and
 * common/repo/s3.h against a live S3 server (radosgw). Each subcommand is one
 * check; it prints "ok <what>" and exits 0, or prints the failure and exits 1.
 *
 * Environment: S3_ENDPOINT, S3_ACCESS, S3_SECRET (a user of that server).
 *
 *   mkbucket BUCKET [lock]      create a bucket (with object lock)
 *   policy BUCKET JSON          set the bucket policy
 *   delete BUCKET KEY           a raw DELETE of KEY
 *   roundtrip BUCKET SIZE       write SIZE pseudo-random bytes through a
 *                               repository handle, read back, compare
 *   many BUCKET N               N objects, listed back in order (pagination)
 *   race BUCKET SIZE            two writers of one key: the second fails
 *   oddkey BUCKET               a key with every punctuation character
 *   nodelete BUCKET             a handle without DELETE cannot delete
 *   badsecret BUCKET            wrong secret: SignatureDoesNotMatch, clearly
 *   abort BUCKET                aborted multipart write leaves nothing listed
 *   versions BUCKET             read an old version by versionId
 *   lock BUCKET                 multipart upload with COMPLIANCE retention;
 *                               deleting that version is refused
 *   lockcheck BUCKET 0|1        object lock enabled on the bucket?
 *   vhost BUCKET ENDPOINT       virtual-hosted addressing round trip
 *   missing BUCKET              reads, stats and lists of a missing bucket
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/clock.h"
#include "common/repo/repo.h"
#include "common/repo/s3.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

static const char *endpoint;
static const char *access_key;
static const char *secret_key;

static int
die(const char *what, const coffer_err *err)
{
	fprintf(stderr, "FAIL %s: %s (hint: %s)\n", what, err != NULL ? err->msg : "",
	    err != NULL ? err->hint : "");
	return (1);
}

static coffer_repo_config
repo_cfg(const char *bucket)
{
	coffer_repo_config cfg = {
		.type = "s3",
		.endpoint = endpoint,
		.region = "us-east-1",
		.bucket = bucket,
		.prefix = "coffer/test",
		.access_key = access_key,
		.secret_key = secret_key,
		.path_style = 1,
	};
	return (cfg);
}

static coffer_s3_config
s3_cfg(const char *bucket)
{
	coffer_s3_config cfg = {
		.endpoint = endpoint,
		.bucket = bucket,
		.access_key = access_key,
		.secret_key = secret_key,
		.path_style = 1,
	};
	return (cfg);
}

/* Deterministic bytes (xorshift64), so writer and reader agree without a file. */
static void
fill(uint8_t *buf, size_t len, uint64_t *state)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t x = *state;
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		*state = x;
		buf[i] = (uint8_t)(x >> 24);
	}
}

static int
write_object(coffer_repo *repo, const char *key, uint64_t size, uint64_t seed, uint8_t digest[32],
    coffer_err *err)
{
	coffer_filter *sink = NULL;
	int rc = coffer_repo_write_begin(repo, key, &sink, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *sha = coffer_sha256_filter_new(sink, err);
	if (sha == NULL) {
		return (err->code);
	}
	/* Odd-sized writes, so parts never line up with the writes. */
	static uint8_t buf[1000003];
	uint64_t left = size;
	uint64_t st = seed;
	while (rc == 0 && left > 0) {
		size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		fill(buf, n, &st);
		rc = coffer_filter_write(sha, buf, n, err);
		left -= n;
	}
	if (rc == 0) {
		rc = coffer_filter_finish(sha, err);
	}
	if (rc == 0) {
		rc = coffer_repo_write_commit(sink, err);
	}
	if (rc == 0 && digest != NULL) {
		rc = coffer_sha256_filter_digest(sha, digest);
	}
	coffer_filter_free_chain(sha);
	return (rc);
}

static int
read_digest(coffer_repo *repo, const char *key, uint8_t digest[32], uint64_t *size, coffer_err *err)
{
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(err), err);
	coffer_filter *sha = coffer_sha256_filter_new(cnt, err);
	if (sha == NULL) {
		return (err->code);
	}
	int rc = coffer_repo_read(repo, key, sha, err);
	if (rc == 0) {
		rc = coffer_sha256_filter_digest(sha, digest);
		*size = coffer_count_filter_bytes(cnt);
	}
	coffer_filter_free_chain(sha);
	return (rc);
}

static int
cmd_roundtrip(const char *bucket, uint64_t size)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	char key[128];
	snprintf(key, sizeof(key), "services/billing/backups/rt-%" PRIu64 "/data", size);
	uint8_t w[32], r[32];
	uint64_t got = 0;
	if (write_object(repo, key, size, size + 1, w, &err) != 0) {
		return (die("write", &err));
	}
	if (read_digest(repo, key, r, &got, &err) != 0) {
		return (die("read", &err));
	}
	if (memcmp(w, r, 32) != 0 || got != size) {
		fprintf(stderr,
		    "FAIL roundtrip: read %" PRIu64 " bytes, wrote %" PRIu64 ", digests %s\n", got,
		    size, memcmp(w, r, 32) == 0 ? "equal" : "differ");
		return (1);
	}
	coffer_repo_info info;
	if (coffer_repo_stat(repo, key, &info, &err) != 0 || info.size != size ||
	    info.mtime_ms <= 0) {
		return (die("stat", &err));
	}
	/* No overwrite by accident, single PUT or multipart alike. */
	int rc = write_object(repo, key, size, 7, NULL, &err);
	if (rc != COFFER_EEXIST) {
		fprintf(stderr, "FAIL overwrite gave %d: %s\n", rc, err.msg);
		return (1);
	}
	if (read_digest(repo, key, r, &got, &err) != 0 || memcmp(w, r, 32) != 0) {
		return (die("object changed after a refused overwrite", &err));
	}
	if (coffer_repo_stat(repo, "services/billing/backups/none/data", &info, &err) !=
	    COFFER_ENOENT) {
		return (die("stat of a missing key is not ENOENT", &err));
	}
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	rc = coffer_repo_read(repo, "services/billing/backups/none/data", sha, &err);
	coffer_filter_free_chain(sha);
	if (rc != COFFER_ENOENT || strstr(err.msg, "NoSuchKey") == NULL) {
		return (die("read of a missing key is not ENOENT/NoSuchKey", &err));
	}
	coffer_repo_close(repo);
	printf("ok roundtrip of %" PRIu64 " bytes\n", size);
	return (0);
}

struct list_state {
	char last[COFFER_REPO_KEY_MAX + 1];
	unsigned n;
	int bad;
};

static int
list_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	struct list_state *l = arg;
	if (l->n > 0 && strcmp(l->last, key) >= 0) {
		l->bad = 1;
	}
	if (info->size != 3) {
		l->bad = 1;
	}
	snprintf(l->last, sizeof(l->last), "%s", key);
	l->n++;
	return (0);
}

static int
cmd_many(const char *bucket, unsigned n)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	for (unsigned i = 0; i < n; i++) {
		char key[64];
		snprintf(key, sizeof(key), "many/%05u", i);
		coffer_filter *sink = NULL;
		if (coffer_repo_write_begin(repo, key, &sink, &err) != 0 ||
		    coffer_filter_write(sink, "abc", 3, &err) != 0 ||
		    coffer_filter_finish(sink, &err) != 0 ||
		    coffer_repo_write_commit(sink, &err) != 0) {
			return (die(key, &err));
		}
		coffer_filter_free(sink);
	}
	struct list_state l = { 0 };
	if (coffer_repo_list(repo, "many/", list_cb, &l, &err) != 0) {
		return (die("list", &err));
	}
	if (l.n != n || l.bad) {
		fprintf(stderr, "FAIL listed %u of %u keys (order or sizes %s)\n", l.n, n,
		    l.bad ? "wrong" : "right");
		return (1);
	}
	/* A prefix inside a segment, and one that matches nothing. */
	memset(&l, 0, sizeof(l));
	if (coffer_repo_list(repo, "many/0000", list_cb, &l, &err) != 0 || l.n != 10) {
		fprintf(stderr, "FAIL partial prefix listed %u, expected 10\n", l.n);
		return (1);
	}
	memset(&l, 0, sizeof(l));
	if (coffer_repo_list(repo, "nothing/", list_cb, &l, &err) != 0 || l.n != 0) {
		return (die("empty list", &err));
	}
	coffer_repo_close(repo);
	printf("ok %u keys listed in order across pages\n", n);
	return (0);
}

/* Two writers of one key, both past the check at begin: only the first
 * commit publishes, for a single PUT (If-None-Match) and a multipart upload
 * (HEAD before complete) alike. */
static int
cmd_race(const char *bucket, uint64_t size)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	char key[128];
	snprintf(key, sizeof(key), "services/billing/backups/race-%" PRIu64 "/data", size);
	coffer_filter *a = NULL, *b = NULL;
	if (coffer_repo_write_begin(repo, key, &a, &err) != 0 ||
	    coffer_repo_write_begin(repo, key, &b, &err) != 0) {
		return (die("begin", &err));
	}
	static uint8_t buf[1 << 20];
	for (uint64_t done = 0; done < size; done += sizeof(buf)) {
		size_t n = size - done < sizeof(buf) ? (size_t)(size - done) : sizeof(buf);
		memset(buf, 'a', n);
		if (coffer_filter_write(a, buf, n, &err) != 0) {
			return (die("write a", &err));
		}
		memset(buf, 'b', n);
		if (coffer_filter_write(b, buf, n, &err) != 0) {
			return (die("write b", &err));
		}
	}
	if (coffer_filter_finish(a, &err) != 0 || coffer_filter_finish(b, &err) != 0 ||
	    coffer_repo_write_commit(a, &err) != 0) {
		return (die("first commit", &err));
	}
	int rc = coffer_repo_write_commit(b, &err);
	if (rc != COFFER_EEXIST) {
		fprintf(stderr, "FAIL second writer's commit gave %d: %s\n", rc, err.msg);
		return (1);
	}
	coffer_filter_free(a);
	coffer_filter_free(b);
	coffer_repo_close(repo);
	printf("ok racing writers of %" PRIu64 " bytes: the second gets EEXIST\n", size);
	return (0);
}

struct find_key {
	const char *want;
	int found;
};

static int
find_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	struct find_key *f = arg;
	f->found += strcmp(key, f->want) == 0;
	return (0);
}

/* Every visible ASCII character a key may hold, through path encoding,
 * signing, XML escaping and encoding-type=url listing. */
static int
cmd_oddkey(const char *bucket)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	const char *key = "odd/a+b%20c&d=e'f\"g<h>i?j#k;l:m@n$o!p(q)r*s,t[u]v{w}x|y^z`~";
	uint8_t w[32], r[32];
	uint64_t got = 0;
	if (write_object(repo, key, 333, 4, w, &err) != 0 ||
	    read_digest(repo, key, r, &got, &err) != 0 || memcmp(w, r, 32) != 0) {
		return (die("odd key round trip", &err));
	}
	struct find_key f = { .want = key };
	if (coffer_repo_list(repo, "odd/a+b%20c&", find_cb, &f, &err) != 0 || f.found != 1) {
		fprintf(stderr, "FAIL odd key listed %d times: %s\n", f.found, err.msg);
		return (1);
	}
	coffer_repo_close(repo);
	printf("ok odd key %s\n", key);
	return (0);
}

static int
cmd_nodelete(const char *bucket)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *rw = NULL, *all = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &rw, &err) != 0 ||
	    coffer_repo_open(
	        &cfg, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, &all, &err) != 0) {
		return (die("open", &err));
	}
	const char *key = "services/billing/backups/del/data";
	if (write_object(rw, key, 100, 1, NULL, &err) != 0) {
		return (die("write", &err));
	}
	if (coffer_repo_delete(rw, key, &err) != COFFER_EPERM) {
		return (die("delete through a handle without DELETE was not refused", &err));
	}
	coffer_repo_info info;
	if (coffer_repo_stat(rw, key, &info, &err) != 0) {
		return (die("object gone after a refused delete", &err));
	}
	coffer_filter *sink = NULL;
	if (coffer_repo_write_begin_flags(rw, key, COFFER_REPO_OVERWRITE, &sink, &err) !=
	    COFFER_EPERM) {
		return (die("overwrite without DELETE was not refused", &err));
	}
	if (coffer_repo_delete(all, key, &err) != 0) {
		return (die("delete with DELETE", &err));
	}
	if (coffer_repo_stat(rw, key, &info, &err) != COFFER_ENOENT) {
		return (die("object still there after delete", &err));
	}
	if (coffer_repo_delete(all, key, &err) != COFFER_ENOENT) {
		return (die("delete of a missing key is not ENOENT", &err));
	}
	coffer_repo_close(rw);
	coffer_repo_close(all);
	printf("ok a handle without DELETE cannot delete or overwrite\n");
	return (0);
}

static int
cmd_badsecret(const char *bucket)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	cfg.secret_key = "not-the-secret-at-all-0123456789abcdefgh";
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	int rc = write_object(repo, "services/billing/backups/bad/data", 10, 1, NULL, &err);
	if (rc != COFFER_EAUTH || strstr(err.msg, "SignatureDoesNotMatch") == NULL ||
	    strstr(err.hint, "secret_key") == NULL || strstr(err.hint, "clock") == NULL) {
		fprintf(
		    stderr, "FAIL wrong secret gave %d: %s (hint: %s)\n", rc, err.msg, err.hint);
		return (1);
	}
	if (strstr(err.msg, cfg.secret_key) != NULL || strstr(err.msg, access_key) != NULL) {
		fprintf(stderr, "FAIL the error message shows a credential\n");
		return (1);
	}
	printf("ok wrong secret: %s (hint: %s)\n", err.msg, err.hint);
	coffer_repo_close(repo);
	return (0);
}

static int
count_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)key;
	(void)info;
	(*(unsigned *)arg)++;
	return (0);
}

static int
cmd_abort(const char *bucket)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	/* 20 MiB: two parts are on the store before the abort. */
	coffer_filter *sink = NULL;
	const char *key = "services/billing/backups/aborted/data";
	if (coffer_repo_write_begin(repo, key, &sink, &err) != 0) {
		return (die("begin", &err));
	}
	static uint8_t buf[1 << 20];
	uint64_t st = 5;
	for (int i = 0; i < 20; i++) {
		fill(buf, sizeof(buf), &st);
		if (coffer_filter_write(sink, buf, sizeof(buf), &err) != 0) {
			return (die("write", &err));
		}
	}
	/* Freeing an uncommitted sink aborts it. */
	coffer_filter_free(sink);
	unsigned n = 0;
	if (coffer_repo_list(repo, "services/billing/backups/aborted", count_cb, &n, &err) != 0) {
		return (die("list", &err));
	}
	coffer_repo_info info;
	if (n != 0 || coffer_repo_stat(repo, key, &info, &err) != COFFER_ENOENT) {
		fprintf(stderr, "FAIL an aborted write left %u objects\n", n);
		return (1);
	}
	/* Explicit abort after writes, then commit refused. */
	if (coffer_repo_write_begin(repo, key, &sink, &err) != 0 ||
	    coffer_filter_write(sink, buf, sizeof(buf), &err) != 0) {
		return (die("second write", &err));
	}
	coffer_repo_write_abort(sink);
	if (coffer_repo_write_commit(sink, &err) == 0) {
		fprintf(stderr, "FAIL commit after abort succeeded\n");
		return (1);
	}
	coffer_filter_free(sink);
	if (coffer_repo_stat(repo, key, &info, &err) != COFFER_ENOENT) {
		return (die("object visible after abort", &err));
	}
	coffer_repo_close(repo);
	printf("ok aborted writes leave nothing listed\n");
	return (0);
}

static int
put_bytes(coffer_s3 *s3, const char *key, const char *text, const coffer_s3_put_opts *opts,
    coffer_s3_object_info *info, coffer_err *err)
{
	coffer_s3_upload *up = NULL;
	int rc = coffer_s3_upload_begin(s3, key, opts, &up, err);
	if (rc == 0) {
		rc = coffer_s3_upload_write(up, (const uint8_t *)text, strlen(text), err);
	}
	if (rc == 0) {
		rc = coffer_s3_upload_commit(up, info, err);
	}
	coffer_s3_upload_free(up);
	return (rc);
}

struct text_sink {
	coffer_filter base;
	char buf[256];
	size_t len;
};

static int
ts_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct text_sink *t = (struct text_sink *)f;
	if (t->len + len >= sizeof(t->buf)) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "too much text"));
	}
	memcpy(t->buf + t->len, buf, len);
	t->len += len;
	t->buf[t->len] = '\0';
	return (0);
}

static int
ts_finish(coffer_filter *f, coffer_err *err)
{
	(void)f;
	(void)err;
	return (0);
}

static void
ts_destroy(coffer_filter *f)
{
	(void)f;
}

static const coffer_filter_ops ts_ops = { "text", ts_write, ts_finish, ts_destroy };

static int
cmd_versions(const char *bucket)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	if (coffer_s3_new(&cfg, &s3, &err) != 0) {
		return (die("new", &err));
	}
	coffer_s3_object_info v1, v2, got;
	coffer_s3_put_opts ow = { .overwrite = 1 };
	if (put_bytes(s3, "versioned/obj", "first version", NULL, &v1, &err) != 0 ||
	    put_bytes(s3, "versioned/obj", "second version", &ow, &v2, &err) != 0) {
		return (die("put", &err));
	}
	if (v1.version_id[0] == '\0' || strcmp(v1.version_id, v2.version_id) == 0) {
		fprintf(
		    stderr, "FAIL version ids \"%s\" and \"%s\"\n", v1.version_id, v2.version_id);
		return (1);
	}
	struct text_sink t = { .base.ops = &ts_ops };
	if (coffer_s3_get(s3, "versioned/obj", v1.version_id, &t.base, &got, &err) != 0 ||
	    strcmp(t.buf, "first version") != 0) {
		fprintf(stderr, "FAIL old version read \"%s\": %s\n", t.buf, err.msg);
		return (1);
	}
	memset(&t, 0, sizeof(t));
	t.base.ops = &ts_ops;
	if (coffer_s3_get(s3, "versioned/obj", NULL, &t.base, &got, &err) != 0 ||
	    strcmp(t.buf, "second version") != 0 || strcmp(got.version_id, v2.version_id) != 0) {
		fprintf(stderr, "FAIL latest read \"%s\": %s\n", t.buf, err.msg);
		return (1);
	}
	memset(&t, 0, sizeof(t));
	t.base.ops = &ts_ops;
	int rc = coffer_s3_get(s3, "versioned/obj", "no-such-version-id", &t.base, NULL, &err);
	if (rc != COFFER_ENOENT && rc != COFFER_EINVAL) {
		fprintf(stderr, "FAIL missing version gave %d: %s\n", rc, err.msg);
		return (1);
	}
	coffer_s3_free(s3);
	printf("ok versionId %s read back the first version\n", v1.version_id);
	return (0);
}

static int
cmd_lock(const char *bucket)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	if (coffer_s3_new(&cfg, &s3, &err) != 0) {
		return (die("new", &err));
	}
	int64_t until = coffer_clock_now(NULL) + 86400000;
	coffer_s3_put_opts lock = { .lock_mode = "COMPLIANCE", .lock_until_ms = until };
	coffer_s3_upload *up = NULL;
	if (coffer_s3_upload_begin(s3, "locked/big", &lock, &up, &err) != 0) {
		return (die("begin", &err));
	}
	static uint8_t buf[1 << 20];
	uint64_t st = 9;
	for (int i = 0; i < 12; i++) {
		fill(buf, sizeof(buf), &st);
		if (coffer_s3_upload_write(up, buf, sizeof(buf), &err) != 0) {
			return (die("write", &err));
		}
		if (coffer_s3_upload_memory(up) > COFFER_S3_PART_DEFAULT) {
			fprintf(
			    stderr, "FAIL upload holds %zu bytes\n", coffer_s3_upload_memory(up));
			return (1);
		}
	}
	coffer_s3_object_info info;
	if (coffer_s3_upload_commit(up, &info, &err) != 0) {
		return (die("commit", &err));
	}
	unsigned parts = coffer_s3_upload_parts(up);
	coffer_s3_upload_free(up);
	if (parts != 2 || info.size != 12u << 20) {
		fprintf(stderr, "FAIL %u parts, size %" PRIu64 "\n", parts, info.size);
		return (1);
	}
	coffer_s3_object_info head;
	if (coffer_s3_head(s3, "locked/big", info.version_id, &head, &err) != 0) {
		return (die("head", &err));
	}
	if (strcmp(head.lock_mode, "COMPLIANCE") != 0 ||
	    head.lock_until_ms / 1000 != until / 1000) {
		fprintf(stderr, "FAIL lock \"%s\" until %" PRId64 " (wanted %" PRId64 ")\n",
		    head.lock_mode, head.lock_until_ms, until);
		return (1);
	}
	int rc = coffer_s3_delete(s3, "locked/big", info.version_id, &err);
	if (rc != COFFER_EPERM) {
		fprintf(stderr, "FAIL deleting a locked version gave %d: %s\n", rc, err.msg);
		return (1);
	}
	printf("ok locked version refused deletion: %s\n", err.msg);
	coffer_s3_free(s3);
	return (0);
}

static int
cmd_lockcheck(const char *bucket, int want)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	if (coffer_s3_new(&cfg, &s3, &err) != 0) {
		return (die("new", &err));
	}
	coffer_s3_lock_config lc;
	if (coffer_s3_object_lock_get(s3, &lc, &err) != 0) {
		return (die("object lock get", &err));
	}
	coffer_s3_free(s3);
	if (lc.enabled != want) {
		fprintf(stderr, "FAIL object lock enabled=%d on %s\n", lc.enabled, bucket);
		return (1);
	}
	printf("ok object lock enabled=%d on %s\n", lc.enabled, bucket);
	return (0);
}

static int
cmd_vhost(const char *bucket, const char *ep)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	cfg.endpoint = ep;
	cfg.path_style = 0;
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	uint8_t w[32], r[32];
	uint64_t got = 0;
	if (write_object(repo, "vhost/obj", 1000, 3, w, &err) != 0 ||
	    read_digest(repo, "vhost/obj", r, &got, &err) != 0 || memcmp(w, r, 32) != 0) {
		return (die("virtual-hosted round trip", &err));
	}
	unsigned n = 0;
	if (coffer_repo_list(repo, "vhost/", count_cb, &n, &err) != 0 || n != 1) {
		return (die("virtual-hosted list", &err));
	}
	coffer_repo_close(repo);
	printf("ok virtual-hosted addressing via %s\n", ep);
	return (0);
}

static int
cmd_missing(const char *bucket)
{
	coffer_repo_config cfg = repo_cfg(bucket);
	coffer_repo *repo = NULL;
	coffer_err err = { 0 };
	if (coffer_repo_open(&cfg, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo, &err) != 0) {
		return (die("open", &err));
	}
	unsigned n = 0;
	int rc = coffer_repo_list(repo, "", count_cb, &n, &err);
	if (rc != COFFER_EINVAL || strstr(err.msg, "NoSuchBucket") == NULL ||
	    strstr(err.hint, "bucket") == NULL) {
		fprintf(stderr, "FAIL list of a missing bucket gave %d: %s\n", rc, err.msg);
		return (1);
	}
	coffer_repo_close(repo);
	printf("ok missing bucket: %s (hint: %s)\n", err.msg, err.hint);
	return (0);
}

/* head KEY [VERSION]: what the store says about an object and its lock. */
static int
cmd_head(const char *bucket, const char *key, const char *version)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	if (coffer_s3_new(&cfg, &s3, &err) != 0 ||
	    coffer_s3_head(s3, key, version, &info, &err) != 0) {
		coffer_s3_free(s3);
		return (die("head", &err));
	}
	coffer_s3_free(s3);
	printf("ok version=%s lock=%s until=%lld size=%llu\n", info.version_id,
	    info.lock_mode[0] != '\0' ? info.lock_mode : "-", (long long)info.lock_until_ms,
	    (unsigned long long)info.size);
	return (0);
}

/* sha KEY: the SHA-256 of the object's current version, streamed. */
static int
cmd_sha(const char *bucket, const char *key)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
	coffer_filter *sha = coffer_sha256_filter_new(cnt, &err);
	if (sha == NULL) {
		return (die("filters", &err));
	}
	int rc = coffer_s3_new(&cfg, &s3, &err);
	if (rc == 0) {
		rc = coffer_s3_get(s3, key, NULL, sha, NULL, &err);
	}
	uint8_t md[32];
	char hex[65];
	coffer_sha256_filter_digest(sha, md);
	coffer_hex_encode(md, sizeof(md), hex);
	uint64_t n = coffer_count_filter_bytes(cnt);
	coffer_filter_free_chain(sha);
	coffer_s3_free(s3);
	if (rc != 0) {
		return (die("sha", &err));
	}
	printf("ok sha=%s bytes=%llu\n", hex, (unsigned long long)n);
	return (0);
}

/* get KEY: the object's current version on stdout (no "ok" line). */
static int
cmd_get(const char *bucket, const char *key)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	coffer_filter *out = coffer_fd_sink_new(1, &err);
	int rc = out != NULL ? coffer_s3_new(&cfg, &s3, &err) : COFFER_ENOMEM;
	if (rc == 0) {
		rc = coffer_s3_get(s3, key, NULL, out, NULL, &err);
	}
	coffer_filter_free(out);
	coffer_s3_free(s3);
	return (rc != 0 ? die("get", &err) : 0);
}

/* put KEY FILE: a plain PUT over whatever is there (a new version in a
 * versioned bucket), as an account holder could do by hand. */
static int
cmd_put(const char *bucket, const char *key, const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fprintf(stderr, "FAIL put: cannot open %s\n", path);
		return (1);
	}
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_s3_upload *up = NULL;
	coffer_err err = { 0 };
	coffer_s3_put_opts opts = { .overwrite = 1 };
	int rc = coffer_s3_new(&cfg, &s3, &err);
	if (rc == 0) {
		rc = coffer_s3_upload_begin(s3, key, &opts, &up, &err);
	}
	uint8_t buf[65536];
	size_t n;
	while (rc == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
		rc = coffer_s3_upload_write(up, buf, n, &err);
	}
	coffer_s3_object_info info;
	memset(&info, 0, sizeof(info));
	if (rc == 0) {
		rc = coffer_s3_upload_commit(up, &info, &err);
	}
	fclose(f);
	coffer_s3_upload_free(up);
	coffer_s3_free(s3);
	if (rc != 0) {
		return (die("put", &err));
	}
	printf("ok version=%s\n", info.version_id);
	return (0);
}

static int
print_key(const char *key, uint64_t size, int64_t mtime_ms, void *arg)
{
	(void)size;
	(void)mtime_ms;
	(void)arg;
	printf("%s\n", key);
	return (0);
}

/* list PREFIX: every key, one per line (no "ok" line: the output is data). */
static int
cmd_list(const char *bucket, const char *prefix)
{
	coffer_s3_config cfg = s3_cfg(bucket);
	coffer_s3 *s3 = NULL;
	coffer_err err = { 0 };
	int rc = coffer_s3_new(&cfg, &s3, &err);
	if (rc == 0) {
		rc = coffer_s3_list(s3, prefix, 0, print_key, NULL, &err);
	}
	coffer_s3_free(s3);
	return (rc != 0 ? die("list", &err) : 0);
}

int
main(int argc, char **argv)
{
	endpoint = getenv("S3_ENDPOINT");
	access_key = getenv("S3_ACCESS");
	secret_key = getenv("S3_SECRET");
	if (argc < 3 || endpoint == NULL || access_key == NULL || secret_key == NULL) {
		fprintf(stderr,
		    "usage: S3_ENDPOINT=... S3_ACCESS=... S3_SECRET=... %s CMD BUCKET "
		    "[ARG]\n",
		    argv[0]);
		return (2);
	}
	const char *cmd = argv[1];
	const char *bucket = argv[2];
	const char *arg = argc > 3 ? argv[3] : NULL;
	if (strcmp(cmd, "mkbucket") == 0) {
		coffer_s3_config cfg = s3_cfg(bucket);
		coffer_s3 *s3 = NULL;
		coffer_err err = { 0 };
		if (coffer_s3_new(&cfg, &s3, &err) != 0 ||
		    coffer_s3_bucket_create(s3, arg != NULL && strcmp(arg, "lock") == 0, &err) !=
		        0) {
			return (die("mkbucket", &err));
		}
		coffer_s3_free(s3);
		printf("ok bucket %s\n", bucket);
		return (0);
	}
	if (strcmp(cmd, "policy") == 0 && arg != NULL) {
		coffer_s3_config cfg = s3_cfg(bucket);
		coffer_s3 *s3 = NULL;
		coffer_err err = { 0 };
		if (coffer_s3_new(&cfg, &s3, &err) != 0 ||
		    coffer_s3_bucket_policy_put(s3, arg, &err) != 0) {
			return (die("policy", &err));
		}
		coffer_s3_free(s3);
		printf("ok policy set on %s\n", bucket);
		return (0);
	}
	if (strcmp(cmd, "delete") == 0 && arg != NULL) {
		/* A raw DELETE, past any repository capability: what the store
		 * itself allows these credentials. */
		coffer_s3_config cfg = s3_cfg(bucket);
		coffer_s3 *s3 = NULL;
		coffer_err err = { 0 };
		if (coffer_s3_new(&cfg, &s3, &err) != 0 ||
		    coffer_s3_delete(s3, arg, argc > 4 ? argv[4] : NULL, &err) != 0) {
			return (die("delete", &err));
		}
		coffer_s3_free(s3);
		printf("ok deleted %s\n", arg);
		return (0);
	}
	if (strcmp(cmd, "roundtrip") == 0 && arg != NULL) {
		return (cmd_roundtrip(bucket, strtoull(arg, NULL, 10)));
	}
	if (strcmp(cmd, "many") == 0 && arg != NULL) {
		return (cmd_many(bucket, (unsigned)strtoul(arg, NULL, 10)));
	}
	if (strcmp(cmd, "race") == 0 && arg != NULL) {
		return (cmd_race(bucket, strtoull(arg, NULL, 10)));
	}
	if (strcmp(cmd, "oddkey") == 0) {
		return (cmd_oddkey(bucket));
	}
	if (strcmp(cmd, "nodelete") == 0) {
		return (cmd_nodelete(bucket));
	}
	if (strcmp(cmd, "badsecret") == 0) {
		return (cmd_badsecret(bucket));
	}
	if (strcmp(cmd, "abort") == 0) {
		return (cmd_abort(bucket));
	}
	if (strcmp(cmd, "versions") == 0) {
		return (cmd_versions(bucket));
	}
	if (strcmp(cmd, "lock") == 0) {
		return (cmd_lock(bucket));
	}
	if (strcmp(cmd, "lockcheck") == 0 && arg != NULL) {
		return (cmd_lockcheck(bucket, atoi(arg)));
	}
	if (strcmp(cmd, "vhost") == 0 && arg != NULL) {
		return (cmd_vhost(bucket, arg));
	}
	if (strcmp(cmd, "head") == 0 && arg != NULL) {
		return (cmd_head(bucket, arg, argc > 4 ? argv[4] : NULL));
	}
	if (strcmp(cmd, "list") == 0) {
		return (cmd_list(bucket, arg != NULL ? arg : ""));
	}
	if (strcmp(cmd, "get") == 0 && arg != NULL) {
		return (cmd_get(bucket, arg));
	}
	if (strcmp(cmd, "sha") == 0 && arg != NULL) {
		return (cmd_sha(bucket, arg));
	}
	if (strcmp(cmd, "put") == 0 && arg != NULL && argc > 4) {
		return (cmd_put(bucket, arg, argv[4]));
	}
	if (strcmp(cmd, "missing") == 0) {
		return (cmd_missing(bucket));
	}
	fprintf(stderr, "unknown command %s\n", cmd);
	return (2);
}
