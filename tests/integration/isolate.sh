#!/usr/bin/env bash
# Per-service isolation enforced by the storage (issue 20 items 1 and 2), on
# a real S3 server (Ceph radosgw, lib/rgw.sh):
# - `coffer-coordinator s3-policy` prints the primary bucket's policy from
#   coordinator.conf; applied to the bucket, the billing agent's own
#   credentials cannot create, overwrite, read, delete or list anything under
#   services/orders/. Every request is made with curl --aws-sigv4, so each
#   refusal is the store's 403 AccessDenied, never a flag of Coffer's client.
# - with those credentials alone the billing agent backs up, lists, verifies
#   and restores its own service, and wal-fetch of a segment that does not
#   exist still ends recovery quietly (the 403 of a missing key read as such).
# - the bucket is versioned: the coordinator records each object's version
#   when it first sees a completed backup; the backup's manifest replaced
#   through the bucket owner's credentials (a new current version) is found
#   by the integrity sweep, which reads the recorded version and pages
#   repository_object_replaced, audited, with a metric; with data replaced
#   too, the agent restores the versions it wrote and warns naming the newer.
# - a revoked agent: `coffer agents revoke` and `s3-policy --revoked` name the
#   service principal whose keys are to be disabled.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
umask 077
source "$here/lib/rgw.sh"
t_init isolate

if ! rgw_start "$T/rgw"; then
	echo "SKIP isolate: radosgw could not start (see above); THE ISOLATION TESTS DID NOT RUN" >&2
	exit 77
fi
note "radosgw at $RGW_ENDPOINT"
bg=()
stop_all() {
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	_rgw_cleanup
}
trap stop_all EXIT

coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
agent=$COFFER_BIN/coffer-agent
s3=$COFFER_BIN/s3_itest
for b in "$coord" "$cli" "$agent" "$s3"; do [[ -x $b ]] || fail "build $b first"; done

mkuser() { # uid VAR -> VAR_ACCESS VAR_SECRET
	local acc sec
	acc=$(head -c 200 /dev/urandom | tr -dc 'A-Z0-9' | head -c 20)
	sec=$(head -c 200 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 40)
	$RGW_ADMIN user create --uid="$1" --display-name="$1" --access-key="$acc" --secret-key="$sec" \
		>/dev/null 2>&1 || fail "cannot create user $1"
	printf -v "${2}_ACCESS" %s "$acc"
	printf -v "${2}_SECRET" %s "$sec"
}
mkuser billing-agent BA
mkuser orders-agent OA

# raw WHO METHOD PATH [curl args...]: one signed request, no Coffer code in
# the way; prints "<status> <S3 error code>" (or "<status> ok").
raw() {
	local who=$1 method=$2 path=$3 a s out code
	shift 3
	case $who in
	owner) a=$RGW_SRC_ACCESS s=$RGW_SRC_SECRET ;;
	billing) a=$BA_ACCESS s=$BA_SECRET ;;
	orders) a=$OA_ACCESS s=$OA_SECRET ;;
	esac
	out=$(curl -s -X "$method" -w '\n%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$a:$s" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@" "$RGW_ENDPOINT/$path")
	code=$(sed -n 's:.*<Code>\([A-Za-z]*\)</Code>.*:\1:p' <<<"$out" | head -1)
	echo "$(tail -1 <<<"$out") ${code:-ok}"
}
raw_headers() { # who, method, path: the response headers
	local who=$1 method=$2 path=$3 a s
	case $who in
	owner) a=$RGW_SRC_ACCESS s=$RGW_SRC_SECRET ;;
	billing) a=$BA_ACCESS s=$BA_SECRET ;;
	esac
	curl -s -I -X "$method" --aws-sigv4 "aws:amz:us-east-1:s3" --user "$a:$s" \
		-H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$RGW_ENDPOINT/$path"
}
refused() { # description, WHO METHOD PATH [args]
	local what=$1 got
	shift
	got=$(raw "$@")
	[[ $got == "403 AccessDenied" ]] || fail "$what: the store answered '$got', want 403 AccessDenied"
	pass "$what: 403 AccessDenied from radosgw"
}

# --- the coordinator's configuration names each service's principal ----------------
catalog_start "$T/pg" billing
cq() { psql_at "$ci" -c "$1"; }
psql_at "$base dbname=billing" -c "create table invoices (id int primary key, note text);
	insert into invoices select g, 'invoice ' || g from generate_series(1, 5000) g" >/dev/null
