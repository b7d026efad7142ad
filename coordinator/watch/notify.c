/*
 * Notify: the alert outbox's sender. See coordinator/watch/notify.h.
 *
 * Design notes.
 * Rows are picked in id order, skipping any row that has an earlier
 * pending row for the same dedup_key and target: PagerDuty drops a resolve
 * for an alert it has not opened, so a resolve that overtook its
 * still-retrying trigger would leave an incident open for ever.
 *
 * The routing key is spliced into the body only in memory, right before
 * the request, and the body buffer is wiped after: the key must not end up
 * in the catalog, the audit log, a log line or a core file we can avoid.
 * Errors name the dedup_key and outbox id, never the key.
 *
 * The token bucket is in memory. A restarted coordinator starts with a
 * full bucket, which is one burst (at most 20 requests), well inside
 * PagerDuty's per-minute allowance.
 *
 * Memory is bounded by the batch (200 rows, each payload at most what
 * alerts.c builds: a 1 KiB summary and small details), a 4 KiB cap on a
 * response body kept for the error message, and one bucket per routing key
 * in the configuration.
 */
#include "coordinator/watch/notify.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/base/clock.h"
#include "common/base/log.h"

#define BATCH           200
#define RESP_MAX        4096
#define BACKOFF_BASE_MS 30000LL
#define BACKOFF_CAP_MS  600000LL
#define BACKOFF_429_MS  60000LL
#define NO_KEY_RETRY_MS 600000LL

typedef struct bucket {
	char *routing_key; /* NULL: the webhook's bucket */
	double tokens;
	int64_t at_ms; /* monotonic time of the last refill */
} bucket;

struct coord_notify {
	const coord_config *cfg;
	const coord_audit_key *key;
	CURL *curl;
	bucket *buckets;
	size_t n_buckets, cap_buckets;
	double rate_per_ms;
	double burst;
};

coord_notify *
coord_notify_new(const coord_config *cfg, const coord_audit_key *key, coffer_err *err)
{
	coord_notify *n = calloc(1, sizeof(*n));
	if (n == NULL) {
		coffer_err_set(err, COFFER_ENOMEM, "creating the alert sender: out of memory");
		return (NULL);
	}
	n->cfg = cfg;
	n->key = key;
	/* One bucket per configured key at most: each service's, the default
	 * and the webhook's. */
	n->cap_buckets = cfg->n_services + 2;
	n->buckets = calloc(n->cap_buckets, sizeof(bucket));
	n->curl = curl_easy_init();
	if (n->buckets == NULL || n->curl == NULL) {
		coord_notify_free(n);
		coffer_err_set(err, COFFER_ENOMEM, "creating the alert sender: out of memory");
		return (NULL);
	}
	int64_t rate = coffer_config_int(cfg->ini, "alerts", "rate_per_minute");
	n->rate_per_ms = (double)rate / 60000.0;
	n->burst = (double)(rate / 12);
	if (n->burst < 1) {
		n->burst = 1;
	}
	if (n->burst > 20) {
		n->burst = 20;
	}
	return (n);
}

void
coord_notify_free(coord_notify *n)
{
	if (n == NULL) {
		return;
	}
	for (size_t i = 0; i < n->n_buckets; i++) {
		if (n->buckets[i].routing_key != NULL) {
			OPENSSL_cleanse(
			    n->buckets[i].routing_key, strlen(n->buckets[i].routing_key));
			free(n->buckets[i].routing_key);
		}
	}
	free(n->buckets);
	if (n->curl != NULL) {
		curl_easy_cleanup(n->curl);
	}
	free(n);
}

static bucket *
bucket_for(coord_notify *n, const char *routing_key)
{
	for (size_t i = 0; i < n->n_buckets; i++) {
		const char *k = n->buckets[i].routing_key;
		if ((k == NULL && routing_key == NULL) ||
		    (k != NULL && routing_key != NULL && strcmp(k, routing_key) == 0)) {
			return (&n->buckets[i]);
		}
	}
	if (n->n_buckets == n->cap_buckets) {
		return (NULL);
	}
	bucket *b = &n->buckets[n->n_buckets];
	b->routing_key = routing_key != NULL ? strdup(routing_key) : NULL;
	if (routing_key != NULL && b->routing_key == NULL) {
		return (NULL);
	}
	b->tokens = n->burst;
	b->at_ms = coffer_clock_monotonic_ms();
	n->n_buckets++;
	return (b);
}

