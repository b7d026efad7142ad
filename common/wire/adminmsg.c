/*
 * Admin messages; see common/wire/adminmsg.h.
 *
 * Design notes.
 * The body is packed first and signed as bytes, and the envelope carries
 * exactly those bytes: the coordinator verifies the signature over what
 * arrived, never over a re-encoding, so map ordering inside AdminRequest
 * cannot break a signature.
 */
#include "common/wire/adminmsg.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "common/wire/wire.h"

int
coffer_adminmsg_build(const coffer_sign_key *key, const char *operator_name, const char *command,
    const coffer_adminmsg_arg *args, size_t nargs, int64_t sent_at_ms, const uint8_t *nonce,
    uint8_t **out, size_t *out_len, coffer_err *err)
{
	*out = NULL;
	*out_len = 0;
	if (nargs > COFFER_ADMINMSG_MAX_ARGS) {
		return (coffer_err_set(err, COFFER_EINVAL, "%zu arguments for %s; at most %d",
		    nargs, command, COFFER_ADMINMSG_MAX_ARGS));
	}
	Coffer__V1__AdminRequest req;
	coffer__v1__admin_request__init(&req);
	Coffer__V1__AdminRequest__ArgsEntry entries[COFFER_ADMINMSG_MAX_ARGS];
	Coffer__V1__AdminRequest__ArgsEntry *entryp[COFFER_ADMINMSG_MAX_ARGS];
	for (size_t i = 0; i < nargs; i++) {
		coffer__v1__admin_request__args_entry__init(&entries[i]);
		entries[i].key = (char *)args[i].key;
		entries[i].value = (char *)args[i].value;
		entryp[i] = &entries[i];
	}
	req.command = (char *)command;
	req.n_args = nargs;
	req.args = nargs > 0 ? entryp : NULL;

	uint8_t *body = NULL, *tbs = NULL, nonce_buf[COFFER_ADMINMSG_NONCE_BYTES];
	size_t body_len = 0, tbs_len = 0;
	int rv = coffer_wire_encode(&req.base, COFFER_WIRE_MAX_MSG / 2, &body, &body_len, err);
	if (rv != 0) {
		return (coffer_err_wrap(err, "encoding the %s request", command));
	}
	if (nonce != NULL) {
		memcpy(nonce_buf, nonce, sizeof(nonce_buf));
	} else if (RAND_bytes(nonce_buf, sizeof(nonce_buf)) != 1) {
		rv = coffer_err_openssl(err, COFFER_EINTERNAL, "drawing a request nonce");
		goto done;
	}
	tbs = coffer_wire_admin_tbs(
	    operator_name, nonce_buf, sizeof(nonce_buf), sent_at_ms, body, body_len, &tbs_len);
	if (tbs == NULL) {
		rv =
		    coffer_err_set(err, COFFER_ENOMEM, "no memory to sign the %s request", command);
		goto done;
	}
	uint8_t sig[COFFER_SIGN_BYTES];
	if ((rv = coffer_sign(key, tbs, tbs_len, sig, err)) != 0) {
		goto done;
	}
	Coffer__V1__AdminEnvelope env;
	coffer__v1__admin_envelope__init(&env);
	env.version = 1;
	env.operator_ = (char *)operator_name;
	env.nonce.data = nonce_buf;
	env.nonce.len = sizeof(nonce_buf);
	env.sent_at_ms = sent_at_ms;
	env.body.data = body;
	env.body.len = body_len;
	env.signature.data = sig;
	env.signature.len = sizeof(sig);
	rv = coffer_wire_encode(&env.base, COFFER_WIRE_MAX_MSG, out, out_len, err);
done:
	free(tbs);
	free(body);
	return (rv);
}

int
coffer_adminmsg_reply_decode(
    const uint8_t *buf, size_t len, coffer_adminmsg_reply *out, coffer_err *err)
{
	memset(out, 0, sizeof(*out));
	if (len > COFFER_WIRE_MAX_MSG) {
		return (coffer_err_set(err, COFFER_ETOOBIG, "admin reply of %zu bytes is over %u",
		    len, COFFER_WIRE_MAX_MSG));
	}
	coffer_wire_arena arena;
	int rv = coffer_wire_arena_init(&arena, len, err);
	if (rv != 0) {
		return (rv);
	}
	Coffer__V1__AdminReply *r = (Coffer__V1__AdminReply *)coffer_wire_decode(
	    &coffer__v1__admin_reply__descriptor, &arena, buf, len, COFFER_WIRE_MAX_MSG, err);
	if (r == NULL) {
		coffer_wire_arena_fini(&arena);
		coffer_err_wrap(err, "the coordinator's admin reply");
		return (coffer_err_hint(err,
		    "check that [coffer] url names the coordinator's "
		    "admin_listen address, not its agent listener"));
	}
	out->status = (int)r->status;
	out->error = strdup(r->error != NULL ? r->error : "");
	out->json = strdup(r->json != NULL ? r->json : "");
	coffer_wire_arena_fini(&arena);
	if (out->error == NULL || out->json == NULL) {
		coffer_adminmsg_reply_fini(out);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the admin reply"));
	}
	return (0);
}

void
coffer_adminmsg_reply_fini(coffer_adminmsg_reply *reply)
{
	free(reply->error);
	free(reply->json);
	reply->error = NULL;
	reply->json = NULL;
}

const char *
coffer_adminmsg_status_name(int status)
{
	switch (status) {
	case COFFER__V1__STATUS__STATUS_OK:
		return ("ok");
	case COFFER__V1__STATUS__STATUS_MALFORMED:
		return ("malformed");
	case COFFER__V1__STATUS__STATUS_UNKNOWN_AGENT:
		return ("unknown_identity");
	case COFFER__V1__STATUS__STATUS_REVOKED:
		return ("revoked");
	case COFFER__V1__STATUS__STATUS_BAD_SIGNATURE:
		return ("bad_signature");
	case COFFER__V1__STATUS__STATUS_REPLAYED:
		return ("replayed");
	case COFFER__V1__STATUS__STATUS_NOT_OWNER:
		return ("not_owner");
	case COFFER__V1__STATUS__STATUS_UNAVAILABLE:
		return ("unavailable");
	case COFFER__V1__STATUS__STATUS_REFUSED:
		return ("refused");
	case COFFER__V1__STATUS__STATUS_INTERNAL:
		return ("internal");
	case COFFER__V1__STATUS__STATUS_UNAUTHORIZED:
		return ("unauthorized");
	default:
		return ("unknown_status");
	}
}
