/*
 * Repositories: where backups, WAL segments and audit exports are stored,
 * behind one interface with a driver per kind of store (pgBackRest's storage
 * idea). A driver is a table of functions plus feature flags; a handle binds
 * a driver to a configuration and to the capabilities its owner may use.
 *
 * Objects are named by keys, '/'-separated like paths:
 *   services/<service>/backups/<backup-id>/{manifest.json,data,attestation.json}
 *   services/<service>/wal/<system-identifier>/<timeline>/<segment>
 *   audit/<date>/...
 * A key is 1..1024 bytes of visible ASCII (0x21..0x7e) except '\', made of
 * non-empty segments of at most 200 bytes that do not start with '.' (so no
 * "." or ".." and no hidden names; drivers keep their temporaries there),
 * with no leading or trailing '/'.
 *
 * What it promises:
 * - Atomic publish: an object becomes visible under its key only when
 *   coffer_repo_write_commit succeeds, complete and durable (posix: written
 *   under a temporary name in the same directory, fsync'd, renamed, and the
 *   directory fsync'd; every directory created on the way is fsync'd into its
 *   parent). A crash or an abort leaves no object, and list never shows a
 *   temporary.
 * - No overwrite by accident: publishing over an existing key fails with
 *   COFFER_EEXIST, checked when the write begins and again atomically at
 *   commit. COFFER_REPO_OVERWRITE allows it, and needs COFFER_REPO_DELETE,
 *   because replacing an object destroys the old one.
 * - Capabilities are fixed at open. A handle opened without
 *   COFFER_REPO_DELETE does not hold the driver's delete function at all:
 *   coffer_repo_delete fails with COFFER_EPERM before any driver code runs.
 *   The agent's handles are opened that way.
 *
 * Memory: a handle holds its configuration; a write sink holds one 64 KiB
 * buffer; a read uses one 64 KiB buffer; list holds the names of one
 * directory level at a time. Every call blocks on I/O (run it off the event
 * loop). A handle may be used from several threads at once; a sink by one.
 */
#ifndef COFFER_COMMON_REPO_REPO_H
#define COFFER_COMMON_REPO_REPO_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/stream/filter.h"

#define COFFER_REPO_KEY_MAX     1024
#define COFFER_REPO_SEGMENT_MAX 200

/* Capabilities requested at open. */
#define COFFER_REPO_READ   0x1u
#define COFFER_REPO_WRITE  0x2u
#define COFFER_REPO_DELETE 0x4u

/* Flags for coffer_repo_write_begin_flags. */
#define COFFER_REPO_OVERWRITE 0x1u

/* Driver features. PATH: the store has real directories (posix); object
 * stores lack it, so generic code never assumes directories exist. */
#define COFFER_REPO_FEATURE_PATH 0x1u

/* Strings are borrowed for the duration of coffer_repo_open only. */
typedef struct coffer_repo_config {
	const char *type; /* "posix" (default when NULL) or "s3" */
	const char *path; /* posix: the repository's root directory (must exist) */
	/* s3 */
	const char *endpoint;
	const char *region;
	const char *bucket;
	const char *prefix;
	const char *access_key;
	const char *secret_key;
	const char *session_token;
	int path_style;
	int insecure_http; /* allow http:// to a host other than loopback */
} coffer_repo_config;

#define COFFER_REPO_VERSION_MAX 256

typedef struct coffer_repo_info {
	uint64_t size;
	int64_t mtime_ms; /* Unix ms */
	/* stat only: the current version's id in a versioned store (S3 with
	 * versioning or object lock); "" where the store keeps no versions. */
	char version_id[COFFER_REPO_VERSION_MAX];
} coffer_repo_info;

/* A bucket's versioning as the store reports it (repo_s3); NONE for a
 * store that keeps no versions at all (posix). */
typedef enum coffer_repo_versioning {
	COFFER_REPO_VERSIONING_NONE = 0,
	COFFER_REPO_VERSIONING_OFF,
	COFFER_REPO_VERSIONING_ENABLED,
	COFFER_REPO_VERSIONING_SUSPENDED,
} coffer_repo_versioning;

/* One stored version of a key, as coffer_repo_versions lists them. */
typedef struct coffer_repo_version {
	char version_id[COFFER_REPO_VERSION_MAX];
	int64_t mtime_ms;
	int delete_marker;
} coffer_repo_version;

