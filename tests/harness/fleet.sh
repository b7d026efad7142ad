# A coordinator with enrolled agents, for integration scripts (sourced
# through tests/integration/lib.sh, never run alone).
#
# Fakes nothing: the real `coffer-coordinator run` over mutual TLS on
# loopback, the real `coffer-agent` and operator CLI `coffer`. What is
# shared is the setup every end-to-end script wrote out for itself.
#
# Promises (T, pki, ci and, for agents, base as catalog.sh and pki.sh set
# them; the PKI must hold localhost, alice and each agent's certificate):
#   fleet_coordinator_conf FILE [LINE...] <<EOF
#                     writes FILE: [coordinator] listening with TLS on
#                     loopback port 0 for agents and operators, catalog $ci,
#                     audit key $T/audit.key, state in $T/coord-state, then
#                     LINEs; [tls] from $pki; [operator.alice] (role
#                     operator, key $T/alice.key); then stdin, the script's
#                     own sections. Makes the audit and operator keys the
#                     file names if they are missing.
#   fleet_coordinator_up FILE [S]
#                     migrates the catalog (catalog_migrate), starts the
#                     coordinator for at most S seconds (coord_start) and
#                     points the operator CLI at it as alice
#                     (COFFER_CONFIG=$T/alice.conf)
#   coord_start CONF [S]
#                     coffer-coordinator run -c CONF in the background (log
#                     $T/coord.log, stopped by timeout after S seconds, 600
#                     by default) once it listens; sets cpid, port (agents),
#                     aport (operators) and, with metrics_listen, mport
#   operator_conf NAME [F]
#                     the operator CLI's config for NAME (key $T/NAME.key,
#                     certificate $pki/NAME.crt) against $aport, in F
#                     ($T/NAME.conf by default)
#   fleet_agent_link NAME [HEARTBEAT RETRY_MAX]
#                     prints an agent's [coordinator] section: agent NAME's
#                     certificate, the coordinator on $port, and the
#                     heartbeat and retry_max when given
#   fleet_agent_enroll SERVICE [HEARTBEAT RETRY_MAX]
#                     agent SERVICE-db-1 for the service's database on
#                     $base: config $T/SERVICE.conf (state $T/SERVICE-state,
#                     posix repository $T/repo, logical backups at 02:00,
#                     heartbeat and retry_max 5s unless given), key ring
#                     $T/SERVICE.keys, public key $T/SERVICE.pub, enrolled
#                     by alice; not started
# The background ones add their pid to the script's bg array when it has one.
#
# Limits: one coordinator per script at a time ($T/coord.log, cpid, port);
# operator alice is always there; agents are named SERVICE-db-1.

fleet_coordinator_conf() {
	local file=$1 line
	shift
	mkdir -p "$T/coord-state"
	catalog_audit_key
	if [[ ! -f $T/alice.key ]]; then
		"$COFFER_BIN/coffer" init --out "$T/alice.key" >"$T/alice.pub" || fail "coffer init alice"
	fi
	{
		cat <<CONF
[coordinator]
listen = tls+tcp://127.0.0.1:0
admin_listen = tls+tcp://127.0.0.1:0
catalog = $ci_app
catalog_owner = $ci_owner
audit_key = $T/audit.key
state_dir = $T/coord-state
CONF
		for line in "$@"; do echo "$line"; done
		cat <<CONF
[tls]
ca = $pki/ca.crt
cert = $pki/localhost.crt
key = $pki/localhost.key
[operator.alice]
public_key = $T/alice.pub
role = operator
CONF
		[[ -t 0 ]] || cat
	} >"$file"
	# It may hold secrets (a routing key, S3 keys): the coordinator refuses
	# it open to group or others.
	chmod 600 "$file"
}

fleet_coordinator_up() {
	catalog_migrate "$1"
	coord_start "$1" "${2:-600}"
	operator_conf alice
	export COFFER_CONFIG=$T/alice.conf
}

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

fleet_agent_link() {
	cat <<CONF
[coordinator]
url = tls+tcp://localhost:$port
ca = $pki/ca.crt
cert = $pki/$1.crt
key = $pki/$1.key
CONF
	if [[ $# -ge 3 ]]; then
		echo "heartbeat = $2"
		echo "retry_max = $3"
	fi
}

fleet_agent_enroll() {
	local svc=$1 hb=${2:-5s} retry=${3:-5s}
	mkdir -p "$T/$svc-state"
	cat >"$T/$svc.conf" <<CONF
[agent]
name = $svc-db-1
service = $svc
state_dir = $T/$svc-state
signing_key = $T/$svc.sign
key_ring = $T/$svc.keys
[postgres]
conninfo = $base dbname=$svc
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[repository.primary]
type = posix
path = $T/repo
$(fleet_agent_link "$svc-db-1" "$hb" "$retry")
CONF
	"$COFFER_BIN/coffer-agent" keygen --out "$T/$svc.keys" >/dev/null || fail "keygen $svc"
	"$COFFER_BIN/coffer-agent" init -c "$T/$svc.conf" >"$T/$svc.pub" || fail "init $svc"
	"$COFFER_BIN/coffer" agents enroll --service "$svc" --agent "$svc-db-1" --pubkey "$T/$svc.pub" \
		>/dev/null || fail "enroll $svc"
}
