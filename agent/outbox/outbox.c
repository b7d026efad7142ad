/*
 * Outbox: segment files, torn-tail recovery, acks and compaction. See
 * agent/outbox/outbox.h for the promises and docs/FORMAT.md for the bytes.
 *
 * Every public call takes the lock, then ob_refresh() brings the handle's
 * picture of the directory up to date: it re-reads the state file, lists the
 * segments, and checks only the bytes it has not checked before (new
 * segments and the growth of the last one). The first refresh, at open,
 * therefore reads and verifies the whole outbox once.
 */
#include "agent/outbox/outbox.h"

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
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/outbox/statedir.h"
#include "common/base/durable.h"
#include "common/base/log.h"

#define OB_VERSION      1
#define OB_SEG_MAGIC    "CFOUTBOX"
#define OB_STATE_MAGIC  "CFOBSTAT"
#define OB_STATE_NAME   "state"
#define OB_STATE_TMP    "state.tmp"
#define OB_LOCK_NAME    "lock"
#define OB_STATE_SIZE   40
#define OB_REC_CHECK    16 /* truncated SHA-256 in a record header */
#define OB_HDR_CHECK    8  /* truncated SHA-256 in segment and state headers */
#define OB_IO_CHUNK     65536
#define OB_SEG_DIGITS   20
#define OB_SEG_SUFFIX   ".seg"
#define OB_TMP_SUFFIX   ".tmp"
#define OB_MIN_SEGMENTS 256

static const uint8_t ob_rec_magic[4] = { 0xc0, 0xfe, 0x0b, 0x01 };

/* What the handle knows about one segment file, up to `size`, the end of its
 * last verified record. Bytes past `size` have not been checked yet. */
struct ob_seg {
	uint64_t first_seq; /* from the file name and header */
	uint64_t first_rec; /* seq of its first record (0: none) */
	uint64_t last_seq;  /* seq of its last record (0: none) */
	uint64_t nrec;
	uint64_t bytes; /* payload bytes */
	off_t size;     /* 0: header not checked yet */
};

struct ob_hdr {
	uint32_t len;
	uint64_t seq;
	uint8_t check[OB_REC_CHECK];
};

struct agent_outbox {
	char *dir;
	agent_outbox_limits lim;
	int dir_fd;
	int lock_fd;
	int tail_fd;         /* the last segment, open for writing */
	uint64_t tail_first; /* which segment tail_fd is (0: none) */
	struct ob_seg *segs;
	struct ob_seg *segs_tmp;
	uint64_t *names;
	size_t nsegs;
	size_t max_segs;
	uint64_t acked;
	uint64_t next_floor; /* next seq as of the last state write */
	uint64_t next_seq;
	uint8_t *rec;  /* one record: header + max_record */
	uint8_t *io;   /* streaming verification */
	uint8_t *scan; /* searching past a bad record */
	EVP_MD_CTX *md;
	/* Where the last foreach stopped, so the next one need not walk the
	 * segment's headers again from the start. */
	bool cur_valid;
	uint64_t cur_seg;
	off_t cur_off;
	uint64_t cur_after;
	/* The acked/unacked split of the one segment that straddles acked_seq. */
	bool split_valid;
	uint64_t split_seg;
	uint64_t split_acked;
	uint64_t split_nrec;
	uint64_t split_count;
	uint64_t split_bytes;
	bool broken;
};

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static uint32_t
get_be32(const uint8_t *p)
{
	return (((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
	    (uint32_t)p[3]);
}

static uint64_t
get_be64(const uint8_t *p)
{
	return (((uint64_t)get_be32(p) << 32) | get_be32(p + 4));
}

static const char *
ob_path(const agent_outbox *ob, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", ob->dir, name);
	return (buf);
}

static void
seg_name(uint64_t first_seq, char *buf, size_t size)
{
	snprintf(buf, size, "%0*" PRIu64 OB_SEG_SUFFIX, OB_SEG_DIGITS, first_seq);
}

static int seg_err(agent_outbox *ob, coffer_err *err, int code, uint64_t first_seq, const char *fmt,
    ...) __attribute__((format(printf, 5, 6)));

/* "outbox segment <path> <what>": every complaint about a segment names it. */
static int
seg_err(agent_outbox *ob, coffer_err *err, int code, uint64_t first_seq, const char *fmt, ...)
{
	char name[64];
	char path[PATH_MAX];
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	seg_name(first_seq, name, sizeof(name));
	return (coffer_err_set(
	    err, code, "outbox segment %s %s", ob_path(ob, name, path, sizeof(path)), what));
}

static int
md_fail(coffer_err *err)
{
	return (coffer_err_openssl(err, COFFER_EINTERNAL, "cannot compute sha-256 for the outbox"));
}

/* SHA-256 of a || b, truncated to outlen bytes. */
static int
ob_digest(agent_outbox *ob, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
    uint8_t *out, size_t outlen, coffer_err *err)
{
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_DigestInit_ex(ob->md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ob->md, a, alen) != 1 ||
	    (blen > 0 && EVP_DigestUpdate(ob->md, b, blen) != 1) ||
	    EVP_DigestFinal_ex(ob->md, full, &n) != 1) {
		return (md_fail(err));
	}
	memcpy(out, full, outlen);
	return (0);
}

/* pread until n bytes or end of file; returns bytes read or -1 (errno). */
static ssize_t
read_at(int fd, void *buf, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, off + (off_t)got);
		if (r < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (-1);
		}
		if (r == 0) {
			break;
		}
		got += (size_t)r;
	}
	return ((ssize_t)got);
}

static int
write_at(int fd, const void *buf, size_t n, off_t off)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = pwrite(fd, (const uint8_t *)buf + done, n - done, off + (off_t)done);
		if (w < 0) {
			if (errno == EINTR) {
				continue;
			}
			return (-1);
		}
		done += (size_t)w;
	}
	return (0);
}

static int
ob_lock(agent_outbox *ob, coffer_err *err)
{
	if (ob->broken) {
		coffer_err_set(err, COFFER_EIO,
		    "outbox %s is unusable after a failed write could not be undone", ob->dir);
		return (coffer_err_hint(err, "restart the process; the outbox recovers at open"));
	}
	while (flock(ob->lock_fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			char path[PATH_MAX];
			return (coffer_err_errno(
			    err, errno, "lock", ob_path(ob, OB_LOCK_NAME, path, sizeof(path))));
		}
	}
	return (0);
}

