/*
 * Net: NNG req/rep bridged to libuv; see common/wire/net.h for the promises.
 *
 * Design notes.
 * Server. Each NNG context has one op (the shape of NNG's asynchronous server demo): a
 * preallocated aio and a state, RECV -> HELD (the handler has it) -> SEND ->
 * RECV. NNG completes aios on its own threads, so the aio callback does no
 * work at all: it appends the op to a locked mailbox and wakes the loop with
 * uv_async_send. libuv coalesces wake-ups, so the loop drains the whole
 * mailbox each time. All other state is touched on the loop thread only.
 * uv_async_send is called with the mailbox lock held, and stop marks the
 * mailbox closed under the same lock before uv_close, so no NNG thread can
 * poke a handle that is closing.
 *
 * Shutdown follows the order that keeps NNG 1.5.2 safe: stop every aio
 * (waits for running callbacks, prevents new ones), close the socket, drain
 * the mailbox, close the async handle, free the aios. Ops a handler still
 * holds survive until the handler finishes them, so a uv_queue_work that
 * ends after stop finds valid memory.
 *
 * Pipe notifications also arrive on NNG threads and must not touch the
 * socket; they only read pipe options, close an unverified pipe (ADD_PRE),
 * and post an event.
 *
 * Client. One req0 socket and one dialer; each call opens its own context
 * and aio, so calls from several threads proceed at once on one connection.
 * A call first waits (bounded by its timeout) for a connected pipe, which
 * pipe notifications count: sending on a REQ context with nowhere to send
 * would park the send aio, and cancelling a parked send leaks its message in
 * 1.5.2 (nanomsg/nng#1713). The receive starts only after the send completed
 * (the 1.5.2 REQ cancel crash, #1702). Resending is off: a dropped
 * connection fails the call with NNG_ECONNRESET instead of repeating it.
 */
#include "common/wire/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/transport/tls/tls.h>

#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/wire/tlsconf.h"
#include "common/wire/wire.h"

enum net_op_state {
	OP_IDLE = 0,
	OP_RECV,
	OP_HELD,
	OP_SEND,
};

struct coffer_net_reply {
	coffer_net_server *srv;
	nng_aio *aio;
	nng_ctx ctx;
	enum net_op_state state;
	nng_msg *req;
	coffer_net_peer peer;
	struct coffer_net_reply *mail_next;
	struct coffer_net_reply *prev, *next; /* every op of the server */
};

struct net_pipe_ev {
	struct net_pipe_ev *next;
	bool up;
	coffer_net_peer peer;
};

struct coffer_net_server {
	uv_loop_t *loop;
	uv_async_t async;
	nng_socket sock;
	nng_listener listener;
	coffer_net_handler handler;
	coffer_net_pipe_cb on_pipe;
	void *arg;
	bool tls;
	unsigned workers;
	unsigned max_ops;
	size_t max_msg;
	int port;
	char url[512]; /* as listened on, the bound port filled in */

	pthread_mutex_t mu; /* guards the mailbox fields below */
	struct coffer_net_reply *mail_head, *mail_tail;
	struct net_pipe_ev *ev_head, *ev_tail;
	bool mail_closed;

	/* Loop thread only. */
	struct coffer_net_reply *ops;
	struct coffer_net_reply *batch; /* the drained mailbox being dispatched */
	struct net_pipe_ev *ev_batch;
	unsigned nops;
	unsigned nrecv;
	bool stopping;
	bool async_closed;
};

static void
net_peer_fill(nng_pipe p, bool tls, coffer_net_peer *peer)
{
	memset(peer, 0, sizeof(*peer));
	int id = nng_pipe_id(p);
	peer->pipe_id = id > 0 ? (uint32_t)id : 0;
	peer->tls = tls;
	if (tls) {
		bool v = false;
		if (nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &v) == 0) {
			peer->verified = v;
		}
		/* NNG >= 1.6 names the certificate; 1.5.2 answers ENOTSUP. */
		char *cn = NULL;
		if (nng_pipe_get_string(p, "tls-peer-cn", &cn) == 0 && cn != NULL) {
			snprintf(peer->cn, sizeof(peer->cn), "%s", cn);
			nng_strfree(cn);
		}
	}
	nng_sockaddr sa;
	if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) != 0) {
		return;
	}
	char ip[INET6_ADDRSTRLEN];
	if (sa.s_family == NNG_AF_INET &&
	    inet_ntop(AF_INET, &sa.s_in.sa_addr, ip, sizeof(ip)) != NULL) {
		snprintf(peer->addr, sizeof(peer->addr), "%s:%u", ip, ntohs(sa.s_in.sa_port));
	} else if (sa.s_family == NNG_AF_INET6 &&
	    inet_ntop(AF_INET6, sa.s_in6.sa_addr, ip, sizeof(ip)) != NULL) {
		snprintf(peer->addr, sizeof(peer->addr), "[%s]:%u", ip, ntohs(sa.s_in6.sa_port));
	} else if (sa.s_family == NNG_AF_IPC) {
		snprintf(peer->addr, sizeof(peer->addr), "ipc");
	}
}

/* NNG thread: hand the op to the loop, nothing else. */
static void
srv_aio_cb(void *arg)
{
	struct coffer_net_reply *op = arg;
	coffer_net_server *srv = op->srv;
	pthread_mutex_lock(&srv->mu);
	op->mail_next = NULL;
	if (srv->mail_tail != NULL) {
		srv->mail_tail->mail_next = op;
	} else {
		srv->mail_head = op;
	}
	srv->mail_tail = op;
	if (!srv->mail_closed) {
		uv_async_send(&srv->async);
	}
	pthread_mutex_unlock(&srv->mu);
}

