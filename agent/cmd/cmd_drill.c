/*
 * coffer-agent drill -c RUNNER.conf --service S [--backup ID|latest]
 *     [--repo primary|dr] [--id N] [--assert SQL ...]
 *     [--freshness-query SQL --freshness-max-lag DURATION] [--rto DURATION]
 *     [--production-system-id ID ...] [--keep-sandbox] [--output json]
 * One restore drill now, on a drill runner, without a coordinator: the same
 * code the daemon runs for a RunDrill command (agent/restore/drill.h). Prints every
 * check and exits 0 when the drill passed, 1 when it failed, and the
 * error's status when it could not be judged.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "agent/cmd/commands.h"
#include "agent/restore/drill.h"
#include "common/base/clock.h"
#include "common/base/log.h"

#define MAX_PROD 64

static void
print_text(const agent_drill_request *req, const agent_drill_result *res)
{
	printf("drill %" PRIu64 " of service %s, backup %s from %s: %s\n", req->drill_id,
	    req->service, res->backup_id[0] != '\0' ? res->backup_id : "-", req->repository,
	    res->ok ? "PASSED" : "FAILED");
	for (size_t i = 0; i < res->n_checks; i++) {
		printf("  %-4s %-14s %s\n", res->checks[i].ok ? "ok" : "FAIL", res->checks[i].name,
		    res->checks[i].detail);
	}
	printf("restore_ms=%" PRId64 " total_ms=%" PRId64 "%s%s\n", res->restore_ms, res->total_ms,
	    res->sandbox_kept ? " sandbox kept: " : "", res->sandbox_kept ? res->sandbox : "");
}

static void
print_json(const agent_drill_request *req, const agent_drill_result *res)
{
	cJSON *o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "drill_id", (double)req->drill_id);
	cJSON_AddStringToObject(o, "service", req->service);
	cJSON_AddStringToObject(o, "backup_id", res->backup_id);
	cJSON_AddStringToObject(o, "repository", req->repository);
	cJSON_AddBoolToObject(o, "ok", res->ok);
	cJSON_AddNumberToObject(o, "restore_ms", (double)res->restore_ms);
	cJSON_AddNumberToObject(o, "total_ms", (double)res->total_ms);
	cJSON_AddStringToObject(o, "failure", res->failure);
	if (res->sandbox_kept) {
		cJSON_AddStringToObject(o, "sandbox", res->sandbox);
	} else {
		cJSON_AddNullToObject(o, "sandbox");
	}
	cJSON *checks = cJSON_AddArrayToObject(o, "checks");
	for (size_t i = 0; i < res->n_checks; i++) {
		cJSON *c = cJSON_CreateObject();
		cJSON_AddStringToObject(c, "name", res->checks[i].name);
		cJSON_AddBoolToObject(c, "ok", res->checks[i].ok);
		cJSON_AddStringToObject(c, "detail", res->checks[i].detail);
		cJSON_AddItemToArray(checks, c);
	}
	char *text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	if (text != NULL) {
		printf("%s\n", text);
	}
	cJSON_free(text);
}

int
agent_cmd_drill(const coffer_cmd *cmd, int argc, char **argv)
{
	agent_drill_request req;
	memset(&req, 0, sizeof(req));
	const char *prod[MAX_PROD];
	if (coffer_opts_take("coffer-agent drill", &argc, argv, "--assert", req.asserts,
	        AGENT_DRILL_MAX_ASSERTS, &req.n_asserts) != 0 ||
	    coffer_opts_take("coffer-agent drill", &argc, argv, "--production-system-id", prod,
	        MAX_PROD, &req.n_production) != 0) {
		return (2);
	}
	req.production_system_ids = prod;
	const char *config = NULL, *service = NULL, *backup = "latest", *repo = "primary";
	const char *id = NULL, *fq = NULL, *flag = NULL, *rto = NULL, *output = NULL;
	bool keep = false, drop = false;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "service", 0, &service, NULL },
		{ "backup", 'b', &backup, NULL },
		{ "repo", 0, &repo, NULL },
		{ "id", 0, &id, NULL },
		{ "freshness-query", 0, &fq, NULL },
		{ "freshness-max-lag", 0, &flag, NULL },
		{ "rto", 0, &rto, NULL },
		{ "keep-sandbox", 0, NULL, &keep },
		/* The default now; still accepted so older scripts run. */
		{ "drop-on-failure", 0, NULL, &drop },
		{ "output", 0, &output, NULL },
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
	if (config == NULL || service == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE and --service S are required"));
	}
	if (strcmp(repo, "primary") != 0 && strcmp(repo, "dr") != 0) {
		return (coffer_cli_usage_error(cmd, "--repo must be primary or dr, not %s", repo));
	}
	if ((fq == NULL) != (flag == NULL)) {
		return (coffer_cli_usage_error(cmd,
		    "--freshness-query and --freshness-max-lag go "
		    "together"));
	}
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not %s", output));
	}
	if (flag != NULL && coffer_duration_parse(flag, 0, &req.freshness_max_lag_ms) != 0) {
		return (coffer_cli_usage_error(cmd,
		    "--freshness-max-lag %s is not a duration (1h, "
		    "30m)",
		    flag));
	}
	if (rto != NULL && coffer_duration_parse(rto, 0, &req.rto_ms) != 0) {
		return (coffer_cli_usage_error(cmd, "--rto %s is not a duration (30m)", rto));
	}
	char *end = NULL;
	/* Without --id, the time makes the sandbox name unique. */
	req.drill_id =
	    id != NULL ? strtoull(id, &end, 10) : (uint64_t)(coffer_clock_now(NULL) / 1000);
	if (id != NULL && (end == id || *end != '\0')) {
		return (coffer_cli_usage_error(cmd, "--id %s is not a number", id));
	}
	req.service = service;
	req.backup = backup;
	req.repository = repo;
	req.freshness_query = fq;
	if (keep && drop) {
		return (
		    coffer_cli_usage_error(cmd, "--keep-sandbox and --drop-on-failure conflict"));
	}
	/* A failed drill's sandbox is a copy of the service's data: dropped
	 * unless asked for, and then only until [drill] keep_sandbox_for. */
	req.drop_on_failure = !keep;
	coffer_err err = { 0 };
	agent_config *cfg = NULL;
	if ((rv = agent_config_load(config, &cfg, &err)) != 0) {
		coffer_err_print("coffer-agent drill", &err);
		return (coffer_err_exit_status(rv));
	}
	coffer_log_init("coffer-agent", cfg->log_level);
	agent_drill_result res;
	rv = agent_drill_run(cfg, &req, &res, &err);
	agent_config_free(cfg);
	if (output != NULL && strcmp(output, "json") == 0) {
		print_json(&req, &res);
	} else {
		print_text(&req, &res);
	}
	if (rv != 0) {
		coffer_err_print("coffer-agent drill", &err);
		return (coffer_err_exit_status(rv));
	}
	return (res.ok ? 0 : 1);
}
