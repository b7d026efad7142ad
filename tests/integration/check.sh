#!/usr/bin/env bash
# `coffer-agent check` and `coffer-coordinator check` against real
# components: a PostgreSQL whose archive_command is coffer-agent wal-push, a
# posix repository, a coordinator over mutual TLS and its catalog.
# - healthy: both exit 0 with every check ok; --output json parses and says so;
# - then one thing broken at a time, each named by the right check with its
#   fix, and the exit code in the Nagios convention (2 critical, 1 warning):
#   archive_command = '/bin/false' (archive critical; archive_config warns),
#   a key ring readable by others and a missing one, a repository path that
#   does not exist, a role that cannot read the service's tables, this
#   host's clock two hours ahead (faketime), the coordinator down; for the
#   coordinator: the tables' owner as its runtime role, a pending migration,
#   the catalog unreachable;
# - archiving fixed: the check is back to 0;
# - run as root on an agent that runs as postgres: a warning, and no file of
#   root's in the agent's state directory or repository.
# Every wait is the commands' own bound; no timing is asserted.
source "$(dirname "$0")/lib.sh"
t_init check
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
bg=()
stop_all() {
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	t_cleanup
}
trap stop_all EXIT
coord=$COFFER_BIN/coffer-coordinator
# PostgreSQL (user postgres) runs the agent as archive_command, and the check
# runs as that user too: a copy it can reach.
mkdir -p "$T/bin"
cp "$COFFER_BIN/coffer-agent" "$T/bin/coffer-agent"
chmod 755 "$T/bin" "$T/bin/coffer-agent"
agent=$T/bin/coffer-agent
as_pg() { runuser -u postgres -- "$@"; }

catalog_start "$T/catalog"
catalog_pg=$PG_DIR
pki=$T/pki
pki_make "$pki" alice svc-db-1
chown postgres: "$pki/svc-db-1.key"
fleet_coordinator_conf "$T/coordinator.conf" <<CONF
[alerts]
routing_key = chk0123456789abcdef0123456789abc
[service.svc]
owner = team
schedule = 0 2 * * *
retention.daily = 7
[repository.primary]
type = posix
path = $T/coord-repo
CONF
mkdir -p "$T/coord-repo"
fleet_coordinator_up "$T/coordinator.conf" 300

conf=$T/agent.conf
pg_start "$T/pg" "wal_level = replica" "archive_mode = on" \
	"archive_command = '$agent wal-push -c $conf %p'"
ci="$PG_CONNINFO dbname=svc"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database svc"
psql_at "$ci" -c "create table orders (id int)" -c "create table refunds (id int)"
mkdir -p "$T/state" "$T/repo"
cat >"$conf" <<CONF
[agent]
name = svc-db-1
service = svc
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/svc.keys
[postgres]
conninfo = $ci
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[repository.primary]
type = posix
path = $T/repo
$(fleet_agent_link svc-db-1)
CONF
"$agent" keygen --out "$T/svc.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$conf" >"$T/svc.pub" || fail "init"
chown -R postgres: "$T/state" "$T/repo" "$T/svc.keys" "$T/agent.key" "$conf"
"$COFFER_BIN/coffer" agents enroll --service svc --agent svc-db-1 --pubkey "$T/svc.pub" \
	>/dev/null || fail "enroll"

# check CONF [ARGS...]: runs the agent's check as postgres; output in
# $T/out, exit status in rc.
check() {
	local c=$1
	shift
	rc=0
	as_pg "$agent" check -c "$c" "$@" >"$T/out" 2>"$T/err" || rc=$?
}
# expect STATUS CHECK PATTERN: the text output has CHECK at STATUS matching PATTERN.
expect() {
	grep -E "^$1 +$2 .*$3" "$T/out" >/dev/null ||
		fail "no $1 $2 line matching '$3' in: $(cat "$T/out" "$T/err")"
}

# --- healthy -----------------------------------------------------------------
check "$conf"
[[ $rc == 0 ]] || fail "healthy agent check exited $rc: $(cat "$T/out" "$T/err")"
! grep -qvE '^OK |^[0-9]+ checks:' "$T/out" || fail "a line is not OK: $(cat "$T/out")"
for c in config keyring signing_key state_dir outbox repository postgres pg_logical \
	archive_config archive archiver tls coordinator clock; do
	expect OK "$c" ""
done
expect OK archive "segment [0-9A-F]{24} arrived in the repository"
expect OK coordinator "mutual TLS"
grep -q "password\|PRIVATE" "$T/out" && fail "the output holds a secret's name: $(cat "$T/out")"
pass "healthy agent: every check ok, exit 0"