/* NNG thread. */
static void
srv_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	coffer_net_server *srv = arg;
	if (ev == NNG_PIPE_EV_ADD_PRE) {
		/* The handshake already required a certificate; this refuses a
		 * pipe should a build or config ever let one through without. */
		bool v = false;
		if (srv->tls && (nng_pipe_get_bool(p, NNG_OPT_TLS_VERIFIED, &v) != 0 || !v)) {
			nng_pipe_close(p);
		}
		return;
	}
	if (srv->on_pipe == NULL) {
		return;
	}
	struct net_pipe_ev *e = malloc(sizeof(*e));
	if (e == NULL) {
		coffer_log_error("no memory for a connection event", "pipe=%d", nng_pipe_id(p));
		return;
	}
	e->next = NULL;
	e->up = ev == NNG_PIPE_EV_ADD_POST;
	net_peer_fill(p, srv->tls, &e->peer);
	pthread_mutex_lock(&srv->mu);
	if (srv->mail_closed) {
		free(e);
	} else {
		if (srv->ev_tail != NULL) {
			srv->ev_tail->next = e;
		} else {
			srv->ev_head = e;
		}
		srv->ev_tail = e;
		uv_async_send(&srv->async);
	}
	pthread_mutex_unlock(&srv->mu);
}

static void
srv_link(coffer_net_server *srv, struct coffer_net_reply *op)
{
	op->prev = NULL;
	op->next = srv->ops;
	if (srv->ops != NULL) {
		srv->ops->prev = op;
	}
	srv->ops = op;
	srv->nops++;
}

static void
srv_unlink(coffer_net_server *srv, struct coffer_net_reply *op)
{
	if (op->prev != NULL) {
		op->prev->next = op->next;
	} else {
		srv->ops = op->next;
	}
	if (op->next != NULL) {
		op->next->prev = op->prev;
	}
	srv->nops--;
}

static void
srv_free(coffer_net_server *srv)
{
	pthread_mutex_destroy(&srv->mu);
	free(srv);
}

static void
srv_maybe_free(coffer_net_server *srv)
{
	if (srv->stopping && srv->async_closed && srv->nops == 0) {
		srv_free(srv);
	}
}

/* Loop thread, never from an aio callback: nng_aio_free waits for it. */
static void
op_free(struct coffer_net_reply *op)
{
	coffer_net_server *srv = op->srv;
	nng_aio_free(op->aio);
	if (!srv->stopping) {
		nng_ctx_close(op->ctx);
	}
	if (op->req != NULL) {
		nng_msg_free(op->req);
	}
	srv_unlink(srv, op);
	free(op);
}

static int
op_new(coffer_net_server *srv, struct coffer_net_reply **out)
{
	struct coffer_net_reply *op = calloc(1, sizeof(*op));
	if (op == NULL) {
		return (NNG_ENOMEM);
	}
	op->srv = srv;
	int rv = nng_aio_alloc(&op->aio, srv_aio_cb, op);
	if (rv != 0) {
		free(op);
		return (rv);
	}
	rv = nng_ctx_open(&op->ctx, srv->sock);
	if (rv != 0) {
		nng_aio_free(op->aio);
		free(op);
		return (rv);
	}
	srv_link(srv, op);
	*out = op;
	return (0);
}

static void
op_recv(struct coffer_net_reply *op)
{
	op->state = OP_RECV;
	op->srv->nrecv++;
	nng_ctx_recv(op->ctx, op->aio);
}

/* A request is finished: keep the context receiving, unless enough others
 * already are (the pool grew for held requests and now shrinks back). */
static void
op_rest(struct coffer_net_reply *op)
{
	coffer_net_server *srv = op->srv;
	op->state = OP_IDLE;
	if (srv->nrecv >= srv->workers) {
		op_free(op);
	} else {
		op_recv(op);
	}
}

/* Handlers are holding requests: open contexts so that `workers` of them
 * still wait for new ones, within max_ops. */
static void
srv_grow(coffer_net_server *srv)
{
	while (srv->nrecv < srv->workers && srv->nops < srv->max_ops) {
		struct coffer_net_reply *op;
		int rv = op_new(srv, &op);
		if (rv != 0) {
			coffer_log_warn("cannot open another request context", "error=\"%s\"",
			    nng_strerror(rv));
			return;
		}
		op_recv(op);
	}
}

static void
srv_dispatch(coffer_net_server *srv, struct coffer_net_reply *op)
{
	int rv = nng_aio_result(op->aio);
	switch (op->state) {
	case OP_RECV:
		srv->nrecv--;
		op->state = OP_IDLE;
		if (rv != 0) {
			if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || srv->stopping) {
				return;
			}
			coffer_log_warn(
			    "receiving a request failed", "error=\"%s\"", nng_strerror(rv));
			op_recv(op);
			return;
		}
		op->req = nng_aio_get_msg(op->aio);
		nng_aio_set_msg(op->aio, NULL);
		op->state = OP_HELD;
		net_peer_fill(nng_msg_get_pipe(op->req), srv->tls, &op->peer);
		srv_grow(srv);
		srv->handler(srv->arg, op, nng_msg_body(op->req), nng_msg_len(op->req), &op->peer);
		return;
	case OP_SEND:
		if (rv != 0) {
			/* On failure the message is still ours. */
			nng_msg_free(nng_aio_get_msg(op->aio));
			nng_aio_set_msg(op->aio, NULL);
			if (rv != NNG_ECLOSED && rv != NNG_ECANCELED) {
				coffer_log_debug(
				    "sending a reply failed", "error=\"%s\"", nng_strerror(rv));
			}
		}
		if (srv->stopping) {
			op->state = OP_IDLE;
			return;
		}
		op_rest(op);
		return;
	default:
		coffer_log_error(
		    "net op completed in an unexpected state", "state=%d", (int)op->state);
		return;
	}
}

