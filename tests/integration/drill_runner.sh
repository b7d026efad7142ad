#!/usr/bin/env bash
# A real drill runner end to end: the coordinator hands a RunDrill to
# `coffer-agent run` with [agent] role = drill_runner (over mutual TLS), the
# runner restores the service agent's real backup into its own sandbox
# cluster, runs the policy's checks, and reports; the coordinator records
# the result and audits it.
# - `coffer drill run`: the drill passes, with its restore time, every check
#   and backup.drill_completed; `drill list` shows it; a change event is
#   sent; the sandbox database is gone;
# - a byte flipped in the stored data: the next drill fails at verify,
#   drill list names the check, coffer/<service>/drill_failed pages, and no
#   sandbox database was created.
# Every wait is bounded by a count of polls, never by a timing assertion.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077
t_init drill_runner
bg=()
trap 'for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null; t_cleanup' EXIT
agent=$COFFER_BIN/coffer-agent
coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
drv=$COFFER_BIN/drills_itest
[[ -x $agent && -x $coord && -x $cli && -x $drv ]] || fail "build the binaries and drills_itest first"

catalog_start "$T/pg" billing
psql_at "$base dbname=billing" -c "create table invoices (id int primary key, at timestamptz default now());
	insert into invoices select generate_series(1, 5000)" >/dev/null
pg_start "$T/sandbox"
sandbox="host=$PG_HOST port=$PG_PORT user=postgres"

receiver_start

pki=$T/pki
pki_make "$pki" alice billing-db-1 runner-1
mkdir -p "$T/repo" "$T/runner-state"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" <<CONF
[repository.primary]
type = posix
path = $T/repo
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = run0123456789abcdef0123456789abc
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
drill.runner = runner-1
drill.rto = 10m
drill.freshness_query = SELECT max(at) FROM invoices
drill.freshness_max_lag = 1h
drill.assert.1 = SELECT count(*) = 5000 FROM invoices
CONF
fleet_coordinator_up "$T/coordinator.conf" 300

fleet_agent_enroll billing 1s 2s
bid=$("$agent" backup -c "$T/billing.conf" 2>"$T/backup.log") || fail "backup: $(cat "$T/backup.log")"
"$agent" flush -c "$T/billing.conf" >/dev/null 2>"$T/flush.log" || fail "flush: $(cat "$T/flush.log")"

# The runner: no service, key ring or schedule of its own; the service's
# key ring and its agent's public key under [drill.billing].
cat >"$T/runner.conf" <<CONF
[agent]
name = runner-1
role = drill_runner
state_dir = $T/runner-state
signing_key = $T/runner.sign
[postgres]
bin_dir = $PG_BINDIR
[repository.primary]
type = posix
path = $T/repo
[drill]
sandbox = $sandbox
[drill.billing]
key_ring = $T/billing.keys
verify_key = $T/billing.pub
$(fleet_agent_link runner-1 1s 2s)
CONF
"$agent" init -c "$T/runner.conf" >"$T/runner.pub" || fail "runner init"
"$cli" agents enroll --drill-runner --service billing --agent runner-1 --pubkey "$T/runner.pub" >/dev/null ||
	fail "enroll runner"
"$agent" run -c "$T/runner.conf" 2>"$T/runner.log" &
rpid=$!
bg+=("$rpid")

drill_status() { psql_at "$ci" -c "select coalesce((select status from drills where id = $1), 'none')"; }
run_drill() {
	# Drills take verified backups only: wait for the coordinator's check.
	for _ in $(seq 300); do
		[[ $(psql_at "$ci" -c "select count(*) from backups where service = 'billing' and status = 'completed'
			and verify_state <> 'verified'") == 0 ]] && break
		sleep 0.1
	done
	"$cli" drill run --service billing >"$T/out" 2>"$T/err" || fail "drill run: $(cat "$T/err")"
	did=$(sed -n 's/^drill \([0-9]*\) .*/\1/p' "$T/out")
	[[ -n $did ]] || fail "drill run output: $(cat "$T/out")"
	for _ in $(seq 600); do [[ $(drill_status "$did") != running ]] && break; sleep 0.1; done
	[[ $(drill_status "$did") != running ]] || fail "drill $did did not finish: $(tail -5 "$T/runner.log")"
}

# --- a good backup ------------------------------------------------------------------------------
run_drill
[[ $(drill_status "$did") == passed ]] ||
	fail "drill $did: $(psql_at "$ci" -c "select status, failure_reason from drills where id = $did"); $(tail -5 "$T/runner.log")"
row=$(psql_at "$ci" -c "select backup_id || ' ' || (restore_ms > 0) from drills where id = $did")
[[ $row == "$bid true" ]] || fail "drill row: $row"
checks=$(psql_at "$ci" -c "select details->'checks' from audit where action = 'backup.drill_completed' and details->>'drill_id' = '$did'")
for c in verify restore row_counts freshness assertion:1 rto; do
	grep -q "\"$c\"" <<<"$checks" || fail "check $c missing from the audit row: $checks"
done
"$cli" drill list --service billing >"$T/list.txt" || fail "drill list"
grep -Eq "^$did +billing +passed +$bid" "$T/list.txt" || fail "drill list: $(cat "$T/list.txt")"
[[ $(psql_at "$sandbox dbname=postgres" -c "select count(*) from pg_database where datname like 'coffer_drill%'") == 0 ]] ||
	fail "the passed drill left its sandbox"
for _ in $(seq 100); do grep -q "drill $did of billing passed" "$T/rx.log" && break; sleep 0.1; done
grep -q '/v2/change/enqueue' "$T/rx.log" || fail "no change event for the passed drill: $(cat "$T/rx.log")"
pass "runner-1 drilled $bid for real: passed, $(psql_at "$ci" -c "select restore_ms from drills where id = $did") ms restore, 6 checks audited, listed, change event, sandbox dropped"

# --- a corrupted backup ---------------------------------------------------------------------------
data=$T/repo/services/billing/backups/$bid/data
printf '\x00\xff' | dd of="$data" bs=1 seek=200 conv=notrunc status=none
run_drill
[[ $(drill_status "$did") == failed ]] || fail "the drill of a corrupted backup: $(drill_status "$did")"
reason=$(psql_at "$ci" -c "select failure_reason from drills where id = $did")
[[ $reason == verify:* ]] || fail "failure does not name verify: $reason"
for _ in $(seq 300); do grep -q 'coffer/billing/drill_failed' "$T/rx.log" && break; sleep 0.1; done
grep 'coffer/billing/drill_failed' "$T/rx.log" | grep -q '"event_action":"trigger"' ||
	fail "drill_failed did not page: $(cat "$T/rx.log")"
[[ $(psql_at "$sandbox dbname=postgres" -c "select count(*) from pg_database where datname like 'coffer_drill%'") == 0 ]] ||
	fail "a sandbox was created for a backup that did not verify"
pass "corrupted data: drill $did failed at verify (${reason:0:80}), drill_failed paged, nothing restored"

kill -TERM "$rpid"
wait "$rpid" || fail "the runner did not stop cleanly: $(tail -3 "$T/runner.log")"
pass "the runner stopped cleanly"
