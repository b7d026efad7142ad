#!/usr/bin/env bash
# Disaster recovery end to end on a real S3 server (Ceph radosgw, lib/rgw.sh)
# with two accounts: "prod" owns the primary bucket, "dr" owns an
# object-locked DR bucket in which the coordinator's own DR user may write
# and read but not delete.
# - an agent backs up into the primary bucket with credentials that cannot
#   delete; the coordinator copies the backup to DR: byte-identical objects,
#   COMPLIANCE lock until finished_at + dr.retention, a verified catalog row,
#   dr.copy_verified audited, metrics and `coffer status` say so;
# - deleting the DR copy is refused for every credential the system holds
#   (the agent's, the coordinator's primary and DR ones) and, the lock being
#   COMPLIANCE, for the DR account itself;
# - an unversioned primary bucket is refused at start, naming the fix; a
#   backup whose data the bucket's owner replaced is refused by the DR copy
#   (audited, dr_copy_failed) until the newer version is removed.
# - a DR bucket without object lock, and a posix DR repository: `run`
#   refuses to start, naming the problem;
# - the DR user loses write access: copies fail, are retried, page
#   dr_copy_failed and dr_copy_lag; write access back: verified, resolved;
# - production gone: the primary bucket emptied and the catalog dropped;
#   rebuild-catalog --repo dr recovers the three backups, refuses a forged
#   one, and the agent restores from DR alone: same rows (logical), same
#   data (physical, its WAL from DR too);
# - a DR object corrupted and a manifest replaced through the DR account:
#   `coffer-agent verify --repo dr` reports the first, and a rebuild into an
#   empty catalog refuses both, naming why.
# Every wait is bounded by a count of polls, never by a timing assertion.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
# Its config files hold secrets: 0600 as an operator is told, else they are refused.
umask 077
source "$here/lib/rgw.sh"
t_init dr
: "${COFFER_SRC:?set COFFER_SRC to the source tree}"

if ! rgw_start "$T/rgw"; then
	echo "SKIP dr: radosgw could not start (see above); THE DR TESTS DID NOT RUN" >&2
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
rx=$COFFER_BIN/drills_itest
for b in "$coord" "$cli" "$agent" "$s3" "$rx"; do [[ -x $b ]] || fail "build $b first"; done

# s3 AS BUCKET ARGS...: s3_itest with an account's credentials.
s3as() {
	local who=$1
	shift
	local a s
	case $who in
	prod) a=$RGW_SRC_ACCESS s=$RGW_SRC_SECRET ;;
	dr) a=$RGW_DR_ACCESS s=$RGW_DR_SECRET ;;
	agent) a=$AG_ACCESS s=$AG_SECRET ;;
	coord-dr) a=$CD_ACCESS s=$CD_SECRET ;;
	esac
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
# The coordinator's DR user: write, read back, list, set retention, see the
# lock configuration; no delete, no bypass (docs/S3.md, "DR repository").
dr_policy() { # bucket, actions
	echo '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
 "Principal":{"AWS":["arn:aws:iam:::user/coord-dr"]},
 "Action":['"$2"'],
 "Resource":["arn:aws:s3:::'"$1"'","arn:aws:s3:::'"$1"'/*"]}]}'
}
DR_ACTIONS='"s3:PutObject","s3:GetObject","s3:ListBucket","s3:AbortMultipartUpload",
 "s3:PutObjectRetention","s3:GetObjectRetention","s3:GetBucketObjectLockConfiguration"'
s3as dr mkbucket dr-vault lock >/dev/null || fail "mkbucket dr-vault (object lock)"
s3as dr mkbucket dr-nolock >/dev/null || fail "mkbucket dr-nolock"
s3as dr policy dr-vault "$(dr_policy dr-vault "$DR_ACTIONS")" >/dev/null || fail "policy dr-vault"
s3as dr policy dr-nolock "$(dr_policy dr-nolock "$DR_ACTIONS")" >/dev/null || fail "policy dr-nolock"
pass "accounts: prod (primary bucket, agent user without delete), dr (object-locked bucket, coordinator user without delete)"

# --- catalog, service database, PagerDuty receiver, certificates --------------------------
catalog_start "$T/pg" billing
cq() { psql_at "$ci" -c "$1"; }
bq() { psql_at "$base dbname=${2:-billing}" -c "$1"; }
bq "create table invoices (id int primary key, note text, amount numeric);
	insert into invoices select g, 'invoice ' || g, g * 1.5 from generate_series(1, 20000) g" >/dev/null

receiver_start

pki=$T/pki
pki_make "$pki" alice billing-db-1 ledger-db-1 runner-1
mkdir -p "$T/state"

write_coord_conf() { # file, dr bucket, dr type
	local drsec
	if [[ $3 == posix ]]; then
		mkdir -p "$T/posix-dr"
		drsec="type = posix
path = $T/posix-dr"
	else
		drsec="type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = $2
prefix = fleet
path_style = true
access_key = $CD_ACCESS
secret_key = $CD_SECRET"
	fi
	fleet_coordinator_conf "$1" "maintenance_interval = 1s" "metrics_listen = 127.0.0.1:0" "metrics_cache = 0s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = dr00123456789abcdef0123456789abc
[dr]
copy_lag = 5s
retry_max = 2s
audit_export_interval = 2s
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
dr.copy = all
dr.lock = compliance
dr.retention = 2d
drill.runner = runner-1
drill.repository = dr
drill.assert.1 = SELECT count(*) = 20000 FROM invoices
[service.archive]
owner = team-payments
schedule = 0 4 * * *
retention.daily = 3
retention.weekly = 4
dr.copy = weekly
[service.ledger]
owner = team-payments
schedule = 0 3 * * *
retention.daily = 7
pitr.window = 1d
dr.copy = all
dr.lock = governance
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
$drsec
CONF
}
conf=$T/coordinator.conf
write_coord_conf "$conf" dr-vault s3
catalog_migrate "$conf"

