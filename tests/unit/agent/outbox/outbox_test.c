/* Outbox: durability rules seen from outside. Append, read, ack and
 * compaction; persistence and seq monotonicity across reopen and compaction;
 * torn tails cut at every byte; damage in the middle refused; size limits;
 * several handles and processes sharing one outbox. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/outbox/outbox.h"
#include "common/base/log.h"
#include "tests/harness/tmpdir.h"

#define SEG1 "00000000000000000001.seg"

struct fixture {
	char dir[512];    /* state_dir */
	char outbox[600]; /* state_dir/outbox */
};

/* Small limits so that a few records rotate segments and fill the outbox:
 * a segment holds its header and four records of up to 32 payload bytes. */
static const agent_outbox_limits small = {
	.max_record = 64,
	.segment_bytes = 32 + 4 * (32 + 32),
	.max_bytes = 4 * (32 + 4 * (32 + 32)),
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("outbox-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->outbox, sizeof(f->outbox), "%s/outbox", f->dir);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static size_t
payload_for(uint64_t i, uint8_t *buf)
{
	size_t len = 1 + (size_t)(i * 7 % 32);
	for (size_t k = 0; k < len; k++) {
		buf[k] = (uint8_t)(i * 31 + k);
	}
	return (len);
}

static uint64_t
append_n(agent_outbox *ob, uint64_t first_i, uint64_t n)
{
	uint64_t seq = 0;
	for (uint64_t i = first_i; i < first_i + n; i++) {
		uint8_t buf[64];
		size_t len = payload_for(i, buf);
		coffer_err err = { 0 };
		assert_int_equal(agent_outbox_append(ob, buf, len, &seq, &err), 0);
	}
	return (seq);
}

struct collected {
	uint64_t seqs[4096];
	uint8_t data[4096][64];
	size_t lens[4096];
	size_t n;
	int stop_after; /* > 0: return 1 after this many; < 0: fail at once */
};

static int
collect_cb(uint64_t seq, const uint8_t *data, size_t len, void *arg)
{
	struct collected *c = arg;
	if (c->stop_after < 0) {
		return (COFFER_EPROTO);
	}
	assert_true(c->n < 4096);
	assert_true(len <= 64);
	c->seqs[c->n] = seq;
	memcpy(c->data[c->n], data, len);
	c->lens[c->n] = len;
	c->n++;
	return (c->stop_after > 0 && c->n >= (size_t)c->stop_after ? 1 : 0);
}

/* Reads every unacked record in batches of 7, as the sender would. */
static void
read_all(agent_outbox *ob, struct collected *c)
{
	memset(c, 0, sizeof(*c));
	uint64_t after = 0;
	for (;;) {
		size_t got = 0;
		coffer_err err = { 0 };
		size_t before = c->n;
		assert_int_equal(
		    agent_outbox_foreach(ob, after, 7, 1 << 20, collect_cb, c, &got, &err), 0);
		assert_int_equal(got, c->n - before);
		if (got == 0) {
			break;
		}
		after = c->seqs[c->n - 1];
	}
}

static void
assert_records(const struct collected *c, uint64_t first_seq, uint64_t first_i, size_t n)
{
	assert_int_equal(c->n, n);
	for (size_t k = 0; k < n; k++) {
		uint8_t buf[64];
		size_t len = payload_for(first_i + k, buf);
		assert_int_equal(c->seqs[k], first_seq + k);
		assert_int_equal(c->lens[k], len);
		assert_memory_equal(c->data[k], buf, len);
	}
}

static void
file_path(const struct fixture *f, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", f->outbox, name);
}

static long
file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return ((long)st.st_size);
}

static size_t
count_segments(const struct fixture *f)
{
	agent_outbox *ob;
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, NULL), 0);
	agent_outbox_stats st;
	assert_int_equal(agent_outbox_depth(ob, &st, NULL), 0);
	agent_outbox_close(ob);
	return (st.segments);
}

static void
flip_byte(const char *path, long off)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x40;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

