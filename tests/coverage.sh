#!/usr/bin/env bash
# Line coverage of the unit and integration tests, per source folder.
#
#   tests/coverage.sh [BUILD [CMAKE_ARG...]]   BUILD defaults to build-cov
#
# Builds the tree with gcc --coverage (cmake -DCOFFER_COVERAGE=ON, -O0, and
# the CMAKE_ARGs: tests/run.sh adds -DCOFFER_SANITIZE=ON, so that the one
# run of the suite is both the sanitizer run and the coverage run), runs
# the unit tests, then the integration tests, and
# prints for each folder of common/, agent/ and coordinator/ its lines and
# the share of them run by the unit tests alone and by both. A folder whose
# unit figure is far below its total is reached mostly through the shell
# scripts of tests/integration/.
#
# Fails if a test fails, or if a folder or the total is below its floor in
# tests/coverage-floor.txt (that file says how to raise them). tests/run.sh
# runs it after the sanitizer build's tests; the HTML report of one file is
#   gcovr -r . --object-directory build-cov --html-details -o cov.html -f FILE
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=${1:-build-cov}
shift || true
jobs=$(nproc)
floors=tests/coverage-floor.txt

cmake -S . -B "$build" -DCOFFER_COVERAGE=ON -DCMAKE_BUILD_TYPE=Debug "$@" >/dev/null
cmake --build "$build" -j"$jobs"
# Counts add up across runs: start from zero so the figures are this run's.
find "$build" -name '*.gcda' -delete

tmp=$(mktemp -d)
gcov_errors=""
trap 'rm -rf "$tmp" $gcov_errors' EXIT
summary() { # summary OUT.json: per-file line counts of our sources so far
	gcovr -r "$src" --object-directory "$build" -j "$jobs" \
		--filter "$src/(common|agent|coordinator)/" --json-summary "$1"
}

failed=0
ctest --test-dir "$build" --output-on-failure -j"$jobs" -L unit || failed=1
summary "$tmp/unit.json"

# Integration tests run coffer-agent as postgres too (archive_command,
# restore_command), and its counters go to the .gcda files of this root-owned
# tree. An empty .gcda counts as a new one to libgcov, so every counter file
# is made to exist and be writable before they start.
find "$build" -name '*.gcno' | while read -r gcno; do
	gcda=${gcno%.gcno}.gcda
	[ -e "$gcda" ] || : >"$gcda"
	chmod a+rw "$gcda"
done
# A process that still cannot write its counts (a checkout postgres cannot
# enter) would say so on stderr, which some tests require to be empty: the
# complaint goes to this log instead, and is counted below.
gcov_errors=$(mktemp /tmp/coffer-gcov-errors.XXXXXX)
chmod a+rw "$gcov_errors"
GCOV_ERROR_FILE=$gcov_errors ctest --test-dir "$build" --output-on-failure -j"$jobs" \
	-L integration || failed=1
find "$build" -name '*.gcda' -empty -delete # never run: gcov reads the .gcno alone
summary "$tmp/all.json"
if [ -s "$gcov_errors" ]; then
	echo "coverage: $(sort -u "$gcov_errors" | wc -l) counter files could not be written;" \
		"these figures miss those runs:"
	sort -u "$gcov_errors" | head -n 5
fi

python3 - "$tmp/unit.json" "$tmp/all.json" "$floors" <<'EOF' || failed=1
import json, sys

def per_folder(path):
    """{folder: [covered, total]} from a gcovr JSON summary; folder = common/base."""
    out = {}
    for f in json.load(open(path))["files"]:
        folder = "/".join(f["filename"].split("/")[:2])
        c = out.setdefault(folder, [0, 0])
        c[0] += f["line_covered"]
        c[1] += f["line_total"]
    return out

unit, both = per_folder(sys.argv[1]), per_folder(sys.argv[2])
floors = {}
for line in open(sys.argv[3]):
    line = line.split("#")[0].split()
    if line:
        floors[line[0]] = float(line[1])

def pct(c):
    return 100.0 * c[0] / c[1] if c[1] else 100.0

# In the floor file's order (the layers' order); a folder it lacks goes last.
rank = list(floors)
folders = sorted(both, key=lambda f: (rank.index(f) if f in rank else len(rank), f))
total, total_unit = [0, 0], [0, 0]
rows, bad = [], []
for f in folders:
    u, b = unit.get(f, [0, both[f][1]]), both[f]
    total[0] += b[0]; total[1] += b[1]
    total_unit[0] += u[0]; total_unit[1] += u[1]
    rows.append((f, b[1], pct(u), pct(b)))
rows.append(("total", total[1], pct(total_unit), pct(total)))
print("coverage: lines run, per folder (unit tests alone; unit + integration)")
print("%-22s %7s %7s %7s %6s" % ("folder", "lines", "unit", "all", "floor"))
for f, n, u, b in rows:
    fl = floors.get(f)
    mark = ""
    if fl is not None and b < fl:
        mark = "  < floor"
        bad.append("%s %.1f%% is under its floor %g%%" % (f, b, fl))
    print("%-22s %7d %6.1f%% %6.1f%% %6s%s" % (f, n, u, b, "-" if fl is None else "%g" % fl, mark))
for f in sorted(set(floors) - {r[0] for r in rows}):
    bad.append("%s has a floor but no lines: renamed? fix %s" % (f, sys.argv[3]))
for b in bad:
    print("coverage: " + b)
if bad:
    print("coverage: add tests, or lower the floor with a reason in the commit")
else:
    print("coverage: every folder and the total are at or above their floors")
sys.exit(1 if bad else 0)
EOF
exit $failed
