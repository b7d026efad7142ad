/*
 * HTTP: the coordinator's tiny HTTP/1.1 endpoint for monitoring, on the
 * daemon's libuv loop ([coordinator] metrics_listen, "host:port").
 *
 * What it promises:
 * - GET (or HEAD) /metrics answers 200 with the text the render callback
 *   produced (COORD_METRICS_CONTENT_TYPE), or 503 if it failed;
 *   GET /healthz answers what the health callback says (200 "ok" without
 *   one); any other path 404; any other method
 *   405; a request whose head exceeds COORD_HTTP_MAX_REQUEST bytes 431; a
 *   request that does not parse 400. Every connection is closed after one
 *   response (no keep-alive: scrapers reconnect, and no state outlives a
 *   request).
 * - At most COORD_HTTP_MAX_CONNS connections at once, and at most
 *   COORD_HTTP_MAX_PER_PEER from one address. A connection that has not
 *   finished its request head within COORD_HTTP_HEAD_MS is closed, and one
 *   that is still sending its head is the first to go when a new one needs
 *   its slot (oldest first): idle sockets cannot starve /healthz, whoever
 *   holds them. Once the head is in, the answer has COORD_HTTP_ANSWER_MS.
 * - /metrics renders at most once per cache interval (coord_http_set_cache):
 *   requests within it get the last rendering, requests during a render
 *   wait for it, so scrapes cost the catalog one render whatever their rate.
 * - With a bearer token (coord_http_set_token), /metrics and /status need
 *   "Authorization: Bearer TOKEN" (401 otherwise); /healthz stays open, for
 *   load balancers, and says no more than "ok" or why not.
 * - GET /status (with coord_http_set_page) answers the status page as
 *   HTML, rendered and cached like /metrics, with a Content-Security-Policy
 *   that lets nothing load or run, nosniff, no-store, no referrer and no
 *   framing; "/" redirects there (302).
 * - The render callback runs on the libuv thread pool (uv_queue_work),
 *   never on the loop thread: it may block (libpq). It must be
 *   thread-safe with respect to whatever else it touches, and return a
 *   malloc'd buffer (taken over and freed here) or a negative COFFER_E*.
 * - Everything else runs on the loop thread: start, stop and all
 *   callbacks. Handles are freed only in their close callbacks.
 */
#ifndef COFFER_COORDINATOR_SERVE_HTTP_H
#define COFFER_COORDINATOR_SERVE_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/base/error.h"

#define COORD_HTTP_MAX_REQUEST  8192
#define COORD_HTTP_MAX_CONNS    64
#define COORD_HTTP_MAX_PER_PEER 16
#define COORD_HTTP_HEAD_MS      2000
#define COORD_HTTP_ANSWER_MS    30000

/* Produces the /metrics body. Runs on a thread-pool thread. */
typedef int (*coord_http_render_fn)(void *arg, char **text, size_t *len);

typedef struct coord_http coord_http;

/* Listens on listen ("127.0.0.1:9187", "[::1]:9187"; port 0 picks a free
 * one, see coord_http_port). Returns NULL with err on failure: COFFER_EINVAL
 * (address does not parse), COFFER_EUNAVAIL (cannot bind or listen). */
coord_http *coord_http_start(
    uv_loop_t *loop, const char *listen, coord_http_render_fn render, void *arg, coffer_err *err);

/* Fills body (NUL-terminated text) and returns the HTTP status for
 * /healthz (200 healthy, 503 not). Runs on the loop thread: must not
 * block. */
typedef int (*coord_http_health_fn)(void *arg, char *body, size_t size);

/* Produces the /status page (HTML) and the status it answers with (200,
 * or 503 while the catalog cannot be read). Runs on a thread-pool thread,
 * never two at once; returns a malloc'd page or a negative COFFER_E*. */
typedef int (*coord_http_page_fn)(void *arg, char **html, size_t *len, int *status);

/* Serves /status from page, behind the same token as /metrics and cached
 * for the same interval, with the headers that keep a browser from
 * loading, running, framing or caching anything (PAGE_HEADERS in http.c);
 * "/" redirects to it. Unset: both are 404. Loop thread, before the first
 * request. */
void coord_http_set_page(coord_http *h, coord_http_page_fn page, void *arg);

/* Sets /healthz's callback (NULL: always 200 "ok"). Loop thread. */
void coord_http_set_health(coord_http *h, coord_http_health_fn health, void *arg);

/* Renders /metrics at most once per ttl_ms (0: every request). Loop
 * thread, before the first request. */
void coord_http_set_cache(coord_http *h, int64_t ttl_ms);

/* Requires "Authorization: Bearer token" for /metrics (NULL: none). The
 * token is copied; compared in constant time. Loop thread. */
int coord_http_set_token(coord_http *h, const char *token, coffer_err *err);

/* Reads a bearer token from path into *out (malloc'd): one line of 16 to
 * 256 printable characters, in a regular file (not a link) that group and
 * others cannot read. Each refusal names the file and the fix. */
int coord_http_token_load(const char *path, char **out, coffer_err *err);

/* How many times /metrics was rendered (for tests and the endpoint's own
 * metric). Loop thread. */
uint64_t coord_http_renders(const coord_http *h);

/* The port actually bound. */
int coord_http_port(const coord_http *h);

/* Stops listening and closes every connection; h is freed once the last
 * handle has closed and no render is still running (the loop must keep
 * running until then). done (may be NULL) is called at that point. */
void coord_http_stop(coord_http *h, void (*done)(void *arg), void *done_arg);

#endif
