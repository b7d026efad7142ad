/*
 * coffer-agent backup -c FILE [--kind logical|physical] [--output json]
 * [--progress json|tty|off]: one backup now, in the foreground, with
 * progress on a terminal (or as JSON lines on stderr); prints the backup id
 * on stdout, or with --output json the backup object (as `list` shows it). SIGINT/SIGTERM stop pg_dump and record the backup as failed:
 * nothing half-written is ever published. The schedule in the config is
 * still required (agent_config refuses a config without one), so a manual
 * run is always an extra backup, never the only one.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "agent/backup/backup.h"
#include "agent/backup/physical.h"
#include "agent/cmd/commands.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/objects.h"
#include "common/stream/progress.h"

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
agent_cmd_output_progress(
    const coffer_cmd *cmd, const char *output, const char *progress, bool *json)
{
	*json = false;
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not '%s'", output));
	}
	*json = output != NULL && strcmp(output, "json") == 0;
	coffer_progress_mode mode = COFFER_PROGRESS_AUTO;
	if (progress != NULL && coffer_progress_mode_parse(progress, &mode) != 0) {
		return (coffer_cli_usage_error(
		    cmd, "--progress must be json, tty or off, not '%s'", progress));
	}
	coffer_progress_set_mode(mode);
	return (0);
}

/* The backup object (common/base/objects.h, docs/JSON.md), as `list
 * --output json` prints it, read back from its signed manifest. */
static void
print_backup_json(agent_ctx *ctx, const agent_backup_result *res)
{
	coffer_manifest *m = NULL;
	coffer_err err = { 0 };
	coffer_obj_backup b;
	char sysid[24];
	coffer_obj_backup_init(&b);
	b.id = res->backup_id;
	/* Every backup is whole: none has a parent to restore first. */
	b.parent = COFFER_OBJ_NULL_TEXT;
	if (agent_stored_manifest(ctx, res->backup_id, &m, &err) == 0) {
		b.service = m->service;
		b.kind = coffer_manifest_kind_name(m->kind);
		b.agent = m->agent;
		b.started_at_ms = m->started_at;
		b.finished_at_ms = m->finished_at;
		b.duration_ms = m->finished_at - m->started_at;
		b.plaintext_bytes = (int64_t)m->plaintext_bytes;
		b.stored_bytes = (int64_t)m->stored_bytes;
		b.key_id = m->key_id;
		b.manifest = "valid";
		if (m->kind == COFFER_MANIFEST_PHYSICAL) {
			snprintf(
			    sysid, sizeof(sysid), "%llu", (unsigned long long)m->system_identifier);
			b.system_identifier = sysid;
			b.timeline = (int64_t)m->timeline;
			b.lsn_start = m->lsn_start;
			b.lsn_stop = m->lsn_stop;
		} else {
			b.tables = (int64_t)m->ntables;
		}
	} else {
		b.plaintext_bytes = (int64_t)res->plain_bytes;
		b.stored_bytes = (int64_t)res->stored_bytes;
		b.duration_ms = res->duration_ms;
		b.manifest = "invalid";
		b.error = err.msg;
	}
	cJSON *o = coffer_obj_backup_json(&b);
	char *text = cJSON_PrintUnformatted(o);
	printf("%s\n", text != NULL ? text : "{}");
	free(text);
	cJSON_Delete(o);
	coffer_manifest_free(m);
}

int
agent_cmd_backup(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *kind = "logical", *output = NULL, *progress = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "kind", 0, &kind, NULL },
		{ "output", 'o', &output, NULL },
		{ "progress", 0, &progress, NULL },
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
	bool json = false;
	if ((rv = agent_cmd_output_progress(cmd, output, progress, &json)) != 0) {
		return (rv);
	}

	coffer_err err = { 0 };
	/* --kind physical: a base backup (agent/backup/physical.c), same request and result. */
	bool physical = strcmp(kind, "physical") == 0;
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, NULL,
	    AGENT_NEED_KEYRING | AGENT_NEED_SIGN | AGENT_NEED_REPO_WRITE | AGENT_NEED_OUTBOX |
	        (json ? AGENT_NEED_VERIFY : 0),
	    &ctx, &err);
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
			.progress = coffer_progress_wanted(),
		};
		agent_backup_result res;
		rv = physical ? agent_physical_backup(ctx, &req, &res, &err)
		              : agent_backup_logical(ctx, &req, &res, &err);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		running_cancel = NULL;
		if (rv == 0 && json) {
			print_backup_json(ctx, &res);
		} else if (rv == 0) {
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