static bool
bucket_take(coord_notify *n, bucket *b)
{
	int64_t now = coffer_clock_monotonic_ms();
	b->tokens += (double)(now - b->at_ms) * n->rate_per_ms;
	b->at_ms = now;
	if (b->tokens > n->burst) {
		b->tokens = n->burst;
	}
	if (b->tokens < 1.0) {
		return (false);
	}
	b->tokens -= 1.0;
	return (true);
}

static const char *
routing_key_for(const coord_config *cfg, const char *service)
{
	if (service != NULL && coord_config_service(cfg, service) != NULL) {
		char section[128];
		snprintf(section, sizeof(section), "service.%s", service);
		const char *k = coffer_config_str(cfg->ini, section, "alerts.routing_key");
		if (k != NULL && k[0] != '\0') {
			return (k);
		}
	}
	const char *k = coffer_config_str(cfg->ini, "alerts", "routing_key");
	return (k != NULL && k[0] != '\0' ? k : NULL);
}

/* The change-events endpoint beside the alert-events one. */
static void
change_url(const char *url, char *out, size_t size)
{
	static const char suffix[] = "/v2/enqueue";
	size_t n = strlen(url), s = sizeof(suffix) - 1;
	if (n >= s && strcmp(url + n - s, suffix) == 0 && n - s + 18 < size) {
		snprintf(out, size, "%.*s/v2/change/enqueue", (int)(n - s), url);
	} else {
		snprintf(out, size, "%s", url);
	}
}

typedef struct resp_buf {
	char data[RESP_MAX + 1];
	size_t len;
} resp_buf;

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	resp_buf *r = userdata;
	size_t n = size * nmemb, room = RESP_MAX - r->len;
	size_t take = n < room ? n : room;
	memcpy(r->data + r->len, ptr, take);
	r->len += take;
	r->data[r->len] = '\0';
	return (n); /* the rest is read and dropped: only the start is kept */
}

/* Posts body; *status is the HTTP status or 0 on a network error, whose
 * text goes into neterr. */
static void
post(coord_notify *n, const char *url, const char *body, long *status, resp_buf *resp, char *neterr,
    size_t neterr_size)
{
	CURL *c = n->curl;
	curl_easy_reset(c);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	char errbuf[CURL_ERROR_SIZE] = "";
	resp->len = 0;
	resp->data[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "coffer-coordinator");
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode rc = curl_easy_perform(c);
	*status = 0;
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	} else {
		snprintf(
		    neterr, neterr_size, "%s", errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc));
	}
	curl_slist_free_all(h);
}

/* PagerDuty's "message" and "errors" from an error body, or the start of
 * the body. */
static void
peer_message(const resp_buf *r, char *out, size_t size)
{
	cJSON *j = cJSON_Parse(r->data);
	out[0] = '\0';
	if (j != NULL) {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "errors");
		size_t o = 0;
		if (cJSON_IsString(m)) {
			o = (size_t)snprintf(out, size, "%s", m->valuestring);
		}
		const cJSON *it;
		cJSON_ArrayForEach(it, e)
		{
			if (cJSON_IsString(it) && o < size) {
				o += (size_t)snprintf(
				    out + o, size - o, "%s%s", o > 0 ? "; " : "", it->valuestring);
			}
		}
		cJSON_Delete(j);
	}
	if (out[0] == '\0') {
		snprintf(out, size, "%.200s", r->len > 0 ? r->data : "(empty body)");
	}
	for (char *p = out; *p != '\0'; p++) {
		if (*p == '\n' || *p == '\r') {
			*p = ' ';
		}
	}
}

