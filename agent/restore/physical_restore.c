#include "agent/restore/physical_restore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cjson/cJSON.h>

#include "agent/backup/physical.h"
#include "agent/outbox/events.h"
#include "agent/pg/pgq.h"
#include "agent/restore/confined.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/stream/digest.h"
#include "common/stream/hop.h"
#include "common/stream/progress.h"
#include "common/stream/sink.h"

#define POLL_MS 200

/* ---- the unpacking filter ---- */

/*
 * Design note. Writing the files is what bounds a restore (a bare tar -x of
 * the same data is no faster), and one file can be most of a data directory
 * (a 1 GB relation segment), so files are written in chunks by
 * UNPACK_WRITERS writer threads at once. The unpacker parses the archive,
 * checks every entry against the manifest, creates the directories and
 * files, and hashes each file's bytes in order itself (a digest cannot be
 * split); it hands each chunk of up to CHUNK bytes to the next writer,
 * round robin, which pwrite()s it at its offset. Each writer is a hop (its
 * own thread and bounded ring) followed by a chunk writer. Frames have a
 * fixed 21-byte header: 'W' (file, offset, length, then the bytes) and 'R'
 * (the writer will get no more of this file). A file's descriptor is
 * closed by whoever lets go of it last: the unpacker when the file ends,
 * each writer that got a chunk on its 'R'.
 */
#define UNPACK_WRITERS 2
#define WRITER_SLOTS   8
#define CHUNK          (256 * 1024)
#define FRAME_LEN      21

enum {
	U_HEADER,
	U_PATH,
	U_DATA,
	U_TABLESPACE,
	U_DONE
};

/* One file being written; shared by the unpacker and the writers. */
typedef struct out_file {
	int fd;
	int refs;                     /* live->mu */
	size_t idx;                   /* in the manifest */
	int close_errno;              /* live->mu: the first failed close */
	struct out_file *prev, *next; /* live->mu: files not yet closed */
} out_file;

/* Files not yet closed, so a restore stopped half-way closes them all. */
typedef struct live_files {
	pthread_mutex_t mu;
	out_file *head;
	int close_errno; /* mu: a close that failed, reported at the end */
	size_t failed_idx;
} live_files;

/* A tablespace placed by this restore: the files the archive names
 * pg_tblspc/<oid>/... are written beneath its directory's descriptor, never
 * through the link (which a confined open would refuse to follow). */
typedef struct placed_ts {
	char oid[16];
	int fd;
} placed_ts;

typedef struct unpack {
	coffer_filter base;
	const coffer_manifest *m;
	int root_fd;
	int state;
	uint8_t hdr[AGENT_PHYS_HEADER_LEN];
	size_t have;
	char path[AGENT_PHYS_PATH_MAX + 1];
	char type;
	uint32_t mode;
	uint16_t path_len;
	uint64_t size, left, offset;
	size_t next_file;
	coffer_filter *writers[UNPACK_WRITERS]; /* hop -> chunk writer */
	unsigned rr;                            /* the next chunk's writer */
	out_file *cur;
	bool sent[UNPACK_WRITERS]; /* cur has chunks at writer i */
	coffer_filter *sha;        /* cur's digest */
	live_files live;
	const char *const *ts_map; /* "OLD=NEW" or "OID=NEW" */
	size_t n_ts_map;
	char ts_location[AGENT_PHYS_TABLESPACE_MAX + 1];
	size_t tablespaces; /* placed so far */
	placed_ts *ts;      /* [tablespaces]: where their files go */
} unpack;

enum {
	W_HEADER,
	W_DATA
};

typedef struct chunk_writer {
	coffer_filter base;
	live_files *live;
	const coffer_manifest *m;
	int state;
	uint8_t frame[FRAME_LEN];
	size_t have;
	out_file *f;
	uint64_t off;
	uint32_t left;
	uint64_t unflushed; /* bytes written since writeback was last started */
} chunk_writer;

/* Writeback is started every this many bytes a writer writes, so the final
 * sync finds little left to do (PostgreSQL's own backend_flush_after idea). */
#define WRITEBACK_EVERY (8u << 20)

static int
write_all(int fd, const uint8_t *buf, size_t len, const char *path, coffer_err *err)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n < 0) {
			return (coffer_err_errno(err, errno, "writing", path));
		}
		buf += n;
		len -= (size_t)n;
	}
	return (0);
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8) {
		p[i] = (uint8_t)v;
	}
}

static uint64_t
get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++) {
		v = v << 8 | p[i];
	}
	return (v);
}

static int
send_frame(
    coffer_filter *w, char type, const out_file *f, uint64_t off, uint32_t len, coffer_err *err)
{
	uint8_t fr[FRAME_LEN];
	fr[0] = (uint8_t)type;
	put_u64(fr + 1, (uint64_t)(uintptr_t)f);
	put_u64(fr + 9, off);
	fr[17] = (uint8_t)(len >> 24);
	fr[18] = (uint8_t)(len >> 16);
	fr[19] = (uint8_t)(len >> 8);
	fr[20] = (uint8_t)len;
	return (coffer_filter_write(w, fr, sizeof(fr), err));
}

/* Drops one reference; the last closes the file (any thread). */
static void
file_release(live_files *live, out_file *f)
{
	pthread_mutex_lock(&live->mu);
	if (--f->refs > 0) {
		pthread_mutex_unlock(&live->mu);
		return;
	}
	if (f->prev != NULL) {
		f->prev->next = f->next;
	} else {
		live->head = f->next;
	}
	if (f->next != NULL) {
		f->next->prev = f->prev;
	}
	if (close(f->fd) != 0 && live->close_errno == 0) {
		live->close_errno = errno;
		live->failed_idx = f->idx;
	}
	pthread_mutex_unlock(&live->mu);
	free(f);
}

/* ---- the chunk writer (on its hop's thread) ---- */

