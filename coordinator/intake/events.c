/*
 * Intake, one event on its own: whether a decoded Event can be applied
 * (intake_event_valid) and what it says as JSON (intake_event_payload: the
 * `events` row's payload and the agent's status columns). The request these
 * events arrive in is coordinator/intake/intake.h's.
 *
 * Pure functions of the protobuf: no catalog, no I/O, no state. So every
 * rule here is tested without PostgreSQL
 * (tests/unit/coordinator/intake/events_test.c), and a rule can be read in
 * one place rather than guessed from which SQL statement would fail.
 *
 * What it promises:
 * - intake_event_valid refuses, with a one-line reason, a durable event
 *   that breaks a rule of the catalog's schema that it can check without
 *   the catalog (ids, kinds, times, digests, sizes, LSNs, timelines).
 *   apply.c records such an event as rejected and acks it, instead of
 *   letting PostgreSQL fail the envelope's optimistic pass and force the
 *   slower careful one.
 * - Every agent string in a payload is cut to a bound (TEXT_MAX; 64 bytes
 *   for a WAL segment name) and made valid UTF-8 without control characters
 *   (coffer_utf8_clean), and lists are cut to LIST_MAX entries: jsonb
 *   refuses invalid UTF-8, and that refusal would turn one bad string into a
 *   stuck outbox, while the bounds keep a payload's size the coordinator's
 *   choice rather than the agent's.
 * - intake_event_payload returns NULL only when memory runs out.
 */
#include "coordinator/intake/intake_internal.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/hex.h"
#include "common/base/name.h"
#include "common/base/utf8.h"

#define LIST_MAX 256 /* entries kept of any list (WAL segments, drill checks) */
/* Unix ms of 9999-12-31: anything later (or <= 0) is not a time. */
#define MS_MAX INT64_C(253402300799999)

/* ---- untrusted text ---- */

bool
intake_digits_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9') {
			return (false);
		}
	}
	return (true);
}

/* PostgreSQL's pg_lsn text: 1-8 hex digits, '/', 1-8 hex digits. */
static bool
lsn_ok(const char *s)
{
	const char *slash = strchr(s, '/');
	if (slash == NULL) {
		return (false);
	}
	size_t a = (size_t)(slash - s), b = strlen(slash + 1);
	if (a < 1 || a > 8 || b < 1 || b > 8) {
		return (false);
	}
	for (const char *p = s; *p != '\0'; p++) {
		if (p != slash && strchr("0123456789abcdefABCDEF", *p) == NULL) {
			return (false);
		}
	}
	return (true);
}

bool
intake_ms_ok(int64_t ms)
{
	return (ms > 0 && ms <= MS_MAX);
}

/* ---- events ---- */

const char *
intake_kind_text(Coffer__V1__BackupKind k)
{
	return (k == COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL    ? "logical"
	        : k == COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL ? "physical"
	                                                             : NULL);
}

/* Adds a cleaned string; false on allocation failure. */
bool
intake_add_text(cJSON *obj, const char *key, const char *value)
{
	char *c = coffer_utf8_clean(value, TEXT_MAX);
	if (c == NULL) {
		return (false);
	}
	bool ok = cJSON_AddStringToObject(obj, key, c) != NULL;
	free(c);
	return (ok);
}

static void
add_hex(cJSON *obj, const char *key, const ProtobufCBinaryData *b)
{
	if (b->len == 0 || b->len > 64) {
		return;
	}
	char hex[129];
	coffer_hex_encode(b->data, b->len, hex);
	cJSON_AddStringToObject(obj, key, hex);
}

