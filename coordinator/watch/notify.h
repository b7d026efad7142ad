/*
 * Notify: delivers the alert outbox (coordinator/watch/alerts.h) to PagerDuty's
 * Events API v2 and to the generic JSON webhook.
 *
 * What it promises:
 * - A row leaves `pending` only on an answer: 2xx makes it `delivered`;
 *   400 (and 413: the event itself is wrong, PagerDuty will never take it)
 *   makes it `failed`, audited ("alert.undeliverable") and logged with
 *   PagerDuty's message; 429, 5xx, any other answer and network errors
 *   keep it pending with next_attempt_at moved by exponential backoff with
 *   jitter (30s doubling to a 10m cap; at least 60s after a 429).
 *   Nothing is ever dropped. Delivery is at least once: a crash between
 *   PagerDuty's 202 and the catalog update resends, which PagerDuty
 *   deduplicates by dedup_key.
 * - Per dedup_key and target, rows go out in the order they were queued: a
 *   resolve never overtakes the trigger it resolves.
 * - A token bucket per routing key ([alerts] rate_per_minute, default 100,
 *   below PagerDuty's ~120/min per integration key) paces floods: rows that
 *   do not fit stay pending, untouched, for a later call.
 * - The routing key is taken from [service.X] alerts.routing_key or
 *   [alerts] routing_key when a row is sent; it is never logged, audited or
 *   stored in the catalog.
 * - Blocking (libpq and libcurl's easy interface with short timeouts): runs
 *   on the catalog worker thread, never on the loop. One deliverer at a
 *   time per catalog (a session advisory lock); a second returns at once.
 * - The bucket is paced by the monotonic clock (PagerDuty's limit is in
 *   real time); backoff times are on the injected clock now_ms.
 */
#ifndef COFFER_COORDINATOR_WATCH_NOTIFY_H
#define COFFER_COORDINATOR_WATCH_NOTIFY_H

#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_NOTIFY_LOCK 0x436f666665720006LL

typedef struct coord_notify coord_notify;

typedef struct coord_notify_stats {
	int sent;      /* requests made */
	int delivered; /* rows now delivered */
	int retrying;  /* rows answered 429 / 5xx / network error, rescheduled */
	int failed;    /* rows refused for good (400) */
	int deferred;  /* due rows left for later by the rate limit */
	int busy;      /* 1 if another deliverer held the lock */
} coord_notify_stats;

/* A deliverer for cfg (which must outlive it); key audits refusals.
 * Returns NULL with err on failure (COFFER_ENOMEM). */
coord_notify *coord_notify_new(
    const coord_config *cfg, const coord_audit_key *key, coffer_err *err);

void coord_notify_free(coord_notify *n);

/*
 * Sends the outbox rows due at now_ms, up to 200 per call, as the rate
 * limit allows. st may be NULL. Returns 0 (whatever the receivers said:
 * their answers are in the rows and st), or a catalog error.
 */
int coord_notify_deliver_due(
    coord_notify *n, coord_catalog *cat, int64_t now_ms, coord_notify_stats *st, coffer_err *err);

/* What one direct send came to (coord_notify_send_pagerduty). */
typedef enum coord_notify_outcome {
	COORD_NOTIFY_DELIVERED, /* 2xx */
	COORD_NOTIFY_REFUSED,   /* 400 or 413: the event is wrong, never retry it */
	COORD_NOTIFY_RETRY,     /* 429, 5xx, another answer, a network error */
	COORD_NOTIFY_NO_KEY,    /* no routing key configured: nothing was sent */
	COORD_NOTIFY_DEFERRED,  /* the rate limit: nothing was sent, try later */
} coord_notify_outcome;

/*
 * Sends one PagerDuty event now, without the catalog: for what cannot wait
 * in the alert outbox because the catalog is the problem
 * (coordinator/watch/outage.h). payload is the Events API v2 body without
 * routing_key, as text; action "trigger", "resolve" or "change" picks the
 * endpoint as for outbox rows; service (NULL: coordinator-wide) picks the
 * routing key. Same timeouts, rate limit and secret handling as the
 * outbox. *status is the HTTP status (0: none); msg gets PagerDuty's
 * message (REFUSED) or the reason (RETRY, NO_KEY). Retrying is the
 * caller's business. Not thread-safe: one caller per coord_notify.
 */
/* The runbook a page links to (its entry: + "#" + the alert kind):
 * [alerts] runbook_url, else the build's COFFER_DOCS_URL + "/RUNBOOK.md",
 * else NULL (no runbook link). */
const char *coord_notify_runbook_url(const coord_config *cfg);

coord_notify_outcome coord_notify_send_pagerduty(coord_notify *n, const char *service,
    const char *action, const char *payload, long *status, char *msg, size_t size);

#endif
