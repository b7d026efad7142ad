/* Sender: the pieces that need no coordinator. Envelope seq persistence
 * (monotonic across calls, processes and clock steps; damage refused),
 * signed envelopes verified the way the coordinator does, batches read
 * from a real outbox (limits, seq stamping, undecodable records refused and
 * kept), and the thread and `flush` against a coordinator that is not
 * there: events stay, errors say why, stop is clean. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/context/context.h"
#include "agent/outbox/events.h"
#include "agent/outbox/outbox.h"
#include "agent/report/sender.h"
#include "common/base/log.h"
#include "common/crypto/sign.h"
#include "common/wire/wire.h"
#include "tests/harness/tmpdir.h"

struct fixture {
	char dir[512];   /* scratch root */
	char state[600]; /* state_dir */
	char conf[600];  /* agent.conf */
	char key[600];   /* signing key */
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	if (harness_tmpdir_make("sender-test", f->dir, sizeof(f->dir)) != 0) {
		free(f);
		return (-1);
	}
	snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
	snprintf(f->conf, sizeof(f->conf), "%s/agent.conf", f->dir);
	snprintf(f->key, sizeof(f->key), "%s/agent.key", f->dir);
	mkdir(f->state, 0700);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture *f = *state;
	harness_tmpdir_remove(f->dir);
	free(f);
	return (0);
}

static void
write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

static void
read_file(const char *path, char *buf, size_t size)
{
	FILE *fp = fopen(path, "r");
	assert_non_null(fp);
	size_t n = fread(buf, 1, size - 1, fp);
	buf[n] = '\0';
	fclose(fp);
}

/* An agent.conf whose coordinator (if any) is an address nothing listens
 * on: port 1 on loopback refuses every connection at once. */
static void
write_config(struct fixture *f, bool coordinator)
{
	char text[4096];
	snprintf(text, sizeof(text),
	    "[agent]\nname = billing-db-1\nservice = billing\nstate_dir = %s\n"
	    "signing_key = %s\nkey_ring = %s/none.keys\n"
	    "[postgres]\nconninfo = dbname=billing\n"
	    "[schedule]\nlogical = 0 2 * * *\n"
	    "[repository.primary]\ntype = posix\npath = %s/repo\n"
	    "%s",
	    f->state, f->key, f->dir, f->dir,
	    coordinator ? "[coordinator]\nurl = tcp://127.0.0.1:1\nheartbeat = 1s\n"
	                  "retry_max = 1s\n"
	                : "");
	write_file(f->conf, text);
	if (access(f->key, F_OK) != 0) {
		coffer_err err = { 0 };
		assert_int_equal(coffer_sign_keygen(f->key, NULL, &err), 0);
	}
}

static void
emit_backup_started(agent_outbox *ob, const char *id, uint64_t *seq)
{
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	Coffer__V1__BackupStarted bs = COFFER__V1__BACKUP_STARTED__INIT;
	bs.backup_id = (char *)id;
	bs.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
	ev.backup_started = &bs;
	coffer_err err = { 0 };
	assert_int_equal(agent_events_emit(ob, "billing", 1764000000000, &ev, seq, &err), 0);
}

/* ---- envelope seq ---- */

static uint64_t
envseq(struct fixture *f, int64_t now_ms)
{
	uint64_t seq = 0;
	coffer_err err = { 0 };
	assert_int_equal(agent_sender_envseq_next(f->state, now_ms, &seq, &err), 0);
	return (seq);
}

