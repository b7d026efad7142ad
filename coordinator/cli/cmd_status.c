/*
 * coffer status [--service S] [--output json]: per service, the last
 * successful backup (id, finished, age, size, duration), completed and
 * failed counts, the agents with their last contact, the last restore
 * drill (when, result, restore time against the RTO), the DR copies
 * (verified, pending, failed), and active legal holds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coordinator/cli/client.h"

/* The last restore drill of each service that has one: a backup is only as
 * good as the last restore that proved it. */
static void
print_drills(const cJSON *doc)
{
	static const char *const headers[] = { "SERVICE", "LAST DRILL", "STARTED", "RESULT",
		"RESTORE", "RTO", "BACKUP", "REPO", "PROBLEM" };
	coord_cli_table *t = NULL;
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "services"))
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(s, "last_drill");
		if (!cJSON_IsObject(d)) {
			continue;
		}
		if (t == NULL) {
			t = coord_cli_table_new(9, headers);
		}
		char id[32], rms[32], rto[32];
		const char *within =
		    cJSON_IsFalse(cJSON_GetObjectItem(d, "within_rto")) ? "over RTO" : "-";
		const char *status = coord_cli_str(d, "status");
		const char *row[] = { coord_cli_str(s, "service"),
			coord_cli_num(d, "id", id, sizeof(id)), coord_cli_str(d, "started_at"),
			status, coord_cli_ms(d, "restore_ms", rms, sizeof(rms)),
			coord_cli_ms(d, "rto_ms", rto, sizeof(rto)), coord_cli_str(d, "backup_id"),
			coord_cli_str(d, "repository"),
			strcmp(status, "failed") == 0 ? coord_cli_str(d, "failure_reason")
			                              : within };
		coord_cli_table_row(t, row);
	}
	if (t != NULL) {
		printf("\nrestore drills:\n");
		coord_cli_table_print(t);
		coord_cli_table_free(t);
	}
}

/* DR copies of each service that makes them: recoverable with production
 * gone only as far as they are verified. */
static void
print_dr(const cJSON *doc)
{
	static const char *const headers[] = { "SERVICE", "DR COPY", "VERIFIED", "PENDING",
		"FAILED", "LAST VERIFIED", "OLDEST PENDING", "LAST FAILURE" };
	coord_cli_table *t = NULL;
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "services"))
	{
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(s, "dr");
		if (!cJSON_IsObject(d) || strcmp(coord_cli_str(d, "copy"), "none") == 0) {
			continue;
		}
		if (t == NULL) {
			t = coord_cli_table_new(8, headers);
		}
		char v[24], p[24], f[24];
		const char *row[] = { coord_cli_str(s, "service"), coord_cli_str(d, "copy"),
			coord_cli_num(d, "verified", v, sizeof(v)),
			coord_cli_num(d, "pending", p, sizeof(p)),
			coord_cli_num(d, "failed", f, sizeof(f)),
			coord_cli_str(d, "last_verified_at"),
			coord_cli_str(d, "oldest_pending_since"),
			coord_cli_str(d, "last_failure") };
		coord_cli_table_row(t, row);
	}
	if (t != NULL) {
		printf("\nDR copies:\n");
		coord_cli_table_print(t);
		coord_cli_table_free(t);
	}
}

static void
print_status(const cJSON *doc)
{
	static const char *const headers[] = { "SERVICE", "LAST BACKUP", "FINISHED", "AGE", "SIZE",
		"DURATION", "OK", "FAILED", "AGENTS", "LAST CONTACT" };
	coord_cli_table *t = coord_cli_table_new(10, headers);
	const cJSON *s;
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "services"))
	{
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(s, "last_backup");
		char age[32], size[32], dur[32], ok[24], failed[24], names[256] = "",
		                                                     contact[64] = "-";
		const cJSON *a;
		cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(s, "agents"))
		{
			size_t n = strlen(names);
			snprintf(names + n, sizeof(names) - n, "%s%s%s", n > 0 ? "," : "",
			    coord_cli_str(a, "name"),
			    cJSON_IsTrue(cJSON_GetObjectItem(a, "revoked")) ? "(revoked)" : "");
			const char *lc = coord_cli_str(a, "last_contact_at");
			/* RFC 3339 text sorts by time, so the greatest is the latest. */
			if (strcmp(lc, "-") != 0 &&
			    (strcmp(contact, "-") == 0 || strcmp(lc, contact) > 0)) {
				snprintf(contact, sizeof(contact), "%s", lc);
			}
		}
		const char *row[] = { coord_cli_str(s, "service"), coord_cli_str(b, "id"),
			coord_cli_str(b, "finished_at"),
			coord_cli_age(b, "age_seconds", age, sizeof(age)),
			coord_cli_bytes(b, "stored_bytes", size, sizeof(size)),
			coord_cli_ms(b, "duration_ms", dur, sizeof(dur)),
			coord_cli_num(s, "completed", ok, sizeof(ok)),
			coord_cli_num(s, "failed", failed, sizeof(failed)), names[0] ? names : "-",
			contact };
		coord_cli_table_row(t, row);
	}
	coord_cli_table_print(t);
	coord_cli_table_free(t);
	/* LAST BACKUP and OK count verified backups only; what the
	 * coordinator has not verified, or rejected, is said apart. */
	cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(doc, "services"))
	{
		double unverified =
		    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "unverified"));
		double rejected =
		    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "rejected"));
		if (unverified > 0 || rejected > 0) {
			printf(
			    "%s: %.0f backup%s not yet verified, %.0f rejected by verification\n",
			    coord_cli_str(s, "service"), unverified > 0 ? unverified : 0,
			    unverified == 1 ? "" : "s", rejected > 0 ? rejected : 0);
		}
	}
	print_drills(doc);
	print_dr(doc);
	const char *anchor_warning = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(
	    cJSON_GetObjectItemCaseSensitive(doc, "audit_anchor"), "warning"));
	if (anchor_warning != NULL) {
		printf("\naudit: %s\n", anchor_warning);
	}
	const cJSON *holds = cJSON_GetObjectItemCaseSensitive(doc, "holds");
	if (cJSON_GetArraySize(holds) > 0) {
		printf("\nlegal holds (retention will not delete these):\n");
		const cJSON *h;
		cJSON_ArrayForEach(h, holds)
		{
			printf("  %s  %s  by %s: %s\n", coord_cli_str(h, "service"),
			    coord_cli_str(h, "backup_id"), coord_cli_str(h, "placed_by"),
			    coord_cli_str(h, "reason"));
		}
	}
}

int
coord_cli_status(const coffer_cmd *cmd, int argc, char **argv)
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
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[] = { { "service", service } };
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "status", args, service ? 1 : 0, &text, &doc, &err);
	if (rv != 0) {
		return (coord_cli_fail(cmd, &err));
	}
	if (json) {
		printf("%s\n", text);
	} else {
		print_status(doc);
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}
