/*
 * The drill runner's daemon (agent/daemon/runner.h).
 */
#include "agent/daemon/runner.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "agent/outbox/events.h"
#include "agent/report/sender.h"
#include "agent/restore/drill.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/daemon/sdnotify.h"

#define QUEUE_MAX 16
#define MAX_PROD  256

/* One RunDrill, copied out of the reply that carried it. */
typedef struct drill_job {
	uint64_t command_id;
	char *strings[4 + AGENT_DRILL_MAX_ASSERTS + MAX_PROD]; /* owned copies */
	size_t n_strings;
	const char *prod[MAX_PROD];
	agent_drill_request req;
	agent_drill_result res;
	int rc;
	coffer_err err;
} drill_job;

typedef struct runner {
	agent_ctx *ctx;
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	coffer_sd_loop sd; /* READY=1, then WATCHDOG=1, from this loop */
	uv_async_t async;
	uv_work_t work;
	agent_sender *sender;
	agent_cancel *cancel;
	bool running, stopping;
	drill_job *current;
	uv_mutex_t mu;
	bool closed;                 /* mu */
	drill_job *queue[QUEUE_MAX]; /* mu */
	size_t n;                    /* mu */
} runner;

static void
job_free(drill_job *j)
{
	if (j == NULL) {
		return;
	}
	for (size_t i = 0; i < j->n_strings; i++) {
		free(j->strings[i]);
	}
	free(j);
}

static const char *
keep(drill_job *j, const char *s)
{
	if (s == NULL || j->n_strings >= sizeof(j->strings) / sizeof(j->strings[0])) {
		return (NULL);
	}
	char *c = strdup(s);
	if (c != NULL) {
		j->strings[j->n_strings++] = c;
	}
	return (c);
}

/* Sender thread: copy the command and wake the loop. */
static void
on_drill(void *arg, uint64_t command_id, const Coffer__V1__RunDrill *rd)
{
	runner *r = arg;
	drill_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		coffer_log_error("no memory for a drill", "command=%" PRIu64, command_id);
		return;
	}
	j->command_id = command_id;
	agent_drill_request *q = &j->req;
	q->drill_id = rd->drill_id;
	q->service = keep(j, rd->service);
	q->backup = keep(j, rd->backup_id);
	q->repository = keep(
	    j, rd->repository != NULL && rd->repository[0] != '\0' ? rd->repository : "primary");
	q->rto_ms = (int64_t)rd->rto_minutes * 60 * 1000;
	q->freshness_query = keep(j, rd->freshness_query);
	q->freshness_max_lag_ms = rd->freshness_max_lag_s * 1000;
	for (size_t i = 0; i < rd->n_assertions && i < AGENT_DRILL_MAX_ASSERTS; i++) {
		q->asserts[q->n_asserts++] = keep(j, rd->assertions[i]);
	}
	for (size_t i = 0; i < rd->n_production_system_ids && i < MAX_PROD; i++) {
		j->prod[q->n_production++] = keep(j, rd->production_system_ids[i]);
	}
	q->production_system_ids = j->prod;
	q->drop_on_failure = rd->drop_sandbox_on_failure;
	q->cancel = r->cancel;
	uv_mutex_lock(&r->mu);
	if (!r->closed && r->n < QUEUE_MAX && q->service != NULL && q->backup != NULL) {
		r->queue[r->n++] = j;
		j = NULL;
		uv_async_send(&r->async);
	}
	uv_mutex_unlock(&r->mu);
	job_free(j);
}

/* The result, then the command's completion, both durable in the outbox. */
static void
report(runner *r, drill_job *j)
{
	const agent_drill_result *res = &j->res;
	Coffer__V1__CheckResult cr[AGENT_DRILL_MAX_CHECKS];
	Coffer__V1__CheckResult *crp[AGENT_DRILL_MAX_CHECKS];
	for (size_t i = 0; i < res->n_checks; i++) {
		coffer__v1__check_result__init(&cr[i]);
		cr[i].name = (char *)res->checks[i].name;
		cr[i].ok = res->checks[i].ok;
		cr[i].detail = (char *)res->checks[i].detail;
		crp[i] = &cr[i];
	}
	Coffer__V1__DrillResult dr = COFFER__V1__DRILL_RESULT__INIT;
	dr.drill_id = j->req.drill_id;
	dr.backup_id = (char *)res->backup_id;
	dr.repository = (char *)j->req.repository;
	dr.ok = res->ok;
	dr.restore_ms = res->restore_ms;
	dr.total_ms = res->total_ms;
	dr.n_checks = res->n_checks;
	dr.checks = crp;
	dr.sandbox = (char *)(res->sandbox_kept ? res->sandbox : "");
	dr.service = (char *)j->req.service;
	dr.failure = (char *)res->failure;
	dr.backup_finished_at_ms = res->backup_finished_at_ms;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_DRILL_RESULT;
	ev.drill_result = &dr;
	coffer_err err = { 0 };
	int64_t now = coffer_clock_now(NULL);
	/* A drill that could not be judged has no result, only its reason. */
	if (j->rc == 0 &&
	    agent_events_emit(r->ctx->outbox, j->req.service, now, &ev, NULL, &err) != 0) {
		coffer_log_error("drill result not recorded", "drill=%" PRIu64 " error=\"%s\"",
		    j->req.drill_id, err.msg);
	}
	Coffer__V1__CommandDone done = COFFER__V1__COMMAND_DONE__INIT;
	done.command_id = j->command_id;
	done.ok = j->rc == 0;
	done.detail = j->rc == 0 ? (char *)(res->ok ? "drill passed" : "drill failed") : j->err.msg;
	done.backup_id = (char *)res->backup_id;
	Coffer__V1__Event dev = COFFER__V1__EVENT__INIT;
	dev.kind_case = COFFER__V1__EVENT__KIND_COMMAND_DONE;
	dev.command_done = &done;
	coffer_err_clear(&err);
	if (agent_events_emit(r->ctx->outbox, j->req.service, now, &dev, NULL, &err) != 0) {
		coffer_log_error("command outcome not recorded", "command=%" PRIu64 " error=\"%s\"",
		    j->command_id, err.msg);
	}
}

