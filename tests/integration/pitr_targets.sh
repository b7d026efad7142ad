#!/usr/bin/env bash
# Restore that answers "to when", against a real PostgreSQL archiving into
# the agent:
# - a physical backup, then rows committed at known times, with known xids,
#   a known LSN and a named restore point (its name holds a quote, to prove
#   it is escaped in postgresql.auto.conf), all archived;
# - a restore to each kind of target holds exactly the rows it should: a
#   time between two commits, an LSN, an xid inclusive and exclusive, the
#   restore point, immediate (only the backup's rows);
# - --target-action pause leaves a running server in recovery, shutdown a
#   stopped one; what the command prints says the target and that it was
#   reached (JSON checked);
# - --dry-run writes nothing and its JSON parses; `list --output json`
#   shows a window whose oldest point is the backup's end and whose newest
#   reaches the last switched segment;
# - a logical restore --before picks the newest logical backup before the
#   time, and names the oldest when none is;
# - bad values (an LSN "zz", two targets, a name with a newline, an action
#   without a target) are refused with one error naming the problem;
# - backup --output json prints the backup object; --progress json writes
#   progress events on stderr.
source "$(dirname "$0")/lib.sh"
t_init pitr_targets
mkdir -p "$T/bin"
cp "$COFFER_BIN/coffer-agent" "$T/bin/coffer-agent"
chmod 755 "$T/bin" "$T/bin/coffer-agent"
agent=$T/bin/coffer-agent
conf=$T/agent.conf
as_pg() { runuser -u postgres -- "$@"; }

mkdir -p "$T/state" "$T/repo"
pg_start "$T/pg" "wal_level = replica" "archive_mode = on" \
	"archive_command = '$agent wal-push -c $conf %p'"
cat >"$conf" <<CONF
[agent]
name = ledger-db-1
service = ledger
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/ledger.keys
[postgres]
conninfo = $PG_CONNINFO dbname=postgres
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
completion_window = 2m
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/ledger.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$conf" >/dev/null || fail "init"
chown -R postgres: "$T/state" "$T/repo" "$T/ledger.keys" "$T/agent.key" "$conf"
ci="$PG_CONNINFO dbname=postgres"
q() { psql_at "$ci" -c "$1"; }
wait_archived() {
	for _ in $(seq 600); do
		[[ $(q "select coalesce(last_archived_wal, '') >= '$1' from pg_stat_archiver") == t ]] && return 0
		sleep 0.1
	done
	return 1
}
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# --- two logical backups, then the physical one --------------------------------------------
q "create table t (id int primary key, at timestamptz not null default clock_timestamp())"
q "insert into t (id) values (0)"
l1=$(as_pg "$agent" backup -c "$conf" 2>"$T/err") || { cat "$T/err"; fail "logical backup 1"; }
sleep 1.2
between_logical=$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)
sleep 1.2
q "insert into t (id) values (-1)"
l2=$(as_pg "$agent" backup -c "$conf" 2>"$T/err") || { cat "$T/err"; fail "logical backup 2"; }
q "delete from t where id = -1"
as_pg "$agent" backup -c "$conf" --kind physical --output json --progress json \
	>"$T/pb.json" 2>"$T/pb.err" || { cat "$T/pb.err"; fail "physical backup"; }
pid=$(json 'd["id"]' <"$T/pb.json") || fail "backup --output json is not JSON: $(cat "$T/pb.json")"
[[ $(json 'd["kind"], d["parent"], d["stored_bytes"] > 0' <"$T/pb.json") == "physical None True" ]] ||
	fail "backup JSON: $(cat "$T/pb.json")"
grep -q '^{"event":"progress","phase":"backing up",.*"done":true' "$T/pb.err" ||
	{ cat "$T/pb.err"; fail "no JSON progress events from the physical backup"; }
stop_lsn=$(json 'd["lsn_stop"]' <"$T/pb.json")
pass "logical backups $l1, $l2; physical $pid (stop $stop_lsn) printed as JSON with JSON progress"

