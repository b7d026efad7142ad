/* Wire decoding: round trips, and refusal of truncated, oversized and
 * memory-amplifying messages without crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/wire/wire.h"

static uint8_t *
pack_envelope(size_t *len)
{
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	Coffer__V1__BackupCompleted done = COFFER__V1__BACKUP_COMPLETED__INIT;
	done.backup_id = "20261123T020000Z-billing";
	done.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	done.plain_bytes = 123456789;
	ev.seq = 7;
	ev.service = "billing";
	ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
	ev.backup_completed = &done;
	Coffer__V1__Event *events[] = { &ev };
	Coffer__V1__EventBatch batch = COFFER__V1__EVENT_BATCH__INIT;
	batch.n_events = 1;
	batch.events = events;
	Coffer__V1__Request req = COFFER__V1__REQUEST__INIT;
	req.kind_case = COFFER__V1__REQUEST__KIND_EVENTS;
	req.events = &batch;

	uint8_t *body;
	size_t body_len;
	assert_int_equal(
	    coffer_wire_encode(&req.base, COFFER_WIRE_MAX_MSG, &body, &body_len, NULL), 0);
	uint8_t sig[64];
	memset(sig, 0xab, sizeof(sig));
	Coffer__V1__Envelope env = COFFER__V1__ENVELOPE__INIT;
	env.version = 1;
	env.agent_id = "billing-db-1";
	env.seq = 42;
	env.sent_at_ms = 1795000000000;
	env.body.data = body;
	env.body.len = body_len;
	env.signature.data = sig;
	env.signature.len = sizeof(sig);
	uint8_t *out;
	assert_int_equal(coffer_wire_encode(&env.base, COFFER_WIRE_MAX_MSG, &out, len, NULL), 0);
	free(body);
	return (out);
}

static void
test_round_trip(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = pack_envelope(&len);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, NULL), 0);
	coffer_err err = { 0 };
	Coffer__V1__Envelope *env = (Coffer__V1__Envelope *)coffer_wire_decode(
	    &coffer__v1__envelope__descriptor, &arena, buf, len, COFFER_WIRE_MAX_MSG, &err);
	assert_non_null(env);
	assert_int_equal(coffer_wire_check_envelope(env, &err), 0);
	assert_string_equal(env->agent_id, "billing-db-1");
	assert_int_equal(env->seq, 42);
	/* The body decodes in its own pass, into the same (reset) arena: copy it
	 * out first, as the coordinator does before verifying. */
	size_t body_len = env->body.len;
	uint8_t *body = malloc(body_len);
	memcpy(body, env->body.data, body_len);
	Coffer__V1__Request *req = (Coffer__V1__Request *)coffer_wire_decode(
	    &coffer__v1__request__descriptor, &arena, body, body_len, COFFER_WIRE_MAX_MSG, &err);
	assert_non_null(req);
	assert_int_equal(req->kind_case, COFFER__V1__REQUEST__KIND_EVENTS);
	assert_int_equal(req->events->n_events, 1);
	Coffer__V1__Event *ev = req->events->events[0];
	assert_string_equal(ev->service, "billing");
	assert_int_equal(ev->kind_case, COFFER__V1__EVENT__KIND_BACKUP_COMPLETED);
	assert_int_equal(ev->backup_completed->plain_bytes, 123456789);
	free(body);
	free(buf);
	coffer_wire_arena_fini(&arena);
}

/* Every proper prefix is either undecodable or fails the shape check: the
 * signature is the last field, so no prefix carries a whole one. */
static void
test_truncated_refused(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = pack_envelope(&len);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, NULL), 0);
	for (size_t cut = 0; cut < len; cut++) {
		coffer_err err = { 0 };
		uint8_t *copy = malloc(cut + 1);
		memcpy(copy, buf, cut);
		Coffer__V1__Envelope *env =
		    (Coffer__V1__Envelope *)coffer_wire_decode(&coffer__v1__envelope__descriptor,
		        &arena, copy, cut, COFFER_WIRE_MAX_MSG, &err);
		if (env != NULL) {
			assert_true(coffer_wire_check_envelope(env, &err) < 0);
		} else {
			assert_int_equal(err.code, COFFER_EPROTO);
			assert_non_null(strstr(err.msg, "malformed Envelope"));
		}
		free(copy);
	}
	free(buf);
	coffer_wire_arena_fini(&arena);
}

