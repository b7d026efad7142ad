/*
 * coffer-agent run -c FILE: the daemon (see agent/daemon/daemon.h), or a drill
 * runner's (agent/daemon/runner.h) when [agent] role = drill_runner.
 */
#include "agent/cmd/commands.h"
#include "agent/daemon/daemon.h"
#include "agent/daemon/runner.h"
#include "common/base/log.h"

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
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	coffer_err err = { 0 };
	/* A drill runner has no key ring and never writes backups. */
	agent_config *peek = NULL;
	rv = agent_config_load(config, &peek, &err);
	bool runner = rv == 0 && peek->drill_runner;
	agent_config_free(peek);
	agent_ctx *ctx = NULL;
	if (rv == 0) {
		rv = agent_ctx_open(config, NULL,
		    runner ? AGENT_NEED_SIGN | AGENT_NEED_OUTBOX
		           : AGENT_NEED_KEYRING | AGENT_NEED_SIGN | AGENT_NEED_REPO_WRITE |
		            AGENT_NEED_OUTBOX,
		    &ctx, &err);
	}
	if (rv == 0) {
		coffer_log_init("coffer-agent", ctx->cfg->log_level);
		rv = runner ? agent_runner_run(ctx, &err) : agent_daemon_run(ctx, &err);
	}
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent run", &err);
		return (coffer_err_exit_status(rv));
	}
	return (0);
}