/* Called once per object, in bytewise order of keys. key and info are valid
 * only during the call. Return 0 to go on, > 0 to stop (list returns 0),
 * < 0 (a COFFER_E* code) to stop and make list return it. */
typedef int (*coffer_repo_list_cb)(const char *key, const coffer_repo_info *info, void *arg);

/* What coffer_repo_purge_temporaries removed. */
typedef struct coffer_repo_purged {
	uint64_t count;
	uint64_t bytes;
} coffer_repo_purged;

/* ---- Driver interface (for driver authors; callers use the handle API) ----
 * state is the driver's per-handle state, w a writer. Keys reaching a driver
 * are already validated. A writer's write/commit/abort are called by the
 * handle's sink filter; abort also releases w (after commit, only free_writer
 * runs). */
typedef struct coffer_repo_driver {
	const char *type;
	unsigned features;
	int (*open)(const coffer_repo_config *cfg, unsigned caps, void **state, coffer_err *err);
	void (*close)(void *state);
	int (*write_open)(void *state, const char *key, unsigned flags, void **w, coffer_err *err);
	int (*write)(void *w, const uint8_t *buf, size_t len, coffer_err *err);
	int (*write_commit)(void *w, coffer_err *err);
	void (*write_abort)(void *w); /* discards the temporary; w stays valid */
	void (*write_free)(void *w);  /* releases w (after commit or abort) */
	int (*read)(void *state, const char *key, coffer_filter *chain, coffer_err *err);
	/* NULL: the store keeps no versions. */
	int (*read_version)(void *state, const char *key, const char *version_id,
	    coffer_filter *chain, coffer_err *err);
	int (*stat)(void *state, const char *key, coffer_repo_info *info, coffer_err *err);
	/* NULL: the store keeps no versions. */
	int (*versioning)(void *state, coffer_repo_versioning *out, coffer_err *err);
	int (*versions)(void *state, const char *key, coffer_repo_version *out, size_t max,
	    size_t *n, coffer_err *err);
	int (*list)(
	    void *state, const char *prefix, coffer_repo_list_cb cb, void *arg, coffer_err *err);
	int (*remove)(void *state, const char *key, coffer_err *err);
	/* NULL: the store keeps no temporaries it can see (S3: an interrupted
	 * multipart upload is the bucket's lifecycle rule's to abort). */
	int (*purge_temporaries)(void *state, const char *prefix, int64_t older_than_ms,
	    coffer_repo_purged *out, coffer_err *err);
} coffer_repo_driver;

extern const coffer_repo_driver coffer_repo_posix_driver;

typedef struct coffer_repo coffer_repo;

/* Opens a repository with the given capabilities (at least one of READ,
 * WRITE, DELETE). COFFER_EINVAL for a bad configuration, COFFER_ENOENT if a
 * posix root does not exist. */
int coffer_repo_open(
    const coffer_repo_config *cfg, unsigned caps, coffer_repo **out, coffer_err *err);

void coffer_repo_close(coffer_repo *repo);

/* The driver's type name ("posix") and its COFFER_REPO_FEATURE_* flags. */
const char *coffer_repo_type(const coffer_repo *repo);
unsigned coffer_repo_features(const coffer_repo *repo);

/* 0 if key is well-formed, else COFFER_EINVAL naming what is wrong. */
int coffer_repo_key_check(const char *key, coffer_err *err);

/* Starts writing a new object at key; *sink is a filter that takes its
 * bytes (link it last in a chain). Nothing is visible until
 * coffer_repo_write_commit. COFFER_EEXIST if key exists, COFFER_EPERM
 * without the WRITE capability. The sink is the caller's: free it with
 * coffer_filter_free (or with its chain); freeing it uncommitted aborts. */
int coffer_repo_write_begin(
    coffer_repo *repo, const char *key, coffer_filter **sink, coffer_err *err);
int coffer_repo_write_begin_flags(
    coffer_repo *repo, const char *key, unsigned flags, coffer_filter **sink, coffer_err *err);

/* Publishes the object atomically and durably. Call it after
 * coffer_filter_finish on the whole chain: commit flushes only the sink's
 * own buffer, and a filter that pushes into a committed sink gets an error.
 * On failure nothing is published and the temporary is gone. Does not free
 * the sink. */
int coffer_repo_write_commit(coffer_filter *sink, coffer_err *err);

