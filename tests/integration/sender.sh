#!/usr/bin/env bash
# The agent's sender end to end: a real PostgreSQL catalog, a real
# `coffer-coordinator run` over mutual TLS on 127.0.0.1, and real agents whose
# outboxes hold events written the way backups write them (sender_itest).
# - `coffer-agent flush` with the coordinator down: exit 1, events kept;
# - an agent nobody enrolled: exit 1 naming STATUS_UNKNOWN_AGENT and the fix,
#   events kept;
# - flush delivers everything, the outbox is empty, every event is in the
#   catalog once;
# - kill -9 of the coordinator, three times at random moments, while a large
#   outbox is being flushed: events not acked stay in the outbox, the flush
#   retries across the restarts, and every event is recorded exactly once;
# - kill -9 of the agent's flush, three times, while 10,000 events flow: the
#   next flush resends what was not forgotten, and each event is still
#   recorded exactly once;
# - the daemon (`coffer-agent run`) ships new events by itself, says hello
#   and sends heartbeats (status columns, not events), and stops cleanly on
#   SIGTERM;
# - a refused daemon retries but logs the reason once; an undecodable outbox
#   record stops flush and the daemon, naming its seq, and nothing is dropped.
# Every process runs under `timeout`; loopback only.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
t_init sender

coord="$COFFER_BIN/coffer-coordinator"
agent="$COFFER_BIN/coffer-agent"
drv="$COFFER_BIN/sender_itest"
[[ -x $coord && -x $agent && -x $drv ]] || fail "build coffer-coordinator, coffer-agent and sender_itest first"

catalog_start "$T/pg"
q() { psql_at "$ci" -c "$1"; }

pki="$T/pki"
pki_make "$pki" billing-1 stranger

port=$(_free_port)
url="tls+tcp://127.0.0.1:$port"
conf="$T/coordinator.conf"
cat >"$conf" <<EOF
[coordinator]
listen = $url
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/cstate
# Refusals are counted per period before they reach the catalog.
refusal_period = 1s
[tls]
ca = $pki/ca.crt
cert = $pki/localhost.crt
key = $pki/localhost.key
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
EOF
catalog_audit_key
catalog_migrate "$conf"

# agent_conf NAME: an agent of service billing talking to the coordinator.
agent_conf() {
	local name=$1 dir="$T/$1"
	mkdir -p "$dir/repo" "$dir/state"
	cat >"$dir/agent.conf" <<EOF
[agent]
name = $name
service = billing
state_dir = $dir/state
signing_key = $dir/agent.key
key_ring = $dir/billing.keys
[postgres]
conninfo = $base dbname=postgres
[schedule]
logical = 0 2 1 1 *
[repository.primary]
type = posix
path = $dir/repo
[coordinator]
url = $url
ca = $pki/ca.crt
cert = $pki/$name.crt
key = $pki/$name.key
heartbeat = 2s
retry_max = 2s
EOF
	timeout 60 "$agent" init -c "$dir/agent.conf" >"$dir/agent.pub" || fail "init $name"
	timeout 60 "$agent" keygen --out "$dir/billing.keys" >/dev/null || fail "keygen $name"
}
agent_conf billing-1
agent_conf stranger
a1="$T/billing-1/agent.conf"
a2="$T/stranger/agent.conf"
timeout 60 "$coord" agents enroll -c "$conf" --service billing --agent billing-1 \
	--pubkey "$T/billing-1/agent.pub" >/dev/null || fail "enroll billing-1"

# pending CONF: events waiting in that agent's outbox.
pending() { timeout 60 "$agent" events -c "$1" | wc -l; }
# recorded AGENT: events rows, and distinct seqs, for that agent.
recorded() { q "SELECT count(*) || ' ' || count(DISTINCT seq) FROM events WHERE agent = '$1'"; }

# --- coordinator down ------------------------------------------------------------
timeout 60 "$drv" emit "$a1" 10 early >/dev/null || fail "emit"
rc=0
timeout 60 "$agent" flush -c "$a1" --timeout 3s >"$T/out" 2>"$T/err" || rc=$?
((rc == 1)) || fail "flush with no coordinator: exit $rc, want 1: $(cat "$T/err")"
grep -q "10 events still in the outbox" "$T/err" || fail "flush with no coordinator said: $(cat "$T/err")"
(($(wc -l <"$T/err") == 1)) || fail "flush with no coordinator: want one line: $(cat "$T/err")"
[[ $(pending "$a1") == 10 ]] || fail "events lost while the coordinator was down"
pass "coordinator down: flush exits 1 and keeps the 10 events: $(cut -c1-120 "$T/err")"

