/*
 * HTTP: /metrics, /status and /healthz on the libuv loop. See
 * coordinator/serve/http.h.
 *
 * Design notes.
 * One request per connection, read into a fixed buffer of
 * COORD_HTTP_MAX_REQUEST bytes: the head is all we read (a GET has no
 * body), so a client that sends more than that without finishing its head
 * gets 431 and is closed, and memory per connection is fixed whatever it
 * sends. A timer per connection bounds how long a silent client holds its
 * slot: COORD_HTTP_HEAD_MS for the head, then COORD_HTTP_ANSWER_MS. When
 * the slots are full (or one address holds its share), the oldest
 * connection still sending its head is closed for the newcomer: a client
 * that has asked nothing yet is the only one whose loss costs nothing.
 *
 * The /metrics cache lives on the loop thread: a fresh copy answers at
 * once; otherwise the first request starts the render and later ones
 * wait for it (awaiting_render), so one render runs at a time and the
 * thread pool is never filled with renders queued behind each other.
 * /status has a cache of its own by the same rule (page_*), with the
 * same interval: however many people reload it, the catalog pays one
 * render per interval. (server.c gives both renders one connection, so a
 * scrape's render may wait for a page's.)
 *
 * Rendering blocks on the catalog, so it runs as uv_queue_work. The
 * connection may be closed while its render runs (timeout, stop); the
 * connection's memory therefore lives until both its handles have closed
 * and its work has completed, whichever is last, and the render's output
 * is dropped if nobody is left to receive it.
 */
#include "coordinator/serve/http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/base/log.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/serve/statuspage.h"

typedef struct conn conn;

struct coord_http {
	uv_loop_t *loop;
	uv_tcp_t server;
	coord_http_render_fn render;
	void *arg;
	coord_http_health_fn health; /* NULL: always healthy */
	void *health_arg;
	int port;
	int nconns;
	bool stopping, server_closed;
	void (*done)(void *);
	void *done_arg;
	conn *head; /* newest first */
	int64_t cache_ttl_ms;
	char *cache; /* the last rendering, NULL before the first */
	size_t cache_len;
	uint64_t cache_at; /* uv_now when it was made */
	bool rendering;
	uint64_t renders;
	char *token; /* NULL: /metrics is open */
	/* /status: its own rendering, cached like /metrics (NULL: 404). */
	coord_http_page_fn page;
	void *page_arg;
	char *page_cache;
	size_t page_len;
	int page_status;
	uint64_t page_at;
	bool page_rendering;
};

struct conn {
	coord_http *h;
	conn *prev, *next;
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	uv_work_t work;
	int handles_open;
	bool closing, work_pending, responded, head_only, head_done, awaiting_render;
	bool page; /* its render is the status page's */
	int page_status;
	struct sockaddr_storage peer;
	int render_rc;
	char *text; /* the render's output */
	size_t text_len;
	char *resp; /* the whole response, while it is written */
	size_t len;
	char buf[COORD_HTTP_MAX_REQUEST + 1];
};

static void http_maybe_done(coord_http *h);
static void on_timeout(uv_timer_t *t);

static void
conn_maybe_free(conn *c)
{
	if (c->handles_open > 0 || c->work_pending) {
		return;
	}
	coord_http *h = c->h;
	if (c->prev != NULL) {
		c->prev->next = c->next;
	} else {
		h->head = c->next;
	}
	if (c->next != NULL) {
		c->next->prev = c->prev;
	}
	free(c->text);
	free(c->resp);
	free(c);
	h->nconns--;
	http_maybe_done(h);
}

static void
on_conn_handle_closed(uv_handle_t *handle)
{
	conn *c = handle->data;
	c->handles_open--;
	conn_maybe_free(c);
}

