/*
 * The journal of begun backups and their settling; see
 * agent/backup/settle.h for the promises.
 *
 * Design notes.
 * An entry is written before backup.started, so the worst a kill between
 * the two leaves is an entry for a backup the coordinator never heard of:
 * settling it sends backup.failed, which the coordinator records as a failed
 * backup all the same (a failed event needs no started row). The opposite
 * order would leave a started backup that nothing could ever settle.
 *
 * A published manifest is not enough to call a backup completed: the kill
 * may have come between publishing and a later check, or the repository
 * may have been tampered with since. So the manifest's signature is checked
 * with this agent's own key and the data object is read back and hashed
 * against the manifest, as `verify` would; only then is backup.completed
 * sent, built from the manifest (the source of truth), never from memory.
 *
 * Entries are plain text ("v1 <id> <kind> <started_ms> <stage>") so that an
 * operator can read one; a file that does not parse is reported and left
 * alone, never guessed at.
 */
#include "agent/backup/settle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/backup/backup.h"
#include "agent/outbox/events.h"
#include "common/base/clock.h"
#include "common/base/durable.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

#define ENTRY_MAX 128

static int
journal_dir(const agent_config *cfg, char *buf, size_t size, coffer_err *err)
{
	int n = snprintf(buf, size, "%s/" AGENT_JOURNAL_DIR, cfg->state_dir);
	if (n < 0 || (size_t)n >= size) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "state_dir %s is too long for the journal", cfg->state_dir));
	}
	if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
		return (coffer_err_errno(err, errno, "creating state_dir", cfg->state_dir));
	}
	if (mkdir(buf, 0700) != 0) {
		if (errno != EEXIST) {
			return (coffer_err_errno(err, errno, "creating the backup journal", buf));
		}
		return (0);
	}
	return (coffer_durable_fsync_dir(cfg->state_dir, err));
}

static int
journal_write(agent_journal *j, coffer_err *err)
{
	char dir[4096], path[4200], text[ENTRY_MAX];
	int rc = journal_dir(j->cfg, dir, sizeof(dir), err);
	if (rc != 0) {
		return (rc);
	}
	snprintf(path, sizeof(path), "%s/%s", dir, j->id);
	int n = snprintf(text, sizeof(text), "v1 %s %s %" PRId64 " %s\n", j->id,
	    coffer_manifest_kind_name(j->kind), j->started_ms, j->stage);
	return (coffer_durable_replace(path, text, (size_t)n, NULL, err));
}

int
agent_journal_begin(agent_journal *j, const agent_config *cfg, const char *id,
    coffer_manifest_kind kind, int64_t started_ms, const char *stage, coffer_err *err)
{
	memset(j, 0, sizeof(*j));
	j->cfg = cfg;
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->kind = kind;
	j->started_ms = started_ms;
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	int rc = journal_write(j, err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "recording backup %s in the journal", id));
	}
	j->open = true;
	return (0);
}

const char *
agent_journal_stage(agent_journal *j, const char *stage)
{
	if (!j->open || strcmp(j->stage, stage) == 0) {
		return (stage);
	}
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	coffer_err err = { 0 };
	if (journal_write(j, &err) != 0) {
		/* The entry stays, with an earlier stage: settling still works,
		 * it only names the stage less precisely. */
		coffer_log_warn("backup journal not updated", "backup=%s stage=%s error=\"%s\"",
		    j->id, stage, err.msg);
	}
	return (stage);
}

void
agent_journal_end(agent_journal *j)
{
	if (!j->open) {
		return;
	}
	char path[4200];
	snprintf(path, sizeof(path), "%s/" AGENT_JOURNAL_DIR "/%s", j->cfg->state_dir, j->id);
	coffer_err err = { 0 };
	if (unlink(path) != 0 && errno != ENOENT) {
		coffer_log_warn("backup journal entry not removed", "backup=%s path=%s errno=%d",
		    j->id, path, errno);
	} else {
		(void)coffer_durable_fsync_dir_of(path, &err);
	}
	j->open = false;
}

/* ---- settling ---- */

