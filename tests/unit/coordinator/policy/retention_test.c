/* Retention rule: three simulated years of backups in Europe/Rome (DST
 * changes, failed days, a failure streak longer than the daily window,
 * unrestorable backups, running backups, holds, two policy changes), with
 * every decision on every day compared against a brute-force model of the
 * rule written here with different means: calendar keys from
 * coffer_tz_to_local and coffer_tz_iso_week, windows as sets built by
 * walking the calendar backwards one day / week / month / year at a time,
 * "newest of its period" and the floor by comparing every pair. Then each
 * override shown winning on its own, worked DST and ISO-week boundaries with
 * expected instants computed independently (Python zoneinfo), and bad input
 * refused without a decision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/base/clock.h"
#include "common/conf/tz.h"
#include "coordinator/policy/retention.h"

#define HOUR_MS (3600LL * 1000)
#define DAY_MS  (24 * HOUR_MS)

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
utc_ms(int y, int m, int d, int hh, int mm)
{
	return ((coffer_tz_days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60) * 1000);
}

/* ---- the model: written without the module's period indices ---- */

static int
model_mdays(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return (m == 2 && leap ? 29 : days[m - 1]);
}

typedef struct mdate {
	int y, m, d;
} mdate;

static mdate
prev_day(mdate x)
{
	if (x.d > 1) {
		x.d--;
		return (x);
	}
	if (--x.m == 0) {
		x.m = 12;
		x.y--;
	}
	x.d = model_mdays(x.y, x.m);
	return (x);
}

static mdate
next_day(mdate x)
{
	if (x.d < model_mdays(x.y, x.m)) {
		x.d++;
		return (x);
	}
	x.d = 1;
	if (++x.m == 13) {
		x.m = 1;
		x.y++;
	}
	return (x);
}

static mdate
local_of(const coffer_tz *tz, int64_t ms, int *wday)
{
	coffer_tm tm;
	assert_int_equal(coffer_tz_to_local(tz, ms / 1000, &tm), 0);
	if (wday != NULL) {
		*wday = tm.wday;
	}
	return ((mdate) { tm.year, tm.month, tm.day });
}

static int64_t
key_of(int tier, mdate x)
{
	int64_t iy;
	int iw;
	switch (tier) {
	case 0:
		return ((int64_t)x.y * 10000 + x.m * 100 + x.d);
	case 1:
		coffer_tz_iso_week(x.y, x.m, x.d, &iy, &iw);
		return (iy * 100 + iw);
	case 2:
		return ((int64_t)x.y * 100 + x.m);
	default:
		return (x.y);
	}
}

/* Local midnight at the start of date x, as UTC ms (earliest if repeated). */
static int64_t
midnight_ms(const coffer_tz *tz, mdate x)
{
	coffer_tm tm = { .year = x.y, .month = x.m, .day = x.d };
	coffer_tz_local loc;
	assert_int_equal(coffer_tz_from_local(tz, &tm, &loc), 0);
	return (loc.earliest * 1000);
}

#define WIN_MAX 64

/* The keys of the N periods ending with today's, by walking back. */
static size_t
window_keys(int tier, mdate today, int n, int64_t *keys)
{
	assert_true(n <= WIN_MAX);
	mdate x = today;
	for (int i = 0; i < n; i++) {
		keys[i] = key_of(tier, x);
		int steps = tier == 0 ? 1 : tier == 1 ? 7 : 0;
		for (int s = 0; s < steps; s++) {
			x = prev_day(x);
		}
		if (tier == 2) {
			x.d = 1;
			x = prev_day(x);
		} else if (tier == 3) {
			x = (mdate) { x.y - 1, 12, 31 };
		}
	}
	return ((size_t)n);
}

/* When period of x (tier) leaves an n-period window: the start of the
 * period n after it, found by walking forwards. */
static int64_t
model_expiry(const coffer_tz *tz, int tier, mdate x, int wday, int n)
{
	if (n == COORD_RETENTION_FOREVER) {
		return (COORD_RETENTION_NEVER);
	}
	switch (tier) {
	case 0:
		for (int i = 0; i < n; i++) {
			x = next_day(x);
		}
		break;
	case 1:
		for (int back = (wday + 6) % 7; back > 0; back--) {
			x = prev_day(x);
		}
		for (int i = 0; i < 7 * n; i++) {
			x = next_day(x);
		}
		break;
	case 2:
		x.d = 1;
		for (int i = 0; i < n; i++) {
			x.m++;
			if (x.m == 13) {
				x.m = 1;
				x.y++;
			}
		}
		break;
	default:
		x = (mdate) { x.y + n, 1, 1 };
		break;
	}
	return (midnight_ms(tz, x));
}