static void
test_append_read_ack(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	struct collected *c = calloc(1, sizeof(*c));
	read_all(ob, c);
	assert_int_equal(c->n, 0);

	assert_int_equal(append_n(ob, 0, 5), 5);
	read_all(ob, c);
	assert_records(c, 1, 0, 5);
	agent_outbox_stats st;
	assert_int_equal(agent_outbox_depth(ob, &st, &err), 0);
	assert_int_equal(st.count, 5);
	assert_int_equal(st.acked_seq, 0);
	assert_int_equal(st.next_seq, 6);

	assert_int_equal(agent_outbox_ack(ob, 3, &err), 0);
	read_all(ob, c);
	assert_records(c, 4, 3, 2);
	assert_int_equal(agent_outbox_depth(ob, &st, &err), 0);
	assert_int_equal(st.count, 2);
	assert_int_equal(st.bytes, c->lens[0] + c->lens[1]);
	assert_int_equal(st.acked_seq, 3);

	/* A resent ack is normal; an ack for a seq never handed out is not. */
	assert_int_equal(agent_outbox_ack(ob, 2, &err), 0);
	assert_int_equal(agent_outbox_ack(ob, 6, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "seq 6"));
	assert_int_equal(agent_outbox_ack(ob, 5, &err), 0);
	read_all(ob, c);
	assert_int_equal(c->n, 0);
	assert_int_equal(agent_outbox_depth(ob, &st, &err), 0);
	assert_int_equal(st.count, 0);
	assert_int_equal(st.bytes, 0);

	/* An empty record is legal. */
	uint64_t seq = 0;
	assert_int_equal(agent_outbox_append(ob, NULL, 0, &seq, &err), 0);
	assert_int_equal(seq, 6);
	read_all(ob, c);
	assert_int_equal(c->n, 1);
	assert_int_equal(c->lens[0], 0);
	agent_outbox_close(ob);
	free(c);
}

static void
test_batch_bounds(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	append_n(ob, 0, 10);
	struct collected *c = calloc(1, sizeof(*c));
	size_t got = 0;

	assert_int_equal(agent_outbox_foreach(ob, 0, 3, 1 << 20, collect_cb, c, &got, &err), 0);
	assert_int_equal(got, 3);
	assert_records(c, 1, 0, 3);

	/* A byte budget smaller than one record still delivers that record. */
	memset(c, 0, sizeof(*c));
	assert_int_equal(agent_outbox_foreach(ob, 3, 100, 1, collect_cb, c, &got, &err), 0);
	assert_int_equal(got, 1);
	assert_records(c, 4, 3, 1);

	/* Byte budget: payloads 1..10 are 1+7i%32 bytes: 1, 8, 15, 22, 29, 4, ... */
	memset(c, 0, sizeof(*c));
	assert_int_equal(agent_outbox_foreach(ob, 0, 100, 24, collect_cb, c, &got, &err), 0);
	assert_int_equal(got, 3);

	/* The callback may stop early, or fail. */
	memset(c, 0, sizeof(*c));
	c->stop_after = 2;
	assert_int_equal(agent_outbox_foreach(ob, 5, 100, 1 << 20, collect_cb, c, &got, &err), 0);
	assert_int_equal(got, 2);
	assert_records(c, 6, 5, 2);
	memset(c, 0, sizeof(*c));
	c->stop_after = -1;
	assert_int_equal(
	    agent_outbox_foreach(ob, 0, 100, 1 << 20, collect_cb, c, &got, &err), COFFER_EPROTO);
	assert_int_equal(got, 1);

	/* after_seq below the acked seq starts after the acked seq. */
	assert_int_equal(agent_outbox_ack(ob, 8, &err), 0);
	memset(c, 0, sizeof(*c));
	assert_int_equal(agent_outbox_foreach(ob, 2, 100, 1 << 20, collect_cb, c, &got, &err), 0);
	assert_records(c, 9, 8, 2);
	memset(c, 0, sizeof(*c));
	assert_int_equal(agent_outbox_foreach(ob, 10, 100, 1 << 20, collect_cb, c, &got, &err), 0);
	assert_int_equal(got, 0);
	agent_outbox_close(ob);
	free(c);
}

static void
test_reopen_persists(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	append_n(ob, 0, 7);
	assert_int_equal(agent_outbox_ack(ob, 2, &err), 0);
	agent_outbox_close(ob);

	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	struct collected *c = calloc(1, sizeof(*c));
	read_all(ob, c);
	assert_records(c, 3, 2, 5);
	uint64_t seq = 0;
	uint8_t buf[64];
	size_t len = payload_for(7, buf);
	assert_int_equal(agent_outbox_append(ob, buf, len, &seq, &err), 0);
	assert_int_equal(seq, 8);
	agent_outbox_close(ob);
	free(c);
}