static void
srv_async_cb(uv_async_t *h)
{
	coffer_net_server *srv = h->data;
	pthread_mutex_lock(&srv->mu);
	srv->batch = srv->mail_head;
	srv->ev_batch = srv->ev_head;
	srv->mail_head = srv->mail_tail = NULL;
	srv->ev_head = srv->ev_tail = NULL;
	pthread_mutex_unlock(&srv->mu);
	/* The batches live in srv so that a handler calling stop can discard
	 * what is left of them. */
	struct net_pipe_ev *e;
	while ((e = srv->ev_batch) != NULL) {
		srv->ev_batch = e->next;
		if (!srv->stopping) {
			srv->on_pipe(srv->arg, e->up, &e->peer);
		}
		free(e);
	}
	struct coffer_net_reply *op;
	while ((op = srv->batch) != NULL) {
		srv->batch = op->mail_next;
		srv_dispatch(srv, op);
	}
}

static void
srv_async_close_cb(uv_handle_t *h)
{
	coffer_net_server *srv = h->data;
	srv->async_closed = true;
	srv_maybe_free(srv);
}

/* Takes back whatever a completed op left behind, without dispatching. */
static void
srv_discard(coffer_net_server *srv, struct coffer_net_reply *op)
{
	int rv = nng_aio_result(op->aio);
	if (op->state == OP_RECV) {
		srv->nrecv--;
		if (rv == 0) {
			nng_msg_free(nng_aio_get_msg(op->aio));
			nng_aio_set_msg(op->aio, NULL);
		}
	} else if (op->state == OP_SEND && rv != 0) {
		nng_msg_free(nng_aio_get_msg(op->aio));
		nng_aio_set_msg(op->aio, NULL);
	}
	op->state = OP_IDLE;
}

static int
srv_nng_err(coffer_err *err, int nrv, const char *what, const char *url)
{
	int code = nrv == NNG_ENOMEM ? COFFER_ENOMEM
	    : nrv == NNG_EADDRINUSE  ? COFFER_EEXIST
	    : nrv == NNG_EPERM       ? COFFER_EPERM
	                             : COFFER_EINVAL;
	coffer_err_set(err, code, "%s %s: %s", what, url, nng_strerror(nrv));
	if (nrv == NNG_EADDRINUSE) {
		coffer_err_hint(err, "another process listens there; stop it or change the port");
	} else if (nrv == NNG_EADDRINVAL || nrv == NNG_EINVAL) {
		coffer_err_hint(err, "write the address as tls+tcp://HOST:PORT");
	} else {
		coffer_err_hint(err, "check the listen address and that this host owns it");
	}
	return (code);
}

/* The url with port 0 replaced by the port bound, so that a new listener
 * (coffer_net_server_reload_tls) takes the same one. */
static void
srv_bound_url(coffer_net_server *srv, const char *url)
{
	const char *colon = strrchr(url, ':');
	size_t n = colon != NULL ? (size_t)(colon - url) : 0;
	if (srv->port > 0 && colon != NULL && strcmp(colon, ":0") == 0 &&
	    n + 8 < sizeof(srv->url)) {
		snprintf(srv->url, sizeof(srv->url), "%.*s:%d", (int)n, url, srv->port);
	} else {
		snprintf(srv->url, sizeof(srv->url), "%s", url);
	}
}

/* A listener on url with the server's limits and tcfg (NULL: plain). */
static int
srv_listen(coffer_net_server *srv, const char *url, nng_tls_config *tcfg, nng_listener *out,
    coffer_err *err)
{
	int nrv = nng_listener_create(out, srv->sock, url);
	if (nrv == 0) {
		/* NNG's TCP and TLS transports accept any size by default. */
		nrv = nng_listener_set_size(*out, NNG_OPT_RECVMAXSZ, srv->max_msg);
	}
	if (nrv == 0 && tcfg != NULL) {
		nrv = nng_listener_set_ptr(*out, NNG_OPT_TLS_CONFIG, tcfg);
	}
	if (nrv != 0) {
		return (srv_nng_err(err, nrv, "cannot set up a listener for", url));
	}
	nrv = nng_listener_start(*out, 0);
	if (nrv != 0) {
		nng_listener_close(*out);
		return (srv_nng_err(err, nrv, "cannot listen on", url));
	}
	return (0);
}

int
coffer_net_server_reload_tls(coffer_net_server *srv, const coffer_tls_files *tls, coffer_err *err)
{
	if (!srv->tls || srv->stopping) {
		return (0);
	}
	nng_tls_config *tcfg = NULL;
	int rv = coffer_tlsconf_server_new(tls, &tcfg, err);
	if (rv != 0) {
		return (rv); /* the running listener stays as it was */
	}
	/* Closing the listener closes every connection it accepted, so each
	 * peer's certificate is checked again, under the new CRL, when it
	 * redials (agents do within their reconnect interval). The port is
	 * free for a moment: a connect in that moment is refused and retried. */
	nng_listener_close(srv->listener);
	nng_listener l;
	rv = COFFER_EINVAL;
	for (int attempt = 0; attempt < 20 && rv != 0; attempt++) {
		if (attempt > 0) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			nanosleep(&ts, NULL);
			coffer_err_clear(err);
		}
		rv = srv_listen(srv, srv->url, tcfg, &l, err);
	}
	nng_tls_config_free(tcfg);
	if (rv != 0) {
		return (rv);
	}
	srv->listener = l;
	return (0);
}