typedef struct model_out {
	unsigned reasons;
	int64_t expires;
	coord_retention_action action;
} model_out;

static void
model_decide(const coord_retention_policy *p, const coffer_tz *tz, int64_t now,
    const coord_retention_backup *b, size_t n, model_out *out)
{
	mdate today = local_of(tz, now, NULL);
	int64_t win[COORD_TIER_COUNT][WIN_MAX];
	size_t nwin[COORD_TIER_COUNT] = { 0 };
	for (int t = 0; t < COORD_TIER_COUNT; t++) {
		if (p->tiers[t] > 0) {
			nwin[t] = window_keys(t, today, p->tiers[t], win[t]);
		}
	}
	static mdate dates[4000];
	static int wdays[4000];
	assert_true(n <= 4000);
	for (size_t i = 0; i < n; i++) {
		if (b[i].status == COORD_BACKUP_COMPLETED) {
			dates[i] = local_of(tz, b[i].finished_at_ms, &wdays[i]);
		}
	}
	for (size_t i = 0; i < n; i++) {
		out[i] = (model_out) { 0 };
		if (b[i].held) {
			out[i].reasons |= COORD_KEEP_HOLD;
		}
		if (b[i].status == COORD_BACKUP_RUNNING) {
			out[i].reasons |= COORD_KEEP_RUNNING;
		}
		if (b[i].status != COORD_BACKUP_COMPLETED) {
			continue;
		}
		int wday = wdays[i];
		mdate x = dates[i];
		size_t newer = 0, newer_restorable = 0;
		bool newest_in[COORD_TIER_COUNT] = { true, true, true, true };
		for (size_t j = 0; j < n; j++) {
			if (j == i || b[j].status != COORD_BACKUP_COMPLETED ||
			    b[j].finished_at_ms <= b[i].finished_at_ms) {
				continue;
			}
			newer++;
			newer_restorable += b[j].restorable;
			mdate y = dates[j];
			for (int t = 0; t < COORD_TIER_COUNT; t++) {
				if (key_of(t, y) == key_of(t, x)) {
					newest_in[t] = false;
				}
			}
		}
		for (int t = 0; t < COORD_TIER_COUNT; t++) {
			bool covered = p->tiers[t] == COORD_RETENTION_FOREVER;
			for (size_t k = 0; k < nwin[t]; k++) {
				covered = covered || win[t][k] == key_of(t, x);
			}
			if (covered && newest_in[t]) {
				int64_t e = model_expiry(tz, t, x, wday, p->tiers[t]);
				if ((out[i].reasons & COORD_KEEP_TIERS) == 0 ||
				    e > out[i].expires) {
					out[i].expires = e;
				}
				out[i].reasons |= 1u << t;
			}
		}
		if ((int64_t)newer < p->min_redundancy) {
			out[i].reasons |= COORD_KEEP_MIN_REDUNDANCY;
		}
		if (b[i].restorable && newer_restorable == 0) {
			out[i].reasons |= COORD_KEEP_NEWEST;
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (out[i].reasons != 0) {
			out[i].action = COORD_RETENTION_KEEP;
		} else if (b[i].pending_since_ms == 0) {
			out[i].action = COORD_RETENTION_EXPIRE_NOW;
		} else if (now - b[i].pending_since_ms >= p->grace_ms) {
			out[i].action = COORD_RETENTION_DELETE;
		} else {
			out[i].action = COORD_RETENTION_PENDING;
		}
	}
}

/* ---- the simulation ---- */

#define SIM_MAX 4000

typedef struct sim {
	coord_retention_backup b[SIM_MAX];
	char ids[SIM_MAX][24];
	size_t n;
	coord_retention_policy policy;
	const coffer_tz *tz;
	coffer_clock clock;
	/* what happened, to prove each rule was exercised */
	unsigned long evaluations, expired, deleted, revived, floor_only, newest_only, hold_only,
	    running, dst_days;
} sim;

static size_t
sim_add(sim *s, coord_backup_status st, int64_t at, bool restorable)
{
	assert_true(s->n < SIM_MAX);
	size_t i = s->n++;
	snprintf(s->ids[i], sizeof(s->ids[i]), "b%04zu", i);
	s->b[i] = (coord_retention_backup) {
		.id = s->ids[i], .finished_at_ms = at, .status = st, .restorable = restorable
	};
	return (i);
}

static size_t
sim_find(const sim *s, int64_t at)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->b[i].finished_at_ms == at) {
			return (i);
		}
	}
	fail_msg("no backup at %lld", (long long)at);
	return (0);
}

