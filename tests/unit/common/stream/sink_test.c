/* Sinks and the pump, against real files, pipes, child processes and
 * /dev/full: full writes (also on non-blocking pipes with a slow reader),
 * fsync on files and pipes, the fd left open, EPIPE and ENOSPC reported
 * clearly, the buffer sink's limit at and past the boundary, and the pump
 * from files and pipes with read, chain and finish failures. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
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

#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"
#include "tests/harness/tmpdir.h"

#define MiB (1024 * 1024)

struct fixture {
	char dir[512];
	char path[600];
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("sink-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->path, sizeof(f->path), "%s/out", f->dir);
	/* EPIPE instead of death, as the daemons set it up. */
	signal(SIGPIPE, SIG_IGN);
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

static uint8_t *
pattern(size_t n)
{
	uint8_t *p = malloc(n);
	assert_non_null(p);
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
	return (p);
}

static void
sha256_of(const uint8_t *data, size_t len, uint8_t md[32])
{
	coffer_err err = { 0 };
	coffer_filter *s = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_filter_write(s, data, len, &err), 0);
	assert_int_equal(coffer_filter_finish(s, &err), 0);
	assert_int_equal(coffer_sha256_filter_digest(s, md), 0);
	coffer_filter_free_chain(s);
}

static void
test_fd_sink_file(void **state)
{
	struct fixture *f = *state;
	size_t len = 3 * MiB + 1;
	uint8_t *data = pattern(len);
	int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	coffer_err err = { 0 };
	coffer_filter *s = coffer_fd_sink_new(fd, &err);
	assert_non_null(s);
	coffer_fd_sink_set_fsync(s, true);
	for (size_t off = 0; off < len; off += 100000) {
		size_t n = len - off < 100000 ? len - off : 100000;
		assert_int_equal(coffer_filter_write(s, data + off, n, &err), 0);
	}
	assert_int_equal(coffer_filter_finish(s, &err), 0);
	assert_int_equal(coffer_fd_sink_bytes(s), len);
	coffer_filter_free(s);
	/* The sink never closes what it did not open. */
	assert_int_not_equal(fcntl(fd, F_GETFD), -1);
	close(fd);

	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	uint8_t *back = malloc(len + 1);
	size_t got = 0;
	ssize_t n;
	while ((n = read(fd, back + got, len + 1 - got)) > 0) {
		got += (size_t)n;
	}
	close(fd);
	assert_int_equal(got, len);
	assert_memory_equal(back, data, len);
	free(back);
	free(data);
}

static void
test_fd_sink_errors(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	assert_null(coffer_fd_sink_new(-1, &err));
	assert_int_equal(err.code, COFFER_EINTERNAL);

	/* A descriptor open for reading only. */
	int fd = open(f->path, O_RDONLY | O_CREAT, 0600);
	assert_true(fd >= 0);
	coffer_filter *s = coffer_fd_sink_new(fd, &err);
	coffer_fd_sink_set_name(s, "the test file");
	assert_int_equal(coffer_filter_write(s, "abc", 3, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "the test file"));
	coffer_filter_free(s);
	close(fd);

	/* Accessors and setters ignore other filter types. */
	coffer_filter *d = coffer_discard_sink_new(&err);
	coffer_fd_sink_set_fsync(d, true);
	coffer_fd_sink_set_name(d, "x");
	assert_int_equal(coffer_fd_sink_bytes(d), 0);
	coffer_filter_free(d);
}

static void
test_fd_sink_dev_full(void **state)
{
	(void)state;
	int fd = open("/dev/full", O_WRONLY);
	if (fd < 0) {
		skip();
	}
	coffer_err err = { 0 };
	coffer_filter *s = coffer_fd_sink_new(fd, &err);
	assert_int_equal(coffer_filter_write(s, "abc", 3, &err), COFFER_ENOSPC);
	assert_int_equal(err.code, COFFER_ENOSPC);
	assert_non_null(strstr(err.msg, "file descriptor"));
	assert_true(err.hint[0] != '\0');
	/* Failed once, refused after: a half-written object is never finished. */
	assert_int_equal(coffer_filter_finish(s, &err), COFFER_EINTERNAL);
	coffer_filter_free(s);
	close(fd);
}

static void
test_fd_sink_broken_pipe(void **state)
{
	(void)state;
	int p[2];
	assert_int_equal(pipe(p), 0);
	close(p[0]);
	coffer_err err = { 0 };
	coffer_filter *s = coffer_fd_sink_new(p[1], &err);
	coffer_fd_sink_set_name(s, "pg_restore's stdin");
	assert_int_equal(coffer_filter_write(s, "abc", 3, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "broken pipe"));
	assert_non_null(strstr(err.msg, "pg_restore's stdin"));
	assert_true(err.hint[0] != '\0');
	coffer_filter_free(s);
	close(p[1]);

	/* A reader that exits part-way: a real child reads 1000 bytes and
	 * leaves; the rest of a large write must fail, not hang or vanish. */
	assert_int_equal(pipe(p), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[1]);
		char buf[1000];
		size_t got = 0;
		while (got < sizeof(buf)) {
			ssize_t n = read(p[0], buf + got, sizeof(buf) - got);
			if (n <= 0) {
				_exit(1);
			}
			got += (size_t)n;
		}
		_exit(0);
	}
	close(p[0]);
	size_t len = 4 * MiB;
	uint8_t *data = pattern(len);
	s = coffer_fd_sink_new(p[1], &err);
	assert_int_equal(coffer_filter_write(s, data, len, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "broken pipe"));
	assert_true(coffer_fd_sink_bytes(s) >= 1000 && coffer_fd_sink_bytes(s) < len);
	coffer_filter_free(s);
	close(p[1]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(data);
}

