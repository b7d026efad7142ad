/*
 * Snapshot, metadata and row counts over libpq. See agent/pg/pg.h for what is
 * promised.
 *
 * Design notes.
 * Every query of a snapshot runs in the exporting transaction, so an error
 * in any of them aborts it; queries that may legitimately be refused
 * (pg_control_system() is superuser-only by default) are guarded with
 * has_function_privilege instead of being tried, and the standby case is
 * decided with pg_is_in_recovery() rather than by letting
 * pg_current_wal_lsn() fail.
 *
 * The table list is read under the transaction's snapshot (catalog scans
 * for a query's own FROM list use it), so a table created after the snapshot
 * is neither listed nor dumped. A table dropped between the list and its
 * count makes the count fail; the backup then fails with PostgreSQL's
 * message, as pg_dump would in the same race.
 */
#include "agent/pg/pg.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#define PG_NAME_MAX    63 /* NAMEDATALEN - 1: longer identifiers are cut by the server */
#define PG_MIN_VERSION 100000

struct agent_pg_snapshot {
	PGconn *conn;
	PGcancel *cancel; /* for agent_pg_snapshot_cancel, from any thread */
	char id[64];
	agent_pg_meta meta;
	agent_pg_tables tables;
};

/* Never print the conninfo: it may hold a password. The hint says where. */
static const char *const hint_conninfo = "[postgres] conninfo";

static const char user_rel_filter[] = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'";

/* libpq's messages span lines ("...failed: FATAL:  ...\n\tIs the server..."):
 * fold them into one line for coffer_err. */
static void
flatten(char *dst, size_t size, const char *src)
{
	size_t j = 0;
	bool space = false;
	for (const char *p = src; *p != '\0' && j + 1 < size; p++) {
		if (*p == '\n' || *p == '\t' || *p == '\r' || *p == ' ') {
			space = j > 0;
			continue;
		}
		if (space && j + 2 < size) {
			dst[j++] = ' ';
		}
		space = false;
		dst[j++] = *p;
	}
	dst[j] = '\0';
}

static int
connect_error(PGconn *conn, coffer_err *err)
{
	char msg[COFFER_ERR_MSG_MAX - 64];
	flatten(msg, sizeof(msg), PQerrorMessage(conn));

	if (PQconnectionNeedsPassword(conn)) {
		coffer_err_set(err, COFFER_EAUTH,
		    "connecting to PostgreSQL: the server wants a password and none was given");
		return (coffer_err_hint(err,
		    "put the role's password in a passfile (~/.pgpass or passfile= in %s)",
		    hint_conninfo));
	}
	if (strstr(msg, "authentication failed") != NULL ||
	    strstr(msg, "no pg_hba.conf entry") != NULL ||
	    (strstr(msg, "role \"") != NULL && strstr(msg, "does not exist") != NULL)) {
		coffer_err_set(err, COFFER_EAUTH, "connecting to PostgreSQL: %s", msg);
		return (coffer_err_hint(err,
		    "check the user and password in %s (or its passfile) and the server's "
		    "pg_hba.conf entry for this host",
		    hint_conninfo));
	}
	if (strstr(msg, "database \"") != NULL && strstr(msg, "does not exist") != NULL) {
		coffer_err_set(err, COFFER_ENOENT, "connecting to PostgreSQL: %s", msg);
		return (coffer_err_hint(
		    err, "check dbname in %s, or create the database", hint_conninfo));
	}
	if (strstr(msg, "FATAL:") != NULL && strstr(msg, "the database system is") == NULL &&
	    strstr(msg, "too many clients") == NULL) {
		coffer_err_set(err, COFFER_EPG, "connecting to PostgreSQL: %s", msg);
		return (coffer_err_hint(err,
		    "the server refused the connection; see its message and %s", hint_conninfo));
	}
	/* Refused, timed out, no route, unknown host, server starting or full. */
	coffer_err_set(err, COFFER_EUNAVAIL, "cannot reach PostgreSQL: %s", msg);
	return (coffer_err_hint(err,
	    "check host and port in %s and that the server is running and reachable",
	    hint_conninfo));
}

