/*
 * Prune: recording and carrying out retention decisions; see
 * coordinator/policy/prune.h for the promises.
 *
 * Design notes.
 * Marking and deleting are separate transactions on purpose. The marking
 * transaction locks the service's row (one pass per service at a time),
 * reads the live backups without locking them, evaluates the rule once, and
 * commits the pending marks and cancellations with their audit rows. It
 * does not lock every backup row up front: intake locks a backup row and
 * then audit_head, one event after another, so a pass holding all of a
 * service's rows while waiting for audit_head would deadlock with an agent's
 * batch. Instead each UPDATE re-states what was read (the status, and for a
 * mark that no hold appeared) and a row that changed meanwhile is left for
 * the next pass. A view that misses a backup landing meanwhile is safe:
 * new backups only make older ones more obsolete, and every deletion is
 * re-checked below. Each deletion then runs in its own
 * short transaction that locks the service row again (so two coordinators
 * never prune one service at once) and the backup row (so a hold placed
 * meanwhile, which locks the same row, either lands before the re-check and
 * stops the deletion or waits until the tombstone is written), re-checks
 * everything that makes a deletion safe, removes the objects, and writes the
 * tombstone and its audit row. The repository delete happens inside that
 * transaction: if the commit is lost after the objects are gone, the next
 * pass finds nothing to remove and tombstones the backup as "gone", so the
 * catalog converges without ever claiming a deletion that did not happen.
 *
 * The re-check does not trust the marking: a backup is deleted only if a
 * completed, restorable backup at least as new exists in the catalog. So a
 * catalog in which every backup was marked pending (a bug, a hand edit)
 * still keeps its newest restorable backup.
 *
 * A failed backup has no digest or manifest, so migration 4 lets a row
 * with a failure_reason be pending_delete or deleted; failure_reason is also
 * what tells a cancelled pending mark to return to 'failed' rather than
 * 'completed'.
 *
 * Times bucketed by the rule are COALESCE(settled_at, received_at):
 * settled_at is stamped by a trigger with the coordinator's transaction time
 * when a backup's outcome is recorded; received_at covers rows older than
 * that trigger. finished_at is the agent's clock and is never used here.
 */
#include "coordinator/policy/prune.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/conf/tz.h"
#include "coordinator/policy/retention.h"

/* A backup's settle time: settled_at, else received_at. */
#define SETTLED "COALESCE(b.settled_at, b.received_at)"
#define ACTIVE_HOLD \
	"EXISTS (SELECT 1 FROM holds h WHERE h.backup_id = b.id AND h.released_at IS NULL)"
#define ACTIVE_HOLD_ID \
	"EXISTS (SELECT 1 FROM holds h WHERE h.backup_id = $1 AND h.released_at IS NULL)"

/* The canonical policy text is short (one line per key); anything longer
 * is left out of the audit row rather than cut. */
#define POLICY_TEXT_MAX 8192

/* A list of the objects under one backup is re-read after every delete;
 * this bounds the loop even if a store keeps listing an object it will not
 * delete. */
#define MAX_OBJECTS_PER_BACKUP 10000

/* As exec; *affected is the number of rows the statement changed. */
static int
exec_count(coord_catalog *cat, const char *what, const char *sql, int n, const char *const *vals,
    long *affected, coffer_err *err)
{
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, what, sql, n, vals, &rv, err);
	*affected = res != NULL ? strtol(PQcmdTuples(res), NULL, 10) : 0;
	PQclear(res);
	return (rv);
}

static int64_t
col_i64(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col)) {
		return (0);
	}
	return ((int64_t)strtoll(PQgetvalue(res, row, col), NULL, 10));
}

static bool
col_bool(const PGresult *res, int row, int col)
{
	return (!PQgetisnull(res, row, col) && PQgetvalue(res, row, col)[0] == 't');
}

/* Adds a time as RFC 3339, or null for 0. */
static void
add_time(cJSON *o, const char *name, int64_t ms)
{
	char buf[40];
	if (ms == 0) {
		cJSON_AddNullToObject(o, name);
	} else {
		cJSON_AddStringToObject(o, name, coffer_time_format(buf, sizeof(buf), ms));
	}
}

static cJSON *
reasons_array(unsigned reasons)
{
	cJSON *a = cJSON_CreateArray();
	for (unsigned bit = 1; a != NULL && bit <= COORD_KEEP_RUNNING; bit <<= 1) {
		const char *name = (reasons & bit) != 0 ? coord_retention_reason_name(bit) : NULL;
		if (name != NULL) {
			cJSON_AddItemToArray(a, cJSON_CreateString(name));
		}
	}
	return (a);
}

/* Appends an audit row with details d (consumed). */
static int
audit(coord_catalog *cat, const coord_audit_key *key, const char *actor, const char *action,
    const char *subject, cJSON *d, coffer_err *err)
{
	char *text = d != NULL ? cJSON_PrintUnformatted(d) : NULL;
	cJSON_Delete(d);
	if (text == NULL) {
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "no memory for the %s audit row", action));
	}
	int rv = coord_audit_append(cat, key, actor, action, subject, text, NULL, err);
	cJSON_free(text);
	return (rv);
}

/* ---- deletion outcomes ---- */

coord_prune_outcome
coord_prune_classify(int rc, const coffer_err *e)
{
	if (rc == 0) {
		return (COORD_PRUNE_DELETED);
	}
	if (rc == COFFER_ENOENT) {
		return (COORD_PRUNE_GONE);
	}
	if (rc != COFFER_EPERM) {
		return (COORD_PRUNE_ERROR);
	}
	/* Stores word it differently: S3 says "Access Denied because object
	 * protected by object lock", MinIO "Object is WORM protected". */
	static const char *const words[] = { "object lock", "objectlock", "locked", "worm",
		"protected" };
	const char *msg = e != NULL ? e->msg : "";
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t wl = strlen(words[i]);
		for (const char *p = msg; *p != '\0'; p++) {
			if (strncasecmp(p, words[i], wl) == 0) {
				return (COORD_PRUNE_LOCKED);
			}
		}
	}
	return (COORD_PRUNE_DENIED);
}

const char *
coord_prune_outcome_name(coord_prune_outcome o)
{
	switch (o) {
	case COORD_PRUNE_DELETED:
		return ("deleted");
	case COORD_PRUNE_GONE:
		return ("gone");
	case COORD_PRUNE_DENIED:
		return ("denied");
	case COORD_PRUNE_LOCKED:
		return ("locked");
	case COORD_PRUNE_ERROR:
		break;
	}
	return ("error");
}

/* ---- policy sync ---- */

static cJSON *
policy_details(
    const coffer_config *ini, const coord_service_policy *p, const char *old_hex, int64_t serial)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (NULL);
	}
	cJSON_AddStringToObject(d, "service", p->name);
	if (old_hex != NULL && old_hex[0] != '\0') {
		cJSON_AddStringToObject(d, "old_version", old_hex);
	} else {
		cJSON_AddNullToObject(d, "old_version");
	}
	cJSON_AddStringToObject(d, "new_version", p->version);
	cJSON_AddNumberToObject(d, "policy_serial", (double)serial);
	char *text = malloc(POLICY_TEXT_MAX);
	if (text != NULL && coord_config_policy_text(ini, p->name, text, POLICY_TEXT_MAX) >= 0) {
		cJSON_AddStringToObject(d, "policy", text);
	}
	free(text);
	return (d);
}

