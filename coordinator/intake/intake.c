/*
 * Intake: checks and applies one agent envelope; see coordinator/intake/intake.h.
 * This file is the request and its verdicts; what an event must look like is
 * events.c's, and what each event does to the catalog is apply.c's.
 *
 * Design notes.
 * The agent's row is locked (SELECT ... FOR UPDATE) at the start of the
 * transaction and every later check and write happens under that lock, so
 * two requests of one agent (two coordinators, or a retry racing its
 * original) serialise: the replay check and the high-water marks can never
 * both pass for the same seq.
 *
 * Order of checks. The envelope is decoded and shape-checked first; the
 * body (a Request) is decoded only after the signature verified, so bytes
 * from someone without an enrolled key never reach the body decoder.
 *
 * Optimistic first, careful on failure. An envelope is first applied with
 * no savepoints (each costs two round trips per event). When PostgreSQL
 * refuses a statement (a constraint the C checks did not foresee), the
 * whole transaction is rolled back and the envelope is applied again with
 * every durable event inside its own SAVEPOINT (intake_apply_durable): the
 * event that fails is rolled back to its savepoint and recorded as rejected
 * instead, so the rest of the envelope still commits and the agent still
 * gets its ack. Only a lost connection, or a failure to record even the
 * rejection, aborts the envelope (STATUS_UNAVAILABLE or STATUS_INTERNAL;
 * the agent retries and nothing was applied).
 *
 * Refusals are counted in `refusals` keyed by (reason, claimed agent name),
 * as migration 1 intends, so an operator sees which stranger keeps knocking.
 * The name is printable ASCII cut to 71 bytes; an envelope that does not
 * decode has no name and counts under "". A sender inventing names grows
 * this table by one row per name, no faster than the audit log grows by one
 * row per refusal anyway.
 *
 * Text from agents is untrusted: every string that reaches PostgreSQL or
 * JSON is cut to a bound and made valid UTF-8 without control characters
 * first (coffer_utf8_clean; events.c for an event's fields), since
 * PostgreSQL refuses invalid UTF-8 and a refusal there would turn one bad
 * string into a stuck outbox.
 */
#include "coordinator/intake/intake.h"
#include "coordinator/intake/intake_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/base/name.h"
#include "common/base/utf8.h"
#include "common/crypto/sign.h"
#include "common/wire/wire.h"
#include "coordinator/drill/drills.h"
#include "coordinator/intake/gate.h"

#define ACTOR_COORDINATOR "coordinator"

void
intake_verdict_set(verdict *v, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	v->status = status;
	vsnprintf(v->error, sizeof(v->error), fmt, ap);
	va_end(ap);
}

const char *
coord_intake_reason(int status)
{
	switch (status) {
	case COFFER__V1__STATUS__STATUS_OK:
		return ("ok");
	case COFFER__V1__STATUS__STATUS_MALFORMED:
		return ("malformed");
	case COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT:
		return ("unknown_agent");
	case COFFER__V1__STATUS__STATUS_REVOKED:
		return ("revoked");
	case COFFER__V1__STATUS__STATUS_BAD_SIGNATURE:
		return ("bad_signature");
	case COFFER__V1__STATUS__STATUS_REPLAYED:
		return ("replayed");
	case COFFER__V1__STATUS__STATUS_NOT_OWNER:
		return ("not_owner");
	case COFFER__V1__STATUS__STATUS_UNAVAILABLE:
		return ("unavailable");
	case COFFER__V1__STATUS__STATUS_REFUSED:
		return ("refused");
	case COFFER__V1__STATUS__STATUS_UNAUTHORIZED:
		return ("unauthorized");
	default:
		return ("internal");
	}
}

/* ---- catalog helpers ---- */

/* One statement (sql: a literal), prepared once per connection; returns the
 * result when it succeeded, else NULL with err set (COFFER_EPG or
 * COFFER_EUNAVAIL). */
PGresult *
intake_cat_query(coord_intake *in, const char *what, const char *sql, int n,
    const char *const *vals, int *rv, coffer_err *err)
{
	return (coord_catalog_query(in->cat, sql, n, vals, what, rv, err));
}

