/*
 * Drill policy (coordinator/policy/coord_config.c, drill.* keys) and the pure parts
 * of the drill scheduler (coordinator/drill/drills.c): which repository a drill
 * uses and when the next one is due. The catalog side (starting drills,
 * intake of results, the sweep) is exercised against a real PostgreSQL by
 * tests/integration/drills.sh.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/cli.h"
#include "coordinator/drill/drills.h"
#include "coordinator/policy/coord_config.h"

#define MINS  (60 * 1000LL)
#define HOURS (60 * MINS)
#define DAYS  (24 * HOURS)

static const char head[] = "[coordinator]\n"
                           "listen = tcp://127.0.0.1:7443\n"
                           "catalog = dbname=coffer\n"
                           "audit_key = /tmp/audit.key\n"
                           "[service.billing]\n"
                           "owner = team-payments\n"
                           "schedule = 0 2 * * *\n"
                           "retention.daily = 7\n";

static coord_config *
load(const char *extra, coffer_err *err)
{
	char text[8192];
	snprintf(text, sizeof(text), "%s%s", head, extra);
	coord_config *c = NULL;
	*err = (coffer_err) { 0 };
	if (coord_config_load_string(text, "d.conf", &c, err) != 0) {
		return (NULL);
	}
	return (c);
}

/* Refused, naming every needle (NULL-terminated) in the message or hint. */
static void
refused(const char *extra, ...)
{
	coffer_err err;
	coord_config *c = load(extra, &err);
	if (c != NULL) {
		coord_config_free(c);
		fail_msg("accepted: %s", extra);
	}
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_true(err.hint[0] != '\0');
	char both[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 4];
	snprintf(both, sizeof(both), "%s | %s", err.msg, err.hint);
	va_list ap;
	va_start(ap, extra);
	for (const char *n = va_arg(ap, const char *); n != NULL; n = va_arg(ap, const char *)) {
		if (strstr(both, n) == NULL) {
			va_end(ap);
			fail_msg("for '%s' want '%s' in: %s", extra, n, both);
		}
	}
	va_end(ap);
}

static void
test_policy_read(void **state)
{
	(void)state;
	coffer_err err;
	coord_config *c = load("drill.schedule = 0 4 * * 1\n"
	                       "drill.runner = drill-1\n"
	                       "drill.backup = random\n"
	                       "drill.window = 14d\n"
	                       "drill.repository = alternate\n"
	                       "dr.copy = daily\n"
	                       "drill.freshness_query = SELECT max(at) FROM invoices\n"
	                       "drill.freshness_max_lag = 2h\n"
	                       "drill.assert.1 = SELECT count(*) > 0 FROM invoices\n"
	                       "drill.assert.3 = SELECT true\n"
	                       "drill.keep_sandbox = false\n"
	                       "drill.rto = 30m\n"
	                       "drill.overdue_after = 15m\n",
	    &err);
	if (c == NULL) {
		fail_msg("refused: %s (%s)", err.msg, err.hint);
	}
	const coord_drill_policy *d = &coord_config_service(c, "billing")->drill;
	assert_string_equal(d->schedule, "0 4 * * 1");
	assert_string_equal(d->runner, "drill-1");
	assert_true(d->random);
	assert_int_equal(d->window_ms, 14 * DAYS);
	assert_int_equal(d->repository, COORD_DRILL_ALTERNATE);
	assert_string_equal(d->freshness_query, "SELECT max(at) FROM invoices");
	assert_int_equal(d->freshness_max_lag_ms, 2 * HOURS);
	/* gaps in the numbering are fine; order is kept */
	assert_int_equal(d->n_asserts, 2);
	assert_string_equal(d->asserts[0], "SELECT count(*) > 0 FROM invoices");
	assert_string_equal(d->asserts[1], "SELECT true");
	assert_false(d->keep_sandbox);
	assert_int_equal(d->rto_ms, 30 * MINS);
	assert_int_equal(d->overdue_after_ms, 15 * MINS);
	coord_config_free(c);

	/* Defaults: no drills at all; a runner alone means manual drills. */
	c = load("", &err);
	assert_non_null(c);
	d = &coord_config_service(c, "billing")->drill;
	assert_null(d->schedule);
	assert_null(d->runner);
	assert_false(d->random);
	assert_int_equal(d->window_ms, 30 * DAYS);
	assert_int_equal(d->repository, COORD_DRILL_PRIMARY);
	assert_false(d->keep_sandbox);
	assert_int_equal(d->rto_ms, 60 * MINS);
	assert_int_equal(d->overdue_after_ms, 1 * HOURS);
	coord_config_free(c);
	c = load("drill.runner = drill-1\n", &err);
	assert_non_null(c);
	coord_config_free(c);
}

