#include "agent/report/sender.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "agent/outbox/events.h"
#include "agent/outbox/statedir.h"
#include "agent/report/archiver.h"
#include "common/base/clock.h"
#include "common/base/durable.h"
#include "common/base/log.h"
#include "common/crypto/keyring.h"
#include "common/wire/net.h"
#include "common/wire/wire.h"

/* Room an Envelope needs around its body: agent id (<= 64), two fixed
 * integers, the signature and the field tags, with a wide margin. */
#define ENVELOPE_OVERHEAD 1024u
#define BODY_MAX          (COFFER_WIRE_MAX_MSG - ENVELOPE_OVERHEAD)
/* A sane ceiling on records per batch, whatever a caller asks for: it sizes
 * two small arrays allocated up front. */
#define BATCH_MAX_COUNT 65536u

/* ------------------------------------------------------------------------ */
/* Envelope seq */

static int
envseq_read(const char *path, uint64_t *last, coffer_err *err)
{
	*last = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			return (0);
		}
		return (coffer_err_errno(err, errno, "opening", path));
	}
	char buf[40];
	ssize_t n;
	do {
		n = read(fd, buf, sizeof(buf) - 1);
	} while (n < 0 && errno == EINTR);
	int saved = errno;
	close(fd);
	if (n < 0) {
		return (coffer_err_errno(err, saved, "reading", path));
	}
	buf[n] = '\0';
	size_t i = 0;
	uint64_t v = 0;
	bool overflow = false;
	for (; buf[i] >= '0' && buf[i] <= '9'; i++) {
		if (v > (UINT64_MAX - 9) / 10) {
			overflow = true;
		}
		v = v * 10 + (uint64_t)(buf[i] - '0');
	}
	bool tail_ok = buf[i] == '\0' || (buf[i] == '\n' && buf[i + 1] == '\0');
	if (i == 0 || overflow || !tail_ok) {
		coffer_err_set(
		    err, COFFER_ECORRUPT, "%s does not hold an envelope sequence number", path);
		return (coffer_err_hint(err,
		    "it records the last request sent to the coordinator; "
		    "write a number at least as large as the agent's last "
		    "envelope seq there, or remove it if the clock is right"));
	}
	*last = v;
	return (0);
}

static int
envseq_write(const char *path, uint64_t v, coffer_err *err)
{
	char text[32];
	int len = snprintf(text, sizeof(text), "%" PRIu64 "\n", v);
	return (coffer_durable_replace(path, text, (size_t)len, NULL, err));
}

int
agent_sender_envseq_take(
    const char *state_dir, int64_t now_ms, uint64_t floor, uint64_t *seq, coffer_err *err)
{
	*seq = 0;
	char lock_path[PATH_MAX], path[PATH_MAX];
	if ((size_t)snprintf(lock_path, sizeof(lock_path), "%s/envelope.lock", state_dir) >=
	        sizeof(lock_path) ||
	    (size_t)snprintf(path, sizeof(path), "%s/%s", state_dir, AGENT_SENDER_ENVSEQ_FILE) >=
	        sizeof(path)) {
		coffer_err_set(err, COFFER_EINVAL, "state_dir '%.200s' is too long", state_dir);
		return (coffer_err_hint(err, "use a shorter [agent] state_dir"));
	}
	/* The clock term lets a lost envelope.seq (new disk, restored
	 * state_dir) still start above everything sent before, as long as the
	 * clock was right; the file term survives clock steps; the floor (this
	 * process's last seq) keeps seqs rising while the file cannot be
	 * written. */
	uint64_t from_clock =
	    now_ms > 0 && (uint64_t)now_ms < UINT64_MAX / 1000 ? (uint64_t)now_ms * 1000 : 0;
	uint64_t next = floor < UINT64_MAX && floor + 1 > from_clock ? floor + 1 : from_clock;
	/* The daemon and `coffer-agent flush` may send at the same time; the lock
	 * makes read-increment-write one step, so no two requests share a seq. */
	int lfd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0) {
		int rc = coffer_err_errno(err, errno, "opening", lock_path);
		if (rc == COFFER_ENOSPC && next > 0) {
			*seq = next; /* a full disk with no lock file yet */
		}
		return (rc);
	}
	while (flock(lfd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			int saved = errno;
			close(lfd);
			return (coffer_err_errno(err, saved, "locking", lock_path));
		}
	}
	uint64_t last = 0;
	int rc = envseq_read(path, &last, err);
	if (rc == 0 && (last == UINT64_MAX || floor == UINT64_MAX)) {
		rc = coffer_err_set(
		    err, COFFER_ECORRUPT, "%s is at the largest sequence number", path);
		coffer_err_hint(
		    err, "the file was damaged; write the agent's last envelope seq there");
	}
	if (rc == 0) {
		if (last + 1 > next) {
			next = last + 1;
		}
		rc = envseq_write(path, next, err);
		if (rc == COFFER_ENOSPC) {
			*seq = next;
		}
	}
	close(lfd);
	if (rc != 0) {
		return (coffer_err_wrap(err, "recording the envelope seq"));
	}
	*seq = next;
	return (0);
}

int
agent_sender_envseq_next(const char *state_dir, int64_t now_ms, uint64_t *seq, coffer_err *err)
{
	uint64_t taken = 0;
	int rc = agent_sender_envseq_take(state_dir, now_ms, 0, &taken, err);
	if (rc == 0) {
		*seq = taken;
	}
	return (rc);
}

/* ------------------------------------------------------------------------ */
/* Envelopes and batches */

