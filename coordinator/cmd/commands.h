/*
 * coffer-coordinator's subcommands: one file per command
 * (coordinator/cmd/cmd_<name>.c), listed in main.c's table.
 */
#ifndef COFFER_COORDINATOR_CMD_COMMANDS_H
#define COFFER_COORDINATOR_CMD_COMMANDS_H

#include "common/base/cli.h"

/* coordinator/cmd/cmd_migrate.c: apply pending catalog migrations. */
int coord_cmd_migrate(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_audit.c: verify the audit chain; create an audit key. */
int coord_cmd_audit_verify(const coffer_cmd *cmd, int argc, char **argv);
int coord_cmd_audit_keygen(const coffer_cmd *cmd, int argc, char **argv);
int coord_cmd_attest_keygen(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_check_config.c: validate the config and every service policy. */
int coord_cmd_check_config(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_check.c: every prerequisite tested for real. */
int coord_cmd_check(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_run.c: the daemon. */
int coord_cmd_run(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_agents.c: local enrollment (actor "local-admin"). */
int coord_cmd_agents_enroll(const coffer_cmd *cmd, int argc, char **argv);
int coord_cmd_agents_list(const coffer_cmd *cmd, int argc, char **argv);
int coord_cmd_agents_revoke(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_rebuild.c: the catalog's backups from a repository alone. */
int coord_cmd_rebuild(const coffer_cmd *cmd, int argc, char **argv);
/* coordinator/cmd/cmd_s3policy.c: the primary bucket's policy; credentials to disable. */
int coord_cmd_s3policy(const coffer_cmd *cmd, int argc, char **argv);

#endif