/* One pass of the retention job: decide, compare with the model, apply. */
static void
sim_run(sim *s)
{
	static coord_retention_decision got[SIM_MAX];
	static model_out want[SIM_MAX];
	int64_t now = coffer_clock_now(&s->clock);
	coffer_err err = { 0 };
	int rc = coord_retention_evaluate(&s->policy, s->tz, now, s->b, s->n, got, &err);
	if (rc != 0) {
		fail_msg("evaluate: %s", err.msg);
	}
	model_decide(&s->policy, s->tz, now, s->b, s->n, want);
	s->evaluations++;
	for (size_t i = 0; i < s->n; i++) {
		if (got[i].reasons != want[i].reasons || got[i].action != want[i].action ||
		    ((want[i].reasons & COORD_KEEP_TIERS) != 0 &&
		        got[i].expires_at_ms != want[i].expires)) {
			char gr[128], wr[128], t[32];
			fail_msg(
			    "at %s backup %s (finished %lld, status %d): got %s [%s] expiry %lld, "
			    "model %s [%s] expiry %lld",
			    coffer_time_format(t, sizeof(t), now), s->b[i].id,
			    (long long)s->b[i].finished_at_ms, (int)s->b[i].status,
			    coord_retention_action_name(got[i].action),
			    coord_retention_reasons_format(got[i].reasons, gr, sizeof(gr)),
			    (long long)got[i].expires_at_ms,
			    coord_retention_action_name(want[i].action),
			    coord_retention_reasons_format(want[i].reasons, wr, sizeof(wr)),
			    (long long)want[i].expires);
		}
		if (got[i].action == COORD_RETENTION_KEEP) {
			assert_int_equal(got[i].delete_at_ms, 0);
		} else {
			assert_int_equal(got[i].expires_at_ms, COORD_RETENTION_NO_EXPIRY);
		}
		/* A tier's expiry is always ahead: it is when the window moves on. */
		if ((got[i].reasons & COORD_KEEP_TIERS) != 0) {
			assert_true(got[i].expires_at_ms > now);
		}
		unsigned r = got[i].reasons;
		s->floor_only += r == COORD_KEEP_MIN_REDUNDANCY;
		s->newest_only += r == COORD_KEEP_NEWEST;
		s->hold_only += r == COORD_KEEP_HOLD;
		s->running += (r & COORD_KEEP_RUNNING) != 0;
	}
	/* Apply, compacting deleted backups away as the catalog would. */
	size_t w = 0;
	for (size_t i = 0; i < s->n; i++) {
		switch (got[i].action) {
		case COORD_RETENTION_KEEP:
			if (s->b[i].pending_since_ms != 0) {
				s->revived++;
				s->b[i].pending_since_ms = 0;
			}
			break;
		case COORD_RETENTION_EXPIRE_NOW:
			assert_int_equal(got[i].delete_at_ms, now + s->policy.grace_ms);
			s->b[i].pending_since_ms = now;
			s->expired++;
			break;
		case COORD_RETENTION_PENDING:
			assert_true(got[i].delete_at_ms > now);
			break;
		case COORD_RETENTION_DELETE:
			assert_true(now - s->b[i].pending_since_ms >= s->policy.grace_ms);
			s->deleted++;
			continue;
		}
		if (w != i) {
			s->b[w] = s->b[i];
			memcpy(s->ids[w], s->ids[i], sizeof(s->ids[w]));
			s->b[w].id = s->ids[w];
		}
		w++;
	}
	s->n = w;
}