int
agent_sender_envelope_build(const char *agent_id, const coffer_sign_key *key, uint64_t seq,
    int64_t sent_at_ms, const uint8_t *body, size_t body_len, uint8_t **out, size_t *out_len,
    coffer_err *err)
{
	*out = NULL;
	*out_len = 0;
	size_t tbs_len = 0;
	uint8_t *tbs =
	    coffer_wire_envelope_tbs(agent_id, seq, sent_at_ms, body, body_len, &tbs_len);
	if (tbs == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory signing an envelope"));
	}
	uint8_t sig[COFFER_SIGN_BYTES];
	int rc = coffer_sign(key, tbs, tbs_len, sig, err);
	free(tbs);
	if (rc != 0) {
		return (coffer_err_wrap(err, "signing envelope %" PRIu64, seq));
	}
	Coffer__V1__Envelope env = COFFER__V1__ENVELOPE__INIT;
	env.version = 1;
	env.agent_id = (char *)agent_id;
	env.seq = seq;
	env.sent_at_ms = sent_at_ms;
	env.body.data = (uint8_t *)body;
	env.body.len = body_len;
	env.signature.data = sig;
	env.signature.len = sizeof(sig);
	return (coffer_wire_encode(&env.base, COFFER_WIRE_MAX_MSG, out, out_len, err));
}

typedef struct copy_state {
	uint8_t *buf;
	size_t len, cap;
	uint64_t *seqs;
	size_t *lens;
	size_t n, max;
} copy_state;

/* Runs under the outbox lock: copy and return, nothing else. */
static int
copy_record(uint64_t seq, const uint8_t *data, size_t len, void *arg)
{
	copy_state *cs = arg;
	if (cs->n >= cs->max) {
		return (1);
	}
	if (cs->len + len > cs->cap) {
		size_t cap = cs->cap > 0 ? cs->cap : 64 * 1024;
		while (cap < cs->len + len) {
			cap *= 2;
		}
		uint8_t *nb = realloc(cs->buf, cap);
		if (nb == NULL) {
			return (COFFER_ENOMEM);
		}
		cs->buf = nb;
		cs->cap = cap;
	}
	if (len > 0) {
		memcpy(cs->buf + cs->len, data, len);
	}
	cs->len += len;
	cs->seqs[cs->n] = seq;
	cs->lens[cs->n] = len;
	cs->n++;
	return (0);
}

void
agent_sender_batch_free(agent_sender_batch *b)
{
	if (b == NULL) {
		return;
	}
	for (size_t i = 0; i < b->count; i++) {
		coffer__v1__event__free_unpacked(b->events[i], NULL);
	}
	free(b->events);
	memset(b, 0, sizeof(*b));
}

int
agent_sender_batch_read(
    agent_outbox *ob, size_t max_count, size_t max_bytes, agent_sender_batch *b, coffer_err *err)
{
	memset(b, 0, sizeof(*b));
	if (max_count == 0 || max_count > BATCH_MAX_COUNT) {
		max_count = BATCH_MAX_COUNT;
	}
	copy_state cs = { .max = max_count };
	cs.seqs = malloc(max_count * sizeof(*cs.seqs));
	cs.lens = malloc(max_count * sizeof(*cs.lens));
	int rc = 0;
	if (cs.seqs == NULL || cs.lens == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory reading the outbox");
	}
	size_t delivered = 0;
	if (rc == 0) {
		rc = agent_outbox_foreach(
		    ob, 0, max_count, max_bytes, copy_record, &cs, &delivered, err);
		if (rc == COFFER_ENOMEM) {
			coffer_err_set(err, rc, "out of memory copying outbox records");
		}
	}
	if (rc == 0 && cs.n > 0) {
		b->events = calloc(cs.n, sizeof(*b->events));
		if (b->events == NULL) {
			rc = coffer_err_set(
			    err, COFFER_ENOMEM, "out of memory decoding outbox records");
		}
	}
	size_t off = 0;
	for (size_t i = 0; rc == 0 && i < cs.n; i++) {
		Coffer__V1__Event *ev = coffer__v1__event__unpack(NULL, cs.lens[i], cs.buf + off);
		off += cs.lens[i];
		if (ev == NULL) {
			rc = coffer_err_set(err, COFFER_ECORRUPT,
			    "outbox record %" PRIu64 " (%zu bytes) is not a valid event",
			    cs.seqs[i], cs.lens[i]);
			coffer_err_hint(err,
			    "this is a bug: the record stays in the outbox and sending "
			    "stops; report it with `coffer-agent events --output json`");
			break;
		}
		ev->seq = cs.seqs[i];
		b->events[b->count++] = ev;
		b->bytes += cs.lens[i];
	}
	if (rc == 0 && b->count > 0) {
		b->first_seq = cs.seqs[0];
		b->last_seq = cs.seqs[b->count - 1];
	}
	free(cs.buf);
	free(cs.seqs);
	free(cs.lens);
	if (rc != 0) {
		agent_sender_batch_free(b);
	}
	return (rc);
}

int
agent_sender_request_pack(const agent_sender_batch *b, Coffer__V1__Event **extra, size_t n_extra,
    uint8_t **body, size_t *body_len, coffer_err *err)
{
	*body = NULL;
	*body_len = 0;
	size_t n = b->count + n_extra;
	Coffer__V1__Event **all = malloc((n > 0 ? n : 1) * sizeof(*all));
	if (all == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory building a request"));
	}
	for (size_t i = 0; i < b->count; i++) {
		all[i] = b->events[i];
	}
	for (size_t i = 0; i < n_extra; i++) {
		all[b->count + i] = extra[i];
	}
	Coffer__V1__EventBatch eb = COFFER__V1__EVENT_BATCH__INIT;
	eb.n_events = n;
	eb.events = all;
	Coffer__V1__Request req = COFFER__V1__REQUEST__INIT;
	req.kind_case = COFFER__V1__REQUEST__KIND_EVENTS;
	req.events = &eb;
	int rc = coffer_wire_encode(&req.base, BODY_MAX, body, body_len, err);
	free(all);
	return (rc);
}

