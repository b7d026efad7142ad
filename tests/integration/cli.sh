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
# --help at every level: every command and every group of each program,
# read from the program's own --help (so a new command is covered the day it
# is added), answers --help and -h on stdout with exit 0; a group without a
# subcommand, or with an unknown one, exits 2 listing the group's commands.
for bin in coffer-agent coffer-coordinator coffer; do
	b=$COFFER_BIN/$bin
	"$b" --help >"$T/help"
	# "  NAME [SECOND] ARGS": a second lowercase word is part of the name.
	sed -n 's/^  \([a-z][a-z-]*\)\( [a-z][a-z-]*\)\?\( .*\)\?$/\1\2/p' "$T/help" >"$T/cmds"
	n=$(wc -l <"$T/cmds")
	((n >= 8)) || fail "$bin --help lists only $n commands: $(cat "$T/help")"
	groups=$(awk 'NF == 2 { print $1 }' "$T/cmds" | sort -u)
	while read -r -a words; do
		for h in --help -h; do
			expect 0 "$bin ${words[*]} $h" "$b" "${words[@]}" "$h"
			head -1 "$T/out" | grep -q "^usage: $bin ${words[*]}\b" ||
				fail "$bin ${words[*]} $h: no usage line on stdout: $(cat "$T/out")"
			[[ ! -s $T/err ]] || fail "$bin ${words[*]} $h wrote to stderr: $(cat "$T/err")"
		done
		# Help wins over whatever else the line holds (a missing -c, stdin).
		expect 0 "$bin ${words[*]} -c /nonexistent --help" "$b" "${words[@]}" -c /nonexistent --help </dev/null
		expect 0 "$bin help ${words[*]}" "$b" help "${words[@]}"
	done <"$T/cmds"
	for g in $groups; do
		expect 0 "$bin $g --help" "$b" "$g" --help
		while read -r first second; do
			[[ $first == "$g" && -n $second ]] || continue
			grep -q "^  $g $second\b" "$T/out" || fail "$bin $g --help does not list $g $second"
		done <"$T/cmds"
		expect 2 "$bin $g (no subcommand)" "$b" "$g"
		grep -q "^  $g " "$T/err" || fail "$bin $g: missing subcommand does not list them"
		expect 2 "$bin $g no-such-sub" "$b" "$g" no-such-sub
		grep -q "no-such-sub" "$T/err" || fail "$bin $g no-such-sub: not named"
	done
	note "$bin: $n commands and groups '$(echo $groups)' answer --help and -h"
done
pass "--help and -h at every level of all three programs, exit 0 on stdout"

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
