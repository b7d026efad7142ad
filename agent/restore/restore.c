#include "agent/restore/restore.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/outbox/events.h"
#include "agent/pg/passfile.h"
#include "agent/pg/pg.h"
#include "agent/restore/stored.h"
#include "common/base/clock.h"
#include "common/base/log.h"
#include "common/stream/progress.h"
#include "common/stream/sink.h"

#define CONNECT_TIMEOUT_S 15

char *
agent_conninfo_with_db(const char *conninfo, const char *dbname, coffer_err *err)
{
	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	if (opts == NULL) {
		coffer_err_set(err, COFFER_EINVAL, "not a valid libpq connection string: %s",
		    perr != NULL ? perr : "out of memory");
		PQfreemem(perr);
		return (NULL);
	}
	/* Rebuilt as key='value' pairs so a URI works as well as a key=value string. */
	size_t cap = 64 + 2 * strlen(conninfo) + 2 * strlen(dbname);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val != NULL) {
			cap += strlen(o->keyword) + 2 * strlen(o->val) + 8;
		}
	}
	char *out = malloc(cap);
	if (out == NULL) {
		PQconninfoFree(opts);
		coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		return (NULL);
	}
	size_t n = 0;
	for (PQconninfoOption *o = opts;; o++) {
		const char *key = o->keyword != NULL ? o->keyword : "dbname";
		const char *val = o->keyword != NULL ? o->val : dbname;
		if (val != NULL && (o->keyword == NULL || strcmp(key, "dbname") != 0)) {
			n += (size_t)snprintf(out + n, cap - n, "%s%s='", n ? " " : "", key);
			for (const char *p = val; *p; p++) {
				if (*p == '\'' || *p == '\\') {
					out[n++] = '\\';
				}
				out[n++] = *p;
			}
			out[n++] = '\'';
			out[n] = '\0';
		}
		if (o->keyword == NULL) {
			break;
		}
	}
	PQconninfoFree(opts);
	return (out);
}

