#include "agent/daemon/daemon.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "agent/backup/backup.h"
#include "agent/backup/physical.h"
#include "agent/outbox/events.h"
#include "agent/report/sender.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"
#include "common/daemon/sdnotify.h"

/* The schedule is re-read from the clock at least this often, so a clock
 * step (NTP, suspend) delays a run by at most this much. */
#define MAX_SLEEP_MS (60 * 1000)

typedef struct agent_daemon {
	agent_ctx *ctx;
	uv_loop_t loop;
	uv_timer_t timer;
	uv_signal_t sigterm, sigint;
	coffer_sd_loop sd; /* READY=1, then WATCHDOG=1, from this loop */
	uv_work_t work;
	coffer_cron *cron;
	coffer_tz *tz;
	int64_t next_run_s;    /* the next scheduled instant */
	coffer_cron *pcron;    /* [schedule] physical; NULL if unset */
	int64_t pnext_run_s;   /* its next instant */
	bool job_physical;     /* the running backup's kind */
	int64_t running_for_s; /* the scheduled instant the running backup is for */
	bool running;
	bool stopping;
	agent_cancel *cancel;
	agent_backup_request req;
	agent_backup_result res;
	coffer_err job_err;
	int job_rc;
	agent_sender *sender; /* NULL without [coordinator] */
	/* Commands from the coordinator, handed over by the sender thread. */
	uv_async_t cmd_async;
	uv_mutex_t cmd_mu;
	bool cmd_closed;        /* cmd_mu */
	uint64_t cmd_queue[16]; /* cmd_mu: received, not yet started */
	bool cmd_physical[16];  /* cmd_mu: the kind each asked for */
	size_t cmd_n;           /* cmd_mu */
} agent_daemon;

static void arm(agent_daemon *d);
static void start_queued_command(agent_daemon *d);

static void
backup_work(uv_work_t *w)
{
	agent_daemon *d = w->data;
	coffer_err_clear(&d->job_err);
	d->job_rc = d->job_physical ? agent_physical_backup(d->ctx, &d->req, &d->res, &d->job_err)
	                            : agent_backup_logical(d->ctx, &d->req, &d->res, &d->job_err);
	if (d->req.command_id == 0) {
		return;
	}
	/* The coordinator keeps handing a command out until it hears it is
	 * done; this event (durable, like every outcome) says so. */
	Coffer__V1__CommandDone done = COFFER__V1__COMMAND_DONE__INIT;
	done.command_id = d->req.command_id;
	done.ok = d->job_rc == 0;
	done.detail = d->job_rc == 0 ? (char *)"backup completed" : d->job_err.msg;
	done.backup_id = d->res.backup_id;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_COMMAND_DONE;
	ev.command_done = &done;
	coffer_err err = { 0 };
	if (agent_events_emit(d->ctx->outbox, d->ctx->cfg->service, coffer_clock_now(NULL), &ev,
	        NULL, &err) != 0) {
		coffer_log_error("command outcome not recorded", "command=%" PRIu64 " error=\"%s\"",
		    d->req.command_id, err.msg);
	}
}

static void
stop_handles(agent_daemon *d)
{
	uv_timer_stop(&d->timer);
	uv_close((uv_handle_t *)&d->timer, NULL);
	coffer_sd_loop_stop(&d->sd);
	uv_close((uv_handle_t *)&d->sigterm, NULL);
	uv_close((uv_handle_t *)&d->sigint, NULL);
	uv_mutex_lock(&d->cmd_mu);
	d->cmd_closed = true;
	uv_mutex_unlock(&d->cmd_mu);
	uv_close((uv_handle_t *)&d->cmd_async, NULL);
}

static void
backup_done(uv_work_t *w, int status)
{
	agent_daemon *d = w->data;
	(void)status;
	d->running = false;
	/* The backup's events are in the outbox now: ship them at once. */
	agent_sender_note_backup(
	    d->sender, false, d->job_rc == 0 ? d->res.backup_id : NULL, coffer_clock_now(NULL));
	agent_sender_kick(d->sender);
	if (d->job_rc != 0) {
		/* backup.c already logged and recorded it; this names the schedule slot. */
		coffer_log_warn("scheduled backup failed", "service=%s backup=%s error=\"%s\"",
		    d->ctx->cfg->service, d->res.backup_id, d->job_err.msg);
	}
	if (d->stopping) {
		stop_handles(d);
		return;
	}
	if (d->job_rc != 0) {
		coffer_sd_status("last backup failed: %s", d->job_err.msg);
	} else {
		coffer_sd_status("last backup %s completed", d->res.backup_id);
	}
	start_queued_command(d);
	arm(d);
}

