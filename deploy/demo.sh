#!/usr/bin/env bash
# The main job end to end, on a throwaway local PostgreSQL, for a new user to
# watch: install packages, build, create a service database with a million
# rows, set up an agent (key ring, signing key, repository), let the daemon
# take the scheduled backup, then list, verify and restore it into a new
# database and compare row counts. Everything lives in one scratch directory
# that is removed at the end (KEEP_TMP=1 keeps it). Run as root on Debian 12.
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

step "setting up the agent for service 'billing'"
mkdir -p "$T/state" "$T/repo"
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
CONF
cat "$T/agent.conf"
echo "key-encryption key: $("$agent" keygen --out "$T/billing.keys")"
echo "agent public key (enroll it at the coordinator): $("$agent" init -c "$T/agent.conf")"

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

step "what is in the repository (ciphertext only)"
"$agent" list -c "$T/agent.conf"
find "$T/repo" -type f -printf '%8s bytes  %P\n'

step "verifying the backup: signature, decryption, every digest"
"$agent" verify -c "$T/agent.conf" --backup latest

step "restoring it into a new database and comparing row counts with the manifest"
"$agent" restore -c "$T/agent.conf" --backup latest --target-db billing_restored --jobs 2
psql_at "$PG_CONNINFO dbname=billing_restored" -c "select 'restored pgbench_accounts rows: ' || count(*) from pgbench_accounts"

step "events waiting for the coordinator (the agent's durable outbox)"
"$agent" events -c "$T/agent.conf"

step "done: PostgreSQL stopped, $T removed (KEEP_TMP=1 keeps it)"
