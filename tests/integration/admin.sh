#!/usr/bin/env bash
# The coordinator's admin endpoint (coordinator/serve/admin.c) against a real
# catalog, through coord_admin_handle (driver admin_itest) with envelopes
# signed by operator keys made by the real `coffer init`:
# - every command works for role operator, with the figures the catalog
#   holds (backups inserted with SQL stand in for agents' events);
# - role auditor reads but is refused every change (unauthorized);
# - an unknown operator, a bad signature, a replayed nonce, a stale or
#   future sent_at, malformed bytes, an unknown command or argument are
#   refused, and every refusal is in the audit log with its reason;
# - old nonces are pruned; the audit chain still verifies afterwards;
# - the `coffer` CLI's own checks: usage errors exit 2, an unreachable
#   coordinator is one line and exit 1, init never overwrites a key.
source "$(dirname "$0")/lib.sh"

t_init admin
coord="$COFFER_BIN/coffer-coordinator"
cli="$COFFER_BIN/coffer"
drv="$COFFER_BIN/admin_itest"
[[ -x "$coord" && -x "$cli" && -x "$drv" ]] || fail "build coffer-coordinator, coffer and admin_itest first"

catalog_start "$T/pg"
sql() { psql_at "$ci" -c "$1"; }

# --- keys ---------------------------------------------------------------------
for who in alice audrey mallory agent1 agent2; do
	"$cli" init --out "$T/$who.key" >"$T/$who.pub" 2>"$T/init.err" || fail "coffer init $who: $(cat "$T/init.err")"
done
grep -Eq '^[0-9a-f]{64}$' "$T/alice.pub" || fail "coffer init printed: $(cat "$T/alice.pub")"
[[ $(stat -c %a "$T/alice.key") == 600 ]] || fail "operator key mode is $(stat -c %a "$T/alice.key")"
rc=0
"$cli" init --out "$T/alice.key" >/dev/null 2>"$T/err" || rc=$?
((rc == 1)) && grep -q "exists" "$T/err" || fail "init over an existing key: rc=$rc $(cat "$T/err")"
pass "coffer init makes a 0600 key, prints its public key, never overwrites"

catalog_audit_key
cat >"$T/coordinator.conf" <<EOF
[coordinator]
listen = tcp://127.0.0.1:7443
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/state
[operator.alice]
public_key = $T/alice.pub
role = operator
[operator.audrey]
public_key = $T/audrey.pub
role = auditor
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
[service.ledger]
owner = team-ledger
schedule = 0 3 * * *
retention.daily = 7
[service.orders]
owner = team-orders
schedule = 0 4 * * *
retention.daily = 7
EOF
conf="$T/coordinator.conf"
catalog_migrate "$conf"

# call OPERATOR KEY COMMAND [driver args...]: one request; the reply line in $T/reply.
call() {
	local op=$1 key=$2 cmd=$3
	shift 3
	"$drv" call -c "$conf" --key "$T/$key.key" --operator "$op" --command "$cmd" "$@" \
		>"$T/reply" 2>"$T/drv.err" || fail "driver $cmd: $(cat "$T/drv.err")"
}
# expect STATUS PATTERN WHAT: the last reply has STATUS and matches PATTERN.
expect() {
	local st=$1 pat=$2 what=$3
	grep -q "^status=$st	" "$T/reply" || fail "$what: want status $st, got: $(cat "$T/reply")"
	grep -Eq -- "$pat" "$T/reply" || fail "$what: reply does not match '$pat': $(cat "$T/reply")"
	pass "$what"
}
json() { sed -n 's/.*\tjson=//p' "$T/reply" | tail -1; }

# --- operator: every command ----------------------------------------------------
call alice alice status
expect ok '"service":"billing".*"last_backup":null.*"service":"ledger"' "status with no backups yet"