static void
start_backup(agent_daemon *d, int64_t scheduled_s, bool physical)
{
	if (d->running) {
		/* One backup at a time per service: a run that is still going when
		 * the next slot comes means the schedule is too tight, which the
		 * coordinator sees as a missed backup and pages on. */
		coffer_log_warn("backup still running at the next scheduled time; slot skipped",
		    "service=%s slot=%" PRId64 " kind=%s", d->ctx->cfg->service, scheduled_s,
		    physical ? "physical" : "logical");
		return;
	}
	d->job_physical = physical;
	memset(&d->req, 0, sizeof(d->req));
	d->req.trigger = COFFER__V1__TRIGGER__TRIGGER_SCHEDULE;
	/* The window counts from the scheduled time, not from when we got to it. */
	d->req.deadline_ms = scheduled_s * 1000 + d->ctx->cfg->completion_window_ms;
	d->req.cancel = d->cancel;
	d->running = true;
	d->running_for_s = scheduled_s;
	coffer_sd_status("%s backup running (scheduled)", physical ? "physical" : "logical");
	agent_sender_note_backup(d->sender, true, NULL, 0); /* for heartbeats */
	d->work.data = d;
	uv_queue_work(&d->loop, &d->work, backup_work, backup_done);
}

/* Sender thread: queue the command and wake the loop. */
static void
on_command(void *arg, uint64_t command_id, Coffer__V1__BackupKind kind, const char *requested_by)
{
	agent_daemon *d = arg;
	(void)requested_by;
	uv_mutex_lock(&d->cmd_mu);
	if (!d->cmd_closed && d->cmd_n < sizeof(d->cmd_queue) / sizeof(d->cmd_queue[0])) {
		d->cmd_physical[d->cmd_n] = kind == COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL;
		d->cmd_queue[d->cmd_n++] = command_id;
		uv_async_send(&d->cmd_async);
	}
	uv_mutex_unlock(&d->cmd_mu);
}

static void
start_queued_command(agent_daemon *d)
{
	if (d->running || d->stopping) {
		return;
	}
	uv_mutex_lock(&d->cmd_mu);
	uint64_t id = 0;
	bool physical = false;
	if (d->cmd_n > 0) {
		id = d->cmd_queue[0];
		physical = d->cmd_physical[0];
		memmove(d->cmd_queue, d->cmd_queue + 1, (d->cmd_n - 1) * sizeof(d->cmd_queue[0]));
		memmove(d->cmd_physical, d->cmd_physical + 1,
		    (d->cmd_n - 1) * sizeof(d->cmd_physical[0]));
		d->cmd_n--;
	}
	uv_mutex_unlock(&d->cmd_mu);
	if (id == 0) {
		return;
	}
	coffer_log_info("backup requested by the coordinator",
	    "service=%s command=%" PRIu64 " kind=%s", d->ctx->cfg->service, id,
	    physical ? "physical" : "logical");
	memset(&d->req, 0, sizeof(d->req));
	d->req.trigger = COFFER__V1__TRIGGER__TRIGGER_COMMAND;
	d->req.command_id = id;
	d->req.cancel = d->cancel;
	d->job_physical = physical;
	d->running = true;
	coffer_sd_status(
	    "%s backup running (command %" PRIu64 ")", physical ? "physical" : "logical", id);
	agent_sender_note_backup(d->sender, true, NULL, 0);
	d->work.data = d;
	uv_queue_work(&d->loop, &d->work, backup_work, backup_done);
}

static void
on_cmd_async(uv_async_t *h)
{
	start_queued_command(h->data);
}

static void
on_timer(uv_timer_t *t)
{
	agent_daemon *d = t->data;
	int64_t now_s = coffer_clock_now(NULL) / 1000;
	if (now_s >= d->next_run_s) {
		int64_t slot = d->next_run_s;
		coffer_log_info(
		    "scheduled backup due", "service=%s slot=%" PRId64, d->ctx->cfg->service, slot);
		start_backup(d, slot, false);
		coffer_err err = { 0 };
		if (coffer_cron_next(d->cron, d->tz, now_s, &d->next_run_s, &err) != 0) {
			coffer_log_error("no next scheduled run", "error=\"%s\"", err.msg);
			d->next_run_s = INT64_MAX / 2000;
		}
	}
	/* Base backups on their own schedule; a slot that meets a running
	 * backup is skipped like any other (one backup at a time). */
	if (d->pcron != NULL && now_s >= d->pnext_run_s) {
		int64_t slot = d->pnext_run_s;
		coffer_log_info("scheduled backup due", "service=%s slot=%" PRId64 " kind=physical",
		    d->ctx->cfg->service, slot);
		start_backup(d, slot, true);
		coffer_err err = { 0 };
		if (coffer_cron_next(d->pcron, d->tz, now_s, &d->pnext_run_s, &err) != 0) {
			coffer_log_error("no next scheduled physical run", "error=\"%s\"", err.msg);
			d->pnext_run_s = INT64_MAX / 2000;
		}
	}
	arm(d);
}

