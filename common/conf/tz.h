/*
 * Time zones: IANA zones read from TZif files (RFC 8536) by this module
 * itself, so converting between UTC and a service's local time never touches
 * the process-wide TZ variable or localtime(), which are global and not
 * thread-safe. A loaded coffer_tz is immutable: any number of threads may use
 * one at once. Times are Unix seconds (UTC) as int64_t; a "local second" is
 * the count of seconds from 1970-01-01T00:00:00 on the local wall clock,
 * i.e. what the Unix time would be if the zone were UTC.
 *
 * Files come from $TZDIR or /usr/share/zoneinfo (Debian package tzdata).
 * "UTC" always loads, with or without tzdata. Leap-second ("right/") data is
 * ignored: Coffer counts POSIX seconds.
 */
#ifndef COFFER_COMMON_CONF_TZ_H
#define COFFER_COMMON_CONF_TZ_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

typedef struct coffer_tz coffer_tz;

/* Broken-down local time. */
typedef struct coffer_tm {
	int year;           /* proleptic Gregorian, e.g. 2026 */
	int month;          /* 1..12 */
	int day;            /* 1..31 */
	int hour;           /* 0..23 */
	int minute;         /* 0..59 */
	int second;         /* 0..59 */
	int wday;           /* 0..6, 0 = Sunday */
	int yday;           /* 0..365 */
	int32_t utc_offset; /* seconds east of UTC at this instant */
	int is_dst;
} coffer_tm;

/* How a local wall-clock time maps back to UTC. */
typedef enum coffer_tz_kind {
	COFFER_TZ_UNIQUE = 0, /* exactly one instant: earliest == latest */
	COFFER_TZ_GAP = 1,    /* skipped by a forward jump: earliest == latest ==
	                       * the transition, the first instant after the gap */
	COFFER_TZ_FOLD = 2,   /* happens twice (clocks went back): earliest is the
	                       * first occurrence, latest the second */
} coffer_tz_kind;

typedef struct coffer_tz_local {
	coffer_tz_kind kind;
	int64_t earliest;
	int64_t latest;
} coffer_tz_local;

/* Times outside [COFFER_TZ_MIN_S, COFFER_TZ_MAX_S] (years 1..9999) are refused
 * with COFFER_EINVAL by every conversion below. */
#define COFFER_TZ_MIN_S (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define COFFER_TZ_MAX_S 253402300799LL   /* 9999-12-31T23:59:59Z */

/* Loads the zone named like "Europe/Rome". Names must be relative, without
 * "..", made of letters, digits and "/_+-."; files over 256 KiB, and files
 * that are not valid TZif, are refused. Returns NULL and fills err on
 * failure (COFFER_EINVAL bad name, COFFER_ENOENT no such zone,
 * COFFER_ECORRUPT bad file, COFFER_EIO, COFFER_ENOMEM). Free with
 * coffer_tz_free. */
coffer_tz *coffer_tz_load(const char *name, coffer_err *err);

/* As coffer_tz_load, from TZif bytes in memory (not kept); name is only
 * used in messages and by coffer_tz_name. Same errors, minus the name and
 * file ones. */
coffer_tz *coffer_tz_parse(const char *name, const void *data, size_t len, coffer_err *err);

void coffer_tz_free(coffer_tz *tz);

/* The name it was loaded with; owned by tz. */
const char *coffer_tz_name(const coffer_tz *tz);

/* Seconds east of UTC in effect at unix_s (e.g. 3600 for CET, 7200 for CEST). */
int32_t coffer_tz_offset(const coffer_tz *tz, int64_t unix_s);

/* Smallest and largest UTC offset the zone ever uses: any instant t has its
 * local time within [t + *min_off, t + *max_off]. */
void coffer_tz_offset_range(const coffer_tz *tz, int32_t *min_off, int32_t *max_off);

/* Fills tm with the local time at unix_s. Returns 0, or COFFER_EINVAL when
 * unix_s is out of range. */
int coffer_tz_to_local(const coffer_tz *tz, int64_t unix_s, coffer_tm *tm);

/* Maps a local second (see above) to UTC, reporting gaps and folds. Returns
 * 0, or COFFER_EINVAL when out of range. */
int coffer_tz_resolve(const coffer_tz *tz, int64_t local_s, coffer_tz_local *out);

/* As coffer_tz_resolve, for the year..second fields of tm (the others are
 * ignored). Fields out of their range are refused with COFFER_EINVAL (so
 * 2027-02-29 is an error, not March 1st). */
int coffer_tz_from_local(const coffer_tz *tz, const coffer_tm *tm, coffer_tz_local *out);

/* Calendar helpers, independent of any zone. */

/* Days from 1970-01-01 to year-month-day (proleptic Gregorian; may be < 0). */
int64_t coffer_tz_days_from_civil(int64_t year, int month, int day);

/* The inverse; wday 0 = Sunday. Any of the out pointers may be NULL. */
void coffer_tz_civil_from_days(int64_t days, int64_t *year, int *month, int *day, int *wday);

int coffer_tz_is_leap(int64_t year);

/* Days in month (1..12) of year. */
int coffer_tz_month_days(int64_t year, int month);

/* ISO 8601 week date of a calendar date: the ISO year (which differs from
 * year around New Year) and week 1..53. Used for weekly retention buckets. */
void coffer_tz_iso_week(int64_t year, int month, int day, int64_t *iso_year, int *iso_week);

#endif
