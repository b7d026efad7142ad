#!/usr/bin/env bash
# The catalog's own floor for intake: what PostgreSQL on this host can do
# for the rows one signed backup.started event costs, with no coordinator,
# no signatures, no protobuf and no network in the way. pgbench runs, on the
# real catalog schema (coffer-coordinator migrate), one transaction per
# envelope of N events, each as the intake does it: lock the agent's row and
# move its sequence mark, insert N backups rows, N events rows (one
# statement) and N audit rows (one statement, moving the chain head, MACs
# left as fixed bytes), commit. The intake's own events/s is compared with
# this, measured the same way (tests/bench/intake_bench.sh); the intake can
# never be faster than its floor.
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/intake_floor.sh [EVENTS_PER_ENVELOPE] [CLIENTS] [SECONDS]
set -euo pipefail
: "${COFFER_BIN:?set COFFER_BIN to a Release build bin directory}"
per=${1:-10}
clients=${2:-4}
secs=${3:-15}
source "$(dirname "$0")/../integration/lib.sh"
t_init intake-floor
pg_start "$T/pg"
ci="$PG_CONNINFO dbname=coffer"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database coffer" >/dev/null
"$COFFER_BIN/coffer-coordinator" audit-keygen --out "$T/audit.key" >/dev/null
cat >"$T/c.conf" <<CONF
[coordinator]
listen = tcp://127.0.0.1:0
catalog = $ci
audit_key = $T/audit.key
state_dir = $T
CONF
"$COFFER_BIN/coffer-coordinator" migrate -c "$T/c.conf" >/dev/null
psql_at "$ci" -c "insert into services (name, owner) values ('bench', 'bench');
	insert into agents (name, service, pubkey, enrolled_by)
	select 'agent-' || g, 'bench', sha256(g::text::bytea), 'bench' from generate_series(1, 1000) g" >/dev/null
cat >"$T/envelope.sql" <<SQL
\\set a random(1, 1000)
BEGIN;
UPDATE agents SET last_seq = last_seq + $per, last_contact_at = now() WHERE name = 'agent-' || :a RETURNING last_seq;
INSERT INTO backups (id, service, agent, kind, status, started_at)
  SELECT 'b-' || :a || '-' || (extract(epoch FROM clock_timestamp()) * 1e6)::bigint || '-' || g,
    'bench', 'agent-' || :a, 'logical', 'running', now() FROM generate_series(1, $per) g;
INSERT INTO events (agent, seq, service, type, payload, sent_at)
  SELECT 'agent-' || :a, (SELECT last_seq FROM agents WHERE name = 'agent-' || :a) - $per + g,
    'bench', 'backup.started', jsonb_build_object('backup_id', 'b' || g, 'kind', 'logical'), now()
  FROM generate_series(1, $per) g;
WITH h AS (SELECT chain_seq FROM audit_head WHERE id = 1 FOR UPDATE),
ins AS (INSERT INTO audit (chain_seq, at, actor, action, subject, details, prev_mac, mac)
  SELECT h.chain_seq + g, now(), 'agent-' || :a, 'backup.started', 'b' || g,
    jsonb_build_object('seq', g), sha256('p'::bytea), sha256('m'::bytea) FROM h, generate_series(1, $per) g
  RETURNING chain_seq, mac)
UPDATE audit_head SET chain_seq = (SELECT max(chain_seq) FROM ins), mac = sha256('m'::bytea) WHERE id = 1;
COMMIT;
SQL
out=$(runuser -u postgres -- "$PG_BINDIR/pgbench" -h "$PG_HOST" -p "$PG_PORT" -U postgres -n \
	-f "$T/envelope.sql" -c "$clients" -j 2 -T "$secs" coffer 2>&1)
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out")
[[ -n $tps ]] || { echo "$out" >&2; exit 1; }
echo "| catalog floor (pgbench, $clients clients) | $per | $(awk -v t="$tps" -v p="$per" 'BEGIN {printf "%.0f", t * p}') | $lat |"
