/*
 * Clock: the one place Coffer asks what time it is, so tests can drive time.
 * Schedules, completion windows, retention and liveness all read a
 * coffer_clock; production code passes coffer_clock_system(), tests a manual
 * clock they advance by hand. Times are Unix milliseconds (UTC).
 */
#ifndef COFFER_COMMON_BASE_CLOCK_H
#define COFFER_COMMON_BASE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

typedef struct coffer_clock {
	int64_t (*now_ms)(const struct coffer_clock *clock);
	int64_t manual_ms; /* used by manual clocks only */
} coffer_clock;

/* The real wall clock. The returned pointer is static; never freed. */
const coffer_clock *coffer_clock_system(void);

/* A clock that stands still at start_ms until coffer_clock_advance. */
void coffer_clock_manual_init(coffer_clock *clock, int64_t start_ms);
void coffer_clock_advance(coffer_clock *clock, int64_t delta_ms);
void coffer_clock_set(coffer_clock *clock, int64_t at_ms);

/* clock NULL means the system clock: production code passes NULL, tests a
 * manual clock. */
static inline int64_t
coffer_clock_now(const coffer_clock *clock)
{
	if (clock == NULL)
		clock = coffer_clock_system();
	return (clock->now_ms(clock));
}

/* Monotonic milliseconds for measuring durations; not wall time. */
int64_t coffer_clock_monotonic_ms(void);

/* Formats Unix ms as RFC 3339 UTC "2026-11-23T02:56:26.123Z" into buf (>= 25 bytes). */
char *coffer_time_format(char *buf, size_t size, int64_t unix_ms);

/* Parses RFC 3339 ("2026-11-23T02:56:26Z", optional fraction, "Z" or +hh:mm)
 * or "2026-11-23 02:56:26+01". Returns 0 or COFFER_EINVAL. */
int coffer_time_parse(const char *text, int64_t *unix_ms);

/* Parses a duration "90s", "15m", "2h", "7d", "1w", "500ms" into ms.
 * "forever" gives -1 only if allow_forever. Returns 0 or COFFER_EINVAL. */
int coffer_duration_parse(const char *text, int allow_forever, int64_t *ms);

/* Formats ms as the shortest exact duration ("90s", "2h", "7d"). */
char *coffer_duration_format(char *buf, size_t size, int64_t ms);

#endif
