/*
 * Alerts: conditions, their state in the catalog, and the alert outbox.
 * See coordinator/watch/alerts.h for what it promises.
 *
 * Design notes.
 * The state machine is one row per dedup_key in `alerts`, read FOR UPDATE
 * and changed only on a transition, so a condition that stays true across
 * a hundred evaluations (or a coordinator restart) pages once. Evaluators
 * take one advisory transaction lock per transaction: without it, two
 * coordinators could both see "resolved" for a key that has no row yet
 * (FOR UPDATE locks nothing that does not exist) and both enqueue a
 * trigger.
 *
 * Each service is evaluated in its own transaction, so a service whose
 * schedule no longer parses, or whose rows trip a bug, cannot keep the
 * others from paging. Every check reads the catalog with the injected time
 * as a parameter and never calls now(), so tests drive time and a
 * coordinator whose catalog clock drifts still agrees with itself.
 *
 * The outbox payload is the PagerDuty body without routing_key: the key is
 * a credential and is added by the sender from the configuration, which is
 * also what lets an operator rotate it without rewriting queued rows.
 *
 * Memory: the size check reads at most [alerts] size_history + 1 rows; the
 * change events at most CHANGE_BATCH rows per service per evaluation (the
 * next evaluation continues from the mark); nothing grows with the catalog.
 */
#include "coordinator/watch/alerts.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "common/base/clock.h"
#include "common/base/fmt.h"
#include "common/base/log.h"
#include "common/base/utf8.h"
#include "common/conf/cron.h"
#include "common/conf/tz.h"

#define SUMMARY_MAX 1024
/* The least share of the mean a size must move by to be an anomaly. */
#define SIZE_MIN_DEVIATION 0.10
#define COORD_ACTOR        "coordinator"
#define GLOBAL_SERVICE     "_coordinator"

/* When the coordinator learnt a backup's outcome: settled_at, stamped by a
 * catalog trigger in our transaction's time; received_at for rows older
 * than that trigger. finished_at is the agent's clock: an agent a day ahead
 * would hide its failures from "the latest backup" until tomorrow, and one
 * three hours behind would seem to have missed its slot. Every check that
 * asks "when" about a backup uses this instead. */
#define SETTLED "COALESCE(settled_at, received_at)"

static const char *
owner_of(const coord_config *cfg, const char *service)
{
	const coord_service_policy *p = service != NULL ? coord_config_service(cfg, service) : NULL;
	return (p != NULL && p->owner != NULL ? p->owner : "platform");
}

/* Appends one outbox row; payload is consumed. */
static int
enqueue(coord_catalog *cat, const char *dedup_key, const char *action, const char *target,
    const char *service, cJSON *payload, const char *now_ms_text, coffer_err *err)
{
	char *text = cJSON_PrintUnformatted(payload);
	cJSON_Delete(payload);
	if (text == NULL) {
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "building an alert payload: out of memory"));
	}
	const char *vals[] = { dedup_key, action, target, text, service, now_ms_text };
	int rv = coord_catalog_adhoc_exec(cat, "queueing an alert",
	    "INSERT INTO alert_outbox (dedup_key, action, target, payload, service, created_at, "
	    "next_attempt_at) VALUES ($1, $2, $3, $4::jsonb, $5, "
	    "to_timestamp($6::bigint / 1000.0), to_timestamp($6::bigint / 1000.0))",
	    6, vals, err);
	free(text);
	return (rv);
}

static char coordinator_host[256];

static void
coordinator_host_init(void)
{
	if (gethostname(coordinator_host, sizeof(coordinator_host) - 1) != 0 ||
	    coordinator_host[0] == '\0') {
		snprintf(coordinator_host, sizeof(coordinator_host), "coffer-coordinator");
	}
	coordinator_host[sizeof(coordinator_host) - 1] = '\0';
}

static cJSON *
details_parse(const char *details_json)
{
	cJSON *d = details_json != NULL ? cJSON_Parse(details_json) : NULL;
	if (d == NULL || !cJSON_IsObject(d)) {
		cJSON_Delete(d);
		d = cJSON_CreateObject();
	}
	return (d);
}

const char *
coord_alerts_coordinator_host(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, coordinator_host_init);
	return (coordinator_host);
}

/*
 * PagerDuty's payload.source: where the problem is, so the responder knows
 * which machine to log in to. The affected agent's host (as its last hello
 * said: agents.hello->>'hostname'): the agent the alert names (a per-agent
 * page's subject, or details.agent), else the service's agent heard from
 * last; the service's name when no agent of it ever said hello; the
 * coordinator's own host for the coordinator's alerts. A catalog error here
 * costs the page nothing: it falls back to the service name.
 */
static void
pd_source(coord_catalog *cat, const char *service, const char *subject, const cJSON *details,
    char *out, size_t size)
{
	if (service == NULL) {
		snprintf(out, size, "%s", coord_alerts_coordinator_host());
		return;
	}
	snprintf(out, size, "%s", service);
	const cJSON *a =
	    details != NULL ? cJSON_GetObjectItemCaseSensitive(details, "agent") : NULL;
	const char *agent = subject != NULL  ? subject
	    : a != NULL && cJSON_IsString(a) ? a->valuestring
	                                     : "";
	const char *v[] = { agent, service };
	int rv;
	coffer_err e = { 0 };
	PGresult *res = coord_catalog_adhoc(cat, "reading the affected agent's host",
	    "SELECT hello->>'hostname' FROM agents WHERE COALESCE(hello->>'hostname', '') <> '' "
	    "AND (name = $1 OR ($1 = '' AND service = $2 AND revoked_at IS NULL)) "
	    "ORDER BY last_contact_at DESC NULLS LAST, name LIMIT 1",
	    2, v, &rv, &e);
	if (res == NULL) {
		return;
	}
	if (PQntuples(res) == 1) {
		snprintf(out, size, "%s", PQgetvalue(res, 0, 0));
		coffer_utf8_cut(out, 255);
	}
	PQclear(res);
}

/* The PagerDuty body (without routing_key) for a trigger or resolve. Links
 * to the runbook and the dashboard and client_url are added when it is
 * sent (coordinator/watch/notify.c), from the configuration of the day. */
static cJSON *
pd_event(const coord_config *cfg, const char *dedup_key, const char *service, const char *check,
    bool trigger, const char *severity, const char *summary, const char *details_json,
    const char *source, int64_t now_ms)
{
	char ts[40];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event_action", trigger ? "trigger" : "resolve");
	cJSON_AddStringToObject(o, "dedup_key", dedup_key);
	cJSON_AddStringToObject(o, "client", "coffer");
	if (trigger) {
		cJSON *p = cJSON_AddObjectToObject(o, "payload");
		cJSON_AddStringToObject(p, "summary", summary);
		cJSON_AddStringToObject(p, "source", source);
		cJSON_AddStringToObject(p, "severity", severity);
		cJSON_AddStringToObject(p, "timestamp", coffer_time_format(ts, sizeof(ts), now_ms));
		cJSON_AddStringToObject(p, "component", service != NULL ? service : "coordinator");
		cJSON_AddStringToObject(p, "group", owner_of(cfg, service));
		cJSON_AddStringToObject(p, "class", check);
		cJSON_AddItemToObject(p, "custom_details", details_parse(details_json));
	}
	return (o);
}

static cJSON *
webhook_event(const char *dedup_key, const char *service, const char *check, const char *event,
    const char *severity, const char *summary, int64_t now_ms)
{
	char ts[40];
	cJSON *o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "event", event);
	cJSON_AddStringToObject(o, "dedup_key", dedup_key);
	if (service != NULL) {
		cJSON_AddStringToObject(o, "service", service);
	} else {
		cJSON_AddNullToObject(o, "service");
	}
	cJSON_AddStringToObject(o, "check", check);
	cJSON_AddStringToObject(o, "severity", severity);
	cJSON_AddStringToObject(o, "summary", summary);
	cJSON_AddStringToObject(o, "at", coffer_time_format(ts, sizeof(ts), now_ms));
	cJSON_AddStringToObject(o, "text", summary);
	return (o);
}

