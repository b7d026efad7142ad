/* Drill runs that end before any repository or server is touched: a runner
 * asked to drill a service it holds no keys for refuses with the fix, and
 * reports it as the run's one failed check (agent/restore/drill.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/context/agent_config.h"
#include "agent/restore/drill.h"

#define RUNNER                                   \
	"[agent]\n"                              \
	"name = drill-1\n"                       \
	"role = drill_runner\n"                  \
	"state_dir = /var/lib/coffer-runner\n"   \
	"signing_key = /etc/coffer/runner.key\n" \
	"[repository.primary]\n"                 \
	"type = posix\n"                         \
	"path = /srv/coffer\n"                   \
	"[drill]\n"                              \
	"sandbox = host=/tmp port=5999\n"        \
	"[drill.billing]\n"                      \
	"key_ring = /k\n"                        \
	"verify_key = /v\n"

/* Leaves junk where agent_drill_run's locals will live, so a run that reads
 * one it never set (it once closed an agent_ctx it had not filled) fails
 * here rather than passing on a stack that happened to be zero. */
static void __attribute__((noinline)) dirty_stack(void)
{
	volatile unsigned char junk[16384];
	for (size_t i = 0; i < sizeof(junk); i++) {
		junk[i] = 0xa5;
	}
}

static void
test_service_without_keys(void **state)
{
	(void)state;
	agent_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(agent_config_load_string(RUNNER, "runner.conf", &cfg, &err), 0);
	agent_drill_request req = {
		.drill_id = 7,
		.service = "payroll",
		.backup = "latest",
		.repository = "primary",
	};
	agent_drill_result res;
	dirty_stack();
	assert_int_equal(agent_drill_run(cfg, &req, &res, &err), COFFER_EINVAL);
	assert_false(res.ok);
	assert_int_equal(res.n_checks, 1);
	assert_string_equal(res.checks[0].name, "verify");
	assert_false(res.checks[0].ok);
	assert_non_null(strstr(res.checks[0].detail, "no keys for service payroll"));
	assert_non_null(strstr(err.hint, "add [drill.payroll]"));
	agent_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_without_keys),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
