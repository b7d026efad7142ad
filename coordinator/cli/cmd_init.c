/*
 * coffer init --out KEYFILE: a new Ed25519 operator key (mode 0600, never
 * overwriting a file). Prints the public key, which the coordinator's
 * administrator puts in the file named by [operator.NAME] public_key.
 */
#include <stdio.h>

#include "common/crypto/sign.h"
#include "coordinator/cli/client.h"

int
coord_cli_init(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *out = NULL;
	const coffer_opt opts[] = {
		{ "out", 0, &out, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int rv = 0;
	if (!coord_cli_flags(cmd, opts, argc, argv, &rv)) {
		return (rv);
	}
	if (out == NULL) {
		return (coffer_cli_usage_error(cmd, "--out KEYFILE is required"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	char pub[COFFER_SIGN_PUBKEY_HEX];
	if ((rv = coffer_sign_keygen(out, pub, &err)) != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	printf("%s\n", pub);
	fprintf(stderr,
	    "operator key written to %s; give the line above to the coordinator's "
	    "administrator for [operator.NAME] public_key\n",
	    out);
	return (fflush(stdout) == 0 ? 0 : 1);
}
