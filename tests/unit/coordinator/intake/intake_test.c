/* Intake without a catalog: what an agent hears while the catalog is down
 * (STATUS_UNAVAILABLE, never an ack, the envelope's seq echoed when it
 * decodes), that untrusted bytes of any shape and size get an answer
 * without harm, and that the reply's error is always one bounded line.
 * Everything that needs the catalog is in tests/integration/intake.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/crypto/sign.h"
#include "common/wire/wire.h"
#include "coordinator/intake/intake.h"

static const coord_audit_key test_key = { { 1, 2, 3 } };

/* A signed envelope with seq and one backup.started event. */
static void
make_envelope(uint64_t seq, uint8_t **out, size_t *out_len)
{
	coffer_err err;
	Coffer__V1__BackupStarted bs = COFFER__V1__BACKUP_STARTED__INIT;
	bs.backup_id = "b-1";
	bs.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.seq = 7;
	ev.service = "billing";
	ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
	ev.backup_started = &bs;
	Coffer__V1__Event *evp[] = { &ev };
	Coffer__V1__EventBatch eb = COFFER__V1__EVENT_BATCH__INIT;
	eb.n_events = 1;
	eb.events = evp;
	Coffer__V1__Request rq = COFFER__V1__REQUEST__INIT;
	rq.kind_case = COFFER__V1__REQUEST__KIND_EVENTS;
	rq.events = &eb;
	uint8_t *body;
	size_t body_len;
	assert_int_equal(
	    coffer_wire_encode(&rq.base, COFFER_WIRE_MAX_MSG, &body, &body_len, &err), 0);
	coffer_sign_key *key;
	assert_int_equal(coffer_sign_key_generate(&key, &err), 0);
	size_t tbs_len;
	uint8_t *tbs = coffer_wire_envelope_tbs("billing-1", seq, 1000, body, body_len, &tbs_len);
	assert_non_null(tbs);
	uint8_t sig[COFFER_SIGN_BYTES];
	assert_int_equal(coffer_sign(key, tbs, tbs_len, sig, &err), 0);
	free(tbs);
	coffer_sign_key_free(key);
	Coffer__V1__Envelope env = COFFER__V1__ENVELOPE__INIT;
	env.version = 1;
	env.agent_id = "billing-1";
	env.seq = seq;
	env.sent_at_ms = 1000;
	env.body.data = body;
	env.body.len = body_len;
	env.signature.data = sig;
	env.signature.len = sizeof(sig);
	assert_int_equal(coffer_wire_encode(&env.base, COFFER_WIRE_MAX_MSG, out, out_len, &err), 0);
	free(body);
}

static Coffer__V1__Reply *
decode_reply(coffer_wire_arena *arena, const uint8_t *buf, size_t len)
{
	coffer_err err;
	Coffer__V1__Reply *r = (Coffer__V1__Reply *)coffer_wire_decode(
	    &coffer__v1__reply__descriptor, arena, buf, len, COFFER_WIRE_MAX_MSG, &err);
	assert_non_null(r);
	return (r);
}

static void
test_unavailable_echoes_seq_and_never_acks(void **state)
{
	(void)state;
	coffer_err err;
	coord_intake *in;
	assert_int_equal(coord_intake_new(NULL, &test_key, 0, &in, &err), 0);
	uint8_t *req;
	size_t len;
	make_envelope(1234567, &req, &len);
	uint8_t *rep;
	size_t rep_len;
	coord_intake_result res;
	assert_int_equal(
	    coord_intake_handle(in, req, len, "127.0.0.1:1", &rep, &rep_len, &res, &err), 0);
	assert_int_equal(res.status, COFFER__V1__STATUS__STATUS_UNAVAILABLE);
	assert_int_equal(res.applied, 0);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, &err), 0);
	Coffer__V1__Reply *r = decode_reply(&arena, rep, rep_len);
	assert_int_equal(r->status, COFFER__V1__STATUS__STATUS_UNAVAILABLE);
	assert_int_equal(r->envelope_seq, 1234567);
	assert_int_equal(r->acked_event_seq, 0);
	assert_non_null(strstr(r->error, "retry"));
	coffer_wire_arena_fini(&arena);
	free(rep);
	free(req);
	coord_intake_free(in);
}

