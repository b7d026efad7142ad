/*
 * agent/child: real child processes (/bin/sh, sleep, yes, head) run through
 * agent_child_run, for every way a run can end: success with the chain
 * finished, exit status, signal, missing or non-executable binary, deadline,
 * cancel (before and during), SIGKILL after the grace period, a failing
 * chain, and the bounded stderr tail.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent/pg/child.h"
#include "common/base/clock.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

struct chain {
	coffer_filter *hash;
	coffer_filter *buf;
};

static void
chain_new(struct chain *c, size_t max)
{
	coffer_err err;
	c->buf = coffer_buffer_sink_new(max, &err);
	c->hash = coffer_sha256_filter_new(c->buf, &err);
	assert_non_null(c->hash);
}

static bool
chain_finished(const struct chain *c)
{
	uint8_t d[COFFER_SHA256_LEN];
	return (coffer_sha256_filter_digest(c->hash, d) == 0);
}

static int
run_sh(const char *script, coffer_filter *chain, agent_child_result *res, coffer_err *err)
{
	const char *argv[] = { "/bin/sh", "-c", script, NULL };
	agent_child_spec spec = { .argv = argv, .name = "sh", .stdout_chain = chain };
	return (agent_child_run(&spec, res, err));
}

static void
test_success_finishes_chain(void **state)
{
	(void)state;
	struct chain c;
	chain_new(&c, 1 << 20);
	agent_child_result res;
	coffer_err err = { 0 };
	assert_int_equal(run_sh("printf hello; printf oops >&2", c.hash, &res, &err), 0);
	size_t len;
	const uint8_t *data = coffer_buffer_sink_data(c.buf, &len);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "hello", 5);
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 0);
	assert_int_equal(res.stdout_bytes, 5);
	assert_string_equal(res.stderr_tail, "oops");
	assert_true(chain_finished(&c));
	coffer_filter_free_chain(c.hash);
}

static void
test_stdin_is_dev_null(void **state)
{
	(void)state;
	struct chain c;
	chain_new(&c, 1024);
	agent_child_result res;
	coffer_err err = { 0 };
	/* A child that reads stdin must see EOF at once, not hang on ours. */
	assert_int_equal(run_sh("readlink /proc/$$/fd/0; cat", c.hash, &res, &err), 0);
	size_t len;
	const uint8_t *data = coffer_buffer_sink_data(c.buf, &len);
	assert_int_equal(len, strlen("/dev/null\n"));
	assert_memory_equal(data, "/dev/null\n", len);
	coffer_filter_free_chain(c.hash);
}

static void
test_large_output_streams(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_filter *count = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
	assert_non_null(count);
	agent_child_result res;
	assert_int_equal(run_sh("head -c 5000000 /dev/zero", count, &res, &err), 0);
	assert_int_equal(coffer_count_filter_bytes(count), 5000000);
	assert_int_equal(res.stdout_bytes, 5000000);
	coffer_filter_free_chain(count);
}

static void
test_exit_status_keeps_chain_open(void **state)
{
	(void)state;
	struct chain c;
	chain_new(&c, 1 << 20);
	agent_child_result res;
	coffer_err err = { 0 };
	int rv = run_sh("printf partial; echo 'sh: error: boom' >&2; exit 3", c.hash, &res, &err);
	assert_int_equal(rv, COFFER_ECHILD);
	assert_non_null(strstr(err.msg, "sh exited with status 3: sh: error: boom"));
	assert_true(err.hint[0] != '\0');
	assert_true(res.exited);
	assert_int_equal(res.exit_status, 3);
	assert_false(chain_finished(&c));
	coffer_filter_free_chain(c.hash);
}

static void
test_killed_by_signal(void **state)
{
	(void)state;
	agent_child_result res;
	coffer_err err = { 0 };
	assert_int_equal(run_sh("kill -KILL $$", NULL, &res, &err), COFFER_ECHILD);
	assert_false(res.exited);
	assert_int_equal(res.term_signal, SIGKILL);
	assert_non_null(strstr(err.msg, "killed by signal 9 (SIGKILL)"));
}

