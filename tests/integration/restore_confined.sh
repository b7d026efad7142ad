#!/usr/bin/env bash
# Restores stay inside their target (issue 20, item 5). PostgreSQL runs as
# postgres; whoever can write its data directory, or the empty target while
# a restore runs, is treated as hostile. The restore runs as root:
# - a pg_tblspc link retargeted to a root-owned directory before the backup:
#   the backup refuses it, naming the link; a pg_tblspc entry pg_tablespace
#   does not list is reported and left out;
# - a normal root restore writes every file as postgres, places the
#   tablespace where --tablespace-map OID=DIR says, and links it;
# - a symbolic link planted in the target while the restore runs (the
#   directory "global" swapped for a link outside, at a point fixed by the
#   test-build fault hook COFFER_FAULT_RESTORE_PAUSE_AT): refused, nothing
#   written through it;
# - an entry that already exists in the target (planted at the same point):
#   refused as corruption; a non-empty target refused before anything;
# - a tablespace whose recorded location is not an empty directory of
#   postgres's: refused, the error names --tablespace-map.
# In every case nothing outside the target is created or chowned: the
# "outside" tree is listed with owners before and after.
source "$(dirname "$0")/lib.sh"
t_init restore_confined
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
completion_window = 2m
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$conf" >/dev/null || fail "init"
chown -R postgres: "$T/state" "$T/repo" "$T/billing.keys" "$T/agent.key" "$conf"
ci="$PG_CONNINFO dbname=postgres"
q() { psql_at "$ci" -c "$1"; }

# The tree nothing may touch: root's, with a postgres-owned corner.
O=$T/outside
mkdir -p "$O/evil" "$O/pgowned"
chown postgres: "$O/pgowned"
chmod 777 "$O" # anyone may create here: a root restore must still not
snap() { find "$O" -printf '%p %u %g %m\n' | sort; }
snap >"$T/outside.before"
outside_unchanged() {
	snap >"$T/outside.after"
	diff "$T/outside.before" "$T/outside.after" >&2 || fail "$1: something outside the target was created or chowned"
}

mkdir -p "$T/ts1" && chown postgres: "$T/ts1" && chmod 700 "$T/ts1"
q "create tablespace ts1 location '$T/ts1'"
q "create table in_ts (id int) tablespace ts1"
q "insert into in_ts select generate_series(1, 300)"
ts_oid=$(q "select oid from pg_tablespace where spcname = 'ts1'")
data=$(q "show data_directory")

# --- backup: a retargeted link refused, an unlisted entry reported ----------------------------
# A root-owned copy PostgreSQL can still use, so its own checkpoint goes on
# (the server follows the link too) and only the backup can tell.
q "checkpoint"
cp -a "$T/ts1/." "$O/evil/"
chown -R root: "$O/evil"
chmod -R a+rwX "$O/evil"
snap >"$T/outside.before"
as_pg ln -sfn "$O/evil" "$data/pg_tblspc/$ts_oid"
if as_pg "$agent" backup -c "$conf" --kind physical >/dev/null 2>"$T/b1.log"; then
	fail "a backup followed pg_tblspc/$ts_oid to root's $O/evil"
fi
grep -q "tablespace pg_tblspc/$ts_oid points at $O/evil" "$T/b1.log" || { cat "$T/b1.log"; fail "the refusal does not name the link"; }
as_pg ln -sfn "$T/ts1" "$data/pg_tblspc/$ts_oid"
as_pg ln -s "$O/pgowned" "$data/pg_tblspc/99999"
id=$(as_pg "$agent" backup -c "$conf" --kind physical 2>"$T/b2.log") || { cat "$T/b2.log"; fail "physical backup"; }
grep -q "pg_tablespace does not list.*pg_tblspc/99999" "$T/b2.log" || { cat "$T/b2.log"; fail "the unlisted pg_tblspc entry was not reported"; }
man=$T/repo/services/billing/backups/$id/manifest.json
if grep -q '"path":"pg_tblspc/99999' "$man"; then fail "the unlisted pg_tblspc entry was backed up"; fi
as_pg rm "$data/pg_tblspc/99999"
outside_unchanged "backup"
pass "backup refuses a pg_tblspc link retargeted to root's directory, reports and skips an entry pg_tablespace does not list"

# Targets live in a directory of postgres's: the restore, as postgres, may
# make a mapped tablespace directory there.
W=$T/w
mkdir -p "$W" && chown postgres: "$W"
restore() { "$agent" restore -c "$conf" --physical --backup "$id" "$@"; }
newdir() { mkdir -p "$1" && chown postgres: "$1" && chmod 700 "$1"; }

# --- the recorded location is not an empty directory of postgres's -----------------------------
newdir "$W/r0"
if restore --pgdata "$W/r0" 2>"$W/r0.err"; then fail "a restore over the live tablespace was allowed"; fi
grep -q -- "--tablespace-map $T/ts1=DIR" "$W/r0.err" || { cat "$W/r0.err"; fail "the tablespace refusal does not name --tablespace-map"; }
outside_unchanged "tablespace refusal"
pass "a tablespace's live location is refused; the error names --tablespace-map"

