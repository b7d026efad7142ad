/*
 * Repository handles, key checks, layout helpers and the posix driver. See
 * common/repo/repo.h for the promises.
 *
 * Design notes.
 * Capabilities are enforced by what the handle holds, not by a check that a
 * later change could forget: a handle opened without DELETE has a NULL
 * remove pointer, and overwriting (which destroys the old object as surely
 * as a delete) needs DELETE too.
 *
 * The posix driver works relative to a directory fd on the root, so a key
 * can never name anything outside it (keys have no "..", no leading '/').
 * A write goes to ".<name>.<random>.tmp" in the object's own directory (the
 * same file system, so the rename is atomic); names starting with '.' are
 * not valid keys, so list can skip them without ambiguity. Publishing uses
 * renameat2(RENAME_NOREPLACE), so two writers racing for one key cannot both
 * win; on file systems without it, link(2) + unlink(2) gives the same
 * guarantee. Delete removes directories left empty, so retention does not
 * leave a skeleton of empty backup directories; a writer that loses a race
 * with such an rmdir (ENOENT on its directory) starts its setup again.
 *
 * list walks one directory at a time in the order of full keys: children are
 * sorted with directories compared as "name/", which is exactly the bytewise
 * order of the keys beneath them ("a-b" < "a/x" because '-' < '/').
 */
#include "common/repo/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/repo/repo_s3.h"

#define REPO_IO_CHUNK      65536
#define REPO_MAX_DEPTH     64
#define REPO_SETUP_RETRIES 5

struct coffer_repo {
	const coffer_repo_driver *drv;
	void *state;
	unsigned caps;
	/* NULL unless opened with COFFER_REPO_DELETE. */
	int (*remove)(void *state, const char *key, coffer_err *err);
};

/* ---- keys ---- */

static int
key_fail(coffer_err *err, const char *key, const char *why)
{
	coffer_err_set(err, COFFER_EINVAL, "invalid repository key \"%.200s\": %s", key, why);
	coffer_err_hint(err,
	    "keys are '/'-separated segments of visible ASCII "
	    "(no spaces or '\\'), none empty or starting with '.'");
	return (COFFER_EINVAL);
}

/* Checks the first len bytes of key as complete segments. */
static int
segments_check(const char *key, size_t len, coffer_err *err)
{
	size_t seg_start = 0;
	size_t nseg = 0;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? key[i] : '/';
		if (c == '/') {
			size_t seg_len = i - seg_start;
			if (seg_len == 0) {
				return (key_fail(err, key,
				    i == 0 ? "it starts with '/'"
				           : (i == len ? "it ends with '/'"
				                       : "it has an empty segment")));
			}
			if (seg_len > COFFER_REPO_SEGMENT_MAX) {
				return (key_fail(err, key, "a segment is longer than 200 bytes"));
			}
			if (key[seg_start] == '.') {
				return (key_fail(err, key,
				    "a segment starts with '.' (\".\" and \"..\" "
				    "are not allowed)"));
			}
			if (++nseg > REPO_MAX_DEPTH) {
				return (key_fail(err, key, "it has more than 64 segments"));
			}
			seg_start = i + 1;
			continue;
		}
		if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e || c == '\\') {
			return (key_fail(err, key, "it has a character that is not visible ASCII"));
		}
	}
	return (0);
}

int
coffer_repo_key_check(const char *key, coffer_err *err)
{
	if (key == NULL || key[0] == '\0') {
		return (key_fail(err, key == NULL ? "(null)" : "", "it is empty"));
	}
	size_t len = strnlen(key, COFFER_REPO_KEY_MAX + 1);
	if (len > COFFER_REPO_KEY_MAX) {
		return (key_fail(err, key, "it is longer than 1024 bytes"));
	}
	return (segments_check(key, len, err));
}

/* A list prefix: complete segments as in a key, then any partial segment. */
static int
prefix_check(const char *prefix, coffer_err *err)
{
	size_t len = strnlen(prefix, COFFER_REPO_KEY_MAX + 1);
	if (len > COFFER_REPO_KEY_MAX) {
		return (key_fail(err, prefix, "it is longer than 1024 bytes"));
	}
	const char *slash = strrchr(prefix, '/');
	size_t dir_len = slash != NULL ? (size_t)(slash - prefix) : 0;
	if (slash != NULL) {
		if (dir_len == 0) {
			return (key_fail(err, prefix, "it starts with '/'"));
		}
		int rc = segments_check(prefix, dir_len, err);
		if (rc != 0) {
			return (rc);
		}
	}
	for (size_t i = slash != NULL ? dir_len + 1 : 0; i < len; i++) {
		unsigned char c = (unsigned char)prefix[i];
		if (c < 0x21 || c > 0x7e || c == '\\') {
			return (
			    key_fail(err, prefix, "it has a character that is not visible ASCII"));
		}
	}
	return (0);
}

/* ---- layout ---- */

static int
name_part_check(const char *what, const char *value, coffer_err *err)
{
	if (value == NULL || value[0] == '\0' || strchr(value, '/') != NULL) {
		coffer_err_set(err, COFFER_EINVAL, "%s \"%s\" cannot be part of a repository key",
		    what, value == NULL ? "(null)" : value);
		coffer_err_hint(err, "use a non-empty name without '/'");
		return (COFFER_EINVAL);
	}
	return (0);
}