static void
test_missing_binary(void **state)
{
	(void)state;
	const char *argv[] = { "/nonexistent/dir/pg_dump", "--version", NULL };
	agent_child_spec spec = { .argv = argv, .not_found_hint = "set [postgres] bin_dir" };
	agent_child_result res;
	coffer_err err = { 0 };
	assert_int_equal(agent_child_run(&spec, &res, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.msg, "pg_dump"));
	assert_string_equal(err.hint, "set [postgres] bin_dir");
}

static void
test_not_executable(void **state)
{
	(void)state;
	char path[] = "/tmp/child_test.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!/bin/sh\n", 10), 10);
	close(fd);
	chmod(path, 0600);
	const char *argv[] = { path, NULL };
	agent_child_spec spec = { .argv = argv };
	coffer_err err = { 0 };
	assert_int_equal(agent_child_run(&spec, NULL, &err), COFFER_EPERM);
	assert_non_null(strstr(err.msg, "not executable"));
	unlink(path);
}

static void
test_deadline_stops_child(void **state)
{
	(void)state;
	const char *argv[] = { "sleep", "60", NULL };
	agent_child_spec spec = {
		.argv = argv,
		.deadline_ms = coffer_clock_monotonic_ms() + 200,
	};
	agent_child_result res;
	coffer_err err = { 0 };
	assert_int_equal(agent_child_run(&spec, &res, &err), COFFER_ETIMEDOUT);
	assert_int_equal(res.term_signal, SIGTERM);
	assert_non_null(strstr(err.msg, "sleep did not finish within its"));

	spec.deadline_what = "completion_window = 2h";
	spec.deadline_ms = coffer_clock_monotonic_ms() + 100;
	assert_int_equal(agent_child_run(&spec, &res, &err), COFFER_ETIMEDOUT);
	assert_non_null(strstr(err.msg, "within completion_window = 2h"));
}

static void
test_deadline_already_passed(void **state)
{
	(void)state;
	/* A missing binary proves nothing was started. */
	const char *argv[] = { "/nonexistent/x", NULL };
	agent_child_spec spec = { .argv = argv, .deadline_ms = coffer_clock_monotonic_ms() - 1 };
	coffer_err err = { 0 };
	assert_int_equal(agent_child_run(&spec, NULL, &err), COFFER_ETIMEDOUT);
}

static void
test_sigkill_after_grace(void **state)
{
	(void)state;
	const char *argv[] = { "/bin/sh", "-c", "trap '' TERM; exec sleep 60", NULL };
	agent_child_spec spec = {
		.argv = argv,
		.deadline_ms = coffer_clock_monotonic_ms() + 300,
		.kill_grace_ms = 200,
	};
	agent_child_result res;
	coffer_err err = { 0 };
	assert_int_equal(agent_child_run(&spec, &res, &err), COFFER_ETIMEDOUT);
	assert_int_equal(res.term_signal, SIGKILL);
}

struct later {
	agent_cancel *c;
	long ms;
};

static void *
cancel_later(void *arg)
{
	struct later *l = arg;
	struct timespec ts = { .tv_sec = 0, .tv_nsec = l->ms * 1000000L };
	nanosleep(&ts, NULL);
	agent_cancel_trigger(l->c);
	return (NULL);
}