static bool
webhook_on(const coord_config *cfg)
{
	const char *w = coffer_config_str(cfg->ini, "alerts", "webhook_url");
	return (w != NULL && w[0] != '\0');
}

/* One condition's transition, inside the caller's transaction (which holds
 * COORD_ALERTS_LOCK). */
static void
dedup_key(char *out, size_t size, const char *service, const char *check, const char *subject)
{
	snprintf(out, size, "coffer/%s/%s%s%s", service != NULL ? service : GLOBAL_SERVICE, check,
	    subject != NULL ? "/" : "", subject != NULL ? subject : "");
}

/* subject: the agent a per-agent check is about (NULL: the service's). */
static int
set_tx(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg, const char *service,
    const char *check, const char *subject, bool active, const char *severity,
    const char *summary_in, const char *details_json, int64_t now_ms, bool *changed,
    coffer_err *err)
{
	char dedup[300], now_text[32], summary[SUMMARY_MAX + 1];
	dedup_key(dedup, sizeof(dedup), service, check, subject);
	snprintf(now_text, sizeof(now_text), "%" PRId64, now_ms);
	snprintf(summary, sizeof(summary), "%s",
	    summary_in != NULL && summary_in[0] != '\0' ? summary_in : dedup);
	coffer_utf8_cut(summary, SUMMARY_MAX);
	if (changed != NULL) {
		*changed = false;
	}
	int rv;
	const char *v1[] = { dedup };
	PGresult *res = coord_catalog_adhoc(cat, "reading an alert's state",
	    "SELECT state FROM alerts WHERE dedup_key = $1 FOR UPDATE", 1, v1, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool was = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "triggered") == 0;
	PQclear(res);
	if (was == active) {
		return (0);
	}
	cJSON *d = details_parse(details_json);
	char *dtext = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	if (dtext == NULL) {
		return (
		    coffer_err_set(err, COFFER_ENOMEM, "building alert details: out of memory"));
	}
	if (active) {
		const char *v[] = { dedup, service, check, severity, summary, dtext, now_text };
		rv = coord_catalog_adhoc_exec(cat, "recording a triggered alert",
		    "INSERT INTO alerts (dedup_key, service, check_name, state, severity, summary, "
		    "details, first_triggered_at, last_changed_at, resolved_at) VALUES ($1, $2, $3, "
		    "'triggered', $4, $5, $6::jsonb, to_timestamp($7::bigint / 1000.0), "
		    "to_timestamp($7::bigint / 1000.0), NULL) ON CONFLICT (dedup_key) DO UPDATE SET "
		    "state = 'triggered', severity = EXCLUDED.severity, summary = EXCLUDED.summary, "
		    "details = EXCLUDED.details, first_triggered_at = EXCLUDED.first_triggered_at, "
		    "last_changed_at = EXCLUDED.last_changed_at, resolved_at = NULL",
		    7, v, err);
	} else {
		const char *v[] = { dedup, now_text };
		rv = coord_catalog_adhoc_exec(cat, "recording a resolved alert",
		    "UPDATE alerts SET state = 'resolved', last_changed_at = "
		    "to_timestamp($2::bigint / 1000.0), resolved_at = to_timestamp($2::bigint / 1000.0) "
		    "WHERE dedup_key = $1",
		    2, v, err);
	}
	if (rv == 0) {
		char source[256];
		cJSON *dj = details_parse(dtext);
		pd_source(cat, service, subject, dj, source, sizeof(source));
		cJSON_Delete(dj);
		rv = enqueue(cat, dedup, active ? "trigger" : "resolve", "pagerduty", service,
		    pd_event(cfg, dedup, service, check, active, severity, summary, dtext, source,
		        now_ms),
		    now_text, err);
	}
	if (rv == 0 && webhook_on(cfg)) {
		rv = enqueue(cat, dedup, active ? "trigger" : "resolve", "webhook", service,
		    webhook_event(dedup, service, check, active ? "triggered" : "resolved",
		        severity, summary, now_ms),
		    now_text, err);
	}
	if (rv == 0) {
		cJSON *a = cJSON_CreateObject();
		cJSON_AddStringToObject(a, "dedup_key", dedup);
		cJSON_AddStringToObject(a, "check", check);
		cJSON_AddStringToObject(a, "severity", severity);
		cJSON_AddStringToObject(a, "summary", summary);
		cJSON_AddItemToObject(a, "details", details_parse(dtext));
		char *atext = cJSON_PrintUnformatted(a);
		cJSON_Delete(a);
		rv = atext == NULL
		    ? coffer_err_set(err, COFFER_ENOMEM, "building an audit row: out of memory")
		    : coord_audit_append(cat, key, COORD_ACTOR,
		          active ? "alert.triggered" : "alert.resolved",
		          service != NULL ? service : GLOBAL_SERVICE, atext, NULL, err);
		free(atext);
	}
	free(dtext);
	if (rv == 0) {
		if (changed != NULL) {
			*changed = true;
		}
		coffer_log(active ? COFFER_LOG_WARN : COFFER_LOG_INFO,
		    active ? "alert triggered" : "alert resolved", "dedup_key=%s", dedup);
	}
	return (rv);
}

static int
lock_tx(coord_catalog *cat, coffer_err *err)
{
	char k[32];
	snprintf(k, sizeof(k), "%lld", (long long)COORD_ALERTS_LOCK);
	const char *v[] = { k };
	return (coord_catalog_adhoc_exec(
	    cat, "taking the alerts lock", "SELECT pg_advisory_xact_lock($1::bigint)", 1, v, err));
}

int
coord_alerts_set(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const char *service, const char *check, bool active, const char *severity, const char *summary,
    const char *details_json, int64_t now_ms, bool *changed, coffer_err *err)
{
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	rv = lock_tx(cat, err);
	if (rv == 0) {
		rv = set_tx(cat, key, cfg, service, check, NULL, active, severity, summary,
		    details_json, now_ms, changed, err);
	}
	if (rv == 0) {
		return (coord_catalog_commit(cat, err));
	}
	coord_catalog_rollback(cat);
	if (changed != NULL) {
		*changed = false;
	}
	return (rv);
}

int
coord_alerts_change(coord_catalog *cat, const coord_config *cfg, const char *service,
    const char *kind, const char *summary_in, cJSON *details, int64_t at_ms, int64_t now_ms,
    coffer_err *err)
{
	(void)cfg; /* the routing key is added at send time */
	char dedup[300], summary[SUMMARY_MAX + 1], ts[40], now_text[32];
	snprintf(
	    dedup, sizeof(dedup), "coffer/%s/%s", service != NULL ? service : GLOBAL_SERVICE, kind);
	snprintf(summary, sizeof(summary), "%s", summary_in != NULL ? summary_in : dedup);
	coffer_utf8_cut(summary, SUMMARY_MAX);
	snprintf(now_text, sizeof(now_text), "%" PRId64, now_ms);
	char source[256];
	pd_source(cat, service, NULL, details, source, sizeof(source));
	cJSON *o = cJSON_CreateObject();
	cJSON *p = cJSON_AddObjectToObject(o, "payload");
	cJSON_AddStringToObject(p, "summary", summary);
	cJSON_AddStringToObject(p, "source", source);
	cJSON_AddStringToObject(p, "timestamp", coffer_time_format(ts, sizeof(ts), at_ms));
	cJSON_AddItemToObject(
	    p, "custom_details", details != NULL ? details : cJSON_CreateObject());
	return (enqueue(cat, dedup, "change", "pagerduty", service, o, now_text, err));
}

/* ---- the checks ---- */

