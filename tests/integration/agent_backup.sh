#!/usr/bin/env bash
# A logical backup of a real PostgreSQL, end to end through the binaries:
# keygen, init, backup, list, verify, cat | pg_restore -l, restore with row
# count comparison; the refusals (restore over the source, into a database
# that has tables); and every way a backup can fail (unreachable server,
# wrong password, pg_dump failing, completion window overrun, SIGTERM), each
# of which must leave a failed event in the outbox and no published backup.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077
t_init agent-backup
agent=$COFFER_BIN/coffer-agent

pg_start "$T/pg"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database billing"
psql_at "$PG_CONNINFO dbname=postgres" -c "create role coffer_pw login password 'right-password'"
ci="$PG_CONNINFO dbname=billing"
psql_at "$ci" <<'SQL'
create schema ledger;
create table ledger.invoices (id bigserial primary key, customer text not null, cents bigint not null);
insert into ledger.invoices (customer, cents) select 'customer-' || g, g * 7 from generate_series(1, 20000) g;
create table public."Weird Name" (k int);
insert into public."Weird Name" select generate_series(1, 37);
create unlogged table public.sessions (id int);
insert into public.sessions select generate_series(1, 5);
create table public.empty_one (x int);
SQL

write_conf() { # $1 = file, $2 = conninfo, $3 = completion window, $4 = extra dump options
	cat >"$1" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $2
bin_dir = $PG_BINDIR
dump_options = ${4:-}
[schedule]
logical = 0 2 * * *
completion_window = ${3:-2h}
[repository.primary]
type = posix
path = $T/repo
CONF
}
mkdir -p "$T/state" "$T/repo"
write_conf "$T/agent.conf" "$ci"

"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
[[ $(stat -c %a "$T/billing.keys") == 600 ]] || fail "key ring is not mode 0600"
"$agent" init -c "$T/agent.conf" >"$T/pubkey.txt" || fail "init"
[[ -s "$T/pubkey.txt" ]] || fail "init printed no public key"
if "$agent" init -c "$T/agent.conf" >/dev/null 2>"$T/err"; then fail "second init overwrote the signing key"; fi

# --- a good backup, listed, verified, readable, restorable ---------------------------
id=$("$agent" backup -c "$T/agent.conf" 2>"$T/backup.log") || { cat "$T/backup.log"; fail "backup"; }
[[ $id =~ ^[0-9]{8}T[0-9]{6}Z- ]] || fail "backup printed '$id', not a backup id"
pass "backup $id"
[[ -f "$T/repo/services/billing/backups/$id/manifest.json" ]] || fail "no manifest for $id"
if grep -q "customer-1" "$T/repo/services/billing/backups/$id/data"; then fail "plaintext in the repository"; fi

"$agent" list -c "$T/agent.conf" | grep -q "$id" || fail "list does not show $id"
"$agent" list -c "$T/agent.conf" --output json | grep -q "\"$id\"" || fail "list --output json"
"$agent" verify -c "$T/agent.conf" --backup latest || fail "verify latest"
"$agent" cat -c "$T/agent.conf" --backup "$id" >"$T/dump" || fail "cat"
"$PG_BINDIR/pg_restore" -l "$T/dump" >"$T/toc" || fail "pg_restore -l cannot read what cat wrote"
sha=$(sha256sum "$T/dump" | cut -d' ' -f1)
grep -q "\"$sha\"" "$T/repo/services/billing/backups/$id/manifest.json" ||
	fail "cat output's SHA-256 is not the manifest's plaintext digest"
grep -q "TABLE DATA ledger invoices" "$T/toc" || fail "dump has no ledger.invoices data"
pass "list, verify, cat"

# Text sizes are for people ("1.4 MiB"), JSON keeps exact bytes; a listing
# holding an INVALID backup still lists everything and exits 1.
"$agent" list -c "$T/agent.conf" >"$T/list.out" || fail "list"
grep "$id" "$T/list.out" | grep -Eq ' [0-9.]+ (B|KiB|MiB|GiB) ' || fail "list sizes are not human: $(cat "$T/list.out")"
"$agent" list -c "$T/agent.conf" --output json | python3 -c '
import json, sys
for b in json.load(sys.stdin)["backups"]:
    assert isinstance(b["plaintext_bytes"], int) and b["plaintext_bytes"] > 1024, b