static int layout_put(char *buf, size_t size, coffer_err *err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
layout_put(char *buf, size_t size, coffer_err *err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size) {
		if (size > 0) {
			buf[0] = '\0';
		}
		return (coffer_err_set(err, COFFER_EINVAL,
		    "repository key does not fit in %zu "
		    "bytes",
		    size));
	}
	return (0);
}

int
coffer_repo_backup_key(char *buf, size_t size, const char *service, const char *backup_id,
    const char *name, coffer_err *err)
{
	int rc;
	if ((rc = name_part_check("service", service, err)) != 0 ||
	    (rc = name_part_check("backup id", backup_id, err)) != 0) {
		return (rc);
	}
	if (name == NULL ||
	    (strcmp(name, "data") != 0 && strcmp(name, "manifest.json") != 0 &&
	        strcmp(name, "attestation.json") != 0)) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "a backup holds \"data\", "
		    "\"manifest.json\" and \"attestation.json\", not \"%s\"",
		    name == NULL ? "(null)" : name));
	}
	rc = layout_put(buf, size, err, "services/%s/backups/%s/%s", service, backup_id, name);
	return (rc != 0 ? rc : coffer_repo_key_check(buf, err));
}

int
coffer_repo_backups_prefix(char *buf, size_t size, const char *service, coffer_err *err)
{
	int rc = name_part_check("service", service, err);
	if (rc != 0) {
		return (rc);
	}
	rc = layout_put(buf, size, err, "services/%s/backups/", service);
	return (rc != 0 ? rc : prefix_check(buf, err));
}

int
coffer_repo_escrow_prefix(char *buf, size_t size, const char *service, coffer_err *err)
{
	int rc = name_part_check("service", service, err);
	if (rc != 0) {
		return (rc);
	}
	rc = layout_put(buf, size, err, "services/%s/keys/", service);
	return (rc != 0 ? rc : prefix_check(buf, err));
}

int
coffer_repo_escrow_key(
    char *buf, size_t size, const char *service, const char *key_id, coffer_err *err)
{
	int rc;
	if ((rc = name_part_check("service", service, err)) != 0 ||
	    (rc = name_part_check("key id", key_id, err)) != 0) {
		return (rc);
	}
	rc = layout_put(
	    buf, size, err, "services/%s/keys/%s" COFFER_REPO_ESCROW_SUFFIX, service, key_id);
	return (rc != 0 ? rc : coffer_repo_key_check(buf, err));
}

int
coffer_repo_wal_key(char *buf, size_t size, const char *service, uint64_t system_identifier,
    uint32_t timeline, const char *segment, coffer_err *err)
{
	int rc;
	if ((rc = name_part_check("service", service, err)) != 0 ||
	    (rc = name_part_check("wal segment", segment, err)) != 0) {
		return (rc);
	}
	if (timeline == 0) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "wal timeline 0 does not exist; "
		    "timelines start at 1"));
	}
	if (system_identifier == 0) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "system identifier 0 names no cluster; "
		    "PostgreSQL's are never 0"));
	}
	rc = layout_put(buf, size, err, "services/%s/wal/%" PRIu64 "/%08X/%s", service,
	    system_identifier, (unsigned)timeline, segment);
	return (rc != 0 ? rc : coffer_repo_key_check(buf, err));
}

/* ---- handle ---- */

static const struct {
	const char *type;
	const coffer_repo_driver *drv;
} repo_drivers[] = {
	{ "posix", &coffer_repo_posix_driver },
	{ "s3", &coffer_repo_s3_driver },
};

int
coffer_repo_open(const coffer_repo_config *cfg, unsigned caps, coffer_repo **out, coffer_err *err)
{
	*out = NULL;
	const unsigned all = COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE;
	if (caps == 0 || (caps & ~all) != 0) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "repository opened with capabilities "
		    "0x%x; expected a non-empty set of READ, WRITE, DELETE",
		    caps));
	}
	const char *type = cfg->type != NULL && cfg->type[0] != '\0' ? cfg->type : "posix";
	const coffer_repo_driver *drv = NULL;
	bool known = false;
	for (size_t i = 0; i < sizeof(repo_drivers) / sizeof(repo_drivers[0]); i++) {
		if (strcmp(repo_drivers[i].type, type) == 0) {
			drv = repo_drivers[i].drv;
			known = true;
		}
	}
	if (!known) {
		coffer_err_set(err, COFFER_EINVAL, "unknown repository type \"%s\"", type);
		coffer_err_hint(err, "set type = posix or type = s3");
		return (COFFER_EINVAL);
	}
	if (drv == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "%s repositories are not built yet", type);
		coffer_err_hint(err, "use type = posix for now");
		return (COFFER_EINVAL);
	}
	coffer_repo *repo = calloc(1, sizeof(*repo));
	if (repo == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory opening a repository"));
	}
	int rc = drv->open(cfg, caps, &repo->state, err);
	if (rc != 0) {
		free(repo);
		return (rc);
	}
	repo->drv = drv;
	repo->caps = caps;
	if ((caps & COFFER_REPO_DELETE) != 0) {
		repo->remove = drv->remove;
	}
	*out = repo;
	return (0);
}

void
coffer_repo_close(coffer_repo *repo)
{
	if (repo != NULL) {
		repo->drv->close(repo->state);
		free(repo);
	}
}

const char *
coffer_repo_type(const coffer_repo *repo)
{
	return (repo->drv->type);
}

