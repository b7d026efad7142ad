/*
 * Driver for tests/integration/prune.sh: retention's catalog side against a
 * real catalog and a real posix repository, over 60 simulated days.
 *
 *   prune_itest run CONF_A CONF_B CONF_C REPO_DIR
 *
 * CONF_A: [service.billing] daily = 7, min_redundancy = 2, grace = 3d, and
 * [service.ledger] daily = 1, min_redundancy = 1. CONF_B: billing as in A,
 * no ledger. CONF_C: billing with daily = 14. All use the same catalog and
 * audit key. Days 0-1 run under A, 2-39 under B, 40-49 under C, 50-59
 * under B again.
 *
 * Every day one billing backup lands at 02:00 UTC (objects manifest.json
 * and data written through coffer_repo; days 10, 26 and 44 fail and write
 * nothing), then a pass runs at 12:00 with the injected time. A small model
 * written here, independent of coordinator/policy/retention.c (daily tier, floor of
 * the newest two successful, holds, grace, one backup a day, UTC), says
 * what each backup's row and objects must be after each pass, and what the
 * pass must count; the driver compares every backup every day. Then:
 * audit rows against the model's totals and policy versions, the plan,
 * hold refusals, and the ledger service whose section vanished (its
 * backups stay). Prints "ok ..." lines; exits 1 on the first mismatch.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <libpq-fe.h>

#include "common/base/error.h"
#include "common/repo/repo.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/policy/prune.h"

#define NDAYS   60
#define DAY_MS  (24LL * 3600 * 1000)
#define HOUR_MS (3600LL * 1000)
/* 2026-03-02T00:00:00Z */
#define T0         1772409600000LL
#define GRACE_DAYS 3
/* billing-005's DR copy is due (coordinator/dr/drcopy.c) from the day it
 * lands until this day: its deletion, due on day 15, waits until then. */
#define DR_K         5
#define DR_CLEAR_DAY 18

enum mstate {
	M_NONE,
	M_COMPLETED,
	M_FAILED,
	M_PENDING,
	M_DELETED
};

typedef struct mbackup {
	enum mstate st;
	bool failed; /* a failed backup */
	bool held;
	bool manifest;   /* its manifest.json is in the repository */
	bool data;       /* and its data */
	int pending_day; /* -1 when not pending */
	int attempts;    /* failed deletion attempts */
	char outcome[8]; /* "deleted" / "gone" once deleted */
} mbackup;

static mbackup model[NDAYS];
static PGconn *conn;
static coffer_repo *repo_rw, *repo_nodelete;
static coord_catalog *cat;
static coord_audit_key akey;

/* Model totals, to compare with the audit log. */
/* The backup whose data file is made immutable (chattr +i) for one pass,
 * so the filesystem itself refuses the deletion after manifest.json is
 * gone; -1 when the filesystem cannot do that. */
static int immut_k = -1;
#define IMMUT_DAY 35

static int total_marked, total_cancelled, total_deleted, total_failed_del, marked_under_c;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#include <stdarg.h>

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "prune_itest: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void
check_rc(int rc, const coffer_err *e, const char *what)
{
	if (rc != 0) {
		die("%s: %s (hint: %s)", what, e->msg, e->hint);
	}
}

static PGresult *
sql(const char *q, int n, const char *const *vals)
{
	PGresult *r = PQexecParams(conn, q, n, NULL, vals, NULL, NULL, 0);
	ExecStatusType s = PQresultStatus(r);
	if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
		die("sql %s: %s", q, PQerrorMessage(conn));
	}
	return (r);
}

static long long
sql_int(const char *q, int n, const char *const *vals)
{
	PGresult *r = sql(q, n, vals);
	long long v = PQntuples(r) > 0 ? atoll(PQgetvalue(r, 0, 0)) : -1;
	PQclear(r);
	return (v);
}

static void
backup_id(char *buf, size_t size, const char *service, int k)
{
	snprintf(buf, size, "%s-%03d", service, k);
}

