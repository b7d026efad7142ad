/*
 * The commands that read backups back: list, verify, cat. All of them check
 * manifest signatures; verify and cat also decrypt and check every digest.
 * None of them can change the repository.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/cmd/commands.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/objects.h"
#include "common/stream/progress.h"
#include "common/stream/sink.h"

static int
fail(const char *prog, int rv, const coffer_err *err)
{
	coffer_err_print(prog, err);
	return (coffer_err_exit_status(rv));
}

static int
check_output(const coffer_cmd *cmd, const char *output)
{
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not '%s'", output));
	}
	return (0);
}

typedef struct list_state {
	agent_ctx *ctx;
	cJSON *array; /* NULL for text */
	size_t count;
	size_t invalid; /* listed as INVALID: the command exits 1 */
	coffer_err *err;
} list_state;

static int
list_one(const char *id, void *arg)
{
	list_state *st = arg;
	coffer_manifest *m = NULL;
	coffer_err err = { 0 };
	int rc = agent_stored_manifest(st->ctx, id, &m, &err);
	char started[40] = "-";
	if (rc == 0) {
		coffer_time_format(started, sizeof(started), m->started_at);
	}
	if (st->array != NULL) {
		coffer_obj_backup b;
		coffer_obj_backup_init(&b);
		b.id = id;
		if (rc == 0) {
			b.service = m->service;
			b.kind = coffer_manifest_kind_name(m->kind);
			b.agent = m->agent;
			b.started_at_ms = m->started_at;
			b.finished_at_ms = m->finished_at;
			b.duration_ms = m->finished_at - m->started_at;
			b.plaintext_bytes = (int64_t)m->plaintext_bytes;
			b.stored_bytes = (int64_t)m->stored_bytes;
			b.tables = (int64_t)m->ntables;
			b.key_id = m->key_id;
			b.manifest = "valid";
		} else {
			b.manifest = "invalid";
			b.error = err.msg;
		}
		cJSON *o = coffer_obj_backup_json(&b);
		if (o != NULL && !cJSON_AddItemToArray(st->array, o)) {
			cJSON_Delete(o);
		}
	} else if (rc == 0) {
		char plain[COFFER_FMT_BYTES_SIZE], stored[COFFER_FMT_BYTES_SIZE];
		printf("%-28s %-8s %-24s %10s %10s %s\n", id, coffer_manifest_kind_name(m->kind),
		    started, coffer_fmt_bytes(plain, (double)m->plaintext_bytes),
		    coffer_fmt_bytes(stored, (double)m->stored_bytes), m->key_id);
	} else {
		printf("%-28s INVALID  %s\n", id, err.msg);
	}
	if (rc != 0) {
		st->invalid++;
	}
	st->count++;
	coffer_manifest_free(m);
	return (0);
}

int
agent_cmd_list(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *repo = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "repo", 0, &repo, NULL },
		{ "output", 'o', &output, NULL },
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
	if ((rv = check_output(cmd, output)) != 0) {
		return (rv);
	}
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(config, repo, AGENT_NEED_VERIFY | AGENT_NEED_REPO, &ctx, &err);
	if (rv != 0) {
		return (fail("coffer-agent list", rv, &err));
	}
	bool json = output != NULL && strcmp(output, "json") == 0;
	list_state st = { ctx, json ? cJSON_CreateArray() : NULL, 0, 0, &err };
	if (!json) {
		printf("%-28s %-8s %-24s %10s %10s %s\n", "ID", "KIND", "STARTED", "PLAIN",
		    "STORED", "KEY");
	}
	rv = agent_stored_ids(ctx, list_one, &st, &err);
	if (rv == 0 && json) {
		char *text = cJSON_PrintUnformatted(st.array);
		printf("%s\n", text);
		free(text);
	}
	cJSON_Delete(st.array);
	agent_ctx_close(ctx);
	if (rv != 0) {
		return (fail("coffer-agent list", rv, &err));
	}
	if (fflush(stdout) != 0) {
		return (1);
	}
	if (st.invalid > 0) {
		/* A listing a script reads must not pass with a backup nobody can
		 * restore in it: every backup is still listed, and the exit says so. */
		fprintf(stderr,
		    "coffer-agent list: %zu of %zu backups INVALID (manifest missing, unreadable or "
		    "not signed by a key this agent trusts)\n  fix: run coffer-agent verify --backup "
		    "ID on each to see why; take a new backup if it cannot be restored\n",
		    st.invalid, st.count);
		return (1);
	}
	return (0);
}

