/*
 * Cron schedules: the classic five fields (minute hour day-of-month month
 * day-of-week) evaluated in a time zone, DST included. A parsed coffer_cron
 * is immutable and may be shared between threads.
 *
 * Syntax: each field is a comma list of "*", N, N-M, with an optional /STEP
 * ("*\/15", "1-10/2"; "5/15" means 5-max/15). Months take jan..dec and
 * day-of-week sun..sat (case-insensitive); day-of-week 7 is Sunday too.
 * Macros: @yearly (@annually), @monthly, @weekly, @daily (@midnight),
 * @hourly. "@reboot" is refused: it names no time.
 *
 * Day rule (Vixie cron's): when day-of-month and day-of-week are both
 * restricted (neither field starts with "*"), a day matches if either
 * matches: "0 0 13 * 5" runs on every 13th and every Friday. Otherwise both
 * must match, so "*\/2" in one field still combines with AND.
 *
 * DST, in the schedule's zone:
 * - a local time skipped by a spring-forward gap runs at the first instant
 *   after the gap, once, however many scheduled local times the gap swallowed
 *   ("30 2 * * *" runs at 03:00 on the day clocks jump from 02:00 to 03:00);
 * - a local time that occurs twice (fall-back fold) runs once, at its first
 *   occurrence. This holds for every schedule: "*\/15 * * * *" runs at
 *   02:00, 02:15, 02:30, 02:45 of the first pass through the repeated hour
 *   and not again in the second pass, so each local wall-clock time runs at
 *   most once; the price is a longer interval across the fold.
 *
 * Searches look at most COFFER_CRON_HORIZON_DAYS ahead (or back), enough for
 * any schedule that fires at all (Feb 29 recurs within 8 years); one that
 * never fires ("0 0 30 2 *") gives COFFER_ENOENT.
 */
#ifndef COFFER_COMMON_CONF_CRON_H
#define COFFER_COMMON_CONF_CRON_H

#include <stdint.h>

#include "common/base/error.h"
#include "common/conf/tz.h"

typedef struct coffer_cron coffer_cron;

#define COFFER_CRON_TEXT_MAX     256
#define COFFER_CRON_HORIZON_DAYS 4018 /* 11 years */

/* Parses expr. Returns NULL and fills err (COFFER_EINVAL naming the field,
 * the bad text and the allowed range; COFFER_ENOMEM). Free with
 * coffer_cron_free. */
coffer_cron *coffer_cron_parse(const char *expr, coffer_err *err);

void coffer_cron_free(coffer_cron *c);

/* The expression as given, without surrounding blanks; owned by c. */
const char *coffer_cron_text(const coffer_cron *c);

/* The first scheduled instant strictly after after_s, in *next_s.
 * Returns 0; COFFER_ENOENT if the schedule does not fire within the horizon;
 * COFFER_EINVAL if after_s is outside the years 1..9999. */
int coffer_cron_next(
    const coffer_cron *c, const coffer_tz *tz, int64_t after_s, int64_t *next_s, coffer_err *err);

/* The latest scheduled instant <= at_or_before_s, in *prev_s (for spotting a
 * missed run: compare it with the last run that happened). Same returns as
 * coffer_cron_next. */
int coffer_cron_prev(const coffer_cron *c, const coffer_tz *tz, int64_t at_or_before_s,
    int64_t *prev_s, coffer_err *err);

/* Whether expr parses as a schedule: 0, or the parser's error (a config
 * schema's check for every cron-valued key). */
int coffer_cron_check(const char *expr, coffer_err *err);

#endif
