#include "agent/backup/wal.h"

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

#include "agent/outbox/events.h"
#include "agent/pg/pgq.h"
#include "common/base/clock.h"
#include "common/base/durable.h"
#include "common/base/log.h"
#include "common/crypto/seal.h"
#include "common/stream/compress.h"
#include "common/stream/digest.h"
#include "common/stream/sink.h"

#define XLP_LONG_HEADER 0x0002
#define SYSID_FILE      "system_identifier"

static bool
all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'F'))) {
			return (false);
		}
	}
	return (true);
}

int
agent_wal_name_parse(const char *name, agent_wal_kind *kind, uint32_t *timeline, coffer_err *err)
{
	size_t n = strlen(name);
	agent_wal_kind k = 0;
	if (n == 24 && all_hex(name, 24)) {
		k = AGENT_WAL_SEGMENT;
	} else if (n == 32 && all_hex(name, 24) && strcmp(name + 24, ".partial") == 0) {
		k = AGENT_WAL_PARTIAL;
	} else if (n == 40 && all_hex(name, 24) && name[24] == '.' && all_hex(name + 25, 8) &&
	    strcmp(name + 33, ".backup") == 0) {
		k = AGENT_WAL_BACKUP;
	} else if (n == 16 && all_hex(name, 8) && strcmp(name + 8, ".history") == 0) {
		k = AGENT_WAL_HISTORY;
	}
	if (k == 0) {
		return (coffer_err_set(err, COFFER_EINVAL, "'%.80s' is not a WAL file name", name),
		    coffer_err_hint(err,
		        "pass %%p (archive_command) or %%f (restore_command) as "
		        "PostgreSQL gives it: 24 hex digits, .partial, .backup or "
		        "<timeline>.history"));
	}
	char tl[9];
	memcpy(tl, name, 8);
	tl[8] = '\0';
	uint32_t t = (uint32_t)strtoul(tl, NULL, 16);
	if (t == 0) {
		return (coffer_err_set(err, COFFER_EINVAL, "'%.80s' names timeline 0", name),
		    coffer_err_hint(err, "PostgreSQL timelines start at 1; this is not its file"));
	}
	*kind = k;
	*timeline = t;
	return (0);
}

int
agent_wal_header_sysid(const uint8_t *buf, size_t len, uint64_t *sysid, coffer_err *err)
{
	if (len < AGENT_WAL_LONG_HEADER_LEN) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "the WAL file is %zu bytes, too short for a segment header", len),
		    coffer_err_hint(
		        err, "it is not a WAL segment; check the archive_command's %%p"));
	}
	uint16_t info;
	memcpy(&info, buf + 2, sizeof(info));
	if ((info & XLP_LONG_HEADER) == 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "the WAL file's first page has no long header (xlp_info 0x%04x)", info),
		    coffer_err_hint(err, "it is not the start of a WAL segment; check pg_wal"));
	}
	memcpy(sysid, buf + 24, sizeof(*sysid));
	return (0);
}

static void
sysid_path(const agent_config *cfg, char *buf, size_t size)
{
	snprintf(buf, size, "%s/" SYSID_FILE, cfg->state_dir);
}

static int
sysid_read_cache(const agent_config *cfg, uint64_t *out, bool *found, coffer_err *err)
{
	char path[4096];
	sysid_path(cfg, path, sizeof(path));
	*found = false;
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		if (errno == ENOENT) {
			return (0);
		}
		return (coffer_err_errno(err, errno, "opening", path));
	}
	char line[64] = "";
	bool ok = fgets(line, sizeof(line), f) != NULL;
	fclose(f);
	char *end = NULL;
	errno = 0;
	unsigned long long v = ok ? strtoull(line, &end, 10) : 0;
	if (!ok || errno != 0 || end == line || (*end != '\n' && *end != '\0') || v == 0) {
		return (coffer_err_set(
		            err, COFFER_ECORRUPT, "%s does not hold a system identifier", path),
		    coffer_err_hint(err, "remove it; the next wal-push asks the server again"));
	}
	*out = v;
	*found = true;
	return (0);
}