static void
test_compaction_keeps_seq(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	/* Fill about three segments, ack bit by bit, and watch them go. */
	append_n(ob, 0, 12);
	size_t before = count_segments(f);
	assert_true(before >= 3);
	assert_int_equal(agent_outbox_ack(ob, 2, &err), 0);
	assert_int_equal(count_segments(f), before);
	struct collected *c = calloc(1, sizeof(*c));
	read_all(ob, c);
	assert_records(c, 3, 2, 10);
	assert_int_equal(agent_outbox_ack(ob, 12, &err), 0);
	/* The newest segment stays: its name keeps the high-water mark. */
	assert_int_equal(count_segments(f), 1);
	read_all(ob, c);
	assert_int_equal(c->n, 0);
	agent_outbox_close(ob);

	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	uint64_t seq = append_n(ob, 12, 1);
	assert_int_equal(seq, 13);
	/* A reader that started before the compaction catches up after it. */
	agent_outbox *other;
	assert_int_equal(agent_outbox_open(f->dir, &small, &other, &err), 0);
	append_n(ob, 13, 10);
	assert_int_equal(agent_outbox_ack(ob, 20, &err), 0);
	read_all(other, c);
	assert_records(c, 21, 20, 3);
	agent_outbox_close(other);
	assert_int_equal(agent_outbox_ack(ob, 23, &err), 0);
	agent_outbox_close(ob);

	/* Even with every segment gone the state file keeps the high-water mark. */
	char path[1024];
	char name[64];
	for (uint64_t first = 1; first < 40; first++) {
		snprintf(name, sizeof(name), "%020llu.seg", (unsigned long long)first);
		file_path(f, name, path, sizeof(path));
		(void)unlink(path);
	}
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	seq = append_n(ob, 23, 1);
	assert_int_equal(seq, 24);
	agent_outbox_close(ob);
	free(c);
}

static void
test_other_handle_sees_appends(void **state)
{
	struct fixture *f = *state;
	agent_outbox *a;
	agent_outbox *b;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, &small, &a, &err), 0);
	assert_int_equal(agent_outbox_open(f->dir, &small, &b, &err), 0);
	struct collected *c = calloc(1, sizeof(*c));
	/* Interleave so both handles' cached tails go stale, and rotate. */
	for (uint64_t i = 0; i < 20; i++) {
		uint64_t seq = append_n(i % 2 == 0 ? a : b, i, 1);
		assert_int_equal(seq, i + 1);
	}
	read_all(a, c);
	assert_records(c, 1, 0, 20);
	assert_int_equal(agent_outbox_ack(b, 10, &err), 0);
	agent_outbox_stats st;
	assert_int_equal(agent_outbox_depth(a, &st, &err), 0);
	assert_int_equal(st.acked_seq, 10);
	assert_int_equal(st.count, 10);
	read_all(a, c);
	assert_records(c, 11, 10, 10);
	agent_outbox_close(a);
	agent_outbox_close(b);
	free(c);
}

static void
test_torn_tail_every_offset(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	append_n(ob, 0, 3);
	agent_outbox_close(ob);
	char path[1024];
	file_path(f, SEG1, path, sizeof(path));
	long full = file_size(path);
	uint8_t buf[64];
	long last_len = 32 + (long)payload_for(2, buf);
	long last_off = full - last_len;
	uint8_t *copy = malloc((size_t)full);
	int fd = open(path, O_RDONLY);
	assert_int_equal(read(fd, copy, (size_t)full), full);
	close(fd);

	char *logbuf = NULL;
	size_t loglen = 0;
	FILE *log = open_memstream(&logbuf, &loglen);
	coffer_log_set_stream(log);
	struct collected *c = calloc(1, sizeof(*c));
	/* Every cut of the last record, and the same record whole but with a
	 * bad checksum (length == full with one byte flipped). */
	for (long cut = last_off; cut <= full; cut++) {
		fd = open(path, O_WRONLY | O_TRUNC);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, copy, (size_t)cut), cut);
		close(fd);
		if (cut == full) {
			flip_byte(path, full - 1);
		}
		assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
		assert_int_equal(file_size(path), last_off);
		read_all(ob, c);
		assert_records(c, 1, 0, 2);
		uint64_t seq = append_n(ob, 2, 1);
		assert_int_equal(seq, 3);
		read_all(ob, c);
		assert_records(c, 1, 0, 3);
		agent_outbox_close(ob);
	}
	fflush(log);
	assert_non_null(strstr(logbuf, "outbox torn tail truncated"));
	char want[64];
	snprintf(want, sizeof(want), "offset=%ld", last_off);
	assert_non_null(strstr(logbuf, want));
	coffer_log_set_stream(NULL);
	fclose(log);
	free(logbuf);
	free(copy);
	free(c);
}

