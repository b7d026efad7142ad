#!/usr/bin/env bash
# Physical backup and restore of one real cluster, side by side in one run,
# and the archive lag of coffer-agent wal-push under pgbench load:
#   coffer-agent backup --kind physical    (sealed, signed, zstd -3, WAL confirmed)
#   pgbackrest backup --type=full          (compress-type=zst, process-max=2, aes-256-cbc)
#   pg_basebackup -Ft -Z client-zstd:3     (the tool that ships with PostgreSQL)
#   and each one's restore into an empty directory (no recovery run: the
#   same work for all three is PostgreSQL's own).
# Archive lag: for every segment completed during a pgbench run, the time
# from PostgreSQL marking it ready (the mtime of its archive_status file,
# which the .ready -> .done rename keeps) to its object being durable in the
# repository (the object's mtime; the posix driver fsyncs, then renames).
# Fairness: on a VM whose host backs guest memory lazily (Firecracker here),
# the first program to fill the page cache with gigabytes pays for the host
# faulting that memory in (a restore measured 11 s cold, 4 s warm). So the
# page cache is warmed first with a neutral file of twice the cluster's size,
# and Coffer and pgBackRest then alternate which goes first, ROUNDS times
# each; every round is printed, and the medians.
# Needs a Release build and pgBackRest (apt-get install pgbackrest):
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/physical_bench.sh [PGBENCH_SCALE] [LOAD_SECONDS] [ROUNDS]
set -euo pipefail
: "${COFFER_BIN:?set COFFER_BIN to a Release build bin directory}"
scale=${1:-150}
load_s=${2:-60}
rounds=${3:-3}
command -v pgbackrest >/dev/null || { echo "install pgbackrest first" >&2; exit 1; }
source "$(dirname "$0")/../integration/lib.sh"
t_init physbench
runstat=$COFFER_BIN/runstat
mkdir -p "$T/bin"
cp "$COFFER_BIN/coffer-agent" "$T/bin/coffer-agent"
chmod 755 "$T/bin" "$T/bin/coffer-agent"
agent=$T/bin/coffer-agent
conf=$T/agent.conf
as_pg() { runuser -u postgres -- "$@"; }

mkdir -p "$T/state" "$T/repo"
pg_start "$T/pg" "shared_buffers = 256MB" "max_wal_size = 16GB" "checkpoint_timeout = 1h" \
	"wal_level = replica" "archive_mode = on" "archive_command = '$agent wal-push -c $conf %p'"
ci="$PG_CONNINFO dbname=postgres"
cat >"$conf" <<CONF
[agent]
name = bench-db-1
service = bench
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/bench.keys
[postgres]
conninfo = $ci
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
completion_window = 30m
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/bench.keys" --id k1 >/dev/null
"$agent" init -c "$conf" >/dev/null
chown -R postgres: "$T/state" "$T/repo" "$T/bench.keys" "$T/agent.key" "$conf"

mkdir -p "$T/pgbr" "$T/pgbr-log" "$T/pgbr-lock"
cat >"$T/pgbr.conf" <<CONF
[global]
repo1-path=$T/pgbr
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench-passphrase-0123456789abcdef
compress-type=zst
compress-level=3
process-max=2
start-fast=y
archive-check=n
log-path=$T/pgbr-log
lock-path=$T/pgbr-lock
log-level-console=warn
[bench]
pg1-path=$T/pg/data
pg1-socket-path=$PG_HOST
pg1-port=$PG_PORT
CONF
chown -R postgres: "$T/pgbr" "$T/pgbr-log" "$T/pgbr-lock" "$T/pgbr.conf"
pgbr() { as_pg pgbackrest --config="$T/pgbr.conf" --stanza=bench "$@"; }

as_pg "$PG_BINDIR/pgbench" -h "$PG_HOST" -p "$PG_PORT" -U postgres -i -s "$scale" -q postgres \
	>"$T/init.log" 2>&1 || { tail -3 "$T/init.log"; exit 1; }
psql_at "$ci" -c "checkpoint" >/dev/null
size=$(psql_at "$ci" -c "select pg_size_pretty(sum(pg_database_size(datname))) from pg_database")
pgbr stanza-create >/dev/null

stat_of() { # command; prints "wall cpu maxrss status"
	sync
	"$runstat" "$1" 2>&1 >/dev/null | tail -1 |
		sed -E 's/wall_s=([^ ]+) cpu_s=([^ ]+) maxrss_mib=([^ ]+) status=([^ ]+)/\1 \2 \3 \4/'
}
fresh() { rm -rf "$T/$1"; mkdir -p "$T/$1" && chown postgres: "$T/$1" && chmod 700 "$T/$1"; }
coffer_backup="runuser -u postgres -- $agent backup -c $conf --kind physical"
pgbr_backup="runuser -u postgres -- pgbackrest --config=$T/pgbr.conf --stanza=bench backup --type=full"
coffer_restore="runuser -u postgres -- $agent restore -c $conf --physical --pgdata $T/rx/data"
pgbr_restore="runuser -u postgres -- pgbackrest --config=$T/pgbr.conf --stanza=bench restore --pg1-path=$T/rx/data"

