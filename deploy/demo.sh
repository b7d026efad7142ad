#!/usr/bin/env bash
# The main job end to end, on a throwaway local PostgreSQL, for a new user to
# watch: install packages, build, create a service database with a million
# rows, start a coordinator (catalog in the same PostgreSQL, mutual TLS with
# a development CA), enroll an agent (key ring, signing key, repository),
# check both installs for real (`check`), let the agent daemon take the scheduled backup and report it, show it in
# `coffer status`, then verify and restore it into a new database and
# compare row counts. Then point-in-time recovery on a second throwaway
# cluster that archives its WAL through the agent: a base backup, rows
# committed one by one, the recoverable window (`coffer-agent list`), a dry
# run and a restore to a moment between two commits. Everything lives in one scratch directory that is
# removed at the end (KEEP_TMP=1 keeps it). Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "installing packages (apt-get; skipped if present)"
./deploy/install-deps.sh

step "building (build-demo/)"
cmake -S . -B build-demo -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-demo -j"$(nproc)" >/dev/null
export COFFER_BIN=$src/build-demo/bin
agent=$COFFER_BIN/coffer-agent
# shellcheck source=../tests/integration/lib.sh
source "$src/tests/integration/lib.sh"
t_init demo

step "starting a throwaway PostgreSQL 15 in $T/pg"
pg_start "$T/pg"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database billing"
"$PG_BINDIR/pgbench" -q -i -s 10 -h "$PG_HOST" -p "$PG_PORT" -U postgres billing 2>&1 | tail -1
psql_at "$PG_CONNINFO dbname=billing" -c "select 'pgbench_accounts rows: ' || count(*) from pgbench_accounts"

step "starting the coordinator (catalog, policy, audit) with a development CA"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database coffer"
pki=$T/pki
"$src/deploy/certs.sh" "$pki" server localhost >/dev/null
"$src/deploy/certs.sh" "$pki" client billing-db-1 >/dev/null
"$src/deploy/certs.sh" "$pki" client alice >/dev/null
coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
"$cli" init --out "$T/alice.key" >"$T/alice.pub"
"$coord" audit-keygen --out "$T/audit.key" >/dev/null
mkdir -p "$T/state" "$T/repo" "$T/coord-state"
cat >"$T/coordinator.conf" <<CONF
[coordinator]
listen = tls+tcp://127.0.0.1:0
admin_listen = tls+tcp://127.0.0.1:0
catalog = $PG_CONNINFO dbname=coffer
# A demo on one superuser; production uses two roles (docs/CATALOG.md).
development = true
audit_key = $T/audit.key
state_dir = $T/coord-state
[tls]
ca = $pki/ca.crt
cert = $pki/localhost.crt
key = $pki/localhost.key
[repository.primary]
type = posix
path = $T/repo
[operator.alice]
public_key = $T/alice.pub
role = operator
[service.billing]
owner = team-payments
schedule = * * * * *
timezone = Europe/Rome
retention.daily = 7
retention.weekly = 4
retention.monthly = 12
retention.min_redundancy = 2
CONF
"$coord" check-config -c "$T/coordinator.conf"
"$coord" migrate -c "$T/coordinator.conf" | tail -1
"$coord" run -c "$T/coordinator.conf" 2>"$T/coordinator.log" &
coord_pid=$!
for _ in $(seq 100); do grep -q "admin endpoint listening" "$T/coordinator.log" && break; sleep 0.1; done
port=$(sed -n 's/.*msg="coordinator listening".* port=\([0-9]*\).*/\1/p' "$T/coordinator.log")
aport=$(sed -n 's/.*msg="admin endpoint listening".* port=\([0-9]*\).*/\1/p' "$T/coordinator.log")
cat >"$T/cli.conf" <<CONF
[coffer]
url = tls+tcp://127.0.0.1:$aport
operator = alice
key = $T/alice.key
ca = $pki/ca.crt
cert = $pki/alice.crt
key_tls = $pki/alice.key
server_name = localhost
CONF
export COFFER_CONFIG=$T/cli.conf
echo "coordinator on port $port, admin endpoint on port $aport"

step "setting up the agent for service 'billing'"
cat >"$T/agent.conf" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $PG_CONNINFO dbname=billing
bin_dir = $PG_BINDIR
[schedule]
# every minute, so the demo does not wait long; production: 0 2 * * *
logical = * * * * *
completion_window = 5m
[repository.primary]
type = posix
path = $T/repo
[coordinator]
url = tls+tcp://localhost:$port
ca = $pki/ca.crt
cert = $pki/billing-db-1.crt
key = $pki/billing-db-1.key
heartbeat = 10s
CONF
cat "$T/agent.conf"
echo "key-encryption key: $("$agent" keygen --out "$T/billing.keys")"
"$agent" init -c "$T/agent.conf" >"$T/agent.pub"
echo "agent public key: $(cat "$T/agent.pub")"
"$cli" agents enroll --service billing --agent billing-db-1 --pubkey "$T/agent.pub"

step "checking both installs for real before the first backup (exit 0 ok, 1 warning, 2 critical)"
# Each line names what was tested and, when it is not ok, the fix. Warnings
# are expected in a demo: one superuser for the catalog (development = true),
# no DR bucket, no PagerDuty key, and this PostgreSQL does not archive WAL.
rc=0
"$coord" check -c "$T/coordinator.conf" || rc=$?
echo "coffer-coordinator check exited $rc"
[[ $rc -le 1 ]] || { echo "the coordinator check found a critical problem" >&2; exit 1; }
rc=0
"$agent" check -c "$T/agent.conf" --timeout 30s || rc=$?
echo "coffer-agent check exited $rc"
[[ $rc -le 1 ]] || { echo "the agent check found a critical problem" >&2; exit 1; }