unsigned
coffer_repo_features(const coffer_repo *repo)
{
	return (repo->drv->features);
}

static int
cap_fail(coffer_err *err, const char *op, const char *cap)
{
	coffer_err_set(err, COFFER_EPERM,
	    "cannot %s: this repository handle was opened without "
	    "the %s capability",
	    op, cap);
	if (strcmp(cap, "delete") == 0) {
		coffer_err_hint(err,
		    "only the coordinator's retention deletes or replaces objects; "
		    "agents write new objects only");
	} else if (strcmp(cap, "read") == 0) {
		coffer_err_hint(err,
		    "this handle is write-only (as for a DR repository); use one "
		    "opened for reading");
	} else {
		coffer_err_hint(err, "this handle is read-only; use one opened for writing");
	}
	return (COFFER_EPERM);
}

/* ---- write sink ---- */

enum sink_state {
	SINK_OPEN,
	SINK_COMMITTED,
	SINK_ABORTED
};

struct repo_sink {
	coffer_filter base;
	coffer_repo *repo;
	void *w;
	uint8_t *buf;
	size_t used;
	enum sink_state state;
	char key[COFFER_REPO_KEY_MAX + 1];
};

static int
sink_flush(struct repo_sink *s, coffer_err *err)
{
	if (s->used == 0) {
		return (0);
	}
	int rc = s->repo->drv->write(s->w, s->buf, s->used, err);
	s->used = 0;
	return (rc);
}

static int
sink_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct repo_sink *s = (struct repo_sink *)f;
	if (s->state != SINK_OPEN) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "write to repository object %s after "
		    "it was %s",
		    s->key, s->state == SINK_COMMITTED ? "committed" : "aborted"));
	}
	if (s->used == 0 && len >= REPO_IO_CHUNK) {
		return (s->repo->drv->write(s->w, buf, len, err));
	}
	while (len > 0) {
		size_t n = REPO_IO_CHUNK - s->used;
		n = n < len ? n : len;
		memcpy(s->buf + s->used, buf, n);
		s->used += n;
		buf += n;
		len -= n;
		if (s->used == REPO_IO_CHUNK) {
			int rc = sink_flush(s, err);
			if (rc != 0) {
				return (rc);
			}
		}
	}
	return (0);
}

static int
sink_finish(coffer_filter *f, coffer_err *err)
{
	struct repo_sink *s = (struct repo_sink *)f;
	if (s->state != SINK_OPEN) {
		return (0);
	}
	return (sink_flush(s, err));
}

static void
sink_abort(struct repo_sink *s)
{
	if (s->state == SINK_OPEN) {
		s->repo->drv->write_abort(s->w);
		s->state = SINK_ABORTED;
	}
}

static void
sink_destroy(coffer_filter *f)
{
	struct repo_sink *s = (struct repo_sink *)f;
	/* Freeing an uncommitted sink must never publish a partial object. */
	sink_abort(s);
	s->repo->drv->write_free(s->w);
	free(s->buf);
	free(s);
}

static const coffer_filter_ops sink_ops = {
	.name = "repository object",
	.write = sink_write,
	.finish = sink_finish,
	.destroy = sink_destroy,
};

int
coffer_repo_write_begin_flags(
    coffer_repo *repo, const char *key, unsigned flags, coffer_filter **sink, coffer_err *err)
{
	*sink = NULL;
	if ((repo->caps & COFFER_REPO_WRITE) == 0) {
		return (cap_fail(err, "write", "write"));
	}
	if ((flags & COFFER_REPO_OVERWRITE) != 0 && repo->remove == NULL) {
		return (cap_fail(err, "overwrite an object", "delete"));
	}
	int rc = coffer_repo_key_check(key, err);
	if (rc != 0) {
		return (rc);
	}
	struct repo_sink *s = calloc(1, sizeof(*s));
	if (s != NULL) {
		s->buf = malloc(REPO_IO_CHUNK);
	}
	if (s == NULL || s->buf == NULL) {
		if (s != NULL) {
			free(s);
		}
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory writing %s", key));
	}
	rc = repo->drv->write_open(repo->state, key, flags, &s->w, err);
	if (rc != 0) {
		free(s->buf);
		free(s);
		return (rc);
	}
	s->base.ops = &sink_ops;
	s->repo = repo;
	s->state = SINK_OPEN;
	snprintf(s->key, sizeof(s->key), "%s", key);
	*sink = &s->base;
	return (0);
}

int
coffer_repo_write_begin(coffer_repo *repo, const char *key, coffer_filter **sink, coffer_err *err)
{
	return (coffer_repo_write_begin_flags(repo, key, 0, sink, err));
}

int
coffer_repo_write_commit(coffer_filter *sink, coffer_err *err)
{
	if (sink == NULL || sink->ops != &sink_ops) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "coffer_repo_write_commit given a "
		    "filter that is not a repository sink"));
	}
	struct repo_sink *s = (struct repo_sink *)sink;
	if (s->state != SINK_OPEN) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "repository object %s was already %s",
		    s->key, s->state == SINK_COMMITTED ? "committed" : "aborted"));
	}
	if (sink->failed) {
		sink_abort(s);
		coffer_err_set(err, COFFER_EIO,
		    "repository object %s is not published: an earlier "
		    "write to it failed",
		    s->key);
		coffer_err_hint(err, "see the earlier error; the write must start again");
		return (COFFER_EIO);
	}
	int rc = sink_flush(s, err);
	if (rc == 0) {
		rc = s->repo->drv->write_commit(s->w, err);
	}
	if (rc != 0) {
		sink->failed = 1;
		sink_abort(s);
		return (rc);
	}
	s->state = SINK_COMMITTED;
	return (0);
}

