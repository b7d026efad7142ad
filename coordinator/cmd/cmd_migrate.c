/*
 * coffer-coordinator migrate -c FILE [--output json]: brings the catalog
 * named by [coordinator] catalog up to this binary's schema version and
 * says what it did. Safe to run again (nothing to do) and concurrently with
 * another migrate (the advisory lock makes one wait for the other).
 *
 * With [coordinator] catalog_owner set it connects as the tables' owner,
 * migrates, and grants the runtime role (the user of [coordinator] catalog)
 * exactly what the daemon needs (coord_catalog_grant_runtime). Without it,
 * it migrates as the catalog role itself: a development setup, which the
 * daemon runs on only with development = true.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <libpq-fe.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/catalog/migrations.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/policy/coord_config.h"

#define PROG "coffer-coordinator migrate"

static int
print_json(const coord_migrate_result *res)
{
	size_t n;
	const coord_migration *all = coord_migrations_list(&n);
	cJSON *doc = cJSON_CreateObject();
	cJSON *applied = cJSON_CreateArray();
	if (doc == NULL || applied == NULL) {
		cJSON_Delete(doc);
		cJSON_Delete(applied);
		fprintf(stderr, "%s: out of memory\n", PROG);
		return (1);
	}
	cJSON_AddNumberToObject(doc, "from_version", res->from_version);
	cJSON_AddNumberToObject(doc, "to_version", res->to_version);
	cJSON_AddItemToObject(doc, "applied", applied);
	for (int v = res->to_version - res->applied + 1; v <= res->to_version; v++) {
		if (v < 1 || (size_t)v > n) {
			continue;
		}
		cJSON *m = cJSON_CreateObject();
		if (m != NULL) {
			cJSON_AddNumberToObject(m, "number", all[v - 1].number);
			cJSON_AddStringToObject(m, "name", all[v - 1].name);
			cJSON_AddItemToArray(applied, m);
		}
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

static void
print_text(const coord_migrate_result *res)
{
	size_t n;
	const coord_migration *all = coord_migrations_list(&n);
	if (res->applied == 0) {
		printf("catalog schema is at version %d; nothing to do\n", res->to_version);
		return;
	}
	for (int v = res->to_version - res->applied + 1; v <= res->to_version; v++) {
		if (v >= 1 && (size_t)v <= n) {
			printf("applied migration %d: %s\n", all[v - 1].number, all[v - 1].name);
		}
	}
	printf("catalog schema is at version %d (was %d)\n", res->to_version,
	    res->to_version - res->applied);
}

/* The runtime role: the user named in [coordinator] catalog. */
static int
runtime_role(const char *conninfo, char role[128], coffer_err *err)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	if (opts == NULL) {
		coffer_err_set(
		    err, COFFER_EINVAL, "[coordinator] catalog does not parse as a conninfo");
		return (coffer_err_hint(err, "see docs/CATALOG.md for the form"));
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "user") == 0 && o->val != NULL && strlen(o->val) < 128) {
			snprintf(role, 128, "%s", o->val);
		}
	}
	PQconninfoFree(opts);
	if (role[0] == '\0') {
		coffer_err_set(err, COFFER_EINVAL,
		    "[coordinator] catalog names no user, so migrate cannot tell which role to "
		    "grant the runtime privileges to");
		return (coffer_err_hint(err, "add user=ROLE to [coordinator] catalog"));
	}
	return (0);
}

int
coord_cmd_migrate(const coffer_cmd *cmd, int argc, char **argv)
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
	bool json = false;
	if (output != NULL) {
		if (strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
			return (coffer_cli_usage_error(
			    cmd, "--output must be text or json, not %s", output));
		}
		json = strcmp(output, "json") == 0;
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_config *cfg = NULL;
	if ((rv = coord_config_load(config, &cfg, &err)) != 0) {
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	char role[128] = "";
	if (cfg->catalog_owner != NULL && (rv = runtime_role(cfg->catalog, role, &err)) != 0) {
		coord_config_free(cfg);
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	coord_catalog *cat = coord_catalog_open(
	    cfg->catalog_owner != NULL ? cfg->catalog_owner : cfg->catalog, &err);
	coord_config_free(cfg);
	if (cat == NULL) {
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(err.code));
	}
	coord_migrate_result res;
	rv = coord_catalog_migrate(cat, &res, &err);
	if (rv == 0 && role[0] != '\0') {
		rv = coord_catalog_grant_runtime(cat, role, &err);
	}
	coord_catalog_close(cat);
	if (rv != 0) {
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	if (json) {
		if (print_json(&res) != 0) {
			return (1);
		}
	} else {
		print_text(&res);
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
