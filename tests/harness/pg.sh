# PostgreSQL clusters for integration scripts (sourced through
# tests/integration/lib.sh, never run alone).
#
# Fakes nothing: real clusters from the installed PostgreSQL ($PG_BINDIR,
# the newest under /usr/lib/postgresql unless set). PostgreSQL refuses to
# run as root, so every cluster runs as the unprivileged "postgres" user
# (created by the Debian package) in a directory that user can reach.
#
# Promises:
#   pg_start DIR [LINE...] initdb DIR/data (trust on the socket, scram on
#                          TCP, UTF8, C.UTF-8), LINEs appended to its
#                          postgresql.conf, started on a free loopback port
#                          with its socket in DIR/sock; sets PG_HOST,
#                          PG_PORT, PG_DIR, PG_CONNINFO (user postgres)
#   pg_restart DIR [LOG]   starts DIR's cluster again on the port pg_start
#                          gave it (log: DIR/server.log unless LOG)
#   pg_stop DIR            fast shutdown
#   psql_at CONNINFO ARGS  psql that stops on the first error: quiet,
#                          unaligned, tuples only
#   _free_port             a loopback TCP port nobody listens on now
#   pg_cleanup             immediate shutdown of every cluster started here
#                          or added to _t_clusters (t_cleanup calls it)
#
# Limits: loopback only; fsync is off (a crashed host loses the cluster,
# which a test never needs); _free_port can race another process, which
# pg_start survives by trying three ports.
PG_USER=postgres
if [[ -z "${PG_BINDIR:-}" ]]; then
	PG_BINDIR=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1)
fi
_t_clusters=()

pg_cleanup() {
	local d
	for d in "${_t_clusters[@]}"; do
		[[ -f "$d/data/postmaster.pid" ]] &&
			runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$d/data" -m immediate -w stop >/dev/null 2>&1 || true
	done
	return 0
}

# Picks a TCP port nobody listens on (loopback only); races are retried by pg_start.
_free_port() {
	local p
	for _ in $(seq 50); do
		# Below the kernel's ephemeral range (32768-60999 by default):
		# there, any outgoing connection (libpq, curl, a dialer) may be
		# given the port between this check and the listen.
		p=$((10000 + RANDOM % 22000))
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
			# pg_restart starts it here again: clients keep their conninfo.
			echo "$port" >"$dir/port"
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

pg_restart() {
	local dir=$1 log=${2:-$1/server.log}
	runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$dir/data" -o "-p $(cat "$dir/port")" \
		-l "$log" -w -t 60 start >/dev/null || fail "PostgreSQL did not restart in $dir: $(tail -3 "$log")"
}

pg_stop() {
	runuser -u "$PG_USER" -- "$PG_BINDIR/pg_ctl" -D "$1/data" -m fast -w stop >/dev/null
}

psql_at() {
	local ci=$1
	shift
	"$PG_BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$ci" "$@"
}
