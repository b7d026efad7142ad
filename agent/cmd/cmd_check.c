/*
 * coffer-agent check -c FILE [--timeout 60s] [--max-skew 120s] [--output json]:
 * every prerequisite of a working agent tested for real, not only parsed:
 * the config; the key ring (mode, keys, the newest one seals and unseals);
 * the signing key (signs and verifies); the state directory and the outbox
 * backlog; PostgreSQL (connects, version, what the role may read for a
 * logical backup and, with [schedule] physical, what a base backup needs);
 * archive_mode and archive_command, then a forced WAL switch whose segment
 * must arrive in the repository within --timeout; pg_stat_archiver's
 * failures; the repository (a probe object written, read back and
 * compared); the coordinator over mutual TLS (a signed hello), the clock
 * against the coordinator's and the certificates' expiry.
 *
 * It goes on after a failure, so one run shows every problem; each check is
 * bounded (connect and statement timeouts, the call's timeout, --timeout for
 * the WAL segment). Output: one line per check (common/base/checklist.h)
 * with the fix where there is one; exit 0 all ok, 1 a warning, 2 critical.
 *
 * What it leaves behind: the probe object (agents never delete, docs/S3.md)
 * under services/<service>/check/, one WAL segment switch (archived like
 * any other), the hello the coordinator records as contact, and the
 * envelope seq it used. Nothing it prints holds a password, key or token:
 * conninfo is never printed, errors from libpq and S3 are ours, which name
 * no secret.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <openssl/rand.h>
#include <uv.h>

#include "agent/backup/wal.h"
#include "agent/cmd/commands.h"
#include "agent/context/context.h"
#include "agent/outbox/outbox.h"
#include "agent/outbox/statedir.h"
#include "agent/pg/pgq.h"
#include "agent/report/sender.h"
#include "common/base/checklist.h"
#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/hex.h"
#include "common/base/log.h"
#include "common/crypto/seal.h"
#include "common/stream/sink.h"
#include "common/wire/tlsconf.h"
#include "common/wire/wire.h"

#define PG_CONNECT_TIMEOUT_S 5
#define PG_STATEMENT_TIMEOUT "SET statement_timeout = '10s'"
#define PING_TIMEOUT_MS      10000
/* Free space under these in the state directory: the outbox and WAL
 * pushes' temporaries need room, and a full one stops archiving. */
#define STATE_FREE_CRITICAL ((uint64_t)64 << 20)
#define STATE_FREE_WARNING  ((uint64_t)1 << 30)
/* An outbox this deep or this old is not being shipped. */
#define OUTBOX_WARN_EVENTS 1000u
#define OUTBOX_WARN_AGE_MS (60LL * 60 * 1000)
/* Certificates: warn this long before one expires. */
#define CERT_WARN_MS (30LL * 24 * 3600 * 1000)
/* After pg_stat_archiver reports our segment failed: PostgreSQL retries
 * within a second or so; this long for a retry to succeed. */
#define ARCHIVE_FAILED_GRACE_MS 3000

#define PROG "coffer-agent check"

typedef struct check_run {
	coffer_checklist cl;
	const char *config_path;
	agent_config *cfg;
	coffer_keyring *ring;
	coffer_sign_key *sign_key;
	coffer_repo *repo; /* primary, read and write (never delete) */
	PGconn *pg;
	int pg_version;
	bool pg_superuser;
	bool pg_standby;
	/* Run as another user than the state directory's owner (root, most
	 * likely): whatever would create files there or in a posix repository
	 * is skipped, or the daemon could no longer write them. */
	bool foreign;
	char owner[64];
	int64_t timeout_ms;
	int64_t max_skew_ms;
	char host[128];
} check_run;

