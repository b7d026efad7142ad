#!/usr/bin/env bash
# A catalog outage, end to end, with real processes: a coordinator with an
# enrolled agent (its database in the catalog's cluster, so the outage also
# fails its backup), a PagerDuty receiver, and the catalog's PostgreSQL
# killed (pg_ctl stop -m immediate) for longer than
# [alerts] catalog_unreachable_after. Checks:
# - the first scrape after the start says coffer_catalog_up 1 and carries
#   exactly the metrics docs/METRICS.md documents (tests/lint/monitoring.sh
#   --scrape: also every name the rules and the dashboard query) (a scrape is
#   saved to a file before it is searched: `curl | grep -q` under pipefail
#   fails when grep exits before curl has written the page, which is what
#   once looked like a scrape saying the catalog was down);
# - /healthz turns 503 naming the catalog; /metrics still answers 200 with
#   coffer_catalog_up 0, the coordinator's own counters (outage, intake,
#   build) and the catalog's families as last read, with their age; every
#   page passes `promtool check metrics`;
# - catalog_unreachable reaches the receiver within the bound plus a tick
#   (generously), straight from the coordinator's local outbox;
# - the agent's backup that failed during the outage is paged within
#   seconds of the catalog coming back (not at a natural tick: the
#   maintenance interval here is long), and catalog_unreachable resolves;
# - /healthz is 200 again, lane 0 serves an operator command, the outage is
#   audited ("catalog.outage"), and every event the agent held was applied
#   exactly once.
# Prints the measured times (fault to page, recovery to resolve, recovery to
# the backup's page).
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077
t_init catalog_outage
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer
bg=()
cleanup_bg() {
	local p
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap cleanup_bg EXIT

BOUND=5      # catalog_unreachable_after, seconds
TICK=20      # maintenance_interval: longer than the checks below wait
rx_has() { grep -q -- "$1" "$T/rx.log" 2>/dev/null && { [[ -z ${2:-} ]] || grep -- "$1" "$T/rx.log" | grep -q -- "$2"; }; }
healthz() { curl -s -o "$T/hz.body" -w '%{http_code}' "http://127.0.0.1:$mport/healthz" 2>/dev/null; }
health_is() { [[ $(healthz) == "$1" ]]; }

catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 1000)"
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = ${TICK}s" "metrics_listen = 127.0.0.1:0" "metrics_cache = 0s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = ro0123456789abcdef0123456789abcd
catalog_unreachable_after = ${BOUND}s
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
CONF
# The bound is checked at load, with the file's line.
sed 's/^catalog_unreachable_after = .*/catalog_unreachable_after = 0s/' "$T/coordinator.conf" >"$T/bad.conf"
if "$COFFER_BIN/coffer-coordinator" check-config -c "$T/bad.conf" >"$T/bad.out" 2>&1; then
	fail "catalog_unreachable_after = 0s was accepted"
fi
grep -q "catalog_unreachable_after" "$T/bad.out" || fail "the refusal does not name the key: $(cat "$T/bad.out")"
pass "catalog_unreachable_after = 0s refused at load: $(head -1 "$T/bad.out" | cut -c1-160)"

fleet_coordinator_up "$T/coordinator.conf" 300
fleet_agent_enroll billing 2s 2s
health_is 200 || fail "/healthz before the outage: $(cat "$T/hz.body")"
# scrape FILE: /metrics into FILE (status in FILE.code), then promtool's
# strict parse and lint of it.
scrape() {
	curl -sS -o "$1" -w '%{http_code}' "http://127.0.0.1:$mport/metrics" >"$1.code" || true
	[[ $(cat "$1.code") == 200 ]] || fail "/metrics answered $(cat "$1.code"): $(head -3 "$1")"
	promtool check metrics <"$1" >"$1.lint" 2>&1 || fail "promtool check metrics: $(head -5 "$1.lint")"
}
value() { awk -v k="$2" 'index($0, k " ") == 1 { print substr($0, length(k) + 2) }' "$1"; }
scrape "$T/metrics.first"
grep -q '^coffer_catalog_up 1$' "$T/metrics.first" || fail "the first scrape says the catalog is down: $(head -3 "$T/metrics.first")"
grep -q '^coffer_build_info{version="[0-9.]*",commit="[0-9a-zA-Z.-]\+"} 1$' "$T/metrics.first" ||
	fail "no coffer_build_info: $(grep build_info "$T/metrics.first")"
[[ $(value "$T/metrics.first" coffer_metrics_catalog_age_seconds) == 0.000 ]] ||
	fail "a fresh scrape's catalog age: $(grep catalog_age "$T/metrics.first")"
# A real page names exactly the metrics docs/METRICS.md documents, and
# every name deploy/monitoring's rules and dashboard query.
bash "$COFFER_SRC/tests/lint/monitoring.sh" --scrape "$T/metrics.first" >"$T/monitoring.out" 2>&1 ||
	fail "the scrape against docs/METRICS.md and deploy/monitoring: $(cat "$T/monitoring.out")"