int
coffer_net_server_start(uv_loop_t *loop, const coffer_net_server_config *cfg,
    coffer_net_handler handler, void *arg, coffer_net_server **out, coffer_err *err)
{
	if (cfg->url == NULL || handler == NULL) {
		return (
		    coffer_err_set(err, COFFER_EINVAL, "wire server needs a url and a handler"));
	}
	coffer_tlsconf_kind kind;
	int rv = coffer_tlsconf_check_url(cfg->url, cfg->insecure, &kind, err);
	if (rv != 0) {
		return (rv);
	}
	coffer_net_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the wire server"));
	}
	srv->loop = loop;
	srv->handler = handler;
	srv->on_pipe = cfg->on_pipe;
	srv->arg = arg;
	srv->tls = kind == COFFER_TLSCONF_TLS;
	srv->workers = cfg->workers > 0 ? cfg->workers : COFFER_NET_DEFAULT_WORKERS;
	unsigned inflight = cfg->max_inflight > 0 ? cfg->max_inflight : 4 * srv->workers;
	srv->max_ops = srv->workers + inflight;
	srv->max_msg = cfg->max_msg > 0 ? cfg->max_msg : COFFER_WIRE_MAX_MSG;
	pthread_mutex_init(&srv->mu, NULL);

	nng_tls_config *tcfg = NULL;
	if (srv->tls) {
		rv = coffer_tlsconf_server_new(&cfg->tls, &tcfg, err);
		if (rv != 0) {
			srv_free(srv);
			return (rv);
		}
	}
	int nrv = nng_rep0_open(&srv->sock);
	if (nrv != 0) {
		if (tcfg != NULL) {
			nng_tls_config_free(tcfg);
		}
		srv_free(srv);
		return (srv_nng_err(err, nrv, "cannot open a reply socket for", cfg->url));
	}
	nng_pipe_notify(srv->sock, NNG_PIPE_EV_ADD_PRE, srv_pipe_cb, srv);
	nng_pipe_notify(srv->sock, NNG_PIPE_EV_ADD_POST, srv_pipe_cb, srv);
	nng_pipe_notify(srv->sock, NNG_PIPE_EV_REM_POST, srv_pipe_cb, srv);
	nrv = nng_listener_create(&srv->listener, srv->sock, cfg->url);
	if (nrv == 0) {
		/* NNG's TCP and TLS transports accept any size by default. */
		nrv = nng_listener_set_size(srv->listener, NNG_OPT_RECVMAXSZ, srv->max_msg);
	}
	if (nrv == 0 && tcfg != NULL) {
		nrv = nng_listener_set_ptr(srv->listener, NNG_OPT_TLS_CONFIG, tcfg);
	}
	if (tcfg != NULL) {
		nng_tls_config_free(tcfg); /* the listener holds its own reference */
	}
	if (nrv == 0) {
		nrv = nng_listener_start(srv->listener, 0);
		if (nrv != 0) {
			srv_nng_err(err, nrv, "cannot listen on", cfg->url);
		}
	} else {
		srv_nng_err(err, nrv, "cannot set up a listener for", cfg->url);
	}
	if (nrv != 0) {
		nng_close(srv->sock);
		srv_free(srv);
		return (err != NULL ? err->code : COFFER_EINVAL);
	}
	int port = 0;
	if (kind != COFFER_TLSCONF_LOCAL &&
	    nng_listener_get_int(srv->listener, NNG_OPT_TCP_BOUND_PORT, &port) == 0) {
		srv->port = port;
	}
	srv_bound_url(srv, cfg->url);

	uv_async_init(loop, &srv->async, srv_async_cb);
	srv->async.data = srv;
	for (unsigned i = 0; i < srv->workers; i++) {
		struct coffer_net_reply *op;
		nrv = op_new(srv, &op);
		if (nrv != 0) {
			/* Nothing was received yet, so stop has nothing to lose. */
			coffer_net_server_stop(srv);
			return (coffer_err_set(err, COFFER_ENOMEM,
			    "cannot open %u request contexts: %s", srv->workers,
			    nng_strerror(nrv)));
		}
		op_recv(op);
	}
	coffer_log_info("wire server listening",
	    "url=%s port=%d workers=%u max_inflight=%u "
	    "max_msg=%zu tls=%s",
	    cfg->url, srv->port, srv->workers, inflight, srv->max_msg, srv->tls ? "mutual" : "off");
	*out = srv;
	return (0);
}

int
coffer_net_server_port(const coffer_net_server *srv)
{
	return (srv->port);
}