static void add(check_run *r, const char *name, coffer_check_status st, const char *fix,
    const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
add(check_run *r, const char *name, coffer_check_status st, const char *fix, const char *fmt, ...)
{
	char detail[COFFER_CHECKLIST_DETAIL_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	coffer_checklist_add(&r->cl, name, st, fix, "%s", detail);
}

/* A failed step as a result: its message, and its hint as the fix unless
 * the caller has a better one. */
static void
add_err(
    check_run *r, const char *name, coffer_check_status st, const coffer_err *err, const char *fix)
{
	add(r, name, st, fix != NULL ? fix : err->hint, "%s", err->msg);
}

static bool
physical_configured(const agent_config *cfg)
{
	return (cfg->schedule_physical != NULL && cfg->schedule_physical[0] != '\0');
}

/* ---- keys ---- */

static void
check_keyring(check_run *r)
{
	const char *path = r->cfg->key_ring;
	struct stat st;
	char fix[COFFER_CHECKLIST_FIX_MAX];
	if (stat(path, &st) != 0) {
		int e = errno;
		snprintf(fix, sizeof(fix),
		    "%s: create one with `coffer-agent keygen --out %s`, or restore the ring "
		    "(`coffer-agent keyring recover`, docs/OPERATIONS.md)",
		    e == ENOENT ? "the ring is missing" : "make it readable by the agent's user",
		    path);
		add(r, "keyring", COFFER_CHECK_CRITICAL, fix, "key ring %s: %s", path, strerror(e));
		return;
	}
	if ((st.st_mode & 077) != 0) {
		snprintf(fix, sizeof(fix), "chmod 600 %s (owned by the agent's user)", path);
		add(r, "keyring", COFFER_CHECK_CRITICAL, fix,
		    "key ring %s has mode %04o: group or others may read the keys that open every "
		    "backup",
		    path, (unsigned)(st.st_mode & 07777));
		return;
	}
	coffer_err err = { 0 };
	if (coffer_keyring_load(path, &r->ring, &err) != 0) {
		add_err(r, "keyring", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	const char *id = coffer_keyring_newest_id(r->ring);
	if (coffer_keyring_count(r->ring) == 0 || id == NULL) {
		snprintf(fix, sizeof(fix), "add a key: coffer-agent keygen --out %s", path);
		add(r, "keyring", COFFER_CHECK_CRITICAL, fix, "key ring %s holds no key", path);
		return;
	}
	/* The newest key is the one backups seal with: a few bytes sealed
	 * and opened again prove it is a usable AES-256 key, not only text. */
	static const char probe[] = "coffer-agent check";
	coffer_filter *out = coffer_buffer_sink_new(4096, &err);
	coffer_filter *open = coffer_unseal_filter_new(out, r->ring, &err);
	coffer_filter *sealed = coffer_buffer_sink_new(4096, &err);
	coffer_filter *seal =
	    coffer_seal_filter_new(sealed, r->ring, id, COFFER_SEAL_CHUNK_DEFAULT, &err);
	int rc = seal != NULL && open != NULL ? 0 : err.code != 0 ? err.code : COFFER_ENOMEM;
	if (rc == 0) {
		rc = coffer_filter_write(seal, probe, sizeof(probe), &err);
	}
	if (rc == 0) {
		rc = coffer_filter_finish(seal, &err);
	}
	size_t len = 0;
	const uint8_t *bytes = rc == 0 ? coffer_buffer_sink_data(sealed, &len) : NULL;
	if (rc == 0) {
		rc = coffer_filter_write(open, bytes, len, &err);
	}
	if (rc == 0) {
		rc = coffer_filter_finish(open, &err);
	}
	size_t plen = 0;
	const uint8_t *plain = rc == 0 ? coffer_buffer_sink_data(out, &plen) : NULL;
	if (rc == 0 && (plen != sizeof(probe) || memcmp(plain, probe, plen) != 0)) {
		rc = coffer_err_set(
		    &err, COFFER_ECORRUPT, "the bytes unsealed differ from those sealed");
	}
	coffer_filter_free_chain(seal);
	coffer_filter_free_chain(open);
	if (rc != 0) {
		add(r, "keyring", COFFER_CHECK_CRITICAL,
		    "replace the ring from escrow or a copy (docs/OPERATIONS.md)",
		    "key ring %s: newest key %s cannot seal and unseal: %s", path, id, err.msg);
		return;
	}
	add(r, "keyring", COFFER_CHECK_OK, NULL,
	    "key ring %s (mode %04o): %zu key%s, newest %s seals and unseals", path,
	    (unsigned)(st.st_mode & 07777), coffer_keyring_count(r->ring),
	    coffer_keyring_count(r->ring) == 1 ? "" : "s", id);
}

static void
check_signing_key(check_run *r)
{
	coffer_err err = { 0 };
	char fix[COFFER_CHECKLIST_FIX_MAX];
	int rc = coffer_sign_key_load(r->cfg->signing_key, &r->sign_key, &err);
	if (rc != 0) {
		if (rc == COFFER_ENOENT) {
			snprintf(fix, sizeof(fix),
			    "create it with `coffer-agent init -c %s` and enroll its public key",
			    r->config_path);
		}
		add_err(r, "signing_key", COFFER_CHECK_CRITICAL, &err,
		    rc == COFFER_ENOENT ? fix : NULL);
		return;
	}
	coffer_sign_pubkey *pub = NULL;
	uint8_t sig[COFFER_SIGN_BYTES];
	static const char msg[] = "coffer-agent check";
	rc = coffer_sign_key_public(r->sign_key, &pub, &err);
	if (rc == 0) {
		rc = coffer_sign(r->sign_key, msg, sizeof(msg), sig, &err);
	}
	if (rc == 0) {
		rc = coffer_sign_verify(pub, msg, sizeof(msg), sig, &err);
	}
	char fp[COFFER_SIGN_FINGERPRINT_HEX] = "";
	if (pub != NULL) {
		coffer_sign_fingerprint(pub, fp);
	}
	coffer_sign_pubkey_free(pub);
	if (rc != 0) {
		add_err(r, "signing_key", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	add(r, "signing_key", COFFER_CHECK_OK, NULL, "%s signs and verifies (fingerprint %s)",
	    r->cfg->signing_key, fp);
}

/* ---- state directory and outbox ---- */

static void
check_state_dir(check_run *r)
{
	const char *dir = r->cfg->state_dir;
	char fix[COFFER_CHECKLIST_FIX_MAX];
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(fix, sizeof(fix), "mkdir -m 700 %s, owned by the agent's user", dir);
		add(r, "state_dir", COFFER_CHECK_CRITICAL, fix, "state_dir %s: %s", dir,
		    errno != 0 ? strerror(errno) : "not a directory");
		return;
	}
	if (access(dir, W_OK | X_OK) != 0) {
		snprintf(fix, sizeof(fix),
		    "chown the directory to the agent's user (the one archive_command and the "
		    "daemon run as): %s",
		    dir);
		add(r, "state_dir", COFFER_CHECK_CRITICAL, fix, "state_dir %s is not writable: %s",
		    dir, strerror(errno));
		return;
	}
	if (st.st_uid != geteuid()) {
		r->foreign = true;
		struct passwd *pw = getpwuid(st.st_uid);
		if (pw != NULL) {
			snprintf(r->owner, sizeof(r->owner), "%s", pw->pw_name);
		} else {
			snprintf(r->owner, sizeof(r->owner), "%u", (unsigned)st.st_uid);
		}
		snprintf(fix, sizeof(fix),
		    "run the check as the agent's user: runuser -u %s -- "
		    "coffer-agent check -c %s",
		    r->owner, r->config_path);
		add(r, "user", COFFER_CHECK_WARNING, fix,
		    "running as uid %u, but state_dir is owned by %s: the outbox, the coordinator's "
		    "hello and a posix repository probe are skipped, so that no file of this user "
		    "lands where the agent writes",
		    (unsigned)geteuid(), r->owner);
	}
	uint64_t free_bytes = 0;
	coffer_err err = { 0 };
	if (agent_statedir_free(dir, &free_bytes, &err) != 0) {
		add_err(r, "state_dir", COFFER_CHECK_WARNING, &err, NULL);
		return;
	}
	char human[COFFER_FMT_BYTES_SIZE];
	coffer_fmt_bytes(human, (double)free_bytes);
	if (free_bytes < STATE_FREE_WARNING) {
		snprintf(fix, sizeof(fix),
		    "free space on the file system of %s (the outbox and WAL pushes write there)",
		    dir);
		add(r, "state_dir",
		    free_bytes < STATE_FREE_CRITICAL ? COFFER_CHECK_CRITICAL : COFFER_CHECK_WARNING,
		    fix, "state_dir %s: only %s free", dir, human);
		return;
	}
	add(r, "state_dir", COFFER_CHECK_OK, NULL, "state_dir %s writable, %s free", dir, human);
}

typedef struct oldest_event {
	int64_t at_ms;
} oldest_event;

static int
take_oldest(uint64_t seq, const uint8_t *data, size_t len, void *arg)
{
	(void)seq;
	oldest_event *o = arg;
	Coffer__V1__Event *ev = coffer__v1__event__unpack(NULL, len, data);
	if (ev != NULL) {
		o->at_ms = ev->occurred_at_ms;
		coffer__v1__event__free_unpacked(ev, NULL);
	}
	return (1);
}

static void
check_outbox(check_run *r)
{
	char state[4096];
	snprintf(state, sizeof(state), "%s/outbox", r->cfg->state_dir);
	struct stat st;
	if (stat(state, &st) != 0) {
		add(r, "outbox", COFFER_CHECK_OK, NULL,
		    "no outbox yet (the first event creates it)");
		return;
	}
	agent_outbox *ob = NULL;
	coffer_err err = { 0 };
	agent_outbox_stats os;
	oldest_event oldest = { 0 };
	int rc = agent_outbox_open(r->cfg->state_dir, NULL, &ob, &err);
	if (rc == 0) {
		rc = agent_outbox_depth(ob, &os, &err);
	}
	if (rc == 0 && os.count > 0) {
		rc = agent_outbox_foreach(ob, 0, 1, SIZE_MAX, take_oldest, &oldest, NULL, &err);
	}
	agent_outbox_close(ob);
	if (rc != 0) {
		add_err(r, "outbox", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	if (os.count == 0) {
		add(r, "outbox", COFFER_CHECK_OK, NULL, "outbox empty: every event was delivered");
		return;
	}
	int64_t age = oldest.at_ms > 0 ? coffer_clock_now(NULL) - oldest.at_ms : 0;
	char agetext[40] = "unknown";
	if (oldest.at_ms > 0) {
		coffer_checklist_duration(agetext, sizeof(agetext), age > 0 ? age : 0);
	}
	if (!r->cfg->coordinator_present) {
		add(r, "outbox", COFFER_CHECK_OK, NULL,
		    "%" PRIu64 " events wait, oldest %s old (no [coordinator]: they stay)",
		    os.count, agetext);
		return;
	}
	if (os.count >= OUTBOX_WARN_EVENTS || age > OUTBOX_WARN_AGE_MS) {
		char fix[COFFER_CHECKLIST_FIX_MAX];
		snprintf(fix, sizeof(fix),
		    "the daemon is not delivering them: start it (coffer-agent run -c %s) or send "
		    "them now with coffer-agent flush -c %s; coffer-agent events lists them",
		    r->config_path, r->config_path);
		add(r, "outbox", COFFER_CHECK_WARNING, fix,
		    "%" PRIu64 " events wait for the coordinator, the oldest %s old", os.count,
		    agetext);
		return;
	}
	add(r, "outbox", COFFER_CHECK_OK, NULL,
	    "%" PRIu64 " events wait for the coordinator, the oldest %s old", os.count, agetext);
}

/* ---- PostgreSQL ---- */

/* One row of text values; NULL on failure (err set). */
static PGresult *
pg_row(check_run *r, const char *what, const char *sql, coffer_err *err)
{
	PGresult *res = NULL;
	if (agent_pgq_row(r->pg, what, sql, 0, NULL, &res, err) != 0) {
		return (NULL);
	}
	return (res);
}

static const char *
val(PGresult *res, int col)
{
	return (PQgetisnull(res, 0, col) ? NULL : PQgetvalue(res, 0, col));
}

static bool
is_true(PGresult *res, int col)
{
	const char *v = val(res, col);
	return (v != NULL && strcmp(v, "t") == 0);
}

static void
check_postgres(check_run *r)
{
	coffer_err err = { 0 };
	int rc = agent_pgq_connect(
	    r->cfg->conninfo, NULL, NULL, NULL, PG_CONNECT_TIMEOUT_S, &r->pg, &err);
	if (rc == 0) {
		rc = agent_pgq_command(
		    r->pg, "bounding the check's statements", PG_STATEMENT_TIMEOUT, &err);
	}
	if (rc != 0) {
		add(r, "postgres", COFFER_CHECK_CRITICAL,
		    err.hint[0] != '\0' ? err.hint
		                        : "check [postgres] conninfo (host, port, user, dbname, "
		                          "password file) and that the server runs",
		    "cannot connect with [postgres] conninfo: %s", err.msg);
		if (r->pg != NULL) {
			PQfinish(r->pg);
			r->pg = NULL;
		}
		return;
	}
	PGresult *res = pg_row(r, "reading the server and role",
	    "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
	    "current_user, r.rolsuper, r.rolreplication, pg_is_in_recovery(), current_database(), "
	    "EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'pg_read_all_data' "
	    "  AND pg_has_role(g.oid, 'MEMBER')) "
	    "FROM pg_roles r WHERE r.rolname = current_user",
	    &err);
	if (res == NULL) {
		add_err(r, "postgres", COFFER_CHECK_CRITICAL, &err, NULL);
		return;
	}
	r->pg_version = atoi(PQgetvalue(res, 0, 0));
	r->pg_superuser = is_true(res, 3);
	r->pg_standby = is_true(res, 5);
	bool read_all = r->pg_superuser || is_true(res, 7);
	char role[64], db[64], version[64];
	snprintf(role, sizeof(role), "%s", PQgetvalue(res, 0, 2));
	snprintf(db, sizeof(db), "%s", PQgetvalue(res, 0, 6));
	snprintf(version, sizeof(version), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	if (r->pg_version < 100000) {
		add(r, "postgres", COFFER_CHECK_CRITICAL, "upgrade PostgreSQL to 10 or newer",
		    "PostgreSQL %s is older than 10, which Coffer supports", version);
	} else {
		add(r, "postgres", COFFER_CHECK_OK, NULL,
		    "connected to database %s as role %s: PostgreSQL %s%s%s", db, role, version,
		    r->pg_standby ? ", a standby" : "", r->pg_superuser ? ", superuser" : "");
	}

	/* What pg_dump reads: every table, sequence and materialized view
	 * outside the system schemas, and the schemas holding them. */
	if (read_all) {
		add(r, "pg_logical", COFFER_CHECK_OK, NULL,
		    "role %s reads every table (%s) for pg_dump", role,
		    r->pg_superuser ? "superuser" : "member of pg_read_all_data");
	} else {
		res = pg_row(r, "listing what the role may not read",
		    "SELECT count(*), coalesce(string_agg(q, ', ') FILTER (WHERE n <= 5), '') FROM "
		    "(SELECT format('%I.%I', s.nspname, c.relname) AS q, "
		    "  row_number() OVER (ORDER BY s.nspname, c.relname) AS n "
		    " FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace "
		    " WHERE c.relkind IN ('r', 'p', 'm', 'S') "
		    "  AND s.nspname NOT IN ('pg_catalog', 'information_schema') "
		    "  AND s.nspname NOT LIKE 'pg\\_toast%' AND s.nspname NOT LIKE 'pg\\_temp%' "
		    "  AND (NOT has_schema_privilege(s.oid, 'USAGE') "
		    "       OR NOT has_table_privilege(c.oid, 'SELECT'))) x",
		    &err);
		if (res == NULL) {
			add_err(r, "pg_logical", COFFER_CHECK_CRITICAL, &err, NULL);
		} else {
			long missing = atol(PQgetvalue(res, 0, 0));
			char fix[COFFER_CHECKLIST_FIX_MAX];
			snprintf(fix, sizeof(fix),
			    "GRANT pg_read_all_data TO %s (PostgreSQL 14+), or SELECT on each table "
			    "and USAGE on its schema",
			    role);
			if (missing > 0) {
				add(r, "pg_logical", COFFER_CHECK_CRITICAL, fix,
				    "role %s cannot read %ld relation%s pg_dump needs: %s%s", role,
				    missing, missing == 1 ? "" : "s", PQgetvalue(res, 0, 1),
				    missing > 5 ? ", ..." : "");
			} else {
				add(r, "pg_logical", COFFER_CHECK_OK, NULL,
				    "role %s reads every table and sequence of database %s", role,
				    db);
			}
			PQclear(res);
		}
	}
	if (physical_configured(r->cfg)) {
		char fix[COFFER_CHECKLIST_FIX_MAX];
		res = pg_row(r, "reading what a base backup needs",
		    "SELECT has_function_privilege('pg_backup_start(text, boolean)', 'EXECUTE'), "
		    "has_function_privilege('pg_backup_stop(boolean)', 'EXECUTE'), "
		    "has_function_privilege('pg_control_system()', 'EXECUTE'), "
		    "(SELECT setting FROM pg_settings WHERE name = 'data_directory'), "
		    "current_setting('wal_level')",
		    &err);
		if (r->pg_version < 150000) {
			add(r, "pg_physical", COFFER_CHECK_CRITICAL,
			    "remove [schedule] physical (logical backups work on this server) or "
			    "upgrade PostgreSQL",
			    "[schedule] physical is set, but base backups need PostgreSQL 15 or "
			    "newer; the server is %s",
			    version);
		} else if (res == NULL) {
			add_err(r, "pg_physical", COFFER_CHECK_CRITICAL, &err, NULL);
		} else if (r->pg_standby) {
			add(r, "pg_physical", COFFER_CHECK_CRITICAL,
			    "point [postgres] conninfo at the primary",
			    "[schedule] physical is set, but the server is a standby; base backups "
			    "are taken from the primary");
		} else if (!is_true(res, 0) || !is_true(res, 1) || !is_true(res, 2)) {
			snprintf(fix, sizeof(fix),
			    "GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), "
			    "pg_backup_stop(boolean), pg_control_system() TO %s",
			    role);
			add(r, "pg_physical", COFFER_CHECK_CRITICAL, fix,
			    "role %s may not run%s%s%s, which a base backup calls", role,
			    is_true(res, 0) ? "" : " pg_backup_start",
			    is_true(res, 1) ? "" : " pg_backup_stop",
			    is_true(res, 2) ? "" : " pg_control_system");
		} else if (val(res, 3) == NULL) {
			snprintf(fix, sizeof(fix), "GRANT pg_read_all_settings TO %s", role);
			add(r, "pg_physical", COFFER_CHECK_CRITICAL, fix,
			    "role %s may not read data_directory, which a base backup copies",
			    role);
		} else if (strcmp(PQgetvalue(res, 0, 4), "minimal") == 0) {
			add(r, "pg_physical", COFFER_CHECK_CRITICAL,
			    "set wal_level = replica and restart PostgreSQL",
			    "wal_level is minimal");
		} else {
			const char *pgdata = PQgetvalue(res, 0, 3);
			DIR *d = opendir(pgdata);
			if (d == NULL) {
				snprintf(fix, sizeof(fix),
				    "run the agent as the database's OS user (the owner of %s)",
				    pgdata);
				add(r, "pg_physical", COFFER_CHECK_CRITICAL, fix,
				    "this user (uid %u) cannot read the data directory %s: %s",
				    (unsigned)geteuid(), pgdata, strerror(errno));
			} else {
				closedir(d);
				add(r, "pg_physical", COFFER_CHECK_OK, NULL,
				    "role %s may run pg_backup_start/stop; data directory %s readable",
				    role, pgdata);
			}
		}
		if (res != NULL) {
			PQclear(res);
		}
	}
}

/* ---- archiving ---- */

typedef struct archiver_row {
	long long failed_count;
	char last_failed_wal[64];
	int64_t last_failed_ms;
	char last_archived_wal[64];
	int64_t last_archived_ms;
} archiver_row;

static int
read_archiver(check_run *r, archiver_row *a, coffer_err *err)
{
	memset(a, 0, sizeof(*a));
	PGresult *res = pg_row(r, "reading pg_stat_archiver",
	    "SELECT failed_count, coalesce(last_failed_wal, ''), "
	    "coalesce((extract(epoch FROM last_failed_time) * 1000)::bigint, 0), "
	    "coalesce(last_archived_wal, ''), "
	    "coalesce((extract(epoch FROM last_archived_time) * 1000)::bigint, 0) "
	    "FROM pg_stat_archiver",
	    err);
	if (res == NULL) {
		return (err->code);
	}
	a->failed_count = atoll(PQgetvalue(res, 0, 0));
	snprintf(a->last_failed_wal, sizeof(a->last_failed_wal), "%s", PQgetvalue(res, 0, 1));
	a->last_failed_ms = atoll(PQgetvalue(res, 0, 2));
	snprintf(a->last_archived_wal, sizeof(a->last_archived_wal), "%s", PQgetvalue(res, 0, 3));
	a->last_archived_ms = atoll(PQgetvalue(res, 0, 4));
	PQclear(res);
	return (0);
}

/* Whether archive_command runs this agent's wal-push with this config. */
static bool
command_is_ours(const char *command, const char *config_path)
{
	if (strstr(command, "wal-push") == NULL || strstr(command, "%p") == NULL) {
		return (false);
	}
	if (strstr(command, config_path) != NULL) {
		return (true);
	}
	char real[4096];
	return (realpath(config_path, real) != NULL && strstr(command, real) != NULL);
}

/* The segment the forced switch completed, or "" with the reason. */
static void
force_switch(
    check_run *r, char segment[64], coffer_check_status *why_status, char *why, size_t why_size)
{
	segment[0] = '\0';
	coffer_err err = { 0 };
	PGresult *res = pg_row(r, "checking pg_switch_wal",
	    "SELECT has_function_privilege('pg_switch_wal()', 'EXECUTE')", &err);
	if (res == NULL) {
		*why_status = COFFER_CHECK_CRITICAL;
		snprintf(why, why_size, "%s", err.msg);
		return;
	}
	bool may = is_true(res, 0);
	PQclear(res);
	if (!may) {
		*why_status = COFFER_CHECK_WARNING;
		snprintf(why, why_size,
		    "the role may not run pg_switch_wal(), so no segment was forced through "
		    "archive_command");
		return;
	}
	/* A commit record, so the segment holds something to switch away
	 * from: pg_switch_wal() does nothing right after another switch. */
	if (agent_pgq_command(
	        r->pg, "writing a little WAL", "BEGIN; SELECT txid_current(); COMMIT", &err) != 0) {
		*why_status = COFFER_CHECK_CRITICAL;
		snprintf(why, why_size, "%s", err.msg);
		return;
	}
	res = pg_row(r, "switching WAL segments", "SELECT pg_walfile_name(pg_switch_wal())", &err);
	if (res == NULL) {
		*why_status = COFFER_CHECK_CRITICAL;
		snprintf(why, why_size, "%s", err.msg);
		return;
	}
	snprintf(segment, 64, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
}

static int
system_identifier(check_run *r, uint64_t *sysid, coffer_err *err)
{
	PGresult *res = pg_row(r, "reading the system identifier",
	    "SELECT CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') "
	    "THEN (SELECT system_identifier::text FROM pg_control_system()) END",
	    err);
	if (res == NULL) {
		return (err->code);
	}
	const char *v = val(res, 0);
	*sysid = v != NULL ? strtoull(v, NULL, 10) : 0;
	PQclear(res);
	if (*sysid != 0) {
		return (0);
	}
	if (r->foreign) {
		/* Asking through the agent would cache it in state_dir. */
		coffer_err_set(err, COFFER_EPERM,
		    "the role may not run pg_control_system() and this user is not %s", r->owner);
		return (coffer_err_hint(err, "run the check as the agent's user"));
	}
	return (agent_wal_system_identifier(r->cfg, sysid, err));
}

/* Returns whether archive_mode is on (pg_stat_archiver means something). */
static bool
check_archiving(check_run *r)
{
	coffer_err err = { 0 };
	char fix[COFFER_CHECKLIST_FIX_MAX];
	char wanted[1024];
	snprintf(wanted, sizeof(wanted), "archive_command = 'coffer-agent wal-push -c %s %%p'",
	    r->config_path);
	PGresult *res = pg_row(r, "reading the archiving settings",
	    "SELECT current_setting('archive_mode'), "
	    "(SELECT setting FROM pg_settings WHERE name = 'archive_command')",
	    &err);
	if (res == NULL) {
		add_err(r, "archive_config", COFFER_CHECK_CRITICAL, &err, NULL);
		return (false);
	}
	char mode[32];
	snprintf(mode, sizeof(mode), "%s", PQgetvalue(res, 0, 0));
	char command[1024] = "";
	bool command_known = val(res, 1) != NULL;
	if (command_known) {
		snprintf(command, sizeof(command), "%s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	if (strcmp(mode, "off") == 0) {
		snprintf(fix, sizeof(fix),
		    "set archive_mode = on and %.280s, then restart PostgreSQL", wanted);
		add(r, "archive_config",
		    physical_configured(r->cfg) ? COFFER_CHECK_CRITICAL : COFFER_CHECK_WARNING, fix,
		    "archive_mode is off: no WAL is archived, so there is no point-in-time "
		    "recovery%s",
		    physical_configured(r->cfg) ? " and no physical backup completes" : "");
		return (false);
	}
	if (!command_known) {
		add(r, "archive_config", COFFER_CHECK_WARNING,
		    "GRANT pg_read_all_settings to the role, or check the setting by hand",
		    "archive_mode is %s; archive_command is not readable by this role", mode);
	} else if (!command_is_ours(command, r->config_path)) {
		snprintf(fix, sizeof(fix), "set %.300s and reload PostgreSQL", wanted);
		add(r, "archive_config", COFFER_CHECK_WARNING, fix,
		    "archive_mode is %s but archive_command '%.300s' does not run coffer-agent "
		    "wal-push with this config",
		    mode, command);
	} else {
		add(r, "archive_config", COFFER_CHECK_OK, NULL,
		    "archive_mode is %s; archive_command runs wal-push with this config", mode);
	}

	/* The real test: a segment through archive_command into the
	 * repository. */
	if (r->pg_standby) {
		add(r, "archive", COFFER_CHECK_WARNING, "run the check against the primary",
		    "the server is a standby: no WAL switch can be forced here");
		return (true);
	}
	if (r->repo == NULL) {
		add(r, "archive", COFFER_CHECK_CRITICAL, "fix the repository check first",
		    "the repository did not open, so no archived segment can be found there");
		return (true);
	}
	uint64_t sysid = 0;
	if (system_identifier(r, &sysid, &err) != 0) {
		add_err(r, "archive", COFFER_CHECK_CRITICAL, &err, NULL);
		return (true);
	}
	archiver_row before;
	if (read_archiver(r, &before, &err) != 0) {
		add_err(r, "archive", COFFER_CHECK_CRITICAL, &err, NULL);
		return (true);
	}
	char segment[64];
	char why[COFFER_CHECKLIST_DETAIL_MAX] = "";
	coffer_check_status why_status = COFFER_CHECK_OK;
	int64_t started_mono = coffer_clock_monotonic_ms();
	force_switch(r, segment, &why_status, why, sizeof(why));
	if (segment[0] == '\0') {
		char role_fix[COFFER_CHECKLIST_FIX_MAX];
		snprintf(role_fix, sizeof(role_fix),
		    "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO the role of [postgres] conninfo, "
		    "or run the check with a superuser's conninfo");
		add(r, "archive", why_status, why_status == COFFER_CHECK_WARNING ? role_fix : NULL,
		    "%s", why);
		return (true);
	}
	agent_ctx ctx = { .cfg = r->cfg, .repo_name = "primary", .repo = r->repo };
	int64_t deadline = started_mono + r->timeout_ms;
	int64_t failed_seen = 0;
	archiver_row now = before;
	for (;;) {
		bool there = false;
		if (agent_wal_exists(&ctx, sysid, segment, &there, &err) != 0) {
			add_err(r, "archive", COFFER_CHECK_CRITICAL, &err, NULL);
			return (true);
		}
		if (there) {
			char took[40];
			coffer_checklist_duration(
			    took, sizeof(took), coffer_clock_monotonic_ms() - started_mono);
			add(r, "archive", COFFER_CHECK_OK, NULL,
			    "forced a WAL switch: segment %s arrived in the repository in %s",
			    segment, took);
			return (true);
		}
		int64_t mono = coffer_clock_monotonic_ms();
		coffer_err aerr = { 0 };
		if (read_archiver(r, &now, &aerr) == 0 && now.failed_count > before.failed_count &&
		    strcmp(now.last_failed_wal, segment) == 0 && failed_seen == 0) {
			failed_seen = mono;
		}
		if (mono >= deadline ||
		    (failed_seen != 0 && mono - failed_seen >= ARCHIVE_FAILED_GRACE_MS)) {
			break;
		}
		uv_sleep(250);
	}
	snprintf(fix, sizeof(fix),
	    "check archive_command (%.200s) and PostgreSQL's log for its error; run it by hand as "
	    "the database's OS user",
	    wanted);
	if (failed_seen != 0) {
		add(r, "archive", COFFER_CHECK_CRITICAL, fix,
		    "archive_command failed on the forced segment %s (pg_stat_archiver: "
		    "failed_count %lld, last_failed_wal %s)",
		    segment, now.failed_count, now.last_failed_wal);
	} else {
		char tmo[40];
		coffer_checklist_duration(tmo, sizeof(tmo), r->timeout_ms);
		add(r, "archive", COFFER_CHECK_CRITICAL, fix,
		    "segment %s, forced by a WAL switch, is not in the repository after %s "
		    "(pg_stat_archiver: failed_count %lld, last_archived_wal %s)",
		    segment, tmo, now.failed_count,
		    now.last_archived_wal[0] != '\0' ? now.last_archived_wal : "none");
	}
	return (true);
}

static void
check_archiver(check_run *r)
{
	archiver_row a;
	coffer_err err = { 0 };
	if (read_archiver(r, &a, &err) != 0) {
		add_err(r, "archiver", COFFER_CHECK_WARNING, &err, NULL);
		return;
	}
	char at[40] = "never";
	if (a.last_failed_ms > 0 && a.last_failed_ms > a.last_archived_ms) {
		coffer_time_format(at, sizeof(at), a.last_failed_ms);
		add(r, "archiver", COFFER_CHECK_CRITICAL,
		    "see PostgreSQL's log for archive_command's error; WAL piles up in pg_wal "
		    "until it succeeds",
		    "pg_stat_archiver: failed_count %lld; the last failure (%s at %s) is newer "
		    "than the last success (%s)",
		    a.failed_count, a.last_failed_wal, at,
		    a.last_archived_wal[0] != '\0' ? a.last_archived_wal : "none");
		return;
	}
	if (a.last_archived_ms == 0) {
		add(r, "archiver", COFFER_CHECK_OK, NULL,
		    "pg_stat_archiver: nothing archived yet, failed_count %lld", a.failed_count);
		return;
	}
	coffer_time_format(at, sizeof(at), a.last_archived_ms);
	add(r, "archiver", COFFER_CHECK_OK, NULL,
	    "pg_stat_archiver: last archived %s at %s, failed_count %lld, none since",
	    a.last_archived_wal, at, a.failed_count);
}

/* ---- repository ---- */

static void
check_repository(check_run *r)
{
	coffer_err err = { 0 };
	if (agent_repo_open(
	        r->cfg, "primary", AGENT_NEED_REPO | AGENT_NEED_REPO_WRITE, &r->repo, &err) != 0) {
		add_err(r, "repository", COFFER_CHECK_CRITICAL, &err, NULL);
		r->repo = NULL;
		return;
	}
	if (r->foreign && r->cfg->repo_primary.type == AGENT_REPO_POSIX) {
		add(r, "repository", COFFER_CHECK_WARNING, "run the check as the agent's user",
		    "posix repository opens; no probe written as another user than %s (its "
		    "directories would not be the agent's)",
		    r->owner);
		return;
	}
	uint8_t rnd[16];
	char hex[33];
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		memset(rnd, 0, sizeof(rnd));
	}
	coffer_hex_encode(rnd, sizeof(rnd), hex);
	char stamp[40];
	coffer_time_format(stamp, sizeof(stamp), coffer_clock_now(NULL));
	/* RFC 3339 has ':' which some stores dislike in keys; keep digits. */
	char compact[40];
	size_t j = 0;
	for (size_t i = 0; stamp[i] != '\0' && j + 1 < sizeof(compact); i++) {
		if (stamp[i] != ':' && stamp[i] != '-' && stamp[i] != '.') {
			compact[j++] = stamp[i];
		}
	}
	compact[j] = '\0';
	char key[COFFER_REPO_KEY_MAX];
	snprintf(key, sizeof(key), "services/%s/check/%s-%s-%.8s", r->cfg->service, r->host,
	    compact, hex);
	char body[256];
	int blen =
	    snprintf(body, sizeof(body), "coffer-agent check probe %s %s\n", r->cfg->name, hex);

	coffer_filter *sink = NULL;
	int rc = coffer_repo_key_check(key, &err);
	if (rc == 0) {
		rc = coffer_repo_write_begin(r->repo, key, &sink, &err);
	}
	if (rc == 0) {
		rc = coffer_filter_write(sink, body, (size_t)blen, &err);
	}
	if (rc == 0) {
		rc = coffer_filter_finish(sink, &err);
	}
	if (rc == 0) {
		rc = coffer_repo_write_commit(sink, &err);
	}
	coffer_filter_free(sink);
	const char *type = coffer_repo_type(r->repo);
	if (rc != 0) {
		add(r, "repository", COFFER_CHECK_CRITICAL,
		    err.hint[0] != '\0' ? err.hint
		                        : "check [repository.primary]: path and its owner (posix), "
		                          "or bucket, prefix and credentials (s3, docs/S3.md)",
		    "%s repository: cannot write the probe %s: %s", type, key, err.msg);
		return;
	}
	coffer_filter *back = coffer_buffer_sink_new(4096, &err);
	rc = back != NULL ? coffer_repo_read(r->repo, key, back, &err) : err.code;
	size_t len = 0;
	const uint8_t *got = rc == 0 ? coffer_buffer_sink_data(back, &len) : NULL;
	bool same = rc == 0 && len == (size_t)blen && memcmp(got, body, len) == 0;
	coffer_filter_free(back);
	if (rc != 0) {
		add(r, "repository", COFFER_CHECK_CRITICAL,
		    "the agent's credentials must read what they write (GetObject on its prefix, "
		    "docs/S3.md); posix: the agent's user must read its service directory",
		    "%s repository: wrote the probe %s but cannot read it back: %s", type, key,
		    err.msg);
		return;
	}
	if (!same) {
		add(r, "repository", COFFER_CHECK_CRITICAL,
		    "find what rewrites objects between the agent and the store (a proxy, a "
		    "filesystem, another writer under this prefix)",
		    "%s repository: the probe %s read back differs from what was written (%zu "
		    "bytes, %d written)",
		    type, key, len, blen);
		return;
	}
	add(r, "repository", COFFER_CHECK_OK, NULL,
	    "%s repository: probe %s written, read back and compared; left in place, since "
	    "agents have no delete right (docs/S3.md)",
	    type, key);

	if (r->cfg->repo_dr.present) {
		coffer_repo *dr = NULL;
		coffer_repo_info info;
		rc = agent_repo_open(r->cfg, "dr", AGENT_NEED_REPO, &dr, &err);
		if (rc == 0) {
			rc = coffer_repo_stat(dr, key, &info, &err);
			rc = rc == COFFER_ENOENT ? 0 : rc;
		}
		if (rc != 0) {
			add(r, "repository_dr", COFFER_CHECK_WARNING,
			    err.hint[0] != '\0' ? err.hint
			                        : "check [repository.dr]; restores from DR need it",
			    "DR repository not readable: %s", err.msg);
		} else {
			add(r, "repository_dr", COFFER_CHECK_OK, NULL,
			    "DR repository answers a read (the agent only reads it: restores)");
		}
		coffer_repo_close(dr);
	}
}

/* ---- coordinator ---- */

static void
check_coordinator(check_run *r)
{
	if (!r->cfg->coordinator_present) {
		add(r, "coordinator", COFFER_CHECK_WARNING,
		    "add [coordinator] url, ca, cert and key (docs/CONFIGURATION.md)",
		    "no [coordinator]: events stay in the outbox and nobody is paged when a backup "
		    "or archiving fails");
		return;
	}
	coffer_tls_files files = {
		.ca = r->cfg->coordinator_ca,
		.cert = r->cfg->coordinator_cert,
		.key = r->cfg->coordinator_key,
	};
	coffer_err err = { 0 };
	if (files.cert != NULL) {
		int64_t not_after = 0;
		char which[512] = "";
		if (coffer_tlsconf_expiry(&files, &not_after, which, sizeof(which), &err) != 0) {
			add_err(r, "tls", COFFER_CHECK_CRITICAL, &err, NULL);
		} else {
			int64_t left = not_after - coffer_clock_now(NULL);
			char at[40], in[40];
			coffer_time_format(at, sizeof(at), not_after);
			coffer_checklist_duration(in, sizeof(in), left > 0 ? left : -left);
			if (left <= 0) {
				add(r, "tls", COFFER_CHECK_CRITICAL,
				    "issue a new certificate (deploy/certs.sh) and restart the agent",
				    "the %s expired at %s (%s ago)", which, at, in);
			} else if (left < CERT_WARN_MS) {
				add(r, "tls", COFFER_CHECK_WARNING,
				    "issue a new certificate (deploy/certs.sh) before it expires",
				    "the %s expires at %s, in %s", which, at, in);
			} else {
				add(r, "tls", COFFER_CHECK_OK, NULL,
				    "certificates valid; the first to expire is the %s, at %s",
				    which, at);
			}
		}
	}
	if (r->sign_key == NULL) {
		add(r, "coordinator", COFFER_CHECK_CRITICAL, "fix the signing_key check first",
		    "no signing key, so no request to %s can be signed", r->cfg->coordinator_url);
		return;
	}
	if (r->foreign) {
		add(r, "coordinator", COFFER_CHECK_WARNING, "run the check as the agent's user",
		    "no hello sent as another user than %s (it records the envelope seq in "
		    "state_dir)",
		    r->owner);
		return;
	}
	agent_ctx ctx = { .cfg = r->cfg, .ring = r->ring, .sign_key = r->sign_key };
	agent_sender_ping_result pr;
	if (agent_sender_ping(&ctx, PING_TIMEOUT_MS, &pr, &err) != 0) {
		add(r, "coordinator", COFFER_CHECK_CRITICAL,
		    err.hint[0] != '\0' ? err.hint
		                        : "check that the coordinator runs, that [coordinator] url "
		                          "reaches it, and the certificates (ca, cert, key)",
		    "%s: no answer to a signed hello over %s: %s", r->cfg->coordinator_url,
		    strncmp(r->cfg->coordinator_url, "tls+", 4) == 0 ? "mutual TLS" : "plain TCP",
		    err.msg);
		return;
	}
	add(r, "coordinator", COFFER_CHECK_OK, NULL,
	    "%s answered a signed hello as agent %s over %s in %" PRId64 " ms",
	    r->cfg->coordinator_url, r->cfg->name,
	    strncmp(r->cfg->coordinator_url, "tls+", 4) == 0 ? "mutual TLS" : "plain TCP",
	    pr.rtt_ms);
	if (pr.server_time_ms == 0) {
		add(r, "clock", COFFER_CHECK_WARNING, "upgrade the coordinator",
		    "the coordinator's reply carries no time (an older coordinator): clock skew "
		    "not measured");
		return;
	}
	/* The coordinator read its clock somewhere between our send and our
	 * receipt: against the midpoint, the error is at most half the round
	 * trip. */
	int64_t mid = pr.sent_ms + (pr.received_ms - pr.sent_ms) / 2;
	int64_t skew = mid - pr.server_time_ms;
	int64_t mag = skew < 0 ? -skew : skew;
	char skewtext[40], bound[40];
	coffer_checklist_duration(skewtext, sizeof(skewtext), mag);
	coffer_checklist_duration(bound, sizeof(bound), r->max_skew_ms);
	char phrase[64];
	snprintf(phrase, sizeof(phrase), "%s %s", skewtext, skew > 0 ? "ahead of" : "behind");
	if (mag < 1000) {
		snprintf(phrase, sizeof(phrase), "within 1s of");
	}
	coffer_check_status st = mag > r->max_skew_ms ? COFFER_CHECK_CRITICAL
	    : mag > r->max_skew_ms / 2                ? COFFER_CHECK_WARNING
	                                              : COFFER_CHECK_OK;
	add(r, "clock", st,
	    st == COFFER_CHECK_OK
	        ? NULL
	        : "synchronise this host's clock (timedatectl, chronyc tracking): backup times, "
	          "PITR targets and the coordinator's alerts read it",
	    "this host\'s clock is %s the coordinator's (+/- %" PRId64
	    " ms, half the round trip; bound %s)",
	    phrase, pr.rtt_ms / 2 + 1, bound);
}

int
agent_cmd_check(const coffer_cmd *cmd, int argc, char **argv)
{
	const char *config = NULL, *output = NULL, *timeout = "60s", *max_skew = "120s";
	const coffer_opt opts[] = {
		{ "config", 'c', &config, NULL },
		{ "output", 'o', &output, NULL },
		{ "timeout", 0, &timeout, NULL },
		{ "max-skew", 0, &max_skew, NULL },
		{ NULL, 0, NULL, NULL },
	};
	int npos = 0;
	int rv = coffer_opts_parse(coffer_cli_current(), cmd, opts, argc, argv, &npos);
	if (rv != 0) {
		return (rv > 0 ? 0 : 2);
	}
	if (npos > 0) {
		return (coffer_cli_usage_error(cmd, "unexpected argument %s", argv[0]));
	}
	if (config == NULL) {
		return (coffer_cli_usage_error(cmd, "-c FILE is required"));
	}
	if (output != NULL && strcmp(output, "json") != 0 && strcmp(output, "text") != 0) {
		return (
		    coffer_cli_usage_error(cmd, "--output must be text or json, not '%s'", output));
	}
	check_run r;
	memset(&r, 0, sizeof(r));
	if (coffer_duration_parse(timeout, 0, &r.timeout_ms) != 0 || r.timeout_ms <= 0) {
		return (coffer_cli_usage_error(
		    cmd, "--timeout must be a duration like 60s or 2m, not '%s'", timeout));
	}
	if (coffer_duration_parse(max_skew, 0, &r.max_skew_ms) != 0 || r.max_skew_ms <= 0) {
		return (coffer_cli_usage_error(
		    cmd, "--max-skew must be a duration like 120s, not '%s'", max_skew));
	}
	/* Results are the output; the modules' own log lines would only
	 * repeat them on stderr. */
	coffer_log_init("coffer-agent", COFFER_LOG_ERROR);
	coffer_checklist_init(&r.cl, output != NULL && strcmp(output, "json") == 0);
	r.config_path = config;
	if (gethostname(r.host, sizeof(r.host) - 1) != 0 || r.host[0] == '\0') {
		snprintf(r.host, sizeof(r.host), "host");
	}
	for (char *p = r.host; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') || *p == '-' || *p == '_')) {
			*p = '_';
		}
	}

	coffer_err err = { 0 };
	if (agent_config_load(config, &r.cfg, &err) != 0) {
		add_err(&r, "config", COFFER_CHECK_CRITICAL, &err, NULL);
		return (coffer_checklist_end(&r.cl));
	}
	if (r.cfg->drill_runner) {
		add(&r, "config", COFFER_CHECK_OK, NULL,
		    "%s loaded: drill runner %s (PostgreSQL, archiving and a service repository are "
		    "not a drill runner's)",
		    config, r.cfg->name);
	} else {
		add(&r, "config", COFFER_CHECK_OK, NULL, "%s loaded: agent %s of service %s%s",
		    config, r.cfg->name, r.cfg->service,
		    physical_configured(r.cfg) ? ", logical and physical backups scheduled"
		                               : ", logical backups scheduled");
	}
	if (!r.cfg->drill_runner) {
		check_keyring(&r);
	}
	check_signing_key(&r);
	check_state_dir(&r);
	if (!r.foreign) {
		check_outbox(&r);
	}
	if (!r.cfg->drill_runner) {
		check_repository(&r);
		check_postgres(&r);
		if (r.pg != NULL && check_archiving(&r)) {
			check_archiver(&r);
		}
	}
	check_coordinator(&r);

	if (r.pg != NULL) {
		PQfinish(r.pg);
	}
	coffer_repo_close(r.repo);
	coffer_sign_key_free(r.sign_key);
	coffer_keyring_free(r.ring);
	agent_config_free(r.cfg);
	return (coffer_checklist_end(&r.cl));
}
