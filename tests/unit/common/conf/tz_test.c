/* Time zones against the real tzdata files: offsets and local times across
 * the 2026 transitions of both hemispheres and a half-hour zone, the POSIX
 * footer rule for years past the table (2050), gaps and folds in both
 * directions, calendar and ISO-week arithmetic, and every way a zone name
 * or a TZif file can be bad (files crafted byte by byte in a temporary
 * TZDIR). Expected instants were computed independently (Python zoneinfo). */
#include <errno.h>
#include <fcntl.h>
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

#include "common/conf/tz.h"
#include "tests/harness/tmpdir.h"

static const char *
zonedir(void)
{
	const char *d = getenv("TZDIR");
	return (d != NULL && d[0] != '\0' ? d : "/usr/share/zoneinfo");
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

/* ---- calendar ---- */

static void
test_civil(void **state)
{
	(void)state;
	assert_int_equal(coffer_tz_days_from_civil(1970, 1, 1), 0);
	assert_int_equal(coffer_tz_days_from_civil(2026, 3, 29) * 86400 + 3600, 1774746000);
	assert_int_equal(coffer_tz_days_from_civil(2028, 2, 29) * 86400, 1835395200);
	assert_int_equal(coffer_tz_days_from_civil(1969, 12, 31), -1);
	assert_int_equal(coffer_tz_days_from_civil(1, 1, 1) * 86400, COFFER_TZ_MIN_S);
	/* Every day of a wide span round-trips, and weekdays advance by one. */
	int prev_wd = -1;
	for (int64_t d = -800000; d <= 800000; d += 1) {
		int64_t y;
		int m, day, wd;
		coffer_tz_civil_from_days(d, &y, &m, &day, &wd);
		assert_true(m >= 1 && m <= 12 && day >= 1 && day <= coffer_tz_month_days(y, m));
		assert_int_equal(coffer_tz_days_from_civil(y, m, day), d);
		if (prev_wd >= 0) {
			assert_int_equal(wd, (prev_wd + 1) % 7);
		}
		prev_wd = wd;
	}
	int wd;
	coffer_tz_civil_from_days(0, NULL, NULL, NULL, &wd);
	assert_int_equal(wd, 4); /* Thursday */
	assert_true(coffer_tz_is_leap(2028));
	assert_true(coffer_tz_is_leap(2000));
	assert_false(coffer_tz_is_leap(1900));
	assert_false(coffer_tz_is_leap(2100));
	assert_false(coffer_tz_is_leap(2026));
	assert_int_equal(coffer_tz_month_days(2028, 2), 29);
	assert_int_equal(coffer_tz_month_days(2100, 2), 28);
	assert_int_equal(coffer_tz_month_days(2026, 4), 30);
	assert_int_equal(coffer_tz_month_days(2026, 13), 0);
}

static void
test_iso_week(void **state)
{
	(void)state;
	static const struct {
		int y, m, d;
		int64_t iy;
		int iw;
	} cases[] = {
		{ 2026, 1, 1, 2026, 1 },
		{ 2027, 1, 1, 2026, 53 },
		{ 2024, 12, 30, 2025, 1 },
		{ 2021, 1, 3, 2020, 53 },
		{ 2020, 12, 31, 2020, 53 },
		{ 2026, 12, 31, 2026, 53 },
		{ 2008, 12, 29, 2009, 1 },
		{ 2026, 6, 15, 2026, 25 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t iy;
		int iw;
		coffer_tz_iso_week(cases[i].y, cases[i].m, cases[i].d, &iy, &iw);
		assert_int_equal(iy, cases[i].iy);
		assert_int_equal(iw, cases[i].iw);
	}
}

/* ---- real zones ---- */

static void
test_utc(void **state)
{
	(void)state;
	coffer_tz *tz = must_load("UTC");
	assert_string_equal(coffer_tz_name(tz), "UTC");
	assert_int_equal(coffer_tz_offset(tz, 1774746000), 0);
	coffer_tm tm;
	assert_int_equal(coffer_tz_to_local(tz, 1835395200 + 3661, &tm), 0);
	assert_int_equal(tm.year, 2028);
	assert_int_equal(tm.month, 2);
	assert_int_equal(tm.day, 29);
	assert_int_equal(tm.hour, 1);
	assert_int_equal(tm.minute, 1);
	assert_int_equal(tm.second, 1);
	assert_int_equal(tm.wday, 2); /* Tuesday */
	assert_int_equal(tm.yday, 59);
	coffer_tz_local r;
	assert_int_equal(coffer_tz_resolve(tz, 1774746000, &r), 0);
	assert_int_equal(r.kind, COFFER_TZ_UNIQUE);
	assert_int_equal(r.earliest, 1774746000);
	assert_int_equal(coffer_tz_to_local(tz, COFFER_TZ_MAX_S + 1, &tm), COFFER_EINVAL);
	assert_int_equal(coffer_tz_resolve(tz, COFFER_TZ_MIN_S - 1, &r), COFFER_EINVAL);
	coffer_tz_free(tz);
	coffer_tz_free(NULL);
}

static void
expect_local(const coffer_tz *tz, int64_t t, int y, int mo, int d, int h, int mi, int off, int dst)
{
	coffer_tm tm;
	assert_int_equal(coffer_tz_to_local(tz, t, &tm), 0);
	assert_int_equal(tm.year, y);
	assert_int_equal(tm.month, mo);
	assert_int_equal(tm.day, d);
	assert_int_equal(tm.hour, h);
	assert_int_equal(tm.minute, mi);
	assert_int_equal(tm.utc_offset, off);
	assert_int_equal(tm.is_dst, dst);
	assert_int_equal(coffer_tz_offset(tz, t), off);
}

static void
expect_resolve(const coffer_tz *tz, int y, int mo, int d, int h, int mi, coffer_tz_kind kind,
    int64_t earliest, int64_t latest)
{
	coffer_tm tm = { .year = y, .month = mo, .day = d, .hour = h, .minute = mi };
	coffer_tz_local r;
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), 0);
	assert_int_equal(r.kind, kind);
	assert_int_equal(r.earliest, earliest);
	assert_int_equal(r.latest, latest);
}

