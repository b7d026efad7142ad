#!/usr/bin/env bash
# Logical backup and restore of one real database, side by side in one run:
#   coffer-agent backup                    (dump -> sha256 -> zstd -> seal -> sha256 -> repo)
#   pg_dump -Fc -Z0 > /dev/null            (the extraction floor)
#   pg_dump -Fc -Z0 | zstd -T2 -L          (the floor plus compression alone)
#   pg_dump -Fc --compress=9 > file        (what operators do by hand)
#   coffer-agent restore --jobs 2          (verify + pg_restore -j 2 + row counts)
#   pg_restore -j 2 from a plain local dump
# Prints a markdown table for docs/PERFORMANCE.md. Needs a Release build:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release && cmake --build build-rel -j2
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/backup_bench.sh [ORDERS_ROWS]
set -euo pipefail
: "${COFFER_BIN:?set COFFER_BIN to a Release build bin directory}"
rows=${1:-2000000}
source "$(dirname "$0")/../integration/lib.sh"
t_init bench
runstat=$COFFER_BIN/runstat
agent=$COFFER_BIN/coffer-agent

pg_start "$T/pg" "shared_buffers = 256MB" "max_wal_size = 4GB"
ci="$PG_CONNINFO dbname=bench"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database bench"
psql_at "$ci" <<SQL
create table customers (id bigint primary key, name text, email text, created_at timestamptz,
	balance numeric(14,2), prefs jsonb);
insert into customers select g, 'customer ' || g, 'c' || g || '@example.com',
	'2020-01-01'::timestamptz + g * interval '1 minute', (g % 100000) / 7.0,
	jsonb_build_object('tier', g % 5, 'newsletter', g % 2 = 0)
	from generate_series(1, 200000) g;
create table orders (id bigint primary key, customer_id bigint references customers,
	amount numeric(12,2), placed_at timestamptz, status text, note text);
insert into orders select g, 1 + g % 200000, (g % 10000) / 3.0,
	'2024-01-01'::timestamptz + g * interval '7 seconds',
	(array['new','paid','shipped','returned'])[1 + g % 4], md5(g::text) || ' ' || repeat('x', g % 40)
	from generate_series(1, ${rows}) g;
create index on orders (customer_id);
SQL
size=$(psql_at "$ci" -c "select pg_size_pretty(pg_database_size('bench'))")

mkdir -p "$T/state" "$T/repo"
cat >"$T/agent.conf" <<CONF
[agent]
name = bench-1
service = bench
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/bench.keys
[postgres]
conninfo = $ci
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/bench.keys" >/dev/null
"$agent" init -c "$T/agent.conf" >/dev/null

row() { # label, command [stored bytes]; prints a table row, leaves the wall time in $wall
	local stat
	sync
	stat=$("$runstat" "$2" 2>&1 >/dev/null | tail -1)
	wall=$(sed -E 's/wall_s=([^ ]+) .*/\1/' <<<"$stat")
	echo "| $1 | $(sed -E 's/wall_s=([^ ]+) cpu_s=([^ ]+) maxrss_mib=([^ ]+) status=([^ ]+)/\1 | \2 | \3 | \4/' <<<"$stat") | ${3:-} |"
}
median() { tr -s ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "database: ${rows} orders + 200k customers, $size on disk; $(nproc) CPUs"
echo
echo "| case | wall s | CPU s | peak RSS MiB | exit | stored bytes |"
echo "|---|---:|---:|---:|---:|---:|"
row '`pg_dump -Fc --compress=9 > file`' "$PG_BINDIR/pg_dump -Fc --compress=9 --dbname='$ci' > $T/z9.dump"
z9=$(stat -c %s "$T/z9.dump")
echo "| (size of the --compress=9 dump) | | | | | $z9 |"
# The floor and each zstd level alternate, COFFER_REPS times, so that load
# from elsewhere on the machine falls on all of them alike; the medians are
# compared at the end.
levels=${COFFER_LEVELS:-3 1}
reps=${COFFER_REPS:-3}
declare -A walls
for ((r = 1; r <= reps; r++)); do
	row '`pg_dump -Fc -Z0 > /dev/null` (floor)' "$PG_BINDIR/pg_dump -Fc -Z0 --dbname='$ci' > /dev/null"
	walls[floor]+="$wall "
	for level in $levels; do
		# What compression alone costs on top of the floor: the same dump piped
		# through the zstd tool, nothing hashed, encrypted or written.
		row "\`pg_dump -Fc -Z0 | zstd -T2 -$level > /dev/null\`" \
			"$PG_BINDIR/pg_dump -Fc -Z0 --dbname='$ci' | zstd -q -T2 -$level > /dev/null"
		walls[pipe$level]+="$wall "
	done
	for level in $levels; do
		mkdir -p "$T/repo-$level"
		sed -e "s|path = $T/repo|path = $T/repo-$level|" "$T/agent.conf" >"$T/agent-$level.conf"
		printf '[backup]\ncompress_level = %s\n' "$level" >>"$T/agent-$level.conf"
		row "\`coffer-agent backup\` (zstd -$level, 2 workers, sealed, signed)" \
			"$agent backup -c $T/agent-$level.conf"
		walls[$level]+="$wall "
	done
done
echo
floor=$(median <<<"${walls[floor]}")
for level in $levels; do
	m=$(median <<<"${walls[$level]}")
	stored=$(find "$T/repo-$level" -name data -printf '%s\n' | head -1)
	p=$(median <<<"${walls[pipe$level]}")
	echo "- zstd -$level: median ${m} s vs floor ${floor} s = $(awk -v a="$m" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')x" \
		"(\`pg_dump | zstd -$level\` alone: ${p} s = $(awk -v a="$p" -v b="$floor" 'BEGIN {printf "%.2f", a / b}')x);" \
		"stored $stored bytes vs --compress=9 $z9 ($(awk -v a="$stored" -v b="$z9" 'BEGIN {printf "%.1f", 100 * a / b}') %)"
done
echo
echo "| case | wall s | CPU s | peak RSS MiB | exit | stored bytes |"
echo "|---|---:|---:|---:|---:|---:|"
"$PG_BINDIR/pg_dump" -Fc -Z0 --dbname="$ci" >"$T/plain.dump"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database r1"
row '`pg_restore -j 2` from a local plain dump' "$PG_BINDIR/pg_restore -j 2 --no-owner -d '$PG_CONNINFO dbname=r1' $T/plain.dump"
row '`coffer-agent restore --jobs 2` (verify, restore, row counts)' "$agent restore -c $T/agent-${levels%% *}.conf --backup latest --target-db r2 --jobs 2"
