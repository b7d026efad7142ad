/* Feeds arbitrary bytes to every top-level decoder a peer can reach: the
 * agent envelope and its body, the reply, and the admin messages. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static coffer_wire_arena arena;
	if (arena.base == NULL && coffer_wire_arena_init(&arena, COFFER_WIRE_MAX_MSG, NULL) != 0) {
		abort();
	}
	static const ProtobufCMessageDescriptor *const descs[] = {
		&coffer__v1__envelope__descriptor,
		&coffer__v1__request__descriptor,
		&coffer__v1__reply__descriptor,
		&coffer__v1__admin_envelope__descriptor,
		&coffer__v1__admin_request__descriptor,
	};
	for (size_t i = 0; i < sizeof(descs) / sizeof(descs[0]); i++) {
		ProtobufCMessage *msg =
		    coffer_wire_decode(descs[i], &arena, data, size, COFFER_WIRE_MAX_MSG, NULL);
		if (msg != NULL && descs[i] == &coffer__v1__envelope__descriptor) {
			(void)coffer_wire_check_envelope((Coffer__V1__Envelope *)msg, NULL);
		}
		if (msg != NULL) {
			/* Re-encoding what was decoded must not crash either. */
			size_t n = protobuf_c_message_get_packed_size(msg);
			uint8_t *buf = malloc(n + 1);
			protobuf_c_message_pack(msg, buf);
			free(buf);
		}
	}
	return (0);
}
