#!/usr/bin/env bash
# The catalog and the audit log against a real PostgreSQL:
# - migrate applies the schema once (a second run, and racing migrators,
#   apply nothing more);
# - a catalog with a future version, or an edited migration, is refused;
# - a catalog that cannot be reached gives one clear line without the
#   password from the conninfo;
# - the audit table refuses UPDATE, DELETE and TRUNCATE at the database;
# - audit rows commit and roll back with their caller's transaction, and
#   concurrent appenders never fork the chain;
# - tampering done as superuser (trigger disabled) is detected, and the first
#   broken or missing chain_seq is named.
source "$(dirname "$0")/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077

t_init catalog
coord="$COFFER_BIN/coffer-coordinator"
drv="$COFFER_BIN/catalog_itest"
[[ -x "$coord" && -x "$drv" ]] || fail "build coffer-coordinator and catalog_itest first"

catalog_start "$T/pg"

# Writes a coordinator.conf for a catalog conninfo into $1.
write_conf() {
	cat >"$1" <<EOF
[coordinator]
listen = tcp://127.0.0.1:7443
catalog = $2
audit_key = $T/audit.key
state_dir = $T/state
EOF
}
write_conf "$T/coordinator.conf" "$ci"
conf="$T/coordinator.conf"

# expect_fail WHAT PATTERN CMD...: CMD must exit non-zero with one stderr line
# matching PATTERN.
expect_fail() {
	local what=$1 pattern=$2 rc=0
	shift 2
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	((rc != 0)) || fail "$what: succeeded: $(cat "$T/out")"
	grep -Eq -- "$pattern" "$T/err" || fail "$what: stderr does not match '$pattern': $(cat "$T/err")"
	(($(wc -l <"$T/err") == 1)) || fail "$what: want one line on stderr, got: $(cat "$T/err")"
	pass "$what: $(cut -c1-150 "$T/err")"
}

# --- audit key --------------------------------------------------------------
"$coord" audit-keygen --out "$T/audit.key" >/dev/null || fail "audit-keygen failed"
[[ $(stat -c %a "$T/audit.key") == 600 ]] || fail "audit key mode is $(stat -c %a "$T/audit.key")"
expect_fail "keygen never overwrites a key" "exists" "$coord" audit-keygen --out "$T/audit.key"
chmod 644 "$T/audit.key"
expect_fail "a group/world-readable key is refused" "mode 0644.*chmod 600" \
	"$coord" audit-verify -c "$conf"
chmod 600 "$T/audit.key"

# --- migrations ---------------------------------------------------------------
expect_fail "an empty catalog is refused before migrate" "no Coffer schema.*coffer-coordinator migrate" \
	"$coord" audit-verify -c "$conf"
"$coord" migrate -c "$conf" >"$T/m1" 2>"$T/m1.err" || fail "migrate failed: $(cat "$T/m1.err")"
grep -q "applied migration 1: initial schema" "$T/m1" || fail "first migrate output: $(cat "$T/m1")"
"$coord" migrate -c "$conf" --output json >"$T/m2" || fail "second migrate failed"
grep -q '"applied":\[\]' "$T/m2" || fail "second migrate was not a no-op: $(cat "$T/m2")"
known=$(psql_at "$ci" -c "SELECT max(number) FROM schema_version")
((known >= 1)) || fail "no migration recorded"
[[ $(psql_at "$ci" -c "SELECT count(*) FROM schema_version") == "$known" ]] || fail "schema_version rows"
[[ $(psql_at "$ci" -c "SELECT bool_and(sha256 ~ '^[0-9a-f]{64}$' AND applied_at IS NOT NULL) FROM schema_version") == t ]] ||
	fail "schema_version row lacks sha256 or applied_at"
pass "migrate applies the schema once, then nothing"

psql_at "$base dbname=postgres" -c "CREATE DATABASE race"
out=$("$drv" migrate-race "$base dbname=race" 4) || fail "racing migrators: $out"
[[ $(psql_at "$base dbname=race" -c "SELECT count(*) FROM schema_version") == "$known" ]] ||
	fail "racing migrators recorded a migration more than once"
pass "four migrators at once: $out between them, all succeed"

# A catalog written by a newer coordinator.
psql_at "$base dbname=postgres" -c "CREATE DATABASE future TEMPLATE coffer"
psql_at "$base dbname=future" -c \
	"INSERT INTO schema_version (number, name, sha256, coffer_version) VALUES (999, 'from the future', repeat('0', 64), '9.9.9')"