static int
pg_connect(const char *conninfo, int timeout_s, PGconn **out, coffer_err *err)
{
	*out = NULL;
	if (conninfo == NULL) {
		conninfo = "";
	}
	/* Parse first: libpq's syntax errors quote pieces of the string, which
	 * may be the password. */
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	if (opts == NULL) {
		PQfreemem(perr);
		coffer_err_set(err, COFFER_EINVAL,
		    "the PostgreSQL conninfo is not a valid libpq connection string");
		return (coffer_err_hint(err,
		    "fix %s: key=value pairs separated by spaces, or a postgresql:// URI",
		    hint_conninfo));
	}
	PQconninfoFree(opts);

	char tbuf[16];
	const char *keys[4];
	const char *vals[4];
	int k = 0;
	keys[k] = "fallback_application_name";
	vals[k++] = "coffer-agent";
	if (timeout_s > 0) {
		snprintf(tbuf, sizeof(tbuf), "%d", timeout_s);
		keys[k] = "connect_timeout";
		vals[k++] = tbuf;
	}
	/* Last, so anything the conninfo sets wins over the defaults above. */
	keys[k] = "dbname";
	vals[k++] = conninfo;
	keys[k] = NULL;
	vals[k] = NULL;

	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "out of memory connecting to PostgreSQL"));
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		int rv = connect_error(conn, err);
		PQfinish(conn);
		return (rv);
	}
	*out = conn;
	return (0);
}

static int
sqlstate_code(const char *state)
{
	if (state == NULL) {
		return (COFFER_EUNAVAIL); /* no result: the connection broke */
	}
	if (strcmp(state, "42501") == 0) {
		return (COFFER_EPERM);
	}
	if (strcmp(state, "42P04") == 0) {
		return (COFFER_EEXIST);
	}
	if (strcmp(state, "3D000") == 0 || strcmp(state, "42P01") == 0) {
		return (COFFER_ENOENT);
	}
	if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
	    strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0) {
		return (COFFER_EUNAVAIL);
	}
	if (strcmp(state, "57014") == 0) {
		return (COFFER_ECANCELED);
	}
	return (COFFER_EPG);
}

/* Runs one statement; on success *out (if not NULL) holds the result for the
 * caller to PQclear. `what` names the step for the message. */
static int
pg_query(PGconn *conn, const char *sql, int nparams, const char *const *params, ExecStatusType want,
    PGresult **out, const char *what, coffer_err *err)
{
	if (out != NULL) {
		*out = NULL;
	}
	PGresult *res = nparams == 0
	    ? PQexec(conn, sql)
	    : PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (res != NULL && PQresultStatus(res) == want) {
		if (out != NULL) {
			*out = res;
		} else {
			PQclear(res);
		}
		return (0);
	}
	char msg[COFFER_ERR_MSG_MAX - 128];
	const char *state = NULL;
	if (res != NULL && PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) != NULL) {
		flatten(msg, sizeof(msg), PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	} else {
		flatten(msg, sizeof(msg), PQerrorMessage(conn));
	}
	int code = sqlstate_code(state);
	coffer_err_set(err, code, "%s: %s%s%s%s", what, msg, state ? " (SQLSTATE " : "",
	    state ? state : "", state ? ")" : "");
	PQclear(res);
	switch (code) {
	case COFFER_EPERM:
		coffer_err_hint(err,
		    "grant the role in %s what it lacks (reading every table needs SELECT, "
		    "e.g. through pg_read_all_data)",
		    hint_conninfo);
		break;
	case COFFER_EUNAVAIL:
		coffer_err_hint(err, "the connection to PostgreSQL was lost; check the server");
		break;
	default:
		coffer_err_hint(err, "see PostgreSQL's message; the server log has details");
		break;
	}
	return (code);
}