pki=$T/pki
pki_make "$pki" alice billing-db-1 billing-db-2
conf=$T/coordinator.conf
fleet_coordinator_conf "$conf" "maintenance_interval = 1s" "metrics_listen = 127.0.0.1:0" <<CONF
[integrity]
sweep_interval = 2s
sample = 10
[service.billing]
owner = team-billing
schedule = 0 2 * * *
retention.daily = 7
s3.principal = arn:aws:iam:::user/billing-agent
[service.orders]
owner = team-orders
schedule = 0 3 * * *
retention.daily = 7
s3.principal = arn:aws:iam:::user/orders-agent
[repository.primary]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = fleet
prefix = prod
path_style = true
access_key = $RGW_SRC_ACCESS
secret_key = $RGW_SRC_SECRET
principal = arn:aws:iam:::user/prod
CONF

"$coord" s3-policy -c "$conf" >"$T/aws.json" || fail "s3-policy (aws)"
python3 - "$T/aws.json" <<'PY' || fail "the AWS policy is not what the services need"
import json, sys
d = json.load(open(sys.argv[1]))
sids = {s["Sid"]: s for s in d["Statement"]}
assert d["Version"] == "2012-10-17"
b = sids["coffer-billing-objects"]
assert b["Resource"] == ["arn:aws:s3:::fleet/prod/services/billing/*"], b
assert "s3:DeleteObject" not in b["Action"] and "s3:PutObject" in b["Action"]
assert sids["coffer-billing-list"]["Condition"]["StringLike"]["s3:prefix"] == ["prod/services/billing/*"]
assert sids["coffer-billing-deny-list-outside"]["Effect"] == "Deny"
assert sids["coffer-billing-deny-outside"]["NotResource"][0] == "arn:aws:s3:::fleet/prod/services/billing/*"
assert "coffer-orders-objects" in sids and "coffer-coordinator" in sids
PY
pass "s3-policy (aws): $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["Statement"]))' "$T/aws.json") statements, each service confined to prod/services/<service>/"
"$coord" s3-policy -c "$conf" --dialect radosgw >"$T/rgw.json" || fail "s3-policy (radosgw)"
if grep -q deny-list-outside "$T/rgw.json"; then fail "the radosgw dialect has the listing Deny radosgw cannot evaluate"; fi

# The bucket: created by its owner (the coordinator's user), versioned, the
# printed policy applied as it is.
S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$RGW_SRC_ACCESS S3_SECRET=$RGW_SRC_SECRET "$s3" mkbucket fleet >/dev/null ||
	fail "mkbucket fleet"
[[ $(raw owner PUT "fleet?versioning=" --data-binary \
	'<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>') == "200 ok" ]] ||
	fail "cannot enable versioning on the bucket"
S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$RGW_SRC_ACCESS S3_SECRET=$RGW_SRC_SECRET \
	"$s3" policy fleet "$(cat "$T/rgw.json")" >/dev/null || fail "PutBucketPolicy with the printed policy"
pass "bucket fleet: versioned, the printed radosgw policy applied"

# --- cross-prefix requests with billing's credentials: refused by the store -------------
O=fleet/prod/services/orders
[[ $(raw orders PUT "$O/wal/1/00000001/000000010000000000000001" --data-binary 'orders wal') == "200 ok" ]] ||
	fail "orders cannot write its own prefix"
[[ $(raw orders GET "$O/wal/1/00000001/000000010000000000000001") == "200 ok" ]] ||
	fail "orders cannot read its own prefix"
refused "billing creates an object under orders' prefix (a WAL segment not archived yet)" \
	billing PUT "$O/wal/1/00000001/000000010000000000000002" --data-binary planted
refused "billing overwrites orders' object" \
	billing PUT "$O/wal/1/00000001/000000010000000000000001" --data-binary replaced
refused "billing starts a multipart upload under orders' prefix" \
	billing POST "$O/backups/x/data?uploads="
