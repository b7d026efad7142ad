/*
 * Sender: ships the agent's durable outbox to the coordinator, exactly once
 * (docs/ARCHITECTURE.md, "Wire protocol").
 *
 * What it promises:
 * - An event leaves the outbox only when an OK Reply acks it
 *   (Reply.acked_event_seq); every failure keeps it for the next attempt, and
 *   the coordinator ignores resends, so a crash anywhere costs at most a
 *   resend.
 * - Every request is a signed Envelope whose seq is strictly greater than any
 *   seq this agent ever used, across restarts, concurrent processes (the
 *   daemon and `coffer-agent flush`) and clock steps: max(last + 1,
 *   unix_ms * 1000), written durably to <state_dir>/envelope.seq under a lock
 *   before the request leaves.
 * - An outbox record that does not decode is a bug, never skipped: the sender
 *   logs it, stops sending (status "broken") and keeps the record until an
 *   operator restarts the agent with a fixed build.
 * - Memory is bounded by AGENT_SENDER_MAX_BYTES (+ one outbox record) per
 *   batch and COFFER_WIRE_MAX_MSG per reply, whatever the outbox holds.
 *
 * Threads: the daemon runs one sender thread (agent_sender_start). It has its
 * own outbox handle, so it never shares one with the backup worker (outbox
 * handles are single-threaded; the outbox's flock orders the two). Calls
 * block for at most AGENT_SENDER_CALL_TIMEOUT_MS (AGENT_SENDER_HELLO_TIMEOUT_MS
 * while not connected), which is also the longest agent_sender_stop waits.
 */
#ifndef COFFER_AGENT_REPORT_SENDER_H
#define COFFER_AGENT_REPORT_SENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/context/context.h"
#include "agent/outbox/outbox.h"
#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "proto/coffer.pb-c.h"

/* One batch: at most this many events and this many payload bytes (the first
 * record always goes, whatever its size), well under COFFER_WIRE_MAX_MSG. */
#define AGENT_SENDER_MAX_EVENTS 256u
#define AGENT_SENDER_MAX_BYTES  (512u * 1024)
/* The longest one request waits for its reply. A late reply is dropped and
 * the batch resent with a new envelope seq, which the coordinator dedups. */
#define AGENT_SENDER_CALL_TIMEOUT_MS 5000u
/* The hello that opens every (re)connection is tiny and answered at once by a
 * live coordinator, so it waits less: while the coordinator is down, each
 * attempt (and so agent_sender_stop) blocks for at most this long. */
#define AGENT_SENDER_HELLO_TIMEOUT_MS 2000u
/* The first retry delay after a network failure; doubles up to retry_max. */
#define AGENT_SENDER_RETRY_MIN_MS 1000
#define AGENT_SENDER_ENVSEQ_FILE  "envelope.seq"
/* How often an idle sender asks the coordinator for commands: the bound on
 * how long `coffer backup run` waits before the agent starts. */
#define AGENT_SENDER_POLL_MS 3000

/* ---- building blocks (also used by tests) ---- */

/* Returns in *seq the next envelope seq for the agent whose state lives in
 * state_dir, max(last + 1, now_ms * 1000), after recording it durably (tmp,
 * fsync, rename, fsync dir) under an flock on <state_dir>/envelope.lock.
 * COFFER_ECORRUPT if envelope.seq holds anything but a number. */
int agent_sender_envseq_next(const char *state_dir, int64_t now_ms, uint64_t *seq, coffer_err *err);

/* The same, but never below floor + 1 (floor: the last seq this process
 * sent, 0 for none). When envelope.seq cannot be written for lack of space
 * it returns COFFER_ENOSPC with *seq still set: a seq that is new for this
 * process, which the caller may send from memory (see link_call). Any
 * other failure leaves *seq 0. */
int agent_sender_envseq_take(
    const char *state_dir, int64_t now_ms, uint64_t floor, uint64_t *seq, coffer_err *err);

/* Packs a signed Envelope{version 1, agent_id, seq, sent_at_ms, body,
 * Ed25519 over coffer_wire_envelope_tbs(...)} into a malloc'd *out. */
int agent_sender_envelope_build(const char *agent_id, const coffer_sign_key *key, uint64_t seq,
    int64_t sent_at_ms, const uint8_t *body, size_t body_len, uint8_t **out, size_t *out_len,
    coffer_err *err);

/* Events read from the outbox, decoded, with Event.seq set to their outbox
 * seq. Zero-initialize; agent_sender_batch_free releases it. */
typedef struct agent_sender_batch {
	Coffer__V1__Event **events;
	size_t count;
	uint64_t first_seq, last_seq; /* 0 when count == 0 */
	size_t bytes;                 /* payload bytes read */
} agent_sender_batch;

/* Reads the oldest unacked records (at most max_count / max_bytes, see
 * agent_outbox_foreach) into b. The records are copied out under the outbox
 * lock and decoded after it is released. A record that does not decode as
 * an Event is COFFER_ECORRUPT naming its seq; b is then empty. */
int agent_sender_batch_read(
    agent_outbox *ob, size_t max_count, size_t max_bytes, agent_sender_batch *b, coffer_err *err);

