/*
 * Catalog connection and schema migrations. See coordinator/catalog/catalog.h.
 *
 * Design notes.
 * The version check reads the whole schema_version record, not just its
 * highest number, because "at version 3" is only meaningful if 1..3 are the
 * migrations this binary would have run: an edited migration (same number,
 * different SQL) means the catalog's tables are not what the code expects,
 * and running against it fails later and more confusingly.
 *
 * Migrations run one per transaction. DDL is transactional in PostgreSQL,
 * so a migration that fails halfway leaves nothing behind, and a crash
 * between migrations leaves the catalog at a clean, recorded version. The
 * advisory lock is per transaction and the version is re-read after taking
 * it, so two `migrate` runs at once apply each migration once: the loser
 * waits, then finds the work done.
 *
 * libpq prints server notices to stderr by default; they are routed to the
 * debug log instead so a command's output stays what it chose to print.
 */
#include "coordinator/catalog/catalog.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/base/hex.h"
#include "common/base/log.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/migrations.h"

#define CAT_TARGET_MAX      256
#define CAT_CONNECT_TIMEOUT "10"

/* Statements prepared on this connection, found by the address of their
 * SQL text and confirmed by a hash of it, so a buffer reused for another
 * statement is never taken for the one prepared from it; PQreset drops
 * them with the session. */
#define CAT_MAX_PREPARED 96

struct coord_catalog {
	PGconn *conn;
	char target[CAT_TARGET_MAX]; /* "host=... port=... dbname=... user=..." */
	const char *prepared[CAT_MAX_PREPARED];
	uint64_t prepared_hash[CAT_MAX_PREPARED];
	int n_prepared;
	/* Set by coord_catalog_pg_error whenever it decides COFFER_EUNAVAIL,
	 * cleared by a reconnect: PQstatus alone stays CONNECTION_OK after a
	 * class 08 or 57P0x error, which callers must treat as lost too. */
	bool lost;
	char lost_why[400];
	/* The audit chain's head as this connection's open transaction left
	 * it: the local high-water mark moves to it once COMMIT says so. */
	int64_t audit_seq;
	uint8_t audit_mac[COORD_AUDIT_MAC_LEN];
};

/* FNV-1a: a cheap check that the text at a known address is still the
 * text that was prepared. */
static uint64_t
sql_hash(const char *sql)
{
	uint64_t h = 14695981039346656037ull;
	for (const unsigned char *c = (const unsigned char *)sql; *c != '\0'; c++) {
		h = (h ^ *c) * 1099511628211ull;
	}
	return (h);
}

/* One applied migration as the catalog records it. */
struct cat_applied {
	int number;
	char name[128];
	char sha256[65];
};

static void
cat_notice(void *arg, const char *message)
{
	(void)arg;
	char buf[512];
	size_t n = strlen(message);
	/* libpq ends notices with a newline; the log adds its own. */
	if (n > 0 && message[n - 1] == '\n') {
		n--;
	}
	snprintf(buf, sizeof(buf), "%.*s", (int)n, message);
	coffer_log_debug("catalog notice", "text=%s", buf);
}

/* Describes where conninfo points without its password (or anything else
 * secret): the fields an operator needs to find the server. */
static void
cat_describe(const char *conninfo, char *out, size_t size)
{
	static const char *const shown[] = { "host", "hostaddr", "port", "dbname", "user", NULL };
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	PQfreemem(perr);
	out[0] = '\0';
	if (opts == NULL) {
		snprintf(out, size, "(unparsable conninfo)");
		return;
	}
	size_t used = 0;
	for (size_t k = 0; shown[k] != NULL; k++) {
		for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
			if (strcmp(o->keyword, shown[k]) != 0 || o->val == NULL ||
			    o->val[0] == '\0') {
				continue;
			}
			int w = snprintf(out + used, size - used, "%s%s=%s", used > 0 ? " " : "",
			    o->keyword, o->val);
			if (w < 0 || (size_t)w >= size - used) {
				PQconninfoFree(opts);
				return;
			}
			used += (size_t)w;
		}
	}
	PQconninfoFree(opts);
	if (used == 0) {
		snprintf(out, size, "libpq defaults");
	}
}

