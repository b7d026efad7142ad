/*
 * No core dumps: the one rule every Coffer program that holds secrets
 * (key-encryption keys, signing keys, the audit key, S3 secret keys, a
 * catalog password) applies before it reads any of them.
 *
 * What it promises: after coffer_nocore_apply the process is not dumpable
 * (PR_SET_DUMPABLE 0: no core file, no ptrace or /proc/PID/mem or environ
 * by other processes of the same user) and its soft RLIMIT_CORE is 0, which
 * children inherit; the hard limit is left alone, so a PostgreSQL server a
 * restore starts may still raise its own. A program exec'd from it is
 * dumpable again (the kernel resets the flag on execve) but keeps the limit.
 */
#ifndef COFFER_COMMON_BASE_NOCORE_H
#define COFFER_COMMON_BASE_NOCORE_H

#include "common/base/error.h"

/* COFFER_EINTERNAL if the kernel refuses either setting. */
int coffer_nocore_apply(coffer_err *err);

#endif
