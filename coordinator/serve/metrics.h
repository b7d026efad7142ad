/*
 * Metrics: the catalog's state in the Prometheus text exposition format
 * (version 0.0.4), for /metrics (coordinator/serve/http.h serves it).
 *
 * What it promises:
 * - Every family has one HELP and one TYPE line before its samples, also
 *   when it has no samples; names match [a-zA-Z_:][a-zA-Z0-9_:]*; label
 *   values are escaped (\\, \", \n); counters end in _total.
 * - Families (label sets in braces):
 *     coffer_backup_last_success_timestamp_seconds{service}
 *     coffer_backup_last_duration_seconds{service}
 *     coffer_backup_last_size_bytes{service}
 *     coffer_backups{service,status}
 *     coffer_alerts_open{service,check}
 *     coffer_agent_last_contact_timestamp_seconds{service,agent}
 *     coffer_events_applied_total{service}
 *     coffer_requests_refused_total{reason}
 *     coffer_alert_outbox_rows{state}
 *     coffer_alert_outbox_oldest_pending_age_seconds
 *     coffer_drills_total{service,result}
 *     coffer_drill_restore_seconds{service}
 *     coffer_drill_last_success_timestamp{service}
 *     coffer_integrity_checks_total{service,result}
 *     coffer_services_configured
 *     coffer_catalog_up (coord_metrics_prepend_catalog_up: needs no catalog)
 *   The coordinator-wide alerts carry service="_coordinator"; drill runners,
 *   which belong to no service, service="_drill_runner".
 * - Memory is bounded by the catalog's number of services, agents, refusal
 *   reasons and open alerts (all bounded by configuration and by the name
 *   checks), never by the number of backups or events.
 * - Blocking (libpq): call it off the loop (coordinator/serve/http.c runs its
 *   render callback on the libuv thread pool).
 */
#ifndef COFFER_COORDINATOR_SERVE_METRICS_H
#define COFFER_COORDINATOR_SERVE_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

/* The exposition's media type, for the Content-Type header. */
#define COORD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/*
 * Renders the metrics at now_ms (Unix ms; ages are measured from it) into
 * a new NUL-terminated buffer *text (free() it) of *len bytes. Runs in one
 * REPEATABLE READ read-only transaction, so the numbers agree with each
 * other. Returns 0 or a catalog error (nothing allocated).
 */
int coord_metrics_render(coord_catalog *cat, const coord_config *cfg, int64_t now_ms, char **text,
    size_t *len, coffer_err *err);

/*
 * Puts the coffer_catalog_up gauge (1 or 0) in front of *text (a render's
 * output, or NULL when there is none: then the page is the gauge alone),
 * so a scrape says the catalog is down instead of failing. Takes over
 * *text; returns 0, or COFFER_ENOMEM (*text freed, NULL).
 */
int coord_metrics_prepend_catalog_up(bool up, char **text, size_t *len);

/* Writes value into out as a label value: \ " and newline escaped.
 * Always NUL-terminates; returns the length it needed (like snprintf). */
size_t coord_metrics_escape_label(char *out, size_t size, const char *value);

#endif
