/* Cron schedules: parsing (every accepted form and every kind of mistake,
 * each refused with the field and its allowed range), next/prev in UTC,
 * the day-of-month/day-of-week OR rule, Feb 29, schedules that never fire,
 * and DST in both hemispheres and a half-hour zone with real tzdata. A
 * brute-force oracle walks every minute around each 2026 transition and
 * checks that next/prev list exactly the runs the documented rule implies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/conf/cron.h"
#include "common/conf/tz.h"

static int64_t
utc(int y, int mo, int d, int h, int mi)
{
	return (coffer_tz_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60);
}

static coffer_cron *
must_parse(const char *expr)
{
	coffer_err err = { 0 };
	coffer_cron *c = coffer_cron_parse(expr, &err);
	if (c == NULL) {
		fail_msg("parsing \"%s\": %s (hint: %s)", expr, err.msg, err.hint);
	}
	return (c);
}

static coffer_tz *
must_load(const char *name)
{
	coffer_err err = { 0 };
	coffer_tz *tz = coffer_tz_load(name, &err);
	if (tz == NULL) {
		fail_msg("loading %s: %s (hint: %s)", name, err.msg, err.hint);
	}
	return (tz);
}

static int64_t
next_of(const char *expr, const char *zone, int64_t after)
{
	coffer_cron *c = must_parse(expr);
	coffer_tz *tz = must_load(zone);
	coffer_err err = { 0 };
	int64_t out = 0;
	int rc = coffer_cron_next(c, tz, after, &out, &err);
	if (rc != 0) {
		fail_msg("next \"%s\" in %s after %lld: %s", expr, zone, (long long)after, err.msg);
	}
	coffer_cron_free(c);
	coffer_tz_free(tz);
	return (out);
}

static int64_t
prev_of(const char *expr, const char *zone, int64_t at)
{
	coffer_cron *c = must_parse(expr);
	coffer_tz *tz = must_load(zone);
	coffer_err err = { 0 };
	int64_t out = 0;
	int rc = coffer_cron_prev(c, tz, at, &out, &err);
	if (rc != 0) {
		fail_msg("prev \"%s\" in %s at %lld: %s", expr, zone, (long long)at, err.msg);
	}
	coffer_cron_free(c);
	coffer_tz_free(tz);
	return (out);
}

/* ---- parsing ---- */

static void
test_parse_good(void **state)
{
	(void)state;
	static const char *const good[] = {
		"* * * * *",
		"0 0 1 1 *",
		"*/15 * * * *",
		"1-10/2 * * * *",
		"5/15 * * * *",
		"0,30 8-18 * * mon-fri",
		"0 0 * JAN,jul SUN",
		"0 0 * * 7",
		"0 0 * * 0-7",
		"59 23 31 12 6",
		"0 0 1-31/10 1-12/3 *",
		"\t 0  0 *\t* *  \n",
		"@hourly",
		"@daily",
		"@midnight",
		"@weekly",
		"@monthly",
		"@yearly",
		"@annually",
		"@DAILY",
		"*/59 */23 */31 */12 */7",
		"0 0 29 2 *",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		coffer_cron *c = must_parse(good[i]);
		coffer_cron_free(c);
	}
	coffer_cron *c = must_parse("  30 2 * * *\n");
	assert_string_equal(coffer_cron_text(c), "30 2 * * *");
	coffer_cron_free(c);
	c = must_parse("@daily");
	assert_string_equal(coffer_cron_text(c), "@daily");
	coffer_cron_free(c);
	coffer_cron_free(NULL);
}

static void
expect_bad(const char *expr, const char *must_mention)
{
	coffer_err err = { 0 };
	coffer_cron *c = coffer_cron_parse(expr, &err);
	if (c != NULL) {
		coffer_cron_free(c);
		fail_msg("\"%s\" parsed, expected an error", expr != NULL ? expr : "(null)");
	}
	assert_int_equal(err.code, COFFER_EINVAL);
	assert_true(strlen(err.hint) > 0);
	if (must_mention != NULL && strstr(err.msg, must_mention) == NULL) {
		fail_msg("error for \"%s\" is \"%s\", should mention \"%s\"", expr, err.msg,
		    must_mention);
	}
}

