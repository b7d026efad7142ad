/*
 * Reconnect rule (coordinator/catalog/reconnect.h).
 *
 * Design notes.
 * The rule lives beside the connection rather than in each holder because
 * holders used to decide for themselves after which kinds of work to look
 * at the connection: the intake lanes looked after every envelope, lane 0
 * after operators' requests but never after its maintenance tick, so an
 * idle coordinator's lane 0 failed every tick on a dead connection until an
 * operator happened to send a request. Asking "is the connection lost?"
 * after every piece of work, in one place, leaves no kind of work behind.
 */
#include "coordinator/catalog/reconnect.h"

#include "common/base/clock.h"

bool
coord_reconnect_failed(coord_reconnect *r)
{
	bool first = !r->down;
	if (first) {
		r->down = true;
		r->backoff_ms = COORD_RECONNECT_MIN_MS;
	} else if (r->backoff_ms < COORD_RECONNECT_MAX_MS) {
		r->backoff_ms *= 2;
		if (r->backoff_ms > COORD_RECONNECT_MAX_MS) {
			r->backoff_ms = COORD_RECONNECT_MAX_MS;
		}
	}
	r->failed_ms = coffer_clock_monotonic_ms();
	r->retry_ms = r->failed_ms + r->backoff_ms;
	return (first);
}

static int
reopen(coord_catalog *cat, coffer_err *err)
{
	int rv = coord_catalog_reconnect(cat, err);
	if (rv == 0) {
		rv = coord_catalog_check(cat, err);
	}
	return (rv);
}

coord_reconnect_state
coord_reconnect_after(coord_reconnect *r, coord_catalog *cat, coffer_err *err)
{
	if (coord_catalog_ok(cat)) {
		return (COORD_RECONNECT_OK);
	}
	if (r->down) {
		/* Work ran on a connection already known lost (an operator's
		 * request answered with the error): the backoff decides the
		 * next attempt, not the traffic. */
		return (COORD_RECONNECT_STILL_DOWN);
	}
	if (reopen(cat, err) == 0) {
		return (COORD_RECONNECT_REVIVED);
	}
	(void)coord_reconnect_failed(r);
	return (COORD_RECONNECT_WENT_DOWN);
}

bool
coord_reconnect_due(const coord_reconnect *r, int64_t now_ms, int64_t recovered_ms)
{
	return (r->down && (now_ms >= r->retry_ms || recovered_ms >= r->failed_ms));
}

coord_reconnect_state
coord_reconnect_try(coord_reconnect *r, coord_catalog *cat, coffer_err *err)
{
	if (reopen(cat, err) == 0) {
		r->down = false;
		r->backoff_ms = 0;
		return (COORD_RECONNECT_BACK);
	}
	(void)coord_reconnect_failed(r);
	return (COORD_RECONNECT_STILL_DOWN);
}

int64_t
coord_reconnect_wait_ms(const coord_reconnect *r, int64_t now_ms)
{
	if (!r->down) {
		return (-1);
	}
	return (r->retry_ms > now_ms ? r->retry_ms - now_ms : 0);
}
