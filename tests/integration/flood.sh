#!/usr/bin/env bash
# Flood-proof intake (issue 21 item 3), end to end: a real coordinator over
# mutual TLS, a real catalog.
# - one peer (bound to 127.0.0.2, a peer of its own) floods junk for 10 s:
#   bytes that are no protobuf, envelopes of agents nobody enrolled, and
#   envelopes forging an enrolled agent's name. Meanwhile a real agent on
#   127.0.0.1 is acked every time. The audit log grows by a few rows for
#   the whole flood (one per peer, reason and refusal_period), and their
#   counts cover every junk request answered (and those dropped unanswered
#   once the peer was muted): nothing refused without a trace;
# - a revoked agent certificate: the CA's CRL is re-issued with it; the
#   coordinator notices the file change, re-makes its listener, and the
#   agent's next handshake is refused (its error says the certificate may
#   be revoked), while another agent's certificate still works.
# Timings are never asserted, only generous bounds on waiting.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "$0")/lib.sh"
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
t_init flood

coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/intake_itest"
flood="$COFFER_BIN/flood_itest"
[[ -x $coord && -x $drv && -x $flood ]] || fail "build coffer-coordinator, intake_itest and flood_itest first"

catalog_start "$T/pg"
q() { psql_at "$ci" -c "$1"; }

pki="$T/pki"
pki_make "$pki" agents hostile victim
pki_crl "$pki"

conf="$T/coordinator.conf"
cat >"$conf" <<CONF
[coordinator]
listen = tls+tcp://127.0.0.1:0
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/state
refusal_period = 5s
[tls]
ca = $pki/ca.crt
cert = $pki/localhost.crt
key = $pki/localhost.key
crl = $pki/ca.crl
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
CONF
catalog_audit_key
catalog_migrate "$conf"
"$drv" keygen "$T/billing-1.key" >"$T/billing-1.pub" || fail "keygen"
timeout 60 "$coord" agents enroll -c "$conf" --service billing --agent billing-1 \
	--pubkey "$T/billing-1.pub" >/dev/null || fail "enroll billing-1"

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
port=$(sed -n 's/.*msg="coordinator listening".* port=\([0-9]*\).*/\1/p' "$T/coord.err")
[[ $port =~ ^[0-9]+$ && $port != 0 ]] || fail "the coordinator did not start: $(cat "$T/coord.err")"
url="tls+tcp://127.0.0.1:$port"

seq=0
# send CERT: one real envelope of billing-1 with a heartbeat; sets R.
send() {
	seq=$((seq + 1))
	R=$(timeout 60 "$drv" send "$url" --ca "$pki/ca.crt" --cert "$pki/$1.crt" --key "$pki/$1.key" \
		--agent billing-1 --signkey "$T/billing-1.key" --seq "$seq" --events "started:$seq:b-$seq" 2>&1)
}

# --- a junk flood -----------------------------------------------------------------
audit_before=$(q "SELECT count(*) FROM audit")
"$flood" "$url" --ca "$pki/ca.crt" --cert "$pki/hostile.crt" --key "$pki/hostile.key" \
	--seconds 10 --threads 4 --local-addr 127.0.0.2 --victim billing-1 >"$T/flood.out" 2>&1 &
fpid=$!
sleep 1
acked=0
for _ in $(seq 8); do
	send agents || fail "a real agent during the flood: $R"
	[[ $R == "status=ok "* ]] || fail "a real agent was not acked during the flood: $R"
	acked=$((acked + 1))
	sleep 0.5
done
wait "$fpid" || fail "flood_itest: $(cat "$T/flood.out")"
answered=$(sed -n 's/.*answered=\([0-9]*\).*/\1/p' "$T/flood.out")
# A muted peer is not answered: its threads wait out their 5 s timeouts, so
# what it gets through is the refusal budget's burst (50) and refill (10/s).
((answered > 50)) || fail "the flood hardly ran: $(cat "$T/flood.out")"
pass "a real agent acked $acked times during a 10 s junk flood ($(cat "$T/flood.out"))"

