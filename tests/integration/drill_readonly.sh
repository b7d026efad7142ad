#!/usr/bin/env bash
# Drills with least privilege (agent/restore/drill.c), against real PostgreSQL: the runner's
# sandbox admin is no superuser (CREATEDB, CREATEROLE, a password over TCP with scram), and
# every service-supplied query runs as coffer_drill_<service>, logged in with its own
# random password, one statement, in a read-only transaction.
# - the queries run as coffer_drill_billing, which is no superuser, owns the sandbox and
#   cannot connect to another service's sandbox;
# - an assertion that writes fails the drill with "tried to write" and PostgreSQL's
#   message (INSERT, CREATE TABLE, DELETE in a CTE, after set_config); two statements
#   (SET TRANSACTION READ WRITE; INSERT / SELECT 1; DELETE) fail as "more than one
#   statement", and so does a freshness query that smuggles a second one; a superuser
#   function is refused; the kept sandbox's data is unchanged;
# - between drills the role cannot log in (NOLOGIN, no password);
# - a failed drill's sandbox is dropped by default; a kept one past its expiry is dropped
#   by the next drill, and one kept before expiries existed is given one.
source "$(dirname "$0")/lib.sh"
t_init drill-readonly
agent=$COFFER_BIN/coffer-agent
[[ -x $agent ]] || fail "build coffer-agent first"

pg_start "$T/prod"
prod="$PG_CONNINFO"
psql_at "$prod dbname=postgres" -c "create database billing" >/dev/null
psql_at "$prod dbname=billing" -c "create table invoices (id int primary key, at timestamptz not null);
	insert into invoices select g, now() - interval '1 hour' + g * interval '1 second'
	from generate_series(1, 500) g" >/dev/null
pg_start "$T/sandbox"
super="$PG_CONNINFO"
sq() { psql_at "$super dbname=postgres" -c "$1"; }
sq "create role runner_admin login createdb createrole password 'admin-pw-1'" >/dev/null
# The runner's admin over TCP with scram: the drill roles must log in the same way.
sandbox="host=127.0.0.1 port=$PG_PORT user=runner_admin password=admin-pw-1 dbname=postgres"

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
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$T/agent.conf" >"$T/agent.pub" || fail "init"
"$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/backup.log" || fail "backup: $(cat "$T/backup.log")"

cat >"$T/runner.conf" <<CONF
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
sandbox = $sandbox
keep_sandbox_for = 2h
[drill.billing]
key_ring = $T/billing.keys
verify_key = $T/agent.pub
CONF
chmod 600 "$T/runner.conf"
drill() { "$agent" drill -c "$T/runner.conf" --service billing --output json "$@"; }
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }
exists() { sq "select count(*) from pg_database where datname = '$1'"; }

# --- who the queries run as ------------------------------------------------------------------
sq "create database coffer_drill_ledger_9 with owner runner_admin" >/dev/null
sq "revoke all on database coffer_drill_ledger_9 from public" >/dev/null
drill --id 1 --assert "SELECT current_user = 'coffer_drill_billing'" \
	--assert "SELECT NOT rolsuper AND NOT rolcreatedb AND NOT rolcreaterole FROM pg_roles WHERE rolname = current_user" \
	--assert "SELECT datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user) FROM pg_database WHERE datname = current_database()" \
	--assert "SELECT NOT has_database_privilege('coffer_drill_ledger_9', 'CONNECT')" \
	--assert "SELECT current_setting('transaction_read_only') = 'on'" \
	--assert "SELECT count(*) = 500 FROM invoices" \
	--freshness-query "SELECT max(at) FROM invoices" --freshness-max-lag 2h \
	>"$T/d1.json" 2>"$T/d1.err" || fail "the drill failed: $(cat "$T/d1.json" "$T/d1.err")"
[[ $(field "$T/d1.json" 'd["ok"]') == True ]] || fail "not ok: $(cat "$T/d1.json")"
[[ $(exists coffer_drill_billing_1) == 0 ]] || fail "the passed drill's sandbox was not dropped"
[[ $(sq "select rolcanlogin::text || coalesce(rolpassword, '-') from pg_authid where rolname = 'coffer_drill_billing'") == "false-" ]] ||
	fail "the drill role can log in between drills"
pass "queries ran as coffer_drill_billing: no superuser, owns its sandbox, no CONNECT on another sandbox, read only; NOLOGIN between drills"

# --- queries that write ----------------------------------------------------------------------
check_write() { # id, detail pattern, assertion...
	local id=$1 pattern=$2
	shift 2
	local args=()
	for a in "$@"; do args+=(--assert "$a"); done
	if drill --id "$id" --keep-sandbox "${args[@]}" >"$T/d$id.json" 2>/dev/null; then
		fail "drill $id passed: $(cat "$T/d$id.json")"
	fi
	local failure
	failure=$(field "$T/d$id.json" 'd["failure"]')
	[[ $failure =~ $pattern ]] || fail "drill $id: $failure"
	[[ $(psql_at "$super dbname=coffer_drill_billing_$id" -c "select count(*) from invoices") == 500 ]] ||
		fail "drill $id changed the sandbox's data"
	[[ $(psql_at "$super dbname=coffer_drill_billing_$id" -c "select count(*) from pg_tables where schemaname = 'public'") == 1 ]] ||
		fail "drill $id created a table"
	echo "$failure"
}
f2=$(check_write 2 "^assertion:2: assertion 2 tried to write: cannot execute INSERT in a read-only transaction" \
	"SELECT true" "INSERT INTO invoices VALUES (0, now()) RETURNING true" \
	"SET TRANSACTION READ WRITE; INSERT INTO invoices VALUES (0, now())")
