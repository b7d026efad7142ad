/*
 * An agent's clock skew as the coordinator measures it: each signed envelope
 * carries the agent's clock (sent_at_ms), the coordinator notes its own
 * clock on receipt, and the difference is one sample.
 *
 * Promises: pure arithmetic, no I/O, no allocation; safe on any thread.
 * Every input may be any int64 (sent_at_ms is the agent's word): nothing
 * overflows, and a sample is clamped to +-COORD_SKEW_SAMPLE_MAX_MS.
 */
#ifndef COFFER_COORDINATOR_INTAKE_SKEW_H
#define COFFER_COORDINATOR_INTAKE_SKEW_H

#include <stdbool.h>
#include <stdint.h>

/* How long the estimate keeps the smallest sample it has seen: a new
 * window starts with the first sample after it (see skew.c). */
#define COORD_SKEW_WINDOW_MS (60 * 1000)

/* The largest skew a sample can report: a hundred years either way. */
#define COORD_SKEW_SAMPLE_MAX_MS (INT64_C(100) * 366 * 86400 * 1000)

/* One sample: the agent's clock minus ours, sent_at_ms - received_ms, clamped.
 * Positive: the agent is ahead. */
int64_t coord_skew_sample(int64_t sent_at_ms, int64_t received_ms);

/* The per-agent estimate, as stored in agents.clock_skew_ms and
 * agents.clock_skew_since (the start of its window). */
typedef struct coord_skew {
	bool known;
	int64_t skew_ms;
	int64_t since_ms;
} coord_skew;

/* The estimate after sample, received at received_ms. */
coord_skew coord_skew_update(coord_skew prev, int64_t sample_ms, int64_t received_ms);

/* Whether skew_ms is beyond bound_ms either way (bound_ms >= 0). */
bool coord_skew_beyond(int64_t skew_ms, int64_t bound_ms);

#endif