refused "billing reads orders' object" billing GET "$O/wal/1/00000001/000000010000000000000001"
refused "billing deletes orders' object" billing DELETE "$O/wal/1/00000001/000000010000000000000001"
refused "billing lists orders' prefix" billing GET "fleet?list-type=2&prefix=prod%2Fservices%2Forders%2F"
refused "billing lists the whole bucket" billing GET "fleet?list-type=2"
refused "billing replaces the bucket policy" billing PUT "fleet?policy=" --data-binary '{}'
refused "billing deletes in its own prefix" billing DELETE "fleet/prod/services/billing/nothing"
n=$(S3_ENDPOINT=$RGW_ENDPOINT S3_ACCESS=$RGW_SRC_ACCESS S3_SECRET=$RGW_SRC_SECRET "$s3" list fleet prod/services/orders/ | grep -c . || true)
[[ $n == 1 ]] || fail "orders' prefix holds $n objects after the refused requests, want 1"
pass "orders' prefix unchanged: one object"

# --- the billing agent works with those credentials alone ---------------------------------------
mkdir -p "$T/state"
port=0
aconf=$T/agent.conf
write_agent_conf() {
	cat >"$aconf" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $base dbname=billing
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[repository.primary]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = fleet
prefix = prod
path_style = true
access_key = $BA_ACCESS
secret_key = $BA_SECRET
$(fleet_agent_link billing-db-1)
CONF
}
write_agent_conf
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$aconf" >"$T/agent.pub" || fail "agent init"
sed "s#$T/agent.key#$T/agent2.key#" "$aconf" >"$T/agent2.conf"
"$agent" init -c "$T/agent2.conf" >"$T/agent2.pub" || fail "agent init (billing-db-2)"
catalog_migrate "$conf"
for a in 1 2; do
	"$coord" agents enroll -c "$conf" --service billing --agent billing-db-$a \
		--pubkey "$T/agent$([[ $a == 1 ]] || echo 2).pub" >/dev/null || fail "enroll billing-db-$a"
done
fleet_coordinator_up "$conf"
write_agent_conf
id=$("$agent" backup -c "$aconf" 2>"$T/backup.log") || fail "billing backup with its own credentials: $(cat "$T/backup.log")"
"$agent" flush -c "$aconf" >/dev/null 2>"$T/flush.log" || fail "flush: $(cat "$T/flush.log")"
"$agent" list -c "$aconf" | grep -q "$id" || fail "billing list does not show $id"
"$agent" verify -c "$aconf" --backup "$id" >/dev/null 2>"$T/err" || fail "billing verify: $(cat "$T/err")"
"$agent" restore -c "$aconf" --backup "$id" --target-db billing_copy >/dev/null 2>"$T/err" ||
	fail "billing restore: $(cat "$T/err")"
[[ $(psql_at "$base dbname=billing_copy" -c "select count(*) from invoices") == 5000 ]] ||
	fail "the restore does not have 5000 rows"
pass "billing backs up ($id), lists, verifies and restores with its own credentials"
rc=0
"$agent" wal-fetch -c "$aconf" --system-identifier 7000000000000000001 000000010000000000000042 \
	"$T/seg" 2>"$T/err" || rc=$?
[[ $rc == 1 && ! -s $T/err ]] || fail "wal-fetch of a missing segment: exit $rc, '$(cat "$T/err")' (want 1, silent)"
pass "wal-fetch of a missing segment: exit 1, silent (the store's 403 read as no such key)"

# --- a revoked agent's credentials are named to be disabled -----------------------------------
out=$("$cli" agents revoke billing-db-2 2>&1) || fail "coffer agents revoke: $out"
grep -q "to be disabled: the repository credentials of arn:aws:iam:::user/billing-agent" <<<"$out" ||
	fail "coffer agents revoke does not name the credentials to disable: $out"
pass "coffer agents revoke: $(tail -1 <<<"$out" | cut -c1-110)..."
out=$("$coord" s3-policy -c "$conf" --revoked --output json) || fail "s3-policy --revoked: $out"
python3 -c '
import json, sys
d = json.loads(sys.argv[1])["to_disable"]
assert [(x["agent"], x["principal"]) for x in d] == [("billing-db-2", "arn:aws:iam:::user/billing-agent")], d
' "$out" || fail "s3-policy --revoked: $out"
pass "s3-policy --revoked lists billing-db-2's principal"

