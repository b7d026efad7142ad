#!/usr/bin/env bash
# Alerts (coordinator/watch/alerts.c, notify.c) against a real PostgreSQL catalog
# and a local HTTP receiver standing in for PagerDuty, with an injected
# clock (driver: tests/integration/alerts_itest.c): a missed backup and a
# failed backup each trigger once and resolve; a receiver answering 500
# three times across coordinator restarts still gets exactly one accepted
# trigger; a 400 is not retried and is audited; a flood of 1,000
# conditions is paced by the per-routing-key rate limit and fully
# delivered. A page resolves only on a real recovery: retention (the real
# pass: pending_delete, then deleted), a policy change, a restart, an
# enrolment or a stale heartbeat leave backup_failed, backup_missed,
# size_anomaly, dr_copy_failed, dr_copy_lag, agent_quiet,
# wal_archive_failing, wal_archive_lag and audit_chain_broken open. Then:
# the routing keys never reach the coordinator's log, the catalog or the
# audit log, and the audit chain verifies.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077

t_init alerts
coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/alerts_itest"
[[ -x "$coord" && -x "$drv" ]] || fail "build coffer-coordinator and alerts_itest first"

catalog_start "$T/pg"
mkdir -p "$T/state" "$T/repo"
port=$(_free_port) || fail "no free port for the receiver"
billing_key=billing0123456789abcdef0123456789
default_key=default0123456789abcdef012345678

cat >"$T/c.conf" <<EOC
[coordinator]
listen = tcp://127.0.0.1:7443
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/state

[alerts]
pagerduty_url = http://127.0.0.1:$port/v2/enqueue
routing_key = $default_key
webhook_url = http://127.0.0.1:$port/hook
rate_per_minute = 3000

[dr]
copy_lag = 10m

[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
retention.grace = 1h
alerts.routing_key = $billing_key
EOC
# The same with billing rescheduled: a policy change the driver syncs.
sed 's/^schedule = 0 2 \* \* \*$/schedule = 0 0 1 1 */' "$T/c.conf" >"$T/resched.conf"
grep -q '^schedule = 0 0 1 1 \*$' "$T/resched.conf" || fail "rescheduling the config"

catalog_audit_key
"$coord" check-config -c "$T/c.conf" >"$T/check.out" 2>&1 || fail "check-config: $(cat "$T/check.out")"
catalog_migrate "$T/c.conf"
grep -q "alert outbox" "$T/migrate.out" || fail "the alert outbox migration was not applied: $(cat "$T/migrate.out")"

# The first UTC midnight after now: the service is synced before its first
# scheduled run, so that run is its to miss.
day0=$(( ($(date -u +%s) / 86400 + 1) * 86400 * 1000 ))
"$drv" run "$T/c.conf" "$day0" "$T/coord.log" "$T/repo" "$T/resched.conf" || fail "driver failed (coordinator log: $(tail -5 "$T/coord.log"))"

for k in "$billing_key" "$default_key"; do
	! grep -q "$k" "$T/coord.log" || fail "a routing key reached the coordinator's log"
	[[ $(psql_at "$ci" -c "SELECT count(*) FROM alert_outbox WHERE payload::text LIKE '%$k%'") == 0 ]] ||
		fail "a routing key was stored in the outbox"
	[[ $(psql_at "$ci" -c "SELECT count(*) FROM audit WHERE details::text LIKE '%$k%'") == 0 ]] ||
		fail "a routing key reached the audit log"
done
grep -q 'alert refused by the receiver' "$T/coord.log" || fail "the 400 was not logged"
grep -q 'Event object is invalid' "$T/coord.log" || fail "the 400's message was not logged"
pass "routing keys never logged, stored or audited; the 400 logged with PagerDuty's message"

# The catalog refuses a delivered row without its time.
if psql_at "$ci" -c "UPDATE alert_outbox SET sent_at = NULL WHERE state = 'delivered'" >/dev/null 2>"$T/err"; then
	fail "the catalog accepted a delivered alert without sent_at"
fi
pass "a delivered row without sent_at is refused: $(head -1 "$T/err" | cut -c1-100)"

"$coord" audit-verify -c "$T/c.conf" >"$T/verify.out" 2>&1 || fail "audit-verify: $(cat "$T/verify.out")"
pass "audit-verify: $(head -1 "$T/verify.out")"
