/*
 * Catalog migrations. See coordinator/catalog/migrations.h for the rules; the one
 * that matters most: never edit a migration that has shipped, add one.
 *
 * Design notes.
 * Migration 1 is the whole catalog the coordinator needs. The constraints
 * are the catalog's last line of defence against a bug in the coordinator:
 * a state the code should never produce (a completed backup without a
 * digest, an active hold without a reason, two active holds on one backup,
 * an event applied twice) is refused by the database rather than stored.
 * Names are checked with the same pattern everywhere so a name that reaches
 * a repository path ("services/<service>/...") cannot contain a slash.
 *
 * The audit table is append-only, enforced by the database: row and
 * statement triggers refuse UPDATE, DELETE and TRUNCATE, and the privileges
 * are revoked from PUBLIC so no other role can be granted them by accident.
 * The table's owner (the coordinator's own role) or a superuser can still
 * drop or disable the trigger: that is what the HMAC chain is for. Every row
 * carries HMAC-SHA-256 over its content and the previous row's MAC under a
 * key the database never sees, so an altered, removed or inserted row breaks
 * the chain, and the chain head exported to the DR repository catches rows
 * cut from the end. audit_head is the chain's head kept in the database:
 * appenders lock its one row (SELECT ... FOR UPDATE) to serialise, and it
 * lets verify notice rows deleted from the tail.
 */
#include "coordinator/catalog/migrations.h"

/* The migrations' SQL is laid out as SQL, clause by clause; the formatter
 * would re-indent it around the macros. */
/* clang-format off */
#define NAME_CHECK(col) "CHECK (" col " ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')"

