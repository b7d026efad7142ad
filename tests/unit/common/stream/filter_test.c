/* Building chains back to front (common/stream/filter.h): nested
 * constructors read in pipeline order; a constructor that fails in the
 * middle frees the tail it was handed and keeps its own error, and every
 * constructor outside it passes the NULL on without touching err, so the
 * caller needs no unwinding (run under LeakSanitizer, a leaked tail fails
 * the test); a borrow lets a chain be built in front of a lent one without
 * ever freeing it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/crypto/seal.h"
#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/hop.h"
#include "common/stream/progress.h"
#include "common/stream/sink.h"

/* A heap sink that keeps what reaches it and says when it is freed, so a
 * test sees a tail freed, not only the absence of a leak report. */
typedef struct probe {
	coffer_filter base;
	uint8_t got[1 << 16];
	size_t len;
	int finished;
	int *freed;
} probe;

static int
probe_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	probe *p = (probe *)f;
	if (p->len + len > sizeof(p->got)) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "probe is full"));
	}
	memcpy(p->got + p->len, buf, len);
	p->len += len;
	return (0);
}

static int
probe_finish(coffer_filter *f, coffer_err *err)
{
	(void)err;
	((probe *)f)->finished++;
	return (0);
}

static void
probe_destroy(coffer_filter *f)
{
	probe *p = (probe *)f;
	(*p->freed)++;
	free(p);
}

static const coffer_filter_ops probe_ops = { "probe", probe_write, probe_finish, probe_destroy };

static coffer_filter *
probe_new(int *freed)
{
	probe *p = calloc(1, sizeof(*p));
	assert_non_null(p);
	p->base.ops = &probe_ops;
	p->freed = freed;
	return (&p->base);
}

/* A pass-through that appends its letter to every write and to a log when
 * it is finished, so the order bytes and finishes take is visible. It
 * follows the constructor rule itself. */
typedef struct tag {
	coffer_filter base;
	char letter;
	char *finish_log;
} tag;

static int
tag_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	tag *t = (tag *)f;
	uint8_t out[256];
	if (len + 1 > sizeof(out)) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "tag: write too long"));
	}
	memcpy(out, buf, len);
	out[len] = (uint8_t)t->letter;
	return (coffer_filter_write(f->next, out, len + 1, err));
}

static int
tag_finish(coffer_filter *f, coffer_err *err)
{
	(void)err;
	tag *t = (tag *)f;
	size_t n = strlen(t->finish_log);
	t->finish_log[n] = t->letter;
	t->finish_log[n + 1] = '\0';
	return (0);
}

static void
tag_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops tag_ops = { "tag", tag_write, tag_finish, tag_destroy };

static coffer_filter *
tag_new(coffer_filter *next, char letter, char *finish_log, coffer_err *err)
{
	if (next == NULL) {
		return (NULL);
	}
	tag *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		coffer_filter_free_chain(next);
		return (NULL);
	}
	t->base.ops = &tag_ops;
	t->base.next = next;
	t->letter = letter;
	t->finish_log = finish_log;
	return (&t->base);
}

static void
test_nested_reads_in_pipeline_order(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	int freed = 0;
	char finish_log[8] = "";
	coffer_filter *sink = probe_new(&freed);
	coffer_filter *chain =
	    tag_new(tag_new(tag_new(sink, 'c', finish_log, &err), 'b', finish_log, &err), 'a',
	        finish_log, &err);
	assert_non_null(chain);
	assert_int_equal(coffer_filter_write(chain, "x", 1, &err), 0);
	assert_int_equal(coffer_filter_finish(chain, &err), 0);
	/* Written outermost first: a, then b, then c, then the sink. */
	assert_int_equal(((probe *)sink)->len, 4);
	assert_memory_equal(((probe *)sink)->got, "xabc", 4);
	assert_string_equal(finish_log, "abc");
	assert_int_equal(((probe *)sink)->finished, 1);
	/* The head owns the whole chain. */
	coffer_filter_free_chain(chain);
	assert_int_equal(freed, 1);
}

static void
test_real_filters_in_pipeline_order(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	int freed = 0;
	uint8_t plain[20000];
	for (size_t i = 0; i < sizeof(plain); i++) {
		plain[i] = (uint8_t)("abcabd"[i % 6]);
	}
	/* sha256 -> zstd -> count -> probe: the digest is of the plaintext,
	 * the count and the probe see the frame. Inner filters are named
	 * where they are built, to read their results afterwards. */
	coffer_filter *sink = probe_new(&freed);
	coffer_filter *cnt = coffer_count_filter_new(sink, &err);
	coffer_filter *zstd = coffer_zstd_compress_new(cnt, 3, 0, &err);
	coffer_filter *sha = coffer_sha256_filter_new(zstd, &err);
	assert_non_null(sha);
	assert_int_equal(coffer_filter_write(sha, plain, sizeof(plain), &err), 0);
	assert_int_equal(coffer_filter_finish(sha, &err), 0);

	probe *p = (probe *)sink;
	assert_int_equal(coffer_zstd_bytes_in(zstd), sizeof(plain));
	assert_int_equal(coffer_count_filter_bytes(cnt), coffer_zstd_bytes_out(zstd));
	assert_int_equal(p->len, coffer_count_filter_bytes(cnt));
	assert_true(p->len < sizeof(plain));
	uint8_t want[COFFER_SHA256_LEN], got[COFFER_SHA256_LEN];
	assert_int_equal(coffer_sha256_filter_digest(sha, got), 0);

	/* The probe holds a frame that decompresses to the plaintext. */
	coffer_filter *check_cnt = coffer_count_filter_new(coffer_discard_sink_new(&err), &err);
	coffer_filter *check_sha = coffer_sha256_filter_new(check_cnt, &err);
	coffer_filter *unzstd = coffer_zstd_decompress_new(check_sha, &err);
	assert_non_null(unzstd);
	assert_int_equal(coffer_filter_write(unzstd, p->got, p->len, &err), 0);
	assert_int_equal(coffer_filter_finish(unzstd, &err), 0);
	assert_int_equal(coffer_sha256_filter_digest(check_sha, want), 0);
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(coffer_count_filter_bytes(check_cnt), sizeof(plain));
	coffer_filter_free_chain(unzstd);

	coffer_filter_free_chain(sha);
	assert_int_equal(freed, 1);
}

