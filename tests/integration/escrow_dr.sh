#!/usr/bin/env bash
# An agent host is gone (docs/OPERATIONS.md): key escrow and a restore from
# DR alone on a new host, on a real S3 server (Ceph radosgw, lib/rgw.sh)
# with an object-locked DR bucket, real PostgreSQL, a real coordinator.
# - a backup whose key has no escrow copy pages key_not_escrowed; the
#   agent's `keyring escrow` writes it to the primary, the coordinator copies
#   it into DR (COMPLIANCE-locked), records it and the page resolves;
# - the key ring and the signing key are rotated between two backups (a new
#   key k2, a new agent key enrolled as billing-db-2); the second backup
#   escrows k2 by itself;
# - the host is lost: the agent's state, key ring and both signing keys
#   deleted, the primary bucket emptied, the service's database dropped;
# - a new host: fresh `init`, `keyring recover --escrow-key` from DR, and
#   `restore --repo dr` of BOTH backups (signed by keys the new host never
#   held) into new databases, without --target-conninfo; every table
#   identical to what was backed up;
# - without [keys] coordinator_public_key, or with another coordinator key,
#   the same restore is refused, naming why.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/lib.sh"
umask 077
source "$here/lib/rgw.sh"
t_init escrow_dr

if ! rgw_start "$T/rgw"; then
	echo "SKIP escrow_dr: radosgw could not start (see above); THE TEST DID NOT RUN" >&2
	exit 77
fi
bg=()
stop_all() {
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	_rgw_cleanup
}
trap stop_all EXIT

coord=$COFFER_BIN/coffer-coordinator
agent=$COFFER_BIN/coffer-agent
s3=$COFFER_BIN/s3_itest
for b in "$coord" "$agent" "$s3"; do [[ -x $b ]] || fail "build $b first"; done

rgw_fleet_repos
s3as() { # prod | dr | coord-dr, then s3_itest's arguments
	local who=$1
	shift
	[[ $who == coord-dr ]] && who=CD
	rgw_as "$who" "$@"
}

catalog_start "$T/pg" billing
cq() { psql_at "$ci" -c "$1"; }
bq() { psql_at "$base dbname=${2:-billing}" -c "$1"; }
bq "create table customers (id int primary key, name text not null, born date, note text);
	insert into customers select g, 'customer ' || g, date '1970-01-01' + g, case when g % 7 = 0 then null else md5(g::text) end
	from generate_series(1, 3000) g;
	create table invoices (id bigint primary key, customer int references customers, amount numeric(12,2), tags text[]);
	insert into invoices select g, 1 + g % 3000, g * 1.25, array['t' || (g % 5)] from generate_series(1, 20000) g;
	create schema audit;
	create table audit.events (at timestamptz, what jsonb);
	insert into audit.events select timestamptz '2026-01-01' + g * interval '1 minute', jsonb_build_object('n', g) from generate_series(1, 500) g" >/dev/null
# Every table of a database, each as the md5 of its rows in a fixed order.
tables_digest() {
	local db=$1 t out=""
	for t in $(bq "select schemaname || '.' || tablename from pg_tables where schemaname not in ('pg_catalog', 'information_schema') order by 1" "$db"); do
		out+="$t=$(bq "select count(*) || ':' || coalesce(md5(string_agg(x::text, E'\n' order by x::text)), '-') from $t x" "$db") "
	done
	echo "$out"
}
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1 billing-db-2

# --- the platform's keys: escrow (offline) and the coordinator's attestation key ----------------
"$agent" escrow-keygen --out "$T/escrow.key" >"$T/escrow.out" || fail "escrow-keygen"
[[ $(stat -c %a "$T/escrow.key") == 600 && -s $T/escrow.key.pub ]] || fail "escrow key pair files"
escrow_fp=$(sed -n 's/^escrow key \([0-9a-f]*\):.*/\1/p' "$T/escrow.out")
"$coord" attest-keygen --out "$T/attest.key" >"$T/coord-attest.pub" || fail "attest-keygen"
pass "escrow key $escrow_fp made (private 0600, public .pub); coordinator attestation key made"

