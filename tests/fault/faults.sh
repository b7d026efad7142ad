#!/usr/bin/env bash
# The fault-injection suite: real faults against a running fleet, and the
# invariants that must hold through all of them.
#
#   tests/fault/faults.sh [SECONDS]      (or COFFER_FAULT_SECONDS;
#                                         COFFER_FAULTS="killed disk" for some)
#
# Runs every fault once, then keeps cycling through them until SECONDS have
# passed (0, the default and what CI runs: one round). The fleet is real: a
# catalog on PostgreSQL, `coffer-coordinator run` over mutual TLS, one
# `coffer-agent run` per service with its own database, and the PagerDuty
# receiver (tests/harness/receiver.c) that writes down every page.
#
# Faults (each a real one: no fault hook is needed so far):
#   catalog      the catalog's PostgreSQL stopped (-m immediate), started again
#   coordinator  the coordinator killed -9 while agents talk to it, restarted
#   backup       a service's database refuses connections; a backup is asked
#                for and fails; connections allowed again, a backup succeeds
#   agent        a service's agent stopped (SIGSTOP), continued (SIGCONT)
#   killed       a backup in flight killed -9 with its agent (pg_dump held
#                by a lock so the kill lands mid-dump), the agent restarted
#   disk         the agent's state directory (a real 4 MiB tmpfs) filled up,
#                then freed
#   skew         a service's agent restarted with its clock a day ahead
#                (libfaketime), backing up on time, then on the right clock
#
# Invariants, checked per fault and at the end:
#   - every failure is paged within its bound (the bound is printed);
#   - no page resolves before its recovery: the resolve arrives after the
#     recovery was made, never while the fault still holds;
#   - no false page: every trigger the receiver saw belongs to a fault the
#     suite injected;
#   - nothing lost or doubled: each agent's outbox drains, and the catalog
#     holds each of its event sequence numbers exactly once, with no gap;
#   - no space left behind: after the agents settle, no repository
#     temporary and no backup still `running` remains;
#   - the audit chain verifies.
# Prints one line per fault with its fault-to-page and recovery-to-resolve
# times, and a summary table at the end (docs/OPERATIONS.md quotes it).
source "$(dirname "$0")/../integration/lib.sh"
t_init faults
agent=$COFFER_BIN/coffer-agent
cli=$COFFER_BIN/coffer
duration=${1:-${COFFER_FAULT_SECONDS:-0}}
[[ $duration =~ ^[0-9]+$ ]] || fail "usage: faults.sh [SECONDS] (got '$duration')"
bg=()
agents=()
cleanup_bg() {
	local p
	for p in "${agents[@]}" "${bg[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -TERM "$p" 2>/dev/null || true; done
	# The agent must be gone before its state directory can be unmounted
	# (and a busy mount would fail the cleanup's rm).
	for p in "${agents[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n ${tmpfs:-} ]]; then umount "$tmpfs" 2>/dev/null || umount -l "$tmpfs" 2>/dev/null || true; fi
	t_cleanup
}
trap cleanup_bg EXIT

TICK=2          # maintenance_interval
CATALOG_BOUND=5 # catalog_unreachable_after
QUIET=60        # agent_quiet (its minimum)
SKEW_WINDOW=60  # coordinator/intake/skew.c's window
SLACK=20        # what a page may take beyond its bound: ticks, retries, delivery

# rx_count KEY ACTION: how many ACTIONs for dedup KEY the receiver has seen.
rx_count() { grep -F "\"dedup_key\":\"$1\"" "$T/rx.log" 2>/dev/null | grep -c "\"event_action\":\"$2\"" || true; }
rx_more() { (($(rx_count "$1" "$2") > $3)); }

