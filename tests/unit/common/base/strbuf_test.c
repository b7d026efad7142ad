/* The string builder (common/base/strbuf.h): appends of every kind in
 * order, growth past the first allocation, the ceiling that turns the
 * builder failed (and keeps it failed, with later appends ignored), take
 * and reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/strbuf.h"

static void
test_appends(void **state)
{
	(void)state;
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	assert_string_equal(coffer_strbuf_text(&b), "");
	coffer_strbuf_put(&b, "ab");
	coffer_strbuf_putc(&b, 'c');
	coffer_strbuf_putn(&b, "defgh", 2);
	coffer_strbuf_printf(&b, "-%d-%s", 42, "x");
	assert_string_equal(coffer_strbuf_text(&b), "abcde-42-x");
	assert_int_equal(b.len, 10);
	/* Grow well past the first allocation, printf included. */
	for (int i = 0; i < 1000; i++) {
		coffer_strbuf_printf(&b, "%04d", i);
	}
	assert_false(b.failed);
	assert_int_equal(b.len, 10 + 4000);
	assert_memory_equal(coffer_strbuf_text(&b) + 10 + 4 * 999, "0999", 5);
	char *t = coffer_strbuf_take(&b);
	assert_non_null(t);
	assert_int_equal(strlen(t), 4010);
	free(t);
	assert_null(b.buf);
	assert_string_equal(coffer_strbuf_text(&b), "");
	coffer_strbuf_free(&b);
}

static void
test_ceiling(void **state)
{
	(void)state;
	coffer_strbuf b = COFFER_STRBUF_INIT(8);
	coffer_strbuf_put(&b, "12345678"); /* exactly the ceiling */
	assert_false(b.failed);
	coffer_strbuf_putc(&b, '9');
	assert_true(b.failed);
	coffer_strbuf_put(&b, "more");
	coffer_strbuf_printf(&b, "%s", "more");
	assert_int_equal(b.len, 8);
	assert_null(coffer_strbuf_take(&b)); /* a failed text is never handed out */
	assert_int_equal(b.max, 8);          /* take keeps the ceiling */
	coffer_strbuf_printf(&b, "%s", "123456789");
	assert_true(b.failed);
	coffer_strbuf_reset(&b);
	assert_false(b.failed);
	coffer_strbuf_put(&b, "ok");
	assert_string_equal(coffer_strbuf_text(&b), "ok");
	coffer_strbuf_free(&b);
	assert_int_equal(b.max, 8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_appends),
		cmocka_unit_test(test_ceiling),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