void
coffer_net_server_stop(coffer_net_server *srv)
{
	if (srv == NULL || srv->stopping) {
		return;
	}
	srv->stopping = true;
	for (struct coffer_net_reply *op = srv->ops; op != NULL; op = op->next) {
		nng_aio_stop(op->aio);
	}
	nng_close(srv->sock);
	pthread_mutex_lock(&srv->mu);
	srv->mail_closed = true;
	struct coffer_net_reply *mail = srv->mail_head;
	struct net_pipe_ev *evs = srv->ev_head;
	srv->mail_head = srv->mail_tail = NULL;
	srv->ev_head = srv->ev_tail = NULL;
	pthread_mutex_unlock(&srv->mu);
	for (int pass = 0; pass < 2; pass++) {
		struct coffer_net_reply *op = pass == 0 ? mail : srv->batch;
		while (op != NULL) {
			struct coffer_net_reply *next = op->mail_next;
			srv_discard(srv, op);
			op = next;
		}
	}
	srv->batch = NULL;
	for (int pass = 0; pass < 2; pass++) {
		struct net_pipe_ev *e = pass == 0 ? evs : srv->ev_batch;
		while (e != NULL) {
			struct net_pipe_ev *next = e->next;
			free(e);
			e = next;
		}
	}
	srv->ev_batch = NULL;
	uv_close((uv_handle_t *)&srv->async, srv_async_close_cb);
	struct coffer_net_reply *op = srv->ops;
	while (op != NULL) {
		struct coffer_net_reply *next = op->next;
		if (op->state != OP_HELD) {
			op_free(op);
		}
		op = next;
	}
	coffer_log_info("wire server stopped", "held_replies=%u", srv->nops);
}

int
coffer_net_reply_send(coffer_net_reply *reply, const uint8_t *buf, size_t len, coffer_err *err)
{
	coffer_net_server *srv = reply->srv;
	if (reply->state != OP_HELD) {
		return (coffer_err_set(err, COFFER_EINTERNAL,
		    "a reply was sent for a request that was already answered"));
	}
	if (srv->stopping) {
		op_free(reply);
		srv_maybe_free(srv);
		coffer_err_set(err, COFFER_ECANCELED, "the wire server stopped before the reply");
		return (coffer_err_hint(err, "nothing to do: the client will retry"));
	}
	if (len > srv->max_msg) {
		nng_msg_free(reply->req);
		reply->req = NULL;
		op_rest(reply);
		coffer_err_set(err, COFFER_ETOOBIG, "reply of %zu bytes is over the %zu byte limit",
		    len, srv->max_msg);
		return (coffer_err_hint(err, "answer with less, or raise the wire size limit"));
	}
	nng_msg *m;
	int nrv = nng_msg_alloc(&m, len);
	if (nrv != 0) {
		nng_msg_free(reply->req);
		reply->req = NULL;
		op_rest(reply);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a %zu byte reply", len));
	}
	if (len > 0) {
		memcpy(nng_msg_body(m), buf, len);
	}
	/* The REP context remembers whom to answer; the request is done. */
	nng_msg_free(reply->req);
	reply->req = NULL;
	reply->state = OP_SEND;
	nng_aio_set_msg(reply->aio, m);
	nng_ctx_send(reply->ctx, reply->aio);
	return (0);
}

void
coffer_net_reply_drop(coffer_net_reply *reply)
{
	coffer_net_server *srv = reply->srv;
	if (reply->state != OP_HELD) {
		return;
	}
	if (srv->stopping) {
		op_free(reply);
		srv_maybe_free(srv);
		return;
	}
	nng_msg_free(reply->req);
	reply->req = NULL;
	op_rest(reply);
}

/* ---- client ---- */

struct coffer_net_client {
	nng_socket sock;
	nng_dialer dialer;
	nng_tls_config *tcfg; /* NULL for plain tcp and ipc; kept for a new dialer */
	size_t max_msg;
	char url[512];
	unsigned reconnect_min_ms, reconnect_max_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned pipes;  /* connected pipes */
	unsigned active; /* calls in progress */
	bool closing;
	uint64_t down_since_ms; /* monotonic: since when there has been no pipe */
	bool redialing;         /* a call is replacing the dialer */
	unsigned redials;       /* dialers replaced */
	/* The certificate files, for the clock check of a failed handshake. */
	char ca[512], cert[512];
};

/* A TLS failure explained by this host's clock, if it is one: the peer's
 * certificate was issued by our CA at about the time ours was, so a clock
 * outside our own certificates' validity is almost surely outside the
 * peer's too, and the engine's "unknown CA" is the clock. */
static bool
cli_clock_explains(const char *ca, const char *cert, coffer_err *err)
{
	coffer_tls_files files = { .ca = ca[0] != '\0' ? ca : NULL,
		.cert = cert[0] != '\0' ? cert : NULL };
	coffer_err e;
	coffer_err_clear(&e);
	if (coffer_tlsconf_clock_check(&files, coffer_clock_now(NULL), &e) == 0) {
		return (false);
	}
	if (err != NULL) {
		*err = e;
	}
	return (true);
}

static uint64_t cli_now_ms(void);

static void
cli_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)p;
	coffer_net_client *c = arg;
	pthread_mutex_lock(&c->mu);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		c->pipes++;
	} else if (ev == NNG_PIPE_EV_REM_POST && c->pipes > 0) {
		c->pipes--;
		if (c->pipes == 0) {
			c->down_since_ms = cli_now_ms();
		}
	}
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static int
cli_dialer(coffer_net_client *c, coffer_err *err)
{
	int nrv = nng_dialer_create(&c->dialer, c->sock, c->url);
	if (nrv == 0) {
		nrv = nng_dialer_set_size(c->dialer, NNG_OPT_RECVMAXSZ, c->max_msg);
	}
	if (nrv == 0) {
		nrv = nng_dialer_set_ms(
		    c->dialer, NNG_OPT_RECONNMINT, (nng_duration)c->reconnect_min_ms);
	}
	if (nrv == 0) {
		nrv = nng_dialer_set_ms(
		    c->dialer, NNG_OPT_RECONNMAXT, (nng_duration)c->reconnect_max_ms);
	}
	if (nrv == 0 && c->tcfg != NULL) {
		nrv = nng_dialer_set_ptr(c->dialer, NNG_OPT_TLS_CONFIG, c->tcfg);
	}
	if (nrv != 0) {
		coffer_err_set(err, nrv == NNG_ENOMEM ? COFFER_ENOMEM : COFFER_EINVAL,
		    "cannot set up a connection to %s: %s", c->url, nng_strerror(nrv));
		return (coffer_err_hint(err, "write the url as tls+tcp://HOST:PORT"));
	}
	return (0);
}

