/*
 * coffer-agent events -c FILE [--output json]: what is waiting in the outbox
 * for the coordinator, oldest first. Read-only; lets an operator see what a
 * cut-off agent has not been able to report yet.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/cmd/commands.h"
#include "agent/context/agent_config.h"
#include "agent/outbox/events.h"
#include "agent/outbox/outbox.h"
#include "common/base/clock.h"
#include "common/wire/wire.h"

typedef struct print_state {
	bool json;
} print_state;

static int
print_event(uint64_t seq, const uint8_t *data, size_t len, void *arg)
{
	print_state *st = arg;
	Coffer__V1__Event *ev = coffer__v1__event__unpack(NULL, len, data);
	const char *type = ev != NULL ? coffer_wire_event_type(ev) : "undecodable";
	char at[40] = "-";
	if (ev != NULL) {
		coffer_time_format(at, sizeof(at), ev->occurred_at_ms);
	}
	const char *backup = "";
	const char *detail = "";
	if (ev != NULL) {
		switch (ev->kind_case) {
		case COFFER__V1__EVENT__KIND_BACKUP_STARTED:
			backup = ev->backup_started->backup_id;
			break;
		case COFFER__V1__EVENT__KIND_BACKUP_COMPLETED:
			backup = ev->backup_completed->backup_id;
			break;
		case COFFER__V1__EVENT__KIND_BACKUP_FAILED:
			backup = ev->backup_failed->backup_id;
			detail = ev->backup_failed->reason;
			break;
		case COFFER__V1__EVENT__KIND_RESTORE_COMPLETED:
			backup = ev->restore_completed->backup_id;
			detail = ev->restore_completed->detail;
			break;
		default:
			break;
		}
	}
	if (st->json) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "seq", (double)seq);
		cJSON_AddStringToObject(o, "type", type);
		cJSON_AddStringToObject(o, "occurred_at", at);
		cJSON_AddStringToObject(o, "backup_id", backup);
		cJSON_AddStringToObject(o, "detail", detail);
		char *text = cJSON_PrintUnformatted(o);
		printf("%s\n", text);
		free(text);
		cJSON_Delete(o);
	} else {
		printf("%-8llu %-24s %-18s %-28s %s\n", (unsigned long long)seq, at, type, backup,
		    detail);
	}
	coffer__v1__event__free_unpacked(ev, NULL);
	return (0);
}

int
agent_cmd_events(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *output = NULL;
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "output", 'o', &output, NULL },
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
		    coffer_cli_usage_error(cmd, "--output must be text or json, not '%s'", output));
	}
	coffer_err err = { 0 };
	agent_config *cfg = NULL;
	agent_outbox *ob = NULL;
	rv = agent_config_load(config, &cfg, &err);
	if (rv == 0) {
		rv = agent_outbox_open(cfg->state_dir, NULL, &ob, &err);
	}
	print_state st = { output != NULL && strcmp(output, "json") == 0 };
	if (rv == 0) {
		rv = agent_outbox_foreach(ob, 0, SIZE_MAX, SIZE_MAX, print_event, &st, NULL, &err);
	}
	agent_outbox_close(ob);
	agent_config_free(cfg);
	if (rv != 0) {
		coffer_err_print("coffer-agent events", &err);
		return (coffer_err_exit_status(rv));
	}
	return (fflush(stdout) == 0 ? 0 : 1);
}
