/* HTML escaping (common/base/html.h): each special character, hostile
 * text that would open a tag, an attribute or an entity, control
 * characters and broken UTF-8, valid multibyte text kept, NULL and empty
 * input, and the explicit-length form stopping where it is told. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/html.h"

static char *
esc(const char *in)
{
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	coffer_strbuf_put(&b, ""); /* "" rather than NULL for empty output */
	coffer_html_escape(&b, in);
	assert_false(b.failed);
	return (coffer_strbuf_take(&b));
}

static void
expect(const char *in, const char *want)
{
	char *got = esc(in);
	if (want[0] == '\0') {
		assert_true(got == NULL || got[0] == '\0');
	} else {
		assert_non_null(got);
		assert_string_equal(got, want);
	}
	free(got);
}

static void
test_specials(void **state)
{
	(void)state;
	expect("plain text 123", "plain text 123");
	expect("&", "&amp;");
	expect("<", "&lt;");
	expect(">", "&gt;");
	expect("\"", "&quot;");
	expect("'", "&#39;");
	expect("a&b<c>d\"e'f", "a&amp;b&lt;c&gt;d&quot;e&#39;f");
	/* Already-escaped text is escaped again: what is shown is what was stored. */
	expect("&amp;", "&amp;amp;");
}

static void
test_hostile(void **state)
{
	(void)state;
	expect("<script>alert(1)</script>", "&lt;script&gt;alert(1)&lt;/script&gt;");
	expect("<img src=x onerror=alert(1)>", "&lt;img src=x onerror=alert(1)&gt;");
	expect("\" onmouseover=\"x", "&quot; onmouseover=&quot;x");
	expect("' autofocus onfocus='x", "&#39; autofocus onfocus=&#39;x");
	char *got = esc("</td></tr></table><script>x</script><!--");
	assert_null(strchr(got, '<'));
	assert_null(strchr(got, '>'));
	free(got);
}

static void
test_controls_and_utf8(void **state)
{
	(void)state;
	expect("tab\there\nnewline", "tab\there\nnewline");
	expect("nul\x01"
	       "bell\x07"
	       "esc\x1b"
	       "del\x7f",
	    "nul\xef\xbf\xbd"
	    "bell\xef\xbf\xbd"
	    "esc\xef\xbf\xbd"
	    "del\xef\xbf\xbd");
	/* Valid multibyte text is kept as it is. */
	expect("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92",
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x92");
	/* A stray continuation byte, a truncated sequence, an overlong '<'. */
	expect("a\x80z", "a\xef\xbf\xbdz");
	expect("a\xe2\x82", "a\xef\xbf\xbd\xef\xbf\xbd");
	expect("\xc0\xbc", "\xef\xbf\xbd\xef\xbf\xbd");
}

static void
test_null_empty_and_length(void **state)
{
	(void)state;
	expect("", "");
	coffer_strbuf b = COFFER_STRBUF_INIT(0);
	coffer_strbuf_put(&b, "x");
	coffer_html_escape(&b, NULL);
	coffer_html_escape_n(&b, "<ab>", 2);
	/* A cut through a multibyte character is broken UTF-8, replaced. */
	coffer_html_escape_n(&b, "\xc3\xa9", 1);
	assert_string_equal(coffer_strbuf_text(&b), "x&lt;a\xef\xbf\xbd");
	coffer_strbuf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_specials),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_controls_and_utf8),
		cmocka_unit_test(test_null_empty_and_length),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