static void
put_object(const char *service, const char *id, const char *name, const char *text)
{
	char key[COFFER_REPO_KEY_MAX];
	coffer_err e;
	coffer_filter *sink = NULL;
	check_rc(coffer_repo_backup_key(key, sizeof(key), service, id, name, &e), &e, "key");
	check_rc(coffer_repo_write_begin(repo_rw, key, &sink, &e), &e, "write begin");
	check_rc(coffer_filter_write(sink, text, strlen(text), &e), &e, "write");
	check_rc(coffer_filter_finish(sink, &e), &e, "finish");
	check_rc(coffer_repo_write_commit(sink, &e), &e, "commit");
	coffer_filter_free(sink);
}

static bool
has_object(const char *service, const char *id, const char *name)
{
	char key[COFFER_REPO_KEY_MAX];
	coffer_err e;
	coffer_repo_info info;
	check_rc(coffer_repo_backup_key(key, sizeof(key), service, id, name, &e), &e, "key");
	int rc = coffer_repo_stat(repo_rw, key, &info, &e);
	if (rc != 0 && rc != COFFER_ENOENT) {
		die("stat %s: %s", key, e.msg);
	}
	return (rc == 0);
}

/* A backup row as intake would leave it, with a coordinator time of at_ms. */
static void
insert_backup(const char *service, int k, int64_t at_ms, bool failed)
{
	char id[64], at[24], start[24];
	backup_id(id, sizeof(id), service, k);
	snprintf(at, sizeof(at), "%" PRId64, at_ms);
	snprintf(start, sizeof(start), "%" PRId64, at_ms - 10 * 60 * 1000);
	const char *v[] = { id, service, start, at };
	if (failed) {
		PQclear(
		    sql("INSERT INTO backups (id, service, kind, status, started_at, finished_at, "
		        "settled_at, failure_reason) VALUES ($1, $2, 'logical', 'failed', "
		        "timestamptz 'epoch' + $3::bigint * interval '1 ms', "
		        "timestamptz 'epoch' + $4::bigint * interval '1 ms', "
		        "timestamptz 'epoch' + $4::bigint * interval '1 ms', 'pg_dump exited 1')",
		        4, v));
		return;
	}
	PQclear(sql("INSERT INTO backups (id, service, kind, status, started_at, finished_at, "
	            "settled_at, stored_bytes, stored_sha256, manifest, key_id, verify_state, "
	            "verified_at) VALUES ($1, $2, "
	            "'logical', 'completed', timestamptz 'epoch' + $3::bigint * interval '1 ms', "
	            "timestamptz 'epoch' + $4::bigint * interval '1 ms', "
	            "timestamptz 'epoch' + $4::bigint * interval '1 ms', 4, "
	            "decode(repeat('ab', 32), 'hex'), '{}', 'k1', 'verified', now())",
	    4, v));
	put_object(service, id, "data", "data");
	put_object(service, id, "manifest.json", "{\"service\":\"x\"}");
}

static int
window_days(int day)
{
	return (day >= 40 && day < 50 ? 14 : 7);
}

static bool
denied_day(int day)
{
	return (day == 25 || day == 26);
}

typedef struct mstats {
	int marked, cancelled, deleted, gone, failed;
} mstats;

/* The model's pass at the given day (after that day's backup landed). */
static mstats
model_pass(int day)
{
	mstats s = { 0 };
	int w = window_days(day);
	int floor_left = 2;
	bool kept[NDAYS] = { false };
	for (int k = day; k >= 0; k--) {
		mbackup *b = &model[k];
		if (b->st == M_DELETED || b->st == M_NONE) {
			continue;
		}
		bool ok = !b->failed;
		if (b->held) {
			kept[k] = true;
		}
		if (ok && k >= day - (w - 1)) {
			kept[k] = true;
		}
		if (ok && floor_left > 0) {
			kept[k] = true;
			floor_left--;
		}
	}
	for (int k = 0; k <= day; k++) {
		mbackup *b = &model[k];
		if (b->st == M_DELETED || b->st == M_NONE) {
			continue;
		}
		if (kept[k]) {
			if (b->st == M_PENDING) {
				b->st = b->failed ? M_FAILED : M_COMPLETED;
				b->pending_day = -1;
				s.cancelled++;
			}
			continue;
		}
		if (b->st != M_PENDING) {
			b->st = M_PENDING;
			b->pending_day = day;
			s.marked++;
			if (window_days(day) == 14) {
				marked_under_c++;
			}
			continue;
		}
		if (day < b->pending_day + GRACE_DAYS) {
			continue;
		}
		if (k == DR_K && day < DR_CLEAR_DAY) {
			continue; /* its DR copy reads from it: waits, uncounted */
		}
		if (denied_day(day)) {
			b->attempts++;
			s.failed++;
			continue;
		}
		if (k == immut_k && day == IMMUT_DAY) {
			/* manifest.json goes first, then data is refused. */
			b->manifest = false;
			b->attempts++;
			s.failed++;
			continue;
		}
		b->st = M_DELETED;
		bool any = b->manifest || b->data;
		snprintf(b->outcome, sizeof(b->outcome), "%s", any ? "deleted" : "gone");
		if (any) {
			s.deleted++;
		} else {
			s.gone++;
		}
		b->manifest = b->data = false;
	}
	total_marked += s.marked;
	total_cancelled += s.cancelled;
	total_deleted += s.deleted + s.gone;
	total_failed_del += s.failed;
	return (s);
}