static int
writer_write(coffer_filter *fl, const uint8_t *buf, size_t len, coffer_err *err)
{
	chunk_writer *w = (chunk_writer *)fl;
	while (len > 0) {
		if (w->state == W_DATA) {
			size_t n = w->left < len ? w->left : len;
			ssize_t k = pwrite(w->f->fd, buf, n, (off_t)w->off);
			if (k < 0 && errno == EINTR) {
				continue;
			}
			if (k <= 0) {
				return (coffer_err_errno(err, k < 0 ? errno : EIO, "writing",
				    w->m->files[w->f->idx].path));
			}
			w->unflushed += (size_t)k;
			if (w->unflushed >= WRITEBACK_EVERY) {
				/* Advisory: a failure here only means the sync at the
				 * end does more of the work. */
				(void)sync_file_range(w->f->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
				w->unflushed = 0;
			}
			w->off += (uint64_t)k, w->left -= (uint32_t)k, buf += k, len -= (size_t)k;
			if (w->left == 0) {
				w->state = W_HEADER;
			}
			continue;
		}
		size_t n = FRAME_LEN - w->have;
		n = n < len ? n : len;
		memcpy(w->frame + w->have, buf, n);
		w->have += n, buf += n, len -= n;
		if (w->have < FRAME_LEN) {
			break;
		}
		w->have = 0;
		out_file *f = (out_file *)(uintptr_t)get_u64(w->frame + 1);
		uint32_t l = (uint32_t)w->frame[17] << 24 | (uint32_t)w->frame[18] << 16 |
		    (uint32_t)w->frame[19] << 8 | w->frame[20];
		if (w->frame[0] == 'W') {
			w->f = f;
			w->off = get_u64(w->frame + 9);
			w->left = l;
			w->state = l > 0 ? W_DATA : W_HEADER;
		} else if (w->frame[0] == 'R') {
			file_release(w->live, f);
		} else {
			return (coffer_err_set(err, COFFER_EINTERNAL, "chunk writer: bad frame"));
		}
	}
	return (0);
}

static int
writer_finish(coffer_filter *f, coffer_err *err)
{
	chunk_writer *w = (chunk_writer *)f;
	if (w->state != W_HEADER || w->have != 0) {
		return (coffer_err_set(
		    err, COFFER_EINTERNAL, "chunk writer: stream ended inside a chunk"));
	}
	return (0);
}

static void
writer_destroy(coffer_filter *f)
{
	free(f);
}

static const coffer_filter_ops writer_ops = {
	.name = "physical-chunk-writer",
	.write = writer_write,
	.finish = writer_finish,
	.destroy = writer_destroy,
};

/* ---- the unpacker (parses, checks, hashes; the writers write) ---- */

static int
file_end(unpack *u, coffer_err *err)
{
	const coffer_manifest_file *mf = &u->m->files[u->cur->idx];
	int rc = coffer_filter_finish(u->sha, err);
	for (int i = 0; i < UNPACK_WRITERS && rc == 0; i++) {
		if (u->sent[i]) {
			rc = send_frame(u->writers[i], 'R', u->cur, 0, 0, err);
		}
	}
	if (rc == 0) {
		uint8_t d[COFFER_SHA256_LEN];
		char hex[COFFER_SHA256_HEX_LEN + 1];
		coffer_sha256_filter_digest(u->sha, d);
		coffer_hex_encode(d, sizeof(d), hex);
		if (strcmp(hex, mf->sha256) != 0) {
			rc = coffer_err_set(err, COFFER_ECORRUPT,
			    "restored %s has SHA-256 %.16s..., the manifest says %.16s...",
			    mf->path, hex, mf->sha256),
			coffer_err_hint(err, "the backup is damaged; restore another one");
		}
	}
	coffer_filter_free_chain(u->sha);
	u->sha = NULL;
	file_release(&u->live, u->cur);
	u->cur = NULL;
	u->next_file++;
	u->state = U_HEADER;
	u->have = 0;
	return (rc);
}

/* Where an archive path is written: beneath the directory of the
 * tablespace it lies in (pg_tblspc/<oid>/...), else beneath the data
 * directory. */
static int
entry_base(const unpack *u, const char *path, const char **rel)
{
	*rel = path;
	if (strncmp(path, "pg_tblspc/", 10) != 0) {
		return (u->root_fd);
	}
	const char *oid = path + 10, *slash = strchr(oid, '/');
	if (slash == NULL) {
		return (u->root_fd);
	}
	for (size_t i = 0; i < u->tablespaces; i++) {
		if (strlen(u->ts[i].oid) == (size_t)(slash - oid) &&
		    strncmp(u->ts[i].oid, oid, (size_t)(slash - oid)) == 0) {
			*rel = slash + 1;
			return (u->ts[i].fd);
		}
	}
	return (u->root_fd);
}

#ifndef NDEBUG
/* A fault hook, compiled into test builds only (NDEBUG unset; docs/
 * OPERATIONS.md, "Fault hooks"): COFFER_FAULT_RESTORE_PAUSE_AT=<archive
 * path> stops the writer (SIGSTOP) just before it creates that file, so a
 * test can change the target at a known point of a running restore and
 * send SIGCONT; nothing real can time that without a race. */
static void
fault_pause_at(const char *path)
{
	const char *at = getenv("COFFER_FAULT_RESTORE_PAUSE_AT");
	if (at != NULL && strcmp(at, path) == 0) {
		fprintf(stderr, "coffer-agent: fault hook: restore paused before %s pid=%ld\n",
		    path, (long)getpid());
		raise(SIGSTOP);
	}
}
#endif

static int
file_begin(unpack *u, coffer_err *err)
{
	const char *path = u->m->files[u->next_file].path, *rel;
#ifndef NDEBUG
	fault_pause_at(path);
#endif
	int base = entry_base(u, path, &rel);
	int fd = -1;
	int rc = agent_confined_open(
	    base, rel, O_WRONLY | O_CREAT | O_EXCL, (u->mode & 0777) | 0600, &fd, err);
	if (rc != 0) {
		if (rel != path && err != NULL) {
			coffer_err_wrap(err, "restoring %s", path);
		}
		return (rc);
	}
	out_file *f = calloc(1, sizeof(*f));
	u->sha = f != NULL ? coffer_sha256_filter_new(coffer_discard_sink_new(err), err) : NULL;
	if (f == NULL || u->sha == NULL) {
		free(f);
		close(fd);
		return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
	}
	f->fd = fd;
	f->idx = u->next_file;
	f->refs = 1; /* the unpacker's, until the file ends */
	pthread_mutex_lock(&u->live.mu);
	f->next = u->live.head;
	if (f->next != NULL) {
		f->next->prev = f;
	}
	u->live.head = f;
	pthread_mutex_unlock(&u->live.mu);
	u->cur = f;
	memset(u->sent, 0, sizeof(u->sent));
	u->offset = 0;
	return (0);
}

/* Where the tablespace at location (pg_tblspc/<oid>) goes: the NEW of its
 * --tablespace-map OLD=NEW or OID=NEW, else where it was. */
static const char *
tablespace_target(const unpack *u, const char *location, const char *oid, bool *mapped)
{
	for (size_t i = 0; i < u->n_ts_map; i++) {
		const char *eq = strchr(u->ts_map[i], '=');
		size_t n = eq != NULL ? (size_t)(eq - u->ts_map[i]) : 0;
		if (n > 0 &&
		    ((strlen(location) == n && strncmp(u->ts_map[i], location, n) == 0) ||
		        (strlen(oid) == n && strncmp(u->ts_map[i], oid, n) == 0))) {
			*mapped = true;
			return (eq + 1);
		}
	}
	*mapped = false;
	return (location);
}

/* Opens the directory a tablespace is placed in. Where the operator mapped
 * it, it is made if missing. Its recorded location is used only as an
 * empty directory that already belongs to whoever runs the restore (the
 * data directory's owner, see agent_physical_restore): the location comes
 * from the source's pg_tblspc link, and a restore must not create
 * directories wherever that once pointed. */
static int
tablespace_dir(const unpack *u, const char *target, bool mapped, int *fd_out, coffer_err *err)
{
	const char *loc = u->ts_location;
	int fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT && mapped) {
		if (mkdir(target, 0700) != 0) {
			return (coffer_err_errno(
			            err, errno, "creating the tablespace directory", target),
			    coffer_err_hint(err,
			        "create it (empty, owned by the data directory's owner), or map "
			        "%s elsewhere with --tablespace-map %s=DIR",
			        loc, loc));
		}
		fd = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	}
	if (fd < 0 && !mapped) {
		return (coffer_err_set(err, COFFER_EREFUSED,
		            "tablespace directory %s (the tablespace's recorded location) is not "
		            "a directory that exists here (%s)",
		            target, strerror(errno)),
		    coffer_err_hint(err,
		        "restore it to a directory of your choice with --tablespace-map %s=DIR, "
		        "or create %s empty and owned by the data directory's owner",
		        loc, target));
	}
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "opening the tablespace directory", target));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
		unsigned owner = (unsigned)st.st_uid;
		close(fd);
		return (
		    coffer_err_set(err, COFFER_EREFUSED,
		        "tablespace directory %s belongs to uid %u, not to the data directory's "
		        "owner (uid %u)",
		        target, owner, (unsigned)geteuid()),
		    coffer_err_hint(err,
		        "restore it elsewhere with --tablespace-map %s=DIR, or chown %s to the "
		        "data directory's owner",
		        loc, target));
	}
	int dup_fd = dup(fd);
	DIR *dir = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	bool empty = dir != NULL;
	struct dirent *de;
	while (empty && (de = readdir(dir)) != NULL) {
		empty = strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0;
	}
	if (dir != NULL) {
		closedir(dir);
	} else if (dup_fd >= 0) {
		close(dup_fd);
	}
	if (!empty) {
		close(fd);
		return (coffer_err_set(
		            err, COFFER_EEXIST, "tablespace directory %s is not empty", target),
		    coffer_err_hint(err,
		        "restore it elsewhere with --tablespace-map %s=DIR (a new "
		        "or empty directory); nothing in %s was changed",
		        loc, target));
	}
	*fd_out = fd;
	return (0);
}

/* A tablespace's location is read and proven (its digest in the signed
 * manifest): its directory is chosen and opened, pg_tblspc/<oid> points at
 * it for PostgreSQL, and the files that follow are written beneath the
 * directory's descriptor. */
static int
tablespace_place(unpack *u, coffer_err *err)
{
	const coffer_manifest_file *mf = &u->m->files[u->next_file];
	int rc = coffer_filter_finish(u->sha, err);
	uint8_t d[COFFER_SHA256_LEN];
	char hex[COFFER_SHA256_HEX_LEN + 1];
	coffer_sha256_filter_digest(u->sha, d);
	coffer_hex_encode(d, sizeof(d), hex);
	coffer_filter_free_chain(u->sha);
	u->sha = NULL;
	if (rc != 0) {
		return (rc);
	}
	if (strcmp(hex, mf->sha256) != 0) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "tablespace %s's location does not match "
		            "the manifest",
		            mf->path),
		    coffer_err_hint(err, "the backup is damaged; restore another one"));
	}
	u->ts_location[u->size] = '\0';
	if (strlen(u->ts_location) != u->size || u->ts_location[0] != '/') {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "tablespace %s has no absolute "
		            "location",
		            mf->path),
		    coffer_err_hint(err, "the backup is damaged or forged; do not restore it"));
	}
	const char *oid = mf->path + 10;
	if (oid[0] == '\0' || strlen(oid) >= sizeof(u->ts[0].oid) ||
	    strspn(oid, "0123456789") != strlen(oid)) {
		return (coffer_err_set(
		            err, COFFER_ECORRUPT, "tablespace %s is not named by an oid", mf->path),
		    coffer_err_hint(err, "the backup is damaged or forged; do not restore it"));
	}
	bool mapped = false;
	const char *target = tablespace_target(u, u->ts_location, oid, &mapped);
	if (target[0] != '/') {
		return (coffer_err_set(err, COFFER_EINVAL,
		            "--tablespace-map for %s names '%s', not "
		            "an absolute path",
		            u->ts_location, target),
		    coffer_err_hint(
		        err, "write it as --tablespace-map OLD=NEW or OID=NEW, NEW absolute"));
	}
	placed_ts *grown = realloc(u->ts, (u->tablespaces + 1) * sizeof(*u->ts));
	if (grown == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	u->ts = grown;
	int fd = -1;
	rc = tablespace_dir(u, target, mapped, &fd, err);
	if (rc == 0) {
		rc = agent_confined_symlink(u->root_fd, mf->path, target, err);
		if (rc != 0) {
			close(fd);
		}
	}
	if (rc != 0) {
		return (rc);
	}
	snprintf(u->ts[u->tablespaces].oid, sizeof(u->ts[0].oid), "%s", oid);
	u->ts[u->tablespaces].fd = fd;
	coffer_log_info("tablespace restored", "link=%s location=%s", mf->path, target);
	u->tablespaces++;
	u->next_file++;
	u->state = U_HEADER;
	u->have = 0;
	return (0);
}

