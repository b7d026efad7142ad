#!/usr/bin/env bash
# Signed events applied per second and ack latency, with 1, 100 and 1,000
# simulated agents, through a real coordinator and its catalog on this host.
# Needs a Release build:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/intake_bench.sh
# Prints a markdown table for docs/PERFORMANCE.md, with the coordinator's peak
# memory (VmHWM) after each run. COFFER_BASELINE_BIN (optional): the bin
# directory of another build (an older commit) measured first in the same
# run, each build against its own fresh catalog database on the same server.
# Plain tcp:// on loopback: the cost of TLS is
# per connection, not per event, and is measured by tests/integration/net.sh.
set -euo pipefail
: "${COFFER_BIN:?set COFFER_BIN to a Release build bin directory}"
source "$(dirname "$0")/../integration/lib.sh"
t_init intake-bench
coord=$COFFER_BIN/coffer-coordinator

pg_start "$T/pg" "shared_buffers = 256MB" "synchronous_commit = on"
"$coord" audit-keygen --out "$T/audit.key" >/dev/null

# One coordinator build against a fresh catalog database: its rows of the table.
bench_build() { # label coordinator-binary
	local label=$1 bin=$2 db="coffer_$1" cpid port
	local ci="$PG_CONNINFO dbname=$db"
	psql_at "$PG_CONNINFO dbname=postgres" -c "create database $db"
	rm -rf "$T/state-$label"
	mkdir -p "$T/state-$label"
	# The throughput of intake itself, not of one agent's envelope budget
	# (flood_bench.sh measures with the defaults); older builds (the
	# baseline) do not know the keys.
	local budget=""
	[[ $label == current ]] && budget=$'agent_envelope_rate = 100000\nagent_envelope_burst = 100000'
	cat >"$T/$label.conf" <<CONF
[coordinator]
listen = tcp://127.0.0.1:0
catalog = $ci
audit_key = $T/audit.key
state_dir = $T/state-$label
log_level = info
$budget
[service.bench]
owner = bench
schedule = 0 2 * * *
retention.daily = 7
CONF
	"$bin" migrate -c "$T/$label.conf" >/dev/null 2>&1
	"$bin" run -c "$T/$label.conf" 2>"$T/coord-$label.log" &
	cpid=$!
	for _ in $(seq 100); do grep -q 'coordinator listening' "$T/coord-$label.log" && break; sleep 0.1; done
	port=$(sed -n 's/.*msg="coordinator listening".* port=\([0-9]*\).*/\1/p' "$T/coord-$label.log")
	[[ -n $port ]] || { kill "$cpid"; fail "coordinator $label did not start: $(cat "$T/coord-$label.log")"; }
	run() { # agents threads batch envelopes [offered events/s]
		local row tag=$label
		row=$("$COFFER_BIN/intake_bench" --catalog "$ci" --audit-key "$T/audit.key" \
			--url "tcp://127.0.0.1:$port" --agents "$1" --threads "$2" --batch "$3" --envelopes "$4" \
			${5:+--rate "$5"})
		[[ -n ${5:-} ]] && tag="$label, offered $5/s"
		echo "| $tag ${row% |} | $(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$cpid/status") |"
	}
	run 1 1 10 300
	run 100 8 10 5
	run 1000 16 10 1
	run 1000 16 50 1
	# 256 is the agent sender's ceiling per envelope (agent/report/sender.h): the
	# size of envelopes while agents drain what they kept through an outage.
	run 1000 16 256 1
	# The same, with as many envelopes in flight as the coordinator has
	# intake workers: by Little's law the ack latency at a given rate is
	# what is in flight divided by that rate.
	run 1000 4 128 1
	# Open loop: 20,000 events/s offered by 1,000 agents on 16 threads,
	# each envelope's latency counted from when it was due, for 50 s (a
	# million events on a catalog already holding the rows above); then
	# 25,000, for the headroom.
	run 1000 16 128 8 20000
	run 1000 16 128 8 25000
	kill -TERM "$cpid"
	wait "$cpid" || true
}

echo "| build | agents | client threads | events per envelope | events | seconds | events/s | p50 ms | p99 ms | failed calls | coordinator VmHWM MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
if [[ -n ${COFFER_BASELINE_BIN:-} ]]; then
	bench_build baseline "$COFFER_BASELINE_BIN/coffer-coordinator"
fi
bench_build current "$coord"
