#!/usr/bin/env bash
# Static analysis: clang's static analyzer (clang-tidy 14, the clang-analyzer-*
# checks) over every .c file of common/, agent/ and coordinator/ that
# BUILD/compile_commands.json lists (the top CMakeLists.txt always writes it).
#
#   tests/lint/analyze.sh [BUILD [FILE...]]
#
# BUILD defaults to build-test; FILEs (agent/pg/pg.c ...) narrow the run to
# those files while you work on a finding.
#
# Prints each finding as `file:line: message [check]` and exits 1 if there is
# any, or if clang-tidy could not parse a file (a file it cannot compile is a
# file it did not check). tests/run.sh runs it after the main ctest.
#
# Why clang's analyzer and not cppcheck 2.10: the analyzer follows paths
# through a file (a failed calloc, then the cleanup that walks the array) and
# found the bugs fixed with it; cppcheck, tried on the same tree, reported 21
# things and none was a bug (6 "uninitialized" buffers that are written before
# use, 15 NULL sentinels of coffer_filter_link). The price is time: about three
# CPU minutes for the tree, so it runs the files in parallel, one per core.
#
# A false positive is silenced at its line, with the reason above it:
#   /* why the analyzer is wrong here */
#   /* NOLINTNEXTLINE(clang-analyzer-the.check) */
# tests/lint/analyzer-model.h tells the analyzer what common/base/error.c
# returns (it sees one file at a time); read it before silencing a "garbage
# value" that follows a failed call.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$src/build-test}" && pwd)
db=$build/compile_commands.json
if [ ! -f "$db" ]; then
	echo "analyze: no $db; configure with cmake -S . -B ${1:-build-test} first" >&2
	exit 2
fi
tidy=$(command -v clang-tidy-14 || command -v clang-tidy || true)
if [ -z "$tidy" ]; then
	echo "analyze: clang-tidy is not installed; run deploy/install-deps.sh" >&2
	exit 2
fi
# The files include the generated protobuf header; a fresh configure has not
# made it yet.
cmake --build "$build" --target coffer_proto >/dev/null

# All of clang-analyzer-* but one check, which is noise here: it flags every
# memcpy, memset and snprintf (about 720 calls) and asks for C11 Annex K's
# memcpy_s and friends, which glibc does not have. Tests are left out: they
# run under ASan and UBSan, and the analyzer's time goes to shipped code.
checks='-*,clang-analyzer-*,-clang-analyzer-security.insecureAPI.DeprecatedOrUnsafeBufferHandling'
export tidy src build checks

# shellcheck disable=SC2317 # run through xargs, below
one() { # one FILE OUT: analyzes FILE, findings to OUT, fails if clang-tidy did
	local model=(-extra-arg=-include -extra-arg="$src/tests/lint/analyzer-model.h")
	# error.c defines what the model wraps; its macros would rename them.
	if [ "$1" = "$src/common/base/error.c" ]; then
		model=()
	fi
	"$tidy" -p "$build" --quiet --checks="$checks" \
		--header-filter="^$src/(common|agent|coordinator)/" "${model[@]}" "$1" >"$2" 2>&1
}
export -f one

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$db" "$src" "${@:2}" >"$tmp/files" <<'EOF'
import json, sys
db, src, only = sys.argv[1], sys.argv[2], sys.argv[3:]
seen = set()
for e in json.load(open(db)):
    f = e["file"]
    rel = f[len(src) + 1:]
    if f.startswith(src + "/") and rel.split("/")[0] in ("common", "agent", "coordinator"):
        if not only or rel in only:
            seen.add(f)
print("\n".join(sorted(seen)))
EOF
nfiles=$(wc -l <"$tmp/files")
start=$SECONDS
# One output file per source (by its line number), so parallel runs do not
# interleave; bash -c gets $0 = the temp dir, $1 = the number, $2 = the file.
# shellcheck disable=SC2016 # expanded by the inner bash
awk '{ print NR, $0 }' "$tmp/files" |
	xargs -P "$(nproc)" -n 2 bash -c 'one "$2" "$0/$1.out" || echo "$2" >"$0/$1.failed"' "$tmp"

# clang-tidy's "/abs/file.c:12:5: warning: message [check]" becomes
# "file.c:12: message [check]"; a header included by several files is
# reported once.
cat "$tmp"/*.out | sed 's/\x1b\[[0-9;]*m//g' |
	sed -nE "s#^$src/([^:]+):([0-9]+):[0-9]+: (warning|error): (.*)#\1:\2: \4#p" |
	sort -t: -k1,1 -k2,2n | uniq >"$tmp/findings"
bad=0
for f in "$tmp"/*.failed; do
	[ -e "$f" ] || continue
	echo "analyze: clang-tidy failed on $(cat "$f"):" >&2
	tail -n 20 "${f%.failed}.out" >&2
	bad=1
done
n=$(wc -l <"$tmp/findings")
cat "$tmp/findings"
echo "analyze: $nfiles files, $n findings ($((SECONDS - start))s, clang-analyzer-*)"
[ "$n" = 0 ] || bad=1
exit $bad
