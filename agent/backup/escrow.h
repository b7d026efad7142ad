/*
 * Key escrow from the agent's side: each key of the service's ring sealed
 * to the platform's escrow public key ([keys] escrow_public_key) and
 * written, create-only like every agent write, to the primary repository
 * as services/<service>/keys/<key id>.escrow.json. The agent holds no
 * credential for the DR repository; the coordinator's DR copier copies each
 * escrow object into DR under object lock and records it (docs/OPERATIONS.md,
 * "Key escrow").
 *
 * Who calls it: `coffer-agent keyring escrow` for the whole ring, and every
 * backup for the key that seals it, so a key added by hand is escrowed
 * before its first backup leaves the host. An object already in place is
 * left alone (objects are immutable), whoever wrote it.
 *
 * Blocking (repository I/O). ctx needs the key ring and a writable
 * repository.
 */
#ifndef COFFER_AGENT_BACKUP_ESCROW_H
#define COFFER_AGENT_BACKUP_ESCROW_H

#include <stdbool.h>
#include <stddef.h>

#include "agent/context/context.h"
#include "common/crypto/escrow.h"

/* Seals key_id of ctx->ring to pub and writes it unless its object exists;
 * *written (may be NULL) says whether this call wrote it. */
int agent_escrow_key(agent_ctx *ctx, const coffer_escrow_pub *pub, const char *key_id,
    bool *written, coffer_err *err);

/* Every key of the ring; *written counts the objects written now. Goes on
 * past a key that fails and returns the first error. */
int agent_escrow_ring(
    agent_ctx *ctx, const coffer_escrow_pub *pub, size_t *written, coffer_err *err);

/* For a backup: with [keys] escrow_public_key, the ring's newest key (the
 * one that seals it). A failure is logged, never fatal: the backup matters
 * more, and the coordinator pages key_not_escrowed if it lasts. */
void agent_escrow_newest(agent_ctx *ctx);

#endif