static void
conn_close(conn *c)
{
	if (c->closing) {
		return;
	}
	c->closing = true;
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
	uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void
on_written(uv_write_t *req, int status)
{
	(void)status;
	conn_close(req->data);
}

static const char *
reason(int status)
{
	switch (status) {
	case 200:
		return ("OK");
	case 302:
		return ("Found");
	case 400:
		return ("Bad Request");
	case 401:
		return ("Unauthorized");
	case 404:
		return ("Not Found");
	case 405:
		return ("Method Not Allowed");
	case 431:
		return ("Request Header Fields Too Large");
	default:
		return ("Service Unavailable");
	}
}

/* What a browser is told about every answer on the status page's paths:
 * nothing may load, run, frame it or be cached, and its address goes
 * nowhere. */
#define PAGE_HEADERS                                                     \
	"Content-Security-Policy: " COORD_STATUSPAGE_CSP "\r\n"          \
	"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n" \
	"Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"

static void
respond(conn *c, int status, const char *type, const char *body, size_t body_len)
{
	if (c->responded || c->closing) {
		return;
	}
	c->responded = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	char head[1024];
	int n = snprintf(head, sizeof(head),
	    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	    "Connection: close\r\n%s%s\r\n",
	    status, reason(status), type, body_len,
	    status == 405       ? "Allow: GET, HEAD\r\n"
	        : status == 401 ? "WWW-Authenticate: Bearer\r\n"
	        : status == 302 ? "Location: /status\r\n"
	                        : "",
	    c->page ? PAGE_HEADERS : "");
	size_t send_body = c->head_only ? 0 : body_len;
	c->resp = malloc((size_t)n + send_body);
	if (c->resp == NULL) {
		conn_close(c);
		return;
	}
	memcpy(c->resp, head, (size_t)n);
	if (send_body > 0) {
		memcpy(c->resp + n, body, send_body);
	}
	uv_buf_t b = uv_buf_init(c->resp, (unsigned int)((size_t)n + send_body));
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
		conn_close(c);
	}
}