static int
entry_begin(unpack *u, coffer_err *err)
{
	u->path[u->path_len] = '\0';
	if (strlen(u->path) != u->path_len || !agent_confined_path_ok(u->path)) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "physical archive names a path outside the data directory: \"%.80s\"",
		            u->path),
		    coffer_err_hint(err, "the backup is damaged or forged; do not restore it"));
	}
	if (u->type == AGENT_PHYS_DIR) {
		const char *rel;
		int base = entry_base(u, u->path, &rel);
		int fd = -1;
		int rc = agent_confined_mkdir(base, rel, (u->mode & 0777) | 0700, &fd, err);
		if (rc != 0) {
			if (rel != u->path && err != NULL) {
				coffer_err_wrap(err, "restoring %s", u->path);
			}
			return (rc);
		}
		close(fd);
		u->state = U_HEADER;
		u->have = 0;
		return (0);
	}
	if (u->next_file >= u->m->nfiles) {
		return (
		    coffer_err_set(err, COFFER_ECORRUPT,
		        "physical archive holds more files than its manifest lists (%s)", u->path),
		    coffer_err_hint(err, "the backup is damaged; restore another one"));
	}
	const coffer_manifest_file *mf = &u->m->files[u->next_file];
	if (strcmp(mf->path, u->path) != 0 || mf->size != u->size) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "physical archive entry %zu is %s (%" PRIu64
		            " bytes), the manifest says %s "
		            "(%" PRIu64 " bytes)",
		            u->next_file, u->path, u->size, mf->path, mf->size),
		    coffer_err_hint(err, "the backup is damaged; restore another one"));
	}
	if (u->type == AGENT_PHYS_TABLESPACE) {
		if (strncmp(u->path, "pg_tblspc/", 10) != 0 || strchr(u->path + 10, '/') != NULL) {
			return (
			    coffer_err_set(err, COFFER_ECORRUPT,
			        "physical archive names a tablespace outside pg_tblspc: \"%.80s\"",
			        u->path),
			    coffer_err_hint(
			        err, "the backup is damaged or forged; do not restore it"));
		}
		u->sha = coffer_sha256_filter_new(coffer_discard_sink_new(err), err);
		if (u->sha == NULL) {
			return (err != NULL && err->code != 0 ? err->code : COFFER_ENOMEM);
		}
		u->left = u->size;
		u->have = 0;
		u->state = U_TABLESPACE;
		return (0);
	}
	int rc = file_begin(u, err);
	if (rc != 0) {
		return (rc);
	}
	u->left = u->size;
	u->state = U_DATA;
	return (u->left == 0 ? file_end(u, err) : 0);
}

static int
unpack_write(coffer_filter *f, const uint8_t *buf, size_t len, coffer_err *err)
{
	unpack *u = (unpack *)f;
	while (len > 0) {
		int rc = 0;
		switch (u->state) {
		case U_HEADER: {
			size_t n = AGENT_PHYS_HEADER_LEN - u->have;
			n = n < len ? n : len;
			memcpy(u->hdr + u->have, buf, n);
			u->have += n, buf += n, len -= n;
			if (u->have < AGENT_PHYS_HEADER_LEN) {
				break;
			}
			rc = agent_physical_header_decode(
			    u->hdr, &u->type, &u->mode, &u->path_len, &u->size, err);
			if (rc != 0) {
				return (rc);
			}
			u->have = 0;
			u->state = u->type == AGENT_PHYS_END ? U_DONE : U_PATH;
			break;
		}
		case U_PATH: {
			size_t n = u->path_len - u->have;
			n = n < len ? n : len;
			memcpy(u->path + u->have, buf, n);
			u->have += n, buf += n, len -= n;
			if (u->have == u->path_len) {
				rc = entry_begin(u, err);
			}
			break;
		}
		case U_DATA: {
			size_t n = u->left < len ? (size_t)u->left : len;
			if (n > CHUNK) {
				n = CHUNK;
			}
			unsigned i = u->rr++ % UNPACK_WRITERS;
			if (!u->sent[i]) {
				pthread_mutex_lock(&u->live.mu);
				u->cur->refs++;
				pthread_mutex_unlock(&u->live.mu);
				u->sent[i] = true;
			}
			rc = send_frame(u->writers[i], 'W', u->cur, u->offset, (uint32_t)n, err);
			if (rc == 0) {
				rc = coffer_filter_write(u->writers[i], buf, n, err);
			}
			if (rc == 0) {
				rc = coffer_filter_write(u->sha, buf, n, err);
			}
			u->offset += n, u->left -= n, buf += n, len -= n;
			if (rc == 0 && u->left == 0) {
				rc = file_end(u, err);
			}
			break;
		}
		case U_TABLESPACE: {
			size_t n = u->left < len ? (size_t)u->left : len;
			memcpy(u->ts_location + u->have, buf, n);
			rc = coffer_filter_write(u->sha, buf, n, err);
			u->have += n, u->left -= n, buf += n, len -= n;
			if (rc == 0 && u->left == 0) {
				rc = tablespace_place(u, err);
			}
			break;
		}
		default:
			return (coffer_err_set(err, COFFER_ECORRUPT,
			            "physical archive has data after its end entry"),
			    coffer_err_hint(err, "the backup is damaged; restore another one"));
		}
		if (rc != 0) {
			return (rc);
		}
	}
	return (0);
}

static int
unpack_finish(coffer_filter *f, coffer_err *err)
{
	unpack *u = (unpack *)f;
	int rc = 0;
	/* Every writer drains whatever the archive says, so that a damaged
	 * archive is reported as such, not as a writer left half-way. */
	for (int i = 0; i < UNPACK_WRITERS && rc == 0; i++) {
		if (u->state == U_DONE) {
			rc = coffer_filter_finish(u->writers[i], err);
		}
	}
	if (rc != 0) {
		return (rc);
	}
	if (u->state != U_DONE) {
		return (coffer_err_set(
		            err, COFFER_ETRUNC, "physical archive ends before its end entry"),
		    coffer_err_hint(err, "the backup is damaged; restore another one"));
	}
	if (u->next_file != u->m->nfiles) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "physical archive holds %zu files, its manifest lists %zu",
		            u->next_file, u->m->nfiles),
		    coffer_err_hint(err, "the backup is damaged; restore another one"));
	}
	pthread_mutex_lock(&u->live.mu);
	int e = u->live.close_errno;
	size_t idx = u->live.failed_idx;
	pthread_mutex_unlock(&u->live.mu);
	if (e != 0) {
		return (coffer_err_errno(err, e, "closing", u->m->files[idx].path));
	}
	/* The links made above say where each tablespace is now; left in
	 * place, tablespace_map would make recovery point them back where
	 * they were (pg_basebackup's plain format leaves it out too). */
	if (u->tablespaces > 0 && unlinkat(u->root_fd, "tablespace_map", 0) != 0 &&
	    errno != ENOENT) {
		return (coffer_err_errno(err, errno, "removing", "tablespace_map"));
	}
	return (0);
}

static void
unpack_destroy(coffer_filter *f)
{
	unpack *u = (unpack *)f;
	for (int i = 0; i < UNPACK_WRITERS; i++) {
		coffer_filter_free_chain(u->writers[i]); /* the hop first: joins its thread */
	}
	/* A restore stopped half-way: nobody will release these any more. */
	for (out_file *o = u->live.head, *next; o != NULL; o = next) {
		next = o->next;
		close(o->fd);
		free(o);
	}
	coffer_filter_free_chain(u->sha);
	for (size_t i = 0; i < u->tablespaces; i++) {
		close(u->ts[i].fd);
	}
	free(u->ts);
	pthread_mutex_destroy(&u->live.mu);
	free(u);
}

static const coffer_filter_ops unpack_ops = {
	.name = "physical-unpack",
	.write = unpack_write,
	.finish = unpack_finish,
	.destroy = unpack_destroy,
};

coffer_filter *
agent_physical_restore_unpack_new(int root_fd, const coffer_manifest *m,
    const char *const *tablespace_map, size_t n_tablespace_map, coffer_err *err)
{
	unpack *u = calloc(1, sizeof(*u));
	if (u == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		return (NULL);
	}
	u->base.ops = &unpack_ops;
	u->m = m;
	u->root_fd = root_fd;
	u->state = U_HEADER;
	u->ts_map = tablespace_map;
	u->n_ts_map = n_tablespace_map;
	pthread_mutex_init(&u->live.mu, NULL);
	for (int i = 0; i < UNPACK_WRITERS; i++) {
		chunk_writer *w = calloc(1, sizeof(*w));
		if (w != NULL) {
			*w = (chunk_writer) {
				.base = { .ops = &writer_ops }, .live = &u->live, .m = m
			};
			u->writers[i] = coffer_hop_filter_new(
			    &w->base, WRITER_SLOTS, CHUNK + 2 * FRAME_LEN, err);
		}
		if (u->writers[i] == NULL) {
			unpack_destroy(&u->base);
			if (err != NULL && err->code == 0) {
				coffer_err_set(err, COFFER_ENOMEM, "out of memory");
			}
			return (NULL);
		}
	}
	return (&u->base);
}

/* ---- choosing the backup ---- */

/* Every published physical backup whose manifest verifies; the others are
 * skipped (list and verify name them). */
typedef struct manifests {
	agent_ctx *ctx;
	coffer_manifest **ms;
	size_t n, cap;
	int rv;
	coffer_err *err;
} manifests;

