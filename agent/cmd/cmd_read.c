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
#include "agent/restore/window.h"
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
	coffer_manifest **ms; /* the valid ones, for the windows */
	size_t n, cap;
} list_state;

static void
keep_manifest(list_state *st, coffer_manifest **m)
{
	if (st->n == st->cap) {
		size_t ncap = st->cap == 0 ? 16 : st->cap * 2;
		coffer_manifest **p = realloc(st->ms, ncap * sizeof(*p));
		if (p == NULL) {
			return; /* the windows then miss it; the listing does not */
		}
		st->ms = p;
		st->cap = ncap;
	}
	st->ms[st->n++] = *m;
	*m = NULL;
}

static void
time_or_dash(char *buf, size_t size, int64_t ms)
{
	if (ms > 0) {
		coffer_time_format(buf, size, ms);
	} else {
		snprintf(buf, size, "-");
	}
}

static cJSON *
window_json(const agent_window *w, const agent_wal_index *idx)
{
	char sysid[24], t1[40], t2[40];
	snprintf(sysid, sizeof(sysid), "%llu", (unsigned long long)w->sysid);
	time_or_dash(t1, sizeof(t1), w->oldest_ms);
	time_or_dash(t2, sizeof(t2), w->newest_archived_ms);
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "kind", "physical");
	cJSON_AddStringToObject(o, "system_identifier", sysid);
	cJSON_AddNumberToObject(o, "timeline", (double)w->timeline);
	cJSON *old = cJSON_AddObjectToObject(o, "oldest");
	cJSON_AddStringToObject(old, "backup_id", w->oldest_backup);
	cJSON_AddStringToObject(old, "time", t1);
	cJSON_AddStringToObject(old, "lsn", w->oldest_lsn);
	cJSON *nw = cJSON_AddObjectToObject(o, "newest");
	cJSON_AddStringToObject(nw, "segment", w->newest_segment);
	cJSON_AddStringToObject(nw, "lsn", w->newest_lsn);
	cJSON_AddStringToObject(nw, "archived_at", t2);
	cJSON_AddStringToObject(nw, "precision",
	    "up to the end of the segment; every commit in it happened at or before archived_at");
	cJSON_AddNumberToObject(o, "backups", (double)w->backups);
	cJSON_AddNumberToObject(o, "segments", (double)w->segments);
	cJSON_AddNumberToObject(o, "segment_size", (double)idx->seg_size);
	cJSON_AddBoolToObject(o, "segment_size_derived", idx->seg_size_derived);
	return (o);
}

/* The recoverable windows: physical ones from the WAL in the repository,
 * and the logical backups as the points they are. */
