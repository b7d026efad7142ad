/*
 * Alerts: the conditions the coordinator watches, and the alert outbox.
 *
 * What it promises:
 * - Every condition has a stable dedup_key "coffer/<service>/<check>"
 *   (the audit chain, which belongs to no service, is
 *   "coffer/_coordinator/audit_chain_broken": a service name never starts
 *   with '_'). Its state lives in the catalog's `alerts` table, so a
 *   condition pages once when it starts and resolves once when it clears,
 *   also across coordinator restarts. It clears on a real recovery only:
 *   bookkeeping (retention retiring backups, a policy change and its sync,
 *   an enrolment, a restart) leaves an open page open (docs/OPERATIONS.md
 *   lists every check with what raises and what clears it).
 * - A transition, its outbox rows (PagerDuty, and the webhook when
 *   [alerts] webhook_url is set) and its audit row ("alert.triggered",
 *   "alert.resolved") commit in one transaction: nothing is announced that
 *   was not recorded, nothing recorded is left unannounced.
 * - Outbox payloads are ready to send except for the routing key, which
 *   coordinator/watch/notify.c adds at send time from the configuration: a
 *   secret never enters the catalog.
 * - A completed backup that is new since the last evaluation enqueues a
 *   PagerDuty change event (never pages anyone).
 * - Blocking (libpq): runs on the catalog worker thread, never on the loop.
 *   Evaluators serialise on an advisory lock, so two coordinators sharing
 *   a catalog cannot both announce one transition.
 *
 * - Checks about one agent of a service (agent_quiet for one agent among
 *   several, agent_disk_full) have the dedup_key
 *   "coffer/<service>/<check>/<agent>" and name the agent in their summary
 *   and in details.agent; revoking the agent resolves them.
 *
 * Thresholds come from [alerts]: agent_quiet (10m), completion_window (2h),
 * refusal_window (1h), size_history (10), agent_state_free_min (64MiB).
 */
#ifndef COFFER_COORDINATOR_WATCH_ALERTS_H
#define COFFER_COORDINATOR_WATCH_ALERTS_H

#include <stdbool.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_ALERTS_LOCK 0x436f666665720005LL

/* The checks, as they appear in dedup keys and in `alerts.check_name`. */
#define COORD_ALERT_BACKUP_FAILED       "backup_failed"
#define COORD_ALERT_BACKUP_MISSED       "backup_missed"
#define COORD_ALERT_BACKUP_ABANDONED    "backup_abandoned"
#define COORD_ALERT_AGENT_QUIET         "agent_quiet"
#define COORD_ALERT_SIZE_ANOMALY        "size_anomaly"
#define COORD_ALERT_REQUESTS_REFUSED    "requests_refused"
#define COORD_ALERT_AGENT_CLOCK_SKEW    "agent_clock_skew"
#define COORD_ALERT_AUDIT_CHAIN         "audit_chain_broken"
#define COORD_ALERT_AGENT_DISK_FULL     "agent_disk_full"
#define COORD_ALERT_BACKUP_UNVERIFIABLE "backup_unverifiable"
#define COORD_ALERT_KEY_NOT_ESCROWED    "key_not_escrowed"
/* Paged by coordinator/watch/outage.c from a local outbox, not from here:
 * the catalog cannot hold the alert that it is down. */
#define COORD_ALERT_CATALOG_UNREACHABLE "catalog_unreachable"

/* This coordinator's host name (gethostname, read once): PagerDuty's
 * payload.source for the coordinator's own alerts. */
const char *coord_alerts_coordinator_host(void);

/* What the caller knows that the catalog cannot say about itself. */
typedef struct coord_alerts_input {
	bool audit_chain_broken;   /* from the last coord_audit_verify */
	const char *audit_problem; /* its problem text; may be NULL */
	/* The caller has, since it started, walked the whole chain and, when
	 * it exports the chain's head to DR, checked the head there: only then
	 * does audit_chain_broken false mean intact and resolve the page. A
	 * broken chain triggers it either way. */
	bool verified;
} coord_alerts_input;

typedef struct coord_alerts_stats {
	int services;  /* evaluated */
	int triggered; /* transitions to triggered in this call */
	int resolved;  /* and to resolved */
	int changes;   /* change events enqueued */
	int open;      /* conditions triggered after this call */
	int errors;    /* services that could not be evaluated (skipped) */
} coord_alerts_stats;

/*
 * Evaluates every configured service at now_ms (Unix ms, the injected
 * clock) and, when in is not NULL, the audit chain (in NULL, or intact but
 * not in->verified: the chain's state is unknown and its condition is left
 * as it is); records
 * transitions, enqueues them and audits them. stats may be NULL. A service that cannot be
 * evaluated (bad schedule or zone, a statement failing) is counted in
 * stats->errors, logged, and skipped; the others go on. Returns 0, or the
 * last error met, or at once COFFER_EUNAVAIL when the catalog is lost.
 */
int coord_alerts_evaluate(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_alerts_input *in, int64_t now_ms, coord_alerts_stats *stats, coffer_err *err);

/*
 * Sets one condition's state as the evaluator does (for checks evaluated
 * elsewhere, such as DR copies and drills, as they land). service may be
 * NULL for coordinator-wide conditions. summary: at most 1024 bytes are
 * kept (cut on a UTF-8 boundary). details_json: a JSON object or NULL.
 * *changed (may be NULL) is set when this call made a transition. Runs in
 * its own transaction.
 */
int coord_alerts_set(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *check, bool active, const char *severity, const char *summary,
    const char *details_json, int64_t now_ms, bool *changed, coffer_err *err);

/*
 * Enqueues one PagerDuty change event (it never pages) inside the caller's
 * transaction, as the backup_succeeded ones: dedup key
 * "coffer/<service>/<kind>" (service NULL: coordinator-wide), summary (cut
 * at 1024 bytes), the time it happened (at_ms) and custom details
 * (an object; consumed, may be NULL).
 */
int coord_alerts_change(coord_catalog *cat, const coord_config *cfg, const char *service,
    const char *kind, const char *summary, cJSON *details, int64_t at_ms, int64_t now_ms,
    coffer_err *err);

/*
 * For `coffer alerts list`: the open conditions first, then the most
 * recently changed, at most limit (1..10000) of them. *out (cJSON_Delete)
 * is a JSON array of { "dedup_key", "service" (null for coordinator-wide),
 * "check", "state", "severity", "summary", "first_triggered_at",
 * "last_changed_at", "resolved_at" (null while open), "delivery": null or
 * { "action", "state", "attempts", "last_error", "sent_at",
 * "next_attempt_at" } of the newest PagerDuty notification for it }.
 * Times are RFC 3339 UTC.
 */
int coord_alerts_list(coord_catalog *cat, int limit, cJSON **out, coffer_err *err);

#endif