/* libpq messages end in a newline and may span lines; errors are one line. */
static void
one_line(const char *in, char *out, size_t size)
{
	size_t j = 0;
	for (size_t i = 0; in != NULL && in[i] != '\0' && j + 1 < size; i++) {
		char c = in[i];
		if (c == '\n' || c == '\r' || c == '\t') {
			c = ' ';
		}
		if (c == ' ' && (j == 0 || out[j - 1] == ' ')) {
			continue;
		}
		out[j++] = c;
	}
	while (j > 0 && out[j - 1] == ' ') {
		j--;
	}
	out[j] = '\0';
}

coord_catalog *
coord_catalog_open(const char *conninfo, coffer_err *err)
{
	if (conninfo == NULL || conninfo[0] == '\0') {
		coffer_err_set(err, COFFER_EINVAL, "no catalog connection string configured");
		coffer_err_hint(err,
		    "set [coordinator] catalog to a libpq conninfo, e.g. "
		    "\"host=/run/postgresql dbname=coffer user=coffer\"");
		return (NULL);
	}
	char *perr = NULL;
	PQconninfoOption *parsed = PQconninfoParse(conninfo, &perr);
	if (parsed == NULL) {
		/* libpq's message can quote the text around the mistake, which
		 * may be a password: say only that it does not parse. */
		PQfreemem(perr);
		coffer_err_set(err, COFFER_EINVAL,
		    "the catalog connection string is not valid libpq conninfo");
		coffer_err_hint(err,
		    "write [coordinator] catalog as key=value pairs "
		    "(host=... dbname=... user=...) or a postgresql:// URI");
		return (NULL);
	}
	PQconninfoFree(parsed);

	coord_catalog *cat = calloc(1, sizeof(*cat));
	if (cat == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "out of memory opening the catalog");
		return (NULL);
	}
	cat_describe(conninfo, cat->target, sizeof(cat->target));

	/* Defaults first: values expanded from conninfo (the dbname entry)
	 * come later and win, so an operator's connect_timeout is honoured. */
	const char *const keys[] = { "connect_timeout", "fallback_application_name",
		"client_encoding", "dbname", NULL };
	const char *const vals[] = { CAT_CONNECT_TIMEOUT, "coffer-coordinator", "UTF8", conninfo,
		NULL };
	cat->conn = PQconnectdbParams(keys, vals, 1);
	if (cat->conn == NULL) {
		free(cat);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory connecting to the catalog");
		return (NULL);
	}
	if (PQstatus(cat->conn) != CONNECTION_OK) {
		char msg[400];
		one_line(PQerrorMessage(cat->conn), msg, sizeof(msg));
		coffer_err_set(err, COFFER_EUNAVAIL, "cannot connect to the catalog (%s): %s",
		    cat->target, msg);
		coffer_err_hint(err,
		    "check that PostgreSQL is running and reachable and that "
		    "[coordinator] catalog names the right server, database and user");
		coord_catalog_close(cat);
		return (NULL);
	}
	if (PQserverVersion(cat->conn) < COORD_CATALOG_MIN_SERVER) {
		coffer_err_set(err, COFFER_EVERSION,
		    "the catalog server (%s) runs PostgreSQL %d, older than the 11 Coffer needs",
		    cat->target, PQserverVersion(cat->conn));
		coffer_err_hint(err, "put the catalog on PostgreSQL 11 or newer");
		coord_catalog_close(cat);
		return (NULL);
	}
	PQsetNoticeProcessor(cat->conn, cat_notice, NULL);
	return (cat);
}

void
coord_catalog_close(coord_catalog *cat)
{
	if (cat == NULL) {
		return;
	}
	PQfinish(cat->conn);
	free(cat);
}

PGconn *
coord_catalog_conn(coord_catalog *cat)
{
	return (cat->conn);
}

bool
coord_catalog_ok(const coord_catalog *cat)
{
	return (cat != NULL && !cat->lost && PQstatus(cat->conn) == CONNECTION_OK);
}

const char *
coord_catalog_lost_why(const coord_catalog *cat)
{
	if (cat == NULL) {
		return ("no connection");
	}
	if (cat->lost_why[0] != '\0') {
		return (cat->lost_why);
	}
	return (PQstatus(cat->conn) != CONNECTION_OK ? "the connection was lost" : "");
}