expected_keys=()
timings=()
# expect_page NAME KEY BOUND_S T_FAULT: waits for the trigger; prints and
# returns the time it took.
paged_ms=0
expect_page() {
	local name=$1 key=$2 bound=$3 t0=$4 before=$5
	expected_keys+=("$key")
	wait_for $((bound + SLACK)) rx_more "$key" trigger "$before" ||
		fail "$name: no page for $key within $((bound + SLACK)) s: $(tail -3 "$T/coord.log")"
	paged_ms=$(($(now_ms) - t0))
}
resolved_ms=0
expect_resolve() {
	local name=$1 key=$2 t0=$3 before=$4
	wait_for 60 rx_more "$key" resolve "$before" ||
		fail "$name: $key not resolved within 60 s of the recovery: $(tail -3 "$T/coord.log")"
	resolved_ms=$(($(now_ms) - t0))
}
# still_open KEY RESOLVES: no resolve arrived since the trigger.
still_open() {
	(($(rx_count "$1" resolve) == $2)) || fail "$1 resolved while its fault still held: $(grep -F "$1" "$T/rx.log" | tail -2)"
}
record() { # fault key bound page_ms resolve_ms
	timings+=("$(printf '%-12s %-44s %6s s %8s ms %8s ms' "$@")")
	pass "$1: $2 paged after $4 ms (bound $3 s), resolved $5 ms after the recovery"
}

# --- the fleet -------------------------------------------------------------------------
catalog_start "$T/pg" billing orders
for svc in billing orders; do
	psql_at "$base dbname=$svc" -c "create table t (id int); insert into t select generate_series(1, 5000)"
done
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1 orders-db-1
mkdir -p "$T/repo"
cport=$(_free_port)
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = ${TICK}s" "metrics_listen = 127.0.0.1:0" "metrics_cache = 0s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = ro0123456789abcdef0123456789abcd
catalog_unreachable_after = ${CATALOG_BOUND}s
agent_quiet = ${QUIET}s
agent_state_free_min = 1MiB
[repository.primary]
type = posix
path = $T/repo
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
[service.orders]
owner = team-orders
schedule = 0 2 * * *
retention.daily = 7
CONF
# A fixed agent port: the agents must find the coordinator again after it
# is killed and restarted.
sed -i "s|^listen = tls+tcp://127.0.0.1:0|listen = tls+tcp://127.0.0.1:$cport|" "$T/coordinator.conf"
fleet_coordinator_up "$T/coordinator.conf" 3600
# billing's state directory is a small real tmpfs, for the full-disk fault.
tmpfs=
mkdir -p "$T/billing-state"
if mount -t tmpfs -o size=4m tmpfs "$T/billing-state" 2>"$T/mount.err"; then
	tmpfs=$T/billing-state
else
	note "cannot mount a tmpfs ($(cat "$T/mount.err")): the disk fault is skipped"
fi
start_agent() { # SERVICE [OFFSET]: (re)starts its daemon, its clock OFFSET
	local i=0       # from ours when given (libfaketime); its pid in agents[0|1]
	[[ $1 == orders ]] && i=1
	if [[ -n ${2:-} ]]; then
		# ASan binaries refuse an LD_PRELOAD ahead of them unless told.
		# The monotonic clock is shifted too: libfaketime moves every
		# pthread_cond_timedwait deadline by the offset, so with a real
		# monotonic clock the agent's timed waits would return at once
		# and it would spin (it did: a false requests_refused page).
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
			FAKETIME_NO_CACHE=1 FAKETIME="$2" \
			LD_PRELOAD=$libfaketime "$agent" run -c "$T/$1.conf" 2>>"$T/$1-agent.log" &
	else
		"$agent" run -c "$T/$1.conf" 2>>"$T/$1-agent.log" &
	fi
	agents[i]=$!
}
stop_agent() { # SERVICE
	local pid
	pid=$(agent_pid "$1")
	kill -TERM "$pid"
	wait "$pid" || fail "$1's agent did not stop cleanly: $(tail -2 "$T/$1-agent.log")"
}
libfaketime=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[[ -r $libfaketime ]] || note "no libfaketime (deploy/install-deps.sh installs it): the skew fault is skipped"
for svc in billing orders; do
	fleet_agent_enroll "$svc" 1s 2s
	start_agent "$svc"