# --- refusals at start -----------------------------------------------------------------------
# prod_req KEY|?QUERY BODY: a PUT as the primary bucket's owner, past
# coffer's client (which never overwrites); prints the status code.
prod_req() {
	curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" \
		--user "$RGW_SRC_ACCESS:$RGW_SRC_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		--data-binary "$2" "$RGW_ENDPOINT/prod$1"
}
# The primary bucket keeps no versions yet: refused, naming the fix.
if timeout 60 "$coord" run -c "$conf" >/dev/null 2>"$T/unversioned.err"; then
	fail "the coordinator started with an unversioned primary bucket"
fi
grep -q "primary bucket prod does not keep object versions" "$T/unversioned.err" &&
	grep -q "put-bucket-versioning --bucket prod" "$T/unversioned.err" &&
	grep -q "unversioned_ok = true" "$T/unversioned.err" ||
	fail "unversioned primary refusal unclear: $(cat "$T/unversioned.err")"
pass "unversioned primary bucket refused at start: $(grep -o 'primary bucket prod does not keep[^(]*' "$T/unversioned.err" | head -1)"
[[ $(prod_req "?versioning=" '<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>') == 200 ]] ||
	fail "cannot enable versioning on the primary bucket"
write_coord_conf "$T/nolock.conf" dr-nolock s3
if timeout 60 "$coord" run -c "$T/nolock.conf" >/dev/null 2>"$T/nolock.err"; then
	fail "the coordinator started with a DR bucket without object lock"
fi
grep -q "does not have object lock enabled" "$T/nolock.err" ||
	fail "no-lock refusal unclear: $(cat "$T/nolock.err")"
pass "DR bucket without object lock: $(grep -o 'DR bucket dr-nolock[^(]*' "$T/nolock.err" | head -1)"
write_coord_conf "$T/posix.conf" dr-vault posix
if timeout 60 "$coord" run -c "$T/posix.conf" >/dev/null 2>"$T/posix.err"; then
	fail "the coordinator started with a posix DR repository"
fi
grep -q "must be an object-locked S3 bucket" "$T/posix.err" ||
	fail "posix DR refusal unclear: $(cat "$T/posix.err")"
pass "posix DR repository refused at start"

# --- the agent backs up into the primary bucket ----------------------------------------------
start_coord() { coord_start "$conf"; }
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
bucket = prod
prefix = fleet
path_style = true
access_key = $AG_ACCESS
secret_key = $AG_SECRET
[repository.dr]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = dr-vault
prefix = fleet
path_style = true
access_key = $RGW_DR_ACCESS
secret_key = $RGW_DR_SECRET
$(fleet_agent_link billing-db-1)
CONF
}
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
port=0 write_agent_conf
"$agent" init -c "$aconf" >"$T/agent.pub" || fail "agent init"
"$coord" agents enroll -c "$conf" --service billing --agent billing-db-1 --pubkey "$T/agent.pub" >/dev/null ||
	fail "enroll"
start_coord
write_agent_conf
operator_conf alice
export COFFER_CONFIG=$T/alice.conf

backup() {
	local id
	id=$("$agent" backup -c "$aconf" 2>"$T/backup.log") || fail "agent backup: $(cat "$T/backup.log")"
	"$agent" flush -c "$aconf" >/dev/null 2>"$T/flush.log" || fail "flush: $(cat "$T/flush.log")"
	echo "$id"
}
wait_for() { # description, condition; polls up to 60 s
	for _ in $(seq 600); do eval "$2" && return 0; sleep 0.1; done
	fail "$1: $(grep -i 'dr copy' "$T/coord.log" | tail -3)"
}
copy_status() { cq "select coalesce((select status from backup_copies where backup_id = '$1' and repo = 'dr'), 'none')"; }

b1=$(backup)
wait_for "the DR copy of $b1 was not verified" '[[ $(copy_status "$b1") == verified ]]'
for o in data manifest.json; do
	src=$(s3as prod sha prod "fleet/services/billing/backups/$b1/$o") || fail "read primary $o"
	dst=$(s3as coord-dr sha dr-vault "fleet/services/billing/backups/$b1/$o") || fail "read DR $o"
	[[ ${src%% *} == "${dst%% *}" ]] || fail "DR $o differs from the primary: $src vs $dst"
done
want=$(cq "select encode(stored_sha256, 'hex') from backups where id = '$b1'")
[[ $(s3as coord-dr sha dr-vault "fleet/services/billing/backups/$b1/data") == "ok sha=$want "* ]] ||
	fail "DR data does not hash to the catalog's stored_sha256"
[[ $(cq "select encode(stored_sha256, 'hex') from backup_copies where backup_id = '$b1'") == "$want" ]] ||
	fail "backup_copies.stored_sha256 is not the catalog's"