static void
ob_unlock(agent_outbox *ob)
{
	(void)flock(ob->lock_fd, LOCK_UN);
}

static void
corrupt_hint(agent_outbox *ob, coffer_err *err)
{
	coffer_err_hint(err,
	    "the file changed after it was saved (disk or file system fault); "
	    "stop coffer-agent, keep a copy of %s and repair it by hand, never delete it: "
	    "event sequence numbers continue from it",
	    ob->dir);
}

/* ---- state file ---- */

static int
state_read(agent_outbox *ob, coffer_err *err)
{
	char path[PATH_MAX];
	ob_path(ob, OB_STATE_NAME, path, sizeof(path));
	int fd = openat(ob->dir_fd, OB_STATE_NAME, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			/* A fresh outbox, or one never acked: nothing to forget. */
			return (0);
		}
		return (coffer_err_errno(err, errno, "open", path));
	}
	uint8_t buf[OB_STATE_SIZE + 1];
	ssize_t n = read_at(fd, buf, sizeof(buf), 0);
	int saved = errno;
	close(fd);
	if (n < 0) {
		return (coffer_err_errno(err, saved, "read", path));
	}
	if (n != OB_STATE_SIZE || memcmp(buf, OB_STATE_MAGIC, 8) != 0) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "outbox state file %s is not a state file "
		    "(%zd bytes)",
		    path, n);
		corrupt_hint(ob, err);
		return (COFFER_ECORRUPT);
	}
	if (get_be32(buf + 8) != OB_VERSION) {
		coffer_err_set(err, COFFER_EVERSION,
		    "outbox state file %s has format version %" PRIu32 ", this agent knows %d",
		    path, get_be32(buf + 8), OB_VERSION);
		return (
		    coffer_err_hint(err, "run the coffer-agent version that wrote it, or newer"));
	}
	uint8_t check[OB_HDR_CHECK];
	int rc = ob_digest(ob, buf, 32, NULL, 0, check, sizeof(check), err);
	if (rc != 0) {
		return (rc);
	}
	if (memcmp(check, buf + 32, sizeof(check)) != 0) {
		coffer_err_set(
		    err, COFFER_ECORRUPT, "outbox state file %s fails its checksum", path);
		corrupt_hint(ob, err);
		return (COFFER_ECORRUPT);
	}
	uint64_t acked = get_be64(buf + 16);
	if (acked < ob->acked) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "outbox state file %s went back from acked seq %" PRIu64 " to %" PRIu64, path,
		    ob->acked, acked);
		corrupt_hint(ob, err);
		return (COFFER_ECORRUPT);
	}
	ob->acked = acked;
	ob->next_floor = get_be64(buf + 24);
	return (0);
}

/* Replaces the state file atomically: a crash leaves the old or the new one. */
static int
state_write(agent_outbox *ob, uint64_t acked, uint64_t next, coffer_err *err)
{
	uint8_t buf[OB_STATE_SIZE];
	memcpy(buf, OB_STATE_MAGIC, 8);
	put_be32(buf + 8, OB_VERSION);
	put_be32(buf + 12, 0);
	put_be64(buf + 16, acked);
	put_be64(buf + 24, next);
	int rc = ob_digest(ob, buf, 32, NULL, 0, buf + 32, OB_HDR_CHECK, err);
	if (rc != 0) {
		return (rc);
	}
	coffer_durable_opts opts = { .mode = 0600, .tmp = OB_STATE_TMP };
	return (coffer_durable_replace_at(
	    ob->dir_fd, ob->dir, OB_STATE_NAME, buf, sizeof(buf), &opts, err));
}

/* ---- segments ---- */

static int
seg_header_build(agent_outbox *ob, uint64_t first_seq, uint8_t *hdr, coffer_err *err)
{
	memcpy(hdr, OB_SEG_MAGIC, 8);
	put_be32(hdr + 8, OB_VERSION);
	put_be32(hdr + 12, 0);
	put_be64(hdr + 16, first_seq);
	return (ob_digest(ob, hdr, 24, NULL, 0, hdr + 24, OB_HDR_CHECK, err));
}

/* Opens a segment and checks that its header is whole, ours, and agrees with
 * its name. A header is never torn: segments appear by rename after fsync. */
static int
seg_open(agent_outbox *ob, uint64_t first_seq, int flags, int *fd_out, coffer_err *err)
{
	char name[64];
	char path[PATH_MAX];
	seg_name(first_seq, name, sizeof(name));
	ob_path(ob, name, path, sizeof(path));
	int fd = openat(ob->dir_fd, name, flags | O_CLOEXEC);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "open", path));
	}
	uint8_t hdr[AGENT_OUTBOX_SEGMENT_HEADER];
	ssize_t n = read_at(fd, hdr, sizeof(hdr), 0);
	if (n < 0) {
		int rc = coffer_err_errno(err, errno, "read", path);
		close(fd);
		return (rc);
	}
	int rc = 0;
	uint8_t want[AGENT_OUTBOX_SEGMENT_HEADER];
	if (n != (ssize_t)sizeof(hdr) || memcmp(hdr, OB_SEG_MAGIC, 8) != 0) {
		rc = coffer_err_set(
		    err, COFFER_ECORRUPT, "outbox segment %s has no valid header", path);
		corrupt_hint(ob, err);
	} else if (get_be32(hdr + 8) != OB_VERSION) {
		rc = coffer_err_set(err, COFFER_EVERSION,
		    "outbox segment %s has format version %" PRIu32 ", this agent knows %d", path,
		    get_be32(hdr + 8), OB_VERSION);
		coffer_err_hint(err, "run the coffer-agent version that wrote it, or newer");
	} else if ((rc = seg_header_build(ob, first_seq, want, err)) != 0) {
		/* err is set */
	} else if (memcmp(hdr, want, sizeof(want)) != 0) {
		rc = coffer_err_set(err, COFFER_ECORRUPT,
		    "outbox segment %s has a header that fails "
		    "its checksum or names another first seq",
		    path);
		corrupt_hint(ob, err);
	}
	if (rc != 0) {
		close(fd);
		return (rc);
	}
	*fd_out = fd;
	return (0);
}

/* Reads and checks the record at off, which must end at or before end.
 * Returns 1 if it is whole and its checksum holds, 0 if not, < 0 on an I/O
 * error. Streams the payload, so a record larger than max_record written by
 * an agent with a higher limit is still recognised as valid. */