/*
 * NNG 1.5.2's dialer redials after most failed attempts, but after one that
 * ends in NNG_ECLOSED or NNG_ECANCELED it takes "no further action"
 * (dialer.c, dialer_connect_cb), for good; a TLS handshake that the peer
 * cuts (a coordinator killed or restarting) can end that way. The client
 * would then never reconnect (seen in tests/integration/sender.sh: an agent
 * with no connection, and no attempt, for minutes after a coordinator
 * restart). So a call that finds no pipe for twice the longest backoff
 * replaces the dialer with a fresh one; only one call does it at a time.
 */
static void
cli_replace_dialer(coffer_net_client *c, uint64_t down_ms)
{
	coffer_log_warn("no connection for a while: dialing afresh", "url=%s down_ms=%llu", c->url,
	    (unsigned long long)down_ms);
	nng_dialer_close(c->dialer);
	coffer_err err;
	coffer_err_clear(&err);
	int nrv = 0;
	if (cli_dialer(c, &err) == 0 &&
	    (nrv = nng_dialer_start(c->dialer, NNG_FLAG_NONBLOCK)) != 0) {
		coffer_err_set(
		    &err, COFFER_EUNAVAIL, "cannot start dialing: %s", nng_strerror(nrv));
	}
	if (err.code != 0) {
		coffer_log_error("dialing afresh failed", "url=%s error=%s", c->url, err.msg);
	}
	pthread_mutex_lock(&c->mu);
	c->redialing = false;
	c->redials++;
	c->down_since_ms = cli_now_ms();
	pthread_mutex_unlock(&c->mu);
}

static int
cli_dial_error(const coffer_net_client *c, const char *url, const char *server_name, bool tls,
    int nrv, coffer_err *err)
{
	bool handshake = nrv == NNG_EPEERAUTH || nrv == NNG_ECRYPTO ||
	    (tls && (nrv == NNG_ECONNSHUT || nrv == NNG_ECONNRESET || nrv == NNG_ECLOSED));
	if (handshake && cli_clock_explains(c->ca, c->cert, err)) {
		return (COFFER_EAUTH);
	}
	if (nrv == NNG_EPEERAUTH) {
		coffer_err_set(err, COFFER_EAUTH,
		    "the server at %s failed TLS authentication: its certificate is not signed by "
		    "our CA or does not carry the name \"%s\"",
		    url, server_name);
		return (coffer_err_hint(err,
		    "check the ca file, and the url host (or server name) against the server "
		    "certificate's subjectAltName"));
	}
	if (nrv == NNG_ECRYPTO) {
		/* mbedTLS reports an untrusted chain, a name mismatch and a
		 * refused client certificate alike. */
		coffer_err_set(err, COFFER_EAUTH,
		    "the TLS handshake with %s failed (%s): the server's certificate is not from "
		    "our CA or does not name \"%s\", or the server refused our certificate "
		    "(revoked on the CA's CRL, expired, or from another CA)",
		    url, nng_strerror(nrv), server_name);
		return (coffer_err_hint(err,
		    "use certificates from one CA (deploy/certs.sh) whose server subjectAltName "
		    "lists \"%s\" as a DNS name (NNG 1.5.2 ignores IP entries)",
		    server_name));
	}
	if (tls && (nrv == NNG_ECONNSHUT || nrv == NNG_ECONNRESET || nrv == NNG_ECLOSED)) {
		coffer_err_set(err, COFFER_EAUTH,
		    "the server at %s closed the connection during the TLS handshake (%s): it "
		    "probably refused our client certificate (revoked on the CA's CRL, expired, or "
		    "from another CA)",
		    url, nng_strerror(nrv));
		return (coffer_err_hint(err,
		    "configure cert and key issued by the server's CA (deploy/certs.sh DIR client NAME)"));
	}
	if (nrv == NNG_EADDRINVAL || nrv == NNG_EINVAL || nrv == NNG_ENOTSUP) {
		coffer_err_set(err, COFFER_EINVAL, "cannot dial %s: %s", url, nng_strerror(nrv));
		return (coffer_err_hint(err, "write the url as tls+tcp://HOST:PORT"));
	}
	return (0);
}

