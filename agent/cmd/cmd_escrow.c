/*
 * Key escrow commands:
 *   coffer-agent escrow-keygen --out FILE
 *       the platform's escrow key pair: FILE (private, 0600, kept offline)
 *       and FILE.pub (64 hex digits, what agents name in
 *       [keys] escrow_public_key); prints the public key's fingerprint.
 *   coffer-agent keyring escrow -c FILE
 *       every key of the ring sealed to the escrow public key and written to
 *       the primary repository (the coordinator copies them to DR).
 *   coffer-agent keyring recover -c FILE --escrow-key FILE [--repo dr|primary]
 *       a lost ring written back at [agent] key_ring from escrow (DR by
 *       default).
 */
#include <stdio.h>
#include <string.h>

#include "agent/backup/escrow.h"
#include "agent/cmd/commands.h"
#include "agent/context/context.h"
#include "agent/restore/recover.h"
#include "common/base/durable.h"
#include "common/crypto/escrow.h"

int
agent_cmd_escrow_keygen(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *out = NULL;
	const coffer_opt opts[] = {
		{ "out", 'o', &out, NULL },
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
	coffer_err err = { 0 };
	char pubpath[4096];
	if (snprintf(pubpath, sizeof(pubpath), "%s.pub", out) >= (int)sizeof(pubpath)) {
		return (coffer_cli_usage_error(cmd, "--out is too long"));
	}
	char hex[COFFER_ESCROW_PUB_HEX];
	rv = coffer_escrow_keygen(out, hex, &err);
	coffer_escrow_pub *pub = NULL;
	if (rv == 0) {
		char line[COFFER_ESCROW_PUB_HEX + 1];
		snprintf(line, sizeof(line), "%s\n", hex);
		coffer_durable_opts o = { .mode = 0644, .no_replace = true };
		rv = coffer_durable_replace(pubpath, line, strlen(line), &o, &err);
		if (rv == COFFER_EEXIST) {
			coffer_err_hint(
			    &err, "remove the stale %s and %s, then run again", pubpath, out);
		}
	}
	if (rv == 0) {
		rv = coffer_escrow_pub_parse(hex, strlen(hex), &pub, &err);
	}
	if (rv != 0) {
		coffer_err_print("coffer-agent escrow-keygen", &err);
		return (coffer_err_exit_status(rv));
	}
	char fp[COFFER_ESCROW_FINGERPRINT_HEX];
	coffer_escrow_pub_fingerprint(pub, fp);
	coffer_escrow_pub_free(pub);
	printf("escrow key %s: private %s (keep it offline), public %s\n", fp, out, pubpath);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
agent_cmd_keyring_escrow(const coffer_cmd *cmd, int argc, char **argv)
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
	agent_ctx *ctx = NULL;
	coffer_escrow_pub *pub = NULL;
	size_t written = 0;
	rv = agent_ctx_open(config, NULL, AGENT_NEED_KEYRING | AGENT_NEED_REPO_WRITE, &ctx, &err);
	if (rv == 0 && ctx->cfg->escrow_public_key == NULL) {
		rv = coffer_err_set(&err, COFFER_EINVAL, "%s: no [keys] escrow_public_key", config);
		coffer_err_hint(&err,
		    "set it to the .pub file of `coffer-agent escrow-keygen` (the platform "
		    "team has it)");
	}
	if (rv == 0) {
		rv = coffer_escrow_pub_load(ctx->cfg->escrow_public_key, &pub, &err);
	}
	if (rv == 0) {
		rv = agent_escrow_ring(ctx, pub, &written, &err);
	}
	if (rv == 0) {
		char fp[COFFER_ESCROW_FINGERPRINT_HEX];
		coffer_escrow_pub_fingerprint(pub, fp);
		printf("%zu of %zu keys of service %s escrowed now to escrow key %s; the rest "
		       "were already\n",
		    written, coffer_keyring_count(ctx->ring), ctx->cfg->service, fp);
	}
	coffer_escrow_pub_free(pub);
	agent_ctx_close(ctx);
	if (rv != 0) {
		coffer_err_print("coffer-agent keyring escrow", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
agent_cmd_keyring_recover(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *escrow_key = NULL, *repo = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "escrow-key", 0, &escrow_key, NULL },
		{ "repo", 0, &repo, NULL },
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
	if (config == NULL || escrow_key == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE and --escrow-key FILE are required"));
	}
	if (repo != NULL && strcmp(repo, "dr") != 0 && strcmp(repo, "primary") != 0) {
		return (coffer_cli_usage_error(cmd, "--repo must be dr or primary, not %s", repo));
	}
	coffer_err err = { 0 };
	coffer_escrow_key *key = NULL;
	agent_ctx *ctx = NULL;
	agent_recover_result res;
	rv = coffer_escrow_key_load(escrow_key, &key, &err);
	if (rv == 0) {
		rv =
		    agent_ctx_open(config, repo != NULL ? repo : "dr", AGENT_NEED_REPO, &ctx, &err);
	}
	if (rv == 0) {
		rv = agent_recover_ring(ctx, key, &res, &err);
	}
	if (rv == 0) {
		printf("key ring %s written from escrow in repository %s: %zu keys, newest %s",
		    ctx->cfg->key_ring, ctx->repo_name, res.keys, res.newest);
		if (res.other_key > 0) {
			printf(" (%zu sealed to another escrow key skipped)", res.other_key);
		}
		printf("\n");
	}
	agent_ctx_close(ctx);
	coffer_escrow_key_free(key);
	if (rv != 0) {
		coffer_err_print("coffer-agent keyring recover", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
