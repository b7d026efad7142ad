#!/usr/bin/env bash
# WAL objects bound to their names (docs/PITR.md, "Objects at the wrong
# name"), against a real PostgreSQL whose archive_command is coffer-agent
# wal-push, the agent's daemon shipping events over mutual TLS to a real
# coordinator, and a local receiver standing in for PagerDuty:
# - an archived segment's object copied to another segment's key: wal-fetch
#   of that name refuses it, saying why on stderr (a file not archived yet
#   exits 1 without a word);
# - an object planted at the key of the segment PostgreSQL writes next, as a
#   neighbour with write access to the repository could: archiving goes on
#   (failed_count does not grow), the segment is stored under its alternate
#   name, wal_segments records that name, the coordinator pages
#   wal_object_conflict naming the segment and audits the conflict;
# - a point-in-time restore from a base backup taken before the plant
#   replays through the conflicted segment (fetched from its alternate name).
# Every wait is bounded by a count of polls, never by a timing assertion.
source "$(dirname "$0")/lib.sh"
t_init wal-conflict
bg=()
stop_all() {
	pkill -TERM -f "coffer-agent run -c $T/agent.conf" 2>/dev/null || true
	for p in "${bg[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	t_cleanup
}
trap stop_all EXIT
coord=$COFFER_BIN/coffer-coordinator
cli=$COFFER_BIN/coffer
mkdir -p "$T/bin"
cp "$COFFER_BIN/coffer-agent" "$T/bin/coffer-agent"
chmod 755 "$T/bin" "$T/bin/coffer-agent"
agent=$T/bin/coffer-agent
as_pg() { runuser -u postgres -- "$@"; }

catalog_start "$T/catalog"
cq() { psql_at "$ci" -c "$1"; }
receiver_start
pki=$T/pki
pki_make "$pki" alice billing-db-1
chmod 644 "$pki"/billing-db-1.key
mkdir -p "$T/repo"
fleet_coordinator_conf "$T/coordinator.conf" "maintenance_interval = 1s" <<CONF
[alerts]
pagerduty_url = http://127.0.0.1:$rxport/v2/enqueue
routing_key = wal0123456789abcdef0123456789abc
[service.billing]
owner = team-payments
schedule = 0 2 * * *
retention.daily = 7
[repository.primary]
type = posix
path = $T/repo
CONF
chmod 600 "$T/coordinator.conf" # it holds the routing key
fleet_coordinator_up "$T/coordinator.conf" 300

conf=$T/agent.conf
mkdir -p "$T/state"
pg_start "$T/svc" "wal_level = replica" "archive_mode = on" \
	"archive_command = '$agent wal-push -c $conf %p'"
ci_svc="$PG_CONNINFO dbname=postgres"
sq() { psql_at "$ci_svc" -c "$1"; }
cat >"$conf" <<CONF
[agent]
name = billing-db-1
service = billing
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/billing.keys
[postgres]
conninfo = $ci_svc
bin_dir = $PG_BINDIR
[schedule]
logical = 0 2 1 1 *
completion_window = 3m
[repository.primary]
type = posix
path = $T/repo
$(fleet_agent_link billing-db-1 1s 2s)
CONF
"$agent" keygen --out "$T/billing.keys" --id k1 >/dev/null || fail "keygen"
"$agent" init -c "$conf" >"$T/agent.pub" || fail "init"
chown -R postgres: "$T/state" "$T/repo" "$T/billing.keys" "$T/agent.key" "$conf"
"$cli" agents enroll --service billing --agent billing-db-1 --pubkey "$T/agent.pub" >/dev/null || fail "enroll"
as_pg timeout --foreground 300 "$agent" run -c "$conf" >"$T/agent.out" 2>"$T/agent.log" &
bg+=("$!")

sysid=$(sq "select system_identifier from pg_control_system()")
wal=$T/repo/services/billing/wal/$sysid/00000001
alert_state() { cq "select coalesce((select state from alerts where dedup_key = 'coffer/billing/$1'), 'none')"; }
wait_for() { # description, condition; polls up to 60 s
	for _ in $(seq 600); do eval "$2" && return 0; sleep 0.1; done
	fail "$1: $(tail -3 "$T/coord.log")"
}
archived() { [[ $(sq "select coalesce(last_archived_wal, '') >= '$1' from pg_stat_archiver") == t ]]; }

# --- a base backup, then archived WAL ------------------------------------------------------
sq "create table ledger (id int primary key)"
id=$(as_pg "$agent" backup -c "$conf" --kind physical 2>"$T/backup.log") ||
	{ cat "$T/backup.log"; fail "physical backup"; }
