/*
 * Durable files: a small file replaced so that a crash at any instant
 * leaves either the old content or the new one under its name, never a
 * mix, an empty file or nothing -- write a temporary beside it, fsync it,
 * rename (or link) it into place, fsync the directory. State files, key
 * rings, signing keys and caches all go through here.
 *
 * Blocking (fsync). Errors name the file and the operation.
 */
#ifndef COFFER_COMMON_BASE_DURABLE_H
#define COFFER_COMMON_BASE_DURABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/base/error.h"

typedef struct coffer_durable_opts {
	mode_t mode;     /* 0: 0600 (set with fchmod, whatever the umask) */
	bool no_replace; /* link instead of rename: COFFER_EEXIST if the name exists */
	bool chown;      /* give the file to uid:gid before it has a name */
	uid_t uid;
	gid_t gid;
	const char *tmp; /* the temporary's name in the same directory; NULL:
	                    * "<name>.<pid>.tmp" (callers that need a fixed name
	                    * hold a lock against each other) */
} coffer_durable_opts;

/* Writes len bytes of data as the file path (see above). opts may be NULL.
 * The temporary is removed on every failure. */
int coffer_durable_replace(const char *path, const void *data, size_t len,
    const coffer_durable_opts *opts, coffer_err *err);

/* The same inside an open directory: name is relative to dirfd, dir names
 * the directory in errors. */
int coffer_durable_replace_at(int dirfd, const char *dir, const char *name, const void *data,
    size_t len, const coffer_durable_opts *opts, coffer_err *err);

/* Writes all of buf to fd, retrying short writes and EINTR. Returns 0 or
 * the errno of the failed write. */
int coffer_durable_write_all(int fd, const void *buf, size_t len);

/* fsync of a directory, so the names created, renamed or removed in it
 * survive a crash. */
int coffer_durable_fsync_dir(const char *dir, coffer_err *err);

/* The same for an open directory (dir names it in errors). */
int coffer_durable_fsync_dirfd(int dirfd, const char *dir, coffer_err *err);

/* fsync of the directory that holds path ("." for a bare name). */
int coffer_durable_fsync_dir_of(const char *path, coffer_err *err);

#endif