typedef struct svc_ctx {
	coord_catalog *cat;
	const coord_audit_key *key;
	const coord_config *cfg;
	const coord_service_policy *p;
	int64_t now_ms;
	char now_text[32];
	coord_alerts_stats *st;
} svc_ctx;

static int
apply_to(svc_ctx *c, const char *check, const char *subject, bool active, const char *severity,
    const char *summary, cJSON *details, coffer_err *err)
{
	char *dtext = details != NULL ? cJSON_PrintUnformatted(details) : NULL;
	cJSON_Delete(details);
	bool changed = false;
	int rv = set_tx(c->cat, c->key, c->cfg, c->p->name, check, subject, active, severity,
	    summary, dtext, c->now_ms, &changed, err);
	free(dtext);
	if (rv == 0 && changed) {
		if (active) {
			c->st->triggered++;
		} else {
			c->st->resolved++;
		}
	}
	return (rv);
}

static int
apply(svc_ctx *c, const char *check, bool active, const char *severity, const char *summary,
    cJSON *details, coffer_err *err)
{
	return (apply_to(c, check, NULL, active, severity, summary, details, err));
}

/*
 * Whether check's page is open for this service, and the text of one of
 * its recorded details (detail may be NULL; out gets "" when the page is
 * not open or has no such detail). Read inside the evaluation's
 * transaction, under the alerts lock, so it is the state set_tx will see.
 */
static int
open_detail_of(svc_ctx *c, const char *check, const char *subject, const char *detail, bool *open,
    char *out, size_t size, coffer_err *err)
{
	char dedup[300];
	dedup_key(dedup, sizeof(dedup), c->p->name, check, subject);
	const char *v[] = { dedup, detail != NULL ? detail : "" };
	int rv;
	PGresult *res = coord_catalog_adhoc(c->cat, "reading an open alert",
	    "SELECT COALESCE(details->>$2, '') FROM alerts WHERE dedup_key = $1 "
	    "AND state = 'triggered'",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	*open = PQntuples(res) == 1;
	if (out != NULL && size > 0) {
		snprintf(out, size, "%s", *open ? PQgetvalue(res, 0, 0) : "");
	}
	PQclear(res);
	return (0);
}

static int
open_detail(svc_ctx *c, const char *check, const char *detail, bool *open, char *out, size_t size,
    coffer_err *err)
{
	return (open_detail_of(c, check, NULL, detail, open, out, size, err));
}

/*
 * Open while the latest finished backup failed. Retention moves a failed
 * backup to pending_delete at once and later to deleted, and retires old
 * successes the same way: that is bookkeeping, not an outcome, so every
 * finished row counts whatever its status became, and failure_reason (which
 * retention never clears) tells a failure from a success. Only a later
 * backup that succeeds resolves the page, and a success is one the
 * coordinator verified (coordinator/drill/verify.c): a completion still
 * unverified, or rejected, neither resolves nor raises it.
 */
static int
check_failed(svc_ctx *c, coffer_err *err)
{
	int rv;
	const char *v[] = { c->p->name, c->now_text };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading the latest backup",
	    "SELECT id, failure_reason IS NOT NULL, COALESCE(failure_reason, '') FROM backups "
	    "WHERE service = $1 AND status IN ('completed', 'failed', 'pending_delete', 'deleted') "
	    "AND (failure_reason IS NOT NULL OR verify_state = 'verified') "
	    "AND finished_at IS NOT NULL AND " SETTLED " <= to_timestamp($2::bigint / 1000.0) "
	    "ORDER BY " SETTLED " DESC, id DESC LIMIT 1",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	char summary[SUMMARY_MAX + 1] = "";
	cJSON *d = cJSON_CreateObject();
	if (active) {
		snprintf(summary, sizeof(summary), "%s: backup %s failed: %s", c->p->name,
		    PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2));
		cJSON_AddStringToObject(d, "backup_id", PQgetvalue(res, 0, 0));
		cJSON_AddStringToObject(d, "failure_reason", PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_BACKUP_FAILED, active, "error", summary, d, err));
}

/*
 * A page for a missed slot stays open until a backup has succeeded since
 * that slot (the one the page named): the slot the current evaluation looks
 * at moves with the schedule, the time zone and completion_window, so a
 * policy change, or a slot that no longer exists, would otherwise clear the
 * page although nothing was backed up. *cleared is true when no page is
 * open, or an open one names no slot (written before it did).
 */