static void
test_envseq_monotonic(void **state)
{
	struct fixture *f = *state;
	/* The clock term wins on a fresh agent... */
	assert_int_equal(envseq(f, 1000), 1000000);
	/* ...and the recorded one within the same millisecond. */
	assert_int_equal(envseq(f, 1000), 1000001);
	assert_int_equal(envseq(f, 1000), 1000002);
	/* The clock steps back an hour: still strictly increasing. */
	assert_int_equal(envseq(f, 1000 - 3600 * 1000), 1000003);
	assert_int_equal(envseq(f, -5), 1000004);
	/* The clock moves on: seqs jump with it. */
	assert_int_equal(envseq(f, 2000), 2000000);
	/* It is on disk, as text, durably replaced (no temporary left). */
	char path[700], buf[64];
	snprintf(path, sizeof(path), "%s/%s", f->state, AGENT_SENDER_ENVSEQ_FILE);
	read_file(path, buf, sizeof(buf));
	assert_string_equal(buf, "2000000\n");
	snprintf(path, sizeof(path), "%s/%s.tmp", f->state, AGENT_SENDER_ENVSEQ_FILE);
	assert_int_equal(access(path, F_OK), -1);
	/* A file from a previous run far ahead of the clock is honoured. */
	snprintf(path, sizeof(path), "%s/%s", f->state, AGENT_SENDER_ENVSEQ_FILE);
	write_file(path, "99999999999999999\n");
	assert_int_equal(envseq(f, 2000), 100000000000000000ull);
}

/* The floor (this process's last seq, what a full disk leaves to go on)
 * is honoured over both the file and the clock; a seq taken with the disk
 * writable is recorded as before. */
static void
test_envseq_floor(void **state)
{
	struct fixture *f = *state;
	uint64_t seq = 0;
	coffer_err err = { 0 };
	assert_int_equal(agent_sender_envseq_take(f->state, 1000, 0, &seq, &err), 0);
	assert_int_equal(seq, 1000000);
	assert_int_equal(agent_sender_envseq_take(f->state, 1000, 5000000, &seq, &err), 0);
	assert_int_equal(seq, 5000001);
	/* The file now says 5000001: a process without a floor goes on above it. */
	assert_int_equal(envseq(f, 1000), 5000002);
	/* A floor at the top is refused, not wrapped. */
	assert_int_equal(
	    agent_sender_envseq_take(f->state, 1000, UINT64_MAX, &seq, &err), COFFER_ECORRUPT);
	assert_int_equal(seq, 0);
}

static void
test_envseq_damage_refused(void **state)
{
	struct fixture *f = *state;
	char path[700], buf[64];
	snprintf(path, sizeof(path), "%s/%s", f->state, AGENT_SENDER_ENVSEQ_FILE);
	const char *bad[] = { "", "abc\n", "12x\n", "12\n\n", "-4\n", "99999999999999999999999\n",
		"18446744073709551615\n" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		write_file(path, bad[i]);
		uint64_t seq = 7;
		coffer_err err = { 0 };
		assert_int_equal(
		    agent_sender_envseq_next(f->state, 1000, &seq, &err), COFFER_ECORRUPT);
		assert_int_equal(seq, 7);
		assert_non_null(strstr(err.msg, AGENT_SENDER_ENVSEQ_FILE));
		assert_true(err.hint[0] != '\0');
		/* Refused, not repaired behind the operator's back. */
		read_file(path, buf, sizeof(buf));
		assert_string_equal(buf, bad[i]);
	}
	/* A state_dir that does not exist is an error, not seq 1. */
	uint64_t seq = 0;
	coffer_err err = { 0 };
	char missing[700];
	snprintf(missing, sizeof(missing), "%s/nope", f->dir);
	assert_int_not_equal(agent_sender_envseq_next(missing, 1000, &seq, &err), 0);
	assert_int_equal(seq, 0);
	assert_non_null(strstr(err.msg, "nope"));
}

/* The daemon and `coffer-agent flush` draw seqs at the same time: no two
 * requests may ever share one. */
