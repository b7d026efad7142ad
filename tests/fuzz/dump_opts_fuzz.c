/* [postgres] dump_options: any bytes as the option text. Building pg_dump's
 * argv must end in success or one refusal with a message, never a crash, a
 * leak or a read past the input; an accepted argv keeps the fixed contract
 * (program, -Fc, -Z0, --snapshot, the two --no-* options first, --dbname
 * last) and passes every word of the text through unchanged, in order. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/pg/dump.h"

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
	char **argv = NULL;
	coffer_err err = { 0 };
	if (agent_dump_argv("pg_dump", "SNAP", "dbname=x", text, &argv, &err) == 0) {
		static const char *const fixed[] = { "pg_dump", "-Fc", "-Z0", "--snapshot=SNAP",
			"--no-owner", "--no-privileges" };
		size_t n = 0;
		while (argv[n] != NULL) {
			n++;
		}
		if (n < 7 || strcmp(argv[n - 1], "--dbname=dbname=x") != 0) {
			abort();
		}
		for (size_t i = 0; i < 6; i++) {
			if (strcmp(argv[i], fixed[i]) != 0) {
				abort();
			}
		}
		/* The extra words, in order, are the text's words (the text may hold
		 * a NUL, which ends it). */
		const char *p = text;
		for (size_t i = 6; i + 1 < n; i++) {
			const char *w = strstr(p, argv[i]);
			if (w == NULL || argv[i][0] == '\0') {
				abort();
			}
			p = w + strlen(argv[i]);
		}
		agent_dump_argv_free(argv);
	} else if (err.msg[0] == '\0' || argv != NULL) {
		abort(); /* every refusal must say why, and hand back nothing */
	}
	free(text);
	return (0);
}
