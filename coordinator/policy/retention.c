/*
 * Retention rule. See coordinator/policy/retention.h for the contract and
 * docs/RETENTION.md for the rule with examples.
 *
 * Design notes.
 * Every calendar period is turned into one integer index per tier (days
 * since 1970-01-01 local, Monday-based weeks, year*12+month, year), so "the
 * last N periods" is the half-open range (current - N, current] and "the
 * period N after p" is p + N: no calendar walking, no per-period sets, and
 * the answer cannot depend on how many periods lack a backup. ISO weeks are
 * exactly the Monday-to-Sunday weeks, so numbering Mondays from the epoch
 * gives the same buckets as (ISO year, ISO week) without the year-boundary
 * special cases.
 *
 * Completed backups are sorted newest first once; then, per tier, the
 * first backup seen in a period is that period's newest. The floor and the
 * newest-restorable rule read the same order. That is O(n log n) time and
 * one array of n indices.
 *
 * Decisions are made only when every input is sane: a timestamp outside the
 * calendar's range fails the whole evaluation, because a partial answer
 * would let the caller delete backups on the strength of a rule that did
 * not see all of them.
 */
#include "coordinator/policy/retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t
floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;
	if ((a % b != 0) && ((a < 0) != (b < 0))) {
		q--;
	}
	return (q);
}

/* The period index of local date y-m-d for one tier. */
static int64_t
period_of(coord_retention_tier t, int64_t y, int m, int d)
{
	switch (t) {
	case COORD_TIER_DAILY:
		return (coffer_tz_days_from_civil(y, m, d));
	case COORD_TIER_WEEKLY:
		/* 1970-01-01 was a Thursday: day 4 is the first Monday, week 1. */
		return (floor_div(coffer_tz_days_from_civil(y, m, d) + 3, 7));
	case COORD_TIER_MONTHLY:
		return (y * 12 + (m - 1));
	case COORD_TIER_YEARLY:
	default:
		return (y);
	}
}

/* The UTC instant (ms) at which period p of tier t begins: local midnight
 * of its first day, the earliest instant if midnight happens twice, the
 * end of the gap if a DST jump skips it. COORD_RETENTION_NEVER if the date
 * is past the calendar's range. */
static int64_t
period_start_ms(const coffer_tz *tz, coord_retention_tier t, int64_t p)
{
	coffer_tm tm = { 0 };
	int64_t y = 0;
	int m = 1, d = 1;
	switch (t) {
	case COORD_TIER_DAILY:
		if (p > 3000000 || p < -800000) {
			return (COORD_RETENTION_NEVER);
		}
		coffer_tz_civil_from_days(p, &y, &m, &d, NULL);
		break;
	case COORD_TIER_WEEKLY:
		if (p > 500000 || p < -120000) {
			return (COORD_RETENTION_NEVER);
		}
		coffer_tz_civil_from_days(p * 7 - 3, &y, &m, &d, NULL);
		break;
	case COORD_TIER_MONTHLY:
		y = floor_div(p, 12);
		m = (int)(p - y * 12) + 1;
		break;
	case COORD_TIER_YEARLY:
	default:
		y = p;
		break;
	}
	if (y < 1 || y > 9999) {
		return (COORD_RETENTION_NEVER);
	}
	tm.year = (int)y;
	tm.month = m;
	tm.day = d;
	coffer_tz_local loc;
	if (coffer_tz_from_local(tz, &tm, &loc) != 0) {
		return (COORD_RETENTION_NEVER);
	}
	return (loc.earliest * 1000);
}

/* Local calendar date of a UTC millisecond instant. */
static int
local_date(const coffer_tz *tz, int64_t ms, int64_t *y, int *m, int *d)
{
	coffer_tm tm;
	int rc = coffer_tz_to_local(tz, floor_div(ms, 1000), &tm);
	if (rc != 0) {
		return (rc);
	}
	*y = tm.year;
	*m = tm.month;
	*d = tm.day;
	return (0);
}

struct sort_ctx {
	const coord_retention_backup *b;
	size_t i;
};

/* Newest first; equal times by id (greater first), then by input position
 * (later first), so the order, and so the answer, never depends on qsort. */