head=$(s3as dr head dr-vault "fleet/services/billing/backups/$b1/data") || fail "head DR data"
until_ms=${head#*until=}
until_ms=${until_ms%% *}
fin_ms=$(cq "select floor(extract(epoch from finished_at) * 1000)::bigint from backups where id = '$b1'")
[[ $head == *"lock=COMPLIANCE"* ]] || fail "DR copy is not COMPLIANCE-locked: $head"
((until_ms >= fin_ms + 2 * 86400000 - 1000 && until_ms <= fin_ms + 2 * 86400000 + 1000)) ||
	fail "retain-until $until_ms is not finished_at + 2d ($fin_ms + 2d)"
s3as dr head dr-vault "fleet/services/billing/backups/$b1/attestation.json" | grep -q "lock=COMPLIANCE" ||
	fail "the DR attestation is not locked"
[[ $(cq "select count(*) from audit where action = 'dr.copy_verified' and subject = '$b1'") == 1 ]] ||
	fail "no dr.copy_verified audit row"
curl -s "http://127.0.0.1:$mport/metrics" >"$T/metrics"
grep -q '^coffer_dr_copies{service="billing",status="verified"} 1$' "$T/metrics" ||
	fail "metric coffer_dr_copies verified missing: $(grep coffer_dr "$T/metrics")"
grep -q '^coffer_dr_copied_bytes_total{service="billing"} [1-9]' "$T/metrics" || fail "no coffer_dr_copied_bytes_total"
"$cli" status --output json >"$T/status.json" || fail "coffer status"
python3 - "$T/status.json" <<'PY' || fail "status does not show the DR copy: $(cat "$T/status.json")"
import json, sys
d = json.load(open(sys.argv[1]))
s = [x for x in d["services"] if x["service"] == "billing"][0]["dr"]
assert s["copy"] == "all" and s["verified"] == 1 and s["pending"] == 0 and s["failed"] == 0, s
assert s["last_verified_at"], s
PY
# The attestation in the primary repository too.
wait_for "no attestation in the primary repository" \
	'[[ $(cq "select attested_at is not null from backups where id = '"'$b1'"'") == t ]]'
s3as prod head prod "fleet/services/billing/backups/$b1/attestation.json" >/dev/null ||
	fail "attestation.json missing in the primary bucket"
pass "backup $b1 copied to DR: identical digests, COMPLIANCE until finished_at + 2d, verified, audited, in metrics and status"

# --- a restore drill from the DR repository, by a real runner --------------------------------
pg_start "$T/sandbox"
sandbox="host=$PG_HOST port=$PG_PORT user=postgres"
cat >"$T/runner.conf" <<CONF
[agent]
name = runner-1
role = drill_runner
state_dir = $T/runner-state
signing_key = $T/runner.sign
[postgres]
bin_dir = $PG_BINDIR
$(sed -n '/^\[repository.primary\]/,/^\[coordinator\]/p' "$aconf" | sed '$d')
[drill]
sandbox = $sandbox
[drill.billing]
key_ring = $T/billing.keys
verify_key = $T/agent.pub
$(fleet_agent_link runner-1)
CONF
"$agent" init -c "$T/runner.conf" >"$T/runner.pub" || fail "runner init"
"$cli" agents enroll --drill-runner --service billing --agent runner-1 --pubkey "$T/runner.pub" >/dev/null ||
	fail "enroll the runner"
"$agent" run -c "$T/runner.conf" 2>"$T/runner.log" &
rpid=$!
bg+=("$rpid")
"$cli" drill run --service billing >"$T/drill.out" 2>"$T/drill.err" || fail "drill run: $(cat "$T/drill.err")"
did=$(sed -n 's/^drill \([0-9]*\) .*/\1/p' "$T/drill.out")
[[ -n $did ]] || fail "drill run printed: $(cat "$T/drill.out")"
wait_for "DR drill $did did not finish: $(tail -3 "$T/runner.log")" \
	'[[ $(cq "select status from drills where id = $did") != running ]]'
[[ $(cq "select status || ' ' || repo || ' ' || backup_id from drills where id = $did") == "passed dr $b1" ]] ||
	fail "DR drill $did: $(cq "select status, repo, backup_id, failure_reason from drills where id = $did"); $(tail -5 "$T/runner.log")"
grep -q "repo=dr\|repository=dr" "$T/runner.log" || fail "the runner's log does not say it read DR: $(tail -5 "$T/runner.log")"
kill -TERM "$rpid" 2>/dev/null || true
wait "$rpid" 2>/dev/null || true
pg_stop "$T/sandbox"
pass "restore drill $did of $b1 from the DR repository by runner-1: passed (verify, restore into a sandbox, the row-count assertion)"

# --- nobody can delete the DR copy ---------------------------------------------------------
key="fleet/services/billing/backups/$b1/data"
ver=$(s3as dr head dr-vault "$key" | sed -n 's/.*version=\([^ ]*\).*/\1/p')
for who in agent prod coord-dr; do
	if out=$(s3as $who delete dr-vault "$key" 2>&1); then fail "$who deleted the DR copy"; fi
	grep -q AccessDenied <<<"$out" || fail "$who delete: no AccessDenied: $out"
	if out=$(s3as $who delete dr-vault "$key" "$ver" 2>&1); then fail "$who deleted the DR copy's version"; fi
done
if out=$(s3as dr delete dr-vault "$key" "$ver" 2>&1); then fail "the DR account deleted a COMPLIANCE-locked version"; fi
s3as dr sha dr-vault "$key" | grep -q "sha=$want" || fail "the DR copy changed after the delete attempts"
pass "DR copy delete refused for the agent, the coordinator (primary and DR credentials) and, locked COMPLIANCE, the DR account"

# --- the DR user loses write access: failures, retries, pages; then recovery -------------------
s3as dr policy dr-vault "$(dr_policy dr-vault '"s3:GetObject","s3:ListBucket","s3:GetBucketObjectLockConfiguration"')" >/dev/null ||
	fail "narrow the DR policy"
bq "insert into invoices select g, 'late ' || g, g from generate_series(20001, 20500) g" >/dev/null
b2=$(backup)
wait_for "the DR copy of $b2 did not fail" '[[ $(copy_status "$b2") == failed ]]'
wait_for "the failed copy was not retried" \
	'(( $(cq "select attempts from backup_copies where backup_id = '"'$b2'"'") >= 3 ))'
wait_for "dr_copy_failed did not page" 'grep -q "coffer/billing/dr_copy_failed" "$T/rx.log"'
wait_for "dr_copy_lag did not page" 'grep -q "coffer/billing/dr_copy_lag" "$T/rx.log"'
grep "coffer/billing/dr_copy_failed" "$T/rx.log" | grep '"event_action":"trigger"' | grep -q "$b2" ||
	fail "the failure page does not name the backup: $(grep dr_copy_failed "$T/rx.log")"
reason=$(cq "select failure_reason from backup_copies where backup_id = '$b2'")
grep -q "AccessDenied" <<<"$reason" || fail "failure reason unclear: $reason"
[[ $(cq "select count(*) from audit where action = 'dr.copy_failed' and subject = '$b2'") -ge 2 ]] ||
	fail "failed attempts not audited"
s3as dr policy dr-vault "$(dr_policy dr-vault "$DR_ACTIONS")" >/dev/null || fail "restore the DR policy"
wait_for "the DR copy of $b2 did not recover" '[[ $(copy_status "$b2") == verified ]]'
wait_for "dr_copy_failed did not resolve" \
	'[[ $(cq "select state from alerts where dedup_key = '"'coffer/billing/dr_copy_failed'"'") == resolved ]]'
wait_for "dr_copy_lag did not resolve" \
	'[[ $(cq "select state from alerts where dedup_key = '"'coffer/billing/dr_copy_lag'"'") == resolved ]]'
pass "DR write denied: $(cq "select attempts - 1 from backup_copies where backup_id = '$b2'") failed attempts audited, dr_copy_failed and dr_copy_lag paged; access back: verified, both resolved"

# --- a replaced primary object never goes to DR ------------------------------------------------
# A backup whose versions are recorded but whose copy has not been made yet
# (DR write denied again); the bucket's owner writes over its data; with
# access back, the copier refuses it, pages dr_copy_failed naming the
# replacement, and audits it. A newer backup's verified copy then resolves.
s3as dr policy dr-vault "$(dr_policy dr-vault '"s3:GetObject","s3:ListBucket","s3:GetBucketObjectLockConfiguration"')" >/dev/null ||
	fail "narrow the DR policy"
b3=$(backup)
wait_for "the versions of $b3 were not recorded" \
	'[[ $(cq "select count(*) from backup_objects where backup_id = '"'$b3'"' and version_id is not null") == 2 ]]'
wait_for "the DR copy of $b3 did not fail" '[[ $(copy_status "$b3") == failed ]]'
[[ $(prod_req "/fleet/services/billing/backups/$b3/data" "not the backup") == 200 ]] || fail "owner cannot overwrite data"
s3as dr policy dr-vault "$(dr_policy dr-vault "$DR_ACTIONS")" >/dev/null || fail "restore the DR policy"
wait_for "the DR copy of $b3 was not refused as replaced" \
	'cq "select failure_reason from backup_copies where backup_id = '"'$b3'"'" | grep -q "data of backup $b3 was replaced"'
reason=$(cq "select failure_reason from backup_copies where backup_id = '$b3'")
dv=$(cq "select version_id from backup_objects where backup_id = '$b3' and object = 'data'")
grep -q "recorded when the backup completed is $dv" <<<"$reason" || fail "the refusal does not name the recorded version: $reason"
[[ $(copy_status "$b3") == failed ]] || fail "a replaced backup was copied"
if s3as coord-dr head dr-vault "fleet/services/billing/backups/$b3/data" >/dev/null 2>&1; then
	fail "the replaced backup's data reached DR"
fi
cq "select details from audit where action = 'dr.copy_failed' and subject = '$b3' order by id desc limit 1" | grep -q "was replaced" ||
	fail "the refusal is not audited"
wait_for "dr_copy_failed did not page for the replaced backup" \
	'grep "coffer/billing/dr_copy_failed" "$T/rx.log" | grep "\"event_action\":\"trigger\"" | grep -q "$b3"'
pass "replaced data of $b3 refused by the DR copy: $(cut -c1-150 <<<"$reason")...; audited, dr_copy_failed paged"
# The owner removes the newer version (the fix the hint names): the retry
# copies the recorded one, and the page resolves.
newer=$(sed -n 's/.*its current version is \([^,]*\),.*/\1/p' <<<"$reason")
[[ -n $newer && $newer != "$dv" ]] || fail "no newer version of $b3's data: '$newer'"
[[ $(curl -s -o /dev/null -w '%{http_code}' -X DELETE --aws-sigv4 "aws:amz:us-east-1:s3" \
	--user "$RGW_SRC_ACCESS:$RGW_SRC_SECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
	"$RGW_ENDPOINT/prod/fleet/services/billing/backups/$b3/data?versionId=$newer") == 204 ]] ||
	fail "the owner cannot remove the newer version"
wait_for "the DR copy of $b3 was not verified once the replacement was removed" '[[ $(copy_status "$b3") == verified ]]'
wait_for "dr_copy_failed did not resolve" \
	'[[ $(cq "select state from alerts where dedup_key = '"'coffer/billing/dr_copy_failed'"'") == resolved ]]'
[[ $(cq "select versions->>'data' <> '' from backup_copies where backup_id = '$b3'") == t ]] || fail "no DR version recorded for $b3"
pass "the newer version removed by the owner: $b3 copied from its recorded version, verified; dr_copy_failed resolved"

# --- dr.copy = weekly: only the weekly tier's holders are due ---------------------------------
# Ten daily backups recorded straight into the catalog (03:00 UTC, the last
# ten days; settled then too, as retention buckets by it; marked verified, as the
# DR copy takes only what the coordinator verified): the copier plans exactly the newest of each ISO week within
# the last four, locked until that week's tier expiry (Monday 00:00 UTC four
# weeks on); their objects do not exist, so the copies then fail for good.
for d in $(seq 0 9); do
	cq "insert into backups (id, service, kind, status, started_at, finished_at, settled_at,
		stored_sha256, stored_bytes, manifest, key_id, verify_state, verified_at) select 'archive-$d',
		'archive', 'logical', 'completed', t, t + interval '5 minutes', t + interval '5 minutes',
		sha256('x'), 1, '{}', 'k1', 'verified', now()
		from (select date_trunc('day', now() at time zone 'UTC') at time zone 'UTC'
			- interval '$d days' + interval '3 hours' t) x" >/dev/null
