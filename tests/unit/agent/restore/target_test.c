/* Recovery targets: each option's value checked at its boundaries, one
 * target kind at a time, the settings written with every value quoted
 * (a quote doubled, a backslash escaped, a control character refused),
 * and the LSN and segment arithmetic the window uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/restore/target.h"

static int
parse(agent_target_args a, agent_target *t, coffer_err *err)
{
	coffer_err_clear(err);
	return (agent_target_parse(&a, t, err));
}

static void
test_one_kind(void **state)
{
	(void)state;
	agent_target t;
	coffer_err err;
	assert_int_equal(parse((agent_target_args) { 0 }, &t, &err), 0);
	assert_int_equal(t.kind, AGENT_TARGET_NONE);
	assert_int_equal(t.inclusive, -1);
	assert_int_equal(t.action, AGENT_ACTION_PROMOTE);
	assert_int_equal(
	    parse((agent_target_args) { .lsn = "0/1", .xid = "100" }, &t, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "more than one recovery target"));
	assert_int_equal(
	    parse((agent_target_args) { .time = "2026-01-01T00:00:00Z", .target = "immediate" }, &t,
	        &err),
	    COFFER_EINVAL);
	assert_int_equal(parse((agent_target_args) { .target = "immediate" }, &t, &err), 0);
	assert_int_equal(t.kind, AGENT_TARGET_IMMEDIATE);
	assert_int_equal(
	    parse((agent_target_args) { .target = "latest" }, &t, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "--target 'latest' is not a target"));
}

static void
test_values(void **state)
{
	(void)state;
	agent_target t;
	coffer_err err;
	assert_int_equal(parse((agent_target_args) { .lsn = "16/B374D848" }, &t, &err), 0);
	assert_int_equal(t.lsn, (UINT64_C(0x16) << 32) | 0xB374D848u);
	const char *bad_lsn[] = { "zz", "0/", "/1", "1", "0/1/2", "123456789/0", "0/123456789",
		"0/-1", " 0/1", "" };
	for (size_t i = 0; i < sizeof(bad_lsn) / sizeof(bad_lsn[0]); i++) {
		assert_int_equal(
		    parse((agent_target_args) { .lsn = bad_lsn[i] }, &t, &err), COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "is not an LSN"));
	}
	assert_int_equal(parse((agent_target_args) { .xid = "3" }, &t, &err), 0);
	assert_int_equal(t.xid, 3);
	const char *bad_xid[] = { "2", "0", "-5", "12x", "", "+7", "99999999999999999999999" };
	for (size_t i = 0; i < sizeof(bad_xid) / sizeof(bad_xid[0]); i++) {
		assert_int_equal(
		    parse((agent_target_args) { .xid = bad_xid[i] }, &t, &err), COFFER_EINVAL);
	}
	assert_int_equal(
	    parse((agent_target_args) { .time = "yesterday" }, &t, &err), COFFER_EINVAL);
	assert_int_equal(parse((agent_target_args) { .name = "" }, &t, &err), COFFER_EINVAL);
	char long_name[AGENT_TARGET_NAME_MAX + 2];
	memset(long_name, 'n', sizeof(long_name) - 1);
	long_name[sizeof(long_name) - 1] = '\0';
	assert_int_equal(parse((agent_target_args) { .name = long_name }, &t, &err), COFFER_EINVAL);
	long_name[AGENT_TARGET_NAME_MAX] = '\0';
	assert_int_equal(parse((agent_target_args) { .name = long_name }, &t, &err), 0);
	assert_int_equal(parse((agent_target_args) { .name = "a\nb" }, &t, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "control character"));
}

static void
test_inclusive_and_action(void **state)
{
	(void)state;
	agent_target t;
	coffer_err err;
	assert_int_equal(
	    parse((agent_target_args) { .xid = "10", .inclusive = "false" }, &t, &err), 0);
	assert_int_equal(t.inclusive, 0);
	assert_int_equal(parse((agent_target_args) { .xid = "10", .inclusive = "maybe" }, &t, &err),
	    COFFER_EINVAL);
	assert_int_equal(parse((agent_target_args) { .name = "x", .inclusive = "true" }, &t, &err),
	    COFFER_EINVAL);
	assert_int_equal(
	    parse((agent_target_args) { .inclusive = "true" }, &t, &err), COFFER_EINVAL);
	assert_int_equal(
	    parse((agent_target_args) { .name = "x", .action = "pause" }, &t, &err), 0);
	assert_int_equal(t.action, AGENT_ACTION_PAUSE);
	assert_int_equal(
	    parse((agent_target_args) { .name = "x", .action = "stop" }, &t, &err), COFFER_EINVAL);
	assert_int_equal(
	    parse((agent_target_args) { .action = "shutdown" }, &t, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "needs a recovery target"));
}

static void
test_settings_quoted(void **state)
{
	(void)state;
	agent_target t;
	coffer_err err;
	char buf[512] = "";
	size_t len = 0;
	assert_int_equal(parse((agent_target_args) { .name = "it's \\ 'q'" }, &t, &err), 0);
	assert_int_equal(agent_target_settings(&t, buf, sizeof(buf), &len, &err), 0);
	assert_string_equal(buf,
	    "recovery_target_name = 'it''s \\\\ ''q'''\n"
	    "recovery_target_action = 'promote'\n");
	assert_int_equal(len, strlen(buf));
	buf[0] = '\0';
	len = 0;
	assert_int_equal(parse((agent_target_args) { .time = "2026-11-24T17:05:00.250Z",
	                           .inclusive = "false",
	                           .action = "shutdown" },
	                     &t, &err),
	    0);
	assert_int_equal(agent_target_settings(&t, buf, sizeof(buf), &len, &err), 0);
	assert_string_equal(buf,
	    "recovery_target_time = '2026-11-24 17:05:00.250+00'\n"
	    "recovery_target_inclusive = 'false'\n"
	    "recovery_target_action = 'shutdown'\n");
	char q[8];
	assert_int_equal(agent_conf_quote("a\tb", q, sizeof(q), &err), COFFER_EINVAL);
	assert_int_equal(agent_conf_quote("abcdefgh", q, sizeof(q), &err), COFFER_ETOOBIG);
	char small[16] = "";
	len = 0;
	assert_int_equal(
	    agent_target_settings(&t, small, sizeof(small), &len, &err), COFFER_ETOOBIG);
}

static void
test_segments(void **state)
{
	(void)state;
	uint32_t tl = 0;
	uint64_t segno = 0;
	uint64_t mib16 = UINT64_C(16) << 20;
	assert_int_equal(agent_segment_number("0000000200000001000000FF", mib16, &tl, &segno), 0);
	assert_int_equal(tl, 2);
	assert_int_equal(segno, 256 + 255);
	char name[25];
	agent_segment_name(2, segno + 1, mib16, name);
	assert_string_equal(name, "000000020000000200000000");
	/* 1 GiB segments: four per 4 GiB, so 00000004 cannot exist. */
	assert_int_equal(
	    agent_segment_number("000000010000000000000004", UINT64_C(1) << 30, &tl, &segno),
	    COFFER_EINVAL);
	assert_int_equal(
	    agent_segment_number("00000001000000000000000", mib16, &tl, &segno), COFFER_EINVAL);
	assert_int_equal(
	    agent_segment_number("00000001000000000000000g", mib16, &tl, &segno), COFFER_EINVAL);
	char lsn[20];
	agent_lsn_format((UINT64_C(1) << 32) | 0x28, lsn);
	assert_string_equal(lsn, "1/28");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_kind),
		cmocka_unit_test(test_values),
		cmocka_unit_test(test_inclusive_and_action),
		cmocka_unit_test(test_settings_quoted),
		cmocka_unit_test(test_segments),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
