/*
 * Driver for tests/integration/sender.sh: puts real events into an agent's
 * outbox, the way backups do (agent_events_emit), so the script can watch
 * `coffer-agent flush` and the daemon's sender ship them.
 *
 *   sender_itest emit CONFIG COUNT PREFIX
 *	appends COUNT events to the outbox of the agent in CONFIG: for backup
 *	k = 1, 2, ... a backup.started then a backup.completed for backup id
 *	PREFIX-k (an odd COUNT ends with a started one). Prints the last seq.
 *   sender_itest junk CONFIG
 *	appends one record that is not a protobuf Event (what a bug would
 *	leave behind); prints its seq.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/context/agent_config.h"
#include "agent/outbox/events.h"
#include "agent/outbox/outbox.h"
#include "common/base/clock.h"
#include "common/base/log.h"

static int
emit_one(agent_outbox *ob, const agent_config *cfg, const char *id, bool completed, uint64_t *seq,
    coffer_err *err)
{
	int64_t now = coffer_clock_now(NULL);
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	Coffer__V1__BackupStarted bs = COFFER__V1__BACKUP_STARTED__INIT;
	Coffer__V1__BackupCompleted bc = COFFER__V1__BACKUP_COMPLETED__INIT;
	uint8_t digest[32];
	memset(digest, 0xab, sizeof(digest));
	if (!completed) {
		bs.backup_id = (char *)id;
		bs.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
		bs.trigger = COFFER__V1__TRIGGER__TRIGGER_CLI;
		ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_STARTED;
		ev.backup_started = &bs;
	} else {
		bc.backup_id = (char *)id;
		bc.kind = COFFER__V1__BACKUP_KIND__BACKUP_KIND_LOGICAL;
		bc.started_at_ms = now - 1000;
		bc.finished_at_ms = now;
		bc.plain_bytes = 4096;
		bc.stored_bytes = 1234;
		bc.plain_sha256.data = digest;
		bc.plain_sha256.len = sizeof(digest);
		bc.stored_sha256.data = digest;
		bc.stored_sha256.len = sizeof(digest);
		bc.manifest_sha256.data = digest;
		bc.manifest_sha256.len = sizeof(digest);
		bc.key_id = (char *)"k1";
		bc.repository = (char *)"primary";
		ev.kind_case = COFFER__V1__EVENT__KIND_BACKUP_COMPLETED;
		ev.backup_completed = &bc;
	}
	return (agent_events_emit(ob, cfg->service, now, &ev, seq, err));
}

int
main(int argc, char **argv)
{
	coffer_log_init("sender_itest", COFFER_LOG_WARN);
	bool junk = argc == 3 && strcmp(argv[1], "junk") == 0;
	if (!junk && (argc != 5 || strcmp(argv[1], "emit") != 0)) {
		fprintf(stderr, "usage: sender_itest emit CONFIG COUNT PREFIX | junk CONFIG\n");
		return (2);
	}
	unsigned long count = junk ? 0 : strtoul(argv[3], NULL, 10);
	coffer_err err = { 0 };
	agent_config *cfg = NULL;
	agent_outbox *ob = NULL;
	int rc = agent_config_load(argv[2], &cfg, &err);
	if (rc == 0) {
		rc = agent_outbox_open(cfg->state_dir, NULL, &ob, &err);
	}
	uint64_t seq = 0;
	if (rc == 0 && junk) {
		/* Field 2 claims 100 bytes that are not there. */
		static const uint8_t bad[] = { 0x12, 0x64, 'x', 'y' };
		rc = agent_outbox_append(ob, bad, sizeof(bad), &seq, &err);
	}
	char id[160];
	for (unsigned long i = 0; rc == 0 && i < count; i++) {
		snprintf(id, sizeof(id), "%s-%lu", argv[4], i / 2 + 1);
		rc = emit_one(ob, cfg, id, i % 2 == 1, &seq, &err);
	}
	agent_outbox_close(ob);
	agent_config_free(cfg);
	if (rc != 0) {
		coffer_err_print("sender_itest", &err);
		return (1);
	}
	printf("%" PRIu64 "\n", seq);
	return (0);
}
