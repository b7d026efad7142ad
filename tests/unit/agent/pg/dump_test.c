/*
 * agent/dump: pg_dump's argv, and the refusal of every dump_options word
 * that would break the agent's contract with pg_dump, written each way
 * getopt_long would accept it (bundled, glued, separate, abbreviated).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agent/pg/dump.h"

static void
test_fixed_arguments(void **state)
{
	(void)state;
	char **argv;
	coffer_err err = { 0 };
	assert_int_equal(agent_dump_argv("/usr/bin/pg_dump", "00000003-0000001B-1",
	                     "host=/run/postgresql dbname=billing", NULL, &argv, &err),
	    0);
	const char *want[] = { "/usr/bin/pg_dump", "-Fc", "-Z0", "--snapshot=00000003-0000001B-1",
		"--no-owner", "--no-privileges", "--dbname=host=/run/postgresql dbname=billing",
		NULL };
	for (size_t i = 0; want[i] != NULL; i++) {
		assert_non_null(argv[i]);
		assert_string_equal(argv[i], want[i]);
	}
	assert_null(argv[7]);
	agent_dump_argv_free(argv);

	/* Blank options add nothing. */
	assert_int_equal(agent_dump_argv("pg_dump", "S", "", " \t\n ", &argv, &err), 0);
	assert_string_equal(argv[6], "--dbname=");
	assert_null(argv[7]);
	agent_dump_argv_free(argv);
}

static void
test_extra_options_kept_in_order(void **state)
{
	(void)state;
	char **argv;
	coffer_err err = { 0 };
	assert_int_equal(agent_dump_argv("pg_dump", "S", "dbname=x",
	                     "  -v --lock-wait-timeout 60s\t-E \"Odd\" --role=a.b  ", &argv, &err),
	    0);
	const char *want[] = { "-v", "--lock-wait-timeout", "60s", "-E", "\"Odd\"", "--role=a.b",
		"--dbname=dbname=x", NULL };
	for (size_t i = 0; want[i] != NULL; i++) {
		assert_non_null(argv[6 + i]);
		assert_string_equal(argv[6 + i], want[i]);
	}
	agent_dump_argv_free(argv);
}

static void
expect_ok(const char *opts)
{
	char **argv = NULL;
	coffer_err err = { 0 };
	int rv = agent_dump_argv("pg_dump", "S", "", opts, &argv, &err);
	if (rv != 0) {
		print_error("refused \"%s\": %s\n", opts, err.msg);
	}
	assert_int_equal(rv, 0);
	agent_dump_argv_free(argv);
}

static void
expect_refused(const char *opts, const char *text)
{
	char **argv = (char **)&argv; /* must be reset to NULL */
	coffer_err err = { 0 };
	int rv = agent_dump_argv("pg_dump", "S", "", opts, &argv, &err);
	if (rv != COFFER_EINVAL) {
		print_error("accepted \"%s\"\n", opts);
	}
	assert_int_equal(rv, COFFER_EINVAL);
	assert_null(argv);
	assert_non_null(strstr(err.msg, "[postgres] dump_options"));
	if (text != NULL && strstr(err.msg, text) == NULL) {
		print_error("\"%s\": message lacks \"%s\": %s\n", opts, text, err.msg);
		fail();
	}
	assert_true(err.hint[0] != '\0');
}

static void
test_allowed(void **state)
{
	(void)state;
	const char *ok[] = {
		"-v",
		"-Fc",
		"-F c",
		"-FC",
		"--format=custom",
		"--format c",
		"--format=C",
		"-Z0",
		"-Z 0",
		"-vZ0",
		"--compress=0",
		"--compress 0",
		"--compress=none",
		"--encoding UTF8",
		"-E UTF8",
		"-EUTF8",
		"-E -f", /* -f is the encoding here */
		"-j 2",
		"--jobs=2",
		"--no-password",
		"-w",
		"--role=backup",
		"--no-comments",
		"--extension=pgcrypto",
		"-e pgcrypto",
		"--include-foreign-data=srv",
		"-vx",
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		expect_ok(ok[i]);
	}
}

static void
test_refused(void **state)
{
	(void)state;
	struct {
		const char *opts;
		const char *text;
	} bad[] = {
		{ "-Fp", "custom format" },
		{ "-F p", "custom format" },
		{ "-Fd", "custom format" },
		{ "-vFt", "custom format" },
		{ "--format=plain", "custom format" },
		{ "--format directory", "custom format" },
		{ "--form=c", NULL },
		{ "-F", "value is missing" },
		{ "--format", "value is missing" },
		{ "-f out.dump", "standard output" },
		{ "-fout.dump", "standard output" },
		{ "-vf out", "-f" },
		{ "--file=x", "standard output" },
		{ "--file x", "standard output" },
		{ "--fi=x", NULL },
		{ "--snapshot=1", "snapshot" },
		{ "--snap 1", "snapshot" },
		{ "-Z9", "-Z0" },
		{ "-Z 5", "-Z0" },
		{ "-vZ9", "-Z0" },
		{ "--compress=9", "-Z0" },
		{ "--compress gzip", "-Z0" },
		{ "-d x", "conninfo" },
		{ "--dbname=x", "conninfo" },
		{ "-h elsewhere", "conninfo" },
		{ "--host=elsewhere", "conninfo" },
		{ "-p 5433", "conninfo" },
		{ "--port=5433", "conninfo" },
		{ "-U postgres", "conninfo" },
		{ "--username=postgres", "conninfo" },
		{ "-W", "passfile" },
		{ "--password", "passfile" },
		{ "--help", "no dump" },
		{ "--version", "no dump" },
		{ "-V", "no dump" },
		{ "-?", "no dump" },
		{ "--", "end pg_dump's options" },
		{ "-", "bare word" },
		{ "billing", "bare word" },
		{ "-v billing", "bare word" },
		{ "--no-owner extra", "bare word" },
		{ "--=x", "name is missing" },
		{ "-t foo", "partial" },
		{ "-vtfoo", "partial" },
		{ "--table=foo", "partial" },
		{ "--tab=foo", "partial" },
		{ "-T foo", "partial" },
		{ "-n s", "partial" },
		{ "-N s", "partial" },
		{ "--schema=s", "partial" },
		{ "-s", "partial" },
		{ "--schema-only", "partial" },
		{ "-a", "partial" },
		{ "--data-only", "partial" },
		{ "--section=data", "partial" },
		{ "--exclude-table-data=logs", "partial" },
		{ "--no-unlogged-table-data", "partial" },
		{ "--filter=list.txt", "partial" },
		{ "--table-and-children=t", "partial" },
		/* No shell quoting: the second word would be the database name. */
		{ "--role \"Weird Name\"", "bare word" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		expect_refused(bad[i].opts, bad[i].text);
	}
}

static void
test_missing_inputs(void **state)
{
	(void)state;
	char **argv;
	coffer_err err = { 0 };
	assert_int_equal(agent_dump_argv("pg_dump", "", "", NULL, &argv, &err), COFFER_EINTERNAL);
	assert_null(argv);
	assert_int_equal(agent_dump_argv(NULL, "S", "", NULL, &argv, &err), COFFER_EINTERNAL);
	agent_dump_argv_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_arguments),
		cmocka_unit_test(test_extra_options_kept_in_order),
		cmocka_unit_test(test_allowed),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_missing_inputs),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