static int
collect_manifest(const char *id, void *arg)
{
	manifests *l = arg;
	coffer_manifest_kind kind;
	if (coffer_manifest_id_check(id, &kind, NULL) != 0 || kind != COFFER_MANIFEST_PHYSICAL) {
		return (0);
	}
	coffer_manifest *m = NULL;
	coffer_err e = { 0 };
	if (agent_stored_manifest(l->ctx, id, &m, &e) != 0) {
		coffer_log_warn("backup skipped: its manifest does not verify",
		    "backup=%s error=\"%s\"", id, e.msg);
		return (0);
	}
	if (l->n == l->cap) {
		size_t ncap = l->cap == 0 ? 16 : l->cap * 2;
		coffer_manifest **p = realloc(l->ms, ncap * sizeof(*p));
		if (p == NULL) {
			coffer_manifest_free(m);
			l->rv =
			    coffer_err_set(l->err, COFFER_ENOMEM, "out of memory listing backups");
			return (1);
		}
		l->ms = p;
		l->cap = ncap;
	}
	l->ms[l->n++] = m;
	return (0);
}

static void
manifests_free(manifests *l)
{
	for (size_t i = 0; i < l->n; i++) {
		coffer_manifest_free(l->ms[i]);
	}
	free(l->ms);
	l->ms = NULL;
	l->n = 0;
}

static int
manifests_load(agent_ctx *ctx, manifests *l, coffer_err *err)
{
	memset(l, 0, sizeof(*l));
	l->ctx = ctx;
	l->err = err;
	int rc = agent_stored_ids(ctx, collect_manifest, l, err);
	if (rc == 0) {
		rc = l->rv;
	}
	if (rc != 0) {
		manifests_free(l);
	}
	return (rc);
}

static uint64_t
stop_lsn(const coffer_manifest *m)
{
	uint64_t v = 0;
	return (agent_lsn_parse(m->lsn_stop, &v) == 0 ? v : 0);
}

static bool
is_physical(const char *id, void *arg)
{
	(void)arg;
	coffer_manifest_kind kind;
	return (coffer_manifest_id_check(id, &kind, NULL) == 0 && kind == COFFER_MANIFEST_PHYSICAL);
}

/* A backup given by id (or the newest) checked against the target: it
 * must be consistent before a time or LSN target. */
static int
check_against_target(const coffer_manifest *m, const agent_target *t, coffer_err *err)
{
	if (m->kind != COFFER_MANIFEST_PHYSICAL) {
		return (coffer_err_set(
		            err, COFFER_EINVAL, "backup %s is a logical backup", m->backup_id),
		    coffer_err_hint(err,
		        "restore it with --backup %s --target-db NAME, or pick a physical backup",
		        m->backup_id));
	}
	if (t->kind == AGENT_TARGET_TIME && m->finished_at > t->time_ms) {
		char fin[40];
		coffer_time_format(fin, sizeof(fin), m->finished_at);
		return (coffer_err_set(err, COFFER_EINVAL,
		            "backup %s finished at %s, after the target time", m->backup_id, fin),
		    coffer_err_hint(
		        err, "pick a later target time or an older backup with --backup"));
	}
	if (t->kind == AGENT_TARGET_LSN && stop_lsn(m) > t->lsn) {
		return (coffer_err_set(err, COFFER_EINVAL,
		            "backup %s is consistent only at LSN %s, after the target LSN",
		            m->backup_id, m->lsn_stop),
		    coffer_err_hint(
		        err, "pick a later target LSN or an older backup with --backup"));
	}
	return (0);
}

/*
 * Which backup a target needs: for a time, the newest one that finished at
 * or before it; for an LSN, the newest of the current cluster (that of the
 * newest backup: LSNs of two clusters say nothing about each other) whose
 * stop LSN is at or before it; otherwise the newest (agent_stored_latest).
 * *out is a copy the caller frees; all is the list of physical manifests.
 */
static int
choose_backup(agent_ctx *ctx, const char *backup, const agent_target *t, const manifests *all,
    coffer_manifest **out, coffer_err *err)
{
	*out = NULL;
	bool by_target = (backup == NULL || strcmp(backup, "latest") == 0) &&
	    (t->kind == AGENT_TARGET_TIME || t->kind == AGENT_TARGET_LSN);
	const char *id = backup;
	char latest[COFFER_MANIFEST_ID_SIZE] = "";
	if (by_target || backup == NULL || strcmp(backup, "latest") == 0) {
		int rc = agent_stored_latest(ctx, is_physical, NULL, latest, err);
		if (rc != 0) {
			return (rc);
		}
		if (latest[0] == '\0') {
			return (coffer_err_set(err, COFFER_ENOENT,
			            "no physical backup of service %s in repository %s",
			            ctx->cfg->service, ctx->repo_name),
			    coffer_err_hint(
			        err, "take one with `coffer-agent backup --kind physical`"));
		}
		id = latest;
	}
	if (by_target) {
		uint64_t cluster = 0;
		for (size_t i = 0; i < all->n; i++) {
			if (strcmp(all->ms[i]->backup_id, latest) == 0) {
				cluster = all->ms[i]->system_identifier;
			}
		}
		const coffer_manifest *best = NULL, *oldest = NULL;
		for (size_t i = 0; i < all->n; i++) {
			const coffer_manifest *m = all->ms[i];
			bool fits;
			if (t->kind == AGENT_TARGET_TIME) {
				fits = m->finished_at <= t->time_ms;
				if (oldest == NULL || m->finished_at < oldest->finished_at) {
					oldest = m;
				}
				if (fits &&
				    (best == NULL || m->finished_at > best->finished_at ||
				        (m->finished_at == best->finished_at &&
				            stop_lsn(m) > stop_lsn(best)))) {
					best = m;
				}
			} else if (m->system_identifier == cluster) {
				fits = stop_lsn(m) != 0 && stop_lsn(m) <= t->lsn;
				if (oldest == NULL || stop_lsn(m) < stop_lsn(oldest)) {
					oldest = m;
				}
				if (fits && (best == NULL || stop_lsn(m) > stop_lsn(best))) {
					best = m;
				}
			}
		}
		if (best == NULL) {
			char have[64] = "none";
			if (oldest != NULL && t->kind == AGENT_TARGET_TIME) {
				coffer_time_format(have, sizeof(have), oldest->finished_at);
			} else if (oldest != NULL) {
				snprintf(have, sizeof(have), "%s", oldest->lsn_stop);
			}
			char want[64];
			agent_target_describe(t, want, sizeof(want));
			return (
			    coffer_err_set(err, COFFER_ENOENT,
			        "no physical backup of service %s is consistent before %s %s; the "
			        "oldest is %s at %s",
			        ctx->cfg->service, t->kind == AGENT_TARGET_TIME ? "time" : "LSN",
			        want, oldest != NULL ? oldest->backup_id : "-", have),
			    coffer_err_hint(err,
			        "pick a target inside the recoverable window (`coffer-agent list` shows "
			        "it)"));
		}
		id = best->backup_id;
	}
	coffer_manifest *m = NULL;
	int rc = agent_stored_manifest(ctx, id, &m, err);
	if (rc == 0) {
		rc = check_against_target(m, t, err);
	}
	if (rc != 0) {
		coffer_manifest_free(m);
		return (rc);
	}
	*out = m;
	return (0);
}

/* ---- the data directory ---- */

static int write_recovery(
    int root_fd, const char *pgdata, const char *text, size_t len, coffer_err *err);

/* What the restore learns of its target before anything is written: who
 * owns it, and so who writes it. Run as root, the target must exist and
 * belong to the database user: root picks nobody's identity on a guess
 * (a parent directory's owner may be anyone), and a restore as root never
 * writes as root. */
static int
check_target(const char *pgdata, struct stat *st, coffer_err *err)
{
	bool root = geteuid() == 0;
	if (lstat(pgdata, st) != 0) {
		if (errno != ENOENT) {
			return (coffer_err_errno(err, errno, "reading", pgdata));
		}
		if (root) {
			return (coffer_err_set(err, COFFER_EINVAL,
			            "%s does not exist; run as root, a restore writes as the data "
			            "directory's owner, so the directory must exist first",
			            pgdata),
			    coffer_err_hint(err,
			        "create it empty and owned by the database user (install -d -m 700 "
			        "-o postgres -g postgres %s), then restore again",
			        pgdata));
		}
		st->st_uid = geteuid();
		st->st_gid = getegid();
		return (0);
	}
	if (!S_ISDIR(st->st_mode)) {
		return (coffer_err_set(err, COFFER_EINVAL, "%s is not a directory%s", pgdata,
		            S_ISLNK(st->st_mode) ? " (it is a symbolic link)" : ""),
		    coffer_err_hint(err, "name the new or empty data directory itself"));
	}
	if (root && st->st_uid == 0) {
		return (coffer_err_set(err, COFFER_EPERM,
		            "%s belongs to root, and PostgreSQL refuses to run as root; a restore "
		            "run as root writes as the data directory's owner",
		            pgdata),
		    coffer_err_hint(err,
		        "create it empty, owned by the database user (chown postgres "
		        "%s), then restore again",
		        pgdata));
	}
	if (!root && st->st_uid != geteuid()) {
		return (coffer_err_set(err, COFFER_EPERM, "%s belongs to uid %u, not to this user",
		            pgdata, (unsigned)st->st_uid),
		    coffer_err_hint(err, "run the restore as the directory's owner or as root"));
	}
	return (0);
}

/* In the writer, as the data directory's owner: makes or opens the target,
 * which must be empty and ours. */
