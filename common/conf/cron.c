/*
 * Design notes.
 *
 * A schedule is five bit sets. Searching works on the local wall clock: it
 * walks local days, then matching hours and minutes, and maps each matching
 * local minute L to one UTC instant s(L) -- the only instant with that local
 * time, or the first of two in a fold, or the end of the gap that swallowed
 * it. s(L) never decreases as L grows (to show a later wall-clock time the
 * clock must first pass, or jump over, an earlier one), so the first
 * matching L whose s(L) lies after the start is the answer, and walking
 * backwards gives coffer_cron_prev the same way.
 *
 * Where to start walking: an instant t has local time between t + min_off
 * and t + max_off (the zone's extreme offsets), so every run after `after`
 * has L > after + min_off, and every run at or before T has L <= T +
 * max_off. Starting there costs at most a few hours of candidates, in
 * exchange for never having to reason about which side of a fold `after`
 * sits on.
 */
#include "common/conf/cron.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/base/clock.h"

#define CRON_DAY     86400
#define CRON_NFIELDS 5

enum {
	F_MIN,
	F_HOUR,
	F_DOM,
	F_MON,
	F_DOW
};

struct coffer_cron {
	uint64_t bits[CRON_NFIELDS];
	bool dom_star, dow_star;
	char text[COFFER_CRON_TEXT_MAX + 1];
};

static const char *const mon_names[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
	"sep", "oct", "nov", "dec" };
static const char *const dow_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };

static const struct field_def {
	const char *name;
	int min, max;
	const char *const *names; /* names[i] is value min + i */
	int nnames;
	const char *allowed;
} fields[CRON_NFIELDS] = {
	{ "minute", 0, 59, NULL, 0, "0-59" },
	{ "hour", 0, 23, NULL, 0, "0-23" },
	{ "day-of-month", 1, 31, NULL, 0, "1-31" },
	{ "month", 1, 12, mon_names, 12, "1-12 or jan-dec" },
	{ "day-of-week", 0, 7, dow_names, 7, "0-7 or sun-sat (0 and 7 are Sunday)" },
};

static const struct {
	const char *name;
	const char *expr;
} macros[] = {
	{ "@yearly", "0 0 1 1 *" },
	{ "@annually", "0 0 1 1 *" },
	{ "@monthly", "0 0 1 * *" },
	{ "@weekly", "0 0 * * 0" },
	{ "@daily", "0 0 * * *" },
	{ "@midnight", "0 0 * * *" },
	{ "@hourly", "0 * * * *" },
};

static int
field_err(coffer_err *err, int f, const char *item, size_t len, const char *why)
{
	coffer_err_set(err, COFFER_EINVAL, "cron field %s: \"%.*s\" %s (allowed %s)",
	    fields[f].name, (int)(len > 64 ? 64 : len), item, why, fields[f].allowed);
	coffer_err_hint(err,
	    "write %s as %s, a list (1,5), a range (1-5) or a step "
	    "(*/5, 1-10/2)",
	    fields[f].name, fields[f].allowed);
	return (COFFER_EINVAL);
}

/* Reads a number or a name at *pp (not past end) into *out. */
static bool
parse_value(int f, const char **pp, const char *end, int *out)
{
	const char *p = *pp;
	if (p < end && isdigit((unsigned char)*p)) {
		int v = 0;
		while (p < end && isdigit((unsigned char)*p)) {
			v = v * 10 + (*p - '0');
			if (v > 1000) {
				return (false);
			}
			p++;
		}
		*pp = p;
		*out = v;
		return (true);
	}
	if (fields[f].names == NULL || end - p < 3) {
		return (false);
	}
	if (end - p > 3 && isalpha((unsigned char)p[3])) {
		return (false);
	}
	for (int i = 0; i < fields[f].nnames; i++) {
		if (strncasecmp(p, fields[f].names[i], 3) == 0) {
			*pp = p + 3;
			*out = fields[f].min + i;
			return (true);
		}
	}
	return (false);
}

