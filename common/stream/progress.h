/*
 * Progress on a terminal: a pass-through filter that redraws one line on
 * stderr (bytes, rate, ETA when the total is roughly known) at most once a
 * second, and stays silent when stderr is not a terminal, so logs and
 * scripts never see carriage returns.
 */
#ifndef COFFER_COMMON_STREAM_PROGRESS_H
#define COFFER_COMMON_STREAM_PROGRESS_H

#include <stdint.h>

#include "common/stream/filter.h"

/* A pass-through in front of next. expected: rough total in bytes for the
 * ETA; 0 if unknown. */
coffer_filter *coffer_progress_filter_new(
    coffer_filter *next, const char *what, uint64_t expected, coffer_err *err);

#endif
