/*
 * The `coffer` CLI's shared pieces: cli.conf, one signed admin request and
 * its reply, and aligned text tables. The CLI links only coffer_common: it
 * builds AdminEnvelopes itself (common/wire/adminmsg.h) and never includes the
 * coordinator's modules.
 *
 * cli.conf:
 *   [coffer]
 *   url = tls+tcp://coordinator.internal:7444   the coordinator's admin_listen
 *   operator = alice                            [operator.alice] there
 *   key = ~/.config/coffer/alice.key            from `coffer init`
 *   ca = ..., cert = ..., key_tls = ...         mutual TLS (tls+tcp:// only)
 *   server_name = ...                           optional; default: url's host
 *   timeout = 30s                               optional
 *   insecure = false                            plain tcp:// off loopback
 * Its path is -c FILE, else $COFFER_CONFIG. A leading "~/" in a path is
 * $HOME.
 */
#ifndef COFFER_COORDINATOR_CLI_CLIENT_H
#define COFFER_COORDINATOR_CLI_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "common/base/cli.h"
#include "common/base/error.h"
#include "common/wire/adminmsg.h"

/* The program name for error lines. */
#define COORD_CLI_PROG "coffer"

/* Command entry points (one file per group), listed in cli/main.c. */
int coord_cli_init(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_status(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_backups_list(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_backup_run(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_agents_enroll(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_agents_list(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_agents_revoke(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_audit_list(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_audit_verify(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_audit_resume_export(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_hold_add(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_hold_remove(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_holds_list(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_retention_plan(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_alerts_list(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_drill_run(const coffer_cmd *cmd, int argc, char **argv);
int coord_cli_drill_list(const coffer_cmd *cmd, int argc, char **argv);

/* -c FILE, else $COFFER_CONFIG, else NULL. */
const char *coord_cli_config_path(const char *opt);

/*
 * Sends command with args to the coordinator named by the config at
 * config_path and waits for the reply. On success *json_text (malloc'd, the
 * caller frees it) is the coordinator's JSON and *result (may be NULL to
 * skip) its parse. A refusal is COFFER_EREFUSED (or COFFER_EAUTH for an
 * identity problem, COFFER_EUNAVAIL for a catalog outage) with err holding
 * the coordinator's line; a transport failure is COFFER_EUNAVAIL.
 */
int coord_cli_request(const char *config_path, const char *command, const coffer_adminmsg_arg *args,
    size_t nargs, char **json_text, cJSON **result, coffer_err *err);

/* Prints err as one line on stderr ("coffer <cmd>: ...") and returns the
 * exit status (1, or 2 for configuration problems). */
int coord_cli_fail(const coffer_cmd *cmd, const coffer_err *err);

/* Checks --output: NULL or "text" -> false, "json" -> true; else -1 after a
 * usage error (the caller returns 2). */
int coord_cli_output_json(const coffer_cmd *cmd, const char *output, bool *json);

/* Parses a command that takes options only: false when the command is
 * over (--help printed, or a usage error said), with its exit status in
 * *status. */
bool coord_cli_flags(
    const coffer_cmd *cmd, const coffer_opt *opts, int argc, char **argv, int *status);

/* An aligned text table: rows are buffered (bounded by the listing limits
 * of the coordinator) and printed with each column as wide as its widest
 * cell. */
typedef struct coord_cli_table coord_cli_table;
coord_cli_table *coord_cli_table_new(size_t ncols, const char *const *headers);
/* Adds a row of ncols cells (copied; NULL prints "-"). */
void coord_cli_table_row(coord_cli_table *t, const char *const *cells);
void coord_cli_table_print(coord_cli_table *t);
void coord_cli_table_free(coord_cli_table *t);

/* Field helpers for rendering replies: text of a member ("-" when absent or
 * null), numbers as decimal text into buf. */
const char *coord_cli_str(const cJSON *o, const char *name);
const char *coord_cli_num(const cJSON *o, const char *name, char *buf, size_t size);
/* 1536 -> "1.5 KiB"; "-" for absent. */
const char *coord_cli_bytes(const cJSON *o, const char *name, char *buf, size_t size);
/* seconds / milliseconds -> "3h12m", "45s", "850ms"; "-" for absent. */
const char *coord_cli_age(const cJSON *o, const char *name, char *buf, size_t size);
const char *coord_cli_ms(const cJSON *o, const char *name, char *buf, size_t size);

#endif