int
agent_wal_system_identifier_save(const agent_config *cfg, uint64_t sysid, coffer_err *err)
{
	uint64_t cached = 0;
	bool found = false;
	int rc = sysid_read_cache(cfg, &cached, &found, err);
	if (rc != 0) {
		return (rc);
	}
	char path[4096];
	sysid_path(cfg, path, sizeof(path));
	if (found && cached == sysid) {
		return (0);
	}
	if (found) {
		return (coffer_err_set(err, COFFER_EREFUSED,
		            "the server's system identifier is %" PRIu64 ", but %s says %" PRIu64,
		            sysid, path, cached),
		    coffer_err_hint(err,
		        "this agent's config serves another cluster; if the "
		        "cluster was rebuilt on purpose, remove %s",
		        path));
	}
	if (mkdir(cfg->state_dir, 0700) != 0 && errno != EEXIST) {
		return (coffer_err_errno(err, errno, "creating state_dir", cfg->state_dir));
	}
	char text[32];
	int n = snprintf(text, sizeof(text), "%" PRIu64 "\n", sysid);
	/* Run as root (a backup started by hand), the cache must still be
	 * readable by the archive_command, which runs as the database's user:
	 * give it to whoever owns state_dir. */
	coffer_durable_opts opts = { .mode = 0600 };
	struct stat dst;
	if (geteuid() == 0 && stat(cfg->state_dir, &dst) == 0 && dst.st_uid != 0) {
		opts.chown = true;
		opts.uid = dst.st_uid;
		opts.gid = dst.st_gid;
	}
	return (coffer_durable_replace(path, text, (size_t)n, &opts, err));
}

int
agent_wal_system_identifier(const agent_config *cfg, uint64_t *out, coffer_err *err)
{
	bool found = false;
	int rc = sysid_read_cache(cfg, out, &found, err);
	if (rc != 0 || found) {
		return (rc);
	}
	PGconn *conn = NULL;
	rc = agent_pgq_connect(cfg->conninfo, NULL, NULL, NULL, 10, &conn, err);
	PGresult *res = NULL;
	if (rc == 0) {
		rc = agent_pgq_row(conn, "reading the system identifier",
		    "SELECT system_identifier FROM pg_control_system()", 0, NULL, &res, err);
	}
	if (rc == 0) {
		*out = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		rc = agent_wal_system_identifier_save(cfg, *out, err);
	}
	if (conn != NULL) {
		PQfinish(conn);
	}
	if (rc != 0) {
		coffer_err_wrap(err, "the cluster's system identifier is not known yet");
	}
	return (rc);
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return (slash != NULL ? slash + 1 : path);
}

