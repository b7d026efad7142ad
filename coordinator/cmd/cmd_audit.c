/*
 * Audit commands of coffer-coordinator:
 *
 *   audit-verify -c FILE [--output json]
 *	walks the audit chain in the catalog with the key named by
 *	[coordinator] audit_key; prints the verified head (chain_seq and mac,
 *	what the DR export records) or names the first broken or missing row
 *	and exits 1.
 *   audit-keygen --out FILE
 *	creates a new audit key file (mode 0600, never overwriting one).
 *
 *   attest-keygen --out FILE
 *	creates the Ed25519 key that signs attestations ([dr] attestation_key)
 *	and prints its public key, for restore hosts' [keys]
 *	coordinator_public_key.
 *
 * None prints a private key.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "common/base/hex.h"
#include "common/crypto/sign.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/dr/auditexport.h"
#include "coordinator/policy/coord_config.h"

static void
print_result(const coord_audit_result *res, bool json)
{
	char mac[2 * COORD_AUDIT_MAC_LEN + 1];
	coffer_hex_encode(res->head_mac, COORD_AUDIT_MAC_LEN, mac);
	if (!json) {
		if (res->intact) {
			printf("audit chain intact: %lld rows, head chain_seq %lld mac %s\n",
			    (long long)res->rows, (long long)res->head_seq, mac);
			printf("agents checked against the chain: %lld\n", (long long)res->agents);
			if (res->mark_seq > 0) {
				printf("local high-water mark: chain_seq %lld is in the chain\n",
				    (long long)res->mark_seq);
			} else {
				printf("local high-water mark: none (%s)\n",
				    coord_audit_mark_path() != NULL ? coord_audit_mark_path()
				                                    : "-");
			}
		} else if (res->bad_seq < 0) {
			printf("audit check failed: %s\n", res->problem);
		} else {
			printf("audit chain broken at chain_seq %lld: %s\n",
			    (long long)res->bad_seq, res->problem);
		}
		return;
	}
	cJSON *doc = cJSON_CreateObject();
	if (doc == NULL) {
		return;
	}
	cJSON_AddBoolToObject(doc, "intact", res->intact);
	cJSON_AddNumberToObject(doc, "rows", (double)res->rows);
	cJSON_AddNumberToObject(doc, "last_good", (double)res->last_good);
	cJSON_AddNumberToObject(doc, "head_seq", (double)res->head_seq);
	cJSON_AddNumberToObject(doc, "mark_seq", (double)res->mark_seq);
	cJSON_AddNumberToObject(doc, "agents", (double)res->agents);
	if (res->intact) {
		cJSON_AddStringToObject(doc, "head_mac", mac);
	} else {
		cJSON_AddNumberToObject(doc, "bad_seq", (double)res->bad_seq);
		cJSON_AddStringToObject(doc, "problem", res->problem);
	}
	char *text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	if (text != NULL) {
		printf("%s\n", text);
		cJSON_free(text);
	}
}

int
coord_cmd_audit_verify(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator audit-verify";
	const char *config = NULL;
	const char *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "output", 0, &output, NULL },
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
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not %s", output));
	}
	bool json = output != NULL && strcmp(output, "json") == 0;
	coffer_err err;
	coffer_err_clear(&err);
	coord_config *cfg = NULL;
	if ((rv = coord_config_load(config, &cfg, &err)) != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	coord_audit_key key;
	if ((rv = coord_audit_key_load(cfg->audit_key, &key, &err)) != 0) {
		coord_config_free(cfg);
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	/* The daemon's mark, read-only: a chain cut below it is named here too
	 * (when this runs where the coordinator's state_dir is). */
	if ((rv = coord_audit_mark_setup(cfg->state_dir, false, &err)) != 0) {
		coord_config_free(cfg);
		coord_audit_key_clear(&key);
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	coord_catalog *cat = coord_catalog_open(cfg->catalog, &err);
	if (cat == NULL) {
		coord_config_free(cfg);
		coord_audit_key_clear(&key);
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(err.code));
	}
	coord_audit_result res = { 0 };
	rv = coord_catalog_check(cat, &err);
	coord_audit_head head;
	bool exported = false;
	if (rv == 0) {
		rv = coord_audit_verify_all(cat, &key, cfg, &res, &head, &exported, &err);
	}
	coord_config_free(cfg);
	coord_audit_key_clear(&key);
	coord_catalog_close(cat);
	if (rv == 0 && exported && !json && head.resumed_by > 0) {
		printf(
		    "exported head in the DR repository: chain_seq %lld (%s) no longer holds; an "
		    "operator resumed the export past it (audit row %lld)\n",
		    (long long)head.chain_seq, head.key, (long long)head.resumed_by);
	} else if (rv == 0 && exported && !json) {
		printf("exported head in the DR repository: chain_seq %lld (%s) is in the chain\n",
		    (long long)head.chain_seq, head.key);
	}
	if ((rv == COFFER_ECORRUPT || rv == COFFER_EAUTH) && !res.intact &&
	    res.problem[0] != '\0') {
		/* The verdict goes to stdout for scripts, the one-line error to
		 * stderr for people; both name the row. */
		print_result(&res, json);
		coffer_err_print(prog, &err);
		return (1);
	}
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	print_result(&res, json);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cmd_audit_keygen(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator audit-keygen";
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
	coffer_err err;
	coffer_err_clear(&err);
	coord_audit_key key;
	rv = coord_audit_key_generate(out, &key, &err);
	coord_audit_key_clear(&key);
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	printf("wrote a new audit key to %s\n", out);
	return (fflush(stdout) == 0 ? 0 : 1);
}

/* attest-keygen --out FILE: the Ed25519 key that signs attestations ([dr]
 * attestation_key); prints its public key, which restore hosts pin as
 * [keys] coordinator_public_key. */
int
coord_cmd_attest_keygen(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator attest-keygen";
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
	coffer_err err;
	coffer_err_clear(&err);
	char pub[COFFER_SIGN_PUBKEY_HEX];
	rv = coffer_sign_keygen(out, pub, &err);
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	printf("%s\n", pub);
	return (fflush(stdout) == 0 ? 0 : 1);
}
