#!/usr/bin/env bash
# Restore drills and integrity sweeps, the coordinator's side
# (coordinator/drill/drills.c), against a real PostgreSQL catalog, a real posix
# repository and a local HTTP receiver standing in for PagerDuty, with an
# injected clock (driver: tests/integration/drills_itest.c). The service
# agent and the drill runner are played with signed envelopes through the
# real intake:
# - enrollment of drill runners; a drill of the latest backup is handed to
#   the runner with the policy's checks, RTO and production system ids;
# - a passed drill: drill row, backup.drill_completed audit row with every
#   check and the restore time, change event delivered, drill list, metrics;
# - a drill failing at verify pages coffer/billing/drill_failed; a false
#   assertion fails; a runner refusing a production sandbox fails the drill;
# - a service agent's drill result, a runner's backup event and a result for
#   another runner's drill are refused (not_owner), counted and audited;
# - runner offline: drill_overdue pages, and resolves on the late result;
#   the schedule starts one drill at its cron slot;
# - integrity sweep: clean (change event), then a corrupted data object is
#   found, audited and paged; a sweep that cannot run becomes overdue;
# - no resolve without a recovery: retention marking the corrupt backup
#   pending_delete, then deleting it, leaves integrity_failed open until a
#   newer backup is checked clean; rescheduling a drill leaves drill_overdue
#   open until a drill starts.
# Then the CLI's checks of drill options, and the audit chain verifies.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077

t_init drills
coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/drills_itest"
[[ -x "$coord" && -x "$drv" ]] || fail "build coffer-coordinator and drills_itest first"

catalog_start "$T/pg"
mkdir -p "$T/state" "$T/repo" "$T/dr"
port=$(_free_port) || fail "no free port for the receiver"
# A daily drill about 12 hours from now: no slot falls inside the minutes
# the driver simulates before it tests the schedule.
hour=$(( ($(date -u +%-H) + 12) % 24 ))

cat >"$T/c.conf" <<EOC
[coordinator]
listen = tcp://127.0.0.1:7443
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/state

[repository.primary]
type = posix
path = $T/repo

[repository.dr]
type = posix
path = $T/dr

[alerts]
pagerduty_url = http://127.0.0.1:$port/v2/enqueue
routing_key = drills0123456789abcdef0123456789
rate_per_minute = 3000

[integrity]
sweep_interval = 1h
sample = 3

[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
retention.grace = 1h
dr.copy = daily
drill.schedule = 0 $hour * * *
drill.runner = runner-1
drill.repository = alternate
drill.rto = 5m
drill.overdue_after = 10m
drill.freshness_query = SELECT max(at) FROM invoices
drill.freshness_max_lag = 2h
drill.assert.1 = SELECT true
drill.assert.2 = SELECT count(*) > 0 FROM invoices

[service.ledger]
owner = team-ledger
schedule = 0 3 * * *
retention.daily = 7
drill.runner = runner-2
drill.backup = random
drill.window = 1h

[service.shop]
owner = team-shop
schedule = 0 4 * * *
retention.daily = 7

[service.orders]
owner = team-shop
schedule = 0 4 * * *
retention.daily = 7
drill.runner = runner-1

[service.crm]
owner = team-crm
schedule = 0 4 * * *
retention.daily = 7
drill.runner = billing-1
EOC

catalog_audit_key
"$coord" check-config -c "$T/c.conf" >"$T/check.out" 2>&1 || fail "check-config: $(cat "$T/check.out")"
catalog_migrate "$T/c.conf"
grep -q "drills and integrity" "$T/migrate.out" || fail "the drills migration was not applied: $(cat "$T/migrate.out")"

timeout --foreground 600 "$drv" run "$T/c.conf" 2>"$T/driver.err" ||
	fail "driver failed: $(tail -5 "$T/driver.err")"

# The policy rules at load, as an operator meets them.
sed 's/^drill.runner = runner-1$//' "$T/c.conf" >"$T/bad.conf"
if "$coord" check-config -c "$T/bad.conf" >"$T/bad.out" 2>&1; then
	fail "check-config accepted a drill schedule without a runner"
fi
grep -q 'drill.schedule.*drill.runner' "$T/bad.out" || fail "unclear refusal: $(cat "$T/bad.out")"
pass "check-config refuses a drill schedule without a runner: $(head -1 "$T/bad.out" | cut -c1-160)"
sed 's/^dr.copy = daily$/dr.copy = none/' "$T/c.conf" >"$T/bad.conf"
if "$coord" check-config -c "$T/bad.conf" >"$T/bad.out" 2>&1; then
	fail "check-config accepted drill.repository = alternate without DR copies"
fi
grep -q 'dr.copy = none' "$T/bad.out" || fail "unclear refusal: $(cat "$T/bad.out")"
pass "check-config refuses drill.repository = alternate with dr.copy = none"

# Local enrollment of a runner for two services, and its listing.
openssl genpkey -algorithm ed25519 -out "$T/r3.pem" 2>/dev/null || fail "openssl genpkey"
openssl pkey -in "$T/r3.pem" -pubout -out "$T/r3.pub" 2>/dev/null || fail "openssl pkey"
"$coord" agents enroll -c "$T/c.conf" --drill-runner --service billing --service ledger \
	--agent runner-3 --pubkey "$T/r3.pub" >"$T/enroll.out" 2>&1 || fail "enroll runner-3: $(cat "$T/enroll.out")"
grep -q 'drill runner runner-3 .* billing ledger' "$T/enroll.out" || fail "enroll output: $(cat "$T/enroll.out")"
if "$coord" agents enroll -c "$T/c.conf" --service billing --service ledger --agent x \
	--pubkey "$T/r3.pub" >"$T/enroll.out" 2>&1; then
	fail "a service agent was enrolled for two services"
fi
[[ $(psql_at "$ci" -c "SELECT string_agg(service, ',' ORDER BY service) FROM drill_runner_services WHERE agent = 'runner-3'") == billing,ledger ]] ||
	fail "runner-3's services are wrong"
"$coord" agents list -c "$T/c.conf" --output json >"$T/agents.json" || fail "agents list"
grep -q '"drills":\["billing","ledger"\]' "$T/agents.json" || fail "agents list: $(cat "$T/agents.json")"
pass "coffer-coordinator agents enroll --drill-runner for two services; listed with its services"

"$coord" audit-verify -c "$T/c.conf" >"$T/verify.out" 2>&1 || fail "audit-verify: $(cat "$T/verify.out")"
pass "audit-verify: $(head -1 "$T/verify.out")"