/* SHA-256 of what is left in fd from offset 0. */
static int
file_digest(int fd, const char *path, uint8_t out[COFFER_SHA256_LEN], coffer_err *err)
{
	if (lseek(fd, 0, SEEK_SET) != 0) {
		return (coffer_err_errno(err, errno, "rewinding", path));
	}
	coffer_filter *sha = coffer_sha256_filter_new(coffer_discard_sink_new(err), err);
	if (sha == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	int rc = coffer_filter_pump_fd(fd, sha, 0, err);
	if (rc == 0) {
		coffer_sha256_filter_digest(sha, out);
	}
	coffer_filter_free_chain(sha);
	return (rc);
}

/* What a WAL object is bound to (docs/FORMAT.md, "WAL objects"): its
 * service, cluster, timeline and file name, so an object moved or copied to
 * another name, of this service or another, does not open. */
typedef struct wal_binding {
	uint8_t bytes[256];
	size_t len;
} wal_binding;

static int
binding_make(wal_binding *b, const char *service, uint64_t sysid, uint32_t timeline,
    const char *name, coffer_err *err)
{
	int n = snprintf((char *)b->bytes, sizeof(b->bytes),
	    "coffer-wal-v1\n%s\n%" PRIu64 "\n%08X\n%s", service, sysid, (unsigned)timeline, name);
	if (n < 0 || (size_t)n >= sizeof(b->bytes)) {
		return (coffer_err_set(err, COFFER_EINVAL, "WAL binding for %s is too long", name));
	}
	b->len = (size_t)n;
	return (0);
}

/* The alternate object name for name under key key_id: a keyed tag that
 * only holders of the service's key ring can compute, so nobody who can
 * merely write the repository can take it before wal-push does. */
static int
alternate_name(const agent_ctx *ctx, const char *key_id, const wal_binding *b, const char *name,
    char *out, size_t size, coffer_err *err)
{
	char tag[COFFER_SEAL_NAME_TAG_LEN + 1];
	int rc = coffer_seal_name_tag(ctx->ring, key_id, b->bytes, b->len, tag, err);
	if (rc == 0 &&
	    (size_t)snprintf(out, size, "%s" AGENT_WAL_ALT_INFIX "%s", name, tag) >= size) {
		rc = coffer_err_set(err, COFFER_EINVAL, "alternate name for %s is too long", name);
	}
	return (rc);
}

typedef struct stored_read {
	uint8_t plain_sha256[COFFER_SHA256_LEN];
	uint8_t stored_sha256[COFFER_SHA256_LEN];
	uint64_t stored_bytes;
	bool bound; /* format 2, opened with this name's binding */
} stored_read;

/* Reads key through the whole authenticating chain into next (NULL:
 * discard), with the plaintext's and the stored object's digests. */
static int
read_stored(agent_ctx *ctx, const char *key, const wal_binding *b, unsigned flags,
    coffer_filter *next, stored_read *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	coffer_filter *unseal = NULL;
	coffer_filter *sha =
	    coffer_sha256_filter_new(next != NULL ? next : coffer_discard_sink_new(err), err);
	coffer_filter *count = coffer_count_filter_new(
	    unseal = coffer_unseal_filter_new_bound(
	        coffer_zstd_decompress_new(sha, err), ctx->ring, b->bytes, b->len, flags, err),
	    err);
	coffer_filter *raw = coffer_sha256_filter_new(count, err);
	if (raw == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	int rc = coffer_repo_read(ctx->repo, key, raw, err);
	out->stored_bytes = coffer_count_filter_bytes(count);
	if (rc == 0) {
		coffer_sha256_filter_digest(sha, out->plain_sha256);
		coffer_sha256_filter_digest(raw, out->stored_sha256);
		out->bound = coffer_unseal_filter_bound(unseal);
	}
	coffer_filter_free_chain(raw);
	return (rc);
}

/* Whether a failed read_stored found an object that is there but is not
 * an authentic sealed stream for the binding (moved, copied, planted,
 * damaged), as opposed to no object or a failure to reach it. */
static bool
not_authentic(int rc, const stored_read *r)
{
	switch (rc) {
	case COFFER_ENOENT: /* the header's key id is not in the ring, or no object */
		return (r->stored_bytes > 0);
	case COFFER_EAUTH:
	case COFFER_ECORRUPT:
	case COFFER_EVERSION:
	case COFFER_ETRUNC:
		return (true);
	default:
		return (false);
	}
}

static int
refuse_different(agent_ctx *ctx, const char *key, const uint8_t mine[COFFER_SHA256_LEN],
    const uint8_t theirs[COFFER_SHA256_LEN], const char *name, coffer_err *err)
{
	char a[COFFER_SHA256_HEX_LEN + 1], b[COFFER_SHA256_HEX_LEN + 1];
	coffer_hex_encode(mine, COFFER_SHA256_LEN, a);
	coffer_hex_encode(theirs, COFFER_SHA256_LEN, b);
	coffer_log_error("WAL file archived before with different content",
	    "name=%s key=%s local_sha256=%s archived_sha256=%s", name, key, a, b);
	coffer_err_set(err, COFFER_EEXIST,
	    "%s is already archived with different content (local SHA-256 %.16s..., archived "
	    "%.16s...)",
	    name, a, b);
	return (coffer_err_hint(err,
	    "two clusters may be archiving into service %s, or pg_wal is "
	    "damaged; stop and investigate before anything is overwritten",
	    ctx->cfg->service));
}

static void
take_stored(agent_wal_push_result *res, const stored_read *r)
{
	res->already = true;
	res->stored_bytes = r->stored_bytes;
	memcpy(res->stored_sha256, r->stored_sha256, sizeof(res->stored_sha256));
}

static int store(agent_ctx *ctx, int fd, const char *path, const char *key, const wal_binding *b,
    agent_wal_push_result *res, coffer_err *err);

/*
 * The key is taken by an object that is not this cluster's authentic file
 * (reason says why). Archiving must go on, or whoever planted it fills
 * pg_wal: the file goes under its alternate name, bound to its own name as
 * always, and the event carries the conflict so the coordinator pages.
 */
static int
store_alternate(agent_ctx *ctx, int fd, const char *path, const char *key, const wal_binding *b,
    const uint8_t mine[COFFER_SHA256_LEN], const char *reason, agent_wal_push_result *res,
    coffer_err *err)
{
	char alt[AGENT_WAL_OBJECT_NAME_MAX], altkey[COFFER_REPO_KEY_MAX];
	int rc = alternate_name(
	    ctx, coffer_keyring_newest_id(ctx->ring), b, res->name, alt, sizeof(alt), err);
	if (rc == 0) {
		rc = coffer_repo_wal_key(altkey, sizeof(altkey), ctx->cfg->service,
		    res->system_identifier, res->timeline, alt, err);
	}
	if (rc != 0) {
		return (rc);
	}
	snprintf(res->conflict, sizeof(res->conflict),
	    "%.200s holds an object that is not this cluster's authentic %.63s (%.240s)", key,
	    res->name, reason);
	coffer_log_error("WAL key taken by a foreign object, archiving under the alternate name",
	    "service=%s name=%s key=%s alternate=%s reason=%s", ctx->cfg->service, res->name, key,
	    alt, reason);
	rc = store(ctx, fd, path, altkey, b, res, err);
	if (rc == COFFER_EEXIST) {
		/* A retry: the alternate was stored before. Only this key ring
		 * can have written it, so it must open, and to the same bytes. */
		coffer_err_clear(err);
		stored_read r;
		rc = read_stored(ctx, altkey, b, 0, NULL, &r, err);
		if (rc == 0 && memcmp(mine, r.plain_sha256, COFFER_SHA256_LEN) != 0) {
			rc = refuse_different(ctx, altkey, mine, r.plain_sha256, res->name, err);
		} else if (rc == 0) {
			take_stored(res, &r);
		} else {
			coffer_err_wrap(err, "reading the alternate %s back", altkey);
		}
	}
	if (rc == 0) {
		snprintf(res->object_name, sizeof(res->object_name), "%s", alt);
	}
	return (rc);
}

/* The key was taken before (a retry, a concurrent push, or someone else's
 * object). Same authentic content: done. Authentic other content: this
 * cluster's own conflict, refused loudly as ever. Anything else: the
 * alternate name. */
static int
settle_taken(agent_ctx *ctx, int fd, const char *path, const char *key, const wal_binding *b,
    agent_wal_push_result *res, coffer_err *err)
{
	uint8_t mine[COFFER_SHA256_LEN];
	int rc = file_digest(fd, path, mine, err);
	if (rc != 0) {
		return (rc);
	}
	stored_read r;
	rc = read_stored(ctx, key, b, COFFER_UNSEAL_ALLOW_UNBOUND, NULL, &r, err);
	bool same = rc == 0 && memcmp(mine, r.plain_sha256, sizeof(mine)) == 0;
	/* The same bytes without a binding: this file, archived by an agent
	 * from before the binding; identical content needs no name to trust. */
	if (same) {
		take_stored(res, &r);
		return (0);
	}
	if (rc == 0 && r.bound) {
		return (refuse_different(ctx, key, mine, r.plain_sha256, res->name, err));
	}
	if (rc != 0 && !not_authentic(rc, &r)) {
		return (coffer_err_wrap(err, "reading the archived %s back", key));
	}
	char reason[512];
	snprintf(reason, sizeof(reason), "%s",
	    rc == 0 ? "an object without a name binding, with other content" : err->msg);
	coffer_err_clear(err);
	return (store_alternate(ctx, fd, path, key, b, mine, reason, res, err));
}

static int
check_segment_owner(
    const agent_config *cfg, int fd, const char *path, uint64_t want, coffer_err *err)
{
	uint8_t head[AGENT_WAL_LONG_HEADER_LEN];
	ssize_t got = pread(fd, head, sizeof(head), 0);
	if (got < 0) {
		return (coffer_err_errno(err, errno, "reading", path));
	}
	uint64_t seg_sysid = 0;
	int rc = agent_wal_header_sysid(head, (size_t)got, &seg_sysid, err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "%s", path));
	}
	if (seg_sysid != want) {
		return (
		    coffer_err_set(err, COFFER_EREFUSED,
		        "%s belongs to the cluster with system identifier %" PRIu64 ", not this "
		        "service's %" PRIu64,
		        path, seg_sysid, want),
		    coffer_err_hint(err,
		        "archive_command of another cluster uses this agent's "
		        "config: give that cluster its own service; or, if it "
		        "replaced the old cluster on purpose (initdb, pg_upgrade), "
		        "remove %s/system_identifier",
		        cfg->state_dir));
	}
	return (0);
}