static int
missed_cleared(svc_ctx *c, bool *cleared, coffer_err *err)
{
	bool open = false;
	char slot[64];
	*cleared = true;
	int rv = open_detail(
	    c, COORD_ALERT_BACKUP_MISSED, "scheduled_at", &open, slot, sizeof(slot), err);
	if (rv != 0 || !open || slot[0] == '\0') {
		return (rv);
	}
	const char *v[] = { c->p->name, slot, c->now_text };
	PGresult *res = coord_catalog_adhoc(c->cat, "looking for a backup after the missed run",
	    "SELECT EXISTS (SELECT 1 FROM backups WHERE service = $1 "
	    "AND status IN ('completed', 'pending_delete', 'deleted') AND failure_reason IS NULL "
	    "AND verify_state = 'verified' AND " SETTLED " >= $2::timestamptz "
	    "AND " SETTLED " <= to_timestamp($3::bigint / 1000.0))",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	*cleared = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return (0);
}

static int
check_missed(svc_ctx *c, coffer_err *err)
{
	int64_t window = coffer_config_duration_ms(c->cfg->ini, "alerts", "completion_window");
	coffer_cron *cron = coffer_cron_parse(c->p->schedule, err);
	if (cron == NULL) {
		return (coffer_err_wrap(err, "service %s: schedule", c->p->name));
	}
	coffer_tz *tz = coffer_tz_load(c->p->timezone != NULL ? c->p->timezone : "UTC", err);
	if (tz == NULL) {
		coffer_cron_free(cron);
		return (coffer_err_wrap(err, "service %s: timezone", c->p->name));
	}
	int64_t at_s = (c->now_ms - window) / 1000, slot_s = 0;
	int rv = coffer_cron_prev(cron, tz, at_s, &slot_s, err);
	coffer_cron_free(cron);
	coffer_tz_free(tz);
	bool active = false;
	if (rv == COFFER_ENOENT) {
		/* No slot within the horizon: nothing can have been missed. */
		coffer_err_clear(err);
	} else if (rv != 0) {
		return (coffer_err_wrap(err, "service %s: previous scheduled run", c->p->name));
	} else {
		char slot_text[32];
		snprintf(slot_text, sizeof(slot_text), "%" PRId64, slot_s * 1000);
		/* A slot before the coordinator knew the service was never its
		 * to miss: a new service must not page for the night before it
		 * existed. */
		const char *v[] = { c->p->name, slot_text, c->now_text };
		PGresult *res = coord_catalog_adhoc(c->cat,
		    "looking for a backup after the scheduled run",
		    "SELECT (SELECT created_at > to_timestamp($2::bigint / 1000.0) FROM services "
		    "WHERE name = $1), EXISTS (SELECT 1 FROM backups WHERE service = $1 "
		    "AND status IN ('completed', 'pending_delete', 'deleted') "
		    "AND failure_reason IS NULL AND verify_state = 'verified' "
		    "AND " SETTLED " >= to_timestamp($2::bigint / 1000.0) "
		    "AND " SETTLED " <= to_timestamp($3::bigint / 1000.0))",
		    3, v, &rv, err);
		if (res == NULL) {
			return (rv);
		}
		bool young = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		bool done = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		PQclear(res);
		active = !young && !done;
	}
	char summary[SUMMARY_MAX + 1] = "", slot[40], win[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		coffer_time_format(slot, sizeof(slot), slot_s * 1000);
		coffer_duration_format(win, sizeof(win), window);
		snprintf(summary, sizeof(summary),
		    "%s: the backup scheduled for %s did not complete within %s", c->p->name, slot,
		    win);
		cJSON_AddStringToObject(d, "scheduled_at", slot);
		cJSON_AddStringToObject(d, "completion_window", win);
		cJSON_AddStringToObject(d, "schedule", c->p->schedule);
	} else {
		bool cleared = true;
		if ((rv = missed_cleared(c, &cleared, err)) != 0) {
			cJSON_Delete(d);
			return (rv);
		}
		active = !cleared; /* held open: no transition, nothing is sent */
	}
	return (apply(c, COORD_ALERT_BACKUP_MISSED, active, "critical", summary, d, err));
}

static int
check_quiet(svc_ctx *c, coffer_err *err)
{
	int64_t quiet = coffer_config_duration_ms(c->cfg->ini, "alerts", "agent_quiet");
	int rv;
	const char *v[] = { c->p->name };
	/* Enrolment counts as contact so that a new agent has agent_quiet to
	 * connect before it pages; the fourth column leaves it out. */
	PGresult *res = coord_catalog_adhoc(c->cat, "reading the service's agents' last contact",
	    "SELECT count(*), COALESCE(floor(extract(epoch FROM max(GREATEST(last_contact_at, "
	    "heartbeat_at, hello_at, enrolled_at))) * 1000)::bigint, 0), "
	    "COALESCE(string_agg(name, ',' ORDER BY name), ''), "
	    "COALESCE(floor(extract(epoch FROM max(GREATEST(last_contact_at, heartbeat_at, "
	    "hello_at))) * 1000)::bigint, 0) FROM agents "
	    "WHERE service = $1 AND revoked_at IS NULL",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	long long n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	int64_t last = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	int64_t heard = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
	bool active = n > 0 && last < c->now_ms - quiet;
	if (!active && n > 0 && heard < c->now_ms - quiet) {
		/* Only enrolment is recent: an open page stays open until an
		 * agent is heard from. Enrolling a replacement is not its
		 * recovery. (A page clears when its agents are revoked: the
		 * operator has retired them, and backup_missed speaks for a
		 * service left without any.) */
		bool open = false;
		if ((rv = open_detail(c, COORD_ALERT_AGENT_QUIET, NULL, &open, NULL, 0, err)) !=
		    0) {
			PQclear(res);
			return (rv);
		}
		active = open;
	}
	char summary[SUMMARY_MAX + 1] = "", at[40], q[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		coffer_time_format(at, sizeof(at), last);
		coffer_duration_format(q, sizeof(q), quiet);
		snprintf(summary, sizeof(summary),
		    "%s: no agent has been heard from for more than %s (last contact %s)",
		    c->p->name, q, at);
		cJSON_AddStringToObject(d, "last_contact", at);
		cJSON_AddStringToObject(d, "agents", PQgetvalue(res, 0, 2));
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_AGENT_QUIET, active, "error", summary, d, err));
}

/*
 * One agent that has gone silent while another of its service talks: the
 * service-wide agent_quiet speaks only when none is heard, so without this
 * a dead replica's agent would go unnoticed as long as the primary's talks.
 * When no agent of the service is heard the service-wide page says it (one
 * silence, one page), so this one is not raised then; a page already open
 * stays open until that agent is heard from, whatever the others do.
 */
static int
agent_quiet_one(
    svc_ctx *c, const PGresult *res, int row, bool another_heard, int64_t quiet, coffer_err *err)
{
	const char *name = PQgetvalue(res, row, 0);
	int64_t last = strtoll(PQgetvalue(res, row, 1), NULL, 10);
	int64_t heard = strtoll(PQgetvalue(res, row, 2), NULL, 10);
	bool open = strcmp(PQgetvalue(res, row, 7), "t") == 0;
	/* Enrolment counts as contact for raising (a new agent has agent_quiet
	 * to connect), not for clearing. */
	bool active = open ? heard < c->now_ms - quiet : another_heard && last < c->now_ms - quiet;
	char summary[SUMMARY_MAX + 1] = "", at[40] = "never", q[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		if (heard > 0) {
			coffer_time_format(at, sizeof(at), heard);
		}
		coffer_duration_format(q, sizeof(q), quiet);
		snprintf(summary, sizeof(summary),
		    "%s: agent %s has not been heard from for more than %s (last contact %s)",
		    c->p->name, name, q, at);
		cJSON_AddStringToObject(d, "agent", name);
		cJSON_AddStringToObject(d, "last_contact", at);
	}
	if (active == open) {
		/* Nothing to change: with a thousand agents, a tick reads one row
		 * per agent and writes none. */
		cJSON_Delete(d);
		return (0);
	}
	return (apply_to(c, COORD_ALERT_AGENT_QUIET, name, active, "error", summary, d, err));
}

/*
 * An agent whose state directory is full or nearly so, as its newest
 * heartbeat says: it cannot record a backup's outcome or WAL it archives,
 * and it would once have gone dark. Raised by a write that failed for lack
 * of space or free bytes below [alerts] agent_state_free_min; cleared by a
 * heartbeat that says neither. An agent that does not report its state
 * directory changes nothing (not knowing is not a recovery).
 */
static int
agent_disk_full_one(svc_ctx *c, const PGresult *res, int row, uint64_t free_min, coffer_err *err)
{
	const char *name = PQgetvalue(res, row, 0);
	bool reported = strcmp(PQgetvalue(res, row, 3), "t") == 0;
	uint64_t free_bytes = strtoull(PQgetvalue(res, row, 4), NULL, 10);
	bool nospace = strcmp(PQgetvalue(res, row, 5), "t") == 0;
	int64_t since = strtoll(PQgetvalue(res, row, 6), NULL, 10);
	bool open = strcmp(PQgetvalue(res, row, 8), "t") == 0;
	bool active = reported ? nospace || free_bytes < free_min : open;
	if (active == open) {
		return (0);
	}
	char summary[SUMMARY_MAX + 1] = "", at[40] = "", fb[32], fm[32];
	cJSON *d = cJSON_CreateObject();
	if (active && reported) {
		snprintf(fb, sizeof(fb), "%" PRIu64, free_bytes);
		snprintf(fm, sizeof(fm), "%" PRIu64, free_min);
		if (nospace) {
			coffer_time_format(at, sizeof(at), since);
			snprintf(summary, sizeof(summary),
			    "%s: agent %s's state directory is full: durable writes have failed for "
			    "lack of space since %s (%s bytes free); events wait until space is freed",
			    c->p->name, name, at, fb);
		} else {
			snprintf(summary, sizeof(summary),
			    "%s: agent %s's state directory has %s bytes free, below "
			    "agent_state_free_min (%s bytes)",
			    c->p->name, name, fb, fm);
		}
		cJSON_AddStringToObject(d, "agent", name);
		cJSON_AddNumberToObject(d, "free_bytes", (double)free_bytes);
		cJSON_AddNumberToObject(d, "free_min_bytes", (double)free_min);
		cJSON_AddBoolToObject(d, "write_failed_nospace", nospace);
		if (nospace) {
			cJSON_AddStringToObject(d, "failing_since", at);
		}
	}
	return (
	    apply_to(c, COORD_ALERT_AGENT_DISK_FULL, name, active, "critical", summary, d, err));
}

/* The per-agent checks, over the service's agents that are not revoked;
 * then the pages of agents revoked (or gone) since are resolved: the
 * operator has retired them. */
static int
check_agents(svc_ctx *c, coffer_err *err)
{
	int64_t quiet = coffer_config_duration_ms(c->cfg->ini, "alerts", "agent_quiet");
	uint64_t free_min = coffer_config_size(c->cfg->ini, "alerts", "agent_state_free_min");
	int rv;
	const char *v[] = { c->p->name, COORD_ALERT_AGENT_QUIET, COORD_ALERT_AGENT_DISK_FULL };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading the service's agents",
	    "SELECT name, COALESCE(floor(extract(epoch FROM GREATEST(last_contact_at, "
	    "heartbeat_at, hello_at, enrolled_at)) * 1000)::bigint, 0), "
	    "COALESCE(floor(extract(epoch FROM GREATEST(last_contact_at, heartbeat_at, "
	    "hello_at)) * 1000)::bigint, 0), state_free_bytes IS NOT NULL, "
	    "COALESCE(state_free_bytes, 0), COALESCE(state_write_nospace, false), "
	    "COALESCE(floor(extract(epoch FROM state_nospace_since) * 1000)::bigint, 0), "
	    "EXISTS (SELECT 1 FROM alerts WHERE dedup_key = 'coffer/' || $1 || '/' || $2 || "
	    "'/' || name AND state = 'triggered'), "
	    "EXISTS (SELECT 1 FROM alerts WHERE dedup_key = 'coffer/' || $1 || '/' || $3 || "
	    "'/' || name AND state = 'triggered') "
	    "FROM agents WHERE service = $1 AND revoked_at IS NULL ORDER BY name",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int n = PQntuples(res);
	bool any_heard = false;
	for (int i = 0; i < n; i++) {
		if (strtoll(PQgetvalue(res, i, 2), NULL, 10) >= c->now_ms - quiet) {
			any_heard = true;
		}
	}
	for (int i = 0; rv == 0 && i < n; i++) {
		/* A quiet agent is not the one heard: any_heard means another. */
		rv = agent_quiet_one(c, res, i, any_heard, quiet, err);
		if (rv == 0) {
			rv = agent_disk_full_one(c, res, i, free_min, err);
		}
	}
	PQclear(res);
	if (rv != 0) {
		return (rv);
	}
	const char *v2[] = { c->p->name, COORD_ALERT_AGENT_QUIET, COORD_ALERT_AGENT_DISK_FULL };
	res = coord_catalog_adhoc(c->cat, "reading the pages of retired agents",
	    "SELECT check_name, details->>'agent' FROM alerts x WHERE service = $1 "
	    "AND state = 'triggered' AND check_name IN ($2, $3) AND details ? 'agent' "
	    "AND NOT EXISTS (SELECT 1 FROM agents a WHERE a.name = x.details->>'agent' "
	    "AND a.service = $1 AND a.revoked_at IS NULL)",
	    3, v2, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int i = 0; rv == 0 && i < PQntuples(res); i++) {
		rv = apply_to(
		    c, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), false, "error", "", NULL, err);
	}
	PQclear(res);
	return (rv);
}

