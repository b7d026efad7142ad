/* The notify protocol (common/daemon/sdnotify.h) against a real datagram
 * socket standing in for systemd: READY=1 comes from the loop's first pass
 * with its status, WATCHDOG=1 keeps coming while the loop runs and stops
 * while a callback holds the loop (so systemd would kill a hung daemon),
 * STATUS= and STOPPING=1 arrive as sent, and without NOTIFY_SOCKET nothing
 * is sent and the loop still ends. Interval bounds are generous. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "common/daemon/sdnotify.h"

struct fixture {
	char path[108];
	int fd;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->path, sizeof(f->path), "/tmp/coffer-sdnotify-%d.sock", (int)getpid());
	unlink(f->path);
	f->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
	if (f->fd < 0 || bind(f->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		free(f);
		return (-1);
	}
	setenv("NOTIFY_SOCKET", f->path, 1);
	unsetenv("WATCHDOG_PID");
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	close(f->fd);
	unlink(f->path);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	free(f);
	return (0);
}

/* Appends src to the string in dst (size bytes), cutting what does not fit. */
static void
append(char *dst, size_t size, const char *src)
{
	size_t have = strlen(dst), add = strlen(src);
	if (add > size - 1 - have) {
		add = size - 1 - have;
	}
	memcpy(dst + have, src, add);
	dst[have + add] = '\0';
}

/* Every datagram waiting, joined with ';' (newlines inside one as '|'). */
static void
drain(struct fixture *f, char *out, size_t size)
{
	char buf[512];
	ssize_t n;
	out[0] = '\0';
	while ((n = recv(f->fd, buf, sizeof(buf) - 1, 0)) > 0) {
		buf[n] = '\0';
		for (char *p = buf; *p != '\0'; p++) {
			if (*p == '\n') {
				*p = '|';
			}
		}
		append(out, size, buf);
		append(out, size, ";");
	}
}

static int
count(const char *all, const char *what)
{
	int n = 0;
	for (const char *p = strstr(all, what); p != NULL; p = strstr(p + 1, what)) {
		n++;
	}
	return (n);
}

typedef struct run {
	uv_loop_t loop;
	uv_timer_t stop, hold;
	uv_poll_t rx; /* the manager's side: reads as the loop runs */
	struct fixture *f;
	char got[8192];
	coffer_sd_loop sd;
	int hold_ms;
} run;

/* A datagram socket queues few messages (net.unix.max_dgram_qlen) and then
 * blocks the sender, as systemd never lets it: read them as they come. */
static void
on_rx(uv_poll_t *p, int status, int events)
{
	run *r = p->data;
	char more[4096];
	(void)status;
	(void)events;
	drain(r->f, more, sizeof(more));
	append(r->got, sizeof(r->got), more);
}

static void
on_hold(uv_timer_t *t)
{
	run *r = t->data;
	/* A callback that does not return: the loop is stuck. */
	usleep((useconds_t)r->hold_ms * 1000);
}

static void
on_stop(uv_timer_t *t)
{
	run *r = t->data;
	coffer_sd_stopping("stopping");
	coffer_sd_loop_stop(&r->sd);
	uv_close((uv_handle_t *)&r->stop, NULL);
	uv_close((uv_handle_t *)&r->hold, NULL);
	uv_poll_stop(&r->rx);
	uv_close((uv_handle_t *)&r->rx, NULL);
}

/* Runs a loop for run_ms; at hold_at_ms (if > 0) one callback holds it for
 * hold_ms. Everything received goes into out. */
static void
run_loop(struct fixture *f, int run_ms, int hold_at_ms, int hold_ms, char *out, size_t size)
{
	static run r;
	memset(&r, 0, sizeof(r));
	r.f = f;
	assert_int_equal(uv_loop_init(&r.loop), 0);
	uv_poll_init(&r.loop, &r.rx, f->fd);
	r.rx.data = &r;
	uv_poll_start(&r.rx, UV_READABLE, on_rx);
	uv_timer_init(&r.loop, &r.stop);
	uv_timer_init(&r.loop, &r.hold);
	r.stop.data = r.hold.data = &r;
	r.hold_ms = hold_ms;
	uv_timer_start(&r.stop, on_stop, (uint64_t)run_ms, 0);
	if (hold_at_ms > 0) {
		uv_timer_start(&r.hold, on_hold, (uint64_t)hold_at_ms, 0);
	}
	coffer_sd_loop_start(&r.sd, &r.loop, "serving");
	uv_run(&r.loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&r.loop), 0);
	char rest[4096];
	drain(f, rest, sizeof(rest));
	out[0] = '\0';
	append(out, size, r.got);
	append(out, size, rest);
}

static void
test_ready_then_watchdog(void **state)
{
	struct fixture *f = *state;
	char all[8192];
	setenv("WATCHDOG_USEC", "200000", 1); /* a ping every 100 ms */
	run_loop(f, 1000, 0, 0, all, sizeof(all));
	assert_true(strncmp(all, "READY=1|STATUS=serving;", 23) == 0);
	assert_int_equal(count(all, "READY=1"), 1);
	/* 10 at the rate; at least 5 under a loaded machine. */
	assert_true(count(all, "WATCHDOG=1") >= 5);
	assert_true(count(all, "WATCHDOG=1") <= 12);
	assert_non_null(strstr(all, "STOPPING=1|STATUS=stopping;"));
}

static void
test_held_loop_stops_pinging(void **state)
{
	struct fixture *f = *state;
	char all[8192];
	setenv("WATCHDOG_USEC", "200000", 1);
	/* 1.5 s with the loop held for 1 s of it: about 5 pings from the 0.5 s
	 * the loop ran. A pinger that did not depend on the loop (a thread)
	 * would send 15. */
	run_loop(f, 1500, 300, 1000, all, sizeof(all));
	assert_true(count(all, "WATCHDOG=1") >= 2);
	assert_true(count(all, "WATCHDOG=1") <= 9);
}

static void
test_status_line(void **state)
{
	struct fixture *f = *state;
	char all[1024];
	coffer_sd_status("catalog unreachable; not acking: %s", "connection refused");
	drain(f, all, sizeof(all));
	assert_string_equal(all, "STATUS=catalog unreachable; not acking: connection refused;");
}

static void
test_no_watchdog_no_socket(void **state)
{
	struct fixture *f = *state;
	char all[1024];
	unsetenv("WATCHDOG_USEC");
	run_loop(f, 300, 0, 0, all, sizeof(all));
	assert_int_equal(count(all, "WATCHDOG=1"), 0);
	assert_int_equal(count(all, "READY=1"), 1);
	/* Outside systemd: nothing is sent, nothing breaks. */
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "200000", 1);
	run_loop(f, 300, 0, 0, all, sizeof(all));
	coffer_sd_status("x");
	char late[256];
	drain(f, late, sizeof(late));
	append(all, sizeof(all), late);
	assert_string_equal(all, "");
	setenv("NOTIFY_SOCKET", f->path, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_ready_then_watchdog, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_loop_stops_pinging, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_watchdog_no_socket, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
