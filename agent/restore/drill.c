/*
 * The drill runner (agent/restore/drill.h).
 */
#include "agent/restore/drill.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <libpq-fe.h>

#include "agent/context/context.h"
#include "agent/restore/restore.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/base/name.h"
#include "common/crypto/keyring.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"

#define CONNECT_TIMEOUT "15"

static agent_drill_check *add_check(agent_drill_result *res, const char *name, bool ok,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static agent_drill_check *
add_check(agent_drill_result *res, const char *name, bool ok, const char *fmt, ...)
{
	if (res->n_checks >= AGENT_DRILL_MAX_CHECKS) {
		return (NULL);
	}
	agent_drill_check *c = &res->checks[res->n_checks++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->ok = ok;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	if (!ok && res->failure[0] == '\0') {
		snprintf(res->failure, sizeof(res->failure), "%s: %.400s", name, c->detail);
	}
	return (c);
}

/* A libpq connection to database db (NULL: postgres) on the sandbox server,
 * as the runner's admin role (conninfo: [drill] sandbox) or, with
 * read_only, as the drill role (conninfo: role_conninfo) in a session whose
 * transactions default to read only. */
static PGconn *
sandbox_connect_as(const char *conninfo, const char *db, bool read_only, coffer_err *err)
{
	/* expand_dbname: the first dbname is the conninfo, the later keys
	 * override what it says. */
	const char *k2[] = { "dbname", "dbname", "connect_timeout", "application_name", "options",
		NULL };
	const char *v2[] = { conninfo, db != NULL ? db : "postgres", CONNECT_TIMEOUT,
		"coffer-drill", "-c default_transaction_read_only=on", NULL };
	if (!read_only) {
		k2[4] = NULL;
	}
	PGconn *conn = PQconnectdbParams(k2, v2, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		coffer_err_set(err, COFFER_EPG, "cannot connect to the sandbox server%s: %s",
		    read_only ? " as the drill role" : "", PQerrorMessage(conn));
		coffer_err_hint(err,
		    read_only ? "the sandbox's pg_hba.conf must let coffer_drill_* roles log in "
		                "with a password (scram-sha-256) from the runner"
		              : "check [drill] sandbox in the runner's config");
		PQfinish(conn);
		return (NULL);
	}
	return (conn);
}

static PGconn *
sandbox_connect(const agent_config *cfg, const char *db, coffer_err *err)
{
	return (sandbox_connect_as(cfg->drill_sandbox, db, false, err));
}

/* libpq messages end in newlines and may span lines; a detail is one. */
static void
trim_message(char *msg)
{
	for (char *p = msg; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r' || *p == '\t') {
			*p = ' ';
		}
	}
	size_t n = strlen(msg);
	while (n > 0 && msg[n - 1] == ' ') {
		msg[--n] = '\0';
	}
}

/* One of the runner's own statements on the admin or drill connection. */
static int
own_command(PGconn *conn, const char *sql, const char *what, coffer_err *err)
{
	PGresult *r = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = coffer_err_set(err, COFFER_EPG, "%s: %s", what, PQresultErrorMessage(r));
		trim_message(err->msg);
	}
	PQclear(r);
	return (rc);
}

/* One value of a one-row, one-column query; NULL result: *null. Only for
 * the runner's own queries on the admin connection. */
static int
one_value(PGconn *conn, const char *sql, char *out, size_t size, bool *null, coffer_err *err)
{
	PGresult *r = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = coffer_err_set(err, COFFER_EPG, "%s", PQresultErrorMessage(r));
	} else if (PQntuples(r) != 1 || PQnfields(r) != 1) {
		rc = coffer_err_set(err, COFFER_EINVAL,
		    "returned %d row(s) of %d column(s), not one "
		    "value",
		    PQntuples(r), PQnfields(r));
	} else {
		*null = PQgetisnull(r, 0, 0);
		snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	if (rc != 0) {
		trim_message(err->msg);
	}
	return (rc);
}

/*
 * A query the service supplied (its manifest's schema query, the policy's
 * freshness query and assertions), on the drill role's read-only session.
 * PQexecParams speaks the extended protocol, which takes exactly one
 * statement: "SELECT 1; DELETE FROM t" is refused whole by the parser.
 * The statement runs in its own BEGIN READ ONLY ... ROLLBACK, so even a
 * statement that changes session state (SET, SET TRANSACTION READ WRITE
 * alone) is undone before the next query, and a write fails with SQLSTATE
 * 25006. what names the query in the message ("assertion 2").
 */