static void
test_three_years_against_model(void **state)
{
	(void)state;
	static sim s;
	memset(&s, 0, sizeof(s));
	coffer_tz *tz = must_load("Europe/Rome");
	s.tz = tz;
	const coord_retention_policy first = {
		.tiers = { 7, 4, 12, 3 }, .min_redundancy = 2, .grace_ms = 5 * DAY_MS
	};
	/* Midway the operator shrinks the policy by mistake and fixes it the
	 * next day: what went pending in between must come back. */
	const coord_retention_policy shrunk = {
		.tiers = { 3, 1, 2, 0 }, .min_redundancy = 1, .grace_ms = 5 * DAY_MS
	};
	const coord_retention_policy second = { .tiers = { 10, 8, 6, COORD_RETENTION_FOREVER },
		.min_redundancy = 3,
		.grace_ms = 2 * DAY_MS };
	s.policy = first;
	coffer_clock_manual_init(&s.clock, utc_ms(2025, 1, 1, 0, 0));
	const int days = 3 * 365 + 1;
	size_t held_ok = SIZE_MAX;
	size_t held_failed = SIZE_MAX;
	int32_t prev_off = coffer_tz_offset(tz, utc_ms(2025, 1, 1, 0, 0) / 1000);
	for (int day = 0; day < days; day++) {
		int64_t midnight = utc_ms(2025, 1, 1, 0, 0) + day * DAY_MS;
		if (day == 548) {
			s.policy = shrunk;
		} else if (day == 549) {
			s.policy = second;
		}
		int32_t off = coffer_tz_offset(tz, midnight / 1000);
		s.dst_days += off != prev_off;
		prev_off = off;
		bool streak = day >= 400 && day < 412; /* longer than 7 dailies */
		/* 10:00Z: the morning backup, sometimes failed, sometimes done
		 * but found unrestorable by verification. */
		int64_t a_at = midnight + 10 * HOUR_MS;
		bool a_failed = streak || day % 13 == 5;
		sim_add(&s, a_failed ? COORD_BACKUP_FAILED : COORD_BACKUP_COMPLETED, a_at,
		    day % 29 != 3);
		coffer_clock_set(&s.clock, midnight + 12 * HOUR_MS);
		/* A second backup is running at noon... */
		size_t r = sim_add(&s, COORD_BACKUP_RUNNING, 0, false);
		if (day == 100) {
			held_ok = sim_find(&s, utc_ms(2025, 1, 1, 10, 0) + 90 * DAY_MS);
			s.b[held_ok].held = true;
		}
		if (day == 200) {
			held_failed = sim_find(&s, utc_ms(2025, 1, 1, 10, 0) + 200 * DAY_MS);
			assert_int_equal(s.b[held_failed].status, COORD_BACKUP_FAILED);
			s.b[held_failed].held = true;
		}
		if (day == 260 || day == 800) {
			for (size_t i = 0; i < s.n; i++) {
				if (s.b[i].held &&
				    ((day == 260) == (s.b[i].status == COORD_BACKUP_FAILED))) {
					s.b[i].held = false;
				}
			}
		}
		sim_run(&s);
		/* ...and finishes at 22:30Z: 23:30 in Rome in winter, 00:30 of the
		 * next local day in summer, so DST moves it between days. */
		r = s.n - 1;
		assert_int_equal(s.b[r].status, COORD_BACKUP_RUNNING);
		s.b[r].status =
		    streak || day % 17 == 8 ? COORD_BACKUP_FAILED : COORD_BACKUP_COMPLETED;
		s.b[r].finished_at_ms = midnight + 22 * HOUR_MS + 30 * 60 * 1000;
		s.b[r].restorable = s.b[r].status == COORD_BACKUP_COMPLETED && day % 31 != 7;
		coffer_clock_set(&s.clock, midnight + 23 * HOUR_MS + 10 * 60 * 1000);
		sim_run(&s);
	}
	/* Every rule had its turn, or the comparison proved less than it says. */
	assert_int_equal(s.evaluations, 2 * days);
	assert_true(s.dst_days >= 6);
	assert_true(s.expired > 500);
	assert_true(s.deleted > 500);
	assert_true(s.revived > 5);
	assert_true(s.floor_only > 100);
	assert_true(s.hold_only > 100);
	assert_true(s.running == (unsigned long)days);
	/* Yearly forever under the second policy: one per year since 2025 is
	 * still there at the end, each the newest of its year. */
	size_t yearly = 0;
	for (size_t i = 0; i < s.n; i++) {
		coffer_tm tm;
		assert_int_equal(coffer_tz_to_local(tz, s.b[i].finished_at_ms / 1000, &tm), 0);
		if (s.b[i].status == COORD_BACKUP_COMPLETED && tm.month == 12 && tm.day == 31) {
			yearly++;
		}
	}
	assert_true(yearly >= 2);
	if (getenv("RETENTION_TEST_VERBOSE") != NULL) {
		printf("evaluations %lu expired %lu deleted %lu revived %lu floor-only %lu "
		       "newest-only %lu hold-only %lu running %lu dst %lu left %zu\n",
		    s.evaluations, s.expired, s.deleted, s.revived, s.floor_only, s.newest_only,
		    s.hold_only, s.running, s.dst_days, s.n);
	}
	coffer_tz_free(tz);
}

/* ---- each override winning on its own ---- */

static coord_retention_backup
done_at(const char *id, int64_t at)
{
	return ((coord_retention_backup) {
	    .id = id, .finished_at_ms = at, .status = COORD_BACKUP_COMPLETED, .restorable = true });
}

static void
decide(const coord_retention_policy *p, const char *zone, int64_t now,
    const coord_retention_backup *b, size_t n, coord_retention_decision *out)
{
	coffer_tz *tz = must_load(zone);
	coffer_err err = { 0 };
	int rc = coord_retention_evaluate(p, tz, now, b, n, out, &err);
	coffer_tz_free(tz);
	if (rc != 0) {
		fail_msg("evaluate: %s", err.msg);
	}
}