int
intake_cat_exec(coord_intake *in, const char *what, const char *sql, int n, const char *const *vals,
    coffer_err *err)
{
	int rv;
	PGresult *res = intake_cat_query(in, what, sql, n, vals, &rv, err);
	PQclear(res);
	return (rv);
}

/* ---- audit rows of one envelope ---- */

static void
audit_rows_clear(coord_intake *in)
{
	for (size_t i = 0; i < in->n_audit; i++) {
		cJSON_free((void *)in->audit_rows[i].details);
	}
	in->n_audit = 0;
}

/* Queues a row; takes details (cJSON_free'd later) whatever happens. */
int
intake_audit_rows_add(coord_intake *in, const char *actor, const char *action, const char *subject,
    char *details, coffer_err *err)
{
	if (in->n_audit == in->cap_audit) {
		size_t cap = in->cap_audit != 0 ? 2 * in->cap_audit : 32;
		coord_audit_entry *rows = realloc(in->audit_rows, cap * sizeof(*rows));
		if (rows == NULL) {
			cJSON_free(details);
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
		}
		in->audit_rows = rows;
		in->cap_audit = cap;
	}
	in->audit_rows[in->n_audit++] = (coord_audit_entry) { actor, action, subject, details };
	return (0);
}

static int
audit_rows_flush(coord_intake *in, coffer_err *err)
{
	int rv = coord_audit_append_many(in->cat, &in->key, in->audit_rows, in->n_audit, NULL, err);
	audit_rows_clear(in);
	return (rv);
}

/* ---- lifecycle ---- */

int
coord_intake_new(coord_catalog *cat, const coord_audit_key *key, size_t max_msg, coord_intake **out,
    coffer_err *err)
{
	*out = NULL;
	coord_intake *in = calloc(1, sizeof(*in));
	if (in == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the request intake"));
	}
	in->cat = cat;
	in->key = *key;
	in->max_msg = max_msg != 0 ? max_msg : COFFER_WIRE_MAX_MSG;
	int rv = coffer_wire_arena_init(&in->env_arena, in->max_msg, err);
	if (rv == 0) {
		rv = coffer_wire_arena_init(&in->body_arena, in->max_msg, err);
		if (rv != 0) {
			coffer_wire_arena_fini(&in->env_arena);
		}
	}
	if (rv != 0) {
		OPENSSL_cleanse(&in->key, sizeof(in->key));
		free(in);
		return (rv);
	}
	*out = in;
	return (0);
}

void
coord_intake_set_gate(coord_intake *in, coord_gate *gate)
{
	in->gate = gate;
}

void
coord_intake_free(coord_intake *in)
{
	if (in == NULL) {
		return;
	}
	coffer_wire_arena_fini(&in->env_arena);
	coffer_wire_arena_fini(&in->body_arena);
	audit_rows_clear(in);
	free(in->audit_rows);
	for (size_t i = 0; i < sizeof(in->ev_cols) / sizeof(in->ev_cols[0]); i++) {
		coord_pgarray_free(&in->ev_cols[i]);
	}
	for (size_t i = 0; i < sizeof(in->started_cols) / sizeof(in->started_cols[0]); i++) {
		coord_pgarray_free(&in->started_cols[i]);
	}
	OPENSSL_cleanse(&in->key, sizeof(in->key));
	free(in);
}

/* ---- replies ---- */

static int
encode_reply(coord_intake *in, int status, const char *error, uint64_t env_seq, uint64_t acked,
    uint8_t **out, size_t *out_len, coffer_err *err)
{
	Coffer__V1__Reply rep = COFFER__V1__REPLY__INIT;
	char *line = coffer_utf8_clean(error, 255);
	if (line == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a reply"));
	}
	rep.status = (Coffer__V1__Status)status;
	rep.error = line;
	rep.envelope_seq = env_seq;
	rep.acked_event_seq = acked;
	rep.server_time_ms = coffer_clock_now(NULL);
	Coffer__V1__Command cmds[INTAKE_MAX_COMMANDS];
	Coffer__V1__RunBackup runs[INTAKE_MAX_COMMANDS];
	Coffer__V1__Command *cmd_ptrs[INTAKE_MAX_COMMANDS + COORD_DRILLS_MAX_COMMANDS];
	if (status == COFFER__V1__STATUS__STATUS_OK) {
		for (size_t i = 0; i < in->n_cmds; i++) {
			coffer__v1__command__init(&cmds[i]);
			coffer__v1__run_backup__init(&runs[i]);
			runs[i].kind = in->cmds[i].kind;
			runs[i].requested_by = in->cmds[i].requested_by;
			cmds[i].id = in->cmds[i].id;
			cmds[i].kind_case = COFFER__V1__COMMAND__KIND_RUN_BACKUP;
			cmds[i].run_backup = &runs[i];
			cmd_ptrs[i] = &cmds[i];
		}
		rep.n_commands = in->n_cmds;
		for (size_t i = 0; i < in->drill_cmds.n; i++) {
			cmd_ptrs[rep.n_commands++] = in->drill_cmds.cmds[i];
		}
		rep.commands = cmd_ptrs;
	}
	int rv = coffer_wire_encode(&rep.base, in->max_msg, out, out_len, err);
	in->n_cmds = 0;
	coord_drills_commands_clear(&in->drill_cmds);
	free(line);
	return (rv);
}

