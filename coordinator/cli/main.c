/*
 * coffer: the operator's command line. It holds an operator key and talks to
 * the coordinator's admin endpoint; it never touches a repository.
 */
#include <stdlib.h>

#include "common/cli.h"

static const coffer_cmd operator_cmds[] = {
	{ NULL, NULL, NULL, NULL },
};

static const coffer_cli operator_cli = {
	.prog = "coffer",
	.purpose = "operator command line for the Coffer coordinator",
	.cmds = operator_cmds,
	.footer = "Configuration: -c FILE or $COFFER_CONFIG; see docs/CONFIGURATION.md.\n",
};

int
main(int argc, char **argv)
{
	return (coffer_cli_main(&operator_cli, argc, argv));
}
