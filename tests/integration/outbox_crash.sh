#!/usr/bin/env bash
# The outbox under kill -9: two writers append (one also acks, so kills land
# in acks, rotations and compactions too), both are killed at a random moment,
# and the outbox must then open cleanly and still hold, exactly once, every
# seq a writer printed as saved (or have it acked). Seqs must never repeat.
# Power loss cannot be simulated here; the unit tests cut the last record at
# every byte instead, and the code fdatasyncs before reporting success.
set -euo pipefail

: "${COFFER_BUILD:?set COFFER_BUILD to the build directory}"
bin="$COFFER_BUILD/bin/outbox_crash_itest"
rounds=${OUTBOX_CRASH_ROUNDS:-20}
work=$(mktemp -d "${TMPDIR:-/tmp}/outbox-crash.XXXXXX")
trap 'rm -rf "$work"' EXIT
state="$work/state"
mkdir "$state"

fail() {
	echo "outbox_crash: $*" >&2
	exit 1
}

reap() {
	local pid=$1 who=$2 rc=0
	wait "$pid" 2>/dev/null || rc=$?
	# 137: killed by us, as intended. Anything else is the writer failing.
	if [[ $rc -ne 137 && $rc -ne 0 ]]; then
		fail "writer $who exited with status $rc: $(cat "$work/err.$who")"
	fi
}

for round in $(seq 1 "$rounds"); do
	"$bin" append "$state" 1000000 40 >"$work/saved.$round.a" 2>"$work/err.$round.a" &
	a=$!
	"$bin" append "$state" 1000000 0 >"$work/saved.$round.b" 2>"$work/err.$round.b" &
	b=$!
	if ((round % 2 == 1)); then
		# Odd rounds kill mid-stream; even ones may hit start-up and recovery.
		for _ in $(seq 1 300); do
			[[ -s "$work/saved.$round.a" && -s "$work/saved.$round.b" ]] && break
			sleep 0.01
		done
	fi
	sleep "$(printf '0.%03d' $((RANDOM % 51)))"
	kill -9 "$a" "$b" 2>/dev/null || true
	reap "$a" "$round.a"
	reap "$b" "$round.b"

	if ! "$bin" check "$state" >"$work/check.$round" 2>"$work/checkerr.$round"; then
		fail "round $round: the outbox does not open cleanly after kill -9: $(cat "$work/checkerr.$round")"
	fi
	# Every seq ever printed as saved: unique, and still there or acked.
	cat "$work"/saved.* >"$work/all-saved"
	dups=$(sort -n "$work/all-saved" | uniq -d | head -5)
	[[ -z "$dups" ]] || fail "round $round: seqs reported saved twice: $dups"
	awk -v round="$round" '
		NR == FNR {
			if (FNR == 1) {
				if ($1 != "acked") { print "bad check output"; exit 1 }
				acked = $2; prev = acked; next
			}
			if ($1 <= prev) { print "round " round ": seq " $1 " after " prev; exit 1 }
			if ($1 in present) { print "round " round ": seq " $1 " twice"; exit 1 }
			present[$1] = 1; prev = $1; next
		}
		$1 > acked && !($1 in present) {
			print "round " round ": seq " $1 " was reported saved but is gone (acked " acked ")"
			exit 1
		}
	' "$work/check.$round" "$work/all-saved" >"$work/verdict" || fail "$(cat "$work/verdict")"
	grep -q "torn tail" "$work"/checkerr."$round" && echo "round $round: torn tail repaired"
done

saved=$(wc -l <"$work/all-saved")
((saved > 0)) || fail "no writer saved anything in $rounds rounds: the test proved nothing"
echo "outbox_crash: $rounds rounds, $saved records reported saved, none lost or doubled," \
	"$(($(wc -l <"$work/check.$rounds") - 1)) unacked at the end"
