/*
 * coffer-agent flush -c FILE [--timeout 30s]: sends everything in the outbox
 * to the coordinator now, in the foreground, and exits 0 once it is all
 * acked; 1 with the reason when the coordinator refuses the agent, or is
 * still unreachable when the timeout runs out (the events then stay in the
 * outbox for the daemon). For operators before maintenance, and for tests.
 */
#include <inttypes.h>
#include <stdio.h>

#include "agent/cmd/commands.h"
#include "agent/report/sender.h"
#include "common/base/clock.h"
#include "common/base/log.h"

int
agent_cmd_flush(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *timeout = "30s";
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "timeout", 0, &timeout, NULL },
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
	int64_t timeout_ms = 0;
	if (coffer_duration_parse(timeout, 0, &timeout_ms) != 0 || timeout_ms <= 0) {
		return (coffer_cli_usage_error(
		    cmd, "--timeout must be a duration like 30s or 5m, not '%s'", timeout));
	}

	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, NULL, AGENT_NEED_SIGN | AGENT_NEED_OUTBOX, &ctx, &err);
	if (rv != 0) {
		coffer_err_print("coffer-agent flush", &err);
		return (coffer_err_exit_status(rv));
	}
	/* A one-shot reports its outcome in one line; retries in between are
	 * noise unless the operator asked for debug. */
	coffer_log_init("coffer-agent",
	    ctx->cfg->log_level == COFFER_LOG_DEBUG ? COFFER_LOG_DEBUG : COFFER_LOG_ERROR);
	uint64_t acked = 0;
	rv = agent_sender_flush(ctx, timeout_ms, &acked, &err);
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent flush", &err);
		return (rv == COFFER_EINVAL ? 2 : 1);
	}
	printf("%" PRIu64 " events acked; outbox flushed\n", acked);
	return (fflush(stdout) == 0 ? 0 : 1);
}