# --- the coordinator ------------------------------------------------------------
# cpid is the timeout wrapper; the coordinator itself writes its pid to
# coord.pid (bash execs it), so kill -9 hits the coordinator, not the wrapper.
cpid=
start_coord() {
	: >"$T/coord.err"
	rm -f "$T/coord.pid"
	timeout --foreground 600 bash -c 'echo $$ >"$1"; exec "$2" run -c "$3"' _ \
		"$T/coord.pid" "$coord" "$conf" >>"$T/coord.out" 2>"$T/coord.err" &
	cpid=$!
	for _ in $(seq 150); do
		grep -q "coordinator listening" "$T/coord.err" && return 0
		kill -0 "$cpid" 2>/dev/null || { cat "$T/coord.err" >&2; fail "the coordinator exited"; }
		sleep 0.1
	done
	fail "the coordinator did not start: $(cat "$T/coord.err")"
}
dpid=
stop_all() {
	[[ -n $dpid ]] && kill -TERM "$dpid" 2>/dev/null || true
	[[ -n $cpid ]] && kill -TERM "$cpid" 2>/dev/null || true
	wait 2>/dev/null || true
	t_cleanup
}
trap stop_all EXIT
start_coord

# --- refusals ------------------------------------------------------------------
timeout 60 "$drv" emit "$a2" 3 stray >/dev/null || fail "emit stranger"
rc=0
timeout 60 "$agent" flush -c "$a2" --timeout 20s >"$T/out" 2>"$T/err" || rc=$?
((rc == 1)) || fail "unenrolled agent: exit $rc, want 1: $(cat "$T/err")"
grep -q "STATUS_UNKNOWN_AGENT" "$T/err" || fail "unenrolled agent said: $(cat "$T/err")"
grep -q "hint: enroll this agent: coffer agents enroll --service billing --agent stranger" "$T/err" ||
	fail "unenrolled agent: no hint: $(cat "$T/err")"
[[ $(pending "$a2") == 3 ]] || fail "a refused agent lost events"
[[ $(recorded stranger) == "0 0" ]] || fail "a refused agent's events were recorded"
pass "unenrolled agent: flush exits 1, events kept: $(cut -c1-140 "$T/err")"

# --- flush ------------------------------------------------------------------------
timeout 60 "$agent" flush -c "$a1" --timeout 60s >"$T/out" 2>"$T/err" ||
	fail "flush: $(cat "$T/err")"
grep -q "^10 events acked; outbox flushed" "$T/out" || fail "flush said: $(cat "$T/out")"
[[ $(pending "$a1") == 0 ]] || fail "outbox not empty after flush"
[[ $(recorded billing-1) == "10 10" ]] || fail "catalog has $(recorded billing-1) events, want 10"
[[ $(q "SELECT count(*) FROM backups WHERE agent = 'billing-1' AND status = 'completed'") == 5 ]] ||
	fail "the 5 completed backups are not in the catalog"
[[ $(q "SELECT last_contact_at IS NOT NULL FROM agents WHERE name = 'billing-1'") == t ]] ||
	fail "last contact not recorded"
timeout 60 "$agent" flush -c "$a1" --timeout 10s >"$T/out" || fail "flush of an empty outbox"
grep -q "^0 events acked" "$T/out" || fail "empty flush said: $(cat "$T/out")"
pass "flush delivers 10 events once each, 5 backups completed; an empty flush is a no-op"

# --- kill -9 mid-flush ---------------------------------------------------------------
# One flush (with a long timeout, so it retries across restarts) ships a large
# outbox while the coordinator is killed three times at random moments.
total=${SENDER_TOTAL:-6000}
timeout 120 "$drv" emit "$a1" $total bulk >/dev/null || fail "emit bulk"
applied() { q "SELECT count(*) FROM events WHERE agent = 'billing-1'"; }
timeout 300 "$agent" flush -c "$a1" --timeout 240s >"$T/f1.out" 2>"$T/f1.err" &
fpid=$!
for round in 1 2 3; do
	# Somewhere inside the next quarter of the outbox.
	threshold=$((10 + (round - 1) * total / 4 + RANDOM % (total / 4)))
	for _ in $(seq 1500); do
		(($(applied) >= threshold)) && break
		kill -0 "$fpid" 2>/dev/null || break
		sleep 0.02
	done
	kill -9 "$(cat "$T/coord.pid")"
	wait "$cpid" 2>/dev/null || true
	cpid=
	mid=$(applied)
	left=$(pending "$a1")
	note "round $round: killed the coordinator with $((mid - 10)) of $total applied, $left in the outbox"
	((left + mid - 10 >= total)) || fail "events vanished: $left pending + $((mid - 10)) applied < $total"
	sleep 0.$((RANDOM % 10))
	start_coord
