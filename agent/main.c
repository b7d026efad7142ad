/*
 * coffer-agent: runs beside one service's database, takes its backups, and
 * reports to the coordinator. This file only dispatches; each command lives
 * in its own agent/cmd_<name>.c.
 */
#include <stdlib.h>

#include "agent/commands.h"

static const coffer_cmd agent_cmds[] = {
	{ NULL, NULL, NULL, NULL },
};

static const coffer_cli agent_cli = {
	.prog = "coffer-agent",
	.purpose = "backs up one service's PostgreSQL database into an encrypted repository",
	.cmds = agent_cmds,
	.footer = "Every command takes -c FILE for its config; see docs/CONFIGURATION.md.\n",
};

int
main(int argc, char **argv)
{
	return (coffer_cli_main(&agent_cli, argc, argv));
}
