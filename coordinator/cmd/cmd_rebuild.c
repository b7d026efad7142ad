/*
 * coffer-coordinator rebuild-catalog -c FILE --repo primary|dr
 *     [--output json]
 * Recovers the catalog's backups from one repository alone
 * (coordinator/dr/rebuild.h): every backup proven by its attestation, its
 * signed manifest and its data is recorded; every other one is named with
 * the reason and refused. Exit status 0 when nothing was refused, 1 when
 * something was (the proven backups are recorded either way), and the
 * error's status when the run could not finish.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/dr/rebuild.h"
#include "coordinator/policy/coord_config.h"

#define PROG "coffer-coordinator rebuild-catalog"

static void
print_text(const cJSON *report, const coord_rebuild_stats *st, const char *repo)
{
	const cJSON *o;
	cJSON_ArrayForEach(o, report)
	{
		const char *result = cJSON_GetStringValue(cJSON_GetObjectItem(o, "result"));
		if (strcmp(result, "refused") == 0) {
			printf("REFUSED  %s/%s: %s\n",
			    cJSON_GetStringValue(cJSON_GetObjectItem(o, "service")),
			    cJSON_GetStringValue(cJSON_GetObjectItem(o, "backup_id")),
			    cJSON_GetStringValue(cJSON_GetObjectItem(o, "problem")));
		} else {
			printf("%-8s %s/%s\n", result,
			    cJSON_GetStringValue(cJSON_GetObjectItem(o, "service")),
			    cJSON_GetStringValue(cJSON_GetObjectItem(o, "backup_id")));
		}
	}
	printf("rebuilt from the %s repository: %d recovered, %d already present, %d refused, "
	       "%d agents revoked again\n",
	    repo, st->recovered, st->present, st->refused, st->revoked);
}

int
coord_cmd_rebuild(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *repo = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "repo", 0, &repo, NULL },
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
	if (config == NULL || repo == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE and --repo primary|dr are required"));
	}
	if (strcmp(repo, "primary") != 0 && strcmp(repo, "dr") != 0) {
		return (coffer_cli_usage_error(cmd, "--repo must be primary or dr, not %s", repo));
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
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	coord_audit_key key;
	if ((rv = coord_audit_key_load(cfg->audit_key, &key, &err)) != 0) {
		coord_config_free(cfg);
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	coord_catalog *cat = coord_catalog_open(cfg->catalog, &err);
	if (cat != NULL) {
		rv = coord_catalog_check(cat, &err);
	} else {
		rv = err.code;
	}
	cJSON *report = cJSON_CreateArray();
	coord_rebuild_stats st;
	memset(&st, 0, sizeof(st));
	if (rv == 0) {
		rv = coord_rebuild(cat, &key, cfg, repo, report, &st, &err);
	}
	coord_catalog_close(cat);
	coord_audit_key_clear(&key);
	coord_config_free(cfg);
	if (rv != 0) {
		cJSON_Delete(report);
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	if (json) {
		cJSON *doc = cJSON_CreateObject();
		cJSON_AddStringToObject(doc, "repository", repo);
		cJSON_AddNumberToObject(doc, "recovered", st.recovered);
		cJSON_AddNumberToObject(doc, "present", st.present);
		cJSON_AddNumberToObject(doc, "refused", st.refused);
		cJSON_AddNumberToObject(doc, "revoked", st.revoked);
		cJSON_AddItemToObject(doc, "backups", report);
		char *text = cJSON_PrintUnformatted(doc);
		if (text != NULL) {
			printf("%s\n", text);
		}
		cJSON_free(text);
		cJSON_Delete(doc);
	} else {
		print_text(report, &st, repo);
		cJSON_Delete(report);
	}
	return (st.refused > 0 ? 1 : 0);
}