static void
test_envseq_concurrent_processes(void **state)
{
	struct fixture *f = *state;
	enum {
		KIDS = 4,
		EACH = 40
	};
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	for (int k = 0; k < KIDS; k++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			for (int i = 0; i < EACH; i++) {
				uint64_t seq = 0;
				if (agent_sender_envseq_next(f->state, 5000, &seq, NULL) != 0) {
					_exit(1);
				}
				if (write(fds[1], &seq, sizeof(seq)) != (ssize_t)sizeof(seq)) {
					_exit(1);
				}
			}
			_exit(0);
		}
	}
	close(fds[1]);
	uint64_t seen[KIDS * EACH];
	size_t n = 0;
	uint64_t v;
	while (n < KIDS * EACH && read(fds[0], &v, sizeof(v)) == (ssize_t)sizeof(v)) {
		seen[n++] = v;
	}
	close(fds[0]);
	for (int k = 0; k < KIDS; k++) {
		int st = 0;
		assert_true(wait(&st) > 0);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	assert_int_equal(n, KIDS * EACH);
	/* All distinct and exactly the range 5000000 .. +159: none lost. */
	uint8_t hit[KIDS * EACH] = { 0 };
	for (size_t i = 0; i < n; i++) {
		assert_true(seen[i] >= 5000000 && seen[i] < 5000000 + KIDS * EACH);
		assert_int_equal(hit[seen[i] - 5000000], 0);
		hit[seen[i] - 5000000] = 1;
	}
}

/* ---- envelopes ---- */

static void
test_envelope_signed_and_verifiable(void **state)
{
	(void)state;
	coffer_err err = { 0 };
	coffer_sign_key *key = NULL, *other = NULL;
	coffer_sign_pubkey *pub = NULL, *other_pub = NULL;
	assert_int_equal(coffer_sign_key_generate(&key, &err), 0);
	assert_int_equal(coffer_sign_key_generate(&other, &err), 0);
	assert_int_equal(coffer_sign_key_public(key, &pub, &err), 0);
	assert_int_equal(coffer_sign_key_public(other, &other_pub, &err), 0);
	const uint8_t body[] = { 0x0a, 0x03, 0x0a, 0x01, 0x08 };
	uint8_t *buf = NULL;
	size_t len = 0;
	assert_int_equal(agent_sender_envelope_build("billing-db-1", key, 42, 1764000000123, body,
	                     sizeof(body), &buf, &len, &err),
	    0);

	/* Decode it exactly as the coordinator does. */
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, &err), 0);
	Coffer__V1__Envelope *env = (Coffer__V1__Envelope *)coffer_wire_decode(
	    &coffer__v1__envelope__descriptor, &arena, buf, len, COFFER_WIRE_MAX_MSG, &err);
	assert_non_null(env);
	assert_int_equal(coffer_wire_check_envelope(env, &err), 0);
	assert_int_equal(env->version, 1);
	assert_string_equal(env->agent_id, "billing-db-1");
	assert_int_equal(env->seq, 42);
	assert_int_equal(env->sent_at_ms, 1764000000123);
	assert_int_equal(env->body.len, sizeof(body));
	assert_memory_equal(env->body.data, body, sizeof(body));
	assert_int_equal(env->signature.len, COFFER_SIGN_BYTES);

	size_t tbs_len = 0;
	uint8_t *tbs = coffer_wire_envelope_tbs(
	    env->agent_id, env->seq, env->sent_at_ms, env->body.data, env->body.len, &tbs_len);
	assert_non_null(tbs);
	assert_int_equal(coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &err), 0);
	/* Another agent's key does not verify it. */
	assert_int_equal(
	    coffer_sign_verify(other_pub, tbs, tbs_len, env->signature.data, &err), COFFER_EAUTH);
	free(tbs);
	/* Every signed field is covered: change one, the signature fails. */
	tbs = coffer_wire_envelope_tbs(
	    env->agent_id, env->seq + 1, env->sent_at_ms, env->body.data, env->body.len, &tbs_len);
	assert_int_equal(
	    coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &err), COFFER_EAUTH);
	free(tbs);
	tbs = coffer_wire_envelope_tbs(
	    "billing-db-2", env->seq, env->sent_at_ms, env->body.data, env->body.len, &tbs_len);
	assert_int_equal(
	    coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &err), COFFER_EAUTH);
	free(tbs);
	tbs = coffer_wire_envelope_tbs(
	    env->agent_id, env->seq, env->sent_at_ms + 1, env->body.data, env->body.len, &tbs_len);
	assert_int_equal(
	    coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &err), COFFER_EAUTH);
	free(tbs);
	uint8_t body2[sizeof(body)];
	memcpy(body2, body, sizeof(body));
	body2[4] ^= 1;
	tbs = coffer_wire_envelope_tbs(
	    env->agent_id, env->seq, env->sent_at_ms, body2, sizeof(body2), &tbs_len);
	assert_int_equal(
	    coffer_sign_verify(pub, tbs, tbs_len, env->signature.data, &err), COFFER_EAUTH);
	free(tbs);

	/* A body too large for the wire is refused, not sent. */
	size_t big_len = COFFER_WIRE_MAX_MSG;
	uint8_t *big = calloc(1, big_len);
	assert_non_null(big);
	uint8_t *out = NULL;
	size_t out_len = 0;
	assert_int_equal(agent_sender_envelope_build(
	                     "billing-db-1", key, 43, 0, big, big_len, &out, &out_len, &err),
	    COFFER_ETOOBIG);
	assert_null(out);
	free(big);

	coffer_wire_arena_fini(&arena);
	free(buf);
	coffer_sign_pubkey_free(pub);
	coffer_sign_pubkey_free(other_pub);
	coffer_sign_key_free(key);
	coffer_sign_key_free(other);
}