# Every junk request answered is counted in some period's row; the last
# period is written within a few seconds of its end.
counted=0
for _ in $(seq 150); do
	counted=$(q "SELECT coalesce(sum((details->>'count')::bigint), 0) FROM audit
		WHERE action = 'request.refused' AND subject = '127.0.0.2'")
	((counted >= answered)) && break
	sleep 0.1
done
((counted >= answered)) || fail "refusals counted in the audit log: $counted of $answered answered"
rows=$(q "SELECT count(*) FROM audit WHERE action = 'request.refused' AND subject = '127.0.0.2'")
added=$(($(q "SELECT count(*) FROM audit") - audit_before))
# 10 s is at most 4 periods of 5 s (one partly before, one after), and a
# peer can be refused for at most 4 reasons (malformed, unknown_agent,
# bad_signature, rate_limited): 16 rows, whatever the request rate.
((rows <= 16)) || fail "the flood wrote $rows audit rows: $(q "SELECT details FROM audit WHERE subject = '127.0.0.2'")"
((added <= rows + acked + 4)) || fail "the audit log grew by $added rows for $rows refusal rows and $acked events"
q "SELECT (details->>'reason') || '=' || (details->>'count') FROM audit WHERE subject = '127.0.0.2' ORDER BY chain_seq" >"$T/rows"
grep -q "^rate_limited=" "$T/rows" || fail "the flooding peer was never muted: $(cat "$T/rows")"
# Counters per claimed name: at most 32 names a period, the rest under "".
(($(q "SELECT count(*) FROM refusals") <= 4 * 32 + 4)) || fail "refusal counters: $(q "SELECT count(*) FROM refusals") rows"
[[ $(q "SELECT sum(count) FROM refusals") == "$counted" ]] ||
	fail "the refusal counters ($(q "SELECT sum(count) FROM refusals")) do not add up to the audited $counted"
pass "$answered junk requests left $rows audit rows ($(tr '\n' ' ' <"$T/rows")), all counted"

# --- a revoked certificate ----------------------------------------------------------
send victim || fail "the victim's certificate before revocation: $R"
[[ $R == "status=ok "* ]] || fail "the victim's certificate before revocation: $R"
reloads=$(grep -c "tls config reloaded" "$T/coord.err" || true)
pki_crl "$pki" victim
for _ in $(seq 100); do
	(($(grep -c "tls config reloaded" "$T/coord.err" || true) > reloads)) && break
	sleep 0.1
done
(($(grep -c "tls config reloaded" "$T/coord.err" || true) > reloads)) ||
	fail "the coordinator did not reload the CRL: $(tail -5 "$T/coord.err")"
rc=0
send victim || rc=$?
((rc != 0)) || fail "a revoked certificate was accepted: $R"
[[ $R == *"TLS handshake"*"revoked"* ]] || fail "the revoked agent's error does not say why: $R"
pass "a revoked certificate is refused at the handshake: $R"
send agents || fail "another agent after the CRL changed: $R"
[[ $R == "status=ok "* ]] || fail "another agent after the CRL changed: $R"
pass "other certificates still connect: $R"

# A CRL that does not load keeps the listener as it was.
echo "not a crl" >"$pki/ca.crl.new" && mv "$pki/ca.crl.new" "$pki/ca.crl"
for _ in $(seq 100); do
	grep -q "tls config not reloaded" "$T/coord.err" && break
	sleep 0.1
done
grep -q "tls config not reloaded.*holds no PEM certificate revocation list" "$T/coord.err" ||
	fail "a bad CRL: $(tail -3 "$T/coord.err")"
send agents || fail "after a bad CRL: $R"
[[ $R == "status=ok "* ]] || fail "after a bad CRL: $R"
pass "a CRL that does not load is reported and the listener keeps serving"

kill -TERM "$cpid"
wait "$cpid" || fail "the coordinator did not stop cleanly: $(tail -5 "$T/coord.err")"
timeout 60 "$coord" audit-verify -c "$conf" >/dev/null || fail "audit chain after the flood"
pass "SIGTERM stops the coordinator cleanly; audit chain intact"