int
coffer_net_client_open(
    const coffer_net_client_config *cfg, coffer_net_client **out, coffer_err *err)
{
	coffer_tlsconf_kind kind;
	int rv = coffer_tlsconf_check_url(cfg->url, cfg->insecure, &kind, err);
	if (rv != 0) {
		return (rv);
	}
	char host[256];
	rv = coffer_tlsconf_url_host(cfg->url, host, sizeof(host), err);
	if (rv != 0) {
		return (rv);
	}
	if (strlen(cfg->url) >= sizeof(((coffer_net_client *)0)->url)) {
		coffer_err_set(err, COFFER_EINVAL, "url \"%.64s...\" is too long", cfg->url);
		return (coffer_err_hint(err, "use a shorter host name"));
	}
	coffer_net_client *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a wire client"));
	}
	snprintf(c->url, sizeof(c->url), "%s", cfg->url);
	snprintf(c->ca, sizeof(c->ca), "%s", cfg->tls.ca != NULL ? cfg->tls.ca : "");
	snprintf(c->cert, sizeof(c->cert), "%s", cfg->tls.cert != NULL ? cfg->tls.cert : "");
	c->max_msg = cfg->max_msg > 0 ? cfg->max_msg : COFFER_WIRE_MAX_MSG;
	c->reconnect_min_ms = cfg->reconnect_min_ms > 0 ? cfg->reconnect_min_ms : 100;
	c->reconnect_max_ms = cfg->reconnect_max_ms > 0 ? cfg->reconnect_max_ms : 30000;
	c->down_since_ms = cli_now_ms();
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);

	const char *server_name = cfg->server_name != NULL ? cfg->server_name : host;
	nng_tls_config *tcfg = NULL;
	bool tls = kind == COFFER_TLSCONF_TLS;
	if (tls) {
		rv = coffer_tlsconf_client_new(&cfg->tls, server_name, &tcfg, err);
		if (rv != 0) {
			goto fail_sync;
		}
	}
	int nrv = nng_req0_open(&c->sock);
	if (nrv != 0) {
		rv = coffer_err_set(
		    err, COFFER_ENOMEM, "cannot open a request socket: %s", nng_strerror(nrv));
		goto fail_sync;
	}
	nng_pipe_notify(c->sock, NNG_PIPE_EV_ADD_POST, cli_pipe_cb, c);
	nng_pipe_notify(c->sock, NNG_PIPE_EV_REM_POST, cli_pipe_cb, c);
	c->tcfg = tcfg;
	rv = cli_dialer(c, err);
	if (rv != 0) {
		goto fail_sock;
	}
	/* One synchronous attempt: the only moment NNG tells us why a dial
	 * failed. Background redials fail silently. */
	nrv = nng_dialer_start(c->dialer, 0);
	if (nrv != 0) {
		rv = cli_dial_error(c, cfg->url, server_name, tls, nrv, err);
		if (rv != 0) {
			goto fail_sock;
		}
		coffer_log_warn("coordinator not reachable yet, retrying in the background",
		    "url=%s error=\"%s\"", cfg->url, nng_strerror(nrv));
		/* A fresh dialer rather than restarting one whose first start
		 * failed: 1.5.2 had races around dialer reuse (#1657). */
		nng_dialer_close(c->dialer);
		rv = cli_dialer(c, err);
		if (rv != 0) {
			goto fail_sock;
		}
		nrv = nng_dialer_start(c->dialer, NNG_FLAG_NONBLOCK);
		if (nrv != 0) {
			rv = coffer_err_set(err, COFFER_EUNAVAIL, "cannot start dialing %s: %s",
			    cfg->url, nng_strerror(nrv));
			coffer_err_hint(err, "check the url");
			goto fail_sock;
		}
	}
	*out = c;
	return (0);
fail_sock:
	nng_close(c->sock);
fail_sync:
	if (tcfg != NULL) {
		nng_tls_config_free(tcfg);
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return (rv);
}

static uint64_t
cli_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
}

/* Waits until a pipe is up or the deadline passes; true if connected. */
static bool
cli_wait_connected(coffer_net_client *c, uint64_t deadline)
{
	struct timespec ts = {
		.tv_sec = (time_t)(deadline / 1000u),
		.tv_nsec = (long)(deadline % 1000u) * 1000000L,
	};
	while (c->pipes == 0 && !c->closing) {
		if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) {
			break;
		}
	}
	return (c->pipes > 0 && !c->closing);
}

static int
cli_call_error(
    coffer_net_client *c, int nrv, const char *phase, unsigned timeout_ms, coffer_err *err)
{
	switch (nrv) {
	case NNG_ETIMEDOUT:
		coffer_err_set(
		    err, COFFER_EUNAVAIL, "no reply from %s within %u ms", c->url, timeout_ms);
		return (coffer_err_hint(err,
		    "check that the coordinator is running and not "
		    "overloaded; the request may be retried"));
	case NNG_ECLOSED:
	case NNG_ECANCELED:
		return (coffer_err_set(
		    err, COFFER_ECANCELED, "call to %s canceled: client closing", c->url));
	case NNG_EPROTO:
		coffer_err_set(err, COFFER_EPROTO, "%s %s: protocol error", phase, c->url);
		return (coffer_err_hint(err, "the peer is not a Coffer coordinator"));
	case NNG_EMSGSIZE:
		coffer_err_set(err, COFFER_ETOOBIG, "%s %s: message too large", phase, c->url);
		return (coffer_err_hint(err, "raise max_msg or send less"));
	case NNG_ENOMEM:
		return (coffer_err_set(err, COFFER_ENOMEM, "%s %s: out of memory", phase, c->url));
	default:
		coffer_err_set(err, COFFER_EUNAVAIL, "%s %s: %s", phase, c->url, nng_strerror(nrv));
		return (
		    coffer_err_hint(err, "the connection was lost; the request may be retried"));
	}
}

