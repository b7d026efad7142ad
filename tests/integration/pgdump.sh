#!/usr/bin/env bash
# The agent's PostgreSQL side of a logical backup against a real PostgreSQL 15:
# snapshot metadata and exact row counts (schemas, an odd identifier, an
# unlogged table, a partitioned table, inheritance), rows written after the
# snapshot neither counted nor dumped, the dump readable and restorable with
# the same counts; and every failure ending with its own error: a bad or a
# refused pg_dump option, an unreachable server, a wrong or missing password,
# a missing database, a missing privilege, a missing pg_dump binary, a cancel
# (from a thread and from a signal handler), a deadline, pg_dump killed by a
# signal, and a full disk.
#
# pg_dump is kept from finishing, where a test needs that, by a real lock
# queue rather than by timing: a session waits for ACCESS EXCLUSIVE on a table
# the snapshot has read, and pg_dump's own lock request queues behind it.
set -euo pipefail

if [[ -z "${PG_BINDIR:-}" && -d /usr/lib/postgresql/15/bin ]]; then
	PG_BINDIR=/usr/lib/postgresql/15/bin
fi
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

t_init pgdump
bin=$COFFER_BIN/pgdump_itest
[[ -x "$bin" ]] || fail "$bin is missing: build the pgdump_itest target"
PGDUMP=$PG_BINDIR/pg_dump

pg_start "$T/pg"
ADMIN="$PG_CONNINFO dbname=postgres"
CI="$PG_CONNINFO dbname=shop"
psql_at "$ADMIN" -c "CREATE DATABASE shop"
psql_at "$CI" <<'SQL'
CREATE SCHEMA sales;
CREATE SCHEMA "Weird Schema";
CREATE TABLE public.items (id int PRIMARY KEY, name text, price numeric(10,2),
	at timestamptz DEFAULT now(), doc jsonb, blob bytea);
INSERT INTO public.items SELECT g, 'item ' || g, g * 1.5, now(),
	jsonb_build_object('g', g), decode('00ff', 'hex') FROM generate_series(1, 1000) g;
CREATE INDEX ON public.items (name);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, item int REFERENCES public.items, qty int);
INSERT INTO sales.orders (item, qty) SELECT 1 + g % 1000, g FROM generate_series(1, 2500) g;
CREATE UNLOGGED TABLE sales.scratch (x int);
INSERT INTO sales.scratch SELECT generate_series(1, 37);
CREATE TABLE sales.events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE sales.events_2025 PARTITION OF sales.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE sales.events_2026 PARTITION OF sales.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO sales.events SELECT g, date '2025-01-01' + g % 300 FROM generate_series(1, 300) g;
INSERT INTO sales.events SELECT g, date '2026-01-01' + g % 200 FROM generate_series(1, 200) g;
CREATE TABLE "Weird Schema"."Weird Name" (v text);
INSERT INTO "Weird Schema"."Weird Name" SELECT 'w' || g FROM generate_series(1, 7) g;
CREATE TABLE public."odd""quote.name" (x int);
INSERT INTO public."odd""quote.name" VALUES (1), (2);
CREATE TABLE public.empty (x int);
CREATE TABLE public.parent (x int);
CREATE TABLE public.child () INHERITS (public.parent);
INSERT INTO public.parent SELECT generate_series(1, 5);
INSERT INTO public.child SELECT generate_series(1, 3);
CREATE VIEW public.v AS SELECT id FROM public.items;
CREATE MATERIALIZED VIEW public.mv AS SELECT id FROM public.items;
CREATE SEQUENCE public.seq;
SQL

expected=$(printf 'table\t%s\t%s\t%s\n' \
	"Weird Schema" "Weird Name" 7 \
	public child 3 \
	public empty 0 \
	public items 1000 \
	public 'odd"quote.name' 2 \
	public parent 5 \
	sales events_2025 300 \
	sales events_2026 200 \
	sales orders 2500 \
	sales scratch 37)

wait_for_file() {
	for _ in $(seq 1200); do
		[[ -e "$1" ]] && return 0
		sleep 0.05
	done
	fail "timed out waiting for $1"
}

# Waits until SQL (a count) returns at least $2.
wait_for_sql() {
	local n
	for _ in $(seq 1200); do
		n=$(psql_at "$ADMIN" -c "$1")
		((n >= $2)) && return 0
		sleep 0.05
	done
	fail "timed out waiting for: $1"
}

# expect_fail NAME CODE TEXT: the last run of NAME failed with CODE and TEXT.
expect_fail() {
	local name=$1 code=$2 text=$3 rc=$4
	((rc != 0)) || fail "$name: succeeded, expected $code"
	grep -q "^error $code: " "$T/$name.err" || fail "$name: expected $code, got: $(cat "$T/$name.err")"
	grep -qF -- "$text" "$T/$name.err" || fail "$name: message lacks '$text': $(cat "$T/$name.err")"
	grep -q '^hint: .' "$T/$name.err" || fail "$name: no hint: $(cat "$T/$name.err")"
	if grep -q '^sha256 ' "$T/$name.out" 2>/dev/null; then
		fail "$name: a failed dump finished its chain"
	fi
}

