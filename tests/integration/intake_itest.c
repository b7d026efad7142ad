/*
 * Driver for tests/integration/intake.sh: plays an agent against a real
 * coffer-coordinator over the real wire (common/wire/net.h, mutual TLS).
 *
 *   intake_itest keygen PATH
 *	creates an Ed25519 signing key at PATH and prints its public key (hex).
 *   intake_itest send URL --ca F --cert F --key F --agent NAME --signkey F
 *	--seq N [--service S] [--events SPEC] [--poll] [--bad-sig] [--garbage]
 *	[--timeout MS]
 *	builds one Envelope (seq N, body = Request with the events in SPEC),
 *	signs it with the key in --signkey (--bad-sig flips a bit of the
 *	signature; --garbage sends bytes that are no protobuf at all), sends
 *	it, and prints the reply as
 *	  status=<reason> envelope_seq=<n> acked=<n> error=<text>
 *	where reason is coord_intake_reason's word ("ok", "replayed", ...).
 *	Exits 0 when a reply arrived (whatever its status), 1 on a bad reply,
 *	2 on usage, 3 when the coordinator could not be reached.
 *   SPEC: comma-separated KIND:SEQ[:BACKUP_ID] with KIND one of started,
 *	completed, failed, hello, heartbeat (seq 0 for the last two), badlsn (a
 *	completed event the catalog's constraints refuse); every
 *	event is about --service (default "billing").
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "common/wire/net.h"
#include "common/wire/wire.h"
#include "coordinator/intake/intake.h"

#define MAX_EVENTS 64

typedef struct opts {
	const char *url, *agent, *signkey, *service, *events;
	coffer_tls_files tls;
	unsigned long long seq;
	unsigned timeout_ms;
	bool bad_sig, garbage, poll;
} opts;

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ((int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
}

static int
usage(const char *why)
{
	fprintf(stderr, "intake_itest: %s\n", why);
	return (2);
}

/* Storage for the events of one request. */
typedef struct batch {
	Coffer__V1__Event ev[MAX_EVENTS];
	Coffer__V1__Event *evp[MAX_EVENTS];
	Coffer__V1__BackupStarted started[MAX_EVENTS];
	Coffer__V1__BackupCompleted completed[MAX_EVENTS];
	Coffer__V1__BackupFailed failed[MAX_EVENTS];
	Coffer__V1__AgentHello hello[MAX_EVENTS];
	Coffer__V1__Heartbeat heartbeat[MAX_EVENTS];
	char ids[MAX_EVENTS][130];
	uint8_t digest[32];
	size_t n;
} batch;

static int
parse_events(const char *spec, const char *service, batch *b)
{
	char *copy = strdup(spec);
	if (copy == NULL) {
		return (-1);
	}
	for (size_t i = 0; i < sizeof(b->digest); i++) {
		b->digest[i] = (uint8_t)(i * 7 + 1);
	}
	int64_t t = now_ms();
	char *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		if (b->n == MAX_EVENTS) {
			free(copy);
			return (-1);
		}
		size_t i = b->n++;
		char *kind = tok, *seq = strchr(tok, ':');
		if (seq == NULL) {
			free(copy);
			return (-1);
		}
		*seq++ = '\0';
		char *id = strchr(seq, ':');
		if (id != NULL) {
			*id++ = '\0';
		}
		snprintf(b->ids[i], sizeof(b->ids[i]), "%s", id != NULL ? id : "backup-1");
		Coffer__V1__Event *ev = &b->ev[i];
		coffer__v1__event__init(ev);
		b->evp[i] = ev;
		ev->seq = strtoull(seq, NULL, 10);
		ev->service = (char *)service;
		ev->occurred_at_ms = t;
		if (strcmp(kind, "started") == 0) {
			coffer__v1__backup_started__init(&b->started[i]);
			b->started[i].backup_id = b->ids[i];
			b->started[i].kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
			b->started[i].trigger = COFFER__V1__TRIGGER__TRIGGER_SCHEDULE;
			ev->kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
			ev->backup_started = &b->started[i];
		} else if (strcmp(kind, "completed") == 0) {
			Coffer__V1__BackupCompleted *c = &b->completed[i];
			coffer__v1__backup_completed__init(c);
			c->backup_id = b->ids[i];
			c->kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
			c->started_at_ms = t - 5000;
			c->finished_at_ms = t;
			c->plain_bytes = 123456;
			c->stored_bytes = 65432;
			c->plain_sha256.data = b->digest;
			c->plain_sha256.len = 32;
			c->stored_sha256.data = b->digest;
			c->stored_sha256.len = 32;
			c->manifest_sha256.data = b->digest;
			c->manifest_sha256.len = 32;
			c->key_id = "k1";
			c->repository = "primary";
			c->pg_version = "150004";
			c->system_identifier = "7301234567890123456";
			ev->kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
			ev->backup_completed = c;
		} else if (strcmp(kind, "badlsn") == 0) {
			/* Passes the coordinator's own checks, but the catalog's
			 * CHECK (stop_lsn >= start_lsn) refuses it. */
			Coffer__V1__BackupCompleted *c = &b->completed[i];
			coffer__v1__backup_completed__init(c);
			c->backup_id = b->ids[i];
			c->kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_PHYSICAL;
			c->started_at_ms = t - 5000;
			c->finished_at_ms = t;
			c->stored_sha256.data = b->digest;
			c->stored_sha256.len = 32;
			c->key_id = "k1";
			c->start_lsn = "0/3000000";
			c->stop_lsn = "0/2000000";
			ev->kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
			ev->backup_completed = c;
		} else if (strcmp(kind, "failed") == 0) {
			Coffer__V1__BackupFailed *f = &b->failed[i];
			coffer__v1__backup_failed__init(f);
			f->backup_id = b->ids[i];
			f->kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
			f->started_at_ms = t - 1000;
			f->failed_at_ms = t;
			f->reason = "pg_dump exited with status 1: connection refused";
			f->stage = "dump";
			ev->kind_case = COFFER__V1__EVENT__KIND_BACKUP_FAILED;
			ev->backup_failed = f;
		} else if (strcmp(kind, "hello") == 0) {
			coffer__v1__agent_hello__init(&b->hello[i]);
			b->hello[i].version = "0.1.0";
			b->hello[i].hostname = "itest";
			ev->kind_case = COFFER__V1__EVENT__KIND_HELLO;
			ev->hello = &b->hello[i];
		} else if (strcmp(kind, "heartbeat") == 0) {
			coffer__v1__heartbeat__init(&b->heartbeat[i]);
			b->heartbeat[i].outbox_depth = 3;
			ev->kind_case = COFFER__V1__EVENT__KIND_HEARTBEAT;
			ev->heartbeat = &b->heartbeat[i];
		} else {
			free(copy);
			return (-1);
		}
	}
	free(copy);
	return (0);
}

