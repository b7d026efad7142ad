/*
 * Reconnect: the one rule every holder of a catalog connection follows
 * after losing it -- the coordinator's lanes, the background workers and
 * the /metrics renderer alike.
 *
 * What it promises:
 * - After any piece of work, whatever it was (an agent's envelope, an
 *   operator's request, a maintenance tick, a sweep), the holder calls
 *   coord_reconnect_after. A connection found lost (coord_catalog_ok false)
 *   is reconnected once at once: a catalog restarted while the holder was
 *   idle is only noticed by the first statement, and must not count as an
 *   outage. If that reconnect fails the holder is down.
 * - A down holder tries again when its backoff is over (250 ms doubling
 *   to 10 s) or as soon as another holder found the catalog back
 *   (recovered_ms), whether or not it has work: recovery never waits for
 *   the next request.
 * - Every successful reconnect re-runs coord_catalog_check: a catalog
 *   restored from an older backup must not be written by a newer schema's
 *   code.
 * - Not thread-safe: one coord_reconnect per connection, used by the
 *   thread that uses the connection. Times are monotonic milliseconds.
 */
#ifndef COFFER_COORDINATOR_CATALOG_RECONNECT_H
#define COFFER_COORDINATOR_CATALOG_RECONNECT_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"

#define COORD_RECONNECT_MIN_MS 250
#define COORD_RECONNECT_MAX_MS 10000

typedef struct coord_reconnect {
	bool down;
	int64_t backoff_ms;
	int64_t failed_ms; /* the last loss or failed attempt */
	int64_t retry_ms;  /* the next attempt, once down */
} coord_reconnect;

/* What coord_reconnect_after and coord_reconnect_try found. */
typedef enum coord_reconnect_state {
	COORD_RECONNECT_OK,         /* the connection is usable, nothing happened */
	COORD_RECONNECT_REVIVED,    /* it was lost and is back at once: retry the work */
	COORD_RECONNECT_WENT_DOWN,  /* it was lost and cannot be made: the holder is down now */
	COORD_RECONNECT_STILL_DOWN, /* the holder was down and still is */
	COORD_RECONNECT_BACK,       /* a down holder reconnected */
} coord_reconnect_state;

/* After a piece of work on cat (see above). err gets the failed
 * reconnect's error for WENT_DOWN (else it is left alone). */
coord_reconnect_state coord_reconnect_after(
    coord_reconnect *r, coord_catalog *cat, coffer_err *err);

/* Whether a down holder should try now, at now_ms: its backoff is over,
 * or the catalog was found back (recovered_ms, 0 if never) after its last
 * failure. False for a holder that is not down. */
bool coord_reconnect_due(const coord_reconnect *r, int64_t now_ms, int64_t recovered_ms);

/* A down holder's attempt: reconnect and check. BACK, or STILL_DOWN with
 * err and the backoff doubled (at most COORD_RECONNECT_MAX_MS). */
coord_reconnect_state coord_reconnect_try(coord_reconnect *r, coord_catalog *cat, coffer_err *err);

/* Marks the holder down (or extends its backoff) without an attempt: for a
 * connection that could not even be opened. Returns true on the
 * transition to down. */
bool coord_reconnect_failed(coord_reconnect *r);

/* Milliseconds until a down holder's next attempt (0: due now); -1 when it
 * is not down. */
int64_t coord_reconnect_wait_ms(const coord_reconnect *r, int64_t now_ms);

#endif