static int64_t
backoff_ms(int attempts, bool rate_limited)
{
	int64_t d = BACKOFF_BASE_MS;
	for (int i = 1; i < attempts && d < BACKOFF_CAP_MS; i++) {
		d *= 2;
	}
	if (d > BACKOFF_CAP_MS) {
		d = BACKOFF_CAP_MS;
	}
	if (rate_limited && d < BACKOFF_429_MS) {
		d = BACKOFF_429_MS;
	}
	/* Jitter in [d/2, d): a fleet of coordinators (or a burst of rows)
	 * that failed together does not retry together. */
	uint32_t r = 0;
	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
		r = (uint32_t)coffer_clock_monotonic_ms();
	}
	return (d / 2 + (int64_t)(r % (uint32_t)(d / 2)));
}

static int
exec_params(coord_catalog *cat, const char *what, const char *sql, int np, const char *const *vals,
    coffer_err *err)
{
	PGresult *res = PQexecParams(coord_catalog_conn(cat), sql, np, NULL, vals, NULL, NULL, 0);
	ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
		PQclear(res);
		return (0);
	}
	return (coord_catalog_pg_error(cat, res, what, err));
}

static int
mark_delivered(coord_catalog *cat, const char *id, int64_t now_ms, coffer_err *err)
{
	char now[32];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	const char *v[] = { id, now };
	return (exec_params(cat, "recording a delivered alert",
	    "UPDATE alert_outbox SET state = 'delivered', attempts = attempts + 1, "
	    "sent_at = to_timestamp($2::bigint / 1000.0), last_error = NULL WHERE id = $1::bigint",
	    2, v, err));
}

static int
mark_retry(coord_catalog *cat, const char *id, int64_t next_ms, bool count, const char *why,
    coffer_err *err)
{
	char next[32], inc[4];
	snprintf(next, sizeof(next), "%" PRId64, next_ms);
	snprintf(inc, sizeof(inc), "%d", count ? 1 : 0);
	const char *v[] = { id, next, why, inc };
	return (exec_params(cat, "rescheduling an alert",
	    "UPDATE alert_outbox SET attempts = attempts + $4::int, next_attempt_at = "
	    "to_timestamp($2::bigint / 1000.0), last_error = left($3, 1024) WHERE id = $1::bigint",
	    4, v, err));
}

static int
mark_failed(coord_notify *n, coord_catalog *cat, const char *id, const char *dedup_key,
    const char *action, const char *target, long status, const char *message, coffer_err *err)
{
	int rv = coord_catalog_begin(cat, err);
	if (rv != 0) {
		return (rv);
	}
	const char *v[] = { id, message };
	rv = exec_params(cat, "recording an undeliverable alert",
	    "UPDATE alert_outbox SET state = 'failed', attempts = attempts + 1, "
	    "last_error = left($2, 1024) WHERE id = $1::bigint",
	    2, v, err);
	if (rv == 0) {
		cJSON *d = cJSON_CreateObject();
		cJSON_AddNumberToObject(d, "outbox_id", strtod(id, NULL));
		cJSON_AddStringToObject(d, "action", action);
		cJSON_AddStringToObject(d, "target", target);
		cJSON_AddNumberToObject(d, "http_status", (double)status);
		cJSON_AddStringToObject(d, "message", message);
		char *t = cJSON_PrintUnformatted(d);
		cJSON_Delete(d);
		rv = t == NULL ? coffer_err_set(err, COFFER_ENOMEM, "out of memory")
		               : coord_audit_append(cat, n->key, "coordinator",
		                     "alert.undeliverable", dedup_key, t, NULL, err);
		free(t);
	}
	if (rv == 0) {
		return (coord_catalog_commit(cat, err));
	}
	coord_catalog_rollback(cat);
	return (rv);
}

/* "{service}" in a configured URL becomes the service's name (or
 * "_coordinator"), so a dashboard link can open on the service. */
static void
url_for(const char *tmpl, const char *service, char *out, size_t size)
{
	const char *mark = strstr(tmpl, "{service}");
	if (mark == NULL) {
		snprintf(out, size, "%s", tmpl);
		return;
	}
	snprintf(out, size, "%.*s%s%s", (int)(mark - tmpl), tmpl,
	    service != NULL ? service : "_coordinator", mark + strlen("{service}"));
}

