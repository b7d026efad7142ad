/*
 * Events: every state change the agent makes (a backup started, completed or
 * failed, a restore, a drill, archived WAL) is written to the durable outbox
 * before it is reported anywhere else, so the coordinator learns of it even
 * if the agent dies the next instant. The sender (agent/report/sender.c) ships the
 * outbox; this module only builds and saves records.
 */
#ifndef COFFER_AGENT_OUTBOX_EVENTS_H
#define COFFER_AGENT_OUTBOX_EVENTS_H

#include <stdint.h>

#include "agent/outbox/outbox.h"
#include "common/base/error.h"
#include "proto/coffer.pb-c.h"

/* Largest packed event the agent writes; matches the coordinator's limit. */
#define AGENT_EVENT_MAX_BYTES (64u * 1024)

/* Fills in service and occurred_at_ms, packs ev and appends it to the
 * outbox. *seq_out (may be NULL) gets the outbox seq. */
int agent_events_emit(agent_outbox *ob, const char *service, int64_t now_ms, Coffer__V1__Event *ev,
    uint64_t *seq_out, coffer_err *err);

#endif
