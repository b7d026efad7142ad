/*
 * The agent daemon: one libuv loop that owns the schedule and the signals,
 * and one backup at a time on a worker thread (libpq, pg_dump and the crypto
 * all block, so none of it runs on the loop). SIGTERM or SIGINT cancels a
 * running backup -- it ends as a recorded failure, never half-published --
 * waits for it to finish, and exits.
 */
#ifndef COFFER_AGENT_DAEMON_DAEMON_H
#define COFFER_AGENT_DAEMON_DAEMON_H

#include "agent/context/context.h"

/* Runs until a stop signal. ctx needs everything agent_backup_logical
 * needs. Returns 0 after a clean stop. */
int agent_daemon_run(agent_ctx *ctx, coffer_err *err);

#endif
