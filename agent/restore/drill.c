/*
 * The drill runner (agent/restore/drill.h).
 */
#include "agent/restore/drill.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "agent/context/context.h"
#include "agent/restore/restore.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/crypto/keyring.h"
#include "common/crypto/manifest.h"
#include "common/crypto/sign.h"

#define CONNECT_TIMEOUT "15"

static agent_drill_check *add_check(agent_drill_result *res, const char *name, bool ok,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static agent_drill_check *
add_check(agent_drill_result *res, const char *name, bool ok, const char *fmt, ...)
{
	if (res->n_checks >= AGENT_DRILL_MAX_CHECKS) {
		return (NULL);
	}
	agent_drill_check *c = &res->checks[res->n_checks++];
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->ok = ok;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
	va_end(ap);
	if (!ok && res->failure[0] == '\0') {
		snprintf(res->failure, sizeof(res->failure), "%s: %.400s", name, c->detail);
	}
	return (c);
}

/* A libpq connection to the sandbox server's database db (NULL: postgres). */
static PGconn *
sandbox_connect(const agent_config *cfg, const char *db, coffer_err *err)
{
	/* expand_dbname: the first dbname is the sandbox conninfo, the later
	 * keys override what it says. */
	const char *k2[] = { "dbname", "dbname", "connect_timeout", "application_name", NULL };
	const char *v2[] = { cfg->drill_sandbox, db != NULL ? db : "postgres", CONNECT_TIMEOUT,
		"coffer-drill", NULL };
	PGconn *conn = PQconnectdbParams(k2, v2, 1);
	if (PQstatus(conn) != CONNECTION_OK) {
		coffer_err_set(err, COFFER_EPG, "cannot connect to the sandbox server: %s",
		    PQerrorMessage(conn));
		coffer_err_hint(err, "check [drill] sandbox in the runner's config");
		PQfinish(conn);
		return (NULL);
	}
	return (conn);
}

/* One value of a one-row, one-column query; NULL result: *null. */
static int
one_value(PGconn *conn, const char *sql, char *out, size_t size, bool *null, coffer_err *err)
{
	PGresult *r = PQexec(conn, sql);
	int rc = 0;
	if (PQresultStatus(r) != PGRES_TUPLES_OK) {
		rc = coffer_err_set(err, COFFER_EPG, "%s", PQresultErrorMessage(r));
	} else if (PQntuples(r) != 1 || PQnfields(r) != 1) {
		rc = coffer_err_set(err, COFFER_EINVAL,
		    "returned %d row(s) of %d column(s), not one "
		    "value",
		    PQntuples(r), PQnfields(r));
	} else {
		*null = PQgetisnull(r, 0, 0);
		snprintf(out, size, "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	/* A failed statement must not poison the next one. */
	if (rc != 0) {
		size_t n = strlen(err->msg);
		while (n > 0 && (err->msg[n - 1] == '\n' || err->msg[n - 1] == ' ')) {
			err->msg[--n] = '\0';
		}
	}
	return (rc);
}

static bool
identifier_ok(const char *s)
{
	for (; *s != '\0'; s++) {
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) {
			return (false);
		}
	}
	return (true);
}

/* coffer_drill_<service>_<id>, lower-cased, other characters as '_'. */
static void
sandbox_name(const agent_drill_request *req, char *out, size_t size)
{
	snprintf(out, size, "coffer_drill_%.40s_%" PRIu64, req->service, req->drill_id);
	for (char *p = out; *p != '\0'; p++) {
		if (*p >= 'A' && *p <= 'Z') {
			*p = (char)(*p - 'A' + 'a');
		} else if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))) {
			*p = '_';
		}
	}
}

