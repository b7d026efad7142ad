/*
 * coffer-agent run -c FILE: the daemon (see agent/daemon.h).
 */
#include "agent/commands.h"
#include "agent/daemon.h"
#include "common/log.h"

int
agent_cmd_run(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0)
		return rv > 0 ? 0 : 2;
	if (npos > 0)
		return coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]);
	if (config == NULL)
		return coffer_cli_usage_error(cmd, "-c FILE is required");
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, NULL,
	    AGENT_NEED_KEYRING | AGENT_NEED_SIGN | AGENT_NEED_REPO_WRITE | AGENT_NEED_OUTBOX, &ctx,
	    &err);
	if (rv == 0) {
		coffer_log_init("coffer-agent", ctx->cfg->log_level);
		rv = agent_daemon_run(ctx, &err);
	}
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent run", &err);
		return coffer_err_exit_status(rv);
	}
	return 0;
}