# --- a replaced current version is found by the sweep ------------------------------------------
wait_for() { # description, condition; polls up to 60 s
	for _ in $(seq 600); do eval "$2" && return 0; sleep 0.1; done
	fail "$1"
}
wait_for "the coordinator did not record the versions of $id" \
	'[[ $(cq "select count(*) from backup_objects where backup_id = '"'$id'"' and version_id is not null") == 2 ]]'
mv=$(cq "select version_id from backup_objects where backup_id = '$id' and object = 'manifest.json'")
pass "versions of $id recorded (manifest.json: $mv), audited: $(cq "select count(*) from audit where action = 'backup.versions_recorded' and subject = '$id'") row"
# The bucket's owner (the one principal besides billing's that may write
# there) puts a new current version over the manifest.
M=fleet/prod/services/billing/backups/$id/manifest.json
[[ $(raw owner PUT "$M" --data-binary '{"forged":true}') == "200 ok" ]] || fail "owner cannot overwrite the manifest"
wait_for "repository_object_replaced did not page" \
	'[[ $(cq "select state from alerts where dedup_key = '"'coffer/billing/repository_object_replaced'"'") == triggered ]]'
summary=$(cq "select summary from alerts where dedup_key = 'coffer/billing/repository_object_replaced'")
grep -q "manifest.json" <<<"$summary" || fail "the page does not name the object: $summary"
pass "repository_object_replaced: $(cut -c1-150 <<<"$summary")..."
[[ $(cq "select count(*) from audit where action = 'backup.object_replaced' and subject = '$id'") -ge 1 ]] ||
	fail "the replacement is not audited"
# The sweep read the recorded version: it still matches the catalog.
[[ $(cq "select ok from integrity_checks where backup_id = '$id' and object = 'manifest.json' and replaced_by is not null order by id desc limit 1") == t ]] ||
	fail "the sweep did not read the recorded manifest version"
# (To a file first: `curl | grep -q` under pipefail fails when grep exits
# before curl has written the page.)
curl -sS -o "$T/metrics" "http://127.0.0.1:$mport/metrics" || fail "/metrics"
grep -q '^coffer_repository_objects_replaced{service="billing"} 1' "$T/metrics" ||
	fail "no coffer_repository_objects_replaced metric"
pass "audited (backup.object_replaced), the recorded version still verifies, metric coffer_repository_objects_replaced 1"

# --- the agent restores the version it wrote, not the replacement -----------------------------
# The owner now puts other bytes over data too. The agent lists the key's
# versions (ListBucketVersions, in the printed policy), reads the oldest
# (its own: it wrote the key once, with If-None-Match) and warns naming the
# newer one; the signed manifest still checks every byte.
D=fleet/prod/services/billing/backups/$id/data
[[ $(raw owner PUT "$D" --data-binary 'not a backup') == "200 ok" ]] || fail "owner cannot overwrite data"
newer=$(raw_headers owner HEAD "$D" | sed -n 's/^x-amz-version-id: *\([^[:space:]]*\).*/\1/Ip' | head -1)
[[ -n $newer ]] || fail "no version id for the replaced data"
"$agent" verify -c "$aconf" --backup "$id" >/dev/null 2>"$T/verify.err" ||
	fail "verify after the replacement: $(cat "$T/verify.err")"
"$agent" restore -c "$aconf" --backup "$id" --target-db billing_copy2 >/dev/null 2>"$T/restore.err" ||
	fail "restore after the replacement: $(cat "$T/restore.err")"
[[ $(psql_at "$base dbname=billing_copy2" -c "select count(*) from invoices") == 5000 ]] ||
	fail "the restore of the original version does not have 5000 rows"
grep "a backup object was replaced" "$T/restore.err" | grep "object=data" | grep -q "newer=$newer" ||
	fail "the restore does not warn naming the newer data version $newer: $(cat "$T/restore.err")"
grep "a backup object was replaced" "$T/restore.err" | grep -q "object=manifest.json" ||
	fail "the restore does not warn about the replaced manifest: $(cat "$T/restore.err")"
dv=$(cq "select version_id from backup_objects where backup_id = '$id' and object = 'data'")
grep "object=data" "$T/restore.err" | grep -q "version=$dv" || fail "the restore did not read the recorded data version $dv"
pass "restore after data and manifest were replaced: the versions the agent wrote ($dv), 5000 rows, warned: $(grep -o 'object=data.*' "$T/restore.err" | head -1 | cut -c1-120)"
