#!/usr/bin/env bash
# Physical backups, WAL archiving and point-in-time restore against a real
# PostgreSQL whose archive_command is coffer-agent wal-push:
# - a base backup (--kind physical) that completes only once its WAL is archived;
# - rows committed one by one with known commit times after it; a restore to a
#   time between two of them (while pgbench writes), into a new data directory started with --start,
#   holds exactly the rows committed before the target;
# - a tablespace outside the data directory: backed up with its files,
#   restored where --tablespace-map says (its old, non-empty place refused);
# - wal-push idempotency (same content: ok; different content: refused loudly),
#   a segment of another cluster refused, wal-fetch of a missing file exits 1
#   quietly, a non-empty --pgdata refused;
# - a repository that cannot be written makes wal-push fail (pg_stat_archiver's
#   failed_count rises, PostgreSQL keeps the segment) and archiving catches up
#   once it is fixed;
# - the cluster rebuilt for the same service (initdb again): its segments are
#   refused until the operator removes the cached system identifier, then
#   archived beside the old cluster's same-named ones; a backup of the old
#   cluster still restores through the old cluster's WAL, and the new one
#   backs up.
# The server runs as postgres, so the agent's config, keys, state and
# repository belong to postgres; backups run as postgres, the restore as root
# (it hands the restored files to the directory's owner).
source "$(dirname "$0")/lib.sh"
t_init pitr
# PostgreSQL (user postgres) runs the agent as archive_command; the build
# tree may sit under a directory only root can enter (a CI clone in /root or
# a mktemp -d), so postgres gets its own copy in the scratch directory.
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
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $PG_CONNINFO dbname=postgres
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
completion_window = 3m
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$conf" >/dev/null || fail "init"
chown -R postgres: "$T/state" "$T/repo" "$T/billing.keys" "$T/agent.key" "$conf"
ci="$PG_CONNINFO dbname=postgres"
q() { psql_at "$ci" -c "$1"; }
# WAL is kept per cluster: services/<service>/wal/<system identifier>/.
sysid=$(q "select system_identifier from pg_control_system()")
wal=$T/repo/services/billing/wal/$sysid

# Waits (bounded, not timed) until pg_stat_archiver shows $1 archived.
wait_archived() {
	for _ in $(seq 600); do
		[[ $(q "select coalesce(last_archived_wal, '') >= '$1' from pg_stat_archiver") == t ]] && return 0
		sleep 0.1
	done
	return 1
}

# --- base backup, under pgbench load -------------------------------------------------------
# pgbench (TPC-B-like: each transaction moves a delta into an account, a teller
# and a branch and logs it in pgbench_history) runs from before the base
# backup until after the commits below (-T 8: it stops by itself; nothing
# depends on how far it got).
as_pg "$PG_BINDIR/pgbench" -h "$PG_HOST" -p "$PG_PORT" -U postgres -i -s 2 -q postgres >"$T/pgbench-init.log" 2>&1 ||
	fail "pgbench -i: $(tail -3 "$T/pgbench-init.log")"
as_pg "$PG_BINDIR/pgbench" -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 2 -j 1 -T 8 postgres \
	>"$T/pgbench.log" 2>&1 &
pgbench_pid=$!
q "create table ledger (id int primary key, at timestamptz not null default clock_timestamp())"
q "insert into ledger (id) select g from generate_series(-99, 0) g"
q "create unlogged table scratch (x int)"
q "insert into scratch select generate_series(1, 1000)"
scratch_path=$(q "select pg_relation_filepath('scratch')")
# A tablespace outside the data directory, with a table in it.
mkdir -p "$T/ts1" && chown postgres: "$T/ts1" && chmod 700 "$T/ts1"
q "create tablespace ts1 location '$T/ts1'"
q "create table in_ts (id int) tablespace ts1"
q "insert into in_ts select generate_series(1, 500)"
ts_oid=$(q "select oid from pg_tablespace where spcname = 'ts1'")
id=$(as_pg "$agent" backup -c "$conf" --kind physical 2>"$T/backup.log") ||
	{ cat "$T/backup.log"; fail "physical backup"; }
