#include "agent/backup/physical.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "agent/backup/wal.h"
#include "agent/outbox/events.h"
#include "agent/pg/pgq.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/crypto/seal.h"
#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

#define CONNECT_TIMEOUT_S 15
#define READ_BUF          (128u * 1024)
#define MAX_DEPTH         32
#define ARCHIVE_POLL_MS   200

static void
put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8) {
		p[i] = (uint8_t)(v & 0xff);
	}
}

static uint64_t
get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++) {
		v = (v << 8) | p[i];
	}
	return (v);
}

void
agent_physical_header_encode(
    uint8_t out[AGENT_PHYS_HEADER_LEN], char type, uint32_t mode, uint16_t path_len, uint64_t size)
{
	memcpy(out, AGENT_PHYS_MAGIC, 4);
	out[4] = (uint8_t)type;
	put_be(out + 5, mode, 4);
	put_be(out + 9, path_len, 2);
	put_be(out + 11, size, 8);
}

int
agent_physical_header_decode(const uint8_t in[AGENT_PHYS_HEADER_LEN], char *type, uint32_t *mode,
    uint16_t *path_len, uint64_t *size, coffer_err *err)
{
	if (memcmp(in, AGENT_PHYS_MAGIC, 4) != 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT, "physical archive: bad entry magic"),
		    coffer_err_hint(err, "the backup's data is not a coffer physical archive"));
	}
	*type = (char)in[4];
	*mode = (uint32_t)get_be(in + 5, 4);
	*path_len = (uint16_t)get_be(in + 9, 2);
	*size = get_be(in + 11, 8);
	bool ok = false;
	switch (*type) {
	case AGENT_PHYS_FILE:
		ok = *path_len > 0 && *path_len <= AGENT_PHYS_PATH_MAX && (*mode & ~07777u) == 0;
		break;
	case AGENT_PHYS_TABLESPACE:
		ok = *path_len > 0 && *path_len <= AGENT_PHYS_PATH_MAX && *size > 0 &&
		    *size <= AGENT_PHYS_TABLESPACE_MAX && *mode == 0;
		break;
	case AGENT_PHYS_DIR:
		ok = *path_len > 0 && *path_len <= AGENT_PHYS_PATH_MAX && *size == 0 &&
		    (*mode & ~07777u) == 0;
		break;
	case AGENT_PHYS_END:
		ok = *path_len == 0 && *size == 0 && *mode == 0;
		break;
	default:
		break;
	}
	if (!ok) {
		return (
		    coffer_err_set(err, COFFER_ECORRUPT,
		        "physical archive: malformed entry header (type 0x%02x, path length %u)",
		        (unsigned)(uint8_t)*type, (unsigned)*path_len),
		    coffer_err_hint(err, "the backup is damaged; restore another one"));
	}
	return (0);
}

static const char *const skip_content_dirs[] = { "pg_wal", "pg_replslot", "pg_dynshmem",
	"pg_notify", "pg_serial", "pg_snapshots", "pg_stat_tmp", "pg_subtrans", NULL };
static const char *const skip_top_files[] = { "postmaster.pid", "postmaster.opts", "backup_label",
	"tablespace_map", "backup_manifest", "backup_label.old", "current_logfiles.tmp",
	"postgresql.auto.conf.tmp", NULL };

bool
agent_physical_skip(const char *rel, bool is_dir, bool *keep_dir)
{
	*keep_dir = false;
	const char *slash = strrchr(rel, '/');
	const char *base = slash != NULL ? slash + 1 : rel;
	bool top = slash == NULL;
	if (strncmp(base, "pgsql_tmp", 9) == 0) {
		return (true);
	}
	if (is_dir) {
		for (size_t i = 0; top && skip_content_dirs[i] != NULL; i++) {
			if (strcmp(rel, skip_content_dirs[i]) == 0) {
				*keep_dir = true;
				return (true);
			}
		}
		return (false);
	}
	if (strncmp(base, "pg_internal.init", 16) == 0) {
		return (true);
	}
	for (size_t i = 0; top && skip_top_files[i] != NULL; i++) {
		if (strcmp(rel, skip_top_files[i]) == 0) {
			return (true);
		}
	}
	return (false);
}