run() { # run NAME ARGS...: driver output in $T/NAME.out/.err, status in $rc
	local name=$1
	shift
	rc=0
	"$bin" "$@" >"$T/$name.out" 2>"$T/$name.err" || rc=$?
}

# --- metadata and counts -----------------------------------------------------
run snap snapshot "$CI"
((rc == 0)) || fail "snapshot: $(cat "$T/snap.err")"
got=$(grep '^table' "$T/snap.out")
[[ "$got" == "$expected" ]] || fail "row counts differ:$(diff <(echo "$expected") <(echo "$got"))"
grep -q '^server_version_num 15' "$T/snap.out" || fail "no server_version_num: $(cat "$T/snap.out")"
grep -q '^server_version PostgreSQL 15' "$T/snap.out" || fail "no version string"
sysid=$(runuser -u postgres -- "$PG_BINDIR/pg_controldata" "$T/pg/data" | awk -F': *' '/system identifier/ {print $2}')
grep -qx "system_identifier $sysid" "$T/snap.out" || fail "system identifier is not $sysid: $(cat "$T/snap.out")"
grep -qx 'database shop' "$T/snap.out" || fail "no database name"
grep -qE '^database_size [1-9][0-9]+$' "$T/snap.out" || fail "no database size"
grep -qE '^lsn [0-9A-F]+/[0-9A-F]+$' "$T/snap.out" || fail "no LSN"
grep -qx 'in_recovery 0' "$T/snap.out" || fail "in_recovery should be 0"
pass "metadata and exact row counts (leaf partitions, ONLY, odd names, unlogged)"

# --- the dump sees the snapshot, not later writes ------------------------------
# A server-side idle timeout must not end the snapshot's transaction while it
# waits: the pause below outlasts it, and pg_dump must still import the snapshot.
psql_at "$ADMIN" -c "ALTER DATABASE shop SET idle_in_transaction_session_timeout = '200ms'"
rm -f "$T/pause"
"$bin" dump "$CI" "$T/shop.dump" --pg-dump "$PGDUMP" --pause-file "$T/pause" \
	>"$T/dump.out" 2>"$T/dump.err" &
drv=$!
wait_for_file "$T/pause"
psql_at "$CI" <<'SQL'
INSERT INTO public.items SELECT g, 'late ' || g FROM generate_series(1001, 1100) g;
DELETE FROM sales.orders WHERE id <= 10;
CREATE TABLE public.late (x int);
INSERT INTO public.late VALUES (1);
SQL
sleep 1
rm -f "$T/pause"
rc=0
wait "$drv" || rc=$?
((rc == 0)) || fail "dump failed: $(cat "$T/dump.err")"
[[ "$(grep '^table' "$T/dump.out")" == "$expected" ]] || fail "dump counts differ: $(cat "$T/dump.out")"
want=$(awk '/^sha256 / {print $2}' "$T/dump.out")
have=$(sha256sum "$T/shop.dump" | cut -d' ' -f1)
[[ -n "$want" && "$want" == "$have" ]] || fail "digest $want does not match the file's $have"
bytes=$(awk '/^bytes / {print $2}' "$T/dump.out")
[[ "$bytes" == "$(stat -c %s "$T/shop.dump")" ]] || fail "byte count $bytes is not the file size"
"$PG_BINDIR/pg_restore" -l "$T/shop.dump" >"$T/toc" || fail "pg_restore -l cannot read the dump"
grep -q 'TABLE DATA Weird Schema Weird Name' "$T/toc" || fail "no data for the odd table: $(cat "$T/toc")"
grep -q 'TABLE DATA sales scratch' "$T/toc" || fail "no data for the unlogged table"
grep -q ' late ' "$T/toc" && fail "a table created after the snapshot was dumped"
psql_at "$ADMIN" -c "ALTER DATABASE shop RESET idle_in_transaction_session_timeout"
pass "dump in the exported snapshot: digest matches, pg_restore -l reads it"