done
expect=$(python3 - <<'PY'
import datetime as dt
today = dt.datetime.now(dt.timezone.utc).date()
this_monday = today - dt.timedelta(days=today.weekday())
weeks = {}
for d in range(10):
    day = today - dt.timedelta(days=d)
    monday = day - dt.timedelta(days=day.weekday())
    if (this_monday - monday).days // 7 < 4 and monday not in weeks:
        weeks[monday] = d  # d ascending: the first seen is the newest
out = []
for monday, d in sorted(weeks.items()):
    until = dt.datetime.combine(monday + dt.timedelta(weeks=4), dt.time(), dt.timezone.utc)
    out.append("archive-%d %d" % (d, until.timestamp() * 1000))
print(" ".join(sorted(out)))
PY
)
nexp=$(( $(wc -w <<<"$expect") / 2 ))
wait_for "the weekly holders were not planned" \
	'(( $(cq "select count(*) from backup_copies c join backups b on b.id = c.backup_id where b.service = '"'archive'"'") >= nexp ))'
got=$(cq "select string_agg(c.backup_id || ' ' || floor(extract(epoch from c.retain_until) * 1000)::bigint, ' ' order by c.backup_id) from backup_copies c join backups b on b.id = c.backup_id where b.service = 'archive'")
[[ $got == "$expect" ]] || fail "dr.copy = weekly planned '$got', want '$expect'"
[[ $(cq "select string_agg(distinct lock_mode, ',') from backup_copies c join backups b on b.id = c.backup_id where b.service = 'archive'") == compliance ]] ||
	fail "dr.lock default is not compliance"
