#!/usr/bin/env bash
# Real agents' acks while one peer floods junk (issue 21 item 3): 1,000
# simulated agents (real signed envelopes, tests/bench/intake_bench.c) send
# events closed loop through a real coordinator and catalog, in rounds that
# alternate without and with one more peer (bound to 127.0.0.2) sending junk
# as fast as answers come back on FLOOD_THREADS threads. Prints one markdown
# table: the medians over ROUNDS rounds of each kind, side by side, and the
# audit rows the flood added per minute. Needs a Release build:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/flood_bench.sh
# Plain tcp:// on loopback like intake_bench.sh (TLS costs per connection).
set -euo pipefail
: "${COFFER_BIN:?set COFFER_BIN to a Release build bin directory}"
ROUNDS=${ROUNDS:-3}
FLOOD_THREADS=${FLOOD_THREADS:-8}
ENVELOPES=${ENVELOPES:-5}
source "$(dirname "$0")/../integration/lib.sh"
t_init flood-bench
coord=$COFFER_BIN/coffer-coordinator

pg_start "$T/pg" "shared_buffers = 256MB" "synchronous_commit = on"
"$coord" audit-keygen --out "$T/audit.key" >/dev/null
ci="$PG_CONNINFO dbname=coffer_flood"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database coffer_flood"
mkdir -p "$T/state"
cat >"$T/c.conf" <<CONF
[coordinator]
listen = tcp://127.0.0.1:0
catalog = $ci
audit_key = $T/audit.key
state_dir = $T/state
log_level = info
[service.bench]
owner = bench
schedule = 0 2 * * *
retention.daily = 7
CONF
"$coord" migrate -c "$T/c.conf" >/dev/null 2>&1
"$coord" run -c "$T/c.conf" 2>"$T/coord.log" &
cpid=$!
for _ in $(seq 100); do grep -q 'coordinator listening' "$T/coord.log" && break; sleep 0.1; done
port=$(sed -n 's/.*msg="coordinator listening".* port=\([0-9]*\).*/\1/p' "$T/coord.log")
[[ -n $port ]] || { kill "$cpid"; fail "coordinator did not start: $(cat "$T/coord.log")"; }

run() { # [flood threads]
	"$COFFER_BIN/intake_bench" --catalog "$ci" --audit-key "$T/audit.key" \
		--url "tcp://127.0.0.1:$port" --agents 1000 --threads 16 --batch 10 \
		--envelopes "$ENVELOPES" ${1:+--flood "$1"}
}
audit_rows() { psql_at "$ci" -c "SELECT count(*) FROM audit WHERE action = 'request.refused'"; }

: >"$T/quiet" && : >"$T/flood"
flood_s=0
rows0=$(audit_rows)
for _ in $(seq "$ROUNDS"); do
	run >>"$T/quiet"
	row=$(run "$FLOOD_THREADS")
	echo "$row" >>"$T/flood"
	flood_s=$(awk -F'|' -v s="$flood_s" '{print s + $6}' <<<"$row")
done
# The last period's rows are written within seconds of its end.
sleep 65
rows=$(($(audit_rows) - rows0))
kill -TERM "$cpid"
wait "$cpid" || true

median() { # file column
	awk -F'|' -v c="$2" '{print $c + 0}' "$1" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
echo "| 1,000 agents, 10 events per envelope, ${ROUNDS} rounds each (medians) | events/s | p50 ms | p99 ms | failed calls | junk answered/s |"
echo "|---|---:|---:|---:|---:|---:|"
echo "| without flood | $(median "$T/quiet" 7) | $(median "$T/quiet" 8) | $(median "$T/quiet" 9) | $(median "$T/quiet" 10) | - |"
echo "| with one peer flooding on $FLOOD_THREADS threads | $(median "$T/flood" 7) | $(median "$T/flood" 8) | $(median "$T/flood" 9) | $(median "$T/flood" 10) | $(median "$T/flood" 11) |"
awk -v r="$rows" -v s="$flood_s" 'BEGIN {m = (s > 0) ? r * 60 / s : 0; printf "\nrequest.refused audit rows added: %d over %.0f s of flood (%.1f a minute)\n", r, s, m}'
