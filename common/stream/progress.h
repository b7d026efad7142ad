/*
 * Progress: a pass-through filter that reports bytes done against a rough
 * total, at most once a second, on stderr. On a terminal it redraws one line
 * (bytes, rate, ETA when the total is roughly known); in JSON mode it writes
 * one JSON object per line, {"event":"progress","phase":...,"bytes_done":..,
 * "bytes_total":..,"rate_bytes_per_s":..,"eta_s":..}, and a last one with
 * "done":true; otherwise it stays silent, so logs and scripts never see
 * carriage returns.
 *
 * The mode is process-wide, set once by a command from its options before
 * any filter is made (like the log level).
 */
#ifndef COFFER_COMMON_STREAM_PROGRESS_H
#define COFFER_COMMON_STREAM_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

#include "common/stream/filter.h"

typedef enum coffer_progress_mode {
	COFFER_PROGRESS_AUTO = 0, /* a line on a terminal, nothing otherwise */
	COFFER_PROGRESS_JSON,     /* JSON lines on stderr, terminal or not */
	COFFER_PROGRESS_OFF,
} coffer_progress_mode;

void coffer_progress_set_mode(coffer_progress_mode mode);

/* "json", "tty" (auto) or "off" from --progress; 0 or COFFER_EINVAL. */
int coffer_progress_mode_parse(const char *text, coffer_progress_mode *mode);

/* Whether a progress filter would show anything (JSON mode, or a terminal
 * on stderr in auto mode): callers add the filter only then. */
bool coffer_progress_wanted(void);

/* A pass-through in front of next. what: the phase ("restoring",
 * "backing up"); expected: rough total in bytes for the ETA, 0 if unknown. */
coffer_filter *coffer_progress_filter_new(
    coffer_filter *next, const char *what, uint64_t expected, coffer_err *err);

#endif