static void
test_oversized_refused(void **state)
{
	(void)state;
	size_t len;
	uint8_t *buf = pack_envelope(&len);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, 64, NULL), 0);
	coffer_err err = { 0 };
	assert_null(
	    coffer_wire_decode(&coffer__v1__envelope__descriptor, &arena, buf, len, 64, &err));
	assert_int_equal(err.code, COFFER_ETOOBIG);
	assert_non_null(strstr(err.msg, "exceeds the 64 byte limit"));

	/* Encoding refuses too, so nothing oversized is ever sent. */
	Coffer__V1__Reply reply = COFFER__V1__REPLY__INIT;
	char big[200];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	reply.error = big;
	uint8_t *out = NULL;
	size_t out_len;
	assert_int_equal(
	    coffer_wire_encode(&reply.base, 100, &out, &out_len, &err), COFFER_ETOOBIG);
	assert_null(out);
	free(buf);
	coffer_wire_arena_fini(&arena);
}

/* 2-byte empty submessages cost ~100 bytes each once decoded: the arena cap
 * stops the amplification cleanly instead of letting memory grow. */
static void
test_amplification_refused(void **state)
{
	(void)state;
	size_t n = 200000;
	uint8_t *buf = malloc(n * 2);
	for (size_t i = 0; i < n; i++) {
		buf[2 * i] = (1 << 3) | 2; /* field 1 (events), length-delimited */
		buf[2 * i + 1] = 0;
	}
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, NULL), 0);
	coffer_err err = { 0 };
	assert_null(coffer_wire_decode(
	    &coffer__v1__event_batch__descriptor, &arena, buf, n * 2, COFFER_WIRE_MAX_MSG, &err));
	assert_int_equal(err.code, COFFER_EPROTO);
	free(buf);
	coffer_wire_arena_fini(&arena);
}

static void
test_garbage_refused(void **state)
{
	(void)state;
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, 1024, NULL), 0);
	uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	coffer_err err = { 0 };
	assert_null(coffer_wire_decode(
	    &coffer__v1__envelope__descriptor, &arena, junk, sizeof(junk), 1024, &err));
	/* Wrong version and a short signature are shape errors. */
	Coffer__V1__Envelope env = COFFER__V1__ENVELOPE__INIT;
	env.version = 2;
	assert_int_equal(coffer_wire_check_envelope(&env, &err), COFFER_EVERSION);
	env.version = 1;
	env.agent_id = "a";
	env.seq = 1;
	uint8_t b = 1;
	env.body.data = &b;
	env.body.len = 1;
	env.signature.data = &b;
	env.signature.len = 1;
	assert_int_equal(coffer_wire_check_envelope(&env, &err), COFFER_EPROTO);
	assert_non_null(strstr(err.msg, "expected 64"));
	coffer_wire_arena_fini(&arena);
}

static void
test_signed_bytes_are_domain_separated(void **state)
{
	(void)state;
	uint8_t body[] = { 1, 2, 3 };
	size_t a_len, b_len, c_len;
	uint8_t *a = coffer_wire_envelope_tbs("agent", 1, 5, body, 3, &a_len);
	uint8_t *b = coffer_wire_envelope_tbs("agent", 2, 5, body, 3, &b_len);
	uint8_t nonce[16] = { 0 };
	uint8_t *c = coffer_wire_admin_tbs("agent", nonce, 16, 5, body, 3, &c_len);
	assert_int_equal(a_len, b_len);
	assert_memory_not_equal(a, b, a_len);
	assert_memory_equal(a, "coffer-envelope-v1\0agent\0", 25);
	assert_memory_equal(c, "coffer-admin-v1\0agent\0", 22);
	free(a);
	free(b);
	free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_truncated_refused),
		cmocka_unit_test(test_oversized_refused),
		cmocka_unit_test(test_amplification_refused),
		cmocka_unit_test(test_garbage_refused),
		cmocka_unit_test(test_signed_bytes_are_domain_separated),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
