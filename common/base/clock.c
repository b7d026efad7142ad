#include "common/base/clock.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"

static int64_t
clock_system_now(const coffer_clock *clock)
{
	(void)clock;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static int64_t
clock_manual_now(const coffer_clock *clock)
{
	return (clock->manual_ms);
}

static const coffer_clock clock_system = { clock_system_now, 0 };

const coffer_clock *
coffer_clock_system(void)
{
	return (&clock_system);
}

void
coffer_clock_manual_init(coffer_clock *clock, int64_t start_ms)
{
	clock->now_ms = clock_manual_now;
	clock->manual_ms = start_ms;
}

void
coffer_clock_advance(coffer_clock *clock, int64_t delta_ms)
{
	clock->manual_ms += delta_ms;
}

void
coffer_clock_set(coffer_clock *clock, int64_t at_ms)
{
	clock->manual_ms = at_ms;
}

int64_t
coffer_clock_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

char *
coffer_time_format(char *buf, size_t size, int64_t unix_ms)
{
	time_t secs = (time_t)(unix_ms >= 0 ? unix_ms / 1000 : (unix_ms - 999) / 1000);
	int ms = (int)(unix_ms - (int64_t)secs * 1000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
	    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
	return (buf);
}

static int
parse_digits(const char **p, int count, int *out)
{
	int v = 0;
	for (int i = 0; i < count; i++) {
		if (!isdigit((unsigned char)**p)) {
			return (COFFER_EINVAL);
		}
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	*out = v;
	return (0);
}

int
coffer_time_parse(const char *text, int64_t *unix_ms)
{
	const char *p = text;
	int year, mon, day, hour = 0, min = 0, sec = 0, ms = 0;
	if (parse_digits(&p, 4, &year) || *p++ != '-' || parse_digits(&p, 2, &mon) || *p++ != '-' ||
	    parse_digits(&p, 2, &day)) {
		return (COFFER_EINVAL);
	}
	if (*p == 'T' || *p == ' ') {
		p++;
		if (parse_digits(&p, 2, &hour) || *p++ != ':' || parse_digits(&p, 2, &min)) {
			return (COFFER_EINVAL);
		}
		if (*p == ':') {
			p++;
			if (parse_digits(&p, 2, &sec)) {
				return (COFFER_EINVAL);
			}
			if (*p == '.') {
				p++;
				int scale = 100;
				if (!isdigit((unsigned char)*p)) {
					return (COFFER_EINVAL);
				}
				while (isdigit((unsigned char)*p)) {
					ms += (*p - '0') * scale;
					scale /= 10;
					p++;
				}
			}
		}
	}
	int offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om = 0;
		p++;
		if (parse_digits(&p, 2, &oh)) {
			return (COFFER_EINVAL);
		}
		if (*p == ':') {
			p++;
		}
		if (isdigit((unsigned char)*p) && parse_digits(&p, 2, &om)) {
			return (COFFER_EINVAL);
		}
		offset_min = sign * (oh * 60 + om);
	} else if (*p != '\0') {
		return (COFFER_EINVAL);
	}
	if (*p != '\0' || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
	    sec > 60) {
		return (COFFER_EINVAL);
	}
	struct tm tm = { 0 };
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	if (tm.tm_mday != day) {
		return (COFFER_EINVAL); /* 31 April and friends */
	}
	*unix_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
	return (0);
}

int
coffer_duration_parse(const char *text, int allow_forever, int64_t *ms)
{
	if (strcmp(text, "forever") == 0) {
		if (!allow_forever) {
			return (COFFER_EINVAL);
		}
		*ms = -1;
		return (0);
	}
	if (!isdigit((unsigned char)text[0])) {
		return (COFFER_EINVAL);
	}
	errno = 0;
	char *end;
	unsigned long long v = strtoull(text, &end, 10);
	if (errno != 0) {
		return (COFFER_EINVAL);
	}
	int64_t unit;
	if (strcmp(end, "ms") == 0) {
		unit = 1;
	} else if (strcmp(end, "s") == 0) {
		unit = 1000;
	} else if (strcmp(end, "m") == 0) {
		unit = 60 * 1000;
	} else if (strcmp(end, "h") == 0) {
		unit = 3600 * 1000;
	} else if (strcmp(end, "d") == 0) {
		unit = 86400 * 1000;
	} else if (strcmp(end, "w") == 0) {
		unit = 7 * 86400 * 1000;
	} else {
		return (COFFER_EINVAL);
	}
	/* A century is far beyond any sane duration and keeps arithmetic safe. */
	if (v > (unsigned long long)(100LL * 366 * 86400 * 1000) / (unsigned long long)unit) {
		return (COFFER_EINVAL);
	}
	*ms = (int64_t)v * unit;
	return (0);
}

char *
coffer_duration_format(char *buf, size_t size, int64_t ms)
{
	static const struct {
		int64_t unit;
		const char *suffix;
	} units[] = { { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } };
	if (ms < 0) {
		snprintf(buf, size, "forever");
		return (buf);
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (ms != 0 && ms % units[i].unit == 0) {
			snprintf(buf, size, "%" PRId64 "%s", ms / units[i].unit, units[i].suffix);
			return (buf);
		}
	}
	snprintf(buf, size, "%" PRId64 "ms", ms);
	return (buf);
}