step "running the agent daemon until its first scheduled backup (up to a minute)"
"$agent" run -c "$T/agent.conf" 2>"$T/agent.log" &
daemon=$!
for _ in $(seq 150); do
	grep -q 'msg="backup completed"\|msg="backup failed"' "$T/agent.log" && break
	sleep 1
done
kill -TERM "$daemon"
wait "$daemon" || true
cat "$T/agent.log"
grep -q 'msg="backup completed"' "$T/agent.log" || { echo "the scheduled backup did not complete" >&2; exit 1; }

step "what the coordinator knows (coffer status, as the operator sees it)"
for _ in $(seq 50); do
	"$cli" backups list --service billing --output json 2>/dev/null | grep -q '"completed"' && break
	sleep 0.2
done
"$cli" status
"$cli" backups list --service billing
"$cli" audit list --output json | head -c 600; echo
"$cli" audit verify

step "what is in the repository (ciphertext only)"
"$agent" list -c "$T/agent.conf"
find "$T/repo" -type f -printf '%8s bytes  %P\n'

step "verifying the backup: signature, decryption, every digest"
"$agent" verify -c "$T/agent.conf" --backup latest

step "restoring it into a new database and comparing row counts with the manifest"
"$agent" restore -c "$T/agent.conf" --backup latest --target-db billing_restored --jobs 2
psql_at "$PG_CONNINFO dbname=billing_restored" -c "select 'restored pgbench_accounts rows: ' || count(*) from pgbench_accounts"

step "point-in-time recovery: a second cluster archiving its WAL through the agent"
# PostgreSQL runs archive_command as postgres, so this service's agent files
# are postgres's, and postgres gets its own copy of the binary.
P=$T/pitr
mkdir -p "$P/bin" "$P/state" "$P/repo"
cp "$agent" "$P/bin/coffer-agent"
chmod 755 "$P" "$P/bin" "$P/bin/coffer-agent"
pagent=$P/bin/coffer-agent
pconf=$P/agent.conf
pg_start "$P/pg" "wal_level = replica" "archive_mode = on" \
	"archive_command = '$pagent wal-push -c $pconf %p'"
pci="$PG_CONNINFO dbname=postgres"
cat >"$pconf" <<CONF
[agent]
name = ledger-db-1
service = ledger
state_dir = $P/state
signing_key = $P/agent.key
key_ring = $P/ledger.keys
[postgres]
conninfo = $pci
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
completion_window = 2m
[repository.primary]
type = posix
path = $P/repo
CONF
"$pagent" keygen --out "$P/ledger.keys" >/dev/null
"$pagent" init -c "$pconf" >/dev/null
chown -R postgres: "$P/state" "$P/repo" "$P/ledger.keys" "$P/agent.key" "$pconf"
psql_at "$pci" -c "create table ledger (id int primary key, at timestamptz not null default clock_timestamp())"
runuser -u postgres -- "$pagent" backup -c "$pconf" --kind physical
for i in 1 2 3 4 5 6; do
	psql_at "$pci" -c "insert into ledger (id) values ($i)"
	sleep 0.5
done
seg=$(psql_at "$pci" -c "select pg_walfile_name(pg_current_wal_lsn())")
psql_at "$pci" -c "select pg_switch_wal()" >/dev/null
for _ in $(seq 300); do
	[[ $(psql_at "$pci" -c "select coalesce(last_archived_wal, '') >= '$seg' from pg_stat_archiver") == t ]] && break
	sleep 0.1
done
psql_at "$pci" -c "select 'committed: row ' || id || ' at ' || at from ledger order by id"

step "the recoverable window: from the base backup's end to the last archived WAL"
runuser -u postgres -- "$pagent" list -c "$pconf"
target=$(psql_at "$pci" -c "select to_char((a3 + (a4 - a3) / 2) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
          from (select (select at from ledger where id = 3) a3, (select at from ledger where id = 4) a4) s")
echo "target: $target, between the commits of rows 3 and 4"

step "the plan first (--dry-run writes nothing), then the restore to $target"
"$pagent" restore -c "$pconf" --physical --target-time "$target" --pgdata "$P/restored/data" --dry-run
mkdir -p "$P/restored/data" && chown -R postgres: "$P/restored"
_t_clusters+=("$P/restored")
rport=$(_free_port)
"$pagent" restore -c "$pconf" --physical --target-time "$target" --pgdata "$P/restored/data" \
	--port "$rport" --start
rows=$(psql_at "host=$PG_HOST port=$rport user=postgres dbname=postgres" -c "select string_agg(id::text, ',' order by id) from ledger")
echo "rows in the restored cluster: $rows (expected 1,2,3: committed before $target)"
[[ $rows == "1,2,3" ]] || { echo "the point-in-time restore holds rows $rows, not 1,2,3" >&2; exit 1; }
pg_stop "$P/restored"

step "stopping the coordinator"
kill -TERM "$coord_pid"
wait "$coord_pid" || true

step "done: PostgreSQL stopped, $T removed (KEEP_TMP=1 keeps it)"
