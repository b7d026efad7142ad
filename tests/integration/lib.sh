# Shared helpers for integration scripts (sourced, never run alone).
#
# Every script gets its own scratch directory and throwaway PostgreSQL
# clusters, all torn down on exit however the script ends.
#
#   t_init NAME            scratch dir in $T, cleanup trap, log prefix
#   fail MSG / pass MSG    report (note MSG: a remark)
# and, from the shared fixtures in tests/harness/ (each file says what it
# promises and its limits):
#   pg.sh        pg_start, pg_restart, pg_stop, psql_at, _free_port
#   catalog.sh   catalog_start, catalog_audit_key, catalog_migrate
#   pki.sh       pki_make, pki_client
#   receiver.sh  receiver_start (the PagerDuty stand-in)
#   fleet.sh     fleet_coordinator_conf, fleet_coordinator_up, coord_start,
#                operator_conf, fleet_agent_link, fleet_agent_enroll
# The background ones add their pid to the script's bg array when it has one.
set -euo pipefail

: "${COFFER_BIN:?run through ctest: set COFFER_BIN to the bin directory of a build}"
_t_harness=$(cd "$(dirname "${BASH_SOURCE[0]}")/../harness" && pwd)
# shellcheck source=tests/harness/pg.sh
source "$_t_harness/pg.sh"
# shellcheck source=tests/harness/catalog.sh
source "$_t_harness/catalog.sh"
# shellcheck source=tests/harness/pki.sh
source "$_t_harness/pki.sh"
# shellcheck source=tests/harness/receiver.sh
source "$_t_harness/receiver.sh"
# shellcheck source=tests/harness/fleet.sh
source "$_t_harness/fleet.sh"

_t_name=test

t_cleanup() {
	pg_cleanup
	[[ -n "${T:-}" && -d "$T" && -z "${KEEP_TMP:-}" ]] && rm -rf "$T"
	return 0
}

t_init() {
	_t_name=$1
	T=$(mktemp -d "/tmp/coffer-$1.XXXXXX")
	chmod 755 "$T"
	trap t_cleanup EXIT
	trap 'exit 130' INT TERM
}

fail() {
	echo "FAIL $_t_name: $*" >&2
	exit 1
}

# A running Coffer program keeps no core: its soft core limit is 0 (it is also
# non-dumpable, which /proc shows nobody; tests/unit/common/base/nocore_test.c
# checks that). $1 = pid, $2 = what it is.
assert_no_core() {
	local soft
	soft=$(awk '/^Max core file size/ {print $5}' "/proc/$1/limits")
	[[ $soft == 0 ]] || fail "$2 (pid $1) may dump core: $(grep 'core file' "/proc/$1/limits")"
}

pass() {
	echo "ok   $_t_name: $*"
}

# now_ms: the wall clock in milliseconds (bash's own, no fork).
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# wait_for SECONDS CMD...: polls CMD every 0.1 s; 1 on timeout.
wait_for() {
	local secs=$1
	shift
	local end=$(($(now_ms) + secs * 1000))
	while (($(now_ms) < end)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

note() {
	echo "--   $_t_name: $*"
}

_bg_add() {
	if declare -p bg >/dev/null 2>&1; then bg+=("$1"); fi
}
