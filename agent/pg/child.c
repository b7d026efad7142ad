/*
 * Child process runner on a private libuv loop. See agent/pg/child.h.
 *
 * Design notes.
 * The cancel switch must wake a loop that lives on another thread, possibly
 * from a signal handler, where no lock may be taken. It therefore holds an
 * atomic flag, an atomic pointer to the running loop's uv_async_t (NULL when
 * no child runs) and an atomic count of triggers in progress. A trigger
 * raises the count before it reads the pointer and lowers it after
 * uv_async_send; the runner clears the pointer, then waits for the count to
 * drop to zero before it closes the uv_async_t, so a trigger never sends to
 * a closed handle. If the trigger is a signal handler interrupting that very
 * wait, the handler finishes first and the wait then ends.
 *
 * The first reason to stop the child wins (chain failure, read error,
 * cancel, deadline); later ones do not change the verdict, so a cancel that
 * arrives while the child is dying of a full disk still reports the disk.
 * A reason we caused also takes precedence over how the child ended:
 * pg_dump killed by our SIGTERM is "cancelled", not "killed by signal 15".
 */
#include "agent/pg/child.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "common/base/clock.h"
#include "common/base/utf8.h"

#define CHILD_READ_BUF 65536
#define CHILD_EXCERPT  320

extern char **environ;

struct agent_cancel {
	atomic_int requested;
	atomic_int busy;
	_Atomic(uv_async_t *) target;
};

int
agent_cancel_new(agent_cancel **out, coffer_err *err)
{
	agent_cancel *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		*out = NULL;
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	atomic_init(&c->requested, 0);
	atomic_init(&c->busy, 0);
	atomic_init(&c->target, NULL);
	*out = c;
	return (0);
}

void
agent_cancel_trigger(agent_cancel *c)
{
	if (c == NULL) {
		return;
	}
	atomic_store(&c->requested, 1);
	atomic_fetch_add(&c->busy, 1);
	uv_async_t *a = atomic_load(&c->target);
	if (a != NULL) {
		uv_async_send(a);
	}
	atomic_fetch_sub(&c->busy, 1);
}

bool
agent_cancel_requested(const agent_cancel *c)
{
	return (c != NULL && atomic_load(&((agent_cancel *)c)->requested) != 0);
}

void
agent_cancel_free(agent_cancel *c)
{
	free(c);
}

static void
cancel_attach(agent_cancel *c, uv_async_t *a)
{
	if (c != NULL) {
		atomic_store(&c->target, a);
	}
}

static void
cancel_detach(agent_cancel *c)
{
	if (c == NULL) {
		return;
	}
	atomic_store(&c->target, NULL);
	while (atomic_load(&c->busy) != 0) {
		sched_yield();
	}
}

enum stop_reason {
	STOP_NONE = 0,
	STOP_CHAIN,
	STOP_READ,
	STOP_CANCEL,
	STOP_DEADLINE,
};

struct child_run {
	uv_loop_t loop;
	uv_process_t proc;
	uv_pipe_t out;
	uv_pipe_t errp;
	uv_timer_t deadline;
	uv_timer_t grace;
	uv_async_t wake;
	const agent_child_spec *spec;
	agent_child_result *res;
	int64_t grace_ms;
	bool proc_running;
	bool out_open;
	bool err_open;
	bool killing;
	bool closing_all;
	enum stop_reason reason;
	int read_errno; /* uv error code for STOP_READ */
	int chain_rv;
	coffer_err chain_err;
	uint8_t buf[CHILD_READ_BUF];
};

static void maybe_done(struct child_run *r);

static void
on_handle_closed(uv_handle_t *h)
{
	struct child_run *r = h->data;
	if (h == (uv_handle_t *)&r->out) {
		r->out_open = false;
	} else if (h == (uv_handle_t *)&r->errp) {
		r->err_open = false;
	} else if (h == (uv_handle_t *)&r->proc) {
		r->proc_running = false;
	}
	maybe_done(r);
}

static void
pipe_close(struct child_run *r, uv_pipe_t *p)
{
	(void)r;
	if (!uv_is_closing((uv_handle_t *)p)) {
		uv_read_stop((uv_stream_t *)p);
		uv_close((uv_handle_t *)p, on_handle_closed);
	}
}

/* Everything the child could still produce is in; tear the loop down. */
static void
maybe_done(struct child_run *r)
{
	if (r->proc_running || r->out_open || r->err_open || r->closing_all) {
		return;
	}
	r->closing_all = true;
	cancel_detach(r->spec->cancel);
	uv_close((uv_handle_t *)&r->wake, NULL);
	uv_close((uv_handle_t *)&r->deadline, NULL);
	uv_close((uv_handle_t *)&r->grace, NULL);
}

