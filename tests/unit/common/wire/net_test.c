/* Net and tlsconf seen from outside: which URLs need TLS or are refused;
 * TLS files that cannot be used are named; and a real server on a libuv loop
 * (over ipc://, so no certificates are needed) answered by a real client in
 * a thread: immediate replies, dropped requests, replies over the size
 * limit, requests over the client's limit, a server that is down, and a stop
 * while the handler still holds a reply. TLS itself is covered end to end by
 * tests/integration/net.sh. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <uv.h>
#include <cmocka.h>

#include "common/base/log.h"
#include "common/wire/net.h"
#include "common/wire/tlsconf.h"
#include "tests/harness/tmpdir.h"

static void
test_url_rules(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_tlsconf_kind k;
	assert_int_equal(coffer_tlsconf_check_url("tls+tcp://10.0.0.1:7443", false, &k, &err), 0);
	assert_int_equal(k, COFFER_TLSCONF_TLS);
	assert_int_equal(
	    coffer_tlsconf_check_url("tls+tcp://[2001:db8::1]:7443", false, &k, &err), 0);
	assert_int_equal(k, COFFER_TLSCONF_TLS);
	assert_int_equal(coffer_tlsconf_check_url("tcp://127.0.0.1:1", false, &k, &err), 0);
	assert_int_equal(k, COFFER_TLSCONF_PLAIN);
	assert_int_equal(coffer_tlsconf_check_url("tcp://127.9.8.7:1", false, &k, &err), 0);
	assert_int_equal(coffer_tlsconf_check_url("tcp://[::1]:1", false, &k, &err), 0);
	assert_int_equal(
	    coffer_tlsconf_check_url("tcp://[::ffff:127.0.0.1]:1", false, &k, &err), 0);
	assert_int_equal(coffer_tlsconf_check_url("tcp://localhost:1", false, &k, &err), 0);
	assert_int_equal(coffer_tlsconf_check_url("ipc:///tmp/x.ipc", false, &k, &err), 0);
	assert_int_equal(k, COFFER_TLSCONF_LOCAL);

	/* Plain TCP anywhere else is refused unless asked for, and says so. */
	const char *open_urls[] = { "tcp://0.0.0.0:7443", "tcp://:7443", "tcp://[::]:7443",
		"tcp://10.1.2.3:7443", "tcp4://coordinator.internal:7443",
		"tcp://localhost.evil.example:1", "tcp://128.0.0.1:1" };
	for (size_t i = 0; i < sizeof(open_urls) / sizeof(open_urls[0]); i++) {
		coffer_err_clear(&err);
		assert_int_equal(
		    coffer_tlsconf_check_url(open_urls[i], false, &k, &err), COFFER_EPERM);
		assert_non_null(strstr(err.msg, "refusing plain tcp"));
		assert_true(err.hint[0] != '\0');
		assert_int_equal(coffer_tlsconf_check_url(open_urls[i], true, &k, &err), 0);
		assert_int_equal(k, COFFER_TLSCONF_PLAIN);
	}
	const char *bad[] = { "ws://127.0.0.1:1/x", "127.0.0.1:7443", "tls+tcp://host-no-port",
		"tls+tcp://[::1:7443", "", "zt://abc:1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		coffer_err_clear(&err);
		assert_int_equal(coffer_tlsconf_check_url(bad[i], true, &k, &err), COFFER_EINVAL);
		assert_true(err.msg[0] != '\0');
	}
	char host[64];
	assert_int_equal(
	    coffer_tlsconf_url_host("tls+tcp://[::1]:7443", host, sizeof(host), &err), 0);
	assert_string_equal(host, "::1");
	assert_int_equal(coffer_tlsconf_url_host("tls+tcp://a.b:1", host, sizeof(host), &err), 0);
	assert_string_equal(host, "a.b");
	assert_int_equal(coffer_tlsconf_url_host("tls+tcp://a.b:1", host, 3, &err), COFFER_EINVAL);
}

static char tmpdir[512];

static void w_handler(void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len,
    const coffer_net_peer *peer);

