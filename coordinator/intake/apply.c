/*
 * Intake, the catalog side: what each event kind does to the catalog. A
 * durable event gets its row in `events`, its effect (`backups`,
 * `wal_segments`, or coordinator/drill for drill results and finished
 * commands) and its audit row; a transient one updates the agent's status.
 * intake.c decides whether a request may change anything at all; this file
 * decides what it changes.
 *
 * What it promises to intake.c:
 * - Everything happens inside the caller's transaction, under the agent's
 *   row lock: nothing here begins, commits or rolls back the transaction
 *   (intake_apply_durable's per-event SAVEPOINT in careful mode aside), so an
 *   envelope's effects land together or not at all.
 * - Meeting a statement again changes nothing: a resent (agent, seq) is not
 *   applied twice, a backup row only ever leaves 'running' (or
 *   'abandoned': an outcome that arrives after the coordinator gave up on
 *   the backup still settles it, coordinator/watch/alerts.c), and a WAL
 *   segment archived again is untouched unless its row was marked deleted.
 *   So the careful second pass, or an agent's retry after a lost reply, is
 *   always safe.
 * - An event that intake_event_valid refuses, or (careful mode) whose effect
 *   PostgreSQL refuses, is still recorded and audited as rejected, so one
 *   poisoned event never blocks an agent's outbox.
 * - This file's audit rows are queued (intake_audit_rows_add), not
 *   written: intake.c appends them in one statement just before the commit.
 */
#include "coordinator/intake/intake_internal.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/fmt.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/base/name.h"
#include "common/base/utf8.h"
#include "common/wire/wire.h"
#include "coordinator/drill/drills.h"

/*
 * Fails the envelope with NOT_OWNER when a backup that a new durable event
 * is about belongs to another service. One query for the whole batch; the
 * rows are locked so their service cannot change before the commit.
 */
int
intake_check_backup_owners(coord_intake *in, const agent_row *ag, const Coffer__V1__EventBatch *b,
    int64_t mark, verdict *v, coffer_err *err)
{
	/* Ids passed coffer_name_id_valid (no quotes, commas, braces or blanks), so they
	 * go into an array literal as they are. */
	size_t cap = 3, n = 0;
	for (size_t i = 0; i < b->n_events; i++) {
		const char *id = intake_event_backup_id(b->events[i]);
		if ((int64_t)b->events[i]->seq > mark && id != NULL && coffer_name_id_valid(id)) {
			cap += strlen(id) + 1;
			n++;
		}
	}
	if (n == 0) {
		return (0);
	}
	char *arr = malloc(cap);
	if (arr == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an ownership check"));
	}
	size_t o = 0;
	arr[o++] = '{';
	for (size_t i = 0; i < b->n_events; i++) {
		const char *id = intake_event_backup_id(b->events[i]);
		if ((int64_t)b->events[i]->seq > mark && id != NULL && coffer_name_id_valid(id)) {
			size_t l = strlen(id);
			if (o > 1) {
				arr[o++] = ',';
			}
			memcpy(arr + o, id, l);
			o += l;
		}
	}
	arr[o++] = '}';
	arr[o] = '\0';
	int rv;
	const char *vals[] = { arr, ag->service };
	PGresult *res = intake_cat_query(in, "reading backups' services",
	    "SELECT id, service FROM backups WHERE id = ANY ($1::text[]) AND service <> $2 "
	    "ORDER BY id LIMIT 1 FOR UPDATE",
	    2, vals, &rv, err);
	free(arr);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 1) {
		intake_verdict_set(v, COFFER__V1__STATUS__STATUS_NOT_OWNER,
		    "backup %s belongs to another service; agent %s may only report for %s",
		    PQgetvalue(res, 0, 0), ag->name, ag->service);
	}
	PQclear(res);
	return (0);
}

/* A WAL file whose key was taken by an object that is not the cluster's
 * authentic file, any kind of WAL file: one wal_conflicts row each, which
 * pages wal_object_conflict (coordinator/wal/walwatch.c); the event's
 * audit row names the conflict too (audit_event). */