static void
test_cancel_from_thread(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	agent_cancel *c;
	assert_int_equal(agent_cancel_new(&c, &err), 0);
	assert_false(agent_cancel_requested(c));
	const char *argv[] = { "sleep", "60", NULL };
	agent_child_spec spec = { .argv = argv, .cancel = c };
	struct later l = { c, 150 };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, cancel_later, &l), 0);
	agent_child_result res;
	assert_int_equal(agent_child_run(&spec, &res, &err), COFFER_ECANCELED);
	pthread_join(th, NULL);
	assert_true(agent_cancel_requested(c));
	assert_int_equal(res.term_signal, SIGTERM);

	/* A triggered cancel stays triggered: nothing starts any more. */
	const char *missing[] = { "/nonexistent/x", NULL };
	spec.argv = missing;
	assert_int_equal(agent_child_run(&spec, NULL, &err), COFFER_ECANCELED);
	agent_cancel_free(c);
}

static void
test_chain_failure_kills_child(void **state)
{
	(void)state;
	struct chain c;
	chain_new(&c, 1 << 20);
	const char *argv[] = { "yes", NULL };
	agent_child_spec spec = { .argv = argv, .stdout_chain = c.hash };
	agent_child_result res;
	coffer_err err = { 0 };
	/* yes never ends by itself: only the runner stopping it ends the test. */
	assert_int_equal(agent_child_run(&spec, &res, &err), COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "writing yes output"));
	/* Closing its pipe makes it fail (stdio pipes are sockets: ECONNRESET),
	 * or SIGTERM gets it first; either way it did not succeed. */
	assert_true(!res.exited || res.exit_status != 0);
	assert_false(chain_finished(&c));
	coffer_filter_free_chain(c.hash);
}

static void
test_stderr_tail_bounded(void **state)
{
	(void)state;
	agent_child_result res;
	coffer_err err = { 0 };
	int rv = run_sh(
	    "head -c 20000 /dev/zero | tr '\\0' x >&2; printf END >&2; exit 1", NULL, &res, &err);
	assert_int_equal(rv, COFFER_ECHILD);
	assert_int_equal(res.stderr_len, AGENT_CHILD_STDERR_MAX);
	assert_true(res.stderr_cut);
	assert_int_equal(strlen(res.stderr_tail), AGENT_CHILD_STDERR_MAX);
	assert_string_equal(res.stderr_tail + AGENT_CHILD_STDERR_MAX - 3, "END");
	/* The message carries the end, cut at the front. */
	assert_non_null(strstr(err.msg, ": ...xxx"));
	assert_non_null(strstr(err.msg, "xEND"));
}

static void
test_env_add(void **state)
{
	(void)state;
	setenv("COFFER_CHILD_T", "old", 1);
	struct chain c;
	chain_new(&c, 1024);
	const char *argv[] = { "/bin/sh", "-c",
		"printf '%s/%s' \"$COFFER_CHILD_T\" \"$COFFER_CHILD_U\"", NULL };
	const char *env[] = { "COFFER_CHILD_T=new", "COFFER_CHILD_U=u", NULL };
	agent_child_spec spec = { .argv = argv, .env_add = env, .stdout_chain = c.hash };
	coffer_err err = { 0 };
	assert_int_equal(agent_child_run(&spec, NULL, &err), 0);
	size_t len;
	const uint8_t *data = coffer_buffer_sink_data(c.buf, &len);
	assert_int_equal(len, 5);
	assert_memory_equal(data, "new/u", 5);
	coffer_filter_free_chain(c.hash);
	unsetenv("COFFER_CHILD_T");
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_success_finishes_chain),
		cmocka_unit_test(test_stdin_is_dev_null),
		cmocka_unit_test(test_large_output_streams),
		cmocka_unit_test(test_exit_status_keeps_chain_open),
		cmocka_unit_test(test_killed_by_signal),
		cmocka_unit_test(test_missing_binary),
		cmocka_unit_test(test_not_executable),
		cmocka_unit_test(test_deadline_stops_child),
		cmocka_unit_test(test_deadline_already_passed),
		cmocka_unit_test(test_sigkill_after_grace),
		cmocka_unit_test(test_cancel_from_thread),
		cmocka_unit_test(test_chain_failure_kills_child),
		cmocka_unit_test(test_stderr_tail_bounded),
		cmocka_unit_test(test_env_add),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
