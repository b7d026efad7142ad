#!/usr/bin/env bash
# The integrity sweep on large objects (coordinator/drill/integrity.c): wall time and
# peak memory of one sweep over a completed backup whose data object is
# SIZE_MB MiB of random bytes in a posix repository, for each SIZE_MB given
# (default 1024 3072). Peak memory must not grow with the object.
#   COFFER_BIN=$PWD/build-rel/bin tests/bench/sweep_bench.sh [SIZE_MB...]
# Needs a catalog schema with the drills migration. See docs/PERFORMANCE.md.
source "$(dirname "$0")/../integration/lib.sh"
t_init sweep_bench
coord=$COFFER_BIN/coffer-coordinator
drv=$COFFER_BIN/drills_itest
run=$COFFER_BIN/runstat
[[ -x $coord && -x $drv && -x $run ]] || fail "build coffer-coordinator, drills_itest and runstat first"
pg_start "$T/pg"
base="host=$PG_HOST port=$PG_PORT user=postgres"
psql_at "$base dbname=postgres" -c "CREATE DATABASE coffer"
ci="$base dbname=coffer"
mkdir -p "$T/state"
cat >"$T/c.conf" <<EOC
[coordinator]
listen = tcp://127.0.0.1:7443
catalog = $ci
audit_key = $T/audit.key
state_dir = $T/state
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = bench
schedule = 0 2 * * *
retention.daily = 7
EOC
"$coord" audit-keygen --out "$T/audit.key" >/dev/null
"$coord" migrate -c "$T/c.conf" >/dev/null 2>&1 || fail "migrate"
psql_at "$ci" -c "insert into services (name, owner) values ('billing', 'bench')"
sizes=("$@")
((${#sizes[@]} > 0)) || sizes=(1024 3072)
echo "| object MiB | objects | seconds | MiB/s | peak RSS MiB |"
echo "|---:|---:|---:|---:|---:|"
for mb in "${sizes[@]}"; do
	id=big-$mb
	d=$T/repo/services/billing/backups/$id
	mkdir -p "$d"
	head -c $((mb * 1024 * 1024)) /dev/urandom >"$d/data"
	echo '{"bench":1}' >"$d/manifest.json"
	sha=$(sha256sum "$d/data" | cut -d' ' -f1)
	msha=$(sha256sum "$d/manifest.json" | cut -d' ' -f1)
	psql_at "$ci" -c "update backups set status = 'deleted', deleted_at = now(), delete_after = now(), delete_policy_version = 0, delete_reason = 'bench', pending_since = now() where status = 'completed'"
	psql_at "$ci" -c "insert into backups (id, service, kind, status, started_at, finished_at, stored_bytes, stored_sha256, key_id, manifest) values ('$id', 'billing', 'logical', 'completed', now(), now(), $(stat -c %s "$d/data"), decode('$sha', 'hex'), 'k', '{\"manifest_sha256\": \"$msha\"}')"
	"$run" "$drv sweep $T/c.conf >$T/out" 2>"$T/stat" || fail "sweep: $(cat "$T/out" "$T/stat")"
	secs=$(sed -n 's/.*seconds=\([0-9.]*\).*/\1/p' "$T/out")
	objs=$(sed -n 's/^objects=\([0-9]*\) failed=0.*/\1/p' "$T/out")
	[[ -n $objs ]] || fail "the sweep found a problem: $(cat "$T/out")"
	rss=$(sed -n 's/.*maxrss_mib=\([0-9.]*\).*/\1/p' "$T/stat")
	echo "| $mb | $objs | $secs | $(awk -v m="$mb" -v s="$secs" 'BEGIN { printf "%.0f", m / s }') | $rss |"
	rm -f "$d/data"
done