/*
 * Open while an agent of the service has a clock skew estimate beyond
 * [alerts] agent_clock_skew_max (coordinator/intake/skew.c). The estimate
 * changes only when the agent's envelopes are measured, so the page
 * resolves only when a later measurement is inside the bound (or the agent
 * is revoked); an agent that falls silent keeps it open, and agent_quiet
 * speaks for the silence.
 */
static int
check_skew(svc_ctx *c, coffer_err *err)
{
	int64_t bound = coffer_config_duration_ms(c->cfg->ini, "alerts", "agent_clock_skew_max");
	char b[32];
	snprintf(b, sizeof(b), "%" PRId64, bound);
	int rv;
	const char *v[] = { c->p->name, b };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading the service's agents' clock skew",
	    "SELECT count(*), COALESCE(string_agg(name || '=' || clock_skew_ms, ',' ORDER BY name), "
	    "''), COALESCE((array_agg(clock_skew_ms ORDER BY abs(clock_skew_ms) DESC, name))[1], 0) "
	    "FROM agents WHERE service = $1 AND revoked_at IS NULL AND clock_skew_ms IS NOT NULL "
	    "AND abs(clock_skew_ms) > $2::bigint",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = strtoll(PQgetvalue(res, 0, 0), NULL, 10) > 0;
	char summary[SUMMARY_MAX + 1] = "", worst[32], lim[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		int64_t w = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		coffer_duration_format(worst, sizeof(worst), w < 0 ? -w : w);
		coffer_duration_format(lim, sizeof(lim), bound);
		snprintf(summary, sizeof(summary),
		    "%s: an agent's clock is %s %s the coordinator's (bound %s; skew in ms: %s); "
		    "check NTP on the agent's host",
		    c->p->name, worst, w < 0 ? "behind" : "ahead of", lim, PQgetvalue(res, 0, 1));
		cJSON_AddStringToObject(d, "agents_skew_ms", PQgetvalue(res, 0, 1));
		cJSON_AddNumberToObject(d, "worst_skew_ms", (double)w);
		cJSON_AddStringToObject(d, "bound", lim);
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_AGENT_CLOCK_SKEW, active, "error", summary, d, err));
}

static int
check_size(svc_ctx *c, coffer_err *err)
{
	int64_t hist = coffer_config_int(c->cfg->ini, "alerts", "size_history");
	char lim[32];
	snprintf(lim, sizeof(lim), "%" PRId64, hist + 1);
	int rv;
	const char *v[] = { c->p->name, lim, c->now_text };
	/* The history is every success, whatever retention did to it since:
	 * retiring the backup an anomaly was measured against must neither
	 * clear the page nor raise one; only a new backup does. */
	PGresult *res = coord_catalog_adhoc(c->cat, "reading recent backup sizes",
	    "SELECT stored_bytes, id FROM backups WHERE service = $1 "
	    "AND status IN ('completed', 'pending_delete', 'deleted') AND failure_reason IS NULL "
	    "AND stored_bytes IS NOT NULL AND " SETTLED " <= to_timestamp($3::bigint / 1000.0) "
	    "ORDER BY " SETTLED " DESC, id DESC LIMIT $2::int",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int n = PQntuples(res);
	bool active = false;
	char summary[SUMMARY_MAX + 1] = "";
	cJSON *d = cJSON_CreateObject();
	if (n >= 2) {
		double latest = strtod(PQgetvalue(res, 0, 0), NULL);
		double prev = strtod(PQgetvalue(res, 1, 0), NULL);
		double sum = 0, sq = 0;
		int m = n - 1;
		for (int i = 1; i < n; i++) {
			sum += strtod(PQgetvalue(res, i, 0), NULL);
		}
		double mean = sum / m;
		for (int i = 1; i < n; i++) {
			double x = strtod(PQgetvalue(res, i, 0), NULL) - mean;
			sq += x * x;
		}
		/* A deviation needs a history to deviate from: three earlier
		 * backups at least, else one odd size would set the bar. */
		double sd = m >= 3 ? sqrt(sq / (m - 1)) : 0;
		bool halved = latest < prev / 2;
		/* ... and a deviation worth a page: a quiet database's backups
		 * differ by a few bytes of compression noise, so a near-zero
		 * stddev would make any change "3 stddev" (the fault suite paged
		 * 4,194 bytes against a mean of 4,201). */
		bool outlier = m >= 3 && sd > 0 && fabs(latest - mean) > 3 * sd &&
		    fabs(latest - mean) > SIZE_MIN_DEVIATION * mean;
		active = halved || outlier;
		if (active) {
			snprintf(summary, sizeof(summary),
			    "%s: backup %s is %.0f bytes, against %.0f for the previous one and a mean "
			    "of %.0f (stddev %.0f) over the last %d",
			    c->p->name, PQgetvalue(res, 0, 1), latest, prev, mean, sd, m);
			cJSON_AddStringToObject(d, "backup_id", PQgetvalue(res, 0, 1));
			cJSON_AddNumberToObject(d, "stored_bytes", latest);
			cJSON_AddNumberToObject(d, "previous_bytes", prev);
			cJSON_AddNumberToObject(d, "mean_bytes", mean);
			cJSON_AddNumberToObject(d, "stddev_bytes", sd);
			cJSON_AddStringToObject(d, "rule",
			    halved ? "less than half of the previous"
			           : "more than 3 stddev and 10% from the mean");
		}
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_SIZE_ANOMALY, active, "warning", summary, d, err));
}