/* ---- batches ---- */

static void
test_batch_from_outbox(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	agent_outbox *ob = NULL;
	assert_int_equal(agent_outbox_open(f->state, NULL, &ob, &err), 0);

	agent_sender_batch b = { 0 };
	assert_int_equal(agent_sender_batch_read(ob, 10, 1 << 20, &b, &err), 0);
	assert_int_equal(b.count, 0);
	assert_int_equal(b.first_seq, 0);
	agent_sender_batch_free(&b);

	char id[32];
	for (int i = 1; i <= 5; i++) {
		uint64_t seq = 0;
		snprintf(id, sizeof(id), "backup-%d", i);
		emit_backup_started(ob, id, &seq);
		assert_int_equal(seq, (uint64_t)i);
	}
	assert_int_equal(agent_sender_batch_read(ob, 3, 1 << 20, &b, &err), 0);
	assert_int_equal(b.count, 3);
	assert_int_equal(b.first_seq, 1);
	assert_int_equal(b.last_seq, 3);
	for (size_t i = 0; i < b.count; i++) {
		/* Stamped with the outbox seq: that is what makes it durable. */
		assert_int_equal(b.events[i]->seq, i + 1);
		assert_string_equal(b.events[i]->service, "billing");
		assert_int_equal(b.events[i]->kind_case, COFFER__V1__EVENT__KIND_BACKUP_STARTED);
		snprintf(id, sizeof(id), "backup-%zu", i + 1);
		assert_string_equal(b.events[i]->backup_started->backup_id, id);
	}

	/* Packed with a transient heartbeat: the coordinator sees seqs 1,2,3,0. */
	Coffer__V1__Event hb_ev = COFFER__V1__EVENT__INIT;
	Coffer__V1__Heartbeat hb = COFFER__V1__HEARTBEAT__INIT;
	hb.outbox_depth = 5;
	hb_ev.service = (char *)"billing";
	hb_ev.kind_case = COFFER__V1__EVENT__KIND_HEARTBEAT;
	hb_ev.heartbeat = &hb;
	Coffer__V1__Event *extra[1] = { &hb_ev };
	uint8_t *body = NULL;
	size_t body_len = 0;
	assert_int_equal(agent_sender_request_pack(&b, extra, 1, &body, &body_len, &err), 0);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, &err), 0);
	Coffer__V1__Request *req = (Coffer__V1__Request *)coffer_wire_decode(
	    &coffer__v1__request__descriptor, &arena, body, body_len, COFFER_WIRE_MAX_MSG, &err);
	assert_non_null(req);
	assert_int_equal(req->kind_case, COFFER__V1__REQUEST__KIND_EVENTS);
	assert_int_equal(req->events->n_events, 4);
	assert_int_equal(req->events->events[0]->seq, 1);
	assert_int_equal(req->events->events[2]->seq, 3);
	assert_int_equal(req->events->events[3]->seq, 0);
	assert_int_equal(req->events->events[3]->heartbeat->outbox_depth, 5);
	free(body);
	agent_sender_batch_free(&b);
	assert_null(b.events);
	assert_int_equal(b.count, 0);

	/* Nothing is forgotten before an ack; after one, the batch moves on. */
	assert_int_equal(agent_sender_batch_read(ob, 100, 1 << 20, &b, &err), 0);
	assert_int_equal(b.first_seq, 1);
	assert_int_equal(b.count, 5);
	agent_sender_batch_free(&b);
	assert_int_equal(agent_outbox_ack(ob, 3, &err), 0);
	assert_int_equal(agent_sender_batch_read(ob, 100, 1 << 20, &b, &err), 0);
	assert_int_equal(b.count, 2);
	assert_int_equal(b.first_seq, 4);
	assert_int_equal(b.last_seq, 5);
	agent_sender_batch_free(&b);

	/* A byte budget smaller than one record still moves the queue. */
	assert_int_equal(agent_sender_batch_read(ob, 100, 1, &b, &err), 0);
	assert_int_equal(b.count, 1);
	assert_int_equal(b.first_seq, 4);
	agent_sender_batch_free(&b);

	/* An empty request (nothing durable, nothing transient) still packs:
	 * the sender never sends one, but packing must not crash. */
	assert_int_equal(agent_sender_request_pack(&b, NULL, 0, &body, &body_len, &err), 0);
	free(body);

	coffer_wire_arena_fini(&arena);
	agent_outbox_close(ob);
}

