/*
 * Archiver status: what PostgreSQL says about its own WAL archiving, for the
 * heartbeat. A stuck archive_command does not fail loudly anywhere the
 * operator looks; it leaves segments piling up in pg_wal until the disk is
 * full. The agent reads pg_stat_archiver and the archive_status directory
 * with each heartbeat, and the coordinator pages on failures and backlog
 * (coordinator/wal/walwatch.c).
 *
 * Blocking (libpq); the sender thread calls it between requests.
 */
#ifndef COFFER_AGENT_REPORT_ARCHIVER_H
#define COFFER_AGENT_REPORT_ARCHIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "common/base/error.h"

typedef struct agent_archiver_status {
	bool archiving;        /* archive_mode is on (else the rest is zero) */
	uint64_t failed_count; /* pg_stat_archiver.failed_count */
	char last_failed_wal[64];
	int64_t last_failed_at_ms; /* 0: never */
	char last_archived_wal[64];
	int64_t last_archived_at_ms; /* 0: never */
	uint32_t ready_count;        /* .ready files in pg_wal/archive_status */
	bool ready_known;            /* false without the right to list archive_status */
	char current_wal[64];        /* the segment being written */
	uint32_t timeline;
	char system_identifier[24];
	uint32_t wal_segment_size; /* bytes */
} agent_archiver_status;

/*
 * Reads the status over a short-lived connection (conninfo of [postgres];
 * timeout_s to connect). The backlog needs pg_ls_archive_statusdir(), which
 * PostgreSQL grants to superusers and members of pg_monitor: without it
 * ready_known is false and the rest is still filled.
 */
int agent_archiver_read(
    const char *conninfo, int timeout_s, agent_archiver_status *st, coffer_err *err);

#endif