static int
sync_one(coord_catalog *cat, const coord_audit_key *key, const char *actor, const coord_config *cfg,
    const coord_service_policy *p, coffer_err *err)
{
	const char *owner = p->owner != NULL && p->owner[0] != '\0' ? p->owner : "unknown";
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	const char *sv[] = { p->name };
	PGresult *res = coord_catalog_adhoc(cat, "reading the service's policy",
	    "SELECT policy_version, COALESCE(encode(policy_sha256, 'hex'), ''), "
	    "removed_at IS NOT NULL FROM services WHERE name = $1 FOR UPDATE",
	    1, sv, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	char old_hex[COORD_POLICY_VERSION_HEX] = "";
	bool exists = PQntuples(res) == 1, removed = false;
	if (exists) {
		snprintf(old_hex, sizeof(old_hex), "%s", PQgetvalue(res, 0, 1));
		removed = col_bool(res, 0, 2);
	}
	PQclear(res);
	const char *uv[] = { p->name, owner, p->version };
	if (exists && strcmp(old_hex, p->version) == 0 && !removed) {
		rv = coord_catalog_adhoc_exec(cat, "updating the service's owner",
		    "UPDATE services SET owner = $2, updated_at = now() "
		    "WHERE name = $1 AND owner <> $2",
		    2, uv, err);
		if (rv != 0) {
			goto fail;
		}
		return (coord_catalog_commit(cat, err));
	}
	res = coord_catalog_adhoc(cat, "recording the service's policy",
	    "INSERT INTO services (name, owner, policy_version, policy_sha256) "
	    "VALUES ($1, $2, 1, decode($3, 'hex')) ON CONFLICT (name) DO UPDATE "
	    "SET owner = EXCLUDED.owner, policy_version = services.policy_version + 1, "
	    "policy_sha256 = EXCLUDED.policy_sha256, removed_at = NULL, updated_at = now() "
	    "RETURNING policy_version",
	    3, uv, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	int64_t serial = col_i64(res, 0, 0);
	PQclear(res);
	cJSON *d = policy_details(cfg->ini, p, old_hex, serial);
	if (d != NULL && removed) {
		cJSON_AddTrueToObject(d, "restored");
	}
	if ((rv = audit(cat, key, actor, "policy.changed", p->name, d, err)) != 0) {
		goto fail;
	}
	return (coord_catalog_commit(cat, err));
fail:
	coord_catalog_rollback(cat);
	return (coffer_err_wrap(err, "service %s", p->name));
}

static int
remove_one(coord_catalog *cat, const coord_audit_key *key, const char *actor, const char *name,
    coffer_err *err)
{
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	const char *v[] = { name };
	PGresult *res = coord_catalog_adhoc(cat, "marking the service's policy removed",
	    "UPDATE services SET removed_at = now(), updated_at = now() "
	    "WHERE name = $1 AND removed_at IS NULL AND policy_sha256 IS NOT NULL "
	    "RETURNING policy_version, encode(policy_sha256, 'hex'), "
	    "(SELECT count(*) FROM backups WHERE service = $1 AND status <> 'deleted')",
	    1, v, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		coord_catalog_rollback(cat);
		return (0); /* another coordinator got there first */
	}
	cJSON *d = cJSON_CreateObject();
	if (d != NULL) {
		cJSON_AddStringToObject(d, "service", name);
		cJSON_AddStringToObject(d, "old_version", PQgetvalue(res, 0, 1));
		cJSON_AddNumberToObject(d, "policy_serial", (double)col_i64(res, 0, 0));
		cJSON_AddNumberToObject(d, "backups_kept", (double)col_i64(res, 0, 2));
		cJSON_AddStringToObject(d, "note",
		    "backups are kept: a service leaving the "
		    "configuration never deletes anything");
	}
	PQclear(res);
	if ((rv = audit(cat, key, actor, "policy.removed", name, d, err)) != 0) {
		goto fail;
	}
	return (coord_catalog_commit(cat, err));
fail:
	coord_catalog_rollback(cat);
	return (coffer_err_wrap(err, "service %s", name));
}

int
coord_policy_sync(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const coord_config *cfg, coffer_err *err)
{
	if (actor == NULL || actor[0] == '\0') {
		actor = COORD_PRUNE_ACTOR;
	}
	for (size_t i = 0; i < cfg->n_services; i++) {
		int rv = sync_one(cat, key, actor, cfg, &cfg->services[i], err);
		if (rv != 0) {
			return (rv);
		}
	}
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "listing the catalog's services",
	    "SELECT name FROM services WHERE removed_at IS NULL AND policy_sha256 IS NOT NULL "
	    "ORDER BY name",
	    0, NULL, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int r = 0; r < PQntuples(res) && rv == 0; r++) {
		const char *name = PQgetvalue(res, r, 0);
		if (coord_config_service(cfg, name) == NULL) {
			rv = remove_one(cat, key, actor, name, err);
		}
	}
	PQclear(res);
	return (rv);
}

/* ---- loading a service's backups ---- */

typedef struct live_backup {
	char *id;
	char status[16]; /* as stored */
	char repo[72];
	bool was_failed; /* has a failure_reason: returns to 'failed' if kept again */
	int64_t delete_after_ms;
	char verify_state[16]; /* the coordinator's verification (coordinator/drill/verify.c) */
} live_backup;

typedef struct service_view {
	live_backup *rows;
	coord_retention_backup *in;
	coord_retention_decision *out;
	size_t n;
} service_view;

static void
view_free(service_view *v)
{
	for (size_t i = 0; v->rows != NULL && i < v->n; i++) {
		free(v->rows[i].id);
	}
	free(v->rows);
	free(v->in);
	free(v->out);
	memset(v, 0, sizeof(*v));
}

/* Reads the live backups of service, newest first. No row locks: see
 * the marking notes in prune_service. */
static int
view_load(coord_catalog *cat, const coord_service_policy *p, int64_t now_ms, service_view *v,
    coffer_err *err)
{
	char limit[24];
	coffer_fmt_i64(limit, (int64_t)COORD_PRUNE_MAX_BACKUPS + 1);
	const char *service = p->name;
	const char *vals[] = { service, limit };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading the service's backups",
	    "SELECT b.id, b.status, "
	    "floor(extract(epoch FROM COALESCE(b.settled_at, b.received_at)) * 1000)::bigint, b.failure_reason IS NOT NULL, "
	    "b.verify_failed_at IS NULL, " ACTIVE_HOLD
	    ", floor(extract(epoch FROM b.pending_since) * 1000)::bigint, "
	    "b.repo, floor(extract(epoch FROM b.delete_after) * 1000)::bigint, "
	    "floor(extract(epoch FROM b.abandoned_at) * 1000)::bigint, b.verify_state "
	    "FROM backups b WHERE b.service = $1 AND b.status <> 'deleted' "
	    "ORDER BY " SETTLED " DESC, b.id LIMIT $2",
	    2, vals, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	size_t n = (size_t)PQntuples(res);
	if (n > COORD_PRUNE_MAX_BACKUPS) {
		PQclear(res);
		coffer_err_set(err, COFFER_ETOOBIG,
		    "service %s has more than %d live backups; "
		    "retention refuses to decide on a partial view",
		    service, COORD_PRUNE_MAX_BACKUPS);
		return (coffer_err_hint(err,
		    "find why backups accumulate (holds, failures) and "
		    "remove what is not needed by hand"));
	}
	memset(v, 0, sizeof(*v));
	size_t alloc = n > 0 ? n : 1;
	v->rows = calloc(alloc, sizeof(*v->rows));
	v->in = calloc(alloc, sizeof(*v->in));
	v->out = calloc(alloc, sizeof(*v->out));
	if (v->rows == NULL || v->in == NULL || v->out == NULL) {
		PQclear(res);
		view_free(v);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for %zu backups", n));
	}
	for (size_t i = 0; i < n; i++) {
		int r = (int)i;
		live_backup *b = &v->rows[i];
		coord_retention_backup *in = &v->in[i];
		if ((b->id = strdup(PQgetvalue(res, r, 0))) == NULL) {
			v->n = i;
			PQclear(res);
			view_free(v);
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for backup ids"));
		}
		v->n = i + 1;
		snprintf(b->status, sizeof(b->status), "%s", PQgetvalue(res, r, 1));
		snprintf(b->repo, sizeof(b->repo), "%s", PQgetvalue(res, r, 7));
		b->was_failed = col_bool(res, r, 3);
		b->delete_after_ms = col_i64(res, r, 8);
		in->id = b->id;
		in->finished_at_ms = col_i64(res, r, 2);
		in->held = col_bool(res, r, 5);
		in->pending_since_ms = col_i64(res, r, 6);
		const char *verify = PQgetvalue(res, r, 10);
		snprintf(b->verify_state, sizeof(b->verify_state), "%s", verify);
		if (strcmp(b->status, "running") == 0) {
			in->status = COORD_BACKUP_RUNNING;
		} else if (!b->was_failed && strcmp(verify, "rejected") == 0 &&
		    (strcmp(b->status, "completed") == 0 ||
		        strcmp(b->status, "pending_delete") == 0)) {
			/* Rejected by the coordinator's verification: never a tier's
			 * backup nor a restore point, so it cannot push a verified
			 * one out; it expires like a failed backup. */
			in->status = COORD_BACKUP_FAILED;
		} else if (!b->was_failed && strcmp(verify, "unverified") == 0 &&
		    strcmp(b->status, "completed") == 0) {
			/* Not yet a fact: kept, and not counted toward a tier, until
			 * verification decides (coordinator/drill/verify.c). */
			in->status = COORD_BACKUP_RUNNING;
		} else if (strcmp(b->status, "completed") == 0 ||
		    (strcmp(b->status, "pending_delete") == 0 && !b->was_failed)) {
			in->status = COORD_BACKUP_COMPLETED;
			in->restorable = col_bool(res, r, 4);
		} else if (strcmp(b->status, "failed") == 0 ||
		    strcmp(b->status, "pending_delete") == 0) {
			in->status = COORD_BACKUP_FAILED;
		} else if (strcmp(b->status, "abandoned") == 0) {
			/* Its late outcome may still come (intake applies it to an
			 * abandoned row): kept like a running backup for
			 * retention.orphan_grace, then the failed backup it is. */
			in->status = now_ms < col_i64(res, r, 9) + p->orphan_grace_ms
			    ? COORD_BACKUP_RUNNING
			    : COORD_BACKUP_FAILED;
		} else {
			PQclear(res);
			coffer_err_set(err, COFFER_EINTERNAL,
			    "backup %s has status \"%s\", which "
			    "retention does not know",
			    b->id, b->status);
			view_free(v);
			return (
			    coffer_err_hint(err, "upgrade the coordinator, or check the catalog"));
		}
		if (strcmp(b->status, "pending_delete") != 0) {
			/* Only a pending_delete row is pending, whatever a column says. */
			in->pending_since_ms = 0;
		} else if (in->pending_since_ms == 0) {
			/* The epoch would read as "not pending": a pending mark at
			 * 1970 is not a real time, so treat it as long past. */
			in->pending_since_ms = 1;
		}
	}
	PQclear(res);
	return (0);
}

/* ---- the pass ---- */

typedef struct service_ctx {
	coord_catalog *cat;
	const coord_audit_key *key;
	const coord_service_policy *p;
	int64_t serial;
	int64_t now_ms;
	coffer_repo *repo;
	coord_prune_stats *st;
} service_ctx;

/* Locks the service's row and checks that the catalog holds the policy
 * this coordinator is about to apply (another coordinator with another
 * configuration may have synced since). */
static int
lock_service(service_ctx *c, coffer_err *err)
{
	const char *v[] = { c->p->name };
	int rv;
	PGresult *res = coord_catalog_adhoc(c->cat, "locking the service",
	    "SELECT policy_version, COALESCE(encode(policy_sha256, 'hex'), '') FROM services "
	    "WHERE name = $1 FOR UPDATE",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 1), c->p->version) != 0) {
		PQclear(res);
		coffer_err_set(err, COFFER_EREFUSED,
		    "the catalog's policy for service %s is not "
		    "this coordinator's (version %.12s)",
		    c->p->name, c->p->version);
		return (coffer_err_hint(err,
		    "another coordinator with a different configuration "
		    "shares this catalog; run one coordinator per catalog"));
	}
	c->serial = col_i64(res, 0, 0);
	PQclear(res);
	return (0);
}