/* ------------------------------------------------------------------------ */
/* One connection's worth of state, shared by the thread and flush. */

typedef enum call_outcome {
	CALL_OK,      /* an OK reply; acks applied */
	CALL_RETRY,   /* unreachable, UNAVAILABLE, REPLAYED, a bad reply: back off */
	CALL_REFUSED, /* the coordinator refuses this agent: retry at retry_max */
	CALL_BROKEN,  /* an undecodable outbox record: stop */
	CALL_LOCAL,   /* the state dir or outbox failed here: retry at retry_max */
} call_outcome;

typedef struct sender_link {
	const agent_config *cfg;
	const coffer_sign_key *key;
	const char *key_id;
	agent_outbox *ob;
	coffer_net_client *client;
	coffer_wire_arena arena;
	bool arena_ok;
	bool need_hello;
	unsigned call_timeout_ms;
	uint64_t acked_seq;
	uint64_t envseq_last; /* the last envelope seq this link sent */
	uint64_t events_acked;
	int64_t last_contact_ms;
	/* Commands (set under the sender's mutex, read on its thread). */
	pthread_mutex_t *cmd_mu;
	agent_sender_command_cb on_command;
	void *on_command_arg;
	agent_sender_drill_cb on_drill;
	void *on_drill_arg;
	uint64_t command_seen; /* highest command id passed on */
	/* The last OK reply: the coordinator's clock in it (0 if it gave none)
	 * and, on this host, when the request left and the reply came (Unix
	 * ms) and the round trip (monotonic ms); for `check`'s clock skew. */
	int64_t reply_server_ms;
	int64_t reply_sent_ms, reply_received_ms, reply_rtt_ms;
} sender_link;

static int
link_init(sender_link *l, agent_ctx *ctx, coffer_err *err)
{
	memset(l, 0, sizeof(*l));
	l->cfg = ctx->cfg;
	l->key = ctx->sign_key;
	l->key_id = ctx->ring != NULL ? coffer_keyring_newest_id(ctx->ring) : NULL;
	l->need_hello = true;
	l->call_timeout_ms = AGENT_SENDER_CALL_TIMEOUT_MS;
	if (!ctx->cfg->coordinator_present) {
		coffer_err_set(err, COFFER_EINVAL, "%s has no [coordinator] section",
		    coffer_config_path(ctx->cfg->ini));
		return (
		    coffer_err_hint(err, "add [coordinator] url, ca, cert and key to send events"));
	}
	if (ctx->sign_key == NULL) {
		return (coffer_err_set(err, COFFER_EINTERNAL, "the sender needs the signing key"));
	}
	/* Its own handle: outbox handles are single-threaded, and the backup
	 * worker appends through ctx->outbox meanwhile. */
	int rc = agent_outbox_open(ctx->cfg->state_dir, NULL, &l->ob, err);
	if (rc == 0) {
		rc = coffer_wire_arena_init(&l->arena, COFFER_WIRE_MAX_MSG, err);
		l->arena_ok = rc == 0;
	}
	if (rc != 0) {
		agent_outbox_close(l->ob);
		l->ob = NULL;
	}
	return (rc);
}

static void
link_fini(sender_link *l)
{
	coffer_net_client_close(l->client);
	l->client = NULL;
	agent_outbox_close(l->ob);
	l->ob = NULL;
	if (l->arena_ok) {
		coffer_wire_arena_fini(&l->arena);
		l->arena_ok = false;
	}
}

static int
link_connect(sender_link *l, coffer_err *err)
{
	if (l->client != NULL) {
		return (0);
	}
	coffer_net_client_config cc = {
		.url = l->cfg->coordinator_url,
		.tls = { .ca = l->cfg->coordinator_ca,
		    .cert = l->cfg->coordinator_cert,
		    .key = l->cfg->coordinator_key },
		.insecure = l->cfg->coordinator_insecure,
	};
	int rc = coffer_net_client_open(&cc, &l->client, err);
	if (rc != 0) {
		l->client = NULL;
		return (coffer_err_wrap(err, "connecting to %s", l->cfg->coordinator_url));
	}
	return (0);
}

static const char *
status_name(Coffer__V1__Status st)
{
	const ProtobufCEnumValue *v =
	    protobuf_c_enum_descriptor_get_value(&coffer__v1__status__descriptor, (int)st);
	return (v != NULL ? v->name : "STATUS_UNKNOWN");
}

static void
refusal_hint(const sender_link *l, Coffer__V1__Status st, coffer_err *err)
{
	switch (st) {
	case COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT:
		coffer_err_hint(err,
		    "enroll this agent: coffer agents enroll --service %s --agent %s "
		    "--pubkey FILE (the key `coffer-agent init` printed)",
		    l->cfg->service, l->cfg->name);
		break;
	case COFFER__V1__STATUS__STATUS_REVOKED:
		coffer_err_hint(
		    err, "agent %s was revoked; an operator must enroll it again", l->cfg->name);
		break;
	case COFFER__V1__STATUS__STATUS_BAD_SIGNATURE:
		coffer_err_hint(err,
		    "the key in [agent] signing_key is not the one enrolled for %s; "
		    "re-enroll its public key",
		    l->cfg->name);
		break;
	case COFFER__V1__STATUS__STATUS_NOT_OWNER:
		coffer_err_hint(err,
		    "agent %s is enrolled for another service than '%s'; fix "
		    "[agent] service or re-enroll the agent",
		    l->cfg->name, l->cfg->service);
		break;
	default:
		coffer_err_hint(
		    err, "check that agent and coordinator run the same Coffer version");
		break;
	}
}

/* Sends one request made of b's durable events and the transient extras,
 * and applies the reply's ack. */
