/*
 * Outage: the coordinator's own view of whether its catalog is reachable,
 * and the page that says it is not.
 *
 * What it promises:
 * - The catalog's holders (the lanes of coordinator/serve/server.c) report
 *   each of their transitions: coord_outage_down when one finds the catalog
 *   unreachable (after coordinator/catalog/reconnect.h's immediate retry),
 *   coord_outage_up when it reaches it again. The catalog is down while any
 *   holder is; an outage runs from the first holder down to the last one
 *   back.
 * - An outage longer than [alerts] catalog_unreachable_after (default 60s)
 *   pages "coffer/_coordinator/catalog_unreachable" straight to PagerDuty
 *   (coordinator/watch/notify.c's sender; the catalog's alert outbox cannot
 *   hold it), and its end resolves it. A trigger never sent because the
 *   outage ended first is cancelled; a trigger that was attempted is
 *   always followed by a resolve, so no incident stays open.
 * - What is owed to PagerDuty lives in a small local outbox,
 *   <state_dir>/catalog-outage.json, replaced atomically
 *   (common/base/durable.h) before and after every send: it survives a
 *   restart. An outage still open in it when the coordinator starts (which
 *   needs the catalog) ends at that start. At most COORD_OUTAGE_MAX records
 *   are kept; when full, the oldest finished one is dropped, logged.
 * - Once the catalog is back, lane 0 writes each finished outage, with its
 *   page and resolve, as one audit row "catalog.outage" (subject
 *   "catalog"; details: outage_id, started_at, ended_at, duration_s,
 *   error, trigger and resolve with state and sent_at), exactly once (the
 *   outage_id is looked up first), and the record leaves the outbox.
 * - Sends retry with backoff (2 s doubling to 60 s, jittered) on 429, 5xx
 *   and network errors; a 400 is logged and not retried. The routing key
 *   is never logged or written.
 * - Thread-safe. Sending and writing the file happen on the outage's own
 *   thread, never on the caller's; coord_outage_catalog_up does not block
 *   (for /healthz on the loop thread).
 */
#ifndef COFFER_COORDINATOR_WATCH_OUTAGE_H
#define COFFER_COORDINATOR_WATCH_OUTAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

#define COORD_OUTAGE_MAX  16
#define COORD_OUTAGE_FILE "catalog-outage.json"

typedef struct coord_outage coord_outage;

/* Loads the outbox from cfg->state_dir (creating the directory and the
 * file if missing; a file that does not parse is set aside as
 * "<file>.corrupt" and logged), ends an outage left open by a previous run
 * and starts the thread that pages. Call it once the catalog has been
 * reached. Errors: COFFER_EIO/COFFER_EPERM naming the file (the state
 * directory must be writable), COFFER_ENOMEM. */
int coord_outage_start(
    const coord_config *cfg, const coord_audit_key *key, coord_outage **out, coffer_err *err);

/* Stops the thread (a send in progress finishes first, bounded by its
 * timeouts), writes the outbox a last time and frees. NULL is fine. */
void coord_outage_stop(coord_outage *o);

/* A holder found the catalog unreachable; why is the error (no secret in
 * it: catalog errors name the target without its conninfo). Returns true
 * when this started an outage. */
bool coord_outage_down(coord_outage *o, const char *why);

/* A holder reached the catalog again. Returns true when this ended the
 * outage. */
bool coord_outage_up(coord_outage *o);

/* Whether the catalog is reachable; when not, *since_ms (may be NULL) is
 * when the outage started (Unix ms). Never blocks. */
bool coord_outage_catalog_up(const coord_outage *o, int64_t *since_ms);

/* On a working catalog connection: audits every finished outage whose
 * page and resolve are settled (see above). *audited (may be NULL) is the
 * number of rows written. Returns 0 or the catalog's error. */
int coord_outage_audit(coord_outage *o, coord_catalog *cat, int *audited, coffer_err *err);

#endif
