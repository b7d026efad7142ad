/* WAL file names and segment headers: which names wal-push and wal-fetch
 * accept (anything else could reach outside the WAL layout), the timeline
 * each names, and reading the system identifier from a segment's first page,
 * refusing what is not a segment start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/wal.h"

static void
test_names(void **state)
{
	(void)state;
	agent_wal_kind k = 0;
	uint32_t tl = 0;
	coffer_err err = { 0 };
	assert_int_equal(agent_wal_name_parse("000000010000000000000001", &k, &tl, &err), 0);
	assert_int_equal(k, AGENT_WAL_SEGMENT);
	assert_int_equal(tl, 1);
	assert_int_equal(agent_wal_name_parse("0000000A00000003000000FF.partial", &k, &tl, &err), 0);
	assert_int_equal(k, AGENT_WAL_PARTIAL);
	assert_int_equal(tl, 10);
	assert_int_equal(
	    agent_wal_name_parse("000000020000000000000004.00000028.backup", &k, &tl, &err), 0);
	assert_int_equal(k, AGENT_WAL_BACKUP);
	assert_int_equal(tl, 2);
	assert_int_equal(agent_wal_name_parse("0000001F.history", &k, &tl, &err), 0);
	assert_int_equal(k, AGENT_WAL_HISTORY);
	assert_int_equal(tl, 31);
}

static void
test_bad_names(void **state)
{
	(void)state;
	const char *bad[] = {
		"",
		"00000001000000000000001",           /* 23 digits */
		"0000000100000000000000011",         /* 25 */
		"00000001000000000000000a",          /* lower case: PostgreSQL never writes it */
		"000000000000000000000001",          /* timeline 0 */
		"../../../etc/passwd",
		"000000010000000000000001/x",
		"000000010000000000000001.partia",
		"000000010000000000000001.0000002.backup",
		"00000001.history.x",
		"RECOVERYXLOG",
		"000000010000000000000001 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		agent_wal_kind k = 0;
		uint32_t tl = 77;
		coffer_err err = { 0 };
		assert_int_equal(agent_wal_name_parse(bad[i], &k, &tl, &err), COFFER_EINVAL);
		assert_true(err.msg[0] != '\0');
		assert_true(err.hint[0] != '\0');
		assert_int_equal(tl, 77); /* untouched on failure */
	}
}

static void
test_header_sysid(void **state)
{
	(void)state;
	uint8_t page[AGENT_WAL_LONG_HEADER_LEN] = { 0 };
	uint16_t magic = 0xD110, info = 0x0002 | 0x0004;
	uint64_t sysid = 7444123456789012345ULL;
	memcpy(page, &magic, 2);
	memcpy(page + 2, &info, 2);
	memcpy(page + 24, &sysid, 8);
	uint64_t got = 0;
	coffer_err err = { 0 };
	assert_int_equal(agent_wal_header_sysid(page, sizeof(page), &got, &err), 0);
	assert_true(got == sysid);

	/* A page without the long header: not a segment's first page. */
	info = 0x0001;
	memcpy(page + 2, &info, 2);
	assert_int_equal(agent_wal_header_sysid(page, sizeof(page), &got, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.msg, "long header"));

	/* Too short to hold one. */
	assert_int_equal(agent_wal_header_sysid(page, 39, &got, &err), COFFER_ECORRUPT);
	assert_int_equal(agent_wal_header_sysid(page, 0, &got, &err), COFFER_ECORRUPT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_header_sysid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
