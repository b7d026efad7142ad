/*
 * coffer-coordinator: owns policy for the fleet. This file only dispatches;
 * each command lives in its own coordinator/cmd/cmd_<name>.c.
 */
#include <stdlib.h>

#include "common/base/log.h"
#include "common/base/nocore.h"
#include "coordinator/cmd/commands.h"

static const coffer_cmd coordinator_cmds[] = {
	{ "run", "-c FILE", "serve agents: apply their events, refuse what is not theirs",
	    coord_cmd_run },
	{ "agents enroll",
	    "-c FILE --service S [--drill-runner [--service S2 ...]] --agent NAME --pubkey FILE",
	    "enroll an agent's public key for one service, or a drill runner for the services "
	    "it drills",
	    coord_cmd_agents_enroll },
	{ "agents list", "-c FILE [--output json]", "list enrolled agents", coord_cmd_agents_list },
	{ "agents revoke", "-c FILE NAME", "revoke an agent's enrollment",
	    coord_cmd_agents_revoke },
	{ "migrate", "-c FILE [--output json]", "apply pending catalog schema migrations",
	    coord_cmd_migrate },
	{ "check-config", "-c FILE [--output json]",
	    "validate the config and every service's policy without starting",
	    coord_cmd_check_config },
	{ "check", "-c FILE [--max-skew 120s] [--output json]",
	    "test every prerequisite for real (catalog, migrations, role, repositories, TLS, "
	    "listeners, alerts, clock); exit 0 ok, 1 warning, 2 critical",
	    coord_cmd_check },
	{ "audit-verify", "-c FILE [--output json]",
	    "check the audit log's HMAC chain and name the first broken row",
	    coord_cmd_audit_verify },
	{ "rebuild-catalog", "-c FILE --repo primary|dr [--output json]",
	    "recover the catalog's backups from a repository alone, refusing any that is not "
	    "attested, signed and intact",
	    coord_cmd_rebuild },
	{ "s3-policy", "-c FILE [--dialect aws|radosgw] | -c FILE --revoked [--output json]",
	    "print the primary bucket's policy (each service's agents confined to their "
	    "prefix), or the revoked agents' credentials to disable",
	    coord_cmd_s3policy },
	{ "audit-keygen", "--out FILE", "create a new audit HMAC key file (mode 0600)",
	    coord_cmd_audit_keygen },
	{ "attest-keygen", "--out FILE",
	    "create the Ed25519 attestation key (mode 0600); prints its public key",
	    coord_cmd_attest_keygen },
	{ NULL, NULL, NULL, NULL },
};

static const coffer_cli coordinator_cli = {
	.prog = "coffer-coordinator",
	.purpose = "enforces backup policy, ownership, retention, DR copies and alerts for a fleet",
	.cmds = coordinator_cmds,
	.footer = "Every command takes -c FILE for its config; see docs/CONFIGURATION.md.\n",
};

int
main(int argc, char **argv)
{
	/* Until a command reads its config's log_level. */
	coffer_log_init("coffer-coordinator", COFFER_LOG_INFO);
	/* Every command may hold keys or credentials: no core file, and no
	 * peeking at this process by others of its user, before any is read. */
	coffer_err err = { 0 };
	if (coffer_nocore_apply(&err) != 0) {
		coffer_log_error("cannot disable core dumps", "error=\"%s\"", err.msg);
		return (1);
	}
	return (coffer_cli_main(&coordinator_cli, argc, argv));
}