/* Remembers that the connection must be reset before its next use, and
 * why, for the caller that finds out later (a lane after its job). */
static void
cat_mark_lost(coord_catalog *cat, const char *why)
{
	cat->lost = true;
	snprintf(cat->lost_why, sizeof(cat->lost_why), "%s", why);
}

int
coord_catalog_reconnect(coord_catalog *cat, coffer_err *err)
{
	cat->n_prepared = 0;
	PQreset(cat->conn);
	if (PQstatus(cat->conn) == CONNECTION_OK) {
		cat->lost = false;
		cat->lost_why[0] = '\0';
	}
	if (PQstatus(cat->conn) != CONNECTION_OK) {
		char msg[400];
		one_line(PQerrorMessage(cat->conn), msg, sizeof(msg));
		coffer_err_set(err, COFFER_EUNAVAIL, "cannot reconnect to the catalog (%s): %s",
		    cat->target, msg);
		return (coffer_err_hint(err,
		    "check that the catalog's PostgreSQL is running and "
		    "reachable; the coordinator keeps retrying"));
	}
	PQsetNoticeProcessor(cat->conn, cat_notice, NULL);
	return (0);
}

static bool
pgarray_reserve(coord_pgarray *a, size_t more)
{
	if (a->len + more + 2 <= a->cap) {
		return (true);
	}
	size_t cap = a->cap != 0 ? a->cap : 256;
	while (cap < a->len + more + 2) {
		cap *= 2;
	}
	char *b = realloc(a->buf, cap);
	if (b == NULL) {
		return (false);
	}
	a->buf = b;
	a->cap = cap;
	return (true);
}

bool
coord_pgarray_add(coord_pgarray *a, const char *text)
{
	size_t n = strlen(text);
	if (!pgarray_reserve(a, 2 * n + 4)) {
		return (false);
	}
	char sep = a->len == 0 ? '{' : ',';
	a->buf[a->len++] = sep;
	a->buf[a->len++] = '"';
	for (size_t i = 0; i < n; i++) {
		if (text[i] == '"' || text[i] == '\\') {
			a->buf[a->len++] = '\\';
		}
		a->buf[a->len++] = text[i];
	}
	a->buf[a->len++] = '"';
	a->buf[a->len] = '\0';
	return (true);
}

bool
coord_pgarray_add_null(coord_pgarray *a)
{
	if (!pgarray_reserve(a, 6)) {
		return (false);
	}
	char sep = a->len == 0 ? '{' : ',';
	a->buf[a->len++] = sep;
	memcpy(a->buf + a->len, "NULL", 5);
	a->len += 4;
	return (true);
}

const char *
coord_pgarray_text(coord_pgarray *a)
{
	if (a->len == 0) {
		return ("{}");
	}
	a->buf[a->len] = '}';
	a->buf[a->len + 1] = '\0';
	return (a->buf);
}

void
coord_pgarray_reset(coord_pgarray *a)
{
	a->len = 0;
}

void
coord_pgarray_free(coord_pgarray *a)
{
	free(a->buf);
	*a = (coord_pgarray) { 0 };
}