void
coffer_repo_write_abort(coffer_filter *sink)
{
	if (sink != NULL && sink->ops == &sink_ops) {
		sink_abort((struct repo_sink *)sink);
	}
}

int
coffer_repo_read(coffer_repo *repo, const char *key, coffer_filter *chain, coffer_err *err)
{
	if ((repo->caps & COFFER_REPO_READ) == 0) {
		return (cap_fail(err, "read", "read"));
	}
	if (chain == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "coffer_repo_read of %s without a "
		    "filter chain",
		    key));
	}
	int rc = coffer_repo_key_check(key, err);
	return (rc != 0 ? rc : repo->drv->read(repo->state, key, chain, err));
}

int
coffer_repo_read_version(coffer_repo *repo, const char *key, const char *version_id,
    coffer_filter *chain, coffer_err *err)
{
	if (version_id == NULL || version_id[0] == '\0') {
		return (coffer_repo_read(repo, key, chain, err));
	}
	if ((repo->caps & COFFER_REPO_READ) == 0) {
		return (cap_fail(err, "read", "read"));
	}
	if (repo->drv->read_version == NULL) {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "a %s repository keeps no versions: cannot read version %.100s of %.300s",
		    repo->drv->type, version_id, key));
	}
	int rc = coffer_repo_key_check(key, err);
	return (rc != 0 ? rc : repo->drv->read_version(repo->state, key, version_id, chain, err));
}

int
coffer_repo_versioning_get(coffer_repo *repo, coffer_repo_versioning *out, coffer_err *err)
{
	*out = COFFER_REPO_VERSIONING_NONE;
	if (repo->drv->versioning == NULL) {
		return (0);
	}
	return (repo->drv->versioning(repo->state, out, err));
}

int
coffer_repo_versions(coffer_repo *repo, const char *key, coffer_repo_version *out, size_t max,
    size_t *n, coffer_err *err)
{
	*n = 0;
	if ((repo->caps & COFFER_REPO_READ) == 0) {
		return (cap_fail(err, "read", "list the versions of"));
	}
	if (repo->drv->versions == NULL) {
		return (0);
	}
	int rc = coffer_repo_key_check(key, err);
	return (rc != 0 ? rc : repo->drv->versions(repo->state, key, out, max, n, err));
}

int
coffer_repo_stat(coffer_repo *repo, const char *key, coffer_repo_info *info, coffer_err *err)
{
	/* Any handle may stat: a writer checks what it is about to publish. */
	memset(info, 0, sizeof(*info));
	int rc = coffer_repo_key_check(key, err);
	return (rc != 0 ? rc : repo->drv->stat(repo->state, key, info, err));
}

int
coffer_repo_list(
    coffer_repo *repo, const char *prefix, coffer_repo_list_cb cb, void *arg, coffer_err *err)
{
	if ((repo->caps & COFFER_REPO_READ) == 0) {
		return (cap_fail(err, "list", "read"));
	}
	if (prefix == NULL) {
		prefix = "";
	}
	int rc = prefix_check(prefix, err);
	return (rc != 0 ? rc : repo->drv->list(repo->state, prefix, cb, arg, err));
}

int
coffer_repo_delete(coffer_repo *repo, const char *key, coffer_err *err)
{
	if (repo->remove == NULL) {
		return (cap_fail(err, "delete", "delete"));
	}
	int rc = coffer_repo_key_check(key, err);
	return (rc != 0 ? rc : repo->remove(repo->state, key, err));
}

int
coffer_repo_purge_temporaries(coffer_repo *repo, const char *prefix, int64_t older_than_ms,
    coffer_repo_purged *out, coffer_err *err)
{
	coffer_repo_purged local = { 0 };
	coffer_repo_purged *p = out != NULL ? out : &local;
	memset(p, 0, sizeof(*p));
	if ((repo->caps & COFFER_REPO_WRITE) == 0) {
		return (cap_fail(err, "remove temporaries from", "write"));
	}
	size_t len = strlen(prefix);
	if (len == 0 || prefix[len - 1] != '/') {
		return (coffer_err_set(err, COFFER_EINVAL,
		    "temporaries are purged under a directory prefix ending in '/', not \"%s\"",
		    prefix));
	}
	int rc = prefix_check(prefix, err);
	if (rc != 0 || repo->drv->purge_temporaries == NULL) {
		return (rc);
	}
	return (repo->drv->purge_temporaries(repo->state, prefix, older_than_ms, p, err));
}

/* ---- posix driver ---- */

struct px_repo {
	char *root;
	int root_fd;
};

struct px_writer {
	struct px_repo *r;
	char key[COFFER_REPO_KEY_MAX + 1];
	const char *name; /* last segment, inside key */
	char tmp[COFFER_REPO_SEGMENT_MAX + 32];
	int dir_fd;
	int fd;
	unsigned flags;
	bool tmp_exists;
};

/* "<root>/<key>" for messages. */
static const char *
px_path(const struct px_repo *r, const char *key, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", r->root, key);
	return (buf);
}

