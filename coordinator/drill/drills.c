/*
 * Drills: scheduling, intake and alerts of restore drills, and the tick
 * that also starts the integrity sweep (coordinator/drill/integrity.c).
 * See coordinator/drill/drills.h.
 *
 * Design notes.
 * The drill row is created by the coordinator before the runner hears of
 * it, so a drill that never reports (runner offline, crashed mid-restore)
 * is a row the alerts can see running too long, never a silence. The
 * RunDrill sent to the runner is frozen into agent_commands.args when the
 * drill starts: a policy edited while the runner is offline does not change
 * a drill already promised, and the command stays owed until the runner
 * reports it done (as backup commands do).
 *
 * The runner's verdict is not taken on its word alone: a result whose
 * checks contain a failure, or that drilled another backup than the one it
 * was given, is recorded as failed whatever its ok says.
 *
 * Production system identifiers are those the service agents sent in their
 * hello: the runner compares its sandbox cluster with them and refuses to
 * drill into a production cluster, so a misconfigured sandbox conninfo can
 * never drop or overwrite a production database.
 */
#include "coordinator/drill/drill_internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/base/utf8.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"
#include "common/repo/repo.h"
#include "common/stream/digest.h"
#include "common/stream/filter.h"
#include "common/stream/sink.h"
#include "coordinator/catalog/worker.h"
#include "coordinator/watch/alerts.h"

#define CHECKS_MAX   64
#define PROD_IDS_MAX 256
#define CHANGE_BATCH 20

/* ---- catalog helpers ---- */

static bool
add_clean(cJSON *o, const char *key, const char *value, size_t max)
{
	char *c = coffer_utf8_clean(value, max);
	bool ok = c != NULL && cJSON_AddStringToObject(o, key, c) != NULL;
	free(c);
	return (ok);
}

/* ---- pure pieces ---- */

const char *
coord_drills_pick_repo(const coord_drill_policy *p, const char *last)
{
	switch (p->repository) {
	case COORD_DRILL_DR:
		return ("dr");
	case COORD_DRILL_ALTERNATE:
		return (last != NULL && strcmp(last, "primary") == 0 ? "dr" : "primary");
	default:
		return ("primary");
	}
}

int
coord_drills_next_due(
    const char *schedule, const char *tz, int64_t base_ms, int64_t *due_ms, coffer_err *err)
{
	coffer_cron *c = coffer_cron_parse(schedule, err);
	if (c == NULL) {
		return (COFFER_EINVAL);
	}
	coffer_tz *z = coffer_tz_load(tz != NULL ? tz : "UTC", err);
	if (z == NULL) {
		coffer_cron_free(c);
		return (COFFER_EINVAL);
	}
	int64_t next = 0;
	/* Slots are whole seconds: "strictly after base" in seconds. */
	int64_t base_s = base_ms >= 0 ? base_ms / 1000 : -((-base_ms + 999) / 1000);
	int rv = coffer_cron_next(c, z, base_s, &next, err);
	coffer_tz_free(z);
	coffer_cron_free(c);
	if (rv == 0) {
		*due_ms = next * 1000;
	}
	return (rv);
}

/* ---- starting a drill ---- */