static void
arm(agent_daemon *d)
{
	if (d->stopping) {
		return;
	}
	int64_t now_ms = coffer_clock_now(NULL);
	int64_t next_s = d->next_run_s;
	if (d->pcron != NULL && d->pnext_run_s < next_s) {
		next_s = d->pnext_run_s;
	}
	int64_t wait = next_s * 1000 - now_ms;
	if (wait < 0) {
		wait = 0;
	}
	if (wait > MAX_SLEEP_MS) {
		wait = MAX_SLEEP_MS;
	}
	uv_timer_start(&d->timer, on_timer, (uint64_t)wait, 0);
}

static void
on_signal(uv_signal_t *s, int signum)
{
	agent_daemon *d = s->data;
	if (d->stopping) {
		return;
	}
	d->stopping = true;
	coffer_log_info(
	    "stopping", "signal=%d backup_running=%s", signum, d->running ? "yes" : "no");
	coffer_sd_stopping(d->running ? "stopping: cancelling the running backup" : "stopping");
	if (d->running) {
		/* backup_done closes the handles once the cancelled backup has
		 * been recorded as failed. */
		agent_cancel_trigger(d->cancel);
		uv_timer_stop(&d->timer);
		return;
	}
	stop_handles(d);
}

int
agent_daemon_run(agent_ctx *ctx, coffer_err *err)
{
	agent_daemon d;
	memset(&d, 0, sizeof(d));
	d.ctx = ctx;
	int rc = 0;
	d.cron = coffer_cron_parse(ctx->cfg->schedule_logical, err);
	if (d.cron == NULL) {
		return (err->code);
	}
	d.tz = coffer_tz_load(ctx->cfg->timezone, err);
	if (d.tz == NULL) {
		coffer_cron_free(d.cron);
		return (err->code);
	}
	rc = agent_cancel_new(&d.cancel, err);
	int64_t now_s = coffer_clock_now(NULL) / 1000;
	if (rc == 0) {
		rc = coffer_cron_next(d.cron, d.tz, now_s, &d.next_run_s, err);
	}
	if (rc == 0 && ctx->cfg->schedule_physical != NULL) {
		d.pcron = coffer_cron_parse(ctx->cfg->schedule_physical, err);
		rc = d.pcron == NULL ? err->code
		                     : coffer_cron_next(d.pcron, d.tz, now_s, &d.pnext_run_s, err);
	}
	if (rc == 0 && uv_loop_init(&d.loop) != 0) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "cannot start the event loop");
	}
	if (rc != 0) {
		agent_cancel_free(d.cancel);
		coffer_tz_free(d.tz);
		coffer_cron_free(d.pcron);
		coffer_cron_free(d.cron);
		return (rc);
	}
	/* Events go to the coordinator from their own thread, so a slow or
	 * absent coordinator never delays the schedule. */
	if (ctx->cfg->coordinator_present && agent_sender_start(ctx, &d.sender, err) != 0) {
		uv_loop_close(&d.loop);
		agent_cancel_free(d.cancel);
		coffer_tz_free(d.tz);
		coffer_cron_free(d.pcron);
		coffer_cron_free(d.cron);
		return (err->code);
	}
	/* Before the first scheduled backup, and while the sender already
	 * ships: a backup this agent began and never reported (a kill -9, a
	 * reboot, a full outbox) is reported now, not at the next slot. */
	coffer_err serr = { 0 };
	if (agent_backup_settle_now(ctx, NULL, &serr) != 0) {
		coffer_log_error("interrupted backups not all settled", "service=%s error=\"%s\"",
		    ctx->cfg->service, serr.msg);
	}
	uv_mutex_init(&d.cmd_mu);
	uv_async_init(&d.loop, &d.cmd_async, on_cmd_async);
	d.cmd_async.data = &d;
	if (d.sender != NULL) {
		agent_sender_set_command_cb(d.sender, on_command, &d);
	}
	uv_timer_init(&d.loop, &d.timer);
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	d.timer.data = d.sigterm.data = d.sigint.data = &d;
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	char next[40];
	coffer_time_format(next, sizeof(next), d.next_run_s * 1000);
	coffer_log_info("agent started",
	    "service=%s agent=%s schedule=\"%s\" timezone=%s next_run=%s", ctx->cfg->service,
	    ctx->cfg->name, ctx->cfg->schedule_logical, ctx->cfg->timezone, next);
	arm(&d);
	/* Config, keys, repository and outbox are open (agent_ctx_open) and
	 * the sender runs: READY=1 goes out from the loop's first pass. */
	char status[64];
	snprintf(status, sizeof(status), "next backup %s", next);
	coffer_sd_loop_start(&d.sd, &d.loop, status);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	/* After the signal and any cancelled backup: waits for at most one call. */
	agent_sender_stop(d.sender);
	uv_loop_close(&d.loop);
	uv_mutex_destroy(&d.cmd_mu);
	agent_cancel_free(d.cancel);
	coffer_tz_free(d.tz);
	coffer_cron_free(d.pcron);
	coffer_cron_free(d.cron);
	coffer_log_info("agent stopped", "service=%s", ctx->cfg->service);
	return (0);
}
