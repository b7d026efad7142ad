#!/usr/bin/env bash
# coffer-agent keygen / seal / unseal through the real binary: a key ring is
# created 0600 and appended to, a multi-MiB file survives seal | unseal
# byte for byte (including after a key rotation), and damaged, cut or
# mis-keyed input fails with exit 1 and one clear line on stderr.
set -euo pipefail

: "${COFFER_BIN:?set COFFER_BIN to the bin directory of a build}"
agent="$COFFER_BIN/coffer-agent"
work=$(mktemp -d "${TMPDIR:-/tmp}/seal-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() {
	echo "seal_cli: $*" >&2
	exit 1
}

# expect_fail STATUS PATTERN CMD...: CMD must exit STATUS with PATTERN on stderr.
expect_fail() {
	local want=$1 pattern=$2 rc=0
	shift 2
	"$@" >"$work/out" 2>"$work/err" || rc=$?
	[[ $rc -eq $want ]] || fail "$* exited $rc, want $want: $(cat "$work/err")"
	grep -q -- "$pattern" "$work/err" || fail "$*: stderr lacks '$pattern': $(cat "$work/err")"
	[[ $(wc -l <"$work/err") -le 2 ]] || fail "$*: more than a line or two on stderr"
}

ring="$work/ring"
id1=$("$agent" keygen --out "$ring" --id first)
[[ $id1 == first ]] || fail "keygen printed '$id1', want 'first'"
[[ $(stat -c %a "$ring") == 600 ]] || fail "new key ring has mode $(stat -c %a "$ring")"
grep -q '^coffer-keyring v1$' "$ring" || fail "key ring lacks its header line"

# Input: random and compressible data, a size that is not a multiple of the chunk.
head -c 3000000 /dev/urandom >"$work/in"
head -c 2000017 < <(yes 'coffer sealed stream test line') >>"$work/in"

"$agent" seal --keyring "$ring" <"$work/in" >"$work/sealed"
"$agent" unseal --keyring "$ring" <"$work/sealed" >"$work/back"
cmp "$work/in" "$work/back" || fail "unseal did not give back the input"
[[ $(head -c 7 "$work/sealed" | tail -c 6) == CFSEAL ]] || fail "sealed output lacks the magic"

# A small chunk size and an empty input.
"$agent" seal --keyring "$ring" --chunk-size 1k <"$work/in" | "$agent" unseal --keyring "$ring" |
	cmp - "$work/in" || fail "round trip with 1k chunks failed"
: >"$work/empty"
"$agent" seal --keyring "$ring" <"$work/empty" >"$work/empty.sealed"
"$agent" unseal --keyring "$ring" <"$work/empty.sealed" | cmp - "$work/empty" ||
	fail "round trip of empty input failed"

# Rotation: a generated id is appended and becomes the newest; old data still opens.
id2=$("$agent" keygen --out "$ring")
[[ $id2 =~ ^k[0-9]{8}T[0-9]{6}Z ]] || fail "generated id '$id2' is not date-based"
[[ $(grep -c -v '^coffer-keyring' "$ring") -eq 2 ]] || fail "keygen did not append"
"$agent" unseal --keyring "$ring" <"$work/sealed" | cmp - "$work/in" ||
	fail "old object no longer opens after a rotation"
"$agent" seal --keyring "$ring" <"$work/empty" >"$work/new.sealed"
grep -q -a "$id2" "$work/new.sealed" || fail "new object does not use the newest key $id2"
expect_fail 1 "already has a key named first" "$agent" keygen --out "$ring" --id first

# Tampering: one flipped bit in the middle of the payload.
size=$(stat -c %s "$work/sealed")
cp "$work/sealed" "$work/bad"
off=$((size / 2))
byte=$(od -An -tu1 -j "$off" -N1 "$work/bad" | tr -d ' ')
oct=$(printf '%03o' $((byte ^ 4)))
printf "\\$oct" | dd of="$work/bad" bs=1 seek="$off" conv=notrunc status=none
expect_fail 1 "failed authentication" "$agent" unseal --keyring "$ring" <"$work/bad"
grep -q "coffer-agent unseal: sealed stream chunk [0-9]* failed authentication" "$work/err" ||
	fail "tamper message does not name the chunk: $(cat "$work/err")"
# Nothing past the bad chunk came out, and what came out is authentic.
[[ $(stat -c %s "$work/out") -lt $off ]] || fail "unseal wrote past the damaged chunk"
cmp -s "$work/out" <(head -c "$(stat -c %s "$work/out")" "$work/in") ||
	fail "unseal wrote bytes that are not the input"

# Cut short, garbage appended, not sealed, wrong ring, loose mode.
head -c $((size - 100)) "$work/sealed" >"$work/cut"
expect_fail 1 "ends inside chunk" "$agent" unseal --keyring "$ring" <"$work/cut"
{ cat "$work/sealed"; echo junk; } >"$work/long"
expect_fail 1 "data after its final chunk" "$agent" unseal --keyring "$ring" <"$work/long"
expect_fail 1 "not a sealed stream" "$agent" unseal --keyring "$ring" <"$work/in"
"$agent" keygen --out "$work/other" --id first >/dev/null
expect_fail 1 "cannot unwrap the data key with key first" \
	"$agent" unseal --keyring "$work/other" <"$work/sealed"
"$agent" keygen --out "$work/third" --id unrelated >/dev/null
expect_fail 1 "which key ring $work/third does not hold" \
	"$agent" unseal --keyring "$work/third" <"$work/sealed"
chmod 640 "$ring"
expect_fail 1 "chmod 600 $ring" "$agent" unseal --keyring "$ring" <"$work/sealed"
expect_fail 1 "chmod 600 $ring" "$agent" keygen --out "$ring"
chmod 600 "$ring"

# Usage errors exit 2.
expect_fail 2 "keyring FILE is required" "$agent" seal </dev/null
expect_fail 2 "chunk-size" "$agent" seal --keyring "$ring" --chunk-size 3 </dev/null
expect_fail 2 "out FILE is required" "$agent" keygen
expect_fail 2 "unknown option" "$agent" unseal --keyring "$ring" --bogus </dev/null
echo "seal_cli: ok"