PGresult *
coord_catalog_query(coord_catalog *cat, const char *sql, int n, const char *const *vals,
    const char *what, int *rv, coffer_err *err)
{
	/* PREPARE takes only plannable statements; SAVEPOINT and friends run
	 * unnamed. */
	bool plannable = strncmp(sql, "SELECT", 6) == 0 || strncmp(sql, "INSERT", 6) == 0 ||
	    strncmp(sql, "UPDATE", 6) == 0 || strncmp(sql, "DELETE", 6) == 0 ||
	    strncmp(sql, "WITH", 4) == 0;
	int slot = -1;
	uint64_t hash = plannable ? sql_hash(sql) : 0;
	for (int i = 0; plannable && i < cat->n_prepared; i++) {
		if (cat->prepared[i] == sql && cat->prepared_hash[i] == hash) {
			slot = i;
			break;
		}
	}
	if (plannable && slot < 0 && cat->n_prepared < CAT_MAX_PREPARED) {
		char name[24];
		snprintf(name, sizeof(name), "coffer_%d", cat->n_prepared);
		PGresult *p = PQprepare(cat->conn, name, sql, n, NULL);
		if (p == NULL || PQresultStatus(p) != PGRES_COMMAND_OK) {
			*rv = coord_catalog_pg_error(cat, p, what, err);
			return (NULL);
		}
		PQclear(p);
		slot = cat->n_prepared++;
		cat->prepared[slot] = sql;
		cat->prepared_hash[slot] = hash;
	}
	PGresult *res;
	if (slot >= 0) {
		char name[24];
		snprintf(name, sizeof(name), "coffer_%d", slot);
		res = PQexecPrepared(cat->conn, name, n, vals, NULL, NULL, 0);
	} else {
		res = PQexecParams(cat->conn, sql, n, NULL, vals, NULL, NULL, 0);
	}
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		*rv = 0;
		return (res);
	}
	*rv = coord_catalog_pg_error(cat, res, what, err);
	return (NULL);
}

int
coord_catalog_pg_error(coord_catalog *cat, PGresult *res, const char *what, coffer_err *err)
{
	char msg[400];
	if (res == NULL || PQstatus(cat->conn) != CONNECTION_OK) {
		one_line(PQerrorMessage(cat->conn), msg, sizeof(msg));
		PQclear(res);
		coffer_err_set(err, COFFER_EUNAVAIL,
		    "%s: lost the connection to the catalog (%s): %s", what, cat->target, msg);
		cat_mark_lost(cat, msg);
		return (coffer_err_hint(err,
		    "check that the catalog's PostgreSQL is running and "
		    "reachable, then retry"));
	}
	const char *primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	one_line(primary != NULL ? primary : PQresultErrorMessage(res), msg, sizeof(msg));
	int code = COFFER_EPG;
	/* Class 08 is "connection exception": the server is there but the
	 * session is not usable. 57P01..57P03 are the server shutting down,
	 * crashing or not accepting sessions yet: the session is about to
	 * end or never worked. An error without a SQLSTATE did not come from
	 * the server at all but from libpq, and the first statement on a
	 * connection whose server died is exactly that: "server closed the
	 * connection unexpectedly", with PQstatus still CONNECTION_OK until
	 * the next call. Taking it for a statement error (EPG) is what left
	 * holders on a dead connection. All are a lost connection to the
	 * caller; a reconnect that was not needed costs one session. */
	if (state == NULL ||
	    (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
	        strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0)) {
		code = COFFER_EUNAVAIL;
	}
	coffer_err_set(err, code, "%s: %s (SQLSTATE %s)", what, msg[0] != '\0' ? msg : "no message",
	    state != NULL ? state : "none");
	if (code == COFFER_EUNAVAIL) {
		cat_mark_lost(cat, msg);
	}
	if (hint != NULL) {
		char h[COFFER_ERR_HINT_MAX];
		one_line(hint, h, sizeof(h));
		coffer_err_hint(err, "%s", h);
	} else {
		coffer_err_hint(err, "see the catalog server's log for details");
	}
	PQclear(res);
	return (code);
}

int
coord_catalog_exec(coord_catalog *cat, const char *sql, const char *what, coffer_err *err)
{
	PGresult *res = PQexec(cat->conn, sql);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		return (coord_catalog_pg_error(cat, res, what, err));
	}
	PQclear(res);
	return (0);
}

int
coord_catalog_query_exec(coord_catalog *cat, const char *sql, int n, const char *const *vals,
    const char *what, coffer_err *err)
{
	int rv;
	PQclear(coord_catalog_query(cat, sql, n, vals, what, &rv, err));
	return (rv);
}

PGresult *
coord_catalog_adhoc(coord_catalog *cat, const char *what, const char *sql, int n,
    const char *const *vals, int *rv, coffer_err *err)
{
	PGresult *res = PQexecParams(cat->conn, sql, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		*rv = 0;
		return (res);
	}
	*rv = coord_catalog_pg_error(cat, res, what, err);
	return (NULL);
}

