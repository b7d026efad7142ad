/*
 * Intake: checks and applies one agent envelope; see coordinator/intake/intake.h.
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
 * every durable event inside its own SAVEPOINT: the event that fails is
 * rolled back to its savepoint and recorded as rejected instead, so the
 * rest of the envelope still commits and the agent still gets its ack.
 * Only a lost connection, or a failure to record even the rejection, aborts
 * the envelope (STATUS_UNAVAILABLE or STATUS_INTERNAL; the agent retries
 * and nothing was applied).
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
 * first (clean_text), since PostgreSQL refuses invalid UTF-8 and a refusal
 * there would turn one bad string into a stuck outbox.
 */
#include "coordinator/intake/intake.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "common/base/log.h"
#include "common/crypto/sign.h"
#include "common/wire/wire.h"
#include "coordinator/drill/drills.h"

#define ACTOR_COORDINATOR "coordinator"
#define TEXT_MAX          1024 /* bytes kept of any one free-text field from an agent */
#define LIST_MAX          256  /* entries kept of any list (WAL segments, drill checks) */
/* Unix ms of 9999-12-31: anything later (or <= 0) is not a time. */
#define MS_MAX INT64_C(253402300799999)

/* timestamptz from Unix ms; NULL stays NULL. */
#define TS(n) "(timestamptz 'epoch' + $" #n "::bigint * interval '1 millisecond')"

/* Commands handed to an agent in one reply, at most. */
#define INTAKE_MAX_COMMANDS 8

typedef struct pending_command {
	uint64_t id;
	Coffer__V1__BackupKind kind;
	char requested_by[80];
} pending_command;

struct coord_intake {
	coord_catalog *cat;
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
	 * (insert_events); record_event only applies and audits them. */
	bool events_inserted;
	coord_pgarray ev_cols[5];
	/* backup.started events waiting to become `backups` rows in one
	 * statement (started_flush), in envelope order: flushed before any
	 * other effect of the envelope, so a later event about the same backup
	 * finds its row. Only outside careful mode, where a refusal fails the
	 * envelope and it is retried one event at a time. */
	coord_pgarray started_cols[3];
	size_t n_started;
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
} agent_row;

/* A verdict while checking: status and the one-line reason. */
typedef struct verdict {
	int status;
	char error[256];
} verdict;

static void verdict_set(verdict *v, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
verdict_set(verdict *v, int status, const char *fmt, ...)
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

/* ---- untrusted text ---- */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80) {
		return (1);
	} else if ((c & 0xe0) == 0xc0) {
		len = 2;
		cp = c & 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		cp = c & 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		cp = c & 0x07;
	} else {
		return (0);
	}
	if (len > n) {
		return (0);
	}
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			return (0);
		}
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past Unicode are invalid. */
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
		return (0);
	}
	return (len);
}

/* Copies at most max bytes of in (NULL is "") to a malloc'd string that is
 * valid UTF-8 with control characters and invalid bytes replaced by '?'. */
static char *
clean_text(const char *in, size_t max)
{
	if (in == NULL) {
		in = "";
	}
	size_t n = strlen(in);
	if (n > max) {
		n = max;
	}
	char *out = malloc(n + 1);
	if (out == NULL) {
		return (NULL);
	}
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq(s + i, n - i);
		if (l == 0 || (l == 1 && (s[i] < 0x20 || s[i] == 0x7f))) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, l);
		o += l;
		i += l;
	}
	out[o] = '\0';
	return (out);
}