write_conf "$T/future.conf" "$base dbname=future"
expect_fail "a newer catalog is refused by migrate" \
	"catalog schema is at version 999, this coordinator knows up to $known.*upgrade coffer-coordinator" \
	"$coord" migrate -c "$T/future.conf"
expect_fail "a newer catalog is refused at start" "catalog schema is at version 999, this coordinator knows up to $known" \
	"$coord" audit-verify -c "$T/future.conf"

# A catalog whose migration 1 is not the binary's migration 1.
psql_at "$base dbname=postgres" -c "CREATE DATABASE edited TEMPLATE coffer"
psql_at "$base dbname=edited" -c "UPDATE schema_version SET sha256 = repeat('a', 64) WHERE number = 1"
write_conf "$T/edited.conf" "$base dbname=edited"
expect_fail "an edited migration is refused at start" "migration 1 .*sha256 aaaaaaaaaaaa.*edited" \
	"$coord" audit-verify -c "$T/edited.conf"
expect_fail "an edited migration is refused by migrate" "edited after it shipped" \
	"$coord" migrate -c "$T/edited.conf"

# --- unreachable catalog ------------------------------------------------------
dead_port=$(_free_port)
write_conf "$T/dead.conf" "host=127.0.0.1 port=$dead_port dbname=coffer user=coffer password=Sup3rSecretPw connect_timeout=5"
expect_fail "an unreachable catalog" "cannot connect to the catalog \(host=127.0.0.1 port=$dead_port dbname=coffer user=coffer\)" \
	"$coord" migrate -c "$T/dead.conf"
grep -q Sup3rSecretPw "$T/err" && fail "the password was printed: $(cat "$T/err")"
write_conf "$T/badpw.conf" "host=127.0.0.1 port=$PG_PORT dbname=coffer user=postgres password=Sup3rSecretPw"
expect_fail "wrong password" "cannot connect to the catalog.*password authentication failed" \
	"$coord" migrate -c "$T/badpw.conf"
grep -q Sup3rSecretPw "$T/err" && fail "the password was printed: $(cat "$T/err")"
write_conf "$T/garbage.conf" "host=127.0.0.1 password=Sup3rSecretPw bogus"
expect_fail "unparsable conninfo" "not valid libpq conninfo" "$coord" migrate -c "$T/garbage.conf"
grep -q Sup3rSecretPw "$T/err" && fail "the password was printed: $(cat "$T/err")"

# --- append-only at the database -------------------------------------------
"$coord" audit-verify -c "$conf" >"$T/v0" || fail "verify of an empty chain failed"
grep -q "intact: 0 rows" "$T/v0" || fail "empty chain: $(cat "$T/v0")"
last=$("$drv" append "$ci" "$T/audit.key" 100) || fail "append failed"
[[ $last == 100 ]] || fail "100 appends ended at chain_seq $last"
"$coord" audit-verify -c "$conf" >"$T/v1" || fail "verify after 100 appends failed: $(cat "$T/err")"
grep -q "intact: 100 rows, head chain_seq 100" "$T/v1" || fail "verify: $(cat "$T/v1")"
pass "100 rows appended, chain intact"

for sql in "UPDATE audit SET actor = 'mallory' WHERE chain_seq = 5" \
	"DELETE FROM audit WHERE chain_seq = 5" "TRUNCATE audit" "DELETE FROM audit_head" \
	"TRUNCATE audit_head"; do
	if psql_at "$ci" -c "$sql" 2>"$T/err"; then
		fail "the database allowed: $sql"
	fi
	grep -q "append-only" "$T/err" || fail "$sql failed for another reason: $(cat "$T/err")"
done
psql_at "$ci" -c "CREATE ROLE intruder LOGIN; GRANT SELECT, INSERT ON audit TO intruder"
for sql in "UPDATE audit SET actor = 'mallory'" "DELETE FROM audit" "TRUNCATE audit"; do
	if psql_at "$base dbname=coffer user=intruder" -c "$sql" 2>"$T/err"; then
		fail "a non-owner role was allowed: $sql"
	fi
	grep -q "permission denied" "$T/err" || fail "intruder: $sql: $(cat "$T/err")"
