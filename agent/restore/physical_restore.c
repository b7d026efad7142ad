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

#include "agent/backup/physical.h"
#include "agent/outbox/events.h"
#include "agent/pg/pgq.h"
#include "agent/restore/confined.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/stream/digest.h"
#include "common/stream/hop.h"
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

typedef struct pick {
	int64_t target; /* -1: any */
	char id[COFFER_MANIFEST_ID_SIZE];
} pick;

static int64_t
id_time(const char *id)
{
	char text[32];
	snprintf(text, sizeof(text), "%.4s-%.2s-%.2sT%.2s:%.2s:%.2sZ", id, id + 4, id + 6, id + 9,
	    id + 11, id + 13);
	int64_t t = 0;
	return (coffer_time_parse(text, &t) == 0 ? t : INT64_MAX);
}

static bool
pick_keep(const char *id, void *arg)
{
	const pick *p = arg;
	coffer_manifest_kind kind;
	if (coffer_manifest_id_check(id, &kind, NULL) != 0 || kind != COFFER_MANIFEST_PHYSICAL) {
		return (false);
	}
	return (p->target < 0 || id_time(id) <= p->target);
}

static int
choose_backup(
    agent_ctx *ctx, const char *backup, int64_t target, coffer_manifest **out, coffer_err *err)
{
	*out = NULL;
	const char *id = backup;
	pick p = { .target = target };
	if (backup == NULL || strcmp(backup, "latest") == 0) {
		int rc = agent_stored_latest(ctx, pick_keep, &p, p.id, err);
		if (rc != 0) {
			return (rc);
		}
		if (p.id[0] == '\0') {
			char when[40] = "";
			if (target >= 0) {
				coffer_time_format(when, sizeof(when), target);
			}
			return (coffer_err_set(err, COFFER_ENOENT,
			            "no physical backup of service %s %s%s in repository %s",
			            ctx->cfg->service, target >= 0 ? "started before " : "", when,
			            ctx->repo_name),
			    coffer_err_hint(
			        err, "take one with `coffer-agent backup --kind physical`"));
		}
		id = p.id;
	}
	coffer_manifest *m = NULL;
	int rc = agent_stored_manifest(ctx, id, &m, err);
	if (rc != 0) {
		return (rc);
	}
	if (m->kind != COFFER_MANIFEST_PHYSICAL) {
		coffer_manifest_free(m);
		return (coffer_err_set(err, COFFER_EINVAL, "backup %s is a logical backup", id),
		    coffer_err_hint(err,
		        "restore it with --backup %s --target-db NAME, or pick a "
		        "physical backup",
		        id));
	}
	if (target >= 0 && m->finished_at > target) {
		char fin[40];
		coffer_time_format(fin, sizeof(fin), m->finished_at);
		coffer_manifest_free(m);
		return (coffer_err_set(err, COFFER_EINVAL,
		            "backup %s finished at %s, after the target time", id, fin),
		    coffer_err_hint(
		        err, "pick a later target time or an older backup with --backup"));
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
		rc = agent_stored_read_flags(ctx, m, unpacker, AGENT_STORED_FILES_PROVE, err);
	}
	coffer_filter_free(unpacker);
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
	int prc = sink == NULL
	    ? perr.code
	    : agent_stored_read_flags(ctx, m, sink, AGENT_STORED_FILES_PROVE, &perr);
	coffer_filter_free(sink);
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
recovery_text(const agent_physical_restore_request *req, const coffer_manifest *m, int64_t target,
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
	char tt[40] = "";
	if (target >= 0) {
		/* PostgreSQL's recovery_target_time check refuses "T...Z";
		 * "2026-11-24 17:13:08.905+00" is what it takes. */
		coffer_time_format(tt, sizeof(tt), target);
		char *t = strchr(tt, 'T'), *z = strchr(tt, 'Z');
		if (t != NULL) {
			*t = ' ';
		}
		if (z != NULL && (size_t)(z - tt) + 4 <= sizeof(tt)) {
			memcpy(z, "+00", 4);
		}
	}
	if (req->port != NULL && !conf_safe(req->port)) {
		return (coffer_err_set(err, COFFER_EINVAL, "--port '%s' is not a port", req->port),
		    coffer_err_hint(err, "pass a number"));
	}
	int len = snprintf(text, size,
	    "\n# Written by coffer-agent restore --physical from backup %s.\n"
	    "restore_command = '%s wal-fetch -c %s%s --system-identifier %" PRIu64 " %%f %%p'\n"
	    "%s%s%s"
	    "recovery_target_action = 'promote'\n"
	    "# A restored copy must not archive into its source's WAL; enable on purpose.\n"
	    "archive_mode = 'off'\n"
	    "%s%s%s",
	    m->backup_id, exe, conf, repo_opt, m->system_identifier,
	    target >= 0 ? "recovery_target_time = '" : "", tt, target >= 0 ? "'\n" : "",
	    req->port != NULL ? "port = " : "", req->port != NULL ? req->port : "",
	    req->port != NULL ? "\n" : "");
	if (len < 0 || (size_t)len >= size) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "the recovery settings are too long"),
		    coffer_err_hint(err, "shorten the agent's or its config's path"));
	}
	*len_out = (size_t)len;
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

