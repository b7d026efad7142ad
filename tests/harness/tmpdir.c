/* Scratch directories for tests; see tmpdir.h for the promises. */
#include "tests/harness/tmpdir.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* mkdir -p: ctest's tests/tmp may not exist yet in a fresh build tree, and
 * a developer's COFFER_TEST_TMP may point a few levels deeper. */
static int
make_parents(const char *path)
{
	char buf[PATH_MAX];
	if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/') {
			continue;
		}
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
			return (-1);
		}
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
		return (-1);
	}
	return (0);
}

int
harness_tmpdir_make(const char *name, char *dir, size_t size)
{
	const char *base = getenv("COFFER_TEST_TMP");
	if (base == NULL || base[0] == '\0') {
		base = "/tmp";
	}
	if (make_parents(base) != 0) {
		return (-1);
	}
	int n = snprintf(dir, size, "%s/%s-XXXXXX", base, name);
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return (-1);
	}
	if (mkdtemp(dir) == NULL) {
		return (-1);
	}
	return (0);
}

/* nftw has no user argument: the walk's outcome is kept here, which makes
 * removal one tree at a time per process (tests remove from one thread). */
static int remove_errno;

static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	if (remove(path) != 0) {
		/* Go on: the rest of the tree should not outlive one stuck file. */
		remove_errno = errno;
	}
	return (0);
}

int
harness_tmpdir_remove(const char *dir)
{
	remove_errno = 0;
	if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0) {
		return (-1);
	}
	if (remove_errno != 0) {
		errno = remove_errno;
		return (-1);
	}
	return (0);
}