static void
test_rome(void **state)
{
	(void)state;
	coffer_tz *tz = must_load("Europe/Rome");
	/* Spring: 02:00 CET becomes 03:00 CEST at 01:00 UTC. */
	expect_local(tz, 1774746000 - 1, 2026, 3, 29, 1, 59, 3600, 0);
	expect_local(tz, 1774746000, 2026, 3, 29, 3, 0, 7200, 1);
	expect_resolve(tz, 2026, 3, 29, 2, 30, COFFER_TZ_GAP, 1774746000, 1774746000);
	expect_resolve(tz, 2026, 3, 29, 2, 0, COFFER_TZ_GAP, 1774746000, 1774746000);
	expect_resolve(tz, 2026, 3, 29, 1, 59, COFFER_TZ_UNIQUE, 1774746000 - 60, 1774746000 - 60);
	expect_resolve(tz, 2026, 3, 29, 3, 0, COFFER_TZ_UNIQUE, 1774746000, 1774746000);
	/* Autumn: 03:00 CEST becomes 02:00 CET at 01:00 UTC. */
	expect_local(tz, 1792890000 - 1, 2026, 10, 25, 2, 59, 7200, 1);
	expect_local(tz, 1792890000, 2026, 10, 25, 2, 0, 3600, 0);
	expect_resolve(tz, 2026, 10, 25, 2, 30, COFFER_TZ_FOLD, 1792888200, 1792891800);
	expect_resolve(tz, 2026, 10, 25, 2, 0, COFFER_TZ_FOLD, 1792890000 - 3600, 1792890000);
	expect_resolve(
	    tz, 2026, 10, 25, 3, 0, COFFER_TZ_UNIQUE, 1792890000 + 3600, 1792890000 + 3600);
	expect_resolve(
	    tz, 2026, 10, 25, 1, 59, COFFER_TZ_UNIQUE, 1792890000 - 3660, 1792890000 - 3660);
	/* Past the table (2037 in "fat" files, earlier in "slim" ones) the
	 * footer rule CET-1CEST,M3.5.0,M10.5.0/3 decides. */
	expect_local(tz, 2531955600 - 1, 2050, 3, 27, 1, 59, 3600, 0);
	expect_local(tz, 2531955600, 2050, 3, 27, 3, 0, 7200, 1);
	expect_local(tz, 2550704400 - 1, 2050, 10, 30, 2, 59, 7200, 1);
	expect_local(tz, 2550704400, 2050, 10, 30, 2, 0, 3600, 0);
	expect_resolve(tz, 2050, 3, 27, 2, 30, COFFER_TZ_GAP, 2531955600, 2531955600);
	expect_resolve(
	    tz, 2050, 10, 30, 2, 30, COFFER_TZ_FOLD, 2550704400 - 1800, 2550704400 + 1800);
	/* Winter and summer far ahead, and before the first transition (LMT). */
	assert_int_equal(coffer_tz_offset(tz, 7258118400), 3600); /* 2200-01-01 */
	assert_int_equal(coffer_tz_offset(tz, 7258118400 + 182 * 86400), 7200);
	assert_int_equal(coffer_tz_offset(tz, -5000000000), 2996); /* Rome LMT */
	int32_t lo, hi;
	coffer_tz_offset_range(tz, &lo, &hi);
	assert_true(lo <= 2996 && hi >= 7200);
	coffer_tz_free(tz);
}