static int
rec_check(agent_outbox *ob, int fd, off_t off, off_t end, struct ob_hdr *h, coffer_err *err)
{
	uint8_t hdr[AGENT_OUTBOX_RECORD_HEADER];
	if (end - off < (off_t)sizeof(hdr)) {
		return (0);
	}
	ssize_t n = read_at(fd, hdr, sizeof(hdr), off);
	if (n < 0) {
		return (coffer_err_errno(err, errno, "read", ob->dir));
	}
	if (n != (ssize_t)sizeof(hdr) || memcmp(hdr, ob_rec_magic, 4) != 0) {
		return (0);
	}
	h->len = get_be32(hdr + 4);
	h->seq = get_be64(hdr + 8);
	memcpy(h->check, hdr + 16, OB_REC_CHECK);
	if (h->len > AGENT_OUTBOX_FORMAT_MAX_RECORD ||
	    (off_t)h->len > end - off - (off_t)sizeof(hdr)) {
		return (0);
	}
	if (EVP_DigestInit_ex(ob->md, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(ob->md, hdr, 16) != 1) {
		return (md_fail(err));
	}
	off_t pos = off + (off_t)sizeof(hdr);
	size_t left = h->len;
	while (left > 0) {
		size_t want = left < OB_IO_CHUNK ? left : OB_IO_CHUNK;
		n = read_at(fd, ob->io, want, pos);
		if (n < 0) {
			return (coffer_err_errno(err, errno, "read", ob->dir));
		}
		if ((size_t)n != want) {
			return (0);
		}
		if (EVP_DigestUpdate(ob->md, ob->io, want) != 1) {
			return (md_fail(err));
		}
		pos += (off_t)want;
		left -= want;
	}
	uint8_t full[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	if (EVP_DigestFinal_ex(ob->md, full, &mdlen) != 1) {
		return (md_fail(err));
	}
	return (memcmp(full, h->check, OB_REC_CHECK) == 0 ? 1 : 0);
}

/* Looks for any valid record that starts after off. Finding one means the
 * bad bytes at off are not a torn tail but damage in the middle of the log. */
static int
find_valid_after(agent_outbox *ob, int fd, off_t off, off_t end, off_t *found, coffer_err *err)
{
	off_t pos = off + 1;
	while (end - pos >= (off_t)AGENT_OUTBOX_RECORD_HEADER) {
		size_t want = (size_t)(end - pos) < OB_IO_CHUNK ? (size_t)(end - pos) : OB_IO_CHUNK;
		ssize_t n = read_at(fd, ob->scan, want, pos);
		if (n < 0) {
			return (coffer_err_errno(err, errno, "read", ob->dir));
		}
		if (n < 4) {
			return (0);
		}
		uint8_t *m = memmem(ob->scan, (size_t)n, ob_rec_magic, sizeof(ob_rec_magic));
		if (m == NULL) {
			/* The magic may straddle the chunk boundary. */
			pos += n - 3;
			continue;
		}
		off_t cand = pos + (off_t)(m - ob->scan);
		struct ob_hdr h;
		int rc = rec_check(ob, fd, cand, end, &h, err);
		if (rc < 0) {
			return (rc);
		}
		if (rc == 1) {
			*found = cand;
			return (1);
		}
		pos = cand + 1;
	}
	return (0);
}

static void
ob_forget_positions(agent_outbox *ob)
{
	ob->cur_valid = false;
	ob->split_valid = false;
}

/* A record at off failed its check. Only the last record of the last segment
 * can be torn (every append is fdatasync'd before the lock is let go, and a
 * segment is sealed only after its tail was repaired); anything else is
 * damage, refused so that no event disappears without a person deciding. */
static int
bad_record(agent_outbox *ob, size_t i, int fd, off_t off, off_t end, bool is_last, coffer_err *err)
{
	struct ob_seg *s = &ob->segs[i];
	if (!is_last) {
		seg_err(ob, err, COFFER_ECORRUPT, s->first_seq,
		    "is damaged at offset %lld of %lld (a sealed segment cannot end in a torn write)",
		    (long long)off, (long long)end);
		corrupt_hint(ob, err);
		return (COFFER_ECORRUPT);
	}
	off_t found = 0;
	int rc = find_valid_after(ob, fd, off, end, &found, err);
	if (rc < 0) {
		return (rc);
	}
	if (rc == 1) {
		seg_err(ob, err, COFFER_ECORRUPT, s->first_seq,
		    "is damaged at offset %lld and a valid record follows at offset %lld",
		    (long long)off, (long long)found);
		corrupt_hint(ob, err);
		return (COFFER_ECORRUPT);
	}
	char name[64];
	char path[PATH_MAX];
	seg_name(s->first_seq, name, sizeof(name));
	ob_path(ob, name, path, sizeof(path));
	/* Its writer died before fdatasync returned, so the record was never
	 * reported saved and nobody read it: cutting it off loses nothing. */
	coffer_log_warn("outbox torn tail truncated", "file=%s offset=%lld dropped_bytes=%lld",
	    path, (long long)off, (long long)(end - off));
	if (ftruncate(fd, off) != 0) {
		return (coffer_err_errno(err, errno, "truncate", path));
	}
	if (fdatasync(fd) != 0) {
		return (coffer_err_errno(err, errno, "fdatasync", path));
	}
	ob_forget_positions(ob);
	return (1);
}

/* Verifies the records of segment i between from and end. */
static int
seg_scan(agent_outbox *ob, size_t i, int fd, off_t from, off_t end, bool is_last, coffer_err *err)
{
	struct ob_seg *s = &ob->segs[i];
	uint64_t lo = s->nrec > 0 ? s->last_seq + 1 : s->first_seq;
	uint64_t hi = i + 1 < ob->nsegs ? ob->segs[i + 1].first_seq : UINT64_MAX;
	off_t off = from;
	uint64_t added = 0;
	while (off < end) {
		struct ob_hdr h;
		int rc = rec_check(ob, fd, off, end, &h, err);
		if (rc < 0) {
			return (rc);
		}
		if (rc == 0) {
			rc = bad_record(ob, i, fd, off, end, is_last, err);
			if (rc < 0) {
				return (rc);
			}
			break;
		}
		if (h.seq < lo || h.seq >= hi) {
			seg_err(ob, err, COFFER_ECORRUPT, s->first_seq,
			    "has seq %lld out of order at offset %lld", (long long)h.seq,
			    (long long)off);
			corrupt_hint(ob, err);
			return (COFFER_ECORRUPT);
		}
		if (s->nrec == 0) {
			s->first_rec = h.seq;
		}
		s->nrec++;
		s->bytes += h.len;
		s->last_seq = h.seq;
		lo = h.seq + 1;
		off += (off_t)AGENT_OUTBOX_RECORD_HEADER + (off_t)h.len;
		s->size = off;
		added++;
	}
	/* Another process may have written these and died before its
	 * fdatasync: make them durable before anyone reads and sends them. */
	if (added > 0 && fdatasync(fd) != 0) {
		return (coffer_err_errno(err, errno, "fdatasync", ob->dir));
	}
	return (0);
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a;
	uint64_t y = *(const uint64_t *)b;
	return (x < y ? -1 : x > y);
}

static bool
parse_seg_name(const char *name, uint64_t *first)
{
	size_t n = strlen(name);
	if (n != OB_SEG_DIGITS + strlen(OB_SEG_SUFFIX) ||
	    strcmp(name + OB_SEG_DIGITS, OB_SEG_SUFFIX) != 0) {
		return (false);
	}
	uint64_t v = 0;
	for (size_t k = 0; k < OB_SEG_DIGITS; k++) {
		if (name[k] < '0' || name[k] > '9') {
			return (false);
		}
		uint64_t d = (uint64_t)(name[k] - '0');
		if (v > (UINT64_MAX - d) / 10) {
			return (false);
		}
		v = v * 10 + d;
	}
	*first = v;
	return (v > 0);
}

/* Lists segment names into ob->names, sorted. Temporary files are left-overs
 * of a writer that died while creating a segment or the state file; with the
 * lock held nobody else is writing one, so they can go. */
static int
seg_list(agent_outbox *ob, size_t *count, coffer_err *err)
{
	int fd = dup(ob->dir_fd);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "read directory", ob->dir));
	}
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		int rc = coffer_err_errno(err, errno, "read directory", ob->dir);
		close(fd);
		return (rc);
	}
	rewinddir(d);
	size_t n = 0;
	int rc = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t first;
		size_t len = strlen(de->d_name);
		if (len > strlen(OB_TMP_SUFFIX) &&
		    strcmp(de->d_name + len - strlen(OB_TMP_SUFFIX), OB_TMP_SUFFIX) == 0) {
			(void)unlinkat(ob->dir_fd, de->d_name, 0);
			continue;
		}
		if (!parse_seg_name(de->d_name, &first)) {
			continue;
		}
		if (n == ob->max_segs) {
			rc = coffer_err_set(err, COFFER_ETOOBIG,
			    "outbox %s holds more than %zu segment files", ob->dir, ob->max_segs);
			coffer_err_hint(err,
			    "raise the outbox segment size, or find out why so many "
			    "files are in %s",
			    ob->dir);
			break;
		}
		ob->names[n++] = first;
	}
	closedir(d);
	if (rc != 0) {
		return (rc);
	}
	qsort(ob->names, n, sizeof(ob->names[0]), cmp_u64);
	*count = n;
	return (0);
}