static int
open_target(const char *pgdata, int *fd_out, coffer_err *err)
{
	if (mkdir(pgdata, 0700) != 0 && errno != EEXIST) {
		return (coffer_err_errno(err, errno, "creating", pgdata));
	}
	int fd = open(pgdata, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "opening", pgdata));
	}
	int dup_fd = dup(fd);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (d == NULL) {
		int e = errno;
		if (dup_fd >= 0) {
			close(dup_fd);
		}
		close(fd);
		return (coffer_err_errno(err, e, "reading", pgdata));
	}
	struct dirent *de;
	bool empty = true;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
			empty = false;
		}
	}
	closedir(d);
	if (!empty) {
		close(fd);
		return (coffer_err_set(err, COFFER_EEXIST, "%s is not empty", pgdata),
		    coffer_err_hint(err,
		        "restore into a new or empty directory; nothing in %s was "
		        "touched",
		        pgdata));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_uid != geteuid()) {
		close(fd);
		return (coffer_err_set(
		            err, COFFER_EREFUSED, "%s changed owner as the restore began", pgdata),
		    coffer_err_hint(err, "something else changes the target; restore again"));
	}
	if (fchmod(fd, 0700) != 0) {
		int e = errno;
		close(fd);
		return (coffer_err_errno(err, e, "preparing", pgdata));
	}
	*fd_out = fd;
	return (0);
}

/* Writes the data directory, as its owner: the archive (from the
 * repository in this process, or from in_fd, the pipe from the reading
 * parent), then sync and the recovery settings. */
static int
write_target(agent_ctx *ctx, int in_fd, const agent_physical_restore_request *req,
    const coffer_manifest *m, const char *text, size_t len, coffer_err *err)
{
	int root_fd = -1;
	int rc = open_target(req->pgdata, &root_fd, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_filter *unpacker = agent_physical_restore_unpack_new(
	    root_fd, m, req->tablespace_map, req->n_tablespace_map, err);
	if (unpacker == NULL) {
		rc = err != NULL ? err->code : COFFER_ENOMEM;
	} else if (in_fd >= 0) {
		rc = coffer_filter_pump_fd(in_fd, unpacker, 0, err);
	} else {
		if (req->progress) {
			unpacker = coffer_progress_filter_new(
			    unpacker, "restoring", m->plaintext_bytes, err);
		}
		rc = unpacker == NULL
		    ? (err != NULL ? err->code : COFFER_ENOMEM)
		    : agent_stored_read_flags(ctx, m, unpacker, AGENT_STORED_FILES_PROVE, err);
	}
	coffer_filter_free_chain(unpacker);
	if (rc == 0 && syncfs(root_fd) != 0) {
		rc = coffer_err_errno(err, errno, "syncing", req->pgdata);
	}
	if (rc == 0) {
		rc = write_recovery(root_fd, req->pgdata, text, len, err);
	}
	close(root_fd);
	return (rc);
}

/* Reads all of fd (a child's report) into buf; the bytes read. */
static size_t
read_report(int fd, void *buf, size_t size)
{
	size_t got = 0;
	while (got < size) {
		ssize_t n = read(fd, (uint8_t *)buf + got, size - got);
		if (n < 0 && errno == EINTR) {
			continue;
		}
		if (n <= 0) {
			break;
		}
		got += (size_t)n;
	}
	return (got);
}

/*
 * Design note. Run as root, the restore splits in two processes before
 * anything is written: this one keeps root to read the repository, the
 * key ring and the outbox (which may be root's alone), decrypts and checks
 * the stream, and pipes the plaintext archive to a child that has become
 * the data directory's owner (setgroups, setgid, setuid) and writes every
 * entry. Whatever the archive or a concurrent writer of the target does,
 * no file is then made with more rights than the database user has, and
 * nothing is chowned: files are born the owner's. The child sends its
 * coffer_err back through a second pipe.
 */
static int
write_target_as(agent_ctx *ctx, uid_t uid, gid_t gid, const agent_physical_restore_request *req,
    const coffer_manifest *m, const char *text, size_t len, coffer_err *err)
{
	int data[2], report[2];
	if (pipe2(data, O_CLOEXEC) != 0) {
		return (coffer_err_errno(err, errno, "creating a pipe for", req->pgdata));
	}
	if (pipe2(report, O_CLOEXEC) != 0) {
		int e = errno;
		close(data[0]);
		close(data[1]);
		return (coffer_err_errno(err, e, "creating a pipe for", req->pgdata));
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(data[0]), close(data[1]), close(report[0]), close(report[1]);
		return (coffer_err_errno(err, e, "starting the writer for", req->pgdata));
	}
	if (pid == 0) {
		close(data[1]);
		close(report[0]);
		coffer_err cerr = { 0 };
		int crc = 0;
		if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0 ||
		    setuid(0) == 0) {
			crc = coffer_err_set(&cerr, COFFER_EPERM,
			    "cannot become uid %u, the owner of %s", (unsigned)uid, req->pgdata);
			coffer_err_hint(&cerr, "run the restore as root or as that user");
		} else {
			crc = write_target(NULL, data[0], req, m, text, len, &cerr);
		}
		if (crc != 0) {
			(void)!write(report[1], &cerr, sizeof(cerr));
		}
		_exit(crc == 0 ? 0 : 1);
	}
	close(data[0]);
	close(report[1]);
	/* A writer that stopped early closes its end: EPIPE, not death. */
	struct sigaction ign = { .sa_handler = SIG_IGN }, old;
	sigaction(SIGPIPE, &ign, &old);
	coffer_err perr = { 0 };
	coffer_filter *sink = coffer_fd_sink_new(data[1], &perr);
	if (sink != NULL && req->progress) {
		sink = coffer_progress_filter_new(sink, "restoring", m->plaintext_bytes, &perr);
	}
	int prc = sink == NULL
	    ? perr.code
	    : agent_stored_read_flags(ctx, m, sink, AGENT_STORED_FILES_PROVE, &perr);
	coffer_filter_free_chain(sink);
	close(data[1]);
	coffer_err cerr = { 0 };
	size_t got = read_report(report[0], &cerr, sizeof(cerr));
	close(report[0]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		;
	}
	sigaction(SIGPIPE, &old, NULL);
	bool child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
	bool child_said = got == sizeof(cerr) && cerr.code != 0;
	cerr.msg[sizeof(cerr.msg) - 1] = '\0';
	cerr.hint[sizeof(cerr.hint) - 1] = '\0';
	/* The writer's own error is the precise one, unless it only saw the
	 * stream end because this side found the backup bad. */
	if (child_said && (prc == 0 || cerr.code != COFFER_ETRUNC)) {
		if (err != NULL) {
			*err = cerr;
		}
		return (cerr.code);
	}
	if (prc != 0) {
		if (err != NULL) {
			*err = perr;
		}
		return (prc);
	}
	if (!child_ok) {
		return (coffer_err_set(err, COFFER_ECHILD, "the writer of %s ended with status %d",
		            req->pgdata,
		            WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)),
		    coffer_err_hint(
		        err, "see the messages above; restore again into an empty directory"));
	}
	return (0);
}

/* Single-quoted for postgresql.conf; refuses what would need more. */
static bool
conf_safe(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == '\'' || *s == '\\' || (unsigned char)*s < 0x20) {
			return (false);
		}
	}
	return (true);
}

static bool
shell_plain(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		        (*s >= '0' && *s <= '9') || *s == '/' || *s == '.' || *s == '_' ||
		        *s == '-' || *s == '+')) {
			return (false);
		}
	}
	return (true);
}

/* The recovery settings appended to postgresql.auto.conf; made before any
 * privilege is dropped (the config may be readable by root only). */
static int
recovery_text(const agent_physical_restore_request *req, const coffer_manifest *m,
    const char *repo_name, char *text, size_t size, size_t *len_out, coffer_err *err)
{
	/* Recovery reads WAL from the repository the backup came from. */
	const char *repo_opt = strcmp(repo_name, "dr") == 0 ? " --repo dr" : "";
	char exe[PATH_MAX], conf[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0) {
		return (
		    coffer_err_errno(err, errno, "finding this program's path", "/proc/self/exe"));
	}
	exe[n] = '\0';
	if (realpath(req->config_path, conf) == NULL) {
		return (coffer_err_errno(err, errno, "resolving", req->config_path));
	}
	if (!shell_plain(exe) || !shell_plain(conf)) {
		return (
		    coffer_err_set(err, COFFER_EINVAL,
		        "the agent or its config lives at a path with spaces or quotes (%s)", conf),
		    coffer_err_hint(
		        err, "move it to a plain path; restore_command runs in a shell"));
	}
	if (req->port != NULL &&
	    (!conf_safe(req->port) || req->port[0] == '\0' ||
	        strspn(req->port, "0123456789") != strlen(req->port))) {
		return (coffer_err_set(err, COFFER_EINVAL, "--port '%s' is not a port", req->port),
		    coffer_err_hint(err, "pass a number"));
	}
	int len = snprintf(text, size,
	    "\n# Written by coffer-agent restore --physical from backup %s.\n"
	    "restore_command = '%s wal-fetch -c %s%s --system-identifier %" PRIu64 " %%f %%p'\n"
	    "# A restored copy must not archive into its source's WAL; enable on purpose.\n"
	    "archive_mode = 'off'\n"
	    "%s%s%s%s",
	    m->backup_id, exe, conf, repo_opt, m->system_identifier,
	    req->port != NULL ? "port = " : "", req->port != NULL ? req->port : "",
	    req->port != NULL ? "\n" : "",
	    /* Pausing needs connections during recovery, or PostgreSQL shuts
	     * down instead. */
	    req->target.action == AGENT_ACTION_PAUSE ? "hot_standby = 'on'\n" : "");
	if (len < 0 || (size_t)len >= size) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "the recovery settings are too long"),
		    coffer_err_hint(err, "shorten the agent's or its config's path"));
	}
	size_t used = (size_t)len;
	int rc = agent_target_settings(&req->target, text, size, &used, err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "writing the recovery target"));
	}
	*len_out = used;
	return (0);
}