static void
test_new_york(void **state)
{
	(void)state;
	coffer_tz *tz = must_load("America/New_York");
	expect_local(tz, 1772953200 - 1, 2026, 3, 8, 1, 59, -18000, 0);
	expect_local(tz, 1772953200, 2026, 3, 8, 3, 0, -14400, 1);
	expect_resolve(tz, 2026, 3, 8, 2, 30, COFFER_TZ_GAP, 1772953200, 1772953200);
	expect_local(tz, 1793512800 - 1, 2026, 11, 1, 1, 59, -14400, 1);
	expect_local(tz, 1793512800, 2026, 11, 1, 1, 0, -18000, 0);
	expect_resolve(tz, 2026, 11, 1, 1, 30, COFFER_TZ_FOLD, 1793511000, 1793514600);
	expect_resolve(
	    tz, 2026, 11, 1, 2, 30, COFFER_TZ_UNIQUE, 1793514600 + 3600, 1793514600 + 3600);
	coffer_tz_free(tz);
}

static void
test_southern_and_half_hour(void **state)
{
	(void)state;
	coffer_tz *syd = must_load("Australia/Sydney");
	/* April: 03:00 AEDT becomes 02:00 AEST; October: 02:00 AEST -> 03:00 AEDT. */
	expect_local(syd, 1775318400 - 1, 2026, 4, 5, 2, 59, 39600, 1);
	expect_local(syd, 1775318400, 2026, 4, 5, 2, 0, 36000, 0);
	expect_resolve(syd, 2026, 4, 5, 2, 30, COFFER_TZ_FOLD, 1775316600, 1775320200);
	expect_local(syd, 1791043200, 2026, 10, 4, 3, 0, 39600, 1);
	expect_resolve(syd, 2026, 10, 4, 2, 30, COFFER_TZ_GAP, 1791043200, 1791043200);
	/* New Year is summer time there, also under the footer rule. */
	assert_int_equal(coffer_tz_offset(syd, 2524608000), 39600); /* 2050-01-01 */
	assert_int_equal(coffer_tz_offset(syd, 2524608000 + 180 * 86400), 36000);
	coffer_tz_free(syd);

	coffer_tz *adl = must_load("Australia/Adelaide");
	expect_local(adl, 1791045000, 2026, 10, 4, 3, 0, 37800, 1);
	expect_local(adl, 1791045000 - 1, 2026, 10, 4, 1, 59, 34200, 0);
	expect_resolve(adl, 2026, 10, 4, 2, 30, COFFER_TZ_GAP, 1791045000, 1791045000);
	expect_resolve(adl, 2026, 4, 5, 2, 30, COFFER_TZ_FOLD, 1775318400, 1775322000);
	coffer_tz_free(adl);

	coffer_tz *kol = must_load("Asia/Kolkata");
	expect_local(kol, 1780252200, 2026, 6, 1, 0, 0, 19800, 0);
	expect_resolve(kol, 2026, 6, 1, 0, 0, COFFER_TZ_UNIQUE, 1780252200, 1780252200);
	assert_int_equal(coffer_tz_offset(kol, 2524608000), 19800);
	coffer_tz_free(kol);
}