static int
store(agent_ctx *ctx, int fd, const char *path, const char *key, const wal_binding *b,
    agent_wal_push_result *res, coffer_err *err)
{
	const agent_config *cfg = ctx->cfg;
	coffer_filter *sink = NULL;
	int rc = coffer_repo_write_begin(ctx->repo, key, &sink, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *sha = coffer_sha256_filter_new(sink, err);
	coffer_filter *stored = coffer_count_filter_new(sha, err);
	/* One segment is small: compress on this thread, no pool to start. */
	coffer_filter *plain = coffer_count_filter_new(
	    coffer_zstd_compress_new(coffer_seal_filter_new_bound(stored, ctx->ring, NULL,
	                                 cfg->chunk_size, b->bytes, b->len, err),
	        cfg->compress_level, 0, err),
	    err);
	if (plain == NULL) {
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	if (lseek(fd, 0, SEEK_SET) != 0) {
		rc = coffer_err_errno(err, errno, "rewinding", path);
	}
	if (rc == 0) {
		rc = coffer_filter_pump_fd(fd, plain, 0, err);
	}
	if (rc == 0) {
		rc = coffer_repo_write_commit(sink, err);
	}
	if (rc == 0) {
		res->plain_bytes = coffer_count_filter_bytes(plain);
		res->stored_bytes = coffer_count_filter_bytes(stored);
		coffer_sha256_filter_digest(sha, res->stored_sha256);
	}
	coffer_filter_free_chain(plain);
	return (rc);
}

static int
record_event(agent_ctx *ctx, agent_wal_push_result *res, coffer_err *err)
{
	char sysid_text[24];
	snprintf(sysid_text, sizeof(sysid_text), "%" PRIu64, res->system_identifier);
	int64_t now = coffer_clock_now(NULL);
	char *segs[1] = { res->name };
	ProtobufCBinaryData shas[1] = { { sizeof(res->stored_sha256), res->stored_sha256 } };
	uint64_t sizes[1] = { res->stored_bytes };
	Coffer__V1__WalArchived wa = COFFER__V1__WAL_ARCHIVED__INIT;
	wa.system_identifier = sysid_text;
	wa.timeline = res->timeline;
	wa.n_segments = 1;
	wa.segments = segs;
	wa.stored_bytes = res->stored_bytes;
	wa.n_segment_sha256 = 1;
	wa.segment_sha256 = shas;
	wa.n_segment_stored_bytes = 1;
	wa.segment_stored_bytes = sizes;
	wa.last_archived_at_ms = now;
	char *objects[1] = { res->object_name };
	char *conflicts[1] = { res->conflict };
	if (res->object_name[0] != '\0' || res->conflict[0] != '\0') {
		wa.n_segment_object_names = 1;
		wa.segment_object_names = objects;
		wa.n_segment_conflicts = 1;
		wa.segment_conflicts = conflicts;
	}
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_WAL_ARCHIVED;
	ev.wal_archived = &wa;
	int rc = agent_events_emit(ctx->outbox, ctx->cfg->service, now, &ev, &res->event_seq, err);
	if (rc != 0) {
		/* Failing makes PostgreSQL retry; the retry finds the object stored
		 * and records the event then, so the coordinator never misses it. */
		coffer_err_wrap(
		    err, "%s is stored, but its wal.archived event was not saved", res->name);
	}
	return (rc);
}

int
agent_wal_push(agent_ctx *ctx, const char *path, agent_wal_push_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	const char *name = base_name(path);
	agent_wal_kind kind;
	int rc = agent_wal_name_parse(name, &kind, &res->timeline, err);
	if (rc != 0) {
		return (rc);
	}
	snprintf(res->name, sizeof(res->name), "%s", name);
	rc = agent_wal_system_identifier(ctx->cfg, &res->system_identifier, err);
	char key[COFFER_REPO_KEY_MAX];
	if (rc == 0) {
		rc = coffer_repo_wal_key(key, sizeof(key), ctx->cfg->service,
		    res->system_identifier, res->timeline, name, err);
	}
	wal_binding bind;
	if (rc == 0) {
		rc = binding_make(
		    &bind, ctx->cfg->service, res->system_identifier, res->timeline, name, err);
	}
	if (rc != 0) {
		return (rc);
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "opening the WAL file", path));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		rc = coffer_err_errno(err, errno, "reading", path);
	} else if (!S_ISREG(st.st_mode)) {
		rc = coffer_err_set(err, COFFER_EINVAL, "%s is not a regular file", path),
		coffer_err_hint(err, "archive_command must pass %%p");
	}
	if (rc == 0 && (kind == AGENT_WAL_SEGMENT || kind == AGENT_WAL_PARTIAL)) {
		rc = check_segment_owner(ctx->cfg, fd, path, res->system_identifier, err);
	}
	if (rc == 0) {
		rc = store(ctx, fd, path, key, &bind, res, err);
		/* Stored before (begin), by a concurrent push (commit), or taken. */
		if (rc == COFFER_EEXIST) {
			coffer_err_clear(err);
			rc = settle_taken(ctx, fd, path, key, &bind, res, err);
			if (rc == 0) {
				res->plain_bytes = (uint64_t)st.st_size;
			}
		}
	}
	close(fd);
	if (rc == 0) {
		rc = record_event(ctx, res, err);
	}
	if (rc == 0) {
		coffer_log_info(
		    res->already ? "WAL file was already archived" : "WAL file archived",
		    "service=%s name=%s timeline=%" PRIu32 " plain_bytes=%" PRIu64
		    " stored_bytes=%" PRIu64,
		    ctx->cfg->service, res->name, res->timeline, res->plain_bytes,
		    res->stored_bytes);
	}
	return (rc);
}