static int
px_errno(const struct px_repo *r, coffer_err *err, int errnum, const char *op, const char *key)
{
	char path[PATH_MAX + COFFER_REPO_KEY_MAX];
	return (coffer_err_errno(err, errnum, op, px_path(r, key, path, sizeof(path))));
}

static int
px_open(const coffer_repo_config *cfg, unsigned caps, void **state, coffer_err *err)
{
	(void)caps;
	if (cfg->path == NULL || cfg->path[0] == '\0') {
		coffer_err_set(err, COFFER_EINVAL, "posix repository has no path");
		coffer_err_hint(err,
		    "set path = /srv/coffer (an existing directory) in the "
		    "[repository.*] section");
		return (COFFER_EINVAL);
	}
	struct px_repo *r = calloc(1, sizeof(*r));
	if (r == NULL || (r->root = strdup(cfg->path)) == NULL) {
		free(r);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory opening a repository"));
	}
	size_t n = strlen(r->root);
	while (n > 1 && r->root[n - 1] == '/') {
		r->root[--n] = '\0';
	}
	r->root_fd = open(r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->root_fd < 0) {
		int e = errno;
		int code = coffer_err_errno(err, e, "open repository", r->root);
		if (e == ENOENT) {
			coffer_err_hint(err,
			    "create the directory (mkdir -p %s) or fix the "
			    "repository path",
			    r->root);
		} else if (e == ENOTDIR) {
			coffer_err_hint(err, "the repository path must be a directory");
		}
		free(r->root);
		free(r);
		return (code);
	}
	*state = r;
	return (0);
}

static void
px_close(void *state)
{
	struct px_repo *r = state;
	close(r->root_fd);
	free(r->root);
	free(r);
}

static int
px_fsync_fd(const struct px_repo *r, int fd, const char *what, coffer_err *err)
{
	if (fsync(fd) != 0) {
		return (px_errno(r, err, errno, "fsync", what));
	}
	return (0);
}

/* Opens (creating as needed, durably) the directory holding key; the key's
 * last segment is left for the caller. *dir_fd is a new fd. */
