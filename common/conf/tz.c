/*
 * Design notes.
 *
 * A TZif file (RFC 8536) is a table of transition instants, each naming a
 * local time type (UTC offset, DST flag), plus, from version 2 on, a POSIX TZ
 * string ("CET-1CEST,M3.5.0,M10.5.0/3") that gives the rule for every
 * instant after the last transition. Version 1 data (32-bit times) is read
 * only from files that have nothing newer; otherwise it is skipped, as the
 * RFC asks, because it cannot describe times past 2038.
 *
 * Local-to-UTC conversion is the delicate part. Instead of guessing the
 * offset, resolve() lists every stretch of constant offset that could
 * contain the answer (an instant t with local time L satisfies
 * L - max_off <= t <= L - min_off) and keeps each stretch whose offset maps L
 * inside it. No match means L fell into a gap, and the transition that
 * jumped over it is the first instant after the gap; two matches mean a
 * fold. This stays right for zones with several transitions close together
 * and for odd offsets (30 minutes, 45 minutes, LMT seconds).
 *
 * Files are read whole into memory, at most TZ_FILE_MAX bytes, so memory
 * never depends on what is on disk.
 */
#include "common/conf/tz.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TZ_FILE_MAX      (256 * 1024)
#define TZ_NAME_MAX      255
#define TZ_DEFAULT_DIR   "/usr/share/zoneinfo"
#define TZ_OFF_MIN       (-89999) /* RFC 8536: offsets stay within (-25h, +26h) */
#define TZ_OFF_MAX       93599
#define TZ_DAY           86400
#define TZ_RESOLVE_STEPS 64

struct tz_type {
	int32_t off;
	uint8_t isdst;
};

/* One "date[/time]" of a POSIX TZ rule. */
struct tz_rule {
	char kind; /* 'M' month.week.day, 'J' Julian 1..365 without Feb 29,
	            * 'D' zero-based day 0..365 */
	int mon, week, day;
	int32_t time; /* seconds after local midnight; may be < 0 or > 24h */
};

struct tz_posix {
	bool valid;
	bool has_dst;
	int32_t std_off; /* east of UTC */
	int32_t dst_off;
	struct tz_rule start, end;
};

struct coffer_tz {
	char *name;
	int64_t *trans;
	uint8_t *idx;
	size_t ntrans;
	struct tz_type *types;
	size_t ntypes;
	struct tz_posix footer;
	int32_t min_off, max_off;
};

/* ---- calendar ---- */

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0))) {
		q--;
	}
	return (q);
}

int64_t
coffer_tz_days_from_civil(int64_t year, int month, int day)
{
	/* Howard Hinnant's days_from_civil: years start in March, so Feb 29
	 * is the last day of the computational year. */
	int64_t y = year - (month <= 2);
	int64_t era = floor_div(y, 400);
	int64_t yoe = y - era * 400;
	int64_t mp = month > 2 ? month - 3 : month + 9;
	int64_t doy = (153 * mp + 2) / 5 + day - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return (era * 146097 + doe - 719468);
}

void
coffer_tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day, int *wday)
{
	int64_t z = days + 719468;
	int64_t era = floor_div(z, 146097);
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	int d = (int)(doy - (153 * mp + 2) / 5 + 1);
	int m = (int)(mp < 10 ? mp + 3 : mp - 9);
	if (year != NULL) {
		*year = yoe + era * 400 + (m <= 2);
	}
	if (month != NULL) {
		*month = m;
	}
	if (day != NULL) {
		*day = d;
	}
	if (wday != NULL) {
		/* 1970-01-01 was a Thursday. */
		*wday = (int)(days - floor_div(days + 4, 7) * 7 + 4);
	}
}

int
coffer_tz_is_leap(int64_t year)
{
	return ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0);
}