wait_for "the copies of missing objects did not fail" \
	'[[ $(cq "select count(*) from backup_copies c join backups b on b.id = c.backup_id where b.service = '"'archive'"' and c.status = '"'failed'"' and c.next_attempt_at = '"'infinity'"'") == "$nexp" ]]'
pass "dr.copy = weekly: planned exactly the weekly holders ($nexp of 10), retain-until at each week's tier expiry; missing objects fail for good"

# --- a physical backup goes to DR with the WAL it needs ----------------------------------------
# The ledger cluster archives through wal-push into the primary bucket;
# PostgreSQL runs the agent as postgres, so it gets its own copy of the binary.
mkdir -p "$T/bin" "$T/lstate"
cp "$agent" "$T/bin/coffer-agent"
chmod 755 "$T/bin" "$T/bin/coffer-agent"
pagent=$T/bin/coffer-agent
lconf=$T/ledger.conf
pg_start "$T/lpg" "wal_level = replica" "archive_mode = on" \
	"archive_command = '$pagent wal-push -c $lconf %p'"
lci="$PG_CONNINFO dbname=postgres"
sed -e 's/^name = billing-db-1$/name = ledger-db-1/' -e 's/^service = billing$/service = ledger/' \
	-e "s|^state_dir = .*|state_dir = $T/lstate|" -e "s|^signing_key = .*|signing_key = $T/ledger.key|" \
	-e "s|^conninfo = .*|conninfo = $lci|" -e "s|billing-db-1\.|ledger-db-1.|g" \
	-e "s|^logical = .*|logical = 0 3 * * *|" "$aconf" >"$lconf"
"$agent" init -c "$lconf" >"$T/ledger.pub" || fail "ledger agent init"
chown -R postgres: "$T/lstate" "$T/ledger.key" "$lconf" "$T/billing.keys" "$pki"
"$cli" agents enroll --service ledger --agent ledger-db-1 --pubkey "$T/ledger.pub" >/dev/null ||
	fail "enroll ledger-db-1"
lq() { psql_at "$lci" -c "$1"; }
lq "create table entries (id int primary key, amount numeric)" >/dev/null
lq "insert into entries select g, g * 2 from generate_series(1, 5000) g" >/dev/null
p1=$(runuser -u postgres -- "$pagent" backup -c "$lconf" --kind physical 2>"$T/pbackup.log") ||
	fail "physical backup: $(cat "$T/pbackup.log")"
runuser -u postgres -- "$pagent" flush -c "$lconf" >/dev/null 2>"$T/pflush.log" ||
	fail "ledger flush: $(cat "$T/pflush.log")"
wait_for "the DR copy of physical backup $p1 was not verified" '[[ $(copy_status "$p1") == verified ]]'
nwal=$(cq "select (details->>'wal_segments')::int from audit where action = 'dr.copy_verified' and subject = '$p1'")
((nwal >= 1)) || fail "the physical backup's DR copy carries no WAL: $(cq "select details from audit where subject = '$p1' and action like 'dr.%'")"
s3as coord-dr list dr-vault "fleet/services/ledger/wal/" >"$T/drwal"
[[ $(wc -l <"$T/drwal") -ge $nwal ]] || fail "DR holds $(wc -l <"$T/drwal") WAL objects, want $nwal"
s3as dr head dr-vault "$(head -1 "$T/drwal")" | grep -q "lock=GOVERNANCE" || fail "DR WAL is not locked GOVERNANCE"
pass "physical backup $p1 copied to DR with its $nwal WAL segment(s), GOVERNANCE-locked"
# Point-in-time recovery from DR: WAL archived after the backup follows it.
lq "insert into entries select g, g * 2 from generate_series(5001, 5100) g" >/dev/null
lastseg=$(lq "select pg_walfile_name(pg_switch_wal())")
for _ in $(seq 300); do
	[[ $(lq "select coalesce(last_archived_wal, '') >= '$lastseg' from pg_stat_archiver") == t ]] && break
	sleep 0.1
done
runuser -u postgres -- "$pagent" flush -c "$lconf" >/dev/null 2>"$T/pflush2.log" ||
	fail "ledger flush: $(cat "$T/pflush2.log")"
wait_for "WAL archived after the backup was not copied to DR" \
	'[[ $(cq "select count(*) from wal_segments where service = '"'ledger'"' and segment = '"'$lastseg'"' and dr_copied_at is not null") == 1 ]]'
[[ $(cq "select count(*) from wal_segments where service = 'ledger' and dr_copied_at is null") == 0 ]] ||
	fail "ledger WAL left behind: $(cq "select string_agg(segment, ' ') from wal_segments where service = 'ledger' and dr_copied_at is null")"
s3as dr head dr-vault "fleet/services/ledger/wal/$(lq "select system_identifier from pg_control_system()")/00000001/$lastseg" | grep -q "lock=GOVERNANCE" ||
	fail "$lastseg is not in DR, locked"
pass "WAL archived after the backup ($lastseg) copied to DR and locked: point-in-time recovery from DR"
# ledger-db-1 revoked: the copier writes the revocation into both
# repositories, so the rebuilt catalog below keeps it revoked.
"$cli" agents revoke ledger-db-1 >/dev/null || fail "revoke ledger-db-1"
wait_for "the revocation of ledger-db-1 was not exported" \
	'[[ $(cq "select revocation_exported_at is not null from agents where name = '"'ledger-db-1'"'") == t ]]'