static int refuse(coffer_err *err, int code, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
refuse(coffer_err *err, int code, const char *hint, const char *fmt, ...)
{
	char msg[COFFER_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	coffer_err_set(err, code, "%s", msg);
	if (hint != NULL) {
		coffer_err_hint(err, "%s", hint);
	}
	return (code);
}

/* The system identifiers of the production clusters (service agents'
 * hellos), into arr. */
static int
add_production_ids(coord_catalog *cat, cJSON *arr, coffer_err *err)
{
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading production system identifiers",
	    "SELECT DISTINCT hello->>'system_identifier' FROM agents WHERE role = 'service' "
	    "AND hello ? 'system_identifier' AND hello->>'system_identifier' ~ '^[0-9]{1,20}$' "
	    "ORDER BY 1 LIMIT "
	    "256", /* PROD_IDS_MAX */
	    0, NULL, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int i = 0; i < PQntuples(res); i++) {
		cJSON_AddItemToArray(arr, cJSON_CreateString(PQgetvalue(res, i, 0)));
	}
	PQclear(res);
	return (0);
}

/* Inside the start transaction: checks the runner may drill service. */
static int
check_runner(coord_catalog *cat, const char *service, const char *runner, coffer_err *err)
{
	int rv;
	const char *v[] = { runner, service };
	PGresult *res = coord_catalog_adhoc(cat, "reading the drill runner's enrollment",
	    "SELECT a.role, a.revoked_at IS NOT NULL, EXISTS (SELECT 1 FROM drill_runner_services s "
	    "WHERE s.agent = a.name AND s.service = $2) FROM agents a WHERE a.name = $1",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	char hint[300];
	snprintf(hint, sizeof(hint),
	    "enroll it: coffer agents enroll --agent %s --pubkey FILE --drill-runner --service %s",
	    runner, service);
	if (PQntuples(res) == 0) {
		PQclear(res);
		return (refuse(err, COFFER_ENOENT, hint,
		    "drill runner %s (drill.runner of %s) is not enrolled", runner, service));
	}
	bool is_runner = strcmp(PQgetvalue(res, 0, 0), "drill_runner") == 0;
	bool revoked = PQgetvalue(res, 0, 1)[0] == 't';
	bool may = PQgetvalue(res, 0, 2)[0] == 't';
	PQclear(res);
	if (!is_runner) {
		return (refuse(err, COFFER_ENOENT,
		    "set drill.runner to an agent enrolled with --drill-runner",
		    "agent %s is a service agent, not a drill runner", runner));
	}
	if (revoked) {
		return (
		    refuse(err, COFFER_ENOENT, "enroll a new runner and point drill.runner at it",
		        "drill runner %s was revoked", runner));
	}
	if (!may) {
		return (refuse(err, COFFER_ENOENT, hint,
		    "drill runner %s is not enrolled to drill service %s", runner, service));
	}
	return (0);
}

/* The backup to drill from repo, into id (and its finish time). */
static int
pick_backup(coord_catalog *cat, const coord_service_policy *p, const char *repo, int64_t now_ms,
    char *id, size_t idsize, coffer_err *err)
{
	char since[32];
	coffer_fmt_i64(since, p->drill.random ? now_ms - p->drill.window_ms : 0);
	const char *v[] = { p->name, since, repo };
	int rv;
	/* Logical backups only: the runner restores with pg_restore. */
	PGresult *res = coord_catalog_adhoc(cat, "choosing the backup to drill",
	    p->drill.random
	        ? "SELECT b.id FROM backups b WHERE b.service = $1 AND b.status = 'completed' "
	          "AND b.verify_state = 'verified' "
	          "AND b.kind = 'logical' AND COALESCE(b.settled_at, b.received_at) >= to_timestamp($2::bigint / 1000.0) AND ($3 = 'primary' OR "
	          "EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup_id = b.id AND c.repo = 'dr' "
	          "AND c.status = 'verified')) ORDER BY random() LIMIT 1"
	        : "SELECT b.id FROM backups b WHERE b.service = $1 AND b.status = 'completed' "
	          "AND b.verify_state = 'verified' "
	          "AND b.kind = 'logical' AND $2::bigint >= 0 AND ($3 = 'primary' OR "
	          "EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup_id = b.id AND c.repo = 'dr' "
	          "AND c.status = 'verified')) ORDER BY COALESCE(b.settled_at, b.received_at) DESC, b.id DESC LIMIT 1",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 0) {
		PQclear(res);
		char w[32];
		if (strcmp(repo, "dr") == 0) {
			return (refuse(err, COFFER_ENOENT,
			    "wait for a DR copy to be verified, or set drill.repository = primary",
			    "service %s has no completed logical backup with a verified DR copy%s%s",
			    p->name, p->drill.random ? " within drill.window = " : "",
			    p->drill.random
			        ? coffer_duration_format(w, sizeof(w), p->drill.window_ms)
			        : ""));
		}
		return (refuse(err, COFFER_ENOENT,
		    "run `coffer backup run --service NAME` first, or widen drill.window",
		    "service %s has no completed logical backup to drill%s%s", p->name,
		    p->drill.random ? " within drill.window = " : "",
		    p->drill.random ? coffer_duration_format(w, sizeof(w), p->drill.window_ms)
		                    : ""));
	}
	snprintf(id, idsize, "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	return (0);
}

/* The RunDrill as JSON (agent_commands.args), frozen at start. */
static cJSON *
run_args(const coord_service_policy *p, int64_t drill_id, const char *backup_id, const char *repo)
{
	const coord_drill_policy *d = &p->drill;
	cJSON *a = cJSON_CreateObject();
	if (a == NULL) {
		return (NULL);
	}
	cJSON_AddNumberToObject(a, "drill_id", (double)drill_id);
	cJSON_AddStringToObject(a, "service", p->name);
	cJSON_AddStringToObject(a, "runner", d->runner);
	cJSON_AddStringToObject(a, "backup_id", backup_id);
	cJSON_AddStringToObject(a, "repository", repo);
	cJSON_AddNumberToObject(a, "rto_minutes", (double)((d->rto_ms + 59999) / 60000));
	cJSON_AddStringToObject(
	    a, "freshness_query", d->freshness_query != NULL ? d->freshness_query : "");
	cJSON_AddNumberToObject(a, "freshness_max_lag_s", (double)(d->freshness_max_lag_ms / 1000));
	cJSON *as = cJSON_AddArrayToObject(a, "assertions");
	for (size_t i = 0; as != NULL && i < d->n_asserts; i++) {
		cJSON_AddItemToArray(as, cJSON_CreateString(d->asserts[i]));
	}
	cJSON_AddBoolToObject(a, "drop_sandbox_on_failure", !d->keep_sandbox);
	cJSON_AddArrayToObject(a, "production_system_ids");
	return (a);
}

static int
start_tx(coord_catalog *cat, const coord_audit_key *key, const coord_service_policy *p,
    const char *requested_by, int64_t now_ms, int64_t *drill_id, cJSON *info, coffer_err *err)
{
	int rv;
	const char *sv[] = { p->name };
	/* The service row serialises drill starts of one service. */
	PGresult *res = coord_catalog_adhoc(cat, "locking the service",
	    "SELECT 1 FROM services WHERE name = $1 "
	    "AND removed_at IS NULL FOR UPDATE",
	    1, sv, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool known = PQntuples(res) == 1;
	PQclear(res);
	if (!known) {
		return (
		    refuse(err, COFFER_ENOENT, "wait for the coordinator's next maintenance tick",
		        "service %s is not in the catalog yet", p->name));
	}
	if ((rv = check_runner(cat, p->name, p->drill.runner, err)) != 0) {
		return (rv);
	}
	res = coord_catalog_adhoc(cat, "reading the service's drills",
	    "SELECT (SELECT id FROM drills WHERE service = $1 AND status = 'running' ORDER BY id "
	    "LIMIT 1), (SELECT repo FROM drills WHERE service = $1 ORDER BY id DESC LIMIT 1)",
	    1, sv, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (!PQgetisnull(res, 0, 0)) {
		char running[32];
		snprintf(running, sizeof(running), "%s", PQgetvalue(res, 0, 0));
		PQclear(res);
		return (refuse(err, COFFER_EEXIST,
		    "wait for its result (coffer drill list), or for drill_overdue if the runner is "
		    "gone",
		    "drill %s of service %s is still running; one drill at a time per service",
		    running, p->name));
	}
	char last[16] = "";
	if (!PQgetisnull(res, 0, 1)) {
		snprintf(last, sizeof(last), "%s", PQgetvalue(res, 0, 1));
	}
	PQclear(res);
	const char *repo = coord_drills_pick_repo(&p->drill, last[0] != '\0' ? last : NULL);
	char backup_id[160];
	rv = pick_backup(cat, p, repo, now_ms, backup_id, sizeof(backup_id), err);
	if (rv == COFFER_ENOENT && p->drill.repository == COORD_DRILL_ALTERNATE &&
	    strcmp(repo, "dr") == 0) {
		/* Alternating with no verified DR copy yet: a primary drill still
		 * proves something, where no drill proves nothing. */
		coffer_err_clear(err);
		repo = "primary";
		rv = pick_backup(cat, p, repo, now_ms, backup_id, sizeof(backup_id), err);
	}
	if (rv != 0) {
		return (rv);
	}
	char now[32], rto[32];
	coffer_fmt_i64(now, now_ms);
	coffer_fmt_i64(rto, p->drill.rto_ms);
	const char *iv[] = { p->name, backup_id, now, rto, p->drill.runner, repo, requested_by };
	res = coord_catalog_adhoc(cat, "recording the drill",
	    "INSERT INTO drills (service, backup_id, status, started_at, rto_ms, runner, repo, "
	    "requested_by) VALUES ($1, $2, 'running', to_timestamp($3::bigint / 1000.0), $4, $5, $6, $7) RETURNING id",
	    7, iv, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	*drill_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	cJSON *args = run_args(p, *drill_id, backup_id, repo);
	if (args == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a drill command"));
	}
	if ((rv = add_production_ids(
	         cat, cJSON_GetObjectItem(args, "production_system_ids"), err)) != 0) {
		cJSON_Delete(args);
		return (rv);
	}
	char *atext = cJSON_PrintUnformatted(args);
	cJSON_Delete(args);
	if (atext == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a drill command"));
	}
	char id[32];
	coffer_fmt_i64(id, *drill_id);
	const char *cv[] = { p->name, atext, requested_by, id };
	res = coord_catalog_adhoc(cat, "queueing the drill command",
	    "WITH c AS (INSERT INTO agent_commands (service, kind, args, requested_by) "
	    "VALUES ($1, 'drill', $2::jsonb, $3) RETURNING id) "
	    "UPDATE drills SET command_id = (SELECT id FROM c) WHERE id = $4 RETURNING command_id",
	    4, cv, &rv, err);
	free(atext);
	if (res == NULL) {
		return (rv);
	}
	char command_id[32];
	snprintf(command_id, sizeof(command_id), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);

	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	cJSON_AddNumberToObject(d, "drill_id", (double)*drill_id);
	cJSON_AddStringToObject(d, "service", p->name);
	cJSON_AddStringToObject(d, "backup_id", backup_id);
	cJSON_AddStringToObject(d, "repository", repo);
	cJSON_AddStringToObject(d, "runner", p->drill.runner);
	cJSON_AddStringToObject(d, "requested_by", requested_by);
	cJSON_AddNumberToObject(d, "command_id", strtod(command_id, NULL));
	cJSON_AddNumberToObject(d, "rto_ms", (double)p->drill.rto_ms);
	cJSON_AddStringToObject(d, "policy_version", p->version);
	char *dtext = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (dtext == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	rv = coord_audit_append(
	    cat, key, requested_by, "backup.drill_started", backup_id, dtext, NULL, err);
	cJSON_free(dtext);
	if (rv == 0 && info != NULL) {
		cJSON_AddNumberToObject(info, "drill_id", (double)*drill_id);
		cJSON_AddStringToObject(info, "service", p->name);
		cJSON_AddStringToObject(info, "backup_id", backup_id);
		cJSON_AddStringToObject(info, "repository", repo);
		cJSON_AddStringToObject(info, "runner", p->drill.runner);
		cJSON_AddNumberToObject(info, "command_id", strtod(command_id, NULL));
	}
	return (rv);
}

int
coord_drills_start(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *requested_by, int64_t now_ms, int64_t *drill_id, cJSON *info,
    coffer_err *err)
{
	*drill_id = 0;
	const coord_service_policy *p = coord_config_service(cfg, service);
	if (p == NULL) {
		return (refuse(err, COFFER_ENOENT, "check the name with `coffer status`",
		    "service %s is not defined in the coordinator's configuration", service));
	}
	if (p->drill.runner == NULL) {
		char hint[200];
		snprintf(hint, sizeof(hint),
		    "set drill.runner in [service.%s] to an agent enrolled with --drill-runner",
		    service);
		return (
		    refuse(err, COFFER_EINVAL, hint, "service %s has no drill.runner", service));
	}
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	rv = start_tx(cat, key, p, requested_by, now_ms, drill_id, info, err);
	if (rv == 0) {
		rv = coord_catalog_commit(cat, err);
	} else {
		coord_catalog_rollback(cat);
	}
	if (rv != 0) {
		*drill_id = 0;
		return (rv);
	}
	coffer_log_info("drill started", "service=%s drill=%" PRId64 " by=%s", service, *drill_id,
	    requested_by);
	return (0);
}

/* ---- the schedule ---- */

/* When the service's next scheduled drill is due (its schedule is set),
 * and whether a drill is running. */
static int
due_of(coord_catalog *cat, const coord_service_policy *p, int64_t now_ms, int64_t *due_ms,
    bool *running, int64_t *running_since_ms, coffer_err *err)
{
	int rv;
	char now[32];
	coffer_fmt_i64(now, now_ms);
	const char *v[] = { p->name, p->drill.schedule, now };
	/* A new or changed schedule starts counting from now: history under
	 * another schedule does not make a drill overdue. */
	rv = coord_catalog_adhoc_exec(cat, "recording the drill schedule",
	    "INSERT INTO drill_schedules (service, schedule, since) VALUES ($1, $2, to_timestamp($3::bigint / 1000.0)) "
	    "ON CONFLICT (service) DO UPDATE SET schedule = EXCLUDED.schedule, since = "
	    "EXCLUDED.since WHERE drill_schedules.schedule <> EXCLUDED.schedule",
	    3, v, err);
	if (rv != 0) {
		return (rv);
	}
	const char *v1[] = { p->name };
	PGresult *res = coord_catalog_adhoc(cat, "reading the last drill",
	    "SELECT floor(extract(epoch FROM GREATEST(s.since, (SELECT max(started_at) "
	    "FROM drills d WHERE d.service = s.service))) * 1000)::bigint, "
	    "(SELECT floor(extract(epoch FROM min(started_at)) * 1000)::bigint FROM drills d "
	    "WHERE d.service = s.service "
	    "AND d.status = 'running') FROM drill_schedules s WHERE s.service = $1",
	    1, v1, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int64_t base = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	*running = !PQgetisnull(res, 0, 1);
	*running_since_ms = *running ? strtoll(PQgetvalue(res, 0, 1), NULL, 10) : 0;
	PQclear(res);
	return (coord_drills_next_due(p->drill.schedule, p->timezone, base, due_ms, err));
}

static int
schedule_pass(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    int64_t now_ms, coord_drills_stats *st, coffer_err *err)
{
	int last = 0;
	for (size_t i = 0; i < cfg->n_services; i++) {
		const coord_service_policy *p = &cfg->services[i];
		if (p->drill.schedule == NULL || p->drill.runner == NULL) {
			continue;
		}
		coffer_err e;
		coffer_err_clear(&e);
		int64_t due = 0, since = 0;
		bool running = false;
		int rv = due_of(cat, p, now_ms, &due, &running, &since, &e);
		if (rv == 0 && due <= now_ms && !running) {
			int64_t id = 0;
			rv = coord_drills_start(
			    cat, key, cfg, p->name, "schedule", now_ms, &id, NULL, &e);
			if (rv == 0) {
				st->started++;
			} else if (rv != COFFER_EUNAVAIL && rv != COFFER_EPG) {
				/* Not started: drill_overdue pages if this lasts. */
				st->not_started++;
				coffer_log_warn("scheduled drill not started",
				    "service=%s error=%s", p->name, e.msg);
				rv = 0;
			}
		}
		if (rv != 0) {
			coffer_log_error(
			    "drill schedule failed", "service=%s error=%s", p->name, e.msg);
			if (err != NULL) {
				*err = e;
			}
			last = rv;
			if (rv == COFFER_EUNAVAIL) {
				return (rv);
			}
		}
	}
	return (last);
}

/* ---- intake hooks ---- */

static bool
event_is(const Coffer__V1__Event *ev, int kind)
{
	return ((int)ev->kind_case == kind);
}

int
coord_drills_check_events(coord_catalog *cat, const char *agent, bool runner,
    const Coffer__V1__EventBatch *b, int64_t mark, int *status, char *why, size_t size,
    coffer_err *err)
{
	if (!runner) {
		for (size_t i = 0; i < b->n_events; i++) {
			const Coffer__V1__Event *ev = b->events[i];
			if ((int64_t)ev->seq > mark &&
			    event_is(ev, COFFER__V1__EVENT__KIND_DRILL_RESULT)) {
				*status = COFFER__V1__STATUS__STATUS_NOT_OWNER;
				snprintf(why, size,
				    "event seq %" PRIu64
				    " is a drill result; agent %s is a service agent, "
				    "and only a drill runner enrolled for the service may report drills",
				    ev->seq, agent);
				return (0);
			}
		}
		return (0);
	}
	int rv;
	const char *v[] = { agent };
	PGresult *res = coord_catalog_adhoc(cat, "reading the runner's services",
	    "SELECT service FROM drill_runner_services WHERE agent = $1 ORDER BY service", 1, v,
	    &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (size_t i = 0; i < b->n_events && *status == 0; i++) {
		const Coffer__V1__Event *ev = b->events[i];
		bool transient = event_is(ev, COFFER__V1__EVENT__KIND_HELLO) ||
		    event_is(ev, COFFER__V1__EVENT__KIND_HEARTBEAT);
		if (transient || (int64_t)ev->seq <= mark) {
			continue;
		}
		if (!event_is(ev, COFFER__V1__EVENT__KIND_DRILL_RESULT) &&
		    !event_is(ev, COFFER__V1__EVENT__KIND_COMMAND_DONE)) {
			*status = COFFER__V1__STATUS__STATUS_NOT_OWNER;
			snprintf(why, size,
			    "event seq %" PRIu64
			    " is not a drill result; agent %s is a drill runner and "
			    "may report only drill results and command completions",
			    ev->seq, agent);
			break;
		}
		bool may = false;
		for (int r = 0; r < PQntuples(res) && !may; r++) {
			may = strcmp(PQgetvalue(res, r, 0), ev->service) == 0;
		}
		if (!may) {
			char s[72];
			snprintf(s, sizeof(s), "%.64s", ev->service);
			for (char *c = s; *c != '\0'; c++) {
				*c = (*c >= 0x20 && *c < 0x7f) ? *c : '?';
			}
			*status = COFFER__V1__STATUS__STATUS_NOT_OWNER;
			snprintf(why, size,
			    "event seq %" PRIu64 " is about service \"%s\"; drill runner %s is not "
			    "enrolled to drill it",
			    ev->seq, s, agent);
			break;
		}
		if (event_is(ev, COFFER__V1__EVENT__KIND_DRILL_RESULT) &&
		    ev->drill_result == NULL) {
			*status = COFFER__V1__STATUS__STATUS_MALFORMED;
			snprintf(why, size,
			    "event seq %" PRIu64 " is a drill result without its content", ev->seq);
			break;
		}
		if (event_is(ev, COFFER__V1__EVENT__KIND_DRILL_RESULT)) {
			char id[32];
			snprintf(id, sizeof(id), "%" PRIu64, ev->drill_result->drill_id);
			const char *dv[] = { id, ev->service, agent };
			PGresult *d = coord_catalog_adhoc(cat, "reading the reported drill",
			    "SELECT 1 FROM drills WHERE id = $1::bigint AND service = $2 AND runner = $3 "
			    "FOR UPDATE",
			    3, dv, &rv, err);
			if (d == NULL) {
				PQclear(res);
				return (rv);
			}
			if (PQntuples(d) == 0) {
				*status = COFFER__V1__STATUS__STATUS_NOT_OWNER;
				snprintf(why, size,
				    "event seq %" PRIu64
				    " reports drill %s, which was not handed to "
				    "runner %s for that service",
				    ev->seq, id, agent);
			}
			PQclear(d);
		}
	}
	PQclear(res);
	return (0);
}

/* The audit row of a finished drill. */
static int
audit_result(coord_catalog *cat, const coord_audit_key *key, const char *actor, const char *service,
    int64_t drill_id, const char *backup_id, const char *repo, bool ok,
    const Coffer__V1__DrillResult *r, int64_t rto_ms, const char *failure, coffer_err *err)
{
	cJSON *d = cJSON_CreateObject();
	if (d == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	cJSON_AddNumberToObject(d, "drill_id", (double)drill_id);
	cJSON_AddStringToObject(d, "service", service);
	cJSON_AddStringToObject(d, "backup_id", backup_id);
	cJSON_AddStringToObject(d, "repository", repo);
	cJSON_AddStringToObject(d, "result", ok ? "passed" : "failed");
	cJSON_AddNumberToObject(d, "rto_ms", (double)rto_ms);
	bool mem = true;
	if (r != NULL) {
		cJSON_AddNumberToObject(d, "restore_ms", (double)r->restore_ms);
		cJSON_AddNumberToObject(d, "total_ms", (double)r->total_ms);
		cJSON_AddBoolToObject(d, "within_rto", r->restore_ms <= rto_ms);
		mem = add_clean(d, "sandbox", r->sandbox, 128);
		cJSON *checks = cJSON_AddArrayToObject(d, "checks");
		for (size_t i = 0; mem && checks != NULL && i < r->n_checks && i < CHECKS_MAX;
		     i++) {
			cJSON *c = cJSON_CreateObject();
			mem = c != NULL && add_clean(c, "name", r->checks[i]->name, 64) &&
			    add_clean(c, "detail", r->checks[i]->detail, 256);
			if (c != NULL) {
				cJSON_AddBoolToObject(c, "ok", r->checks[i]->ok);
				cJSON_AddItemToArray(checks, c);
			}
		}
	}
	if (failure != NULL) {
		mem = mem && add_clean(d, "failure", failure, 512);
	}
	char *text = mem ? cJSON_PrintUnformatted(d) : NULL;
	cJSON_Delete(d);
	if (text == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row"));
	}
	int rv = coord_audit_append(
	    cat, key, actor, "backup.drill_completed", backup_id, text, NULL, err);
	cJSON_free(text);
	return (rv);
}

static int
apply_result(coord_catalog *cat, const coord_audit_key *key, const char *agent,
    const Coffer__V1__Event *ev, coffer_err *err)
{
	const Coffer__V1__DrillResult *r = ev->drill_result;
	char id[32];
	snprintf(id, sizeof(id), "%" PRIu64, r->drill_id);
	const char *v[] = { id, ev->service, agent };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading the drill",
	    "SELECT backup_id, repo, COALESCE(rto_ms, 0) FROM drills WHERE id = $1::bigint "
	    "AND service = $2 AND runner = $3 AND status = 'running' FOR UPDATE",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) == 0) {
		/* Finished already (a late duplicate): the event is on record. */
		PQclear(res);
		return (0);
	}
	char backup_id[160], repo[16];
	snprintf(backup_id, sizeof(backup_id), "%s", PQgetvalue(res, 0, 0));
	snprintf(repo, sizeof(repo), "%s", PQgetvalue(res, 0, 1));
	int64_t rto_ms = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);

	bool ok = r->ok && r->n_checks > 0;
	char failure[600] = "";
	cJSON *checks = cJSON_CreateArray();
	if (checks == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for drill checks"));
	}
	for (size_t i = 0; i < r->n_checks && i < CHECKS_MAX; i++) {
		const Coffer__V1__CheckResult *c = r->checks[i];
		cJSON *o = cJSON_CreateObject();
		if (o == NULL || !add_clean(o, "name", c->name, 64) ||
		    !add_clean(o, "detail", c->detail, 512)) {
			cJSON_Delete(o);
			cJSON_Delete(checks);
			return (coffer_err_set(err, COFFER_ENOMEM, "no memory for drill checks"));
		}
		cJSON_AddBoolToObject(o, "ok", c->ok);
		cJSON_AddItemToArray(checks, o);
		if (!c->ok && ok) {
			ok = false;
		}
		if (!c->ok && failure[0] == '\0') {
			char *n = coffer_utf8_clean(c->name, 64),
			     *dt = coffer_utf8_clean(c->detail, 400);
			snprintf(failure, sizeof(failure), "%s: %s", n != NULL ? n : "?",
			    dt != NULL ? dt : "");
			free(n);
			free(dt);
		}
	}
	if (strcmp(r->backup_id, backup_id) != 0) {
		ok = false;
		snprintf(failure, sizeof(failure), "the runner drilled backup %.128s, not %s",
		    r->backup_id, backup_id);
	}
	if (!ok && failure[0] == '\0') {
		char *f = coffer_utf8_clean(
		    r->failure[0] != '\0' ? r->failure : "the runner reported no checks", 500);
		snprintf(failure, sizeof(failure), "%s", f != NULL ? f : "failed");
		free(f);
	} else if (!ok && r->failure[0] != '\0') {
		/* The runner's own line says it best when it has one. */
		char *f = coffer_utf8_clean(r->failure, 500);
		if (f != NULL) {
			snprintf(failure, sizeof(failure), "%s", f);
		}
		free(f);
	}
	char *ctext = cJSON_PrintUnformatted(checks);
	cJSON_Delete(checks);
	char *sandbox = coffer_utf8_clean(r->sandbox, 128);
	if (ctext == NULL || sandbox == NULL) {
		cJSON_free(ctext);
		free(sandbox);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a drill row"));
	}
	char restore[32], total[32];
	coffer_fmt_i64(restore, r->restore_ms > 0 ? r->restore_ms : 0);
	coffer_fmt_i64(total, r->total_ms > 0 ? r->total_ms : 0);
	const char *uv[] = { id, ok ? "passed" : "failed", restore, total, ctext,
		ok ? NULL : failure, sandbox };
	rv = coord_catalog_adhoc_exec(cat, "recording the drill result",
	    "UPDATE drills SET status = $2, finished_at = GREATEST(now(), started_at), "
	    "received_at = now(), restore_ms = $3, total_ms = $4, checks = $5::jsonb, "
	    "failure_reason = $6, sandbox = NULLIF($7, '') WHERE id = $1::bigint",
	    7, uv, err);
	cJSON_free(ctext);
	free(sandbox);
	if (rv == 0) {
		rv = audit_result(cat, key, agent, ev->service, (int64_t)r->drill_id, backup_id,
		    repo, ok, r, rto_ms, ok ? NULL : failure, err);
	}
	return (rv);
}

/* A drill command the runner gave up on without a result (refused the
 * sandbox, could not start): the drill fails with its reason. */
static int
apply_done(coord_catalog *cat, const coord_audit_key *key, const char *agent,
    const Coffer__V1__Event *ev, coffer_err *err)
{
	const Coffer__V1__CommandDone *c = ev->command_done;
	if (c->ok) {
		return (0);
	}
	char id[32];
	snprintf(id, sizeof(id), "%" PRIu64, c->command_id);
	char *detail = coffer_utf8_clean(
	    c->detail[0] != '\0' ? c->detail : "the runner gave up on the drill", 500);
	if (detail == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for a drill row"));
	}
	const char *v[] = { id, agent, detail };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "failing the drill",
	    "UPDATE drills SET status = 'failed', finished_at = GREATEST(now(), started_at), "
	    "received_at = now(), failure_reason = $3 WHERE command_id = $1::bigint AND runner = $2 "
	    "AND status = 'running' RETURNING id, service, backup_id, repo, COALESCE(rto_ms, 0)",
	    3, v, &rv, err);
	if (res != NULL && PQntuples(res) == 1) {
		rv = audit_result(cat, key, agent, PQgetvalue(res, 0, 1),
		    strtoll(PQgetvalue(res, 0, 0), NULL, 10), PQgetvalue(res, 0, 2),
		    PQgetvalue(res, 0, 3), false, NULL, strtoll(PQgetvalue(res, 0, 4), NULL, 10),
		    detail, err);
	}
	PQclear(res);
	free(detail);
	return (rv);
}

int
coord_drills_apply(coord_catalog *cat, const coord_audit_key *key, const char *agent,
    const Coffer__V1__Event *ev, coffer_err *err)
{
	if (event_is(ev, COFFER__V1__EVENT__KIND_DRILL_RESULT) && ev->drill_result != NULL) {
		return (apply_result(cat, key, agent, ev, err));
	}
	if (event_is(ev, COFFER__V1__EVENT__KIND_COMMAND_DONE) && ev->command_done != NULL) {
		return (apply_done(cat, key, agent, ev, err));
	}
	return (0);
}

static char *
json_str(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (strdup(cJSON_IsString(v) && v->valuestring != NULL ? v->valuestring : ""));
}

static double
json_num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (cJSON_IsNumber(v) ? v->valuedouble : 0);
}

static char **
json_strs(const cJSON *o, const char *k, size_t *n)
{
	const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, k);
	int count = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
	*n = 0;
	char **out = calloc((size_t)count + 1, sizeof(*out));
	if (out == NULL) {
		return (NULL);
	}
	const cJSON *e;
	cJSON_ArrayForEach(e, a)
	{
		if (cJSON_IsString(e) && (out[*n] = strdup(e->valuestring)) != NULL) {
			(*n)++;
		}
	}
	return (out);
}

static void
free_strs(char **s, size_t n)
{
	for (size_t i = 0; s != NULL && i < n; i++) {
		free(s[i]);
	}
	free(s);
}

static void
command_free(Coffer__V1__Command *c)
{
	if (c == NULL) {
		return;
	}
	Coffer__V1__RunDrill *d = c->run_drill;
	if (d != NULL) {
		free(d->service);
		free(d->backup_id);
		free(d->repository);
		free(d->freshness_query);
		free_strs(d->assertions, d->n_assertions);
		free_strs(d->production_system_ids, d->n_production_system_ids);
		free(d);
	}
	free(c);
}

/* The command from its frozen args; NULL when out of memory. */
static Coffer__V1__Command *
command_build(uint64_t id, const char *args_text)
{
	cJSON *a = cJSON_Parse(args_text);
	Coffer__V1__Command *c = calloc(1, sizeof(*c));
	Coffer__V1__RunDrill *d = calloc(1, sizeof(*d));
	if (a == NULL || c == NULL || d == NULL) {
		cJSON_Delete(a);
		free(c);
		free(d);
		return (NULL);
	}
	coffer__v1__command__init(c);
	coffer__v1__run_drill__init(d);
	c->id = id;
	c->kind_case = COFFER__V1__COMMAND__KIND_RUN_DRILL;
	c->run_drill = d;
	d->drill_id = (uint64_t)json_num(a, "drill_id");
	d->service = json_str(a, "service");
	d->backup_id = json_str(a, "backup_id");
	d->repository = json_str(a, "repository");
	d->rto_minutes = (uint32_t)json_num(a, "rto_minutes");
	d->freshness_query = json_str(a, "freshness_query");
	d->freshness_max_lag_s = (int64_t)json_num(a, "freshness_max_lag_s");
	d->assertions = json_strs(a, "assertions", &d->n_assertions);
	d->drop_sandbox_on_failure =
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "drop_sandbox_on_failure"));
	d->production_system_ids =
	    json_strs(a, "production_system_ids", &d->n_production_system_ids);
	cJSON_Delete(a);
	if (d->service == NULL || d->backup_id == NULL || d->repository == NULL ||
	    d->freshness_query == NULL || d->assertions == NULL ||
	    d->production_system_ids == NULL) {
		command_free(c);
		return (NULL);
	}
	return (c);
}

int
coord_drills_take_commands(
    coord_catalog *cat, const char *runner, coord_drill_commands *out, coffer_err *err)
{
	int rv;
	const char *v[] = { runner };
	PGresult *res = coord_catalog_adhoc(cat, "handing out drill commands",
	    "UPDATE agent_commands SET delivered_to = $1, delivered_at = coalesce(delivered_at, "
	    "now()) WHERE id IN (SELECT id FROM agent_commands WHERE kind = 'drill' "
	    "AND done_at IS NULL AND args->>'runner' = $1 AND (delivered_to IS NULL OR "
	    "delivered_to = $1) ORDER BY id LIMIT 4 FOR UPDATE SKIP LOCKED) " /* MAX_COMMANDS */
	    "RETURNING id, args::text",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int i = 0; i < PQntuples(res) && out->n < COORD_DRILLS_MAX_COMMANDS; i++) {
		Coffer__V1__Command *c =
		    command_build(strtoull(PQgetvalue(res, i, 0), NULL, 10), PQgetvalue(res, i, 1));
		if (c == NULL) {
			PQclear(res);
			coord_drills_commands_clear(out);
			return (
			    coffer_err_set(err, COFFER_ENOMEM, "no memory for a drill command"));
		}
		out->cmds[out->n++] = c;
	}
	PQclear(res);
	return (0);
}

void
coord_drills_commands_clear(coord_drill_commands *out)
{
	for (size_t i = 0; i < out->n; i++) {
		command_free(out->cmds[i]);
		out->cmds[i] = NULL;
	}
	out->n = 0;
}

/* ---- alerts and change events ---- */

int
drill_set_alert(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *check, bool active, const char *severity, const char *summary,
    cJSON *details, int64_t now_ms, coord_drills_stats *st, coffer_err *err)
{
	char *dtext = details != NULL ? cJSON_PrintUnformatted(details) : NULL;
	cJSON_Delete(details);
	bool changed = false;
	int rv = coord_alerts_set(
	    cat, key, cfg, service, check, active, severity, summary, dtext, now_ms, &changed, err);
	free(dtext);
	if (rv == 0 && changed) {
		if (active) {
			st->triggered++;
		} else {
			st->resolved++;
		}
	}
	return (rv);
}

static int
eval_drill_failed(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_service_policy *p, int64_t now_ms, coord_drills_stats *st, coffer_err *err)
{
	int rv;
	const char *v[] = { p->name };
	PGresult *res = coord_catalog_adhoc(cat, "reading the last finished drill",
	    "SELECT id, status, backup_id, repo, COALESCE(failure_reason, ''), to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM drills WHERE service = $1 AND status <> 'running' "
	    "ORDER BY finished_at DESC, id DESC LIMIT 1",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "failed") == 0;
	char summary[1100] = "";
	cJSON *d = cJSON_CreateObject();
	if (active) {
		snprintf(summary, sizeof(summary),
		    "%s: restore drill %s of backup %s (%s) failed: %s", p->name,
		    PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 3),
		    PQgetvalue(res, 0, 4));
		cJSON_AddNumberToObject(d, "drill_id", strtod(PQgetvalue(res, 0, 0), NULL));
		cJSON_AddStringToObject(d, "backup_id", PQgetvalue(res, 0, 2));
		cJSON_AddStringToObject(d, "repository", PQgetvalue(res, 0, 3));
		cJSON_AddStringToObject(d, "failure", PQgetvalue(res, 0, 4));
		cJSON_AddStringToObject(d, "finished_at", PQgetvalue(res, 0, 5));
	}
	PQclear(res);
	return (drill_set_alert(cat, key, cfg, p->name, COORD_ALERT_DRILL_FAILED, active,
	    "critical", summary, d, now_ms, st, err));
}

/*
 * Whether an open drill_overdue page has seen its recovery: for a due drill
 * that did not start (details.due_at), a drill of the service started since
 * that due time; for a drill without a result (details.drill_id), that
 * drill no longer running. The current evaluation alone is not enough: a
 * changed drill.schedule counts from the change (due_of), and drill.rto or
 * drill.overdue_after may change, so a policy sync would otherwise clear
 * the page with no drill done. *cleared is true when no page is open, or it
 * names neither (written before it did).
 */
static int
overdue_cleared(coord_catalog *cat, const coord_service_policy *p, bool *cleared, coffer_err *err)
{
	char dedup[300];
	snprintf(dedup, sizeof(dedup), "coffer/%s/%s", p->name, COORD_ALERT_DRILL_OVERDUE);
	const char *v[] = { dedup, p->name };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading an open drill_overdue page",
	    "SELECT CASE WHEN a.details ? 'due_at' THEN EXISTS (SELECT 1 FROM drills d "
	    "  WHERE d.service = $2 AND d.started_at >= (a.details->>'due_at')::timestamptz) "
	    "WHEN a.details ? 'drill_id' THEN NOT EXISTS (SELECT 1 FROM drills d "
	    "  WHERE d.id = (a.details->>'drill_id')::bigint AND d.status = 'running') "
	    "ELSE true END FROM alerts a WHERE a.dedup_key = $1 AND a.state = 'triggered'",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	*cleared = PQntuples(res) == 0 || strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return (0);
}

static int
eval_drill_overdue(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_service_policy *p, int64_t now_ms, coord_drills_stats *st, coffer_err *err)
{
	const coord_drill_policy *dp = &p->drill;
	char summary[600] = "", at[40], lim[32];
	cJSON *d = cJSON_CreateObject();
	bool active = false;
	int rv = 0;
	if (dp->schedule != NULL) {
		int64_t due = 0, since = 0;
		bool running = false;
		if ((rv = due_of(cat, p, now_ms, &due, &running, &since, err)) != 0) {
			cJSON_Delete(d);
			return (rv);
		}
		if (!running && due + dp->overdue_after_ms < now_ms) {
			active = true;
			snprintf(summary, sizeof(summary),
			    "%s: the restore drill due at %s has not started (drill.overdue_after = %s)",
			    p->name, coffer_time_format(at, sizeof(at), due),
			    coffer_duration_format(lim, sizeof(lim), dp->overdue_after_ms));
			cJSON_AddStringToObject(d, "due_at", at);
		}
	}
	if (!active) {
		const char *v[] = { p->name };
		PGresult *res = coord_catalog_adhoc(cat, "reading running drills",
		    "SELECT id, floor(extract(epoch FROM started_at) * 1000)::bigint, COALESCE(rto_ms, 0), COALESCE(runner, '') "
		    "FROM drills WHERE service = $1 AND status = 'running' ORDER BY started_at LIMIT 1",
		    1, v, &rv, err);
		if (res == NULL) {
			cJSON_Delete(d);
			return (rv);
		}
		if (PQntuples(res) == 1) {
			int64_t started = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
			int64_t rto = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
			if (started + rto + dp->overdue_after_ms < now_ms) {
				active = true;
				snprintf(summary, sizeof(summary),
				    "%s: restore drill %s started at %s has no result after drill.rto "
				    "+ drill.overdue_after (%s); is drill runner %s running?",
				    p->name, PQgetvalue(res, 0, 0),
				    coffer_time_format(at, sizeof(at), started),
				    coffer_duration_format(
				        lim, sizeof(lim), rto + dp->overdue_after_ms),
				    PQgetvalue(res, 0, 3));
				cJSON_AddNumberToObject(
				    d, "drill_id", strtod(PQgetvalue(res, 0, 0), NULL));
				cJSON_AddStringToObject(d, "started_at", at);
				cJSON_AddStringToObject(d, "runner", PQgetvalue(res, 0, 3));
			}
		}
		PQclear(res);
	}
	if (!active) {
		bool cleared = true;
		if ((rv = overdue_cleared(cat, p, &cleared, err)) != 0) {
			cJSON_Delete(d);
			return (rv);
		}
		active = !cleared; /* held open: no transition, nothing is sent */
	}
	return (drill_set_alert(cat, key, cfg, p->name, COORD_ALERT_DRILL_OVERDUE, active, "error",
	    summary, d, now_ms, st, err));
}

/* One change event per passed drill not yet announced. */
static int
drill_changes(coord_catalog *cat, const coord_config *cfg, int64_t now_ms, coord_drills_stats *st,
    coffer_err *err)
{
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	PGresult *res = coord_catalog_adhoc(cat, "reading passed drills",
	    "SELECT id, service, backup_id, repo, COALESCE(restore_ms, 0), COALESCE(rto_ms, 0), floor(extract(epoch FROM finished_at) * 1000)::bigint FROM drills WHERE status = 'passed' AND announced_at IS NULL "
	    "ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED", /* CHANGE_BATCH */
	    0, NULL, &rv, err);
	for (int i = 0; res != NULL && rv == 0 && i < PQntuples(res); i++) {
		const char *service = PQgetvalue(res, i, 1);
		char summary[600], r[32], o[32];
		int64_t restore = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		int64_t rto = strtoll(PQgetvalue(res, i, 5), NULL, 10);
		snprintf(summary, sizeof(summary),
		    "%s: restore drill %s of backup %s (%s) passed; restore took %s (RTO %s)",
		    service, PQgetvalue(res, i, 0), PQgetvalue(res, i, 2), PQgetvalue(res, i, 3),
		    coffer_duration_format(r, sizeof(r), restore),
		    coffer_duration_format(o, sizeof(o), rto));
		cJSON *d = cJSON_CreateObject();
		cJSON_AddStringToObject(d, "service", service);
		cJSON_AddNumberToObject(d, "drill_id", strtod(PQgetvalue(res, i, 0), NULL));
		cJSON_AddStringToObject(d, "backup_id", PQgetvalue(res, i, 2));
		cJSON_AddStringToObject(d, "repository", PQgetvalue(res, i, 3));
		cJSON_AddNumberToObject(d, "restore_ms", (double)restore);
		cJSON_AddNumberToObject(d, "rto_ms", (double)rto);
		rv = coord_alerts_change(cat, cfg,
		    coord_config_service(cfg, service) != NULL ? service : NULL, "drill_passed",
		    summary, d, strtoll(PQgetvalue(res, i, 6), NULL, 10), now_ms, err);
		if (rv == 0) {
			const char *v[] = { PQgetvalue(res, i, 0) };
			rv = coord_catalog_adhoc_exec(cat, "marking the drill announced",
			    "UPDATE drills SET announced_at = now() WHERE id = $1::bigint", 1, v,
			    err);
		}
		if (rv == 0) {
			st->changes++;
		}
	}
	PQclear(res);
	if (rv == 0) {
		return (coord_catalog_commit(cat, err));
	}
	coord_catalog_rollback(cat);
	return (rv);
}

/* ---- the tick ---- */

int
coord_drills_new(const coord_config *cfg, coord_drills **out, coffer_err *err)
{
	coord_drills *d = calloc(1, sizeof(*d));
	if (d == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the drill scheduler"));
	}
	d->cfg = cfg;
	*out = d;
	return (0);
}

void
coord_drills_free(coord_drills *d)
{
	if (d == NULL) {
		return;
	}
	atomic_store(&d->stop, true);
	coord_worker_stop(d->worker);
	coord_worker_stop(d->vworker);
	for (int i = 0; i < 2; i++) {
		coffer_repo_close(d->repo[i]);
		coffer_repo_close(d->vrepo[i]);
	}
	free(d);
}

/* Logs e and keeps it as the result unless an earlier error is kept. */
static int
note(int rv, const char *what, const coffer_err *e, int *last, coffer_err *err)
{
	if (rv == 0) {
		return (0);
	}
	coffer_log_error(what, "error=%s", e->msg);
	*last = rv;
	if (err != NULL) {
		*err = *e;
	}
	return (rv);
}

void
coord_drills_record_soon(coord_drills *d, int64_t now_ms)
{
	if (d != NULL && d->worker != NULL) {
		coord_worker_kick(d->worker, now_ms);
	}
}

int
coord_drills_tick(coord_drills *d, coord_catalog *cat, const coord_audit_key *key, int64_t now_ms,
    coord_drills_stats *st, coffer_err *err)
{
	coord_drills_stats local;
	if (st == NULL) {
		st = &local;
	}
	memset(st, 0, sizeof(*st));
	const coord_config *cfg = d->cfg;
	int last = 0;
	coffer_err e;
	coffer_err_clear(&e);
	if (note(schedule_pass(cat, key, cfg, now_ms, st, &e), "drill schedule failed", &e, &last,
	        err) == COFFER_EUNAVAIL) {
		return (last);
	}
	bool due = false;
	coffer_err_clear(&e);
	int rv = integrity_sweep_due(cat, cfg, now_ms, &due, &e);
	if (rv == 0 && d->worker != NULL) {
		/* Every tick: the worker records new backups' object versions
		 * and sweeps when the sweep is due. */
		coord_worker_kick(d->worker, now_ms);
	} else if (rv == 0 && due) {
		rv = coord_drills_sweep(d, cat, key, now_ms, st, &e);
	}
	if (note(rv, "integrity sweep failed", &e, &last, err) == COFFER_EUNAVAIL) {
		return (last);
	}
	/* Every tick: the run finds nothing cheaply when all is verified. */
	coffer_err_clear(&e);
	rv = 0;
	if (d->vworker != NULL) {
		coord_worker_kick(d->vworker, now_ms);
	} else {
		bool more = false;
		rv = coord_drills_verify(d, cat, key, &more, &e);
	}
	if (note(rv, "backup verification failed", &e, &last, err) == COFFER_EUNAVAIL) {
		return (last);
	}
	for (size_t i = 0; i < cfg->n_services; i++) {
		const coord_service_policy *p = &cfg->services[i];
		coffer_err_clear(&e);
		rv = 0;
		if (p->drill.runner != NULL) {
			rv = eval_drill_failed(cat, key, cfg, p, now_ms, st, &e);
			if (rv == 0) {
				rv = eval_drill_overdue(cat, key, cfg, p, now_ms, st, &e);
			}
		}
		if (rv == 0) {
			rv = integrity_eval_failed(cat, key, cfg, p, now_ms, st, &e);
		}
		if (rv == 0) {
			rv = integrity_eval_replaced(cat, key, cfg, p, now_ms, st, &e);
		}
		if (note(rv, "drill alert evaluation failed", &e, &last, err) == COFFER_EUNAVAIL) {
			return (last);
		}
	}
	coffer_err_clear(&e);
	rv = drill_changes(cat, cfg, now_ms, st, &e);
	if (rv == 0) {
		rv = integrity_eval_sweep(cat, key, cfg, now_ms,
		    coffer_config_has_section(cfg->ini, "repository.primary"), st, &e);
	}
	note(rv, "drill change events failed", &e, &last, err);
	return (last);
}

/* ---- the operator's view ---- */

static void
add_nullable_text(cJSON *o, const char *k, const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col)) {
		cJSON_AddNullToObject(o, k);
	} else {
		cJSON_AddStringToObject(o, k, PQgetvalue(res, row, col));
	}
}

