# The s3 repository driver against a real S3 server (Ceph radosgw on
# loopback, see lib/rgw.sh): small and multipart round trips through
# coffer_repo, listing past 1000 keys, capabilities, a wrong secret, aborted
# writes, reads by versionId, object lock, virtual-hosted addressing.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
source "$here/lib/rgw.sh"
t_init s3

if ! rgw_start "$T/rgw"; then
	echo "SKIP s3: radosgw could not start (see above); THE S3 TESTS DID NOT RUN" >&2
	exit 0
fi
note "radosgw at $RGW_ENDPOINT"

drv=$COFFER_BIN/s3_itest
export S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$RGW_SRC_ACCESS S3_SECRET=$RGW_SRC_SECRET
run() {
	local out
	out=$("$drv" "$@" 2>&1) || { echo "$out" >&2; fail "s3_itest $*"; }
	pass "${out#ok }"
}

run mkbucket prod
run mkbucket dr-copies lock
run missing nosuchbucket

run roundtrip prod 0
run roundtrip prod 1000
run roundtrip prod $((8 * 1024 * 1024))
run roundtrip prod $((40 * 1024 * 1024 + 12345))
run many prod 1005
run nodelete prod
run badsecret prod
run abort prod
run versions dr-copies
run lock dr-copies
run lockcheck dr-copies 1
run lockcheck prod 0
run vhost prod "$RGW_VHOST_ENDPOINT"

# Nothing left behind by the aborted uploads.
uploads=$($RGW_ADMIN bucket stats --bucket=prod 2>/dev/null | python3 -c '
import json, sys
u = json.load(sys.stdin)["usage"]
print(u.get("rgw.multimeta", {}).get("num_objects", 0))')
[[ "$uploads" == 0 ]] || fail "$uploads multipart uploads are still pending on the store"
pass "no multipart upload left pending"

# The DR user cannot read or write the production bucket (separate accounts).
out=$(S3_ACCESS=$RGW_DR_ACCESS S3_SECRET=$RGW_DR_SECRET "$drv" roundtrip prod 10 2>&1) &&
	fail "the DR account wrote into the production bucket"
grep -q "AccessDenied" <<<"$out" || { echo "$out" >&2; fail "cross-account write: no AccessDenied"; }
pass "cross-account write refused: AccessDenied"