static const char *
mstate_name(enum mstate s)
{
	switch (s) {
	case M_COMPLETED:
		return ("completed");
	case M_FAILED:
		return ("failed");
	case M_PENDING:
		return ("pending_delete");
	case M_DELETED:
		return ("deleted");
	case M_NONE:
		break;
	}
	return ("none");
}

/* Compares every billing backup with the model. */
static void
compare(int day)
{
	const char *v[] = { "billing" };
	PGresult *r = sql("SELECT id, status, COALESCE(delete_outcome, ''), delete_attempts, "
	                  "pending_since IS NOT NULL FROM backups WHERE service = $1 ORDER BY id",
	    1, v);
	if (PQntuples(r) != day + 1) {
		die("day %d: %d billing rows, want %d", day, PQntuples(r), day + 1);
	}
	for (int k = 0; k <= day; k++) {
		mbackup *b = &model[k];
		const char *id = PQgetvalue(r, k, 0), *st = PQgetvalue(r, k, 1);
		if (strcmp(st, mstate_name(b->st)) != 0) {
			die("day %d: %s is %s, the model says %s", day, id, st, mstate_name(b->st));
		}
		if (b->st == M_DELETED && strcmp(PQgetvalue(r, k, 2), b->outcome) != 0) {
			die("day %d: %s deleted as \"%s\", the model says \"%s\"", day, id,
			    PQgetvalue(r, k, 2), b->outcome);
		}
		if (atoi(PQgetvalue(r, k, 3)) != b->attempts) {
			die("day %d: %s has %s failed deletion attempts, the model says %d", day,
			    id, PQgetvalue(r, k, 3), b->attempts);
		}
		bool m = has_object("billing", id, "manifest.json");
		bool d = has_object("billing", id, "data");
		if (m != b->manifest || d != b->data) {
			die("day %d: %s objects manifest=%d data=%d, the model says %d %d", day, id,
			    m, d, b->manifest, b->data);
		}
	}
	PQclear(r);
}

static void
hold(const char *id, bool add)
{
	coffer_err e;
	int rc = add ? coord_hold_add(cat, &akey, "alice", id, "case 4711", &e)
	             : coord_hold_remove(cat, &akey, "carol", id, &e);
	check_rc(rc, &e, add ? "hold add" : "hold remove");
	int k = atoi(strchr(id, '-') + 1);
	model[k].held = add;
}

static void
expect_code(int rc, int want, const coffer_err *e, const char *what)
{
	if (rc != want) {
		die("%s: got %d (%s), want %d", what, rc, e->msg, want);
	}
	if (e->msg[0] == '\0' || e->hint[0] == '\0') {
		die("%s: error without message or hint", what);
	}
	printf("ok   %s: %s\n", what, e->msg);
}

static long long
audit_count(const char *action, const char *extra)
{
	char q[512];
	snprintf(q, sizeof(q), "SELECT count(*) FROM audit WHERE action = $1 %s", extra);
	const char *v[] = { action };
	return (sql_int(q, 1, v));
}

static coord_config *
load(const char *path)
{
	coord_config *c = NULL;
	coffer_err e;
	check_rc(coord_config_load(path, &c, &e), &e, path);
	return (c);
}