static void
test_batch_undecodable_record_kept(void **state)
{
	struct fixture *f = *state;
	coffer_err err = { 0 };
	agent_outbox *ob = NULL;
	assert_int_equal(agent_outbox_open(f->state, NULL, &ob, &err), 0);
	emit_backup_started(ob, "good-1", NULL);
	/* Field 2 (service) as a length-delimited string claiming 100 bytes
	 * that are not there: protobuf-c must refuse it. */
	const uint8_t junk[] = { 0x12, 0x64, 'x', 'y' };
	uint64_t bad_seq = 0;
	assert_int_equal(agent_outbox_append(ob, junk, sizeof(junk), &bad_seq, &err), 0);
	emit_backup_started(ob, "good-3", NULL);

	agent_sender_batch b = { 0 };
	coffer_err_clear(&err);
	assert_int_equal(agent_sender_batch_read(ob, 10, 1 << 20, &b, &err), COFFER_ECORRUPT);
	assert_int_equal(b.count, 0);
	assert_null(b.events);
	char want[64];
	snprintf(want, sizeof(want), "outbox record %llu ", (unsigned long long)bad_seq);
	assert_non_null(strstr(err.msg, want));
	assert_non_null(strstr(err.hint, "bug"));
	/* Never skipped, never dropped: all three are still there. */
	agent_outbox_stats st;
	assert_int_equal(agent_outbox_depth(ob, &st, &err), 0);
	assert_int_equal(st.count, 3);
	/* The good record before it can still be read on its own. */
	assert_int_equal(agent_sender_batch_read(ob, 1, 1 << 20, &b, &err), 0);
	assert_int_equal(b.count, 1);
	agent_sender_batch_free(&b);
	agent_outbox_close(ob);
}

/* ---- the thread and flush, with no coordinator to talk to ---- */

static void
test_flush_needs_coordinator_section(void **state)
{
	struct fixture *f = *state;
	write_config(f, false);
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	assert_int_equal(
	    agent_ctx_open(f->conf, NULL, AGENT_NEED_SIGN | AGENT_NEED_OUTBOX, &ctx, &err), 0);
	uint64_t acked = 9;
	assert_int_equal(agent_sender_flush(ctx, 1000, &acked, &err), COFFER_EINVAL);
	assert_int_equal(acked, 0);
	assert_non_null(strstr(err.msg, "[coordinator]"));
	assert_non_null(strstr(err.hint, "url"));
	agent_sender *s = NULL;
	assert_int_equal(agent_sender_start(ctx, &s, &err), COFFER_EINVAL);
	assert_null(s);
	agent_sender_kick(NULL);
	agent_sender_stop(NULL);
	agent_ctx_close(ctx);
}

