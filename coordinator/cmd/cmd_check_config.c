/*
 * coffer-coordinator check-config -c FILE [--output json]: loads the
 * configuration exactly as `run` does -- schema, types, and every service's
 * policy rules (coordinator/policy/coord_config.h) -- and touches nothing else: no
 * catalog, no network, no key files. So it is safe in CI and in a deploy
 * pipeline before the daemon is restarted on a new file.
 *
 * Prints "ok: N services" (JSON: each service with its policy version), or
 * the first problem as one line naming file:line, the section, the key and
 * the rule, with the fix; exits 2 on any problem, as usage errors do, so a
 * script can tell "the file is wrong" from a crash.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/policy/coord_config.h"

#define PROG "coffer-coordinator check-config"

static int
print_json(const coord_config *cfg)
{
	cJSON *doc = cJSON_CreateObject();
	cJSON *list = cJSON_CreateArray();
	if (doc == NULL || list == NULL) {
		cJSON_Delete(doc);
		cJSON_Delete(list);
		fprintf(stderr, "%s: out of memory\n", PROG);
		return (1);
	}
	cJSON_AddBoolToObject(doc, "ok", 1);
	cJSON_AddItemToObject(doc, "services", list);
	for (size_t i = 0; i < cfg->n_services; i++) {
		const coord_service_policy *p = &cfg->services[i];
		cJSON *s = cJSON_CreateObject();
		if (s == NULL) {
			cJSON_Delete(doc);
			fprintf(stderr, "%s: out of memory\n", PROG);
			return (1);
		}
		cJSON_AddStringToObject(s, "name", p->name);
		cJSON_AddStringToObject(s, "policy_version", p->version);
		cJSON_AddItemToArray(list, s);
	}
	char *text = cJSON_PrintUnformatted(doc);
	cJSON_Delete(doc);
	if (text == NULL) {
		fprintf(stderr, "%s: out of memory\n", PROG);
		return (1);
	}
	printf("%s\n", text);
	cJSON_free(text);
	return (0);
}

int
coord_cmd_check_config(const coffer_cmd *cmd, int argc, char **argv)
{
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
	if (coord_config_load(config, &cfg, &err) != 0) {
		coffer_err_print(PROG, &err);
		return (2);
	}
	if (!coffer_config_has_section(cfg->ini, "repository.dr")) {
		/* Not an error (a warning on stderr, exit 0): without DR the audit
		 * chain's only anchor outside the catalog is the local mark. */
		fprintf(stderr,
		    "%s: warning: no [repository.dr]: the audit chain head is exported nowhere, so "
		    "its only anchor outside the catalog is the high-water mark in %s/audit-mark "
		    "(a cut tail is caught while that directory survives); configure a DR "
		    "repository (docs/CONFIGURATION.md, [repository.dr])\n",
		    PROG, cfg->state_dir);
	}
	if (json) {
		rv = print_json(cfg);
	} else {
		printf("ok: %zu service%s\n", cfg->n_services, cfg->n_services == 1 ? "" : "s");
	}
	coord_config_free(cfg);
	if (rv != 0) {
		return (1);
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
