/*
 * Net: the wire transport, NNG req/rep over mutual TLS. The coordinator runs
 * a server on its libuv loop; agents and the operator CLI are blocking
 * clients. Messages are opaque bytes here (normally a packed Envelope; see
 * common/wire/wire.h); this layer moves them and says who sent them.
 *
 * Server promises:
 * - `workers` NNG contexts always wait for requests; when handlers keep
 *   requests (a parked long-poll, work on the thread pool), more contexts are
 *   opened, up to `max_inflight` requests held at once, and closed again when
 *   no longer needed. Requests held in memory are bounded by
 *   (workers + max_inflight) * max_msg, whatever the number of peers.
 * - The handler runs on the loop thread, never on an NNG thread; it answers
 *   with coffer_net_reply_send or coffer_net_reply_drop, at once or later,
 *   but always on the loop thread and exactly once per request.
 * - A request over max_msg bytes never reaches the handler: NNG drops the
 *   connection that sent it and the server keeps serving everyone else.
 * - Peers on tls+tcp:// must present a certificate the CA signed; NNG 1.5.2
 *   cannot say which one, so peer.cn is normally empty and identity comes
 *   from the signed envelope.
 *
 * Client promises: every call blocks for at most its timeout, is safe from
 * many threads at once on one client (each call uses its own NNG context),
 * and reports an unreachable or silent server as COFFER_EUNAVAIL. A call is
 * sent at most once: if the connection drops, it fails rather than resending,
 * because the callers (outbox, CLI) decide about retries themselves.
 */
#ifndef COFFER_COMMON_WIRE_NET_H
#define COFFER_COMMON_WIRE_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common/base/error.h"
#include "common/wire/tlsconf.h"

#define COFFER_NET_DEFAULT_WORKERS 16
#define COFFER_NET_PEER_ADDR_MAX   64
#define COFFER_NET_PEER_CN_MAX     256

typedef struct coffer_net_server coffer_net_server;
typedef struct coffer_net_reply coffer_net_reply;
typedef struct coffer_net_client coffer_net_client;

/* Who sent a request (or opened a connection). */
typedef struct coffer_net_peer {
	uint32_t pipe_id;                    /* NNG's connection id; 0 if gone */
	bool tls;                            /* arrived over TLS */
	bool verified;                       /* TLS peer certificate chained to our CA */
	char cn[COFFER_NET_PEER_CN_MAX];     /* certificate CN; "" when NNG cannot say (1.5.2) */
	char addr[COFFER_NET_PEER_ADDR_MAX]; /* "127.0.0.1:40000", "[::1]:40000"; "" if unknown */
} coffer_net_peer;

/* Called on the loop thread for every request. req (len bytes) and peer stay
 * valid until reply is finished with coffer_net_reply_send or _drop. */
/* Whether url is an address this transport speaks: tls+tcp://HOST:PORT, or
 * tcp:// and ipc:// (tests and single-host setups). what names the key in
 * the error ("coordinator address", "listen address"). */
int coffer_net_url_check(const char *url, const char *what, coffer_err *err);

typedef void (*coffer_net_handler)(void *arg, coffer_net_reply *reply, const uint8_t *req,
    size_t len, const coffer_net_peer *peer);

/* Optional: called on the loop thread when a connection comes (up) or goes. */
typedef void (*coffer_net_pipe_cb)(void *arg, bool up, const coffer_net_peer *peer);

typedef struct coffer_net_server_config {
	const char *url;            /* tls+tcp://0.0.0.0:7443; port 0 picks a free one */
	coffer_tls_files tls;       /* required for tls+tcp:// */
	bool insecure;              /* allow plain tcp:// on a non-loopback address */
	unsigned workers;           /* contexts kept receiving; 0: COFFER_NET_DEFAULT_WORKERS */
	unsigned max_inflight;      /* requests held by handlers at once; 0: 4 * workers */
	size_t max_msg;             /* largest request and reply; 0: COFFER_WIRE_MAX_MSG */
	coffer_net_pipe_cb on_pipe; /* may be NULL; gets the handler's arg */
} coffer_net_server_config;

