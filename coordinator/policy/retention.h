/*
 * Retention: the rule that decides, for one service, which backups are
 * kept, which become pending deletion, and which are deleted now. It is a
 * pure function of (policy, time zone, now, the service's backups): no I/O,
 * no clock, no catalog, so the same inputs always give the same answer and
 * `coffer retention plan` can show exactly what the daemon will do.
 * docs/RETENTION.md states the rule with worked examples; in short:
 *
 * - A tier with count N (daily, weekly, monthly, yearly) covers the N
 *   calendar periods ending with the one that contains `now`, in the
 *   service's time zone (today and the N-1 days before it; this ISO week and
 *   the N-1 before it; ...). In each covered period the newest successful
 *   backup is kept. Periods without a successful backup are not replaced by
 *   older periods: a failed day does not stretch the window. "forever" covers
 *   every period.
 * - A kept backup's expiry is the latest, over the tiers it holds, of the
 *   instant its period leaves the window (local midnight at the start of
 *   period P+N), assuming no newer backup lands in the same period.
 * - Then the floor: the newest min_redundancy successful backups are kept.
 * - The newest successful backup that is restorable is never deleted.
 * - Running backups and held backups are kept; holds override everything.
 * - Failed backups never count toward a tier or the floor.
 * - Everything else goes through pending: a backup that is not pending
 *   becomes pending now; a pending one is deleted once grace has passed
 *   since it became pending; a pending one that is kept again (policy
 *   change, hold) returns to kept.
 *
 * "Successful" means status COMPLETED. Periods are bucketed from the
 * coordinator-stamped finished_at, never from names or agent clocks; a
 * finished_at later than now is bucketed as now, so a clock step backwards
 * on the coordinator cannot push a backup out of every window.
 *
 * Memory: one index array of n entries, freed before return.
 * Thread-safety: none needed; the function touches only its arguments.
 */
#ifndef COFFER_COORDINATOR_POLICY_RETENTION_H
#define COFFER_COORDINATOR_POLICY_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/conf/tz.h"

/* A tier count meaning "every period, forever". */
#define COORD_RETENTION_FOREVER (-1)
/* The largest finite tier count accepted (also the config's limit). */
#define COORD_RETENTION_MAX_COUNT 10000

typedef enum coord_retention_tier {
	COORD_TIER_DAILY = 0,
	COORD_TIER_WEEKLY = 1, /* ISO 8601 weeks, Monday to Sunday */
	COORD_TIER_MONTHLY = 2,
	COORD_TIER_YEARLY = 3,
	COORD_TIER_COUNT = 4,
} coord_retention_tier;

typedef struct coord_retention_policy {
	int32_t tiers[COORD_TIER_COUNT]; /* 0 = tier off, COORD_RETENTION_FOREVER, or 1..MAX */
	int32_t min_redundancy;          /* >= 0; the config requires >= 1 */
	int64_t grace_ms;                /* >= 0: time from pending to deleted */
} coord_retention_policy;

typedef enum coord_backup_status {
	COORD_BACKUP_COMPLETED = 0,
	COORD_BACKUP_FAILED = 1,  /* failed or abandoned: never counts toward a tier */
	COORD_BACKUP_RUNNING = 2, /* started, not finished: always kept */
} coord_backup_status;

typedef struct coord_retention_backup {
	const char *id;         /* for messages only; may be NULL */
	int64_t finished_at_ms; /* coordinator-stamped; ignored for running backups */
	coord_backup_status status;
	bool restorable;          /* completed and known restorable (verified, not corrupt) */
	bool held;                /* a legal hold is on it */
	int64_t pending_since_ms; /* when it became pending deletion; 0 if it is not pending */
} coord_retention_backup;

typedef enum coord_retention_action {
	COORD_RETENTION_KEEP = 0,       /* kept; if it was pending, it returns to kept */
	COORD_RETENTION_EXPIRE_NOW = 1, /* obsolete and not yet pending: mark it pending now */
	COORD_RETENTION_PENDING = 2,    /* pending, grace not over: leave it */
	COORD_RETENTION_DELETE = 3,     /* pending and grace over: delete it */
} coord_retention_action;

/* Why a backup is kept: a bit set. */
enum {
	COORD_KEEP_DAILY = 1u << COORD_TIER_DAILY,
	COORD_KEEP_WEEKLY = 1u << COORD_TIER_WEEKLY,
	COORD_KEEP_MONTHLY = 1u << COORD_TIER_MONTHLY,
	COORD_KEEP_YEARLY = 1u << COORD_TIER_YEARLY,
	COORD_KEEP_MIN_REDUNDANCY = 1u << 4,
	COORD_KEEP_NEWEST = 1u << 5, /* the newest restorable backup */
	COORD_KEEP_HOLD = 1u << 6,
	COORD_KEEP_RUNNING = 1u << 7,
};
#define COORD_KEEP_TIERS \
	(COORD_KEEP_DAILY | COORD_KEEP_WEEKLY | COORD_KEEP_MONTHLY | COORD_KEEP_YEARLY)

/* expires_at_ms values besides a time. */
#define COORD_RETENTION_NO_EXPIRY \
	0 /* held by no tier (floor, newest, hold, running, or not kept) */
#define COORD_RETENTION_NEVER INT64_MAX /* held by a "forever" tier */

typedef struct coord_retention_decision {
	coord_retention_action action;
	unsigned reasons;      /* COORD_KEEP_* bits; non-zero exactly when action is KEEP */
	int64_t expires_at_ms; /* KEEP: latest expiry over the tiers it holds (see above) */
	int64_t delete_at_ms;  /* EXPIRE_NOW, PENDING, DELETE: when grace ends; else 0 */
} coord_retention_decision;

/* Decides every backup: out[i] is the decision for backups[i] (out has n
 * entries, caller-owned). tz is the service's zone. Returns 0; COFFER_EINVAL
 * (filling err, naming the backup) for a policy out of range, a now outside
 * the years 1..9999, or a completed backup whose finished_at is -- then
 * nothing is decided, so nothing is deleted on bad input; COFFER_ENOMEM. */
int coord_retention_evaluate(const coord_retention_policy *policy, const coffer_tz *tz,
    int64_t now_ms, const coord_retention_backup *backups, size_t n, coord_retention_decision *out,
    coffer_err *err);

/* "daily", "weekly", ..., "min_redundancy", "newest", "hold", "running" for
 * one COORD_KEEP_* bit; NULL for anything else. */
const char *coord_retention_reason_name(unsigned bit);

/* Writes the reasons as "daily,weekly,hold" into buf (always terminated);
 * returns buf. */
char *coord_retention_reasons_format(unsigned reasons, char *buf, size_t size);

/* "keep", "expire_now", "pending", "delete". */
const char *coord_retention_action_name(coord_retention_action a);

#endif
