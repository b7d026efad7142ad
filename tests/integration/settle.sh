#!/usr/bin/env bash
# Interrupted backups on the coordinator's side, against a real catalog and a
# real posix repository, with an injected clock (tests/integration/settle_itest.c):
# a backup still running past [alerts] completion_window + abandon_grace
# becomes abandoned, is audited and pages backup_abandoned, and a later
# completed backup resolves the page; retention's orphan sweep removes a
# never-published backup directory no catalog row owns once it is older than
# retention.orphan_grace, audited with its bytes and counted, and leaves
# alone a young one, a published one the catalog does not know, a kept
# backup's objects and WAL; an abandoned backup's objects are reclaimed like
# a failed backup's once orphan_grace and retention.grace have passed.
source "$(dirname "$0")/lib.sh"
t_init settle
coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/settle_itest"
[[ -x "$coord" && -x "$drv" ]] || fail "build coffer-coordinator and settle_itest first"

catalog_start "$T/pg"
mkdir -p "$T/repo" "$T/state"
cat >"$T/coord.conf" <<EOF
[coordinator]
listen = tcp://127.0.0.1:7443
catalog = $ci
audit_key = $T/audit.key
state_dir = $T/state

[repository.primary]
type = posix
path = $T/repo

[alerts]
completion_window = 1m
abandon_grace = 1m