/* Listens on cfg->url and serves requests on loop. The config is copied.
 * On success *out runs until coffer_net_server_stop. */
int coffer_net_server_start(uv_loop_t *loop, const coffer_net_server_config *cfg,
    coffer_net_handler handler, void *arg, coffer_net_server **out, coffer_err *err);

/* Rebuilds the TLS config from tls (a new CRL, certificate or key) and
 * replaces the listener with one that uses it, on the same address and
 * port, from the loop thread. NNG 1.5.2 freezes a TLS config once a
 * listener holds it, so this is the only way to apply a new CRL: every
 * connection the old listener accepted is closed and its peer must
 * handshake again. A config that does not load (a bad or expired CRL)
 * leaves the running listener untouched and is reported. No-op without
 * TLS. */
int coffer_net_server_reload_tls(
    coffer_net_server *srv, const coffer_tls_files *tls, coffer_err *err);

/* The TCP port the server listens on (useful after asking for port 0); 0 for
 * ipc:// and inproc://. */
int coffer_net_server_port(const coffer_net_server *srv);

/* Stops serving, from the loop thread: no handler or pipe callback runs after
 * it returns, connections are closed, replies not yet sent are never sent.
 * Reply handles the handler still holds stay valid: finishing them (send
 * then returns COFFER_ECANCELED) releases them. The server's memory goes once
 * the loop has run its close callbacks and every reply is finished; srv must
 * not be used after this call. */
void coffer_net_server_stop(coffer_net_server *srv);

/* Answers a request with len bytes (copied), from the loop thread. Returns 0,
 * COFFER_ETOOBIG (over max_msg: the request is then dropped), or
 * COFFER_ECANCELED (the server was stopped). reply is finished either way. */
int coffer_net_reply_send(coffer_net_reply *reply, const uint8_t *buf, size_t len, coffer_err *err);

/* Finishes a request without answering; the client's call times out. */
void coffer_net_reply_drop(coffer_net_reply *reply);

typedef struct coffer_net_client_config {
	const char *url;           /* tls+tcp://coordinator.internal:7443 */
	coffer_tls_files tls;      /* ca required for TLS; cert+key both set, or both NULL */
	const char *server_name;   /* name the server certificate must carry; NULL: url host */
	bool insecure;             /* allow plain tcp:// to a non-loopback address */
	size_t max_msg;            /* largest request and reply; 0: COFFER_WIRE_MAX_MSG */
	unsigned reconnect_min_ms; /* 0: 100 */
	unsigned reconnect_max_ms; /* 0: 30000 */
} coffer_net_client_config;

/* Creates a client and tries one connection at once, so that a TLS failure
 * (unknown CA, wrong server name, refused certificate) is reported here with
 * COFFER_EAUTH. A server that is merely down is not an error: the client
 * keeps dialing in the background and calls fail with COFFER_EUNAVAIL until
 * it is up. */
int coffer_net_client_open(
    const coffer_net_client_config *cfg, coffer_net_client **out, coffer_err *err);

/* Sends len bytes and waits up to timeout_ms for the answer, which is returned
 * in a malloc'd buffer the caller frees. Errors: COFFER_EUNAVAIL (no
 * connection, connection lost, no answer in time), COFFER_ETOOBIG (req over
 * max_msg), COFFER_EPROTO (the peer broke the protocol), COFFER_ECANCELED
 * (the client is being closed). Thread-safe. */
int coffer_net_client_call(coffer_net_client *client, const uint8_t *req, size_t len,
    uint8_t **reply, size_t *reply_len, unsigned timeout_ms, coffer_err *err);

/* Closes the connection; calls in flight fail with COFFER_ECANCELED. No call
 * may start after close has begun. NULL is ignored. */
void coffer_net_client_close(coffer_net_client *client);

/* How many times a call found no connection for twice reconnect_max and
 * replaced the dialer (NNG 1.5.2 stops redialing after some failures). */
unsigned coffer_net_client_redials(coffer_net_client *client);

/* For tests: closes the dialer as NNG 1.5.2 abandons one, so that the
 * replacement can be exercised. */
void coffer_net_client_drop_dialer(coffer_net_client *client);

#endif