rk=$(s3as coord-dr list dr-vault "fleet/agents/ledger-db-1/")
[[ $rk == fleet/agents/ledger-db-1/revoked-*.json ]] || fail "no revocation in DR: '$rk'"
s3as dr head dr-vault "$rk" | grep -q "lock=COMPLIANCE" || fail "the revocation in DR is not COMPLIANCE-locked"
[[ $(cq "select count(*) from audit where action = 'agent.revocation_exported' and subject = 'ledger-db-1'") == 1 ]] ||
	fail "the exported revocation is not audited once"
pass "revoked ledger-db-1: revocation written to the primary and, COMPLIANCE-locked, to DR ($rk)"
runuser -u postgres -- "$PG_BINDIR/pg_ctl" -D "$T/lpg/data" -m fast -w stop >/dev/null

# --- production gone ----------------------------------------------------------------------
want_rows=$(bq "select count(*) || ' ' || sum(amount) from invoices")
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true

# --- the audit chain's head in DR catches rows cut from its end ------------------------------
n_exp=$(cq "select count(*) from audit where action = 'audit.head_exported'")
((n_exp >= 1)) || fail "the audit head was never exported"
hk=$(cq "select details->>'key' from audit where action = 'audit.head_exported' order by chain_seq desc limit 1")
hseq=$(cq "select details->>'chain_seq' from audit where action = 'audit.head_exported' order by chain_seq desc limit 1")
s3as dr head dr-vault "$hk" | grep -q "lock=COMPLIANCE" || fail "exported head $hk is not COMPLIANCE-locked"
"$coord" audit-verify -c "$conf" >"$T/av.out" 2>&1 || fail "audit-verify before tampering: $(cat "$T/av.out")"
grep -q "exported head in the DR repository: chain_seq $hseq" "$T/av.out" ||
	fail "audit-verify did not check the exported head: $(cat "$T/av.out")"
# A superuser cuts the chain back to before the exported head: the rest
# still verifies, the exported head does not.
cq "set session_replication_role = replica;
	delete from audit where chain_seq >= $hseq;
	update audit_head set chain_seq = $hseq - 1, mac = (select mac from audit where chain_seq = $hseq - 1)" >/dev/null
if "$coord" audit-verify -c "$conf" >"$T/av.out" 2>&1; then fail "audit-verify passed a chain cut below its exported head"; fi
grep -q "rows $hseq to .* are missing from the end of the chain (the local high-water mark" "$T/av.out" ||
	fail "cut not named by the local mark: $(cat "$T/av.out")"
# The DR head alone (as on a host without the coordinator's state_dir):
mv "$T/coord-state/audit-mark" "$T/audit-mark.saved"
if "$coord" audit-verify -c "$conf" >"$T/av.out" 2>&1; then fail "audit-verify passed a chain cut below its exported head"; fi
mv "$T/audit-mark.saved" "$T/coord-state/audit-mark"
grep -q "the audit chain has no row $hseq, but the DR repository holds it as an exported head" "$T/av.out" ||
	fail "truncation report unclear: $(cat "$T/av.out")"
pass "audit head exported to DR (COMPLIANCE); cutting the chain back to row $((hseq - 1)) is caught: $(grep -o 'rows were removed[^(]*' "$T/av.out" | head -1)"
# The coordinator started on the cut chain: its own rows land where the cut
# ones were, but the DR copier finds the exported head no longer there,
# exports nothing newer (that would hide the cut) and pages; the operator's
# `coffer audit verify` names the head as well.
start_coord
operator_conf alice
wait_for "audit_chain_broken did not page" 'grep -q "audit_chain_broken" "$T/rx.log"'
[[ $(cq "select count(*) from audit where action = 'audit.export_refused'") == 1 ]] ||
	fail "the refused export is not audited once"
sleep 3 # past audit_export_interval: still nothing newer exported
[[ $(cq "select count(*) from audit where action = 'audit.head_exported' and chain_seq > $hseq") == 0 ]] ||
	fail "a head was exported over the cut chain"
if "$cli" audit verify >"$T/cav.out" 2>&1; then fail "coffer audit verify passed the cut chain: $(cat "$T/cav.out")"; fi
# Either anchor may be the first to name it: the exported head (row $hseq
# is not what was exported) or the local mark (the rows appended since the
# cut end before the mark, or reach it with another row, once the mark
# stopped moving when the cut was found).
grep -qE "audit chain broken at chain_seq ($hseq|[0-9]+: rows [0-9]+ to [0-9]+ are missing from the end of the chain \(the local high-water mark|[0-9]+: row [0-9]+ is not the row the coordinator committed)" "$T/cav.out" ||
	fail "coffer audit verify: $(cat "$T/cav.out")"
pass "coordinator on the cut chain: audit_chain_broken paged, no newer head exported, coffer audit verify names row $hseq"
# A restart forgets what the copier found and mends nothing: the chain cut
# short walks clean, so until the new process has checked the head in DR
# again the page must stay open, not resolve and trigger again.
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
start_coord
operator_conf alice
wait_for "the restarted coordinator did not find the cut chain again" \
	'[[ $(cq "select count(*) from audit where action = '"'audit.export_refused'"'") == 2 ]]'
sleep 2 # a few more ticks
! grep "coffer/_coordinator/audit_chain_broken" "$T/rx.log" | grep -q '"event_action":"resolve"' ||
	fail "a coordinator restart resolved audit_chain_broken"
[[ $(cq "select state from alerts where check_name = 'audit_chain_broken'") == triggered ]] ||
	fail "audit_chain_broken is not open after the restart"
pass "a coordinator restart on the cut chain leaves audit_chain_broken open"
# A resume row inserted by hand (a superuser without the audit key) is not
# an operator's acknowledgement: its MAC does not verify, the export stays
# stopped.
hmac=$(s3as dr get dr-vault "$hk" | python3 -c 'import json, sys; print(json.load(sys.stdin)["mac"])')
[[ $hmac =~ ^[0-9a-f]{64}$ ]] || fail "no mac for the exported head $hseq: '$hmac'"
cq "set session_replication_role = replica;
	insert into audit (chain_seq, at, actor, action, subject, details, prev_mac, mac)
	values (1000000, now(), 'mallory', 'audit.export_resumed', 'dr',
	jsonb_build_object('from_key', '${hk#fleet/}', 'from_mac', '$hmac'), sha256('p'), sha256('m'))" >/dev/null