static bool
seg_fully_acked(const agent_outbox *ob, const struct ob_seg *s)
{
	/* s is &ob->segs[i], i < nsegs, never NULL; the analyzer takes the
	 * `last == NULL` test in agent_outbox_append for a sign it may be. */
	/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
	return (s->nrec == 0 || s->last_seq <= ob->acked);
}

static void
tail_close(agent_outbox *ob)
{
	if (ob->tail_fd >= 0) {
		close(ob->tail_fd);
	}
	ob->tail_fd = -1;
	ob->tail_first = 0;
}

/* Catches up with the directory: other processes may have appended, acked,
 * rotated or compacted since this handle last looked. Caller holds the lock. */
static int
ob_refresh(agent_outbox *ob, coffer_err *err)
{
	int rc = state_read(ob, err);
	if (rc != 0) {
		return (rc);
	}
	size_t n = 0;
	rc = seg_list(ob, &n, err);
	if (rc != 0) {
		return (rc);
	}
	/* Merge what is on disk with what we knew: keep verified sizes, and
	 * notice a segment that vanished while it still held unacked events. */
	size_t j = 0;
	for (size_t k = 0; k < n; k++) {
		struct ob_seg *t = &ob->segs_tmp[k];
		memset(t, 0, sizeof(*t));
		t->first_seq = ob->names[k];
		while (j < ob->nsegs && ob->segs[j].first_seq < t->first_seq) {
			if (!seg_fully_acked(ob, &ob->segs[j])) {
				goto vanished;
			}
			j++;
		}
		if (j < ob->nsegs && ob->segs[j].first_seq == t->first_seq) {
			*t = ob->segs[j++];
		}
	}
	for (; j < ob->nsegs; j++) {
		if (!seg_fully_acked(ob, &ob->segs[j])) {
			goto vanished;
		}
	}
	struct ob_seg *swap = ob->segs;
	ob->segs = ob->segs_tmp;
	ob->segs_tmp = swap;
	ob->nsegs = n;
	if (n == 0 || ob->tail_first != ob->segs[n - 1].first_seq) {
		tail_close(ob);
	}

	for (size_t i = 0; i < n; i++) {
		struct ob_seg *s = &ob->segs[i];
		bool is_last = i + 1 == n;
		char name[64];
		char path[PATH_MAX];
		seg_name(s->first_seq, name, sizeof(name));
		int fd = -1;
		if (is_last && ob->tail_fd >= 0) {
			fd = ob->tail_fd;
		} else if (is_last || s->size == 0) {
			rc = seg_open(ob, s->first_seq, is_last ? O_RDWR : O_RDONLY, &fd, err);
			if (rc != 0) {
				return (rc);
			}
			if (is_last) {
				ob->tail_fd = fd;
				ob->tail_first = s->first_seq;
			}
		}
		struct stat st;
		if ((fd >= 0 ? fstat(fd, &st) : fstatat(ob->dir_fd, name, &st, 0)) != 0) {
			rc = coffer_err_errno(
			    err, errno, "stat", ob_path(ob, name, path, sizeof(path)));
			goto next_seg;
		}
		if (s->size == 0) {
			s->size = AGENT_OUTBOX_SEGMENT_HEADER;
		}
		if (st.st_size < s->size) {
			seg_err(ob, err, COFFER_ECORRUPT, s->first_seq,
			    "shrank from %lld to %lld bytes behind the outbox's back",
			    (long long)s->size, (long long)st.st_size);
			corrupt_hint(ob, err);
			rc = COFFER_ECORRUPT;
			goto next_seg;
		}
		if (st.st_size > s->size) {
			if (fd < 0) {
				rc = seg_open(ob, s->first_seq, O_RDONLY, &fd, err);
				if (rc != 0) {
					return (rc);
				}
			}
			rc = seg_scan(ob, i, fd, s->size, st.st_size, is_last, err);
		}
	next_seg:
		if (fd >= 0 && fd != ob->tail_fd) {
			close(fd);
		}
		if (rc != 0) {
			return (rc);
		}
	}

	uint64_t next = ob->acked + 1;
	if (ob->next_floor > next) {
		next = ob->next_floor;
	}
	if (n > 0) {
		const struct ob_seg *last = &ob->segs[n - 1];
		if (last->first_seq > next) {
			next = last->first_seq;
		}
		if (last->nrec > 0 && last->last_seq + 1 > next) {
			next = last->last_seq + 1;
		}
	}
	ob->next_seq = next;
	return (0);

vanished:
	seg_err(ob, err, COFFER_ECORRUPT, ob->segs[j].first_seq,
	    "disappeared while it held unacked events (seq %lld to %lld)",
	    (long long)ob->segs[j].first_rec, (long long)ob->segs[j].last_seq);
	corrupt_hint(ob, err);
	return (COFFER_ECORRUPT);
}

