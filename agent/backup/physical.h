/*
 * Physical backups: a base backup of the whole cluster, read by the agent
 * itself from the data directory (it runs beside the database as a user
 * that can read PGDATA) between pg_backup_start and pg_backup_stop
 * (non-exclusive, PostgreSQL 15+, one connection held open throughout), and
 * streamed as ONE archive through the same chain as every backup: sha256 ->
 * zstd -> AES-256-GCM -> sha256 -> the repository. The archive format is in
 * docs/FORMAT.md ("Physical archive"); the manifest lists every file with
 * its SHA-256, in archive order.
 *
 * The backup counts as complete only when the WAL segment holding the stop
 * LSN is in the repository (archived by wal-push): without it the copy of
 * the data directory can never reach consistency. Until then there is no
 * manifest, so nothing looks restorable.
 *
 * What is not copied, as pg_basebackup: postmaster.pid/.opts, an old
 * backup_label/tablespace_map/backup_manifest, pg_internal.init, temporary
 * files (pgsql_tmp*), and the contents of pg_wal, pg_replslot, pg_dynshmem,
 * pg_notify, pg_serial, pg_snapshots, pg_stat_tmp and pg_subtrans (their
 * directories are kept), and every fork but the init fork of unlogged
 * relations (recovery rebuilds them from it). backup_label and tablespace_map come from
 * pg_backup_stop and go last. Tablespaces outside PGDATA are refused.
 *
 * One reader, no parallel workers: the chain's zstd already compresses on
 * [backup] compress_workers threads, which is where the CPU goes.
 *
 * Memory: one 128 KiB read buffer, the filters' fixed buffers, and the
 * manifest's file list (one entry per file, as the manifest needs anyway).
 */
#ifndef COFFER_AGENT_BACKUP_PHYSICAL_H
#define COFFER_AGENT_BACKUP_PHYSICAL_H

#include <stdint.h>

#include "agent/backup/backup.h"

/* Archive entry header: magic, type, mode, path length, size. */
#define AGENT_PHYS_MAGIC      "CFA1"
#define AGENT_PHYS_HEADER_LEN 19
#define AGENT_PHYS_PATH_MAX   1024
#define AGENT_PHYS_DIR        'd'
#define AGENT_PHYS_FILE       'f'
#define AGENT_PHYS_END        'z'
/* A tablespace: path pg_tblspc/<oid>, content the directory its symlink
 * pointed at (a file entry's checks: size and digest in the manifest). Its
 * files follow as pg_tblspc/<oid>/...; tablespaces come first in the archive,
 * so a restore settles where they go before writing anything large. */
#define AGENT_PHYS_TABLESPACE     't'
#define AGENT_PHYS_TABLESPACE_MAX 1024 /* bytes of a tablespace's location */

/* Encodes one entry header into out (AGENT_PHYS_HEADER_LEN bytes). */
void agent_physical_header_encode(
    uint8_t out[AGENT_PHYS_HEADER_LEN], char type, uint32_t mode, uint16_t path_len, uint64_t size);

/* Decodes and checks one header: COFFER_ECORRUPT for a bad magic, type,
 * path length or a non-zero size on a directory or end entry. */
int agent_physical_header_decode(const uint8_t in[AGENT_PHYS_HEADER_LEN], char *type,
    uint32_t *mode, uint16_t *path_len, uint64_t *size, coffer_err *err);

/* Whether rel (a path relative to PGDATA) is one pg_basebackup skips; for a
 * directory, *keep_dir says it is kept, empty. */
bool agent_physical_skip(const char *rel, bool is_dir, bool *keep_dir);

/* Takes a physical backup; same request, result, ctx needs and failure
 * rules as agent_backup_logical. */
int agent_physical_backup(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err);

#endif
