/* The `coffer` CLI's decoder of the coordinator's answer: arbitrary bytes
 * as an AdminReply must decode or be refused, never crash or leak. */
#include <stddef.h>
#include <stdint.h>

#include "common/wire/adminmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	coffer_adminmsg_reply r;
	if (coffer_adminmsg_reply_decode(data, size, &r, NULL) == 0) {
		(void)coffer_adminmsg_status_name(r.status);
		coffer_adminmsg_reply_fini(&r);
	}
	return (0);
}
