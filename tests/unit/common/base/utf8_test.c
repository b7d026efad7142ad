/* UTF-8 (common/base/utf8.h): what the catalog's jsonb and text columns
 * will take. Every kind of invalid sequence is refused by length and
 * replaced when cleaning, control characters are replaced, valid text of
 * every sequence length passes unchanged, and cuts never split a
 * character. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/utf8.h"

static size_t
seq(const char *s)
{
	return (coffer_utf8_seq_len((const unsigned char *)s, strlen(s)));
}

static void
test_seq_len(void **state)
{
	(void)state;
	assert_int_equal(seq("a"), 1);
	assert_int_equal(seq("\xc3\xa9"), 2);         /* é */
	assert_int_equal(seq("\xe2\x82\xac"), 3);     /* € */
	assert_int_equal(seq("\xf0\x9f\x98\x80"), 4); /* U+1F600 */
	assert_int_equal(seq("\xf4\x8f\xbf\xbf"), 4); /* U+10FFFF, the last */
	assert_int_equal(seq("\x80"), 0);             /* stray continuation */
	assert_int_equal(seq("\xc3"), 0);             /* truncated */
	assert_int_equal(seq("\xe2\x82"), 0);
	assert_int_equal(seq("\xc3\x28"), 0);             /* bad continuation */
	assert_int_equal(seq("\xc0\xaf"), 0);             /* overlong '/' */
	assert_int_equal(seq("\xe0\x80\xaf"), 0);         /* overlong, 3 bytes */
	assert_int_equal(seq("\xf0\x80\x80\xaf"), 0);     /* overlong, 4 bytes */
	assert_int_equal(seq("\xed\xa0\x80"), 0);         /* surrogate U+D800 */
	assert_int_equal(seq("\xf4\x90\x80\x80"), 0);     /* past U+10FFFF */
	assert_int_equal(seq("\xf8\x88\x80\x80\x80"), 0); /* 5-byte form */
	assert_int_equal(seq("\xff"), 0);
	assert_int_equal(coffer_utf8_seq_len((const unsigned char *)"", 0), 0);
}

static void
test_clean(void **state)
{
	(void)state;
	char *c = coffer_utf8_clean("caf\xc3\xa9 \xe2\x82\xac 1", 100);
	assert_string_equal(c, "caf\xc3\xa9 \xe2\x82\xac 1");
	free(c);
	c = coffer_utf8_clean("a\tb\nc\x7f"
	                      "d\x1b[31m",
	    100);
	assert_string_equal(c, "a?b?c?d?[31m");
	free(c);
	c = coffer_utf8_clean("x\xc0\xafy\xed\xa0\x80z\xff", 100);
	assert_string_equal(c, "x??y???z?");
	free(c);
	c = coffer_utf8_clean(NULL, 10);
	assert_string_equal(c, "");
	free(c);
	/* max counts input bytes; a character cut by it becomes '?', so the
	 * result is still valid. */
	c = coffer_utf8_clean("ab\xe2\x82\xac", 4);
	assert_string_equal(c, "ab??");
	free(c);
	c = coffer_utf8_clean("abcdef", 3);
	assert_string_equal(c, "abc");
	free(c);
}

static void
test_cut(void **state)
{
	(void)state;
	char s[32];
	strcpy(s, "ab\xe2\x82\xac");
	coffer_utf8_cut(s, 4); /* would split the euro sign */
	assert_string_equal(s, "ab");
	strcpy(s, "ab\xe2\x82\xac");
	coffer_utf8_cut(s, 5);
	assert_string_equal(s, "ab\xe2\x82\xac");
	strcpy(s, "abcdef");
	coffer_utf8_cut(s, 3);
	assert_string_equal(s, "abc");
	strcpy(s, "abc");
	coffer_utf8_cut(s, 10);
	assert_string_equal(s, "abc");
	strcpy(s, "\xc3\xa9");
	coffer_utf8_cut(s, 1);
	assert_string_equal(s, "");
	coffer_utf8_cut(s, 0);
	assert_string_equal(s, "");
}

static void
test_boundary_after(void **state)
{
	(void)state;
	const char *s = "a\xe2\x82\xac"
	                "b";
	assert_int_equal(coffer_utf8_boundary_after(s, 5, 0), 0);
	assert_int_equal(coffer_utf8_boundary_after(s, 5, 1), 1);
	assert_int_equal(coffer_utf8_boundary_after(s, 5, 2), 4);
	assert_int_equal(coffer_utf8_boundary_after(s, 5, 3), 4);
	assert_int_equal(coffer_utf8_boundary_after(s, 5, 5), 5);
	assert_int_equal(coffer_utf8_boundary_after("\x80\x80", 2, 0), 2);
}

static void
test_printable_ascii(void **state)
{
	(void)state;
	char out[8];
	coffer_utf8_printable_ascii(out, sizeof(out), NULL);
	assert_string_equal(out, "");
	coffer_utf8_printable_ascii(out, sizeof(out), "a\tb\x7f\xc3\xa9");
	assert_string_equal(out, "a?b???");
	coffer_utf8_printable_ascii(out, sizeof(out), "abcdefghij");
	assert_string_equal(out, "abcdefg");
	coffer_utf8_printable_ascii(out, 1, "abc");
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seq_len),
		cmocka_unit_test(test_clean),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_boundary_after),
		cmocka_unit_test(test_printable_ascii),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