static const char migration_1_sql[] =
    "CREATE TABLE services (\n"
    "  name text PRIMARY KEY " NAME_CHECK("name") ",\n"
    "  owner text NOT NULL CHECK (owner <> ''),\n"
    "  policy_version bigint NOT NULL DEFAULT 0 CHECK (policy_version >= 0),\n"
    "  policy_sha256 bytea CHECK (octet_length(policy_sha256) = 32),\n"
    "  created_at timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "\n"
    "CREATE TABLE agents (\n"
    "  name text PRIMARY KEY " NAME_CHECK("name") ",\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  pubkey bytea NOT NULL UNIQUE CHECK (octet_length(pubkey) = 32),\n"
    "  role text NOT NULL DEFAULT 'agent' CHECK (role IN ('agent', 'drill_runner')),\n"
    "  enrolled_at timestamptz NOT NULL DEFAULT now(),\n"
    "  enrolled_by text NOT NULL,\n"
    "  revoked_at timestamptz,\n"
    "  revoked_by text,\n"
    "  last_seq bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),\n"
    "  last_contact_at timestamptz,\n"
    "  CHECK ((revoked_at IS NULL) = (revoked_by IS NULL)),\n"
    "  CHECK (revoked_at IS NULL OR revoked_at >= enrolled_at)\n"
    ");\n"
    "CREATE INDEX agents_service ON agents (service);\n"
    "\n"
    "CREATE TABLE backups (\n"
    "  id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$'),\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  agent text REFERENCES agents (name),\n"
    "  kind text NOT NULL CHECK (kind IN ('logical', 'physical')),\n"
    "  status text NOT NULL CHECK (status IN\n"
    "    ('running', 'completed', 'failed', 'pending_delete', 'deleted')),\n"
    "  repo text NOT NULL DEFAULT 'primary' " NAME_CHECK("repo") ",\n"
    "  started_at timestamptz NOT NULL,\n"
    "  finished_at timestamptz,\n"
    "  received_at timestamptz NOT NULL DEFAULT now(),\n"
    "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "  plain_bytes bigint CHECK (plain_bytes >= 0),\n"
    "  stored_bytes bigint CHECK (stored_bytes >= 0),\n"
    "  plain_sha256 bytea CHECK (octet_length(plain_sha256) = 32),\n"
    "  stored_sha256 bytea CHECK (octet_length(stored_sha256) = 32),\n"
    "  key_id text,\n"
    "  pg_version integer,\n"
    "  system_identifier numeric(20, 0),\n"
    "  timeline integer CHECK (timeline > 0),\n"
    "  start_lsn pg_lsn,\n"
    "  stop_lsn pg_lsn,\n"
    "  manifest jsonb,\n"
    "  failure_reason text,\n"
    "  delete_after timestamptz,\n"
    "  deleted_at timestamptz,\n"
    "  delete_policy_version bigint,\n"
    "  delete_reason text,\n"
    "  CHECK (finished_at IS NULL OR finished_at >= started_at),\n"
    "  CHECK (stop_lsn IS NULL OR start_lsn IS NULL OR stop_lsn >= start_lsn),\n"
    "  CHECK (status = 'running' OR finished_at IS NOT NULL),\n"
    "  CHECK (status NOT IN ('completed', 'pending_delete', 'deleted') OR\n"
    "    (stored_sha256 IS NOT NULL AND stored_bytes IS NOT NULL AND manifest IS NOT NULL\n"
    "     AND key_id IS NOT NULL)),\n"
    "  CHECK (status <> 'failed' OR failure_reason IS NOT NULL),\n"
    "  CHECK (status NOT IN ('pending_delete', 'deleted') OR\n"
    "    (delete_after IS NOT NULL AND delete_policy_version IS NOT NULL\n"
    "     AND delete_reason IS NOT NULL)),\n"
    "  CHECK ((status = 'deleted') = (deleted_at IS NOT NULL))\n"
    ");\n"
    "CREATE INDEX backups_service_started ON backups (service, started_at DESC);\n"
    "CREATE INDEX backups_service_completed ON backups (service, finished_at DESC)\n"
    "  WHERE status = 'completed';\n"
    "CREATE INDEX backups_running ON backups (service) WHERE status = 'running';\n"
    "CREATE INDEX backups_delete_due ON backups (delete_after) WHERE status = 'pending_delete';\n"
    "\n"
    /* One row per copy of a backup in another repository (the DR copy),
     * so copy lag and verification are queryable per tier. */
    "CREATE TABLE backup_copies (\n"
    "  backup_id text NOT NULL REFERENCES backups (id),\n"
    "  repo text NOT NULL " NAME_CHECK("repo") ",\n"
    "  status text NOT NULL CHECK (status IN ('copying', 'verified', 'failed', 'deleted')),\n"
    "  stored_sha256 bytea CHECK (octet_length(stored_sha256) = 32),\n"
    "  retain_until timestamptz,\n"
    "  lock_mode text CHECK (lock_mode IN ('governance', 'compliance')),\n"
    "  started_at timestamptz NOT NULL DEFAULT now(),\n"
    "  finished_at timestamptz,\n"
    "  attempts integer NOT NULL DEFAULT 1 CHECK (attempts >= 1),\n"
    "  failure_reason text,\n"
    "  PRIMARY KEY (backup_id, repo),\n"
    "  CHECK (status <> 'verified' OR (stored_sha256 IS NOT NULL AND finished_at IS NOT NULL)),\n"
    "  CHECK (status <> 'failed' OR failure_reason IS NOT NULL)\n"
    ");\n"
    "CREATE INDEX backup_copies_pending ON backup_copies (started_at)\n"
    "  WHERE status IN ('copying', 'failed');\n"
    "\n"
    /* WAL archived by agents, for the PITR window and its retention. */
    "CREATE TABLE wal_segments (\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  timeline integer NOT NULL CHECK (timeline > 0),\n"
    "  segment text NOT NULL CHECK (segment ~ '^[0-9A-F]{24}(\\.partial)?$'),\n"
    "  stored_bytes bigint NOT NULL CHECK (stored_bytes >= 0),\n"
    "  stored_sha256 bytea NOT NULL CHECK (octet_length(stored_sha256) = 32),\n"
    "  archived_at timestamptz NOT NULL,\n"
    "  received_at timestamptz NOT NULL DEFAULT now(),\n"
    "  deleted_at timestamptz,\n"
    "  PRIMARY KEY (service, timeline, segment)\n"
    ");\n"
    "CREATE INDEX wal_segments_archived ON wal_segments (service, archived_at)\n"
    "  WHERE deleted_at IS NULL;\n"
    "\n"
    /* Every event an agent sent, applied exactly once: the unique
     * (agent, seq) makes a resend a no-op even if the high-water mark in
     * agents.last_seq were wrong. */
    "CREATE TABLE events (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  agent text NOT NULL REFERENCES agents (name),\n"
    "  seq bigint NOT NULL CHECK (seq > 0),\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  type text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_.]{0,63}$'),\n"
    "  payload jsonb NOT NULL DEFAULT '{}',\n"
    "  sent_at timestamptz,\n"
    "  received_at timestamptz NOT NULL DEFAULT now(),\n"
    "  UNIQUE (agent, seq)\n"
    ");\n"
    "CREATE INDEX events_service_received ON events (service, received_at DESC);\n"
    "CREATE INDEX events_received ON events (received_at);\n"
    "\n"
    /* Refused requests, counted by reason and claimed agent name. The
     * name is whatever the envelope claimed, so it is not a foreign key
     * and is cut to a bounded length by the check. */
    "CREATE TABLE refusals (\n"
    "  reason text NOT NULL CHECK (reason ~ '^[a-z][a-z0-9_]{0,63}$'),\n"
    "  agent text NOT NULL DEFAULT '' CHECK (length(agent) <= 128),\n"
    "  count bigint NOT NULL DEFAULT 1 CHECK (count >= 1),\n"
    "  first_at timestamptz NOT NULL DEFAULT now(),\n"
    "  last_at timestamptz NOT NULL DEFAULT now(),\n"
    "  last_detail text CHECK (length(last_detail) <= 1024),\n"
    "  PRIMARY KEY (reason, agent)\n"
    ");\n"
    "\n"
    "CREATE TABLE holds (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  backup_id text NOT NULL REFERENCES backups (id),\n"
    "  reason text NOT NULL CHECK (reason <> ''),\n"
    "  placed_by text NOT NULL,\n"
    "  placed_at timestamptz NOT NULL DEFAULT now(),\n"
    "  released_by text,\n"
    "  released_at timestamptz,\n"
    "  CHECK ((released_at IS NULL) = (released_by IS NULL)),\n"
    "  CHECK (released_at IS NULL OR released_at >= placed_at)\n"
    ");\n"
    "CREATE UNIQUE INDEX holds_active ON holds (backup_id) WHERE released_at IS NULL;\n"
    "\n"
    /* Commands for agents (backup now, drill now), delivered in replies. */
    "CREATE TABLE agent_commands (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  kind text NOT NULL CHECK (kind IN ('backup', 'drill')),\n"
    "  args jsonb NOT NULL DEFAULT '{}',\n"
    "  requested_by text NOT NULL,\n"
    "  requested_at timestamptz NOT NULL DEFAULT now(),\n"
    "  delivered_to text REFERENCES agents (name),\n"
    "  delivered_at timestamptz,\n"
    "  done_at timestamptz,\n"
    "  CHECK ((delivered_at IS NULL) = (delivered_to IS NULL)),\n"
    "  CHECK (done_at IS NULL OR delivered_at IS NOT NULL)\n"
    ");\n"
    "CREATE INDEX agent_commands_undelivered ON agent_commands (service, requested_at)\n"
    "  WHERE delivered_at IS NULL;\n"
    "\n"
    "CREATE TABLE drills (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  backup_id text REFERENCES backups (id),\n"
    "  status text NOT NULL CHECK (status IN ('running', 'passed', 'failed')),\n"
    "  started_at timestamptz NOT NULL,\n"
    "  finished_at timestamptz,\n"
    "  received_at timestamptz NOT NULL DEFAULT now(),\n"
    "  restore_ms bigint CHECK (restore_ms >= 0),\n"
    "  rto_ms bigint CHECK (rto_ms >= 0),\n"
    "  checks jsonb NOT NULL DEFAULT '[]',\n"
    "  failure_reason text,\n"
    "  CHECK (status = 'running' OR finished_at IS NOT NULL),\n"
    "  CHECK (status <> 'failed' OR failure_reason IS NOT NULL)\n"
    ");\n"
    "CREATE INDEX drills_service_started ON drills (service, started_at DESC);\n"
    "\n"
    /* One row per (service, check) condition; dedup_key is what PagerDuty
     * sees, stable so trigger and resolve meet. */
    "CREATE TABLE alerts (\n"
    "  dedup_key text PRIMARY KEY CHECK (length(dedup_key) BETWEEN 1 AND 255),\n"
    "  service text REFERENCES services (name),\n"
    "  check_name text NOT NULL CHECK (check_name ~ '^[a-z][a-z0-9_.]{0,63}$'),\n"
    "  state text NOT NULL CHECK (state IN ('triggered', 'resolved')),\n"
    "  severity text NOT NULL DEFAULT 'error'\n"
    "    CHECK (severity IN ('critical', 'error', 'warning', 'info')),\n"
    "  summary text NOT NULL CHECK (length(summary) BETWEEN 1 AND 1024),\n"
    "  details jsonb NOT NULL DEFAULT '{}',\n"
    "  first_triggered_at timestamptz NOT NULL DEFAULT now(),\n"
    "  last_changed_at timestamptz NOT NULL DEFAULT now(),\n"
    "  resolved_at timestamptz,\n"
    "  CHECK ((state = 'resolved') = (resolved_at IS NOT NULL))\n"
    ");\n"
    "CREATE INDEX alerts_triggered ON alerts (service) WHERE state = 'triggered';\n"
    "\n"
    /* Notifications waiting to be sent, so a PagerDuty outage loses none. */
    "CREATE TABLE alert_outbox (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  dedup_key text NOT NULL,\n"
    "  action text NOT NULL CHECK (action IN ('trigger', 'resolve', 'change')),\n"
    "  target text NOT NULL CHECK (target IN ('pagerduty', 'webhook')),\n"
    "  payload jsonb NOT NULL,\n"
    "  created_at timestamptz NOT NULL DEFAULT now(),\n"
    "  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),\n"
    "  next_attempt_at timestamptz NOT NULL DEFAULT now(),\n"
    "  last_error text,\n"
    "  sent_at timestamptz\n"
    ");\n"
    "CREATE INDEX alert_outbox_due ON alert_outbox (next_attempt_at) WHERE sent_at IS NULL;\n"
    "\n"
    "CREATE TABLE audit (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  chain_seq bigint NOT NULL UNIQUE CHECK (chain_seq >= 1),\n"
    "  at timestamptz NOT NULL,\n"
    "  actor text NOT NULL CHECK (length(actor) BETWEEN 1 AND 256),\n"
    "  action text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_.]{0,63}$'),\n"
    "  subject text NOT NULL CHECK (length(subject) <= 256),\n"
    "  details jsonb NOT NULL DEFAULT '{}',\n"
    "  prev_mac bytea NOT NULL CHECK (octet_length(prev_mac) = 32),\n"
    "  mac bytea NOT NULL CHECK (octet_length(mac) = 32)\n"
    ");\n"
    "CREATE INDEX audit_at ON audit (at);\n"
    "\n"
    "CREATE TABLE audit_head (\n"
    "  id integer PRIMARY KEY CHECK (id = 1),\n"
    "  chain_seq bigint NOT NULL CHECK (chain_seq >= 0),\n"
    "  mac bytea NOT NULL CHECK (octet_length(mac) = 32)\n"
    ");\n"
    "INSERT INTO audit_head (id, chain_seq, mac) VALUES (1, 0, decode(repeat('00', 32), 'hex'));\n"
    "\n"
    "CREATE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
    "BEGIN\n"
    "  RAISE EXCEPTION 'the audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME\n"
    "    USING ERRCODE = 'insufficient_privilege',\n"
    "      HINT = 'audit rows are never changed or removed; append a new row instead';\n"
    "END\n"
    "$fn$;\n"
    "CREATE TRIGGER audit_no_update_delete BEFORE UPDATE OR DELETE ON audit\n"
    "  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();\n"
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();\n"
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit FROM PUBLIC;\n"
    "REVOKE ALL ON audit_head FROM PUBLIC;\n"
    /* audit_head is only ever moved forward together with an INSERT into
     * audit; a statement trigger keeps TRUNCATE off it too. */
    "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head\n"
    "  FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();\n"
    "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();\n";