static int
wal_conflicts_record(coord_intake *in, const agent_row *ag, const Coffer__V1__WalArchived *w,
    const char *tl, coffer_err *err)
{
	for (size_t i = 0; i < w->n_segment_conflicts && i < w->n_segments; i++) {
		if (w->segment_conflicts[i][0] == '\0') {
			continue;
		}
		char *reason = coffer_utf8_clean(w->segment_conflicts[i], 1024);
		char *name = coffer_utf8_clean(w->segments[i], 64);
		int rv = reason == NULL || name == NULL
		    ? coffer_err_set(err, COFFER_ENOMEM, "no memory for a WAL conflict")
		    : 0;
		if (rv == 0) {
			const char *vals[] = { ag->service, ag->name, w->system_identifier, tl,
				name, w->segment_object_names[i], reason };
			rv = intake_cat_exec(in, "recording a WAL object conflict",
			    "INSERT INTO wal_conflicts (service, agent, system_identifier, timeline, "
			    "name, object_name, reason) VALUES ($1, $2, $3::numeric, $4::integer, $5, "
			    "$6, $7)",
			    7, vals, err);
		}
		free(reason);
		free(name);
		if (rv != 0) {
			return (rv);
		}
	}
	return (0);
}

/* wal.archived: each segment into wal_segments, for continuity, lag and
 * WAL retention (coordinator/wal/walwatch.c, prune.c), keyed by the cluster's
 * system identifier as the repository is. Events from agents that do not
 * send digests or the identifier are kept in `events` only (and the gap they
 * leave is reported by the WAL watch). The same segment again (PostgreSQL
 * retrying after a crash) changes nothing; a segment re-archived after its
 * row was marked deleted is live again. */
static int
apply_wal(coord_intake *in, const agent_row *ag, const Coffer__V1__WalArchived *w,
    int64_t occurred_at_ms, coffer_err *err)
{
	if (w->n_segment_sha256 != w->n_segments || w->n_segments == 0) {
		return (0);
	}
	if (!intake_digits_ok(w->system_identifier, 20) ||
	    strspn(w->system_identifier, "0") == strlen(w->system_identifier)) {
		coffer_log_warn("wal.archived without a system identifier, not tracked",
		    "agent=%s service=%s", ag->name, ag->service);
		return (0);
	}
	char tl[16], at[24];
	snprintf(tl, sizeof(tl), "%" PRIu32, w->timeline);
	coffer_fmt_i64(at, w->last_archived_at_ms != 0 ? w->last_archived_at_ms : occurred_at_ms);
	int crv = wal_conflicts_record(in, ag, w, tl, err);
	if (crv != 0) {
		return (crv);
	}
	for (size_t i = 0; i < w->n_segments; i++) {
		if (!intake_wal_segment_name(w->segments[i])) {
			continue;
		}
		const char *object =
		    i < w->n_segment_object_names && w->segment_object_names[i][0] != '\0'
		    ? w->segment_object_names[i]
		    : NULL;
		char sha[65], bytes[24];
		coffer_hex_encode(w->segment_sha256[i].data, 32, sha);
		coffer_fmt_i64(bytes, (int64_t)w->segment_stored_bytes[i]);
		const char *vals[] = { ag->service, tl, w->segments[i], bytes, sha,
			intake_ms_ok(
			    w->last_archived_at_ms != 0 ? w->last_archived_at_ms : occurred_at_ms)
			    ? at
			    : NULL,
			w->system_identifier, object };
		int rv = intake_cat_exec(in, "recording an archived WAL segment",
		    "INSERT INTO wal_segments (service, system_identifier, timeline, segment, "
		    "stored_bytes, stored_sha256, archived_at, object_name) VALUES ($1, $7::numeric, "
		    "$2::integer, $3, $4::bigint, decode($5, 'hex'), "
		    "COALESCE((timestamptz 'epoch' + $6::bigint * interval '1 millisecond'), now()), "
		    "$8) "
		    "ON CONFLICT (service, system_identifier, timeline, segment) DO UPDATE SET "
		    "stored_bytes = EXCLUDED.stored_bytes, stored_sha256 = EXCLUDED.stored_sha256, "
		    "archived_at = EXCLUDED.archived_at, object_name = EXCLUDED.object_name, "
		    "deleted_at = NULL "
		    "WHERE wal_segments.deleted_at IS NOT NULL",
		    8, vals, err);
		if (rv != 0) {
			return (rv);
		}
	}
	return (0);
}

