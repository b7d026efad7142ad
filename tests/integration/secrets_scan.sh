#!/usr/bin/env bash
# No secret in any output (issue: secrets hygiene). A full scenario with
# distinctive secrets everywhere a deployment has them: the catalog's
# runtime and owner passwords, the agent's database password, the PagerDuty
# routing key, the audit key, the agents' and operator's signing keys and
# the service's key ring. It runs a coordinator (catalog over TCP with
# scram-sha-256), an agent daemon, a backup asked for by the operator, a
# failed backup that pages, a restore, status, audit, alerts, metrics and
# both `check` commands (one with a wrong database password),
# while a sampler reads every process's command line (pg_dump and
# pg_restore included) every 50 ms. Then it searches every log, every
# command's output, the catalog's events, audit, alerts and refusals
# tables, /metrics and the sampled command lines for every secret.
# Excluded, because they hold the secrets by design: the configuration and
# key files, the PostgreSQL data directory, and the PagerDuty receiver's
# log (PagerDuty is where the routing key goes).
source "$(dirname "$0")/lib.sh"
t_init secrets_scan
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer
bg=()
cleanup_bg() {
	local p
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap cleanup_bg EXIT

APP_PW=CatalogAppPw-7731-q9Zr
OWNER_PW=CatalogOwnerPw-8842-x1Vb
AGENT_PW=AgentDbPw-5519-m3Kt
ROUTING=rk5ecretRoutingKey0123456789abcd

catalog_start "$T/pg"
psql_at "$base dbname=postgres" <<SQL >/dev/null
ALTER ROLE coffer_app PASSWORD '$APP_PW';
ALTER ROLE coffer_owner PASSWORD '$OWNER_PW';
CREATE ROLE billing_agent LOGIN CREATEDB PASSWORD '$AGENT_PW';
CREATE DATABASE billing OWNER billing_agent;
SQL
tcp="host=127.0.0.1 port=$PG_PORT"
psql_at "$tcp user=billing_agent password=$AGENT_PW dbname=billing" \
	-c "create table invoices (id int primary key, note text); insert into invoices select g, 'n' || g from generate_series(1, 300000) g" >/dev/null
# The catalog over TCP with passwords, as a deployment has it.
ci_app="$tcp user=coffer_app password=$APP_PW dbname=coffer"
ci_owner="$tcp user=coffer_owner password=$OWNER_PW dbname=coffer"
ci=$ci_app
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" "metrics_listen = 127.0.0.1:0" "metrics_cache = 0s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = $ROUTING
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
CONF
grep -q "password=$APP_PW" "$T/coordinator.conf" || fail "the coordinator does not use the password conninfo"

# The sampler: every process's command line, all through the scenario.
(
	while :; do
		for f in /proc/[0-9]*/cmdline; do tr '\0' ' ' <"$f" 2>/dev/null && echo; done
		sleep 0.05
	done
) >"$T/cmdlines.out" 2>/dev/null &
sampler=$!
bg+=("$sampler")

fleet_coordinator_up "$T/coordinator.conf" 300 >"$T/up.out" 2>&1
fleet_agent_enroll billing 1s 2s >"$T/enroll.out" 2>&1
sed -i "s|^conninfo = .*|conninfo = $tcp user=billing_agent password=$AGENT_PW dbname=billing|" "$T/billing.conf"
chmod 600 "$T/billing.conf"
"$agent" run -c "$T/billing.conf" >"$T/agent.out" 2>"$T/agent.log" &
bg+=($!)

completed() { [[ $(psql_at "$ci" -c "select count(*) from backups where status = 'completed'") -ge $1 ]]; }
# A lock pg_dump waits for: its command line stays up for the sampler.
psql_at "$base dbname=billing" -c "begin; lock table invoices in access exclusive mode; select pg_sleep(2); commit;" >/dev/null 2>&1 &
locker=$!
sleep 0.3
"$cli" backup run --service billing >"$T/run1.out" 2>&1 || fail "backup run: $(cat "$T/run1.out")"
wait_for 60 completed 1 || fail "no completed backup: $(tail -3 "$T/agent.log")"
wait "$locker" || true
# A failed backup, paged (with the routing key, to the receiver only).
psql_at "$base dbname=postgres" -c "alter database billing with allow_connections false" >/dev/null
"$cli" backup run --service billing >"$T/run2.out" 2>&1 || fail "backup run 2"
paged() { grep -q '"dedup_key":"coffer/billing/backup_failed"' "$T/rx.log" 2>/dev/null; }
wait_for 30 paged || fail "the failed backup was not paged"
psql_at "$base dbname=postgres" -c "alter database billing with allow_connections true" >/dev/null
# A restore with the agent's password conninfo (pg_restore as a child).
"$agent" restore -c "$T/billing.conf" --backup latest --target-db billing_restored >"$T/restore.out" 2>&1 ||
	fail "restore: $(tail -3 "$T/restore.out")"
[[ $(psql_at "$base dbname=billing_restored" -c "select count(*) from invoices") == 300000 ]] || fail "restored rows"
# A refused connection attempt with a wrong password in its conninfo must
# not echo it either.
sed "s|password=$AGENT_PW|password=${AGENT_PW}-wrong|" "$T/billing.conf" >"$T/wrong.conf"
chmod 600 "$T/wrong.conf"
"$agent" backup -c "$T/wrong.conf" >"$T/wrong.out" 2>&1 && fail "a backup with a wrong password succeeded"
for c in "status" "audit list" "alerts list" "backups list --service billing" "agents list" "audit verify"; do
	# shellcheck disable=SC2086
	"$cli" $c >>"$T/cli.out" 2>&1 || fail "coffer $c: $(tail -2 "$T/cli.out")"
done
"$agent" list -c "$T/billing.conf" >>"$T/agent-cli.out" 2>&1 || true
# The checks say what they tested, a refused password included.
"$agent" check -c "$T/billing.conf" --timeout 5s >"$T/check.out" 2>&1 || true
"$agent" check -c "$T/wrong.conf" --timeout 5s --output json >"$T/check-wrong.out" 2>&1 || true
grep -q '"check":"postgres","status":"critical"' "$T/check-wrong.out" ||
	fail "check with a wrong password: $(cat "$T/check-wrong.out")"
"$COFFER_BIN/coffer-coordinator" check -c "$T/coordinator.conf" --output json >"$T/coord-check.out" 2>&1 || true
curl -fsS "http://127.0.0.1:$mport/metrics" >"$T/metrics.out" || fail "/metrics"
kill "$sampler"
wait "$sampler" 2>/dev/null || true
psql_at "$ci_owner" >"$T/catalog.out" <<'SQL' || fail "reading the catalog's tables"
select * from events;
select * from audit;
select * from alerts;
select * from alert_outbox;
select * from refusals;
select * from agents;
select * from backups;
SQL
grep -q "pg_dump.*passfile=" "$T/cmdlines.out" || fail "the sampler saw no pg_dump with its passfile (the lock should have held it): $(grep -m2 pg_dump "$T/cmdlines.out")"
grep -q pg_restore "$T/cmdlines.out" || note "the sampler saw no pg_restore"

# --- the search --------------------------------------------------------------------------
secrets=("$APP_PW" "$OWNER_PW" "$AGENT_PW" "${AGENT_PW}-wrong" "$ROUTING")
for k in "$T/audit.key" "$T/alice.key" "$T/billing.sign" "$T/billing.keys"; do
	[[ -f $k ]] || continue
	# Every long hex run in a key file is key material; a PEM key is
	# searched for as its base64 and as the hex of its 32-byte seed.
	while read -r h; do secrets+=("$h"); done < <(grep -Eo '[0-9a-fA-F]{32,}' "$k")
	if grep -q "BEGIN PRIVATE KEY" "$k"; then
		secrets+=("$(sed -n '2p' "$k")")
		secrets+=("$(sed '1d;$d' "$k" | base64 -d | tail -c 32 | od -An -tx1 | tr -d ' \n')")
	fi
done
((${#secrets[@]} >= 11)) || fail "too few secrets to search for: ${#secrets[@]}"
mapfile -t files < <(find "$T" -type f \( -path "$T/pg/*" -o -path "$T/pki/*" -o -name '*.conf' \
	-o -name '*.key' -o -name '*.keys' -o -name '*.sign' -o -name 'rx.log' -o -name 'rx.port' \) -prune -o -type f -print)
((${#files[@]} >= 10)) || fail "too few outputs to search: ${files[*]}"
hits=0
for s in "${secrets[@]}"; do
	if grep -lF -- "$s" "${files[@]}" >"$T/hits" 2>/dev/null; then
		echo "secret ${s:0:6}... found in: $(tr '\n' ' ' <"$T/hits")" >&2
		hits=$((hits + 1))
	fi
done
((hits == 0)) || fail "$hits secret(s) found in outputs"
grep -qF "$ROUTING" "$T/rx.log" || fail "the routing key did not reach PagerDuty (the scan would prove nothing)"
pass "no secret in ${#files[@]} outputs ($(cat "${files[@]}" | wc -c) bytes: logs, command outputs, catalog tables, /metrics, $(wc -l <"$T/cmdlines.out") sampled command lines); ${#secrets[@]} secrets searched"
