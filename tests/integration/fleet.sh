#!/usr/bin/env bash
# End to end, the way a platform team runs it: a catalog PostgreSQL, one
# coordinator over mutual TLS, two services each with its own database and
# agent daemon, and an operator with the `coffer` CLI. An operator asks for
# a backup of each service; each agent starts it within seconds (the
# command rides on the coordinator's reply to the agent's poll), the events
# flow back exactly once, and `coffer status` shows each service's backup
# with the figures the agent's manifest has.
source "$(dirname "$0")/lib.sh"
t_init fleet
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer

catalog_start "$T/pg" billing shop
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 5000)"
psql_at "$base dbname=shop" -c "create table orders (id int); insert into orders select generate_series(1, 7000)"

pki=$T/pki
pki_make "$pki" alice carol billing-db-1 shop-db-1
mkdir -p "$T/repo"
"$cli" init --out "$T/carol.key" >"$T/carol.pub" || fail "coffer init carol"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 2s" "metrics_listen = 127.0.0.1:0" "metrics_cache = 0s" <<CONF
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
[service.shop]
owner = team-shop
schedule = 0 3 * * *
retention.daily = 7
[operator.carol]
public_key = $T/carol.pub
role = compliance
CONF
fleet_coordinator_up "$T/coordinator.conf" 600

