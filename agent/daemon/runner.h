/*
 * The drill runner's daemon (`coffer-agent run` with [agent] role =
 * drill_runner): it polls the coordinator like any agent, takes RunDrill
 * commands, runs them one at a time on the libuv thread pool
 * (agent/restore/drill.h), and reports each as a DrillResult and a CommandDone
 * event through the durable outbox, so a result survives a crash and is
 * delivered exactly once. A drill cancelled by SIGTERM reports nothing:
 * its command stays owed and is handed out again.
 */
#ifndef COFFER_AGENT_DAEMON_RUNNER_H
#define COFFER_AGENT_DAEMON_RUNNER_H

#include "agent/context/context.h"
#include "common/base/error.h"

/* ctx needs AGENT_NEED_OUTBOX and a [coordinator]. Returns after SIGTERM or
 * SIGINT, once a running drill has stopped. */
int agent_runner_run(agent_ctx *ctx, coffer_err *err);

#endif