static void
write_file(const char *name, const char *text, char *path, size_t size)
{
	snprintf(path, size, "%s/%s", tmpdir, name);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void
test_tls_file_errors(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	nng_tls_config *cfg = NULL;
	char missing[600], empty[600], junk[600], keyonly[600];
	snprintf(missing, sizeof(missing), "%s/no-such-ca.crt", tmpdir);
	write_file("empty.crt", "", empty, sizeof(empty));
	write_file("junk.crt", "this is not PEM\n", junk, sizeof(junk));
	write_file("key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	    keyonly, sizeof(keyonly));

	coffer_tls_files f = { .ca = missing, .cert = junk, .key = keyonly };
	assert_int_equal(coffer_tlsconf_server_new(&f, &cfg, &err), COFFER_ENOENT);
	assert_non_null(strstr(err.msg, "no-such-ca.crt"));
	assert_null(cfg);

	f.ca = empty;
	assert_int_equal(coffer_tlsconf_server_new(&f, &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "empty"));
	assert_non_null(strstr(err.msg, "empty.crt"));

	f.ca = keyonly;
	assert_int_equal(coffer_tlsconf_client_new(&f, "localhost", &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "no PEM certificate"));
	assert_true(err.hint[0] != '\0');

	f.ca = NULL;
	assert_int_equal(coffer_tlsconf_client_new(&f, "localhost", &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "no CA file"));

	f.ca = junk;
	assert_int_equal(coffer_tlsconf_client_new(&f, "", &cfg, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "server name"));
	assert_null(cfg);

	/* A server over TLS refuses to start on the same files, naming them. */
	uv_loop_t loop;
	uv_loop_init(&loop);
	coffer_net_server *srv = NULL;
	coffer_net_server_config sc = { .url = "tls+tcp://127.0.0.1:0", .tls = f };
	assert_int_equal(
	    coffer_net_server_start(&loop, &sc, NULL, NULL, &srv, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "handler"));
	assert_int_equal(
	    coffer_net_server_start(&loop, &sc, w_handler, NULL, &srv, &err), COFFER_EINVAL);
	assert_non_null(strstr(err.msg, "junk.crt"));
	assert_null(srv);
	sc.url = "tcp://0.0.0.0:0";
	assert_int_equal(
	    coffer_net_server_start(&loop, &sc, w_handler, NULL, &srv, &err), COFFER_EPERM);
	assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- a real server on a loop, a real client in a thread ---- */

#define SMALL_MAX 4096

struct world {
	uv_loop_t loop;
	uv_async_t done;
	coffer_net_server *srv;
	char url[600];
	coffer_net_reply *held;
	int big_rv;
	unsigned handled, pipes_up;
	/* client results */
	int rv_echo, rv_drop, rv_big, rv_oversize, rv_hold, rv_empty;
	int client_open_rv;
	bool echo_ok, empty_ok;
};

static void
w_handler(
    void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len, const coffer_net_peer *peer)
{
	struct world *w = arg;
	coffer_err err = { 0 };
	w->handled++;
	assert_false(peer->tls);
	assert_true(peer->pipe_id != 0);
	if (len == 4 && memcmp(req, "drop", 4) == 0) {
		coffer_net_reply_drop(reply);
	} else if (len == 3 && memcmp(req, "big", 3) == 0) {
		static uint8_t big[SMALL_MAX + 1];
		w->big_rv = coffer_net_reply_send(reply, big, sizeof(big), &err);
		assert_true(err.hint[0] != '\0');
	} else if (len == 4 && memcmp(req, "hold", 4) == 0) {
		w->held = reply;
	} else {
		assert_int_equal(coffer_net_reply_send(reply, req, len, &err), 0);
	}
}

static void
w_pipe(void *arg, bool up, const coffer_net_peer *peer)
{
	struct world *w = arg;
	(void)peer;
	if (up) {
		w->pipes_up++;
	}
}

static int
w_call(coffer_net_client *c, const char *msg, size_t len, unsigned timeout_ms, bool *echo_ok)
{
	uint8_t *rep = NULL;
	size_t rep_len = 0;
	coffer_err err = { 0 };
	int rv =
	    coffer_net_client_call(c, (const uint8_t *)msg, len, &rep, &rep_len, timeout_ms, &err);
	/* No cmocka asserts here: they cannot jump out of another thread. */
	if (rv != 0 && (rep != NULL || err.msg[0] == '\0' || err.code != rv)) {
		rv = COFFER_EINTERNAL;
	}
	if (echo_ok != NULL) {
		*echo_ok = rv == 0 && rep_len == len && memcmp(rep, msg, len) == 0;
	}
	free(rep);
	return (rv);
}

static void *
w_client(void *arg)
{
	struct world *w = arg;
	coffer_err err = { 0 };
	coffer_net_client *c = NULL;
	coffer_net_client_config cc = { .url = w->url, .max_msg = SMALL_MAX };
	w->client_open_rv = coffer_net_client_open(&cc, &c, &err);
	if (w->client_open_rv == 0) {
		w->rv_echo = w_call(c, "hello wire", 10, 5000, &w->echo_ok);
		w->rv_empty = w_call(c, "", 0, 5000, &w->empty_ok);
		w->rv_drop = w_call(c, "drop", 4, 300, NULL);
		w->rv_big = w_call(c, "big", 3, 300, NULL);
		static char over[SMALL_MAX + 1];
		w->rv_oversize = w_call(c, over, sizeof(over), 300, NULL);
		w->rv_hold = w_call(c, "hold", 4, 300, NULL);
		coffer_net_client_close(c);
	}
	uv_async_send(&w->done);
	return (NULL);
}

static void
w_done(uv_async_t *h)
{
	struct world *w = h->data;
	coffer_err err = { 0 };
	coffer_net_server_stop(w->srv);
	/* The handler still holds one request: it must be finishable after
	 * stop, and finishing it releases the server's last memory. */
	assert_non_null(w->held);
	assert_int_equal(
	    coffer_net_reply_send(w->held, (const uint8_t *)"late", 4, &err), COFFER_ECANCELED);
	w->held = NULL;
	uv_close((uv_handle_t *)h, NULL);
}

static void
test_server_client(void **state)
{
	(void)state;
	struct world w = { 0 };
	coffer_err err = { 0 };
	snprintf(w.url, sizeof(w.url), "ipc://%s/net.ipc", tmpdir);
	uv_loop_init(&w.loop);
	coffer_net_server_config sc = {
		.url = w.url,
		.workers = 2,
		.max_inflight = 2,
		.max_msg = SMALL_MAX,
		.on_pipe = w_pipe,
	};
	assert_int_equal(coffer_net_server_start(&w.loop, &sc, w_handler, &w, &w.srv, &err), 0);
	assert_int_equal(coffer_net_server_port(w.srv), 0);
	uv_async_init(&w.loop, &w.done, w_done);
	w.done.data = &w;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, w_client, &w), 0);
	assert_int_equal(uv_run(&w.loop, UV_RUN_DEFAULT), 0);
	pthread_join(t, NULL);
	assert_int_equal(uv_loop_close(&w.loop), 0);

	assert_int_equal(w.client_open_rv, 0);
	assert_int_equal(w.rv_echo, 0);
	assert_true(w.echo_ok);
	assert_int_equal(w.rv_empty, 0);
	assert_true(w.empty_ok);
	assert_int_equal(w.rv_drop, COFFER_EUNAVAIL);
	assert_int_equal(w.big_rv, COFFER_ETOOBIG);
	assert_int_equal(w.rv_big, COFFER_EUNAVAIL);
	assert_int_equal(w.rv_oversize, COFFER_ETOOBIG);
	assert_int_equal(w.rv_hold, COFFER_EUNAVAIL);
	assert_int_equal(w.handled, 5); /* the oversized one never left the client */
	assert_true(w.pipes_up >= 1);
}

static void
test_server_down(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_net_client *c = NULL;
	char url[600];
	snprintf(url, sizeof(url), "ipc://%s/nobody.ipc", tmpdir);
	coffer_net_client_config cc = { .url = url };
	/* Down is not an open error: the client redials in the background. */
	assert_int_equal(coffer_net_client_open(&cc, &c, &err), 0);
	uint8_t *rep = NULL;
	size_t rep_len = 0;
	assert_int_equal(
	    coffer_net_client_call(c, (const uint8_t *)"x", 1, &rep, &rep_len, 200, &err),
	    COFFER_EUNAVAIL);
	assert_non_null(strstr(err.msg, "no connection"));
	assert_non_null(strstr(err.msg, "nobody.ipc"));
	assert_true(err.hint[0] != '\0');
	assert_null(rep);
	coffer_net_client_close(c);
	coffer_net_client_close(NULL);

	cc.url = "tcp://192.0.2.1:7443";
	assert_int_equal(coffer_net_client_open(&cc, &c, &err), COFFER_EPERM);
}

/* A dialer abandoned as NNG 1.5.2 abandons one (after a failed attempt
 * that ended in NNG_ECLOSED): the next call to find no connection for twice
 * reconnect_max replaces it, and calls work again. */
struct redial {
	char url[600];
	uv_loop_t loop;
	uv_async_t done;
	coffer_net_server *srv;
	int rv_before, rv_after;
	unsigned redials;
	int calls;
};

static void
r_handler(
    void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len, const coffer_net_peer *peer)
{
	(void)arg;
	(void)peer;
	coffer_err err = { 0 };
	coffer_net_reply_send(reply, req, len, &err);
}

static void *
r_client(void *arg)
{
	struct redial *r = arg;
	coffer_err err = { 0 };
	coffer_net_client *c = NULL;
	coffer_net_client_config cc = {
		.url = r->url, .max_msg = SMALL_MAX, .reconnect_min_ms = 10, .reconnect_max_ms = 50
	};
	if (coffer_net_client_open(&cc, &c, &err) == 0) {
		r->rv_before = w_call(c, "one", 3, 5000, NULL);
		coffer_net_client_drop_dialer(c);
		r->rv_after = -1;
		for (r->calls = 0; r->calls < 100 && r->rv_after != 0; r->calls++) {
			r->rv_after = w_call(c, "two", 3, 100, NULL);
		}
		r->redials = coffer_net_client_redials(c);
		coffer_net_client_close(c);
	}
	uv_async_send(&r->done);
	return (NULL);
}

static void
r_done(uv_async_t *h)
{
	struct redial *r = h->data;
	coffer_net_server_stop(r->srv);
	uv_close((uv_handle_t *)h, NULL);
}

static void
test_dialer_replaced(void **state)
{
	(void)state;
	struct redial r = { 0 };
	coffer_err err = { 0 };
	snprintf(r.url, sizeof(r.url), "ipc://%s/redial.ipc", tmpdir);
	uv_loop_init(&r.loop);
	coffer_net_server_config sc = {
		.url = r.url, .workers = 1, .max_inflight = 1, .max_msg = SMALL_MAX
	};
	assert_int_equal(coffer_net_server_start(&r.loop, &sc, r_handler, &r, &r.srv, &err), 0);
	uv_async_init(&r.loop, &r.done, r_done);
	r.done.data = &r;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, r_client, &r), 0);
	assert_int_equal(uv_run(&r.loop, UV_RUN_DEFAULT), 0);
	pthread_join(t, NULL);
	assert_int_equal(uv_loop_close(&r.loop), 0);
	assert_int_equal(r.rv_before, 0);
	assert_int_equal(r.rv_after, 0);
	assert_true(r.redials >= 1);
	assert_true(r.calls >= 2); /* the first calls after the drop found no connection */
}

