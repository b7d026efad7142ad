/* Logging (common/base/log.h): whatever text a value carries (quotes,
 * spaces, newlines, '=', backslashes, control bytes, invalid UTF-8, NULL),
 * the record stays one line of strict logfmt and the value reads back as
 * it was; numbers print as printf would; a record cut at the buffer's end
 * still closes its quotes. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/log.h"

/* The last record read back, its newline checked. */
static char record[8192];

static FILE *stream;

static void
start(void)
{
	stream = tmpfile();
	assert_non_null(stream);
	coffer_log_set_stream(stream);
}

/* Reads the one record written since start(); asserts one line. */
static const char *
one_record(void)
{
	rewind(stream);
	size_t n = fread(record, 1, sizeof(record) - 1, stream);
	record[n] = '\0';
	fclose(stream);
	coffer_log_set_stream(NULL);
	assert_true(n > 0);
	assert_int_equal(record[n - 1], '\n');
	assert_null(memchr(record, '\n', n - 1));
	record[n - 1] = '\0';
	const char *p = strstr(record, " level=");
	assert_non_null(p);
	return (p + 1);
}

/* A strict reader of one value at *p (bare or quoted, escapes as log.h
 * says) into out; advances *p past it. Fails the test on anything else. */
static void
read_value(const char **p, char *out, size_t size)
{
	const unsigned char *s = (const unsigned char *)*p;
	size_t n = 0;
	if (*s != '"') {
		assert_true(*s > ' ' && *s != '=' && *s != '\\');
		while (*s > ' ' && *s != '"' && *s != '=' && *s != '\\') {
			out[n++] = (char)*s++;
		}
		assert_true(*s == ' ' || *s == '\0');
	} else {
		s++;
		while (*s != '"') {
			assert_true(*s >= ' ' && *s != 0x7f);
			if (*s == '\\') {
				s++;
				switch (*s) {
				case '"':
				case '\\':
					out[n++] = (char)*s++;
					break;
				case 'n':
					out[n++] = '\n';
					s++;
					break;
				case 'r':
					out[n++] = '\r';
					s++;
					break;
				case 't':
					out[n++] = '\t';
					s++;
					break;
				case 'x': {
					unsigned v = 0;
					assert_int_equal(sscanf((const char *)s + 1, "%2x", &v), 1);
					out[n++] = (char)v;
					s += 3;
					break;
				}
				default:
					fail_msg("bad escape \\%c", *s);
				}
			} else {
				out[n++] = (char)*s++;
			}
			assert_true(n < size);
		}
		s++;
		assert_true(*s == ' ' || *s == '\0');
	}
	out[n] = '\0';
	*p = (const char *)s;
}

/* The value of key in the record; fails if absent. */
static void
field(const char *rec, const char *key, char *out, size_t size)
{
	const char *p = rec;
	size_t klen = strlen(key);
	for (;;) {
		const char *eq = strchr(p, '=');
		assert_non_null(eq);
		bool match = (size_t)(eq - p) == klen && strncmp(p, key, klen) == 0;
		p = eq + 1;
		read_value(&p, out, size);
		if (match) {
			return;
		}
		assert_int_equal(*p, ' ');
		p++;
	}
}

static const char *const hostile[] = {
	"plain",
	"two words",
	"say \"hi\"",
	"a=b",
	"line one\nline two\r\n",
	"back\\slash",
	"tab\there",
	"bell\a and \x7f del",
	"bad utf-8 \xff\xfe end",
	"café ok",
	"",
	"\"",
	"ends with backslash \\",
};