static cJSON *
decision_details(const service_ctx *c)
{
	cJSON *d = cJSON_CreateObject();
	if (d != NULL) {
		cJSON_AddStringToObject(d, "service", c->p->name);
		cJSON_AddStringToObject(d, "policy_version", c->p->version);
		cJSON_AddNumberToObject(d, "policy_serial", (double)c->serial);
	}
	return (d);
}

/* *done is false when the row changed since it was read (then nothing is
 * written: the next pass decides again). */
static int
mark_pending(service_ctx *c, const live_backup *b, const coord_retention_backup *in,
    const coord_retention_decision *dec, bool *done, coffer_err *err)
{
	const char *why = in->status == COORD_BACKUP_FAILED
	    ? "failed backup: never counts toward retention"
	    : "obsolete: kept by no tier, not in the floor, not the newest "
	      "restorable, not held";
	char now[24], at[24], serial[24];
	coffer_fmt_i64(now, c->now_ms);
	coffer_fmt_i64(at, dec->delete_at_ms);
	coffer_fmt_i64(serial, c->serial);
	const char *v[] = { b->id, now, at, serial, why, b->status };
	long n = 0;
	int rv = exec_count(c->cat, "marking a backup pending deletion",
	    "UPDATE backups SET status = 'pending_delete', pending_since = (timestamptz 'epoch' + $2::bigint * interval '1 millisecond'), "
	    "delete_after = (timestamptz 'epoch' + $3::bigint * interval '1 millisecond'), delete_policy_version = $4, delete_reason = $5, "
	    "delete_error = NULL, updated_at = now() WHERE id = $1 AND status = $6 "
	    "AND NOT " ACTIVE_HOLD_ID,
	    6, v, &n, err);
	*done = n == 1;
	if (rv != 0 || !*done) {
		return (rv);
	}
	cJSON *d = decision_details(c);
	if (d != NULL) {
		cJSON *r = cJSON_AddArrayToObject(d, "reasons");
		cJSON_AddItemToArray(r,
		    cJSON_CreateString(in->status == COORD_BACKUP_FAILED ? "failed" : "obsolete"));
		cJSON_AddStringToObject(d, "reason", why);
		cJSON_AddStringToObject(d, "was", b->status);
		add_time(d, "settled_at", in->finished_at_ms);
		add_time(d, "pending_since", c->now_ms);
		add_time(d, "delete_at", dec->delete_at_ms);
	}
	return (audit(c->cat, c->key, COORD_PRUNE_ACTOR, "backup.pending_delete", b->id, d, err));
}

static int
cancel_pending(service_ctx *c, const live_backup *b, const coord_retention_backup *in,
    const coord_retention_decision *dec, bool *done, coffer_err *err)
{
	const char *v[] = { b->id };
	long n = 0;
	int rv = exec_count(c->cat, "returning a pending backup to kept",
	    "UPDATE backups SET status = CASE WHEN failure_reason IS NULL THEN 'completed' "
	    "ELSE 'failed' END, pending_since = NULL, delete_after = NULL, "
	    "delete_policy_version = NULL, delete_reason = NULL, delete_error = NULL, "
	    "updated_at = now() WHERE id = $1 AND status = 'pending_delete'",
	    1, v, &n, err);
	*done = n == 1;
	if (rv != 0 || !*done) {
		return (rv);
	}
	cJSON *d = decision_details(c);
	if (d != NULL) {
		cJSON_AddItemToObject(d, "reasons", reasons_array(dec->reasons));
		add_time(d, "was_pending_since", in->pending_since_ms);
		if (dec->expires_at_ms == COORD_RETENTION_NEVER) {
			cJSON_AddStringToObject(d, "expires_at", "never");
		} else {
			add_time(d, "expires_at", dec->expires_at_ms);
		}
	}
	return (
	    audit(c->cat, c->key, COORD_PRUNE_ACTOR, "backup.pending_cancelled", b->id, d, err));
}

