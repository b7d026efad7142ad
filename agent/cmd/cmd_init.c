/*
 * coffer-agent init -c FILE: creates the agent's Ed25519 signing key at
 * [agent] signing_key (mode 0600, never overwritten) and prints the public
 * key, which an operator enrolls with `coffer agents enroll`.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "agent/cmd/commands.h"
#include "agent/context/agent_config.h"
#include "common/crypto/sign.h"

int
agent_cmd_init(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
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
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	coffer_err err = { 0 };
	agent_config *cfg = NULL;
	rv = agent_config_load(config, &cfg, &err);
	char pub[COFFER_SIGN_PUBKEY_HEX];
	if (rv == 0) {
		rv = coffer_sign_keygen(cfg->signing_key, pub, &err);
	}
	if (rv == 0) {
		printf("%s\n", pub);
	}
	agent_config_free(cfg);
	if (rv != 0) {
		coffer_err_print("coffer-agent init", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