static int
parse_item(int f, const char *item, const char *end, uint64_t *bits, coffer_err *err)
{
	const struct field_def *d = &fields[f];
	size_t len = (size_t)(end - item);
	const char *p = item;
	int lo, hi, step = 1;
	bool single = false;
	if (p == end) {
		return (field_err(err, f, item, len, "has an empty list item"));
	}
	if (*p == '*') {
		lo = d->min;
		hi = f == F_DOW ? 6 : d->max;
		p++;
	} else {
		if (!parse_value(f, &p, end, &lo)) {
			return (field_err(err, f, item, len,
			    isdigit((unsigned char)*p) ? "is out of range"
			                               : "is not a number or name"));
		}
		hi = lo;
		single = true;
		if (p < end && *p == '-') {
			p++;
			if (!parse_value(f, &p, end, &hi)) {
				return (field_err(err, f, item, len, "has a range without an end"));
			}
			single = false;
		}
		if (lo < d->min || lo > d->max || hi < d->min || hi > d->max) {
			return (field_err(err, f, item, len, "is out of range"));
		}
		if (lo > hi) {
			return (field_err(err, f, item, len, "is a range that runs backwards"));
		}
	}
	if (p < end && *p == '/') {
		p++;
		if (p == end || !isdigit((unsigned char)*p) ||
		    !parse_value(F_MIN, &p, end, &step) || step < 1 || step > d->max) {
			char why[48];
			snprintf(why, sizeof(why), "has a bad step (1-%d)", d->max);
			return (field_err(err, f, item, len, why));
		}
		if (single) {
			/* "5/15" is Vixie cron's "5-max/15". */
			hi = f == F_DOW ? 6 : d->max;
		}
	}
	if (p != end) {
		return (field_err(err, f, item, len, "has unexpected characters"));
	}
	for (int v = lo; v <= hi; v += step) {
		*bits |= (uint64_t)1 << (f == F_DOW && v == 7 ? 0 : v);
	}
	return (0);
}

static int
parse_field(coffer_cron *c, int f, const char *s, const char *end, coffer_err *err)
{
	const char *item = s;
	for (const char *p = s;; p++) {
		if (p == end || *p == ',') {
			int rc = parse_item(f, item, p, &c->bits[f], err);
			if (rc != 0) {
				return (rc);
			}
			if (p == end) {
				break;
			}
			item = p + 1;
		}
	}
	if (f == F_DOM) {
		c->dom_star = s[0] == '*';
	} else if (f == F_DOW) {
		c->dow_star = s[0] == '*';
	}
	return (0);
}

static int
parse_fields(coffer_cron *c, const char *expr, coffer_err *err)
{
	const char *p = expr;
	int n = 0;
	const char *starts[CRON_NFIELDS], *ends[CRON_NFIELDS];
	for (;;) {
		while (*p == ' ' || *p == '\t') {
			p++;
		}
		if (*p == '\0') {
			break;
		}
		const char *s = p;
		while (*p != '\0' && *p != ' ' && *p != '\t') {
			p++;
		}
		if (n < CRON_NFIELDS) {
			starts[n] = s;
			ends[n] = p;
		}
		n++;
	}
	if (n != CRON_NFIELDS) {
		coffer_err_set(
		    err, COFFER_EINVAL, "cron schedule \"%s\" has %d fields, expected 5", expr, n);
		coffer_err_hint(err,
		    "write minute hour day-of-month month day-of-week, "
		    "e.g. \"30 2 * * *\", or a macro such as @daily");
		return (COFFER_EINVAL);
	}
	for (int f = 0; f < CRON_NFIELDS; f++) {
		int rc = parse_field(c, f, starts[f], ends[f], err);
		if (rc != 0) {
			return (rc);
		}
	}
	return (0);
}