/* Remembers the first key a list shows. */
typedef struct first_key {
	char key[COFFER_REPO_KEY_MAX + 1];
	bool found;
} first_key;

static int
first_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	(void)info;
	first_key *f = arg;
	snprintf(f->key, sizeof(f->key), "%s", key);
	f->found = true;
	return (1);
}

/* Removes manifest.json, then every other object of the backup. *removed
 * counts the objects this call removed. Returns the outcome; e holds the
 * error of a failed one. */
static coord_prune_outcome
remove_objects(
    coffer_repo *repo, const char *service, const char *id, size_t *removed, coffer_err *e)
{
	char mkey[COFFER_REPO_KEY_MAX + 1], prefix[COFFER_REPO_KEY_MAX + 1];
	*removed = 0;
	if (repo == NULL) {
		coffer_err_set(e, COFFER_EINVAL, "no primary repository is open for retention");
		coffer_err_hint(e, "configure [repository.primary] for the coordinator");
		return (COORD_PRUNE_ERROR);
	}
	int rc = coffer_repo_backup_key(mkey, sizeof(mkey), service, id, "manifest.json", e);
	if (rc == 0) {
		rc = coffer_repo_backups_prefix(prefix, sizeof(prefix), service, e);
	}
	if (rc == 0 && strlen(prefix) + strlen(id) + 2 > sizeof(prefix)) {
		rc = coffer_err_set(e, COFFER_EINVAL, "backup id %s is too long for a key", id);
	}
	if (rc != 0) {
		return (COORD_PRUNE_ERROR);
	}
	/* The trailing '/' keeps backup "b1" from matching "b10". */
	/* Both fit: the length of prefix, id and "/" was checked above. */
	/* NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy) */
	strcat(prefix, id);
	/* NOLINTNEXTLINE(clang-analyzer-security.insecureAPI.strcpy) */
	strcat(prefix, "/");
	rc = coffer_repo_delete(repo, mkey, e);
	coord_prune_outcome o = coord_prune_classify(rc, e);
	if (o == COORD_PRUNE_DELETED) {
		(*removed)++;
	} else if (o != COORD_PRUNE_GONE) {
		return (o);
	}
	char last_gone[COFFER_REPO_KEY_MAX + 1] = "";
	for (int i = 0; i < MAX_OBJECTS_PER_BACKUP; i++) {
		first_key f = { .found = false };
		rc = coffer_repo_list(repo, prefix, first_cb, &f, e);
		if (rc != 0) {
			coffer_err_wrap(e, "listing %s", prefix);
			return (coord_prune_classify(rc, e) == COORD_PRUNE_GONE
			        ? COORD_PRUNE_ERROR
			        : coord_prune_classify(rc, e));
		}
		if (!f.found) {
			return (*removed > 0 ? COORD_PRUNE_DELETED : COORD_PRUNE_GONE);
		}
		rc = coffer_repo_delete(repo, f.key, e);
		o = coord_prune_classify(rc, e);
		if (o == COORD_PRUNE_DELETED) {
			(*removed)++;
		} else if (o == COORD_PRUNE_GONE && strcmp(last_gone, f.key) != 0) {
			/* Listed, then gone: someone else removed it; look again. */
			snprintf(last_gone, sizeof(last_gone), "%s", f.key);
		} else if (o == COORD_PRUNE_GONE) {
			coffer_err_set(e, COFFER_EIO,
			    "repository object %s is listed but cannot be "
			    "deleted (not a regular object?)",
			    f.key);
			coffer_err_hint(e, "inspect it in the repository and remove it by hand");
			return (COORD_PRUNE_ERROR);
		} else {
			return (o);
		}
	}
	coffer_err_set(e, COFFER_ETOOBIG, "backup %s still has objects after %d deletions", id,
	    MAX_OBJECTS_PER_BACKUP);
	coffer_err_hint(e, "the next retention pass goes on; check what writes under %s", prefix);
	return (COORD_PRUNE_ERROR);
}

/* The re-check before a deletion: NULL if it may go ahead, else why not. */
static const char *
recheck(service_ctx *c, const char *id, const PGresult *row, int *rv, coffer_err *err)
{
	*rv = 0;
	if (strcmp(PQgetvalue(row, 0, 0), "pending_delete") != 0) {
		return ("not_pending");
	}
	int64_t since = col_i64(row, 0, 2);
	if (since != 0 && c->now_ms < since + c->p->retention.grace_ms) {
		return ("grace_not_over");
	}
	if (col_bool(row, 0, 5)) {
		return ("held");
	}
	if (strcmp(PQgetvalue(row, 0, 4), "primary") != 0) {
		return ("other_repository");
	}
	/* The DR copy reads from here: a backup whose copy is still due waits
	 * for it (dr_copy_lag pages meanwhile), unless retrying cannot help. */
	const char *cv[] = { id };
	PGresult *cr = coord_catalog_adhoc(c->cat, "looking for a due DR copy",
	    "SELECT 1 FROM backup_copies WHERE backup_id = $1 AND repo = 'dr' "
	    "AND status IN ('copying', 'failed') "
	    "AND (next_attempt_at IS NULL OR next_attempt_at <> 'infinity')",
	    1, cv, rv, err);
	if (cr == NULL) {
		return ("catalog_error");
	}
	bool copy_due = PQntuples(cr) > 0;
	PQclear(cr);
	if (copy_due) {
		return ("dr_copy_due");
	}
	if (col_bool(row, 0, 1)) {
		return (NULL); /* a failed backup is never anyone's restore point */
	}
	char settled[24];
	coffer_fmt_i64(settled, col_i64(row, 0, 3));
	const char *v[] = { c->p->name, id, settled };
	/* FOR SHARE keeps that newer backup from being marked or deleted until
	 * this transaction ends. */
	PGresult *res = coord_catalog_adhoc(c->cat, "looking for a newer restorable backup",
	    "SELECT b.id FROM backups b WHERE b.service = $1 AND b.id <> $2 "
	    "AND b.status = 'completed' AND b.verify_failed_at IS NULL "
	    "AND b.verify_state = 'verified' "
	    "AND " SETTLED
	    " >= (timestamptz 'epoch' + $3::bigint * interval '1 millisecond') ORDER BY " SETTLED
	    " DESC LIMIT 1 FOR SHARE OF b",
	    3, v, rv, err);
	if (res == NULL) {
		return ("catalog_error");
	}
	bool newer = PQntuples(res) == 1;
	PQclear(res);
	return (newer ? NULL : "newest_restorable");
}

