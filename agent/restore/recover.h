/*
 * A key ring written back from escrow, on a host that lost the ring: every
 * escrow object of the service in one repository (normally DR) opened with
 * the platform's escrow private key and written as a new ring at
 * [agent] key_ring, oldest key first, so the newest escrowed key is the
 * ring's newest (docs/OPERATIONS.md, "An agent host is gone").
 *
 * What it refuses: an existing ring (never replaced), an object whose
 * service or key id is not the one its key names, an object that does not
 * authenticate (altered). An object sealed to another escrow key (one used
 * before a rotation of the escrow key) is skipped and counted, not opened.
 *
 * Blocking (repository I/O). ctx needs a readable repository; no key ring.
 */
#ifndef COFFER_AGENT_RESTORE_RECOVER_H
#define COFFER_AGENT_RESTORE_RECOVER_H

#include <stddef.h>

#include "agent/context/context.h"
#include "common/crypto/escrow.h"

typedef struct agent_recover_result {
	size_t keys;      /* written into the ring */
	size_t other_key; /* skipped: sealed to another escrow key */
	char newest[COFFER_KEYRING_ID_MAX + 1];
} agent_recover_result;

int agent_recover_ring(
    agent_ctx *ctx, const coffer_escrow_key *key, agent_recover_result *res, coffer_err *err);

#endif
