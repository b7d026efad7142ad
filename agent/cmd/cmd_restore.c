/*
 * coffer-agent restore -c FILE (--backup ID|latest | --before TIME)
 *     --target-db NAME [--target-conninfo CI] [--jobs N] [--force]
 *     [--repo primary|dr] [--dry-run] [--output json]
 * Restores a logical backup into a new database and proves it by comparing
 * row counts with the manifest. Refuses the service's own source database
 * always, and a database with tables unless --force. --before picks the
 * newest logical backup that completed before TIME, by its signed
 * manifest. With --physical (or any recovery target) the physical restore
 * of agent/restore/physical_restore.c runs instead.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cmd/commands.h"
#include "agent/restore/physical_restore.h"
#include "agent/restore/restore.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/stream/progress.h"

#include <cjson/cJSON.h>

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

/* --before: the newest logical backup whose signed manifest says it
 * finished before the time. */
typedef struct before_pick {
	agent_ctx *ctx;
	int64_t before;
	char id[COFFER_MANIFEST_ID_SIZE];
	int64_t finished;
	char oldest[COFFER_MANIFEST_ID_SIZE];
	int64_t oldest_finished;
} before_pick;

static int
consider_logical(const char *id, void *arg)
{
	before_pick *p = arg;
	coffer_manifest_kind kind;
	if (coffer_manifest_id_check(id, &kind, NULL) != 0 || kind != COFFER_MANIFEST_LOGICAL) {
		return (0);
	}
	coffer_manifest *m = NULL;
	coffer_err e = { 0 };
	if (agent_stored_manifest(p->ctx, id, &m, &e) != 0) {
		coffer_log_warn("backup skipped: its manifest does not verify",
		    "backup=%s error=\"%s\"", id, e.msg);
		return (0);
	}
	if (p->oldest[0] == '\0' || m->finished_at < p->oldest_finished) {
		snprintf(p->oldest, sizeof(p->oldest), "%s", id);
		p->oldest_finished = m->finished_at;
	}
	if (m->finished_at < p->before && (p->id[0] == '\0' || m->finished_at > p->finished)) {
		snprintf(p->id, sizeof(p->id), "%s", id);
		p->finished = m->finished_at;
	}
	coffer_manifest_free(m);
	return (0);
}

static int
pick_before(agent_ctx *ctx, const char *before, char id[COFFER_MANIFEST_ID_SIZE], coffer_err *err)
{
	before_pick p = { .ctx = ctx };
	if (coffer_time_parse(before, &p.before) != 0) {
		return (coffer_err_set(err, COFFER_EINVAL, "--before '%s' is not a time", before),
		    coffer_err_hint(err, "write it like 2026-11-24T17:05:00Z"));
	}
	int rc = agent_stored_ids(ctx, consider_logical, &p, err);
	if (rc != 0) {
		return (rc);
	}
	if (p.id[0] == '\0') {
		char oldest[40] = "";
		if (p.oldest[0] != '\0') {
			coffer_time_format(oldest, sizeof(oldest), p.oldest_finished);
		}
		return (coffer_err_set(err, COFFER_ENOENT,
		            "no logical backup of service %s completed before %s; %s%s%s%s",
		            ctx->cfg->service, before,
		            p.oldest[0] != '\0' ? "the oldest is " : "there is none in repository ",
		            p.oldest[0] != '\0' ? p.oldest : ctx->repo_name,
		            p.oldest[0] != '\0' ? ", completed at " : "", oldest),
		    coffer_err_hint(err, "pick a later time (`coffer-agent list` shows them all)"));
	}
	snprintf(id, COFFER_MANIFEST_ID_SIZE, "%s", p.id);
	return (0);
}

/* The logical plan: which backup, how many bytes, and how long at the rate
 * the backup was written (the agent knows no drill results). */
