/*
 * Durable files: see durable.h.
 *
 * Design notes.
 * The temporary is created in the target's own directory (a rename across
 * file systems is not atomic), with O_NOFOLLOW so a planted link cannot
 * redirect the write, and its mode and owner are set before it has its
 * final name, so the file is never visible with wider rights than asked.
 * With no_replace the file is published with link(2), which fails when the
 * name exists, instead of rename(2), which would silently replace it: two
 * processes creating the same key ring cannot both win.
 */
#include "common/base/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
coffer_durable_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0 && errno == EINTR) {
			continue;
		}
		if (w < 0) {
			return (errno);
		}
		if (w == 0) {
			return (EIO);
		}
		p += w;
		len -= (size_t)w;
	}
	return (0);
}

int
coffer_durable_fsync_dirfd(int dirfd, const char *dir, coffer_err *err)
{
	if (fsync(dirfd) != 0) {
		return (coffer_err_errno(err, errno, "fsync directory", dir));
	}
	return (0);
}

int
coffer_durable_fsync_dir(const char *dir, coffer_err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "open directory", dir));
	}
	int rc = coffer_durable_fsync_dirfd(fd, dir, err);
	close(fd);
	return (rc);
}

/* The directory part of path into dir ("." for a bare name, "/" for the
 * root); false when it does not fit. */
static bool
dir_of(const char *path, char *dir, size_t size)
{
	const char *slash = strrchr(path, '/');
	int n;
	if (slash == NULL) {
		n = snprintf(dir, size, ".");
	} else if (slash == path) {
		n = snprintf(dir, size, "/");
	} else {
		n = snprintf(dir, size, "%.*s", (int)(slash - path), path);
	}
	return (n >= 0 && (size_t)n < size);
}

int
coffer_durable_fsync_dir_of(const char *path, coffer_err *err)
{
	char dir[PATH_MAX];
	if (!dir_of(path, dir, sizeof(dir))) {
		return (coffer_err_set(err, COFFER_EINVAL, "path %.64s... is too long", path));
	}
	return (coffer_durable_fsync_dir(dir, err));
}

int
coffer_durable_replace_at(int dirfd, const char *dir, const char *name, const void *data,
    size_t len, const coffer_durable_opts *opts, coffer_err *err)
{
	static const coffer_durable_opts defaults = { 0 };
	if (opts == NULL) {
		opts = &defaults;
	}
	mode_t mode = opts->mode != 0 ? opts->mode : 0600;
	char tmp[NAME_MAX + 1];
	int n = opts->tmp != NULL ? snprintf(tmp, sizeof(tmp), "%s", opts->tmp)
	                          : snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", name, (long)getpid());
	char shown[PATH_MAX];
	snprintf(shown, sizeof(shown), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		coffer_err_set(err, COFFER_EINVAL, "file name %.64s... is too long", name);
		return (
		    coffer_err_hint(err, "use a file name shorter than %d bytes", NAME_MAX - 16));
	}
	int fd =
	    openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode & 0777);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "creating", shown));
	}
	int rc = 0;
	int e;
	if (fchmod(fd, mode) != 0) {
		rc = coffer_err_errno(err, errno, "setting the mode of", shown);
	} else if (opts->chown && fchown(fd, opts->uid, opts->gid) != 0) {
		rc = coffer_err_errno(err, errno, "changing the owner of", shown);
	} else if ((e = coffer_durable_write_all(fd, data, len)) != 0) {
		rc = coffer_err_errno(err, e, "writing", shown);
	} else if (fsync(fd) != 0) {
		rc = coffer_err_errno(err, errno, "fsync", shown);
	}
	close(fd);
	if (rc == 0 && opts->no_replace) {
		if (linkat(dirfd, tmp, dirfd, name, 0) != 0) {
			rc = errno == EEXIST
			    ? coffer_err_set(err, COFFER_EEXIST, "%s already exists", shown)
			    : coffer_err_errno(err, errno, "creating", shown);
		}
		unlinkat(dirfd, tmp, 0);
	} else if (rc == 0) {
		if (renameat(dirfd, tmp, dirfd, name) != 0) {
			rc = coffer_err_errno(err, errno, "renaming into place", shown);
		}
	}
	if (rc != 0) {
		unlinkat(dirfd, tmp, 0);
		return (rc);
	}
	/* The new name is durable only once the directory is. */
	return (coffer_durable_fsync_dirfd(dirfd, dir, err));
}

int
coffer_durable_replace(const char *path, const void *data, size_t len,
    const coffer_durable_opts *opts, coffer_err *err)
{
	char dir[PATH_MAX];
	if (!dir_of(path, dir, sizeof(dir))) {
		return (coffer_err_set(err, COFFER_EINVAL, "path %.64s... is too long", path));
	}
	const char *slash = strrchr(path, '/');
	const char *name = slash != NULL ? slash + 1 : path;
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		return (coffer_err_errno(err, errno, "open directory", dir));
	}
	int rc = coffer_durable_replace_at(dirfd, dir, name, data, len, opts, err);
	close(dirfd);
	return (rc);
}
