#!/usr/bin/env bash
# The coordinator's agent intake end to end: a real PostgreSQL catalog, a
# real `coffer-coordinator run` over mutual TLS on 127.0.0.1, and agents
# played by intake_itest (signed envelopes over the real wire).
# - local enrollment: enroll, refusals (unknown service, one agent one
#   service, a key that does not parse, a key already in use), list, revoke;
# - a batch of durable events is acked and applied; the same batch in a new
#   envelope is acked and not applied twice;
# - refusals, each with its status, counted and audited: replayed envelope,
#   bad signature, unknown agent, revoked agent, an event for another
#   service (nothing of the envelope applied), another service's backup,
#   garbage bytes (those needing no catalog audited per peer, reason and
#   refusal_period, with a count); the audit chain still verifies;
# - catalog stopped: STATUS_UNAVAILABLE (logged once); catalog back: OK
#   again without restarting the coordinator; SIGTERM stops it cleanly.
# Every process runs under `timeout`; loopback only.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
t_init intake

coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/intake_itest"
[[ -x $coord && -x $drv ]] || fail "build coffer-coordinator and intake_itest first"

catalog_start "$T/pg"
q() { psql_at "$ci" -c "$1"; }

pki="$T/pki"
pki_make "$pki" agents
tls=(--ca "$pki/ca.crt" --cert "$pki/agents.crt" --key "$pki/agents.key")

# Port 0: the coordinator picks a free port and logs it, so no other test can
# take the port between choosing and listening.
conf="$T/coordinator.conf"
cat >"$conf" <<EOF
[coordinator]
listen = tls+tcp://127.0.0.1:0
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/state
log_level = debug
refusal_period = 1s
[tls]
ca = $pki/ca.crt
cert = $pki/localhost.crt
key = $pki/localhost.key
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
[service.ledger]
owner = team-ledger
schedule = 0 3 * * *
retention.daily = 7
EOF
catalog_audit_key
catalog_migrate "$conf"

# expect_fail WHAT PATTERN CMD...: CMD exits non-zero with one stderr line matching PATTERN.
expect_fail() {
	local what=$1 pattern=$2 rc=0
	shift 2
	timeout 60 "$@" >"$T/out" 2>"$T/err" || rc=$?
	((rc != 0)) || fail "$what: succeeded: $(cat "$T/out")"
	grep -Eq -- "$pattern" "$T/err" || fail "$what: stderr does not match '$pattern': $(cat "$T/err")"
	(($(wc -l <"$T/err") == 1)) || fail "$what: want one line on stderr, got: $(cat "$T/err")"
	pass "$what: $(cut -c1-140 "$T/err")"
}

# --- enrollment ---------------------------------------------------------------
for a in billing-1 ledger-1 rogue; do
	"$drv" keygen "$T/$a.key" >"$T/$a.pub" || fail "keygen $a"
done
echo "not a key" >"$T/junk.pub"
enroll() { timeout 60 "$coord" agents enroll -c "$conf" "$@"; }

enroll --service billing --agent billing-1 --pubkey "$T/billing-1.pub" >"$T/out" ||
	fail "enroll billing-1: $(cat "$T/out")"
grep -q "^enrolled agent billing-1 for service billing" "$T/out" || fail "enroll output: $(cat "$T/out")"
enroll --service billing --agent billing-1 --pubkey "$T/billing-1.pub" >"$T/out" ||
	fail "re-enroll billing-1"
grep -q "already enrolled" "$T/out" || fail "re-enroll output: $(cat "$T/out")"
enroll --service ledger --agent ledger-1 --pubkey "$T/ledger-1.pub" >/dev/null || fail "enroll ledger-1"
pass "agents enrolled (enrolling the same agent again is a no-op)"

expect_fail "an unknown service is refused" "service payroll is not defined in .*\[service.payroll\]" \
	"$coord" agents enroll -c "$conf" --service payroll --agent payroll-1 --pubkey "$T/rogue.pub"