static int
logical_dry_run(
    agent_ctx *ctx, const char *backup, const char *target_db, bool json, coffer_err *err)
{
	coffer_manifest *m = NULL;
	int rc = agent_stored_manifest(ctx, backup, &m, err);
	if (rc != 0) {
		return (rc);
	}
	if (m->kind != COFFER_MANIFEST_LOGICAL) {
		rc = coffer_err_set(
		    err, COFFER_EINVAL, "backup %s is a physical backup", m->backup_id);
		coffer_err_hint(err, "restore it with --physical --pgdata DIR");
		coffer_manifest_free(m);
		return (rc);
	}
	uint64_t rows = 0;
	for (size_t i = 0; i < m->ntables; i++) {
		rows += m->tables[i].rows;
	}
	int64_t took = m->finished_at - m->started_at;
	double secs = took > 0 ? (double)took / 1000.0 : -1;
	char finished[40];
	coffer_time_format(finished, sizeof(finished), m->finished_at);
	if (json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "kind", "logical");
		cJSON_AddBoolToObject(o, "dry_run", true);
		cJSON *backups = cJSON_AddArrayToObject(o, "backups");
		cJSON *b = cJSON_CreateObject();
		cJSON_AddStringToObject(b, "id", m->backup_id);
		cJSON_AddStringToObject(b, "finished_at", finished);
		cJSON_AddNumberToObject(b, "stored_bytes", (double)m->stored_bytes);
		cJSON_AddNumberToObject(b, "plaintext_bytes", (double)m->plaintext_bytes);
		cJSON_AddNumberToObject(b, "tables", (double)m->ntables);
		cJSON_AddNumberToObject(b, "rows", (double)rows);
		cJSON_AddItemToArray(backups, b);
		cJSON_AddStringToObject(o, "target_db", target_db != NULL ? target_db : "");
		cJSON_AddNullToObject(o, "wal");
		cJSON_AddNumberToObject(o, "bytes_to_read", (double)m->stored_bytes);
		if (secs >= 0) {
			cJSON_AddNumberToObject(o, "estimated_seconds", secs);
		} else {
			cJSON_AddNullToObject(o, "estimated_seconds");
		}
		cJSON_AddStringToObject(o, "estimate_basis",
		    "the time this backup took to write (the agent knows no drill results; "
		    "`coffer drill list` has the service's measured restore times)");
		char *text = cJSON_PrintUnformatted(o);
		printf("%s\n", text != NULL ? text : "{}");
		free(text);
		cJSON_Delete(o);
	} else {
		char sb[COFFER_FMT_BYTES_SIZE];
		coffer_fmt_bytes(sb, (double)m->stored_bytes);
		printf("dry run: nothing written\n");
		printf("  backup   %s (logical, completed %s, %s stored, %zu tables, %llu rows)\n",
		    m->backup_id, finished, sb, m->ntables, (unsigned long long)rows);
		printf("  into     database %s\n", target_db != NULL ? target_db : "(not given)");
		if (secs >= 0) {
			printf(
			    "  reads    %s, about %.0f s plus pg_restore, at the pace this backup was "
			    "written (the agent knows no drill results)\n",
			    sb, secs);
		} else {
			printf("  reads    %s\n", sb);
		}
	}
	coffer_manifest_free(m);
	return (0);
}