/* Inserts the queued backup.started events' rows, one statement for all:
 * per-statement work (constraint expressions, the round trip) is most of a
 * row's cost. Duplicate ids are fine with DO NOTHING: the first wins, as
 * one statement each would have it. */
int
intake_started_flush(coord_intake *in, const agent_row *ag, coffer_err *err)
{
	if (in->n_started == 0) {
		return (0);
	}
	coord_pgarray *c = in->started_cols;
	const char *vals[] = { ag->service, ag->name, coord_pgarray_text(&c[0]),
		coord_pgarray_text(&c[1]), coord_pgarray_text(&c[2]) };
	in->n_started = 0;
	return (intake_cat_exec(in, "recording started backups",
	    "INSERT INTO backups (id, service, agent, kind, status, started_at) "
	    "SELECT s.id, $1, $2, s.kind, 'running', "
	    "  COALESCE(to_timestamp(s.ms / 1000.0), now()) "
	    "FROM unnest($3::text[], $4::text[], $5::bigint[]) AS s(id, kind, ms) "
	    "ON CONFLICT (id) DO NOTHING",
	    5, vals, err));
}

static int
started_queue(coord_intake *in, const Coffer__V1__Event *ev, coffer_err *err)
{
	coord_pgarray *c = in->started_cols;
	if (in->n_started == 0) {
		for (size_t i = 0; i < 3; i++) {
			coord_pgarray_reset(&c[i]);
		}
	}
	char at[24];
	coffer_fmt_i64(at, ev->occurred_at_ms);
	bool ok = coord_pgarray_add(&c[0], ev->backup_started->backup_id) &&
	    coord_pgarray_add(&c[1], intake_kind_text(ev->backup_started->kind)) &&
	    (intake_ms_ok(ev->occurred_at_ms) ? coord_pgarray_add(&c[2], at)
	                                      : coord_pgarray_add_null(&c[2]));
	if (!ok) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an envelope's backups"));
	}
	in->n_started++;
	return (0);
}