int
coord_intake_reply_status(coord_intake *in, const uint8_t *req, size_t len, int status,
    const char *error, uint8_t **reply, size_t *reply_len, coffer_err *err)
{
	uint64_t seq = 0;
	coffer_err ignored;
	Coffer__V1__Envelope *env = (Coffer__V1__Envelope *)coffer_wire_decode(
	    &coffer__v1__envelope__descriptor, &in->env_arena, req, len, in->max_msg, &ignored);
	if (env != NULL) {
		seq = env->seq;
	}
	int rv = encode_reply(in, status, error, seq, 0, reply, reply_len, err);
	coffer_wire_arena_reset(&in->env_arena);
	return (rv);
}

/* ---- refusals ---- */

/*
 * Counts and audits one refusal in its own transaction. agent is the claimed
 * name (printable already; "" when the envelope did not decode).
 * Returns 0, or the catalog's error when it could not be recorded.
 */
static int
record_refusal(coord_intake *in, const verdict *v, const char *agent, uint64_t env_seq,
    const char *peer, coffer_err *err)
{
	const char *reason = coord_intake_reason(v->status);
	char detail[400];
	snprintf(detail, sizeof(detail), "%s", v->error);
	char *clean = coffer_utf8_clean(detail, 1000);
	cJSON *d = cJSON_CreateObject();
	char *details = NULL;
	int rv = 0;
	if (clean == NULL || d == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory to record a refusal");
		goto out;
	}
	cJSON_AddStringToObject(d, "reason", reason);
	cJSON_AddStringToObject(d, "error", clean);
	cJSON_AddStringToObject(d, "agent", agent);
	cJSON_AddNumberToObject(d, "envelope_seq", (double)env_seq);
	if (peer != NULL && peer[0] != '\0') {
		char p[80];
		coffer_utf8_printable_ascii(p, sizeof(p), peer);
		cJSON_AddStringToObject(d, "peer", p);
	}
	details = cJSON_PrintUnformatted(d);
	if (details == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory to record a refusal");
		goto out;
	}
	if ((rv = coord_catalog_begin(in->cat, err)) != 0) {
		goto out;
	}
	const char *vals[] = { reason, agent, clean };
	rv = intake_cat_exec(in, "counting a refused request",
	    "INSERT INTO refusals (reason, agent, last_detail) VALUES ($1, $2, $3) "
	    "ON CONFLICT (reason, agent) DO UPDATE SET count = refusals.count + 1, "
	    "last_at = now(), last_detail = EXCLUDED.last_detail",
	    3, vals, err);
	if (rv == 0) {
		rv = coord_audit_append(in->cat, &in->key, ACTOR_COORDINATOR, "request.refused",
		    agent, details, NULL, err);
	}
	if (rv == 0) {
		rv = coord_catalog_commit(in->cat, err);
	}
	if (rv != 0) {
		coord_catalog_rollback(in->cat);
	}
out:
	free(clean);
	cJSON_Delete(d);
	cJSON_free(details);
	return (rv);
}

/* ---- the agent row ---- */