static int
check_refused(svc_ctx *c, coffer_err *err)
{
	int64_t win = coffer_config_duration_ms(c->cfg->ini, "alerts", "refusal_window");
	char from[32];
	snprintf(from, sizeof(from), "%" PRId64, c->now_ms - win);
	int rv;
	const char *v[] = { c->p->name, from, c->now_text };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading refused requests",
	    "SELECT count(*), COALESCE(sum(r.count), 0), "
	    "COALESCE(string_agg(DISTINCT r.reason, ','), '') FROM refusals r "
	    "JOIN agents a ON a.name = r.agent WHERE a.service = $1 "
	    /* An agent over its envelope budget keeps its events and retries
	     * (coordinator/intake/gate.h): throttling an agent draining its
	     * outbox is flow control, counted in coffer_requests_refused_total, not a
	     * page. */
	    "AND r.reason <> 'rate_limited' "
	    "AND r.last_at >= to_timestamp($2::bigint / 1000.0) "
	    "AND r.last_at <= to_timestamp($3::bigint / 1000.0)",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = strtoll(PQgetvalue(res, 0, 0), NULL, 10) > 0;
	char summary[SUMMARY_MAX + 1] = "", w[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		coffer_duration_format(w, sizeof(w), win);
		snprintf(summary, sizeof(summary),
		    "%s: requests from its agents were refused in the last %s (%s)", c->p->name, w,
		    PQgetvalue(res, 0, 2));
		cJSON_AddStringToObject(d, "reasons", PQgetvalue(res, 0, 2));
		cJSON_AddNumberToObject(d, "refusals_total", strtod(PQgetvalue(res, 0, 1), NULL));
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_REQUESTS_REFUSED, active, "critical", summary, d, err));
}

/* Change events for completed backups newer than services.alerts_success_mark. */
static int
changes_run(svc_ctx *c, coffer_err *err)
{
	int rv;
	const char *v1[] = { c->p->name };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading the success mark",
	    "SELECT alerts_success_mark FROM services WHERE name = $1 FOR UPDATE", 1, v1, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	if (PQntuples(res) != 1) {
		PQclear(res);
		return (0); /* not synced yet: nothing to announce */
	}
	bool first = PQgetisnull(res, 0, 0);
	char mark[64];
	snprintf(mark, sizeof(mark), "%s", first ? "-infinity" : PQgetvalue(res, 0, 0));
	PQclear(res);
	/* On the first evaluation only the latest success is announced:
	 * history is not news. */
	const char *v2[] = { c->p->name, mark, c->now_text };
	res = coord_catalog_adhoc(c->cat, "reading new successful backups",
	    first
	        ? "SELECT id, " SETTLED "::text, floor(extract(epoch FROM " SETTLED
	          ") * 1000)::bigint, "
	          "COALESCE(stored_bytes, 0), kind FROM backups WHERE service = $1 "
	          "AND status IN ('completed', 'pending_delete', 'deleted') AND failure_reason IS NULL "
	          "AND " SETTLED " > $2::timestamptz AND " SETTLED
	          " <= to_timestamp($3::bigint / 1000.0) "
	          "ORDER BY " SETTLED " DESC LIMIT 1"
	        : "SELECT id, " SETTLED "::text, floor(extract(epoch FROM " SETTLED
	          ") * 1000)::bigint, "
	          "COALESCE(stored_bytes, 0), kind FROM backups WHERE service = $1 "
	          "AND status IN ('completed', 'pending_delete', 'deleted') AND failure_reason IS NULL "
	          "AND " SETTLED " > $2::timestamptz AND " SETTLED
	          " <= to_timestamp($3::bigint / 1000.0) "
	          "ORDER BY " SETTLED ", id LIMIT 20", /* CHANGE_BATCH */
	    3, v2, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	int n = PQntuples(res);
	for (int i = 0; rv == 0 && i < n; i++) {
		char dedup[300], summary[SUMMARY_MAX + 1], ts[40];
		int64_t fin = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		snprintf(dedup, sizeof(dedup), "coffer/%s/backup_succeeded", c->p->name);
		snprintf(summary, sizeof(summary), "%s: %s backup %s completed (%s bytes stored)",
		    c->p->name, PQgetvalue(res, i, 4), PQgetvalue(res, i, 0),
		    PQgetvalue(res, i, 3));
		coffer_utf8_cut(summary, SUMMARY_MAX);
		cJSON *o = cJSON_CreateObject();
		cJSON *p = cJSON_AddObjectToObject(o, "payload");
		cJSON_AddStringToObject(p, "summary", summary);
		cJSON_AddStringToObject(p, "source", "coffer-coordinator");
		cJSON_AddStringToObject(p, "timestamp", coffer_time_format(ts, sizeof(ts), fin));
		cJSON *cd = cJSON_AddObjectToObject(p, "custom_details");
		cJSON_AddStringToObject(cd, "service", c->p->name);
		cJSON_AddStringToObject(cd, "backup_id", PQgetvalue(res, i, 0));
		cJSON_AddStringToObject(cd, "kind", PQgetvalue(res, i, 4));
		cJSON_AddNumberToObject(cd, "stored_bytes", strtod(PQgetvalue(res, i, 3), NULL));
		rv = enqueue(c->cat, dedup, "change", "pagerduty", c->p->name, o, c->now_text, err);
		if (rv == 0) {
			c->st->changes++;
		}
	}
	if (rv == 0 && n > 0) {
		const char *v3[] = { c->p->name, PQgetvalue(res, n - 1, 1) };
		rv = coord_catalog_adhoc_exec(c->cat, "moving the success mark",
		    "UPDATE services SET alerts_success_mark = $2::timestamptz WHERE name = $1", 2,
		    v3, err);
	}
	PQclear(res);
	return (rv);
}

/*
 * A backup still 'running' past [alerts] completion_window + abandon_grace
 * since the coordinator learned of it (received_at, the coordinator's own
 * clock) will not report any more: its agent was killed, its host
 * rebooted, or its outbox is stuck. It becomes 'abandoned' (audited, one
 * row each) so that nothing waits on it; a late outcome still settles it
 * (coordinator/intake/apply.c). The page stays open while an abandoned
 * backup is newer than the service's newest successful one: a later
 * backup that completes resolves it.
 */
static int
check_abandoned(svc_ctx *c, coffer_err *err)
{
	int64_t window = coffer_config_duration_ms(c->cfg->ini, "alerts", "completion_window");
	int64_t grace = coffer_config_duration_ms(c->cfg->ini, "alerts", "abandon_grace");
	char win[32], gr[32], limit[24], why[256];
	coffer_duration_format(win, sizeof(win), window);
	coffer_duration_format(gr, sizeof(gr), grace);
	coffer_fmt_i64(limit, window + grace);
	snprintf(why, sizeof(why),
	    "abandoned: no outcome reported within [alerts] completion_window (%s) + "
	    "abandon_grace (%s); the agent was stopped, killed or cut off",
	    win, gr);
	const char *v[] = { c->p->name, c->now_text, limit, why };
	int rv;
	PGresult *res = coord_catalog_adhoc(c->cat, "abandoning backups that never reported",
	    "UPDATE backups SET status = 'abandoned', "
	    "abandoned_at = to_timestamp($2::bigint / 1000.0), "
	    "finished_at = GREATEST(to_timestamp($2::bigint / 1000.0), started_at), "
	    "failure_reason = $4, updated_at = now() "
	    "WHERE service = $1 AND status = 'running' "
	    "AND received_at < to_timestamp(($2::bigint - $3::bigint) / 1000.0) "
	    "RETURNING id, COALESCE(agent, ''), "
	    "to_char(started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
	    "to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
	    4, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	for (int r = 0; r < PQntuples(res) && rv == 0; r++) {
		cJSON *d = cJSON_CreateObject();
		char *text = NULL;
		if (d != NULL) {
			cJSON_AddStringToObject(d, "service", c->p->name);
			cJSON_AddStringToObject(d, "agent", PQgetvalue(res, r, 1));
			cJSON_AddStringToObject(d, "started_at", PQgetvalue(res, r, 2));
			cJSON_AddStringToObject(d, "received_at", PQgetvalue(res, r, 3));
			cJSON_AddStringToObject(d, "completion_window", win);
			cJSON_AddStringToObject(d, "abandon_grace", gr);
			text = cJSON_PrintUnformatted(d);
			cJSON_Delete(d);
		}
		if (text == NULL) {
			rv = coffer_err_set(err, COFFER_ENOMEM, "no memory for an audit row");
			break;
		}
		rv = coord_audit_append(c->cat, c->key, COORD_ACTOR, "backup.abandoned",
		    PQgetvalue(res, r, 0), text, NULL, err);
		free(text);
		if (rv == 0) {
			coffer_log_warn("backup abandoned", "service=%s backup=%s agent=%s",
			    c->p->name, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1));
		}
	}
	PQclear(res);
	if (rv != 0) {
		return (rv);
	}
	const char *v2[] = { c->p->name };
	res = coord_catalog_adhoc(c->cat, "reading the newest abandoned backup",
	    "SELECT a.id, COALESCE(a.agent, ''), count(*) OVER () FROM backups a "
	    "WHERE a.service = $1 AND a.status = 'abandoned' AND NOT EXISTS ("
	    "  SELECT 1 FROM backups s WHERE s.service = a.service "
	    "  AND s.status IN ('completed', 'pending_delete', 'deleted') "
	    "  AND s.failure_reason IS NULL AND s.started_at > a.started_at) "
	    "ORDER BY a.started_at DESC LIMIT 1",
	    1, v2, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = PQntuples(res) == 1;
	char summary[SUMMARY_MAX + 1] = "";
	cJSON *d = cJSON_CreateObject();
	if (active) {
		snprintf(summary, sizeof(summary),
		    "%s: backup %s never reported an outcome and was abandoned (agent %s): "
		    "check the agent; a backup that completes resolves this",
		    c->p->name, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
		cJSON_AddStringToObject(d, "backup_id", PQgetvalue(res, 0, 0));
		cJSON_AddStringToObject(d, "agent", PQgetvalue(res, 0, 1));
		cJSON_AddNumberToObject(d, "abandoned", atof(PQgetvalue(res, 0, 2)));
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_BACKUP_ABANDONED, active, "error", summary, d, err));
}

/*
 * A backup the coordinator rejected (coordinator/drill/verify.c), or one
 * still unverified past [alerts] completion_window (the verifier cannot
 * read the repository, or is not keeping up), pages until a backup of the
 * service settled no earlier has been verified. Retention deleting a
 * rejected backup does not resolve it: nothing was explained.
 */
static int
check_unverifiable(svc_ctx *c, coffer_err *err)
{
	int64_t window = coffer_config_duration_ms(c->cfg->ini, "alerts", "completion_window");
	char before[32];
	snprintf(before, sizeof(before), "%" PRId64, c->now_ms - window);
	int rv;
	const char *v[] = { c->p->name, before };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading unverifiable backups",
	    "SELECT u.id, u.verify_state, COALESCE(u.verify_reason, ''), count(*) OVER () "
	    "FROM backups u WHERE u.service = $1 AND u.failure_reason IS NULL "
	    "AND ((u.verify_state = 'rejected' AND u.status IN ('completed', 'pending_delete', "
	    "'deleted')) OR (u.verify_state = 'unverified' AND u.status = 'completed' "
	    "AND " SETTLED " < to_timestamp($2::bigint / 1000.0))) "
	    "AND NOT EXISTS (SELECT 1 FROM backups n WHERE n.service = u.service "
	    "AND n.verify_state = 'verified' AND n.failure_reason IS NULL "
	    "AND n.status IN ('completed', 'pending_delete', 'deleted') "
	    "AND COALESCE(n.settled_at, n.received_at) >= COALESCE(u.settled_at, u.received_at) "
	    "AND n.id <> u.id) "
	    "ORDER BY " SETTLED " DESC, u.id DESC LIMIT 1",
	    2, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = PQntuples(res) == 1;
	char summary[SUMMARY_MAX + 1] = "";
	cJSON *d = cJSON_CreateObject();
	const char *severity = "error";
	if (active) {
		bool rejected = strcmp(PQgetvalue(res, 0, 1), "rejected") == 0;
		char win[32];
		if (rejected) {
			severity = "critical";
			snprintf(summary, sizeof(summary),
			    "%s: backup %s was rejected by the coordinator's verification: %s",
			    c->p->name, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2));
		} else {
			snprintf(summary, sizeof(summary),
			    "%s: backup %s is still unverified more than [alerts] "
			    "completion_window = %s after it completed; the coordinator cannot "
			    "check it in the repository",
			    c->p->name, PQgetvalue(res, 0, 0),
			    coffer_duration_format(win, sizeof(win), window));
		}
		cJSON_AddStringToObject(d, "backup_id", PQgetvalue(res, 0, 0));
		cJSON_AddStringToObject(d, "verify_state", PQgetvalue(res, 0, 1));
		if (rejected) {
			cJSON_AddStringToObject(d, "verify_reason", PQgetvalue(res, 0, 2));
		}
		cJSON_AddNumberToObject(d, "backups", strtod(PQgetvalue(res, 0, 3), NULL));
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_BACKUP_UNVERIFIABLE, active, severity, summary, d, err));
}