static int
delete_one(service_ctx *c, const char *id, coffer_err *err)
{
	int rv = coord_catalog_begin(c->cat, err);
	if (rv != 0) {
		return (rv);
	}
	if ((rv = lock_service(c, err)) != 0) {
		goto fail;
	}
	const char *v[] = { id };
	PGresult *row = coord_catalog_adhoc(c->cat, "locking the backup",
	    "SELECT b.status, b.failure_reason IS NOT NULL, floor(extract(epoch FROM b.pending_since) * 1000)::bigint, "
	    "floor(extract(epoch FROM COALESCE(b.settled_at, b.received_at)) * 1000)::bigint, b.repo, " ACTIVE_HOLD
	    ", b.delete_attempts, b.delete_policy_version, "
	    "b.delete_reason FROM backups b WHERE b.id = $1 FOR UPDATE OF b",
	    1, v, &rv, err);
	if (row == NULL) {
		goto fail;
	}
	if (PQntuples(row) != 1) {
		PQclear(row);
		coord_catalog_rollback(c->cat);
		c->st->refused++;
		return (0);
	}
	const char *why = recheck(c, id, row, &rv, err);
	if (rv != 0) {
		PQclear(row);
		goto fail;
	}
	if (why != NULL &&
	    (strcmp(why, "not_pending") == 0 || strcmp(why, "grace_not_over") == 0 ||
	        strcmp(why, "dr_copy_due") == 0)) {
		/* Changed since the marking transaction (a hold, another pass):
		 * the next evaluation sees it as it is now. */
		PQclear(row);
		coord_catalog_rollback(c->cat);
		c->st->refused++;
		return (0);
	}
	int64_t attempts = col_i64(row, 0, 6);
	int64_t decided_by = col_i64(row, 0, 7);
	int64_t since = col_i64(row, 0, 2);
	char reason[256];
	snprintf(reason, sizeof(reason), "%s", PQgetvalue(row, 0, 8));
	bool other_repo = why != NULL && strcmp(why, "other_repository") == 0;
	char repo_name[72];
	snprintf(repo_name, sizeof(repo_name), "%s", PQgetvalue(row, 0, 4));
	PQclear(row);
	cJSON *d = decision_details(c);
	if (why != NULL && !other_repo) {
		/* The marking said delete, the locked row says no: the catalog
		 * is inconsistent or raced; refuse, loudly. */
		if (d != NULL) {
			cJSON_AddStringToObject(d, "refused", why);
		}
		if ((rv = audit(c->cat, c->key, COORD_PRUNE_ACTOR, "backup.delete_refused", id, d,
		         err)) != 0 ||
		    (rv = coord_catalog_commit(c->cat, err)) != 0) {
			goto fail;
		}
		c->st->refused++;
		return (0);
	}
	coffer_err e;
	coffer_err_clear(&e);
	size_t removed = 0;
	coord_prune_outcome o;
	if (other_repo) {
		coffer_err_set(&e, COFFER_EINVAL,
		    "backup %s is recorded in repository %s, and "
		    "retention deletes through the primary repository only",
		    id, repo_name);
		coffer_err_hint(
		    &e, "remove it from %s by hand, then its row stays pending", repo_name);
		o = COORD_PRUNE_ERROR;
	} else {
		o = remove_objects(c->repo, c->p->name, id, &removed, &e);
	}
	if (d != NULL) {
		cJSON_AddStringToObject(d, "outcome", coord_prune_outcome_name(o));
		cJSON_AddNumberToObject(d, "objects_removed", (double)removed);
		cJSON_AddNumberToObject(d, "pending_policy_serial", (double)decided_by);
		cJSON_AddStringToObject(d, "delete_reason", reason);
		add_time(d, "pending_since", since);
	}
	char now[24];
	coffer_fmt_i64(now, c->now_ms);
	if (o == COORD_PRUNE_DELETED || o == COORD_PRUNE_GONE) {
		const char *tv[] = { id, now, coord_prune_outcome_name(o) };
		rv = coord_catalog_adhoc_exec(c->cat, "tombstoning the backup",
		    "UPDATE backups SET status = 'deleted', deleted_at = (timestamptz 'epoch' + $2::bigint * interval '1 millisecond'), "
		    "delete_outcome = $3, delete_error = NULL, updated_at = now() WHERE id = $1",
		    3, tv, err);
		if (rv != 0) {
			cJSON_Delete(d);
			goto fail;
		}
		rv = audit(c->cat, c->key, COORD_PRUNE_ACTOR, "backup.deleted", id, d, err);
	} else {
		char msg[COFFER_ERR_MSG_MAX + COFFER_ERR_HINT_MAX + 16];
		snprintf(msg, sizeof(msg), "%s%s%s%s", e.msg, e.hint[0] != '\0' ? " (hint: " : "",
		    e.hint, e.hint[0] != '\0' ? ")" : "");
		const char *fv[] = { id, msg };
		rv = coord_catalog_adhoc_exec(c->cat, "recording a failed deletion",
		    "UPDATE backups SET delete_attempts = delete_attempts + 1, "
		    "delete_error = left($2, 1024), updated_at = now() WHERE id = $1",
		    2, fv, err);
		if (rv != 0) {
			cJSON_Delete(d);
			goto fail;
		}
		if (d != NULL) {
			cJSON_AddStringToObject(d, "error", e.msg);
			cJSON_AddStringToObject(d, "hint", e.hint);
			cJSON_AddNumberToObject(d, "attempts", (double)(attempts + 1));
		}
		rv = audit(c->cat, c->key, COORD_PRUNE_ACTOR, "backup.delete_failed", id, d, err);
	}
	if (rv != 0 || (rv = coord_catalog_commit(c->cat, err)) != 0) {
		goto fail;
	}
	switch (o) {
	case COORD_PRUNE_DELETED:
		c->st->deleted++;
		break;
	case COORD_PRUNE_GONE:
		c->st->gone++;
		break;
	case COORD_PRUNE_DENIED:
		c->st->failed++;
		c->st->denied++;
		break;
	case COORD_PRUNE_LOCKED:
		c->st->failed++;
		c->st->locked++;
		break;
	case COORD_PRUNE_ERROR:
		c->st->failed++;
		c->st->errors++;
		break;
	}
	return (0);
fail:
	coord_catalog_rollback(c->cat);
	return (rv);
}

/* ---- orphans ---- */

/* What one pass may reclaim at most per service; the next pass goes on. */
#define MAX_ORPHANS_PER_PASS 1000

typedef struct orphan {
	char id[COFFER_REPO_SEGMENT_MAX + 1];
	size_t objects;
	uint64_t bytes;
	int64_t newest_ms;
} orphan;

/* Groups the listing of services/<service>/backups/ by backup directory and
 * keeps those without manifest.json whose newest object is older than
 * before_ms. */
typedef struct orphan_scan {
	size_t plen;
	orphan cur;
	bool have, manifest;
	int64_t before_ms;
	orphan *found;
	size_t n, cap;
	bool full;
} orphan_scan;

static void
orphan_close(orphan_scan *o)
{
	if (o->have && !o->manifest && o->cur.newest_ms < o->before_ms) {
		if (o->n == o->cap) {
			o->full = true;
		} else {
			o->found[o->n++] = o->cur;
		}
	}
	o->have = false;
}

static int
orphan_cb(const char *key, const coffer_repo_info *info, void *arg)
{
	orphan_scan *o = arg;
	const char *rest = key + o->plen;
	const char *slash = strchr(rest, '/');
	if (slash == NULL || (size_t)(slash - rest) > COFFER_REPO_SEGMENT_MAX) {
		return (0); /* not inside a backup's directory: not ours to judge */
	}
	size_t idlen = (size_t)(slash - rest);
	if (!o->have || strlen(o->cur.id) != idlen || memcmp(o->cur.id, rest, idlen) != 0) {
		orphan_close(o);
		if (o->full) {
			return (1);
		}
		memset(&o->cur, 0, sizeof(o->cur));
		memcpy(o->cur.id, rest, idlen);
		o->have = true;
		o->manifest = false;
	}
	o->cur.objects++;
	o->cur.bytes += info->size;
	if (info->mtime_ms > o->cur.newest_ms) {
		o->cur.newest_ms = info->mtime_ms;
	}
	if (strcmp(slash + 1, "manifest.json") == 0) {
		o->manifest = true;
	}
	return (0);
}

