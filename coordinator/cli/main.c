/*
 * coffer: the operator's command line. It holds an operator key and talks to
 * the coordinator's admin endpoint; it never touches a repository.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/base/cli.h"
#include "common/base/nocore.h"
#include "coordinator/cli/client.h"

static const coffer_cmd operator_cmds[] = {
	{ "init", "--out KEYFILE", "create an operator key and print its public key",
	    coord_cli_init },
	{ "status", "[-c FILE] [--service S] [--output json]",
	    "last successful backup, its age, size and duration, and agent contact per service",
	    coord_cli_status },
	{ "backups list", "[-c FILE] --service S [--limit N] [--output json]",
	    "a service's backups, newest first", coord_cli_backups_list },
	{ "backup run", "[-c FILE] --service S [--kind logical|physical] [--output json]",
	    "ask the service's agent for a backup now", coord_cli_backup_run },
	{ "agents enroll",
	    "[-c FILE] --service S [--drill-runner [--service S2 ...]] --agent NAME --pubkey FILE "
	    "[--output json]",
	    "enroll an agent's public key for one service, or a drill runner for the services it "
	    "drills",
	    coord_cli_agents_enroll },
	{ "agents list", "[-c FILE] [--output json]", "list enrolled agents",
	    coord_cli_agents_list },
	{ "agents revoke", "[-c FILE] NAME [--output json]", "revoke an agent's enrollment",
	    coord_cli_agents_revoke },
	{ "audit list", "[-c FILE] [--since TIME] [--limit N] [--output json]",
	    "audit log rows (TIME: RFC 3339, or a duration back from now such as 24h)",
	    coord_cli_audit_list },
	{ "audit verify", "[-c FILE] [--output json]",
	    "check the audit log's HMAC chain; exit 1 naming the first broken row",
	    coord_cli_audit_verify },
	{ "audit resume-export", "[-c FILE] --reason TEXT [--output json]",
	    "after an exported audit head stopped holding and you have looked: export again from "
	    "the chain as it is (audited with the reason)",
	    coord_cli_audit_resume_export },
	{ "hold add", "[-c FILE] --backup ID --reason TEXT",
	    "place a legal hold: retention never deletes the backup while it holds",
	    coord_cli_hold_add },
	{ "hold remove", "[-c FILE] --backup ID", "release a legal hold", coord_cli_hold_remove },
	{ "holds list", "[-c FILE] [--service S] [--output json]", "active legal holds",
	    coord_cli_holds_list },
	{ "retention plan", "[-c FILE] --service S [--output json]",
	    "what retention would keep, mark or delete next, and why", coord_cli_retention_plan },
	{ "alerts list", "[-c FILE] [--limit N] [--output json]",
	    "open and recent alerts with their delivery state", coord_cli_alerts_list },
	{ "drill run", "[-c FILE] --service S [--output json]",
	    "start a restore drill of the service now (its drill runner restores and checks it)",
	    coord_cli_drill_run },
	{ "drill list", "[-c FILE] [--service S] [--limit N] [--output json]",
	    "restore drills, newest first: result, restore time against the RTO, failed check",
	    coord_cli_drill_list },
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
	/* The operator key is read by most commands: no core file with it. */
	coffer_err err = { 0 };
	if (coffer_nocore_apply(&err) != 0) {
		fprintf(stderr, "coffer: %s\n", err.msg);
		return (1);
	}
	return (coffer_cli_main(&operator_cli, argc, argv));
}