static void
test_parse_bad(void **state)
{
	(void)state;
	expect_bad(NULL, NULL);
	expect_bad("", "empty");
	expect_bad("   \t ", "empty");
	expect_bad("* * * *", "4 fields");
	expect_bad("* * * * * *", "6 fields");
	expect_bad("60 * * * *", "minute");
	expect_bad("60 * * * *", "0-59");
	expect_bad("-1 * * * *", "minute");
	expect_bad("* 24 * * *", "hour");
	expect_bad("* 24 * * *", "0-23");
	expect_bad("* * 0 * *", "day-of-month");
	expect_bad("* * 32 * *", "1-31");
	expect_bad("* * * 0 *", "month");
	expect_bad("* * * 13 *", "1-12 or jan-dec");
	expect_bad("* * * * 8", "day-of-week");
	expect_bad("* * * * 8", "0-7");
	expect_bad("5-1 * * * *", "backwards");
	expect_bad("*/0 * * * *", "step");
	expect_bad("*/60 * * * *", "step");
	expect_bad("1-5/ * * * *", "step");
	expect_bad("*/x * * * *", "step");
	expect_bad("*/5/2 * * * *", "minute");
	expect_bad("1,,2 * * * *", "empty");
	expect_bad("1, * * * *", "empty");
	expect_bad("a * * * *", "minute");
	expect_bad("jan * * * *", "minute"); /* names only where they mean something */
	expect_bad("* * * foo *", "month");
	expect_bad("* * * janu *", "month");
	expect_bad("* * * * mon-", "day-of-week");
	expect_bad("* * * * 1#2", "day-of-week");
	expect_bad("* * L * *", "day-of-month");
	expect_bad("1-2-3 * * * *", "minute");
	expect_bad("99999999999 * * * *", "out of range");
	expect_bad("** * * * *", "minute");
	expect_bad("@reboot", "@reboot");
	expect_bad("@fortnightly", "@fortnightly");
	expect_bad("@daily 5", "@daily 5");
	char longexpr[400];
	memset(longexpr, '1', sizeof(longexpr) - 1);
	longexpr[sizeof(longexpr) - 1] = '\0';
	expect_bad(longexpr, "longer");
	/* A NULL err is allowed. */
	assert_null(coffer_cron_parse("bad", NULL));
}

/* ---- UTC ---- */

