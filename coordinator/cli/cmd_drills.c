/*
 * coffer drill run --service S: start a restore drill of the service now;
 * prints the drill id. The coordinator picks the backup and repository by
 * the service's drill policy and hands the drill to its drill runner on the
 * runner's next poll; this command does not wait for the result.
 * coffer drill list [--service S] [--limit N] [--output json]: drills,
 * newest first, with their result, restore time against the RTO and the
 * first failed check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/client.h"

/* The first failed check as "name: detail", or the failure reason. */
static const char *
first_failure(const cJSON *d, char *buf, size_t size)
{
	const cJSON *c;
	cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(d, "checks"))
	{
		if (!cJSON_IsTrue(cJSON_GetObjectItem(c, "ok"))) {
			snprintf(buf, size, "%s: %s", coord_cli_str(c, "name"),
			    coord_cli_str(c, "detail"));
			return (buf);
		}
	}
	return (coord_cli_str(d, "failure_reason"));
}

static void
print_drills(const cJSON *doc)
{
	static const char *const headers[] = { "ID", "SERVICE", "STATUS", "BACKUP", "REPO",
		"STARTED", "RESTORE", "RTO", "RUNNER", "PROBLEM" };
	coord_cli_table *t = coord_cli_table_new(10, headers);
	const cJSON *d;
	cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(doc, "drills"))
	{
		char id[32], restore[32], rto[32], problem[300];
		const char *row[] = { coord_cli_num(d, "id", id, sizeof(id)),
			coord_cli_str(d, "service"), coord_cli_str(d, "status"),
			coord_cli_str(d, "backup_id"), coord_cli_str(d, "repository"),
			coord_cli_str(d, "started_at"),
			coord_cli_ms(d, "restore_ms", restore, sizeof(restore)),
			coord_cli_ms(d, "rto_ms", rto, sizeof(rto)), coord_cli_str(d, "runner"),
			strcmp(coord_cli_str(d, "status"), "failed") == 0
			    ? first_failure(d, problem, sizeof(problem))
			    : "-" };
		coord_cli_table_row(t, row);
	}
	coord_cli_table_print(t);
	coord_cli_table_free(t);
}

int
coord_cli_drill_list(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *service = NULL, *output = NULL, *limit = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "service", 0, &service, NULL },
		{ "limit", 0, &limit, NULL },
		{ "output", 0, &output, NULL },
		{ NULL, 0, NULL, NULL },
	};
	bool json = false;
	int rv = 0;
	if (!coord_cli_flags(cmd, opts, argc, argv, &rv)) {
		return (rv);
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[2];
	size_t nargs = 0;
	if (service != NULL) {
		args[nargs++] = (coffer_adminmsg_arg) { "service", service };
	}
	if (limit != NULL) {
		args[nargs++] = (coffer_adminmsg_arg) { "limit", limit };
	}
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "drill.list", args, nargs, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else {
		print_drills(doc);
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cli_drill_run(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *service = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "service", 0, &service, NULL },
		{ "output", 0, &output, NULL },
		{ NULL, 0, NULL, NULL },
	};
	bool json = false;
	int rv = 0;
	if (!coord_cli_flags(cmd, opts, argc, argv, &rv)) {
		return (rv);
	}
	if (service == NULL) {
		return (coffer_cli_usage_error(cmd, "--service is required"));
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[] = { { "service", service } };
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "drill.run", args, 1, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else {
		char id[32];
		printf(
		    "drill %s started for service %s: backup %s from the %s repository (runner %s)\n",
		    coord_cli_num(doc, "drill_id", id, sizeof(id)), coord_cli_str(doc, "service"),
		    coord_cli_str(doc, "backup_id"), coord_cli_str(doc, "repository"),
		    coord_cli_str(doc, "runner"));
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}