/* chattr +i on the data file of a backup due for deletion at IMMUT_DAY
 * (set), or -i on it again. Returns the backup's index, or -1 when the
 * filesystem has no immutable flag (the case is then skipped). */
static int
immutable_pick(const char *repo_dir, bool set)
{
	static int k = -1;
	if (set) {
		for (int i = 0; i < NDAYS && k < 0; i++) {
			if (model[i].st == M_PENDING &&
			    model[i].pending_day + GRACE_DAYS == IMMUT_DAY && model[i].data &&
			    !model[i].held) {
				k = i;
			}
		}
		if (k < 0) {
			die("no backup is due on day %d", IMMUT_DAY);
		}
	}
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
	    "chattr %ci '%s/services/billing/backups/billing-%03d/data' "
	    "2>/dev/null",
	    set ? '+' : '-', repo_dir, k);
	if (system(cmd) != 0) {
		if (set) {
			printf("--   this filesystem has no immutable flag: the partial deletion "
			       "case is skipped\n");
			return (-1);
		}
		die("chattr -i failed");
	}
	return (k);
}

static void
classify_checks(void)
{
	coffer_err e;
	coffer_err_set(&e, COFFER_EPERM,
	    "s3 DeleteObject: AccessDenied: Access Denied because "
	    "object protected by object lock");
	if (coord_prune_classify(COFFER_EPERM, &e) != COORD_PRUNE_LOCKED) {
		die("an object-lock refusal is not classified as locked");
	}
	coffer_err_set(&e, COFFER_EPERM, "s3 DeleteObject: AccessDenied: Access Denied");
	if (coord_prune_classify(COFFER_EPERM, &e) != COORD_PRUNE_DENIED) {
		die("AccessDenied is not classified as denied");
	}
	if (coord_prune_classify(COFFER_ENOENT, &e) != COORD_PRUNE_GONE ||
	    coord_prune_classify(COFFER_EIO, &e) != COORD_PRUNE_ERROR ||
	    coord_prune_classify(0, &e) != COORD_PRUNE_DELETED) {
		die("deletion outcomes are not distinct");
	}
	printf("ok   deletion outcomes: deleted, gone, denied, locked, error are distinct\n");
}

