/* Numbers as text (common/base/fmt.h): the integer extremes fit the one
 * buffer size, and byte counts round the way people read them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/fmt.h"

static void
test_integers(void **state)
{
	(void)state;
	char buf[COFFER_FMT_INT_SIZE];
	assert_string_equal(coffer_fmt_i64(buf, 0), "0");
	assert_string_equal(coffer_fmt_i64(buf, -1), "-1");
	assert_string_equal(coffer_fmt_i64(buf, INT64_MIN), "-9223372036854775808");
	assert_string_equal(coffer_fmt_i64(buf, INT64_MAX), "9223372036854775807");
	assert_string_equal(coffer_fmt_u64(buf, UINT64_MAX), "18446744073709551615");
	assert_ptr_equal(coffer_fmt_u64(buf, 7), buf);
}

static void
test_bytes(void **state)
{
	(void)state;
	char buf[COFFER_FMT_BYTES_SIZE];
	assert_string_equal(coffer_fmt_bytes(buf, 0), "0 B");
	assert_string_equal(coffer_fmt_bytes(buf, 1023), "1023 B");
	assert_string_equal(coffer_fmt_bytes(buf, 1024), "1.0 KiB");
	assert_string_equal(coffer_fmt_bytes(buf, 1536), "1.5 KiB");
	assert_string_equal(coffer_fmt_bytes(buf, 1048576.0 * 3.25), "3.2 MiB");
	assert_string_equal(coffer_fmt_bytes(buf, 1099511627776.0 * 2), "2.0 TiB");
	/* Past the largest unit the number grows instead. */
	assert_string_equal(coffer_fmt_bytes(buf, 1125899906842624.0 * 4096), "4096.0 PiB");
	assert_string_equal(coffer_fmt_bytes(buf, -5), "0 B");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_bytes),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
