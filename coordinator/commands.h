/*
 * coffer-coordinator's subcommands: one file per command
 * (coordinator/cmd_<name>.c), listed in main.c's table.
 */
#ifndef COFFER_COORDINATOR_COMMANDS_H
#define COFFER_COORDINATOR_COMMANDS_H

#include "common/cli.h"

#endif