sleep 3
[[ $(cq "select count(*) from audit where action = 'audit.head_exported' and chain_seq > $hseq") == 0 ]] ||
	fail "a hand-inserted resume row restarted the export"
cq "set session_replication_role = replica; delete from audit where chain_seq = 1000000" >/dev/null
# The operator's answer: the export goes on from the chain as it is.
if "$cli" audit resume-export >"$T/res.out" 2>&1; then fail "resume-export without a reason was accepted"; fi
grep -q "reason" "$T/res.out" || fail "resume-export without a reason: $(cat "$T/res.out")"
"$cli" audit resume-export --reason "INC-1: rows cut by hand in dr.sh" >"$T/res.out" 2>&1 ||
	fail "resume-export: $(cat "$T/res.out")"
grep -q "audit head export resumed past chain_seq $hseq" "$T/res.out" || fail "resume-export said: $(cat "$T/res.out")"
rrow=$(sed -n 's/.*audit row \([0-9]*\) records it.*/\1/p' "$T/res.out")
[[ $(cq "select actor || ' ' || (details->>'from_seq') || ' ' || (details->>'reason') from audit where chain_seq = $rrow and action = 'audit.export_resumed'") == "operator:alice $hseq INC-1: rows cut by hand in dr.sh" ]] ||
	fail "the resume row: $(cq "select actor, details from audit where chain_seq = $rrow")"
wait_for "no head exported after the resume" \
	'[[ $(cq "select count(*) from audit where action = '"'audit.head_exported'"' and chain_seq > $rrow") -ge 1 ]]'
wait_for "audit_chain_broken did not resolve" \
	'[[ $(cq "select state from alerts where check_name = '"'audit_chain_broken'"'") == resolved ]]'
"$cli" audit verify >"$T/cav2.out" 2>&1 || fail "coffer audit verify after the resume: $(cat "$T/cav2.out")"
grep -q "is in the chain" "$T/cav2.out" || fail "coffer audit verify after the resume: $(cat "$T/cav2.out")"
if "$cli" audit resume-export --reason "again" >"$T/res2.out" 2>&1; then fail "a second resume was accepted"; fi
grep -q "not stopped" "$T/res2.out" || fail "a second resume: $(cat "$T/res2.out")"
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
pass "export resumed by the operator (audit row $rrow, with the reason), a new head exported, the page resolved; a hand-made resume row counts for nothing"
# A forged backup in DR: a real-looking manifest and data, no attestation.
forged=20990101T000000Z-l-abcdef
echo "{}" >"$T/forged.json"
s3as dr put dr-vault "fleet/services/billing/backups/$forged/manifest.json" "$T/forged.json" >/dev/null ||
	fail "plant the forged manifest"
# The whole primary bucket emptied (its owner may delete) and the catalog dropped.
s3as prod list prod "" >"$T/keys" || fail "list the primary bucket"
n=0
while read -r k; do
	s3as prod delete prod "$k" >/dev/null || fail "empty the primary bucket ($k)"
	n=$((n + 1))
done <"$T/keys"
((n >= 6)) || fail "only $n objects in the primary bucket: $(cat "$T/keys")"
[[ -z $(s3as prod list prod "") ]] || fail "the primary bucket is not empty"
if "$agent" list -c "$aconf" 2>/dev/null | grep -q "$b1"; then fail "the primary bucket still lists $b1"; fi
psql_at "$base dbname=postgres" -c "drop database coffer" >/dev/null
psql_at "$base dbname=postgres" -c "create database coffer owner coffer_owner" >/dev/null
# A new catalog starts a new chain: the old one's high-water mark goes with it
# (docs/CATALOG.md: removed once the restore is understood).
rm -f "$T/coord-state/audit-mark"
"$coord" migrate -c "$conf" >/dev/null 2>&1 || fail "migrate the new catalog"
pass "production gone: $n primary objects deleted, catalog dropped and recreated empty"

"$coord" rebuild-catalog -c "$conf" --repo dr --output json >"$T/rebuild.json" 2>"$T/rebuild.err" && rc=0 || rc=$?
[[ $rc == 1 ]] || fail "rebuild-catalog exit $rc (want 1: one refused): $(cat "$T/rebuild.json" "$T/rebuild.err")"
python3 - "$T/rebuild.json" "$b1" "$b2" "$forged" <<'PY' || fail "rebuild report wrong: $(cat "$T/rebuild.json")"
import json, sys
d = json.load(open(sys.argv[1]))
r = {b["backup_id"]: b for b in d["backups"]}
assert d["recovered"] == 4 and d["refused"] == 1, d
assert r[sys.argv[2]]["result"] == "recovered" and r[sys.argv[3]]["result"] == "recovered", r
assert r[sys.argv[4]]["result"] == "refused" and "attestation" in r[sys.argv[4]]["problem"], r
PY
[[ $(cq "select count(*) from backups where status = 'completed' and repo = 'dr'") == 4 ]] ||
	fail "the rebuilt catalog does not hold the three backups"
[[ $(cq "select encode(stored_sha256, 'hex') from backups where id = '$b1'") == "$want" ]] ||
	fail "rebuilt stored_sha256 differs"
[[ $(cq "select count(*) from audit where action = 'catalog.rebuild_refused' and subject = '$forged'") == 1 ]] ||
	fail "the refusal is not audited"
"$coord" audit-verify -c "$conf" >/dev/null 2>&1 || fail "audit chain of the rebuilt catalog does not verify"
grep -q '"revoked":1' "$T/rebuild.json" || fail "the rebuild did not revoke ledger-db-1: $(head -c 300 "$T/rebuild.json")"
[[ $(cq "select string_agg(name || '=' || (revoked_at is not null)::text, ' ' order by name) from agents") == "billing-db-1=false ledger-db-1=true" ]] ||
	fail "rebuilt agents: $(cq "select string_agg(name || '=' || (revoked_at is not null)::text, ' ' order by name) from agents")"