/* Same into a fixed buffer, printable ASCII only (names for logs and keys). */
static void
printable(const char *in, char *out, size_t size)
{
	size_t o = 0;
	for (const char *p = in != NULL ? in : ""; *p != '\0' && o + 1 < size; p++) {
		unsigned char c = (unsigned char)*p;
		out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[o] = '\0';
}

/* [A-Za-z0-9][A-Za-z0-9_.-]{0,63}, the catalog's name rule; with colon_ok,
 * the backup id rule ([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}). */
static bool
name_ok(const char *s, bool colon_ok)
{
	size_t max = colon_ok ? 128 : 64;
	size_t n = s != NULL ? strlen(s) : 0;
	if (n == 0 || n > max) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum =
		    (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
		if (!alnum &&
		    (i == 0 || (c != '_' && c != '.' && c != '-' && !(colon_ok && c == ':')))) {
			return (false);
		}
	}
	return (true);
}

static bool
digits_ok(const char *s, size_t max)
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

static bool
ms_ok(int64_t ms)
{
	return (ms > 0 && ms <= MS_MAX);
}

static void
hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hex_nibble(char c)
{
	if (c >= '0' && c <= '9') {
		return (c - '0');
	}
	if (c >= 'a' && c <= 'f') {
		return (c - 'a' + 10);
	}
	if (c >= 'A' && c <= 'F') {
		return (c - 'A' + 10);
	}
	return (-1);
}

/* ---- catalog helpers ---- */

/* One statement (sql: a literal), prepared once per connection; returns the
 * result when it succeeded, else NULL with err set (COFFER_EPG or
 * COFFER_EUNAVAIL). */
static PGresult *
cat_query(coord_intake *in, const char *what, const char *sql, int n, const char *const *vals,
    int *rv, coffer_err *err)
{
	return (coord_catalog_query(in->cat, sql, n, vals, what, rv, err));
}

static int
cat_exec(coord_intake *in, const char *what, const char *sql, int n, const char *const *vals,
    coffer_err *err)
{
	int rv;
	PGresult *res = cat_query(in, what, sql, n, vals, &rv, err);
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
static int
audit_rows_add(coord_intake *in, const char *actor, const char *action, const char *subject,
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
	char *line = clean_text(error, 255);
	if (line == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a reply"));
	}
	rep.status = (Coffer__V1__Status)status;
	rep.error = line;
	rep.envelope_seq = env_seq;
	rep.acked_event_seq = acked;
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
	char *clean = clean_text(detail, 1000);
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
		printable(peer, p, sizeof(p));
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
	rv = cat_exec(in, "counting a refused request",
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
	PGresult *res = cat_query(in, "reading the agent's enrollment",
	    "SELECT service, encode(pubkey, 'hex'), revoked_at IS NOT NULL, last_seq, "
	    "last_envelope_seq, role = 'drill_runner' FROM agents WHERE name = $1 FOR UPDATE",
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
		for (size_t i = 0; i < COFFER_SIGN_PUBKEY_BYTES; i++) {
			int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
			/* hi >= 0: PostgreSQL's encode(..., 'hex') writes only 0-9a-f. */
			/* NOLINTNEXTLINE(clang-analyzer-core.UndefinedBinaryOperatorResult) */
			ag->pubkey[i] = (uint8_t)((hi << 4) | lo);
		}
		ag->revoked = PQgetvalue(res, 0, 2)[0] == 't';
		ag->last_seq = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		ag->last_envelope_seq = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
		ag->drill_runner = PQgetvalue(res, 0, 5)[0] == 't';
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
		verdict_set(v, COFFER__V1__STATUS__STATUS_BAD_SIGNATURE,
		    "envelope %" PRIu64 " is not signed by agent %s's enrolled key %s", env->seq,
		    ag->name, fp);
	}
	coffer_sign_pubkey_free(pub);
	return (0);
}

/* ---- events ---- */

static const char *
event_type(const Coffer__V1__Event *ev)
{
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_HELLO:
		return ("agent.hello");
	case COFFER__V1__EVENT__KIND_HEARTBEAT:
		return ("agent.heartbeat");
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		return ("backup.started");
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED:
		return ("backup.completed");
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED:
		return ("backup.failed");
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED:
		return ("wal.archived");
	case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED:
		return ("restore.completed");
	case COFFER__V1__EVENT__KIND_DRILL_RESULT:
		return ("drill.result");
	case COFFER__V1__EVENT__KIND_COMMAND_DONE:
		return ("command.done");
	default:
		/* A newer agent's event kind this coordinator does not know:
		 * recorded and acked, applied to nothing. */
		return ("unknown");
	}
}

static const char *
kind_text(Coffer__V1__BackupKind k)
{
	return (k == COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL    ? "logical"
	        : k == COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL ? "physical"
	                                                             : NULL);
}

/* Adds a cleaned string; false on allocation failure. */
static bool
add_text(cJSON *obj, const char *key, const char *value)
{
	char *c = clean_text(value, TEXT_MAX);
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
	hex_encode(b->data, b->len, hex);
	cJSON_AddStringToObject(obj, key, hex);
}

/* The event's content as a JSON object (the `payload` column). */
static cJSON *
event_payload(const Coffer__V1__Event *ev)
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
		ok = add_text(p, "version", h->version) &&
		    add_text(p, "pg_version", h->pg_version) &&
		    add_text(p, "system_identifier", h->system_identifier) &&
		    add_text(p, "hostname", h->hostname) && add_text(p, "key_id", h->key_id);
		break;
	}
	case COFFER__V1__EVENT__KIND_HEARTBEAT: {
		const Coffer__V1__Heartbeat *h = ev->heartbeat;
		cJSON_AddNumberToObject(p, "outbox_depth", h->outbox_depth);
		ok = add_text(p, "last_backup_id", h->last_backup_id) &&
		    add_text(p, "last_archived_wal", h->last_archived_wal);
		cJSON_AddNumberToObject(p, "last_backup_at_ms", (double)h->last_backup_at_ms);
		cJSON_AddNumberToObject(p, "last_archived_at_ms", (double)h->last_archived_at_ms);
		cJSON_AddBoolToObject(p, "backup_running", h->backup_running);
		/* The archiver's own view (agent/report/archiver.h), for walwatch. */
		if (ok &&
		    (h->current_wal[0] != '\0' || h->archive_failed_count != 0 ||
		        h->last_archived_wal[0] != '\0')) {
			cJSON_AddNumberToObject(
			    p, "archive_failed_count", (double)h->archive_failed_count);
			ok = add_text(p, "last_failed_wal", h->last_failed_wal) &&
			    add_text(p, "current_wal", h->current_wal) &&
			    add_text(p, "system_identifier", h->system_identifier);
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
		ok = add_text(p, "backup_id", b->backup_id);
		cJSON_AddNumberToObject(p, "kind", b->kind);
		cJSON_AddNumberToObject(p, "trigger", b->trigger);
		cJSON_AddNumberToObject(p, "command_id", (double)b->command_id);
		break;
	}
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED: {
		const Coffer__V1__BackupCompleted *b = ev->backup_completed;
		ok = add_text(p, "backup_id", b->backup_id) && add_text(p, "key_id", b->key_id) &&
		    add_text(p, "repository", b->repository) &&
		    add_text(p, "pg_version", b->pg_version) &&
		    add_text(p, "system_identifier", b->system_identifier) &&
		    add_text(p, "start_lsn", b->start_lsn) && add_text(p, "stop_lsn", b->stop_lsn);
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
		ok = add_text(p, "backup_id", b->backup_id) && add_text(p, "reason", b->reason) &&
		    add_text(p, "stage", b->stage);
		cJSON_AddNumberToObject(p, "kind", b->kind);
		cJSON_AddNumberToObject(p, "started_at_ms", (double)b->started_at_ms);
		cJSON_AddNumberToObject(p, "failed_at_ms", (double)b->failed_at_ms);
		break;
	}
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED: {
		const Coffer__V1__WalArchived *w = ev->wal_archived;
		ok = add_text(p, "system_identifier", w->system_identifier);
		cJSON_AddNumberToObject(p, "timeline", w->timeline);
		cJSON_AddNumberToObject(p, "stored_bytes", (double)w->stored_bytes);
		cJSON_AddNumberToObject(p, "last_archived_at_ms", (double)w->last_archived_at_ms);
		cJSON_AddNumberToObject(p, "segment_count", (double)w->n_segments);
		cJSON *segs = cJSON_AddArrayToObject(p, "segments");
		for (size_t i = 0; ok && segs != NULL && i < w->n_segments && i < LIST_MAX; i++) {
			char *c = clean_text(w->segments[i], 64);
			ok = c != NULL;
			if (ok) {
				cJSON_AddItemToArray(segs, cJSON_CreateString(c));
			}
			free(c);
		}
		break;
	}
	case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED: {
		const Coffer__V1__RestoreCompleted *r = ev->restore_completed;
		ok = add_text(p, "backup_id", r->backup_id) && add_text(p, "target", r->target) &&
		    add_text(p, "detail", r->detail);
		cJSON_AddBoolToObject(p, "ok", r->ok);
		cJSON_AddNumberToObject(p, "duration_ms", (double)r->duration_ms);
		break;
	}
	case COFFER__V1__EVENT__KIND_DRILL_RESULT: {
		const Coffer__V1__DrillResult *d = ev->drill_result;
		ok = add_text(p, "backup_id", d->backup_id) &&
		    add_text(p, "repository", d->repository) && add_text(p, "sandbox", d->sandbox);
		cJSON_AddNumberToObject(p, "drill_id", (double)d->drill_id);
		cJSON_AddBoolToObject(p, "ok", d->ok);
		cJSON_AddNumberToObject(p, "restore_ms", (double)d->restore_ms);
		cJSON_AddNumberToObject(p, "total_ms", (double)d->total_ms);
		cJSON *checks = cJSON_AddArrayToObject(p, "checks");
		for (size_t i = 0; ok && checks != NULL && i < d->n_checks && i < LIST_MAX; i++) {
			cJSON *c = cJSON_CreateObject();
			ok = c != NULL && add_text(c, "name", d->checks[i]->name) &&
			    add_text(c, "detail", d->checks[i]->detail);
			if (c != NULL) {
				cJSON_AddBoolToObject(c, "ok", d->checks[i]->ok);
				cJSON_AddItemToArray(checks, c);
			}
		}
		break;
	}
	case COFFER__V1__EVENT__KIND_COMMAND_DONE: {
		const Coffer__V1__CommandDone *c = ev->command_done;
		ok = add_text(p, "detail", c->detail) && add_text(p, "backup_id", c->backup_id);
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
static const char *
event_backup_id(const Coffer__V1__Event *ev)
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
static bool
event_valid(const Coffer__V1__Event *ev, char *why, size_t size)
{
	const char *id = event_backup_id(ev);
	if (id != NULL && !name_ok(id, true)) {
		snprintf(why, size, "backup id is not 1-128 of [A-Za-z0-9_.:-]");
		return (false);
	}
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		if (kind_text(ev->backup_started->kind) == NULL) {
			snprintf(why, size, "backup kind is not logical or physical");
			return (false);
		}
		break;
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED: {
		const Coffer__V1__BackupCompleted *b = ev->backup_completed;
		if (kind_text(b->kind) == NULL) {
			snprintf(why, size, "backup kind is not logical or physical");
		} else if (!ms_ok(b->started_at_ms) || !ms_ok(b->finished_at_ms) ||
		    b->finished_at_ms < b->started_at_ms) {
			snprintf(why, size, "start and finish times are missing or out of order");
		} else if (b->stored_sha256.len != 32 ||
		    (b->plain_sha256.len != 0 && b->plain_sha256.len != 32) ||
		    (b->manifest_sha256.len != 0 && b->manifest_sha256.len != 32)) {
			snprintf(why, size, "a SHA-256 digest is missing or not 32 bytes");
		} else if (b->key_id[0] == '\0' || strlen(b->key_id) > 128) {
			snprintf(why, size, "key id is missing or too long");
		} else if (b->repository[0] != '\0' && !name_ok(b->repository, false)) {
			snprintf(why, size, "repository name is not 1-64 of [A-Za-z0-9_.-]");
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
		if (kind_text(b->kind) == NULL) {
			snprintf(why, size, "backup kind is not logical or physical");
			return (false);
		}
		if ((b->started_at_ms != 0 && !ms_ok(b->started_at_ms)) ||
		    (b->failed_at_ms != 0 && !ms_ok(b->failed_at_ms))) {
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
		} else {
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

/*
 * Fails the envelope with NOT_OWNER when a backup that a new durable event
 * is about belongs to another service. One query for the whole batch; the
 * rows are locked so their service cannot change before the commit.
 */
static int
check_backup_owners(coord_intake *in, const agent_row *ag, const Coffer__V1__EventBatch *b,
    int64_t mark, verdict *v, coffer_err *err)
{
	/* Ids passed name_ok (no quotes, commas, braces or blanks), so they
	 * go into an array literal as they are. */
	size_t cap = 3, n = 0;
	for (size_t i = 0; i < b->n_events; i++) {
		const char *id = event_backup_id(b->events[i]);
		if ((int64_t)b->events[i]->seq > mark && id != NULL && name_ok(id, true)) {
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
		const char *id = event_backup_id(b->events[i]);
		if ((int64_t)b->events[i]->seq > mark && id != NULL && name_ok(id, true)) {
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
	PGresult *res = cat_query(in, "reading backups' services",
	    "SELECT id, service FROM backups WHERE id = ANY ($1::text[]) AND service <> $2 "
	    "ORDER BY id LIMIT 1 FOR UPDATE",
	    2, vals, &rv, err);
	free(arr);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 1) {
		verdict_set(v, COFFER__V1__STATUS__STATUS_NOT_OWNER,
		    "backup %s belongs to another service; agent %s may only report for %s",
		    PQgetvalue(res, 0, 0), ag->name, ag->service);
	}
	PQclear(res);
	return (0);
}

static void
fmt_i64(char *buf, size_t size, int64_t v)
{
	snprintf(buf, size, "%" PRId64, v);
}

/* A WAL segment's file name (not a history or backup-label file), which is
 * what wal_segments tracks. */
static bool
wal_segment_name(const char *s)
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
	if (!digits_ok(w->system_identifier, 20) ||
	    strspn(w->system_identifier, "0") == strlen(w->system_identifier)) {
		coffer_log_warn("wal.archived without a system identifier, not tracked",
		    "agent=%s service=%s", ag->name, ag->service);
		return (0);
	}
	char tl[16], at[24];
	snprintf(tl, sizeof(tl), "%" PRIu32, w->timeline);
	fmt_i64(
	    at, sizeof(at), w->last_archived_at_ms != 0 ? w->last_archived_at_ms : occurred_at_ms);
	for (size_t i = 0; i < w->n_segments; i++) {
		if (!wal_segment_name(w->segments[i])) {
			continue;
		}
		char sha[65], bytes[24];
		hex_encode(w->segment_sha256[i].data, 32, sha);
		fmt_i64(bytes, sizeof(bytes), (int64_t)w->segment_stored_bytes[i]);
		const char *vals[] = { ag->service, tl, w->segments[i], bytes, sha,
			ms_ok(w->last_archived_at_ms != 0 ? w->last_archived_at_ms : occurred_at_ms)
			    ? at
			    : NULL,
			w->system_identifier };
		int rv = cat_exec(in, "recording an archived WAL segment",
		    "INSERT INTO wal_segments (service, system_identifier, timeline, segment, "
		    "stored_bytes, stored_sha256, archived_at) VALUES ($1, $7::numeric, $2::integer, "
		    "$3, $4::bigint, decode($5, 'hex'), COALESCE(" TS(
		        6) ", now())) "
		           "ON CONFLICT (service, system_identifier, timeline, segment) DO UPDATE SET "
		           "stored_bytes = EXCLUDED.stored_bytes, stored_sha256 = EXCLUDED.stored_sha256, "
		           "archived_at = EXCLUDED.archived_at, deleted_at = NULL "
		           "WHERE wal_segments.deleted_at IS NOT NULL",
		    7, vals, err);
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
static int
started_flush(coord_intake *in, const agent_row *ag, coffer_err *err)
{
	if (in->n_started == 0) {
		return (0);
	}
	coord_pgarray *c = in->started_cols;
	const char *vals[] = { ag->service, ag->name, coord_pgarray_text(&c[0]),
		coord_pgarray_text(&c[1]), coord_pgarray_text(&c[2]) };
	in->n_started = 0;
	return (cat_exec(in, "recording started backups",
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
	fmt_i64(at, sizeof(at), ev->occurred_at_ms);
	bool ok = coord_pgarray_add(&c[0], ev->backup_started->backup_id) &&
	    coord_pgarray_add(&c[1], kind_text(ev->backup_started->kind)) &&
	    (ms_ok(ev->occurred_at_ms) ? coord_pgarray_add(&c[2], at)
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
	int qrv = started_flush(in, ag, err);
	if (qrv != 0) {
		return (qrv);
	}
	char a[8][32];
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED: {
		const Coffer__V1__BackupStarted *b = ev->backup_started;
		fmt_i64(a[0], sizeof(a[0]), ev->occurred_at_ms);
		const char *vals[] = { b->backup_id, ag->service, ag->name, kind_text(b->kind),
			ms_ok(ev->occurred_at_ms) ? a[0] : NULL };
		/* A started event that arrives after its completion (never in
		 * outbox order, but cheap to tolerate) changes nothing. */
		return (cat_exec(in, "recording a started backup",
		    "INSERT INTO backups (id, service, agent, kind, status, started_at) "
		    "VALUES ($1, $2, $3, $4, 'running', COALESCE(" TS(
		        5) ", now())) "
		           "ON CONFLICT (id) DO NOTHING",
		    5, vals, err));
	}
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED: {
		const Coffer__V1__BackupCompleted *b = ev->backup_completed;
		char plain[65] = "", stored[65], msha[65] = "";
		hex_encode(b->stored_sha256.data, 32, stored);
		if (b->plain_sha256.len == 32) {
			hex_encode(b->plain_sha256.data, 32, plain);
		}
		if (b->manifest_sha256.len == 32) {
			hex_encode(b->manifest_sha256.data, 32, msha);
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
		char *key_id = clean_text(b->key_id, 128);
		if (mtext == NULL || key_id == NULL) {
			cJSON_free(mtext);
			free(key_id);
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a backup row"));
		}
		fmt_i64(a[0], sizeof(a[0]), b->started_at_ms);
		fmt_i64(a[1], sizeof(a[1]), b->finished_at_ms);
		fmt_i64(a[2], sizeof(a[2]), (int64_t)b->plain_bytes);
		fmt_i64(a[3], sizeof(a[3]), (int64_t)b->stored_bytes);
		fmt_i64(a[4], sizeof(a[4]), b->timeline);
		const char *vals[] = { b->backup_id, ag->service, ag->name, kind_text(b->kind),
			b->repository[0] != '\0' ? b->repository : "primary", a[0], a[1], a[2],
			a[3], plain[0] != '\0' ? plain : NULL, stored, key_id,
			digits_ok(b->pg_version, 9) ? b->pg_version : NULL,
			digits_ok(b->system_identifier, 20) ? b->system_identifier : NULL,
			b->timeline > 0 ? a[4] : NULL,
			b->start_lsn[0] != '\0' ? b->start_lsn : NULL,
			b->stop_lsn[0] != '\0' ? b->stop_lsn : NULL, mtext };
		int rv = cat_exec(in, "recording a completed backup",
		    "INSERT INTO backups (id, service, agent, kind, status, repo, started_at, "
		    "finished_at, plain_bytes, stored_bytes, plain_sha256, stored_sha256, key_id, "
		    "pg_version, system_identifier, timeline, start_lsn, stop_lsn, manifest) "
		    "VALUES ($1, $2, $3, $4, 'completed', $5, " TS(6) ", " TS(
		        7) ", $8, $9, "
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
		           "manifest = EXCLUDED.manifest, updated_at = now() "
		           "WHERE backups.status = 'running'",
		    18, vals, err);
		cJSON_free(mtext);
		free(key_id);
		return (rv);
	}
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED: {
		const Coffer__V1__BackupFailed *b = ev->backup_failed;
		int64_t failed = b->failed_at_ms != 0 ? b->failed_at_ms : ev->occurred_at_ms;
		int64_t started = b->started_at_ms != 0 ? b->started_at_ms : failed;
		fmt_i64(a[0], sizeof(a[0]), started);
		fmt_i64(a[1], sizeof(a[1]), failed);
		char *reason =
		    clean_text(b->reason[0] != '\0' ? b->reason : "no reason given", TEXT_MAX);
		if (reason == NULL) {
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a backup row"));
		}
		const char *vals[] = { b->backup_id, ag->service, ag->name, kind_text(b->kind),
			ms_ok(started) ? a[0] : NULL, ms_ok(failed) ? a[1] : NULL, reason };
		/* Clocks differ between the started and the failed event, so the
		 * finish is kept no earlier than the recorded start. */
		int rv = cat_exec(in, "recording a failed backup",
		    "INSERT INTO backups (id, service, agent, kind, status, started_at, finished_at, "
		    "failure_reason) VALUES ($1, $2, $3, $4, 'failed', COALESCE(" TS(
		        5) ", now()), "
		           "GREATEST(COALESCE(" TS(6) ", now()), COALESCE(" TS(
		               5) ", now())), $7) "
		                  "ON CONFLICT (id) DO UPDATE SET status = 'failed', "
		                  "finished_at = GREATEST(EXCLUDED.finished_at, backups.started_at), "
		                  "failure_reason = EXCLUDED.failure_reason, updated_at = now() "
		                  "WHERE backups.status = 'running'",
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
	cJSON *p = event_payload(ev);
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
	fmt_i64(at, sizeof(at), ev->occurred_at_ms);
	const char *vals[] = { ag->name, seq, ev->service, event_type(ev), ptext,
		ms_ok(ev->occurred_at_ms) ? at : NULL };
	int rv;
	PGresult *res = cat_query(in, "recording an event",
	    "INSERT INTO events (agent, seq, service, type, payload, sent_at) "
	    "VALUES ($1, $2, $3, $4, $5::jsonb, " TS(
	        6) ") "
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
	const char *id = event_backup_id(ev);
	bool id_ok = id != NULL && name_ok(id, true);
	cJSON_AddNumberToObject(d, "seq", (double)ev->seq);
	cJSON_AddStringToObject(d, "service", ev->service);
	cJSON_AddStringToObject(d, "type", event_type(ev));
	if (id_ok) {
		cJSON_AddStringToObject(d, "backup_id", id);
	}
	if (rejected != NULL) {
		cJSON_AddStringToObject(d, "rejected", rejected);
	} else if (ev->kind_case == COFFER__V1__EVENT__KIND_BACKUP_FAILED) {
		add_text(d, "reason", ev->backup_failed->reason);
	}
	char *dtext = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (dtext == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	return (audit_rows_add(in, ag->name, rejected != NULL ? "event.rejected" : event_type(ev),
	    id_ok ? id : ag->service, dtext, err));
}

/* Records one durable event (unless insert_events already did), its effect
 * when valid, and its audit row. *inserted false: (agent, seq) was already
 * in `events`, and nothing else happened. */
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
static int
insert_events(coord_intake *in, const agent_row *ag, const Coffer__V1__EventBatch *b, int64_t mark,
    coffer_err *err)
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
		const char *rejected = event_valid(ev, why, sizeof(why)) ? NULL : why;
		cJSON *p = event_payload(ev);
		if (p != NULL && rejected != NULL) {
			cJSON_AddStringToObject(p, "rejected", rejected);
		}
		char *ptext = p != NULL ? cJSON_PrintUnformatted(p) : NULL;
		cJSON_Delete(p);
		snprintf(seq, sizeof(seq), "%" PRIu64, ev->seq);
		fmt_i64(at, sizeof(at), ev->occurred_at_ms);
		ok = ptext != NULL && coord_pgarray_add(&c[C_SEQ], seq) &&
		    coord_pgarray_add(&c[C_SERVICE], ev->service) &&
		    coord_pgarray_add(&c[C_TYPE], event_type(ev)) &&
		    coord_pgarray_add(&c[C_PAYLOAD], ptext) &&
		    (ms_ok(ev->occurred_at_ms) ? coord_pgarray_add(&c[C_SENT], at)
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
	PGresult *res = cat_query(in, "recording the envelope's events",
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
static int
apply_durable(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev, bool careful,
    int *outcome, coffer_err *err)
{
	char why[200];
	const char *rejected = event_valid(ev, why, sizeof(why)) ? NULL : why;
	bool inserted;
	int rv;
	if (!careful) {
		rv = record_event(in, ag, ev, rejected, &inserted, err);
		if (rv == 0) {
			*outcome = !inserted ? 1 : rejected != NULL ? 2 : 0;
		}
		return (rv);
	}
	rv = cat_exec(in, "starting an event savepoint", "SAVEPOINT coffer_event", 0, NULL, err);
	if (rv != 0) {
		return (rv);
	}
	rv = record_event(in, ag, ev, rejected, &inserted, err);
	if (rv == COFFER_EPG && rejected == NULL) {
		snprintf(why, sizeof(why), "the catalog refused it: %.150s", err->msg);
		rejected = why;
		coffer_log_warn("event rejected", "agent=%s seq=%" PRIu64 " type=%s", ag->name,
		    ev->seq, event_type(ev));
		coffer_err_clear(err);
		if ((rv = cat_exec(in, "rolling back an event",
		         "ROLLBACK TO SAVEPOINT coffer_event", 0, NULL, err)) != 0) {
			return (rv);
		}
		rv = record_event(in, ag, ev, rejected, &inserted, err);
	}
	if (rv != 0) {
		return (rv);
	}
	*outcome = !inserted ? 1 : rejected != NULL ? 2 : 0;
	return (cat_exec(
	    in, "releasing an event savepoint", "RELEASE SAVEPOINT coffer_event", 0, NULL, err));
}

/* Transient hello and heartbeat: the agent's status columns. */
static int
apply_transient(coord_intake *in, const agent_row *ag, const Coffer__V1__Event *ev, coffer_err *err)
{
	cJSON *p = event_payload(ev);
	if (p == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an agent status"));
	}
	char *text = cJSON_PrintUnformatted(p);
	cJSON_Delete(p);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an agent status"));
	}
	const char *vals[] = { ag->name, text };
	int rv = cat_exec(in, "recording the agent's status",
	    ev->kind_case == COFFER__V1__EVENT__KIND_HELLO
	        ? "UPDATE agents SET hello = $2::jsonb, hello_at = now() WHERE name = $1"
	        : "UPDATE agents SET heartbeat = $2::jsonb, heartbeat_at = now() WHERE name = $1",
	    2, vals, err);
	cJSON_free(text);
	return (rv);
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
			verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED,
			    "event %zu: seq %" PRIu64 " is out of range", i, ev->seq);
			return;
		}
		if (ev->seq != 0 && ev->seq <= last) {
			/* Applying 5 then skipping 3 as a "resend" would ack an event
			 * that was never applied. */
			verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED,
			    "event %zu: seq %" PRIu64 " does not follow %" PRIu64
			    " (durable events must be in outbox order)",
			    i, ev->seq, last);
			return;
		}
		if (ev->seq != 0) {
			last = ev->seq;
		}
		if (ev->seq == 0 && !transient_kind) {
			verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED,
			    "event %zu (%s) has seq 0, but only hello and heartbeat may be transient",
			    i, event_type(ev));
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
			printable(ev->service, s, sizeof(s));
			verdict_set(v, COFFER__V1__STATUS__STATUS_NOT_OWNER,
			    "event seq %" PRIu64
			    " is about service \"%s\"; agent %s is enrolled for %s",
			    ev->seq, s, ag->name, ag->service);
			return;
		}
	}
}

/*
 * Inside the agent-locked transaction: checks what needs the agent's row,
 * then applies. On a refusal v is set and nothing was applied (the caller
 * rolls back). *acked gets the high-water mark after the transaction.
 */
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
			int rv = cat_exec(in, "marking a command done",
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
	PGresult *r = cat_query(in, "handing out commands",
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
		verdict_set(v, COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT,
		    "agent %s is not enrolled; ask an operator to run `coffer agents enroll`",
		    res->agent);
		return (0);
	}
	if (ag->revoked) {
		verdict_set(v, COFFER__V1__STATUS__STATUS_REVOKED,
		    "agent %s's enrollment was revoked; it may not report any more", ag->name);
		return (0);
	}
	if ((rv = check_signature(ag, env, v, err)) != 0 || v->status != 0) {
		return (rv);
	}
	if (env->seq > INT64_MAX || (int64_t)env->seq <= ag->last_envelope_seq) {
		verdict_set(v, COFFER__V1__STATUS__STATUS_REPLAYED,
		    "envelope seq %" PRIu64 " is not newer than the last accepted (%" PRId64 ")",
		    env->seq, ag->last_envelope_seq);
		return (0);
	}
	coffer_err derr;
	const Coffer__V1__Request *rq =
	    (const Coffer__V1__Request *)coffer_wire_decode(&coffer__v1__request__descriptor,
	        &in->body_arena, env->body.data, env->body.len, in->max_msg, &derr);
	if (rq == NULL) {
		verdict_set(v, COFFER__V1__STATUS__STATUS_MALFORMED, "request body: %s", derr.msg);
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
		if ((rv = check_backup_owners(in, ag, b, mark, v, err)) != 0 || v->status != 0) {
			return (rv);
		}
		if (!careful && (rv = insert_events(in, ag, b, mark, err)) != 0) {
			return (rv);
		}
		in->events_inserted = !careful;
		for (size_t i = 0; i < b->n_events; i++) {
			const Coffer__V1__Event *ev = b->events[i];
			if (ev->seq == 0) {
				rv = apply_transient(in, ag, ev, err);
			} else if ((int64_t)ev->seq <= mark) {
				res->resent++;
			} else {
				int outcome = 0;
				rv = apply_durable(in, ag, ev, careful, &outcome, err);
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
	if ((rv = started_flush(in, ag, err)) != 0) {
		return (rv);
	}
	char m[24], s[24];
	fmt_i64(m, sizeof(m), mark);
	snprintf(s, sizeof(s), "%" PRIu64, env->seq);
	const char *vals[] = { ag->name, m, s };
	rv = cat_exec(in, "advancing the agent's sequence numbers",
	    "UPDATE agents SET last_seq = $2, last_envelope_seq = $3, last_contact_at = now() "
	    "WHERE name = $1",
	    3, vals, err);
	if (rv == 0) {
		ag->last_seq = mark;
		res->acked_event_seq = (uint64_t)mark;
		rv = take_commands(in, ag, rq, err);
	}
	/* Last: from here to the commit every other envelope waits for the
	 * audit chain's head. */
	return (rv != 0 ? rv : audit_rows_flush(in, err));
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
	*reply = NULL;
	*reply_len = 0;
	verdict v = { 0 };
	agent_row ag = { 0 };
	bool enrolled = false;
	coffer_err cerr;
	coffer_err_clear(&cerr);
	int rv = 0;

	if (!coord_catalog_ok(in->cat)) {
		verdict_set(&v, COFFER__V1__STATUS__STATUS_UNAVAILABLE,
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
		verdict_set(&v, COFFER__V1__STATUS__STATUS_MALFORMED, "envelope: %s", derr.msg);
	} else {
		res->envelope_seq = env->seq;
		printable(env->agent_id, res->agent, sizeof(res->agent));
		if (coffer_wire_check_envelope(env, &derr) != 0) {
			verdict_set(
			    &v, COFFER__V1__STATUS__STATUS_MALFORMED, "envelope: %s", derr.msg);
		} else if (!name_ok(env->agent_id, false)) {
			/* No such name can be enrolled (the catalog's name rule). */
			verdict_set(&v, COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT,
			    "agent id \"%s\" is not a valid agent name", res->agent);
		}
	}

	for (int attempt = 0; v.status == 0 && attempt < 2; attempt++) {
		bool careful = attempt == 1;
		rv = coord_catalog_begin(in->cat, &cerr);
		if (rv == 0) {
			rv = process(in, env, careful, &ag, &enrolled, &v, res, &cerr);
		}
		if (rv == 0 && v.status == 0) {
			rv = coord_catalog_commit(in->cat, &cerr);
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
		char q[600];
		coffer_log_debug("envelope retried with savepoints", "seq=%" PRIu64 " error=%s",
		    res->envelope_seq, coffer_log_quote(q, sizeof(q), cerr.msg));
		coffer_err_clear(&cerr);
		rv = 0;
	}
	if (rv == 0 && v.status != 0) {
		rv = record_refusal(in, &v, res->agent, res->envelope_seq, peer, &cerr);
	}
	if (rv != 0) {
		res->applied = res->resent = res->rejected = 0;
		res->acked_event_seq = 0;
		snprintf(res->cause, sizeof(res->cause), "%.250s", cerr.msg);
		if (rv == COFFER_EUNAVAIL || !coord_catalog_ok(in->cat)) {
			verdict_set(&v, COFFER__V1__STATUS__STATUS_UNAVAILABLE,
			    "the catalog is unreachable; keep the events and retry later");
		} else {
			char q[600];
			coffer_log_error("request failed", "agent=%s seq=%" PRIu64 " error=%s",
			    res->agent[0] != '\0' ? res->agent : "-", res->envelope_seq,
			    coffer_log_quote(q, sizeof(q), cerr.msg));
			verdict_set(&v, COFFER__V1__STATUS__STATUS_INTERNAL,
			    "the coordinator could not apply the request; retry later");
		}
	}
	res->status = v.status;
	snprintf(res->error, sizeof(res->error), "%s", v.error);
	rv = encode_reply(in, v.status, v.error, res->envelope_seq,
	    v.status == COFFER__V1__STATUS__STATUS_OK ? res->acked_event_seq : 0, reply, reply_len,
	    err);
	coffer_wire_arena_reset(&in->env_arena);
	coffer_wire_arena_reset(&in->body_arena);
	return (rv);
}