static void
take_commands(sender_link *l, const Coffer__V1__Reply *reply)
{
	if (l->cmd_mu == NULL) {
		return; /* flush: commands are the daemon's business */
	}
	pthread_mutex_lock(l->cmd_mu);
	agent_sender_command_cb cb = l->on_command;
	void *arg = l->on_command_arg;
	agent_sender_drill_cb dcb = l->on_drill;
	void *darg = l->on_drill_arg;
	pthread_mutex_unlock(l->cmd_mu);
	for (size_t i = 0; i < reply->n_commands; i++) {
		const Coffer__V1__Command *c = reply->commands[i];
		/* Redelivered until reported done: pass each id on once. */
		if (c->id <= l->command_seen) {
			continue;
		}
		if (dcb != NULL && c->kind_case == COFFER__V1__COMMAND__KIND_RUN_DRILL &&
		    c->run_drill != NULL) {
			l->command_seen = c->id;
			coffer_log_info("command received",
			    "command=%" PRIu64 " kind=run_drill "
			    "drill=%" PRIu64,
			    c->id, c->run_drill->drill_id);
			dcb(darg, c->id, c->run_drill);
			continue;
		}
		if (cb == NULL || c->kind_case != COFFER__V1__COMMAND__KIND_RUN_BACKUP ||
		    c->run_backup == NULL) {
			continue;
		}
		l->command_seen = c->id;
		coffer_log_info("command received", "command=%" PRIu64 " kind=run_backup by=%s",
		    c->id,
		    c->run_backup->requested_by != NULL && c->run_backup->requested_by[0] != '\0'
		        ? c->run_backup->requested_by
		        : "-");
		cb(arg, c->id, c->run_backup->kind, c->run_backup->requested_by);
	}
}

static call_outcome
link_call(sender_link *l, const agent_sender_batch *b, Coffer__V1__Event **extra, size_t n_extra,
    coffer_err *err)
{
	uint8_t *body = NULL, *env = NULL, *rbuf = NULL;
	size_t body_len = 0, env_len = 0, rlen = 0;
	uint64_t eseq = 0;
	int64_t now = coffer_clock_now(NULL);
	if (agent_sender_request_pack(b, extra, n_extra, &body, &body_len, err) != 0) {
		return (CALL_LOCAL);
	}
	/* Recorded before sending: a seq that reached the coordinator can never
	 * be handed out again, even if we crash right after. */
	int rc = agent_sender_envseq_take(l->cfg->state_dir, now, l->envseq_last, &eseq, err);
	agent_statedir_note(l->cfg->state_dir, "envelope seq", rc);
	if (rc == COFFER_ENOSPC && eseq != 0) {
		/* A full disk must not silence the agent: send with a seq kept in
		 * memory. It is above every seq this process sent and, by the
		 * clock term, above those of earlier runs; what the file adds is
		 * only safety against a clock stepped back across a restart, and
		 * the worst that does is a REPLAYED answer, which is retried (the
		 * coordinator keeps nothing of a refused envelope). */
		coffer_err_clear(err);
		rc = 0;
	}
	if (rc == 0) {
		l->envseq_last = eseq;
		rc = agent_sender_envelope_build(
		    l->cfg->name, l->key, eseq, now, body, body_len, &env, &env_len, err);
	}
	free(body);
	if (rc != 0) {
		return (CALL_LOCAL);
	}
	rc = link_connect(l, err);
	int64_t call_mono = coffer_clock_monotonic_ms();
	if (rc == 0) {
		unsigned tmo = l->call_timeout_ms;
		if (l->need_hello && tmo > AGENT_SENDER_HELLO_TIMEOUT_MS) {
			tmo = AGENT_SENDER_HELLO_TIMEOUT_MS;
		}
		rc = coffer_net_client_call(l->client, env, env_len, &rbuf, &rlen, tmo, err);
	}
	free(env);
	if (rc != 0) {
		/* Whatever the cause, say hello again once we get through: the
		 * coordinator may have restarted, or we may have a new address. */
		l->need_hello = true;
		if (rc == COFFER_EAUTH && l->client != NULL) {
			coffer_net_client_close(l->client);
			l->client = NULL;
		}
		return (CALL_RETRY);
	}
	Coffer__V1__Reply *reply = (Coffer__V1__Reply *)coffer_wire_decode(
	    &coffer__v1__reply__descriptor, &l->arena, rbuf, rlen, COFFER_WIRE_MAX_MSG, err);
	free(rbuf);
	if (reply == NULL) {
		coffer_err_wrap(err, "the coordinator's reply");
		return (CALL_RETRY);
	}
	Coffer__V1__Status st = reply->status;
	if (st != COFFER__V1__STATUS__STATUS_OK) {
		coffer_err_set(err, COFFER_EREFUSED, "coordinator answered %s: %.300s",
		    status_name(st), reply->error != NULL ? reply->error : "");
		if (st == COFFER__V1__STATUS__STATUS_UNAVAILABLE ||
		    st == COFFER__V1__STATUS__STATUS_REPLAYED ||
		    st == COFFER__V1__STATUS__STATUS_INTERNAL) {
			/* The coordinator keeps nothing of a refused envelope; a
			 * later attempt (new seq, catalog back) may pass. */
			err->code = COFFER_EUNAVAIL;
			coffer_err_hint(err, "events stay in the outbox and are retried");
			return (CALL_RETRY);
		}
		refusal_hint(l, st, err);
		return (CALL_REFUSED);
	}
	if (reply->envelope_seq != eseq) {
		coffer_err_set(err, COFFER_EPROTO,
		    "reply answers envelope %" PRIu64 ", not %" PRIu64, reply->envelope_seq, eseq);
		return (CALL_RETRY);
	}
	l->last_contact_ms = now;
	l->reply_server_ms = reply->server_time_ms;
	l->reply_rtt_ms = coffer_clock_monotonic_ms() - call_mono;
	l->reply_sent_ms = now;
	l->reply_received_ms = coffer_clock_now(NULL);
	take_commands(l, reply);
	if (b->count == 0) {
		return (CALL_OK);
	}
	uint64_t ack = reply->acked_event_seq;
	if (ack < b->first_seq) {
		coffer_err_set(err, COFFER_EPROTO,
		    "coordinator acked events up to %" PRIu64 ", below the batch sent (%" PRIu64
		    "..%" PRIu64 ")",
		    ack, b->first_seq, b->last_seq);
		coffer_err_hint(err, "the events stay in the outbox and are sent again");
		return (CALL_RETRY);
	}
	if (ack > b->last_seq) {
		/* Normal when another process (flush beside the daemon) delivered
		 * newer events meanwhile; those exist in the outbox. */
		agent_outbox_stats os;
		if (agent_outbox_depth(l->ob, &os, err) != 0) {
			return (CALL_LOCAL);
		}
		uint64_t newest = os.next_seq - 1;
		if (ack > newest) {
			/* The coordinator has seen seqs this outbox never handed
			 * out: the state_dir was reset or restored, and events with
			 * those seqs will be taken for resends. Only an operator
			 * can tell what was lost. */
			coffer_log_error("coordinator is ahead of the outbox",
			    "acked=%" PRIu64 " outbox_newest=%" PRIu64
			    " hint=\"was state_dir reset? events up to acked will be ignored by the "
			    "coordinator\"",
			    ack, newest);
			ack = newest;
		}
	}
	if (agent_outbox_ack(l->ob, ack, err) != 0) {
		coffer_err_wrap(err, "acking events up to %" PRIu64, ack);
		return (CALL_LOCAL);
	}
	uint64_t before = l->acked_seq > b->first_seq - 1 ? l->acked_seq : b->first_seq - 1;
	if (ack > before) {
		for (size_t i = 0; i < b->count; i++) {
			if (b->events[i]->seq > before && b->events[i]->seq <= ack) {
				l->events_acked++;
			}
		}
	}
	if (ack > l->acked_seq) {
		l->acked_seq = ack;
	}
	coffer_log_debug(
	    "events acked", "acked=%" PRIu64 " batch=%zu envelope=%" PRIu64, ack, b->count, eseq);
	return (CALL_OK);
}