/* Reads and locks the agent's row. *found false when not enrolled. */
static int
load_agent(coord_intake *in, const char *name, agent_row *ag, bool *found, coffer_err *err)
{
	int rv;
	const char *vals[] = { name };
	PGresult *res = intake_cat_query(in, "reading the agent's enrollment",
	    "SELECT service, encode(pubkey, 'hex'), revoked_at IS NOT NULL, last_seq, "
	    "last_envelope_seq, role = 'drill_runner', clock_skew_ms, "
	    "floor(extract(epoch FROM clock_skew_since) * 1000)::bigint "
	    "FROM agents WHERE name = $1 FOR UPDATE",
	    1, vals, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	*found = PQntuples(res) == 1;
	if (*found) {
		snprintf(ag->name, sizeof(ag->name), "%s", name);
		snprintf(ag->service, sizeof(ag->service), "%s", PQgetvalue(res, 0, 0));
		const char *hex = PQgetvalue(res, 0, 1);
		if (strlen(hex) != 2 * COFFER_SIGN_PUBKEY_BYTES) {
			PQclear(res);
			return (coffer_err_set(err, COFFER_ECORRUPT,
			    "agent %s has a public key of the wrong length in the catalog", name));
		}
		if (!coffer_hex_to_bytes(hex, strlen(hex), ag->pubkey, COFFER_SIGN_PUBKEY_BYTES)) {
			PQclear(res);
			return (coffer_err_set(err, COFFER_ECORRUPT,
			    "agent %s has a public key that is not hex in the catalog", name));
		}
		ag->revoked = PQgetvalue(res, 0, 2)[0] == 't';
		ag->last_seq = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		ag->last_envelope_seq = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
		ag->drill_runner = PQgetvalue(res, 0, 5)[0] == 't';
		ag->skew.known = !PQgetisnull(res, 0, 6) && !PQgetisnull(res, 0, 7);
		if (ag->skew.known) {
			ag->skew.skew_ms = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
			ag->skew.since_ms = strtoll(PQgetvalue(res, 0, 7), NULL, 10);
		}
	}
	PQclear(res);
	return (0);
}

static int
check_signature(const agent_row *ag, const Coffer__V1__Envelope *env, verdict *v, coffer_err *err)
{
	coffer_sign_pubkey *pub = NULL;
	coffer_err e2;
	int rv = coffer_sign_pubkey_from_raw(ag->pubkey, &pub, &e2);
	if (rv != 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		    "agent %s's enrolled public key does not load: %s", ag->name, e2.msg));
	}
	size_t tbs_len;
	uint8_t *tbs = coffer_wire_envelope_tbs(
	    env->agent_id, env->seq, env->sent_at_ms, env->body.data, env->body.len, &tbs_len);
	if (tbs == NULL) {
		coffer_sign_pubkey_free(pub);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory to check a signature"));
	}
	rv = coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &e2);
	free(tbs);
	if (rv != 0) {
		char fp[COFFER_SIGN_FINGERPRINT_HEX];
		coffer_sign_fingerprint(pub, fp);
		intake_verdict_set(v, COFFER__V1__STATUS__STATUS_BAD_SIGNATURE,
		    "envelope %" PRIu64 " is not signed by agent %s's enrolled key %s", env->seq,
		    ag->name, fp);
	}
	coffer_sign_pubkey_free(pub);
	return (0);
}

/* ---- the request ---- */

/* Shape of the body's events, and ownership. Sets v on a refusal. */
static void
check_events(const agent_row *ag, const Coffer__V1__Request *rq, verdict *v)
{
	if (rq->kind_case != COFFER__V1__REQUEST__KIND_EVENTS) {
		return;
	}
	const Coffer__V1__EventBatch *b = rq->events;
	uint64_t last = 0;
	for (size_t i = 0; i < b->n_events; i++) {
		const Coffer__V1__Event *ev = b->events[i];
		bool transient_kind = ev->kind_case == COFFER__V1__EVENT__KIND_HELLO ||
		    ev->kind_case == COFFER__V1__EVENT__KIND_HEARTBEAT;
		if (ev->seq > INT64_MAX) {
			intake_verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED,
			    "event %zu: seq %" PRIu64 " is out of range", i, ev->seq);
			return;
		}
		if (ev->seq != 0 && ev->seq <= last) {
			/* Applying 5 then skipping 3 as a "resend" would ack an event
			 * that was never applied. */
			intake_verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED,
			    "event %zu: seq %" PRIu64 " does not follow %" PRIu64
			    " (durable events must be in outbox order)",
			    i, ev->seq, last);
			return;
		}
		if (ev->seq != 0) {
			last = ev->seq;
		}
		if (ev->seq == 0 && !transient_kind) {
			intake_verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED,
			    "event %zu (%s) has seq 0, but only hello and heartbeat may be transient",
			    i, coffer_wire_event_type(ev));
			return;
		}
	}
	/* A drill runner has no service of its own: coord_drills_check_events
	 * decides what it may report. */
	if (ag->drill_runner) {
		return;
	}
	for (size_t i = 0; i < b->n_events; i++) {
		const Coffer__V1__Event *ev = b->events[i];
		if (strcmp(ev->service, ag->service) != 0) {
			char s[72];
			coffer_utf8_printable_ascii(s, sizeof(s), ev->service);
			intake_verdict_set(v, COFFER__V1__STATUS__STATUS_NOT_OWNER,
			    "event seq %" PRIu64
			    " is about service \"%s\"; agent %s is enrolled for %s",
			    ev->seq, s, ag->name, ag->service);
			return;
		}
	}
}