static void
on_grace(uv_timer_t *t)
{
	struct child_run *r = t->data;
	if (r->proc_running && !uv_is_closing((uv_handle_t *)&r->proc)) {
		uv_process_kill(&r->proc, SIGKILL);
	}
}

static void
stop_child(struct child_run *r, enum stop_reason why)
{
	if (r->reason == STOP_NONE) {
		r->reason = why;
	}
	if (r->proc_running && !uv_is_closing((uv_handle_t *)&r->proc)) {
		if (!r->killing) {
			r->killing = true;
			uv_process_kill(&r->proc, SIGTERM);
			uv_timer_start(&r->grace, on_grace, (uint64_t)r->grace_ms, 0);
		}
	} else {
		/* The child is gone; something it left behind may hold the pipes. */
		pipe_close(r, &r->out);
		pipe_close(r, &r->errp);
	}
}

static void
child_on_exit(uv_process_t *p, int64_t status, int sig)
{
	struct child_run *r = p->data;
	if (sig != 0) {
		r->res->term_signal = sig;
	} else {
		r->res->exited = true;
		r->res->exit_status = (int)status;
	}
	uv_timer_stop(&r->grace);
	uv_close((uv_handle_t *)p, on_handle_closed);
	if (r->reason != STOP_NONE) {
		/* We stopped it: do not wait for EOF from something it may have
		 * started that still holds the pipes. */
		pipe_close(r, &r->out);
		pipe_close(r, &r->errp);
	}
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct child_run *r = h->data;
	(void)suggested;
	/* One buffer serves both pipes: libuv fills it and calls the read
	 * callback before it allocates again. */
	buf->base = (char *)r->buf;
	buf->len = sizeof(r->buf);
}

static void
on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct child_run *r = s->data;
	if (n > 0) {
		r->res->stdout_bytes += (uint64_t)n;
		coffer_filter *chain = r->spec->stdout_chain;
		if (chain != NULL && r->reason == STOP_NONE) {
			int rv = coffer_filter_write(chain, buf->base, (size_t)n, &r->chain_err);
			if (rv != 0) {
				r->chain_rv = rv;
				/* Closing our end makes a child blocked on write get
				 * EPIPE at once; SIGTERM covers one that is not writing. */
				pipe_close(r, &r->out);
				stop_child(r, STOP_CHAIN);
			}
		}
		return;
	}
	if (n < 0) {
		if (n != UV_EOF) {
			r->read_errno = (int)n;
			stop_child(r, STOP_READ);
		}
		pipe_close(r, &r->out);
	}
}

static void
tail_append(agent_child_result *res, const char *data, size_t n)
{
	const size_t cap = AGENT_CHILD_STDERR_MAX;
	if (n >= cap) {
		memcpy(res->stderr_tail, data + (n - cap), cap);
		res->stderr_cut = res->stderr_cut || n > cap || res->stderr_len > 0;
		res->stderr_len = cap;
	} else {
		if (res->stderr_len + n > cap) {
			size_t drop = res->stderr_len + n - cap;
			memmove(res->stderr_tail, res->stderr_tail + drop, res->stderr_len - drop);
			res->stderr_len -= drop;
			res->stderr_cut = true;
		}
		memcpy(res->stderr_tail + res->stderr_len, data, n);
		res->stderr_len += n;
	}
	res->stderr_tail[res->stderr_len] = '\0';
}

static void
on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct child_run *r = s->data;
	if (n > 0) {
		tail_append(r->res, buf->base, (size_t)n);
		return;
	}
	if (n < 0) {
		pipe_close(r, &r->errp);
	}
}

static void
on_wake(uv_async_t *a)
{
	struct child_run *r = a->data;
	if (agent_cancel_requested(r->spec->cancel)) {
		stop_child(r, STOP_CANCEL);
	}
}

static void
on_deadline(uv_timer_t *t)
{
	struct child_run *r = t->data;
	stop_child(r, STOP_DEADLINE);
}

/* One line from the end of stderr: whitespace runs folded, control bytes
 * replaced, the start cut (at a character boundary) if it does not fit. */