sq "insert into ledger values (1)"
a=$(sq "select pg_walfile_name(pg_switch_wal())")
wait_for "$a was not archived" "archived $a"
[[ -f $wal/$a ]] || fail "no object for $a"
pass "base backup $id; $a archived"

# --- an object copied to another segment's name is refused ----------------------------------
moved=000000010000000000000F00
as_pg cp "$wal/$a" "$wal/$moved"
mkdir -p "$T/w" && chown postgres: "$T/w"
rc=0
as_pg "$agent" wal-fetch -c "$conf" "$moved" "$T/w/$moved" 2>"$T/err" || rc=$?
((rc != 0)) || fail "wal-fetch of a moved object succeeded"
grep -q "not this cluster.s authentic $moved" "$T/err" || fail "the refusal does not say why: $(cat "$T/err")"
grep -q "another name" "$T/err" || { cat "$T/err"; fail "the refusal does not name a move"; }
[[ ! -e $T/w/$moved && ! -e $T/w/$moved.coffer-tmp ]] || fail "the moved object reached pg_wal"
rm "$wal/$moved"
pass "object copied to $moved refused by wal-fetch (exit $rc): $(head -c 160 "$T/err")"

# --- an object planted at the next segment's key ----------------------------------------------
fails0=$(sq "select failed_count from pg_stat_archiver")
sq "insert into ledger values (2)"
next=$(sq "select pg_walfile_name(pg_current_wal_lsn())")
as_pg cp "$wal/$a" "$wal/$next" # a real sealed object of this service, at the wrong name
sq "insert into ledger values (3)"
sq "select pg_switch_wal()" >/dev/null
wait_for "$next was not archived past the planted object" "archived $next"
sq "insert into ledger values (4)"
after=$(sq "select pg_walfile_name(pg_switch_wal())")
wait_for "$after was not archived" "archived $after"
fails=$(sq "select failed_count from pg_stat_archiver")
[[ $fails == "$fails0" ]] || fail "failed_count grew from $fails0 to $fails"
alt=$(cd "$wal" && ls | grep "^$next\.alt-[0-9a-f]\{32\}$") || fail "no alternate object for $next: $(ls "$wal")"
cmp -s "$wal/$a" "$wal/$next" || fail "the planted object was overwritten"
pass "planted object at $next: archiving went on (failed_count $fails), stored as $alt"

wait_for "wal_segments does not record $alt" \
	'[[ $(cq "select object_name from wal_segments where segment = '"'$next'"'") == "$alt" ]]'
wait_for "wal_object_conflict did not page" 'grep -q coffer/billing/wal_object_conflict "$T/rx.log"'
grep 'coffer/billing/wal_object_conflict' "$T/rx.log" | grep '"event_action":"trigger"' | grep -q "$next" ||
	fail "the page does not name $next: $(grep wal_object_conflict "$T/rx.log")"
[[ $(alert_state wal_object_conflict) == triggered ]] || fail "wal_object_conflict is not open"
n=$(cq "select count(*) from audit where action = 'wal.archived' and details->>'wal_file' = '$next' and details->>'wal_conflict' like '%not this cluster''s authentic%'")
((n >= 1)) || fail "the conflict is not audited"
[[ $(cq "select count(*) from wal_conflicts where name = '$next' and object_name = '$alt'") == 1 ]] ||
	fail "wal_conflicts does not hold the conflict"
pass "paged wal_object_conflict: $(cq "select summary from alerts where dedup_key = 'coffer/billing/wal_object_conflict'" | head -c 200)"

# --- point-in-time recovery through the conflicted segment ------------------------------------
port2=$(_free_port)
mkdir -p "$T/r/data" && chown -R postgres: "$T/r"
_t_clusters+=("$T/r")
"$agent" restore -c "$conf" --physical --backup "$id" --pgdata "$T/r/data" --port "$port2" --start \
	>"$T/restore.out" 2>"$T/restore.log" ||
	{ cat "$T/restore.log"; tail -20 "$T/r/data/coffer-recovery.log" 2>/dev/null; fail "restore"; }
r="host=$T/svc/sock port=$port2 user=postgres dbname=postgres"
got=$(psql_at "$r" -c "select string_agg(id::text, ',' order by id) from ledger")
[[ $got == "1,2,3,4" ]] || fail "restored rows '$got', want 1,2,3,4 (through $next)"
pg_stop "$T/r"
pass "restore of $id replayed through $next from its alternate name: rows $got"
