/*
 * Admin: the coordinator's operator endpoint. Turns one AdminEnvelope (from
 * the `coffer` CLI) into one AdminReply, against the catalog and the
 * [operator.*] and [service.*] sections of coordinator.conf.
 *
 * What it promises:
 * - Nothing runs before the request is authenticated: the envelope is
 *   decoded with a bounded arena (common/wire/wire.h), the operator must have an
 *   [operator.NAME] section, the Ed25519 signature must verify with its
 *   public_key over coffer_wire_admin_tbs, sent_at_ms must be within
 *   COORD_ADMIN_SKEW_MS of the coordinator's clock, and the nonce must never
 *   have been seen (table admin_nonces, migration 3; pruned after twice the
 *   skew window, when no request carrying it could pass the time check).
 * - Roles: `auditor` may run only the read commands (status, backups.list,
 *   agents.list, audit.list, audit.verify, drill.list, ...); `operator` may
 *   also run agents.enroll, agents.revoke, backup.run and drill.run.
 *   Anything else is refused with STATUS_UNAUTHORIZED.
 * - Every request, served or refused, leaves one audit row with actor
 *   "operator:NAME" (the claimed name, made printable, when it was never
 *   verified): action "admin.<command>" for a command that ran (with its
 *   status), "admin.refused" for a request refused before it ran. A read
 *   whose audit row cannot be written is not answered with data.
 * - The reply's json is the command's result (an object); error is one line
 *   "what is wrong (hint: what to do)" when status is not OK.
 * - Blocking (libpq): call it on the catalog worker thread, never on the
 *   loop thread. Memory is bounded by the request size and the listing
 *   limits (at most COORD_ADMIN_MAX_LIST rows, replies under
 *   COFFER_WIRE_MAX_MSG), never by the catalog's size.
 */
#ifndef COFFER_COORDINATOR_SERVE_ADMIN_H
#define COFFER_COORDINATOR_SERVE_ADMIN_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/base/clock.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"

/* How far an operator's clock may be from the coordinator's. */
#define COORD_ADMIN_SKEW_MS (5 * 60 * 1000)
/* Listings return at most this many rows per request (args "limit"). */
#define COORD_ADMIN_MAX_LIST     1000
#define COORD_ADMIN_DEFAULT_LIST 100

/*
 * Answers one admin request (len bytes, untrusted). On return 0, *reply
 * (malloc'd, the caller frees it) holds an encoded AdminReply, whatever its
 * status. Returns COFFER_ENOMEM or COFFER_EINTERNAL only when not even a
 * refusal could be encoded; the caller then drops the request.
 */
int coord_admin_handle(coord_catalog *cat, const coord_config *cfg, const coord_audit_key *key,
    const uint8_t *req, size_t len, uint8_t **reply, size_t *reply_len);

/* The same with an injectable clock (NULL: the system clock), for tests. */
int coord_admin_handle_at(coord_catalog *cat, const coord_config *cfg, const coord_audit_key *key,
    const coffer_clock *clock, const uint8_t *req, size_t len, uint8_t **reply, size_t *reply_len);

/*
 * The overview `coffer status` answers (every configured service: its
 * newest verified backup, counts, agents, last drill, DR copies; the
 * active legal holds, at most COORD_ADMIN_DEFAULT_LIST), read without a
 * request, an operator or an audit row: for the status page, which shows
 * the same figures the command does. *out (cJSON_Delete it) is the
 * command's result object. Blocking (libpq), as coord_admin_handle.
 */
int coord_admin_status_read(
    coord_catalog *cat, const coord_config *cfg, int64_t now_ms, cJSON **out, coffer_err *err);

#endif
