/* Names (common/base/name.h): the one rule for agents, services, operators
 * and repositories, and the catalog's id rule, at every boundary -- the
 * lengths either side of the limit, each allowed and refused first
 * character, and bytes a path, a label or a shell would misread. Then the
 * promise that matters: what agent.conf accepts, enrollment, the manifest
 * and the admin endpoint accept too, because they all ask here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/name.h"

static void
test_lengths(void **state)
{
	(void)state;
	char s[COFFER_NAME_ID_MAX + 2];
	memset(s, 'a', sizeof(s));
	s[COFFER_NAME_MAX] = '\0';
	assert_true(coffer_name_valid(s)); /* 63 */
	s[COFFER_NAME_MAX] = 'a';
	s[COFFER_NAME_MAX + 1] = '\0';
	assert_false(coffer_name_valid(s)); /* 64 */
	assert_true(coffer_name_id_valid(s));
	memset(s, 'a', sizeof(s));
	s[COFFER_NAME_ID_MAX] = '\0';
	assert_true(coffer_name_id_valid(s)); /* 128 */
	s[COFFER_NAME_ID_MAX] = 'a';
	s[COFFER_NAME_ID_MAX + 1] = '\0';
	assert_false(coffer_name_id_valid(s)); /* 129 */
	assert_false(coffer_name_valid(""));
	assert_false(coffer_name_id_valid(""));
	assert_false(coffer_name_valid(NULL));
	assert_false(coffer_name_id_valid(NULL));
	assert_true(coffer_name_valid("a"));
	assert_true(coffer_name_valid("7"));
}

static void
test_first_character(void **state)
{
	(void)state;
	static const char *const ok[] = { "billing", "Billing-db-1", "0day", "a.b_c-d", "z" };
	static const char *const bad[] = { ".hidden", "-rf", "_private", ":x", ".", "..", "" };
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		assert_true(coffer_name_valid(ok[i]));
		assert_true(coffer_name_id_valid(ok[i]));
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_false(coffer_name_valid(bad[i]));
		assert_false(coffer_name_id_valid(bad[i]));
	}
}

static void
test_characters(void **state)
{
	(void)state;
	char s[3] = { 'a', 0, 0 };
	for (int c = 1; c < 256; c++) {
		s[1] = (char)c;
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		bool name = alnum || c == '.' || c == '_' || c == '-';
		assert_int_equal(coffer_name_valid(s), name);
		assert_int_equal(coffer_name_id_valid(s), name || c == ':');
	}
	assert_false(coffer_name_valid("a/b"));
	assert_false(coffer_name_valid("a b"));
	assert_false(coffer_name_valid("caf\xc3\xa9"));
	assert_false(coffer_name_valid("a\"b"));
	assert_false(coffer_name_valid("a:b"));
	assert_true(coffer_name_id_valid("20261124T155603Z-l-3fa2c1"));
	assert_true(coffer_name_id_valid("billing:2026-11-24T15:56:03Z"));
}

static void
test_check_error(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	assert_int_equal(coffer_name_check("billing", "service name", &err), 0);
	assert_int_equal(coffer_name_check("-billing", "service name", &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "'-billing' is not a valid service name"));
	assert_non_null(strstr(err.hint, "starting with a letter or a digit"));
	assert_int_equal(coffer_name_check(NULL, "name", &err), COFFER_EINVAL);
	assert_int_equal(coffer_name_check("x y", "name", NULL), COFFER_EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lengths),
		cmocka_unit_test(test_first_character),
		cmocka_unit_test(test_characters),
		cmocka_unit_test(test_check_error),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