static void
add_nullable_num(cJSON *o, const char *k, const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col)) {
		cJSON_AddNullToObject(o, k);
	} else {
		cJSON_AddNumberToObject(o, k, strtod(PQgetvalue(res, row, col), NULL));
	}
}

#define DRILL_COLS                                                                                 \
	"id, service, backup_id, repo, status, runner, requested_by, "                             \
	"to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "               \
	"to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "              \
	"restore_ms, total_ms, rto_ms, "                                                           \
	"CASE WHEN restore_ms IS NULL OR rto_ms IS NULL THEN NULL ELSE restore_ms <= rto_ms END, " \
	"sandbox, failure_reason, checks::text"

static cJSON *
drill_object(const PGresult *res, int i)
{
	cJSON *o = cJSON_CreateObject();
	if (o == NULL) {
		return (NULL);
	}
	cJSON_AddNumberToObject(o, "id", strtod(PQgetvalue(res, i, 0), NULL));
	add_nullable_text(o, "service", res, i, 1);
	add_nullable_text(o, "backup_id", res, i, 2);
	add_nullable_text(o, "repository", res, i, 3);
	add_nullable_text(o, "status", res, i, 4);
	add_nullable_text(o, "runner", res, i, 5);
	add_nullable_text(o, "requested_by", res, i, 6);
	add_nullable_text(o, "started_at", res, i, 7);
	add_nullable_text(o, "finished_at", res, i, 8);
	add_nullable_num(o, "restore_ms", res, i, 9);
	add_nullable_num(o, "total_ms", res, i, 10);
	add_nullable_num(o, "rto_ms", res, i, 11);
	if (PQgetisnull(res, i, 12)) {
		cJSON_AddNullToObject(o, "within_rto");
	} else {
		cJSON_AddBoolToObject(o, "within_rto", PQgetvalue(res, i, 12)[0] == 't');
	}
	add_nullable_text(o, "sandbox", res, i, 13);
	add_nullable_text(o, "failure_reason", res, i, 14);
	cJSON *checks = cJSON_Parse(PQgetvalue(res, i, 15));
	cJSON_AddItemToObject(o, "checks", checks != NULL ? checks : cJSON_CreateArray());
	return (o);
}