int
coffer_tz_month_days(int64_t year, int month)
{
	static const int mdays[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	if (month < 1 || month > 12) {
		return (0);
	}
	return (mdays[month - 1] + (month == 2 && coffer_tz_is_leap(year)));
}

static int
weekday_of(int64_t days)
{
	int wd;
	coffer_tz_civil_from_days(days, NULL, NULL, NULL, &wd);
	return (wd);
}

static int
iso_weeks_in(int64_t year)
{
	/* 53 weeks when the year starts on a Thursday, or on a Wednesday in a
	 * leap year; 52 otherwise. */
	int jan1 = weekday_of(coffer_tz_days_from_civil(year, 1, 1));
	return ((jan1 == 4 || (jan1 == 3 && coffer_tz_is_leap(year))) ? 53 : 52);
}

void
coffer_tz_iso_week(int64_t year, int month, int day, int64_t *iso_year, int *iso_week)
{
	int64_t days = coffer_tz_days_from_civil(year, month, day);
	int64_t ordinal = days - coffer_tz_days_from_civil(year, 1, 1) + 1;
	int wd = weekday_of(days);
	int iso_wd = wd == 0 ? 7 : wd;
	int64_t week = (ordinal - iso_wd + 10) / 7;
	int64_t y = year;
	if (week < 1) {
		y = year - 1;
		week = iso_weeks_in(y);
	} else if (week > iso_weeks_in(year)) {
		y = year + 1;
		week = 1;
	}
	if (iso_year != NULL) {
		*iso_year = y;
	}
	if (iso_week != NULL) {
		*iso_week = (int)week;
	}
}

/* ---- POSIX TZ strings ---- */

static bool
posix_name(const char **pp)
{
	const char *p = *pp;
	size_t n = 0;
	if (*p == '<') {
		p++;
		while (*p != '\0' && *p != '>') {
			if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			        (*p >= '0' && *p <= '9') || *p == '+' || *p == '-')) {
				return (false);
			}
			p++;
			n++;
		}
		if (*p != '>' || n < 3) {
			return (false);
		}
		*pp = p + 1;
		return (true);
	}
	while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')) {
		p++;
		n++;
	}
	if (n < 3) {
		return (false);
	}
	*pp = p;
	return (true);
}

static bool
posix_num(const char **pp, int max, int *out)
{
	const char *p = *pp;
	int v = 0;
	if (*p < '0' || *p > '9') {
		return (false);
	}
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (*p - '0');
		if (v > max) {
			return (false);
		}
		p++;
	}
	*pp = p;
	*out = v;
	return (true);
}

/* [+-]hh[:mm[:ss]] as seconds, with hours up to max_h. */
static bool
posix_hms(const char **pp, int max_h, int32_t *out)
{
	const char *p = *pp;
	int sign = 1, h = 0, m = 0, s = 0;
	if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		p++;
	}
	if (!posix_num(&p, max_h, &h)) {
		return (false);
	}
	if (*p == ':') {
		p++;
		if (!posix_num(&p, 59, &m)) {
			return (false);
		}
		if (*p == ':') {
			p++;
			if (!posix_num(&p, 59, &s)) {
				return (false);
			}
		}
	}
	*pp = p;
	*out = sign * (h * 3600 + m * 60 + s);
	return (true);
}

static bool
posix_rule(const char **pp, struct tz_rule *r)
{
	const char *p = *pp;
	if (*p == 'M') {
		p++;
		r->kind = 'M';
		if (!posix_num(&p, 12, &r->mon) || r->mon < 1 || *p++ != '.' ||
		    !posix_num(&p, 5, &r->week) || r->week < 1 || *p++ != '.' ||
		    !posix_num(&p, 6, &r->day)) {
			return (false);
		}
	} else if (*p == 'J') {
		p++;
		r->kind = 'J';
		if (!posix_num(&p, 365, &r->day) || r->day < 1) {
			return (false);
		}
	} else {
		r->kind = 'D';
		if (!posix_num(&p, 365, &r->day)) {
			return (false);
		}
	}
	r->time = 7200;
	if (*p == '/') {
		p++;
		/* RFC 8536 (version 3) allows -167..167 hours here. */
		if (!posix_hms(&p, 167, &r->time)) {
			return (false);
		}
	}
	*pp = p;
	return (true);
}

