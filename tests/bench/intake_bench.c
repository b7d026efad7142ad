/*
 * intake_bench: signed events applied per second by a running coordinator,
 * and the ack latency agents see, with N simulated agents sharing T client
 * threads. Each agent sends envelopes of B durable backup.started events
 * (seq strictly increasing), signed with its own enrolled Ed25519 key, and
 * waits for the ack before its next envelope, exactly as the real sender.
 *
 *   intake_bench --catalog CI --audit-key FILE --url tcp://127.0.0.1:PORT
 *                --agents N --envelopes E --batch B --threads T [--rate R]
 *                [--flood J [--flood-addr 127.0.0.2]]
 *
 * Without --rate every thread sends as fast as acks come back (closed
 * loop: the rate is the most the coordinator takes, the latency what that
 * many in flight costs). With --rate R the threads together offer R events
 * a second, each envelope at its scheduled time, and an envelope's latency
 * counts from that time, so a thread held up by a slow ack is charged for
 * the wait (no coordinated omission): the latency agents see at that load.
 *
 * With --flood J, one more peer (bound to --flood-addr, so that it is a
 * peer of its own on loopback) sends junk on J threads for the whole run
 * (tests/bench/junk.h), as fast as answers come back; the row then ends
 * with the junk requests answered per second.
 *
 * Agents are enrolled directly in the catalog (coord_agents_enroll) for the
 * service "bench", which the coordinator's config must declare. Prints one
 * markdown row. Run through tests/bench/intake_bench.sh.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/report/sender.h"
#include "common/base/clock.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"
#include "common/wire/net.h"
#include "common/wire/wire.h"
#include "coordinator/catalog/agents.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "tests/bench/junk.h"

/* Events per envelope at most: the agent sender's own ceiling (agent/report/sender.h). */
#define BATCH_MAX 256

typedef struct sim_agent {
	char name[32];
	coffer_sign_key *key;
	uint64_t env_seq, ev_seq;
} sim_agent;

typedef struct worker {
	pthread_t th;
	const char *url;
	sim_agent *agents;
	size_t first, step, n_agents;
	int envelopes, batch;
	int index, threads;
	double interval_us; /* --rate: between one thread's envelopes; 0: closed loop */
	int64_t t0_us;
	int64_t *lat_us; /* one per call */
	size_t n_lat;
	uint64_t events;
	int failures;
} worker;

static int
call_once(coffer_net_client *cl, sim_agent *a, int batch, int64_t *lat_us)
{
	Coffer__V1__Event evs[BATCH_MAX], *evp[BATCH_MAX];
	Coffer__V1__BackupStarted bs[BATCH_MAX];
	char ids[BATCH_MAX][COFFER_MANIFEST_ID_SIZE];
	int64_t now = coffer_clock_now(NULL);
	for (int i = 0; i < batch; i++) {
		coffer__v1__event__init(&evs[i]);
		coffer__v1__backup_started__init(&bs[i]);
		coffer_manifest_id_new(ids[i], now, COFFER_MANIFEST_LOGICAL, NULL);
		bs[i].backup_id = ids[i];
		bs[i].kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
		bs[i].trigger = COFFER__V1__TRIGGER__TRIGGER_SCHEDULE;
		evs[i].seq = ++a->ev_seq;
		evs[i].service = (char *)"bench";
		evs[i].occurred_at_ms = now;
		evs[i].kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
		evs[i].backup_started = &bs[i];
		evp[i] = &evs[i];
	}
	Coffer__V1__EventBatch eb = COFFER__V1__EVENT_BATCH__INIT;
	eb.n_events = (size_t)batch;
	eb.events = evp;
	Coffer__V1__Request rq = COFFER__V1__REQUEST__INIT;
	rq.kind_case = COFFER__V1__REQUEST__KIND_EVENTS;
	rq.events = &eb;
	uint8_t *body = NULL, *env = NULL, *rep = NULL;
	size_t body_len = 0, env_len = 0, rep_len = 0;
	coffer_err err = { 0 };
	int rc = coffer_wire_encode(&rq.base, COFFER_WIRE_MAX_MSG, &body, &body_len, &err);
	if (rc == 0) {
		rc = agent_sender_envelope_build(
		    a->name, a->key, ++a->env_seq, now, body, body_len, &env, &env_len, &err);
	}
	int64_t t0 = coffer_clock_monotonic_ms();
	struct timespec s0, s1;
	clock_gettime(CLOCK_MONOTONIC, &s0);
	if (rc == 0) {
		rc = coffer_net_client_call(cl, env, env_len, &rep, &rep_len, 30000, &err);
	}
	clock_gettime(CLOCK_MONOTONIC, &s1);
	(void)t0;
	*lat_us = (int64_t)(s1.tv_sec - s0.tv_sec) * 1000000 + (s1.tv_nsec - s0.tv_nsec) / 1000;
	if (rc == 0) {
		Coffer__V1__Reply *r = coffer__v1__reply__unpack(NULL, rep_len, rep);
		if (r == NULL || r->status != COFFER__V1__STATUS__STATUS_OK ||
		    r->acked_event_seq != a->ev_seq) {
			fprintf(stderr, "intake_bench: %s: reply %s\n", a->name,
			    r == NULL ? "undecodable" : (r->error != NULL ? r->error : "not OK"));
			rc = -1;
		}
		coffer__v1__reply__free_unpacked(r, NULL);
	} else {
		fprintf(stderr, "intake_bench: %s: %s\n", a->name, err.msg);
	}
	free(body);
	free(env);
	free(rep);
	return (rc);
}

