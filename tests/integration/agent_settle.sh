#!/usr/bin/env bash
# Interrupted backups settle (agent/backup/settle.c), through the binaries
# and a real PostgreSQL: a `coffer-agent backup` killed with SIGKILL while
# pg_dump runs leaves its journal entry and a repository temporary; the next
# backup settles it as failed with the stage it reached and removes its
# temporary; the daemon's start does the same for another killed backup; a
# journal entry whose backup was published and verifies is settled as
# completed (the entry is written here by hand: the instant between
# publishing and the completion event is too short to kill reliably); one
# whose data was altered is settled as failed; a stale temporary under the
# service is removed at start while a fresh one (a live wal-push) stays.
source "$(dirname "$0")/lib.sh"
t_init agent-settle
agent=$COFFER_BIN/coffer-agent
bg=()
trap 'for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null || true; done; t_cleanup' EXIT

pg_start "$T/pg"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database billing"
ci="$PG_CONNINFO dbname=billing"
psql_at "$ci" -c "create table invoices (id bigserial primary key, customer text not null); insert into invoices (customer) select 'customer-' || g from generate_series(1, 20000) g;"

mkdir -p "$T/state" "$T/repo"
cat >"$T/agent.conf" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $ci
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
completion_window = 2h
[repository.primary]
type = posix
path = $T/repo
CONF
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$T/agent.conf" >/dev/null || fail "init"

journal="$T/state/backups-begun"
backups="$T/repo/services/billing/backups"
events() { "$agent" events -c "$T/agent.conf" --output json; }
temps() { find "$T/repo" -name '.*.tmp' | wc -l; }
objects() { find "$T/repo" -type f | wc -l; }
unlock() {
	psql_at "$PG_CONNINFO dbname=postgres" -c "select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep%' and pid <> pg_backend_pid()" >/dev/null
}

