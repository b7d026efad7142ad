/*
 * Driver for tests/integration/alerts.sh: alert conditions, the alert
 * outbox and its delivery against a real catalog and a real HTTP receiver
 * standing in for PagerDuty, with an injected clock.
 *
 *   alerts_itest run CONF DAY0_MS LOGFILE REPO RESCHEDULED
 *
 * CONF has [service.billing] (schedule 0 2 * * *, UTC, its own routing
 * key, retention.daily = 7, retention.grace = 1h), [dr] copy_lag = 10m
 * and [alerts] pointing at http://127.0.0.1:PORT, where PORT is the
 * receiver this driver forks before anything else (the receiver survives
 * the simulated coordinator restarts below). DAY0_MS is a UTC midnight
 * after the services were first synced, so their first scheduled runs are
 * theirs to miss. LOGFILE receives the coordinator's log lines, which the
 * script checks for the routing keys. REPO is an empty directory, the
 * posix repository retention deletes through. RESCHEDULED is CONF with
 * billing's schedule changed to 0 0 1 1 * (a policy change).
 *
 * Besides triggering and resolving, each check's resolve condition is
 * held to a real recovery: retention (the real pass, pending_delete and
 * then deleted), a policy change and sync, a coordinator restart, an
 * agent enrolled, a heartbeat gone stale, never resolve a page; the
 * recovery the page asks for does.
 *
 * The receiver is tests/harness/receiver.c: scripted with statuses for
 * its next PagerDuty requests (202 when the script is empty), it records
 * every request as one line of LOG.rx: monotonic ms, the status it
 * answered, the path and the body.
 *
 * Prints "ok ..." lines; exits 1 on the first mismatch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <curl/curl.h>
#include <libpq-fe.h>

#include "common/base/clock.h"
#include "common/base/error.h"
#include "common/base/log.h"
#include "coordinator/catalog/audit.h"
#include "coordinator/catalog/catalog.h"
#include "coordinator/dr/drcopy.h"
#include "coordinator/policy/coord_config.h"
#include "coordinator/policy/prune.h"
#include "coordinator/serve/http.h"
#include "coordinator/serve/metrics.h"
#include "coordinator/wal/walwatch.h"
#include "coordinator/watch/alerts.h"
#include "coordinator/watch/notify.h"
#include "tests/harness/receiver.h"

#define MIN_MS  (60LL * 1000)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS  (24 * HOUR_MS)
#define FLOOD   1000

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static pid_t receiver_pid;

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "alerts_itest: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	if (receiver_pid > 0) {
		kill(receiver_pid, SIGTERM);
	}
	exit(1);
}

static void
check_ok(int rv, const coffer_err *e, const char *what)
{
	if (rv != 0) {
		die("%s: %s (%s)", what, e->msg, e->hint);
	}
}

/* ---- reading what the receiver saw ---- */

typedef struct rx_req {
	int64_t at;
	int status;
	char path[64];
	cJSON *body;
} rx_req;

static rx_req *reqs;
static size_t n_reqs;
static char rx_log_path[512];

static void
rx_reload(void)
{
	for (size_t i = 0; i < n_reqs; i++) {
		cJSON_Delete(reqs[i].body);
	}
	free(reqs);
	reqs = NULL;
	n_reqs = 0;
	harness_receiver_req *got = NULL;
	size_t n = 0;
	if (harness_receiver_read(rx_log_path, &got, &n) != 0) {
		die("cannot read what the receiver logged");
	}
	if (n > 0 && (reqs = calloc(n, sizeof(*reqs))) == NULL) {
		die("out of memory");
	}
	for (; n_reqs < n; n_reqs++) {
		rx_req *r = &reqs[n_reqs];
		r->at = got[n_reqs].at;
		r->status = got[n_reqs].status;
		snprintf(r->path, sizeof(r->path), "%s", got[n_reqs].path);
		r->body = cJSON_Parse(got[n_reqs].body);
		if (r->body == NULL) {
			die("the receiver got a body that is not JSON: %s", got[n_reqs].body);
		}
	}
	harness_receiver_free(got, n);
}

static const char *
jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return (cJSON_IsString(v) ? v->valuestring : "");
}

/* Requests from index from on, to path, with dedup_key and (if not NULL)
 * event_action; accepted: only those answered 202. */
static int
rx_count(size_t from, const char *path, const char *dedup, const char *action, bool accepted)
{
	int n = 0;
	for (size_t i = from; i < n_reqs; i++) {
		const rx_req *r = &reqs[i];
		if (strcmp(r->path, path) != 0 || (accepted && r->status != 202)) {
			continue;
		}
		if (dedup != NULL && strcmp(jstr(r->body, "dedup_key"), dedup) != 0) {
			continue;
		}
		if (action != NULL && strcmp(jstr(r->body, "event_action"), action) != 0) {
			continue;
		}
		n++;
	}
	return (n);
}

static int rx_port;

static void
rx_script(const char *statuses)
{
	if (harness_receiver_script(rx_port, statuses) != 0) {
		die("scripting the receiver with \"%s\"", statuses);
	}
}

/* ---- the coordinator side ---- */

typedef struct coord {
	coord_config *cfg;
	coord_catalog *cat;
	coord_notify *notify;
	coord_audit_key key;
} coord;

static const char *conf_path;

static void
coord_start(coord *c)
{
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_config_load(conf_path, &c->cfg, &e), &e, "loading the configuration");
	const char *kp = coffer_config_str(c->cfg->ini, "coordinator", "audit_key");
	check_ok(coord_audit_key_load(kp, &c->key, &e), &e, "loading the audit key");
	c->cat = coord_catalog_open(c->cfg->catalog, &e);
	if (c->cat == NULL) {
		die("opening the catalog: %s", e.msg);
	}
	c->notify = coord_notify_new(c->cfg, &c->key, &e);
	if (c->notify == NULL) {
		die("creating the sender: %s", e.msg);
	}
}

/* Everything the process held is gone, as after a crash and restart. */
static void
coord_stop(coord *c)
{
	coord_notify_free(c->notify);
	coord_catalog_close(c->cat);
	coord_config_free(c->cfg);
	coord_audit_key_clear(&c->key);
	memset(c, 0, sizeof(*c));
}

static coord_alerts_stats
evaluate(coord *c, int64_t now, const coord_alerts_input *in)
{
	coord_alerts_stats st;
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_alerts_evaluate(c->cat, &c->key, c->cfg, in, now, &st, &e), &e,
	    "evaluating alerts");
	if (st.errors != 0) {
		die("evaluation skipped %d services", st.errors);
	}
	return (st);
}

static coord_notify_stats
deliver(coord *c, int64_t now)
{
	coord_notify_stats st;
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_notify_deliver_due(c->notify, c->cat, now, &st, &e), &e, "delivering");
	return (st);
}

/* Delivers until a call sends nothing: a resolve waits for its trigger's
 * call, so one transition pair takes two calls. */
static void
drain(coord *c, int64_t now)
{
	for (int i = 0; i < 100; i++) {
		if (deliver(c, now).sent == 0) {
			return;
		}
	}
	die("the outbox did not drain");
}

static PGconn *conn;

static char *sql1(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs one statement; returns the first value of the first row (static
 * buffer) or "". */
static char *
sql1(const char *fmt, ...)
{
	static char out[4096];
	char q[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	PGresult *r = PQexec(conn, q);
	if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
		die("%s: %s", q, PQerrorMessage(conn));
	}
	out[0] = '\0';
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
		snprintf(out, sizeof(out), "%s", PQgetvalue(r, 0, 0));
	}
	PQclear(r);
	return (out);
}

/* An agents row the test put in by hand gets the agent.enroll row a real
 * enrollment writes (audit verify derives every key from one). */
static void
audit_enroll(coord *c, const char *agent)
{
	char details[256];
	snprintf(details, sizeof(details), "{\"agent\":\"%s\",\"fingerprint\":\"%s\"}", agent,
	    sql1("SELECT left(encode(sha256(pubkey), 'hex'), 32) FROM agents WHERE name = '%s'",
	        agent));
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(
	    coord_audit_append(c->cat, &c->key, "test", "agent.enroll", agent, details, NULL, &e),
	    &e, "auditing a test enrollment");
}