/*
 * What a responder opens first, added to a PagerDuty trigger as it is sent
 * (so a changed configuration applies to queued pages too): links to the
 * runbook's entry for the alert kind ([alerts] runbook_url, or the
 * COFFER_DOCS_URL the build was given, + "#" + payload.class) and to the
 * dashboard ([alerts] dashboard_url), and client_url ([alerts] status_url,
 * the coordinator's status page). Each only when configured.
 */
static void
add_links(const coord_config *cfg, cJSON *j)
{
	const cJSON *action = cJSON_GetObjectItemCaseSensitive(j, "event_action");
	const cJSON *payload = cJSON_GetObjectItemCaseSensitive(j, "payload");
	const cJSON *kind = cJSON_GetObjectItemCaseSensitive(payload, "class");
	const cJSON *component = cJSON_GetObjectItemCaseSensitive(payload, "component");
	if (!cJSON_IsString(action) || strcmp(action->valuestring, "trigger") != 0) {
		return;
	}
	const char *service =
	    cJSON_IsString(component) && strcmp(component->valuestring, "coordinator") != 0
	    ? component->valuestring
	    : NULL;
	const char *runbook = coord_notify_runbook_url(cfg);
	const char *dashboard = coffer_config_str(cfg->ini, "alerts", "dashboard_url");
	const char *status = coffer_config_str(cfg->ini, "alerts", "status_url");
	char url[2048], text[160];
	cJSON *links = cJSON_CreateArray();
	if (runbook != NULL && cJSON_IsString(kind)) {
		cJSON *l = cJSON_CreateObject();
		snprintf(url, sizeof(url), "%s#%s", runbook, kind->valuestring);
		snprintf(text, sizeof(text), "Runbook: %s", kind->valuestring);
		cJSON_AddStringToObject(l, "href", url);
		cJSON_AddStringToObject(l, "text", text);
		cJSON_AddItemToArray(links, l);
	}
	if (dashboard != NULL && dashboard[0] != '\0') {
		cJSON *l = cJSON_CreateObject();
		url_for(dashboard, service, url, sizeof(url));
		cJSON_AddStringToObject(l, "href", url);
		cJSON_AddStringToObject(l, "text", "Dashboard");
		cJSON_AddItemToArray(links, l);
	}
	if (cJSON_GetArraySize(links) > 0) {
		cJSON_AddItemToObject(j, "links", links);
	} else {
		cJSON_Delete(links);
	}
	if (status != NULL && status[0] != '\0') {
		url_for(status, service, url, sizeof(url));
		cJSON_AddStringToObject(j, "client_url", url);
	}
}

const char *
coord_notify_runbook_url(const coord_config *cfg)
{
	const char *r = coffer_config_str(cfg->ini, "alerts", "runbook_url");
	if (r != NULL && r[0] != '\0') {
		return (r);
	}
	static const char docs[] = COFFER_DOCS_URL;
	return (docs[0] != '\0' ? COFFER_DOCS_URL "/RUNBOOK.md" : NULL);
}

/* Builds the body to send: the stored payload, plus routing_key, the links
 * and client_url for PagerDuty. Returns a malloc'd string or NULL. */
static char *
build_body(const coord_config *cfg, const char *payload, const char *routing_key)
{
	cJSON *j = cJSON_Parse(payload);
	if (j == NULL) {
		return (NULL);
	}
	if (routing_key != NULL) {
		add_links(cfg, j);
		cJSON_AddStringToObject(j, "routing_key", routing_key);
	}
	char *t = cJSON_PrintUnformatted(j);
	/* cJSON keeps its own copy of the key; wipe it before it is freed. */
	cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "routing_key");
	if (routing_key != NULL && cJSON_IsString(k)) {
		OPENSSL_cleanse(k->valuestring, strlen(k->valuestring));
	}
	cJSON_Delete(j);
	return (t);
}

static void
free_body(char *body)
{
	if (body != NULL) {
		OPENSSL_cleanse(body, strlen(body));
		free(body);
	}
}