expect_fail "one agent, one service" "agent billing-1 is enrolled for service billing" \
	"$coord" agents enroll -c "$conf" --service ledger --agent billing-1 --pubkey "$T/billing-1.pub"
expect_fail "a key that does not parse is refused" "public key .*junk.pub" \
	"$coord" agents enroll -c "$conf" --service billing --agent billing-2 --pubkey "$T/junk.pub"
expect_fail "a key enrolled for another agent is refused" "already enrolled as agent billing-1" \
	"$coord" agents enroll -c "$conf" --service billing --agent billing-2 --pubkey "$T/billing-1.pub"
[[ $(q "SELECT count(*) FROM agents") == 2 ]] || fail "refused enrollments left rows"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'agent.enroll' AND actor = 'local-admin'") == 2 ]] ||
	fail "enrollments are not audited once each"
timeout 60 "$coord" agents list -c "$conf" --output json >"$T/list" || fail "agents list"
grep -q '"name":"billing-1","service":"billing"' "$T/list" || fail "agents list: $(cat "$T/list")"

# --- the coordinator ------------------------------------------------------------
psql_at "$base dbname=postgres" -c "CREATE DATABASE empty"
sed "s|^catalog = .*|catalog = $base dbname=empty|" "$conf" >"$T/empty.conf"
expect_fail "run refuses a catalog without the schema" "no Coffer schema.*coffer-coordinator migrate" \
	"$coord" run -c "$T/empty.conf"
sed "s|^catalog = .*|catalog = host=127.0.0.1 port=$(_free_port) dbname=coffer user=coffer|" "$conf" >"$T/dead.conf"
expect_fail "run refuses an unreachable catalog" "cannot connect to the catalog" "$coord" run -c "$T/dead.conf"

timeout --foreground 300 "$coord" run -c "$conf" >"$T/coord.out" 2>"$T/coord.err" &
cpid=$!
stop_coord() {
	kill -TERM "$cpid" 2>/dev/null || true
	t_cleanup
}
trap stop_coord EXIT
for _ in $(seq 100); do
	grep -q "coordinator listening" "$T/coord.err" && break
	kill -0 "$cpid" 2>/dev/null || { cat "$T/coord.err" >&2; fail "the coordinator exited"; }
	sleep 0.1
done
grep -q "coordinator listening" "$T/coord.err" || fail "the coordinator did not start: $(cat "$T/coord.err")"
port=$(sed -n 's/.*msg="coordinator listening".* port=\([0-9]*\).*/\1/p' "$T/coord.err")
[[ $port =~ ^[0-9]+$ && $port != 0 ]] || fail "no port in the log: $(cat "$T/coord.err")"
url="tls+tcp://127.0.0.1:$port"

# send AGENT SEQ [ARGS...]: one envelope; sets R to the reply line.
send() {
	local agent=$1 seq=$2
	shift 2
	R=$(timeout 60 "$drv" send "$url" "${tls[@]}" --agent "$agent" --signkey "$T/$agent.key" \
		--seq "$seq" "$@") || fail "send $agent $seq $*: exit $? $R"
}
# expect STATUS [ACKED]: checks R.
expect() {
	[[ $R == "status=$1 "* ]] || fail "want status $1, got: $R"
	if [[ -n ${2:-} ]]; then
		[[ $R == *" acked=$2 "* ]] || fail "want acked $2, got: $R"
	fi
}

batch="started:1:b-1,completed:2:b-1,hello:0,heartbeat:0"
send billing-1 1 --service billing --events "$batch"
expect ok 2
[[ $(q "SELECT status FROM backups WHERE id = 'b-1'") == completed ]] || fail "b-1 is not completed"
[[ $(q "SELECT stored_bytes || ' ' || encode(stored_sha256, 'hex') FROM backups WHERE id = 'b-1'") == \
	"65432 01080f161d242b323940474e555c636a71787f868d949ba2a9b0b7bec5ccd3da" ]] ||
	fail "b-1 figures: $(q "SELECT * FROM backups WHERE id = 'b-1'")"