/* verify and cat differ only in where the plaintext goes. */
static int
read_backup(const coffer_cmd *cmd, int argc, char **argv, bool to_stdout)
{
	const char *prog = to_stdout ? "coffer-agent cat" : "coffer-agent verify";
	const char *config = NULL, *repo = NULL, *backup = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "repo", 0, &repo, NULL },
		{ "backup", 'b', &backup, NULL },
		{ "output", 'o', &output, NULL },
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
	if (config == NULL || backup == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE and --backup ID|latest are required"));
	}
	if ((rv = check_output(cmd, output)) != 0) {
		return (rv);
	}
	if (to_stdout && isatty(STDOUT_FILENO) == 1) {
		return (coffer_cli_usage_error(cmd,
		    "refusing to write a dump to a terminal; pipe it "
		    "into pg_restore or a file"));
	}
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	rv = agent_ctx_open(
	    config, repo, AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO, &ctx, &err);
	if (rv != 0) {
		return (fail(prog, rv, &err));
	}
	coffer_manifest *m = NULL;
	rv = agent_stored_manifest(ctx, backup, &m, &err);
	coffer_filter *head = NULL;
	int64_t started = coffer_clock_monotonic_ms();
	if (rv == 0) {
		head = to_stdout ? coffer_fd_sink_new(STDOUT_FILENO, &err)
		                 : coffer_discard_sink_new(&err);
		if (head != NULL && !to_stdout && isatty(STDERR_FILENO) == 1) {
			head =
			    coffer_progress_filter_new(head, "verifying", m->plaintext_bytes, &err);
		}
		if (head == NULL) {
			rv = err.code;
		}
	}
	if (rv == 0) {
		rv = agent_stored_read(ctx, m, head, &err);
		coffer_filter_free_chain(head);
	}
	if (rv == 0 && !to_stdout) {
		int64_t ms = coffer_clock_monotonic_ms() - started;
		if (output != NULL && strcmp(output, "json") == 0) {
			/* A verification (docs/schema/verification.json): it names
			 * the backup as backup_id, as drills and holds do, and its
			 * own time as verify_ms (a backup's duration_ms is the
			 * backup's). */
			printf("{\"backup_id\":\"%s\",\"ok\":true,\"plaintext_bytes\":%llu,"
			       "\"stored_bytes\":%llu,\"tables\":%zu,\"verify_ms\":%lld}\n",
			    m->backup_id, (unsigned long long)m->plaintext_bytes,
			    (unsigned long long)m->stored_bytes, m->ntables, (long long)ms);
		} else {
			printf(
			    "backup %s verified: signature, %llu stored bytes and %llu plaintext "
			    "bytes match the manifest (%lld ms)\n",
			    m->backup_id, (unsigned long long)m->stored_bytes,
			    (unsigned long long)m->plaintext_bytes, (long long)ms);
		}
	}
	coffer_manifest_free(m);
	agent_ctx_close(ctx);
	if (rv != 0) {
		return (fail(prog, rv, &err));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
agent_cmd_verify(const coffer_cmd *cmd, int argc, char **argv)
{
	return (read_backup(cmd, argc, argv, false));
}

int
agent_cmd_cat(const coffer_cmd *cmd, int argc, char **argv)
{
	return (read_backup(cmd, argc, argv, true));
}