/* Sends the next batch from the outbox; *sent is its size (0: nothing was
 * pending, nothing was sent). */
static call_outcome
link_send_batch(sender_link *l, size_t *sent, coffer_err *err)
{
	*sent = 0;
	agent_sender_batch b;
	int rc = agent_sender_batch_read(
	    l->ob, AGENT_SENDER_MAX_EVENTS, AGENT_SENDER_MAX_BYTES, &b, err);
	if (rc == COFFER_ECORRUPT) {
		return (CALL_BROKEN);
	}
	if (rc != 0) {
		return (CALL_LOCAL);
	}
	if (b.count == 0) {
		return (CALL_OK);
	}
	call_outcome out = link_call(l, &b, NULL, 0, err);
	*sent = b.count;
	agent_sender_batch_free(&b);
	return (out);
}

/* What a heartbeat says beyond the outbox depth. */
typedef struct heartbeat_info {
	bool backup_running;
	char last_backup_id[128];
	int64_t last_backup_at_ms;
	agent_archiver_status archiver; /* read by the sender thread itself */
} heartbeat_info;

/* A transient event (seq 0): never in the outbox, never acked. hb NULL
 * sends the hello. */
static call_outcome
link_send_transient(sender_link *l, const heartbeat_info *hb_info, coffer_err *err)
{
	bool hello = hb_info == NULL;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	Coffer__V1__AgentHello h = COFFER__V1__AGENT_HELLO__INIT;
	Coffer__V1__Heartbeat hb = COFFER__V1__HEARTBEAT__INIT;
	char host[256] = "";
	ev.service = (char *)l->cfg->service;
	ev.occurred_at_ms = coffer_clock_now(NULL);
	if (hello) {
		if (gethostname(host, sizeof(host) - 1) != 0) {
			host[0] = '\0';
		}
		h.version = (char *)COFFER_VERSION;
		h.hostname = host;
		if (l->key_id != NULL) {
			h.key_id = (char *)l->key_id;
		}
		ev.kind_case = COFFER__V1__EVENT__KIND_HELLO;
		ev.hello = &h;
	} else {
		agent_outbox_stats st;
		if (agent_outbox_depth(l->ob, &st, err) != 0) {
			return (CALL_LOCAL);
		}
		hb.outbox_depth = st.count > UINT32_MAX ? UINT32_MAX : (uint32_t)st.count;
		hb.backup_running = hb_info->backup_running;
		hb.last_backup_id = (char *)hb_info->last_backup_id;
		hb.last_backup_at_ms = hb_info->last_backup_at_ms;
		const agent_archiver_status *a = &hb_info->archiver;
		if (a->archiving) {
			hb.last_archived_wal = (char *)a->last_archived_wal;
			hb.last_archived_at_ms = a->last_archived_at_ms;
			hb.archive_failed_count = a->failed_count;
			hb.last_failed_wal = (char *)a->last_failed_wal;
			hb.last_failed_at_ms = a->last_failed_at_ms;
			hb.wal_ready_count = a->ready_count;
			hb.current_wal = (char *)a->current_wal;
			hb.timeline = a->timeline;
			hb.system_identifier = (char *)a->system_identifier;
			hb.wal_segment_size = a->wal_segment_size;
		}
		/* Read, never written: the report must not need the space it
		 * reports the lack of. */
		uint64_t free_bytes = 0;
		coffer_err ferr = { 0 };
		if (agent_statedir_free(l->cfg->state_dir, &free_bytes, &ferr) == 0) {
			hb.state_dir_reported = true;
			hb.state_dir_free_bytes = free_bytes;
			hb.state_dir_write_nospace =
			    agent_statedir_nospace(&hb.state_dir_nospace_since_ms);
		}
		ev.kind_case = COFFER__V1__EVENT__KIND_HEARTBEAT;
		ev.heartbeat = &hb;
	}
	Coffer__V1__Event *extra[1] = { &ev };
	agent_sender_batch none = { 0 };
	call_outcome out = link_call(l, &none, extra, 1, err);
	if (out == CALL_OK && hello) {
		l->need_hello = false;
	}
	return (out);
}

