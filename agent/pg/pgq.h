/*
 * Small libpq helpers for the physical side (WAL archiving, base backups,
 * physical restores): one connection opened from [postgres] conninfo, with
 * host, port and dbname optionally replaced (a restored cluster listens
 * elsewhere), and one-row queries whose failures come back as coffer_err.
 * agent/pg/pg.h stays the logical backup's snapshot machinery.
 *
 * Messages never contain the conninfo (it may hold a password).
 */
#ifndef COFFER_AGENT_PG_PGQ_H
#define COFFER_AGENT_PG_PGQ_H

#include <libpq-fe.h>

#include "common/base/error.h"

/* Connects with conninfo; host, port, dbname (each may be NULL) override
 * what it says. COFFER_EUNAVAIL when the server cannot be reached,
 * COFFER_EPG when it refuses, COFFER_EINVAL for a malformed conninfo. */
int agent_pgq_connect(const char *conninfo, const char *host, const char *port, const char *dbname,
    int timeout_s, PGconn **out, coffer_err *err);

/* Runs sql with nparams text parameters and expects exactly one row; *out
 * is the result (PQclear it). what names the step in messages. */
int agent_pgq_row(PGconn *conn, const char *what, const char *sql, int nparams,
    const char *const *params, PGresult **out, coffer_err *err);

/* Runs a statement that returns no rows (SET ...). */
int agent_pgq_command(PGconn *conn, const char *what, const char *sql, coffer_err *err);

#endif