static bool
posix_parse(const char *s, struct tz_posix *out)
{
	const char *p = s;
	int32_t west;
	memset(out, 0, sizeof(*out));
	if (!posix_name(&p) || !posix_hms(&p, 24, &west)) {
		return (false);
	}
	out->std_off = -west;
	if (*p == '\0') {
		out->valid = true;
		return (out->std_off >= TZ_OFF_MIN && out->std_off <= TZ_OFF_MAX);
	}
	if (!posix_name(&p)) {
		return (false);
	}
	out->has_dst = true;
	out->dst_off = out->std_off + 3600;
	if (*p != ',' && *p != '\0') {
		if (!posix_hms(&p, 24, &west)) {
			return (false);
		}
		out->dst_off = -west;
	}
	if (*p == '\0') {
		/* POSIX leaves the default rule to the implementation; tzcode
		 * uses the US rule, and so do we. */
		out->start = (struct tz_rule) { 'M', 3, 2, 0, 7200 };
		out->end = (struct tz_rule) { 'M', 11, 1, 0, 7200 };
	} else {
		if (*p++ != ',' || !posix_rule(&p, &out->start) || *p++ != ',' ||
		    !posix_rule(&p, &out->end) || *p != '\0') {
			return (false);
		}
	}
	if (out->std_off < TZ_OFF_MIN || out->std_off > TZ_OFF_MAX || out->dst_off < TZ_OFF_MIN ||
	    out->dst_off > TZ_OFF_MAX) {
		return (false);
	}
	out->valid = true;
	return (true);
}

/* Local second at which the rule fires in year y. */
static int64_t
rule_local(const struct tz_rule *r, int64_t y)
{
	int64_t jan1 = coffer_tz_days_from_civil(y, 1, 1);
	int64_t days;
	if (r->kind == 'J') {
		days = jan1 + r->day - 1 + (coffer_tz_is_leap(y) && r->day >= 60);
	} else if (r->kind == 'D') {
		days = jan1 + r->day;
	} else {
		int64_t first = coffer_tz_days_from_civil(y, r->mon, 1);
		int wd = weekday_of(first);
		int d = (r->day - wd + 7) % 7 + (r->week - 1) * 7;
		int mdays = coffer_tz_month_days(y, r->mon);
		while (d >= mdays) {
			d -= 7;
		}
		days = first + d;
	}
	return (days * TZ_DAY + r->time);
}

/* UTC instants at which DST starts and ends in year y. The start time is
 * written in standard time, the end time in daylight time. */
static void
posix_year(const struct tz_posix *f, int64_t y, int64_t *start, int64_t *end)
{
	*start = rule_local(&f->start, y) - f->std_off;
	*end = rule_local(&f->end, y) - f->dst_off;
}

static struct tz_type
posix_type(const struct tz_posix *f, int64_t t)
{
	struct tz_type std = { f->std_off, 0 };
	struct tz_type dst = { f->dst_off, 1 };
	if (!f->has_dst) {
		return (std);
	}
	int64_t y, start, end;
	coffer_tz_civil_from_days(floor_div(t + f->std_off, TZ_DAY), &y, NULL, NULL, NULL);
	posix_year(f, y, &start, &end);
	bool in_dst;
	if (start < end) {
		in_dst = t >= start && t < end;
	} else {
		/* Southern hemisphere (or negative DST): DST spans New Year. */
		in_dst = !(t >= end && t < start);
	}
	return (in_dst ? dst : std);
}

/* The first DST rule transition strictly after t; false if the rule has none. */
static bool
posix_next(const struct tz_posix *f, int64_t t, int64_t *when)
{
	if (!f->has_dst) {
		return (false);
	}
	int64_t y, best = INT64_MAX;
	coffer_tz_civil_from_days(floor_div(t + f->std_off, TZ_DAY), &y, NULL, NULL, NULL);
	for (int64_t k = y - 1; k <= y + 1; k++) {
		int64_t start, end;
		posix_year(f, k, &start, &end);
		if (start > t && start < best) {
			best = start;
		}
		if (end > t && end < best) {
			best = end;
		}
	}
	*when = best;
	return (best != INT64_MAX);
}

/* ---- lookups ---- */

/* Index of the last transition <= t, or -1 if t precedes them all. */
static ptrdiff_t
trans_at(const coffer_tz *tz, int64_t t)
{
	size_t lo = 0, hi = tz->ntrans;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (tz->trans[mid] <= t) {
			lo = mid + 1;
		} else {
			hi = mid;
		}
	}
	return ((ptrdiff_t)lo - 1);
}

