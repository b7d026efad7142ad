/*
 * coffer-agent keygen --out FILE [--id ID]: adds a fresh key-encryption key
 * to a key ring, creating the ring (mode 0600) if it does not exist. Prints
 * the new key's id on stdout so scripts can record it. The key itself is
 * never printed.
 */
#include <stdio.h>

#include "agent/cmd/commands.h"
#include "common/base/error.h"
#include "common/crypto/keyring.h"

int
agent_cmd_keygen(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *out = NULL;
	const char *id = NULL;
	const coffer_opt opts[] = {
		{ "out", 'o', &out, NULL },
		{ "id", 0, &id, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (out == NULL) {
		return (coffer_cli_usage_error(cmd, "--out FILE is required"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	char made[COFFER_KEYRING_ID_MAX + 1];
	rv = coffer_keyring_generate(out, id, made, sizeof(made), &err);
	if (rv != 0) {
		coffer_err_print("coffer-agent keygen", &err);
		return (coffer_err_exit_status(rv));
	}
	printf("%s\n", made);
	return (fflush(stdout) == 0 ? 0 : 1);
}