# The catalog's part of a page: from its first family to the end.
catalog_part() { sed -n '/^# HELP coffer_backup_last_success_timestamp_seconds /,$p' "$1"; }
# The first pass has run (policy audited); from now on lane 0 only ticks
# every $TICK s, so what happens within seconds below is not a natural tick.
wait_for 20 grep -q 'msg="policy loaded"' "$T/coord.log" || fail "the first maintenance pass did not run"
pass "coordinator with billing-db-1 enrolled; /healthz 200, coffer_catalog_up 1"

# --- the fault ---------------------------------------------------------------------------
# The last read of the catalog's families before the fault (metrics_cache
# is 0s: each scrape reads): the outage's pages must serve it as it was.
scrape "$T/metrics.before"
grep -q '^coffer_alert_outbox_rows{state="pending"} ' "$T/metrics.before" || fail "no catalog samples before the fault"
t_fault=$(now_ms)
runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null ||
	fail "cannot stop the catalog"
# The agent backs up while its database (same cluster) is gone: the
# backup fails and its events wait in the agent's outbox.
if "$agent" backup -c "$T/billing.conf" >"$T/backup.out" 2>"$T/backup.err"; then
	fail "a backup of a stopped database succeeded"
fi
held=$("$agent" events -c "$T/billing.conf" | wc -l)
((held > 0)) || fail "the failed backup left no event in the agent's outbox"
timeout 120 "$agent" flush -c "$T/billing.conf" --timeout 100s >"$T/flush.out" 2>"$T/flush.err" &
flushpid=$!
bg+=("$flushpid")
# Lane 0 must find the outage by itself: an intake lane sees it first
# (the flush), but /healthz is the lanes' shared view.
wait_for 30 health_is 503 || fail "/healthz did not turn 503 during the outage: $(cat "$T/hz.body")"
t_503=$(now_ms)
grep -qi "catalog" "$T/hz.body" || fail "the 503 does not name the catalog: $(cat "$T/hz.body")"
scrape "$T/metrics.down"
grep -q '^coffer_catalog_up 0$' "$T/metrics.down" || fail "/metrics during the outage: $(head -5 "$T/metrics.down")"
[[ $(value "$T/metrics.down" coffer_catalog_outages_total) == 1 ]] ||
	fail "coffer_catalog_outages_total during the outage: $(grep outages_total "$T/metrics.down")"
down_for=$(value "$T/metrics.down" coffer_catalog_outage_seconds)
awk -v v="$down_for" 'BEGIN { exit !(v > 0) }' || fail "coffer_catalog_outage_seconds during the outage: $down_for"
age=$(value "$T/metrics.down" coffer_metrics_catalog_age_seconds)
awk -v v="$age" 'BEGIN { exit !(v > 0) }' || fail "coffer_metrics_catalog_age_seconds during the outage: '$age'"
[[ $(catalog_part "$T/metrics.down") == "$(catalog_part "$T/metrics.before")" ]] ||
	fail "the catalog's last values are not served as read: $(diff <(catalog_part "$T/metrics.before") <(catalog_part "$T/metrics.down") | head -5)"
grep -q '^coffer_intake_requests_total{result="ok"} [0-9]' "$T/metrics.down" &&
	grep -q '^coffer_build_info{' "$T/metrics.down" && grep -q '^coffer_services_configured 1$' "$T/metrics.down" ||
	fail "the coordinator's own metrics are missing during the outage: $(grep -v '^#' "$T/metrics.down" | head -12)"
pass "outage seen: /healthz 503 after $((t_503 - t_fault)) ms ($(tr -d '\n' <"$T/hz.body")); /metrics 200: coffer_catalog_up 0, outage ${down_for}s, catalog values ${age}s old kept, promtool clean"

wait_for $((BOUND + TICK + 20)) rx_has '"dedup_key":"coffer/_coordinator/catalog_unreachable"' '"event_action":"trigger"' ||
	fail "no catalog_unreachable page: $(grep -i catalog "$T/coord.log" | tail -5)"
t_page=$(now_ms)
fault_to_page=$((t_page - t_fault))
((fault_to_page >= BOUND * 1000)) || fail "paged after $fault_to_page ms, before the ${BOUND}s bound"
grep 'catalog_unreachable' "$T/rx.log" | grep -q 'ro0123456789abcdef' || fail "the page went without the routing key"
grep -q 'ro0123456789abcdef' "$T/coord.log" && fail "the routing key is in the coordinator's log"
[[ -s $T/coord-state/catalog-outage.json ]] || fail "no local outbox in the state directory"
pass "catalog_unreachable paged $fault_to_page ms after the fault (bound ${BOUND}s); outbox $T/coord-state/catalog-outage.json"
# Longer than a reconnect backoff cap, so every lane is at its slowest.
sleep 3
# The agent's flush has been answered "retry later" meanwhile.
scrape "$T/metrics.late"
grep -q '^coffer_intake_requests_total{result="unavailable"} [1-9]' "$T/metrics.late" ||
	fail "no unavailable answers counted during the outage: $(grep intake_requests "$T/metrics.late")"