static int
service_query(PGconn *conn, const char *what, const char *sql, char *out, size_t size, bool *null,
    coffer_err *err)
{
	int rc = own_command(conn, "BEGIN READ ONLY", "starting a read-only transaction", err);
	if (rc != 0) {
		return (rc);
	}
	PGresult *r = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 1) {
		*null = PQgetisnull(r, 0, 0);
		snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
	} else if (st == PGRES_TUPLES_OK) {
		rc = coffer_err_set(err, COFFER_EINVAL,
		    "%s returned %d row(s) of %d column(s), not one value", what, PQntuples(r),
		    PQnfields(r));
	} else if (st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
		rc = coffer_err_set(
		    err, COFFER_EINVAL, "%s is not a query: it returned no value", what);
	} else {
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		if (msg == NULL) {
			msg = PQerrorMessage(conn);
		}
		const char *how = "failed";
		if (state != NULL && strcmp(state, "25006") == 0) {
			how = "tried to write";
		} else if (state != NULL && strcmp(state, "42601") == 0 &&
		    strstr(msg, "multiple commands") != NULL) {
			how = "is more than one statement";
		} else if (state != NULL && strcmp(state, "42501") == 0) {
			how = "needs a privilege the drill role does not have";
		}
		rc = coffer_err_set(err, COFFER_EPG, "%s %s: %s", what, how, msg);
	}
	PQclear(r);
	if (rc != 0) {
		trim_message(err->msg);
	}
	/* Always: a failed statement leaves the transaction aborted, and a
	 * SET that succeeded is undone with it. */
	coffer_err rb = { 0 };
	if (own_command(conn, "ROLLBACK", "ending the read-only transaction", &rb) != 0 &&
	    rc == 0) {
		*err = rb;
		rc = rb.code;
	}
	return (rc);
}

static bool
identifier_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) {
			return (false);
		}
	}
	return (true);
}

/* coffer_drill_<service>_<id>, lower-cased, other characters as '_'. */
static void
sandbox_name(const agent_drill_request *req, char *out, size_t size)
{
	snprintf(out, size, "coffer_drill_%.40s_%" PRIu64, req->service, req->drill_id);
	for (char *p = out; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z') {
			*p = (char)(*p - 'A' + 'a');
		} else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
			*p = '_';
		}
	}
}

/* Refuses a sandbox that is a production cluster, or a database that exists. */
static int
sandbox_check(const agent_config *cfg, const agent_drill_request *req, const coffer_manifest *m,
    const char *db, coffer_err *err)
{
	PGconn *conn = sandbox_connect(cfg, NULL, err);
	if (conn == NULL) {
		return (err->code);
	}
	char sysid[32] = "";
	bool null = false;
	int rc = one_value(conn, "SELECT system_identifier::text FROM pg_control_system()", sysid,
	    sizeof(sysid), &null, err);
	char own[32];
	snprintf(own, sizeof(own), "%" PRIu64, m->system_identifier);
	bool production = rc == 0 && strcmp(sysid, own) == 0;
	for (size_t i = 0; rc == 0 && i < req->n_production && !production; i++) {
		production = strcmp(sysid, req->production_system_ids[i]) == 0;
	}
	if (production) {
		rc = coffer_err_set(err, COFFER_EREFUSED,
		    "the sandbox server (system identifier %s) "
		    "is a production cluster: refusing to drill into it",
		    sysid);
		coffer_err_hint(err,
		    "point [drill] sandbox at a PostgreSQL server of the runner's "
		    "own, never at a service's database");
	}
	if (rc == 0) {
		const char *params[] = { db };
		PGresult *r = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1,
		    NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			rc = coffer_err_set(err, COFFER_EPG, "looking for the sandbox database: %s",
			    PQresultErrorMessage(r));
		} else if (PQntuples(r) > 0) {
			rc = coffer_err_set(
			    err, COFFER_EEXIST, "sandbox database %s exists already", db);
			coffer_err_hint(err,
			    "a drill never restores over a database: drop %s after "
			    "inspecting it",
			    db);
		}
		PQclear(r);
	}
	PQfinish(conn);
	return (rc);
}

