/*
 * WAL archiving: what PostgreSQL's archive_command and restore_command run.
 *
 * wal-push stores one WAL file (a segment, a .partial, a .backup label or a
 * .history file) as services/<service>/wal/<sysid>/<timeline>/<name>: sha256 ->
 * zstd -> AES-256-GCM sealed stream, the same chain as backups, published
 * atomically, and bound to its service, cluster, timeline and name (seal
 * format 2), so an object moved or copied to another name never opens.
 * Pushing is idempotent the way PostgreSQL needs it: an archiver that
 * crashed after storing retries the same file, and that succeeds when the
 * stored object decrypts to the same bytes; different authentic bytes under
 * the same name are refused loudly (two clusters writing into one service,
 * or a corrupt pg_wal), and PostgreSQL keeps retrying, so pg_stat_archiver
 * and the server log show it until someone looks. A key taken by anything
 * else (an object planted by someone who can write the repository) must not
 * stop archiving: the file goes under <name>.alt-<keyed tag>, a name only
 * the key ring can compute, and the event reports the conflict
 * (docs/PITR.md, "Objects at the wrong name"). No sidecar digest: the stored
 * object's authenticated plaintext is the only truth to compare with, so a
 * crash between two objects can never make them disagree.
 *
 * Segments (and .partial files) carry the cluster's system identifier in
 * their first page header; a push refuses a segment of another cluster. The
 * expected identifier is read once from the server (pg_control_system()) and
 * cached in <state_dir>/system_identifier. Every WAL key carries it: a
 * cluster rebuilt for the same service (after the operator removed the cache
 * on purpose) starts a new line of WAL beside the old one, whose backups
 * still restore through their own.
 *
 * Memory: the filters' fixed buffers (one sealed chunk, one zstd window);
 * nothing grows with the segment size.
 */
#ifndef COFFER_AGENT_BACKUP_WAL_H
#define COFFER_AGENT_BACKUP_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "agent/context/context.h"
#include "common/base/error.h"

typedef enum agent_wal_kind {
	AGENT_WAL_SEGMENT = 1, /* 000000010000000000000001 */
	AGENT_WAL_PARTIAL,     /* 000000010000000000000001.partial */
	AGENT_WAL_BACKUP,      /* 000000010000000000000001.00000028.backup */
	AGENT_WAL_HISTORY,     /* 00000002.history */
} agent_wal_kind;

/* An alternate object's name: the file's name, this infix, 32 hex digits. */
#define AGENT_WAL_ALT_INFIX       ".alt-"
#define AGENT_WAL_OBJECT_NAME_MAX 96

/* Bytes of a segment's first page that hold its long header. */
#define AGENT_WAL_LONG_HEADER_LEN 40

/* Checks that name is a WAL file name PostgreSQL archives, and gives its kind
 * and timeline. COFFER_EINVAL otherwise (anything else could name a key
 * outside the WAL layout). */
int agent_wal_name_parse(
    const char *name, agent_wal_kind *kind, uint32_t *timeline, coffer_err *err);

/* The system identifier in a segment's first page (XLogLongPageHeaderData:
 * xlp_info at offset 2 must have XLP_LONG_HEADER, xlp_sysid at offset 24,
 * host byte order as PostgreSQL writes it). COFFER_ECORRUPT if buf is too
 * short or holds no long header. */
int agent_wal_header_sysid(const uint8_t *buf, size_t len, uint64_t *sysid, coffer_err *err);

/* The cluster's system identifier: from <state_dir>/system_identifier, or
 * asked from the server and cached there. */
int agent_wal_system_identifier(const agent_config *cfg, uint64_t *out, coffer_err *err);

/* Records sysid as the cluster's (a base backup does, so the first push
 * needs no database connection). Refuses to change a different cached one. */
int agent_wal_system_identifier_save(const agent_config *cfg, uint64_t sysid, coffer_err *err);

typedef struct agent_wal_push_result {
	char name[64];
	uint64_t system_identifier;
	uint32_t timeline;
	bool already; /* the same content was stored before */
	uint64_t plain_bytes;
	uint64_t stored_bytes;
	uint8_t stored_sha256[32]; /* of the stored object, as the repository holds it */
	uint64_t event_seq;
	/* Set when the file's own key was taken by an object that is not
	 * this cluster's authentic file: the name it was stored under
	 * instead, and why (both "" otherwise). */
	char object_name[AGENT_WAL_OBJECT_NAME_MAX];
	char conflict[640];
} agent_wal_push_result;

/* Archives the file at path. ctx needs AGENT_NEED_KEYRING |
 * AGENT_NEED_REPO_WRITE | AGENT_NEED_OUTBOX. COFFER_EEXIST when different
 * content is stored under the name, COFFER_EREFUSED for a segment of
 * another cluster. Records a wal.archived event. */
int agent_wal_push(agent_ctx *ctx, const char *path, agent_wal_push_result *res, coffer_err *err);

/* Fetches name of the cluster sysid into dest (written as dest.coffer-tmp,
 * fsync'd, renamed), after authenticating and decompressing it.
 * COFFER_ENOENT, without a message worth printing, when the repository has
 * no such file: PostgreSQL probes for files that do not exist. ctx needs
 * AGENT_NEED_KEYRING | AGENT_NEED_REPO. */
int agent_wal_fetch(
    agent_ctx *ctx, uint64_t sysid, const char *name, const char *dest, coffer_err *err);

/* Prefetch: recovery asks for segments one at a time, each a round trip to
 * the repository. After fetching segment name, agent_wal_prefetch fetches
 * the next count segments into <state_dir>/wal-prefetch/ (authenticated
 * like any fetch), where agent_wal_fetch finds them; the spool never holds
 * more than count segments, and one prefetcher runs at a time (flock).
 * seg_size is the fetched segment's size (PostgreSQL's wal_segment_size).
 * Stops quietly at the first segment not archived yet. */
#define AGENT_WAL_PREFETCH 4
int agent_wal_prefetch(agent_ctx *ctx, uint64_t sysid, const char *name, uint64_t seg_size,
    int count, coffer_err *err);

/* The segment after name for segments of seg_size bytes, into next (25
 * bytes). COFFER_EINVAL for a name that is not a segment or a bad size. */
int agent_wal_next_segment(const char *name, uint64_t seg_size, char next[25], coffer_err *err);

/* Whether name of the cluster sysid is archived in ctx's repository. */
int agent_wal_exists(
    agent_ctx *ctx, uint64_t sysid, const char *name, bool *exists, coffer_err *err);

#endif