/* ------------------------------------------------------------------------ */
/* The thread */

struct agent_sender {
	sender_link link;
	int64_t heartbeat_ms, retry_max_ms;
	pthread_t thread;
	bool thread_ok;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool kicked, stopping;
	agent_sender_status st;
	char last_logged[COFFER_ERR_MSG_MAX];
	uint64_t rng;
	heartbeat_info hb;                       /* under mu: written by the daemon's loop */
	char archiver_error[COFFER_ERR_MSG_MAX]; /* sender thread: last one logged */
};

/* The archiver's status for a heartbeat. A database that cannot be asked
 * is worth one warning per distinct reason, not one per heartbeat; the
 * heartbeat goes out without the fields (the agent is alive either way). */
static void
read_archiver(agent_sender *s, agent_archiver_status *st)
{
	const char *conninfo = s->link.cfg->conninfo;
	memset(st, 0, sizeof(*st));
	if (conninfo == NULL || conninfo[0] == '\0') {
		return;
	}
	coffer_err err = { 0 };
	if (agent_archiver_read(conninfo, 3, st, &err) != 0) {
		if (strcmp(err.msg, s->archiver_error) != 0) {
			coffer_log_warn("archiver status not read", "error=%s", err.msg);
			snprintf(s->archiver_error, sizeof(s->archiver_error), "%s", err.msg);
		}
		memset(st, 0, sizeof(*st));
		return;
	}
	s->archiver_error[0] = '\0';
}

const char *
agent_sender_state_name(agent_sender_state state)
{
	switch (state) {
	case AGENT_SENDER_STARTING:
		return ("starting");
	case AGENT_SENDER_IDLE:
		return ("idle");
	case AGENT_SENDER_SENDING:
		return ("sending");
	case AGENT_SENDER_BACKOFF:
		return ("backoff");
	case AGENT_SENDER_REFUSED:
		return ("refused");
	case AGENT_SENDER_BROKEN:
		return ("broken");
	case AGENT_SENDER_STOPPED:
		return ("stopped");
	}
	return ("unknown");
}

static uint64_t
rng_next(uint64_t *s)
{
	/* xorshift64*: jitter only needs to spread agents apart, not secrecy. */
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return (x * 2685821657736338717ull);
}

static uint64_t
rng_seed(void)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != (ssize_t)sizeof(seed) || seed == 0) {
		seed = (uint64_t)coffer_clock_monotonic_ms() ^ ((uint64_t)getpid() << 32) ^ 1;
	}
	return (seed);
}

/* A delay in [base/2, base]: agents that lost the coordinator together do
 * not all come back in the same second. */
static int64_t
jitter(uint64_t *rng, int64_t base)
{
	if (base < 2) {
		return (base);
	}
	int64_t half = base / 2;
	return (base - half + (int64_t)(rng_next(rng) % (uint64_t)(half + 1)));
}

static int64_t
backoff_ms(uint64_t *rng, unsigned attempt, int64_t retry_max)
{
	int64_t base = AGENT_SENDER_RETRY_MIN_MS;
	for (unsigned i = 1; i < attempt && base < retry_max; i++) {
		base *= 2;
	}
	if (base > retry_max) {
		base = retry_max;
	}
	return (jitter(rng, base));
}

static void
set_state(agent_sender *s, agent_sender_state state, const coffer_err *err)
{
	pthread_mutex_lock(&s->mu);
	s->st.state = state;
	if (err != NULL) {
		snprintf(s->st.last_error, sizeof(s->st.last_error), "%s", err->msg);
	} else if (state == AGENT_SENDER_IDLE) {
		s->st.last_error[0] = '\0';
	}
	s->st.acked_seq = s->link.acked_seq;
	s->st.events_sent = s->link.events_acked;
	s->st.last_contact_ms = s->link.last_contact_ms;
	pthread_mutex_unlock(&s->mu);
}

/* Logs a failure at level the first time it is seen, at debug while it
 * repeats, so an outage is one line and not one per retry. */
static void
log_once(agent_sender *s, coffer_log_level level, const char *what, const coffer_err *err)
{
	if (strcmp(s->last_logged, err->msg) == 0) {
		level = COFFER_LOG_DEBUG;
	}
	snprintf(s->last_logged, sizeof(s->last_logged), "%s", err->msg);
	coffer_log(level, what, "coordinator=%s error=%s hint=%s", s->link.cfg->coordinator_url,
	    err->msg, err->hint);
}

/* Waits up to ms (forever if < 0), or until stopped, or -- if kick_wakes --
 * until kicked. Returns true when stopping. */
static bool
wait_for(agent_sender *s, int64_t ms, bool kick_wakes)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	if (ms >= 0) {
		until.tv_sec += ms / 1000;
		until.tv_nsec += (ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&s->mu);
	while (!s->stopping && !(kick_wakes && s->kicked)) {
		int rc = ms >= 0 ? pthread_cond_timedwait(&s->cv, &s->mu, &until)
		                 : pthread_cond_wait(&s->cv, &s->mu);
		if (rc == ETIMEDOUT) {
			break;
		}
	}
	if (kick_wakes) {
		s->kicked = false;
	}
	bool stop = s->stopping;
	pthread_mutex_unlock(&s->mu);
	return (stop);
}

static bool
is_stopping(agent_sender *s)
{
	pthread_mutex_lock(&s->mu);
	bool stop = s->stopping;
	pthread_mutex_unlock(&s->mu);
	return (stop);
}