static int
sandbox_drop(const agent_config *cfg, const char *db, coffer_err *err)
{
	if (!identifier_ok(db)) {
		return (coffer_err_set(err, COFFER_EINVAL, "sandbox name %s is not plain", db));
	}
	PGconn *conn = sandbox_connect(cfg, NULL, err);
	if (conn == NULL) {
		return (err->code);
	}
	char sql[200];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	PGresult *r = PQexec(conn, sql);
	int rc = PQresultStatus(r) == PGRES_COMMAND_OK
	    ? 0
	    : coffer_err_set(
	          err, COFFER_EPG, "dropping sandbox %s: %s", db, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(conn);
	return (rc);
}

/*
 * The drill role of a service: coffer_drill_<service> when the service's
 * name is already a plain lower-case identifier that fits, otherwise a
 * cleaned prefix and a hash of the exact name, so that two services never
 * share a role (billing-eu and billing_eu differ).
 */
static void
role_name(const char *service, char *out, size_t size)
{
	char clean[COFFER_NAME_SIZE];
	snprintf(clean, sizeof(clean), "%s", service);
	bool plain = true;
	for (char *p = clean; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
			*p = (*p >= 'A' && *p <= 'Z') ? (char)(*p - 'A' + 'a') : '_';
			plain = false;
		}
	}
	if (plain && strlen(AGENT_DRILL_ROLE_PREFIX) + strlen(clean) <= 63) {
		snprintf(out, size, AGENT_DRILL_ROLE_PREFIX "%s", clean);
		return;
	}
	/* FNV-1a: names come from the operator's configuration, not an
	 * adversary; the hash only keeps distinct names apart. */
	uint64_t h = 14695981039346656037ULL;
	for (const char *p = service; *p != '\0'; p++) {
		h = (h ^ (uint8_t)*p) * 1099511628211ULL;
	}
	snprintf(out, size, AGENT_DRILL_ROLE_PREFIX "%.32s_%016" PRIx64, clean, h);
}

/* What the runner records on a sandbox database: when it may be dropped. */
#define SANDBOX_COMMENT "coffer drill sandbox; drop after "