static void
test_utc_next_prev(void **state)
{
	(void)state;
	const int64_t t = utc(2026, 1, 15, 12, 7); /* a Thursday */
	assert_int_equal(next_of("*/15 * * * *", "UTC", t), utc(2026, 1, 15, 12, 15));
	/* Strictly after, and at-or-before. */
	assert_int_equal(
	    next_of("*/15 * * * *", "UTC", utc(2026, 1, 15, 12, 15)), utc(2026, 1, 15, 12, 30));
	assert_int_equal(
	    prev_of("*/15 * * * *", "UTC", utc(2026, 1, 15, 12, 15)), utc(2026, 1, 15, 12, 15));
	assert_int_equal(
	    prev_of("*/15 * * * *", "UTC", utc(2026, 1, 15, 12, 15) - 1), utc(2026, 1, 15, 12, 0));
	assert_int_equal(next_of("5/20 * * * *", "UTC", t), utc(2026, 1, 15, 12, 25));
	assert_int_equal(
	    next_of("1-10/3 * * * *", "UTC", utc(2026, 1, 15, 12, 4)), utc(2026, 1, 15, 12, 7));
	assert_int_equal(
	    next_of("1-10/3 * * * *", "UTC", utc(2026, 1, 15, 12, 10)), utc(2026, 1, 15, 13, 1));
	assert_int_equal(next_of("@hourly", "UTC", t), utc(2026, 1, 15, 13, 0));
	assert_int_equal(next_of("@daily", "UTC", t), utc(2026, 1, 16, 0, 0));
	assert_int_equal(next_of("@weekly", "UTC", t), utc(2026, 1, 18, 0, 0));
	assert_int_equal(next_of("@monthly", "UTC", t), utc(2026, 2, 1, 0, 0));
	assert_int_equal(next_of("@yearly", "UTC", t), utc(2027, 1, 1, 0, 0));
	assert_int_equal(prev_of("@yearly", "UTC", t), utc(2026, 1, 1, 0, 0));
	assert_int_equal(prev_of("@monthly", "UTC", t), utc(2026, 1, 1, 0, 0));
	/* Weekdays, names, and 7 as Sunday. */
	const int64_t fri = utc(2026, 1, 16, 10, 0);
	assert_int_equal(next_of("0 9 * * mon-fri", "UTC", fri), utc(2026, 1, 19, 9, 0));
	assert_int_equal(
	    prev_of("0 9 * * mon-fri", "UTC", utc(2026, 1, 18, 23, 0)), utc(2026, 1, 16, 9, 0));
	assert_int_equal(next_of("0 0 * * 7", "UTC", t), utc(2026, 1, 18, 0, 0));
	assert_int_equal(next_of("0 0 * * sun", "UTC", t), utc(2026, 1, 18, 0, 0));
	assert_int_equal(next_of("0 0 * * 5-7", "UTC", t), utc(2026, 1, 16, 0, 0));
	assert_int_equal(next_of("0 0 1 JUL,Jan *", "UTC", t), utc(2026, 7, 1, 0, 0));
	assert_int_equal(next_of("30 2 1,15 * *", "UTC", t), utc(2026, 2, 1, 2, 30));
	assert_int_equal(next_of("59 23 31 12 *", "UTC", t), utc(2026, 12, 31, 23, 59));
	assert_int_equal(prev_of("59 23 31 12 *", "UTC", t), utc(2025, 12, 31, 23, 59));
	/* Seconds inside a minute. */
	assert_int_equal(next_of("* * * * *", "UTC", t + 59), t + 60);
	assert_int_equal(prev_of("* * * * *", "UTC", t + 59), t);
	/* Negative Unix times work too. */
	assert_int_equal(next_of("0 0 1 1 *", "UTC", utc(1969, 6, 1, 0, 0)), 0);
	assert_int_equal(prev_of("0 0 1 1 *", "UTC", -1), utc(1969, 1, 1, 0, 0));
}

static void
test_dom_dow_or(void **state)
{
	(void)state;
	/* 2026-01-01 is a Thursday; Fridays are the 2nd, 9th, 16th... */
	const int64_t start = utc(2026, 1, 1, 0, 0);
	const char *both = "0 0 13 * 5";
	int64_t seq[5];
	int64_t t = start;
	for (int i = 0; i < 5; i++) {
		t = next_of(both, "UTC", t);
		seq[i] = t;
	}
	assert_int_equal(seq[0], utc(2026, 1, 2, 0, 0));
	assert_int_equal(seq[1], utc(2026, 1, 9, 0, 0));
	assert_int_equal(seq[2], utc(2026, 1, 13, 0, 0)); /* a Tuesday: the 13th */
	assert_int_equal(seq[3], utc(2026, 1, 16, 0, 0));
	assert_int_equal(seq[4], utc(2026, 1, 23, 0, 0));
	/* One restricted field alone: only it counts. */
	assert_int_equal(next_of("0 0 13 * *", "UTC", start), utc(2026, 1, 13, 0, 0));
	assert_int_equal(next_of("0 0 * * 5", "UTC", start), utc(2026, 1, 2, 0, 0));
	/* A field starting with '*' is unrestricted: AND (odd days that are Fridays). */
	assert_int_equal(next_of("0 0 */2 * 5", "UTC", start), utc(2026, 1, 9, 0, 0));
	assert_int_equal(next_of("0 0 13 * */1", "UTC", start), utc(2026, 1, 13, 0, 0));
	assert_int_equal(
	    next_of("0 0 13 * */7", "UTC", start), utc(2026, 9, 13, 0, 0)); /* AND Sunday */
	/* OR inside a restricted month. */
	assert_int_equal(next_of("0 0 13 3 5", "UTC", start), utc(2026, 3, 6, 0, 0));
	assert_int_equal(prev_of("0 0 13 3 5", "UTC", start), utc(2025, 3, 28, 0, 0));
}