/* Reads the entry at path into j. */
static int
entry_read(
    const agent_config *cfg, const char *path, const char *name, agent_journal *j, coffer_err *err)
{
	char text[ENTRY_MAX + 1];
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "opening journal entry", path));
	}
	ssize_t n = read(fd, text, ENTRY_MAX);
	close(fd);
	if (n < 0) {
		return (coffer_err_errno(err, errno, "reading journal entry", path));
	}
	text[n] = '\0';
	memset(j, 0, sizeof(*j));
	j->cfg = cfg;
	char id[64], kind[16], stage[16];
	if (sscanf(text, "v1 %63s %15s %" SCNd64 " %15s", id, kind, &j->started_ms, stage) != 4 ||
	    strcmp(id, name) != 0 || coffer_manifest_id_check(id, NULL, NULL) != 0 ||
	    coffer_manifest_kind_parse(kind, &j->kind) != 0) {
		coffer_err_set(err, COFFER_ECORRUPT, "journal entry %s does not parse", path);
		return (coffer_err_hint(err,
		    "look at it, then remove it by hand; the coordinator marks its backup "
		    "abandoned"));
	}
	memcpy(j->id, id, COFFER_MANIFEST_ID_SIZE); /* checked: exactly an id */
	snprintf(j->stage, sizeof(j->stage), "%s", stage);
	j->open = true;
	return (0);
}

/* 0 with *m and manifest_sha set if the backup is published and verifies;
 * else why not, in err. */
static int
check_published(agent_ctx *ctx, const agent_journal *j, coffer_manifest **m,
    uint8_t manifest_sha[COFFER_SHA256_LEN], coffer_err *err)
{
	const char *svc = ctx->cfg->service;
	char mkey[COFFER_REPO_KEY_MAX], dkey[COFFER_REPO_KEY_MAX];
	int rc = coffer_repo_backup_key(mkey, sizeof(mkey), svc, j->id, "manifest.json", err);
	if (rc == 0) {
		rc = coffer_repo_backup_key(dkey, sizeof(dkey), svc, j->id, "data", err);
	}
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *buf = coffer_buffer_sink_new(COFFER_MANIFEST_MAX_BYTES, err);
	coffer_filter *msha = buf != NULL ? coffer_sha256_filter_new(buf, err) : NULL;
	if (msha == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	rc = coffer_repo_read(ctx->repo, mkey, msha, err);
	if (rc == COFFER_ENOENT) {
		coffer_err_set(err, COFFER_ENOENT, "its manifest was never published");
	}
	if (rc == 0) {
		size_t len = 0;
		const uint8_t *data = coffer_buffer_sink_data(buf, &len);
		coffer_sha256_filter_digest(msha, manifest_sha);
		rc = coffer_manifest_parse((const char *)data, len, ctx->sign_pub, m, err);
	}
	coffer_filter_free_chain(msha);
	if (rc != 0) {
		return (rc);
	}
	if (strcmp((*m)->backup_id, j->id) != 0 || strcmp((*m)->service, svc) != 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "its manifest describes backup %s of service %s", (*m)->backup_id,
		    (*m)->service));
	}
	coffer_repo_info info;
	rc = coffer_repo_stat(ctx->repo, dkey, &info, err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "its data object"));
	}
	if (info.size != (*m)->stored_bytes) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "its data object holds %" PRIu64 " bytes, the manifest says %" PRIu64,
		    info.size, (*m)->stored_bytes));
	}
	coffer_filter *sink = coffer_discard_sink_new(err);
	coffer_filter *dsha = sink != NULL ? coffer_sha256_filter_new(sink, err) : NULL;
	if (dsha == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	rc = coffer_repo_read(ctx->repo, dkey, dsha, err);
	char hex[COFFER_MANIFEST_SHA256_HEX] = "";
	if (rc == 0) {
		agent_stream_hex(dsha, hex);
	}
	coffer_filter_free_chain(dsha);
	if (rc == 0 && strcmp(hex, (*m)->stored_sha256) != 0) {
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "its data object's SHA-256 is not the one its manifest records");
	}
	return (rc);
}