static int
newest_first(const void *pa, const void *pb)
{
	const struct sort_ctx *a = pa, *b = pb;
	if (a->b->finished_at_ms != b->b->finished_at_ms) {
		return (a->b->finished_at_ms > b->b->finished_at_ms ? -1 : 1);
	}
	const char *ia = a->b->id != NULL ? a->b->id : "";
	const char *ib = b->b->id != NULL ? b->b->id : "";
	int c = strcmp(ia, ib);
	if (c != 0) {
		return (c > 0 ? -1 : 1);
	}
	return (a->i > b->i ? -1 : (a->i < b->i ? 1 : 0));
}

static const char *const tier_keys[COORD_TIER_COUNT] = {
	"retention.daily",
	"retention.weekly",
	"retention.monthly",
	"retention.yearly",
};

static int
check_policy(const coord_retention_policy *p, coffer_err *err)
{
	for (int t = 0; t < COORD_TIER_COUNT; t++) {
		int32_t c = p->tiers[t];
		if (c != COORD_RETENTION_FOREVER && (c < 0 || c > COORD_RETENTION_MAX_COUNT)) {
			coffer_err_set(err, COFFER_EINVAL,
			    "retention policy: %s = %d is out of range", tier_keys[t], (int)c);
			return (coffer_err_hint(
			    err, "use 0 to %d, or forever", COORD_RETENTION_MAX_COUNT));
		}
	}
	if (p->min_redundancy < 0 || p->grace_ms < 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "retention policy: min_redundancy (%d) and grace (%lld ms) must not be negative",
		    (int)p->min_redundancy, (long long)p->grace_ms);
		return (coffer_err_hint(err, "check the policy read from the service's section"));
	}
	return (0);
}

static int64_t
add_sat(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b) {
		return (INT64_MAX);
	}
	return (a + b);
}

int
coord_retention_evaluate(const coord_retention_policy *policy, const coffer_tz *tz, int64_t now_ms,
    const coord_retention_backup *backups, size_t n, coord_retention_decision *out, coffer_err *err)
{
	int rc = check_policy(policy, err);
	if (rc != 0) {
		return (rc);
	}
	int64_t cur[COORD_TIER_COUNT];
	{
		int64_t y;
		int m, d;
		if (local_date(tz, now_ms, &y, &m, &d) != 0) {
			coffer_err_set(err, COFFER_EINVAL,
			    "retention: now (%lld ms) is out of range", (long long)now_ms);
			return (coffer_err_hint(err, "check the coordinator's clock"));
		}
		for (int t = 0; t < COORD_TIER_COUNT; t++) {
			cur[t] = period_of((coord_retention_tier)t, y, m, d);
		}
	}
	for (size_t i = 0; i < n; i++) {
		out[i] = (coord_retention_decision) { 0 };
	}
	size_t nc = 0;
	for (size_t i = 0; i < n; i++) {
		nc += backups[i].status == COORD_BACKUP_COMPLETED;
	}
	struct sort_ctx *ord = NULL;
	if (nc > 0) {
		ord = calloc(nc, sizeof(*ord));
		if (ord == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM,
			    "retention: out of memory sorting %zu backups", nc));
		}
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (backups[i].status == COORD_BACKUP_COMPLETED) {
			ord[k].b = &backups[i];
			ord[k].i = i;
			k++;
		}
	}
	if (nc > 1) {
		qsort(ord, nc, sizeof(*ord), newest_first);
	}

	int64_t last[COORD_TIER_COUNT];
	bool seen[COORD_TIER_COUNT] = { false };
	bool newest_done = false;
	for (size_t j = 0; j < nc; j++) {
		const coord_retention_backup *b = ord[j].b;
		coord_retention_decision *o = &out[ord[j].i];
		/* A stamp from the future counts as now: never out of every window. */
		int64_t at = b->finished_at_ms < now_ms ? b->finished_at_ms : now_ms;
		int64_t y;
		int m, d;
		if (local_date(tz, at, &y, &m, &d) != 0) {
			free(ord);
			coffer_err_set(err, COFFER_EINVAL,
			    "retention: backup %s has finished_at %lld ms, outside the years 1..9999",
			    b->id != NULL ? b->id : "(no id)", (long long)b->finished_at_ms);
			return (coffer_err_hint(err,
			    "fix the catalog row; nothing was decided for "
			    "this service"));
		}
		for (int t = 0; t < COORD_TIER_COUNT; t++) {
			int32_t count = policy->tiers[t];
			int64_t p = period_of((coord_retention_tier)t, y, m, d);
			if (count == 0 || (seen[t] && p == last[t])) {
				continue; /* tier off, or not the newest of its period */
			}
			seen[t] = true;
			last[t] = p;
			if (count != COORD_RETENTION_FOREVER && cur[t] - p >= count) {
				continue; /* its period is out of the window */
			}
			int64_t exp = count == COORD_RETENTION_FOREVER
			    ? COORD_RETENTION_NEVER
			    : period_start_ms(tz, (coord_retention_tier)t, p + count);
			if ((o->reasons & COORD_KEEP_TIERS) == 0 || exp > o->expires_at_ms) {
				o->expires_at_ms = exp;
			}
			o->reasons |= 1u << t;
		}
		if ((int64_t)j < policy->min_redundancy) {
			o->reasons |= COORD_KEEP_MIN_REDUNDANCY;
		}
		if (!newest_done && b->restorable) {
			o->reasons |= COORD_KEEP_NEWEST;
			newest_done = true;
		}
	}
	free(ord);

	for (size_t i = 0; i < n; i++) {
		const coord_retention_backup *b = &backups[i];
		coord_retention_decision *o = &out[i];
		if (b->held) {
			o->reasons |= COORD_KEEP_HOLD;
		}
		if (b->status == COORD_BACKUP_RUNNING) {
			o->reasons |= COORD_KEEP_RUNNING;
		}
		if (o->reasons != 0) {
			o->action = COORD_RETENTION_KEEP;
			continue;
		}
		o->expires_at_ms = COORD_RETENTION_NO_EXPIRY;
		if (b->pending_since_ms == 0) {
			o->action = COORD_RETENTION_EXPIRE_NOW;
			o->delete_at_ms = add_sat(now_ms, policy->grace_ms);
		} else {
			o->delete_at_ms = add_sat(b->pending_since_ms, policy->grace_ms);
			o->action = now_ms >= o->delete_at_ms ? COORD_RETENTION_DELETE
			                                      : COORD_RETENTION_PENDING;
		}
	}
	return (0);
}