/* Applies a valid durable event to `backups`. */
static int
apply_backup(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev, coffer_err *err)
{
	/* Outside careful mode (see started_cols), a backup.started joins the
	 * queue; anything else first lets the queue in. */
	if (in->events_inserted && ev->kind_case == COFFER__V1__EVENT__KIND_BACKUP_STARTED) {
		return (started_queue(in, ev, err));
	}
	int qrv = intake_started_flush(in, ag, err);
	if (qrv != 0) {
		return (qrv);
	}
	char a[8][32];
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED: {
		const Coffer__V1__BackupStarted *b = ev->backup_started;
		coffer_fmt_i64(a[0], ev->occurred_at_ms);
		const char *vals[] = { b->backup_id, ag->service, ag->name,
			intake_kind_text(b->kind), intake_ms_ok(ev->occurred_at_ms) ? a[0] : NULL };
		/* A started event that arrives after its completion (never in
		 * outbox order, but cheap to tolerate) changes nothing. */
		return (intake_cat_exec(in, "recording a started backup",
		    "INSERT INTO backups (id, service, agent, kind, status, started_at) "
		    "VALUES ($1, $2, $3, $4, 'running', "
		    "COALESCE((timestamptz 'epoch' + $5::bigint * interval '1 millisecond'), now())) "
		    "ON CONFLICT (id) DO NOTHING",
		    5, vals, err));
	}
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED: {
		const Coffer__V1__BackupCompleted *b = ev->backup_completed;
		char plain[65] = "", stored[65], msha[65] = "";
		coffer_hex_encode(b->stored_sha256.data, 32, stored);
		if (b->plain_sha256.len == 32) {
			coffer_hex_encode(b->plain_sha256.data, 32, plain);
		}
		if (b->manifest_sha256.len == 32) {
			coffer_hex_encode(b->manifest_sha256.data, 32, msha);
		}
		cJSON *m = cJSON_CreateObject();
		if (m == NULL) {
			return (
			    coffer_err_set(err, COFFER_ENOMEM, "no memory for a manifest summary"));
		}
		/* The event carries the manifest's digest, not the manifest: the
		 * catalog keeps what it was told, and the manifest in the
		 * repository stays the source of truth (rebuild-catalog). */
		if (msha[0] != '\0') {
			cJSON_AddStringToObject(m, "manifest_sha256", msha);
		}
		cJSON_AddStringToObject(m, "source", "agent event");
		char *mtext = cJSON_PrintUnformatted(m);
		cJSON_Delete(m);
		char *key_id = coffer_utf8_clean(b->key_id, 128);
		if (mtext == NULL || key_id == NULL) {
			cJSON_free(mtext);
			free(key_id);
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a backup row"));
		}
		coffer_fmt_i64(a[0], b->started_at_ms);
		coffer_fmt_i64(a[1], b->finished_at_ms);
		coffer_fmt_i64(a[2], (int64_t)b->plain_bytes);
		coffer_fmt_i64(a[3], (int64_t)b->stored_bytes);
		coffer_fmt_i64(a[4], b->timeline);
		const char *vals[] = { b->backup_id, ag->service, ag->name,
			intake_kind_text(b->kind),
			b->repository[0] != '\0' ? b->repository : "primary", a[0], a[1], a[2],
			a[3], plain[0] != '\0' ? plain : NULL, stored, key_id,
			intake_digits_ok(b->pg_version, 9) ? b->pg_version : NULL,
			intake_digits_ok(b->system_identifier, 20) ? b->system_identifier : NULL,
			b->timeline > 0 ? a[4] : NULL,
			b->start_lsn[0] != '\0' ? b->start_lsn : NULL,
			b->stop_lsn[0] != '\0' ? b->stop_lsn : NULL, mtext };
		int rv = intake_cat_exec(in, "recording a completed backup",
		    "INSERT INTO backups (id, service, agent, kind, status, repo, started_at, "
		    "finished_at, plain_bytes, stored_bytes, plain_sha256, stored_sha256, key_id, "
		    "pg_version, system_identifier, timeline, start_lsn, stop_lsn, manifest) "
		    "VALUES ($1, $2, $3, $4, 'completed', $5, "
		    "(timestamptz 'epoch' + $6::bigint * interval '1 millisecond'), "
		    "(timestamptz 'epoch' + $7::bigint * interval '1 millisecond'), $8, $9, "
		    "decode($10, 'hex'), decode($11, 'hex'), $12, $13::integer, $14::numeric, "
		    "$15::integer, $16::pg_lsn, $17::pg_lsn, $18::jsonb) "
		    "ON CONFLICT (id) DO UPDATE SET status = 'completed', kind = EXCLUDED.kind, "
		    "repo = EXCLUDED.repo, started_at = EXCLUDED.started_at, "
		    "finished_at = EXCLUDED.finished_at, plain_bytes = EXCLUDED.plain_bytes, "
		    "stored_bytes = EXCLUDED.stored_bytes, plain_sha256 = EXCLUDED.plain_sha256, "
		    "stored_sha256 = EXCLUDED.stored_sha256, key_id = EXCLUDED.key_id, "
		    "pg_version = EXCLUDED.pg_version, "
		    "system_identifier = EXCLUDED.system_identifier, timeline = EXCLUDED.timeline, "
		    "start_lsn = EXCLUDED.start_lsn, stop_lsn = EXCLUDED.stop_lsn, "
		    "manifest = EXCLUDED.manifest, failure_reason = NULL, updated_at = now() "
		    "WHERE backups.status IN ('running', 'abandoned')",
		    18, vals, err);
		cJSON_free(mtext);
		free(key_id);
		if (rv == 0) {
			in->n_completed++; /* its object versions are recorded next */
		}
		return (rv);
	}
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED: {
		const Coffer__V1__BackupFailed *b = ev->backup_failed;
		int64_t failed = b->failed_at_ms != 0 ? b->failed_at_ms : ev->occurred_at_ms;
		int64_t started = b->started_at_ms != 0 ? b->started_at_ms : failed;
		coffer_fmt_i64(a[0], started);
		coffer_fmt_i64(a[1], failed);
		char *reason = coffer_utf8_clean(
		    b->reason[0] != '\0' ? b->reason : "no reason given", TEXT_MAX);
		if (reason == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a backup row"));
		}
		const char *vals[] = { b->backup_id, ag->service, ag->name,
			intake_kind_text(b->kind), intake_ms_ok(started) ? a[0] : NULL,
			intake_ms_ok(failed) ? a[1] : NULL, reason };
		/* Clocks differ between the started and the failed event, so the
		 * finish is kept no earlier than the recorded start. */
		int rv = intake_cat_exec(in, "recording a failed backup",
		    "INSERT INTO backups (id, service, agent, kind, status, started_at, finished_at, "
		    "failure_reason) VALUES ($1, $2, $3, $4, 'failed', "
		    "COALESCE((timestamptz 'epoch' + $5::bigint * interval '1 millisecond'), now()), "
		    "GREATEST(COALESCE((timestamptz 'epoch' + $6::bigint * interval '1 millisecond'), now()), "
		    "COALESCE((timestamptz 'epoch' + $5::bigint * interval '1 millisecond'), now())), $7) "
		    "ON CONFLICT (id) DO UPDATE SET status = 'failed', "
		    "finished_at = GREATEST(EXCLUDED.finished_at, backups.started_at), "
		    "failure_reason = EXCLUDED.failure_reason, updated_at = now() "
		    "WHERE backups.status IN ('running', 'abandoned')",
		    7, vals, err);
		free(reason);
		return (rv);
	}
	case COFFER__V1__EVENT__KIND_DRILL_RESULT:
	case COFFER__V1__EVENT__KIND_COMMAND_DONE:
		return (coord_drills_apply(in->cat, &in->key, ag->name, ev, err));
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED:
		return (apply_wal(in, ag, ev->wal_archived, ev->occurred_at_ms, err));
	default:
		return (0);
	}
}

