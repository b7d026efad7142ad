#include "common/base/objects.h"

#include <stdbool.h>

#include "common/base/clock.h"

const char COFFER_OBJ_NULL_TEXT[] = "\0null";

static bool
add_text(cJSON *o, const char *name, const char *v)
{
	if (v == NULL) {
		return (true);
	}
	if (v == COFFER_OBJ_NULL_TEXT) {
		return (cJSON_AddNullToObject(o, name) != NULL);
	}
	return (cJSON_AddStringToObject(o, name, v) != NULL);
}

static bool
add_int(cJSON *o, const char *name, int64_t v)
{
	if (v == COFFER_OBJ_ABSENT) {
		return (true);
	}
	if (v == COFFER_OBJ_NULL) {
		return (cJSON_AddNullToObject(o, name) != NULL);
	}
	return (cJSON_AddNumberToObject(o, name, (double)v) != NULL);
}

static bool
add_time(cJSON *o, const char *name, int64_t ms)
{
	if (ms == COFFER_OBJ_ABSENT) {
		return (true);
	}
	if (ms == COFFER_OBJ_NULL) {
		return (cJSON_AddNullToObject(o, name) != NULL);
	}
	char buf[40];
	return (cJSON_AddStringToObject(o, name, coffer_time_format(buf, sizeof(buf), ms)) != NULL);
}

void
coffer_obj_backup_init(coffer_obj_backup *b)
{
	*b = (coffer_obj_backup) {
		.started_at_ms = COFFER_OBJ_ABSENT,
		.finished_at_ms = COFFER_OBJ_ABSENT,
		.settled_at_ms = COFFER_OBJ_ABSENT,
		.age_seconds = COFFER_OBJ_ABSENT,
		.duration_ms = COFFER_OBJ_ABSENT,
		.plaintext_bytes = COFFER_OBJ_ABSENT,
		.stored_bytes = COFFER_OBJ_ABSENT,
		.tables = COFFER_OBJ_ABSENT,
		.timeline = COFFER_OBJ_ABSENT,
	};
}

cJSON *
coffer_obj_backup_json(const coffer_obj_backup *b)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL) {
		return (NULL);
	}
	/* In the order docs/JSON.md lists them. */
	bool ok = add_text(o, "id", b->id) && add_text(o, "service", b->service) &&
	    add_text(o, "kind", b->kind) && add_text(o, "agent", b->agent) &&
	    add_text(o, "status", b->status) && add_text(o, "verify_state", b->verify_state) &&
	    add_text(o, "repository", b->repository) &&
	    add_time(o, "started_at", b->started_at_ms) &&
	    add_time(o, "finished_at", b->finished_at_ms) &&
	    add_time(o, "settled_at", b->settled_at_ms) &&
	    add_int(o, "age_seconds", b->age_seconds) &&
	    add_int(o, "duration_ms", b->duration_ms) &&
	    add_int(o, "plaintext_bytes", b->plaintext_bytes) &&
	    add_int(o, "stored_bytes", b->stored_bytes) && add_int(o, "tables", b->tables) &&
	    add_text(o, "key_id", b->key_id) && add_text(o, "failure_reason", b->failure_reason) &&
	    add_text(o, "manifest", b->manifest) && add_text(o, "error", b->error) &&
	    add_text(o, "system_identifier", b->system_identifier) &&
	    add_int(o, "timeline", b->timeline) && add_text(o, "lsn_start", b->lsn_start) &&
	    add_text(o, "lsn_stop", b->lsn_stop) && add_text(o, "parent", b->parent);
	if (!ok) {
		cJSON_Delete(o);
		return (NULL);
	}
	return (o);
}