static int
cmd_keygen(int argc, char **argv)
{
	if (argc != 3) {
		return (usage("keygen PATH"));
	}
	char pub[COFFER_SIGN_PUBKEY_HEX];
	coffer_err err;
	if (coffer_sign_keygen(argv[2], pub, &err) != 0) {
		coffer_err_print("intake_itest keygen", &err);
		return (1);
	}
	printf("%s\n", pub);
	return (0);
}

static int
parse_send(int argc, char **argv, opts *o)
{
	memset(o, 0, sizeof(*o));
	o->url = argv[2];
	o->service = "billing";
	o->events = "";
	o->timeout_ms = 10000;
	for (int i = 3; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--bad-sig") == 0) {
			o->bad_sig = true;
			continue;
		}
		if (strcmp(a, "--garbage") == 0) {
			o->garbage = true;
			continue;
		}
		if (strcmp(a, "--poll") == 0) {
			o->poll = true;
			continue;
		}
		if (i + 1 >= argc) {
			return (-1);
		}
		const char *v = argv[++i];
		if (strcmp(a, "--ca") == 0) {
			o->tls.ca = v;
		} else if (strcmp(a, "--cert") == 0) {
			o->tls.cert = v;
		} else if (strcmp(a, "--key") == 0) {
			o->tls.key = v;
		} else if (strcmp(a, "--agent") == 0) {
			o->agent = v;
		} else if (strcmp(a, "--signkey") == 0) {
			o->signkey = v;
		} else if (strcmp(a, "--seq") == 0) {
			o->seq = strtoull(v, NULL, 10);
		} else if (strcmp(a, "--service") == 0) {
			o->service = v;
		} else if (strcmp(a, "--events") == 0) {
			o->events = v;
		} else if (strcmp(a, "--timeout") == 0) {
			o->timeout_ms = (unsigned)strtoul(v, NULL, 10);
		} else {
			return (-1);
		}
	}
	return (o->agent != NULL && o->signkey != NULL && o->seq > 0 ? 0 : -1);
}

