#!/usr/bin/env bash
# The daemon: takes the scheduled backup at its slot without being asked,
# and on SIGTERM during a backup stops pg_dump, records the backup as
# failed, publishes nothing and exits cleanly. The schedule fires every
# minute, so this test waits up to two slots.
source "$(dirname "$0")/lib.sh"
t_init agent-daemon
agent=$COFFER_BIN/coffer-agent

pg_start "$T/pg"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database svc"
ci="$PG_CONNINFO dbname=svc"
psql_at "$ci" -c "create table t (id int); insert into t select generate_series(1, 1000)"
mkdir -p "$T/state" "$T/repo"
cat >"$T/agent.conf" <<CONF
[agent]
name = svc-1
service = svc
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/svc.keys
[postgres]
conninfo = $ci
bin_dir = $PG_BINDIR
[schedule]
logical = * * * * *
completion_window = 10m
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/svc.keys" >/dev/null
"$agent" init -c "$T/agent.conf" >/dev/null

wait_log() { # pattern, seconds
	for _ in $(seq "$(($2 * 5))"); do
		grep -q "$1" "$T/daemon.log" && return 0
		sleep 0.2
	done
	return 1
}

"$agent" run -c "$T/agent.conf" 2>"$T/daemon.log" &
daemon=$!
sleep 0.5
assert_no_core "$daemon" "coffer-agent run"
wait_log 'msg="backup completed"' 75 || { cat "$T/daemon.log" >&2; fail "no scheduled backup within a slot"; }
grep -q "trigger\|scheduled backup due" "$T/daemon.log" || fail "backup not attributed to the schedule"
[[ $(find "$T/repo" -name manifest.json | wc -l) == 1 ]] || fail "scheduled backup not published"
pass "scheduled backup taken at its slot"

# Hold a lock pg_dump must wait for, so the next slot's backup is in flight
# when the daemon is told to stop.
psql_at "$ci" -c "begin; lock table t in access exclusive mode; select pg_sleep(120); commit;" >/dev/null 2>&1 &
locker=$!
before=$(grep -c 'msg="backup started"' "$T/daemon.log")
for _ in $(seq 375); do
	[[ $(grep -c 'msg="backup started"' "$T/daemon.log") -gt $before ]] && break
	sleep 0.2
done
[[ $(grep -c 'msg="backup started"' "$T/daemon.log") -gt $before ]] || fail "second slot never started"
sleep 1
kill -TERM "$daemon"
rc=0
for _ in $(seq 100); do
	kill -0 "$daemon" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$daemon" 2>/dev/null && fail "daemon still running 10 s after SIGTERM"
wait "$daemon" || rc=$?
[[ $rc == 0 ]] || fail "daemon exited with $rc after SIGTERM"
kill "$locker" 2>/dev/null || true
psql_at "$PG_CONNINFO dbname=postgres" -c "select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep%' and pid <> pg_backend_pid()" >/dev/null
wait "$locker" 2>/dev/null || true
[[ $(find "$T/repo" -name manifest.json | wc -l) == 1 ]] || fail "the cancelled backup was published"
"$agent" events -c "$T/agent.conf" --output json | tail -1 | grep '"backup.failed"' | grep -qi cancel ||
	fail "no backup.failed event saying it was cancelled: $("$agent" events -c "$T/agent.conf" | tail -2)"
grep -q 'msg="agent stopped"' "$T/daemon.log" || fail "daemon did not log its stop"
pass "SIGTERM during a backup: recorded as failed, nothing published, clean exit"