/* Agent intake (coordinator/intake/intake.c): the envelope high-water mark that
 * refuses replays, kept apart from last_seq (the durable event high-water
 * mark) because an agent may send envelopes without durable events; and
 * the last hello and heartbeat, which are transient and never in `events`. */
static const char migration_2_sql[] =
    "ALTER TABLE agents ADD COLUMN last_envelope_seq bigint NOT NULL DEFAULT 0\n"
    "  CHECK (last_envelope_seq >= 0);\n"
    "ALTER TABLE agents ADD COLUMN hello jsonb;\n"
    "ALTER TABLE agents ADD COLUMN hello_at timestamptz;\n"
    "ALTER TABLE agents ADD COLUMN heartbeat jsonb;\n"
    "ALTER TABLE agents ADD COLUMN heartbeat_at timestamptz;\n"
    "COMMENT ON COLUMN agents.last_seq IS\n"
    "  'highest durable event seq applied from this agent (its last_event_seq)';\n";

/* Admin endpoint (coordinator/serve/admin.c): nonces of operator requests already
 * served, so a captured request cannot be replayed while its sent_at is
 * still inside the skew window; rows older than twice the window are
 * pruned, because no request that old can pass the time check anyway. */
static const char migration_3_sql[] =
    "CREATE TABLE admin_nonces (\n"
    "  nonce bytea PRIMARY KEY CHECK (octet_length(nonce) BETWEEN 16 AND 64),\n"
    "  operator text NOT NULL CHECK (length(operator) BETWEEN 1 AND 64),\n"
    "  seen_at timestamptz NOT NULL\n"
    ");\n"
    "CREATE INDEX admin_nonces_seen ON admin_nonces (seen_at);\n";

