#!/usr/bin/env bash
# What scripts and pagers read, checked on a real fleet (a catalog, a
# coordinator over mutual TLS, two agent daemons, the operator CLI, the
# PagerDuty stand-in):
#  - every command's `--output json` validates against the JSON Schema of
#    each object it prints (docs/schema/*.json, docs/JSON.md), with no field
#    the schema does not know;
#  - every line the coordinator and the agents log is strict logfmt
#    (tests/lint/logfmt_check.py), while one service's pg_dump fails with
#    hostile text (quotes, '=', a backslash, spaces, a tab, invalid UTF-8)
#    that travels through the agent's and the coordinator's logs;
#  - the PagerDuty trigger for that failure names the agent's host as its
#    source and links the runbook entry and the dashboard, with client_url.
source "$(dirname "$0")/lib.sh"
t_init output-contract
agent=$COFFER_BIN/coffer-agent
coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
schemas=$COFFER_SRC/docs/schema
python3 -c 'import jsonschema' 2>/dev/null || fail "python3-jsonschema is missing: run deploy/install-deps.sh"

catalog_start "$T/pg" billing shop
psql_at "$base dbname=billing" -c "create table invoices (id int); insert into invoices select generate_series(1, 5000)"
pki=$T/pki
pki_make "$pki" alice billing-db-1 shop-db-1
mkdir -p "$T/repo"
bg=()
receiver_start
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = contract0123456789abcdef01234567
runbook_url = https://docs.example/coffer/RUNBOOK.md
dashboard_url = https://grafana.example/d/coffer?var-service={service}
status_url = https://coffer.example:9464/status
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
CONF
fleet_coordinator_up "$T/coordinator.conf" 300
pids=()
stop_all() {
	local p
	for p in "${pids[@]}" "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	t_cleanup
}
trap stop_all EXIT
# shop's pg_dump fails, saying things a log line must carry safely.
cat >"$T/hostile_pg_dump" <<'SH'
#!/bin/sh
printf 'pg_dump: error: relation "ledger" a=b c:\\d\\x  two  spaces\ttab \377\376 end\nsecond line\n' >&2
exit 1
SH
chmod 755 "$T/hostile_pg_dump"
for svc in billing shop; do
	fleet_agent_enroll $svc
done
sed -i "s|^bin_dir = .*|&\npg_dump = $T/hostile_pg_dump|" "$T/shop.conf"
# shop's agent runs on a host of its own name (a UTS namespace), so the page
# can only name it by asking the agent's hello, not the coordinator's host.
unshare --uts sh -c 'hostname shop-host.example && exec "$0" run -c "$1"' "$agent" "$T/shop.conf" 2>"$T/shop.log" &
pids+=($!)
"$agent" run -c "$T/billing.conf" 2>"$T/billing.log" &
pids+=($!)
for svc in billing shop; do
	"$cli" backup run --service $svc --output json >"$T/backup-run-$svc.json" 2>"$T/err" || fail "backup run $svc: $(cat "$T/err")"
done
wait_for 30 sh -c "\"$cli\" backups list --service billing --output json | grep -q '\"verify_state\":\"verified\"'" ||
	fail "billing: no verified backup: $(tail -5 "$T/billing.log")"
wait_for 30 sh -c "\"$cli\" backups list --service shop --output json | grep -q failure_reason.:.pg_dump" ||
	fail "shop: no failed backup: $(tail -5 "$T/shop.log")"
wait_for 30 grep -q '"class":"backup_failed"' "$T/rx.log" || fail "no backup_failed page: $(cat "$T/rx.log")"
pass "a fleet: billing backed up and verified, shop's hostile pg_dump failed and paged"

# --- PagerDuty: source, links, client_url ------------------------------------
python3 - "$T/rx.log" shop-host.example <<'PY' || fail "the PagerDuty trigger lacks source, links or client_url: $(grep backup_failed "$T/rx.log")"
import json, sys
host = sys.argv[2]
pages = []
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    ms, status, path, body = line.split(" ", 3)
    if path == "/v2/enqueue":
        pages.append(json.loads(body))
page = next(p for p in pages if p.get("payload", {}).get("class") == "backup_failed")
assert page["payload"]["source"] == host, page["payload"]["source"]
links = {l["text"]: l["href"] for l in page["links"]}
assert links["Runbook: backup_failed"] == "https://docs.example/coffer/RUNBOOK.md#backup_failed", links
assert links["Dashboard"] == "https://grafana.example/d/coffer?var-service=shop", links
assert page["client_url"] == "https://coffer.example:9464/status", page
assert page["client"] == "coffer"
print("source", host, "links", links)
PY
grep -q '^## backup_failed$\|^### backup_failed$\|id="backup_failed"' "$COFFER_SRC/docs/RUNBOOK.md" ||
	fail "the page links a runbook entry docs/RUNBOOK.md does not have"
