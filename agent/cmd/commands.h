/*
 * coffer-agent's subcommands: one file per command (agent/cmd/cmd_<name>.c), all
 * listed in main.c's table. Each returns a process exit status.
 */
#ifndef COFFER_AGENT_CMD_COMMANDS_H
#define COFFER_AGENT_CMD_COMMANDS_H

#include <stdbool.h>

#include "common/base/cli.h"

/* agent/cmd/cmd_keygen.c: add a key-encryption key to a key ring. */
int agent_cmd_keygen(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_seal.c: seal / unseal stdin to stdout with a key ring. */
int agent_cmd_seal(const coffer_cmd *cmd, int argc, char **argv);
int agent_cmd_unseal(const coffer_cmd *cmd, int argc, char **argv);

/* agent/cmd/cmd_escrow.c: the escrow key pair; escrowing and recovering a ring. */
int agent_cmd_escrow_keygen(const coffer_cmd *cmd, int argc, char **argv);
int agent_cmd_keyring_escrow(const coffer_cmd *cmd, int argc, char **argv);
int agent_cmd_keyring_recover(const coffer_cmd *cmd, int argc, char **argv);

/* agent/cmd/cmd_run.c: the daemon. */
int agent_cmd_run(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_init.c: create the signing key. */
int agent_cmd_init(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_backup.c: one backup now. */
int agent_cmd_backup(const coffer_cmd *cmd, int argc, char **argv);
/* Checks --output text|json and --progress json|tty|off, and sets the
 * process's progress mode: as --progress says, else a line on a terminal.
 * JSON progress shares stderr with the logfmt log, so only an explicit
 * --progress json asks for it. 0, or a usage error's status. */
int agent_cmd_output_progress(
    const coffer_cmd *cmd, const char *output, const char *progress, bool *json);
/* agent/cmd/cmd_read.c: list, verify, cat. */
int agent_cmd_list(const coffer_cmd *cmd, int argc, char **argv);
int agent_cmd_verify(const coffer_cmd *cmd, int argc, char **argv);
int agent_cmd_cat(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_restore.c: restore into a database. */
int agent_cmd_restore(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_drill.c: one restore drill now, on a drill runner. */
int agent_cmd_drill(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_events.c: the outbox's contents. */
int agent_cmd_events(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_flush.c: send the outbox to the coordinator now. */
int agent_cmd_flush(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_check.c: every prerequisite tested for real. */
int agent_cmd_check(const coffer_cmd *cmd, int argc, char **argv);
/* agent/cmd/cmd_wal.c: archive_command and restore_command. */
int agent_cmd_wal_push(const coffer_cmd *cmd, int argc, char **argv);
int agent_cmd_wal_fetch(const coffer_cmd *cmd, int argc, char **argv);

#endif
