/*
 * Driver for tests/integration/net.sh: a real wire server on a libuv loop and
 * real blocking clients in threads, over mutual TLS on loopback.
 *
 *   net_itest server URL [TLS] [--insecure] [--workers N] [--inflight N]
 *	[--max-msg N] [--seconds S] [--port-file F]
 *	Serves until SIGTERM/SIGINT or S seconds (default 60), then stops the
 *	server while requests may be in flight and exits 0 if everything closed.
 *	Answers each request with its bytes upper-cased, computed on the libuv
 *	thread pool and sent from the loop thread afterwards; a request that
 *	starts with "sleep:" takes 300 ms there, one that is exactly "drop" gets
 *	no answer. Writes the bound port to F once listening.
 *   net_itest client URL [TLS] [--server-name N] [--insecure] [--threads K]
 *	[--calls N] [--timeout MS] [--max-msg N] [--size BYTES] [--prefix P]
 *	[--allow-unavail]
 *	K threads share one client and make N calls each, checking every answer.
 *	Exits 0 if all were answered correctly (or, with --allow-unavail, failed
 *	only with "unavailable"/"canceled"), 1 on a wrong answer, or 10 + the
 *	negated COFFER_E* code of the first failure (27: EUNAVAIL, 18: EAUTH).
 *   TLS is --ca F --cert F --key F (cert and key may be omitted on a client).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <uv.h>

#include "common/base/log.h"
#include "common/wire/net.h"

struct opts {
	const char *url;
	coffer_tls_files tls;
	const char *server_name;
	const char *port_file;
	const char *prefix;
	bool insecure;
	bool allow_unavail;
	unsigned workers, inflight, seconds, threads, calls, timeout_ms;
	size_t max_msg, size;
};

static int
parse_opts(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->url = argv[2];
	o->seconds = 60;
	o->threads = 1;
	o->calls = 1;
	o->timeout_ms = 5000;
	o->prefix = "";
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--insecure") == 0) {
			o->insecure = true;
			continue;
		}
		if (strcmp(a, "--allow-unavail") == 0) {
			o->allow_unavail = true;
			continue;
		}
		if (v == NULL) {
			fprintf(stderr, "net_itest: %s needs a value\n", a);
			return (-1);
		}
		i++;
		if (strcmp(a, "--ca") == 0) {
			o->tls.ca = v;
		} else if (strcmp(a, "--cert") == 0) {
			o->tls.cert = v;
		} else if (strcmp(a, "--key") == 0) {
			o->tls.key = v;
		} else if (strcmp(a, "--server-name") == 0) {
			o->server_name = v;
		} else if (strcmp(a, "--port-file") == 0) {
			o->port_file = v;
		} else if (strcmp(a, "--prefix") == 0) {
			o->prefix = v;
		} else if (strcmp(a, "--workers") == 0) {
			o->workers = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--inflight") == 0) {
			o->inflight = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--seconds") == 0) {
			o->seconds = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--threads") == 0) {
			o->threads = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--calls") == 0) {
			o->calls = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--timeout") == 0) {
			o->timeout_ms = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--max-msg") == 0) {
			o->max_msg = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--size") == 0) {
			o->size = strtoull(v, NULL, 10);
		} else {
			fprintf(stderr, "net_itest: unknown option %s\n", a);
			return (-1);
		}
	}
	return (0);
}

/* ---- server ---- */

struct srv_state {
	uv_loop_t loop;
	uv_signal_t sigterm, sigint;
	uv_timer_t deadline;
	coffer_net_server *srv;
	unsigned long served, canceled, peers_up, peers_down;
	bool stopped;
};

struct job {
	uv_work_t work;
	struct srv_state *st;
	coffer_net_reply *reply;
	uint8_t *buf;
	size_t len;
	bool slow;
};

static void
job_work(uv_work_t *w)
{
	struct job *j = w->data;
	if (j->slow) {
		usleep(300 * 1000);
	}
	for (size_t i = 0; i < j->len; i++) {
		j->buf[i] = (uint8_t)toupper(j->buf[i]);
	}
}

static void
job_done(uv_work_t *w, int status)
{
	struct job *j = w->data;
	coffer_err err = { 0 };
	(void)status;
	if (coffer_net_reply_send(j->reply, j->buf, j->len, &err) == 0) {
		j->st->served++;
	} else if (err.code == COFFER_ECANCELED) {
		j->st->canceled++;
	} else {
		coffer_err_print("net_itest server", &err);
	}
	free(j->buf);
	free(j);
}

