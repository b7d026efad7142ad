#include "agent/backup/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "agent/backup/escrow.h"
#include "agent/outbox/events.h"
#include "agent/pg/dump.h"
#include "agent/pg/passfile.h"
#include "agent/pg/pg.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/crypto/seal.h"
#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/progress.h"

#define CONNECT_TIMEOUT_S 15

void
agent_stream_close(agent_stream *s)
{
	if (s->sink != NULL) {
		coffer_repo_write_abort(s->sink); /* harmless once committed */
	}
	coffer_filter_free_chain(s->head);
	memset(s, 0, sizeof(*s));
}

int
agent_stream_open(agent_ctx *ctx, const char *data_key, const char *progress, uint64_t expected,
    agent_stream *s, coffer_err *err)
{
	memset(s, 0, sizeof(*s));
	const agent_config *cfg = ctx->cfg;
	int rc = coffer_repo_write_begin(ctx->repo, data_key, &s->sink, err);
	if (rc != 0) {
		return (rc);
	}
	/* Back to front, one step at a time, so that the filters whose results
	 * go into the manifest keep their names. A failed step frees the sink
	 * too, which aborts the write. */
	s->stored_count = coffer_count_filter_new(s->sink, err);
	s->stored_sha = coffer_sha256_filter_new(s->stored_count, err);
	s->seal = coffer_seal_filter_new(s->stored_sha, ctx->ring, NULL, cfg->chunk_size, err);
	coffer_filter *plain_next =
	    coffer_zstd_compress_new(s->seal, cfg->compress_level, cfg->compress_workers, err);
	if (progress != NULL) {
		plain_next = coffer_progress_filter_new(plain_next, progress, expected, err);
	}
	s->plain_count = coffer_count_filter_new(plain_next, err);
	s->plain_sha = coffer_sha256_filter_new(s->plain_count, err);
	if (s->plain_sha == NULL) {
		memset(s, 0, sizeof(*s));
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	s->head = s->plain_sha;
	return (0);
}

void
agent_stream_hex(const coffer_filter *sha, char out[COFFER_MANIFEST_SHA256_HEX])
{
	uint8_t d[COFFER_SHA256_LEN];
	coffer_sha256_filter_digest(sha, d);
	coffer_hex_encode(d, sizeof(d), out);
}

static int
build_manifest(agent_ctx *ctx, const char *id, int64_t started, int64_t finished,
    const agent_pg_snapshot *snap, const char *schema_version, const agent_stream *s, char **json,
    size_t *len, coffer_err *err)
{
	const agent_pg_meta *meta = agent_pg_snapshot_meta(snap);
	const agent_pg_tables *tables = agent_pg_snapshot_tables(snap);
	coffer_manifest *m = NULL;
	int rc = coffer_manifest_new(&m, err);
	if (rc != 0) {
		return (rc);
	}
	snprintf(m->backup_id, sizeof(m->backup_id), "%s", id);
	snprintf(m->service, sizeof(m->service), "%s", ctx->cfg->service);
	snprintf(m->agent, sizeof(m->agent), "%s", ctx->cfg->name);
	m->kind = COFFER_MANIFEST_LOGICAL;
	m->started_at = started;
	m->finished_at = finished;
	m->pg_version = meta->server_version_num;
	m->system_identifier = strtoull(meta->system_identifier, NULL, 10);
	snprintf(m->database, sizeof(m->database), "%s", meta->database);
	m->database_size = (uint64_t)meta->database_size;
	snprintf(m->lsn_start, sizeof(m->lsn_start), "%.17s", meta->lsn);
	m->plaintext_bytes = coffer_count_filter_bytes(s->plain_count);
	m->stored_bytes = coffer_count_filter_bytes(s->stored_count);
	agent_stream_hex(s->plain_sha, m->plaintext_sha256);
	agent_stream_hex(s->stored_sha, m->stored_sha256);
	snprintf(m->key_id, sizeof(m->key_id), "%s", coffer_seal_filter_key_id(s->seal));
	m->chunk_size = (uint32_t)ctx->cfg->chunk_size;
	if (ctx->cfg->schema_query != NULL) {
		snprintf(m->schema_query, sizeof(m->schema_query), "%s", ctx->cfg->schema_query);
		snprintf(m->schema_version, sizeof(m->schema_version), "%s", schema_version);
	}
	for (size_t i = 0; rc == 0 && i < tables->n; i++) {
		rc = coffer_manifest_add_table(
		    m, tables->v[i].schema, tables->v[i].name, (uint64_t)tables->v[i].rows, err);
	}
	char **argv = NULL;
	if (rc == 0) {
		rc = agent_dump_argv("pg_dump", "-", "-", ctx->cfg->dump_options, &argv, err);
	}
	/* Record the options that shape the dump, not the connection string. */
	for (size_t i = 1; rc == 0 && argv[i] != NULL; i++) {
		if (strncmp(argv[i], "--snapshot", 10) != 0 &&
		    strncmp(argv[i], "--dbname", 8) != 0) {
			rc = coffer_manifest_add_dump_option(m, argv[i], err);
		}
	}
	agent_dump_argv_free(argv);
	if (rc == 0) {
		rc = coffer_manifest_to_json(m, ctx->sign_key, json, len, err);
	}
	coffer_manifest_free(m);
	return (rc);
}

int
agent_backup_publish(agent_ctx *ctx, const char *key, const char *json, size_t len,
    uint8_t digest[COFFER_SHA256_LEN], coffer_err *err)
{
	coffer_filter *sink = NULL;
	int rc = coffer_repo_write_begin(ctx->repo, key, &sink, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *sha = coffer_sha256_filter_new(sink, err);
	if (sha == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	rc = coffer_filter_write(sha, json, len, err);
	if (rc == 0) {
		rc = coffer_filter_finish(sha, err);
	}
	if (rc == 0) {
		rc = coffer_repo_write_commit(sink, err);
	}
	if (rc != 0) {
		coffer_repo_write_abort(sink);
	} else {
		coffer_sha256_filter_digest(sha, digest);
	}
	coffer_filter_free_chain(sha);
	return (rc);
}

uint64_t
agent_backup_record_failure(agent_ctx *ctx, const char *id, Coffer__V1__BackupKind kind,
    int64_t started, const char *stage, const coffer_err *why)
{
	char reason[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 16];
	if (why->hint[0] != '\0') {
		snprintf(reason, sizeof(reason), "%s (hint: %s)", why->msg, why->hint);
	} else {
		snprintf(reason, sizeof(reason), "%s", why->msg);
	}
	Coffer__V1__BackupFailed failed = COFFER__V1__BACKUP_FAILED__INIT;
	failed.backup_id = (char *)id;
	failed.kind = kind;
	failed.started_at_ms = started;
	failed.failed_at_ms = coffer_clock_now(NULL);
	failed.reason = reason;
	failed.stage = (char *)stage;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_FAILED;
	ev.backup_failed = &failed;
	coffer_err eerr = { 0 };
	uint64_t seq = 0;
	if (agent_events_emit(
	        ctx->outbox, ctx->cfg->service, failed.failed_at_ms, &ev, &seq, &eerr) != 0) {
		/* Nothing else can be done here; the caller still reports the
		 * failure itself, and the missing event shows up as a missed
		 * backup at the coordinator. */
		coffer_log_error(
		    "failed backup not recorded", "backup=%s error=\"%s\"", id, eerr.msg);
	}
	coffer_log_error("backup failed", "service=%s backup=%s kind=%s stage=%s reason=\"%s\"",
	    ctx->cfg->service, id,
	    kind == COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL ? "physical" : "logical", stage,
	    why->msg);
	return (seq);
}

/* Row counting runs beside pg_dump, on the snapshot's own connection, so a
 * backup costs about one pass over the data in wall time instead of two;
 * both read the same exported snapshot, so the counts describe exactly
 * what was dumped. */
typedef struct row_counter {
	agent_pg_snapshot *snap;
	uv_thread_t thread;
	atomic_bool done;
	int rc;
	coffer_err err;
} row_counter;

static void
count_rows(void *arg)
{
	row_counter *rcnt = arg;
	rcnt->rc = agent_pg_snapshot_count(rcnt->snap, &rcnt->err);
	atomic_store(&rcnt->done, true);
}

/* Waits for the counter, cancelling its query if the backup is cancelled
 * or its deadline passes first (a table locked exclusively by another
 * session would otherwise hold the backup forever). Returns the counter's
 * result, or why it was stopped. */
static int
finish_count(row_counter *rcnt, const agent_backup_request *req, int64_t deadline_wall,
    const char *window, coffer_err *err)
{
	int stopped = 0;
	while (!atomic_load(&rcnt->done)) {
		if (stopped == 0 && req->cancel != NULL && agent_cancel_requested(req->cancel)) {
			stopped = COFFER_ECANCELED;
		}
		if (stopped == 0 && coffer_clock_now(NULL) >= deadline_wall) {
			stopped = COFFER_ETIMEDOUT;
		}
		if (stopped != 0) {
			agent_pg_snapshot_cancel(rcnt->snap);
		}
		uv_sleep(20);
	}
	uv_thread_join(&rcnt->thread);
	if (stopped == COFFER_ECANCELED) {
		return (coffer_err_set(err, COFFER_ECANCELED, "cancelled while counting rows"));
	}
	if (stopped == COFFER_ETIMEDOUT) {
		return (coffer_err_set(err, COFFER_ETIMEDOUT,
		            "the completion window (%s) passed while counting rows", window),
		    coffer_err_hint(err,
		        "a long lock on a table blocks the backup; find it in "
		        "pg_locks, or widen [schedule] completion_window"));
	}
	if (rcnt->rc != 0 && err != NULL) {
		*err = rcnt->err;
		coffer_err_wrap(err, "counting rows in the snapshot");
	}
	return (rcnt->rc);
}

int
agent_backup_record_started(agent_ctx *ctx, const agent_backup_request *req,
    coffer_manifest_kind kind, int64_t started, char id[COFFER_MANIFEST_ID_SIZE],
    agent_backup_result *res, agent_journal *j, coffer_err *err)
{
	memset(j, 0, sizeof(*j));
	/* What an earlier, killed backup left is settled first, so that its
	 * events precede this one's and its temporaries do not pile up. */
	coffer_err serr = { 0 };
	if (agent_backup_settle(ctx, NULL, &serr) != 0) {
		coffer_log_warn("interrupted backups not all settled; going on",
		    "service=%s error=\"%s\"", ctx->cfg->service, serr.msg);
	}
	/* The key that seals this backup leaves the host in escrow before
	 * the backup does: a backup nobody can decrypt after losing the host
	 * is no backup. */
	agent_escrow_newest(ctx);
	int rc = coffer_manifest_id_new(id, started, kind, err);
	if (rc != 0) {
		return (rc);
	}
	/* The entry comes before backup.started and before any repository
	 * write: a kill at any later instant leaves something to settle. */
	rc = agent_journal_begin(j, ctx->cfg, id, kind, started, "connect", err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "not starting backup %s", id));
	}
	snprintf(res->backup_id, sizeof(res->backup_id), "%s", id);
	Coffer__V1__BackupStarted bs = COFFER__V1__BACKUP_STARTED__INIT;
	bs.backup_id = id;
	bs.kind = kind == COFFER_MANIFEST_PHYSICAL ? COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL
	                                           : COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	bs.trigger = req->trigger;
	bs.command_id = req->command_id;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
	ev.backup_started = &bs;
	rc = agent_events_emit(ctx->outbox, ctx->cfg->service, started, &ev, NULL, err);
	if (rc != 0) {
		/* Nothing was started, so nothing needs settling. */
		agent_journal_end(j);
		return (coffer_err_wrap(err, "not starting backup %s", id));
	}
	coffer_log_info("backup started", "service=%s backup=%s kind=%s", ctx->cfg->service, id,
	    coffer_manifest_kind_name(kind));
	return (0);
}

void
agent_backup_record_end(agent_journal *j, uint64_t seq)
{
	if (seq != 0) {
		agent_journal_end(j);
	}
}

/* Two backups at once would double the load on the database for no gain. */
int
agent_backup_lock(const agent_config *cfg, int *fd_out, coffer_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/backup.lock", cfg->state_dir);
	if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
		return (coffer_err_errno(err, errno, "creating state_dir", cfg->state_dir));
	}
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "opening the backup lock", path));
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		close(fd);
		if (e == EWOULDBLOCK) {
			return (coffer_err_set(err, COFFER_EEXIST,
			            "another backup of service %s is running on this host",
			            cfg->service),
			    coffer_err_hint(err, "wait for it to finish; see the agent's log"));
		}
		return (coffer_err_errno(err, e, "locking", path));
	}
	*fd_out = fd;
	return (0);
}

