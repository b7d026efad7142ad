/*
 * Driver for tests/integration/catalog.sh: drives the catalog and audit
 * modules against a live PostgreSQL. The coordinator's modules are built
 * into the coffer-coordinator executable, not a library, so this driver
 * compiles their sources in directly.
 *
 *   catalog_itest append CONNINFO KEYFILE N
 *	appends N audit rows, one transaction each; prints the last chain_seq.
 *   catalog_itest atomic CONNINFO KEYFILE
 *	checks that an audit row shares its caller's transaction: rolled back
 *	with it (head unchanged, no row), committed with it; and that bad
 *	arguments are refused without breaking the caller's transaction.
 *   catalog_itest concurrent CONNINFO KEYFILE THREADS N
 *	THREADS connections append N rows each at once; prints the total.
 *   catalog_itest migrate-race CONNINFO THREADS
 *	THREADS connections migrate the same catalog at once; all must
 *	succeed, and together apply each migration exactly once.
 *   catalog_itest verify CONNINFO KEYFILE
 *	prints "intact ROWS HEAD" or "broken BAD_SEQ PROBLEM" (exit 3).
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/base/log.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/catalog/migrations.h"

#define PROG "catalog_itest"

static int
die(const coffer_err *err)
{
	coffer_err_print(PROG, err);
	return (1);
}

static coord_catalog *
open_or_die(const char *conninfo)
{
	coffer_err err = { 0 };
	coord_catalog *cat = coord_catalog_open(conninfo, &err);
	if (cat == NULL) {
		die(&err);
		exit(1);
	}
	return (cat);
}

static void
load_key_or_die(const char *path, coord_audit_key *key)
{
	coffer_err err = { 0 };
	if (coord_audit_key_load(path, key, &err) != 0) {
		die(&err);
		exit(1);
	}
}

static int
run_append(const char *conninfo, const char *keyfile, long n)
{
	coord_audit_key key;
	load_key_or_die(keyfile, &key);
	coord_catalog *cat = open_or_die(conninfo);
	coffer_err err = { 0 };
	int64_t seq = 0;
	for (long i = 0; i < n; i++) {
		char details[160];
		/* Unordered keys and spacing: the chain must cover jsonb's
		 * canonical form, not the caller's spelling. */
		snprintf(details, sizeof(details),
		    "{ \"zeta\": %ld, \"alpha\": \"row %ld\", \"nested\": {\"b\": [1, 2.50], \"a\": null} }",
		    i, i);
		if (coord_audit_append(cat, &key, "catalog_itest", "test.append", "billing",
		        details, &seq, &err) != 0) {
			coord_catalog_close(cat);
			return (die(&err));
		}
	}
	printf("%" PRId64 "\n", seq);
	coord_catalog_close(cat);
	return (0);
}

static int64_t
head_seq(coord_catalog *cat)
{
	PGresult *r = PQexec(coord_catalog_conn(cat), "SELECT chain_seq FROM audit_head");
	int64_t v = -1;
	if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	}
	PQclear(r);
	return (v);
}

static long
count_where(coord_catalog *cat, const char *sql)
{
	PGresult *r = PQexec(coord_catalog_conn(cat), sql);
	long v = -1;
	if (r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		v = strtol(PQgetvalue(r, 0, 0), NULL, 10);
	}
	PQclear(r);
	return (v);
}

#define CHECK(cond, ...)                                               \
	do {                                                           \
		if (!(cond)) {                                         \
			fprintf(stderr, PROG " atomic: " __VA_ARGS__); \
			fprintf(stderr, " (%s)\n", err.msg);           \
			coord_catalog_close(cat);                      \
			return (1);                                    \
		}                                                      \
	} while (0)

