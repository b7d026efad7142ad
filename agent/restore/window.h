/*
 * The recoverable window, from the repository alone: which moments a
 * physical restore can reach, per cluster (system identifier) and
 * timeline, and which WAL a given restore would read.
 *
 * A window starts at the earliest physical backup's consistent end (its
 * stop LSN and finish time) whose WAL from its start segment on is
 * archived without a gap, and ends at the last segment of that unbroken
 * run: up to the end of that segment, archived at the object's time. The
 * newest commit inside it is not known without reading the WAL, so the
 * newest point is stated as "end of segment X (LSN), archived at T": every
 * commit in it happened at or before T. A gap ends a window; WAL after a
 * gap makes a new window only from a backup inside it.
 *
 * The segment size is derived from the backup history files (.backup) that
 * PostgreSQL archives after each base backup: the label's segment name and
 * offset against the manifest's start LSN fix it. Without one, 16 MiB is
 * assumed and the window says so.
 *
 * Blocking: one listing of services/<service>/wal/.
 */
#ifndef COFFER_AGENT_RESTORE_WINDOW_H
#define COFFER_AGENT_RESTORE_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/context/context.h"
#include "agent/restore/target.h"
#include "common/crypto/manifest.h"

typedef struct agent_wal_segment {
	uint64_t sysid;
	uint32_t timeline;
	uint64_t segno;
	char name[25];
	uint64_t stored_bytes;
	int64_t archived_ms; /* the object's time in the repository */
} agent_wal_segment;

typedef struct agent_wal_label {
	uint64_t sysid;
	char segment[25];
	uint32_t offset;
} agent_wal_label;

typedef struct agent_wal_index {
	agent_wal_segment *segs; /* sorted by sysid, timeline, segno; one per segment */
	size_t n, cap;
	agent_wal_label *labels;
	size_t nlabels, caplabels;
	uint64_t seg_size;
	bool seg_size_derived; /* false: 16 MiB assumed */
} agent_wal_index;

/* Lists the service's WAL and derives the segment size with the help of
 * the physical manifests ms[0..n) (any order; logical ones are ignored). */
int agent_wal_index_load(
    agent_ctx *ctx, coffer_manifest *const *ms, size_t n, agent_wal_index *idx, coffer_err *err);
void agent_wal_index_free(agent_wal_index *idx);

typedef struct agent_window {
	uint64_t sysid;
	uint32_t timeline;
	char oldest_backup[COFFER_MANIFEST_ID_SIZE];
	int64_t oldest_ms; /* the backup's finish time */
	char oldest_lsn[20];
	char newest_segment[25];
	char newest_lsn[20]; /* the end of newest_segment */
	int64_t newest_archived_ms;
	size_t backups;    /* physical backups that start a restore inside it */
	uint64_t segments; /* from the oldest backup's start segment */
} agent_window;

/* The windows of ms[0..n), by cluster, timeline and start; *out is
 * malloc'd (free it), *nout may be 0. */
int agent_windows(const agent_wal_index *idx, coffer_manifest *const *ms, size_t n,
    agent_window **out, size_t *nout, coffer_err *err);

/* The WAL a restore of physical backup m to target t reads: from the
 * segment of m's start LSN to the segment of the target (LSN), the first
 * one archived at or after it (time), the backup's own end (immediate),
 * or the end of the unbroken run (xid, name, none: PostgreSQL decides
 * where it stops). reaches is false when the target lies beyond the
 * archived run, or the run does not even reach the backup's end. */
typedef struct agent_wal_plan {
	char first[25], last[25];
	uint64_t count;
	uint64_t stored_bytes;
	bool reaches;
	char basis[160]; /* how the last segment was chosen */
} agent_wal_plan;

int agent_wal_plan_for(const agent_wal_index *idx, const coffer_manifest *m, const agent_target *t,
    agent_wal_plan *out, coffer_err *err);

#endif