int
agent_cmd_restore(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *repo = NULL, *backup = NULL, *target_db = NULL;
	const char *target_ci = NULL, *jobs = NULL, *pgdata = NULL, *before = NULL;
	const char *output = NULL, *progress = NULL;
	agent_target_args targ = { 0 };
	bool force = false, physical = false, start = false, dry_run = false;
	const char *port = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "repo", 0, &repo, NULL },
		{ "backup", 'b', &backup, NULL },
		{ "before", 0, &before, NULL },
		{ "target-db", 0, &target_db, NULL },
		{ "target-conninfo", 0, &target_ci, NULL },
		{ "jobs", 'j', &jobs, NULL },
		{ "force", 0, NULL, &force },
		{ "physical", 0, NULL, &physical },
		{ "target-time", 0, &targ.time, NULL },
		{ "target-lsn", 0, &targ.lsn, NULL },
		{ "target-xid", 0, &targ.xid, NULL },
		{ "target-name", 0, &targ.name, NULL },
		{ "target", 0, &targ.target, NULL },
		{ "target-inclusive", 0, &targ.inclusive, NULL },
		{ "target-action", 0, &targ.action, NULL },
		{ "pgdata", 0, &pgdata, NULL },
		{ "port", 0, &port, NULL },   /* physical: the restored server's port */
		{ "start", 0, NULL, &start }, /* physical: start it and wait for recovery */
		{ "dry-run", 0, NULL, &dry_run },
		{ "output", 'o', &output, NULL },
		{ "progress", 0, &progress, NULL },
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
	bool json = false;
	if ((rv = agent_cmd_output_progress(cmd, output, progress, &json)) != 0) {
		return (rv);
	}
	bool any_target = targ.time != NULL || targ.lsn != NULL || targ.xid != NULL ||
	    targ.name != NULL || targ.target != NULL || targ.inclusive != NULL ||
	    targ.action != NULL;
	if (n_ts_map > 0 && !physical && pgdata == NULL) {
		return (coffer_cli_usage_error(cmd, "--tablespace-map is for --physical restores"));
	}
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	coffer_err err = { 0 };
	/* --physical: lay out a data directory (agent/restore/physical_restore.c). */
	if (physical || any_target || pgdata != NULL) {
		if (before != NULL) {
			return (coffer_cli_usage_error(cmd,
			    "--before is for logical restores; a physical restore takes "
			    "--target-time TIME"));
		}
		agent_physical_restore_cmd c = {
			.config = config,
			.repo = repo,
			.backup = backup,
			.pgdata = pgdata,
			.port = port,
			.tablespace_map = ts_map,
			.n_tablespace_map = n_ts_map,
			.start = start,
			.dry_run = dry_run,
			.json = json,
			.target = targ,
		};
		return (agent_cmd_restore_physical(&c));
	}
	if (backup != NULL && before != NULL) {
		return (coffer_cli_usage_error(
		    cmd, "--backup and --before both choose the backup; pass one of them"));
	}
	if ((backup == NULL && before == NULL) || (target_db == NULL && !dry_run)) {
		return (coffer_cli_usage_error(cmd,
		    "--backup ID|latest (or --before TIME) and --target-db NAME are required"));
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
	    AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO |
	        (dry_run ? 0 : AGENT_NEED_OUTBOX),
	    &ctx, &err);
	if (rv != 0) {
		coffer_err_print("coffer-agent restore", &err);
		return (coffer_err_exit_status(rv));
	}
	coffer_log_init("coffer-agent", ctx->cfg->log_level);
	char picked[COFFER_MANIFEST_ID_SIZE] = "";
	if (before != NULL) {
		rv = pick_before(ctx, before, picked, &err);
		backup = picked;
	}
	if (rv == 0 && dry_run) {
		rv = logical_dry_run(ctx, backup, target_db, json, &err);
		agent_ctx_close(ctx);
		if (rv != 0) {
			coffer_err_print("coffer-agent restore", &err);
			return (coffer_err_exit_status(rv));
		}
		return (fflush(stdout) == 0 ? 0 : 1);
	}
	agent_cancel *cancel = NULL;
	if (rv == 0) {
		rv = agent_cancel_new(&cancel, &err);
	}
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
			.progress = coffer_progress_wanted(),
			.cancel = cancel,
		};
		agent_restore_result res;
		rv = agent_restore_logical(ctx, &req, &res, &err);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		running_cancel = NULL;
		if (rv == 0 && json) {
			cJSON *o = cJSON_CreateObject();
			cJSON_AddStringToObject(o, "kind", "logical");
			cJSON_AddStringToObject(o, "backup_id", res.backup_id);
			cJSON_AddStringToObject(o, "target_db", target_db);
			if (before != NULL) {
				cJSON_AddStringToObject(o, "before", before);
			}
			cJSON_AddNumberToObject(o, "tables", (double)res.tables);
			cJSON_AddNumberToObject(o, "rows", (double)res.rows);
			cJSON_AddNumberToObject(o, "restore_ms", (double)res.restore_ms);
			cJSON_AddNumberToObject(o, "duration_ms", (double)res.duration_ms);
			cJSON *checks = cJSON_AddObjectToObject(o, "checks");
			cJSON_AddBoolToObject(checks, "manifest_signature", true);
			cJSON_AddBoolToObject(checks, "stored_digest", true);
			cJSON_AddStringToObject(checks, "row_counts", "match");
			char *text = cJSON_PrintUnformatted(o);
			printf("%s\n", text != NULL ? text : "{}");
			free(text);
			cJSON_Delete(o);
		} else if (rv == 0) {
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