/* docs/RETENTION.md's ordinary day: three years of 02:00 backups, policy
 * 7/4/12/3 with a floor of 2, on Saturday 2026-06-20: exactly these 20 are
 * kept, and today's expires with its yearly tier on 2029-01-01. */
static void
test_ordinary_day(void **state)
{
	(void)state;
	static coord_retention_backup b[1200];
	static coord_retention_decision d[1200];
	static char ids[1200][12];
	const coord_retention_policy p = {
		.tiers = { 7, 4, 12, 3 }, .min_redundancy = 2, .grace_ms = 7 * DAY_MS
	};
	int64_t first = coffer_tz_days_from_civil(2023, 6, 1);
	int64_t last = coffer_tz_days_from_civil(2026, 6, 20);
	size_t n = 0;
	for (int64_t day = first; day <= last; day++) {
		int64_t y;
		int m, dd;
		coffer_tz_civil_from_days(day, &y, &m, &dd, NULL);
		snprintf(ids[n], sizeof(ids[n]), "%04d-%02d-%02d", (int)y, m, dd);
		b[n] = done_at(ids[n], utc_ms((int)y, m, dd, 2, 0));
		n++;
	}
	decide(&p, "UTC", utc_ms(2026, 6, 20, 12, 0), b, n, d);
	static const char *const want[] = { "2026-06-14", "2026-06-15", "2026-06-16", "2026-06-17",
		"2026-06-18", "2026-06-19", "2026-06-20", "2026-06-07", "2026-05-31", "2026-04-30",
		"2026-03-31", "2026-02-28", "2026-01-31", "2025-12-31", "2025-11-30", "2025-10-31",
		"2025-09-30", "2025-08-31", "2025-07-31", "2024-12-31" };
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		bool wanted = false;
		for (size_t j = 0; j < sizeof(want) / sizeof(want[0]); j++) {
			wanted = wanted || strcmp(want[j], b[i].id) == 0;
		}
		if (wanted != (d[i].action == COORD_RETENTION_KEEP)) {
			fail_msg("%s: %s", b[i].id, coord_retention_action_name(d[i].action));
		}
		kept += wanted;
	}
	assert_int_equal(kept, 20);
	assert_int_equal(
	    d[n - 1].reasons, COORD_KEEP_TIERS | COORD_KEEP_MIN_REDUNDANCY | COORD_KEEP_NEWEST);
	assert_int_equal(d[n - 1].expires_at_ms, utc_ms(2029, 1, 1, 0, 0));
	assert_int_equal(d[n - 7].reasons, COORD_KEEP_DAILY | COORD_KEEP_WEEKLY); /* 14 June */
	assert_int_equal(d[n - 8].action, COORD_RETENTION_EXPIRE_NOW);            /* 13 June */
}

/* Backups stopped ten days ago: daily = 3 covers no backup at all, and the
 * floor keeps the newest two; the third goes pending. */
static void
test_floor_wins(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 3, 0, 0, 0 }, .min_redundancy = 2, .grace_ms = DAY_MS
	};
	int64_t now = utc_ms(2026, 6, 20, 12, 0);
	coord_retention_backup b[] = {
		done_at("old", utc_ms(2026, 6, 8, 2, 0)),
		done_at("mid", utc_ms(2026, 6, 9, 2, 0)),
		done_at("new", utc_ms(2026, 6, 10, 2, 0)),
	};
	coord_retention_decision d[3];
	decide(&p, "UTC", now, b, 3, d);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(d[0].delete_at_ms, now + DAY_MS);
	assert_int_equal(d[1].action, COORD_RETENTION_KEEP);
	assert_int_equal(d[1].reasons, COORD_KEEP_MIN_REDUNDANCY);
	assert_int_equal(d[1].expires_at_ms, COORD_RETENTION_NO_EXPIRY);
	assert_int_equal(d[2].reasons, COORD_KEEP_MIN_REDUNDANCY | COORD_KEEP_NEWEST);
}

/* The newest completed backup failed verification: the floor of one keeps
 * it, and the newest restorable one, older, is kept too, whatever the
 * tiers say. */
