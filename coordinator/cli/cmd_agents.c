/*
 * coffer agents enroll --service S --agent NAME --pubkey FILE
 * coffer agents enroll --drill-runner --service S1 [--service S2 ...] --agent NAME
 *     --pubkey FILE
 * coffer agents list [--output json]
 * coffer agents revoke NAME
 *
 * enroll reads and checks the agent's public key here (PEM, or the 64 hex
 * digits `coffer-agent init` printed), so a wrong file is reported before
 * anything is sent, and sends it as hex.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/crypto/sign.h"
#include "coordinator/cli/client.h"

/* The common tail of every command here: prints json or text. */
static int
finish(const coffer_cmd *cmd, int rv, const coffer_err *err, char *text, cJSON *doc)
{
	if (rv != 0) {
		return (coord_cli_fail(cmd, err));
	}
	free(text);
	cJSON_Delete(doc);
	return (fflush(stdout) == 0 ? 0 : 1);
}

int
coord_cli_agents_enroll(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *service = NULL, *agent = NULL, *pubkey = NULL, *output = NULL;
	bool drill_runner = false;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "service", 0, &service, NULL },
		{ "agent", 0, &agent, NULL },
		{ "pubkey", 0, &pubkey, NULL },
		{ "drill-runner", 0, NULL, &drill_runner },
		{ "output", 0, &output, NULL },
		{ NULL, 0, NULL, NULL },
	};
	/* A runner may drill several services: every --service counts. */
	char services[4096];
	int nservices = coffer_opts_collect(argc, argv, "service", services, sizeof(services));
	bool json = false;
	int rv = 0;
	if (!coord_cli_flags(cmd, opts, argc, argv, &rv)) {
		return (rv);
	}
	if (service == NULL || agent == NULL || pubkey == NULL) {
		return (
		    coffer_cli_usage_error(cmd, "--service, --agent and --pubkey are required"));
	}
	if (nservices < 0) {
		return (coffer_cli_usage_error(cmd, "--service takes one service name per option"));
	}
	if (nservices > 1 && !drill_runner) {
		return (coffer_cli_usage_error(cmd,
		    "a service agent belongs to one service; "
		    "several --service only with --drill-runner"));
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_err err;
	coffer_err_clear(&err);
	coffer_sign_pubkey *pub = NULL;
	if ((rv = coffer_sign_pubkey_load(pubkey, &pub, &err)) != 0) {
		coffer_err_hint(&err,
		    "give the public key `coffer-agent init` printed (64 hex digits) "
		    "or a PEM public key file");
		return (coord_cli_fail(cmd, &err));
	}
	char hex[COFFER_SIGN_PUBKEY_HEX];
	coffer_sign_pubkey_hex(pub, hex);
	coffer_sign_pubkey_free(pub);
	coffer_adminmsg_arg args[] = { { "service", drill_runner ? services : service },
		{ "agent", agent }, { "pubkey", hex }, { "drill_runner", "true" } };
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(coord_cli_config_path(config), "agents.enroll", args,
	    drill_runner ? 4 : 3, &text, &doc, &err);
	if (rv == 0) {
		if (json) {
			printf("%s\n", text);
		} else {
			printf("%s %s %s for %s %s (key %s)\n",
			    cJSON_IsTrue(cJSON_GetObjectItem(doc, "already")) ? "already enrolled:"
			                                                      : "enrolled",
			    drill_runner ? "drill runner" : "agent", coord_cli_str(doc, "agent"),
			    drill_runner ? "drilling" : "service", coord_cli_str(doc, "service"),
			    coord_cli_str(doc, "fingerprint"));
		}
	}
	return (finish(cmd, rv, &err, text, doc));
}

int
coord_cli_agents_list(const coffer_cmd *cmd, int argc, char **argv)
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
	    coord_cli_config_path(config), "agents.list", NULL, 0, &text, &doc, &err);
	if (rv == 0 && json) {
		printf("%s\n", text);
	} else if (rv == 0) {
		static const char *const headers[] = { "AGENT", "SERVICE", "STATE", "KEY",
			"ENROLLED", "LAST CONTACT" };
		coord_cli_table *t = coord_cli_table_new(6, headers);
		const cJSON *a;
		cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(doc, "agents"))
		{
			const cJSON *rev = cJSON_GetObjectItemCaseSensitive(a, "revoked_at");
			/* A drill runner has no service: show what it drills. */
			char drills[512] = "";
			const cJSON *d;
			cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(a, "drills"))
			{
				size_t n = strlen(drills);
				snprintf(drills + n, sizeof(drills) - n, "%s%s",
				    n == 0 ? "drills:" : ",",
				    cJSON_IsString(d) ? d->valuestring : "?");
			}
			const char *row[] = { coord_cli_str(a, "name"),
				drills[0] != '\0' ? drills : coord_cli_str(a, "service"),
				cJSON_IsString(rev) ? "revoked" : "active",
				coord_cli_str(a, "fingerprint"), coord_cli_str(a, "enrolled_at"),
				coord_cli_str(a, "last_contact_at") };
			coord_cli_table_row(t, row);
		}
		coord_cli_table_print(t);
		coord_cli_table_free(t);
	}
	return (finish(cmd, rv, &err, text, doc));
}

int
coord_cli_agents_revoke(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "output", 0, &output, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	bool json = false;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos != 1) {
		return (coffer_cli_usage_error(cmd, "name exactly one agent to revoke"));
	}
	if (coord_cli_output_json(cmd, output, &json) != 0) {
		return (2);
	}
	coffer_adminmsg_arg args[] = { { "agent", argv[0] } };
	coffer_err err;
	coffer_err_clear(&err);
	char *text = NULL;
	cJSON *doc = NULL;
	rv = coord_cli_request(
	    coord_cli_config_path(config), "agents.revoke", args, 1, &text, &doc, &err);
	if (rv == 0 && json) {
		printf("%s\n", text);
	} else if (rv == 0) {
		printf("%s agent %s\n",
		    cJSON_IsTrue(cJSON_GetObjectItem(doc, "already")) ? "already revoked:"
		                                                      : "revoked",
		    coord_cli_str(doc, "agent"));
		const cJSON *note = cJSON_GetObjectItemCaseSensitive(doc, "credentials");
		if (cJSON_IsString(note)) {
			printf("%s\n", note->valuestring);
		}
	}
	return (finish(cmd, rv, &err, text, doc));
}