# Neutral warm-up: write and delete a file twice the cluster's size.
data_mb=$(du -sm "$T/pg/data" | cut -f1)
dd if=/dev/zero of="$T/warm" bs=1M count=$((2 * data_mb)) status=none
rm -f "$T/warm"

echo "cluster: pgbench scale $scale, $size; $(nproc) CPUs; pgBackRest $(pgbackrest version | cut -d' ' -f2); $rounds rounds, page cache warmed"
echo
echo "| round | case | wall s | CPU s | peak RSS MiB | exit |"
echo "|---:|---|---:|---:|---:|---:|"
declare -A walls
one() { # round, label, key, command [, dir to empty first]
	[[ -n ${5:-} ]] && fresh "$5"
	local st
	st=$(stat_of "$4")
	local s_wall s_cpu s_rss s_exit
	read -r s_wall s_cpu s_rss s_exit <<<"$st"
	echo "| $1 | $2 | $s_wall | $s_cpu | $s_rss | $s_exit |"
	walls[$3]+="$s_wall "
	[[ -n ${5:-} ]] && rm -rf "${T:?}/$5"
	return 0
}
for ((r = 1; r <= rounds; r++)); do
	if ((r % 2)); then
		one "$r" "coffer backup" cb "$coffer_backup"
		one "$r" "pgBackRest backup" pb "$pgbr_backup"
		one "$r" "coffer restore" cr "$coffer_restore" rx
		one "$r" "pgBackRest restore" pr "$pgbr_restore" rx
	else
		one "$r" "pgBackRest backup" pb "$pgbr_backup"
		one "$r" "coffer backup" cb "$coffer_backup"
		one "$r" "pgBackRest restore" pr "$pgbr_restore" rx
		one "$r" "coffer restore" cr "$coffer_restore" rx
	fi
done
mkdir -p "$T/bb" && chown postgres: "$T/bb"
one 1 "pg_basebackup -Ft -Z client-zstd:3 -X fetch" bb \
	"runuser -u postgres -- $PG_BINDIR/pg_basebackup -h $PG_HOST -p $PG_PORT -U postgres -D $T/bb/tar -Ft -Z client-zstd:3 -X fetch -c fast"
one 1 "tar -I zstd -xf base.tar.zst (pg_basebackup's)" bt \
	"mkdir -p $T/rx/data && tar -I zstd -xf $T/bb/tar/base.tar.zst -C $T/rx/data" rx
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
one_backup=$(ls -t "$T/repo/services/bench/backups" | head -1)
coffer_bytes=$(du -sb "$T/repo/services/bench/backups/$one_backup" | cut -f1)
pgbr_bytes=$(du -sb "$(ls -td "$T"/pgbr/backup/bench/*F | head -1)" | cut -f1)
echo
echo "medians over $rounds rounds: backup coffer $(median "${walls[cb]}") s, pgBackRest $(median "${walls[pb]}") s;" \
	"restore coffer $(median "${walls[cr]}") s, pgBackRest $(median "${walls[pr]}") s;" \
	"pg_basebackup $(median "${walls[bb]}") s, tar -x $(median "${walls[bt]}") s"
echo "stored bytes of one backup: coffer $coffer_bytes, pgBackRest $pgbr_bytes, pg_basebackup $(du -sb "$T/bb/tar" | cut -f1)"
rm -rf "$T/bb"

# --- archive lag under load -----------------------------------------------------------------
before=$(psql_at "$ci" -c "select pg_walfile_name(pg_current_wal_lsn())")
as_pg "$PG_BINDIR/pgbench" -h "$PG_HOST" -p "$PG_PORT" -U postgres -n -c 2 -j 2 -T "$load_s" postgres \
	>"$T/load.log" 2>&1
after=$(psql_at "$ci" -c "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 600); do
	[[ $(psql_at "$ci" -c "select coalesce(last_archived_wal, '') >= '$after' from pg_stat_archiver") == t ]] && break
	sleep 0.5
done
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$T/load.log" | head -1)
lags=$T/lags
: >"$lags"
for done_file in "$T/pg/data/pg_wal/archive_status/"*.done; do
	seg=$(basename "$done_file" .done)
	[[ $seg =~ ^[0-9A-F]{24}$ ]] || continue
	[[ $seg > $before && $seg < $after || $seg == "$after" ]] || continue
	obj=$(find "$T/repo/services/bench/wal" -name "$seg" | head -1)
	[[ -n $obj ]] || continue
	awk -v a="$(stat -c %.6Y "$done_file")" -v b="$(stat -c %.6Y "$obj")" 'BEGIN {printf "%.3f\n", b - a}' >>"$lags"
done
n=$(wc -l <"$lags")
pct() { sort -g "$lags" | awk -v p="$1" '{v[NR]=$1} END {i=int(NR*p/100); if (i < NR*p/100) i++; if (i < 1) i = 1; print v[i]}'; }
echo
echo "archive lag under pgbench (-c 2, ${load_s} s, $tps tps): $n segments, ready -> durable in the repository:" \
	"p50 $(pct 50) s, p99 $(pct 99) s, max $(sort -g "$lags" | tail -1) s"