int
main(int argc, char **argv)
{
	if (argc != 6 || strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "usage: prune_itest run CONF_A CONF_B CONF_C REPO_DIR\n");
		return (2);
	}
	classify_checks();
	coord_config *conf[3] = { load(argv[2]), load(argv[3]), load(argv[4]) };
	coffer_err e;
	cat = coord_catalog_open(conf[0]->catalog, &e);
	if (cat == NULL) {
		die("catalog: %s", e.msg);
	}
	conn = coord_catalog_conn(cat);
	check_rc(coord_audit_key_load(conf[0]->audit_key, &akey, &e), &e, "audit key");
	coffer_repo_config rc = { .type = "posix", .path = argv[5] };
	check_rc(coffer_repo_open(
	             &rc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, &repo_rw, &e),
	    &e, "repo");
	check_rc(coffer_repo_open(&rc, COFFER_REPO_READ | COFFER_REPO_WRITE, &repo_nodelete, &e),
	    &e, "repo without delete");
	const coord_service_policy *pb = coord_config_service(conf[1], "billing");
	const coord_service_policy *pc = coord_config_service(conf[2], "billing");
	if (pb == NULL || pc == NULL || strcmp(pb->version, pc->version) == 0 ||
	    strcmp(pb->version, coord_config_service(conf[0], "billing")->version) != 0) {
		die("configs: billing must be the same policy in A and B, another in C");
	}

	/* The ledger's three backups predate the test: under daily = 1 and a
	 * floor of 1 the two older ones go pending on day 0. */
	check_rc(coord_policy_sync(cat, &akey, "coordinator", conf[0], &e), &e, "sync");
	for (int k = 0; k < 3; k++) {
		insert_backup("ledger", k, T0 - (10 - k) * DAY_MS, false);
	}
	for (int k = 0; k < NDAYS; k++) {
		model[k].pending_day = -1;
	}
	coord_config *cfg = conf[0];
	for (int day = 0; day < NDAYS; day++) {
		if (day == 2 || day == 50) {
			cfg = conf[1];
		} else if (day == 40) {
			cfg = conf[2];
		}
		bool failed = day == 10 || day == 26 || day == 44;
		insert_backup("billing", day, T0 + day * DAY_MS + 2 * HOUR_MS, failed);
		model[day].st = failed ? M_FAILED : M_COMPLETED;
		model[day].failed = failed;
		model[day].manifest = model[day].data = !failed;
		if (day == DR_K) {
			PQclear(PQexec(conn,
			    "INSERT INTO backup_copies (backup_id, repo, status) "
			    "VALUES ('billing-005', 'dr', 'copying')"));
		} else if (day == DR_CLEAR_DAY) {
			PGresult *r = PQexec(conn,
			    "UPDATE backup_copies SET status = 'verified', "
			    "stored_sha256 = sha256('x'), finished_at = now() "
			    "WHERE backup_id = 'billing-005'");
			if (PQresultStatus(r) != PGRES_COMMAND_OK ||
			    strcmp(PQcmdTuples(r), "1") != 0) {
				die("cannot mark billing-005's DR copy verified: %s",
				    PQerrorMessage(conn));
			}
			PQclear(r);
		}
		if (day == 3) {
			hold("billing-002", true);
		} else if (day == 20) {
			hold("billing-012", true); /* pending since day 19: comes back */
		} else if (day == 22) {
			hold("billing-012", false);
		} else if (day == 28) {
			/* Someone removed backup 20's objects: its deletion finds
			 * nothing and is recorded as gone. */
			char key[COFFER_REPO_KEY_MAX];
			check_rc(coffer_repo_backup_key(key, sizeof(key), "billing", "billing-020",
			             "manifest.json", &e),
			    &e, "key");
			check_rc(coffer_repo_delete(repo_rw, key, &e), &e, "delete by hand");
			check_rc(coffer_repo_backup_key(
			             key, sizeof(key), "billing", "billing-020", "data", &e),
			    &e, "key");
			check_rc(coffer_repo_delete(repo_rw, key, &e), &e, "delete by hand");
			model[20].manifest = model[20].data = false;
		} else if (day == 30) {
			hold("billing-002", false);
		} else if (day == IMMUT_DAY - 1) {
			immut_k = immutable_pick(argv[5], true);
		} else if (day == IMMUT_DAY + 1 && immut_k >= 0) {
			immutable_pick(argv[5], false);
		}
		mstats want = model_pass(day);
		if (day == 0) {
			want.marked += 2; /* the ledger's two older backups */
		}
		coord_prune_stats st;
		int rv =
		    coord_retention_pass(cat, &akey, cfg, denied_day(day) ? repo_nodelete : repo_rw,
		        T0 + day * DAY_MS + 12 * HOUR_MS, &st, &e);
		check_rc(rv, &e, "retention pass");
		if ((int)st.marked != want.marked || (int)st.cancelled != want.cancelled ||
		    (int)st.deleted != want.deleted || (int)st.gone != want.gone ||
		    (int)st.failed != want.failed || (int)st.denied != want.failed ||
		    st.service_errors != 0) {
			die("day %d: pass counted marked %zu cancelled %zu deleted %zu gone %zu failed "
			    "%zu denied %zu; the model says %d %d %d %d %d",
			    day, st.marked, st.cancelled, st.deleted, st.gone, st.failed, st.denied,
			    want.marked, want.cancelled, want.deleted, want.gone, want.failed);
		}
		compare(day);
	}
	printf("ok   60 days: every backup's row and objects matched the model after every pass "
	       "(%d marked, %d cancelled, %d deleted, %d failed attempts)\n",
	    total_marked, total_cancelled, total_deleted, total_failed_del);
	printf("ok   billing-%03d waited for its due DR copy: deleted on day %d, not on day 15\n",
	    DR_K, DR_CLEAR_DAY);
	if (immut_k >= 0) {
		printf("ok   billing-%03d: manifest.json deleted first, data refused by the "
		       "filesystem (EPERM): stayed pending, retried and deleted the next day\n",
		    immut_k);
	}
	if (total_cancelled < 4 || total_failed_del < 2 || marked_under_c == 0) {
		die("the scenario did not exercise cancel/failure/policy C (%d %d %d)",
		    total_cancelled, total_failed_del, marked_under_c);
	}

	/* The audit log tells the same story, each decision with its policy. */
	if (audit_count("backup.pending_delete", "AND subject LIKE 'billing-%'") != total_marked ||
	    audit_count("backup.pending_cancelled", "") != total_cancelled ||
	    audit_count("backup.deleted", "") != total_deleted ||
	    audit_count("backup.delete_failed", "AND details->>'outcome' = 'denied'") !=
	        total_failed_del) {
		die("audit rows differ from the model: pending %lld/%d cancelled %lld/%d deleted "
		    "%lld/%d failed %lld/%d",
		    audit_count("backup.pending_delete", "AND subject LIKE 'billing-%'"),
		    total_marked, audit_count("backup.pending_cancelled", ""), total_cancelled,
		    audit_count("backup.deleted", ""), total_deleted,
		    audit_count("backup.delete_failed", ""), total_failed_del);
	}
	char extra[512];
	snprintf(extra, sizeof(extra),
	    "AND subject LIKE 'billing-%%' AND details->>'policy_version' = '%s'", pc->version);
	if (audit_count("backup.pending_delete", extra) != marked_under_c) {
		die("pending marks made under policy C do not name its version");
	}
	snprintf(extra, sizeof(extra),
	    "AND subject LIKE 'billing-%%' AND details->>'policy_version' NOT IN ('%s', '%s')",
	    pb->version, pc->version);
	if (audit_count("backup.pending_delete", extra) != 0 ||
	    audit_count("backup.deleted", extra) != 0 ||
	    audit_count("backup.deleted", "AND details->>'policy_serial' IS NULL") != 0) {
		die("a deletion audit row lacks the policy version");
	}
	printf("ok   audit: %d pending, %d cancelled, %d deleted, %d failed, each with its policy "
	       "version\n",
	    total_marked, total_cancelled, total_deleted, total_failed_del);
	if (audit_count("policy.changed", "AND subject = 'billing'") != 3 ||
	    audit_count("policy.changed", "AND subject = 'ledger'") != 1 ||
	    audit_count("policy.removed", "AND subject = 'ledger'") != 1) {
		die("policy audit rows: billing changed %lld (want 3), ledger changed %lld, removed "
		    "%lld (want 1, 1)",
		    audit_count("policy.changed", "AND subject = 'billing'"),
		    audit_count("policy.changed", "AND subject = 'ledger'"),
		    audit_count("policy.removed", "AND subject = 'ledger'"));
	}
	snprintf(extra, sizeof(extra),
	    "AND subject = 'billing' AND details->>'old_version' = '%s' "
	    "AND details->>'new_version' = '%s' AND details->>'policy' LIKE '%%retention.daily=14%%'",
	    pb->version, pc->version);
	if (audit_count("policy.changed", extra) != 1) {
		die("the change to policy C is not audited with old and new digest and its text");
	}
	const char *sv[] = { "billing" };
	if (sql_int("SELECT policy_version FROM services WHERE name = $1", 1, sv) != 3) {
		die("billing's policy serial is not 3 after three policies");
	}
	printf("ok   policy changes audited with old and new digest; ledger's removal audited "
	       "once\n");

	/* A service that left the configuration keeps its backups, even those
	 * that were pending: nothing is deleted because a section vanished. */
	const char *lv[] = { "ledger" };
	if (sql_int("SELECT count(*) FROM backups WHERE service = $1 AND status = 'pending_delete'",
	        1, lv) != 2 ||
	    sql_int("SELECT count(*) FROM backups WHERE service = $1 AND status = 'deleted'", 1,
	        lv) != 0 ||
	    !has_object("ledger", "ledger-000", "manifest.json")) {
		die("ledger's backups were touched after its section was removed");
	}
	printf("ok   a service removed from the configuration keeps its backups\n");

	/* The plan: what the next pass would do, changing nothing. */
	long long audit_before = sql_int("SELECT count(*) FROM audit", 0, NULL);
	int64_t last = T0 + (NDAYS - 1) * DAY_MS + 12 * HOUR_MS;
	cJSON *plan = NULL;
	check_rc(coord_retention_plan(cat, conf[1], "billing", last + 4 * DAY_MS, &plan, &e), &e,
	    "plan");
	cJSON *list = cJSON_GetObjectItem(plan, "backups");
	int live = 0, deletes = 0;
	for (int k = 0; k < NDAYS; k++) {
		live += model[k].st != M_DELETED;
		deletes += model[k].st == M_PENDING;
	}
	int got_del = 0, got_keep = 0, got_expire = 0;
	cJSON *b;
	cJSON_ArrayForEach(b, list)
	{
		const char *a = cJSON_GetStringValue(cJSON_GetObjectItem(b, "action"));
		int nreasons = cJSON_GetArraySize(cJSON_GetObjectItem(b, "reasons"));
		if (strcmp(a, "delete") == 0 &&
		    cJSON_IsString(cJSON_GetObjectItem(b, "delete_at"))) {
			got_del++;
		} else if (strcmp(a, "keep") == 0 && nreasons > 0) {
			got_keep++;
		} else if (strcmp(a, "expire_now") == 0 && nreasons == 0) {
			got_expire++;
		} else {
			die("plan entry %s", cJSON_PrintUnformatted(b));
		}
	}
	if (cJSON_GetArraySize(list) != live || got_del != deletes || got_keep < 2 ||
	    !cJSON_IsTrue(cJSON_GetObjectItem(plan, "policy_synced")) ||
	    sql_int("SELECT count(*) FROM audit", 0, NULL) != audit_before) {
		die("plan: %d entries (want %d), %d deletes (want %d), %d keeps, or it changed the "
		    "catalog",
		    cJSON_GetArraySize(list), live, got_del, deletes, got_keep);
	}
	cJSON_Delete(plan);
	printf("ok   plan four days ahead: %d to delete, %d to expire, %d kept with reasons; "
	       "nothing changed\n",
	    got_del, got_expire, got_keep);
	expect_code(coord_retention_plan(cat, conf[1], "nosuch", last, &plan, &e), COFFER_ENOENT,
	    &e, "plan for an unknown service is refused");

	/* Hold refusals. */
	expect_code(coord_hold_add(cat, &akey, "alice", "no-such-backup", "x", &e), COFFER_ENOENT,
	    &e, "hold on an unknown backup is refused");
	expect_code(coord_hold_add(cat, &akey, "alice", "billing-058", "  ", &e), COFFER_EINVAL, &e,
	    "hold with an empty reason is refused");
	expect_code(coord_hold_add(cat, &akey, "alice", "billing-000", "late", &e), COFFER_EREFUSED,
	    &e, "hold on a deleted backup is refused");
	check_rc(
	    coord_hold_add(cat, &akey, "alice", "billing-058", "audit 2026", &e), &e, "hold add");
	expect_code(coord_hold_add(cat, &akey, "bob", "billing-058", "again", &e), COFFER_EEXIST,
	    &e, "a second active hold is refused");
	cJSON *holds = NULL;
	check_rc(coord_holds_list(cat, "billing", 100, &holds, &e), &e, "holds list");
	if (cJSON_GetArraySize(holds) != 1 ||
	    strcmp(cJSON_GetStringValue(
	               cJSON_GetObjectItem(cJSON_GetArrayItem(holds, 0), "backup_id")),
	        "billing-058") != 0) {
		die("holds list: %s", cJSON_PrintUnformatted(holds));
	}
	cJSON_Delete(holds);
	expect_code(coord_hold_remove(cat, &akey, "alice", "billing-058", &e), COFFER_EPERM, &e,
	    "whoever placed a hold may not release it");
	check_rc(coord_hold_remove(cat, &akey, "carol", "billing-058", &e), &e, "hold remove");
	expect_code(coord_hold_remove(cat, &akey, "carol", "billing-058", &e), COFFER_ENOENT, &e,
	    "removing a hold that is not there is refused");
	if (audit_count("hold.added", "") != 3 || audit_count("hold.removed", "") != 3) {
		die("hold audit rows: added %lld removed %lld, want 3 and 3",
		    audit_count("hold.added", ""), audit_count("hold.removed", ""));
	}
	printf("ok   holds audited: 3 added, 3 removed\n");

	/* The re-check before a deletion. A trigger stands in for a writer
	 * that changes the catalog between the decision and the deletion: when
	 * the pass marks the day's obsolete backup, it places a hold on the
	 * backup due for deletion (day 60), or marks every newer backup corrupt
	 * (day 61). Both deletions must be refused and audited, the objects
	 * kept. */
	PQclear(sql("CREATE FUNCTION test_race() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
	            "IF NEW.action = 'backup.pending_delete' AND NEW.subject = 'billing-053' THEN "
	            "INSERT INTO holds (backup_id, reason, placed_by) VALUES ('billing-050', "
	            "'raced', 'test'); END IF; "
	            "IF NEW.action = 'backup.pending_delete' AND NEW.subject = 'billing-054' THEN "
	            "UPDATE backups SET verify_failed_at = now() WHERE service = 'billing' AND "
	            "id > 'billing-051' AND status = 'completed'; END IF; RETURN NULL; END $$",
	    0, NULL));
	PQclear(sql("CREATE TRIGGER test_race AFTER INSERT ON audit FOR EACH ROW "
	            "EXECUTE FUNCTION test_race()",
	    0, NULL));
	const char *want_refused[] = { "held", "newest_restorable" };
	for (int day = NDAYS; day < NDAYS + 2; day++) {
		coord_prune_stats st;
		check_rc(coord_retention_pass(cat, &akey, conf[1], repo_rw,
		             T0 + day * DAY_MS + 12 * HOUR_MS, &st, &e),
		    &e, "retention pass");
		char id[32], q[256];
		snprintf(id, sizeof(id), "billing-%03d", day - 10);
		snprintf(q, sizeof(q), "AND subject = '%s' AND details->>'refused' = '%s'", id,
		    want_refused[day - NDAYS]);
		const char *iv[] = { id };
		if (st.refused != 1 || st.deleted != 0 ||
		    audit_count("backup.delete_refused", q) != 1 ||
		    sql_int("SELECT count(*) FROM backups WHERE id = $1 AND status = "
		            "'pending_delete'",
		        1, iv) != 1 ||
		    !has_object("billing", id, "manifest.json") ||
		    !has_object("billing", id, "data")) {
			die("day %d: the deletion of %s was not refused for %s (refused %zu, deleted "
			    "%zu)",
			    day, id, want_refused[day - NDAYS], st.refused, st.deleted);
		}
		printf("ok   %s: changed between decision and deletion (%s): the locked re-check "
		       "refused it, audited, objects kept\n",
		    id, want_refused[day - NDAYS]);
	}
	PQclear(sql("DROP TRIGGER test_race ON audit", 0, NULL));

	/* A time the rule cannot place stops the service's evaluation: nothing
	 * is marked or deleted on a partial view, and the pass says why. */
	long long before = sql_int("SELECT count(*) FROM audit", 0, NULL);
	PQclear(sql(
	    "INSERT INTO backups (id, service, kind, status, started_at, finished_at, "
	    "settled_at, stored_bytes, stored_sha256, manifest, key_id, verify_state, verified_at) "
	    "VALUES ('billing-bad', "
	    "'billing', 'logical', 'completed', '0050-01-01 BC', '0050-01-01 BC', '0050-01-01 BC', "
	    "4, decode(repeat('ab', 32), 'hex'), '{}', 'k1', 'verified', now())",
	    0, NULL));
	coord_prune_stats st;
	int rv = coord_retention_pass(cat, &akey, conf[1], repo_rw, T0 + 70 * DAY_MS, &st, &e);
	if (rv != COFFER_EINVAL || st.service_errors != 1 || st.marked != 0 || st.deleted != 0 ||
	    strstr(e.msg, "billing") == NULL ||
	    sql_int("SELECT count(*) FROM audit", 0, NULL) != before) {
		die("a backup dated 50 BC: rv %d, service_errors %zu, marked %zu: %s", rv,
		    st.service_errors, st.marked, e.msg);
	}
	printf("ok   a backup the rule cannot date stops the service's pass, nothing decided: "
	       "%s\n",
	    e.msg);
	PQclear(sql("DELETE FROM backups WHERE id = 'billing-bad'", 0, NULL));

	for (int i = 0; i < 3; i++) {
		coord_config_free(conf[i]);
	}
	coffer_repo_close(repo_rw);
	coffer_repo_close(repo_nodelete);
	coord_audit_key_clear(&akey);
	coord_catalog_close(cat);
	return (0);
}
