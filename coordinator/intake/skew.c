/*
 * Clock skew of one agent; see coordinator/intake/skew.h.
 *
 * Design notes.
 * A sample is sent_at - received: the agent's offset minus the time the
 * request spent in flight (and in our queue). Transit is never negative, so
 * a sample leans towards "behind" by the transit: for an agent ahead it
 * understates the skew, for one behind it overstates it by at most the
 * request timeout (seconds; the default page bound is two minutes).
 *
 * The estimate is the sample of the smallest magnitude within a window of
 * COORD_SKEW_WINDOW_MS that starts with its first sample. Two reasons:
 *  - One envelope that waited (a busy coordinator, a slow catalog) must not
 *    page: it yields a large sample, and the window keeps the small one.
 *  - A page should resolve as soon as one measurement is inside the bound
 *    (the operator fixed NTP, the agent restarted): a smaller sample wins
 *    at once. An EWMA would hold the page for many heartbeats after the fix
 *    and open it late after the fault; the window opens it at most one
 *    window after the clock jumps.
 * The price: an agent whose clock jumps away keeps its old, small estimate
 * until the window ends (a minute), which is well inside any alert bound.
 */
#include "coordinator/intake/skew.h"

int64_t
coord_skew_sample(int64_t sent_at_ms, int64_t received_ms)
{
	/* Both are clamped first so the subtraction cannot overflow. */
	const int64_t lim = COORD_SKEW_SAMPLE_MAX_MS;
	int64_t s = sent_at_ms > lim * 2 ? lim * 2 : sent_at_ms < -lim * 2 ? -lim * 2 : sent_at_ms;
	int64_t r = received_ms > lim * 2 ? lim * 2
	    : received_ms < -lim * 2      ? -lim * 2
	                                  : received_ms;
	int64_t d = s - r;
	return (d > lim ? lim : d < -lim ? -lim : d);
}

static int64_t
magnitude(int64_t v)
{
	return (v < 0 ? -v : v);
}

coord_skew
coord_skew_update(coord_skew prev, int64_t sample_ms, int64_t received_ms)
{
	coord_skew next = { .known = true, .skew_ms = sample_ms, .since_ms = received_ms };
	if (!prev.known) {
		return (next);
	}
	/* A window that ended, or one that starts "in the future" (our own
	 * clock was stepped back), gives way to a new one. */
	bool open =
	    received_ms >= prev.since_ms && received_ms - prev.since_ms < COORD_SKEW_WINDOW_MS;
	if (!open) {
		return (next);
	}
	if (magnitude(sample_ms) < magnitude(prev.skew_ms)) {
		prev.skew_ms = sample_ms;
	}
	return (prev);
}

bool
coord_skew_beyond(int64_t skew_ms, int64_t bound_ms)
{
	return (magnitude(skew_ms) > bound_ms);
}