static struct tz_type
type_at(const coffer_tz *tz, int64_t t)
{
	if (tz->ntrans == 0) {
		return (tz->footer.valid ? posix_type(&tz->footer, t) : tz->types[0]);
	}
	ptrdiff_t i = trans_at(tz, t);
	if (i < 0) {
		/* RFC 8536: type 0 describes the time before the first transition. */
		return (tz->types[0]);
	}
	if ((size_t)i == tz->ntrans - 1 && t > tz->trans[i] && tz->footer.valid) {
		return (posix_type(&tz->footer, t));
	}
	return (tz->types[tz->idx[i]]);
}

/* The first instant > t at which the type may change. */
static bool
next_change(const coffer_tz *tz, int64_t t, int64_t *when)
{
	ptrdiff_t i = trans_at(tz, t);
	if ((size_t)(i + 1) < tz->ntrans) {
		*when = tz->trans[i + 1];
		return (true);
	}
	if (!tz->footer.valid) {
		return (false);
	}
	int64_t from = t;
	if (tz->ntrans > 0 && from < tz->trans[tz->ntrans - 1]) {
		from = tz->trans[tz->ntrans - 1];
	}
	return (posix_next(&tz->footer, from, when));
}

int32_t
coffer_tz_offset(const coffer_tz *tz, int64_t unix_s)
{
	return (type_at(tz, unix_s).off);
}

void
coffer_tz_offset_range(const coffer_tz *tz, int32_t *min_off, int32_t *max_off)
{
	*min_off = tz->min_off;
	*max_off = tz->max_off;
}

const char *
coffer_tz_name(const coffer_tz *tz)
{
	return (tz->name);
}

int
coffer_tz_to_local(const coffer_tz *tz, int64_t unix_s, coffer_tm *tm)
{
	if (unix_s < COFFER_TZ_MIN_S || unix_s > COFFER_TZ_MAX_S) {
		return (COFFER_EINVAL);
	}
	struct tz_type ty = type_at(tz, unix_s);
	int64_t local = unix_s + ty.off;
	int64_t days = floor_div(local, TZ_DAY);
	int64_t secs = local - days * TZ_DAY;
	int64_t y;
	memset(tm, 0, sizeof(*tm));
	coffer_tz_civil_from_days(days, &y, &tm->month, &tm->day, &tm->wday);
	tm->year = (int)y;
	tm->yday = (int)(days - coffer_tz_days_from_civil(y, 1, 1));
	tm->hour = (int)(secs / 3600);
	tm->minute = (int)(secs / 60 % 60);
	tm->second = (int)(secs % 60);
	tm->utc_offset = ty.off;
	tm->is_dst = ty.isdst;
	return (0);
}

int
coffer_tz_resolve(const coffer_tz *tz, int64_t local_s, coffer_tz_local *out)
{
	if (local_s < COFFER_TZ_MIN_S || local_s > COFFER_TZ_MAX_S) {
		return (COFFER_EINVAL);
	}
	int64_t lo = local_s - tz->max_off;
	int64_t hi = local_s - tz->min_off;
	int64_t seg = lo;
	int32_t off = type_at(tz, seg).off;
	int64_t found[2];
	int nfound = 0;
	bool gap = false;
	int64_t gap_at = 0;
	for (int step = 0; step < TZ_RESOLVE_STEPS; step++) {
		int64_t end;
		if (!next_change(tz, seg, &end) || end > hi) {
			end = INT64_MAX;
		}
		int64_t cand = local_s - off;
		if (cand >= seg && cand < end && nfound < 2) {
			if (nfound == 0 || found[nfound - 1] != cand) {
				found[nfound++] = cand;
			}
		}
		if (end == INT64_MAX) {
			break;
		}
		int32_t noff = type_at(tz, end).off;
		/* L is past the last local time of this stretch and before the
		 * first of the next: the jump at `end` skipped it. */
		if (!gap && nfound == 0 && local_s - off >= end && local_s - noff < end) {
			gap = true;
			gap_at = end;
		}
		seg = end;
		off = noff;
	}
	if (nfound > 0) {
		out->kind = nfound == 2 ? COFFER_TZ_FOLD : COFFER_TZ_UNIQUE;
		out->earliest = found[0];
		out->latest = found[nfound - 1];
	} else if (gap) {
		out->kind = COFFER_TZ_GAP;
		out->earliest = out->latest = gap_at;
	} else {
		/* Unreachable for a consistent zone; stay total rather than fail. */
		out->kind = COFFER_TZ_UNIQUE;
		out->earliest = out->latest = local_s - type_at(tz, local_s).off;
	}
	return (0);
}