int
coord_drills_list(coord_catalog *cat, const char *service, int limit, cJSON **out, coffer_err *err)
{
	*out = NULL;
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit < 1 ? 1 : limit > 1000 ? 1000 : limit);
	const char *v[] = { service, lim };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "listing drills",
	    "SELECT " DRILL_COLS " FROM drills WHERE ($1::text IS NULL OR service = $1) "
	    "ORDER BY started_at DESC, id DESC LIMIT $2::integer",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *arr = cJSON_CreateArray();
	for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
		cJSON *o = drill_object(res, i);
		if (o == NULL) {
			cJSON_Delete(arr);
			arr = NULL;
			break;
		}
		cJSON_AddItemToArray(arr, o);
	}
	PQclear(res);
	if (arr == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the drill list"));
	}
	*out = arr;
	return (0);
}

int
coord_drills_status(coord_catalog *cat, const char *service, cJSON *o, coffer_err *err)
{
	const char *v[] = { service };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "reading the last drill",
	    "SELECT " DRILL_COLS
	    " FROM drills WHERE service = $1 ORDER BY started_at DESC, id DESC "
	    "LIMIT 1",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *last = PQntuples(res) == 1 ? drill_object(res, 0) : cJSON_CreateNull();
	PQclear(res);
	if (last == NULL || !cJSON_AddItemToObject(o, "last_drill", last)) {
		cJSON_Delete(last);
		return (coffer_err_set(err, COFFER_ENOMEM, "no memory for the last drill"));
	}
	return (0);
}
