#include "agent/restore/confined.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * Design note. openat2 does the whole resolution in the kernel, atomically
 * with respect to a concurrent rename or symlink swap: RESOLVE_BENEATH stops
 * ".." and absolute links from leaving the root, RESOLVE_NO_SYMLINKS refuses
 * every link on the way, the last component included. glibc 2.36 has no
 * wrapper, hence syscall(2). Kernels before 5.6 answer ENOSYS; there the
 * path is walked one component at a time, each opened O_PATH | O_DIRECTORY
 * | O_NOFOLLOW relative to the one before, which is just as safe against a
 * link swapped in (O_NOFOLLOW refuses it, and every step is relative to a
 * descriptor already held), only slower.
 */

#define RESOLVE_CONFINED (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)

static atomic_bool force_walk;
static atomic_bool no_openat2;

void
agent_confined_force_walk(bool on)
{
	atomic_store(&force_walk, on);
}

bool
agent_confined_path_ok(const char *rel)
{
	if (rel == NULL || rel[0] == '\0' || rel[0] == '/') {
		return (false);
	}
	const char *seg = rel;
	for (;;) {
		const char *end = strchr(seg, '/');
		size_t n = end != NULL ? (size_t)(end - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.')) {
			return (false);
		}
		for (size_t i = 0; i < n; i++) {
			if ((unsigned char)seg[i] < 0x20) {
				return (false);
			}
		}
		if (end == NULL) {
			return (true);
		}
		seg = end + 1;
	}
}

static int
refuse_path(const char *rel, coffer_err *err)
{
	return (coffer_err_set(
	            err, COFFER_ECORRUPT, "\"%.200s\" is not a plain path inside the target", rel),
	    coffer_err_hint(err, "the backup is damaged or forged; do not restore it"));
}

/* The one error for each way a confined call can be refused. */
static int
confined_errno(int e, const char *op, const char *rel, coffer_err *err)
{
	if (e == ELOOP) {
		return (coffer_err_set(err, COFFER_EREFUSED,
		            "%s %.200s: a symbolic link is in the way inside the target, refusing "
		            "to follow it",
		            op, rel),
		    coffer_err_hint(err,
		        "something else is writing into the target while the restore runs; "
		        "nothing was written through the link: stop it and restore into a new, "
		        "empty directory"));
	}
	if (e == EXDEV) {
		return (coffer_err_set(err, COFFER_EREFUSED,
		            "%s %.200s: the path leads outside the target, refusing it", op, rel),
		    coffer_err_hint(err,
		        "something else is changing the target; restore into a new, "
		        "empty directory"));
	}
	if (e == EEXIST) {
		return (coffer_err_set(err, COFFER_ECORRUPT,
		            "%s %.200s: it already exists in the target", op, rel),
		    coffer_err_hint(err,
		        "the target was empty when the restore began, so something else wrote "
		        "into it (or the backup names the entry twice); restore into a new, "
		        "empty directory"));
	}
	return (coffer_err_errno(err, e, op, rel));
}

static int
sys_openat2(int dirfd, const char *path, int flags, unsigned mode)
{
	struct open_how how;
	memset(&how, 0, sizeof(how));
	how.flags = (unsigned long long)flags;
	how.mode = (flags & (O_CREAT | O_TMPFILE)) != 0 ? mode : 0;
	how.resolve = RESOLVE_CONFINED;
	return ((int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how)));
}

