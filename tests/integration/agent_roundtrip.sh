#!/usr/bin/env bash
# A realistic database survives backup and restore exactly: several schemas,
# text, numeric, timestamptz, jsonb, bytea, a table of a million rows,
# indexes, a view, a sequence. Every table's content is compared by an
# ordered digest, not only by count; the sequence's value and the view's
# output must match too. Then the failures the issue lists, provoked for
# real: pg_dump killed with SIGKILL mid-stream, a repository on a tiny full
# filesystem, a stopped server. Each must end as a failed backup with a
# reason and nothing published.
source "$(dirname "$0")/lib.sh"
t_init agent-roundtrip
agent=$COFFER_BIN/coffer-agent

pg_start "$T/pg"
psql_at "$PG_CONNINFO dbname=postgres" -c "create database shop"
ci="$PG_CONNINFO dbname=shop"
psql_at "$ci" <<'SQL'
create schema sales;
create sequence sales.invoice_numbers start 1000 increment 7;
create table public.customers (
	id bigint generated always as identity primary key,
	name text not null,
	email text unique,
	created_at timestamptz not null,
	balance numeric(14, 2) not null,
	prefs jsonb,
	avatar bytea);
insert into public.customers (name, email, created_at, balance, prefs, avatar)
select 'Customer ' || g || ' «ünïcødé»', 'c' || g || '@example.com',
	'2020-01-01 00:00:00+00'::timestamptz + g * interval '37 minutes',
	round((g * 13.37) % 100000, 2),
	jsonb_build_object('tier', g % 5, 'tags', jsonb_build_array('a' || g % 3, 'b')),
	decode(md5(g::text), 'hex')
from generate_series(1, 20000) g;
create table sales.orders (
	id bigint primary key,
	customer_id bigint not null references public.customers (id),
	amount numeric(12, 2) not null,
	placed_at timestamptz not null,
	status text not null check (status in ('new', 'paid', 'shipped', 'returned')),
	note text);
insert into sales.orders
select g, 1 + g % 20000, round((g % 10000) / 3.0, 2),
	'2024-01-01 00:00:00+00'::timestamptz + g * interval '7 seconds',
	(array['new', 'paid', 'shipped', 'returned'])[1 + g % 4],
	case when g % 10 = 0 then null else 'note ' || g end
from generate_series(1, 1000000) g;
create index orders_by_customer on sales.orders (customer_id, placed_at);
create view sales.revenue_by_status as
	select status, count(*) as n, sum(amount) as total from sales.orders group by status;
select nextval('sales.invoice_numbers') from generate_series(1, 5);
create table public.empty_table (x int);
SQL

