/* Hop filter: bytes reach the next filter in order and unchanged however
 * they are split, with the downstream on another thread; a downstream
 * failure surfaces from a later write or from finish with its own message;
 * freeing a hop mid-stream (no finish) stops its worker; bad sizes are
 * refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/stream/digest.h"
#include "common/stream/hop.h"
#include "common/stream/sink.h"

/* A downstream filter that records what it got, and fails after a limit. */
typedef struct recorder {
	coffer_filter f;
	uint8_t *got;
	size_t len, cap, fail_after;
	int finished;
} recorder;

static int
rec_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	recorder *r = (recorder *)f;
	if (r->len + len > r->fail_after) {
		return (coffer_err_set(err, COFFER_EIO, "disk full at byte %zu", r->fail_after));
	}
	if (r->len + len > r->cap) {
		r->cap = (r->len + len) * 2;
		r->got = realloc(r->got, r->cap);
	}
	memcpy(r->got + r->len, buf, len);
	r->len += len;
	return (0);
}

static int
rec_finish(coffer_filter *f, coffer_err *err)
{
	(void)err;
	((recorder *)f)->finished++;
	return (0);
}

static void
rec_destroy(coffer_filter *f)
{
	free(((recorder *)f)->got);
}

static const coffer_filter_ops rec_ops = { "recorder", rec_write, rec_finish, rec_destroy };

static void
test_order_and_content(void **state)
{
	(void)state;
	recorder r = { .f = { .ops = &rec_ops }, .fail_after = SIZE_MAX };
	coffer_err err = { 0 };
	/* r is on the stack: the hop is freed alone, never with its chain. */
	coffer_filter *hop = coffer_hop_filter_new(&r.f, 3, 4096, &err);
	assert_non_null(hop);
	size_t total = 0;
	uint8_t buf[20000];
	srand(7);
	for (int i = 0; i < 2000; i++) {
		size_t n = (size_t)rand() % sizeof(buf);
		for (size_t k = 0; k < n; k++) {
			buf[k] = (uint8_t)((total + k) * 31 + 7);
		}
		assert_int_equal(coffer_filter_write(hop, buf, n, &err), 0);
		total += n;
	}
	assert_int_equal(coffer_filter_finish(hop, &err), 0);
	assert_int_equal(r.finished, 1);
	assert_int_equal(r.len, total);
	for (size_t k = 0; k < total; k++) {
		if (r.got[k] != (uint8_t)(k * 31 + 7)) {
			fail_msg("byte %zu differs", k);
		}
	}
	coffer_filter_free(hop);
	free(r.got);
}

static void
test_downstream_failure(void **state)
{
	(void)state;
	recorder r = { .f = { .ops = &rec_ops }, .fail_after = 100000 };
	coffer_err err = { 0 };
	/* r is on the stack: the hop is freed alone, never with its chain. */
	coffer_filter *hop = coffer_hop_filter_new(&r.f, 2, 4096, &err);
	assert_non_null(hop);
	uint8_t buf[1000] = { 0 };
	int rv = 0;
	for (int i = 0; i < 1000 && rv == 0; i++) {
		rv = coffer_filter_write(hop, buf, sizeof(buf), &err);
	}
	if (rv == 0) {
		rv = coffer_filter_finish(hop, &err);
	}
	assert_int_equal(rv, COFFER_EIO);
	assert_non_null(strstr(err.msg, "disk full at byte 100000"));
	assert_int_equal(r.finished, 0);
	coffer_filter_free(hop);
	free(r.got);
}

static void
test_free_mid_stream(void **state)
{
	(void)state;
	recorder r = { .f = { .ops = &rec_ops }, .fail_after = SIZE_MAX };
	coffer_err err = { 0 };
	/* r is on the stack: the hop is freed alone, never with its chain. */
	coffer_filter *hop = coffer_hop_filter_new(&r.f, 4, 4096, &err);
	assert_non_null(hop);
	uint8_t buf[50000] = { 1 };
	assert_int_equal(coffer_filter_write(hop, buf, sizeof(buf), &err), 0);
	coffer_filter_free(hop); /* joins the worker; must not hang or crash */
	assert_true(r.len <= sizeof(buf));
	free(r.got);
}

static void
test_bad_sizes(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	assert_null(coffer_hop_filter_new(coffer_discard_sink_new(&err), 1, 4096, &err));
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_null(coffer_hop_filter_new(coffer_discard_sink_new(&err), 4, 100, &err));
	assert_null(coffer_hop_filter_new(coffer_discard_sink_new(&err), 65, 4096, &err));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_order_and_content),
		cmocka_unit_test(test_downstream_failure),
		cmocka_unit_test(test_free_mid_stream),
		cmocka_unit_test(test_bad_sizes),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