static int
watch_recovery(const agent_config *cfg, const char *pgdata, int64_t deadline, agent_cancel *cancel,
    agent_physical_restore_result *res, coffer_err *err)
{
	char port[32] = "", host[PATH_MAX] = "";
	for (;;) {
		if (cancel != NULL && agent_cancel_requested(cancel)) {
			return (
			    coffer_err_set(err, COFFER_ECANCELED, "cancelled while recovery ran"));
		}
		if (!read_pid_file(pgdata, port, sizeof(port), host, sizeof(host))) {
			return (coffer_err_set(err, COFFER_ECHILD,
			            "PostgreSQL stopped during recovery of %s", pgdata),
			    coffer_err_hint(err,
			        "see %s/coffer-recovery.log (a target time beyond "
			        "the archived WAL stops recovery)",
			        pgdata));
		}
		PGconn *conn = NULL;
		coffer_err cerr = { 0 };
		if (agent_pgq_connect(cfg->conninfo, host[0] ? host : NULL, port, "postgres", 5,
		        &conn, &cerr) == 0) {
			PGresult *r = NULL;
			int rc = agent_pgq_row(conn, "checking recovery",
			    "SELECT pg_is_in_recovery()::text, pg_current_wal_lsn()::text, "
			    "coalesce(pg_last_xact_replay_timestamp()::text, '') "
			    "WHERE NOT pg_is_in_recovery() UNION ALL "
			    "SELECT 'true', '', '' WHERE pg_is_in_recovery()",
			    0, NULL, &r, &cerr);
			if (rc == 0 && strcmp(PQgetvalue(r, 0, 0), "false") == 0) {
				snprintf(res->reached_lsn, sizeof(res->reached_lsn), "%s",
				    PQgetvalue(r, 0, 1));
				snprintf(res->reached_time, sizeof(res->reached_time), "%s",
				    PQgetvalue(r, 0, 2));
				PQclear(r);
				PQfinish(conn);
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

int
agent_physical_restore(agent_ctx *ctx, const agent_physical_restore_request *req,
    agent_physical_restore_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	int64_t t0 = coffer_clock_monotonic_ms();
	int64_t target = -1;
	if (req->target_time != NULL && coffer_time_parse(req->target_time, &target) != 0) {
		return (coffer_err_set(err, COFFER_EINVAL, "--target-time '%s' is not a time",
		            req->target_time),
		    coffer_err_hint(err,
		        "write it like 2026-11-24T17:05:00Z or "
		        "2026-11-24 18:05:00+01"));
	}
	coffer_manifest *m = NULL;
	int rc = choose_backup(ctx, req->backup, target, &m, err);
	if (rc != 0) {
		return (rc);
	}
	snprintf(res->backup_id, sizeof(res->backup_id), "%s", m->backup_id);
	struct stat st;
	char text[PATH_MAX * 2 + 1024];
	size_t text_len = 0;
	rc = check_target(req->pgdata, &st, err);
	if (rc == 0) {
		rc = recovery_text(
		    req, m, target, ctx->repo_name, text, sizeof(text), &text_len, err);
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
		res->files = m->nfiles;
		res->bytes = m->plaintext_bytes;
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
		if (rc == 0) {
			res->started = true;
			rc = watch_recovery(ctx->cfg, req->pgdata, deadline, req->cancel, res, err);
		}
	}
	res->duration_ms = coffer_clock_monotonic_ms() - t0;
	return (rc);
}

/* The outcome goes to the outbox when there is one, so the coordinator
 * knows of every restore, successful or not. */
static void
record_outcome(agent_ctx *ctx, const agent_physical_restore_request *req,
    const agent_physical_restore_result *res, int rc, const coffer_err *err)
{
	if (ctx->outbox == NULL || res->backup_id[0] == '\0') {
		return;
	}
	char detail[COFFER_ERR_MSG_MAX + 160];
	if (rc != 0) {
		snprintf(detail, sizeof(detail), "%s", err->msg);
	} else if (res->started) {
		snprintf(detail, sizeof(detail), "physical; recovered to lsn %s, last commit %s",
		    res->reached_lsn, res->reached_time[0] ? res->reached_time : "none");
	} else {
		snprintf(detail, sizeof(detail),
		    "physical; %" PRIu64 " files laid out, not started", res->files);
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

int
agent_cmd_restore_physical(const char *config, const char *repo, const char *backup,
    const char *target_time, const char *pgdata, const char *port,
    const char *const *tablespace_map, size_t n_tablespace_map, bool start)
{
	coffer_err err = { 0 };
	for (size_t i = 0; i < n_tablespace_map; i++) {
		const char *eq = strchr(tablespace_map[i], '=');
		size_t key = eq != NULL ? (size_t)(eq - tablespace_map[i]) : 0;
		bool oid = key > 0 && strspn(tablespace_map[i], "0123456789") == key;
		if ((tablespace_map[i][0] != '/' && !oid) || eq == NULL || eq[1] != '/') {
			coffer_err_set(&err, COFFER_EINVAL,
			    "--tablespace-map '%s' is not OLD=NEW or OID=NEW with "
			    "NEW an absolute path",
			    tablespace_map[i]);
			coffer_err_hint(&err,
			    "e.g. --tablespace-map /srv/ts1=/restore/ts1 or "
			    "--tablespace-map 16390=/restore/ts1");
			coffer_err_print("coffer-agent restore", &err);
			return (2);
		}
	}
	if (pgdata == NULL) {
		coffer_err_set(
		    &err, COFFER_EINVAL, "--pgdata DIR is required for a physical restore");
		coffer_err_hint(&err, "name a new or empty directory for the restored cluster");
		coffer_err_print("coffer-agent restore", &err);
		return (2);
	}
	agent_ctx *ctx = NULL;
	int rv = agent_ctx_open(config, repo,
	    AGENT_NEED_KEYRING | AGENT_NEED_VERIFY | AGENT_NEED_REPO | AGENT_NEED_OUTBOX, &ctx,
	    &err);
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
			.backup = backup,
			.target_time = target_time,
			.pgdata = pgdata,
			.config_path = config,
			.port = port,
			.tablespace_map = tablespace_map,
			.n_tablespace_map = n_tablespace_map,
			.start = start,
			.cancel = cancel,
		};
		agent_physical_restore_result res;
		rv = agent_physical_restore(ctx, &req, &res, &err);
		record_outcome(ctx, &req, &res, rv, &err);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		running_cancel = NULL;
		if (rv == 0 && res.started) {
			printf("restored backup %s into %s (%" PRIu64
			       " files) and recovered: reached "
			       "lsn %s, last replayed commit %s (%lld ms)\n",
			    res.backup_id, pgdata, res.files, res.reached_lsn,
			    res.reached_time[0] ? res.reached_time : "none",
			    (long long)res.duration_ms);
		} else if (rv == 0) {
			printf("restored backup %s into %s (%" PRIu64
			       " files); start PostgreSQL on it "
			       "to recover%s%s\n",
			    res.backup_id, pgdata, res.files, target_time ? " to " : "",
			    target_time ? target_time : "");
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
