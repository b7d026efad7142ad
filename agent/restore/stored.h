/*
 * Reading backups back: finding them (an id or "latest"), loading and
 * checking their signed manifests, and streaming the plaintext out through
 * sha256 -> unseal -> zstd -> sha256, with both digests and sizes compared
 * with the manifest at the end. Every reader -- verify, cat, restore, drills
 * -- goes through here, so a corrupt backup is refused the same way
 * everywhere.
 */
#ifndef COFFER_AGENT_RESTORE_STORED_H
#define COFFER_AGENT_RESTORE_STORED_H

#include <stdbool.h>

#include "agent/context/context.h"
#include "common/crypto/manifest.h"
#include "common/stream/filter.h"

/* Calls cb with every published backup of the service (one that has a
 * manifest.json), oldest first. Manifests are not read. */
typedef int (*agent_stored_id_cb)(const char *backup_id, void *arg);
int agent_stored_ids(agent_ctx *ctx, agent_stored_id_cb cb, void *arg, coffer_err *err);

/* The newest published backup for which keep (NULL: every one) returns
 * true, by the database's clock, not the agent's: the greatest LSN among
 * the current cluster's backups (the rule is in stored.c and
 * docs/OPERATIONS.md, "Clocks"). id (COFFER_MANIFEST_ID_SIZE bytes) gets
 * "" when there is none. Reads and verifies the candidates' manifests. */
typedef bool (*agent_stored_keep_cb)(const char *backup_id, void *arg);
int agent_stored_latest(
    agent_ctx *ctx, agent_stored_keep_cb keep, void *keep_arg, char *id, coffer_err *err);

/* Resolves "latest" (agent_stored_latest) or checks an id, reads
 * its manifest and checks the signature (ctx needs AGENT_NEED_VERIFY), the
 * format version and that it belongs to this service. */
int agent_stored_manifest(
    agent_ctx *ctx, const char *id_or_latest, coffer_manifest **out, coffer_err *err);

/* Streams the plaintext into out (a chain the caller owns and which this
 * finishes), then compares sizes and digests with m: COFFER_ECORRUPT names
 * which one differs. Sealed chunks are authenticated before anything
 * reaches out, so out never sees forged bytes; a digest mismatch at the end
 * means a whole, authentic object that is not the one the manifest names. */
int agent_stored_read(
    agent_ctx *ctx, const coffer_manifest *m, coffer_filter *out, coffer_err *err);

/* The same; AGENT_STORED_FILES_PROVE skips the whole-plaintext digest for
 * a caller that proves every byte itself: the physical unpacker checks
 * each entry's path and size against the signed manifest and each file's
 * own SHA-256, and the sealed chunks are authenticated either way. The
 * stored-object digest and the plaintext size are still checked. */
#define AGENT_STORED_FILES_PROVE 0x1u
int agent_stored_read_flags(
    agent_ctx *ctx, const coffer_manifest *m, coffer_filter *out, unsigned flags, coffer_err *err);

#endif
