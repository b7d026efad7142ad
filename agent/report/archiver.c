/*
 * Archiver status for heartbeats; see agent/report/archiver.h.
 *
 * Design note: two statements, not one, because pg_ls_archive_statusdir()
 * raises a permission error for a role outside pg_monitor, and the
 * archiver's own counters (readable by anyone) must not be lost with it.
 */
#include "agent/report/archiver.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "agent/pg/pgq.h"

static void
copy_field(PGresult *r, int col, char *out, size_t size)
{
	snprintf(out, size, "%s", PQgetisnull(r, 0, col) ? "" : PQgetvalue(r, 0, col));
}

static int64_t
ms_field(PGresult *r, int col)
{
	return (PQgetisnull(r, 0, col) ? 0 : strtoll(PQgetvalue(r, 0, col), NULL, 10));
}

int
agent_archiver_read(const char *conninfo, int timeout_s, agent_archiver_status *st, coffer_err *err)
{
	memset(st, 0, sizeof(*st));
	PGconn *conn = NULL;
	int rc = agent_pgq_connect(conninfo, NULL, NULL, NULL, timeout_s, &conn, err);
	if (rc != 0) {
		return (rc);
	}
	PGresult *r = NULL;
	rc = agent_pgq_row(conn, "reading pg_stat_archiver",
	    "SELECT current_setting('archive_mode') <> 'off', a.failed_count, a.last_failed_wal, "
	    "  (extract(epoch FROM a.last_failed_time) * 1000)::bigint, a.last_archived_wal, "
	    "  (extract(epoch FROM a.last_archived_time) * 1000)::bigint, "
	    "  CASE WHEN pg_is_in_recovery() THEN NULL "
	    "       ELSE pg_walfile_name(pg_current_wal_lsn()) END, "
	    "  (SELECT timeline_id FROM pg_control_checkpoint()), "
	    "  (SELECT system_identifier FROM pg_control_system()), "
	    "  (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size') "
	    "FROM pg_stat_archiver a",
	    0, NULL, &r, err);
	if (rc == 0) {
		st->archiving = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		if (st->archiving) {
			st->failed_count = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
			copy_field(r, 2, st->last_failed_wal, sizeof(st->last_failed_wal));
			st->last_failed_at_ms = ms_field(r, 3);
			copy_field(r, 4, st->last_archived_wal, sizeof(st->last_archived_wal));
			st->last_archived_at_ms = ms_field(r, 5);
			copy_field(r, 6, st->current_wal, sizeof(st->current_wal));
			st->timeline = (uint32_t)strtoul(PQgetvalue(r, 0, 7), NULL, 10);
			copy_field(r, 8, st->system_identifier, sizeof(st->system_identifier));
			st->wal_segment_size = (uint32_t)strtoul(PQgetvalue(r, 0, 9), NULL, 10);
		}
		PQclear(r);
	}
	if (rc == 0 && st->archiving) {
		coffer_err ignored = { 0 };
		if (agent_pgq_row(conn, "counting segments waiting to be archived",
		        "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
		        0, NULL, &r, &ignored) == 0) {
			st->ready_count = (uint32_t)strtoul(PQgetvalue(r, 0, 0), NULL, 10);
			st->ready_known = true;
			PQclear(r);
		}
	}
	PQfinish(conn);
	return (rc);
}
