/*
 * The state directory's health ([agent] state_dir: the outbox, the envelope
 * seq, the locks), as the heartbeat reports it: how many bytes are free and
 * whether the last durable write there failed for lack of space.
 *
 * What it promises:
 * - agent_statedir_note records the outcome of one durable write. Only a
 *   success (0) or COFFER_ENOSPC (ENOSPC, EDQUOT) change the record; any
 *   other failure says nothing about space and is left to its caller.
 * - The record is per process (the daemon's heartbeats speak for the
 *   daemon's writes; a `wal-push` that fails for space shows in the free
 *   bytes, not here) and lives in memory only: on a full disk nothing else
 *   could hold it.
 * - A change is logged once: a warning when writes start failing for lack
 *   of space, one line when they succeed again; never once per write.
 *
 * Threads: any; the record is under a mutex.
 */
#ifndef COFFER_AGENT_OUTBOX_STATEDIR_H
#define COFFER_AGENT_OUTBOX_STATEDIR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"

/* Records the outcome rc (0 or a COFFER_E* code) of a durable write to the
 * state directory dir; what names the write for the log ("outbox append"). */
void agent_statedir_note(const char *dir, const char *what, int rc);

/* Whether the last durable write that succeeded or failed for lack of
 * space failed; *since_ms (may be NULL) gets when the failures began (agent
 * clock, 0 when not failing). */
bool agent_statedir_nospace(int64_t *since_ms);

/* Bytes an unprivileged writer may still use on the file system holding
 * dir (statvfs f_bavail * f_frsize). */
int agent_statedir_free(const char *dir, uint64_t *free_bytes, coffer_err *err);

#endif
