/*
 * coordinator/serve/http.c and the label escaping of coordinator/serve/metrics.c: a
 * real libuv loop in its own thread, real sockets on 127.0.0.1, and a
 * render callback that stands in for the catalog (the catalog side is
 * tests/integration/alerts.sh). Covers the answers (200, 404, 405, 400,
 * 431, 503), the connection limit, stopping while a render runs, and the
 * status page's route: its token, its headers, its 503, the redirect.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "coordinator/serve/http.h"
#include "coordinator/serve/metrics.h"

typedef struct fixture {
	uv_loop_t loop;
	uv_async_t stop;
	coord_http *http;
	pthread_t thread;
	int port;
	int fail;   /* render returns this when non-zero */
	bool block; /* render waits for `release` */
	sem_t started, release;
	int renders;
	bool done_called;
	int page_status; /* what the page callback answers with */
} fixture;

static int
page(void *arg, char **html, size_t *len, int *status)
{
	fixture *f = arg;
	*status = __atomic_load_n(&f->page_status, __ATOMIC_SEQ_CST);
	*html = strdup("<!DOCTYPE html><p>fleet</p>\n");
	*len = strlen(*html);
	return (0);
}

static int
render(void *arg, char **text, size_t *len)
{
	fixture *f = arg;
	__atomic_add_fetch(&f->renders, 1, __ATOMIC_SEQ_CST);
	/* Atomics: the test thread sets these while the pool thread reads
	 * them, ordered only through the socket, which TSan cannot see. */
	if (__atomic_load_n(&f->block, __ATOMIC_SEQ_CST)) {
		sem_post(&f->started);
		sem_wait(&f->release);
	}
	int fail = __atomic_load_n(&f->fail, __ATOMIC_SEQ_CST);
	if (fail != 0) {
		return (fail);
	}
	*text = strdup("# HELP x h\n# TYPE x gauge\nx 1\n");
	*len = strlen(*text);
	return (0);
}

static void
on_done(void *arg)
{
	((fixture *)arg)->done_called = true;
}

static void
on_async_closed(uv_handle_t *h)
{
	(void)h;
}

static void
on_stop(uv_async_t *a)
{
	fixture *f = a->data;
	coord_http_stop(f->http, on_done, f);
	uv_close((uv_handle_t *)&f->stop, on_async_closed);
}

static void *
loop_thread(void *arg)
{
	fixture *f = arg;
	uv_run(&f->loop, UV_RUN_DEFAULT);
	return (NULL);
}

static int
setup_with(void **state, bool with_page)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	sem_init(&f->started, 0, 0);
	sem_init(&f->release, 0, 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	coffer_err e;
	f->http = coord_http_start(&f->loop, "127.0.0.1:0", render, f, &e);
	assert_non_null(f->http);
	f->port = coord_http_port(f->http);
	assert_true(f->port > 0);
	if (with_page) {
		f->page_status = 200;
		coord_http_set_page(f->http, page, f);
		assert_int_equal(coord_http_set_token(f->http, "sixteen-chars-token", &e), 0);
	}
	uv_async_init(&f->loop, &f->stop, on_stop);
	f->stop.data = f;
	assert_int_equal(pthread_create(&f->thread, NULL, loop_thread, f), 0);
	*state = f;
	return (0);
}

static int
setup(void **state)
{
	return (setup_with(state, false));
}

static int
setup_page(void **state)
{
	return (setup_with(state, true));
}

static int
teardown(void **state)
{
	fixture *f = *state;
	uv_async_send(&f->stop);
	pthread_join(f->thread, NULL);
	/* Every handle closed and every render finished: the loop closes. */
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_true(f->done_called);
	sem_destroy(&f->started);
	sem_destroy(&f->release);
	free(f);
	return (0);
}

static int
dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return (fd);
}