[[ $(cq "select count(*) from audit where action = 'agent.revoke_rebuilt' and subject = 'ledger-db-1'") == 1 ]] ||
	fail "the rebuilt revocation is not audited"
# Again: nothing new, nothing lost.
"$coord" rebuild-catalog -c "$conf" --repo dr --output json >"$T/rebuild2.json" 2>/dev/null || true
grep -q '"recovered":0,"present":4,"refused":1,"revoked":0' "$T/rebuild2.json" ||
	fail "second rebuild not idempotent: $(cat "$T/rebuild2.json")"
pass "rebuild-catalog --repo dr: 4 recovered, the forged one refused (no attestation) and audited, ledger-db-1 revoked again from its revocation; a second run changes nothing"

# The agent, with its key ring and the DR account's read credentials only.
# The forged backup is listed INVALID, so the listing exits 1 (and lists all).
rc=0
"$agent" list -c "$aconf" --repo dr >"$T/list.out" 2>"$T/list.err" || rc=$?
[[ $rc == 1 ]] && grep -q "$forged *INVALID" "$T/list.out" ||
	fail "list --repo dr: exit $rc, want 1 with $forged INVALID: $(cat "$T/list.err" "$T/list.out")"
grep -q "$b1" "$T/list.out" && grep -q "$b2" "$T/list.out" || fail "list --repo dr misses a backup: $(cat "$T/list.out")"
"$agent" verify -c "$aconf" --repo dr --backup "$b2" >/dev/null 2>"$T/verify.err" ||
	fail "verify --repo dr: $(cat "$T/verify.err")"
"$agent" restore -c "$aconf" --repo dr --backup "$b2" --target-db billing_dr >/dev/null 2>"$T/restore.err" ||
	fail "restore --repo dr: $(cat "$T/restore.err")"
got_rows=$(bq "select count(*) || ' ' || sum(amount) from invoices" billing_dr)
[[ $got_rows == "$want_rows" ]] || fail "restored from DR: '$got_rows', want '$want_rows'"
pass "list, verify and restore $b2 from the DR repository alone: $got_rows (count, sum) as in production"

# The physical backup from DR alone: its WAL comes from DR too.
port3=$(_free_port)

mkdir -p "$T/lr/data"
chown -R postgres: "$T/lr"
_t_clusters+=("$T/lr")
# The copy postgres can run: the restored server's restore_command names
# the binary that wrote it.
"$pagent" restore -c "$lconf" --repo dr --physical --backup "$p1" --pgdata "$T/lr/data" \
	--port "$port3" --start >"$T/prestore.out" 2>"$T/prestore.log" ||
	fail "physical restore from DR: $(tail -5 "$T/prestore.log"; tail -20 "$T/lr/data/coffer-recovery.log" 2>/dev/null)"
got=$(psql_at "host=$T/lpg/sock port=$port3 user=postgres dbname=postgres" -c "select count(*) || ' ' || sum(amount) from entries")
[[ $got == "5100 26015100" ]] || fail "physical restore from DR: '$got', want '5100 26015100' (the backup and the rows after it)"
pg_stop "$T/lr"
pass "physical backup $p1 restored from DR alone, recovered through the WAL after it: $got"

# --- a DR object corrupted through the DR account ----------------------------------------------
head -c 4096 /dev/urandom >"$T/junk"
s3as dr put dr-vault "fleet/services/billing/backups/$b1/data" "$T/junk" >/dev/null || fail "corrupt the DR object"
# The put is a new version over the locked one: the agent reads the version
# it finds oldest (the copy the coordinator wrote) and names the newer one.
"$agent" verify -c "$aconf" --repo dr --backup "$b1" >"$T/v.out" 2>"$T/v.err" ||
	fail "verify --repo dr did not read the locked original: $(cat "$T/v.err")"
grep "a backup object was replaced" "$T/v.err" | grep -q "object=data" || fail "verify does not warn of the newer version: $(cat "$T/v.err")"
pass "a new version over a DR object: verify --repo dr reads the locked original, warns: $(grep -o 'object=data.*' "$T/v.err" | head -1 | cut -c1-120)"

# A manifest replaced by a doctored one (a new version, through the DR
# account): its digest is no longer the attested one.
key2="fleet/services/billing/backups/$b2/manifest.json"
s3as dr get dr-vault "$key2" | sed 's/"rows":"\([0-9]*\)"/"rows":"1\1"/' >"$T/doctored.json"
cmp -s <(s3as dr get dr-vault "$key2") "$T/doctored.json" && fail "the doctored manifest is unchanged"
s3as dr put dr-vault "$key2" "$T/doctored.json" >/dev/null || fail "replace the manifest"
psql_at "$base dbname=postgres" -c "drop database coffer" >/dev/null
psql_at "$base dbname=postgres" -c "create database coffer owner coffer_owner" >/dev/null
# A new catalog starts a new chain: the old one's high-water mark goes with it
# (docs/CATALOG.md: removed once the restore is understood).
rm -f "$T/coord-state/audit-mark"
"$coord" migrate -c "$conf" >/dev/null 2>&1 || fail "migrate the new catalog"
"$coord" rebuild-catalog -c "$conf" --repo dr >"$T/rebuild3.out" 2>/dev/null && fail "rebuild accepted damaged backups"
grep -q "^REFUSED  billing/$b1: the data object .* does not match its manifest" "$T/rebuild3.out" ||
	fail "corrupted data not refused: $(cat "$T/rebuild3.out")"
grep -q "^REFUSED  billing/$b2: manifest.json (sha256 .*) is not the attested one" "$T/rebuild3.out" ||
	fail "doctored manifest not refused: $(cat "$T/rebuild3.out")"
grep -q "2 recovered, 0 already present, 3 refused" "$T/rebuild3.out" ||
	fail "rebuild summary: $(tail -1 "$T/rebuild3.out")"
pass "rebuild into an empty catalog refuses the corrupted data and the doctored manifest, recovers the intact physical backup"