static void
test_mid_corruption_refused(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	append_n(ob, 0, 5);
	agent_outbox_close(ob);
	char path[1024];
	file_path(f, SEG1, path, sizeof(path));
	uint8_t buf[64];
	long rec2 = 32 + 32 + (long)payload_for(0, buf);

	/* A flipped payload byte in record 2 of 5. */
	flip_byte(path, rec2 + 32);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
	assert_null(ob);
	assert_non_null(strstr(err.msg, SEG1));
	char want[64];
	snprintf(want, sizeof(want), "offset %ld", rec2);
	assert_non_null(strstr(err.msg, want));
	assert_true(err.hint[0] != '\0');
	/* Refusing must not have changed anything: undo the damage, all is back. */
	flip_byte(path, rec2 + 32);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	struct collected *c = calloc(1, sizeof(*c));
	read_all(ob, c);
	assert_records(c, 1, 0, 5);
	agent_outbox_close(ob);

	/* A damaged length field hides where the next record starts. */
	flip_byte(path, rec2 + 5);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
	flip_byte(path, rec2 + 5);
	/* So does garbage in place of the magic. */
	flip_byte(path, rec2);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
	flip_byte(path, rec2);
	/* Garbage after the last valid record, with no valid record after it,
	 * is what a torn write leaves: cut off, nothing lost. */
	long size = file_size(path);
	int fd = open(path, O_WRONLY | O_APPEND);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "\0\0\0\0garbage-garbage-garbage-garbage", 36), 36);
	close(fd);
	coffer_log_init("outbox_test", COFFER_LOG_ERROR);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	coffer_log_init("outbox_test", COFFER_LOG_WARN);
	assert_int_equal(file_size(path), size);
	read_all(ob, c);
	assert_records(c, 1, 0, 5);
	agent_outbox_close(ob);
	free(c);
}

static void
test_sealed_segment_damage(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	append_n(ob, 0, 10);
	agent_outbox_close(ob);
	char path[1024];
	file_path(f, SEG1, path, sizeof(path));
	long size = file_size(path);
	/* The last record of a sealed segment cannot be torn: damage there is
	 * refused, not cut off. */
	flip_byte(path, size - 1);
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "sealed"));
	flip_byte(path, size - 1);
	assert_int_equal(truncate(path, size - 1), 0);
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), COFFER_ECORRUPT);
}

static void
test_bad_headers(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	append_n(ob, 0, 3);
	assert_int_equal(agent_outbox_ack(ob, 1, &err), 0);
	agent_outbox_close(ob);
	char seg[1024];
	char st[1024];
	file_path(f, SEG1, seg, sizeof(seg));
	file_path(f, "state", st, sizeof(st));

	flip_byte(seg, 0);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
	flip_byte(seg, 0);
	flip_byte(seg, 11);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_EVERSION);
	flip_byte(seg, 11);
	flip_byte(seg, 20); /* the first seq, which must match the name */
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
	flip_byte(seg, 20);

	flip_byte(st, 20);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "state"));
	flip_byte(st, 20);
	assert_int_equal(truncate(st, 39), 0);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), COFFER_ECORRUPT);
}

static void
test_leftover_temp_files(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	append_n(ob, 0, 2);
	agent_outbox_close(ob);
	/* A writer died while creating a segment or replacing the state. */
	char path[1024];
	file_path(f, "00000000000000000003.seg.tmp", path, sizeof(path));
	int fd = open(path, O_WRONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "CFOU", 4), 4);
	close(fd);
	char st[1024];
	file_path(f, "state.tmp", st, sizeof(st));
	fd = open(st, O_WRONLY | O_CREAT, 0600);
	close(fd);
	assert_int_equal(agent_outbox_open(f->dir, NULL, &ob, &err), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(access(st, F_OK), -1);
	assert_int_equal(append_n(ob, 2, 1), 3);
	agent_outbox_close(ob);
}

static void
test_size_limits(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	assert_int_equal(agent_outbox_open(f->dir, &small, &ob, &err), 0);
	uint8_t big[65] = { 0 };
	uint64_t seq = 0;
	assert_int_equal(agent_outbox_append(ob, big, 65, &seq, &err), COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "65 bytes"));
	assert_int_equal(agent_outbox_append(ob, big, 64, &seq, &err), 0);
	assert_int_equal(seq, 1);

	/* Fill it: every refusal is loud and writes nothing. */
	int rc;
	uint64_t n = 1;
	while ((rc = agent_outbox_append(ob, big, 32, &seq, &err)) == 0) {
		n++;
		assert_true(n < 100);
	}
	assert_int_equal(rc, COFFER_ENOSPC);
	assert_non_null(strstr(err.msg, "full"));
	assert_non_null(strstr(err.hint, "coordinator"));
	agent_outbox_stats st;
	assert_int_equal(agent_outbox_depth(ob, &st, &err), 0);
	assert_int_equal(st.count, n);
	assert_true(st.used_bytes <= small.max_bytes);
	assert_int_equal(agent_outbox_append(ob, big, 1, &seq, &err), COFFER_ENOSPC);
	/* Acks make room again, and seqs carry on. */
	assert_int_equal(agent_outbox_ack(ob, n, &err), 0);
	assert_int_equal(agent_outbox_append(ob, big, 32, &seq, &err), 0);
	assert_int_equal(seq, n + 1);
	for (int i = 0; i < 20; i++) {
		assert_int_equal(agent_outbox_append(ob, big, 32, &seq, &err), 0);
		assert_int_equal(agent_outbox_ack(ob, seq, &err), 0);
	}
	agent_outbox_close(ob);
}