# --- commits with known times, xids, an LSN and a restore point ---------------------------
ins() { q "insert into t (id) values ($1) returning xmin::text"; }
x1=$(ins 1); sleep 0.3
x2=$(ins 2); sleep 0.3
x3=$(ins 3)
lsn3=$(q "select pg_current_wal_lsn()")
sleep 0.3
x4=$(ins 4)
q "select pg_create_restore_point('rp''4 \"after\"')" >/dev/null
x5=$(ins 5); sleep 0.3
x6=$(ins 6)
t23=$(q "select to_char((a2 + (a3 - a2) / 2) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
         from (select (select at from t where id = 2) a2, (select at from t where id = 3) a3) s")
seg=$(q "select pg_walfile_name(pg_current_wal_lsn())")
q "select pg_switch_wal()" >/dev/null
wait_archived "$seg" || fail "segment $seg was not archived"
pass "rows 1..6 (xids $x1..$x6), lsn after 3: $lsn3, restore point after 4, time between 2 and 3: $t23; archived through $seg"

# --- the recoverable window -----------------------------------------------------------------
as_pg "$agent" list -c "$conf" --output json >"$T/list.json" || fail "list --output json"
[[ $(json 'len(d["backups"])' <"$T/list.json") == 3 ]] || fail "list: $(cat "$T/list.json")"
read -r w_backup w_lsn w_seg w_logical < <(json '" ".join([d["windows"][0]["oldest"]["backup_id"], d["windows"][0]["oldest"]["lsn"], d["windows"][0]["newest"]["segment"], str(len([w for w in d["windows"] if w["kind"] == "logical"][0]["points"]))])' <"$T/list.json") ||
	fail "list JSON has no windows: $(cat "$T/list.json")"
[[ $w_backup == "$pid" && $w_lsn == "$stop_lsn" ]] ||
	fail "window's oldest point is $w_backup at $w_lsn, want $pid at $stop_lsn"
[[ $w_seg > "$seg" || $w_seg == "$seg" ]] || fail "window's newest segment $w_seg is before the last switched $seg"
[[ $w_logical == 2 ]] || fail "logical window has $w_logical points, want 2"
as_pg "$agent" list -c "$conf" >"$T/list.txt" || fail "list"
grep -q "oldest .* at lsn $stop_lsn (backup $pid consistent)" "$T/list.txt" || { cat "$T/list.txt"; fail "list text shows no window"; }
pass "window: from $pid at $stop_lsn to the end of $w_seg (>= $seg); 2 logical points"

# --- bad values -----------------------------------------------------------------------------
bad() { # expected-text args...
	local want=$1
	shift
	local rc=0
	"$agent" restore -c "$conf" --physical --pgdata "$T/never" "$@" >"$T/out" 2>"$T/err" || rc=$?
	[[ $rc != 0 ]] || fail "restore $* succeeded"
	grep -q -- "$want" "$T/err" || { cat "$T/err"; fail "restore $*: the error does not say '$want'"; }
	[[ ! -e $T/never ]] || fail "restore $* wrote $T/never"
}
bad "--target-lsn 'zz' is not an LSN" --target-lsn zz
bad "more than one recovery target" --target-lsn 0/1 --target-xid 1234
bad "control character" --target-name "$(printf 'a\nb')"
bad "needs a recovery target" --target-action pause
bad "--target-xid '12x' is not a transaction id" --target-xid 12x
bad "--target-action 'later' is not promote, pause or shutdown" --target-lsn 0/1 --target-action later
pass "bad values refused, each with its own error, nothing written"

# --- dry run --------------------------------------------------------------------------------
"$agent" restore -c "$conf" --physical --target-lsn "$lsn3" --pgdata "$T/dry" --dry-run --output json \
	>"$T/dry.json" 2>"$T/err" || { cat "$T/err"; fail "dry run"; }
[[ ! -e $T/dry ]] || fail "the dry run created $T/dry"
read -r d_id d_count d_reach d_bytes < <(json '" ".join([d["backups"][0]["id"], str(d["wal"]["count"]), str(d["wal"]["reaches_target"]), str(d["bytes_to_read"] > 0)])' <"$T/dry.json") ||
	fail "dry run JSON: $(cat "$T/dry.json")"
[[ $d_id == "$pid" && $d_count -ge 1 && $d_reach == True && $d_bytes == True ]] ||
	fail "dry run plan: $(cat "$T/dry.json")"
"$agent" restore -c "$conf" --physical --target-time "$t23" --pgdata "$T/dry" --dry-run >"$T/dry.txt" ||
	fail "dry run (text)"
grep -q "backup   $pid" "$T/dry.txt" && grep -q "wal      " "$T/dry.txt" || { cat "$T/dry.txt"; fail "dry run text"; }
[[ ! -e $T/dry ]] || fail "the dry run created $T/dry"
pass "dry run: backup $pid, $d_count WAL segments, nothing written ($(grep reads "$T/dry.txt" | xargs))"

# --- restores to each target ----------------------------------------------------------------
n=0
# restore NAME EXPECTED-ROWS args...: restores with --start and checks rows > 0.
restore_to() {
	local want=$1
	shift
	n=$((n + 1))
	local dir=$T/r$n port
	port=$(_free_port)
	mkdir -p "$dir/data" && chown -R postgres: "$dir"
	_t_clusters+=("$dir")
	"$agent" restore -c "$conf" --physical --pgdata "$dir/data" --port "$port" --start --output json "$@" \
		>"$dir/out.json" 2>"$dir/err" ||
		{ cat "$dir/err"; tail -5 "$dir/data/coffer-recovery.log"; fail "restore $*"; }
	RCI="host=$T/pg/sock port=$port user=postgres dbname=postgres"
	RDIR=$dir
	if [[ -n $want ]]; then
		local got
		got=$(psql_at "$RCI" -c "select string_agg(id::text, ',' order by id) from t")
		[[ $got == "$want" ]] || fail "restore $*: rows $got, want $want"
	fi
}
restore_to "0,1,2" --target-time "$t23"
[[ $(json 'd["target"]["kind"], d["reached"], d["state"]' <"$RDIR/out.json") == "time True promoted" ]] ||
	fail "time restore report: $(cat "$RDIR/out.json")"
pg_stop "$RDIR"
pass "time $t23: rows 0,1,2; $(json 'd["stop"]' <"$RDIR/out.json")"
restore_to "0,1,2,3" --target-lsn "$lsn3"
pg_stop "$RDIR"
pass "lsn $lsn3: rows 0..3"
restore_to "0,1" --target-xid "$x2" --target-inclusive false
pg_stop "$RDIR"
restore_to "0,1,2" --target-xid "$x2" --target-inclusive true
pg_stop "$RDIR"
pass "xid $x2: exclusive rows 0,1; inclusive rows 0,1,2"
restore_to "0,1,2,3,4" --target-name "rp'4 \"after\"" --target-action pause
[[ $(psql_at "$RCI" -c "select pg_is_in_recovery()") == t ]] || fail "paused server is not in recovery"
[[ $(json 'd["state"], d["reached"]' <"$RDIR/out.json") == "paused True" ]] || fail "pause report: $(cat "$RDIR/out.json")"
grep -q "recovery_target_name = 'rp''4 \"after\"'" "$RDIR/data/postgresql.auto.conf" ||
	{ grep recovery_target "$RDIR/data/postgresql.auto.conf"; fail "the restore point's name is not quoted"; }
"$agent" restore -c "$conf" --physical --pgdata "$T/r9/data" --target-name "x" --target-action pause --dry-run |
	grep -q "PostgreSQL decides" || fail "the name target's plan does not say PostgreSQL decides"
pg_stop "$RDIR"
pass "restore point with a quote in its name, paused: rows 0..4, in recovery, name quoted in postgresql.auto.conf"
restore_to "0" --target immediate
pg_stop "$RDIR"
pass "immediate: only the backup's row 0"
restore_to "" --target-lsn "$lsn3" --target-action shutdown
[[ ! -f $RDIR/data/postmaster.pid ]] || fail "the server is still running after shutdown at the target"
[[ $(json 'd["state"], d["reached"]' <"$RDIR/out.json") == "stopped True" ]] || fail "shutdown report: $(cat "$RDIR/out.json")"
as_pg "$agent" events -c "$conf" --output json >"$T/events.json" || fail "events"
grep -q "target lsn $lsn3, action shutdown; reached, stopped" "$T/events.json" ||
	{ grep -o 'physical; target[^"]*' "$T/events.json"; fail "the restore.completed event does not say the target and that it was reached"; }
grep -q "target time $t23, action promote; reached, promoted" "$T/events.json" || fail "the time restore's event does not say it was reached"
pass "shutdown at the target: server stopped; restore.completed events name each target and that it was reached"

# --- logical --before ------------------------------------------------------------------------
"$agent" restore -c "$conf" --before "$between_logical" --dry-run --output json >"$T/before.json" ||
	fail "restore --before --dry-run"
[[ $(json 'd["backups"][0]["id"]' <"$T/before.json") == "$l1" ]] || fail "--before picked $(cat "$T/before.json"), want $l1"
"$agent" restore -c "$conf" --before "$between_logical" --target-db before_db --output json \
	>"$T/before-restore.json" 2>"$T/err" || { cat "$T/err"; fail "restore --before"; }
[[ $(json 'd["backup_id"]' <"$T/before-restore.json") == "$l1" ]] || fail "--before restored $(cat "$T/before-restore.json")"
[[ $(psql_at "$PG_CONNINFO dbname=before_db" -c "select string_agg(id::text, ',') from t") == 0 ]] ||
	fail "--before restored the wrong rows"
rc=0
"$agent" restore -c "$conf" --before 2001-01-01T00:00:00Z --target-db x >"$T/out" 2>"$T/err" || rc=$?
[[ $rc != 0 ]] && grep -q "the oldest is $l1" "$T/err" || { cat "$T/err"; fail "--before with nothing older does not name the oldest"; }
pass "logical --before $between_logical picks $l1 (not $l2); nothing before 2001 names $l1"

# --- progress JSON on a physical restore ------------------------------------------------------
mkdir -p "$T/rp/data" && chown -R postgres: "$T/rp"
"$agent" restore -c "$conf" --physical --pgdata "$T/rp/data" --target immediate --progress json \
	>"$T/rp.out" 2>"$T/rp.err" || { cat "$T/rp.err"; fail "restore with --progress json"; }
grep -q '^{"event":"progress","phase":"restoring",.*"done":true' "$T/rp.err" ||
	{ cat "$T/rp.err"; fail "no JSON progress from the restore"; }
pass "physical restore --progress json: $(grep -c '"event":"progress"' "$T/rp.err") progress events"