# --- restore helpers and counts of the restored database ----------------------
run exists1 dbexists "$ADMIN" restored
[[ $rc == 0 && "$(cat "$T/exists1.out")" == no ]] || fail "dbexists before create: $(cat "$T/exists1.err")"
run create createdb "$ADMIN" restored
((rc == 0)) || fail "createdb: $(cat "$T/create.err")"
run exists2 dbexists "$ADMIN" restored
[[ "$(cat "$T/exists2.out")" == yes ]] || fail "dbexists after create"
run create2 createdb "$ADMIN" restored
expect_fail create2 EEXIST "already exists" "$rc"
run longname createdb "$ADMIN" "$(printf 'x%.0s' $(seq 70))"
expect_fail longname EINVAL "1 to 63 bytes" "$rc"
RCI="$PG_CONNINFO dbname=restored"
run empty hastables "$RCI"
[[ "$(cat "$T/empty.out")" == no ]] || fail "a fresh database has user tables?"
"$PG_BINDIR/pg_restore" -d "$RCI" "$T/shop.dump" 2>"$T/restore.err" || fail "pg_restore: $(cat "$T/restore.err")"
run full hastables "$RCI"
[[ "$(cat "$T/full.out")" == yes ]] || fail "the restored database has no user tables?"
run counts rowcounts "$RCI"
((rc == 0)) || fail "rowcounts: $(cat "$T/counts.err")"
[[ "$(cat "$T/counts.out")" == "$expected" ]] ||
	fail "restored counts differ:$(diff <(echo "$expected") "$T/counts.out")"
[[ "$(psql_at "$RCI" -c "SELECT count(*) FROM items WHERE name LIKE 'late%'")" == 0 ]] ||
	fail "rows inserted after the snapshot were restored"
pass "restored database has exactly the snapshot's rows; create/exists/hastables"

# --- refused options: nothing runs --------------------------------------------
for opt in "-Fp" "--format=directory" "-f /tmp/x" "--file=/tmp/x" "--fi=/tmp/x" "--snap=1" \
	"-vZ9" "--compress=5" "shop" "--table=items" "--no-unlogged-table-data" "-h elsewhere" "--dbname=other" "-W" "--version" "--"; do
	rm -f "$T/refused.dump"
	run refused dump "$CI" "$T/refused.dump" --pg-dump "$PGDUMP" --extra-opts "$opt"
	expect_fail refused EINVAL "dump_options" "$rc"
	[[ -e "$T/refused.dump" ]] && fail "refused option '$opt' still opened the output"
done
run allowed dump "$CI" "$T/allowed.dump" --pg-dump "$PGDUMP" --extra-opts "-v -Fc --compress=0 --lock-wait-timeout 60s --no-comments"
((rc == 0)) || fail "allowed options refused: $(cat "$T/allowed.err")"
pass "dump_options that break the contract are refused before pg_dump runs"

# --- failures ----------------------------------------------------------------
run badopt dump "$CI" "$T/badopt.dump" --pg-dump "$PGDUMP" --extra-opts "--no-such-option"
expect_fail badopt ECHILD "pg_dump exited with status 1" "$rc"
grep -q "no-such-option" "$T/badopt.err" || fail "pg_dump's stderr is not in the message"

port=$(_free_port)
run unreach dump "host=127.0.0.1 port=$port user=postgres dbname=shop connect_timeout=5" \
	"$T/x.dump" --pg-dump "$PGDUMP"
expect_fail unreach EUNAVAIL "cannot reach PostgreSQL" "$rc"

psql_at "$ADMIN" -c "CREATE ROLE app LOGIN PASSWORD 'right-pw-4711'"
run badpw dump "host=127.0.0.1 port=$PG_PORT user=app password=wrong-pw-0815 dbname=shop" \
	"$T/x.dump" --pg-dump "$PGDUMP"
expect_fail badpw EAUTH "password authentication failed" "$rc"
grep -q "wrong-pw-0815" "$T/badpw.err" "$T/badpw.out" && fail "the password was printed"
PGPASSFILE=$T/no-such-passfile run nopw dump "host=127.0.0.1 port=$PG_PORT user=app dbname=shop" \
	"$T/x.dump" --pg-dump "$PGDUMP"
expect_fail nopw EAUTH "wants a password" "$rc"
run noperm dump "host=127.0.0.1 port=$PG_PORT user=app password=right-pw-4711 dbname=shop" \
	"$T/x.dump" --pg-dump "$PGDUMP"
expect_fail noperm EPERM "permission denied" "$rc"
grep -q "right-pw-4711" "$T/noperm.err" "$T/noperm.out" && fail "the password was printed"

run nodb dump "$PG_CONNINFO dbname=nosuchdb" "$T/x.dump" --pg-dump "$PGDUMP"
expect_fail nodb ENOENT 'database "nosuchdb" does not exist' "$rc"

run nobin dump "$CI" "$T/x.dump" --pg-dump /nonexistent/bin/pg_dump
expect_fail nobin ENOENT "not found" "$rc"
grep -qF "[postgres] bin_dir" "$T/nobin.err" || fail "the hint does not name [postgres] bin_dir"

run full dump "$CI" /dev/full --pg-dump "$PGDUMP"
expect_fail full ENOSPC "/dev/full" "$rc"
pass "bad option, unreachable, wrong/missing password, privilege, missing db and binary, full disk"

