/*
 * Confined paths: everything a restore creates inside its target is opened
 * beneath one directory descriptor (the root), never following a symbolic
 * link at any component, and never reusing an entry that is already there.
 *
 * Promises: a path is relative, has no empty, "." or ".." component, and is
 * resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS); on a kernel without openat2 (ENOSYS) it is walked
 * one component at a time with O_NOFOLLOW | O_DIRECTORY, which refuses the
 * same links. A symbolic link anywhere in the path is refused
 * (COFFER_EREFUSED, the message says "symbolic link"); an entry that exists
 * already where one is created is corruption (COFFER_ECORRUPT, "already
 * exists"): the target was checked empty, so something else wrote into it
 * or the archive names the entry twice. Ownership and modes are set by the
 * caller on the descriptors returned (fchown/fchmod), never by path.
 *
 * Hard links: a new entry is always made with O_CREAT | O_EXCL (or mkdirat,
 * symlinkat), so a hard link planted in its place is an existing entry and
 * refused. agent_confined_open without O_CREAT on an existing file reports
 * the link count through the caller's fstat; the physical restore refuses
 * st_nlink > 1 where it appends to a file it wrote itself.
 *
 * Memory: nothing is kept; descriptors returned are the caller's to close.
 * Threads: safe from any thread (no shared state but the test switch).
 */
#ifndef COFFER_AGENT_RESTORE_CONFINED_H
#define COFFER_AGENT_RESTORE_CONFINED_H

#include <stdbool.h>

#include "common/base/error.h"

/* Whether rel is a path the functions below take (relative, no empty,
 * ".", ".." component, no control characters). */
bool agent_confined_path_ok(const char *rel);

/* open(2) of rel beneath root_fd with flags (O_CLOEXEC and O_NOFOLLOW are
 * added; with O_CREAT add O_EXCL to refuse an existing entry). */
int agent_confined_open(
    int root_fd, const char *rel, int flags, unsigned mode, int *fd_out, coffer_err *err);

/* Makes the directory rel beneath root_fd (its parent must exist) and opens
 * it (O_RDONLY | O_DIRECTORY); an existing rel is corruption. */
int agent_confined_mkdir(int root_fd, const char *rel, unsigned mode, int *fd_out, coffer_err *err);

/* Opens the existing directory rel beneath root_fd (O_RDONLY | O_DIRECTORY),
 * no link followed. */
int agent_confined_opendir(int root_fd, const char *rel, int *fd_out, coffer_err *err);

/* Makes rel beneath root_fd a symbolic link to target (the link's text is
 * the caller's business; it is never followed here). */
int agent_confined_symlink(int root_fd, const char *rel, const char *target, coffer_err *err);

/* Tests: walk component by component as on a kernel without openat2. */
void agent_confined_force_walk(bool on);

#endif