[[ $id == *-p-* ]] || fail "backup printed '$id', not a physical backup id"
man=$T/repo/services/billing/backups/$id/manifest.json
[[ -f $man ]] || fail "no manifest for $id"
grep -q '"kind":"physical"' "$man" || fail "manifest kind is not physical"
grep -q '"path":"backup_label"' "$man" || fail "backup_label is not in the manifest"
grep -q '"path":"global/pg_control"' "$man" || fail "global/pg_control is not in the manifest"
if grep -q '"path":"postmaster.pid"' "$man"; then fail "postmaster.pid was backed up"; fi
if grep -q '"path":"pg_wal/0' "$man"; then fail "pg_wal contents were backed up"; fi
if grep -q "\"path\":\"$scratch_path\"" "$man"; then fail "the unlogged table's main fork was backed up"; fi
grep -q "\"path\":\"${scratch_path}_init\"" "$man" || fail "the unlogged table's init fork is missing"
grep -q "\"path\":\"pg_tblspc/$ts_oid/PG_15_[0-9]*/" "$man" || fail "the tablespace's files are not in the manifest"
# The archiver may take the stop segment (which the backup waits for)
# before the .backup history file that sorts after it.
for _ in $(seq 150); do ls "$wal/00000001/" | grep -q '\.backup$' && break; sleep 0.2; done
ls "$wal/00000001/" | grep -q '\.backup$' ||
	fail "the backup history file was not archived within 30 s"
as_pg "$agent" verify -c "$conf" --backup "$id" >/dev/null 2>"$T/err" || { cat "$T/err"; fail "verify $id"; }
as_pg "$agent" list -c "$conf" | grep -q "$id" || fail "list does not show $id"
pass "physical backup $id, manifest and WAL in the repository; verify and list see it"

# --- commits with known times ------------------------------------------------------------
for i in 1 2 3 4 5 6; do
	q "insert into ledger (id) values ($i)"
	sleep 0.4