/* Opens rel beneath root with flags, no link followed; -1 with errno. */
static int
open_beneath(int root_fd, const char *rel, int flags, unsigned mode)
{
	flags |= O_CLOEXEC;
	if (!atomic_load(&force_walk) && !atomic_load(&no_openat2)) {
		/* No O_NOFOLLOW here: RESOLVE_NO_SYMLINKS already refuses a last
		 * component that is a link (ELOOP), whereas with O_PATH |
		 * O_NOFOLLOW it would open the link itself. */
		int fd = sys_openat2(root_fd, rel, flags & ~O_NOFOLLOW, mode);
		if (fd >= 0 || errno != ENOSYS) {
			if (fd < 0 && errno == EAGAIN) {
				/* RESOLVE_BENEATH gives up when a rename raced the
				 * lookup; that is someone changing the target. */
				errno = EXDEV;
			}
			return (fd);
		}
		atomic_store(&no_openat2, true);
	}
	/* The walk: every directory on the way, then the leaf. */
	char comp[4096];
	int cur = root_fd;
	const char *seg = rel;
	for (;;) {
		const char *end = strchr(seg, '/');
		if (end == NULL) {
			break;
		}
		size_t n = (size_t)(end - seg);
		if (n >= sizeof(comp)) {
			errno = ENAMETOOLONG;
			goto fail;
		}
		memcpy(comp, seg, n);
		comp[n] = '\0';
		int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0) {
			struct stat st;
			/* O_PATH | O_NOFOLLOW opens a link itself, and O_DIRECTORY
			 * then says ENOTDIR: say what it really is. */
			if (errno == ENOTDIR && fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISLNK(st.st_mode)) {
				errno = ELOOP;
			}
			goto fail;
		}
		if (cur != root_fd) {
			close(cur);
		}
		cur = next;
		seg = end + 1;
	}
	int fd = openat(cur, seg, flags | O_NOFOLLOW, mode);
	struct stat st;
	if (fd < 0 && errno == ENOTDIR && fstatat(cur, seg, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	    S_ISLNK(st.st_mode)) {
		errno = ELOOP;
	}
	if (cur != root_fd) {
		int e = errno;
		close(cur);
		errno = e;
	}
	return (fd);
fail:
	if (cur != root_fd) {
		int e = errno;
		close(cur);
		errno = e;
	}
	return (-1);
}

int
agent_confined_open(
    int root_fd, const char *rel, int flags, unsigned mode, int *fd_out, coffer_err *err)
{
	*fd_out = -1;
	if (!agent_confined_path_ok(rel)) {
		return (refuse_path(rel, err));
	}
	int fd = open_beneath(root_fd, rel, flags, mode);
	if (fd < 0) {
		return (
		    confined_errno(errno, (flags & O_CREAT) ? "creating" : "opening", rel, err));
	}
	*fd_out = fd;
	return (0);
}

int
agent_confined_opendir(int root_fd, const char *rel, int *fd_out, coffer_err *err)
{
	return (agent_confined_open(root_fd, rel, O_RDONLY | O_DIRECTORY, 0, fd_out, err));
}

/* Opens rel's parent directory (O_PATH) and points *leaf at its last
 * component; *parent is root_fd itself for a one-component rel. */
static int
open_parent(
    int root_fd, const char *rel, int *parent, const char **leaf, const char *op, coffer_err *err)
{
	*parent = -1;
	if (!agent_confined_path_ok(rel)) {
		return (refuse_path(rel, err));
	}
	const char *slash = strrchr(rel, '/');
	if (slash == NULL) {
		*parent = root_fd;
		*leaf = rel;
		return (0);
	}
	char dir[4096];
	size_t n = (size_t)(slash - rel);
	if (n >= sizeof(dir)) {
		return (confined_errno(ENAMETOOLONG, op, rel, err));
	}
	memcpy(dir, rel, n);
	dir[n] = '\0';
	int fd = open_beneath(root_fd, dir, O_PATH | O_DIRECTORY, 0);
	if (fd < 0) {
		return (confined_errno(errno, op, rel, err));
	}
	*parent = fd;
	*leaf = slash + 1;
	return (0);
}

int
agent_confined_mkdir(int root_fd, const char *rel, unsigned mode, int *fd_out, coffer_err *err)
{
	*fd_out = -1;
	int parent;
	const char *leaf;
	int rc = open_parent(root_fd, rel, &parent, &leaf, "creating the directory", err);
	if (rc != 0) {
		return (rc);
	}
	int e = 0;
	int fd = -1;
	if (mkdirat(parent, leaf, mode) != 0) {
		e = errno;
	} else {
		/* Between mkdirat and here the new name may have been replaced:
		 * O_NOFOLLOW refuses a link, and the owner check below a
		 * directory someone else made. */
		fd = openat(parent, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		e = fd < 0 ? (errno == ENOTDIR ? ELOOP : errno) : 0;
	}
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) != 0 || st.st_uid != geteuid())) {
		close(fd);
		fd = -1;
		e = EEXIST;
	}
	if (parent != root_fd) {
		close(parent);
	}
	if (fd < 0) {
		return (confined_errno(e, "creating the directory", rel, err));
	}
	*fd_out = fd;
	return (0);
}

int
agent_confined_symlink(int root_fd, const char *rel, const char *target, coffer_err *err)
{
	int parent;
	const char *leaf;
	int rc = open_parent(root_fd, rel, &parent, &leaf, "linking", err);
	if (rc != 0) {
		return (rc);
	}
	int e = symlinkat(target, parent, leaf) != 0 ? errno : 0;
	if (parent != root_fd) {
		close(parent);
	}
	return (e != 0 ? confined_errno(e, "linking", rel, err) : 0);
}