/* Refuses a sandbox that is a production cluster, or a database that exists. */
static int
sandbox_check(const agent_config *cfg, const agent_drill_request *req, const coffer_manifest *m,
    const char *db, coffer_err *err)
{
	PGconn *conn = sandbox_connect(cfg, NULL, err);
	if (conn == NULL) {
		return (err->code);
	}
	char sysid[32] = "";
	bool null = false;
	int rc = one_value(conn, "SELECT system_identifier::text FROM pg_control_system()", sysid,
	    sizeof(sysid), &null, err);
	char own[32];
	snprintf(own, sizeof(own), "%" PRIu64, m->system_identifier);
	bool production = rc == 0 && strcmp(sysid, own) == 0;
	for (size_t i = 0; rc == 0 && i < req->n_production && !production; i++) {
		production = strcmp(sysid, req->production_system_ids[i]) == 0;
	}
	if (production) {
		rc = coffer_err_set(err, COFFER_EREFUSED,
		    "the sandbox server (system identifier %s) "
		    "is a production cluster: refusing to drill into it",
		    sysid);
		coffer_err_hint(err,
		    "point [drill] sandbox at a PostgreSQL server of the runner's "
		    "own, never at a service's database");
	}
	if (rc == 0) {
		const char *params[] = { db };
		PGresult *r = PQexecParams(conn, "SELECT 1 FROM pg_database WHERE datname = $1", 1,
		    NULL, params, NULL, NULL, 0);
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			rc = coffer_err_set(err, COFFER_EPG, "looking for the sandbox database: %s",
			    PQresultErrorMessage(r));
		} else if (PQntuples(r) > 0) {
			rc = coffer_err_set(
			    err, COFFER_EEXIST, "sandbox database %s exists already", db);
			coffer_err_hint(err,
			    "a drill never restores over a database: drop %s after "
			    "inspecting it",
			    db);
		}
		PQclear(r);
	}
	PQfinish(conn);
	return (rc);
}

static int
sandbox_drop(const agent_config *cfg, const char *db, coffer_err *err)
{
	if (!identifier_ok(db)) {
		return (coffer_err_set(err, COFFER_EINVAL, "sandbox name %s is not plain", db));
	}
	PGconn *conn = sandbox_connect(cfg, NULL, err);
	if (conn == NULL) {
		return (err->code);
	}
	char sql[200];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db);
	PGresult *r = PQexec(conn, sql);
	int rc = PQresultStatus(r) == PGRES_COMMAND_OK
	    ? 0
	    : coffer_err_set(
	          err, COFFER_EPG, "dropping sandbox %s: %s", db, PQresultErrorMessage(r));
	PQclear(r);
	PQfinish(conn);
	return (rc);
}

/* The checks that read the restored database. */
static void
sql_checks(const agent_config *cfg, const agent_drill_request *req, const coffer_manifest *m,
    const char *db, agent_drill_result *res)
{
	coffer_err e = { 0 };
	PGconn *conn = sandbox_connect(cfg, db, &e);
	if (conn == NULL) {
		add_check(res, "freshness", false, "%s", e.msg);
		return;
	}
	/* The checks only look: a policy's query cannot change the sandbox. */
	PQclear(PQexec(conn, "SET default_transaction_read_only = on"));
	char v[COFFER_MANIFEST_SCHEMA_VERSION_MAX + 1];
	bool null = false;
	/* The service's own query, recorded with its answer at backup time. */
	if (m->schema_query[0] != '\0') {
		coffer_err_clear(&e);
		if (one_value(conn, m->schema_query, v, sizeof(v), &null, &e) != 0) {
			add_check(res, "schema_version", false, "%.200s failed: %s",
			    m->schema_query, e.msg);
		} else {
			bool same = strcmp(null ? "" : v, m->schema_version) == 0;
			add_check(res, "schema_version", same,
			    "%.100s returned \"%.100s\"%s\"%.100s\"", m->schema_query,
			    null ? "" : v, same ? ", as recorded: " : ", the backup recorded ",
			    m->schema_version);
		}
	}
	if (req->freshness_query != NULL && req->freshness_query[0] != '\0') {
		coffer_err_clear(&e);
		char sql[8192];
		snprintf(sql, sizeof(sql), "SELECT floor(extract(epoch FROM (%s)) * 1000)::bigint",
		    req->freshness_query);
		if (one_value(conn, sql, v, sizeof(v), &null, &e) != 0) {
			add_check(res, "freshness", false, "the freshness query failed: %s", e.msg);
		} else if (null) {
			add_check(res, "freshness", false,
			    "the freshness query returned NULL: the "
			    "restored table has no rows");
		} else {
			int64_t newest = strtoll(v, NULL, 10);
			int64_t lag = m->finished_at - newest;
			char a[40], b[32], c[32];
			coffer_time_format(a, sizeof(a), newest);
			coffer_duration_format(b, sizeof(b), lag > 0 ? lag : 0);
			coffer_duration_format(c, sizeof(c), req->freshness_max_lag_ms);
			add_check(res, "freshness", lag <= req->freshness_max_lag_ms,
			    "newest row %s, %s before the backup finished (bound %s)", a, b, c);
		}
	}
	for (size_t i = 0; i < req->n_asserts; i++) {
		char name[32];
		snprintf(name, sizeof(name), "assertion:%zu", i + 1);
		coffer_err_clear(&e);
		if (one_value(conn, req->asserts[i], v, sizeof(v), &null, &e) != 0) {
			add_check(res, name, false, "%.200s failed: %s", req->asserts[i], e.msg);
		} else if (null || strcmp(v, "t") != 0) {
			add_check(res, name, false, "%.200s returned %s, not true", req->asserts[i],
			    null ? "NULL" : v);
		} else {
			add_check(res, name, true, "%.200s is true", req->asserts[i]);
		}
	}
	PQfinish(conn);
}

