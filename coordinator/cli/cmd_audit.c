/*
 * coffer audit list [--since TIME] [--limit N] [--output json]
 *	TIME is RFC 3339 or a duration back from now ("24h", "7d"); without
 *	it, the newest rows. Oldest first either way.
 * coffer audit verify [--output json]
 *	the coordinator walks its HMAC chain; exits 1 when it is broken,
 *	naming the first broken or missing row.
 * coffer audit resume-export --reason TEXT [--output json]
 *	after the DR copier stopped exporting audit heads (a head exported
 *	before no longer holds) and an operator has looked: export again
 *	from the chain as it is, audited with the reason.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/base/clock.h"
#include "coordinator/cli/client.h"

int
coord_cli_audit_list(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *since = NULL, *limit = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "since", 0, &since, NULL },
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
	char since_text[40];
	if (since != NULL) {
		int64_t at = 0, ago = 0;
		if (coffer_time_parse(since, &at) != 0) {
			if (coffer_duration_parse(since, 0, &ago) != 0) {
				return (coffer_cli_usage_error(cmd,
				    "--since %s is neither a time (2026-11-23T02:00:00Z) nor a "
				    "duration (24h, 7d)",
				    since));
			}
			at = coffer_clock_now(NULL) - ago;
		}
		since = coffer_time_format(since_text, sizeof(since_text), at);
	}
	coffer_adminmsg_arg args[2];
	size_t nargs = 0;
	if (since != NULL) {
		args[nargs++] = (coffer_adminmsg_arg) { "since", since };
	}
	if (limit != NULL) {
		args[nargs++] = (coffer_adminmsg_arg) { "limit", limit };
	}
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "audit.list", args, nargs, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else {
		static const char *const headers[] = { "SEQ", "AT", "ACTOR", "ACTION", "SUBJECT",
			"DETAILS" };
		coord_cli_table *t = coord_cli_table_new(6, headers);
		const cJSON *r;
		cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "rows"))
		{
			char seq[32];
			char *details = cJSON_PrintUnformatted(cJSON_GetObjectItem(r, "details"));
			const char *row[] = { coord_cli_num(r, "chain_seq", seq, sizeof(seq)),
				coord_cli_str(r, "at"), coord_cli_str(r, "actor"),
				coord_cli_str(r, "action"), coord_cli_str(r, "subject"), details };
			coord_cli_table_row(t, row);
			cJSON_free(details);
		}
		coord_cli_table_print(t);
		coord_cli_table_free(t);
		if (cJSON_IsTrue(cJSON_GetObjectItem(doc, "truncated"))) {
			fprintf(stderr,
			    "coffer audit list: more rows than one reply holds; narrow "
			    "with --since or --limit\n");
		}
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cli_audit_verify(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
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
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "audit.verify", NULL, 0, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	bool intact = cJSON_IsTrue(cJSON_GetObjectItem(doc, "intact"));
	char a[32], b[32];
	if (json) {
		printf("%s\n", text);
	} else if (intact) {
		printf("audit chain intact: %s rows, head chain_seq %s mac %s\n",
		    coord_cli_num(doc, "rows", a, sizeof(a)),
		    coord_cli_num(doc, "head_seq", b, sizeof(b)), coord_cli_str(doc, "head_mac"));
		const cJSON *h = cJSON_GetObjectItem(doc, "exported_head");
		if (cJSON_IsObject(h) && cJSON_IsNumber(cJSON_GetObjectItem(h, "resumed_by"))) {
			printf(
			    "exported head in the DR repository: chain_seq %s (%s) no longer holds; "
			    "an operator resumed the export past it (audit row %s)\n",
			    coord_cli_num(h, "chain_seq", a, sizeof(a)), coord_cli_str(h, "key"),
			    coord_cli_num(h, "resumed_by", b, sizeof(b)));
		} else if (cJSON_IsObject(h)) {
			printf(
			    "exported head in the DR repository: chain_seq %s (%s) is in the chain\n",
			    coord_cli_num(h, "chain_seq", a, sizeof(a)), coord_cli_str(h, "key"));
		}
	} else {
		printf("audit chain broken at chain_seq %s: %s\n",
		    coord_cli_num(doc, "bad_seq", a, sizeof(a)), coord_cli_str(doc, "problem"));
	}
	free(text);
	cJSON_Delete(doc);
	if (fflush(stdout) != 0) {
		return (1);
	}
	return (intact ? 0 : 1);
}

int
coord_cli_audit_resume_export(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *reason = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "reason", 0, &reason, NULL },
		{ "output", 0, &output, NULL },
		{ NULL, 0, NULL, NULL },
	};
	bool json = false;
	int rv = 0;
	if (!coord_cli_flags(cmd, opts, argc, argv, &rv)) {
		return (rv);
	}
	if (reason == NULL || reason[0] == '\0') {
		return (coffer_cli_usage_error(cmd,
		    "--reason is required: say what was found and "
		    "who looked"));
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[] = { { "reason", reason } };
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "audit.resume_export", args, 1, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	char a[32], b[32];
	const cJSON *h = cJSON_GetObjectItem(doc, "acknowledged_head");
	if (json) {
		printf("%s\n", text);
	} else {
		printf(
		    "audit head export resumed past chain_seq %s (%s); audit row %s records it\n",
		    coord_cli_num(h, "chain_seq", a, sizeof(a)), coord_cli_str(h, "key"),
		    coord_cli_num(doc, "audit_row", b, sizeof(b)));
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}
