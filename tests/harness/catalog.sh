# The coordinator's catalog for integration scripts (sourced through
# tests/integration/lib.sh, never run alone).
#
# Fakes nothing: a real PostgreSQL cluster (pg.sh) holding the database
# "coffer", the real `coffer-coordinator audit-keygen` and `migrate`.
#
# Promises:
#   catalog_start DIR [DB...] a cluster in DIR (pg_start) with the databases
#                             coffer and DB...; sets base (conninfo without
#                             a database, user postgres), ci (the
#                             catalog as the superuser, for tests that look
#                             or tamper), ci_owner (role coffer_owner, which
#                             owns database coffer: migrate's catalog_owner)
#                             and ci_app (role coffer_app, the coordinator's
#                             runtime role: [coordinator] catalog), besides
#                             pg_start's PG_*. The two-role setup of
#                             docs/CATALOG.md, so every test runs the
#                             coordinator with least privilege
#   catalog_audit_key         the coordinator's audit key in $T/audit.key,
#                             made once (a second call keeps it)
#   catalog_migrate CONF      coffer-coordinator migrate -c CONF, its output
#                             in $T/migrate.out, shown when it fails
#
# Limits: one catalog per script ($T/audit.key, $T/migrate.out); the
# databases are empty until a script creates its tables.
catalog_start() {
	local dir=$1 db
	shift
	pg_start "$dir"
	base="host=$PG_HOST port=$PG_PORT user=postgres"
	psql_at "$base dbname=postgres" -c "CREATE ROLE coffer_owner LOGIN" \
		-c "CREATE ROLE coffer_app LOGIN" || fail "cannot create the catalog roles"
	psql_at "$base dbname=postgres" -c "CREATE DATABASE coffer OWNER coffer_owner" ||
		fail "cannot create database coffer"
	for db in "$@"; do
		psql_at "$base dbname=postgres" -c "CREATE DATABASE $db" || fail "cannot create database $db"
	done
	ci="$base dbname=coffer"
	ci_owner="host=$PG_HOST port=$PG_PORT user=coffer_owner dbname=coffer"
	ci_app="host=$PG_HOST port=$PG_PORT user=coffer_app dbname=coffer"
}

catalog_audit_key() {
	[[ -f $T/audit.key ]] && return 0
	"$COFFER_BIN/coffer-coordinator" audit-keygen --out "$T/audit.key" >/dev/null ||
		fail "audit-keygen failed"
}

catalog_migrate() {
	"$COFFER_BIN/coffer-coordinator" migrate -c "$1" >"$T/migrate.out" 2>&1 ||
		fail "migrate: $(cat "$T/migrate.out")"
}