int
coord_catalog_adhoc_exec(coord_catalog *cat, const char *what, const char *sql, int n,
    const char *const *vals, coffer_err *err)
{
	int rv;
	PQclear(coord_catalog_adhoc(cat, what, sql, n, vals, &rv, err));
	return (rv);
}

int
coord_catalog_begin(coord_catalog *cat, coffer_err *err)
{
	cat->audit_seq = 0;
	return (coord_catalog_exec(cat, "BEGIN", "starting a catalog transaction", err));
}

void
coord_catalog_audit_pending(coord_catalog *cat, int64_t seq, const uint8_t *mac)
{
	cat->audit_seq = seq;
	memcpy(cat->audit_mac, mac, COORD_AUDIT_MAC_LEN);
}

int
coord_catalog_commit(coord_catalog *cat, coffer_err *err)
{
	int64_t seq = cat->audit_seq;
	cat->audit_seq = 0;
	PGresult *res = PQexec(cat->conn, "COMMIT");
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		return (coord_catalog_pg_error(cat, res, "committing a catalog transaction", err));
	}
	/* COMMIT of a failed transaction "succeeds" as ROLLBACK: the rows
	 * did not land and the mark must not claim them. */
	bool committed = strcmp(PQcmdStatus(res), "COMMIT") == 0;
	PQclear(res);
	if (committed && seq > 0) {
		coord_audit_mark_committed(seq, cat->audit_mac);
	}
	return (0);
}

void
coord_catalog_rollback(coord_catalog *cat)
{
	cat->audit_seq = 0;
	PGresult *res = PQexec(cat->conn, "ROLLBACK");
	PQclear(res);
}

int
coord_catalog_known_version(void)
{
	size_t n;
	const coord_migration *m = coord_migrations_list(&n);
	return (n > 0 ? m[n - 1].number : 0);
}

static int
sql_sha256_hex(const char *sql, char out[65], coffer_err *err)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	if (EVP_Digest(sql, strlen(sql), md, &n, EVP_sha256(), NULL) != 1 || n != 32) {
		return (coffer_err_openssl(
		    err, COFFER_EINTERNAL, "cannot compute the sha-256 of a migration"));
	}
	coffer_hex_encode(md, n, out);
	return (0);
}

/*
 * Whether schema_version exists in the current schema. This scans pg_class
 * with the statement's snapshot instead of asking to_regclass: a backend
 * that waited on the migration lock while another created the table may
 * still hold a negative cache entry for the name (advisory locks do not make
 * it process invalidations), and would then try to create the table again.
 * Opening pg_class takes a lock, which processes them.
 */
static int
cat_has_version_table(coord_catalog *cat, bool *has, coffer_err *err)
{
	PGresult *res = PQexec(cat->conn,
	    "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_class c "
	    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
	    "WHERE c.relname = 'schema_version' AND n.nspname = current_schema())");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		return (
		    coord_catalog_pg_error(cat, res, "reading the catalog's schema version", err));
	}
	*has = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return (0);
}

/*
 * Reads schema_version and compares it with the binary's migrations. Sets
 * *version to the catalog's highest number. Returns COFFER_EVERSION for a
 * catalog newer than the binary, COFFER_ECORRUPT for a record that differs
 * from the binary's migrations or has a gap; being behind is not an error
 * here (migrate wants to know, check decides).
 */
