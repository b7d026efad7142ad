/*
 * junk: see tests/bench/junk.h. Raw NNG (not common/wire/net.h) because
 * only a raw dialer can be bound to a local address.
 */
#include "tests/bench/junk.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "agent/report/sender.h"
#include "common/base/clock.h"
#include "common/crypto/sign.h"
#include "common/wire/wire.h"

struct junk_flood {
	nng_socket sock;
	nng_dialer dialer;
	pthread_t *th;
	int threads;
	atomic_bool stop;
	atomic_uint_least64_t sent, answered;
	coffer_sign_key *key; /* nobody's */
	char victim[72];
};

/* One junk request of kind k (0 garbage, 1 unknown agent, 2 forged). */
static int
junk_make(junk_flood *f, int k, uint64_t n, uint8_t **out, size_t *len)
{
	if (k == 0) {
		*len = 48;
		*out = malloc(*len);
		if (*out == NULL) {
			return (-1);
		}
		for (size_t i = 0; i < *len; i++) {
			(*out)[i] = (uint8_t)(0xF7 ^ (n * 31 + i));
		}
		return (0);
	}
	char name[72];
	if (k == 1) {
		snprintf(name, sizeof(name), "stranger-%llu", (unsigned long long)(n % 1000));
	} else {
		snprintf(name, sizeof(name), "%s", f->victim);
	}
	uint8_t body[16] = { 0x0a, 0x00 };
	coffer_err err;
	return (agent_sender_envelope_build(
	    name, f->key, n + 1, coffer_clock_now(NULL), body, 2, out, len, &err));
}

static void *
junk_thread(void *arg)
{
	junk_flood *f = arg;
	nng_ctx ctx;
	if (nng_ctx_open(&ctx, f->sock) != 0) {
		return (NULL);
	}
	nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	nng_aio *aio;
	if (nng_aio_alloc(&aio, NULL, NULL) != 0) {
		nng_ctx_close(ctx);
		return (NULL);
	}
	nng_aio_set_timeout(aio, 5000);
	uint64_t n = 0;
	while (!atomic_load(&f->stop)) {
		uint8_t *buf = NULL;
		size_t len = 0;
		int k = (int)(n % 3);
		if (k == 2 && f->victim[0] == '\0') {
			k = 1;
		}
		if (junk_make(f, k, n++, &buf, &len) != 0) {
			break;
		}
		nng_msg *m;
		if (nng_msg_alloc(&m, len) != 0) {
			free(buf);
			break;
		}
		memcpy(nng_msg_body(m), buf, len);
		free(buf);
		nng_aio_set_msg(aio, m);
		nng_ctx_send(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0) {
			nng_msg_free(nng_aio_get_msg(aio));
			nng_aio_set_msg(aio, NULL);
			continue;
		}
		atomic_fetch_add(&f->sent, 1);
		nng_ctx_recv(ctx, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) == 0) {
			atomic_fetch_add(&f->answered, 1);
			nng_msg_free(nng_aio_get_msg(aio));
			nng_aio_set_msg(aio, NULL);
		}
	}
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return (NULL);
}

int
junk_flood_start(const char *url, const coffer_tls_files *tls, const char *local_addr, int threads,
    const char *victim, junk_flood **out)
{
	junk_flood *f = calloc(1, sizeof(*f));
	coffer_err err;
	if (f == NULL || coffer_sign_key_generate(&f->key, &err) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->victim, sizeof(f->victim), "%s", victim != NULL ? victim : "");
	int rv = nng_req0_open(&f->sock);
	if (rv == 0) {
		rv = nng_dialer_create(&f->dialer, f->sock, url);
	}
	if (rv == 0 && local_addr != NULL) {
		nng_sockaddr sa;
		memset(&sa, 0, sizeof(sa));
		sa.s_in.sa_family = NNG_AF_INET;
		inet_pton(AF_INET, local_addr, &sa.s_in.sa_addr);
		rv = nng_dialer_set_addr(f->dialer, NNG_OPT_LOCADDR, &sa);
	}
	if (rv == 0 && tls != NULL) {
		nng_tls_config *cfg;
		char host[256];
		if (coffer_tlsconf_url_host(url, host, sizeof(host), &err) != 0 ||
		    coffer_tlsconf_client_new(tls, host, &cfg, &err) != 0) {
			fprintf(stderr, "junk: %s\n", err.msg);
			rv = NNG_EINVAL;
		} else {
			rv = nng_dialer_set_ptr(f->dialer, NNG_OPT_TLS_CONFIG, cfg);
			nng_tls_config_free(cfg);
		}
	}
	if (rv == 0) {
		rv = nng_dialer_start(f->dialer, 0);
	}
	if (rv != 0) {
		fprintf(stderr, "junk: cannot dial %s: %s\n", url, nng_strerror(rv));
		nng_close(f->sock);
		coffer_sign_key_free(f->key);
		free(f);
		return (-1);
	}
	f->threads = threads;
	f->th = calloc((size_t)threads, sizeof(*f->th));
	for (int i = 0; i < threads; i++) {
		pthread_create(&f->th[i], NULL, junk_thread, f);
	}
	*out = f;
	return (0);
}

void
junk_flood_stop(junk_flood *f, uint64_t *sent, uint64_t *answered)
{
	atomic_store(&f->stop, true);
	/* Every wait is bounded by the aio's timeout; closing the socket under
	 * a REQ context still waiting hangs NNG 1.5.2 (nanomsg/nng#1702). */
	for (int i = 0; i < f->threads; i++) {
		pthread_join(f->th[i], NULL);
	}
	nng_close(f->sock);
	if (sent != NULL) {
		*sent = atomic_load(&f->sent);
	}
	if (answered != NULL) {
		*answered = atomic_load(&f->answered);
	}
	coffer_sign_key_free(f->key);
	free(f->th);
	free(f);
}