static long sqln(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static long
sqln(const char *fmt, ...)
{
	char q[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q, sizeof(q), fmt, ap);
	va_end(ap);
	return (strtol(sql1("%s", q), NULL, 10));
}

/* A finished backup as intake records it; settled_at (the coordinator's
 * time for the outcome, which retention buckets by) is its finish on the
 * injected clock. */
static void
add_backup(const char *id, const char *status, int64_t started, int64_t finished, long bytes)
{
	if (strcmp(status, "failed") == 0) {
		sql1("INSERT INTO backups (id, service, kind, status, started_at, finished_at, "
		     "settled_at, failure_reason) VALUES ('%s', 'billing', 'logical', 'failed', "
		     "to_timestamp(%" PRId64 " / 1000.0), to_timestamp(%" PRId64 " / 1000.0), "
		     "to_timestamp(%" PRId64 " / 1000.0), 'pg_dump exited with status 1')",
		    id, started, finished, finished);
	} else {
		sql1("INSERT INTO backups (id, service, kind, status, started_at, finished_at, "
		     "settled_at, stored_bytes, stored_sha256, manifest, key_id, verify_state, "
		     "verified_at) VALUES ('%s', "
		     "'billing', 'logical', 'completed', to_timestamp(%" PRId64 " / 1000.0), "
		     "to_timestamp(%" PRId64 " / 1000.0), to_timestamp(%" PRId64 " / 1000.0), "
		     "%ld, sha256('%s'), '{}', 'k1', 'verified', now())",
		    id, started, finished, finished, bytes, id);
	}
}

static const char *
alert_state(const char *check)
{
	static char out[32];
	snprintf(out, sizeof(out), "%s",
	    sql1("SELECT COALESCE((SELECT state FROM alerts WHERE dedup_key = "
	         "'coffer/billing/%s'), 'none')",
	        check));
	return (out);
}

static void
expect_state(const char *check, const char *want, const char *when)
{
	const char *got = alert_state(check);
	if (strcmp(got, want) != 0) {
		die("%s is %s %s, want %s", check, got, when, want);
	}
}

static coffer_repo *repo; /* REPO, with delete rights: retention's */

/* The real retention pass (coordinator/policy/prune.c) at now. */
static coord_prune_stats
retention(coord *c, int64_t now)
{
	coord_prune_stats st;
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_retention_pass(c->cat, &c->key, c->cfg, repo, now, &st, &e), &e,
	    "the retention pass");
	if (st.service_errors != 0 || st.failed != 0) {
		die("retention: %zu service errors, %zu failed deletions", st.service_errors,
		    st.failed);
	}
	return (st);
}

static const char *
backup_status(const char *id)
{
	static char out[32];
	snprintf(out, sizeof(out), "%s", sql1("SELECT status FROM backups WHERE id = '%s'", id));
	return (out);
}

static void
expect_status(const char *id, const char *want)
{
	if (strcmp(backup_status(id), want) != 0) {
		die("backup %s is %s, want %s", id, backup_status(id), want);
	}
}

/* The DR copy alerts of billing (coordinator/dr/drplan.c) at now. */
static void
dr_alerts(coord *c, int64_t now)
{
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_drcopy_alerts(c->cat, &c->key, c->cfg, "billing", now, NULL, &e), &e,
	    "evaluating the DR alerts");
}

/* The WAL watch (coordinator/wal/walwatch.c) at now. */
static void
wal_watch(coord *c, int64_t now)
{
	coord_walwatch_stats st;
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_walwatch_tick(c->cat, &c->key, c->cfg, now, &st, &e), &e, "the WAL watch");
}

/* The agent's heartbeat as intake stores it, received at `at`. */
static void
heartbeat(const char *agent, int64_t at, int64_t archived_at, int64_t failed_at, int ready)
{
	sql1("UPDATE agents SET heartbeat_at = to_timestamp(%" PRId64 " / 1000.0), "
	     "last_contact_at = to_timestamp(%" PRId64 " / 1000.0), heartbeat = "
	     "jsonb_build_object('current_wal', '000000010000000000000030', "
	     "'last_archived_wal', '00000001000000000000002F', 'last_archived_at_ms', %" PRId64
	     "::bigint, 'last_failed_wal', '000000010000000000000030', 'last_failed_at_ms', "
	     "%" PRId64 "::bigint, 'archive_failed_count', 3, 'wal_ready_count', %d) "
	     "WHERE name = '%s'",
	    at, at, archived_at, failed_at, ready, agent);
}

static void
expect_int(long got, long want, const char *what)
{
	if (got != want) {
		die("%s: got %ld, want %ld", what, got, want);
	}
}

/* ---- a strict parser of the Prometheus text format (0.0.4) ---- */

#define PM_MAX_FAMILIES 256
#define PM_MAX_SERIES   8192

typedef struct pm_family {
	char name[128];
	char type[16];
	bool help, typed, closed;
} pm_family;

typedef struct pm_result {
	pm_family fam[PM_MAX_FAMILIES];
	int n_fam;
	int samples;
	char problem[256];
} pm_result;

static bool
pm_name_ok(const char *s, size_t n, bool label)
{
	if (n == 0) {
		return (false);
	}
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
		    (!label && ch == ':');
		bool digit = ch >= '0' && ch <= '9';
		if (!(alpha || (i > 0 && digit))) {
			return (false);
		}
	}
	return (!label || n < 2 || s[0] != '_' || s[1] != '_');
}

static bool
pm_value_ok(const char *s)
{
	if (strcmp(s, "NaN") == 0 || strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0) {
		return (true);
	}
	char *end;
	if (*s == '\0') {
		return (false);
	}
	strtod(s, &end);
	return (*end == '\0' && strpbrk(s, "xXpP") == NULL && strncasecmp(s, "inf", 3) != 0 &&
	    strncasecmp(s, "nan", 3) != 0);
}

static pm_family *
pm_family_get(pm_result *r, const char *name, size_t n)
{
	for (int i = 0; i < r->n_fam; i++) {
		if (strlen(r->fam[i].name) == n && strncmp(r->fam[i].name, name, n) == 0) {
			return (&r->fam[i]);
		}
	}
	if (r->n_fam == PM_MAX_FAMILIES || n >= sizeof(r->fam[0].name)) {
		return (NULL);
	}
	pm_family *f = &r->fam[r->n_fam++];
	memset(f, 0, sizeof(*f));
	memcpy(f->name, name, n);
	return (f);
}

static int
pm_fail(pm_result *r, int line, const char *what)
{
	snprintf(r->problem, sizeof(r->problem), "line %d: %s", line, what);
	return (-1);
}

static char *series[PM_MAX_SERIES];
static int n_series;

static void
pm_reset(void)
{
	for (int i = 0; i < n_series; i++) {
		free(series[i]);
	}
	n_series = 0;
}

/* Parses text; 0 if it is valid, else -1 with r->problem. Rules beyond the
 * grammar (Coffer's own): every family has HELP and TYPE, TYPE before the
 * first sample, families contiguous, no duplicate series, counters end in
 * _total and are >= 0, the text ends with a newline. */