int
coffer_tz_from_local(const coffer_tz *tz, const coffer_tm *tm, coffer_tz_local *out)
{
	if (tm->year < 1 || tm->year > 9999 || tm->month < 1 || tm->month > 12 || tm->day < 1 ||
	    tm->day > coffer_tz_month_days(tm->year, tm->month) || tm->hour < 0 || tm->hour > 23 ||
	    tm->minute < 0 || tm->minute > 59 || tm->second < 0 || tm->second > 59) {
		return (COFFER_EINVAL);
	}
	int64_t local = coffer_tz_days_from_civil(tm->year, tm->month, tm->day) * TZ_DAY +
	    tm->hour * 3600 + tm->minute * 60 + tm->second;
	return (coffer_tz_resolve(tz, local, out));
}

/* ---- loading ---- */

static void
tz_set_range(coffer_tz *tz)
{
	tz->min_off = INT32_MAX;
	tz->max_off = INT32_MIN;
	for (size_t i = 0; i < tz->ntypes; i++) {
		if (tz->types[i].off < tz->min_off) {
			tz->min_off = tz->types[i].off;
		}
		if (tz->types[i].off > tz->max_off) {
			tz->max_off = tz->types[i].off;
		}
	}
	if (tz->footer.valid) {
		int32_t offs[2] = { tz->footer.std_off,
			tz->footer.has_dst ? tz->footer.dst_off : tz->footer.std_off };
		for (int i = 0; i < 2; i++) {
			if (offs[i] < tz->min_off) {
				tz->min_off = offs[i];
			}
			if (offs[i] > tz->max_off) {
				tz->max_off = offs[i];
			}
		}
	}
}