static int
run_atomic(const char *conninfo, const char *keyfile)
{
	coord_audit_key key;
	load_key_or_die(keyfile, &key);
	coord_catalog *cat = open_or_die(conninfo);
	coffer_err err = { 0 };
	int64_t before = head_seq(cat);
	int64_t seq = 0;
	CHECK(before >= 0, "cannot read audit_head");

	/* Rolled back together: no row, no service, head unmoved. */
	CHECK(coord_catalog_begin(cat, &err) == 0, "begin failed");
	CHECK(coord_catalog_exec(cat,
	          "INSERT INTO services (name, owner) VALUES ('atomic-svc', 'team-test')",
	          "inserting a service", &err) == 0,
	    "insert failed");
	CHECK(coord_audit_append(cat, &key, "operator-alice", "service.create", "atomic-svc",
	          "{\"why\":\"rolled back\"}", &seq, &err) == 0,
	    "append in caller's transaction failed");
	CHECK(seq == before + 1, "chain_seq %" PRId64 " after head %" PRId64, seq, before);
	coord_catalog_rollback(cat);
	CHECK(head_seq(cat) == before, "head moved although the transaction rolled back");
	CHECK(count_where(cat, "SELECT count(*) FROM services WHERE name = 'atomic-svc'") == 0,
	    "service survived the rollback");

	/* Bad arguments are refused before any statement: the caller's
	 * transaction is still usable afterwards. */
	CHECK(coord_catalog_begin(cat, &err) == 0, "begin failed");
	CHECK(coord_audit_append(cat, &key, "a", "test.bad", "", "{not json", NULL, &err) ==
	        COFFER_EINVAL,
	    "invalid JSON was not refused with COFFER_EINVAL");
	CHECK(
	    coord_audit_append(cat, &key, "a", "Bad Action", "", NULL, NULL, &err) == COFFER_EINVAL,
	    "a bad action name was not refused");
	CHECK(coord_audit_append(cat, &key, "", "test.bad", "", NULL, NULL, &err) == COFFER_EINVAL,
	    "an empty actor was not refused");
	size_t big = COORD_AUDIT_MAX_DETAILS + 16;
	char *huge = malloc(big + 1);
	CHECK(huge != NULL, "out of memory");
	memset(huge, ' ', big);
	huge[0] = '1';
	huge[big] = '\0';
	int rc = coord_audit_append(cat, &key, "a", "test.bad", "", huge, NULL, &err);
	free(huge);
	CHECK(rc == COFFER_ETOOBIG, "oversized details were not refused with COFFER_ETOOBIG");
	CHECK(coord_catalog_exec(cat,
	          "INSERT INTO services (name, owner) VALUES ('atomic-svc', 'team-test')",
	          "inserting a service", &err) == 0,
	    "the caller's transaction broke after refused arguments");
	CHECK(coord_audit_append(cat, &key, "operator-alice", "service.create", "atomic-svc", NULL,
	          &seq, &err) == 0,
	    "append failed");
	CHECK(coord_catalog_commit(cat, &err) == 0, "commit failed");
	CHECK(seq == before + 1 && head_seq(cat) == before + 1, "committed row not at the head");
	CHECK(count_where(cat, "SELECT count(*) FROM services WHERE name = 'atomic-svc'") == 1,
	    "service missing after commit");

	/* A statement that failed aborts the caller's transaction; appending
	 * then must say so instead of pretending. */
	CHECK(coord_catalog_begin(cat, &err) == 0, "begin failed");
	CHECK(coord_catalog_exec(cat, "SELECT 1/0", "dividing", &err) == COFFER_EPG,
	    "division by zero did not fail");
	CHECK(coord_audit_append(cat, &key, "a", "test.bad", "", NULL, NULL, &err) ==
	        COFFER_EINTERNAL,
	    "append inside an aborted transaction was not refused");
	coord_catalog_rollback(cat);
	CHECK(head_seq(cat) == before + 1, "head moved after an aborted transaction");
	coord_catalog_close(cat);
	coord_audit_key_clear(&key);
	printf("atomic ok\n");
	return (0);
}

struct worker {
	const char *conninfo;
	const coord_audit_key *key;
	long n;
	int id;
	int rc;
	coffer_err err;
};

static void *
append_worker(void *arg)
{
	struct worker *w = arg;
	coord_catalog *cat = coord_catalog_open(w->conninfo, &w->err);
	if (cat == NULL) {
		w->rc = w->err.code;
		return (NULL);
	}
	char actor[32];
	snprintf(actor, sizeof(actor), "worker-%d", w->id);
	for (long i = 0; i < w->n && w->rc == 0; i++) {
		w->rc = coord_audit_append(
		    cat, w->key, actor, "test.concurrent", "billing", NULL, NULL, &w->err);
	}
	coord_catalog_close(cat);
	return (NULL);
}

static int
run_concurrent(const char *conninfo, const char *keyfile, int threads, long n)
{
	coord_audit_key key;
	load_key_or_die(keyfile, &key);
	struct worker w[16];
	pthread_t t[16];
	if (threads < 1 || threads > 16) {
		fprintf(stderr, PROG ": THREADS must be 1..16\n");
		return (2);
	}
	for (int i = 0; i < threads; i++) {
		w[i] = (struct worker) { .conninfo = conninfo, .key = &key, .n = n, .id = i };
		if (pthread_create(&t[i], NULL, append_worker, &w[i]) != 0) {
			fprintf(stderr, PROG ": cannot start a thread\n");
			return (1);
		}
	}
	int failed = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		if (w[i].rc != 0) {
			die(&w[i].err);
			failed = 1;
		}
	}
	if (!failed) {
		printf("%ld\n", (long)threads * n);
	}
	return (failed);
}

struct migrator {
	const char *conninfo;
	int rc;
	coord_migrate_result res;
	coffer_err err;
};

static void *
migrate_worker(void *arg)
{
	struct migrator *m = arg;
	coord_catalog *cat = coord_catalog_open(m->conninfo, &m->err);
	if (cat == NULL) {
		m->rc = m->err.code;
		return (NULL);
	}
	m->rc = coord_catalog_migrate(cat, &m->res, &m->err);
	if (m->rc == 0) {
		m->rc = coord_catalog_check(cat, &m->err);
	}
	coord_catalog_close(cat);
	return (NULL);
}