/* Runs one statement on the server's maintenance database. */
static int
admin_exec(const char *server_conninfo, const char *sql, const char *what, coffer_err *err)
{
	char *ci = agent_conninfo_with_db(server_conninfo, "postgres", err);
	if (ci == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	PGconn *conn = PQconnectdb(ci);
	free(ci);
	int rc = 0;
	if (PQstatus(conn) != CONNECTION_OK) {
		rc = coffer_err_set(
		    err, COFFER_EPG, "%s: cannot connect: %s", what, PQerrorMessage(conn));
	} else {
		PGresult *res = PQexec(conn, sql);
		if (PQresultStatus(res) != PGRES_COMMAND_OK &&
		    PQresultStatus(res) != PGRES_TUPLES_OK) {
			rc = coffer_err_set(
			    err, COFFER_EPG, "%s: %s", what, PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	PQfinish(conn);
	/* libpq messages end in a newline; keep errors one line. */
	if (rc != 0 && err != NULL) {
		char *nl = strchr(err->msg, '\n');
		if (nl != NULL) {
			*nl = '\0';
		}
	}
	return (rc);
}

static int
server_identity(const char *server_conninfo, char *sysid, size_t size, coffer_err *err)
{
	char *ci = agent_conninfo_with_db(server_conninfo, "postgres", err);
	if (ci == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	PGconn *conn = PQconnectdb(ci);
	free(ci);
	int rc = 0;
	sysid[0] = '\0';
	if (PQstatus(conn) != CONNECTION_OK) {
		rc = coffer_err_set(err, COFFER_EPG, "cannot connect to the restore target: %s",
		    PQerrorMessage(conn));
	} else {
		PGresult *res =
		    PQexec(conn, "SELECT system_identifier::text FROM pg_control_system()");
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
			snprintf(sysid, size, "%s", PQgetvalue(res, 0, 0));
		}
		PQclear(res);
	}
	PQfinish(conn);
	return (rc);
}

static int
materialise(agent_ctx *ctx, const coffer_manifest *m, bool progress, char *path, size_t size,
    coffer_err *err)
{
	snprintf(path, size, "%s/restore-%s.XXXXXX", ctx->cfg->state_dir, m->backup_id);
	int fd = mkstemp(path);
	if (fd < 0) {
		return (coffer_err_errno(err, errno, "creating a temporary dump file", path),
		    coffer_err_hint(err,
		        "check that state_dir is writable and has room for the "
		        "dump (%llu bytes)",
		        (unsigned long long)m->plaintext_bytes));
	}
	coffer_filter *head = coffer_fd_sink_new(fd, err);
	if (head != NULL) {
		coffer_fd_sink_set_name(head, path);
	}
	if (progress) {
		head = coffer_progress_filter_new(head, "verifying", m->plaintext_bytes, err);
	}
	int rc;
	if (head == NULL) {
		rc = err != NULL ? err->code : COFFER_ENOMEM;
	} else {
		rc = agent_stored_read(ctx, m, head, err);
		coffer_filter_free_chain(head);
	}
	close(fd);
	if (rc != 0) {
		unlink(path);
	}
	return (rc);
}

static int
compare_counts(const coffer_manifest *m, const agent_pg_tables *got, agent_restore_result *res,
    coffer_err *err)
{
	/* Both lists are in (schema, name) byte order; walk them together. */
	size_t i = 0, j = 0, bad = 0;
	char first[320] = "";
	while (i < m->ntables || j < got->n) {
		int cmp;
		if (i == m->ntables) {
			cmp = 1;
		} else if (j == got->n) {
			cmp = -1;
		} else {
			cmp = strcmp(m->tables[i].schema, got->v[j].schema);
			if (cmp == 0) {
				cmp = strcmp(m->tables[i].name, got->v[j].name);
			}
		}
		if (cmp == 0 && m->tables[i].rows == (uint64_t)got->v[j].rows) {
			res->rows += m->tables[i].rows;
			i++, j++;
			continue;
		}
		if (bad++ == 0) {
			if (cmp == 0) {
				snprintf(first, sizeof(first),
				    "%.100s.%.100s has %" PRId64 " rows, the backup %" PRIu64,
				    got->v[j].schema, got->v[j].name, got->v[j].rows,
				    m->tables[i].rows);
			} else if (cmp < 0) {
				snprintf(first, sizeof(first), "%.100s.%.100s is missing",
				    m->tables[i].schema, m->tables[i].name);
			} else {
				snprintf(first, sizeof(first), "%.100s.%.100s is not in the backup",
				    got->v[j].schema, got->v[j].name);
			}
		}
		if (cmp == 0) {
			i++, j++;
		} else if (cmp < 0) {
			i++;
		} else {
			j++;
		}
	}
	res->tables = m->ntables;
	if (bad == 0) {
		return (0);
	}
	coffer_err_set(err, COFFER_ECORRUPT,
	    "restored database differs from backup %s in %zu table(s): %s", m->backup_id, bad,
	    first);
	return (coffer_err_hint(err,
	    "the restore is not faithful; keep the target for inspection "
	    "and report it"));
}

static void
record_outcome(agent_ctx *ctx, const char *id, const char *target, int rc, const coffer_err *err,
    int64_t duration_ms)
{
	if (ctx->outbox == NULL) {
		return;
	}
	Coffer__V1__RestoreCompleted rcm = COFFER__V1__RESTORE_COMPLETED__INIT;
	rcm.backup_id = (char *)id;
	rcm.target = (char *)target;
	rcm.ok = rc == 0;
	rcm.detail = rc == 0 ? (char *)"row counts match the manifest" : (char *)err->msg;
	rcm.duration_ms = duration_ms;
	Coffer__V1__Event ev = COFFER__V1__EVENT__INIT;
	ev.kind_case = COFFER__V1__EVENT__KIND_RESTORE_COMPLETED;
	ev.restore_completed = &rcm;
	coffer_err eerr = { 0 };
	if (agent_events_emit(
	        ctx->outbox, ctx->cfg->service, coffer_clock_now(NULL), &ev, NULL, &eerr) != 0) {
		coffer_log_error("restore outcome not recorded", "error=\"%s\"", eerr.msg);
	}
}

static int
prepare_target(
    const agent_restore_request *req, const char *server, const char *target_ci, coffer_err *err)
{
	/* Looked up and created from the maintenance database, as the server's
	 * identity is: the service's own database may be the one that is gone
	 * (a new host after a disaster), and [postgres] conninfo names it. */
	char *maint = agent_conninfo_with_db(server, "postgres", err);
	if (maint == NULL) {
		return (err != NULL ? err->code : COFFER_ENOMEM);
	}
	bool exists = false;
	int rc = agent_pg_database_exists(maint, CONNECT_TIMEOUT_S, req->target_db, &exists, err);
	if (rc == 0 && !exists) {
		/* A drill creates its sandbox its own way (owned by the
		 * service's drill role, agent/restore/drill.c). */
		rc = req->create_target != NULL
		    ? req->create_target(req->create_target_arg, err)
		    : agent_pg_database_create(maint, CONNECT_TIMEOUT_S, req->target_db, err);
	}
	free(maint);
	if (rc != 0 || !exists) {
		return (rc);
	}
	bool has = false;
	rc = agent_pg_has_user_tables(target_ci, CONNECT_TIMEOUT_S, &has, err);
	if (rc != 0 || !has) {
		return (rc);
	}
	if (!req->force) {
		return (coffer_err_set(err, COFFER_EREFUSED,
		            "database %s already has tables; refusing to restore over them",
		            req->target_db),
		    coffer_err_hint(err,
		        "pick a new --target-db, or pass --force to drop and "
		        "recreate %s",
		        req->target_db));
	}
	PGconn *dummy = PQconnectStart("");
	char *quoted = dummy != NULL
	    ? PQescapeIdentifier(dummy, req->target_db, strlen(req->target_db))
	    : NULL;
	PQfinish(dummy);
	if (quoted == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "out of memory"));
	}
	char sql[512];
	snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", quoted);
	PQfreemem(quoted);
	rc = admin_exec(server, sql, "dropping the target database for --force", err);
	maint = rc == 0 ? agent_conninfo_with_db(server, "postgres", err) : NULL;
	if (rc == 0 && maint == NULL) {
		rc = err != NULL ? err->code : COFFER_ENOMEM;
	}
	if (rc == 0) {
		rc = agent_pg_database_create(maint, CONNECT_TIMEOUT_S, req->target_db, err);
	}
	free(maint);
	return (rc);
}

int
agent_restore_logical(
    agent_ctx *ctx, const agent_restore_request *req, agent_restore_result *res, coffer_err *err)
{
	memset(res, 0, sizeof(*res));
	int64_t started = coffer_clock_monotonic_ms();
	const agent_config *cfg = ctx->cfg;
	const char *server = req->target_conninfo != NULL ? req->target_conninfo : cfg->conninfo;
	coffer_manifest *m = NULL;
	char dump_path[4096] = "";
	char *target_ci = NULL;
	char *child_ci = NULL;
	agent_passfile pf = { 0 };
	char **argv = NULL;
	int rc = agent_stored_manifest(ctx, req->backup, &m, err);
	if (rc != 0) {
		return (rc);
	}
	snprintf(res->backup_id, sizeof(res->backup_id), "%s", m->backup_id);
	if (m->kind != COFFER_MANIFEST_LOGICAL) {
		rc = coffer_err_set(
		    err, COFFER_EINVAL, "backup %s is a physical backup", m->backup_id);
		coffer_err_hint(err, "restore it with --physical --pgdata DIR");
		goto out;
	}

	/* The source is recognised by what it is, not by how it is named: the
	 * same cluster (system identifier) and the same database name. */
	char sysid[32];
	rc = server_identity(server, sysid, sizeof(sysid), err);
	if (rc != 0) {
		goto out;
	}
	char want[32];
	snprintf(want, sizeof(want), "%" PRIu64, m->system_identifier);
	if (strcmp(sysid, want) == 0 && strcmp(req->target_db, m->database) == 0) {
		rc = coffer_err_set(err, COFFER_EREFUSED,
		    "refusing to restore over %s: it is the source database of service %s",
		    req->target_db, cfg->service);
		coffer_err_hint(err,
		    "restore into a new database (--target-db NAME) and switch over "
		    "deliberately");
		goto out;
	}
	target_ci = agent_conninfo_with_db(
	    req->restore_conninfo != NULL ? req->restore_conninfo : server, req->target_db, err);
	if (target_ci == NULL) {
		rc = err->code;
		goto out;
	}

	coffer_log_info("restore started", "service=%s backup=%s target=%s", cfg->service,
	    m->backup_id, req->target_db);
	res->stage = AGENT_RESTORE_VERIFY;
	rc = materialise(ctx, m, req->progress, dump_path, sizeof(dump_path), err);
	if (rc == 0) {
		res->stage = AGENT_RESTORE_TARGET;
		rc = prepare_target(req, server, target_ci, err);
	}
	if (rc != 0) {
		goto out;
	}

	char jobs[16];
	snprintf(jobs, sizeof(jobs), "%d", req->jobs > 0 ? req->jobs : 1);
	/* pg_restore's command line is public: its password goes in a passfile. */
	rc = agent_passfile_conninfo(target_ci, &pf, &child_ci, err);
	if (rc != 0) {
		goto out;
	}
	char *dbarg = malloc(strlen(child_ci) + 16);
	if (dbarg == NULL) {
		rc = coffer_err_set(err, COFFER_ENOMEM, "out of memory");
		goto out;
	}
	sprintf(dbarg, "--dbname=%s", child_ci);
	const char *args[] = { cfg->pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
		"-j", jobs, dbarg, dump_path, NULL };
	agent_child_spec spec = {
		.argv = args,
		.name = "pg_restore",
		.cancel = req->cancel,
		.not_found_hint = "install the PostgreSQL client tools or set [postgres] bin_dir",
	};
	agent_child_result cres;
	res->stage = AGENT_RESTORE_PG_RESTORE;
	int64_t restore_started = coffer_clock_monotonic_ms();
	rc = agent_child_run(&spec, &cres, err);
	res->restore_ms = coffer_clock_monotonic_ms() - restore_started;
	free(dbarg);
	if (rc != 0) {
		goto out;
	}

	agent_pg_tables got = { 0 };
	res->stage = AGENT_RESTORE_ROW_COUNTS;
	rc = agent_pg_row_counts(target_ci, CONNECT_TIMEOUT_S, &got, err);
	if (rc == 0) {
		rc = compare_counts(m, &got, res, err);
	}
	agent_pg_tables_fini(&got);
	if (rc == 0) {
		res->stage = AGENT_RESTORE_DONE;
	}
out:
	agent_passfile_remove(&pf);
	free(child_ci);
	res->duration_ms = coffer_clock_monotonic_ms() - started;
	if (m != NULL && rc != COFFER_EREFUSED) {
		record_outcome(ctx, m->backup_id, req->target_db, rc, err, res->duration_ms);
	}
	if (rc == 0) {
		coffer_log_info("restore completed",
		    "service=%s backup=%s target=%s tables=%zu rows=%" PRIu64
		    " duration_ms=%" PRId64,
		    cfg->service, m->backup_id, req->target_db, res->tables, res->rows,
		    res->duration_ms);
	}
	if (dump_path[0] != '\0') {
		unlink(dump_path);
	}
	free(target_ci);
	(void)argv;
	coffer_manifest_free(m);
	return (rc);
}
