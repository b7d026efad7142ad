/*
 * coffer-agent backup -c FILE [--kind logical|physical]: one backup now, in
 * the foreground, with progress on a terminal; prints the backup id on
 * stdout. SIGINT/SIGTERM stop pg_dump and record the backup as failed:
 * nothing half-written is ever published. The schedule in the config is
 * still required (agent_config refuses a config without one), so a manual
 * run is always an extra backup, never the only one.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/backup/backup.h"
#include "agent/backup/physical.h"
#include "agent/cmd/commands.h"
#include "common/base/log.h"

static agent_cancel *running_cancel;

static void
on_stop_signal(int sig)
{
	(void)sig;
	if (running_cancel != NULL) {
		agent_cancel_trigger(running_cancel);
	}
}

int
agent_cmd_backup(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *kind = "logical";
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "kind", 0, &kind, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	if (strcmp(kind, "logical") != 0 && strcmp(kind, "physical") != 0) {
		return (coffer_cli_usage_error(
		    cmd, "--kind must be logical or physical, not '%s'", kind));
	}

	coffer_err err = { 0 };
	/* --kind physical: a base backup (agent/backup/physical.c), same request and result. */
	bool physical = strcmp(kind, "physical") == 0;
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, NULL,
	    AGENT_NEED_KEYRING | AGENT_NEED_SIGN | AGENT_NEED_REPO_WRITE | AGENT_NEED_OUTBOX, &ctx,
	    &err);
	if (rv != 0) {
		coffer_err_print("coffer-agent backup", &err);
		return (coffer_err_exit_status(rv));
	}
	coffer_log_init("coffer-agent", ctx->cfg->log_level);
	agent_cancel *cancel = NULL;
	rv = agent_cancel_new(&cancel, &err);
	if (rv == 0) {
		running_cancel = cancel;
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_stop_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		agent_backup_request req = {
			.trigger = COFFER__V1__TRIGGER__TRIGGER_CLI,
			.cancel = cancel,
			.progress = isatty(STDERR_FILENO) == 1,
		};
		agent_backup_result res;
		rv = physical ? agent_physical_backup(ctx, &req, &res, &err)
		              : agent_backup_logical(ctx, &req, &res, &err);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		running_cancel = NULL;
		if (rv == 0) {
			printf("%s\n", res.backup_id);
		}
	}
	agent_cancel_free(cancel);
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent backup", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