static void
test_untrusted_bytes_always_answered(void **state)
{
	(void)state;
	coffer_err err;
	coord_intake *in;
	/* A small limit, so an oversized request is cheap to make. */
	assert_int_equal(coord_intake_new(NULL, &test_key, 4096, &in, &err), 0);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, &err), 0);
	uint8_t *buf = malloc(8192);
	assert_non_null(buf);
	srand(42);
	size_t sizes[] = { 0, 1, 2, 17, 200, 4096, 4097, 8192 };
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		for (int round = 0; round < 50; round++) {
			for (size_t i = 0; i < sizes[s]; i++) {
				buf[i] = (uint8_t)rand();
			}
			uint8_t *rep = NULL;
			size_t rep_len = 0;
			coord_intake_result res;
			assert_int_equal(coord_intake_handle(
			                     in, buf, sizes[s], NULL, &rep, &rep_len, &res, &err),
			    0);
			Coffer__V1__Reply *r = decode_reply(&arena, rep, rep_len);
			assert_int_equal(r->status, COFFER__V1__STATUS__STATUS_UNAVAILABLE);
			assert_int_equal(r->acked_event_seq, 0);
			free(rep);
		}
	}
	free(buf);
	coffer_wire_arena_fini(&arena);
	coord_intake_free(in);
}

static void
test_error_is_one_bounded_line(void **state)
{
	(void)state;
	coffer_err err;
	coord_intake *in;
	assert_int_equal(coord_intake_new(NULL, &test_key, 0, &in, &err), 0);
	char error[2000];
	memset(error, 'x', sizeof(error) - 1);
	error[sizeof(error) - 1] = '\0';
	memcpy(error, "first\nsecond\r\x1b[31m\xff\xfe", 20);
	uint8_t *rep;
	size_t rep_len;
	assert_int_equal(coord_intake_reply_status(in, (const uint8_t *)"junk", 4,
	                     COFFER__V1__STATUS__STATUS_REFUSED, error, &rep, &rep_len, &err),
	    0);
	coffer_wire_arena arena;
	assert_int_equal(coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, &err), 0);
	Coffer__V1__Reply *r = decode_reply(&arena, rep, rep_len);
	assert_int_equal(r->status, COFFER__V1__STATUS__STATUS_REFUSED);
	assert_int_equal(r->envelope_seq, 0);
	assert_true(strlen(r->error) <= 255);
	assert_true(strncmp(r->error, "first?second?", 13) == 0);
	for (const unsigned char *p = (const unsigned char *)r->error; *p != '\0'; p++) {
		assert_true(*p >= 0x20 && *p != 0x7f && *p < 0x80);
	}
	coffer_wire_arena_fini(&arena);
	free(rep);
	coord_intake_free(in);
}

static void
test_reason_words_are_distinct(void **state)
{
	(void)state;
	const char *seen[11];
	for (int s = 0; s <= 10; s++) {
		seen[s] = coord_intake_reason(s);
		assert_non_null(seen[s]);
		for (int t = 0; t < s; t++) {
			assert_string_not_equal(seen[s], seen[t]);
		}
	}
	assert_string_equal(
	    coord_intake_reason(COFFER__V1__STATUS__STATUS_BAD_SIGNATURE), "bad_signature");
	assert_string_equal(coord_intake_reason(COFFER__V1__STATUS__STATUS_NOT_OWNER), "not_owner");
	assert_string_equal(coord_intake_reason(12345), "internal");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unavailable_echoes_seq_and_never_acks),
		cmocka_unit_test(test_untrusted_bytes_always_answered),
		cmocka_unit_test(test_error_is_one_bounded_line),
		cmocka_unit_test(test_reason_words_are_distinct),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