static void
on_request(
    void *arg, coffer_net_reply *reply, const uint8_t *req, size_t len, const coffer_net_peer *peer)
{
	struct srv_state *st = arg;
	if (peer->tls && !peer->verified) {
		fprintf(
		    stderr, "net_itest server: unverified TLS peer %s got through\n", peer->addr);
		exit(1);
	}
	if (len == 4 && memcmp(req, "drop", 4) == 0) {
		coffer_net_reply_drop(reply);
		return;
	}
	struct job *j = calloc(1, sizeof(*j));
	uint8_t *buf = malloc(len > 0 ? len : 1);
	if (j == NULL || buf == NULL) {
		free(j);
		free(buf);
		coffer_net_reply_drop(reply);
		return;
	}
	memcpy(buf, req, len);
	j->work.data = j;
	j->st = st;
	j->reply = reply;
	j->buf = buf;
	j->len = len;
	j->slow = len >= 6 && memcmp(req, "sleep:", 6) == 0;
	/* The request bytes stay valid until the reply; copying them anyway
	 * keeps the thread pool off memory the loop owns. */
	uv_queue_work(&st->loop, &j->work, job_work, job_done);
}

static void
on_pipe(void *arg, bool up, const coffer_net_peer *peer)
{
	struct srv_state *st = arg;
	coffer_log_info(up ? "peer connected" : "peer gone", "addr=%s verified=%d",
	    peer->addr[0] != '\0' ? peer->addr : "-", (int)peer->verified);
	if (up) {
		st->peers_up++;
	} else {
		st->peers_down++;
	}
}

static void
srv_shutdown(struct srv_state *st, const char *why)
{
	if (st->stopped) {
		return;
	}
	st->stopped = true;
	coffer_log_info("net_itest stopping", "why=%s", why);
	coffer_net_server_stop(st->srv);
	/* The signal handles stay installed (only unref'd) until the loop has
	 * drained: timeout(1) delivers SIGTERM twice (to the child and to its
	 * group), and a second one must not find the default action. */
	uv_unref((uv_handle_t *)&st->sigterm);
	uv_unref((uv_handle_t *)&st->sigint);
	uv_close((uv_handle_t *)&st->deadline, NULL);
}

static void
on_signal(uv_signal_t *h, int signum)
{
	srv_shutdown(h->data, signum == SIGTERM ? "sigterm" : "sigint");
}

static void
on_deadline(uv_timer_t *h)
{
	srv_shutdown(h->data, "deadline");
}

static int
run_server(const struct opts *o)
{
	struct srv_state st = { 0 };
	coffer_err err = { 0 };
	uv_loop_init(&st.loop);
	coffer_net_server_config cfg = {
		.url = o->url,
		.tls = o->tls,
		.insecure = o->insecure,
		.workers = o->workers,
		.max_inflight = o->inflight,
		.max_msg = o->max_msg,
		.on_pipe = on_pipe,
	};
	if (coffer_net_server_start(&st.loop, &cfg, on_request, &st, &st.srv, &err) != 0) {
		coffer_err_print("net_itest server", &err);
		uv_run(&st.loop, UV_RUN_DEFAULT);
		uv_loop_close(&st.loop);
		return (10 - err.code);
	}
	/* Signals first: the script may send SIGTERM as soon as the port file exists. */
	uv_signal_init(&st.loop, &st.sigterm);
	uv_signal_init(&st.loop, &st.sigint);
	uv_timer_init(&st.loop, &st.deadline);
	st.sigterm.data = st.sigint.data = st.deadline.data = &st;
	uv_signal_start(&st.sigterm, on_signal, SIGTERM);
	uv_signal_start(&st.sigint, on_signal, SIGINT);
	uv_timer_start(&st.deadline, on_deadline, (uint64_t)o->seconds * 1000u, 0);
	if (o->port_file != NULL) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", o->port_file);
		FILE *f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%d\n", coffer_net_server_port(st.srv)) < 0 ||
		    fclose(f) != 0 || rename(tmp, o->port_file) != 0) {
			perror("net_itest server: port file");
			return (1);
		}
	}
	uv_run(&st.loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&st.sigterm, NULL);
	uv_close((uv_handle_t *)&st.sigint, NULL);
	uv_run(&st.loop, UV_RUN_DEFAULT);
	int rc = uv_loop_close(&st.loop);
	printf("served %lu canceled %lu connections %lu closed %lu\n", st.served, st.canceled,
	    st.peers_up, st.peers_down);
	if (rc != 0) {
		fprintf(stderr, "net_itest server: loop still has handles: %s\n", uv_strerror(rc));
		return (1);
	}
	return (0);
}