# --- a normal root restore ---------------------------------------------------------------------
newdir "$W/r"
restore --pgdata "$W/r" --tablespace-map "$ts_oid=$W/rts" >"$W/r.out" 2>"$W/r.err" || { cat "$W/r.err"; fail "root physical restore"; }
[[ -z $(find "$W/r" "$W/rts" ! -user postgres) ]] || fail "files not postgres's: $(find "$W/r" "$W/rts" ! -user postgres | head -3)"
[[ $(readlink "$W/r/pg_tblspc/$ts_oid") == "$W/rts" ]] || fail "the tablespace link is not $W/rts"
ls "$W/rts"/PG_*/ >/dev/null || fail "the tablespace's files are not in $W/rts"
[[ -f $W/r/recovery.signal ]] || fail "no recovery.signal"
outside_unchanged "root restore"
pass "root restore writes as postgres ($(find "$W/r" -type f | wc -l) files), tablespace mapped by oid to $W/rts"

# --- a symbolic link planted while the restore runs --------------------------------------------
# Runs the restore into $1 and stops its writer before global/pg_control;
# then runs $2 (as postgres: a writer of the target) and lets it go on.
paused_restore() {
	local dir=$1 plant=$2
	newdir "$dir"
	COFFER_FAULT_RESTORE_PAUSE_AT=global/pg_control restore --pgdata "$dir" \
		--tablespace-map "$ts_oid=$dir.ts" >/dev/null 2>"$dir.err" &
	local rpid=$! wpid=""
	for _ in $(seq 300); do
		wpid=$(sed -n 's/.*restore paused before global\/pg_control pid=\([0-9]*\).*/\1/p' "$dir.err")
		[[ -n $wpid ]] && break
		sleep 0.1
	done
	[[ -n $wpid ]] || { kill "$rpid"; cat "$dir.err"; fail "the fault hook did not pause the restore (a test build is needed)"; }
	for _ in $(seq 100); do [[ $(ps -o stat= -p "$wpid") == T* ]] && break; sleep 0.05; done
	as_pg bash -c "$plant"
	kill -CONT "$wpid"
	if wait "$rpid"; then return 1; fi
	return 0
}
paused_restore "$W/r1" "mv '$W/r1/global' '$W/r1/global.real' && ln -s '$O/pgowned' '$W/r1/global'" ||
	fail "the restore went on through a planted symbolic link"
grep -q "symbolic link" "$W/r1.err" || { cat "$W/r1.err"; fail "the refusal does not say symbolic link"; }
[[ -z $(ls -A "$O/pgowned") ]] || fail "the restore wrote through the link into $O/pgowned"
paused_restore "$W/r2" "mv '$W/r2/global' '$W/r2/global.real' && ln -s '$O/evil' '$W/r2/global'" ||
	fail "the restore went on through a link to root's directory"
outside_unchanged "planted symbolic link"
pass "a symbolic link planted in the target mid-restore is refused: $(grep -o 'global/pg_control: a symbolic link[^;]*' "$W/r1.err" | head -1)"

# --- an entry that already exists --------------------------------------------------------------
paused_restore "$W/r3" "echo hostile >'$W/r3/global/pg_control'" ||
	fail "the restore went on over an existing entry"
grep -q "already exists" "$W/r3.err" || { cat "$W/r3.err"; fail "the refusal does not say the entry exists"; }
grep -q "hostile" "$W/r3/global/pg_control" || fail "the planted file was overwritten"
newdir "$W/r4"
touch "$W/r4/stray"
if restore --pgdata "$W/r4" --tablespace-map "$ts_oid=$W/r4.ts" 2>"$W/r4.err"; then fail "a non-empty target was accepted"; fi
grep -q "is not empty" "$W/r4.err" || { cat "$W/r4.err"; fail "non-empty refusal"; }
[[ ! -e $W/r4.ts ]] || fail "the refused restore made its tablespace directory"
outside_unchanged "existing entry"
pass "an entry that already exists mid-restore is corruption; a non-empty target is refused before anything is written"

# --- root into a root-owned or missing target ---------------------------------------------------
mkdir -p "$T/rootdir"
if restore --pgdata "$T/rootdir" 2>"$T/rd.err"; then fail "a restore into root's directory was allowed"; fi
grep -q "belongs to root" "$T/rd.err" || { cat "$T/rd.err"; fail "root-owned target refusal"; }
if restore --pgdata "$T/missing" 2>"$T/rm.err"; then fail "a root restore into a missing directory was allowed"; fi
grep -q "must exist first" "$T/rm.err" || { cat "$T/rm.err"; fail "missing target refusal"; }
[[ -z $(ls -A "$T/rootdir") && ! -e $T/missing ]] || fail "a refused restore wrote something"
outside_unchanged "root-owned target"
pass "a root restore into a root-owned or missing directory is refused before anything is written"
