/*
 * Gate: what the coordinator decides about an agent request without a
 * catalog round trip of its own, so that anyone past TLS (every certificate
 * of the platform CA: other agents, operators, revoked agents whose
 * certificates are not yet on the CRL) cannot make it write to the catalog
 * once per junk request (docs/ARCHITECTURE.md, "Flood-proof intake").
 *
 * It holds four things:
 * - The directory: every enrolled agent's name, public key and whether it
 *   is revoked, read from the catalog at start and then refreshed
 *   incrementally (enrolled_at or revoked_at newer than the last read less
 *   a margin) at most once a second, and at once after this process
 *   enrolled or revoked an agent. A name may change only from enrolled to
 *   revoked and a key never changes (coordinator/catalog/agents.h), so an
 *   entry is never wrong for long: the intake still locks and re-reads
 *   the agent's row for everything it accepts.
 * - Per-peer refusal budgets: a token bucket per remote address (IP, port
 *   left out). Every refusal spends a token; while a peer has none left it
 *   is muted: its requests are counted and dropped unanswered, without
 *   being decoded (coordinator/serve/server.c). Agents behind one address (NAT)
 *   share its budget, but only refusals spend it.
 * - Per-agent envelope budgets: a token bucket per enrolled agent, spent
 *   after its signature verified (so nobody can spend another's).
 * - Refusal aggregates: a refusal decided here is counted in memory, keyed
 *   (peer, reason, period); each period (default one minute, on the wall
 *   clock) becomes ONE audit row per key, "request.refused" with a count,
 *   and the `refusals` counters, in one transaction (coord_gate_flush).
 *   Keys per period are capped; past the cap they fold into peer "*".
 *
 * Memory: bounded by the number of enrolled agents plus GATE caps
 * (peers tracked, aggregate keys), whatever peers send.
 * Threads: every function may be called from any thread; one mutex, held
 * for microseconds, never across a catalog call.
 */
#ifndef COFFER_COORDINATOR_INTAKE_GATE_H
#define COFFER_COORDINATOR_INTAKE_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"

typedef struct coord_gate coord_gate;

/* The reason counted for requests refused for volume: a muted peer's (dropped), or
 * an agent's over its envelope budget. It spends no refusal budget. */
#define COORD_GATE_RATE_LIMITED "rate_limited"

typedef struct coord_gate_limits {
	double peer_refusals_per_s;   /* refill of a peer's refusal budget; 0: 10 */
	unsigned peer_refusal_burst;  /* its size; 0: 50 */
	double agent_envelopes_per_s; /* refill of an agent's envelope budget; 0: 100 */
	unsigned agent_burst;         /* its size; 0: 200 */
	int64_t period_ms;            /* refusals aggregated per period; 0: 60 s */
} coord_gate_limits;

typedef enum coord_gate_agent_state {
	COORD_GATE_UNKNOWN = 0, /* not in the directory */
	COORD_GATE_ENROLLED,
	COORD_GATE_REVOKED,
} coord_gate_agent_state;

typedef struct coord_gate_flush_stats {
	unsigned audit_rows; /* aggregated request.refused rows written */
	uint64_t refusals;   /* refusals they count */
} coord_gate_flush_stats;

int coord_gate_new(const coord_gate_limits *lim, coord_gate **out, coffer_err *err);
void coord_gate_free(coord_gate *g);

/* The directory's view of name; pubkey (may be NULL) gets the key when the
 * agent is known. */
coord_gate_agent_state coord_gate_agent(
    coord_gate *g, const char *name, uint8_t pubkey[COFFER_SIGN_PUBKEY_BYTES]);

/* Whether a directory refresh is due (at most once a second, or at once
 * after coord_gate_invalidate); true claims it for the caller, who then
 * calls coord_gate_refresh. */
bool coord_gate_refresh_claim(coord_gate *g, int64_t now_ms);
/* Reads what changed in `agents` since the last refresh (everything the
 * first time, and every ten minutes). */
int coord_gate_refresh(coord_gate *g, coord_catalog *cat, coffer_err *err);
/* One name from the catalog into the directory (a name it did not know:
 * enrolled since the last refresh, or not at all). */
int coord_gate_lookup(coord_gate *g, coord_catalog *cat, const char *name,
    coord_gate_agent_state *state, coffer_err *err);
/* This process enrolled or revoked someone: refresh before the next use. */
void coord_gate_invalidate(coord_gate *g);

/* "10.0.0.7" from "10.0.0.7:4000", "::1" from "[::1]:4000"; "" stays "". */
void coord_gate_peer_ip(const char *peer, char *ip, size_t size);

/* Whether peer (an address as the wire gives it) has no refusal budget
 * left. Spends nothing. */
bool coord_gate_peer_muted(coord_gate *g, const char *peer, int64_t now_ms);

/* A refusal decided without the catalog: counted for the period's audit
 * row and the refusals table, and one token of the peer's budget spent.
 * agent: the claimed name (printable; "" if none); error: the reply's line. */
void coord_gate_refused(
    coord_gate *g, const char *peer, const char *reason, const char *agent, const char *error);

/* After agent's signature verified: whether its envelope budget allows
 * one more now (and spends it). */
bool coord_gate_agent_allow(coord_gate *g, const char *agent, int64_t now_ms);

/* Writes the aggregates of every period that has ended (all: of the
 * current one too, at shutdown) in one transaction: one audit row per
 * (peer, reason, period) and the refusals counters. On a catalog error
 * they stay in memory for the next call. stats may be NULL. */
int coord_gate_flush(coord_gate *g, coord_catalog *cat, const coord_audit_key *key, bool all,
    coord_gate_flush_stats *stats, coffer_err *err);

/* A packed Reply with only status and error (no envelope seq), for a
 * request answered before it was decoded. The caller frees *out. */
int coord_gate_reply(
    int status, const char *error, uint8_t **out, size_t *out_len, coffer_err *err);

#endif