/* The event's content as a JSON object (the `payload` column). */
cJSON *
intake_event_payload(const Coffer__V1__Event *ev)
{
	cJSON *p = cJSON_CreateObject();
	if (p == NULL) {
		return (NULL);
	}
	bool ok = true;
	cJSON_AddNumberToObject(p, "occurred_at_ms", (double)ev->occurred_at_ms);
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_HELLO: {
		const Coffer__V1__AgentHello *h = ev->hello;
		ok = intake_add_text(p, "version", h->version) &&
		    intake_add_text(p, "pg_version", h->pg_version) &&
		    intake_add_text(p, "system_identifier", h->system_identifier) &&
		    intake_add_text(p, "hostname", h->hostname) &&
		    intake_add_text(p, "key_id", h->key_id);
		break;
	}
	case COFFER__V1__EVENT__KIND_HEARTBEAT: {
		const Coffer__V1__Heartbeat *h = ev->heartbeat;
		cJSON_AddNumberToObject(p, "outbox_depth", h->outbox_depth);
		ok = intake_add_text(p, "last_backup_id", h->last_backup_id) &&
		    intake_add_text(p, "last_archived_wal", h->last_archived_wal);
		cJSON_AddNumberToObject(p, "last_backup_at_ms", (double)h->last_backup_at_ms);
		cJSON_AddNumberToObject(p, "last_archived_at_ms", (double)h->last_archived_at_ms);
		cJSON_AddBoolToObject(p, "backup_running", h->backup_running);
		if (h->state_dir_reported) {
			cJSON_AddNumberToObject(
			    p, "state_dir_free_bytes", (double)h->state_dir_free_bytes);
			cJSON_AddBoolToObject(
			    p, "state_dir_write_nospace", h->state_dir_write_nospace);
			cJSON_AddNumberToObject(
			    p, "state_dir_nospace_since_ms", (double)h->state_dir_nospace_since_ms);
		}
		/* The archiver's own view (agent/report/archiver.h), for walwatch. */
		if (ok &&
		    (h->current_wal[0] != '\0' || h->archive_failed_count != 0 ||
		        h->last_archived_wal[0] != '\0')) {
			cJSON_AddNumberToObject(
			    p, "archive_failed_count", (double)h->archive_failed_count);
			ok = intake_add_text(p, "last_failed_wal", h->last_failed_wal) &&
			    intake_add_text(p, "current_wal", h->current_wal) &&
			    intake_add_text(p, "system_identifier", h->system_identifier);
			cJSON_AddNumberToObject(
			    p, "last_failed_at_ms", (double)h->last_failed_at_ms);
			cJSON_AddNumberToObject(p, "wal_ready_count", h->wal_ready_count);
			cJSON_AddNumberToObject(p, "timeline", h->timeline);
			if (h->wal_segment_size != 0) {
				cJSON_AddNumberToObject(p, "wal_segment_size", h->wal_segment_size);
			}
		}
		break;
	}
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED: {
		const Coffer__V1__BackupStarted *b = ev->backup_started;
		ok = intake_add_text(p, "backup_id", b->backup_id);
		cJSON_AddNumberToObject(p, "kind", b->kind);
		cJSON_AddNumberToObject(p, "trigger", b->trigger);
		cJSON_AddNumberToObject(p, "command_id", (double)b->command_id);
		break;
	}
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED: {
		const Coffer__V1__BackupCompleted *b = ev->backup_completed;
		ok = intake_add_text(p, "backup_id", b->backup_id) &&
		    intake_add_text(p, "key_id", b->key_id) &&
		    intake_add_text(p, "repository", b->repository) &&
		    intake_add_text(p, "pg_version", b->pg_version) &&
		    intake_add_text(p, "system_identifier", b->system_identifier) &&
		    intake_add_text(p, "start_lsn", b->start_lsn) &&
		    intake_add_text(p, "stop_lsn", b->stop_lsn);
		cJSON_AddNumberToObject(p, "kind", b->kind);
		cJSON_AddNumberToObject(p, "started_at_ms", (double)b->started_at_ms);
		cJSON_AddNumberToObject(p, "finished_at_ms", (double)b->finished_at_ms);
		cJSON_AddNumberToObject(p, "plain_bytes", (double)b->plain_bytes);
		cJSON_AddNumberToObject(p, "stored_bytes", (double)b->stored_bytes);
		cJSON_AddNumberToObject(p, "timeline", b->timeline);
		add_hex(p, "plain_sha256", &b->plain_sha256);
		add_hex(p, "stored_sha256", &b->stored_sha256);
		add_hex(p, "manifest_sha256", &b->manifest_sha256);
		break;
	}
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED: {
		const Coffer__V1__BackupFailed *b = ev->backup_failed;
		ok = intake_add_text(p, "backup_id", b->backup_id) &&
		    intake_add_text(p, "reason", b->reason) &&
		    intake_add_text(p, "stage", b->stage);
		cJSON_AddNumberToObject(p, "kind", b->kind);
		cJSON_AddNumberToObject(p, "started_at_ms", (double)b->started_at_ms);
		cJSON_AddNumberToObject(p, "failed_at_ms", (double)b->failed_at_ms);
		break;
	}
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED: {
		const Coffer__V1__WalArchived *w = ev->wal_archived;
		ok = intake_add_text(p, "system_identifier", w->system_identifier);
		cJSON_AddNumberToObject(p, "timeline", w->timeline);
		cJSON_AddNumberToObject(p, "stored_bytes", (double)w->stored_bytes);
		cJSON_AddNumberToObject(p, "last_archived_at_ms", (double)w->last_archived_at_ms);
		cJSON_AddNumberToObject(p, "segment_count", (double)w->n_segments);
		cJSON *segs = cJSON_AddArrayToObject(p, "segments");
		for (size_t i = 0; ok && segs != NULL && i < w->n_segments && i < LIST_MAX; i++) {
			char *c = coffer_utf8_clean(w->segments[i], 64);
			ok = c != NULL;
			if (ok) {
				cJSON_AddItemToArray(segs, cJSON_CreateString(c));
			}
			free(c);
		}
		for (size_t i = 0; ok && i < w->n_segment_conflicts && i < LIST_MAX; i++) {
			if (w->segment_conflicts[i][0] != '\0') {
				ok = intake_add_text(p, "conflict", w->segment_conflicts[i]) &&
				    intake_add_text(p, "object_name", w->segment_object_names[i]);
				break;
			}
		}
		break;
	}
	case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED: {
		const Coffer__V1__RestoreCompleted *r = ev->restore_completed;
		ok = intake_add_text(p, "backup_id", r->backup_id) &&
		    intake_add_text(p, "target", r->target) &&
		    intake_add_text(p, "detail", r->detail);
		cJSON_AddBoolToObject(p, "ok", r->ok);
		cJSON_AddNumberToObject(p, "duration_ms", (double)r->duration_ms);
		break;
	}
	case COFFER__V1__EVENT__KIND_DRILL_RESULT: {
		const Coffer__V1__DrillResult *d = ev->drill_result;
		ok = intake_add_text(p, "backup_id", d->backup_id) &&
		    intake_add_text(p, "repository", d->repository) &&
		    intake_add_text(p, "sandbox", d->sandbox);
		cJSON_AddNumberToObject(p, "drill_id", (double)d->drill_id);
		cJSON_AddBoolToObject(p, "ok", d->ok);
		cJSON_AddNumberToObject(p, "restore_ms", (double)d->restore_ms);
		cJSON_AddNumberToObject(p, "total_ms", (double)d->total_ms);
		cJSON *checks = cJSON_AddArrayToObject(p, "checks");
		for (size_t i = 0; ok && checks != NULL && i < d->n_checks && i < LIST_MAX; i++) {
			cJSON *c = cJSON_CreateObject();
			ok = c != NULL && intake_add_text(c, "name", d->checks[i]->name) &&
			    intake_add_text(c, "detail", d->checks[i]->detail);
			if (c != NULL) {
				cJSON_AddBoolToObject(c, "ok", d->checks[i]->ok);
				cJSON_AddItemToArray(checks, c);
			}
		}
		break;
	}
	case COFFER__V1__EVENT__KIND_COMMAND_DONE: {
		const Coffer__V1__CommandDone *c = ev->command_done;
		ok = intake_add_text(p, "detail", c->detail) &&
		    intake_add_text(p, "backup_id", c->backup_id);
		cJSON_AddNumberToObject(p, "command_id", (double)c->command_id);
		cJSON_AddBoolToObject(p, "ok", c->ok);
		break;
	}
	default:
		break;
	}
	if (!ok) {
		cJSON_Delete(p);
		return (NULL);
	}
	return (p);
}