' || fail "list --output json has no exact byte counts"
bogus=$T/repo/services/billing/backups/20200101T000000Z-l-000001
mkdir -p "$bogus" && echo '{"not":"a manifest"}' >"$bogus/manifest.json"
rc=0
"$agent" list -c "$T/agent.conf" >"$T/list.out" 2>"$T/list.err" || rc=$?
[[ $rc == 1 ]] || fail "list with an INVALID backup exited $rc, want 1"
grep -q "20200101T000000Z-l-000001 *INVALID" "$T/list.out" && grep -q "$id" "$T/list.out" ||
	fail "list with an INVALID backup does not list everything: $(cat "$T/list.out")"
grep -q "1 of 2 backups INVALID" "$T/list.err" || fail "INVALID exit not explained: $(cat "$T/list.err")"
rc=0
"$agent" list -c "$T/agent.conf" --output json >"$T/list.json" 2>/dev/null || rc=$?
[[ $rc == 1 ]] && grep -q '"invalid"' "$T/list.json" || fail "list --output json with an INVALID backup: exit $rc"
rm -r "$bogus"
"$agent" list -c "$T/agent.conf" >/dev/null || fail "list exits non-zero once the INVALID backup is gone"
pass "list: human sizes in text, exact bytes in JSON, exit 1 while an INVALID backup is listed"

# A service directory others may write is refused (another service's agent
# could plant or replace objects there), naming the chmod that fixes it.
svcdir=$T/repo/services/billing
mode=$(stat -c %a "$svcdir")
chmod 0777 "$svcdir"
if "$agent" list -c "$T/agent.conf" >/dev/null 2>"$T/err"; then fail "a world-writable service directory was used"; fi
grep -q "writable by others (mode 0777).*chmod -R o-w $svcdir" "$T/err" ||
	fail "world-writable service directory: unclear error: $(cat "$T/err")"
chmod "$mode" "$svcdir"
"$agent" list -c "$T/agent.conf" >/dev/null || fail "list after chmod back"
pass "world-writable service directory refused: $(head -c 150 "$T/err")..."

"$agent" restore -c "$T/agent.conf" --backup latest --target-db billing_copy --jobs 2 || fail "restore"
n=$(psql_at "$PG_CONNINFO dbname=billing_copy" -c "select count(*) from ledger.invoices")
[[ $n == 20000 ]] || fail "restored invoices: $n rows, want 20000"
n=$(psql_at "$PG_CONNINFO dbname=billing_copy" -c 'select count(*) from public."Weird Name"')
[[ $n == 37 ]] || fail "restored \"Weird Name\": $n rows, want 37"
pass "restore into billing_copy with matching row counts"

if "$agent" restore -c "$T/agent.conf" --backup latest --target-db billing_copy 2>"$T/err"; then
	fail "restore into a database with tables was not refused"
fi
grep -q -- "--force" "$T/err" || fail "refusal does not mention --force: $(cat "$T/err")"
"$agent" restore -c "$T/agent.conf" --backup latest --target-db billing_copy --force >/dev/null 2>&1 ||
	fail "restore --force into billing_copy"
if "$agent" restore -c "$T/agent.conf" --backup latest --target-db billing --force 2>"$T/err"; then
	fail "restore over the source database was not refused"
fi
grep -qi "source" "$T/err" || fail "refusal does not say it is the source database: $(cat "$T/err")"
pass "restore refusals"