static int
pm_parse(const char *text, pm_result *r)
{
	memset(r, 0, sizeof(*r));
	pm_reset();
	int lineno = 0, rv = 0;
	pm_family *cur = NULL;
	size_t tl = strlen(text);
	if (tl == 0 || text[tl - 1] != '\n') {
		return (pm_fail(r, 0, "the text does not end with a newline"));
	}
	const char *p = text;
	while (rv == 0 && *p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t n = (size_t)(eol - p);
		char line[4096];
		lineno++;
		if (n >= sizeof(line)) {
			rv = pm_fail(r, lineno, "line too long");
			break;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p = eol + 1;
		if (n == 0) {
			rv = pm_fail(r, lineno, "empty line");
			break;
		}
		if (line[0] == '#') {
			char kw[8], name[256];
			int off = 0;
			if (sscanf(line, "# %7s %255s %n", kw, name, &off) < 2 ||
			    (strcmp(kw, "HELP") != 0 && strcmp(kw, "TYPE") != 0)) {
				continue; /* a plain comment */
			}
			if (!pm_name_ok(name, strlen(name), false)) {
				rv = pm_fail(r, lineno, "bad metric name in HELP/TYPE");
				break;
			}
			pm_family *f = pm_family_get(r, name, strlen(name));
			if (f == NULL) {
				rv = pm_fail(r, lineno, "too many families");
				break;
			}
			if (f->closed || (cur != NULL && cur != f && f->typed + f->help > 0)) {
				rv = pm_fail(r, lineno, "HELP/TYPE of a family after its samples");
				break;
			}
			if (cur != NULL && cur != f) {
				cur->closed = true;
			}
			cur = f;
			if (strcmp(kw, "HELP") == 0) {
				if (f->help) {
					rv = pm_fail(r, lineno, "second HELP for a family");
					break;
				}
				for (const char *q = line + off; *q != '\0'; q++) {
					if (*q == '\\' && q[1] != '\\' && q[1] != 'n') {
						rv = pm_fail(r, lineno, "bad escape in HELP");
						break;
					}
					if (*q == '\\') {
						q++;
					}
				}
				f->help = true;
			} else {
				const char *t = line + off;
				if (f->typed) {
					rv = pm_fail(r, lineno, "second TYPE for a family");
					break;
				}
				if (strcmp(t, "counter") != 0 && strcmp(t, "gauge") != 0 &&
				    strcmp(t, "histogram") != 0 && strcmp(t, "summary") != 0 &&
				    strcmp(t, "untyped") != 0) {
					rv = pm_fail(r, lineno, "unknown TYPE");
					break;
				}
				snprintf(f->type, sizeof(f->type), "%s", t);
				f->typed = true;
			}
			continue;
		}
		/* A sample: name, optional labels, value, optional timestamp. */
		size_t nl = strcspn(line, "{ ");
		if (!pm_name_ok(line, nl, false)) {
			rv = pm_fail(r, lineno, "bad metric name");
			break;
		}
		pm_family *f = pm_family_get(r, line, nl);
		if (f == NULL || !f->typed || !f->help) {
			rv = pm_fail(r, lineno, "a sample without HELP and TYPE before it");
			break;
		}
		if (f != cur || f->closed) {
			rv = pm_fail(r, lineno, "a family's samples are not contiguous");
			break;
		}
		char key[4200];
		size_t kl = 0;
		const char *q = line + nl;
		memcpy(key, line, nl);
		kl = nl;
		if (*q == '{') {
			q++;
			char seen[16][128];
			int nseen = 0;
			while (*q != '}') {
				size_t ln = strcspn(q, "=");
				if (!pm_name_ok(q, ln, true) || q[ln] != '=' || q[ln + 1] != '"') {
					return (pm_fail(r, lineno, "bad label name"));
				}
				for (int i = 0; i < nseen; i++) {
					if (strlen(seen[i]) == ln && strncmp(seen[i], q, ln) == 0) {
						return (pm_fail(r, lineno, "duplicate label"));
					}
				}
				if (nseen < 16 && ln < 128) {
					memcpy(seen[nseen], q, ln);
					seen[nseen++][ln] = '\0';
				}
				key[kl++] = '|';
				memcpy(key + kl, q, ln + 1);
				kl += ln + 1;
				q += ln + 2;
				while (*q != '"') {
					if (*q == '\0') {
						return (
						    pm_fail(r, lineno, "unterminated label value"));
					}
					if (*q == '\\') {
						if (q[1] != '\\' && q[1] != '"' && q[1] != 'n') {
							return (pm_fail(r, lineno,
							    "bad escape in a label value"));
						}
						key[kl++] = *q++;
					}
					key[kl++] = *q++;
				}
				q++;
				if (*q == ',') {
					q++;
				} else if (*q != '}') {
					return (
					    pm_fail(r, lineno, "expected , or } after a label"));
				}
			}
			q++;
		}
		key[kl] = '\0';
		if (*q != ' ') {
			return (pm_fail(r, lineno, "expected a space before the value"));
		}
		q++;
		char val[64], ts[64];
		int k = sscanf(q, "%63s %63s", val, ts);
		if (k < 1 || !pm_value_ok(val)) {
			return (pm_fail(r, lineno, "bad value"));
		}
		if (k == 2) {
			char *end;
			strtoll(ts, &end, 10);
			if (*end != '\0') {
				return (pm_fail(r, lineno, "bad timestamp"));
			}
		}
		if (strcmp(f->type, "counter") == 0) {
			size_t fl = strlen(f->name);
			if (fl < 6 || strcmp(f->name + fl - 6, "_total") != 0) {
				return (pm_fail(r, lineno, "a counter not named *_total"));
			}
			if (val[0] == '-') {
				return (pm_fail(r, lineno, "a negative counter"));
			}
		}
		for (int i = 0; i < n_series; i++) {
			if (strcmp(series[i], key) == 0) {
				return (pm_fail(r, lineno, "duplicate series"));
			}
		}
		if (n_series < PM_MAX_SERIES) {
			series[n_series++] = strdup(key);
		}
		r->samples++;
	}
	return (rv);
}

/* ---- the HTTP endpoint on a libuv loop in its own thread ---- */

typedef struct http_ctx {
	uv_loop_t loop;
	uv_async_t stop;
	coord_http *http;
	coord_catalog *cat;
	const coord_config *cfg;
	pthread_mutex_t mu; /* the catalog connection: one render at a time */
	int64_t now_ms;
	int port;
	int renders;
} http_ctx;

static int
http_render(void *arg, char **text, size_t *len)
{
	http_ctx *x = arg;
	coffer_err e;
	coffer_err_clear(&e);
	pthread_mutex_lock(&x->mu);
	x->renders++;
	int rv = coord_metrics_render(x->cat, x->now_ms, text, len, &e);
	pthread_mutex_unlock(&x->mu);
	return (rv);
}

static void
on_stop_closed(uv_handle_t *h)
{
	(void)h;
}

static void
on_stop(uv_async_t *a)
{
	http_ctx *x = a->data;
	coord_http_stop(x->http, NULL, NULL);
	uv_close((uv_handle_t *)&x->stop, on_stop_closed);
}

static void *
http_thread(void *arg)
{
	http_ctx *x = arg;
	uv_run(&x->loop, UV_RUN_DEFAULT);
	return (NULL);
}

typedef struct fetched {
	long status;
	char type[128];
	char *body;
	size_t len;
} fetched;

static size_t
fetch_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	fetched *f = userdata;
	size_t n = size * nmemb;
	char *b = realloc(f->body, f->len + n + 1);
	if (b == NULL) {
		return (0);
	}
	memcpy(b + f->len, ptr, n);
	f->body = b;
	f->len += n;
	f->body[f->len] = '\0';
	return (n);
}

static fetched
http_get(int port, const char *path, const char *method)
{
	fetched f = { 0 };
	char url[256];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fetch_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 20000L);
	if (method != NULL) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	CURLcode rc = curl_easy_perform(c);
	if (rc != CURLE_OK) {
		die("GET %s: %s", path, curl_easy_strerror(rc));
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f.status);
	char *ct = NULL;
	curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
	snprintf(f.type, sizeof(f.type), "%s", ct != NULL ? ct : "");
	curl_easy_cleanup(c);
	if (f.body == NULL) {
		f.body = strdup("");
	}
	return (f);
}

/* Sends raw bytes and returns the status of the answer (0 if none). */
static int
http_raw(int port, const char *data, size_t len)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		die("connecting to the metrics endpoint: %s", strerror(errno));
	}
	size_t off = 0;
	while (off < len) {
		ssize_t w = send(fd, data + off, len - off, MSG_NOSIGNAL);
		if (w <= 0) {
			break; /* the server may close early: that is its answer */
		}
		off += (size_t)w;
	}
	char buf[512] = "";
	size_t got = 0;
	for (;;) {
		ssize_t r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (r <= 0) {
			break;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	close(fd);
	int status = 0;
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1) {
		return (0);
	}
	return (status);
}