static int backup_locked(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err);

int
agent_backup_logical(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	int lock_fd = -1;
	int rc = agent_backup_lock(ctx->cfg, &lock_fd, err);
	if (rc != 0) {
		return (rc);
	}
	rc = backup_locked(ctx, req, res, err);
	close(lock_fd);
	return (rc);
}

static int
backup_locked(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err)
{
	const agent_config *cfg = ctx->cfg;
	memset(res, 0, sizeof(*res));
	int64_t started = coffer_clock_now(NULL);
	int64_t started_mono = coffer_clock_monotonic_ms();
	int64_t deadline =
	    req->deadline_ms != 0 ? req->deadline_ms : started + cfg->completion_window_ms;
	char id[COFFER_MANIFEST_ID_SIZE];
	agent_journal jr;
	int rc = agent_backup_record_started(
	    ctx, req, COFFER_MANIFEST_LOGICAL, started, id, res, &jr, err);
	if (rc != 0) {
		return (rc);
	}

	const char *stage = "connect";
	agent_pg_snapshot *snap = NULL;
	agent_stream s = { 0 };
	char **argv = NULL;
	agent_passfile pf = { 0 };
	char *child_ci = NULL;
	char *json = NULL;
	size_t json_len = 0;
	char data_key[COFFER_REPO_KEY_MAX], manifest_key[COFFER_REPO_KEY_MAX];
	char window[32], deadline_what[96];
	coffer_duration_format(window, sizeof(window), cfg->completion_window_ms);
	snprintf(deadline_what, sizeof(deadline_what), "the completion window (%s)", window);

	rc = coffer_repo_backup_key(data_key, sizeof(data_key), cfg->service, id, "data", err);
	if (rc == 0) {
		rc = coffer_repo_backup_key(
		    manifest_key, sizeof(manifest_key), cfg->service, id, "manifest.json", err);
	}
	if (rc == 0) {
		rc = agent_pg_snapshot_export(cfg->conninfo, CONNECT_TIMEOUT_S, &snap, err);
	}
	/* In the dump's own snapshot: the version of exactly what is dumped. */
	char schema_version[COFFER_MANIFEST_SCHEMA_VERSION_MAX + 1] = "";
	if (rc == 0 && cfg->schema_query != NULL &&
	    (rc = agent_pg_snapshot_value(
	         snap, cfg->schema_query, schema_version, sizeof(schema_version), err)) != 0) {
		coffer_err_wrap(err, "[backup] schema_query");
		coffer_err_hint(err,
		    "fix the query in the agent's config (one row, one column), or "
		    "remove it");
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "dump");
		/* pg_dump's command line is public: its password goes in a passfile. */
		rc = agent_passfile_conninfo(cfg->conninfo, &pf, &child_ci, err);
	}
	if (rc == 0) {
		rc = agent_dump_argv(cfg->pg_dump, agent_pg_snapshot_id(snap), child_ci,
		    cfg->dump_options, &argv, err);
	}
	if (rc == 0) {
		rc = agent_stream_open(ctx, data_key, req->progress ? "dumping" : NULL,
		    (uint64_t)agent_pg_snapshot_meta(snap)->database_size, &s, err);
	}
	if (rc == 0) {
		int64_t now = coffer_clock_now(NULL);
		agent_child_spec spec = {
			.argv = (const char *const *)argv,
			.name = "pg_dump",
			.stdout_chain = s.head,
			.deadline_ms =
			    coffer_clock_monotonic_ms() + (deadline > now ? deadline - now : 0),
			.deadline_what = deadline_what,
			.cancel = req->cancel,
			.not_found_hint =
			    "install the PostgreSQL client tools or set [postgres] bin_dir",
		};
		row_counter counter = { .snap = snap };
		atomic_init(&counter.done, false);
		if (uv_thread_create(&counter.thread, count_rows, &counter) != 0) {
			rc = coffer_err_set(
			    err, COFFER_ENOMEM, "cannot start the row-counting thread");
		} else {
			agent_child_result cres;
			rc = agent_child_run(&spec, &cres, err);
			if (rc != 0) {
				/* pg_dump's failure is the story; the counter only has to stop. */
				agent_pg_snapshot_cancel(snap);
				coffer_err ignored = { 0 };
				(void)finish_count(&counter, req, deadline, window, &ignored);
			} else {
				stage = agent_journal_stage(&jr, "count");
				rc = finish_count(&counter, req, deadline, window, err);
			}
		}
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "store");
		rc = coffer_repo_write_commit(s.sink, err);
	}
	int64_t finished = coffer_clock_now(NULL);
	uint8_t manifest_sha[COFFER_SHA256_LEN] = { 0 };
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "publish");
		rc = build_manifest(
		    ctx, id, started, finished, snap, schema_version, &s, &json, &json_len, err);
	}
	if (rc == 0) {
		rc = agent_backup_publish(ctx, manifest_key, json, json_len, manifest_sha, err);
	}
	if (rc != 0) {
		if (req->cancel != NULL && agent_cancel_requested(req->cancel) &&
		    rc != COFFER_ECANCELED) {
			coffer_err_wrap(err, "cancelled");
		}
		res->event_seq = agent_backup_record_failure(
		    ctx, id, COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL, started, stage, err);
		agent_backup_record_end(&jr, res->event_seq);
		goto out;
	}

	res->plain_bytes = coffer_count_filter_bytes(s.plain_count);
	res->stored_bytes = coffer_count_filter_bytes(s.stored_count);
	res->duration_ms = coffer_clock_monotonic_ms() - started_mono;
	uint8_t plain_sha[COFFER_SHA256_LEN], stored_sha[COFFER_SHA256_LEN];
	coffer_sha256_filter_digest(s.plain_sha, plain_sha);
	coffer_sha256_filter_digest(s.stored_sha, stored_sha);
	const agent_pg_meta *meta = agent_pg_snapshot_meta(snap);
	Coffer__V1__BackupCompleted bc = COFFER__V1__BACKUP_COMPLETED__INIT;
	bc.backup_id = id;
	bc.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	bc.started_at_ms = started;
	bc.finished_at_ms = finished;
	bc.plain_bytes = res->plain_bytes;
	bc.stored_bytes = res->stored_bytes;
	bc.plain_sha256 = (ProtobufCBinaryData) { sizeof(plain_sha), plain_sha };
	bc.stored_sha256 = (ProtobufCBinaryData) { sizeof(stored_sha), stored_sha };
	bc.key_id = (char *)coffer_seal_filter_key_id(s.seal);
	bc.repository = (char *)ctx->repo_name;
	bc.manifest_sha256 = (ProtobufCBinaryData) { sizeof(manifest_sha), manifest_sha };
	char pgv[16];
	snprintf(pgv, sizeof(pgv), "%d", meta->server_version_num);
	bc.pg_version = pgv;
	bc.system_identifier = (char *)meta->system_identifier;
	Coffer__V1__Event cev = COFFER__V1__EVENT__INIT;
	cev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
	cev.backup_completed = &bc;
	rc = agent_events_emit(ctx->outbox, cfg->service, finished, &cev, &res->event_seq, err);
	if (rc != 0) {
		/* The backup is published and restorable; only the report is
		 * missing. Say so loudly rather than pretend it failed; the
		 * journal keeps it, and the next start reports it. */
		coffer_err_wrap(err,
		    "backup %s is stored, but its completion event was not saved; the next "
		    "start of the agent reports it",
		    id);
		goto out;
	}
	agent_backup_record_end(&jr, res->event_seq);
	coffer_log_info("backup completed",
	    "service=%s backup=%s plain_bytes=%" PRIu64 " stored_bytes=%" PRIu64
	    " duration_ms=%" PRId64 " tables=%zu",
	    cfg->service, id, res->plain_bytes, res->stored_bytes, res->duration_ms,
	    agent_pg_snapshot_tables(snap)->n);
out:
	free(json);
	agent_dump_argv_free(argv);
	agent_passfile_remove(&pf);
	free(child_ci);
	agent_stream_close(&s);
	agent_pg_snapshot_close(snap);
	return (rc);
}