# --- tampering is detected -------------------------------------------------------------
cp -a "$T/repo" "$T/repo.good"
data="$T/repo/services/billing/backups/$id/data"
size=$(stat -c %s "$data")
printf '\x01' | dd of="$data" bs=1 seek=$((size / 2)) conv=notrunc status=none
if "$agent" verify -c "$T/agent.conf" --backup "$id" 2>"$T/err"; then fail "verify passed a corrupted backup"; fi
note "corrupted data: $(cat "$T/err")"
rm -rf "$T/repo" && mv "$T/repo.good" "$T/repo"
sed -i 's/"billing"/"billinG"/' "$T/repo/services/billing/backups/$id/manifest.json"
if "$agent" verify -c "$T/agent.conf" --backup "$id" 2>"$T/err"; then fail "verify passed an altered manifest"; fi
note "altered manifest: $(cat "$T/err")"
sed -i 's/"billinG"/"billing"/' "$T/repo/services/billing/backups/$id/manifest.json"
"$agent" verify -c "$T/agent.conf" --backup "$id" || fail "verify after undoing the change"
pass "tampering detected"

# --- failures: each is a failed backup with a reason, and nothing published ------------
count_published() { find "$T/repo/services/billing/backups" -name manifest.json | wc -l; }
before=$(count_published)
expect_failure() { # $1 = label, $2 = config, $3 = text the error must contain
	if "$agent" backup -c "$2" >/dev/null 2>"$T/err"; then fail "$1: backup succeeded"; fi
	grep -qi -- "$3" "$T/err" || fail "$1: error does not say '$3': $(cat "$T/err")"
	[[ $(count_published) == "$before" ]] || fail "$1: a backup was published"
	"$agent" events -c "$2" --output json | tail -1 | grep -q '"backup.failed"' ||
		fail "$1: no backup.failed event in the outbox"
	note "$1: $(tail -1 "$T/err" | cut -c1-300)"
}
write_conf "$T/bad-port.conf" "host=127.0.0.1 port=1 user=postgres dbname=billing connect_timeout=3"
expect_failure "unreachable server" "$T/bad-port.conf" "connect"
write_conf "$T/bad-pw.conf" "host=127.0.0.1 port=$PG_PORT user=coffer_pw password=wrong dbname=billing"
expect_failure "wrong password" "$T/bad-pw.conf" "authentication"
write_conf "$T/bad-opt.conf" "$ci" 2h "--no-such-option"
expect_failure "pg_dump fails" "$T/bad-opt.conf" "no-such-option"

# pg_dump waits behind an exclusive lock, so the window passes while it runs.
lock_for() { psql_at "$ci" -c "begin; lock table ledger.invoices in access exclusive mode; select pg_sleep($1); commit;" >/dev/null 2>&1 & }
lock_for 20
locker=$!
sleep 1
write_conf "$T/short.conf" "$ci" 3s
expect_failure "completion window" "$T/short.conf" "window"
kill "$locker" 2>/dev/null || true
wait "$locker" 2>/dev/null || true
psql_at "$PG_CONNINFO dbname=postgres" -c "select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep%' and pid <> pg_backend_pid()" >/dev/null

lock_for 20
locker=$!
sleep 1
"$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/err" &
bpid=$!
sleep 2
if "$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/err2"; then fail "a second backup ran while one was running"; fi
grep -q "another backup" "$T/err2" || fail "second backup: wrong refusal: $(cat "$T/err2")"
pass "one backup at a time: $(tail -1 "$T/err2")"
kill -TERM "$bpid"
rc=0
wait "$bpid" || rc=$?
[[ $rc != 0 ]] || fail "SIGTERM: backup reported success"
grep -qi "cancel\|signal\|terminat" "$T/err" || fail "SIGTERM: error does not say it was stopped: $(cat "$T/err")"
[[ $(count_published) == "$before" ]] || fail "SIGTERM: a backup was published"
"$agent" events -c "$T/agent.conf" --output json | tail -1 | grep -q '"backup.failed"' || fail "SIGTERM: no failed event"
psql_at "$PG_CONNINFO dbname=postgres" -c "select pg_terminate_backend(pid) from pg_stat_activity where query like '%pg_sleep%' and pid <> pg_backend_pid()" >/dev/null
wait "$locker" 2>/dev/null || true
pass "failures recorded, nothing published"
if find "$T/repo" -name '*.tmp*' | grep -q .; then fail "temporary files left in the repository"; fi
