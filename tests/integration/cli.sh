#!/usr/bin/env bash
# The command-line contract scripts rely on, for all three executables:
# --help and --version succeed; an unknown subcommand or flag, or a missing
# required option, exits 2 with one line naming the problem plus the usage;
# a command that fails on bad input exits 1 with one line saying why.
source "$(dirname "$0")/lib.sh"
t_init cli

expect() { # want_status label command...
	local want=$1 label=$2 rc=0
	shift 2
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[[ $rc == "$want" ]] || fail "$label: exit $rc, want $want; stderr: $(cat "$T/err")"
}

for bin in coffer-agent coffer-coordinator coffer; do
	b=$COFFER_BIN/$bin
	expect 0 "$bin --help" "$b" --help
	grep -qi "usage" "$T/out" || fail "$bin --help prints no usage"
	expect 0 "$bin --version" "$b" --version
	grep -q "[0-9]\+\.[0-9]\+" "$T/out" || fail "$bin --version prints no version"
	expect 2 "$bin no-such-command" "$b" no-such-command
	grep -q "no-such-command" "$T/err" || fail "$bin: unknown command not named: $(cat "$T/err")"
	grep -qi "usage" "$T/err" || fail "$bin: unknown command without usage"
	expect 2 "$bin --no-such-flag" "$b" --no-such-flag
done
a=$COFFER_BIN/coffer-agent
expect 2 "backup without -c" "$a" backup
grep -q -- "-c" "$T/err" || fail "backup without -c does not say what is missing"
expect 2 "backup --bogus" "$a" backup -c x --bogus
grep -q -- "--bogus" "$T/err" || fail "unknown flag not named: $(cat "$T/err")"
expect 2 "restore without --target-db" "$a" restore -c x --backup latest
expect 2 "restore --jobs zero" "$a" restore -c x --backup latest --target-db t --jobs 0
expect 2 "list --output yaml" "$a" list -c x --output yaml

# A config that does not exist (exit 1) and one with an unknown key (a usage
# error: exit 2), each named.
expect 1 "missing config" "$a" list -c "$T/none.conf"
grep -q "none.conf" "$T/err" || fail "missing config not named: $(cat "$T/err")"
printf '[agent]\nnmae = x\n' >"$T/bad.conf"
expect 2 "unknown key" "$a" list -c "$T/bad.conf"
grep -q "bad.conf:2" "$T/err" || fail "unknown key without file:line: $(cat "$T/err")"
[[ $(wc -l <"$T/err") == 1 ]] || fail "config error is not one line: $(cat "$T/err")"
pass "help, version, usage errors and config errors exit as documented"

# The shipped example configs stay valid.
# The example holds a routing key: as installed (0644) it is refused naming the
# chmod, and once the operator has run it, it loads.
cp "$COFFER_SRC/deploy/examples/coordinator.conf" "$T/example-coordinator.conf"
chmod 644 "$T/example-coordinator.conf"
if "$COFFER_BIN/coffer-coordinator" check-config -c "$T/example-coordinator.conf" >/dev/null 2>"$T/mode.err"; then
	fail "a 0644 coordinator.conf holding a routing key passed check-config"
fi
grep -q "readable by group or others (mode 0644) and it holds \[alerts\] routing_key.*chmod 600 $T/example-coordinator.conf" "$T/mode.err" ||
	fail "the mode refusal does not name the key and the chmod: $(cat "$T/mode.err")"
pass "a group/world-readable config holding a secret is refused naming the chmod"
chmod 600 "$T/example-coordinator.conf"
"$COFFER_BIN/coffer-coordinator" check-config -c "$T/example-coordinator.conf" >/dev/null ||
	fail "deploy/examples/coordinator.conf does not pass check-config"
pass "deploy/examples/coordinator.conf passes check-config (mode 0600)"