static int
write_recovery(int root_fd, const char *pgdata, const char *text, size_t len, coffer_err *err)
{
	/* postgresql.auto.conf came from the archive: appended to only if it
	 * is still the one file this restore wrote (no link followed, no
	 * second name given to it meanwhile). */
	int fd = -1;
	int rc = agent_confined_open(
	    root_fd, "postgresql.auto.conf", O_WRONLY | O_APPEND | O_CREAT, 0600, &fd, err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "writing the recovery settings into %s", pgdata));
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    st.st_uid != geteuid()) {
		close(fd);
		return (
		    coffer_err_set(err, COFFER_EREFUSED,
		        "postgresql.auto.conf in %s was replaced while the restore ran", pgdata),
		    coffer_err_hint(err,
		        "something else writes into the target; stop it and restore into a new, "
		        "empty directory"));
	}
	rc = write_all(fd, (const uint8_t *)text, len, "postgresql.auto.conf", err);
	close(fd);
	if (rc != 0) {
		return (rc);
	}
	rc = agent_confined_open(
	    root_fd, "recovery.signal", O_WRONLY | O_CREAT | O_EXCL, 0600, &fd, err);
	if (rc != 0) {
		return (coffer_err_wrap(err, "writing recovery.signal into %s", pgdata));
	}
	close(fd);
	return (0);
}

/* ---- starting and watching PostgreSQL ---- */

static int
run_pg_ctl(const agent_config *cfg, const char *pgdata, bool drop, uid_t uid, gid_t gid,
    int64_t timeout_ms, coffer_err *err)
{
	char pg_ctl[PATH_MAX], log[PATH_MAX], secs[32];
	if (cfg->bin_dir != NULL) {
		snprintf(pg_ctl, sizeof(pg_ctl), "%s/pg_ctl", cfg->bin_dir);
	} else {
		snprintf(pg_ctl, sizeof(pg_ctl), "pg_ctl");
	}
	snprintf(log, sizeof(log), "%s/coffer-recovery.log", pgdata);
	snprintf(
	    secs, sizeof(secs), "%lld", (long long)(timeout_ms / 1000 > 0 ? timeout_ms / 1000 : 1));
	pid_t pid = fork();
	if (pid < 0) {
		return (coffer_err_errno(err, errno, "starting", pg_ctl));
	}
	if (pid == 0) {
		if (drop && (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
			_exit(126);
		}
		/* Our working directory may be closed to the cluster's owner (a
		 * root shell in a 0700 directory), and PostgreSQL then refuses to
		 * start ("could not change directory"); the data directory is
		 * always the owner's. */
		if (drop && pgdata[0] == '/' && chdir(pgdata) != 0) {
			_exit(126);
		}
		dup2(STDERR_FILENO, STDOUT_FILENO); /* our stdout is the report */
		execlp(pg_ctl, pg_ctl, "-D", pgdata, "-l", log, "-w", "-t", secs, "start",
		    (char *)NULL);
		_exit(127);
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
		;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		return (0);
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	coffer_err_set(err, COFFER_ECHILD, "pg_ctl start for %s exited with status %d%s", pgdata,
	    code,
	    code == 127       ? " (pg_ctl not found)"
	        : code == 126 ? " (cannot switch user)"
	                      : "");
	return (
	    coffer_err_hint(err, "see %s; set [postgres] bin_dir if pg_ctl is not on PATH", log));
}

/* Reads port and socket directory from postmaster.pid (lines 4 and 5). */
/* Copies src into dst (size bytes), cutting it if needed; always terminated. */
static void
copy_cut(char *dst, size_t size, const char *src)
{
	size_t n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

static bool
read_pid_file(const char *pgdata, char *port, size_t psize, char *host, size_t hsize)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/postmaster.pid", pgdata);
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		return (false);
	}
	char line[1024];
	int i = 0;
	bool ok = false;
	host[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		i++;
		if (i == 4) {
			copy_cut(port, psize, line);
			ok = line[0] != '\0';
		} else if (i == 5) {
			copy_cut(host, hsize, line);
		} else if (i == 6 && host[0] == '\0') {
			copy_cut(host, hsize, strcmp(line, "*") == 0 ? "localhost" : line);
		}
	}
	fclose(f);
	return (ok);
}

/* The last line of the recovery log that holds needle, from its needle
 * on ("" if none). The log is the server's own (pg_ctl -l); a cluster that
 * logs elsewhere (logging_collector) leaves this empty. */
static void
log_line(const char *pgdata, const char *needle, char *out, size_t size)
{
	out[0] = '\0';
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/coffer-recovery.log", pgdata);
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		return;
	}
	char line[1024];
	while (fgets(line, sizeof(line), f) != NULL) {
		char *at = strstr(line, needle);
		if (at != NULL) {
			at[strcspn(at, "\n")] = '\0';
			copy_cut(out, size, at);
		}
	}
	fclose(f);
}

/* Waits until recovery ends the way the target's action says: promoted
 * (out of recovery), paused (in recovery, replay paused: the server stays
 * up), or stopped (PostgreSQL logs "shutdown at recovery target" and
 * exits). Then reads what was reached. */
static int
watch_recovery(const agent_config *cfg, const agent_physical_restore_request *req, int64_t deadline,
    agent_physical_restore_result *res, coffer_err *err)
{
	const char *pgdata = req->pgdata;
	agent_target_action action = req->target.action;
	char port[32] = "", host[PATH_MAX] = "";
	for (;;) {
		if (req->cancel != NULL && agent_cancel_requested(req->cancel)) {
			return (
			    coffer_err_set(err, COFFER_ECANCELED, "cancelled while recovery ran"));
		}
		if (!read_pid_file(pgdata, port, sizeof(port), host, sizeof(host))) {
			char said[256];
			log_line(pgdata, "shutdown at recovery target", said, sizeof(said));
			if (said[0] != '\0') {
				log_line(pgdata, "recovery stopping", res->stop_line,
				    sizeof(res->stop_line));
				res->reached = true;
				res->state = "stopped";
				if (action == AGENT_ACTION_SHUTDOWN) {
					return (0);
				}
				return (
				    coffer_err_set(err, COFFER_ECHILD,
				        "PostgreSQL shut down at the target of %s instead of pausing",
				        pgdata),
				    coffer_err_hint(err,
				        "pausing needs hot_standby = on; see %s/coffer-recovery.log",
				        pgdata));
			}
			log_line(pgdata, "FATAL:", said, sizeof(said));
			return (coffer_err_set(err, COFFER_ECHILD,
			            "PostgreSQL stopped during recovery of %s%s%s", pgdata,
			            said[0] != '\0' ? ": " : "", said),
			    coffer_err_hint(err,
			        "see %s/coffer-recovery.log (a target beyond the archived WAL, or before "
			        "the backup's end, stops recovery: pick one inside the window "
			        "`coffer-agent list` shows)",
			        pgdata));
		}
		PGconn *conn = NULL;
		coffer_err cerr = { 0 };
		if (agent_pgq_connect(cfg->conninfo, host[0] ? host : NULL, port, "postgres", 5,
		        &conn, &cerr) == 0) {
			PGresult *r = NULL;
			int rc = agent_pgq_row(conn, "checking recovery",
			    "SELECT pg_is_in_recovery()::text, "
			    "CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused()::text "
			    "ELSE 'false' END, "
			    "CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn()::text, '') "
			    "ELSE pg_current_wal_lsn()::text END, "
			    "coalesce(pg_last_xact_replay_timestamp()::text, '')",
			    0, NULL, &r, &cerr);
			bool promoted = rc == 0 && strcmp(PQgetvalue(r, 0, 0), "false") == 0;
			bool paused = rc == 0 && !promoted &&
			    strcmp(PQgetvalue(r, 0, 1), "true") == 0 &&
			    action == AGENT_ACTION_PAUSE;
			if (promoted || paused) {
				snprintf(res->reached_lsn, sizeof(res->reached_lsn), "%s",
				    PQgetvalue(r, 0, 2));
				snprintf(res->reached_time, sizeof(res->reached_time), "%s",
				    PQgetvalue(r, 0, 3));
				PQclear(r);
				PQfinish(conn);
				log_line(pgdata, "recovery stopping", res->stop_line,
				    sizeof(res->stop_line));
				res->state = promoted ? "promoted" : "paused";
				/* Without a target recovery replays all it finds: that
				 * is the target. With one, PostgreSQL says where it
				 * stopped; a paused server has stopped at it. */
				res->reached = req->target.kind == AGENT_TARGET_NONE ||
				    res->stop_line[0] != '\0' || paused;
				return (0);
			}
			if (r != NULL) {
				PQclear(r);
			}
			PQfinish(conn);
		}
		if (coffer_clock_now(NULL) >= deadline) {
			return (coffer_err_set(err, COFFER_ETIMEDOUT,
			            "recovery of %s did not finish within the completion window",
			            pgdata),
			    coffer_err_hint(err,
			        "PostgreSQL is still running; see "
			        "%s/coffer-recovery.log and widen [schedule] "
			        "completion_window",
			        pgdata));
		}
		uv_sleep(POLL_MS);
	}
}