static int
cat_read_and_compare(coord_catalog *cat, int *version, coffer_err *err)
{
	bool has = false;
	int rc = cat_has_version_table(cat, &has, err);
	if (rc != 0) {
		return (rc);
	}
	*version = 0;
	if (!has) {
		return (0);
	}
	size_t nknown;
	const coord_migration *known = coord_migrations_list(&nknown);
	int known_max = coord_catalog_known_version();

	/* Only the numbers the binary knows are compared row by row, so the
	 * result is bounded by the binary, not by what the table holds. */
	PGresult *res = PQexec(cat->conn,
	    "SELECT (SELECT coalesce(max(number), 0) FROM schema_version), "
	    "(SELECT count(*) FROM schema_version)");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		return (
		    coord_catalog_pg_error(cat, res, "reading the catalog's schema version", err));
	}
	long max = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	long count = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	*version = (int)max;
	if (max > known_max) {
		coffer_err_set(err, COFFER_EVERSION,
		    "catalog schema is at version %ld, this coordinator knows up to %d", max,
		    known_max);
		return (coffer_err_hint(err,
		    "upgrade coffer-coordinator to a release that knows "
		    "schema version %ld",
		    max));
	}
	if (count != max) {
		coffer_err_set(err, COFFER_ECORRUPT,
		    "the catalog records %ld migrations but claims version %ld: its schema_version "
		    "table has gaps or was edited",
		    count, max);
		return (coffer_err_hint(err,
		    "restore the catalog from a backup, or rebuild it "
		    "with `coffer-coordinator rebuild-catalog`"));
	}

	res = PQexec(cat->conn, "SELECT number, name, sha256 FROM schema_version ORDER BY number");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		return (
		    coord_catalog_pg_error(cat, res, "reading the catalog's schema version", err));
	}
	int nrows = PQntuples(res);
	for (int r = 0; r < nrows && (size_t)r < nknown; r++) {
		const coord_migration *m = &known[r];
		int number = atoi(PQgetvalue(res, r, 0));
		const char *name = PQgetvalue(res, r, 1);
		const char *sha = PQgetvalue(res, r, 2);
		char want[65];
		if ((rc = sql_sha256_hex(m->sql, want, err)) != 0) {
			PQclear(res);
			return (rc);
		}
		if (number != m->number) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "the catalog's schema_version lists migration %d where %d was expected",
			    number, m->number);
			PQclear(res);
			return (coffer_err_hint(err,
			    "restore the catalog from a backup, or rebuild "
			    "it with `coffer-coordinator rebuild-catalog`"));
		}
		if (strcmp(sha, want) != 0 || strcmp(name, m->name) != 0) {
			coffer_err_set(err, COFFER_ECORRUPT,
			    "catalog migration %d (%s) was applied with sha256 %.12s..., but this "
			    "coordinator's migration %d (%s) has sha256 %.12s...: a migration was "
			    "edited after it shipped",
			    number, name, sha, m->number, m->name, want);
			PQclear(res);
			return (coffer_err_hint(err,
			    "run the coffer-coordinator release that built "
			    "this catalog; never edit a released migration, "
			    "add a new one"));
		}
	}
	PQclear(res);
	return (0);
}

int
coord_catalog_version(coord_catalog *cat, int *version, coffer_err *err)
{
	bool has = false;
	int rc = cat_has_version_table(cat, &has, err);
	if (rc != 0 || !has) {
		*version = 0;
		return (rc);
	}
	PGresult *res = PQexec(cat->conn, "SELECT coalesce(max(number), 0) FROM schema_version");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		return (
		    coord_catalog_pg_error(cat, res, "reading the catalog's schema version", err));
	}
	*version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return (0);
}

int
coord_catalog_check(coord_catalog *cat, coffer_err *err)
{
	int version = 0;
	int rc = cat_read_and_compare(cat, &version, err);
	if (rc != 0) {
		return (rc);
	}
	int known = coord_catalog_known_version();
	if (version < known) {
		if (version == 0) {
			coffer_err_set(err, COFFER_EVERSION,
			    "the catalog has no Coffer schema yet; this coordinator needs version %d",
			    known);
		} else {
			coffer_err_set(err, COFFER_EVERSION,
			    "catalog schema is at version %d, this coordinator needs version %d",
			    version, known);
		}
		return (coffer_err_hint(err, "run `coffer-coordinator migrate -c FILE` first"));
	}
	return (0);
}

static const char cat_version_table_sql[] =
    "CREATE TABLE schema_version (\n"
    "  number integer PRIMARY KEY CHECK (number > 0),\n"
    "  name text NOT NULL,\n"
    "  sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),\n"
    "  applied_at timestamptz NOT NULL DEFAULT now(),\n"
    "  applied_by text NOT NULL DEFAULT current_user,\n"
    "  coffer_version text NOT NULL\n"
    ")";

/* One transaction: lock, read, apply the next migration if one is pending.
 * *applied tells whether it did; *version is the catalog's version after. */