pids=()
# On a failure, too: an agent left running keeps ctest waiting on its output.
stop_agents() {
	local p
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap stop_agents EXIT
for svc in billing shop; do
	fleet_agent_enroll $svc
	"$agent" run -c "$T/$svc.conf" 2>"$T/$svc.log" &
	pids+=($!)
done
pass "coordinator, two enrolled agents, operator CLI over mutual TLS"

for svc in billing shop; do
	"$cli" backup run --service $svc >"$T/out" 2>"$T/err" || fail "backup run $svc: $(cat "$T/err")"
done
# Each agent polls every few seconds; the backup itself is small.
for svc in billing shop; do
	ok=
	for _ in $(seq 300); do
		if "$cli" backups list --service $svc --output json 2>/dev/null | grep -q '"completed"'; then
			ok=yes
			break
		fi
		sleep 0.1
	done
	[[ -n $ok ]] || fail "$svc: no completed backup 30 s after backup run: $(tail -5 "$T/$svc.log")"
	grep -q 'msg="backup requested by the coordinator"' "$T/$svc.log" || fail "$svc: not started by command"
done
pass "coffer backup run: each agent started its backup within seconds"

for svc in billing shop; do
	id=$("$agent" list -c "$T/$svc.conf" --output json | grep -o '"id":"[^"]*"' | tail -1 | cut -d'"' -f4)
	stored=$(find "$T/repo/services/$svc/backups/$id" -name data -printf '%s')
	# Status shows a backup once the coordinator has verified it (a tick or two).
	for _ in $(seq 100); do
		"$cli" status --output json >"$T/status.json" || fail "coffer status"
		grep -q "$id" "$T/status.json" && break
		sleep 0.1
	done
	grep -q "$id" "$T/status.json" || fail "status does not show $svc's backup $id: $(cat "$T/status.json")"
	grep -q "$stored" "$T/status.json" || fail "status does not show $svc's stored size $stored"
done
"$cli" status >"$T/status.txt"
# No DR here: status says the audit chain has no outside anchor.
grep -q "audit: no outside anchor" "$T/status.txt" || fail "status does not say the audit chain lacks an outside anchor: $(tail -3 "$T/status.txt")"
grep -q '"outside":"none"' "$T/status.json" || fail "status JSON lacks audit_anchor.outside none"
pass "coffer status shows each service's backup and size: $(tr '\n' ' ' <"$T/status.txt" | cut -c1-300)"

# Ownership refusals (an agent reporting for another service) are covered
# one by one in intake.sh; here: no backup id is recorded for two services.
psql_at "$base dbname=coffer" -c "select count(*) from backups where service = 'shop' and id in (select id from backups where service = 'billing')" | grep -q '^0$' ||
	fail "a backup belongs to two services"

# Legal hold, retention plan, alerts: the operator's policy view.
bid=$("$agent" list -c "$T/billing.conf" --output json | grep -o '"id":"[^"]*"' | tail -1 | cut -d'"' -f4)
"$cli" hold add --backup "$bid" --reason "litigation 2026-17" >"$T/out" 2>"$T/err" || fail "hold add: $(cat "$T/err")"
"$cli" holds list --service billing >"$T/out" || fail "holds list"
grep -q "$bid" "$T/out" || fail "holds list does not show $bid: $(cat "$T/out")"
"$cli" status | grep -q "litigation 2026-17" || fail "coffer status does not list the hold"
"$cli" retention plan --service billing --output json >"$T/plan" || fail "retention plan"
"$cli" retention plan --service billing >"$T/plan.txt" || fail "retention plan (text)"
! grep -q "(null)" "$T/plan.txt" && head -1 "$T/plan.txt" | grep -q "service=billing" &&
	grep -q "^id=$bid .*action=" "$T/plan.txt" || fail "retention plan text: $(cat "$T/plan.txt")"
grep -q "$bid" "$T/plan" && grep -q '"hold"' "$T/plan" || fail "plan does not keep $bid for its hold: $(cat "$T/plan")"
if "$cli" hold add --backup "$bid" --reason "again" >/dev/null 2>"$T/err"; then fail "a second hold was accepted"; fi
# Separation of duties: an operator places holds but may not release one;
# role compliance releases it (and may not release a hold it placed).
if "$cli" hold remove --backup "$bid" >/dev/null 2>"$T/err"; then fail "an operator released a legal hold"; fi
grep -q "role operator, which may not run hold.remove" "$T/err" && grep -q "role = compliance" "$T/err" ||
	fail "the operator's hold remove refusal is unclear: $(cat "$T/err")"
operator_conf carol
COFFER_CONFIG=$T/carol.conf "$cli" hold remove --backup "$bid" >/dev/null 2>"$T/err" || fail "hold remove by compliance: $(cat "$T/err")"
COFFER_CONFIG=$T/carol.conf "$cli" hold add --backup "$bid" --reason "carol's own" >/dev/null || fail "hold add by compliance"
if COFFER_CONFIG=$T/carol.conf "$cli" hold remove --backup "$bid" >/dev/null 2>"$T/err"; then
	fail "carol released the hold she placed herself"
fi
grep -q "carol placed the hold on backup $bid and may not release it" "$T/err" || fail "self-release refusal unclear: $(cat "$T/err")"
"$cli" hold remove --backup "$bid" >/dev/null 2>&1 && fail "alice released carol's hold with role operator"
# Released behind the coordinator's back (the catalog's own credentials):
# audit verify names it; put back, the chain verifies again.
psql_at "$base dbname=coffer" -c "update holds set released_at = now(), released_by = 'mallory' where released_at is null" >/dev/null
if "$cli" audit verify >"$T/out" 2>"$T/err"; then fail "a hold released in the catalog verified"; fi
grep -q "is released but no hold.removed row says so" "$T/err" "$T/out" || fail "the edited hold is not named: $(cat "$T/err" "$T/out")"
psql_at "$base dbname=coffer" -c "update holds set released_at = null, released_by = null where released_by = 'mallory'" >/dev/null
"$cli" audit verify >/dev/null || fail "the chain does not verify once the hold is put back"
"$cli" alerts list >"$T/alerts" || fail "alerts list"
[[ $(psql_at "$base dbname=coffer" -c "select count(*) from audit where action in ('hold.added', 'hold.removed')") == 3 ]] ||
	fail "hold changes not audited: $(psql_at "$base dbname=coffer" -c "select actor, action from audit where action like 'hold%'")"
[[ $(psql_at "$base dbname=coffer" -c "select count(*) from audit where action = 'admin.refused' and actor = 'operator:alice'") -ge 2 ]] ||
	fail "alice's refused hold releases are not audited: $(psql_at "$base dbname=coffer" -c "select actor, action from audit where actor in ('alice','carol') order by seq desc limit 6")"
pass "hold add/list/remove audited; an operator cannot release a hold, compliance can but not its own; retention plan keeps the held backup; alerts list: $(head -2 "$T/alerts" | cut -c1-150)"

mport=$(sed -n 's/.*msg="metrics listening".* port=\([0-9]*\).*/\1/p' "$T/coord.log")
[[ -n $mport ]] || fail "no metrics port in the log"
curl -fsS "http://127.0.0.1:$mport/healthz" >/dev/null || fail "/healthz"
curl -fsS "http://127.0.0.1:$mport/metrics" >"$T/metrics" || fail "/metrics"
grep -q 'service="billing"' "$T/metrics" || fail "/metrics has nothing for billing: $(head -20 "$T/metrics")"
grep -q '^# TYPE ' "$T/metrics" || fail "/metrics lacks TYPE lines"
pass "/metrics and /healthz served ($(grep -vc '^#' "$T/metrics") samples)"

"$cli" audit verify >/dev/null || fail "audit chain broken after the run"
for p in "${pids[@]}"; do kill -TERM "$p"; done
for p in "${pids[@]}"; do wait "$p" || fail "agent did not stop cleanly"; done
kill -TERM "$cpid"
wait "$cpid" || fail "coordinator did not stop cleanly: $(tail -3 "$T/coord.log")"
pass "audit chain intact; everything stopped cleanly"
