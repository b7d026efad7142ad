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
	exit 77 # ctest reports it as skipped, never as passed
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
run race prod 100
run race prod $((9 * 1024 * 1024))
run many prod 1005
run oddkey prod
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

# --- coffer-agent backs up into S3 with credentials that cannot delete ------------
# A third user, "agent", gets read/write/list on its bucket through a bucket
# policy that grants no delete: what the design gives agents (docs/S3.md).
AG_ACCESS=AGENT$(head -c 64 /dev/urandom | tr -dc 'A-Z0-9' | head -c 15)
AG_SECRET=$(head -c 200 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 40)
$RGW_ADMIN user create --uid=agent --display-name=agent --access-key="$AG_ACCESS" \
	--secret-key="$AG_SECRET" >/dev/null 2>&1 || fail "cannot create the agent user"
run mkbucket agent-repo
run policy agent-repo '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/agent"]},
 "Action":["s3:PutObject","s3:GetObject","s3:ListBucket","s3:AbortMultipartUpload"],
 "Resource":["arn:aws:s3:::agent-repo","arn:aws:s3:::agent-repo/*"]}]}'

agent=$COFFER_BIN/coffer-agent
pg_start "$T/pg"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database billing"
psql_at "$PG_CONNINFO dbname=billing" -c "create table invoices (id int primary key, note text);
	insert into invoices select g, repeat('x', 200) || g from generate_series(1, 50000) g"
mkdir -p "$T/state"
cat >"$T/agent.conf" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $PG_CONNINFO dbname=billing
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
[repository.primary]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = agent-repo
prefix = prod
path_style = true
CONF
export AWS_ACCESS_KEY_ID=$AG_ACCESS AWS_SECRET_ACCESS_KEY=$AG_SECRET
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$T/agent.conf" >/dev/null || fail "agent init"
id=$("$agent" backup -c "$T/agent.conf" 2>"$T/backup.log") || { cat "$T/backup.log" >&2; fail "agent backup into s3"; }
pass "agent backup $id into s3 (credentials from AWS_* variables)"
"$agent" list -c "$T/agent.conf" | grep -q "$id" || fail "agent list does not show $id"
"$agent" verify -c "$T/agent.conf" --backup "$id" >/dev/null 2>"$T/err" || { cat "$T/err" >&2; fail "agent verify from s3"; }
"$agent" restore -c "$T/agent.conf" --backup latest --target-db billing_copy >/dev/null 2>"$T/err" ||
	{ cat "$T/err" >&2; fail "agent restore from s3"; }
n=$(psql_at "$PG_CONNINFO dbname=billing_copy" -c "select count(*) from invoices")
[[ $n == 50000 ]] || fail "restored $n rows from s3, want 50000"
pass "agent list, verify, restore from s3"
out=$(S3_ACCESS=$AG_ACCESS S3_SECRET=$AG_SECRET "$drv" delete agent-repo "prod/services/billing/backups/$id/data" 2>&1) &&
	fail "the agent's credentials deleted a backup"
grep -q AccessDenied <<<"$out" || { echo "$out" >&2; fail "agent delete: no AccessDenied"; }
pass "the agent's credentials cannot delete its backups"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
if "$agent" list -c "$T/agent.conf" >/dev/null 2>"$T/err"; then fail "list without credentials worked"; fi
grep -q "AWS_ACCESS_KEY_ID" "$T/err" || fail "no-credentials error does not say how: $(cat "$T/err")"
pass "no credentials: $(head -1 "$T/err" | cut -c1-200)"
