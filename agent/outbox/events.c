#include "agent/outbox/events.h"

#include <stdlib.h>

#include "common/base/log.h"
#include "common/wire/wire.h"

int
agent_events_emit(agent_outbox *ob, const char *service, int64_t now_ms, Coffer__V1__Event *ev,
    uint64_t *seq_out, coffer_err *err)
{
	ev->service = (char *)service;
	ev->occurred_at_ms = now_ms;
	/* The outbox assigns the seq; the sender stamps it into the batch. */
	ev->seq = 0;
	size_t len = coffer__v1__event__get_packed_size(ev);
	if (len > AGENT_EVENT_MAX_BYTES) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		    "event %s is %zu bytes, over the %u-byte limit", coffer_wire_event_type(ev),
		    len, AGENT_EVENT_MAX_BYTES));
	}
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory packing an event"));
	}
	coffer__v1__event__pack(ev, buf);
	uint64_t seq = 0;
	int rc = agent_outbox_append(ob, buf, len, &seq, err);
	free(buf);
	if (rc != 0) {
		return (coffer_err_wrap(err, "saving event %s", coffer_wire_event_type(ev)));
	}
	coffer_log_debug(
	    "event saved", "type=%s seq=%llu", coffer_wire_event_type(ev), (unsigned long long)seq);
	if (seq_out != NULL) {
		*seq_out = seq;
	}
	return (0);
}