/* Discards an uncommitted write (removes the temporary). Does not free the
 * sink. Harmless after commit or a second time. */
void coffer_repo_write_abort(coffer_filter *sink);

/* Pushes the whole object at key through chain (not NULL), then finishes
 * the chain. COFFER_ENOENT if there is no such object; an error from the
 * chain is returned as is. The chain stays the caller's. */
int coffer_repo_read(coffer_repo *repo, const char *key, coffer_filter *chain, coffer_err *err);

/* The same for one version of key (a version_id coffer_repo_stat gave);
 * NULL or "" reads the current one. COFFER_ENOENT if there is no such
 * version; COFFER_EINVAL, naming the store, where it keeps no versions. */
int coffer_repo_read_version(coffer_repo *repo, const char *key, const char *version_id,
    coffer_filter *chain, coffer_err *err);

int coffer_repo_stat(coffer_repo *repo, const char *key, coffer_repo_info *info, coffer_err *err);

/* Whether the store keeps versions of what it holds (S3: GET ?versioning;
 * posix: COFFER_REPO_VERSIONING_NONE without asking). */
int coffer_repo_versioning_get(coffer_repo *repo, coffer_repo_versioning *out, coffer_err *err);

/* The stored versions of exactly key, newest first (delete markers
 * included), at most max into out; *n gets how many there are. A store
 * that keeps no versions gives *n = 0. Needs the read capability. */
int coffer_repo_versions(coffer_repo *repo, const char *key, coffer_repo_version *out, size_t max,
    size_t *n, coffer_err *err);

/* Calls cb for every object whose key starts with prefix (any string; ""
 * lists everything), in bytewise order. A prefix that matches nothing is not
 * an error. Temporaries of unfinished writes are never shown. */
int coffer_repo_list(
    coffer_repo *repo, const char *prefix, coffer_repo_list_cb cb, void *arg, coffer_err *err);

/* Deletes the object at key. COFFER_EPERM on a handle without DELETE,
 * COFFER_ENOENT if it does not exist. */
int coffer_repo_delete(coffer_repo *repo, const char *key, coffer_err *err);

/* Removes the driver's own temporaries (the unpublished writes a killed
 * process left behind) under prefix, a key prefix ending in '/', whose
 * last change is before older_than_ms (Unix ms; INT64_MAX: all of them).
 * Never touches a published object. Needs WRITE, not DELETE: a temporary
 * is the writer's own unfinished write, never anyone's object, and a
 * writer that loses one only has to start again. out (may be NULL) counts
 * what went. A store without visible temporaries (S3) removes nothing. */
int coffer_repo_purge_temporaries(coffer_repo *repo, const char *prefix, int64_t older_than_ms,
    coffer_repo_purged *out, coffer_err *err);

/* Layout helpers: write the key into buf, 0 or COFFER_EINVAL (bad part, or
 * buf too small). name is "data", "manifest.json" or "attestation.json"
 * (the coordinator's, coordinator/dr/attest.h). */
int coffer_repo_backup_key(char *buf, size_t size, const char *service, const char *backup_id,
    const char *name, coffer_err *err);
/* services/<service>/backups/ */
int coffer_repo_backups_prefix(char *buf, size_t size, const char *service, coffer_err *err);
/* services/<service>/keys/<key id>.escrow.json: one key of the service's
 * ring sealed to the platform's escrow key (common/crypto/escrow.h); and
 * the prefix services/<service>/keys/ they share. */
int coffer_repo_escrow_key(
    char *buf, size_t size, const char *service, const char *key_id, coffer_err *err);
int coffer_repo_escrow_prefix(char *buf, size_t size, const char *service, coffer_err *err);
#define COFFER_REPO_ESCROW_SUFFIX ".escrow.json"
/* services/<service>/wal/<system identifier, decimal>/<timeline as 8
 * upper-case hex digits>/<segment>; segment is a WAL file name
 * (000000010000000000000001, 00000002.history, ...partial, ...backup). The
 * system identifier is part of the key because a rebuilt cluster (initdb,
 * pg_upgrade) starts again at the same segment names: its WAL is another
 * line of history, never the old one's continuation. */
int coffer_repo_wal_key(char *buf, size_t size, const char *service, uint64_t system_identifier,
    uint32_t timeline, const char *segment, coffer_err *err);

#endif
