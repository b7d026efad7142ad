/*
 * Server: the coordinator daemon's agent endpoint. A libuv loop owns the
 * wire server (common/wire/net.h, [coordinator] listen with the [tls] files);
 * every request is answered by the intake (coordinator/intake/intake.h) on one
 * dedicated catalog thread, and the reply is sent from the loop thread.
 *
 * What it promises:
 * - Refuses to start when the catalog cannot be reached or its schema is not
 *   exactly this binary's (coord_catalog_check), or when the listener cannot
 *   be opened; err says which and what to do.
 * - The loop never blocks on PostgreSQL: it only queues requests and sends
 *   replies. Requests held at once are bounded by the wire server's
 *   max_inflight, so memory does not grow with the number of agents.
 * - A lost catalog connection: every request is answered STATUS_UNAVAILABLE
 *   (agents keep their events) while the catalog thread reconnects with
 *   exponential backoff; "catalog unreachable; not acking" is logged once
 *   per outage, and "catalog reachable again" when it ends.
 * - SIGTERM or SIGINT stop it cleanly: the wire server stops first (no new
 *   request, no reply after it), the catalog thread finishes the request in
 *   hand and exits, held requests are dropped (their agents retry), then the
 *   loop's handles close and coord_server_run returns 0.
 */
#ifndef COFFER_COORDINATOR_SERVE_SERVER_H
#define COFFER_COORDINATOR_SERVE_SERVER_H

#include "common/base/error.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/policy/coord_config.h"

/* Serves until SIGTERM or SIGINT. Blocks; returns 0 after a clean stop, or
 * a COFFER_E* code with err filled when it could not start. */
int coord_server_run(const coord_config *cfg, const coord_audit_key *key, coffer_err *err);

#endif