done
"$coord" audit-verify -c "$conf" >/dev/null || fail "verify after refused tampering failed"
pass "UPDATE, DELETE and TRUNCATE refused by the database, for the owner and other roles"

# Agents and services are never removed or renamed (events and backups name
# them without a foreign key: migration 10).
psql_at "$ci" -c "INSERT INTO services (name, owner) VALUES ('kept', 'x');
	INSERT INTO agents (name, service, pubkey, enrolled_by) VALUES ('kept-1', 'kept', sha256('k'), 'test')" >/dev/null
for sql in "DELETE FROM agents WHERE name = 'kept-1'" "UPDATE agents SET name = 'other' WHERE name = 'kept-1'" \
	"TRUNCATE agents CASCADE" "DELETE FROM services WHERE name = 'kept'" \
	"UPDATE services SET name = 'other' WHERE name = 'kept'" "TRUNCATE services CASCADE"; do
	if psql_at "$ci" -c "$sql" 2>"$T/err"; then
		fail "the database allowed: $sql"
	fi
	grep -q "never removed or renamed" "$T/err" || fail "$sql failed for another reason: $(cat "$T/err")"
done
[[ $(psql_at "$ci" -c "SELECT count(*) FROM agents WHERE name = 'kept-1'") == 1 ]] || fail "the agent is gone"
pass "agents and services: DELETE, TRUNCATE and renaming refused by the database"

# The name checks (migration 12: a length and an unbounded class instead of
# a bounded repetition) keep their exact bounds.
rep() { printf "%${2}s" "" | tr ' ' "$1"; }
check_value() { # accepted|refused table column value
	local sql
	case $2.$3 in
	events.type) sql="INSERT INTO events (agent, seq, service, type) VALUES ('kept-1', nextval('events_id_seq'), 'kept', '$4')" ;;
	backups.id) sql="INSERT INTO backups (id, service, agent, kind, status, started_at) VALUES ('$4', 'kept', 'kept-1', 'logical', 'running', now())" ;;
	wal_segments.segment) sql="INSERT INTO wal_segments (service, system_identifier, timeline, segment, stored_bytes, stored_sha256, archived_at) VALUES ('kept', 1, 1, '$4', 1, sha256('x'), now())" ;;
	esac
	if psql_at "$ci" -c "BEGIN; $sql; ROLLBACK" >/dev/null 2>"$T/err"; then
		[[ $1 == accepted ]] || fail "$2.$3 accepted '$4'"
	else
		[[ $1 == refused ]] || fail "$2.$3 refused '$4': $(cat "$T/err")"
		grep -q "violates check constraint \"$2_$3_check\"" "$T/err" || fail "$2.$3 '$4': $(cat "$T/err")"
	fi
}
check_value accepted events type "b$(rep a 63)"
check_value refused events type "b$(rep a 64)"
check_value refused events type "Backup.started"
check_value refused events type "backup-started"
check_value accepted backups id "B$(rep : 127)"
check_value refused backups id "B$(rep : 128)"
check_value refused backups id ":b"
check_value refused backups id "b/c"
check_value accepted wal_segments segment "$(rep F 24)"
check_value accepted wal_segments segment "$(rep 0 24).partial"
check_value refused wal_segments segment "$(rep 0 23)"
check_value refused wal_segments segment "$(rep 0 32)"
check_value refused wal_segments segment "$(rep 0 24).partiaX"
check_value refused wal_segments segment "$(rep a 24)"
pass "name checks keep their bounds: 64-byte types, 128-byte backup ids, 24-digit segments"

out=$("$drv" prepared-reuse "$ci") || fail "prepared-reuse: $out"
[[ $out == "41 42" ]] || fail "one buffer, two statements through the prepared cache: got '$out', want '41 42'"
pass "the prepared-statement cache runs the text it is given, even from a reused buffer"
out=$("$drv" atomic "$ci" "$T/audit.key") || fail "audit rows and their transaction: $out"
out=$("$drv" concurrent "$ci" "$T/audit.key" 4 50) || fail "concurrent appenders: $out"
# The agent put in by hand above is named by verify until its enrollment is
# in the chain: every key must be one an agent.enroll row names.
"$coord" audit-verify -c "$conf" >"$T/v2" 2>"$T/err" && fail "a hand-written agents row verified"
grep -q "agent kept-1 has public key .* which no agent.enroll row names" "$T/err" ||
	fail "verify does not name the hand-written agent: $(cat "$T/err")"