static int
orphans_list(coffer_repo *repo, const char *prefix, int64_t before_ms, orphan *found, size_t cap,
    size_t *n, coffer_err *err)
{
	orphan_scan o = {
		.plen = strlen(prefix), .before_ms = before_ms, .found = found, .cap = cap
	};
	int rc = coffer_repo_list(repo, prefix, orphan_cb, &o, err);
	if (rc == 0) {
		orphan_close(&o);
	}
	*n = o.n;
	return (rc);
}

/*
 * Reclaims one orphan in its own transaction, with the service row locked:
 * re-reads the catalog (no row, or only a tombstone, may own it) and the
 * repository (still no manifest, still nothing newer than the grace) before
 * removing anything, then audits what went and adds it to reclaim_totals.
 */
static int
reclaim_one(service_ctx *c, const char *prefix, const orphan *o, int64_t before_ms, coffer_err *err)
{
	int rv = coord_catalog_begin(c->cat, err);
	if (rv != 0) {
		return (rv);
	}
	if ((rv = lock_service(c, err)) != 0) {
		goto fail;
	}
	const char *v[] = { o->id };
	PGresult *row = coord_catalog_adhoc(c->cat, "looking for the orphan's backup",
	    "SELECT status FROM backups WHERE id = $1 FOR UPDATE", 1, v, &rv, err);
	if (row == NULL) {
		goto fail;
	}
	char owner[16] = "none";
	bool owned = false;
	if (PQntuples(row) == 1) {
		snprintf(owner, sizeof(owner), "%s", PQgetvalue(row, 0, 0));
		owned = strcmp(owner, "deleted") != 0;
	}
	PQclear(row);
	char sub[COFFER_REPO_KEY_MAX + 1];
	orphan again[1];
	size_t n = 0;
	coffer_err e;
	coffer_err_clear(&e);
	if (!owned && (size_t)snprintf(sub, sizeof(sub), "%s%s/", prefix, o->id) < sizeof(sub)) {
		/* A backup directory is listed alone by its own prefix: the
		 * re-check sees exactly this backup's objects now. */
		orphan_scan s = {
			.plen = strlen(prefix), .before_ms = before_ms, .found = again, .cap = 1
		};
		rv = coffer_repo_list(c->repo, sub, orphan_cb, &s, &e);
		if (rv == 0) {
			orphan_close(&s);
		}
		n = s.n;
		rv = 0;
	}
	if (owned || n != 1) {
		/* Owned meanwhile, published meanwhile or written to again: not
		 * an orphan (any more). */
		coord_catalog_rollback(c->cat);
		return (0);
	}
	size_t removed = 0;
	coord_prune_outcome out = remove_objects(c->repo, c->p->name, o->id, &removed, &e);
	cJSON *d = cJSON_CreateObject();
	if (d != NULL) {
		cJSON_AddStringToObject(d, "service", c->p->name);
		cJSON_AddStringToObject(d, "reason",
		    "orphan: no manifest and no live catalog row, newest object older than "
		    "retention.orphan_grace");
		cJSON_AddStringToObject(d, "catalog_row", owner);
		cJSON_AddStringToObject(d, "outcome", coord_prune_outcome_name(out));
		cJSON_AddNumberToObject(d, "objects", (double)again[0].objects);
		cJSON_AddNumberToObject(d, "objects_removed", (double)removed);
		cJSON_AddNumberToObject(d, "bytes", (double)again[0].bytes);
		add_time(d, "newest_object_at", again[0].newest_ms);
		cJSON_AddNumberToObject(
		    d, "orphan_grace_s", (double)(c->p->orphan_grace_ms / 1000));
		if (out != COORD_PRUNE_DELETED && out != COORD_PRUNE_GONE) {
			cJSON_AddStringToObject(d, "error", e.msg);
		}
	}
	bool ok = out == COORD_PRUNE_DELETED || out == COORD_PRUNE_GONE;
	rv = audit(c->cat, c->key, COORD_PRUNE_ACTOR,
	    ok ? "backup.orphan_reclaimed" : "backup.orphan_reclaim_failed", o->id, d, err);
	if (rv == 0 && ok) {
		char objs[24], bytes[24];
		coffer_fmt_i64(objs, (int64_t)removed);
		coffer_fmt_i64(bytes, (int64_t)again[0].bytes);
		const char *tv[] = { c->p->name, objs, bytes };
		rv = coord_catalog_adhoc_exec(c->cat, "counting reclaimed orphans",
		    "INSERT INTO reclaim_totals (service, backups, objects, bytes) "
		    "VALUES ($1, 1, $2::bigint, $3::bigint) ON CONFLICT (service) DO UPDATE SET "
		    "backups = reclaim_totals.backups + 1, "
		    "objects = reclaim_totals.objects + EXCLUDED.objects, "
		    "bytes = reclaim_totals.bytes + EXCLUDED.bytes",
		    3, tv, err);
	}
	if (rv != 0 || (rv = coord_catalog_commit(c->cat, err)) != 0) {
		goto fail;
	}
	if (ok) {
		c->st->orphans++;
		c->st->orphan_objects += removed;
		c->st->orphan_bytes += again[0].bytes;
	} else {
		c->st->failed++;
		c->st->errors++;
	}
	return (0);
fail:
	coord_catalog_rollback(c->cat);
	return (rv);
}

/*
 * Orphans: backup directories in the primary repository that no live
 * catalog row owns and that were never published (no manifest.json) -- what
 * a killed backup leaves when its data was stored but its manifest never
 * was, or objects that outlived their backup's tombstone. Only after
 * retention.orphan_grace since their newest object: a backup still being
 * written (not yet in the catalog: its agent may be offline with the
 * started event in its outbox) touches its objects as it goes. A directory
 * with a manifest is never an orphan here, whatever the catalog says: a
 * published backup the catalog does not know is for rebuild-catalog, not
 * for deletion. WAL, attestations and other services are never listed.
 */
static int
reclaim_orphans(service_ctx *c, coffer_err *err)
{
	if (c->repo == NULL) {
		return (0);
	}
	char prefix[COFFER_REPO_KEY_MAX + 1];
	int rv = coffer_repo_backups_prefix(prefix, sizeof(prefix), c->p->name, err);
	if (rv != 0) {
		return (rv);
	}
	orphan *found = calloc(MAX_ORPHANS_PER_PASS, sizeof(*found));
	if (found == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the orphan list"));
	}
	int64_t before = c->now_ms - c->p->orphan_grace_ms;
	size_t n = 0;
	coffer_err e;
	coffer_err_clear(&e);
	if (orphans_list(c->repo, prefix, before, found, MAX_ORPHANS_PER_PASS, &n, &e) != 0) {
		/* A listing error is the repository's, not the pass's. */
		coffer_log_warn(
		    "orphan sweep skipped", "service=%s error=\"%s\"", c->p->name, e.msg);
		c->st->errors++;
		n = 0;
	}
	for (size_t i = 0; i < n && rv == 0; i++) {
		rv = reclaim_one(c, prefix, &found[i], before, err);
	}
	free(found);
	return (rv);
}