/* Retention (coordinator/policy/prune.c). settled_at is the coordinator's own
 * time for a backup's outcome, stamped by a trigger so no writer can forget
 * it (finished_at is the agent's clock, which retention must not trust);
 * pending_since is when a backup became pending deletion. A failed backup
 * has no digest or manifest, yet it too goes through pending_delete and
 * deleted, so the completeness check is relaxed for rows that carry a
 * failure_reason. Deletion attempts, their last error and the outcome
 * ("deleted", or "gone" when nothing was left) are kept on the row;
 * verify_failed_at marks a backup that verification found corrupt (not
 * restorable); services.removed_at records that a service's section left
 * the configuration (its backups are kept). */
static const char migration_4_sql[] =
    "ALTER TABLE services ADD COLUMN removed_at timestamptz;\n"
    "ALTER TABLE backups ADD COLUMN settled_at timestamptz;\n"
    "ALTER TABLE backups ADD COLUMN pending_since timestamptz;\n"
    "ALTER TABLE backups ADD COLUMN verify_failed_at timestamptz;\n"
    "ALTER TABLE backups ADD COLUMN delete_attempts integer NOT NULL DEFAULT 0\n"
    "  CHECK (delete_attempts >= 0);\n"
    "ALTER TABLE backups ADD COLUMN delete_error text CHECK (length(delete_error) <= 1024);\n"
    "ALTER TABLE backups ADD COLUMN delete_outcome text\n"
    "  CHECK (delete_outcome IN ('deleted', 'gone'));\n"
    "UPDATE backups SET settled_at = received_at WHERE status <> 'running';\n"
    "UPDATE backups SET pending_since = updated_at WHERE status = 'pending_delete';\n"
    "ALTER TABLE backups DROP CONSTRAINT backups_check3;\n"
    "ALTER TABLE backups ADD CONSTRAINT backups_complete_check CHECK (\n"
    "  status NOT IN ('completed', 'pending_delete', 'deleted') OR\n"
    "  (stored_sha256 IS NOT NULL AND stored_bytes IS NOT NULL AND manifest IS NOT NULL\n"
    "   AND key_id IS NOT NULL) OR\n"
    "  (status <> 'completed' AND failure_reason IS NOT NULL));\n"
    "ALTER TABLE backups ADD CONSTRAINT backups_pending_check\n"
    "  CHECK (status <> 'pending_delete' OR pending_since IS NOT NULL);\n"
    "ALTER TABLE backups ADD CONSTRAINT backups_outcome_check\n"
    "  CHECK (status = 'deleted' OR delete_outcome IS NULL);\n"
    "CREATE FUNCTION backups_stamp_settled() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
    "BEGIN\n"
    "  IF NEW.status IN ('completed', 'failed') AND NEW.settled_at IS NULL THEN\n"
    "    NEW.settled_at := now();\n"
    "  END IF;\n"
    "  RETURN NEW;\n"
    "END\n"
    "$fn$;\n"
    "CREATE TRIGGER backups_settled BEFORE INSERT OR UPDATE ON backups\n"
    "  FOR EACH ROW EXECUTE FUNCTION backups_stamp_settled();\n";

/* Alerts (coordinator/watch/alerts.c, notify.c): an outbox row's delivery state
 * and its service (whose routing key is looked up at send time, so the key
 * never enters the catalog); a per-service mark of the last success that a
 * change event was enqueued for, so a restart neither repeats nor skips
 * them. */
static const char migration_5_sql[] =
    "ALTER TABLE alert_outbox ADD COLUMN service text;\n"
    "ALTER TABLE alert_outbox ADD COLUMN state text NOT NULL DEFAULT 'pending'\n"
    "  CHECK (state IN ('pending', 'delivered', 'failed'));\n"
    "ALTER TABLE alert_outbox ADD CONSTRAINT alert_outbox_sent_check\n"
    "  CHECK ((state = 'delivered') = (sent_at IS NOT NULL));\n"
    "CREATE INDEX alert_outbox_pending ON alert_outbox (next_attempt_at, id)\n"
    "  WHERE state = 'pending';\n"
    "CREATE INDEX alert_outbox_key_pending ON alert_outbox (dedup_key, target, id)\n"
    "  WHERE state = 'pending';\n"
    "ALTER TABLE services ADD COLUMN alerts_success_mark timestamptz;\n";

/* Restore drills and integrity sweeps (coordinator/drill/drills.c). A drill
 * runner is an agent of no service: agents.service is NULL exactly for the
 * role 'drill_runner', so every query that finds "the service's agents"
 * (backup commands, quiet-agent alerts, status) never picks a runner, and
 * drill_runner_services lists what a runner may drill. A drill row keeps
 * the runner, the repository, the command that carries it and the times
 * the runner measured; drill_schedules remembers when a service's drill
 * schedule appeared (its first due slot is the next one after that).
 * integrity_checks keeps one row per object checked by the sweep and
 * integrity_sweeps one per pass, so "never swept" and "sweep overdue" are
 * queries. */