static void
test_hostile_values(void **state)
{
	(void)state;
	char got[1024];
	for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
		const char *v = hostile[i];
		start();
		coffer_log_info("hostile value", "bare=%s quoted=\"%s\" n=%d after=%s", v, v, 7, v);
		const char *rec = one_record();
		field(rec, "bare", got, sizeof(got));
		/* Control bytes other than \n \r \t come back as themselves too. */
		assert_string_equal(got, v);
		field(rec, "quoted", got, sizeof(got));
		assert_string_equal(got, v);
		field(rec, "n", got, sizeof(got));
		assert_string_equal(got, "7");
		field(rec, "after", got, sizeof(got));
		assert_string_equal(got, v);
		/* Invalid UTF-8 never reaches the record raw. */
		assert_null(strchr(rec, '\xff'));
	}
}

static void
test_null_and_precision(void **state)
{
	(void)state;
	char got[256];
	/* Through a variable the compiler cannot see is NULL. */
	const char *volatile nothing = NULL;
	start();
	coffer_log_info(
	    "x", "a=%s b=%.3s c=%.*s d=\"%.4s\"", nothing, "abcdef", 2, "xy\"z", "q\"rst");
	const char *rec = one_record();
	field(rec, "a", got, sizeof(got));
	assert_string_equal(got, "-");
	field(rec, "b", got, sizeof(got));
	assert_string_equal(got, "abc");
	field(rec, "c", got, sizeof(got));
	assert_string_equal(got, "xy");
	field(rec, "d", got, sizeof(got));
	assert_string_equal(got, "q\"rs");
}

static void
test_numbers(void **state)
{
	(void)state;
	start();
	coffer_log_info("numbers",
	    "i=%d u=%u l=%ld ll=%lld llu=%llu z=%zu u64=%" PRIu64 " i64=%" PRId64
	    " mode=%03o f=%.1f pct=100%% x=%x w=%5d",
	    -3, 4000000000u, -5L, -6LL, 18446744073709551615ULL, (size_t)9, UINT64_MAX, INT64_MIN,
	    0600, 2.25, 255, 42);
	const char *rec = one_record();
	assert_non_null(strstr(rec,
	    "i=-3 u=4000000000 l=-5 ll=-6 llu=18446744073709551615 z=9 "
	    "u64=18446744073709551615 i64=-9223372036854775808 mode=600 f=2.2 pct=100% x=ff "
	    "w=   42"));
}

static void
test_message_and_cut(void **state)
{
	(void)state;
	char got[8192];
	start();
	coffer_log_warn("a \"quoted\" message", NULL);
	const char *rec = one_record();
	field(rec, "msg", got, sizeof(got));
	assert_string_equal(got, "a \"quoted\" message");

	/* A value longer than the record: cut, its quotes closed, one line. */
	char big[6000];
	memset(big, '"', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	start();
	coffer_log_error("long", "first=1 long=%s", big);
	rec = one_record();
	field(rec, "long", got, sizeof(got));
	assert_true(strlen(got) > 1000);
	assert_null(strchr(got, 'x'));

	start();
	coffer_log_error("long", "long=\"%s\" never=1", big);
	rec = one_record();
	field(rec, "long", got, sizeof(got));
	assert_true(strlen(got) > 1000);
}

static void
test_quote_helper(void **state)
{
	(void)state;
	char buf[16];
	assert_string_equal(coffer_log_quote(buf, sizeof(buf), "bare"), "bare");
	assert_string_equal(coffer_log_quote(buf, sizeof(buf), ""), "\"\"");
	assert_string_equal(coffer_log_quote(buf, sizeof(buf), "a \"b\""), "\"a \\\"b\\\"\"");
	/* Cut to fit, the quotes still closed. */
	assert_string_equal(
	    coffer_log_quote(buf, sizeof(buf), "0123456789 abcdefgh"), "\"0123456789 ab\"");
	assert_string_equal(coffer_log_quote(buf, sizeof(buf), "\xff"), "\"\\xff\"");
}

int
main(void)
{
	coffer_log_init("log_test", COFFER_LOG_DEBUG);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostile_values),
		cmocka_unit_test(test_null_and_precision),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_message_and_cut),
		cmocka_unit_test(test_quote_helper),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