static const char *
metric_value(const char *text, const char *name)
{
	static char out[64];
	size_t n = strlen(name);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ') {
			sscanf(p + n + 1, "%63s", out);
			return (out);
		}
		p = strchr(p, '\n');
		p = p != NULL ? p + 1 : NULL;
	}
	return (NULL);
}

static void
metrics_phase(coord *c, int64_t now)
{
	/* Parser self-test: each of these must be refused. */
	static const char *const bad[] = {
		"x 1\n",
		"# HELP x h\n# TYPE x gauge\nx 1",
		"# HELP x h\n# TYPE x gauge\n# TYPE x gauge\nx 1\n",
		"# HELP x h\n# TYPE x gauge\nx{a=\"b\\q\"} 1\n",
		"# HELP x h\n# TYPE x gauge\nx{a=\"b\"} one\n",
		"# HELP x h\n# TYPE x gauge\nx{a=\"b\"} 1\nx{a=\"b\"} 2\n",
		"# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n",
		"# HELP x_total h\n# TYPE x_total counter\nx_total -1\n",
		"# HELP x h\n# TYPE x counter\nx 1\n",
		"# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",
		"# HELP x h\n# TYPE x gauge\nx{__a=\"b\"} 1\n",
		"# HELP x h\n# TYPE x gauge\nx{a=\"b\",a=\"c\"} 1\n",
		"# HELP x h\n# TYPE x gauge\n\nx 1\n",
		"# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n",
		"# HELP x h\n# TYPE x bogus\nx 1\n",
	};
	static pm_result pr;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (pm_parse(bad[i], &pr) == 0) {
			die("the metrics parser accepted bad input #%zu", i);
		}
	}
	if (pm_parse("# HELP x h \\\\ \\n\n# TYPE x gauge\nx{a=\"q\\\"\\\\\\n\"} +Inf 17\n", &pr) !=
	    0) {
		die("the metrics parser refused good input: %s", pr.problem);
	}
	char esc[64];
	coord_metrics_escape_label(esc, sizeof(esc), "a\"b\\c\nd");
	if (strcmp(esc, "a\\\"b\\\\c\\nd") != 0) {
		die("label escaping: got %s", esc);
	}

	/* Something in every family. */
	sql1("INSERT INTO events (agent, seq, service, type) VALUES ('billing-db-1', 1, 'billing', "
	     "'backup.completed'), ('billing-db-1', 2, 'billing', 'backup.completed')");
	sql1("UPDATE agents SET last_seq = 2 WHERE name = 'billing-db-1'"); /* as the intake does */
	sql1("INSERT INTO refusals (reason, agent, count) VALUES ('not_owner', 'mallory', 2)");

	char *text = NULL;
	size_t len = 0;
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_metrics_render(c->cat, now, &text, &len, &e), &e, "rendering");
	if (strlen(text) != len) {
		die("the rendered length is wrong");
	}
	if (pm_parse(text, &pr) != 0) {
		die("/metrics does not parse: %s", pr.problem);
	}
	static const char *const families[] = { "coffer_backup_last_success_timestamp_seconds",
		"coffer_backup_last_duration_seconds", "coffer_backup_last_size_bytes",
		"coffer_backups", "coffer_alerts_open",
		"coffer_agent_last_contact_timestamp_seconds", "coffer_events_applied_total",
		"coffer_requests_refused_total", "coffer_alert_outbox_rows",
		"coffer_alert_outbox_oldest_pending_age_seconds" };
	for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
		bool found = false;
		for (int k = 0; k < pr.n_fam; k++) {
			found = found || strcmp(pr.fam[k].name, families[i]) == 0;
		}
		if (!found) {
			die("/metrics lacks %s", families[i]);
		}
	}
	static const struct {
		const char *series, *want;
	} want[] = {
		{ "coffer_backup_last_size_bytes{service=\"billing\"}", "420000" },
		{ "coffer_backup_last_duration_seconds{service=\"billing\"}", "120.000" },
		{ "coffer_backups{service=\"billing\",status=\"completed\"}", "6" },
		{ "coffer_backups{service=\"billing\",status=\"deleted\"}", "3" },
		{ "coffer_alerts_open{service=\"_coordinator\",check=\"flood_0999\"}", "1" },
		{ "coffer_events_applied_total{service=\"billing\"}", "2" },
		{ "coffer_requests_refused_total{reason=\"bad_signature\"}", "3" },
		{ "coffer_requests_refused_total{reason=\"not_owner\"}", "2" },
		{ "coffer_alert_outbox_rows{state=\"pending\"}", "0" },
		{ "coffer_alert_outbox_rows{state=\"failed\"}", "1" },
		{ "coffer_alert_outbox_oldest_pending_age_seconds", "0" },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *v = metric_value(text, want[i].series);
		if (v == NULL || strcmp(v, want[i].want) != 0) {
			die("%s = %s, want %s", want[i].series, v != NULL ? v : "(missing)",
			    want[i].want);
		}
	}
	printf("ok /metrics: %d families, %d samples, strict parse (and the parser refuses "
	       "%zu broken inputs)\n",
	    pr.n_fam, pr.samples, sizeof(bad) / sizeof(bad[0]));
	free(text);

	/* Over HTTP, rendering on the thread pool. */
	static http_ctx x;
	x.cfg = c->cfg;
	x.now_ms = now;
	x.cat = coord_catalog_open(c->cfg->catalog, &e);
	if (x.cat == NULL) {
		die("opening a second catalog connection: %s", e.msg);
	}
	pthread_mutex_init(&x.mu, NULL);
	uv_loop_init(&x.loop);
	x.http = coord_http_start(&x.loop, "127.0.0.1:0", http_render, &x, &e);
	if (x.http == NULL) {
		die("starting the metrics endpoint: %s", e.msg);
	}
	x.port = coord_http_port(x.http);
	uv_async_init(&x.loop, &x.stop, on_stop);
	x.stop.data = &x;
	char taken[64];
	snprintf(taken, sizeof(taken), "127.0.0.1:%d", x.port);
	if (coord_http_start(&x.loop, taken, http_render, &x, &e) != NULL ||
	    e.code != COFFER_EUNAVAIL) {
		die("a second endpoint on a taken port was not refused");
	}
	if (coord_http_start(&x.loop, "localhost", http_render, &x, &e) != NULL ||
	    e.code != COFFER_EINVAL) {
		die("a listen address without a port was not refused");
	}
	pthread_t th;
	pthread_create(&th, NULL, http_thread, &x);

	fetched f = http_get(x.port, "/metrics", NULL);
	if (f.status != 200 || strncmp(f.type, "text/plain; version=0.0.4", 25) != 0) {
		die("GET /metrics: %ld %s", f.status, f.type);
	}
	if (pm_parse(f.body, &pr) != 0) {
		die("/metrics over HTTP does not parse: %s", pr.problem);
	}
	free(f.body);
	f = http_get(x.port, "/healthz", NULL);
	if (f.status != 200 || strcmp(f.body, "ok\n") != 0) {
		die("GET /healthz: %ld %s", f.status, f.body);
	}
	free(f.body);
	f = http_get(x.port, "/nope", NULL);
	if (f.status != 404) {
		die("GET /nope: %ld", f.status);
	}
	free(f.body);
	f = http_get(x.port, "/metrics", "POST");
	if (f.status != 405) {
		die("POST /metrics: %ld", f.status);
	}
	free(f.body);
	int st = http_raw(x.port, "garbage\r\n\r\n", 11);
	if (st != 400) {
		die("a request line that does not parse got %d, want 400", st);
	}
	static char big[20000];
	memcpy(big, "GET /metrics HTTP/1.1\r\nX-Pad: ", 30);
	memset(big + 30, 'a', sizeof(big) - 30);
	st = http_raw(x.port, big, sizeof(big));
	if (st != 431) {
		die("an oversized request head got %d, want 431", st);
	}
	f = http_get(x.port, "/healthz", NULL);
	if (f.status != 200) {
		die("the endpoint did not survive bad requests: %ld", f.status);
	}
	free(f.body);
	uv_async_send(&x.stop);
	pthread_join(th, NULL);
	if (uv_loop_close(&x.loop) != 0) {
		die("the metrics endpoint left handles open after stop");
	}
	coord_catalog_close(x.cat);
	pthread_mutex_destroy(&x.mu);
	pm_reset();
	printf("ok http: /metrics (rendered off the loop, %d renders), /healthz, 404, 405, 400, "
	       "431, all handles closed on stop\n",
	    x.renders);
}

