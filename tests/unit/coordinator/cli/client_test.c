/* The operator CLI's rendering (coordinator/cli/client.h): fields absent,
 * null or of the wrong type print "-" instead of garbage; sizes, ages and
 * durations read the way people read them; tables align every column to
 * its widest cell; --output accepts text and json only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "coordinator/cli/client.h"

static void
test_fields(void **state)
{
	(void)state;
	cJSON *o =
	    cJSON_Parse("{\"s\":\"billing\",\"e\":\"\",\"n\":42,\"b\":1536,\"big\":3221225472,"
	                "\"age\":11520,\"day\":90061,\"ms\":850,\"msl\":61000,\"null\":null,"
	                "\"str\":\"12\"}");
	assert_non_null(o);
	char buf[32];
	assert_string_equal(coord_cli_str(o, "s"), "billing");
	assert_string_equal(coord_cli_str(o, "e"), "-");
	assert_string_equal(coord_cli_str(o, "missing"), "-");
	assert_string_equal(coord_cli_str(o, "n"), "-");
	assert_string_equal(coord_cli_num(o, "n", buf, sizeof(buf)), "42");
	assert_string_equal(coord_cli_num(o, "str", buf, sizeof(buf)), "-");
	assert_string_equal(coord_cli_num(o, "null", buf, sizeof(buf)), "-");
	assert_string_equal(coord_cli_bytes(o, "b", buf, sizeof(buf)), "1.5 KiB");
	assert_string_equal(coord_cli_bytes(o, "big", buf, sizeof(buf)), "3.0 GiB");
	assert_string_equal(coord_cli_bytes(o, "missing", buf, sizeof(buf)), "-");
	assert_string_equal(coord_cli_age(o, "age", buf, sizeof(buf)), "3h12m");
	assert_string_equal(coord_cli_age(o, "day", buf, sizeof(buf)), "1d1h");
	assert_string_equal(coord_cli_age(o, "null", buf, sizeof(buf)), "-");
	assert_string_equal(coord_cli_ms(o, "ms", buf, sizeof(buf)), "850ms");
	assert_string_equal(coord_cli_ms(o, "msl", buf, sizeof(buf)), "1m01s");
	cJSON_Delete(o);
}

static void
test_table(void **state)
{
	(void)state;
	const char *const headers[] = { "SERVICE", "STATUS", "SIZE" };
	coord_cli_table *t = coord_cli_table_new(3, headers);
	assert_non_null(t);
	const char *const r1[] = { "billing", "completed", "1.5 KiB" };
	const char *const r2[] = { "a-much-longer-service", NULL, "-" };
	coord_cli_table_row(t, r1);
	coord_cli_table_row(t, r2);
	fflush(stdout);
	char path[] = "/tmp/coffer-cli-table-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	int saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	coord_cli_table_print(t);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	coord_cli_table_free(t);
	char out[512] = { 0 };
	assert_true(pread(fd, out, sizeof(out) - 1, 0) > 0);
	close(fd);
	unlink(path);
	assert_string_equal(out,
	    "SERVICE                STATUS     SIZE\n"
	    "billing                completed  1.5 KiB\n"
	    "a-much-longer-service  -          -\n");
}

static void
test_output_flag(void **state)
{
	(void)state;
	static const coffer_cmd cmd = { .name = "backups list" };
	bool json = true;
	assert_int_equal(coord_cli_output_json(&cmd, NULL, &json), 0);
	assert_false(json);
	assert_int_equal(coord_cli_output_json(&cmd, "text", &json), 0);
	assert_false(json);
	assert_int_equal(coord_cli_output_json(&cmd, "json", &json), 0);
	assert_true(json);
	assert_int_equal(coord_cli_output_json(&cmd, "yaml", &json), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_output_flag),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