static const char migration_7_sql[] =
    "ALTER TABLE agents DROP CONSTRAINT agents_role_check;\n"
    "UPDATE agents SET role = 'service' WHERE role = 'agent';\n"
    "ALTER TABLE agents ALTER COLUMN role SET DEFAULT 'service';\n"
    "ALTER TABLE agents ADD CONSTRAINT agents_role_check\n"
    "  CHECK (role IN ('service', 'drill_runner'));\n"
    "ALTER TABLE agents ALTER COLUMN service DROP NOT NULL;\n"
    "\n"
    "CREATE TABLE drill_runner_services (\n"
    "  agent text NOT NULL REFERENCES agents (name),\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  added_at timestamptz NOT NULL DEFAULT now(),\n"
    "  added_by text NOT NULL,\n"
    "  PRIMARY KEY (agent, service)\n"
    ");\n"
    "CREATE INDEX drill_runner_services_service ON drill_runner_services (service);\n"
    /* No code set role drill_runner before this migration; should a row
     * have it, its service becomes the one it may drill. */
    "INSERT INTO drill_runner_services (agent, service, added_by)\n"
    "  SELECT name, service, 'migration 7' FROM agents WHERE role = 'drill_runner';\n"
    "UPDATE agents SET service = NULL WHERE role = 'drill_runner';\n"
    "ALTER TABLE agents ADD CONSTRAINT agents_service_role_check\n"
    "  CHECK ((role = 'service') = (service IS NOT NULL));\n"
    "\n"
    "ALTER TABLE drills ADD COLUMN runner text REFERENCES agents (name);\n"
    "ALTER TABLE drills ADD COLUMN repo text NOT NULL DEFAULT 'primary'\n"
    "  CHECK (repo IN ('primary', 'dr'));\n"
    "ALTER TABLE drills ADD COLUMN command_id bigint REFERENCES agent_commands (id);\n"
    "ALTER TABLE drills ADD COLUMN requested_by text NOT NULL DEFAULT 'schedule';\n"
    "ALTER TABLE drills ADD COLUMN total_ms bigint CHECK (total_ms >= 0);\n"
    "ALTER TABLE drills ADD COLUMN sandbox text CHECK (length(sandbox) <= 128);\n"
    "ALTER TABLE drills ADD COLUMN announced_at timestamptz;\n"
    "CREATE INDEX drills_running ON drills (service) WHERE status = 'running';\n"
    "\n"
    "CREATE TABLE drill_schedules (\n"
    "  service text PRIMARY KEY REFERENCES services (name),\n"
    "  schedule text NOT NULL,\n"
    "  since timestamptz NOT NULL\n"
    ");\n"
    "\n"
    "CREATE TABLE integrity_sweeps (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  started_at timestamptz NOT NULL,\n"
    "  finished_at timestamptz,\n"
    "  checked integer NOT NULL DEFAULT 0 CHECK (checked >= 0),\n"
    "  failed integer NOT NULL DEFAULT 0 CHECK (failed >= 0),\n"
    "  announced_at timestamptz\n"
    ");\n"
    "CREATE TABLE integrity_checks (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  sweep_id bigint NOT NULL REFERENCES integrity_sweeps (id),\n"
    "  backup_id text NOT NULL REFERENCES backups (id),\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  repo text NOT NULL CHECK (repo IN ('primary', 'dr')),\n"
    "  object text NOT NULL CHECK (object IN ('data', 'manifest.json')),\n"
    "  ok boolean NOT NULL,\n"
    "  expected_sha256 bytea CHECK (octet_length(expected_sha256) = 32),\n"
    "  actual_sha256 bytea CHECK (octet_length(actual_sha256) = 32),\n"
    "  expected_bytes bigint,\n"
    "  actual_bytes bigint,\n"
    "  detail text CHECK (length(detail) <= 1024),\n"
    "  checked_at timestamptz NOT NULL,\n"
    "  CHECK (ok OR detail IS NOT NULL)\n"
    ");\n"
    "CREATE INDEX integrity_checks_backup ON integrity_checks (backup_id, repo, checked_at DESC);\n"
    "CREATE INDEX integrity_checks_service ON integrity_checks (service, checked_at DESC);\n";

/* Number 6 was held for the DR copy while it had not landed; catalogs
 * have since applied it as a no-op, so it stays one (numbers may not have
 * gaps) and the DR copy's schema is number 8. */
static const char migration_6_sql[] = "SELECT 1;\n";

/* The DR copy (coordinator/dr/drcopy.c). backup_copies gets the retry clock
 * (a failed copy waits next_attempt_at, doubling up to [dr] retry_max), the
 * bytes copied and the DR object versions; a 'copying' row is a copy that is
 * due and not yet verified, created when the policy first wants it, so lag
 * is now - started_at. attested_at marks backups whose coordinator
 * attestation (coordinator/dr/attest.h) is in the primary repository, which
 * rebuild-catalog needs to trust the agent's key. wal_segments.dr_copied_at
 * marks WAL verified in the DR repository (point-in-time recovery from DR). */
static const char migration_8_sql[] =
    "ALTER TABLE backup_copies ADD COLUMN next_attempt_at timestamptz;\n"
    "ALTER TABLE backup_copies ADD COLUMN stored_bytes bigint CHECK (stored_bytes >= 0);\n"
    "ALTER TABLE backup_copies ADD COLUMN versions jsonb;\n"
    "ALTER TABLE backups ADD COLUMN attested_at timestamptz;\n"
    "ALTER TABLE wal_segments ADD COLUMN dr_copied_at timestamptz;\n"
    "CREATE INDEX wal_segments_dr_due ON wal_segments (archived_at)\n"
    "  WHERE dr_copied_at IS NULL AND deleted_at IS NULL;\n"
    "CREATE INDEX backups_unattested ON backups (finished_at)\n"
    "  WHERE status = 'completed' AND attested_at IS NULL;\n";

/* WAL continuity per cluster: a service whose cluster was rebuilt (initdb,
 * pg_upgrade) archives the same segment names again under a new system
 * identifier, so the identifier joins the key (and the repository key,
 * common/repo/repo.h). Rows recorded before take the identifier of the service's
 * newest backup that names one, else of its agent's hello; 0 where neither
 * says (development catalogs only: no release recorded WAL without it). */
