#!/usr/bin/env bash
# agent_quiet per agent (issue 27), with real processes: one service with
# two agent daemons (as a primary's and a replica's would be) and a third
# agent enrolled and then revoked. The second daemon is frozen (SIGSTOP)
# for longer than [alerts] agent_quiet while the first keeps talking.
# Checks:
# - the page for the silent agent arrives within agent_quiet plus a
#   generous bound, with the agent's name in its dedup key and summary;
# - nothing pages for the agent still talking, for the revoked agent
#   (never heard from), or service-wide (the service still has an agent);
# - the page resolves once the agent is heard from again (SIGCONT).
# agent_quiet cannot be set below one minute, so this test takes that long.
source "$(dirname "$0")/lib.sh"
t_init agent_quiet
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer
bg=()
cleanup_bg() {
	local p
	for p in "${bg[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap cleanup_bg EXIT

QUIET=60 # seconds, [alerts] agent_quiet's minimum
BOUND=30 # beyond it, to page or resolve (maintenance every second)
rx_has() { grep -q -- "$1" "$T/rx.log" 2>/dev/null && { [[ -z ${2:-} ]] || grep -- "$1" "$T/rx.log" | grep -q -- "$2"; }; }

catalog_start "$T/pg" billing
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1 billing-db-2 billing-db-3
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = ro0123456789abcdef0123456789abcd
agent_quiet = ${QUIET}s
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
CONF
fleet_coordinator_up "$T/coordinator.conf" 300
fleet_agent_enroll billing 1s 2s
# Two more agents of the same service, on the same database.
for n in 2 3; do
	mkdir -p "$T/billing-$n-state"
	sed -e "s/^name = billing-db-1$/name = billing-db-$n/" -e "s|$T/billing-state|$T/billing-$n-state|" \
		-e "s|$T/billing.sign|$T/billing-$n.sign|" -e "s|$pki/billing-db-1|$pki/billing-db-$n|" \
		"$T/billing.conf" >"$T/billing-$n.conf"
	"$agent" init -c "$T/billing-$n.conf" >"$T/billing-$n.pub" || fail "init billing-db-$n"
	"$cli" agents enroll --service billing --agent "billing-db-$n" --pubkey "$T/billing-$n.pub" >/dev/null ||
		fail "enroll billing-db-$n"
done
"$cli" agents revoke billing-db-3 >"$T/revoke.out" 2>&1 || fail "revoke billing-db-3: $(cat "$T/revoke.out")"
"$agent" run -c "$T/billing.conf" 2>"$T/agent1.log" &
a1=$!
bg+=("$a1")
"$agent" run -c "$T/billing-2.conf" 2>"$T/agent2.log" &
a2=$!
bg+=("$a2")
heard() { [[ $(psql_at "$ci" -c "select count(*) from agents where service = 'billing' and heartbeat_at is not null") == 2 ]]; }
wait_for 20 heard || fail "both agents' heartbeats did not arrive: $(tail -3 "$T/agent2.log")"
kill -STOP "$a2"
t_stop=$(now_ms)
pass "two agents of billing heard from, a third revoked; billing-db-2 frozen"

key2='"dedup_key":"coffer/billing/agent_quiet/billing-db-2"'
wait_for $((QUIET + BOUND)) rx_has "$key2" '"event_action":"trigger"' ||
	fail "no agent_quiet page for billing-db-2: $(psql_at "$ci" -c "select dedup_key, state from alerts")"
t_page=$(now_ms)
((t_page - t_stop >= QUIET * 1000)) || fail "paged after $((t_page - t_stop)) ms, before agent_quiet"
grep -- "$key2" "$T/rx.log" | grep -q 'agent billing-db-2 has not been heard from' ||
	fail "the summary does not name the agent: $(grep -- "$key2" "$T/rx.log" | head -1)"
! grep -q 'coffer/billing/agent_quiet/billing-db-1' "$T/rx.log" || fail "paged for billing-db-1, which is talking"
! grep -q 'coffer/billing/agent_quiet/billing-db-3' "$T/rx.log" || fail "paged for the revoked billing-db-3"
! grep -q '"dedup_key":"coffer/billing/agent_quiet"' "$T/rx.log" || fail "paged service-wide although billing-db-1 talks"
"$cli" alerts list >"$T/alerts.out" 2>&1 || fail "alerts list: $(cat "$T/alerts.out")"
grep -q 'billing-db-2' "$T/alerts.out" || fail "alerts list lacks the agent's page: $(cat "$T/alerts.out")"
pass "billing-db-2 paged $((t_page - t_stop)) ms after it went silent (agent_quiet ${QUIET}s); nothing for db-1, the revoked db-3, or the service"

kill -CONT "$a2"
t_cont=$(now_ms)
wait_for $BOUND rx_has "$key2" '"event_action":"resolve"' ||
	fail "agent_quiet for billing-db-2 did not resolve: $(tail -3 "$T/agent2.log")"
t_resolve=$(now_ms)
pass "resolved $((t_resolve - t_cont)) ms after billing-db-2 was heard from again"
for p in "$a1" "$a2"; do
	kill -TERM "$p"
	wait "$p" || fail "an agent did not stop cleanly"
done
echo "timings: silent->page $((t_page - t_stop)) ms (agent_quiet ${QUIET}s), resumed->resolve $((t_resolve - t_cont)) ms"