/* COMMENT ON DATABASE db: dropped by the sweep once expires_ms passed. */
static int
sandbox_mark(PGconn *admin, const char *db, int64_t expires_ms, coffer_err *err)
{
	char when[40], text[96], sql[400];
	coffer_time_format(when, sizeof(when), expires_ms);
	snprintf(text, sizeof(text), SANDBOX_COMMENT "%s", when);
	char *lit = PQescapeLiteral(admin, text, strlen(text));
	if (lit == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	snprintf(sql, sizeof(sql), "COMMENT ON DATABASE %s IS %s", db, lit);
	PQfreemem(lit);
	return (own_command(admin, sql, "recording the sandbox's expiry", err));
}

/*
 * The drill role, fresh for this drill: NOSUPERUSER, NOCREATEDB,
 * NOCREATEROLE, NOREPLICATION, NOBYPASSRLS, a member of no role, LOGIN with
 * a random password that lives only in this process (the server is sent
 * its SCRAM verifier, so no statement log holds it). The admin role is made
 * a member of it so that it can create, mark and drop the role's database.
 */
/* A fresh random password for one drill, as hex. */
static int
new_password(char *password, size_t pwsize, coffer_err *err)
{
	uint8_t rnd[24];
	if (pwsize < 2 * sizeof(rnd) + 1 ||
	    getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		return (coffer_err_set(
		    err, COFFER_EIO, "no random bytes for the drill role's password"));
	}
	for (size_t i = 0; i < sizeof(rnd); i++) {
		snprintf(password + 2 * i, 3, "%02x", rnd[i]);
	}
	explicit_bzero(rnd, sizeof(rnd));
	return (0);
}

static int
role_prepare(PGconn *admin, const char *role, const char *password, coffer_err *err)
{
	char *q = PQescapeIdentifier(admin, role, strlen(role));
	if (q == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	const char *params[] = { role };
	PGresult *r = PQexecParams(admin,
	    "SELECT (SELECT count(*) FROM pg_auth_members m WHERE m.member = r.oid) = 0 "
	    "AND NOT rolsuper AND NOT rolreplication AND NOT rolbypassrls "
	    "FROM pg_roles r WHERE rolname = $1",
	    1, NULL, params, NULL, NULL, 0);
	int rc = 0;
	char sql[512];
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = coffer_err_set(
		    err, COFFER_EPG, "looking up role %s: %s", role, PQresultErrorMessage(r));
		trim_message(err->msg);
	} else if (PQntuples(r) == 0) {
		snprintf(sql, sizeof(sql), "CREATE ROLE %s NOLOGIN", q);
		rc = own_command(admin, sql, "creating the drill role", err);
	} else if (strcmp(PQgetvalue(r, 0, 0), "t") != 0) {
		rc = coffer_err_set(err, COFFER_EREFUSED,
		    "role %s is a member of other roles, or a superuser, replication or "
		    "BYPASSRLS role: a drill role may hold nothing but its sandbox",
		    role);
		coffer_err_hint(
		    err, "DROP ROLE %s on the sandbox server (the runner recreates it)", role);
	}
	PQclear(r);
	if (rc == 0) {
		/* SUPERUSER, REPLICATION and BYPASSRLS were checked above: only
		 * a superuser may name them in ALTER ROLE, and the admin need not
		 * be one. INHERIT: its only membership is the implicit
		 * pg_database_owner of its sandbox, which lets it create in public. */
		snprintf(sql, sizeof(sql), "ALTER ROLE %s NOCREATEDB NOCREATEROLE INHERIT", q);
		rc = own_command(admin, sql, "restricting the drill role", err);
	}
	if (rc == 0) {
		/* Membership the other way round: admin in role, never role in admin. */
		snprintf(sql, sizeof(sql), "GRANT %s TO CURRENT_USER", q);
		rc = own_command(admin, sql, "letting the runner manage the drill role", err);
		if (rc != 0) {
			coffer_err_hint(err,
			    "the [drill] sandbox role needs CREATEROLE (or superuser) to manage "
			    "the drill roles");
		}
	}
	if (rc == 0) {
		char *verifier = PQencryptPasswordConn(admin, password, role, NULL);
		char *lit =
		    verifier != NULL ? PQescapeLiteral(admin, verifier, strlen(verifier)) : NULL;
		if (lit == NULL) {
			rc = coffer_err_set(err, COFFER_EPG,
			    "cannot hash the drill role's password: %s", PQerrorMessage(admin));
		} else {
			snprintf(sql, sizeof(sql), "ALTER ROLE %s LOGIN PASSWORD %s", q, lit);
			rc = own_command(admin, sql, "letting the drill role log in", err);
		}
		PQfreemem(lit);
		PQfreemem(verifier);
	}
	PQfreemem(q);
	return (rc);
}

/* Between drills the role cannot log in at all. */
static void
role_lock(const agent_config *cfg, const char *role)
{
	coffer_err e = { 0 };
	PGconn *admin = sandbox_connect(cfg, NULL, &e);
	char *q = admin != NULL ? PQescapeIdentifier(admin, role, strlen(role)) : NULL;
	if (q != NULL) {
		char sql[200];
		snprintf(sql, sizeof(sql), "ALTER ROLE %s NOLOGIN PASSWORD NULL", q);
		own_command(admin, sql, "locking the drill role", &e);
		PQfreemem(q);
	}
	if (e.code != 0) {
		coffer_log_warn("drill role not locked", "role=%s error=\"%s\"", role, e.msg);
	}
	PQfinish(admin);
}

/*
 * The sandbox database, owned by the drill role, that only it (and the
 * admin) may connect to, marked with when it may be dropped: even a runner
 * killed mid-drill leaves a sandbox the next sweep removes.
 */
static int
sandbox_create(
    const agent_config *cfg, const char *db, const char *role, bool *made, coffer_err *err)
{
	if (!identifier_ok(db) || !identifier_ok(role)) {
		return (coffer_err_set(err, COFFER_EINVAL, "sandbox name %s is not plain", db));
	}
	PGconn *admin = sandbox_connect(cfg, NULL, err);
	if (admin == NULL) {
		return (err->code);
	}
	char sql[300];
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s OWNER %s TEMPLATE template0", db, role);
	int rc = own_command(admin, sql, "creating the sandbox database", err);
	*made = rc == 0;
	if (rc == 0) {
		snprintf(sql, sizeof(sql), "REVOKE ALL ON DATABASE %s FROM PUBLIC", db);
		rc = own_command(admin, sql, "closing the sandbox to other roles", err);
	}
	if (rc == 0) {
		/* Long enough for any drill still running against it. */
		int64_t keep = cfg->drill_keep_sandbox_ms > AGENT_DRILL_KEEP_FLOOR_MS
		    ? cfg->drill_keep_sandbox_ms
		    : AGENT_DRILL_KEEP_FLOOR_MS;
		rc = sandbox_mark(admin, db, coffer_clock_now(NULL) + keep, err);
	}
	PQfinish(admin);
	return (rc);
}

/* What the restore's target callback needs. */
typedef struct drill_target {
	const agent_config *cfg;
	const char *db;
	const char *role;
	const char *password;
	bool role_touched; /* locked at the end, even if half made */
	bool created;
} drill_target;

/* Called by the restore once the dump is verified: nothing is made on the
 * sandbox server for a backup that does not verify. */
static int
create_target(void *arg, coffer_err *err)
{
	drill_target *t = arg;
	PGconn *admin = sandbox_connect(t->cfg, NULL, err);
	if (admin == NULL) {
		return (err->code);
	}
	t->role_touched = true;
	int rc = role_prepare(admin, t->role, t->password, err);
	PQfinish(admin);
	if (rc != 0) {
		return (coffer_err_wrap(err, "the drill role %s", t->role));
	}
	/* Even a half-made sandbox (created, not yet closed or marked) is ours
	 * to drop. */
	return (sandbox_create(t->cfg, t->db, t->role, &t->created, err));
}

int
agent_drill_sweep(const agent_config *cfg, size_t *dropped, coffer_err *err)
{
	if (dropped != NULL) {
		*dropped = 0;
	}
	PGconn *admin = sandbox_connect(cfg, NULL, err);
	if (admin == NULL) {
		return (err->code);
	}
	PGresult *r = PQexecParams(admin,
	    "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') "
	    "FROM pg_database WHERE datname LIKE 'coffer\\_drill\\_%' ORDER BY datname",
	    0, NULL, NULL, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		int rc = coffer_err_set(
		    err, COFFER_EPG, "listing sandbox databases: %s", PQresultErrorMessage(r));
		trim_message(err->msg);
		PQclear(r);
		PQfinish(admin);
		return (rc);
	}
	int64_t now = coffer_clock_now(NULL);
	for (int i = 0; i < PQntuples(r); i++) {
		const char *db = PQgetvalue(r, i, 0);
		const char *comment = PQgetvalue(r, i, 1);
		int64_t expires = 0;
		coffer_err e = { 0 };
		if (!identifier_ok(db)) {
			continue;
		}
		if (strncmp(comment, SANDBOX_COMMENT, strlen(SANDBOX_COMMENT)) != 0 ||
		    coffer_time_parse(comment + strlen(SANDBOX_COMMENT), &expires) != 0) {
			/* Kept before sandboxes had an expiry: it gets one now. */
			if (sandbox_mark(admin, db, now + cfg->drill_keep_sandbox_ms, &e) == 0) {
				coffer_log_info("kept sandbox given an expiry", "sandbox=%s", db);
			} else {
				coffer_log_warn("kept sandbox not marked",
				    "sandbox=%s error=\"%s\"", db, e.msg);
			}
			continue;
		}
		if (expires > now) {
			continue;
		}
		char sql[200];
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
		if (own_command(admin, sql, "dropping an expired sandbox", &e) == 0) {
			coffer_log_info("expired sandbox dropped", "sandbox=%s expired=\"%s\"", db,
			    comment + strlen(SANDBOX_COMMENT));
			if (dropped != NULL) {
				(*dropped)++;
			}
		} else {
			coffer_log_warn(
			    "expired sandbox not dropped", "sandbox=%s error=\"%s\"", db, e.msg);
		}
	}
	PQclear(r);
	PQfinish(admin);
	return (0);
}

/* conninfo as role, with password: key='value' pairs, so a URI works too. */
static char *
conninfo_as(const char *conninfo, const char *role, const char *password, coffer_err *err)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	if (opts == NULL) {
		coffer_err_set(err, COFFER_EINVAL,
		    "[drill] sandbox is not a valid libpq connection string: %s",
		    perr != NULL ? perr : "out of memory");
		PQfreemem(perr);
		return (NULL);
	}
	size_t cap = 64 + 2 * strlen(role) + 2 * strlen(password);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL) {
			cap += strlen(o->keyword) + 2 * strlen(o->val) + 8;
		}
	}
	char *out = malloc(cap);
	if (out == NULL) {
		PQconninfoFree(opts);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		return (NULL);
	}
	size_t n = 0;
	out[0] = '\0';
	for (PQconninfoOption *o = opts;; o++) {
		const char *key = o->keyword;
		const char *val = o->val;
		if (key == NULL) {
			break;
		}
		if (strcmp(key, "user") == 0 || strcmp(key, "password") == 0 ||
		    strcmp(key, "passfile") == 0) {
			continue;
		}
		if (val == NULL) {
			continue;
		}
		n += (size_t)snprintf(out + n, cap - n, "%s%s='", n ? " " : "", key);
		for (const char *p = val; *p; p++) {
			if (*p == '\'' || *p == '\\') {
				out[n++] = '\\';
			}
			out[n++] = *p;
		}
		out[n++] = '\'';
		out[n] = '\0';
	}
	/* The role and the password are hex and identifier characters. */
	snprintf(out + n, cap - n, "%suser='%s' password='%s'", n ? " " : "", role, password);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL && strcmp(o->keyword, "password") == 0) {
			explicit_bzero(o->val, strlen(o->val));
		}
	}
	PQconninfoFree(opts);
	return (out);
}