conf=$T/coordinator.conf
fleet_coordinator_conf "$conf" "maintenance_interval = 1s" "metrics_listen = 127.0.0.1:0" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = es00123456789abcdef0123456789abc
key_escrow_max = 3s
[dr]
copy_lag = 1h
retry_max = 2s
attestation_key = $T/attest.key
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
dr.copy = all
dr.lock = compliance
dr.retention = 2d
$(rgw_coord_repos fleet)
CONF
catalog_migrate "$conf"

# agent_conf FILE NAME SIGNING_KEY KEY_RING STATE [KEYS_SECTION]
agent_conf() {
	cat >"$1" <<CONF
[agent]
name = $2
service = billing
state_dir = $5
signing_key = $3
key_ring = $4
[postgres]
conninfo = $base dbname=billing
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 * * *
$(rgw_agent_repo fleet)
[repository.dr]
type = s3
endpoint = $RGW_ENDPOINT
region = us-east-1
bucket = dr-vault
prefix = fleet
path_style = true
access_key = $RGW_DR_ACCESS
secret_key = $RGW_DR_SECRET
${6:-}
$(fleet_agent_link "$2")
CONF
}
keys_section="[keys]
escrow_public_key = $T/escrow.key.pub
coordinator_public_key = $T/coord-attest.pub"
aconf=$T/agent.conf
mkdir -p "$T/state"
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen k1"
port=0 agent_conf "$aconf" billing-db-1 "$T/agent1.key" "$T/billing.keys" "$T/state"
"$agent" init -c "$aconf" >"$T/agent1.pub" || fail "init billing-db-1"
"$coord" agents enroll -c "$conf" --service billing --agent billing-db-1 --pubkey "$T/agent1.pub" >/dev/null ||
	fail "enroll billing-db-1"
coord_start "$conf"
agent_conf "$aconf" billing-db-1 "$T/agent1.key" "$T/billing.keys" "$T/state"

backup() {
	local id
	id=$("$agent" backup -c "$aconf" 2>"$T/backup.log") || fail "agent backup: $(cat "$T/backup.log")"
	"$agent" flush -c "$aconf" >/dev/null 2>"$T/flush.log" || fail "flush: $(cat "$T/flush.log")"
	echo "$id"
}
wait_for() { # description, condition; polls up to 60 s
	for _ in $(seq 600); do eval "$2" && return 0; sleep 0.1; done
	fail "$1: $(grep -i 'dr\|escrow' "$T/coord.log" | tail -5)"
}
copied() { [[ $(cq "select coalesce((select status from backup_copies where backup_id = '$1' and repo = 'dr'), 'none')") == verified ]]; }
escrowed() { [[ $(cq "select count(*) from key_escrows where service = 'billing' and key_id = '$1'") == 1 ]]; }

# --- a backup with a key nobody escrowed pages ------------------------------------------------
want1=$(tables_digest billing)
[[ $want1 == "audit.events=500:"*" public.customers=3000:"*" public.invoices=20000:"* ]] || fail "table digests: $want1"
b1=$(backup)
wait_for "the DR copy of $b1 was not verified" "copied $b1"
wait_for "key_not_escrowed did not page" 'grep -q "billing/key_not_escrowed" "$T/rx.log"'
grep "billing/key_not_escrowed" "$T/rx.log" | grep -q '"event_action":"trigger"' || fail "key_not_escrowed: $(grep key_not_escrowed "$T/rx.log")"
grep -q 'key k1 seals its newest backup' "$T/rx.log" || fail "the page does not name k1: $(grep key_not_escrowed "$T/rx.log" | head -1)"
pass "backup $b1 sealed with k1, copied to DR; no escrow copy of k1 after key_escrow_max: key_not_escrowed paged"