static const struct {
	unsigned bit;
	const char *name;
} reason_names[] = {
	{ COORD_KEEP_DAILY, "daily" },
	{ COORD_KEEP_WEEKLY, "weekly" },
	{ COORD_KEEP_MONTHLY, "monthly" },
	{ COORD_KEEP_YEARLY, "yearly" },
	{ COORD_KEEP_MIN_REDUNDANCY, "min_redundancy" },
	{ COORD_KEEP_NEWEST, "newest" },
	{ COORD_KEEP_HOLD, "hold" },
	{ COORD_KEEP_RUNNING, "running" },
};

const char *
coord_retention_reason_name(unsigned bit)
{
	for (size_t i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++) {
		if (reason_names[i].bit == bit) {
			return (reason_names[i].name);
		}
	}
	return (NULL);
}

char *
coord_retention_reasons_format(unsigned reasons, char *buf, size_t size)
{
	size_t used = 0;
	if (size == 0) {
		return (buf);
	}
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(reason_names) / sizeof(reason_names[0]); i++) {
		if ((reasons & reason_names[i].bit) == 0) {
			continue;
		}
		size_t len = strlen(reason_names[i].name) + (used > 0);
		if (len >= size - used) {
			break; /* whole names only, so a short buffer never shows half a reason */
		}
		snprintf(
		    buf + used, size - used, "%s%s", used > 0 ? "," : "", reason_names[i].name);
		used += len;
	}
	return (buf);
}

const char *
coord_retention_action_name(coord_retention_action a)
{
	switch (a) {
	case COORD_RETENTION_KEEP:
		return ("keep");
	case COORD_RETENTION_EXPIRE_NOW:
		return ("expire_now");
	case COORD_RETENTION_PENDING:
		return ("pending");
	case COORD_RETENTION_DELETE:
		return ("delete");
	}
	return ("unknown");
}