done
rc=0
wait "$fpid" || rc=$?
((rc == 0)) || fail "the flush did not survive the restarts: $(cat "$T/f1.err")"
grep -q "outbox flushed" "$T/f1.out" || fail "flush said: $(cat "$T/f1.out")"
[[ $(pending "$a1") == 0 ]] || fail "outbox not empty after the flush"
want=$((total + 10))
[[ $(recorded billing-1) == "$want $want" ]] ||
	fail "catalog has $(recorded billing-1) (rows, distinct seqs), want $want each"
[[ $(q "SELECT min(seq) || ' ' || max(seq) FROM events WHERE agent = 'billing-1'") == "1 $want" ]] ||
	fail "seqs are not 1..$want"
[[ $(q "SELECT last_seq FROM agents WHERE name = 'billing-1'") == "$want" ]] || fail "high-water mark"
[[ $(q "SELECT count(*) FROM backups WHERE agent = 'billing-1' AND status = 'completed'") == $((5 + total / 2)) ]] ||
	fail "completed backups: $(q "SELECT status, count(*) FROM backups GROUP BY 1")"
pass "three kill -9s mid-flush: all $total events recorded exactly once, none left behind"

# --- kill -9 of the agent mid-flush ---------------------------------------------------
# The other side of exactly-once: the agent dies between sending an envelope and
# reading its ack (or between the ack and forgetting the events). The next flush
# resends what it still holds; the coordinator acks the resends and ignores them.
base_seq=$want
more=${SENDER_AGENT_KILL_TOTAL:-10000}
timeout 120 "$drv" emit "$a1" "$more" agentkill >/dev/null || fail "emit for the agent kill"
start_flush() {
	rm -f "$T/flush.pid"
	timeout --foreground 300 bash -c 'echo $$ >"$1"; exec "$2" flush -c "$3" --timeout 240s' _ \
		"$T/flush.pid" "$agent" "$a1" >"$T/f2.out" 2>"$T/f2.err" &
	fpid=$!
	for _ in $(seq 100); do [[ -s $T/flush.pid ]] && return 0; sleep 0.05; done
	fail "the flush did not start"
}
for round in 1 2 3; do
	start_flush
	threshold=$((base_seq + (round - 1) * more / 4 + RANDOM % (more / 4)))
	for _ in $(seq 1500); do
		(($(applied) >= threshold)) && break
		kill -0 "$fpid" 2>/dev/null || break
		sleep 0.02
	done
	kill -9 "$(cat "$T/flush.pid")" 2>/dev/null || fail "round $round: the flush had already exited: $(cat "$T/f2.err")"
	wait "$fpid" 2>/dev/null || true
	mid=$(applied)
	left=$(pending "$a1")
	note "round $round: killed the agent with $((mid - base_seq)) of $more applied, $left in its outbox"
	((left + mid - base_seq >= more)) || fail "events vanished: $left pending + $((mid - base_seq)) applied < $more"
done
start_flush
rc=0
wait "$fpid" || rc=$?
((rc == 0)) || fail "the flush after three agent kills failed: $(cat "$T/f2.err")"
[[ $(pending "$a1") == 0 ]] || fail "outbox not empty after the agent kills"
want=$((base_seq + more))
[[ $(recorded billing-1) == "$want $want" ]] ||
	fail "after the agent kills the catalog has $(recorded billing-1) (rows, distinct seqs), want $want each"
[[ $(q "SELECT last_seq FROM agents WHERE name = 'billing-1'") == "$want" ]] || fail "high-water mark after the agent kills"
pass "three kill -9s of the agent mid-flush: all $more events recorded exactly once, none left behind"

# --- the daemon ----------------------------------------------------------------------
timeout --foreground 300 "$agent" run -c "$a1" >"$T/d.out" 2>"$T/d.err" &
dpid=$!
for _ in $(seq 100); do
	grep -q "connected to coordinator" "$T/d.err" && break
	kill -0 "$dpid" 2>/dev/null || fail "the daemon exited: $(cat "$T/d.err")"
	sleep 0.1
done
grep -q "connected to coordinator" "$T/d.err" || fail "the daemon did not connect: $(cat "$T/d.err")"
timeout 60 "$drv" emit "$a1" 6 daemon >/dev/null || fail "emit for the daemon"
want=$((want + 6))
for _ in $(seq 150); do
	[[ $(recorded billing-1) == "$want $want" ]] && break
	sleep 0.1
done
[[ $(recorded billing-1) == "$want $want" ]] || fail "the daemon did not deliver: $(recorded billing-1), want $want"
for _ in $(seq 50); do
	[[ $(pending "$a1") == 0 ]] && break
	sleep 0.1
done
[[ $(pending "$a1") == 0 ]] || fail "the daemon did not ack its outbox"
# Heartbeats every 2s (transient: status columns, never in events); one
# sent before the delivery still counted 6, a later one counts 0.
hb="heartbeat->>'outbox_depth' || ' ' || (heartbeat->>'backup_running')"
for _ in $(seq 100); do
	[[ $(q "SELECT $hb FROM agents WHERE name = 'billing-1'") == "0 false" ]] && break
	sleep 0.1