done
agent_pid() { [[ $1 == billing ]] && echo "${agents[0]}" || echo "${agents[1]}"; }
heard() { [[ $(psql_at "$ci" -c "select count(*) from agents where heartbeat_at > now() - interval '3 seconds'") == 2 ]]; }
wait_for 30 heard || fail "the agents' heartbeats do not arrive: $(tail -3 "$T/billing-agent.log")"
# One good backup each, so later checks have a baseline.
for svc in billing orders; do
	"$cli" backup run --service "$svc" >/dev/null || fail "backup run $svc"
done
done_backups() { [[ $(psql_at "$ci" -c "select count(*) from backups where status = 'completed'") -ge 2 ]]; }
wait_for 60 done_backups || fail "the first backups did not complete: $(psql_at "$ci" -c "select service, status, failure_reason from backups")"
pass "fleet up: catalog, coordinator (agents on port $cport), billing-db-1 and orders-db-1 running, one backup each"

# --- faults ----------------------------------------------------------------------------
fault_catalog() {
	local key=coffer/_coordinator/catalog_unreachable t0 n r
	n=$(rx_count $key trigger) r=$(rx_count $key resolve)
	t0=$(now_ms)
	runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$T/pg/data" -m immediate -w stop >/dev/null ||
		fail "catalog: cannot stop the catalog"
	expect_page catalog $key $CATALOG_BOUND "$t0" "$n"
	local page=$paged_ms
	((page >= CATALOG_BOUND * 1000)) || fail "catalog: paged after $page ms, before its ${CATALOG_BOUND}s bound"
	sleep 2
	still_open $key "$r"
	pg_restart "$T/pg"
	t0=$(now_ms)
	expect_resolve catalog $key "$t0" "$r"
	record catalog $key $CATALOG_BOUND "$page" "$resolved_ms"
}

fault_coordinator() {
	local pid t0
	pid=$(pgrep -f "coffer-coordinator run -c $T/coordinator.conf" | grep -vx "$cpid" | head -1)
	[[ -n $pid ]] || fail "coordinator: cannot find its pid"
	# Events in flight: a backup asked for just before the kill.
	"$cli" backup run --service billing >/dev/null || fail "coordinator: backup run"
	sleep 0.5
	t0=$(now_ms)
	kill -9 "$pid"
	wait "$cpid" 2>/dev/null || true
	sleep 3 # agents retry and queue meanwhile
	mv "$T/coord.log" "$T/coord.log.$t0"
	coord_start "$T/coordinator.conf" 3600
	[[ $port == "$cport" ]] || fail "coordinator: restarted on port $port, not $cport"
	operator_conf alice
	wait_for 30 heard || fail "coordinator: agents did not come back after the restart"
	pass "coordinator: killed -9 and restarted; both agents heard again $(($(now_ms) - t0)) ms after the kill"
	timings+=("$(printf '%-12s %-44s %6s   %8s    %8s' coordinator '(no page expected; nothing lost)' - - -)")
}

