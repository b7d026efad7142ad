#!/usr/bin/env bash
# The drill runner alone (`coffer-agent drill`, agent/restore/drill.c) against real
# PostgreSQL: a production cluster whose service agent backs up, and the
# runner's own sandbox cluster.
# - a good backup passes every check (verify, restore, row_counts,
#   freshness, assertions, rto), reports its restore time, and the sandbox
#   database is dropped;
# - a false assertion fails "assertion:2", and with --keep-sandbox the sandbox is kept;
# - a freshness bound the data cannot meet fails "freshness";
# - a sandbox that is a production cluster is refused before anything is
#   created: by the backup's own system identifier, and by one listed as
#   production; an existing sandbox database is refused;
# - a corrupted stored object fails "verify", and nothing is restored;
# - a service the runner has no keys for is an error naming the fix.
source "$(dirname "$0")/lib.sh"
t_init drill-agent
agent=$COFFER_BIN/coffer-agent
[[ -x $agent ]] || fail "build coffer-agent first"

pg_start "$T/prod"
prod="$PG_CONNINFO"
psql_at "$prod dbname=postgres" -c "create database billing" >/dev/null
psql_at "$prod dbname=billing" -c "create table schema_migrations (version text);
	insert into schema_migrations values ('20261101'), ('20261115');
	create table invoices (id int primary key, at timestamptz not null);
	insert into invoices select g, now() - interval '1 hour' + g * interval '1 second'
	from generate_series(1, 3000) g" >/dev/null
pg_start "$T/sandbox"
sandbox="$PG_CONNINFO"

mkdir -p "$T/state" "$T/rstate" "$T/repo"
cat >"$T/agent.conf" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $prod dbname=billing
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[backup]
schema_query = SELECT max(version) FROM schema_migrations
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$T/agent.conf" >"$T/agent.pub" || fail "init"
bid=$("$agent" backup -c "$T/agent.conf" 2>"$T/backup.log") || fail "backup: $(cat "$T/backup.log")"

runner_conf() { # file, sandbox conninfo
	cat >"$1" <<CONF
[agent]
name = drill-1
role = drill_runner
state_dir = $T/rstate
signing_key = $T/runner.key
[postgres]
bin_dir = $PG_BINDIR
[repository.primary]
type = posix
path = $T/repo
[drill]
sandbox = $2
[drill.billing]
key_ring = $T/billing.keys
verify_key = $T/agent.pub
CONF
}
runner_conf "$T/runner.conf" "$sandbox"
drill() { "$agent" drill -c "$T/runner.conf" --service billing --output json "$@"; }
sq() { psql_at "$sandbox dbname=postgres" -c "$1"; }
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# --- a good backup ------------------------------------------------------------------------
drill --id 1 --assert "SELECT count(*) = 3000 FROM invoices" \
	--assert "SELECT NOT EXISTS (SELECT 1 FROM invoices WHERE id <= 0)" \
	--freshness-query "SELECT max(at) FROM invoices" --freshness-max-lag 1h --rto 30m \
	>"$T/d1.json" 2>"$T/d1.err" || fail "the drill of a good backup failed: $(cat "$T/d1.json" "$T/d1.err")"
[[ $(field "$T/d1.json" 'd["ok"]') == True ]] || fail "not ok: $(cat "$T/d1.json")"
[[ $(field "$T/d1.json" 'd["backup_id"]') == "$bid" ]] || fail "drilled another backup"
[[ $(field "$T/d1.json" '",".join(c["name"] for c in d["checks"] if c["ok"])') == \
	"verify,restore,row_counts,schema_version,freshness,assertion:1,assertion:2,rto" ]] ||
	fail "checks: $(field "$T/d1.json" 'd["checks"]')"
ms=$(field "$T/d1.json" 'd["restore_ms"]')
((ms > 0)) || fail "no restore time"
[[ $(sq "select count(*) from pg_database where datname = 'coffer_drill_billing_1'") == 0 ]] ||
	fail "the passed drill's sandbox was not dropped"
field "$T/d1.json" '[c["detail"] for c in d["checks"] if c["name"] == "schema_version"][0]' |
	grep -q 'returned "20261115", as recorded' || fail "schema check detail: $(cat "$T/d1.json")"
pass "good backup: 8 checks pass (schema_version as recorded), restored in ${ms} ms, sandbox dropped"

# --- failures, each a named check -----------------------------------------------------------
if drill --id 2 --keep-sandbox --assert "SELECT true" --assert "SELECT count(*) > 5000 FROM invoices" >"$T/d2.json" 2>/dev/null; then
	fail "a false assertion passed"
fi
[[ $(field "$T/d2.json" 'd["failure"]') == "assertion:2: SELECT count(*) > 5000 FROM invoices returned f, not true" ]] ||
	fail "false assertion: $(field "$T/d2.json" 'd["failure"]')"
[[ $(sq "select count(*) from pg_database where datname = 'coffer_drill_billing_2'") == 1 ]] ||
	fail "the failed drill's sandbox was not kept"
pass "false assertion fails assertion:2; with --keep-sandbox the sandbox is kept for inspection"

if drill --id 3 --freshness-query "SELECT max(at) FROM invoices" --freshness-max-lag 10m \
	>"$T/d3.json" 2>/dev/null; then fail "an unmet freshness bound passed"; fi
