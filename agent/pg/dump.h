/*
 * pg_dump's command line for a logical backup.
 *
 * The agent's contract with pg_dump: custom format (-Fc) so pg_restore can
 * restore selectively and in parallel, no compression (-Z0) because the
 * backup stream compresses better and in parallel, the snapshot the agent
 * exported (--snapshot) so the dump matches the manifest's row counts,
 * output on stdout, and the connection from [postgres] conninfo
 * (--dbname=<conninfo>, passed last). Operators add options through
 * [postgres] dump_options; those that would break the contract are refused
 * with COFFER_EINVAL before anything runs: -f/--file, -F/--format other than
 * c/custom, -Z/--compress other than 0, --snapshot, the connection options
 * (-d/--dbname, -h/--host, -p/--port, -U/--username), -W/--password (nobody
 * can type it), --help/--version (pg_dump would print them and "succeed"
 * with an empty dump), "--" and bare words (pg_dump would take one as the
 * database name), and every option that dumps only part of the database
 * (-a, -s, --section, -t, -T, -n, -N, --exclude-table-data,
 * --no-unlogged-table-data, --filter and the *-and-children forms): the
 * manifest's row counts cover every table and restore verifies them. Long options that pg_dump would accept abbreviated are
 * refused when the abbreviation could stand for a refused one.
 *
 * dump_options is split on spaces and tabs; there is no shell quoting, each
 * word reaches pg_dump as written. A long option's value goes after "=" or
 * in the next word for the options known to take one.
 *
 * Note: the conninfo is on pg_dump's command line, visible to local users
 * through ps; keep passwords in a passfile, not in the conninfo.
 */
#ifndef COFFER_AGENT_PG_DUMP_H
#define COFFER_AGENT_PG_DUMP_H

#include "common/base/error.h"

/* Builds the argv. pg_dump: the program (a path, or "pg_dump" for PATH);
 * extra_opts may be NULL or empty. On success *out is a NULL-terminated
 * array of strings owned by the caller; free it with agent_dump_argv_free. */
int agent_dump_argv(const char *pg_dump, const char *snapshot_id, const char *conninfo,
    const char *extra_opts, char ***out, coffer_err *err);

/* argv may be NULL. */
void agent_dump_argv_free(char **argv);

#endif