/* ---- client ---- */

struct cli_state {
	const struct opts *o;
	coffer_net_client *client;
	atomic_ulong ok, unavail;
	pthread_mutex_t mu;
	coffer_err first;
	bool wrong;
};

struct cli_thread {
	struct cli_state *cs;
	unsigned id;
	pthread_t tid;
};

static void
cli_fail(struct cli_state *cs, const coffer_err *err)
{
	pthread_mutex_lock(&cs->mu);
	if (cs->first.code == 0) {
		cs->first = *err;
	}
	pthread_mutex_unlock(&cs->mu);
}

static void *
cli_run(void *arg)
{
	struct cli_thread *t = arg;
	struct cli_state *cs = t->cs;
	const struct opts *o = cs->o;
	size_t cap = o->size > 256 ? o->size : 256;
	uint8_t *req = malloc(cap);
	if (req == NULL) {
		return (NULL);
	}
	for (unsigned i = 0; i < o->calls; i++) {
		int n = snprintf(
		    (char *)req, cap, "%st%u-c%u-%ld-", o->prefix, t->id, i, (long)random());
		size_t len = (size_t)n;
		while (len < o->size) {
			req[len] = (uint8_t)('a' + len % 26);
			len++;
		}
		uint8_t *rep = NULL;
		size_t rep_len = 0;
		coffer_err err = { 0 };
		int rv = coffer_net_client_call(
		    cs->client, req, len, &rep, &rep_len, o->timeout_ms, &err);
		if (rv != 0) {
			if (o->allow_unavail && (rv == COFFER_EUNAVAIL || rv == COFFER_ECANCELED)) {
				atomic_fetch_add(&cs->unavail, 1);
				continue;
			}
			cli_fail(cs, &err);
			break;
		}
		bool good = rep_len == len;
		for (size_t k = 0; good && k < len; k++) {
			good = rep[k] == (uint8_t)toupper(req[k]);
		}
		free(rep);
		if (!good) {
			fprintf(stderr,
			    "net_itest client: thread %u call %u: wrong answer (%zu bytes)\n",
			    t->id, i, rep_len);
			pthread_mutex_lock(&cs->mu);
			cs->wrong = true;
			pthread_mutex_unlock(&cs->mu);
			break;
		}
		atomic_fetch_add(&cs->ok, 1);
	}
	free(req);
	return (NULL);
}

static int
run_client(const struct opts *o)
{
	coffer_err err = { 0 };
	coffer_net_client_config cfg = {
		.url = o->url,
		.tls = o->tls,
		.server_name = o->server_name,
		.insecure = o->insecure,
		.max_msg = o->max_msg,
		.reconnect_min_ms = 50,
		.reconnect_max_ms = 500,
	};
	struct cli_state cs = { .o = o };
	pthread_mutex_init(&cs.mu, NULL);
	if (coffer_net_client_open(&cfg, &cs.client, &err) != 0) {
		coffer_err_print("net_itest client", &err);
		return (10 - err.code);
	}
	srandom((unsigned)getpid());
	unsigned nt = o->threads > 0 ? o->threads : 1;
	struct cli_thread *ts = calloc(nt, sizeof(*ts));
	if (ts == NULL) {
		coffer_net_client_close(cs.client);
		return (1);
	}
	for (unsigned i = 0; i < nt; i++) {
		ts[i].cs = &cs;
		ts[i].id = i;
		pthread_create(&ts[i].tid, NULL, cli_run, &ts[i]);
	}
	for (unsigned i = 0; i < nt; i++) {
		pthread_join(ts[i].tid, NULL);
	}
	free(ts);
	coffer_net_client_close(cs.client);
	printf("ok %lu unavailable %lu\n", atomic_load(&cs.ok), atomic_load(&cs.unavail));
	pthread_mutex_destroy(&cs.mu);
	if (cs.wrong) {
		return (1);
	}
	if (cs.first.code != 0) {
		coffer_err_print("net_itest client", &cs.first);
		return (10 - cs.first.code);
	}
	return (0);
}

int
main(int argc, char **argv)
{
	struct opts o;
	coffer_log_init("net_itest", COFFER_LOG_INFO);
	if (argc < 3 || parse_opts(argc, argv, &o) != 0) {
		fprintf(stderr, "usage: net_itest server|client URL [options] (see the source)\n");
		return (2);
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "server") == 0) {
		return (run_server(&o));
	}
	if (strcmp(argv[1], "client") == 0) {
		return (run_client(&o));
	}
	fprintf(stderr, "net_itest: mode must be server or client\n");
	return (2);
}
