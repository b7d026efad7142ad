#include "agent/outbox/events.h"

#include <stdlib.h>

#include "common/base/log.h"

const char *
agent_events_type_name(const Coffer__V1__Event *ev)
{
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_HELLO:
		return ("agent.hello");
	case COFFER__V1__EVENT__KIND_HEARTBEAT:
		return ("agent.heartbeat");
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		return ("backup.started");
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED:
		return ("backup.completed");
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED:
		return ("backup.failed");
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED:
		return ("wal.archived");
	case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED:
		return ("restore.completed");
	case COFFER__V1__EVENT__KIND_DRILL_RESULT:
		return ("backup.drill_completed");
	case COFFER__V1__EVENT__KIND_COMMAND_DONE:
		return ("command.done");
	default:
		return ("unknown");
	}
}

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
		    "event %s is %zu bytes, over the %u-byte limit", agent_events_type_name(ev),
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
		return (coffer_err_wrap(err, "saving event %s", agent_events_type_name(ev)));
	}
	coffer_log_debug(
	    "event saved", "type=%s seq=%llu", agent_events_type_name(ev), (unsigned long long)seq);
	if (seq_out != NULL) {
		*seq_out = seq;
	}
	return (0);
}