pass "PagerDuty trigger: source is the agent's host (shop-host.example, not the coordinator's $(hostname)), links to RUNBOOK.md#backup_failed and the dashboard, client_url the status page"

# --- every --output json against its schema -----------------------------------
bid=$("$agent" list -c "$T/billing.conf" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["backups"][-1]["id"])')
"$cli" hold add --backup "$bid" --reason 'contract "quoted" = reason' --output json >"$T/j-hold-add.json" || fail "hold add"
run_json() { # NAME COMMAND...
	local name=$1
	shift
	"$@" --output json >"$T/j-$name.json" 2>"$T/j-$name.err" || fail "$name: $(cat "$T/j-$name.err")"
}
run_json agent-list "$agent" list -c "$T/billing.conf"
run_json agent-verify "$agent" verify -c "$T/billing.conf" --backup latest
run_json status "$cli" status
run_json status-one "$cli" status --service billing
run_json backups "$cli" backups list --service billing
run_json backups-shop "$cli" backups list --service shop
run_json agents "$cli" agents list
run_json audit "$cli" audit list --limit 50
run_json audit-verify "$cli" audit verify
run_json holds "$cli" holds list
run_json plan "$cli" retention plan --service billing
run_json alerts "$cli" alerts list
run_json drills "$cli" drill list
run_json coord-agents "$coord" agents list -c "$T/coordinator.conf"
cp "$T/backup-run-billing.json" "$T/j-backup-run.json"
sed -e 's/^name = billing-db-1/name = spare-db-1/' -e "s|^signing_key = .*|signing_key = $T/spare.sign|" \
	-e "s|^state_dir = .*|state_dir = $T/spare-state|" "$T/billing.conf" >"$T/spare.conf"
mkdir -p "$T/spare-state"
"$agent" init -c "$T/spare.conf" >"$T/spare.pub" || fail "init spare"
# A one-shot backup by an agent with no daemon: its events stay in its outbox.
"$agent" backup -c "$T/spare.conf" --output json >"$T/j-agent-backup.json" 2>"$T/spare-backup.log" ||
	fail "spare backup: $(cat "$T/spare-backup.log")"
run_json agent-events "$agent" events -c "$T/spare.conf"
[[ -s $T/j-agent-events.json ]] || fail "no events in the spare agent's outbox"
run_json agents-enroll "$cli" agents enroll --service billing --agent spare-db-1 --pubkey "$T/spare.pub"
run_json agents-revoke "$cli" agents revoke spare-db-1
run_json coord-check-config "$coord" check-config -c "$T/coordinator.conf"
run_json coord-migrate "$coord" migrate -c "$T/coordinator.conf"
run_json coord-audit-verify "$coord" audit-verify -c "$T/coordinator.conf"
# check exits 1 on a warning (this setup has some: no DR, archiving off).
for c in "agent-check $agent check -c $T/billing.conf --timeout 20s" "coord-check $coord check -c $T/coordinator.conf"; do
	read -r name cmd <<<"$c"
	rc=0
	$cmd --output json >"$T/j-$name.json" 2>"$T/j-$name.err" || rc=$?
	((rc <= 1)) || fail "$name exited $rc: $(cat "$T/j-$name.json" "$T/j-$name.err")"
done
python3 "$COFFER_SRC/tests/lint/json_contract.py" "$schemas" "$T" || fail "an --output json document does not match docs/schema"
pass "every --output json validates against docs/schema ($(ls "$T"/j-*.json | wc -l) documents)"

# --- every log line is strict logfmt -------------------------------------------
stop_agents() { local p; for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; pids=(); }
stop_agents
grep -q 'relation \\"ledger\\" a=b c:\\\\d\\\\x two spaces tab' "$T/shop.log" ||
	fail "the hostile pg_dump text is not in shop's log (escaped): $(grep -i ledger "$T/shop.log" | head -2)"
grep -q '\\xff\\xfe end' "$T/shop.log" || fail "invalid UTF-8 not escaped as \\xNN in shop's log: $(grep -i ledger "$T/shop.log" | head -1)"
python3 "$COFFER_SRC/tests/lint/logfmt_check.py" "$T/coord.log" "$T/billing.log" "$T/shop.log" "$T/spare-backup.log" >"$T/logfmt.out" ||
	fail "malformed log lines: $(head -20 "$T/logfmt.out")"
pass "$(tail -1 "$T/logfmt.out") (coordinator and both agents, hostile pg_dump text included)"