static void
test_newest_restorable_wins(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 1, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	int64_t now = utc_ms(2026, 6, 20, 12, 0);
	coord_retention_backup b[] = {
		done_at("good-old", utc_ms(2026, 6, 1, 2, 0)),
		done_at("good", utc_ms(2026, 6, 2, 2, 0)),
		done_at("corrupt", utc_ms(2026, 6, 3, 2, 0)),
		{ .id = "failed",
		    .finished_at_ms = utc_ms(2026, 6, 20, 2, 0),
		    .status = COORD_BACKUP_FAILED },
	};
	b[2].restorable = false;
	coord_retention_decision d[4];
	decide(&p, "UTC", now, b, 4, d);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(d[1].reasons, COORD_KEEP_NEWEST);
	assert_int_equal(d[2].reasons, COORD_KEEP_MIN_REDUNDANCY);
	/* A failed backup today is not today's daily and not the floor. */
	assert_int_equal(d[3].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(d[3].reasons, 0);
}

/* Holds beat every other rule: an expired backup, a pending one whose grace
 * is over, and a failed one are all kept while held; releasing the hold
 * sends them back through pending, never straight to delete. */
static void
test_hold_wins(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 1, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = 7 * DAY_MS
	};
	int64_t now = utc_ms(2026, 6, 20, 12, 0);
	coord_retention_backup b[] = {
		done_at("ancient", utc_ms(2020, 1, 1, 2, 0)),
		done_at("pending-long", utc_ms(2026, 5, 1, 2, 0)),
		{ .id = "failed",
		    .finished_at_ms = utc_ms(2026, 6, 1, 2, 0),
		    .status = COORD_BACKUP_FAILED },
		done_at("today", utc_ms(2026, 6, 20, 2, 0)),
	};
	b[1].pending_since_ms = now - 30 * DAY_MS;
	for (int i = 0; i < 3; i++) {
		b[i].held = true;
	}
	coord_retention_decision d[4];
	decide(&p, "UTC", now, b, 4, d);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(d[i].action, COORD_RETENTION_KEEP);
		assert_int_equal(d[i].reasons, COORD_KEEP_HOLD);
	}
	assert_int_equal(
	    d[3].reasons, COORD_KEEP_DAILY | COORD_KEEP_MIN_REDUNDANCY | COORD_KEEP_NEWEST);
	/* Released: the caller cleared pending when the hold made it kept. */
	b[1].pending_since_ms = 0;
	for (int i = 0; i < 3; i++) {
		b[i].held = false;
	}
	decide(&p, "UTC", now, b, 4, d);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(d[i].action, COORD_RETENTION_EXPIRE_NOW);
		assert_int_equal(d[i].delete_at_ms, now + 7 * DAY_MS);
	}
}

/* Grace: pending until exactly pending_since + grace, deleted from then;
 * a pending backup that the policy keeps again returns to kept. */
