#include "common/wire/wire.h"

#include <stdlib.h>
#include <string.h>

static void *
arena_alloc(void *data, size_t size)
{
	coffer_wire_arena *arena = data;
	/* Keep every block aligned for any member type protobuf-c stores. */
	size_t aligned = (size + 15) & ~(size_t)15;
	if (aligned < size || aligned > arena->cap - arena->used) {
		return (NULL);
	}
	void *p = arena->base + arena->used;
	arena->used += aligned;
	return (p);
}

static void
arena_free(void *data, void *ptr)
{
	/* Everything goes at once when the arena is reset. */
	(void)data;
	(void)ptr;
}

int
coffer_wire_arena_init(coffer_wire_arena *arena, size_t max_msg, coffer_err *err)
{
	arena->cap = max_msg * COFFER_WIRE_ARENA_FACTOR + COFFER_WIRE_ARENA_SLACK;
	arena->used = 0;
	arena->base = malloc(arena->cap);
	if (arena->base == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM,
		    "cannot reserve %zu bytes for message decoding", arena->cap));
	}
	return (0);
}

void
coffer_wire_arena_reset(coffer_wire_arena *arena)
{
	arena->used = 0;
}

void
coffer_wire_arena_fini(coffer_wire_arena *arena)
{
	free(arena->base);
	arena->base = NULL;
	arena->cap = 0;
	arena->used = 0;
}

ProtobufCMessage *
coffer_wire_decode(const ProtobufCMessageDescriptor *desc, coffer_wire_arena *arena,
    const uint8_t *buf, size_t len, size_t max_len, coffer_err *err)
{
	if (len > max_len) {
		coffer_err_set(err, COFFER_ETOOBIG,
		    "%s message of %zu bytes exceeds the %zu byte limit", desc->short_name, len,
		    max_len);
		return (NULL);
	}
	coffer_wire_arena_reset(arena);
	ProtobufCAllocator alloc = { arena_alloc, arena_free, arena };
	ProtobufCMessage *msg = protobuf_c_message_unpack(desc, &alloc, len, buf);
	if (msg == NULL) {
		coffer_err_set(
		    err, COFFER_EPROTO, "malformed %s message (%zu bytes)", desc->short_name, len);
		return (NULL);
	}
	return (msg);
}

int
coffer_wire_encode(
    const ProtobufCMessage *msg, size_t max_len, uint8_t **out, size_t *out_len, coffer_err *err)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	if (n > max_len) {
		return (coffer_err_set(err, COFFER_ETOOBIG,
		    "%s message of %zu bytes exceeds the %zu byte limit",
		    msg->descriptor->short_name, n, max_len));
	}
	/* malloc(0) may return NULL; an empty message is legal. */
	uint8_t *buf = malloc(n > 0 ? n : 1);
	if (buf == NULL) {
		return (coffer_err_set(
		    err, COFFER_ENOMEM, "cannot encode %s message", msg->descriptor->short_name));
	}
	protobuf_c_message_pack(msg, buf);
	*out = buf;
	*out_len = n;
	return (0);
}

static uint8_t *
put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		*p++ = (uint8_t)(v >> (i * 8));
	}
	return (p);
}

/* domain || name || 0x00 || extra || be64(a) || be64(b) || body: the label and
 * the NUL after the name keep signatures of one kind from verifying as another. */
static uint8_t *
tbs_build(const char *domain, size_t domain_len, const char *name, const uint8_t *extra,
    size_t extra_len, uint64_t a, int has_a, int64_t b, const uint8_t *body, size_t body_len,
    size_t *out_len)
{
	size_t name_len = strlen(name);
	size_t n = domain_len + name_len + 1 + extra_len + (has_a ? 8 : 0) + 8 + body_len;
	uint8_t *buf = malloc(n);
	if (buf == NULL) {
		return (NULL);
	}
	uint8_t *p = buf;
	memcpy(p, domain, domain_len);
	p += domain_len;
	memcpy(p, name, name_len);
	p += name_len;
	*p++ = 0;
	if (extra_len > 0) {
		memcpy(p, extra, extra_len);
		p += extra_len;
	}
	if (has_a) {
		p = put_be64(p, a);
	}
	p = put_be64(p, (uint64_t)b);
	if (body_len > 0) {
		memcpy(p, body, body_len);
	}
	*out_len = n;
	return (buf);
}

uint8_t *
coffer_wire_envelope_tbs(const char *agent_id, uint64_t seq, int64_t sent_at_ms,
    const uint8_t *body, size_t body_len, size_t *out_len)
{
	static const char domain[] = "coffer-envelope-v1";
	return (tbs_build(domain, sizeof(domain), agent_id, NULL, 0, seq, 1, sent_at_ms, body,
	    body_len, out_len));
}

uint8_t *
coffer_wire_admin_tbs(const char *operator_name, const uint8_t *nonce, size_t nonce_len,
    int64_t sent_at_ms, const uint8_t *body, size_t body_len, size_t *out_len)
{
	static const char domain[] = "coffer-admin-v1";
	return (tbs_build(domain, sizeof(domain), operator_name, nonce, nonce_len, 0, 0, sent_at_ms,
	    body, body_len, out_len));
}

int
coffer_wire_check_envelope(const Coffer__V1__Envelope *env, coffer_err *err)
{
	if (env->version != 1) {
		return (coffer_err_set(err, COFFER_EVERSION,
		    "envelope version %u is not supported (this coordinator speaks 1)",
		    env->version));
	}
	size_t id_len = env->agent_id != NULL ? strlen(env->agent_id) : 0;
	if (id_len == 0 || id_len > 64) {
		return (
		    coffer_err_set(err, COFFER_EPROTO, "envelope agent id is empty or too long"));
	}
	if (env->seq == 0) {
		return (coffer_err_set(err, COFFER_EPROTO, "envelope seq must start at 1"));
	}
	if (env->body.len == 0) {
		return (coffer_err_set(err, COFFER_EPROTO, "envelope has no body"));
	}
	if (env->signature.len != 64) {
		return (coffer_err_set(err, COFFER_EPROTO,
		    "envelope signature is %zu bytes, expected 64", env->signature.len));
	}
	return (0);
}

const char *
coffer_wire_event_type(const Coffer__V1__Event *ev)
{
	switch (ev->kind_case) {
	case COFFER__V1__EVENT__KIND_HELLO:
		return ("agent.hello");
	case COFFER__V1__EVENT__KIND_HEARTBEAT:
		return ("agent.heartbeat");
	case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
		return ("backup.started");
	case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED:
		return ("backup.completed");
	case COFFER__V1__EVENT__KIND_BACKUP_FAILED:
		return ("backup.failed");
	case COFFER__V1__EVENT__KIND_WAL_ARCHIVED:
		return ("wal.archived");
	case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED:
		return ("restore.completed");
	case COFFER__V1__EVENT__KIND_DRILL_RESULT:
		return ("drill.result");
	case COFFER__V1__EVENT__KIND_COMMAND_DONE:
		return ("command.done");
	default:
		/* A newer agent's event kind this coordinator does not know:
		 * recorded and acked, applied to nothing. */
		return ("unknown");
	}
}