check "$conf" --output json
[[ $rc == 0 ]] || fail "json check exited $rc"
python3 -c '
import json, sys
a = json.load(open(sys.argv[1]))
assert isinstance(a, list) and len(a) >= 14, a
for r in a:
    assert set(r) == {"check", "status", "detail", "fix"}, r
    assert r["status"] == "ok", r
' "$T/out" || fail "--output json: $(cat "$T/out")"
pass "--output json parses: an array of {check, status, detail, fix}"

# Run as root against an agent that runs as postgres: nothing of root's may
# land in its state directory or repository, or the agent could no longer
# write there; the check says to run it as postgres.
rc=0
"$agent" check -c "$conf" >"$T/out" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] || fail "check as root exited $rc: $(cat "$T/out" "$T/err")"
expect WARNING user "owned by postgres.*fix: run the check as the agent's user: runuser -u postgres"
expect OK archive "arrived in the repository"
[[ -z $(find "$T/state" "$T/repo" -user root) ]] ||
	fail "check as root left root's files: $(find "$T/state" "$T/repo" -user root)"
pass "check as root on postgres's agent: warns, writes nothing of root's, still tests archiving"

rc=0
"$coord" check -c "$T/coordinator.conf" >"$T/cout" 2>&1 || rc=$?
# listen and admin_listen are port 0 here (any free port): bindable.
[[ $rc == 1 ]] || fail "healthy coordinator check exited $rc (expected 1: no DR): $(cat "$T/cout")"
for c in config catalog migrations catalog_role clock audit_key tls listen admin_listen \
	repository alerts; do
	grep -qE "^OK +$c " "$T/cout" || fail "coordinator check: $c not ok: $(cat "$T/cout")"
done
grep -qE "^WARNING +repository_dr .*no \[repository.dr\]" "$T/cout" ||
	fail "no DR warning: $(cat "$T/cout")"
grep -qE "^OK +repository .*deleted" "$T/cout" || fail "probe not deleted: $(cat "$T/cout")"
[[ -z $(find "$T/coord-repo" -type f) ]] || fail "the coordinator's probe was left behind"
grep -q "chk0123456789abcdef" "$T/cout" && fail "the routing key was printed"
"$coord" check -c "$T/coordinator.conf" --output json >"$T/cjson" || true
python3 -c '
import json, sys
a = {r["check"]: r["status"] for r in json.load(open(sys.argv[1]))}
assert a["repository_dr"] == "warning" and a["catalog"] == "ok", a
' "$T/cjson" || fail "coordinator --output json: $(cat "$T/cjson")"
pass "healthy coordinator: every check ok but DR (warning, exit 1); JSON parses"

# A listener on a fixed port held by a running coordinator is not a problem.
sed "s/^listen = .*/listen = tls+tcp:\/\/127.0.0.1:$port/" "$T/coordinator.conf" >"$T/coord-port.conf"
chmod 600 "$T/coord-port.conf"
"$coord" check -c "$T/coord-port.conf" >"$T/cout" 2>&1 || true
grep -qE "^OK +listen .*in use by coffer-coordina.*a running coordinator" "$T/cout" ||
	fail "listen in use by the coordinator not recognised: $(cat "$T/cout")"
pass "a listen port held by the running coordinator: said so, ok"

# --- agent: one thing broken at a time ----------------------------------------
psql_at "$PG_CONNINFO dbname=postgres" -c "alter system set archive_command = '/bin/false'" \
	-c "select pg_reload_conf()" >/dev/null
check "$conf" --timeout 20s
[[ $rc == 2 ]] || fail "archive_command /bin/false: exit $rc: $(cat "$T/out")"
expect CRITICAL archive "archive_command failed on the forced segment.*fix: check archive_command"
expect WARNING archive_config "does not run coffer-agent wal-push with this config.*fix: set archive_command"
pass "archive_command = /bin/false: archive critical, archive_config warning, exit 2"

psql_at "$PG_CONNINFO dbname=postgres" -c "alter system reset archive_command" \
	-c "select pg_reload_conf()" >/dev/null
check "$conf" --timeout 50s
[[ $rc == 0 ]] || fail "archiving fixed, but exit $rc: $(cat "$T/out")"
pass "archiving fixed: back to 0"