/* Deletes sealed segments, oldest first, whose records are all acked. The
 * last segment always stays: its name carries the seq high-water mark. */
static void
ob_compact(agent_outbox *ob)
{
	size_t k = 0;
	while (k + 1 < ob->nsegs && seg_fully_acked(ob, &ob->segs[k])) {
		char name[64];
		seg_name(ob->segs[k].first_seq, name, sizeof(name));
		if (unlinkat(ob->dir_fd, name, 0) != 0 && errno != ENOENT) {
			char path[PATH_MAX];
			/* Not fatal: the ack is durable and the next compaction retries. */
			coffer_log_warn("cannot remove acked outbox segment",
			    "file=%s error=\"%s\"", ob_path(ob, name, path, sizeof(path)),
			    strerror(errno));
			break;
		}
		k++;
	}
	if (k == 0) {
		return;
	}
	if (fsync(ob->dir_fd) != 0) {
		coffer_log_warn("cannot fsync outbox directory", "error=\"%s\"", strerror(errno));
	}
	memmove(ob->segs, ob->segs + k, (ob->nsegs - k) * sizeof(ob->segs[0]));
	ob->nsegs -= k;
	ob_forget_positions(ob);
}

/* Bytes counted against max_bytes: every segment still holding an unacked
 * record, and the last segment, which is never removed. */
static uint64_t
ob_used(const agent_outbox *ob)
{
	uint64_t used = 0;
	for (size_t i = 0; i < ob->nsegs; i++) {
		if (i + 1 == ob->nsegs || !seg_fully_acked(ob, &ob->segs[i])) {
			/* segs holds nsegs entries (see seg_fully_acked). */
			/* NOLINTNEXTLINE(clang-analyzer-core.NullDereference) */
			used += (uint64_t)ob->segs[i].size;
		}
	}
	return (used);
}

/* Creates the segment that starts at first_seq and makes it the tail. */
static int
seg_create(agent_outbox *ob, uint64_t first_seq, coffer_err *err)
{
	char name[64];
	char tmp[80];
	char path[PATH_MAX];
	uint8_t hdr[AGENT_OUTBOX_SEGMENT_HEADER];
	if (ob->nsegs == ob->max_segs) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "outbox %s holds %zu segment files, the most "
		    "it may",
		    ob->dir, ob->max_segs);
		return (coffer_err_hint(err, "raise the outbox segment size"));
	}
	int rc = seg_header_build(ob, first_seq, hdr, err);
	if (rc != 0) {
		return (rc);
	}
	seg_name(first_seq, name, sizeof(name));
	snprintf(tmp, sizeof(tmp), "%s%s", name, OB_TMP_SUFFIX);
	ob_path(ob, tmp, path, sizeof(path));
	int fd = openat(ob->dir_fd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "create", path));
	}
	if (write_at(fd, hdr, sizeof(hdr), 0) != 0) {
		rc = coffer_err_errno(err, errno, "write", path);
		goto fail;
	}
	if (fsync(fd) != 0) {
		rc = coffer_err_errno(err, errno, "fsync", path);
		goto fail;
	}
	/* Publish last: whoever sees the name sees a whole header. */
	if (renameat(ob->dir_fd, tmp, ob->dir_fd, name) != 0) {
		rc = coffer_err_errno(err, errno, "rename", path);
		goto fail;
	}
	rc = coffer_durable_fsync_dirfd(ob->dir_fd, ob->dir, err);
	if (rc != 0) {
		close(fd);
		return (rc);
	}
	tail_close(ob);
	ob->tail_fd = fd;
	ob->tail_first = first_seq;
	struct ob_seg *s = &ob->segs[ob->nsegs++];
	memset(s, 0, sizeof(*s));
	s->first_seq = first_seq;
	s->size = AGENT_OUTBOX_SEGMENT_HEADER;
	return (0);

fail:
	close(fd);
	(void)unlinkat(ob->dir_fd, tmp, 0);
	return (rc);
}

/* ---- public API ---- */

static int
limits_resolve(const agent_outbox_limits *in, agent_outbox_limits *out, coffer_err *err)
{
	agent_outbox_limits l = { 0 };
	if (in != NULL) {
		l = *in;
	}
	if (l.max_record == 0) {
		l.max_record = AGENT_OUTBOX_DEFAULT_MAX_RECORD;
	}
	if (l.segment_bytes == 0) {
		l.segment_bytes = AGENT_OUTBOX_DEFAULT_SEGMENT_BYTES;
	}
	if (l.max_bytes == 0) {
		l.max_bytes = AGENT_OUTBOX_DEFAULT_MAX_BYTES;
	}
	if (l.max_record > AGENT_OUTBOX_FORMAT_MAX_RECORD) {
		coffer_err_set(err, COFFER_EINVAL,
		    "outbox record limit of %zu bytes exceeds the "
		    "format's %u",
		    l.max_record, AGENT_OUTBOX_FORMAT_MAX_RECORD);
		return (coffer_err_hint(err, "lower the outbox record limit"));
	}
	size_t need = AGENT_OUTBOX_SEGMENT_HEADER + AGENT_OUTBOX_RECORD_HEADER + l.max_record;
	if (l.segment_bytes < need) {
		coffer_err_set(err, COFFER_EINVAL,
		    "outbox segment size of %zu bytes cannot hold a "
		    "record of %zu bytes",
		    l.segment_bytes, l.max_record);
		return (coffer_err_hint(err, "make the segment size at least %zu bytes", need));
	}
	if (l.max_bytes < l.segment_bytes) {
		coffer_err_set(err, COFFER_EINVAL,
		    "outbox size limit of %" PRIu64 " bytes is smaller "
		    "than one segment of %zu bytes",
		    l.max_bytes, l.segment_bytes);
		return (
		    coffer_err_hint(err, "raise the outbox size limit or lower the segment size"));
	}
	*out = l;
	return (0);
}