/* Commands ride on replies: an operator's `coffer backup run` waits in
 * agent_commands until the service's agent next talks to us (it polls every
 * few seconds). A command stays owed to the agent it was handed to until
 * that agent reports it done, so a reply lost on the way is made good by
 * the next one; the agent ignores ids it has already started. */
static int
take_commands(coord_intake *in, const agent_row *ag, const Coffer__V1__Request *rq, coffer_err *err)
{
	in->n_cmds = 0;
	coord_drills_commands_clear(&in->drill_cmds);
	if (rq->kind_case == COFFER__V1__REQUEST__KIND_EVENTS) {
		const Coffer__V1__EventBatch *b = rq->events;
		for (size_t i = 0; i < b->n_events; i++) {
			const Coffer__V1__Event *ev = b->events[i];
			if (ev->kind_case != COFFER__V1__EVENT__KIND_COMMAND_DONE ||
			    ev->command_done == NULL) {
				continue;
			}
			char id[24];
			snprintf(id, sizeof(id), "%" PRIu64, ev->command_done->command_id);
			const char *vals[] = { id, ag->name };
			int rv = intake_cat_exec(in, "marking a command done",
			    "UPDATE agent_commands SET done_at = now() "
			    "WHERE id = $1 AND delivered_to = $2 AND done_at IS NULL",
			    2, vals, err);
			if (rv != 0) {
				return (rv);
			}
		}
	}
	if (ag->drill_runner) {
		return (coord_drills_take_commands(in->cat, ag->name, &in->drill_cmds, err));
	}
	const char *vals[] = { ag->name, ag->service };
	int rv = 0;
	PGresult *r = intake_cat_query(in, "handing out commands",
	    "UPDATE agent_commands SET delivered_to = $1, delivered_at = coalesce(delivered_at, now()) "
	    "WHERE id IN (SELECT id FROM agent_commands WHERE service = $2 AND done_at IS NULL "
	    "  AND kind = 'backup' AND (delivered_to IS NULL OR delivered_to = $1) "
	    "  ORDER BY id LIMIT 8 FOR UPDATE SKIP LOCKED) "
	    "RETURNING id, coalesce(args->>'kind', 'logical'), requested_by",
	    2, vals, &rv, err);
	if (r == NULL) {
		return (rv);
	}
	int n = PQntuples(r);
	for (int i = 0; i < n && in->n_cmds < INTAKE_MAX_COMMANDS; i++) {
		pending_command *c = &in->cmds[in->n_cmds++];
		c->id = strtoull(PQgetvalue(r, i, 0), NULL, 10);
		c->kind = strcmp(PQgetvalue(r, i, 1), "physical") == 0
		    ? COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL
		    : COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
		snprintf(c->requested_by, sizeof(c->requested_by), "%s", PQgetvalue(r, i, 2));
	}
	PQclear(r);
	return (0);
}

/*
 * Inside the agent-locked transaction: checks what needs the agent's row,
 * then applies. On a refusal v is set and nothing was applied (the caller
 * rolls back). res->acked_event_seq gets the high-water mark after the
 * transaction.
 */