agent_conf "$aconf" billing-db-1 "$T/agent1.key" "$T/billing.keys" "$T/state" "$keys_section"
"$agent" keyring escrow -c "$aconf" >"$T/escrow1.out" 2>"$T/escrow1.err" || fail "keyring escrow: $(cat "$T/escrow1.err")"
grep -q "^1 of 1 keys of service billing escrowed now to escrow key $escrow_fp" "$T/escrow1.out" ||
	fail "keyring escrow said: $(cat "$T/escrow1.out")"
s3as prod head prod "fleet/services/billing/keys/k1.escrow.json" >/dev/null || fail "no escrow object in the primary"
if grep -q "$(sed -n 's/^k1 \([0-9a-f]*\) .*/\1/p' "$T/billing.keys")" <(s3as prod get prod "fleet/services/billing/keys/k1.escrow.json"); then
	fail "the escrow object holds k1 in the clear"
fi
wait_for "k1's escrow copy was not recorded" "escrowed k1"
s3as dr head dr-vault "fleet/services/billing/keys/k1.escrow.json" | grep -q "lock=COMPLIANCE" ||
	fail "the DR escrow copy is not COMPLIANCE-locked: $(s3as dr head dr-vault "fleet/services/billing/keys/k1.escrow.json")"
[[ $(cq "select count(*) from audit where action = 'key.escrowed' and subject = 'billing' and details->>'key_id' = 'k1'") == 1 ]] ||
	fail "no key.escrowed audit row for k1"
wait_for "key_not_escrowed did not resolve" \
	'grep "billing/key_not_escrowed" "$T/rx.log" | grep -q "\"event_action\":\"resolve\""'
if s3as coord-dr delete dr-vault "fleet/services/billing/keys/k1.escrow.json" >/dev/null 2>&1; then
	fail "the coordinator's DR user deleted an escrow copy"
fi
pass "keyring escrow: k1 sealed (not in the clear) into the primary, copied to DR COMPLIANCE-locked, recorded and audited; the page resolved"

# --- rotation: a new KEK and a new agent signing key between two backups ----------------------
"$agent" keygen --out "$T/billing.keys" --id k2 >/dev/null || fail "keygen k2"
agent_conf "$aconf" billing-db-2 "$T/agent2.key" "$T/billing.keys" "$T/state" "$keys_section"
"$agent" init -c "$aconf" >"$T/agent2.pub" || fail "init billing-db-2"
"$coord" agents enroll -c "$conf" --service billing --agent billing-db-2 --pubkey "$T/agent2.pub" >/dev/null ||
	fail "enroll billing-db-2"
bq "update customers set note = 'changed' where id % 10 = 1; delete from invoices where id > 19000;
	insert into invoices select g, 1 + g % 3000, g * 2.5, null from generate_series(30001, 31000) g;
	create table refunds (id int, invoice bigint, amount numeric); insert into refunds select g, g, g from generate_series(1, 100) g" >/dev/null
want2=$(tables_digest billing)
[[ $want1 != "$want2" ]] || fail "the data did not change between the backups"
b2=$(backup)
wait_for "the DR copy of $b2 was not verified" "copied $b2"
wait_for "k2 was not escrowed by the backup" "escrowed k2"
[[ $(cq "select agent || ' ' || key_id from backups where id = '$b1'") == "billing-db-1 k1" ]] || fail "b1's agent and key"
curl -s "http://127.0.0.1:$mport/metrics" >"$T/metrics"
grep -q '^coffer_keys_escrowed{service="billing"} 2$' "$T/metrics" ||
	fail "metric coffer_keys_escrowed: $(grep coffer_keys "$T/metrics")"
[[ $(cq "select agent || ' ' || key_id from backups where id = '$b2'") == "billing-db-2 k2" ]] || fail "b2's agent and key"
pass "rotated: $b2 signed by billing-db-2 and sealed with k2, which the backup escrowed by itself; both copied to DR"
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true

