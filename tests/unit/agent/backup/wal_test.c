/* WAL file names and segment headers: which names wal-push and wal-fetch
 * accept (anything else could reach outside the WAL layout), the timeline
 * each names, and reading the system identifier from a segment's first page,
 * refusing what is not a segment start. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/backup/wal.h"
#include "tests/harness/tmpdir.h"

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
	assert_int_equal(
	    agent_wal_name_parse("0000000A00000003000000FF.partial", &k, &tl, &err), 0);
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
		"00000001000000000000001",   /* 23 digits */
		"0000000100000000000000011", /* 25 */
		"00000001000000000000000a",  /* lower case: PostgreSQL never writes it */
		"000000000000000000000001",  /* timeline 0 */
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

static void
test_next_segment(void **state)
{
	(void)state;
	char next[25];
	coffer_err err = { 0 };
	assert_int_equal(
	    agent_wal_next_segment("000000010000000000000001", 16u << 20, next, &err), 0);
	assert_string_equal(next, "000000010000000000000002");
	/* 16 MiB segments: 256 per 4 GiB "log", so ...FF is followed by the next log. */
	assert_int_equal(
	    agent_wal_next_segment("0000000200000003000000FF", 16u << 20, next, &err), 0);
	assert_string_equal(next, "000000020000000400000000");
	/* 1 GiB segments: 4 per log. */
	assert_int_equal(
	    agent_wal_next_segment("000000010000000000000003", 1u << 30, next, &err), 0);
	assert_string_equal(next, "000000010000000100000000");
	/* Not a power of two, too small, not a segment, the very last one. */
	assert_int_equal(agent_wal_next_segment("000000010000000000000001", 3u << 20, next, &err),
	    COFFER_EINVAL);
	assert_int_equal(
	    agent_wal_next_segment("000000010000000000000001", 4096, next, &err), COFFER_EINVAL);
	assert_int_equal(
	    agent_wal_next_segment("00000001.history", 16u << 20, next, &err), COFFER_EINVAL);
	assert_int_equal(agent_wal_next_segment("00000001FFFFFFFF000000FF", 16u << 20, next, &err),
	    COFFER_EINVAL);
}

/* The cached system identifier: saved once, read back without a database,
 * a different one refused (another cluster), a damaged cache refused. */
static void
test_sysid_cache(void **state)
{
	(void)state;
	char dir[512];
	assert_int_equal(harness_tmpdir_make("wal-test", dir, sizeof(dir)), 0);
	char text[4096];
	snprintf(text, sizeof(text),
	    "[agent]\nname = a\nservice = s\nstate_dir = %s/state\nsigning_key = %s/k\n"
	    "key_ring = %s/r\n[postgres]\nconninfo = host=/nonexistent port=1\n"
	    "[schedule]\nlogical = 0 2 * * *\n[repository.primary]\ntype = posix\npath = %s\n",
	    dir, dir, dir, dir);
	agent_config *cfg = NULL;
	coffer_err err = { 0 };
	assert_int_equal(agent_config_load_string(text, "test.conf", &cfg, &err), 0);

	/* Nothing cached and no server: refused, not guessed. */
	uint64_t id = 0;
	assert_int_not_equal(agent_wal_system_identifier(cfg, &id, &err), 0);
	assert_non_null(strstr(err.msg, "not known yet"));

	assert_int_equal(agent_wal_system_identifier_save(cfg, 7444123456789012345ULL, &err), 0);
	assert_int_equal(agent_wal_system_identifier(cfg, &id, &err), 0);
	assert_true(id == 7444123456789012345ULL);
	assert_int_equal(agent_wal_system_identifier_save(cfg, 7444123456789012345ULL, &err), 0);

	assert_int_equal(agent_wal_system_identifier_save(cfg, 42, &err), COFFER_EREFUSED);
	assert_non_null(strstr(err.msg, "7444123456789012345"));
	assert_true(err.hint[0] != '\0');
	assert_int_equal(agent_wal_system_identifier(cfg, &id, &err), 0);
	assert_true(id == 7444123456789012345ULL);

	char path[1100];
	snprintf(path, sizeof(path), "%s/state/system_identifier", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("12abc\n", f);
	fclose(f);
	assert_int_equal(agent_wal_system_identifier(cfg, &id, &err), COFFER_ECORRUPT);
	assert_non_null(strstr(err.hint, "remove it"));

	assert_int_equal(harness_tmpdir_remove(dir), 0);
	agent_config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_header_sysid),
		cmocka_unit_test(test_sysid_cache),
		cmocka_unit_test(test_next_segment),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
