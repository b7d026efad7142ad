#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root:
#   installs the packages, builds with AddressSanitizer + UndefinedBehaviorSanitizer
#   and gcc --coverage in one tree, runs every unit and integration test with
#   ctest once and checks the per-folder coverage floors (tests/coverage.sh);
#   then, side by side, the fault-injection suite (tests/fault/faults.sh, one
#   round), clang's static analyzer over the sources (tests/lint/analyze.sh)
#   and the libFuzzer targets (built with clang, each run for a short fixed
#   time), and the release build (gcc -O2, as the demo builds it) and the
#   Debian package built from it, installed and purged.
# .ci/run calls exactly this. Build trees: build-test/, build-fuzz/, build-rel/.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

./deploy/install-deps.sh

# Leak checking needs ptrace, which some sandboxes forbid; the other ASan
# checks (overflows, use-after-free) stay on either way.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Unit and integration tests, once, under the sanitizers and counted for
# coverage; fails on a failed test or a folder under its floor.
t=$SECONDS
tests/coverage.sh build-test -DCOFFER_SANITIZE=ON
echo "run.sh: unit and integration tests with coverage took $((SECONDS - t)) s"
# The fault-injection suite (one round of every fault unless
# COFFER_FAULT_SECONDS asks for longer) mostly waits: a minute of an agent's
# silence, a minute of a skewed clock. It runs beside the static analysis
# and the fuzzers, its bounds have room for that, and its output is shown
# once they are done.
ctest --test-dir build-test --output-on-failure -L fault >build-test/fault.log 2>&1 &
fault_pid=$!
trap 'kill "$fault_pid" 2>/dev/null || true' EXIT

t=$SECONDS
tests/lint/analyze.sh build-test
echo "run.sh: static analysis took $((SECONDS - t)) s"

cmake -S . -B build-fuzz -DCOFFER_FUZZ=ON -DCMAKE_C_COMPILER=clang \
	-DCOFFER_FUZZ_SECONDS="${COFFER_FUZZ_SECONDS:-10}" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j"$jobs"
ctest --test-dir build-fuzz --output-on-failure -L fuzz

# The release build (gcc -O2, what deploy/demo.sh and packages build): some
# warnings, -Werror ones included, only appear with the optimizer on.
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-rel -j"$jobs" >/dev/null
# The Debian package, from that same tree: built with CPack, installed with
# dpkg -i, its layout, user, directories, --version, man pages and units
# checked, then purged (tests/pkg/deb.sh; about 30 s).
ctest --test-dir build-rel --output-on-failure -L package

fault_rc=0
wait "$fault_pid" || fault_rc=$?
trap - EXIT
cat build-test/fault.log
if [ "$fault_rc" -ne 0 ]; then
	echo "run.sh: the fault-injection suite failed (build-test/fault.log)" >&2
	exit 1
fi