static int
process(coord_intake *in, const Coffer__V1__Envelope *env, bool careful, agent_row *ag, bool *found,
    verdict *v, coord_intake_result *res, coffer_err *err)
{
	audit_rows_clear(in);
	in->events_inserted = false;
	in->n_started = 0;
	/* env is not NULL: the caller runs us only while v.status is 0, and sets it
	 * when decoding failed (in verdict_set, variadic, which the analyzer skips). */
	/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
	int rv = load_agent(in, env->agent_id, ag, found, err);
	if (rv != 0) {
		return (rv);
	}
	if (!*found) {
		intake_verdict_set(v, COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT,
		    "agent %s is not enrolled; ask an operator to run `coffer agents enroll`",
		    res->agent);
		return (0);
	}
	if (ag->revoked) {
		intake_verdict_set(v, COFFER__V1__STATUS__STATUS_REVOKED,
		    "agent %s's enrollment was revoked; it may not report any more", ag->name);
		return (0);
	}
	bool verified =
	    in->sig_verified && memcmp(in->sig_key, ag->pubkey, COFFER_SIGN_PUBKEY_BYTES) == 0;
	if (!verified && ((rv = check_signature(ag, env, v, err)) != 0 || v->status != 0)) {
		return (rv);
	}
	if (env->seq > INT64_MAX || (int64_t)env->seq <= ag->last_envelope_seq) {
		intake_verdict_set(v, COFFER__V1__STATUS__STATUS_REPLAYED,
		    "envelope seq %" PRIu64 " is not newer than the last accepted (%" PRId64 ")",
		    env->seq, ag->last_envelope_seq);
		return (0);
	}
	coffer_err derr;
	const Coffer__V1__Request *rq =
	    (const Coffer__V1__Request *)coffer_wire_decode(&coffer__v1__request__descriptor,
	        &in->body_arena, env->body.data, env->body.len, in->max_msg, &derr);
	if (rq == NULL) {
		intake_verdict_set(
		    v, COFFER__V1__STATUS__STATUS_MALFORMED, "request body: %s", derr.msg);
		return (0);
	}
	check_events(ag, rq, v);
	if (v->status != 0) {
		return (0);
	}
	int64_t mark = ag->last_seq;
	if (rq->kind_case == COFFER__V1__REQUEST__KIND_EVENTS &&
	    ((rv = coord_drills_check_events(in->cat, ag->name, ag->drill_runner, rq->events, mark,
	          &v->status, v->error, sizeof(v->error), err)) != 0 ||
	        v->status != 0)) {
		return (rv);
	}
	if (rq->kind_case == COFFER__V1__REQUEST__KIND_EVENTS) {
		const Coffer__V1__EventBatch *b = rq->events;
		/* Backups first: an event about another service's backup refuses
		 * the whole envelope before anything of it is applied. */
		if ((rv = intake_check_backup_owners(in, ag, b, mark, v, err)) != 0 ||
		    v->status != 0) {
			return (rv);
		}
		if (!careful && (rv = intake_insert_events(in, ag, b, mark, err)) != 0) {
			return (rv);
		}
		in->events_inserted = !careful;
		for (size_t i = 0; i < b->n_events; i++) {
			const Coffer__V1__Event *ev = b->events[i];
			if (ev->seq == 0) {
				rv = intake_apply_transient(in, ag, ev, err);
			} else if ((int64_t)ev->seq <= mark) {
				res->resent++;
			} else {
				int outcome = 0;
				rv = intake_apply_durable(in, ag, ev, careful, &outcome, err);
				if (rv == 0) {
					mark = (int64_t)ev->seq;
					if (outcome == 0) {
						res->applied++;
					} else if (outcome == 1) {
						res->resent++;
					} else {
						res->rejected++;
					}
				}
			}
			if (rv != 0) {
				return (rv);
			}
		}
	}
	if ((rv = intake_started_flush(in, ag, err)) != 0) {
		return (rv);
	}
	/* The envelope is signed and not a replay, so its sent_at is the
	 * agent's own word on its clock: one skew sample (skew.c). */
	ag->skew = coord_skew_update(
	    ag->skew, coord_skew_sample(env->sent_at_ms, in->received_ms), in->received_ms);
	char m[24], s[24], sk[24], since[24], at[24];
	coffer_fmt_i64(m, mark);
	snprintf(s, sizeof(s), "%" PRIu64, env->seq);
	coffer_fmt_i64(sk, ag->skew.skew_ms);
	coffer_fmt_i64(since, ag->skew.since_ms);
	coffer_fmt_i64(at, in->received_ms);
	const char *vals[] = { ag->name, m, s, sk, since, at };
	rv = intake_cat_exec(in, "advancing the agent's sequence numbers",
	    "UPDATE agents SET last_seq = $2, last_envelope_seq = $3, last_contact_at = now(), "
	    "clock_skew_ms = $4::bigint, clock_skew_since = to_timestamp($5::bigint / 1000.0), "
	    "clock_skew_at = to_timestamp($6::bigint / 1000.0) WHERE name = $1",
	    6, vals, err);
	if (rv == 0) {
		ag->last_seq = mark;
		res->acked_event_seq = (uint64_t)mark;
		rv = take_commands(in, ag, rq, err);
	}
	/* Last: from here to the commit every other envelope waits for the
	 * audit chain's head. */
	return (rv != 0 ? rv : audit_rows_flush(in, err));
}

