# A real S3 server for integration scripts: a one-node Ceph cluster (one
# monitor, one memstore OSD, one radosgw) on loopback, all in a scratch
# directory, data in RAM. Sourced after lib.sh, never run alone (it lives
# in lib/ so tests/CMakeLists.txt does not register it).
#
#   rgw_start DIR   bootstraps the cluster (about 30 s) and creates two S3
#                   users standing for the production and the DR account;
#                   sets RGW_ENDPOINT (http://127.0.0.1:PORT), RGW_VHOST_ENDPOINT
#                   (http://localhost:PORT, for virtual-hosted addressing),
#                   RGW_SRC_ACCESS / RGW_SRC_SECRET, RGW_DR_ACCESS / RGW_DR_SECRET,
#                   RGW_ADMIN (radosgw-admin with the cluster's config).
#                   Returns 1 (with the reason on stderr) if it cannot start.
#   rgw_stop DIR    stops the three daemons (also done on exit, and by a
#                   watchdog if the script is killed without running traps)
#
# The daemons run in the foreground (-f) as background jobs so their pids are
# ours to kill; nothing is killed by name.

_rgw_dirs=()

rgw_stop() {
	local dir=$1 p
	for p in rgw osd mon watchdog; do
		if [[ -f "$dir/run/$p.pid" ]]; then
			kill "$(cat "$dir/run/$p.pid")" 2>/dev/null || true
		fi
	done
	for p in rgw osd mon; do
		if [[ -f "$dir/run/$p.pid" ]]; then
			local pid i
			pid=$(cat "$dir/run/$p.pid")
			for i in $(seq 50); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -9 "$pid" 2>/dev/null || true
			rm -f "$dir/run/$p.pid"
		fi
	done
	rm -f "$dir/run/watchdog.pid"
	return 0
}

_rgw_cleanup() {
	local d
	for d in "${_rgw_dirs[@]}"; do
		rgw_stop "$d"
	done
	if declare -F t_cleanup >/dev/null; then
		t_cleanup
	fi
	return 0
}

_rgw_fail() {
	echo "rgw_start: $*" >&2
	if [[ -f "$_rgw_dir/log/$2.log" ]]; then
		tail -20 "$_rgw_dir/log/$2.log" >&2
	fi
	rgw_stop "$_rgw_dir"
	return 1
}