static int
run_migrate_race(const char *conninfo, int threads)
{
	struct migrator m[8];
	pthread_t t[8];
	if (threads < 2 || threads > 8) {
		fprintf(stderr, PROG ": THREADS must be 2..8\n");
		return (2);
	}
	for (int i = 0; i < threads; i++) {
		m[i] = (struct migrator) { .conninfo = conninfo };
		if (pthread_create(&t[i], NULL, migrate_worker, &m[i]) != 0) {
			fprintf(stderr, PROG ": cannot start a thread\n");
			return (1);
		}
	}
	int failed = 0;
	int applied = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		if (m[i].rc != 0) {
			die(&m[i].err);
			failed = 1;
		}
		applied += m[i].res.applied;
	}
	if (failed) {
		return (1);
	}
	if (applied != coord_catalog_known_version()) {
		fprintf(stderr, PROG ": %d migrators applied %d migrations between them, want %d\n",
		    threads, applied, coord_catalog_known_version());
		return (1);
	}
	printf("applied %d\n", applied);
	return (0);
}

static int
run_verify(const char *conninfo, const char *keyfile)
{
	coord_audit_key key;
	load_key_or_die(keyfile, &key);
	coord_catalog *cat = open_or_die(conninfo);
	coffer_err err = { 0 };
	coord_audit_result res;
	int rc = coord_audit_verify(cat, &key, &res, &err);
	coord_catalog_close(cat);
	if (rc == COFFER_ECORRUPT) {
		printf("broken %" PRId64 " %s\n", res.bad_seq, res.problem);
		return (3);
	}
	if (rc != 0) {
		return (die(&err));
	}
	printf("intact %" PRId64 " %" PRId64 "\n", res.rows, res.head_seq);
	return (0);
}

/* The prepared-statement cache with one buffer holding two statements in
 * turn: each call must run the text it was given. Prints the two answers. */
static int
run_prepared_reuse(const char *ci)
{
	coffer_err err = { 0 };
	coord_catalog *cat = coord_catalog_open(ci, &err);
	if (cat == NULL) {
		return (die(&err));
	}
	char sql[64];
	char got[2][16] = { "", "" };
	for (int i = 0; i < 2; i++) {
		snprintf(sql, sizeof(sql), "SELECT %d + 40", i + 1);
		int rv;
		PGresult *r = coord_catalog_query(cat, sql, 0, NULL, "prepared reuse", &rv, &err);
		if (r == NULL) {
			coord_catalog_close(cat);
			return (die(&err));
		}
		snprintf(got[i], sizeof(got[i]), "%s", PQgetvalue(r, 0, 0));
		PQclear(r);
	}
	coord_catalog_close(cat);
	printf("%s %s\n", got[0], got[1]);
	return (0);
}

/* One audit row, as a coordinator path would write it (for rows a test put
 * in by hand, such as an agent whose enrollment verify checks). */
static int
run_audit_row(const char *conninfo, const char *keypath, const char *action, const char *subject,
    const char *details)
{
	coord_audit_key key;
	load_key_or_die(keypath, &key);
	coord_catalog *cat = open_or_die(conninfo);
	coffer_err err = { 0 };
	int rc = coord_audit_append(cat, &key, "test", action, subject, details, NULL, &err);
	coord_catalog_close(cat);
	coord_audit_key_clear(&key);
	return (rc != 0 ? die(&err) : 0);
}

int
main(int argc, char **argv)
{
	coffer_log_init(PROG, COFFER_LOG_WARN);
	if (argc == 5 && strcmp(argv[1], "append") == 0) {
		return (run_append(argv[2], argv[3], strtol(argv[4], NULL, 10)));
	}
	if (argc == 4 && strcmp(argv[1], "atomic") == 0) {
		return (run_atomic(argv[2], argv[3]));
	}
	if (argc == 6 && strcmp(argv[1], "concurrent") == 0) {
		return (run_concurrent(argv[2], argv[3], atoi(argv[4]), strtol(argv[5], NULL, 10)));
	}
	if (argc == 4 && strcmp(argv[1], "migrate-race") == 0) {
		return (run_migrate_race(argv[2], atoi(argv[3])));
	}
	if (argc == 4 && strcmp(argv[1], "verify") == 0) {
		return (run_verify(argv[2], argv[3]));
	}
	if (argc == 7 && strcmp(argv[1], "audit-row") == 0) {
		return (run_audit_row(argv[2], argv[3], argv[4], argv[5], argv[6]));
	}
	if (argc == 3 && strcmp(argv[1], "prepared-reuse") == 0) {
		return (run_prepared_reuse(argv[2]));
	}
	fprintf(stderr,
	    "usage: " PROG
	    " append|atomic|concurrent|migrate-race|verify|audit-row|prepared-reuse ...\n");
	return (2);
}