static void
conninfo_free(char *ci)
{
	if (ci != NULL) {
		explicit_bzero(ci, strlen(ci));
		free(ci);
	}
}

/* The checks that read the restored database, as the drill role. */
static void
sql_checks(const char *role_ci, const agent_drill_request *req, const coffer_manifest *m,
    const char *db, agent_drill_result *res)
{
	coffer_err e = { 0 };
	PGconn *conn = sandbox_connect_as(role_ci, db, true, &e);
	if (conn != NULL) {
		/* Belt and braces with default_transaction_read_only: each query
		 * also runs in its own BEGIN READ ONLY (service_query). */
		own_command(conn, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
		    "making the session read only", &e);
	}
	if (conn == NULL || e.code != 0) {
		add_check(res, "freshness", false, "%s", e.msg);
		PQfinish(conn);
		return;
	}
	char v[COFFER_MANIFEST_SCHEMA_VERSION_MAX + 1];
	bool null = false;
	/* The service's own query, recorded with its answer at backup time. */
	if (m->schema_query[0] != '\0') {
		coffer_err_clear(&e);
		if (service_query(
		        conn, "the schema query", m->schema_query, v, sizeof(v), &null, &e) != 0) {
			add_check(res, "schema_version", false, "%s (query: %.200s)", e.msg,
			    m->schema_query);
		} else {
			bool same = strcmp(null ? "" : v, m->schema_version) == 0;
			add_check(res, "schema_version", same,
			    "%.100s returned \"%.100s\"%s\"%.100s\"", m->schema_query,
			    null ? "" : v, same ? ", as recorded: " : ", the backup recorded ",
			    m->schema_version);
		}
	}
	if (req->freshness_query != NULL && req->freshness_query[0] != '\0') {
		coffer_err_clear(&e);
		char sql[8192];
		snprintf(sql, sizeof(sql), "SELECT floor(extract(epoch FROM (%s)) * 1000)::bigint",
		    req->freshness_query);
		if (service_query(conn, "the freshness query", sql, v, sizeof(v), &null, &e) != 0) {
			add_check(res, "freshness", false, "%s", e.msg);
		} else if (null) {
			add_check(res, "freshness", false,
			    "the freshness query returned NULL: the "
			    "restored table has no rows");
		} else {
			int64_t newest = strtoll(v, NULL, 10);
			int64_t lag = m->finished_at - newest;
			char a[40], b[32], c[32];
			coffer_time_format(a, sizeof(a), newest);
			coffer_duration_format(b, sizeof(b), lag > 0 ? lag : 0);
			coffer_duration_format(c, sizeof(c), req->freshness_max_lag_ms);
			add_check(res, "freshness", lag <= req->freshness_max_lag_ms,
			    "newest row %s, %s before the backup finished (bound %s)", a, b, c);
		}
	}
	for (size_t i = 0; i < req->n_asserts; i++) {
		char name[32], what[48];
		snprintf(name, sizeof(name), "assertion:%zu", i + 1);
		snprintf(what, sizeof(what), "assertion %zu", i + 1);
		coffer_err_clear(&e);
		if (service_query(conn, what, req->asserts[i], v, sizeof(v), &null, &e) != 0) {
			add_check(res, name, false, "%s (query: %.200s)", e.msg, req->asserts[i]);
		} else if (null || strcmp(v, "t") != 0) {
			add_check(res, name, false, "%.200s returned %s, not true", req->asserts[i],
			    null ? "NULL" : v);
		} else {
			add_check(res, name, true, "%.200s is true", req->asserts[i]);
		}
	}
	PQfinish(conn);
}