call alice alice agents.enroll --arg service=billing --arg agent=billing-db-1 --arg "pubkey=$(cat "$T/agent1.pub")"
expect ok '"agent":"billing-db-1".*"already":false' "operator enrolls an agent"
call alice alice agents.enroll --arg service=billing --arg agent=billing-db-1 --arg "pubkey=$(cat "$T/agent1.pub")"
expect ok '"already":true' "enrolling the same agent again is a no-op"
call alice alice agents.enroll --arg service=ledger --arg agent=billing-db-1 --arg "pubkey=$(cat "$T/agent2.pub")"
expect refused 'enrolled for service billing' "an agent of billing cannot be enrolled for ledger"
call alice alice agents.enroll --arg service=nosuch --arg agent=x-1 --arg "pubkey=$(cat "$T/agent2.pub")"
expect refused 'service nosuch is not defined.*hint' "enrolling for an unknown service is refused"
"$cli" init --out "$T/agent3.key" >/dev/null 2>&1 || fail "coffer init agent3"
openssl pkey -in "$T/agent3.key" -pubout >"$T/agent3.pem" 2>/dev/null || fail "openssl pkey -pubout"
call alice alice agents.enroll --arg service=ledger --arg agent=ledger-db-1 --arg "pubkey=$(cat "$T/agent3.pem")"
expect ok '"agent":"ledger-db-1","service":"ledger","fingerprint":"[0-9a-f]{32}"' "a PEM public key is accepted too"
call alice alice agents.enroll --arg service=billing --arg agent=x-2 --arg pubkey=nothex
expect refused "public key" "a public key that does not parse is refused"
call alice alice agents.enroll --arg service=billing --arg agent=x-3
expect refused 'needs the argument pubkey' "a missing argument is named"
[[ $(sql "SELECT enrolled_by FROM agents WHERE name = 'billing-db-1'") == operator:alice ]] ||
	fail "enrolled_by is not operator:alice"

call alice alice agents.list
expect ok '"name":"billing-db-1","service":"billing"' "agents.list"

# Backups as the intake would record them: received_at when the start was
# received, settled_at when the outcome was (the coordinator's clock, which
# "last" and "age" go by).
sql "INSERT INTO backups (id, service, agent, kind, status, started_at, finished_at, received_at,
       settled_at, stored_bytes, plain_bytes, stored_sha256, manifest, key_id, verify_state, verified_at)
     VALUES ('b-old', 'billing', 'billing-db-1', 'logical', 'completed', now() - interval '2 days',
       now() - interval '2 days' + interval '90 seconds', now() - interval '2 days',
       now() - interval '2 days' + interval '90 seconds', 1000, 4000, decode(repeat('ab', 32), 'hex'), '{}', 'k1', 'verified', now()),
     ('b-new', 'billing', 'billing-db-1', 'logical', 'completed', now() - interval '1 hour',
       now() - interval '1 hour' + interval '42 seconds', now() - interval '1 hour',
       now() - interval '1 hour' + interval '42 seconds', 2048, 8192, decode(repeat('cd', 32), 'hex'), '{}', 'k1', 'verified', now())"
sql "INSERT INTO backups (id, service, agent, kind, status, started_at, finished_at, received_at,
       settled_at, failure_reason)
     VALUES ('b-fail', 'billing', 'billing-db-1', 'logical', 'failed', now() - interval '30 minutes',
       now() - interval '29 minutes', now() - interval '30 minutes', now() - interval '29 minutes',
       'pg_dump: connection refused')"
sql "UPDATE agents SET last_contact_at = now() - interval '5 minutes' WHERE name = 'billing-db-1'"

call alice alice status --arg service=billing
expect ok '"last_backup":\{"id":"b-new".*"duration_ms":42000.*"plaintext_bytes":8192.*"stored_bytes":2048.*"completed":2,"failed":1' \
	"status shows the last successful backup, counts and agent"
age=$(json | sed -n 's/.*"age_seconds":\([0-9]*\).*/\1/p')
((age >= 3500 && age <= 3650)) || fail "age_seconds $age is not about an hour"
json | grep -q '"last_contact_at":"20' || fail "status lacks the agent's last contact: $(json)"
json | grep -q '"service":"ledger"' && fail "status --service billing also listed ledger"
call alice alice status --arg service=nosuch
expect refused 'not defined' "status of an unknown service is refused"

call alice alice backups.list --arg service=billing
expect ok '"id":"b-fail".*"id":"b-new".*"id":"b-old"' "backups.list is newest first"
json | grep -q '"failure_reason":"pg_dump: connection refused"' || fail "backups.list lacks the failure reason"
call alice alice backups.list --arg service=billing --arg limit=1
expect ok '"backups":\[\{"id":"b-fail"[^]]*\],"windows":\[' "backups.list honours limit (the windows follow the one backup)"
call alice alice backups.list --arg service=billing --arg limit=100000
expect refused 'limit' "a limit over the maximum is refused"