static int64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
}

static void *
work(void *arg)
{
	worker *w = arg;
	coffer_net_client_config cc = { .url = w->url };
	coffer_net_client *cl = NULL;
	coffer_err err = { 0 };
	if (coffer_net_client_open(&cc, &cl, &err) != 0) {
		fprintf(stderr, "intake_bench: %s\n", err.msg);
		w->failures++;
		return (NULL);
	}
	int64_t k = 0; /* this thread's envelopes so far */
	for (int e = 0; e < w->envelopes; e++) {
		for (size_t i = w->first; i < w->n_agents; i += w->step, k++) {
			int64_t late_us = 0;
			if (w->interval_us > 0) {
				/* Threads interleave evenly: thread t's k-th envelope is
				 * due at t0 + (k + t / threads) * interval. */
				int64_t due = w->t0_us +
				    (int64_t)(((double)k + (double)w->index / (double)w->threads) *
				        w->interval_us);
				int64_t now = now_us();
				if (now < due) {
					struct timespec ts = { (time_t)((due - now) / 1000000),
						(long)((due - now) % 1000000) * 1000 };
					nanosleep(&ts, NULL);
				} else {
					late_us = now - due;
				}
			}
			if (call_once(cl, &w->agents[i], w->batch, &w->lat_us[w->n_lat]) != 0) {
				w->failures++;
				continue;
			}
			w->lat_us[w->n_lat] += late_us;
			w->n_lat++;
			w->events += (uint64_t)w->batch;
		}
	}
	coffer_net_client_close(cl);
	return (NULL);
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x < y ? -1 : x > y);
}