static void
test_flush_unreachable_keeps_events(void **state)
{
	struct fixture *f = *state;
	write_config(f, true);
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	assert_int_equal(
	    agent_ctx_open(f->conf, NULL, AGENT_NEED_SIGN | AGENT_NEED_OUTBOX, &ctx, &err), 0);
	/* Nothing to send: done at once, whether or not anyone listens. */
	uint64_t acked = 9;
	assert_int_equal(agent_sender_flush(ctx, 60000, &acked, &err), 0);
	assert_int_equal(acked, 0);

	emit_backup_started(ctx->outbox, "b-1", NULL);
	emit_backup_started(ctx->outbox, "b-2", NULL);
	coffer_err_clear(&err);
	assert_int_equal(agent_sender_flush(ctx, 1500, &acked, &err), COFFER_ETIMEDOUT);
	assert_int_equal(acked, 0);
	assert_non_null(strstr(err.msg, "2 events still in the outbox"));
	assert_non_null(strstr(err.msg, "last error"));
	assert_true(err.hint[0] != '\0');
	agent_outbox_stats st;
	assert_int_equal(agent_outbox_depth(ctx->outbox, &st, &err), 0);
	assert_int_equal(st.count, 2);
	assert_int_equal(st.acked_seq, 0);
	/* It tried: envelope seqs were recorded before each attempt. */
	char path[700];
	snprintf(path, sizeof(path), "%s/%s", f->state, AGENT_SENDER_ENVSEQ_FILE);
	assert_int_equal(access(path, F_OK), 0);
	agent_ctx_close(ctx);
}

static void
test_thread_backs_off_and_stops(void **state)
{
	struct fixture *f = *state;
	write_config(f, true);
	coffer_err err = { 0 };
	agent_ctx *ctx = NULL;
	assert_int_equal(
	    agent_ctx_open(f->conf, NULL, AGENT_NEED_SIGN | AGENT_NEED_OUTBOX, &ctx, &err), 0);
	emit_backup_started(ctx->outbox, "b-1", NULL);
	agent_sender *s = NULL;
	assert_int_equal(agent_sender_start(ctx, &s, &err), 0);
	assert_non_null(s);
	agent_sender_kick(s);
	/* Wait (boundedly) for the first failed attempt to be reported. */
	agent_sender_status st;
	for (int i = 0; i < 600; i++) {
		agent_sender_status_get(s, &st);
		if (st.state == AGENT_SENDER_BACKOFF) {
			break;
		}
		struct timespec ts = { 0, 50 * 1000000L };
		nanosleep(&ts, NULL);
	}
	assert_int_equal(st.state, AGENT_SENDER_BACKOFF);
	assert_string_equal(agent_sender_state_name(st.state), "backoff");
	assert_true(st.last_error[0] != '\0');
	assert_int_equal(st.acked_seq, 0);
	assert_int_equal(st.events_sent, 0);
	assert_int_equal(st.last_contact_ms, 0);
	agent_sender_kick(s); /* kicks during a back-off are harmless */
	agent_sender_stop(s);
	agent_outbox_stats ost;
	assert_int_equal(agent_outbox_depth(ctx->outbox, &ost, &err), 0);
	assert_int_equal(ost.count, 1);
	agent_ctx_close(ctx);
}

int
main(void)
{
	coffer_log_init("sender_test", COFFER_LOG_ERROR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_envseq_monotonic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_envseq_floor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_envseq_damage_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_envseq_concurrent_processes, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_envelope_signed_and_verifiable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_from_outbox, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_batch_undecodable_record_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_flush_needs_coordinator_section, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_flush_unreachable_keeps_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thread_backs_off_and_stops, setup, teardown),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
