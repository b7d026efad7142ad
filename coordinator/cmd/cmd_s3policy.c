/*
 * coffer-coordinator s3-policy -c FILE [--dialect aws|radosgw]
 * coffer-coordinator s3-policy -c FILE --revoked [--output json]
 *
 * The first form prints the primary bucket's policy (JSON, ready for
 * PutBucketPolicy): each service's agents limited to services/<service>/,
 * the coordinator's own principal, nothing else (coordinator/policy/
 * s3policy.h says what each gets). Like check-config it reads only the
 * file: no catalog, no network, so it runs in a deploy pipeline.
 *
 * The second form reads the catalog and lists the credentials to disable:
 * for every revoked service agent, its service's principal (agents of a
 * service share it, so revoking one means rotating the service's keys).
 * Exit status 0; 2 for a bad file or usage; the catalog's errors as usual.
 */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/base/error.h"
#include "coordinator/catalog/agents.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/cmd/commands.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/policy/s3policy.h"

#define PROG "coffer-coordinator s3-policy"

static int
print_policy(const coord_config *cfg, coord_s3policy_dialect dialect)
{
	coffer_err err;
	coffer_err_clear(&err);
	cJSON *doc = NULL;
	int rv = coord_s3policy_build(cfg, dialect, &doc, &err);
	if (rv != 0) {
		coffer_err_print(PROG, &err);
		return (rv == COFFER_EINVAL ? 2 : coffer_err_exit_status(rv));
	}
	char *text = cJSON_Print(doc);
	cJSON_Delete(doc);
	if (text == NULL) {
		fprintf(stderr, "%s: out of memory\n", PROG);
		return (1);
	}
	printf("%s\n", text);
	cJSON_free(text);
	return (0);
}

static const char *
str_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

static int
print_revoked(const coord_config *cfg, bool json)
{
	coffer_err err;
	coffer_err_clear(&err);
	coord_catalog *cat = coord_catalog_open(cfg->catalog, &err);
	int rv = cat == NULL ? err.code : coord_catalog_check(cat, &err);
	cJSON *agents = NULL;
	if (rv == 0) {
		rv = coord_agents_list(cat, &agents, &err);
	}
	coord_catalog_close(cat);
	if (rv != 0) {
		coffer_err_print(PROG, &err);
		return (coffer_err_exit_status(rv));
	}
	cJSON *out = cJSON_CreateArray();
	const cJSON *a;
	cJSON_ArrayForEach(a, agents)
	{
		const char *service = str_of(a, "service");
		const char *revoked = str_of(a, "revoked_at");
		if (service == NULL || revoked == NULL) {
			continue; /* active, or a drill runner (no service prefix) */
		}
		const coord_service_policy *p = coord_config_service(cfg, service);
		char note[1024];
		coord_s3policy_revoke_note(cfg, service, note, sizeof(note));
		cJSON *o = cJSON_CreateObject();
		if (o == NULL || !cJSON_AddItemToArray(out, o)) {
			cJSON_Delete(o);
			break;
		}
		cJSON_AddStringToObject(o, "agent", str_of(a, "name"));
		cJSON_AddStringToObject(o, "service", service);
		cJSON_AddStringToObject(o, "revoked_at", revoked);
		if (p != NULL && p->s3_principal != NULL) {
			cJSON_AddStringToObject(o, "principal", p->s3_principal);
		} else {
			cJSON_AddNullToObject(o, "principal");
		}
		cJSON_AddStringToObject(o, "action", note);
		if (!json) {
			printf("agent %s (revoked %s): %s\n", str_of(a, "name"), revoked, note);
		}
	}
	cJSON_Delete(agents);
	if (json) {
		char *text = cJSON_PrintUnformatted(out);
		if (text == NULL) {
			cJSON_Delete(out);
			fprintf(stderr, "%s: out of memory\n", PROG);
			return (1);
		}
		printf("{\"to_disable\":%s}\n", text);
		cJSON_free(text);
	} else if (cJSON_GetArraySize(out) == 0) {
		printf("no revoked agent: no credentials to disable\n");
	}
	cJSON_Delete(out);
	return (0);
}

int
coord_cmd_s3policy(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *dialect = NULL, *output = NULL;
	bool revoked = false;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "dialect", 0, &dialect, NULL },
		{ "output", 0, &output, NULL },
		{ "revoked", 0, NULL, &revoked },
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
	coord_s3policy_dialect d = COORD_S3POLICY_AWS;
	if (dialect != NULL && strcmp(dialect, "radosgw") == 0) {
		d = COORD_S3POLICY_RADOSGW;
	} else if (dialect != NULL && strcmp(dialect, "aws") != 0) {
		return (coffer_cli_usage_error(
		    cmd, "--dialect must be aws or radosgw (Ceph), not %s", dialect));
	}
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not %s", output));
	}
	if (!revoked && output != NULL) {
		return (coffer_cli_usage_error(
		    cmd, "--output goes with --revoked; the policy is always JSON"));
	}
	if (revoked && dialect != NULL) {
		return (coffer_cli_usage_error(cmd, "--dialect does not go with --revoked"));
	}
	coffer_err err;
	coffer_err_clear(&err);
	coord_config *cfg = NULL;
	if (coord_config_load(config, &cfg, &err) != 0) {
		coffer_err_print(PROG, &err);
		return (2);
	}
	rv = revoked ? print_revoked(cfg, output != NULL && strcmp(output, "json") == 0)
	             : print_policy(cfg, d);
	coord_config_free(cfg);
	if (rv != 0) {
		return (rv);
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