done
[[ $(q "SELECT $hb FROM agents WHERE name = 'billing-1'") == "0 false" ]] ||
	fail "heartbeat: $(q "SELECT heartbeat FROM agents WHERE name = 'billing-1'")"
[[ $(q "SELECT hello->>'hostname' FROM agents WHERE name = 'billing-1'") == "$(hostname)" ]] ||
	fail "hello: $(q "SELECT hello FROM agents WHERE name = 'billing-1'")"
[[ $(recorded billing-1) == "$want $want" ]] || fail "transient events were recorded as durable"
kill -TERM "$dpid"
rc=0
wait "$dpid" || rc=$?
dpid=
((rc == 0)) || fail "the daemon exited $rc on SIGTERM: $(tail -5 "$T/d.err")"
grep -q "sender stopped" "$T/d.err" || fail "the sender did not stop: $(tail -5 "$T/d.err")"
pass "the daemon ships new events by itself, says hello, heartbeats, and stops cleanly on SIGTERM"

# --- a refused daemon says so once -------------------------------------------------------
# The stranger is not enrolled: every attempt (at retry_max = 2s) is refused
# and counted by the coordinator, but the agent logs the reason only once.
timeout --foreground 300 "$agent" run -c "$a2" >"$T/d2.out" 2>"$T/d2.err" &
dpid=$!
for _ in $(seq 100); do
	grep -q "coordinator refused the agent" "$T/d2.err" && break
	kill -0 "$dpid" 2>/dev/null || fail "the stranger's daemon exited: $(cat "$T/d2.err")"
	sleep 0.1
done
r0=$(q "SELECT coalesce(sum(count), 0) FROM refusals WHERE reason = 'unknown_agent'")
for _ in $(seq 200); do
	(($(q "SELECT coalesce(sum(count), 0) FROM refusals WHERE reason = 'unknown_agent'") >= r0 + 2)) && break
	sleep 0.1
done
r1=$(q "SELECT coalesce(sum(count), 0) FROM refusals WHERE reason = 'unknown_agent'")
((r1 >= r0 + 2)) || fail "the refused daemon did not retry ($r0 -> $r1 refusals)"
kill -TERM "$dpid"
rc=0
wait "$dpid" || rc=$?
dpid=
((rc == 0)) || fail "the stranger's daemon exited $rc on SIGTERM"
n=$(grep -c "coordinator refused the agent" "$T/d2.err" || true)
((n == 1)) || fail "the refusal was logged $n times, want once: $(grep refused "$T/d2.err")"
grep "coordinator refused the agent" "$T/d2.err" | grep -q "level=error.*STATUS_UNKNOWN_AGENT" ||
	fail "the refusal line: $(grep refused "$T/d2.err")"
[[ $(pending "$a2") == 3 ]] || fail "the refused daemon lost events"
pass "a refused daemon retries ($r1 refusals counted) but logs the reason once, and keeps its events"

# --- an undecodable record stops sending, never dropped ------------------------------
bad=$(timeout 60 "$drv" junk "$a1") || fail "junk"
timeout 60 "$drv" emit "$a1" 2 after-junk >/dev/null || fail "emit after junk"
rc=0
timeout 60 "$agent" flush -c "$a1" --timeout 20s >"$T/out" 2>"$T/err" || rc=$?
((rc == 1)) || fail "flush over an undecodable record: exit $rc, want 1: $(cat "$T/err")"
grep -q "outbox record $bad (4 bytes) is not a valid event" "$T/err" || fail "flush said: $(cat "$T/err")"
[[ $(pending "$a1") == 3 ]] || fail "the undecodable record or those after it were dropped"
[[ $(recorded billing-1) == "$want $want" ]] || fail "events after the bad record were sent"
timeout --foreground 300 "$agent" run -c "$a1" >"$T/d3.out" 2>"$T/d3.err" &
dpid=$!
for _ in $(seq 100); do
	grep -q "sending stopped until restart" "$T/d3.err" && break
	kill -0 "$dpid" 2>/dev/null || fail "the daemon exited: $(cat "$T/d3.err")"
	sleep 0.1
done
grep -q "level=error.*sending stopped until restart.*outbox record $bad " "$T/d3.err" ||
	fail "the daemon did not report the record: $(cat "$T/d3.err")"
kill -TERM "$dpid"
rc=0
wait "$dpid" || rc=$?
dpid=
((rc == 0)) || fail "the stopped sender blocked SIGTERM (exit $rc)"
[[ $(pending "$a1") == 3 ]] || fail "the daemon dropped the undecodable record"
pass "an undecodable record stops flush and the daemon with its seq named; nothing is dropped"