/*
 * Open while the key that seals the service's newest backup has been in
 * use for [alerts] key_escrow_max (since the first backup sealed with it)
 * and the DR copier has recorded no escrow copy of it in DR: that backup,
 * and every later one, is lost with the agent's host. Only with
 * [repository.dr]: escrow copies live there. Resolves once the copy is
 * recorded, or when a newer key that is escrowed takes over.
 */
static int
check_escrow(svc_ctx *c, coffer_err *err)
{
	if (!coffer_config_has_section(c->cfg->ini, "repository.dr")) {
		return (0);
	}
	int64_t max = coffer_config_duration_ms(c->cfg->ini, "alerts", "key_escrow_max");
	char from[32];
	snprintf(from, sizeof(from), "%" PRId64, c->now_ms - max);
	int rv;
	const char *v[] = { c->p->name, from, c->now_text };
	PGresult *res = coord_catalog_adhoc(c->cat, "reading the newest backup's key",
	    "WITH newest AS (SELECT key_id FROM backups WHERE service = $1 "
	    "  AND status IN ('completed', 'pending_delete', 'deleted') "
	    "  AND failure_reason IS NULL AND key_id IS NOT NULL "
	    "  AND COALESCE(settled_at, received_at) <= to_timestamp($3::bigint / 1000.0) "
	    "  ORDER BY COALESCE(settled_at, received_at) DESC, id DESC LIMIT 1) "
	    "SELECT n.key_id, (SELECT min(COALESCE(b.settled_at, b.received_at)) FROM backups b WHERE b.service = $1 "
	    "  AND b.key_id = n.key_id AND b.failure_reason IS NULL) "
	    "  <= to_timestamp($2::bigint / 1000.0), "
	    "  EXISTS (SELECT 1 FROM key_escrows e WHERE e.service = $1 AND e.key_id = n.key_id) "
	    "FROM newest n",
	    3, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	bool active = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 1), "t") == 0 &&
	    strcmp(PQgetvalue(res, 0, 2), "f") == 0;
	char summary[SUMMARY_MAX + 1] = "", w[32];
	cJSON *d = cJSON_CreateObject();
	if (active) {
		coffer_duration_format(w, sizeof(w), max);
		snprintf(summary, sizeof(summary),
		    "%s: key %s seals its newest backup and has had no escrow copy in DR for %s",
		    c->p->name, PQgetvalue(res, 0, 0), w);
		cJSON_AddStringToObject(d, "key_id", PQgetvalue(res, 0, 0));
		cJSON_AddStringToObject(d, "fix",
		    "set [keys] escrow_public_key on the agent and run `coffer-agent keyring "
		    "escrow -c agent.conf`");
	}
	PQclear(res);
	return (apply(c, COORD_ALERT_KEY_NOT_ESCROWED, active, "error", summary, d, err));
}