typedef struct phys {
	agent_ctx *ctx;
	agent_cancel *cancel;
	agent_stream st; /* the data object's chain (agent/backup/backup.h) */
	coffer_manifest *m;
	uint8_t *buf;
	char root[2048];
	/* ",oid,oid,": the tablespaces pg_tablespace lists, the only
	 * pg_tblspc entries followed */
	char *tablespaces;
} phys;

static int
put_entry(phys *p, char type, uint32_t mode, const char *rel, uint64_t size, coffer_err *err)
{
	size_t len = strlen(rel);
	if (len > AGENT_PHYS_PATH_MAX) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		            "path in the data directory is over %d "
		            "bytes: %.80s...",
		            AGENT_PHYS_PATH_MAX, rel),
		    coffer_err_hint(err, "rename it; PostgreSQL itself never makes such paths"));
	}
	uint8_t h[AGENT_PHYS_HEADER_LEN];
	agent_physical_header_encode(h, type, mode & 07777u, (uint16_t)len, size);
	int rc = coffer_filter_write(p->st.head, h, sizeof(h), err);
	if (rc == 0 && len > 0) {
		rc = coffer_filter_write(p->st.head, rel, len, err);
	}
	return (rc);
}

/* Adds an entry whose content is in memory: a file (backup_label,
 * tablespace_map) or a tablespace's location. */
static int
put_text(phys *p, char type, const char *rel, const char *text, coffer_err *err)
{
	size_t len = strlen(text);
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(err), err);
	if (sha == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	int rc = put_entry(p, type, type == AGENT_PHYS_FILE ? 0600 : 0, rel, len, err);
	if (rc == 0) {
		rc = coffer_filter_write(p->st.head, text, len, err);
	}
	if (rc == 0) {
		rc = coffer_filter_write(sha, text, len, err);
	}
	if (rc == 0) {
		rc = coffer_filter_finish(sha, err);
	}
	if (rc == 0) {
		uint8_t d[COFFER_SHA256_LEN];
		char hex[COFFER_SHA256_HEX_LEN + 1];
		coffer_sha256_filter_digest(sha, d);
		coffer_hex_encode(d, sizeof(d), hex);
		rc = coffer_manifest_add_file(p->m, rel, len, hex, err);
	}
	coffer_filter_free_chain(sha);
	return (rc);
}

/* A relation file may grow, shrink or vanish while it is read: WAL replay
 * from the start LSN repairs all of that, as with pg_basebackup. The size
 * is fixed at open; a file that shrank is padded with zeros (replay
 * truncates it again), growth past it is left to replay. */
static int
put_file(phys *p, const char *rel, const char *abs, coffer_err *err)
{
	int fd = open(abs, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT) {
			return (0); /* dropped meanwhile */
		}
		return (coffer_err_errno(err, errno, "opening", abs));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return (coffer_err_errno(err, e, "reading", abs));
	}
	uint64_t size = (uint64_t)st.st_size, done = 0;
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(err), err);
	int rc = sha == NULL ? (err != NULL ? err->code : COFFER_ENOMEM)
	                     : put_entry(p, AGENT_PHYS_FILE, st.st_mode, rel, size, err);
	bool eof = false;
	while (rc == 0 && done < size) {
		size_t want = size - done < READ_BUF ? (size_t)(size - done) : READ_BUF;
		ssize_t got = 0;
		if (!eof) {
			got = read(fd, p->buf, want);
			if (got < 0 && errno == EINTR) {
				continue;
			}
			if (got < 0) {
				rc = coffer_err_errno(err, errno, "reading", abs);
				break;
			}
		}
		if (got == 0) {
			eof = true;
			memset(p->buf, 0, want);
			got = (ssize_t)want;
		}
		rc = coffer_filter_write(p->st.head, p->buf, (size_t)got, err);
		if (rc == 0) {
			rc = coffer_filter_write(sha, p->buf, (size_t)got, err);
		}
		done += (uint64_t)got;
	}
	close(fd);
	if (rc == 0) {
		rc = coffer_filter_finish(sha, err);
	}
	if (rc == 0) {
		uint8_t d[COFFER_SHA256_LEN];
		char hex[COFFER_SHA256_HEX_LEN + 1];
		coffer_sha256_filter_digest(sha, d);
		coffer_hex_encode(d, sizeof(d), hex);
		rc = coffer_manifest_add_file(p->m, rel, size, hex, err);
	}
	coffer_filter_free_chain(sha);
	return (rc);
}