call alice alice backup.run --arg service=billing
expect ok '"command_id":[0-9]+.*"agent":"billing-db-1"' "backup.run queues a command"
cid=$(json | sed -n 's/.*"command_id":\([0-9]*\).*/\1/p')
[[ $(sql "SELECT service || ' ' || kind || ' ' || requested_by || ' ' || (delivered_at IS NULL)
          FROM agent_commands WHERE id = $cid") == "billing backup operator:alice true" ]] ||
	fail "agent_commands row for $cid: $(sql "SELECT * FROM agent_commands")"
call alice alice backup.run --arg service=orders
expect refused 'no enrolled agent' "backup.run for a service without an agent is refused"

call alice alice audit.list
expect ok '"action":"admin.agents.enroll"' "audit.list shows operator commands"
json | grep -q '"actor":"operator:alice"' || fail "audit.list lacks actor operator:alice"
call alice alice audit.list --arg since=2099-01-01T00:00:00Z
expect ok '"rows":\[\]' "audit.list since a future time is empty"
call alice alice audit.list --arg since=yesterday
expect refused 'not a time' "audit.list with a bad since is refused"

call alice alice audit.verify
expect ok '"intact":true' "audit.verify reports an intact chain"

call alice alice agents.revoke --arg agent=billing-db-1
expect ok '"already":false' "operator revokes an agent"
call alice alice agents.revoke --arg agent=nobody
expect refused 'nobody' "revoking an unknown agent is refused"
[[ $(sql "SELECT revoked_by FROM agents WHERE name = 'billing-db-1'") == operator:alice ]] ||
	fail "revoked_by is not operator:alice"

# --- auditor: reads only -----------------------------------------------------------
for c in status agents.list audit.list audit.verify; do
	call audrey audrey $c
	expect ok '.' "auditor may run $c"
done
call audrey audrey backups.list --arg service=billing
expect ok '"id":"b-new"' "auditor may run backups.list"
call audrey audrey agents.enroll --arg service=billing --arg agent=billing-db-2 --arg "pubkey=$(cat "$T/agent2.pub")"
expect unauthorized 'role auditor.*hint' "auditor may not enroll"
call audrey audrey agents.revoke --arg agent=billing-db-1
expect unauthorized 'role auditor' "auditor may not revoke"
n_before=$(sql "SELECT count(*) FROM agent_commands")
call audrey audrey backup.run --arg service=billing
expect unauthorized 'role auditor' "auditor may not run a backup"
[[ $(sql "SELECT count(*) FROM agent_commands") == "$n_before" ]] || fail "a refused backup.run queued a command"
[[ $(sql "SELECT count(*) FROM agents WHERE name = 'billing-db-2'") == 0 ]] || fail "a refused enroll enrolled"

# --- refusals ----------------------------------------------------------------------------
call mallory mallory status
expect unknown_identity 'operator mallory is not known.*hint' "an unknown operator is refused"
call alice audrey status
expect bad_signature 'does not verify' "a request signed with another key is refused"
call alice alice status --repeat 2
head -1 "$T/reply" | grep -q '^status=ok' || fail "first of a replayed pair: $(cat "$T/reply")"
expect replayed 'already served' "the same envelope a second time is refused"
call alice alice status --skew-ms -600000
expect refused 'behind the coordinator.s clock.*NTP' "a request sent 10 minutes ago is refused"
call alice alice status --skew-ms 600000
expect refused 'ahead of the coordinator.s clock' "a request from 10 minutes in the future is refused"
call alice alice status --garbage
expect malformed '.' "bytes that are no envelope are refused"
call alice alice status --truncate
expect malformed '.' "a truncated envelope is refused"
call alice alice drop.tables
expect refused 'unknown admin command' "an unknown command is refused"
call alice alice status --arg colour=red
expect refused 'takes no argument' "an unknown argument is refused"

for reason in unknown_operator bad_signature replayed stale malformed unauthorized unknown_command \
	unknown_argument; do
	n=$(sql "SELECT count(*) FROM audit WHERE action = 'admin.refused' AND details->>'reason' = '$reason'")
	((n >= 1)) || fail "no admin.refused audit row with reason $reason"
done
[[ $(sql "SELECT count(*) FROM audit WHERE action = 'admin.refused' AND actor = 'operator:mallory'") -ge 1 ]] ||
	fail "the unknown operator's refusal is not audited under its claimed name"
[[ $(sql "SELECT count(*) FROM audit WHERE action = 'admin.status' AND actor = 'operator:audrey'") -ge 1 ]] ||
	fail "the auditor's reads are not audited"
[[ $(sql "SELECT count(*) FROM audit WHERE action = 'admin.backup.run' AND details->>'status' = 'ok'") == 1 ]] ||
	fail "backup.run is not audited once"
pass "every refusal is audited with its reason and the claimed operator"

# Old nonces go; fresh ones stay.
sql "INSERT INTO admin_nonces (nonce, operator, seen_at) VALUES (decode(repeat('ee', 16), 'hex'), 'alice', now() - interval '1 hour')"
call alice alice status
expect ok '.' "a request after an old nonce"
[[ $(sql "SELECT count(*) FROM admin_nonces WHERE nonce = decode(repeat('ee', 16), 'hex')") == 0 ]] ||
	fail "a nonce older than twice the skew window was not pruned"
(($(sql "SELECT count(*) FROM admin_nonces") >= 5)) || fail "recent nonces were pruned"
pass "nonces older than twice the skew window are pruned"

# A listing stays under its size budget whatever the rows hold.
"$drv" append-big -c "$conf" 12 || fail "appending big audit rows"
call alice alice audit.list
expect ok '"truncated":true' "audit.list with 12 rows of 60 KiB stops at its budget"
n=$(json | grep -o '"chain_seq":' | wc -l)
((n >= 4 && n <= 9)) || fail "audit.list returned $n rows for a 512 KiB budget"
last=$(json | grep -o '"chain_seq":[0-9]*' | tail -1 | cut -d: -f2)
[[ $last == $(sql "SELECT max(chain_seq) - 1 FROM audit") ]] ||
	fail "audit.list without since does not end with the newest rows (last $last)"

"$coord" audit-verify -c "$conf" >"$T/out" 2>"$T/err" || fail "audit-verify after the admin requests: $(cat "$T/out" "$T/err")"
grep -q "intact" "$T/out" || fail "audit-verify: $(cat "$T/out")"
pass "coffer-coordinator audit-verify: $(cat "$T/out")"

# --- the CLI without a coordinator ------------------------------------------------------
expect_rc() {
	local want=$1 pat=$2 what=$3 rc=0
	shift 3
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	((rc == want)) || fail "$what: exit $rc, want $want: $(cat "$T/out" "$T/err")"
	grep -Eq -- "$pat" "$T/err" || fail "$what: stderr does not match '$pat': $(cat "$T/err")"
	pass "$what: $(head -1 "$T/err" | cut -c1-140)"
}
cat >"$T/cli.conf" <<EOF
[coffer]
url = tcp://127.0.0.1:1
operator = alice
key = $T/alice.key
timeout = 2s
EOF
expect_rc 2 "--service is required" "backups list without --service is a usage error" \
	"$cli" backups list -c "$T/cli.conf"
expect_rc 2 "--output must be text or json" "a bad --output is a usage error" \
	"$cli" status -c "$T/cli.conf" --output yaml
expect_rc 2 "pass -c FILE or set COFFER_CONFIG" "no configuration is named" \
	env -u COFFER_CONFIG "$cli" status
expect_rc 2 "unknown key" "an unknown cli.conf key is refused" \
	"$cli" status -c <(printf '[coffer]\nurl = tcp://127.0.0.1:1\noperator = a\nkey = /x\ncolour = red\n')
expect_rc 1 "127.0.0.1:1" "an unreachable coordinator is one line and exit 1" \
	env COFFER_CONFIG="$T/cli.conf" "$cli" status
(($(wc -l <"$T/err") == 1)) || fail "unreachable coordinator: more than one line: $(cat "$T/err")"
chmod 644 "$T/alice.key"
expect_rc 1 "alice.key" "a group-readable operator key is refused" "$cli" status -c "$T/cli.conf"
chmod 600 "$T/alice.key"
expect_rc 2 "public key" "enroll checks the agent's key file before sending" \
	"$cli" agents enroll -c "$T/cli.conf" --service billing --agent a-1 --pubkey "$T/cli.conf"

# --- end to end: the real `coffer` over mutual TLS ----------------------------------------
# coffer-coordinator run does not serve [coordinator] admin_listen yet, so the
# driver's `serve` stands in for it: the real wire server (common/wire/net.h) with
# coord_admin_handle behind it on the thread pool.
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
pki="$T/pki"
pki_make "$pki" alice
timeout 180 "$drv" serve -c "$conf" --url "tls+tcp://127.0.0.1:0" --ca "$pki/ca.crt" \
	--cert "$pki/localhost.crt" --key "$pki/localhost.key" --port-file "$T/port" --seconds 170 \
	>"$T/serve.out" 2>"$T/serve.err" &
srv_pid=$!
for _ in $(seq 100); do [[ -s "$T/port" ]] && break; sleep 0.1; done
[[ -s "$T/port" ]] || fail "admin server did not start: $(cat "$T/serve.err")"
port=$(cat "$T/port")
tlsconf() {
	cat <<EOT
[coffer]
url = tls+tcp://127.0.0.1:$port
operator = $1
key = $T/$1.key
ca = $pki/ca.crt
cert = $pki/alice.crt
key_tls = $pki/alice.key
server_name = localhost
timeout = 20s
EOT
}
tlsconf alice >"$T/alice.conf"
tlsconf audrey >"$T/audrey.conf"
export COFFER_CONFIG="$T/alice.conf"

"$cli" status >"$T/out" 2>"$T/err" || fail "coffer status: $(cat "$T/err")"
head -1 "$T/out" | grep -Eq '^SERVICE +LAST BACKUP +FINISHED +AGE +SIZE +DURATION +OK +FAILED +AGENTS +LAST CONTACT$' ||
	fail "status header: $(cat "$T/out")"
grep -Eq '^billing +b-new +20[^ ]+ +[0-9]+m[0-9]+s +2\.0 KiB +42s +2 +1 +billing-db-1\(revoked\) +20' "$T/out" ||
	fail "status row for billing: $(cat "$T/out")"
grep -Eq '^ledger +- ' "$T/out" || fail "status row for ledger: $(cat "$T/out")"
pass "coffer status over TLS: aligned columns with the catalog's figures"
"$cli" status --service billing --output json >"$T/out" || fail "coffer status --output json"
grep -q '"last_backup":{"id":"b-new"' "$T/out" || fail "status json: $(cat "$T/out")"
pass "coffer status --output json is the coordinator's JSON"

"$cli" agents enroll --service billing --agent billing-db-3 --pubkey "$T/agent2.pub" >"$T/out" 2>"$T/err" ||
	fail "coffer agents enroll: $(cat "$T/err")"
grep -q "^enrolled agent billing-db-3 for service billing (key [0-9a-f]\{32\})$" "$T/out" || fail "enroll: $(cat "$T/out")"
"$cli" agents list >"$T/out" || fail "coffer agents list"
grep -Eq '^billing-db-3 +billing +active ' "$T/out" && grep -Eq '^billing-db-1 +billing +revoked ' "$T/out" ||
	fail "agents list: $(cat "$T/out")"
"$cli" backup run --service billing >"$T/out" 2>"$T/err" || fail "coffer backup run: $(cat "$T/err")"
grep -Eq '^queued logical backup for service billing: command [0-9]+ \(agent billing-db-3\)$' "$T/out" ||
	fail "backup run: $(cat "$T/out")"
"$cli" backups list --service billing >"$T/out" || fail "coffer backups list"
[[ $(sed -n 2p "$T/out" | awk '{print $1}') == b-fail && $(sed '/^$/,$d' "$T/out" | wc -l) == 4 ]] &&
	grep -q "^logical   2 points" "$T/out" ||
	fail "backups list: $(cat "$T/out")"
"$cli" audit list --since 1h >"$T/out" || fail "coffer audit list"
grep -Eq ' operator:alice +admin\.backup\.run +billing ' "$T/out" || fail "audit list: $(cat "$T/out")"
"$cli" audit verify >"$T/out" || fail "coffer audit verify: $(cat "$T/out")"
grep -q "^audit chain intact" "$T/out" || fail "audit verify: $(cat "$T/out")"
"$cli" agents revoke billing-db-3 >"$T/out" || fail "coffer agents revoke"
grep -q "^revoked agent billing-db-3$" "$T/out" || fail "revoke: $(cat "$T/out")"
pass "coffer agents enroll/list/revoke, backup run, backups list, audit list/verify over TLS"

expect_rc 1 "role auditor, which may not run backup.run.*hint" "an auditor's coffer backup run is refused" \
	"$cli" backup run --service billing -c "$T/audrey.conf"
(($(wc -l <"$T/err") == 1)) || fail "refusal is more than one line: $(cat "$T/err")"
expect_rc 1 "service nosuch is not defined" "coffer backups list of an unknown service" \
	"$cli" backups list --service nosuch

# Tampering that only a superuser can do: audit verify names the row; put
# back, the chain verifies again.
orig=$(sql "SELECT subject FROM audit WHERE chain_seq = 3")
sql "ALTER TABLE audit DISABLE TRIGGER audit_no_update_delete;
     UPDATE audit SET subject = 'forged' WHERE chain_seq = 3;
     ALTER TABLE audit ENABLE TRIGGER audit_no_update_delete"
rc=0
"$cli" audit verify >"$T/out" 2>"$T/err" || rc=$?
((rc == 1)) && grep -q "^audit chain broken at chain_seq 3: " "$T/out" ||
	fail "coffer audit verify after tampering: rc=$rc $(cat "$T/out" "$T/err")"
pass "coffer audit verify names the altered row and exits 1: $(cat "$T/out")"
sql "ALTER TABLE audit DISABLE TRIGGER audit_no_update_delete;
     UPDATE audit SET subject = '$orig' WHERE chain_seq = 3;
     ALTER TABLE audit ENABLE TRIGGER audit_no_update_delete"
"$cli" audit verify >"$T/out" 2>"$T/err" || fail "audit verify after restoring row 3: $(cat "$T/out" "$T/err")"

kill -TERM "$srv_pid"
wait "$srv_pid" || fail "admin server did not stop cleanly: $(cat "$T/serve.err")"

# --- end to end through `coffer-coordinator run` ([coordinator] admin_listen) ---------------
sed -e 's|^listen = .*|listen = tls+tcp://127.0.0.1:0\nadmin_listen = tls+tcp://127.0.0.1:0|' "$conf" >"$T/daemon.conf"
cat >>"$T/daemon.conf" <<EOF
[tls]
ca = $pki/ca.crt
cert = $pki/localhost.crt
key = $pki/localhost.key
EOF
timeout --foreground 120 "$coord" run -c "$T/daemon.conf" >"$T/coord.out" 2>"$T/coord.err" &
cpid=$!
for _ in $(seq 150); do
	grep -q "coordinator listening" "$T/coord.err" && break
	kill -0 "$cpid" 2>/dev/null || break
	sleep 0.1
done
if grep -q "admin endpoint listening" "$T/coord.err"; then
	assert_no_core "$(pgrep -P "$cpid" | head -1)" "coffer-coordinator run"
	port=$(sed -n 's/.*msg="admin endpoint listening".* port=\([0-9]*\).*/\1/p' "$T/coord.err")
	[[ $port =~ ^[0-9]+$ && $port != 0 ]] || fail "no admin port in the log: $(cat "$T/coord.err")"
	tlsconf alice >"$T/alice.conf"
	tlsconf audrey >"$T/audrey.conf"
	"$cli" status --service billing >"$T/out" 2>"$T/err" || fail "coffer status via the daemon: $(cat "$T/err")"
	grep -Eq '^billing +b-new ' "$T/out" || fail "status via the daemon: $(cat "$T/out")"
	"$cli" backup run --service billing >"$T/out" 2>"$T/err" && fail "backup run without an active agent succeeded"
	grep -q "no enrolled agent" "$T/err" || fail "backup run via the daemon: $(cat "$T/err")"
	"$cli" agents enroll --service billing --agent billing-db-5 --pubkey "$T/mallory.pub" >"$T/out" 2>"$T/err" ||
		fail "coffer agents enroll via the daemon: $(cat "$T/err")"
	"$cli" backup run --service billing >"$T/out" 2>"$T/err" || fail "backup run via the daemon: $(cat "$T/err")"
	grep -q "(agent billing-db-5)" "$T/out" || fail "backup run via the daemon: $(cat "$T/out")"
	rc=0
	"$cli" agents revoke billing-db-5 -c "$T/audrey.conf" >"$T/out" 2>"$T/err" || rc=$?
	((rc == 1)) && grep -q "role auditor" "$T/err" || fail "auditor revoke via the daemon: rc=$rc $(cat "$T/err")"
	"$cli" audit verify >"$T/out" || fail "coffer audit verify via the daemon: $(cat "$T/out")"
	pass "coffer over TLS through coffer-coordinator run: status, enroll, backup run, auditor refused, audit verify"
	kill -TERM "$cpid"
	wait "$cpid" || fail "coffer-coordinator run did not stop cleanly: $(tail -5 "$T/coord.err")"
else
	kill -TERM "$cpid" 2>/dev/null || true
	wait "$cpid" 2>/dev/null || true
	fail "coffer-coordinator run does not serve admin_listen: $(tail -5 "$T/coord.err")"
fi