static const char migration_9_sql[] =
    "ALTER TABLE wal_segments ADD COLUMN system_identifier numeric(20, 0)\n"
    "  CHECK (system_identifier >= 0);\n"
    "UPDATE wal_segments w SET system_identifier = COALESCE(\n"
    "  (SELECT b.system_identifier FROM backups b WHERE b.service = w.service\n"
    "     AND b.system_identifier IS NOT NULL ORDER BY b.finished_at DESC NULLS LAST LIMIT 1),\n"
    "  (SELECT (a.hello->>'system_identifier')::numeric FROM agents a\n"
    "     WHERE a.service = w.service AND a.hello->>'system_identifier' ~ '^[0-9]{1,20}$'\n"
    "     ORDER BY a.name LIMIT 1),\n"
    "  0);\n"
    "ALTER TABLE wal_segments ALTER COLUMN system_identifier SET NOT NULL;\n"
    "ALTER TABLE wal_segments DROP CONSTRAINT wal_segments_pkey;\n"
    "ALTER TABLE wal_segments ADD PRIMARY KEY (service, system_identifier, timeline, segment);\n";

/* Agents are revoked and services retired, never removed or renamed: the
 * database now refuses DELETE, TRUNCATE and renaming on both, which keeps
 * every row naming them whole. With that, the per-row foreign-key checks
 * on the two tables written for every event (events, backups) prove
 * nothing more, and they were a quarter of the catalog's work per event
 * (tests/bench/intake_floor.sh, 128 events per envelope: 26,564 events/s
 * with them, 35,133 without). Their only writers take the agent's name
 * and service from its row, locked in the same transaction. */
static const char migration_10_sql[] =
    "CREATE FUNCTION coffer_refuse_removal() RETURNS trigger LANGUAGE plpgsql AS $fn$\n"
    "BEGIN\n"
    "  RAISE EXCEPTION '% on % refused: events, backups and the audit name its rows',\n"
    "    TG_OP, TG_TABLE_NAME\n"
    "    USING ERRCODE = 'insufficient_privilege',\n"
    "      HINT = 'agents are revoked (coffer agents revoke) and services retired from the "
    "config, never removed or renamed';\n"
    "END\n"
    "$fn$;\n"
    "CREATE TRIGGER agents_kept BEFORE DELETE OR UPDATE OF name ON agents\n"
    "  FOR EACH ROW EXECUTE FUNCTION coffer_refuse_removal();\n"
    "CREATE TRIGGER agents_kept_truncate BEFORE TRUNCATE ON agents\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION coffer_refuse_removal();\n"
    "CREATE TRIGGER services_kept BEFORE DELETE OR UPDATE OF name ON services\n"
    "  FOR EACH ROW EXECUTE FUNCTION coffer_refuse_removal();\n"
    "CREATE TRIGGER services_kept_truncate BEFORE TRUNCATE ON services\n"
    "  FOR EACH STATEMENT EXECUTE FUNCTION coffer_refuse_removal();\n"
    "ALTER TABLE events DROP CONSTRAINT events_agent_fkey,\n"
    "  DROP CONSTRAINT events_service_fkey;\n"
    "ALTER TABLE backups DROP CONSTRAINT backups_agent_fkey,\n"
    "  DROP CONSTRAINT backups_service_fkey;\n";

/* No statement reads `events` by time (the metrics count per agent's
 * high-water mark instead of scanning it), and every event pays for each
 * index on it: the two time indexes go. */
static const char migration_11_sql[] =
    "DROP INDEX events_service_received;\n"
    "DROP INDEX events_received;\n";

/* Per-row checks made cheap. PostgreSQL's regular expressions expand a
 * bounded repetition such as {0,127} into that many states: checking one
 * backup id took 16 us, and the four such checks on the rows of a
 * backup.started event were a fifth of all CPU on the intake bench's host
 * (perf, 1,000 agents). The same rules, as an unbounded class and a
 * length, check in well under 1 us. */
#define FAST_CHECK(table, col, max, re)                                              \
	"ALTER TABLE " table " DROP CONSTRAINT " table "_" col "_check,\n"         \
	"  ADD CONSTRAINT " table "_" col "_check CHECK (length(" col ") <= " max \
	" AND " col " ~ '" re "');\n"
