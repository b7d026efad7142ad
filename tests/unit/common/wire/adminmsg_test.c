/* Admin messages: what coffer_adminmsg_build signs is exactly what the
 * coordinator verifies (and nothing else verifies), nonces are fresh, and
 * reply decoding refuses what is not an AdminReply. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/wire/adminmsg.h"
#include "common/wire/wire.h"

typedef struct fixture {
	coffer_sign_key *key;
	coffer_sign_pubkey *pub;
	coffer_wire_arena env_arena, body_arena;
} fixture;

static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	assert_int_equal(coffer_sign_key_generate(&f->key, NULL), 0);
	assert_int_equal(coffer_sign_key_public(f->key, &f->pub, NULL), 0);
	assert_int_equal(coffer_wire_arena_init(&f->env_arena, COFFER_WIRE_MAX_MSG, NULL), 0);
	assert_int_equal(coffer_wire_arena_init(&f->body_arena, COFFER_WIRE_MAX_MSG, NULL), 0);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	fixture *f = *state;
	coffer_sign_key_free(f->key);
	coffer_sign_pubkey_free(f->pub);
	coffer_wire_arena_fini(&f->env_arena);
	coffer_wire_arena_fini(&f->body_arena);
	free(f);
	return (0);
}

static Coffer__V1__AdminEnvelope *
decode_env(fixture *f, const uint8_t *buf, size_t len)
{
	return (
	    (Coffer__V1__AdminEnvelope *)coffer_wire_decode(&coffer__v1__admin_envelope__descriptor,
	        &f->env_arena, buf, len, COFFER_WIRE_MAX_MSG, NULL));
}

/* The coordinator's check, over the bytes as they arrived. */
static int
verify(const fixture *f, const Coffer__V1__AdminEnvelope *env, const char *op)
{
	size_t tbs_len;
	uint8_t *tbs = coffer_wire_admin_tbs(op, env->nonce.data, env->nonce.len, env->sent_at_ms,
	    env->body.data, env->body.len, &tbs_len);
	assert_non_null(tbs);
	int rv = coffer_sign_verify(f->pub, tbs, tbs_len, env->signature.data, NULL);
	free(tbs);
	return (rv);
}

static void
test_build_verifies(void **state)
{
	fixture *f = *state;
	const coffer_adminmsg_arg args[] = { { "service", "billing" }, { "limit", "5" } };
	uint8_t *buf;
	size_t len;
	assert_int_equal(coffer_adminmsg_build(f->key, "alice", "backups.list", args, 2,
	                     1795000000000, NULL, &buf, &len, NULL),
	    0);
	Coffer__V1__AdminEnvelope *env = decode_env(f, buf, len);
	assert_non_null(env);
	assert_int_equal(env->version, 1);
	assert_string_equal(env->operator_, "alice");
	assert_int_equal(env->nonce.len, COFFER_ADMINMSG_NONCE_BYTES);
	assert_int_equal(env->sent_at_ms, 1795000000000);
	assert_int_equal(verify(f, env, "alice"), 0);
	/* Another operator name, another time, a changed body: all refused. */
	assert_int_equal(verify(f, env, "alicf"), COFFER_EAUTH);
	env->sent_at_ms++;
	assert_int_equal(verify(f, env, "alice"), COFFER_EAUTH);
	env->sent_at_ms--;
	env->body.data[env->body.len - 1] ^= 1;
	assert_int_equal(verify(f, env, "alice"), COFFER_EAUTH);
	env->body.data[env->body.len - 1] ^= 1;

	Coffer__V1__AdminRequest *req =
	    (Coffer__V1__AdminRequest *)coffer_wire_decode(&coffer__v1__admin_request__descriptor,
	        &f->body_arena, env->body.data, env->body.len, COFFER_WIRE_MAX_MSG, NULL);
	assert_non_null(req);
	assert_string_equal(req->command, "backups.list");
	assert_int_equal(req->n_args, 2);
	assert_string_equal(req->args[0]->key, "service");
	assert_string_equal(req->args[0]->value, "billing");
	free(buf);
}