static void
test_leap_and_never(void **state)
{
	(void)state;
	const char *feb29 = "0 0 29 2 *";
	assert_int_equal(next_of(feb29, "UTC", utc(2026, 1, 1, 0, 0)), utc(2028, 2, 29, 0, 0));
	assert_int_equal(next_of(feb29, "UTC", utc(2028, 2, 29, 0, 0)), utc(2032, 2, 29, 0, 0));
	assert_int_equal(prev_of(feb29, "UTC", utc(2031, 6, 1, 0, 0)), utc(2028, 2, 29, 0, 0));
	/* 2100 is not a leap year: the longest wait, eight years. */
	assert_int_equal(next_of(feb29, "UTC", utc(2096, 3, 1, 0, 0)), utc(2104, 2, 29, 0, 0));
	assert_int_equal(prev_of(feb29, "UTC", utc(2104, 2, 28, 0, 0)), utc(2096, 2, 29, 0, 0));
	assert_int_equal(
	    next_of(feb29, "Europe/Rome", utc(2026, 1, 1, 0, 0)), utc(2028, 2, 28, 23, 0));
	assert_int_equal(
	    next_of("0 12 28-31 2 *", "UTC", utc(2028, 2, 28, 12, 0)), utc(2028, 2, 29, 12, 0));

	static const char *const never[] = { "0 0 30 2 *", "0 0 31 2 *", "0 0 31 4,6,9,11 *",
		"* * 30-31 2 *" };
	coffer_tz *tz = must_load("Europe/Rome");
	for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
		coffer_cron *c = must_parse(never[i]);
		coffer_err err = { 0 };
		int64_t out = 12345;
		assert_int_equal(
		    coffer_cron_next(c, tz, utc(2026, 1, 1, 0, 0), &out, &err), COFFER_ENOENT);
		assert_int_equal(out, 12345);
		assert_non_null(strstr(err.msg, never[i]));
		assert_true(strlen(err.hint) > 0);
		assert_int_equal(
		    coffer_cron_prev(c, tz, utc(2026, 1, 1, 0, 0), &out, &err), COFFER_ENOENT);
		assert_int_equal(
		    coffer_cron_next(c, tz, utc(2026, 1, 1, 0, 0), &out, NULL), COFFER_ENOENT);
		coffer_cron_free(c);
	}
	/* Out-of-range times are refused, not searched. */
	coffer_cron *c = must_parse("@daily");
	coffer_err err = { 0 };
	int64_t out;
	assert_int_equal(coffer_cron_next(c, tz, INT64_MAX, &out, &err), COFFER_EINVAL);
	assert_true(strlen(err.hint) > 0);
	assert_int_equal(coffer_cron_prev(c, tz, INT64_MIN, &out, &err), COFFER_EINVAL);
	assert_int_equal(
	    coffer_cron_next(c, tz, utc(2026, 1, 1, 0, 0) * 1000, &out, &err), COFFER_EINVAL);
	assert_int_equal(coffer_cron_next(NULL, tz, 0, &out, &err), COFFER_EINVAL);
	assert_int_equal(coffer_cron_next(c, NULL, 0, &out, &err), COFFER_EINVAL);
	/* Near the end of the range the search stops cleanly. */
	assert_int_equal(coffer_cron_next(c, tz, COFFER_TZ_MAX_S - 3 * 86400, &out, &err), 0);
	coffer_cron_free(c);
	c = must_parse(feb29);
	assert_int_equal(
	    coffer_cron_next(c, tz, COFFER_TZ_MAX_S - 3 * 86400, &out, &err), COFFER_ENOENT);
	coffer_cron_free(c);
	coffer_tz_free(tz);
}

/* ---- DST ---- */