/* The backup id an event is about, or NULL. */
const char *
intake_event_backup_id(const Coffer__V1__Event *ev)
{
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		return (ev->backup_started->backup_id);
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED:
		return (ev->backup_completed->backup_id);
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED:
		return (ev->backup_failed->backup_id);
	default:
		return (NULL);
	}
}

/* Checks a durable event against what the catalog will accept; fills why
 * and returns false when it cannot be applied. */
bool
intake_event_valid(const Coffer__V1__Event *ev, char *why, size_t size)
{
	const char *id = intake_event_backup_id(ev);
	if (id != NULL && !coffer_name_id_valid(id)) {
		snprintf(why, size, "backup id is not 1-128 of [A-Za-z0-9_.:-]");
		return (false);
	}
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		if (intake_kind_text(ev->backup_started->kind) == NULL) {
			snprintf(why, size, "backup kind is not logical or physical");
			return (false);
		}
		break;
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED: {
		const Coffer__V1__BackupCompleted *b = ev->backup_completed;
		if (intake_kind_text(b->kind) == NULL) {
			snprintf(why, size, "backup kind is not logical or physical");
		} else if (!intake_ms_ok(b->started_at_ms) || !intake_ms_ok(b->finished_at_ms) ||
		    b->finished_at_ms < b->started_at_ms) {
			snprintf(why, size, "start and finish times are missing or out of order");
		} else if (b->stored_sha256.len != 32 ||
		    (b->plain_sha256.len != 0 && b->plain_sha256.len != 32) ||
		    (b->manifest_sha256.len != 0 && b->manifest_sha256.len != 32)) {
			snprintf(why, size, "a SHA-256 digest is missing or not 32 bytes");
		} else if (b->key_id[0] == '\0' || strlen(b->key_id) > 128) {
			snprintf(why, size, "key id is missing or too long");
		} else if (b->repository[0] != '\0' && !coffer_name_valid(b->repository)) {
			snprintf(why, size, "repository name is not " COFFER_NAME_RULE);
		} else if (b->plain_bytes > INT64_MAX || b->stored_bytes > INT64_MAX) {
			snprintf(why, size, "sizes are out of range");
		} else if ((b->start_lsn[0] != '\0' && !lsn_ok(b->start_lsn)) ||
		    (b->stop_lsn[0] != '\0' && !lsn_ok(b->stop_lsn))) {
			snprintf(why, size, "an LSN is not of the form X/X");
		} else if (b->timeline > INT32_MAX) {
			snprintf(why, size, "timeline is out of range");
		} else {
			return (true);
		}
		return (false);
	}
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED: {
		const Coffer__V1__BackupFailed *b = ev->backup_failed;
		if (intake_kind_text(b->kind) == NULL) {
			snprintf(why, size, "backup kind is not logical or physical");
			return (false);
		}
		if ((b->started_at_ms != 0 && !intake_ms_ok(b->started_at_ms)) ||
		    (b->failed_at_ms != 0 && !intake_ms_ok(b->failed_at_ms))) {
			snprintf(why, size, "a time is out of range");
			return (false);
		}
		break;
	}
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED: {
		const Coffer__V1__WalArchived *w = ev->wal_archived;
		bool digests = w->n_segment_sha256 != 0 || w->n_segment_stored_bytes != 0;
		if (w->timeline == 0 || w->timeline > INT32_MAX) {
			snprintf(why, size, "timeline is missing or out of range");
		} else if (digests &&
		    (w->n_segment_sha256 != w->n_segments ||
		        w->n_segment_stored_bytes != w->n_segments)) {
			snprintf(why, size, "segment digests and sizes do not match the segments");
		} else if ((w->n_segment_object_names != 0 || w->n_segment_conflicts != 0) &&
		    (w->n_segment_object_names != w->n_segments ||
		        w->n_segment_conflicts != w->n_segments)) {
			snprintf(why, size, "object names and conflicts do not match the segments");
		} else {
			for (size_t i = 0; i < w->n_segment_object_names; i++) {
				if (!intake_wal_object_name(
				        w->segments[i], w->segment_object_names[i]) ||
				    strlen(w->segment_conflicts[i]) > 1024) {
					snprintf(why, size,
					    "an object name is not the segment's alternate name, "
					    "or a conflict is over 1024 bytes");
					return (false);
				}
			}
			for (size_t i = 0; digests && i < w->n_segments; i++) {
				if (w->segment_sha256[i].len != 32 ||
				    w->segment_stored_bytes[i] > INT64_MAX) {
					snprintf(why, size,
					    "a segment digest is not 32 bytes or its "
					    "size is out of range");
					return (false);
				}
			}
			return (true);
		}
		return (false);
	}
	default:
		break;
	}
	return (true);
}

/* A WAL segment's file name (not a history or backup-label file), which is
 * what wal_segments tracks. */
bool
intake_wal_segment_name(const char *s)
{
	size_t n = strlen(s);
	if (n != 24 && !(n == 32 && strcmp(s + 24, ".partial") == 0)) {
		return (false);
	}
	for (size_t i = 0; i < 24; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) {
			return (false);
		}
	}
	return (true);
}

bool
intake_wal_object_name(const char *segment, const char *object)
{
	if (object[0] == '\0') {
		return (true);
	}
	size_t n = strlen(segment), alt = sizeof(".alt-") - 1;
	if (n == 0 || n > 40 || strncmp(object, segment, n) != 0 ||
	    strncmp(object + n, ".alt-", alt) != 0 || strlen(object + n + alt) != 32) {
		return (false);
	}
	for (const char *c = object + n + alt; *c != '\0'; c++) {
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) {
			return (false);
		}
	}
	return (true);
}
