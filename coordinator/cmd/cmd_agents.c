/*
 * Local enrollment commands of coffer-coordinator, run on the coordinator's
 * host with its config (the catalog and audit key it names):
 *
 *   agents enroll -c FILE --service S --agent A --pubkey FILE
 *   agents enroll -c FILE --drill-runner --service S1 [--service S2 ...]
 *                 --agent A --pubkey FILE
 *   agents list -c FILE [--output json]
 *   agents revoke -c FILE NAME
 *
 * They stand in for the operator CLI's admin endpoint until it exists, and
 * audit as actor "local-admin": whoever can read the coordinator's config
 * and audit key is the coordinator's administrator anyway.
 *
 * enroll refuses a service that is not a [service.*] section of the config
 * (policy is what makes a service exist), and a key file that does not
 * parse (PEM or 64 hex digits, as `coffer-agent init` prints).
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "common/crypto/sign.h"
#include "coordinator/catalog/agents.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/policy/s3policy.h"

#define ACTOR "local-admin"

static const char *str_or(const cJSON *o, const char *k, const char *def);

/* Loads config, audit key and an up-to-date catalog; prints and returns an
 * exit status on failure. */
static int
open_all(const char *prog, const char *config, coord_config **cfg, coord_audit_key *key,
    coord_catalog **cat)
{
	coffer_err err;
	coffer_err_clear(&err);
	int rv = coord_config_load(config, cfg, &err);
	if (rv == 0) {
		rv = coord_audit_key_load((*cfg)->audit_key, key, &err);
	}
	if (rv == 0) {
		*cat = coord_catalog_open((*cfg)->catalog, &err);
		rv = *cat == NULL ? err.code : coord_catalog_check(*cat, &err);
	}
	if (rv != 0) {
		coord_catalog_close(*cat);
		*cat = NULL;
		coord_audit_key_clear(key);
		coord_config_free(*cfg);
		*cfg = NULL;
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	return (0);
}

static void
close_all(coord_config *cfg, coord_audit_key *key, coord_catalog *cat)
{
	coord_catalog_close(cat);
	coord_audit_key_clear(key);
	coord_config_free(cfg);
}

/* --drill-runner: every service must be a [service.*] of the config. */
static int
enroll_runner(coord_config *cfg, const coord_audit_key *key, coord_catalog *cat, char *list,
    const char *agent, const coffer_sign_pubkey *pub, coffer_err *err)
{
	const char *services[64], *owners[64];
	size_t n = 0;
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL;
	     t = strtok_r(NULL, ",", &save)) {
		char section[96];
		snprintf(section, sizeof(section), "service.%s", t);
		if (n == 64) {
			coffer_err_set(
			    err, COFFER_EINVAL, "too many services for one drill runner");
			return (coffer_err_hint(err, "enroll at most 64 at a time"));
		}
		if (strlen(t) > 63 || !coffer_config_has_section(cfg->ini, section)) {
			coffer_err_set(err, COFFER_EINVAL, "service %s is not defined in %s", t,
			    coffer_config_path(cfg->ini));
			return (coffer_err_hint(err,
			    "add a [service.%s] section with its policy, or "
			    "check the name",
			    t));
		}
		owners[n] = coffer_config_str(cfg->ini, section, "owner");
		services[n++] = t;
	}
	bool already = false;
	int rv = coord_agents_enroll_runner(
	    cat, key, ACTOR, services, owners, n, agent, pub, &already, err);
	if (rv == 0) {
		char fp[COFFER_SIGN_FINGERPRINT_HEX];
		coffer_sign_fingerprint(pub, fp);
		printf("%s drill runner %s (key %s) for:",
		    already ? "already enrolled:" : "enrolled", agent, fp);
		for (size_t i = 0; i < n; i++) {
			printf(" %s", services[i]);
		}
		printf("\n");
	}
	return (rv);
}