/* Inserts one durable event into `events`; *inserted false: (agent, seq)
 * was already there. */
static int
insert_event(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev,
    const char *rejected, bool *inserted, coffer_err *err)
{
	*inserted = false;
	cJSON *p = intake_event_payload(ev);
	if (p != NULL && rejected != NULL) {
		cJSON_AddStringToObject(p, "rejected", rejected);
	}
	char *ptext = p != NULL ? cJSON_PrintUnformatted(p) : NULL;
	cJSON_Delete(p);
	if (ptext == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an event"));
	}
	char seq[24], at[24];
	snprintf(seq, sizeof(seq), "%" PRIu64, ev->seq);
	coffer_fmt_i64(at, ev->occurred_at_ms);
	const char *vals[] = { ag->name, seq, ev->service, coffer_wire_event_type(ev), ptext,
		intake_ms_ok(ev->occurred_at_ms) ? at : NULL };
	int rv;
	PGresult *res = intake_cat_query(in, "recording an event",
	    "INSERT INTO events (agent, seq, service, type, payload, sent_at) "
	    "VALUES ($1, $2, $3, $4, $5::jsonb, "
	    "(timestamptz 'epoch' + $6::bigint * interval '1 millisecond')) "
	    "ON CONFLICT (agent, seq) DO NOTHING RETURNING id",
	    6, vals, &rv, err);
	cJSON_free(ptext);
	if (res == NULL) {
		return (rv);
	}
	*inserted = PQntuples(res) == 1;
	PQclear(res);
	return (0);
}

/* Queues the event's audit row: a summary, the full payload is in
 * `events`. */
static int
audit_event(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev,
    const char *rejected, coffer_err *err)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	const char *id = intake_event_backup_id(ev);
	bool id_ok = id != NULL && coffer_name_id_valid(id);
	cJSON_AddNumberToObject(d, "seq", (double)ev->seq);
	cJSON_AddStringToObject(d, "service", ev->service);
	cJSON_AddStringToObject(d, "type", coffer_wire_event_type(ev));
	if (id_ok) {
		cJSON_AddStringToObject(d, "backup_id", id);
	}
	if (rejected != NULL) {
		cJSON_AddStringToObject(d, "rejected", rejected);
	} else if (ev->kind_case == COFFER__V1__EVENT__KIND_BACKUP_FAILED) {
		intake_add_text(d, "reason", ev->backup_failed->reason);
	} else if (ev->kind_case == COFFER__V1__EVENT__KIND_WAL_ARCHIVED) {
		const Coffer__V1__WalArchived *w = ev->wal_archived;
		for (size_t i = 0; i < w->n_segment_conflicts && i < w->n_segments; i++) {
			if (w->segment_conflicts[i][0] != '\0') {
				intake_add_text(d, "wal_file", w->segments[i]);
				intake_add_text(d, "wal_conflict", w->segment_conflicts[i]);
				intake_add_text(d, "object_name", w->segment_object_names[i]);
				break;
			}
		}
	}
	char *dtext = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (dtext == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	return (intake_audit_rows_add(in, ag->name,
	    rejected != NULL ? "event.rejected" : coffer_wire_event_type(ev),
	    id_ok ? id : ag->service, dtext, err));
}

