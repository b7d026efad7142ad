/*
 * What a daemon tells its service manager (systemd's sd_notify protocol):
 * READY=1 once it serves, STATUS= lines an operator sees in `systemctl
 * status`, STOPPING=1 when it begins to stop, and WATCHDOG=1 pings from the
 * daemon's own libuv loop, so a loop that hangs stops pinging and systemd
 * (WatchdogSec= in the unit) kills and restarts the daemon.
 *
 * Outside systemd (no NOTIFY_SOCKET) every call does nothing; so does a
 * build without libsystemd (COFFER_SYSTEMD=OFF). Safe from any thread: each
 * message is one datagram.
 */
#ifndef COFFER_COMMON_DAEMON_SDNOTIFY_H
#define COFFER_COMMON_DAEMON_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Embedded in the daemon's state; lives as long as its loop runs. */
typedef struct coffer_sd_loop {
	uv_timer_t timer;
	uint64_t interval_ms; /* between watchdog pings: half of WATCHDOG_USEC, or 0 */
	bool started;
	bool ready_sent;
	char status[128]; /* sent with READY=1 */
} coffer_sd_loop;

/* STATUS=<formatted text>: one line, what the daemon is doing now. */
void coffer_sd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* STOPPING=1 together with STATUS=status. */
void coffer_sd_stopping(const char *status);

/* Call when everything the daemon serves with is open, just before
 * uv_run(loop): the loop's first timer pass sends READY=1 (with
 * STATUS=status), so readiness means the loop runs. When systemd asked for
 * a watchdog (WATCHDOG_USEC, for this process) the same timer then sends
 * WATCHDOG=1 every half interval; a loop stuck in a callback sends none. */
void coffer_sd_loop_start(coffer_sd_loop *w, uv_loop_t *loop, const char *status);

/* Stops the pings and closes the timer (the loop finishes the close). */
void coffer_sd_loop_stop(coffer_sd_loop *w);

#endif
