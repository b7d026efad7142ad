/*
 * coffer-agent: runs beside one service's database, takes its backups, and
 * reports to the coordinator. This file only dispatches; each command lives
 * in its own agent/cmd/cmd_<name>.c.
 */
#include <stdlib.h>

#include "agent/cmd/commands.h"
#include "common/base/log.h"
#include "common/base/nocore.h"

static const coffer_cmd agent_cmds[] = {
	{ "run", "-c FILE", "the daemon: scheduled backups, events to the coordinator",
	    agent_cmd_run },
	{ "init", "-c FILE", "create the agent's signing key; prints its public key",
	    agent_cmd_init },
	{ "check", "-c FILE [--timeout 60s] [--max-skew 120s] [--output json]",
	    "test every prerequisite for real (keys, PostgreSQL, archive_command, repository, "
	    "coordinator, clock); exit 0 ok, 1 warning, 2 critical",
	    agent_cmd_check },
	{ "backup", "-c FILE [--kind logical|physical] [--output json] [--progress json|tty|off]",
	    "one backup now; prints its id (or, with --output json, the backup)",
	    agent_cmd_backup },
	{ "list", "-c FILE [--repo primary|dr] [--output json]",
	    "the service's published backups, oldest first, and the recoverable windows",
	    agent_cmd_list },
	{ "verify", "-c FILE --backup ID|latest [--repo primary|dr] [--output json]",
	    "decrypt a backup and check its signature and every digest, without restoring",
	    agent_cmd_verify },
	{ "cat", "-c FILE --backup ID|latest [--repo primary|dr]",
	    "the plaintext custom-format dump on stdout, for pg_restore", agent_cmd_cat },
	{ "restore",
	    "-c FILE (--backup ID|latest | --before TIME) --target-db NAME [--target-conninfo CI] "
	    "[--jobs N] [--force] [--repo primary|dr] [--dry-run] [--output json] | "
	    "-c FILE --physical [--backup ID|latest] [--target-time T | --target-lsn LSN | "
	    "--target-xid XID | --target-name NAME | --target immediate] "
	    "[--target-inclusive true|false] [--target-action promote|pause|shutdown] "
	    "--pgdata DIR [--tablespace-map OLD=NEW|OID=NEW ...] [--port N] [--start] "
	    "[--dry-run] [--output json] [--progress json|tty|off]",
	    "restore into a new database and compare row counts with the manifest; or, with "
	    "--physical, a data directory recovered to a point in time",
	    agent_cmd_restore },
	{ "drill",
	    "-c FILE --service S [--backup ID|latest] [--repo primary|dr] [--id N] "
	    "[--assert SQL ...] [--freshness-query SQL --freshness-max-lag D] [--rto D] "
	    "[--production-system-id ID ...] [--keep-sandbox] [--output json]",
	    "on a drill runner: restore a service's backup into a sandbox and check it",
	    agent_cmd_drill },
	{ "events", "-c FILE [--output json]", "events waiting in the outbox for the coordinator",
	    agent_cmd_events },
	{ "flush", "-c FILE [--timeout 30s]",
	    "send the outbox to the coordinator now; exit 0 once every event is acked",
	    agent_cmd_flush },
	{ "wal-push", "-c FILE PATH", "archive one WAL file (archive_command = '... %p')",
	    agent_cmd_wal_push },
	{ "wal-fetch", "-c FILE [--repo primary|dr] [--system-identifier ID] NAME PATH",
	    "fetch one archived WAL file to PATH (restore_command = '... %f %p')",
	    agent_cmd_wal_fetch },
	{ "keygen", "--out FILE [--id ID]",
	    "add a new key-encryption key to a key ring (created 0600 if missing); prints its id",
	    agent_cmd_keygen },
	{ "escrow-keygen", "--out FILE",
	    "the platform's escrow key pair: FILE (private; keep it offline) and FILE.pub",
	    agent_cmd_escrow_keygen },
	{ "keyring escrow", "-c FILE",
	    "seal every key of the ring to [keys] escrow_public_key into the repository",
	    agent_cmd_keyring_escrow },
	{ "keyring recover", "-c FILE --escrow-key FILE [--repo dr|primary]",
	    "write the lost key ring back from escrow (DR by default)", agent_cmd_keyring_recover },
	{ "seal", "--keyring FILE [--key-id ID] [--chunk-size N]",
	    "encrypt stdin to stdout as a sealed stream (newest key unless --key-id)",
	    agent_cmd_seal },
	{ "unseal", "--keyring FILE", "check and decrypt a sealed stream from stdin to stdout",
	    agent_cmd_unseal },
	{ NULL, NULL, NULL, NULL },
};

static const coffer_cli agent_cli = {
	.prog = "coffer-agent",
	.purpose = "backs up one service's PostgreSQL database into an encrypted repository",
	.cmds = agent_cmds,
	.footer = "Every command takes -c FILE for its config; see docs/CONFIGURATION.md.\n",
};

int
main(int argc, char **argv)
{
	/* Until a command reads its config's log_level. */
	coffer_log_init("coffer-agent", COFFER_LOG_INFO);
	/* Every command may hold keys or credentials: no core file, and no
	 * peeking at this process by others of its user, before any is read. */
	coffer_err err = { 0 };
	if (coffer_nocore_apply(&err) != 0) {
		coffer_log_error("cannot disable core dumps", "error=\"%s\"", err.msg);
		return (1);
	}
	return (coffer_cli_main(&agent_cli, argc, argv));
}