fault_backup() {
	local key=coffer/orders/backup_failed t0 n r page
	n=$(rx_count $key trigger) r=$(rx_count $key resolve)
	psql_at "$base dbname=postgres" -c "alter database orders with allow_connections false" >/dev/null
	t0=$(now_ms)
	"$cli" backup run --service orders >/dev/null || fail "backup: backup run"
	expect_page backup $key $((TICK * 2)) "$t0" "$n"
	page=$paged_ms
	sleep $((TICK * 2))
	still_open $key "$r"
	psql_at "$base dbname=postgres" -c "alter database orders with allow_connections true" >/dev/null
	t0=$(now_ms)
	"$cli" backup run --service orders >/dev/null || fail "backup: backup run after the recovery"
	expect_resolve backup $key "$t0" "$r"
	# The resolve must follow the success, not a bookkeeping change.
	local ok
	ok=$(psql_at "$ci" -c "select count(*) from backups where service = 'orders' and status = 'completed'
		and received_at > now() - interval '70 seconds'")
	((ok >= 1)) || fail "backup: resolved without a completed backup"
	record backup $key $((TICK * 2)) "$page" "$resolved_ms"
}

fault_agent() {
	local key=coffer/orders/agent_quiet t0 n r page pid
	pid=$(agent_pid orders)
	n=$(rx_count $key trigger) r=$(rx_count $key resolve)
	kill -STOP "$pid"
	t0=$(now_ms)
	expect_page agent $key $QUIET "$t0" "$n"
	page=$paged_ms
	still_open $key "$r"
	kill -CONT "$pid"
	t0=$(now_ms)
	expect_resolve agent $key "$t0" "$r"
	record agent $key $QUIET "$page" "$resolved_ms"
}

fault_killed() {
	local key=coffer/orders/backup_failed t0 n r page pid id
	n=$(rx_count $key trigger) r=$(rx_count $key resolve)
	# A lock pg_dump must wait for: the kill lands while it dumps.
	psql_at "$base dbname=orders" -c "begin; lock table t in access exclusive mode; select pg_sleep(60); commit;" \
		>/dev/null 2>&1 &
	local locker=$!
	sleep 0.5
	"$cli" backup run --service orders >/dev/null || fail "killed: backup run"
	in_dump() { grep -qs " dump$" "$T/orders-state/backups-begun/"* && [[ -n $(find "$T/repo/services/orders" -name '.data.*.tmp') ]]; }
	wait_for 30 in_dump || fail "killed: the backup never reached its dump: $(tail -3 "$T/orders-agent.log")"
	id=$(grep -l " dump$" "$T/orders-state/backups-begun/"* | head -1 | xargs basename)
	pid=$(agent_pid orders)
	t0=$(now_ms)
	pkill -9 -P "$pid" 2>/dev/null || true # pg_dump with it, as a host crash would
	kill -9 "$pid"
	wait "$pid" 2>/dev/null || true
	psql_at "$base dbname=postgres" -c "select pg_terminate_backend(pid) from pg_stat_activity
		where datname = 'orders' and application_name = 'pg_dump'" >/dev/null
	start_agent orders
	# The restarted agent settles it (failed, with the stage) and is given
	# the unfinished command again, whose backup waits on the same lock: the
	# failure stands until the lock goes.
	expect_page killed $key $((TICK * 2)) "$t0" "$n"
	page=$paged_ms
	# (Retention may already have marked it for deletion: failed backups go.)
	[[ $(psql_at "$ci" -c "select finished_at is not null and failure_reason like 'interrupted at stage dump%'
		from backups where id = '$id'") == t ]] ||
		fail "killed: backup $id not settled as interrupted: $(psql_at "$ci" -c "select status, failure_reason from backups where id = '$id'")"
	[[ -z $(find "$T/repo/services/orders/backups/$id" -name '.*.tmp') ]] ||
		fail "killed: temporaries left: $(find "$T/repo/services/orders/backups/$id" -name '.*.tmp')"
	sleep $((TICK * 2))
	still_open $key "$r"
	t0=$(now_ms)
	kill "$locker" 2>/dev/null || true
	psql_at "$base dbname=postgres" -c "select pg_terminate_backend(pid) from pg_stat_activity
		where datname = 'orders' and query like '%pg_sleep(60)%' and pid <> pg_backend_pid()" >/dev/null
	wait "$locker" 2>/dev/null || true
	expect_resolve killed $key "$t0" "$r"
	record killed $key $((TICK * 2)) "$page" "$resolved_ms"
}

fault_disk() {
	[[ -n $tmpfs ]] || return 0
	local key=coffer/billing/agent_disk_full/billing-db-1 t0 n r page
	n=$(rx_count $key trigger) r=$(rx_count $key resolve)
	t0=$(now_ms)
	dd if=/dev/zero of="$tmpfs/fill" bs=64k 2>/dev/null || true
	expect_page disk $key $((TICK * 2)) "$t0" "$n"
	page=$paged_ms
	heard || fail "disk: heartbeats stopped with the state directory full"
	sleep $((TICK * 2))
	still_open $key "$r"
	rm -f "$tmpfs/fill"
	t0=$(now_ms)
	expect_resolve disk $key "$t0" "$r"
	record disk $key $((TICK * 2)) "$page" "$resolved_ms"
}

fault_skew() {
	[[ -r $libfaketime ]] || return 0
	local key=coffer/orders/agent_clock_skew t0 n r page before
	n=$(rx_count $key trigger) r=$(rx_count $key resolve)
	stop_agent orders
	t0=$(now_ms)
	start_agent orders +1d
	# The estimate is the smallest sample of a 60 s window
	# (coordinator/intake/skew.c): a jump shows within the window.
	expect_page skew $key $((SKEW_WINDOW + TICK * 2)) "$t0" "$n"
	page=$paged_ms
	# Backing up on time with a clock a day ahead is no failure and no
	# missed backup (the end's false-page check holds that), and the
	# freshness metric is not in the future.
	before=$(psql_at "$ci" -c "select count(*) from backups where service = 'orders' and status = 'completed'")
	"$cli" backup run --service orders >/dev/null || fail "skew: backup run"
	more_done() { (($(psql_at "$ci" -c "select count(*) from backups where service = 'orders' and status = 'completed'") > before)); }
	wait_for 60 more_done || fail "skew: the backup with the clock ahead did not complete"
	local fresh now
	fresh=$(curl -fsS "http://127.0.0.1:$mport/metrics" | sed -n 's/^coffer_backup_last_success_timestamp_seconds{[^}]*service="orders"[^}]*} \([0-9.]*\).*/\1/p' | head -1)
	now=$(date +%s)
	[[ -n $fresh ]] && (($(printf '%.0f' "$fresh") <= now + 1)) ||
		fail "skew: orders' freshness metric is '$fresh', now is $now"
	sleep $((TICK * 2))
	still_open $key "$r"
	stop_agent orders
	t0=$(now_ms)
	start_agent orders
	expect_resolve skew $key "$t0" "$r"
	record skew $key $((SKEW_WINDOW + TICK * 2)) "$page" "$resolved_ms"
}

faults=(catalog coordinator backup agent killed disk skew)
# COFFER_FAULTS="killed disk" runs only those (when chasing one).
[[ -n ${COFFER_FAULTS:-} ]] && read -r -a faults <<<"$COFFER_FAULTS"
start=$SECONDS
round=0
while :; do
	round=$((round + 1))
	for f in "${faults[@]}"; do "fault_$f"; done
	((SECONDS - start < duration)) || break
	note "round $round done after $((SECONDS - start)) s of $duration"
done

# --- invariants --------------------------------------------------------------------------
for svc in billing orders; do
	drained() { [[ $("$agent" events -c "$T/$1.conf" 2>/dev/null | wc -l) == 0 ]]; }
	wait_for 30 drained "$svc" || fail "$svc: events still waiting in the outbox"
	read -r n maxseq dup < <(psql_at "$ci" -F ' ' -c "select count(*), coalesce(max(seq), 0), count(*) - count(distinct seq)
		from events where agent = '$svc-db-1'")
	[[ $n == "$maxseq" && $dup == 0 ]] || fail "$svc: events applied: $n rows, max seq $maxseq, $dup doubled"
	pass "$svc: $n events applied exactly once, none waiting"
done
# No false page: every trigger is for a key some fault expected.
while read -r key; do
	printf '%s\n' "${expected_keys[@]}" | grep -qxF "$key" ||
		fail "false page: $key was triggered and no fault expected it: $(grep -F "$key" "$T/rx.log" | head -1)"
done < <(grep '"event_action":"trigger"' "$T/rx.log" | sed -n 's/.*"dedup_key":"\([^"]*\)".*/\1/p' | sort -u)
# No space left behind, nothing unsettled.
[[ -z $(find "$T/repo" -name '.*.tmp') ]] || fail "repository temporaries left: $(find "$T/repo" -name '.*.tmp')"
[[ $(psql_at "$ci" -c "select count(*) from backups where status = 'running'") == 0 ]] ||
	fail "backups still running: $(psql_at "$ci" -c "select id, status from backups where status = 'running'")"
pass "no repository temporary left, no backup left running"
pass "no false page: $(grep -c '"event_action":"trigger"' "$T/rx.log") triggers, all expected"
"$cli" audit verify >/dev/null || fail "the audit chain does not verify after the faults"
pass "audit chain verifies after $round round(s)"

echo "fault        page                                          bound    fault->page  recovery->resolve"
printf '%s\n' "${timings[@]}"
