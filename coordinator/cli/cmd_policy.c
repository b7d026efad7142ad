/*
 * coffer hold add --backup ID --reason TEXT | hold remove --backup ID
 * coffer holds list [--service S]
 * coffer retention plan --service S      what retention would do next, and why
 * coffer alerts list [--limit N]         open and recent alerts, with delivery state
 *
 * Lists print one line per item as key=value pairs (the JSON, flattened),
 * so new fields show up without a CLI release; --output json gives the
 * coordinator's document unchanged.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/log.h"
#include "coordinator/cli/client.h"

static void
print_value(const cJSON *v)
{
	if (cJSON_IsString(v)) {
		/* key=value lines read like the logs: quoted and escaped the same
		 * way, so a reason holding quotes cannot break its line. */
		char quoted[4096];
		printf("%s", coffer_log_quote(quoted, sizeof(quoted), v->valuestring));
	} else if (cJSON_IsNumber(v)) {
		printf("%.17g", v->valuedouble);
	} else if (cJSON_IsBool(v)) {
		printf("%s", cJSON_IsTrue(v) ? "true" : "false");
	} else if (cJSON_IsNull(v)) {
		printf("-");
	} else if (cJSON_IsArray(v)) {
		const cJSON *e;
		bool first = true;
		cJSON_ArrayForEach(e, v)
		{
			if (!first) {
				putchar(',');
			}
			first = false;
			if (cJSON_IsString(e)) {
				printf("%s", e->valuestring);
			} else {
				printf("?");
			}
		}
		if (first) {
			printf("-");
		}
	} else {
		char *t = cJSON_PrintUnformatted(v);
		printf("%s", t != NULL ? t : "?");
		free(t);
	}
}

/* One object as key=value pairs on one line; members that are themselves
 * lists of objects are left to the caller (they are printed as rows). */
static void
print_pairs(const cJSON *obj)
{
	const cJSON *kv;
	bool first = true;
	cJSON_ArrayForEach(kv, obj)
	{
		if (kv->string == NULL || (cJSON_IsArray(kv) && cJSON_IsObject(kv->child))) {
			continue;
		}
		printf("%s%s=", first ? "" : " ", kv->string);
		print_value(kv);
		first = false;
	}
	putchar('\n');
}

/* list_field names an array of objects (one line each), or an object
 * whose scalar members make a header line and whose one array of objects
 * (rows_field) makes the rows: "plan" is {service, ..., backups: [...]}. */
static void
print_items(const cJSON *doc, const char *field, const char *rows_field)
{
	const cJSON *list = cJSON_GetObjectItem(doc, field);
	if (rows_field != NULL && cJSON_IsObject(list)) {
		print_pairs(list);
		field = rows_field;
		list = cJSON_GetObjectItem(list, rows_field);
	}
	const cJSON *item;
	size_t n = 0;
	cJSON_ArrayForEach(item, list)
	{
		print_pairs(item);
		n++;
	}
	if (n == 0) {
		printf("(no %s)\n", field);
	}
}

/* One request with up to three --name value options mapped to arguments. */
static int
simple(const coffer_cmd *cmd, int argc, char **argv, const char *command, const char *const *names,
    size_t nnames, size_t nrequired, const char *list_field, const char *rows_field,
    const char *done_prefix, const char *done_suffix)
{
	const char *config = NULL, *output = NULL;
	const char *values[3] = { NULL, NULL, NULL };
	coffer_opt opts[6];
	size_t k = 0;
	opts[k++] = (coffer_opt) { "config", 'c', &config, NULL };
	opts[k++] = (coffer_opt) { "output", 0, &output, NULL };
	for (size_t i = 0; i < nnames; i++) {
		opts[k++] = (coffer_opt) { names[i], 0, &values[i], NULL };
	}
	opts[k] = (coffer_opt) { NULL, 0, NULL, NULL };
	int npos = 0;
	bool json = false;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	for (size_t i = 0; i < nrequired; i++) {
		if (values[i] == NULL) {
			return (coffer_cli_usage_error(cmd, "--%s is required", names[i]));
		}
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[3];
	size_t nargs = 0;
	for (size_t i = 0; i < nnames; i++) {
		if (values[i] != NULL) {
			args[nargs++] = (coffer_adminmsg_arg) { names[i], values[i] };
		}
	}
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), command, args, nargs, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else if (list_field != NULL) {
		print_items(doc, list_field, rows_field);
	} else {
		printf("%s%s%s\n", done_prefix, values[0], done_suffix);
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cli_hold_add(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "backup", "reason" };
	return (simple(cmd, argc, argv, "hold.add", names, 2, 2, NULL, NULL,
	    "hold placed on backup ", ": retention will not delete it until the hold is removed"));
}

int
coord_cli_hold_remove(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "backup" };
	return (simple(cmd, argc, argv, "hold.remove", names, 1, 1, NULL, NULL,
	    "hold removed from backup ", ": retention decides its fate again"));
}

int
coord_cli_holds_list(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "service" };
	return (simple(cmd, argc, argv, "holds.list", names, 1, 0, "holds", NULL, NULL, NULL));
}

int
coord_cli_retention_plan(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "service" };
	return (
	    simple(cmd, argc, argv, "retention.plan", names, 1, 1, "plan", "backups", NULL, NULL));
}

int
coord_cli_alerts_list(const coffer_cmd *cmd, int argc, char **argv)
{
	static const char *const names[] = { "limit" };
	return (simple(cmd, argc, argv, "alerts.list", names, 1, 0, "alerts", NULL, NULL, NULL));
}
