/*
 * The JSON shape of the objects several commands print (docs/JSON.md, one
 * JSON Schema per object under docs/schema/). One emitter per object, shared
 * by every program that prints it, so `coffer-agent list` and `coffer
 * backups list` cannot name one field two ways again.
 *
 * A field is present with its type, null where this producer knows the
 * field but has no value (a running backup's finished_at), or absent where
 * this producer never knows it (the agent knows no catalog status).
 */
#ifndef COFFER_COMMON_BASE_OBJECTS_H
#define COFFER_COMMON_BASE_OBJECTS_H

#include <cjson/cJSON.h>
#include <stdint.h>

/* For numbers and times (Unix ms): absent, or null. */
#define COFFER_OBJ_ABSENT INT64_MIN
#define COFFER_OBJ_NULL   (INT64_MIN + 1)

/* For text: NULL is absent; COFFER_OBJ_NULL_TEXT is null. */
extern const char COFFER_OBJ_NULL_TEXT[];

/* A backup, as the agent reads it from its manifest or the coordinator from
 * its catalog (docs/schema/backup.json). Set every field: start from
 * coffer_obj_backup_init. */
typedef struct coffer_obj_backup {
	const char *id;
	const char *service;
	const char *kind;         /* logical | physical */
	const char *agent;        /* the agent that took it */
	const char *status;       /* coordinator: the catalog's status */
	const char *verify_state; /* coordinator: unverified | verified | rejected */
	const char *repository;   /* coordinator: primary | dr */
	int64_t started_at_ms;    /* times: Unix ms, printed as RFC 3339 UTC */
	int64_t finished_at_ms;
	int64_t settled_at_ms; /* coordinator: when it learnt the outcome */
	int64_t age_seconds;   /* coordinator status: now - settled_at */
	int64_t duration_ms;
	int64_t plaintext_bytes;
	int64_t stored_bytes;
	int64_t tables; /* agent: tables in a logical backup */
	const char *key_id;
	const char *failure_reason; /* coordinator */
	const char *manifest;       /* agent: valid | invalid */
	const char *error;          /* agent: why the manifest is invalid */
	/* Physical backups, from the agent's manifest: the cluster, its
	 * timeline and the WAL range a restore needs. */
	const char *system_identifier; /* decimal text: it exceeds a double */
	int64_t timeline;
	const char *lsn_start;
	const char *lsn_stop;
	/* The backup a restore must apply first: null while every backup is
	 * whole (incremental backups will name theirs). */
	const char *parent;
} coffer_obj_backup;

/* Every field absent. */
void coffer_obj_backup_init(coffer_obj_backup *b);

/* A new JSON object for b, or NULL on out of memory. */
cJSON *coffer_obj_backup_json(const coffer_obj_backup *b);

#endif