[[ $(q "SELECT count(*) FROM events WHERE agent = 'billing-1'") == 2 ]] || fail "events rows after the batch"
[[ $(q "SELECT last_seq || ' ' || last_envelope_seq FROM agents WHERE name = 'billing-1'") == "2 1" ]] ||
	fail "high-water marks: $(q "SELECT last_seq, last_envelope_seq FROM agents WHERE name = 'billing-1'")"
[[ $(q "SELECT heartbeat->>'outbox_depth' FROM agents WHERE name = 'billing-1'") == 3 ]] ||
	fail "the transient heartbeat did not update the agent"
[[ $(q "SELECT count(*) FROM audit WHERE actor = 'billing-1' AND action IN ('backup.started', 'backup.completed')") == 2 ]] ||
	fail "applied events are not audited once each"
pass "a batch of durable events is acked and applied: $R"

send billing-1 2 --service billing --events "$batch"
expect ok 2
[[ $(q "SELECT count(*) FROM events WHERE agent = 'billing-1'") == 2 ]] || fail "the resent batch was applied again"
[[ $(q "SELECT count(*) FROM audit WHERE actor = 'billing-1'") == 2 ]] || fail "the resent batch was audited again"
send billing-1 3 --service billing --events "completed:2:b-1,failed:3:b-2"
expect ok 3
[[ $(q "SELECT count(*) FROM events WHERE agent = 'billing-1'") == 3 ]] || fail "a half-new batch"
[[ $(q "SELECT status || ': ' || failure_reason FROM backups WHERE id = 'b-2'") == "failed: pg_dump exited"* ]] ||
	fail "b-2 is not failed with its reason"
send billing-1 4 --poll
expect ok 3
pass "the same batch in a new envelope is acked and not applied twice; a half-new one applies only the new event"

# --- refusals -------------------------------------------------------------------
audit_before=$(q "SELECT count(*) FROM audit")
events_before=$(q "SELECT count(*) FROM events")

send billing-1 4 --service billing --events "started:4:b-3"
expect replayed
send billing-1 3 --poll
expect replayed
pass "a replayed envelope seq: $R"

send billing-1 5 --service billing --events "started:4:b-3" --bad-sig
expect bad_signature
pass "a bad signature: $R"

send rogue 1 --service billing --events "started:1:b-9"
expect unknown_agent
pass "an agent that is not enrolled: $R"

send billing-1 6 --service ledger --events "started:4:b-3,started:5:b-4"
expect not_owner
send billing-1 7 --service billing --events "started:4:b-3" # the refusal did not use up seq 4
expect ok 4
send ledger-1 1 --service ledger --events "started:1:l-1,completed:2:b-1"
expect not_owner
[[ $R == *"backup b-1 belongs to another service"* ]] || fail "not_owner reason: $R"
[[ $(q "SELECT count(*) FROM events WHERE agent = 'ledger-1'") == 0 ]] || fail "part of a refused envelope was applied"
[[ $(q "SELECT count(*) FROM backups WHERE id IN ('b-4', 'l-1')") == 0 ]] || fail "a refused envelope created backups"
[[ $(q "SELECT service || ' ' || status FROM backups WHERE id = 'b-1'") == "billing completed" ]] ||
	fail "another service's backup was touched"
pass "events about another service, or another service's backup, are refused and nothing applied: $R"

R=$(timeout 60 "$drv" send "$url" "${tls[@]}" --agent billing-1 --signkey "$T/billing-1.key" --seq 99 --garbage) ||
	fail "garbage: $R"
expect malformed
pass "garbage bytes: $R"