field "$T/d3.json" 'd["failure"]' | grep -q "^freshness: newest row .* before the backup finished (bound 10m)" ||
	fail "freshness: $(field "$T/d3.json" 'd["failure"]')"
[[ $(sq "select count(*) from pg_database where datname = 'coffer_drill_billing_3'") == 0 ]] ||
	fail "a failed drill kept its sandbox without --keep-sandbox"
pass "freshness bound not met: fails freshness; the sandbox is dropped (the default)"

# --- refusals before anything is created ---------------------------------------------------------
runner_conf "$T/prodsandbox.conf" "$prod"
if "$agent" drill -c "$T/prodsandbox.conf" --service billing --id 4 --output json >"$T/d4.json" 2>/dev/null; then
	fail "drilled into the production cluster"
fi
field "$T/d4.json" 'd["failure"]' | grep -q "is a production cluster: refusing to drill into it" ||
	fail "production refusal: $(cat "$T/d4.json")"
[[ $(psql_at "$prod dbname=postgres" -c "select count(*) from pg_database where datname like 'coffer_drill%'") == 0 ]] ||
	fail "a sandbox was created in production"
sbid=$(sq "select system_identifier from pg_control_system()")
if drill --id 5 --production-system-id 123 --production-system-id "$sbid" >"$T/d5.json" 2>/dev/null; then
	fail "drilled into a cluster listed as production"
fi
field "$T/d5.json" 'd["failure"]' | grep -q "system identifier $sbid) is a production cluster" ||
	fail "listed production refusal: $(cat "$T/d5.json")"
sq "create database coffer_drill_billing_6" >/dev/null
if drill --id 6 >"$T/d6.json" 2>/dev/null; then fail "drilled over an existing database"; fi
field "$T/d6.json" 'd["failure"]' | grep -q "sandbox database coffer_drill_billing_6 exists already" ||
	fail "existing sandbox: $(cat "$T/d6.json")"
pass "refused: the backup's own cluster, a listed production cluster, an existing sandbox database"

# --- a corrupted object ------------------------------------------------------------------------
data=$T/repo/services/billing/backups/$bid/data
size=$(stat -c %s "$data")
printf '\xff' | dd of="$data" bs=1 seek=$((size / 2)) conv=notrunc status=none
if drill --id 7 --keep-sandbox >"$T/d7.json" 2>/dev/null; then fail "a corrupted backup passed its drill"; fi
[[ $(field "$T/d7.json" 'd["checks"][0]["name"] + " " + str(d["checks"][0]["ok"])') == "verify False" ]] ||
	fail "corruption not caught at verify: $(cat "$T/d7.json")"
[[ $(field "$T/d7.json" 'len(d["checks"])') == 1 ]] || fail "checks ran after verify failed"
[[ $(sq "select count(*) from pg_database where datname = 'coffer_drill_billing_7'") == 0 ]] ||
	fail "a sandbox was created for a backup that did not verify"
pass "corrupted object: fails verify ($(field "$T/d7.json" 'd["failure"]' | cut -c1-90)), nothing restored"

# --- a service the runner cannot read ---------------------------------------------------------
if "$agent" drill -c "$T/runner.conf" --service ledger >"$T/d8.out" 2>"$T/d8.err"; then
	fail "drilled a service without keys"
fi
grep -q "no \[drill.ledger\]" "$T/d8.err" && grep -q "add \[drill.ledger\] with key_ring" "$T/d8.err" ||
	fail "unclear: $(cat "$T/d8.err")"
pass "a service without [drill.<service>]: $(head -1 "$T/d8.err" | cut -c1-120)"

# --- a schema the restore does not reproduce ----------------------------------------------------
# current_database() answers "billing" in production and the sandbox's
# name after a restore: an honest way to record a value the drill cannot
# get back.
sed 's/^schema_query = .*/schema_query = SELECT current_database()/' "$T/agent.conf" >"$T/agent2.conf"
b2=$("$agent" backup -c "$T/agent2.conf" 2>"$T/backup2.log") || fail "backup: $(cat "$T/backup2.log")"
grep -q '"schema_version":"billing"' "$T/repo/services/billing/backups/$b2/manifest.json" ||
	fail "the manifest does not record the schema query's answer"
if drill --id 9 --backup "$b2" >"$T/d9.json" 2>/dev/null; then fail "a schema mismatch passed"; fi
field "$T/d9.json" 'd["failure"]' | grep -q '^schema_version: SELECT current_database() returned "coffer_drill_billing_9", the backup recorded "billing"' ||
	fail "schema mismatch: $(field "$T/d9.json" 'd["failure"]')"
pass "schema_version recorded at backup time and not reproduced by the restore: fails schema_version"
sed 's/^schema_query = .*/schema_query = SELECT nosuchcolumn FROM invoices/' "$T/agent.conf" >"$T/agent3.conf"
if "$agent" backup -c "$T/agent3.conf" >/dev/null 2>"$T/backup3.log"; then fail "a backup with a broken schema_query succeeded"; fi
grep -q "\[backup\] schema_query" "$T/backup3.log" || fail "unclear: $(cat "$T/backup3.log")"
pass "a broken schema_query fails the backup naming it: $(grep -o 'schema_query.*' "$T/backup3.log" | head -1 | cut -c1-100)"
