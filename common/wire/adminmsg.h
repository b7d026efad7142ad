/*
 * Admin messages: the operator side of the coordinator's admin protocol
 * (proto/coffer.proto AdminEnvelope / AdminRequest / AdminReply), shared by
 * the `coffer` CLI and the tests so both sign exactly what the coordinator
 * verifies.
 *
 * What it promises:
 * - coffer_adminmsg_build signs "coffer-admin-v1" bytes (common/wire/wire.h,
 *   coffer_wire_admin_tbs) with a fresh random 16-byte nonce unless the
 *   caller supplies one (tests that replay), so two requests never share a
 *   nonce by accident.
 * - coffer_adminmsg_reply_decode is bounded like every other decoder
 *   (COFFER_WIRE_MAX_MSG, an arena) and copies what it returns, so the
 *   result outlives the arena.
 *
 * Thread-safety: no shared state; keys may be shared (common/crypto/sign.h).
 */
#ifndef COFFER_COMMON_WIRE_ADMINMSG_H
#define COFFER_COMMON_WIRE_ADMINMSG_H

#include <stddef.h>
#include <stdint.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"

#define COFFER_ADMINMSG_NONCE_BYTES 16
#define COFFER_ADMINMSG_MAX_ARGS    16

typedef struct coffer_adminmsg_arg {
	const char *key;
	const char *value;
} coffer_adminmsg_arg;

/* Builds a signed, encoded AdminEnvelope for command with nargs args (at
 * most COFFER_ADMINMSG_MAX_ARGS). nonce may be NULL (a random one is drawn).
 * *out is malloc'd; the caller frees it. */
int coffer_adminmsg_build(const coffer_sign_key *key, const char *operator_name,
    const char *command, const coffer_adminmsg_arg *args, size_t nargs, int64_t sent_at_ms,
    const uint8_t *nonce, uint8_t **out, size_t *out_len, coffer_err *err);

typedef struct coffer_adminmsg_reply {
	int status;  /* Coffer__V1__Status value */
	char *error; /* never NULL after a successful decode ("" if none) */
	char *json;  /* never NULL after a successful decode ("" if none) */
} coffer_adminmsg_reply;

/* Decodes an AdminReply into *out (owned strings; release with _fini).
 * COFFER_EPROTO for bytes that are not an AdminReply. */
int coffer_adminmsg_reply_decode(
    const uint8_t *buf, size_t len, coffer_adminmsg_reply *out, coffer_err *err);

void coffer_adminmsg_reply_fini(coffer_adminmsg_reply *reply);

/* A short lowercase word for a status ("ok", "unauthorized", ...). */
const char *coffer_adminmsg_status_name(int status);

#endif