static uint32_t
be32(const uint8_t *p)
{
	return (((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	    (uint32_t)p[3]);
}

static int64_t
be64s(const uint8_t *p)
{
	return ((int64_t)(((uint64_t)be32(p) << 32) | be32(p + 4)));
}

struct tzif_hdr {
	char version;
	uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static bool
tzif_header(const uint8_t *p, size_t n, struct tzif_hdr *h)
{
	if (n < 44 || memcmp(p, "TZif", 4) != 0) {
		return (false);
	}
	h->version = (char)p[4];
	h->isutcnt = be32(p + 20);
	h->isstdcnt = be32(p + 24);
	h->leapcnt = be32(p + 28);
	h->timecnt = be32(p + 32);
	h->typecnt = be32(p + 36);
	h->charcnt = be32(p + 40);
	return (true);
}

static size_t
tzif_block_len(const struct tzif_hdr *h, size_t tsize)
{
	/* Counts come from 32-bit fields, so on a 64-bit size_t this cannot
	 * overflow; the caller compares it with what the file holds. */
	return ((size_t)h->timecnt * (tsize + 1) + (size_t)h->typecnt * 6 + h->charcnt +
	    (size_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt);
}

static int
tzif_bad(coffer_err *err, const char *path, const char *why)
{
	coffer_err_set(err, COFFER_ECORRUPT, "time zone file %s is not valid TZif: %s", path, why);
	coffer_err_hint(err,
	    "reinstall the zone data (apt-get install --reinstall tzdata) "
	    "or check $TZDIR");
	return (COFFER_ECORRUPT);
}

static int
tzif_parse(coffer_tz *tz, const uint8_t *buf, size_t n, const char *path, coffer_err *err)
{
	struct tzif_hdr h;
	if (!tzif_header(buf, n, &h)) {
		return (tzif_bad(err, path, "no TZif header"));
	}
	if (h.version != '\0' && (h.version < '2' || h.version > '9')) {
		return (tzif_bad(err, path, "unknown version"));
	}
	size_t pos = 44;
	size_t tsize = 4;
	size_t len = tzif_block_len(&h, 4);
	if (len > n - pos) {
		return (tzif_bad(err, path, "version 1 data truncated"));
	}
	if (h.version != '\0') {
		pos += len;
		if (!tzif_header(buf + pos, n - pos, &h)) {
			return (tzif_bad(err, path, "no second header for 64-bit data"));
		}
		pos += 44;
		tsize = 8;
		len = tzif_block_len(&h, 8);
		if (len > n - pos) {
			return (tzif_bad(err, path, "64-bit data truncated"));
		}
	}
	if (h.typecnt == 0 || h.typecnt > 256 || h.charcnt == 0 ||
	    (h.isstdcnt != 0 && h.isstdcnt != h.typecnt) ||
	    (h.isutcnt != 0 && h.isutcnt != h.typecnt)) {
		return (tzif_bad(err, path, "inconsistent counts"));
	}
	const uint8_t *p = buf + pos;
	tz->ntrans = h.timecnt;
	tz->ntypes = h.typecnt;
	tz->trans = calloc(h.timecnt + 1, sizeof(*tz->trans));
	tz->idx = calloc(h.timecnt + 1, 1);
	tz->types = calloc(h.typecnt, sizeof(*tz->types));
	if (tz->trans == NULL || tz->idx == NULL || tz->types == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory loading time zone %s", path);
		return (COFFER_ENOMEM);
	}
	for (size_t i = 0; i < h.timecnt; i++) {
		tz->trans[i] = tsize == 8 ? be64s(p + i * 8) : (int64_t)(int32_t)be32(p + i * 4);
		if (i > 0 && tz->trans[i] <= tz->trans[i - 1]) {
			return (tzif_bad(err, path, "transition times not ascending"));
		}
	}
	p += h.timecnt * tsize;
	for (size_t i = 0; i < h.timecnt; i++) {
		tz->idx[i] = p[i];
		if (p[i] >= h.typecnt) {
			return (tzif_bad(err, path, "transition names a missing type"));
		}
	}
	p += h.timecnt;
	for (size_t i = 0; i < h.typecnt; i++) {
		int32_t off = (int32_t)be32(p + i * 6);
		if (off < TZ_OFF_MIN || off > TZ_OFF_MAX || p[i * 6 + 4] > 1 ||
		    p[i * 6 + 5] >= h.charcnt) {
			return (tzif_bad(err, path, "bad local time type"));
		}
		tz->types[i].off = off;
		tz->types[i].isdst = p[i * 6 + 4];
	}
	pos += len;
	if (h.version != '\0') {
		/* The footer: "\n" POSIX-TZ "\n". An empty string means no rule. */
		char foot[128];
		if (pos >= n || buf[pos] != '\n') {
			return (tzif_bad(err, path, "footer missing"));
		}
		const uint8_t *nl = memchr(buf + pos + 1, '\n', n - pos - 1);
		if (nl == NULL) {
			return (tzif_bad(err, path, "footer not terminated"));
		}
		size_t flen = (size_t)(nl - (buf + pos + 1));
		if (flen >= sizeof(foot)) {
			return (tzif_bad(err, path, "footer too long"));
		}
		memcpy(foot, buf + pos + 1, flen);
		foot[flen] = '\0';
		if (flen > 0 && !posix_parse(foot, &tz->footer)) {
			return (tzif_bad(err, path, "footer is not a POSIX TZ rule I understand"));
		}
	}
	tz_set_range(tz);
	return (0);
}

static bool
name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > TZ_NAME_MAX || name[0] == '/' || strstr(name, "..") != NULL) {
		return (false);
	}
	for (const char *p = name; *p != '\0'; p++) {
		bool ok = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
		    (*p >= '0' && *p <= '9') || *p == '/' || *p == '_' || *p == '+' || *p == '-' ||
		    *p == '.';
		if (!ok) {
			return (false);
		}
	}
	return (true);
}

static int
read_file(const char *name, const char *path, uint8_t **out, size_t *outlen, coffer_err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR) {
			coffer_err_set(err, COFFER_ENOENT, "unknown time zone \"%s\" (no file %s)",
			    name, path);
			coffer_err_hint(err,
			    "use an IANA name such as Europe/Rome or UTC, and "
			    "install tzdata (apt-get install tzdata)");
			return (COFFER_ENOENT);
		}
		coffer_err_errno(err, e, "open time zone file", path);
		return (err != NULL ? err->code : COFFER_EIO);
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		coffer_err_set(
		    err, COFFER_EINVAL, "time zone \"%s\" is not a zone file (%s)", name, path);
		coffer_err_hint(err, "name a zone, such as Europe/Rome, not a directory");
		return (COFFER_EINVAL);
	}
	uint8_t *buf = malloc(TZ_FILE_MAX + 1);
	if (buf == NULL) {
		close(fd);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory reading %s", path);
		return (COFFER_ENOMEM);
	}
	size_t len = 0;
	for (;;) {
		ssize_t r = read(fd, buf + len, TZ_FILE_MAX + 1 - len);
		if (r < 0 && errno == EINTR) {
			continue;
		}
		if (r < 0) {
			int e = errno;
			close(fd);
			free(buf);
			coffer_err_errno(err, e, "read time zone file", path);
			return (err != NULL ? err->code : COFFER_EIO);
		}
		if (r == 0) {
			break;
		}
		len += (size_t)r;
		if (len > TZ_FILE_MAX) {
			close(fd);
			free(buf);
			coffer_err_set(err, COFFER_ECORRUPT,
			    "time zone file %s is larger than %d bytes", path, TZ_FILE_MAX);
			coffer_err_hint(err, "point $TZDIR at real zone data (tzdata)");
			return (COFFER_ECORRUPT);
		}
	}
	close(fd);
	*out = buf;
	*outlen = len;
	return (0);
}

