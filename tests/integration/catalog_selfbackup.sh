#!/usr/bin/env bash
# The coordinator's own catalog, backed up by Coffer and brought back after
# it is lost (docs/CATALOG.md, "Backing up the catalog with Coffer"). The
# catalog is an ordinary service, coffer-catalog, whose agent reads the
# database `coffer` as a role holding only pg_read_all_data; its backups go
# to the same repositories and DR as every service's.
#
# The disaster: the catalog database is dropped after more backups were
# recorded. The procedure the document gives, followed literally:
# - an empty database owned by coffer_owner, the catalog's backup restored
#   into it as coffer_owner (the agent restores without a coordinator);
# - migrate (grants the runtime role again);
# - audit-verify names the rows the restored chain lacks (the head exported
#   to DR is ahead): a restore is not a silent rewrite of history;
#   an operator's audited `coffer audit resume-export` accepts it;
# - rebuild-catalog from DR records the backups newer than the catalog's
#   backup (and that backup itself), proven by their attestations;
# - the coordinator starts, every backup is listed, an agent's next backup
#   is accepted, and the audit chain is intact.
here=$(dirname "$0")
source "$here/lib.sh"
source "$here/lib/rgw.sh"
t_init catalog-selfbackup
agent=$COFFER_BIN/coffer-agent
coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
if ! rgw_start "$T/rgw"; then
	echo "SKIP catalog_selfbackup: radosgw could not start (see above); THE TEST DID NOT RUN" >&2
	exit 77
fi
bg=()
stop_all() {
	for p in "${bg[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	_rgw_cleanup
}
trap stop_all EXIT
rgw_fleet_repos

catalog_start "$T/pg" billing
psql_at "$ci_owner" -c "select 1" >/dev/null || fail "coffer_owner cannot connect"
psql_at "$base dbname=postgres" \
	-c "CREATE ROLE coffer_catalog_backup LOGIN IN ROLE pg_read_all_data" ||
	fail "cannot create the catalog's backup role"
psql_at "$base dbname=billing" -c "create table invoices (id int primary key, v text);
	insert into invoices select g, 'v' || g from generate_series(1, 500) g" >/dev/null

pki=$T/pki
pki_make "$pki" alice billing-db-1 coffer-catalog-db-1
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" <<CONF
$(rgw_coord_repos fleet)
[dr]
retry_max = 2s
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
dr.copy = all
dr.lock = governance
dr.retention = 2d
[service.coffer-catalog]
owner = team-platform
schedule = 0 * * * *
retention.daily = 14
dr.copy = all
dr.lock = governance
dr.retention = 2d
CONF
fleet_coordinator_up "$T/coordinator.conf" 300
fleet_agent_enroll billing
fleet_agent_enroll coffer-catalog
for svc in billing coffer-catalog; do
	sed -i -e '/^\[repository.primary\]$/d' -e '/^type = posix$/d' -e "\\|^path = $T/repo\$|d" "$T/$svc.conf"
	rgw_agent_repo fleet >>"$T/$svc.conf"
	chmod 600 "$T/$svc.conf"
done
# The catalog's agent reads the catalog as the backup role, nothing more.
sed -i "s|^conninfo = .*|conninfo = host=$PG_HOST port=$PG_PORT user=coffer_catalog_backup dbname=coffer|" \
	"$T/coffer-catalog.conf"

backup() { # service -> id, its events acked by the coordinator
	local id
	id=$("$agent" backup -c "$T/$1.conf" 2>"$T/backup-$1.err") ||
		fail "backup of $1: $(cat "$T/backup-$1.err")"
	timeout 60 "$agent" flush -c "$T/$1.conf" --timeout 50s >/dev/null 2>"$T/flush.err" ||
		fail "flush $1: $(cat "$T/flush.err")"
	echo "$id"
}
in_dr() { # backup id: its DR copy verified
	[[ $(psql_at "$ci" -c "select count(*) from backup_copies where backup_id = '$1' and repo = 'dr' and status = 'verified'") == 1 ]]
}

b1=$(backup billing)
c1=$(backup coffer-catalog)
b2=$(backup billing)
for id in "$c1" "$b2"; do
	wait_for 60 in_dr "$id" || fail "backup $id was not copied to DR"
done
audit_rows=$(psql_at "$ci" -c "select count(*) from audit")
pass "catalog backed up by its own agent as coffer_catalog_backup ($c1); billing $b1 before it, $b2 after it; $c1 and $b2 in DR"

# --- the catalog is lost -------------------------------------------------------------
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
psql_at "$base dbname=postgres" -c "DROP DATABASE coffer WITH (FORCE)" >/dev/null ||
	fail "cannot drop the catalog"