static void
test_rome_dst(void **state)
{
	(void)state;
	const char *z = "Europe/Rome";
	const int64_t spring = 1774746000; /* 2026-03-29T01:00Z, 02:00 CET -> 03:00 CEST */
	const int64_t autumn = 1792890000; /* 2026-10-25T01:00Z, 03:00 CEST -> 02:00 CET */
	/* 02:30 does not exist on March 29: run once at 03:00 CEST. */
	assert_int_equal(next_of("30 2 * * *", z, utc(2026, 3, 28, 1, 30)), spring);
	assert_int_equal(next_of("30 2 * * *", z, spring), utc(2026, 3, 30, 0, 30));
	assert_int_equal(prev_of("30 2 * * *", z, spring), spring);
	assert_int_equal(prev_of("30 2 * * *", z, spring - 1), utc(2026, 3, 28, 1, 30));
	/* Every quarter hour: the gap's 02:00..02:45 and 03:00 run once, at 03:00. */
	assert_int_equal(next_of("*/15 * * * *", z, spring - 15 * 60), spring);
	assert_int_equal(next_of("*/15 * * * *", z, spring), spring + 15 * 60);
	/* 02:30 happens twice on October 25: only the first time. */
	assert_int_equal(next_of("30 2 * * *", z, utc(2026, 10, 24, 0, 30)), autumn - 1800);
	assert_int_equal(next_of("30 2 * * *", z, autumn - 1800), utc(2026, 10, 26, 1, 30));
	assert_int_equal(prev_of("30 2 * * *", z, autumn + 1800), autumn - 1800);
	assert_int_equal(prev_of("30 2 * * *", z, utc(2026, 10, 26, 1, 29)), autumn - 1800);
	/* Hourly: 02:00 CEST runs, 02:00 CET (the repeat) does not, 03:00 CET does. */
	assert_int_equal(next_of("0 * * * *", z, autumn - 3600), autumn + 3600);
	assert_int_equal(next_of("0 * * * *", z, autumn - 3601), autumn - 3600);
	assert_int_equal(prev_of("0 * * * *", z, autumn + 3599), autumn - 3600);
	/* Starting inside the second pass of the fold. */
	assert_int_equal(next_of("*/15 * * * *", z, autumn + 60), autumn + 3600);
	assert_int_equal(next_of("45 2 * * *", z, autumn + 60), utc(2026, 10, 26, 1, 45));
	/* Daily at 01:00 and 04:00 are untouched by either transition. */
	assert_int_equal(next_of("0 4 * * *", z, spring - 7200), utc(2026, 3, 29, 2, 0));
	assert_int_equal(next_of("0 1 * * *", z, autumn - 7200 - 1), autumn - 7200);
}

static void
test_new_york_dst(void **state)
{
	(void)state;
	const char *z = "America/New_York";
	const int64_t spring = 1772953200; /* 2026-03-08T07:00Z */
	const int64_t autumn = 1793512800; /* 2026-11-01T06:00Z */
	assert_int_equal(next_of("30 2 * * *", z, utc(2026, 3, 7, 12, 0)), spring);
	assert_int_equal(next_of("30 2 * * *", z, spring), utc(2026, 3, 9, 6, 30));
	assert_int_equal(next_of("30 1 * * *", z, utc(2026, 10, 31, 12, 0)), autumn - 1800);
	assert_int_equal(next_of("30 1 * * *", z, autumn - 1800), utc(2026, 11, 2, 6, 30));
	assert_int_equal(prev_of("30 1 * * *", z, autumn + 1800), autumn - 1800);
	assert_int_equal(next_of("0 0 * * *", z, utc(2026, 11, 1, 0, 0)), utc(2026, 11, 1, 4, 0));
	assert_int_equal(next_of("0 0 * * *", z, utc(2026, 11, 1, 4, 0)), utc(2026, 11, 2, 5, 0));
}