/* The one address rule the agent's, the coordinator's and the CLI's
 * configurations share. */
static void
test_url_check(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	assert_int_equal(coffer_net_url_check("tls+tcp://coord:7443", "listen address", &err), 0);
	assert_int_equal(coffer_net_url_check("tcp://127.0.0.1:1", "listen address", &err), 0);
	assert_int_equal(coffer_net_url_check("ipc:///run/c.sock", "listen address", &err), 0);
	static const char *const bad[] = { "http://coord:7443", "tls+tcp://", "coord:7443", "",
		" tcp://a:1", "TCP://a:1" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		coffer_err_clear(&err);
		assert_int_equal(
		    coffer_net_url_check(bad[i], "coordinator address", &err), COFFER_EINVAL);
		assert_non_null(strstr(err.msg, "is not a coordinator address"));
		assert_non_null(strstr(err.hint, "tls+tcp://"));
	}
	assert_int_equal(coffer_net_url_check(NULL, "listen address", NULL), COFFER_EINVAL);
}

int
main(void)
{
	coffer_log_init("net_test", COFFER_LOG_WARN);
	if (harness_tmpdir_make("net-test", tmpdir, sizeof(tmpdir)) != 0) {
		perror("net_test: a scratch directory");
		return (1);
	}
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url_rules),
		cmocka_unit_test(test_url_check),
		cmocka_unit_test(test_tls_file_errors),
		cmocka_unit_test(test_server_client),
		cmocka_unit_test(test_server_down),
		cmocka_unit_test(test_dialer_replaced),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	if (harness_tmpdir_remove(tmpdir) != 0) {
		fprintf(stderr, "net_test: could not remove %s\n", tmpdir);
	}
	return (rc);
}