digests() { # conninfo -> one line per table: schema.table md5-of-ordered-rows
	psql_at "$1" <<'SQL'
select format('%s.%s %s', n.nspname, c.relname,
	(xpath('/row/d/text()', query_to_xml(format(
		'select md5(coalesce(string_agg(t::text, E''\n'' order by t::text), '''')) as d from %I.%I t',
		n.nspname, c.relname), false, true, '')))[1]::text)
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')
order by 1;
select 'view ' || md5(string_agg(r::text, ',' order by r::text)) from sales.revenue_by_status r;
select 'sequence ' || last_value || ' ' || is_called from sales.invoice_numbers;
SQL
}

mkdir -p "$T/state" "$T/repo"
write_conf() { # file repo_path conninfo
	cat >"$1" <<CONF
[agent]
name = shop-db-1
service = shop
state_dir = $T/state
signing_key = $T/agent.key
key_ring = $T/shop.keys
[postgres]
conninfo = $3
bin_dir = $PG_BINDIR
[schedule]
logical = 30 1 * * *
[backup]
chunk_size = 64KiB
[repository.primary]
type = posix
path = $2
CONF
}
write_conf "$T/agent.conf" "$T/repo" "$ci"
"$agent" keygen --out "$T/shop.keys" --id first >/dev/null
"$agent" init -c "$T/agent.conf" >/dev/null

id=$("$agent" backup -c "$T/agent.conf") || fail "backup"
# Key rotation: two new keys later, the old backup still decrypts.
"$agent" keygen --out "$T/shop.keys" --id second >/dev/null
"$agent" keygen --out "$T/shop.keys" --id third >/dev/null
"$agent" restore -c "$T/agent.conf" --backup "$id" --target-db shop_restored --jobs 2 >/dev/null ||
	fail "restore after two key rotations"
digests "$ci" >"$T/source.txt"
digests "$PG_CONNINFO dbname=shop_restored" >"$T/restored.txt"
diff "$T/source.txt" "$T/restored.txt" >&2 || fail "restored content differs from the source"
[[ $(wc -l <"$T/source.txt") -ge 5 ]] || fail "digest query found too few tables"
pass "1M-row database restored identically ($(wc -l <"$T/source.txt") digests match)"
id2=$("$agent" backup -c "$T/agent.conf") || fail "backup with the newest key"
grep -q '"key_id":"third"' "$T/repo/services/shop/backups/$id2/manifest.json" ||
	fail "new backup is not under the newest key"
pass "old keys decrypt, new backups use the newest key"

published() { find "$1" -name manifest.json | wc -l; }
last_event_failed() {
	"$agent" events -c "$T/agent.conf" --output json | tail -1 | grep -q '"backup.failed"'
}

# --- pg_dump killed with SIGKILL while its output is streaming ------------------------
before=$(published "$T/repo")
"$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/err" &
bpid=$!
killed=
for _ in $(seq 400); do
	# Kill once the repository has received some of the stream.
	if find "$T/repo" -name '.*' -type f -size +16k 2>/dev/null | grep -q .; then
		pid=$(pgrep -f -- "--snapshot=.*shop" | head -1 || true)
		if [[ -n $pid ]]; then
			kill -KILL "$pid" && killed=yes
			break
		fi
	fi
	sleep 0.02
done
rc=0
wait "$bpid" || rc=$?
[[ -n $killed ]] || fail "SIGKILL: never caught pg_dump mid-stream (backup ended with $rc)"
[[ $rc != 0 ]] || fail "SIGKILL: backup reported success"
grep -qi "signal\|killed" "$T/err" || fail "SIGKILL: error does not name the signal: $(cat "$T/err")"
[[ $(published "$T/repo") == "$before" ]] || fail "SIGKILL: something was published"
last_event_failed || fail "SIGKILL: no backup.failed event"
find "$T/repo" -name '.*' -type f | grep -q . && fail "SIGKILL: temporary object left behind"
pass "pg_dump SIGKILL mid-stream: $(tail -1 "$T/err" | cut -c1-300)"

# --- a repository on a tiny full filesystem -------------------------------------------
mkdir -p "$T/tiny"
if mount -t tmpfs -o size=256k tmpfs "$T/tiny" 2>/dev/null; then
	write_conf "$T/tiny.conf" "$T/tiny" "$ci"
	if "$agent" backup -c "$T/tiny.conf" >/dev/null 2>"$T/err"; then
		umount "$T/tiny"
		fail "full filesystem: backup succeeded"
	fi
	n=$(published "$T/tiny")
	left=$(find "$T/tiny" -type f | wc -l)
	umount "$T/tiny"
	[[ $n == 0 ]] || fail "full filesystem: something was published"
	[[ $left == 0 ]] || fail "full filesystem: $left files left behind"
	grep -qi "space" "$T/err" || fail "full filesystem: error does not say so: $(cat "$T/err")"
	last_event_failed || fail "full filesystem: no backup.failed event"
	pass "full filesystem: $(tail -1 "$T/err" | cut -c1-300)"
else
	note "SKIPPED full filesystem case: cannot mount tmpfs here (needs CAP_SYS_ADMIN)"
fi

# --- the server is stopped ------------------------------------------------------------
pg_stop "$T/pg"
before=$(published "$T/repo")
if "$agent" backup -c "$T/agent.conf" >/dev/null 2>"$T/err"; then fail "stopped server: backup succeeded"; fi
grep -qi "connect" "$T/err" || fail "stopped server: error does not say it cannot connect: $(cat "$T/err")"
[[ $(published "$T/repo") == "$before" ]] || fail "stopped server: something was published"
last_event_failed || fail "stopped server: no backup.failed event"
pass "stopped server: $(tail -1 "$T/err" | cut -c1-300)"
