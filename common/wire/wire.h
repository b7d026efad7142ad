/*
 * Wire: bounded encoding and decoding of the protobuf messages in
 * proto/coffer.proto. Every message from a peer is untrusted, so decoding
 * happens in a per-message arena with a hard cap: a hostile or corrupt
 * message can cost at most COFFER_WIRE_ARENA_FACTOR times its size, and a
 * message over the size limit is refused before it is parsed at all.
 *
 * Ownership: decoded messages live in the arena; free the whole arena with
 * coffer_wire_arena_reset/fini, never with protobuf-c's free_unpacked.
 * Thread-safety: an arena belongs to one thread at a time.
 */
#ifndef COFFER_COMMON_WIRE_WIRE_H
#define COFFER_COMMON_WIRE_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "common/base/error.h"
#include "proto/coffer.pb-c.h"

/* The largest message either side accepts (also NNG_OPT_RECVMAXSZ). Control
 * and metadata only: backup data never crosses this channel. */
#define COFFER_WIRE_MAX_MSG (1u << 20)
/* Decoding may allocate at most this many times the wire size (+ slack). */
#define COFFER_WIRE_ARENA_FACTOR 4
#define COFFER_WIRE_ARENA_SLACK  4096

typedef struct coffer_wire_arena {
	uint8_t *base;
	size_t cap;
	size_t used;
} coffer_wire_arena;

/* Reserves room for decoding messages of up to max_msg bytes. */
int coffer_wire_arena_init(coffer_wire_arena *arena, size_t max_msg, coffer_err *err);
/* Forgets everything decoded into the arena; keeps the memory. */
void coffer_wire_arena_reset(coffer_wire_arena *arena);
void coffer_wire_arena_fini(coffer_wire_arena *arena);

/* Decodes buf as a message of type desc into the arena (after resetting it).
 * Refuses buf larger than max_len (COFFER_ETOOBIG) and anything protobuf-c
 * cannot parse within the arena's cap (COFFER_EPROTO). Returns NULL on error. */
ProtobufCMessage *coffer_wire_decode(const ProtobufCMessageDescriptor *desc,
    coffer_wire_arena *arena, const uint8_t *buf, size_t len, size_t max_len, coffer_err *err);

/* Encodes msg into a new malloc'd buffer; refuses results over max_len.
 * The caller frees *out. */
int coffer_wire_encode(
    const ProtobufCMessage *msg, size_t max_len, uint8_t **out, size_t *out_len, coffer_err *err);

/* Checks the shape of a decoded envelope before any lookup or signature
 * work: version 1, a plausible agent id, seq > 0, a body, a 64-byte signature. */
/* The event's type as the catalog, the audit trail and `coffer-agent events`
 * name it ("backup.completed", "drill.result", ...; "unknown" for a kind
 * this build does not know). One table, so the agent and the coordinator
 * never call the same event by two names. */
const char *coffer_wire_event_type(const Coffer__V1__Event *ev);

int coffer_wire_check_envelope(const Coffer__V1__Envelope *env, coffer_err *err);

/* The exact bytes an agent signs for an envelope (see proto/coffer.proto).
 * Returns a malloc'd buffer the caller frees, or NULL on allocation failure. */
uint8_t *coffer_wire_envelope_tbs(const char *agent_id, uint64_t seq, int64_t sent_at_ms,
    const uint8_t *body, size_t body_len, size_t *out_len);

/* The exact bytes an operator signs for an admin envelope. */
uint8_t *coffer_wire_admin_tbs(const char *operator_name, const uint8_t *nonce, size_t nonce_len,
    int64_t sent_at_ms, const uint8_t *body, size_t body_len, size_t *out_len);

#endif