void
agent_pg_tables_fini(agent_pg_tables *t)
{
	if (t == NULL) {
		return;
	}
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].schema);
		free(t->v[i].name);
	}
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

static int
parse_i64(const char *text, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0') {
		return (-1);
	}
	*out = v;
	return (0);
}

/* Lists the tables pg_dump dumps data for and counts each one's rows, in the
 * connection's current transaction. */
static int
tables_count(PGconn *conn, agent_pg_tables *out, coffer_err *err)
{
	char sql[512];
	snprintf(sql, sizeof(sql),
	    "SELECT n.nspname, c.relname, "
	    "c.relpersistence = 'u' AND pg_catalog.pg_is_in_recovery() "
	    "FROM pg_catalog.pg_class c "
	    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	    "WHERE c.relkind = 'r' AND c.relpersistence <> 't' AND %s "
	    "ORDER BY 1, 2",
	    user_rel_filter);
	PGresult *res;
	int rv = pg_query(conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, "listing tables", err);
	if (rv != 0) {
		return (rv);
	}
	out->v = NULL;
	out->n = 0;
	int n = PQntuples(res);
	if (n > AGENT_PG_MAX_TABLES) {
		PQclear(res);
		coffer_err_set(err, COFFER_ETOOBIG, "the database has %d tables, more than %d", n,
		    AGENT_PG_MAX_TABLES);
		return (coffer_err_hint(err,
		    "back up this database with pg_dump directly, or raise AGENT_PG_MAX_TABLES"));
	}
	out->v = calloc(n > 0 ? (size_t)n : 1, sizeof(*out->v));
	if (out->v == NULL) {
		PQclear(res);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory listing %d tables", n));
	}
	for (int i = 0; i < n; i++) {
		agent_pg_table *t = &out->v[i];
		const char *schema = PQgetvalue(res, i, 0);
		const char *name = PQgetvalue(res, i, 1);
		t->schema = strdup(schema);
		t->name = strdup(name);
		out->n++;
		if (t->schema == NULL || t->name == NULL) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "out of memory listing tables");
			break;
		}
		if (strcmp(PQgetvalue(res, i, 2), "t") == 0) {
			/* A standby cannot read unlogged tables, and pg_dump there
			 * dumps none of their rows: the dump holds 0, and a restore
			 * creates them empty. */
			t->rows = 0;
			continue;
		}
		char *qs = PQescapeIdentifier(conn, schema, strlen(schema));
		char *qn = PQescapeIdentifier(conn, name, strlen(name));
		char csql[1024];
		int len = -1;
		if (qs != NULL && qn != NULL) {
			len =
			    snprintf(csql, sizeof(csql), "SELECT count(*) FROM ONLY %s.%s", qs, qn);
		}
		char what[300];
		snprintf(
		    what, sizeof(what), "counting rows of %s.%s", qs ? qs : schema, qn ? qn : name);
		PQfreemem(qs);
		PQfreemem(qn);
		if (len < 0 || (size_t)len >= sizeof(csql)) {
			rv = coffer_err_set(
			    err, COFFER_EINTERNAL, "%s: cannot quote the name", what);
			break;
		}
		PGresult *cres;
		rv = pg_query(conn, csql, 0, NULL, PGRES_TUPLES_OK, &cres, what, err);
		if (rv != 0) {
			break;
		}
		if (PQntuples(cres) != 1 || parse_i64(PQgetvalue(cres, 0, 0), &t->rows) != 0) {
			PQclear(cres);
			rv = coffer_err_set(err, COFFER_EPROTO, "%s: unexpected result", what);
			break;
		}
		PQclear(cres);
	}
	PQclear(res);
	if (rv != 0) {
		agent_pg_tables_fini(out);
	}
	return (rv);
}

/* Checks the server version and settles the session for long reads: a
 * role's statement_timeout would cut the counts of a large table, and
 * idle_in_transaction_session_timeout would end the snapshot's transaction
 * while it sits idle during pg_dump (pg_dump resets both for itself too). */