static int
cat_migrate_step(coord_catalog *cat, bool *applied, int *version, coffer_err *err)
{
	*applied = false;
	int rc = coord_catalog_begin(cat, err);
	if (rc != 0) {
		return (rc);
	}
	char lock_sql[96];
	snprintf(lock_sql, sizeof(lock_sql), "SELECT pg_advisory_xact_lock(%lld)",
	    (long long)COORD_CATALOG_LOCK_MIGRATE);
	if ((rc = coord_catalog_exec(cat, lock_sql, "locking the catalog for migration", err)) !=
	    0) {
		goto fail;
	}
	bool has = false;
	if ((rc = cat_has_version_table(cat, &has, err)) != 0) {
		goto fail;
	}
	if (!has &&
	    (rc = coord_catalog_exec(
	         cat, cat_version_table_sql, "creating the schema_version table", err)) != 0) {
		goto fail;
	}
	if ((rc = cat_read_and_compare(cat, version, err)) != 0) {
		goto fail;
	}
	size_t n;
	const coord_migration *all = coord_migrations_list(&n);
	if ((size_t)*version >= n) {
		return (coord_catalog_commit(cat, err));
	}
	const coord_migration *m = &all[*version];
	char what[200];
	snprintf(what, sizeof(what), "applying catalog migration %d (%s)", m->number, m->name);
	if ((rc = coord_catalog_exec(cat, m->sql, what, err)) != 0) {
		goto fail;
	}
	char sha[65];
	char number[16];
	if ((rc = sql_sha256_hex(m->sql, sha, err)) != 0) {
		goto fail;
	}
	snprintf(number, sizeof(number), "%d", m->number);
	const char *params[] = { number, m->name, sha, COFFER_VERSION };
	PGresult *res = PQexecParams(cat->conn,
	    "INSERT INTO schema_version (number, name, sha256, coffer_version) "
	    "VALUES ($1, $2, $3, $4)",
	    4, NULL, params, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = coord_catalog_pg_error(cat, res, what, err);
		goto fail;
	}
	PQclear(res);
	if (coord_catalog_commit(cat, err) != 0) {
		return (coffer_err_wrap(err, "%s", what));
	}
	*applied = true;
	*version = m->number;
	coffer_log_info("catalog migration applied", "number=%d sha256=%.12s", m->number, sha);
	return (0);
fail:
	coord_catalog_rollback(cat);
	return (rc);
}

int
coord_catalog_migrate(coord_catalog *cat, coord_migrate_result *res, coffer_err *err)
{
	int version = 0;
	int rc = cat_read_and_compare(cat, &version, err);
	if (rc != 0) {
		return (rc);
	}
	if (res != NULL) {
		res->from_version = version;
		res->to_version = version;
		res->applied = 0;
	}
	for (;;) {
		bool applied = false;
		if ((rc = cat_migrate_step(cat, &applied, &version, err)) != 0) {
			return (rc);
		}
		if (res != NULL) {
			res->to_version = version;
			res->applied += applied ? 1 : 0;
		}
		if (!applied) {
			return (0);
		}
	}
}

int
coord_catalog_check_role(coord_catalog *cat, bool development, coffer_err *err)
{
	PGresult *res = PQexec(cat->conn,
	    "SELECT current_user, r.rolsuper, "
	    "pg_has_role(current_user, c.relowner, 'MEMBER'), pg_get_userbyid(c.relowner) "
	    "FROM pg_roles r, pg_class c WHERE r.rolname = current_user "
	    "AND c.oid = to_regclass('audit')");
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		return (
		    coord_catalog_pg_error(cat, res, "reading the catalog role's privileges", err));
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		coffer_err_set(err, COFFER_EVERSION, "the catalog has no audit table");
		return (coffer_err_hint(err, "run `coffer-coordinator migrate -c FILE` first"));
	}
	bool super = PQgetvalue(res, 0, 1)[0] == 't';
	bool owner = PQgetvalue(res, 0, 2)[0] == 't';
	int rc = 0;
	if ((super || owner) && !development) {
		rc = coffer_err_set(err, COFFER_EREFUSED,
		    "the coordinator connects to the catalog as role %s, which %s: whoever holds "
		    "its conninfo could rewrite the audit log and disable its triggers",
		    PQgetvalue(res, 0, 0),
		    super ? "is a superuser"
		          : "owns the catalog's tables (or is a member of their owner)");
		coffer_err_hint(err,
		    "create a runtime role and point [coordinator] catalog at it, with the owner "
		    "(%s) in catalog_owner for migrate (docs/CATALOG.md); on a development "
		    "setup set [coordinator] development = true",
		    PQgetvalue(res, 0, 3));
	} else if (super || owner) {
		coffer_log_warn("catalog role has owner or superuser rights (development = true)",
		    "role=%s superuser=%s", PQgetvalue(res, 0, 0), super ? "yes" : "no");
	}
	PQclear(res);
	return (rc);
}

