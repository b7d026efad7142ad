#!/usr/bin/env bash
# A completed backup is a fact only once the coordinator has checked it
# (issue 20 item 3; coordinator/drill/verify.c). Real catalog, coordinator
# over mutual TLS, agent and posix repository. The agent backs up in the
# foreground (events wait in its outbox), the test may tamper with what was
# stored, then `coffer-agent flush` reports the completion. A sound backup
# becomes verified within a few ticks; a backup whose manifest was changed,
# or whose data was truncated, after it completed is rejected, pages
# backup_unverifiable, is audited, and neither `coffer status`, the
# freshness metric nor a retention tier moves off the verified backup.
source "$(dirname "$0")/lib.sh"
t_init verify
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer

catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 3000)"
pki=$T/pki
pki_make "$pki" alice billing-db-1
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" "metrics_listen = 127.0.0.1:0" <<CONF
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 1
retention.min_redundancy = 1
CONF
fleet_coordinator_up "$T/coordinator.conf" 600
trap t_cleanup EXIT
fleet_agent_enroll billing
q() { psql_at "$base dbname=coffer" -c "$1"; }

# One foreground backup; prints its id.
backup_now() {
	"$agent" backup -c "$T/billing.conf" >"$T/backup.out" 2>"$T/backup.err" || fail "backup: $(tail -3 "$T/backup.err")"
	ls -1 "$T/repo/services/billing/backups" | sort | tail -1
}
# Waits (at most 30 s) until backup $1 has verify_state $2.
wait_state() {
	for _ in $(seq 300); do
		[[ $(q "SELECT verify_state FROM backups WHERE id = '$1'") == "$2" ]] && return 0
		sleep 0.1
	done
	fail "backup $1 is not $2 after 30 s: $(q "SELECT status, verify_state, verify_reason FROM backups WHERE id = '$1'") $(grep -i verif "$T/coord.log" | tail -3)"
}

good=$(backup_now)
"$agent" flush -c "$T/billing.conf" >/dev/null 2>"$T/flush.err" || fail "flush: $(cat "$T/flush.err")"
wait_state "$good" verified
lag=$(q "SELECT round(extract(epoch FROM verified_at - settled_at) * 1000) FROM backups WHERE id = '$good'")
[[ $(q "SELECT count(*) FROM audit WHERE action = 'backup.verified' AND subject = '$good'") == 1 ]] || fail "backup.verified not audited"
"$cli" status --output json >"$T/status.json" || fail "coffer status"
grep -q "\"id\":\"$good\"" "$T/status.json" || fail "status does not show the verified backup: $(cat "$T/status.json")"
pass "a sound backup is verified (completion to verified: ${lag} ms), audited, and is status's last backup"

# Tamper 1: manifest.json rewritten after the backup completed.
bad1=$(backup_now)
m=$T/repo/services/billing/backups/$bad1/manifest.json
chmod u+w "$m" "$(dirname "$m")" 2>/dev/null || true
sed -i 's/"invoices"/"invoicez"/' "$m"
cmp -s "$m" /dev/null && fail "manifest.json vanished"
"$agent" flush -c "$T/billing.conf" >/dev/null 2>"$T/flush.err" || fail "flush: $(cat "$T/flush.err")"
wait_state "$bad1" rejected
reason=$(q "SELECT verify_reason FROM backups WHERE id = '$bad1'")
[[ $reason == *"changed after the backup completed"* ]] || fail "rejection reason unclear: $reason"
pass "a backup whose manifest.json changed after completion is rejected: $reason"

# Tamper 2: data truncated (the manifest is intact and signed).
bad2=$(backup_now)
d=$T/repo/services/billing/backups/$bad2/data
chmod u+w "$d" 2>/dev/null || true
truncate -s 100 "$d"
"$agent" flush -c "$T/billing.conf" >/dev/null 2>"$T/flush.err" || fail "flush: $(cat "$T/flush.err")"
wait_state "$bad2" rejected
reason=$(q "SELECT verify_reason FROM backups WHERE id = '$bad2'")
[[ $reason == *"has 100 bytes"* ]] || fail "truncation reason unclear: $reason"
pass "a backup whose data was truncated is rejected: $reason"