static void
respond_text(conn *c, int status, const char *text)
{
	respond(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void
work_render(uv_work_t *req)
{
	conn *c = req->data;
	if (c->page) {
		c->render_rc = c->h->page(c->h->page_arg, &c->text, &c->text_len, &c->page_status);
	} else {
		c->render_rc = c->h->render(c->h->arg, &c->text, &c->text_len);
	}
	if (c->render_rc == 0 && c->text == NULL) {
		c->render_rc = COFFER_EINTERNAL;
	}
}

static void
respond_metrics(conn *c)
{
	coord_http *h = c->h;
	if (h->cache != NULL) {
		respond(c, 200, COORD_METRICS_CONTENT_TYPE, h->cache, h->cache_len);
	} else {
		respond_text(c, 503,
		    "metrics are unavailable: the render failed (see the coordinator's log)\n");
	}
}

static void
respond_page(conn *c)
{
	coord_http *h = c->h;
	if (h->page_cache != NULL) {
		respond(
		    c, h->page_status, COORD_STATUSPAGE_CONTENT_TYPE, h->page_cache, h->page_len);
	} else {
		respond_text(c, 503, "the status page could not be rendered\n");
	}
}

static void
page_done(conn *c, int status)
{
	coord_http *h = c->h;
	h->page_rendering = false;
	if (status == 0 && c->render_rc == 0) {
		free(h->page_cache);
		h->page_cache = c->text;
		h->page_len = c->text_len;
		h->page_status = c->page_status == 200 ? 200 : 503;
		h->page_at = uv_now(h->loop);
		c->text = NULL;
	} else {
		coffer_log_warn("status page render failed", "error=\"%s\"",
		    coffer_strerror(status != 0 ? COFFER_ECANCELED : c->render_rc));
		free(h->page_cache);
		h->page_cache = NULL;
	}
	for (conn *w = h->head; w != NULL; w = w->next) {
		if (w->awaiting_render && w->page && !w->closing) {
			w->awaiting_render = false;
			respond_page(w);
		}
	}
	conn_maybe_free(c);
}

static void
work_done(uv_work_t *req, int status)
{
	conn *c = req->data;
	coord_http *h = c->h;
	c->work_pending = false;
	if (c->page) {
		page_done(c, status);
		return;
	}
	h->rendering = false;
	h->renders++;
	bool ok = status == 0 && c->render_rc == 0;
	if (ok) {
		free(h->cache);
		h->cache = c->text;
		h->cache_len = c->text_len;
		h->cache_at = uv_now(h->loop);
		c->text = NULL;
	} else {
		coffer_log_warn("metrics render failed", "error=\"%s\"",
		    coffer_strerror(status != 0 ? COFFER_ECANCELED : c->render_rc));
	}
	/* Everyone who asked while it ran gets this rendering (or the 503). */
	for (conn *w = h->head; w != NULL; w = w->next) {
		if (w->awaiting_render && !w->page && !w->closing) {
			w->awaiting_render = false;
			if (ok) {
				respond_metrics(w);
			} else {
				respond_text(w, 503,
				    "metrics are unavailable: the render failed (see the coordinator's log)\n");
			}
		}
	}
	conn_maybe_free(c);
}

/* /metrics: from the cache while it is fresh, else after the one render. */
static void
serve_metrics(conn *c)
{
	coord_http *h = c->h;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (h->cache != NULL && h->cache_ttl_ms > 0 &&
	    uv_now(h->loop) - h->cache_at < (uint64_t)h->cache_ttl_ms) {
		respond_metrics(c);
		return;
	}
	c->awaiting_render = true;
	if (h->rendering) {
		return;
	}
	c->work.data = c;
	if (uv_queue_work(h->loop, &c->work, work_render, work_done) != 0) {
		c->awaiting_render = false;
		respond_text(c, 503, "metrics are unavailable\n");
		return;
	}
	h->rendering = true;
	c->work_pending = true;
}

/* /status: as /metrics, from its own cache and its own one render. */
static void
serve_page(conn *c)
{
	coord_http *h = c->h;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (h->page_cache != NULL && h->cache_ttl_ms > 0 &&
	    uv_now(h->loop) - h->page_at < (uint64_t)h->cache_ttl_ms) {
		respond_page(c);
		return;
	}
	c->awaiting_render = true;
	if (h->page_rendering) {
		return;
	}
	c->work.data = c;
	if (uv_queue_work(h->loop, &c->work, work_render, work_done) != 0) {
		c->awaiting_render = false;
		respond_text(c, 503, "the status page is unavailable\n");
		return;
	}
	h->page_rendering = true;
	c->work_pending = true;
}

/* The bearer token, if one is set, in constant time. */
static bool
authorized(const conn *c, const char *headers)
{
	const char *want = c->h->token;
	if (want == NULL) {
		return (true);
	}
	/* Header names are case-insensitive; headers is NUL-terminated text,
	 * the head after its request line. */
	for (const char *p = headers; p != NULL; p = strchr(p, '\n')) {
		p += *p == '\n';
		if (strncasecmp(p, "Authorization:", 14) != 0) {
			continue;
		}
		p += 14;
		p += strspn(p, " \t");
		if (strncasecmp(p, "Bearer ", 7) != 0) {
			return (false);
		}
		p += 7;
		size_t n = strcspn(p, "\r\n");
		size_t wn = strlen(want);
		return (n == wn && CRYPTO_memcmp(p, want, wn) == 0);
	}
	return (false);
}

static void
handle_request(conn *c)
{
	char method[16], target[256], version[16];
	/* The request line ends at the first CR or LF. */
	size_t line = strcspn(c->buf, "\r\n");
	const char *headers = c->buf + line + (c->buf[line] != '\0');
	c->buf[line] = '\0';
	if (sscanf(c->buf, "%15s %255s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0 || target[0] != '/') {
		respond_text(c, 400, "bad request\n");
		return;
	}
	target[strcspn(target, "?")] = '\0';
	bool get = strcmp(method, "GET") == 0;
	c->head_only = strcmp(method, "HEAD") == 0;
	if (!get && !c->head_only) {
		respond_text(c, 405, "only GET and HEAD are served\n");
		return;
	}
	if (strcmp(target, "/healthz") == 0) {
		if (c->h->health == NULL) {
			respond_text(c, 200, "ok\n");
		} else {
			char body[512];
			int status = c->h->health(c->h->health_arg, body, sizeof(body));
			respond_text(c, status, body);
		}
	} else if (strcmp(target, "/metrics") == 0) {
		if (!authorized(c, headers)) {
			respond_text(c, 401, "/metrics needs Authorization: Bearer <token>\n");
			return;
		}
		serve_metrics(c);
	} else if (c->h->page != NULL && strcmp(target, "/status") == 0) {
		c->page = true;
		if (!authorized(c, headers)) {
			respond_text(c, 401, "/status needs Authorization: Bearer <token>\n");
			return;
		}
		serve_page(c);
	} else if (c->h->page != NULL && strcmp(target, "/") == 0) {
		c->page = true;
		respond_text(c, 302, "see /status\n");
	} else {
		respond_text(c, 404,
		    c->h->page != NULL ? "not found: try /status, /metrics or /healthz\n"
		                       : "not found: try /metrics or /healthz\n");
	}
}

void
coord_http_set_page(coord_http *h, coord_http_page_fn page, void *arg)
{
	h->page = page;
	h->page_arg = arg;
}

void
coord_http_set_health(coord_http *h, coord_http_health_fn health, void *arg)
{
	h->health = health;
	h->health_arg = arg;
}

static void
on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	conn *c = handle->data;
	*buf = uv_buf_init(c->buf + c->len, (unsigned int)(COORD_HTTP_MAX_REQUEST - c->len));
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	conn *c = stream->data;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)nread;
	c->buf[c->len] = '\0';
	if (strstr(c->buf, "\r\n\r\n") != NULL || strstr(c->buf, "\n\n") != NULL) {
		/* The head is in: no longer evictable, and the answer's own
		 * deadline (a render may take longer than a head may). */
		c->head_done = true;
		uv_timer_start(&c->timer, on_timeout, COORD_HTTP_ANSWER_MS, 0);
		handle_request(c);
	} else if (c->len >= COORD_HTTP_MAX_REQUEST) {
		respond_text(c, 431, "request head too large\n");
	}
}

static void
on_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static bool
same_peer(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family) {
		return (false);
	}
	if (a->ss_family == AF_INET) {
		return (((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		    ((const struct sockaddr_in *)b)->sin_addr.s_addr);
	}
	if (a->ss_family == AF_INET6) {
		return (memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		            &((const struct sockaddr_in6 *)b)->sin6_addr,
		            sizeof(struct in6_addr)) == 0);
	}
	return (false);
}

/* Makes room for a newcomer from peer: closes the oldest connection still
 * sending its head (from peer only, when peer is over its share). false if
 * there is nothing to evict. */
static bool
evict_for(coord_http *h, const struct sockaddr_storage *peer)
{
	int from_peer = 0;
	for (conn *c = h->head; c != NULL; c = c->next) {
		if (!c->closing && same_peer(&c->peer, peer)) {
			from_peer++;
		}
	}
	bool peer_full = from_peer >= COORD_HTTP_MAX_PER_PEER;
	if (!peer_full && h->nconns < COORD_HTTP_MAX_CONNS) {
		return (true);
	}
	conn *oldest = NULL;
	for (conn *c = h->head; c != NULL; c = c->next) {
		if (!c->closing && !c->head_done && (!peer_full || same_peer(&c->peer, peer))) {
			oldest = c; /* the list is newest first */
		}
	}
	if (oldest == NULL) {
		return (false);
	}
	conn_close(oldest);
	return (true);
}

static void
on_connection(uv_stream_t *server, int status)
{
	coord_http *h = server->data;
	if (status < 0 || h->stopping) {
		return;
	}
	conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return;
	}
	c->h = h;
	uv_tcp_init(h->loop, &c->tcp);
	uv_timer_init(h->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles_open = 2;
	c->next = h->head;
	if (h->head != NULL) {
		h->head->prev = c;
	}
	h->head = c;
	h->nconns++;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
		conn_close(c);
		return;
	}
	int plen = sizeof(c->peer);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->peer, &plen) != 0) {
		memset(&c->peer, 0, sizeof(c->peer));
	}
	/* Counted already: room for it means the others minus one. */
	h->nconns--;
	c->closing = true; /* not its own victim, not counted as its peer's */
	bool room = evict_for(h, &c->peer);
	c->closing = false;
	h->nconns++;
	if (!room) {
		coffer_log_warn("metrics connection refused: every slot is answering",
		    "limit=%d per_peer=%d", COORD_HTTP_MAX_CONNS, COORD_HTTP_MAX_PER_PEER);
		conn_close(c);
		return;
	}
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_timeout, COORD_HTTP_HEAD_MS, 0);
}

