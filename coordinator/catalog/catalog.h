/*
 * Catalog: the coordinator's PostgreSQL database, through libpq.
 *
 * What it promises:
 * - Every call blocks on the network, so it belongs on a worker thread or
 *   the libuv thread pool, never on the loop thread. A coord_catalog is one
 *   connection and is not thread-safe: one thread uses it at a time (keep a
 *   connection per worker).
 * - Errors name what was being done and carry PostgreSQL's own message and
 *   hint. A connection that cannot be made or was lost is COFFER_EUNAVAIL;
 *   PostgreSQL refusing a statement is COFFER_EPG. Messages describe the
 *   target by host, port, database and user, never by the conninfo text, so
 *   a password in it is never printed.
 * - The schema is versioned by the migrations compiled into the binary
 *   (coordinator/catalog/migrations.h). coord_catalog_migrate brings a catalog up to
 *   date; coord_catalog_check is what the daemon runs at start and refuses a
 *   catalog that is newer, older or not what the binary's migrations built.
 */
#ifndef COFFER_COORDINATOR_CATALOG_CATALOG_H
#define COFFER_COORDINATOR_CATALOG_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "common/base/error.h"

/* pg_advisory_xact_lock keys, one per kind of critical section, so two
 * migrators (or a migrator and an old coordinator) never interleave. */
#define COORD_CATALOG_LOCK_MIGRATE 0x436f666665720001LL

/* A connection is refused when PostgreSQL is older than this (EXECUTE
 * FUNCTION in triggers, jsonb). */
#define COORD_CATALOG_MIN_SERVER 110000

typedef struct coord_catalog coord_catalog;

/* Connects with libpq's conninfo (keywords or URI). A connect_timeout of 10s
 * applies unless conninfo sets its own. Returns NULL and fills err on
 * failure: COFFER_EINVAL (conninfo does not parse), COFFER_EUNAVAIL (cannot
 * connect, or authentication failed), COFFER_EVERSION (server too old). */
coord_catalog *coord_catalog_open(const char *conninfo, coffer_err *err);

/* Closes the connection; a transaction still open is rolled back by the
 * server. NULL is fine. */
void coord_catalog_close(coord_catalog *cat);

/* The libpq connection, for modules that run their own statements (owned by
 * cat; do not PQfinish it). */
PGconn *coord_catalog_conn(coord_catalog *cat);

/* True while the connection is usable: false once libpq lost it, and
 * also once any call on it failed with COFFER_EUNAVAIL (a class 08 or
 * 57P01..57P03 error leaves libpq's status "ok" but the session unusable),
 * until coord_catalog_reconnect succeeds. Whoever holds a connection
 * checks this after each piece of work, whatever the work was
 * (coordinator/catalog/reconnect.h is the rule that acts on it). */
bool coord_catalog_ok(const coord_catalog *cat);

/* Why coord_catalog_ok is false: the error that found the connection lost
 * (no conninfo text), or a generic phrase. Never NULL. */
const char *coord_catalog_lost_why(const coord_catalog *cat);

/* Re-establishes a lost connection (PQreset). Returns 0 or COFFER_EUNAVAIL. */
int coord_catalog_reconnect(coord_catalog *cat, coffer_err *err);

/* Runs sql (no parameters, results discarded): BEGIN, COMMIT, DDL. what
 * names the step in the error message ("starting a transaction"). */
int coord_catalog_exec(coord_catalog *cat, const char *sql, const char *what, coffer_err *err);

/* BEGIN / COMMIT / ROLLBACK. rollback never fails loudly: it is the cleanup
 * path, and a lost connection rolls back by itself. */
int coord_catalog_begin(coord_catalog *cat, coffer_err *err);
int coord_catalog_commit(coord_catalog *cat, coffer_err *err);
void coord_catalog_rollback(coord_catalog *cat);

/* Called by the audit log (coordinator/catalog/audit.c) with the chain head
 * its rows left in this connection's open transaction; coord_catalog_commit
 * hands it to coord_audit_mark_committed once PostgreSQL reports COMMIT, and
 * rollback or a new BEGIN forget it. mac is COORD_AUDIT_MAC_LEN bytes. */
void coord_catalog_audit_pending(coord_catalog *cat, int64_t seq, const uint8_t *mac);

/*
 * Runs one statement with text parameters, prepared on first use and
 * executed by name afterwards: the hot paths (intake, the audit chain) pay
 * PostgreSQL's parse and plan once per connection, not once per event.
 * The cache is keyed by sql's address and checked against a hash of its
 * text, so a string literal is prepared once and text built at run time is
 * still run as written (prepared anew per distinct text; prefer
 * coord_catalog_adhoc for it). Past CAT_MAX_PREPARED statements it falls
 * back to an unnamed statement. Returns the result when the statement
 * succeeded (the caller PQclears it), else NULL with *rv and err set as by
 * coord_catalog_pg_error.
 */