int
coffer_net_client_call(coffer_net_client *c, const uint8_t *req, size_t len, uint8_t **reply,
    size_t *reply_len, unsigned timeout_ms, coffer_err *err)
{
	*reply = NULL;
	*reply_len = 0;
	if (len > c->max_msg) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "request of %zu bytes is over the %zu byte limit", len, c->max_msg);
		return (coffer_err_hint(err, "send less per request"));
	}
	uint64_t deadline = cli_now_ms() + timeout_ms;
	pthread_mutex_lock(&c->mu);
	if (c->closing) {
		pthread_mutex_unlock(&c->mu);
		return (coffer_err_set(err, COFFER_ECANCELED, "the wire client is closing"));
	}
	c->active++;
	bool up = cli_wait_connected(c, deadline);
	bool closing = c->closing;
	uint64_t down_ms = up ? 0 : cli_now_ms() - c->down_since_ms;
	bool replace = !up && !closing && !c->redialing && c->pipes == 0 &&
	    down_ms >= 2 * (uint64_t)c->reconnect_max_ms;
	if (replace) {
		c->redialing = true;
	}
	pthread_mutex_unlock(&c->mu);
	if (replace) {
		cli_replace_dialer(c, down_ms);
	}

	int rv = 0;
	nng_ctx ctx = NNG_CTX_INITIALIZER;
	nng_aio *aio = NULL;
	nng_msg *m = NULL;
	bool ctx_open = false;
	if (!up) {
		rv = coffer_err_set(err, closing ? COFFER_ECANCELED : COFFER_EUNAVAIL,
		    "no connection to %s within %u ms", c->url, timeout_ms);
		coffer_err_hint(err,
		    "check that the coordinator runs and is reachable, and that "
		    "both sides' certificates come from the same CA");
		coffer_err clock;
		if (!closing && c->tcfg != NULL && cli_clock_explains(c->ca, c->cert, &clock)) {
			/* Still EUNAVAIL (callers retry); the text names the clock. */
			coffer_err_set(
			    err, COFFER_EUNAVAIL, "no connection to %s: %s", c->url, clock.msg);
			coffer_err_hint(err, "%s", clock.hint);
		}
		goto done;
	}
	int nrv = nng_ctx_open(&ctx, c->sock);
	if (nrv == 0) {
		ctx_open = true;
		nrv = nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	}
	if (nrv == 0) {
		nrv = nng_aio_alloc(&aio, NULL, NULL);
	}
	if (nrv == 0) {
		nrv = nng_msg_alloc(&m, len);
	}
	if (nrv != 0) {
		rv = cli_call_error(c, nrv, "preparing a call to", timeout_ms, err);
		goto done;
	}
	if (len > 0) {
		memcpy(nng_msg_body(m), req, len);
	}
	uint64_t now = cli_now_ms();
	nng_aio_set_msg(aio, m);
	m = NULL;
	nng_aio_set_timeout(aio, now < deadline ? (nng_duration)(deadline - now) : 1);
	nng_ctx_send(ctx, aio);
	nng_aio_wait(aio);
	nrv = nng_aio_result(aio);
	if (nrv != 0) {
		nng_msg_free(nng_aio_get_msg(aio));
		rv = cli_call_error(c, nrv, "sending to", timeout_ms, err);
		goto done;
	}
	now = cli_now_ms();
	nng_aio_set_timeout(aio, now < deadline ? (nng_duration)(deadline - now) : 1);
	nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	nrv = nng_aio_result(aio);
	if (nrv != 0) {
		rv = cli_call_error(c, nrv, "waiting for a reply from", timeout_ms, err);
		goto done;
	}
	m = nng_aio_get_msg(aio);
	size_t n = nng_msg_len(m);
	uint8_t *out = malloc(n > 0 ? n : 1);
	if (out == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for a %zu byte reply", n);
		goto done;
	}
	if (n > 0) {
		memcpy(out, nng_msg_body(m), n);
	}
	*reply = out;
	*reply_len = n;
done:
	if (m != NULL) {
		nng_msg_free(m);
	}
	if (aio != NULL) {
		nng_aio_free(aio);
	}
	if (ctx_open) {
		nng_ctx_close(ctx);
	}
	pthread_mutex_lock(&c->mu);
	c->active--;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return (rv);
}

void
coffer_net_client_close(coffer_net_client *c)
{
	if (c == NULL) {
		return;
	}
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	/* Closing the socket fails every pending aio with NNG_ECLOSED. */
	nng_close(c->sock);
	pthread_mutex_lock(&c->mu);
	while (c->active > 0) {
		pthread_cond_wait(&c->cv, &c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	if (c->tcfg != NULL) {
		nng_tls_config_free(c->tcfg);
	}
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

unsigned
coffer_net_client_redials(coffer_net_client *c)
{
	pthread_mutex_lock(&c->mu);
	unsigned n = c->redials;
	pthread_mutex_unlock(&c->mu);
	return (n);
}

void
coffer_net_client_drop_dialer(coffer_net_client *c)
{
	nng_dialer_close(c->dialer);
}

int
coffer_net_url_check(const char *url, const char *what, coffer_err *err)
{
	static const char *const schemes[] = { "tls+tcp://", "tcp://", "ipc://" };
	for (size_t i = 0; url != NULL && i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i]);
		if (strncmp(url, schemes[i], n) == 0 && url[n] != '\0') {
			return (0);
		}
	}
	coffer_err_set(err, COFFER_EINVAL, "'%.64s' is not a %s", url != NULL ? url : "", what);
	coffer_err_hint(err,
	    "write tls+tcp://host:port (tcp:// and ipc:// only for tests and single-host setups)");
	return (COFFER_EINVAL);
}
