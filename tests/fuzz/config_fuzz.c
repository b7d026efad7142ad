/* Config: any bytes as agent.conf. Loading must end in success or one
 * error with a message, never a crash, a leak or a read past the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/context/agent_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (text == NULL) {
		return (0);
	}
	memcpy(text, data, size);
	text[size] = '\0';
	agent_config *cfg = NULL;
	coffer_err err = { 0 };
	if (agent_config_load_string(text, "fuzz.conf", &cfg, &err) == 0) {
		agent_config_free(cfg);
	} else if (err.msg[0] == '\0') {
		abort(); /* every refusal must say why */
	}
	free(text);
	return (0);
}