/* Privileges the runtime role gets on every table, then what it loses:
 * the audit log is append-only (no UPDATE, DELETE, TRUNCATE; not owning it,
 * it can neither disable the triggers that also refuse them), the chain
 * head's single row can be moved but not removed or duplicated, the schema
 * version is the owner's, and holds are placed and released, never deleted.
 * TRUNCATE, REFERENCES and TRIGGER are never granted. */
static const struct {
	const char *what;   /* up to the schema */
	const char *object; /* after it */
	const char *to;     /* TO or FROM */
} grant_sql[] = {
	{ "GRANT USAGE ON SCHEMA", "", "TO" },
	{ "REVOKE ALL ON ALL TABLES IN SCHEMA", "", "FROM" },
	{ "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA", "", "TO" },
	{ "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA", "", "TO" },
	{ "REVOKE UPDATE, DELETE ON", ".audit", "FROM" },
	{ "REVOKE INSERT, DELETE ON", ".audit_head", "FROM" },
	{ "REVOKE INSERT, UPDATE, DELETE ON", ".schema_version", "FROM" },
	{ "REVOKE DELETE ON", ".holds", "FROM" },
};

int
coord_catalog_grant_runtime(coord_catalog *cat, const char *role, coffer_err *err)
{
	const char *v[] = { role };
	PGresult *res = PQexecParams(cat->conn,
	    "SELECT current_schema(), r.rolsuper, pg_has_role(r.oid, c.relowner, 'MEMBER') "
	    "FROM pg_roles r, pg_class c WHERE c.oid = to_regclass('audit') AND r.rolname = $1",
	    1, NULL, v, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		return (coord_catalog_pg_error(cat, res, "looking up the runtime role", err));
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		coffer_err_set(
		    err, COFFER_ENOENT, "there is no role %s in the catalog's cluster", role);
		return (coffer_err_hint(err,
		    "create it first (CREATE ROLE %s LOGIN, docs/CATALOG.md); it is the user of "
		    "[coordinator] catalog",
		    role));
	}
	if (PQgetvalue(res, 0, 1)[0] == 't' || PQgetvalue(res, 0, 2)[0] == 't') {
		PQclear(res);
		coffer_err_set(err, COFFER_EREFUSED,
		    "the runtime role %s (the user of [coordinator] catalog) is a superuser or "
		    "owns the catalog's tables: there is nothing to grant it",
		    role);
		return (coffer_err_hint(err,
		    "give the coordinator a role of its own, or leave catalog_owner unset on a "
		    "development setup"));
	}
	char *schema =
	    PQescapeIdentifier(cat->conn, PQgetvalue(res, 0, 0), strlen(PQgetvalue(res, 0, 0)));
	PQclear(res);
	char *who = PQescapeIdentifier(cat->conn, role, strlen(role));
	int rc = 0;
	if (schema == NULL || who == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "no memory for the grants");
	}
	if (rc == 0) {
		rc = coord_catalog_begin(cat, err);
	}
	for (size_t i = 0; rc == 0 && i < sizeof(grant_sql) / sizeof(grant_sql[0]); i++) {
		char sql[512];
		snprintf(sql, sizeof(sql), "%s %s%s %s %s", grant_sql[i].what, schema,
		    grant_sql[i].object, grant_sql[i].to, who);
		rc = coord_catalog_exec(cat, sql, "granting the runtime role its privileges", err);
	}
	if (rc == 0) {
		rc = coord_catalog_commit(cat, err);
	} else {
		coord_catalog_rollback(cat);
	}
	PQfreemem(schema);
	PQfreemem(who);
	return (rc);
}