static int
session_prepare(PGconn *conn, coffer_err *err)
{
	int v = PQserverVersion(conn);
	if (v < PG_MIN_VERSION) {
		coffer_err_set(
		    err, COFFER_EVERSION, "the PostgreSQL server is version %d, older than 10", v);
		return (coffer_err_hint(
		    err, "upgrade the server; Coffer needs PostgreSQL 10 or later"));
	}
	return (
	    pg_query(conn, "SET statement_timeout = 0; SET idle_in_transaction_session_timeout = 0",
	        0, NULL, PGRES_COMMAND_OK, NULL, "preparing the session", err));
}

static void
copy_text(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src != NULL ? src : "");
}

static int
read_meta(PGconn *conn, agent_pg_meta *m, coffer_err *err)
{
	static const char sql[] =
	    "SELECT current_setting('server_version_num'), pg_catalog.version(), "
	    "CASE WHEN has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') "
	    "THEN (SELECT system_identifier::text FROM pg_catalog.pg_control_system()) END, "
	    "current_database(), pg_catalog.pg_database_size(current_database()), "
	    "pg_catalog.pg_is_in_recovery(), "
	    "CASE WHEN pg_catalog.pg_is_in_recovery() THEN "
	    "  CASE WHEN has_function_privilege('pg_catalog.pg_last_wal_replay_lsn()', 'EXECUTE') "
	    "  THEN pg_catalog.pg_last_wal_replay_lsn()::text END "
	    "WHEN has_function_privilege('pg_catalog.pg_current_wal_lsn()', 'EXECUTE') "
	    "THEN pg_catalog.pg_current_wal_lsn()::text END";
	PGresult *res;
	int rv =
	    pg_query(conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, "reading server metadata", err);
	if (rv != 0) {
		return (rv);
	}
	int64_t v = 0;
	if (PQntuples(res) != 1 || PQnfields(res) != 7 ||
	    parse_i64(PQgetvalue(res, 0, 0), &v) != 0 ||
	    parse_i64(PQgetvalue(res, 0, 4), &m->database_size) != 0) {
		PQclear(res);
		return (coffer_err_set(
		    err, COFFER_EPROTO, "reading server metadata: unexpected result shape"));
	}
	m->server_version_num = (int)v;
	copy_text(m->server_version, sizeof(m->server_version), PQgetvalue(res, 0, 1));
	copy_text(m->system_identifier, sizeof(m->system_identifier), PQgetvalue(res, 0, 2));
	copy_text(m->database, sizeof(m->database), PQgetvalue(res, 0, 3));
	m->in_recovery = strcmp(PQgetvalue(res, 0, 5), "t") == 0;
	copy_text(m->lsn, sizeof(m->lsn), PQgetvalue(res, 0, 6));
	PQclear(res);
	return (0);
}

int
agent_pg_snapshot_export(
    const char *conninfo, int connect_timeout_s, agent_pg_snapshot **out, coffer_err *err)
{
	*out = NULL;
	agent_pg_snapshot *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	int rv = pg_connect(conninfo, connect_timeout_s, &s->conn, err);
	if (rv == 0) {
		rv = session_prepare(s->conn, err);
	}
	if (rv == 0) {
		rv = pg_query(s->conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
		    PGRES_COMMAND_OK, NULL, "starting the snapshot transaction", err);
	}
	if (rv == 0) {
		/* The first statement of the transaction: it fixes the snapshot. */
		PGresult *res;
		rv = pg_query(s->conn, "SELECT pg_catalog.pg_export_snapshot()", 0, NULL,
		    PGRES_TUPLES_OK, &res, "exporting the snapshot", err);
		if (rv == 0) {
			if (PQntuples(res) != 1 || strlen(PQgetvalue(res, 0, 0)) >= sizeof(s->id) ||
			    PQgetvalue(res, 0, 0)[0] == '\0') {
				rv = coffer_err_set(err, COFFER_EPROTO,
				    "exporting the snapshot: unexpected result");
			} else {
				copy_text(s->id, sizeof(s->id), PQgetvalue(res, 0, 0));
			}
			PQclear(res);
		}
	}
	if (rv == 0) {
		rv = read_meta(s->conn, &s->meta, err);
	}
	if (rv == 0) {
		s->cancel = PQgetCancel(s->conn);
		if (s->cancel == NULL) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		}
	}
	if (rv != 0) {
		agent_pg_snapshot_close(s);
		return (rv);
	}
	*out = s;
	return (0);
}