static void
test_bad_arguments(void **state)
{
	struct fixture *f = *state;
	agent_outbox *ob;
	coffer_err err = { 0 };
	agent_outbox_limits l = small;
	l.segment_bytes = 100;
	assert_int_equal(agent_outbox_open(f->dir, &l, &ob, &err), COFFER_EINVAL);
	l = small;
	l.max_bytes = l.segment_bytes - 1;
	assert_int_equal(agent_outbox_open(f->dir, &l, &ob, &err), COFFER_EINVAL);
	l = small;
	l.max_record = AGENT_OUTBOX_FORMAT_MAX_RECORD + 1;
	assert_int_equal(agent_outbox_open(f->dir, &l, &ob, &err), COFFER_EINVAL);
	char missing[1024];
	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	assert_int_equal(agent_outbox_open(missing, NULL, &ob, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.msg, missing));
	assert_true(err.hint[0] != '\0');
}

#define PER_CHILD 1000

static void
test_two_processes(void **state)
{
	struct fixture *f = *state;
	/* Created first, so both children open an existing outbox. */
	agent_outbox *ob;
	coffer_err err = { 0 };
	agent_outbox_limits l = { .max_record = 1024, .segment_bytes = 16 * 1024 };
	assert_int_equal(agent_outbox_open(f->dir, &l, &ob, &err), 0);
	agent_outbox_close(ob);
	pid_t pids[2];
	for (int child = 0; child < 2; child++) {
		pids[child] = fork();
		assert_true(pids[child] >= 0);
		if (pids[child] == 0) {
			agent_outbox *mine;
			if (agent_outbox_open(f->dir, &l, &mine, NULL) != 0) {
				_exit(2);
			}
			for (uint32_t i = 0; i < PER_CHILD; i++) {
				uint8_t buf[8] = { (uint8_t)child, 0, 0, 0 };
				memcpy(buf + 4, &i, 4);
				if (agent_outbox_append(mine, buf, sizeof(buf), NULL, NULL) != 0) {
					_exit(3);
				}
			}
			agent_outbox_close(mine);
			_exit(0);
		}
	}
	for (int child = 0; child < 2; child++) {
		int status;
		assert_int_equal(waitpid(pids[child], &status, 0), pids[child]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(agent_outbox_open(f->dir, &l, &ob, &err), 0);
	uint32_t next_i[2] = { 0, 0 };
	uint64_t want_seq = 1;
	uint64_t after = 0;
	for (;;) {
		struct collected *c = calloc(1, sizeof(*c));
		size_t got = 0;
		assert_int_equal(
		    agent_outbox_foreach(ob, after, 500, 1 << 20, collect_cb, c, &got, &err), 0);
		for (size_t k = 0; k < got; k++) {
			/* Distinct, gapless seqs; each child's records in its order. */
			assert_int_equal(c->seqs[k], want_seq++);
			assert_int_equal(c->lens[k], 8);
			uint8_t who = c->data[k][0];
			assert_true(who < 2);
			uint32_t i;
			memcpy(&i, c->data[k] + 4, 4);
			assert_int_equal(i, next_i[who]);
			next_i[who]++;
		}
		if (got > 0) {
			after = c->seqs[got - 1];
		}
		free(c);
		if (got == 0) {
			break;
		}
	}
	assert_int_equal(next_i[0], PER_CHILD);
	assert_int_equal(next_i[1], PER_CHILD);
	assert_int_equal(want_seq, 2 * PER_CHILD + 1);
	agent_outbox_close(ob);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_append_read_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_keeps_seq, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_handle_sees_appends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mid_corruption_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sealed_segment_damage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leftover_temp_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_size_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_processes, setup, teardown),
	};
	coffer_log_init("outbox_test", COFFER_LOG_WARN);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