static int
emit_completed(agent_ctx *ctx, const coffer_manifest *m, const uint8_t manifest_sha[32],
    uint64_t *seq, coffer_err *err)
{
	uint8_t plain_sha[COFFER_SHA256_LEN], stored_sha[COFFER_SHA256_LEN];
	if (coffer_hex_decode(m->plaintext_sha256, plain_sha, sizeof(plain_sha), err) != 0 ||
	    coffer_hex_decode(m->stored_sha256, stored_sha, sizeof(stored_sha), err) != 0) {
		return (err != NULL ? err->code : COFFER_ECORRUPT);
	}
	char pgv[16], sysid[24];
	snprintf(pgv, sizeof(pgv), "%d", m->pg_version);
	snprintf(sysid, sizeof(sysid), "%" PRIu64, m->system_identifier);
	Coffer__V1__BackupCompleted bc = COFFER__V1__BACKUP_COMPLETED__INIT;
	bc.backup_id = (char *)m->backup_id;
	bc.kind = m->kind == COFFER_MANIFEST_PHYSICAL
	    ? COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL
	    : COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	bc.started_at_ms = m->started_at;
	bc.finished_at_ms = m->finished_at;
	bc.plain_bytes = m->plaintext_bytes;
	bc.stored_bytes = m->stored_bytes;
	bc.plain_sha256 = (ProtobufCBinaryData) { sizeof(plain_sha), plain_sha };
	bc.stored_sha256 = (ProtobufCBinaryData) { sizeof(stored_sha), stored_sha };
	bc.key_id = (char *)m->key_id;
	bc.repository = (char *)ctx->repo_name;
	bc.manifest_sha256 = (ProtobufCBinaryData) { COFFER_SHA256_LEN, (uint8_t *)manifest_sha };
	bc.pg_version = pgv;
	bc.system_identifier = sysid;
	if (m->kind == COFFER_MANIFEST_PHYSICAL) {
		bc.start_lsn = (char *)m->lsn_start;
		bc.stop_lsn = (char *)m->lsn_stop;
		bc.timeline = m->timeline;
	}
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
	ev.backup_completed = &bc;
	return (agent_events_emit(
	    ctx->outbox, ctx->cfg->service, coffer_clock_now(NULL), &ev, seq, err));
}

/* Settles one entry; *kept: the entry must stay (its event was not saved). */
static int
settle_one(agent_ctx *ctx, agent_journal *j, agent_settle_stats *st, coffer_err *err)
{
	coffer_manifest *m = NULL;
	uint8_t manifest_sha[COFFER_SHA256_LEN];
	coffer_err why = { 0 };
	int rc = check_published(ctx, j, &m, manifest_sha, &why);
	if (rc == 0) {
		uint64_t seq = 0;
		rc = emit_completed(ctx, m, manifest_sha, &seq, err);
		coffer_manifest_free(m);
		if (rc != 0) {
			st->unsettled++;
			return (coffer_err_wrap(err,
			    "backup %s is stored and verified, but its completion event was not "
			    "saved; the journal keeps it for the next start",
			    j->id));
		}
		coffer_log_info("interrupted backup settled as completed",
		    "service=%s backup=%s stage=%s seq=%" PRIu64, ctx->cfg->service, j->id,
		    j->stage, seq);
		st->completed++;
		agent_journal_end(j);
		return (0);
	}
	coffer_manifest_free(m);
	coffer_err fail = { 0 };
	coffer_err_set(&fail, COFFER_ECANCELED,
	    "interrupted at stage %s (agent killed or host restarted): %s", j->stage, why.msg);
	coffer_err_hint(&fail, "a new backup runs on schedule");
	uint64_t seq = agent_backup_record_failure(ctx, j->id,
	    j->kind == COFFER_MANIFEST_PHYSICAL ? COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL
	                                        : COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL,
	    j->started_ms, j->stage, &fail);
	/* Its own temporaries, whatever their age: their writer is dead. */
	char base[COFFER_REPO_KEY_MAX + 1], prefix[COFFER_REPO_KEY_MAX + 1];
	coffer_repo_purged purged = { 0 };
	coffer_err perr = { 0 };
	if (coffer_repo_backups_prefix(base, sizeof(base), ctx->cfg->service, &perr) == 0 &&
	    (size_t)snprintf(prefix, sizeof(prefix), "%s%s/", base, j->id) < sizeof(prefix) &&
	    coffer_repo_purge_temporaries(ctx->repo, prefix, INT64_MAX, &purged, &perr) != 0) {
		coffer_log_warn("temporaries of an interrupted backup not removed",
		    "backup=%s error=\"%s\"", j->id, perr.msg);
	}
	st->temps += purged.count;
	st->bytes += purged.bytes;
	if (seq == 0) {
		st->unsettled++;
		return (coffer_err_set(err, COFFER_ENOSPC,
		    "interrupted backup %s: its failure event was not saved; the journal keeps "
		    "it for the next start",
		    j->id));
	}
	coffer_log_info("interrupted backup settled as failed",
	    "service=%s backup=%s stage=%s temporaries_removed=%" PRIu64 " bytes=%" PRIu64,
	    ctx->cfg->service, j->id, j->stage, purged.count, purged.bytes);
	st->failed++;
	agent_journal_end(j);
	return (0);
}