static void
test_southern_and_half_hour(void **state)
{
	(void)state;
	/* Sydney: clocks go back on April 5, forward on October 4. */
	assert_int_equal(
	    next_of("30 2 * * *", "Australia/Sydney", utc(2026, 4, 4, 0, 0)), 1775316600);
	assert_int_equal(
	    next_of("30 2 * * *", "Australia/Sydney", 1775316600), utc(2026, 4, 5, 16, 30));
	assert_int_equal(
	    next_of("30 2 * * *", "Australia/Sydney", utc(2026, 10, 3, 0, 0)), 1791043200);
	assert_int_equal(next_of("0 0 1 1 *", "Australia/Sydney", utc(2026, 6, 1, 0, 0)),
	    utc(2026, 12, 31, 13, 0));
	assert_int_equal(prev_of("0 0 1 7 *", "Australia/Sydney", utc(2026, 8, 1, 0, 0)),
	    utc(2026, 6, 30, 14, 0));
	/* Half-hour zones. */
	assert_int_equal(
	    next_of("0 0 * * *", "Asia/Kolkata", utc(2026, 6, 1, 0, 0)), utc(2026, 6, 1, 18, 30));
	assert_int_equal(
	    prev_of("0 0 * * *", "Asia/Kolkata", utc(2026, 6, 1, 0, 0)), utc(2026, 5, 31, 18, 30));
	assert_int_equal(next_of("*/45 * * * *", "Asia/Kolkata", utc(2026, 6, 1, 0, 0)),
	    utc(2026, 6, 1, 0, 15)); /* 05:45 IST */
	assert_int_equal(
	    next_of("30 2 * * *", "Australia/Adelaide", utc(2026, 10, 3, 0, 0)), 1791045000);
	assert_int_equal(
	    next_of("30 2 * * *", "Australia/Adelaide", utc(2026, 4, 4, 0, 0)), 1775318400);
	assert_int_equal(
	    next_of("30 2 * * *", "Australia/Adelaide", 1775318400), utc(2026, 4, 5, 17, 0));
	/* Far future: the footer rule, Europe, 2050. */
	assert_int_equal(next_of("30 2 * * *", "Europe/Rome", utc(2050, 3, 26, 12, 0)), 2531955600);
	assert_int_equal(
	    next_of("30 2 * * *", "Europe/Rome", utc(2050, 10, 29, 12, 0)), 2550704400 - 1800);
}

/* ---- oracle ---- */

typedef bool (*match_fn)(const coffer_tm *tm);

static bool
m_quarter(const coffer_tm *tm)
{
	return (tm->minute % 15 == 0);
}

static bool
m_0230(const coffer_tm *tm)
{
	return (tm->hour == 2 && tm->minute == 30);
}

static bool
m_hourly(const coffer_tm *tm)
{
	return (tm->minute == 0);
}

static bool
m_list(const coffer_tm *tm)
{
	return ((tm->minute == 5 || tm->minute == 35) && tm->hour >= 1 && tm->hour <= 3);
}

static bool
m_or(const coffer_tm *tm)
{
	return (tm->hour == 0 && tm->minute == 0 && (tm->day == 13 || tm->wday == 5));
}

static bool
m_every(const coffer_tm *tm)
{
	(void)tm;
	return (true);
}

/* Does the local wall-clock minute `local` (local seconds) match? */
static bool
local_matches(match_fn fn, int64_t local)
{
	coffer_tm tm = { 0 };
	int64_t days = local / 86400 - (local % 86400 < 0);
	int64_t secs = local - days * 86400;
	int64_t y;
	coffer_tz_civil_from_days(days, &y, &tm.month, &tm.day, &tm.wday);
	tm.year = (int)y;
	tm.hour = (int)(secs / 3600);
	tm.minute = (int)(secs / 60 % 60);
	return (fn(&tm));
}

/* The documented rule, minute by minute: t runs if its local time matches
 * and this is that local time's first occurrence, or if t ends a gap that
 * swallowed a matching local time. */