int
agent_outbox_open(
    const char *state_dir, const agent_outbox_limits *limits, agent_outbox **out, coffer_err *err)
{
	*out = NULL;
	agent_outbox_limits lim;
	int rc = limits_resolve(limits, &lim, err);
	if (rc != 0) {
		return (rc);
	}
	struct stat st;
	if (stat(state_dir, &st) != 0) {
		rc = coffer_err_errno(err, errno, "use state directory", state_dir);
		if (rc == COFFER_ENOENT) {
			coffer_err_hint(err, "create %s or set [agent] state_dir", state_dir);
		}
		return (rc);
	}
	if (!S_ISDIR(st.st_mode)) {
		coffer_err_set(
		    err, COFFER_EINVAL, "state directory %s is not a directory", state_dir);
		return (coffer_err_hint(err, "set [agent] state_dir to a directory"));
	}

	agent_outbox *ob = calloc(1, sizeof(*ob));
	if (ob == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "cannot allocate the outbox"));
	}
	ob->dir_fd = -1;
	ob->lock_fd = -1;
	ob->tail_fd = -1;
	ob->lim = lim;
	/* Sealed segments are nearly full, so this many covers max_bytes with
	 * room to spare; more files than this is not our doing. */
	uint64_t segs = lim.max_bytes / (lim.segment_bytes / 2 + 1) + 16;
	ob->max_segs = segs < OB_MIN_SEGMENTS ? OB_MIN_SEGMENTS : (size_t)segs;
	if (asprintf(&ob->dir, "%s/outbox", state_dir) < 0) {
		ob->dir = NULL;
		rc = coffer_err_set(err, COFFER_ENOMEM, "cannot allocate the outbox");
		goto fail;
	}
	ob->segs = calloc(ob->max_segs, sizeof(*ob->segs));
	ob->segs_tmp = calloc(ob->max_segs, sizeof(*ob->segs_tmp));
	ob->names = calloc(ob->max_segs, sizeof(*ob->names));
	ob->rec = malloc(AGENT_OUTBOX_RECORD_HEADER + lim.max_record);
	ob->io = malloc(OB_IO_CHUNK);
	ob->scan = malloc(OB_IO_CHUNK);
	ob->md = EVP_MD_CTX_new();
	if (ob->segs == NULL || ob->segs_tmp == NULL || ob->names == NULL || ob->rec == NULL ||
	    ob->io == NULL || ob->scan == NULL || ob->md == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "cannot allocate the outbox buffers");
		goto fail;
	}

	if (mkdir(ob->dir, 0700) == 0) {
		/* Make the new directory's name durable in its parent. */
		int pfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (pfd < 0 || fsync(pfd) != 0) {
			rc = coffer_err_errno(err, errno, "fsync directory", state_dir);
			if (pfd >= 0) {
				close(pfd);
			}
			goto fail;
		}
		close(pfd);
	} else if (errno != EEXIST) {
		rc = coffer_err_errno(err, errno, "create directory", ob->dir);
		goto fail;
	}
	ob->dir_fd = open(ob->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ob->dir_fd < 0) {
		rc = coffer_err_errno(err, errno, "open directory", ob->dir);
		goto fail;
	}
	ob->lock_fd = openat(ob->dir_fd, OB_LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (ob->lock_fd < 0) {
		char path[PATH_MAX];
		rc = coffer_err_errno(
		    err, errno, "open", ob_path(ob, OB_LOCK_NAME, path, sizeof(path)));
		goto fail;
	}
	rc = ob_lock(ob, err);
	if (rc != 0) {
		goto fail;
	}
	rc = ob_refresh(ob, err);
	if (rc == 0) {
		/* Finish a compaction that a crash interrupted. */
		ob_compact(ob);
	}
	ob_unlock(ob);
	if (rc != 0) {
		goto fail;
	}
	*out = ob;
	return (0);

fail:
	agent_outbox_close(ob);
	return (rc);
}