/*
 * The refusals that need no catalog transaction, decided from the gate's
 * directory (one single-row lookup for a name it does not know yet, which
 * the peer's refusal budget pays for when it fails). Sets v and counts the
 * refusal in the gate; the caller then records nothing. An agent over its
 * envelope budget is told to retry (UNAVAILABLE), counted as rate_limited.
 */
static int
gate_check(coord_intake *in, const Coffer__V1__Envelope *env, const char *peer, verdict *v,
    coord_intake_result *res, coffer_err *err)
{
	if (v->status == 0 && env != NULL) {
		coord_gate_agent_state st = coord_gate_agent(in->gate, env->agent_id, in->sig_key);
		if (st == COORD_GATE_UNKNOWN) {
			int rv = coord_gate_lookup(in->gate, in->cat, env->agent_id, &st, err);
			if (rv != 0) {
				return (rv);
			}
			(void)coord_gate_agent(in->gate, env->agent_id, in->sig_key);
		}
		if (st == COORD_GATE_UNKNOWN) {
			intake_verdict_set(v, COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT,
			    "agent %s is not enrolled; ask an operator to run `coffer agents "
			    "enroll`",
			    res->agent);
		} else if (st == COORD_GATE_REVOKED) {
			intake_verdict_set(v, COFFER__V1__STATUS__STATUS_REVOKED,
			    "agent %s's enrollment was revoked; it may not report any more",
			    res->agent);
		} else {
			agent_row ag = { 0 };
			snprintf(ag.name, sizeof(ag.name), "%s", res->agent);
			memcpy(ag.pubkey, in->sig_key, COFFER_SIGN_PUBKEY_BYTES);
			int rv = check_signature(&ag, env, v, err);
			if (rv != 0) {
				return (rv);
			}
			in->sig_verified = v->status == 0;
			if (v->status == 0 &&
			    !coord_gate_agent_allow(
			        in->gate, env->agent_id, coffer_clock_monotonic_ms())) {
				intake_verdict_set(v, COFFER__V1__STATUS__STATUS_UNAVAILABLE,
				    "agent %s sends more envelopes than its budget allows; keep the "
				    "events and retry later",
				    res->agent);
				coord_gate_refused(
				    in->gate, peer, COORD_GATE_RATE_LIMITED, res->agent, v->error);
				return (0);
			}
		}
	}
	if (v->status != 0) {
		coord_gate_refused(
		    in->gate, peer, coord_intake_reason(v->status), res->agent, v->error);
	}
	return (0);
}