static void
drill_work(uv_work_t *w)
{
	runner *r = w->data;
	drill_job *j = r->current;
	j->rc = agent_drill_run(r->ctx->cfg, &j->req, &j->res, &j->err);
	if (j->rc != COFFER_ECANCELED) {
		report(r, j);
	}
}

static void start_next(runner *r);

static void
close_handles(runner *r)
{
	uv_close((uv_handle_t *)&r->sigterm, NULL);
	uv_close((uv_handle_t *)&r->sigint, NULL);
	coffer_sd_loop_stop(&r->sd);
	uv_mutex_lock(&r->mu);
	r->closed = true;
	uv_mutex_unlock(&r->mu);
	uv_close((uv_handle_t *)&r->async, NULL);
}

static void
drill_done(uv_work_t *w, int status)
{
	runner *r = w->data;
	(void)status;
	job_free(r->current);
	r->current = NULL;
	r->running = false;
	agent_sender_kick(r->sender);
	if (r->stopping) {
		close_handles(r);
		return;
	}
	coffer_sd_status("waiting for drills");
	start_next(r);
}

/* One drill at a time: a runner's sandbox is one server. */
static void
start_next(runner *r)
{
	if (r->running || r->stopping) {
		return;
	}
	uv_mutex_lock(&r->mu);
	drill_job *j = NULL;
	if (r->n > 0) {
		j = r->queue[0];
		memmove(r->queue, r->queue + 1, (r->n - 1) * sizeof(r->queue[0]));
		r->n--;
	}
	uv_mutex_unlock(&r->mu);
	if (j == NULL) {
		return;
	}
	r->current = j;
	r->running = true;
	coffer_sd_status("drill running");
	r->work.data = r;
	uv_queue_work(&r->loop, &r->work, drill_work, drill_done);
}

static void
on_async(uv_async_t *h)
{
	start_next(h->data);
}

static void
on_signal(uv_signal_t *s, int signum)
{
	runner *r = s->data;
	if (r->stopping) {
		return;
	}
	r->stopping = true;
	coffer_log_info(
	    "stopping", "signal=%d drill_running=%s", signum, r->running ? "yes" : "no");
	coffer_sd_stopping(r->running ? "stopping: cancelling the running drill" : "stopping");
	if (r->running) {
		/* The drill is cancelled between steps; its command stays owed
		 * and the coordinator hands it out again. */
		agent_cancel_trigger(r->cancel);
		return;
	}
	close_handles(r);
}

int
agent_runner_run(agent_ctx *ctx, coffer_err *err)
{
	if (!ctx->cfg->coordinator_present) {
		coffer_err_set(err, COFFER_EINVAL,
		    "%s: a drill runner takes its drills from the "
		    "coordinator, and there is no [coordinator]",
		    coffer_config_path(ctx->cfg->ini));
		return (coffer_err_hint(err,
		    "add [coordinator], or run one drill by hand with "
		    "`coffer-agent drill`"));
	}
	/* Sandboxes kept past their time go before anything else happens (the
	 * sender is not started yet, so no drill can race this). */
	coffer_err sweep_err = { 0 };
	size_t swept = 0;
	if (agent_drill_sweep(ctx->cfg, &swept, &sweep_err) != 0) {
		coffer_log_warn("expired sandboxes not swept", "error=\"%s\"", sweep_err.msg);
	} else if (swept > 0) {
		coffer_log_info("expired sandboxes dropped", "count=%zu", swept);
	}
	runner r;
	memset(&r, 0, sizeof(r));
	r.ctx = ctx;
	int rc = agent_cancel_new(&r.cancel, err);
	if (rc != 0) {
		return (rc);
	}
	if (uv_loop_init(&r.loop) != 0) {
		agent_cancel_free(r.cancel);
		return (coffer_err_set(err, COFFER_ENOMEM, "cannot start the event loop"));
	}
	if (agent_sender_start(ctx, &r.sender, err) != 0) {
		uv_loop_close(&r.loop);
		agent_cancel_free(r.cancel);
		return (err->code);
	}
	uv_mutex_init(&r.mu);
	uv_async_init(&r.loop, &r.async, on_async);
	r.async.data = &r;
	agent_sender_set_drill_cb(r.sender, on_drill, &r);
	uv_signal_init(&r.loop, &r.sigterm);
	uv_signal_init(&r.loop, &r.sigint);
	r.sigterm.data = r.sigint.data = &r;
	uv_signal_start(&r.sigterm, on_signal, SIGTERM);
	uv_signal_start(&r.sigint, on_signal, SIGINT);
	coffer_log_info("drill runner started", "agent=%s sandbox_jobs=%d", ctx->cfg->name,
	    ctx->cfg->drill_jobs);
	coffer_sd_loop_start(&r.sd, &r.loop, "waiting for drills");
	uv_run(&r.loop, UV_RUN_DEFAULT);
	agent_sender_stop(r.sender);
	uv_loop_close(&r.loop);
	uv_mutex_destroy(&r.mu);
	for (size_t i = 0; i < r.n; i++) {
		job_free(r.queue[i]);
	}
	agent_cancel_free(r.cancel);
	coffer_log_info("drill runner stopped", "agent=%s", ctx->cfg->name);
	return (0);
}