/* Packs Request{events: b's events, then the n_extra transient events} into a
 * malloc'd *body no larger than fits an envelope of COFFER_WIRE_MAX_MSG. */
int agent_sender_request_pack(const agent_sender_batch *b, Coffer__V1__Event **extra,
    size_t n_extra, uint8_t **body, size_t *body_len, coffer_err *err);

void agent_sender_batch_free(agent_sender_batch *b);

/* ---- the running sender ---- */

typedef enum agent_sender_state {
	AGENT_SENDER_STARTING = 0,
	AGENT_SENDER_IDLE, /* outbox empty, connected */
	AGENT_SENDER_SENDING,
	AGENT_SENDER_BACKOFF, /* coordinator unreachable or unavailable: retrying */
	AGENT_SENDER_REFUSED, /* the coordinator refused us: retrying at retry_max */
	AGENT_SENDER_BROKEN,  /* an undecodable outbox record: stopped until restart */
	AGENT_SENDER_STOPPED,
} agent_sender_state;

typedef struct agent_sender_status {
	agent_sender_state state;
	uint64_t acked_seq;                  /* highest event seq the coordinator acked */
	uint64_t events_sent;                /* durable events acked since start */
	int64_t last_contact_ms;             /* last OK reply, wall clock; 0: none yet */
	char last_error[COFFER_ERR_MSG_MAX]; /* why the last attempt failed; "" if none */
} agent_sender_status;

typedef struct agent_sender agent_sender;

/* Starts the sender thread for ctx (which needs [coordinator], the signing
 * key and the config; ctx must outlive the sender). Connecting happens on the
 * thread, so a coordinator that is down or a TLS mistake shows up in the log
 * and the status, never as a failure here. */
int agent_sender_start(agent_ctx *ctx, agent_sender **out, coffer_err *err);

/* Wakes the sender to look at the outbox now (an event was just appended).
 * Thread-safe, never blocks on the network; does not cut a retry delay short.
 * s may be NULL (no coordinator configured). */
void agent_sender_kick(agent_sender *s);

/* What the next heartbeats report about backups: whether one runs now and,
 * when completed_id is not NULL, the newest one that completed (at
 * completed_at_ms). Thread-safe, never blocks; s may be NULL. */
void agent_sender_note_backup(
    agent_sender *s, bool running, const char *completed_id, int64_t completed_at_ms);

/* A copy of the sender's state, thread-safe. */
void agent_sender_status_get(agent_sender *s, agent_sender_status *out);

/* The state as a word for logs and `status` output ("idle", "broken"). */
const char *agent_sender_state_name(agent_sender_state state);

/* Stops the thread (waiting at most for one call in flight) and frees s.
 * NULL is ignored. */
void agent_sender_stop(agent_sender *s);

/* One-shot, on the calling thread: sends the whole outbox and returns 0 once
 * every event in it when the call began is acked; retries network failures
 * and UNAVAILABLE until timeout_ms has passed (COFFER_ETIMEDOUT), and returns
 * at once on a refusal (COFFER_EREFUSED, the coordinator's reason in err) or
 * an undecodable record (COFFER_ECORRUPT). *acked (may be NULL) counts the
 * events acked. */
int agent_sender_flush(agent_ctx *ctx, int64_t timeout_ms, uint64_t *acked, coffer_err *err);

/* What one hello to the coordinator showed (`coffer-agent check`). */
typedef struct agent_sender_ping_result {
	unsigned attempts;      /* calls made until one was answered OK */
	int64_t rtt_ms;         /* the answered call's round trip (monotonic) */
	int64_t sent_ms;        /* this host's clock when it left (Unix ms) */
	int64_t received_ms;    /* and when the reply came */
	int64_t server_time_ms; /* the coordinator's clock in the reply; 0: none */
} agent_sender_ping_result;

/* One-shot, on the calling thread: a signed hello over the configured
 * transport (mutual TLS), retried while the coordinator is unreachable
 * until timeout_ms has passed. 0 once the coordinator answered OK; a
 * refusal (COFFER_EREFUSED, the reason and its fix in err) or the last
 * network error otherwise. Sends no outbox event and acks nothing. */
int agent_sender_ping(
    agent_ctx *ctx, int64_t timeout_ms, agent_sender_ping_result *res, coffer_err *err);

/* A command from the coordinator (run a backup now). Called on the sender's
 * thread, once per command id (ids the sender already passed on are not
 * repeated while it runs); the callee hands it to its own thread and
 * reports the outcome later as a CommandDone event. */
typedef void (*agent_sender_command_cb)(
    void *arg, uint64_t command_id, Coffer__V1__BackupKind kind, const char *requested_by);

/* A RunDrill command (drill runners): the same rules; rd is valid only
 * during the call, so the callee copies what it keeps. */
typedef void (*agent_sender_drill_cb)(
    void *arg, uint64_t command_id, const Coffer__V1__RunDrill *rd);
void agent_sender_set_drill_cb(agent_sender *s, agent_sender_drill_cb cb, void *arg);

/* Sets the command callback; call before agent_sender_start's thread can
 * receive replies, i.e. right after start (replies before it are polled
 * again). */
void agent_sender_set_command_cb(agent_sender *s, agent_sender_command_cb cb, void *arg);

#endif