int
main(int argc, char **argv)
{
	if (argc != 7 || strcmp(argv[1], "run") != 0) {
		fprintf(stderr, "usage: alerts_itest run CONF DAY0_MS LOGFILE REPO RESCHEDULED\n");
		return (2);
	}
	conf_path = argv[2];
	int64_t d0 = strtoll(argv[3], NULL, 10);
	FILE *clog = fopen(argv[4], "w");
	if (clog == NULL) {
		die("cannot write %s", argv[4]);
	}
	coffer_log_init("alerts_itest", COFFER_LOG_DEBUG);
	coffer_log_set_stream(clog);
	curl_global_init(CURL_GLOBAL_DEFAULT);

	coord c;
	coord_start(&c);
	const char *pd_url = coffer_config_str(c.cfg->ini, "alerts", "pagerduty_url");
	char base[256];
	snprintf(base, sizeof(base), "%s", pd_url);
	char *v2 = strstr(base, "/v2/enqueue");
	if (v2 == NULL) {
		die("pagerduty_url must end in /v2/enqueue");
	}
	*v2 = '\0';
	int port = atoi(strrchr(base, ':') + 1);
	snprintf(rx_log_path, sizeof(rx_log_path), "%s.rx", argv[4]);
	receiver_pid = harness_receiver_start(port, rx_log_path, &rx_port);
	if (receiver_pid < 0) {
		die("the receiver did not start");
	}

	conn = PQconnectdb(c.cfg->catalog);
	if (PQstatus(conn) != CONNECTION_OK) {
		die("connecting: %s", PQerrorMessage(conn));
	}
	coffer_err e;
	coffer_err_clear(&e);
	check_ok(coord_policy_sync(c.cat, &c.key, "coordinator", c.cfg, &e), &e, "policy sync");
	coffer_repo_config rc = { .type = "posix", .path = argv[5] };
	check_ok(coffer_repo_open(
	             &rc, COFFER_REPO_READ | COFFER_REPO_WRITE | COFFER_REPO_DELETE, &repo, &e),
	    &e, "opening the repository");

	/* ---- a missed scheduled backup triggers, then resolves ---- */
	int64_t now = d0 + 4 * HOUR_MS + 30 * MIN_MS; /* 02:00 run + 2h window passed */
	coord_alerts_stats as = evaluate(&c, now, NULL);
	expect_int(as.triggered, 1, "transitions when the 02:00 backup is missing");
	expect_int(
	    sqln("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/backup_missed' "
	         "AND state = 'triggered'"),
	    1, "backup_missed open");
	coord_notify_stats ns = deliver(&c, now);
	expect_int(ns.delivered, 2, "rows delivered (pagerduty + webhook)");
	rx_reload();
	expect_int(rx_count(0, "/v2/enqueue", "coffer/billing/backup_missed", "trigger", true), 1,
	    "triggers received for backup_missed");
	expect_int(rx_count(0, "/hook", "coffer/billing/backup_missed", NULL, true), 1,
	    "webhook posts for backup_missed");
	for (size_t i = 0; i < n_reqs; i++) {
		if (strcmp(reqs[i].path, "/v2/enqueue") == 0 &&
		    strcmp(jstr(reqs[i].body, "routing_key"),
		        "billing0123456789abcdef0123456789") != 0) {
			die("the trigger was not sent with billing's own routing key");
		}
		if (strcmp(reqs[i].path, "/hook") == 0 &&
		    cJSON_GetObjectItemCaseSensitive(reqs[i].body, "routing_key") != NULL) {
			die("the webhook got a routing key");
		}
	}
	const cJSON *pl = cJSON_GetObjectItemCaseSensitive(reqs[0].body, "payload");
	if (strcmp(jstr(pl, "severity"), "critical") != 0 || jstr(pl, "summary")[0] == '\0' ||
	    /* No agent of billing has said hello here: the service names it. */
	    strcmp(jstr(pl, "source"), "billing") != 0 ||
	    strcmp(jstr(pl, "component"), "billing") != 0 ||
	    strcmp(jstr(pl, "group"), "team-payments") != 0 ||
	    strcmp(jstr(pl, "class"), "backup_missed") != 0) {
		die("the trigger's payload lacks severity/summary/source/component/group/class");
	}
	as = evaluate(&c, now + 10 * MIN_MS, NULL);
	ns = deliver(&c, now + 10 * MIN_MS);
	expect_int(as.triggered + as.resolved + ns.sent, 0,
	    "a condition that persists is not announced again");
	printf("ok missed backup: one trigger (routing key per service, full payload), "
	       "none repeated\n");

	/* A policy change is no recovery: under the new schedule the slot the
	 * evaluation looks at moves (here to 1 January, before the service
	 * existed), yet nothing was backed up since the missed 02:00. Synced,
	 * and across the restart that loads it, the page stays open. */
	coord_stop(&c);
	conf_path = argv[6];
	coord_start(&c);
	check_ok(coord_policy_sync(c.cat, &c.key, "coordinator", c.cfg, &e), &e, "policy sync");
	as = evaluate(&c, now + 15 * MIN_MS, NULL);
	expect_int(as.resolved, 0, "resolutions after billing's schedule changed");
	expect_state("backup_missed", "triggered", "after a policy change");
	coord_stop(&c);
	conf_path = argv[2];
	coord_start(&c);
	check_ok(coord_policy_sync(c.cat, &c.key, "coordinator", c.cfg, &e), &e, "policy sync");
	as = evaluate(&c, now + 16 * MIN_MS, NULL);
	expect_int(as.triggered + as.resolved, 0, "transitions after the schedule came back");
	printf("ok missed backup: a policy change (synced, across a restart) does not resolve "
	       "it\n");

	size_t mark = n_reqs;
	add_backup(
	    "billing-1", "completed", d0 + 4 * HOUR_MS, d0 + 4 * HOUR_MS + 45 * MIN_MS, 1000000);
	now = d0 + 4 * HOUR_MS + 50 * MIN_MS;
	as = evaluate(&c, now, NULL);
	expect_int(as.resolved, 1, "resolutions once the late backup completed");
	expect_int(as.changes, 1, "change events for the success");
	ns = deliver(&c, now);
	rx_reload();
	expect_int(rx_count(mark, "/v2/enqueue", "coffer/billing/backup_missed", "resolve", true),
	    1, "resolves received for backup_missed");
	expect_int(
	    rx_count(mark, "/v2/change/enqueue", NULL, NULL, true), 1, "change events received");
	expect_int(sqln("SELECT count(*) FROM audit WHERE action = 'alert.triggered' "
	                "AND subject = 'billing'"),
	    1, "alert.triggered audit rows");
	expect_int(sqln("SELECT count(*) FROM audit WHERE action = 'alert.resolved' "
	                "AND subject = 'billing'"),
	    1, "alert.resolved audit rows");
	printf("ok missed backup resolves when a completed backup appears; change event sent; "
	       "both audited\n");

	/* ---- a failing backup; the receiver fails 3 times; restarts ---- */
	mark = n_reqs;
	add_backup("billing-2", "failed", d0 + DAY_MS + 2 * HOUR_MS,
	    d0 + DAY_MS + 2 * HOUR_MS + 10 * MIN_MS, 0);
	now = d0 + DAY_MS + 2 * HOUR_MS + 20 * MIN_MS;
	rx_script("500 500 500");
	as = evaluate(&c, now, NULL);
	expect_int(as.triggered, 1, "transitions after a failed backup");
	ns = deliver(&c, now); /* the trigger gets 500; the webhook post 202 */
	expect_int(ns.retrying, 1, "rows rescheduled after 500");
	ns = deliver(&c, now);
	expect_int(ns.sent, 0, "requests made before the backoff expired");
	for (int round = 1; round <= 3; round++) {
		coord_stop(&c);
		coord_start(&c);
		now += 11 * MIN_MS; /* beyond any backoff so far (<= 2m) */
		as = evaluate(&c, now, NULL);
		expect_int(as.triggered, 0, "triggers after a restart");
		ns = deliver(&c, now);
	}
	rx_reload();
	expect_int(rx_count(mark, "/v2/enqueue", "coffer/billing/backup_failed", "trigger", false),
	    4, "trigger attempts (500, 500, 500, 202)");
	expect_int(rx_count(mark, "/v2/enqueue", "coffer/billing/backup_failed", "trigger", true),
	    1, "triggers accepted");
	expect_int(sqln("SELECT count(*) FROM alert_outbox WHERE dedup_key = "
	                "'coffer/billing/backup_failed' AND state = 'pending'"),
	    0, "rows still pending");
	expect_int(sqln("SELECT attempts FROM alert_outbox WHERE dedup_key = "
	                "'coffer/billing/backup_failed' AND target = 'pagerduty' "
	                "AND action = 'trigger'"),
	    4, "attempts recorded on the trigger row");
	/* Later calls send nothing more. */
	now += HOUR_MS;
	ns = deliver(&c, now);
	expect_int(ns.sent, 0, "requests after delivery");
	printf("ok failing backup: 500 three times across restarts, exactly one trigger "
	       "accepted\n");

	mark = n_reqs;
	add_backup("billing-3", "completed", d0 + 2 * DAY_MS + 2 * HOUR_MS,
	    d0 + 2 * DAY_MS + 2 * HOUR_MS + 10 * MIN_MS, 1010000);
	now = d0 + 2 * DAY_MS + 2 * HOUR_MS + 20 * MIN_MS;
	as = evaluate(&c, now, NULL);
	expect_int(as.resolved, 1, "resolutions after the next success");
	drain(&c, now);
	rx_reload();
	expect_int(rx_count(mark, "/v2/enqueue", "coffer/billing/backup_failed", "resolve", true),
	    1, "resolves received for backup_failed");
	printf("ok failing backup resolves on the next success\n");

	/* ---- size anomaly: less than half of the previous ---- */
	mark = n_reqs;
	add_backup("billing-4", "completed", d0 + 3 * DAY_MS + 2 * HOUR_MS,
	    d0 + 3 * DAY_MS + 2 * HOUR_MS + 10 * MIN_MS, 400000);
	now = d0 + 3 * DAY_MS + 2 * HOUR_MS + 20 * MIN_MS;
	as = evaluate(&c, now, NULL);
	expect_int(as.triggered, 1, "transitions after a backup half the size");
	expect_int(
	    sqln("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/size_anomaly' "
	         "AND state = 'triggered'"),
	    1, "size_anomaly open");
	add_backup("billing-5", "completed", d0 + 4 * DAY_MS + 2 * HOUR_MS,
	    d0 + 4 * DAY_MS + 2 * HOUR_MS + 10 * MIN_MS, 410000);
	now = d0 + 4 * DAY_MS + 2 * HOUR_MS + 20 * MIN_MS;
	as = evaluate(&c, now, NULL);
	expect_int(as.resolved, 1, "size_anomaly resolves with a normal-sized successor");
	drain(&c, now);
	printf("ok size anomaly triggers and resolves\n");

	/* ---- retention is no recovery ---- */
	/* Day 5: a failed backup pages; retention marks it pending_delete at
	 * once and deletes it once retention.grace (1h) is over; neither
	 * resolves backup_failed, nor does a restart; the next success does. */
	int64_t d5 = d0 + 5 * DAY_MS;
	mark = n_reqs;
	add_backup("billing-6", "failed", d5 + 2 * HOUR_MS, d5 + 2 * HOUR_MS + 5 * MIN_MS, 0);
	as = evaluate(&c, d5 + 2 * HOUR_MS + 10 * MIN_MS, NULL);
	expect_int(as.triggered, 1, "transitions after the day 5 failure");
	expect_state("backup_failed", "triggered", "after a failed backup");
	coord_prune_stats ps = retention(&c, d5 + 2 * HOUR_MS + 10 * MIN_MS);
	expect_status("billing-6", "pending_delete");
	as = evaluate(&c, d5 + 2 * HOUR_MS + 11 * MIN_MS, NULL);
	expect_int(as.resolved, 0, "resolutions once retention marked the failure pending");
	expect_state("backup_failed", "triggered", "with the failure pending deletion");
	ps = retention(&c, d5 + 3 * HOUR_MS + 15 * MIN_MS);
	expect_status("billing-6", "deleted");
	if (ps.gone + ps.deleted < 1) {
		die("retention deleted nothing");
	}
	coord_stop(&c);
	coord_start(&c);
	as = evaluate(&c, d5 + 3 * HOUR_MS + 16 * MIN_MS, NULL);
	expect_int(as.resolved, 0, "resolutions once retention deleted the failure");
	expect_state("backup_failed", "triggered", "with the failure deleted, after a restart");
	add_backup("billing-7", "completed", d5 + 3 * HOUR_MS + 18 * MIN_MS,
	    d5 + 3 * HOUR_MS + 20 * MIN_MS, 1000000);
	as = evaluate(&c, d5 + 3 * HOUR_MS + 25 * MIN_MS, NULL);
	expect_int(as.resolved, 1, "resolutions after the next success");
	expect_state("backup_failed", "resolved", "after the next success");
	drain(&c, d5 + 3 * HOUR_MS + 25 * MIN_MS);
	rx_reload();
	expect_int(rx_count(mark, "/v2/enqueue", "coffer/billing/backup_failed", "resolve", true),
	    1, "resolves received for backup_failed on day 5");
	printf("ok failed backup: retention (pending_delete, then deleted) and a restart do not "
	       "resolve it; the next success does, once\n");

	/* The DR copy of billing-7 failed for good (its data is gone from the
	 * primary: no retry can help, so retention need not wait for it). */
	sql1("INSERT INTO backup_copies (backup_id, repo, status, started_at, attempts, "
	     "failure_reason, next_attempt_at) VALUES ('billing-7', 'dr', 'failed', "
	     "to_timestamp(%" PRId64 " / 1000.0), 3, 'data is missing from the primary', "
	     "'infinity')",
	    (int64_t)(d5 + 3 * HOUR_MS + 21 * MIN_MS));
	dr_alerts(&c, d5 + 3 * HOUR_MS + 35 * MIN_MS);
	expect_state("dr_copy_failed", "triggered", "after a failed DR copy");
	expect_state("dr_copy_lag", "triggered", "with a copy not verified within copy_lag");

	/* Half the size of the previous one: size_anomaly. Retention then
	 * retires that previous one (billing-8 is the day's newest), which must
	 * not clear the page, nor the DR pages of its copy. */
	add_backup("billing-8", "completed", d5 + 3 * HOUR_MS + 38 * MIN_MS,
	    d5 + 3 * HOUR_MS + 40 * MIN_MS, 400000);
	as = evaluate(&c, d5 + 3 * HOUR_MS + 45 * MIN_MS, NULL);
	expect_int(as.triggered, 1, "transitions after a backup half the size of billing-7");
	expect_state("size_anomaly", "triggered", "after a backup half the size");
	retention(&c, d5 + 3 * HOUR_MS + 46 * MIN_MS);
	expect_status("billing-7", "pending_delete");
	as = evaluate(&c, d5 + 3 * HOUR_MS + 47 * MIN_MS, NULL);
	expect_int(as.resolved, 0, "resolutions once retention marked billing-7 pending");
	expect_state(
	    "size_anomaly", "triggered", "with the backup it was measured against pending");
	retention(&c, d5 + 4 * HOUR_MS + 50 * MIN_MS);
	expect_status("billing-7", "deleted");
	as = evaluate(&c, d5 + 4 * HOUR_MS + 51 * MIN_MS, NULL);
	expect_int(as.resolved, 0, "resolutions once retention deleted billing-7");
	expect_state(
	    "size_anomaly", "triggered", "with the backup it was measured against deleted");
	dr_alerts(&c, d5 + 4 * HOUR_MS + 51 * MIN_MS);
	expect_state("dr_copy_failed", "triggered", "with the uncopied backup deleted");
	expect_state("dr_copy_lag", "triggered", "with the uncopied backup deleted");
	/* The recoveries: a normal-sized backup, and a newer backup copied to
	 * DR and verified there. */
	add_backup(
	    "billing-9", "completed", d5 + 4 * HOUR_MS + 58 * MIN_MS, d5 + 5 * HOUR_MS, 420000);
	as = evaluate(&c, d5 + 5 * HOUR_MS + 5 * MIN_MS, NULL);
	expect_int(as.resolved, 1, "resolutions after a normal-sized backup");
	expect_state("size_anomaly", "resolved", "after a normal-sized backup");
	dr_alerts(&c, d5 + 5 * HOUR_MS + 5 * MIN_MS);
	expect_state("dr_copy_failed", "triggered", "before any newer copy is verified");
	sql1("INSERT INTO backup_copies (backup_id, repo, status, stored_sha256, started_at, "
	     "finished_at) VALUES ('billing-9', 'dr', 'verified', sha256('billing-9'), "
	     "to_timestamp(%" PRId64 " / 1000.0), to_timestamp(%" PRId64 " / 1000.0))",
	    (int64_t)(d5 + 5 * HOUR_MS + 6 * MIN_MS), (int64_t)(d5 + 5 * HOUR_MS + 8 * MIN_MS));
	dr_alerts(&c, d5 + 5 * HOUR_MS + 10 * MIN_MS);
	expect_state("dr_copy_failed", "resolved", "once a newer backup's copy is verified");
	expect_state("dr_copy_lag", "resolved", "once a newer backup's copy is verified");
	drain(&c, d5 + 5 * HOUR_MS + 10 * MIN_MS);
	now = d5 + 5 * HOUR_MS + 10 * MIN_MS;
	printf("ok size anomaly and DR copy pages: retention retiring the backups they name does "
	       "not resolve them; a normal-sized backup and a newer verified copy do\n");

	/* ---- a quiet agent; refused requests ---- */
	sql1("INSERT INTO agents (name, service, pubkey, enrolled_by, last_contact_at) VALUES "
	     "('billing-db-1', 'billing', decode(repeat('ab', 32), 'hex'), 'test', "
	     "to_timestamp(%" PRId64 " / 1000.0))",
	    (int64_t)(now - 5 * MIN_MS));
	audit_enroll(&c, "billing-db-1");
	as = evaluate(&c, now, NULL);
	expect_int(as.triggered, 0, "transitions with an agent heard from 5 minutes ago");
	as = evaluate(&c, now + 11 * MIN_MS, NULL);
	expect_int(as.triggered, 1, "transitions with an agent quiet for 16 minutes");
	expect_int(
	    sqln("SELECT count(*) FROM alerts WHERE dedup_key = 'coffer/billing/agent_quiet' "
	         "AND state = 'triggered'"),
	    1, "agent_quiet open");
	/* Enrolling a replacement is not hearing from an agent: the page stays
	 * open until one is heard from. */
	sql1("INSERT INTO agents (name, service, pubkey, enrolled_by, enrolled_at) VALUES "
	     "('billing-db-2', 'billing', decode(repeat('cd', 32), 'hex'), 'test', "
	     "to_timestamp(%" PRId64 " / 1000.0))",
	    (int64_t)(now + 12 * MIN_MS));
	audit_enroll(&c, "billing-db-2");
	as = evaluate(&c, now + 12 * MIN_MS + 30000, NULL);
	expect_int(as.resolved, 0, "resolutions after an agent was enrolled");
	expect_state("agent_quiet", "triggered", "after an agent was enrolled, none heard from");
	sql1("UPDATE agents SET last_contact_at = to_timestamp(%" PRId64 " / 1000.0) "
	     "WHERE name = 'billing-db-1'",
	    (int64_t)(now + 12 * MIN_MS));
	as = evaluate(&c, now + 13 * MIN_MS, NULL);
	expect_int(as.resolved, 1, "agent_quiet resolves when the agent is heard from");
	sql1("INSERT INTO refusals (reason, agent, count, first_at, last_at) VALUES "
	     "('bad_signature', 'billing-db-1', 3, to_timestamp(%" PRId64 " / 1000.0), "
	     "to_timestamp(%" PRId64 " / 1000.0))",
	    (int64_t)(now + 14 * MIN_MS), (int64_t)(now + 14 * MIN_MS));
	as = evaluate(&c, now + 15 * MIN_MS, NULL);
	expect_int(as.triggered, 1, "transitions after refused requests");
	expect_int(sqln("SELECT count(*) FROM alerts WHERE dedup_key = "
	                "'coffer/billing/requests_refused' AND state = 'triggered' "
	                "AND summary LIKE '%%bad_signature%%'"),
	    1, "requests_refused open, naming the reason");
	sql1("UPDATE agents SET last_contact_at = to_timestamp(%" PRId64 " / 1000.0) "
	     "WHERE name = 'billing-db-1'",
	    (int64_t)(now + 75 * MIN_MS));
	evaluate(&c, now + 76 * MIN_MS, NULL);
	expect_int(sqln("SELECT count(*) FROM alerts WHERE dedup_key = "
	                "'coffer/billing/requests_refused' AND state = 'resolved'"),
	    1, "requests_refused resolved once the refusals are older than refusal_window");
	drain(&c, now + 76 * MIN_MS);
	now += 2 * HOUR_MS;
	printf("ok agent quiet and refused requests trigger and resolve; enrolling an agent does "
	       "not resolve agent_quiet\n");

	/* ---- a 400 is not retried, and is audited ---- */
	mark = n_reqs;
	rx_script("400");
	bool changed = false;
	check_ok(coord_alerts_set(c.cat, &c.key, c.cfg, NULL, COORD_ALERT_AUDIT_CHAIN, true,
	             "critical", "test: chain broken at 17", "{\"bad_seq\":17}", now, &changed, &e),
	    &e, "setting a condition");
	if (!changed) {
		die("setting a new condition made no transition");
	}
	ns = deliver(&c, now);
	expect_int(ns.failed, 1, "rows refused for good");
	rx_reload();
	expect_int(rx_count(mark, "/v2/enqueue", "coffer/_coordinator/audit_chain_broken",
	               "trigger", false),
	    1, "requests for the refused trigger");
	expect_int(sqln("SELECT count(*) FROM alert_outbox WHERE dedup_key = "
	                "'coffer/_coordinator/audit_chain_broken' AND target = 'pagerduty' "
	                "AND state = 'failed' AND last_error LIKE '%%Event object is invalid%%'"),
	    1, "failed row with PagerDuty's message");
	expect_int(sqln("SELECT count(*) FROM audit WHERE action = 'alert.undeliverable' "
	                "AND subject = 'coffer/_coordinator/audit_chain_broken' "
	                "AND details->>'message' LIKE 'Event object is invalid%%'"),
	    1, "alert.undeliverable audit rows");
	for (int i = 1; i <= 3; i++) {
		deliver(&c, now + i * HOUR_MS);
	}
	rx_reload();
	expect_int(
	    rx_count(mark, "/v2/enqueue", "coffer/_coordinator/audit_chain_broken", NULL, false), 1,
	    "requests for the refused trigger after 3 more hours");
	/* A restarted evaluator that has not walked the chain (nor checked the
	 * head exported to DR) knows nothing: "not broken" leaves it open. */
	coord_stop(&c);
	coord_start(&c);
	coord_alerts_input in = { .audit_chain_broken = false };
	evaluate(&c, now + 3 * HOUR_MS, &in);
	expect_int(sqln("SELECT count(*) FROM alerts WHERE dedup_key = "
	                "'coffer/_coordinator/audit_chain_broken' AND state = 'triggered'"),
	    1, "audit_chain_broken open after a restart, the chain not yet verified");
	/* The evaluator with a verified, intact chain resolves it. */
	in.verified = true;
	as = evaluate(&c, now + 3 * HOUR_MS, &in);
	if (as.resolved < 1) {
		die("an intact chain did not resolve audit_chain_broken");
	}
	deliver(&c, now + 3 * HOUR_MS);
	printf("ok a 400 is not retried, is audited with PagerDuty's message\n");

	/* ---- a flood of 1,000 conditions: paced, none dropped ---- */
	now += 4 * HOUR_MS;
	mark = n_reqs;
	for (int i = 0; i < FLOOD; i++) {
		char check[32];
		snprintf(check, sizeof(check), "flood_%04d", i);
		check_ok(coord_alerts_set(c.cat, &c.key, c.cfg, NULL, check, true, "warning",
		             "test flood", NULL, now, NULL, &e),
		    &e, "flooding");
	}
	rx_script("429 500");
	int guard = 0;
	while (sqln("SELECT count(*) FROM alert_outbox WHERE state = 'pending'") > 0) {
		ns = deliver(&c, now);
		now += 2 * MIN_MS; /* lets the 429 and 500 retries come due */
		if (ns.sent == 0) {
			struct timespec ts = { 0, 50 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (++guard > 100000) {
			die("the flood never drained");
		}
	}
	rx_reload();
	int rate = (int)coffer_config_int(c.cfg->ini, "alerts", "rate_per_minute");
	/* A second's refill plus one burst, plus one: the receiver stamps a
	 * request when it arrives, a little after the sender took its token. */
	int allowed = rate / 60 + 20 + 1;
	int worst = 0;
	size_t lo = mark;
	int64_t first = -1, last = 0;
	for (size_t i = mark; i < n_reqs; i++) {
		if (strcmp(reqs[i].path, "/v2/enqueue") != 0) {
			continue;
		}
		if (first < 0) {
			first = reqs[i].at;
		}
		last = reqs[i].at;
		while (lo < i &&
		    (strcmp(reqs[lo].path, "/v2/enqueue") != 0 ||
		        reqs[lo].at <= reqs[i].at - 1000)) {
			lo++;
		}
		int in_window = 0;
		for (size_t j = lo; j <= i; j++) {
			in_window += strcmp(reqs[j].path, "/v2/enqueue") == 0;
		}
		if (in_window > worst) {
			worst = in_window;
		}
	}
	if (worst > allowed) {
		die("rate limit broken: %d requests to one routing key within one second "
		    "(rate_per_minute %d allows %d)",
		    worst, rate, allowed);
	}
	int got = 0;
	for (int i = 0; i < FLOOD; i++) {
		char dk[64];
		snprintf(dk, sizeof(dk), "coffer/_coordinator/flood_%04d", i);
		int n = rx_count(mark, "/v2/enqueue", dk, "trigger", true);
		if (n != 1) {
			die("%s accepted %d times, want 1", dk, n);
		}
		got++;
	}
	printf("ok flood: %d triggers each accepted once, at most %d per second (limit %d), "
	       "%.1fs\n",
	    got, worst, allowed, (double)(last - first) / 1000.0);

	metrics_phase(&c, now);

	/* ---- the receiver is gone: a network error is retried ---- */
	harness_receiver_stop(receiver_pid);
	receiver_pid = 0;
	check_ok(coord_alerts_set(c.cat, &c.key, c.cfg, NULL, "net_check", true, "error",
	             "test: receiver down", NULL, now, NULL, &e),
	    &e, "setting a condition");
	ns = deliver(&c, now);
	expect_int(ns.retrying, 2, "rows rescheduled after a network error (pagerduty, webhook)");
	expect_int(sqln("SELECT count(*) FROM alert_outbox WHERE dedup_key = "
	                "'coffer/_coordinator/net_check' AND state = 'pending' AND attempts = 1 "
	                "AND next_attempt_at > to_timestamp(%" PRId64 " / 1000.0) "
	                "AND last_error LIKE 'network error%%'",
	               now),
	    2, "pending rows with the network error and a later attempt time");
	printf("ok a network error is retried later\n");

	/* ---- the listing behind `coffer alerts list` ---- */
	cJSON *list = NULL;
	if (coord_alerts_list(c.cat, 0, &list, &e) != COFFER_EINVAL || list != NULL) {
		die("a list limit of 0 was not refused");
	}
	check_ok(coord_alerts_list(c.cat, 5000, &list, &e), &e, "listing alerts");
	int n_list = cJSON_GetArraySize(list);
	bool seen_net = false, seen_failed = false, seen_bad = false, resolved_yet = false;
	for (int i = 0; i < n_list; i++) {
		const cJSON *a = cJSON_GetArrayItem(list, i);
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(a, "delivery");
		const char *dk = jstr(a, "dedup_key"), *state = jstr(a, "state");
		if (strcmp(state, "resolved") == 0) {
			resolved_yet = true;
		} else if (resolved_yet) {
			die("the list shows an open alert after a resolved one");
		}
		if (strcmp(dk, "coffer/_coordinator/net_check") == 0) {
			seen_net = strcmp(state, "triggered") == 0 &&
			    strcmp(jstr(d, "state"), "pending") == 0 &&
			    strncmp(jstr(d, "last_error"), "network error", 13) == 0;
		}
		if (strcmp(dk, "coffer/billing/backup_failed") == 0) {
			seen_failed = strcmp(state, "resolved") == 0 &&
			    strcmp(jstr(d, "action"), "resolve") == 0 &&
			    strcmp(jstr(d, "state"), "delivered") == 0 &&
			    jstr(a, "resolved_at")[0] != '\0';
		}
		if (strcmp(dk, "coffer/_coordinator/audit_chain_broken") == 0) {
			seen_bad = strcmp(state, "resolved") == 0;
		}
	}
	cJSON_Delete(list);
	if (!seen_net || !seen_failed || !seen_bad) {
		die("the alert list lacks or misreports net_check (%d), backup_failed (%d) or "
		    "audit_chain_broken (%d)",
		    seen_net, seen_failed, seen_bad);
	}
	printf("ok alerts list: %d alerts, open first, with their delivery state\n", n_list);

	/* ---- WAL archiving: a stale heartbeat is no recovery ---- */
	/* Last: the receiver is gone (the transitions are queued, not sent),
	 * and the metrics above were rendered before any agent reported on its
	 * archiver. */
	heartbeat("billing-db-1", now, now - 10 * MIN_MS, now - MIN_MS, 20);
	wal_watch(&c, now + MIN_MS);
	expect_state(
	    "wal_archive_failing", "triggered", "after a heartbeat with a failing archiver");
	expect_state("wal_archive_lag", "triggered", "after a heartbeat with 20 segments waiting");
	/* No heartbeat for longer than agent_quiet: what the agent last said
	 * is not trusted, so it cannot say the archiver recovered either. */
	wal_watch(&c, now + 11 * MIN_MS);
	expect_state("wal_archive_failing", "triggered", "with the agent's heartbeat stale");
	expect_state("wal_archive_lag", "triggered", "with the agent's heartbeat stale");
	heartbeat("billing-db-1", now + 12 * MIN_MS, now + 12 * MIN_MS, now - MIN_MS, 0);
	wal_watch(&c, now + 12 * MIN_MS + 30000);
	expect_state("wal_archive_failing", "resolved", "after a fresh heartbeat: archiving works");
	expect_state("wal_archive_lag", "resolved", "after a fresh heartbeat: nothing waits");
	printf("ok WAL archiver pages stay open while the heartbeat is stale; a fresh one "
	       "resolves them\n");

	coffer_repo_close(repo);
	coord_stop(&c);
	PQfinish(conn);
	fclose(clog);
	for (size_t i = 0; i < n_reqs; i++) {
		cJSON_Delete(reqs[i].body);
	}
	free(reqs);
	curl_global_cleanup();
	return (0);
}