/* Sends req and reads the whole answer (the server closes after it). */
static char *
exchange(int port, const char *req, size_t len)
{
	int fd = dial(port);
	size_t off = 0;
	while (off < len) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (w <= 0) {
			break;
		}
		off += (size_t)w;
	}
	size_t cap = 4096, got = 0;
	char *buf = malloc(cap);
	for (;;) {
		ssize_t r = recv(fd, buf + got, cap - 1 - got, 0);
		if (r <= 0) {
			break;
		}
		got += (size_t)r;
		if (got + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	buf[got] = '\0';
	close(fd);
	return (buf);
}

static int
status_of(const char *resp)
{
	int st = 0;
	if (sscanf(resp, "HTTP/1.1 %d", &st) != 1) {
		return (0);
	}
	return (st);
}

static void
expect_status(fixture *f, const char *req, int want)
{
	char *r = exchange(f->port, req, strlen(req));
	if (status_of(r) != want) {
		fail_msg("%s -> %s", req, r);
	}
	free(r);
}

static void
test_answers(void **state)
{
	fixture *f = *state;
	char *r = exchange(f->port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 35);
	assert_int_equal(status_of(r), 200);
	assert_non_null(strstr(r, "Content-Type: " COORD_METRICS_CONTENT_TYPE "\r\n"));
	assert_non_null(strstr(r, "Connection: close\r\n"));
	assert_non_null(strstr(r, "\r\n\r\n# HELP x h\n# TYPE x gauge\nx 1\n"));
	free(r);
	r = exchange(f->port, "HEAD /metrics HTTP/1.1\r\n\r\n", 26);
	assert_int_equal(status_of(r), 200);
	assert_null(strstr(r, "x 1"));
	free(r);
	expect_status(f, "GET /healthz HTTP/1.0\r\n\r\n", 200);
	expect_status(f, "GET /metrics?x=1 HTTP/1.1\r\n\r\n", 200);
	expect_status(f, "GET / HTTP/1.1\r\n\r\n", 404);
	expect_status(f, "GET /metricsx HTTP/1.1\r\n\r\n", 404);
	expect_status(f, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405);
	expect_status(f, "DELETE /healthz HTTP/1.1\r\n\r\n", 405);
	expect_status(f, "GET\r\n\r\n", 400);
	expect_status(f, "GET /metrics SPDY/3\r\n\r\n", 400);
	expect_status(f, "GET metrics HTTP/1.1\r\n\r\n", 400);
	expect_status(f, "\r\n\r\n", 400);
	char *big = malloc(3 * COORD_HTTP_MAX_REQUEST);
	memcpy(big, "GET /metrics HTTP/1.1\r\nX: ", 26);
	memset(big + 26, 'a', 3 * COORD_HTTP_MAX_REQUEST - 26);
	r = exchange(f->port, big, 3 * COORD_HTTP_MAX_REQUEST);
	assert_int_equal(status_of(r), 431);
	free(r);
	free(big);
	/* Still serving after all that. */
	expect_status(f, "GET /healthz HTTP/1.1\r\n\r\n", 200);
}

static const char *const page_headers[] = {
	"Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline';",
	"X-Content-Type-Options: nosniff\r\n",
	"Cache-Control: no-store\r\n",
	"Referrer-Policy: no-referrer\r\n",
	"X-Frame-Options: DENY\r\n",
	NULL,
};

static void
expect_page_headers(const char *r)
{
	for (size_t i = 0; page_headers[i] != NULL; i++) {
		if (strstr(r, page_headers[i]) == NULL) {
			fail_msg("no %s in %s", page_headers[i], r);
		}
	}
}

static void
test_status_page(void **state)
{
	fixture *f = *state;
	static const char with[] =
	    "GET /status HTTP/1.1\r\nAuthorization: Bearer sixteen-chars-token\r\n\r\n";
	char *r = exchange(f->port, "GET /status HTTP/1.1\r\n\r\n", 25);
	assert_int_equal(status_of(r), 401);
	assert_non_null(strstr(r, "WWW-Authenticate: Bearer\r\n"));
	expect_page_headers(r);
	assert_null(strstr(r, "fleet"));
	free(r);
	expect_status(
	    f, "GET /status HTTP/1.1\r\nAuthorization: Bearer sixteen-chars-tokeN\r\n\r\n", 401);
	r = exchange(f->port, with, strlen(with));
	assert_int_equal(status_of(r), 200);
	assert_non_null(strstr(r, "Content-Type: text/html; charset=utf-8\r\n"));
	expect_page_headers(r);
	assert_non_null(strstr(r, "\r\n\r\n<!DOCTYPE html><p>fleet</p>\n"));
	free(r);
	/* The catalog down: the page says so, and so does the status. */
	__atomic_store_n(&f->page_status, 503, __ATOMIC_SEQ_CST);
	r = exchange(f->port, with, strlen(with));
	assert_int_equal(status_of(r), 503);
	expect_page_headers(r);
	assert_non_null(strstr(r, "<p>fleet</p>"));
	free(r);
	r = exchange(f->port, "GET / HTTP/1.1\r\n\r\n", 18);
	assert_int_equal(status_of(r), 302);
	assert_non_null(strstr(r, "Location: /status\r\n"));
	expect_page_headers(r);
	free(r);
	/* /metrics keeps its own answers, behind the same token. */
	expect_status(f, "GET /metrics HTTP/1.1\r\n\r\n", 401);
	r = exchange(f->port,
	    "GET /metrics HTTP/1.1\r\nAuthorization: Bearer sixteen-chars-token\r\n\r\n", 68);
	assert_int_equal(status_of(r), 200);
	assert_null(strstr(r, "Content-Security-Policy"));
	free(r);
	expect_status(f, "GET /statusx HTTP/1.1\r\n\r\n", 404);
}

static void
test_render_failure(void **state)
{
	fixture *f = *state;
	__atomic_store_n(&f->fail, COFFER_EUNAVAIL, __ATOMIC_SEQ_CST);
	expect_status(f, "GET /metrics HTTP/1.1\r\n\r\n", 503);
	__atomic_store_n(&f->fail, 0, __ATOMIC_SEQ_CST);
	expect_status(f, "GET /metrics HTTP/1.1\r\n\r\n", 200);
}

static void
test_connection_limit(void **state)
{
	fixture *f = *state;
	int fds[COORD_HTTP_MAX_CONNS];
	for (int i = 0; i < COORD_HTTP_MAX_CONNS; i++) {
		fds[i] = dial(f->port);
	}
	/* Make sure the server has accepted them all: one full exchange on
	 * the last idle one would consume it, so ask on a new one instead,
	 * which must be closed without an answer. */
	int extra = dial(f->port);
	char buf[64];
	ssize_t r = recv(extra, buf, sizeof(buf), 0);
	assert_true(r <= 0);
	close(extra);
	for (int i = 0; i < COORD_HTTP_MAX_CONNS; i++) {
		close(fds[i]);
	}
	/* The slots come back once the server has seen the closes. */
	int st = 0;
	for (int tries = 0; tries < 500 && st != 200; tries++) {
		char *resp = exchange(f->port, "GET /healthz HTTP/1.1\r\n\r\n", 25);
		st = status_of(resp);
		free(resp);
		if (st != 200) {
			usleep(10000);
		}
	}
	assert_int_equal(st, 200);
}

typedef struct client {
	int port;
	char *resp;
} client;

static void *
client_thread(void *arg)
{
	client *c = arg;
	c->resp = exchange(c->port, "GET /metrics HTTP/1.1\r\n\r\n", 25);
	return (NULL);
}

static void
test_stop_during_render(void **state)
{
	fixture *f = *state;
	__atomic_store_n(&f->block, true, __ATOMIC_SEQ_CST);
	client c = { .port = f->port };
	pthread_t t;
	pthread_create(&t, NULL, client_thread, &c);
	sem_wait(&f->started);
	/* Stop while the render is running: the connection is closed, the
	 * render's output is dropped when it ends, and nothing leaks. */
	uv_async_send(&f->stop);
	usleep(50000);
	sem_post(&f->release);
	pthread_join(t, NULL);
	assert_int_equal(status_of(c.resp), 0);
	free(c.resp);
	/* teardown sends stop again; the async handle is closed by then, so
	 * give it a fresh one. */
	pthread_join(f->thread, NULL);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	assert_true(f->done_called);
	f->done_called = false;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	coffer_err e;
	f->http = coord_http_start(&f->loop, "127.0.0.1:0", render, f, &e);
	assert_non_null(f->http);
	uv_async_init(&f->loop, &f->stop, on_stop);
	__atomic_store_n(&f->block, false, __ATOMIC_SEQ_CST);
	pthread_create(&f->thread, NULL, loop_thread, f);
}

static void
test_bad_listen(void **state)
{
	(void)state;
	uv_loop_t loop;
	uv_loop_init(&loop);
	static const char *const bad[] = { "nope", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
		"127.0.0.1:12x", "[::1]", "[::1:9", "host.example:9187", ":9187" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		coffer_err e;
		coffer_err_clear(&e);
		assert_null(coord_http_start(&loop, bad[i], render, NULL, &e));
		assert_int_equal(e.code, COFFER_EINVAL);
		assert_non_null(strstr(e.hint, "metrics_listen"));
	}
	/* A taken port is refused, and the half-made server is cleaned up
	 * by the loop. */
	coffer_err e;
	coord_http *h = coord_http_start(&loop, "127.0.0.1:0", render, NULL, &e);
	assert_non_null(h);
	char taken[32];
	snprintf(taken, sizeof(taken), "127.0.0.1:%d", coord_http_port(h));
	assert_null(coord_http_start(&loop, taken, render, NULL, &e));
	assert_int_equal(e.code, COFFER_EUNAVAIL);
	coord_http_stop(h, NULL, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void
test_escape_label(void **state)
{
	(void)state;
	char out[64];
	assert_int_equal(coord_metrics_escape_label(out, sizeof(out), "plain"), 5);
	assert_string_equal(out, "plain");
	assert_int_equal(coord_metrics_escape_label(out, sizeof(out), "a\"b\\c\nd"), 10);
	assert_string_equal(out, "a\\\"b\\\\c\\nd");
	/* Too small: cut, terminated, and the needed length returned. */
	assert_int_equal(coord_metrics_escape_label(out, 4, "a\"b\"c"), 7);
	assert_int_equal(strlen(out), 3);
	assert_int_equal(coord_metrics_escape_label(out, sizeof(out), ""), 0);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_answers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_render_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_page, setup_page, teardown),
		cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_during_render, setup, teardown),
		cmocka_unit_test(test_bad_listen),
		cmocka_unit_test(test_escape_label),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