# Paged, audited, counted; status and freshness stay on the verified one.
for _ in $(seq 100); do
	[[ $(q "SELECT state FROM alerts WHERE dedup_key = 'coffer/billing/backup_unverifiable'") == triggered ]] && break
	sleep 0.1
done
[[ $(q "SELECT state FROM alerts WHERE dedup_key = 'coffer/billing/backup_unverifiable'") == triggered ]] ||
	fail "backup_unverifiable did not page: $(q "SELECT dedup_key, state FROM alerts")"
[[ $(q "SELECT severity FROM alerts WHERE dedup_key = 'coffer/billing/backup_unverifiable'") == critical ]] || fail "not critical"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'backup.rejected' AND subject IN ('$bad1', '$bad2')") == 2 ]] ||
	fail "rejections not audited"
"$cli" status --output json >"$T/status.json" || fail "coffer status"
grep -q "\"id\":\"$good\"" "$T/status.json" || fail "status's last backup moved off the verified one: $(cat "$T/status.json")"
grep -q '"rejected":2' "$T/status.json" || fail "status does not count the rejected backups: $(cat "$T/status.json")"
"$cli" status | grep -q "2 rejected by verification" || fail "status text does not say so: $("$cli" status)"
curl -fsS "http://127.0.0.1:$mport/metrics" >"$T/metrics" || fail "/metrics"
settled=$(q "SELECT round(extract(epoch FROM settled_at), 3) FROM backups WHERE id = '$good'")
grep -q "^coffer_backup_last_success_timestamp_seconds{service=\"billing\"} $settled" "$T/metrics" ||
	fail "freshness metric is not the verified backup's ($settled): $(grep last_success "$T/metrics")"
grep -q '^coffer_backups_verify{service="billing",state="rejected"} 2' "$T/metrics" ||
	fail "no rejected count metric: $(grep verify "$T/metrics")"
pass "backup_unverifiable paged (critical), both rejections audited; status and the freshness metric still name $good"

# Retention: one daily slot; the rejected (newer) backups take none of it
# and expire like failed backups (pending deletion after the grace).
"$cli" retention plan --service billing --output json >"$T/plan" || fail "retention plan"
python3 - "$T/plan" "$good" "$bad1" "$bad2" <<'PY' || fail "retention plan wrong: $(cat "$T/plan")"
import json, sys
plan = json.load(open(sys.argv[1]))["plan"]
rows = {b["id"]: b for b in plan["backups"]}
good, bad = rows[sys.argv[2]], [rows[sys.argv[3]], rows[sys.argv[4]]]
assert good["action"] == "keep" and "daily" in good["reasons"], good
for b in bad:
    assert b["verify_state"] == "rejected" and "daily" not in b.get("reasons", []), b
PY
pass "retention plan: the verified backup keeps the daily slot; rejected ones hold none"

# A later sound backup resolves the page.
good2=$(backup_now)
"$agent" flush -c "$T/billing.conf" >/dev/null 2>"$T/flush.err" || fail "flush: $(cat "$T/flush.err")"
wait_state "$good2" verified
for _ in $(seq 100); do
	[[ $(q "SELECT state FROM alerts WHERE dedup_key = 'coffer/billing/backup_unverifiable'") == resolved ]] && break
	sleep 0.1
done
[[ $(q "SELECT state FROM alerts WHERE dedup_key = 'coffer/billing/backup_unverifiable'") == resolved ]] ||
	fail "a later verified backup did not resolve backup_unverifiable"
"$cli" audit verify >/dev/null || fail "audit chain broken"
kill -TERM "$cpid"
wait "$cpid" || fail "coordinator did not stop cleanly: $(tail -3 "$T/coord.log")"
pass "a later verified backup resolves backup_unverifiable; audit chain intact; clean stop"