static void
test_policy_refusals(void **state)
{
	(void)state;
	refused("drill.schedule = 0 4 * * 1\n", "d.conf:9", "[service.billing] drill.schedule",
	    "drill.runner", "--drill-runner", NULL);
	refused("drill.runner = drill-1\ndrill.repository = dr\n", "d.conf:10", "drill.repository",
	    "dr.copy = none", "rule: a DR drill needs DR copies", NULL);
	refused("drill.runner = drill-1\ndrill.repository = alternate\ndr.copy = none\n",
	    "drill.repository", "dr.copy", NULL);
	refused("drill.runner = r\ndrill.freshness_query = SELECT now()\n", "d.conf:10",
	    "drill.freshness_query", "go together", "drill.freshness_max_lag = 1h", NULL);
	refused("drill.runner = r\ndrill.freshness_max_lag = 1h\n", "drill.freshness_max_lag",
	    "go together", NULL);
	refused("drill.runner = r\ndrill.window = 7d\n", "d.conf:10", "drill.window",
	    "drill.backup = random", NULL);
	refused("drill.runner = r\ndrill.backup = sometimes\n", "drill.backup", "random", NULL);
	refused(
	    "drill.runner = r\ndrill.repository = tape\n", "drill.repository", "alternate", NULL);
	refused("drill.runner = ../etc\n", "drill.runner", "not an agent name", NULL);
	refused("drill.runner = r\ndrill.assert.10 = SELECT true\n", "drill.assert.10", NULL);
	refused("drill.runner = r\ndrill.schedule = 0 99 * * *\n", "drill.schedule", NULL);
	refused("drill.runner = r\ndrill.overdue_after = 0s\n", "drill.overdue_after", NULL);
}

/* Drill keys change the policy version only when set: adding the schema
 * keys did not change the version of services without drills. */
static void
test_policy_version(void **state)
{
	(void)state;
	coffer_err err;
	coord_config *a = load("", &err), *b = load("drill.runner = r\n", &err);
	assert_non_null(a);
	assert_non_null(b);
	char text[8192];
	assert_true(coord_config_policy_text(a->ini, "billing", text, sizeof(text)) > 0);
	assert_null(strstr(text, "drill"));
	assert_string_not_equal(coord_config_service(a, "billing")->version,
	    coord_config_service(b, "billing")->version);
	coord_config_free(a);
	coord_config_free(b);
}

static void
test_pick_repo(void **state)
{
	(void)state;
	coord_drill_policy p = { .repository = COORD_DRILL_PRIMARY };
	assert_string_equal(coord_drills_pick_repo(&p, NULL), "primary");
	assert_string_equal(coord_drills_pick_repo(&p, "primary"), "primary");
	p.repository = COORD_DRILL_DR;
	assert_string_equal(coord_drills_pick_repo(&p, "dr"), "dr");
	assert_string_equal(coord_drills_pick_repo(&p, NULL), "dr");
	p.repository = COORD_DRILL_ALTERNATE;
	assert_string_equal(coord_drills_pick_repo(&p, NULL), "primary");
	assert_string_equal(coord_drills_pick_repo(&p, "primary"), "dr");
	assert_string_equal(coord_drills_pick_repo(&p, "dr"), "primary");
}

static void
test_next_due(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	int64_t due = 0;
	/* 2026-01-01T00:00:00Z */
	const int64_t t0 = 1767225600000LL;
	assert_int_equal(coord_drills_next_due("0 4 * * *", "UTC", t0, &due, &err), 0);
	assert_int_equal(due, t0 + 4 * HOURS);
	/* strictly after the base: a drill started at the slot is not due again */
	assert_int_equal(coord_drills_next_due("0 4 * * *", "UTC", t0 + 4 * HOURS, &due, &err), 0);
	assert_int_equal(due, t0 + DAYS + 4 * HOURS);
	/* in the service's zone: Rome is UTC+1 in January */
	assert_int_equal(coord_drills_next_due("0 4 * * *", "Europe/Rome", t0, &due, &err), 0);
	assert_int_equal(due, t0 + 3 * HOURS);
	assert_int_equal(coord_drills_next_due("0 0 30 2 *", "UTC", t0, &due, &err), COFFER_ENOENT);
	assert_int_equal(coord_drills_next_due("bogus", "UTC", t0, &due, &err), COFFER_EINVAL);
	assert_int_equal(
	    coord_drills_next_due("0 4 * * *", "Mars/Olympus", t0, &due, &err), COFFER_EINVAL);
}

/* `coffer agents enroll --drill-runner --service a --service b`: every
 * value of a repeatable option, in order. */
static void
test_opts_collect(void **state)
{
	(void)state;
	char a0[] = "--drill-runner", a1[] = "--service", a2[] = "billing", a3[] = "--service=shop",
	     a4[] = "--agent", a5[] = "r1", a6[] = "--", a7[] = "--service", a8[] = "x";
	char *argv[] = { a0, a1, a2, a3, a4, a5, a6, a7, a8 };
	char buf[64];
	assert_int_equal(coffer_opts_collect(6, argv, "service", buf, sizeof(buf)), 2);
	assert_string_equal(buf, "billing,shop");
	/* after a lone "--" nothing is an option */
	assert_int_equal(coffer_opts_collect(9, argv, "service", buf, sizeof(buf)), 2);
	assert_string_equal(buf, "billing,shop");
	assert_int_equal(coffer_opts_collect(6, argv, "servic", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "");
	/* does not fit; a value with a comma would split into two names */
	assert_int_equal(coffer_opts_collect(6, argv, "service", buf, 8), -1);
	char c0[] = "--service=a,b";
	char *argv2[] = { c0 };
	assert_int_equal(coffer_opts_collect(1, argv2, "service", buf, sizeof(buf)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_read),
		cmocka_unit_test(test_policy_refusals),
		cmocka_unit_test(test_policy_version),
		cmocka_unit_test(test_pick_repo),
		cmocka_unit_test(test_next_due),
		cmocka_unit_test(test_opts_collect),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