/* Unlogged relations: only their init fork is copied, as pg_basebackup
 * does; PostgreSQL rebuilds the main fork from it at the end of recovery,
 * which is all an unlogged table can be after a crash anyway. The set holds
 * the relfilenodes of one database directory that have an init fork: it
 * grows with the number of unlogged relations, never with data. */
typedef struct relset {
	char (*v)[11];
	size_t n, cap;
} relset;

/* Splits "<digits>[_<fork>][.<n>]" into the digits and whether the fork is
 * "init"; false for anything else. */
static bool
rel_file(const char *name, char digits[11], bool *init)
{
	size_t d = strspn(name, "0123456789");
	if (d == 0 || d > 10) {
		return (false);
	}
	memcpy(digits, name, d);
	digits[d] = '\0';
	const char *rest = name + d;
	*init = false;
	if (*rest == '_') {
		size_t f = strcspn(rest + 1, ".");
		if (f == 0) {
			return (false);
		}
		*init = f == 4 && strncmp(rest + 1, "init", 4) == 0;
		rest += 1 + f;
	}
	if (*rest == '.') {
		return (rest[1] != '\0' && strspn(rest + 1, "0123456789") == strlen(rest + 1));
	}
	return (*rest == '\0');
}

static int
collect_init_forks(const char *abs, relset *set, coffer_err *err)
{
	DIR *d = opendir(abs);
	if (d == NULL) {
		return (errno == ENOENT
		        ? 0
		        : coffer_err_errno(err, errno, "reading the directory", abs));
	}
	struct dirent *de;
	int rc = 0;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		char digits[11];
		bool init = false;
		if (!rel_file(de->d_name, digits, &init) || !init ||
		    strchr(de->d_name, '.') != NULL) {
			continue;
		}
		if (set->n == set->cap) {
			size_t cap = set->cap ? set->cap * 2 : 16;
			void *v = realloc(set->v, cap * sizeof(*set->v));
			if (v == NULL) {
				rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
				break;
			}
			set->v = v;
			set->cap = cap;
		}
		memcpy(set->v[set->n++], digits, sizeof(digits));
	}
	closedir(d);
	return (rc);
}

static bool
unlogged_non_init(const relset *set, const char *name)
{
	char digits[11];
	bool init = false;
	if (set->n == 0 || !rel_file(name, digits, &init) || init) {
		return (false);
	}
	for (size_t i = 0; i < set->n; i++) {
		if (strcmp(set->v[i], digits) == 0) {
			return (true);
		}
	}
	return (false);
}

/* Whether rel is a database's directory, where relation files live:
 * base/<oid>, or pg_tblspc/<oid>/<version dir>/<oid> in a tablespace. */
static bool
database_dir(const char *rel)
{
	if (strncmp(rel, "base/", 5) == 0) {
		return (strchr(rel + 5, '/') == NULL);
	}
	if (strncmp(rel, "pg_tblspc/", 10) != 0) {
		return (false);
	}
	int slashes = 0;
	for (const char *c = rel + 10; *c != '\0'; c++) {
		slashes += *c == '/';
	}
	return (slashes == 2);
}