/* A child that reads its stdin to the end in small bites and writes the
 * SHA-256 of what it read to `out`. */
static pid_t
spawn_hasher(int in, int out, int other)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid != 0) {
		return (pid);
	}
	close(other);
	coffer_err err = { 0 };
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(&err), &err);
	uint8_t md[32];
	if (coffer_filter_pump_fd(in, sha, 777, &err) != 0 ||
	    coffer_sha256_filter_digest(sha, md) != 0 || write(out, md, 32) != 32) {
		_exit(1);
	}
	coffer_filter_free_chain(sha);
	_exit(0);
}

static void
test_fd_sink_nonblocking_pipe(void **state)
{
	(void)state;
	int data_pipe[2], result_pipe[2];
	assert_int_equal(pipe(data_pipe), 0);
	assert_int_equal(pipe(result_pipe), 0);
	pid_t pid = spawn_hasher(data_pipe[0], result_pipe[1], data_pipe[1]);
	close(data_pipe[0]);
	close(result_pipe[1]);
	/* Non-blocking, as a pipe from uv_spawn is: the sink must wait for
	 * the reader instead of failing with EAGAIN. */
	assert_int_equal(fcntl(data_pipe[1], F_SETFL, O_NONBLOCK), 0);
	size_t len = 5 * MiB + 3;
	uint8_t *data = pattern(len);
	coffer_err err = { 0 };
	coffer_filter *s = coffer_fd_sink_new(data_pipe[1], &err);
	coffer_fd_sink_set_fsync(s, true); /* a pipe cannot be synced: accepted */
	assert_int_equal(coffer_filter_write(s, data, len, &err), 0);
	assert_int_equal(coffer_filter_finish(s, &err), 0);
	coffer_filter_free(s);
	close(data_pipe[1]);
	uint8_t want[32], got[32];
	sha256_of(data, len, want);
	assert_int_equal(read(result_pipe[0], got, 32), 32);
	assert_memory_equal(want, got, 32);
	close(result_pipe[0]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(data);
}

static void
test_buffer_sink_limit(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_filter *b = coffer_buffer_sink_new(10000, &err);
	size_t len = 99;
	const uint8_t *p = coffer_buffer_sink_data(b, &len);
	assert_int_equal(len, 0);
	assert_string_equal((const char *)p, "");
	uint8_t *data = pattern(10001);
	for (size_t off = 0; off < 10000; off += 1000) {
		assert_int_equal(coffer_filter_write(b, data + off, 1000, &err), 0);
	}
	p = coffer_buffer_sink_data(b, &len);
	assert_int_equal(len, 10000);
	assert_memory_equal(p, data, 10000);
	assert_int_equal(p[len], '\0');
	assert_int_equal(coffer_filter_write(b, data, 1, &err), COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "10000 bytes"));
	assert_true(err.hint[0] != '\0');
	assert_int_equal(coffer_filter_write(b, data, 1, &err), COFFER_EINTERNAL);
	/* What was accepted before the refusal is still there. */
	p = coffer_buffer_sink_data(b, &len);
	assert_int_equal(len, 10000);
	coffer_filter_free(b);

	/* One write over the limit is refused whole. */
	b = coffer_buffer_sink_new(10000, &err);
	assert_int_equal(coffer_filter_write(b, data, 10001, &err), COFFER_ETOOBIG);
	p = coffer_buffer_sink_data(b, &len);
	assert_int_equal(len, 0);
	coffer_filter_free(b);

	b = coffer_buffer_sink_new(0, &err);
	assert_int_equal(coffer_filter_write(b, "x", 1, &err), COFFER_ETOOBIG);
	coffer_filter_free(b);
	assert_null(coffer_buffer_sink_new(SIZE_MAX, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_null(coffer_buffer_sink_data(NULL, &len));
	assert_int_equal(len, 0);

	coffer_filter *d = coffer_discard_sink_new(&err);
	assert_int_equal(coffer_filter_write(d, data, 10001, &err), 0);
	assert_int_equal(coffer_filter_finish(d, &err), 0);
	assert_null(coffer_buffer_sink_data(d, &len));
	coffer_filter_free(d);
	free(data);
}

static void
test_pump_file(void **state)
{
	struct fixture *f = *state;
	size_t len = 2 * MiB + 7;
	uint8_t *data = pattern(len);
	FILE *fp = fopen(f->path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
	uint8_t want[32];
	sha256_of(data, len, want);
	static const size_t bufsizes[] = { 0, 1, 4095, 1 << 20 };
	for (size_t i = 0; i < sizeof(bufsizes) / sizeof(bufsizes[0]); i++) {
		if (bufsizes[i] == 1) {
			continue; /* 2 MiB one byte at a time is only slow */
		}
		int fd = open(f->path, O_RDONLY);
		coffer_err err = { 0 };
		coffer_filter *cnt = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
		coffer_filter *sha = coffer_sha256_filter_new(cnt, &err);
		assert_non_null(sha);
		coffer_filter *chain = sha;
		assert_int_equal(coffer_filter_pump_fd(fd, chain, bufsizes[i], &err), 0);
		uint8_t got[32];
		/* Finished by the pump: the digest is readable. */
		assert_int_equal(coffer_sha256_filter_digest(sha, got), 0);
		assert_memory_equal(got, want, 32);
		assert_int_equal(coffer_count_filter_bytes(cnt), len);
		coffer_filter_free_chain(chain);
		close(fd);
	}
	/* bufsize 1 on a small input. */
	int fd = open(f->path, O_RDONLY);
	coffer_err err = { 0 };
	coffer_filter *b = coffer_buffer_sink_new(1000, &err);
	assert_int_equal(coffer_filter_pump_fd(fd, b, 1, &err), COFFER_ETOOBIG);
	size_t n = 0;
	const uint8_t *p = coffer_buffer_sink_data(b, &n);
	assert_int_equal(n, 1000);
	assert_memory_equal(p, data, 1000);
	coffer_filter_free(b);
	close(fd);
	free(data);
}

static void
test_pump_errors(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	coffer_filter *d = coffer_discard_sink_new(&err);
	/* Reading a write-only descriptor fails with a message naming it. */
	int fd = open(f->path, O_WRONLY | O_CREAT, 0600);
	assert_int_equal(coffer_filter_pump_fd(fd, d, 0, &err), COFFER_EIO);
	assert_non_null(strstr(err.msg, "read"));
	close(fd);
	assert_int_equal(coffer_filter_pump_fd(-1, d, 0, &err), COFFER_EIO);
	assert_int_equal(coffer_filter_pump_fd(0, NULL, 0, &err), COFFER_EINTERNAL);
	coffer_filter_free(d);

	/* The chain's finish fails: a truncated zstd frame in a file. */
	static const uint8_t cut[] = { 0x28, 0xb5, 0x2f, 0xfd, 0x00 };
	FILE *fp = fopen(f->path, "wb");
	assert_int_equal(fwrite(cut, 1, sizeof(cut), fp), sizeof(cut));
	fclose(fp);
	fd = open(f->path, O_RDONLY);
	coffer_filter *z = coffer_zstd_decompress_new(coffer_discard_sink_new(&err), &err);
	assert_int_equal(coffer_filter_pump_fd(fd, z, 0, &err), COFFER_ETRUNC);
	coffer_filter_free_chain(z);
	close(fd);
}

static void
test_pump_nonblocking_pipe(void **state)
{
	(void)state;
	/* A child writes in pieces with pauses; the pump reads a non-blocking
	 * pipe and must wait for data rather than fail with EAGAIN. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	size_t len = MiB + 11;
	uint8_t *data = pattern(len);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		for (size_t off = 0; off < len; off += 65536) {
			size_t n = len - off < 65536 ? len - off : 65536;
			if (write(p[1], data + off, n) != (ssize_t)n) {
				_exit(1);
			}
			usleep(2000);
		}
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	coffer_err err = { 0 };
	coffer_filter *b = coffer_buffer_sink_new(len, &err);
	assert_int_equal(coffer_filter_pump_fd(p[0], b, 4096, &err), 0);
	size_t n = 0;
	const uint8_t *got = coffer_buffer_sink_data(b, &n);
	assert_int_equal(n, len);
	assert_memory_equal(got, data, len);
	coffer_filter_free(b);
	close(p[0]);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(data);
}

/* The stop filter passes bytes through until its flag is set, then
 * refuses with COFFER_ECANCELED naming what was stopped. */
static void
test_stop_filter(void **state)
{
	(void)state;
	atomic_bool stop = false;
	coffer_err err = { 0 };
	coffer_filter *buf = coffer_buffer_sink_new(64, &err);
	coffer_filter *f = coffer_stop_filter_new(buf, &stop, "the test copy", &err);
	assert_non_null(f);
	assert_int_equal(coffer_filter_write(f, "abc", 3, &err), 0);
	atomic_store(&stop, true);
	assert_int_equal(coffer_filter_write(f, "def", 3, &err), COFFER_ECANCELED);
	assert_string_equal(err.msg, "the test copy was stopped");
	size_t len = 0;
	const uint8_t *data = coffer_buffer_sink_data(buf, &len);
	assert_int_equal(len, 3);
	assert_memory_equal(data, "abc", 3);
	coffer_filter_free_chain(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stop_filter),
		cmocka_unit_test_setup_teardown(test_fd_sink_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_sink_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_sink_dev_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_sink_broken_pipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fd_sink_nonblocking_pipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_buffer_sink_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pump_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pump_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pump_nonblocking_pipe, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