void
coffer_tz_free(coffer_tz *tz)
{
	if (tz == NULL) {
		return;
	}
	free(tz->name);
	free(tz->trans);
	free(tz->idx);
	free(tz->types);
	free(tz);
}

coffer_tz *
coffer_tz_load(const char *name, coffer_err *err)
{
	if (name == NULL || !name_ok(name)) {
		coffer_err_set(err, COFFER_EINVAL, "invalid time zone name \"%s\"",
		    name != NULL ? name : "(null)");
		coffer_err_hint(err,
		    "use an IANA name such as Europe/Rome: relative, without "
		    "\"..\", letters, digits and /_+-.");
		return (NULL);
	}
	coffer_tz *tz = calloc(1, sizeof(*tz));
	if (tz == NULL || (tz->name = strdup(name)) == NULL) {
		coffer_tz_free(tz);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory loading time zone %s", name);
		return (NULL);
	}
	if (strcmp(name, "UTC") == 0) {
		/* Built in, so a host without tzdata can still run UTC schedules. */
		tz->types = calloc(1, sizeof(*tz->types));
		if (tz->types == NULL) {
			coffer_tz_free(tz);
			coffer_err_set(err, COFFER_ENOMEM, "out of memory loading time zone UTC");
			return (NULL);
		}
		tz->ntypes = 1;
		tz_set_range(tz);
		return (tz);
	}
	const char *dir = getenv("TZDIR");
	if (dir == NULL || dir[0] == '\0') {
		dir = TZ_DEFAULT_DIR;
	}
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path)) {
		coffer_tz_free(tz);
		coffer_err_set(err, COFFER_EINVAL, "time zone path too long under %s", dir);
		coffer_err_hint(err, "set TZDIR to a shorter directory");
		return (NULL);
	}
	uint8_t *buf = NULL;
	size_t len = 0;
	if (read_file(name, path, &buf, &len, err) != 0) {
		coffer_tz_free(tz);
		return (NULL);
	}
	int rc = tzif_parse(tz, buf, len, path, err);
	free(buf);
	if (rc != 0) {
		coffer_tz_free(tz);
		return (NULL);
	}
	return (tz);
}

coffer_tz *
coffer_tz_parse(const char *name, const void *data, size_t len, coffer_err *err)
{
	if (name == NULL) {
		name = "(memory)";
	}
	if (len > TZ_FILE_MAX) {
		coffer_err_set(err, COFFER_ECORRUPT, "time zone data %s is larger than %d bytes",
		    name, TZ_FILE_MAX);
		coffer_err_hint(err, "pass the contents of a real TZif file");
		return (NULL);
	}
	coffer_tz *tz = calloc(1, sizeof(*tz));
	if (tz == NULL || (tz->name = strdup(name)) == NULL) {
		coffer_tz_free(tz);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory loading time zone %s", name);
		return (NULL);
	}
	if (tzif_parse(tz, data, len, name, err) != 0) {
		coffer_tz_free(tz);
		return (NULL);
	}
	return (tz);
}
