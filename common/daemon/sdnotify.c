#include "common/daemon/sdnotify.h"

#include <stdarg.h>
#include <stdio.h>

#ifdef COFFER_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "common/base/log.h"

/* A status longer than this is cut: systemctl shows one short line. */
#define STATUS_MAX 256

static void
sd_send(const char *state, const char *status)
{
#ifdef COFFER_HAVE_SYSTEMD
	/* Failures are not the daemon's business: without a manager listening
	 * there is no one to tell, and the log has said the same already. */
	if (state != NULL && status != NULL && status[0] != '\0') {
		(void)sd_notifyf(0, "%s\nSTATUS=%s", state, status);
	} else if (state != NULL) {
		(void)sd_notify(0, state);
	} else if (status != NULL) {
		(void)sd_notifyf(0, "STATUS=%s", status);
	}
#else
	(void)state;
	(void)status;
#endif
}

void
coffer_sd_status(const char *fmt, ...)
{
	char line[STATUS_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sd_send(NULL, line);
}

void
coffer_sd_stopping(const char *status)
{
	sd_send("STOPPING=1", status);
}

static void
on_loop_timer(uv_timer_t *t)
{
	coffer_sd_loop *w = t->data;
	if (!w->ready_sent) {
		w->ready_sent = true;
		sd_send("READY=1", w->status);
	}
	/* Runs only when the loop gets round to its timers: a loop stuck in a
	 * callback sends nothing, which is the point. */
	if (w->interval_ms > 0) {
		sd_send("WATCHDOG=1", NULL);
	}
}

void
coffer_sd_loop_start(coffer_sd_loop *w, uv_loop_t *loop, const char *status)
{
	w->started = false;
	w->ready_sent = false;
	w->interval_ms = 0;
	snprintf(w->status, sizeof(w->status), "%s", status != NULL ? status : "");
#ifdef COFFER_HAVE_SYSTEMD
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		w->interval_ms = usec / 2000 > 0 ? usec / 2000 : 1;
		coffer_log_info(
		    "watchdog pinging", "interval_ms=%llu", (unsigned long long)w->interval_ms);
	}
	if (uv_timer_init(loop, &w->timer) != 0) {
		/* Cannot happen on a live loop; readiness must not be lost. */
		sd_send("READY=1", w->status);
		return;
	}
	w->timer.data = w;
	uv_timer_start(&w->timer, on_loop_timer, 0, w->interval_ms);
	w->started = true;
#else
	(void)loop;
#endif
}

void
coffer_sd_loop_stop(coffer_sd_loop *w)
{
	if (!w->started) {
		return;
	}
	w->started = false;
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, NULL);
}
