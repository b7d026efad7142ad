/*
 * coffer backups list --service S [--limit N] [--output json]: the
 * service's backups, newest first, and its recoverable windows (computed
 * by the coordinator from the catalog: docs/PITR.md, "The recoverable
 * window").
 * coffer backup run --service S [--kind logical|physical]: queue a backup
 * for the service's agent; prints the command id. The coordinator delivers
 * it to the agent in a reply; this command does not wait for the backup.
 */
#include <stdio.h>
#include <stdlib.h>

#include "coordinator/cli/client.h"

static void
print_backups(const cJSON *doc)
{
	static const char *const headers[] = { "ID", "KIND", "STATUS", "STARTED", "FINISHED",
		"DURATION", "SIZE", "AGENT" };
	coord_cli_table *t = coord_cli_table_new(8, headers);
	const cJSON *b;
	cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(doc, "backups"))
	{
		char dur[32], size[32];
		const char *row[] = { coord_cli_str(b, "id"), coord_cli_str(b, "kind"),
			coord_cli_str(b, "status"), coord_cli_str(b, "started_at"),
			coord_cli_str(b, "finished_at"),
			coord_cli_ms(b, "duration_ms", dur, sizeof(dur)),
			coord_cli_bytes(b, "stored_bytes", size, sizeof(size)),
			coord_cli_str(b, "agent") };
		coord_cli_table_row(t, row);
	}
	coord_cli_table_print(t);
	coord_cli_table_free(t);
	const cJSON *windows = cJSON_GetObjectItemCaseSensitive(doc, "windows");
	if (!cJSON_IsArray(windows)) {
		return;
	}
	printf("\nRECOVERABLE WINDOWS\n");
	if (cJSON_GetArraySize(windows) == 0) {
		printf("none: no physical backup with its WAL archived, and no logical backup\n");
	}
	const cJSON *w;
	cJSON_ArrayForEach(w, windows)
	{
		const cJSON *points = cJSON_GetObjectItemCaseSensitive(w, "points");
		if (cJSON_IsArray(points)) {
			int n = cJSON_GetArraySize(points);
			const cJSON *first = cJSON_GetArrayItem(points, 0);
			const cJSON *last = cJSON_GetArrayItem(points, n - 1);
			printf(
			    "logical   %d points, no time between them: oldest %s (%s), newest %s (%s)\n",
			    n, coord_cli_str(first, "backup_id"),
			    coord_cli_str(first, "finished_at"), coord_cli_str(last, "backup_id"),
			    coord_cli_str(last, "finished_at"));
			continue;
		}
		const cJSON *old = cJSON_GetObjectItemCaseSensitive(w, "oldest");
		const cJSON *nw = cJSON_GetObjectItemCaseSensitive(w, "newest");
		char tl[24], nb[24], ns[24];
		printf("physical  cluster %s timeline %s\n", coord_cli_str(w, "system_identifier"),
		    coord_cli_num(w, "timeline", tl, sizeof(tl)));
		printf("  oldest  %s at lsn %s (backup %s consistent)\n",
		    coord_cli_str(old, "time"), coord_cli_str(old, "lsn"),
		    coord_cli_str(old, "backup_id"));
		printf("  newest  up to the end of segment %s (lsn %s), archived at %s\n",
		    coord_cli_str(nw, "segment"), coord_cli_str(nw, "lsn"),
		    coord_cli_str(nw, "archived_at"));
		printf(
		    "          %s base backup(s), %s WAL segments without a gap (as the catalog knows "
		    "them)\n",
		    coord_cli_num(w, "backups", nb, sizeof(nb)),
		    coord_cli_num(w, "segments", ns, sizeof(ns)));
	}
}

int
coord_cli_backups_list(const coffer_cmd *cmd, int argc, char **argv)
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
	if (service == NULL) {
		return (coffer_cli_usage_error(cmd, "--service is required"));
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[] = { { "service", service }, { "limit", limit } };
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "backups.list", args, limit ? 2 : 1, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else {
		print_backups(doc);
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cli_backup_run(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *service = NULL, *kind = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "service", 0, &service, NULL },
		{ "kind", 0, &kind, NULL },
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
	coffer_adminmsg_arg args[] = { { "service", service }, { "kind", kind } };
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "backup.run", args, kind ? 2 : 1, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else {
		char id[32];
		printf("queued %s backup for service %s: command %s (agent %s)\n",
		    coord_cli_str(doc, "kind"), coord_cli_str(doc, "service"),
		    coord_cli_num(doc, "command_id", id, sizeof(id)), coord_cli_str(doc, "agent"));
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}