# Restored by the agent alone, as the owner, into a new database (the agent
# refuses to restore over its service's own database by name), which then
# takes the catalog's name: the tables, the audit triggers and functions
# belong to coffer_owner again.
psql_at "$base dbname=postgres" -c "CREATE DATABASE coffer_restored OWNER coffer_owner" >/dev/null
"$agent" restore -c "$T/coffer-catalog.conf" --backup "$c1" --target-db coffer_restored \
	--target-conninfo "host=$PG_HOST port=$PG_PORT user=coffer_owner dbname=postgres" \
	>"$T/restore.out" 2>&1 || fail "restoring the catalog: $(cat "$T/restore.out")"
psql_at "$base dbname=postgres" -c "ALTER DATABASE coffer_restored RENAME TO coffer" >/dev/null ||
	fail "cannot rename the restored catalog"
owners=$(psql_at "$ci" -c "select string_agg(distinct tableowner, ',') from pg_tables where schemaname = 'public'")
[[ $owners == coffer_owner ]] || fail "restored tables are owned by '$owners', not coffer_owner"
catalog_migrate "$T/coordinator.conf"
psql_at "$ci_app" -c "select count(*) from backups" >/dev/null ||
	fail "migrate did not grant the runtime role on the restored catalog"
pass "the catalog restored from its own backup by coffer-agent as coffer_owner; migrate granted coffer_app"

# The restored chain is shorter than the one the coordinator had committed
# and exported to DR: verification names the missing tail.
if "$coord" audit-verify -c "$T/coordinator.conf" >"$T/verify1.out" 2>&1; then
	fail "audit-verify accepted a chain cut back by a restore: $(cat "$T/verify1.out")"
fi
grep -q "rows were removed from the end of the chain\|missing from the end of the chain" "$T/verify1.out" ||
	fail "audit-verify does not name the missing tail: $(cat "$T/verify1.out")"
restored_rows=$(psql_at "$ci" -c "select count(*) from audit")
((restored_rows < audit_rows)) || fail "restored audit has $restored_rows rows, had $audit_rows"
pass "audit-verify names the $((audit_rows - restored_rows)) audit rows newer than the catalog's backup"

# Backups recorded after the catalog's backup come back from DR's attestations.
known() { [[ $(psql_at "$ci" -c "select count(*) from backups where id = '$1'") == 1 ]]; }
known "$b1" || fail "$b1, older than the catalog's backup, is not in the restored catalog"
known "$b2" && fail "$b2 is in the restored catalog, which predates it"
"$coord" rebuild-catalog -c "$T/coordinator.conf" --repo dr --output json >"$T/rebuild.json" 2>"$T/rebuild.err" ||
	fail "rebuild-catalog: $(cat "$T/rebuild.err")"
for id in "$b2" "$c1"; do
	known "$id" || fail "rebuild-catalog did not record $id: $(cat "$T/rebuild.json")"
done
grep -q '"result":"refused"' "$T/rebuild.json" && fail "rebuild-catalog refused something: $(cat "$T/rebuild.json")"
pass "rebuild-catalog --repo dr recorded $b2 and the catalog's own backup $c1"

# --- the coordinator resumes --------------------------------------------------------
# It starts on the shorter chain, exports no head over the one DR holds, and
# waits for an operator's audited resume.
coord_start "$T/coordinator.conf" 200
operator_conf alice
# (It listens on a new port here; a real coordinator keeps its address.)
sed -i "s|^url = tls+tcp://localhost:.*|url = tls+tcp://localhost:$port|" "$T/billing.conf" "$T/coffer-catalog.conf"
"$cli" audit resume-export --reason "catalog restored from its backup $c1 after the database was lost" \
	>"$T/resume.out" 2>&1 || fail "audit resume-export: $(cat "$T/resume.out")"
resumed() { "$coord" audit-verify -c "$T/coordinator.conf" >"$T/verify2.out" 2>&1; }
wait_for 30 resumed || fail "the chain does not verify after the audited resume: $(cat "$T/verify2.out")"
[[ $(psql_at "$ci" -c "select count(*) from audit where action = 'audit.export_resumed'") == 1 ]] ||
	fail "the resume is not audited"
pass "after the operator's audited resume-export the chain verifies again"
"$cli" backups list --service billing --output json >"$T/list.json" || fail "backups list"
for id in "$b1" "$b2"; do
	grep -q "$id" "$T/list.json" || fail "$id missing from backups list: $(cat "$T/list.json")"
done
b3=$(backup billing)
known "$b3" || fail "the agent's backup after the restore was not recorded"
[[ $(psql_at "$ci" -c "select count(*) from refusals where last_at > now() - interval '5 minutes'") == 0 ]] ||
	fail "the coordinator refused agents after the restore: $(psql_at "$ci" -c "select reason, agent, last_detail from refusals")"
"$coord" audit-verify -c "$T/coordinator.conf" >"$T/verify3.out" 2>&1 ||
	fail "audit chain broken after resuming: $(cat "$T/verify3.out")"
pass "coordinator resumed on the restored catalog: backups listed, $b3 accepted, audit chain intact"
