/*
 * PostgreSQL side of a logical backup and restore, over libpq.
 *
 * A snapshot is one connection holding a REPEATABLE READ READ ONLY
 * transaction whose snapshot has been exported (pg_export_snapshot()). Inside
 * that same transaction it reads the backup's metadata and the exact row
 * count of every table pg_dump will dump, so the manifest describes exactly
 * the data pg_dump --snapshot=ID then writes. The transaction stays open
 * until agent_pg_snapshot_close: an exported snapshot can only be imported
 * while the exporting transaction is alive.
 *
 * Which tables are counted: ordinary tables (relkind 'r') outside the system
 * schemas (pg_catalog, information_schema, pg_toast and temporary schemas),
 * unlogged ones included, temporary ones excluded. On a standby an unlogged
 * table cannot be read and pg_dump dumps none of its rows, so it is listed
 * with 0 rows, which is what the dump holds and what a restore yields. A
 * partitioned table
 * (relkind 'p') has no storage of its own; its rows live in its leaf
 * partitions, which are 'r' tables and are counted one by one. Counting the
 * parent as well would count every row twice, and pg_dump likewise dumps
 * data per leaf. Counts use SELECT count(*) FROM ONLY so an inheritance
 * parent is not counted with its children's rows.
 *
 * Errors when connecting are told apart: the server is unreachable
 * (COFFER_EUNAVAIL), authentication failed (COFFER_EAUTH), the database does
 * not exist (COFFER_ENOENT); anything else the server refuses is COFFER_EPG.
 * Messages never contain the conninfo (it may hold a password). The
 * classification reads libpq's and the server's English message texts; a
 * server with translated messages yields COFFER_EPG with its own text.
 *
 * Threads and blocking: every call blocks on the network, so the daemon runs
 * them on a worker thread, never on its loop. One snapshot object is used by
 * one thread at a time. A count waits for a table another session holds
 * ACCESS EXCLUSIVE, as pg_dump would; nothing here interrupts that wait (the
 * session's statement_timeout is set to 0 so large counts are not cut), so a
 * caller with a deadline must allow for it. The snapshot session also sets
 * idle_in_transaction_session_timeout to 0, so the server does not end the
 * exporting transaction while pg_dump runs.
 *
 * Memory: one entry per table, refused past AGENT_PG_MAX_TABLES; names are
 * at most NAMEDATALEN bytes. Nothing else grows with the database.
 */
#ifndef COFFER_AGENT_PG_PG_H
#define COFFER_AGENT_PG_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"

/* Tables counted in one database at most; a larger catalog is refused with
 * COFFER_ETOOBIG rather than growing memory without bound. */
#define AGENT_PG_MAX_TABLES 1000000

typedef struct agent_pg_table {
	char *schema; /* unquoted, as in pg_namespace */
	char *name;   /* unquoted, as in pg_class */
	int64_t rows;
} agent_pg_table;

/* Tables in (schema, name) byte order. */
typedef struct agent_pg_tables {
	agent_pg_table *v;
	size_t n;
} agent_pg_tables;

typedef struct agent_pg_meta {
	int server_version_num;     /* 150004 */
	char server_version[256];   /* version(), cut to fit */
	char system_identifier[24]; /* decimal; "" if pg_control_system() is not allowed */
	char database[64];          /* current_database() */
	int64_t database_size;      /* pg_database_size(), bytes */
	bool in_recovery;           /* a standby */
	char lsn[24];               /* "0/16B3748": current WAL LSN, or last replayed on a
				      standby; "" if neither is available */
} agent_pg_meta;

typedef struct agent_pg_snapshot agent_pg_snapshot;

/* Connects with conninfo (a libpq conninfo string or URI; connect_timeout_s
 * applies unless conninfo sets connect_timeout; 0 = libpq's default), opens
 * the transaction, exports its snapshot, reads metadata and row counts.
 * On success *out is a new snapshot for agent_pg_snapshot_close. */
int agent_pg_snapshot_open(
    const char *conninfo, int connect_timeout_s, agent_pg_snapshot **out, coffer_err *err);

/* The same without counting rows: the snapshot is exported and the
 * metadata read; agent_pg_snapshot_count does the counting, so a backup can
 * count on this connection while pg_dump reads on its own. */
int agent_pg_snapshot_export(
    const char *conninfo, int connect_timeout_s, agent_pg_snapshot **out, coffer_err *err);

/* Counts every table's rows in the snapshot (replacing any earlier
 * counts). Blocking; uses the snapshot's connection, so nothing else may use
 * it meanwhile. A table another session holds with an exclusive lock makes
 * it wait: agent_pg_snapshot_cancel ends the wait (COFFER_EPG). */
int agent_pg_snapshot_count(agent_pg_snapshot *snap, coffer_err *err);

/* Runs sql (one row, one column) in the snapshot's transaction, read only,
 * before counting starts: [backup] schema_query, so what it returns is what
 * the dump holds. The value (NULL as "") goes into out; COFFER_EPG with
 * PostgreSQL's message, COFFER_EINVAL for another shape, COFFER_ETOOBIG
 * for a value over size - 1 bytes. */
int agent_pg_snapshot_value(
    agent_pg_snapshot *snap, const char *sql, char *out, size_t size, coffer_err *err);

/* Asks the server to cancel whatever the snapshot's connection is running.
 * Safe from any thread while another thread is inside
 * agent_pg_snapshot_count. */
void agent_pg_snapshot_cancel(agent_pg_snapshot *snap);

/* The exported snapshot's id, for pg_dump --snapshot. */
const char *agent_pg_snapshot_id(const agent_pg_snapshot *snap);
const agent_pg_meta *agent_pg_snapshot_meta(const agent_pg_snapshot *snap);
const agent_pg_tables *agent_pg_snapshot_tables(const agent_pg_snapshot *snap);

/* Ends the transaction (rollback: it only read) and disconnects. After this
 * the snapshot id can no longer be imported. snap may be NULL. */
void agent_pg_snapshot_close(agent_pg_snapshot *snap);

/* Exact row counts of the same set of tables in the database conninfo names,
 * in one REPEATABLE READ transaction: for comparing a restored database with
 * a manifest. On success out holds the tables; free with agent_pg_tables_fini. */
int agent_pg_row_counts(
    const char *conninfo, int connect_timeout_s, agent_pg_tables *out, coffer_err *err);

/* Frees the names and the array; leaves t empty. */
void agent_pg_tables_fini(agent_pg_tables *t);

/* Whether database name exists on the server conninfo connects to (any
 * database there, usually "postgres"). */
int agent_pg_database_exists(
    const char *conninfo, int connect_timeout_s, const char *name, bool *exists, coffer_err *err);

/* CREATE DATABASE name TEMPLATE template0 on the server conninfo connects to.
 * COFFER_EEXIST if it exists already, COFFER_EPERM if the role may not. */
int agent_pg_database_create(
    const char *conninfo, int connect_timeout_s, const char *name, coffer_err *err);

/* Whether the database conninfo names holds any user relation (table,
 * partitioned table, view, materialized view, sequence, foreign table)
 * outside the system schemas: a restore into it would collide. */
int agent_pg_has_user_tables(
    const char *conninfo, int connect_timeout_s, bool *has, coffer_err *err);

#endif