static int
prune_service(service_ctx *c, coffer_err *err)
{
	coffer_tz *tz = coffer_tz_load(c->p->timezone, err);
	if (tz == NULL) {
		return (err != NULL ? err->code : COFFER_EINVAL);
	}
	service_view v = { 0 };
	char **due = NULL;
	size_t n_due = 0;
	int rv = coord_catalog_begin(c->cat, err);
	if (rv != 0) {
		goto out;
	}
	if ((rv = lock_service(c, err)) != 0 ||
	    (rv = view_load(c->cat, c->p, c->now_ms, &v, err)) != 0) {
		goto rollback;
	}
	rv = coord_retention_evaluate(&c->p->retention, tz, c->now_ms, v.in, v.n, v.out, err);
	if (rv != 0) {
		goto rollback;
	}
	if (v.n > 0 && (due = calloc(v.n, sizeof(*due))) == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for the deletion list");
		goto rollback;
	}
	/* Counted apart and added only once the marks commit, so a rolled
	 * back service counts nothing it did not do. */
	coord_prune_stats m;
	memset(&m, 0, sizeof(m));
	m.services = 1;
	m.backups = v.n;
	bool done = false;
	for (size_t i = 0; i < v.n; i++) {
		const coord_retention_decision *dec = &v.out[i];
		switch (dec->action) {
		case COORD_RETENTION_KEEP:
			m.kept++;
			if (v.in[i].pending_since_ms != 0) {
				rv = cancel_pending(c, &v.rows[i], &v.in[i], dec, &done, err);
				m.cancelled += done;
			}
			break;
		case COORD_RETENTION_EXPIRE_NOW:
			rv = mark_pending(c, &v.rows[i], &v.in[i], dec, &done, err);
			m.marked += done;
			break;
		case COORD_RETENTION_PENDING:
			m.pending++;
			break;
		case COORD_RETENTION_DELETE:
			due[n_due++] = v.rows[i].id;
			break;
		}
		if (rv != 0) {
			goto rollback;
		}
	}
	if ((rv = coord_catalog_commit(c->cat, err)) != 0) {
		goto rollback;
	}
	c->st->services += m.services;
	c->st->backups += m.backups;
	c->st->kept += m.kept;
	c->st->cancelled += m.cancelled;
	c->st->marked += m.marked;
	c->st->pending += m.pending;
	/* Oldest first: if the pass stops half-way, what is left is newer. */
	for (size_t k = n_due; k > 0 && rv == 0; k--) {
		rv = delete_one(c, due[k - 1], err);
	}
	if (rv == 0) {
		rv = reclaim_orphans(c, err);
	}
	goto out;
rollback:
	coord_catalog_rollback(c->cat);
out:
	if (rv != 0) {
		coffer_err_wrap(err, "retention of service %s", c->p->name);
	}
	free(due);
	view_free(&v);
	coffer_tz_free(tz);
	return (rv);
}

int
coord_retention_pass(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    coffer_repo *repo, int64_t now_ms, coord_prune_stats *out, coffer_err *err)
{
	coord_prune_stats st;
	memset(&st, 0, sizeof(st));
	int rv = coord_policy_sync(cat, key, COORD_PRUNE_ACTOR, cfg, err);
	int last = 0;
	for (size_t i = 0; rv == 0 && i < cfg->n_services; i++) {
		service_ctx c = { .cat = cat,
			.key = key,
			.p = &cfg->services[i],
			.now_ms = now_ms,
			.repo = repo,
			.st = &st };
		coffer_err e;
		coffer_err_clear(&e);
		int r = prune_service(&c, &e);
		if (r == 0) {
			continue;
		}
		if (err != NULL) {
			*err = e;
		}
		if (r == COFFER_EUNAVAIL || !coord_catalog_ok(cat)) {
			rv = r;
			break;
		}
		st.service_errors++;
		last = r;
	}
	if (out != NULL) {
		*out = st;
	}
	return (rv != 0 ? rv : last);
}

/* ---- plan ---- */

int
coord_retention_plan(coord_catalog *cat, const coord_config *cfg, const char *service,
    int64_t now_ms, cJSON **out, coffer_err *err)
{
	*out = NULL;
	const coord_service_policy *p = coord_config_service(cfg, service);
	if (p == NULL) {
		coffer_err_set(
		    err, COFFER_ENOENT, "no service named %s in the configuration", service);
		return (
		    coffer_err_hint(err, "see `coffer status` for the services and their names"));
	}
	coffer_tz *tz = coffer_tz_load(p->timezone, err);
	if (tz == NULL) {
		return (err != NULL ? err->code : COFFER_EINVAL);
	}
	service_view v = { 0 };
	cJSON *o = NULL;
	const char *sv[] = { service };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading the service's policy",
	    "SELECT policy_version, COALESCE(encode(policy_sha256, 'hex'), '') FROM services "
	    "WHERE name = $1",
	    1, sv, &rv, err);
	if (res == NULL) {
		goto out;
	}
	int64_t serial = PQntuples(res) == 1 ? col_i64(res, 0, 0) : 0;
	bool synced = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), p->version) == 0;
	PQclear(res);
	if ((rv = view_load(cat, p, now_ms, &v, err)) != 0 ||
	    (rv = coord_retention_evaluate(&p->retention, tz, now_ms, v.in, v.n, v.out, err)) !=
	        0) {
		goto out;
	}
	o = cJSON_CreateObject();
	cJSON *list = o != NULL ? cJSON_AddArrayToObject(o, "backups") : NULL;
	if (list == NULL) {
		rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for the retention plan");
		goto out;
	}
	cJSON_AddStringToObject(o, "service", service);
	add_time(o, "now", now_ms);
	cJSON_AddStringToObject(o, "policy_version", p->version);
	cJSON_AddNumberToObject(o, "policy_serial", (double)serial);
	cJSON_AddBoolToObject(o, "policy_synced", synced);
	for (size_t i = 0; i < v.n; i++) {
		const coord_retention_decision *dec = &v.out[i];
		cJSON *b = cJSON_CreateObject();
		if (b == NULL || !cJSON_AddItemToArray(list, b)) {
			cJSON_Delete(b);
			rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for the retention plan");
			goto out;
		}
		cJSON_AddStringToObject(b, "id", v.rows[i].id);
		cJSON_AddStringToObject(b, "status", v.rows[i].status);
		cJSON_AddStringToObject(b, "verify_state", v.rows[i].verify_state);
		add_time(b, "settled_at", v.in[i].finished_at_ms);
		cJSON_AddBoolToObject(b, "held", v.in[i].held);
		cJSON_AddBoolToObject(b, "restorable", v.in[i].restorable);
		const char *action = coord_retention_action_name(dec->action);
		if (dec->action == COORD_RETENTION_KEEP && v.in[i].pending_since_ms != 0) {
			action = "cancel_pending";
		}
		cJSON_AddStringToObject(b, "action", action);
		cJSON_AddItemToObject(b, "reasons", reasons_array(dec->reasons));
		if (dec->action == COORD_RETENTION_EXPIRE_NOW) {
			cJSON_AddStringToObject(b, "why",
			    v.in[i].status == COORD_BACKUP_FAILED ? "failed" : "obsolete");
		}
		if (dec->expires_at_ms == COORD_RETENTION_NEVER) {
			cJSON_AddStringToObject(b, "expires_at", "never");
		} else {
			add_time(b, "expires_at", dec->expires_at_ms);
		}
		add_time(b, "delete_at", dec->delete_at_ms);
		add_time(b, "pending_since", v.in[i].pending_since_ms);
	}
	*out = o;
	o = NULL;
out:
	cJSON_Delete(o);
	view_free(&v);
	coffer_tz_free(tz);
	return (rv);
}

/* ---- holds ---- */

/* Locks the backup's row; fills service and status. */
static int
lock_backup(coord_catalog *cat, const char *backup_id, char *service, size_t ssize, char *status,
    size_t stsize, coffer_err *err)
{
	const char *v[] = { backup_id };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "locking the backup",
	    "SELECT service, status FROM backups WHERE id = $1 FOR UPDATE", 1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		coffer_err_set(
		    err, COFFER_ENOENT, "no backup with id %s in the catalog", backup_id);
		return (coffer_err_hint(err, "see `coffer backups list --service S` for the ids"));
	}
	snprintf(service, ssize, "%s", PQgetvalue(res, 0, 0));
	snprintf(status, stsize, "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	return (0);
}