/* The packed envelope for o, or garbage; malloc'd. */
static int
build(const opts *o, uint8_t **out, size_t *out_len)
{
	coffer_err err;
	if (o->garbage) {
		static const char junk[] = "\xff\xff\xff\xff this is not a protobuf \x01\x02";
		*out = malloc(sizeof(junk));
		if (*out == NULL) {
			return (-1);
		}
		memcpy(*out, junk, sizeof(junk));
		*out_len = sizeof(junk);
		return (0);
	}
	static batch b;
	memset(&b, 0, sizeof(b));
	if (parse_events(o->events, o->service, &b) != 0) {
		fprintf(stderr, "intake_itest: bad --events %s\n", o->events);
		return (-1);
	}
	Coffer__V1__EventBatch eb = COFFER__V1__EVENT_BATCH__INIT;
	Coffer__V1__Poll poll = COFFER__V1__POLL__INIT;
	Coffer__V1__Request rq = COFFER__V1__REQUEST__INIT;
	if (o->poll) {
		rq.kind_case = COFFER__V1__REQUEST__KIND_POLL;
		rq.poll = &poll;
	} else {
		eb.n_events = b.n;
		eb.events = b.evp;
		rq.kind_case = COFFER__V1__REQUEST__KIND_EVENTS;
		rq.events = &eb;
	}
	uint8_t *body = NULL;
	size_t body_len = 0;
	if (coffer_wire_encode(&rq.base, COFFER_WIRE_MAX_MSG, &body, &body_len, &err) != 0) {
		coffer_err_print("intake_itest", &err);
		return (-1);
	}
	coffer_sign_key *key = NULL;
	if (coffer_sign_key_load(o->signkey, &key, &err) != 0) {
		free(body);
		coffer_err_print("intake_itest", &err);
		return (-1);
	}
	Coffer__V1__Envelope env = COFFER__V1__ENVELOPE__INIT;
	env.version = 1;
	env.agent_id = (char *)o->agent;
	env.seq = o->seq;
	env.sent_at_ms = now_ms();
	env.body.data = body;
	env.body.len = body_len;
	uint8_t sig[COFFER_SIGN_BYTES];
	size_t tbs_len;
	uint8_t *tbs = coffer_wire_envelope_tbs(
	    env.agent_id, env.seq, env.sent_at_ms, body, body_len, &tbs_len);
	int rv = tbs != NULL ? coffer_sign(key, tbs, tbs_len, sig, &err) : -1;
	free(tbs);
	coffer_sign_key_free(key);
	if (rv != 0) {
		free(body);
		fprintf(stderr, "intake_itest: cannot sign\n");
		return (-1);
	}
	if (o->bad_sig) {
		sig[10] ^= 0x01;
	}
	env.signature.data = sig;
	env.signature.len = sizeof(sig);
	rv = coffer_wire_encode(&env.base, COFFER_WIRE_MAX_MSG, out, out_len, &err);
	free(body);
	if (rv != 0) {
		coffer_err_print("intake_itest", &err);
		return (-1);
	}
	return (0);
}

static int
cmd_send(int argc, char **argv)
{
	opts o;
	if (argc < 3 || parse_send(argc, argv, &o) != 0) {
		return (usage("send URL --ca F --cert F --key F --agent NAME --signkey F --seq N "
		              "[--service S] [--events SPEC] [--poll] [--bad-sig] [--garbage]"));
	}
	uint8_t *req = NULL;
	size_t req_len = 0;
	if (build(&o, &req, &req_len) != 0) {
		return (2);
	}
	coffer_err err;
	coffer_err_clear(&err);
	coffer_net_client_config cfg = {
		.url = o.url,
		.tls = o.tls,
		.reconnect_min_ms = 50,
		.reconnect_max_ms = 500,
	};
	coffer_net_client *client = NULL;
	if (coffer_net_client_open(&cfg, &client, &err) != 0) {
		free(req);
		coffer_err_print("intake_itest", &err);
		return (3);
	}
	uint8_t *rep = NULL;
	size_t rep_len = 0;
	int rv = coffer_net_client_call(client, req, req_len, &rep, &rep_len, o.timeout_ms, &err);
	coffer_net_client_close(client);
	free(req);
	if (rv != 0) {
		coffer_err_print("intake_itest", &err);
		return (3);
	}
	coffer_wire_arena arena;
	if (coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, &err) != 0) {
		free(rep);
		return (1);
	}
	Coffer__V1__Reply *r = (Coffer__V1__Reply *)coffer_wire_decode(
	    &coffer__v1__reply__descriptor, &arena, rep, rep_len, COFFER_WIRE_MAX_MSG, &err);
	free(rep);
	if (r == NULL) {
		coffer_err_print("intake_itest: reply", &err);
		coffer_wire_arena_fini(&arena);
		return (1);
	}
	printf("status=%s envelope_seq=%llu acked=%llu error=%s\n", coord_intake_reason(r->status),
	    (unsigned long long)r->envelope_seq, (unsigned long long)r->acked_event_seq, r->error);
	coffer_wire_arena_fini(&arena);
	return (0);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "keygen") == 0) {
		return (cmd_keygen(argc, argv));
	}
	if (argc >= 2 && strcmp(argv[1], "send") == 0) {
		return (cmd_send(argc, argv));
	}
	return (usage("keygen PATH | send URL ..."));
}