int
agent_wal_exists(agent_ctx *ctx, uint64_t sysid, const char *name, bool *exists, coffer_err *err)
{
	*exists = false;
	agent_wal_kind kind;
	uint32_t tl;
	int rc = agent_wal_name_parse(name, &kind, &tl, err);
	char key[COFFER_REPO_KEY_MAX];
	if (rc == 0) {
		rc = coffer_repo_wal_key(key, sizeof(key), ctx->cfg->service, sysid, tl, name, err);
	}
	if (rc != 0) {
		return (rc);
	}
	coffer_repo_info info;
	rc = coffer_repo_stat(ctx->repo, key, &info, err);
	if (rc == COFFER_ENOENT) {
		coffer_err_clear(err);
		return (0);
	}
	if (rc == 0) {
		*exists = true;
	}
	return (rc);
}

static void
spool_path(const agent_config *cfg, char *buf, size_t size)
{
	snprintf(buf, size, "%s/wal-prefetch", cfg->state_dir);
}

/* A spooled segment's file name: the cluster's identifier, then the WAL
 * file's, so a restore of another cluster of the service never takes it. */
static void
spool_name(uint64_t sysid, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%" PRIu64 "-%s", sysid, name);
}

/* Moves a prefetched segment to dest: a rename when both are on one file
 * system, else a copy (fsync'd, then renamed into place). */