int
agent_backup_settle(agent_ctx *ctx, agent_settle_stats *out, coffer_err *err)
{
	agent_settle_stats local;
	agent_settle_stats *st = out != NULL ? out : &local;
	memset(st, 0, sizeof(*st));
	char dir[4096];
	int first = journal_dir(ctx->cfg, dir, sizeof(dir), err);
	if (first != 0) {
		return (first);
	}
	DIR *d = opendir(dir);
	if (d == NULL) {
		return (coffer_err_errno(err, errno, "opening the backup journal", dir));
	}
	/* Names first, then settle: settling removes entries. */
	char(*names)[COFFER_MANIFEST_ID_SIZE] = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strlen(de->d_name) != COFFER_MANIFEST_ID_LEN) {
			continue; /* ".", "..", durable temporaries */
		}
		if (n == cap) {
			size_t ncap = cap == 0 ? 8 : cap * 2;
			void *nn = realloc(names, ncap * sizeof(*names));
			if (nn == NULL) {
				break;
			}
			names = nn;
			cap = ncap;
		}
		memcpy(names[n++], de->d_name, COFFER_MANIFEST_ID_SIZE); /* length checked */
	}
	closedir(d);
	for (size_t i = 0; i < n; i++) {
		char path[4200];
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		agent_journal j;
		coffer_err e = { 0 };
		int rc = entry_read(ctx->cfg, path, names[i], &j, &e);
		if (rc == 0) {
			rc = settle_one(ctx, &j, st, &e);
		}
		if (rc != 0) {
			coffer_log_error("interrupted backup not settled",
			    "service=%s entry=%s error=\"%s\"", ctx->cfg->service, names[i], e.msg);
			if (first == 0) {
				first = rc;
				if (err != NULL) {
					*err = e;
				}
			}
		}
	}
	free(names);
	/* Stale temporaries anywhere under the service: killed writers that
	 * left no entry (a wal-push, or a backup of an older agent). */
	char prefix[COFFER_REPO_KEY_MAX + 1];
	coffer_repo_purged purged = { 0 };
	coffer_err perr = { 0 };
	snprintf(prefix, sizeof(prefix), "services/%s/", ctx->cfg->service);
	int64_t before =
	    coffer_clock_now(NULL) - ctx->cfg->completion_window_ms - AGENT_TEMP_STALE_EXTRA_MS;
	if (coffer_repo_purge_temporaries(ctx->repo, prefix, before, &purged, &perr) != 0) {
		coffer_log_warn("stale temporaries not removed", "service=%s error=\"%s\"",
		    ctx->cfg->service, perr.msg);
	}
	st->temps += purged.count;
	st->bytes += purged.bytes;
	if (st->completed + st->failed + st->unsettled > 0 || purged.count > 0) {
		coffer_log_info("interrupted backups settled",
		    "service=%s completed=%d failed=%d unsettled=%d temporaries_removed=%" PRIu64
		    " bytes=%" PRIu64,
		    ctx->cfg->service, st->completed, st->failed, st->unsettled, st->temps,
		    st->bytes);
	}
	return (first);
}

int
agent_backup_settle_now(agent_ctx *ctx, agent_settle_stats *st, coffer_err *err)
{
	int fd = -1;
	coffer_err lerr = { 0 };
	int rc = agent_backup_lock(ctx->cfg, &fd, &lerr);
	if (rc == COFFER_EEXIST) {
		if (st != NULL) {
			memset(st, 0, sizeof(*st));
		}
		return (0);
	}
	if (rc != 0) {
		if (err != NULL) {
			*err = lerr;
		}
		return (rc);
	}
	rc = agent_backup_settle(ctx, st, err);
	close(fd);
	return (rc);
}
