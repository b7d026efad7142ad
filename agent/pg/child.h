/*
 * Child processes (pg_dump, pg_restore) run to completion on the calling
 * thread, with a private libuv loop: stdin is /dev/null, stdout is pushed
 * into a filter chain as it arrives, stderr is kept (its last
 * AGENT_CHILD_STDERR_MAX bytes) for the failure message.
 *
 * What it promises:
 * - The chain is finished only if the child exited with status 0 and every
 *   write into it succeeded, so a failed dump never finishes (and never
 *   publishes) its output. The chain is never freed here.
 * - Each way of failing has its own code: exit status != 0 and death by a
 *   signal are COFFER_ECHILD (the message names the status or the signal and
 *   carries the end of stderr), a passed deadline COFFER_ETIMEDOUT, a
 *   cancel COFFER_ECANCELED, a missing binary COFFER_ENOENT, and a failing
 *   chain its own error (COFFER_ENOSPC for a full disk). In the last three
 *   cases, and on a chain error, the child is stopped: SIGTERM, then SIGKILL
 *   after a grace period.
 * - Memory is bounded: one read buffer and the stderr tail. Writes into the
 *   chain happen inside the read callback, so while the chain is busy
 *   nothing more is read and the child blocks on its full pipe
 *   (back-pressure without extra buffering).
 *
 * Threads: agent_child_run blocks its thread until the child is gone and
 * all handles are closed; call it on a worker thread, never on a daemon's
 * loop. agent_cancel_trigger may be called from any thread and from a
 * signal handler.
 */
#ifndef COFFER_AGENT_PG_CHILD_H
#define COFFER_AGENT_PG_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/stream/filter.h"

#define AGENT_CHILD_STDERR_MAX       8192
#define AGENT_CHILD_DEFAULT_GRACE_MS 5000

/* A cancel switch shared between the thread running a child and whoever may
 * stop it. Once triggered it stays triggered; agent_child_run refuses to
 * start (COFFER_ECANCELED) with a triggered cancel. */
typedef struct agent_cancel agent_cancel;

int agent_cancel_new(agent_cancel **out, coffer_err *err);

/* Thread-safe and async-signal-safe. */
void agent_cancel_trigger(agent_cancel *c);
bool agent_cancel_requested(const agent_cancel *c);

/* Must not race with agent_child_run or agent_cancel_trigger on c. c may be NULL.
 * One cancel serves one agent_child_run at a time (runs in sequence may share
 * it: a backup's steps); concurrent runs need one each. */
void agent_cancel_free(agent_cancel *c);

typedef struct agent_child_spec {
	/* argv[0] is the program: a path, or a name looked up in PATH. NULL-terminated. */
	const char *const *argv;
	/* "NAME=value" entries added to (or replacing in) the inherited
	 * environment; NULL-terminated; may be NULL. */
	const char *const *env_add;
	/* Name used in messages ("pg_dump"); NULL: the basename of argv[0]. */
	const char *name;
	/* Receives stdout; NULL discards it. Not finished unless the child succeeded. */
	coffer_filter *stdout_chain;
	/* coffer_clock_monotonic_ms() value after which the child is stopped;
	 * 0: none. */
	int64_t deadline_ms;
	/* Text naming the deadline for the message ("completion_window = 2h");
	 * NULL: the remaining time is named instead. */
	const char *deadline_what;
	/* Between SIGTERM and SIGKILL; 0: AGENT_CHILD_DEFAULT_GRACE_MS. */
	int64_t kill_grace_ms;
	agent_cancel *cancel; /* may be NULL */
	/* Hint when argv[0] cannot be found ("set [postgres] bin_dir ..."); may be NULL. */
	const char *not_found_hint;
} agent_child_spec;

typedef struct agent_child_result {
	bool exited; /* ended by exit(): exit_status is valid */
	int exit_status;
	int term_signal;       /* ended by this signal; 0 if it exited */
	uint64_t stdout_bytes; /* read from stdout (pushed into the chain, or discarded) */
	int64_t wall_ms;
	char stderr_tail[AGENT_CHILD_STDERR_MAX + 1]; /* last bytes of stderr, NUL-terminated */
	size_t stderr_len;
	bool stderr_cut; /* stderr was longer than what is kept */
} agent_child_result;

/* Runs the child to the end. Returns 0 only if it exited with status 0 and,
 * with a chain, every write and the finish of the chain succeeded. res is
 * filled in every case (res may be NULL). */
int agent_child_run(const agent_child_spec *spec, agent_child_result *res, coffer_err *err);

#endif