static bool
blank(const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') {
			return (false);
		}
	}
	return (true);
}

int
coord_hold_add(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *backup_id, const char *reason, coffer_err *err)
{
	if (reason == NULL || blank(reason)) {
		coffer_err_set(err, COFFER_EINVAL, "a hold needs a reason");
		return (coffer_err_hint(err,
		    "say why the backup must be kept (--reason \"case "
		    "4711, legal\")"));
	}
	if (strlen(reason) > COORD_HOLD_REASON_MAX) {
		coffer_err_set(err, COFFER_EINVAL, "the hold reason is %zu bytes, more than %d",
		    strlen(reason), COORD_HOLD_REASON_MAX);
		return (coffer_err_hint(err, "shorten the reason; refer to a ticket for details"));
	}
	if (actor == NULL || actor[0] == '\0' || backup_id == NULL || backup_id[0] == '\0') {
		coffer_err_set(err, COFFER_EINVAL, "a hold needs a backup id and an actor");
		return (coffer_err_hint(err, "pass --backup ID"));
	}
	char service[72], status[24];
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	if ((rv = lock_backup(
	         cat, backup_id, service, sizeof(service), status, sizeof(status), err)) != 0) {
		goto fail;
	}
	if (strcmp(status, "deleted") == 0) {
		coord_catalog_rollback(cat);
		coffer_err_set(err, COFFER_EREFUSED,
		    "backup %s was already deleted by retention; "
		    "there is nothing left to hold",
		    backup_id);
		return (coffer_err_hint(err,
		    "look for a copy in the DR repository (coffer-agent "
		    "list --repo dr)"));
	}
	const char *v[] = { backup_id };
	PGresult *res = coord_catalog_adhoc(cat, "looking for an active hold",
	    "SELECT placed_by, reason FROM holds WHERE backup_id = $1 AND released_at IS NULL", 1,
	    v, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) > 0) {
		coffer_err_set(err, COFFER_EEXIST,
		    "backup %s already has an active hold (placed by "
		    "%s: %s)",
		    backup_id, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
		PQclear(res);
		coord_catalog_rollback(cat);
		return (coffer_err_hint(err,
		    "one hold is enough; remove it first to change its "
		    "reason"));
	}
	PQclear(res);
	const char *iv[] = { backup_id, reason, actor };
	res = coord_catalog_adhoc(cat, "placing the hold",
	    "INSERT INTO holds (backup_id, reason, placed_by) VALUES ($1, $2, $3) RETURNING id", 3,
	    iv, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	int64_t hold_id = col_i64(res, 0, 0);
	PQclear(res);
	cJSON *d = cJSON_CreateObject();
	if (d != NULL) {
		cJSON_AddStringToObject(d, "service", service);
		cJSON_AddStringToObject(d, "reason", reason);
		cJSON_AddStringToObject(d, "status", status);
		cJSON_AddNumberToObject(d, "hold_id", (double)hold_id);
	}
	if ((rv = audit(cat, key, actor, "hold.added", backup_id, d, err)) != 0 ||
	    (rv = coord_catalog_commit(cat, err)) != 0) {
		goto fail;
	}
	return (0);
fail:
	coord_catalog_rollback(cat);
	return (rv);
}

int
coord_hold_remove(coord_catalog *cat, const coord_audit_key *key, const char *actor,
    const char *backup_id, coffer_err *err)
{
	if (actor == NULL || actor[0] == '\0' || backup_id == NULL || backup_id[0] == '\0') {
		coffer_err_set(
		    err, COFFER_EINVAL, "removing a hold needs a backup id and an actor");
		return (coffer_err_hint(err, "pass --backup ID"));
	}
	char service[72], status[24];
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	if ((rv = lock_backup(
	         cat, backup_id, service, sizeof(service), status, sizeof(status), err)) != 0) {
		goto fail;
	}
	const char *v[] = { backup_id, actor };
	/* The one who placed a hold may not release it: with the role split
	 * (only role compliance releases), a compliance officer's key alone
	 * still cannot place a hold and take it away again. */
	PGresult *res = coord_catalog_adhoc(cat, "releasing the hold",
	    "UPDATE holds SET released_at = GREATEST(now(), placed_at), released_by = $2 "
	    "WHERE backup_id = $1 AND released_at IS NULL AND placed_by <> $2 "
	    "RETURNING id, reason, placed_by",
	    2, v, &rv, err);
	if (res == NULL) {
		goto fail;
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		res = coord_catalog_adhoc(cat, "reading the hold",
		    "SELECT placed_by FROM holds WHERE backup_id = $1 AND released_at IS NULL", 1,
		    v, &rv, err);
		if (res == NULL) {
			goto fail;
		}
		bool own = PQntuples(res) == 1;
		PQclear(res);
		coord_catalog_rollback(cat);
		if (own) {
			coffer_err_set(err, COFFER_EPERM,
			    "%s placed the hold on backup %s and may not release it", actor,
			    backup_id);
			return (coffer_err_hint(err,
			    "a second person with role compliance releases it (separation of duties)"));
		}
		coffer_err_set(err, COFFER_ENOENT, "backup %s has no active hold", backup_id);
		return (coffer_err_hint(err, "see `coffer status` for the active holds"));
	}
	cJSON *d = cJSON_CreateObject();
	if (d != NULL) {
		cJSON_AddStringToObject(d, "service", service);
		cJSON_AddNumberToObject(d, "hold_id", (double)col_i64(res, 0, 0));
		cJSON_AddStringToObject(d, "reason", PQgetvalue(res, 0, 1));
		cJSON_AddStringToObject(d, "placed_by", PQgetvalue(res, 0, 2));
		cJSON_AddStringToObject(d, "status", status);
	}
	PQclear(res);
	if ((rv = audit(cat, key, actor, "hold.removed", backup_id, d, err)) != 0 ||
	    (rv = coord_catalog_commit(cat, err)) != 0) {
		goto fail;
	}
	return (0);
fail:
	coord_catalog_rollback(cat);
	return (rv);
}

int
coord_holds_list(coord_catalog *cat, const char *service, int limit, cJSON **out, coffer_err *err)
{
	*out = NULL;
	if (limit < 1 || limit > 10000) {
		coffer_err_set(err, COFFER_EINVAL, "hold list limit %d is not 1..10000", limit);
		return (coffer_err_hint(err, "ask for fewer holds at a time"));
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *v[] = { service, lim };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "listing holds",
	    "SELECT h.backup_id, b.service, h.reason, h.placed_by, floor(extract(epoch FROM h.placed_at) * 1000)::bigint "
	    "FROM holds h JOIN backups b ON b.id = h.backup_id "
	    "WHERE h.released_at IS NULL AND ($1::text IS NULL OR b.service = $1) "
	    "ORDER BY h.placed_at, h.id LIMIT $2::integer",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *a = cJSON_CreateArray();
	for (int r = 0; a != NULL && r < PQntuples(res); r++) {
		cJSON *h = cJSON_CreateObject();
		if (h == NULL || !cJSON_AddItemToArray(a, h)) {
			cJSON_Delete(h);
			cJSON_Delete(a);
			a = NULL;
			break;
		}
		cJSON_AddStringToObject(h, "backup_id", PQgetvalue(res, r, 0));
		cJSON_AddStringToObject(h, "service", PQgetvalue(res, r, 1));
		cJSON_AddStringToObject(h, "reason", PQgetvalue(res, r, 2));
		cJSON_AddStringToObject(h, "placed_by", PQgetvalue(res, r, 3));
		add_time(h, "placed_at", col_i64(res, r, 4));
	}
	PQclear(res);
	if (a == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the hold list"));
	}
	*out = a;
	return (0);
}