/* Copies the directory abs as rel_dir (its entry already written). */
static int
walk(phys *p, const char *rel_dir, const char *abs, int depth, coffer_err *err)
{
	if (depth > MAX_DEPTH) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "%s is nested more than %d levels deep",
		            abs, MAX_DEPTH),
		    coffer_err_hint(err,
		        "the data directory holds something PostgreSQL did not "
		        "put there; move it out"));
	}
	DIR *d = opendir(abs);
	if (d == NULL) {
		if (errno == ENOENT && depth > 0) {
			return (0);
		}
		return (coffer_err_errno(err, errno, "reading the directory", abs));
	}
	relset unlogged = { 0 };
	int rc = 0;
	if (database_dir(rel_dir)) {
		rc = collect_init_forks(abs, &unlogged, err);
	}
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
			continue;
		}
		if (unlogged_non_init(&unlogged, de->d_name)) {
			continue;
		}
		if (p->cancel != NULL && agent_cancel_requested(p->cancel)) {
			rc = coffer_err_set(err, COFFER_ECANCELED, "cancelled while copying files");
			break;
		}
		char rel[4096], path[8192];
		snprintf(rel, sizeof(rel), "%s%s%s", rel_dir, rel_dir[0] ? "/" : "", de->d_name);
		snprintf(path, sizeof(path), "%s/%s", abs, de->d_name);
		struct stat st;
		if (lstat(path, &st) != 0) {
			if (errno == ENOENT) {
				continue;
			}
			rc = coffer_err_errno(err, errno, "reading", path);
			break;
		}
		bool keep = false;
		if (S_ISLNK(st.st_mode) && strcmp(rel, "pg_wal") == 0) {
			/* pg_wal elsewhere (initdb -X): its contents are never copied. */
			rc = put_entry(p, AGENT_PHYS_DIR, 0700, rel, 0, err);
		} else if (strcmp(rel, "pg_tblspc") == 0) {
			continue; /* copied first, by walk_tablespaces */
		} else if (S_ISDIR(st.st_mode)) {
			if (agent_physical_skip(rel, true, &keep) && !keep) {
				continue;
			}
			rc = put_entry(p, AGENT_PHYS_DIR, st.st_mode, rel, 0, err);
			if (rc == 0 && !keep) {
				rc = walk(p, rel, path, depth + 1, err);
			}
		} else if (S_ISREG(st.st_mode)) {
			if (!agent_physical_skip(rel, false, &keep)) {
				rc = put_file(p, rel, path, err);
			}
		} else {
			coffer_log_warn("not a file or directory, not backed up", "path=%s", rel);
		}
	}
	closedir(d);
	free(unlogged.v);
	return (rc);
}

/* pg_tblspc and every tablespace in it: the tablespace's location (what its
 * symlink points at) as its own entry, then its files under
 * pg_tblspc/<oid>/. A directory there instead of a symlink is an in-place
 * tablespace (allow_in_place_tablespaces), copied as it is. */
static int
walk_tablespaces(phys *p, coffer_err *err)
{
	char abs[4096];
	snprintf(abs, sizeof(abs), "%s/pg_tblspc", p->root);
	struct stat st;
	if (lstat(abs, &st) != 0) {
		return (errno == ENOENT ? 0 : coffer_err_errno(err, errno, "reading", abs));
	}
	int rc = put_entry(p, AGENT_PHYS_DIR, st.st_mode, "pg_tblspc", 0, err);
	DIR *d = rc == 0 ? opendir(abs) : NULL;
	if (rc == 0 && d == NULL) {
		return (coffer_err_errno(err, errno, "reading the directory", abs));
	}
	struct stat root_st;
	if (rc == 0 && stat(p->root, &root_st) != 0) {
		rc = coffer_err_errno(err, errno, "reading", p->root);
	}
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.') {
			continue;
		}
		char key[300];
		snprintf(key, sizeof(key), ",%s,", de->d_name);
		if (strspn(de->d_name, "0123456789") != strlen(de->d_name) ||
		    strstr(p->tablespaces, key) == NULL) {
			/* Not a tablespace of this cluster: whoever put it there may
			 * want a backup to read (and a restore to write) wherever it
			 * points. Reported, never followed. */
			coffer_log_warn(
			    "pg_tblspc entry that pg_tablespace does not list, not backed up",
			    "path=\"pg_tblspc/%s\"", de->d_name);
			continue;
		}
		char rel[4096], path[8192], target[AGENT_PHYS_TABLESPACE_MAX + 1];
		snprintf(rel, sizeof(rel), "pg_tblspc/%s", de->d_name);
		snprintf(path, sizeof(path), "%s/%s", abs, de->d_name);
		if (lstat(path, &st) != 0) {
			if (errno == ENOENT) {
				continue; /* dropped meanwhile: WAL replay agrees */
			}
			rc = coffer_err_errno(err, errno, "reading", path);
			break;
		}
		if (S_ISDIR(st.st_mode)) {
			rc = put_entry(p, AGENT_PHYS_DIR, st.st_mode, rel, 0, err);
			if (rc == 0) {
				rc = walk(p, rel, path, 1, err);
			}
			continue;
		}
		if (!S_ISLNK(st.st_mode)) {
			coffer_log_warn("not a tablespace link, not backed up", "path=%s", rel);
			continue;
		}
		ssize_t n = readlink(path, target, sizeof(target) - 1);
		if (n < 0 && errno == ENOENT) {
			continue;
		}
		if (n < 0) {
			rc = coffer_err_errno(err, errno, "reading the link", path);
			break;
		}
		if (n == 0 || (size_t)n >= sizeof(target) - 1 || target[0] != '/') {
			rc = coffer_err_set(err, COFFER_EREFUSED,
			    "tablespace %s points at '%.*s', not "
			    "an absolute path of at most %d bytes",
			    rel, (int)(n > 0 ? n : 0), target, AGENT_PHYS_TABLESPACE_MAX - 1);
			coffer_err_hint(err, "PostgreSQL made no such link; repair pg_tblspc");
			break;
		}
		target[n] = '\0';
		/* PostgreSQL makes a tablespace's directory its own; one that
		 * belongs to anyone else means the link was changed after
		 * CREATE TABLESPACE, to read what the server cannot. */
		struct stat tst;
		if (stat(target, &tst) != 0 || !S_ISDIR(tst.st_mode) ||
		    tst.st_uid != root_st.st_uid) {
			rc = coffer_err_set(err, COFFER_EREFUSED,
			    "tablespace %s points at %s, which is not a directory owned by the data "
			    "directory's owner (uid %u)",
			    rel, target, (unsigned)root_st.st_uid);
			coffer_err_hint(err,
			    "someone changed the pg_tblspc link; point it back at the tablespace's "
			    "directory (see pg_tablespace_location) and back up again");
			break;
		}
		rc = put_text(p, AGENT_PHYS_TABLESPACE, rel, target, err);
		if (rc == 0) {
			rc = walk(p, rel, target, 1, err);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	return (rc);
}