PGresult *coord_catalog_query(coord_catalog *cat, const char *sql, int n, const char *const *vals,
    const char *what, int *rv, coffer_err *err);

/* coord_catalog_query for a statement whose result is not needed: 0 or the
 * error. sql must be a string literal, as there. */
int coord_catalog_query_exec(coord_catalog *cat, const char *sql, int n, const char *const *vals,
    const char *what, coffer_err *err);

/*
 * One statement with text parameters, never prepared: for statements run
 * rarely (maintenance passes, operator commands) or whose text is built at
 * run time. what names the step in the error message. Returns the result
 * (the caller PQclears it), else NULL with *rv and err set as by
 * coord_catalog_pg_error; adhoc_exec discards the result.
 */
PGresult *coord_catalog_adhoc(coord_catalog *cat, const char *what, const char *sql, int n,
    const char *const *vals, int *rv, coffer_err *err);
int coord_catalog_adhoc_exec(coord_catalog *cat, const char *what, const char *sql, int n,
    const char *const *vals, coffer_err *err);

/*
 * A PostgreSQL array literal of text elements, built up for a parameter
 * such as $1::text[] (every element quoted, " and \\ escaped), so a batch
 * of rows travels as one prepared statement's few parameters. Start from
 * { 0 }; add returns false on out of memory; text is valid until the next
 * add, reset or free ("{}" when empty).
 */
typedef struct coord_pgarray {
	char *buf;
	size_t len, cap;
} coord_pgarray;

bool coord_pgarray_add(coord_pgarray *a, const char *text);
bool coord_pgarray_add_null(coord_pgarray *a);
const char *coord_pgarray_text(coord_pgarray *a);
void coord_pgarray_reset(coord_pgarray *a);
void coord_pgarray_free(coord_pgarray *a);

/* Turns a failed result (or NULL, for a lost connection) into err: the
 * message is "<what>: <PostgreSQL's message> (SQLSTATE xxxxx)" and the hint
 * is PostgreSQL's hint if it gave one. Clears res. Returns COFFER_EUNAVAIL
 * when the connection is gone, else COFFER_EPG. */
int coord_catalog_pg_error(coord_catalog *cat, PGresult *res, const char *what, coffer_err *err);

/* The highest migration number recorded in the catalog; 0 when the catalog
 * has no schema_version table yet. */
int coord_catalog_version(coord_catalog *cat, int *version, coffer_err *err);

/* The highest migration number this binary knows. */
int coord_catalog_known_version(void);

typedef struct coord_migrate_result {
	int from_version; /* the catalog's version before */
	int to_version;   /* and after */
	int applied;      /* migrations this call applied: to_version - applied + 1
			   * .. to_version; 0 when nothing was pending */
} coord_migrate_result;

/*
 * Applies every pending migration, each in its own transaction that first
 * takes pg_advisory_xact_lock(COORD_CATALOG_LOCK_MIGRATE), re-reads the
 * catalog's version under the lock (another migrator may have won), applies
 * the SQL and records number, name, SHA-256 of the SQL, applied_at, the
 * role and the coordinator's version in schema_version. Idempotent: a
 * second run applies nothing. Refuses, like coord_catalog_check, a catalog
 * that is newer than the binary or whose applied migrations differ from the
 * binary's. res may be NULL. On failure the catalog stays at the last
 * migration that committed.
 */
int coord_catalog_migrate(coord_catalog *cat, coord_migrate_result *res, coffer_err *err);

/*
 * What `coffer-coordinator run` calls before serving: 0 only if the catalog
 * is exactly at the binary's version and every recorded migration matches
 * the binary's (number, name and SHA-256). COFFER_EVERSION when the catalog
 * is newer (upgrade the coordinator) or older (run migrate);
 * COFFER_ECORRUPT when a recorded migration differs from the binary's or
 * the record has a gap.
 */
int coord_catalog_check(coord_catalog *cat, coffer_err *err);

/*
 * The least-privilege rule (docs/CATALOG.md). check_role is what the daemon
 * runs at start: COFFER_EREFUSED, naming the role and the fix, when its
 * role is a superuser or a member of the audit table's owner, unless
 * development (then a warning is logged). grant_runtime, run by migrate as
 * the owner, gives role exactly the runtime privileges: SELECT, INSERT,
 * UPDATE, DELETE on the tables except UPDATE or DELETE on audit, INSERT or
 * DELETE on audit_head, any change to schema_version and DELETE on holds;
 * never TRUNCATE or TRIGGER. COFFER_ENOENT if role does not exist,
 * COFFER_EREFUSED if it is a superuser or the owner.
 */
int coord_catalog_check_role(coord_catalog *cat, bool development, coffer_err *err);
int coord_catalog_grant_runtime(coord_catalog *cat, const char *role, coffer_err *err);

#endif