done
target=$(q "select to_char((a3 + (a4 - a3) / 2) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
            from (select (select at from ledger where id = 3) a3, (select at from ledger where id = 4) a4) s")
wait "$pgbench_pid" || fail "pgbench: $(tail -3 "$T/pgbench.log")"
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/pgbench.log" | head -1)
seg=$(q "select pg_walfile_name(pg_current_wal_lsn())")
q "select pg_switch_wal()" >/dev/null
wait_archived "$seg" || fail "segment $seg was not archived"
pass "6 commits after the backup, under pgbench load ($tps tps), archived through $seg; target $target"

# --- wal-push / wal-fetch rules ------------------------------------------------------------
mkdir -p "$T/w" && chown postgres: "$T/w"
as_pg "$agent" wal-fetch -c "$conf" "$seg" "$T/w/$seg" || fail "wal-fetch $seg"
[[ $(stat -c %s "$T/w/$seg") == 16777216 ]] || fail "fetched segment is not 16 MiB"
[[ ! -e "$T/w/$seg.coffer-tmp" ]] || fail "wal-fetch left its temporary"
as_pg "$agent" wal-push -c "$conf" "$T/w/$seg" 2>"$T/err" || { cat "$T/err"; fail "re-pushing the same segment"; }
pass "wal-fetch, and wal-push of the same content again succeeds"
# Flip every bit of one byte, so the content differs whatever was there
# (writing a fixed 'X' changed nothing when the byte already was one).
old_byte=$(dd if="$T/w/$seg" bs=1 skip=100000 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
cp "$T/w/$seg" "$T/w/x" &&
	printf "\\$(printf %03o $((old_byte ^ 255)))" | dd of="$T/w/x" bs=1 seek=100000 conv=notrunc 2>/dev/null
cmp -s "$T/w/$seg" "$T/w/x" && fail "the changed copy of $seg is not different"
mv "$T/w/x" "$T/w/changed" && mkdir -p "$T/w/c" && mv "$T/w/changed" "$T/w/c/$seg" && chown -R postgres: "$T/w"
if as_pg "$agent" wal-push -c "$conf" "$T/w/c/$seg" 2>"$T/err"; then fail "different content under $seg was accepted"; fi
grep -q "different content" "$T/err" || { cat "$T/err"; fail "refusal does not say 'different content'"; }
pass "wal-push of different content under the same name refused: $(head -c 120 "$T/err")"
mkdir -p "$T/w/o" && cp "$T/w/$seg" "$T/w/o/000000010000000000000F00" && chown -R postgres: "$T/w"
printf '\x01\x02\x03\x04\x05\x06\x07\x08' | dd of="$T/w/o/000000010000000000000F00" bs=1 seek=24 conv=notrunc 2>/dev/null
if as_pg "$agent" wal-push -c "$conf" "$T/w/o/000000010000000000000F00" 2>"$T/err"; then
	fail "a segment of another cluster was archived"
fi
grep -q "system identifier" "$T/err" || { cat "$T/err"; fail "foreign segment refusal does not name the system identifier"; }
[[ ! -e "$wal/00000001/000000010000000000000F00" ]] || fail "foreign segment stored"
pass "segment of another cluster refused"
rc=0
as_pg "$agent" wal-fetch -c "$conf" 000000010000000000000F01 "$T/w/none" 2>"$T/err" || rc=$?
[[ $rc == 1 ]] || fail "wal-fetch of a missing segment exited $rc, want 1"
[[ ! -s "$T/err" ]] || { cat "$T/err"; fail "wal-fetch of a missing segment was not quiet"; }
rc=0
as_pg "$agent" wal-push -c "$conf" "$T/w/none-such" 2>"$T/err" || rc=$?
[[ $rc != 0 ]] || fail "wal-push of a bad name succeeded"
pass "missing segment: wal-fetch exits 1 quietly; bad names refused"
# Timeline 10, not 2: recovery with recovery_target_timeline = latest probes
# 00000002.history, 00000003.history... and must not find this made-up one.
printf '1\t0/3000000\tno recovery target specified\n' >"$T/w/0000000A.history"
chown postgres: "$T/w/0000000A.history"
as_pg "$agent" wal-push -c "$conf" "$T/w/0000000A.history" 2>"$T/err" || { cat "$T/err"; fail "wal-push of a history file"; }
[[ -f "$wal/0000000A/0000000A.history" ]] || fail "history file not under wal/0000000A/"
if grep -q "no recovery target" "$wal/0000000A/0000000A.history"; then fail "history file stored in clear"; fi
as_pg "$agent" wal-fetch -c "$conf" 0000000A.history "$T/w/h" || fail "wal-fetch of the history file"
cmp -s "$T/w/h" "$T/w/0000000A.history" || fail "fetched history file differs"
pass "history files archived under their timeline and fetched back"

# --- point-in-time restore -------------------------------------------------------------
mkdir -p "$T/r/data"
chown -R postgres: "$T/r"
if "$agent" restore -c "$conf" --physical --target-time "$target" --pgdata "$T/pg/data" 2>"$T/err"; then
	fail "restore into the live data directory was allowed"
fi
grep -q "not empty" "$T/err" || { cat "$T/err"; fail "non-empty refusal does not say so"; }
mkdir -p "$T/rootdir"
if "$agent" restore -c "$conf" --physical --target-time "$target" --pgdata "$T/rootdir" --start 2>"$T/err"; then
	fail "--start into a directory owned by root was allowed"
fi
grep -q "refuses to run as root" "$T/err" || { cat "$T/err"; fail "root-owned --pgdata refusal does not say why"; }
[[ -z $(ls -A "$T/rootdir") ]] || fail "the refused restore wrote into $T/rootdir"
pass "non-empty --pgdata refused; --start into a root-owned directory refused before writing"
mkdir -p "$T/r0/data" && chown -R postgres: "$T/r0"
if "$agent" restore -c "$conf" --physical --target-time "$target" --pgdata "$T/r0/data" 2>"$T/err"; then
	fail "a restore over the live cluster's tablespace directory was allowed"
fi
grep -q "tablespace directory $T/ts1 is not empty" "$T/err" || { cat "$T/err"; fail "the tablespace refusal does not say so"; }
grep -q -- "--tablespace-map $T/ts1=DIR" "$T/err" || { cat "$T/err"; fail "the tablespace refusal does not name --tablespace-map"; }
[[ -z $(ls -A "$T/ts1/PG_15_"*/ 2>/dev/null | grep -v '^[0-9]*$') ]] || fail "the refused restore wrote into $T/ts1"
pass "restore refuses to put a tablespace into its live, non-empty directory and says how to map it"
port2=$(_free_port)
_t_clusters+=("$T/r")
# Run from a directory closed to postgres (root's 0700 working directory):
# the server it starts must not depend on our working directory.
mkdir -m 0700 "$T/closed"
(cd "$T/closed" && "$agent" restore -c "$conf" --physical --target-time "$target" --pgdata "$T/r/data" \
	--tablespace-map "$T/ts1=$T/r/ts1" --port "$port2" --start) >"$T/restore.out" 2>"$T/restore.log" ||
	{ cat "$T/restore.log"; cat "$T/r/data/coffer-recovery.log" 2>/dev/null | tail -20; fail "physical restore"; }
grep -q "restored backup $id" "$T/restore.out" || { cat "$T/restore.out"; fail "restore report"; }
! grep -q "could not change directory" "$T/restore.log" "$T/r/data/coffer-recovery.log" ||
	fail "the server was started in our working directory: $(grep -h "could not change directory" "$T/restore.log" "$T/r/data/coffer-recovery.log")"
[[ $(stat -c %U "$T/r/data/global/pg_control") == postgres ]] || fail "restored files are not postgres's"
rci="host=$T/pg/sock port=$port2 user=postgres dbname=postgres"
got=$(psql_at "$rci" -c "select string_agg(id::text, ',' order by id) from ledger where id > 0")
[[ $got == "1,2,3" ]] || fail "restored rows after the backup: '$got', want '1,2,3' (target $target)"
n=$(psql_at "$rci" -c "select count(*) from ledger where id <= 0")
[[ $n == 100 ]] || fail "restored rows from before the backup: $n, want 100"
[[ $(psql_at "$rci" -c "select count(*) from scratch") == 0 ]] || fail "the restored unlogged table is not empty"
[[ $(psql_at "$rci" -c "select count(*) from in_ts") == 500 ]] || fail "the table in the tablespace did not come back"
[[ $(psql_at "$rci" -c "select pg_tablespace_location($ts_oid)") == "$T/r/ts1" ]] ||
	fail "the restored tablespace is at $(psql_at "$rci" -c "select pg_tablespace_location($ts_oid)"), not $T/r/ts1"
[[ ! -e $T/r/data/tablespace_map ]] || fail "tablespace_map was left to point recovery at the old location"
[[ $(psql_at "$rci" -c "select pg_is_in_recovery()") == f ]] || fail "restored cluster is still in recovery"
# The target fell in the middle of pgbench's run: every transaction is there
# whole or not at all.
[[ $(psql_at "$rci" -c "select (select sum(abalance) from pgbench_accounts) = (select coalesce(sum(delta), 0) from pgbench_history) and (select sum(bbalance) from pgbench_branches) = (select coalesce(sum(delta), 0) from pgbench_history)") == t ]] ||
	fail "the restored pgbench tables are not transactionally consistent"
n_hist=$(psql_at "$rci" -c "select count(*) from pgbench_history")
pass "restored to $target (tablespace ts1 mapped to $T/r/ts1, its 500 rows there): rows 1..3 exist, 4..6 do not; pgbench's $n_hist transactions before it are consistent ($(cat "$T/restore.out"))"
pg_stop "$T/r"

# --- wal-fetch prefetch ------------------------------------------------------------------
# Fetching a segment starts a detached prefetcher for the next ones; the next
# fetch is then served from the spool, even with the repository object gone.
spool=$T/state/wal-prefetch
s1=000000010000000000000001 s2=000000010000000000000002
rm -rf "$spool"
as_pg "$agent" wal-fetch -c "$conf" $s1 "$T/w/p1" || fail "wal-fetch $s1"
for _ in $(seq 600); do [[ -f $spool/$sysid-$s2 ]] && break; sleep 0.1; done
[[ -f $spool/$sysid-$s2 ]] || fail "$s2 was not prefetched"
flock -w 120 "$spool/.lock" true || fail "the prefetcher did not finish"
(($(ls "$spool" | wc -l) <= 4)) || fail "the prefetch spool holds more than 4 segments"
mv "$wal/00000001/$s2" "$T/w/aside"
as_pg "$agent" wal-fetch -c "$conf" $s2 "$T/w/p2" || fail "prefetched $s2 was not served"
mv "$T/w/aside" "$wal/00000001/$s2"
[[ ! -e $spool/$sysid-$s2 ]] || fail "served segment left in the spool"
as_pg "$agent" wal-fetch -c "$conf" $s2 "$T/w/p2b" || fail "wal-fetch $s2 from the repository"
cmp -s "$T/w/p2" "$T/w/p2b" || fail "prefetched $s2 differs from the archived one"
pass "prefetch: $s2 served from the spool, identical to the archive"

# --- a failing repository, then catching up --------------------------------------------
fails0=$(q "select failed_count from pg_stat_archiver")
# Read-only, not unreadable: the agent can still see what is archived.
chmod 550 "$wal/00000001"
q "insert into ledger (id) values (100)"
seg=$(q "select pg_walfile_name(pg_current_wal_lsn())")
q "select pg_switch_wal()" >/dev/null
for _ in $(seq 600); do
	(($(q "select failed_count from pg_stat_archiver") > fails0)) && break
	sleep 0.1
done
(($(q "select failed_count from pg_stat_archiver") > fails0)) || fail "failed_count did not rise"
[[ $(q "select last_failed_wal from pg_stat_archiver") == "$seg" ]] || fail "last_failed_wal is not $seg"
[[ -f "$T/pg/data/pg_wal/archive_status/$seg.ready" ]] || fail "$seg is no longer waiting in pg_wal"
grep -q "coffer-agent wal-push" "$T/pg/server.log" || fail "wal-push's error is not in the server log"
pass "unwritable repository: wal-push fails, failed_count rises, $seg kept"
# A physical backup now cannot complete: its WAL never arrives. It fails
# within its completion window, saying what the archiver reports, and
# publishes no manifest.
sed 's/^completion_window = .*/completion_window = 4s/' "$conf" >"$T/short.conf"
chown postgres: "$T/short.conf"
if as_pg "$agent" backup -c "$T/short.conf" --kind physical >"$T/bad.id" 2>"$T/err"; then
	fail "a backup whose WAL cannot be archived completed"
fi
grep -q "was not archived" "$T/err" || { cat "$T/err"; fail "backup failure does not say the WAL was not archived"; }
grep -q "failed_count=" "$T/err" || { cat "$T/err"; fail "backup failure does not quote pg_stat_archiver"; }
[[ $(ls "$T"/repo/services/billing/backups/*/manifest.json | wc -l) == 1 ]] ||
	fail "the failed backup published a manifest"
as_pg "$agent" events -c "$conf" --output json | grep -q "backup.failed" || fail "no backup.failed event"
pass "physical backup with unarchivable WAL fails: $(grep -o 'was not archived.*' "$T/err" | head -c 100)"
chmod 750 "$wal/00000001"
# After three failures in a row the archiver rests for a minute; a reload
# wakes it, as an operator fixing the repository would.
q "select pg_reload_conf()" >/dev/null
wait_archived "$seg" || fail "archiving did not catch up after the repository was fixed"
[[ -f "$wal/00000001/$seg" ]] || fail "$seg not in the repository"
pass "archiving caught up: $seg archived"

# --- events ---------------------------------------------------------------------------
as_pg "$agent" events -c "$conf" --output json >"$T/events.json" || fail "events"
grep -q "wal.archived" "$T/events.json" || fail "no wal.archived event in the outbox"
grep -q "restore.completed" "$T/events.json" || fail "no restore.completed event in the outbox"
pass "wal.archived and restore.completed events in the outbox"

# --- a physical backup run by root ----------------------------------------------------
# The agent may run as root beside the database; what it leaves in state_dir
# must stay usable by the archive_command, which runs as postgres.
id2=$("$agent" backup -c "$conf" --kind physical 2>"$T/err") || { cat "$T/err"; fail "backup as root"; }
[[ -z $(find "$T/state" ! -user postgres) ]] || { find "$T/state" ! -user postgres -ls; fail "root left files postgres cannot use"; }
seg=$(q "select pg_walfile_name(pg_current_wal_lsn())")
q "insert into ledger (id) values (200)"
q "select pg_switch_wal()" >/dev/null
wait_archived "$seg" || fail "archiving stopped after a backup run as root"
pass "backup $id2 as root; archiving goes on"

# --- the cluster rebuilt for the same service --------------------------------------------
# As after pg_upgrade or a rebuild from scratch: a new system identifier, and
# WAL that starts again at the same segment names.
pg_stop "$T/pg"
pg_start "$T/pg2" "wal_level = replica" "archive_mode = on" \
	"archive_command = '$agent wal-push -c $conf %p'"
ci="$PG_CONNINFO dbname=postgres"
sed -i "s#^conninfo = .*#conninfo = $ci#" "$conf"
new_sysid=$(q "select system_identifier from pg_control_system()")
[[ $new_sysid != "$sysid" ]] || fail "initdb gave the same system identifier"
q "create table after_rebuild (id int)"
nseg=$(q "select pg_walfile_name(pg_current_wal_lsn())")
q "select pg_switch_wal()" >/dev/null
for _ in $(seq 600); do
	(($(q "select failed_count from pg_stat_archiver") > 0)) && break
	sleep 0.1
done
(($(q "select failed_count from pg_stat_archiver") > 0)) || fail "the rebuilt cluster's WAL was not refused"
grep -q "remove $T/state/system_identifier" "$T/pg2/server.log" ||
	{ grep coffer "$T/pg2/server.log" | tail -3; fail "the refusal does not say how to accept a rebuilt cluster"; }
pass "the rebuilt cluster ($new_sysid) is refused until the operator says so"
rm "$T/state/system_identifier"
q "select pg_reload_conf()" >/dev/null
wait_archived "$nseg" || fail "the rebuilt cluster's $nseg was not archived"
[[ -f "$T/repo/services/billing/wal/$new_sysid/00000001/$nseg" && -f "$wal/00000001/$nseg" ]] ||
	fail "$nseg is not stored for both clusters"
cmp -s "$T/repo/services/billing/wal/$new_sysid/00000001/$nseg" "$wal/00000001/$nseg" &&
	fail "both clusters' $nseg are the same object"
pass "$nseg archived for the new cluster beside the old cluster's $nseg"
# The old cluster's newest backup ($id2), recovered to the end of its WAL:
# row 200 came after that backup, so it is there only if recovery replayed
# the old cluster's segments, not the new one's of the same names.
port3=$(_free_port)
mkdir -p "$T/r3/data" && chown -R postgres: "$T/r3"
_t_clusters+=("$T/r3")
"$agent" restore -c "$conf" --physical --backup "$id2" --pgdata "$T/r3/data" --port "$port3" --start \
	--tablespace-map "$T/ts1=$T/r3/ts1" \
	>"$T/restore3.out" 2>"$T/restore3.log" ||
	{ cat "$T/restore3.log"; tail -20 "$T/r3/data/coffer-recovery.log" 2>/dev/null; fail "restore of the old cluster's backup"; }
grep -q -- "--system-identifier $sysid" "$T/r3/data/postgresql.auto.conf" ||
	fail "restore_command does not name the backup's cluster"
r3="host=$T/pg/sock port=$port3 user=postgres dbname=postgres"
[[ $(psql_at "$r3" -c "select count(*) from ledger where id = 200") == 1 ]] ||
	fail "the old cluster's backup did not recover through its own WAL"
[[ $(psql_at "$r3" -c "select system_identifier from pg_control_system()") == "$sysid" ]] ||
	fail "the restored cluster is not the old one"
pg_stop "$T/r3"
id3=$(as_pg "$agent" backup -c "$conf" --kind physical 2>"$T/err") || { cat "$T/err"; fail "backup of the rebuilt cluster"; }
grep -q "\"system_identifier\":\"$new_sysid\"" "$T/repo/services/billing/backups/$id3/manifest.json" ||
	fail "backup $id3 does not name the new cluster"
pass "old cluster's backup $id2 restored through its own WAL (row 200 there); rebuilt cluster backed up as $id3"