/* The plan: which WAL a restore of m reads, from the repository. */
static void
plan_wal(agent_ctx *ctx, const agent_physical_restore_request *req, const manifests *all,
    const coffer_manifest *m, agent_physical_restore_result *res)
{
	agent_wal_index idx;
	coffer_err e = { 0 };
	if (agent_wal_index_load(ctx, all->ms, all->n, &idx, &e) != 0) {
		coffer_log_warn("cannot list the WAL for the plan", "error=\"%s\"", e.msg);
		return;
	}
	res->seg_size = idx.seg_size;
	res->seg_size_derived = idx.seg_size_derived;
	res->wal_known = agent_wal_plan_for(&idx, m, &req->target, &res->wal, &e) == 0;
	agent_wal_index_free(&idx);
}

int
agent_physical_restore(agent_ctx *ctx, const agent_physical_restore_request *req,
    agent_physical_restore_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	res->state = "not started";
	int64_t t0 = coffer_clock_monotonic_ms();
	/* Every manifest is read only when the target chooses the backup or
	 * the plan needs them (the segment size): one GET per backup. */
	bool by_target = (req->backup == NULL || strcmp(req->backup, "latest") == 0) &&
	    (req->target.kind == AGENT_TARGET_TIME || req->target.kind == AGENT_TARGET_LSN);
	manifests all;
	memset(&all, 0, sizeof(all));
	int rc = by_target || req->dry_run ? manifests_load(ctx, &all, err) : 0;
	coffer_manifest *m = NULL;
	if (rc == 0) {
		rc = choose_backup(ctx, req->backup, &req->target, &all, &m, err);
	}
	if (rc != 0) {
		manifests_free(&all);
		return (rc);
	}
	snprintf(res->backup_id, sizeof(res->backup_id), "%s", m->backup_id);
	res->files = m->nfiles;
	res->bytes = m->plaintext_bytes;
	res->stored_bytes = m->stored_bytes;
	res->backup_ms = m->finished_at - m->started_at;
	if (req->target.kind == AGENT_TARGET_XID || req->target.kind == AGENT_TARGET_NAME) {
		snprintf(res->note, sizeof(res->note),
		    "PostgreSQL decides where the %s is; backup %s is the newest chosen, and if "
		    "the target lies before its end recovery stops with an error: pick an older "
		    "one with --backup",
		    req->target.kind == AGENT_TARGET_XID ? "transaction" : "restore point",
		    m->backup_id);
	}
	if (req->dry_run) {
		plan_wal(ctx, req, &all, m, res);
	}
	manifests_free(&all);
	if (req->dry_run) {
		coffer_manifest_free(m);
		res->duration_ms = coffer_clock_monotonic_ms() - t0;
		return (0);
	}
	struct stat st;
	char text[PATH_MAX * 2 + 1024];
	size_t text_len = 0;
	rc = check_target(req->pgdata, &st, err);
	if (rc == 0) {
		rc = recovery_text(req, m, ctx->repo_name, text, sizeof(text), &text_len, err);
	}
	/* Run as root: everything is written by the directory's owner, who
	 * runs PostgreSQL (write_target_as). */
	bool drop = geteuid() == 0;
	if (rc == 0 && drop) {
		rc = write_target_as(ctx, st.st_uid, st.st_gid, req, m, text, text_len, err);
	} else if (rc == 0) {
		rc = write_target(ctx, -1, req, m, text, text_len, err);
	}
	if (rc == 0) {
		coffer_log_info("data directory restored", "backup=%s pgdata=%s files=%zu",
		    m->backup_id, req->pgdata, m->nfiles);
	} else {
		coffer_err_wrap(err, "restoring backup %s into %s", m->backup_id, req->pgdata);
	}
	coffer_manifest_free(m);
	if (rc == 0 && req->start) {
		int64_t deadline = coffer_clock_now(NULL) + ctx->cfg->completion_window_ms;
		rc = run_pg_ctl(ctx->cfg, req->pgdata, drop, st.st_uid, st.st_gid,
		    ctx->cfg->completion_window_ms, err);
		if (rc != 0 && req->target.action == AGENT_ACTION_SHUTDOWN) {
			/* pg_ctl -w fails when the server is gone before it was
			 * ready: reaching the target quickly and shutting down. */
			char said[128];
			log_line(req->pgdata, "shutdown at recovery target", said, sizeof(said));
			if (said[0] != '\0') {
				coffer_err_clear(err);
				rc = 0;
			}
		}
		if (rc == 0) {
			res->started = true;
			rc = watch_recovery(ctx->cfg, req, deadline, res, err);
		}
	}
	res->duration_ms = coffer_clock_monotonic_ms() - t0;
	return (rc);
}

/* The outcome goes to the outbox when there is one, so the coordinator
 * knows of every restore, successful or not, with its target and whether
 * it was reached. */
static void
record_outcome(agent_ctx *ctx, const agent_physical_restore_request *req,
    const agent_physical_restore_result *res, int rc, const coffer_err *err)
{
	if (ctx->outbox == NULL || res->backup_id[0] == '\0' || req->dry_run) {
		return;
	}
	char target[96];
	agent_target_describe(&req->target, target, sizeof(target));
	char detail[COFFER_ERR_MSG_MAX + 400];
	if (rc != 0) {
		snprintf(detail, sizeof(detail), "physical; target %s %s; %s",
		    agent_target_kind_name(req->target.kind), target, err->msg);
	} else if (res->started) {
		snprintf(detail, sizeof(detail),
		    "physical; target %s %s, action %s; %s, %s at lsn %s, last commit %s%s%s",
		    agent_target_kind_name(req->target.kind), target,
		    agent_target_action_name(req->target.action),
		    res->reached ? "reached" : "not reached", res->state,
		    res->reached_lsn[0] ? res->reached_lsn : "unknown",
		    res->reached_time[0] ? res->reached_time : "none",
		    res->stop_line[0] ? "; " : "", res->stop_line);
	} else {
		snprintf(detail, sizeof(detail),
		    "physical; target %s %s; %" PRIu64 " files laid out, not started",
		    agent_target_kind_name(req->target.kind), target, res->files);
	}
	Coffer__V1__RestoreCompleted rcm = COFFER__V1__RESTORE_COMPLETED__INIT;
	rcm.backup_id = (char *)res->backup_id;
	rcm.target = (char *)req->pgdata;
	rcm.ok = rc == 0;
	rcm.detail = detail;
	rcm.duration_ms = res->duration_ms;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_RESTORE_COMPLETED;
	ev.restore_completed = &rcm;
	coffer_err eerr = { 0 };
	if (agent_events_emit(
	        ctx->outbox, ctx->cfg->service, coffer_clock_now(NULL), &ev, NULL, &eerr) != 0) {
		coffer_log_error("restore outcome not recorded", "error=\"%s\"", eerr.msg);
	}
}

/* ---- the command ---- */

static agent_cancel *running_cancel;

static void
on_stop_signal(int sig)
{
	(void)sig;
	if (running_cancel != NULL) {
		agent_cancel_trigger(running_cancel);
	}
}

/* Seconds to read bytes at the rate this backup was written (its own
 * duration): the only measure the agent has; -1 when there is none. */
static double
estimate_seconds(const agent_physical_restore_result *res, uint64_t bytes)
{
	if (res->backup_ms <= 0 || res->stored_bytes == 0) {
		return (-1);
	}
	double rate = (double)res->stored_bytes / ((double)res->backup_ms / 1000.0);
	return ((double)bytes / rate);
}

static cJSON *
target_json(const agent_target *t)
{
	cJSON *o = cJSON_CreateObject();
	char v[96];
	agent_target_describe(t, v, sizeof(v));
	cJSON_AddStringToObject(o, "kind", agent_target_kind_name(t->kind));
	cJSON_AddStringToObject(o, "value", v);
	if (t->inclusive >= 0) {
		cJSON_AddBoolToObject(o, "inclusive", t->inclusive != 0);
	} else {
		cJSON_AddNullToObject(o, "inclusive");
	}
	cJSON_AddStringToObject(o, "action", agent_target_action_name(t->action));
	return (o);
}