int
agent_pg_snapshot_open(
    const char *conninfo, int connect_timeout_s, agent_pg_snapshot **out, coffer_err *err)
{
	int rv = agent_pg_snapshot_export(conninfo, connect_timeout_s, out, err);
	if (rv == 0) {
		rv = agent_pg_snapshot_count(*out, err);
		if (rv != 0) {
			agent_pg_snapshot_close(*out);
			*out = NULL;
		}
	}
	return (rv);
}

int
agent_pg_snapshot_count(agent_pg_snapshot *snap, coffer_err *err)
{
	agent_pg_tables_fini(&snap->tables);
	return (tables_count(snap->conn, &snap->tables, err));
}

int
agent_pg_snapshot_value(
    agent_pg_snapshot *snap, const char *sql, char *out, size_t size, coffer_err *err)
{
	/* A savepoint: a failing query must not abort the snapshot's
	 * transaction, which pg_dump is importing. */
	PGresult *r = PQexec(snap->conn, "SAVEPOINT coffer_value");
	PQclear(r);
	r = PQexec(snap->conn, sql);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = coffer_err_set(err, COFFER_EPG, "%s", PQresultErrorMessage(r));
		size_t n = strlen(err->msg);
		while (n > 0 && (err->msg[n - 1] == '\n' || err->msg[n - 1] == ' ')) {
			err->msg[--n] = '\0';
		}
	} else if (PQntuples(r) != 1 || PQnfields(r) != 1) {
		rc = coffer_err_set(err, COFFER_EINVAL,
		    "returned %d row(s) of %d column(s), not one "
		    "value",
		    PQntuples(r), PQnfields(r));
	} else if (strlen(PQgetvalue(r, 0, 0)) >= size) {
		rc = coffer_err_set(err, COFFER_ETOOBIG, "returned %zu bytes, over the %zu allowed",
		    strlen(PQgetvalue(r, 0, 0)), size - 1);
	} else {
		snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	PQclear(PQexec(snap->conn,
	    rc == 0 ? "RELEASE SAVEPOINT coffer_value" : "ROLLBACK TO SAVEPOINT coffer_value"));
	return (rc);
}

void
agent_pg_snapshot_cancel(agent_pg_snapshot *snap)
{
	char buf[256];
	/* PQcancel is documented thread-safe (and signal-safe); failure only
	 * means the query ends by itself. */
	(void)PQcancel(snap->cancel, buf, (int)sizeof(buf));
}

const char *
agent_pg_snapshot_id(const agent_pg_snapshot *snap)
{
	return (snap->id);
}

const agent_pg_meta *
agent_pg_snapshot_meta(const agent_pg_snapshot *snap)
{
	return (&snap->meta);
}

const agent_pg_tables *
agent_pg_snapshot_tables(const agent_pg_snapshot *snap)
{
	return (&snap->tables);
}

void
agent_pg_snapshot_close(agent_pg_snapshot *snap)
{
	if (snap == NULL) {
		return;
	}
	if (snap->conn != NULL) {
		/* Best effort: closing the connection ends the transaction anyway. */
		if (PQstatus(snap->conn) == CONNECTION_OK &&
		    PQtransactionStatus(snap->conn) != PQTRANS_IDLE) {
			PQclear(PQexec(snap->conn, "ROLLBACK"));
		}
		PQfinish(snap->conn);
	}
	PQfreeCancel(snap->cancel);
	agent_pg_tables_fini(&snap->tables);
	free(snap);
}