# --- the host is lost ----------------------------------------------------------------------
rm -rf "$T/state" "$T/billing.keys" "$T/agent1.key" "$T/agent2.key" "$aconf"
s3as prod list prod "" >"$T/keys" || fail "list the primary bucket"
while read -r k; do s3as prod delete prod "$k" >/dev/null || fail "empty the primary ($k)"; done <"$T/keys"
[[ -z $(s3as prod list prod "") ]] || fail "the primary bucket is not empty"
bq "drop database billing" postgres >/dev/null
pass "host lost: state, key ring and both signing keys deleted; primary bucket emptied; database billing dropped"

# --- a new host -----------------------------------------------------------------------------
nconf=$T/new-agent.conf
port=0 agent_conf "$nconf" billing-db-3 "$T/new.key" "$T/new.keys" "$T/new-state" "$keys_section"
"$agent" init -c "$nconf" >/dev/null || fail "init on the new host"
"$agent" keyring recover -c "$nconf" --escrow-key "$T/escrow.key" >"$T/recover.out" 2>"$T/recover.err" ||
	fail "keyring recover: $(cat "$T/recover.err")"
grep -q "key ring $T/new.keys written from escrow in repository dr: 2 keys, newest k2" "$T/recover.out" ||
	fail "recover said: $(cat "$T/recover.out")"
[[ $(stat -c %a "$T/new.keys") == 600 ]] || fail "the recovered ring is not 0600"
if "$agent" keyring recover -c "$nconf" --escrow-key "$T/escrow.key" >/dev/null 2>"$T/recover2.err"; then
	fail "recover replaced an existing ring"
fi
grep -q "already exists" "$T/recover2.err" || fail "second recover: $(cat "$T/recover2.err")"
"$agent" list -c "$nconf" --repo dr >"$T/list.out" 2>&1 || fail "list --repo dr: $(cat "$T/list.out")"
! grep -q INVALID "$T/list.out" || fail "list --repo dr on the new host: $(cat "$T/list.out")"
grep -q "$b1 .* k1$" "$T/list.out" && grep -q "$b2 .* k2$" "$T/list.out" || fail "list: $(cat "$T/list.out")"
pass "new host: init, ring recovered from DR (k1, k2; 0600; never over an existing ring); list --repo dr: both backups valid"

for pair in "$b1:restored1:$want1" "$b2:restored2:$want2"; do
	id=${pair%%:*}
	rest=${pair#*:}
	db=${rest%%:*}
	want=${rest#*:}
	"$agent" restore -c "$nconf" --repo dr --backup "$id" --target-db "$db" >"$T/restore.out" 2>"$T/restore.err" ||
		fail "restore $id from DR: $(cat "$T/restore.err")"
	got=$(tables_digest "$db")
	[[ $got == "$want" ]] || fail "restored $id differs: want $want got $got"
done
pass "restore --repo dr of $b1 (billing-db-1, k1) and $b2 (billing-db-2, k2) into new databases on a server without billing, no --target-conninfo: every table identical"

# --- what the trust rests on ----------------------------------------------------------------
agent_conf "$nconf" billing-db-3 "$T/new.key" "$T/new.keys" "$T/new-state" "[keys]"
if "$agent" restore -c "$nconf" --repo dr --backup "$b1" --target-db nokey >/dev/null 2>"$T/nokey.err"; then
	fail "a backup signed by another key restored without coordinator_public_key"
fi
grep -q "coordinator_public_key" "$T/nokey.err" || fail "refusal without the coordinator key: $(cat "$T/nokey.err")"
"$coord" attest-keygen --out "$T/other-attest.key" >"$T/other-attest.pub" || fail "attest-keygen (other)"
agent_conf "$nconf" billing-db-3 "$T/new.key" "$T/new.keys" "$T/new-state" "[keys]
coordinator_public_key = $T/other-attest.pub"
if "$agent" restore -c "$nconf" --repo dr --backup "$b2" --target-db otherkey >/dev/null 2>"$T/other.err"; then
	fail "a backup restored with an attestation checked against another coordinator key"
fi
grep -q "not signed by the coordinator key" "$T/other.err" || fail "refusal with another key: $(cat "$T/other.err")"
pass "without [keys] coordinator_public_key, or with another coordinator's key, the restore is refused and says why"