static void *
sender_main(void *arg)
{
	agent_sender *s = arg;
	sender_link *l = &s->link;
	unsigned attempt = 0;
	int64_t next_hb = coffer_clock_monotonic_ms() + s->heartbeat_ms;
	coffer_log_info(
	    "sender started", "coordinator=%s agent=%s", l->cfg->coordinator_url, l->cfg->name);
	while (!is_stopping(s)) {
		coffer_err err = { 0 };
		size_t sent = 0;
		bool was_hello = l->need_hello;
		bool transient = true;
		call_outcome out;
		int64_t now = coffer_clock_monotonic_ms();
		if (l->need_hello) {
			out = link_send_transient(l, NULL, &err);
		} else if (now >= next_hb) {
			next_hb = now + s->heartbeat_ms;
			heartbeat_info hb;
			pthread_mutex_lock(&s->mu);
			hb = s->hb;
			pthread_mutex_unlock(&s->mu);
			read_archiver(s, &hb.archiver);
			out = link_send_transient(l, &hb, &err);
		} else {
			transient = false;
			set_state(s, AGENT_SENDER_SENDING, NULL);
			out = link_send_batch(l, &sent, &err);
		}
		int64_t delay;
		switch (out) {
		case CALL_OK:
			if (attempt > 0 || was_hello) {
				coffer_log_info("connected to coordinator",
				    "coordinator=%s acked=%" PRIu64, l->cfg->coordinator_url,
				    l->acked_seq);
			}
			attempt = 0;
			s->last_logged[0] = '\0';
			/* Idle only once a read found the outbox empty. */
			if (transient || sent > 0) {
				continue;
			}
			set_state(s, AGENT_SENDER_IDLE, NULL);
			delay = next_hb - coffer_clock_monotonic_ms();
			if (delay > AGENT_SENDER_POLL_MS) {
				delay = AGENT_SENDER_POLL_MS;
			}
			if (wait_for(s, delay > 0 ? delay : 0, true)) {
				break;
			}
			/* Nothing to send and nobody kicked: ask for commands. */
			if (!is_stopping(s) && coffer_clock_monotonic_ms() < next_hb) {
				agent_sender_batch none;
				memset(&none, 0, sizeof(none));
				coffer_err perr = { 0 };
				if (link_call(l, &none, NULL, 0, &perr) != CALL_OK) {
					coffer_log_debug("poll failed", "error=\"%s\"", perr.msg);
				}
			}
			break;
		case CALL_RETRY:
			attempt++;
			log_once(s, COFFER_LOG_WARN, "events not delivered; retrying", &err);
			set_state(s, AGENT_SENDER_BACKOFF, &err);
			wait_for(s, backoff_ms(&s->rng, attempt, s->retry_max_ms), false);
			break;
		case CALL_REFUSED:
			log_once(s, COFFER_LOG_ERROR, "coordinator refused the agent", &err);
			set_state(s, AGENT_SENDER_REFUSED, &err);
			wait_for(s, jitter(&s->rng, s->retry_max_ms), false);
			break;
		case CALL_LOCAL:
			/* A full state directory was logged once when it filled
			 * (agent/outbox/statedir.c); the acks it refuses repeat
			 * between heartbeats and are not news. */
			log_once(s, err.code == COFFER_ENOSPC ? COFFER_LOG_DEBUG : COFFER_LOG_ERROR,
			    "cannot send events", &err);
			set_state(s, AGENT_SENDER_BACKOFF, &err);
			/* Heartbeats need nothing local: the retry never delays one. */
			delay = jitter(&s->rng, s->retry_max_ms);
			if (delay > next_hb - coffer_clock_monotonic_ms()) {
				delay = next_hb - coffer_clock_monotonic_ms();
			}
			wait_for(s, delay > 0 ? delay : 0, false);
			break;
		case CALL_BROKEN:
			log_once(s, COFFER_LOG_ERROR,
			    "undecodable outbox record; sending stopped until "
			    "restart",
			    &err);
			set_state(s, AGENT_SENDER_BROKEN, &err);
			wait_for(s, -1, false);
			break;
		}
	}
	pthread_mutex_lock(&s->mu);
	s->st.state = AGENT_SENDER_STOPPED;
	pthread_mutex_unlock(&s->mu);
	coffer_log_info("sender stopped", "acked=%" PRIu64, l->acked_seq);
	return (NULL);
}

void
agent_sender_set_drill_cb(agent_sender *s, agent_sender_drill_cb cb, void *arg)
{
	pthread_mutex_lock(&s->mu);
	s->link.on_drill = cb;
	s->link.on_drill_arg = arg;
	pthread_mutex_unlock(&s->mu);
}

void
agent_sender_set_command_cb(agent_sender *s, agent_sender_command_cb cb, void *arg)
{
	pthread_mutex_lock(&s->mu);
	s->link.on_command = cb;
	s->link.on_command_arg = arg;
	pthread_mutex_unlock(&s->mu);
}

int
agent_sender_start(agent_ctx *ctx, agent_sender **out, coffer_err *err)
{
	*out = NULL;
	agent_sender *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory starting the sender"));
	}
	int rc = link_init(&s->link, ctx, err);
	if (rc != 0) {
		free(s);
		return (rc);
	}
	s->heartbeat_ms = ctx->cfg->heartbeat_ms > 0 ? ctx->cfg->heartbeat_ms : 60000;
	s->retry_max_ms = ctx->cfg->retry_max_ms >= AGENT_SENDER_RETRY_MIN_MS
	    ? ctx->cfg->retry_max_ms
	    : AGENT_SENDER_RETRY_MIN_MS;
	s->rng = rng_seed();
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	s->link.cmd_mu = &s->mu;
	int prc = pthread_create(&s->thread, NULL, sender_main, s);
	if (prc != 0) {
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		link_fini(&s->link);
		free(s);
		return (coffer_err_errno(err, prc, "starting the sender thread", "-"));
	}
	s->thread_ok = true;
	*out = s;
	return (0);
}