/*
 * One request to url with the payload (plus routing_key rk when not NULL),
 * paced by rk's bucket. *posted tells whether a request went out: not for
 * DEFERRED (the bucket is empty) nor for a payload that is not JSON
 * (REFUSED with *status 0). msg gets the receiver's message for REFUSED and
 * the reason for RETRY ("network error: ...", "HTTP 503: ...").
 */
static coord_notify_outcome
send_one(coord_notify *n, const char *url, const char *rk, const char *payload, bool *posted,
    long *status, char *msg, size_t size)
{
	*posted = false;
	*status = 0;
	msg[0] = '\0';
	bucket *b = bucket_for(n, rk);
	if (b != NULL && !bucket_take(n, b)) {
		return (COORD_NOTIFY_DEFERRED);
	}
	char *body = build_body(n->cfg, payload, rk);
	if (body == NULL) {
		snprintf(msg, size, "the queued payload is not JSON");
		return (COORD_NOTIFY_REFUSED);
	}
	resp_buf resp;
	char neterr[CURL_ERROR_SIZE + 1] = "";
	post(n, url, body, status, &resp, neterr, sizeof(neterr));
	free_body(body);
	*posted = true;
	if (*status >= 200 && *status < 300) {
		return (COORD_NOTIFY_DELIVERED);
	}
	if (*status == 400 || *status == 413) {
		peer_message(&resp, msg, size);
		return (COORD_NOTIFY_REFUSED);
	}
	if (*status == 0) {
		snprintf(msg, size, "network error: %s", neterr);
	} else {
		char pm[400];
		peer_message(&resp, pm, sizeof(pm));
		snprintf(msg, size, "HTTP %ld: %s", *status, pm);
	}
	return (COORD_NOTIFY_RETRY);
}

coord_notify_outcome
coord_notify_send_pagerduty(coord_notify *n, const char *service, const char *action,
    const char *payload, long *status, char *msg, size_t size)
{
	*status = 0;
	const char *rk = routing_key_for(n->cfg, service);
	if (rk == NULL) {
		snprintf(msg, size, "no routing key configured");
		return (COORD_NOTIFY_NO_KEY);
	}
	char url[1024];
	const char *pd_url = coffer_config_str(n->cfg->ini, "alerts", "pagerduty_url");
	if (strcmp(action, "change") == 0) {
		change_url(pd_url, url, sizeof(url));
	} else {
		snprintf(url, sizeof(url), "%s", pd_url);
	}
	bool posted;
	return (send_one(n, url, rk, payload, &posted, status, msg, size));
}

static int
lock_try(coord_catalog *cat, bool take, bool *got, coffer_err *err)
{
	char k[32];
	snprintf(k, sizeof(k), "%lld", (long long)COORD_NOTIFY_LOCK);
	const char *v[] = { k };
	PGresult *res = PQexecParams(coord_catalog_conn(cat),
	    take ? "SELECT pg_try_advisory_lock($1::bigint)"
	         : "SELECT pg_advisory_unlock($1::bigint)",
	    1, NULL, v, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		return (coord_catalog_pg_error(cat, res, "taking the alert sender lock", err));
	}
	if (got != NULL) {
		*got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	}
	PQclear(res);
	return (0);
}

