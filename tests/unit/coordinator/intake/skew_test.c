/* The clock skew arithmetic (coordinator/intake/skew.c): a sample is the
 * agent's clock minus ours and never overflows; the estimate keeps the
 * smallest sample of its window, so one delayed envelope does not move it
 * and one good sample brings it back at once; a window ends after
 * COORD_SKEW_WINDOW_MS (and when our clock steps back), and the bound is
 * strict on both sides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "coordinator/intake/skew.h"

#define DAY_MS (INT64_C(86400) * 1000)
#define T0     INT64_C(1700000000000)

static void
test_sample(void **state)
{
	(void)state;
	assert_int_equal(coord_skew_sample(T0 + DAY_MS, T0), DAY_MS);
	assert_int_equal(coord_skew_sample(T0 - 3 * 3600 * 1000, T0), -3 * 3600 * 1000);
	assert_int_equal(coord_skew_sample(T0, T0 + 40), -40); /* transit */
	assert_int_equal(coord_skew_sample(INT64_MAX, INT64_MIN), COORD_SKEW_SAMPLE_MAX_MS);
	assert_int_equal(coord_skew_sample(INT64_MIN, INT64_MAX), -COORD_SKEW_SAMPLE_MAX_MS);
	assert_int_equal(coord_skew_sample(0, T0), -T0);
}

static void
test_first_sample_is_taken(void **state)
{
	(void)state;
	coord_skew none = { 0 };
	coord_skew s = coord_skew_update(none, DAY_MS, T0);
	assert_true(s.known);
	assert_int_equal(s.skew_ms, DAY_MS);
	assert_int_equal(s.since_ms, T0);
}

static void
test_window_keeps_the_smallest(void **state)
{
	(void)state;
	coord_skew s = coord_skew_update((coord_skew) { 0 }, -20, T0);
	/* An envelope that waited 5 minutes in a queue: ignored. */
	s = coord_skew_update(s, -300000, T0 + 1000);
	assert_int_equal(s.skew_ms, -20);
	assert_int_equal(s.since_ms, T0);
	/* A smaller one wins, the window does not move. */
	s = coord_skew_update(s, 5, T0 + 2000);
	assert_int_equal(s.skew_ms, 5);
	assert_int_equal(s.since_ms, T0);
}

static void
test_fixed_clock_resolves_at_once(void **state)
{
	(void)state;
	coord_skew s = coord_skew_update((coord_skew) { 0 }, 30 * DAY_MS, T0);
	s = coord_skew_update(s, -15, T0 + 1000);
	assert_int_equal(s.skew_ms, -15);
	assert_false(coord_skew_beyond(s.skew_ms, 120000));
}

static void
test_jump_is_seen_after_the_window(void **state)
{
	(void)state;
	coord_skew s = coord_skew_update((coord_skew) { 0 }, 10, T0);
	s = coord_skew_update(s, DAY_MS, T0 + COORD_SKEW_WINDOW_MS - 1);
	assert_int_equal(s.skew_ms, 10);
	s = coord_skew_update(s, DAY_MS, T0 + COORD_SKEW_WINDOW_MS);
	assert_int_equal(s.skew_ms, DAY_MS);
	assert_int_equal(s.since_ms, T0 + COORD_SKEW_WINDOW_MS);
	assert_true(coord_skew_beyond(s.skew_ms, 120000));
}

static void
test_our_clock_stepped_back(void **state)
{
	(void)state;
	coord_skew s = coord_skew_update((coord_skew) { 0 }, 10, T0);
	s = coord_skew_update(s, 7200000, T0 - 3600000);
	assert_int_equal(s.skew_ms, 7200000);
	assert_int_equal(s.since_ms, T0 - 3600000);
}

static void
test_bound(void **state)
{
	(void)state;
	assert_false(coord_skew_beyond(120000, 120000));
	assert_false(coord_skew_beyond(-120000, 120000));
	assert_true(coord_skew_beyond(120001, 120000));
	assert_true(coord_skew_beyond(-120001, 120000));
	assert_false(coord_skew_beyond(0, 0));
	assert_true(coord_skew_beyond(-COORD_SKEW_SAMPLE_MAX_MS, 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sample),
		cmocka_unit_test(test_first_sample_is_taken),
		cmocka_unit_test(test_window_keeps_the_smallest),
		cmocka_unit_test(test_fixed_clock_resolves_at_once),
		cmocka_unit_test(test_jump_is_seen_after_the_window),
		cmocka_unit_test(test_our_clock_stepped_back),
		cmocka_unit_test(test_bound),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