int
agent_outbox_append(
    agent_outbox *ob, const void *payload, size_t len, uint64_t *seq_out, coffer_err *err)
{
	if (len > ob->lim.max_record) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "event of %zu bytes exceeds the outbox record "
		    "limit of %zu bytes",
		    len, ob->lim.max_record);
		return (coffer_err_hint(err, "this is a bug in whatever built so large an event"));
	}
	if (len > 0 && payload == NULL) {
		return (coffer_err_set(
		    err, COFFER_EINVAL, "outbox append of %zu bytes without data", len));
	}
	bool wrote = false;
	int rc = ob_lock(ob, err);
	if (rc != 0) {
		return (rc);
	}
	rc = ob_refresh(ob, err);
	if (rc != 0) {
		goto out;
	}
	uint64_t seq = ob->next_seq;
	if (seq == UINT64_MAX) {
		rc = coffer_err_set(
		    err, COFFER_EINTERNAL, "outbox %s has run out of sequence numbers", ob->dir);
		goto out;
	}
	size_t rec_len = AGENT_OUTBOX_RECORD_HEADER + len;
	struct ob_seg *last = ob->nsegs > 0 ? &ob->segs[ob->nsegs - 1] : NULL;
	bool rotate = last == NULL ||
	    (last->nrec > 0 && (uint64_t)last->size + rec_len > ob->lim.segment_bytes);
	uint64_t used = ob_used(ob);
	uint64_t want = rec_len + (rotate ? AGENT_OUTBOX_SEGMENT_HEADER : 0);
	if (rotate && last != NULL && seg_fully_acked(ob, last)) {
		/* Once sealed it is compacted right away, so it does not count. */
		used -= (uint64_t)last->size;
	}
	if (used + want > ob->lim.max_bytes) {
		coffer_err_set(err, COFFER_ENOSPC,
		    "outbox %s is full: %" PRIu64 " of %" PRIu64
		    " bytes in use, event of %zu bytes refused",
		    ob->dir, used, ob->lim.max_bytes, len);
		coffer_err_hint(err,
		    "events leave the outbox only when the coordinator acks them: "
		    "check that this agent reaches the coordinator, or raise the outbox size limit");
		rc = COFFER_ENOSPC;
		goto out;
	}
	/* From here on a failure is the disk's: the heartbeat reports it. */
	wrote = true;
	if (rotate) {
		rc = seg_create(ob, seq, err);
		if (rc != 0) {
			goto out;
		}
		ob_compact(ob);
		last = &ob->segs[ob->nsegs - 1];
	}

	uint8_t *h = ob->rec;
	memcpy(h, ob_rec_magic, 4);
	put_be32(h + 4, (uint32_t)len);
	put_be64(h + 8, seq);
	if (len > 0) {
		memcpy(h + AGENT_OUTBOX_RECORD_HEADER, payload, len);
	}
	rc = ob_digest(ob, h, 16, h + AGENT_OUTBOX_RECORD_HEADER, len, h + 16, OB_REC_CHECK, err);
	if (rc != 0) {
		goto out;
	}
	char name[64];
	char path[PATH_MAX];
	seg_name(last->first_seq, name, sizeof(name));
	ob_path(ob, name, path, sizeof(path));
	off_t off = last->size;
	if (write_at(ob->tail_fd, h, rec_len, off) != 0) {
		rc = coffer_err_errno(err, errno, "write", path);
		/* Leave no partial record behind; if this fails too, the
		 * next refresh cuts it off as a torn tail. (Checked, not
		 * cast away: fortified builds refuse an ignored result.) */
		if (ftruncate(ob->tail_fd, off) != 0) {
			coffer_log_warn("partial event record left for the next refresh to cut",
			    "path=%s", path);
		}
		goto out;
	}
	if (fdatasync(ob->tail_fd) != 0) {
		rc = coffer_err_errno(err, errno, "fdatasync", path);
		coffer_err_hint(err, "the event was not saved; check the disk holding %s", ob->dir);
		/* After a failed fdatasync the page cache may still hold the
		 * record and a reader could send it although we report a
		 * failure; remove it, and if even that fails stop trusting
		 * this handle. */
		if (ftruncate(ob->tail_fd, off) != 0 || fdatasync(ob->tail_fd) != 0) {
			ob->broken = true;
		}
		goto out;
	}
	if (last->nrec == 0) {
		last->first_rec = seq;
	}
	last->nrec++;
	last->bytes += len;
	last->last_seq = seq;
	last->size = off + (off_t)rec_len;
	ob->next_seq = seq + 1;
	if (seq_out != NULL) {
		*seq_out = seq;
	}
out:
	ob_unlock(ob);
	if (wrote) {
		agent_statedir_note(ob->dir, "outbox append", rc);
	}
	return (rc);
}

static int
read_hdr(
    agent_outbox *ob, int fd, const struct ob_seg *s, off_t off, struct ob_hdr *h, coffer_err *err)
{
	uint8_t hdr[AGENT_OUTBOX_RECORD_HEADER];
	ssize_t n = read_at(fd, hdr, sizeof(hdr), off);
	if (n < 0) {
		return (coffer_err_errno(err, errno, "read", ob->dir));
	}
	if (s->size - off < (off_t)sizeof(hdr) || n != (ssize_t)sizeof(hdr) ||
	    memcmp(hdr, ob_rec_magic, 4) != 0 ||
	    get_be32(hdr + 4) > (uint64_t)(s->size - off) - sizeof(hdr)) {
		/* These bytes were verified earlier: they changed since. */
		seg_err(ob, err, COFFER_ECORRUPT, s->first_seq,
		    "changed at offset %lld after it was verified", (long long)off);
		corrupt_hint(ob, err);
		return (COFFER_ECORRUPT);
	}
	h->len = get_be32(hdr + 4);
	h->seq = get_be64(hdr + 8);
	memcpy(h->check, hdr + 16, OB_REC_CHECK);
	return (0);
}

int
agent_outbox_foreach(agent_outbox *ob, uint64_t after_seq, size_t max_count, size_t max_bytes,
    agent_outbox_record_cb cb, void *arg, size_t *delivered, coffer_err *err)
{
	size_t count = 0;
	uint64_t bytes = 0;
	if (delivered != NULL) {
		*delivered = 0;
	}
	int rc = ob_lock(ob, err);
	if (rc != 0) {
		return (rc);
	}
	rc = ob_refresh(ob, err);
	if (rc != 0) {
		goto out;
	}
	uint64_t start = (after_seq > ob->acked ? after_seq : ob->acked);
	if (start == UINT64_MAX) {
		goto out;
	}
	start++;
	for (size_t i = 0; i < ob->nsegs && count < max_count; i++) {
		const struct ob_seg *s = &ob->segs[i];
		if (s->nrec == 0 || s->last_seq < start) {
			continue;
		}
		int fd = ob->tail_fd;
		if (i + 1 < ob->nsegs) {
			rc = seg_open(ob, s->first_seq, O_RDONLY, &fd, err);
			if (rc != 0) {
				goto out;
			}
		}
		off_t off = AGENT_OUTBOX_SEGMENT_HEADER;
		if (ob->cur_valid && ob->cur_seg == s->first_seq && ob->cur_after < start &&
		    ob->cur_off <= s->size) {
			off = ob->cur_off;
		}
		bool stop = false;
		while (off < s->size && !stop) {
			struct ob_hdr h;
			rc = read_hdr(ob, fd, s, off, &h, err);
			if (rc != 0) {
				break;
			}
			off_t next = off + (off_t)AGENT_OUTBOX_RECORD_HEADER + (off_t)h.len;
			if (h.seq < start) {
				off = next;
				continue;
			}
			if (count >= max_count || (count > 0 && bytes + h.len > max_bytes)) {
				stop = true;
				break;
			}
			if (h.len > ob->lim.max_record) {
				rc = coffer_err_set(err, COFFER_ETOOBIG,
				    "outbox record seq %" PRIu64 " is %" PRIu32
				    " bytes, over the record limit of %zu bytes",
				    h.seq, h.len, ob->lim.max_record);
				coffer_err_hint(err,
				    "raise the outbox record limit to at least %" PRIu32
				    " bytes, the limit of the agent that wrote it",
				    h.len);
				break;
			}
			uint8_t *p = ob->rec;
			ssize_t n = read_at(fd, p, AGENT_OUTBOX_RECORD_HEADER + h.len, off);
			uint8_t check[OB_REC_CHECK];
			if (n < 0) {
				rc = coffer_err_errno(err, errno, "read", ob->dir);
				break;
			}
			if ((size_t)n != AGENT_OUTBOX_RECORD_HEADER + h.len) {
				rc = COFFER_ECORRUPT;
			} else {
				rc = ob_digest(ob, p, 16, p + AGENT_OUTBOX_RECORD_HEADER, h.len,
				    check, sizeof(check), err);
				if (rc != 0) {
					break;
				}
				if (memcmp(check, p + 16, sizeof(check)) != 0) {
					rc = COFFER_ECORRUPT;
				}
			}
			if (rc != 0) {
				seg_err(ob, err, COFFER_ECORRUPT, s->first_seq,
				    "fails its checksum at offset %lld (seq %lld) after it was verified",
				    (long long)off, (long long)h.seq);
				corrupt_hint(ob, err);
				break;
			}
			ob->cur_valid = true;
			ob->cur_seg = s->first_seq;
			ob->cur_off = next;
			ob->cur_after = h.seq;
			count++;
			bytes += h.len;
			int cbrc = cb(h.seq, p + AGENT_OUTBOX_RECORD_HEADER, h.len, arg);
			if (cbrc < 0) {
				rc = coffer_err_set(err, cbrc,
				    "outbox reader stopped at seq %" PRIu64 ": %s", h.seq,
				    coffer_strerror(cbrc));
				break;
			}
			if (cbrc > 0) {
				stop = true;
			}
			off = next;
		}
		if (fd != ob->tail_fd) {
			close(fd);
		}
		if (rc != 0 || stop) {
			break;
		}
	}
out:
	ob_unlock(ob);
	if (delivered != NULL) {
		*delivered = count;
	}
	return (rc);
}