/* The stop segment reaches the repository through PostgreSQL's archiver and
 * wal-push, not through us: wait for it, and when it does not come, say what
 * the archiver reports rather than just "timed out". */
static int
wait_archived(phys *p, PGconn *conn, const char *segment, int64_t deadline, coffer_err *err)
{
	for (;;) {
		bool there = false;
		int rc = agent_wal_exists(p->ctx, p->m->system_identifier, segment, &there, err);
		if (rc != 0) {
			return (rc);
		}
		if (there) {
			return (0);
		}
		if (p->cancel != NULL && agent_cancel_requested(p->cancel)) {
			return (coffer_err_set(err, COFFER_ECANCELED,
			    "cancelled while waiting for WAL segment %s to be archived", segment));
		}
		if (coffer_clock_now(NULL) >= deadline) {
			break;
		}
		uv_sleep(ARCHIVE_POLL_MS);
	}
	PGresult *res = NULL;
	coffer_err ignored = { 0 };
	char why[256] = "the archiver reports nothing";
	if (agent_pgq_row(conn, "reading pg_stat_archiver",
	        "SELECT failed_count::text, coalesce(last_failed_wal, ''), "
	        "coalesce(last_archived_wal, '') FROM pg_stat_archiver",
	        0, NULL, &res, &ignored) == 0) {
		snprintf(why, sizeof(why),
		    "pg_stat_archiver: failed_count=%s last_failed_wal=%s "
		    "last_archived_wal=%s",
		    PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
		PQclear(res);
	}
	coffer_err_set(err, COFFER_ETIMEDOUT,
	    "WAL segment %s, needed to make the backup consistent, was not archived in time (%s)",
	    segment, why);
	return (coffer_err_hint(err,
	    "check archive_command = 'coffer-agent wal-push -c ... %%p' and "
	    "the server log; or widen [schedule] completion_window"));
}

static int backup_locked(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err);

int
agent_physical_backup(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	int lock_fd = -1;
	int rc = agent_backup_lock(ctx->cfg, &lock_fd, err);
	if (rc != 0) {
		return (rc);
	}
	rc = backup_locked(ctx, req, res, err);
	close(lock_fd);
	return (rc);
}

static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

static int
backup_locked(
    agent_ctx *ctx, const agent_backup_request *req, agent_backup_result *res, coffer_err *err)
{
	const agent_config *cfg = ctx->cfg;
	int64_t started = coffer_clock_now(NULL);
	int64_t started_mono = coffer_clock_monotonic_ms();
	int64_t deadline =
	    req->deadline_ms != 0 ? req->deadline_ms : started + cfg->completion_window_ms;
	char id[COFFER_MANIFEST_ID_SIZE];
	agent_journal jr;
	int rc = agent_backup_record_started(
	    ctx, req, COFFER_MANIFEST_PHYSICAL, started, id, res, &jr, err);
	if (rc != 0) {
		return (rc);
	}

	const char *stage = "connect";
	phys p = { .ctx = ctx, .cancel = req->cancel };
	PGconn *conn = NULL;
	PGresult *info = NULL, *start = NULL, *stop = NULL;
	char *json = NULL;
	size_t json_len = 0;
	uint32_t timeline = 0;
	char data_key[COFFER_REPO_KEY_MAX], manifest_key[COFFER_REPO_KEY_MAX];
	uint8_t manifest_sha[COFFER_SHA256_LEN] = { 0 };

	rc = coffer_repo_backup_key(data_key, sizeof(data_key), cfg->service, id, "data", err);
	if (rc == 0) {
		rc = coffer_repo_backup_key(
		    manifest_key, sizeof(manifest_key), cfg->service, id, "manifest.json", err);
	}
	if (rc == 0) {
		rc = coffer_manifest_new(&p.m, err);
	}
	if (rc == 0 && (p.buf = malloc(READ_BUF)) == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
	}
	if (rc == 0) {
		rc = agent_pgq_connect(
		    cfg->conninfo, NULL, NULL, NULL, CONNECT_TIMEOUT_S, &conn, err);
	}
	if (rc == 0) {
		PQsetNoticeProcessor(conn, quiet_notice, NULL);
		rc = agent_pgq_command(
		    conn, "preparing the session", "SET statement_timeout = 0", err);
	}
	if (rc == 0) {
		rc = agent_pgq_row(conn, "reading the server's settings",
		    "SELECT current_setting('data_directory'), "
		    "current_setting('server_version_num')::int, "
		    "(SELECT system_identifier FROM pg_control_system())::text, current_database(), "
		    "pg_database_size(current_database())::text, pg_is_in_recovery()::text, "
		    "current_setting('archive_mode'), current_setting('wal_level'), "
		    "(SELECT sum(pg_database_size(oid)) FROM pg_database "
		    "WHERE datallowconn)::text",
		    0, NULL, &info, err);
	}
	if (rc == 0) {
		snprintf(p.root, sizeof(p.root), "%s", PQgetvalue(info, 0, 0));
		p.m->pg_version = atoi(PQgetvalue(info, 0, 1));
		p.m->system_identifier = strtoull(PQgetvalue(info, 0, 2), NULL, 10);
		snprintf(p.m->database, sizeof(p.m->database), "%s", PQgetvalue(info, 0, 3));
		p.m->database_size = strtoull(PQgetvalue(info, 0, 4), NULL, 10);
		if (p.m->pg_version < 150000) {
			rc = coffer_err_set(err, COFFER_EREFUSED,
			    "physical backups need PostgreSQL 15 or newer; the server is %d",
			    p.m->pg_version),
			coffer_err_hint(err, "use logical backups for this server");
		} else if (strcmp(PQgetvalue(info, 0, 5), "true") == 0) {
			rc = coffer_err_set(err, COFFER_EREFUSED,
			    "the server is a standby; physical backups are taken from the primary"),
			coffer_err_hint(err, "point [postgres] conninfo at the primary");
		} else if (strcmp(PQgetvalue(info, 0, 6), "off") == 0) {
			rc = coffer_err_set(err, COFFER_EREFUSED,
			    "archive_mode is off, so the WAL this backup needs would never be archived"),
			coffer_err_hint(err,
			    "set archive_mode = on and archive_command = "
			    "'coffer-agent wal-push -c %s %%p', then restart "
			    "PostgreSQL",
			    coffer_config_path(cfg->ini));
		} else if (strcmp(PQgetvalue(info, 0, 7), "minimal") == 0) {
			rc = coffer_err_set(err, COFFER_EREFUSED, "wal_level is minimal"),
			coffer_err_hint(err, "set wal_level = replica and restart PostgreSQL");
		}
	}
	if (rc == 0) {
		PGresult *ts = NULL;
		rc = agent_pgq_row(conn, "listing the tablespaces",
		    "SELECT ',' || coalesce(string_agg(oid::text, ','), '') || ',' "
		    "FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')",
		    0, NULL, &ts, err);
		if (rc == 0 && (p.tablespaces = strdup(PQgetvalue(ts, 0, 0))) == NULL) {
			rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		}
		if (ts != NULL) {
			PQclear(ts);
		}
	}
	if (rc == 0) {
		rc = agent_wal_system_identifier_save(cfg, p.m->system_identifier, err);
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "start");
		char label[64];
		snprintf(label, sizeof(label), "coffer-%s", id);
		const char *params[1] = { label };
		rc = agent_pgq_row(conn, "pg_backup_start",
		    "SELECT l::text, pg_walfile_name(l) FROM pg_backup_start($1, true) AS l", 1,
		    params, &start, err);
	}
	if (rc == 0) {
		snprintf(p.m->lsn_start, sizeof(p.m->lsn_start), "%s", PQgetvalue(start, 0, 0));
		char tl[9];
		snprintf(tl, sizeof(tl), "%.8s", PQgetvalue(start, 0, 1));
		timeline = (uint32_t)strtoul(tl, NULL, 16);
		stage = agent_journal_stage(&jr, "copy");
		/* The databases' sizes: the total the progress line estimates
		 * against (WAL and configuration files are not in it). */
		rc = agent_stream_open(ctx, data_key, req->progress ? "backing up" : NULL,
		    strtoull(PQgetvalue(info, 0, 8), NULL, 10), &p.st, err);
	}
	if (rc == 0) {
		rc = walk_tablespaces(&p, err);
	}
	if (rc == 0) {
		rc = walk(&p, "", p.root, 0, err);
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "stop");
		rc = agent_pgq_row(conn, "pg_backup_stop",
		    "SELECT s.lsn::text, s.labelfile, coalesce(s.spcmapfile, ''), "
		    "pg_walfile_name(s.lsn) FROM pg_backup_stop(false) AS s",
		    0, NULL, &stop, err);
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "copy");
		snprintf(p.m->lsn_stop, sizeof(p.m->lsn_stop), "%s", PQgetvalue(stop, 0, 0));
		rc = put_text(&p, AGENT_PHYS_FILE, "backup_label", PQgetvalue(stop, 0, 1), err);
		if (rc == 0 && PQgetvalue(stop, 0, 2)[0] != '\0') {
			rc = put_text(
			    &p, AGENT_PHYS_FILE, "tablespace_map", PQgetvalue(stop, 0, 2), err);
		}
	}
	if (rc == 0) {
		rc = put_entry(&p, AGENT_PHYS_END, 0, "", 0, err);
	}
	if (rc == 0) {
		rc = coffer_filter_finish(p.st.head, err);
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "store");
		rc = coffer_repo_write_commit(p.st.sink, err);
	}
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "archive");
		rc = wait_archived(&p, conn, PQgetvalue(stop, 0, 3), deadline, err);
	}
	int64_t finished = coffer_clock_now(NULL);
	if (rc == 0) {
		stage = agent_journal_stage(&jr, "publish");
		coffer_manifest *m = p.m;
		snprintf(m->backup_id, sizeof(m->backup_id), "%s", id);
		snprintf(m->service, sizeof(m->service), "%s", cfg->service);
		snprintf(m->agent, sizeof(m->agent), "%s", cfg->name);
		m->kind = COFFER_MANIFEST_PHYSICAL;
		m->started_at = started;
		m->finished_at = finished;
		m->timeline = timeline;
		m->plaintext_bytes = coffer_count_filter_bytes(p.st.plain_count);
		m->stored_bytes = coffer_count_filter_bytes(p.st.stored_count);
		agent_stream_hex(p.st.plain_sha, m->plaintext_sha256);
		agent_stream_hex(p.st.stored_sha, m->stored_sha256);
		snprintf(m->key_id, sizeof(m->key_id), "%s", coffer_seal_filter_key_id(p.st.seal));
		m->chunk_size = (uint32_t)cfg->chunk_size;
		rc = coffer_manifest_to_json(m, ctx->sign_key, &json, &json_len, err);
		/* A manifest that restore cannot read back (a cluster with more
		 * files than its size limits allow) would make the backup look
		 * restorable when it is not: read it back before publishing. */
		coffer_manifest *back = NULL;
		if (rc == 0 &&
		    coffer_manifest_parse(json, json_len, ctx->sign_pub, &back, err) != 0) {
			rc = coffer_err_wrap(
			    err, "the manifest of %zu files would not be readable", m->nfiles);
		}
		coffer_manifest_free(back);
		if (rc == 0) {
			rc = agent_backup_publish(
			    ctx, manifest_key, json, json_len, manifest_sha, err);
		}
	}
	if (rc != 0) {
		res->event_seq = agent_backup_record_failure(
		    ctx, id, COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL, started, stage, err);
		agent_backup_record_end(&jr, res->event_seq);
		goto out;
	}
	res->plain_bytes = p.m->plaintext_bytes;
	res->stored_bytes = p.m->stored_bytes;
	res->duration_ms = coffer_clock_monotonic_ms() - started_mono;
	uint8_t plain_sha[COFFER_SHA256_LEN], stored_sha[COFFER_SHA256_LEN];
	coffer_sha256_filter_digest(p.st.plain_sha, plain_sha);
	coffer_sha256_filter_digest(p.st.stored_sha, stored_sha);
	char pgv[16], sysid[24];
	snprintf(pgv, sizeof(pgv), "%d", p.m->pg_version);
	snprintf(sysid, sizeof(sysid), "%" PRIu64, p.m->system_identifier);
	Coffer__V1__BackupCompleted bc = COFFER__V1__BACKUP_COMPLETED__INIT;
	bc.backup_id = id;
	bc.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL;
	bc.started_at_ms = started;
	bc.finished_at_ms = finished;
	bc.plain_bytes = res->plain_bytes;
	bc.stored_bytes = res->stored_bytes;
	bc.plain_sha256 = (ProtobufCBinaryData) { sizeof(plain_sha), plain_sha };
	bc.stored_sha256 = (ProtobufCBinaryData) { sizeof(stored_sha), stored_sha };
	bc.key_id = p.m->key_id;
	bc.repository = (char *)ctx->repo_name;
	bc.manifest_sha256 = (ProtobufCBinaryData) { sizeof(manifest_sha), manifest_sha };
	bc.pg_version = pgv;
	bc.system_identifier = sysid;
	bc.start_lsn = p.m->lsn_start;
	bc.stop_lsn = p.m->lsn_stop;
	bc.timeline = timeline;
	Coffer__V1__Event cev = COFFER__V1__EVENT__INIT;
	cev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
	cev.backup_completed = &bc;
	rc = agent_events_emit(ctx->outbox, cfg->service, finished, &cev, &res->event_seq, err);
	if (rc != 0) {
		coffer_err_wrap(err,
		    "backup %s is stored, but its completion event was not saved; the next "
		    "start of the agent reports it",
		    id);
		goto out;
	}
	agent_backup_record_end(&jr, res->event_seq);
	coffer_log_info("backup completed",
	    "service=%s backup=%s kind=physical files=%zu plain_bytes=%" PRIu64
	    " stored_bytes=%" PRIu64 " lsn_start=%s lsn_stop=%s duration_ms=%" PRId64,
	    cfg->service, id, p.m->nfiles, res->plain_bytes, res->stored_bytes, p.m->lsn_start,
	    p.m->lsn_stop, res->duration_ms);
out:
	free(json);
	agent_stream_close(&p.st);
	coffer_manifest_free(p.m);
	free(p.buf);
	free(p.tablespaces);
	if (info != NULL) {
		PQclear(info);
	}
	if (start != NULL) {
		PQclear(start);
	}
	if (stop != NULL) {
		PQclear(stop);
	}
	/* Ends a backup still in progress too: non-exclusive backups end with
	 * their session. */
	if (conn != NULL) {
		PQfinish(conn);
	}
	return (rc);
}
