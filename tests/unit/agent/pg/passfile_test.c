/* Passfile: a conninfo's password leaves the string and lands in a 0600
 * file in a 0700 directory of its own, which libpq can read back (the
 * quoting of ':' and '\'), and is gone after remove. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/pg/passfile.h"

static void
read_file(const char *path, char *buf, size_t size)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, size - 1, f);
	buf[n] = '\0';
	fclose(f);
}

static void
test_password_moves_to_passfile(void **state)
{
	(void)state;
	const char *forms[] = { "host=db port=5433 user=app password='p:w\\\\x' dbname=shop",
		"postgresql://app:p%3Aw%5Cx@db:5433/shop" };
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		agent_passfile pf;
		char *ci = NULL;
		coffer_err err = { 0 };
		assert_int_equal(agent_passfile_conninfo(forms[i], &pf, &ci, &err), 0);
		assert_null(strstr(ci, "p:w"));
		assert_null(strstr(ci, "password"));
		assert_non_null(strstr(ci, "user='app'"));
		assert_non_null(strstr(ci, "dbname='shop'"));
		assert_non_null(strstr(ci, "passfile='"));
		assert_non_null(strstr(ci, pf.path));
		struct stat st;
		assert_int_equal(stat(pf.dir, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0700);
		assert_int_equal(stat(pf.path, &st), 0);
		assert_int_equal(st.st_mode & 0777, 0600);
		char line[256];
		read_file(pf.path, line, sizeof(line));
		assert_string_equal(line, "*:*:*:*:p\\:w\\\\x\n");
		char dir[256];
		snprintf(dir, sizeof(dir), "%s", pf.dir);
		agent_passfile_remove(&pf);
		agent_passfile_remove(&pf);
		assert_int_not_equal(stat(dir, &st), 0);
		free(ci);
	}
}

static void
test_no_password_no_file(void **state)
{
	(void)state;
	agent_passfile pf;
	char *ci = NULL;
	coffer_err err = { 0 };
	assert_int_equal(
	    agent_passfile_conninfo("host=/run/postgresql dbname=x", &pf, &ci, &err), 0);
	assert_false(pf.written);
	assert_string_equal(pf.dir, "");
	assert_null(strstr(ci, "passfile"));
	agent_passfile_remove(&pf);
	free(ci);
	assert_int_equal(agent_passfile_conninfo("host=db password=Secret-7 bogus", &pf, &ci, &err),
	    COFFER_EINVAL);
	assert_null(ci);
	assert_null(strstr(err.msg, "Secret-7"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_password_moves_to_passfile),
		cmocka_unit_test(test_no_password_no_file),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