static void
test_from_local_fields(void **state)
{
	(void)state;
	coffer_tz *tz = must_load("UTC");
	coffer_tz_local r;
	coffer_tm tm = { .year = 2027, .month = 2, .day = 29 };
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), COFFER_EINVAL);
	tm.year = 2028;
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), 0);
	assert_int_equal(r.earliest, 1835395200);
	tm.hour = 24;
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), COFFER_EINVAL);
	tm.hour = 0;
	tm.month = 13;
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), COFFER_EINVAL);
	tm.month = 0;
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), COFFER_EINVAL);
	tm = (coffer_tm) { .year = 10000, .month = 1, .day = 1 };
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), COFFER_EINVAL);
	tm = (coffer_tm) { .year = 2026, .month = 1, .day = 1, .second = 60 };
	assert_int_equal(coffer_tz_from_local(tz, &tm, &r), COFFER_EINVAL);
	coffer_tz_free(tz);
}

/* ---- bad names and bad files ---- */

struct tzdir {
	char path[512];
	char *saved;
};

static int
setup_dir(void **state)
{
	struct tzdir *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("tz-test", f->path, sizeof(f->path)) != 0) {
		free(f);
		return (-1);
	}
	const char *old = getenv("TZDIR");
	f->saved = old != NULL ? strdup(old) : NULL;
	setenv("TZDIR", f->path, 1);
	*state = f;
	return (0);
}

static int
teardown_dir(void **state)
{
	struct tzdir *f = *state;
	if (f->saved != NULL) {
		setenv("TZDIR", f->saved, 1);
	} else {
		unsetenv("TZDIR");
	}
	harness_tmpdir_remove(f->path);
	free(f->saved);
	free(f);
	return (0);
}

