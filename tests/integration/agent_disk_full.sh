#!/usr/bin/env bash
# An agent whose state directory fills up (issue 27), with real processes: a
# coordinator with a PagerDuty receiver, and an agent daemon whose
# state_dir is a 1 MiB tmpfs. The daemon is stopped with events in its
# outbox, the tmpfs is filled to the last byte, and the daemon is started
# again on the full disk. Checks:
# - the daemon keeps running and its heartbeats keep arriving
#   (agents.heartbeat_at advances), carrying the state directory's free
#   bytes and that writes fail for lack of space;
# - agent_disk_full pages within a bound, naming the agent; the agent logs
#   the condition once, not once per heartbeat;
# - the held events reach the catalog although the outbox cannot record
#   their ack;
# - once the space is freed, the page resolves, the outbox drains, and
#   every event is applied exactly once (count = highest seq, no gap);
# - coffer_agent_state_free_bytes{service,agent} is exported.
# Needs root for the tmpfs mount (skips otherwise).
source "$(dirname "$0")/lib.sh"
t_init agent_disk_full
agent=$COFFER_BIN/coffer-agent
bg=()
state=
cleanup_bg() {
	local p
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
	[[ -n $state ]] && umount "$state" 2>/dev/null
	t_cleanup
}
trap cleanup_bg EXIT

BOUND=30 # seconds to page or resolve: heartbeat 1s, maintenance 1s
rx_has() { grep -q -- "$1" "$T/rx.log" 2>/dev/null && { [[ -z ${2:-} ]] || grep -- "$1" "$T/rx.log" | grep -q -- "$2"; }; }
ag() { psql_at "$ci" -F ' ' -c "select $1 from agents where name = 'billing-db-1'"; }
events_applied() { psql_at "$ci" -c "select count(*) from events where agent = 'billing-db-1'"; }
start_agent() {
	"$agent" run -c "$T/billing.conf" 2>>"$T/agent.log" &
	apid=$!
	bg+=("$apid")
}

state=$T/billing-state
mkdir -p "$state"
if ! mount -t tmpfs -o size=1m tmpfs "$state" 2>"$T/mount.err"; then
	state=
	echo "skip: cannot mount a tmpfs: $(cat "$T/mount.err")"
	exit 77
fi

catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 100)"
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" "metrics_listen = 127.0.0.1:0" "metrics_cache = 0s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = ro0123456789abcdef0123456789abcd
agent_state_free_min = 256KiB
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
start_agent
wait_for 20 bash -c "[[ \$($PG_BINDIR/psql -X -A -t '$ci' -c \"select state_free_bytes > 262144 and not state_write_nospace from agents where name = 'billing-db-1'\") == t ]]" ||
	fail "no heartbeat with the state directory's free bytes: $(ag 'state_free_bytes, state_write_nospace') $(tail -3 "$T/agent.log")"
pass "agent daemon up on a 1 MiB tmpfs state_dir; its heartbeat reports $(ag state_free_bytes) bytes free"

# Events held in the outbox, then the disk filled, then the daemon back.
kill -TERM "$apid"
wait "$apid" || fail "the daemon did not stop cleanly: $(tail -3 "$T/agent.log")"
"$agent" backup -c "$T/billing.conf" >"$T/backup.out" 2>"$T/backup.err" || fail "backup: $(cat "$T/backup.err")"
held=$("$agent" events -c "$T/billing.conf" | wc -l)
((held > 0)) || fail "the backup left no event in the outbox"
before=$(events_applied)
dd if=/dev/zero of="$state/fill" bs=64k >/dev/null 2>&1 || true
[[ $(df -B1 --output=avail "$state" | tail -1 | tr -d ' ') == 0 ]] || fail "the tmpfs is not full: $(df -B1 "$state")"
t_full=$(now_ms)
start_agent
pass "daemon restarted on a full state_dir with $held events held"

wait_for $BOUND rx_has '"dedup_key":"coffer/billing/agent_disk_full/billing-db-1"' '"event_action":"trigger"' ||
	fail "no agent_disk_full page: $(ag 'state_free_bytes, state_write_nospace') $(tail -3 "$T/coord.log")"