timeout 60 "$coord" agents revoke -c "$conf" ledger-1 >"$T/out" || fail "revoke: $(cat "$T/out")"
grep -q "^revoked agent ledger-1" "$T/out" || fail "revoke output: $(cat "$T/out")"
expect_fail "revoking an agent that does not exist" "no agent named nobody" \
	"$coord" agents revoke -c "$conf" nobody
send ledger-1 2 --service ledger --events "started:1:l-1"
expect revoked
pass "a revoked agent: $R"

# Refusals by someone who proved nothing (malformed, unknown, revoked, bad
# signature) are audited once per peer, reason and refusal_period (1 s here),
# within a few seconds; those by a verified agent (replayed, not_owner) at once,
# and the revocation too when the gate's directory (refreshed every second)
# has not seen it yet and the agent's row says so.
for _ in $(seq 100); do
	refused=$(q "SELECT count(*) FROM audit WHERE action = 'request.refused' AND chain_seq > 0")
	((refused >= 8)) && break
	sleep 0.1
done
[[ $refused == 8 ]] || fail "want 8 audited refusals, got $refused"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'request.refused' AND details->>'count' = '1' AND subject = '127.0.0.1'") -ge 3 ]] ||
	fail "the aggregated refusals do not name their peer and count: $(q "SELECT subject, details FROM audit WHERE action = 'request.refused'")"
[[ $(q "SELECT count(*) FROM audit") == $((audit_before + refused + 1 + 1)) ]] ||
	fail "audit rows: refusals + one applied event + one revocation expected"
[[ $(q "SELECT count(*) FROM events") == $((events_before + 1)) ]] || fail "refusals changed events"
counts=$(q "SELECT string_agg(reason || '/' || agent || '=' || count, ' ' ORDER BY reason, agent) FROM refusals")
[[ $counts == "bad_signature/billing-1=1 malformed/=1 not_owner/billing-1=1 not_owner/ledger-1=1 replayed/billing-1=2 revoked/ledger-1=1 unknown_agent/rogue=1" ]] ||
	fail "refusal counters: $counts"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'request.refused' AND details->>'reason' = 'unknown_agent' AND details->>'agent' = 'rogue'") == 1 ]] ||
	fail "the unknown agent's claimed name is not in its audit row"
timeout 60 "$coord" audit-verify -c "$conf" >"$T/verify" 2>&1 || fail "audit-verify: $(cat "$T/verify")"
grep -q "audit chain intact" "$T/verify" || fail "audit-verify: $(cat "$T/verify")"
pass "each refusal counted ($counts) and audited; $(cat "$T/verify")"

# --- catalog outage -----------------------------------------------------------
pg_stop "$PG_DIR"
send billing-1 10 --service billing --events "started:5:b-5"
expect unavailable
send billing-1 11 --service billing --events "started:5:b-5"
expect unavailable
kill -0 "$cpid" 2>/dev/null || fail "the coordinator died with the catalog"
(($(grep -c "catalog unreachable; not acking" "$T/coord.err") == 1)) ||
	fail "want the outage logged once: $(grep -c "catalog unreachable" "$T/coord.err")"
pass "catalog stopped: $R"

pg_restart "$PG_DIR"
seq=12
for _ in $(seq 60); do
	send billing-1 $seq --service billing --events "started:5:b-5"
	[[ $R == "status=ok "* ]] && break
	expect unavailable
	seq=$((seq + 1))
	sleep 0.5
done
expect ok 5
[[ $(q "SELECT status FROM backups WHERE id = 'b-5'") == running ]] || fail "b-5 after the outage"
grep -q "catalog reachable again" "$T/coord.err" || fail "recovery not logged"
pass "catalog back: acked again without restarting the coordinator ($R)"

# A catalog restarted while the coordinator was idle: the old connection is
# dead but nobody knows yet; the next request must not be the one to pay.
pg_stop "$PG_DIR"
pg_restart "$PG_DIR"
send billing-1 90 --poll
expect ok 5
pass "a catalog restarted while idle costs the next request nothing: $R"

