/*
 * coffer-agent restore -c FILE --backup ID|latest --target-db NAME
 *     [--target-conninfo CI] [--jobs N] [--force] [--repo primary|dr]
 * Restores a logical backup into a new database and proves it by comparing
 * row counts with the manifest. Refuses the service's own source database
 * always, and a database with tables unless --force.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cmd/commands.h"
#include "agent/restore/physical_restore.h"
#include "agent/restore/restore.h"
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

/* Tablespaces one --physical restore may move. */
#define AGENT_RESTORE_MAX_TABLESPACES 64

int
agent_cmd_restore(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *repo = NULL, *backup = NULL, *target_db = NULL;
	const char *target_ci = NULL, *jobs = NULL, *target_time = NULL, *pgdata = NULL;
	bool force = false, physical = false, start = false;
	const char *port = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "repo", 0, &repo, NULL },
		{ "backup", 'b', &backup, NULL },
		{ "target-db", 0, &target_db, NULL },
		{ "target-conninfo", 0, &target_ci, NULL },
		{ "jobs", 'j', &jobs, NULL },
		{ "force", 0, NULL, &force },
		{ "physical", 0, NULL, &physical },
		{ "target-time", 0, &target_time, NULL },
		{ "pgdata", 0, &pgdata, NULL },
		{ "port", 0, &port, NULL },   /* physical: the restored server's port */
		{ "start", 0, NULL, &start }, /* physical: start it and wait for recovery */
		{ NULL, 0, NULL, NULL },
	};
	/* Paths may hold anything, so --tablespace-map is taken out first. */
	const char *ts_map[AGENT_RESTORE_MAX_TABLESPACES];
	size_t n_ts_map = 0;
	if (coffer_opts_take("coffer-agent restore", &argc, argv, "--tablespace-map", ts_map,
	        AGENT_RESTORE_MAX_TABLESPACES, &n_ts_map) != 0) {
		return (2);
	}
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (n_ts_map > 0 && !physical && pgdata == NULL) {
		return (coffer_cli_usage_error(cmd, "--tablespace-map is for --physical restores"));
	}
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	coffer_err err = { 0 };
	/* --physical: lay out a data directory (agent/restore/physical_restore.c). */
	if (physical || target_time != NULL || pgdata != NULL) {
		return (agent_cmd_restore_physical(
		    config, repo, backup, target_time, pgdata, port, ts_map, n_ts_map, start));
	}
	if (backup == NULL || target_db == NULL) {
		return (coffer_cli_usage_error(
		    cmd, "--backup ID|latest and --target-db NAME are required"));
	}
	long njobs = 1;
	if (jobs != NULL) {
		char *end = NULL;
		njobs = strtol(jobs, &end, 10);
		if (*jobs == '\0' || *end != '\0' || njobs < 1 || njobs > 64) {
			return (coffer_cli_usage_error(
			    cmd, "--jobs must be a number from 1 to 64, not '%s'", jobs));
		}
	}
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, repo,
	    AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO | AGENT_NEED_OUTBOX, &ctx,
	    &err);
	if (rv != 0) {
		coffer_err_print("coffer-agent restore", &err);
		return (coffer_err_exit_status(rv));
	}
	coffer_log_init("coffer-agent", ctx->cfg->log_level);
	agent_cancel *cancel = NULL;
	rv = agent_cancel_new(&cancel, &err);
	if (rv == 0) {
		running_cancel = cancel;
		signal(SIGINT, on_stop_signal);
		signal(SIGTERM, on_stop_signal);
		agent_restore_request req = {
			.backup = backup,
			.target_db = target_db,
			.target_conninfo = target_ci,
			.jobs = (int)njobs,
			.force = force,
			.progress = isatty(STDERR_FILENO) == 1,
			.cancel = cancel,
		};
		agent_restore_result res;
		rv = agent_restore_logical(ctx, &req, &res, &err);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		running_cancel = NULL;
		if (rv == 0) {
			printf(
			    "restored backup %s into %s: %zu tables, %llu rows, counts match the "
			    "manifest (pg_restore %lld ms, total %lld ms)\n",
			    res.backup_id, target_db, res.tables, (unsigned long long)res.rows,
			    (long long)res.restore_ms, (long long)res.duration_ms);
		}
	}
	agent_cancel_free(cancel);
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent restore", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