int
agent_outbox_ack(agent_outbox *ob, uint64_t seq, coffer_err *err)
{
	int rc = ob_lock(ob, err);
	if (rc != 0) {
		return (rc);
	}
	rc = ob_refresh(ob, err);
	if (rc != 0 || seq <= ob->acked) {
		goto out;
	}
	if (seq >= ob->next_seq) {
		rc = coffer_err_set(err, COFFER_EINVAL,
		    "cannot ack seq %" PRIu64 ": outbox %s has "
		    "handed out seqs only up to %" PRIu64,
		    seq, ob->dir, ob->next_seq - 1);
		coffer_err_hint(err,
		    "the coordinator acked an event this agent never sent; check "
		    "that two agents do not share one name");
		goto out;
	}
	rc = state_write(ob, seq, ob->next_seq, err);
	agent_statedir_note(ob->dir, "outbox ack", rc);
	if (rc != 0) {
		goto out;
	}
	ob->acked = seq;
	ob->next_floor = ob->next_seq;
	ob->split_valid = false;
	ob_compact(ob);
out:
	ob_unlock(ob);
	return (rc);
}

/* Counts the acked records of the one segment that holds both acked and
 * unacked ones, walking its headers (already verified, so not hashed). */
static int
split_count(
    agent_outbox *ob, const struct ob_seg *s, uint64_t *count, uint64_t *bytes, coffer_err *err)
{
	if (ob->split_valid && ob->split_seg == s->first_seq && ob->split_acked == ob->acked &&
	    ob->split_nrec == s->nrec) {
		*count = ob->split_count;
		*bytes = ob->split_bytes;
		return (0);
	}
	int fd = ob->tail_fd;
	int rc = 0;
	if (s->first_seq != ob->tail_first) {
		rc = seg_open(ob, s->first_seq, O_RDONLY, &fd, err);
		if (rc != 0) {
			return (rc);
		}
	}
	uint64_t c = 0;
	uint64_t b = 0;
	off_t off = AGENT_OUTBOX_SEGMENT_HEADER;
	while (off < s->size) {
		struct ob_hdr h;
		rc = read_hdr(ob, fd, s, off, &h, err);
		if (rc != 0) {
			break;
		}
		if (h.seq > ob->acked) {
			c++;
			b += h.len;
		}
		off += (off_t)AGENT_OUTBOX_RECORD_HEADER + (off_t)h.len;
	}
	if (fd != ob->tail_fd) {
		close(fd);
	}
	if (rc != 0) {
		return (rc);
	}
	ob->split_valid = true;
	ob->split_seg = s->first_seq;
	ob->split_acked = ob->acked;
	ob->split_nrec = s->nrec;
	ob->split_count = c;
	ob->split_bytes = b;
	*count = c;
	*bytes = b;
	return (0);
}

int
agent_outbox_depth(agent_outbox *ob, agent_outbox_stats *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	int rc = ob_lock(ob, err);
	if (rc != 0) {
		return (rc);
	}
	rc = ob_refresh(ob, err);
	if (rc != 0) {
		goto out;
	}
	for (size_t i = 0; i < ob->nsegs; i++) {
		const struct ob_seg *s = &ob->segs[i];
		if (seg_fully_acked(ob, s)) {
			continue;
		}
		if (s->first_rec > ob->acked) {
			out->count += s->nrec;
			out->bytes += s->bytes;
			continue;
		}
		uint64_t c;
		uint64_t b;
		rc = split_count(ob, s, &c, &b, err);
		if (rc != 0) {
			goto out;
		}
		out->count += c;
		out->bytes += b;
	}
	out->acked_seq = ob->acked;
	out->next_seq = ob->next_seq;
	out->used_bytes = ob_used(ob);
	out->segments = ob->nsegs;
out:
	ob_unlock(ob);
	return (rc);
}

void
agent_outbox_close(agent_outbox *ob)
{
	if (ob == NULL) {
		return;
	}
	tail_close(ob);
	if (ob->lock_fd >= 0) {
		close(ob->lock_fd);
	}
	if (ob->dir_fd >= 0) {
		close(ob->dir_fd);
	}
	EVP_MD_CTX_free(ob->md);
	free(ob->scan);
	free(ob->io);
	free(ob->rec);
	free(ob->names);
	free(ob->segs_tmp);
	free(ob->segs);
	free(ob->dir);
	free(ob);
}