static int
take_prefetched(agent_ctx *ctx, uint64_t sysid, const char *name, const char *dest, bool *taken,
    coffer_err *err)
{
	*taken = false;
	char src[4096], tmp[4096], file[128];
	spool_path(ctx->cfg, src, sizeof(src));
	spool_name(sysid, name, file, sizeof(file));
	size_t used = strlen(src);
	snprintf(src + used, sizeof(src) - used, "/%s", file);
	if (rename(src, dest) == 0) {
		*taken = true;
		return (0);
	}
	if (errno == ENOENT) {
		return (0);
	}
	if (errno != EXDEV) {
		return (coffer_err_errno(err, errno, "moving the prefetched segment", src));
	}
	int in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		return (errno == ENOENT ? 0 : coffer_err_errno(err, errno, "opening", src));
	}
	snprintf(tmp, sizeof(tmp), "%s.coffer-tmp", dest);
	/* As wal_fetch's own temporary: never through a link left in pg_wal. */
	(void)unlink(tmp);
	int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0) {
		int e = errno;
		close(in);
		return (coffer_err_errno(err, e, "creating", tmp));
	}
	coffer_filter *sink = coffer_fd_sink_new(out, err);
	int rc = sink == NULL ? (err != NULL ? err->code : COFFER_ENOMEM) : 0;
	if (rc == 0) {
		coffer_fd_sink_set_name(sink, tmp);
		coffer_fd_sink_set_fsync(sink, true);
		rc = coffer_filter_pump_fd(in, sink, 0, err);
	}
	coffer_filter_free(sink);
	close(in);
	if (close(out) != 0 && rc == 0) {
		rc = coffer_err_errno(err, errno, "closing", tmp);
	}
	if (rc == 0 && rename(tmp, dest) != 0) {
		rc = coffer_err_errno(err, errno, "renaming into place", dest);
	}
	if (rc != 0) {
		unlink(tmp);
		return (rc);
	}
	unlink(src);
	*taken = true;
	return (0);
}

static int fetch_direct(
    agent_ctx *ctx, uint64_t sysid, const char *name, const char *dest, coffer_err *err);

int
agent_wal_fetch(agent_ctx *ctx, uint64_t sysid, const char *name, const char *dest, coffer_err *err)
{
	agent_wal_kind kind;
	uint32_t tl;
	int rc = agent_wal_name_parse(name, &kind, &tl, err);
	if (rc != 0) {
		return (rc);
	}
	if (kind == AGENT_WAL_SEGMENT) {
		bool taken = false;
		rc = take_prefetched(ctx, sysid, name, dest, &taken, err);
		if (rc != 0 || taken) {
			return (rc);
		}
	}
	return (fetch_direct(ctx, sysid, name, dest, err));
}

int
agent_wal_next_segment(const char *name, uint64_t seg_size, char next[25], coffer_err *err)
{
	agent_wal_kind kind;
	uint32_t tl;
	int rc = agent_wal_name_parse(name, &kind, &tl, err);
	if (rc != 0) {
		return (rc);
	}
	/* PostgreSQL's sizes: a power of two from 1 MiB to 1 GiB. */
	if (kind != AGENT_WAL_SEGMENT || seg_size < (1u << 20) || seg_size > (1u << 30) ||
	    (seg_size & (seg_size - 1)) != 0) {
		return (coffer_err_set(err, COFFER_EINVAL,
		            "cannot tell the segment after %s (%llu bytes)", name,
		            (unsigned long long)seg_size),
		    coffer_err_hint(err, "only whole WAL segments are prefetched"));
	}
	char part[9];
	memcpy(part, name + 8, 8);
	part[8] = '\0';
	uint64_t log = strtoull(part, NULL, 16);
	memcpy(part, name + 16, 8);
	uint64_t seg = strtoull(part, NULL, 16) + 1;
	if (seg >= UINT64_C(0x100000000) / seg_size) {
		seg = 0;
		log++;
	}
	if (log > 0xffffffffu) {
		return (
		    coffer_err_set(err, COFFER_EINVAL, "%s is the last WAL segment there is", name),
		    coffer_err_hint(err, "nothing follows it"));
	}
	snprintf(next, 25, "%08X%08X%08X", tl, (unsigned)log, (unsigned)seg);
	return (0);
}

