/*
 * The state directory's health. See agent/outbox/statedir.h.
 *
 * Design notes.
 * A full state directory used to take the agent dark: every request to the
 * coordinator first recorded its envelope seq there, so heartbeats stopped
 * with the first ENOSPC and the coordinator only ever saw silence. The
 * heartbeat now goes out without a disk write (agent/report/sender.c) and
 * carries this record, so the coordinator can page agent_disk_full with the
 * cause instead of agent_quiet with none.
 *
 * The record is in memory on purpose: writing "the disk is full" to the
 * full disk cannot work, and the heartbeat that carries it is the durable
 * copy that matters (it lands in the catalog).
 */
#include "agent/outbox/statedir.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/statvfs.h>

#include "common/base/clock.h"
#include "common/base/log.h"

static pthread_mutex_t statedir_mu = PTHREAD_MUTEX_INITIALIZER;
static bool statedir_full;          /* statedir_mu */
static int64_t statedir_full_since; /* statedir_mu: agent clock, ms */

void
agent_statedir_note(const char *dir, const char *what, int rc)
{
	if (rc != 0 && rc != COFFER_ENOSPC) {
		return;
	}
	bool full = rc == COFFER_ENOSPC;
	pthread_mutex_lock(&statedir_mu);
	bool was = statedir_full;
	statedir_full = full;
	if (full && !was) {
		statedir_full_since = coffer_clock_now(NULL);
	} else if (!full) {
		statedir_full_since = 0;
	}
	pthread_mutex_unlock(&statedir_mu);
	if (full && !was) {
		coffer_log_warn("state directory full; durable writes fail",
		    "state_dir=%s write=\"%s\" hint=\"free space on the file system holding "
		    "state_dir; heartbeats keep going and report it, events wait until writes "
		    "succeed\"",
		    dir, what);
	} else if (!full && was) {
		coffer_log_info(
		    "state directory writable again", "state_dir=%s write=\"%s\"", dir, what);
	}
}

bool
agent_statedir_nospace(int64_t *since_ms)
{
	pthread_mutex_lock(&statedir_mu);
	bool full = statedir_full;
	if (since_ms != NULL) {
		*since_ms = statedir_full_since;
	}
	pthread_mutex_unlock(&statedir_mu);
	return (full);
}

int
agent_statedir_free(const char *dir, uint64_t *free_bytes, coffer_err *err)
{
	*free_bytes = 0;
	struct statvfs sv;
	if (statvfs(dir, &sv) != 0) {
		return (coffer_err_errno(err, errno, "statvfs", dir));
	}
	*free_bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	return (0);
}
