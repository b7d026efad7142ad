/* WAL continuity's arithmetic (coordinator/wal/walwatch.h): a segment name
 * to its number at every segment size PostgreSQL allows, and every name
 * that is not a segment refused rather than misread, so a gap is never
 * computed from garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "coordinator/wal/walwatch.h"

static void
test_segno(void **state)
{
	(void)state;
	/* 16 MiB segments: 256 per log. */
	assert_int_equal(coord_walwatch_segno("000000010000000000000001", 256), 1);
	assert_int_equal(coord_walwatch_segno("0000000100000001000000FF", 256), 256 + 255);
	/* The timeline does not count. */
	assert_int_equal(coord_walwatch_segno("0000000A0000000200000003", 256), 2 * 256 + 3);
	/* 1 GiB segments: 4 per log; 1 MiB: 4096. */
	assert_int_equal(coord_walwatch_segno("000000010000000500000003", 4), 23);
	assert_int_equal(coord_walwatch_segno("000000010000000100000FFF", 4096), 4096 + 4095);
	/* A longer name (.partial) still starts with its segment. */
	assert_int_equal(coord_walwatch_segno("000000010000000000000002.partial", 256), 2);
	assert_int_equal(
	    coord_walwatch_segno("00000001FFFFFFFF000000FF", 256), (int64_t)0xFFFFFFFF * 256 + 255);
}

static void
test_not_segments(void **state)
{
	(void)state;
	assert_int_equal(coord_walwatch_segno(NULL, 256), -1);
	assert_int_equal(coord_walwatch_segno("", 256), -1);
	assert_int_equal(coord_walwatch_segno("00000001000000000000001", 256), -1);  /* 23 */
	assert_int_equal(coord_walwatch_segno("0000000100000000000000ff", 256), -1); /* case */
	assert_int_equal(coord_walwatch_segno("000000010000000G00000001", 256), -1);
	assert_int_equal(coord_walwatch_segno("00000001.history0000000001", 256), -1);
	/* A log number whose segment number would not fit is refused. */
	assert_int_equal(coord_walwatch_segno("0000000100000002000000FF", INT64_MAX), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segno),
		cmocka_unit_test(test_not_segments),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
