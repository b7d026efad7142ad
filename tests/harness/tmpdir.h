/*
 * Scratch directories for tests. Fakes nothing: it is the one place that
 * decides where tests write, so every test's files land under the build
 * tree ctest names and a failed run leaves its debris in one known place.
 *
 * Promises: harness_tmpdir_make gives a new, empty directory NAME-XXXXXX
 * (mode 0700) under $COFFER_TEST_TMP, which ctest sets to the build's
 * tests/tmp, or under /tmp when that is unset or empty; the base and its
 * parents are created if missing. harness_tmpdir_remove deletes a tree
 * without following symbolic links or leaving it for another filesystem's
 * content behind a link.
 *
 * Limits: not a sandbox (a test may still write anywhere); removal goes on
 * past an entry it cannot remove and reports that in its return value,
 * never retries; a path longer than the caller's buffer is refused, not cut.
 */
#ifndef COFFER_TESTS_HARNESS_TMPDIR_H
#define COFFER_TESTS_HARNESS_TMPDIR_H

#include <stddef.h>

/* Creates the directory and writes its path to dir (size bytes). Returns 0,
 * or -1 with errno set and nothing created. */
int harness_tmpdir_make(const char *name, char *dir, size_t size);

/* Removes dir and everything under it. Returns 0, or -1 when some entry
 * stayed (errno of the last failure). */
int harness_tmpdir_remove(const char *dir);

#endif