static void
test_failure_in_the_middle_frees_the_tail(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	int freed = 0;
	/* A bad level fails zstd after count and the probe were built; sha256
	 * and progress outside it get NULL. Nothing is left to free: the
	 * probe says it went, LeakSanitizer says the count filter did. */
	coffer_filter *chain = coffer_progress_filter_new(
	    coffer_sha256_filter_new(
	        coffer_zstd_compress_new(
	            coffer_count_filter_new(probe_new(&freed), &err), 99, 0, &err),
	        &err),
	    "test", 0, &err);
	assert_null(chain);
	assert_int_equal(freed, 1);
	/* The error is zstd's own, not overwritten by the constructors outside. */
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "compression level 99"));
	assert_non_null(strstr(err.hint, "use a level"));

	/* The same with a hop, which has a mutex and condition variables to
	 * undo and a worker thread it must never start. */
	freed = 0;
	coffer_err_clear(&err);
	atomic_bool stop = false;
	chain = coffer_stop_filter_new(
	    coffer_hop_filter_new(
	        coffer_sha256_filter_new(coffer_zstd_decompress_new(probe_new(&freed), &err), &err),
	        1, 4096, &err),
	    &stop, "test", &err);
	assert_null(chain);
	assert_int_equal(freed, 1);
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "hop: 1 slots"));

	/* Failing at the innermost step (the sink) leaves nothing either. */
	coffer_err_clear(&err);
	chain = coffer_count_filter_new(
	    coffer_sha256_filter_new(coffer_fd_sink_new(-1, &err), &err), &err);
	assert_null(chain);
	assert_int_equal(err.code, COFFER_EINTERNAL);
	assert_non_null(strstr(err.msg, "invalid descriptor -1"));
}

static void
test_null_next_keeps_the_inner_error(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_err_set(&err, COFFER_EIO, "the inner constructor's message");
	coffer_err_hint(&err, "the inner constructor's hint");
	coffer_err before = err;
	atomic_bool stop = false;
	/* Arguments that would be refused on their own (a bad level, a bad
	 * hop size, no key ring) prove NULL is checked first: err stays. */
	assert_null(coffer_sha256_filter_new(NULL, &err));
	assert_null(coffer_count_filter_new(NULL, &err));
	assert_null(coffer_zstd_compress_new(NULL, 99, -7, &err));
	assert_null(coffer_zstd_decompress_new(NULL, &err));
	assert_null(coffer_hop_filter_new(NULL, 0, 0, &err));
	assert_null(coffer_progress_filter_new(NULL, "test", 0, &err));
	assert_null(coffer_stop_filter_new(NULL, &stop, "test", &err));
	assert_null(coffer_seal_filter_new(NULL, NULL, "no-such-key", 1, &err));
	assert_null(coffer_unseal_filter_new(NULL, NULL, &err));
	assert_memory_equal(&err, &before, sizeof(err));
}

static void
test_borrow_leaves_the_lent_chain(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	int freed = 0;
	coffer_filter *lent = probe_new(&freed);

	/* Building in front of it fails: the lent chain is still there. */
	coffer_filter *mine = coffer_sha256_filter_new(
	    coffer_zstd_compress_new(coffer_borrow_filter_new(lent, &err), 99, 0, &err), &err);
	assert_null(mine);
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_int_equal(freed, 0);

	/* Built: bytes and finish go through to the lent chain, and freeing
	 * ours leaves it to its owner. */
	coffer_err_clear(&err);
	coffer_filter *cnt = coffer_count_filter_new(coffer_borrow_filter_new(lent, &err), &err);
	assert_non_null(cnt);
	assert_int_equal(coffer_filter_write(cnt, "lent", 4, &err), 0);
	assert_int_equal(coffer_filter_finish(cnt, &err), 0);
	coffer_filter_free_chain(cnt);
	assert_int_equal(freed, 0);
	assert_int_equal(((probe *)lent)->len, 4);
	assert_memory_equal(((probe *)lent)->got, "lent", 4);
	assert_int_equal(((probe *)lent)->finished, 1);
	coffer_filter_free_chain(lent);
	assert_int_equal(freed, 1);

	/* Nothing to borrow is a bug, said so. */
	assert_null(coffer_borrow_filter_new(NULL, &err));
	assert_int_equal(err.code, COFFER_EINTERNAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nested_reads_in_pipeline_order),
		cmocka_unit_test(test_real_filters_in_pipeline_order),
		cmocka_unit_test(test_failure_in_the_middle_frees_the_tail),
		cmocka_unit_test(test_null_next_keeps_the_inner_error),
		cmocka_unit_test(test_borrow_leaves_the_lent_chain),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