# A dump that cannot finish: the snapshot read items, a locker waits for
# ACCESS EXCLUSIVE on it, and pg_dump's lock request queues behind the locker.
locker=
blocked_dump() {
	local name=$1
	shift
	rm -f "$T/pause.$name"
	"$bin" dump "$CI" "$T/$name.dump" --pg-dump "$PGDUMP" --pause-file "$T/pause.$name" "$@" \
		>"$T/$name.out" 2>"$T/$name.err" &
	drv=$!
	wait_for_file "$T/pause.$name"
	PGAPPNAME=coffer-locker "$PG_BINDIR/psql" -X -q "$CI" -c "BEGIN" \
		-c "LOCK TABLE public.items IN ACCESS EXCLUSIVE MODE" -c "SELECT pg_sleep(600)" \
		>/dev/null 2>&1 &
	locker=$!
	wait_for_sql "SELECT count(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock' AND NOT granted" 1
	rm -f "$T/pause.$name"
}
unlock() {
	psql_at "$ADMIN" -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'coffer-locker'" >/dev/null
	wait "$locker" 2>/dev/null || true
}
# Waits until pg_dump itself waits for its lock, so the stop lands mid-run.
pg_dump_waiting() {
	wait_for_sql "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'
		AND wait_event_type = 'Lock'" 1
}

blocked_dump deadline --deadline-ms 2000 --grace-ms 500
rc=0
wait "$drv" || rc=$?
unlock
expect_fail deadline ETIMEDOUT "did not finish within --deadline-ms 2000" "$rc"

blocked_dump cancel --cancel-after-ms 300
rc=0
wait "$drv" || rc=$?
unlock
expect_fail cancel ECANCELED "cancelled" "$rc"

blocked_dump usr1
pg_dump_waiting
kill -USR1 "$drv"
rc=0
wait "$drv" || rc=$?
unlock
expect_fail usr1 ECANCELED "cancelled" "$rc"

blocked_dump killed
pg_dump_waiting
child=$(pgrep -P "$drv" -x pg_dump) || fail "no pg_dump child of the driver"
kill -KILL "$child"
rc=0
wait "$drv" || rc=$?
unlock
expect_fail killed ECHILD "killed by signal 9 (SIGKILL)" "$rc"
pass "deadline, cancel (thread and signal handler) and SIGKILL each end with their own error"

# --- a standby: snapshot, LSN from replay, and pg_dump all work there ----------
sb=$T/standby
mkdir -p "$sb/sock"
chown -R "$PG_USER:" "$sb"
runuser -u "$PG_USER" -- "$PG_BINDIR/pg_basebackup" -h "$PG_HOST" -p "$PG_PORT" -U postgres \
	-D "$sb/data" -R -X stream -c fast >"$sb/basebackup.log" 2>&1 || fail "pg_basebackup: $(cat "$sb/basebackup.log")"
echo "unix_socket_directories = '$sb/sock'" >>"$sb/data/postgresql.conf"
_t_clusters+=("$sb")
sport=$(_free_port)
runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$sb/data" -o "-p $sport" -l "$sb/server.log" \
	-w -t 60 start >/dev/null || fail "the standby did not start: $(cat "$sb/server.log")"
SCI="host=$sb/sock port=$sport user=postgres dbname=shop"
run standby dump "$SCI" "$T/standby.dump" --pg-dump "$PGDUMP"
((rc == 0)) || fail "dump from the standby: $(cat "$T/standby.err")"
grep -qx 'in_recovery 1' "$T/standby.out" || fail "the standby is not in recovery?"
grep -qE '^lsn [0-9A-F]+/[0-9A-F]+$' "$T/standby.out" || fail "no replay LSN on the standby"
grep -qx "system_identifier $sysid" "$T/standby.out" || fail "the standby's system identifier differs"
grep -qP '^table\tpublic\titems\t1100$' "$T/standby.out" || fail "standby counts: $(cat "$T/standby.out")"
grep -qP '^table\tsales\tscratch\t0$' "$T/standby.out" || fail "unlogged table on the standby: $(cat "$T/standby.out")"
"$PG_BINDIR/pg_restore" -l "$T/standby.dump" >"$T/standby.toc" || fail "pg_restore -l cannot read the standby dump"
# What the 0 rows promise: pg_dump on a standby dumps no unlogged data.
grep -q 'TABLE DATA sales scratch' "$T/standby.toc" && fail "pg_dump dumped unlogged data on a standby"
pass "snapshot and dump on a standby (replay LSN)"

# Nothing left behind: no backend of ours still runs.
left=$(psql_at "$ADMIN" -c "SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('pg_dump', 'coffer-agent')")
[[ "$left" == 0 ]] || note "$left backends still finishing (terminated clients)"
pass "all done"