[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
retention.grace = 1h
retention.orphan_grace = 1h
EOF
catalog_audit_key
catalog_migrate "$T/coord.conf"
grep -q "abandoned" "$T/migrate.out" || fail "migration 15 was not applied: $(cat "$T/migrate.out")"

now=$(($(date +%s) * 1000))
B="$T/repo/services/billing/backups"
obj() { # obj ID NAME AGE [BYTES]
	mkdir -p "$B/$1"
	head -c "${4:-1000}" /dev/urandom >"$B/$1/$2"
	touch -d "$3" "$B/$1/$2"
}
run() { "$drv" "$T/coord.conf" "$1" 2>"$T/drv.err" || fail "driver: $(cat "$T/drv.err")"; }
q() { psql_at "$ci" -c "$1"; }
completed_row() { # ID STARTED_AGO
	q "INSERT INTO backups (id, service, kind, status, started_at, finished_at, stored_bytes, stored_sha256, key_id, manifest, verify_state, verified_at) VALUES ('$1', 'billing', 'logical', 'completed', now() - interval '$2', now() - interval '$2' + interval '30 seconds', 1000, decode(repeat('ab', 32), 'hex'), 'k1', '{}', 'verified', now())" >/dev/null
	# Retention buckets by the coordinator's settle time: when it was backed up.
	q "UPDATE backups SET settled_at = now() - interval '$2' + interval '30 seconds' WHERE id = '$1'" >/dev/null
}

run "$now" >/dev/null # the service's row
# A kept, completed backup, and WAL.
completed_row 20260301T020000Z-l-aaaaaa "3 days"
obj 20260301T020000Z-l-aaaaaa data "3 days ago"
obj 20260301T020000Z-l-aaaaaa manifest.json "3 days ago" 200
mkdir -p "$T/repo/services/billing/wal/1/00000001"
wal="$T/repo/services/billing/wal/1/00000001/000000010000000000000001"
head -c 100 /dev/urandom >"$wal"
touch -d "3 days ago" "$wal"
# A killed backup's row, stuck running, and its stored data (no manifest).
q "INSERT INTO backups (id, service, kind, status, started_at, received_at) VALUES ('20260303T020000Z-l-bbbbbb', 'billing', 'logical', 'running', now() - interval '10 minutes', now() - interval '10 minutes')" >/dev/null
obj 20260303T020000Z-l-bbbbbb data "10 minutes ago" 5000
# A backup that has just started: not abandoned.
q "INSERT INTO backups (id, service, kind, status, started_at) VALUES ('20260303T030000Z-l-cccccc', 'billing', 'logical', 'running', now())" >/dev/null
# Orphan candidates: old data no row owns; young data no row owns (a
# backup being written); a published backup the catalog does not know.
obj 20260302T020000Z-l-dddddd data "2 hours ago" 70000
obj 20260303T040000Z-l-eeeeee data "5 minutes ago" 3000
obj 20260302T050000Z-l-ffffff data "2 hours ago" 800
obj 20260302T050000Z-l-ffffff manifest.json "2 hours ago" 200
before=$(find "$T/repo" -type f | wc -l)

out=$(run "$now")
note "pass at now: $out"
[[ $(q "SELECT status FROM backups WHERE id = '20260303T020000Z-l-bbbbbb'") == abandoned ]] || fail "the stuck backup was not abandoned"
[[ $(q "SELECT status FROM backups WHERE id = '20260303T030000Z-l-cccccc'") == running ]] || fail "a fresh running backup was abandoned"
[[ $(q "SELECT failure_reason FROM backups WHERE id = '20260303T020000Z-l-bbbbbb'") == *"completion_window (1m) + abandon_grace (1m)"* ]] ||
	fail "reason: $(q "SELECT failure_reason FROM backups WHERE id = '20260303T020000Z-l-bbbbbb'")"
[[ $(q "SELECT count(*) FROM audit WHERE action = 'backup.abandoned' AND subject = '20260303T020000Z-l-bbbbbb'") == 1 ]] || fail "no audit row for the abandoned backup"
[[ $(q "SELECT state FROM alerts WHERE dedup_key = 'coffer/billing/backup_abandoned'") == triggered ]] || fail "backup_abandoned did not page"
[[ $(q "SELECT count(*) FROM alert_outbox WHERE dedup_key = 'coffer/billing/backup_abandoned'") -ge 1 ]] || fail "no page queued"
pass "a backup running past completion_window + abandon_grace is abandoned, audited and paged"

[[ ! -e "$B/20260302T020000Z-l-dddddd" ]] || fail "the old orphan is still there"
[[ -e "$B/20260303T040000Z-l-eeeeee/data" ]] || fail "a young orphan (a backup being written) was removed"
[[ -e "$B/20260302T050000Z-l-ffffff/manifest.json" && -e "$B/20260302T050000Z-l-ffffff/data" ]] || fail "a published backup unknown to the catalog was removed"
[[ -e "$B/20260301T020000Z-l-aaaaaa/data" && -e "$B/20260301T020000Z-l-aaaaaa/manifest.json" ]] || fail "a kept backup lost an object"
[[ -e "$B/20260303T020000Z-l-bbbbbb/data" ]] || fail "the abandoned backup's data went before its grace"
[[ -e "$wal" ]] || fail "WAL was touched"
[[ $(q "SELECT details->>'bytes' FROM audit WHERE action = 'backup.orphan_reclaimed' AND subject = '20260302T020000Z-l-dddddd'") == 70000 ]] || fail "no audit row with the orphan's bytes"
[[ $(q "SELECT backups || ' ' || objects || ' ' || bytes FROM reclaim_totals WHERE service = 'billing'") == "1 1 70000" ]] || fail "reclaim_totals: $(q "SELECT * FROM reclaim_totals")"
after=$(find "$T/repo" -type f | wc -l)
pass "orphan sweep: $before objects before, $after after; young, published, kept, abandoned and WAL objects kept"

# A later backup completes: the page resolves.
completed_row 20260303T050000Z-l-gggggg "1 minute"
obj 20260303T050000Z-l-gggggg data "1 minute ago"
obj 20260303T050000Z-l-gggggg manifest.json "1 minute ago" 200
run "$now" >/dev/null
[[ $(q "SELECT state FROM alerts WHERE dedup_key = 'coffer/billing/backup_abandoned'") == resolved ]] || fail "a later completed backup did not resolve backup_abandoned"
pass "a later completed backup resolves backup_abandoned"

# After orphan_grace the abandoned backup counts as failed (pending), and
# after retention.grace its objects go; the kept backups stay.
run $((now + 2 * 3600 * 1000)) >/dev/null
[[ $(q "SELECT status FROM backups WHERE id = '20260303T020000Z-l-bbbbbb'") == pending_delete ]] || fail "the abandoned backup was not marked pending after orphan_grace"
run $((now + 4 * 3600 * 1000)) >/dev/null
[[ $(q "SELECT status FROM backups WHERE id = '20260303T020000Z-l-bbbbbb'") == deleted ]] || fail "the abandoned backup was not deleted after retention.grace"
[[ ! -e "$B/20260303T020000Z-l-bbbbbb" ]] || fail "the abandoned backup's data is still there"
[[ -e "$B/20260301T020000Z-l-aaaaaa/data" && -e "$B/20260303T050000Z-l-gggggg/data" ]] || fail "a kept backup lost an object: $(q "SELECT action, subject, details FROM audit WHERE action LIKE 'backup.%' ORDER BY chain_seq") $(find "$B")"
[[ -e "$B/20260302T050000Z-l-ffffff/manifest.json" ]] || fail "a published backup unknown to the catalog was removed"
[[ $(q "SELECT count(*) FROM backups WHERE status = 'completed'") == 2 ]] || fail "a completed backup changed status"
pass "the abandoned backup's objects are reclaimed after orphan_grace + retention.grace; kept backups intact ($(find "$T/repo" -type f | wc -l) objects left)"

"$coord" audit-verify -c "$T/coord.conf" >"$T/verify.out" 2>&1 || fail "audit-verify: $(cat "$T/verify.out")"
pass "audit-verify: $(head -1 "$T/verify.out")"