/* Records one durable event (unless intake_insert_events already did), its
 * effect when valid, and its audit row. *inserted false: (agent, seq) was
 * already in `events`, and nothing else happened. */
static int
record_event(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev,
    const char *rejected, bool *inserted, coffer_err *err)
{
	int rv;
	*inserted = true;
	if (!in->events_inserted &&
	    ((rv = insert_event(in, ag, ev, rejected, inserted, err)) != 0 || !*inserted)) {
		return (rv);
	}
	if (rejected == NULL && (rv = apply_backup(in, ag, ev, err)) != 0) {
		return (rv);
	}
	return (audit_event(in, ag, ev, rejected, err));
}

/*
 * Inserts every durable event above mark into `events` in one statement.
 * The agent's row is locked, so nobody else inserts its events meanwhile
 * and every row must be new: a conflict means the catalog disagrees with the
 * agent's high-water mark. The unique index refuses it (COFFER_EPG), and the
 * envelope is retried the careful way, one event (and one savepoint) at a
 * time, where a resend is skipped. Without ON CONFLICT no row pays for a
 * probe of the index before its insert.
 */
int
intake_insert_events(coord_intake *in, const agent_row *ag, const Coffer__V1__EventBatch *b,
    int64_t mark, coffer_err *err)
{
	enum {
		C_SEQ,
		C_SERVICE,
		C_TYPE,
		C_PAYLOAD,
		C_SENT
	};
	coord_pgarray *c = in->ev_cols;
	for (int i = 0; i < 5; i++) {
		coord_pgarray_reset(&c[i]);
	}
	int want = 0;
	bool ok = true;
	for (size_t i = 0; i < b->n_events && ok; i++) {
		const Coffer__V1__Event *ev = b->events[i];
		if (ev->seq == 0 || (int64_t)ev->seq <= mark) {
			continue;
		}
		char why[200], seq[24], at[24];
		const char *rejected = intake_event_valid(ev, why, sizeof(why)) ? NULL : why;
		cJSON *p = intake_event_payload(ev);
		if (p != NULL && rejected != NULL) {
			cJSON_AddStringToObject(p, "rejected", rejected);
		}
		char *ptext = p != NULL ? cJSON_PrintUnformatted(p) : NULL;
		cJSON_Delete(p);
		snprintf(seq, sizeof(seq), "%" PRIu64, ev->seq);
		coffer_fmt_i64(at, ev->occurred_at_ms);
		ok = ptext != NULL && coord_pgarray_add(&c[C_SEQ], seq) &&
		    coord_pgarray_add(&c[C_SERVICE], ev->service) &&
		    coord_pgarray_add(&c[C_TYPE], coffer_wire_event_type(ev)) &&
		    coord_pgarray_add(&c[C_PAYLOAD], ptext) &&
		    (intake_ms_ok(ev->occurred_at_ms) ? coord_pgarray_add(&c[C_SENT], at)
		                                      : coord_pgarray_add_null(&c[C_SENT]));
		cJSON_free(ptext);
		want++;
	}
	if (!ok) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an envelope's events"));
	}
	if (want == 0) {
		return (0);
	}
	const char *vals[] = { ag->name, coord_pgarray_text(&c[C_SEQ]),
		coord_pgarray_text(&c[C_SERVICE]), coord_pgarray_text(&c[C_TYPE]),
		coord_pgarray_text(&c[C_PAYLOAD]), coord_pgarray_text(&c[C_SENT]) };
	int rv;
	PGresult *res = intake_cat_query(in, "recording the envelope's events",
	    "INSERT INTO events (agent, seq, service, type, payload, sent_at) "
	    "SELECT $1, e.seq, e.service, e.type, e.payload, "
	    "  timestamptz 'epoch' + e.sent_ms * interval '1 millisecond' "
	    "FROM unnest($2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::bigint[]) "
	    "  AS e(seq, service, type, payload, sent_ms)",
	    6, vals, &rv, err);
	if (res == NULL) {
		coffer_err_wrap(
		    err, "events of agent %s above its high-water mark %" PRId64, ag->name, mark);
		return (rv);
	}
	PQclear(res);
	return (0);
}

