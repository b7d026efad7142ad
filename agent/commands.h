/*
 * coffer-agent's subcommands: one file per command (agent/cmd_<name>.c), all
 * listed in main.c's table. Each returns a process exit status.
 */
#ifndef COFFER_AGENT_COMMANDS_H
#define COFFER_AGENT_COMMANDS_H

#include "common/cli.h"

#endif