int
coord_intake_handle(coord_intake *in, const uint8_t *req, size_t len, const char *peer,
    uint8_t **reply, size_t *reply_len, coord_intake_result *res, coffer_err *err)
{
	coord_intake_result local;
	if (res == NULL) {
		res = &local;
	}
	memset(res, 0, sizeof(*res));
	in->received_ms = coffer_clock_now(NULL);
	*reply = NULL;
	*reply_len = 0;
	verdict v = { 0 };
	agent_row ag = { 0 };
	bool enrolled = false;
	coffer_err cerr;
	coffer_err_clear(&cerr);
	int rv = 0;

	if (!coord_catalog_ok(in->cat)) {
		intake_verdict_set(&v, COFFER__V1__STATUS__STATUS_UNAVAILABLE,
		    "the catalog is unreachable; keep the events and retry later");
		rv = coord_intake_reply_status(
		    in, req, len, v.status, v.error, reply, reply_len, err);
		res->status = v.status;
		snprintf(res->error, sizeof(res->error), "%s", v.error);
		return (rv);
	}

	coffer_err derr;
	const Coffer__V1__Envelope *env = (const Coffer__V1__Envelope *)coffer_wire_decode(
	    &coffer__v1__envelope__descriptor, &in->env_arena, req, len, in->max_msg, &derr);
	if (env == NULL) {
		intake_verdict_set(
		    &v, COFFER__V1__STATUS__STATUS_MALFORMED, "envelope: %s", derr.msg);
	} else {
		res->envelope_seq = env->seq;
		coffer_utf8_printable_ascii(res->agent, sizeof(res->agent), env->agent_id);
		if (coffer_wire_check_envelope(env, &derr) != 0) {
			intake_verdict_set(
			    &v, COFFER__V1__STATUS__STATUS_MALFORMED, "envelope: %s", derr.msg);
		} else if (!coffer_name_valid(env->agent_id)) {
			/* No such name can be enrolled (the catalog's name rule). */
			intake_verdict_set(&v, COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT,
			    "agent id \"%s\" is not a valid agent name", res->agent);
		}
	}

	in->sig_verified = false;
	bool gated = false;
	if (in->gate != NULL) {
		rv = gate_check(in, env, peer, &v, res, &cerr);
		gated = rv == 0 && v.status != 0;
	}
	for (int attempt = 0; rv == 0 && v.status == 0 && attempt < 2; attempt++) {
		bool careful = attempt == 1;
		in->n_completed = 0;
		rv = coord_catalog_begin(in->cat, &cerr);
		if (rv == 0) {
			rv = process(in, env, careful, &ag, &enrolled, &v, res, &cerr);
		}
		if (rv == 0 && v.status == 0) {
			rv = coord_catalog_commit(in->cat, &cerr);
			res->completed = rv == 0 ? in->n_completed : 0;
		} else {
			coord_catalog_rollback(in->cat);
		}
		if (rv != 0 || v.status != 0) {
			/* The counters above belong to a rolled-back transaction. */
			res->applied = res->resent = res->rejected = 0;
			res->acked_event_seq = 0;
		}
		if (rv != COFFER_EPG || careful) {
			break;
		}
		/* PostgreSQL refused something: again, one savepoint per event. */
		coffer_log_debug("envelope retried with savepoints", "seq=%" PRIu64 " error=%s",
		    res->envelope_seq, cerr.msg);
		coffer_err_clear(&cerr);
		rv = 0;
	}
	if (rv == 0 && v.status != 0 && !gated) {
		rv = record_refusal(in, &v, res->agent, res->envelope_seq, peer, &cerr);
	}
	if (rv != 0) {
		res->applied = res->resent = res->rejected = 0;
		res->acked_event_seq = 0;
		snprintf(res->cause, sizeof(res->cause), "%.250s", cerr.msg);
		if (rv == COFFER_EUNAVAIL || !coord_catalog_ok(in->cat)) {
			intake_verdict_set(&v, COFFER__V1__STATUS__STATUS_UNAVAILABLE,
			    "the catalog is unreachable; keep the events and retry later");
		} else {
			coffer_log_error("request failed", "agent=%s seq=%" PRIu64 " error=%s",
			    res->agent[0] != '\0' ? res->agent : "-", res->envelope_seq, cerr.msg);
			intake_verdict_set(&v, COFFER__V1__STATUS__STATUS_INTERNAL,
			    "the coordinator could not apply the request; retry later");
		}
	}
	res->status = v.status;
	res->aggregated = gated;
	snprintf(res->error, sizeof(res->error), "%s", v.error);
	rv = encode_reply(in, v.status, v.error, res->envelope_seq,
	    v.status == COFFER__V1__STATUS__STATUS_OK ? res->acked_event_seq : 0, reply, reply_len,
	    err);
	coffer_wire_arena_reset(&in->env_arena);
	coffer_wire_arena_reset(&in->body_arena);
	return (rv);
}
