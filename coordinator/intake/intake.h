/*
 * Intake: the coordinator's answer to one agent request. Bytes in (a packed
 * Envelope), bytes out (a packed Reply), decided by the catalog's state
 * alone (docs/ARCHITECTURE.md, "Wire protocol"):
 *
 *   envelope decodes and has the right shape   else STATUS_MALFORMED
 *   agent enrolled                             else STATUS_UNKNOWN_AGENT
 *   agent not revoked                          else STATUS_REVOKED
 *   Ed25519 signature by the enrolled key      else STATUS_BAD_SIGNATURE
 *   envelope seq > agent's last envelope seq   else STATUS_REPLAYED
 *   body decodes, events well formed           else STATUS_MALFORMED
 *   every event about the agent's own service  else STATUS_NOT_OWNER
 *     (a drill runner: only drill results and command completions for the
 *     services and drills it was given; coord_drills_check_events)
 *   catalog reachable                          else STATUS_UNAVAILABLE
 *
 * What it promises:
 * - Everything an accepted envelope changes happens in ONE catalog
 *   transaction: durable events (seq > 0) above the agent's high-water mark
 *   are inserted into `events` (unique (agent, seq)), applied to `backups`,
 *   audited one row each, and the agent's last event seq, last envelope seq
 *   and last contact move forward. A resent durable event (seq at or below
 *   the mark) is acked and ignored. Transient events (seq 0: hello,
 *   heartbeat) only update the agent's status.
 * - A refusal changes nothing the envelope asked for; it is counted in
 *   `refusals` and written to the audit log (action "request.refused") in
 *   its own transaction, and the reply names the reason in one line; with
 *   a gate (coord_intake_set_gate) the refusals that need no catalog are
 *   counted there and audited once per peer, reason and period instead. A
 *   refusal that cannot be recorded (catalog gone) is answered
 *   STATUS_UNAVAILABLE instead, so the agent retries and it is recorded
 *   later: nothing is refused without a trace.
 * - An event that is well formed on the wire but that the catalog cannot
 *   take (a backup id the schema refuses, figures that break a constraint)
 *   is still recorded in `events` with the reason, audited as
 *   "event.rejected" and acked, so one poisoned event never blocks an
 *   agent's outbox forever.
 * - Memory: two decode arenas sized from max_msg, allocated once; nothing
 *   grows with the number of requests.
 * - Blocking (libpq); one coord_intake per catalog connection, used by one
 *   thread at a time (coordinator/catalog/catalog.h).
 */
#ifndef COFFER_COORDINATOR_INTAKE_INTAKE_H
#define COFFER_COORDINATOR_INTAKE_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"

typedef struct coord_intake coord_intake;

/* What happened to one request, for the caller's log and metrics. */
typedef struct coord_intake_result {
	int status;               /* Coffer__V1__Status of the reply */
	uint64_t envelope_seq;    /* 0 if the envelope did not decode */
	uint64_t acked_event_seq; /* OK replies: the agent's high-water mark */
	unsigned applied;         /* durable events applied by this request */
	unsigned resent;          /* durable events ignored as resends */
	unsigned rejected;        /* durable events recorded as rejected */
	bool aggregated;          /* a refusal counted by the gate, audited per period */
	unsigned completed;       /* backups recorded complete (committed) */
	char agent[72];           /* claimed agent id, printable, cut */
	char error[256];          /* the reply's error line; "" when OK */
	char cause[256];          /* UNAVAILABLE / INTERNAL: the catalog's own error */
} coord_intake_result;

/* A new intake on cat (borrowed; must outlive the intake) with the audit key
 * (copied). max_msg: the largest request; 0 for COFFER_WIRE_MAX_MSG. */
int coord_intake_new(coord_catalog *cat, const coord_audit_key *key, size_t max_msg,
    coord_intake **out, coffer_err *err);

/* Routes the refusals that need no catalog (an envelope that does not
 * decode, an unknown or revoked agent, a bad signature, an agent over its
 * envelope budget) through gate (borrowed; coordinator/intake/gate.h):
 * decided from its directory, counted there, audited once per peer,
 * reason and period, instead of one catalog transaction each. Without a
 * gate every refusal is recorded at once as before. */
struct coord_gate;
void coord_intake_set_gate(coord_intake *in, struct coord_gate *gate);

/* Wipes the key copy and frees the arenas. NULL is fine. */
void coord_intake_free(coord_intake *in);

/*
 * Answers one request. req (len bytes) is untrusted; peer ("127.0.0.1:4000",
 * may be NULL) goes into the audit row of a refusal. On success *reply is a
 * malloc'd packed Reply (any status, including refusals and
 * STATUS_UNAVAILABLE) that the caller frees, and res (may be NULL) says
 * what happened. Returns non-zero only when no reply could be built
 * (COFFER_ENOMEM).
 *
 * After a return, coord_catalog_ok(cat) false means the connection was
 * lost: the caller reconnects (coord_catalog_reconnect) before the next
 * call; until then every call answers STATUS_UNAVAILABLE without touching
 * the catalog.
 */
int coord_intake_handle(coord_intake *in, const uint8_t *req, size_t len, const char *peer,
    uint8_t **reply, size_t *reply_len, coord_intake_result *res, coffer_err *err);

/* Builds a reply with only status, error and envelope seq (taken from req
 * when it decodes), for a caller that cannot reach the catalog at all. */
int coord_intake_reply_status(coord_intake *in, const uint8_t *req, size_t len, int status,
    const char *error, uint8_t **reply, size_t *reply_len, coffer_err *err);

/* The short reason word for a status ("bad_signature"), as counted in the
 * refusals table. */
const char *coord_intake_reason(int status);

#endif