static void
stderr_excerpt(const agent_child_result *res, char *out, size_t size)
{
	char folded[AGENT_CHILD_STDERR_MAX + 1];
	size_t j = 0;
	bool space = false;
	for (size_t i = 0; i < res->stderr_len; i++) {
		unsigned char c = (unsigned char)res->stderr_tail[i];
		if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
			space = j > 0;
			continue;
		}
		if (space) {
			folded[j++] = ' ';
			space = false;
		}
		folded[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	folded[j] = '\0';
	if (j == 0) {
		snprintf(out, size, "(nothing on stderr)");
		return;
	}
	if (j < size) {
		memcpy(out, folded, j + 1);
		return;
	}
	size_t start = j - (size - 4);
	start = coffer_utf8_boundary_after(folded, j, start);
	snprintf(out, size, "...%s", folded + start);
}

static char **
env_build(const char *const *add)
{
	size_t nenv = 0;
	size_t nadd = 0;
	while (environ != NULL && environ[nenv] != NULL) {
		nenv++;
	}
	while (add[nadd] != NULL) {
		nadd++;
	}
	char **env = calloc(nenv + nadd + 1, sizeof(*env));
	if (env == NULL) {
		return (NULL);
	}
	size_t k = 0;
	for (size_t i = 0; i < nenv; i++) {
		bool replaced = false;
		for (size_t a = 0; a < nadd && !replaced; a++) {
			const char *eq = strchr(add[a], '=');
			size_t klen = eq != NULL ? (size_t)(eq - add[a]) : strlen(add[a]);
			replaced =
			    strncmp(environ[i], add[a], klen) == 0 && environ[i][klen] == '=';
		}
		if (!replaced) {
			env[k++] = environ[i];
		}
	}
	for (size_t a = 0; a < nadd; a++) {
		env[k++] = (char *)add[a];
	}
	env[k] = NULL;
	return (env);
}

static const char *
child_name(const agent_child_spec *spec)
{
	if (spec->name != NULL) {
		return (spec->name);
	}
	const char *slash = strrchr(spec->argv[0], '/');
	return (slash != NULL ? slash + 1 : spec->argv[0]);
}

static int
verdict(struct child_run *r, const char *name, int64_t window_ms, coffer_err *err)
{
	const agent_child_spec *spec = r->spec;
	agent_child_result *res = r->res;
	char excerpt[CHILD_EXCERPT];
	stderr_excerpt(res, excerpt, sizeof(excerpt));

	switch (r->reason) {
	case STOP_CHAIN:
		if (err != NULL) {
			*err = r->chain_err;
		}
		return (coffer_err_wrap(err, "writing %s output", name));
	case STOP_READ:
		coffer_err_set(
		    err, COFFER_EIO, "reading %s output: %s", name, uv_strerror(r->read_errno));
		return (coffer_err_hint(err, "the pipe from the child failed; retry the run"));
	case STOP_CANCEL:
		coffer_err_set(
		    err, COFFER_ECANCELED, "%s was stopped: the run was cancelled", name);
		return (coffer_err_hint(
		    err, "a shutdown or an operator stopped it; its output was not kept"));
	case STOP_DEADLINE: {
		char dur[32];
		if (spec->deadline_what != NULL) {
			coffer_err_set(err, COFFER_ETIMEDOUT,
			    "%s did not finish within %s and was stopped", name,
			    spec->deadline_what);
		} else {
			coffer_err_set(err, COFFER_ETIMEDOUT,
			    "%s did not finish within its %s deadline and was stopped", name,
			    coffer_duration_format(
			        dur, sizeof(dur), window_ms > 0 ? window_ms : 0));
		}
		return (coffer_err_hint(err,
		    "widen the window, or find what slows %s down (waiting on a lock? see "
		    "pg_stat_activity); last stderr: %.120s",
		    name, excerpt));
	}
	case STOP_NONE:
		break;
	}
	if (res->term_signal != 0) {
		const char *abbrev = sigabbrev_np(res->term_signal);
		coffer_err_set(err, COFFER_ECHILD, "%s was killed by signal %d (SIG%s): %s", name,
		    res->term_signal, abbrev != NULL ? abbrev : "?", excerpt);
		return (coffer_err_hint(err,
		    "something outside Coffer killed it; check the system log (out of memory?)"));
	}
	if (!res->exited || res->exit_status != 0) {
		coffer_err_set(err, COFFER_ECHILD, "%s exited with status %d: %s", name,
		    res->exit_status, excerpt);
		return (coffer_err_hint(
		    err, "see %s's message above; its options and the server log", name));
	}
	return (0);
}

int
agent_child_run(const agent_child_spec *spec, agent_child_result *res, coffer_err *err)
{
	agent_child_result scratch;
	if (res == NULL) {
		res = &scratch;
	}
	memset(res, 0, sizeof(*res));
	if (spec == NULL || spec->argv == NULL || spec->argv[0] == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "agent_child_run: no program given"));
	}
	const char *name = child_name(spec);
	int64_t start = coffer_clock_monotonic_ms();
	if (agent_cancel_requested(spec->cancel)) {
		coffer_err_set(
		    err, COFFER_ECANCELED, "%s was not started: the run was cancelled", name);
		return (coffer_err_hint(err, "a shutdown or an operator stopped the run"));
	}
	if (spec->deadline_ms > 0 && start >= spec->deadline_ms) {
		coffer_err_set(err, COFFER_ETIMEDOUT, "%s was not started: %s had already passed",
		    name, spec->deadline_what != NULL ? spec->deadline_what : "its deadline");
		return (
		    coffer_err_hint(err, "widen the window; the steps before it took all of it"));
	}

	struct child_run *r = calloc(1, sizeof(*r));
	if (r == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory starting %s", name));
	}
	r->spec = spec;
	r->res = res;
	r->grace_ms = spec->kill_grace_ms > 0 ? spec->kill_grace_ms : AGENT_CHILD_DEFAULT_GRACE_MS;
	char **env = NULL;
	if (spec->env_add != NULL && (env = env_build(spec->env_add)) == NULL) {
		free(r);
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory starting %s", name));
	}
	int uvrv = uv_loop_init(&r->loop);
	if (uvrv != 0) {
		free(env);
		free(r);
		return (coffer_err_set(
		    err, COFFER_EIO, "starting %s: event loop: %s", name, uv_strerror(uvrv)));
	}
	uv_pipe_init(&r->loop, &r->out, 0);
	uv_pipe_init(&r->loop, &r->errp, 0);
	uv_timer_init(&r->loop, &r->deadline);
	uv_timer_init(&r->loop, &r->grace);
	uv_async_init(&r->loop, &r->wake, on_wake);
	r->out.data = r->errp.data = r->deadline.data = r->grace.data = r->wake.data = r;
	r->proc.data = r;
	r->out_open = r->err_open = true;
	cancel_attach(spec->cancel, &r->wake);

	uv_stdio_container_t stdio[3];
	stdio[0].flags = UV_IGNORE; /* libuv gives the child /dev/null */
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&r->out;
	stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[2].data.stream = (uv_stream_t *)&r->errp;
	uv_process_options_t opts;
	memset(&opts, 0, sizeof(opts));
	opts.exit_cb = child_on_exit;
	opts.file = spec->argv[0];
	opts.args = (char **)spec->argv;
	opts.env = env;
	opts.stdio_count = 3;
	opts.stdio = stdio;

	int rv = 0;
	uvrv = uv_spawn(&r->loop, &r->proc, &opts);
	free(env);
	if (uvrv != 0) {
		uv_close((uv_handle_t *)&r->proc, NULL);
		pipe_close(r, &r->out);
		pipe_close(r, &r->errp);
		/* maybe_done closes the rest once both pipes are closed. */
		uv_run(&r->loop, UV_RUN_DEFAULT);
		if (uvrv == UV_ENOENT) {
			coffer_err_set(
			    err, COFFER_ENOENT, "cannot run %s: %s not found", name, spec->argv[0]);
			coffer_err_hint(err, "%s",
			    spec->not_found_hint != NULL ? spec->not_found_hint
			                                 : "install it, or give its full path");
			rv = COFFER_ENOENT;
		} else if (uvrv == UV_EACCES) {
			coffer_err_set(err, COFFER_EPERM, "cannot run %s: %s is not executable",
			    name, spec->argv[0]);
			coffer_err_hint(err, "check the file's mode and the directories above it");
			rv = COFFER_EPERM;
		} else {
			coffer_err_set(err, COFFER_ECHILD, "cannot start %s (%s): %s", name,
			    spec->argv[0], uv_strerror(uvrv));
			coffer_err_hint(err, "check the system's process and memory limits");
			rv = COFFER_ECHILD;
		}
	} else {
		r->proc_running = true;
		uv_read_start((uv_stream_t *)&r->out, on_alloc, on_out_read);
		uv_read_start((uv_stream_t *)&r->errp, on_alloc, on_err_read);
		if (spec->deadline_ms > 0) {
			int64_t left = spec->deadline_ms - coffer_clock_monotonic_ms();
			uv_timer_start(&r->deadline, on_deadline, left > 0 ? (uint64_t)left : 0, 0);
		}
		/* A trigger before attach set the flag but had nothing to wake. */
		if (agent_cancel_requested(spec->cancel)) {
			stop_child(r, STOP_CANCEL);
		}
		uv_run(&r->loop, UV_RUN_DEFAULT);
		rv = verdict(r, name, spec->deadline_ms - start, err);
	}
	if (uv_loop_close(&r->loop) != 0) {
		/* A handle left open is a bug here; never free a loop in use. */
		coffer_err_set(err, COFFER_EINTERNAL, "running %s: event loop still busy", name);
		res->wall_ms = coffer_clock_monotonic_ms() - start;
		return (COFFER_EINTERNAL);
	}
	free(r);
	res->wall_ms = coffer_clock_monotonic_ms() - start;
	if (rv == 0 && spec->stdout_chain != NULL) {
		rv = coffer_filter_finish(spec->stdout_chain, err);
		if (rv != 0) {
			coffer_err_wrap(err, "finishing %s output", name);
		}
	}
	return (rv);
}
