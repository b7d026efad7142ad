#!/usr/bin/env bash
# Drills and integrity sweeps with the real daemons, the way an operator
# meets them: a catalog PostgreSQL, `coffer-coordinator run` over mutual TLS
# (its maintenance tick schedules drills and hands sweeps to the sweeper
# thread), a service agent daemon taking real backups of a real database,
# the operator CLI, and a local receiver standing in for PagerDuty.
# - a drill runner is enrolled for the service with `coffer agents enroll
#   --drill-runner`; an auditor may not start a drill;
# - `coffer drill run` starts a drill of the latest backup: drill list and
#   status show it running, the audit log has backup.drill_started;
# - the integrity sweep checks the agent's real objects (sealed data and
#   signed manifest) against the digests the agent reported, and a change
#   event is delivered; a byte flipped in the stored data is found by the
#   next sweep, audited naming object and repository, and pages
#   coffer/billing/integrity_failed through the receiver;
# - with no runner polling, the drill is overdue after drill.rto +
#   drill.overdue_after and coffer/billing/drill_overdue pages.
# The drill's restore by a real runner is in drill_runner.sh and drill_agent.sh;
# the intake of results, ownership refusals and every alert transition are
# in drills.sh.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077
t_init drill_e2e
# Background processes die with the script, however it ends: a failed
# check must not leave a receiver or an agent holding ctest's pipe open.
bg=()
trap 'for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; t_cleanup' EXIT
agent=$COFFER_BIN/coffer-agent
coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
drv=$COFFER_BIN/drills_itest
[[ -x $agent && -x $coord && -x $cli && -x $drv ]] || fail "build the binaries and drills_itest first"

catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int, at timestamptz default now()); insert into invoices select generate_series(1, 5000)"

receiver_start

pki=$T/pki
pki_make "$pki" alice audrey billing-db-1
"$cli" init --out "$T/audrey.key" >"$T/audrey.pub"
mkdir -p "$T/repo"
hour=$(( ($(date -u +%-H) + 12) % 24 ))
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" <<CONF
[repository.primary]
type = posix
path = $T/repo
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = e2e0123456789abcdef0123456789abc
[integrity]
sweep_interval = 3s
[operator.audrey]
public_key = $T/audrey.pub
role = auditor
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
drill.schedule = 0 $hour * * *
drill.runner = runner-1
drill.rto = 1m
drill.overdue_after = 1s
drill.assert.1 = SELECT count(*) = 5000 FROM invoices
CONF
fleet_coordinator_up "$T/coordinator.conf" 600
grep -q "drills and integrity" "$T/migrate.out" || fail "the drills migration was not applied: $(cat "$T/migrate.out")"
operator_conf audrey

fleet_agent_enroll billing
"$agent" run -c "$T/billing.conf" 2>"$T/billing.log" &
apid=$!
bg+=("$apid")

openssl genpkey -algorithm ed25519 -out "$T/runner.pem" 2>/dev/null || fail "openssl genpkey"
openssl pkey -in "$T/runner.pem" -pubout -out "$T/runner.pub" 2>/dev/null || fail "openssl pkey"
"$cli" agents enroll --drill-runner --service billing --agent runner-1 --pubkey "$T/runner.pub" >"$T/out" 2>"$T/err" ||
	fail "enroll runner: $(cat "$T/err")"
grep -q 'enrolled drill runner runner-1 for drilling billing' "$T/out" || fail "enroll output: $(cat "$T/out")"
"$cli" agents list >"$T/agents.txt" || fail "agents list"
grep -Eq '^runner-1 +drills:billing +active' "$T/agents.txt" || fail "agents list: $(cat "$T/agents.txt")"
pass "drill runner enrolled over the admin endpoint; agents list shows what it drills"

if "$cli" drill run -c "$T/audrey.conf" --service billing >"$T/out" 2>"$T/err"; then
	fail "an auditor started a drill"
fi
grep -qi 'unauthorized\|role' "$T/err" || fail "auditor refusal unclear: $(cat "$T/err")"
"$cli" drill run --service billing >"$T/out" 2>"$T/err" && fail "a drill without any backup started"
grep -q 'no completed logical backup' "$T/err" || fail "unclear refusal: $(cat "$T/err")"
pass "refused: an auditor's drill run; a drill with nothing to drill ($(cut -c1-120 "$T/err"))"

"$cli" backup run --service billing >/dev/null || fail "backup run"
ok=
for _ in $(seq 300); do
	"$cli" backups list --service billing --output json 2>/dev/null | grep -q '"completed"' && { ok=yes; break; }
	sleep 0.1