int
agent_wal_prefetch(
    agent_ctx *ctx, uint64_t sysid, const char *name, uint64_t seg_size, int count, coffer_err *err)
{
	char dir[4096], lock[4200];
	spool_path(ctx->cfg, dir, sizeof(dir));
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		return (coffer_err_errno(err, errno, "creating", dir));
	}
	snprintf(lock, sizeof(lock), "%s/.lock", dir);
	int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0) {
		return (coffer_err_errno(err, errno, "opening", lock));
	}
	if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
		close(lfd); /* another prefetcher is at work */
		return (0);
	}
	char window[AGENT_WAL_PREFETCH][25], spooled[AGENT_WAL_PREFETCH][128];
	int n = 0;
	const char *prev = name;
	int rc = 0;
	for (; n < count && n < AGENT_WAL_PREFETCH; n++) {
		rc = agent_wal_next_segment(prev, seg_size, window[n], err);
		if (rc != 0) {
			break;
		}
		spool_name(sysid, window[n], spooled[n], sizeof(spooled[n]));
		prev = window[n];
	}
	/* Whatever is not in the window is spent or stale (and temporaries are
	 * from a prefetcher that died, since we hold the lock): the spool stays
	 * within count segments. */
	DIR *d = rc == 0 ? opendir(dir) : NULL;
	struct dirent *de;
	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.') {
			continue;
		}
		bool keep = false;
		for (int i = 0; i < n; i++) {
			keep = keep || strcmp(de->d_name, spooled[i]) == 0;
		}
		if (!keep) {
			unlinkat(dirfd(d), de->d_name, 0);
		}
	}
	if (d != NULL) {
		closedir(d);
	}
	for (int i = 0; rc == 0 && i < n; i++) {
		char dest[4096 + 132];
		struct stat st;
		snprintf(dest, sizeof(dest), "%s/%s", dir, spooled[i]);
		if (stat(dest, &st) == 0) {
			continue;
		}
		rc = fetch_direct(ctx, sysid, window[i], dest, err);
		if (rc == COFFER_ENOENT) {
			coffer_err_clear(err);
			rc = 0;
			break; /* not archived yet: recovery will ask again */
		}
	}
	close(lfd);
	return (rc);
}

/* Reads key into a new tmp (O_EXCL, O_NOFOLLOW: a link or a hard link
 * left at its name in pg_wal is removed, since unlink never follows, and
 * never written through). tmp is removed again on failure. */
static int
fetch_object(agent_ctx *ctx, const char *key, const wal_binding *b, unsigned flags, const char *tmp,
    stored_read *r, coffer_err *err)
{
	(void)unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		memset(r, 0, sizeof(*r));
		return (coffer_err_errno(err, errno, "creating", tmp));
	}
	coffer_filter *out = coffer_fd_sink_new(fd, err);
	if (out != NULL) {
		coffer_fd_sink_set_name(out, tmp);
		coffer_fd_sink_set_fsync(out, true);
	}
	int rc = out != NULL ? read_stored(ctx, key, b, flags, out, r, err)
	                     : (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	if (out == NULL) {
		memset(r, 0, sizeof(*r));
	}
	if (close(fd) != 0 && rc == 0) {
		rc = coffer_err_errno(err, errno, "closing", tmp);
	}
	if (rc != 0) {
		unlink(tmp);
	}
	return (rc);
}

/*
 * An object sealed before WAL objects were bound to their names (format
 * 1) carries no name, so what it holds must name itself: a segment's (or
 * .partial's) first page its cluster and its address, a .backup label its
 * segment. A history file names nothing that pins its own timeline, and a
 * moved one would steer recovery onto a wrong timeline, so an unbound one
 * is refused (docs/PITR.md says how to use one anyway).
 */
static int
legacy_check(
    const char *tmp, const char *name, agent_wal_kind kind, uint64_t sysid, coffer_err *err)
{
	if (kind == AGENT_WAL_HISTORY) {
		coffer_err_set(err, COFFER_EAUTH,
		    "%s was archived without a name binding (by an agent older than the "
		    "binding), and a history file cannot prove its own name",
		    name);
		return (coffer_err_hint(err,
		    "if you trust it, unseal it by hand (coffer-agent unseal --keyring FILE) into "
		    "the restore's pg_wal; docs/PITR.md, \"Objects at the wrong name\""));
	}
	int fd = open(tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "opening", tmp));
	}
	char head[4096];
	ssize_t got = pread(fd, head, sizeof(head) - 1, 0);
	close(fd);
	if (got < 0) {
		return (coffer_err_errno(err, errno, "reading", tmp));
	}
	head[got] = '\0';
	bool ok = false;
	if (kind == AGENT_WAL_BACKUP) {
		char want[40];
		snprintf(want, sizeof(want), "(file %.24s)", name);
		ok = strstr(head, want) != NULL;
	} else {
		uint64_t seg_sysid = 0, pageaddr = 0;
		uint32_t seg_size = 0;
		if (got >= AGENT_WAL_LONG_HEADER_LEN &&
		    agent_wal_header_sysid((const uint8_t *)head, (size_t)got, &seg_sysid, NULL) ==
		        0) {
			memcpy(&pageaddr, head + 8, sizeof(pageaddr));
			memcpy(&seg_size, head + 32, sizeof(seg_size));
		}
		char part[9] = "";
		memcpy(part, name + 8, 8);
		uint64_t log = strtoull(part, NULL, 16);
		memcpy(part, name + 16, 8);
		uint64_t seg = strtoull(part, NULL, 16);
		ok = seg_sysid == sysid && seg_size >= (1u << 20) && seg_size <= (1u << 30) &&
		    (seg_size & (seg_size - 1)) == 0 && seg < (UINT64_C(1) << 32) / seg_size &&
		    pageaddr == (log << 32) + seg * seg_size;
	}
	if (!ok) {
		coffer_err_set(err, COFFER_EAUTH,
		    "%s holds a WAL file without a name binding whose content is not %s of "
		    "cluster %" PRIu64 ": it was moved or copied from another name",
		    name, name, sysid);
		return (coffer_err_hint(
		    err, "recovery cannot use it; docs/PITR.md, \"Objects at the wrong name\""));
	}
	coffer_log_warn("WAL file without a name binding accepted by its content", "name=%s", name);
	return (0);
}

