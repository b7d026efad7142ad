/* No core dumps: after coffer_nocore_apply the process is not dumpable and
 * its soft core limit is 0, while the hard limit is what it was. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "common/base/nocore.h"

static void
test_apply(void **state)
{
	(void)state;
	struct rlimit before;
	assert_int_equal(getrlimit(RLIMIT_CORE, &before), 0);
	coffer_err err = { 0 };
	assert_int_equal(coffer_nocore_apply(&err), 0);
	assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 0);
	struct rlimit after;
	assert_int_equal(getrlimit(RLIMIT_CORE, &after), 0);
	assert_int_equal(after.rlim_cur, 0);
	assert_true(after.rlim_max == before.rlim_max);
	/* A second time changes nothing and still succeeds. */
	assert_int_equal(coffer_nocore_apply(&err), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_apply),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