static bool
oracle_runs(const coffer_tz *tz, match_fn fn, int64_t t)
{
	int32_t off = coffer_tz_offset(tz, t);
	int32_t before = coffer_tz_offset(tz, t - 1);
	if (local_matches(fn, t + off)) {
		bool repeat = false;
		/* A repeat: some earlier instant showed the same local time. */
		for (int64_t u = t - 60; u >= t - 6 * 3600; u -= 60) {
			if (u + coffer_tz_offset(tz, u) == t + off) {
				repeat = true;
				break;
			}
		}
		if (!repeat) {
			return (true);
		}
	}
	if (off > before) {
		for (int64_t l = t + before; l < t + off; l += 60) {
			if (local_matches(fn, l)) {
				return (true);
			}
		}
	}
	return (false);
}

static void
check_window(const char *zone, const char *expr, match_fn fn, int64_t from, int64_t to)
{
	coffer_tz *tz = must_load(zone);
	coffer_cron *c = must_parse(expr);
	coffer_err err = { 0 };
	int64_t cur = from;
	int64_t expected_prev = 0;
	bool have_prev = false;
	for (int64_t t = from + 60; t <= to; t += 60) {
		if (!oracle_runs(tz, fn, t)) {
			continue;
		}
		int64_t got;
		assert_int_equal(coffer_cron_next(c, tz, cur, &got, &err), 0);
		if (got != t) {
			fail_msg("%s \"%s\": next after %lld is %lld, oracle says %lld", zone, expr,
			    (long long)cur, (long long)got, (long long)t);
		}
		/* prev from just before the next run finds the one before it. */
		if (have_prev) {
			assert_int_equal(coffer_cron_prev(c, tz, t - 1, &got, &err), 0);
			if (got != expected_prev) {
				fail_msg("%s \"%s\": prev at %lld is %lld, oracle says %lld", zone,
				    expr, (long long)(t - 1), (long long)got,
				    (long long)expected_prev);
			}
		}
		assert_int_equal(coffer_cron_prev(c, tz, t, &got, &err), 0);
		assert_int_equal(got, t);
		expected_prev = t;
		have_prev = true;
		cur = t;
	}
	coffer_cron_free(c);
	coffer_tz_free(tz);
}

static void
test_oracle(void **state)
{
	(void)state;
	static const struct {
		const char *zone;
		int64_t at;
	} transitions[] = {
		{ "Europe/Rome", 1774746000 },
		{ "Europe/Rome", 1792890000 },
		{ "America/New_York", 1772953200 },
		{ "America/New_York", 1793512800 },
		{ "Australia/Sydney", 1775318400 },
		{ "Australia/Sydney", 1791043200 },
		{ "Australia/Adelaide", 1791045000 },
		{ "Europe/Rome", 2550704400 },
	};
	static const struct {
		const char *expr;
		match_fn fn;
	} scheds[] = {
		{ "*/15 * * * *", m_quarter },
		{ "30 2 * * *", m_0230 },
		{ "0 * * * *", m_hourly },
		{ "5,35 1-3 * * *", m_list },
		{ "0 0 13 * 5", m_or },
		{ "* * * * *", m_every },
	};
	for (size_t i = 0; i < sizeof(transitions) / sizeof(transitions[0]); i++) {
		for (size_t j = 0; j < sizeof(scheds) / sizeof(scheds[0]); j++) {
			int64_t span = scheds[j].fn == m_or ? 9 * 86400 : 86400;
			check_window(transitions[i].zone, scheds[j].expr, scheds[j].fn,
			    transitions[i].at - span, transitions[i].at + span);
		}
	}
}

int
main(void)
{
	if (access("/usr/share/zoneinfo/Europe/Rome", R_OK) != 0 && getenv("TZDIR") == NULL) {
		fprintf(stderr, "cron_test: tzdata missing: apt-get install -y tzdata\n");
		return (1);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_utc_next_prev),
		cmocka_unit_test(test_dom_dow_or),
		cmocka_unit_test(test_leap_and_never),
		cmocka_unit_test(test_rome_dst),
		cmocka_unit_test(test_new_york_dst),
		cmocka_unit_test(test_southern_and_half_hour),
		cmocka_unit_test(test_oracle),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