int
main(int argc, char **argv)
{
	const char *catalog = NULL, *audit_key = NULL, *url = NULL;
	int n_agents = 1, envelopes = 100, batch = 10, threads = 4;
	double rate = 0;
	int flood = 0;
	const char *flood_addr = "127.0.0.2";
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--catalog") == 0) {
			catalog = argv[i + 1];
		} else if (strcmp(argv[i], "--audit-key") == 0) {
			audit_key = argv[i + 1];
		} else if (strcmp(argv[i], "--url") == 0) {
			url = argv[i + 1];
		} else if (strcmp(argv[i], "--agents") == 0) {
			n_agents = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--envelopes") == 0) {
			envelopes = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--batch") == 0) {
			batch = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--threads") == 0) {
			threads = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--flood") == 0) {
			flood = atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--flood-addr") == 0) {
			flood_addr = argv[i + 1];
		} else if (strcmp(argv[i], "--rate") == 0) {
			rate = atof(argv[i + 1]);
		}
	}
	if (catalog == NULL || audit_key == NULL || url == NULL || n_agents < 1 || batch < 1 ||
	    batch > BATCH_MAX || threads < 1 || envelopes < 1 || rate < 0) {
		fprintf(stderr,
		    "usage: intake_bench --catalog CI --audit-key FILE --url URL "
		    "[--agents N] [--envelopes E] [--batch 1..256] [--threads T] "
		    "[--rate EVENTS_PER_S]\n");
		return (2);
	}
	coffer_err err = { 0 };
	coord_audit_key key;
	coord_catalog *cat = NULL;
	if (coord_audit_key_load(audit_key, &key, &err) != 0 ||
	    (cat = coord_catalog_open(catalog, &err)) == NULL) {
		fprintf(stderr, "intake_bench: %s\n", err.msg);
		return (1);
	}
	static int run_id;
	run_id = (int)(coffer_clock_now(NULL) % 100000);
	sim_agent *agents = calloc((size_t)n_agents, sizeof(*agents));
	for (int i = 0; i < n_agents; i++) {
		snprintf(agents[i].name, sizeof(agents[i].name), "bench-%d-%d", run_id, i);
		coffer_sign_pubkey *pub = NULL;
		bool already = false;
		if (coffer_sign_key_generate(&agents[i].key, &err) != 0 ||
		    coffer_sign_key_public(agents[i].key, &pub, &err) != 0 ||
		    coord_agents_enroll(cat, &key, "bench", "bench", "bench", agents[i].name, pub,
		        &already, &err) != 0) {
			fprintf(
			    stderr, "intake_bench: enrolling %s: %s\n", agents[i].name, err.msg);
			return (1);
		}
		coffer_sign_pubkey_free(pub);
	}
	coord_catalog_close(cat);
	if (threads > n_agents) {
		threads = n_agents;
	}
	junk_flood *jf = NULL;
	if (flood > 0 && junk_flood_start(url, NULL, flood_addr, flood, agents[0].name, &jf) != 0) {
		return (1);
	}
	worker *ws = calloc((size_t)threads, sizeof(*ws));
	size_t per = (size_t)envelopes * ((size_t)n_agents / (size_t)threads + 1);
	int64_t t0 = coffer_clock_monotonic_ms();
	/* The first envelopes are due a little after the threads start. */
	int64_t t0_us = now_us() + 100000;
	double interval_us = rate > 0 ? (double)threads * (double)batch * 1e6 / rate : 0;
	for (int t = 0; t < threads; t++) {
		ws[t] = (worker) { .url = url,
			.agents = agents,
			.first = (size_t)t,
			.step = (size_t)threads,
			.n_agents = (size_t)n_agents,
			.envelopes = envelopes,
			.batch = batch,
			.index = t,
			.threads = threads,
			.interval_us = interval_us,
			.t0_us = t0_us,
			.lat_us = calloc(per, sizeof(int64_t)) };
		pthread_create(&ws[t].th, NULL, work, &ws[t]);
	}
	uint64_t events = 0;
	size_t n_lat = 0;
	int failures = 0;
	for (int t = 0; t < threads; t++) {
		pthread_join(ws[t].th, NULL);
		events += ws[t].events;
		n_lat += ws[t].n_lat;
		failures += ws[t].failures;
	}
	int64_t ms = coffer_clock_monotonic_ms() - t0;
	uint64_t junk = 0;
	if (jf != NULL) {
		junk_flood_stop(jf, NULL, &junk);
	}
	int64_t *all = calloc(n_lat + 1, sizeof(int64_t));
	size_t k = 0;
	for (int t = 0; t < threads; t++) {
		memcpy(all + k, ws[t].lat_us, ws[t].n_lat * sizeof(int64_t));
		k += ws[t].n_lat;
		free(ws[t].lat_us);
	}
	qsort(all, n_lat, sizeof(int64_t), cmp_i64);
	double p50 = n_lat ? (double)all[n_lat / 2] / 1000.0 : 0;
	double p99 = n_lat ? (double)all[(n_lat * 99) / 100] / 1000.0 : 0;
	printf("| %d | %d | %d | %" PRIu64 " | %.2f | %.0f | %.1f | %.1f | %d |", n_agents, threads,
	    batch, events, (double)ms / 1000.0, ms > 0 ? (double)events * 1000.0 / (double)ms : 0.0,
	    p50, p99, failures);
	if (flood > 0) {
		printf(" %.0f |", ms > 0 ? (double)junk * 1000.0 / (double)ms : 0.0);
	}
	printf("\n");
	for (int i = 0; i < n_agents; i++) {
		coffer_sign_key_free(agents[i].key);
	}
	free(agents);
	free(ws);
	free(all);
	return (failures == 0 ? 0 : 1);
}