/* The runner's view of one service: its key ring and its agent's key. */
static int
service_ctx(const agent_config *cfg, const agent_drill_request *req, agent_config *view,
    agent_ctx *ctx, coffer_err *err)
{
	/* Cleared first: the caller closes ctx after any failure, this one too. */
	memset(ctx, 0, sizeof(*ctx));
	char sec[96];
	snprintf(sec, sizeof(sec), "drill.%s", req->service);
	if (!coffer_config_has_section(cfg->ini, sec)) {
		coffer_err_set(err, COFFER_EINVAL,
		    "%s: no [%s]: this runner has no keys for service "
		    "%s",
		    coffer_config_path(cfg->ini), sec, req->service);
		return (coffer_err_hint(err,
		    "add [%s] with key_ring (the service's key ring) and "
		    "verify_key (its agent's public key)",
		    sec));
	}
	*view = *cfg;
	view->service = req->service;
	ctx->cfg = view;
	ctx->repo_name = req->repository;
	int rc = coffer_keyring_load(coffer_config_str(cfg->ini, sec, "key_ring"), &ctx->ring, err);
	if (rc == 0) {
		rc = coffer_sign_pubkey_load(
		    coffer_config_str(cfg->ini, sec, "verify_key"), &ctx->sign_pub, err);
	}
	if (rc == 0) {
		rc = agent_repo_open(cfg, req->repository, 0, &ctx->repo, err);
	}
	if (rc != 0) {
		coffer_err_wrap(err, "[%s]", sec);
	}
	return (rc);
}