int
coord_cmd_agents_enroll(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator agents enroll";
	const char *config = NULL, *service = NULL, *agent = NULL, *pubkey = NULL;
	bool drill_runner = false;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "service", 0, &service, NULL },
		{ "agent", 0, &agent, NULL },
		{ "pubkey", 0, &pubkey, NULL },
		{ "drill-runner", 0, NULL, &drill_runner },
		{ NULL, 0, NULL, NULL },
	};
	char services[4096];
	int nservices = coffer_opts_collect(argc, argv, "service", services, sizeof(services));
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (config == NULL || service == NULL || agent == NULL || pubkey == NULL) {
		return (coffer_cli_usage_error(
		    cmd, "-c FILE, --service, --agent and --pubkey are required"));
	}
	if (nservices < 0) {
		return (coffer_cli_usage_error(cmd, "--service takes one service name per option"));
	}
	if (nservices > 1 && !drill_runner) {
		return (coffer_cli_usage_error(cmd,
		    "a service agent belongs to one service; "
		    "several --service only with --drill-runner"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	coffer_sign_pubkey *pub = NULL;
	if ((rv = coffer_sign_pubkey_load(pubkey, &pub, &err)) != 0) {
		coffer_err_hint(&err,
		    "give the public key `coffer-agent init` printed (64 hex digits) "
		    "or a PEM public key file");
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	coord_config *cfg = NULL;
	coord_audit_key key;
	coord_catalog *cat = NULL;
	if ((rv = open_all(prog, config, &cfg, &key, &cat)) != 0) {
		coffer_sign_pubkey_free(pub);
		return (rv);
	}
	char section[96];
	snprintf(section, sizeof(section), "service.%s", service);
	if (drill_runner) {
		rv = enroll_runner(cfg, &key, cat, services, agent, pub, &err);
	} else if (strlen(service) > 63 || !coffer_config_has_section(cfg->ini, section)) {
		coffer_err_set(&err, COFFER_EINVAL, "service %s is not defined in %s", service,
		    coffer_config_path(cfg->ini));
		coffer_err_hint(
		    &err, "add a [service.%s] section with its policy, or check the name", service);
		rv = COFFER_EINVAL;
	} else {
		bool already = false;
		const char *owner = coffer_config_str(cfg->ini, section, "owner");
		rv = coord_agents_enroll(
		    cat, &key, ACTOR, service, owner, agent, pub, &already, &err);
		if (rv == 0) {
			char fp[COFFER_SIGN_FINGERPRINT_HEX];
			coffer_sign_fingerprint(pub, fp);
			printf("%s agent %s for service %s (key %s)\n",
			    already ? "already enrolled:" : "enrolled", agent, service, fp);
		}
	}
	close_all(cfg, &key, cat);
	coffer_sign_pubkey_free(pub);
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cmd_agents_revoke(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator agents revoke";
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
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	if (npos != 1) {
		return (coffer_cli_usage_error(cmd, "name exactly one agent to revoke"));
	}
	coord_config *cfg = NULL;
	coord_audit_key key;
	coord_catalog *cat = NULL;
	if ((rv = open_all(prog, config, &cfg, &key, &cat)) != 0) {
		return (rv);
	}
	coffer_err err;
	coffer_err_clear(&err);
	bool already = false;
	rv = coord_agents_revoke(cat, &key, ACTOR, argv[0], &already, &err);
	char note[1024] = "";
	cJSON *list = NULL;
	if (rv == 0 && coord_agents_list(cat, &list, &err) == 0) {
		const cJSON *a;
		cJSON_ArrayForEach(a, list)
		{
			const char *name = str_or(a, "name", "");
			const char *service = str_or(a, "service", NULL);
			if (strcmp(name, argv[0]) == 0 && service != NULL) {
				coord_s3policy_revoke_note(cfg, service, note, sizeof(note));
			}
		}
	}
	cJSON_Delete(list);
	close_all(cfg, &key, cat);
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	printf("%s agent %s\n", already ? "already revoked:" : "revoked", argv[0]);
	if (note[0] != '\0') {
		printf("%s\n", note);
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}

static const char *
str_or(const cJSON *o, const char *k, const char *def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (cJSON_IsString(v) ? v->valuestring : def);
}

int
coord_cmd_agents_list(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char prog[] = "coffer-coordinator agents list";
	const char *config = NULL, *output = NULL;
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
	coord_config *cfg = NULL;
	coord_audit_key key;
	coord_catalog *cat = NULL;
	if ((rv = open_all(prog, config, &cfg, &key, &cat)) != 0) {
		return (rv);
	}
	coffer_err err;
	coffer_err_clear(&err);
	cJSON *list = NULL;
	rv = coord_agents_list(cat, &list, &err);
	close_all(cfg, &key, cat);
	if (rv != 0) {
		coffer_err_print(prog, &err);
		return (coffer_err_exit_status(rv));
	}
	if (output != NULL && strcmp(output, "json") == 0) {
		char *text = cJSON_PrintUnformatted(list);
		if (text == NULL) {
			cJSON_Delete(list);
			fprintf(stderr, "%s: out of memory\n", prog);
			return (1);
		}
		printf("%s\n", text);
		cJSON_free(text);
	} else {
		printf("%-24s %-20s %-10s %-33s %s\n", "AGENT", "SERVICE", "STATE", "KEY",
		    "LAST CONTACT");
		const cJSON *o;
		cJSON_ArrayForEach(o, list)
		{
			/* A drill runner has no service: show what it drills. */
			char drills[256] = "";
			const cJSON *d;
			cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(o, "drills"))
			{
				size_t n = strlen(drills);
				snprintf(drills + n, sizeof(drills) - n, "%s%s",
				    n == 0 ? "drills:" : ",",
				    cJSON_IsString(d) ? d->valuestring : "?");
			}
			printf("%-24s %-20s %-10s %-33s %s\n", str_or(o, "name", "?"),
			    drills[0] != '\0' ? drills : str_or(o, "service", "?"),
			    str_or(o, "revoked_at", NULL) != NULL ? "revoked" : "active",
			    str_or(o, "fingerprint", "?"), str_or(o, "last_contact_at", "never"));
		}
	}
	cJSON_Delete(list);
	return (fflush(stdout) == 0 ? 0 : 1);
}