# --- recovery ----------------------------------------------------------------------------
pg_restart "$T/pg"
t_back=$(now_ms)
wait_for 30 rx_has '"dedup_key":"coffer/_coordinator/catalog_unreachable"' '"event_action":"resolve"' ||
	fail "catalog_unreachable not resolved: $(grep -i catalog "$T/coord.log" | tail -5)"
back_to_resolve=$(($(now_ms) - t_back))
wait_for 30 rx_has '"dedup_key":"coffer/billing/backup_failed"' '"event_action":"trigger"' ||
	fail "the backup that failed during the outage was not paged: $(tail -5 "$T/coord.log")"
back_to_failed=$(($(now_ms) - t_back))
((back_to_failed < TICK * 1000)) || note "backup_failed paged after $back_to_failed ms, as late as a natural tick"
wait "$flushpid" || fail "the agent's flush did not get its events acked: $(cat "$T/flush.err")"
wait_for 20 health_is 200 || fail "/healthz did not return to 200: $(cat "$T/hz.body")"
t_200=$(now_ms)
scrape "$T/metrics.up"
grep -q '^coffer_catalog_up 1$' "$T/metrics.up" || fail "coffer_catalog_up is not 1 after recovery"
grep -q 'service="billing"' "$T/metrics.up" || fail "/metrics lacks the catalog's families after recovery"
[[ $(value "$T/metrics.up" coffer_metrics_catalog_age_seconds) == 0.000 &&
	$(value "$T/metrics.up" coffer_catalog_outage_seconds) == 0.000 &&
	$(value "$T/metrics.up" coffer_catalog_outages_total) == 1 ]] ||
	fail "after recovery: $(grep -E '^coffer_(metrics_catalog_age|catalog_outage)' "$T/metrics.up")"
pass "recovery: resolve $back_to_resolve ms, backup_failed paged $back_to_failed ms, /healthz 200 $((t_200 - t_back)) ms after the catalog came back"

# Lane 0 reconnected by itself (its pass paged backup_failed above), before
# any operator command: the bug this test was written for.
grep -Eq 'msg="catalog (reachable again; acking|connection was lost and is back)" lane=0' "$T/coord.log" ||
	fail "lane 0 did not reconnect by itself: $(grep 'lane=0' "$T/coord.log" | tail -3)"
"$cli" alerts list >"$T/alerts.out" 2>"$T/alerts.err" || fail "lane 0 does not serve operators after the outage: $(cat "$T/alerts.err")"
grep -q backup_failed "$T/alerts.out" || fail "alerts list lacks backup_failed: $(cat "$T/alerts.out")"
pass "lane 0 serves an operator command again (coffer alerts list)"

# Exactly once: the agent's outbox is empty, the catalog has each of its
# sequence numbers once and no gap, and one failed backup.
[[ $("$agent" events -c "$T/billing.conf" | wc -l) == 0 ]] || fail "events still waiting in the agent's outbox"
read -r n maxseq < <(psql_at "$ci" -F ' ' -c "select count(*), coalesce(max(seq), 0) from events where agent = 'billing-db-1'")
[[ $n == "$maxseq" && $n -ge $held ]] || fail "events applied: $n rows, max seq $maxseq, $held held"
# (Retention may already have marked the failed backup for deletion.)
failed=$(psql_at "$ci" -c "select count(*) from backups where service = 'billing' and failure_reason is not null")
[[ $failed == 1 ]] || fail "the failed backup is not recorded once: $failed: $(psql_at "$ci" -c "select id, status from backups")"
wait_for 30 bash -c "[[ \$($PG_BINDIR/psql -X -A -t '$ci' -c \"select count(*) from audit where action = 'catalog.outage'\") == 1 ]]" ||
	fail "the outage was not audited once: $(psql_at "$ci" -c "select action, details from audit where action like 'catalog%'")"
details=$(psql_at "$ci" -c "select details from audit where action = 'catalog.outage'")
states=$(psql_at "$ci" -F ' ' -c "select details->'trigger'->>'state', details->'resolve'->>'state',
	details ? 'started_at' and details ? 'ended_at' from audit where action = 'catalog.outage'")
[[ $states == "delivered delivered t" ]] || fail "the outage's audit row: $states: $details"

"$cli" audit verify >/dev/null || fail "audit chain broken after the outage"
pass "nothing lost: $n events applied exactly once ($held held during the outage); catalog.outage audited: $(cut -c1-200 <<<"$details")"

grep -q 'msg="catalog unreachable; not acking"' "$T/coord.log" || fail "the outage was not logged"
grep -q 'msg="catalog outage over"' "$T/coord.log" || fail "the outage's end was not logged"
kill -TERM "$cpid"
wait "$cpid" || fail "coordinator did not stop cleanly: $(tail -3 "$T/coord.log")"
echo "timings: fault->page ${fault_to_page} ms (bound ${BOUND}s), recovery->resolve ${back_to_resolve} ms, recovery->backup_failed page ${back_to_failed} ms (tick ${TICK}s)"
pass "coordinator stopped cleanly"