/*
 * One durable event. careful: inside a savepoint, so that when PostgreSQL
 * refuses its effect it is rolled back to the savepoint and recorded as
 * rejected. *outcome: 0 applied, 1 resend, 2 rejected.
 */
int
intake_apply_durable(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev,
    bool careful, int *outcome, coffer_err *err)
{
	char why[200];
	const char *rejected = intake_event_valid(ev, why, sizeof(why)) ? NULL : why;
	bool inserted;
	int rv;
	if (!careful) {
		rv = record_event(in, ag, ev, rejected, &inserted, err);
		if (rv == 0) {
			*outcome = !inserted ? 1 : rejected != NULL ? 2 : 0;
		}
		return (rv);
	}
	rv = intake_cat_exec(
	    in, "starting an event savepoint", "SAVEPOINT coffer_event", 0, NULL, err);
	if (rv != 0) {
		return (rv);
	}
	rv = record_event(in, ag, ev, rejected, &inserted, err);
	if (rv == COFFER_EPG && rejected == NULL) {
		snprintf(why, sizeof(why), "the catalog refused it: %.150s", err->msg);
		rejected = why;
		coffer_log_warn("event rejected", "agent=%s seq=%" PRIu64 " type=%s", ag->name,
		    ev->seq, coffer_wire_event_type(ev));
		coffer_err_clear(err);
		if ((rv = intake_cat_exec(in, "rolling back an event",
		         "ROLLBACK TO SAVEPOINT coffer_event", 0, NULL, err)) != 0) {
			return (rv);
		}
		rv = record_event(in, ag, ev, rejected, &inserted, err);
	}
	if (rv != 0) {
		return (rv);
	}
	*outcome = !inserted ? 1 : rejected != NULL ? 2 : 0;
	return (intake_cat_exec(
	    in, "releasing an event savepoint", "RELEASE SAVEPOINT coffer_event", 0, NULL, err));
}

/* Transient hello and heartbeat: the agent's status columns. */
int
intake_apply_transient(
    coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev, coffer_err *err)
{
	cJSON *p = intake_event_payload(ev);
	if (p == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an agent status"));
	}
	char *text = cJSON_PrintUnformatted(p);
	cJSON_Delete(p);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an agent status"));
	}
	if (ev->kind_case == COFFER__V1__EVENT__KIND_HELLO) {
		const char *vals[] = { ag->name, text };
		int rv = intake_cat_exec(in, "recording the agent's status",
		    "UPDATE agents SET hello = $2::jsonb, hello_at = now() WHERE name = $1", 2,
		    vals, err);
		cJSON_free(text);
		return (rv);
	}
	/* The state directory's columns follow every heartbeat, NULL from an
	 * agent that does not report them, so an old report never outlives a
	 * downgrade. */
	const Coffer__V1__Heartbeat *h = ev->heartbeat;
	char free_text[32], since_text[32];
	bool reported = h != NULL && h->state_dir_reported;
	uint64_t free_bytes = reported ? h->state_dir_free_bytes : 0;
	snprintf(free_text, sizeof(free_text), "%" PRIu64,
	    free_bytes > (uint64_t)INT64_MAX ? (uint64_t)INT64_MAX : free_bytes);
	snprintf(since_text, sizeof(since_text), "%" PRId64,
	    reported && h->state_dir_write_nospace ? h->state_dir_nospace_since_ms : 0);
	const char *vals[] = { ag->name, text, reported ? free_text : NULL,
		reported ? (h->state_dir_write_nospace ? "true" : "false") : NULL, since_text };
	int rv = intake_cat_exec(in, "recording the agent's status",
	    "UPDATE agents SET heartbeat = $2::jsonb, heartbeat_at = now(), "
	    "state_free_bytes = $3::bigint, state_write_nospace = $4::boolean, "
	    "state_nospace_since = CASE WHEN $4::boolean AND $5::bigint > 0 "
	    "THEN to_timestamp($5::bigint / 1000.0) END WHERE name = $1",
	    5, vals, err);
	cJSON_free(text);
	return (rv);
}