static void
test_grace(void **state)
{
	(void)state;
	coord_retention_policy p = {
		.tiers = { 1, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = 7 * DAY_MS
	};
	int64_t since = utc_ms(2026, 6, 10, 0, 0);
	coord_retention_backup b[] = {
		done_at("old", utc_ms(2026, 6, 9, 2, 0)),
		done_at("new", utc_ms(2026, 6, 10, 2, 0)),
	};
	b[0].pending_since_ms = since;
	coord_retention_decision d[2];
	decide(&p, "UTC", since + 7 * DAY_MS - 1, b, 2, d);
	assert_int_equal(d[0].action, COORD_RETENTION_PENDING);
	assert_int_equal(d[0].delete_at_ms, since + 7 * DAY_MS);
	decide(&p, "UTC", since + 7 * DAY_MS, b, 2, d);
	assert_int_equal(d[0].action, COORD_RETENTION_DELETE);
	/* Policy change: a floor of two keeps it again. */
	p.min_redundancy = 2;
	decide(&p, "UTC", since + 7 * DAY_MS, b, 2, d);
	assert_int_equal(d[0].action, COORD_RETENTION_KEEP);
	assert_int_equal(d[0].reasons, COORD_KEEP_MIN_REDUNDANCY);
	/* A grace so long it overflows saturates instead of wrapping into the past. */
	p.min_redundancy = 1;
	p.grace_ms = INT64_MAX;
	decide(&p, "UTC", since + 7 * DAY_MS, b, 2, d);
	assert_int_equal(d[0].action, COORD_RETENTION_PENDING);
	assert_int_equal(d[0].delete_at_ms, INT64_MAX);
}

/* A failed day is a hole in the window, not a reason to reach further back:
 * daily = 3 on the 20th with the 19th failed keeps the 20th and the 18th,
 * not the 17th. */
static void
test_failed_day(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 3, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	int64_t now = utc_ms(2026, 6, 20, 12, 0);
	coord_retention_backup b[] = {
		done_at("17th", utc_ms(2026, 6, 17, 2, 0)),
		done_at("18th", utc_ms(2026, 6, 18, 2, 0)),
		{ .id = "19th",
		    .finished_at_ms = utc_ms(2026, 6, 19, 2, 0),
		    .status = COORD_BACKUP_FAILED },
		done_at("20th", utc_ms(2026, 6, 20, 2, 0)),
	};
	coord_retention_decision d[4];
	decide(&p, "UTC", now, b, 4, d);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(d[1].reasons, COORD_KEEP_DAILY);
	assert_int_equal(d[1].expires_at_ms, utc_ms(2026, 6, 21, 0, 0));
	assert_int_equal(d[2].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(d[3].expires_at_ms, utc_ms(2026, 6, 23, 0, 0));
}

/* DST in Europe/Rome. 2026-10-24T22:30Z is 00:30 CEST on the 25th and
 * 2026-10-25T22:30Z is 23:30 CET on the 25th: one local day, two backups,
 * the later one is its daily. That day has 25 hours, so the daily expiry
 * (daily = 1) is local midnight of the 26th = 2026-10-25T23:00Z. In spring,
 * 2026-03-28T23:30Z is already 00:30 of the 29th (CET), and a backup of the
 * 29th with daily = 1 expires at midnight CEST = 2026-03-29T22:00Z. */
static void
test_dst_days(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 2, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	coord_retention_backup b[] = {
		done_at("sat", 1792881000000LL), /* 2026-10-24T22:30Z */
		done_at("sun", 1792967400000LL), /* 2026-10-25T22:30Z */
	};
	coord_retention_decision d[2];
	decide(&p, "Europe/Rome", 1792967400000LL + HOUR_MS / 6, b, 2, d);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(
	    d[1].reasons, COORD_KEEP_DAILY | COORD_KEEP_MIN_REDUNDANCY | COORD_KEEP_NEWEST);
	/* 2026-10-27T00:00+01:00: two days after the 25th began. */
	assert_int_equal(d[1].expires_at_ms, 1792969200000LL + DAY_MS);
	/* In UTC the same two backups fall on two days and both are kept. */
	decide(&p, "UTC", 1792967400000LL + HOUR_MS / 6, b, 2, d);
	assert_int_equal(d[0].reasons, COORD_KEEP_DAILY);
	assert_int_equal(d[0].expires_at_ms, utc_ms(2026, 10, 26, 0, 0));

	const coord_retention_policy one = {
		.tiers = { 1, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	coord_retention_backup spring[] = { done_at("spring", 1774740600000LL) };
	decide(&one, "Europe/Rome", 1774740600000LL + HOUR_MS, spring, 1, d);
	assert_int_equal(d[0].reasons & COORD_KEEP_DAILY, COORD_KEEP_DAILY);
	assert_int_equal(d[0].expires_at_ms, 1774821600000LL); /* 2026-03-30T00:00+02:00 */
}

/* ISO weeks across New Year: 2026-12-31 (Thursday) is in 2026-W53 and
 * 2027-01-04 (Monday) begins 2027-W01. weekly = 2 on Monday 2027-01-04
 * keeps the newest of W53 (Sunday 2027-01-03, not the 31st) and the newest
 * of W01; the newest of W52 (Sunday 2026-12-27) is out. A backup 30 minutes
 * before Monday begins belongs to the old week. yearly = 1 keeps only the
 * newest of 2027; monthly = 2 keeps the newest of December. */
static void
test_week_and_year_boundaries(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 0, 2, 2, 1 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	coord_retention_backup b[] = {
		done_at("w52-sun", utc_ms(2026, 12, 27, 20, 0)),
		done_at("w53-thu", utc_ms(2026, 12, 31, 20, 0)),
		done_at("w53-sun-late", utc_ms(2027, 1, 3, 23, 30)),
		done_at("w01-mon", utc_ms(2027, 1, 4, 1, 0)),
	};
	coord_retention_decision d[4];
	decide(&p, "UTC", utc_ms(2027, 1, 4, 12, 0), b, 4, d);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(d[1].reasons, COORD_KEEP_MONTHLY);
	/* December's newest leaves monthly = 2 when February begins. */
	assert_int_equal(d[1].expires_at_ms, utc_ms(2027, 2, 1, 0, 0));
	assert_int_equal(d[2].reasons, COORD_KEEP_WEEKLY);
	assert_int_equal(d[2].expires_at_ms, utc_ms(2027, 1, 11, 0, 0));
	assert_int_equal(d[3].reasons,
	    COORD_KEEP_WEEKLY | COORD_KEEP_MONTHLY | COORD_KEEP_YEARLY | COORD_KEEP_MIN_REDUNDANCY |
	        COORD_KEEP_NEWEST);
	/* Latest over its tiers: weekly ends 2027-01-18, monthly 2027-03-01,
	 * yearly = 1 on 2028-01-01. */
	assert_int_equal(d[3].expires_at_ms, utc_ms(2028, 1, 1, 0, 0));

	const coord_retention_policy forever = { .tiers = { 0, 0, 0, COORD_RETENTION_FOREVER },
		.min_redundancy = 1,
		.grace_ms = DAY_MS };
	decide(&forever, "UTC", utc_ms(2027, 1, 4, 12, 0), b, 4, d);
	assert_int_equal(d[1].reasons, COORD_KEEP_YEARLY);
	assert_int_equal(d[1].expires_at_ms, COORD_RETENTION_NEVER);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
}

/* A finished_at later than now (the coordinator's clock stepped back)
 * buckets as now, so it stays today's daily instead of falling out of
 * every window. Running backups are kept whatever their times. */
static void
test_future_and_running(void **state)
{
	(void)state;
	const coord_retention_policy p = {
		.tiers = { 1, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	int64_t now = utc_ms(2026, 6, 20, 12, 0);
	coord_retention_backup b[] = {
		done_at("today", utc_ms(2026, 6, 20, 2, 0)),
		done_at("future", utc_ms(2026, 6, 25, 2, 0)),
		{ .id = "running", .status = COORD_BACKUP_RUNNING, .finished_at_ms = -1 },
	};
	coord_retention_decision d[3];
	decide(&p, "UTC", now, b, 3, d);
	assert_int_equal(d[0].action, COORD_RETENTION_EXPIRE_NOW);
	assert_int_equal(
	    d[1].reasons, COORD_KEEP_DAILY | COORD_KEEP_MIN_REDUNDANCY | COORD_KEEP_NEWEST);
	assert_int_equal(d[2].reasons, COORD_KEEP_RUNNING);
	/* No backups at all is an empty answer, not an error. */
	decide(&p, "UTC", now, NULL, 0, NULL);
}

/* Bad input decides nothing: the caller must not delete on a partial view. */
static void
test_bad_input(void **state)
{
	(void)state;
	coffer_tz *tz = must_load("UTC");
	coffer_err err = { 0 };
	coord_retention_policy p = {
		.tiers = { 1, 0, 0, 0 }, .min_redundancy = 1, .grace_ms = DAY_MS
	};
	coord_retention_backup b[] = {
		done_at("ok", utc_ms(2026, 6, 20, 2, 0)),
		done_at("bogus", INT64_MIN / 2),
	};
	coord_retention_decision d[2];
	assert_int_equal(
	    coord_retention_evaluate(&p, tz, utc_ms(2026, 6, 20, 12, 0), b, 2, d, &err),
	    COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "bogus"));
	assert_non_null(strstr(err.hint, "nothing was decided"));
	assert_int_equal(coord_retention_evaluate(&p, tz, INT64_MAX, b, 1, d, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "now"));
	p.tiers[2] = -5;
	assert_int_equal(
	    coord_retention_evaluate(&p, tz, utc_ms(2026, 6, 20, 12, 0), b, 1, d, &err),
	    COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "retention.monthly"));
	p.tiers[2] = 0;
	p.grace_ms = -1;
	assert_int_equal(
	    coord_retention_evaluate(&p, tz, utc_ms(2026, 6, 20, 12, 0), b, 1, d, &err),
	    COFFER_EINVAL);
	coffer_tz_free(tz);
}

static void
test_names(void **state)
{
	(void)state;
	char buf[128];
	assert_string_equal(
	    coord_retention_reasons_format(COORD_KEEP_DAILY | COORD_KEEP_HOLD, buf, sizeof(buf)),
	    "daily,hold");
	assert_string_equal(coord_retention_reasons_format(0, buf, sizeof(buf)), "");
	char small[8];
	assert_string_equal(coord_retention_reasons_format(
	                        COORD_KEEP_DAILY | COORD_KEEP_WEEKLY, small, sizeof(small)),
	    "daily");
	assert_string_equal(
	    coord_retention_reason_name(COORD_KEEP_MIN_REDUNDANCY), "min_redundancy");
	assert_null(coord_retention_reason_name(3));
	assert_string_equal(coord_retention_action_name(COORD_RETENTION_EXPIRE_NOW), "expire_now");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_three_years_against_model),
		cmocka_unit_test(test_ordinary_day),
		cmocka_unit_test(test_floor_wins),
		cmocka_unit_test(test_newest_restorable_wins),
		cmocka_unit_test(test_hold_wins),
		cmocka_unit_test(test_grace),
		cmocka_unit_test(test_failed_day),
		cmocka_unit_test(test_dst_days),
		cmocka_unit_test(test_week_and_year_boundaries),
		cmocka_unit_test(test_future_and_running),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_names),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