static void
test_nonces(void **state)
{
	fixture *f = *state;
	uint8_t *a, *b, *c;
	size_t alen, blen, clen;
	uint8_t fixed[COFFER_ADMINMSG_NONCE_BYTES];
	memset(fixed, 7, sizeof(fixed));
	assert_int_equal(
	    coffer_adminmsg_build(f->key, "op", "status", NULL, 0, 1, NULL, &a, &alen, NULL), 0);
	assert_int_equal(
	    coffer_adminmsg_build(f->key, "op", "status", NULL, 0, 1, NULL, &b, &blen, NULL), 0);
	assert_int_equal(
	    coffer_adminmsg_build(f->key, "op", "status", NULL, 0, 1, fixed, &c, &clen, NULL), 0);
	uint8_t na[COFFER_ADMINMSG_NONCE_BYTES];
	memcpy(na, decode_env(f, a, alen)->nonce.data, sizeof(na));
	assert_memory_not_equal(na, decode_env(f, b, blen)->nonce.data, sizeof(na));
	assert_memory_equal(fixed, decode_env(f, c, clen)->nonce.data, sizeof(fixed));
	free(a);
	free(b);
	free(c);
}

static void
test_too_many_args(void **state)
{
	fixture *f = *state;
	coffer_adminmsg_arg args[COFFER_ADMINMSG_MAX_ARGS + 1];
	for (size_t i = 0; i < COFFER_ADMINMSG_MAX_ARGS + 1; i++) {
		args[i] = (coffer_adminmsg_arg) { "k", "v" };
	}
	uint8_t *buf = (uint8_t *)"x";
	size_t len = 1;
	coffer_err err;
	assert_int_equal(coffer_adminmsg_build(f->key, "op", "status", args,
	                     COFFER_ADMINMSG_MAX_ARGS + 1, 1, NULL, &buf, &len, &err),
	    COFFER_EINVAL);
	assert_null(buf);
	assert_non_null(strstr(err.msg, "at most"));
}

static void
test_reply_decode(void **state)
{
	(void)state;
	Coffer__V1__AdminReply r = COFFER__V1__ADMIN_REPLY__INIT;
	r.status = COFFER__V1__STATUS__STATUS_UNAUTHORIZED;
	r.error = "operator bob has role auditor (hint: ask)";
	uint8_t *buf;
	size_t len;
	assert_int_equal(coffer_wire_encode(&r.base, COFFER_WIRE_MAX_MSG, &buf, &len, NULL), 0);
	coffer_adminmsg_reply out;
	assert_int_equal(coffer_adminmsg_reply_decode(buf, len, &out, NULL), 0);
	assert_int_equal(out.status, COFFER__V1__STATUS__STATUS_UNAUTHORIZED);
	assert_string_equal(out.error, r.error);
	assert_string_equal(out.json, "");
	assert_string_equal(coffer_adminmsg_status_name(out.status), "unauthorized");
	coffer_adminmsg_reply_fini(&out);
	free(buf);

	/* A string whose length runs past the end of the message. */
	static const uint8_t junk[] = { 0x12, 0x7f, 'x' };
	coffer_err err;
	assert_int_equal(
	    coffer_adminmsg_reply_decode(junk, sizeof(junk), &out, &err), COFFER_EPROTO);
	assert_null(out.error);
	assert_int_equal(coffer_adminmsg_reply_decode(junk, COFFER_WIRE_MAX_MSG + 1, &out, &err),
	    COFFER_ETOOBIG);
	assert_string_equal(coffer_adminmsg_status_name(12345), "unknown_status");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_build_verifies, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nonces, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many_args, setup, teardown),
		cmocka_unit_test(test_reply_decode),
	};
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
