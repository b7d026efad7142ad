#!/usr/bin/env bash
# Red team against the audit log's anchors (issue 21), with a real
# coordinator and catalog in the two-role setup of docs/CATALOG.md:
# - the runtime role (what the coordinator runs as) is refused UPDATE,
#   DELETE and TRUNCATE on audit and ALTER TABLE audit DISABLE TRIGGER;
# - the coordinator refuses to run as a superuser (or the owner) unless
#   [coordinator] development = true;
# - with the catalog's superuser, cutting the newest audit rows and moving
#   audit_head back (a chain that walks clean) is named by
#   `coffer-coordinator audit-verify` (exit 1) from the local high-water mark
#   the coordinator keeps in its state_dir;
# - an agent's public key edited in the agents table is named by verify.
source "$(dirname "$0")/lib.sh"

t_init audit_anchor
coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/intake_itest"
[[ -x "$coord" && -x "$drv" ]] || fail "build coffer-coordinator and intake_itest first"

catalog_start "$T/pg"
mkdir -p "$T/state"
conf="$T/coordinator.conf"
cat >"$conf" <<EOF
[coordinator]
listen = tcp://127.0.0.1:0
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/state
maintenance_interval = 1s
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
EOF
catalog_audit_key
catalog_migrate "$conf"
"$drv" keygen "$T/billing-1.key" >"$T/billing-1.pub" || fail "keygen"
timeout 60 "$coord" agents enroll -c "$conf" --service billing --agent billing-1 \
	--pubkey "$T/billing-1.pub" >/dev/null || fail "enroll billing-1"

# --- the runtime role cannot change the audit log -----------------------------
for sql in "UPDATE audit SET actor = 'x'" "DELETE FROM audit" "TRUNCATE audit" \
	"ALTER TABLE audit DISABLE TRIGGER USER" "DELETE FROM audit_head" "DROP TABLE audit"; do
	out=$(psql_at "$ci_app" -c "$sql" 2>&1) && fail "the runtime role ran: $sql"
	[[ $out == *"permission denied"* || $out == *"must be owner"* ]] ||
		fail "$sql: want permission denied, got: $out"
done
pass "the runtime role is refused UPDATE, DELETE, TRUNCATE and disabling triggers on audit"

# --- no superuser or owner at run time -------------------------------------------
sed "s|^catalog = .*|catalog = $ci|" "$conf" >"$T/super.conf"
timeout 60 "$coord" run -c "$T/super.conf" >/dev/null 2>"$T/super.err" && fail "ran as a superuser"
grep -q "as role postgres, which is a superuser.*development = true" "$T/super.err" ||
	fail "superuser refusal: $(cat "$T/super.err")"
sed "s|^catalog = .*|catalog = $ci_owner|" "$conf" >"$T/owner.conf"
timeout 60 "$coord" run -c "$T/owner.conf" >/dev/null 2>"$T/owner.err" && fail "ran as the owner"
grep -q "as role coffer_owner, which owns the catalog's tables" "$T/owner.err" ||
	fail "owner refusal: $(cat "$T/owner.err")"
pass "the coordinator refuses a superuser or the owner: $(head -c 150 "$T/super.err")"

# --- the coordinator appends and keeps the mark ------------------------------------
timeout --foreground 300 "$coord" run -c "$conf" >"$T/coord.out" 2>"$T/coord.err" &
cpid=$!
stop_coord() {
	kill -TERM "$cpid" 2>/dev/null || true
	t_cleanup
}
trap stop_coord EXIT
for _ in $(seq 300); do
	[[ -s $T/state/audit-mark ]] && break
	kill -0 "$cpid" 2>/dev/null || fail "the coordinator exited: $(cat "$T/coord.err")"
	sleep 0.1
done
[[ -s $T/state/audit-mark ]] || fail "no high-water mark after 30 s: $(cat "$T/coord.err")"
kill -TERM "$cpid"
wait "$cpid" || fail "the coordinator did not stop cleanly: $(tail -3 "$T/coord.err")"
trap t_cleanup EXIT
"$coord" audit-verify -c "$conf" >"$T/v" 2>&1 || fail "intact chain: $(cat "$T/v")"
mark=$(awk '{print $2}' "$T/state/audit-mark")
head=$(psql_at "$ci" -c "SELECT chain_seq FROM audit_head")
[[ $mark == "$head" ]] || fail "mark $mark, head $head after a clean stop"
grep -q "local high-water mark: chain_seq $mark is in the chain" "$T/v" || fail "verify: $(cat "$T/v")"
pass "the coordinator's mark follows the chain head ($mark)"

# --- the superuser cuts the tail and rewrites the head ---------------------------------
psql_at "$base dbname=postgres" -c "CREATE DATABASE cut TEMPLATE coffer"
psql_at "$base dbname=cut" -c "ALTER TABLE audit DISABLE TRIGGER USER;
	ALTER TABLE audit_head DISABLE TRIGGER USER;
	DELETE FROM audit WHERE chain_seq > $mark - 2;
	UPDATE audit_head SET chain_seq = a.chain_seq, mac = a.mac FROM audit a
	  WHERE a.chain_seq = $mark - 2" >/dev/null
sed "s|dbname=coffer|dbname=cut|" "$conf" >"$T/cut.conf"
"$coord" audit-verify -c "$T/cut.conf" >"$T/v" 2>"$T/e" && fail "a cut tail verified: $(cat "$T/v")"
grep -q "missing from the end of the chain (the local high-water mark says the coordinator committed up to $mark)" "$T/e" ||
	fail "cut tail not named: $(cat "$T/e")"
pass "a cut tail with a rewritten head is named: $(head -c 170 "$T/e")"

# --- a rewritten head row (same length, another row at the mark) ---------------------
psql_at "$base dbname=postgres" -c "CREATE DATABASE rewritten TEMPLATE coffer"
psql_at "$base dbname=rewritten" -c "ALTER TABLE audit DISABLE TRIGGER USER;
	UPDATE audit SET mac = prev_mac WHERE chain_seq = $mark" >/dev/null
sed "s|dbname=coffer|dbname=rewritten|" "$conf" >"$T/rw.conf"
"$coord" audit-verify -c "$T/rw.conf" >/dev/null 2>"$T/e" && fail "a rewritten head verified"
grep -q "chain_seq $mark" "$T/e" || fail "rewritten head not named: $(cat "$T/e")"
pass "a rewritten row at the mark is named"

# --- an agent's key edited in place ----------------------------------------------------
"$drv" keygen "$T/rogue.key" >"$T/rogue.pub" || fail "keygen rogue"
psql_at "$base dbname=postgres" -c "CREATE DATABASE rekeyed TEMPLATE coffer"
psql_at "$base dbname=rekeyed" -c "UPDATE agents SET pubkey = decode('$(cat "$T/rogue.pub")', 'hex')
	WHERE name = 'billing-1'" >/dev/null
sed "s|dbname=coffer|dbname=rekeyed|" "$conf" >"$T/rk.conf"
"$coord" audit-verify -c "$T/rk.conf" >/dev/null 2>"$T/e" && fail "an edited key verified"
grep -q "agent billing-1 has public key .* which no agent.enroll row names" "$T/e" ||
	fail "edited key not named: $(cat "$T/e")"
pass "an agent's public key edited in the catalog is named: $(head -c 170 "$T/e")"

"$coord" audit-verify -c "$conf" >/dev/null || fail "the original catalog stopped verifying"
pass "done"