coffer_cron *
coffer_cron_parse(const char *expr, coffer_err *err)
{
	if (expr == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "cron schedule missing");
		coffer_err_hint(err, "give a schedule such as \"30 2 * * *\" or @daily");
		return (NULL);
	}
	while (*expr == ' ' || *expr == '\t' || *expr == '\n' || *expr == '\r') {
		expr++;
	}
	size_t len = strlen(expr);
	while (len > 0 &&
	    (expr[len - 1] == ' ' || expr[len - 1] == '\t' || expr[len - 1] == '\n' ||
	        expr[len - 1] == '\r')) {
		len--;
	}
	if (len == 0) {
		coffer_err_set(err, COFFER_EINVAL, "cron schedule is empty");
		coffer_err_hint(err, "give a schedule such as \"30 2 * * *\" or @daily");
		return (NULL);
	}
	if (len > COFFER_CRON_TEXT_MAX) {
		coffer_err_set(err, COFFER_EINVAL, "cron schedule is longer than %d characters",
		    COFFER_CRON_TEXT_MAX);
		coffer_err_hint(err, "use ranges and steps (1-10/2) instead of long lists");
		return (NULL);
	}
	coffer_cron *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory parsing a cron schedule");
		return (NULL);
	}
	memcpy(c->text, expr, len);
	c->text[len] = '\0';
	const char *body = c->text;
	if (c->text[0] == '@') {
		body = NULL;
		for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++) {
			if (strcasecmp(c->text, macros[i].name) == 0) {
				body = macros[i].expr;
			}
		}
		if (strcasecmp(c->text, "@reboot") == 0) {
			coffer_err_set(err, COFFER_EINVAL,
			    "cron schedule @reboot names no time, so backups could not be "
			    "scheduled or checked for lateness");
			coffer_err_hint(err,
			    "use a time-based schedule such as @daily or "
			    "\"30 2 * * *\"");
			free(c);
			return (NULL);
		}
		if (body == NULL) {
			coffer_err_set(err, COFFER_EINVAL, "unknown cron macro \"%s\"", c->text);
			coffer_err_hint(err,
			    "use @hourly, @daily, @weekly, @monthly or @yearly, "
			    "or five fields");
			free(c);
			return (NULL);
		}
	}
	if (parse_fields(c, body, err) != 0) {
		free(c);
		return (NULL);
	}
	return (c);
}

void
coffer_cron_free(coffer_cron *c)
{
	free(c);
}

const char *
coffer_cron_text(const coffer_cron *c)
{
	return (c->text);
}

static bool
day_matches(const coffer_cron *c, int month, int day, int wday)
{
	if (!(c->bits[F_MON] >> month & 1)) {
		return (false);
	}
	bool dm = c->bits[F_DOM] >> day & 1;
	bool dw = c->bits[F_DOW] >> wday & 1;
	if (c->dom_star || c->dow_star) {
		return (dm && dw);
	}
	return (dm || dw);
}

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0))) {
		q--;
	}
	return (q);
}

/* The instant a matching local minute runs at (see the notes above). */
static int
run_at(const coffer_tz *tz, int64_t local, int64_t *at)
{
	coffer_tz_local r;
	int rc = coffer_tz_resolve(tz, local, &r);
	if (rc == 0) {
		*at = r.earliest;
	}
	return (rc);
}

static int
check_args(const coffer_cron *c, const coffer_tz *tz, int64_t t, const char *what, coffer_err *err)
{
	if (c == NULL || tz == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "cron %s: no schedule or no time zone", what);
		coffer_err_hint(err, "parse the schedule and load the zone first");
		return (COFFER_EINVAL);
	}
	if (t < COFFER_TZ_MIN_S + 2 * CRON_DAY || t > COFFER_TZ_MAX_S - 2 * CRON_DAY) {
		coffer_err_set(err, COFFER_EINVAL, "cron %s: time %lld is outside the years 1-9999",
		    what, (long long)t);
		coffer_err_hint(err, "pass Unix seconds, not milliseconds");
		return (COFFER_EINVAL);
	}
	return (0);
}

