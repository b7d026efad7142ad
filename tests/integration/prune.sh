#!/usr/bin/env bash
# Retention's catalog side (coordinator/policy/prune.c) against a real PostgreSQL
# catalog and a real posix repository: 60 simulated days of backups, passes
# day by day with an injected clock, checked against a model in the driver
# (tests/integration/prune_itest.c): pending, grace, deletion and
# tombstones, holds, a policy change and its re-evaluation, a deletion that
# is denied (a repository handle without delete) and retried, objects
# already gone, a service that leaves the configuration. Then the audit
# chain must verify, and the catalog must refuse by itself states retention
# must never write.
source "$(dirname "$0")/lib.sh"

t_init prune
# The driver makes one data file immutable for a day; a failed run must not
# leave it behind, or the scratch directory could not be removed.
trap 'chattr -R -i "$T/repo" >/dev/null 2>&1; t_cleanup' EXIT
coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/prune_itest"
[[ -x "$coord" && -x "$drv" ]] || fail "build coffer-coordinator and prune_itest first"

catalog_start "$T/pg"
mkdir -p "$T/repo" "$T/state"

# write_conf FILE DAILY WITH_LEDGER
write_conf() {
	cat >"$1" <<EOF
[coordinator]
listen = tcp://127.0.0.1:7443
# The driver installs test triggers (DDL): it runs as the superuser, a
# development setup.
catalog = $ci
development = true
audit_key = $T/audit.key
state_dir = $T/state

[repository.primary]
type = posix
path = $T/repo

[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = $2
retention.min_redundancy = 2
retention.grace = 3d
EOF
	if [[ $3 == yes ]]; then
		cat >>"$1" <<EOF

[service.ledger]
owner = team-ledger
schedule = 0 3 * * *
retention.daily = 1
retention.grace = 3d
EOF
	fi
}
write_conf "$T/a.conf" 7 yes
write_conf "$T/b.conf" 7 no
write_conf "$T/c.conf" 14 no

catalog_audit_key
catalog_migrate "$T/a.conf"
grep -q "retention" "$T/migrate.out" || fail "the retention migration was not applied: $(cat "$T/migrate.out")"

"$drv" run "$T/a.conf" "$T/b.conf" "$T/c.conf" "$T/repo" || fail "driver failed"

# The driver's race put a hold in behind the coordinator's back (a trigger):
# audit-verify names exactly that, and nothing once it is gone.
"$coord" audit-verify -c "$T/b.conf" >"$T/verify.out" 2>&1 && fail "the raced hold, placed outside the coordinator, verified"
grep -q "hold [0-9]* on backup billing-050 has no hold.added row" "$T/verify.out" || fail "audit-verify: $(cat "$T/verify.out")"
psql_at "$ci" -c "DELETE FROM holds WHERE placed_by = 'test'" >/dev/null
"$coord" audit-verify -c "$T/b.conf" >"$T/verify.out" 2>&1 || fail "audit-verify: $(cat "$T/verify.out")"
pass "audit-verify: $(head -1 "$T/verify.out")"

# Nothing deleted is left in the repository, and every tombstone kept its
# decision (policy serial and reason).
deleted=$(psql_at "$ci" -c "SELECT id FROM backups WHERE status = 'deleted'")
for id in $deleted; do
	[[ ! -e "$T/repo/services/billing/backups/$id" ]] || fail "$id is tombstoned but still in the repository"
done
[[ $(psql_at "$ci" -c "SELECT count(*) FROM backups WHERE status = 'deleted' AND (deleted_at IS NULL OR delete_policy_version IS NULL OR delete_reason IS NULL OR delete_outcome IS NULL)") == 0 ]] ||
	fail "a tombstone lacks its time, policy serial, reason or outcome"
pass "$(echo "$deleted" | wc -w) tombstones, none left in the repository"

# The catalog itself refuses what retention must never write.
expect_refused() {
	local what=$1 q=$2
	if psql_at "$ci" -c "$q" >/dev/null 2>"$T/err"; then
		fail "$what: the catalog accepted it"
	fi
	pass "$what: $(head -1 "$T/err" | cut -c1-120)"
}
expect_refused "a pending backup without pending_since" \
	"UPDATE backups SET pending_since = NULL WHERE status = 'pending_delete'"
expect_refused "an outcome on a live backup" \
	"UPDATE backups SET delete_outcome = 'gone' WHERE status = 'completed'"
expect_refused "a completed backup without a manifest" \
	"UPDATE backups SET manifest = NULL WHERE status = 'completed'"

# A backup recorded by intake without settled_at gets the coordinator's time.
psql_at "$ci" -c "INSERT INTO backups (id, service, kind, status, started_at) VALUES ('billing-run', 'billing', 'logical', 'running', now())"
[[ $(psql_at "$ci" -c "SELECT settled_at IS NULL FROM backups WHERE id = 'billing-run'") == t ]] ||
	fail "a running backup has a settled time"
psql_at "$ci" -c "UPDATE backups SET status = 'failed', finished_at = now(), failure_reason = 'x' WHERE id = 'billing-run'"
[[ $(psql_at "$ci" -c "SELECT settled_at IS NOT NULL FROM backups WHERE id = 'billing-run'") == t ]] ||
	fail "the trigger did not stamp settled_at when the backup failed"
pass "settled_at is stamped by the catalog when an outcome is recorded"