# Below the kernel's ephemeral range: a port taken there by any outgoing
# connection of a test running beside this one made the monitor's bind
# fail ("Address already in use").
_rgw_port() {
	local p low=32768 high
	read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || true
	((low > 12000)) || low=32768
	for _ in $(seq 50); do
		p=$((10000 + RANDOM % (low - 10000)))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

_rgw_key() {
	# S3-style keys: 20 upper-case alphanumerics, and a 40-byte secret.
	head -c 200 /dev/urandom | tr -dc "$1" | head -c "$2"
}

# A port can still be taken between choosing it and binding it: up to three
# attempts, each with new ports and a clean directory.
rgw_start() {
	local dir=$1 attempt
	for attempt in 1 2 3; do
		rm -rf "$dir"
		_rgw_start_once "$dir" && return 0
		grep -qs "Address already in use" "$dir/log/mon.a.log" "$dir/log/client.rgw.a.log" ||
			return 1
		echo "rgw_start: a port was taken (attempt $attempt); again with others" >&2
	done
	return 1
}

_rgw_start_once() {
	local dir=$1 c
	_rgw_dir=$dir
	for c in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool uuidgen curl; do
		command -v "$c" >/dev/null || {
			echo "rgw_start: $c is not installed (deploy/install-deps.sh installs it)" >&2
			return 1
		}
	done
	mkdir -p "$dir"/{run,log,mon.a,osd.0,rgw}
	local mon_port rgw_port fsid
	mon_port=$(_rgw_port) && rgw_port=$(_rgw_port) || { echo "rgw_start: no free port" >&2; return 1; }
	fsid=$(uuidgen)
	cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $dir/keyring
run dir = $dir/run
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
ms bind msgr1 = false
osd objectstore = memstore
memstore device bytes = ${RGW_MEMSTORE_BYTES:-1073741824}
[mon.a]
mon data = $dir/mon.a
[osd.0]
osd data = $dir/osd.0
keyring = $dir/osd.0/keyring
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw dns name = localhost
rgw data = $dir/rgw
keyring = $dir/rgw/keyring
EOF
	local conf=$dir/ceph.conf
	_rgw_dirs+=("$dir")
	trap _rgw_cleanup EXIT
	# If the script dies without running its traps (SIGKILL, a ctest
	# timeout), the watchdog still stops the daemons.
	(
		trap '' INT TERM
		while kill -0 $$ 2>/dev/null && [[ -d "$dir/run" ]]; do sleep 2; done
		for p in rgw osd mon; do
			[[ -f "$dir/run/$p.pid" ]] && kill -9 "$(cat "$dir/run/$p.pid")" 2>/dev/null
		done
	) >/dev/null 2>&1 &
	echo $! >"$dir/run/watchdog.pid"
	disown

	(
		cd "$dir" || exit 1
		ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' &&
			ceph-authtool keyring --gen-key -n client.admin --cap mon 'allow *' \
				--cap osd 'allow *' --cap mgr 'allow *' &&
			monmaptool --create --addv a "[v2:127.0.0.1:$mon_port]" --fsid "$fsid" monmap &&
			ceph-mon --mkfs -i a --monmap monmap --keyring keyring -c "$conf"
	) >"$dir/log/bootstrap.log" 2>&1 || { cat "$dir/log/bootstrap.log" >&2; _rgw_fail "monitor mkfs failed" mon.a; return 1; }
	ceph-mon -f -i a -c "$conf" >>"$dir/log/mon.out" 2>&1 &
	echo $! >"$dir/run/mon.pid"
	disown

	local uuid key
	uuid=$(uuidgen)
	key=$(ceph-authtool --gen-print-key)
	echo "{\"cephx_secret\":\"$key\"}" >"$dir/osd.0/secret.json"
	timeout 60 ceph -c "$conf" osd new "$uuid" -i "$dir/osd.0/secret.json" >>"$dir/log/bootstrap.log" 2>&1 ||
		{ _rgw_fail "monitor did not answer (osd new)" mon.a; return 1; }
	rm -f "$dir/osd.0/secret.json"
	ceph-authtool --create-keyring "$dir/osd.0/keyring" --name osd.0 --add-key "$key" >>"$dir/log/bootstrap.log" 2>&1
	ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$uuid" >>"$dir/log/bootstrap.log" 2>&1 ||
		{ _rgw_fail "osd mkfs failed" osd.0; return 1; }
	ceph-osd -f -c "$conf" -i 0 >>"$dir/log/osd.out" 2>&1 &
	echo $! >"$dir/run/osd.pid"
	disown
	timeout 60 ceph -c "$conf" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' \
		-o "$dir/rgw/keyring" >>"$dir/log/bootstrap.log" 2>&1 ||
		{ _rgw_fail "cannot create the radosgw key" mon.a; return 1; }
	radosgw -f -c "$conf" -n client.rgw.a >>"$dir/log/rgw.out" 2>&1 &
	echo $! >"$dir/run/rgw.pid"
	disown

	local i up=0
	for i in $(seq 240); do
		kill -0 "$(cat "$dir/run/rgw.pid")" 2>/dev/null || { _rgw_fail "radosgw exited" client.rgw.a; return 1; }
		if [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$rgw_port/")" == 200 ]]; then
			up=1
			break
		fi
		sleep 0.5
	done
	[[ $up == 1 ]] || { _rgw_fail "radosgw did not answer on port $rgw_port within 120 s" client.rgw.a; return 1; }

	RGW_ADMIN="radosgw-admin -c $conf -n client.admin"
	RGW_SRC_ACCESS=$(_rgw_key 'A-Z0-9' 20)
	RGW_SRC_SECRET=$(_rgw_key 'A-Za-z0-9' 40)
	RGW_DR_ACCESS=$(_rgw_key 'A-Z0-9' 20)
	RGW_DR_SECRET=$(_rgw_key 'A-Za-z0-9' 40)
	$RGW_ADMIN user create --uid=prod --display-name=production \
		--access-key="$RGW_SRC_ACCESS" --secret-key="$RGW_SRC_SECRET" >>"$dir/log/bootstrap.log" 2>&1 &&
		$RGW_ADMIN user create --uid=dr --display-name=disaster-recovery \
			--access-key="$RGW_DR_ACCESS" --secret-key="$RGW_DR_SECRET" >>"$dir/log/bootstrap.log" 2>&1 ||
		{ _rgw_fail "cannot create the S3 users" client.rgw.a; return 1; }
	RGW_ENDPOINT="http://127.0.0.1:$rgw_port"
	RGW_VHOST_ENDPOINT="http://localhost:$rgw_port"
	export RGW_ENDPOINT RGW_VHOST_ENDPOINT RGW_SRC_ACCESS RGW_SRC_SECRET RGW_DR_ACCESS RGW_DR_SECRET RGW_ADMIN
	return 0
}

