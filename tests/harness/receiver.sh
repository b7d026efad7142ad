# The PagerDuty stand-in for integration scripts (sourced through
# tests/integration/lib.sh, never run alone).
#
# Fakes PagerDuty's Events API v2 and any webhook with tests/harness/
# receiver.c, run as `drills_itest receiver` (see receiver.h for what it
# answers and the log line it writes).
#
# Promises:
#   receiver_start   the receiver on a free loopback port, logging to
#                    $T/rx.log; sets rxpid and rxport, and adds the pid to
#                    the script's bg array when it has one
#
# Limits: one receiver per script ($T/rx.log, $T/rx.port); it waits five
# seconds at most for the receiver to listen.
receiver_start() {
	"$COFFER_BIN/drills_itest" receiver "$T/rx.log" "$T/rx.port" >/dev/null 2>&1 &
	rxpid=$!
	_bg_add "$rxpid"
	for _ in $(seq 100); do [[ -s $T/rx.port ]] && break; sleep 0.05; done
	rxport=$(cat "$T/rx.port" 2>/dev/null || true)
	[[ -n $rxport ]] || fail "the receiver did not start"
}