static int
px_make_dirs(struct px_repo *r, const char *key, int *dir_fd, coffer_err *err)
{
	int cur = dup(r->root_fd);
	if (cur < 0) {
		return (px_errno(r, err, errno, "open", "."));
	}
	char part[COFFER_REPO_KEY_MAX + 1];
	const char *p = key;
	const char *slash;
	while ((slash = strchr(p, '/')) != NULL) {
		size_t dlen = (size_t)(slash - key);
		memcpy(part, key, dlen);
		part[dlen] = '\0';
		char seg[COFFER_REPO_SEGMENT_MAX + 1];
		memcpy(seg, p, (size_t)(slash - p));
		seg[slash - p] = '\0';
		if (mkdirat(cur, seg, 0750) == 0) {
			/* The new entry must survive a crash before anything in it does. */
			int rc = px_fsync_fd(r, cur, part, err);
			if (rc != 0) {
				close(cur);
				return (rc);
			}
		} else if (errno != EEXIST) {
			int e = errno;
			close(cur);
			return (px_errno(r, err, e, "create directory", part));
		}
		int next = openat(cur, seg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (next < 0) {
			int e = errno;
			close(cur);
			if (e == ENOTDIR) {
				coffer_err_set(err, COFFER_EEXIST,
				    "cannot write %s: %s is an object, "
				    "not a directory",
				    key, part);
				coffer_err_hint(err,
				    "an object's key cannot be the start of "
				    "another key; choose another key");
				return (COFFER_EEXIST);
			}
			return (px_errno(r, err, e, "open directory", part));
		}
		close(cur);
		cur = next;
		p = slash + 1;
	}
	*dir_fd = cur;
	return (0);
}

static int
px_exists_fail(coffer_err *err, const char *key)
{
	coffer_err_set(err, COFFER_EEXIST, "repository object %s already exists", key);
	coffer_err_hint(err,
	    "objects are never replaced; write under a new key (a new "
	    "backup id)");
	return (COFFER_EEXIST);
}

static int
px_write_open(void *state, const char *key, unsigned flags, void **out, coffer_err *err)
{
	struct px_repo *r = state;
	struct px_writer *w = calloc(1, sizeof(*w));
	if (w == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory writing %s", key));
	}
	w->r = r;
	w->fd = -1;
	w->dir_fd = -1;
	w->flags = flags;
	snprintf(w->key, sizeof(w->key), "%s", key);
	const char *slash = strrchr(w->key, '/');
	w->name = slash != NULL ? slash + 1 : w->key;
	int rc = 0;
	for (int attempt = 0; attempt < REPO_SETUP_RETRIES; attempt++) {
		rc = px_make_dirs(r, key, &w->dir_fd, err);
		if (rc != 0) {
			if (rc == COFFER_ENOENT) {
				continue; /* a delete removed a directory on the way */
			}
			goto fail;
		}
		struct stat st;
		if ((flags & COFFER_REPO_OVERWRITE) == 0 &&
		    fstatat(w->dir_fd, w->name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			rc = px_exists_fail(err, key);
			goto fail;
		}
		uint8_t rnd[8];
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			rc = coffer_err_set(err, COFFER_EINTERNAL,
			    "no random bytes for a temporary "
			    "name");
			goto fail;
		}
		snprintf(w->tmp, sizeof(w->tmp), ".%s.%02x%02x%02x%02x%02x%02x%02x%02x.tmp",
		    w->name, rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
		w->fd = openat(w->dir_fd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (w->fd >= 0) {
			w->tmp_exists = true;
			*out = w;
			return (0);
		}
		int e = errno;
		close(w->dir_fd);
		w->dir_fd = -1;
		rc = px_errno(r, err, e, "create a temporary for", key);
		if (e != ENOENT) {
			goto fail;
		}
	}
fail:
	if (w->dir_fd >= 0) {
		close(w->dir_fd);
	}
	free(w);
	return (rc);
}

static int
px_write(void *wp, const uint8_t *buf, size_t len, coffer_err *err)
{
	struct px_writer *w = wp;
	while (len > 0) {
		ssize_t n = write(w->fd, buf, len);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (px_errno(w->r, err, errno, "write", w->key));
		}
		buf += n;
		len -= (size_t)n;
	}
	return (0);
}

/* Publishes tmp as name without replacing anything that is there. */
static int
px_publish(struct px_writer *w, coffer_err *err)
{
	if ((w->flags & COFFER_REPO_OVERWRITE) != 0) {
		if (renameat(w->dir_fd, w->tmp, w->dir_fd, w->name) != 0) {
			return (px_errno(w->r, err, errno, "rename a temporary to", w->key));
		}
		return (0);
	}
	if (renameat2(w->dir_fd, w->tmp, w->dir_fd, w->name, RENAME_NOREPLACE) == 0) {
		return (0);
	}
	if (errno == EEXIST) {
		return (px_exists_fail(err, w->key));
	}
	if (errno != EINVAL && errno != ENOSYS) {
		return (px_errno(w->r, err, errno, "rename a temporary to", w->key));
	}
	/* No RENAME_NOREPLACE here: link(2) fails atomically if name exists. */
	if (linkat(w->dir_fd, w->tmp, w->dir_fd, w->name, 0) != 0) {
		if (errno == EEXIST) {
			return (px_exists_fail(err, w->key));
		}
		return (px_errno(w->r, err, errno, "link a temporary to", w->key));
	}
	(void)unlinkat(w->dir_fd, w->tmp, 0);
	return (0);
}

static int
px_write_commit(void *wp, coffer_err *err)
{
	struct px_writer *w = wp;
	/* Data before name: the rename must never expose unwritten blocks. */
	if (fsync(w->fd) != 0) {
		return (px_errno(w->r, err, errno, "fsync", w->key));
	}
	if (close(w->fd) != 0) {
		w->fd = -1;
		return (px_errno(w->r, err, errno, "close", w->key));
	}
	w->fd = -1;
	int rc = px_publish(w, err);
	if (rc != 0) {
		return (rc);
	}
	w->tmp_exists = false;
	if (fsync(w->dir_fd) != 0) {
		int code = px_errno(w->r, err, errno, "fsync the directory of", w->key);
		coffer_err_hint(err,
		    "the object is in place but may not survive a crash; "
		    "check the file system, then verify the backup");
		return (code);
	}
	return (0);
}

static void
px_write_abort(void *wp)
{
	struct px_writer *w = wp;
	if (w->fd >= 0) {
		close(w->fd);
		w->fd = -1;
	}
	if (w->tmp_exists) {
		(void)unlinkat(w->dir_fd, w->tmp, 0);
		w->tmp_exists = false;
	}
}

static void
px_write_free(void *wp)
{
	struct px_writer *w = wp;
	px_write_abort(w);
	if (w->dir_fd >= 0) {
		close(w->dir_fd);
	}
	free(w);
}

static int
px_open_object(struct px_repo *r, const char *key, int *fd_out, struct stat *st, coffer_err *err)
{
	int fd = openat(r->root_fd, key, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int e = errno;
		if (e == ENOENT || e == ENOTDIR || e == ELOOP) {
			coffer_err_set(err, COFFER_ENOENT,
			    "repository object %s does not exist in %s", key, r->root);
			coffer_err_hint(err, "list the repository to see what it holds");
			return (COFFER_ENOENT);
		}
		return (px_errno(r, err, e, "open", key));
	}
	if (fstat(fd, st) != 0) {
		int e = errno;
		close(fd);
		return (px_errno(r, err, e, "stat", key));
	}
	if (!S_ISREG(st->st_mode)) {
		close(fd);
		coffer_err_set(
		    err, COFFER_ENOENT, "repository key %s is a directory, not an object", key);
		coffer_err_hint(err, "list with this key as a prefix to see what is below");
		return (COFFER_ENOENT);
	}
	*fd_out = fd;
	return (0);
}

static int
px_read(void *state, const char *key, coffer_filter *chain, coffer_err *err)
{
	struct px_repo *r = state;
	int fd = -1;
	struct stat st = { 0 };
	int rc = px_open_object(r, key, &fd, &st, err);
	if (rc != 0) {
		return (rc);
	}
	uint8_t *buf = malloc(REPO_IO_CHUNK);
	if (buf == NULL) {
		close(fd);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory reading %s", key));
	}
	for (;;) {
		ssize_t n = read(fd, buf, REPO_IO_CHUNK);
		if (n < 0) {
			if (errno == EINTR) {
				continue;
			}
			rc = px_errno(r, err, errno, "read", key);
			break;
		}
		if (n == 0) {
			rc = coffer_filter_finish(chain, err);
			break;
		}
		rc = coffer_filter_write(chain, buf, (size_t)n, err);
		if (rc != 0) {
			break;
		}
	}
	free(buf);
	close(fd);
	return (rc);
}

static void
px_info(const struct stat *st, coffer_repo_info *info)
{
	info->size = (uint64_t)st->st_size;
	info->mtime_ms = (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static int
px_stat(void *state, const char *key, coffer_repo_info *info, coffer_err *err)
{
	struct px_repo *r = state;
	int fd = -1;
	struct stat st = { 0 };
	int rc = px_open_object(r, key, &fd, &st, err);
	if (rc != 0) {
		return (rc);
	}
	close(fd);
	px_info(&st, info);
	return (0);
}

struct px_entry {
	char *name; /* with a trailing '/' for a directory */
	bool is_dir;
	coffer_repo_info info;
};

static int
px_entry_cmp(const void *a, const void *b)
{
	return (strcmp(((const struct px_entry *)a)->name, ((const struct px_entry *)b)->name));
}

struct px_list {
	struct px_repo *r;
	const char *prefix;
	size_t prefix_len;
	coffer_repo_list_cb cb;
	void *arg;
	char key[COFFER_REPO_KEY_MAX + 2];
};

static void
entries_free(struct px_entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(e[i].name);
	}
	free(e);
}

/* Reads the visible children of dir_fd (objects and directories). */
static int
px_read_dir(struct px_list *l, int dir_fd, const char *where, struct px_entry **out, size_t *count,
    coffer_err *err)
{
	*out = NULL;
	*count = 0;
	/* A new open file, not dup(): a dup shares the directory offset with the
	 * handle's root fd, which another listing may have left at the end. */
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		int e = errno;
		if (fd >= 0) {
			close(fd);
		}
		return (px_errno(l->r, err, e, "list", where));
	}
	struct px_entry *e = NULL;
	size_t n = 0;
	size_t cap = 0;
	int rc = 0;
	struct dirent *de;
	for (;;) {
		errno = 0;
		de = readdir(d);
		if (de == NULL) {
			if (errno != 0) {
				rc = px_errno(l->r, err, errno, "list", where);
			}
			break;
		}
		/* Temporaries and anything hidden are not objects. */
		if (de->d_name[0] == '.') {
			continue;
		}
		struct stat st;
		if (fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			if (errno == ENOENT) {
				continue; /* deleted while we listed */
			}
			rc = px_errno(l->r, err, errno, "stat an entry of", where);
			break;
		}
		if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
			continue;
		}
		if (n == cap) {
			size_t ncap = cap == 0 ? 64 : cap * 2;
			struct px_entry *ne = realloc(e, ncap * sizeof(*e));
			if (ne == NULL) {
				rc = coffer_err_set(
				    err, COFFER_ENOMEM, "out of memory listing %s", where);
				break;
			}
			e = ne;
			cap = ncap;
		}
		size_t len = strlen(de->d_name);
		e[n].name = malloc(len + 2);
		if (e[n].name == NULL) {
			rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory listing %s", where);
			break;
		}
		memcpy(e[n].name, de->d_name, len);
		e[n].is_dir = S_ISDIR(st.st_mode);
		if (e[n].is_dir) {
			e[n].name[len++] = '/';
		}
		e[n].name[len] = '\0';
		px_info(&st, &e[n].info);
		n++;
	}
	closedir(d);
	if (rc != 0) {
		entries_free(e, n);
		return (rc);
	}
	if (n > 1) {
		qsort(e, n, sizeof(*e), px_entry_cmp);
	}
	*out = e;
	*count = n;
	return (0);
}

/* Walks dir_fd, whose key prefix (ending in '/', or empty) is in l->key.
 * Returns 0, > 0 if the callback asked to stop, or an error. */
static int
px_walk(struct px_list *l, int dir_fd, int depth, coffer_err *err)
{
	size_t base = strlen(l->key);
	struct px_entry *e;
	size_t n;
	int rc = px_read_dir(l, dir_fd, base > 0 ? l->key : ".", &e, &n, err);
	if (rc != 0) {
		return (rc);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t len = strlen(e[i].name);
		if (base + len > COFFER_REPO_KEY_MAX + (e[i].is_dir ? 1 : 0)) {
			continue; /* no valid key lives there */
		}
		memcpy(l->key + base, e[i].name, len + 1);
		size_t klen = base + len;
		size_t cmp = klen < l->prefix_len ? klen : l->prefix_len;
		if (memcmp(l->key, l->prefix, cmp) != 0) {
			continue;
		}
		if (!e[i].is_dir) {
			if (klen >= l->prefix_len) {
				rc = l->cb(l->key, &e[i].info, l->arg);
			}
			continue;
		}
		if (depth + 1 >= REPO_MAX_DEPTH) {
			continue;
		}
		l->key[klen - 1] = '\0';
		int sub =
		    openat(dir_fd, l->key + base, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
		l->key[klen - 1] = '/';
		if (sub < 0) {
			if (errno == ENOENT) {
				continue;
			}
			rc = px_errno(l->r, err, errno, "open directory", l->key);
			break;
		}
		rc = px_walk(l, sub, depth + 1, err);
		close(sub);
	}
	l->key[base] = '\0';
	entries_free(e, n);
	return (rc);
}

static int
px_list(void *state, const char *prefix, coffer_repo_list_cb cb, void *arg, coffer_err *err)
{
	struct px_repo *r = state;
	struct px_list l = {
		.r = r, .prefix = prefix, .prefix_len = strlen(prefix), .cb = cb, .arg = arg
	};
	/* Start at the deepest directory the prefix names in full. */
	const char *slash = strrchr(prefix, '/');
	size_t dir_len = slash != NULL ? (size_t)(slash - prefix) + 1 : 0;
	int fd;
	if (dir_len == 0) {
		fd = dup(r->root_fd);
	} else {
		memcpy(l.key, prefix, dir_len - 1);
		l.key[dir_len - 1] = '\0';
		fd = openat(r->root_fd, l.key, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		l.key[dir_len - 1] = '/';
		l.key[dir_len] = '\0';
	}
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			return (0);
		}
		return (px_errno(r, err, errno, "open directory", dir_len > 0 ? l.key : "."));
	}
	int depth = 0;
	for (size_t i = 0; i < dir_len; i++) {
		depth += prefix[i] == '/';
	}
	int rc = px_walk(&l, fd, depth, err);
	close(fd);
	return (rc > 0 ? 0 : rc);
}

static int
px_remove(void *state, const char *key, coffer_err *err)
{
	struct px_repo *r = state;
	char dir[COFFER_REPO_KEY_MAX + 1];
	struct stat st;
	if (fstatat(r->root_fd, key, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
		coffer_err_set(err, COFFER_ENOENT,
		    "cannot delete repository object %s: it does not "
		    "exist in %s",
		    key, r->root);
		coffer_err_hint(err, "list the repository to see what it holds");
		return (COFFER_ENOENT);
	}
	if (unlinkat(r->root_fd, key, 0) != 0) {
		return (px_errno(r, err, errno, "delete", key));
	}
	/* Make the removal durable, then prune directories it left empty. */
	snprintf(dir, sizeof(dir), "%s", key);
	char *slash = strrchr(dir, '/');
	while (slash != NULL) {
		*slash = '\0';
		int fd = openat(r->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			return (0);
		}
		int rc = px_fsync_fd(r, fd, dir, err);
		close(fd);
		if (rc != 0) {
			return (rc);
		}
		if (unlinkat(r->root_fd, dir, AT_REMOVEDIR) != 0) {
			return (0); /* not empty (or in use): keep it */
		}
		slash = strrchr(dir, '/');
	}
	return (px_fsync_fd(r, r->root_fd, ".", err));
}

/* A temporary of px_write_open: ".<name>.<16 hex>.tmp". */
static bool
px_is_temporary(const char *name)
{
	size_t len = strlen(name);
	return (name[0] == '.' && len > 22 && strcmp(name + len - 4, ".tmp") == 0 &&
	    name[len - 21] == '.');
}

static int
px_purge_dir(struct px_repo *r, int dir_fd, const char *where, int depth, int64_t older_than_ms,
    coffer_repo_purged *out, coffer_err *err)
{
	int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (d == NULL) {
		int e = errno;
		if (fd >= 0) {
			close(fd);
		}
		return (px_errno(r, err, e, "list", where));
	}
	int rc = 0;
	bool removed = false;
	struct dirent *de;
	while (rc == 0 && (de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
			continue;
		}
		struct stat st;
		if (fstatat(dir_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			continue; /* gone meanwhile */
		}
		if (S_ISDIR(st.st_mode) && de->d_name[0] != '.' && depth + 1 < REPO_MAX_DEPTH) {
			int sub = openat(
			    dir_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
			if (sub < 0) {
				continue;
			}
			rc = px_purge_dir(r, sub, de->d_name, depth + 1, older_than_ms, out, err);
			close(sub);
			continue;
		}
		coffer_repo_info info;
		px_info(&st, &info);
		if (!S_ISREG(st.st_mode) || !px_is_temporary(de->d_name) ||
		    info.mtime_ms >= older_than_ms) {
			continue;
		}
		if (unlinkat(dir_fd, de->d_name, 0) != 0) {
			if (errno != ENOENT) {
				rc = px_errno(r, err, errno, "remove a temporary in", where);
			}
			continue;
		}
		out->count++;
		out->bytes += info.size;
		removed = true;
	}
	closedir(d);
	if (rc == 0 && removed) {
		rc = px_fsync_fd(r, dir_fd, where, err);
	}
	return (rc);
}

static int
px_purge_temporaries(void *state, const char *prefix, int64_t older_than_ms,
    coffer_repo_purged *out, coffer_err *err)
{
	struct px_repo *r = state;
	char dir[COFFER_REPO_KEY_MAX + 1];
	snprintf(dir, sizeof(dir), "%.*s", (int)strlen(prefix) - 1, prefix);
	int fd = openat(r->root_fd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR) {
			return (0);
		}
		return (px_errno(r, err, errno, "open directory", dir));
	}
	int depth = 0;
	for (const char *c = prefix; *c != '\0'; c++) {
		depth += *c == '/';
	}
	int rc = px_purge_dir(r, fd, dir, depth, older_than_ms, out, err);
	close(fd);
	return (rc);
}

const coffer_repo_driver coffer_repo_posix_driver = {
	.type = "posix",
	.features = COFFER_REPO_FEATURE_PATH,
	.open = px_open,
	.close = px_close,
	.write_open = px_write_open,
	.write = px_write,
	.write_commit = px_write_commit,
	.write_abort = px_write_abort,
	.write_free = px_write_free,
	.read = px_read,
	.stat = px_stat,
	.list = px_list,
	.remove = px_remove,
	.purge_temporaries = px_purge_temporaries,
};
