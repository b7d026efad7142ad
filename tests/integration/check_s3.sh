#!/usr/bin/env bash
# `check` against S3 repositories on a real radosgw (lib/rgw.sh):
# - the agent, confined by the bucket policy to put and get (no delete, as
#   docs/S3.md gives agents): its probe is written, read back and left, and
#   that is ok; with a wrong secret the repository check is critical, names
#   S3's refusal, and the secret appears nowhere in the output;
# - the coordinator: its primary probe is written, read back and deleted;
#   an object-locked DR bucket it may only write to is ok without a probe;
#   a DR bucket without object lock is critical with the fix.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/lib/rgw.sh"
t_init check_s3
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"
agent=$COFFER_BIN/coffer-agent
coord=$COFFER_BIN/coffer-coordinator
s3=$COFFER_BIN/s3_itest
if ! rgw_start "$T/rgw"; then
	echo "SKIP check_s3: radosgw could not start (see above); THE S3 CHECKS DID NOT RUN" >&2
	exit 77
fi

s3as() { # prod|dr ARGS...
	local a=$RGW_SRC_ACCESS s=$RGW_SRC_SECRET
	[[ $1 == dr ]] && a=$RGW_DR_ACCESS s=$RGW_DR_SECRET
	shift
	S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$a S3_SECRET=$s "$s3" "$@"
}
mkuser() { # uid -> sets ${2}_ACCESS ${2}_SECRET
	local acc sec
	acc=$(head -c 200 /dev/urandom | tr -dc 'A-Z0-9' | head -c 20)
	sec=$(head -c 200 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 40)
	$RGW_ADMIN user create --uid="$1" --display-name="$1" --access-key="$acc" --secret-key="$sec" \
		>/dev/null 2>&1 || fail "cannot create user $1"
	printf -v "${2}_ACCESS" %s "$acc"
	printf -v "${2}_SECRET" %s "$sec"
}
mkuser agent AG
mkuser coord-dr CD
s3as prod mkbucket prod >/dev/null || fail "mkbucket prod"
s3as prod policy prod '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/agent"]},
 "Action":["s3:PutObject","s3:GetObject","s3:ListBucket","s3:AbortMultipartUpload"],
 "Resource":["arn:aws:s3:::prod","arn:aws:s3:::prod/*"]}]}' >/dev/null || fail "policy prod"
DR_ACTIONS='"s3:PutObject","s3:GetObject","s3:ListBucket","s3:AbortMultipartUpload",
 "s3:PutObjectRetention","s3:GetObjectRetention","s3:GetBucketObjectLockConfiguration"'
for b in dr-vault dr-nolock; do
	if [[ $b == dr-vault ]]; then
		s3as dr mkbucket "$b" lock >/dev/null || fail "mkbucket $b"
	else
		s3as dr mkbucket "$b" >/dev/null || fail "mkbucket $b"
	fi
	s3as dr policy "$b" '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/coord-dr"]},"Action":['"$DR_ACTIONS"'],
 "Resource":["arn:aws:s3:::'"$b"'","arn:aws:s3:::'"$b"'/*"]}]}' >/dev/null || fail "policy $b"
done

catalog_start "$T/pg" svc
pki=$T/pki
pki_make "$pki" alice
coord_conf() { # file, dr bucket
	fleet_coordinator_conf "$1" <<CONF
[alerts]
routing_key = chk0123456789abcdef0123456789abc
[service.svc]
owner = team
schedule = 0 2 * * *
retention.daily = 7
[repository.primary]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = prod
prefix = fleet
path_style = true
access_key = $RGW_SRC_ACCESS
secret_key = $RGW_SRC_SECRET
[repository.dr]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = $2
prefix = fleet
path_style = true
access_key = $CD_ACCESS
secret_key = $CD_SECRET
CONF
}
coord_conf "$T/coordinator.conf" dr-vault
catalog_migrate "$T/coordinator.conf"

# --- the coordinator ----------------------------------------------------------
rc=0
"$coord" check -c "$T/coordinator.conf" >"$T/cout" 2>&1 || rc=$?
[[ $rc == 0 ]] || fail "coordinator check on S3 exited $rc: $(cat "$T/cout")"
grep -qE "^OK +repository +s3 repository: probe check/.* written, read back, compared and deleted" "$T/cout" ||
	fail "primary probe: $(cat "$T/cout")"
grep -qE "^OK +repository_dr +DR bucket dr-vault reachable; object lock enabled" "$T/cout" ||
	fail "DR: $(cat "$T/cout")"
pass "coordinator on S3: primary probe written, read back and deleted; locked DR ok; exit 0"

coord_conf "$T/nolock.conf" dr-nolock
rc=0
"$coord" check -c "$T/nolock.conf" >"$T/cout" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "DR without object lock: exit $rc: $(cat "$T/cout")"
grep -qE "^CRITICAL +repository_dr +DR bucket dr-nolock answers but has no object lock.*fix: create the DR bucket with object lock" "$T/cout" ||
	fail "DR without lock not named: $(cat "$T/cout")"
pass "a DR bucket without object lock: repository_dr critical with the fix, exit 2"

# --- the agent, confined to put and get -----------------------------------------
mkdir -p "$T/state"
agent_conf() { # file, secret
	cat >"$1" <<CONF
[agent]
name = svc-db-1
service = svc
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/svc.keys
[postgres]
conninfo = $base dbname=svc
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[repository.primary]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = prod
prefix = fleet
path_style = true
access_key = $AG_ACCESS
secret_key = $2
CONF
	chmod 600 "$1"
}
agent_conf "$T/agent.conf" "$AG_SECRET"
"$agent" keygen --out "$T/svc.keys" >/dev/null || fail "keygen"
"$agent" init -c "$T/agent.conf" >/dev/null || fail "init"
rc=0
"$agent" check -c "$T/agent.conf" >"$T/out" 2>&1 || rc=$?
# Warnings only: no [coordinator], and this PostgreSQL does not archive.
[[ $rc == 1 ]] || fail "agent check on S3 exited $rc: $(cat "$T/out")"
grep -qE "^OK +repository +s3 repository: probe services/svc/check/.* written, read back and compared; left in place, since agents have no delete right" "$T/out" ||
	fail "agent probe: $(cat "$T/out")"
! grep -q "^CRITICAL" "$T/out" || fail "a critical result: $(cat "$T/out")"
pass "agent on S3 without delete: probe written, read back, left; ok"

agent_conf "$T/wrong.conf" "WrongSecret0123456789abcdefWrongSecret01"
rc=0
"$agent" check -c "$T/wrong.conf" >"$T/out" 2>&1 || rc=$?
[[ $rc == 2 ]] || fail "wrong secret: exit $rc: $(cat "$T/out")"
grep -qE "^CRITICAL +repository +s3 repository: cannot write the probe" "$T/out" ||
	fail "wrong secret not named: $(cat "$T/out")"
grep -qF "WrongSecret0123" "$T/out" && fail "the secret key was printed"
grep -qF "$AG_SECRET" "$T/out" && fail "the agent's secret key was printed"
pass "a wrong S3 secret: repository critical, the secret printed nowhere, exit 2"