# --- events the catalog cannot take ----------------------------------------------
send billing-1 100 --service billing --events "started:6:bad/id,badlsn:7:b-6,started:8:b-7"
expect ok 8
[[ $(q "SELECT count(*) FROM events WHERE agent = 'billing-1' AND seq IN (6, 7) AND payload ? 'rejected'") == 2 ]] ||
	fail "rejected events are not recorded: $(q "SELECT seq, payload FROM events WHERE seq IN (6, 7)")"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'event.rejected' AND actor = 'billing-1'") == 2 ]] ||
	fail "rejected events are not audited"
[[ $(q "SELECT count(*) FROM backups WHERE id = 'b-6'") == 0 ]] || fail "a rejected event created a backup"
[[ $(q "SELECT status FROM backups WHERE id = 'b-7'") == running ]] ||
	fail "the event after the rejected ones was not applied"
grep -q 'msg="event rejected".*seq=7' "$T/coord.err" || fail "the catalog's refusal of seq 7 was not logged"
pass "events the coordinator or the catalog refuse are recorded as rejected and acked; the rest applies"
send billing-1 101 --service billing --events "started:10:b-8,started:9:b-9"
expect malformed
[[ $(q "SELECT count(*) FROM events WHERE agent = 'billing-1' AND seq >= 9") == 0 ]] ||
	fail "an out-of-order batch was applied"
pass "durable events out of outbox order are refused: $R"
# backup.started events of one envelope become rows in one statement; an
# event after them about the same backup still finds its row, and a second
# started for it changes nothing.
send billing-1 102 --service billing --events "started:9:b-10,started:10:b-11,started:11:b-10,completed:12:b-10,started:13:b-12"
expect ok
[[ $(q "SELECT string_agg(id || '=' || status, ' ' ORDER BY id) FROM backups WHERE id IN ('b-10', 'b-11', 'b-12')") == "b-10=completed b-11=running b-12=running" ]] ||
	fail "started events in one envelope: $(q "SELECT string_agg(id || '=' || status, ' ' ORDER BY id) FROM backups WHERE id LIKE 'b-1_'")"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'backup.started' AND subject IN ('b-10', 'b-11', 'b-12')") == 4 ]] ||
	fail "each started event is not audited once"
pass "backup.started events applied together, in order with what follows them"

# The catalog's high-water mark behind its own events rows (set back by hand
# here): the envelope's one-statement insert is refused by the unique index,
# and the careful retry skips what is recorded and applies the rest.
q "UPDATE agents SET last_seq = 10 WHERE name = 'billing-1'" >/dev/null
events_before=$(q "SELECT count(*) FROM events WHERE agent = 'billing-1'")
send billing-1 103 --service billing --events "started:11:b-10,completed:12:b-10,started:13:b-12,started:14:b-14"
expect ok 14
[[ $(q "SELECT count(*) FROM events WHERE agent = 'billing-1'") == $((events_before + 1)) ]] ||
	fail "a mark behind the events table: $(q "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM events WHERE agent = 'billing-1'")"
[[ $(q "SELECT status FROM backups WHERE id = 'b-14'") == running ]] || fail "b-14 was not applied"
grep -q "envelope retried with savepoints" "$T/coord.err" || fail "the envelope was not retried the careful way"
pass "a high-water mark behind the events table: recorded events are skipped, the new one applied ($R)"

# --- clean stop -----------------------------------------------------------------
kill -TERM "$cpid"
rc=0
wait "$cpid" || rc=$?
if ((rc != 0)) || grep -q "Sanitizer" "$T/coord.err"; then
	cat "$T/coord.err" >&2
	fail "the coordinator did not stop cleanly (status $rc)"
fi
grep -q "coordinator stopped" "$T/coord.err" || fail "no clean stop logged"
timeout 60 "$coord" audit-verify -c "$conf" >/dev/null || fail "audit chain after the run"
pass "SIGTERM stops the coordinator cleanly; audit chain intact"