static int
list_windows(list_state *st, cJSON *doc, coffer_err *err)
{
	agent_wal_index idx;
	int rc = agent_wal_index_load(st->ctx, st->ms, st->n, &idx, err);
	if (rc != 0) {
		return (rc);
	}
	agent_window *ws = NULL;
	size_t nw = 0;
	rc = agent_windows(&idx, st->ms, st->n, &ws, &nw, err);
	if (rc != 0) {
		agent_wal_index_free(&idx);
		return (rc);
	}
	cJSON *arr = doc != NULL ? cJSON_AddArrayToObject(doc, "windows") : NULL;
	if (doc == NULL) {
		printf("\nRECOVERABLE WINDOWS\n");
	}
	for (size_t i = 0; i < nw; i++) {
		const agent_window *w = &ws[i];
		if (arr != NULL) {
			cJSON_AddItemToArray(arr, window_json(w, &idx));
			continue;
		}
		char t1[40], t2[40];
		time_or_dash(t1, sizeof(t1), w->oldest_ms);
		time_or_dash(t2, sizeof(t2), w->newest_archived_ms);
		printf("physical  cluster %llu timeline %u\n", (unsigned long long)w->sysid,
		    w->timeline);
		printf("  oldest  %s at lsn %s (backup %s consistent)\n", t1, w->oldest_lsn,
		    w->oldest_backup);
		printf("  newest  up to the end of segment %s (lsn %s), archived at %s\n",
		    w->newest_segment, w->newest_lsn, t2);
		printf(
		    "          %zu base backup(s), %llu WAL segments of %llu bytes (%s) without a gap\n",
		    w->backups, (unsigned long long)w->segments, (unsigned long long)idx.seg_size,
		    idx.seg_size_derived ? "from the backup history files" : "assumed");
	}
	/* Logical backups: each one is a point, there is nothing between. */
	cJSON *points = NULL;
	size_t nl = 0;
	const coffer_manifest *first = NULL, *last = NULL;
	for (size_t i = 0; i < st->n; i++) {
		const coffer_manifest *m = st->ms[i];
		if (m->kind != COFFER_MANIFEST_LOGICAL) {
			continue;
		}
		nl++;
		if (first == NULL || m->finished_at < first->finished_at) {
			first = m;
		}
		if (last == NULL || m->finished_at > last->finished_at) {
			last = m;
		}
		if (arr != NULL) {
			if (points == NULL) {
				cJSON *o = cJSON_CreateObject();
				cJSON_AddStringToObject(o, "kind", "logical");
				points = cJSON_AddArrayToObject(o, "points");
				cJSON_AddItemToArray(arr, o);
			}
			char t1[40], t2[40];
			time_or_dash(t1, sizeof(t1), m->started_at);
			time_or_dash(t2, sizeof(t2), m->finished_at);
			cJSON *p = cJSON_CreateObject();
			cJSON_AddStringToObject(p, "backup_id", m->backup_id);
			cJSON_AddStringToObject(p, "snapshot_at", t1);
			cJSON_AddStringToObject(p, "finished_at", t2);
			cJSON_AddItemToArray(points, p);
		}
	}
	if (nl > 0 && arr == NULL) {
		char t1[40], t2[40];
		time_or_dash(t1, sizeof(t1), first->finished_at);
		time_or_dash(t2, sizeof(t2), last->finished_at);
		printf(
		    "logical   %zu points, no time between them: oldest %s (%s), newest %s (%s)\n",
		    nl, first->backup_id, t1, last->backup_id, t2);
	}
	if (nw == 0 && nl == 0 && arr == NULL) {
		printf("none: no physical backup with its WAL archived, and no logical backup\n");
	}
	free(ws);
	agent_wal_index_free(&idx);
	return (0);
}

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
		char sysid[24];
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
			if (m->kind == COFFER_MANIFEST_PHYSICAL) {
				snprintf(sysid, sizeof(sysid), "%llu",
				    (unsigned long long)m->system_identifier);
				b.system_identifier = sysid;
				b.timeline = (int64_t)m->timeline;
				b.lsn_start = m->lsn_start;
				b.lsn_stop = m->lsn_stop;
			}
			b.parent = COFFER_OBJ_NULL_TEXT;
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
	if (rc == 0) {
		keep_manifest(st, &m);
	}
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
	/* JSON: {"backups":[...],"windows":[...]}, the shape of `coffer backups
	 * list`'s answer. */
	cJSON *doc = json ? cJSON_CreateObject() : NULL;
	list_state st = {
		.ctx = ctx,
		.array = json ? cJSON_AddArrayToObject(doc, "backups") : NULL,
		.err = &err,
	};
	if (!json) {
		printf("%-28s %-8s %-24s %10s %10s %s\n", "ID", "KIND", "STARTED", "PLAIN",
		    "STORED", "KEY");
	}
	rv = agent_stored_ids(ctx, list_one, &st, &err);
	if (rv == 0) {
		rv = list_windows(&st, doc, &err);
	}
	if (rv == 0 && json) {
		char *text = cJSON_PrintUnformatted(doc);
		printf("%s\n", text);
		free(text);
	}
	for (size_t i = 0; i < st.n; i++) {
		coffer_manifest_free(st.ms[i]);
	}
	free(st.ms);
	cJSON_Delete(doc);
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