/* The runner's view of one service: its key ring and its agent's key. */
static int
service_ctx(const agent_config *cfg, const agent_drill_request *req, agent_config *view,
    agent_ctx *ctx, coffer_err *err)
{
	/* Cleared first: the caller closes ctx after any failure, this one too. */
	memset(ctx, 0, sizeof(*ctx));
	char sec[96];
	snprintf(sec, sizeof(sec), "drill.%s", req->service);
	if (!coffer_config_has_section(cfg->ini, sec)) {
		coffer_err_set(err, COFFER_EINVAL,
		    "%s: no [%s]: this runner has no keys for service "
		    "%s",
		    coffer_config_path(cfg->ini), sec, req->service);
		return (coffer_err_hint(err,
		    "add [%s] with key_ring (the service's key ring) and "
		    "verify_key (its agent's public key)",
		    sec));
	}
	*view = *cfg;
	view->service = req->service;
	ctx->cfg = view;
	ctx->repo_name = req->repository;
	int rc = coffer_keyring_load(coffer_config_str(cfg->ini, sec, "key_ring"), &ctx->ring, err);
	if (rc == 0) {
		rc = coffer_sign_pubkey_load(
		    coffer_config_str(cfg->ini, sec, "verify_key"), &ctx->sign_pub, err);
	}
	if (rc == 0) {
		rc = agent_repo_open(cfg, req->repository, 0, &ctx->repo, err);
	}
	if (rc != 0) {
		coffer_err_wrap(err, "[%s]", sec);
	}
	return (rc);
}

static void
service_ctx_close(agent_ctx *ctx)
{
	coffer_keyring_free(ctx->ring);
	coffer_sign_pubkey_free(ctx->sign_pub);
	coffer_repo_close(ctx->repo);
}

