/*
 * Agents: enrollment in the catalog. Each service agent is enrolled for
 * exactly one service with one Ed25519 public key; a drill runner
 * (coordinator/drill/drills.h) for no service of its own and a list of services
 * it may drill. The intake (coordinator/intake/intake.h) trusts nothing else.
 *
 * What it promises:
 * - Ownership is explicit: an agent name belongs to one service for good.
 *   Enrolling a name that is enrolled for another service, or revoked, or
 *   a key that another agent holds, is refused; enrolling the same name,
 *   service and key again is a no-op.
 * - Every change is audited in the same transaction (actions
 *   "agent.enroll", "agent.revoke"), with the actor the caller names
 *   ("local-admin" for the coordinator's own command line).
 * - Blocking (libpq); thread rules of coordinator/catalog/catalog.h.
 */
#ifndef COFFER_COORDINATOR_CATALOG_AGENTS_H
#define COFFER_COORDINATOR_CATALOG_AGENTS_H

#include <stdbool.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"

/*
 * Enrolls agent for service with pub. owner is the service's owner from the
 * policy (the services row is created or its owner updated). Returns 0 (and
 * *already true when it was enrolled exactly so before), COFFER_EEXIST (the
 * name belongs to another service, was revoked, has another key, or the key
 * belongs to another agent), COFFER_EINVAL (a name the catalog refuses), or
 * a catalog error.
 */
int coord_agents_enroll(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *service, const char *owner, const char *agent, const coffer_sign_pubkey *pub,
    bool *already, coffer_err *err);

/*
 * Enrolls agent as a drill runner (role drill_runner, no service of its
 * own) allowed to drill the n services (owners[i] is services[i]'s owner).
 * Enrolling a runner again with the same key adds services it did not have;
 * *already is true when nothing was added. Refused (COFFER_EEXIST) when the
 * name is a service agent, revoked, or enrolled with another key, or the
 * key is another agent's. Audited as "agent.enroll" with the role and the
 * services added.
 */
int coord_agents_enroll_runner(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *const *services, const char *const *owners, size_t n, const char *agent,
    const coffer_sign_pubkey *pub, bool *already, coffer_err *err);

/* Revokes agent. 0 (and *already true if it was revoked before),
 * COFFER_ENOENT if no such agent, or a catalog error. */
int coord_agents_revoke(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *agent, bool *already, coffer_err *err);

/* Every enrolled agent as a JSON array of objects (name, service (null for
 * a drill runner), role ("service", "drill_runner"), drills (a runner's
 * services),
 * fingerprint, enrolled_at, enrolled_by, revoked_at, last_event_seq,
 * last_envelope_seq, last_contact_at), ordered by name; *out is the
 * caller's (cJSON_Delete). */
int coord_agents_list(coord_catalog *cat, cJSON **out, coffer_err *err);

#endif