# The repositories most scripts need, after rgw_start:
#   rgw_user UID VAR        an S3 user; sets VAR_ACCESS and VAR_SECRET
#   rgw_as prod|dr|VAR ARGS s3_itest ARGS as the production account, the DR
#                           account, or the user rgw_user made as VAR
#   rgw_fleet_repos         the layout of docs/S3.md: bucket `prod` in the
#                           production account, versioned, writable by user
#                           `agent` (AG_*) without delete; bucket `dr-vault`
#                           in the DR account, object-locked, writable by
#                           user `coord-dr` (CD_*) without delete
#   rgw_coord_repos PREFIX  prints the coordinator's [repository.primary]
#                           (production account) and [repository.dr] (CD_*)
#   rgw_agent_repo PREFIX   prints an agent's [repository.primary] (AG_*)
rgw_user() {
	local acc sec
	acc=$(_rgw_key 'A-Z0-9' 20)
	sec=$(_rgw_key 'A-Za-z0-9' 40)
	$RGW_ADMIN user create --uid="$1" --display-name="$1" --access-key="$acc" --secret-key="$sec" \
		>/dev/null 2>&1 || fail "cannot create S3 user $1"
	printf -v "${2}_ACCESS" %s "$acc"
	printf -v "${2}_SECRET" %s "$sec"
}

rgw_as() {
	local who=$1 a s
	shift
	case $who in
	prod) a=$RGW_SRC_ACCESS s=$RGW_SRC_SECRET ;;
	dr) a=$RGW_DR_ACCESS s=$RGW_DR_SECRET ;;
	*)
		a=${who}_ACCESS s=${who}_SECRET
		a=${!a} s=${!s}
		;;
	esac
	S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$a S3_SECRET=$s "$COFFER_BIN/s3_itest" "$@"
}

rgw_fleet_repos() {
	rgw_user agent AG
	rgw_user coord-dr CD
	rgw_as prod mkbucket prod >/dev/null || fail "mkbucket prod"
	rgw_as prod policy prod '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/agent"]},
 "Action":["s3:PutObject","s3:GetObject","s3:GetObjectVersion","s3:ListBucket",
  "s3:ListBucketVersions","s3:AbortMultipartUpload"],
 "Resource":["arn:aws:s3:::prod","arn:aws:s3:::prod/*"]}]}' >/dev/null || fail "policy prod"
	# The coordinator refuses an unversioned primary bucket (docs/S3.md).
	[[ $(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$RGW_SRC_ACCESS:$RGW_SRC_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		--data-binary '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>' \
		"$RGW_ENDPOINT/prod?versioning=") == 200 ]] || fail "cannot enable versioning on bucket prod"
	rgw_as dr mkbucket dr-vault lock >/dev/null || fail "mkbucket dr-vault (object lock)"
	rgw_as dr policy dr-vault '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/coord-dr"]},
 "Action":["s3:PutObject","s3:GetObject","s3:ListBucket","s3:AbortMultipartUpload",
 "s3:PutObjectRetention","s3:GetObjectRetention","s3:GetBucketObjectLockConfiguration"],
 "Resource":["arn:aws:s3:::dr-vault","arn:aws:s3:::dr-vault/*"]}]}' >/dev/null || fail "policy dr-vault"
}

_rgw_repo_section() { # name bucket prefix access secret
	cat <<CONF
[repository.$1]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = $2
prefix = $3
path_style = true
access_key = $4
secret_key = $5
CONF
}

rgw_coord_repos() {
	_rgw_repo_section primary prod "$1" "$RGW_SRC_ACCESS" "$RGW_SRC_SECRET"
	_rgw_repo_section dr dr-vault "$1" "$CD_ACCESS" "$CD_SECRET"
}

rgw_agent_repo() {
	_rgw_repo_section primary prod "$1" "$AG_ACCESS" "$AG_SECRET"
}
