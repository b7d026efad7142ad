# The coordinator and its operators, for integration scripts (sourced
# through tests/integration/lib.sh, never run alone).
#
# Fakes nothing: the real `coffer-coordinator run` over mutual TLS on
# loopback and the real operator CLI `coffer`.
#
# Promises ($T and $pki as the script set them):
#   coord_start CONF [S]
#                     coffer-coordinator run -c CONF in the background (log
#                     $T/coord.log, stopped by timeout after S seconds, 600
#                     by default) once it listens; sets cpid, port (agents),
#                     aport (operators) and, with metrics_listen, mport
#   operator_conf NAME [F]
#                     the operator CLI's config for NAME (key $T/NAME.key,
#                     certificate $pki/NAME.crt) against $aport, in F
#                     ($T/NAME.conf by default)
# The background ones add their pid to the script's bg array when it has one.
#
# Limits: one coordinator per script at a time ($T/coord.log, cpid, port).

coord_start() {
	local conf=$1 secs=${2:-600} metrics=false
	grep -q '^metrics_listen' "$conf" && metrics=true
	: >"$T/coord.log"
	timeout --foreground "$secs" "$COFFER_BIN/coffer-coordinator" run -c "$conf" \
		>/dev/null 2>"$T/coord.log" &
	cpid=$!
	_bg_add "$cpid"
	for _ in $(seq 300); do
		if grep -q "admin endpoint listening" "$T/coord.log" &&
			{ ! $metrics || grep -q "metrics listening" "$T/coord.log"; }; then
			break
		fi
		sleep 0.1
	done
	port=$(sed -n 's/.*msg="coordinator listening".* port=\([0-9]*\).*/\1/p' "$T/coord.log")
	aport=$(sed -n 's/.*msg="admin endpoint listening".* port=\([0-9]*\).*/\1/p' "$T/coord.log")
	mport=$(sed -n 's/.*msg="metrics listening".* port=\([0-9]*\).*/\1/p' "$T/coord.log")
	[[ -n $port && -n $aport ]] && { ! $metrics || [[ -n $mport ]]; } ||
		fail "coordinator did not start: $(cat "$T/coord.log")"
}

operator_conf() {
	cat >"${2:-$T/$1.conf}" <<CONF
[coffer]
url = tls+tcp://127.0.0.1:$aport
operator = $1
key = $T/$1.key
ca = $pki/ca.crt
cert = $pki/$1.crt
key_tls = $pki/$1.key
server_name = localhost
CONF
}