# The ring the check reads, not the one archive_command uses: only the
# check's view is broken.
cp -p "$T/svc.keys" "$T/open.keys"
chmod 644 "$T/open.keys"
sed "s|^key_ring = .*|key_ring = $T/open.keys|" "$conf" >"$T/open.conf"
chown postgres: "$T/open.conf"
check "$T/open.conf" --timeout 20s
[[ $rc == 2 ]] || fail "key ring 0644: exit $rc"
expect CRITICAL keyring "mode 0644.*fix: chmod 600"
sed "s|^key_ring = .*|key_ring = $T/missing.keys|" "$conf" >"$T/nokeys.conf"
chown postgres: "$T/nokeys.conf"
check "$T/nokeys.conf" --timeout 20s
[[ $rc == 2 ]] || fail "key ring missing: exit $rc"
expect CRITICAL keyring "No such file.*fix: the ring is missing: create one with .coffer-agent keygen"
pass "key ring 0644 or missing: keyring critical with the fix, exit 2"

sed "s|^path = .*|path = $T/no-such-repo|" "$conf" >"$T/norepo.conf"
chown postgres: "$T/norepo.conf"
check "$T/norepo.conf" --timeout 20s
[[ $rc == 2 ]] || fail "repository missing: exit $rc"
expect CRITICAL repository "no-such-repo"
expect CRITICAL archive "repository did not open"
pass "repository path missing: repository critical, exit 2"

psql_at "$ci" -c "create role reader login" >/dev/null
sed "s|^conninfo = .*|conninfo = $ci user=reader|" "$conf" >"$T/reader.conf"
chown postgres: "$T/reader.conf"
check "$T/reader.conf" --timeout 20s
[[ $rc == 2 ]] || fail "unprivileged role: exit $rc: $(cat "$T/out")"
expect CRITICAL pg_logical "role reader cannot read 2 relations pg_dump needs: public.orders, public.refunds.*GRANT pg_read_all_data TO reader"
expect WARNING archive "may not run pg_switch_wal.*GRANT EXECUTE ON FUNCTION pg_switch_wal"
pass "a role that cannot read the tables: pg_logical critical naming them, exit 2"

if command -v faketime >/dev/null; then
	rc=0
	as_pg env LD_PRELOAD=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 FAKETIME=+2h \
		ASAN_OPTIONS="${ASAN_OPTIONS:-}:verify_asan_link_order=0" \
		"$agent" check -c "$conf" --timeout 30s >"$T/out" 2>"$T/err" || rc=$?
	[[ $rc == 2 ]] || fail "clock 2h ahead: exit $rc: $(cat "$T/out" "$T/err")"
	expect CRITICAL clock "(1h 59m|2h 0m) ahead of the coordinator's.*fix: synchronise"
	pass "this host's clock two hours ahead: clock critical, exit 2"
else
	note "faketime missing: clock skew not tested"
fi

kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
check "$conf" --timeout 20s
[[ $rc == 2 ]] || fail "coordinator down: exit $rc"
expect CRITICAL coordinator "no answer to a signed hello over mutual TLS"
expect OK archive ""
pass "coordinator down: coordinator critical, the rest still checked, exit 2"

# --- coordinator: the tables' owner as runtime role, a pending migration, no catalog ---
sed "s|^catalog = .*|catalog = $ci_owner|" "$T/coordinator.conf" >"$T/owner.conf"
chmod 600 "$T/owner.conf"
rc=0
"$coord" check -c "$T/owner.conf" >"$T/cout" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "catalog as the owner: exit $rc: $(cat "$T/cout")"
grep -qE "^CRITICAL +catalog_role .*coffer_owner.*fix: " "$T/cout" ||
	fail "the owner as runtime role not named: $(cat "$T/cout")"
pass "the tables' owner as the runtime role: catalog_role critical with the fix, exit 2"

psql_at "$base dbname=coffer" -c "delete from schema_version where number = (select max(number) from schema_version)" >/dev/null
rc=0
"$coord" check -c "$T/coordinator.conf" >"$T/cout" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "pending migration: exit $rc: $(cat "$T/cout")"
grep -qE "^CRITICAL +migrations .*1 pending.*fix: coffer-coordinator migrate" "$T/cout" ||
	fail "pending migration not named: $(cat "$T/cout")"
pass "a pending migration: migrations critical with the fix, exit 2"

pg_stop "$catalog_pg"
rc=0
"$coord" check -c "$T/coordinator.conf" --output json >"$T/cjson" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "catalog down: exit $rc: $(cat "$T/cjson")"
python3 -c '
import json, sys
a = {r["check"]: r for r in json.load(open(sys.argv[1]))}
assert a["catalog"]["status"] == "critical" and a["catalog"]["fix"], a["catalog"]
assert a["repository"]["status"] == "ok", a["repository"]
assert "password" not in json.dumps(a)
' "$T/cjson" || fail "catalog down, JSON: $(cat "$T/cjson")"
pass "catalog unreachable: catalog critical, the rest still checked, exit 2"