static int
parse_listen(const char *listen, struct sockaddr_storage *ss, coffer_err *err)
{
	char host[128];
	const char *colon;
	if (listen[0] == '[') {
		const char *rb = strchr(listen, ']');
		if (rb == NULL || rb[1] != ':' || (size_t)(rb - listen - 1) >= sizeof(host)) {
			goto bad;
		}
		memcpy(host, listen + 1, (size_t)(rb - listen - 1));
		host[rb - listen - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(listen, ':');
		if (colon == NULL || (size_t)(colon - listen) >= sizeof(host)) {
			goto bad;
		}
		memcpy(host, listen, (size_t)(colon - listen));
		host[colon - listen] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
		goto bad;
	}
	if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0 ||
	    uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) {
		return (0);
	}
bad:
	coffer_err_set(err, COFFER_EINVAL, "metrics_listen '%.64s' is not an address:port", listen);
	return (coffer_err_hint(err, "write [coordinator] metrics_listen = 127.0.0.1:9187"));
}

coord_http *
coord_http_start(
    uv_loop_t *loop, const char *listen, coord_http_render_fn render, void *arg, coffer_err *err)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (parse_listen(listen, &ss, err) != 0) {
		return (NULL);
	}
	coord_http *h = calloc(1, sizeof(*h));
	if (h == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "starting the metrics endpoint: out of memory");
		return (NULL);
	}
	h->loop = loop;
	h->render = render;
	h->arg = arg;
	uv_tcp_init(loop, &h->server);
	h->server.data = h;
	int rc = uv_tcp_bind(&h->server, (const struct sockaddr *)&ss, 0);
	if (rc == 0) {
		rc = uv_listen((uv_stream_t *)&h->server, 64, on_connection);
	}
	if (rc != 0) {
		coffer_err_set(err, COFFER_EUNAVAIL, "metrics endpoint cannot listen on %.64s: %s",
		    listen, uv_strerror(rc));
		coffer_err_hint(err, "pick a free port for [coordinator] metrics_listen");
		/* The handle must close before h is freed; nothing else runs. */
		h->stopping = true;
		coord_http_stop(h, NULL, NULL);
		return (NULL);
	}
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	if (uv_tcp_getsockname(&h->server, (struct sockaddr *)&bound, &blen) == 0) {
		h->port = bound.ss_family == AF_INET6
		    ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
		    : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	}
	return (h);
}