int
agent_pg_row_counts(
    const char *conninfo, int connect_timeout_s, agent_pg_tables *out, coffer_err *err)
{
	out->v = NULL;
	out->n = 0;
	PGconn *conn;
	int rv = pg_connect(conninfo, connect_timeout_s, &conn, err);
	if (rv != 0) {
		return (rv);
	}
	rv = session_prepare(conn, err);
	if (rv == 0) {
		rv = pg_query(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL,
		    PGRES_COMMAND_OK, NULL, "starting a read-only transaction", err);
	}
	if (rv == 0) {
		rv = tables_count(conn, out, err);
	}
	PQfinish(conn);
	return (rv);
}

static int
check_dbname(const char *name, coffer_err *err)
{
	size_t len = name != NULL ? strlen(name) : 0;
	if (len == 0 || len > PG_NAME_MAX) {
		coffer_err_set(err, COFFER_EINVAL,
		    "database name of %zu bytes: it must have 1 to %d bytes", len, PG_NAME_MAX);
		return (coffer_err_hint(
		    err, "choose a shorter --target-db (PostgreSQL would silently cut it)"));
	}
	return (0);
}

int
agent_pg_database_exists(
    const char *conninfo, int connect_timeout_s, const char *name, bool *exists, coffer_err *err)
{
	*exists = false;
	int rv = check_dbname(name, err);
	if (rv != 0) {
		return (rv);
	}
	PGconn *conn;
	rv = pg_connect(conninfo, connect_timeout_s, &conn, err);
	if (rv != 0) {
		return (rv);
	}
	const char *params[1] = { name };
	PGresult *res;
	rv = pg_query(conn, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, params,
	    PGRES_TUPLES_OK, &res, "looking up the database", err);
	if (rv == 0) {
		*exists = PQntuples(res) > 0;
		PQclear(res);
	}
	PQfinish(conn);
	return (rv);
}

int
agent_pg_database_create(
    const char *conninfo, int connect_timeout_s, const char *name, coffer_err *err)
{
	int rv = check_dbname(name, err);
	if (rv != 0) {
		return (rv);
	}
	PGconn *conn;
	rv = pg_connect(conninfo, connect_timeout_s, &conn, err);
	if (rv != 0) {
		return (rv);
	}
	char *q = PQescapeIdentifier(conn, name, strlen(name));
	if (q == NULL) {
		PQfinish(conn);
		return (coffer_err_set(err, COFFER_EINVAL, "cannot quote the database name"));
	}
	char sql[256];
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE template0", q);
	char what[200];
	snprintf(what, sizeof(what), "creating database %s", q);
	PQfreemem(q);
	/* template0 so the restore starts from a database with nothing that a
	 * local template1 may have gained; pg_restore recreates the rest. */
	rv = pg_query(conn, sql, 0, NULL, PGRES_COMMAND_OK, NULL, what, err);
	if (rv == COFFER_EEXIST) {
		coffer_err_hint(err, "choose another --target-db, or drop that database first");
	} else if (rv == COFFER_EPERM) {
		coffer_err_hint(err,
		    "the role in %s needs CREATEDB, or create the database beforehand",
		    hint_conninfo);
	}
	PQfinish(conn);
	return (rv);
}

int
agent_pg_has_user_tables(const char *conninfo, int connect_timeout_s, bool *has, coffer_err *err)
{
	*has = false;
	PGconn *conn;
	int rv = pg_connect(conninfo, connect_timeout_s, &conn, err);
	if (rv != 0) {
		return (rv);
	}
	char sql[512];
	snprintf(sql, sizeof(sql),
	    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
	    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND %s)",
	    user_rel_filter);
	PGresult *res;
	rv = pg_query(conn, sql, 0, NULL, PGRES_TUPLES_OK, &res, "looking for user tables", err);
	if (rv == 0) {
		*has = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
	PQfinish(conn);
	return (rv);
}