fp=$(psql_at "$ci" -c "SELECT left(encode(sha256(pubkey), 'hex'), 32) FROM agents WHERE name = 'kept-1'")
out=$("$drv" audit-row "$ci" "$T/audit.key" agent.enroll kept-1 "{\"agent\":\"kept-1\",\"fingerprint\":\"$fp\"}") ||
	fail "audit-row: $out"
"$coord" audit-verify -c "$conf" >"$T/v2" || fail "verify after concurrent appends: $(cat "$T/err")"
grep -q "head chain_seq 302" "$T/v2" || fail "after 100 + 1 + 200 + 1 rows: $(cat "$T/v2")"
pass "audit rows commit and roll back with their caller; 4 concurrent appenders keep one chain"

# --- tampering as superuser -------------------------------------------------
# Each case works on its own copy of the intact catalog.
tamper() {
	local name=$1 sql=$2
	psql_at "$base dbname=postgres" -c "CREATE DATABASE $name TEMPLATE coffer"
	psql_at "$base dbname=$name" -c "ALTER TABLE audit DISABLE TRIGGER USER; ALTER TABLE audit_head DISABLE TRIGGER USER; $sql"
	write_conf "$T/$name.conf" "$base dbname=$name"
}
verify_names() {
	local name=$1 seq=$2 why=$3 rc=0
	"$coord" audit-verify -c "$T/$name.conf" >"$T/out" 2>"$T/err" || rc=$?
	((rc == 1)) || fail "$name: audit-verify exited $rc: $(cat "$T/out" "$T/err")"
	grep -q "audit chain broken at chain_seq $seq: .*$why" "$T/err" ||
		fail "$name: want chain_seq $seq ($why): $(cat "$T/err")"
	"$coord" audit-verify -c "$T/$name.conf" --output json >"$T/out" 2>/dev/null || true
	grep -q "\"bad_seq\":$seq" "$T/out" || fail "$name: json: $(cat "$T/out")"
	pass "$name: $(cut -c1-160 "$T/err")"
}

tamper altered "UPDATE audit SET details = '{\"zeta\": 41, \"alpha\": \"nothing to see\"}' WHERE chain_seq = 42"
verify_names altered 42 "altered"

tamper actor "UPDATE audit SET actor = 'someone-else' WHERE chain_seq = 7"
verify_names actor 7 "altered"

tamper retimed "UPDATE audit SET at = at + interval '1 microsecond' WHERE chain_seq = 80"
verify_names retimed 80 "altered"

tamper deleted "DELETE FROM audit WHERE chain_seq = 57"
verify_names deleted 57 "missing"

tamper renumbered "DELETE FROM audit WHERE chain_seq = 57;
	UPDATE audit SET chain_seq = chain_seq + 1000000 WHERE chain_seq > 57;
	UPDATE audit SET chain_seq = chain_seq - 1000001 WHERE chain_seq > 1000000;
	UPDATE audit_head SET chain_seq = chain_seq - 1"
verify_names renumbered 57 "does not follow"

tamper tail "DELETE FROM audit WHERE chain_seq > 298"
verify_names tail 299 "missing from the end"

tamper forged "INSERT INTO audit (chain_seq, at, actor, action, subject, details, prev_mac, mac)
	SELECT 303, now(), 'mallory', 'backup.delete', 'billing', '{}', a.mac, a.mac
	FROM audit a WHERE chain_seq = 302;
	UPDATE audit_head SET chain_seq = 303"
verify_names forged 303 "altered"

tamper seqzero "ALTER TABLE audit DROP CONSTRAINT audit_chain_seq_check;
	INSERT INTO audit (chain_seq, at, actor, action, subject, details, prev_mac, mac)
	SELECT 0, now(), 'mallory', 'backup.delete', '', '{}', mac, mac FROM audit WHERE chain_seq = 1"
verify_names seqzero 0 "out of sequence"

"$coord" audit-keygen --out "$T/other.key" >/dev/null
out=$("$drv" verify "$ci" "$T/other.key") && fail "another key verified the chain: $out"
[[ $out == "broken 1 "* ]] || fail "another key: $out"
pass "the wrong key fails at chain_seq 1"

"$coord" audit-verify -c "$conf" >/dev/null || fail "the original catalog stopped verifying"
pass "done"