[[ $(field "$T/d2.json" '[c["detail"] for c in d["checks"] if c["name"] == "assertion:3"][0]') =~ ^"assertion 3 is more than one statement: cannot insert multiple commands into a prepared statement" ]] ||
	fail "drill 2's third assertion: $(cat "$T/d2.json")"
f3=$(check_write 3 "^assertion:1: assertion 1 is more than one statement: cannot insert multiple commands" \
	"SELECT 1; DELETE FROM invoices")
f4=$(check_write 4 "^assertion:1: assertion 1 tried to write: cannot execute CREATE TABLE in a read-only transaction" \
	"CREATE TABLE x()")
f5=$(check_write 5 "^assertion:1: assertion 1 tried to write: cannot execute SELECT in a read-only transaction" \
	"WITH d AS (DELETE FROM invoices RETURNING 1) SELECT count(*) = 0 FROM d")
f6=$(check_write 6 "^assertion:1: assertion 1 tried to write: cannot execute SELECT in a read-only transaction" \
	"WITH s AS (SELECT set_config('transaction_read_only', 'off', true)), d AS (DELETE FROM invoices RETURNING 1) SELECT true FROM s, d")
f7=$(check_write 7 "^assertion:1: assertion 1 is not a query: it returned no value" \
	"SET TRANSACTION READ WRITE" "DELETE FROM invoices WHERE id < 0 RETURNING true")
# the second assertion of drill 7 ran after a session-changing first one: still read only
[[ $(field "$T/d7.json" '[c["detail"] for c in d["checks"] if c["name"] == "assertion:2"][0]') =~ "tried to write: cannot execute DELETE" ]] ||
	fail "drill 7's second assertion: $(cat "$T/d7.json")"
f8=$(check_write 8 "^assertion:1: assertion 1 needs a privilege the drill role does not have: permission denied for function pg_read_file" \
	"SELECT length(pg_read_file('/etc/hostname')) > 0")
if drill --id 10 --freshness-query "SELECT now()) * 1000))::bigint; DELETE FROM invoices; SELECT floor(extract(epoch FROM (SELECT now()" --freshness-max-lag 1h \
	>"$T/d10.json" 2>/dev/null; then fail "a smuggled freshness query passed"; fi
field "$T/d10.json" 'd["failure"]' | grep -q "^freshness: the freshness query is more than one statement" ||
	fail "freshness smuggling: $(field "$T/d10.json" 'd["failure"]')"
[[ $(exists coffer_drill_billing_10) == 0 ]] || fail "a failed drill's sandbox was kept by default"
pass "writing queries fail the drill, data unchanged: ${f2:0:110}; ${f3:0:100}; ${f4:0:90}; a DELETE in a CTE, set_config first, a command, pg_read_file, a smuggled freshness statement"
pass "a failed drill's sandbox is dropped by default"

# --- kept sandboxes expire -------------------------------------------------------------------
comment=$(sq "select shobj_description(oid, 'pg_database') from pg_database where datname = 'coffer_drill_billing_2'")
[[ $comment == "coffer drill sandbox; drop after "* ]] || fail "kept sandbox's comment: $comment"
expiry=$(python3 -c 'import sys,datetime; s=sys.argv[1].split("after ")[1].replace("Z","+00:00"); print(int(datetime.datetime.fromisoformat(s).timestamp()-datetime.datetime.now(datetime.timezone.utc).timestamp()))' "$comment")
((expiry > 6600 && expiry <= 7200)) || fail "kept sandbox expires in ${expiry}s, not keep_sandbox_for = 2h"
sq "comment on database coffer_drill_billing_2 is 'coffer drill sandbox; drop after 2020-01-01T00:00:00Z'" >/dev/null
sq "comment on database coffer_drill_billing_3 is null" >/dev/null
drill --id 11 --assert "SELECT true" >"$T/d11.json" 2>/dev/null || fail "drill 11: $(cat "$T/d11.json")"
[[ $(exists coffer_drill_billing_2) == 0 ]] || fail "an expired sandbox was not dropped"
[[ $(exists coffer_drill_billing_4) == 1 ]] || fail "a sandbox within its time was dropped"
[[ $(sq "select shobj_description(oid, 'pg_database') from pg_database where datname = 'coffer_drill_billing_3'") == "coffer drill sandbox; drop after "* ]] ||
	fail "a sandbox without an expiry was not given one"
[[ $(exists coffer_drill_ledger_9) == 1 ]] || fail "a database the drills did not make was dropped"
pass "kept sandbox: expires keep_sandbox_for (2h) after its drill; dropped by the next drill once expired; one without an expiry gets one"