static void
write_file(const struct tzdir *f, const char *name, const void *data, size_t len)
{
	char path[700];
	snprintf(path, sizeof(path), "%s/%s", f->path, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void
expect_load_error(const char *name, int code)
{
	coffer_err err = { 0 };
	coffer_tz *tz = coffer_tz_load(name, &err);
	if (tz != NULL) {
		coffer_tz_free(tz);
		fail_msg("zone \"%s\" loaded, expected error %d", name, code);
	}
	assert_int_equal(err.code, code);
	assert_true(strlen(err.msg) > 0);
	assert_true(strlen(err.hint) > 0);
}

static void
test_bad_names(void **state)
{
	(void)state;
	expect_load_error(NULL, COFFER_EINVAL);
	expect_load_error("", COFFER_EINVAL);
	expect_load_error("../../etc/passwd", COFFER_EINVAL);
	expect_load_error("Europe/../Europe/Rome", COFFER_EINVAL);
	expect_load_error("/usr/share/zoneinfo/Europe/Rome", COFFER_EINVAL);
	expect_load_error("Europe/Rome;rm", COFFER_EINVAL);
	expect_load_error("Europe/Ro me", COFFER_EINVAL);
	char longname[400];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	expect_load_error(longname, COFFER_EINVAL);
	expect_load_error("Nowhere/Atlantis", COFFER_ENOENT);
	expect_load_error("Europe", COFFER_EINVAL); /* a directory */
	/* A NULL err is allowed. */
	assert_null(coffer_tz_load("Nowhere/Atlantis", NULL));
}

/* A TZif v2 file: empty v1 block, then 64-bit data and the footer. */
static size_t
make_tzif(uint8_t *out, char version, const int64_t *trans, const uint8_t *idx, size_t ntrans,
    const int32_t *offs, const uint8_t *dst, size_t ntypes, const char *footer)
{
	uint8_t *p = out;
	/* v1 header with one type and one abbreviation char, as zic -b slim. */
	memcpy(p, "TZif", 4);
	p[4] = (uint8_t)version;
	memset(p + 5, 0, 39);
	p[39] = 1; /* typecnt */
	p[43] = 1; /* charcnt */
	p += 44;
	memset(p, 0, 7);
	p += 7;
	memcpy(p, "TZif", 4);
	p[4] = (uint8_t)version;
	memset(p + 5, 0, 39);
	p[32 + 3] = (uint8_t)ntrans;
	p[36 + 3] = (uint8_t)ntypes;
	p[40 + 3] = 4; /* charcnt: "XXX\0" */
	p += 44;
	for (size_t i = 0; i < ntrans; i++) {
		uint64_t v = (uint64_t)trans[i];
		for (int b = 0; b < 8; b++) {
			*p++ = (uint8_t)(v >> (56 - 8 * b));
		}
	}
	for (size_t i = 0; i < ntrans; i++) {
		*p++ = idx[i];
	}
	for (size_t i = 0; i < ntypes; i++) {
		uint32_t v = (uint32_t)offs[i];
		*p++ = (uint8_t)(v >> 24);
		*p++ = (uint8_t)(v >> 16);
		*p++ = (uint8_t)(v >> 8);
		*p++ = (uint8_t)v;
		*p++ = dst[i];
		*p++ = 0;
	}
	memcpy(p, "XXX", 4);
	p += 4;
	*p++ = '\n';
	size_t fl = strlen(footer);
	memcpy(p, footer, fl);
	p += fl;
	*p++ = '\n';
	return ((size_t)(p - out));
}

static void
test_crafted_files(void **state)
{
	struct tzdir *f = *state;
	uint8_t buf[4096];
	const int32_t offs[2] = { -18000, -14400 };
	const uint8_t dst[2] = { 0, 1 };

	/* Footer only: the POSIX rule alone must reproduce New York in 2026. */
	size_t n = make_tzif(buf, '2', NULL, NULL, 0, offs, dst, 1, "EST5EDT,M3.2.0,M11.1.0");
	write_file(f, "Rule", buf, n);
	coffer_tz *tz = must_load("Rule");
	expect_local(tz, 1772953200 - 1, 2026, 3, 8, 1, 59, -18000, 0);
	expect_local(tz, 1772953200, 2026, 3, 8, 3, 0, -14400, 1);
	expect_resolve(tz, 2026, 11, 1, 1, 30, COFFER_TZ_FOLD, 1793511000, 1793514600);
	expect_resolve(tz, 2026, 3, 8, 2, 30, COFFER_TZ_GAP, 1772953200, 1772953200);
	coffer_tz_free(tz);

	/* Default rule (no dates after the DST name), and "<...>" names with
	 * a half-hour offset, and Julian-day rules. */
	n = make_tzif(buf, '3', NULL, NULL, 0, offs, dst, 1, "EST5EDT");
	write_file(f, "Default", buf, n);
	tz = must_load("Default");
	assert_int_equal(coffer_tz_offset(tz, 1772953200), -14400);
	assert_int_equal(coffer_tz_offset(tz, 1772953200 - 1), -18000);
	coffer_tz_free(tz);
	n = make_tzif(buf, '2', NULL, NULL, 0, offs, dst, 1, "<+0530>-5:30");
	write_file(f, "Half", buf, n);
	tz = must_load("Half");
	assert_int_equal(coffer_tz_offset(tz, 0), 19800);
	coffer_tz_free(tz);
	/* DST from Julian day 60 (March 1, leap or not) to zero-based day 300. */
	n = make_tzif(buf, '2', NULL, NULL, 0, offs, dst, 1, "AAA0BBB,J60/0,300/0");
	write_file(f, "Julian", buf, n);
	tz = must_load("Julian");
	int64_t mar1 = coffer_tz_days_from_civil(2028, 3, 1) * 86400;
	assert_int_equal(coffer_tz_offset(tz, mar1 - 1), 0);
	assert_int_equal(coffer_tz_offset(tz, mar1), 3600);
	int64_t d300 = coffer_tz_days_from_civil(2028, 1, 1) * 86400 + 300 * 86400LL;
	assert_int_equal(coffer_tz_offset(tz, d300 - 3600 - 1), 3600);
	assert_int_equal(coffer_tz_offset(tz, d300 - 3600), 0);
	coffer_tz_free(tz);
	/* "Last Wednesday of March 2026": March 1 is a Sunday, so the fifth
	 * Wednesday would be day 32 and the rule falls back to the 25th. */
	n = make_tzif(buf, '2', NULL, NULL, 0, offs, dst, 1, "AAA0BBB,M3.5.3/0,M10.5.0/0");
	write_file(f, "LastWed", buf, n);
	tz = must_load("LastWed");
	int64_t mar25 = coffer_tz_days_from_civil(2026, 3, 25) * 86400;
	assert_int_equal(coffer_tz_offset(tz, mar25 - 1), 0);
	assert_int_equal(coffer_tz_offset(tz, mar25), 3600);
	coffer_tz_free(tz);

	/* A table with one transition, then no rule: the last type persists. */
	const int64_t tr[1] = { 1000000000 };
	const uint8_t ix[1] = { 1 };
	n = make_tzif(buf, '2', tr, ix, 1, offs, dst, 2, "");
	write_file(f, "Table", buf, n);
	tz = must_load("Table");
	assert_int_equal(coffer_tz_offset(tz, 999999999), -18000);
	assert_int_equal(coffer_tz_offset(tz, 1000000000), -14400);
	assert_int_equal(coffer_tz_offset(tz, 4000000000), -14400);
	coffer_tz_local r;
	assert_int_equal(coffer_tz_resolve(tz, 1000000000 - 18000 + 600, &r), 0);
	assert_int_equal(r.kind, COFFER_TZ_GAP);
	assert_int_equal(r.earliest, 1000000000);
	coffer_tz_free(tz);

	/* The same bytes from memory. */
	tz = coffer_tz_parse("mem", buf, n, NULL);
	assert_non_null(tz);
	assert_string_equal(coffer_tz_name(tz), "mem");
	assert_int_equal(coffer_tz_offset(tz, 1000000000), -14400);
	coffer_tz_free(tz);
	coffer_err err = { 0 };
	assert_null(coffer_tz_parse(NULL, buf, n - 1, &err));
	assert_int_equal(err.code, COFFER_ECORRUPT);
	assert_null(coffer_tz_parse("big", buf, 300 * 1024, &err));
	assert_int_equal(err.code, COFFER_ECORRUPT);
	assert_null(coffer_tz_parse("none", NULL, 0, &err));
	assert_int_equal(err.code, COFFER_ECORRUPT);

	/* Bad files, each refused as corrupt with a hint. */
	write_file(f, "Garbage", "not a zone file at all, just text\n", 34);
	expect_load_error("Garbage", COFFER_ECORRUPT);
	write_file(f, "Empty", "", 0);
	expect_load_error("Empty", COFFER_ECORRUPT);
	n = make_tzif(buf, '2', tr, ix, 1, offs, dst, 2, "EST5EDT,M3.2.0,M11.1.0");
	for (size_t cut = 1; cut < n; cut++) {
		/* Every truncation fails (the footer's final newline included). */
		write_file(f, "Cut", buf, cut);
		expect_load_error("Cut", COFFER_ECORRUPT);
	}
	n = make_tzif(buf, '7', NULL, NULL, 0, offs, dst, 1, "");
	buf[4] = 'x';
	write_file(f, "Version", buf, n);
	expect_load_error("Version", COFFER_ECORRUPT);
	n = make_tzif(buf, '2', NULL, NULL, 0, offs, dst, 1, "EST5EDT,M13.2.0,M11.1.0");
	write_file(f, "BadRule", buf, n);
	expect_load_error("BadRule", COFFER_ECORRUPT);
	n = make_tzif(buf, '2', NULL, NULL, 0, offs, dst, 1, "E5");
	write_file(f, "ShortName", buf, n);
	expect_load_error("ShortName", COFFER_ECORRUPT);
	const uint8_t bad_ix[1] = { 5 };
	n = make_tzif(buf, '2', tr, bad_ix, 1, offs, dst, 2, "");
	write_file(f, "BadIndex", buf, n);
	expect_load_error("BadIndex", COFFER_ECORRUPT);
	const int64_t back[2] = { 2000, 1000 };
	const uint8_t ix2[2] = { 0, 1 };
	n = make_tzif(buf, '2', back, ix2, 2, offs, dst, 2, "");
	write_file(f, "Backwards", buf, n);
	expect_load_error("Backwards", COFFER_ECORRUPT);
	const int32_t huge[1] = { 200000 };
	n = make_tzif(buf, '2', NULL, NULL, 0, huge, dst, 1, "");
	write_file(f, "HugeOffset", buf, n);
	expect_load_error("HugeOffset", COFFER_ECORRUPT);
	uint8_t *big = calloc(1, 300 * 1024);
	assert_non_null(big);
	memcpy(big, "TZif2", 5);
	write_file(f, "Big", big, 300 * 1024);
	free(big);
	expect_load_error("Big", COFFER_ECORRUPT);
	mkdir(f->path, 0700);
	char sub[700];
	snprintf(sub, sizeof(sub), "%s/Dir", f->path);
	assert_int_equal(mkdir(sub, 0700), 0);
	expect_load_error("Dir", COFFER_EINVAL);
}

static void
test_utc_without_tzdata(void **state)
{
	(void)state;
	/* TZDIR points at an empty directory here. */
	coffer_tz *tz = must_load("UTC");
	assert_int_equal(coffer_tz_offset(tz, 0), 0);
	coffer_tz_free(tz);
	expect_load_error("Europe/Rome", COFFER_ENOENT);
}

int
main(void)
{
	/* The real-zone tests need tzdata; say so plainly instead of failing
	 * with a confusing message deep inside. */
	char probe[600];
	snprintf(probe, sizeof(probe), "%s/Europe/Rome", zonedir());
	if (access(probe, R_OK) != 0) {
		fprintf(stderr, "tz_test: %s missing: apt-get install -y tzdata\n", probe);
		return (1);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_civil),
		cmocka_unit_test(test_iso_week),
		cmocka_unit_test(test_utc),
		cmocka_unit_test(test_rome),
		cmocka_unit_test(test_new_york),
		cmocka_unit_test(test_southern_and_half_hour),
		cmocka_unit_test(test_from_local_fields),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test_setup_teardown(test_crafted_files, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_utc_without_tzdata, setup_dir, teardown_dir),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
