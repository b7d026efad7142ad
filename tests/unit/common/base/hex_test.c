/* Hex (common/base/hex.h): the one encoder and decoder every digest, key,
 * signature and nonce goes through. Round trips over every byte value,
 * either case in and lower case out, and every way a value can be the
 * wrong length or hold a non-digit refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/hex.h"

static void
test_hex_round_trip(void **state)
{
	(void)state;
	uint8_t in[256], back[256];
	for (size_t i = 0; i < sizeof(in); i++) {
		in[i] = (uint8_t)i;
	}
	char hex[2 * sizeof(in) + 1];
	coffer_hex_encode(in, sizeof(in), hex);
	assert_int_equal(strlen(hex), 512);
	assert_memory_equal(hex, "000102030405060708090a0b0c0d0e0f10", 34);
	assert_string_equal(hex + 500, "fafbfcfdfeff");
	coffer_err err = { 0 };
	assert_int_equal(coffer_hex_decode(hex, back, sizeof(back), &err), 0);
	assert_memory_equal(in, back, sizeof(in));

	uint8_t two[2];
	assert_int_equal(coffer_hex_decode("aBcD", two, 2, &err), 0);
	assert_int_equal(two[0], 0xab);
	assert_int_equal(two[1], 0xcd);
	char empty[1];
	coffer_hex_encode(in, 0, empty);
	assert_string_equal(empty, "");
	assert_int_equal(coffer_hex_decode("", two, 0, &err), 0);
}

static void
test_hex_decode_strict(void **state)
{
	(void)state;
	uint8_t out[4];
	coffer_err err = { 0 };
	static const char *const bad[] = {
		"",           /* empty */
		"0011223",    /* one digit short */
		"001122334",  /* one digit long */
		"0011223344", /* one byte long */
		"00112g33",   /* not hex */
		"0x112233",   /* prefix */
		" 0112233",   /* space */
		"00112233\n", /* trailing newline */
		"0011-233",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		coffer_err_clear(&err);
		assert_int_equal(coffer_hex_decode(bad[i], out, sizeof(out), &err), COFFER_EINVAL);
		assert_int_equal(err.code, COFFER_EINVAL);
		assert_true(err.msg[0] != '\0');
		assert_true(err.hint[0] != '\0');
	}
	assert_int_equal(coffer_hex_decode("00112g33", out, 4, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "position 6"));
	assert_int_equal(coffer_hex_decode("0011223", out, 4, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "7 digits"));
	assert_int_equal(coffer_hex_decode(NULL, out, 4, &err), COFFER_EINVAL);
	/* err may be NULL: the code alone still comes back. */
	assert_int_equal(coffer_hex_decode("zz", out, 1, NULL), COFFER_EINVAL);
}

static void
test_hex_digit(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		int want = -1;
		if (c >= '0' && c <= '9') {
			want = c - '0';
		} else if (c >= 'a' && c <= 'f') {
			want = c - 'a' + 10;
		} else if (c >= 'A' && c <= 'F') {
			want = c - 'A' + 10;
		}
		assert_int_equal(coffer_hex_digit((char)c), want);
	}
}

static void
test_hex_to_bytes_exact_length(void **state)
{
	(void)state;
	uint8_t out[3];
	assert_true(coffer_hex_to_bytes("a1B2c3", 6, out, 3));
	assert_int_equal(out[0], 0xa1);
	assert_int_equal(out[1], 0xb2);
	assert_int_equal(out[2], 0xc3);
	/* The length is the caller's, not strlen's: a longer string is fine
	 * when only its first 2n digits are asked for... */
	assert_true(coffer_hex_to_bytes("a1b2c3ff", 6, out, 3));
	/* ...but any other count of digits is refused. */
	assert_false(coffer_hex_to_bytes("a1b2c", 5, out, 3));
	assert_false(coffer_hex_to_bytes("a1b2c3d4", 8, out, 3));
	assert_false(coffer_hex_to_bytes("a1b2cg", 6, out, 3));
	assert_false(coffer_hex_to_bytes(NULL, 0, out, 0));
	assert_true(coffer_hex_to_bytes("", 0, out, 0));
}

static void
test_hex_is_lower(void **state)
{
	(void)state;
	assert_true(coffer_hex_is_lower("0123456789abcdef", 16));
	assert_false(coffer_hex_is_lower("0123456789abcdeF", 16));
	assert_false(coffer_hex_is_lower("012345678g", 10));
	/* Stops at n: what follows is the caller's business. */
	assert_true(coffer_hex_is_lower("abcXYZ", 3));
	/* A NUL before n digits is not a digit. */
	assert_false(coffer_hex_is_lower("abc", 4));
	assert_true(coffer_hex_is_lower("", 0));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex_round_trip),
		cmocka_unit_test(test_hex_decode_strict),
		cmocka_unit_test(test_hex_digit),
		cmocka_unit_test(test_hex_to_bytes_exact_length),
		cmocka_unit_test(test_hex_is_lower),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
