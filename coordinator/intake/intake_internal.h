/*
 * Intake's private half: what intake.c (the request and its verdicts),
 * events.c (one event's shape and payload) and apply.c (one event's effect
 * on the catalog) share. Only those files and the intake's unit tests
 * include it; the rest of the coordinator sees coordinator/intake/intake.h
 * alone, so splitting the intake into three files changed nothing for a
 * caller, and a change here cannot reach past this folder. The functions
 * below are intake_* because the linker sees them all the same, and a
 * short name like ms_ok would meet another file's one day.
 */
#ifndef COFFER_COORDINATOR_INTAKE_INTAKE_INTERNAL_H
#define COFFER_COORDINATOR_INTAKE_INTAKE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "common/wire/wire.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/drill/drills.h"
#include "coordinator/intake/gate.h"
#include "coordinator/intake/intake.h"
#include "coordinator/intake/skew.h"

#define TEXT_MAX 1024 /* bytes kept of any one free-text field from an agent */

/* Commands handed to an agent in one reply, at most. */
#define INTAKE_MAX_COMMANDS 8

typedef struct pending_command {
	uint64_t id;
	Coffer__V1__BackupKind kind;
	char requested_by[80];
} pending_command;

struct coord_intake {
	coord_catalog *cat;
	coord_gate *gate; /* NULL: every refusal recorded at once (tests, tools) */
	/* The request's signature already verified against the directory's
	 * key for the agent (coord_gate_agent): process() skips it when the
	 * row holds the same key. */
	bool sig_verified;
	uint8_t sig_key[COFFER_SIGN_PUBKEY_BYTES];
	coord_audit_key key;
	size_t max_msg;
	coffer_wire_arena env_arena;
	coffer_wire_arena body_arena;
	/* Commands for the agent of the request being answered (filled inside
	 * its transaction, sent only if that transaction commits). */
	pending_command cmds[INTAKE_MAX_COMMANDS];
	size_t n_cmds;
	coord_drill_commands drill_cmds; /* a drill runner's RunDrills */
	/* The audit rows of the envelope being applied, appended together just
	 * before its transaction commits (one round trip, not one per event).
	 * details are owned (cJSON_free); the other fields point into the
	 * request or the agent row, which outlive the append. */
	coord_audit_entry *audit_rows;
	size_t n_audit, cap_audit;
	/* The envelope's durable events went into `events` in one statement
	 * (intake_insert_events); record_event only applies and audits them. */
	bool events_inserted;
	/* Backups recorded complete in the transaction being built. */
	unsigned n_completed;
	coord_pgarray ev_cols[5];
	/* backup.started events waiting to become `backups` rows in one
	 * statement (intake_started_flush), in envelope order: flushed before
	 * any other effect of the envelope, so a later event about the same
	 * backup finds its row. Only outside careful mode, where a refusal fails
	 * the envelope and it is retried one event at a time. */
	coord_pgarray started_cols[3];
	size_t n_started;
	/* Our clock when the request being handled arrived: the other end of
	 * each clock skew sample (skew.h). */
	int64_t received_ms;
};

/* The agent's row, read under its lock. */
typedef struct agent_row {
	char name[72];
	char service[72];
	uint8_t pubkey[COFFER_SIGN_PUBKEY_BYTES];
	bool revoked;
	int64_t last_seq;          /* durable event high-water mark */
	int64_t last_envelope_seq; /* last accepted envelope */
	bool drill_runner;         /* role drill_runner: no service of its own */
	coord_skew skew;           /* its clock skew estimate (skew.h) */
} agent_row;

/* A verdict while checking: status and the one-line reason. */
typedef struct verdict {
	int status;
	char error[256];
} verdict;

void intake_verdict_set(verdict *v, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- intake.c: the catalog and the audit rows of one envelope ---- */

/* One statement (sql: a literal), prepared once per connection; the result,
 * or NULL with *rv and err set (COFFER_EPG or COFFER_EUNAVAIL). */
PGresult *intake_cat_query(coord_intake *in, const char *what, const char *sql, int n,
    const char *const *vals, int *rv, coffer_err *err);
int intake_cat_exec(coord_intake *in, const char *what, const char *sql, int n,
    const char *const *vals, coffer_err *err);
/* Queues an audit row for the envelope's one append before its commit;
 * takes details (cJSON_free'd later) whatever happens. */
int intake_audit_rows_add(coord_intake *in, const char *actor, const char *action,
    const char *subject, char *details, coffer_err *err);

/* ---- events.c: one event, no catalog ---- */

/* object is "" or segment's alternate name, "<segment>.alt-<32 hex>"
 * (agent/backup/wal.h). */
bool intake_wal_object_name(const char *segment, const char *object);
/* 1..max decimal digits and nothing else. */
bool intake_digits_ok(const char *s, size_t max);
/* A Unix time in ms the catalog can hold: after 1970, up to 9999-12-31. */
bool intake_ms_ok(int64_t ms);
/* The `events.type` of ev ("backup.completed"; "unknown" for a kind this
 * coordinator does not know). */
/* "logical" or "physical", NULL for anything else. */
const char *intake_kind_text(Coffer__V1__BackupKind k);
/* Adds value cleaned and cut to TEXT_MAX; false when memory runs out. */
bool intake_add_text(cJSON *obj, const char *key, const char *value);
/* ev's content as a new JSON object (cJSON_Delete); NULL when memory runs
 * out. */
cJSON *intake_event_payload(const Coffer__V1__Event *ev);
/* The backup id ev is about (started, completed, failed), else NULL;
 * unchecked. */
const char *intake_event_backup_id(const Coffer__V1__Event *ev);
/* Whether the catalog can take durable event ev; when not, the reason in
 * why (size bytes). */
bool intake_event_valid(const Coffer__V1__Event *ev, char *why, size_t size);
/* A WAL segment's file name (24 upper-case hex digits, or that and
 * ".partial"), not a history or backup-label file. */
bool intake_wal_segment_name(const char *s);

/* ---- apply.c: one event into the catalog (inside the caller's
 * transaction) ---- */

/* Sets v to NOT_OWNER when a new durable event of b (seq above mark) is
 * about another service's backup. */
int intake_check_backup_owners(coord_intake *in, const agent_row *ag,
    const Coffer__V1__EventBatch *b, int64_t mark, verdict *v, coffer_err *err);
/* Writes the queued backup.started rows; before anything that may read
 * them. */
int intake_started_flush(coord_intake *in, const agent_row *ag, coffer_err *err);
/* Every durable event of b above mark into `events`, one statement. */
int intake_insert_events(coord_intake *in, const agent_row *ag, const Coffer__V1__EventBatch *b,
    int64_t mark, coffer_err *err);
/* One durable event above the mark; *outcome 0 applied, 1 resend,
 * 2 rejected. careful: inside its own savepoint. */
int intake_apply_durable(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev,
    bool careful, int *outcome, coffer_err *err);
/* A hello or heartbeat: the agent's status columns. */
int intake_apply_transient(
    coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev, coffer_err *err);

#endif