done
[[ -n $ok ]] || fail "no completed backup: $(tail -5 "$T/billing.log")"
# Drills take verified backups only (the coordinator checks each one first).
for _ in $(seq 300); do
	[[ $(psql_at "$ci" -c "select count(*) from backups where service = 'billing' and verify_state = 'verified'") -ge 1 ]] && break
	sleep 0.1
done
bid=$("$cli" backups list --service billing --output json | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)

"$cli" drill run --service billing >"$T/out" 2>"$T/err" || fail "drill run: $(cat "$T/err")"
grep -Eq "^drill [0-9]+ started for service billing: backup $bid from the primary repository \(runner runner-1\)" "$T/out" ||
	fail "drill run output: $(cat "$T/out")"
did=$(sed -n 's/^drill \([0-9]*\) .*/\1/p' "$T/out")
"$cli" drill list --service billing >"$T/list.txt" || fail "drill list"
grep -Eq "^$did +billing +running +$bid +primary" "$T/list.txt" || fail "drill list: $(cat "$T/list.txt")"
"$cli" status >"$T/status.txt" || fail "status"
grep -q '^restore drills:' "$T/status.txt" && grep -Eq "^billing +$did .* running" "$T/status.txt" ||
	fail "status does not show the drill: $(cat "$T/status.txt")"
[[ $(psql_at "$ci" -c "select count(*) from audit where action = 'backup.drill_started' and actor = 'operator:alice' and subject = '$bid'") == 1 ]] ||
	fail "no backup.drill_started audit row"
"$cli" drill run --service billing >"$T/out" 2>"$T/err" && fail "a second drill started while one runs"
grep -q 'still running' "$T/err" || fail "unclear refusal: $(cat "$T/err")"
pass "coffer drill run: drill $did of $bid queued for runner-1, listed, in status, audited; one at a time"

# The sweeper thread checks the agent's real objects on its own cadence.
ok=
for _ in $(seq 200); do
	[[ $(psql_at "$ci" -c "select count(*) from integrity_checks where backup_id = '$bid' and ok") -ge 2 ]] && { ok=yes; break; }
	sleep 0.1
done
[[ -n $ok ]] || fail "the sweep did not check $bid: $(grep -i 'sweep\|integrity' "$T/coord.log" | tail -3)"
for _ in $(seq 100); do grep -q 'stored objects match' "$T/rx.log" && break; sleep 0.1; done
grep -q '/v2/change/enqueue.*stored objects match' "$T/rx.log" || fail "no change event for the clean sweep: $(cat "$T/rx.log")"
pass "integrity sweep verified the agent's sealed data and signed manifest against the catalog; change event delivered"

data=$(find "$T/repo/services/billing/backups/$bid" -name data)
printf '\x00\xff' | dd of="$data" bs=1 seek=100 conv=notrunc 2>/dev/null || fail "cannot corrupt $data"
ok=
for _ in $(seq 300); do
	grep -q 'coffer/billing/integrity_failed' "$T/rx.log" && { ok=yes; break; }
	sleep 0.1
done
[[ -n $ok ]] || fail "the corruption did not page: $(tail -3 "$T/coord.log")"
grep 'coffer/billing/integrity_failed' "$T/rx.log" | grep -q '"event_action":"trigger"' || fail "not a trigger: $(cat "$T/rx.log")"
[[ $(psql_at "$ci" -c "select count(*) from audit where action = 'backup.integrity_check_failed' and subject = '$bid' and details->>'repository' = 'primary' and details->>'object' = 'services/billing/backups/$bid/data'") -ge 1 ]] ||
	fail "the failed check was not audited with object and repository"
pass "a flipped byte in the stored data: found by the next sweep, audited, paged"

# Nobody polls as runner-1: past drill.rto (1m) + drill.overdue_after the drill pages.
ok=
for _ in $(seq 900); do
	grep -q 'coffer/billing/drill_overdue' "$T/rx.log" && { ok=yes; break; }
	sleep 0.1
done
[[ -n $ok ]] || fail "the drill without a runner did not page: $(psql_at "$ci" -c "select state, summary from alerts")"
grep 'coffer/billing/drill_overdue' "$T/rx.log" | grep '"event_action":"trigger"' | grep -q 'is drill runner runner-1 running' ||
	fail "overdue page unclear: $(grep drill_overdue "$T/rx.log")"
pass "runner offline: coffer/billing/drill_overdue paged through the receiver"

"$cli" audit verify >/dev/null || fail "audit chain broken"
kill -TERM "$apid"
wait "$apid" || fail "agent did not stop cleanly"
kill -TERM "$cpid"
wait "$cpid" || fail "coordinator did not stop cleanly: $(tail -3 "$T/coord.log")"
kill -TERM "$rxpid"
wait "$rxpid" || true
pass "audit chain intact; everything stopped cleanly"