void
agent_sender_kick(agent_sender *s)
{
	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->kicked = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void
agent_sender_note_backup(
    agent_sender *s, bool running, const char *completed_id, int64_t completed_at_ms)
{
	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->hb.backup_running = running;
	if (completed_id != NULL) {
		snprintf(s->hb.last_backup_id, sizeof(s->hb.last_backup_id), "%s", completed_id);
		s->hb.last_backup_at_ms = completed_at_ms;
	}
	pthread_mutex_unlock(&s->mu);
}

void
agent_sender_status_get(agent_sender *s, agent_sender_status *out)
{
	pthread_mutex_lock(&s->mu);
	*out = s->st;
	pthread_mutex_unlock(&s->mu);
}

void
agent_sender_stop(agent_sender *s)
{
	if (s == NULL) {
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (s->thread_ok) {
		pthread_join(s->thread, NULL);
	}
	link_fini(&s->link);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ------------------------------------------------------------------------ */
/* One-shot flush */

static void
sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
}

int
agent_sender_flush(agent_ctx *ctx, int64_t timeout_ms, uint64_t *acked, coffer_err *err)
{
	if (acked != NULL) {
		*acked = 0;
	}
	sender_link l;
	int rc = link_init(&l, ctx, err);
	if (rc != 0) {
		return (rc);
	}
	agent_outbox_stats st;
	rc = agent_outbox_depth(l.ob, &st, err);
	/* Everything appended before now; events appended while we run are the
	 * daemon's business. */
	uint64_t target = rc == 0 ? st.next_seq - 1 : 0;
	int64_t deadline = coffer_clock_monotonic_ms() + timeout_ms;
	uint64_t rng = rng_seed();
	unsigned attempt = 0;
	while (rc == 0 && st.acked_seq < target) {
		int64_t left = deadline - coffer_clock_monotonic_ms();
		if (left <= 0) {
			coffer_err tmo = *err;
			rc = coffer_err_set(err, COFFER_ETIMEDOUT,
			    "%" PRIu64 " events still in the outbox after %" PRId64 " ms%s%.300s",
			    st.count, timeout_ms, tmo.msg[0] != '\0' ? "; last error: " : "",
			    tmo.msg);
			coffer_err_hint(err, "%s",
			    tmo.hint[0] != '\0'
			        ? tmo.hint
			        : "check that the coordinator runs and is reachable; the events stay in the "
			          "outbox");
			break;
		}
		l.call_timeout_ms = left < AGENT_SENDER_CALL_TIMEOUT_MS
		    ? (unsigned)(left > 100 ? left : 100)
		    : AGENT_SENDER_CALL_TIMEOUT_MS;
		coffer_err cerr = { 0 };
		size_t sent = 0;
		call_outcome out = l.need_hello ? link_send_transient(&l, NULL, &cerr)
		                                : link_send_batch(&l, &sent, &cerr);
		switch (out) {
		case CALL_OK:
			attempt = 0;
			coffer_err_clear(err);
			rc = agent_outbox_depth(l.ob, &st, err);
			break;
		case CALL_RETRY: {
			*err = cerr;
			int64_t d = backoff_ms(&rng, ++attempt, ctx->cfg->retry_max_ms);
			left = deadline - coffer_clock_monotonic_ms();
			coffer_log_debug(
			    "flush retrying", "error=\"%s\" delay_ms=%" PRId64, cerr.msg, d);
			sleep_ms(d < left ? d : (left > 0 ? left : 0));
			break;
		}
		case CALL_REFUSED:
		case CALL_BROKEN:
		case CALL_LOCAL:
			*err = cerr;
			rc = cerr.code != 0 ? cerr.code : COFFER_EINTERNAL;
			break;
		}
	}
	if (acked != NULL) {
		*acked = l.events_acked;
	}
	link_fini(&l);
	return (rc);
}

/* ------------------------------------------------------------------------ */
/* One-shot ping */

int
agent_sender_ping(
    agent_ctx *ctx, int64_t timeout_ms, agent_sender_ping_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	sender_link l;
	int rc = link_init(&l, ctx, err);
	if (rc != 0) {
		return (rc);
	}
	int64_t deadline = coffer_clock_monotonic_ms() + timeout_ms;
	uint64_t rng = rng_seed();
	unsigned attempt = 0;
	for (;;) {
		int64_t left = deadline - coffer_clock_monotonic_ms();
		l.call_timeout_ms = left < AGENT_SENDER_CALL_TIMEOUT_MS
		    ? (unsigned)(left > 100 ? left : 100)
		    : AGENT_SENDER_CALL_TIMEOUT_MS;
		coffer_err cerr = { 0 };
		call_outcome out = link_send_transient(&l, NULL, &cerr);
		if (out == CALL_OK) {
			res->attempts = attempt + 1;
			res->rtt_ms = l.reply_rtt_ms;
			res->sent_ms = l.reply_sent_ms;
			res->received_ms = l.reply_received_ms;
			res->server_time_ms = l.reply_server_ms;
			break;
		}
		*err = cerr;
		rc = cerr.code != 0 ? cerr.code : COFFER_EINTERNAL;
		if (out != CALL_RETRY) {
			break;
		}
		/* The first call may only have started the dial: retry until the
		 * deadline, as flush does, then report the last error. */
		int64_t d = backoff_ms(&rng, ++attempt, 1000);
		left = deadline - coffer_clock_monotonic_ms();
		if (left <= 0) {
			break;
		}
		sleep_ms(d < left ? d : left);
	}
	if (res->attempts > 0) {
		rc = 0;
		coffer_err_clear(err);
	}
	link_fini(&l);
	return (rc);
}