static void
service_ctx_close(agent_ctx *ctx)
{
	coffer_keyring_free(ctx->ring);
	coffer_sign_pubkey_free(ctx->sign_pub);
	coffer_repo_close(ctx->repo);
}

int
agent_drill_run(const agent_config *cfg, const agent_drill_request *req, agent_drill_result *res,
    coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	int64_t t0 = coffer_clock_monotonic_ms();
	if (!cfg->drill_runner) {
		coffer_err_set(err, COFFER_EINVAL, "%s: this agent is not a drill runner",
		    coffer_config_path(cfg->ini));
		return (coffer_err_hint(err,
		    "drills run on an agent with [agent] role = "
		    "drill_runner and a [drill] sandbox"));
	}
	coffer_err sweep_err = { 0 };
	if (agent_drill_sweep(cfg, NULL, &sweep_err) != 0) {
		coffer_log_warn("expired sandboxes not swept", "error=\"%s\"", sweep_err.msg);
	}
	agent_config view;
	agent_ctx ctx;
	int rc = service_ctx(cfg, req, &view, &ctx, err);
	if (rc != 0) {
		service_ctx_close(&ctx);
		add_check(res, "verify", false, "%s", err->msg);
		res->total_ms = coffer_clock_monotonic_ms() - t0;
		return (rc);
	}
	coffer_manifest *m = NULL;
	coffer_err e = { 0 };
	char db[128], role[64], password[64] = "";
	sandbox_name(req, db, sizeof(db));
	role_name(req->service, role, sizeof(role));
	char *role_ci = NULL;
	bool created = false;
	drill_target target = { .cfg = cfg, .db = db, .role = role };
	if (agent_stored_manifest(&ctx, req->backup, &m, &e) != 0) {
		add_check(res, "verify", false, "%s", e.msg);
		goto done;
	}
	snprintf(res->backup_id, sizeof(res->backup_id), "%s", m->backup_id);
	res->backup_finished_at_ms = m->finished_at;
	if (m->kind != COFFER_MANIFEST_LOGICAL) {
		add_check(res, "restore", false,
		    "backup %s is physical; drills restore logical "
		    "backups",
		    m->backup_id);
		goto done;
	}
	coffer_err_clear(&e);
	if (sandbox_check(cfg, req, m, db, &e) != 0) {
		add_check(res, "restore", false, "%s", e.msg);
		goto done;
	}
	coffer_err_clear(&e);
	if (new_password(password, sizeof(password), &e) == 0) {
		role_ci = conninfo_as(cfg->drill_sandbox, role, password, &e);
	}
	if (role_ci == NULL) {
		explicit_bzero(password, sizeof(password));
		add_check(res, "restore", false, "the drill role %s: %s", role, e.msg);
		goto done;
	}
	target.password = password;
	agent_restore_request rr = {
		.backup = m->backup_id,
		.target_db = db,
		.target_conninfo = cfg->drill_sandbox,
		.restore_conninfo = role_ci,
		.create_target = create_target,
		.create_target_arg = &target,
		.jobs = cfg->drill_jobs,
		.cancel = req->cancel,
	};
	agent_restore_result rres;
	coffer_err_clear(&e);
	coffer_log_info("drill started",
	    "drill=%" PRIu64 " service=%s backup=%s repository=%s "
	    "sandbox=%s",
	    req->drill_id, req->service, m->backup_id, req->repository, db);
	int rr_rc = agent_restore_logical(&ctx, &rr, &rres, &e);
	explicit_bzero(password, sizeof(password));
	created = target.created;
	if (created) {
		snprintf(res->sandbox, sizeof(res->sandbox), "%s", db);
	}
	res->restore_ms = rres.duration_ms;
	if (rr_rc == COFFER_ECANCELED) {
		rc = rr_rc;
		*err = e;
		goto done;
	}
	switch (rr_rc == 0 ? AGENT_RESTORE_DONE : rres.stage) {
	case AGENT_RESTORE_MANIFEST:
	case AGENT_RESTORE_VERIFY:
		add_check(res, "verify", false, "%s", e.msg);
		goto done;
	case AGENT_RESTORE_TARGET:
	case AGENT_RESTORE_PG_RESTORE:
		add_check(res, "verify", true, "signature, chunks and digests check");
		add_check(res, "restore", false, "%s", e.msg);
		goto done;
	case AGENT_RESTORE_ROW_COUNTS:
		add_check(res, "verify", true, "signature, chunks and digests check");
		add_check(res, "restore", true, "pg_restore into %s", db);
		add_check(res, "row_counts", false, "%s", e.msg);
		break;
	case AGENT_RESTORE_DONE:
		add_check(res, "verify", true, "signature, chunks and digests check");
		add_check(res, "restore", true, "pg_restore into %s", db);
		add_check(res, "row_counts", true,
		    "%zu tables, %" PRIu64 " rows as in the manifest", rres.tables, rres.rows);
		break;
	}
	sql_checks(role_ci, req, m, db, res);
	if (req->rto_ms > 0) {
		char a[32], b[32];
		add_check(res, "rto", res->restore_ms <= req->rto_ms,
		    "restored in %s, objective %s",
		    coffer_duration_format(a, sizeof(a), res->restore_ms),
		    coffer_duration_format(b, sizeof(b), req->rto_ms));
	}
done:
	res->ok = res->n_checks > 0;
	for (size_t i = 0; i < res->n_checks; i++) {
		res->ok = res->ok && res->checks[i].ok;
	}
	if (created && (res->ok || req->drop_on_failure)) {
		coffer_err_clear(&e);
		if (sandbox_drop(cfg, db, &e) != 0) {
			coffer_log_warn(
			    "sandbox not dropped", "sandbox=%s error=\"%s\"", db, e.msg);
			res->sandbox_kept = true;
		}
	} else if (created) {
		/* Kept for inspection, and only until keep_sandbox_for from now. */
		res->sandbox_kept = true;
		coffer_err_clear(&e);
		PGconn *admin2 = sandbox_connect(cfg, NULL, &e);
		if (admin2 == NULL ||
		    sandbox_mark(
		        admin2, db, coffer_clock_now(NULL) + cfg->drill_keep_sandbox_ms, &e) != 0) {
			coffer_log_warn("kept sandbox's expiry not updated",
			    "sandbox=%s error=\"%s\"", db, e.msg);
		}
		PQfinish(admin2);
	}
	if (target.role_touched) {
		role_lock(cfg, role);
	}
	conninfo_free(role_ci);
	res->total_ms = coffer_clock_monotonic_ms() - t0;
	coffer_log(res->ok ? COFFER_LOG_INFO : COFFER_LOG_WARN, "drill finished",
	    "drill=%" PRIu64 " service=%s backup=%s ok=%s restore_ms=%" PRId64 " failure=\"%s\"",
	    req->drill_id, req->service, res->backup_id, res->ok ? "yes" : "no", res->restore_ms,
	    res->failure);
	coffer_manifest_free(m);
	service_ctx_close(&ctx);
	return (rc);
}