static int
never_fires(const coffer_cron *c, const coffer_tz *tz, int64_t t, const char *dir, coffer_err *err)
{
	char when[40];
	coffer_time_format(when, sizeof(when), t * 1000);
	coffer_err_set(err, COFFER_ENOENT,
	    "cron schedule \"%s\" has no run in the %d years %s %s (zone %s)", c->text,
	    COFFER_CRON_HORIZON_DAYS / 365, dir, when, coffer_tz_name(tz));
	coffer_err_hint(err,
	    "check that the day-of-month exists in the chosen months "
	    "(\"0 0 30 2 *\" never runs)");
	return (COFFER_ENOENT);
}

int
coffer_cron_next(
    const coffer_cron *c, const coffer_tz *tz, int64_t after_s, int64_t *next_s, coffer_err *err)
{
	int rc = check_args(c, tz, after_s, "next", err);
	if (rc != 0) {
		return (rc);
	}
	int32_t min_off, max_off;
	coffer_tz_offset_range(tz, &min_off, &max_off);
	int64_t first = (floor_div(after_s + 1 + min_off - 1, 60) + 1) * 60;
	int64_t d0 = floor_div(first, CRON_DAY);
	for (int64_t d = d0; d <= d0 + COFFER_CRON_HORIZON_DAYS; d++) {
		int64_t y;
		int mon, day, wday;
		coffer_tz_civil_from_days(d, &y, &mon, &day, &wday);
		if (!(c->bits[F_MON] >> mon & 1)) {
			d += coffer_tz_month_days(y, mon) - day; /* to the month's last day */
			continue;
		}
		if (!day_matches(c, mon, day, wday)) {
			continue;
		}
		for (int h = 0; h < 24; h++) {
			if (!(c->bits[F_HOUR] >> h & 1)) {
				continue;
			}
			for (int m = 0; m < 60; m++) {
				if (!(c->bits[F_MIN] >> m & 1)) {
					continue;
				}
				int64_t local = d * CRON_DAY + h * 3600 + m * 60;
				int64_t at;
				if (local < first) {
					continue;
				}
				if (run_at(tz, local, &at) != 0) {
					return (never_fires(c, tz, after_s, "after", err));
				}
				if (at > after_s) {
					*next_s = at;
					return (0);
				}
			}
		}
	}
	return (never_fires(c, tz, after_s, "after", err));
}

int
coffer_cron_prev(const coffer_cron *c, const coffer_tz *tz, int64_t at_or_before_s, int64_t *prev_s,
    coffer_err *err)
{
	int rc = check_args(c, tz, at_or_before_s, "prev", err);
	if (rc != 0) {
		return (rc);
	}
	int32_t min_off, max_off;
	coffer_tz_offset_range(tz, &min_off, &max_off);
	int64_t last = at_or_before_s + max_off;
	int64_t d0 = floor_div(last, CRON_DAY);
	for (int64_t d = d0; d >= d0 - COFFER_CRON_HORIZON_DAYS; d--) {
		int64_t y;
		int mon, day, wday;
		coffer_tz_civil_from_days(d, &y, &mon, &day, &wday);
		if (!(c->bits[F_MON] >> mon & 1)) {
			d -= day - 1; /* to the month's first day */
			continue;
		}
		if (!day_matches(c, mon, day, wday)) {
			continue;
		}
		for (int h = 23; h >= 0; h--) {
			if (!(c->bits[F_HOUR] >> h & 1)) {
				continue;
			}
			for (int m = 59; m >= 0; m--) {
				if (!(c->bits[F_MIN] >> m & 1)) {
					continue;
				}
				int64_t local = d * CRON_DAY + h * 3600 + m * 60;
				int64_t at;
				if (local > last) {
					continue;
				}
				if (run_at(tz, local, &at) != 0) {
					return (never_fires(c, tz, at_or_before_s, "up to", err));
				}
				if (at <= at_or_before_s) {
					*prev_s = at;
					return (0);
				}
			}
		}
	}
	return (never_fires(c, tz, at_or_before_s, "up to", err));
}

int
coffer_cron_check(const char *expr, coffer_err *err)
{
	coffer_cron *c = coffer_cron_parse(expr, err);
	if (c == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_EINVAL);
	}
	coffer_cron_free(c);
	return (0);
}