int
agent_drill_run(const agent_config *cfg, const agent_drill_request *req, agent_drill_result *res,
    coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	int64_t t0 = coffer_clock_monotonic_ms();
	if (!cfg->drill_runner) {
		coffer_err_set(err, COFFER_EINVAL, "%s: this agent is not a drill runner",
		    coffer_config_path(cfg->ini));
		return (coffer_err_hint(err,
		    "drills run on an agent with [agent] role = "
		    "drill_runner and a [drill] sandbox"));
	}
	agent_config view;
	agent_ctx ctx;
	int rc = service_ctx(cfg, req, &view, &ctx, err);
	if (rc != 0) {
		service_ctx_close(&ctx);
		add_check(res, "verify", false, "%s", err->msg);
		res->total_ms = coffer_clock_monotonic_ms() - t0;
		return (rc);
	}
	coffer_manifest *m = NULL;
	coffer_err e = { 0 };
	char db[128];
	sandbox_name(req, db, sizeof(db));
	bool created = false;
	if (agent_stored_manifest(&ctx, req->backup, &m, &e) != 0) {
		add_check(res, "verify", false, "%s", e.msg);
		goto done;
	}
	snprintf(res->backup_id, sizeof(res->backup_id), "%s", m->backup_id);
	res->backup_finished_at_ms = m->finished_at;
	if (m->kind != COFFER_MANIFEST_LOGICAL) {
		add_check(res, "restore", false,
		    "backup %s is physical; drills restore logical "
		    "backups",
		    m->backup_id);
		goto done;
	}
	coffer_err_clear(&e);
	if (sandbox_check(cfg, req, m, db, &e) != 0) {
		add_check(res, "restore", false, "%s", e.msg);
		goto done;
	}
	agent_restore_request rr = {
		.backup = m->backup_id,
		.target_db = db,
		.target_conninfo = cfg->drill_sandbox,
		.jobs = cfg->drill_jobs,
		.cancel = req->cancel,
	};
	agent_restore_result rres;
	coffer_err_clear(&e);
	coffer_log_info("drill started",
	    "drill=%" PRIu64 " service=%s backup=%s repository=%s "
	    "sandbox=%s",
	    req->drill_id, req->service, m->backup_id, req->repository, db);
	int rr_rc = agent_restore_logical(&ctx, &rr, &rres, &e);
	res->restore_ms = rres.duration_ms;
	created = rres.stage >= AGENT_RESTORE_PG_RESTORE;
	if (created) {
		snprintf(res->sandbox, sizeof(res->sandbox), "%s", db);
	}
	if (rr_rc == COFFER_ECANCELED) {
		rc = rr_rc;
		*err = e;
		goto done;
	}
	switch (rr_rc == 0 ? AGENT_RESTORE_DONE : rres.stage) {
	case AGENT_RESTORE_MANIFEST:
	case AGENT_RESTORE_VERIFY:
		add_check(res, "verify", false, "%s", e.msg);
		goto done;
	case AGENT_RESTORE_TARGET:
	case AGENT_RESTORE_PG_RESTORE:
		add_check(res, "verify", true, "signature, chunks and digests check");
		add_check(res, "restore", false, "%s", e.msg);
		goto done;
	case AGENT_RESTORE_ROW_COUNTS:
		add_check(res, "verify", true, "signature, chunks and digests check");
		add_check(res, "restore", true, "pg_restore into %s", db);
		add_check(res, "row_counts", false, "%s", e.msg);
		break;
	case AGENT_RESTORE_DONE:
		add_check(res, "verify", true, "signature, chunks and digests check");
		add_check(res, "restore", true, "pg_restore into %s", db);
		add_check(res, "row_counts", true,
		    "%zu tables, %" PRIu64 " rows as in the manifest", rres.tables, rres.rows);
		break;
	}
	sql_checks(cfg, req, m, db, res);
	if (req->rto_ms > 0) {
		char a[32], b[32];
		add_check(res, "rto", res->restore_ms <= req->rto_ms,
		    "restored in %s, objective %s",
		    coffer_duration_format(a, sizeof(a), res->restore_ms),
		    coffer_duration_format(b, sizeof(b), req->rto_ms));
	}
done:
	res->ok = res->n_checks > 0;
	for (size_t i = 0; i < res->n_checks; i++) {
		res->ok = res->ok && res->checks[i].ok;
	}
	if (created && (res->ok || req->drop_on_failure)) {
		coffer_err_clear(&e);
		if (sandbox_drop(cfg, db, &e) != 0) {
			coffer_log_warn(
			    "sandbox not dropped", "sandbox=%s error=\"%s\"", db, e.msg);
			res->sandbox_kept = true;
		}
	} else {
		res->sandbox_kept = created;
	}
	res->total_ms = coffer_clock_monotonic_ms() - t0;
	coffer_log(res->ok ? COFFER_LOG_INFO : COFFER_LOG_WARN, "drill finished",
	    "drill=%" PRIu64 " service=%s backup=%s ok=%s restore_ms=%" PRId64 " failure=\"%s\"",
	    req->drill_id, req->service, res->backup_id, res->ok ? "yes" : "no", res->restore_ms,
	    res->failure);
	coffer_manifest_free(m);
	service_ctx_close(&ctx);
	return (rc);
}