void
coord_http_set_cache(coord_http *h, int64_t ttl_ms)
{
	h->cache_ttl_ms = ttl_ms > 0 ? ttl_ms : 0;
}

int
coord_http_set_token(coord_http *h, const char *token, coffer_err *err)
{
	free(h->token);
	h->token = NULL;
	if (token == NULL) {
		return (0);
	}
	h->token = strdup(token);
	if (h->token == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the metrics token"));
	}
	return (0);
}

int
coord_http_token_load(const char *path, char **out, coffer_err *err)
{
	*out = NULL;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		coffer_err_set(
		    err, COFFER_EINVAL, "metrics_token_file %s: %s", path, strerror(errno));
		return (coffer_err_hint(err,
		    "write the token to it (openssl rand -hex 32 > FILE; "
		    "chmod 600 FILE), or unset metrics_token_file"));
	}
	struct stat st;
	char buf[260];
	ssize_t n = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077) == 0) {
		n = read(fd, buf, sizeof(buf) - 1);
	}
	close(fd);
	if (n < 0) {
		coffer_err_set(err, COFFER_EINVAL,
		    "metrics_token_file %s is not a regular file closed to group and others (mode %04o)",
		    path, (unsigned)(st.st_mode & 07777));
		return (coffer_err_hint(err, "run: chmod 600 %s", path));
	}
	buf[n] = '\0';
	size_t len = strcspn(buf, "\r\n");
	buf[len] = '\0';
	bool printable = true;
	for (size_t i = 0; i < len; i++) {
		printable = printable && buf[i] > ' ' && buf[i] < 0x7f;
	}
	if (len < 16 || len > 256 || !printable) {
		OPENSSL_cleanse(buf, sizeof(buf));
		coffer_err_set(err, COFFER_EINVAL,
		    "metrics_token_file %s must hold one line of 16 to 256 printable characters "
		    "without spaces",
		    path);
		return (coffer_err_hint(err, "openssl rand -hex 32 > %s", path));
	}
	*out = strdup(buf);
	OPENSSL_cleanse(buf, sizeof(buf));
	if (*out == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the metrics token"));
	}
	return (0);
}

uint64_t
coord_http_renders(const coord_http *h)
{
	return (h->renders);
}

int
coord_http_port(const coord_http *h)
{
	return (h->port);
}

static void
http_maybe_done(coord_http *h)
{
	if (!h->stopping || !h->server_closed || h->nconns > 0) {
		return;
	}
	void (*done)(void *) = h->done;
	void *done_arg = h->done_arg;
	free(h->cache);
	free(h->page_cache);
	if (h->token != NULL) {
		OPENSSL_cleanse(h->token, strlen(h->token));
		free(h->token);
	}
	free(h);
	if (done != NULL) {
		done(done_arg);
	}
}

static void
on_server_closed(uv_handle_t *handle)
{
	coord_http *h = handle->data;
	h->server_closed = true;
	http_maybe_done(h);
}

void
coord_http_stop(coord_http *h, void (*done)(void *arg), void *done_arg)
{
	h->stopping = true;
	h->done = done;
	h->done_arg = done_arg;
	uv_close((uv_handle_t *)&h->server, on_server_closed);
	for (conn *c = h->head; c != NULL; c = c->next) {
		conn_close(c);
	}
}