static int
deliver_rows(
    coord_notify *n, coord_catalog *cat, int64_t now_ms, coord_notify_stats *st, coffer_err *err)
{
	char now[32], lim[16];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	snprintf(lim, sizeof(lim), "%d", BATCH);
	const char *v[] = { now, lim };
	PGresult *res = PQexecParams(coord_catalog_conn(cat),
	    "SELECT o.id, o.dedup_key, o.action, o.target, o.payload::text, o.service, o.attempts "
	    "FROM alert_outbox o WHERE o.state = 'pending' "
	    "AND o.next_attempt_at <= to_timestamp($1::bigint / 1000.0) "
	    "AND NOT EXISTS (SELECT 1 FROM alert_outbox e WHERE e.state = 'pending' "
	    "AND e.dedup_key = o.dedup_key AND e.target = o.target AND e.id < o.id) "
	    "ORDER BY o.id LIMIT $2::int",
	    2, NULL, v, NULL, NULL, 0);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
		return (coord_catalog_pg_error(cat, res, "reading due alerts", err));
	}
	const char *pd_url = coffer_config_str(n->cfg->ini, "alerts", "pagerduty_url");
	const char *hook_url = coffer_config_str(n->cfg->ini, "alerts", "webhook_url");
	char chg_url[1024];
	change_url(pd_url, chg_url, sizeof(chg_url));
	int rv = 0;
	bool warned_no_key = false;
	for (int i = 0; rv == 0 && i < PQntuples(res); i++) {
		const char *id = PQgetvalue(res, i, 0), *dedup = PQgetvalue(res, i, 1);
		const char *action = PQgetvalue(res, i, 2), *target = PQgetvalue(res, i, 3);
		const char *payload = PQgetvalue(res, i, 4);
		const char *service = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5);
		int attempts = (int)strtol(PQgetvalue(res, i, 6), NULL, 10);
		bool pd = strcmp(target, "pagerduty") == 0;
		const char *rk = NULL, *url;
		if (pd) {
			rk = routing_key_for(n->cfg, service);
			if (rk == NULL) {
				if (!warned_no_key) {
					coffer_log_warn("alert not sent: no routing key",
					    "dedup_key=%s hint=\"set [alerts] routing_key or "
					    "[service.NAME] alerts.routing_key\"",
					    dedup);
					warned_no_key = true;
				}
				rv = mark_retry(cat, id, now_ms + NO_KEY_RETRY_MS, false,
				    "no routing key configured", err);
				continue;
			}
			url = strcmp(action, "change") == 0 ? chg_url : pd_url;
		} else {
			if (hook_url == NULL || hook_url[0] == '\0') {
				rv = mark_failed(n, cat, id, dedup, action, target, 0,
				    "[alerts] webhook_url is no longer set", err);
				if (rv == 0) {
					st->failed++;
				}
				continue;
			}
			url = hook_url;
		}
		long status = 0;
		bool posted = false;
		char msg[600];
		coord_notify_outcome out =
		    send_one(n, url, rk, payload, &posted, &status, msg, sizeof(msg));
		if (out == COORD_NOTIFY_DEFERRED) {
			st->deferred++;
			continue;
		}
		if (!posted) {
			rv = mark_failed(n, cat, id, dedup, action, target, 0, msg, err);
			continue;
		}
		st->sent++;
		if (out == COORD_NOTIFY_DELIVERED) {
			rv = mark_delivered(cat, id, now_ms, err);
			if (rv == 0) {
				st->delivered++;
			}
		} else if (out == COORD_NOTIFY_REFUSED) {
			coffer_log_error("alert refused by the receiver, not retried",
			    "dedup_key=%s action=%s target=%s outbox_id=%s status=%ld message=%s",
			    dedup, action, target, id, status, msg);
			rv = mark_failed(n, cat, id, dedup, action, target, status, msg, err);
			if (rv == 0) {
				st->failed++;
			}
		} else {
			int64_t next = now_ms + backoff_ms(attempts + 1, status == 429);
			coffer_log_warn("alert delivery failed, will retry",
			    "dedup_key=%s action=%s target=%s outbox_id=%s attempts=%d error=%s",
			    dedup, action, target, id, attempts + 1, msg);
			rv = mark_retry(cat, id, next, true, msg, err);
			if (rv == 0) {
				st->retrying++;
			}
		}
	}
	PQclear(res);
	return (rv);
}

int
coord_notify_deliver_due(
    coord_notify *n, coord_catalog *cat, int64_t now_ms, coord_notify_stats *stats, coffer_err *err)
{
	coord_notify_stats local;
	coord_notify_stats *st = stats != NULL ? stats : &local;
	memset(st, 0, sizeof(*st));
	bool got = false;
	int rv = lock_try(cat, true, &got, err);
	if (rv != 0) {
		return (rv);
	}
	if (!got) {
		st->busy = 1;
		return (0);
	}
	rv = deliver_rows(n, cat, now_ms, st, err);
	coffer_err e;
	lock_try(cat, false, NULL, &e);
	return (rv);
}