static void
print_plan(const agent_physical_restore_cmd *c, const agent_physical_restore_request *req,
    const agent_physical_restore_result *res)
{
	uint64_t bytes = res->stored_bytes + res->wal.stored_bytes;
	double secs = estimate_seconds(res, bytes);
	char target[96];
	agent_target_describe(&req->target, target, sizeof(target));
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "kind", "physical");
		cJSON_AddBoolToObject(o, "dry_run", true);
		cJSON *backups = cJSON_AddArrayToObject(o, "backups");
		cJSON *b = cJSON_CreateObject();
		cJSON_AddStringToObject(b, "id", res->backup_id);
		cJSON_AddNumberToObject(b, "stored_bytes", (double)res->stored_bytes);
		cJSON_AddNumberToObject(b, "plaintext_bytes", (double)res->bytes);
		cJSON_AddNumberToObject(b, "files", (double)res->files);
		cJSON_AddItemToArray(backups, b);
		cJSON_AddItemToObject(o, "target", target_json(&req->target));
		cJSON *w = cJSON_AddObjectToObject(o, "wal");
		cJSON_AddStringToObject(w, "first", res->wal.first);
		cJSON_AddStringToObject(w, "last", res->wal.last);
		cJSON_AddNumberToObject(w, "count", (double)res->wal.count);
		cJSON_AddNumberToObject(w, "stored_bytes", (double)res->wal.stored_bytes);
		cJSON_AddBoolToObject(w, "reaches_target", res->wal.reaches);
		cJSON_AddStringToObject(w, "basis", res->wal.basis);
		cJSON_AddNumberToObject(w, "segment_size", (double)res->seg_size);
		cJSON_AddBoolToObject(w, "segment_size_derived", res->seg_size_derived);
		cJSON_AddNumberToObject(o, "bytes_to_read", (double)bytes);
		if (secs >= 0) {
			cJSON_AddNumberToObject(o, "estimated_seconds", secs);
		} else {
			cJSON_AddNullToObject(o, "estimated_seconds");
		}
		cJSON_AddStringToObject(o, "estimate_basis",
		    "the rate this backup was written at (the agent knows no drill results; "
		    "`coffer drill list` has the service's measured restore times)");
		if (res->note[0] != '\0') {
			cJSON_AddStringToObject(o, "note", res->note);
		}
		char *text = cJSON_PrintUnformatted(o);
		printf("%s\n", text != NULL ? text : "{}");
		free(text);
		cJSON_Delete(o);
		return;
	}
	char sb[COFFER_FMT_BYTES_SIZE], wb[COFFER_FMT_BYTES_SIZE], tb[COFFER_FMT_BYTES_SIZE];
	coffer_fmt_bytes(sb, (double)res->stored_bytes);
	coffer_fmt_bytes(wb, (double)res->wal.stored_bytes);
	coffer_fmt_bytes(tb, (double)bytes);
	printf("dry run: nothing written\n");
	printf("  backup   %s (%s stored, %" PRIu64 " files)\n", res->backup_id, sb, res->files);
	printf("  target   %s %s, inclusive %s, then %s\n",
	    agent_target_kind_name(req->target.kind), target,
	    req->target.inclusive < 0   ? "default (true)"
	        : req->target.inclusive ? "true"
	                                : "false",
	    agent_target_action_name(req->target.action));
	if (res->wal.count > 0) {
		printf("  wal      %s .. %s, %" PRIu64 " segments, %s stored (%s)\n",
		    res->wal.first, res->wal.last, res->wal.count, wb, res->wal.basis);
	} else {
		printf("  wal      none found (%s)\n", res->wal.basis);
	}
	if (!res->wal.reaches) {
		printf("  warning  the archived WAL does not reach the target: recovery would stop "
		       "short with an error\n");
	}
	printf("  segments of %llu bytes (%s)\n", (unsigned long long)res->seg_size,
	    res->seg_size_derived ? "from the backup history files"
	                          : "assumed: no backup history file says");
	if (secs >= 0) {
		printf("  reads    %s, about %.0f s at the rate this backup was written "
		       "(the agent knows no drill results)\n",
		    tb, secs);
	} else {
		printf("  reads    %s\n", tb);
	}
	if (res->note[0] != '\0') {
		printf("  note     %s\n", res->note);
	}
}

static void
print_result(const agent_physical_restore_cmd *c, const agent_physical_restore_request *req,
    const agent_physical_restore_result *res)
{
	char target[96];
	agent_target_describe(&req->target, target, sizeof(target));
	if (c->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "kind", "physical");
		cJSON_AddStringToObject(o, "backup_id", res->backup_id);
		cJSON_AddStringToObject(o, "pgdata", c->pgdata);
		cJSON_AddItemToObject(o, "target", target_json(&req->target));
		cJSON_AddStringToObject(o, "state", res->state);
		if (res->started) {
			cJSON_AddBoolToObject(o, "reached", res->reached);
		} else {
			cJSON_AddNullToObject(o, "reached");
		}
		cJSON_AddStringToObject(o, "reached_lsn", res->reached_lsn);
		cJSON_AddStringToObject(o, "last_commit", res->reached_time);
		cJSON_AddStringToObject(o, "stop", res->stop_line);
		cJSON_AddNumberToObject(o, "files", (double)res->files);
		cJSON_AddNumberToObject(o, "plaintext_bytes", (double)res->bytes);
		cJSON_AddNumberToObject(o, "duration_ms", (double)res->duration_ms);
		cJSON *checks = cJSON_AddObjectToObject(o, "checks");
		cJSON_AddBoolToObject(checks, "manifest_signature", true);
		cJSON_AddNumberToObject(checks, "files_sha256", (double)res->files);
		cJSON_AddBoolToObject(checks, "stored_digest", true);
		cJSON_AddBoolToObject(checks, "recovered", res->started);
		if (res->note[0] != '\0') {
			cJSON_AddStringToObject(o, "note", res->note);
		}
		char *text = cJSON_PrintUnformatted(o);
		printf("%s\n", text != NULL ? text : "{}");
		free(text);
		cJSON_Delete(o);
		return;
	}
	if (!res->started) {
		printf("restored backup %s into %s (%" PRIu64 " files, every one checked against "
		       "the manifest); start PostgreSQL on it to recover to %s %s, then %s\n",
		    res->backup_id, c->pgdata, res->files, agent_target_kind_name(req->target.kind),
		    target, agent_target_action_name(req->target.action));
		return;
	}
	printf("restored backup %s into %s (%" PRIu64 " files) and recovered to %s %s: %s; "
	       "lsn %s, last replayed commit %s (%lld ms)\n",
	    res->backup_id, c->pgdata, res->files, agent_target_kind_name(req->target.kind), target,
	    res->reached ? "target reached" : "target NOT confirmed reached",
	    res->reached_lsn[0] ? res->reached_lsn : "unknown",
	    res->reached_time[0] ? res->reached_time : "none", (long long)res->duration_ms);
	if (res->stop_line[0] != '\0') {
		printf("  PostgreSQL: %s\n", res->stop_line);
	}
	if (strcmp(res->state, "paused") == 0) {
		printf("  the server is running, paused in recovery (read-only): inspect it, then "
		       "SELECT pg_wal_replay_resume(); to promote it, or pg_ctl -D %s stop\n",
		    c->pgdata);
	} else if (strcmp(res->state, "stopped") == 0) {
		printf(
		    "  the server shut down at the target: to open it, set "
		    "recovery_target_action = 'promote' in %s/postgresql.auto.conf and start it\n",
		    c->pgdata);
	}
	if (res->note[0] != '\0') {
		printf("  note: %s\n", res->note);
	}
}

int
agent_cmd_restore_physical(const agent_physical_restore_cmd *c)
{
	coffer_err err = { 0 };
	for (size_t i = 0; i < c->n_tablespace_map; i++) {
		const char *map = c->tablespace_map[i];
		const char *eq = strchr(map, '=');
		size_t key = eq != NULL ? (size_t)(eq - map) : 0;
		bool oid = key > 0 && strspn(map, "0123456789") == key;
		if ((map[0] != '/' && !oid) || eq == NULL || eq[1] != '/') {
			coffer_err_set(&err, COFFER_EINVAL,
			    "--tablespace-map '%s' is not OLD=NEW or OID=NEW with "
			    "NEW an absolute path",
			    map);
			coffer_err_hint(&err,
			    "e.g. --tablespace-map /srv/ts1=/restore/ts1 or "
			    "--tablespace-map 16390=/restore/ts1");
			coffer_err_print("coffer-agent restore", &err);
			return (2);
		}
	}
	agent_target target;
	if (agent_target_parse(&c->target, &target, &err) != 0) {
		coffer_err_print("coffer-agent restore", &err);
		return (2);
	}
	if (c->pgdata == NULL && !c->dry_run) {
		coffer_err_set(
		    &err, COFFER_EINVAL, "--pgdata DIR is required for a physical restore");
		coffer_err_hint(&err, "name a new or empty directory for the restored cluster");
		coffer_err_print("coffer-agent restore", &err);
		return (2);
	}
	if (c->dry_run && c->start) {
		coffer_err_set(&err, COFFER_EINVAL, "--dry-run and --start do not go together");
		coffer_err_hint(&err, "drop --start to see the plan, or --dry-run to restore");
		coffer_err_print("coffer-agent restore", &err);
		return (2);
	}
	agent_ctx *ctx = NULL;
	/* A dry run writes nothing, not even an event. */
	int rv = agent_ctx_open(c->config, c->repo,
	    AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO |
	        (c->dry_run ? 0 : AGENT_NEED_OUTBOX),
	    &ctx, &err);
	if (rv != 0) {
		coffer_err_print("coffer-agent restore", &err);
		return (coffer_err_exit_status(rv));
	}
	coffer_log_init("coffer-agent", ctx->cfg->log_level);
	agent_cancel *cancel = NULL;
	rv = agent_cancel_new(&cancel, &err);
	if (rv == 0) {
		running_cancel = cancel;
		signal(SIGINT, on_stop_signal);
		signal(SIGTERM, on_stop_signal);
		agent_physical_restore_request req = {
			.backup = c->backup,
			.target = target,
			.pgdata = c->pgdata,
			.config_path = c->config,
			.port = c->port,
			.tablespace_map = c->tablespace_map,
			.n_tablespace_map = c->n_tablespace_map,
			.start = c->start,
			.dry_run = c->dry_run,
			.progress = coffer_progress_wanted(),
			.cancel = cancel,
		};
		agent_physical_restore_result res;
		rv = agent_physical_restore(ctx, &req, &res, &err);
		record_outcome(ctx, &req, &res, rv, &err);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		running_cancel = NULL;
		if (rv == 0 && c->dry_run) {
			print_plan(c, &req, &res);
		} else if (rv == 0) {
			print_result(c, &req, &res);
		}
	}
	agent_cancel_free(cancel);
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent restore", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