# kill_mid_dump: starts a backup that waits behind a lock in pg_dump, kills
# it with SIGKILL once its temporary exists, prints its id.
kill_mid_dump() {
	psql_at "$ci" -c "begin; lock table invoices in access exclusive mode; select pg_sleep(60); commit;" >/dev/null 2>&1 &
	local locker=$!
	sleep 0.5
	"$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/killed.log" &
	local bpid=$!
	bg+=("$bpid" "$locker")
	local id="" i
	for i in $(seq 1 100); do
		id=$(grep -l " dump$" "$journal"/* 2>/dev/null | head -1 | xargs -r basename)
		if [[ -n $id ]] && [[ -n $(find "$backups/$id" -name '.data.*.tmp' 2>/dev/null) ]]; then
			break
		fi
		id=""
		sleep 0.1
	done
	[[ -n $id ]] || fail "the backup never reached its dump with a temporary: $(cat "$T/killed.log")"
	kill -9 "$bpid"
	wait "$bpid" 2>/dev/null || true
	unlock
	wait "$locker" 2>/dev/null || true
	echo "$id"
}

# --- a manual backup killed mid-dump, settled by the next backup ---------------------
id1=$(kill_mid_dump)
[[ -f "$journal/$id1" ]] || fail "no journal entry for the killed backup $id1"
grep -q "^v1 $id1 logical [0-9]* dump$" "$journal/$id1" || fail "journal entry: $(cat "$journal/$id1")"
[[ $(temps) -ge 1 ]] || fail "the killed backup left no temporary (the test did not kill it mid-write)"
events | grep "$id1" | grep -q '"backup.started"' || fail "the killed manual backup's start is not in the outbox"
events | grep "$id1" | grep -q '"backup.failed"' && fail "a failure was recorded for $id1 before settling"
note "killed $id1 mid-dump: $(temps) temporary, $(objects) files in the repository"
before=$(objects)

id2=$("$agent" backup -c "$T/agent.conf" 2>"$T/b2.log") || fail "the next backup: $(cat "$T/b2.log")"
line=$(events | grep "$id1" | grep '"backup.failed"') || fail "$id1 was not settled as failed"
grep -q "interrupted at stage dump (agent killed or host restarted)" <<<"$line" || fail "reason: $line"
grep -q "a new backup runs on schedule" <<<"$line" || fail "reason has no next step: $line"
[[ ! -e "$journal/$id1" ]] || fail "the journal entry of $id1 stayed"
[[ ! -e "$journal/$id2" ]] || fail "the journal entry of the good backup $id2 stayed"
[[ $(temps) == 0 ]] || fail "temporaries left: $(find "$T/repo" -name '.*.tmp')"
# The failure is recorded before the new backup starts.
order=$(events | grep -n "\"$id1\"\|\"$id2\"" | grep -E '"backup.(failed|started)"' | cut -d: -f1 | tr '\n' ' ')
[[ $(events | grep -n "$id1" | grep '"backup.failed"' | cut -d: -f1) -lt $(events | grep -n "$id2" | grep '"backup.started"' | cut -d: -f1) ]] ||
	fail "the settled failure does not precede the next backup's start (lines $order)"
pass "killed mid-dump: settled as failed before the next backup, temporary removed ($before files before, $(objects) after, 2 of them the new backup's)"

# --- killed again, settled by the daemon's start -----------------------------------------
id3=$(kill_mid_dump)
"$agent" run -c "$T/agent.conf" >"$T/run.log" 2>&1 &
rpid=$!
bg+=("$rpid")
for i in $(seq 1 100); do
	events | grep "$id3" | grep -q '"backup.failed"' && break
	sleep 0.1
done
kill -TERM "$rpid"
wait "$rpid" 2>/dev/null || true
events | grep "$id3" | grep '"backup.failed"' | grep -q "interrupted at stage dump" ||
	fail "the daemon's start did not settle $id3: $(tail -5 "$T/run.log")"
[[ ! -e "$journal/$id3" && $(temps) == 0 ]] || fail "the daemon left the entry or a temporary of $id3"
pass "the daemon's start settled $id3 as failed"

# --- published and valid: completed; altered: failed ---------------------------------------
now_ms=$(($(date +%s) * 1000))
printf 'v1 %s logical %s publish\n' "$id2" "$now_ms" >"$journal/$id2"
n_before=$(events | grep "$id2" | grep -c '"backup.completed"')
id4=$("$agent" backup -c "$T/agent.conf" 2>"$T/b4.log") || fail "backup: $(cat "$T/b4.log")"
n_after=$(events | grep "$id2" | grep -c '"backup.completed"')
[[ $n_after == $((n_before + 1)) ]] || fail "a published, valid backup was not settled as completed ($n_before -> $n_after)"
[[ ! -e "$journal/$id2" ]] || fail "the entry of the settled completed backup stayed"
pass "a published backup whose manifest and data verify is settled as completed"

cp -a "$backups/$id4" "$T/saved"
data="$backups/$id4/data"
printf '\x01' | dd of="$data" bs=1 seek=$(($(stat -c %s "$data") / 2)) conv=notrunc status=none
printf 'v1 %s logical %s publish\n' "$id4" "$now_ms" >"$journal/$id4"
"$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/b5.log" || fail "backup: $(cat "$T/b5.log")"
events | grep "$id4" | grep '"backup.failed"' | grep -q "SHA-256" ||
	fail "an altered data object was not settled as failed: $(events | grep "$id4" | tail -1)"
rm -rf "${backups:?}/$id4" && cp -a "$T/saved" "$backups/$id4"
pass "a published backup whose data does not verify is settled as failed"

# --- stale temporaries under the service go, fresh ones stay ------------------------------
mkdir -p "$T/repo/services/billing/wal/1/00000001"
old="$T/repo/services/billing/wal/1/00000001/.000000010000000000000003.0123456789abcdef.tmp"
new="$T/repo/services/billing/wal/1/00000001/.000000010000000000000004.0123456789abcdef.tmp"
other="$T/repo/services/ledger/backups/x/.data.0123456789abcdef.tmp"
mkdir -p "$(dirname "$other")"
head -c 4096 /dev/urandom >"$old"
head -c 4096 /dev/urandom >"$new"
head -c 10 /dev/urandom >"$other"
touch -d '4 hours ago' "$old" "$other"
"$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/b6.log" || fail "backup: $(cat "$T/b6.log")"
[[ ! -e $old ]] || fail "a temporary older than completion_window + 1h stayed"
[[ -e $new ]] || fail "a fresh temporary (a live wal-push's) was removed"
[[ -e $other ]] || fail "another service's temporary was removed"
[[ -z $(ls -A "$journal") ]] || fail "journal entries left: $(ls "$journal")"
pass "stale temporaries of the service removed at start; fresh ones and other services' kept"