t_page=$(now_ms)
grep '"dedup_key":"coffer/billing/agent_disk_full/billing-db-1"' "$T/rx.log" | grep -q 'agent billing-db-1' ||
	fail "the page does not name the agent: $(grep agent_disk_full "$T/rx.log" | head -1)"
[[ $(ag 'state_free_bytes, state_write_nospace') == "0 t" ]] || fail "agents row while full: $(ag 'state_free_bytes, state_write_nospace')"
hb1=$(ag "extract(epoch from heartbeat_at)")
sleep 3
hb2=$(ag "extract(epoch from heartbeat_at)")
[[ $(awk -v a="$hb1" -v b="$hb2" 'BEGIN { print (b > a) ? "up" : "stuck" }') == up ]] ||
	fail "heartbeats stopped on the full disk: heartbeat_at $hb1 then $hb2"
kill -0 "$apid" || fail "the daemon exited on the full disk: $(tail -3 "$T/agent.log")"
wait_for $BOUND bash -c "(( \$($PG_BINDIR/psql -X -A -t '$ci' -c \"select count(*) from events where agent = 'billing-db-1'\") >= $before + $held ))" ||
	fail "the held events did not reach the catalog: $(events_applied) applied, $before before, $held held"
((held == $("$agent" events -c "$T/billing.conf" | wc -l))) || fail "the outbox changed although it cannot be written"
pass "full: agent_disk_full paged $((t_page - t_full)) ms after the restart (bound ${BOUND}s); heartbeats advance; events delivered, outbox unacked"

curl -fsS "http://127.0.0.1:$mport/metrics" >"$T/metrics" || fail "/metrics"
grep -q '^coffer_agent_state_free_bytes{service="billing",agent="billing-db-1"} 0$' "$T/metrics" ||
	fail "coffer_agent_state_free_bytes: $(grep state_free "$T/metrics")"
pass "coffer_agent_state_free_bytes{service=\"billing\",agent=\"billing-db-1\"} 0"

# --- the space comes back ---------------------------------------------------------------------
rm -f "$state/fill"
t_free=$(now_ms)
wait_for $BOUND rx_has '"dedup_key":"coffer/billing/agent_disk_full/billing-db-1"' '"event_action":"resolve"' ||
	fail "agent_disk_full did not resolve: $(ag 'state_free_bytes, state_write_nospace')"
t_resolve=$(now_ms)
wait_for $BOUND bash -c "[[ \$('$agent' events -c '$T/billing.conf' | wc -l) == 0 ]]" ||
	fail "the outbox did not drain: $("$agent" events -c "$T/billing.conf" | wc -l) left"
read -r n maxseq < <(psql_at "$ci" -F ' ' -c "select count(*), coalesce(max(seq), 0) from events where agent = 'billing-db-1'")
[[ $n == "$maxseq" && $n == $((before + held)) ]] || fail "events applied: $n rows, max seq $maxseq, expected $((before + held))"
pass "freed: resolved $((t_resolve - t_free)) ms later; outbox drained; $n events applied exactly once"

n_full=$(grep -c 'msg="state directory full; durable writes fail"' "$T/agent.log" || true)
n_back=$(grep -c 'msg="state directory writable again"' "$T/agent.log" || true)
[[ $n_full == 1 && $n_back == 1 ]] || fail "logged $n_full times full and $n_back times writable again (want once each)"
n_err=$(grep -c 'level=error' "$T/agent.log" || true)
[[ $n_err == 0 ]] || fail "errors logged during the episode: $(grep 'level=error' "$T/agent.log" | head -3)"
kill -TERM "$apid"
wait "$apid" || fail "the daemon did not stop cleanly: $(tail -3 "$T/agent.log")"
pass "the condition was logged once when it began and once when it ended; daemon stopped cleanly"
echo "timings: restart on a full disk->page $((t_page - t_full)) ms, freed->resolve $((t_resolve - t_free)) ms (bound ${BOUND}s)"