#define FAST_NAME_CHECK(table, col) FAST_CHECK(table, col, "64", "^[A-Za-z0-9][A-Za-z0-9_.-]*$")
static const char migration_12_sql[] =
    FAST_NAME_CHECK("services", "name")
    FAST_NAME_CHECK("agents", "name")
    FAST_NAME_CHECK("backups", "repo")
    FAST_NAME_CHECK("backup_copies", "repo")
    FAST_CHECK("backups", "id", "128", "^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    FAST_CHECK("events", "type", "64", "^[a-z][a-z0-9_.]*$")
    FAST_CHECK("refusals", "reason", "64", "^[a-z][a-z0-9_]*$")
    FAST_CHECK("alerts", "check_name", "64", "^[a-z][a-z0-9_.]*$")
    FAST_CHECK("audit", "action", "64", "^[a-z][a-z0-9_.]*$")
    "ALTER TABLE wal_segments DROP CONSTRAINT wal_segments_segment_check,\n"
    "  ADD CONSTRAINT wal_segments_segment_check CHECK (\n"
    "    length(segment) = 24 AND segment ~ '^[0-9A-F]*$'\n"
    "    OR length(segment) = 32 AND segment ~ '^[0-9A-F]*\\.partial$');\n"
    /* The same for the trigger that stamps settled_at: a WHEN clause is
     * evaluated without calling PL/pgSQL, and most rows written (every
     * backup.started) are running, with nothing to stamp. */
    "DROP TRIGGER backups_settled ON backups;\n"
    "CREATE TRIGGER backups_settled BEFORE INSERT OR UPDATE ON backups FOR EACH ROW\n"
    "  WHEN (NEW.status IN ('completed', 'failed') AND NEW.settled_at IS NULL)\n"
    "  EXECUTE FUNCTION backups_stamp_settled();\n";

/* A revoked agent's revocation, once written to the repositories
 * (coordinator/dr/attest.h), so that a catalog rebuilt from them keeps it
 * revoked. */
static const char migration_13_sql[] =
    "ALTER TABLE agents ADD COLUMN revocation_exported_at timestamptz\n"
    "  CHECK (revocation_exported_at IS NULL OR revoked_at IS NOT NULL);\n"
    "CREATE INDEX agents_revocation_due ON agents (revoked_at)\n"
    "  WHERE revoked_at IS NOT NULL AND revocation_exported_at IS NULL;\n";

/* Integrity checks are pruned (coordinator/drill/drills.c: every check is also
 * an audit row, and the newest check of each object is kept), so the
 * counter of checks ever made lives in a table of its own. */
static const char migration_14_sql[] =
    "CREATE TABLE integrity_totals (\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  result text NOT NULL CHECK (result IN ('passed', 'failed')),\n"
    "  count bigint NOT NULL CHECK (count >= 0),\n"
    "  PRIMARY KEY (service, result)\n"
    ");\n"
    "INSERT INTO integrity_totals (service, result, count)\n"
    "  SELECT service, CASE WHEN ok THEN 'passed' ELSE 'failed' END, count(*)\n"
    "  FROM integrity_checks GROUP BY 1, 2;\n"
    "CREATE INDEX integrity_checks_checked ON integrity_checks (checked_at);\n";

/* Interrupted backups settle (docs/OPERATIONS.md, "A killed backup"): a
 * backup still running past [alerts] completion_window + abandon_grace
 * becomes 'abandoned' (coordinator/watch/alerts.c), with the time it was
 * given up and why; a late completed or failed event still applies. The
 * failure_reason lets retention treat it as the failed backup it is
 * (pending_delete needs a digest or a reason). reclaim_totals counts what
 * retention's orphan sweep removed (coordinator/policy/prune.c), for
 * /metrics. */
static const char migration_15_sql[] =
    "ALTER TABLE backups DROP CONSTRAINT backups_status_check,\n"
    "  ADD CONSTRAINT backups_status_check CHECK (status IN\n"
    "    ('running', 'completed', 'failed', 'pending_delete', 'deleted', 'abandoned'));\n"
    "ALTER TABLE backups ADD COLUMN abandoned_at timestamptz;\n"
    "ALTER TABLE backups ADD CONSTRAINT backups_abandoned_check CHECK (\n"
    "  status <> 'abandoned' OR (abandoned_at IS NOT NULL AND failure_reason IS NOT NULL));\n"
    "CREATE INDEX backups_abandoned ON backups (service) WHERE status = 'abandoned';\n"
    "CREATE TABLE reclaim_totals (\n"
    "  service text PRIMARY KEY REFERENCES services (name),\n"
    "  backups bigint NOT NULL DEFAULT 0 CHECK (backups >= 0),\n"
    "  objects bigint NOT NULL DEFAULT 0 CHECK (objects >= 0),\n"
    "  bytes bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0)\n"
    ");\n";

/* What each agent's newest heartbeat says of its state directory
 * (agent/outbox/statedir.h), for agent_disk_full and the
 * coffer_agent_state_free_bytes metric: columns rather than keys of the
 * heartbeat jsonb so the check reads them without parsing JSON. NULL: the
 * agent has not reported them (older than the fields, or no heartbeat). */
static const char migration_16_sql[] =
    "ALTER TABLE agents ADD COLUMN state_free_bytes bigint CHECK (state_free_bytes >= 0);\n"
    "ALTER TABLE agents ADD COLUMN state_write_nospace boolean;\n"
    "ALTER TABLE agents ADD COLUMN state_nospace_since timestamptz;\n";

/* Each agent's clock skew as the intake measures it (coordinator/intake/skew.c):
 * the estimate in ms (agent minus coordinator; positive is ahead), the start
 * of the window it was taken in, and when the last sample arrived. NULL
 * until the agent's first envelope after this migration. */
static const char migration_17_sql[] =
    "ALTER TABLE agents ADD COLUMN clock_skew_ms bigint;\n"
    "ALTER TABLE agents ADD COLUMN clock_skew_since timestamptz;\n"
    "ALTER TABLE agents ADD COLUMN clock_skew_at timestamptz;\n"
    "ALTER TABLE agents ADD CONSTRAINT agents_clock_skew_check\n"
    "  CHECK ((clock_skew_ms IS NULL) = (clock_skew_since IS NULL)\n"
    "    AND (clock_skew_ms IS NULL) = (clock_skew_at IS NULL));\n"
    /* "Latest" and "since" are asked of the coordinator's times now
     * (alerts, status, metrics, drills): the index the agent's finished_at
     * had, for them. */
    "CREATE INDEX backups_service_settled ON backups\n"
    "  (service, (COALESCE(settled_at, received_at)) DESC);\n"
    "CREATE INDEX backups_service_received ON backups (service, received_at DESC);\n";

/* audit verify derives agents' keys and revocations from the chain: an
 * agents row is checked against its agent's enroll and revoke rows. */
static const char migration_18_sql[] =
    "CREATE INDEX audit_agent_rows ON audit (subject, chain_seq)\n"
    "  WHERE action IN ('agent.enroll', 'agent.revoke', 'agent.revoke_rebuilt');\n";

/* WAL objects bound to their names (docs/PITR.md, "Objects at the wrong
 * name"): when a segment's key was taken by an object that is not the
 * cluster's authentic file, wal-push stores it under an alternate name,
 * which retention and the DR copy must use (object_name; NULL: the
 * segment's own name). Each such conflict, of any WAL file, is kept in
 * wal_conflicts for the wal_object_conflict page and the record. */
static const char migration_19_sql[] =
    "ALTER TABLE wal_segments ADD COLUMN object_name text CHECK (object_name ~\n"
    "  '^[0-9A-F]{24}(\\.partial)?\\.alt-[0-9a-f]{32}$');\n"
    "CREATE TABLE wal_conflicts (\n"
    "  id bigserial PRIMARY KEY,\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  agent text NOT NULL,\n"
    "  system_identifier numeric(20, 0) NOT NULL,\n"
    "  timeline integer NOT NULL,\n"
    "  name text NOT NULL,\n"
    "  object_name text NOT NULL,\n"
    "  reason text NOT NULL,\n"
    "  reported_at timestamptz NOT NULL DEFAULT now()\n"
    ");\n"
    "CREATE INDEX wal_conflicts_service ON wal_conflicts (service, reported_at);\n";

/* The version of each object of a completed backup in the primary
 * repository, as the coordinator found it on first seeing the backup
 * (coordinator/drill/integrity.c): restores of record, the DR copy and the
 * sweep read that version, and a current version that differs is a
 * replacement (repository_object_replaced). version_id NULL: the store was
 * not versioned then. replaced_by: the current version a check found in its
 * place (NULL: none). */
static const char migration_20_sql[] =
    "CREATE TABLE backup_objects (\n"
    "  backup_id text NOT NULL REFERENCES backups (id),\n"
    "  object text NOT NULL CHECK (object IN ('data', 'manifest.json')),\n"
    "  version_id text CHECK (version_id <> '' AND length(version_id) <= 256),\n"
    "  size bigint NOT NULL CHECK (size >= 0),\n"
    "  recorded_at timestamptz NOT NULL,\n"
    "  PRIMARY KEY (backup_id, object)\n"
    ");\n"
    "ALTER TABLE integrity_checks ADD COLUMN replaced_by text\n"
    "  CHECK (length(replaced_by) <= 256);\n";

/* A completed backup is a fact only once the coordinator has checked it
 * (coordinator/drill/verify.c; docs/OPERATIONS.md, "Unverified backups"):
 * verify_state is 'unverified' from the agent's completed event until the
 * coordinator read the manifest from the repository, checked its signature
 * against the agent's enrolled key, its digest and names against the row,
 * and the data object's size; then 'verified' or 'rejected' (with
 * verify_reason). Freshness, retention tiers, status, drills and the DR copy
 * count verified backups only. Backups completed before this migration were
 * never checked this way and are marked verified with a reason saying so,
 * so an upgrade neither pages nor empties retention tiers; the integrity
 * sweep still checks their bytes. */
static const char migration_21_sql[] =
    "ALTER TABLE backups ADD COLUMN verify_state text NOT NULL DEFAULT 'unverified'\n"
    "  CHECK (verify_state IN ('unverified', 'verified', 'rejected'));\n"
    "ALTER TABLE backups ADD COLUMN verified_at timestamptz;\n"
    "ALTER TABLE backups ADD COLUMN verify_reason text CHECK (length(verify_reason) <= 1024);\n"
    "UPDATE backups SET verify_state = 'verified', verified_at = now(),\n"
    "  verify_reason = 'completed before migration 21: not checked by the coordinator'\n"
    "  WHERE status IN ('completed', 'pending_delete', 'deleted') AND failure_reason IS NULL;\n"
    "ALTER TABLE backups ADD CONSTRAINT backups_verify_check CHECK (\n"
    "  (verify_state = 'unverified') = (verified_at IS NULL)\n"
    "  AND (verify_state <> 'rejected' OR verify_reason IS NOT NULL));\n"
    "CREATE INDEX backups_unverified ON backups (received_at)\n"
    "  WHERE status = 'completed' AND verify_state = 'unverified';\n";
/* Escrowed keys (coordinator/dr/drescrow.c): one row per key of a service
 * whose escrow object the DR copier copied into DR and read back, for the
 * key_not_escrowed alert and the runbook (docs/OPERATIONS.md, "An agent
 * host is gone"). key_created_at is the key's creation in its ring. */
static const char migration_22_sql[] =
    "CREATE TABLE key_escrows (\n"
    "  service text NOT NULL REFERENCES services (name),\n"
    "  key_id text NOT NULL CHECK (key_id ~ '^[A-Za-z0-9._-]{1,64}$'),\n"
    "  recipient text NOT NULL CHECK (recipient ~ '^[0-9a-f]{32}$'),\n"
    "  key_created_at timestamptz NOT NULL,\n"
    "  sha256 bytea NOT NULL CHECK (octet_length(sha256) = 32),\n"
    "  dr_version text,\n"
    "  copied_at timestamptz NOT NULL DEFAULT now(),\n"
    "  PRIMARY KEY (service, key_id)\n"
    ");\n";

/* Pruning `events` by age (coordinator/catalog/history.h) needs to find
 * the oldest rows without the btree migration 11 dropped: a BRIN index is
 * a few pages for the whole table and costs an insert next to nothing,
 * since rows arrive in time order. */
static const char migration_23_sql[] =
    "CREATE INDEX events_received_brin ON events USING brin (received_at);\n";

/* clang-format on */

static const coord_migration migrations[] = {
	{ 1, "initial schema", migration_1_sql },
	{ 2, "agent intake", migration_2_sql },
	{ 3, "admin nonces", migration_3_sql },
	{ 4, "retention", migration_4_sql },
	{ 5, "alert outbox", migration_5_sql },
	{ 6, "reserved for the dr copy", migration_6_sql },
	{ 7, "drills and integrity", migration_7_sql },
	{ 8, "dr copy", migration_8_sql },
	{ 9, "wal per cluster", migration_9_sql },
	{ 10, "agents and services kept", migration_10_sql },
	{ 11, "events without time indexes", migration_11_sql },
	{ 12, "cheaper per-row checks", migration_12_sql },
	{ 13, "revocations exported", migration_13_sql },
	{ 14, "integrity totals", migration_14_sql },
	{ 15, "abandoned backups and reclaimed orphans", migration_15_sql },
	{ 16, "agent state directory", migration_16_sql },
	{ 17, "agent clock skew", migration_17_sql },
	{ 18, "agents checked against the audit log", migration_18_sql },
	{ 19, "wal objects at the wrong name", migration_19_sql },
	{ 20, "object versions", migration_20_sql },
	{ 21, "completed backups verified by the coordinator", migration_21_sql },
	{ 22, "escrowed keys", migration_22_sql },
	{ 23, "events pruned by age", migration_23_sql },
};

const coord_migration *
coord_migrations_list(size_t *n)
{
	*n = sizeof(migrations) / sizeof(migrations[0]);
	return (migrations);
}
