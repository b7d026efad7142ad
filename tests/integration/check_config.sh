#!/usr/bin/env bash
# coffer-coordinator check-config: a good file says "ok: N services" and
# exits 0 without touching a catalog (there is none here); each broken
# policy exits 2 with one stderr line naming file:line, the service, the key
# and the rule; --output json lists each service's policy version, which
# follows the meaning of the policy, not its spelling.
source "$(dirname "$0")/lib.sh"
t_init check_config
coord=$COFFER_BIN/coffer-coordinator

head_conf() {
	cat <<EOC
[coordinator]
listen = tcp://127.0.0.1:1
catalog = host=/nonexistent dbname=none
audit_key = $T/no-such-audit.key
EOC
}

{
	head_conf
	cat <<'EOC'
[service.billing]
owner = team-payments
schedule = 0 2 * * *
timezone = Europe/Rome
retention.daily = 7
retention.weekly = 4
retention.monthly = 12
retention.yearly = 1
retention.min_redundancy = 2
pitr.window = 7d
compliance = gdpr
compliance.max_retention = 400d
[service.ledger]
owner = team-ledger
schedule = 0 3 * * *
retention.yearly = 7
compliance = hipaa
EOC
} >"$T/good.conf"
out=$("$coord" check-config -c "$T/good.conf" 2>"$T/err") || fail "good config refused: $(cat "$T/err")"
[[ $out == "ok: 2 services" ]] || fail "unexpected output: $out"
pass "a valid config: ok: 2 services, no catalog needed"
grep -q "warning: no \[repository.dr\]: the audit chain head is exported nowhere" "$T/err" ||
	fail "no warning about the missing outside anchor: $(cat "$T/err")"
pass "without a DR repository check-config warns that the local mark is the only outside anchor"

json=$("$coord" check-config -c "$T/good.conf" --output json) || fail "json output failed"
v1=$(grep -o '"name":"billing","policy_version":"[0-9a-f]\{64\}"' <<<"$json") ||
	fail "no billing policy version in: $json"
# Same meaning, different spelling: same version.
sed -e 's/^pitr.window = 7d/pitr.window = 168h/' -e 's/^schedule = 0 2/schedule = 0  2/' \
	"$T/good.conf" >"$T/respelled.conf"
v2=$("$coord" check-config -c "$T/respelled.conf" --output json | grep -o '"name":"billing","policy_version":"[0-9a-f]\{64\}"')
[[ $v1 == "$v2" ]] || fail "respelling changed the policy version: $v1 vs $v2"
sed 's/^retention.daily = 7/retention.daily = 8/' "$T/good.conf" >"$T/changed.conf"
v3=$("$coord" check-config -c "$T/changed.conf" --output json | grep -o '"name":"billing","policy_version":"[0-9a-f]\{64\}"')
[[ $v1 != "$v3" ]] || fail "a changed policy kept its version"
pass "policy versions follow meaning, not spelling"

# refuse NAME SED-EXPRESSION PATTERN: the edited file exits 2 with one line matching PATTERN.
refuse() {
	local name=$1 expr=$2 pattern=$3 rc=0
	sed "$expr" "$T/good.conf" >"$T/$name.conf"
	"$coord" check-config -c "$T/$name.conf" >"$T/out" 2>"$T/err" || rc=$?
	[[ $rc == 2 ]] || fail "$name: exit $rc, want 2; stderr: $(cat "$T/err")"
	[[ $(wc -l <"$T/err") == 1 ]] || fail "$name: not one line: $(cat "$T/err")"
	grep -q -- "$pattern" "$T/err" || fail "$name: want '$pattern' in: $(cat "$T/err")"
	[[ ! -s $T/out ]] || fail "$name: printed to stdout: $(cat "$T/out")"
}
refuse manual 's/^schedule = 0 2 \* \* \*/schedule = manual/' \
	"manual.conf:7: \[service.billing\] schedule = 'manual': a manual-only schedule is refused"
refuse never 's/^schedule = 0 3 \* \* \*/schedule = 0 0 30 2 */' \
	"never.conf:19: \[service.ledger\] schedule.*never fires"
refuse noretention '/^retention.yearly = 7/d' \
	"noretention.conf:17: \[service.ledger\] service ledger keeps no backups"
refuse gdpr 's/^retention.yearly = 1/retention.yearly = forever/' \
	"gdpr.conf:12: \[service.billing\] retention.yearly: keeps backups forever.*rule: gdpr"
refuse hipaa 's/^retention.yearly = 7/retention.yearly = 5/' \
	"hipaa.conf:20: \[service.ledger\] retention.yearly:.*rule: hipaa"
refuse unknown 's/^retention.min_redundancy = 2/retention.minimum = 2/' \
	"unknown.conf:13: .*retention.minimum"
pass "manual-only, never-firing, no retention, gdpr, hipaa and unknown keys each refused (exit 2, one line)"

rc=0
"$coord" check-config -c "$T/none.conf" 2>"$T/err" || rc=$?
[[ $rc == 2 ]] || fail "missing file: exit $rc"
grep -q "none.conf" "$T/err" || fail "missing file not named: $(cat "$T/err")"
pass "a missing file is named"
