#include "agent/pg/pgq.h"

#include <stdio.h>
#include <string.h>

/* libpq messages end in newlines and may span lines; a coffer_err is one. */
static void
one_line(char *dst, size_t size, const char *src)
{
	size_t j = 0;
	for (const char *p = src; *p != '\0' && j + 1 < size; p++) {
		dst[j++] = (*p == '\n' || *p == '\r' || *p == '\t') ? ' ' : *p;
	}
	while (j > 0 && dst[j - 1] == ' ') {
		j--;
	}
	dst[j] = '\0';
}

int
agent_pgq_connect(const char *conninfo, const char *host, const char *port, const char *dbname,
    int timeout_s, PGconn **out, coffer_err *err)
{
	*out = NULL;
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo != NULL ? conninfo : "", &perr);
	if (opts == NULL) {
		PQfreemem(perr);
		return (coffer_err_set(err, COFFER_EINVAL,
		            "the PostgreSQL conninfo is not a valid libpq connection string"),
		    coffer_err_hint(err,
		        "fix [postgres] conninfo: key=value pairs or a "
		        "postgresql:// URI"));
	}
	PQconninfoFree(opts);
	char tbuf[16];
	snprintf(tbuf, sizeof(tbuf), "%d", timeout_s > 0 ? timeout_s : 15);
	const char *keys[8], *vals[8];
	int k = 0;
	keys[k] = "fallback_application_name", vals[k++] = "coffer-agent";
	keys[k] = "connect_timeout", vals[k++] = tbuf;
	/* The conninfo expands in place of dbname; what follows overrides it. */
	keys[k] = "dbname", vals[k++] = conninfo != NULL ? conninfo : "";
	if (host != NULL) {
		keys[k] = "host", vals[k++] = host;
	}
	if (port != NULL) {
		keys[k] = "port", vals[k++] = port;
	}
	if (dbname != NULL) {
		keys[k] = "dbname", vals[k++] = dbname;
	}
	keys[k] = NULL, vals[k] = NULL;
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "out of memory connecting to PostgreSQL"));
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		char msg[COFFER_ERR_MSG_MAX - 64];
		one_line(msg, sizeof(msg), PQerrorMessage(conn));
		int code =
		    strstr(msg, "FATAL:") != NULL && strstr(msg, "the database system is") == NULL
		    ? COFFER_EPG
		    : COFFER_EUNAVAIL;
		PQfinish(conn);
		coffer_err_set(err, code, "connecting to PostgreSQL: %s", msg);
		return (coffer_err_hint(err,
		    code == COFFER_EUNAVAIL
		        ? "check host and port in [postgres] conninfo and that the server is running"
		        : "check the role, password and database in [postgres] conninfo and pg_hba.conf"));
	}
	*out = conn;
	return (0);
}

static int
result_error(PGconn *conn, PGresult *res, const char *what, coffer_err *err)
{
	char msg[COFFER_ERR_MSG_MAX - 96];
	one_line(msg, sizeof(msg), res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(conn));
	if (res != NULL) {
		PQclear(res);
	}
	coffer_err_set(err, COFFER_EPG, "%s: %s", what, msg);
	return (coffer_err_hint(err,
	    "see the PostgreSQL message; the role in [postgres] conninfo "
	    "needs pg_read_all_settings, pg_monitor and EXECUTE on "
	    "pg_backup_start/pg_backup_stop (or superuser)"));
}

int
agent_pgq_row(PGconn *conn, const char *what, const char *sql, int nparams,
    const char *const *params, PGresult **out, coffer_err *err)
{
	*out = NULL;
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		return (result_error(conn, res, what, err));
	}
	if (PQntuples(res) != 1) {
		int n = PQntuples(res);
		PQclear(res);
		return (coffer_err_set(err, COFFER_EPG, "%s: expected one row, got %d", what, n),
		    coffer_err_hint(err, "this is a bug in coffer-agent; report it"));
	}
	*out = res;
	return (0);
}

int
agent_pgq_command(PGconn *conn, const char *what, const char *sql, coffer_err *err)
{
	PGresult *res = PQexec(conn, sql);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		return (result_error(conn, res, what, err));
	}
	PQclear(res);
	return (0);
}
