# Shared helpers for integration scripts (sourced, never run alone).
#
# Every script gets its own scratch directory and throwaway PostgreSQL
# clusters, all torn down on exit however the script ends. PostgreSQL refuses
# to run as root, so clusters run as the unprivileged "postgres" user (created
# by the Debian package) under /tmp, which that user can reach.
#
#   t_init NAME            scratch dir in $T, cleanup trap, log prefix
#   pg_start DIR [LINE...] initdb + start a cluster; extra postgresql.conf lines;
#                          sets PG_HOST (socket dir), PG_PORT, PG_DIR, PG_CONNINFO
#   pg_stop DIR            fast shutdown of one cluster
#   psql_at CONNINFO ARGS  psql that stops on the first error, quiet, unaligned
#   fail MSG / pass MSG    report
#   receiver_start         the PagerDuty stand-in; sets rxpid, rxport
#   coord_start CONF [S]   coffer-coordinator run, endpoints up; sets cpid,
#                          port, aport, mport
#   operator_conf NAME [F] the operator CLI's config for NAME at $aport
# The background ones add their pid to the script's bg array when it has one.
set -euo pipefail

: "${COFFER_BIN:?run through ctest: set COFFER_BIN to the bin directory of a build}"
if [[ -z "${PG_BINDIR:-}" ]]; then
	PG_BINDIR=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
fi
PG_USER=postgres

_t_name=test
_t_clusters=()

t_cleanup() {
	local d
	for d in "${_t_clusters[@]}"; do
		[[ -f "$d/data/postmaster.pid" ]] &&
			runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
	done
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

pass() {
	echo "ok   $_t_name: $*"
}

note() {
	echo "--   $_t_name: $*"
}

# Picks a TCP port nobody listens on (loopback only); races are retried by pg_start.
_free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

pg_start() {
	local dir=$1
	shift
	mkdir -p "$dir/sock"
	chown -R "$PG_USER:" "$dir"
	runuser -u "$PG_USER" -- "$PG_BINDIR/initdb" -D "$dir/data" -U postgres \
		--auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 \
		>"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; fail "initdb failed"; }
	{
		echo "listen_addresses = '127.0.0.1'"
		echo "unix_socket_directories = '$dir/sock'"
		echo "fsync = off"
		echo "max_connections = 50"
		echo "logging_collector = off"
		local line
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	_t_clusters+=("$dir")
	local try port
	for try in 1 2 3; do
		port=$(_free_port)
		if runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$dir/data" -o "-p $port" \
			-l "$dir/server.log" -w -t 60 start >/dev/null 2>&1; then
			PG_HOST=$dir/sock
			PG_PORT=$port
			PG_DIR=$dir
			PG_CONNINFO="host=$PG_HOST port=$PG_PORT user=postgres"
			return 0
		fi
	done
	cat "$dir/server.log" >&2
	fail "PostgreSQL did not start in $dir"
}

pg_stop() {
	runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null
}

psql_at() {
	local ci=$1
	shift
	"$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$ci" "$@"
}

_bg_add() {
	if declare -p bg >/dev/null 2>&1; then bg+=("$1"); fi
}

# The PagerDuty stand-in (drills_itest receiver), logging what it gets to
# $T/rx.log.
receiver_start() {
	"$COFFER_BIN/drills_itest" receiver "$T/rx.log" "$T/rx.port" >/dev/null 2>&1 &
	rxpid=$!
	_bg_add "$rxpid"
	for _ in $(seq 100); do [[ -s $T/rx.port ]] && break; sleep 0.05; done
	rxport=$(cat "$T/rx.port" 2>/dev/null || true)
	[[ -n $rxport ]] || fail "the receiver did not start"
}

# coffer-coordinator run -c CONF in the background (its log in
# $T/coord.log, stopped by timeout after S seconds, 600 by default), then
# waits until it listens: its agent, admin and (with metrics_listen)
# metrics endpoints.
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

# The operator CLI's config for operator NAME (key $T/NAME.key, TLS
# certificate $pki/NAME.crt) against the admin endpoint on $aport, written
# to F ($T/NAME.conf by default).
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