static int
eval_service(svc_ctx *c, coffer_err *err)
{
	int rv = coord_catalog_begin(c->cat, err);
	if (rv != 0) {
		return (rv);
	}
	rv = lock_tx(c->cat, err);
	if (rv == 0) {
		rv = check_failed(c, err);
	}
	if (rv == 0) {
		rv = check_abandoned(c, err);
	}
	if (rv == 0) {
		rv = check_missed(c, err);
	}
	if (rv == 0) {
		rv = check_unverifiable(c, err);
	}
	if (rv == 0) {
		rv = check_quiet(c, err);
	}
	if (rv == 0) {
		rv = check_agents(c, err);
	}
	if (rv == 0) {
		rv = check_skew(c, err);
	}
	if (rv == 0) {
		rv = check_size(c, err);
	}
	if (rv == 0) {
		rv = check_refused(c, err);
	}
	if (rv == 0) {
		rv = check_escrow(c, err);
	}
	if (rv == 0) {
		rv = changes_run(c, err);
	}
	if (rv == 0) {
		return (coord_catalog_commit(c->cat, err));
	}
	coord_catalog_rollback(c->cat);
	return (rv);
}

static int
count_open(coord_catalog *cat, coord_alerts_stats *st, int last, coffer_err *err)
{
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "counting open alerts",
	    "SELECT count(*) FROM alerts WHERE state = 'triggered'", 0, NULL, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	st->open = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return (last);
}

int
coord_alerts_evaluate(coord_catalog *cat, const coord_audit_key *key, const coord_config *cfg,
    const coord_alerts_input *in, int64_t now_ms, coord_alerts_stats *stats, coffer_err *err)
{
	coord_alerts_stats local;
	coord_alerts_stats *st = stats != NULL ? stats : &local;
	memset(st, 0, sizeof(*st));
	int last = 0;
	for (size_t i = 0; i < cfg->n_services; i++) {
		svc_ctx c = { .cat = cat,
			.key = key,
			.cfg = cfg,
			.p = &cfg->services[i],
			.now_ms = now_ms,
			.st = st };
		snprintf(c.now_text, sizeof(c.now_text), "%" PRId64, now_ms);
		coffer_err e;
		coffer_err_clear(&e);
		int t0 = st->triggered, r0 = st->resolved, c0 = st->changes;
		int rv = eval_service(&c, &e);
		if (rv != 0) {
			/* Rolled back: the counts of this service did not happen. */
			st->triggered = t0;
			st->resolved = r0;
			st->changes = c0;
			st->errors++;
			coffer_log_error(
			    "alert evaluation failed", "service=%s error=%s", c.p->name, e.msg);
			last = rv;
			if (err != NULL) {
				*err = e;
			}
			if (rv == COFFER_EUNAVAIL) {
				return (rv);
			}
			continue;
		}
		st->services++;
	}
	/* No input, or not verified: the caller has not walked the chain (and
	 * checked its head in DR) since it started, and "not known to be
	 * broken" must not resolve a page: a restarted coordinator has
	 * forgotten what it found, it has not repaired anything. */
	if (in == NULL || (!in->audit_chain_broken && !in->verified)) {
		return (count_open(cat, st, last, err));
	}
	bool broken = in->audit_chain_broken;
	char summary[SUMMARY_MAX + 1];
	snprintf(summary, sizeof(summary), "the audit chain does not verify: %s",
	    in->audit_problem != NULL ? in->audit_problem : "see coffer audit verify");
	cJSON *d = cJSON_CreateObject();
	if (broken && in->audit_problem != NULL) {
		cJSON_AddStringToObject(d, "problem", in->audit_problem);
	}
	char *dtext = cJSON_PrintUnformatted(d);
	cJSON_Delete(d);
	bool changed = false;
	coffer_err e;
	coffer_err_clear(&e);
	int rv = coord_alerts_set(cat, key, cfg, NULL, COORD_ALERT_AUDIT_CHAIN, broken, "critical",
	    summary, dtext, now_ms, &changed, &e);
	free(dtext);
	if (rv != 0) {
		if (err != NULL) {
			*err = e;
		}
		return (rv);
	}
	if (changed) {
		if (broken) {
			st->triggered++;
		} else {
			st->resolved++;
		}
	}
	return (count_open(cat, st, last, err));
}

/* ---- listing ---- */

static void
add_str_or_null(cJSON *o, const char *k, const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col)) {
		cJSON_AddNullToObject(o, k);
	} else {
		cJSON_AddStringToObject(o, k, PQgetvalue(res, row, col));
	}
}

int
coord_alerts_list(coord_catalog *cat, int limit, cJSON **out, coffer_err *err)
{
	*out = NULL;
	if (limit < 1 || limit > 10000) {
		coffer_err_set(err, COFFER_EINVAL, "alert list limit %d is out of range", limit);
		return (coffer_err_hint(err, "ask for 1 to 10000 alerts"));
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *v[] = { lim };
	int rv;
	PGresult *res = coord_catalog_adhoc(cat, "listing alerts",
	    "SELECT a.dedup_key, a.service, a.check_name, a.state, a.severity, a.summary, to_char(a.first_triggered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), to_char(a.last_changed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), to_char(a.resolved_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), o.action, o.state, o.attempts, o.last_error, to_char(o.sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), to_char(o.next_attempt_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), o.id IS NOT NULL "
	    "FROM alerts a LEFT JOIN LATERAL (SELECT * FROM alert_outbox x "
	    "WHERE x.dedup_key = a.dedup_key AND x.target = 'pagerduty' "
	    "ORDER BY x.id DESC LIMIT 1) o ON true "
	    "ORDER BY a.state = 'triggered' DESC, a.last_changed_at DESC, a.dedup_key "
	    "LIMIT $1::int",
	    1, v, &rv, err);
	if (res == NULL) {
		return (rv);
	}
	cJSON *arr = cJSON_CreateArray();
	for (int i = 0; arr != NULL && i < PQntuples(res); i++) {
		cJSON *o = cJSON_CreateObject();
		if (o == NULL) {
			cJSON_Delete(arr);
			arr = NULL;
			break;
		}
		cJSON_AddItemToArray(arr, o);
		static const char *const keys[] = { "dedup_key", "service", "check", "state",
			"severity", "summary", "first_triggered_at", "last_changed_at",
			"resolved_at" };
		for (int k = 0; k < 9; k++) {
			add_str_or_null(o, keys[k], res, i, k);
		}
		if (strcmp(PQgetvalue(res, i, 15), "t") != 0) {
			cJSON_AddNullToObject(o, "delivery");
			continue;
		}
		cJSON *d = cJSON_AddObjectToObject(o, "delivery");
		add_str_or_null(d, "action", res, i, 9);
		add_str_or_null(d, "state", res, i, 10);
		cJSON_AddNumberToObject(d, "attempts", strtod(PQgetvalue(res, i, 11), NULL));
		add_str_or_null(d, "last_error", res, i, 12);
		add_str_or_null(d, "sent_at", res, i, 13);
		add_str_or_null(d, "next_attempt_at", res, i, 14);
	}
	PQclear(res);
	if (arr == NULL) {
		return (coffer_err_set(err, COFFER_ENOMEM, "listing alerts: out of memory"));
	}
	*out = arr;
	return (0);
}