static int
fetch_direct(agent_ctx *ctx, uint64_t sysid, const char *name, const char *dest, coffer_err *err)
{
	agent_wal_kind kind;
	uint32_t tl;
	int rc = agent_wal_name_parse(name, &kind, &tl, err);
	char key[COFFER_REPO_KEY_MAX];
	wal_binding bind;
	if (rc == 0) {
		rc = coffer_repo_wal_key(key, sizeof(key), ctx->cfg->service, sysid, tl, name, err);
	}
	if (rc == 0) {
		rc = binding_make(&bind, ctx->cfg->service, sysid, tl, name, err);
	}
	if (rc != 0) {
		return (rc);
	}
	char tmp[4096];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.coffer-tmp", dest) >= sizeof(tmp)) {
		return (coffer_err_set(err, COFFER_EINVAL, "destination path is too long"),
		    coffer_err_hint(err, "restore_command must pass %%p"));
	}
	/* Only a whole, authenticated file of this name reaches dest: the
	 * temporary is renamed after the chain finished without error and the
	 * binding (or, for an old object, the content) matched. */
	stored_read r;
	rc = fetch_object(ctx, key, &bind, COFFER_UNSEAL_ALLOW_UNBOUND, tmp, &r, err);
	if (rc == 0 && !r.bound) {
		rc = legacy_check(tmp, name, kind, sysid, err);
		if (rc != 0) {
			unlink(tmp);
			r.stored_bytes = 1; /* there, but not this file */
		}
	}
	bool missing = rc == COFFER_ENOENT && r.stored_bytes == 0;
	if (rc != 0 && (missing || not_authentic(rc, &r))) {
		/* wal-push stores the file under an alternate name when its key
		 * is taken; only this key ring can name or write one. */
		coffer_err primary = *err;
		int prc = rc;
		for (size_t i = 0; i < coffer_keyring_count(ctx->ring); i++) {
			char alt[AGENT_WAL_OBJECT_NAME_MAX], altkey[COFFER_REPO_KEY_MAX];
			coffer_err_clear(err);
			rc = alternate_name(ctx, coffer_keyring_id_at(ctx->ring, i), &bind, name,
			    alt, sizeof(alt), err);
			if (rc == 0) {
				rc = coffer_repo_wal_key(
				    altkey, sizeof(altkey), ctx->cfg->service, sysid, tl, alt, err);
			}
			if (rc == 0) {
				rc = fetch_object(ctx, altkey, &bind, 0, tmp, &r, err);
			}
			if (rc == 0) {
				coffer_log_warn("WAL file fetched from its alternate name",
				    "name=%s key=%s", name, altkey);
				break;
			}
			if (rc == COFFER_ENOENT && r.stored_bytes == 0) {
				continue;
			}
			if (!not_authentic(rc, &r)) {
				return (coffer_err_wrap(err, "fetching %s", name));
			}
		}
		if (rc != 0) {
			*err = primary;
			rc = prc;
			if (!missing) {
				/* Not "no such file": recovery must not take it for the end. */
				if (rc == COFFER_ENOENT) {
					rc = COFFER_EAUTH;
					err->code = rc;
				}
				coffer_err_wrap(err,
				    "refusing %s: it is not this cluster's authentic %s, and no "
				    "authentic copy is stored under an alternate name",
				    key, name);
			}
			return (rc);
		}
	}
	if (rc == 0 && rename(tmp, dest) != 0) {
		rc = coffer_err_errno(err, errno, "renaming into place", dest);
		unlink(tmp);
	}
	if (rc != 0 && rc != COFFER_ENOENT) {
		coffer_err_wrap(err, "fetching %s", name);
	}
	return (rc);
}
